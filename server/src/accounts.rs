//! Account flows as plain functions over the app state: signup, code verification, resend,
//! login, sessions. Handlers in `routes::auth` only translate HTTP to these calls.
use parley_common::{SignupMode, User};

use crate::{
    clock::{now_millis, rfc3339},
    crypto::{self, new_code, new_session_token},
    domain::{DisplayName, Email, Password},
    error::{ApiError, ApiResult},
    mail::Mail,
    ratelimit::{take_all, Bucket},
    state::AppState,
    store::{CodeRenewal, NewSession, NewUser, PasswordResetRecord, SignupRecord, StoreError, UserRecord},
};

/// The MAC purpose for signup codes (a later reset code cannot stand in for one).
const SIGNUP_CODE: &str = "signup";
const RESET_CODE: &str = "password-reset";

/// Who is asking, as far as the transport tells.
#[derive(Debug, Clone)]
pub struct Caller {
    pub ip: String,
    pub user_agent: Option<String>,
}

pub fn user_view(user: &UserRecord) -> User {
    User {
        id: user.id,
        email: user.email.clone(),
        display_name: user.display_name.clone(),
        created_at: rfc3339(user.created_at),
    }
}

/// A fresh session for a user; the token is returned once and only its hash is kept.
pub struct NewLogin {
    pub token: String,
    pub user: UserRecord,
}

pub enum SignupOutcome {
    /// `verify` mode: a code was mailed for this signup.
    Pending { signup_id: String },
    /// `open` mode: the account exists and is logged in.
    Created(NewLogin),
}

pub async fn signup(
    state: &AppState,
    caller: &Caller,
    email: &str,
    password: &str,
    display_name: &str,
) -> ApiResult<SignupOutcome> {
    if state.config.signup == SignupMode::Closed {
        return Err(ApiError::SignupClosed);
    }
    take_all(&*state.limiter, &[(Bucket::SignupPerIp, &caller.ip)]).await?;
    let email = Email::parse(email)?;
    let display_name = DisplayName::parse(display_name)?;
    let password = Password::parse(password)?;
    take_all(&*state.limiter, &[(Bucket::SignupPerEmail, email.as_str())]).await?;

    if state.store.user_by_email(email.as_str()).await?.is_some() {
        return Err(ApiError::EmailTaken);
    }
    let password_hash = crypto::hash_password(password).await;
    let now = now_millis();

    if state.config.signup == SignupMode::Open {
        let user = state
            .store
            .create_user(NewUser {
                email: email.as_str(),
                display_name: display_name.as_str(),
                password_hash: &password_hash,
                now,
            })
            .await
            .map_err(conflict_is_email_taken)?;
        tracing::info!(user_id = user.id, "account created (open signup)");
        return Ok(SignupOutcome::Created(start_session(state, user, caller).await?));
    }

    let signup_id = uuid::Uuid::new_v4().to_string();
    let code = new_code();
    let record = SignupRecord {
        id: signup_id.clone(),
        email: email.as_str().to_string(),
        display_name: display_name.as_str().to_string(),
        password_hash,
        code_mac: state.key.seal_code(SIGNUP_CODE, &signup_id, &code),
        code_expires_at: now + state.config.code_ttl_secs as i64 * 1000,
        code_sent_at: now,
        codes_sent: 1,
        attempts: 0,
        created_at: now,
    };
    state.store.create_signup(&record).await?;
    if let Err(err) = send_code(state, &record.email, &code).await {
        // Without the mail the signup is useless; remove it rather than leave a dead row.
        state.store.delete_signup(&signup_id).await?;
        return Err(err);
    }
    tracing::info!(%signup_id, "signup pending, code sent");
    Ok(SignupOutcome::Pending { signup_id })
}

async fn send_code(state: &AppState, email: &str, code: &str) -> ApiResult<()> {
    let minutes = state.config.code_ttl_secs.div_ceil(60);
    let instance = &state.config.instance_name;
    let mail = Mail {
        to: email.to_string(),
        subject: format!("Your {instance} sign-up code"),
        body: format!(
            "Your {instance} sign-up code is:\n\n    {code}\n\n\
             It is valid for {minutes} minutes. If you did not sign up, ignore this mail: \
             no account is created without this code.\n"
        ),
    };
    state.mailer.send(mail).await.map_err(|err| {
        tracing::error!(error = %err, "could not send a code");
        ApiError::MailUnavailable
    })
}

