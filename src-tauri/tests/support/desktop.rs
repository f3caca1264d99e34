//! The app under test: `tauri-driver` in a virtual X display (xvfb-run) and a D-Bus session of
//! its own (dbus-run-session, which single-instance and notifications use), with a recorder of
//! the notifications the app asks for. Each [`App`] is one WebDriver session, so one run of the
//! app; the environment it starts with (server, data folder) is tauri-driver's own.
use std::{
    future::Future,
    io::Write,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{wd::Capabilities, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use parley_webdriver::Page;

use super::{screenshot_dir, temp_dir};

/// Long enough for a debug build's first start and WebAssembly compile under Xvfb.
const WAIT: Duration = Duration::from_secs(30);
/// The D-Bus name tauri-plugin-single-instance holds while the app runs (its identifier).
const INSTANCE_NAME: &str = "org.parley.desktop.SingleInstance";
const REQUIRE_ENV: &str = "PARLEY_REQUIRE_DESKTOP_TESTS";
const INSTALL_HINT: &str =
    "apt-get install xvfb dbus-daemon dbus-bin x11-utils webkit2gtk-driver; cargo install tauri-driver --locked";

pub struct Tools {
    tauri_driver: PathBuf,
}

/// The programs the test needs, or `None` (after saying so) when some are missing and the test
/// may be skipped.
pub fn tools() -> Option<Tools> {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .map(|home| home.join("bin/tauri-driver"));
    let tauri_driver = find_program("tauri-driver").or(cargo_bin.filter(|path| path.is_file()));
    let mut missing: Vec<&str> =
        ["xvfb-run", "dbus-run-session", "dbus-monitor", "dbus-send", "xwininfo", "WebKitWebDriver"]
            .into_iter()
            .filter(|program| find_program(program).is_none())
            .collect();
    if tauri_driver.is_none() {
        missing.push("tauri-driver");
    }
    if missing.is_empty() {
        return tauri_driver.map(|tauri_driver| Tools { tauri_driver });
    }
    let missing = missing.join(", ");
    assert!(
        std::env::var_os(REQUIRE_ENV).is_none(),
        "{REQUIRE_ENV} is set but {missing} cannot be found ({INSTALL_HINT})"
    );
    // Straight to stderr: the test harness captures `eprintln!` of passing tests, and a skip must
    // be seen.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED the desktop app test: {missing} not found ({INSTALL_HINT}); set {REQUIRE_ENV}=1 to fail instead"
    );
    None
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `check` until it holds or `WAIT` passes.
async fn wait_until<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

pub struct Desktop {
    /// xvfb-run, leading a process group with everything it started.
    child: Child,
    port: u16,
    /// Where the session's facts are written: `display`, `xauthority`, `bus`, `notifications.log`.
    session: PathBuf,
    display: String,
    xauthority: String,
    bus: String,
    data_dir: PathBuf,
    shots: std::cell::Cell<u32>,
}

impl Desktop {
    pub async fn start(tools: &Tools, server_url: &str, data_dir: &Path) -> Desktop {
        let session = temp_dir("parley-desktop-session");
        let (port, native_port) = (free_port(), free_port());
        let log = std::fs::File::create(screenshot_dir().join("tauri-driver.log")).expect("log file");
        // Inside the display and the bus: note where they are, record Notify calls (and show them
        // when a notification daemon is installed), then become tauri-driver.
        let script = r#"echo "$DISPLAY" > "$1/display"; echo "$XAUTHORITY" > "$1/xauthority"
echo "$DBUS_SESSION_BUS_ADDRESS" > "$1/bus"
dbus-monitor --session "interface=org.freedesktop.Notifications,member=Notify" > "$1/notifications.log" 2>&1 &
daemon=/usr/lib/notification-daemon/notification-daemon
if [ -x "$daemon" ]; then "$daemon" & fi
exec "$2" --port "$3" --native-port "$4""#;
        let child = Command::new("xvfb-run")
            .args(["-a", "-s", "-screen 0 1280x800x24", "dbus-run-session", "--", "sh", "-c", script, "sh"])
            .arg(&session)
            .arg(&tools.tauri_driver)
            .args([port.to_string(), native_port.to_string()])
            // tauri-driver passes no environment of its own to the app: the app inherits this.
            .env("PARLEY_DESKTOP_SERVER", server_url)
            .env("PARLEY_DESKTOP_DATA_DIR", data_dir)
            .env("PARLEY_LOG", std::env::var("PARLEY_DESKTOP_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("xvfb-run");
        let mut desktop = Desktop {
            child,
            port,
            session,
            display: String::new(),
            xauthority: String::new(),
            bus: String::new(),
            data_dir: data_dir.to_path_buf(),
            shots: std::cell::Cell::new(0),
        };
        // tauri-driver listens before the WebKitWebDriver it starts does; a session asked for in
        // between is dropped.
        let listening = |port: u16| async move { tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() };
        let up = wait_until(|| async { listening(port).await && listening(native_port).await }).await;
        assert!(up, "tauri-driver did not start (see {})", screenshot_dir().join("tauri-driver.log").display());
        desktop.display = desktop.session_fact("display");
        desktop.xauthority = desktop.session_fact("xauthority");
        desktop.bus = desktop.session_fact("bus");
        desktop
    }

    fn session_fact(&self, name: &str) -> String {
        std::fs::read_to_string(self.session.join(name)).map(|text| text.trim().to_string()).unwrap_or_default()
    }

    /// Starts the app in a new WebDriver session.
    pub async fn app(&self, name: &str) -> App {
        let mut capabilities = Capabilities::new();
        capabilities
            .insert("tauri:options".into(), serde_json::json!({"application": env!("CARGO_BIN_EXE_parley-desktop")}));
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a WebDriver session with the app");
        Page::new(client, name, WAIT, screenshot_dir())
    }

    /// A program on the virtual display.
    fn x_client(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command.env("DISPLAY", &self.display).env("XAUTHORITY", &self.xauthority);
        command
    }

    /// The names of the display's windows (the app's title among them), as `xwininfo` lists them.
    pub fn window_titles(&self) -> String {
        let output = self.x_client("xwininfo").args(["-root", "-tree"]).output();
        output.map(|output| String::from_utf8_lossy(&output.stdout).into_owned()).unwrap_or_default()
    }

    /// The notifications the app asked the desktop for, as `dbus-monitor` printed them.
    pub fn notifications(&self) -> String {
        std::fs::read_to_string(self.session.join("notifications.log")).unwrap_or_default()
    }

    pub async fn until(&self, what: &str, mut check: impl FnMut() -> bool) {
        if !wait_until(|| std::future::ready(check())).await {
            self.screen(&format!("FAILED-{}", what.replace(' ', "-")));
            panic!(
                "timed out waiting for {what}\nwindows: {}\nnotifications: {}",
                self.window_titles(),
                self.notifications()
            );
        }
    }

    /// Saves the whole display, notifications included: `<target>/desktop-screenshots/screen-<n>-<step>.png`.
    pub fn screen(&self, step: &str) {
        let n = self.shots.get() + 1;
        self.shots.set(n);
        let path = screenshot_dir().join(format!("screen-{n:02}-{step}.png"));
        let status = self.x_client("import").args(["-window", "root"]).arg(&path).status();
        if !status.is_ok_and(|status| status.success()) {
            eprintln!("no screenshot of the display (ImageMagick's import)");
        }
    }

    /// Waits until the app's process is gone: its single-instance name is free again.
    pub async fn until_app_exited(&self) {
        let gone = wait_until(|| async {
            let output = Command::new("dbus-send")
                .arg(format!("--bus={}", self.bus))
                .args(["--print-reply", "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus"])
                .args(["org.freedesktop.DBus.NameHasOwner", &format!("string:{INSTANCE_NAME}")])
                .output();
            output.is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains("boolean false"))
        })
        .await;
        assert!(gone, "the app did not exit");
    }

    /// Launches the app again, as a person would, while it runs; returns how that launch ended.
    pub async fn launch_second_instance(&self) -> ExitStatus {
        let mut second = self
            .x_client(env!("CARGO_BIN_EXE_parley-desktop"))
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .env("PARLEY_DESKTOP_DATA_DIR", &self.data_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("a second launch");
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(status) = second.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = second.kill();
        let _ = second.wait();
        panic!("the second launch kept running beside the first");
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        // The whole group: xvfb-run, Xvfb, the bus, tauri-driver, WebKitWebDriver and the app.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.session);
    }
}

/// One run of the app, driven over WebDriver (closing it closes the app).
pub type App = Page;
