//! Server-side apply and field ownership (`metadata.managedFields`), as kube-apiserver
//! 1.32 does it with structured-merge-diff v4. Pure: no I/O, no clock (the caller passes
//! `now`), objects as `serde_json::Value`.
//!
//! | request                                   | function                          |
//! |-------------------------------------------|-----------------------------------|
//! | PATCH `application/apply-patch+yaml`      | [`validate_patch_options`], [`parse_apply_body`], [`validate_apply_body`], then [`apply`] |
//! | every other write (create, update, patch) | [`update_managed_fields`]         |
//! | any [`ApplyError`], as a `Status`         | [`conflict_status`]               |
//!
//! Ownership is a [`FieldSet`] per manager, written as `FieldsV1`. Applying a
//! configuration: merge it into the live object (associative lists by their keys, sets
//! by value, atomic lists and structs whole — see `schema`), drop the fields this
//! applier set last time and no longer sets unless another manager owns them, then move
//! ownership: fields the write changes are taken from their other owners — a conflict
//! unless `force` — and fields set to the value they already had are shared.
//!
//! Left to the caller (they need storage or the request): the `before-first-apply`
//! migration, default manager names, the cap of ten Update managers
//! (`ancient-changes`), the rest of a kind's strategy (this module only knows that a
//! built-in kind's main resource ignores `status` and its `status` subresource ignores
//! `spec`), and conversion between API versions (managers keep the apiVersion they
//! wrote with; sets are compared as they are).

mod fieldpath;
mod managed;
mod schema;
mod typed;

use std::time::SystemTime;

use serde_json::{json, Map, Value};

pub use fieldpath::{FieldSet, OrdValue, Path, PathElement};
pub use managed::{
    decode_managed_fields, encode_managed_fields, sort_entries, ManagedFieldsEntry, OPERATION_APPLY, OPERATION_UPDATE,
};

use crate::patch::json_eq;

/// kube's `FieldManagerMaxLength`.
pub const FIELD_MANAGER_MAX_BYTES: usize = 128;

/// One field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The manager's name as in `managedFields` (`kubectl-client-side-apply`).
    pub manager: String,
    /// How kube names the manager in messages: `"kubectl-client-side-apply" using apps/v1`.
    pub described: String,
    /// The field: `.spec.replicas`, `.spec.template.spec.containers[name="nginx"].image`.
    pub field: String,
    /// kube's manager identifier (JSON), which orders the message.
    identifier: String,
}

/// A field-validation cause of an [`ApplyError::Invalid`]: (`reason`, `message`, `field`).
pub type Cause = (&'static str, String, String);

/// Why an apply (or its request) was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApplyError {
    /// 400 BadRequest: the body is not an apply configuration for this object.
    #[error("{0}")]
    BadRequest(String),
    /// 422 Invalid: the PATCH options (`fieldManager`, `force`) are wrong; kube reports
    /// them against `PatchOptions.meta.k8s.io`.
    #[error("{message}")]
    Invalid { message: String, causes: Vec<Cause> },
    /// 500: the configuration does not fit the kind's schema (an associative-list item
    /// without its key, duplicate keys); kube passes these through as internal errors.
    #[error("{0}")]
    Internal(String),
    /// 409 Conflict: fields owned by other managers with other values.
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
}

impl ApplyError {
    /// The HTTP status kube answers with.
    pub fn status_code(&self) -> u16 {
        match self {
            ApplyError::BadRequest(_) => 400,
            ApplyError::Invalid { .. } => 422,
            ApplyError::Internal(_) => 500,
            ApplyError::Conflicts(_) => 409,
        }
    }
}

pub type Result<T, E = ApplyError> = std::result::Result<T, E>;

/// kube's message for a set of conflicts (`getConflictMessage`): one conflict on one
/// line; several grouped by manager (sorted by manager identifier), one path a line.
fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!("Apply failed with 1 conflict: conflict with {}: {}", c.described, c.field);
    }
    let mut lines = Vec::new();
    let mut last: Option<&str> = None;
    for c in conflicts {
        if last != Some(c.identifier.as_str()) {
            lines.push(format!("conflicts with {}:", c.described));
            last = Some(&c.identifier);
        }
        lines.push(format!("- {}", c.field));
    }
    format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
}

