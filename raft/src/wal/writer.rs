//! The group-commit writer: one OS thread owns the `Wal`, takes every task queued while the
//! previous fsync ran, appends them all, fsyncs once, then completes each task in order.
//!
//! raft-rs's async-ready path reads entries back from `Storage` as soon as
//! `advance_append_async` returns, before they are durable. So a task is applied to the
//! in-memory `DurableStorage` when it is *submitted* (under the storage lock, together with
//! enqueueing, so memory and disk see tasks in the same order); the thread only makes it
//! durable, and `on_done` tells raft-rs (`on_persist_ready`) when it is.
//!
//! It is a plain thread rather than a tokio task because fsync blocks for milliseconds and
//! must never hold up a tokio worker.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use prometheus::{Histogram, HistogramOpts, IntCounter, Registry};
use raft::eraftpb::{Entry, HardState, SnapshotMetadata};
use tokio::sync::mpsc;
use tracing::{error, warn};

use super::{Error, LogBatch, Result, Wal};
use crate::storage::DurableStorage;

/// Tasks waiting for the writer at most. Each raft `Ready` is one task and the node waits
/// for queue space before advancing, so this bounds unpersisted work (and memory) to about
/// this many readies; 1024 keeps the queue from ever being the limit of a group commit.
pub const WRITE_QUEUE_TASKS_MAX: usize = 1024;
/// Tasks appended under one fsync at most, so one slow batch cannot delay the completions
/// of the tasks in it without bound.
pub const GROUP_COMMIT_TASKS_MAX: usize = 256;

/// An fsync slower than this is logged as a warning ("slow fdatasync", etcd's message and
/// its `warnSyncDuration`): a disk that stalls this long delays every write behind it.
pub const SLOW_FSYNC_WARN: Duration = Duration::from_secs(1);

/// What the node hands to the writer for one raft `Ready`.
pub struct PersistTask {
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    /// A snapshot marker: the state machine holds everything up to its index. The writer
    /// drops the entries it covers and deletes WAL segments no longer needed.
    pub snapshot: Option<SnapshotMetadata>,
    /// Called on the writer thread once the task is durable (or failed). Keep it short: it
    /// delays the completions after it.
    pub on_done: Box<dyn FnOnce(Result<(), Error>) + Send>,
}

impl std::fmt::Debug for PersistTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistTask")
            .field("entries", &self.entries.len())
            .field("hard_state", &self.hard_state)
            .field("snapshot", &self.snapshot)
            .finish_non_exhaustive()
    }
}

impl PersistTask {
    pub fn batch(&self) -> LogBatch<'_> {
        LogBatch {
            snapshot: self.snapshot.as_ref(),
            entries: &self.entries,
            hard_state: self.hard_state.as_ref(),
        }
    }
}

/// Counters of the writer since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub fsyncs: u64,
    pub tasks: u64,
    pub write_bytes: u64,
}

#[derive(Default)]
struct Shared {
    poisoned: AtomicBool,
    fsyncs: AtomicU64,
    tasks: AtomicU64,
    write_bytes: AtomicU64,
}

/// The writer's Prometheus metrics, named as etcd's so its dashboards work. Register them
/// once per registry and pass clones in `WalConfig::metrics`: a reopened WAL keeps counting
/// in the same series.
#[derive(Clone)]
pub struct WalMetrics {
    fsync_duration: Histogram,
    write_bytes: IntCounter,
    tasks_per_fsync: Histogram,
}

impl std::fmt::Debug for WalMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalMetrics")
            .field("fsyncs", &self.fsync_duration.get_sample_count())
            .finish_non_exhaustive()
    }
}

impl WalMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<WalMetrics> {
        // etcd's buckets: 1ms .. 8s.
        let fsync_buckets = prometheus::exponential_buckets(0.001, 2.0, 14).expect("valid buckets");
        let batch_buckets = prometheus::exponential_buckets(1.0, 2.0, 12).expect("valid buckets");
        let m = WalMetrics {
            fsync_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "etcd_disk_wal_fsync_duration_seconds",
                    "The latency distributions of fsync called by WAL.",
                )
                .buckets(fsync_buckets),
            )
            .expect("valid histogram"),
            write_bytes: IntCounter::new(
                "etcd_disk_wal_write_bytes_total",
                "Total number of bytes written in WAL.",
            )
            .expect("valid counter"),
            tasks_per_fsync: Histogram::with_opts(
                HistogramOpts::new(
                    "skiff_raft_wal_tasks_per_fsync",
                    "Persist tasks made durable by one WAL fsync (group commit).",
                )
                .buckets(batch_buckets),
            )
            .expect("valid histogram"),
        };
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            registry
                .register(c)
                .map_err(|e| Error::Config(format!("registering wal metrics: {e}")))
        };
        reg(Box::new(m.fsync_duration.clone()))?;
        reg(Box::new(m.write_bytes.clone()))?;
        reg(Box::new(m.tasks_per_fsync.clone()))?;
        Ok(m)
    }

    /// The process-wide metrics in the default registry, registered on first use.
    pub fn default_registry() -> Result<WalMetrics> {
        static DEFAULT: OnceLock<Result<WalMetrics>> = OnceLock::new();
        DEFAULT
            .get_or_init(|| WalMetrics::register(prometheus::default_registry()))
            .clone()
    }
}

