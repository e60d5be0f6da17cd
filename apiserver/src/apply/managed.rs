//! `metadata.managedFields`: decoding, the manager identity kube merges entries by,
//! kube's sort order, and encoding.

use std::cmp::Ordering;

use serde_json::{json, Map, Value};

use super::fieldpath::FieldSet;

/// `operation: Apply`.
pub const OPERATION_APPLY: &str = "Apply";
/// `operation: Update`.
pub const OPERATION_UPDATE: &str = "Update";

/// One `metadata.managedFields` entry, its `fieldsV1` decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedFieldsEntry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    /// RFC 3339, seconds (`2024-01-02T03:04:05Z`); `None` when absent.
    pub time: Option<String>,
    /// `""` for the main resource.
    pub subresource: String,
    pub fields: FieldSet,
}

impl ManagedFieldsEntry {
    /// Whether two entries belong to the same manager as kube counts them
    /// (`BuildManagerIdentifier`): same manager, operation and subresource, and for
    /// Update also the same apiVersion (an applier is one manager at any version).
    pub fn same_manager(&self, other: &ManagedFieldsEntry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == OPERATION_APPLY || self.api_version == other.api_version)
    }

    /// kube's manager identifier: the entry as JSON without fields, time and (for
    /// appliers) apiVersion, in Go's field order. Conflicts are grouped and sorted by it.
    pub fn identifier(&self) -> String {
        let mut s = format!("{{\"manager\":{}", Value::String(self.manager.clone()));
        s.push_str(&format!(",\"operation\":{}", Value::String(self.operation.clone())));
        if self.operation != OPERATION_APPLY && !self.api_version.is_empty() {
            s.push_str(&format!(",\"apiVersion\":{}", Value::String(self.api_version.clone())));
        }
        if !self.subresource.is_empty() {
            s.push_str(&format!(",\"subresource\":{}", Value::String(self.subresource.clone())));
        }
        s.push('}');
        s
    }

    /// How kube names this manager in conflict messages (`printManager`):
    /// `"kubectl"`, `"kubectl-edit" using apps/v1`, `"x" with subresource "status" using v1`.
    pub fn describe(&self) -> String {
        let mut s = Value::String(self.manager.clone()).to_string();
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {}", Value::String(self.subresource.clone()));
        }
        if self.operation == OPERATION_UPDATE {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }

    /// The entry as kube serializes it.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(m)
    }

    /// Parses one entry; `None` for an entry that is not FieldsV1 or lacks a manager
    /// identity (kube drops what it cannot decode and starts that object's tracking over).
    pub fn from_json(v: &Value) -> Option<ManagedFieldsEntry> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let ft = s("fieldsType");
        if !(ft.is_empty() || ft == "FieldsV1") {
            return None;
        }
        let fields = match v.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::new(),
            Some(f) => FieldSet::from_fields_v1(f).ok()?,
        };
        let operation = s("operation");
        if operation != OPERATION_APPLY && operation != OPERATION_UPDATE {
            return None;
        }
        Some(ManagedFieldsEntry {
            manager: s("manager"),
            operation,
            api_version: s("apiVersion"),
            time: v.get("time").and_then(Value::as_str).map(str::to_string),
            subresource: s("subresource"),
            fields,
        })
    }
}

/// The entries of `obj.metadata.managedFields` that decode.
pub fn decode_managed_fields(obj: &Value) -> Vec<ManagedFieldsEntry> {
    entries_of(obj.pointer("/metadata/managedFields"))
}

pub(crate) fn entries_of(v: Option<&Value>) -> Vec<ManagedFieldsEntry> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(ManagedFieldsEntry::from_json).collect()).unwrap_or_default()
}

/// kube's order (`sortEncodedManagedFields`): Apply before Update, then oldest first,
/// then by manager, apiVersion and subresource.
pub fn sort_entries(entries: &mut [ManagedFieldsEntry]) {
    entries.sort_by(|p, q| {
        if p.operation != q.operation {
            return if p.operation == OPERATION_APPLY { Ordering::Less } else { Ordering::Greater };
        }
        let (pt, qt) = (p.time.as_deref().unwrap_or(""), q.time.as_deref().unwrap_or(""));
        pt.cmp(qt)
            .then_with(|| p.manager.cmp(&q.manager))
            .then_with(|| p.api_version.cmp(&q.api_version))
            .then_with(|| p.subresource.cmp(&q.subresource))
    });
}

/// Writes `entries` (sorted, empty sets dropped) into `obj.metadata.managedFields`;
/// removes the field when none are left.
pub fn encode_managed_fields(obj: &mut Value, mut entries: Vec<ManagedFieldsEntry>) {
    entries.retain(|e| !e.fields.is_empty());
    sort_entries(&mut entries);
    let Some(root) = obj.as_object_mut() else { return };
    let meta = root.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    let Some(meta) = meta.as_object_mut() else { return };
    if entries.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(entries.iter().map(ManagedFieldsEntry::to_json).collect()));
    }
}