/// The `Status` kube-apiserver answers an [`ApplyError`] with. For conflicts:
/// `409`, reason `Conflict`, one `FieldManagerConflict` cause per field.
///
/// `group`, `kind` and `name` are the request's object; kube names it in none of these
/// statuses (`NewApplyConflict` has a TODO for it, `NewInternalError` and
/// `NewBadRequest` have no object, the 422 is about `PatchOptions`), so neither does
/// this — they are taken so callers need not know that.
pub fn conflict_status(group: &str, kind: &str, name: &str, err: &ApplyError) -> Value {
    let _ = (group, kind, name);
    let (reason, details) = match err {
        ApplyError::Conflicts(cs) => {
            let causes: Vec<Value> = cs
                .iter()
                .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", c.described), "field": c.field}))
                .collect();
            ("Conflict", json!({"causes": causes}))
        }
        ApplyError::BadRequest(_) => ("BadRequest", Value::Null),
        ApplyError::Invalid { causes, .. } => {
            let causes: Vec<Value> =
                causes.iter().map(|(r, m, f)| json!({"reason": r, "message": m, "field": f})).collect();
            ("Invalid", json!({"group": "meta.k8s.io", "kind": "PatchOptions", "causes": causes}))
        }
        ApplyError::Internal(m) => ("InternalError", json!({"causes": [{"message": m}]})),
    };
    let message = match err {
        ApplyError::Internal(m) => format!("Internal error occurred: {m}"),
        other => other.to_string(),
    };
    let mut status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": err.status_code(),
    });
    if !details.is_null() {
        status["details"] = details;
    }
    status
}

// ---------------------------------------------------------------------------------------
// Request checks.

/// kube's `ValidatePatchOptions` for the parts apply cares about: apply needs a
/// `fieldManager`, `force` is for apply only, and a field manager is at most 128 bytes
/// of printable characters. Errors are 422s against `PatchOptions.meta.k8s.io`.
pub fn validate_patch_options(is_apply: bool, field_manager: Option<&str>, force_given: bool) -> Result<()> {
    let fm = field_manager.unwrap_or("");
    let mut errs: Vec<(Cause, String)> = Vec::new();
    if !is_apply && force_given {
        let m = "Forbidden: may not be specified for non-apply patch".to_string();
        errs.push((("FieldValueForbidden", m.clone(), "force".into()), format!("force: {m}")));
    }
    if is_apply && fm.is_empty() {
        let m = "Required value: is required for apply patch".to_string();
        errs.push((("FieldValueRequired", m.clone(), "fieldManager".into()), format!("fieldManager: {m}")));
    }
    if fm.len() > FIELD_MANAGER_MAX_BYTES {
        let m = format!("Too long: may not be more than {FIELD_MANAGER_MAX_BYTES} bytes");
        errs.push((("FieldValueTooLong", m.clone(), "fieldManager".into()), format!("fieldManager: {m}")));
    }
    for (i, c) in fm.char_indices() {
        if c.is_control() {
            let m = format!("Invalid value: {:?}: invalid character U+{:04X} (at position {i})", fm, c as u32);
            errs.push((("FieldValueInvalid", m.clone(), "fieldManager".into()), format!("fieldManager: {m}")));
        }
    }
    if errs.is_empty() {
        return Ok(());
    }
    let summary = if errs.len() == 1 {
        errs[0].1.clone()
    } else {
        format!("[{}]", errs.iter().map(|e| e.1.as_str()).collect::<Vec<_>>().join(", "))
    };
    Err(ApplyError::Invalid {
        message: format!("PatchOptions.meta.k8s.io \"\" is invalid: {summary}"),
        causes: errs.into_iter().map(|e| e.0).collect(),
    })
}

/// Decodes an `application/apply-patch+yaml` body: YAML, of which JSON is a subset.
/// The error text is kube's (`error decoding YAML: …`).
pub fn parse_apply_body(body: &[u8]) -> Result<Value, String> {
    let v: Value = serde_yaml_ng::from_slice(body).map_err(|e| format!("error decoding YAML: {e}"))?;
    match v {
        Value::Object(_) => Ok(v),
        Value::Null => Ok(Value::Object(Map::new())),
        _ => Err("error decoding YAML: the apply configuration is not a YAML or JSON object".into()),
    }
}

