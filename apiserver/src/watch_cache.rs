//! The watch cache: one etcd watch per resource, feeding every client watching it and the
//! lists that may be served from memory.
//!
//! A resource's cache starts on its first watch or cache-served list: it lists the resource's
//! whole prefix from etcd at one revision R (page by page, every page at R), keeps those
//! objects in an index by key, and opens one etcd watch on the prefix from R + 1. Each watch
//! response is applied to the index as one batch (etcd never splits a revision's events
//! across responses), so the index is always the resource's exact state at the cache's
//! `revision`, never a state half-way through a transaction.
//!
//! Example history: the initial list at R = 10 finds `a` and `b`; the watch then delivers
//! `put c @11`, `delete a @12`. The index now holds `b`, `c` at revision 12, and the event
//! window holds both events (covering revisions `(10, 12]`). A list at resourceVersion=0
//! gets `{b, c}` with resourceVersion 12; a list with resourceVersion=15 waits until a later
//! event or a progress notification moves `revision` to at least 15 (the waiter asks the
//! feeder for a progress notification at once), or fails with 504 after
//! [`CACHE_WAIT_FRESH_TIMEOUT`] as kube-apiserver's "Too large resource version".
//!
//! A client watching from revision `after` gets the window's events newer than `after`, then
//! live events from a broadcast channel; the window copy and the subscription happen under
//! the lock that the feeder also holds while it applies and broadcasts, so no event is missed
//! or repeated in between. A watch from before the window (`after < oldest`) is not served
//! here: the caller falls back to its own etcd watch, which also answers 410 correctly.
//!
//! The window is bounded by [`CACHE_EVENTS_MAX`] events and [`CACHE_EVENTS_BYTES_MAX`]
//! bytes; the index holds one entry per live object, as etcd does (it is a copy of the
//! store's state, never the source of truth: a feeder that stops marks the cache closed and
//! the next user starts a fresh one from a new list).
//!
//! Which lists the cache serves is decided in [`crate::cached_list`].
//!
//! Lock order: `WatchCaches::starting` (async, held across etcd reads), then
//! `WatchCaches::caches`, then a `ResourceCache::state` (never the other way).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::EventType;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{broadcast, watch, Notify};

use crate::storage::{Kv, Storage, StorageError};

