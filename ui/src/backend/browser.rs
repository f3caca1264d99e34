//! The browser side of the seam: REST over `fetch` (the session rides in the HttpOnly cookie,
//! which scripts never see) and the live connection over a `WebSocket`, with reconnection,
//! catch-up from the cursor and an outbox of unacknowledged messages.
use std::{cell::RefCell, collections::BTreeMap, rc::Rc};

use gloo_timers::callback::{Interval, Timeout};
use parley_common::{
    ws::close, AuthResponse, BlockList, BlockRequest, Chat, ChatList, ClientFrame, DeleteAccountRequest, ErrorBody,
    ForgotPasswordRequest, InstanceInfo, MessagePage, PasswordChange, PasswordResetPending, PasswordResetRequest,
    PrivacySettings, ProfileUpdate, ServerFrame, SessionList, SignupPending, User,
};
use serde::{de::DeserializeOwned, Serialize};
use wasm_bindgen::{closure::Closure, JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{CloseEvent, MessageEvent, WebSocket};
use yew::Callback;

use super::{new_client_id, Backend, Connection, Incoming, LocalFuture, SignupOutcome, UiError, UiResult};

/// Client-side heartbeat: a `ping` this often, and a connection silent for `DEAD_AFTER_MS` is
/// given up and reopened (browsers can take minutes to notice a vanished network).
const PING_EVERY_MS: u32 = 20_000;
const DEAD_AFTER_MS: f64 = 50_000.0;
const MAX_BACKOFF_SECS: u32 = 30;
/// How long a send refused for a passing reason waits before it is offered again.
const RETRY_SEND_MS: u32 = 5_000;

#[derive(Default)]
pub struct BrowserBackend {
    live: Rc<RefCell<Live>>,
}

impl BrowserBackend {
    pub fn new() -> Self {
        Self::default()
    }
}

/// The live connection's state, shared with the socket's event handlers.
#[derive(Default)]
struct Live {
    wanted: bool,
    listener: Option<Callback<Incoming>>,
    socket: Option<WebSocket>,
    /// Bumped per socket, so handlers of an old socket do nothing.
    generation: u64,
    /// After `hello`: frames may be sent.
    ready: bool,
    cursor: Option<String>,
    /// Replaying from the cursor: live events must not move it until caught up.
    catching_up: bool,
    /// The server refused the cursor: a snapshot of the chats is being fetched to start again
    /// from, and until it comes there is no cursor to keep.
    reloading: bool,
    /// Unacknowledged `send` frames, in the order they were written.
    outbox: Vec<(String, ClientFrame)>,
    /// Read markers not yet sent, per chat.
    unsent_reads: BTreeMap<i64, i64>,
    attempt: u32,
    last_heard: f64,
    retry: Option<Timeout>,
    heartbeat: Option<Interval>,
    /// Offers the outbox again after the server refused a send for a passing reason.
    outbox_retry: Option<Timeout>,
    /// Fetches the snapshot again after a failed try.
    reload_retry: Option<Timeout>,
    handlers: Vec<Box<dyn std::any::Any>>,
    page_hooks: bool,
}

impl Live {
    fn emit(&self, incoming: Incoming) {
        if let Some(listener) = &self.listener {
            listener.emit(incoming);
        }
    }

    fn send_frame(&self, frame: &ClientFrame) -> bool {
        match (&self.socket, self.ready) {
            (Some(socket), true) => socket.send_with_str(&serde_json::to_string(frame).expect("frame")).is_ok(),
            _ => false,
        }
    }
}

fn ws_url() -> String {
    let location = web_sys::window().expect("window").location();
    let scheme = if location.protocol().unwrap_or_default() == "https:" { "wss" } else { "ws" };
    format!("{scheme}://{}/api/v1/ws", location.host().unwrap_or_default())
}

fn open(live: &Rc<RefCell<Live>>) {
    let mut state = live.borrow_mut();
    if !state.wanted {
        return;
    }
    state.generation += 1;
    state.ready = false;
    state.retry = None;
    let generation = state.generation;
    state.emit(Incoming::Connection(Connection::Connecting));
    let socket = match WebSocket::new(&ws_url()) {
        Ok(socket) => socket,
        Err(_) => {
            drop(state);
            schedule_reconnect(live);
            return;
        }
    };
    let on_message = {
        let live = live.clone();
        Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if let Some(text) = event.data().as_string() {
                on_frame(&live, generation, &text);
            }
        })
    };
    let on_close = {
        let live = live.clone();
        Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| on_closed(&live, generation, event.code()))
    };
    socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    state.handlers = vec![Box::new(on_message), Box::new(on_close)];
    state.socket = Some(socket);
    state.last_heard = js_sys::Date::now();
    let heartbeat_live = live.clone();
    state.heartbeat = Some(Interval::new(PING_EVERY_MS, move || {
        let state = heartbeat_live.borrow();
        if state.generation != generation {
            return;
        }
        if js_sys::Date::now() - state.last_heard > DEAD_AFTER_MS {
            if let Some(socket) = &state.socket {
                let _ = socket.close();
            }
        } else {
            state.send_frame(&ClientFrame::Ping);
        }
    }));
}

