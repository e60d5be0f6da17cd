//! Strategic merge patch, as kube-apiserver applies it to built-in kinds
//! (`k8s.io/apimachinery/pkg/util/strategicpatch`, `StrategicMergeMapPatch` with
//! `MergeParallelList` and `IgnoreUnmatchedNulls`).
//!
//! Like a JSON merge patch, except:
//! - lists tagged `merge` merge: lists of maps element by element, matched on the merge
//!   key (`containers` by `name`, `ports` by `containerPort`, …); lists of scalars as a
//!   set (`finalizers`). Other lists are replaced whole.
//! - directives: `$patch: replace|delete|merge` in a map or as a list element,
//!   `$deleteFromPrimitiveList/<field>`, `$setElementOrder/<field>`, `$retainKeys`.
//!
//! Element order follows kube: patch items keep the patch's order, items only on the
//! server keep theirs, and the two are interleaved by the server's order where both are
//! known — so a new element comes before the old ones unless `$setElementOrder` says
//! otherwise.

use serde_json::{Map, Value};

use super::schema::{field_meta, strategic_merge_patch_supported, PatchStrategy};
use super::{json_eq, PatchError, Result};

const DIRECTIVE_MARKER: &str = "$patch";
const DELETE_DIRECTIVE: &str = "delete";
const REPLACE_DIRECTIVE: &str = "replace";
const MERGE_DIRECTIVE: &str = "merge";
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder";

const ERR_BAD_PATCH_FORMAT_FOR_PRIMITIVE_LIST: &str = "invalid patch format of primitive list";
const ERR_BAD_PATCH_FORMAT_FOR_RETAIN_KEYS: &str = "invalid patch format of retainKeys";
const ERR_BAD_PATCH_FORMAT_FOR_SET_ELEMENT_ORDER_LIST: &str = "invalid patch format of setElementOrder list";
const ERR_NO_LIST_OF_LISTS: &str = "lists of lists are not supported";

/// Applies a strategic merge patch to `original`, an object of the built-in kind
/// (`group`, `kind`); returns the patched copy.
///
/// Errors: kinds without patch metadata (custom resources) →
/// [`PatchError::StrategicMergePatchUnsupported`] (415); a patch that is not a JSON object
/// or has malformed directives → [`PatchError::BadRequest`]; lists of lists →
/// [`PatchError::Unprocessable`]; other merge failures (an element lacking its merge key,
/// an unknown `$patch` value) → [`PatchError::Internal`], as kube does.
///
/// ```
/// # use serde_json::json;
/// # use skiff_apiserver::patch::apply_strategic_merge_patch;
/// let pod = json!({"spec": {"containers": [{"name": "app", "image": "nginx:1"}, {"name": "log", "image": "busybox"}]}});
/// let patch = json!({"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}});
/// let out = apply_strategic_merge_patch(&pod, &patch, "", "Pod").unwrap();
/// assert_eq!(out["spec"]["containers"][0], json!({"name": "app", "image": "nginx:2"}));
/// assert_eq!(out["spec"]["containers"][1]["name"], "log");
/// ```
pub fn apply_strategic_merge_patch(original: &Value, patch: &Value, group: &str, kind: &str) -> Result<Value> {
    if !strategic_merge_patch_supported(group, kind) {
        return Err(PatchError::StrategicMergePatchUnsupported);
    }
    let Value::Object(patch) = patch else {
        return Err(PatchError::BadRequest("invalid JSON document".into()));
    };
    let original = match original {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        _ => return Err(PatchError::BadRequest("invalid JSON document".into())),
    };
    merge_map(original, patch.clone(), Some(kind)).map(Value::Object)
}

fn internal(msg: impl Into<String>) -> PatchError {
    PatchError::Internal(msg.into())
}

fn bad_request(msg: &str) -> PatchError {
    PatchError::BadRequest(msg.to_string())
}

