//! The REST verbs over resources: get, list, create, update, patch, delete,
//! deletecollection and the `status`, `scale` and `binding` subresources. Every kind goes
//! through the same code, objects held as `serde_json::Value`; per-kind behaviour comes
//! from the resource table ([`crate::resources`]), [`crate::defaults`] and [`crate::typed`].

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{json, Value};

use crate::allocator::{self, AllocError, Allocator, Reservations};
use crate::error::{ApiError, Cause, Result};
use crate::filter::Filter;
use crate::objects;
use crate::resources::{Registry, ResourceInfo};
use crate::routing::{Encoding, Route};
use crate::storage::{Kv, Storage, StorageError, TxnOutcome};
use crate::table_response;
use crate::validation::{self, FieldError, NameRule};

/// Largest request body accepted (kube-apiserver's limit is 3 MiB).
pub const REQUEST_BODY_BYTES_MAX: usize = 3 * 1024 * 1024;
/// Compare-and-write attempts of one update/patch/delete before giving up with 409.
pub const UPDATE_ATTEMPTS_MAX: usize = 16;
/// Names tried for one `generateName` create before giving up with 409 AlreadyExists.
pub const GENERATE_NAME_ATTEMPTS_MAX: usize = 8;
/// Keys read from etcd per round trip while serving a list.
pub const LIST_CHUNK_KEYS: i64 = 500;
/// Most objects one list response may hold; a larger unpaginated list is refused (use `limit`).
pub const LIST_RESPONSE_ITEMS_MAX: usize = 100_000;
/// Bound on the namespace-deletion queue (namespaces waiting for their contents to go).
pub const NAMESPACE_QUEUE_MAX: usize = 1024;

/// Shared state of the server.
pub struct AppState {
    pub storage: Storage,
    pub registry: Registry,
    pub allocator: Allocator,
    pub metrics: crate::metrics::Metrics,
    /// Bearer token accepted as the admin user (also in the kubeconfig directory).
    pub admin_token: String,
    /// Namespaces to finalize (see [`crate::bootstrap::namespace_finalizer`]).
    pub namespace_queue: tokio::sync::mpsc::Sender<String>,
    /// One etcd watch per resource, shared by its watchers.
    pub watch_caches: crate::watch_cache::WatchCaches,
}

pub type State = Arc<AppState>;

/// The parsed pieces of one request to a resource.
pub struct Request {
    pub method: Method,
    pub route: Route,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
    pub encoding: Encoding,
}

impl Request {
    fn param(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str)
    }

    fn dry_run(&self) -> Result<bool> {
        match self.param("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!("Invalid dryRun value {other:?}: only \"All\" is supported"))),
        }
    }

    fn field_validation(&self) -> Result<FieldValidation> {
        match self.param("fieldValidation").unwrap_or("") {
            "" | "Warn" => Ok(FieldValidation::Warn),
            "Strict" => Ok(FieldValidation::Strict),
            "Ignore" => Ok(FieldValidation::Ignore),
            other => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

/// A JSON response with optional `Warning` headers.
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub warnings: Vec<String>,
}

impl Reply {
    fn ok(body: Value) -> Reply {
        Reply { status: StatusCode::OK, body, warnings: Vec::new() }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let bytes = serde_json::to_vec(&self.body).unwrap_or_default();
        let mut resp = (self.status, bytes).into_response();
        resp.headers_mut().insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for w in self.warnings {
            // RFC 7234 warn-code 299 with the agent "-", as kube-apiserver.
            let text = format!("299 - {}", serde_json::to_string(&w).unwrap_or_default());
            if let Ok(v) = HeaderValue::from_str(&text) {
                resp.headers_mut().append("Warning", v);
            }
        }
        resp
    }
}

pub fn storage_error(e: StorageError) -> ApiError {
    match e {
        StorageError::Compacted { .. } => ApiError::resource_version_too_old(),
        StorageError::FutureRevision { requested } => ApiError::too_large_resource_version(requested, 0),
        StorageError::Timeout(d) => ApiError::service_unavailable(format!("etcd did not answer within {d:?}")),
        StorageError::Etcd(m) => ApiError::internal(m),
    }
}

/// Decodes a stored value and sets the fields derived from its key-value.
pub fn decode_stored(res: &ResourceInfo, kv: &Kv) -> Result<Value> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object at {} is not JSON: {e}", kv.key)))?;
    if !obj.is_object() {
        return Err(ApiError::internal(format!("stored object at {} is not a JSON object", kv.key)));
    }
    obj["apiVersion"] = json!(res.api_version());
    obj["kind"] = json!(res.kind);
    objects::metadata_mut(&mut obj).insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
    Ok(obj)
}

/// The bytes stored for an object: resourceVersion is never stored (etcd's mod_revision is).
fn encode_for_storage(obj: &Value) -> Vec<u8> {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("selfLink");
    }
    serde_json::to_vec(&o).expect("a Value always serializes")
}

fn with_revision(mut obj: Value, revision: i64) -> Value {
    objects::metadata_mut(&mut obj).insert("resourceVersion".into(), json!(revision.to_string()));
    obj
}

