//! The store's group commit, called directly: one transaction for a batch, with resends,
//! strangers and several chats mixed in.
use std::sync::Arc;

use parley_server::store::{self, NewMessage, NewUser, SendOutcome, Store};

use crate::{
    helpers::{spawn, Backend, TestApp},
    on_both_backends,
};

/// The store of `app`'s database, opened a second time, with an account for each name; their
/// ids in that order.
async fn store_with_accounts(app: &TestApp, names: &[&str]) -> (Arc<dyn Store>, Vec<i64>) {
    let store = store::connect(&app.config.database_url()).await.unwrap();
    let mut ids = Vec::new();
    for name in names {
        let email = format!("{name}@example.org");
        let user =
            store.create_user(NewUser { email: &email, display_name: name, password_hash: "!", now: 1 }).await.unwrap();
        ids.push(user.id);
    }
    (store, ids)
}

on_both_backends!(a_batch_stores_each_message_once_with_gapless_positions);

async fn a_batch_stores_each_message_once_with_gapless_positions(backend: Backend) {
    let app = spawn(backend).await;
    let (store, ids) = store_with_accounts(&app, &["ada", "bo", "cy", "eve"]).await;
    let (ada, bo, cy, eve) = (ids[0], ids[1], ids[2], ids[3]);
    let ada_bo = store.create_chat(ada, bo, 1).await.unwrap().chat_id;
    let ada_cy = store.create_chat(ada, cy, 1).await.unwrap().chat_id;
    let before = store.cursor(ada).await.unwrap();

    let message = |chat_id, sender_id, client_id: &str, body: &str| NewMessage {
        chat_id,
        sender_id,
        client_id: client_id.into(),
        body: body.into(),
        now: 2,
    };
    let batch = vec![
        message(ada_bo, ada, "00000000-0000-4000-8000-000000000001", "one"),
        message(ada_cy, ada, "00000000-0000-4000-8000-000000000002", "to cy"),
        message(ada_bo, ada, "00000000-0000-4000-8000-000000000001", "one"),
        message(ada_bo, ada, "00000000-0000-4000-8000-000000000001", "changed"),
        message(ada_bo, eve, "00000000-0000-4000-8000-000000000003", "forged"),
        message(ada_bo, bo, "00000000-0000-4000-8000-000000000004", "two"),
    ];
    let outcomes = store.send_messages(&batch).await.unwrap();
    assert_eq!(outcomes.len(), batch.len());
    let SendOutcome::Created { message: one, events: one_events, .. } = &outcomes[0] else {
        panic!("{:?}", outcomes[0])
    };
    assert_eq!(one.seq, 1);
    let SendOutcome::Created { message: to_cy, .. } = &outcomes[1] else { panic!("{:?}", outcomes[1]) };
    assert_eq!(to_cy.seq, 1, "seq counts per chat");
    match &outcomes[2] {
        SendOutcome::Duplicate { message, cursor } => {
            assert_eq!(message, one);
            assert_eq!(Some(*cursor), one_events.iter().find(|e| e.user_id == ada).map(|e| e.pos));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(outcomes[3], SendOutcome::ClientIdReused));
    assert!(matches!(outcomes[4], SendOutcome::NotMember));
    let SendOutcome::Created { message: two, .. } = &outcomes[5] else { panic!("{:?}", outcomes[5]) };
    assert_eq!(two.seq, 2);

    // Ada's stream grew by exactly her three new events, with no gap and in batch order.
    let events = store.events_since(ada, before, 100).await.unwrap();
    assert_eq!(events.iter().map(|e| e.pos).collect::<Vec<_>>(), vec![before + 1, before + 2, before + 3]);
    assert_eq!(store.cursor(ada).await.unwrap(), before + 3);
    // Resending the whole batch stores nothing new.
    let again = store.send_messages(&batch[..1]).await.unwrap();
    let SendOutcome::Duplicate { message, cursor } = &again[0] else { panic!("{:?}", again[0]) };
    assert_eq!(message, one);
    assert_eq!(Some(*cursor), one_events.iter().find(|e| e.user_id == ada).map(|e| e.pos), "the sender's cursor");
    assert_eq!(store.cursor(ada).await.unwrap(), before + 3);
    assert_eq!(store.messages_before(ada_bo, i64::MAX, 10).await.unwrap().len(), 2);
}

on_both_backends!(a_resend_is_answered_as_stored_even_beside_new_messages_or_after_a_block);

/// The first attempt at a batch does not look for resends; a resend must still be answered with
/// the stored message, whether new messages share its batch or a block would now refuse it.
async fn a_resend_is_answered_as_stored_even_beside_new_messages_or_after_a_block(backend: Backend) {
    let app = spawn(backend).await;
    let (store, ids) = store_with_accounts(&app, &["ada", "bo"]).await;
    let (ada, bo) = (ids[0], ids[1]);
    let chat_id = store.create_chat(ada, bo, 1).await.unwrap().chat_id;
    let message = |n: u32, body: &str| NewMessage {
        chat_id,
        sender_id: ada,
        client_id: format!("00000000-0000-4000-8000-{n:012}"),
        body: body.into(),
        now: 2,
    };

    let first = store.send_messages(&[message(1, "one")]).await.unwrap();
    let SendOutcome::Created { message: one, .. } = &first[0] else { panic!("{first:?}") };
    // The resend between two new messages: its answer, and theirs, as if sent one by one.
    let outcomes = store.send_messages(&[message(2, "two"), message(1, "one"), message(3, "three")]).await.unwrap();
    let [SendOutcome::Created { message: two, .. }, SendOutcome::Duplicate { message: again, .. }, SendOutcome::Created { message: three, .. }] =
        &outcomes[..]
    else {
        panic!("{outcomes:?}")
    };
    assert_eq!(again, one);
    assert_eq!((two.seq, three.seq), (2, 3), "no position is lost to the resend");

    // Bo blocks Ada: her new messages are refused, her resends still answered as stored.
    store.block(bo, ada, 3).await.unwrap();
    let outcomes = store.send_messages(&[message(1, "one"), message(4, "four")]).await.unwrap();
    assert!(matches!(&outcomes[0], SendOutcome::Duplicate { message, .. } if message == one), "{outcomes:?}");
    assert!(matches!(outcomes[1], SendOutcome::Blocked { by_sender: false }), "{outcomes:?}");
    assert_eq!(store.messages_before(chat_id, i64::MAX, 10).await.unwrap().len(), 3);
}

on_both_backends!(a_batch_larger_than_one_statement_takes_is_stored_whole);

/// SQLite takes at most 32,766 parameters a statement, so a big batch is inserted in several;
/// the batch stays one transaction with gapless positions.
async fn a_batch_larger_than_one_statement_takes_is_stored_whole(backend: Backend) {
    let app = spawn(backend).await;
    let (store, ids) = store_with_accounts(&app, &["ada", "bo"]).await;
    let chat_id = store.create_chat(ids[0], ids[1], 1).await.unwrap().chat_id;
    const COUNT: u64 = 5_000;
    let batch: Vec<NewMessage> = (1..=COUNT)
        .map(|n| NewMessage {
            chat_id,
            sender_id: ids[(n % 2) as usize],
            client_id: format!("00000000-0000-4000-8000-{n:012}"),
            body: format!("message {n}"),
            now: 2,
        })
        .collect();
    let outcomes = store.send_messages(&batch).await.unwrap();
    let mut last_id = 0;
    for (n, outcome) in (1..=COUNT).zip(&outcomes) {
        let SendOutcome::Created { message, .. } = outcome else { panic!("message {n}: {outcome:?}") };
        assert_eq!((message.seq, message.body.as_str()), (n as i64, format!("message {n}").as_str()));
        assert!(message.id > last_id, "ids grow with the position");
        last_id = message.id;
    }
    let stored = store.messages_before(chat_id, i64::MAX, COUNT as i64 + 1).await.unwrap();
    assert_eq!(stored.len(), COUNT as usize);
    assert_eq!(stored[0].id, last_id, "the ids handed out are the ids stored");
}

/// The batch reads its chats' members before it writes. A chat deleted in between (its last
/// member's account deleted, committed while the batch waits for the chat's row) is seen on the
/// next attempt: the message is refused and nothing of it stored. Postgres only: SQLite's one
/// writer connection lets nothing in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_deleted_while_its_batch_waits_for_the_row_is_refused_whole() {
    use sqlx::Connection;
    let app = spawn(Backend::Postgres).await;
    let url = app.config.database_url();
    let (store, ids) = store_with_accounts(&app, &["ada", "bo"]).await;
    let chat_id = store.create_chat(ids[0], ids[1], 1).await.unwrap().chat_id;

    // Delete the chat in a transaction left open: its row stays locked until the commit.
    let mut deleter = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut deleter).await.unwrap();
    sqlx::query("DELETE FROM chats WHERE id = $1").bind(chat_id).execute(&mut deleter).await.unwrap();

    let batch = vec![NewMessage {
        chat_id,
        sender_id: ids[0],
        client_id: "00000000-0000-4000-8000-000000000001".into(),
        body: "hello".into(),
        now: 2,
    }];
    let send = tokio::spawn(async move { store.send_messages(&batch).await });
    // Until the batch waits for the deleter.
    let (deleter_pid,): (i32,) = sqlx::query_as("SELECT pg_backend_pid()").fetch_one(&mut deleter).await.unwrap();
    let mut watcher = sqlx::PgConnection::connect(&url).await.unwrap();
    loop {
        let (waiting,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))")
                .bind(deleter_pid)
                .fetch_one(&mut watcher)
                .await
                .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(!send.is_finished(), "the batch did not wait for the chat: {:?}", send.await);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    sqlx::query("COMMIT").execute(&mut deleter).await.unwrap();

    let outcomes = send.await.unwrap().expect("the batch is tried again, not failed");
    assert!(matches!(outcomes[..], [SendOutcome::NotMember]), "{outcomes:?}");
    let (messages, events): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM events WHERE kind = 'message')")
            .fetch_one(&mut watcher)
            .await
            .unwrap();
    assert_eq!((messages, events), (0, 0), "nothing of the message is stored");
}

