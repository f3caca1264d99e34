//! The server's REST API and WebSocket, over rustls (no OpenSSL) with the bundled web roots, the
//! system's roots and any the user added. TLS failures are reported as `certificate` errors,
//! never ignored.
use std::{sync::Arc, time::Duration};

use parley_common::{
    AccountExport, AuthResponse, BlockList, BlockRequest, Chat, ChatList, DeleteAccountRequest, ErrorBody,
    ForgotPasswordRequest, InstanceInfo, LoginRequest, NewChatRequest, PasswordChange, PasswordResetPending,
    PasswordResetRequest, PrivacySettings, ProfileUpdate, ResendRequest, SessionList, SignupPending, SignupRequest,
    User, VerifyRequest,
};
use reqwest::{Method, StatusCode, Url};
use serde::{de::DeserializeOwned, Serialize};
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, http::HeaderValue},
    Connector, MaybeTlsStream, WebSocketStream,
};

use crate::error::ClientError;

pub type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

const USER_AGENT: &str = concat!("Parley desktop/", env!("CARGO_PKG_VERSION"));

/// The roots a server certificate may chain to.
pub fn tls_config(extra_roots_pem: &[Vec<u8>]) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system root rustls cannot parse is skipped; the bundled roots still apply.
        let _ = roots.add(cert);
    }
    for pem in extra_roots_pem {
        for cert in CertificateDer::pem_slice_iter(pem).flatten() {
            if let Err(err) = roots.add(cert) {
                tracing::warn!(error = %err, "an extra root certificate was refused");
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A server address as people type it: `chat.example.org` means `https://chat.example.org`.
pub fn normalize_server_url(input: &str) -> Result<Url, ClientError> {
    let input = input.trim();
    let with_scheme = if input.contains("://") { input.to_string() } else { format!("https://{input}") };
    let mut url = Url::parse(&with_scheme).map_err(|e| ClientError::InvalidUrl(format!("{input}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(ClientError::InvalidUrl(format!("{input}: use an http:// or https:// address")));
    }
    url.set_query(None);
    url.set_fragment(None);
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&path);
    Ok(url)
}

#[derive(Clone)]
pub struct ServerApi {
    base: Url,
    http: reqwest::Client,
    tls: Arc<rustls::ClientConfig>,
}

impl ServerApi {
    pub fn new(base: Url, tls: Arc<rustls::ClientConfig>) -> Self {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client");
        ServerApi { base, http, tls }
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<(StatusCode, Option<T>), ClientError> {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| ClientError::from_transport(&e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| ClientError::from_transport(&e))?;
        if status.is_success() {
            if text.is_empty() {
                return Ok((status, None));
            }
            let value = serde_json::from_str(&text)
                .map_err(|_| ClientError::NotParley(format!("{} answered something unexpected", self.base)))?;
            return Ok((status, Some(value)));
        }
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => ClientError::Server { code: body.error.code, message: body.error.message },
            Err(_) => ClientError::NotParley(format!("{} answered {status}", self.base)),
        })
    }

    async fn expect<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
        self.call(method, path, token, body)
            .await?
            .1
            .ok_or_else(|| ClientError::NotParley(format!("{} answered with no body", self.base)))
    }

    pub async fn instance(&self) -> Result<InstanceInfo, ClientError> {
        self.expect(Method::GET, "/api/v1/instance", None, None::<&()>).await.map_err(|err| match err {
            ClientError::Server { .. } => ClientError::NotParley(format!("{} is not a Parley server", self.base)),
            other => other,
        })
    }

    /// `Ok(Err(pending))` when a code was mailed; `Ok(Ok(session))` on an `open` instance.
    pub async fn signup(&self, request: &SignupRequest) -> Result<Result<AuthResponse, SignupPending>, ClientError> {
        let (status, value) =
            self.call::<serde_json::Value>(Method::POST, "/api/v1/auth/signup", None, Some(request)).await?;
        let value = value.ok_or_else(|| ClientError::NotParley("signup answered with no body".into()))?;
        let unexpected = |_| ClientError::NotParley("signup answered something unexpected".into());
        if status == StatusCode::ACCEPTED {
            Ok(Err(serde_json::from_value(value).map_err(unexpected)?))
        } else {
            Ok(Ok(serde_json::from_value(value).map_err(unexpected)?))
        }
    }

    pub async fn verify(&self, request: &VerifyRequest) -> Result<AuthResponse, ClientError> {
        self.expect(Method::POST, "/api/v1/auth/verify", None, Some(request)).await
    }

    pub async fn resend(&self, request: &ResendRequest) -> Result<(), ClientError> {
        self.call::<serde_json::Value>(Method::POST, "/api/v1/auth/resend", None, Some(request)).await.map(|_| ())
    }

    pub async fn login(&self, request: &LoginRequest) -> Result<AuthResponse, ClientError> {
        self.expect(Method::POST, "/api/v1/auth/login", None, Some(request)).await
    }

    pub async fn forgot_password(&self, request: &ForgotPasswordRequest) -> Result<PasswordResetPending, ClientError> {
        self.expect(Method::POST, "/api/v1/auth/password/forgot", None, Some(request)).await
    }

    pub async fn reset_password(&self, request: &PasswordResetRequest) -> Result<AuthResponse, ClientError> {
        self.expect(Method::POST, "/api/v1/auth/password/reset", None, Some(request)).await
    }

    pub async fn logout(&self, token: &str) -> Result<(), ClientError> {
        self.call::<serde_json::Value>(Method::POST, "/api/v1/auth/logout", Some(token), None::<&()>).await.map(|_| ())
    }

    pub async fn me(&self, token: &str) -> Result<User, ClientError> {
        self.expect(Method::GET, "/api/v1/me", Some(token), None::<&()>).await
    }

    pub async fn chats(&self, token: &str) -> Result<ChatList, ClientError> {
        self.expect(Method::GET, "/api/v1/chats", Some(token), None::<&()>).await
    }

    pub async fn start_chat(&self, token: &str, email: String) -> Result<Chat, ClientError> {
        self.expect(Method::POST, "/api/v1/chats", Some(token), Some(&NewChatRequest { email })).await
    }

    pub async fn update_profile(&self, token: &str, update: &ProfileUpdate) -> Result<User, ClientError> {
        self.expect(Method::PATCH, "/api/v1/me", Some(token), Some(update)).await
    }

    pub async fn change_password(&self, token: &str, change: &PasswordChange) -> Result<(), ClientError> {
        self.call::<serde_json::Value>(Method::POST, "/api/v1/me/password", Some(token), Some(change)).await.map(|_| ())
    }

    pub async fn sessions(&self, token: &str) -> Result<SessionList, ClientError> {
        self.expect(Method::GET, "/api/v1/sessions", Some(token), None::<&()>).await
    }

    pub async fn revoke_session(&self, token: &str, session_id: i64) -> Result<(), ClientError> {
        let path = format!("/api/v1/sessions/{session_id}");
        self.call::<serde_json::Value>(Method::DELETE, &path, Some(token), None::<&()>).await.map(|_| ())
    }

    pub async fn revoke_other_sessions(&self, token: &str) -> Result<(), ClientError> {
        self.call::<serde_json::Value>(Method::DELETE, "/api/v1/sessions/others", Some(token), None::<&()>)
            .await
            .map(|_| ())
    }

    pub async fn block(&self, token: &str, user_id: i64) -> Result<(), ClientError> {
        let request = BlockRequest { user_id };
        self.call::<serde_json::Value>(Method::POST, "/api/v1/blocks", Some(token), Some(&request)).await.map(|_| ())
    }

    pub async fn unblock(&self, token: &str, user_id: i64) -> Result<(), ClientError> {
        let path = format!("/api/v1/blocks/{user_id}");
        self.call::<serde_json::Value>(Method::DELETE, &path, Some(token), None::<&()>).await.map(|_| ())
    }

    pub async fn blocked_users(&self, token: &str) -> Result<BlockList, ClientError> {
        self.expect(Method::GET, "/api/v1/blocks", Some(token), None::<&()>).await
    }

    pub async fn privacy(&self, token: &str) -> Result<PrivacySettings, ClientError> {
        self.expect(Method::GET, "/api/v1/me/privacy", Some(token), None::<&()>).await
    }

    pub async fn set_privacy(&self, token: &str, settings: &PrivacySettings) -> Result<PrivacySettings, ClientError> {
        self.expect(Method::PUT, "/api/v1/me/privacy", Some(token), Some(settings)).await
    }

    pub async fn export(&self, token: &str) -> Result<AccountExport, ClientError> {
        self.expect(Method::GET, "/api/v1/me/export", Some(token), None::<&()>).await
    }

    pub async fn delete_account(&self, token: &str, request: &DeleteAccountRequest) -> Result<(), ClientError> {
        self.call::<serde_json::Value>(Method::DELETE, "/api/v1/me", Some(token), Some(request)).await.map(|_| ())
    }

    /// Opens the WebSocket with the session as a Bearer token.
    pub async fn connect(&self, token: &str) -> Result<Socket, ClientError> {
        let mut ws_url = self.base.clone();
        let scheme = if self.base.scheme() == "https" { "wss" } else { "ws" };
        ws_url.set_scheme(scheme).expect("ws and wss are valid schemes");
        let mut request = format!("{}/api/v1/ws", ws_url.as_str().trim_end_matches('/'))
            .into_client_request()
            .map_err(|e| ClientError::InvalidUrl(e.to_string()))?;
        let headers = request.headers_mut();
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| ClientError::NotLoggedIn)?,
        );
        headers.insert("user-agent", HeaderValue::from_static(USER_AGENT));
        let connecting = tokio_tungstenite::connect_async_tls_with_config(
            request,
            None,
            false,
            Some(Connector::Rustls(self.tls.clone())),
        );
        match tokio::time::timeout(Duration::from_secs(15), connecting).await {
            Err(_) => Err(ClientError::Network("the server did not answer in time".into())),
            Ok(Ok((socket, _))) => Ok(socket),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response)))
                if response.status() == StatusCode::UNAUTHORIZED =>
            {
                Err(ClientError::NotLoggedIn)
            }
            Ok(Err(err)) => Err(ClientError::from_transport(&err)),
        }
    }
}
