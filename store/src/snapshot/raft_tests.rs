//! Raft snapshots end to end on real stores: create on one store, install in place into
//! another that held different data, and compare every read both can serve.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;
use crate::mvcc::{self, KeyValue, MvccConfig, MvccStore, RangeOptions, RangeResult, WriteTxn};

const MIB: usize = 1 << 20;

/// Small caches; dropping a store is a crash (RocksDB's WAL off: unflushed writes are lost).
fn must_open(dir: &Path) -> MvccStore {
    let config = MvccConfig {
        block_cache_bytes: 8 * MIB,
        write_buffer_bytes: MIB,
        max_background_jobs: 1,
        flush_on_close: false,
        wal: false,
    };
    MvccStore::open(dir, config).expect("open store")
}

/// One write txn at raft `(index, term)`.
fn apply(s: &MvccStore, index: u64, term: u64, ops: impl FnOnce(&mut WriteTxn<'_>)) {
    let mut w = s.write();
    ops(&mut w);
    w.set_applied_term(term);
    w.commit(index).expect("commit");
}

fn put(key: &str, value: &str, lease: i64) -> impl FnOnce(&mut WriteTxn<'_>) {
    let (key, value) = (key.to_string(), value.to_string());
    move |w| {
        w.put(key.as_bytes(), value.as_bytes(), lease).expect("put");
    }
}

/// Store A: puts in several generations, deletes, leases with keys, a compaction, alarms
/// and a membership, at term 3 then 4.
fn build_source(s: &MvccStore) {
    let mut index = 0;
    let mut next = || {
        index += 1;
        index
    };
    apply(s, next(), 3, |w| w.put_lease(100, 60));
    apply(s, next(), 3, |w| {
        w.set_membership(b"members: 1".to_vec());
        w.set_alarms(b"no alarm".to_vec());
    });
    for i in 0..30 {
        apply(s, next(), 3, put(&format!("key/{:02}", i % 7), &format!("v{i}"), 0));
    }
    apply(s, next(), 3, put("leased/a", "x", 100));
    apply(s, next(), 3, put("leased/b", "y", 100));
    apply(s, next(), 3, |w| {
        assert_eq!(w.delete_range(b"key/03", b"key/05").unwrap().len(), 2);
    });
    let compact_at = s.current_revision() - 5;
    s.compact_with_term(compact_at, next(), 4).unwrap();
    apply(s, next(), 4, |w| {
        w.put_lease(200, 30);
        w.put(b"key/04", b"reborn", 200).unwrap();
        w.put(b"\xff", b"last byte", 0).unwrap();
    });
    apply(s, next(), 4, |w| w.delete_lease(100));
    apply(s, next(), 4, |w| w.set_membership(b"members: 1, 2".to_vec()));
}

/// Store B: other keys, a higher revision, other leases, compaction and membership.
fn build_other(s: &MvccStore) {
    apply(s, 1, 1, |w| w.put_lease(7, 10));
    apply(s, 2, 1, |w| w.set_membership(b"members: 9".to_vec()));
    for i in 0..80u64 {
        apply(s, 3 + i, 1, put(&format!("zzz/{}", i % 11), &"b".repeat(200), if i % 5 == 0 { 7 } else { 0 }));
    }
    s.compact(40, 100).unwrap();
}

fn range_all(s: &MvccStore, rev: i64) -> mvcc::Result<RangeResult> {
    s.range(b"\0", b"\0", RangeOptions { rev, ..Default::default() })
}

/// Everything a member serves from the store, at every revision still readable.
fn must_equal(a: &MvccStore, b: &MvccStore) {
    assert_eq!(b.current_revision(), a.current_revision());
    assert_eq!(b.compact_revision(), a.compact_revision());
    assert_eq!(b.consistent_index(), a.consistent_index());
    assert_eq!(b.applied_term(), a.applied_term());
    assert_eq!(b.membership().unwrap(), a.membership().unwrap());
    assert_eq!(b.alarms().unwrap(), a.alarms().unwrap());
    assert_eq!(b.leases().unwrap(), a.leases().unwrap());
    assert_eq!(b.keys_with_lease().unwrap(), a.keys_with_lease().unwrap());
    assert_eq!(b.hash_kv(0).unwrap(), a.hash_kv(0).unwrap());
    let (compact, current) = (a.compact_revision(), a.current_revision());
    for rev in compact..=current {
        assert_eq!(range_all(b, rev).unwrap(), range_all(a, rev).unwrap(), "range at {rev}");
        let single = |s: &MvccStore| s.range(b"key/04", b"", RangeOptions { rev, ..Default::default() }).unwrap();
        assert_eq!(single(b), single(a), "key/04 at {rev}");
    }
    assert!(matches!(range_all(b, compact - 1), Err(mvcc::Error::Compacted)));
    let events = |s: &MvccStore| s.events(compact, current, b"\0", b"\0", 0, true).unwrap();
    assert_eq!(events(b), events(a));
}

/// Most of what `must_equal` compares, for checking that a refused install changed nothing.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    revisions: (i64, i64),
    raft: (u64, u64, Option<Vec<u8>>),
    leases: Vec<(i64, i64)>,
    kvs: Vec<KeyValue>,
    hash: u32,
}

