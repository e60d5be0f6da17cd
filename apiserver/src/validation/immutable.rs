//! What an update may not change (kube's `Validate*Update`, v1.32), compared after
//! defaulting against the stored object, with kube's messages:
//!
//! | kind | rule |
//! |---|---|
//! | Deployment, ReplicaSet, DaemonSet | `spec.selector`: `field is immutable` |
//! | StatefulSet | `spec` except replicas, ordinals, template, updateStrategy, revisionHistoryLimit, persistentVolumeClaimRetentionPolicy, minReadySeconds: Forbidden |
//! | Job | `spec.selector`, `spec.completions` (unless elastic Indexed), `spec.completionMode`, `spec.template` (except scheduling fields of a suspended Job that never started) |
//! | Pod | `spec` except container images, activeDeadlineSeconds (set or lowered), tolerations (additions), terminationGracePeriodSeconds (negative → 1), schedulingGates |
//! | PersistentVolumeClaim | `spec` except the storage request of a bound claim and a first volumeName; the request may not shrink |
//! | Secret, ConfigMap | data (and `immutable` itself) once `immutable: true`; a Secret's `type` always |
//!
//! Equality is kube's "semantic" one: an absent field, `null`, `[]` and `{}` are the same.
//! (A Service's `spec.clusterIP` is checked where it is allocated: [`crate::allocator`].)

use serde_json::{json, Value};

use super::{go_label_selector, FieldError, FIELD_IMMUTABLE_ERROR_MSG};

/// kube's list of what a Pod update may change, as its message words it.
pub const POD_UPDATABLE_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";
/// kube's StatefulSet update message.
pub const STATEFUL_SET_UPDATE_FORBIDDEN: &str = "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";
/// kube's PersistentVolumeClaim update message.
pub const PVC_SPEC_IMMUTABLE: &str = "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims";
const IMMUTABLE_WHEN_SET: &str = "field is immutable when `immutable` is set";

/// The immutability rules of `group/kind` (see the module table).
pub fn validate_immutable_fields(group: &str, kind: &str, new: &Value, old: &Value) -> Vec<FieldError> {
    let null = Value::Null;
    let (new_spec, old_spec) = (new.get("spec").unwrap_or(&null), old.get("spec").unwrap_or(&null));
    match (group, kind) {
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") => immutable_selector(new_spec, old_spec, "spec"),
        ("apps", "StatefulSet") => stateful_set_update(new_spec, old_spec),
        ("batch", "Job") => job_update(new, old),
        ("", "Pod") => pod_update(new_spec, old_spec),
        ("", "PersistentVolumeClaim") => pvc_update(new, old),
        ("", "Secret") => data_update(new, old, &["data"], true),
        ("", "ConfigMap") => data_update(new, old, &["data", "binaryData"], false),
        _ => Vec::new(),
    }
}

/// `v` without nulls and empty arrays or objects, deeply (Go's zero values).
fn normalized(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), normalized(v)))
                .filter(|(_, v)| !is_zero(v))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// kube's `apiequality.Semantic.DeepEqual` on JSON, as far as this server needs it.
fn semantic_eq(a: Option<&Value>, b: Option<&Value>) -> bool {
    let null = Value::Null;
    normalized(a.unwrap_or(&null)) == normalized(b.unwrap_or(&null))
}

fn immutable_selector(new_spec: &Value, old_spec: &Value, path: &str) -> Vec<FieldError> {
    if semantic_eq(new_spec.get("selector"), old_spec.get("selector")) {
        return Vec::new();
    }
    let selector = new_spec.get("selector").unwrap_or(&Value::Null);
    vec![FieldError::invalid(format!("{path}.selector"), go_label_selector(selector), FIELD_IMMUTABLE_ERROR_MSG)]
}

/// `new` with `keys` taken from `old` (kube's "munge the updatable fields, then compare").
fn with_fields_of(new: &Value, old: &Value, keys: &[&str]) -> Value {
    let mut out = new.clone();
    if let Value::Object(m) = &mut out {
        for k in keys {
            match old.get(*k) {
                Some(v) => {
                    m.insert((*k).to_string(), v.clone());
                }
                None => {
                    m.remove(*k);
                }
            }
        }
    }
    out
}

