//! Lists served from the apiserver's watch cache, over real HTTPS (`kubectl get --raw`), on
//! a skiff store and on the reference etcd.
//!
//! The proof that a list came from the cache and not the store is two counters read before
//! and after: the apiserver's `apiserver_cache_list_total` (kube's cacher metric) and the
//! store's own `etcd_mvcc_range_total` (every Range RPC it served; both skiff and etcd
//! export it on the client URL's `/metrics`). The apiserver's namespace finalizer lists
//! namespaces from etcd every 2 s in the background, so the store count is compared against
//! the number of lists, not against zero.

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::apiserver::Apiserver;
use crate::harness::Server;

/// Lists per batch; more than the background ranges a batch's duration can hold.
const LISTS_PER_BATCH: u64 = 10;
/// The cache's bounded wait for a resourceVersion it has not reached (kube's 3 s), plus slack.
const TOO_LARGE_RV_WAIT_MAX: Duration = Duration::from_secs(10);

const PODS: &str = "apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: web-1, labels: {app: web}}
  spec: {containers: [{name: c, image: nginx}]}
- apiVersion: v1
  kind: Pod
  metadata: {name: web-2, labels: {app: web}}
  spec: {containers: [{name: c, image: nginx}]}
- apiVersion: v1
  kind: Pod
  metadata: {name: db-1, labels: {app: db}}
  spec: {containers: [{name: c, image: postgres}]}
";

/// One counter of a Prometheus text page: the first sample of `name` whose labels contain
/// `labels` (0 when absent).
fn sample(page: &str, name: &str, labels: &str) -> anyhow::Result<u64> {
    for line in page.lines() {
        let Some(rest) = line.strip_prefix(name) else { continue };
        if !(rest.starts_with(' ') || rest.starts_with('{')) || !rest.contains(labels) {
            continue;
        }
        let value = rest.rsplit(' ').next().unwrap_or("");
        return value.parse::<f64>().map(|v| v as u64).with_context(|| format!("sample {line:?}"));
    }
    Ok(0)
}

/// The store's Range RPCs so far, from its `/metrics` over plain HTTP.
fn store_ranges(s: &Apiserver) -> anyhow::Result<u64> {
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", s.store.client_port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut page = String::new();
    tcp.read_to_string(&mut page)?;
    if !page.contains("etcd_mvcc_range_total") {
        bail!("store /metrics has no etcd_mvcc_range_total: {}", &page[..page.len().min(500)]);
    }
    sample(&page, "etcd_mvcc_range_total", "")
}

fn cache_lists(s: &Apiserver) -> anyhow::Result<u64> {
    sample(&s.ok(&["get", "--raw", "/metrics"])?, "apiserver_cache_list_total", "resource_prefix=\"/pods\"")
}

fn list(s: &Apiserver, query: &str) -> anyhow::Result<Value> {
    let raw = s.ok(&["get", "--raw", &format!("/api/v1/namespaces/default/pods{query}")])?;
    Ok(serde_json::from_str(&raw)?)
}

fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> =
        list["items"].as_array().into_iter().flatten().filter_map(|i| i["metadata"]["name"].as_str()).map(String::from).collect();
    names.sort();
    names
}

fn rv(list: &Value) -> anyhow::Result<i64> {
    list["metadata"]["resourceVersion"].as_str().context("list without resourceVersion")?.parse().context("resourceVersion")
}

/// (store ranges, cache lists) during `LISTS_PER_BATCH` lists with `query`.
fn batch(s: &Apiserver, query: &str) -> anyhow::Result<(u64, u64)> {
    let (ranges, lists) = (store_ranges(s)?, cache_lists(s)?);
    for _ in 0..LISTS_PER_BATCH {
        list(s, query)?;
    }
    Ok((store_ranges(s)? - ranges, cache_lists(s)? - lists))
}