/// Go's `%v` of a decoded JSON value, for messages that embed one.
fn go_fmt(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_fmt).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys.iter().map(|k| format!("{k}:{}", go_fmt(&m[*k]))).collect();
            format!("map[{}]", parts.join(" "))
        }
        other => other.to_string(),
    }
}

fn err_no_merge_key(m: &Map<String, Value>, key: &str) -> PatchError {
    internal(format!("map: {} does not contain declared merge key: {key}", go_fmt(&Value::Object(m.clone()))))
}

fn err_bad_patch_type(t: &Value, m: &Map<String, Value>) -> PatchError {
    internal(format!("unknown patch type: {} in map: {}", go_fmt(t), go_fmt(&Value::Object(m.clone()))))
}

/// The kind of a JSON value as Go's reflection sees a decoded one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Map,
    Slice,
    String,
    Number,
    Bool,
    Null,
}

fn kind_of(v: &Value) -> Kind {
    match v {
        Value::Object(_) => Kind::Map,
        Value::Array(_) => Kind::Slice,
        Value::String(_) => Kind::String,
        Value::Number(_) => Kind::Number,
        Value::Bool(_) => Kind::Bool,
        Value::Null => Kind::Null,
    }
}

/// kube's `mergeMap`.
fn merge_map(mut original: Map<String, Value>, mut patch: Map<String, Value>, ty: Option<&str>) -> Result<Map<String, Value>> {
    if let Some(directive) = patch.get(DIRECTIVE_MARKER).cloned() {
        return match directive.as_str() {
            Some(REPLACE_DIRECTIVE) => {
                patch.remove(DIRECTIVE_MARKER);
                Ok(patch)
            }
            Some(DELETE_DIRECTIVE) => Ok(Map::new()),
            _ => Err(err_bad_patch_type(&directive, &patch)),
        };
    }
    apply_retain_keys_directive(&mut original, &mut patch)?;
    merge_set_element_order_lists(&mut original, &mut patch, ty)?;

    for (key, patch_value) in patch {
        let (key, is_delete_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
            (extract_key(&key, DELETE_FROM_PRIMITIVE_LIST_PREFIX, ERR_BAD_PATCH_FORMAT_FOR_PRIMITIVE_LIST)?, true)
        } else {
            (key, false)
        };
        if patch_value.is_null() {
            original.remove(&key);
            continue;
        }
        // Taken out in place (not removed) so the member keeps its position.
        let Some(original_value) = original.get_mut(&key).map(std::mem::take) else {
            if !is_delete_list {
                insert_cleaned(&mut original, key, patch_value);
            }
            continue;
        };
        if kind_of(&original_value) != kind_of(&patch_value) {
            if is_delete_list {
                original.insert(key, original_value);
            } else {
                insert_cleaned(&mut original, key, patch_value);
            }
            continue;
        }
        let meta = ty.and_then(|t| field_meta(t, &key));
        let strategy = meta.map_or(PatchStrategy::Default, |m| m.strategy);
        let sub_ty = meta.and_then(|m| m.ty);
        let merged = match (original_value, patch_value) {
            (Value::Object(o), Value::Object(p)) => {
                if strategy == PatchStrategy::Replace {
                    Value::Object(p)
                } else {
                    Value::Object(merge_map(o, p, sub_ty)?)
                }
            }
            (Value::Array(o), Value::Array(p)) => {
                if strategy == PatchStrategy::Merge || is_delete_list {
                    let merge_key = meta.and_then(|m| m.merge_key);
                    Value::Array(merge_slice(o, p, sub_ty, merge_key, is_delete_list, &key)?)
                } else {
                    Value::Array(p)
                }
            }
            (_, p) => match remove_directives(p) {
                Some(v) => v,
                None => {
                    original.remove(&key);
                    continue;
                }
            },
        };
        original.insert(key, merged);
    }
    Ok(original)
}

/// Sets `original[key]` to the patch value with nulls and directives stripped (kube's
/// `discardNullValuesFromPatch` + `removeDirectives`), or drops it if the value itself is
/// a directive.
fn insert_cleaned(original: &mut Map<String, Value>, key: String, mut value: Value) {
    discard_null_values(&mut value);
    match remove_directives(value) {
        Some(v) => {
            original.insert(key, v);
        }
        None => {
            original.remove(&key);
        }
    }
}

