//! The catch-up task: brings unsynced watchers (new ones with a past start revision, and
//! victims whose stream queue was full) up to the hub's revision by replaying the MVCC
//! change log, one bounded page per watcher per round, then hands them back to `notify`.
//!
//! One task per hub serves every unsynced watcher round-robin, so a watcher with a long
//! history cannot starve the others, and a client that does not read costs one capacity
//! check per retry, not a disk read. Log reads run on the blocking pool: they are disk IO.
//!
//! The handoff rule is in `hub.rs`'s module doc: read `[from, to]` without the lock, then
//! under the lock queue it, set `next_rev = to + 1`, and turn synced only if no revision
//! was notified meanwhile (`next_rev > rev`).
//!
//! A snapshot install replaces the store's contents under readers' feet, so a read that
//! overlapped one may hold a mix of two states (a gap, typically). Such a read is thrown
//! away: the store's `restore_seq` seqlock is odd during an install and changes at its
//! start and end; a page is used only if the value was even before the read and is the
//! same after.

use std::sync::{Arc, Weak};

use tokio::sync::Notify;

use super::hub::{HubState, Outbound, WatchHub};
use super::metrics::WatchMetrics;
use super::watcher::{WatchOptions, WatcherKey};
use super::{CATCHUP_EVENTS_PER_PAGE_MAX, CATCHUP_RETRY_INTERVAL, CATCHUP_WATCHERS_PER_ROUND_MAX};
use crate::mvcc::{self, Event, MvccStore};

/// What one catch-up step achieved for a watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Sent a page, became synced, or is gone: worth another round right away.
    Progressed,
    /// Could not move: its stream queue is full, or the log read failed. Retried after
    /// [`CATCHUP_RETRY_INTERVAL`].
    Blocked,
}

/// The catch-up task's loop; ends when the hub is dropped.
pub(crate) async fn run(hub: Weak<WatchHub>, wake: Arc<Notify>) {
    let mut cursor = None;
    loop {
        let Some(hub) = hub.upgrade() else { return };
        let batch = hub.state.lock().unsynced_batch(cursor, CATCHUP_WATCHERS_PER_ROUND_MAX);
        let mut progressed = false;
        for &key in &batch {
            cursor = Some(key);
            progressed |= hub.catch_up_step(key).await == Step::Progressed;
            #[cfg(test)]
            hub.catchup_steps.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        drop(hub); // the hub must be able to drop while this task waits
        if batch.is_empty() {
            wake.notified().await;
        } else if progressed {
            tokio::task::yield_now().await;
        } else {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(CATCHUP_RETRY_INTERVAL) => {}
            }
        }
    }
}

/// The part of a watcher a log read needs, copied out of the hub lock.
struct Page {
    from: i64,
    to: i64,
    options: WatchOptions,
}

impl WatchHub {
    /// Moves one unsynced watcher forward by at most one page.
    async fn catch_up_step(&self, key: WatcherKey) -> Step {
        // Before anything is read (the log read's RocksDB snapshot comes later).
        let restore_seq = self.mvcc.restore_seq();
        if !restore_seq.is_multiple_of(2) {
            return Step::Blocked; // a snapshot install is replacing the contents
        }
        // Read outside the hub lock: the MVCC store has its own.
        let compact_revision = self.mvcc.compact_revision();
        let page = {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            let Some(w) = st.watchers.get(&key) else { return Step::Progressed };
            if w.synced {
                return Step::Progressed;
            }
            if st.stream_tx(w).capacity() == 0 {
                return Step::Blocked; // nothing could be queued; spare the disk
            }
            // etcd (`chooseAll`): a watcher that needs a revision below the compaction
            // point is canceled; the compact revision itself can still be served.
            if w.next_rev < compact_revision {
                return cancel_compacted(st, key, compact_revision, &self.metrics);
            }
            if w.next_rev > st.rev {
                st.make_synced(key, &self.metrics);
                return Step::Progressed;
            }
            Page { from: w.next_rev, to: st.rev, options: w.options.clone() }
        };

        let mvcc = self.mvcc.clone();
        let (from, options) = (page.from, page.options.clone());
        let read = tokio::task::spawn_blocking(move || read_page(&mvcc, &page))
            .await
            .expect("watch catch-up log read panicked");

        let mut guard = self.state.lock();
        let st = &mut *guard;
        // Canceled, or its stream closed, while the log was read: nothing to deliver.
        let Some(w) = st.watchers.get_mut(&key) else { return Step::Progressed };
        assert!(
            !w.synced && w.next_rev == from,
            "unsynced watcher {key:?} moved while the catch-up task owned it"
        );
        if self.mvcc.restore_seq() != restore_seq {
            // A snapshot install overlapped the read (or the compaction check): redo both.
            return Step::Progressed;
        }
        let (events, upto) = match read {
            Ok(page) => page,
            Err(mvcc::Error::Compacted) => {
                // Compacted between the check above and the read.
                return cancel_compacted(st, key, self.mvcc.compact_revision(), &self.metrics);
            }
            Err(e) => {
                tracing::warn!(watch_id = w.watch_id, from, error = %e, "watch catch-up: change log read failed");
                return Step::Blocked;
            }
        };
        let events = options.select(&events);
        if !events.is_empty() {
            let count = events.len();
            let msg = Outbound::Events { watch_id: w.watch_id, revision: upto, events, fragment: options.fragment };
            let tx = &st.streams.get(&w.stream).expect("a watcher's stream exists").tx;
            if tx.try_send(msg).is_err() {
                return Step::Blocked; // the page is read again next time
            }
            self.metrics.pending_events.add(count as i64);
            w.sent_since_progress_tick = true;
        }
        w.next_rev = upto + 1;
        if w.next_rev > st.rev {
            st.make_synced(key, &self.metrics);
        }
        Step::Progressed
    }
}

/// Reads the next page of a watcher's events: revisions `[from, upto]` with `upto <= to`,
/// prev_kv as the watcher asked; filters are applied by the caller. `MvccStore::events`
/// treats the limit as soft and never splits a revision (a transaction larger than a page
/// comes whole), so a full page covers exactly the revisions up to its last event.
fn read_page(mvcc: &MvccStore, page: &Page) -> mvcc::Result<(Vec<Event>, i64)> {
    let (key, range_end) = page.options.range.as_mvcc_range();
    let events =
        mvcc.events(page.from, page.to, key, range_end, CATCHUP_EVENTS_PER_PAGE_MAX, page.options.prev_kv)?;
    let upto = match events.last() {
        Some(last) if events.len() >= CATCHUP_EVENTS_PER_PAGE_MAX => last.kv.mod_revision,
        _ => page.to,
    };
    Ok((events, upto))
}

/// Sends etcd's compaction response (`compact_revision` set, canceled) and removes the
/// watcher; with a full queue, the watcher waits and this is retried (as etcd does).
fn cancel_compacted(st: &mut HubState, key: WatcherKey, compact_revision: i64, metrics: &WatchMetrics) -> Step {
    let w = &st.watchers[&key];
    // etcd leaves the header revision of this response at 0.
    let msg = Outbound::Canceled { watch_id: w.watch_id, revision: 0, compact_revision };
    if st.stream_tx(w).try_send(msg).is_err() {
        return Step::Blocked;
    }
    st.remove_watcher(key, metrics);
    Step::Progressed
}
