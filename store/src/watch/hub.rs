//! The watch hub: every watcher of every stream, fed from the apply path.
//!
//! The applier calls [`WatchHub::notify`] once per committed write transaction, in
//! revision order. `notify` hands the transaction's events to each *synced* watcher that
//! matches them with a non-blocking `try_send` into the watcher's stream queue. A watcher
//! whose queue is full becomes a *victim*: it turns unsynced, remembers the revision it
//! missed (`next_rev`), and the catch-up task (`catchup.rs`) replays it from the MVCC change
//! log later. Watchers created with a start revision at or below the current one start
//! unsynced and catch up the same way.
//!
//! An example history (hub revision `rev` on the left):
//!
//! ```text
//! rev 10  watcher W created with start_revision 5   -> unsynced, next_rev 5
//! rev 11  notify(11): W unsynced, skipped            (catch-up owns W)
//!         catch-up: reads [5, 11] from the log, queues it, next_rev 12 > rev 11 -> synced
//! rev 12  notify(12): W synced, queue full           -> victim, next_rev 12
//!         catch-up: queue still full, retries later; then reads [12, 12] -> synced
//! ```
//!
//! The handoff between catch-up and `notify` is exact because both decide under the hub
//! lock: catch-up reads the log up to a revision `to <= rev` without the lock, then, with
//! the lock, queues what it read, sets `next_rev = to + 1`, and turns the watcher synced
//! only if `next_rev > rev` (no notify happened since). Until then `notify` skips the
//! watcher, so nothing is sent twice and nothing is missed.
//!
//! Lock order: `state` is the only lock on the hot path. It is never held across an
//! `.await`, a disk read or an MVCC call; `catchup_task` is taken only at construction and
//! drop.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus::Registry;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::errors;
use super::metrics::WatchMetrics;
use super::watcher::{Filters, KeyRange, StreamId, SyncedIndex, WatchOptions, Watcher, WatcherKey};
use super::{AUTO_WATCH_ID, INVALID_WATCH_ID};
use crate::mvcc::{Event, MvccStore};

/// A message from the hub to one watch stream; the stream turns it into `WatchResponse`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outbound {
    /// The answer to a create request. With a `cancel_reason` the create failed and
    /// `watch_id` is [`INVALID_WATCH_ID`].
    Created { watch_id: i64, revision: i64, cancel_reason: Option<String> },
    /// Events of revisions up to `revision`, in order; never splits a revision.
    Events { watch_id: i64, revision: i64, events: Vec<Event>, fragment: bool },
    /// Every event up to `revision` has been sent (to `watch_id`, or to every watcher of
    /// the stream when `watch_id` is [`INVALID_WATCH_ID`]).
    Progress { watch_id: i64, revision: i64 },
    /// The watcher is gone: canceled by the client (`compact_revision` 0), or its next
    /// revision was compacted away.
    Canceled { watch_id: i64, revision: i64, compact_revision: i64 },
}

impl Outbound {
    pub(crate) fn event_count(&self) -> usize {
        match self {
            Outbound::Events { events, .. } => events.len(),
            _ => 0,
        }
    }
}

/// A parsed `WatchCreateRequest`.
#[derive(Debug, Clone, Default)]
pub(crate) struct WatchCreate {
    /// [`AUTO_WATCH_ID`] asks the server to pick one.
    pub(crate) watch_id: i64,
    pub(crate) key: Vec<u8>,
    pub(crate) range_end: Vec<u8>,
    /// 0: from the next revision; in the past: replayed from the change log.
    pub(crate) start_revision: i64,
    pub(crate) filters: Filters,
    pub(crate) prev_kv: bool,
    pub(crate) progress_notify: bool,
    pub(crate) fragment: bool,
}

