//! Unit tests of `MvccStore` against etcd's documented behaviour, one rule per test.
//! The randomized comparison with a model is in `model_tests.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rocksdb::{properties, IteratorMode};

use super::store::{self, CF_KV, CF_LOG};
use super::*;

const MIB: usize = 1 << 20;

/// Small caches, RocksDB's WAL on (as in production), memtables not flushed on drop:
/// a drop is a clean stop whose next open recovers the memtables from the WAL.
pub(super) fn test_config() -> MvccConfig {
    MvccConfig {
        block_cache_bytes: 8 * MIB,
        write_buffer_bytes: 4 * MIB,
        max_background_jobs: 2,
        flush_on_close: false,
        wal: true,
    }
}

pub(super) fn must_open(dir: &Path) -> MvccStore {
    MvccStore::open(dir, test_config()).expect("open store")
}

/// With `wal` false: RocksDB's WAL off, so dropping the store is a crash (everything not
/// flushed is lost).
pub(super) fn must_open_mode(dir: &Path, wal: bool) -> MvccStore {
    MvccStore::open(dir, MvccConfig { wal, ..test_config() }).expect("open store")
}

/// What survives of an open store's directory, in [`crash_copy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Crash {
    /// `kill -9`: the OS keeps every byte the process wrote (its page cache), so every
    /// file is copied as it is, the WAL included.
    Kill,
    /// A power loss: what was never fsynced is gone. The store never syncs RocksDB's WAL,
    /// so no `*.log` file is copied; SST files and the MANIFEST are synced by every flush.
    PowerLoss,
    /// A power loss that kept the first `n` bytes of the newest WAL file (older ones are
    /// synced by RocksDB before the flush that obsoletes them, and kept).
    TornWal(u64),
    /// As `Kill`, with the byte at offset `n` of the newest WAL file flipped (a sector
    /// of garbage after a power loss).
    CorruptWal(u64),
}

/// The name and length of every file of a RocksDB directory but its info logs.
fn db_files(dir: &Path) -> BTreeMap<String, u64> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().unwrap().is_file())
        .map(|entry| (entry.file_name().into_string().unwrap(), entry.metadata().unwrap().len()))
        .filter(|(name, _)| !name.starts_with("LOG"))
        .collect()
}

/// The number of a RocksDB WAL file name (`000012.log`), `None` for other files.
fn wal_number(name: &str) -> Option<u64> {
    name.strip_suffix(".log")?.parse().ok()
}

/// The length of the newest WAL file of the store's directory.
pub(super) fn newest_wal_len(s: &MvccStore) -> u64 {
    let files = db_files(s.db.path());
    let newest = files.keys().filter_map(|name| wal_number(name)).max().expect("a WAL file");
    files[&format!("{newest:06}.log")]
}

/// Copies the directory of the open store `s` to `to` (created) as `crash` leaves it: a
/// crash simulated while the store keeps running. RocksDB's background work must not
/// change the files during the copy, so automatic compactions are paused and running
/// flushes and compactions waited for (tests never fill a memtable, the other trigger),
/// and the file list is checked unchanged afterwards.
pub(super) fn crash_copy(s: &MvccStore, to: &Path, crash: Crash) {
    let set_auto_compactions = |disable: &str| {
        for name in store::CF_NAMES {
            s.db.set_options_cf(s.cf(name), &[("disable_auto_compactions", disable)]).unwrap();
        }
    };
    set_auto_compactions("true");
    let busy = |property| {
        store::CF_NAMES.iter().any(|name| s.db.property_int_value_cf(s.cf(name), property).unwrap().unwrap_or(0) > 0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while busy(properties::NUM_RUNNING_COMPACTIONS)
        || busy(properties::NUM_RUNNING_FLUSHES)
        || busy(properties::MEM_TABLE_FLUSH_PENDING)
    {
        assert!(Instant::now() < deadline, "RocksDB's background work never stopped");
        std::thread::sleep(Duration::from_millis(1));
    }
    let from = s.db.path();
    let files = db_files(from);
    let newest_wal = files.keys().filter_map(|name| wal_number(name)).max();
    std::fs::create_dir_all(to).unwrap();
    for name in files.keys() {
        let is_newest_wal = wal_number(name).is_some() && wal_number(name) == newest_wal;
        if name == "LOCK" || (crash == Crash::PowerLoss && wal_number(name).is_some()) {
            continue;
        }
        let mut bytes = std::fs::read(from.join(name)).unwrap();
        match crash {
            Crash::TornWal(n) if is_newest_wal => bytes.truncate(n as usize),
            Crash::CorruptWal(n) if is_newest_wal => bytes[n as usize] ^= 0x5a,
            _ => {}
        }
        std::fs::write(to.join(name), bytes).unwrap();
    }
    assert_eq!(db_files(from), files, "the store's files changed during the copy");
    set_auto_compactions("false");
}

/// A crash that loses everything not flushed, then the store reopened: with `wal` off
/// any crash does (the store is dropped), with it on a power loss (a copy of the open
/// store without its WAL, in a new directory under `dir`).
fn crash_losing_unflushed(s: MvccStore, dir: &Path, wal: bool) -> MvccStore {
    if wal {
        let copy = dir.join(format!("power-loss-{}", s.consistent_index()));
        crash_copy(&s, &copy, Crash::PowerLoss);
        drop(s);
        must_open_mode(&copy, true)
    } else {
        drop(s);
        must_open_mode(dir, false)
    }
}

fn must_put(s: &MvccStore, key: &[u8], value: &[u8], index: u64) -> i64 {
    let mut w = s.write();
    w.put(key, value, 0).unwrap();
    let rev = w.rev();
    w.commit(index).unwrap();
    rev
}

fn must_delete(s: &MvccStore, key: &[u8], end: &[u8], index: u64) -> Vec<KeyValue> {
    let mut w = s.write();
    let deleted = w.delete_range(key, end).unwrap();
    w.commit(index).unwrap();
    deleted
}

fn must_get(s: &MvccStore, key: &[u8], rev: i64) -> Option<KeyValue> {
    let r = s.range(key, b"", RangeOptions { rev, ..Default::default() }).unwrap();
    assert!(r.kvs.len() <= 1 && r.count == r.kvs.len() as i64);
    r.kvs.into_iter().next()
}

fn keys(r: &RangeResult) -> Vec<&[u8]> {
    r.kvs.iter().map(|kv| kv.key.as_slice()).collect()
}

pub(super) fn raw_count(s: &MvccStore, cf: &str) -> usize {
    let mut count = 0;
    for item in s.db.iterator_cf(s.cf(cf), IteratorMode::Start) {
        item.unwrap();
        count += 1;
    }
    count
}

fn all(rev: i64) -> RangeOptions {
    RangeOptions { rev, ..Default::default() }
}

#[test]
fn store_is_send_and_sync() {
    fn shareable<T: Send + Sync>() {}
    shareable::<MvccStore>();
}

#[test]
fn empty_store_is_at_revision_one_and_first_put_gets_two() {
    let dir = tempfile::tempdir().unwrap();
    let s = must_open(dir.path());
    assert_eq!((s.current_revision(), s.compact_revision(), s.consistent_index()), (1, 0, 0));
    assert_eq!(must_put(&s, b"a", b"1", 1), 2);
    assert_eq!(s.current_revision(), 2);
    let kv = must_get(&s, b"a", 0).unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version, kv.value.as_slice()), (2, 2, 1, &b"1"[..]));
}