fn parse_body(req: &Request) -> Result<Value> {
    let ct = req.headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime == crate::protobuf::MEDIA_TYPE {
        let res = &req.route.resource;
        if res.custom {
            // As kube: custom resources have no protobuf encoding.
            return Err(ApiError::unsupported_media_type(mime, "application/json"));
        }
        let (api_version, kind) = match req.route.subresource.as_deref() {
            Some("scale") => ("autoscaling/v1".to_string(), "Scale"),
            Some("binding") => ("v1".to_string(), "Binding"),
            _ => (res.api_version(), res.kind.as_str()),
        };
        return Ok(crate::protobuf::decode_request(&req.body, &api_version, kind)?);
    }
    if mime != "application/json" && mime != "*/*" && !mime.is_empty() {
        return Err(ApiError::unsupported_media_type(mime, "application/json"));
    }
    let v: Value = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("the body of the request could not be decoded as JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request("the body of the request must be a JSON object"));
    }
    Ok(v)
}

fn namespace_of(route: &Route) -> Option<&str> {
    if route.resource.namespaced {
        route.namespace.as_deref()
    } else {
        None
    }
}

/// Checks apiVersion/kind (setting them when absent), then decodes into the typed struct:
/// type errors → 400; unknown fields → 400 (Strict) or `Warning`s (Warn).
fn check_typed(res: &ResourceInfo, kind: &str, api_version: &str, obj: &mut Value, validation: FieldValidation) -> Result<Vec<String>> {
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let version = api_version.rsplit('/').next().unwrap_or(api_version);
    let given_kind = obj.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
    let given_av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("").to_string();
    if !given_kind.is_empty() && given_kind != kind {
        return Err(ApiError::bad_request(format!(
            "{given_kind} in version \"{version}\" cannot be handled as a {kind}: the kind of the object ({given_kind}) does not match the kind of the request ({kind})"
        )));
    }
    if !given_av.is_empty() && given_av != api_version {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({given_av}) does not match the expected API version ({api_version})"
        )));
    }
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    if res.custom {
        return Ok(Vec::new());
    }
    let Some(decoded) = crate::typed::decode(group, kind, obj) else { return Ok(Vec::new()) };
    let decoded = decoded.map_err(|e| {
        ApiError::bad_request(format!("{kind} in version \"{version}\" cannot be handled as a {kind}: {e}"))
    })?;
    if validation == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let unknown = crate::typed::unknown_fields(obj, &decoded);
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    match validation {
        FieldValidation::Strict => {
            let list: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
            Err(ApiError::bad_request(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
                list.join(", ")
            )))
        }
        _ => Ok(unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect()),
    }
}

/// The request's field manager: `?fieldManager=`, else the User-Agent's program name
/// (kube's default: `kubectl/v1.32.0 (linux/amd64) ...` → `kubectl`), cut to kube's limit.
pub fn field_manager(req: &Request) -> String {
    let given = req.param("fieldManager").filter(|m| !m.is_empty()).map(str::to_string);
    let manager = given.unwrap_or_else(|| {
        let ua = req.headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
        ua.split('/').next().unwrap_or("").to_string()
    });
    manager.chars().take(crate::apply::FIELD_MANAGER_MAX_BYTES).collect()
}

/// Which rule `metadata.name` follows for this resource (kube's per-kind name validators).
fn name_rule(res: &ResourceInfo) -> NameRule {
    match (res.group.as_str(), res.plural.as_str()) {
        ("", "namespaces") => NameRule::DnsLabel,
        ("", "services") => NameRule::Dns1035Label,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        _ => NameRule::DnsSubdomain,
    }
}

/// 422 Invalid from field errors, worded by [`crate::validation::invalid_status`].
fn invalid_from(res: &ResourceInfo, name: &str, errs: &[FieldError]) -> ApiError {
    let status = validation::invalid_status(&res.group, &res.kind, name, errs);
    let causes = errs.iter().map(|e| Cause { reason: e.type_.reason().to_string(), message: e.body(), field: e.field.clone() }).collect();
    let mut e = ApiError::invalid(res, name, causes);
    if let Some(m) = status.get("message").and_then(Value::as_str) {
        e.message = m.to_string();
    }
    e
}

/// Refuses new objects in a namespace that does not exist (404) or is terminating (403).
async fn check_namespace(state: &AppState, res: &ResourceInfo, namespace: &str, name: &str) -> Result<()> {
    let ns_res = state.registry.by_plural("", "namespaces").expect("namespaces are built in");
    let Some(kv) = state.storage.get(&ns_res.key(None, namespace)).await.map_err(storage_error)? else {
        return Err(ApiError::namespace_not_found(namespace));
    };
    let ns = decode_stored(&ns_res, &kv)?;
    if ns.pointer("/metadata/deletionTimestamp").map(|v| !v.is_null()).unwrap_or(false)
        || ns.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating")
    {
        return Err(ApiError::forbidden(
            res,
            name,
            &format!("unable to create new content in namespace {namespace} because it is being terminated"),
        ));
    }
    Ok(())
}

