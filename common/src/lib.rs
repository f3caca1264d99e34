//! What crosses the wire between Parley's server and its clients: REST bodies, error bodies and
//! (later) WebSocket frames. Serde only, so it compiles for the browser (wasm32) and natively.
#![forbid(unsafe_code)]

pub mod api;
pub mod error;

pub use api::*;
pub use error::{ErrorBody, ErrorDetail};
