//! Starts a real Parley server per test on a loopback port, with its own fresh database (a SQLite
//! file or a Postgres schema) and an SMTP sink, and talks to it over real HTTP.
use std::path::PathBuf;

use parley_common::{AuthResponse, ErrorBody, SignupMode, SignupPending};
use parley_server::{config::Secret, Config, Server};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::smtp_sink::SmtpSink;

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn name(backend: Backend)` as two tests, `name::sqlite` and
/// `name::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    )*};
}

/// The Postgres the tests may create schemas in.
fn postgres_admin_url() -> String {
    std::env::var("PARLEY_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A database of the test's own, removed when the test ends.
pub enum TestDatabase {
    Sqlite,
    Postgres { schema: String },
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let TestDatabase::Postgres { schema } = self {
            let schema = schema.clone();
            // Drop runs inside the test's runtime; a thread with its own runtime can block on it.
            let cleanup = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
                        let _ =
                            sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&mut conn).await;
                    }
                });
            });
            let _ = cleanup.join();
        }
    }
}

pub struct TestApp {
    pub url: String,
    pub client: reqwest::Client,
    pub smtp: SmtpSink,
    pub data_dir: PathBuf,
    pub config: Config,
    _db: TestDatabase,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// An empty database of the test's own: a file in `data_dir`, or a Postgres schema. Its URL, and
/// what removes it when dropped.
pub async fn empty_database(backend: Backend, data_dir: &std::path::Path) -> (String, TestDatabase) {
    match backend {
        Backend::Sqlite => (format!("sqlite://{}", data_dir.join("parley.db").display()), TestDatabase::Sqlite),
        Backend::Postgres => {
            use sqlx::Connection;
            let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&postgres_admin_url())
                .await
                .expect("Postgres for tests (set PARLEY_TEST_POSTGRES_URL)");
            sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut conn).await.unwrap();
            let sep = if postgres_admin_url().contains('?') { '&' } else { '?' };
            let url = format!("{}{sep}options=-c%20search_path%3D{schema}", postgres_admin_url());
            (url, TestDatabase::Postgres { schema })
        }
    }
}

/// A server with the default test configuration (SMTP sink, `verify` signups).
pub async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, |_| {}).await
}

/// A server whose configuration `tweak` adjusts before it starts.
pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let smtp = SmtpSink::start().await;
    let data_dir = std::env::temp_dir().join(format!("parley-test-{}", uuid::Uuid::new_v4()));
    let (database_url, db) = empty_database(backend, &data_dir).await;
    let mut config = Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.clone(),
        database_url: Some(Secret(database_url)),
        smtp_url: Some(Secret(smtp.url())),
        signup: SignupMode::Verify,
        log: "warn".into(),
        ..Config::default()
    };
    tweak(&mut config);
    let listener = parley_server::listen(config.bind).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = Server::build(config.clone()).await.expect("server starts");
    tokio::spawn(server.serve(listener, std::future::pending()));
    let client = reqwest::Client::builder().user_agent("parley-tests").build().unwrap();
    TestApp { url, client, smtp, data_dir, config, _db: db }
}

impl TestApp {
    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    pub fn ws_url(&self) -> String {
        format!("{}/api/v1/ws", self.url.replacen("http://", "ws://", 1))
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.client.post(self.at(path)).json(&body).send().await.unwrap()
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> Response {
        self.client.get(self.at(path)).bearer_auth(token).send().await.unwrap()
    }

    pub async fn post_with_token(&self, path: &str, token: &str) -> Response {
        self.client.post(self.at(path)).bearer_auth(token).send().await.unwrap()
    }

    pub async fn signup(&self, email: &str, password: &str, name: &str) -> Response {
        self.post("/api/v1/auth/signup", json!({"email": email, "password": password, "display_name": name})).await
    }

    /// Signs up and returns the pending signup's id (asserting the 202).
    pub async fn start_signup(&self, email: &str, password: &str) -> String {
        let response = self.signup(email, password, "Tester").await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        response.json::<SignupPending>().await.unwrap().signup_id
    }

    pub async fn verify(&self, signup_id: &str, code: &str) -> Response {
        self.post("/api/v1/auth/verify", json!({"signup_id": signup_id, "code": code})).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post("/api/v1/auth/login", json!({"email": email, "password": password})).await
    }

    /// A verified account through the real flow (code read from the SMTP sink); returns the session.
    pub async fn register(&self, email: &str, password: &str) -> AuthResponse {
        let signup_id = self.start_signup(email, password).await;
        let code = self.smtp.next_code_for(email).await;
        let response = self.verify(&signup_id, &code).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }
}

/// A server with `open` signup, for tests about chatting rather than accounts.
pub async fn spawn_open(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
    spawn_with(backend, |c| {
        c.signup = SignupMode::Open;
        c.smtp_url = None;
        tweak(c);
    })
    .await
}

impl TestApp {
    /// An account on an `open` instance, logged in.
    pub async fn user(&self, name: &str) -> AuthResponse {
        let email = format!("{}@example.org", name.to_lowercase());
        let response = self.signup(&email, "a good password", name).await;
        assert_eq!(response.status(), StatusCode::OK, "open signup of {email}");
        response.json().await.unwrap()
    }

    /// Starts (or finds) the chat of `me` with `email`; returns its id.
    pub async fn chat(&self, me: &AuthResponse, email: &str) -> i64 {
        let response = self
            .client
            .post(self.at("/api/v1/chats"))
            .bearer_auth(&me.token)
            .json(&serde_json::json!({"email": email}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        response.json::<parley_common::Chat>().await.unwrap().id
    }

    /// A call with a session and an optional JSON body.
    pub async fn call(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> Response {
        let mut request = self.client.request(method, self.at(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str, token: &str) -> T {
        let response = self.get_with_token(path, token).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.unwrap()
    }
}

/// Asserts an error answer: status and `error.code`; returns the body.
pub async fn assert_error(response: Response, status: StatusCode, code: &str) -> ErrorBody {
    assert_eq!(response.status(), status, "expected {status} {code}");
    let body: ErrorBody = response.json().await.expect("an error body");
    assert_eq!(body.error.code, code, "message: {}", body.error.message);
    assert!(!body.error.message.is_empty());
    body
}
