//! What the desktop test stands on: a Parley server it can stop and restart, and the app in a
//! virtual display driven over WebDriver.
pub mod desktop;
pub mod server;

use std::path::{Path, PathBuf};

pub const PASSWORD: &str = "a good password";

pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("src-tauri is in the workspace")
}

/// The app embeds `ui/dist` when it is compiled; without it, it shows a placeholder page.
pub fn assert_ui_built() {
    assert!(
        workspace_root().join("ui/dist/index.html").is_file(),
        "the web UI is not built: run scripts/build-ui.sh, then this test again (scripts/test.sh does both)"
    );
}

/// `<target>/desktop-screenshots`, beside the app binary's profile folder.
pub fn screenshot_dir() -> PathBuf {
    let binary = Path::new(env!("CARGO_BIN_EXE_parley-desktop"));
    let target = binary.parent().and_then(Path::parent).expect("the binary is in <target>/<profile>/");
    let dir = target.join("desktop-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

/// Leaves only this run's pictures to look at.
pub fn clear_screenshots() {
    let _ = std::fs::remove_dir_all(screenshot_dir());
}

/// A fresh folder under the system's temporary one.
pub fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temporary folder");
    dir
}
