//! The four scenarios. Each checks what it can of exactly-once delivery besides timing.
use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use parley_common::{ClientFrame, Event, ServerFrame};
use serde_json::json;

use crate::{
    client::{Account, Result, Target},
    report::{latency_histogram, latency_summary, Report},
    Scenario,
};

/// `targets` are the nodes of one cluster (one for a single server). Only `throughput` spreads its
/// users over them; the others measure one node.
pub async fn run(targets: &[Target], accounts: &[Account], scenario: Scenario) -> Result<Report> {
    let target = &targets[0];
    match scenario {
        Scenario::Throughput { pairs, messages, window, rate } => {
            throughput(targets, accounts, pairs, messages, window, rate).await
        }
        Scenario::Connections { count, server_pid, source_ips, hold_secs } => {
            connections(target, accounts, count, server_pid, source_ips, Duration::from_secs(hold_secs)).await
        }
        Scenario::Catchup { messages } => catchup(target, accounts, messages).await,
        Scenario::Fanout { devices, rounds } => fanout(target, accounts, devices, rounds).await,
    }
}

fn need(accounts: &[Account], n: usize) -> Result<()> {
    if accounts.len() < n {
        return Err(format!("this scenario needs {n} accounts; the tokens file has {}", accounts.len()).into());
    }
    Ok(())
}

/// tokio's timer ticks in whole milliseconds and rounds a sleep up to the next tick, so a paced
/// sender that slept until a message was due wrote it ~1 ms late on average (`due → written`).
/// Sleeping until this much before, it writes each within about half a tick of when it is due.
const TIMER_LEAD: Duration = Duration::from_micros(500);

/// A `client_id` as Parley's clients make them (`parley_common::client_id`): time-ordered, of
/// version 7. Unique per run without a random source: the run's salt and a counter stand for the
/// random part, in the bytes `time_ordered` keeps whole.
fn new_client_id(n: usize, salt: u64) -> String {
    let mut random = [0u8; 10];
    random[3..6].copy_from_slice(&salt.to_be_bytes()[5..]);
    random[6..].copy_from_slice(&(n as u32).to_be_bytes());
    let unix_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    parley_common::client_id::time_ordered(unix_ms, random)
}

/// The latency the benchmarks aim for at a steady rate (docs/BENCHMARKS.md): slower is "slow".
const SLOW_US: u64 = 5_000;
/// The run is cut into windows of this much send time, to show whether slow messages come
/// spread over the run (the typical batch is too slow) or bunched (a stall of some process).
const WINDOW_US: u64 = 100_000;

/// The messages sent in one window of the run, by send time.
#[derive(Clone, Copy, Default)]
struct Window {
    messages: u64,
    slow: u64,
    max_us: u64,
}

impl Window {
    fn add(&mut self, other: &Window) {
        self.messages += other.messages;
        self.slow += other.slow;
        self.max_us = self.max_us.max(other.max_us);
    }
}

/// Adds `window` to the one at `index`, the timeline growing to hold it.
fn add_window(timeline: &mut Vec<Window>, index: usize, window: &Window) {
    if timeline.len() <= index {
        timeline.resize(index + 1, Window::default());
    }
    timeline[index].add(window);
}

/// Adds one message to the window of its send time.
fn record_window(timeline: &mut Vec<Window>, sent_us: u64, latency_us: u64) {
    let message = Window { messages: 1, slow: u64::from(latency_us > SLOW_US), max_us: latency_us };
    add_window(timeline, (sent_us / WINDOW_US) as usize, &message);
}

fn merge_windows(into: &mut Vec<Window>, from: &[Window]) {
    for (index, window) in from.iter().enumerate() {
        add_window(into, index, window);
    }
}