fn discard_null_values(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(discard_null_values);
        }
        Value::Array(a) => a.iter_mut().for_each(discard_null_values),
        _ => {}
    }
}

/// kube's `removeDirectives`: `None` when the value is a `$patch` map (not kept); maps
/// holding `$patch` inside lists disappear. Unlike kube, the other `$`-directives
/// (`$retainKeys`, `$setElementOrder/…`, `$deleteFromPrimitiveList/…`) are dropped too:
/// kube loses them when decoding into Go structs, and we store JSON as is.
fn remove_directives(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE_MARKER) {
                return None;
            }
            let cleaned = m
                .into_iter()
                .filter(|(k, _)| !is_directive_key(k))
                .filter_map(|(k, v)| Some((k, remove_directives(v)?)))
                .collect();
            Some(Value::Object(cleaned))
        }
        Value::Array(a) => Some(Value::Array(a.into_iter().filter_map(remove_directives).collect())),
        other => Some(other),
    }
}

fn is_directive_key(k: &str) -> bool {
    k == RETAIN_KEYS_DIRECTIVE
        || k.starts_with(&format!("{SET_ELEMENT_ORDER_PREFIX}/"))
        || k.starts_with(&format!("{DELETE_FROM_PRIMITIVE_LIST_PREFIX}/"))
}

/// `$deleteFromPrimitiveList/finalizers` → `finalizers`.
fn extract_key(s: &str, prefix: &str, err: &str) -> Result<String> {
    match s.split_once('/') {
        Some((p, rest)) if p == prefix => Ok(rest.to_string()),
        _ => Err(bad_request(err)),
    }
}

/// kube's `applyRetainKeysDirective`: keys of `original` missing from the `$retainKeys`
/// list are cleared; every non-null key of the patch must be in the list.
fn apply_retain_keys_directive(original: &mut Map<String, Value>, patch: &mut Map<String, Value>) -> Result<()> {
    let Some(retain) = patch.remove(RETAIN_KEYS_DIRECTIVE) else { return Ok(()) };
    let Value::Array(retain) = retain else {
        return Err(bad_request(ERR_BAD_PATCH_FORMAT_FOR_RETAIN_KEYS));
    };
    let retained = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX) || k.starts_with(SET_ELEMENT_ORDER_PREFIX) {
            continue;
        }
        if !retained(k) {
            return Err(bad_request(ERR_BAD_PATCH_FORMAT_FOR_RETAIN_KEYS));
        }
    }
    original.retain(|k, _| retained(k));
    Ok(())
}

