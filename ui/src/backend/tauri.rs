//! The desktop side of the seam: every call is a command of the desktop app's native side (which
//! owns the connection, the session token and the local cache), and everything live arrives as
//! one Tauri event. The contract is `parley_common::desktop`.
use std::{cell::RefCell, rc::Rc};

use js_sys::{Function, Promise, Reflect, JSON};
use parley_common::{
    desktop::{
        BridgeError, ChatArgs, DesktopEvent, HistoryArgs, LoginArgs, ReadArgs, ResendArgs, SendArgs, ServerArgs,
        SessionArgs, SignupArgs, SignupResult, StartChatArgs, VerifyArgs, ViewingArgs, EVENT_NAME,
    },
    BlockList, BlockRequest, Chat, ChatList, DeleteAccountRequest, ForgotPasswordRequest, InstanceInfo, MessagePage,
    PasswordChange, PasswordResetPending, PasswordResetRequest, PrivacySettings, ProfileUpdate, SessionList,
    SignupPending, User,
};
use serde::{
    de::{DeserializeOwned, IgnoredAny},
    Serialize,
};
use serde_json::{json, Value};
use wasm_bindgen::{closure::Closure, JsCast, JsValue};
use wasm_bindgen_futures::{spawn_local, JsFuture};
use yew::Callback;

use super::{new_client_id, Backend, Connection, Incoming, LocalFuture, SignupOutcome, UiError, UiResult};

pub struct TauriBackend {
    bridge: Bridge,
    /// `window.__TAURI__.event`, and its `listen`.
    events: JsValue,
    listen: Function,
    live: Rc<RefCell<Live>>,
}

#[derive(Default)]
struct Live {
    /// Where events go; none after `disconnect`.
    listener: Option<Callback<Incoming>>,
    /// Registered once and never unlistened: Tauri may call it for the app's whole life.
    handler: Option<Closure<dyn FnMut(JsValue)>>,
    /// Settles once Tauri has registered `handler` (to the unlisten function, kept with it).
    registered: Option<Promise>,
}

fn emit(live: &RefCell<Live>, incoming: Incoming) {
    // Cloned out first: the listener may reach back into the backend.
    let listener = live.borrow().listener.clone();
    if let Some(listener) = listener {
        listener.emit(incoming);
    }
}

/// `window.__TAURI__.core.invoke`, cloneable into detached tasks.
#[derive(Clone)]
struct Bridge {
    core: JsValue,
    invoke: Function,
}

impl Bridge {
    async fn call<T: DeserializeOwned>(&self, command: &str, args: Value) -> UiResult<T> {
        let answer = self.invoke.call2(&self.core, &JsValue::from_str(command), &to_js(&args)).map_err(refused)?;
        let result = JsFuture::from(Promise::resolve(&answer)).await.map_err(refused)?;
        from_js(&result).map_err(|err| UiError {
            code: "bridge".into(),
            message: format!("the desktop app answered {command} unexpectedly: {err}"),
        })
    }

    /// For commands whose failure has no place on screen: the console keeps it.
    fn call_detached(&self, command: &'static str, args: Value) {
        let bridge = self.clone();
        spawn_local(async move {
            if let Err(err) = bridge.call::<IgnoredAny>(command, args).await {
                warn(&format!("parley: {command}: {}: {}", err.code, err.message));
            }
        });
    }
}

/// The one argument of every command that takes any.
fn with_args(args: &impl Serialize) -> Value {
    json!({ "args": args })
}

fn no_args() -> Value {
    json!({})
}

fn to_js(value: &Value) -> JsValue {
    JSON::parse(&value.to_string()).expect("serde_json writes valid JSON")
}

fn from_js<T: DeserializeOwned>(value: &JsValue) -> Result<T, serde_json::Error> {
    // `undefined` has no JSON text; a command with nothing to answer may resolve to it.
    let text = JSON::stringify(value).ok().and_then(|text| text.as_string()).unwrap_or_else(|| "null".into());
    serde_json::from_str(&text)
}

/// A rejected command: the native side's `BridgeError`, or Tauri's own failure (an unknown command,
/// arguments it could not read), which is a string or an `Error`.
fn refused(value: JsValue) -> UiError {
    if let Ok(error) = from_js::<BridgeError>(&value) {
        return error.into();
    }
    let message = value
        .as_string()
        .or_else(|| value.dyn_ref::<js_sys::Error>().map(|error| String::from(error.message())))
        .unwrap_or_else(|| "the desktop app did not answer".into());
    UiError { code: "bridge".into(), message }
}

fn warn(text: &str) {
    web_sys::console::warn_1(&JsValue::from_str(text));
}