/// Events kept per resource for watchers that start slightly in the past.
pub const CACHE_EVENTS_MAX: usize = 1024;
/// Bytes of keys and values (current and previous) the event window of one resource may
/// hold; with 1.5 MiB objects the event count alone would allow gigabytes.
pub const CACHE_EVENTS_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Events a slow watcher may fall behind the feeder before it is cut off (it then
/// re-watches from its last revision, as a client of kube-apiserver does).
pub const SUBSCRIBER_LAG_MAX: usize = 1024;
/// How long a list waits for the cache to reach the revision it asked for before failing
/// with 504 "Too large resource version" (kube-apiserver's cacher `blockTimeout`).
pub const CACHE_WAIT_FRESH_TIMEOUT: Duration = Duration::from_secs(3);
/// Keys read from etcd per round trip of the initial list.
pub const INITIAL_LIST_CHUNK_KEYS: i64 = 1000;

/// One store change, as the feeder saw it.
#[derive(Debug)]
pub enum CacheEvent {
    Put { kv: Kv, prev: Option<Kv> },
    Delete { kv: Kv, prev: Option<Kv> },
    /// The store is at this revision with nothing newer for this resource (a BOOKMARK).
    Progress(i64),
    /// The feeder stopped (etcd watch failed or was compacted); watchers must end.
    Closed,
}

impl CacheEvent {
    pub fn revision(&self) -> i64 {
        match self {
            CacheEvent::Put { kv, .. } | CacheEvent::Delete { kv, .. } => kv.mod_revision,
            CacheEvent::Progress(r) => *r,
            CacheEvent::Closed => i64::MAX,
        }
    }

    fn size_bytes(&self) -> usize {
        let kv_bytes = |kv: &Kv| kv.key.len() + kv.value.len();
        match self {
            CacheEvent::Put { kv, prev } | CacheEvent::Delete { kv, prev } => kv_bytes(kv) + prev.as_ref().map_or(0, kv_bytes),
            CacheEvent::Progress(_) | CacheEvent::Closed => 0,
        }
    }
}

/// One object of the index: the stored JSON parsed once, as stored (without the
/// `apiVersion`, `kind` and `resourceVersion` a response adds).
#[derive(Debug)]
pub struct CachedObject {
    pub key: String,
    pub mod_revision: i64,
    /// The parsed object, or why the stored bytes are not a JSON object.
    pub object: Result<Value, String>,
    /// The object as a JSON list response holds it, rendered on the first list that asks
    /// (with the `apiVersion` it was rendered for): later lists copy bytes instead of
    /// cloning and serializing the tree again.
    pub response_json: std::sync::OnceLock<(String, bytes::Bytes)>,
}

impl CachedObject {
    pub fn from_kv(kv: &Kv) -> CachedObject {
        let object = match serde_json::from_slice::<Value>(&kv.value) {
            Ok(v) if v.is_object() => Ok(v),
            Ok(_) => Err(format!("stored object at {} is not a JSON object", kv.key)),
            Err(e) => Err(format!("stored object at {} is not JSON: {e}", kv.key)),
        };
        CachedObject { key: kv.key.clone(), mod_revision: kv.mod_revision, object, response_json: std::sync::OnceLock::new() }
    }
}

struct CacheState {
    /// Every live object of the resource at `revision`, by key.
    index: BTreeMap<String, Arc<CachedObject>>,
    /// The window holds every event with revision in `(oldest, revision]`.
    events: VecDeque<Arc<CacheEvent>>,
    events_bytes: usize,
    oldest: i64,
    revision: i64,
    closed: bool,
}

/// Why a cache-served list could not be answered.
#[derive(Debug, PartialEq, Eq)]
pub enum CacheListError {
    /// The cache did not reach `requested` within [`CACHE_WAIT_FRESH_TIMEOUT`].
    TooLargeResourceVersion { requested: i64, current: i64 },
    /// The feeder stopped; the caller reads etcd instead.
    Closed,
}

pub struct ResourceCache {
    state: Mutex<CacheState>,
    tx: broadcast::Sender<Arc<CacheEvent>>,
    /// `(revision, closed)`, for lists waiting until the cache is fresh enough.
    freshness: watch::Sender<(i64, bool)>,
    /// Set by a waiting list: the feeder asks etcd for a progress notification now rather
    /// than at its next interval (as kube's cacher does for reads that must be fresh).
    progress_wanted: Notify,
}

/// What a watcher gets: the backlog after its revision, then the live stream.
pub struct Subscription {
    pub backlog: Vec<Arc<CacheEvent>>,
    pub live: broadcast::Receiver<Arc<CacheEvent>>,
}

/// A consistent copy of part of the index.
pub struct Snapshot {
    pub objects: Vec<Arc<CachedObject>>,
    /// The revision the objects are the state at.
    pub revision: i64,
}

impl ResourceCache {
    fn new(revision: i64, index: BTreeMap<String, Arc<CachedObject>>) -> ResourceCache {
        let (tx, _) = broadcast::channel(SUBSCRIBER_LAG_MAX);
        let (freshness, _) = watch::channel((revision, false));
        ResourceCache {
            state: Mutex::new(CacheState { index, events: VecDeque::new(), events_bytes: 0, oldest: revision, revision, closed: false }),
            tx,
            freshness,
            progress_wanted: Notify::new(),
        }
    }

    /// Subscribes from `after`; `None` when the window no longer reaches back that far (or
    /// the feeder has stopped).
    pub fn subscribe(&self, after: i64) -> Option<Subscription> {
        let state = self.state.lock();
        if state.closed || after < state.oldest {
            return None;
        }
        let backlog = state.events.iter().filter(|e| e.revision() > after).cloned().collect();
        let live = self.tx.subscribe();
        Some(Subscription { backlog, live })
    }

    /// The objects whose keys start with `prefix`, at a revision of at least
    /// `min_revision`, waiting up to `wait` for the cache to get there.
    pub async fn list(&self, prefix: &str, min_revision: i64, wait: Duration) -> Result<Snapshot, CacheListError> {
        let mut fresh = self.freshness.subscribe();
        let (revision, closed) = *fresh.borrow();
        if !closed && revision < min_revision {
            self.progress_wanted.notify_one();
            let reached = tokio::time::timeout(wait, fresh.wait_for(|(r, closed)| *closed || *r >= min_revision)).await;
            if reached.is_err() {
                let current = self.state.lock().revision;
                return Err(CacheListError::TooLargeResourceVersion { requested: min_revision, current });
            }
        }
        let state = self.state.lock();
        if state.closed {
            return Err(CacheListError::Closed);
        }
        // The wait ended with the cache at min_revision or later, and it never goes back.
        assert!(state.revision >= min_revision, "cache revision went backwards");
        let end = crate::storage::prefix_end(prefix);
        let objects = state
            .index
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.as_bytes() < end.as_slice())
            .map(|(_, o)| o.clone())
            .collect();
        Ok(Snapshot { objects, revision: state.revision })
    }

    /// The cache's revision (every event up to it is applied).
    pub fn revision(&self) -> i64 {
        self.state.lock().revision
    }

    /// Applies one etcd watch response's events (or a progress notification, or the end),
    /// then broadcasts them, under one lock.
    fn apply(&self, batch: Vec<CacheEvent>) {
        // Parse outside the lock: lists and new watchers wait on it.
        let parsed: Vec<Option<Arc<CachedObject>>> = batch
            .iter()
            .map(|e| match e {
                CacheEvent::Put { kv, .. } => Some(Arc::new(CachedObject::from_kv(kv))),
                _ => None,
            })
            .collect();
        let mut state = self.state.lock();
        let mut sent = Vec::with_capacity(batch.len());
        for (event, object) in batch.into_iter().zip(parsed) {
            let event = Arc::new(event);
            match &*event {
                CacheEvent::Progress(r) => state.revision = state.revision.max(*r),
                CacheEvent::Closed => state.closed = true,
                CacheEvent::Put { kv, .. } => {
                    let object = object.expect("parsed above for every put");
                    state.index.insert(kv.key.clone(), object);
                    state.push_event(event.clone());
                }
                CacheEvent::Delete { kv, .. } => {
                    state.index.remove(&kv.key);
                    state.push_event(event.clone());
                }
            }
            sent.push(event);
        }
        for event in sent {
            // No receivers is fine: nobody is watching right now.
            let _ = self.tx.send(event);
        }
        self.freshness.send_replace((state.revision, state.closed));
    }
}

