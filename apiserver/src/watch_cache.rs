//! The watch cache: one etcd watch per resource, fanned out to every client watching it.
//!
//! A resource's cache starts on its first watch: it reads the store's revision R, opens one
//! etcd watch on the resource's whole prefix from R + 1, and keeps the last
//! [`CACHE_EVENTS_MAX`] events in a ring (covering revisions `(oldest, revision]`). A client
//! watching from revision `after` gets the ring's events newer than `after`, then live
//! events from a broadcast channel; the ring copy and the subscription happen under one
//! lock that the feeder also holds while it appends and broadcasts, so no event is missed
//! or repeated in between. A watch from before the ring (`after < oldest`) is not served
//! here: the caller falls back to its own etcd watch, which also answers 410 correctly.
//!
//! Lists are not served from the cache: every list is a quorum read from etcd.
//!
//! Lock order: `WatchCaches::caches`, then a `ResourceCache::ring` (never the other way).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use etcd_client::EventType;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::storage::{Kv, Storage};

/// Events kept per resource for watchers that start slightly in the past.
pub const CACHE_EVENTS_MAX: usize = 1024;
/// Events a slow watcher may fall behind the feeder before it is cut off (it then
/// re-watches from its last revision, as a client of kube-apiserver does).
pub const SUBSCRIBER_LAG_MAX: usize = 1024;

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
}

struct Ring {
    events: VecDeque<Arc<CacheEvent>>,
    /// The ring holds every event with revision in `(oldest, revision]`.
    oldest: i64,
    revision: i64,
    closed: bool,
}

pub struct ResourceCache {
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Arc<CacheEvent>>,
}

/// What a watcher gets: the backlog after its revision, then the live stream.
pub struct Subscription {
    pub backlog: Vec<Arc<CacheEvent>>,
    pub live: broadcast::Receiver<Arc<CacheEvent>>,
}

impl ResourceCache {
    /// Subscribes from `after`; `None` when the ring no longer reaches back that far (or
    /// the feeder has stopped).
    pub fn subscribe(&self, after: i64) -> Option<Subscription> {
        let ring = self.ring.lock();
        if ring.closed || after < ring.oldest {
            return None;
        }
        let backlog = ring.events.iter().filter(|e| e.revision() > after).cloned().collect();
        let live = self.tx.subscribe();
        Some(Subscription { backlog, live })
    }

    fn push(&self, event: CacheEvent) {
        let event = Arc::new(event);
        let mut ring = self.ring.lock();
        match &*event {
            CacheEvent::Progress(r) => ring.revision = ring.revision.max(*r),
            CacheEvent::Closed => ring.closed = true,
            e => {
                ring.revision = ring.revision.max(e.revision());
                ring.events.push_back(event.clone());
                while ring.events.len() > CACHE_EVENTS_MAX {
                    if let Some(old) = ring.events.pop_front() {
                        ring.oldest = old.revision();
                    }
                }
            }
        }
        // No receivers is fine: nobody is watching right now.
        let _ = self.tx.send(event);
    }
}

/// The caches of all resources, keyed by the resource's key prefix.
#[derive(Default)]
pub struct WatchCaches {
    caches: Mutex<HashMap<String, Arc<ResourceCache>>>,
}

impl WatchCaches {
    /// The running cache of `prefix`, starting it (and its feeder task) if needed.
    pub async fn get_or_start(&self, storage: &Storage, prefix: &str, progress_interval: std::time::Duration) -> Option<Arc<ResourceCache>> {
        if let Some(c) = self.caches.lock().get(prefix) {
            if !c.ring.lock().closed {
                return Some(c.clone());
            }
        }
        let start = storage.current_revision().await.ok()?;
        let stream = storage.watch(prefix, false, start + 1).await.ok()?;
        let (tx, _) = broadcast::channel(SUBSCRIBER_LAG_MAX);
        let cache = Arc::new(ResourceCache {
            ring: Mutex::new(Ring { events: VecDeque::new(), oldest: start, revision: start, closed: false }),
            tx,
        });
        {
            let mut caches = self.caches.lock();
            // Another request may have started one meanwhile: keep the first.
            if let Some(existing) = caches.get(prefix) {
                if !existing.ring.lock().closed {
                    return Some(existing.clone());
                }
            }
            caches.insert(prefix.to_string(), cache.clone());
        }
        tokio::spawn(feed(cache.clone(), stream, progress_interval));
        Some(cache)
    }
}

/// Moves etcd's events into the cache until the etcd watch ends.
async fn feed(cache: Arc<ResourceCache>, mut stream: etcd_client::WatchStream, progress_interval: std::time::Duration) {
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
                    cache.push(CacheEvent::Progress(h.revision()));
                }
            }
            continue;
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let kv = Kv::from_etcd(kv);
            let prev = ev.prev_kv().map(Kv::from_etcd);
            cache.push(match ev.event_type() {
                EventType::Put => CacheEvent::Put { kv, prev },
                EventType::Delete => CacheEvent::Delete { kv, prev },
            });
        }
    }
    tracing::debug!("watch cache feeder stopped; the next watch restarts it");
    cache.push(CacheEvent::Closed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(rev: i64) -> Kv {
        Kv { key: format!("/registry/pods/d/p{rev}"), value: b"{}".to_vec(), mod_revision: rev, create_revision: rev }
    }

    fn cache(start: i64) -> ResourceCache {
        let (tx, _) = broadcast::channel(SUBSCRIBER_LAG_MAX);
        ResourceCache { ring: Mutex::new(Ring { events: VecDeque::new(), oldest: start, revision: start, closed: false }), tx }
    }

    #[test]
    fn backlog_then_live_without_gaps() {
        let c = cache(10);
        c.push(CacheEvent::Put { kv: kv(11), prev: None });
        c.push(CacheEvent::Put { kv: kv(12), prev: None });
        assert!(c.subscribe(9).is_none(), "before the ring: fall back to etcd");
        let mut s = c.subscribe(11).unwrap();
        assert_eq!(s.backlog.iter().map(|e| e.revision()).collect::<Vec<_>>(), vec![12]);
        c.push(CacheEvent::Put { kv: kv(13), prev: None });
        assert_eq!(s.live.try_recv().unwrap().revision(), 13);
        c.push(CacheEvent::Closed);
        assert!(matches!(*s.live.try_recv().unwrap(), CacheEvent::Closed));
        assert!(c.subscribe(12).is_none(), "a closed cache serves nobody");
    }

    #[test]
    fn ring_is_bounded_and_moves_its_oldest_revision() {
        let c = cache(0);
        for rev in 1..=(CACHE_EVENTS_MAX as i64 + 10) {
            c.push(CacheEvent::Put { kv: kv(rev), prev: None });
        }
        assert_eq!(c.ring.lock().events.len(), CACHE_EVENTS_MAX);
        assert_eq!(c.ring.lock().oldest, 10);
        assert!(c.subscribe(9).is_none());
        assert_eq!(c.subscribe(10).unwrap().backlog.len(), CACHE_EVENTS_MAX);
    }
}
