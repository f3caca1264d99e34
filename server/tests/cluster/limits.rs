//! Budgets shared by the nodes, what happens to them without Redis, and whose address counts.
use std::time::Duration;

use reqwest::StatusCode;

use crate::{
    harness::{http, user, Cluster, PrivateRedis},
    server_process::ServerProcess,
};

async fn login(base: &str, email: &str, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut request = http()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"email": email, "password": "not the password"}));
    if let Some(forwarded_for) = forwarded_for {
        request = request.header("x-forwarded-for", forwarded_for);
    }
    request.send().await.unwrap()
}

async fn login_status(base: &str, email: &str) -> StatusCode {
    login(base, email, None).await.status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_are_shared_by_the_nodes_and_each_node_keeps_its_own_while_redis_is_down() {
    let mut redis = PrivateRedis::start().await;
    let limits = [("PARLEY_RATE_LIMITS__LOGIN_PER_EMAIL", "3"), ("PARLEY_RATE_LIMITS__LOGIN_PER_IP", "0")];
    let cluster = Cluster::start_on(3, &redis.url(), &limits).await;
    let (a, b, c) = (cluster.url(0), cluster.url(1), cluster.url(2));
    user(&a, "Ada").await;

    // Three tries, one per node, use up the budget of all three.
    for base in [&a, &b, &c] {
        assert_eq!(login_status(base, "ada@example.org").await, StatusCode::UNAUTHORIZED);
    }
    for base in [&a, &b, &c] {
        let refused = login(base, "ada@example.org", None).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS, "{base}");
        let retry: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "retry after {retry}");
    }
    assert_eq!(login_status(&b, "bo@example.org").await, StatusCode::UNAUTHORIZED, "another email's budget is its own");

    // Redis goes away. Each node answers from a budget of its own, with the same quota: the
    // limit holds per node (not open), and requests are still answered (not closed).
    redis.kill();
    for _ in 0..3 {
        assert_eq!(login_status(&b, "cy@example.org").await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login_status(&b, "cy@example.org").await, StatusCode::TOO_MANY_REQUESTS, "node B's own budget");
    assert_eq!(login_status(&c, "cy@example.org").await, StatusCode::UNAUTHORIZED, "node C's own budget");

    // Redis is back (empty): the budget is shared again.
    redis.start_again().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for base in [&a, &b, &c] {
        assert_eq!(login_status(base, "dee@example.org").await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login_status(&a, "dee@example.org").await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forwarded_client_address_counts_only_from_a_trusted_proxy() {
    let limits = [
        ("PARLEY_SIGNUP", "open"),
        ("PARLEY_RATE_LIMITS__LOGIN_PER_IP", "2"),
        ("PARLEY_RATE_LIMITS__LOGIN_PER_EMAIL", "0"),
    ];
    let behind_proxy =
        ServerProcess::start(&[limits.as_slice(), &[("PARLEY_TRUSTED_PROXIES", "127.0.0.1/32")]].concat()).await;
    let base = behind_proxy.url();

    // Behind a trusted proxy, each client has a budget of its own.
    for _ in 0..2 {
        assert_eq!(login(&base, "x@example.org", Some("198.51.100.1")).await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login(&base, "x@example.org", Some("198.51.100.1")).await.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(login(&base, "x@example.org", Some("198.51.100.2")).await.status(), StatusCode::UNAUTHORIZED);
    // A client cannot choose its address by sending the header itself: the proxy appends the
    // address it saw, and only that rightmost entry is believed.
    assert_eq!(
        login(&base, "x@example.org", Some("203.0.113.50, 198.51.100.1")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Metrics are for loopback clients: a forwarded outsider is not one, though the peer is.
    let outsider =
        http().get(format!("{base}/metrics")).header("x-forwarded-for", "198.51.100.1").send().await.unwrap();
    assert_eq!(outsider.status(), StatusCode::NOT_FOUND);
    let local = http().get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(local.status(), StatusCode::OK);

    // A server that trusts no proxy ignores the header: everyone here is 127.0.0.1.
    let direct = ServerProcess::start(&limits).await;
    let base = direct.url();
    assert_eq!(login(&base, "x@example.org", Some("198.51.100.1")).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(login(&base, "x@example.org", Some("198.51.100.2")).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(login(&base, "x@example.org", Some("198.51.100.3")).await.status(), StatusCode::TOO_MANY_REQUESTS);
    let forged = http().get(format!("{base}/metrics")).header("x-forwarded-for", "198.51.100.1").send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::OK, "the peer is loopback; the header changes nothing");
}
