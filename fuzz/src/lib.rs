//! The checks behind Parley's fuzz targets, one function per target. Each takes raw bytes as they
//! arrive from the other side, runs them through the decoding and validation the server (or a
//! client) does, and asserts what must hold; a panic or an allocation past libFuzzer's limits is a
//! finding.
//!
//! Shared: the fuzz targets in `fuzz_targets/` call these under libFuzzer (nightly), and
//! `server/tests/api/fuzz.rs` includes this file and replays every committed input of
//! `fuzz/corpus/` and `fuzz/seeds/` through the same functions on stable, in CI.
use std::{fmt::Debug, sync::OnceLock};

use parley_common::{
    AuthResponse, BlockList, BlockRequest, ChatList, ClientFrame, ErrorBody, ErrorDetail, Event, ForgotPasswordRequest,
    LoginRequest, MessagePage, NewChatRequest, PasswordChange, PasswordResetRequest, PrivacySettings, ProfileUpdate,
    ResendRequest, ServerFrame, SessionList, SignupRequest, SyncBatch, VerifyRequest,
};
use parley_server::{
    chats::{check_send, Cursors},
    config::Config,
    crypto::ServerKey,
    domain::{DisplayName, Email, Password, PASSWORD_MAX_BYTES, PASSWORD_MIN_CHARS},
    error::ApiError,
};
use serde::{de::DeserializeOwned, Serialize};

/// The limits the server runs with by default.
struct Limits {
    max_message_bytes: usize,
}

fn limits() -> &'static Limits {
    static LIMITS: OnceLock<Limits> = OnceLock::new();
    LIMITS.get_or_init(|| Limits { max_message_bytes: Config::default().max_message_bytes })
}

/// A WebSocket text frame from a client, as `ws::Receiver` takes it: decoded as a `ClientFrame`,
/// then the pure checks of the frame's handler (a `send`'s `client_id` and body, a `sync`'s
/// cursor), and the error frame a refusal is answered with.
pub fn client_frame(data: &[u8]) {
    let decoded = serde_json::from_slice::<ClientFrame>(data);
    // The server reads text frames, which the WebSocket layer has checked to be UTF-8, as `&str`:
    // both ways of reading must agree.
    if let Ok(text) = std::str::from_utf8(data) {
        let from_text = serde_json::from_str::<ClientFrame>(text);
        assert_eq!(decoded.as_ref().ok(), from_text.as_ref().ok(), "from_slice and from_str disagree");
    }
    let frame = match decoded {
        Ok(frame) => frame,
        Err(err) => {
            error_frame("bad_frame", format!("not a valid frame: {err}"), None);
            return;
        }
    };
    // What a client library encodes, the server decodes to the same frame.
    round_trip(&frame);
    match frame {
        ClientFrame::Send { client_id, body, .. } => {
            if let Err(err) = check_send(&client_id, &body, limits().max_message_bytes) {
                error_frame(err.code(), err.to_string(), Some(client_id));
            }
        }
        ClientFrame::Sync { since } => {
            // A server whose database was never restored, and one restored twice.
            for cursors in [Cursors::new(0), Cursors::new(2)] {
                match cursors.parse(since.as_deref()) {
                    Ok(pos) => {
                        assert!(pos >= 0, "a negative cursor was accepted: {since:?}");
                        // The cursor the server writes for a position reads back as that position.
                        assert_eq!(cursors.parse(Some(&cursors.string(pos))).ok(), Some(pos));
                    }
                    Err(err) => api_error_frame(&err),
                }
            }
        }
        ClientFrame::Read { .. } | ClientFrame::Typing { .. } | ClientFrame::Ping => {}
    }
}

/// A REST request body: every JSON body type of `/api/v1` tried on the same bytes, and whatever
/// decodes goes through the validation its handler does before touching the store.
pub fn request_bodies(data: &[u8]) {
    if let Some(r) = body::<SignupRequest>(data) {
        email(&r.email);
        display_name(&r.display_name);
        password(&r.password);
    }
    if let Some(r) = body::<VerifyRequest>(data) {
        code(&r.signup_id, &r.code);
    }
    body::<ResendRequest>(data);
    if let Some(r) = body::<LoginRequest>(data) {
        // (A malformed email at login then answers as a wrong password would.)
        email(&r.email);
    }
    if let Some(r) = body::<NewChatRequest>(data) {
        email(&r.email);
    }
    if let Some(r) = body::<ProfileUpdate>(data) {
        display_name(&r.display_name);
    }
    if let Some(r) = body::<PasswordChange>(data) {
        password(&r.new_password);
    }
    if let Some(r) = body::<ForgotPasswordRequest>(data) {
        email(&r.email);
    }
    if let Some(r) = body::<PasswordResetRequest>(data) {
        password(&r.new_password);
        code(&r.reset_id, &r.code);
    }
    // Ids and flags only: the store decides about them.
    body::<BlockRequest>(data);
    body::<PrivacySettings>(data);
}