/// The slow messages and where they fall: a table cell and JSON of every window that had
/// messages, its start in milliseconds from `start_us` (when the senders started).
fn timeline_summary(timeline: &[Window], start_us: u64) -> (serde_json::Value, String) {
    let windows: Vec<(i64, Window)> = timeline
        .iter()
        .enumerate()
        .filter(|(_, w)| w.messages > 0)
        .map(|(i, w)| (((i as u64 * WINDOW_US) as i64 - start_us as i64) / 1000, *w))
        .collect();
    let total: u64 = windows.iter().map(|(_, w)| w.messages).sum();
    let slow: u64 = windows.iter().map(|(_, w)| w.slow).sum();
    let mut worst: Vec<&(i64, Window)> = windows.iter().filter(|(_, w)| w.slow > 0).collect();
    // Most slow messages first; among windows equally slow (say, all of their messages), the
    // one with the slowest message, where a stall would show.
    worst.sort_by_key(|(_, w)| std::cmp::Reverse((w.slow, w.max_us)));
    let in_worst_3: u64 = worst.iter().take(3).map(|(_, w)| w.slow).sum();
    let listed: Vec<String> = worst
        .iter()
        .take(3)
        .map(|(t, w)| {
            format!(
                "{:.1} s: {} of {} (max {:.1} ms)",
                *t as f64 / 1000.0,
                w.slow,
                w.messages,
                w.max_us as f64 / 1000.0
            )
        })
        .collect();
    let cell = if slow == 0 {
        format!("none of {total}")
    } else {
        format!(
            "{slow} of {total} ({:.2}%), in {} of {} windows of {} ms; the worst 3 hold {:.0}% of them: {}",
            slow as f64 * 100.0 / total.max(1) as f64,
            worst.len(),
            windows.len(),
            WINDOW_US / 1000,
            in_worst_3 as f64 * 100.0 / slow as f64,
            listed.join("; ")
        )
    };
    let json = json!({
        "slow_over_ms": SLOW_US as f64 / 1000.0,
        "window_ms": WINDOW_US / 1000,
        "slow": slow,
        "windows": windows.iter().map(|(t, w)| json!({
            "start_ms": t, "messages": w.messages, "slow": w.slow, "max_ms": w.max_us as f64 / 1000.0,
        })).collect::<Vec<_>>(),
    });
    (json, cell)
}