/// A message keeps its sender's event position for the answer to a resend; one stored by a node
/// older than that column (a rolling upgrade) has none, and the sender's event gives it.
/// Postgres only: SQLite finds it through its index on the events' message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_of_a_message_stored_without_its_sender_position_gets_the_first_cursor() {
    use sqlx::Connection;
    let app = spawn(Backend::Postgres).await;
    let (store, ids) = store_with_accounts(&app, &["ada", "bo"]).await;
    let chat_id = store.create_chat(ids[0], ids[1], 1).await.unwrap().chat_id;
    let message = |n: u32| NewMessage {
        chat_id,
        sender_id: ids[0],
        client_id: format!("00000000-0000-4000-8000-{n:012}"),
        body: format!("message {n}"),
        now: 2,
    };
    let first = store.send_messages(&[message(1), message(2)]).await.unwrap();
    let cursors: Vec<i64> = first
        .iter()
        .map(|outcome| match outcome {
            SendOutcome::Created { events, .. } => events.iter().find(|e| e.user_id == ids[0]).unwrap().pos,
            other => panic!("{other:?}"),
        })
        .collect();

    let mut db = sqlx::PgConnection::connect(&app.config.database_url()).await.unwrap();
    let kept: Vec<(Option<i64>,)> =
        sqlx::query_as("SELECT sender_pos FROM messages ORDER BY seq").fetch_all(&mut db).await.unwrap();
    assert_eq!(kept, cursors.iter().map(|&c| (Some(c),)).collect::<Vec<_>>(), "each message keeps its cursor");
    sqlx::query("UPDATE messages SET sender_pos = NULL WHERE seq = 2").execute(&mut db).await.unwrap();

    let again = store.send_messages(&[message(1), message(2)]).await.unwrap();
    let answered: Vec<i64> = again
        .iter()
        .map(|outcome| match outcome {
            SendOutcome::Duplicate { cursor, .. } => *cursor,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(answered, cursors);
}

/// Every account has its event counter from the start, however it was made: the batch locks
/// and moves it, and a batch to an account without one would fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_new_account_has_an_event_counter_on_postgres() {
    use sqlx::Connection;
    let app = spawn(Backend::Postgres).await;
    let (store, ids) = store_with_accounts(&app, &["ada", "bo"]).await;
    let chat_id = store.create_chat(ids[0], ids[1], 1).await.unwrap().chat_id;
    let mut db = sqlx::PgConnection::connect(&app.config.database_url()).await.unwrap();
    let counters: Vec<(i64, i64)> =
        sqlx::query_as("SELECT id, last_event_pos FROM user_streams ORDER BY id").fetch_all(&mut db).await.unwrap();
    // Each has the `chat_created` event of their chat.
    assert_eq!(counters, vec![(ids[0], 1), (ids[1], 1)]);
    assert_eq!(store.cursor(ids[1]).await.unwrap(), 1);
    let outcomes = store
        .send_messages(&[NewMessage {
            chat_id,
            sender_id: ids[0],
            client_id: "00000000-0000-4000-8000-000000000001".into(),
            body: "hi".into(),
            now: 2,
        }])
        .await
        .unwrap();
    assert!(matches!(outcomes[..], [SendOutcome::Created { .. }]), "{outcomes:?}");
    assert_eq!(store.cursor(ids[1]).await.unwrap(), 2);
}