#[test]
fn put_increments_version_and_keeps_create_revision_and_lease() {
    let dir = tempfile::tempdir().unwrap();
    let s = must_open(dir.path());
    must_put(&s, b"a", b"1", 1);
    let mut w = s.write();
    let prev = w.put(b"a", b"2", 7).unwrap().unwrap();
    assert_eq!((prev.mod_revision, prev.version), (2, 1));
    w.commit(2).unwrap();
    let kv = must_get(&s, b"a", 0).unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version, kv.lease), (2, 3, 2, 7));
    assert_eq!(must_get(&s, b"a", 2).unwrap().value, b"1");
    assert_eq!(must_get(&s, b"a", 1), None);
}

#[test]
fn delete_writes_tombstone_and_recreate_starts_a_new_generation() {
    let dir = tempfile::tempdir().unwrap();
    let s = must_open(dir.path());
    must_put(&s, b"a", b"1", 1); // 2
    must_put(&s, b"a", b"2", 2); // 3
    let deleted = must_delete(&s, b"a", b"", 3); // 4
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].version, 2);
    assert_eq!(s.current_revision(), 4);
    assert_eq!(must_get(&s, b"a", 4), None);
    must_put(&s, b"a", b"3", 4); // 5
    let kv = must_get(&s, b"a", 0).unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
    assert_eq!(must_get(&s, b"a", 3).unwrap().version, 2);
    // The tombstone is a stored version.
    assert_eq!(raw_count(&s, CF_KV), 4);
}

#[test]
fn deleting_nothing_does_not_bump_the_revision_but_records_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let s = must_open(dir.path());
    must_put(&s, b"a", b"1", 1);
    assert!(must_delete(&s, b"b", b"", 2).is_empty());
    assert_eq!((s.current_revision(), s.consistent_index()), (2, 2));
    let mut w = s.write();
    w.put_lease(9, 60);
    assert!(w.commit(3).unwrap().is_empty());
    assert_eq!((s.current_revision(), s.consistent_index()), (2, 3));
    assert_eq!(s.leases().unwrap(), vec![(9, 60)]);
}

#[test]
fn txn_changes_get_sub_revisions_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = must_open(dir.path());
    must_put(&s, b"b", b"0", 1);
    must_put(&s, b"c", b"0", 2);
    let mut w = s.write();
    assert_eq!(w.rev(), 4);
    w.put(b"z", b"1", 0).unwrap();
    assert_eq!(w.delete_range(b"a", b"d").unwrap().len(), 2);
    w.put(b"a", b"1", 0).unwrap();
    let events = w.commit(3).unwrap();
    let kinds: Vec<_> = events.iter().map(|e| (e.kind, e.kv.key.as_slice(), e.kv.mod_revision)).collect();
    assert_eq!(
        kinds,
        vec![
            (EventKind::Put, &b"z"[..], 4),
            (EventKind::Delete, &b"b"[..], 4),
            (EventKind::Delete, &b"c"[..], 4),
            (EventKind::Put, &b"a"[..], 4),
        ]
    );
    assert_eq!(events[1].prev_kv.as_ref().unwrap().mod_revision, 2);
    let log: Vec<Revision> = s
        .db
        .iterator_cf(s.cf(CF_LOG), IteratorMode::Start)
        .map(|item| key::decode_log_key(&item.unwrap().0).unwrap())
        .filter(|rev| rev.main == 4)
        .collect();
    assert_eq!(log, (0..4).map(|sub| Revision::new(4, sub)).collect::<Vec<_>>());
    assert_eq!(s.events(4, 4, b"\0", b"\0", 0, true).unwrap(), events);
}

