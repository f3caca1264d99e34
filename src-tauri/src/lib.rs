//! Parley's desktop app: a Tauri window showing the web UI, over `parley-client`, which owns the
//! connection, the session and the local cache. This crate only wires the two together: commands
//! in, events out, and the manners of a desktop app (one instance, notifications, the unread
//! count in the title).
#![forbid(unsafe_code)]

mod commands;
mod events;

use std::path::PathBuf;

use parley_client::Client;
use tauri::{Manager, RunEvent, WindowEvent};

/// Overrides where the cache and the session live (tests run each app in a folder of its own).
const DATA_DIR_ENV: &str = "PARLEY_DESKTOP_DATA_DIR";
/// A server to use when none has been chosen yet (tests, and deployments that preconfigure it).
const SERVER_ENV: &str = "PARLEY_DESKTOP_SERVER";

pub fn run() {
    init_logging();
    let app = tauri::Builder::default()
        // First, so that a second launch hands over and exits before it opens the cache.
        .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| events::show_main_window(app)))
        .plugin(tauri_plugin_notification::init())
        .setup(|app| {
            let data_dir = match std::env::var_os(DATA_DIR_ENV) {
                Some(dir) => PathBuf::from(dir),
                None => app.path().app_data_dir()?,
            };
            tracing::info!(data_dir = %data_dir.display(), "opening the local cache");
            let client = tauri::async_runtime::block_on(open_client(data_dir))?;
            events::forward(app.handle().clone(), client.clone());
            app.manage(client);
            Ok(())
        })
        .on_window_event(|window, event| {
            // Coming back to the window is a good moment to check the connection (the client
            // watches for network and wake-up itself).
            if let WindowEvent::Focused(true) = event {
                window.state::<Client>().nudge();
            }
        })
        .invoke_handler(tauri::generate_handler![
            commands::server_get,
            commands::server_set,
            commands::instance,
            commands::me,
            commands::signup,
            commands::verify,
            commands::resend,
            commands::login,
            commands::logout,
            commands::forgot_password,
            commands::reset_password,
            commands::update_profile,
            commands::change_password,
            commands::sessions,
            commands::revoke_session,
            commands::revoke_other_sessions,
            commands::block,
            commands::unblock,
            commands::blocks,
            commands::privacy,
            commands::set_privacy,
            commands::export_data,
            commands::delete_account,
            commands::chats,
            commands::start_chat,
            commands::history,
            commands::connect,
            commands::send,
            commands::mark_read,
            commands::typing,
            commands::viewing,
        ])
        .build(tauri::tauri_build_context!())
        .expect("the Tauri application builds");
    app.run(|app, event| {
        if let RunEvent::Exit = event {
            if let Some(client) = app.try_state::<Client>() {
                tauri::async_runtime::block_on(client.shutdown());
            }
        }
    });
}

async fn open_client(data_dir: PathBuf) -> Result<Client, parley_common::desktop::BridgeError> {
    let client = Client::open(data_dir).await?;
    if let Some(url) = std::env::var(SERVER_ENV).ok().filter(|url| !url.is_empty()) {
        if client.server_url().await.is_none() {
            // Best effort: when the server cannot be reached now, the UI asks for the address.
            match client.set_server(url.clone()).await {
                Ok(_) => tracing::info!(%url, "server preset from {SERVER_ENV}"),
                Err(error) => tracing::warn!(%url, %error, "the preset server was refused"),
            }
        }
    }
    Ok(client)
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    // Same convention as the server: RUST_LOG wins, then PARLEY_LOG.
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(std::env::var("PARLEY_LOG").unwrap_or_else(|_| "info".into())))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
