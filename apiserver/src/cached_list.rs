//! Which lists the watch cache serves, and serving them (kube-apiserver's cacher rules).
//!
//! | request                                                   | served by                   |
//! |-----------------------------------------------------------|-----------------------------|
//! | `resourceVersion` unset (most recent)                     | etcd, a quorum read         |
//! | `resourceVersion=0` (any `limit`; `limit` is ignored)     | cache, as it is now         |
//! | `resourceVersion=N`, not-older-than (`resourceVersionMatch=NotOlderThan`, or no match and no `limit`) | cache, once it reaches N (≤ 3 s, else 504) |
//! | `resourceVersion=N` with `limit` (exact, or not-older-than with a limit) | etcd   |
//! | `resourceVersionMatch=Exact`, `continue`                  | etcd                        |
//!
//! A list without a resourceVersion stays a quorum read from etcd: this is kube-apiserver
//! with its `ConsistentListFromCache` feature off. The alternative (1.31+: read the store's
//! revision, wait for the cache to reach it) relies on etcd's progress notifications being
//! ordered after the events before them, which etcd only guarantees from 3.5.13 (kube turns
//! the feature off for older etcd); the reference etcd we run against is 3.4.23.
//!
//! A cache-served list answers at the cache's revision, which may be newer than asked for,
//! as kube does. Plain JSON lists ([`serve_json`], called by the server before the list
//! handler) are written from each object's response bytes, rendered once and kept in the
//! cache (a 10 000-pod list is then a copy of 44 MB, not 10 000 trees cloned, serialized
//! and freed); Table lists and lists inside the server (deletecollection, watches' initial
//! state) take [`list`], which clones the parsed objects. When the cache cannot be started (etcd unreachable) or its feeder has just
//! stopped, the list falls back to etcd.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::error::{ApiError, Result};
use crate::filter::Filter;
use crate::handlers::{AppState, ListResult, ReadPlan, LIST_RESPONSE_ITEMS_MAX};
use crate::objects;
use crate::resources::ResourceInfo;
use crate::watch_cache::{CacheListError, CachedObject, Snapshot, CACHE_WAIT_FRESH_TIMEOUT};

/// Where one list is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListSource {
    /// The watch cache, at a revision of at least `min_revision`.
    Cache { min_revision: i64 },
    Store,
}

/// Chooses the source of a list from its plan, its raw `resourceVersion` and `limit`.
pub fn list_source(plan: &ReadPlan, rv_param: &str, limit: i64) -> ListSource {
    match plan {
        // "0" means any state; unset means the most recent (a quorum read).
        ReadPlan::Latest if rv_param == "0" => ListSource::Cache { min_revision: 0 },
        ReadPlan::Latest => ListSource::Store,
        ReadPlan::NotOlderThan(rv) if limit == 0 => ListSource::Cache { min_revision: *rv },
        ReadPlan::NotOlderThan(_) | ReadPlan::Exact(_) | ReadPlan::Continue { .. } => ListSource::Store,
    }
}

/// Serves a list from `res`'s watch cache; `None` when the cache is not available (the
/// caller then reads etcd).
pub async fn list(state: &AppState, res: &ResourceInfo, namespace: Option<&str>, filter: &Filter, min_revision: i64) -> Result<Option<ListResult>> {
    let Some((snapshot, label)) = snapshot(state, res, namespace, min_revision).await? else { return Ok(None) };
    let items = items(res, &snapshot, filter)?;
    count(state, &label, snapshot.objects.len(), items.len());
    Ok(Some(ListResult { items, revision: snapshot.revision, continue_token: None, remaining: None }))
}

/// Serves a plain JSON list (`GET` of a collection, JSON encoding) from the watch cache
/// when [`list_source`] says so, writing each object's cached response bytes; `None` when
/// the request is not for the cache (or the cache is unavailable): the caller then goes
/// through [`crate::handlers::list`]. The body is byte for byte what that would write.
pub async fn serve_json(state: &AppState, req: &crate::handlers::Request) -> Result<Option<axum::response::Response>> {
    let route = &req.route;
    let res = &route.resource;
    if req.encoding != crate::routing::Encoding::Json || route.name.is_some() || route.subresource.is_some() {
        return Ok(None);
    }
    let param = |k: &str| req.query.get(k).map(String::as_str);
    let limit: i64 = match param("limit") {
        None | Some("") => 0,
        Some(s) => match s.parse::<i64>() {
            Ok(l) => l.max(0),
            // The regular path answers the 400.
            Err(_) => return Ok(None),
        },
    };
    let rv_param = param("resourceVersion").unwrap_or("");
    let plan = crate::handlers::read_plan(rv_param, param("resourceVersionMatch").unwrap_or(""), limit, param("continue").unwrap_or(""))?;
    let ListSource::Cache { min_revision } = list_source(&plan, rv_param, limit) else { return Ok(None) };
    let filter = Filter::parse(&res.plural, param("labelSelector"), param("fieldSelector"))?;
    let namespace = if res.namespaced { route.namespace.as_deref() } else { None };
    let Some((snapshot, cache_label)) = snapshot(state, res, namespace, min_revision).await? else { return Ok(None) };
    let body = json_list_body(res, &snapshot, &filter)?;
    let returned = body.1;
    count(state, &cache_label, snapshot.objects.len(), returned);
    let mut resp = axum::response::IntoResponse::into_response((axum::http::StatusCode::OK, body.0));
    resp.headers_mut().insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    Ok(Some(resp))
}