#[test]
fn txn_reads_see_own_writes_only_at_the_txn_revision() {
    let dir = tempfile::tempdir().unwrap();
    let s = must_open(dir.path());
    must_put(&s, b"a", b"1", 1);
    must_put(&s, b"b", b"1", 2);
    let mut w = s.write();
    assert_eq!(w.range(b"a", b"\0", all(0)).unwrap().count, 2);
    assert!(matches!(w.range(b"a", b"", all(4)), Err(Error::FutureRev)));
    w.put(b"a", b"2", 0).unwrap();
    w.delete_range(b"b", b"").unwrap();
    w.put(b"c", b"2", 0).unwrap();
    let now = w.range(b"a", b"\0", all(0)).unwrap();
    assert_eq!((keys(&now), now.count, now.rev), (vec![&b"a"[..], b"c"], 2, 4));
    assert_eq!(now.kvs[0].version, 2);
    let second = w.put(b"a", b"3", 0).unwrap().unwrap();
    assert_eq!((second.value.as_slice(), second.version), (&b"2"[..], 2));
    let before = w.range(b"a", b"\0", all(3)).unwrap();
    assert_eq!(keys(&before), vec![&b"a"[..], b"b"]);
    // Others read the committed state meanwhile.
    assert_eq!(s.range(b"a", b"\0", all(0)).unwrap().count, 2);
    let events = w.commit(3).unwrap();
    assert_eq!(events.len(), 4);
    // Watch prev_kv is the state before the txn (etcd reads it at mod_revision - 1).
    assert_eq!(events[3].prev_kv.as_ref().unwrap().value, b"1");
    assert_eq!(events[3].kv.version, 3);
    assert_eq!(must_get(&s, b"a", 0).unwrap().value, b"3");
}

#[test]
fn dropped_txn_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = must_open(dir.path());
    let mut w = s.write();
    w.put(b"a", b"1", 0).unwrap();
    drop(w);
    assert_eq!((s.current_revision(), raw_count(&s, CF_KV)), (1, 0));
    assert_eq!(must_put(&s, b"a", b"1", 1), 2);
}

#[test]
fn range_limit_count_and_range_end_rules() {
    let dir = tempfile::tempdir().unwrap();
    let s = must_open(dir.path());
    for (i, k) in [&b"a"[..], b"a\0", b"ab", b"b", b"\xff"].iter().enumerate() {
        must_put(&s, k, b"v", i as u64 + 1);
    }
    let r = s.range(b"a", b"b", RangeOptions { limit: 2, ..Default::default() }).unwrap();
    assert_eq!((keys(&r), r.count), (vec![&b"a"[..], b"a\0"], 3));
    let r = s.range(b"a", b"b", RangeOptions { count_only: true, ..Default::default() }).unwrap();
    assert_eq!((r.kvs.len(), r.count), (0, 3));
    let r = s.range(b"ab", b"\0", all(0)).unwrap();
    assert_eq!(keys(&r), vec![&b"ab"[..], b"b", b"\xff"]);
    assert_eq!(s.range(b"\0", b"\0", all(0)).unwrap().count, 5);
    assert_eq!(s.range(b"a", b"", all(0)).unwrap().count, 1);
    assert_eq!(s.range(b"b", b"a", all(0)).unwrap().count, 0);
    // At an older revision only the keys that existed then.
    assert_eq!(keys(&s.range(b"\0", b"\0", all(3)).unwrap()), vec![&b"a"[..], b"a\0"]);
    // etcd reports the current revision (the response header's), not the one read.
    assert_eq!(s.range(b"\0", b"\0", all(3)).unwrap().rev, 6);
    assert!(matches!(s.range(b"a", b"", all(7)), Err(Error::FutureRev)));
}

#[test]
fn compaction_keeps_newest_at_or_below_and_deletes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let s = must_open(dir.path());
    must_put(&s, b"a", b"1", 1); // 2
    must_put(&s, b"a", b"2", 2); // 3
    must_put(&s, b"b", b"1", 3); // 4
    must_delete(&s, b"b", b"", 4); // 5
    must_put(&s, b"a", b"3", 5); // 6
    must_put(&s, b"c", b"1", 6); // 7
    assert_eq!(raw_count(&s, CF_KV), 6);
    assert!(matches!(s.compact(8, 7), Err(Error::FutureRev)));
    s.compact(5, 7).unwrap();
    assert_eq!((s.compact_revision(), s.consistent_index()), (5, 7));
    // Kept: a@3 (newest ≤ 5), a@6, c@7. Dropped: a@2, b@4, the tombstone b@5.
    assert_eq!(raw_count(&s, CF_KV), 3);
    assert_eq!(raw_count(&s, CF_LOG), 2);
    assert_eq!(must_get(&s, b"a", 5).unwrap().value, b"2");
    assert_eq!(must_get(&s, b"a", 0).unwrap().value, b"3");
    assert!(matches!(s.range(b"a", b"", all(4)), Err(Error::Compacted)));
    assert!(matches!(s.compact(5, 8), Err(Error::Compacted)));
    assert!(matches!(s.compact(4, 8), Err(Error::Compacted)));
    assert_eq!(s.finished_compact_revision().unwrap(), 5);
}

