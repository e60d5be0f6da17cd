//! Watch: a chunked stream of `WatchEvent`s (`{"type":"ADDED","object":{…}}\n`), one per line.
//!
//! Events come from the resource's watch cache ([`crate::watch_cache`], one etcd watch per
//! resource shared by all watchers) when it reaches back to the requested revision, else
//! from an etcd watch of this request's own (older revisions; it also reports compaction).
//! Either way events carry the previous value, so each can be classified against the
//! request's selectors: an object that starts matching is ADDED, one that stops matching is
//! DELETED, as kube-apiserver does.
//!
//! Without a resourceVersion (or with "0", or `sendInitialEvents=true`) the stream first
//! sends the current objects as ADDED events from a list at revision R (from the watch cache
//! for "0", a quorum read from etcd otherwise), then watches from R + 1, so nothing is missed
//! or repeated. A compacted start revision yields an ERROR event
//! carrying a 410 Expired Status, as kube.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use etcd_client::EventType;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::error::{ApiError, Result};
use crate::filter::Filter;
use crate::handlers::{self, AppState, Request, State};
use crate::objects;
use crate::routing::Encoding;
use crate::storage::Kv;
use crate::table_response::{self, IncludeObject};

/// Encoded events buffered between the etcd reader and a slow client; when full the reader
/// waits (etcd's own watch flow control then applies).
pub const WATCH_EVENTS_BUFFERED_MAX: usize = 256;
/// A watch without `timeoutSeconds` ends after this long (kube picks 30–60 minutes).
pub const WATCH_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30 * 60);
/// Largest `timeoutSeconds` honoured.
pub const WATCH_TIMEOUT_MAX: Duration = Duration::from_secs(60 * 60);
/// How often a watch asks etcd for a progress notification (to send BOOKMARK events).
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);

/// Per-watch output state.
struct Emitter {
    tx: mpsc::Sender<bytes::Bytes>,
    res: std::sync::Arc<crate::resources::ResourceInfo>,
    encoding: Encoding,
    include: IncludeObject,
    /// Table column definitions go only in the first object event.
    columns_sent: bool,
}

impl Emitter {
    /// Sends one event line; false when the client has gone.
    async fn send(&mut self, kind: &str, object: Value) -> bool {
        let object = if self.encoding == Encoding::Table && kind != "ERROR" && kind != "BOOKMARK" {
            let rv = objects::meta_str(&object, "resourceVersion").unwrap_or("").to_string();
            let t = table_response::table(&self.res, &[object], json!({"resourceVersion": rv}), self.include, !self.columns_sent);
            self.columns_sent = true;
            t
        } else {
            object
        };
        let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).expect("a Value always serializes");
        line.push(b'\n');
        self.tx.send(bytes::Bytes::from(line)).await.is_ok()
    }
}

fn bookmark(res: &crate::resources::ResourceInfo, revision: i64, initial_events_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if initial_events_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": meta})
}

fn bool_param(req: &Request, k: &str) -> bool {
    matches!(req.query.get(k).map(String::as_str), Some("true") | Some("1"))
}