pub async fn verify(state: &AppState, caller: &Caller, signup_id: &str, code: &str) -> ApiResult<NewLogin> {
    take_all(&*state.limiter, &[(Bucket::VerifyPerIp, &caller.ip), (Bucket::VerifyPerSignup, signup_id)]).await?;
    let signup = state.store.signup(signup_id).await?.ok_or(ApiError::SignupNotFound)?;
    let max_attempts = i64::from(state.config.code_max_attempts);
    if signup.attempts >= max_attempts {
        return Err(ApiError::CodeAttemptsExhausted);
    }
    if now_millis() > signup.code_expires_at {
        return Err(ApiError::CodeExpired);
    }
    // Spend the attempt before looking at the code, so parallel guesses share one budget.
    if !state.store.spend_code_attempt(signup_id, max_attempts).await? {
        return Err(ApiError::CodeAttemptsExhausted);
    }
    let code = code.trim();
    if !state.key.code_matches(SIGNUP_CODE, signup_id, code, &signup.code_mac) {
        let used = signup.attempts + 1;
        tracing::info!(%signup_id, attempts = used, "wrong signup code");
        if used >= max_attempts {
            return Err(ApiError::CodeAttemptsExhausted);
        }
        return Err(ApiError::InvalidCode { attempts_left: (max_attempts - used) as u32 });
    }
    let user = state.store.complete_signup(signup_id, now_millis()).await.map_err(|err| match err {
        StoreError::NotFound => ApiError::SignupNotFound,
        other => conflict_is_email_taken(other),
    })?;
    tracing::info!(user_id = user.id, %signup_id, "account verified");
    start_session(state, user, caller).await
}

pub async fn resend(state: &AppState, caller: &Caller, signup_id: &str) -> ApiResult<()> {
    take_all(&*state.limiter, &[(Bucket::ResendPerIp, &caller.ip)]).await?;
    // Per address too, so that many signups cannot make a mailbox of someone's a target.
    let email = state.store.signup(signup_id).await?.ok_or(ApiError::SignupNotFound)?.email;
    take_all(&*state.limiter, &[(Bucket::ResendPerEmail, &email)]).await?;
    let code = new_code();
    let now = now_millis();
    let cooldown_ms = state.config.resend_cooldown_secs as i64 * 1000;
    let sealed = state.key.seal_code(SIGNUP_CODE, signup_id, &code);
    let renewal = CodeRenewal {
        signup_id,
        code_mac: &sealed,
        expires_at: now + state.config.code_ttl_secs as i64 * 1000,
        now,
        sent_no_later_than: now - cooldown_ms,
        max_codes: i64::from(state.config.max_codes_per_signup),
    };
    let Some(signup) = state.store.renew_signup_code(renewal).await? else {
        // Say why the renewal was refused.
        let signup = state.store.signup(signup_id).await?.ok_or(ApiError::SignupNotFound)?;
        if signup.codes_sent >= i64::from(state.config.max_codes_per_signup) {
            return Err(ApiError::TooManyCodes);
        }
        let wait_ms = (signup.code_sent_at + cooldown_ms - now).max(0);
        return Err(ApiError::ResendTooSoon { retry_after_secs: (wait_ms as u64).div_ceil(1000).max(1) });
    };
    send_code(state, &signup.email, &code).await?;
    tracing::info!(%signup_id, codes_sent = signup.codes_sent, "code resent");
    Ok(())
}