fn run_salt() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Each sender's messages carry the send time (µs since `epoch`) as their body, so the receiver
/// computes the latency. With a `rate`, that is the time the message was due by the schedule,
/// whether or not the window let it go then; the body then also carries when it was written
/// (`due,written`), so that the report can tell the load generator's own lateness apart.
///
/// With several nodes, pair `p`'s sender is on node `p mod n` and its receiver on the next node:
/// every message crosses from one node to another, and each node has senders and receivers.
async fn throughput(
    targets: &[Target],
    accounts: &[Account],
    pairs: usize,
    messages: usize,
    window: usize,
    rate: Option<f64>,
) -> Result<Report> {
    need(accounts, pairs * 2)?;
    // Each sender's interval between messages, when paced.
    let interval = rate.filter(|r| *r > 0.0).map(|r| Duration::from_secs_f64(pairs as f64 / r));
    let window = window.max(1);
    let mut chats = Vec::with_capacity(pairs);
    for pair in 0..pairs {
        chats.push(targets[0].chat(&accounts[2 * pair], &accounts[2 * pair + 1]).await?);
    }
    let epoch = Instant::now();
    let salt = run_salt();

    let mut receivers = Vec::new();
    for pair in 0..pairs {
        let (mut socket, _) = targets[(pair + 1) % targets.len()].connect(&accounts[2 * pair + 1]).await?;
        let chat = chats[pair];
        receivers.push(tokio::spawn(async move {
            let mut latency = latency_histogram();
            // From when each message was written, when that differs from when it was due.
            let mut from_written = latency_histogram();
            let mut timeline = Vec::new();
            let mut seen = HashSet::with_capacity(messages);
            let mut duplicates = 0usize;
            // Delivered out of the order sent or stored: a later send time or `seq` came first.
            let mut out_of_order = 0usize;
            let (mut last_sent_us, mut last_seq) = (0, 0);
            let mut last_at = Instant::now();
            while seen.len() < messages {
                match socket.next_within(Duration::from_secs(30)).await? {
                    Some(ServerFrame::Event(Event::Message { message, .. })) if message.chat_id == chat => {
                        last_at = Instant::now();
                        let (sent, written) = message.body.split_once(',').unwrap_or((&message.body, ""));
                        let sent_us: u64 = sent.parse().unwrap_or(0);
                        let now_us = epoch.elapsed().as_micros() as u64;
                        let latency_us = now_us.saturating_sub(sent_us).max(1);
                        latency.saturating_record(latency_us);
                        if let Ok(written_us) = written.parse::<u64>() {
                            from_written.saturating_record(now_us.saturating_sub(written_us).max(1));
                        }
                        record_window(&mut timeline, sent_us, latency_us);
                        if sent_us < last_sent_us || message.seq <= last_seq {
                            out_of_order += 1;
                        }
                        (last_sent_us, last_seq) = (sent_us, message.seq);
                        if !seen.insert(message.client_id) {
                            duplicates += 1;
                        }
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            socket.close().await;
            Result::Ok((latency, from_written, timeline, seen.len(), duplicates, out_of_order, last_at))
        }));
    }
    let mut sockets = Vec::with_capacity(pairs);
    for pair in 0..pairs {
        sockets.push(targets[pair % targets.len()].connect(&accounts[2 * pair]).await?.0);
    }
    let mut senders = Vec::new();
    let started = Instant::now();
    for (pair, mut socket) in sockets.into_iter().enumerate() {
        let chat = chats[pair];
        // Paced senders start spread over one interval, not all at once.
        let first_due = started + interval.map_or(Duration::ZERO, |i| i.mul_f64(pair as f64 / pairs as f64));
        // When message `n` of this sender is due, if paced.
        let due = move |n: usize| interval.map(|i| first_due + i * n as u32);
        senders.push(tokio::spawn(async move {
            let mut acked = 0usize;
            let mut sent = 0usize;
            // Paced: how late each message was written after it was due (timer and scheduling
            // of this process), which the send → receive latency includes.
            let mut lag = latency_histogram();
            while acked < messages {
                // Keep up to `window` messages unacknowledged; paced, only those already due.
                let mut queued = false;
                while sent < messages && sent - acked < window {
                    let due = due(sent);
                    let now = Instant::now();
                    if due.is_some_and(|due| due > now + TIMER_LEAD) {
                        break;
                    }
                    if let Some(due) = due {
                        lag.record(now.saturating_duration_since(due).as_micros() as u64)?;
                    }
                    // Latency counts from when the message was due, so that a server that falls
                    // behind (and holds the window full) shows it; one written a little early
                    // counts from when it was written.
                    let sent_at = due.map_or(now, |due| due.min(now)).duration_since(epoch);
                    let body = match due {
                        Some(_) => format!("{},{}", sent_at.as_micros(), now.duration_since(epoch).as_micros()),
                        None => sent_at.as_micros().to_string(),
                    };
                    let client_id = new_client_id(pair * messages + sent, salt);
                    socket.feed(&ClientFrame::Send { chat_id: chat, client_id, body }).await?;
                    sent += 1;
                    queued = true;
                }
                if queued {
                    socket.flush().await?;
                }
                let next_due = due(sent)
                    .filter(|_| sent < messages && sent - acked < window)
                    .map(|due| tokio::time::Instant::from_std(due - TIMER_LEAD));
                let frame = match next_due {
                    Some(due) => tokio::select! {
                        frame = socket.next_within(Duration::from_secs(30)) => frame?,
                        () = tokio::time::sleep_until(due) => continue,
                    },
                    None => socket.next_within(Duration::from_secs(30)).await?,
                };
                match frame {
                    Some(ServerFrame::Ack { .. }) => acked += 1,
                    Some(ServerFrame::Error { code, message, .. }) => return Err(format!("{code}: {message}").into()),
                    Some(_) => {}
                    None => return Err("no ack within 30 s".into()),
                }
            }
            socket.close().await;
            Result::Ok((acked, lag))
        }));
    }
    let mut acked = 0;
    let mut lag = latency_histogram();
    for sender in senders {
        let (n, h) = sender.await??;
        acked += n;
        lag.add(&h)?;
    }
    let mut latency = latency_histogram();
    let mut from_written = latency_histogram();
    let mut timeline = Vec::new();
    let (mut delivered, mut duplicates, mut out_of_order) = (0, 0, 0);
    let mut last = started;
    for receiver in receivers {
        let (h, w, t, n, d, o, at) = receiver.await??;
        latency.add(&h)?;
        from_written.add(&w)?;
        merge_windows(&mut timeline, &t);
        delivered += n;
        duplicates += d;
        out_of_order += o;
        last = last.max(at);
    }
    let seconds = last.duration_since(started).as_secs_f64();
    let expected = pairs * messages;
    let per_sec = delivered as f64 / seconds;
    let (latency_json, latency_cell) = latency_summary(&latency);
    let (lag_json, lag_cell) = latency_summary(&lag);
    let (written_json, written_cell) = latency_summary(&from_written);
    let (timeline_json, timeline_cell) = timeline_summary(&timeline, started.duration_since(epoch).as_micros() as u64);
    let mut rows = vec![
        (
            "scenario".into(),
            format!(
                "throughput: {pairs} pairs × {messages} messages, window {window}, {}, {} node(s)",
                rate.map_or("as fast as acked".to_string(), |r| format!("paced at {r:.0} messages/s")),
                targets.len()
            ),
        ),
        ("acked".into(), format!("{acked} / {expected}")),
        ("delivered once".into(), format!("{delivered} / {expected} ({duplicates} duplicates)")),
        ("out of order".into(), out_of_order.to_string()),
        ("time".into(), format!("{seconds:.2} s")),
        ("rate".into(), format!("{per_sec:.0} messages/s delivered")),
        ("send → receive".into(), latency_cell),
        (format!("over {} ms", SLOW_US / 1000), timeline_cell),
    ];
    if rate.is_some() {
        rows.push(("due → written".into(), lag_cell));
        // The same messages from when they were written: the server's part and the receiving
        // side's, without the load generator's lateness in writing them.
        rows.push(("written → receive".into(), written_cell));
    }
    Ok(Report {
        ok: delivered == expected && duplicates == 0 && out_of_order == 0 && acked == expected,
        rows,
        json: json!({
            "scenario": "throughput", "nodes": targets.len(), "pairs": pairs, "messages_per_sender": messages, "window": window,
            "paced_rate": rate,
            "acked": acked, "delivered": delivered, "duplicates": duplicates, "missing": expected - delivered.min(expected),
            "out_of_order": out_of_order,
            "seconds": seconds, "messages_per_sec": per_sec, "latency": latency_json,
            "send_lag": rate.map(|_| lag_json), "latency_from_written": rate.map(|_| written_json),
            "timeline": timeline_json,
        }),
    })
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS in /proc status".into())
}

async fn connections(
    target: &Target,
    accounts: &[Account],
    count: usize,
    pid: u32,
    source_ips: u8,
    hold: Duration,
) -> Result<Report> {
    need(accounts, 1)?;
    let before = rss_kib(pid)?;
    let started = Instant::now();
    let mut holders = Vec::with_capacity(count);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Connect in waves so the server's accept queue is not swamped.
    const AT_ONCE: usize = 256;
    for wave in (0..count).step_by(AT_ONCE) {
        let mut connecting = Vec::new();
        for n in wave..(wave + AT_ONCE).min(count) {
            let account = accounts[n % accounts.len()].clone();
            // One address: no bind, so the kernel picks each port per destination and load
            // generators on several nodes do not draw from one pool of ~28,000 ports.
            let source =
                (source_ips > 1).then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (n % source_ips as usize) as u8)));
            let target = target.clone();
            connecting.push(tokio::spawn(async move { target.connect_from(&account, source).await }));
        }
        for c in connecting {
            let (mut socket, _) = c.await??;
            let mut stop = stop_rx.clone();
            // Each socket keeps reading, so it answers the server's pings.
            holders.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.changed() => break,
                        frame = socket.next() => if frame.is_err() { return false },
                    }
                }
                socket.close().await;
                true
            }));
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    // Let allocations settle before reading the memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid)?;
    let per_conn = (after.saturating_sub(before)) as f64 / count as f64;
    // Other load generators, one per node of a cluster, may still be connecting theirs.
    tokio::time::sleep(hold).await;
    let _ = stop_tx.send(true);
    let mut alive = 0;
    for h in holders {
        if h.await.unwrap_or(false) {
            alive += 1;
        }
    }
    Ok(Report {
        ok: alive == count,
        rows: vec![
            (
                "scenario".into(),
                format!("connections: {count} idle authenticated sockets from {source_ips} source address(es)"),
            ),
            ("connect time".into(), format!("{connect_secs:.2} s ({:.0}/s)", count as f64 / connect_secs)),
            (
                "server RSS".into(),
                format!(
                    "{:.1} MiB before, {:.1} MiB with all connected",
                    before as f64 / 1024.0,
                    after as f64 / 1024.0
                ),
            ),
            ("per connection".into(), format!("{per_conn:.2} KiB")),
            ("still open at the end".into(), format!("{alive} / {count}")),
        ],
        json: json!({
            "scenario": "connections", "count": count, "connect_seconds": connect_secs,
            "rss_before_kib": before, "rss_after_kib": after, "kib_per_connection": per_conn, "alive": alive,
        }),
    })
}

