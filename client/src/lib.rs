//! Parley's native client, with no window: the server connection (REST and WebSocket over
//! rustls), a local SQLite cache that the app starts from at once and reads offline, an outbox
//! for messages written offline, and the sync engine that makes the cache converge to exactly the
//! server's state. The desktop app is a thin shell over [`Client`]; tests drive it headless.
#![forbid(unsafe_code)]

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, Weak},
};

use parley_common::{
    desktop::{
        BridgeError, ChatArgs, ConnectionState, DesktopEvent, HistoryArgs, LoginArgs, ReadArgs, ResendArgs, SendArgs,
        SessionArgs, SignupArgs, SignupResult, StartChatArgs, VerifyArgs,
    },
    AuthResponse, BlockList, BlockRequest, Chat, ChatList, DeleteAccountRequest, ForgotPasswordRequest, InstanceInfo,
    LoginRequest, MessagePage, PasswordChange, PasswordResetPending, PasswordResetRequest, PrivacySettings,
    ProfileUpdate, ResendRequest, SessionList, SignupRequest, User, VerifyRequest,
};
use tokio::sync::{broadcast, mpsc};

pub mod cache;
mod engine;
pub mod error;
mod files;
mod netwatch;
pub mod planner;
pub mod server_api;

use cache::Cache;
use engine::{Command, Exit, Shared};
pub use error::ClientError;
use files::{Files, SavedSession, Settings};
use planner::{CacheOp, OutboxItem};
use server_api::{normalize_server_url, ServerApi};

/// Messages per history page, as the web UI asks of the server.
const HISTORY_PAGE: i64 = 50;

/// Where the client keeps its data, and which certificate roots it trusts beyond the bundled
/// and the system's.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub data_dir: PathBuf,
    /// PEM certificates of private certificate authorities (a self-hoster's own CA).
    pub extra_root_certificates: Vec<Vec<u8>>,
}

impl ClientOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ClientOptions { data_dir: data_dir.into(), extra_root_certificates: Vec::new() }
    }
}

/// The client of one person on one device. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    files: Files,
    shared: Arc<Shared>,
    tls: Arc<rustls::ClientConfig>,
    /// Serialises changes of server and session.
    account: tokio::sync::Mutex<Account>,
    engine: Mutex<Option<Engine>>,
    viewing: Mutex<Option<i64>>,
    watcher: tokio::task::JoinHandle<()>,
}

struct Account {
    settings: Settings,
    session: Option<SavedSession>,
}

struct Engine {
    commands: mpsc::UnboundedSender<Command>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.watcher.abort();
        if let Some(engine) = self.engine.get_mut().expect("engine").take() {
            engine.task.abort();
        }
    }
}

impl Client {
    pub async fn open(data_dir: impl Into<PathBuf>) -> Result<Client, BridgeError> {
        Self::open_with(ClientOptions::new(data_dir)).await
    }