#[test]
fn events_follow_the_change_log_and_refuse_compacted_starts() {
    let dir = tempfile::tempdir().unwrap();
    let s = must_open(dir.path());
    must_put(&s, b"a", b"1", 1); // 2
    must_put(&s, b"b", b"1", 2); // 3
    must_put(&s, b"a", b"2", 3); // 4
    must_delete(&s, b"a", b"", 4); // 5
    let ev = s.events(2, 5, b"a", b"", 0, true).unwrap();
    let got: Vec<_> = ev.iter().map(|e| (e.kind, e.kv.mod_revision, e.prev_kv.as_ref().map(|p| p.mod_revision))).collect();
    assert_eq!(got, vec![(EventKind::Put, 2, None), (EventKind::Put, 4, Some(2)), (EventKind::Delete, 5, Some(4))]);
    assert_eq!(ev[2].kv, KeyValue { key: b"a".to_vec(), mod_revision: 5, ..Default::default() });
    assert!(s.events(2, 5, b"a", b"", 0, false).unwrap().iter().all(|e| e.prev_kv.is_none()));
    assert_eq!(s.events(3, 100, b"\0", b"\0", 0, false).unwrap().len(), 3);
    assert!(s.events(6, 9, b"\0", b"\0", 0, false).unwrap().is_empty());
    s.compact(3, 5).unwrap();
    assert!(matches!(s.events(2, 5, b"a", b"", 0, false), Err(Error::Compacted)));
    // A watch may start at the compact revision: the change kept at 3 (b's put) is there.
    let at_compact = s.events(3, 3, b"\0", b"\0", 0, false).unwrap();
    assert_eq!(at_compact.iter().map(|e| (e.kv.key.clone(), e.kv.mod_revision)).collect::<Vec<_>>(), vec![(b"b".to_vec(), 3)]);
    let ev = s.events(4, 5, b"a", b"", 0, true).unwrap();
    assert_eq!(ev[0].prev_kv.as_ref().unwrap().mod_revision, 2, "the newest version ≤ 3 survives");
}

#[test]
fn events_limit_never_splits_a_revision() {
    let dir = tempfile::tempdir().unwrap();
    let s = must_open(dir.path());
    let mut w = s.write();
    for k in [b"a", b"b", b"c"] {
        w.put(k, b"1", 0).unwrap();
    }
    w.commit(1).unwrap(); // 2
    must_put(&s, b"d", b"1", 2); // 3
    assert_eq!(s.events(2, 3, b"\0", b"\0", 1, false).unwrap().len(), 3);
    assert_eq!(s.events(2, 3, b"\0", b"\0", 4, false).unwrap().len(), 4);
}

#[test]
fn reopen_restores_revisions_index_and_leases() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = must_open(dir.path());
        must_put(&s, b"a", b"1", 10);
        must_put(&s, b"a", b"2", 11);
        let mut w = s.write();
        w.put_lease(5, 30);
        w.put(b"k", b"v", 5).unwrap();
        w.commit(12).unwrap();
        s.compact(3, 13).unwrap();
        s.flush().unwrap();
        assert_eq!(s.persisted_consistent_index(), 13);
    }
    let s = must_open(dir.path());
    assert_eq!((s.current_revision(), s.compact_revision(), s.consistent_index()), (4, 3, 13));
    assert_eq!(s.persisted_consistent_index(), 13);
    assert_eq!(must_get(&s, b"a", 0).unwrap().version, 2);
    assert_eq!(s.leases().unwrap(), vec![(5, 30)]);
    assert_eq!(s.keys_with_lease().unwrap(), vec![(b"k".to_vec(), 5)]);
}

/// With the WAL off any crash, with it on a power loss: the store rewinds to its last flush.
#[test]
fn unflushed_writes_are_lost_only_beyond_the_flushed_index() {
    for wal in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let s = must_open_mode(dir.path(), wal);
        for i in 1..=5 {
            must_put(&s, b"a", format!("{i}").as_bytes(), i);
        }
        s.flush().unwrap();
        for i in 6..=8 {
            must_put(&s, b"b", format!("{i}").as_bytes(), i);
        }
        let s = crash_losing_unflushed(s, dir.path(), wal);
        // The surviving state is exactly the one at consistent index 5: raft replays 6..=8.
        assert_eq!((s.consistent_index(), s.current_revision()), (5, 6), "wal {wal}");
        assert_eq!(s.persisted_consistent_index(), 5);
        assert_eq!(must_get(&s, b"a", 0).unwrap().value, b"5");
        assert_eq!(must_get(&s, b"b", 0), None);
        assert_eq!(raw_count(&s, CF_LOG), 5);
        assert_eq!(must_put(&s, b"b", b"6", 6), 7, "replay reuses the lost revision");
    }
}