async fn catchup(target: &Target, accounts: &[Account], messages: usize) -> Result<Report> {
    need(accounts, 2)?;
    let (sender, receiver) = (&accounts[0], &accounts[1]);
    let chat = target.chat(sender, receiver).await?;
    let (socket, since) = target.connect(receiver).await?;
    socket.close().await;

    // The receiver is away while the messages arrive.
    let (mut out, _) = target.connect(sender).await?;
    let salt = run_salt();
    let (mut sent, mut acked) = (0, 0);
    while acked < messages {
        while sent < messages && sent - acked < 64 {
            out.feed(&ClientFrame::Send {
                chat_id: chat,
                client_id: new_client_id(sent, salt),
                body: format!("m{sent}"),
            })
            .await?;
            sent += 1;
        }
        out.flush().await?;
        match out.next().await? {
            ServerFrame::Ack { .. } => acked += 1,
            ServerFrame::Error { code, message, .. } => return Err(format!("{code}: {message}").into()),
            _ => {}
        }
    }
    out.close().await;

    let started = Instant::now();
    let (mut socket, _) = target.connect(receiver).await?;
    socket.send(&ClientFrame::Sync { since: Some(since) }).await?;
    let mut seen = HashSet::with_capacity(messages);
    let mut duplicates = 0;
    let mut batches = 0;
    loop {
        match socket.next().await? {
            ServerFrame::SyncBatch { events, next, more } => {
                batches += 1;
                for event in events {
                    if let Event::Message { message, .. } = event {
                        if message.chat_id == chat && !seen.insert(message.id) {
                            duplicates += 1;
                        }
                    }
                }
                if !more {
                    break;
                }
                socket.send(&ClientFrame::Sync { since: Some(next) }).await?;
            }
            ServerFrame::Error { code, message, .. } => return Err(format!("{code}: {message}").into()),
            _ => {}
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    socket.close().await;
    Ok(Report {
        ok: seen.len() == messages && duplicates == 0,
        rows: vec![
            ("scenario".into(), format!("catch-up: {messages} messages missed while offline")),
            (
                "received once".into(),
                format!("{} / {messages} ({duplicates} duplicates) in {batches} batches", seen.len()),
            ),
            (
                "reconnect → all received".into(),
                format!("{:.3} s ({:.0} messages/s)", seconds, messages as f64 / seconds),
            ),
        ],
        json: json!({
            "scenario": "catchup", "messages": messages, "received": seen.len(), "duplicates": duplicates,
            "batches": batches, "seconds": seconds,
        }),
    })
}

async fn fanout(target: &Target, accounts: &[Account], devices: usize, rounds: usize) -> Result<Report> {
    need(accounts, 2)?;
    let (sender, user) = (&accounts[0], &accounts[1]);
    let chat = target.chat(sender, user).await?;
    let mut sockets = Vec::with_capacity(devices);
    for _ in 0..devices {
        sockets.push(target.connect(user).await?.0);
    }
    let (mut out, _) = target.connect(sender).await?;
    let salt = run_salt();
    let mut all_reached = latency_histogram();
    let mut complete = 0;
    for round in 0..rounds {
        let started = Instant::now();
        out.send(&ClientFrame::Send {
            chat_id: chat,
            client_id: new_client_id(round, salt),
            body: format!("r{round}"),
        })
        .await?;
        let mut reached = 0;
        for socket in &mut sockets {
            loop {
                match socket.next_within(Duration::from_secs(10)).await? {
                    Some(ServerFrame::Event(Event::Message { message, .. })) if message.body == format!("r{round}") => {
                        reached += 1;
                        break;
                    }
                    Some(_) => continue,
                    None => break,
                }
            }
        }
        all_reached.saturating_record(started.elapsed().as_micros() as u64);
        if reached == devices {
            complete += 1;
        }
        // The sender's ack.
        while !matches!(out.next().await?, ServerFrame::Ack { .. }) {}
    }
    let (latency_json, latency_cell) = latency_summary(&all_reached);
    Ok(Report {
        ok: complete == rounds,
        rows: vec![
            ("scenario".into(), format!("fan-out: one user on {devices} devices, {rounds} messages")),
            ("reached every device".into(), format!("{complete} / {rounds}")),
            ("send → last device".into(), latency_cell),
        ],
        json: json!({"scenario": "fanout", "devices": devices, "rounds": rounds, "complete": complete, "latency": latency_json}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_messages_are_counted_in_the_window_of_their_send_time() {
        let mut a = Vec::new();
        record_window(&mut a, 50_000, 1_000);
        record_window(&mut a, 250_000, SLOW_US + 1);
        record_window(&mut a, 260_000, SLOW_US);
        let mut b = Vec::new();
        record_window(&mut b, 280_000, SLOW_US + 3);
        merge_windows(&mut a, &b);
        // As many slow messages in a later window, one of them much slower: listed first.
        record_window(&mut a, 350_000, SLOW_US + 1);
        record_window(&mut a, 360_000, 40_000);
        assert_eq!(a.len(), 4);
        assert_eq!((a[0].messages, a[0].slow), (1, 0));
        assert_eq!(a[1].messages, 0);
        assert_eq!((a[2].messages, a[2].slow, a[2].max_us), (3, 2, SLOW_US + 3));
        assert_eq!((a[3].messages, a[3].slow, a[3].max_us), (2, 2, 40_000));

        // Counted from a start 100 ms into the timeline: the empty window is left out.
        let (json, cell) = timeline_summary(&a, 100_000);
        assert_eq!(json["slow"], 4);
        let windows = json["windows"].as_array().unwrap();
        assert_eq!(windows.len(), 3);
        assert_eq!((windows[0]["start_ms"].as_i64(), windows[1]["start_ms"].as_i64()), (Some(-100), Some(100)));
        assert!(cell.starts_with("4 of 6 (66.67%), in 2 of 3 windows of 100 ms"), "{cell}");
        assert!(cell.ends_with("0.2 s: 2 of 2 (max 40.0 ms); 0.1 s: 2 of 3 (max 5.0 ms)"), "{cell}");
    }

    #[test]
    fn a_run_without_slow_messages_says_so() {
        let mut timeline = Vec::new();
        record_window(&mut timeline, 0, 10);
        assert_eq!(timeline_summary(&timeline, 0).1, "none of 1");
    }
}