pub async fn login(state: &AppState, caller: &Caller, email: &str, password: &str) -> ApiResult<NewLogin> {
    take_all(&*state.limiter, &[(Bucket::LoginPerIp, &caller.ip)]).await?;
    // A malformed email cannot have an account: same answer as a wrong password.
    let email = Email::parse(email).map_err(|_| ApiError::InvalidCredentials)?;
    take_all(&*state.limiter, &[(Bucket::LoginPerEmail, email.as_str())]).await?;
    // Exactly one password check whatever the case (account, pending signup, nobody), so the
    // answer's timing tells nothing.
    let user = state.store.user_by_email(email.as_str()).await?;
    if let Some(user) = user {
        if crypto::verify_password(password.to_string(), Some(user.password_hash.clone())).await {
            return start_session(state, user, caller).await;
        }
        return Err(ApiError::InvalidCredentials);
    }
    // "Not verified yet" only to someone who knows the newest pending signup's password; anyone
    // else learns nothing about whether the email is known.
    let newest_pending = state.store.signups_for_email(email.as_str()).await?.pop().map(|s| s.password_hash);
    if crypto::verify_password(password.to_string(), newest_pending).await {
        return Err(ApiError::EmailNotVerified);
    }
    Err(ApiError::InvalidCredentials)
}

pub async fn start_session(state: &AppState, user: UserRecord, caller: &Caller) -> ApiResult<NewLogin> {
    let (token, token_hash) = new_session_token();
    let now = now_millis();
    let user_agent = caller.user_agent.as_deref().map(|ua| truncate(ua, 256));
    state
        .store
        .create_session(NewSession {
            user_id: user.id,
            token_hash: &token_hash,
            user_agent,
            now,
            expires_at: now + state.config.session_ttl_secs as i64 * 1000,
        })
        .await?;
    Ok(NewLogin { token, user })
}

/// The session a token opens, if it is live. Use is recorded at most once a minute, so reads do
/// not all turn into writes.
pub async fn authenticate(state: &AppState, token: &str) -> ApiResult<crate::state::Session> {
    let session = state.store.session_by_token_hash(&crypto::hash_token(token)).await?.ok_or(ApiError::Unauthorized)?;
    let now = now_millis();
    if session.revoked_at.is_some() || session.expires_at <= now {
        return Err(ApiError::Unauthorized);
    }
    if now - session.last_used_at > 60_000 {
        let expires_at = now + state.config.session_ttl_secs as i64 * 1000;
        // Only bookkeeping: a database that cannot write (full, read-only) must not also lock
        // everyone out of reading their chats. The next request tries again.
        match state.store.touch_session(session.id, now, expires_at).await {
            Err(crate::store::StoreError::Unavailable(why)) => tracing::warn!(error = %why, "recording session use"),
            other => other?,
        }
    }
    Ok(crate::state::Session { id: session.id, user_id: session.user_id, via_cookie: false })
}

pub async fn change_display_name(state: &AppState, user_id: i64, display_name: &str) -> ApiResult<UserRecord> {
    let name = DisplayName::parse(display_name)?;
    state.store.set_display_name(user_id, name.as_str()).await?;
    state.store.user_by_id(user_id).await?.ok_or(ApiError::Unauthorized)
}

/// Needs the current password. Every other session of the account ends (and its sockets close):
/// whoever knew the old password is out.
pub async fn change_password(
    state: &AppState,
    session: &crate::state::Session,
    current: &str,
    new: &str,
) -> ApiResult<()> {
    let user = state.store.user_by_id(session.user_id).await?.ok_or(ApiError::Unauthorized)?;
    take_all(&*state.limiter, &[(Bucket::LoginPerEmail, &user.email)]).await?;
    let new = Password::parse(new)?;
    if !crypto::verify_password(current.to_string(), Some(user.password_hash)).await {
        return Err(ApiError::InvalidCredentials);
    }
    let hash = crypto::hash_password(new).await;
    state.store.set_password_hash(user.id, &hash).await?;
    revoke_other_sessions(state, session).await?;
    tracing::info!(user_id = user.id, "password changed; other sessions revoked");
    Ok(())
}