impl TauriBackend {
    /// The desktop app's backend, when the page runs in its webview (`app.withGlobalTauri` puts
    /// the API on `window.__TAURI__`).
    pub fn detect() -> Option<Self> {
        let window = web_sys::window()?;
        let tauri = Reflect::get(&window, &"__TAURI__".into()).ok().filter(JsValue::is_object)?;
        let core = Reflect::get(&tauri, &"core".into()).ok()?;
        let invoke = Reflect::get(&core, &"invoke".into()).ok()?.dyn_into::<Function>().ok()?;
        let events = Reflect::get(&tauri, &"event".into()).ok()?;
        let listen = Reflect::get(&events, &"listen".into()).ok()?.dyn_into::<Function>().ok()?;
        Some(TauriBackend { bridge: Bridge { core, invoke }, events, listen, live: Rc::default() })
    }

    /// Registers the event handler the first time. Callers wait on the answer before asking the
    /// native side to announce anything, so that nothing is announced to nobody.
    fn registered(&self) -> Promise {
        let mut live = self.live.borrow_mut();
        if let Some(registered) = &live.registered {
            return registered.clone();
        }
        let weak = Rc::downgrade(&self.live);
        let handler = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
            let Some(live) = weak.upgrade() else {
                return;
            };
            let payload = Reflect::get(&event, &"payload".into()).unwrap_or(JsValue::UNDEFINED);
            match from_js::<DesktopEvent>(&payload) {
                Ok(event) => emit(&live, event.into()),
                Err(err) => warn(&format!("parley: unreadable desktop event: {err}")),
            }
        });
        let registered = match self.listen.call2(&self.events, &EVENT_NAME.into(), handler.as_ref()) {
            Ok(answer) => Promise::resolve(&answer),
            Err(err) => Promise::reject(&err),
        };
        live.handler = Some(handler);
        live.registered = Some(registered.clone());
        registered
    }
}

