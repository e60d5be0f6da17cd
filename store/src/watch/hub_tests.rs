//! Hub-level tests: a real `MvccStore` in a tempdir, the hub driven directly (no gRPC), and
//! the stream queue read by the test, so queue sizes and the moment of each call are
//! under the test's control.

use tokio::sync::mpsc;

use std::sync::Arc;

use super::hub::{Outbound, WatchCreate, WatchHub};
use super::test_support::{must_recv, open_store, Fixture};
use super::watcher::{Filters, StreamId};
use super::{errors, CATCHUP_EVENTS_PER_PAGE_MAX, INVALID_WATCH_ID};
use crate::mvcc::{Event, EventKind, MvccStore, WriteTxn};
use crate::snapshot::create_raft_snapshot;

/// A watch stream whose queue the test reads.
struct TestStream {
    id: StreamId,
    tx: mpsc::Sender<Outbound>,
    rx: mpsc::Receiver<Outbound>,
}

impl TestStream {
    fn open(hub: &WatchHub, capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity);
        let id = hub.open_stream(tx.clone());
        Self { id, tx, rx }
    }

    /// Creates a watch and returns the answer to the create request. Call with an empty queue.
    async fn create(&mut self, hub: &WatchHub, req: WatchCreate) -> Outbound {
        let permit = self.tx.reserve().await.expect("stream open");
        hub.create_watch(self.id, req, permit);
        self.next().await
    }

    async fn must_watch(&mut self, hub: &WatchHub, req: WatchCreate) -> i64 {
        match self.create(hub, req).await {
            Outbound::Created { watch_id, cancel_reason: None, .. } => watch_id,
            other => panic!("watch not created: {other:?}"),
        }
    }

    async fn next(&mut self) -> Outbound {
        must_recv(&mut self.rx).await
    }

    /// Events of `watch_id` up to revision `upto`, checking each message keeps a
    /// transaction whole and carries the revision of its last event or later.
    async fn events_until(&mut self, watch_id: i64, upto: i64) -> Vec<Event> {
        let mut got: Vec<Event> = Vec::new();
        while got.last().is_none_or(|e| e.kv.mod_revision < upto) {
            match self.next().await {
                Outbound::Events { watch_id: id, revision, events, .. } => {
                    assert_eq!(id, watch_id);
                    assert!(!events.is_empty(), "empty events message");
                    assert!(revision >= events.last().unwrap().kv.mod_revision);
                    got.extend(events);
                }
                other => panic!("expected events, got {other:?}"),
            }
        }
        got
    }

    fn assert_idle(&mut self) {
        if let Ok(msg) = self.rx.try_recv() {
            panic!("unexpected message {msg:?}");
        }
    }
}

fn prefix(p: &str) -> WatchCreate {
    let mut end = p.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    WatchCreate { key: p.as_bytes().to_vec(), range_end: end, ..Default::default() }
}

fn revs(events: &[Event]) -> Vec<i64> {
    events.iter().map(|e| e.kv.mod_revision).collect()
}

fn keys(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| String::from_utf8(e.kv.key.clone()).unwrap()).collect()
}

#[tokio::test]
async fn synced_watcher_gets_each_transaction_whole_and_in_order() {
    let f = Fixture::new();
    let mut s = TestStream::open(&f.hub, 16);
    let id = s.must_watch(&f.hub, prefix("k")).await;
    let r1 = f.put("k1", "a");
    let r2 = f.put_all(&[("k2", "b"), ("x", "ignored"), ("k3", "c")]);
    let r3 = f.delete("k1");
    for (rev, want_keys, kind) in
        [(r1, vec!["k1"], EventKind::Put), (r2, vec!["k2", "k3"], EventKind::Put), (r3, vec!["k1"], EventKind::Delete)]
    {
        match s.next().await {
            Outbound::Events { watch_id, revision, events, fragment } => {
                assert_eq!((watch_id, revision, fragment), (id, rev, false));
                assert_eq!(keys(&events), want_keys);
                assert!(events.iter().all(|e| e.kind == kind && e.kv.mod_revision == rev && e.prev_kv.is_none()));
            }
            other => panic!("expected events at {rev}, got {other:?}"),
        }
    }
    s.assert_idle();
}

