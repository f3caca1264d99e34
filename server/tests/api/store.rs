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

on_both_backends!(a_batch_stores_each_message_once_at_consecutive_positions);

async fn a_batch_stores_each_message_once_at_consecutive_positions(backend: Backend) {
    let app = spawn(backend).await;
    let (store, ids) = store_with_accounts(&app, &["ada", "bo", "cy", "eve"]).await;
    let (ada, bo, cy, eve) = (ids[0], ids[1], ids[2], ids[3]);
    let ada_bo = store.create_chat(ada, bo, 1).await.unwrap().chat_id;
    let ada_cy = store.create_chat(ada, cy, 1).await.unwrap().chat_id;
    let before = store.clock().await.unwrap();

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
            assert_eq!(*cursor, one.id, "a message's position is its id");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(outcomes[3], SendOutcome::ClientIdReused));
    assert!(matches!(outcomes[4], SendOutcome::NotMember));
    let SendOutcome::Created { message: two, .. } = &outcomes[5] else { panic!("{:?}", outcomes[5]) };
    assert_eq!(two.seq, 2);

    // The clock moved by the three new messages, each of Ada's chats' in the order of its seq
    // (the chats in ascending id), and every member is told of each at its position.
    let ids = [one.id, two.id, to_cy.id];
    assert_eq!(ids, [before + 1, before + 2, before + 3]);
    let mut members: Vec<(i64, i64)> = one_events.iter().map(|e| (e.user_id, e.pos)).collect();
    members.sort_unstable();
    assert_eq!(members, [(ada, one.id), (bo, one.id)]);
    let page = store.events_since(ada, before, 100).await.unwrap();
    assert_eq!(page.events.iter().map(|e| e.pos).collect::<Vec<_>>(), ids);
    assert_eq!((page.next, page.more, page.clock), (before + 3, false, before + 3));
    let page = store.events_since(cy, before, 100).await.unwrap();
    assert_eq!(page.events.iter().map(|e| e.pos).collect::<Vec<_>>(), [to_cy.id], "Cy's stream has a hole");
    assert_eq!(page.next, before + 3, "and its cursor passes over it");
    // Resending the whole batch stores nothing new.
    let again = store.send_messages(&batch[..1]).await.unwrap();
    let SendOutcome::Duplicate { message, cursor } = &again[0] else { panic!("{:?}", again[0]) };
    assert_eq!(message, one);
    assert_eq!(*cursor, one.id, "the sender's cursor");
    assert_eq!(store.clock().await.unwrap(), before + 3);
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
    let (messages, clock): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM messages), (SELECT value FROM clock)")
            .fetch_one(&mut watcher)
            .await
            .unwrap();
    assert_eq!((messages, clock), (0, 1), "nothing of the message is stored, and no position taken");
}

on_both_backends!(a_batch_whose_remembered_members_changed_leaves_no_hole_in_the_streams);

/// The store remembers chats' members between batches. A batch whose chats' members changed since
/// (another chat started moves the membership epoch) stores nothing and is tried again with its
/// members read anew; its failed attempt must not take positions of the clock either, or every
/// node's sequencer would wait for positions nobody publishes. A block, too, moves the epoch:
/// the batch after it reads the members again and is refused, though they were remembered.
async fn a_batch_whose_remembered_members_changed_leaves_no_hole_in_the_streams(backend: Backend) {
    let app = spawn(backend).await;
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
        let page = store.events_since(user, 0, 100).await.unwrap();
        let positions: Vec<i64> = page.events.iter().map(|e| e.pos).collect();
        assert_eq!(positions, [1, 2, 4], "the chat created and two messages; Cy and Dee's chat between");
    }
    assert_eq!(store.clock().await.unwrap(), 4, "no position taken by the refused attempt");

    store.block(bo, ada, 5).await.unwrap();
    let outcomes = store.send_messages(&[message(3)]).await.unwrap();
    assert!(matches!(outcomes[..], [SendOutcome::Blocked { by_sender: false }]), "{outcomes:?}");
    assert_eq!(store.clock().await.unwrap(), 4, "nothing stored");
}