fn alloc_error(res: &ResourceInfo, name: &str, e: AllocError) -> ApiError {
    match e {
        AllocError::Invalid(field, message) => {
            ApiError::invalid(res, name, vec![Cause { reason: "FieldValueInvalid".into(), message, field }])
        }
        AllocError::Storage(e) => storage_error(e),
    }
}

// ---------------------------------------------------------------------------------------
// Reads

/// GET of one object (or its `scale` / `status` view).
pub async fn get(state: &AppState, req: &Request) -> Result<Reply> {
    let route = &req.route;
    let res = &route.resource;
    let name = route.name.as_deref().unwrap_or("");
    let kv = state.storage.get(&res.key(namespace_of(route), name)).await.map_err(storage_error)?;
    let Some(kv) = kv else { return Err(ApiError::not_found(res, name)) };
    let obj = decode_stored(res, &kv)?;
    if route.subresource.as_deref() == Some("scale") {
        return Ok(Reply::ok(to_scale(&obj)));
    }
    if req.encoding == Encoding::Table {
        let include = table_response::include_object(req.param("includeObject"))?;
        let rv = objects::meta_str(&obj, "resourceVersion").unwrap_or("").to_string();
        return Ok(Reply::ok(table_response::table(res, &[obj], json!({"resourceVersion": rv}), include, true)));
    }
    Ok(Reply::ok(obj))
}

/// kube's continue token: base64url (no padding) of `{"v":"meta.k8s.io/v1","rv":N,"start":K}`
/// where K is the next key relative to the listed prefix.
fn encode_continue(revision: i64, start: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": start});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(i64, String)> {
    let bad = || ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if v.get("v").and_then(Value::as_str) != Some("meta.k8s.io/v1") {
        return Err(bad());
    }
    let rv = v.get("rv").and_then(Value::as_i64).filter(|rv| *rv > 0).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?.to_string();
    if start.contains("..") || start.starts_with('/') {
        return Err(bad());
    }
    Ok((rv, start))
}

fn parse_rv(s: &str) -> Result<i64> {
    s.parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("resourceVersion: Invalid value: \"{s}\": must be a non-negative integer")))
}

/// At which revision a list reads, from its `resourceVersion`, `resourceVersionMatch`,
/// `limit` and `continue` (kube's semantics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadPlan {
    /// Unset or "0": the latest state (a quorum read; "0" allows any, latest is one).
    Latest,
    /// Exactly this revision (410 Expired when compacted, 504 when in the future).
    Exact(i64),
    /// Any state at least this new: the latest, unless `rv` is in the future.
    NotOlderThan(i64),
    /// The next page of a paginated list, at the first page's revision.
    Continue { revision: i64, start_after_prefix: String },
}

