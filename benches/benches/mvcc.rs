//! MVCC store micro-benchmarks: one put per write txn (a plain `put` applied), a txn of
//! many puts (one applied batch), and reads at an older revision (what a paginated list
//! at a revision, or a watcher's catch-up, does).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use skiff_store::mvcc::RangeOptions;

#[path = "common.rs"]
mod common;

/// Keys preloaded for the read benchmarks, each written this many times.
const KEYS: u64 = 10_000;
const VERSIONS: u64 = 3;
const VALUE_BYTES: usize = 256;

fn put(c: &mut Criterion) {
    let mut group = c.benchmark_group("mvcc/put");
    group.sample_size(20);
    for value_bytes in [64usize, 1024] {
        let dir = tempfile::tempdir().unwrap();
        let store = common::open_store(dir.path());
        let value = vec![b'v'; value_bytes];
        let mut index = 1u64;
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("one key per txn", value_bytes), |b| {
            b.iter(|| {
                let mut txn = store.write();
                txn.put(&common::key(index % KEYS), &value, 0).unwrap();
                txn.commit(index).unwrap();
                index += 1;
            })
        });
    }
    for batch in [16u64, 128] {
        let dir = tempfile::tempdir().unwrap();
        let store = common::open_store(dir.path());
        let value = vec![b'v'; VALUE_BYTES];
        let mut index = 1u64;
        group.throughput(Throughput::Elements(batch));
        group.bench_function(BenchmarkId::new("txn apply batch", batch), |b| {
            b.iter(|| {
                let mut txn = store.write();
                for k in 0..batch {
                    txn.put(&common::key((index * batch + k) % KEYS), &value, 0)
                        .unwrap();
                }
                txn.commit(index).unwrap();
                index += 1;
            })
        });
    }
    group.finish();
}

fn range_at_revision(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_store(dir.path());
    common::fill(&store, KEYS, VERSIONS, VALUE_BYTES, 1);
    let current = store.current_revision();
    // A revision from the middle of the second round of writes: every key has a version
    // at or below it, and newer versions to skip.
    let old = current - (KEYS * VERSIONS / 2) as i64;
    let mut group = c.benchmark_group("mvcc/range");
    group.sample_size(20);
    let mut i = 0u64;
    for (name, rev) in [("current", 0), ("old revision", old)] {
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("point", name), |b| {
            b.iter(|| {
                i = (i + 7919) % KEYS;
                let k = common::key(i);
                let opts = RangeOptions {
                    rev,
                    ..Default::default()
                };
                let r = store.range(&k, &[], opts).unwrap();
                assert_eq!(r.kvs.len(), 1);
            })
        });
        for limit in [100i64, 500] {
            group.throughput(Throughput::Elements(limit as u64));
            group.bench_function(BenchmarkId::new(format!("page of {limit}"), name), |b| {
                b.iter(|| {
                    i = (i + 7919) % (KEYS - limit as u64);
                    let opts = RangeOptions {
                        rev,
                        limit,
                        ..Default::default()
                    };
                    let r = store
                        .range(&common::key(i), b"/registry/bench0", opts)
                        .unwrap();
                    assert_eq!(r.kvs.len(), limit as usize);
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, put, range_at_revision);
criterion_main!(benches);