/// Postgres remembers chats' members between batches. A batch whose chats' members changed since
/// (another chat started moves the membership epoch) stores nothing and is tried again with its
/// members read anew; its failed attempt must not move the members' event counters either, or
/// their streams would have holes and their cursors would point past their last event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_remembered_members_changed_leaves_no_hole_in_the_streams() {
    let app = spawn(Backend::Postgres).await;
    let (store, ids) = store_with_accounts(&app, &["ada", "bo", "cy", "dee"]).await;
    let (ada, bo, cy, dee) = (ids[0], ids[1], ids[2], ids[3]);
    let chat_id = store.create_chat(ada, bo, 1).await.unwrap().chat_id;
    let message = |n: u32| NewMessage {
        chat_id,
        sender_id: ada,
        client_id: format!("00000000-0000-4000-8000-{n:012}"),
        body: format!("note {n}"),
        now: 2,
    };
    // The first batch reads the chat's members and remembers them.
    store.send_messages(&[message(1)]).await.unwrap();
    store.create_chat(cy, dee, 3).await.unwrap();
    let outcomes = store.send_messages(&[message(2)]).await.unwrap();
    assert!(matches!(outcomes[..], [SendOutcome::Created { .. }]), "{outcomes:?}");
    for user in [ada, bo] {
        let positions: Vec<i64> = store.events_since(user, 0, 100).await.unwrap().into_iter().map(|e| e.pos).collect();
        assert_eq!(positions, [1, 2, 3], "the chat created and two messages, one after the other");
        assert_eq!(store.cursor(user).await.unwrap(), 3, "the cursor names the last event");
    }
}
