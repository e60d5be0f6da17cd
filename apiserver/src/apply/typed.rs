//! Walks over an object with its schema: the field set a value sets ([`to_field_set`]),
//! merging an applied configuration into a live object ([`merge`]), what changed between
//! two objects ([`compare`]) and removing fields an applier gave up ([`prune`]).
//! structured-merge-diff's `typed` package, over `serde_json::Value`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::fieldpath::{FieldSet, Path, PathElement};
use super::schema::{self, FieldSchema, ListKind, Ty};
use crate::patch::json_eq;

/// The schema of the items of a (non-atomic) list field.
fn item_schema(list_field: &FieldSchema) -> FieldSchema {
    FieldSchema { ty: list_field.ty, list: ListKind::Atomic, atomic: list_field.atomic, non_pointer: false }
}

/// The schema of the top of an object (a struct, never atomic).
pub(crate) fn root_schema(ty: Ty) -> FieldSchema {
    FieldSchema { ty, list: ListKind::Atomic, atomic: false, non_pointer: false }
}

fn is_granular(v: &Value, fs: &FieldSchema) -> bool {
    match v {
        Value::Object(_) => !fs.atomic,
        Value::Array(_) => fs.list != ListKind::Atomic,
        _ => false,
    }
}

fn path_string(path: &[PathElement]) -> String {
    Path(path.to_vec()).to_string()
}