/// The cache's objects under `namespace` at `min_revision` or later, and the metric label
/// of the resource; `None` when the cache cannot serve.
async fn snapshot(state: &AppState, res: &ResourceInfo, namespace: Option<&str>, min_revision: i64) -> Result<Option<(Snapshot, String)>> {
    let cache = state.watch_caches.get_or_start(&state.storage, &res.key_prefix(), crate::watch::BOOKMARK_INTERVAL).await;
    let Some(cache) = cache else { return Ok(None) };
    let prefix = res.namespace_prefix(namespace);
    match cache.list(&prefix, min_revision, CACHE_WAIT_FRESH_TIMEOUT).await {
        Ok(s) => {
            let label = res.key_prefix();
            let label = label.strip_prefix("/registry").unwrap_or(&label).trim_end_matches('/').to_string();
            Ok(Some((s, label)))
        }
        Err(CacheListError::Closed) => Ok(None),
        Err(CacheListError::TooLargeResourceVersion { requested, current }) => Err(ApiError::too_large_resource_version(requested, current)),
    }
}

fn count(state: &AppState, label: &str, fetched: usize, returned: usize) {
    state.metrics.cache_list.with_label_values(&[label, ""]).inc();
    state.metrics.cache_list_fetched.with_label_values(&[label, ""]).inc_by(fetched as u64);
    state.metrics.cache_list_returned.with_label_values(&[label]).inc_by(returned as u64);
}

