//! The deployment of docs/DEPLOY.md, run: Debian's nginx, with the configuration block from that
//! file (only ports and certificate paths changed), ending TLS in front of two nodes, and a chat
//! over WebSockets through it.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use parley_common::{AuthResponse, Event, ServerFrame};
use reqwest::StatusCode;
use tokio_tungstenite::{tungstenite::client::IntoClientRequest, Connector};

use crate::{
    harness::{Cluster, Ws},
    server_process::free_port,
};

/// The block after the `<!-- tested: … -->` marker in docs/DEPLOY.md.
fn deploy_md_nginx_block() -> String {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/DEPLOY.md")).unwrap();
    let after_marker = &doc[doc.find("<!-- tested: server/tests/cluster/nginx.rs").expect("the marker in DEPLOY.md")..];
    let start = after_marker.find("```nginx\n").expect("an nginx block after the marker") + "```nginx\n".len();
    let end = after_marker[start..].find("```").unwrap();
    after_marker[start..start + end].to_string()
}

/// Replaces `from` with `to`, insisting that the documented text is there.
fn swap(config: String, from: &str, to: &str) -> String {
    assert!(config.contains(from), "DEPLOY.md's nginx block no longer contains `{from}`");
    config.replace(from, to)
}

/// Debian installs it in /usr/sbin, which a non-root PATH may lack.
fn nginx_program() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    /// Runs nginx in the foreground as the current user, everything in a folder of its own.
    async fn start(site: &str, port: u16) -> Self {
        let dir = std::env::temp_dir().join(format!("parley-nginx-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        // As root, nginx would hand its workers to `nobody`, who cannot write this folder.
        let user = if root { "user root;" } else { "" };
        let d = dir.display();
        let main = format!(
            "{user}\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{site}\n}}\n"
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, main).unwrap();
        let args = |extra: &[&str]| {
            let mut args = vec!["-p".to_string(), format!("{d}/"), "-e".into(), format!("{d}/error.log")];
            args.extend(["-c".to_string(), conf.display().to_string()]);
            args.extend(extra.iter().map(|s| s.to_string()));
            args
        };
        let check = Command::new(nginx_program())
            .args(args(&["-t"]))
            .output()
            .expect("nginx (Debian package nginx) must be installed");
        assert!(check.status.success(), "nginx -t: {}", String::from_utf8_lossy(&check.stderr));
        let child = Command::new(nginx_program())
            .args(args(&["-g", "daemon off;"]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let nginx = Nginx { child, dir };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return nginx;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "nginx did not listen on {port}: {}",
            std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default()
        );
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers, then itself. SIGKILL would leave the workers
        // running, orphaned, on the port; it is only the last resort.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Connections on a node, from its own metrics (loopback, not through nginx).
async fn sockets_on(base: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix("parley_ws_connections ")).map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_over_websockets_through_nginx_in_front_of_two_nodes() {
    let (https_port, http_port) = (free_port(), free_port());
    let public = format!("https://localhost:{https_port}");
    let cluster = Cluster::start(
        2,
        &[
            ("PARLEY_PUBLIC_URL", public.as_str()),
            ("PARLEY_TRUSTED_PROXIES", "127.0.0.1"),
            ("PARLEY_WS_PING_SECS", "1"),
        ],
    )
    .await;

    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let certs = std::env::temp_dir().join(format!("parley-nginx-certs-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("fullchain.pem"), certified.cert.pem()).unwrap();
    std::fs::write(certs.join("privkey.pem"), certified.signing_key.serialize_pem()).unwrap();

    let site = deploy_md_nginx_block();
    let site = swap(site, "server 127.0.0.1:8001 ", &format!("server 127.0.0.1:{} ", cluster.nodes[0].port));
    let site = swap(site, "server 127.0.0.1:8002 ", &format!("server 127.0.0.1:{} ", cluster.nodes[1].port));
    let site = swap(
        site,
        "listen 443 ssl http2 backlog=4096;",
        &format!("listen 127.0.0.1:{https_port} ssl http2 backlog=4096;"),
    );
    let site = swap(site, "listen 80;", &format!("listen 127.0.0.1:{http_port};"));
    let site = swap(site, "/etc/letsencrypt/live/chat.example.org/", &format!("{}/", certs.display()));
    let _nginx = Nginx::start(&site, https_port).await;

    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", format!("127.0.0.1:{https_port}").parse().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signup = |name: &'static str| {
        let https = https.clone();
        let public = public.clone();
        async move {
            let body = serde_json::json!({"email": format!("{name}@example.org"), "password": "a good password", "display_name": name});
            let response = https.post(format!("{public}/api/v1/auth/signup")).json(&body).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let cookie = response.headers()["set-cookie"].to_str().unwrap().to_string();
            let auth: AuthResponse = response.json().await.unwrap();
            (auth, cookie)
        }
    };
    let (ada, ada_cookie) = signup("ada").await;
    let (bo, bo_cookie) = signup("bo").await;
    // TLS ends at nginx and the nodes speak plain HTTP, yet cookies are Secure: PARLEY_PUBLIC_URL.
    assert!(ada_cookie.contains("; Secure"), "{ada_cookie}");
    assert!(bo_cookie.contains("HttpOnly"));

    // WSS through nginx: Ada with her bearer token, Bo as a browser would (cookie and Origin).
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = Arc::new(tls);
    let wss = |headers: Vec<(&'static str, String)>| {
        let tls = tls.clone();
        async move {
            let mut request = format!("wss://localhost:{https_port}/api/v1/ws").into_client_request().unwrap();
            for (name, value) in headers {
                request.headers_mut().insert(name, value.parse().unwrap());
            }
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", https_port)).await.unwrap();
            tokio_tungstenite::client_async_tls_with_config(request, tcp, None, Some(Connector::Rustls(tls))).await
        }
    };
    let session_cookie = bo_cookie.split(';').next().unwrap().to_string();
    let foreign = wss(vec![("cookie", session_cookie.clone()), ("origin", "https://evil.example".into())]).await;
    assert!(
        matches!(&foreign, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == StatusCode::FORBIDDEN),
        "a cookie upgrade from another origin is refused: {foreign:?}"
    );
    let (socket, _) =
        wss(vec![("authorization", format!("Bearer {}", ada.token))]).await.expect("WSS upgrade through nginx");
    let mut ada_ws = Ws::after_upgrade(socket).await;
    let (socket, _) = wss(vec![("cookie", session_cookie), ("origin", public.clone())])
        .await
        .expect("cookie WSS upgrade through nginx");
    let mut bo_ws = Ws::after_upgrade(socket).await;
    assert_eq!((ada_ws.user_id, bo_ws.user_id), (ada.user.id, bo.user.id), "each socket is its session's user");

    // least_conn put the two sockets on different nodes: what follows crosses nodes.
    let (on_a, on_b) = (sockets_on(&cluster.url(0)).await, sockets_on(&cluster.url(1)).await);
    assert_eq!((on_a, on_b), (1.0, 1.0), "one socket on each node");

    let chat: parley_common::Chat = https
        .post(format!("{public}/api/v1/chats"))
        .bearer_auth(&ada.token)
        .json(&serde_json::json!({"email": "bo@example.org"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    bo_ws
        .next_matching("chat_created", |f| matches!(f, ServerFrame::Event(Event::ChatCreated { .. })).then_some(()))
        .await;
    for n in 0..3 {
        ada_ws.say(chat.id, &crate::harness::client_id(n), &format!("through nginx {n}")).await;
        let (_, acked) = ada_ws.next_ack().await;
        assert_eq!(bo_ws.next_message().await.id, acked.id);
        bo_ws.say(chat.id, &crate::harness::client_id(100 + n), &format!("and back {n}")).await;
        let (_, reply) = bo_ws.next_ack().await;
        assert_eq!(ada_ws.next_message().await.id, reply.id);
    }
    // Pings every second (PARLEY_WS_PING_SECS=1) pass through the proxy and keep the sockets up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    ada_ws.say(chat.id, &crate::harness::client_id(9), "still here").await;
    ada_ws.next_ack().await;
    assert_eq!(bo_ws.next_message().await.body, "still here");
    ada_ws.assert_stream_in_order("Ada through nginx", &cluster.url(0), &ada.token).await;
    bo_ws.assert_stream_in_order("Bo through nginx", &cluster.url(0), &bo.token).await;

    // The proxy hides the metrics, and sends plain HTTP to HTTPS.
    let metrics = https.get(format!("{public}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::NOT_FOUND);
    let plain = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let redirect = plain.get(format!("http://127.0.0.1:{http_port}/healthz")).send().await.unwrap();
    assert_eq!(redirect.status(), StatusCode::MOVED_PERMANENTLY);
    assert!(redirect.headers()["location"].to_str().unwrap().starts_with("https://"));
    let _ = std::fs::remove_dir_all(certs);
}