pub fn read_plan(rv_param: &str, rv_match: &str, limit: i64, continue_param: &str) -> Result<ReadPlan> {
    if !continue_param.is_empty() {
        if !rv_param.is_empty() && rv_param != "0" {
            return Err(ApiError::bad_request("specifying resource version is not allowed when using continue"));
        }
        let (revision, start_after_prefix) = decode_continue(continue_param)?;
        return Ok(ReadPlan::Continue { revision, start_after_prefix });
    }
    if rv_param.is_empty() {
        if !rv_match.is_empty() {
            return Err(ApiError::bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided"));
        }
        return Ok(ReadPlan::Latest);
    }
    let rv = parse_rv(rv_param)?;
    match rv_match {
        "Exact" if rv == 0 => Err(ApiError::bad_request(
            "resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
        )),
        "Exact" => Ok(ReadPlan::Exact(rv)),
        "NotOlderThan" if rv == 0 => Ok(ReadPlan::Latest),
        "NotOlderThan" => Ok(ReadPlan::NotOlderThan(rv)),
        // Legacy (no match given): a paginated list at rv > 0 is exact, else not-older-than.
        "" if rv == 0 => Ok(ReadPlan::Latest),
        "" if limit > 0 => Ok(ReadPlan::Exact(rv)),
        "" => Ok(ReadPlan::NotOlderThan(rv)),
        other => Err(ApiError::bad_request(format!(
            "resourceVersionMatch: Unsupported value: \"{other}\": supported values: \"Exact\", \"NotOlderThan\""
        ))),
    }
}

/// One page of a list: the matching objects, the revision read at and the continue token.
pub struct ListResult {
    pub items: Vec<Value>,
    pub revision: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
}

/// Lists `res` in `namespace` (None: all) at a revision chosen from the request.
pub async fn list_objects(
    state: &AppState,
    res: &ResourceInfo,
    namespace: Option<&str>,
    filter: &Filter,
    query: &HashMap<String, String>,
) -> Result<ListResult> {
    let prefix = res.namespace_prefix(namespace);
    let limit: i64 = match query.get("limit").map(String::as_str) {
        None | Some("") => 0,
        Some(s) => s.parse::<i64>().map_err(|_| ApiError::bad_request(format!("limit: Invalid value: {s:?}")))?.max(0),
    };
    let rv_param = query.get("resourceVersion").map(String::as_str).unwrap_or("");
    let rv_match = query.get("resourceVersionMatch").map(String::as_str).unwrap_or("");
    let continue_param = query.get("continue").map(String::as_str).unwrap_or("");
    let (mut revision, mut start) = (0i64, prefix.clone());
    let plan = read_plan(rv_param, rv_match, limit, continue_param)?;
    if let crate::cached_list::ListSource::Cache { min_revision } = crate::cached_list::list_source(&plan, rv_param, limit) {
        if let Some(result) = crate::cached_list::list(state, res, namespace, filter, min_revision).await? {
            return Ok(result);
        }
    }
    match plan {
        ReadPlan::Latest => {}
        ReadPlan::Exact(rv) => revision = rv,
        ReadPlan::NotOlderThan(rv) => {
            // The latest state is not older than rv; only a future rv is refused.
            let current = state.storage.current_revision().await.map_err(storage_error)?;
            if rv > current {
                return Err(ApiError::too_large_resource_version(rv, current));
            }
        }
        ReadPlan::Continue { revision: rv, start_after_prefix } => {
            revision = rv;
            start = format!("{prefix}{start_after_prefix}");
        }
    }
    let end = crate::storage::prefix_end(&prefix);
    let mut items = Vec::new();
    let mut next_start: Option<String> = None;
    let mut remaining = None;
    loop {
        let want = if limit > 0 { (limit - items.len() as i64).max(1) } else { LIST_CHUNK_KEYS };
        let chunk = if filter.is_empty() { want } else { want.max(LIST_CHUNK_KEYS) };
        let page = state.storage.range(&start, end.clone(), revision, chunk).await.map_err(|e| match e {
            StorageError::Compacted { .. } if !continue_param.is_empty() => ApiError::continue_expired(),
            StorageError::Compacted { .. } => ApiError::resource_version_too_old(),
            StorageError::FutureRevision { requested } => ApiError::too_large_resource_version(requested, 0),
            other => storage_error(other),
        })?;
        if revision == 0 {
            revision = page.revision;
        }
        let mut last_key = None;
        for kv in &page.kvs {
            last_key = Some(kv.key.clone());
            let obj = decode_stored(res, kv)?;
            if filter.matches(&obj) {
                items.push(obj);
            }
            if limit > 0 && items.len() as i64 >= limit {
                break;
            }
        }
        let consumed_all = last_key.as_deref() == page.kvs.last().map(|k| k.key.as_str());
        let more = page.more || !consumed_all;
        if items.len() > LIST_RESPONSE_ITEMS_MAX {
            return Err(ApiError::internal(format!(
                "list of more than {LIST_RESPONSE_ITEMS_MAX} objects refused; use limit and continue"
            )));
        }
        match last_key {
            Some(k) if more => {
                let next = format!("{k}\u{0}");
                if limit > 0 && items.len() as i64 >= limit {
                    let rel = next.strip_prefix(&prefix).unwrap_or(&next).to_string();
                    next_start = Some(encode_continue(revision, &rel));
                    if filter.is_empty() && consumed_all {
                        remaining = Some(page.remaining);
                    }
                    break;
                }
                start = next;
            }
            _ => break,
        }
    }
    Ok(ListResult { items, revision, continue_token: next_start, remaining })
}

fn list_metadata(result: &ListResult) -> Value {
    let mut meta = json!({"resourceVersion": result.revision.to_string()});
    if let Some(c) = &result.continue_token {
        meta["continue"] = json!(c);
        if let Some(r) = result.remaining.filter(|r| *r > 0) {
            meta["remainingItemCount"] = json!(r);
        }
    }
    meta
}

pub async fn list(state: &AppState, req: &Request) -> Result<Reply> {
    let route = &req.route;
    let res = &route.resource;
    let filter = Filter::parse(&res.plural, req.param("labelSelector"), req.param("fieldSelector"))?;
    let result = list_objects(state, res, namespace_of(route), &filter, &req.query).await?;
    let meta = list_metadata(&result);
    if req.encoding == Encoding::Table {
        let include = table_response::include_object(req.param("includeObject"))?;
        return Ok(Reply::ok(table_response::table(res, &result.items, meta, include, true)));
    }
    Ok(Reply::ok(json!({
        "kind": format!("{}List", res.kind),
        "apiVersion": res.api_version(),
        "metadata": meta,
        "items": result.items,
    })))
}

// ---------------------------------------------------------------------------------------
// Create

fn pod_initial_status(obj: &Value) -> Value {
    let qos = obj.get("spec").map(crate::defaults::qos_class).unwrap_or("BestEffort");
    json!({"phase": "Pending", "qosClass": qos})
}

/// Fills in what the server owns on a new object and checks what the client must give.
fn prepare_create(res: &ResourceInfo, namespace: Option<&str>, obj: &mut Value) -> Result<()> {
    let meta = objects::metadata_mut(obj);
    match (res.namespaced, namespace, meta.get("namespace").and_then(Value::as_str)) {
        (true, Some(url_ns), Some(body_ns)) if !body_ns.is_empty() && body_ns != url_ns => {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        (true, Some(url_ns), _) => {
            meta.insert("namespace".into(), json!(url_ns));
        }
        (false, _, _) => {
            meta.remove("namespace");
        }
        (true, None, _) => return Err(ApiError::bad_request("a namespaced object must be created in a namespace")),
    }
    for k in ["resourceVersion", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"] {
        meta.remove(k);
    }
    meta.insert("uid".into(), json!(objects::new_uid()));
    meta.insert("creationTimestamp".into(), json!(objects::now_rfc3339()));
    if res.tracks_generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    crate::defaults::apply(&res.group, &res.kind, obj);
    if res.has_status && !res.custom {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
    }
    if res.group.is_empty() && res.plural == "pods" {
        obj["status"] = pod_initial_status(obj);
    }
    if res.group.is_empty() && res.plural == "namespaces" {
        obj["status"] = json!({"phase": "Active"});
    }
    if res.group == "apiextensions.k8s.io" && res.plural == "customresourcedefinitions" {
        obj["status"] = crate::bootstrap::crd_status(obj);
    }
    Ok(())
}

/// A new object's metadata, then its kind's spec rules ([`validation::validate_kind`]).
fn validate_meta(res: &ResourceInfo, obj: &Value) -> Result<()> {
    let mut errs = validation::validate_object_meta(obj, res.namespaced, name_rule(res));
    if !res.custom {
        errs.extend(validation::validate_kind(&res.group, &res.kind, obj));
    }
    if errs.is_empty() {
        return Ok(());
    }
    Err(invalid_from(res, objects::name(obj), &errs))
}

pub async fn create(state: &AppState, req: &Request) -> Result<Reply> {
    let route = &req.route;
    let res = &route.resource;
    let mut obj = parse_body(req)?;
    let warnings = check_typed(res, &res.kind, &res.api_version(), &mut obj, req.field_validation()?)?;
    let dry_run = req.dry_run()?;
    let namespace = namespace_of(route);
    if route.resource.namespaced && namespace.is_none() {
        return Err(ApiError::method_not_allowed());
    }
    prepare_create(res, namespace, &mut obj)?;
    objects::drop_empty_meta_collections(&mut obj);
    validate_meta(res, &obj)?;
    if let Some(ns) = namespace {
        check_namespace(state, res, ns, objects::name(&obj)).await?;
    }
    let obj = crate::apply::update_managed_fields(
        None,
        &obj,
        &field_manager(req),
        "Update",
        &res.api_version(),
        None,
        &res.group,
        &res.kind,
        std::time::SystemTime::now(),
    );
    let stored = create_object(state, res, namespace, obj, dry_run).await?;
    Ok(Reply { status: StatusCode::CREATED, body: stored, warnings })
}

/// Writes a prepared new object (naming it from generateName, allocating Service
/// addresses) and returns it as stored.
pub async fn create_object(state: &AppState, res: &ResourceInfo, namespace: Option<&str>, obj: Value, dry_run: bool) -> Result<Value> {
    let generate = objects::meta_str(&obj, "generateName").unwrap_or("").to_string();
    let use_generate = objects::name(&obj).is_empty() && !generate.is_empty();
    let is_service = res.group.is_empty() && res.plural == "services";
    for attempt in 0..UPDATE_ATTEMPTS_MAX.max(GENERATE_NAME_ATTEMPTS_MAX) {
        let mut candidate = obj.clone();
        if use_generate {
            let name = objects::generate_name(&generate);
            objects::metadata_mut(&mut candidate).insert("name".into(), json!(name));
            validate_meta(res, &candidate)?;
        }
        let name = objects::name(&candidate).to_string();
        let reservations = if is_service {
            state
                .allocator
                .assign(&state.storage, &mut candidate, None, namespace.unwrap_or(""))
                .await
                .map_err(|e| alloc_error(res, &name, e))?
        } else {
            Reservations::default()
        };
        if dry_run {
            return Ok(candidate);
        }
        let key = res.key(namespace, &name);
        let mut puts = vec![(key, encode_for_storage(&candidate))];
        puts.extend(reservations.create);
        match state.storage.create(puts).await.map_err(storage_error)? {
            TxnOutcome::Done(rev) => {
                let stored = with_revision(candidate, rev);
                if res.group == "apiextensions.k8s.io" && res.plural == "customresourcedefinitions" {
                    crate::bootstrap::register_crd(state, &stored);
                }
                return Ok(stored);
            }
            TxnOutcome::Mismatch(Some(_)) if use_generate && attempt + 1 < GENERATE_NAME_ATTEMPTS_MAX => continue,
            TxnOutcome::Mismatch(Some(_)) => return Err(ApiError::already_exists(res, &name)),
            // The object key was free: a reserved address was taken meanwhile; pick again.
            TxnOutcome::Mismatch(None) if is_service => continue,
            TxnOutcome::Mismatch(None) => return Err(ApiError::internal("create txn failed without a conflicting key")),
        }
    }
    Err(ApiError::conflict_with(res, objects::name(&obj), "could not allocate after repeated conflicts; try again"))
}

// ---------------------------------------------------------------------------------------
// Update and patch: a guaranteed update loop (read, transform, compare-and-write).

/// What a transform does with the current object.
pub enum Transformed {
    /// Store this object.
    Write(Value),
}

/// Reads the object, applies `transform` to it, and writes the result if the object did
/// not change meanwhile (retrying on a concurrent write unless `precondition_rv` pins the
/// revision the client saw). No-op updates are not written (the revision stays).
/// `manager`, when given, records the write in `metadata.managedFields` as an `Update` by
/// that field manager (server-internal writes and server-side apply pass `None`).
#[allow(clippy::too_many_arguments)]
pub async fn guaranteed_update<F>(
    state: &AppState,
    res: &ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    subresource: Option<&str>,
    dry_run: bool,
    manager: Option<&str>,
    mut transform: F,
) -> Result<Value>
where
    F: FnMut(&Value) -> Result<Transformed>,
{
    let key = res.key(namespace, name);
    let is_service = res.group.is_empty() && res.plural == "services";
    for _ in 0..UPDATE_ATTEMPTS_MAX {
        let Some(kv) = state.storage.get(&key).await.map_err(storage_error)? else {
            return Err(ApiError::not_found(res, name));
        };
        let existing = decode_stored(res, &kv)?;
        let Transformed::Write(mut new) = transform(&existing)?;
        // The client's resourceVersion is a precondition.
        if let Some(rv) = objects::meta_str(&new, "resourceVersion").filter(|s| !s.is_empty()) {
            if rv != kv.mod_revision.to_string() {
                return Err(ApiError::conflict(res, name));
            }
        }
        if objects::name(&new) != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                objects::name(&new)
            )));
        }
        merge_server_fields(res, subresource, &existing, &mut new, namespace)?;
        objects::drop_empty_meta_collections(&mut new);
        let mut check = new.clone();
        objects::metadata_mut(&mut check).insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
        let mut errs = validation::validate_object_meta_update(&check, &existing);
        errs.extend(validation::validate_object_meta(&check, res.namespaced, name_rule(res)));
        // Spec rules and immutable fields: not for status writes and bindings, which kube
        // validates with their own (narrower) rules.
        if !res.custom && matches!(subresource, None | Some("scale")) {
            errs.extend(validation::validate_kind_update(&res.group, &res.kind, &check, &existing));
        }
        if !errs.is_empty() {
            return Err(invalid_from(res, name, &errs));
        }
        if let Some(m) = manager {
            new = crate::apply::update_managed_fields(
                Some(&existing),
                &new,
                m,
                "Update",
                &res.api_version(),
                subresource,
                &res.group,
                &res.kind,
                std::time::SystemTime::now(),
            );
        }
        let reservations = if is_service && subresource.is_none() {
            state
                .allocator
                .assign(&state.storage, &mut new, Some(&existing), namespace.unwrap_or(""))
                .await
                .map_err(|e| alloc_error(res, name, e))?
        } else {
            Reservations::default()
        };
        // Finalizers emptied on an object being deleted: the update completes the delete.
        let deleting = new.pointer("/metadata/deletionTimestamp").map(|v| !v.is_null()).unwrap_or(false);
        if deleting && objects::finalizers(&new).is_empty() {
            if dry_run {
                return Ok(with_revision(new, kv.mod_revision));
            }
            let mut releases = reservations.release;
            if is_service {
                releases.extend(allocator::release_keys(&existing));
            }
            match state.storage.delete(&key, kv.mod_revision, releases).await.map_err(storage_error)? {
                TxnOutcome::Done(rev) => return Ok(with_revision(new, rev)),
                TxnOutcome::Mismatch(_) => continue,
            }
        }
        if same_ignoring_rv(&existing, &new) {
            return Ok(existing);
        }
        if dry_run {
            // What would be stored; the revision is the current one (nothing was written).
            return Ok(with_revision(new, kv.mod_revision));
        }
        let bytes = encode_for_storage(&new);
        match state
            .storage
            .update(&key, kv.mod_revision, bytes, reservations.create, reservations.release)
            .await
            .map_err(storage_error)?
        {
            TxnOutcome::Done(rev) => return Ok(with_revision(new, rev)),
            TxnOutcome::Mismatch(None) if is_service => continue,
            TxnOutcome::Mismatch(None) => return Err(ApiError::not_found(res, name)),
            TxnOutcome::Mismatch(Some(_)) => continue,
        }
    }
    Err(ApiError::conflict(res, name))
}

