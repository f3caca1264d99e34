//! Postgres goes away under a running server (`pg_ctl stop -m immediate`, a private cluster) and
//! comes back; the server is never restarted. Also: the server started before its database, and
//! a Postgres that turns read-only.
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{
    client_id,
    private_postgres::{wait_port_closed, PrivatePostgres},
    server_process::{free_port, ServerProcess},
    traffic::{assert_each_once, assert_refused, history, wait_healthy, Answer, Conversation},
};

const MESSAGES: usize = 300;
/// Acks Ada has when Postgres is stopped.
const STOP_AFTER_ACKS: usize = 100;
/// Sends Ada keeps in flight before the stop, so that some are in the middle of their commit.
const WINDOW: usize = 16;
/// Sends while the database is down, each of which must be refused.
const DURING_OUTAGE: usize = 5;

fn server_env(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PARLEY_SIGNUP", "open".into()),
        ("PARLEY_RATE_LIMITS__MESSAGES_PER_USER", "0".into()),
        ("PARLEY_WS_FRAMES_PER_SEC", "100000".into()),
        ("DATABASE_URL", url.into()),
        // Each request waits this long for a connection before it is refused; short, so that a
        // socket's sends (answered one after the other) are refused quickly while it is down.
        ("PARLEY_DATABASE_ACQUIRE_TIMEOUT_MS", "1000".into()),
    ]
}