/// The watch hub. Shared as `Arc<WatchHub>` by the applier (which calls [`Self::notify`])
/// and the watch service.
pub struct WatchHub {
    pub(crate) mvcc: Arc<MvccStore>,
    pub(crate) state: Mutex<HubState>,
    /// Wakes the catch-up task when a watcher turns unsynced.
    pub(crate) catchup_wake: Arc<Notify>,
    pub(crate) metrics: WatchMetrics,
    catchup_task: Mutex<Option<JoinHandle<()>>>,
    /// Catch-up steps finished, for tests that must know one ran.
    #[cfg(test)]
    pub(crate) catchup_steps: std::sync::atomic::AtomicU64,
}

pub(crate) struct HubState {
    /// The last revision handed to `notify`: every synced watcher has been given every
    /// matching event up to it. Not `mvcc.current_revision()`, which may run ahead of
    /// `notify` for the duration of one apply.
    pub(crate) rev: i64,
    next_watcher_key: u64,
    next_stream_id: u64,
    pub(crate) watchers: HashMap<WatcherKey, Watcher>,
    synced: SyncedIndex,
    /// Ordered so the catch-up task can serve them round-robin from a cursor.
    pub(crate) unsynced: BTreeSet<WatcherKey>,
    pub(crate) streams: HashMap<StreamId, StreamState>,
}

pub(crate) struct StreamState {
    pub(crate) tx: mpsc::Sender<Outbound>,
    /// Client watch id -> watcher; ordered so progress ticks visit watchers in id order.
    ids: BTreeMap<i64, WatcherKey>,
    next_auto_id: i64,
    unsynced_count: usize,
    /// A `RequestProgress` arrived while some watcher was unsynced: answer it as soon as
    /// all are synced (etcd >= 3.5.8 `deferredProgress`).
    progress_deferred: bool,
}

impl WatchHub {
    /// A hub over `mvcc`, starting at its current revision. Its catch-up task runs on
    /// `runtime`; its gauges are registered in `registry`.
    ///
    /// The applier must call [`Self::notify`] for every write transaction committed after
    /// this call, and [`Self::on_restore`] after replacing the store's contents from a snapshot.
    pub fn new(
        mvcc: Arc<MvccStore>,
        registry: &Registry,
        runtime: &tokio::runtime::Handle,
    ) -> prometheus::Result<Arc<Self>> {
        let metrics = WatchMetrics::new(registry)?;
        let rev = mvcc.current_revision();
        let hub = Arc::new(WatchHub {
            mvcc,
            state: Mutex::new(HubState {
                rev,
                next_watcher_key: 0,
                next_stream_id: 0,
                watchers: HashMap::new(),
                synced: SyncedIndex::default(),
                unsynced: BTreeSet::new(),
                streams: HashMap::new(),
            }),
            catchup_wake: Arc::new(Notify::new()),
            metrics,
            catchup_task: Mutex::new(None),
            #[cfg(test)]
            catchup_steps: std::sync::atomic::AtomicU64::new(0),
        });
        let task = runtime.spawn(super::catchup::run(Arc::downgrade(&hub), hub.catchup_wake.clone()));
        *hub.catchup_task.lock() = Some(task);
        Ok(hub)
    }

    /// The revision the hub has been notified of; the header revision of its responses.
    pub fn current_revision(&self) -> i64 {
        self.state.lock().rev
    }