/// Inside a WAL group, batches stay buffered in the process: a kill then loses them (a
/// suffix: the store opens at the group's start) and keeps everything once the group ended.
#[test]
fn a_wal_group_writes_its_batches_out_when_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let s = must_open(&dir.path().join("store"));
    must_put(&s, b"a", b"1", 1);
    {
        let _group = s.wal_group();
        must_put(&s, b"a", b"2", 2);
        must_put(&s, b"b", b"3", 3);
        let killed = dir.path().join("killed-inside");
        crash_copy(&s, &killed, Crash::Kill);
        let k = must_open(&killed);
        assert_eq!((k.consistent_index(), k.current_revision()), (1, 2), "the group's batches are not written out yet");
        assert_eq!(k.range(b"a", b"", all(0)).unwrap().kvs[0].value, b"1");
    }
    let killed = dir.path().join("killed-after");
    crash_copy(&s, &killed, Crash::Kill);
    let k = must_open(&killed);
    assert_eq!((k.consistent_index(), k.current_revision()), (3, 4));
    assert_eq!(k.range(b"\0", b"\0", all(0)).unwrap(), s.range(b"\0", b"\0", all(0)).unwrap());
}

/// A killed process (the OS keeps what it wrote) loses nothing with the WAL on: every
/// batch was written out to the WAL file when it was applied.
#[test]
fn a_kill_keeps_every_batch_with_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let s = must_open(&dir.path().join("store"));
    for i in 1..=5 {
        must_put(&s, b"a", format!("{i}").as_bytes(), i);
    }
    s.flush().unwrap();
    for i in 6..=8 {
        must_put(&s, b"b", format!("{i}").as_bytes(), i);
    }
    let mut w = s.write();
    w.put_lease(5, 30);
    w.set_applied_term(2);
    w.commit(9).unwrap();
    s.compact(3, 10).unwrap();
    let killed = dir.path().join("killed");
    crash_copy(&s, &killed, Crash::Kill);
    let expected = s.range(b"\0", b"\0", all(0)).unwrap();
    assert_eq!(s.persisted_consistent_index(), 5);
    drop(s);

    let k = must_open(&killed);
    assert_eq!((k.consistent_index(), k.applied_term(), k.current_revision(), k.compact_revision()), (10, 2, 9, 3));
    // What open recovered from the WAL is in SST files now.
    assert_eq!(k.persisted_consistent_index(), 10);
    assert_eq!(k.range(b"\0", b"\0", all(0)).unwrap(), expected);
    assert_eq!(must_get(&k, b"b", 0).unwrap().value, b"8");
    assert_eq!(k.leases().unwrap(), vec![(5, 30)]);
    assert_eq!(k.finished_compact_revision().unwrap(), 3);
    assert_eq!(raw_count(&k, CF_KV), 7, "a@2 was compacted away");
}

/// `persisted_consistent_index` starts at the index open loaded, so what open recovered
/// from the WAL must be in SST files when open returns: RocksDB flushes it during
/// recovery (`avoid_flush_during_recovery=false`). A power loss right after that open
/// keeps it all.
#[test]
fn what_open_recovers_from_the_wal_is_flushed_before_open_returns() {
    let dir = tempfile::tempdir().unwrap();
    let s = must_open(&dir.path().join("store"));
    for i in 1..=6 {
        must_put(&s, format!("k{i}").as_bytes(), b"v", i);
    }
    let (raw, killed) = (dir.path().join("raw"), dir.path().join("killed"));
    crash_copy(&s, &raw, Crash::Kill);
    crash_copy(&s, &killed, Crash::Kill);
    drop(s);

    // RocksDB itself (not `MvccStore::open`'s safety net) leaves empty memtables.
    {
        let mut opts = rocksdb::Options::default();
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        let db = store::Db::open_cf(&opts, &raw, store::CF_NAMES).unwrap();
        for name in store::CF_NAMES {
            let cf = db.cf_handle(name).unwrap();
            let in_memtable = db.property_int_value_cf(cf, properties::NUM_ENTRIES_ACTIVE_MEM_TABLE).unwrap();
            assert_eq!(in_memtable, Some(0), "{name}");
        }
        let kv = db.cf_handle(CF_KV).unwrap();
        assert_eq!(db.property_int_value_cf(kv, properties::num_files_at_level(0)).unwrap(), Some(1));
    }

    let k = must_open(&killed);
    assert_eq!((k.consistent_index(), k.persisted_consistent_index()), (6, 6));
    let after_power_loss = dir.path().join("power-loss");
    crash_copy(&k, &after_power_loss, Crash::PowerLoss);
    drop(k);
    let p = must_open(&after_power_loss);
    assert_eq!((p.consistent_index(), p.current_revision()), (6, 7));
    assert_eq!(p.range(b"\0", b"\0", all(0)).unwrap().count, 6);
}

