//! What one group commit costs the store, apart from sockets, the relay and the load generator:
//! `Store::send_messages` called in a loop with batches of a fixed shape, on a database of the
//! run's own. It prints each batch's time and the CPU the database (Postgres's processes) and
//! this process (the server's side, and SQLite itself) spent per batch and per message.
//!
//! ```sh
//! cargo bench -p parley-server --bench batch_cost -- --backend postgres --chats 50 --messages 72
//! cargo bench -p parley-server --bench batch_cost -- --backend sqlite --chats 1 --messages 1
//! ```
//!
//! Options: `--backend sqlite|postgres`, `--chats C` (the batch's messages go round-robin to C
//! chats of two members each, senders alternating), `--messages M` per batch, `--batches N`
//! measured after `--warmup W`, `--accounts A` (more accounts than the chats use, as on a real
//! server). Postgres: `PARLEY_BENCH_POSTGRES_URL` (default the local `test` database), in a
//! schema of the run's own, dropped at the end. docs/BENCHMARKS.md has figures.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use parley_server::store::{self, BulkUser, NewMessage, SendOutcome, Store};
use sqlx::Connection;

struct Options {
    backend: String,
    chats: usize,
    messages: usize,
    batches: usize,
    warmup: usize,
    accounts: usize,
}

impl Options {
    fn parse() -> Self {
        let mut options =
            Options { backend: "postgres".into(), chats: 50, messages: 72, batches: 500, warmup: 50, accounts: 400 };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            // `cargo bench` passes `--bench` to every target; the rest are ours.
            if arg == "--bench" {
                continue;
            }
            let value = args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
            let number = || value.parse::<usize>().unwrap_or_else(|_| panic!("{arg}: not a number: {value}"));
            match arg.as_str() {
                "--backend" => options.backend = value.clone(),
                "--chats" => options.chats = number().max(1),
                "--messages" => options.messages = number().max(1),
                "--batches" => options.batches = number().max(1),
                "--warmup" => options.warmup = number(),
                "--accounts" => options.accounts = number(),
                _ => panic!("unknown option {arg}"),
            }
        }
        options.accounts = options.accounts.max(options.chats * 2);
        options
    }
}

/// CPU seconds (user + system) of the given processes so far, from `/proc/<pid>/stat`.
fn cpu_secs(pids: &[u32]) -> f64 {
    // Linux counts in clock ticks of 1/100 s (USER_HZ) on every architecture it runs on here.
    const TICKS_PER_SEC: f64 = 100.0;
    let ticks: u64 = pids
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // The fields after the command name, which may itself hold spaces and parentheses.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split(' ').collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    ticks as f64 / TICKS_PER_SEC
}

/// Postgres's processes on this machine (the benchmark's database is on this machine).
fn postgres_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "postgres"))
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Where the run's data lives; removed on drop.
enum Database {
    Sqlite { dir: std::path::PathBuf },
    Postgres { admin_url: String, schema: String },
}

impl Database {
    async fn create(backend: &str) -> (Self, String) {
        match backend {
            "sqlite" => {
                let dir = std::env::temp_dir().join(format!("parley-batch-cost-{}", std::process::id()));
                std::fs::create_dir_all(&dir).unwrap();
                let url = format!("sqlite://{}", dir.join("parley.db").display());
                (Database::Sqlite { dir }, url)
            }
            "postgres" => {
                let admin_url = std::env::var("PARLEY_BENCH_POSTGRES_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
                let schema = format!("batch_cost_{}", std::process::id());
                let mut admin = sqlx::PgConnection::connect(&admin_url).await.expect("connecting to Postgres");
                sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut admin).await.unwrap();
                let separator = if admin_url.contains('?') { '&' } else { '?' };
                let url = format!("{admin_url}{separator}options=-c%20search_path%3D{schema}");
                (Database::Postgres { admin_url, schema }, url)
            }
            other => panic!("--backend sqlite or postgres, not {other}"),
        }
    }