    /// Delivers the events of the write transaction that produced revision `rev` (every
    /// event with `prev_kv` filled) to the synced watchers they match. Never blocks and
    /// never touches the disk: a watcher whose stream queue is full turns unsynced and is
    /// caught up later from the change log.
    pub fn notify(&self, rev: i64, events: &[Event]) {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        assert!(
            rev > st.rev || (rev == st.rev && events.is_empty()),
            "watch hub notified of revision {rev} after revision {}",
            st.rev
        );
        st.rev = rev;
        if st.synced.is_empty() || events.is_empty() {
            return;
        }
        let mut matched: HashMap<WatcherKey, Vec<&Event>> = HashMap::new();
        for event in events {
            debug_assert_eq!(event.kv.mod_revision, rev, "event outside its transaction's revision");
            st.synced.for_each_match(&event.kv.key, |k| matched.entry(k).or_default().push(event));
        }
        let mut victims = Vec::new();
        for (key, evs) in matched {
            let w = st.watchers.get_mut(&key).expect("synced watcher exists");
            if rev < w.next_rev {
                continue; // a future start revision not reached yet
            }
            let selected = w.options.select(evs);
            if selected.is_empty() {
                continue;
            }
            let count = selected.len();
            let stream = st.streams.get(&w.stream).expect("a watcher's stream exists");
            let msg = Outbound::Events { watch_id: w.watch_id, revision: rev, events: selected, fragment: w.options.fragment };
            match stream.tx.try_send(msg) {
                Ok(()) => {
                    self.metrics.pending_events.add(count as i64);
                    w.sent_since_progress_tick = true;
                }
                // Closed: the stream is going away and `close_stream` will remove it; until
                // then it is a victim like any other, so no event is claimed as delivered.
                Err(TrySendError::Full(_) | TrySendError::Closed(_)) => victims.push(key),
            }
        }
        if victims.is_empty() {
            return;
        }
        for key in victims {
            st.make_unsynced(key, rev, &self.metrics);
        }
        self.catchup_wake.notify_one();
    }

    /// Call after the MVCC store's contents were replaced (a raft snapshot was installed
    /// with `MvccStore::restore_from_snapshot`), on the applier thread, before the next
    /// [`Self::notify`]: every watcher then re-syncs from the new store's change log at its
    /// own next revision, or is canceled with `compact_revision` when that revision is
    /// compacted away in the new store, as etcd's `watchableStore.Restore` does.
    ///
    /// Why this loses and duplicates nothing: a synced watcher has been given every event
    /// up to the hub's revision, so it is owed `old_rev + 1` on (or its future start
    /// revision); an unsynced one is owed its `next_rev`, untouched here. Raft histories
    /// agree, so the new store's log holds the same events for revisions both stores have,
    /// plus those up to the snapshot's revision. A catch-up read that overlapped the
    /// replacement is discarded (`MvccStore::restore_seq`) and redone.
    pub fn on_restore(&self) {
        let new_rev = self.mvcc.current_revision();
        let mut st = self.state.lock();
        let synced: Vec<WatcherKey> = st.watchers.iter().filter(|(_, w)| w.synced).map(|(k, _)| *k).collect();
        let old_rev = st.rev;
        for key in synced {
            let next_rev = st.watchers[&key].next_rev.max(old_rev + 1);
            st.make_unsynced(key, next_rev, &self.metrics);
        }
        st.rev = st.rev.max(new_rev);
        drop(st);
        self.catchup_wake.notify_one();
    }

    /// Registers a watch stream whose responses go to `tx`.
    pub(crate) fn open_stream(&self, tx: mpsc::Sender<Outbound>) -> StreamId {
        let mut st = self.state.lock();
        let id = StreamId(st.next_stream_id);
        st.next_stream_id += 1;
        let stream = StreamState { tx, ids: BTreeMap::new(), next_auto_id: 0, unsynced_count: 0, progress_deferred: false };
        st.streams.insert(id, stream);
        self.metrics.streams.inc();
        id
    }

    /// Removes every watcher of the stream and the stream itself (idempotent).
    pub(crate) fn close_stream(&self, stream: StreamId) {
        let mut st = self.state.lock();
        let Some(keys) = st.streams.get(&stream).map(|s| s.ids.values().copied().collect::<Vec<_>>()) else {
            return;
        };
        for key in keys {
            st.remove_watcher(key, &self.metrics);
        }
        st.streams.remove(&stream);
        self.metrics.streams.dec();
    }

