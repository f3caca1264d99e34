//! The load generator against a real server, on SQLite and on Postgres: a short throughput run
//! whose only verdict is exactly-once delivery in order (every message acked, delivered once and
//! in the order sent, none missing; on Postgres its queue grows long enough for batches to be
//! stored side by side). It times nothing: speed is for `scripts/bench.sh`, not for tests.
use std::{path::PathBuf, process::Command};

use parley_server::{admin, config::Secret, Config, Server};
use sqlx::Connection;

const PAIRS: usize = 8;
const MESSAGES: usize = 400;

/// Starts a server on a random port over `database_url` (SQLite in `data_dir` when `None`) with
/// the per-user limits lifted, as the benchmarks run it; returns its URL and its config.
async fn server(data_dir: PathBuf, database_url: Option<String>) -> (String, Config) {
    let mut config = Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir,
        database_url: database_url.map(Secret),
        log: "warn".into(),
        ws_frames_per_sec: 1_000_000,
        ws_queue_len: 4096,
        ..Config::default()
    };
    config.rate_limits.messages_per_user = 0;
    config.rate_limits.new_chat_per_user = 0;
    let listener = parley_server::listen(config.bind).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = Server::build(config.clone()).await.expect("server starts");
    tokio::spawn(server.serve(listener, std::future::pending()));
    (url, config)
}

async fn every_message_arrives_exactly_once(database_url: Option<String>) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("load-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (url, config) = server(dir.clone(), database_url).await;
    let tokens = dir.join("tokens.tsv");
    admin::create_users(&config, PAIRS * 2, "load", &tokens).await.expect("accounts");
    let report = dir.join("report.json");

    let load = env!("CARGO_BIN_EXE_parley-load");
    let args: Vec<String> = [
        "--server",
        &url,
        "--tokens",
        tokens.to_str().unwrap(),
        "--json",
        report.to_str().unwrap(),
        "throughput",
        "--pairs",
        &PAIRS.to_string(),
        "--messages",
        &MESSAGES.to_string(),
        "--window",
        "32",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let output = tokio::task::spawn_blocking(move || Command::new(load).args(args).output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "parley-load failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let expected = (PAIRS * MESSAGES) as u64;
    assert_eq!(report["acked"], expected, "{report}");
    assert_eq!(report["delivered"], expected, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert_eq!(report["missing"], 0, "{report}");
    assert_eq!(report["out_of_order"], 0, "{report}");
    // The timeline of slow messages accounts for every message delivered.
    let windows = report["timeline"]["windows"].as_array().expect("a timeline");
    assert_eq!(windows.iter().map(|w| w["messages"].as_u64().unwrap()).sum::<u64>(), expected, "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_every_message_arrives_exactly_once() {
    every_message_arrives_exactly_once(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_every_message_arrives_exactly_once() {
    let admin_url =
        std::env::var("PARLEY_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    // A schema of its own, as the server's tests do.
    let schema = format!("load_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin_url).await.expect("Postgres (set PARLEY_TEST_POSTGRES_URL)");
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut conn).await.unwrap();
    let sep = if admin_url.contains('?') { '&' } else { '?' };
    every_message_arrives_exactly_once(Some(format!("{admin_url}{sep}options=-c%20search_path%3D{schema}"))).await;
    // The server still runs, and its sockets' goodbyes (last-seen times, presence) may still be
    // reading and writing the schema: a DROP that deadlocks with one of them is tried again.
    let drop = format!("DROP SCHEMA {schema} CASCADE");
    for attempt in 1.. {
        match sqlx::query(&drop).execute(&mut conn).await {
            Ok(_) => break,
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("40P01") && attempt < 5 => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(err) => panic!("dropping {schema}: {err}"),
        }
    }
}
