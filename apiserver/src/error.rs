//! Kubernetes `Status` errors: the one place that maps a failure to the wire (reason, code,
//! message and details exactly as kube-apiserver words them, since kubectl prints them).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::resources::ResourceInfo;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// One `details.causes` entry.
#[derive(Debug, Clone)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// A failed request, rendered as a `Status` object.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// Boxed: errors travel through every `Result` of the request path.
    pub details: Box<Details>,
}

/// `Status.details`.
#[derive(Debug, Clone, Default)]
pub struct Details {
    pub name: Option<String>,
    pub group: Option<String>,
    pub kind: Option<String>,
    pub causes: Vec<Cause>,
    /// `details.retryAfterSeconds`.
    pub retry_after_seconds: Option<u32>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.reason, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// `pods` or `deployments.apps`: how kube names a resource in messages.
pub fn qualified(res: &ResourceInfo) -> String {
    if res.group.is_empty() {
        res.plural.clone()
    } else {
        format!("{}.{}", res.plural, res.group)
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: Box::default() }
    }

    fn with_resource(mut self, res: &ResourceInfo, name: &str) -> Self {
        if !name.is_empty() {
            self.details.name = Some(name.to_string());
        }
        if !res.group.is_empty() {
            self.details.group = Some(res.group.clone());
        }
        self.details.kind = Some(res.plural.clone());
        self
    }