/// kube's `mergePatchIntoOriginal`: merges each list that has a `$setElementOrder/<list>`
/// directive and orders the result by it.
fn merge_set_element_order_lists(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    ty: Option<&str>,
) -> Result<()> {
    let order_keys: Vec<String> = patch.keys().filter(|k| k.starts_with(SET_ELEMENT_ORDER_PREFIX)).cloned().collect();
    for order_key in order_keys {
        let order = patch.remove(&order_key).unwrap_or(Value::Null);
        let Value::Array(order) = order else {
            return Err(bad_request(ERR_BAD_PATCH_FORMAT_FOR_SET_ELEMENT_ORDER_LIST));
        };
        let key = extract_key(&order_key, SET_ELEMENT_ORDER_PREFIX, ERR_BAD_PATCH_FORMAT_FOR_SET_ELEMENT_ORDER_LIST)?;
        let original_list = match original.get(&key) {
            None => None,
            Some(Value::Array(a)) => Some(a.clone()),
            Some(_) => return Err(bad_request(ERR_BAD_PATCH_FORMAT_FOR_SET_ELEMENT_ORDER_LIST)),
        };
        let patch_list = match patch.get(&key) {
            None => None,
            Some(Value::Array(a)) => Some(a.clone()),
            Some(_) => return Err(bad_request(ERR_BAD_PATCH_FORMAT_FOR_SET_ELEMENT_ORDER_LIST)),
        };
        let meta = ty.and_then(|t| field_meta(t, &key));
        let merge_key = meta.and_then(|m| m.merge_key);
        validate_patch_with_set_order_list(patch_list.as_deref().unwrap_or(&[]), &order, merge_key)?;
        let merged = match (&original_list, &patch_list) {
            (Some(o), None) => o.clone(),
            (None, Some(p)) => match remove_directives(Value::Array(p.clone())) {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            },
            (Some(o), Some(p)) => {
                if meta.is_some_and(|m| m.strategy == PatchStrategy::Merge) {
                    merge_slice(o.clone(), p.clone(), meta.and_then(|m| m.ty), merge_key, false, &key)?
                } else {
                    p.clone()
                }
            }
            (None, None) => continue,
        };
        let (patch_items, server_only) = partition(&merged, &order, merge_key)?;
        let empty = Vec::new();
        let server_order = original_list.as_ref().unwrap_or(&empty);
        let element_kind = slice_element_kind(server_order, patch_list.as_deref().unwrap_or(&[]))?;
        let ordered = normalize_element_order(patch_items, server_only, &order, server_order, merge_key, element_kind)?;
        original.insert(key.clone(), Value::Array(ordered));
        patch.remove(&key);
    }
    Ok(())
}

/// kube's `validatePatchWithSetOrderList`: the patch list's (non-deleted) items appear in
/// the same relative order as in the `$setElementOrder` list.
fn validate_patch_with_set_order_list(patch_list: &[Value], order: &[Value], merge_key: Option<&str>) -> Result<()> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let non_delete: Vec<&Value> = match merge_key {
        Some(_) => patch_list.iter().filter(|v| !is_delete_element(v)).collect(),
        None => patch_list.iter().collect(),
    };
    let (mut pi, mut oi) = (0, 0);
    while pi < non_delete.len() && oi < order.len() {
        if non_delete[pi].as_object().is_some_and(|m| m.contains_key(DIRECTIVE_MARKER)) {
            pi += 1;
            continue;
        }
        if merge_key_value_equal(non_delete[pi], &order[oi], merge_key)? {
            pi += 1;
        }
        oi += 1;
    }
    if pi < non_delete.len() && oi >= order.len() {
        return Err(internal(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER_PREFIX} list:\n{}\n",
            go_fmt(&Value::Array(patch_list.to_vec())),
            go_fmt(&Value::Array(order.to_vec()))
        )));
    }
    Ok(())
}

fn merge_key_value_equal(left: &Value, right: &Value, merge_key: Option<&str>) -> Result<bool> {
    let Some(key) = merge_key else { return Ok(json_eq(left, right)) };
    let (Some(l), Some(r)) = (left.as_object(), right.as_object()) else {
        return Err(internal(format!("expected a map, but received a {}", go_type_name(left))));
    };
    let lv = l.get(key).ok_or_else(|| err_no_merge_key(l, key))?;
    let rv = r.get(key).ok_or_else(|| err_no_merge_key(r, key))?;
    Ok(json_eq(lv, rv))
}

fn go_type_name(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "map",
        Value::Array(_) => "slice",
        Value::String(_) => "string",
        Value::Number(_) => "float64",
        Value::Bool(_) => "bool",
        Value::Null => "nil",
    }
}

fn is_delete_element(v: &Value) -> bool {
    v.get(DIRECTIVE_MARKER).and_then(Value::as_str) == Some(DELETE_DIRECTIVE)
}

/// kube's `sliceElementType`: all elements of both lists share one kind, not a list.
fn slice_element_kind(a: &[Value], b: &[Value]) -> Result<Kind> {
    let mut kind = None;
    for v in a.iter().chain(b) {
        let k = kind_of(v);
        match kind {
            None if k == Kind::Slice => return Err(PatchError::Unprocessable(ERR_NO_LIST_OF_LISTS.into())),
            None => kind = Some(k),
            Some(prev) if prev != k => {
                return Err(internal(format!(
                    "list element types are not identical: [{} {}]",
                    go_fmt(&Value::Array(a.to_vec())),
                    go_fmt(&Value::Array(b.to_vec()))
                )))
            }
            Some(_) => {}
        }
    }
    kind.ok_or_else(|| internal("no elements in any of the given slices"))
}

