//! PATCH request handling: which patch type a Content-Type names, and applying a patch
//! document to the current object. The patch algorithms themselves live in `patch.rs`.

use serde_json::Value;

use crate::error::ApiError;
use crate::patch::PatchError;
use crate::resources::ResourceInfo;

/// Largest patch document accepted (the request body bound applies too).
pub const PATCH_BYTES_MAX: usize = crate::handlers::REQUEST_BODY_BYTES_MAX;

const ACCEPTED: &str = "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    StrategicMerge,
    Apply,
}

impl PatchKind {
    pub fn from_mime(mime: &str) -> Result<PatchKind, ApiError> {
        match mime {
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchKind::StrategicMerge),
            "application/apply-patch+yaml" => Ok(PatchKind::Apply),
            other => Err(ApiError::unsupported_media_type(other, ACCEPTED)),
        }
    }
}

/// Does the patch itself set `metadata.resourceVersion` (then it is a precondition)?
pub fn patch_sets_resource_version(kind: PatchKind, body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(body) else { return false };
    match kind {
        PatchKind::Merge | PatchKind::StrategicMerge => {
            v.pointer("/metadata/resourceVersion").map(|rv| !rv.is_null()).unwrap_or(false)
        }
        PatchKind::Json => v
            .as_array()
            .map(|ops| ops.iter().any(|op| op.get("path").and_then(Value::as_str) == Some("/metadata/resourceVersion")))
            .unwrap_or(false),
        PatchKind::Apply => false,
    }
}

/// Server-side apply (`application/apply-patch+yaml`) is not built yet: 415, naming what is.
pub fn apply_unsupported() -> ApiError {
    ApiError::unsupported_media_type(
        "application/apply-patch+yaml",
        "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (server-side apply is not supported by skiff-apiserver yet)",
    )
}

fn patch_error(e: PatchError) -> ApiError {
    let mut err = match e.status_code() {
        400 => ApiError::bad_request(e.to_string()),
        413 => ApiError::request_entity_too_large(PATCH_BYTES_MAX),
        415 => ApiError::unsupported_media_type("application/strategic-merge-patch+json", &crate::patch::CUSTOM_RESOURCE_PATCH_TYPES.join(", ")),
        422 => ApiError::bad_request(e.to_string()),
        _ => ApiError::internal(e.to_string()),
    };
    err.message = e.to_string();
    if e.status_code() == 422 {
        err.code = 422;
        err.reason = "Invalid";
    }
    err
}

/// Applies `body` (a patch of `kind`) to `current`, for an object of `group/kind_name`.
pub fn apply_to(kind: PatchKind, group: &str, kind_name: &str, current: &Value, body: &[u8]) -> Result<Value, ApiError> {
    if kind == PatchKind::Apply {
        return Err(apply_unsupported());
    }
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let out = match kind {
        PatchKind::Json => crate::patch::apply_json_patch(current, &patch).map_err(patch_error)?,
        PatchKind::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("merge patch must be a JSON object"));
            }
            crate::patch::apply_merge_patch(current, &patch)
        }
        PatchKind::StrategicMerge => crate::patch::apply_strategic_merge_patch(current, &patch, group, kind_name).map_err(patch_error)?,
        PatchKind::Apply => unreachable!("refused above"),
    };
    if !out.is_object() {
        return Err(ApiError::bad_request("the patched object is not a JSON object"));
    }
    Ok(out)
}

/// Applies a patch to an object of the resource `res`.
pub fn apply(kind: PatchKind, res: &ResourceInfo, current: &Value, body: &[u8]) -> Result<Value, ApiError> {
    apply_to(kind, &res.group, &res.kind, current, body)
}
