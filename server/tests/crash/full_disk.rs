//! SQLite on a file system that fills up under the running server: a small tmpfs of the test's
//! own, filled with a file of zeros, emptied again later. (Mounting needs root; elsewhere the test
//! says so and passes without running.)
use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

use sqlx::Connection;

use super::{
    server_process::ServerProcess,
    traffic::{assert_each_once, assert_refused, history, Answer, Conversation},
};

/// Messages acked before the disk fills.
const BEFORE: usize = 50;
/// Refusals to see while it is full.
const REFUSALS: usize = 10;
/// Sends while full before giving up on seeing refusals (the WAL file's free pages take some).
const MAX_WHILE_FULL: usize = 3000;
/// New messages after space is back.
const AFTER: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_disk() {
    let Some(disk) = Tmpfs::mount("16m") else { return };
    let url = format!("sqlite://{}", disk.dir.join("parley.db").display());
    let server = ServerProcess::start(&[
        ("PARLEY_SIGNUP", "open"),
        ("PARLEY_RATE_LIMITS__MESSAGES_PER_USER", "0"),
        ("PARLEY_WS_FRAMES_PER_SEC", "100000"),
        ("DATABASE_URL", &url),
    ])
    .await;
    let http = reqwest::Client::new();
    let mut talk = Conversation::open(&server).await;
    super::open_signup(&server, "carol").await;
    for n in 0..BEFORE {
        assert!(matches!(talk.send_and_wait(n).await, Answer::Acked(_)));
    }

    let filler = disk.dir.join("filler");
    let filled = fill(&filler);
    // Until SQLite needs a page it does not have, commits still fit (in the WAL file's pages
    // from before); from then on, every send must be refused, none acked.
    let mut next = BEFORE;
    let mut acked_while_full = 0;
    let mut codes = std::collections::BTreeSet::new();
    while talk.refused.len() < REFUSALS {
        assert!(next < BEFORE + MAX_WHILE_FULL, "no refusal after {} sends on a full disk", next - BEFORE);
        match talk.send_and_wait(next).await {
            Answer::Acked(_) => acked_while_full += 1,
            Answer::Refused { code, .. } => {
                codes.insert(code);
            }
        }
        next += 1;
    }
    assert!(codes.iter().all(|c| c == "storage_full" || c == "unavailable"), "refused with {codes:?}");

    // REST: a write gets the JSON error, reads go on, the process is fine.
    let chat = http
        .post(format!("{}/api/v1/chats", server.url()))
        .bearer_auth(&talk.ada.token)
        .json(&serde_json::json!({"email": "carol@example.org"}))
        .send()
        .await
        .unwrap();
    let rest_code = assert_refused(chat, &["storage_full", "unavailable"]).await;
    let stored_while_full = history(&server, &talk).await.len();
    assert_eq!(stored_while_full, talk.acked.len(), "stored exactly what was acked: no refused message stored");
    talk.socket_still_answers().await;

    // Space again: the same server writes again, and the outbox's resends are stored once.
    std::fs::remove_file(&filler).unwrap();
    for n in next..next + AFTER {
        assert!(matches!(talk.send_and_wait(n).await, Answer::Acked(_)), "a send after the disk has room");
    }
    let total = next + AFTER;
    let refused = talk.refused.len();
    talk.resend_all(total).await;
    assert_each_once(&server, &talk, total).await;
    eprintln!(
        "sqlite full disk: {BEFORE} acked before filling {filled} bytes; {acked_while_full} more fit in the WAL, \
         then {refused} refused ({codes:?}; REST {rest_code}); {AFTER} acked after freeing space; \
         after resending: {total} stored once each"
    );

    // And the file is sound.
    drop(talk);
    drop(server);
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let check: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut db).await.unwrap();
    assert_eq!(check, "ok");
}

/// Writes zeros into `path` until the file system is full; the bytes written.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let mut written = 0;
    for chunk in [1 << 16, 1 << 12, 1 << 9] {
        let zeros = vec![0u8; chunk];
        loop {
            match file.write(&zeros) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(err) if err.raw_os_error() == Some(28) => break, // ENOSPC
                Err(err) => panic!("filling the disk: {err}"),
            }
        }
    }
    let _ = file.sync_all();
    written
}

/// A tmpfs of the given size on a fresh folder, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// `None` (with a note) when not root: only root may mount.
    fn mount(size: &str) -> Option<Self> {
        let root =
            Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if !root {
            eprintln!("SKIPPED: mounting a tmpfs to fill needs root");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("parley-disk-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(&dir)
            .output();
        if !out.as_ref().is_ok_and(|o| o.status.success()) {
            let _ = std::fs::remove_dir(&dir);
            panic!("mount -t tmpfs (as root): {out:?}");
        }
        Some(Tmpfs { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a server killed a moment ago may still hold the files for an instant.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).output();
        let _ = std::fs::remove_dir(&self.dir);
    }
}