/// Serves a watch request (`?watch=true` or the `/watch/` path).
pub async fn serve(state: State, req: Request) -> Result<Response> {
    let route = req.route.clone();
    let res = route.resource.clone();
    let mut filter = Filter::parse(
        &res.plural,
        req.query.get("labelSelector").map(String::as_str),
        req.query.get("fieldSelector").map(String::as_str),
    )?;
    // A watch of one named object (`/watch/.../pods/x`) is a watch filtered by name.
    if let Some(name) = &route.name {
        filter = filter.with_name(name);
    }
    let include = table_response::include_object(req.query.get("includeObject").map(String::as_str))?;
    let rv_param = req.query.get("resourceVersion").cloned().unwrap_or_default();
    let send_initial = match req.query.get("sendInitialEvents").map(String::as_str) {
        Some("true") => true,
        Some("false") | None | Some("") => false,
        Some(other) => return Err(ApiError::bad_request(format!("sendInitialEvents: Invalid value: {other:?}"))),
    };
    let bookmarks = bool_param(&req, "allowWatchBookmarks");
    if send_initial && !bookmarks {
        return Err(ApiError::bad_request("sendInitialEvents: Forbidden: sendInitialEvents requires setting allowWatchBookmarks=true"));
    }
    let timeout = match req.query.get("timeoutSeconds").filter(|s| !s.is_empty()) {
        Some(s) => Duration::from_secs(s.parse::<u64>().map_err(|_| ApiError::bad_request(format!("timeoutSeconds: Invalid value: {s:?}")))?)
            .min(WATCH_TIMEOUT_MAX),
        None => WATCH_TIMEOUT_DEFAULT,
    };
    let namespace = if res.namespaced { route.namespace.clone() } else { None };
    let prefix = res.namespace_prefix(namespace.as_deref());

    // Initial state, when asked for.
    let initial = rv_param.is_empty() || rv_param == "0" || send_initial;
    let (initial_items, start_after) = if initial {
        let mut q = req.query.clone();
        q.remove("limit");
        q.remove("continue");
        q.remove("resourceVersionMatch");
        // resourceVersion "0" stays: its initial state comes from the watch cache (as kube's),
        // at the cache's revision, from which the watch then continues.
        let listed = handlers::list_objects(&state, &res, namespace.as_deref(), &filter, &q).await?;
        (listed.items, listed.revision)
    } else {
        let rv: i64 = rv_param
            .parse()
            .ok()
            .filter(|v: &i64| *v >= 0)
            .ok_or_else(|| ApiError::bad_request(format!("resourceVersion: Invalid value: {rv_param:?}")))?;
        (Vec::new(), rv)
    };

    let (tx, rx) = mpsc::channel::<bytes::Bytes>(WATCH_EVENTS_BUFFERED_MAX);
    let mut emitter = Emitter { tx, res: res.clone(), encoding: req.encoding, include, columns_sent: false };
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let _ = tokio::time::timeout_at(deadline, async {
            for obj in initial_items {
                if !emitter.send("ADDED", obj).await {
                    return;
                }
            }
            if send_initial && !emitter.send("BOOKMARK", bookmark(&res, start_after, true)).await {
                return;
            }
            let cache = state.watch_caches.get_or_start(&state.storage, &res.key_prefix(), BOOKMARK_INTERVAL).await;
            match cache.and_then(|c| c.subscribe(start_after)) {
                Some(sub) => {
                    state.metrics.watch_sources.with_label_values(&["cache"]).inc();
                    run_cached(&res, &prefix, &filter, bookmarks, sub, &mut emitter).await
                }
                None => {
                    state.metrics.watch_sources.with_label_values(&["etcd"]).inc();
                    run(&state, &res, &prefix, start_after, &filter, bookmarks, &mut emitter).await
                }
            }
        })
        .await;
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let body = Body::from_stream(futures::StreamExt::map(stream, Ok::<_, std::convert::Infallible>));
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(axum::http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    Ok(resp)
}

fn decode(res: &crate::resources::ResourceInfo, kv: &Kv) -> Option<Value> {
    handlers::decode_stored(res, kv).ok()
}

/// Streams etcd events after `after` until the client leaves or the watch ends.
async fn run(
    state: &AppState,
    res: &crate::resources::ResourceInfo,
    prefix: &str,
    after: i64,
    filter: &Filter,
    bookmarks: bool,
    out: &mut Emitter,
) {
    let mut stream = match state.storage.watch(prefix, false, after + 1).await {
        Ok(s) => s,
        Err(e) => {
            let _ = out.send("ERROR", handlers::storage_error(e).to_status()).await;
            return;
        }
    };
    let mut progress = tokio::time::interval(BOOKMARK_INTERVAL);
    progress.tick().await;
    loop {
        let msg = tokio::select! {
            m = stream.message() => m,
            _ = progress.tick() => {
                if bookmarks {
                    let _ = stream.request_progress().await;
                }
                if out.tx.is_closed() {
                    return;
                }
                continue;
            }
            _ = out.tx.closed() => return,
        };
        let resp = match msg {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                let _ = out.send("ERROR", ApiError::internal(format!("etcd watch failed: {e}")).to_status()).await;
                return;
            }
        };
        if resp.compact_revision() > 0 || (resp.canceled() && resp.cancel_reason().contains("compacted")) {
            let e = ApiError::watch_too_old(after, resp.compact_revision());
            let _ = out.send("ERROR", e.to_status()).await;
            return;
        }
        if resp.canceled() {
            let e = ApiError::internal(format!("etcd canceled the watch: {}", resp.cancel_reason()));
            let _ = out.send("ERROR", e.to_status()).await;
            return;
        }
        if resp.events().is_empty() {
            if bookmarks && !resp.created() {
                if let Some(h) = resp.header() {
                    if !out.send("BOOKMARK", bookmark(res, h.revision(), false)).await {
                        return;
                    }
                }
            }
            continue;
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let kv = Kv::from_etcd(kv);
            let prev = ev.prev_kv().map(Kv::from_etcd);
            let is_put = matches!(ev.event_type(), EventType::Put);
            if !emit_change(res, filter, is_put, &kv, prev.as_ref(), out).await {
                return;
            }
        }
    }
}