fn same_ignoring_rv(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        v
    };
    strip(a) == strip(b)
}

/// Keeps what the client may not change through this endpoint: identity and timestamps
/// always; `status` on the main resource (when it has a status subresource); everything
/// but `status` on the status subresource. Bumps `generation` when `spec` changed.
fn merge_server_fields(res: &ResourceInfo, subresource: Option<&str>, existing: &Value, new: &mut Value, namespace: Option<&str>) -> Result<()> {
    if subresource == Some("status") {
        let status = new.get("status").cloned();
        let mut merged = existing.clone();
        match status {
            Some(s) => merged["status"] = s,
            None => {
                if let Some(o) = merged.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        *new = merged;
        return Ok(());
    }
    if let Some(ns) = namespace {
        if let Some(body_ns) = objects::meta_str(new, "namespace").filter(|s| !s.is_empty()) {
            if body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
    }
    let old_meta = objects::metadata(existing).cloned().unwrap_or_default();
    let meta = objects::metadata_mut(new);
    for k in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "namespace", "generation"] {
        match old_meta.get(k) {
            Some(v) => {
                meta.insert(k.into(), v.clone());
            }
            None => {
                meta.remove(k);
            }
        }
    }
    meta.remove("resourceVersion");
    // A write that sends no managedFields keeps the stored ones (the field manager then
    // updates them; see `guaranteed_update`).
    if meta.get("managedFields").map(Value::is_null).unwrap_or(true) {
        match old_meta.get("managedFields") {
            Some(m) => {
                meta.insert("managedFields".into(), m.clone());
            }
            None => {
                meta.remove("managedFields");
            }
        }
    }
    if res.has_status && !res.custom {
        match existing.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    crate::defaults::apply(&res.group, &res.kind, new);
    if res.tracks_generation && existing.get("spec") != new.get("spec") {
        let g = existing.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
        objects::metadata_mut(new).insert("generation".into(), json!(g + 1));
    }
    Ok(())
}

pub async fn update(state: &AppState, req: &Request) -> Result<Reply> {
    let route = &req.route;
    let res = &route.resource;
    let name = route.name.clone().unwrap_or_default();
    let mut body = parse_body(req)?;
    let dry_run = req.dry_run()?;
    let validation = req.field_validation()?;
    let sub = route.subresource.as_deref();
    if sub == Some("scale") {
        let warnings = check_typed(res, "Scale", "autoscaling/v1", &mut body, validation)?;
        let manager = field_manager(req);
        let stored = update_scale(state, route, &name, dry_run, &manager, move |_| Ok(body.clone())).await?;
        return Ok(Reply { status: StatusCode::OK, body: stored, warnings });
    }
    let warnings = check_typed(res, &res.kind, &res.api_version(), &mut body, validation)?;
    let manager = field_manager(req);
    let stored =
        guaranteed_update(state, res, namespace_of(route), &name, sub, dry_run, Some(&manager), |_| Ok(Transformed::Write(body.clone())))
            .await?;
    Ok(Reply { status: StatusCode::OK, body: stored, warnings })
}

/// autoscaling/v1 Scale view of an object with `spec.replicas`.
pub fn to_scale(obj: &Value) -> Value {
    let meta = objects::metadata(obj).cloned().unwrap_or_default();
    let pick = |k: &str| meta.get(k).cloned().unwrap_or(Value::Null);
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(","))
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": pick("name"),
            "namespace": pick("namespace"),
            "uid": pick("uid"),
            "resourceVersion": pick("resourceVersion"),
            "creationTimestamp": pick("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector},
    })
}

/// Applies a new Scale (computed from the current one by `f`) to the object's replicas.
async fn update_scale<F>(state: &AppState, route: &Route, name: &str, dry_run: bool, manager: &str, mut f: F) -> Result<Value>
where
    F: FnMut(&Value) -> Result<Value>,
{
    let res = &route.resource;
    let stored = guaranteed_update(state, res, namespace_of(route), name, Some("scale"), dry_run, Some(manager), |existing| {
        let scale = f(&to_scale(existing))?;
        if let Some(rv) = scale.pointer("/metadata/resourceVersion").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            if Some(rv) != objects::meta_str(existing, "resourceVersion") {
                return Err(ApiError::conflict(res, name));
            }
        }
        let replicas = scale.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::invalid(
                res,
                name,
                vec![Cause {
                    reason: "FieldValueInvalid".into(),
                    message: format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                    field: "spec.replicas".into(),
                }],
            ));
        }
        let mut new = existing.clone();
        match new.get_mut("spec") {
            Some(Value::Object(spec)) => {
                spec.insert("replicas".into(), json!(replicas));
            }
            None | Some(Value::Null) => new["spec"] = json!({"replicas": replicas}),
            Some(_) => {
                return Err(ApiError::invalid(
                    res,
                    name,
                    vec![Cause { reason: "FieldValueInvalid".into(), message: "Invalid value: spec is not an object".into(), field: "spec".into() }],
                ))
            }
        }
        objects::metadata_mut(&mut new).remove("resourceVersion");
        Ok(Transformed::Write(new))
    })
    .await?;
    Ok(to_scale(&stored))
}