/// Handle to the writer thread. Dropping it lets the thread finish the queued tasks and exit.
pub struct LogWriter {
    tx: Option<mpsc::Sender<PersistTask>>,
    storage: DurableStorage,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl LogWriter {
    /// Starts the writer thread for `wal`; `storage` is the in-memory side tasks are applied
    /// to on submission (the one `DurableStorage::open` built from the same WAL).
    pub fn spawn(wal: Wal, storage: DurableStorage) -> Result<LogWriter> {
        let metrics = match wal.metrics() {
            Some(m) => m.clone(),
            None => WalMetrics::default_registry()?,
        };
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_TASKS_MAX);
        let shared = Arc::new(Shared::default());
        let thread_shared = shared.clone();
        let thread = thread::Builder::new()
            .name("raft-wal-writer".into())
            .spawn(move || run(wal, rx, thread_shared, metrics))
            .map_err(|e| Error::Io {
                file: "raft-wal-writer thread".into(),
                source: e.into(),
            })?;
        Ok(LogWriter {
            tx: Some(tx),
            storage,
            shared,
            thread: Some(thread),
        })
    }

    /// Queues `task` without waiting: `QueueFull` if the queue is full (the task is dropped
    /// and its `on_done` never called). On `Ok` the task is already visible through the
    /// storage and `on_done` will be called exactly once.
    pub fn submit(&self, task: PersistTask) -> Result<()> {
        let permit = self.tx()?.try_reserve().map_err(|e| match e {
            mpsc::error::TrySendError::Full(()) => Error::QueueFull {
                tasks_max: WRITE_QUEUE_TASKS_MAX,
            },
            mpsc::error::TrySendError::Closed(()) => Error::WriterStopped,
        })?;
        self.enqueue(permit, task)
    }

    /// Queues `task`, waiting (asynchronously) for queue space: back pressure for the node.
    pub async fn submit_async(&self, task: PersistTask) -> Result<()> {
        let permit = self
            .tx()?
            .reserve()
            .await
            .map_err(|_| Error::WriterStopped)?;
        self.enqueue(permit, task)
    }

    /// Queues `task`, blocking the thread while the queue is full. Not for tokio workers.
    pub fn submit_blocking(&self, task: PersistTask) -> Result<()> {
        let permit = block_on(self.tx()?.reserve()).map_err(|_| Error::WriterStopped)?;
        self.enqueue(permit, task)
    }

    fn tx(&self) -> Result<&mpsc::Sender<PersistTask>> {
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        self.tx.as_ref().ok_or(Error::WriterStopped)
    }

    fn enqueue(&self, permit: mpsc::Permit<'_, PersistTask>, task: PersistTask) -> Result<()> {
        self.storage.apply_then(task, |task| permit.send(task))
    }

    pub fn stats(&self) -> WriterStats {
        WriterStats {
            fsyncs: self.shared.fsyncs.load(Ordering::Relaxed),
            tasks: self.shared.tasks.load(Ordering::Relaxed),
            write_bytes: self.shared.write_bytes.load(Ordering::Relaxed),
        }
    }

    /// Whether a write or fsync failed; every later task fails with `Error::Poisoned`.
    pub fn is_poisoned(&self) -> bool {
        self.shared.poisoned.load(Ordering::Acquire)
    }

    /// Stops taking tasks, waits until the queued ones are completed and the thread exited.
    pub fn shutdown(mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                error!("wal writer thread panicked");
            }
        }
    }
}

fn run(
    mut wal: Wal,
    mut rx: mpsc::Receiver<PersistTask>,
    shared: Arc<Shared>,
    metrics: WalMetrics,
) {
    let mut batch = Vec::with_capacity(GROUP_COMMIT_TASKS_MAX);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < GROUP_COMMIT_TASKS_MAX {
            match rx.try_recv() {
                Ok(task) => batch.push(task),
                Err(_) => break,
            }
        }
        let result = persist(&mut wal, &batch, &shared, &metrics);
        if let Err(e) = &result {
            if !matches!(e, Error::Poisoned) {
                error!(error = %e, "wal write failed; the raft log is poisoned");
            }
            shared.poisoned.store(true, Ordering::Release);
        }
        let compact_to = batch
            .iter()
            .filter_map(|t| t.snapshot.as_ref().map(|m| m.index))
            .max();
        for task in batch.drain(..) {
            (task.on_done)(result.clone());
        }
        // Deleting old segments (unlinks and a directory fsync) comes after the
        // completions: the tasks are durable already, and their writers should not wait
        // for disk space to be given back.
        if let (Ok(()), Some(index)) = (&result, compact_to) {
            // A segment that could not be deleted only costs disk space until the next
            // marker retries.
            if let Err(e) = wal.compact(index) {
                error!(error = %e, "wal compaction failed");
            }
        }
    }
}

/// Appends every task and fsyncs once.
fn persist(
    wal: &mut Wal,
    batch: &[PersistTask],
    shared: &Shared,
    metrics: &WalMetrics,
) -> Result<()> {
    let mut bytes = 0;
    for task in batch {
        bytes += wal.append(&task.batch())?;
    }
    // Tasks with nothing to write (a ready with only messages) cost no fsync, nor do tasks
    // that only move the commit index (synced with the next write that needs it).
    let needs_fsync = wal.must_sync();
    let started = Instant::now();
    if needs_fsync {
        wal.sync()?;
        let took = started.elapsed();
        metrics.fsync_duration.observe(took.as_secs_f64());
        if took > SLOW_FSYNC_WARN {
            warn!(took = ?took, expected_duration = ?SLOW_FSYNC_WARN, "slow fdatasync");
        }
        metrics.tasks_per_fsync.observe(batch.len() as f64);
        shared.fsyncs.fetch_add(1, Ordering::Relaxed);
    }
    metrics.write_bytes.inc_by(bytes);
    shared
        .tasks
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    shared.write_bytes.fetch_add(bytes, Ordering::Relaxed);
    Ok(())
}

/// Runs a future to completion on the current thread. Enough for a tokio channel's
/// `reserve`, which needs no runtime, only a waker.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}