/// Starts a password reset: a code goes to the address if it has an account. The answer is the
/// same either way (a reset id; for an unknown address one that leads nowhere), and the mail is
/// sent after answering, so neither the answer nor its timing tells whether the email is known.
pub async fn forgot_password(state: &AppState, caller: &Caller, email: &str) -> ApiResult<String> {
    take_all(&*state.limiter, &[(Bucket::ResendPerIp, &caller.ip)]).await?;
    let email = Email::parse(email)?;
    take_all(&*state.limiter, &[(Bucket::ResendPerEmail, email.as_str())]).await?;
    let reset_id = uuid::Uuid::new_v4().to_string();
    let Some(user) = state.store.user_by_email(email.as_str()).await? else {
        tracing::info!("password reset asked for an unknown address");
        return Ok(reset_id);
    };
    let code = new_code();
    let now = now_millis();
    let record = PasswordResetRecord {
        id: reset_id.clone(),
        user_id: user.id,
        code_mac: state.key.seal_code(RESET_CODE, &reset_id, &code),
        code_expires_at: now + state.config.code_ttl_secs as i64 * 1000,
        attempts: 0,
        created_at: now,
    };
    // Replaces any earlier reset of the account: one live code at a time.
    state.store.replace_password_reset(&record).await?;
    let minutes = state.config.code_ttl_secs.div_ceil(60);
    let instance = state.config.instance_name.clone();
    let mail = Mail {
        to: user.email.clone(),
        subject: format!("Your {instance} password reset code"),
        body: format!(
            "Someone (we hope you) asked to set a new password for your {instance} account.\n\n\
             Your code is:\n\n    {code}\n\n\
             It is valid for {minutes} minutes. If it was not you, ignore this mail: your password \
             stays as it is.\n"
        ),
    };
    let mailer = state.mailer.clone();
    tokio::spawn(async move {
        if let Err(err) = mailer.send(mail).await {
            tracing::error!(error = %err, "could not send a password reset code");
        }
    });
    tracing::info!(user_id = user.id, "password reset code sent");
    Ok(reset_id)
}

/// Sets a new password with the mailed code. Every session of the account ends (and its sockets
/// close); the caller gets a new one. Whatever is wrong (unknown reset, wrong or expired code,
/// no tries left) gets the same answer, so a reset id says nothing about the address behind it.
pub async fn reset_password(
    state: &AppState,
    caller: &Caller,
    reset_id: &str,
    code: &str,
    new_password: &str,
) -> ApiResult<NewLogin> {
    take_all(&*state.limiter, &[(Bucket::VerifyPerIp, &caller.ip), (Bucket::VerifyPerSignup, reset_id)]).await?;
    let password = Password::parse(new_password)?;
    let max_attempts = i64::from(state.config.code_max_attempts);
    let Some(reset) = state.store.password_reset(reset_id).await? else {
        return Err(ApiError::InvalidResetCode);
    };
    if now_millis() > reset.code_expires_at {
        return Err(ApiError::InvalidResetCode);
    }
    // Spend the attempt before looking at the code, so parallel guesses share one budget.
    if !state.store.spend_reset_attempt(reset_id, max_attempts).await? {
        return Err(ApiError::InvalidResetCode);
    }
    if !state.key.code_matches(RESET_CODE, reset_id, code.trim(), &reset.code_mac) {
        tracing::info!(user_id = reset.user_id, attempts = reset.attempts + 1, "wrong password reset code");
        return Err(ApiError::InvalidResetCode);
    }
    let hash = crypto::hash_password(password).await;
    let revoked =
        state.store.complete_password_reset(reset_id, &hash, now_millis()).await.map_err(|err| match err {
            // Used up by a parallel request with the same code.
            StoreError::NotFound => ApiError::InvalidResetCode,
            other => other.into(),
        })?;
    for session_id in &revoked {
        state.relay.end_session(*session_id);
    }
    let user = state.store.user_by_id(reset.user_id).await?.ok_or(ApiError::InvalidResetCode)?;
    tracing::info!(user_id = user.id, sessions_ended = revoked.len(), "password reset");
    start_session(state, user, caller).await
}

pub async fn list_sessions(state: &AppState, session: &crate::state::Session) -> ApiResult<parley_common::SessionList> {
    let rows = state.store.live_sessions(session.user_id, now_millis()).await?;
    let sessions = rows
        .into_iter()
        .map(|row| parley_common::SessionInfo {
            id: row.id,
            device: row.user_agent.unwrap_or_else(|| "Unknown device".into()),
            created_at: rfc3339(row.created_at),
            last_used_at: rfc3339(row.last_used_at),
            current: row.id == session.id,
        })
        .collect();
    Ok(parley_common::SessionList { sessions })
}