fn scenario(kind: Server) -> anyhow::Result<()> {
    let s = Apiserver::start(kind)?;
    s.ok_with(&["apply", "--validate=false", "-f", "-"], Some(PODS))?;
    // The first cache-served list starts the pods cache (one initial list from the store).
    let first = list(&s, "?resourceVersion=0")?;
    assert_eq!(names(&first), ["db-1", "web-1", "web-2"]);

    // resourceVersion=0 lists come from the cache: the cache counter counts each, the
    // store's Range count moves only by the background namespace rescans.
    let (ranges, lists) = batch(&s, "?resourceVersion=0")?;
    assert_eq!(lists, LISTS_PER_BATCH, "every resourceVersion=0 list is served from the cache");
    assert!(ranges < LISTS_PER_BATCH / 2, "{ranges} store ranges during {LISTS_PER_BATCH} cache-served lists");
    // Lists without a resourceVersion are quorum reads from the store, not the cache.
    let (ranges, lists) = batch(&s, "")?;
    assert_eq!(lists, 0, "a most-recent list must not be served from the cache");
    assert!(ranges >= LISTS_PER_BATCH, "{ranges} store ranges during {LISTS_PER_BATCH} store lists");

    // The cache's list equals the store's list at the revision the cache answered at.
    let cached = list(&s, "?resourceVersion=0")?;
    let at = rv(&cached)?;
    let exact = list(&s, &format!("?resourceVersion={at}&resourceVersionMatch=Exact"))?;
    assert_eq!(cached["items"], exact["items"], "cache list at {at} differs from the store's");
    assert_eq!(rv(&exact)?, at);
    // Selectors and limit (ignored for resourceVersion=0, as kube does).
    assert_eq!(names(&list(&s, "?resourceVersion=0&labelSelector=app%3Dweb")?), ["web-1", "web-2"]);
    assert_eq!(names(&list(&s, "?resourceVersion=0&fieldSelector=metadata.name%3Ddb-1")?), ["db-1"]);
    let unlimited = list(&s, "?resourceVersion=0&limit=1")?;
    assert_eq!(names(&unlimited).len(), 3);
    assert!(unlimited["metadata"].get("continue").is_none());
    let other_ns: Value = serde_json::from_str(&s.ok(&["get", "--raw", "/api/v1/namespaces/kube-system/pods?resourceVersion=0"])?)?;
    assert_eq!(names(&other_ns), Vec::<String>::new());

    // A write is visible to the very next default list, and to a not-older-than list at
    // the write's revision (served by the cache once it has caught up).
    let created = s.ok_with(&["create", "--validate=false", "-f", "-", "-o", "jsonpath={.metadata.resourceVersion}"], Some(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: fresh, labels: {app: web}}\nspec: {containers: [{name: c, image: nginx}]}\n",
    ))?;
    assert!(names(&list(&s, "")?).contains(&"fresh".to_string()), "default list after the write");
    let lists_before = cache_lists(&s)?;
    let not_older = list(&s, &format!("?resourceVersion={created}&resourceVersionMatch=NotOlderThan"))?;
    assert!(names(&not_older).contains(&"fresh".to_string()), "not-older-than list at the write's revision");
    assert!(rv(&not_older)? >= created.parse::<i64>()?);
    assert_eq!(cache_lists(&s)? - lists_before, 1, "served from the cache");
    s.ok(&["delete", "pod", "web-2", "--wait=false"])?;
    assert!(!names(&list(&s, "")?).contains(&"web-2".to_string()), "default list after the delete");

    // A revision the store has not reached: the bounded wait, then 504 as kube.
    let future = rv(&list(&s, "")?)? + 1000;
    let started = Instant::now();
    let err = s.fails(&["get", "--raw", &format!("/api/v1/namespaces/default/pods?resourceVersion={future}")], None)?;
    assert!(err.contains(&format!("Too large resource version: {future}")), "{err}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(2) && waited < TOO_LARGE_RV_WAIT_MAX, "waited {waited:?}");
    Ok(())
}

#[test]
fn apiserver_lists_from_watch_cache_on_skiff_store() -> anyhow::Result<()> {
    scenario(Server::Skiff)
}

#[test]
fn apiserver_lists_from_watch_cache_on_etcd() -> anyhow::Result<()> {
    scenario(Server::Etcd)
}