/// A page leaving for the back/forward cache keeps its sockets open in some browsers, and the user
/// would look online while gone: close on `pagehide`, come back on `pageshow`.
fn install_page_hooks(live: &Rc<RefCell<Live>>) {
    if std::mem::replace(&mut live.borrow_mut().page_hooks, true) {
        return;
    }
    let window = web_sys::window().expect("window");
    let hide = {
        let live = live.clone();
        Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            if let Some(socket) = &live.borrow().socket {
                let _ = socket.close_with_code(1000);
            }
        })
    };
    let show = {
        let live = live.clone();
        Closure::<dyn FnMut(web_sys::PageTransitionEvent)>::new(move |event: web_sys::PageTransitionEvent| {
            let reopen = event.persisted() && {
                let state = live.borrow();
                state.wanted && state.socket.is_none()
            };
            if reopen {
                open(&live);
            }
        })
    };
    let _ = window.add_event_listener_with_callback("pagehide", hide.as_ref().unchecked_ref());
    let _ = window.add_event_listener_with_callback("pageshow", show.as_ref().unchecked_ref());
    // They live as long as the page.
    hide.forget();
    show.forget();
}

fn schedule_reconnect(live: &Rc<RefCell<Live>>) {
    let mut state = live.borrow_mut();
    if !state.wanted {
        return;
    }
    // Exponential backoff with jitter, so that clients of a restarted server do not return in step.
    let ceiling = 2u32.saturating_pow(state.attempt).min(MAX_BACKOFF_SECS);
    let jitter = 0.5 + js_sys::Math::random() * 0.5;
    let delay_ms = (f64::from(ceiling) * 1000.0 * jitter) as u32;
    state.attempt = state.attempt.saturating_add(1);
    state
        .emit(Incoming::Connection(Connection::Reconnecting { retry_in_secs: delay_ms.div_ceil(1000), problem: None }));
    let live_again = live.clone();
    state.retry = Some(Timeout::new(delay_ms, move || open(&live_again)));
}

fn on_closed(live: &Rc<RefCell<Live>>, generation: u64, code: u16) {
    {
        let mut state = live.borrow_mut();
        if state.generation != generation {
            return;
        }
        state.socket = None;
        state.ready = false;
        state.heartbeat = None;
        if code == close::SESSION_ENDED {
            state.wanted = false;
            state.emit(Incoming::Connection(Connection::Off));
            state.emit(Incoming::SessionEnded);
            return;
        }
    }
    schedule_reconnect(live);
}

