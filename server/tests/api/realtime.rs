//! The WebSocket: live delivery with acks, several devices, read markers, presence, typing,
//! bad frames, idempotent resends, catch-up through the cursor, and the cursor under concurrency.
use std::{collections::HashSet, time::Duration};

use parley_common::{ws::close, ChatList, ClientFrame, Event, MessagePage, ServerFrame, SyncBatch};
use reqwest::StatusCode;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message as WsMessage};

use crate::{
    helpers::{spawn_open, Backend, TestApp},
    on_both_backends,
    ws_client::{Ended, WsClient},
};

on_both_backends!(
    two_users_chat_both_ways_with_acks,
    a_third_device_of_the_same_user_sees_both_sides,
    unread_counts_and_read_markers_follow_the_user_across_devices,
    presence_goes_on_and_off_with_the_connections,
    a_connection_that_dies_without_closing_goes_offline,
    typing_reaches_only_the_other_member,
    a_stranger_cannot_send_to_mark_or_type_in_a_chat,
    bad_frames_get_error_frames_and_the_connection_stays_usable,
    a_flood_of_frames_closes_the_connection,
    resending_with_the_same_client_id_stores_one_message,
    a_resend_answered_before_its_first_send_still_leaves_nothing_out,
    messages_sent_while_offline_arrive_once_through_sync,
    a_reader_following_the_cursor_misses_nothing_under_concurrent_commits,
    a_slow_consumer_is_cut_off_and_recovers_through_sync,
    the_socket_needs_a_session_and_a_cookie_needs_our_origin,
    logging_out_closes_that_session_s_sockets,
    sending_is_rate_limited_per_user,
    a_client_s_close_is_answered_with_a_close,
    sends_without_waiting_for_acks_are_stored_in_order_and_answered_once,
    sends_to_many_chats_at_once_keep_each_chat_s_order,
    messages_of_a_connection_that_closes_at_once_still_arrive_live,
);

/// Two users with a chat between them.
async fn pair(app: &TestApp) -> (parley_common::AuthResponse, parley_common::AuthResponse, i64) {
    let ada = app.user("Ada").await;
    let bo = app.user("Bo").await;
    let chat = app.chat(&ada, "bo@example.org").await;
    (ada, bo, chat)
}

async fn two_users_chat_both_ways_with_acks(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let (ada, bo, chat) = pair(&app).await;
    let mut a = WsClient::connect(&app, &ada.token).await;
    let mut b = WsClient::connect(&app, &bo.token).await;
    assert_eq!(a.user.id, ada.user.id);

    let client_id = a.say(chat, "hello Bo").await;
    let (acked_id, acked, _) = a.next_ack().await;
    assert_eq!(acked_id, client_id);
    assert_eq!((acked.seq, acked.sender_id, acked.body.as_str()), (1, ada.user.id, "hello Bo"));
    let (_, received) = b.next_message().await;
    assert_eq!(received, acked);

    b.say(chat, "hi Ada").await;
    let (_, reply, _) = b.next_ack().await;
    assert_eq!(reply.seq, 2);
    assert_eq!(a.next_message().await.1, reply);

    let history: MessagePage = app.get_json(&format!("/api/v1/chats/{chat}/messages"), &bo.token).await;
    assert_eq!(history.messages.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), vec!["hi Ada", "hello Bo"]);
    // The sender got an ack, not a copy of its own message (Bo's first words showed Ada his
    // presence: that frame may come first).
    a.send(&ClientFrame::Ping).await;
    let next = a.next_matching(|f| (!matches!(f, ServerFrame::Presence { .. })).then_some(f)).await;
    assert_eq!(next, ServerFrame::Pong);
}