/// Checks an apply configuration against the request: its `apiVersion` and `kind` are the
/// resource's, its `metadata.name` the URL's, and it carries no `managedFields`.
pub fn validate_apply_body(body: &Value, api_version: &str, kind: &str, name: &str) -> Result<()> {
    let Value::Object(_) = body else {
        return Err(ApplyError::BadRequest("the apply configuration is not an object".into()));
    };
    let got_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if got_version != api_version {
        return Err(ApplyError::BadRequest(format!(
            "Incorrect version specified in apply patch. Specified patch version: {got_version}, expected: {api_version}"
        )));
    }
    let got_kind = body.get("kind").and_then(Value::as_str).unwrap_or("");
    if got_kind != kind {
        return Err(ApplyError::BadRequest(format!(
            "the kind of the object ({got_kind}) does not match the kind of the resource ({kind})"
        )));
    }
    let got_name = body.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    if got_name != name {
        return Err(ApplyError::BadRequest(format!(
            "the name of the object ({got_name}) does not match the name on the URL ({name})"
        )));
    }
    if body.pointer("/metadata/managedFields").is_some_and(|v| !v.is_null()) {
        return Err(ApplyError::BadRequest("metadata.managedFields must be nil".into()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Apply and update.

/// kube's RFC 3339 timestamp, seconds, UTC.
pub fn format_time(now: SystemTime) -> String {
    humantime::format_rfc3339_seconds(now).to_string()
}

/// The fields nobody owns (kube's `stripMetaManager`): identity and server-set metadata.
fn strip_set() -> FieldSet {
    let mut s = FieldSet::new();
    for p in [&["apiVersion"][..], &["kind"], &["metadata"]] {
        s.insert(&Path::fields(p).0);
    }
    for f in ["name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation", "managedFields", "resourceVersion"] {
        s.insert(&Path::fields(&["metadata", f]).0);
    }
    s
}

fn without_managed_fields(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    o
}

/// The configuration without `null` values: kube's typed objects drop them, so a
/// `field: null` in a configuration means "not set" (and, if this applier set it last
/// time, removed).
fn drop_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), drop_nulls(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(drop_nulls).collect()),
        other => other.clone(),
    }
}

fn gvk(group: &str, api_version: &str, kind: &str) -> String {
    let version = api_version.rsplit('/').next().unwrap_or(api_version);
    format!("{group}/{version}, Kind={kind}")
}

/// Server-side apply of `config` (an object of `group`/`kind`, already checked with
/// [`validate_apply_body`]) by `manager` onto `live` (`None`: the apply creates the
/// object). Returns the new object with its `metadata.managedFields`.
///
/// Re-applying the same configuration returns `live` unchanged (kube keeps even the
/// timestamps, so the write is a no-op). Conflicts — fields another manager owns that
/// this apply would change — fail with [`ApplyError::Conflicts`] unless `force`, which
/// takes them over.
///
/// ```
/// # use serde_json::json;
/// # use skiff_apiserver::apply::apply;
/// let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
/// let out = apply(None, &cm, "me", false, "", "ConfigMap", std::time::UNIX_EPOCH).unwrap();
/// assert_eq!(out["metadata"]["managedFields"][0]["fieldsV1"], json!({"f:data": {"f:a": {}}}));
/// ```
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    group: &str,
    kind: &str,
    now: SystemTime,
) -> Result<Value> {
    if !config.is_object() {
        return Err(ApplyError::BadRequest("the apply configuration is not an object".into()));
    }
    if config.pointer("/metadata/managedFields").is_some_and(|v| !v.is_null()) {
        return Err(ApplyError::BadRequest("metadata.managedFields must be nil".into()));
    }
    let api_version = config.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
    let ty = schema::root(group, kind);
    let typed_err = |e: String| ApplyError::Internal(format!("failed to create typed patch object ({}): {e}", gvk(group, &api_version, kind)));

    let mut config = drop_nulls(config);
    // The strategy puts back what the main resource may not change (`status`): the
    // applier neither sets nor owns it.
    if let Some(m) = config.as_object_mut() {
        for f in schema::reset_fields(group, kind, "") {
            m.remove(*f);
        }
    }
    let live_obj = live.map(without_managed_fields).unwrap_or_else(|| Value::Object(Map::new()));
    let old_entries = live.map(decode_managed_fields).unwrap_or_default();
    let mut entries = old_entries.clone();

    let applied = typed::to_field_set(&config, ty).map_err(typed_err)?;
    let mut merged = typed::merge(Some(&live_obj), &config, &typed::root_schema(ty), &mut Vec::new()).map_err(typed_err)?;
    let mut me = ManagedFieldsEntry {
        manager: manager.to_string(),
        operation: OPERATION_APPLY.into(),
        api_version,
        time: Some(format_time(now)),
        subresource: String::new(),
        fields: applied,
    };
    let last = entries.iter().position(|e| e.same_manager(&me)).map(|i| entries.remove(i));
    if let Some(last) = last.filter(|l| !l.fields.is_empty()) {
        let managed = entries.iter().fold(me.fields.clone(), |acc, e| acc.union(&e.fields));
        typed::prune(&mut merged, ty, &last.fields, &managed);
    }

    let cmp = typed::compare(&live_obj, &merged, ty);
    let changed = cmp.modified.union(&cmp.added);
    let mut conflicts: Vec<Conflict> = Vec::new();
    for e in &entries {
        for p in e.fields.intersection(&changed).paths() {
            conflicts.push(Conflict { manager: e.manager.clone(), described: e.describe(), field: p.to_string(), identifier: e.identifier() });
        }
    }
    if !force && !conflicts.is_empty() {
        // Stable: managers by identifier, each manager's paths in set order.
        conflicts.sort_by(|a, b| a.identifier.cmp(&b.identifier));
        return Err(ApplyError::Conflicts(conflicts));
    }
    for e in &mut entries {
        e.fields = e.fields.difference(&changed).difference(&cmp.removed);
    }
    me.fields = me.fields.difference(&strip_set());
    entries.push(me);
    entries.retain(|e| !e.fields.is_empty());

    if let Some(live) = live {
        if json_eq(&merged, &live_obj) && same_ownership(&old_entries, &entries) {
            return Ok(live.clone());
        }
    }
    encode_managed_fields(&mut merged, entries);
    Ok(merged)
}

