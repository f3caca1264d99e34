//! Administration from the command line: `parley-server admin …`. Works on the configured
//! database directly, so a `closed` instance can still add people.
use std::io::Read;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

use crate::{
    clock::now_millis,
    config::Config,
    crypto,
    domain::{DisplayName, Email, Password},
    store::{self, BulkUser, NewUser, StoreError},
};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Password hash of accounts made in bulk: not a valid PHC string, so no password ever matches
/// it; such accounts use the session minted for them.
pub const NO_PASSWORD: &str = "!no-password";

/// Creates `count` verified accounts `<prefix>-<n>@<prefix>.invalid`, each with a session, and
/// writes `user_id<TAB>email<TAB>token` lines to `tokens_out` (readable by its owner only).
/// Passwords are not hashed one by one (argon2 at 100k accounts would take an hour): the
/// accounts get no password at all.
pub async fn create_users(
    config: &Config,
    count: usize,
    prefix: &str,
    tokens_out: &std::path::Path,
) -> Result<usize, AdminError> {
    if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(AdminError::Invalid("the prefix may hold letters, digits and '-'".into()));
    }
    let store = store::connect(&config.database_url()).await?;
    let mut lines = String::new();
    let now = now_millis();
    let expires = now + config.session_ttl_secs as i64 * 1000;
    const CHUNK: usize = 1000;
    for start in (0..count).step_by(CHUNK) {
        let mut tokens = Vec::new();
        let chunk: Vec<BulkUser> = (start..(start + CHUNK).min(count))
            .map(|n| {
                let (token, token_hash) = crypto::new_session_token();
                let email = format!("{prefix}-{n:06}@{prefix}.invalid");
                tokens.push((email.clone(), token));
                BulkUser {
                    email,
                    display_name: format!("{prefix} {n}"),
                    password_hash: NO_PASSWORD.into(),
                    token_hash,
                    now,
                    session_expires_at: expires,
                }
            })
            .collect();
        let ids = store.create_users_with_sessions(&chunk).await.map_err(|e| match e {
            StoreError::Conflict => AdminError::EmailTaken,
            other => other.into(),
        })?;
        for (id, (email, token)) in ids.into_iter().zip(tokens) {
            lines.push_str(&format!("{id}\t{email}\t{token}\n"));
        }
    }
    write_private(tokens_out, lines.as_bytes())?;
    Ok(count)
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

pub struct CreatedUser {
    pub id: i64,
    pub email: String,
    /// Set when the password was generated, so it can be shown once.
    pub generated_password: Option<String>,
}

/// Creates a verified account. The password comes from `password_from` (e.g. stdin), or is
/// generated when that is `None`.
pub async fn create_user(
    config: &Config,
    email: &str,
    display_name: &str,
    password_from: Option<&mut dyn Read>,
) -> Result<CreatedUser, AdminError> {
    let invalid = |e: crate::error::ApiError| AdminError::Invalid(e.to_string());
    let email = Email::parse(email).map_err(invalid)?;
    let display_name = DisplayName::parse(display_name).map_err(invalid)?;
    let (password, generated) = match password_from {
        Some(reader) => {
            let mut text = String::new();
            reader.read_to_string(&mut text)?;
            let line = text.lines().next().unwrap_or_default().to_string();
            (Password::parse(&line).map_err(invalid)?, None)
        }
        None => {
            let generated = URL_SAFE_NO_PAD.encode(crypto::random_bytes::<15>());
            (Password::parse(&generated).map_err(invalid)?, Some(generated))
        }
    };
    let store = store::connect(&config.database_url()).await?;
    let hash = crypto::hash_password(password).await;
    let user = store
        .create_user(NewUser {
            email: email.as_str(),
            display_name: display_name.as_str(),
            password_hash: &hash,
            now: now_millis(),
        })
        .await
        .map_err(|e| match e {
            StoreError::Conflict => AdminError::EmailTaken,
            other => other.into(),
        })?;
    Ok(CreatedUser { id: user.id, email: user.email, generated_password: generated })
}

/// Moves the history epoch on (see `chats::Cursors`); returns the new one. Nodes read the epoch
/// when they start, so this runs with every node stopped, as a restore does.
pub async fn after_restore(config: &Config) -> Result<i64, AdminError> {
    let store = store::connect(&config.database_url()).await?;
    Ok(store.advance_history_epoch().await?)
}