    /// Creates a watcher and answers the create request through `permit` (reserved in the
    /// stream queue beforehand, so the answer is queued before any event of the watcher).
    pub(crate) fn create_watch(&self, stream: StreamId, req: WatchCreate, permit: mpsc::Permit<'_, Outbound>) {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let revision = st.rev;
        let fail = |reason: String| Outbound::Created { watch_id: INVALID_WATCH_ID, revision, cancel_reason: Some(reason) };
        if req.start_revision < 0 {
            permit.send(fail(errors::compacted()));
            return;
        }
        let range = match KeyRange::from_request(req.key, req.range_end) {
            Ok(range) => range,
            Err(_) => return permit.send(fail(errors::EMPTY_WATCHER_RANGE.to_string())),
        };
        let Some(s) = st.streams.get_mut(&stream) else {
            return; // the stream is closing; nobody reads the answer
        };
        let watch_id = if req.watch_id == AUTO_WATCH_ID {
            while s.ids.contains_key(&s.next_auto_id) {
                s.next_auto_id += 1;
            }
            s.next_auto_id += 1;
            s.next_auto_id - 1
        } else if s.ids.contains_key(&req.watch_id) {
            return permit.send(fail(errors::WATCHER_DUPLICATE_ID.to_string()));
        } else {
            req.watch_id
        };
        permit.send(Outbound::Created { watch_id, revision, cancel_reason: None });

        let key = WatcherKey(st.next_watcher_key);
        st.next_watcher_key += 1;
        s.ids.insert(watch_id, key);
        // etcd: start 0 means "from the next revision"; a start beyond the current revision
        // is synced at once and skips events before it; anything else replays the log.
        let synced = req.start_revision == 0 || req.start_revision > revision;
        let next_rev = if req.start_revision == 0 { revision + 1 } else { req.start_revision };
        let options = WatchOptions {
            range,
            filters: req.filters,
            prev_kv: req.prev_kv,
            progress_notify: req.progress_notify,
            fragment: req.fragment,
        };
        let watcher = Watcher { stream, watch_id, options, next_rev, synced: false, sent_since_progress_tick: false };
        st.watchers.insert(key, watcher);
        self.metrics.watchers.inc();
        if synced {
            st.make_synced(key, &self.metrics);
        } else {
            st.make_unsynced(key, next_rev, &self.metrics);
            self.catchup_wake.notify_one();
        }
    }

    /// Cancels the stream's watcher `watch_id`; returns the revision for the response, or
    /// `None` when no such watcher exists (etcd sends nothing then).
    pub(crate) fn cancel_watch(&self, stream: StreamId, watch_id: i64) -> Option<i64> {
        let mut st = self.state.lock();
        let key = *st.streams.get(&stream)?.ids.get(&watch_id)?;
        st.remove_watcher(key, &self.metrics);
        Some(st.rev)
    }

    /// A `WatchProgressRequest`: when every watcher of the stream is synced, queue a
    /// progress notification with watch id -1 at the current revision; otherwise answer
    /// as soon as they are (etcd >= 3.5.8). With no watcher at all, etcd answers nothing.
    pub(crate) fn request_progress_all(&self, stream: StreamId) {
        let mut st = self.state.lock();
        if let Some(s) = st.streams.get_mut(&stream) {
            s.progress_deferred = true;
            st.maybe_send_deferred_progress(stream);
        }
    }

