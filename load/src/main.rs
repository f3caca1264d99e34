//! `parley-load`: drives a Parley server over its public protocol (REST and WebSocket, real
//! sockets) and reports what it measured, as a table and as JSON.
//!
//! Accounts come from `parley-server admin create-users --tokens-out FILE`.
#![forbid(unsafe_code)]

use std::{path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};

mod client;
mod report;
mod scenarios;

#[derive(Parser)]
#[command(name = "parley-load", about = "Load generator for Parley")]
struct Cli {
    /// The server's base URL; repeat it for the nodes of a cluster (only `throughput` uses more
    /// than the first: each pair's sender and receiver on different nodes).
    #[arg(long = "server", default_value = "http://127.0.0.1:8000")]
    servers: Vec<String>,
    /// Accounts: `user_id<TAB>email<TAB>token` lines from `parley-server admin create-users`.
    #[arg(long)]
    tokens: PathBuf,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Give up on a scenario after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Clone)]
pub enum Scenario {
    /// P pairs; each sender sends M messages with at most W unacknowledged.
    Throughput {
        #[arg(long, default_value_t = 50)]
        pairs: usize,
        #[arg(long, default_value_t = 1000)]
        messages: usize,
        #[arg(long, default_value_t = 32)]
        window: usize,
        /// Send at this many messages per second in all (spread evenly over the senders, each
        /// on a fixed schedule) instead of as fast as the window allows; latency is then counted
        /// from each message's scheduled time, so a server that falls behind shows it.
        #[arg(long)]
        rate: Option<f64>,
    },
    /// K idle authenticated sockets; the server's RSS per connection.
    Connections {
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// The server's pid, to read its memory from /proc.
        #[arg(long)]
        server_pid: u32,
        /// Loopback source addresses to spread the sockets over (127.0.0.1, 127.0.0.2, …):
        /// one address has about 28,000 ephemeral ports.
        #[arg(long, default_value_t = 1)]
        source_ips: u8,
        /// Keep the sockets open this long after measuring: several load generators, one per
        /// node, then hold theirs at the same time.
        #[arg(long, default_value_t = 0)]
        hold_secs: u64,
    },
    /// A client offline while N messages arrive for it; time from reconnect to having them all.
    Catchup {
        #[arg(long, default_value_t = 10_000)]
        messages: usize,
    },
    /// One user with D devices; each message must reach all D.
    Fanout {
        #[arg(long, default_value_t = 50)]
        devices: usize,
        #[arg(long, default_value_t = 200)]
        rounds: usize,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Many sockets need many descriptors; raise the soft limit to the hard one.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let accounts = match client::Account::read_all(&cli.tokens) {
        Ok(accounts) => accounts,
        Err(err) => {
            eprintln!("parley-load: reading {}: {err}", cli.tokens.display());
            return std::process::ExitCode::from(2);
        }
    };
    let targets: Vec<client::Target> = cli.servers.iter().map(|s| client::Target::new(s)).collect();
    let run = scenarios::run(&targets, &accounts, cli.scenario.clone());
    let report = match tokio::time::timeout(Duration::from_secs(cli.timeout_secs), run).await {
        Ok(Ok(report)) => report,
        Ok(Err(err)) => {
            eprintln!("parley-load: {err}");
            return std::process::ExitCode::FAILURE;
        }
        Err(_) => {
            eprintln!("parley-load: gave up after {} s", cli.timeout_secs);
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("{}", report.table());
    if let Some((voluntary, involuntary)) = context_switches() {
        // Each a thread of this process that slept and was woken, or was taken off a core: on a
        // machine the server shares, the load generator's share of the scheduling.
        println!("load generator: context switches, voluntary / involuntary: {voluntary} / {involuntary}");
    }
    if let Some(path) = &cli.json {
        if let Err(err) = std::fs::write(path, serde_json::to_string_pretty(&report.json).expect("json")) {
            eprintln!("parley-load: writing {}: {err}", path.display());
            return std::process::ExitCode::FAILURE;
        }
    }
    if report.ok {
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!("parley-load: the run found lost, duplicated or reordered messages");
        std::process::ExitCode::FAILURE
    }
}

/// This process's context switches so far, all its threads (Linux; `None` elsewhere).
fn context_switches() -> Option<(u64, u64)> {
    let (mut voluntary, mut involuntary) = (0, 0);
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let status = std::fs::read_to_string(task.ok()?.path().join("status")).ok()?;
        for line in status.lines() {
            let count = |prefix: &str| line.strip_prefix(prefix).and_then(|n| n.trim().parse::<u64>().ok());
            if let Some(n) = count("voluntary_ctxt_switches:") {
                voluntary += n;
            } else if let Some(n) = count("nonvoluntary_ctxt_switches:") {
                involuntary += n;
            }
        }
    }
    Some((voluntary, involuntary))
}
