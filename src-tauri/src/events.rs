//! From the client to the webview: every `DesktopEvent` goes to the UI as the Tauri event
//! `desktop::EVENT_NAME`. On the way the shell keeps the unread total in the window title and
//! shows a notification for a friend's message that is not on screen.
use parley_client::Client;
use parley_common::{
    desktop::{DesktopEvent, EVENT_NAME},
    Event, Message,
};
use tauri::{AppHandle, Emitter, Manager};
use tauri_plugin_notification::NotificationExt;
use tokio::sync::broadcast::error::RecvError;

/// The window `tauri.conf.json` declares.
const MAIN_WINDOW: &str = "main";
/// Longest message preview in a notification, in characters.
const PREVIEW_CHARS: usize = 140;

pub fn forward(app: AppHandle, client: Client) {
    let mut events = client.subscribe();
    tauri::async_runtime::spawn(async move {
        let mut me = None;
        let mut title = String::new();
        update_title(&app, &client, &mut title).await;
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(RecvError::Lagged(missed)) => {
                    // Events were lost on the way to the UI; the chat list from the cache brings it
                    // level again.
                    tracing::warn!(missed, "the UI fell behind the client's events");
                    match client.chats().await {
                        Ok(list) => DesktopEvent::ChatsChanged { chats: list.chats },
                        Err(error) => {
                            tracing::warn!(%error, "no chat list to resynchronise the UI with");
                            continue;
                        }
                    }
                }
                Err(RecvError::Closed) => break,
            };
            if let Err(error) = app.emit(EVENT_NAME, &event) {
                tracing::warn!(%error, "could not pass an event to the UI");
            }
            match &event {
                DesktopEvent::Hello { user } => me = Some(user.id),
                DesktopEvent::SessionEnded => me = None,
                DesktopEvent::Event { event: Event::Message { message, .. } } => {
                    notify(&app, &client, &mut me, message).await;
                }
                // Cannot change the unread total; they come often.
                DesktopEvent::Typing { .. } | DesktopEvent::Presence { .. } => continue,
                _ => {}
            }
            update_title(&app, &client, &mut title).await;
        }
    });
}

/// "Parley (3)" while three messages are unread, "Parley" when none are.
async fn update_title(app: &AppHandle, client: &Client, current: &mut String) {
    let name = &app.package_info().name;
    let title = match client.unread_total().await {
        Ok(0) => name.clone(),
        Ok(unread) => format!("{name} ({unread})"),
        Err(error) => {
            tracing::debug!(%error, "no unread total");
            return;
        }
    };
    if title != *current {
        if let Some(window) = app.get_webview_window(MAIN_WINDOW) {
            match window.set_title(&title) {
                Ok(()) => *current = title,
                Err(error) => tracing::warn!(%error, "could not set the window title"),
            }
        }
    }
}

/// A notification for a friend's message, unless its chat is on screen in the focused window.
async fn notify(app: &AppHandle, client: &Client, me: &mut Option<i64>, message: &Message) {
    if me.is_none() {
        *me = client.me().await.ok().flatten().map(|user| user.id);
    }
    if me.is_none_or(|me| me == message.sender_id) {
        return;
    }
    let focused = app.get_webview_window(MAIN_WINDOW).and_then(|window| window.is_focused().ok()).unwrap_or(false);
    if focused && client.viewing() == Some(message.chat_id) {
        return;
    }
    let chat = client.chats().await.ok().and_then(|list| list.chats.into_iter().find(|c| c.id == message.chat_id));
    // Replayed after a reconnection, and already read on another device.
    if chat.as_ref().is_some_and(|chat| message.seq <= chat.read_up_to) {
        return;
    }
    let title = chat.map(|chat| chat.friend.display_name).unwrap_or_else(|| app.package_info().name.clone());
    let body: String = message.body.chars().take(PREVIEW_CHARS).collect();
    if let Err(error) = app.notification().builder().title(title).body(body).show() {
        // No notification service (a bare X session, say) is no reason to bother anyone.
        tracing::debug!(%error, "no notification shown");
    }
}

/// Brings the window forward (a second launch of the app lands here).
pub fn show_main_window(app: &AppHandle) {
    if let Some(window) = app.get_webview_window(MAIN_WINDOW) {
        let _ = window.unminimize();
        let _ = window.show();
        let _ = window.set_focus();
    }
}
