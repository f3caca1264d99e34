//! A Postgres cluster of the test's own (initdb into a temporary folder, a random port), so that
//! it can be stopped hard and started again without disturbing the shared one the other tests
//! use. Dropping it stops it and removes its folder, also when the test panics.
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use super::server_process::free_port;

pub struct PrivatePostgres {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    /// Postgres refuses to run as root: as root, its commands run as the `postgres` user.
    run_as_postgres: bool,
}

impl PrivatePostgres {
    /// A fresh cluster, started, with trust authentication for the `postgres` role.
    pub fn start() -> Self {
        let bin = bin_dir();
        let run_as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!("parley-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).expect("create the cluster's folder");
        let pg = PrivatePostgres { port: free_port(), dir, bin, run_as_postgres };
        if run_as_postgres {
            must(Command::new("chown").arg("postgres:").arg(&pg.dir).output(), "chown the cluster's folder");
        }
        let data = pg.data_dir();
        let initdb = pg
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync"])
            .output();
        must(initdb, "initdb");
        pg.start_again();
        pg
    }

    /// The `postgres` database over TCP, as the server sees it.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the stopped cluster and waits until it takes connections.
    pub fn start_again(&self) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.display());
        let started = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .output();
        if !started.as_ref().is_ok_and(|o| o.status.success()) {
            panic!("pg_ctl start: {}\n{}", describe(&started), self.log_tail());
        }
    }

    /// `pg_ctl stop -m immediate`: every backend is killed at once, nothing is checkpointed; the
    /// next start recovers from the WAL, as after a crash.
    pub fn stop_hard(&self) {
        let stopped =
            self.command("pg_ctl").arg("-D").arg(self.data_dir()).args(["-m", "immediate", "-w", "stop"]).output();
        must(stopped, "pg_ctl stop -m immediate");
    }

    /// Runs `sql` through `psql` on the cluster's socket.
    pub fn psql(&self, database: &str, sql: &str) {
        let out = self
            .command("psql")
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-h"])
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-d", database, "-c", sql])
            .output();
        must(out, &format!("psql -c {sql:?}"));
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut command = if self.run_as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        // A folder the postgres user may enter; psql's sessions may write whatever the server
        // is told to refuse.
        command.current_dir(&self.dir).env("PGOPTIONS", "-c default_transaction_read_only=off");
        command
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Whatever state it is in: a cluster that is already down just makes pg_ctl complain.
        let _ = self.command("pg_ctl").arg("-D").arg(self.data_dir()).args(["-m", "immediate", "-w", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until nothing answers on the port any more (the postmaster and its socket are gone).
pub async fn wait_port_closed(port: u16) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("port {port} still open after the stop");
}

/// The newest installed Postgres's programs (Debian keeps them out of `PATH`), unless
/// `PARLEY_TEST_PG_BIN` names a folder.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PARLEY_TEST_PG_BIN") {
        return dir.into();
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None if Path::new("/usr/bin/initdb").exists() => "/usr/bin".into(),
        None => {
            panic!("no Postgres server programs (initdb, pg_ctl) found; install postgresql or set PARLEY_TEST_PG_BIN")
        }
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn must(output: std::io::Result<Output>, what: &str) {
    if !output.as_ref().is_ok_and(|o| o.status.success()) {
        panic!("{what}: {}", describe(&output));
    }
}

fn describe(output: &std::io::Result<Output>) -> String {
    match output {
        Ok(o) => format!("{}: {}{}", o.status, String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
        Err(err) => err.to_string(),
    }
}