/// A power loss can leave the newest WAL file cut anywhere, or with garbage in it: the
/// store opens (never an error) at a prefix of the batches, at least the last flush.
#[test]
fn a_torn_or_corrupt_wal_opens_at_a_prefix_of_the_batches() {
    const FLUSHED: u64 = 3;
    const WRITTEN: u64 = 23;
    let dir = tempfile::tempdir().unwrap();
    let s = must_open(&dir.path().join("store"));
    // Txn i puts `last` = i and `k{i}`, at revision i + 1.
    let txn = |i: u64| {
        let mut w = s.write();
        w.put(b"last", i.to_string().as_bytes(), 0).unwrap();
        w.put(format!("k{i:02}").as_bytes(), &[b'x'; 40], 0).unwrap();
        w.commit(i).unwrap();
    };
    (1..=FLUSHED).for_each(txn);
    s.flush().unwrap();
    // The flush switched to a new WAL file: it holds exactly the unflushed batches.
    assert_eq!(newest_wal_len(&s), 0);
    (FLUSHED + 1..=WRITTEN).for_each(txn);
    let len = newest_wal_len(&s);

    let check = |crash: Crash| -> u64 {
        let copy = dir.path().join(format!("{crash:?}"));
        crash_copy(&s, &copy, crash);
        let c = MvccStore::open(&copy, test_config()).unwrap_or_else(|e| panic!("{crash:?}: {e}"));
        let index = c.consistent_index();
        assert!((FLUSHED..=WRITTEN).contains(&index), "{crash:?}: index {index}");
        assert_eq!(c.current_revision(), index as i64 + 1, "{crash:?}");
        assert_eq!(must_get(&c, b"last", 0).unwrap().value, index.to_string().as_bytes(), "{crash:?}");
        let keys = c.range(b"k", b"l", all(0)).unwrap();
        let expected: Vec<Vec<u8>> = (1..=index).map(|i| format!("k{i:02}").into_bytes()).collect();
        assert_eq!(keys.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(), expected, "{crash:?}");
        assert_eq!(raw_count(&c, CF_LOG), 2 * index as usize, "{crash:?}");
        drop(c);
        std::fs::remove_dir_all(&copy).unwrap();
        index
    };
    assert_eq!(check(Crash::TornWal(0)), FLUSHED);
    assert_eq!(check(Crash::TornWal(len)), WRITTEN);
    assert_eq!(check(Crash::TornWal(len - 1)), WRITTEN - 1);
    let mut last = FLUSHED;
    for n in (0..len).step_by(53) {
        let index = check(Crash::TornWal(n));
        assert!(index >= last, "a longer WAL recovered less: {index} < {last} at {n}");
        last = index;
        // Garbage at `n`: recovery stops at the damaged batch, whatever came after it.
        let corrupt = check(Crash::CorruptWal(n));
        assert_eq!(corrupt, index, "a byte flipped at {n}");
    }
}

#[test]
fn interrupted_compaction_resumes_on_open() {
    for wal in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let s = must_open_mode(dir.path(), wal);
        for i in 1..=4 {
            must_put(&s, b"a", b"v", i);
        }
        s.schedule_compaction(4, 5, None).unwrap();
        s.flush().unwrap();
        assert_eq!(raw_count(&s, CF_KV), 4);
        assert_eq!(s.finished_compact_revision().unwrap(), 0);
        let s = crash_losing_unflushed(s, dir.path(), wal); // the deletions were never flushed
        assert_eq!((s.compact_revision(), s.finished_compact_revision().unwrap()), (4, 4), "wal {wal}");
        // a@5 (above the compact revision) and a@4 (the newest at or below it) remain.
        assert_eq!(raw_count(&s, CF_KV), 2);
        assert_eq!(must_get(&s, b"a", 4).unwrap().version, 3);
    }
}

#[test]
fn hash_kv_covers_versions_above_the_compact_revision() {
    let history = |s: &MvccStore, last: &[u8]| {
        must_put(s, b"a", b"0", 1); // 2
        must_put(s, b"a", b"1", 2); // 3
        must_put(s, b"b", b"1", 3); // 4
        must_put(s, b"a", last, 4); // 5
    };
    let (d1, d2, d3) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (s1, s2, s3) = (must_open(d1.path()), must_open(d2.path()), must_open(d3.path()));
    history(&s1, b"2");
    history(&s2, b"2");
    history(&s3, b"X");
    assert_eq!(s1.hash_kv(0).unwrap(), s2.hash_kv(0).unwrap());
    assert_eq!(s1.hash_kv(0).unwrap().2, 5);
    assert_ne!(s1.hash_kv(0).unwrap().0, s3.hash_kv(0).unwrap().0);
    assert_eq!(s1.hash_kv(4).unwrap(), s3.hash_kv(4).unwrap());
    assert_ne!(s1.hash_kv(4).unwrap().0, s1.hash_kv(3).unwrap().0);
    // Same compact revision, physical compaction (of a@2) done on one member only.
    s1.compact(4, 5).unwrap();
    s2.schedule_compaction(4, 5, None).unwrap();
    assert_eq!(raw_count(&s1, CF_KV) + 1, raw_count(&s2, CF_KV));
    assert_eq!(s1.hash_kv(5).unwrap(), s2.hash_kv(5).unwrap());
    assert_eq!(s1.hash_kv(5).unwrap().1, 4);
    assert!(matches!(s1.hash_kv(3), Err(Error::Compacted)));
    assert!(matches!(s1.hash_kv(6), Err(Error::FutureRev)));
}

#[test]
fn the_recent_size_follows_the_exact_size_within_its_age() {
    let dir = tempfile::tempdir().unwrap();
    let s = must_open(dir.path());
    let before = s.db_size_bytes_recent();
    assert_eq!(before, s.db_size_bytes());
    for i in 0..50u64 {
        must_put(&s, format!("k{i}").as_bytes(), &[b'x'; 4096], i + 1);
    }
    let grown = s.db_size_bytes();
    assert!(grown > before, "{grown} <= {before}");
    std::thread::sleep(super::store::SIZE_SAMPLE_MAX_AGE + std::time::Duration::from_millis(5));
    assert_eq!(s.db_size_bytes_recent(), grown);
}