#[tokio::test]
async fn past_start_revision_replays_the_log_then_goes_live() {
    let f = Fixture::new();
    let first = f.put("k", "0");
    for i in 1..20 {
        f.put("k", &i.to_string());
    }
    let mut s = TestStream::open(&f.hub, 64);
    let id = s.must_watch(&f.hub, WatchCreate { key: b"k".to_vec(), start_revision: first + 5, ..Default::default() }).await;
    let mut want: Vec<i64> = (first + 5..first + 20).collect();
    for i in 0..10 {
        want.push(f.put("k", &format!("live{i}")));
    }
    let got = s.events_until(id, *want.last().unwrap()).await;
    assert_eq!(revs(&got), want, "every revision exactly once, in order");
    assert_eq!(got[0].kv.value, b"5");
    assert_eq!(f.hub.watcher_counts(), (1, 0), "caught-up watcher is synced");
    s.assert_idle();
}

#[tokio::test]
async fn future_start_revision_skips_earlier_events() {
    let f = Fixture::new();
    let now = f.hub.current_revision();
    let mut s = TestStream::open(&f.hub, 16);
    let id = s.must_watch(&f.hub, WatchCreate { key: b"k".to_vec(), start_revision: now + 3, ..Default::default() }).await;
    assert_eq!(f.hub.watcher_counts(), (1, 0));
    f.put("k", "1");
    f.put("k", "2");
    let r3 = f.put("k", "3");
    let got = s.events_until(id, r3).await;
    assert_eq!(revs(&got), vec![r3]);
}

#[tokio::test]
async fn start_revision_zero_gets_only_new_events() {
    let f = Fixture::new();
    f.put("k", "old");
    let mut s = TestStream::open(&f.hub, 16);
    let id = s.must_watch(&f.hub, WatchCreate { key: b"k".to_vec(), ..Default::default() }).await;
    let r = f.put("k", "new");
    assert_eq!(revs(&s.events_until(id, r).await), vec![r]);
}

#[tokio::test]
async fn compacted_start_revision_is_canceled_with_compact_revision() {
    let f = Fixture::new();
    let first = f.put("k", "0");
    for i in 1..5 {
        f.put("k", &i.to_string());
    }
    let compact = first + 3;
    f.compact(compact);
    let mut s = TestStream::open(&f.hub, 16);
    let id = s.must_watch(&f.hub, WatchCreate { key: b"k".to_vec(), start_revision: first + 1, ..Default::default() }).await;
    assert_eq!(s.next().await, Outbound::Canceled { watch_id: id, revision: 0, compact_revision: compact });
    assert_eq!(f.hub.watcher_counts(), (0, 0), "compacted watcher is removed");
    assert_eq!(f.hub.metrics.watchers.get(), 0);
    assert_eq!(f.hub.metrics.slow_watchers.get(), 0);
}

#[tokio::test]
async fn filters_drop_puts_or_deletes() {
    let f = Fixture::new();
    let mut s = TestStream::open(&f.hub, 16);
    let no_put = Filters { no_put: true, no_delete: false };
    let no_delete = Filters { no_put: false, no_delete: true };
    let deletes = s.must_watch(&f.hub, WatchCreate { filters: no_put, ..prefix("k") }).await;
    let puts = s.must_watch(&f.hub, WatchCreate { filters: no_delete, ..prefix("k") }).await;
    let r1 = f.put("k1", "v");
    let r2 = f.delete("k1");
    let mut seen = Vec::new();
    for _ in 0..2 {
        match s.next().await {
            Outbound::Events { watch_id, events, .. } => seen.push((watch_id, revs(&events), events[0].kind)),
            other => panic!("expected events, got {other:?}"),
        }
    }
    seen.sort_by_key(|(id, ..)| *id);
    let mut want = vec![(deletes, vec![r2], EventKind::Delete), (puts, vec![r1], EventKind::Put)];
    want.sort_by_key(|(id, ..)| *id);
    assert_eq!(seen, want);
    s.assert_idle();
}

