//! The real thing end to end: the `parley-server` binary as a process (so it can be killed and
//! restarted), the built web UI, an SMTP sink, and headless Chromium driven over WebDriver.
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use fantoccini::{wd::Capabilities, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use parley_webdriver::Page;

pub const WAIT: Duration = Duration::from_secs(15);

use crate::server_process::free_port;

pub fn workspace_root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Where screenshots go: `<target>/e2e-screenshots`.
pub fn screenshot_dir() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    let dir = target.join("e2e-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One chromedriver; each `Browser` is a separate Chromium with its own profile.
pub struct Driver {
    port: u16,
    child: Child,
}

impl Driver {
    pub async fn start() -> Self {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; scripts/test.sh installs it)");
        // Owned from here on, so that a panic below still ends the process.
        let driver = Driver { port, child };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return driver;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start");
    }

    pub async fn browser(&self, name: &str) -> Browser {
        let profile = std::env::temp_dir().join(format!("parley-chromium-{}", uuid::Uuid::new_v4()));
        let mut caps = Capabilities::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--window-size=1280,800", format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session");
        Browser { page: Page::new(client, name, WAIT, screenshot_dir()), profile: Profile(profile) }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Chromium with its own profile; the page's helpers through `Deref`.
pub struct Browser {
    page: Page,
    profile: Profile,
}

impl std::ops::Deref for Browser {
    type Target = Page;

    fn deref(&self) -> &Page {
        &self.page
    }
}

impl std::ops::DerefMut for Browser {
    fn deref_mut(&mut self) -> &mut Page {
        &mut self.page
    }
}

impl Browser {
    pub async fn close(self) {
        let _ = self.page.close().await;
        let _ = std::fs::remove_dir_all(&self.profile.0);
    }
}

/// A browser's profile folder. A test that panics never closes its browsers, and killing
/// chromedriver leaves its Chromium running: dropped, this ends every process started with the
/// profile (none are left after `Browser::close`).
struct Profile(PathBuf);

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = Command::new("pkill").arg("-f").arg(self.0.as_os_str()).status();
    }
}
