//! JSON Patch (RFC 6902) with JSON Pointer (RFC 6901). Messages follow the json-patch
//! library kube-apiserver uses (`gopkg.in/evanphx/json-patch.v4`).

use serde_json::Value;

use super::{json_eq, PatchError, Result};

/// kube-apiserver's `maxJSONPatchOperations`: longer patches are refused with 413.
pub const JSON_PATCH_OPERATIONS_MAX: usize = 10_000;

fn failed(msg: String) -> PatchError {
    PatchError::JsonPatchFailed(msg)
}

/// Splits a JSON Pointer into its unescaped reference tokens (`~1` → `/`, then `~0` → `~`).
/// `""` is the whole document (no tokens). `None` for a pointer not starting with `/`.
pub fn decode_pointer(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    Some(rest.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect())
}

/// An array index token: decimal without leading zeros (RFC 6901).
fn parse_index(token: &str) -> Option<usize> {
    if token.is_empty() || (token.len() > 1 && token.starts_with('0')) || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok()
}

fn get<'a>(doc: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    tokens.iter().try_fold(doc, |cur, t| match cur {
        Value::Object(m) => m.get(t),
        Value::Array(a) => a.get(parse_index(t)?),
        _ => None,
    })
}

fn get_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    tokens.iter().try_fold(doc, |cur, t| match cur {
        Value::Object(m) => m.get_mut(t),
        Value::Array(a) => a.get_mut(parse_index(t)?),
        _ => None,
    })
}

/// Adds `value` at `tokens` (RFC 6902 `add`): replaces an object member, inserts into an
/// array (index `-` appends), replaces the whole document for the empty pointer.
fn add(doc: &mut Value, path: &str, tokens: &[String], value: Value) -> Result<()> {
    let Some((last, parent_tokens)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    let missing = || failed(format!("add operation does not apply: doc is missing path: \"{path}\": missing value"));
    match get_mut(doc, parent_tokens).ok_or_else(missing)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            match parse_index(last) {
                Some(i) if i <= a.len() => {
                    a.insert(i, value);
                    Ok(())
                }
                Some(i) => Err(failed(format!("Unable to access invalid index: {i}: invalid index referenced"))),
                None => Err(missing()),
            }
        }
        _ => Err(missing()),
    }
}

/// Removes and returns the value at `tokens`.
fn remove(doc: &mut Value, op: &str, path: &str, tokens: &[String]) -> Result<Value> {
    let missing = || failed(format!("{op} operation does not apply: doc is missing path: \"{path}\": missing value"));
    let Some((last, parent_tokens)) = tokens.split_last() else {
        return Err(missing());
    };
    match get_mut(doc, parent_tokens).ok_or_else(missing)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| failed(format!("Unable to remove nonexistent key: {last}: missing value"))),
        Value::Array(a) => match parse_index(last) {
            Some(i) if i < a.len() => Ok(a.remove(i)),
            Some(i) => Err(failed(format!("Unable to access invalid index: {i}: invalid index referenced"))),
            None => Err(missing()),
        },
        _ => Err(missing()),
    }
}

fn str_member<'a>(op: &'a serde_json::Map<String, Value>, key: &str) -> Result<&'a str> {
    match op.get(key) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(PatchError::BadRequest(format!("operation missing or invalid \"{key}\" string"))),
    }
}

fn pointer_tokens(pointer: &str) -> Result<Vec<String>> {
    decode_pointer(pointer).ok_or_else(|| failed(format!("JSON pointer must be empty or start with a \"/\": {pointer:?}")))
}