impl CacheState {
    fn push_event(&mut self, event: Arc<CacheEvent>) {
        self.revision = self.revision.max(event.revision());
        self.events_bytes += event.size_bytes();
        self.events.push_back(event);
        while self.events.len() > CACHE_EVENTS_MAX || (self.events_bytes > CACHE_EVENTS_BYTES_MAX && self.events.len() > 1) {
            let old = self.events.pop_front().expect("the window is not empty");
            self.events_bytes -= old.size_bytes();
            self.oldest = old.revision();
        }
    }
}

/// The caches of all resources, keyed by the resource's key prefix.
#[derive(Default)]
pub struct WatchCaches {
    caches: Mutex<HashMap<String, Arc<ResourceCache>>>,
    /// Held while a cache starts, so that concurrent first users (a hundred watches
    /// opened at once) wait for one initial list instead of each reading the resource.
    starting: tokio::sync::Mutex<()>,
}

impl WatchCaches {
    /// The running cache of `prefix`, starting it (its initial list and its feeder task) if
    /// needed; `None` when etcd could not be read.
    pub async fn get_or_start(&self, storage: &Storage, prefix: &str, progress_interval: Duration) -> Option<Arc<ResourceCache>> {
        if let Some(c) = self.caches.lock().get(prefix) {
            if !c.state.lock().closed {
                return Some(c.clone());
            }
        }
        let _starting = self.starting.lock().await;
        // Another request may have started it while this one waited.
        if let Some(c) = self.caches.lock().get(prefix) {
            if !c.state.lock().closed {
                return Some(c.clone());
            }
        }
        let (start, index) = initial_list(storage, prefix).await.ok()?;
        let stream = storage.watch(prefix, false, start + 1).await.ok()?;
        let cache = Arc::new(ResourceCache::new(start, index));
        self.caches.lock().insert(prefix.to_string(), cache.clone());
        tokio::spawn(feed(cache.clone(), stream, progress_interval));
        Some(cache)
    }
}

