//! Many concurrent submitters share fsyncs, every task completes, and the data is on disk.

use std::sync::mpsc;
use std::sync::Mutex;

use skiff_raft::storage::{DurableStorage, PersistTask};

use crate::{config, config_with_registry, entry};

const SUBMITTERS: usize = 64;
const TASKS_PER_SUBMITTER: usize = 8;

#[test]
fn concurrent_submitters_share_fsyncs_and_everything_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let (config, registry) = config_with_registry(dir.path());
    let (storage, writer) = DurableStorage::open(config.clone()).unwrap();
    // Log order is submission order, so index assignment and submission happen under one
    // lock; the wait for durability happens outside it, where submitters pile up.
    let next_index = Mutex::new(1u64);
    std::thread::scope(|s| {
        for t in 0..SUBMITTERS {
            let (writer, next_index) = (&writer, &next_index);
            s.spawn(move || {
                for _ in 0..TASKS_PER_SUBMITTER {
                    let (done_tx, done_rx) = mpsc::channel();
                    {
                        let mut next = next_index.lock().unwrap();
                        let task = PersistTask {
                            entries: vec![entry(*next, 1, format!("t{t}").as_bytes())],
                            hard_state: None,
                            snapshot: None,
                            on_done: Box::new(move |r| done_tx.send(r).unwrap()),
                        };
                        writer.submit_blocking(task).unwrap();
                        *next += 1;
                    }
                    done_rx.recv().unwrap().unwrap();
                }
            });
        }
    });
    let tasks = (SUBMITTERS * TASKS_PER_SUBMITTER) as u64;
    let stats = writer.stats();
    assert_eq!(stats.tasks, tasks);
    assert!(
        stats.fsyncs < tasks,
        "{} fsyncs for {tasks} tasks: no group commit",
        stats.fsyncs
    );
    assert!(stats.write_bytes > 0);
    let families = registry.gather();
    let fsync_hist = families
        .iter()
        .find(|f| f.name() == "etcd_disk_wal_fsync_duration_seconds")
        .unwrap();
    assert_eq!(
        fsync_hist.get_metric()[0]
            .get_histogram()
            .get_sample_count(),
        stats.fsyncs
    );
    assert_eq!(
        fsync_hist.get_metric()[0]
            .get_histogram()
            .get_bucket()
            .len(),
        14
    );
    assert_eq!(raft::Storage::last_index(&storage).unwrap(), tasks);
    writer.shutdown();

    let (storage, writer) = DurableStorage::open(config).unwrap();
    let got = raft::Storage::entries(
        &storage,
        1,
        tasks + 1,
        None,
        raft::GetEntriesContext::empty(false),
    )
    .unwrap();
    assert_eq!(got.len() as u64, tasks);
    assert!(got.iter().enumerate().all(|(i, e)| e.index == i as u64 + 1));
    writer.shutdown();
}

#[test]
fn a_task_that_leaves_a_gap_is_refused_and_never_completed() {
    let dir = tempfile::tempdir().unwrap();
    let (_storage, writer) = DurableStorage::open(config(dir.path())).unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let task = PersistTask {
        entries: vec![entry(2, 1, b"gap")],
        hard_state: None,
        snapshot: None,
        on_done: Box::new(move |r| done_tx.send(r).unwrap()),
    };
    // A task that would leave a gap in the log is refused up front, and never completed.
    assert!(writer.submit(task).is_err());
    assert!(done_rx.try_recv().is_err());
    assert!(!writer.is_poisoned());
    writer.shutdown();
}
