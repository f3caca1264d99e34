//! Administration from the command line: `parley-server admin …`. Works on the configured
//! database directly, so a `closed` instance can still add people.
use std::io::Read;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

use crate::{
    clock::now_millis,
    config::Config,
    crypto,
    domain::{DisplayName, Email, Password},
    store::{self, NewUser, StoreError},
};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("reading the password from stdin: {0}")]
    Stdin(#[from] std::io::Error),
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
