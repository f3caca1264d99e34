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
    /// At start-up, how long to keep trying a database that cannot be reached yet before giving
    /// up with an error (`PARLEY_DATABASE_WAIT_SECS`); 0 gives up at once.
    pub database_wait_secs: u64,
    /// How long a request waits for a Postgres connection, so also how long it takes to answer
    /// 503 while the database is away (`PARLEY_DATABASE_ACQUIRE_TIMEOUT_MS`).
    pub database_acquire_timeout_ms: u64,
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
    /// Most messages stored in one transaction (`PARLEY_MAX_COMMIT_BATCH`, at most
    /// [`MAX_COMMIT_BATCH`]). Under load, batches are as large as this allows: 1,024 delivered
    /// ~60% more than 256 on SQLite and Postgres.
    pub max_commit_batch: usize,
    /// Batches of messages stored at once at most (`PARLEY_COMMIT_WRITERS`); beyond the first,
    /// only while many messages wait. On Postgres two deliver ~20% more than one under a heavy
    /// load. SQLite always has one.
    pub commit_writers: usize,
    /// Bearer token for `GET /metrics`; without it only loopback peers may read them
    /// (`PARLEY_METRICS_TOKEN`).
    pub metrics_token: Option<Secret>,
    /// Request budgets of the auth routes (`PARLEY_RATE_LIMITS__LOGIN_PER_IP`, …).
    pub rate_limits: RateLimits,
    /// `tracing` filter, e.g. `info,parley_server=debug` (`PARLEY_LOG`).
    pub log: String,
    /// Redis shared by several nodes on one database: live delivery between them, presence and
    /// rate limits (`PARLEY_REDIS_URL`, e.g. `redis://127.0.0.1:6379`). Without it the node is alone.
    pub redis_url: Option<Secret>,
    /// Prefix of every Redis key and channel (`PARLEY_REDIS_PREFIX`), so that several clusters can
    /// share one Redis. Every node of a cluster must use the same.
    pub redis_prefix: String,
    /// With Redis: the longest a node that died without a word keeps its users shown online, and
    /// the longest an event it committed but never published takes to reach the sockets of the
    /// other nodes (`PARLEY_PRESENCE_TTL_SECS`). Nodes renew their claims four times per period
    /// and compare their sockets with the store once per period.
    pub presence_ttl_secs: u64,
    /// Peers whose `X-Forwarded-For` names the client (`PARLEY_TRUSTED_PROXIES`): addresses or
    /// CIDR ranges, comma-separated, e.g. `127.0.0.1,10.0.0.0/8`. Anyone else's header is ignored.
    pub trusted_proxies: TrustedProxies,
}

/// The reverse proxies whose word on the client's address is taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<ipnet::IpNet>);

impl TrustedProxies {
    pub fn contains(&self, ip: &std::net::IpAddr) -> bool {
        let ip = canonical_ip(*ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Parses `a, b/24, …`; a bare address is a range of one.
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|part| !part.is_empty())
            .map(|part| {
                part.parse::<ipnet::IpNet>()
                    .or_else(|_| part.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("`{part}` is neither an IP address nor a CIDR range"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }
}

/// IPv4 peers of a dual-stack socket arrive as `::ffff:a.b.c.d`; ranges are written in IPv4.
pub fn canonical_ip(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    }
}

impl Serialize for TrustedProxies {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(ToString::to_string))
    }
}

impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = TrustedProxies;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a comma-separated string or a list of IP addresses and CIDR ranges")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                TrustedProxies::parse(v).map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut all = Vec::new();
                while let Some(part) = seq.next_element::<String>()? {
                    all.extend(TrustedProxies::parse(&part).map_err(serde::de::Error::custom)?.0);
                }
                Ok(TrustedProxies(all))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
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
            database_wait_secs: 60,
            database_acquire_timeout_ms: 5000,
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
            max_commit_batch: 1024,
            commit_writers: 2,
            metrics_token: None,
            rate_limits: RateLimits::default(),
            log: "info".into(),
            redis_url: None,
            redis_prefix: "parley:".into(),
            presence_ttl_secs: 30,
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

/// The largest `PARLEY_MAX_COMMIT_BATCH` allowed.
pub const MAX_COMMIT_BATCH: usize = 5_000;

impl Config {
    /// Reads the layers from the real environment.
    pub fn load() -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Ok(path) = std::env::var("PARLEY_CONFIG") {
            figment = figment.merge(Toml::file_exact(path));
        }
        Self::from_figment(
            figment
                .merge(Env::prefixed("PARLEY_").ignore(&["CONFIG"]).split("__"))
                .merge(Env::raw().only(&["DATABASE_URL"])),
        )
    }

