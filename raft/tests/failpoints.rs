//! Failures injected at each durability step of the WAL writer. Failpoints are
//! process-global, so these tests have their own binary (and run one at a time under
//! `FailScenario`'s lock). Run: `scripts/cargo test -p skiff-raft --features failpoints`.
#![cfg(feature = "failpoints")]

use std::sync::mpsc;
use std::time::Duration;

use raft::eraftpb::Entry;
use raft::Storage;
use skiff_raft::storage::{DurableStorage, LogWriter, PersistTask};
use skiff_raft::wal::{Error, WalConfig, WalMetrics};

const DONE_TIMEOUT: Duration = Duration::from_secs(10);

fn config(dir: &std::path::Path) -> WalConfig {
    let metrics = WalMetrics::register(&prometheus::Registry::new()).unwrap();
    WalConfig {
        metrics: Some(metrics),
        ..WalConfig::new(dir)
    }
}

/// Submits one entry and waits for its completion.
fn persist(writer: &LogWriter, index: u64) -> Result<(), Error> {
    let (tx, rx) = mpsc::channel();
    let task = PersistTask {
        entries: vec![Entry {
            index,
            term: 1,
            data: vec![index as u8].into(),
            ..Default::default()
        }],
        hard_state: None,
        snapshot: None,
        on_done: Box::new(move |r| tx.send(r).unwrap()),
    };
    writer.submit_blocking(task)?;
    rx.recv_timeout(DONE_TIMEOUT).expect("on_done called")
}

/// Injects `action` at `failpoint` for the second task, then checks that the task failed,
/// the writer refuses later work, and a restart recovers `entries_after_restart` entries.
fn check_failure(failpoint: &str, entries_after_restart: u64) {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let (_, writer) = DurableStorage::open(config(dir.path())).unwrap();
    persist(&writer, 1).unwrap();

    fail::cfg(failpoint, "return").unwrap();
    let err = persist(&writer, 2).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{failpoint}: {err}");
    fail::remove(failpoint);

    // Poisoned: nothing more is accepted, even with the fault gone.
    assert!(writer.is_poisoned());
    assert!(matches!(persist(&writer, 3), Err(Error::Poisoned)));
    writer.shutdown();
    scenario.teardown();

    let (storage, writer) = DurableStorage::open(config(dir.path())).unwrap();
    assert_eq!(
        storage.last_index().unwrap(),
        entries_after_restart,
        "{failpoint}"
    );
    writer.shutdown();
}

#[test]
fn failure_before_append_writes_nothing() {
    check_failure("wal::before_append", 1);
}

#[test]
fn failure_after_append_fails_the_task_though_the_page_cache_has_it() {
    // Written but not synced: the process did not crash, so the bytes are still there.
    check_failure("wal::after_append", 2);
}

#[test]
fn failure_before_fsync_fails_the_task() {
    check_failure("wal::before_fsync", 2);
}

#[test]
fn failure_after_fsync_fails_the_task_though_it_is_durable() {
    check_failure("wal::after_fsync", 2);
}