async fn a_third_device_of_the_same_user_sees_both_sides(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let (ada, bo, chat) = pair(&app).await;
    let mut laptop = WsClient::connect(&app, &ada.token).await;
    let mut phone = WsClient::connect(&app, &ada.token).await;
    let mut b = WsClient::connect(&app, &bo.token).await;

    laptop.say(chat, "from the laptop").await;
    let (_, sent, _) = laptop.next_ack().await;
    assert_eq!(phone.next_message().await.1, sent, "the phone sees what the laptop sent");
    assert_eq!(b.next_message().await.1, sent);

    b.say(chat, "to both devices").await;
    let (_, reply, _) = b.next_ack().await;
    assert_eq!(laptop.next_message().await.1, reply);
    assert_eq!(phone.next_message().await.1, reply);
}

async fn unread_counts_and_read_markers_follow_the_user_across_devices(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let (ada, bo, chat) = pair(&app).await;
    let mut a = WsClient::connect(&app, &ada.token).await;
    for i in 1..=3 {
        a.say(chat, &format!("m{i}")).await;
        a.next_ack().await;
    }
    let unread = |list: ChatList| list.chats.iter().find(|c| c.id == chat).unwrap().unread_count;
    assert_eq!(unread(app.get_json("/api/v1/chats", &bo.token).await), 3);
    assert_eq!(unread(app.get_json("/api/v1/chats", &ada.token).await), 0, "your own messages are not unread");

    let mut b1 = WsClient::connect(&app, &bo.token).await;
    let mut b2 = WsClient::connect(&app, &bo.token).await;
    b1.send(&ClientFrame::Read { chat_id: chat, up_to: 2 }).await;
    assert_eq!(b2.next_read().await, (chat, bo.user.id, 2), "Bo's other device clears the dot");
    assert_eq!(b1.next_read().await, (chat, bo.user.id, 2));
    assert_eq!(a.next_read().await, (chat, bo.user.id, 2), "Ada sees how far Bo read");
    assert_eq!(unread(app.get_json("/api/v1/chats", &bo.token).await), 1);

    // Past the last message is clamped; going back changes nothing.
    b2.send(&ClientFrame::Read { chat_id: chat, up_to: 99 }).await;
    assert_eq!(b1.next_read().await, (chat, bo.user.id, 3));
    b2.send(&ClientFrame::Read { chat_id: chat, up_to: 1 }).await;
    b2.send(&ClientFrame::Ping).await;
    assert_eq!(b2.next_matching(|f| matches!(f, ServerFrame::Pong).then_some(())).await, ());
    let list: ChatList = app.get_json("/api/v1/chats", &bo.token).await;
    assert_eq!(unread(list.clone()), 0);
    assert_eq!(list.chats[0].read_up_to, 3);
    let ada_view: ChatList = app.get_json("/api/v1/chats", &ada.token).await;
    assert_eq!(ada_view.chats[0].friend_read_up_to, 3);
}

async fn presence_goes_on_and_off_with_the_connections(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let (ada, bo, _chat) = pair(&app).await;
    // Bo asks for the chat too: Ada may see his presence.
    app.chat(&bo, "ada@example.org").await;
    let mut a = WsClient::connect(&app, &ada.token).await;
    let b1 = WsClient::connect(&app, &bo.token).await;
    assert_eq!(a.next_presence().await, (bo.user.id, true, None));
    let list: ChatList = app.get_json("/api/v1/chats", &ada.token).await;
    assert!(list.chats[0].friend.online);

    // A second device changes nothing; closing one of two keeps Bo online.
    let b2 = WsClient::connect(&app, &bo.token).await;
    b1.close().await;
    a.expect_silence(Duration::from_millis(300)).await;
    b2.close().await;
    let (user_id, online, last_seen) = a.next_presence().await;
    assert_eq!((user_id, online), (bo.user.id, false));
    assert!(last_seen.is_some());
    let list: ChatList = app.get_json("/api/v1/chats", &ada.token).await;
    assert!(!list.chats[0].friend.online);
    assert_eq!(list.chats[0].friend.last_seen, last_seen);
}

