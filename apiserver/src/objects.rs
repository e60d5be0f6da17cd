//! Helpers over objects held as `serde_json::Value`: metadata access, timestamps, uids,
//! generated names and kube's human-readable ages. One code path serves every kind.

use std::time::{Duration, SystemTime};

use rand::Rng;
use serde_json::{json, Map, Value};

/// Characters kube uses for `generateName` suffixes (no vowels, no confusable digits).
const GENERATE_NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Length of a `generateName` suffix, as kube's `names.SimpleNameGenerator`.
pub const GENERATE_NAME_SUFFIX_LEN: usize = 5;
/// kube's limit on the generateName base (63 - 5 suffix characters... of 253 for most kinds).
const GENERATE_NAME_BASE_LEN_MAX: usize = 58;

pub fn metadata(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").map(Value::is_object).unwrap_or(false) {
        obj["metadata"] = json!({});
    }
    obj["metadata"].as_object_mut().expect("metadata was just made an object")
}

/// ObjectMeta's collections are `omitempty` in Go: kube-apiserver decodes every write into
/// its typed object and encodes it back, so an empty or null `labels`, `annotations`,
/// `finalizers`, `ownerReferences` or `managedFields` is never stored or returned (a
/// merge patch of `{"metadata":{"annotations":{}}}`, as `kubectl diff` sends, changes
/// nothing).
pub fn drop_empty_meta_collections(obj: &mut Value) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for key in ["labels", "annotations", "finalizers", "ownerReferences", "managedFields"] {
        let empty = match meta.get(key) {
            Some(Value::Null) => true,
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            _ => false,
        };
        if empty {
            meta.remove(key);
        }
    }
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    metadata(obj).and_then(|m| m.get(field)).and_then(Value::as_str)
}

pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

pub fn labels(obj: &Value) -> Map<String, Value> {
    metadata(obj).and_then(|m| m.get("labels")).and_then(Value::as_object).cloned().unwrap_or_default()
}

/// `metadata.finalizers`, empty when absent.
pub fn finalizers(obj: &Value) -> Vec<String> {
    metadata(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// RFC 3339 at second precision, as Kubernetes `metav1.Time` (`2024-01-02T03:04:05Z`).
pub fn format_time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

pub fn now_rfc3339() -> String {
    format_time(SystemTime::now())
}

pub fn parse_time(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(s).ok()
}

pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `base` plus a random 5-character suffix (the base cut so the result stays a valid name).
pub fn generate_name(base: &str) -> String {
    let mut out: String = base.chars().take(GENERATE_NAME_BASE_LEN_MAX).collect();
    let mut rng = rand::rng();
    for _ in 0..GENERATE_NAME_SUFFIX_LEN {
        out.push(GENERATE_NAME_ALPHABET[rng.random_range(0..GENERATE_NAME_ALPHABET.len())] as char);
    }
    out
}

/// kube's `duration.HumanDuration` (what `kubectl get` shows in AGE).
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{}h", hours / 24, h) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{}d", hours / 24 / 365, dy) };
    }
    format!("{}y", hours / 24 / 365)
}

/// AGE of an object: time since `metadata.creationTimestamp` (`<unknown>` without one).
pub fn age(obj: &Value) -> String {
    match meta_str(obj, "creationTimestamp").and_then(parse_time) {
        Some(t) => match SystemTime::now().duration_since(t) {
            Ok(d) => human_duration(d),
            Err(_) => "0s".into(),
        },
        None => "<unknown>".into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn empty_meta_collections_are_dropped_as_go_omitempty_does() {
        let mut obj = json!({"metadata": {"name": "a", "labels": {}, "annotations": null, "finalizers": [],
            "ownerReferences": [], "managedFields": [], "namespace": ""}, "data": {}});
        super::drop_empty_meta_collections(&mut obj);
        assert_eq!(obj, json!({"metadata": {"name": "a", "namespace": ""}, "data": {}}));
        let mut kept = json!({"metadata": {"labels": {"a": "b"}, "finalizers": ["x"]}});
        let before = kept.clone();
        super::drop_empty_meta_collections(&mut kept);
        assert_eq!(kept, before);
    }

    use super::*;

    #[test]
    fn human_durations_match_kube() {
        let cases = [(5, "5s"), (119, "119s"), (120, "2m"), (125, "2m5s"), (600, "10m"), (3 * 3600, "3h"), (3 * 3600 + 60, "3h1m"), (9 * 3600, "9h"), (50 * 3600, "2d2h"), (10 * 86400, "10d"), (3 * 365 * 86400, "3y")];
        for (secs, want) in cases {
            assert_eq!(human_duration(Duration::from_secs(secs)), want, "{secs}s");
        }
    }

    #[test]
    fn generated_names_have_a_five_char_suffix() {
        let n = generate_name("web-");
        assert_eq!(n.len(), 9);
        assert!(n.starts_with("web-"));
        assert!(n[4..].bytes().all(|b| GENERATE_NAME_ALPHABET.contains(&b)));
    }

    #[test]
    fn times_round_trip() {
        let t = parse_time("2024-01-02T03:04:05Z").unwrap();
        assert_eq!(format_time(t), "2024-01-02T03:04:05Z");
    }
}
