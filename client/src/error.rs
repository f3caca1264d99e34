//! The client's one error type, and the one place it becomes what the UI sees.
use parley_common::desktop::BridgeError;

use crate::cache::CacheError;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server cannot be reached (no network, refused, timed out).
    #[error("the server cannot be reached: {0}")]
    Network(String),
    /// The server's certificate was refused; the connection was not made.
    #[error("the server's certificate was refused: {0}")]
    Certificate(String),
    #[error("{0}")]
    NotParley(String),
    #[error("{0}")]
    InvalidUrl(String),
    #[error("no server address is set yet")]
    NoServer,
    #[error("not logged in")]
    NotLoggedIn,
    /// The server answered with an error body.
    #[error("{message}")]
    Server { code: String, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("local data: {0}")]
    Io(#[from] std::io::Error),
}

impl ClientError {
    /// Classifies a transport failure by walking its causes: a TLS certificate problem is told
    /// apart from a network one.
    pub fn from_transport(err: &(dyn std::error::Error + 'static)) -> Self {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
        let mut text = err.to_string();
        while let Some(current) = cause {
            if let Some(tls) = current.downcast_ref::<rustls::Error>() {
                if matches!(tls, rustls::Error::InvalidCertificate(_)) {
                    return ClientError::Certificate(tls.to_string());
                }
            }
            if let Some(io) = current.downcast_ref::<std::io::Error>() {
                if let Some(tls) = io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                    if matches!(tls, rustls::Error::InvalidCertificate(_)) {
                        return ClientError::Certificate(tls.to_string());
                    }
                }
            }
            let described = current.to_string();
            if !text.contains(&described) {
                text = format!("{text}: {described}");
            }
            cause = current.source();
        }
        if text.contains("invalid peer certificate") {
            return ClientError::Certificate(text);
        }
        ClientError::Network(text)
    }

    pub fn code(&self) -> &str {
        match self {
            ClientError::Network(_) => "network",
            ClientError::Certificate(_) => "certificate",
            ClientError::NotParley(_) => "not_parley",
            ClientError::InvalidUrl(_) => "invalid_url",
            ClientError::NoServer => "no_server",
            ClientError::NotLoggedIn => "unauthorized",
            ClientError::Server { code, .. } => code,
            ClientError::Invalid(_) => "invalid",
            ClientError::Cache(CacheError::UnknownChat(_)) => "chat_not_found",
            ClientError::Cache(_) | ClientError::Io(_) => "local_data",
        }
    }

    /// Errors after which the server may well answer if asked again later.
    pub fn is_transient(&self) -> bool {
        matches!(self, ClientError::Network(_))
    }
}

impl From<ClientError> for BridgeError {
    fn from(err: ClientError) -> Self {
        if matches!(err, ClientError::Cache(_) | ClientError::Io(_)) {
            tracing::error!(error = %err, "local data");
        }
        BridgeError::new(err.code(), err.to_string())
    }
}