fn stateful_set_update(new_spec: &Value, old_spec: &Value) -> Vec<FieldError> {
    let updatable = ["replicas", "ordinals", "template", "updateStrategy", "revisionHistoryLimit", "persistentVolumeClaimRetentionPolicy", "minReadySeconds"];
    let munged = with_fields_of(new_spec, old_spec, &updatable);
    if semantic_eq(Some(&munged), Some(old_spec)) {
        return Vec::new();
    }
    vec![FieldError::forbidden("spec", STATEFUL_SET_UPDATE_FORBIDDEN)]
}

fn job_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let null = Value::Null;
    let (new_spec, old_spec) = (new.get("spec").unwrap_or(&null), old.get("spec").unwrap_or(&null));
    let mut errs = Vec::new();
    let indexed = new_spec.get("completionMode").and_then(Value::as_str) == Some("Indexed");
    // Elastic Indexed Jobs: completions may change together with parallelism.
    let elastic = indexed && new_spec.get("completions") == new_spec.get("parallelism");
    if !elastic && !semantic_eq(new_spec.get("completions"), old_spec.get("completions")) {
        let v = new_spec.get("completions").cloned().unwrap_or(Value::Null);
        errs.push(FieldError::invalid("spec.completions", v, FIELD_IMMUTABLE_ERROR_MSG));
    }
    errs.extend(immutable_selector(new_spec, old_spec, "spec"));
    let (new_t, old_t) = (new_spec.get("template").unwrap_or(&null), old_spec.get("template").unwrap_or(&null));
    // A suspended Job that never started may still change where its pods go.
    let suspended = new_spec.get("suspend").and_then(Value::as_bool) == Some(true);
    let never_started = old.pointer("/status/startTime").is_none_or(Value::is_null);
    let comparable = |t: &Value| -> Value {
        if !(suspended && never_started) {
            return t.clone();
        }
        let mut t = t.clone();
        if let Some(m) = t.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("labels");
            m.remove("annotations");
        }
        if let Some(s) = t.get_mut("spec").and_then(Value::as_object_mut) {
            for k in ["nodeSelector", "tolerations", "affinity", "schedulingGates"] {
                s.remove(k);
            }
        }
        t
    };
    if !semantic_eq(Some(&comparable(new_t)), Some(&comparable(old_t))) {
        errs.push(FieldError::invalid("spec.template", new_t.clone(), FIELD_IMMUTABLE_ERROR_MSG));
    }
    if !semantic_eq(new_spec.get("completionMode"), old_spec.get("completionMode")) {
        let v = new_spec.get("completionMode").cloned().unwrap_or(Value::Null);
        errs.push(FieldError::invalid("spec.completionMode", v, FIELD_IMMUTABLE_ERROR_MSG));
    }
    errs
}

fn list<'a>(spec: &'a Value, key: &str) -> &'a [Value] {
    spec.get(key).and_then(Value::as_array).map_or(&[][..], Vec::as_slice)
}

fn pod_update(new_spec: &Value, old_spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for key in ["containers", "initContainers"] {
        if list(new_spec, key).len() != list(old_spec, key).len() {
            errs.push(FieldError::forbidden(format!("spec.{key}"), "pod updates may not add or remove containers"));
            return errs;
        }
    }
    let deadline = |s: &Value| s.get("activeDeadlineSeconds").and_then(Value::as_i64);
    match (deadline(new_spec), deadline(old_spec)) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(FieldError::invalid("spec.activeDeadlineSeconds", n, format!("must be between 0 and {}, inclusive", i32::MAX)));
            return errs;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(FieldError::invalid("spec.activeDeadlineSeconds", n, "must be less than or equal to previous value"));
            return errs;
        }
        (None, Some(_)) => {
            errs.push(FieldError::invalid("spec.activeDeadlineSeconds", Value::Null, "must not update from a positive integer to nil value"))
        }
        _ => {}
    }
    // Tolerations: every old one must still be there (tolerationSeconds may change).
    let without_seconds = |t: &Value| {
        let mut t = normalized(t);
        if let Value::Object(m) = &mut t {
            m.remove("tolerationSeconds");
        }
        t
    };
    let new_tolerations: Vec<Value> = list(new_spec, "tolerations").iter().map(without_seconds).collect();
    if list(old_spec, "tolerations").iter().any(|o| !new_tolerations.contains(&without_seconds(o))) {
        errs.push(FieldError::forbidden("spec.tolerations", "existing toleration can not be modified except its tolerationSeconds"));
        return errs;
    }
    let mut munged = with_fields_of(new_spec, old_spec, &["activeDeadlineSeconds", "tolerations", "schedulingGates"]);
    for key in ["containers", "initContainers"] {
        let old_images: Vec<Value> = list(old_spec, key).iter().map(|c| c.get("image").cloned().unwrap_or(Value::Null)).collect();
        if let Some(cs) = munged.get_mut(key).and_then(Value::as_array_mut) {
            for (c, image) in cs.iter_mut().zip(old_images) {
                if let Value::Object(c) = c {
                    c.insert("image".into(), image);
                }
            }
        }
    }
    let grace = |s: &Value| s.get("terminationGracePeriodSeconds").and_then(Value::as_i64);
    if grace(old_spec).is_some_and(|o| o < 0) && grace(&munged) == Some(1) {
        munged = with_fields_of(&munged, old_spec, &["terminationGracePeriodSeconds"]);
    }
    if !semantic_eq(Some(&munged), Some(old_spec)) {
        errs.push(FieldError::forbidden("spec", format!("pod updates may not change fields other than {POD_UPDATABLE_FIELDS}")));
    }
    errs
}

