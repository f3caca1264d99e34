//! `/api/v1/auth/*` and `/api/v1/me`: thin adapters from HTTP to `accounts`.
use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use parley_common::{
    AccountExport, AuthResponse, DeleteAccountRequest, ErrorBody, ForgotPasswordRequest, LoginRequest, PasswordChange,
    PasswordResetPending, PasswordResetRequest, ProfileUpdate, ResendRequest, SessionList, SignupPending,
    SignupRequest, User, VerifyRequest,
};

use crate::{
    accounts::{self, user_view, Caller, NewLogin, SignupOutcome},
    error::{ApiJson, ApiPath, ApiResult},
    state::{clear_session_cookie_header, session_cookie_header, AppState, Session},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/signup", post(signup))
        .route("/api/v1/auth/verify", post(verify))
        .route("/api/v1/auth/resend", post(resend))
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/password/forgot", post(forgot_password))
        .route("/api/v1/auth/password/reset", post(reset_password))
        .route("/api/v1/me", get(me).patch(update_me).delete(delete_me))
        .route("/api/v1/me/export", get(export))
        .route("/api/v1/me/password", post(change_password))
        .route("/api/v1/sessions", get(sessions))
        .route("/api/v1/sessions/others", axum::routing::delete(revoke_others))
        .route("/api/v1/sessions/{id}", axum::routing::delete(revoke_session))
}

/// The session as JSON for native clients and as an HttpOnly cookie for browsers.
fn logged_in(state: &AppState, login: NewLogin) -> Response {
    let cookie = session_cookie_header(&state.config, &login.token);
    let body = AuthResponse { token: login.token, user: user_view(&login.user) };
    ([(header::SET_COOKIE, cookie)], ApiJson(body)).into_response()
}

/// Start an account. On a `verify` instance a 6-digit code is mailed and the signup waits for it;
/// on an `open` instance the account is created and logged in at once.
#[utoipa::path(post, path = "/api/v1/auth/signup", tag = "auth", request_body = SignupRequest,
    responses(
        (status = 202, description = "Code mailed (`verify` mode)", body = SignupPending),
        (status = 200, description = "Account created and logged in (`open` mode)", body = AuthResponse),
        (status = 403, description = "`signup_closed`", body = ErrorBody),
        (status = 409, description = "`email_taken`", body = ErrorBody),
        (status = 422, description = "`invalid_email`, `weak_password`, `invalid_display_name`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
        (status = 503, description = "`mail_unavailable`", body = ErrorBody),
    ))]
pub async fn signup(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<SignupRequest>,
) -> ApiResult<Response> {
    match accounts::signup(&state, &caller, &req.email, &req.password, &req.display_name).await? {
        SignupOutcome::Pending { signup_id } => {
            Ok((StatusCode::ACCEPTED, ApiJson(SignupPending { signup_id })).into_response())
        }
        SignupOutcome::Created(login) => Ok(logged_in(&state, login)),
    }
}

/// Complete a signup with the code mailed for it. The account gets that signup's password, and
/// every other pending signup of the email ends.
#[utoipa::path(post, path = "/api/v1/auth/verify", tag = "auth", request_body = VerifyRequest,
    responses(
        (status = 200, description = "Account created and logged in", body = AuthResponse),
        (status = 400, description = "`invalid_code`", body = ErrorBody),
        (status = 404, description = "`signup_not_found`", body = ErrorBody),
        (status = 409, description = "`email_taken`", body = ErrorBody),
        (status = 410, description = "`code_expired`, `code_attempts_exhausted`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ))]
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> ApiResult<Response> {
    let login = accounts::verify(&state, &caller, &req.signup_id, &req.code).await?;
    Ok(logged_in(&state, login))
}

/// Mail a new code for a pending signup (the old one stops working).
#[utoipa::path(post, path = "/api/v1/auth/resend", tag = "auth", request_body = ResendRequest,
    responses(
        (status = 202, description = "A new code was mailed", body = SignupPending),
        (status = 404, description = "`signup_not_found`", body = ErrorBody),
        (status = 410, description = "`too_many_codes`", body = ErrorBody),
        (status = 429, description = "`resend_too_soon`, `rate_limited` (see `Retry-After`)", body = ErrorBody),
        (status = 503, description = "`mail_unavailable`", body = ErrorBody),
    ))]
pub async fn resend(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<ResendRequest>,
) -> ApiResult<Response> {
    accounts::resend(&state, &caller, &req.signup_id).await?;
    Ok((StatusCode::ACCEPTED, ApiJson(SignupPending { signup_id: req.signup_id })).into_response())
}

/// Log in with email and password; a wrong email and a wrong password get the same answer.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = AuthResponse),
        (status = 401, description = "`invalid_credentials`", body = ErrorBody),
        (status = 403, description = "`email_not_verified`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let login = accounts::login(&state, &caller, &req.email, &req.password).await?;
    Ok(logged_in(&state, login))
}