    pub fn not_found(res: &ResourceInfo, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{} \"{}\" not found", qualified(res), name)).with_resource(res, name)
    }

    /// `namespaces "x" not found`, for an object in a namespace that does not exist.
    pub fn namespace_not_found(namespace: &str) -> Self {
        let mut e = Self::new(404, "NotFound", format!("namespaces \"{namespace}\" not found"));
        e.details.name = Some(namespace.to_string());
        e.details.kind = Some("namespaces".into());
        e
    }

    /// A path that names no resource this server serves.
    pub fn path_not_found() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
    }

    pub fn already_exists(res: &ResourceInfo, name: &str) -> Self {
        Self::new(409, "AlreadyExists", format!("{} \"{}\" already exists", qualified(res), name)).with_resource(res, name)
    }

    pub fn conflict(res: &ResourceInfo, name: &str) -> Self {
        Self::conflict_with(
            res,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn conflict_with(res: &ResourceInfo, name: &str, why: &str) -> Self {
        Self::new(409, "Conflict", format!("Operation cannot be fulfilled on {} \"{}\": {}", qualified(res), name, why))
            .with_resource(res, name)
    }

    /// 422 Invalid: `Pod "x" is invalid: metadata.name: Required value: name or generateName is required`.
    pub fn invalid(res: &ResourceInfo, name: &str, causes: Vec<Cause>) -> Self {
        let list: Vec<String> = causes.iter().map(|c| {
            if c.field.is_empty() { c.message.clone() } else { format!("{}: {}", c.field, c.message) }
        }).collect();
        let joined = if list.len() == 1 { list[0].clone() } else { format!("[{}]", list.join(", ")) };
        let mut e = Self::new(422, "Invalid", format!("{} \"{}\" is invalid: {}", res.kind, name, joined));
        if !name.is_empty() {
            e.details.name = Some(name.to_string());
        }
        if !res.group.is_empty() {
            e.details.group = Some(res.group.clone());
        }
        e.details.kind = Some(res.kind.clone());
        e.details.causes = causes;
        e
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn forbidden(res: &ResourceInfo, name: &str, why: &str) -> Self {
        Self::new(403, "Forbidden", format!("{} \"{}\" is forbidden: {}", qualified(res), name, why)).with_resource(res, name)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn not_acceptable(accepted: &str) -> Self {
        Self::new(406, "NotAcceptable", format!("only the following media types are accepted: {accepted}"))
    }

    pub fn unsupported_media_type(content_type: &str, accepted: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: {accepted}"),
        )
        .with_note(format!("unsupported content type {content_type:?}"))
    }

    /// Adds a cause with no field: context that the message alone does not carry.
    fn with_note(mut self, note: String) -> Self {
        self.details.causes.push(Cause { reason: self.reason.to_string(), message: note, field: String::new() });
        self
    }

    /// 410 Expired for a `resourceVersion` older than the store's compaction.
    pub fn resource_version_too_old() -> Self {
        Self::new(410, "Expired", "The resourceVersion for the provided list is too old.")
    }

    /// 410 Expired for a `continue` token whose revision was compacted.
    pub fn continue_expired() -> Self {
        Self::new(
            410,
            "Expired",
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
        )
    }

    /// 410 Expired inside a watch's ERROR event.
    pub fn watch_too_old(requested: i64, compacted: i64) -> Self {
        Self::new(410, "Expired", format!("too old resource version: {requested} ({compacted})"))
    }

    /// 504 for a resourceVersion newer than the store has.
    pub fn too_large_resource_version(requested: i64, current: i64) -> Self {
        let mut e = Self::new(
            504,
            "Timeout",
            format!("Too large resource version: {requested}, current: {current}"),
        );
        e.details.causes.push(Cause {
            reason: "ResourceVersionTooLarge".into(),
            message: "Too large resource version".into(),
            field: String::new(),
        });
        e.details.retry_after_seconds = Some(1);
        e
    }

    pub fn request_entity_too_large(limit_bytes: usize) -> Self {
        Self::new(413, "RequestEntityTooLarge", format!("limit is {limit_bytes}"))
    }

    /// A feature of the API this server does not implement yet: 501 with what is missing.
    pub fn not_implemented(what: &str) -> Self {
        Self::new(501, "NotImplemented", format!("{what} is not supported by skiff-apiserver yet"))
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(500, "InternalError", format!("Internal error occurred: {message}"))
    }

    pub fn service_unavailable(message: impl std::fmt::Display) -> Self {
        Self::new(503, "ServiceUnavailable", message.to_string())
    }

    /// An error from a `Status` object built elsewhere (e.g. [`crate::apply::conflict_status`]).
    pub fn from_status(status: &Value) -> Self {
        let code = status.get("code").and_then(Value::as_u64).and_then(|c| u16::try_from(c).ok()).unwrap_or(500);
        let reason = match status.get("reason").and_then(Value::as_str).unwrap_or("") {
            "Conflict" => "Conflict",
            "BadRequest" => "BadRequest",
            "Invalid" => "Invalid",
            "NotFound" => "NotFound",
            "UnsupportedMediaType" => "UnsupportedMediaType",
            _ => "InternalError",
        };
        let mut e = Self::new(code, reason, status.get("message").and_then(Value::as_str).unwrap_or(""));
        let details = status.get("details");
        let field = |k: &str| details.and_then(|d| d.get(k)).and_then(Value::as_str).map(str::to_string);
        e.details.name = field("name");
        e.details.group = field("group");
        e.details.kind = field("kind");
        if let Some(causes) = details.and_then(|d| d.get("causes")).and_then(Value::as_array) {
            e.details.causes = causes
                .iter()
                .map(|c| {
                    let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    Cause { reason: s("reason"), message: s("message"), field: s("field") }
                })
                .collect();
        }
        e
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        let mut details = serde_json::Map::new();
        if let Some(name) = &self.details.name {
            details.insert("name".into(), json!(name));
        }
        if let Some(group) = &self.details.group {
            details.insert("group".into(), json!(group));
        }
        if let Some(kind) = &self.details.kind {
            details.insert("kind".into(), json!(kind));
        }
        if !self.details.causes.is_empty() {
            let causes: Vec<Value> = self
                .details
                .causes
                .iter()
                .map(|c| {
                    let mut m = serde_json::Map::new();
                    m.insert("reason".into(), json!(c.reason));
                    m.insert("message".into(), json!(c.message));
                    if !c.field.is_empty() {
                        m.insert("field".into(), json!(c.field));
                    }
                    Value::Object(m)
                })
                .collect();
            details.insert("causes".into(), Value::Array(causes));
        }
        if let Some(s) = self.details.retry_after_seconds {
            details.insert("retryAfterSeconds".into(), json!(s));
        }
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        let mut resp = (self.status_code(), body).into_response();
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        resp
    }
}

/// A successful `Status` (deletecollection of a namespace-less path, etc.).
pub fn success_status(details: Option<Value>) -> Value {
    let mut s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
    if let Some(d) = details {
        s["details"] = d;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;

    #[test]
    fn conflict_message_matches_kube() {
        let reg = Registry::builtin();
        let pods = reg.by_plural("", "pods").unwrap();
        let e = ApiError::conflict(&pods, "x");
        assert_eq!(
            e.message,
            "Operation cannot be fulfilled on pods \"x\": the object has been modified; please apply your changes to the latest version and try again"
        );
        let s = e.to_status();
        assert_eq!(s["reason"], "Conflict");
        assert_eq!(s["code"], 409);
        assert_eq!(s["details"]["kind"], "pods");
        let deploy = reg.by_plural("apps", "deployments").unwrap();
        assert_eq!(ApiError::not_found(&deploy, "web").message, "deployments.apps \"web\" not found");
        assert_eq!(ApiError::not_found(&deploy, "web").to_status()["details"]["group"], "apps");
    }
}
