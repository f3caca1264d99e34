//! Migrations applied to a database holding data of the layout before them, as an upgrade does.
use std::path::{Path, PathBuf};

use parley_server::store::{self, EventKind, NewMessage, SendOutcome};

use crate::{
    helpers::{empty_database, Backend},
    on_both_backends,
};

/// The first migration of the one-clock layout (docs/ONE-CLOCK.md).
const ONE_CLOCK: &str = "20261207000010";
/// The migration that puts `client_id` first in the index that finds resends.
const CLIENT_ID_FIRST: &str = "20261207000020";

/// A folder holding the backend's migrations older than `before`, as an older release has them.
fn migrations_before(backend: Backend, before: &str, into: &Path) -> PathBuf {
    let name = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations").join(name);
    let folder = into.join("migrations");
    std::fs::create_dir_all(&folder).unwrap();
    for entry in std::fs::read_dir(source).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        if file.as_str() < before {
            std::fs::copy(&path, folder.join(file)).unwrap();
        }
    }
    folder
}

/// Runs `statements` on a database at `url` migrated with `older` only, as an older release left it.
async fn with_older_migrations(backend: Backend, url: &str, older: &Path, statements: &[String]) {
    use sqlx::Connection;
    let migrator = sqlx::migrate::Migrator::new(older).await.unwrap();
    match backend {
        Backend::Sqlite => {
            let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(url)
                .unwrap()
                .create_if_missing(true);
            let mut db = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
            migrator.run(&mut db).await.unwrap();
            for statement in statements {
                sqlx::query(statement).execute(&mut db).await.unwrap();
            }
        }
        Backend::Postgres => {
            let mut db = sqlx::PgConnection::connect(url).await.unwrap();
            migrator.run(&mut db).await.unwrap();
            for statement in statements {
                sqlx::query(statement).execute(&mut db).await.unwrap();
            }
        }
    }
}

on_both_backends!(the_one_clock_migration_keeps_every_message_and_each_users_events_in_order);