#[tokio::test]
async fn prev_kv_only_for_watchers_that_ask_live_and_from_the_log() {
    let f = Fixture::new();
    let r1 = f.put("k", "v1");
    let mut s = TestStream::open(&f.hub, 16);
    let with = s.must_watch(&f.hub, WatchCreate { prev_kv: true, start_revision: r1, ..prefix("k") }).await;
    let got = s.events_until(with, r1).await;
    assert_eq!(got[0].prev_kv, None, "a creation has no previous version");
    let without = s.must_watch(&f.hub, prefix("k")).await;
    let r2 = f.put("k", "v2");
    for _ in 0..2 {
        match s.next().await {
            Outbound::Events { watch_id, events, .. } if watch_id == with => {
                let prev = events[0].prev_kv.as_ref().expect("prev_kv asked for");
                assert_eq!((prev.value.as_slice(), prev.mod_revision), (&b"v1"[..], r1));
            }
            Outbound::Events { watch_id, events, .. } if watch_id == without => {
                assert_eq!((events[0].kv.mod_revision, events[0].prev_kv.clone()), (r2, None));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // From the log too: a new watcher replaying r2 with prev_kv.
    let replay = s.must_watch(&f.hub, WatchCreate { prev_kv: true, start_revision: r2, ..prefix("k") }).await;
    let got = s.events_until(replay, r2).await;
    assert_eq!(got[0].prev_kv.as_ref().map(|p| p.value.clone()), Some(b"v1".to_vec()));
}

#[tokio::test]
async fn victim_catches_up_from_the_log_without_gap_or_duplicate() {
    let f = Fixture::new();
    let mut s = TestStream::open(&f.hub, 2);
    let id = s.must_watch(&f.hub, prefix("k")).await;
    let mut want = Vec::new();
    for i in 0..50 {
        want.push(f.put(&format!("k{}", i % 7), &i.to_string()));
    }
    assert_eq!(f.hub.watcher_counts(), (0, 1), "a full queue makes the watcher a victim");
    assert_eq!(f.hub.metrics.slow_watchers.get(), 1);
    let got = s.events_until(id, *want.last().unwrap()).await;
    assert_eq!(revs(&got), want);
    for i in 0..5 {
        want.push(f.put("k", &format!("after{i}")));
    }
    let got_after = s.events_until(id, *want.last().unwrap()).await;
    assert_eq!(revs(&got_after), want[50..].to_vec());
    assert_eq!(f.hub.watcher_counts(), (1, 0));
    assert_eq!(f.hub.metrics.slow_watchers.get(), 0);
}

#[tokio::test]
async fn catch_up_pages_never_split_a_transaction() {
    let f = Fixture::new();
    let start = f.put("k/0000", "x");
    // One revision with more events than a page, between smaller ones.
    let keys_in_big_txn = CATCHUP_EVENTS_PER_PAGE_MAX + 10;
    let names: Vec<String> = (0..keys_in_big_txn).map(|i| format!("k/{i:04}")).collect();
    let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    let mut want = vec![(start, 1)];
    let almost_a_page = &pairs[..CATCHUP_EVENTS_PER_PAGE_MAX - 1];
    want.push((f.put_all(almost_a_page), almost_a_page.len()));
    want.push((f.put_all(&pairs), pairs.len()));
    want.push((f.put("k/end", "x"), 1));
    let mut s = TestStream::open(&f.hub, 64);
    let id = s.must_watch(&f.hub, WatchCreate { start_revision: start, ..prefix("k") }).await;
    let mut got: Vec<(i64, usize)> = Vec::new();
    while got.last().is_none_or(|(rev, _)| *rev < want.last().unwrap().0) {
        match s.next().await {
            Outbound::Events { watch_id, events, .. } => {
                assert_eq!(watch_id, id);
                let first = events[0].kv.mod_revision;
                // A revision may only start a message if the previous message ended before it.
                assert!(got.last().is_none_or(|(rev, _)| *rev < first), "revision split across messages");
                for e in events {
                    match got.last_mut() {
                        Some((rev, n)) if *rev == e.kv.mod_revision => *n += 1,
                        _ => got.push((e.kv.mod_revision, 1)),
                    }
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, want);
}

#[tokio::test]
async fn request_progress_waits_until_every_watcher_is_synced() {
    let f = Fixture::new();
    let r1 = f.put("k", "1");
    let r2 = f.put("k", "2");
    let mut s = TestStream::open(&f.hub, 16);
    let synced = s.must_watch(&f.hub, prefix("z")).await;
    // No await between these calls: the catch-up task cannot run in between, so the
    // watcher is still unsynced when the progress request arrives.
    let permit = s.tx.reserve().await.unwrap();
    f.hub.create_watch(s.id, WatchCreate { key: b"k".to_vec(), start_revision: r1, ..Default::default() }, permit);
    f.hub.request_progress_all(s.id);
    let catching_up = match s.rx.try_recv().unwrap() {
        Outbound::Created { watch_id, .. } => watch_id,
        other => panic!("unexpected {other:?}"),
    };
    s.assert_idle();
    assert_eq!(revs(&s.events_until(catching_up, r2).await), vec![r1, r2]);
    assert_eq!(s.next().await, Outbound::Progress { watch_id: INVALID_WATCH_ID, revision: r2 });
    assert_ne!(synced, catching_up);
    // All synced: answered at once.
    f.hub.request_progress_all(s.id);
    assert_eq!(s.rx.try_recv().unwrap(), Outbound::Progress { watch_id: INVALID_WATCH_ID, revision: r2 });
}

#[tokio::test]
async fn request_progress_with_no_watcher_answers_nothing() {
    let f = Fixture::new();
    let mut s = TestStream::open(&f.hub, 16);
    f.hub.request_progress_all(s.id);
    s.assert_idle();
}

#[tokio::test]
async fn request_progress_is_answered_when_a_watcher_syncs_without_events() {
    // etcd issue 17507: a watcher that catches up with nothing matching still releases
    // the deferred progress notification.
    let f = Fixture::new();
    let r1 = f.put("other", "1");
    let mut s = TestStream::open(&f.hub, 16);
    let permit = s.tx.reserve().await.unwrap();
    f.hub.create_watch(s.id, WatchCreate { key: b"k".to_vec(), start_revision: r1, ..Default::default() }, permit);
    f.hub.request_progress_all(s.id);
    assert!(matches!(s.next().await, Outbound::Created { .. }));
    assert_eq!(s.next().await, Outbound::Progress { watch_id: INVALID_WATCH_ID, revision: r1 });
}

#[tokio::test]
async fn progress_tick_skips_watchers_that_just_got_events() {
    let f = Fixture::new();
    let mut s = TestStream::open(&f.hub, 16);
    let notified = s.must_watch(&f.hub, WatchCreate { progress_notify: true, ..prefix("k") }).await;
    let _silent = s.must_watch(&f.hub, prefix("k")).await;
    let r = f.put("z", "unrelated");
    f.hub.progress_tick(s.id);
    assert_eq!(s.rx.try_recv().unwrap(), Outbound::Progress { watch_id: notified, revision: r });
    s.assert_idle();
    let r2 = f.put("k1", "v");
    s.next().await;
    s.next().await; // the events, to both watchers
    f.hub.progress_tick(s.id);
    s.assert_idle(); // elided: events went out since the last tick
    f.hub.progress_tick(s.id);
    assert_eq!(s.rx.try_recv().unwrap(), Outbound::Progress { watch_id: notified, revision: r2 });
}

#[tokio::test]
async fn create_errors_match_etcd() {
    let f = Fixture::new();
    let mut s = TestStream::open(&f.hub, 16);
    let rev = f.hub.current_revision();
    let failed = |reason: String| Outbound::Created { watch_id: INVALID_WATCH_ID, revision: rev, cancel_reason: Some(reason) };
    let id = s.must_watch(&f.hub, WatchCreate { watch_id: 7, key: b"a".to_vec(), ..Default::default() }).await;
    assert_eq!(id, 7);
    let dup = s.create(&f.hub, WatchCreate { watch_id: 7, key: b"b".to_vec(), ..Default::default() }).await;
    assert_eq!(dup, failed(errors::WATCHER_DUPLICATE_ID.to_string()));
    let empty = s.create(&f.hub, WatchCreate { key: b"b".to_vec(), range_end: b"a".to_vec(), ..Default::default() }).await;
    assert_eq!(empty, failed(errors::EMPTY_WATCHER_RANGE.to_string()));
    let negative = s.create(&f.hub, WatchCreate { key: b"b".to_vec(), start_revision: -1, ..Default::default() }).await;
    assert_eq!(negative, failed("etcdserver: mvcc: required revision has been compacted".to_string()));
    assert_eq!(f.hub.watcher_counts(), (1, 0));
}

#[tokio::test]
async fn auto_ids_start_at_zero_and_skip_ids_in_use() {
    let f = Fixture::new();
    let mut s = TestStream::open(&f.hub, 16);
    let mut ids = Vec::new();
    ids.push(s.must_watch(&f.hub, WatchCreate { watch_id: 1, key: b"a".to_vec(), ..Default::default() }).await);
    for _ in 0..3 {
        ids.push(s.must_watch(&f.hub, WatchCreate { key: b"a".to_vec(), ..Default::default() }).await);
    }
    assert_eq!(ids, vec![1, 0, 2, 3]);
    let mut other = TestStream::open(&f.hub, 16);
    assert_eq!(other.must_watch(&f.hub, WatchCreate { key: b"a".to_vec(), ..Default::default() }).await, 0);
}

#[tokio::test]
async fn cancel_stops_events_and_frees_the_id() {
    let f = Fixture::new();
    let mut s = TestStream::open(&f.hub, 16);
    let id = s.must_watch(&f.hub, WatchCreate { watch_id: 9, ..prefix("k") }).await;
    assert_eq!(f.hub.cancel_watch(s.id, id), Some(f.hub.current_revision()));
    assert_eq!(f.hub.cancel_watch(s.id, id), None, "unknown id: no answer, as etcd");
    f.put("k1", "v");
    s.assert_idle();
    assert_eq!(f.hub.watcher_counts(), (0, 0));
    assert_eq!(s.must_watch(&f.hub, WatchCreate { watch_id: id, ..prefix("k") }).await, id);
}

#[tokio::test]
async fn closing_a_stream_removes_all_its_watchers() {
    let f = Fixture::new();
    let r = f.put("k", "v");
    let mut s = TestStream::open(&f.hub, 1);
    s.must_watch(&f.hub, prefix("k")).await;
    s.must_watch(&f.hub, WatchCreate { start_revision: r, ..prefix("k") }).await;
    let mut other = TestStream::open(&f.hub, 16);
    let kept = other.must_watch(&f.hub, prefix("k")).await;
    assert_eq!(f.hub.metrics.watchers.get(), 3);
    f.hub.close_stream(s.id);
    f.hub.close_stream(s.id); // idempotent
    assert_eq!(f.hub.watcher_counts(), (1, 0));
    assert_eq!(f.hub.stream_count(), 1);
    assert_eq!(f.hub.metrics.watchers.get(), 1);
    assert_eq!(f.hub.metrics.slow_watchers.get(), 0);
    assert_eq!(f.hub.metrics.streams.get(), 1);
    let r2 = f.put("k", "v2");
    assert_eq!(revs(&other.events_until(kept, r2).await), vec![r2]);
}

#[tokio::test]
async fn restore_moves_synced_watchers_to_catch_up() {
    let f = Fixture::new();
    let mut s = TestStream::open(&f.hub, 16);
    let id = s.must_watch(&f.hub, prefix("k")).await;
    let r1 = f.put("k", "1");
    assert_eq!(revs(&s.events_until(id, r1).await), vec![r1]);
    // A write the hub was not told about, as if it came with an installed snapshot.
    let r2 = f.put_silently("k", "2");
    f.hub.on_restore();
    assert_eq!(f.hub.current_revision(), r2);
    assert_eq!(revs(&s.events_until(id, r2).await), vec![r2]);
    assert_eq!(f.hub.watcher_counts(), (1, 0));
}

/// A leader's store for snapshot tests: it applies what the follower (the fixture's
/// store) applies, then more on its own; its raft snapshot is installed into the follower.
struct Leader {
    mvcc: MvccStore,
    next_index: u64,
    dir: tempfile::TempDir,
}

impl Leader {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mvcc = open_store(&dir.path().join("leader"));
        Leader { mvcc, next_index: 1, dir }
    }

    fn apply(&mut self, ops: impl FnOnce(&mut WriteTxn<'_>)) -> i64 {
        let mut txn = self.mvcc.write();
        ops(&mut txn);
        txn.set_applied_term(2);
        txn.commit(self.next_index).unwrap();
        self.next_index += 1;
        self.mvcc.current_revision()
    }

    fn put(&mut self, key: &str, value: &str) -> i64 {
        self.apply(|t| {
            t.put(key.as_bytes(), value.as_bytes(), 0).unwrap();
        })
    }

    /// The same put on the follower (notifying its hub) and here, at the same revision.
    fn put_both(&mut self, f: &Fixture, key: &str, value: &str) -> i64 {
        let rev = f.put(key, value);
        assert_eq!(self.put(key, value), rev, "the histories diverged");
        rev
    }

    /// Installs this store's state into the follower as the applier does: the store,
    /// then the hub.
    fn install_into(&self, f: &Fixture) {
        let file = create_raft_snapshot(&self.mvcc, &self.dir.path().join("snap")).unwrap();
        f.mvcc.restore_from_snapshot(&file.path, &self.dir.path().join("tmp")).unwrap();
        f.hub.on_restore();
        assert_eq!(f.hub.current_revision(), self.mvcc.current_revision());
    }

    /// The leader's events on keys `k…` in `[from, to]`, as a watcher without prev_kv gets them.
    fn events(&self, from: i64, to: i64) -> Vec<Event> {
        self.mvcc.events(from, to, b"k", b"l", 0, false).unwrap()
    }
}

#[tokio::test]
async fn on_restore_resyncs_every_watcher_without_gaps_or_duplicates() {
    let f = Fixture::new();
    let mut leader = Leader::new();
    let r1 = leader.put_both(&f, "k1", "a");
    let r2 = leader.put_both(&f, "k2", "b");

    let mut live_s = TestStream::open(&f.hub, 64);
    let live = live_s.must_watch(&f.hub, prefix("k")).await; // synced, owed r2 + 1 on
    let mut replay_s = TestStream::open(&f.hub, 64);
    let replay = replay_s.must_watch(&f.hub, WatchCreate { start_revision: r1, ..prefix("k") }).await;
    assert_eq!(revs(&replay_s.events_until(replay, r2).await), vec![r1, r2]);
    let mut future_s = TestStream::open(&f.hub, 64);
    let future = future_s.must_watch(&f.hub, WatchCreate { start_revision: r2 + 3, ..prefix("k") }).await;
    // A victim: its one-slot queue is full when r4 comes, so it is unsynced, owed r4 on.
    let mut victim_s = TestStream::open(&f.hub, 1);
    let victim = victim_s.must_watch(&f.hub, prefix("k")).await;
    let r3 = leader.put_both(&f, "k3", "c");
    let r4 = leader.put_both(&f, "k4", "d");
    assert_eq!(f.hub.watcher_counts(), (3, 1));

    // Only the leader applies these; the follower gets them with the snapshot.
    leader.put("k5", "e");
    leader.apply(|t| {
        t.delete_range(b"k1", b"").unwrap();
        t.put(b"k6", b"f", 0).unwrap();
        t.put(b"other", b"ignored", 0).unwrap();
    });
    let r7 = leader.put("k2", "b2");
    leader.install_into(&f);
    let r8 = f.put("k7", "after the install");

    let after = |got: Vec<Event>| {
        assert_eq!(got.last().unwrap().kv.mod_revision, r8);
        got[..got.len() - 1].to_vec()
    };
    assert_eq!(after(live_s.events_until(live, r8).await), leader.events(r3, r7));
    assert_eq!(after(replay_s.events_until(replay, r8).await), leader.events(r3, r7));
    assert_eq!(after(future_s.events_until(future, r8).await), leader.events(r2 + 3, r7));
    assert_eq!(after(victim_s.events_until(victim, r8).await), leader.events(r3, r7));
    assert_eq!(revs(&leader.events(r3, r7)), vec![r3, r4, r4 + 1, r4 + 2, r4 + 2, r7]);
    for s in [&mut live_s, &mut replay_s, &mut future_s, &mut victim_s] {
        s.assert_idle();
    }
    assert_eq!(f.hub.watcher_counts(), (4, 0));
}

#[tokio::test]
async fn on_restore_cancels_watchers_whose_next_revision_was_compacted() {
    let f = Fixture::new();
    let mut leader = Leader::new();
    let r1 = leader.put_both(&f, "k", "1");
    let mut synced_s = TestStream::open(&f.hub, 16);
    let synced = synced_s.must_watch(&f.hub, prefix("k")).await; // owed r1 + 1 on
    let mut at_compact_s = TestStream::open(&f.hub, 16);
    let at_compact =
        at_compact_s.must_watch(&f.hub, WatchCreate { start_revision: r1 + 3, ..prefix("k") }).await;
    for i in 2..=5 {
        leader.put("k", &i.to_string());
    }
    let compact = r1 + 3;
    leader.mvcc.compact(compact, leader.next_index).unwrap();
    leader.next_index += 1;
    leader.install_into(&f);

    assert_eq!(synced_s.next().await, Outbound::Canceled { watch_id: synced, revision: 0, compact_revision: compact });
    // The compact revision itself can still be served (etcd too).
    let got = at_compact_s.events_until(at_compact, r1 + 4).await;
    assert_eq!(got, leader.events(compact, r1 + 4));
    assert_eq!(f.hub.watcher_counts(), (1, 0));
}

/// A catch-up read must not deliver what it read while an install was replacing the
/// store's contents. Here a watcher is created in the middle of an install, when the old
/// log is deleted and the new one not yet copied: its catch-up must wait for the install
/// instead of finding no events and skipping the revisions it was owed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_waits_for_an_install_in_progress() {
    use std::sync::atomic::Ordering;
    use std::sync::mpsc;
    use std::time::Instant;

    let f = Fixture::new();
    let mut leader = Leader::new();
    let first = leader.put_both(&f, "k", "0");
    for i in 1..10 {
        leader.put_both(&f, &format!("k{i}"), "common");
    }
    for i in 0..5 {
        leader.put(&format!("k{i}"), "leader only");
    }
    let leader_rev = leader.mvcc.current_revision();

    let (in_window_tx, in_window_rx) = mpsc::channel::<()>();
    let (resume_tx, resume_rx) = mpsc::channel::<()>();
    let (in_window_tx, resume_rx) = (parking_lot::Mutex::new(in_window_tx), parking_lot::Mutex::new(resume_rx));
    f.mvcc.set_install_hook(move || {
        in_window_tx.lock().send(()).unwrap();
        resume_rx.lock().recv().unwrap();
    });
    let leader = Arc::new(leader);
    let install = {
        let (leader, mvcc, hub) = (leader.clone(), f.mvcc.clone(), f.hub.clone());
        tokio::task::spawn_blocking(move || {
            let file = create_raft_snapshot(&leader.mvcc, &leader.dir.path().join("snap")).unwrap();
            mvcc.restore_from_snapshot(&file.path, &leader.dir.path().join("tmp")).unwrap();
            hub.on_restore();
        })
    };
    let in_window = tokio::task::spawn_blocking(move || in_window_rx.recv_timeout(super::test_support::TEST_DEADLINE));
    in_window.await.unwrap().expect("the install never reached its copy step");

    let mut s = TestStream::open(&f.hub, 64);
    let steps_before = f.hub.catchup_steps.load(Ordering::SeqCst);
    let id = s.must_watch(&f.hub, WatchCreate { start_revision: first, ..prefix("k") }).await;
    let deadline = Instant::now() + super::test_support::TEST_DEADLINE;
    while f.hub.catchup_steps.load(Ordering::SeqCst) == steps_before {
        assert!(Instant::now() < deadline, "the catch-up task never tried the watcher");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    resume_tx.send(()).unwrap();
    install.await.unwrap();

    let got = s.events_until(id, leader_rev).await;
    assert_eq!(got, leader.events(first, leader_rev), "every revision exactly once, in order");
    s.assert_idle();
}

/// Random histories, watchers and reading patterns against a plain model: every watcher
/// must see exactly the matching events from its start revision, in order, each message a
/// run of whole revisions, whatever mix of live delivery, victims and catch-up it went
/// through.
#[tokio::test]
async fn randomized_watchers_see_exactly_the_model_history() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeSet;

    const SEEDS: u64 = 8;
    const OPS_PER_SEED: usize = 250;
    const KEYS: [&str; 5] = ["a", "ab", "b", "b\0", "c"];

    struct ModelWatcher {
        stream: usize,
        id: i64,
        req: WatchCreate,
        /// First revision it must see.
        from: i64,
        got: Vec<(i64, Vec<u8>, EventKind)>,
    }

    for seed in 0..SEEDS {
        let mut rng = StdRng::seed_from_u64(seed);
        let f = Fixture::new();
        let mut history: Vec<Event> = Vec::new();
        let mut live: BTreeSet<&str> = BTreeSet::new();
        let mut streams: Vec<TestStream> = Vec::new();
        let mut watchers: Vec<ModelWatcher> = Vec::new();

        let drain = |streams: &mut Vec<TestStream>, watchers: &mut Vec<ModelWatcher>, max: usize| {
            for (si, s) in streams.iter_mut().enumerate() {
                for _ in 0..max {
                    let Ok(msg) = s.rx.try_recv() else { break };
                    let Outbound::Events { watch_id, revision, events, .. } = msg else {
                        panic!("seed {seed}: unexpected {msg:?}");
                    };
                    let w = watchers.iter_mut().find(|w| w.stream == si && w.id == watch_id).unwrap();
                    let first = events[0].kv.mod_revision;
                    assert!(w.got.last().is_none_or(|g| g.0 < first), "seed {seed}: revision split or repeated");
                    assert!(events.windows(2).all(|p| p[0].kv.mod_revision <= p[1].kv.mod_revision));
                    assert!(revision >= events.last().unwrap().kv.mod_revision);
                    w.got.extend(events.into_iter().map(|e| (e.kv.mod_revision, e.kv.key, e.kind)));
                }
            }
        };

        for _ in 0..OPS_PER_SEED {
            match rng.random_range(0..10) {
                0 if streams.len() < 6 => streams.push(TestStream::open(&f.hub, rng.random_range(1..6))),
                1 if !streams.is_empty() => {
                    let si = rng.random_range(0..streams.len());
                    let now = f.hub.current_revision();
                    let start = match rng.random_range(0..3) {
                        0 => 0,
                        1 => rng.random_range(1..=now.max(1)),
                        _ => now + rng.random_range(1..4),
                    };
                    let (key, range_end) = match rng.random_range(0..3) {
                        0 => (KEYS[rng.random_range(0..KEYS.len())].as_bytes().to_vec(), vec![]),
                        1 => (b"a".to_vec(), b"b".to_vec()),
                        _ => (b"b".to_vec(), vec![0]),
                    };
                    let filters = Filters { no_put: rng.random_bool(0.2), no_delete: rng.random_bool(0.2) };
                    let req = WatchCreate { key, range_end, start_revision: start, filters, ..Default::default() };
                    // Only create on a stream with an empty queue so the answer is next.
                    drain(&mut streams, &mut watchers, usize::MAX);
                    if streams[si].rx.is_empty() && streams[si].tx.capacity() > 0 {
                        let permit = streams[si].tx.try_reserve().unwrap();
                        f.hub.create_watch(streams[si].id, req.clone(), permit);
                        let Ok(Outbound::Created { watch_id, revision, cancel_reason: None }) = streams[si].rx.try_recv()
                        else {
                            panic!("seed {seed}: create failed");
                        };
                        let from = if start == 0 { revision + 1 } else { start };
                        watchers.push(ModelWatcher { stream: si, id: watch_id, req, from, got: Vec::new() });
                    }
                }
                2 => {
                    let max = rng.random_range(0..4);
                    drain(&mut streams, &mut watchers, max);
                }
                3 => tokio::task::yield_now().await,
                _ => {
                    let mut txn = f.mvcc.write();
                    for _ in 0..rng.random_range(1..3) {
                        let key = KEYS[rng.random_range(0..KEYS.len())];
                        if live.contains(key) && rng.random_bool(0.3) {
                            txn.delete_range(key.as_bytes(), &[]).unwrap();
                            live.remove(key);
                        } else {
                            txn.put(key.as_bytes(), b"v", 0).unwrap();
                            live.insert(key);
                        }
                    }
                    let events = txn.commit(history.len() as u64 + 1).unwrap();
                    let rev = f.mvcc.current_revision();
                    f.hub.notify(rev, &events);
                    history.extend(events);
                }
            }
        }

        let deadline = std::time::Instant::now() + super::test_support::TEST_DEADLINE;
        loop {
            drain(&mut streams, &mut watchers, usize::MAX);
            if f.hub.watcher_counts().1 == 0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "seed {seed}: watchers never caught up");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        drain(&mut streams, &mut watchers, usize::MAX);

        for w in &watchers {
            let range = super::watcher::KeyRange::from_request(w.req.key.clone(), w.req.range_end.clone()).unwrap();
            let want: Vec<(i64, Vec<u8>, EventKind)> = history
                .iter()
                .filter(|e| e.kv.mod_revision >= w.from && range.contains(&e.kv.key) && w.req.filters.accepts(e))
                .map(|e| (e.kv.mod_revision, e.kv.key.clone(), e.kind))
                .collect();
            assert_eq!(w.got, want, "seed {seed}: watcher {} from {} {:?}", w.id, w.from, w.req);
        }
    }
}
