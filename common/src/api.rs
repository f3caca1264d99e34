//! REST request and response bodies of `/api/v1`.
use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// How new accounts come to be on an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SignupMode {
    /// Signup sends a one-time code by email; the account exists once the code is entered.
    Verify,
    /// Signup creates the account at once (a private instance without a mail server).
    Open,
    /// No new accounts; an administrator creates them.
    Closed,
}

/// `GET /api/v1/instance`: what a client needs to know before anyone logs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct InstanceInfo {
    pub name: String,
    pub version: String,
    pub signup: SignupMode,
}

/// An account as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct User {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SignupRequest {
    pub email: String,
    #[cfg_attr(feature = "openapi", schema(min_length = 8))]
    pub password: String,
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub display_name: String,
}

/// Answer to a signup on a `verify` instance: a code was mailed for this pending signup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SignupPending {
    pub signup_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct VerifyRequest {
    pub signup_id: String,
    /// The 6-digit code from the email.
    pub code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ResendRequest {
    pub signup_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// A new session. Browsers also receive it as an HttpOnly cookie and need not keep `token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AuthResponse {
    /// Bearer token for `Authorization: Bearer <token>`.
    pub token: String,
    pub user: User,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Health {
    pub status: String,
    pub database: String,
}

/// `PATCH /api/v1/me`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ProfileUpdate {
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub display_name: String,
}

/// `POST /api/v1/me/password`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PasswordChange {
    pub current_password: String,
    #[cfg_attr(feature = "openapi", schema(min_length = 8))]
    pub new_password: String,
}

/// One of the caller's live sessions (a device or browser).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SessionInfo {
    pub id: i64,
    /// From the client's user agent.
    pub device: String,
    pub created_at: String,
    pub last_used_at: String,
    /// The session making this request.
    pub current: bool,
}

/// `GET /api/v1/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SessionList {
    pub sessions: Vec<SessionInfo>,
}

/// `POST /api/v1/auth/password/forgot`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ForgotPasswordRequest {
    pub email: String,
}

/// Answer to a forgotten password, the same whether or not the email has an account: if it has,
/// a code was mailed for this reset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PasswordResetPending {
    pub reset_id: String,
}

/// `POST /api/v1/auth/password/reset`: the mailed code and the new password. Every session of the
/// account ends; the answer is a new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PasswordResetRequest {
    pub reset_id: String,
    pub code: String,
    #[cfg_attr(feature = "openapi", schema(min_length = 8))]
    pub new_password: String,
}

/// `POST /api/v1/blocks`: block someone you share a chat with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct BlockRequest {
    pub user_id: i64,
}

/// Someone you have blocked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct BlockedUser {
    pub user_id: i64,
    pub email: String,
    pub display_name: String,
    /// When you blocked them (RFC 3339, UTC).
    pub blocked_at: String,
}

/// `GET /api/v1/blocks`: the people you have blocked, most recent first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct BlockList {
    pub blocked: Vec<BlockedUser>,
}

/// `GET` and `PUT /api/v1/me/privacy`. By default your presence and last seen show only to people
/// you have started a chat with or written to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PrivacySettings {
    /// Hide your presence and last seen from everyone; while hidden, you see nobody's either.
    pub hide_presence: bool,
}

/// `DELETE /api/v1/me`: deleting the account needs its password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DeleteAccountRequest {
    pub password: String,
}

/// One chat of an export, with every message in it, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ExportedChat {
    pub chat: crate::Chat,
    pub messages: Vec<crate::Message>,
}

/// `GET /api/v1/me/export`: everything the server keeps about your account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AccountExport {
    /// RFC 3339, UTC.
    pub exported_at: String,
    pub account: User,
    pub privacy: PrivacySettings,
    /// Your live sessions (devices).
    pub sessions: Vec<SessionInfo>,
    pub blocked: Vec<BlockedUser>,
    /// Your chats, most recent activity first.
    pub chats: Vec<ExportedChat>,
}
