//! Snapshots of a store with 10k keys: the stream a client's `Snapshot` RPC (and a member
//! sending a raft snapshot) reads, and the raft snapshot file a leader creates.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[path = "common.rs"]
mod common;

const KEYS: u64 = 10_000;
const VALUE_BYTES: usize = 256;

fn snapshot(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_store(&dir.path().join("db"));
    common::fill(&store, KEYS, 1, VALUE_BYTES, 1);
    store.flush().unwrap();
    let tmp = dir.path().join("tmp");
    let mut group = c.benchmark_group("snapshot/10k keys");
    group.sample_size(10);
    let mut bytes = 0u64;
    skiff_store::snapshot::stream(&store, &tmp, |chunk, _| {
        bytes += chunk.len() as u64;
        true
    })
    .unwrap();
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("stream", |b| {
        b.iter(|| {
            let mut seen = 0u64;
            skiff_store::snapshot::stream(&store, &tmp, |chunk, _| {
                seen += chunk.len() as u64;
                true
            })
            .unwrap();
            assert!(seen > 0);
        })
    });
    let snap_dir = dir.path().join("snap");
    std::fs::create_dir_all(&snap_dir).unwrap();
    group.bench_function("create raft snapshot", |b| {
        b.iter(|| {
            let file = skiff_store::snapshot::create_raft_snapshot(&store, &snap_dir).unwrap();
            std::fs::remove_file(&file.path).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, snapshot);
criterion_main!(benches);