/// PATCH: the patch document is applied to the current object (re-read on every retry).
pub async fn patch(state: &AppState, req: &Request) -> Result<Reply> {
    let route = &req.route;
    let res = &route.resource;
    let name = route.name.clone().unwrap_or_default();
    let ct = req.headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_string();
    let kind = crate::patching::PatchKind::from_mime(&mime)?;
    if kind == crate::patching::PatchKind::Apply {
        return apply_patch::server_side_apply(state, req).await;
    }
    let dry_run = req.dry_run()?;
    let validation = req.field_validation()?;
    let body = req.body.clone();
    let sub = route.subresource.as_deref();
    let warnings = std::sync::Mutex::new(Vec::new());
    if sub == Some("scale") {
        let manager = field_manager(req);
        let stored = update_scale(state, route, &name, dry_run, &manager, |scale| {
            let mut patched = crate::patching::apply_to(kind, "autoscaling", "Scale", scale, &body)?;
            let w = check_typed(res, "Scale", "autoscaling/v1", &mut patched, validation)?;
            *warnings.lock().expect("not poisoned") = w;
            Ok(patched)
        })
        .await?;
        let warnings = warnings.into_inner().expect("not poisoned");
        return Ok(Reply { status: StatusCode::OK, body: stored, warnings });
    }
    let manager = field_manager(req);
    let stored = guaranteed_update(state, res, namespace_of(route), &name, sub, dry_run, Some(&manager), |existing| {
        let mut patched = crate::patching::apply(kind, res, existing, &body)?;
        let w = check_typed(res, &res.kind, &res.api_version(), &mut patched, validation)?;
        *warnings.lock().expect("not poisoned") = w;
        // A patch that does not set resourceVersion applies to whatever is current.
        let client_rv = crate::patching::patch_sets_resource_version(kind, &body);
        if !client_rv {
            objects::metadata_mut(&mut patched).remove("resourceVersion");
        }
        Ok(Transformed::Write(patched))
    })
    .await?;
    let warnings = warnings.into_inner().expect("not poisoned");
    Ok(Reply { status: StatusCode::OK, body: stored, warnings })
}