    /// The configuration the layers describe.
    pub fn from_figment(figment: Figment) -> Result<Self, Box<figment::Error>> {
        figment
            .extract::<Config>()
            .map(Config::normalised)
            .map_err(Box::new)?
            .validated()
            .map_err(|message| Box::new(figment::Error::from(message)))
    }

    /// Settings that parse but cannot work.
    fn validated(self) -> Result<Self, String> {
        if let Some(url) = &self.public_url {
            // The Origin check compares whole origins: a path or a missing scheme would refuse
            // every browser write.
            let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
            if !rest.is_some_and(|host| !host.is_empty() && !host.contains('/')) {
                return Err(format!(
                    "PARLEY_PUBLIC_URL must be an origin such as https://chat.example.org (no path), not `{url}`"
                ));
            }
        }
        if self.presence_ttl_secs < 2 {
            return Err("PARLEY_PRESENCE_TTL_SECS must be at least 2".into());
        }
        // On SQLite one statement moves the counters of a batch's chats, five parameters for
        // each of up to one a message, under SQLite's 32,766 a statement; far past the default,
        // batches only add latency anyway.
        if !(1..=MAX_COMMIT_BATCH).contains(&self.max_commit_batch) {
            return Err(format!("PARLEY_MAX_COMMIT_BATCH must be between 1 and {MAX_COMMIT_BATCH}"));
        }
        Ok(self)
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
        if empty_secret(&self.redis_url) {
            self.redis_url = None;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with(key: &str, value: &str) -> Result<Config, Box<figment::Error>> {
        Config::from_figment(Figment::from(Serialized::defaults(Config::default())).merge((key, value)))
    }

    #[test]
    fn trusted_proxies_take_addresses_and_ranges_of_both_families() {
        let config = with("trusted_proxies", "127.0.0.1, 10.0.0.0/8 ::1,fd00::/8").unwrap();
        let trusted = |ip: &str| config.trusted_proxies.contains(&ip.parse().unwrap());
        assert!(trusted("127.0.0.1"));
        assert!(!trusted("127.0.0.2"));
        assert!(trusted("10.200.3.4"));
        assert!(trusted("::1"));
        assert!(trusted("fd12::7"));
        assert!(trusted("::ffff:10.1.2.3"), "an IPv4 peer on a dual-stack socket");
        assert!(!trusted("192.168.1.1"));
        assert!(Config::default().trusted_proxies.0.is_empty(), "nobody is trusted by default");
    }

    #[test]
    fn a_bad_trusted_proxy_is_a_configuration_error_that_names_it() {
        let err = with("trusted_proxies", "10.0.0.0/8, proxy.local").unwrap_err();
        assert!(err.to_string().contains("proxy.local"), "{err}");
    }

    #[test]
    fn a_commit_batch_must_be_one_a_statement_can_take() {
        let with_batch = |n: usize| {
            Config::from_figment(Figment::from(Serialized::defaults(Config::default())).merge(("max_commit_batch", n)))
        };
        assert_eq!(with_batch(4096).unwrap().max_commit_batch, 4096);
        for bad in [0, 20_000] {
            let err = with_batch(bad).unwrap_err();
            assert!(err.to_string().contains("PARLEY_MAX_COMMIT_BATCH"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_public_url_must_be_an_origin() {
        assert_eq!(
            with("public_url", "https://chat.example.org/").unwrap().public_url.as_deref(),
            Some("https://chat.example.org")
        );
        assert!(with("public_url", "http://127.0.0.1:8080").is_ok());
        for bad in ["chat.example.org", "https://chat.example.org/parley", "ftp://x"] {
            let err = with("public_url", bad).unwrap_err();
            assert!(err.to_string().contains("PARLEY_PUBLIC_URL"), "{bad}: {err}");
        }
    }

    #[test]
    fn an_empty_redis_url_means_none() {
        assert!(with("redis_url", " ").unwrap().redis_url.is_none());
        assert_eq!(
            with("redis_url", "redis://127.0.0.1:6379").unwrap().redis_url.map(|s| s.0).as_deref(),
            Some("redis://127.0.0.1:6379")
        );
    }
}
