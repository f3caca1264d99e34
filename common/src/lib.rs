//! What crosses the wire between Parley's server and its clients: REST bodies, error bodies and
//! WebSocket frames. Serde only, so it compiles for the browser (wasm32) and natively.
#![forbid(unsafe_code)]

pub mod api;
pub mod chat;
pub mod client_id;
pub mod desktop;
pub mod error;
pub mod ws;

pub use api::*;
pub use chat::*;
pub use error::{ErrorBody, ErrorDetail};
pub use ws::{ClientFrame, Event, ServerFrame, SyncBatch};