/// Forgot the password: a code is mailed to the address if it has an account. The answer is the
/// same whether or not it has one.
#[utoipa::path(post, path = "/api/v1/auth/password/forgot", tag = "auth", request_body = ForgotPasswordRequest,
    responses(
        (status = 202, description = "A code was mailed if the address has an account", body = PasswordResetPending),
        (status = 422, description = "`invalid_email`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ))]
pub async fn forgot_password(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<ForgotPasswordRequest>,
) -> ApiResult<Response> {
    let reset_id = accounts::forgot_password(&state, &caller, &req.email).await?;
    Ok((StatusCode::ACCEPTED, ApiJson(PasswordResetPending { reset_id })).into_response())
}

/// Set a new password with the mailed code. Every session of the account ends (their sockets
/// close); the answer is a new session.
#[utoipa::path(post, path = "/api/v1/auth/password/reset", tag = "auth", request_body = PasswordResetRequest,
    responses(
        (status = 200, description = "Password changed and logged in", body = AuthResponse),
        (status = 400, description = "`invalid_code` (wrong, used or expired code, or no tries left)", body = ErrorBody),
        (status = 422, description = "`weak_password`, `invalid_password`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ))]
pub async fn reset_password(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<PasswordResetRequest>,
) -> ApiResult<Response> {
    let login = accounts::reset_password(&state, &caller, &req.reset_id, &req.code, &req.new_password).await?;
    Ok(logged_in(&state, login))
}

/// End this session (other devices stay logged in).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Session revoked"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ))]
pub async fn logout(State(state): State<AppState>, session: Session) -> ApiResult<Response> {
    accounts::logout(&state, session.id).await?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear_session_cookie_header(&state.config))]).into_response())
}

/// The logged-in user.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The caller's account", body = User),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ))]
pub async fn me(State(state): State<AppState>, session: Session) -> ApiResult<ApiJson<User>> {
    let user = state.store.user_by_id(session.user_id).await?.ok_or(crate::error::ApiError::Unauthorized)?;
    Ok(ApiJson(user_view(&user)))
}

/// Change your display name.
#[utoipa::path(patch, path = "/api/v1/me", tag = "auth", request_body = ProfileUpdate,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The updated account", body = User),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 422, description = "`invalid_display_name`", body = ErrorBody),
    ))]
pub async fn update_me(
    State(state): State<AppState>,
    session: Session,
    ApiJson(req): ApiJson<ProfileUpdate>,
) -> ApiResult<ApiJson<User>> {
    let user = accounts::change_display_name(&state, session.user_id, &req.display_name).await?;
    Ok(ApiJson(user_view(&user)))
}

/// Change your password (the current one is required); every other session ends.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "auth", request_body = PasswordChange,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Changed; other sessions revoked"),
        (status = 401, description = "`unauthorized`, or `invalid_credentials` for a wrong current password", body = ErrorBody),
        (status = 422, description = "`weak_password`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ))]
pub async fn change_password(
    State(state): State<AppState>,
    session: Session,
    ApiJson(req): ApiJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    accounts::change_password(&state, &session, &req.current_password, &req.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Your live sessions (devices and browsers), the one making this request marked `current`.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "auth",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Live sessions, most recently used first", body = SessionList),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ))]
pub async fn sessions(State(state): State<AppState>, session: Session) -> ApiResult<ApiJson<SessionList>> {
    Ok(ApiJson(accounts::list_sessions(&state, &session).await?))
}

/// End one of your sessions; its open sockets close at once.
#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "auth",
    params(("id" = i64, Path, description = "Session id")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found` (also for someone else's session)", body = ErrorBody),
    ))]
pub async fn revoke_session(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    accounts::revoke_session(&state, &session, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// End every session but this one.
#[utoipa::path(delete, path = "/api/v1/sessions/others", tag = "auth",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "All other sessions revoked"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ))]
pub async fn revoke_others(State(state): State<AppState>, session: Session) -> ApiResult<StatusCode> {
    accounts::revoke_other_sessions(&state, &session).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete your account, with its password. Every session ends (sockets close with 4001); your
/// friends see "Deleted user" in your place; the messages you sent stay in their chats under that
/// name (chats whose other member is gone too are deleted); the email can sign up again.
#[utoipa::path(delete, path = "/api/v1/me", tag = "auth", request_body = DeleteAccountRequest,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Deleted; the session cookie is cleared"),
        (status = 401, description = "`unauthorized`, or `invalid_credentials` for a wrong password", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ))]
pub async fn delete_me(
    State(state): State<AppState>,
    session: Session,
    ApiJson(req): ApiJson<DeleteAccountRequest>,
) -> ApiResult<Response> {
    accounts::delete_account(&state, &session, &req.password).await?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear_session_cookie_header(&state.config))]).into_response())
}

/// Everything the server keeps about your account, as a JSON file: the account, the privacy
/// setting, your sessions and blocks, and every chat with all its messages (oldest first).
#[utoipa::path(get, path = "/api/v1/me/export", tag = "auth",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Your data (sent as an attachment, `parley-export.json`)", body = AccountExport),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ))]
pub async fn export(State(state): State<AppState>, session: Session) -> ApiResult<Response> {
    let export = accounts::export(&state, &session).await?;
    let disposition = (header::CONTENT_DISPOSITION, "attachment; filename=\"parley-export.json\"");
    Ok(([disposition], ApiJson(export)).into_response())
}
