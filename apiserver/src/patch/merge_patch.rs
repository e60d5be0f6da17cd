//! JSON Merge Patch (RFC 7386).

use serde_json::{Map, Value};

use super::json_eq;

/// Applies an RFC 7386 merge patch: an object patch merges member by member (`null`
/// deletes a member, objects merge recursively, anything else replaces); any other patch
/// value replaces the document whole. Never fails.
///
/// ```
/// # use serde_json::json;
/// # use skiff_apiserver::patch::apply_merge_patch;
/// let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
/// let out = apply_merge_patch(&doc, &json!({"metadata": {"labels": {"a": null, "c": "3"}}}));
/// assert_eq!(out, json!({"metadata": {"labels": {"b": "2", "c": "3"}}}));
/// ```
pub fn apply_merge_patch(doc: &Value, patch: &Value) -> Value {
    let Value::Object(patch) = patch else {
        return patch.clone();
    };
    let mut target = match doc {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    for (k, v) in patch {
        if v.is_null() {
            target.remove(k);
        } else {
            let merged = apply_merge_patch(target.get(k).unwrap_or(&Value::Null), v);
            target.insert(k.clone(), merged);
        }
    }
    Value::Object(target)
}

/// The merge patch that turns `original` into `modified`: members removed become `null`,
/// changed objects recurse, other changes carry the new value. Members of `modified`
/// whose value is `null` cannot be expressed (RFC 7386 has no way to set a null).
pub fn create_merge_patch(original: &Value, modified: &Value) -> Value {
    match (original, modified) {
        (Value::Object(o), Value::Object(m)) => {
            let mut patch = Map::new();
            for k in o.keys() {
                if !m.contains_key(k) {
                    patch.insert(k.clone(), Value::Null);
                }
            }
            for (k, mv) in m {
                match o.get(k) {
                    Some(ov) if json_eq(ov, mv) => {}
                    Some(ov @ Value::Object(_)) if mv.is_object() => {
                        patch.insert(k.clone(), create_merge_patch(ov, mv));
                    }
                    _ => {
                        patch.insert(k.clone(), mv.clone());
                    }
                }
            }
            Value::Object(patch)
        }
        _ => modified.clone(),
    }
}