mod apply_patch;
mod delete;
pub use delete::{bind, delete, delete_collection, delete_object, DeleteOptions};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_version_semantics() {
        let token = encode_continue(7, "default/b\u{0}");
        // (resourceVersion, resourceVersionMatch, limit, continue) → plan or HTTP code.
        type Case<'a> = (&'a str, &'a str, i64, &'a str, Result<ReadPlan, u16>);
        let cases: &[Case] = &[
            ("", "", 0, "", Ok(ReadPlan::Latest)),
            ("", "", 5, "", Ok(ReadPlan::Latest)),
            ("0", "", 0, "", Ok(ReadPlan::Latest)),
            ("0", "", 5, "", Ok(ReadPlan::Latest)),
            ("0", "NotOlderThan", 0, "", Ok(ReadPlan::Latest)),
            ("12", "", 0, "", Ok(ReadPlan::NotOlderThan(12))),
            ("12", "", 5, "", Ok(ReadPlan::Exact(12))),
            ("12", "NotOlderThan", 5, "", Ok(ReadPlan::NotOlderThan(12))),
            ("12", "Exact", 0, "", Ok(ReadPlan::Exact(12))),
            ("0", "Exact", 0, "", Err(400)),
            ("", "Exact", 0, "", Err(400)),
            ("12", "Sometime", 0, "", Err(400)),
            ("-1", "", 0, "", Err(400)),
            ("abc", "", 0, "", Err(400)),
            ("", "", 2, &token, Ok(ReadPlan::Continue { revision: 7, start_after_prefix: "default/b\u{0}".into() })),
            ("0", "", 2, &token, Ok(ReadPlan::Continue { revision: 7, start_after_prefix: "default/b\u{0}".into() })),
            ("9", "", 2, &token, Err(400)),
            ("", "", 2, "garbage", Err(400)),
        ];
        for (rv, m, limit, cont, want) in cases {
            let got = read_plan(rv, m, *limit, cont).map_err(|e| e.code);
            assert_eq!(&got, want, "rv={rv:?} match={m:?} limit={limit} continue={cont:?}");
        }
    }

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let t = encode_continue(42, "default/web\u{0}");
        assert_eq!(decode_continue(&t).unwrap(), (42, "default/web\u{0}".to_string()));
        assert!(decode_continue("not-base64!").is_err());
        let escape = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"v":"meta.k8s.io/v1","rv":3,"start":"../secrets/"}"#);
        assert!(decode_continue(&escape).is_err());
    }

    #[test]
    fn invalid_names_are_422_with_kube_wording() {
        let reg = Registry::builtin();
        let pods = reg.by_plural("", "pods").unwrap();
        let deploy = reg.by_plural("apps", "deployments").unwrap();
        let mut pod = json!({"metadata": {"name": "Web", "namespace": "default"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        let e = validate_meta(&pods, &pod).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.message.starts_with("Pod \"Web\" is invalid: metadata.name: Invalid value: \"Web\": a lowercase RFC 1123 subdomain"), "{}", e.message);
        pod["metadata"]["name"] = json!("web");
        validate_meta(&pods, &pod).unwrap();
        let d = json!({"metadata": {"name": "a_b", "namespace": "default"}});
        assert!(validate_meta(&deploy, &d).unwrap_err().message.starts_with("Deployment.apps \"a_b\" is invalid"));
    }

    #[test]
    fn strict_decoding_error_text() {
        let reg = Registry::builtin();
        let pods = reg.by_plural("", "pods").unwrap();
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"foo": 1, "containers": []}});
        let e = check_typed(&pods, "Pod", "v1", &mut pod, FieldValidation::Strict).unwrap_err();
        assert_eq!(e.message, "Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.foo\"");
        let w = check_typed(&pods, "Pod", "v1", &mut pod, FieldValidation::Warn).unwrap();
        assert_eq!(w, vec!["unknown field \"spec.foo\""]);
        assert!(check_typed(&pods, "Pod", "v1", &mut pod, FieldValidation::Ignore).unwrap().is_empty());
    }
}
