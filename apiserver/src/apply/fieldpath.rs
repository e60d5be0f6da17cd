//! Field paths and sets of them, and their `FieldsV1` wire form — the vocabulary of
//! structured-merge-diff's `fieldpath` package, written for `serde_json::Value`.
//!
//! A [`FieldSet`] is a trie: at each node, `members` are paths that end here and
//! `children` are paths that continue. `FieldsV1` is that trie as JSON:
//!
//! ```text
//! {"f:spec":{"f:replicas":{},"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"a\"}":{".":{},"f:image":{}}}}}}}
//! ```
//!
//! `f:<field>` a field, `k:<json>` an associative-list item by its key fields (a JSON
//! object, keys sorted), `v:<json>` a set item by value, `i:<n>` a list item by index,
//! and `"."` inside a node that is itself a member as well as a parent.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// A JSON scalar (or any value) with a total order, for keys and set items.
/// Order: null < bool < number < string < array < object, numbers by value.
#[derive(Debug, Clone)]
pub struct OrdValue(pub Value);

fn rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => x.as_f64().unwrap_or(0.0).total_cmp(&y.as_f64().unwrap_or(0.0)),
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (x, y) in x.iter().zip(y) {
                let c = cmp_values(x, y);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            for ((kx, vx), (ky, vy)) in x.iter().zip(y) {
                let c = kx.cmp(ky).then_with(|| cmp_values(vx, vy));
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

impl PartialEq for OrdValue {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for OrdValue {}
impl PartialOrd for OrdValue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdValue {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_values(&self.0, &other.0)
    }
}

/// One step of a field path. The variant order is structured-merge-diff's order
/// (fields, then keys, then values, then indices), which is also the order in which
/// sets iterate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathElement {
    /// A field of a map/struct: `f:name`, shown `.name`.
    Field(String),
    /// An associative-list item by its key fields, sorted by name: `k:{"name":"a"}`,
    /// shown `[name="a"]`.
    Key(Vec<(String, OrdValue)>),
    /// A set item (list of scalars, list-type set): `v:"a"`, shown `[="a"]`.
    Value(OrdValue),
    /// A list item by position: `i:0`, shown `[0]`. Read, never produced here.
    Index(usize),
}

/// Go's `value.ToString` as structured-merge-diff prints values in paths: strings
/// quoted, other scalars as JSON.
fn value_to_string(v: &Value) -> String {
    match v {
        Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        Value::Array(items) => format!("[{}]", items.iter().map(value_to_string).collect::<Vec<_>>().join(",")),
        Value::Object(m) => {
            format!("{{{}}}", m.iter().map(|(k, v)| format!("{k}={}", value_to_string(v))).collect::<Vec<_>>().join(";"))
        }
        other => other.to_string(),
    }
}

impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={}", value_to_string(&v.0))).collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={}]", value_to_string(&v.0)),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

impl PathElement {
    /// The `FieldsV1` key of this element (`f:…`, `k:…`, `v:…`, `i:…`).
    pub fn to_fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                let obj: Map<String, Value> = fields.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect();
                format!("k:{}", Value::Object(obj))
            }
            PathElement::Value(v) => format!("v:{}", v.0),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a `FieldsV1` key; `None` for anything else (including `"."`).
    pub fn from_fields_v1_key(key: &str) -> Option<PathElement> {
        let (prefix, rest) = (key.get(..2)?, key.get(2..)?);
        match prefix {
            "f:" => Some(PathElement::Field(rest.to_string())),
            "k:" => match serde_json::from_str::<Value>(rest).ok()? {
                Value::Object(m) => Some(PathElement::Key(m.into_iter().map(|(k, v)| (k, OrdValue(v))).collect())),
                _ => None,
            },
            "v:" => serde_json::from_str::<Value>(rest).ok().map(|v| PathElement::Value(OrdValue(v))),
            "i:" => rest.parse().ok().map(PathElement::Index),
            _ => None,
        }
    }
}

/// A field path, displayed as kube prints it in conflicts: `.spec.replicas`,
/// `.spec.template.spec.containers[name="nginx"].image`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Path(pub Vec<PathElement>);

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for pe in &self.0 {
            write!(f, "{pe}")?;
        }
        Ok(())
    }
}

impl Path {
    /// A path of plain field names: `Path::fields(&["spec", "replicas"])`.
    pub fn fields(names: &[&str]) -> Path {
        Path(names.iter().map(|n| PathElement::Field(n.to_string())).collect())
    }
}

/// A set of field paths (structured-merge-diff's `fieldpath.Set`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds `path` (a no-op for the empty path: the root is never a member).
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether `path` is a member.
    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// Whether `pe` is a member here or the start of a longer member.
    pub(crate) fn touches(&self, pe: &PathElement) -> bool {
        self.members.contains(pe) || self.children.contains_key(pe)
    }

    /// Whether `pe` is a member here (a path ending at `pe`).
    pub(crate) fn has_member(&self, pe: &PathElement) -> bool {
        self.members.contains(pe)
    }

    /// The paths below `pe` (structured-merge-diff's `WithPrefix`).
    pub(crate) fn child(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.children.get(pe)
    }

    /// Paths in either set.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    /// Paths in `self` but not in `other` (exact paths: a member of `other` does not
    /// take away the paths below it).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            let rest = match other.children.get(pe) {
                Some(o) => child.difference(o),
                None => child.clone(),
            };
            if !rest.is_empty() {
                children.insert(pe.clone(), rest);
            }
        }
        FieldSet { members, children }
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            if let Some(o) = other.children.get(pe) {
                let both = child.intersection(o);
                if !both.is_empty() {
                    children.insert(pe.clone(), both);
                }
            }
        }
        FieldSet { members, children }
    }

    /// This set without the given top-level fields and everything below them.
    pub fn without_fields(&self, names: &[&str]) -> FieldSet {
        let mut out = self.clone();
        for n in names {
            let pe = PathElement::Field(n.to_string());
            out.members.remove(&pe);
            out.children.remove(&pe);
        }
        out
    }

    /// Every member path, in structured-merge-diff's iteration order: at each level the
    /// members first (sorted), then the paths below each child (sorted).
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Path>) {
        for pe in &self.members {
            let mut p = prefix.clone();
            p.push(pe.clone());
            out.push(Path(p));
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The `FieldsV1` JSON of this set.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.emit(false))
    }

    fn emit(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if include_self && !self.is_empty() {
            out.insert(".".into(), Value::Object(Map::new()));
        }
        for pe in &self.members {
            if !self.children.contains_key(pe) {
                out.insert(pe.to_fields_v1_key(), Value::Object(Map::new()));
            }
        }
        for (pe, child) in &self.children {
            out.insert(pe.to_fields_v1_key(), Value::Object(child.emit(self.members.contains(pe))));
        }
        out
    }

    /// Parses `FieldsV1` JSON. Errors name the offending key.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, String> {
        let Value::Object(m) = v else {
            return Err("FieldsV1 is not a JSON object".into());
        };
        let mut set = FieldSet::new();
        for (key, child) in m {
            if key == "." {
                continue;
            }
            let pe = PathElement::from_fields_v1_key(key).ok_or_else(|| format!("unknown FieldsV1 key {key:?}"))?;
            let Value::Object(cm) = child else {
                return Err(format!("FieldsV1 value of {key:?} is not a JSON object"));
            };
            let is_member = cm.is_empty() || cm.contains_key(".");
            let sub = FieldSet::from_fields_v1(child)?;
            if is_member {
                set.members.insert(pe.clone());
            }
            if !sub.is_empty() {
                set.children.insert(pe, sub);
            }
        }
        Ok(set)
    }
}
