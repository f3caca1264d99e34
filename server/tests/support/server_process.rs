//! The `parley-server` binary as a child process on a fixed port and data folder, so that it can
//! be killed (SIGKILL) and started again as the same server.
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct ServerProcess {
    pub port: u16,
    data_dir: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl ServerProcess {
    /// Starts the server with `env` on top of a fresh data folder and port; waits for `/healthz`.
    pub async fn start(env: &[(&str, &str)]) -> Self {
        let data_dir = std::env::temp_dir().join(format!("parley-proc-{}", uuid::Uuid::new_v4()));
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut server = ServerProcess { port: free_port(), data_dir, env, child: None };
        server.spawn().await;
        server
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the server logged (stderr, every start of it).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default()
    }

    async fn spawn(&mut self) {
        std::fs::create_dir_all(&self.data_dir).unwrap();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.data_dir.join("server.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_parley-server"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PARLEY_BIND", format!("127.0.0.1:{}", self.port))
            .env("PARLEY_DATA_DIR", &self.data_dir)
            .env("PARLEY_LOG", std::env::var("PARLEY_E2E_LOG").unwrap_or_else(|_| "warn".into()))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start parley-server");
        self.child = Some(child);
        let health = format!("{}/healthz", self.url());
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client.get(&health).send().await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("parley-server did not come up on port {}:\n{}", self.port, self.log());
    }

    /// SIGKILL: no goodbye to anyone, nothing flushed that was not already durable.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// Stops the server and copies its SQLite database (with its write-ahead log) aside, as a
    /// backup taken then; started again afterwards.
    #[allow(dead_code)]
    pub async fn back_up_database(&mut self) -> PathBuf {
        self.kill();
        let backup = self.data_dir.join("backup");
        std::fs::create_dir_all(&backup).unwrap();
        for file in database_files(&self.data_dir) {
            std::fs::copy(self.data_dir.join(&file), backup.join(&file)).unwrap();
        }
        self.spawn().await;
        backup
    }

    /// Stops the server and puts the database back as `backup` holds it, leaving it stopped (an
    /// operator restoring a backup; [`ServerProcess::start_again`] starts it).
    #[allow(dead_code)]
    pub fn put_back_database(&mut self, backup: &std::path::Path) {
        self.kill();
        for file in database_files(&self.data_dir) {
            std::fs::remove_file(self.data_dir.join(file)).unwrap();
        }
        for file in database_files(backup) {
            std::fs::copy(backup.join(&file), self.data_dir.join(&file)).unwrap();
        }
    }

    /// Runs `parley-server admin <args>` on the server's configuration (stop the server first
    /// where the command asks for it); returns what it printed, or panics if it failed.
    #[allow(dead_code)]
    pub fn admin(&self, args: &[&str]) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_parley-server"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PARLEY_DATA_DIR", &self.data_dir)
            .env("PARLEY_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .arg("admin")
            .args(args)
            .output()
            .expect("run parley-server admin");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "admin {args:?}: {stdout}{}", String::from_utf8_lossy(&output.stderr));
        stdout
    }

    /// Starts (or finds) the chat of the holder of `token` with the owner of `email`; returns its id.
    #[allow(dead_code)]
    pub async fn start_chat(&self, token: &str, email: &str) -> i64 {
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/chats", self.url()))
            .bearer_auth(token)
            .json(&serde_json::json!({"email": email}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "start a chat with {email}: {}", response.status());
        let chat: serde_json::Value = response.json().await.unwrap();
        chat["id"].as_i64().expect("a chat id")
    }

    /// Starts the server again after [`ServerProcess::kill`].
    #[allow(dead_code)]
    pub async fn start_again(&mut self) {
        self.spawn().await;
    }
}

/// The files of the SQLite database in `dir`: `parley.db` and its `-wal` and `-shm`.
fn database_files(dir: &std::path::Path) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name.to_string_lossy().starts_with("parley.db"))
        .collect()
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