impl Backend for TauriBackend {
    fn instance(&self) -> LocalFuture<'_, UiResult<InstanceInfo>> {
        Box::pin(self.bridge.call("instance", no_args()))
    }

    fn me(&self) -> LocalFuture<'_, UiResult<Option<User>>> {
        Box::pin(self.bridge.call("me", no_args()))
    }

    fn signup(
        &self,
        email: String,
        password: String,
        display_name: String,
    ) -> LocalFuture<'_, UiResult<SignupOutcome>> {
        Box::pin(async move {
            let args = with_args(&SignupArgs { email, password, display_name });
            Ok(match self.bridge.call("signup", args).await? {
                SignupResult::CodeSent { signup_id } => SignupOutcome::CodeSent(SignupPending { signup_id }),
                SignupResult::LoggedIn { user } => SignupOutcome::LoggedIn(user),
            })
        })
    }

    fn verify(&self, signup_id: String, code: String) -> LocalFuture<'_, UiResult<User>> {
        Box::pin(self.bridge.call("verify", with_args(&VerifyArgs { signup_id, code })))
    }

    fn resend(&self, signup_id: String) -> LocalFuture<'_, UiResult<()>> {
        Box::pin(async move {
            self.bridge.call::<IgnoredAny>("resend", with_args(&ResendArgs { signup_id })).await?;
            Ok(())
        })
    }

    fn login(&self, email: String, password: String) -> LocalFuture<'_, UiResult<User>> {
        Box::pin(self.bridge.call("login", with_args(&LoginArgs { email, password })))
    }

    fn logout(&self) -> LocalFuture<'_, UiResult<()>> {
        self.disconnect();
        Box::pin(async {
            self.bridge.call::<IgnoredAny>("logout", no_args()).await?;
            Ok(())
        })
    }

    fn forgot_password(&self, email: String) -> LocalFuture<'_, UiResult<String>> {
        Box::pin(async move {
            let pending: PasswordResetPending =
                self.bridge.call("forgot_password", with_args(&ForgotPasswordRequest { email })).await?;
            Ok(pending.reset_id)
        })
    }

    fn reset_password(&self, reset_id: String, code: String, new_password: String) -> LocalFuture<'_, UiResult<User>> {
        Box::pin(self.bridge.call("reset_password", with_args(&PasswordResetRequest { reset_id, code, new_password })))
    }

    fn update_profile(&self, display_name: String) -> LocalFuture<'_, UiResult<User>> {
        Box::pin(self.bridge.call("update_profile", with_args(&ProfileUpdate { display_name })))
    }

    fn change_password(&self, current_password: String, new_password: String) -> LocalFuture<'_, UiResult<()>> {
        Box::pin(async move {
            let change = PasswordChange { current_password, new_password };
            self.bridge.call::<IgnoredAny>("change_password", with_args(&change)).await?;
            Ok(())
        })
    }

    fn sessions(&self) -> LocalFuture<'_, UiResult<SessionList>> {
        Box::pin(self.bridge.call("sessions", no_args()))
    }

    fn revoke_session(&self, session_id: i64) -> LocalFuture<'_, UiResult<()>> {
        Box::pin(async move {
            self.bridge.call::<IgnoredAny>("revoke_session", with_args(&SessionArgs { session_id })).await?;
            Ok(())
        })
    }

    fn revoke_other_sessions(&self) -> LocalFuture<'_, UiResult<()>> {
        Box::pin(async {
            self.bridge.call::<IgnoredAny>("revoke_other_sessions", no_args()).await?;
            Ok(())
        })
    }

    fn block(&self, user_id: i64) -> LocalFuture<'_, UiResult<()>> {
        Box::pin(async move {
            self.bridge.call::<IgnoredAny>("block", with_args(&BlockRequest { user_id })).await?;
            Ok(())
        })
    }

    fn unblock(&self, user_id: i64) -> LocalFuture<'_, UiResult<()>> {
        Box::pin(async move {
            self.bridge.call::<IgnoredAny>("unblock", with_args(&BlockRequest { user_id })).await?;
            Ok(())
        })
    }

    fn export_data(&self) -> LocalFuture<'_, UiResult<String>> {
        Box::pin(async {
            let path: String = self.bridge.call("export_data", no_args()).await?;
            Ok(format!("Your data was saved to {path}."))
        })
    }

    fn delete_account(&self, password: String) -> LocalFuture<'_, UiResult<()>> {
        Box::pin(async move {
            self.bridge.call::<IgnoredAny>("delete_account", with_args(&DeleteAccountRequest { password })).await?;
            self.disconnect();
            Ok(())
        })
    }

    fn blocked_users(&self) -> LocalFuture<'_, UiResult<BlockList>> {
        Box::pin(self.bridge.call("blocks", no_args()))
    }

    fn privacy(&self) -> LocalFuture<'_, UiResult<PrivacySettings>> {
        Box::pin(self.bridge.call("privacy", no_args()))
    }

    fn set_privacy(&self, settings: PrivacySettings) -> LocalFuture<'_, UiResult<PrivacySettings>> {
        Box::pin(self.bridge.call("set_privacy", with_args(&settings)))
    }

    fn chats(&self) -> LocalFuture<'_, UiResult<ChatList>> {
        Box::pin(self.bridge.call("chats", no_args()))
    }

    fn start_chat(&self, email: String) -> LocalFuture<'_, UiResult<Chat>> {
        Box::pin(self.bridge.call("start_chat", with_args(&StartChatArgs { email })))
    }

    fn history(&self, chat_id: i64, before: Option<i64>) -> LocalFuture<'_, UiResult<MessagePage>> {
        Box::pin(self.bridge.call("history", with_args(&HistoryArgs { chat_id, before })))
    }

    /// The native side keeps its own cursor with its cache, so the UI's is not passed on.
    fn connect(&self, _cursor: String, listener: Callback<Incoming>) {
        self.live.borrow_mut().listener = Some(listener);
        let registered = self.registered();
        let bridge = self.bridge.clone();
        spawn_local(async move {
            if let Err(err) = JsFuture::from(registered).await {
                warn(&format!("parley: cannot listen to {EVENT_NAME}: {}", refused(err).message));
            }
            if let Err(err) = bridge.call::<IgnoredAny>("connect", no_args()).await {
                warn(&format!("parley: connect: {}: {}", err.code, err.message));
            }
        });
    }

    fn disconnect(&self) {
        emit(&self.live, Incoming::Connection(Connection::Off));
        self.live.borrow_mut().listener = None;
    }

    fn send(&self, chat_id: i64, body: String) -> String {
        let client_id = new_client_id();
        let args = with_args(&SendArgs { chat_id, client_id: client_id.clone(), body });
        let (bridge, live, failed_id) = (self.bridge.clone(), self.live.clone(), client_id.clone());
        spawn_local(async move {
            if let Err(err) = bridge.call::<IgnoredAny>("send", args).await {
                emit(&live, Incoming::SendFailed { client_id: failed_id, code: err.code, message: err.message });
            }
        });
        client_id
    }

    fn mark_read(&self, chat_id: i64, up_to: i64) {
        self.bridge.call_detached("mark_read", with_args(&ReadArgs { chat_id, up_to }));
    }

    fn typing(&self, chat_id: i64) {
        self.bridge.call_detached("typing", with_args(&ChatArgs { chat_id }));
    }

    fn chooses_server(&self) -> bool {
        true
    }

    fn server_url(&self) -> LocalFuture<'_, UiResult<Option<String>>> {
        Box::pin(self.bridge.call("server_get", no_args()))
    }

    fn set_server(&self, url: String) -> LocalFuture<'_, UiResult<InstanceInfo>> {
        Box::pin(self.bridge.call("server_set", with_args(&ServerArgs { url })))
    }

    fn viewing(&self, chat_id: Option<i64>) {
        self.bridge.call_detached("viewing", with_args(&ViewingArgs { chat_id }));
    }
}