/// Sends what one store change means to this watcher (nothing, ADDED, MODIFIED or
/// DELETED); false when the client has gone.
async fn emit_change(
    res: &crate::resources::ResourceInfo,
    filter: &Filter,
    is_put: bool,
    kv: &Kv,
    prev: Option<&Kv>,
    out: &mut Emitter,
) -> bool {
    let prev = prev.and_then(|p| decode(res, p));
    let prev_matches = prev.as_ref().map(|p| filter.matches(p)).unwrap_or(false);
    if is_put {
        let Some(obj) = decode(res, kv) else { return true };
        return match (filter.matches(&obj), prev.is_some(), prev_matches) {
            (true, true, true) => out.send("MODIFIED", obj).await,
            (true, _, _) => out.send("ADDED", obj).await,
            // Stopped matching the selector: gone from this watcher's view.
            (false, true, true) => out.send("DELETED", obj).await,
            _ => true,
        };
    }
    match prev {
        Some(mut obj) if prev_matches => {
            // The deleted object carries the revision of its deletion.
            objects::metadata_mut(&mut obj).insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
            out.send("DELETED", obj).await
        }
        _ => true,
    }
}

/// Streams from the resource's watch cache until the client leaves, the subscriber falls
/// too far behind (the client then re-watches from its last revision), or the cache stops.
async fn run_cached(
    res: &crate::resources::ResourceInfo,
    prefix: &str,
    filter: &Filter,
    bookmarks: bool,
    sub: crate::watch_cache::Subscription,
    out: &mut Emitter,
) {
    use crate::watch_cache::CacheEvent;
    let crate::watch_cache::Subscription { backlog, mut live } = sub;
    let mut pending: std::collections::VecDeque<_> = backlog.into();
    loop {
        let ev = match pending.pop_front() {
            Some(ev) => ev,
            None => tokio::select! {
                r = live.recv() => match r {
                    Ok(ev) => ev,
                    Err(_) => return,
                },
                _ = out.tx.closed() => return,
            },
        };
        let sent = match &*ev {
            CacheEvent::Closed => return,
            CacheEvent::Progress(rev) => !bookmarks || out.send("BOOKMARK", bookmark(res, *rev, false)).await,
            CacheEvent::Put { kv, prev } if kv.key.starts_with(prefix) => emit_change(res, filter, true, kv, prev.as_ref(), out).await,
            CacheEvent::Delete { kv, prev } if kv.key.starts_with(prefix) => emit_change(res, filter, false, kv, prev.as_ref(), out).await,
            _ => true,
        };
        if !sent {
            return;
        }
    }
}

