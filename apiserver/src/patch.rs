//! The three PATCH formats of the Kubernetes API, over `serde_json::Value`. Pure: no I/O.
//!
//! | Content-Type                               | function                          |
//! |--------------------------------------------|-----------------------------------|
//! | `application/json-patch+json`              | [`apply_json_patch`] (RFC 6902)   |
//! | `application/merge-patch+json`             | [`apply_merge_patch`] (RFC 7386)  |
//! | `application/strategic-merge-patch+json`   | [`apply_strategic_merge_patch`]   |
//!
//! Strategic merge patch needs to know, per kind, which lists merge and by which key
//! ([`schema`]); kinds without that knowledge (custom resources) are refused before any
//! work with [`PatchError::StrategicMergePatchUnsupported`], a 415, exactly as
//! kube-apiserver does — check [`strategic_merge_patch_supported`] first.
//!
//! Every error carries the HTTP status kube-apiserver answers it with
//! ([`PatchError::status_code`]).

mod json_patch;
mod merge_patch;
pub mod schema;
mod strategic;

pub use json_patch::{apply_json_patch, decode_pointer, JSON_PATCH_OPERATIONS_MAX};
pub use merge_patch::{apply_merge_patch, create_merge_patch};
pub use schema::{field_meta, field_meta_for_path, strategic_merge_patch_supported, FieldMeta, PatchStrategy};
pub use strategic::apply_strategic_merge_patch;

/// The patch media types kube-apiserver accepts for custom resources, in its order.
pub const CUSTOM_RESOURCE_PATCH_TYPES: &[&str] =
    &["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"];

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    /// The patch body is not a patch of its type (e.g. a JSON patch that is not an array
    /// of operations). kube: 400 BadRequest.
    #[error("{0}")]
    BadRequest(String),
    /// More JSON patch operations than kube allows. kube: 413 RequestEntityTooLarge.
    #[error("The allowed maximum operations in a JSON patch is {max}, got {count}")]
    TooManyOperations { count: usize, max: usize },
    /// A JSON patch operation that does not apply (missing path, failed test).
    /// kube: 422 with the json-patch library's message.
    #[error("{0}")]
    JsonPatchFailed(String),
    /// A strategic merge patch that breaks a rule kube reports as 422
    /// (`lists of lists are not supported`, …).
    #[error("{0}")]
    Unprocessable(String),
    /// Any other strategic merge failure (e.g. an element without its merge key); kube
    /// passes these through as 500 InternalError.
    #[error("{0}")]
    Internal(String),
    /// Strategic merge patch on a kind without patch metadata (custom resources).
    /// kube: 415 UnsupportedMediaType.
    #[error("the body of the request was in an unknown format - accepted media types include: {}", CUSTOM_RESOURCE_PATCH_TYPES.join(", "))]
    StrategicMergePatchUnsupported,
}

impl PatchError {
    /// The HTTP status kube-apiserver uses for this error.
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::BadRequest(_) => 400,
            PatchError::TooManyOperations { .. } => 413,
            PatchError::JsonPatchFailed(_) | PatchError::Unprocessable(_) => 422,
            PatchError::Internal(_) => 500,
            PatchError::StrategicMergePatchUnsupported => 415,
        }
    }

    /// The `reason` of the `Status` kube-apiserver sends.
    pub fn reason(&self) -> &'static str {
        match self {
            PatchError::BadRequest(_) => "BadRequest",
            PatchError::TooManyOperations { .. } => "RequestEntityTooLarge",
            PatchError::JsonPatchFailed(_) | PatchError::Unprocessable(_) => "Invalid",
            PatchError::Internal(_) => "InternalError",
            PatchError::StrategicMergePatchUnsupported => "UnsupportedMediaType",
        }
    }
}

pub type Result<T, E = PatchError> = std::result::Result<T, E>;

/// JSON equality with numbers compared by value (`1` equals `1.0`), as RFC 6902's `test`
/// and Go's `interface{}` comparison of decoded JSON numbers both do.
pub(crate) fn json_eq(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests;