fn on_frame(live: &Rc<RefCell<Live>>, generation: u64, text: &str) {
    let mut state = live.borrow_mut();
    if state.generation != generation {
        return;
    }
    state.last_heard = js_sys::Date::now();
    let Ok(frame) = serde_json::from_str::<ServerFrame>(text) else {
        web_sys::console::warn_1(&JsValue::from_str("parley: unreadable frame"));
        return;
    };
    match frame {
        ServerFrame::Hello { user, cursor } => {
            state.ready = true;
            state.attempt = 0;
            state.emit(Incoming::Connection(Connection::Online));
            state.emit(Incoming::Hello(user));
            match state.cursor.clone() {
                // The snapshot on its way brings the cursor, and the catch-up from it.
                _ if state.reloading => state.catching_up = true,
                Some(since) if since != cursor => {
                    state.catching_up = true;
                    state.send_frame(&ClientFrame::Sync { since: Some(since) });
                }
                // Nothing to replay, even if the last socket closed in the middle of a catch-up:
                // live events move the cursor from here on.
                _ => {
                    state.cursor = Some(cursor);
                    state.catching_up = false;
                }
            }
            // Everything written while away goes out again, in order, under the same client_ids.
            for (_, frame) in &state.outbox {
                state.send_frame(frame);
            }
            let reads = std::mem::take(&mut state.unsent_reads);
            for (chat_id, up_to) in reads {
                state.send_frame(&ClientFrame::Read { chat_id, up_to });
            }
        }
        ServerFrame::SyncBatch { events, next, more } => {
            for event in events {
                state.emit(Incoming::Event(event));
            }
            state.cursor = Some(next.clone());
            if more {
                state.send_frame(&ClientFrame::Sync { since: Some(next) });
            } else {
                state.catching_up = false;
            }
        }
        ServerFrame::Event(event) => {
            if !state.catching_up {
                state.cursor = Some(event.cursor().to_string());
            }
            state.emit(Incoming::Event(event));
        }
        ServerFrame::Ack { client_id, message, cursor } => {
            state.outbox.retain(|(id, _)| *id != client_id);
            if !state.catching_up {
                state.cursor = Some(cursor);
            }
            state.emit(Incoming::Ack { client_id, message });
        }
        ServerFrame::Error { code, client_id: Some(_), .. }
            if parley_common::ws::RETRYABLE_SEND_ERRORS.contains(&code.as_str()) =>
        {
            if state.outbox_retry.is_none() {
                let live = live.clone();
                state.outbox_retry = Some(Timeout::new(RETRY_SEND_MS, move || {
                    let mut state = live.borrow_mut();
                    state.outbox_retry = None;
                    for (_, frame) in &state.outbox {
                        state.send_frame(frame);
                    }
                }));
            }
        }
        ServerFrame::Error { code, message, client_id: Some(client_id) } => {
            state.outbox.retain(|(id, _)| *id != client_id);
            state.emit(Incoming::SendFailed { client_id, code, message });
        }
        ServerFrame::Error { code, client_id: None, .. }
            if code == parley_common::ws::INVALID_CURSOR && state.catching_up && !state.reloading =>
        {
            // What is shown may lack events the server can no longer replay from our cursor (its
            // database restored from a backup, say): start again from a snapshot.
            state.cursor = None;
            state.reloading = true;
            drop(state);
            reload_snapshot(live.clone());
        }
        ServerFrame::Error { code, message, client_id: None } => {
            web_sys::console::warn_1(&JsValue::from_str(&format!("parley: {code}: {message}")));
        }
        ServerFrame::Presence { user_id, online, last_seen } => {
            state.emit(Incoming::Presence { user_id, online, last_seen })
        }
        ServerFrame::Typing { chat_id, user_id } => state.emit(Incoming::Typing { chat_id, user_id }),
        ServerFrame::Pong => {}
    }
}

