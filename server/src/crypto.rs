//! Every secret the server makes or checks: session tokens, one-time codes and their MACs,
//! password hashes, and the server's own key.
use std::{
    io::Write,
    path::Path,
    sync::{Arc, OnceLock},
};

use argon2::{
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use crate::domain::Password;

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

/// A fresh 256-bit session token, as handed to the client, and the hash stored in its place.
pub fn new_session_token() -> (String, Vec<u8>) {
    let token = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    let hash = hash_token(&token);
    (token, hash)
}

/// Tokens carry 256 bits of entropy, so one fast hash suffices: the database never holds a token
/// that would open a session, and lookups stay an index probe.
pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A uniformly random 6-digit code (rejection sampling avoids the modulo bias).
pub fn new_code() -> String {
    const RANGE: u32 = 1_000_000;
    let limit = u32::MAX - u32::MAX % RANGE;
    loop {
        let n = OsRng.next_u32();
        if n < limit {
            return format!("{:06}", n % RANGE);
        }
    }
}

/// The server's key for code MACs. Cheap to clone.
#[derive(Clone)]
pub struct ServerKey(Arc<[u8]>);

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(***)")
    }
}

type HmacSha256 = Hmac<Sha256>;

impl ServerKey {
    pub fn new(bytes: &[u8]) -> Self {
        ServerKey(Arc::from(bytes))
    }

    /// `PARLEY_SECRET` if given, else the key in `<data_dir>/secret`, made on first start.
    pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> std::io::Result<Self> {
        if let Some(secret) = configured {
            return Ok(Self::new(secret.as_bytes()));
        }
        let path = data_dir.join("secret");
        match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => return Ok(Self::new(text.trim().as_bytes())),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(data_dir)?;
        let secret = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path)?;
        file.write_all(secret.as_bytes())?;
        file.sync_all()?;
        tracing::info!(path = %path.display(), "generated a new server secret");
        Ok(Self::new(secret.as_bytes()))
    }

    fn code_mac(&self, purpose: &str, subject: &str, code: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        // Length-prefixed fields, so no two (purpose, subject, code) triples share an input.
        for part in [purpose, subject, code] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }

    /// What is stored in place of a code: bound to its purpose and to the one signup it completes.
    pub fn seal_code(&self, purpose: &str, subject: &str, code: &str) -> Vec<u8> {
        self.code_mac(purpose, subject, code).finalize().into_bytes().to_vec()
    }

    /// Constant-time check of a code against its stored MAC.
    pub fn code_matches(&self, purpose: &str, subject: &str, code: &str, sealed: &[u8]) -> bool {
        self.code_mac(purpose, subject, code).verify_slice(sealed).is_ok()
    }
}

/// argon2id with the crate's defaults (the OWASP-recommended m=19 MiB, t=2, p=1), off the async
/// threads.
pub async fn hash_password(password: Password) -> String {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.expose().as_bytes(), &salt)
            .expect("argon2 with default parameters cannot fail")
            .to_string()
    })
    .await
    .expect("password hashing task panicked")
}

/// Checks a password against a stored hash. With no usable hash (unknown account, or one made
/// without a password) it checks against a dummy one, so the answer takes as long either way.
pub async fn verify_password(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        // A missing or unusable hash (accounts without a password) is checked against the dummy,
        // and fails, in the same time as a real check.
        let real = stored.as_deref().and_then(|h| PasswordHash::new(h).ok());
        let dummy = PasswordHash::new(dummy_hash()).expect("the dummy hash parses");
        let ok = Argon2::default().verify_password(password.as_bytes(), real.as_ref().unwrap_or(&dummy)).is_ok();
        real.is_some() && ok
    })
    .await
    .expect("password verification task panicked")
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(b"parley-timing-equaliser", &salt).expect("argon2").to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_six_digits() {
        for _ in 0..1000 {
            let code = new_code();
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn a_code_matches_only_its_own_signup_and_purpose() {
        let key = ServerKey::new(b"k");
        let sealed = key.seal_code("signup", "s1", "123456");
        assert!(key.code_matches("signup", "s1", "123456", &sealed));
        assert!(!key.code_matches("signup", "s2", "123456", &sealed));
        assert!(!key.code_matches("reset", "s1", "123456", &sealed));
        assert!(!key.code_matches("signup", "s1", "123457", &sealed));
        assert!(!ServerKey::new(b"other").code_matches("signup", "s1", "123456", &sealed));
    }

    #[test]
    fn session_tokens_are_distinct_and_stored_hashed() {
        let (a, hash_a) = new_session_token();
        let (b, _) = new_session_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(hash_token(&a), hash_a);
        assert_ne!(hash_a, a.as_bytes());
    }

    #[tokio::test]
    async fn passwords_verify_only_against_their_hash() {
        let hash = hash_password(Password::parse("correct horse").unwrap()).await;
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse".into(), Some(hash.clone())).await);
        assert!(!verify_password("wrong horse!".into(), Some(hash)).await);
        assert!(!verify_password("parley-timing-equaliser".into(), None).await);
        assert!(!verify_password("!no-password".into(), Some("!no-password".into())).await);
    }

    #[test]
    fn a_generated_secret_is_kept_and_reused() {
        let dir = std::env::temp_dir().join(format!("parley-key-{}", uuid::Uuid::new_v4()));
        let first = ServerKey::load_or_create(None, &dir).unwrap();
        let second = ServerKey::load_or_create(None, &dir).unwrap();
        assert_eq!(first.0, second.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("secret")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