/// Applies an RFC 6902 JSON Patch document (an array of operations) to `doc`, returning
/// the patched copy; `doc` is untouched, and nothing is applied unless every operation is.
///
/// Errors: a body that is not an array of operation objects, or an operation lacking
/// `op`/`path`/`value`/`from` → [`PatchError::BadRequest`]; more than
/// [`JSON_PATCH_OPERATIONS_MAX`] operations → [`PatchError::TooManyOperations`]; an
/// operation that does not apply (missing path, index out of range, failed `test`) →
/// [`PatchError::JsonPatchFailed`].
pub fn apply_json_patch(doc: &Value, patch: &Value) -> Result<Value> {
    let Value::Array(ops) = patch else {
        return Err(PatchError::BadRequest(format!(
            "json: cannot unmarshal {} into Go value of type jsonpatch.Patch",
            json_type_name(patch)
        )));
    };
    if ops.len() > JSON_PATCH_OPERATIONS_MAX {
        return Err(PatchError::TooManyOperations { count: ops.len(), max: JSON_PATCH_OPERATIONS_MAX });
    }
    let mut out = doc.clone();
    for op in ops {
        let Value::Object(op) = op else {
            return Err(PatchError::BadRequest(format!(
                "json: cannot unmarshal {} into Go value of type jsonpatch.Operation",
                json_type_name(op)
            )));
        };
        apply_operation(&mut out, op)?;
    }
    Ok(out)
}

fn value_member(op: &serde_json::Map<String, Value>, kind: &str) -> Result<Value> {
    op.get("value").cloned().ok_or_else(|| failed(format!("{kind} operation does not apply: missing value")))
}

fn apply_operation(doc: &mut Value, op: &serde_json::Map<String, Value>) -> Result<()> {
    let kind = str_member(op, "op")?;
    let path = str_member(op, "path")?;
    let tokens = pointer_tokens(path)?;
    match kind {
        "add" => add(doc, path, &tokens, value_member(op, "add")?),
        "remove" => remove(doc, "remove", path, &tokens).map(drop),
        "replace" => {
            let value = value_member(op, "replace")?;
            if tokens.is_empty() {
                *doc = value;
                return Ok(());
            }
            let (last, parent_tokens) = tokens.split_last().expect("non-empty");
            let parent = get_mut(doc, parent_tokens)
                .ok_or_else(|| failed(format!("replace operation does not apply: doc is missing path: {path}: missing value")))?;
            let slot = match parent {
                Value::Object(m) => m.get_mut(last),
                Value::Array(a) => parse_index(last).and_then(|i| a.get_mut(i)),
                _ => None,
            }
            .ok_or_else(|| failed(format!("replace operation does not apply: doc is missing key: {path}: missing value")))?;
            *slot = value;
            Ok(())
        }
        "move" => {
            let from = str_member(op, "from")?;
            let from_tokens = pointer_tokens(from)?;
            if from_tokens.len() < tokens.len() && tokens.starts_with(&from_tokens) {
                return Err(failed(format!("move operation does not apply: {from} is a prefix of {path}")));
            }
            if from_tokens == tokens {
                return get(doc, &from_tokens).map(drop).ok_or_else(|| {
                    failed(format!("move operation does not apply: doc is missing from path: {from}: missing value"))
                });
            }
            let value = remove(doc, "move", from, &from_tokens).map_err(|_| {
                failed(format!("move operation does not apply: doc is missing from path: {from}: missing value"))
            })?;
            add(doc, path, &tokens, value)
        }
        "copy" => {
            let from = str_member(op, "from")?;
            let value = get(doc, &pointer_tokens(from)?).cloned().ok_or_else(|| {
                failed(format!("copy operation does not apply: doc is missing from path: {from}: missing value"))
            })?;
            add(doc, path, &tokens, value)
        }
        "test" => {
            let want = value_member(op, "test")?;
            match get(doc, &tokens) {
                Some(actual) if json_eq(actual, &want) => Ok(()),
                // A missing member tests equal to null, as the library does.
                None if want.is_null() && !tokens.is_empty() => Ok(()),
                _ => Err(failed(format!("testing value {path} failed: test failed"))),
            }
        }
        other => Err(failed(format!("Unexpected kind: {other}"))),
    }
}

/// Go's name for a JSON value's type in `json: cannot unmarshal X into …` messages.
fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