/// Postgres keeps a batch's connection for the next batch. One that the database lost meanwhile
/// (here its backend terminated, as a restart or a network cut would) fails the batch it is used
/// for, and is then closed, not kept: the batch after is stored through a new connection. One
/// idle for a second or more is pinged first, and a lost one replaced before the batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_connection_lost_with_the_database_is_not_used_again() {
    use sqlx::Connection;
    let app = spawn(Backend::Postgres).await;
    let url = app.config.database_url();
    let name = format!("batch-{}", uuid::Uuid::new_v4().simple());
    let separator = if url.contains('?') { '&' } else { '?' };
    let store = store::connect(&format!("{url}{separator}application_name={name}")).await.unwrap();
    let (_, ids) = store_with_accounts(&app, &["ada", "bo"]).await;
    let chat_id = store.create_chat(ids[0], ids[1], 1).await.unwrap().chat_id;
    let message = |n: u32| NewMessage {
        chat_id,
        sender_id: ids[0],
        client_id: format!("00000000-0000-4000-8000-{n:012}"),
        body: format!("note {n}"),
        now: 2,
    };
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let batch_backends = "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'WITH guard%'";

    assert!(matches!(store.send_messages(&[message(1)]).await.unwrap()[..], [SendOutcome::Created { .. }]));
    let (kept,): (i32,) = sqlx::query_as(batch_backends).bind(&name).fetch_one(&mut admin).await.unwrap();
    let (terminated,): (bool,) =
        sqlx::query_as("SELECT pg_terminate_backend($1, 5000)").bind(kept).fetch_one(&mut admin).await.unwrap();
    assert!(terminated);

    let lost = store.send_messages(&[message(2)]).await;
    assert!(matches!(lost, Err(store::StoreError::Unavailable(_))), "{lost:?}");
    let outcomes = store.send_messages(&[message(2)]).await.unwrap();
    assert!(matches!(outcomes[..], [SendOutcome::Created { .. }]), "{outcomes:?}");
    let (now_kept,): (i32,) = sqlx::query_as(batch_backends).bind(&name).fetch_one(&mut admin).await.unwrap();
    assert_ne!(now_kept, kept);

    // One that sat idle for a second is pinged before it is used: lost meanwhile, it is replaced
    // and the batch goes through.
    sqlx::query("SELECT pg_terminate_backend($1, 5000)").bind(now_kept).execute(&mut admin).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let outcomes = store.send_messages(&[message(3)]).await.unwrap();
    assert!(matches!(outcomes[..], [SendOutcome::Created { .. }]), "{outcomes:?}");
}

on_both_backends!(a_users_stream_merges_their_chats_and_events_in_pages_of_any_size);

/// A user's stream is their chats' messages and their other events (chats started, read
/// markers) merged by position, with holes where other users' positions are. Each page reads at
/// most `limit` chats (those whose next message comes first), each at most `limit` rows deep;
/// where one ran out, or where a chat left out starts, the page ends, and the next resumes from
/// there: whatever the page size, every event comes once, in order.
async fn a_users_stream_merges_their_chats_and_events_in_pages_of_any_size(backend: Backend) {
    let app = spawn(backend).await;
    let (store, ids) = store_with_accounts(&app, &["ada", "bo", "cy", "dee"]).await;
    let (ada, bo, cy, dee) = (ids[0], ids[1], ids[2], ids[3]);
    let with_bo = store.create_chat(ada, bo, 1).await.unwrap().chat_id;
    let with_cy = store.create_chat(ada, cy, 1).await.unwrap().chat_id;
    let elsewhere = store.create_chat(cy, dee, 1).await.unwrap().chat_id;
    let with_dee = store.create_chat(ada, dee, 1).await.unwrap().chat_id;
    let mut sent = 0;
    let mut send = |chat_id: i64, sender_id: i64| {
        sent += 1;
        let message = NewMessage {
            chat_id,
            sender_id,
            client_id: format!("00000000-0000-4000-8000-{sent:012}"),
            body: format!("message {sent}"),
            now: 2,
        };
        let store = store.clone();
        async move {
            match &store.send_messages(&[message]).await.unwrap()[..] {
                [SendOutcome::Created { message, .. }] => message.id,
                other => panic!("{other:?}"),
            }
        }
    };
    let mut ada_sees = vec![1, 2, 4];
    for (chat_id, sender) in [(with_bo, ada), (with_cy, cy), (with_bo, bo), (elsewhere, dee), (with_cy, ada)] {
        let pos = send(chat_id, sender).await;
        if chat_id != elsewhere {
            ada_sees.push(pos);
        }
    }
    let read = match store.mark_read(with_bo, bo, 2, 3).await.unwrap() {
        store::ReadOutcome::Updated { events, .. } => events[0].pos,
        other => panic!("{other:?}"),
    };
    ada_sees.push(read);
    for (chat_id, sender) in [
        (with_bo, ada),
        (with_bo, bo),
        (elsewhere, cy),
        (with_bo, ada),
        (with_cy, cy),
        (with_dee, dee),
        (with_bo, bo),
        (with_dee, ada),
    ] {
        let pos = send(chat_id, sender).await;
        if chat_id != elsewhere {
            ada_sees.push(pos);
        }
    }
    let clock = store.clock().await.unwrap();
    assert_eq!(ada_sees.len(), 15);
    assert!(ada_sees.windows(2).all(|w| w[0] < w[1]));

    for limit in [1, 2, 3, 5, 100] {
        let (mut since, mut seen, mut pages) = (0, Vec::new(), 0);
        loop {
            let page = store.events_since(ada, since, limit).await.unwrap();
            assert!(page.events.len() as i64 <= limit, "limit {limit}: {page:?}");
            assert!(!page.more || !page.events.is_empty(), "limit {limit}: an empty page before the end: {page:?}");
            assert!(page.events.iter().all(|e| e.pos > since && e.pos <= page.next), "limit {limit}: {page:?}");
            seen.extend(page.events.iter().map(|e| e.pos));
            pages += 1;
            assert!(page.next >= since && pages < 100, "limit {limit}: no progress at {since}");
            since = page.next;
            if !page.more {
                break;
            }
        }
        assert_eq!(seen, ada_sees, "limit {limit}");
        assert_eq!(since, clock, "limit {limit}: the last page ends at the clock");
    }
    let first = store.events_since(ada, 0, 3).await.unwrap();
    assert_eq!(first.events.iter().map(|e| e.pos).collect::<Vec<_>>(), ada_sees[..3]);
    assert!(first.more);
    let kinds: Vec<_> = store.events_since(bo, 0, 100).await.unwrap().events.into_iter().map(|e| e.kind).collect();
    assert!(matches!(kinds[0], store::EventKind::ChatCreated), "{kinds:?}");
    assert!(kinds.iter().any(|k| matches!(k, store::EventKind::Read { reader_id, up_to: 2 } if *reader_id == bo)));
    assert_eq!(kinds.len(), 1 + 2 + 1 + 4, "Bo's chat: created, two messages, his read marker, four more");
}