    async fn remove(self) {
        match self {
            Database::Sqlite { dir } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Database::Postgres { admin_url, schema } => {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut admin).await;
                }
            }
        }
    }
}

/// Accounts and the chats between them: chat `c` is between accounts `2c` and `2c + 1`.
async fn chats(store: &Arc<dyn Store>, options: &Options) -> Vec<(i64, [i64; 2])> {
    let users: Vec<BulkUser> = (0..options.accounts)
        .map(|n| BulkUser {
            email: format!("batch-cost-{n}@example.org"),
            display_name: format!("Batch cost {n}"),
            password_hash: "!".into(),
            token_hash: format!("token {n}").into_bytes(),
            now: 1,
            session_expires_at: i64::MAX,
        })
        .collect();
    let ids = store.create_users_with_sessions(&users).await.unwrap();
    let mut chats = Vec::new();
    for pair in ids.chunks(2).take(options.chats) {
        let chat = store.create_chat(pair[0], pair[1], 1).await.unwrap();
        chats.push((chat.chat_id, [pair[0], pair[1]]));
    }
    chats
}

/// The `round`-th batch: its messages round-robin over the chats, the senders taking turns.
fn batch(chats: &[(i64, [i64; 2])], messages: usize, round: usize) -> Vec<NewMessage> {
    (0..messages)
        .map(|k| {
            let (chat_id, members) = chats[k % chats.len()];
            let turn = (round * messages + k) / chats.len();
            NewMessage {
                chat_id,
                sender_id: members[turn % 2],
                client_id: uuid::Uuid::new_v4().to_string(),
                body: format!("message {k} of batch {round}, about as long as a chat line"),
                now: 2 + round as i64,
            }
        })
        .collect()
}

fn main() {
    let options = Options::parse();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run(options));
}

async fn run(options: Options) {
    let (database, url) = Database::create(&options.backend).await;
    let store = store::connect(&url).await.expect("opening the store");
    let chats = chats(&store, &options).await;

    for round in 0..options.warmup {
        store.send_messages(&batch(&chats, options.messages, round)).await.unwrap();
    }
    let database_pids = if options.backend == "postgres" { postgres_pids() } else { Vec::new() };
    let own_pid = [std::process::id()];
    let (database_before, own_before) = (cpu_secs(&database_pids), cpu_secs(&own_pid));
    let started = Instant::now();
    let mut times = Vec::with_capacity(options.batches);
    for round in options.warmup..options.warmup + options.batches {
        let messages = batch(&chats, options.messages, round);
        let sent = Instant::now();
        let outcomes = store.send_messages(&messages).await.unwrap();
        times.push(sent.elapsed());
        assert!(
            outcomes.iter().all(|o| matches!(o, SendOutcome::Created { .. })),
            "every message of the batch is stored: {outcomes:?}"
        );
    }
    let elapsed = started.elapsed();
    let database_cpu = cpu_secs(&database_pids) - database_before;
    let own_cpu = cpu_secs(&own_pid) - own_before;

    times.sort_unstable();
    let (batches, messages) = (options.batches as f64, (options.batches * options.messages) as f64);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "batch_cost: {}, {} messages a batch in {} chats, {} batches ({} accounts)",
        options.backend, options.messages, options.chats, options.batches, options.accounts
    );
    println!(
        "batch time        mean {:.3} ms, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        ms(elapsed) / batches,
        ms(percentile(&times, 0.50)),
        ms(percentile(&times, 0.99)),
        ms(*times.last().unwrap())
    );
    if options.backend == "postgres" {
        println!(
            "database CPU      {:.3} ms a batch, {:.1} µs a message ({:.2} s in all)",
            database_cpu * 1e3 / batches,
            database_cpu * 1e6 / messages,
            database_cpu
        );
    }
    println!(
        "this process CPU  {:.3} ms a batch, {:.1} µs a message ({:.2} s in all{})",
        own_cpu * 1e3 / batches,
        own_cpu * 1e6 / messages,
        own_cpu,
        if options.backend == "sqlite" { ", SQLite included" } else { "" }
    );
    drop(store);
    database.remove().await;
}