#[test]
fn checkpoint_and_defragment_keep_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let s = must_open(dir.path());
    for i in 0..200u64 {
        must_put(&s, format!("k{}", i % 20).as_bytes(), &[b'x'; 100], i + 1);
    }
    s.compact(201, 201).unwrap();
    s.defragment().unwrap();
    assert!(s.db_size_bytes() > 0 && s.db_size_in_use_bytes() > 0);
    assert_eq!(raw_count(&s, CF_KV), 20);
    let copy = dir.path().join("checkpoint");
    s.checkpoint(&copy).unwrap();
    let c = must_open(&copy);
    assert_eq!((c.current_revision(), c.compact_revision(), c.consistent_index()), (201, 201, 201));
    assert_eq!(c.range(b"\0", b"\0", all(0)).unwrap(), s.range(b"\0", b"\0", all(0)).unwrap());
}

/// Txns write three keys with one value each; every read at a fixed revision must see
/// all three from the same txn, and re-reading the same revision must give the same result.
#[test]
fn concurrent_readers_see_whole_txns_and_stable_revisions() {
    const TXNS: u64 = 300;
    const READERS: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(must_open(dir.path()));
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (s, done) = (s.clone(), done.clone());
        std::thread::spawn(move || {
            for i in 1..=TXNS {
                let mut w = s.write();
                for k in [b"x", b"y", b"z"] {
                    w.put(k, i.to_string().as_bytes(), 0).unwrap();
                }
                w.commit(i).unwrap();
                if i % 100 == 0 {
                    s.compact(i as i64 - 50, i).unwrap();
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (s, done) = (s.clone(), done.clone());
            std::thread::spawn(move || {
                let mut checked = 0;
                while !done.load(Ordering::SeqCst) || checked == 0 {
                    let rev = s.current_revision();
                    let first = match s.range(b"\0", b"\0", all(rev)) {
                        Ok(r) => r,
                        Err(Error::Compacted) => continue,
                        Err(e) => panic!("{e}"),
                    };
                    if rev > 1 {
                        assert_eq!(first.count, 3, "at {rev}");
                        assert!(first.kvs.iter().all(|kv| kv.mod_revision == rev && kv.value == first.kvs[0].value));
                    }
                    match s.range(b"\0", b"\0", all(rev)) {
                        // `rev` reports the current revision, which moves on.
                        Ok(again) => assert_eq!((&again.kvs, again.count), (&first.kvs, first.count)),
                        Err(Error::Compacted) => {}
                        Err(e) => panic!("{e}"),
                    }
                    checked += 1;
                }
                checked
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert_eq!(s.current_revision(), TXNS as i64 + 1);
}

#[test]
fn applied_term_and_membership_are_stored_with_the_consistent_index() {
    let dir = tempfile::tempdir().unwrap();
    {
        // A data dir written before these keys existed reads as the defaults.
        let s = must_open_mode(dir.path(), false);
        assert_eq!((s.applied_term(), s.membership().unwrap()), (0, None));
        must_put(&s, b"a", b"1", 1);
        s.flush().unwrap();
    }
    let s = must_open_mode(dir.path(), false);
    assert_eq!((s.consistent_index(), s.applied_term(), s.membership().unwrap()), (1, 0, None));
    let mut w = s.write();
    w.set_applied_term(3);
    w.set_membership(b"members v1".to_vec());
    w.commit(2).unwrap();
    assert_eq!((s.applied_term(), s.membership().unwrap()), (3, Some(b"members v1".to_vec())));
    // A txn that sets neither keeps both.
    must_put(&s, b"a", b"2", 3);
    assert_eq!((s.applied_term(), s.membership().unwrap().unwrap()), (3, b"members v1".to_vec()));
    s.compact_with_term(2, 4, 5).unwrap();
    assert_eq!((s.consistent_index(), s.applied_term()), (4, 5));
    s.compact(3, 5).unwrap();
    assert_eq!((s.consistent_index(), s.applied_term()), (5, 5), "compact keeps the term");
    s.flush().unwrap();
    let mut w = s.write();
    w.set_applied_term(6);
    w.set_membership(b"members v2".to_vec());
    w.commit(6).unwrap();
    drop(s); // a crash (WAL off): the last txn was not flushed, and goes together with its index

    let s = must_open_mode(dir.path(), false);
    assert_eq!((s.consistent_index(), s.applied_term()), (5, 5));
    assert_eq!(s.membership().unwrap(), Some(b"members v1".to_vec()));
    assert_eq!(s.interrupted_restore(), None);
}

/// The marker of an install in progress is what `open` reports after a crash in the
/// middle of one; it stops `open` from resuming a compaction over the mixed contents.
#[test]
fn an_interrupted_install_is_reported_on_open_and_cleared_by_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let source_dir = dir.path().join("source");
    let target_dir = dir.path().join("target");
    let source = must_open(&source_dir);
    for i in 1..=5 {
        must_put(&source, b"k", i.to_string().as_bytes(), i);
    }
    let checkpoint = dir.path().join("checkpoint");
    source.checkpoint(&checkpoint).unwrap();
    {
        let t = must_open(&target_dir);
        must_put(&t, b"other", b"x", 1);
        t.schedule_compaction(2, 2, None).unwrap(); // scheduled, never finished
        let mut batch = rocksdb::WriteBatch::default();
        batch.put_cf(t.cf(store::CF_META), record::META_RESTORE_STARTED, record::encode_u64(5));
        t.write_batch(batch).unwrap();
        t.flush().unwrap();
    }
    let t = must_open(&target_dir);
    assert_eq!(t.interrupted_restore(), Some(5));
    assert_eq!(t.finished_compact_revision().unwrap(), 0, "no compaction resumed over mixed contents");
    assert!(matches!(SnapshotSource::open(&target_dir.join("missing")), Err(Error::Db(_))));

    t.replace_contents(&SnapshotSource::open(&checkpoint).unwrap()).unwrap();
    assert_eq!(t.interrupted_restore(), None);
    assert_eq!((t.consistent_index(), t.current_revision()), (5, 6));
    assert_eq!(must_get(&t, b"k", 0).unwrap().value, b"5");
    assert_eq!(must_get(&t, b"other", 0), None);
    drop(t);
    let t = must_open(&target_dir);
    assert_eq!((t.interrupted_restore(), t.consistent_index()), (None, 5));
    assert_eq!(must_get(&t, b"k", 0).unwrap().value, b"5");
}

/// A checkpoint of a store with an install in progress is refused as a snapshot source.
#[test]
fn a_half_installed_store_is_not_a_snapshot_source() {
    let dir = tempfile::tempdir().unwrap();
    let s = must_open(&dir.path().join("s"));
    must_put(&s, b"k", b"v", 1);
    let mut batch = rocksdb::WriteBatch::default();
    batch.put_cf(s.cf(store::CF_META), record::META_RESTORE_STARTED, record::encode_u64(9));
    s.write_batch(batch).unwrap();
    let copy = dir.path().join("copy");
    s.checkpoint(&copy).unwrap();
    assert!(matches!(SnapshotSource::open(&copy), Err(Error::Corrupt(_))));
}

/// With the WAL on, a kill in the middle of an install keeps its batches (recovered in
/// order) and a power loss keeps a prefix of them: either way the marker, flushed before
/// anything was deleted, is there and the install is redone; after the install, both
/// keep the snapshot's state.
#[test]
fn a_kill_or_a_power_loss_during_an_install_leaves_it_to_be_redone() {
    let dir = tempfile::tempdir().unwrap();
    let source = must_open(&dir.path().join("source"));
    for i in 1..=5 {
        must_put(&source, b"k", i.to_string().as_bytes(), i);
    }
    let checkpoint = dir.path().join("checkpoint");
    source.checkpoint(&checkpoint).unwrap();
    let t = Arc::new(must_open(&dir.path().join("target")));
    for i in 1..=3 {
        must_put(&t, b"other", i.to_string().as_bytes(), i);
    }
    t.flush().unwrap();
    must_put(&t, b"other", b"4", 4); // only in the WAL
    let (target, copies) = (Arc::downgrade(&t), dir.path().to_path_buf());
    t.set_install_hook(move || {
        let t = target.upgrade().unwrap();
        crash_copy(&t, &copies.join("kill-during"), Crash::Kill);
        crash_copy(&t, &copies.join("power-loss-during"), Crash::PowerLoss);
    });
    t.replace_contents(&SnapshotSource::open(&checkpoint).unwrap()).unwrap();
    crash_copy(&t, &dir.path().join("kill-after"), Crash::Kill);
    crash_copy(&t, &dir.path().join("power-loss-after"), Crash::PowerLoss);
    drop(t);

    let installed = |c: &MvccStore, name: &str| {
        assert_eq!((c.interrupted_restore(), c.consistent_index(), c.current_revision()), (None, 5, 6), "{name}");
        assert_eq!(must_get(c, b"k", 0).unwrap().value, b"5", "{name}");
        assert_eq!(must_get(c, b"other", 0), None, "{name}");
    };
    for name in ["kill-during", "power-loss-during"] {
        let c = must_open(&dir.path().join(name));
        assert_eq!(c.interrupted_restore(), Some(5), "{name}");
        c.replace_contents(&SnapshotSource::open(&checkpoint).unwrap()).unwrap();
        installed(&c, name);
    }
    for name in ["kill-after", "power-loss-after"] {
        installed(&must_open(&dir.path().join(name)), name);
    }
}

/// The crash arguments rely on these RocksDB options; the OPTIONS file RocksDB writes on
/// open is what it runs with (some are set through its option-string parser).
#[test]
fn rocksdb_runs_with_the_options_the_crash_arguments_need() {
    for wal in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        drop(must_open_mode(dir.path(), wal));
        let options = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.file_name().unwrap().to_str().unwrap().starts_with("OPTIONS-"))
            .max()
            .unwrap();
        let text = std::fs::read_to_string(options).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let mut expected =
            vec!["atomic_flush=true", "avoid_flush_during_recovery=false", "avoid_flush_during_shutdown=true"];
        if wal {
            expected.extend(["manual_wal_flush=true", "wal_recovery_mode=kPointInTimeRecovery"]);
        }
        for line in expected {
            assert!(lines.contains(&line), "wal {wal}: {line} missing from\n{text}");
        }
    }
}
