//! The server's one error type, and the one place it becomes an HTTP response:
//! `{"error": {"code", "message"}}` with the right status.
use axum::{
    extract::rejection::{JsonRejection, PathRejection, QueryRejection},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use parley_common::{ErrorBody, ErrorDetail};

use crate::store::{StoreError, Unavailable};

/// What a client is told to wait before trying again while the database is unavailable.
const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// A field failed validation; `code` names which rule.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// A plain request to the WebSocket route.
    #[error("not a WebSocket upgrade: {0}")]
    NotWebSocket(String),
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("this instance does not accept new accounts")]
    SignupClosed,
    #[error("no pending signup with this id (it may have expired or been completed)")]
    SignupNotFound,
    #[error("wrong code; {attempts_left} attempt(s) left")]
    InvalidCode { attempts_left: u32 },
    #[error("this code has expired; ask for a new one")]
    CodeExpired,
    /// A password reset that cannot go ahead, for whatever reason (deliberately not told).
    #[error("this code is wrong, used or expired; ask for a new one if needed")]
    InvalidResetCode,
    #[error("too many wrong attempts; ask for a new code")]
    CodeAttemptsExhausted,
    #[error("no more codes can be sent for this signup; sign up again")]
    TooManyCodes,
    #[error("a code was sent moments ago; try again in {retry_after_secs} s")]
    ResendTooSoon { retry_after_secs: u64 },
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("this email is not verified yet; enter the code we mailed you")]
    EmailNotVerified,
    #[error("a valid session is required")]
    Unauthorized,
    #[error("cross-origin request refused")]
    ForbiddenOrigin,
    #[error("too many requests; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("not found")]
    NotFound,
    #[error("no account has this email")]
    UserNotFound,
    #[error("no such chat")]
    ChatNotFound,
    /// A send to someone the sender has blocked (told only to the blocker, who knows anyway).
    #[error("you have blocked this person; unblock them to write to them")]
    YouBlocked,
    #[error("mail could not be sent; try again later")]
    MailUnavailable,
    /// The database is away or cannot write; nothing is wrong with the request. The detail
    /// goes to the log, the client gets a message of its own.
    #[error("{}", unavailable_message(.0))]
    Unavailable(Unavailable),
    #[error("internal error")]
    Internal(String),
}

fn unavailable_message(why: &Unavailable) -> &'static str {
    match why {
        Unavailable::Unreachable(_) => "the database is unavailable; try again shortly",
        Unavailable::ReadOnly(_) => "the database is read-only for now, so nothing can be saved; try again later",
        Unavailable::Full(_) => "the server's storage is full, so nothing can be saved; try again later",
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Invalid { code, message: message.into() }
    }

    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            MalformedJson(_) | InvalidCode { .. } | InvalidResetCode | NotWebSocket(_) => StatusCode::BAD_REQUEST,
            UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            EmailTaken => StatusCode::CONFLICT,
            SignupClosed | EmailNotVerified | ForbiddenOrigin | YouBlocked => StatusCode::FORBIDDEN,
            SignupNotFound | NotFound | UserNotFound | ChatNotFound => StatusCode::NOT_FOUND,
            CodeExpired | CodeAttemptsExhausted | TooManyCodes => StatusCode::GONE,
            ResendTooSoon { .. } | RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            InvalidCredentials | Unauthorized => StatusCode::UNAUTHORIZED,
            MailUnavailable | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            Invalid { code, .. } => code,
            MalformedJson(_) => "malformed_json",
            UnsupportedMediaType(_) => "unsupported_media_type",
            PayloadTooLarge => "payload_too_large",
            NotWebSocket(_) => "not_websocket",
            EmailTaken => "email_taken",
            SignupClosed => "signup_closed",
            SignupNotFound => "signup_not_found",
            InvalidCode { .. } => "invalid_code",
            CodeExpired => "code_expired",
            InvalidResetCode => "invalid_code",
            CodeAttemptsExhausted => "code_attempts_exhausted",
            TooManyCodes => "too_many_codes",
            ResendTooSoon { .. } => "resend_too_soon",
            InvalidCredentials => "invalid_credentials",
            EmailNotVerified => "email_not_verified",
            Unauthorized => "unauthorized",
            ForbiddenOrigin => "forbidden_origin",
            RateLimited { .. } => "rate_limited",
            NotFound => "not_found",
            UserNotFound => "user_not_found",
            ChatNotFound => "chat_not_found",
            YouBlocked => "you_blocked",
            MailUnavailable => "mail_unavailable",
            ApiError::Unavailable(crate::store::Unavailable::Full(_)) => "storage_full",
            ApiError::Unavailable(_) => "unavailable",
            Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            // The detail stays in the log; the client learns only that it was our fault.
            ApiError::Internal(detail) => tracing::error!(error = %detail, "request failed"),
            ApiError::Unavailable(why) => tracing::warn!(error = %why, "request failed: database unavailable"),
            _ => {}
        }
        let retry_after = match &self {
            ApiError::RateLimited { retry_after_secs } | ApiError::ResendTooSoon { retry_after_secs } => {
                Some(*retry_after_secs)
            }
            ApiError::Unavailable(_) => Some(UNAVAILABLE_RETRY_AFTER_SECS),
            _ => None,
        };
        let body = ErrorBody { error: ErrorDetail { code: self.code().to_string(), message: self.to_string() } };
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(why) => ApiError::Unavailable(why),
            err => ApiError::Internal(err.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(rejection.body_text()),
            StatusCode::UNPROCESSABLE_ENTITY => ApiError::invalid("invalid_body", rejection.body_text()),
            _ => ApiError::MalformedJson(rejection.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::invalid("invalid_query", rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::invalid("invalid_path", rejection.body_text())
    }
}

/// `axum::extract::Query` whose rejections use our error body.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `axum::extract::Path` whose rejections use our error body.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `axum::Json` whose rejections use our error body.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}