/// kube's `mergeSlice`.
fn merge_slice(
    original: Vec<Value>,
    patch: Vec<Value>,
    ty: Option<&str>,
    merge_key: Option<&str>,
    is_delete_list: bool,
    field: &str,
) -> Result<Vec<Value>> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let kind = slice_element_kind(&original, &patch)?;
    let (server_order, patch, merged, merge_key) = if kind != Kind::Map {
        if is_delete_list {
            return Ok(original.into_iter().filter(|v| !patch.iter().any(|p| json_eq(p, v))).collect());
        }
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(&patch) {
            if !merged.iter().any(|m| json_eq(m, v)) {
                merged.push(v.clone());
            }
        }
        (original, patch, merged, None)
    } else {
        let Some(key) = merge_key else {
            return Err(internal(format!("cannot merge lists without merge key for {}", ty.unwrap_or(field))));
        };
        let (original, patch) = merge_slice_with_special_elements(original, patch, key)?;
        let merged = merge_slice_without_special_elements(original.clone(), &patch, key, ty)?;
        (original, patch, merged, Some(key))
    };
    let (patch_items, server_only) = partition(&merged, &patch, merge_key)?;
    normalize_element_order(patch_items, server_only, &patch, &server_order, merge_key, kind)
}

/// kube's `mergeSliceWithSpecialElements`: applies `$patch: delete` elements to the
/// original and `$patch: replace` (the patch's other elements become the list).
fn merge_slice_with_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut plain = Vec::new();
    let mut replace = false;
    for v in patch {
        let Value::Object(m) = &v else {
            return Err(internal(format!("expected a map, but received a {}", go_type_name(&v))));
        };
        match m.get(DIRECTIVE_MARKER) {
            None => plain.push(v),
            Some(d) => match d.as_str() {
                Some(DELETE_DIRECTIVE) => {
                    let target = m.get(merge_key).ok_or_else(|| err_no_merge_key(m, merge_key))?;
                    original.retain(|o| !o.get(merge_key).is_some_and(|ov| json_eq(ov, target)));
                }
                Some(REPLACE_DIRECTIVE) => replace = true,
                Some(MERGE_DIRECTIVE) => return Err(internal("merging lists cannot yet be specified in the patch")),
                _ => return Err(err_bad_patch_type(d, m)),
            },
        }
    }
    if replace {
        return Ok((plain, Vec::new()));
    }
    Ok((original, plain))
}

/// kube's `mergeSliceWithoutSpecialElements`: each patch element merges into the original
/// element with the same merge key value, or is appended. Appended elements are cleaned of
/// nulls and directives (kube would drop them when decoding into Go structs).
fn merge_slice_without_special_elements(
    mut original: Vec<Value>,
    patch: &[Value],
    merge_key: &str,
    ty: Option<&str>,
) -> Result<Vec<Value>> {
    for v in patch {
        let Value::Object(pm) = v else {
            return Err(internal(format!("expected a map, but received a {}", go_type_name(v))));
        };
        let key_value = pm.get(merge_key).ok_or_else(|| err_no_merge_key(pm, merge_key))?;
        let position = find_by_merge_key(&original, merge_key, key_value)?;
        match position {
            Some(i) => {
                let Value::Object(om) = std::mem::take(&mut original[i]) else { unreachable!("checked map") };
                original[i] = Value::Object(merge_map(om, pm.clone(), ty)?);
            }
            None => {
                let mut cleaned = v.clone();
                discard_null_values(&mut cleaned);
                if let Some(c) = remove_directives(cleaned) {
                    original.push(c);
                }
            }
        }
    }
    Ok(original)
}