async fn start_server(url: &str) -> ServerProcess {
    let env = server_env(url);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ServerProcess::start(&env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_the_server() {
    let pg = PrivatePostgres::start();
    let server = start_server(&pg.url()).await;
    let http = reqwest::Client::new();
    let mut talk = Conversation::open(&server).await;

    // Traffic with a window of sends in flight; Postgres dies once enough are acknowledged.
    let mut next = 0;
    while talk.acked.len() < STOP_AFTER_ACKS {
        while next < MESSAGES && talk.pending.len() < WINDOW {
            talk.send(next).await;
            next += 1;
        }
        talk.answer().await;
    }
    let stopped_at = Instant::now();
    pg.stop_hard();
    wait_port_closed(pg.port).await;
    let in_flight_at_stop = talk.pending.len();
    // Whatever was in flight is answered: acked if it committed before the stop, else refused.
    while !talk.pending.is_empty() {
        talk.answer().await;
    }
    let acked_at_stop = talk.acked.len();

    // While it is down: sends are refused with their client_id, REST answers 503 with the error
    // body, the process stays up.
    for _ in 0..DURING_OUTAGE {
        let started = Instant::now();
        match talk.send_and_wait(next).await {
            Answer::Refused { code, .. } => assert_eq!(code, "unavailable"),
            Answer::Acked(id) => panic!("{id} acked with the database stopped"),
        }
        assert!(started.elapsed() < Duration::from_secs(8), "a refusal took {:?}", started.elapsed());
        next += 1;
    }
    let health = http.get(format!("{}/healthz", server.url())).send().await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(health["status"], "unavailable");
    let chats = http.get(format!("{}/api/v1/chats", server.url())).bearer_auth(&talk.ada.token).send().await.unwrap();
    assert_refused(chats, &["unavailable"]).await;
    let history_page = http
        .get(format!("{}/api/v1/chats/{}/messages", server.url(), talk.chat.id))
        .bearer_auth(&talk.bo.token)
        .send()
        .await
        .unwrap();
    assert_refused(history_page, &["unavailable"]).await;
    let login = http
        .post(format!("{}/api/v1/auth/login", server.url()))
        .json(&serde_json::json!({"email": "ada@example.org", "password": "a good password"}))
        .send()
        .await
        .unwrap();
    assert_refused(login, &["unavailable"]).await;
    // Ada's socket is still open and answered.
    talk.socket_still_answers().await;
    // Each refusal is logged once, as a warning: an unavailable database is no fault of ours.
    let log = server.log();
    assert!(log.contains("request failed: database unavailable"), "{log}");
    assert!(!log.contains("tower_http"), "the 503s were logged a second time:\n{log}");
    let instance = http.get(format!("{}/api/v1/instance", server.url())).send().await.unwrap();
    assert!(instance.status().is_success(), "the server process answers without its database");
    let outage = stopped_at.elapsed();

    // Postgres comes back (crash recovery from its WAL); the same server process recovers.
    pg.start_again();
    let recovered_in = wait_healthy(&server, Duration::from_secs(30)).await;
    let stored_before_resend = history(&server, &talk).await.len();

    // Ada's outbox: every message again with its client_id, then the ones never sent.
    talk.resend_all(MESSAGES).await;
    assert_each_once(&server, &talk, MESSAGES).await;
    let refused = talk.refused.len();
    eprintln!(
        "postgres outage: {MESSAGES} messages; stopped at {acked_at_stop} acks with {in_flight_at_stop} in flight; \
         {refused} refused (unavailable) during {outage:?} down; {} committed without an ack; healthy {recovered_in:?} \
         after the restart; after resending: {MESSAGES} stored once each",
        stored_before_resend - acked_at_stop,
    );
    assert!(stored_before_resend >= acked_at_stop, "every acked message survived the stop");
    assert!(refused >= DURING_OUTAGE);
}

/// The server started while its database is down waits for it (logging why), and serves once it
/// is up: the order a compose file or a boot starts services in does not matter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_waits_for_a_database_that_is_not_up_yet() {
    let pg = PrivatePostgres::start();
    pg.stop_hard();
    wait_port_closed(pg.port).await;
    let mut server = RawServer::spawn(&pg.url(), "60");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(server.child.try_wait().unwrap().is_none(), "the server exited instead of waiting:\n{}", server.log());
    assert!(server.log().contains("waiting for it"), "no log line says what it waits for:\n{}", server.log());

    pg.start_again();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let started = Instant::now();
    loop {
        let health = client.get(format!("http://127.0.0.1:{}/healthz", server.port)).send().await;
        if health.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "not up 30 s after the database:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Migrated and working: an account can be made.
    let signup = client
        .post(format!("http://127.0.0.1:{}/api/v1/auth/signup", server.port))
        .json(&serde_json::json!({"email": "late@example.org", "password": "a good password", "display_name": "Late"}))
        .send()
        .await
        .unwrap();
    assert!(signup.status().is_success(), "signup: {}", signup.status());
}

/// A database that never comes: the server gives up after `PARLEY_DATABASE_WAIT_SECS` with a
/// non-zero exit and a message that says what to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_gives_up_on_a_database_that_never_comes() {
    let nobody = format!("postgres://postgres@127.0.0.1:{}/postgres", free_port());
    let mut server = RawServer::spawn(&nobody, "2");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "still running after 30 s:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success(), "exit status {status}");
    let log = server.log();
    assert!(log.contains("still unreachable after waiting 2 s"), "unclear error:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
}

/// Postgres turned read-only (`default_transaction_read_only`, as on a standby or a database an
/// operator froze): writes are refused clearly, reads go on, nothing is acked that was not
/// stored, and writes work again once it is lifted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_read_only_under_the_server() {
    const BEFORE: usize = 20;
    const READ_ONLY: usize = 10;
    const AFTER: usize = 20;
    let pg = PrivatePostgres::start();
    let server = start_server(&pg.url()).await;
    let http = reqwest::Client::new();
    let mut talk = Conversation::open(&server).await;
    for n in 0..BEFORE {
        assert!(matches!(talk.send_and_wait(n).await, Answer::Acked(_)));
    }

    // A reload reaches the pool's open sessions too, not only new ones.
    pg.psql("postgres", "ALTER SYSTEM SET default_transaction_read_only = on");
    pg.psql("postgres", "SELECT pg_reload_conf()");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in BEFORE..BEFORE + READ_ONLY {
        match talk.send_and_wait(n).await {
            Answer::Refused { code, .. } => assert_eq!(code, "unavailable"),
            Answer::Acked(id) => panic!("{id} acked by a read-only database"),
        }
    }
    let carol = http
        .post(format!("{}/api/v1/auth/signup", server.url()))
        .json(
            &serde_json::json!({"email": "carol@example.org", "password": "a good password", "display_name": "carol"}),
        )
        .send()
        .await
        .unwrap();
    let code = assert_refused(carol, &["unavailable"]).await;
    assert_eq!(code, "unavailable");
    // Reading still works.
    assert_eq!(history(&server, &talk).await.len(), BEFORE);
    talk.socket_still_answers().await;

    pg.psql("postgres", "ALTER SYSTEM RESET default_transaction_read_only");
    pg.psql("postgres", "SELECT pg_reload_conf()");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in BEFORE + READ_ONLY..BEFORE + READ_ONLY + AFTER {
        assert!(matches!(talk.send_and_wait(n).await, Answer::Acked(_)), "message {} after read-only", client_id(n));
    }
    talk.resend_all(BEFORE + READ_ONLY + AFTER).await;
    assert_each_once(&server, &talk, BEFORE + READ_ONLY + AFTER).await;
    eprintln!(
        "postgres read-only: {BEFORE} acked before, {READ_ONLY} refused while read-only, {AFTER} acked after; \
         after resending: {} stored once each",
        BEFORE + READ_ONLY + AFTER
    );
}

/// The server binary on its own terms (no wait for `/healthz`), its log kept in a file.
struct RawServer {
    port: u16,
    child: Child,
    data_dir: PathBuf,
}

impl RawServer {
    fn spawn(database_url: &str, wait_secs: &str) -> Self {
        let port = free_port();
        let data_dir = std::env::temp_dir().join(format!("parley-raw-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&data_dir).unwrap();
        let log = std::fs::File::create(data_dir.join("server.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_parley-server"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PARLEY_BIND", format!("127.0.0.1:{port}"))
            .env("PARLEY_DATA_DIR", &data_dir)
            .env("PARLEY_SIGNUP", "open")
            .env("PARLEY_LOG", "info")
            .env("DATABASE_URL", database_url)
            .env("PARLEY_DATABASE_WAIT_SECS", wait_secs)
            .env("PARLEY_DATABASE_ACQUIRE_TIMEOUT_MS", "1000")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start parley-server");
        RawServer { port, child, data_dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