/// Whether two managedFields lists record the same ownership, timestamps aside (kube's
/// `IgnoreManagedFieldsTimestampsTransformer`).
fn same_ownership(a: &[ManagedFieldsEntry], b: &[ManagedFieldsEntry]) -> bool {
    let key = |e: &ManagedFieldsEntry| (e.identifier(), e.api_version.clone());
    a.len() == b.len()
        && a.iter().all(|x| b.iter().any(|y| key(x) == key(y) && x.fields == y.fields))
}

/// The managedFields of a non-apply write (create, update, any non-apply patch; also
/// writes to a subresource), as kube's field manager records them: `new` is the object
/// about to be stored, `old` the stored one (`None` on create). `manager` (already
/// defaulted by the caller, e.g. `kubectl-edit` or from the user agent) gains the fields
/// the write adds or changes; every manager loses the fields it changed or removed;
/// empty entries go. `operation` is `Update` (anything else is recorded as given).
///
/// Which managedFields are the starting point follows kube: a subresource write uses
/// `old`'s; otherwise `new`'s when it sends a decodable non-empty list, none at all when
/// it sends `[]` or `[{}]` (a reset), else `old`'s.
#[allow(clippy::too_many_arguments)]
pub fn update_managed_fields(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    operation: &str,
    api_version: &str,
    subresource: Option<&str>,
    group: &str,
    kind: &str,
    now: SystemTime,
) -> Value {
    let ty = schema::root(group, kind);
    let subresource = subresource.unwrap_or("");
    let old_entries = old.map(decode_managed_fields).unwrap_or_default();
    let sent = new.pointer("/metadata/managedFields");
    let mut entries = if !subresource.is_empty() {
        old_entries
    } else if is_reset(sent) {
        Vec::new()
    } else {
        let from_new = managed::entries_of(sent);
        if from_new.is_empty() { old_entries } else { from_new }
    };

    let old_obj = old.map(without_managed_fields).unwrap_or_else(|| Value::Object(Map::new()));
    let mut out = without_managed_fields(new);
    let cmp = typed::compare(&old_obj, &out, ty);
    let reset = schema::reset_fields(group, kind, subresource);
    let changed = cmp.modified.union(&cmp.added).without_fields(reset);
    let removed = cmp.removed.without_fields(reset);
    for e in &mut entries {
        e.fields = e.fields.difference(&changed).difference(&removed);
    }
    let mine = changed.difference(&strip_set());
    if !mine.is_empty() {
        let me = ManagedFieldsEntry {
            manager: manager.to_string(),
            operation: operation.to_string(),
            api_version: api_version.to_string(),
            time: Some(format_time(now)),
            subresource: subresource.to_string(),
            fields: mine,
        };
        match entries.iter_mut().find(|e| e.same_manager(&me)) {
            Some(prev) => {
                prev.fields = prev.fields.union(&me.fields);
                prev.time = me.time;
                prev.api_version = me.api_version;
            }
            None => entries.push(me),
        }
    }
    encode_managed_fields(&mut out, entries);
    out
}

/// kube's `isResetManagedFields`: `managedFields: []` or `[{}]`.
fn is_reset(sent: Option<&Value>) -> bool {
    match sent.and_then(Value::as_array) {
        Some(a) if a.is_empty() => true,
        Some(a) if a.len() == 1 => a[0].as_object().is_some_and(|m| m.is_empty()),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