    /// Opens the data folder (creating it); with a saved session, the engine starts at once.
    pub async fn open_with(options: ClientOptions) -> Result<Client, BridgeError> {
        let files = Files::new(&options.data_dir).map_err(ClientError::from)?;
        let cache = Cache::open(&files.cache_path()).await.map_err(ClientError::from)?;
        let settings = files.settings();
        // A session for another server than the one set is of no use.
        let session = files.session().filter(|s| Some(&s.server_url) == settings.server_url.as_ref());
        let (events, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared { cache, events, connection: Mutex::new(ConnectionState::Off) });
        let client = Client {
            inner: Arc::new_cyclic(|weak: &Weak<Inner>| {
                let weak = weak.clone();
                let watcher = tokio::spawn(netwatch::watch(move |why| match weak.upgrade() {
                    Some(inner) => {
                        Client { inner }.nudge_because(why);
                        true
                    }
                    None => false,
                }));
                Inner {
                    files,
                    shared,
                    tls: server_api::tls_config(&options.extra_root_certificates),
                    account: tokio::sync::Mutex::new(Account { settings, session: None }),
                    engine: Mutex::new(None),
                    viewing: Mutex::new(None),
                    watcher,
                }
            }),
        };
        if let Some(session) = session {
            let mut account = client.inner.account.lock().await;
            client.start_engine(&session)?;
            account.session = Some(session);
        }
        Ok(client)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<DesktopEvent> {
        self.inner.shared.events.subscribe()
    }

    pub async fn server_url(&self) -> Option<String> {
        self.inner.account.lock().await.settings.server_url.clone()
    }

    /// Chooses the server (checking that it is a Parley server). Another server than before means
    /// another account: the session and the cache of the old one are dropped.
    pub async fn set_server(&self, url: String) -> Result<InstanceInfo, BridgeError> {
        let url = normalize_server_url(&url)?;
        let api = ServerApi::new(url.clone(), self.inner.tls.clone());
        let instance = api.instance().await?;
        let url = url.as_str().trim_end_matches('/').to_string();
        let mut account = self.inner.account.lock().await;
        if account.settings.server_url.as_deref() != Some(url.as_str()) {
            self.end_session(&mut account).await?;
        }
        account.settings = Settings { server_url: Some(url), instance: Some(instance.clone()) };
        self.inner.files.save_settings(&account.settings).map_err(ClientError::from)?;
        Ok(instance)
    }

    fn api(&self, account: &Account) -> Result<ServerApi, ClientError> {
        let url = account.settings.server_url.as_deref().ok_or(ClientError::NoServer)?;
        let url = normalize_server_url(url)?;
        Ok(ServerApi::new(url, self.inner.tls.clone()))
    }

    /// The server's self-description; the one seen last when it cannot be reached.
    pub async fn instance(&self) -> Result<InstanceInfo, BridgeError> {
        let mut account = self.inner.account.lock().await;
        let api = self.api(&account)?;
        match api.instance().await {
            Ok(instance) => {
                if account.settings.instance.as_ref() != Some(&instance) {
                    account.settings.instance = Some(instance.clone());
                    self.inner.files.save_settings(&account.settings).map_err(ClientError::from)?;
                }
                Ok(instance)
            }
            Err(err) if err.is_transient() => account.settings.instance.clone().ok_or_else(|| err.into()),
            Err(err) => Err(err.into()),
        }
    }

    /// The logged-in user, from the saved session (offline too). A session the server no longer
    /// accepts ends through the engine (`SessionEnded`).
    pub async fn me(&self) -> Result<Option<User>, BridgeError> {
        Ok(self.inner.account.lock().await.session.as_ref().map(|s| s.user.clone()))
    }

    pub async fn signup(&self, args: SignupArgs) -> Result<SignupResult, BridgeError> {
        let mut account = self.inner.account.lock().await;
        let api = self.api(&account)?;
        let request = SignupRequest { email: args.email, password: args.password, display_name: args.display_name };
        match api.signup(&request).await? {
            Err(pending) => Ok(SignupResult::CodeSent { signup_id: pending.signup_id }),
            Ok(auth) => Ok(SignupResult::LoggedIn { user: self.begin_session(&mut account, auth).await? }),
        }
    }

    pub async fn verify(&self, args: VerifyArgs) -> Result<User, BridgeError> {
        let mut account = self.inner.account.lock().await;
        let auth = self.api(&account)?.verify(&VerifyRequest { signup_id: args.signup_id, code: args.code }).await?;
        self.begin_session(&mut account, auth).await
    }

    pub async fn resend(&self, args: ResendArgs) -> Result<(), BridgeError> {
        let account = self.inner.account.lock().await;
        Ok(self.api(&account)?.resend(&ResendRequest { signup_id: args.signup_id }).await?)
    }

    pub async fn login(&self, args: LoginArgs) -> Result<User, BridgeError> {
        let mut account = self.inner.account.lock().await;
        let auth = self.api(&account)?.login(&LoginRequest { email: args.email, password: args.password }).await?;
        self.begin_session(&mut account, auth).await
    }

    /// Mails a reset code if the email has an account on the server; the reset id either way.
    pub async fn forgot_password(&self, request: ForgotPasswordRequest) -> Result<PasswordResetPending, BridgeError> {
        let account = self.inner.account.lock().await;
        Ok(self.api(&account)?.forgot_password(&request).await?)
    }

    /// Sets a new password with the mailed code and logs in here (every other session ends).
    pub async fn reset_password(&self, request: PasswordResetRequest) -> Result<User, BridgeError> {
        let mut account = self.inner.account.lock().await;
        let auth = self.api(&account)?.reset_password(&request).await?;
        self.begin_session(&mut account, auth).await
    }

    async fn begin_session(&self, account: &mut Account, auth: AuthResponse) -> Result<User, BridgeError> {
        self.end_session(account).await?;
        let server_url = account.settings.server_url.clone().ok_or(ClientError::NoServer)?;
        let session = SavedSession { server_url, token: auth.token, user: auth.user.clone() };
        self.inner.shared.cache.claim(&auth.user).await.map_err(ClientError::from)?;
        self.inner.files.save_session(&session).map_err(ClientError::from)?;
        self.start_engine(&session)?;
        account.session = Some(session);
        Ok(auth.user)
    }

    /// Logs out: the server forgets the session if it can be reached, this device forgets it and
    /// its cache in any case.
    pub async fn logout(&self) -> Result<(), BridgeError> {
        let mut account = self.inner.account.lock().await;
        if let (Some(session), Ok(api)) = (&account.session, self.api(&account)) {
            if let Err(err) = api.logout(&session.token).await {
                tracing::warn!(error = %err, "the server could not be told of the logout");
            }
        }
        self.end_session(&mut account).await?;
        Ok(())
    }

    async fn end_session(&self, account: &mut Account) -> Result<(), ClientError> {
        self.stop_engine().await;
        account.session = None;
        self.inner.files.forget_session()?;
        self.inner.shared.cache.clear().await?;
        Ok(())
    }

    fn start_engine(&self, session: &SavedSession) -> Result<(), ClientError> {
        let api = ServerApi::new(normalize_server_url(&session.server_url)?, self.inner.tls.clone());
        let (commands, receiver) = mpsc::unbounded_channel();
        let shared = self.inner.shared.clone();
        let weak = Arc::downgrade(&self.inner);
        let token = session.token.clone();
        let task = tokio::spawn(async move {
            if engine::run(shared, api, token, receiver).await == Exit::LoggedOut {
                if let Some(inner) = weak.upgrade() {
                    let client = Client { inner };
                    let mut account = client.inner.account.lock().await;
                    // The engine already ended; only the local state remains to go.
                    client.inner.engine.lock().expect("engine").take();
                    if let Err(err) = client.end_session(&mut account).await {
                        tracing::error!(error = %err, "could not forget the ended session");
                    }
                }
            }
        });
        *self.inner.engine.lock().expect("engine") = Some(Engine { commands, task });
        Ok(())
    }

    async fn stop_engine(&self) {
        let engine = self.inner.engine.lock().expect("engine").take();
        if let Some(Engine { commands, task }) = engine {
            // Dropping the sender asks the engine to close the socket and stop.
            drop(commands);
            if tokio::time::timeout(std::time::Duration::from_secs(5), task).await.is_err() {
                tracing::warn!("the sync engine did not stop in time");
            }
        }
        let state = ConnectionState::Off;
        *self.inner.shared.connection.lock().expect("connection state") = state.clone();
        self.inner.shared.emit(DesktopEvent::Connection { connection: state });
    }

    fn command(&self, command: Command) -> bool {
        match &*self.inner.engine.lock().expect("engine") {
            Some(engine) => engine.commands.send(command).is_ok(),
            None => false,
        }
    }

    async fn token(&self) -> Result<(ServerApi, String), ClientError> {
        let account = self.inner.account.lock().await;
        let session = account.session.as_ref().ok_or(ClientError::NotLoggedIn)?;
        Ok((self.api(&account)?, session.token.clone()))
    }

    /// Changes the display name; the saved session and the cache learn it too.
    pub async fn update_profile(&self, update: ProfileUpdate) -> Result<User, BridgeError> {
        let mut account = self.inner.account.lock().await;
        let session = account.session.clone().ok_or(ClientError::NotLoggedIn)?;
        let user = self.api(&account)?.update_profile(&session.token, &update).await?;
        let session = SavedSession { user: user.clone(), ..session };
        self.inner.files.save_session(&session).map_err(ClientError::from)?;
        self.inner.shared.cache.claim(&user).await.map_err(ClientError::from)?;
        account.session = Some(session);
        Ok(user)
    }

    /// Changes the password (the current one is required); the server ends every other session.
    pub async fn change_password(&self, change: PasswordChange) -> Result<(), BridgeError> {
        let (api, token) = self.token().await?;
        Ok(api.change_password(&token, &change).await?)
    }

    pub async fn sessions(&self) -> Result<SessionList, BridgeError> {
        let (api, token) = self.token().await?;
        Ok(api.sessions(&token).await?)
    }

    pub async fn revoke_session(&self, args: SessionArgs) -> Result<(), BridgeError> {
        let (api, token) = self.token().await?;
        Ok(api.revoke_session(&token, args.session_id).await?)
    }

    pub async fn revoke_other_sessions(&self) -> Result<(), BridgeError> {
        let (api, token) = self.token().await?;
        Ok(api.revoke_other_sessions(&token).await?)
    }

    /// Blocks a friend (needs the server); the cached chat is marked at once.
    pub async fn block(&self, request: BlockRequest) -> Result<(), BridgeError> {
        let (api, token) = self.token().await?;
        api.block(&token, request.user_id).await?;
        self.inner.shared.cache.set_blocked(request.user_id, true).await.map_err(ClientError::from)?;
        Ok(())
    }

    pub async fn unblock(&self, request: BlockRequest) -> Result<(), BridgeError> {
        let (api, token) = self.token().await?;
        api.unblock(&token, request.user_id).await?;
        self.inner.shared.cache.set_blocked(request.user_id, false).await.map_err(ClientError::from)?;
        Ok(())
    }

    pub async fn blocked_users(&self) -> Result<BlockList, BridgeError> {
        let (api, token) = self.token().await?;
        Ok(api.blocked_users(&token).await?)
    }

    pub async fn privacy(&self) -> Result<PrivacySettings, BridgeError> {
        let (api, token) = self.token().await?;
        Ok(api.privacy(&token).await?)
    }

    /// Hides (or shows) our presence; the server sends the presence frames that follow from it.
    pub async fn set_privacy(&self, settings: PrivacySettings) -> Result<PrivacySettings, BridgeError> {
        let (api, token) = self.token().await?;
        Ok(api.set_privacy(&token, &settings).await?)
    }

    /// Saves everything the server keeps about the account into `dir` as a JSON file of its own
    /// (`parley-export-<time>.json`, never over an earlier one); returns its path.
    pub async fn export_data(&self, dir: &std::path::Path) -> Result<PathBuf, BridgeError> {
        let (api, token) = self.token().await?;
        let export = api.export(&token).await?;
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
        std::fs::create_dir_all(dir).map_err(ClientError::from)?;
        let mut path = dir.join(format!("parley-export-{stamp}.json"));
        let mut n = 1;
        while path.exists() {
            path = dir.join(format!("parley-export-{stamp}-{n}.json"));
            n += 1;
        }
        let json = serde_json::to_vec_pretty(&export).expect("the export serialises");
        std::fs::write(&path, json).map_err(ClientError::from)?;
        tracing::info!(path = %path.display(), "account data exported");
        Ok(path)
    }

    /// Deletes the account on the server (its password required); this device then forgets the
    /// session and the cache, as after a logout.
    pub async fn delete_account(&self, request: DeleteAccountRequest) -> Result<(), BridgeError> {
        let mut account = self.inner.account.lock().await;
        let session = account.session.clone().ok_or(ClientError::NotLoggedIn)?;
        self.api(&account)?.delete_account(&session.token, &request).await?;
        self.end_session(&mut account).await?;
        Ok(())
    }

    /// The chats from the cache (offline too), with the cursor the cache is current to.
    pub async fn chats(&self) -> Result<ChatList, BridgeError> {
        let cache = &self.inner.shared.cache;
        let chats = cache.chats().await.map_err(ClientError::from)?;
        let cursor = cache.cursor().await.map_err(ClientError::from)?.unwrap_or_else(|| "0".into());
        Ok(ChatList { chats, cursor })
    }

    /// Starts (or finds) the chat with the person of `email`. Needs the server.
    pub async fn start_chat(&self, args: StartChatArgs) -> Result<Chat, BridgeError> {
        let (api, token) = self.token().await?;
        let chat = api.start_chat(&token, args.email).await?;
        self.inner.shared.cache.apply(&[CacheOp::PutChat(chat.clone())]).await.map_err(ClientError::from)?;
        Ok(chat)
    }

    /// A page of a chat's history from the cache, newest first.
    pub async fn history(&self, args: HistoryArgs) -> Result<MessagePage, BridgeError> {
        let cache = &self.inner.shared.cache;
        if !cache.has_chat(args.chat_id).await.map_err(ClientError::from)? {
            return Err(ClientError::Server { code: "chat_not_found".into(), message: "No such chat.".into() }.into());
        }
        let page = cache.history(args.chat_id, args.before, HISTORY_PAGE).await.map_err(ClientError::from)?;
        let cursor = cache.cursor().await.map_err(ClientError::from)?.unwrap_or_else(|| "0".into());
        Ok(MessagePage { messages: page.messages, more: page.more, cursor })
    }

    /// Tells a (re)loaded UI where things stand: the connection, the chats as the cache holds
    /// them now (events may have landed since the UI read the list, before it listened), and the
    /// outbox as pending.
    pub async fn announce(&self) {
        let connection = self.inner.shared.connection.lock().expect("connection state").clone();
        self.inner.shared.emit(DesktopEvent::Connection { connection });
        match self.inner.shared.cache.chats().await {
            Ok(chats) => self.inner.shared.emit(DesktopEvent::ChatsChanged { chats }),
            Err(err) => tracing::error!(error = %err, "could not read the chats"),
        }
        match self.inner.shared.cache.outbox().await {
            Ok(outbox) => {
                for item in outbox {
                    self.inner.shared.emit(DesktopEvent::Pending {
                        client_id: item.client_id,
                        chat_id: item.chat_id,
                        body: item.body,
                    });
                }
            }
            Err(err) => tracing::error!(error = %err, "could not read the outbox"),
        }
    }

    /// Puts a message in the outbox; it goes out now if connected, else after reconnecting, always
    /// under `client_id`.
    pub async fn send(&self, args: SendArgs) -> Result<(), BridgeError> {
        if args.body.trim().is_empty() {
            return Err(ClientError::Invalid("A message cannot be empty.".into()).into());
        }
        if self.inner.account.lock().await.session.is_none() {
            return Err(ClientError::NotLoggedIn.into());
        }
        let item = OutboxItem { client_id: args.client_id, chat_id: args.chat_id, body: args.body };
        self.inner.shared.cache.add_to_outbox(&item).await.map_err(ClientError::from)?;
        self.command(Command::Written(item));
        Ok(())
    }

    /// Marks a chat read up to `seq` `up_to` here at once, and on the server when it can be told.
    pub async fn mark_read(&self, args: ReadArgs) -> Result<(), BridgeError> {
        self.inner.shared.cache.mark_read(args.chat_id, args.up_to).await.map_err(ClientError::from)?;
        self.command(Command::Read { chat_id: args.chat_id, up_to: args.up_to });
        Ok(())
    }

    pub async fn typing(&self, args: ChatArgs) -> Result<(), BridgeError> {
        self.command(Command::Typing { chat_id: args.chat_id });
        Ok(())
    }

    /// The chat on screen, if any: no notification for its messages.
    pub fn set_viewing(&self, chat_id: Option<i64>) {
        *self.inner.viewing.lock().expect("viewing") = chat_id;
    }

    pub fn viewing(&self) -> Option<i64> {
        *self.inner.viewing.lock().expect("viewing")
    }

    pub async fn unread_total(&self) -> Result<i64, BridgeError> {
        Ok(self.inner.shared.cache.unread_total().await.map_err(ClientError::from)?)
    }

    /// The network came up or the machine woke: reconnect now rather than at the next step.
    pub fn nudge(&self) {
        self.nudge_because("asked");
    }

    fn nudge_because(&self, why: &str) -> bool {
        let sent = self.command(Command::Nudge);
        if sent {
            tracing::info!(why, "checking the connection now");
        }
        sent
    }

    /// The connection's state now.
    pub fn connection(&self) -> ConnectionState {
        self.inner.shared.connection.lock().expect("connection state").clone()
    }

    /// The local cache, for reading (tests compare it with the server).
    pub fn cache(&self) -> &Cache {
        &self.inner.shared.cache
    }

    /// Closes the connection and the cache (app exit).
    pub async fn shutdown(&self) {
        self.stop_engine().await;
        self.inner.watcher.abort();
        self.inner.shared.cache.close().await;
    }
}

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("now formats as RFC 3339")
}
