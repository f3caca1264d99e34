//! The one error body every failing REST call returns.
use serde::{Deserialize, Serialize};

/// `{"error": {"code": "...", "message": "..."}}`. `code` is a stable snake_case string that
/// clients branch on; `message` is for people and may change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `email_taken`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}
