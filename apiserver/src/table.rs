//! `meta.k8s.io/v1` `Table` output: what `kubectl get` asks for with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`. Pure: objects in, JSON out.
//!
//! Columns and cells follow kube-apiserver's printers for each built-in kind (v1.32), always
//! in the wide form (priority-1 columns included; kubectl shows them with `-o wide`). Kinds
//! of built-in groups without a printer (CRDs, Roles, ClusterRoles, LimitRanges, …) get
//! kube's default `NAME, CREATED AT`; custom resources get `NAME, AGE`.
//!
//! Ages use kube's `HumanDuration` relative to a `now` the caller passes, so output is
//! deterministic in tests.
//!
//! ```
//! # use serde_json::json;
//! # use skiff_apiserver::table::{to_table, IncludeObject};
//! # use std::time::{Duration, UNIX_EPOCH};
//! let cm = json!({"metadata": {"name": "cfg", "creationTimestamp": "1970-01-01T00:00:00Z"}, "data": {"a": "1"}});
//! let now = UNIX_EPOCH + Duration::from_secs(3 * 60 + 2);
//! let table = to_table("", "ConfigMap", &[cm], &json!({"resourceVersion": "7"}), IncludeObject::None, now);
//! assert_eq!(table["rows"][0]["cells"], json!(["cfg", 1, "3m2s"]));
//! ```

mod cells;
mod columns;
mod time;

use std::time::SystemTime;

use serde_json::{json, Map, Value};

pub use columns::{CREATION_TIMESTAMP_DESCRIPTION, NAME_DESCRIPTION};
pub use time::{format_rfc3339, human_duration, parse_rfc3339};

use columns::Printer;

/// One `metav1.TableColumnDefinition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDefinition {
    /// Human-readable header, e.g. `Name`, `Cluster-IP` (kubectl upper-cases it).
    pub name: String,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean`, `date`.
    pub type_: String,
    /// OpenAPI format; `name` marks the column holding the object's name.
    pub format: String,
    pub description: String,
    /// 0 = shown by default, 1 = shown with `-o wide`.
    pub priority: i32,
}

impl ColumnDefinition {
    /// The JSON form (all five fields, as kube always sends them).
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// The `includeObject` query parameter: what each row carries besides its cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object.
    None,
    /// The object's metadata as a `PartialObjectMetadata` (kube's default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Parses the parameter (`None`, `Metadata`, `Object`; absent = `Metadata`). The error
    /// is kube's validation message, to answer 400 BadRequest with.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value {
            None | Some("") | Some("Metadata") => Ok(IncludeObject::Metadata),
            Some("None") => Ok(IncludeObject::None),
            Some("Object") => Ok(IncludeObject::Object),
            Some(other) => Err(format!(
                "includeObject: Unsupported value: \"{other}\": supported values: \"Metadata\", \"None\", \"Object\""
            )),
        }
    }
}

/// The columns kube-apiserver prints for objects of (`group`, `kind`) (`""` = core).
pub fn column_definitions(group: &str, kind: &str) -> Vec<ColumnDefinition> {
    columns::columns(Printer::for_kind(group, kind))
}

/// The cells of `obj`'s row, in [`column_definitions`] order, with ages relative to `now`.
pub fn row_cells(group: &str, kind: &str, obj: &Value, now: SystemTime) -> Vec<Value> {
    cells::cells(Printer::for_kind(group, kind), obj, time::system_time_nanos(now)).0
}

/// One `TableRow`: cells, row conditions (finished pods carry `Completed`), and the object
/// as `include` asks.
pub fn table_row(group: &str, kind: &str, obj: &Value, include: IncludeObject, now: SystemTime) -> Value {
    let (cells, conditions) = cells::cells(Printer::for_kind(group, kind), obj, time::system_time_nanos(now));
    let mut row = Map::new();
    row.insert("cells".into(), Value::Array(cells));
    if let Some(conditions) = conditions {
        row.insert("conditions".into(), conditions);
    }
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            row.insert("object".into(), partial_object_metadata(obj));
        }
        IncludeObject::Object => {
            row.insert("object".into(), obj.clone());
        }
    }
    Value::Object(row)
}

/// `meta.k8s.io/v1 PartialObjectMetadata` of an object: its metadata only.
pub fn partial_object_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A whole `meta.k8s.io/v1 Table` for a get (one object) or a list. `list_meta` becomes
/// the table's `metadata` (`resourceVersion`, `continue`, `remainingItemCount`); pass
/// `{}` for a single object.
pub fn to_table(
    group: &str,
    kind: &str,
    objects: &[Value],
    list_meta: &Value,
    include: IncludeObject,
    now: SystemTime,
) -> Value {
    let columns: Vec<Value> = column_definitions(group, kind).iter().map(ColumnDefinition::to_json).collect();
    let rows: Vec<Value> = objects.iter().map(|o| table_row(group, kind, o, include, now)).collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": if list_meta.is_object() { list_meta.clone() } else { json!({}) },
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests;