/// Every object under `prefix` at one revision (the first page's), by key.
async fn initial_list(storage: &Storage, prefix: &str) -> Result<(i64, BTreeMap<String, Arc<CachedObject>>), StorageError> {
    let end = crate::storage::prefix_end(prefix);
    let mut index = BTreeMap::new();
    let (mut revision, mut start) = (0i64, prefix.to_string());
    loop {
        let page = storage.range(&start, end.clone(), revision, INITIAL_LIST_CHUNK_KEYS).await?;
        if revision == 0 {
            revision = page.revision;
        }
        for kv in &page.kvs {
            index.insert(kv.key.clone(), Arc::new(CachedObject::from_kv(kv)));
        }
        match page.kvs.last() {
            Some(last) if page.more => start = format!("{}\u{0}", last.key),
            _ => return Ok((revision, index)),
        }
    }
}

/// Moves etcd's events into the cache until the etcd watch ends.
async fn feed(cache: Arc<ResourceCache>, mut stream: etcd_client::WatchStream, progress_interval: Duration) {
    let mut progress = tokio::time::interval(progress_interval);
    progress.tick().await;
    loop {
        let msg = tokio::select! {
            m = stream.message() => m,
            _ = progress.tick() => {
                if stream.request_progress().await.is_err() {
                    break;
                }
                continue;
            }
            _ = cache.progress_wanted.notified() => {
                if stream.request_progress().await.is_err() {
                    break;
                }
                continue;
            }
        };
        let resp = match msg {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => break,
        };
        if resp.canceled() || resp.compact_revision() > 0 {
            break;
        }
        if resp.events().is_empty() {
            if !resp.created() {
                if let Some(h) = resp.header() {
                    cache.apply(vec![CacheEvent::Progress(h.revision())]);
                }
            }
            continue;
        }
        let mut batch = Vec::with_capacity(resp.events().len());
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let kv = Kv::from_etcd(kv);
            let prev = ev.prev_kv().map(Kv::from_etcd);
            batch.push(match ev.event_type() {
                EventType::Put => CacheEvent::Put { kv, prev },
                EventType::Delete => CacheEvent::Delete { kv, prev },
            });
        }
        cache.apply(batch);
    }
    tracing::debug!("watch cache feeder stopped; the next user restarts it");
    cache.apply(vec![CacheEvent::Closed]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kv(rev: i64) -> Kv {
        Kv { key: format!("/registry/pods/d/p{rev}"), value: b"{}".to_vec(), mod_revision: rev, create_revision: rev }
    }

    fn cache(start: i64) -> ResourceCache {
        ResourceCache::new(start, BTreeMap::new())
    }

    fn names(s: &Snapshot) -> Vec<(String, i64)> {
        s.objects.iter().map(|o| (o.key.clone(), o.mod_revision)).collect()
    }

    #[test]
    fn backlog_then_live_without_gaps() {
        let c = cache(10);
        c.apply(vec![CacheEvent::Put { kv: kv(11), prev: None }]);
        c.apply(vec![CacheEvent::Put { kv: kv(12), prev: None }]);
        assert!(c.subscribe(9).is_none(), "before the window: fall back to etcd");
        let mut s = c.subscribe(11).unwrap();
        assert_eq!(s.backlog.iter().map(|e| e.revision()).collect::<Vec<_>>(), vec![12]);
        c.apply(vec![CacheEvent::Put { kv: kv(13), prev: None }]);
        assert_eq!(s.live.try_recv().unwrap().revision(), 13);
        c.apply(vec![CacheEvent::Closed]);
        assert!(matches!(*s.live.try_recv().unwrap(), CacheEvent::Closed));
        assert!(c.subscribe(12).is_none(), "a closed cache serves nobody");
    }

    #[test]
    fn window_is_bounded_and_moves_its_oldest_revision() {
        let c = cache(0);
        for rev in 1..=(CACHE_EVENTS_MAX as i64 + 10) {
            c.apply(vec![CacheEvent::Put { kv: kv(rev), prev: None }]);
        }
        assert_eq!(c.state.lock().events.len(), CACHE_EVENTS_MAX);
        assert_eq!(c.state.lock().oldest, 10);
        assert!(c.subscribe(9).is_none());
        assert_eq!(c.subscribe(10).unwrap().backlog.len(), CACHE_EVENTS_MAX);
        // The index keeps every object, not only the window's.
        assert_eq!(c.state.lock().index.len(), CACHE_EVENTS_MAX + 10);
    }

    #[test]
    fn window_is_bounded_in_bytes() {
        let c = cache(0);
        let value_bytes = CACHE_EVENTS_BYTES_MAX / 4;
        for rev in 1..=8 {
            let kv = Kv { value: vec![b' '; value_bytes], ..kv(rev) };
            c.apply(vec![CacheEvent::Put { kv, prev: None }]);
        }
        let state = c.state.lock();
        assert!(state.events_bytes <= CACHE_EVENTS_BYTES_MAX, "{} bytes kept", state.events_bytes);
        assert_eq!(state.events.len(), 3);
        assert_eq!(state.oldest, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn list_waits_for_a_newer_revision_then_gives_up() {
        let c = Arc::new(cache(10));
        c.apply(vec![CacheEvent::Put { kv: kv(11), prev: None }]);
        let err = c.list("/registry/pods/", 20, CACHE_WAIT_FRESH_TIMEOUT).await.err();
        assert_eq!(err, Some(CacheListError::TooLargeResourceVersion { requested: 20, current: 11 }));
        // A waiting list asked the feeder for a progress notification.
        assert!(tokio::time::timeout(Duration::from_millis(1), c.progress_wanted.notified()).await.is_ok());

        let waiting = tokio::spawn({
            let c = c.clone();
            async move { c.list("/registry/pods/", 20, CACHE_WAIT_FRESH_TIMEOUT).await.map(|s| (s.revision, names(&s))) }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        c.apply(vec![CacheEvent::Put { kv: kv(15), prev: None }]);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "15 is not 20 yet");
        c.apply(vec![CacheEvent::Progress(21)]);
        let (revision, listed) = waiting.await.unwrap().unwrap();
        assert_eq!(revision, 21);
        assert_eq!(listed, vec![("/registry/pods/d/p11".to_string(), 11), ("/registry/pods/d/p15".to_string(), 15)]);
    }

    #[tokio::test(start_paused = true)]
    async fn list_of_a_closed_cache_is_refused() {
        let c = Arc::new(cache(10));
        let waiting = tokio::spawn({
            let c = c.clone();
            async move { c.list("/registry/pods/", 30, CACHE_WAIT_FRESH_TIMEOUT).await.err() }
        });
        tokio::task::yield_now().await;
        c.apply(vec![CacheEvent::Closed]);
        assert_eq!(waiting.await.unwrap(), Some(CacheListError::Closed));
        assert_eq!(c.list("/registry/pods/", 0, CACHE_WAIT_FRESH_TIMEOUT).await.err(), Some(CacheListError::Closed));
    }

    /// A step of a store history over a few keys in two namespaces.
    #[derive(Debug, Clone)]
    enum Step {
        Put { ns: u8, name: u8, value: u8 },
        Delete { ns: u8, name: u8 },
        /// A txn writing two keys at one revision.
        PutTwo { ns: u8, a: u8, b: u8 },
        Progress,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u8..2, 0u8..4, any::<u8>()).prop_map(|(ns, name, value)| Step::Put { ns, name, value }),
            (0u8..2, 0u8..4).prop_map(|(ns, name)| Step::Delete { ns, name }),
            (0u8..2, 0u8..4, 0u8..4).prop_map(|(ns, a, b)| Step::PutTwo { ns, a, b: (a + 1 + b % 3) % 4 }),
            Just(Step::Progress),
        ]
    }

    fn key(ns: u8, name: u8) -> String {
        format!("/registry/pods/ns{ns}/p{name}")
    }

    /// The plain model of the store: `key -> (value, mod_revision)` at each revision.
    type Model = BTreeMap<String, (Vec<u8>, i64)>;

    /// The store's list of `prefix` at revision `at`, from the model's history.
    fn store_list(history: &[(i64, Model)], at: i64, prefix: &str) -> Vec<(String, i64)> {
        let state = history.iter().rev().find(|(rev, _)| *rev <= at).map(|(_, m)| m.clone()).unwrap_or_default();
        state.into_iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, (_, rev))| (k, rev)).collect()
    }

    proptest! {
        /// After any history (initial state plus events, a txn's events in one batch), a
        /// list from the cache equals the store's list at the revision the cache reports,
        /// for the whole resource and for each namespace.
        #[test]
        fn list_at_cache_revision_equals_store_list(initial in proptest::collection::vec((0u8..2, 0u8..4), 0..6), steps in proptest::collection::vec(step(), 0..40)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            let start = 5i64;
            let mut model = Model::new();
            for (ns, name) in &initial {
                model.insert(key(*ns, *name), (b"{}".to_vec(), 3));
            }
            let index = model.iter().map(|(k, (v, rev))| {
                let kv = Kv { key: k.clone(), value: v.clone(), mod_revision: *rev, create_revision: *rev };
                (k.clone(), Arc::new(CachedObject::from_kv(&kv)))
            }).collect();
            let c = ResourceCache::new(start, index);
            let mut history = vec![(start, model.clone())];
            let mut rev = start;
            for s in steps {
                // Writes of other resources move the store's revision too.
                rev += 1;
                let put = |model: &mut Model, k: String, value: Vec<u8>, rev: i64| {
                    let prev = model.get(&k).map(|(v, r)| Kv { key: k.clone(), value: v.clone(), mod_revision: *r, create_revision: *r });
                    model.insert(k.clone(), (value.clone(), rev));
                    CacheEvent::Put { kv: Kv { key: k, value, mod_revision: rev, create_revision: rev }, prev }
                };
                let batch = match s {
                    Step::Put { ns, name, value } => vec![put(&mut model, key(ns, name), format!("{{\"v\":{value}}}").into_bytes(), rev)],
                    Step::PutTwo { ns, a, b } => vec![put(&mut model, key(ns, a), b"{}".to_vec(), rev), put(&mut model, key(ns, b), b"{}".to_vec(), rev)],
                    Step::Delete { ns, name } => match model.remove(&key(ns, name)) {
                        Some((v, r)) => vec![CacheEvent::Delete {
                            kv: Kv { key: key(ns, name), value: Vec::new(), mod_revision: rev, create_revision: 0 },
                            prev: Some(Kv { key: key(ns, name), value: v, mod_revision: r, create_revision: r }),
                        }],
                        None => continue,
                    },
                    Step::Progress => vec![CacheEvent::Progress(rev)],
                };
                c.apply(batch);
                history.push((rev, model.clone()));
                for prefix in ["/registry/pods/", "/registry/pods/ns0/", "/registry/pods/ns1/"] {
                    let snap = rt.block_on(c.list(prefix, 0, CACHE_WAIT_FRESH_TIMEOUT)).unwrap();
                    prop_assert_eq!(names(&snap), store_list(&history, snap.revision, prefix));
                }
            }
            let snap = rt.block_on(c.list("/registry/pods/", start, CACHE_WAIT_FRESH_TIMEOUT)).unwrap();
            prop_assert!(snap.revision >= start);
        }
    }
}