/// Items of a list with their path elements; `Err` names the first bad item, and the
/// first duplicate key when `allow_duplicates` is false.
fn index_items<'a>(
    items: &'a [Value],
    fs: &FieldSchema,
    path: &[PathElement],
    allow_duplicates: bool,
) -> Result<Vec<(PathElement, &'a Value)>, String> {
    let mut out: Vec<(PathElement, &Value)> = Vec::with_capacity(items.len());
    let mut seen = std::collections::BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        let pe = schema::list_item_element(&fs.list, item).map_err(|e| format!("{}: element {i}: {e}", path_string(path)))?;
        if !seen.insert(pe.clone()) {
            if allow_duplicates {
                continue;
            }
            return Err(format!("{}: duplicate entries for key {pe}", path_string(path)));
        }
        out.push((pe, item));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// The field set of a value (structured-merge-diff `ToFieldSet`).

/// The fields `v` (an object of type `ty`) sets: scalars, atomic lists and structs, empty
/// objects, set items and associative-list items (the item itself and its fields).
/// Non-empty granular objects are not members themselves, only their fields.
pub(crate) fn to_field_set(v: &Value, ty: Ty) -> Result<FieldSet, String> {
    let mut set = FieldSet::new();
    if let Value::Object(m) = v {
        fs_object(m, ty, &mut Vec::new(), &mut set)?;
    }
    Ok(set)
}

fn fs_object(m: &Map<String, Value>, ty: Ty, path: &mut Vec<PathElement>, set: &mut FieldSet) -> Result<(), String> {
    for (k, val) in m {
        let fs = schema::field(ty, k);
        path.push(PathElement::Field(k.clone()));
        fs_value(val, &fs, path, set)?;
        path.pop();
    }
    Ok(())
}

fn fs_value(val: &Value, fs: &FieldSchema, path: &mut Vec<PathElement>, set: &mut FieldSet) -> Result<(), String> {
    match val {
        Value::Object(m) if !fs.atomic && !m.is_empty() => fs_object(m, fs.ty, path, set),
        Value::Array(items) if fs.list != ListKind::Atomic => {
            let item_fs = item_schema(fs);
            for (pe, item) in index_items(items, fs, path, false)? {
                path.push(pe);
                fs_value(item, &item_fs, path, set)?;
                set.insert(path);
                path.pop();
            }
            Ok(())
        }
        _ => {
            set.insert(path);
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------
// Merge (structured-merge-diff `Merge`): the applied configuration wins.

/// `rhs` merged over `lhs`: granular objects field by field, set and associative lists
/// item by item, everything else replaced by `rhs`.
pub(crate) fn merge(lhs: Option<&Value>, rhs: &Value, fs: &FieldSchema, path: &mut Vec<PathElement>) -> Result<Value, String> {
    match (lhs, rhs) {
        (Some(Value::Object(l)), Value::Object(r)) if !fs.atomic => {
            let mut out = l.clone();
            for (k, rv) in r {
                let child = schema::field(fs.ty, k);
                path.push(PathElement::Field(k.clone()));
                let merged = merge(l.get(k), rv, &child, path)?;
                path.pop();
                out.insert(k.clone(), merged);
            }
            Ok(Value::Object(out))
        }
        (Some(Value::Array(l)), Value::Array(r)) if fs.list != ListKind::Atomic => merge_list(l, r, fs, path),
        (_, Value::Array(r)) if fs.list != ListKind::Atomic => {
            // Validate the keys of a list that lands on nothing.
            index_items(r, fs, path, false)?;
            Ok(rhs.clone())
        }
        _ => Ok(rhs.clone()),
    }
}

/// Merges two non-atomic lists. Order: items only on the left keep their place, items
/// on both sides follow the right's order, items only on the right come in the right's
/// order where they stand relative to the shared ones.
fn merge_list(l: &[Value], r: &[Value], fs: &FieldSchema, path: &mut Vec<PathElement>) -> Result<Value, String> {
    let rhs = index_items(r, fs, path, false)?;
    // A live list with bad or duplicate items is not ours to fix: the config replaces it.
    let Ok(lhs) = index_items(l, fs, path, true) else {
        return Ok(Value::Array(r.to_vec()));
    };
    let lhs_by: BTreeMap<&PathElement, &Value> = lhs.iter().map(|(pe, v)| (pe, *v)).collect();
    let rhs_by: BTreeMap<&PathElement, &Value> = rhs.iter().map(|(pe, v)| (pe, *v)).collect();
    let mut shared = rhs.iter().map(|(pe, _)| pe).filter(|pe| lhs_by.contains_key(pe));
    let mut next_shared = shared.next();
    let mut taken_from_rhs = std::collections::BTreeSet::new();
    let item_fs = item_schema(fs);
    let mut out = Vec::with_capacity(l.len().max(r.len()));
    let (mut li, mut ri) = (0, 0);
    while li < lhs.len() || ri < rhs.len() {
        if li < lhs.len() && ri < rhs.len() {
            let lpe = &lhs[li].0;
            if *lpe == rhs[ri].0 {
                taken_from_rhs.insert(lpe);
                path.push(lpe.clone());
                out.push(merge(Some(lhs[li].1), rhs[ri].1, &item_fs, path)?);
                path.pop();
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if rhs_by.contains_key(lpe) && next_shared.is_some_and(|n| n != lpe) {
                // A shared item, but not the next one in the right's order: it comes later.
                li += 1;
                continue;
            }
        }
        if li < lhs.len() {
            let lpe = &lhs[li].0;
            if !rhs_by.contains_key(lpe) {
                out.push(lhs[li].1.clone());
                li += 1;
                continue;
            }
            if taken_from_rhs.contains(lpe) {
                li += 1;
                continue;
            }
        }
        if ri < rhs.len() {
            let rpe = &rhs[ri].0;
            taken_from_rhs.insert(rpe);
            path.push(rpe.clone());
            out.push(merge(lhs_by.get(rpe).copied(), rhs[ri].1, &item_fs, path)?);
            path.pop();
            ri += 1;
            if next_shared == Some(rpe) {
                next_shared = shared.next();
            }
        }
    }
    Ok(Value::Array(out))
}

// ---------------------------------------------------------------------------------------
// Compare (structured-merge-diff `Compare`).

/// What changed from one object to another, as field sets.
#[derive(Debug, Default, Clone)]
pub(crate) struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

/// Compares two objects of type `ty`. Leaves (scalars, atomic values) land in
/// added/modified/removed; a granular object or list present on one side only lands
/// there itself too (that is where kube's `".": {}` in Update entries comes from).
/// A Go non-pointer struct missing on one side counts as empty there, as in a typed
/// object it always exists.
pub(crate) fn compare(lhs: &Value, rhs: &Value, ty: Ty) -> Comparison {
    let mut c = Comparison::default();
    cmp_node(Some(lhs), Some(rhs), &root_schema(ty), &mut Vec::new(), &mut c);
    c
}

fn cmp_node(l: Option<&Value>, r: Option<&Value>, fs: &FieldSchema, path: &mut Vec<PathElement>, c: &mut Comparison) {
    match (l, r) {
        (None, None) => {}
        (Some(l), Some(r)) => {
            let same_shape = matches!((l, r), (Value::Object(_), Value::Object(_)) | (Value::Array(_), Value::Array(_)));
            if same_shape && is_granular(l, fs) {
                cmp_children(Some(l), Some(r), fs, path, c);
            } else if !json_eq(l, r) {
                c.modified.insert(path);
            }
        }
        (None, Some(r)) => {
            if is_granular(r, fs) {
                cmp_children(None, Some(r), fs, path, c);
            }
            c.added.insert(path);
        }
        (Some(l), None) => {
            if is_granular(l, fs) {
                cmp_children(Some(l), None, fs, path, c);
            }
            c.removed.insert(path);
        }
    }
}

fn cmp_children(l: Option<&Value>, r: Option<&Value>, fs: &FieldSchema, path: &mut Vec<PathElement>, c: &mut Comparison) {
    let builtin = matches!(fs.ty, Ty::Builtin { .. });
    let empty_object = Value::Object(Map::new());
    let empty_array = Value::Array(Vec::new());
    // The zero value standing in for an always-present field missing on one side.
    let zero = |other: Option<&Value>| match other {
        Some(Value::Object(_)) => Some(&empty_object),
        Some(Value::Array(_)) => Some(&empty_array),
        _ => None,
    };
    match (l.or(r), l, r) {
        (Some(Value::Object(_)), _, _) => {
            let lm = l.and_then(Value::as_object);
            let rm = r.and_then(Value::as_object);
            let mut keys: Vec<&String> = lm.into_iter().chain(rm).flat_map(|m| m.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let child = schema::field(fs.ty, k);
                let mut lv = lm.and_then(|m| m.get(k));
                let mut rv = rm.and_then(|m| m.get(k));
                if builtin && child.non_pointer && lm.is_some() && rm.is_some() {
                    if lv.is_none() {
                        lv = zero(rv);
                    } else if rv.is_none() {
                        rv = zero(lv);
                    }
                }
                path.push(PathElement::Field(k.clone()));
                cmp_node(lv, rv, &child, path, c);
                path.pop();
            }
        }
        (Some(Value::Array(_)), _, _) => {
            let index = |v: Option<&Value>| -> Vec<(PathElement, Value)> {
                let items = v.and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
                index_items(items, fs, path, true)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(pe, v)| (pe, v.clone()))
                    .collect()
            };
            let li: BTreeMap<PathElement, Value> = index(l).into_iter().collect();
            let ri: BTreeMap<PathElement, Value> = index(r).into_iter().collect();
            let item_fs = item_schema(fs);
            let mut pes: Vec<&PathElement> = li.keys().chain(ri.keys()).collect();
            pes.sort();
            pes.dedup();
            for pe in pes {
                path.push(pe.clone());
                cmp_node(li.get(pe), ri.get(pe), &item_fs, path, c);
                path.pop();
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// Prune: drop what the applier owned last time, no longer applies, and nobody else owns.

/// Removes from `v` (an object of type `ty`) every field that `last` (the applier's
/// previous set) reaches and `managed` (every manager's set, the applier's new one
/// included) does not. A container emptied by the removal goes too.
pub(crate) fn prune(v: &mut Value, ty: Ty, last: &FieldSet, managed: &FieldSet) {
    prune_value(v, &root_schema(ty), last, managed);
}

fn prune_value(v: &mut Value, fs: &FieldSchema, last: &FieldSet, managed: &FieldSet) {
    static NONE: std::sync::OnceLock<FieldSet> = std::sync::OnceLock::new();
    let none = NONE.get_or_init(FieldSet::new);
    match v {
        Value::Object(m) if !fs.atomic => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let pe = PathElement::Field(k.clone());
                if !last.touches(&pe) {
                    continue;
                }
                if !managed.touches(&pe) {
                    m.remove(&k);
                    continue;
                }
                if let Some(last_child) = last.child(&pe) {
                    let child_fs = schema::field(fs.ty, &k);
                    let val = m.get_mut(&k).expect("key listed above");
                    let was_empty = is_empty_container(val);
                    prune_value(val, &child_fs, last_child, managed.child(&pe).unwrap_or(none));
                    if !was_empty && is_empty_container(val) && !managed.has_member(&pe) {
                        m.remove(&k);
                    }
                }
            }
        }
        Value::Array(items) if fs.list != ListKind::Atomic => {
            let item_fs = item_schema(fs);
            let old = std::mem::take(items);
            for mut item in old {
                let Ok(pe) = schema::list_item_element(&fs.list, &item) else {
                    items.push(item);
                    continue;
                };
                if last.touches(&pe) && !managed.touches(&pe) {
                    continue;
                }
                if let Some(last_child) = last.child(&pe) {
                    let before = item.clone();
                    prune_value(&mut item, &item_fs, last_child, managed.child(&pe).unwrap_or(none));
                    restore_keys(&mut item, &before, &fs.list);
                }
                items.push(item);
            }
        }
        _ => {}
    }
}

/// An item that stays (another manager owns part of it) keeps the fields that name it,
/// even when only the pruned applier owned them.
fn restore_keys(item: &mut Value, before: &Value, list: &ListKind) {
    let (ListKind::Map(keys), Some(after), Some(before)) = (list, item.as_object_mut(), before.as_object()) else {
        return;
    };
    for k in keys {
        if let (false, Some(v)) = (after.contains_key(k.name), before.get(k.name)) {
            after.insert(k.name.to_string(), v.clone());
        }
    }
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}