/// Ada and Bo's chat and Ada and Cy's, written as the layout before stored them (an event per
/// member for every message, each user's counter): after the migration every message is at its
/// id, each user's other events follow in their old order, the clock is past all of them, and the
/// history epoch moved on, so that no client resumes from a cursor of the old streams.
async fn the_one_clock_migration_keeps_every_message_and_each_users_events_in_order(backend: Backend) {
    let data_dir = std::env::temp_dir().join(format!("parley-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&data_dir).unwrap();
    let (url, _db) = empty_database(backend, &data_dir).await;
    let older = migrations_before(backend, ONE_CLOCK, &data_dir);
    let mut statements: Vec<String> = Vec::new();
    for (id, name) in [(1, "ada"), (2, "bo"), (3, "cy")] {
        statements.push(format!(
            "INSERT INTO users (id, email, display_name, password_hash, created_at)
             VALUES ({id}, '{name}@example.org', '{name}', '!', 1)"
        ));
    }
    statements.extend(
        [
            "INSERT INTO chats (id, pair_key, last_seq, last_activity_at, created_at) VALUES (1, '1:2', 2, 1, 1)",
            "INSERT INTO chats (id, pair_key, last_seq, last_activity_at, created_at) VALUES (2, '1:3', 1, 1, 1)",
            "INSERT INTO chat_members (chat_id, user_id, read_up_to, joined_at, reached_out)
             VALUES (1, 1, 0, 1, TRUE), (1, 2, 1, 1, TRUE), (2, 1, 0, 1, TRUE), (2, 3, 0, 1, TRUE)",
            "INSERT INTO messages (id, chat_id, seq, sender_id, client_id, body, created_at) VALUES
             (1, 1, 1, 1, '00000000-0000-4000-8000-000000000001', 'ada to bo', 2),
             (2, 2, 1, 3, '00000000-0000-4000-8000-000000000002', 'cy to ada', 2),
             (3, 1, 2, 2, '00000000-0000-4000-8000-000000000003', 'bo to ada', 3)",
            // Ada: her two chats started, two messages, Bo read hers, Bo's reply.
            "INSERT INTO events (user_id, pos, kind, chat_id, message_id, reader_id, up_to, created_at) VALUES
             (1, 1, 'chat_created', 1, NULL, NULL, NULL, 1),
             (1, 2, 'chat_created', 2, NULL, NULL, NULL, 1),
             (1, 3, 'message', 1, 1, NULL, NULL, 2),
             (1, 4, 'message', 2, 2, NULL, NULL, 2),
             (1, 5, 'read', 1, NULL, 2, 1, 3),
             (1, 6, 'message', 1, 3, NULL, NULL, 3),
             (2, 1, 'chat_created', 1, NULL, NULL, NULL, 1),
             (2, 2, 'message', 1, 1, NULL, NULL, 2),
             (2, 3, 'read', 1, NULL, 2, 1, 3),
             (2, 4, 'message', 1, 3, NULL, NULL, 3),
             (3, 1, 'chat_created', 2, NULL, NULL, NULL, 1),
             (3, 2, 'message', 2, 2, NULL, NULL, 2)",
        ]
        .map(String::from),
    );
    match backend {
        Backend::Sqlite => {
            statements.push("UPDATE users SET last_event_pos = CASE id WHEN 1 THEN 6 WHEN 2 THEN 4 ELSE 2 END".into());
        }
        Backend::Postgres => {
            statements
                .push("UPDATE user_streams SET last_event_pos = CASE id WHEN 1 THEN 6 WHEN 2 THEN 4 ELSE 2 END".into());
            statements.push("UPDATE messages SET sender_pos = CASE id WHEN 1 THEN 3 WHEN 2 THEN 2 ELSE 4 END".into());
        }
    }
    with_older_migrations(backend, &url, &older, &statements).await;

    // The server's own migrations, as an upgraded server runs them.
    let store = store::connect(&url).await.unwrap();
    assert_eq!(store.history_epoch().await.unwrap(), 1, "cursors of the old streams are refused");
    assert_eq!(store.clock().await.unwrap(), 3 + 6, "past the messages and the six other events");

    let stream = |user: i64| {
        let store = store.clone();
        async move {
            let page = store.events_since(user, 0, 100).await.unwrap();
            assert!(!page.more);
            page.events
                .into_iter()
                .map(|e| match e.kind {
                    EventKind::Message(m) => format!("{} {}", e.pos, m.body),
                    EventKind::ChatCreated => format!("{} chat {}", e.pos, e.chat_id),
                    EventKind::Read { reader_id, up_to } => format!("{} read {reader_id}:{up_to}", e.pos),
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        stream(1).await,
        ["1 ada to bo", "2 cy to ada", "3 bo to ada", "4 chat 1", "5 chat 2", "6 read 2:1"],
        "Ada: every message at its id, then her other events in their order"
    );
    assert_eq!(stream(2).await, ["1 ada to bo", "3 bo to ada", "7 chat 1", "8 read 2:1"]);
    assert_eq!(stream(3).await, ["2 cy to ada", "9 chat 2"]);

    // A resend is answered with its message's position; a new message takes the clock's next.
    let message = |n: u32, body: &str| NewMessage {
        chat_id: 1,
        sender_id: 1,
        client_id: format!("00000000-0000-4000-8000-{n:012}"),
        body: body.into(),
        now: 4,
    };
    let outcomes = store.send_messages(&[message(1, "ada to bo"), message(4, "after")]).await.unwrap();
    assert!(matches!(&outcomes[0], SendOutcome::Duplicate { cursor: 1, message } if message.id == 1), "{outcomes:?}");
    assert!(matches!(&outcomes[1], SendOutcome::Created { message, .. } if (message.id, message.seq) == (10, 3)));
    let page = store.events_since(2, 9, 100).await.unwrap();
    assert_eq!(page.events.iter().map(|e| e.pos).collect::<Vec<_>>(), [10]);
    std::fs::remove_dir_all(&data_dir).unwrap();
}

on_both_backends!(the_client_id_first_migration_keeps_every_message_and_still_finds_resends);

/// Ada and Bo's chat with three messages, stored while the index that finds resends had the
/// sender first: after the migration the index has the `client_id` first (and the old one is
/// gone), every message is still there at its id, and resends are still told from new messages
/// and from a `client_id` used again for another message. Ids are the sender's own: Bo may use
/// the one Ada used.
async fn the_client_id_first_migration_keeps_every_message_and_still_finds_resends(backend: Backend) {
    let data_dir = std::env::temp_dir().join(format!("parley-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&data_dir).unwrap();
    let (url, _db) = empty_database(backend, &data_dir).await;
    let older = migrations_before(backend, CLIENT_ID_FIRST, &data_dir);
    let mut statements: Vec<String> = Vec::new();
    for (id, name) in [(1, "ada"), (2, "bo")] {
        statements.push(format!(
            "INSERT INTO users (id, email, display_name, password_hash, created_at)
             VALUES ({id}, '{name}@example.org', '{name}', '!', 1)"
        ));
    }
    statements.extend(
        [
            "INSERT INTO chats (id, pair_key, last_seq, last_pos, last_activity_at, created_at)
             VALUES (1, '1:2', 3, 3, 1, 1)",
            "INSERT INTO chat_members (chat_id, user_id, read_up_to, joined_at, reached_out)
             VALUES (1, 1, 0, 1, TRUE), (1, 2, 0, 1, TRUE)",
            "INSERT INTO messages (id, chat_id, seq, sender_id, client_id, body, created_at) VALUES
             (1, 1, 1, 1, '0193a4b2-0000-7000-8000-000000000001', 'one', 2),
             (2, 1, 2, 2, '0193a4b2-0000-7000-8000-000000000002', 'two', 2),
             (3, 1, 3, 1, '0193a4b2-0000-7000-8000-000000000003', 'three', 3)",
            "UPDATE clock SET value = 3 WHERE id = 1",
        ]
        .map(String::from),
    );
    with_older_migrations(backend, &url, &older, &statements).await;

    let store = store::connect(&url).await.unwrap();
    let indexes: Vec<(String,)> = match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlx::query_as("SELECT sql FROM sqlite_master WHERE tbl_name = 'messages' AND sql IS NOT NULL")
                .fetch_all(&pool)
                .await
                .unwrap()
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::query_as(
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'messages' AND schemaname = current_schema()",
            )
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    let definitions = indexes.into_iter().map(|(sql,)| sql).collect::<Vec<_>>().join("\n");
    assert!(definitions.contains("(client_id, sender_id)"), "{definitions}");
    assert!(!definitions.contains("(sender_id, client_id)"), "{definitions}");

    let page = store.events_since(1, 0, 100).await.unwrap();
    let stored: Vec<(i64, String)> = page
        .events
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Message(m) => Some((m.id, m.body)),
            _ => None,
        })
        .collect();
    assert_eq!(stored, [(1, "one".to_string()), (2, "two".into()), (3, "three".into())]);

    let message = |sender_id: i64, n: u32, body: &str| NewMessage {
        chat_id: 1,
        sender_id,
        client_id: format!("0193a4b2-0000-7000-8000-{n:012}"),
        body: body.into(),
        now: 4,
    };
    let outcomes = store
        .send_messages(&[message(1, 3, "three"), message(2, 1, "bo's own"), message(1, 2, "not bo's")])
        .await
        .unwrap();
    assert!(matches!(&outcomes[0], SendOutcome::Duplicate { cursor: 3, message } if message.id == 3), "{outcomes:?}");
    assert!(
        matches!(&outcomes[1], SendOutcome::Created { message, .. } if (message.id, message.seq) == (4, 4)),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[2], SendOutcome::Created { message, .. } if (message.id, message.seq) == (5, 5)),
        "Ada's id 2 is hers to use, whoever used it first: {outcomes:?}"
    );
    let outcomes = store.send_messages(&[message(1, 1, "changed")]).await.unwrap();
    assert!(matches!(&outcomes[0], SendOutcome::ClientIdReused), "{outcomes:?}");
    std::fs::remove_dir_all(&data_dir).unwrap();
}
