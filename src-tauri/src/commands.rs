//! The commands the UI's `TauriBackend` invokes, one per `Client` call, named and shaped as
//! `parley_common::desktop` says: each takes one argument `args` (or none).
use parley_client::Client;
use parley_common::{
    desktop::{
        BridgeError, ChatArgs, HistoryArgs, LoginArgs, ReadArgs, ResendArgs, SendArgs, ServerArgs, SessionArgs,
        SignupArgs, SignupResult, StartChatArgs, VerifyArgs, ViewingArgs,
    },
    Chat, ChatList, ForgotPasswordRequest, InstanceInfo, MessagePage, PasswordChange, PasswordResetPending,
    PasswordResetRequest, ProfileUpdate, SessionList, User,
};
use tauri::State;

// Async commands that borrow state must answer with a `Result`, even those that cannot fail.
type Answer<T> = Result<T, BridgeError>;

#[tauri::command]
pub async fn server_get(client: State<'_, Client>) -> Answer<Option<String>> {
    Ok(client.server_url().await)
}

#[tauri::command]
pub async fn server_set(client: State<'_, Client>, args: ServerArgs) -> Answer<InstanceInfo> {
    client.set_server(args.url).await
}

#[tauri::command]
pub async fn instance(client: State<'_, Client>) -> Answer<InstanceInfo> {
    client.instance().await
}

#[tauri::command]
pub async fn me(client: State<'_, Client>) -> Answer<Option<User>> {
    client.me().await
}

#[tauri::command]
pub async fn signup(client: State<'_, Client>, args: SignupArgs) -> Answer<SignupResult> {
    client.signup(args).await
}

#[tauri::command]
pub async fn verify(client: State<'_, Client>, args: VerifyArgs) -> Answer<User> {
    client.verify(args).await
}

#[tauri::command]
pub async fn resend(client: State<'_, Client>, args: ResendArgs) -> Answer<()> {
    client.resend(args).await
}

#[tauri::command]
pub async fn login(client: State<'_, Client>, args: LoginArgs) -> Answer<User> {
    client.login(args).await
}

#[tauri::command]
pub async fn logout(client: State<'_, Client>) -> Answer<()> {
    client.logout().await
}

#[tauri::command]
pub async fn forgot_password(client: State<'_, Client>, args: ForgotPasswordRequest) -> Answer<PasswordResetPending> {
    client.forgot_password(args).await
}

#[tauri::command]
pub async fn reset_password(client: State<'_, Client>, args: PasswordResetRequest) -> Answer<User> {
    client.reset_password(args).await
}

#[tauri::command]
pub async fn update_profile(client: State<'_, Client>, args: ProfileUpdate) -> Answer<User> {
    client.update_profile(args).await
}

#[tauri::command]
pub async fn change_password(client: State<'_, Client>, args: PasswordChange) -> Answer<()> {
    client.change_password(args).await
}

#[tauri::command]
pub async fn sessions(client: State<'_, Client>) -> Answer<SessionList> {
    client.sessions().await
}

#[tauri::command]
pub async fn revoke_session(client: State<'_, Client>, args: SessionArgs) -> Answer<()> {
    client.revoke_session(args).await
}

#[tauri::command]
pub async fn revoke_other_sessions(client: State<'_, Client>) -> Answer<()> {
    client.revoke_other_sessions().await
}

#[tauri::command]
pub async fn chats(client: State<'_, Client>) -> Answer<ChatList> {
    client.chats().await
}

#[tauri::command]
pub async fn start_chat(client: State<'_, Client>, args: StartChatArgs) -> Answer<Chat> {
    client.start_chat(args).await
}

#[tauri::command]
pub async fn history(client: State<'_, Client>, args: HistoryArgs) -> Answer<MessagePage> {
    client.history(args).await
}

/// The UI is listening: tell it the connection state and what waits in the outbox.
#[tauri::command]
pub async fn connect(client: State<'_, Client>) -> Answer<()> {
    client.announce().await;
    Ok(())
}

#[tauri::command]
pub async fn send(client: State<'_, Client>, args: SendArgs) -> Answer<()> {
    client.send(args).await
}

#[tauri::command]
pub async fn mark_read(client: State<'_, Client>, args: ReadArgs) -> Answer<()> {
    client.mark_read(args).await
}

#[tauri::command]
pub async fn typing(client: State<'_, Client>, args: ChatArgs) -> Answer<()> {
    client.typing(args).await
}

#[tauri::command]
pub fn viewing(client: State<'_, Client>, args: ViewingArgs) {
    client.set_viewing(args.chat_id);
}

#[tauri::command]
pub async fn block(client: State<'_, Client>, args: parley_common::BlockRequest) -> Answer<()> {
    client.block(args).await
}

#[tauri::command]
pub async fn unblock(client: State<'_, Client>, args: parley_common::BlockRequest) -> Answer<()> {
    client.unblock(args).await
}

#[tauri::command]
pub async fn blocks(client: State<'_, Client>) -> Answer<parley_common::BlockList> {
    client.blocked_users().await
}

#[tauri::command]
pub async fn privacy(client: State<'_, Client>) -> Answer<parley_common::PrivacySettings> {
    client.privacy().await
}

#[tauri::command]
pub async fn set_privacy(
    client: State<'_, Client>,
    args: parley_common::PrivacySettings,
) -> Answer<parley_common::PrivacySettings> {
    client.set_privacy(args).await
}

/// Saves the account's data in the Downloads folder (the app's data folder when there is none);
/// answers the file's path.
#[tauri::command]
pub async fn export_data(app: tauri::AppHandle, client: State<'_, Client>) -> Answer<String> {
    use tauri::Manager;
    let dir = app
        .path()
        .download_dir()
        .or_else(|_| app.path().app_data_dir())
        .map_err(|err| BridgeError::new("io", format!("no folder to save the data in: {err}")))?;
    Ok(client.export_data(&dir).await?.display().to_string())
}

#[tauri::command]
pub async fn delete_account(client: State<'_, Client>, args: parley_common::DeleteAccountRequest) -> Answer<()> {
    client.delete_account(args).await
}