async fn a_connection_that_dies_without_closing_goes_offline(backend: Backend) {
    let app = spawn_open(backend, |c| {
        c.ws_ping_secs = 1;
        c.ws_idle_timeout_secs = 2;
    })
    .await;
    let (ada, bo, _chat) = pair(&app).await;
    app.chat(&bo, "ada@example.org").await;
    let mut a = WsClient::connect(&app, &ada.token).await;
    // Bo's client stops answering: it never reads again, so it never pongs.
    let _silent_bo = WsClient::connect(&app, &bo.token).await;
    let started = std::time::Instant::now();
    let went_offline = a
        .next_matching(|f| match f {
            ServerFrame::Presence { user_id, online: false, .. } if user_id == bo.user.id => Some(()),
            _ => None,
        })
        .await;
    assert_eq!(went_offline, ());
    assert!(started.elapsed() < Duration::from_secs(8), "detected in {:?}", started.elapsed());
    // Ada, who answers pings, is still connected.
    a.send(&ClientFrame::Ping).await;
    assert_eq!(a.next_matching(|f| matches!(f, ServerFrame::Pong).then_some(())).await, ());
}

async fn typing_reaches_only_the_other_member(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let (ada, bo, chat) = pair(&app).await;
    let mut b = WsClient::connect(&app, &bo.token).await;
    let mut a1 = WsClient::connect(&app, &ada.token).await;
    let mut a2 = WsClient::connect(&app, &ada.token).await;
    a1.send(&ClientFrame::Typing { chat_id: chat }).await;
    let typing = b
        .next_matching(|f| match f {
            ServerFrame::Typing { chat_id, user_id } => Some((chat_id, user_id)),
            _ => None,
        })
        .await;
    assert_eq!(typing, (chat, ada.user.id));
    // Presence of Bo may still reach Ada's sockets (it races their connecting); typing must not.
    let is_typing = |f: &ServerFrame| matches!(f, ServerFrame::Typing { .. });
    a2.expect_none(Duration::from_millis(300), is_typing).await;
    a1.expect_none(Duration::from_millis(100), is_typing).await;
}

async fn a_stranger_cannot_send_to_mark_or_type_in_a_chat(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let (ada, bo, chat) = pair(&app).await;
    let eve = app.user("Eve").await;
    let mut b = WsClient::connect(&app, &bo.token).await;
    let mut e = WsClient::connect(&app, &eve.token).await;

    let client_id = e.say(chat, "forged").await;
    assert_eq!(e.next_error().await, ("chat_not_found".into(), Some(client_id)));
    e.send(&ClientFrame::Read { chat_id: chat, up_to: 1 }).await;
    assert_eq!(e.next_error().await.0, "chat_not_found");
    e.send(&ClientFrame::Typing { chat_id: chat }).await;
    assert_eq!(e.next_error().await.0, "chat_not_found");
    e.say(424242, "no such chat").await;
    assert_eq!(e.next_error().await.0, "chat_not_found");

    b.expect_none(Duration::from_millis(300), |f| matches!(f, ServerFrame::Event(_))).await;
    let history: MessagePage = app.get_json(&format!("/api/v1/chats/{chat}/messages"), &ada.token).await;
    assert!(history.messages.is_empty(), "nothing was stored");
}