/// `{"apiVersion":…,"items":[…],"kind":"<Kind>List","metadata":{"resourceVersion":…}}`, keys
/// in the order `serde_json` writes a `Value` (sorted), and the number of items.
pub fn json_list_body(res: &ResourceInfo, snapshot: &Snapshot, filter: &Filter) -> Result<(Vec<u8>, usize)> {
    let api_version = res.api_version();
    let mut body = Vec::new();
    body.extend_from_slice(br#"{"apiVersion":"#);
    serde_json::to_writer(&mut body, &api_version).expect("a string serializes");
    body.extend_from_slice(br#","items":["#);
    let mut returned = 0usize;
    for cached in &snapshot.objects {
        let obj = stored_object(cached)?;
        if !filter.matches(obj) {
            continue;
        }
        if returned >= LIST_RESPONSE_ITEMS_MAX {
            return Err(ApiError::internal(format!("list of more than {LIST_RESPONSE_ITEMS_MAX} objects refused; use limit and continue")));
        }
        if returned > 0 {
            body.push(b',');
        }
        let rendered = cached.response_json.get_or_init(|| (api_version.clone(), render(res, cached, obj)));
        if rendered.0 == api_version {
            body.extend_from_slice(&rendered.1);
        } else {
            // Another version of the same stored kind (a multi-version CRD): render anew.
            body.extend_from_slice(&render(res, cached, obj));
        }
        returned += 1;
    }
    body.extend_from_slice(br#"],"kind":"#);
    serde_json::to_writer(&mut body, &format!("{}List", res.kind)).expect("a string serializes");
    body.extend_from_slice(br#","metadata":{"resourceVersion":"#);
    serde_json::to_writer(&mut body, &snapshot.revision.to_string()).expect("a string serializes");
    body.extend_from_slice(b"}}");
    Ok((body, returned))
}

fn render(res: &ResourceInfo, cached: &CachedObject, stored: &Value) -> bytes::Bytes {
    bytes::Bytes::from(serde_json::to_vec(&response_object(res, cached, stored)).expect("a Value always serializes"))
}

/// The snapshot's objects that match `filter`, as the API returns them.
pub fn items(res: &ResourceInfo, snapshot: &Snapshot, filter: &Filter) -> Result<Vec<Value>> {
    let mut items = Vec::new();
    for cached in &snapshot.objects {
        let obj = stored_object(cached)?;
        if !filter.matches(obj) {
            continue;
        }
        if items.len() >= LIST_RESPONSE_ITEMS_MAX {
            return Err(ApiError::internal(format!("list of more than {LIST_RESPONSE_ITEMS_MAX} objects refused; use limit and continue")));
        }
        items.push(response_object(res, cached, obj));
    }
    Ok(items)
}

fn stored_object(cached: &Arc<CachedObject>) -> Result<&Value> {
    cached.object.as_ref().map_err(|message| ApiError::internal(message.clone()))
}

/// What [`crate::handlers::decode_stored`] makes of the same stored bytes.
fn response_object(res: &ResourceInfo, cached: &CachedObject, stored: &Value) -> Value {
    let mut obj = stored.clone();
    obj["apiVersion"] = json!(res.api_version());
    obj["kind"] = json!(res.kind);
    objects::metadata_mut(&mut obj).insert("resourceVersion".into(), json!(cached.mod_revision.to_string()));
    obj
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::read_plan;
    use crate::storage::Kv;

    #[test]
    fn which_lists_the_cache_serves() {
        // (resourceVersion, resourceVersionMatch, limit) → source, as kube's cacher.
        let cases: &[(&str, &str, i64, ListSource)] = &[
            ("", "", 0, ListSource::Store),
            ("", "", 500, ListSource::Store),
            ("0", "", 0, ListSource::Cache { min_revision: 0 }),
            ("0", "", 500, ListSource::Cache { min_revision: 0 }),
            ("0", "NotOlderThan", 0, ListSource::Cache { min_revision: 0 }),
            ("12", "", 0, ListSource::Cache { min_revision: 12 }),
            ("12", "NotOlderThan", 0, ListSource::Cache { min_revision: 12 }),
            ("12", "NotOlderThan", 5, ListSource::Store),
            ("12", "", 5, ListSource::Store),
            ("12", "Exact", 0, ListSource::Store),
        ];
        for (rv, m, limit, want) in cases {
            let plan = read_plan(rv, m, *limit, "").unwrap();
            assert_eq!(list_source(&plan, rv, *limit), *want, "rv={rv:?} match={m:?} limit={limit}");
        }
    }

    fn pod(ns: &str, name: &str, app: &str, rev: i64) -> Arc<CachedObject> {
        let value = json!({"metadata": {"name": name, "namespace": ns, "labels": {"app": app}}, "spec": {"nodeName": "n1"}});
        let kv = Kv { key: format!("/registry/pods/{ns}/{name}"), value: serde_json::to_vec(&value).unwrap(), mod_revision: rev, create_revision: rev };
        Arc::new(CachedObject::from_kv(&kv))
    }

    #[test]
    fn selectors_and_response_fields() {
        let registry = crate::resources::Registry::builtin();
        let res = registry.lookup("", "v1", "pods").expect("pods are built in");
        let snapshot = Snapshot { objects: vec![pod("d", "a", "web", 3), pod("d", "b", "db", 4), pod("d", "c", "web", 5)], revision: 9 };
        let web = Filter::parse("pods", Some("app=web"), None).unwrap();
        let got = items(&res, &snapshot, &web).unwrap();
        let names: Vec<&str> = got.iter().map(objects::name).collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(got[1]["kind"], "Pod");
        assert_eq!(got[1]["apiVersion"], "v1");
        assert_eq!(got[1]["metadata"]["resourceVersion"], "5");
        let by_field = Filter::parse("pods", None, Some("metadata.name=b")).unwrap();
        assert_eq!(items(&res, &snapshot, &by_field).unwrap().len(), 1);
        let none = Filter::parse("pods", Some("app=web"), Some("spec.nodeName=n2")).unwrap();
        assert!(items(&res, &snapshot, &none).unwrap().is_empty());
        // The cached object is untouched by serving it.
        assert!(snapshot.objects[0].object.as_ref().unwrap().get("kind").is_none());
    }

    #[test]
    fn json_body_is_byte_for_byte_the_value_path() {
        let registry = crate::resources::Registry::builtin();
        let res = registry.lookup("", "v1", "pods").expect("pods are built in");
        let snapshot = Snapshot { objects: vec![pod("d", "a", "web", 3), pod("d", "b", "db", 4), pod("d", "c", "web", 5)], revision: 9 };
        for filter in [Filter::default(), Filter::parse("pods", Some("app=web"), None).unwrap(), Filter::parse("pods", Some("app=none"), None).unwrap()] {
            let items = items(&res, &snapshot, &filter).unwrap();
            let want = serde_json::to_vec(&json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "9"}, "items": items})).unwrap();
            // Twice: the second time from the rendered bytes kept in the cache.
            for _ in 0..2 {
                let (got, returned) = json_list_body(&res, &snapshot, &filter).unwrap();
                assert_eq!(String::from_utf8(got).unwrap(), String::from_utf8(want.clone()).unwrap());
                assert_eq!(returned, items.len());
            }
        }
        assert!(snapshot.objects[0].response_json.get().is_some());
    }

    #[test]
    fn a_stored_value_that_is_not_json_is_a_500_as_from_etcd() {
        let registry = crate::resources::Registry::builtin();
        let res = registry.lookup("", "v1", "pods").expect("pods are built in");
        let kv = Kv { key: "/registry/pods/d/x".into(), value: b"\x00garbage".to_vec(), mod_revision: 2, create_revision: 2 };
        let snapshot = Snapshot { objects: vec![Arc::new(CachedObject::from_kv(&kv))], revision: 2 };
        assert_eq!(items(&res, &snapshot, &Filter::default()).unwrap_err().code, 500);
        assert_eq!(json_list_body(&res, &snapshot, &Filter::default()).unwrap_err().code, 500);
    }
}
