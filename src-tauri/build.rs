//! Runs tauri-build: permissions, and the app's context (configuration, icons and the built web
//! UI, embedded) generated here so that a rebuilt `ui/dist` is noticed. `tauri.conf.json` is read
//! from this folder, where it is a link to the one at the repository root.
//!
//! A fresh clone has no `ui/dist` until `scripts/build-ui.sh` runs. Rather than break `cargo
//! build`, `clippy` and `test` for the whole workspace, the app is then built around a page that
//! says so, and this script runs again on every build until the real UI is there.
use std::path::{Path, PathBuf};

const UI_INDEX: &str = "../ui/dist/index.html";

const PLACEHOLDER: &str =
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Parley</title></head>\n\
<body><h1>Parley</h1><p>The web UI was not built when this app was compiled. Run\n\
<code>scripts/build-ui.sh</code>, then build the app again.</p></body></html>\n";

fn main() {
    if !Path::new(UI_INDEX).is_file() {
        use_placeholder();
    }
    let context = tauri_build::CodegenContext::new();
    tauri_build::try_build(tauri_build::Attributes::new().codegen(context)).expect("tauri-build");
}

fn use_placeholder() {
    let dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("ui-placeholder");
    std::fs::create_dir_all(&dir).expect("placeholder folder");
    std::fs::write(dir.join("index.html"), PLACEHOLDER).expect("placeholder page");
    // TAURI_CONFIG is merged over tauri.conf.json by tauri-build; keep what the CLI put there.
    let mut config: serde_json::Value = std::env::var("TAURI_CONFIG")
        .ok()
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    config["build"]["frontendDist"] = serde_json::Value::String(dir.display().to_string());
    std::env::set_var("TAURI_CONFIG", config.to_string());
    // A path that does not exist makes cargo run this script on every build, until it does.
    println!("cargo:rerun-if-changed={UI_INDEX}");
    println!("cargo:warning=ui/dist is missing: the desktop app shows a placeholder (run scripts/build-ui.sh)");
}