async fn bad_frames_get_error_frames_and_the_connection_stays_usable(backend: Backend) {
    let app = spawn_open(backend, |c| c.max_message_bytes = 100).await;
    let (ada, _bo, chat) = pair(&app).await;
    let mut a = WsClient::connect(&app, &ada.token).await;

    a.send_text("this is not json".into()).await;
    assert_eq!(a.next_error().await.0, "bad_frame");
    a.send_text(r#"{"type":"launch_missiles"}"#.into()).await;
    assert_eq!(a.next_error().await.0, "bad_frame");
    a.send_text(r#"{"type":"send","chat_id":"x"}"#.into()).await;
    assert_eq!(a.next_error().await.0, "bad_frame");
    a.send_raw(WsMessage::Binary(vec![1, 2, 3].into())).await;
    assert_eq!(a.next_error().await.0, "bad_frame");

    let too_big = "x".repeat(101);
    let id = a.say(chat, &too_big).await;
    assert_eq!(a.next_error().await, ("message_too_large".into(), Some(id)));
    let id = a.say(chat, "   ").await;
    assert_eq!(a.next_error().await, ("empty_message".into(), Some(id)));
    a.send(&ClientFrame::Send { chat_id: chat, client_id: "not-a-uuid".into(), body: "hi".into() }).await;
    assert_eq!(a.next_error().await, ("invalid_client_id".into(), Some("not-a-uuid".into())));
    a.send(&ClientFrame::Sync { since: Some("nonsense".into()) }).await;
    assert_eq!(a.next_error().await.0, "invalid_cursor");

    // Still usable: a good message goes through.
    a.say(chat, "still here").await;
    assert_eq!(a.next_ack().await.1.body, "still here");
}

async fn a_flood_of_frames_closes_the_connection(backend: Backend) {
    let app = spawn_open(backend, |c| c.ws_frames_per_sec = 5).await;
    let ada = app.user("Ada").await;
    let mut a = WsClient::connect(&app, &ada.token).await;
    for _ in 0..50 {
        // Once the server has closed, sending may fail; the close frame is what matters.
        if !a.try_send_text(r#"{"type":"ping"}"#.into()).await {
            break;
        }
    }
    assert_eq!(a.ended().await, Ended::Closed(Some(close::FLOOD)));
}

async fn resending_with_the_same_client_id_stores_one_message(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let (ada, bo, chat) = pair(&app).await;
    let mut a = WsClient::connect(&app, &ada.token).await;
    let mut b = WsClient::connect(&app, &bo.token).await;
    let client_id = uuid::Uuid::new_v4().to_string();
    let send = ClientFrame::Send { chat_id: chat, client_id: client_id.clone(), body: "once".into() };
    a.send(&send).await;
    let (_, first, first_cursor) = a.next_ack().await;
    // As after a reconnect, on another connection of the same user.
    let mut a_again = WsClient::connect(&app, &ada.token).await;
    a_again.send(&send).await;
    let (again_id, again, again_cursor) = a_again.next_ack().await;
    assert_eq!((again_id, &again, again_cursor), (client_id.clone(), &first, first_cursor));

    assert_eq!(b.next_message().await.1, first);
    b.expect_none(Duration::from_millis(300), |f| matches!(f, ServerFrame::Event(_))).await;
    let history: MessagePage = app.get_json(&format!("/api/v1/chats/{chat}/messages"), &bo.token).await;
    assert_eq!(history.messages.len(), 1);

    a.send(&ClientFrame::Send { chat_id: chat, client_id: client_id.clone(), body: "something else".into() }).await;
    assert_eq!(a.next_error().await, ("client_id_reused".into(), Some(client_id)));
}

/// A resend's ack names its message's position, and a client may store it as its cursor: the
/// connection must have been sent everything before it. Here the first send is still held by
/// the node's sequencer (a position before it was taken and never published, as by a node that
/// died), and so is a message from Bo before it; the resend is answered at once, yet Bo's message
/// must come first, from the store.
async fn a_resend_answered_before_its_first_send_still_leaves_nothing_out(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let (ada, bo, chat) = pair(&app).await;
    let mut a = WsClient::connect(&app, &ada.token).await;
    let mut b = WsClient::connect(&app, &bo.token).await;
    take_a_position_nobody_publishes(&app).await;
    b.say(chat, "from Bo, held").await;
    let client_id = uuid::Uuid::new_v4().to_string();
    let send = ClientFrame::Send { chat_id: chat, client_id: client_id.clone(), body: "mine".into() };
    a.send(&send).await;
    // Both stored (the history reads the store), neither handed on yet.
    for _ in 0..200 {
        let page: MessagePage = app.get_json(&format!("/api/v1/chats/{chat}/messages"), &ada.token).await;
        if page.messages.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.send(&send).await;
    let mut seen = Vec::new();
    while !seen.iter().any(|s: &String| s.starts_with("ack")) {
        match a.next().await {
            ServerFrame::Ack { client_id: acked, .. } => seen.push(format!("ack {}", acked == client_id)),
            ServerFrame::Event(Event::Message { message, .. }) => seen.push(message.body),
            _ => {}
        }
    }
    assert!(seen.contains(&"from Bo, held".to_string()), "Bo's message before the ack: {seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("ack true"));
}

/// Moves the store's clock on by one position that no write publishes.
async fn take_a_position_nobody_publishes(app: &TestApp) {
    use sqlx::Connection;
    let url = app.config.database_url();
    let bump = "UPDATE clock SET value = value + 1 WHERE id = 1";
    if url.starts_with("sqlite:") {
        let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query(bump).execute(&mut db).await.unwrap();
    } else {
        let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query(bump).execute(&mut db).await.unwrap();
    }
}

async fn messages_sent_while_offline_arrive_once_through_sync(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let (ada, bo, chat) = pair(&app).await;
    let b = WsClient::connect(&app, &bo.token).await;
    let last_cursor = b.hello_cursor.clone();
    b.close().await;

    let mut a = WsClient::connect(&app, &ada.token).await;
    let mut sent = Vec::new();
    for i in 1..=5 {
        a.say(chat, &format!("while you were away {i}")).await;
        sent.push(a.next_ack().await.1);
    }

    let mut b = WsClient::connect(&app, &bo.token).await;
    assert_ne!(b.hello_cursor, last_cursor);
    b.send(&ClientFrame::Sync { since: Some(last_cursor) }).await;
    let (events, next, more) = b
        .next_matching(|f| match f {
            ServerFrame::SyncBatch { events, next, more } => Some((events, next, more)),
            _ => None,
        })
        .await;
    assert!(!more);
    assert_eq!(next, b.hello_cursor);
    let received: Vec<_> = events
        .into_iter()
        .map(|e| match e {
            Event::Message { message, .. } => message,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(received, sent);
    // Nothing arrives twice live.
    b.expect_none(Duration::from_millis(300), |f| matches!(f, ServerFrame::Event(_))).await;
}

async fn a_reader_following_the_cursor_misses_nothing_under_concurrent_commits(backend: Backend) {
    const SENDERS: usize = 6;
    const EACH: usize = 25;
    let app = spawn_open(backend, |c| {
        c.rate_limits.messages_per_user = 0;
        c.ws_frames_per_sec = 10_000;
    })
    .await;
    let reader = app.user("Reader").await;
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        let sender = app.user(&format!("Sender{i}")).await;
        let chat = app.chat(&sender, "reader@example.org").await;
        senders.push((sender, chat));
    }
    let start = app.get_json::<SyncBatch>("/api/v1/sync", &reader.token).await;
    assert_eq!(start.events.len(), SENDERS, "one chat_created each");
    let mut live = WsClient::connect(&app, &reader.token).await;

    // Every sender fires its messages with several in flight, all at once.
    let mut tasks = Vec::new();
    for (sender, chat) in &senders {
        let app_url = app.ws_url();
        let token = sender.token.clone();
        let chat = *chat;
        tasks.push(tokio::spawn(async move {
            let mut request = app_url.into_client_request().unwrap();
            request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
            let mut socket = WsClient::connect_with(request).await.unwrap();
            for i in 0..EACH {
                socket.say(chat, &format!("{i}")).await;
            }
            let mut acked = Vec::new();
            while acked.len() < EACH {
                acked.push(socket.next_ack().await.1.id);
            }
            acked
        }));
    }

    // Meanwhile a reader follows the cursor through sync, as fast as it can.
    let mut since = start.next;
    let mut seen: Vec<i64> = Vec::new();
    let mut positions = HashSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < SENDERS * EACH && std::time::Instant::now() < deadline {
        let batch: SyncBatch = app.get_json(&format!("/api/v1/sync?since={since}"), &reader.token).await;
        for event in batch.events {
            assert!(positions.insert(event.cursor().to_string()), "a cursor seen twice");
            if let Event::Message { message, .. } = event {
                seen.push(message.id);
            }
        }
        since = batch.next;
    }
    let mut acked = HashSet::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    let seen_set: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(seen.len(), seen_set.len(), "no message twice");
    assert_eq!(seen_set, acked, "every acked message, and only those, through the cursor");

    // The live socket got each one exactly once too, in cursor order.
    let mut live_ids = Vec::new();
    let mut last_cursor: i64 = live.hello_cursor.parse().unwrap();
    while live_ids.len() < SENDERS * EACH {
        let (cursor, message) = live.next_message().await;
        let cursor: i64 = cursor.parse().unwrap();
        assert!(cursor > last_cursor, "live events in cursor order");
        last_cursor = cursor;
        live_ids.push(message.id);
    }
    assert_eq!(live_ids.iter().copied().collect::<HashSet<_>>(), acked);

    // Within each chat, seq runs 1..=EACH with no hole.
    for (sender, chat) in &senders {
        let page: MessagePage = app.get_json(&format!("/api/v1/chats/{chat}/messages?limit=100"), &sender.token).await;
        let mut seqs: Vec<i64> = page.messages.iter().map(|m| m.seq).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=EACH as i64).collect::<Vec<_>>());
    }
}

async fn a_slow_consumer_is_cut_off_and_recovers_through_sync(backend: Backend) {
    const MESSAGES: usize = 200;
    let app = spawn_open(backend, |c| {
        c.max_message_bytes = 60_000;
        c.ws_queue_len = 8;
        c.rate_limits.messages_per_user = 0;
        c.ws_frames_per_sec = 10_000;
    })
    .await;
    let (ada, bo, chat) = pair(&app).await;
    let mut slow = WsClient::connect_slow_reader(&app, &bo.token).await;
    let since = slow.hello_cursor.clone();
    let mut a = WsClient::connect(&app, &ada.token).await;
    let body = "y".repeat(59_000);
    let mut sent = Vec::new();
    for _ in 0..MESSAGES {
        a.say(chat, &body).await;
        sent.push(a.next_ack().await.1.id);
    }
    // The slow reader got some of it, then was cut off.
    let mut live = HashSet::new();
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(30), slow.next_message_or_end()).await.expect("cut off in time")
        {
            Ok(id) => {
                live.insert(id);
            }
            Err(ended) => break ended,
        }
    };
    assert!(matches!(ended, Ended::Closed(Some(close::TOO_SLOW)) | Ended::Dropped), "{ended:?}");
    assert!(live.len() < MESSAGES, "it was cut off before the end");

    // It comes back and catches up: every message, once.
    let mut cursor = since;
    let mut synced = Vec::new();
    loop {
        let response = app.get_with_token(&format!("/api/v1/sync?since={cursor}"), &bo.token).await;
        assert_eq!(response.status(), StatusCode::OK);
        let batch: SyncBatch = response.json().await.unwrap();
        synced.extend(batch.events.iter().filter_map(|e| match e {
            Event::Message { message, .. } => Some(message.id),
            _ => None,
        }));
        cursor = batch.next;
        if !batch.more {
            break;
        }
    }
    assert_eq!(synced, sent);
    assert!(app.get_with_token("/healthz", "").await.status().is_success());
}

async fn the_socket_needs_a_session_and_a_cookie_needs_our_origin(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let ada = app.user("Ada").await;
    let anonymous = WsClient::connect_with(app.ws_url().into_client_request().unwrap()).await;
    assert!(matches!(anonymous, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 401));

    let host = app.url.trim_start_matches("http://").to_string();
    let with_origin = |origin: &str| {
        let mut request = app.ws_url().into_client_request().unwrap();
        request.headers_mut().insert("cookie", format!("parley_session={}", ada.token).parse().unwrap());
        request.headers_mut().insert("origin", origin.parse().unwrap());
        request
    };
    let foreign = WsClient::connect_with(with_origin("https://evil.example")).await;
    assert!(matches!(foreign, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 403));
    let own = WsClient::connect_with(with_origin(&format!("http://{host}"))).await.expect("same origin is fine");
    assert_eq!(own.user.id, ada.user.id);
}

async fn logging_out_closes_that_session_s_sockets(backend: Backend) {
    let app = spawn_open(backend, |_| {}).await;
    let ada = app.user("Ada").await;
    let other: parley_common::AuthResponse =
        app.login("ada@example.org", "a good password").await.json().await.unwrap();
    let mut this_session = WsClient::connect(&app, &ada.token).await;
    let mut other_session = WsClient::connect(&app, &other.token).await;
    assert_eq!(app.post_with_token("/api/v1/auth/logout", &ada.token).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(this_session.ended().await, Ended::Closed(Some(close::SESSION_ENDED)));
    other_session.send(&ClientFrame::Ping).await;
    assert_eq!(other_session.next().await, ServerFrame::Pong, "the other session's socket lives on");
}

async fn sending_is_rate_limited_per_user(backend: Backend) {
    let app = spawn_open(backend, |c| c.rate_limits.messages_per_user = 3).await;
    let (ada, _bo, chat) = pair(&app).await;
    let mut a = WsClient::connect(&app, &ada.token).await;
    for _ in 0..3 {
        a.say(chat, "within budget").await;
        a.next_ack().await;
    }
    let over = a.say(chat, "over budget").await;
    assert_eq!(a.next_error().await, ("rate_limited".into(), Some(over)));
    let history: MessagePage = app.get_json(&format!("/api/v1/chats/{chat}/messages"), &ada.token).await;
    assert_eq!(history.messages.len(), 3);
}

async fn a_client_s_close_is_answered_with_a_close(backend: Backend) {
    use futures_util::{SinkExt, StreamExt};
    let app = spawn_open(backend, |_| {}).await;
    let ada = app.user("Ada").await;
    let mut request = app.ws_url().into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {}", ada.token).parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert!(matches!(socket.next().await, Some(Ok(WsMessage::Text(_)))), "hello");
    socket.send(WsMessage::Close(None)).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("an answer");
    assert!(matches!(reply, Some(Ok(WsMessage::Close(_)))), "{reply:?}");
}

/// A client may send many messages before the first ack (they share group commits): each is
/// stored once, in the order sent, acked once, delivered once, in order; a refused one in the
/// middle gets its error and does not hold up the rest.
async fn sends_without_waiting_for_acks_are_stored_in_order_and_answered_once(backend: Backend) {
    const COUNT: usize = 300;
    let app = spawn_open(backend, |c| {
        c.rate_limits.messages_per_user = 0;
        c.ws_frames_per_sec = 10_000;
    })
    .await;
    let (ada, bo, chat) = pair(&app).await;
    let mut a = WsClient::connect(&app, &ada.token).await;
    let mut b = WsClient::connect(&app, &bo.token).await;
    let mut client_ids = Vec::new();
    for i in 0..COUNT {
        let client_id = uuid::Uuid::new_v4().to_string();
        // One in the middle goes to a chat Ada is not in.
        let chat_id = if i == COUNT / 2 { chat + 1000 } else { chat };
        a.send(&ClientFrame::Send { chat_id, client_id: client_id.clone(), body: format!("m{i}") }).await;
        client_ids.push(client_id);
    }
    let refused = client_ids.remove(COUNT / 2);

    let mut acked = Vec::new();
    let mut errors = Vec::new();
    while acked.len() + errors.len() < COUNT {
        match a.next().await {
            ServerFrame::Ack { client_id, message, .. } => {
                assert_eq!(message.client_id, client_id);
                acked.push(message);
            }
            ServerFrame::Error { code, client_id, .. } => errors.push((code, client_id)),
            ServerFrame::Presence { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(errors, vec![("chat_not_found".to_string(), Some(refused))]);
    assert_eq!(acked.iter().map(|m| m.client_id.clone()).collect::<Vec<_>>(), client_ids, "acked once each, in order");
    let seqs: Vec<i64> = acked.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..COUNT as i64).collect::<Vec<_>>(), "stored in the order sent, without gaps");

    let mut received = Vec::new();
    while received.len() < COUNT - 1 {
        received.push(b.next_message().await.1);
    }
    assert_eq!(received, acked, "delivered once each, in order");
    b.expect_none(Duration::from_millis(300), |f| matches!(f, ServerFrame::Event(_))).await;
    let history: MessagePage = app.get_json(&format!("/api/v1/chats/{chat}/messages?limit=100"), &bo.token).await;
    assert_eq!(history.messages.first().map(|m| m.seq), Some(COUNT as i64 - 1));
}

/// One sender's messages to many chats at once share batches: each chat's messages are stored
/// and delivered in the order sent, each acked once, and the sender's cursors are all distinct.
/// (Batches side by side are driven by the load generator's test, `load/tests/exactly_once.rs`.)
async fn sends_to_many_chats_at_once_keep_each_chat_s_order(backend: Backend) {
    const CHATS: usize = 8;
    const EACH: usize = 60;
    let app = spawn_open(backend, |c| {
        c.rate_limits.messages_per_user = 0;
        c.rate_limits.new_chat_per_user = 0;
        c.ws_frames_per_sec = 10_000;
        // The acks wait unread until every message is sent.
        c.ws_queue_len = 4096;
    })
    .await;
    let ada = app.user("Ada").await;
    let mut friends = Vec::new();
    for n in 0..CHATS {
        let friend = app.user(&format!("Friend{n}")).await;
        let chat = app.chat(&ada, &format!("friend{n}@example.org")).await;
        friends.push((WsClient::connect(&app, &friend.token).await, chat));
    }
    let mut a = WsClient::connect(&app, &ada.token).await;
    // Round the chats, so that every batch holds several of them.
    let mut sent: Vec<Vec<String>> = vec![Vec::new(); CHATS];
    for i in 0..CHATS * EACH {
        let (_, chat) = friends[i % CHATS];
        let client_id = uuid::Uuid::new_v4().to_string();
        a.send(&ClientFrame::Send { chat_id: chat, client_id: client_id.clone(), body: format!("m{i}") }).await;
        sent[i % CHATS].push(client_id);
    }

    let mut acked: Vec<Vec<parley_common::Message>> = vec![Vec::new(); CHATS];
    let mut cursors = HashSet::new();
    for _ in 0..CHATS * EACH {
        let (client_id, message, cursor) = a.next_ack().await;
        assert_eq!(message.client_id, client_id);
        assert!(cursors.insert(cursor), "a cursor given twice");
        let n = friends.iter().position(|(_, chat)| *chat == message.chat_id).expect("one of Ada's chats");
        acked[n].push(message);
    }
    for (n, (friend, _)) in friends.iter_mut().enumerate() {
        let ids: Vec<String> = acked[n].iter().map(|m| m.client_id.clone()).collect();
        assert_eq!(ids, sent[n], "chat {n}: acked once each, in the order sent");
        let seqs: Vec<i64> = acked[n].iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=EACH as i64).collect::<Vec<_>>(), "chat {n}: stored in the order sent");
        let mut received = Vec::new();
        while received.len() < EACH {
            received.push(friend.next_message().await.1);
        }
        assert_eq!(received, acked[n], "chat {n}: delivered once each, in order");
    }
}

/// What a connection sent is stored and relayed even if the connection is gone before the
/// commit: delivery does not hang on the sender's socket.
async fn messages_of_a_connection_that_closes_at_once_still_arrive_live(backend: Backend) {
    const COUNT: usize = 50;
    let app = spawn_open(backend, |c| {
        c.rate_limits.messages_per_user = 0;
        c.ws_frames_per_sec = 10_000;
    })
    .await;
    let (ada, bo, chat) = pair(&app).await;
    let mut b = WsClient::connect(&app, &bo.token).await;
    let mut a = WsClient::connect(&app, &ada.token).await;
    for i in 0..COUNT {
        a.send(&ClientFrame::Send {
            chat_id: chat,
            client_id: uuid::Uuid::new_v4().to_string(),
            body: format!("m{i}"),
        })
        .await;
    }
    a.close().await;
    let mut bodies = Vec::new();
    while bodies.len() < COUNT {
        bodies.push(b.next_message().await.1.body);
    }
    // The close frame comes after every send, so the server took them all; the connection was
    // gone by the time most of them committed.
    assert_eq!(bodies, (0..COUNT).map(|i| format!("m{i}")).collect::<Vec<_>>());
}
