//! Parley's web UI: a Yew app compiled to WebAssembly. The server serves it to browsers; the
//! desktop app shows the same UI with its own backend behind the data seam (`backend`).
#![forbid(unsafe_code)]

pub mod backend;
pub mod components;
pub mod state;
mod time;

/// Entry point, one bundle for both: the desktop app's bridge in its webview, fetch and WebSocket in
/// a browser.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    let backend: backend::SharedBackend = match backend::tauri::TauriBackend::detect() {
        Some(desktop) => std::rc::Rc::new(desktop),
        None => std::rc::Rc::new(backend::browser::BrowserBackend::new()),
    };
    yew::Renderer::<components::app::App>::with_props(components::app::AppProps { backend: backend.into() }).render();
}