/// Ends one of the caller's sessions (and closes its sockets); someone else's is "not found".
pub async fn revoke_session(state: &AppState, session: &crate::state::Session, session_id: i64) -> ApiResult<()> {
    if !state.store.revoke_session_of(session.user_id, session_id, now_millis()).await? {
        return Err(ApiError::NotFound);
    }
    state.relay.end_session(session_id);
    Ok(())
}

/// Ends every session of the caller's but this one.
pub async fn revoke_other_sessions(state: &AppState, session: &crate::state::Session) -> ApiResult<()> {
    for revoked in state.store.revoke_other_sessions(session.user_id, session.id, now_millis()).await? {
        state.relay.end_session(revoked);
    }
    Ok(())
}

/// Deletes the caller's account (its password required): every session ends and its sockets
/// close, its friends see "Deleted user" at once (a `chat_created` with the chat as it is now),
/// its messages stay in their chats under that name, and the email can sign up again.
pub async fn delete_account(state: &AppState, session: &crate::state::Session, password: &str) -> ApiResult<()> {
    let user = state.store.user_by_id(session.user_id).await?.ok_or(ApiError::Unauthorized)?;
    take_all(&*state.limiter, &[(Bucket::LoginPerEmail, &user.email)]).await?;
    if !crypto::verify_password(password.to_string(), Some(user.password_hash)).await {
        return Err(ApiError::InvalidCredentials);
    }
    let user_id = user.id;
    let deleted = crate::chats::detached(state, |state| async move {
        let deleted = state.store.delete_account(user_id, now_millis()).await.map_err(|err| match err {
            // Deleted meanwhile by another of its sessions.
            StoreError::NotFound => ApiError::Unauthorized,
            other => other.into(),
        })?;
        for (chat_id, crate::store::EventPos { user_id: friend, pos }) in &deleted.announced {
            let mut deliveries = Vec::new();
            match crate::chats::chat_created_event(&state, *friend, *chat_id, *pos).await {
                Ok(Some(event)) => deliveries.push((*friend, event, None)),
                // The event is stored: the friend's devices get it on their next sync.
                Ok(None) => {}
                Err(err) => tracing::warn!(error = %err, "telling a friend of a deleted account"),
            }
            crate::chats::publish_at(&state, *pos, deliveries);
        }
        Ok(deleted)
    })
    .await?;
    for session_id in &deleted.sessions {
        state.relay.end_session(*session_id);
    }
    tracing::info!(user_id = user.id, sessions_ended = deleted.sessions.len(), "account deleted");
    Ok(())
}

/// Everything the server keeps about the caller's account: the account, its settings, sessions
/// and blocks, and every chat with every message, as JSON.
pub async fn export(state: &AppState, session: &crate::state::Session) -> ApiResult<parley_common::AccountExport> {
    const PAGE: i64 = 1000;
    let user = state.store.user_by_id(session.user_id).await?.ok_or(ApiError::Unauthorized)?;
    let privacy = crate::privacy::privacy_settings(state, user.id).await?;
    let sessions = list_sessions(state, session).await?.sessions;
    let blocked = crate::privacy::blocked_users(state, user.id).await?.blocked;
    let mut chats = Vec::new();
    for chat in crate::chats::list_chats(state, user.id).await?.chats {
        let mut messages = Vec::new();
        let mut before = i64::MAX;
        loop {
            let page = state.store.messages_before(chat.id, before, PAGE).await?;
            let full = page.len() as i64 == PAGE;
            before = page.last().map_or(before, |m| m.seq);
            messages.extend(page.iter().map(crate::chats::message_view));
            if !full {
                break;
            }
        }
        messages.reverse();
        chats.push(parley_common::ExportedChat { chat, messages });
    }
    tracing::info!(user_id = user.id, chats = chats.len(), "account exported");
    Ok(parley_common::AccountExport {
        exported_at: rfc3339(now_millis()),
        account: user_view(&user),
        privacy,
        sessions,
        blocked,
        chats,
    })
}

pub async fn logout(state: &AppState, session_id: i64) -> ApiResult<()> {
    state.store.revoke_session(session_id, now_millis()).await?;
    state.relay.end_session(session_id);
    Ok(())
}

fn conflict_is_email_taken(err: StoreError) -> ApiError {
    match err {
        StoreError::Conflict => ApiError::EmailTaken,
        other => other.into(),
    }
}

fn truncate(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