on_both_backends!(a_sync_from_any_cursor_starts_at_each_chats_next_message);

/// Whatever the cursor, a sync starts each chat at its first message past it (SQLite finds it by
/// a binary search over the chat's last `seq`s, as many as positions past the cursor, so every
/// cursor between, at and around each message of chats of 1 to 300 messages is tried): the page
/// holds exactly the positions past the cursor.
async fn a_sync_from_any_cursor_starts_at_each_chats_next_message(backend: Backend) {
    let app = spawn(backend).await;
    let (store, ids) = store_with_accounts(&app, &["ada", "bo", "cy", "dee", "eve", "fay"]).await;
    let ada = ids[0];
    let mut chats = Vec::new();
    for &friend in &ids[1..] {
        chats.push(store.create_chat(ada, friend, 1).await.unwrap().chat_id);
    }
    let start = store.clock().await.unwrap();
    // Chats of 1, 7, 33, 64 and 300 messages, interleaved unevenly (a fixed pseudo-random order).
    let mut left = [1_usize, 7, 33, 64, 300];
    let mut order = Vec::new();
    let mut seed = 7_usize;
    while left.iter().any(|&n| n > 0) {
        seed = (seed * 1_103_515_245 + 12_345) % (1 << 31);
        let c = seed % left.len();
        if left[c] > 0 {
            left[c] -= 1;
            order.push(c);
        }
    }
    let mut positions = Vec::new();
    let mut sent = 0;
    // In batches of 1 to 6.
    let mut rest = &order[..];
    let mut batches = Vec::new();
    for size in (1..=6).cycle() {
        if rest.is_empty() {
            break;
        }
        let (batch, after) = rest.split_at(size.min(rest.len()));
        batches.push(batch);
        rest = after;
    }
    for batch in batches {
        let messages: Vec<NewMessage> = batch
            .iter()
            .map(|&c| {
                sent += 1;
                NewMessage {
                    chat_id: chats[c],
                    sender_id: if sent % 2 == 0 { ada } else { ids[c + 1] },
                    client_id: format!("00000000-0000-4000-8000-{sent:012}"),
                    body: format!("message {sent}"),
                    now: 2,
                }
            })
            .collect();
        for outcome in store.send_messages(&messages).await.unwrap() {
            match outcome {
                SendOutcome::Created { message, .. } => positions.push(message.id),
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(positions.len(), 1 + 7 + 33 + 64 + 300);
    positions.sort_unstable();
    let clock = store.clock().await.unwrap();

    for since in start..=clock {
        let page = store.events_since(ada, since, 1000).await.unwrap();
        let got: Vec<i64> = page.events.iter().map(|e| e.pos).collect();
        let wanted: Vec<i64> = positions.iter().copied().filter(|&p| p > since).collect();
        assert_eq!(got, wanted, "from {since}");
        assert!(!page.more, "from {since}");
        // With room for one message a chat, each chat with more past the cursor gives its first.
        let page = store.events_since(ada, since, 1).await.unwrap();
        assert_eq!(page.events.first().map(|e| e.pos), wanted.first().copied(), "from {since}, one at a time");
    }
}