fn observe(s: &MvccStore) -> Observed {
    Observed {
        revisions: (s.current_revision(), s.compact_revision()),
        raft: (s.consistent_index(), s.applied_term(), s.membership().unwrap()),
        leases: s.leases().unwrap(),
        kvs: range_all(s, 0).unwrap().kvs,
        hash: s.hash_kv(0).unwrap().0,
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

#[test]
fn raft_snapshot_installs_in_place_over_other_data() {
    let dir = tempfile::tempdir().unwrap();
    let a = must_open(&dir.path().join("a"));
    build_source(&a);
    let b = must_open(&dir.path().join("b"));
    build_other(&b);
    assert!(b.current_revision() > a.current_revision(), "B must have more to delete than A has");

    let snap_dir = dir.path().join("snap");
    let file = create_raft_snapshot(&a, &snap_dir).unwrap();
    assert_eq!((file.index, file.term), (a.consistent_index(), 4));
    assert_eq!(file.membership, Some(b"members: 1, 2".to_vec()));
    assert_eq!(file.path, raft_snapshot_path(&snap_dir, file.index, file.term));
    assert_eq!(file.size, fs::metadata(&file.path).unwrap().len());
    assert_eq!(names_in(&snap_dir), vec![format!("{:016x}-{:016x}.snap", file.index, 4)], "no temporary left");
    assert_eq!(read_raft_snapshot_meta(&file.path).unwrap(), (file.index, 4, file.membership.clone()));

    let tmp_root = dir.path().join("tmp");
    b.restore_from_snapshot(&file.path, &tmp_root).unwrap();
    must_equal(&a, &b);
    assert_eq!(b.interrupted_restore(), None);
    assert_eq!(names_in(&tmp_root), Vec::<String>::new(), "the unpacked snapshot is removed");

    // The install is durable: B reopened after a crash (nothing flushed since) is still A.
    drop(b);
    let b = must_open(&dir.path().join("b"));
    must_equal(&a, &b);
    assert_eq!(b.interrupted_restore(), None);

    // Both go on identically from there.
    let index = a.consistent_index();
    for s in [&a, &b] {
        apply(s, index + 1, 5, put("after", "1", 200));
        s.compact(s.current_revision() - 1, index + 2).unwrap();
        apply(s, index + 3, 5, |w| {
            w.delete_range(b"key/", b"key0").unwrap();
        });
    }
    must_equal(&a, &b);
}

#[test]
fn a_corrupt_or_truncated_snapshot_is_refused_and_the_store_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let a = must_open(&dir.path().join("a"));
    build_source(&a);
    let b = must_open(&dir.path().join("b"));
    build_other(&b);
    let before = observe(&b);
    let snap_dir = dir.path().join("snap");
    let good = fs::read(create_raft_snapshot(&a, &snap_dir).unwrap().path).unwrap();
    let tmp_root = dir.path().join("tmp");
    let bad_file = dir.path().join("bad.snap");

    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x40;
    let mut bad_digest = good.clone();
    *bad_digest.last_mut().unwrap() ^= 1;
    let cases: [(&str, &[u8]); 5] = [
        ("a flipped bit", &flipped),
        ("a wrong digest", &bad_digest),
        ("truncated by one byte", &good[..good.len() - 1]),
        ("truncated to half", &good[..good.len() / 2]),
        ("empty", &[]),
    ];
    for (what, bytes) in cases {
        fs::write(&bad_file, bytes).unwrap();
        assert!(matches!(read_raft_snapshot_meta(&bad_file), Err(Error::Invalid(_))), "{what}");
        match b.restore_from_snapshot(&bad_file, &tmp_root) {
            Err(Error::Invalid(_)) => {}
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(observe(&b), before, "{what}: the store changed");
    }

    // A well-formed stream (digest and all) of files that are not a store.
    let junk = dir.path().join("junk");
    fs::create_dir_all(&junk).unwrap();
    fs::write(junk.join("CURRENT"), b"MANIFEST-000001\n").unwrap();
    let mut out = Vec::new();
    stream_dir(&junk, &mut |chunk: Vec<u8>, _| {
        out.extend_from_slice(&chunk);
        true
    })
    .unwrap();
    fs::write(&bad_file, &out).unwrap();
    verify(&bad_file).unwrap();
    assert!(matches!(b.restore_from_snapshot(&bad_file, &tmp_root), Err(Error::Mvcc(_))));
    assert!(matches!(read_raft_snapshot_meta(&bad_file), Err(Error::Invalid(_))), "no raft meta record");
    assert_eq!(observe(&b), before, "not a store: the store changed");
    assert_eq!(names_in(&tmp_root), Vec::<String>::new(), "every unpacked attempt is removed");

    // And B still takes the good one.
    fs::write(&bad_file, &good).unwrap();
    b.restore_from_snapshot(&bad_file, &tmp_root).unwrap();
    must_equal(&a, &b);
}

/// The index, term and membership in the file describe the data in the file, not the
/// live store at some later moment: each snapshot taken while a writer runs, installed,
/// has exactly the value written at its own index.
#[test]
fn snapshot_meta_comes_from_the_checkpoint_while_the_store_keeps_applying() {
    const SNAPSHOTS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(must_open(&dir.path().join("a")));
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (a, done) = (a.clone(), done.clone());
        std::thread::spawn(move || {
            let mut index = 0u64;
            while !done.load(Ordering::SeqCst) {
                index += 1;
                apply(&a, index, index / 10, |w| {
                    w.put(b"index", index.to_string().as_bytes(), 0).unwrap();
                    w.set_membership(format!("m{index}").into_bytes());
                });
            }
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while a.consistent_index() == 0 {
        assert!(std::time::Instant::now() < deadline, "the writer never wrote");
        std::thread::yield_now();
    }
    let b = must_open(&dir.path().join("b"));
    let snap_dir = dir.path().join("snap");
    let mut last_index = 0;
    for _ in 0..SNAPSHOTS {
        let file = create_raft_snapshot(&a, &snap_dir).unwrap();
        b.restore_from_snapshot(&file.path, &dir.path().join("tmp")).unwrap();
        assert_eq!((b.consistent_index(), b.applied_term()), (file.index, file.term));
        assert_eq!(file.term, file.index / 10);
        assert_eq!(b.membership().unwrap(), Some(format!("m{}", file.index).into_bytes()));
        assert_eq!(file.membership, b.membership().unwrap());
        let value = range_all(&b, 0).unwrap().kvs.first().map(|kv| kv.value.clone());
        assert_eq!(value, Some(file.index.to_string().into_bytes()));
        assert!(file.index >= last_index);
        last_index = file.index;
        remove_raft_snapshots_except(&snap_dir, &file.path);
    }
    done.store(true, Ordering::SeqCst);
    writer.join().unwrap();
}

/// Readers keep reading while a snapshot is installed under them: they may see a mix of
/// the two states or errors, but nothing panics, and afterwards they see the snapshot.
#[test]
fn readers_during_an_install_never_panic() {
    const READERS: usize = 2;
    let dir = tempfile::tempdir().unwrap();
    let a = must_open(&dir.path().join("a"));
    build_source(&a);
    let file = create_raft_snapshot(&a, &dir.path().join("snap")).unwrap();
    let b = Arc::new(must_open(&dir.path().join("b")));
    build_other(&b);
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (b, done) = (b.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !done.load(Ordering::SeqCst) || reads == 0 {
                    let current = b.current_revision();
                    let _ = range_all(&b, 0);
                    let _ = range_all(&b, current - 3);
                    let _ = b.events(b.compact_revision(), current, b"\0", b"\0", 100, true);
                    let _ = b.hash_kv(0);
                    let _ = b.keys_with_lease();
                    let _ = (b.leases(), b.membership(), b.alarms());
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for _ in 0..3 {
        b.restore_from_snapshot(&file.path, &dir.path().join("tmp")).unwrap();
    }
    done.store(true, Ordering::SeqCst);
    for r in readers {
        assert!(r.join().expect("a reader panicked") > 0);
    }
    must_equal(&a, &b);
}

#[test]
fn old_snapshots_and_leftovers_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let keep = raft_snapshot_path(d, 9, 2);
    for name in ["0000000000000001-0000000000000001.snap", "other.txt", "x.snap.1234-abcd.tmp"] {
        fs::write(d.join(name), b"x").unwrap();
    }
    fs::write(&keep, b"x").unwrap();
    fs::create_dir_all(d.join("install-1-2.tmp/inner")).unwrap();
    fs::create_dir_all(d.join("outgoing")).unwrap();
    fs::write(d.join("outgoing/0000000000000003-0000000000000001.snap"), b"x").unwrap();

    remove_raft_snapshots_except(d, &keep);
    assert_eq!(
        names_in(d),
        vec!["0000000000000009-0000000000000002.snap", "install-1-2.tmp", "other.txt", "outgoing", "x.snap.1234-abcd.tmp"]
    );
    remove_raft_snapshot_leftovers(d);
    assert_eq!(names_in(d), vec!["0000000000000009-0000000000000002.snap", "other.txt", "outgoing"]);
    assert_eq!(names_in(&d.join("outgoing")).len(), 1, "subdirectories are not searched");
    remove_raft_snapshots_except(&d.join("missing"), &keep); // no directory: nothing to do
}

#[test]
fn raft_meta_record_round_trips_and_rejects_malformed_bytes() {
    for membership in [None, Some(Vec::new()), Some(b"abc".to_vec())] {
        let meta = RaftMeta { index: 0x0102_0304_0506_0708, term: 9, membership };
        let raw = raft::encode_raft_meta_record(&meta);
        assert_eq!(raft::decode_raft_meta_record(&raw).unwrap(), meta);
        assert!(raft::decode_raft_meta_record(&raw[..raw.len() - 1]).is_err());
        let mut longer = raw.clone();
        longer.push(0);
        assert!(raft::decode_raft_meta_record(&longer).is_err());
    }
    let mut bad_flag = raft::encode_raft_meta_record(&RaftMeta { index: 1, term: 1, membership: None });
    bad_flag[24] = 2;
    assert!(raft::decode_raft_meta_record(&bad_flag).is_err());
}