/// What clients decode: frames from the socket and the bodies of `sync` and the other answers.
/// Whatever decodes must encode and decode again to the same value, and an event must read the
/// same live (a frame) and replayed (in a batch).
pub fn server_frame(data: &[u8]) {
    let frame = serde_json::from_slice::<ServerFrame>(data).ok();
    if let Some(frame) = &frame {
        round_trip(frame);
    }
    if let Ok(event) = serde_json::from_slice::<Event>(data) {
        round_trip(&event);
        assert_eq!(frame, Some(ServerFrame::Event(event.clone())), "an event decodes alike as a frame");
        assert_eq!(
            serde_json::to_value(ServerFrame::Event(event.clone())).expect("frames serialise"),
            serde_json::to_value(&event).expect("events serialise"),
            "an event encodes alike live and replayed"
        );
    }
    decodes_and_round_trips::<SyncBatch>(data);
    decodes_and_round_trips::<ChatList>(data);
    decodes_and_round_trips::<MessagePage>(data);
    decodes_and_round_trips::<AuthResponse>(data);
    decodes_and_round_trips::<ErrorBody>(data);
    decodes_and_round_trips::<SessionList>(data);
    decodes_and_round_trips::<BlockList>(data);
}

fn decodes_and_round_trips<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<T>(data) {
        round_trip(&value);
    }
}

/// Decodes a request body as axum's `Json` extractor does (trailing data refused), round-trips
/// it, and hands it over.
fn body<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) -> Option<T> {
    let value = serde_json::from_slice::<T>(data).ok()?;
    round_trip(&value);
    Some(value)
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) {
    let json = serde_json::to_vec(value).expect("what decoded serialises");
    let again: T = serde_json::from_slice(&json).expect("what was encoded decodes");
    assert_eq!(&again, value, "a round trip changed the value");
}

/// `Email::parse` normalises to a fixed point within the length limits, or refuses.
fn email(raw: &str) {
    match Email::parse(raw) {
        Ok(email) => {
            let s = email.as_str();
            assert!(!s.is_empty() && s.len() <= 254, "an email of {} bytes was accepted", s.len());
            assert_eq!(s, s.trim(), "an accepted email keeps surrounding spaces");
            assert_eq!(Email::parse(s).ok().as_ref(), Some(&email), "a parsed email does not parse to itself");
        }
        Err(err) => error_body(&err),
    }
}

fn display_name(raw: &str) {
    match DisplayName::parse(raw) {
        Ok(name) => {
            let s = name.as_str();
            assert!((1..=64).contains(&s.chars().count()), "a display name of {} chars", s.chars().count());
            assert_eq!(DisplayName::parse(s).ok().as_ref(), Some(&name), "a parsed name does not parse to itself");
        }
        Err(err) => error_body(&err),
    }
}

fn password(raw: &str) {
    match Password::parse(raw) {
        Ok(password) => {
            let s = password.expose();
            assert!(s.chars().count() >= PASSWORD_MIN_CHARS && s.len() <= PASSWORD_MAX_BYTES);
            assert_eq!(format!("{password:?}"), "Password(***)", "a password shows in logs");
        }
        Err(err) => error_body(&err),
    }
}

/// A signup or reset code checked as `accounts::verify` does: trimmed, against the MAC of the code
/// mailed for this very signup. Only that code opens it.
fn code(subject: &str, raw: &str) {
    const MAILED: &str = "123456";
    static KEY: OnceLock<ServerKey> = OnceLock::new();
    let key = KEY.get_or_init(|| ServerKey::new(b"a fixed key for fuzzing, 32 byte"));
    let sealed = key.seal_code("signup", subject, MAILED);
    assert_eq!(key.code_matches("signup", subject, raw.trim(), &sealed), raw.trim() == MAILED);
    assert!(!key.code_matches("password-reset", subject, raw.trim(), &sealed), "a code crossed purposes");
}

/// The error frame the server would send; it must serialise and clients must read it back.
fn error_frame(code: &str, message: String, client_id: Option<String>) {
    let frame = ServerFrame::Error { code: code.into(), message, client_id };
    let text = serde_json::to_string(&frame).expect("frames serialise");
    let again: ServerFrame = serde_json::from_str(&text).expect("clients read error frames");
    assert_eq!(again, frame);
}

fn api_error_frame(err: &ApiError) {
    error_frame(err.code(), err.to_string(), None);
}

/// The JSON error body a REST refusal answers with (`ApiError::into_response`).
fn error_body(err: &ApiError) {
    let _ = err.status();
    let body = ErrorBody { error: ErrorDetail { code: err.code().to_string(), message: err.to_string() } };
    round_trip(&body);
}
