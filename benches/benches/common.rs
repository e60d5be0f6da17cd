//! Helpers shared by the criterion benches (included with `#[path]`, not a target).

#![allow(dead_code)]

use std::path::Path;

use skiff_store::mvcc::{MvccConfig, MvccStore};

/// A store as the server opens it (default RocksDB settings).
pub fn open_store(dir: &Path) -> MvccStore {
    MvccStore::open(dir, MvccConfig::default()).expect("open mvcc store")
}

/// `/registry/bench/00000042`.
pub fn key(i: u64) -> Vec<u8> {
    format!("/registry/bench/{i:08}").into_bytes()
}

/// Writes keys `0..keys`, `versions` times each, one key per write txn (so one revision
/// per put, as the applier does for plain puts). Returns the next consistent index.
pub fn fill(
    store: &MvccStore,
    keys: u64,
    versions: u64,
    value_bytes: usize,
    mut index: u64,
) -> u64 {
    let value = vec![b'v'; value_bytes];
    for _ in 0..versions {
        for i in 0..keys {
            let mut txn = store.write();
            txn.put(&key(i), &value, 0).expect("put");
            txn.commit(index).expect("commit");
            index += 1;
        }
    }
    index
}
