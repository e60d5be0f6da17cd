//! WAL append + fsync with group commit: `writers` threads each submit one entry and wait
//! for it to be durable before the next, as that many concurrent proposals would. The
//! writer thread appends everything queued during the previous fsync and fsyncs once, so
//! fsyncs per entry fall as writers grow. Throughput is entries made durable per second.

use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use skiff_raft::raft::eraftpb::Entry;
use skiff_raft::storage::DurableStorage;
use skiff_raft::wal::{PersistTask, WalConfig};

const ENTRY_BYTES: usize = 256;

fn group_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal/append+fsync");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for writers in [1usize, 8, 64, 512] {
        let dir = tempfile::tempdir().unwrap();
        let (_storage, writer) =
            DurableStorage::open(WalConfig::new(dir.path().join("wal"))).unwrap();
        let writer = Arc::new(writer);
        // Entries must reach the writer in index order: the next index and the submission
        // happen under one lock (the raft node is the single submitter in the server).
        let next_index = Arc::new(Mutex::new(1u64));
        group.throughput(Throughput::Elements(writers as u64));
        group.bench_function(BenchmarkId::from_parameter(writers), |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                std::thread::scope(|scope| {
                    for _ in 0..writers {
                        let writer = Arc::clone(&writer);
                        let next_index = Arc::clone(&next_index);
                        scope.spawn(move || {
                            for _ in 0..iters {
                                let (done_tx, done_rx) = mpsc::sync_channel(1);
                                {
                                    let mut next = next_index.lock().unwrap();
                                    let entry = Entry {
                                        index: *next,
                                        term: 1,
                                        data: vec![b'e'; ENTRY_BYTES].into(),
                                        ..Default::default()
                                    };
                                    *next += 1;
                                    let task = PersistTask {
                                        entries: vec![entry],
                                        hard_state: None,
                                        snapshot: None,
                                        on_done: Box::new(move |result| {
                                            let _ = done_tx.send(result.is_ok());
                                        }),
                                    };
                                    writer.submit_blocking(task).unwrap();
                                }
                                assert!(done_rx.recv().unwrap(), "append failed");
                            }
                        });
                    }
                });
                started.elapsed()
            })
        });
        let stats = writer.stats();
        eprintln!(
            "wal/append+fsync/{writers}: {} tasks in {} fsyncs ({:.1} per fsync)",
            stats.tasks,
            stats.fsyncs,
            stats.tasks as f64 / stats.fsyncs.max(1) as f64
        );
    }
    group.finish();
}

criterion_group!(benches, group_commit);
criterion_main!(benches);
