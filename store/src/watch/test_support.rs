//! Test helpers: a real `MvccStore` in a tempdir with a hub, and writes that notify the
//! hub the way the applier does (commit, then `notify` with the committed events).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::Registry;
use tempfile::TempDir;
use tokio::sync::mpsc;

use super::{HeaderFn, WatchHub};
use crate::mvcc::{MvccConfig, MvccStore, WriteTxn};
use crate::proto::etcdserverpb::ResponseHeader;

/// How long a test waits for something that should happen before calling it a failure.
pub(crate) const TEST_DEADLINE: Duration = Duration::from_secs(60);

const TEST_CACHE_BYTES: usize = 8 << 20;
const TEST_WRITE_BUFFER_BYTES: usize = 4 << 20;

pub(crate) struct Fixture {
    pub(crate) mvcc: Arc<MvccStore>,
    pub(crate) hub: Arc<WatchHub>,
    /// The raft index each write pretends to apply.
    next_index: AtomicU64,
    _dir: TempDir,
}

impl Fixture {
    /// Must be called within a tokio runtime (the hub's catch-up task runs there).
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mvcc = Arc::new(open_store(dir.path()));
        let runtime = tokio::runtime::Handle::current();
        let hub = WatchHub::new(mvcc.clone(), &Registry::new(), &runtime).expect("hub");
        Self { mvcc, hub, next_index: AtomicU64::new(1), _dir: dir }
    }

    /// One write transaction, then `notify` as the applier does; returns the revision and
    /// how long `notify` took.
    fn apply(&self, notify: bool, ops: impl FnOnce(&mut WriteTxn<'_>)) -> (i64, Duration) {
        let mut txn = self.mvcc.write();
        ops(&mut txn);
        let events = txn.commit(self.next_index.fetch_add(1, Ordering::SeqCst)).expect("commit");
        let rev = self.mvcc.current_revision();
        let started = Instant::now();
        if notify {
            self.hub.notify(rev, &events);
        }
        (rev, started.elapsed())
    }

    pub(crate) fn put(&self, key: &str, value: &str) -> i64 {
        self.put_timed(key, value).0
    }

    pub(crate) fn put_timed(&self, key: &str, value: &str) -> (i64, Duration) {
        self.apply(true, |t| {
            t.put(key.as_bytes(), value.as_bytes(), 0).expect("put");
        })
    }

    /// Puts every pair in one transaction (one revision).
    pub(crate) fn put_all(&self, pairs: &[(&str, &str)]) -> i64 {
        self.apply(true, |t| {
            for (k, v) in pairs {
                t.put(k.as_bytes(), v.as_bytes(), 0).expect("put");
            }
        })
        .0
    }

    pub(crate) fn delete(&self, key: &str) -> i64 {
        self.apply(true, |t| {
            assert_eq!(t.delete_range(key.as_bytes(), &[]).expect("delete").len(), 1, "deleted a live key");
        })
        .0
    }

    /// A write the hub is not told about (as if it arrived with a raft snapshot).
    pub(crate) fn put_silently(&self, key: &str, value: &str) -> i64 {
        self.apply(false, |t| {
            t.put(key.as_bytes(), value.as_bytes(), 0).expect("put");
        })
        .0
    }

    pub(crate) fn compact(&self, rev: i64) {
        self.mvcc.compact(rev, self.next_index.fetch_add(1, Ordering::SeqCst)).expect("compact");
    }
}

/// A store with the fixture's small caches.
pub(crate) fn open_store(dir: &Path) -> MvccStore {
    let config = MvccConfig {
        block_cache_bytes: TEST_CACHE_BYTES,
        write_buffer_bytes: TEST_WRITE_BUFFER_BYTES,
        max_background_jobs: 1,
        ..MvccConfig::default()
    };
    MvccStore::open(dir, config).expect("open mvcc")
}

/// The next message of a queue, or a test failure after [`TEST_DEADLINE`].
pub(crate) async fn must_recv<T>(rx: &mut mpsc::Receiver<T>) -> T {
    match tokio::time::timeout(TEST_DEADLINE, rx.recv()).await {
        Ok(Some(msg)) => msg,
        Ok(None) => panic!("queue closed"),
        Err(_) => panic!("nothing received within {TEST_DEADLINE:?}"),
    }
}

pub(crate) fn header_fn() -> HeaderFn {
    Arc::new(|revision| ResponseHeader { cluster_id: 11, member_id: 22, revision, raft_term: 33 })
}