    /// The stream's periodic progress tick: every synced watcher that asked for
    /// `progress_notify` and got no event since the previous tick gets a progress
    /// notification (etcd elides it for watchers that did get events).
    pub(crate) fn progress_tick(&self, stream: StreamId) {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let Some(s) = st.streams.get(&stream) else { return };
        for (&watch_id, key) in &s.ids {
            let w = st.watchers.get_mut(key).expect("a stream's watcher exists");
            if !w.options.progress_notify {
                continue;
            }
            let elide = std::mem::take(&mut w.sent_since_progress_tick);
            if !elide && w.synced {
                // A full queue drops the notification, as etcd does: the next one follows.
                let _ = s.tx.try_send(Outbound::Progress { watch_id, revision: st.rev });
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn watcher_counts(&self) -> (usize, usize) {
        let st = self.state.lock();
        (st.watchers.len() - st.unsynced.len(), st.unsynced.len())
    }

    #[cfg(test)]
    pub(crate) fn stream_count(&self) -> usize {
        self.state.lock().streams.len()
    }
}

impl Drop for WatchHub {
    fn drop(&mut self) {
        if let Some(task) = self.catchup_task.get_mut().take() {
            task.abort();
        }
    }
}

impl HubState {
    /// Turns a watcher (new, synced or already unsynced) unsynced from `next_rev` on.
    pub(crate) fn make_unsynced(&mut self, key: WatcherKey, next_rev: i64, metrics: &WatchMetrics) {
        let w = self.watchers.get_mut(&key).expect("watcher exists");
        w.next_rev = next_rev;
        if !self.unsynced.insert(key) {
            return;
        }
        if w.synced {
            self.synced.remove(key, &w.options.range);
            w.synced = false;
        }
        self.streams.get_mut(&w.stream).expect("a watcher's stream exists").unsynced_count += 1;
        metrics.slow_watchers.inc();
    }

    /// Turns a new or unsynced watcher synced; answers a deferred progress request of its
    /// stream when it was the last unsynced one.
    pub(crate) fn make_synced(&mut self, key: WatcherKey, metrics: &WatchMetrics) {
        let w = self.watchers.get_mut(&key).expect("watcher exists");
        assert!(!w.synced, "watcher {key:?} synced twice");
        w.synced = true;
        self.synced.insert(key, &w.options.range);
        let stream = w.stream;
        if self.unsynced.remove(&key) {
            self.streams.get_mut(&stream).expect("a watcher's stream exists").unsynced_count -= 1;
            metrics.slow_watchers.dec();
            self.maybe_send_deferred_progress(stream);
        }
    }

    /// Forgets a watcher (canceled, compacted, or its stream closed).
    pub(crate) fn remove_watcher(&mut self, key: WatcherKey, metrics: &WatchMetrics) -> Option<Watcher> {
        let w = self.watchers.remove(&key)?;
        let was_unsynced = self.unsynced.remove(&key);
        if w.synced {
            self.synced.remove(key, &w.options.range);
        }
        let s = self.streams.get_mut(&w.stream).expect("a watcher's stream exists");
        s.ids.remove(&w.watch_id);
        metrics.watchers.dec();
        if was_unsynced {
            s.unsynced_count -= 1;
            metrics.slow_watchers.dec();
            self.maybe_send_deferred_progress(w.stream);
        }
        Some(w)
    }

    /// Answers a deferred `RequestProgress` if every watcher of the stream is synced now.
    fn maybe_send_deferred_progress(&mut self, stream: StreamId) {
        let rev = self.rev;
        let Some(s) = self.streams.get_mut(&stream) else { return };
        if !s.progress_deferred || s.unsynced_count > 0 {
            return;
        }
        if s.ids.is_empty() {
            s.progress_deferred = false;
            return;
        }
        // A full queue keeps the request deferred: it is answered at the next transition.
        if s.tx.try_send(Outbound::Progress { watch_id: INVALID_WATCH_ID, revision: rev }).is_ok() {
            s.progress_deferred = false;
        }
    }

    /// The stream queue of a watcher, for the catch-up task.
    pub(crate) fn stream_tx(&self, w: &Watcher) -> &mpsc::Sender<Outbound> {
        &self.streams.get(&w.stream).expect("a watcher's stream exists").tx
    }

    /// Unsynced watchers after `cursor`, wrapping around, at most `max`: successive calls
    /// with the last key served as cursor visit every unsynced watcher in turn.
    pub(crate) fn unsynced_batch(&self, cursor: Option<WatcherKey>, max: usize) -> Vec<WatcherKey> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        match cursor {
            None => self.unsynced.iter().copied().take(max).collect(),
            Some(c) => self
                .unsynced
                .range((Excluded(c), Unbounded))
                .chain(self.unsynced.range((Unbounded, Included(c))))
                .copied()
                .take(max)
                .collect(),
        }
    }
}
