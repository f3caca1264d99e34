//! The server's configuration: defaults, then an optional TOML file (`PARLEY_CONFIG`), then the
//! environment (`PARLEY_*`, and `DATABASE_URL`), into one typed struct.
use std::{fmt, net::SocketAddr, path::PathBuf};

use figment::{
    providers::{Env, Format, Serialized, Toml},
    Figment,
};
use parley_common::SignupMode;
use serde::{Deserialize, Serialize};

/// A value that must never reach a log line: `Debug` prints a placeholder.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address to listen on (`PARLEY_BIND`).
    pub bind: SocketAddr,
    /// Folder for the SQLite database, the generated secret and mailed files (`PARLEY_DATA_DIR`).
    pub data_dir: PathBuf,
    /// `postgres://…` or `sqlite://…`; empty means `<data_dir>/parley.db` (`DATABASE_URL`).
    pub database_url: Option<Secret>,
    /// The origin people reach the server at, e.g. `https://chat.example.org` (`PARLEY_PUBLIC_URL`).
    /// Makes session cookies `Secure` when it is https.
    pub public_url: Option<String>,
    /// Shown to clients (`PARLEY_INSTANCE_NAME`).
    pub instance_name: String,
    /// `verify` | `open` | `closed` (`PARLEY_SIGNUP`).
    pub signup: SignupMode,
    /// Key for code MACs; empty means generated once and kept in `<data_dir>/secret`
    /// (`PARLEY_SECRET`). Several nodes must share one.
    pub secret: Option<Secret>,
    /// `smtp://host:port`, `smtp://host?tls=required`, `smtps://user:pass@host` (`PARLEY_SMTP_URL`).
    /// Empty: mails are written as files into `mail_dir`.
    pub smtp_url: Option<Secret>,
    /// From address of outgoing mail (`PARLEY_MAIL_FROM`).
    pub mail_from: String,
    /// Serve HTTPS directly with this certificate chain and key (PEM files): `PARLEY_TLS_CERT`,
    /// `PARLEY_TLS_KEY`. Without them, plain HTTP (TLS at a proxy, or none on a private network).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Where mails go without SMTP; empty means `<data_dir>/mail` (`PARLEY_MAIL_DIR`).
    pub mail_dir: Option<PathBuf>,
    /// The built web UI (`scripts/build-ui.sh` writes `ui/dist`), served at `/` (`PARLEY_UI_DIR`).
    pub ui_dir: PathBuf,
    /// Largest accepted request body in bytes (`PARLEY_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// A session not used for this long expires (`PARLEY_SESSION_TTL_SECS`).
    pub session_ttl_secs: u64,
    /// A mailed code is valid this long (`PARLEY_CODE_TTL_SECS`).
    pub code_ttl_secs: u64,
    /// Wrong guesses a code survives (`PARLEY_CODE_MAX_ATTEMPTS`).
    pub code_max_attempts: u32,
    /// Minimum time between two codes for one signup (`PARLEY_RESEND_COOLDOWN_SECS`).
    pub resend_cooldown_secs: u64,
    /// Codes one signup may be sent in all, the first included (`PARLEY_MAX_CODES_PER_SIGNUP`).
    pub max_codes_per_signup: u32,
    /// Largest message body in bytes (`PARLEY_MAX_MESSAGE_BYTES`).
    pub max_message_bytes: usize,
    /// Frames queued for one connection before it is closed as too slow (`PARLEY_WS_QUEUE_LEN`).
    pub ws_queue_len: usize,
    /// How often the server pings a WebSocket (`PARLEY_WS_PING_SECS`).
    pub ws_ping_secs: u64,
    /// A WebSocket silent this long (no frame, no pong) is dead (`PARLEY_WS_IDLE_TIMEOUT_SECS`).
    pub ws_idle_timeout_secs: u64,
    /// Frames per second one connection may send, with a burst of twice that
    /// (`PARLEY_WS_FRAMES_PER_SEC`); beyond, it is closed as a flood.
    pub ws_frames_per_sec: u32,
    /// Most messages stored in one transaction (`PARLEY_MAX_COMMIT_BATCH`).
    pub max_commit_batch: usize,
    /// Bearer token for `GET /metrics`; without it only loopback peers may read them
    /// (`PARLEY_METRICS_TOKEN`).
    pub metrics_token: Option<Secret>,
    /// Request budgets of the auth routes (`PARLEY_RATE_LIMITS__LOGIN_PER_IP`, …).
    pub rate_limits: RateLimits,
    /// `tracing` filter, e.g. `info,parley_server=debug` (`PARLEY_LOG`).
    pub log: String,
}