/// A resource quantity (`1Gi`, `500M`, `1.5e3`, `250m`) in base units; `None` if malformed.
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let n: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * scale)
}

fn pvc_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let null = Value::Null;
    let (new_spec, old_spec) = (new.get("spec").unwrap_or(&null), old.get("spec").unwrap_or(&null));
    let mut errs = Vec::new();
    let mut munged = new_spec.clone();
    // The binder sets volumeName once.
    if old_spec.get("volumeName").and_then(Value::as_str).unwrap_or("").is_empty() {
        munged = with_fields_of(&munged, old_spec, &["volumeName"]);
    }
    let bound = new.pointer("/status/phase").and_then(Value::as_str) == Some("Bound");
    if bound {
        if let Some(requests) = munged.pointer_mut("/resources/requests").and_then(Value::as_object_mut) {
            match old_spec.pointer("/resources/requests/storage") {
                Some(s) => requests.insert("storage".into(), s.clone()),
                None => requests.remove("storage"),
            };
        }
        munged = with_fields_of(&munged, old_spec, &["volumeAttributesClassName"]);
    }
    if !semantic_eq(Some(&munged), Some(old_spec)) {
        errs.push(FieldError::forbidden("spec", PVC_SPEC_IMMUTABLE));
    }
    let size = |s: &Value| s.pointer("/resources/requests/storage").and_then(Value::as_str).and_then(parse_quantity);
    if let (Some(n), Some(o)) = (size(new_spec), size(old_spec)) {
        if n < o {
            errs.push(FieldError::forbidden("spec.resources.requests.storage", "field can not be less than previous value"));
        }
    }
    errs
}

/// Secrets and ConfigMaps: nothing in `data_keys` (nor `immutable` itself) changes once
/// the stored object is immutable; a Secret's `type` never changes.
fn data_update(new: &Value, old: &Value, data_keys: &[&str], is_secret: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if is_secret {
        let kind = |o: &Value| o.get("type").and_then(Value::as_str).unwrap_or("Opaque").to_string();
        if kind(new) != kind(old) {
            errs.push(FieldError::invalid("type", kind(new), FIELD_IMMUTABLE_ERROR_MSG));
        }
    }
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return errs;
    }
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden("immutable", IMMUTABLE_WHEN_SET));
    }
    for key in data_keys {
        let (n, o) = (effective_data(new, key, is_secret), effective_data(old, key, is_secret));
        if !semantic_eq(Some(&n), Some(&o)) {
            errs.push(FieldError::forbidden(*key, IMMUTABLE_WHEN_SET));
        }
    }
    errs
}

/// `obj[key]`; for a Secret's `data`, with `stringData` folded in (base64), as kube
/// folds it before validating.
fn effective_data(obj: &Value, key: &str, is_secret: bool) -> Value {
    let mut data = obj.get(key).cloned().unwrap_or(json!({}));
    if is_secret && key == "data" {
        if let (Value::Object(d), Some(Value::Object(s))) = (&mut data, obj.get("stringData")) {
            use base64::Engine;
            for (k, v) in s {
                let encoded = base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or(""));
                d.insert(k.clone(), Value::String(encoded));
            }
        }
    }
    data
}

#[cfg(test)]
mod tests;
