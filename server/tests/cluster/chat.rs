//! Users on different nodes behave as on one server.
use std::time::Duration;

use parley_common::{ClientFrame, Event, ServerFrame};

use crate::harness::{chat_with, start_chat, user, Cluster, Ws};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_different_nodes_chat_both_ways_with_presence_and_unread() {
    let cluster = Cluster::start(3, &[]).await;
    let (a, b, c) = (cluster.url(0), cluster.url(1), cluster.url(2));
    let ada = user(&a, "Ada").await;
    let bo = user(&b, "Bo").await;

    // Bo is online on node B before the chat exists: the new chat reaches him from node A.
    let mut bo_ws = Ws::connect(&b, &bo.token).await;
    let chat = start_chat(&a, &ada.token, "Bo").await;
    let created = bo_ws
        .next_matching("chat_created", |f| match f {
            ServerFrame::Event(Event::ChatCreated { chat, .. }) => Some(chat.clone()),
            _ => None,
        })
        .await;
    assert_eq!(created.id, chat.id);
    assert_eq!(created.friend.id, ada.user.id);
    // Bo reaches out (asks for the chat on node B): Ada may see his presence, and node A sees that
    // he is connected to node B.
    start_chat(&b, &bo.token, "Ada").await;
    assert!(chat_with(&a, &ada.token, bo.user.id).await.friend.online, "node A sees that Bo is connected to node B");

    // Ada comes online on node A: Bo hears it on node B.
    let mut ada_ws = Ws::connect(&a, &ada.token).await;
    assert!(bo_ws.next_presence(ada.user.id).await, "Bo is told Ada came online");
    assert!(chat_with(&c, &bo.token, ada.user.id).await.friend.online, "node C, which holds no socket, agrees");

    // A message each way, each acknowledged to its sender and delivered once to the other.
    ada_ws.say(chat.id, "00000000-0000-4000-8000-00000000000a", "hello from node A").await;
    let (client_id, acked) = ada_ws.next_ack().await;
    assert_eq!(client_id, "00000000-0000-4000-8000-00000000000a");
    let got = bo_ws.next_message().await;
    assert_eq!((got.id, got.body.as_str()), (acked.id, "hello from node A"));

    // Node C counts the unread message.
    let seen_by_bo = chat_with(&c, &bo.token, ada.user.id).await;
    assert_eq!(seen_by_bo.unread_count, 1);
    assert_eq!(seen_by_bo.last_message.as_ref().map(|m| m.id), Some(acked.id));

    bo_ws.say(chat.id, "00000000-0000-4000-8000-00000000000b", "hello from node B").await;
    let (_, reply) = bo_ws.next_ack().await;
    let got = ada_ws.next_message().await;
    assert_eq!((got.id, got.body.as_str()), (reply.id, "hello from node B"));
    assert_eq!(chat_with(&c, &ada.token, bo.user.id).await.unread_count, 1);

    // Typing and read markers cross nodes too; the read clears the count everywhere.
    bo_ws.send(&ClientFrame::Typing { chat_id: chat.id }).await;
    ada_ws
        .next_matching("typing", |f| {
            matches!(f, ServerFrame::Typing { user_id, .. } if *user_id == bo.user.id).then_some(())
        })
        .await;
    bo_ws.send(&ClientFrame::Read { chat_id: chat.id, up_to: acked.seq }).await;
    let up_to = ada_ws
        .next_matching("read", |f| match f {
            ServerFrame::Event(Event::Read { user_id, up_to, .. }) if *user_id == bo.user.id => Some(*up_to),
            _ => None,
        })
        .await;
    assert_eq!(up_to, acked.seq);
    let seen_by_bo = chat_with(&c, &bo.token, ada.user.id).await;
    assert_eq!((seen_by_bo.unread_count, seen_by_bo.read_up_to), (0, acked.seq));
    assert_eq!(chat_with(&c, &ada.token, bo.user.id).await.friend_read_up_to, acked.seq);

    // Each connection got its user's stream in order with no gap, across three writers' nodes.
    ada_ws.assert_stream_in_order("Ada on node A", &a, &ada.token).await;
    bo_ws.assert_stream_in_order("Bo on node B", &b, &bo.token).await;

    // Bo leaves node B: Ada hears it on node A, and node C shows him offline with a last-seen.
    bo_ws.close().await;
    assert!(!ada_ws.next_presence(bo.user.id).await, "Bo went offline");
    let friend = chat_with(&c, &ada.token, bo.user.id).await.friend;
    assert!(!friend.online);
    assert!(friend.last_seen.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_user_on_two_nodes_sees_everything() {
    let cluster = Cluster::start(3, &[]).await;
    let (a, b, c) = (cluster.url(0), cluster.url(1), cluster.url(2));
    let ada = user(&a, "Ada").await;
    let bo = user(&b, "Bo").await;
    let chat = start_chat(&a, &ada.token, "Bo").await;

    let mut phone = Ws::connect(&a, &ada.token).await;
    let mut laptop = Ws::connect(&c, &ada.token).await;
    let mut bo_ws = Ws::connect(&b, &bo.token).await;

    // From the phone: an ack there, the message on the laptop (another node) and at Bo's.
    for n in 0..5 {
        phone.say(chat.id, &crate::harness::client_id(n), &format!("phone {n}")).await;
        let (_, acked) = phone.next_ack().await;
        assert_eq!(laptop.next_message().await.id, acked.id);
        assert_eq!(bo_ws.next_message().await.id, acked.id);
    }
    // From Bo: both devices.
    bo_ws.say(chat.id, &crate::harness::client_id(100), "to both devices").await;
    let (_, reply) = bo_ws.next_ack().await;
    assert_eq!(phone.next_message().await.id, reply.id);
    assert_eq!(laptop.next_message().await.id, reply.id);
    // Read on the laptop: the phone learns it.
    laptop.send(&ClientFrame::Read { chat_id: chat.id, up_to: reply.seq }).await;
    let read_on_phone = phone
        .next_matching("read", |f| match f {
            ServerFrame::Event(Event::Read { user_id, up_to, .. }) if *user_id == ada.user.id => Some(*up_to),
            _ => None,
        })
        .await;
    assert_eq!(read_on_phone, reply.seq);
    laptop
        .next_matching("its own read marker", |f| matches!(f, ServerFrame::Event(Event::Read { .. })).then_some(()))
        .await;
    for (ws, name, token) in [(&phone, "phone", &ada.token), (&laptop, "laptop", &ada.token), (&bo_ws, "Bo", &bo.token)]
    {
        ws.assert_stream_in_order(name, &a, token).await;
    }
    // Five sent, one received, one read marker: the same seven positions on both devices.
    assert_eq!((phone.positions.len(), laptop.positions.len()), (7, 7), "both devices saw the whole stream");

    // Ada leaves one node only: she stays online for Bo and everyone.
    phone.close().await;
    bo_ws.expect_none(Duration::from_secs(2), |f| matches!(f, ServerFrame::Presence { .. })).await;
    assert!(chat_with(&b, &bo.token, ada.user.id).await.friend.online, "still online through node C");
    // The last device goes: now she is offline.
    laptop.close().await;
    assert!(!bo_ws.next_presence(ada.user.id).await);
    assert!(!chat_with(&a, &bo.token, ada.user.id).await.friend.online);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_session_on_one_node_closes_its_sockets_on_the_others() {
    let cluster = Cluster::start(2, &[]).await;
    let (a, b) = (cluster.url(0), cluster.url(1));
    let ada = user(&a, "Ada").await;
    let mut socket = Ws::connect(&b, &ada.token).await;
    let logout =
        crate::harness::http().post(format!("{a}/api/v1/auth/logout")).bearer_auth(&ada.token).send().await.unwrap();
    assert_eq!(logout.status(), 204);
    assert_eq!(
        socket.close_code_within(Duration::from_secs(5)).await,
        Some(parley_common::ws::close::SESSION_ENDED),
        "node B closed the socket of the session that ended on node A"
    );
}

/// A block made through one node holds back the very next message sent through another, though
/// that node just stored messages of the chat and keeps its members in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_made_on_one_node_holds_back_the_next_message_on_another() {
    let cluster = Cluster::start(2, &[]).await;
    let (a, b) = (cluster.url(0), cluster.url(1));
    let ada = user(&a, "Ada").await;
    let bo = user(&a, "Bo").await;
    let chat = start_chat(&a, &ada.token, "Bo").await;
    let mut bo_ws = Ws::connect(&a, &bo.token).await;
    for n in 0..3 {
        bo_ws.say(chat.id, &crate::harness::client_id(n), &format!("busy {n}")).await;
        bo_ws.next_ack().await;
    }
    let block = crate::harness::http()
        .post(format!("{b}/api/v1/blocks"))
        .bearer_auth(&ada.token)
        .json(&serde_json::json!({"user_id": bo.user.id}))
        .send()
        .await
        .unwrap();
    assert_eq!(block.status(), 204, "block through node B");
    bo_ws.say(chat.id, &crate::harness::client_id(3), "after the block").await;
    let code = bo_ws
        .next_matching("an error", |f| match f {
            ServerFrame::Error { code, .. } => Some(code.clone()),
            _ => None,
        })
        .await;
    assert_eq!(code, "chat_not_found", "refused through node A");
    let stored = chat_with(&b, &ada.token, bo.user.id).await.last_message.map(|m| m.body);
    assert_eq!(stored.as_deref(), Some("busy 2"), "nothing stored after the block");
}