/// Fetches the chats as they are now, shows them in place of what was shown, and catches up from
/// their cursor (a live connection at once, a later one from its `hello`). Tried again until it
/// succeeds or the connection is no longer wanted.
fn reload_snapshot(live: Rc<RefCell<Live>>) {
    wasm_bindgen_futures::spawn_local(async move {
        let list = get::<ChatList>("/api/v1/chats").await;
        let mut state = live.borrow_mut();
        if !state.wanted || !state.reloading {
            return;
        }
        let list = match list {
            Ok(list) => list,
            Err(_) => {
                let again = live.clone();
                state.reload_retry = Some(Timeout::new(RETRY_SEND_MS, move || reload_snapshot(again)));
                return;
            }
        };
        state.reloading = false;
        state.emit(Incoming::Resynced(list.chats));
        state.cursor = Some(list.cursor.clone());
        // Events after the snapshot's cursor may have arrived live before it came: the catch-up
        // replays them, and applying them twice changes nothing.
        if state.ready {
            state.catching_up = true;
            state.send_frame(&ClientFrame::Sync { since: Some(list.cursor) });
        }
    });
}

/// One REST call; the error body becomes a `UiError`.
async fn call<T: DeserializeOwned>(
    method: &str,
    path: &str,
    body: Option<&impl Serialize>,
) -> UiResult<(u16, Option<T>)> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    init.set_credentials(web_sys::RequestCredentials::SameOrigin);
    if let Some(body) = body {
        init.set_body(&JsValue::from_str(&serde_json::to_string(body).expect("body")));
    }
    let network = |_| UiError::network("the server cannot be reached");
    let request = web_sys::Request::new_with_str_and_init(path, &init).map_err(network)?;
    if body.is_some() {
        request.headers().set("content-type", "application/json").map_err(network)?;
    }
    let window = web_sys::window().expect("window");
    let response: web_sys::Response =
        JsFuture::from(window.fetch_with_request(&request)).await.map_err(network)?.dyn_into().map_err(network)?;
    let status = response.status();
    let text =
        JsFuture::from(response.text().map_err(network)?).await.map_err(network)?.as_string().unwrap_or_default();
    if (200..300).contains(&status) {
        let value = if text.is_empty() { None } else { serde_json::from_str(&text).ok() };
        return Ok((status, value));
    }
    Err(match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => UiError { code: body.error.code, message: body.error.message },
        Err(_) => UiError { code: "http".into(), message: format!("the server answered {status}") },
    })
}

const EXPORT_FILE: &str = "parley-export.json";

/// Hands `text` to the browser as a file download named `name`.
fn download(name: &str, text: &str) -> Result<(), JsValue> {
    let parts = js_sys::Array::of1(&JsValue::from_str(text));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type("application/json");
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob)?;
    let document = web_sys::window().and_then(|w| w.document()).ok_or(JsValue::NULL)?;
    let link: web_sys::HtmlAnchorElement = document.create_element("a")?.dyn_into()?;
    link.set_href(&url);
    link.set_download(name);
    link.click();
    web_sys::Url::revoke_object_url(&url)
}

async fn get<T: DeserializeOwned>(path: &str) -> UiResult<T> {
    call::<T>("GET", path, None::<&()>).await?.1.ok_or_else(|| UiError::network("empty answer"))
}

async fn post<T: DeserializeOwned>(path: &str, body: &impl Serialize) -> UiResult<T> {
    call::<T>("POST", path, Some(body)).await?.1.ok_or_else(|| UiError::network("empty answer"))
}