fn find_by_merge_key(list: &[Value], merge_key: &str, value: &Value) -> Result<Option<usize>> {
    for (i, v) in list.iter().enumerate() {
        let Value::Object(m) = v else {
            return Err(internal(format!("value for key {i} is not a map")));
        };
        if m.get(merge_key).is_some_and(|mv| json_eq(mv, value)) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// Splits `merged` into (items present in `by`, items not), by merge key or by value.
fn partition(merged: &[Value], by: &[Value], merge_key: Option<&str>) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut present = Vec::new();
    let mut absent = Vec::new();
    for v in merged {
        let found = match merge_key {
            None => by.iter().any(|b| json_eq(b, v)),
            Some(key) => {
                let Value::Object(m) = v else {
                    return Err(internal(format!("expected a map, but received a {}", go_type_name(v))));
                };
                let kv = m.get(key).ok_or_else(|| err_no_merge_key(m, key))?;
                find_by_merge_key(by, key, kv)?.is_some()
            }
        };
        if found {
            present.push(v.clone());
        } else {
            absent.push(v.clone());
        }
    }
    Ok((present, absent))
}

/// Position of `v` in `list`, comparing merge key values for maps (an absent key compares
/// as null, like Go's nil) and whole values otherwise.
fn index_of(list: &[Value], v: &Value, merge_key: Option<&str>, kind: Kind) -> Option<usize> {
    let key_of = |x: &Value| -> Value {
        match (kind, merge_key) {
            (Kind::Map, Some(k)) => x.get(k).cloned().unwrap_or(Value::Null),
            _ => x.clone(),
        }
    };
    let wanted = key_of(v);
    list.iter().position(|x| json_eq(&key_of(x), &wanted))
}

/// kube's `normalizeElementOrder`: patch items in patch order, server-only items in server
/// order (deletion directives last), interleaved by `mergeSortedSlice`.
fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
    kind: Kind,
) -> Result<Vec<Value>> {
    let patch_items = normalize_slice_order(patch_items, patch_order, merge_key, kind)?;
    let server_only = normalize_slice_order(server_only, server_order, merge_key, kind)?;
    Ok(merge_sorted_slice(server_only, patch_items, server_order, merge_key, kind))
}

fn normalize_slice_order(to_sort: Vec<Value>, order: &[Value], merge_key: Option<&str>, kind: Kind) -> Result<Vec<Value>> {
    let (mut keep, deletes): (Vec<Value>, Vec<Value>) = if kind == Kind::Map {
        if let Some(key) = merge_key {
            for v in to_sort.iter().chain(order) {
                if let Value::Object(m) = v {
                    if !m.contains_key(key) {
                        return Err(err_no_merge_key(m, key));
                    }
                }
            }
        }
        to_sort.into_iter().partition(|v| !is_delete_element(v))
    } else {
        (to_sort, Vec::new())
    };
    // Stable sort by position in `order`; items not in it keep their place at the end.
    keep.sort_by_key(|v| index_of(order, v, merge_key, kind).unwrap_or(usize::MAX));
    keep.extend(deletes);
    Ok(keep)
}

/// kube's `mergeSortedSlice`: inserts each `left` (server-only) item before the first
/// `right` (patch) item that the server order puts after it; unknown order → right first.
fn merge_sorted_slice(left: Vec<Value>, right: Vec<Value>, server_order: &[Value], merge_key: Option<&str>, kind: Kind) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        match (left.peek(), right.peek()) {
            (None, None) => return out,
            (Some(_), None) => out.extend(left.by_ref()),
            (None, Some(_)) => out.extend(right.by_ref()),
            (Some(l), Some(r)) => {
                let li = index_of(server_order, l, merge_key, kind);
                let ri = index_of(server_order, r, merge_key, kind);
                let take_left = matches!((li, ri), (Some(li), Some(ri)) if li < ri);
                if take_left {
                    out.extend(left.next());
                } else {
                    out.extend(right.next());
                }
            }
        }
    }
}
