//! The database restored from a backup under clients that kept their cursors: the history
//! after the restored end is numbered anew, so a cursor of before can point past it (refused) or,
//! once the history has grown again, into it (a client resuming there would skip events).
//! `parley-server admin after-restore` marks every cursor of before as refused.
use parley_common::{ChatList, Event, SyncBatch};

use super::{client_id, connect, next_frame, open_signup, ServerProcess};
use futures_util::SinkExt;
use parley_common::{ClientFrame, ServerFrame};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Sends "note n" for each n, each under `client_id(n)`, waiting for every ack.
async fn say(server: &ServerProcess, token: &str, chat_id: i64, numbers: std::ops::Range<usize>) {
    let mut socket = connect(server, token).await;
    for n in numbers {
        let frame = ClientFrame::Send { chat_id, client_id: client_id(n), body: format!("note {n}") };
        socket.send(WsMessage::Text(serde_json::to_string(&frame).unwrap().into())).await.unwrap();
        loop {
            match next_frame(&mut socket).await.expect("the socket ended") {
                ServerFrame::Ack { .. } => break,
                ServerFrame::Error { code, .. } => panic!("note {n} refused: {code}"),
                _ => continue,
            }
        }
    }
}

/// `GET /api/v1/sync?since=…`: the batch, or the error code.
async fn sync(server: &ServerProcess, token: &str, since: &str) -> Result<SyncBatch, String> {
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/sync?since={since}", server.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    if response.status().is_success() {
        return Ok(response.json().await.unwrap());
    }
    let body: serde_json::Value = response.json().await.unwrap();
    Err(body["error"]["code"].as_str().unwrap_or_default().to_string())
}

fn bodies(batch: &SyncBatch) -> Vec<String> {
    batch
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Message { message, .. } => Some(message.body.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restore_cursors_of_before_are_refused() {
    let mut server = ServerProcess::start(&[("PARLEY_SIGNUP", "open")]).await;
    let ada = open_signup(&server, "ada").await;
    let bo = open_signup(&server, "bo").await;
    let chat_id = server.start_chat(&bo.token, "ada@example.org").await;
    say(&server, &bo.token, chat_id, 0..2).await;
    let backup = server.back_up_database().await;
    say(&server, &bo.token, chat_id, 2..5).await;
    // Ada's app has seen everything: the chat and five notes.
    let seen = sync(&server, &ada.token, "").await.unwrap();
    assert_eq!(bodies(&seen).len(), 5);
    let kept = seen.next.clone();

    // Restored, and written to again before Ada's app comes back: her cursor now points into
    // the new history, so resuming from it skips the first notes written after the restore.
    server.put_back_database(&backup);
    server.start_again().await;
    say(&server, &bo.token, chat_id, 10..15).await;
    let resumed = sync(&server, &ada.token, &kept).await.unwrap();
    assert_eq!(bodies(&resumed), ["note 13", "note 14"], "what a resuming app gets without the command");

    // The operator's step after a restore, every node stopped.
    server.kill();
    let said = server.admin(&["after-restore"]);
    assert!(said.contains("history epoch 1"), "{said}");
    server.start_again().await;
    assert_eq!(sync(&server, &ada.token, &kept).await.unwrap_err(), "invalid_cursor");

    // Starting again from what the server holds: everything, under cursors of the new epoch.
    let list: ChatList = super::get_json(&server, "/api/v1/chats", &ada.token).await;
    assert!(list.cursor.starts_with("1."), "{}", list.cursor);
    let all = sync(&server, &ada.token, "").await.unwrap();
    assert_eq!(bodies(&all), ["note 0", "note 1", "note 10", "note 11", "note 12", "note 13", "note 14"]);
    assert!(all.events.iter().all(|e| e.cursor().starts_with("1.")));
    assert_eq!(all.next, list.cursor);
    let mut socket = connect(&server, &ada.token).await;
    match next_frame(&mut socket).await {
        Some(ServerFrame::Hello { cursor, .. }) => assert_eq!(cursor, list.cursor),
        other => panic!("expected hello, got {other:?}"),
    }
}