impl Backend for BrowserBackend {
    fn instance(&self) -> LocalFuture<'_, UiResult<InstanceInfo>> {
        Box::pin(get("/api/v1/instance"))
    }

    fn me(&self) -> LocalFuture<'_, UiResult<Option<User>>> {
        Box::pin(async {
            match get::<User>("/api/v1/me").await {
                Ok(user) => Ok(Some(user)),
                Err(err) if err.code == "unauthorized" => Ok(None),
                Err(err) => Err(err),
            }
        })
    }

    fn signup(
        &self,
        email: String,
        password: String,
        display_name: String,
    ) -> LocalFuture<'_, UiResult<SignupOutcome>> {
        Box::pin(async move {
            let body = parley_common::SignupRequest { email, password, display_name };
            let (status, value) = call::<serde_json::Value>("POST", "/api/v1/auth/signup", Some(&body)).await?;
            let value = value.ok_or_else(|| UiError::network("empty answer"))?;
            let parse_error = |_| UiError::network("unexpected answer");
            if status == 202 {
                Ok(SignupOutcome::CodeSent(serde_json::from_value::<SignupPending>(value).map_err(parse_error)?))
            } else {
                Ok(SignupOutcome::LoggedIn(serde_json::from_value::<AuthResponse>(value).map_err(parse_error)?.user))
            }
        })
    }

    fn verify(&self, signup_id: String, code: String) -> LocalFuture<'_, UiResult<User>> {
        Box::pin(async move {
            let auth: AuthResponse =
                post("/api/v1/auth/verify", &parley_common::VerifyRequest { signup_id, code }).await?;
            Ok(auth.user)
        })
    }

    fn resend(&self, signup_id: String) -> LocalFuture<'_, UiResult<()>> {
        Box::pin(async move {
            post::<SignupPending>("/api/v1/auth/resend", &parley_common::ResendRequest { signup_id }).await?;
            Ok(())
        })
    }

    fn login(&self, email: String, password: String) -> LocalFuture<'_, UiResult<User>> {
        Box::pin(async move {
            let auth: AuthResponse =
                post("/api/v1/auth/login", &parley_common::LoginRequest { email, password }).await?;
            Ok(auth.user)
        })
    }

    fn logout(&self) -> LocalFuture<'_, UiResult<()>> {
        self.disconnect();
        Box::pin(async {
            call::<serde_json::Value>("POST", "/api/v1/auth/logout", None::<&()>).await?;
            Ok(())
        })
    }

    fn forgot_password(&self, email: String) -> LocalFuture<'_, UiResult<String>> {
        Box::pin(async move {
            let pending: PasswordResetPending =
                post("/api/v1/auth/password/forgot", &ForgotPasswordRequest { email }).await?;
            Ok(pending.reset_id)
        })
    }

    fn reset_password(&self, reset_id: String, code: String, new_password: String) -> LocalFuture<'_, UiResult<User>> {
        Box::pin(async move {
            let request = PasswordResetRequest { reset_id, code, new_password };
            let auth: AuthResponse = post("/api/v1/auth/password/reset", &request).await?;
            Ok(auth.user)
        })
    }

    fn update_profile(&self, display_name: String) -> LocalFuture<'_, UiResult<User>> {
        Box::pin(async move {
            call::<User>("PATCH", "/api/v1/me", Some(&ProfileUpdate { display_name }))
                .await?
                .1
                .ok_or_else(|| UiError::network("empty answer"))
        })
    }

    fn change_password(&self, current_password: String, new_password: String) -> LocalFuture<'_, UiResult<()>> {
        Box::pin(async move {
            let change = PasswordChange { current_password, new_password };
            call::<serde_json::Value>("POST", "/api/v1/me/password", Some(&change)).await?;
            Ok(())
        })
    }

    fn sessions(&self) -> LocalFuture<'_, UiResult<SessionList>> {
        Box::pin(get("/api/v1/sessions"))
    }

    fn revoke_session(&self, session_id: i64) -> LocalFuture<'_, UiResult<()>> {
        Box::pin(async move {
            call::<serde_json::Value>("DELETE", &format!("/api/v1/sessions/{session_id}"), None::<&()>).await?;
            Ok(())
        })
    }

    fn revoke_other_sessions(&self) -> LocalFuture<'_, UiResult<()>> {
        Box::pin(async {
            call::<serde_json::Value>("DELETE", "/api/v1/sessions/others", None::<&()>).await?;
            Ok(())
        })
    }

    fn block(&self, user_id: i64) -> LocalFuture<'_, UiResult<()>> {
        Box::pin(async move {
            call::<serde_json::Value>("POST", "/api/v1/blocks", Some(&BlockRequest { user_id })).await?;
            Ok(())
        })
    }

    fn unblock(&self, user_id: i64) -> LocalFuture<'_, UiResult<()>> {
        Box::pin(async move {
            call::<serde_json::Value>("DELETE", &format!("/api/v1/blocks/{user_id}"), None::<&()>).await?;
            Ok(())
        })
    }

    fn export_data(&self) -> LocalFuture<'_, UiResult<String>> {
        Box::pin(async {
            let export: serde_json::Value = get("/api/v1/me/export").await?;
            let text = serde_json::to_string_pretty(&export).expect("JSON");
            download(EXPORT_FILE, &text).map_err(|_| UiError::network("the browser refused the download"))?;
            Ok(format!("Your data was downloaded as {EXPORT_FILE}."))
        })
    }

    fn delete_account(&self, password: String) -> LocalFuture<'_, UiResult<()>> {
        Box::pin(async move {
            call::<serde_json::Value>("DELETE", "/api/v1/me", Some(&DeleteAccountRequest { password })).await?;
            // Our socket closes too; this is not a session ended elsewhere.
            self.disconnect();
            Ok(())
        })
    }

    fn blocked_users(&self) -> LocalFuture<'_, UiResult<BlockList>> {
        Box::pin(get("/api/v1/blocks"))
    }

    fn privacy(&self) -> LocalFuture<'_, UiResult<PrivacySettings>> {
        Box::pin(get("/api/v1/me/privacy"))
    }

    fn set_privacy(&self, settings: PrivacySettings) -> LocalFuture<'_, UiResult<PrivacySettings>> {
        Box::pin(async move {
            call::<PrivacySettings>("PUT", "/api/v1/me/privacy", Some(&settings))
                .await?
                .1
                .ok_or_else(|| UiError::network("empty answer"))
        })
    }

    fn chats(&self) -> LocalFuture<'_, UiResult<ChatList>> {
        Box::pin(get("/api/v1/chats"))
    }

    fn start_chat(&self, email: String) -> LocalFuture<'_, UiResult<Chat>> {
        Box::pin(async move { post("/api/v1/chats", &parley_common::NewChatRequest { email }).await })
    }

    fn history(&self, chat_id: i64, before: Option<i64>) -> LocalFuture<'_, UiResult<MessagePage>> {
        let path = match before {
            Some(before) => format!("/api/v1/chats/{chat_id}/messages?limit=50&before={before}"),
            None => format!("/api/v1/chats/{chat_id}/messages?limit=50"),
        };
        Box::pin(async move { get(&path).await })
    }

    fn connect(&self, cursor: String, listener: Callback<Incoming>) {
        {
            let mut state = self.live.borrow_mut();
            state.wanted = true;
            state.listener = Some(listener);
            state.cursor.get_or_insert(cursor);
            if state.socket.is_some() {
                return;
            }
        }
        install_page_hooks(&self.live);
        open(&self.live);
    }

    fn disconnect(&self) {
        let mut state = self.live.borrow_mut();
        state.wanted = false;
        state.generation += 1;
        state.retry = None;
        state.heartbeat = None;
        state.outbox.clear();
        state.unsent_reads.clear();
        state.cursor = None;
        state.reloading = false;
        state.reload_retry = None;
        if let Some(socket) = state.socket.take() {
            let _ = socket.close_with_code(1000);
        }
        state.emit(Incoming::Connection(Connection::Off));
    }

    fn send(&self, chat_id: i64, body: String) -> String {
        let client_id = new_client_id();
        let frame = ClientFrame::Send { chat_id, client_id: client_id.clone(), body };
        let mut state = self.live.borrow_mut();
        state.send_frame(&frame);
        state.outbox.push((client_id.clone(), frame));
        client_id
    }

    fn mark_read(&self, chat_id: i64, up_to: i64) {
        let mut state = self.live.borrow_mut();
        if !state.send_frame(&ClientFrame::Read { chat_id, up_to }) {
            let marker = state.unsent_reads.entry(chat_id).or_default();
            *marker = (*marker).max(up_to);
        }
    }

    fn typing(&self, chat_id: i64) {
        self.live.borrow().send_frame(&ClientFrame::Typing { chat_id });
    }
}