/// Budgets as "requests per minute" with a burst of the same size. Zero turns a limit off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimits {
    pub signup_per_ip: u32,
    pub signup_per_email: u32,
    pub verify_per_ip: u32,
    pub verify_per_signup: u32,
    pub resend_per_ip: u32,
    pub resend_per_email: u32,
    pub login_per_ip: u32,
    pub login_per_email: u32,
    pub new_chat_per_user: u32,
    pub messages_per_user: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            signup_per_ip: 10,
            signup_per_email: 3,
            verify_per_ip: 30,
            verify_per_signup: 10,
            resend_per_ip: 10,
            resend_per_email: 5,
            login_per_ip: 30,
            login_per_email: 10,
            new_chat_per_user: 30,
            messages_per_user: 600,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            data_dir: PathBuf::from("data"),
            database_url: None,
            public_url: None,
            instance_name: "Parley".into(),
            signup: SignupMode::Verify,
            secret: None,
            smtp_url: None,
            mail_from: "Parley <parley@localhost>".into(),
            mail_dir: None,
            tls_cert: None,
            tls_key: None,
            ui_dir: PathBuf::from("ui/dist"),
            max_body_bytes: 64 * 1024,
            session_ttl_secs: 30 * 24 * 3600,
            code_ttl_secs: 10 * 60,
            code_max_attempts: 5,
            resend_cooldown_secs: 60,
            max_codes_per_signup: 10,
            max_message_bytes: 4096,
            ws_queue_len: 256,
            ws_ping_secs: 20,
            ws_idle_timeout_secs: 60,
            ws_frames_per_sec: 50,
            max_commit_batch: 256,
            metrics_token: None,
            rate_limits: RateLimits::default(),
            log: "info".into(),
        }
    }
}

impl Config {
    /// Reads the layers from the real environment.
    pub fn load() -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Ok(path) = std::env::var("PARLEY_CONFIG") {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment
            .merge(Env::prefixed("PARLEY_").ignore(&["CONFIG"]).split("__"))
            .merge(Env::raw().only(&["DATABASE_URL"]))
            .extract::<Config>()
            .map(Config::normalised)
            .map_err(Box::new)
    }

    /// Empty strings from the environment mean "not set".
    fn normalised(mut self) -> Self {
        fn empty_secret(s: &Option<Secret>) -> bool {
            s.as_ref().is_some_and(|s| s.0.trim().is_empty())
        }
        if empty_secret(&self.database_url) {
            self.database_url = None;
        }
        if empty_secret(&self.secret) {
            self.secret = None;
        }
        if empty_secret(&self.metrics_token) {
            self.metrics_token = None;
        }
        if empty_secret(&self.smtp_url) {
            self.smtp_url = None;
        }
        if self.public_url.as_deref().is_some_and(|u| u.trim().is_empty()) {
            self.public_url = None;
        }
        if self.tls_cert.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            self.tls_cert = None;
        }
        if self.tls_key.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            self.tls_key = None;
        }
        if let Some(url) = &mut self.public_url {
            *url = url.trim_end_matches('/').to_string();
        }
        self
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.0.clone(),
            None => format!("sqlite://{}", self.data_dir.join("parley.db").display()),
        }
    }

    pub fn mail_dir(&self) -> PathBuf {
        self.mail_dir.clone().unwrap_or_else(|| self.data_dir.join("mail"))
    }

    /// The certificate and key files, when HTTPS is served directly.
    pub fn tls_files(&self) -> Option<(&std::path::Path, &std::path::Path)> {
        Some((self.tls_cert.as_deref()?, self.tls_key.as_deref()?))
    }

    /// Whether cookies must carry `Secure`: the public origin is https, or we serve HTTPS.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.as_deref().is_some_and(|u| u.starts_with("https://")) || self.tls_files().is_some()
    }
}
