//! The model test: random histories applied both to `MvccStore` and to `Model`, a plain
//! `BTreeMap<(key, main, sub), version>` written straight from etcd's rules, comparing
//! every result (ranges at random revisions, txn results and events, watch catch-up,
//! errors, revisions and the consistent index). Histories include reopening after a
//! flush and crashes, and run in both WAL modes (`MvccConfig::wal`):
//! * WAL off: a crash (dropping the store with its unflushed memtables) must rewind the
//!   store exactly to the last flush.
//! * WAL on: a crash (`kill -9`: a copy of the open store's files) must lose nothing, and
//!   a power loss (the same copy without the unsynced WAL) must rewind exactly to the last
//!   flush — where open's recovery of a killed store counts as a flush.
//!
//! Every shrunk failure is kept below as a `regression_*` test.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::store::{CF_KV, CF_LOG};
use super::tests::{crash_copy, must_open_mode, raw_count, Crash};
use super::{Error, Event, EventKind, KeyValue, MvccStore, RangeOptions, RangeResult};

/// Prefixes of each other, the 8-byte group boundary, `\0` and `\xff`.
const KEYS: [&[u8]; 8] = [b"\0", b"a", b"a\0", b"ab", b"abcdefgh", b"abcdefgh\0", b"b", b"\xff"];
const LEASES: [i64; 2] = [0, 7];
const VALUE_KINDS: u8 = 3;
const OPS_PER_HISTORY_MAX: usize = 40;
const OPS_PER_TXN_MAX: usize = 4;
const CASES: u32 = 64;

#[derive(Debug, Clone, Copy)]
enum End {
    /// `range_end` empty: one key.
    Single,
    /// `range_end == "\0"`: every key from `key`.
    FromKey,
    /// `key == range_end == "\0"`: every key.
    AllKeys,
    /// `range_end = KEYS[i]` (possibly ≤ key: an empty range).
    Key(usize),
}

#[derive(Debug, Clone)]
enum TxnOp {
    Put { key: usize, value: u8, lease: usize },
    Delete { key: usize, end: End },
    Range { key: usize, end: End, limit: i64 },
}

#[derive(Debug, Clone)]
enum Op {
    Txn(Vec<TxnOp>),
    /// Compact at `current - back` (negative: a future revision).
    Compact { back: i64 },
    /// Read at `current - back`; `back == RANGE_AT_CURRENT` reads with `rev: 0`.
    Range { key: usize, end: End, back: i64, limit: i64, count_only: bool },
    /// Watch catch-up from `current - back` to the current revision.
    Events { key: usize, end: End, back: i64, limit: usize },
    Flush,
    Reopen,
    /// The process dies: with the WAL off the store is dropped without flushing, with it
    /// on the open store's files are copied (`kill -9` keeps what the OS was given).
    Crash,
    /// The machine dies: the open store's files are copied without the (unsynced) WAL.
    PowerLoss,
}

const RANGE_AT_CURRENT: i64 = -2;

fn bounds(key: usize, end: End) -> (Vec<u8>, Vec<u8>) {
    match end {
        End::Single => (KEYS[key].to_vec(), Vec::new()),
        End::FromKey => (KEYS[key].to_vec(), vec![0]),
        End::AllKeys => (vec![0], vec![0]),
        End::Key(e) => (KEYS[key].to_vec(), KEYS[e].to_vec()),
    }
}

fn value_of(v: u8) -> Vec<u8> {
    // Varying lengths, including empty and more than one encoded group.
    vec![b'v'; usize::from(v) * 5]
}

type Outcome<T> = Result<T, &'static str>;

fn outcome<T>(r: super::Result<T>) -> Outcome<T> {
    match r {
        Ok(v) => Ok(v),
        Err(Error::Compacted) => Err("compacted"),
        Err(Error::FutureRev) => Err("future"),
        Err(e) => panic!("storage error: {e}"),
    }
}

#[derive(Debug, Clone, PartialEq)]
struct MVersion {
    tombstone: bool,
    create: i64,
    version: i64,
    lease: i64,
    value: Vec<u8>,
}

/// etcd's MVCC, without any cleverness.
#[derive(Debug, Clone)]
struct Model {
    versions: BTreeMap<(Vec<u8>, i64, i64), MVersion>,
    current: i64,
    compact: i64,
    index: u64,
}

fn in_range(key: &[u8], end: &[u8], k: &[u8]) -> bool {
    if end.is_empty() {
        k == key
    } else if end == [0] {
        key == [0] || k >= key
    } else {
        k >= key && k < end
    }
}

impl Model {
    fn new() -> Self {
        Model { versions: BTreeMap::new(), current: 1, compact: -1, index: 0 }
    }

    fn newest(&self, k: &[u8], rev: i64) -> Option<(i64, &MVersion)> {
        let lo = (k.to_vec(), i64::MIN, i64::MIN);
        let hi = (k.to_vec(), rev, i64::MAX);
        self.versions.range(lo..=hi).next_back().map(|((_, main, _), v)| (*main, v))
    }

    fn live(&self, k: &[u8], rev: i64) -> Option<KeyValue> {
        match self.newest(k, rev) {
            Some((main, v)) if !v.tombstone => Some(KeyValue {
                key: k.to_vec(),
                create_revision: v.create,
                mod_revision: main,
                version: v.version,
                value: v.value.clone(),
                lease: v.lease,
            }),
            _ => None,
        }
    }

    fn keys(&self) -> BTreeSet<Vec<u8>> {
        self.versions.keys().map(|(k, _, _)| k.clone()).collect()
    }

    /// `cur` is the revision reads see (inside a txn with changes: current + 1).
    fn range(&self, key: &[u8], end: &[u8], opts: RangeOptions, cur: i64) -> Outcome<RangeResult> {
        if opts.rev > cur {
            return Err("future");
        }
        let rev = if opts.rev <= 0 { cur } else { opts.rev };
        if rev < self.compact {
            return Err("compacted");
        }
        let live: Vec<KeyValue> =
            self.keys().iter().filter(|k| in_range(key, end, k)).filter_map(|k| self.live(k, rev)).collect();
        let count = live.len() as i64;
        let kvs = if opts.count_only {
            Vec::new()
        } else if opts.limit > 0 {
            live.into_iter().take(opts.limit as usize).collect()
        } else {
            live
        };
        // etcd reports the current revision, not the one read.
        Ok(RangeResult { kvs, count, rev: cur })
    }

    fn compact(&mut self, rev: i64, index: u64) -> Outcome<()> {
        if rev <= self.compact {
            return Err("compacted");
        }
        if rev > self.current {
            return Err("future");
        }
        for k in self.keys() {
            let mut at_or_below: Vec<_> = self.versions.range((k.clone(), 0, 0)..=(k.clone(), rev, i64::MAX)).collect();
            let newest = at_or_below.pop();
            let mut doomed: Vec<_> = at_or_below.into_iter().map(|(id, _)| id.clone()).collect();
            if let Some((id, v)) = newest {
                if v.tombstone {
                    doomed.push(id.clone());
                }
            }
            for id in doomed {
                self.versions.remove(&id);
            }
        }
        self.compact = rev;
        self.index = index;
        Ok(())
    }

    fn events(&self, from: i64, key: &[u8], end: &[u8], limit: usize) -> Outcome<Vec<Event>> {
        if from < self.compact {
            return Err("compacted");
        }
        let mut changes: Vec<_> = self
            .versions
            .iter()
            .filter(|((k, main, _), _)| *main >= from && in_range(key, end, k))
            .collect();
        changes.sort_by_key(|((_, main, sub), _)| (*main, *sub));
        let mut out: Vec<Event> = Vec::new();
        for ((k, main, _), v) in changes {
            if limit > 0 && out.len() >= limit && out.last().is_some_and(|e| e.kv.mod_revision != *main) {
                break;
            }
            let (kind, kv) = if v.tombstone {
                (EventKind::Delete, KeyValue { key: k.clone(), mod_revision: *main, ..Default::default() })
            } else {
                let kv = KeyValue {
                    key: k.clone(),
                    create_revision: v.create,
                    mod_revision: *main,
                    version: v.version,
                    value: v.value.clone(),
                    lease: v.lease,
                };
                (EventKind::Put, kv)
            };
            let prev_kv = if kind == EventKind::Put && kv.version == 1 { None } else { self.live(k, main - 1) };
            out.push(Event { kind, kv, prev_kv });
        }
        Ok(out)
    }
}

/// Applies one history to a fresh store and the model, RocksDB's WAL on or off; panics
/// at the first mismatch.
fn run(ops: &[Op], wal: bool) {
    let root = tempfile::tempdir().unwrap();
    // Crash copies go to new directories: `dirs` numbers them.
    let mut dirs = 0;
    let mut next_dir = || {
        dirs += 1;
        root.path().join(dirs.to_string())
    };
    let mut dir = next_dir();
    let mut store = must_open_mode(&dir, wal);
    let mut model = Model::new();
    // The model at the last flush: what a crash without WAL leaves.
    let mut flushed = model.clone();
    for (step, op) in ops.iter().enumerate() {
        let ctx = format!("step {step} (wal {wal}): {op:?}");
        match op {
            Op::Txn(txn_ops) => run_txn(&store, &mut model, txn_ops, &ctx),
            Op::Compact { back } => {
                let rev = model.current - back;
                let index = model.index + 1;
                let got = outcome(store.compact(rev, index));
                assert_eq!(got, model.compact(rev, index), "{ctx}");
            }
            Op::Range { key, end, back, limit, count_only } => {
                let (k, e) = bounds(*key, *end);
                let rev = if *back == RANGE_AT_CURRENT { 0 } else { model.current - back };
                let opts = RangeOptions { rev, limit: *limit, count_only: *count_only };
                let got = outcome(store.range(&k, &e, opts));
                assert_eq!(got, model.range(&k, &e, opts, model.current), "{ctx}");
            }
            Op::Events { key, end, back, limit } => {
                let (k, e) = bounds(*key, *end);
                let from = model.current - back;
                let got = outcome(store.events(from, model.current, &k, &e, *limit, true));
                assert_eq!(got, model.events(from, &k, &e, *limit), "{ctx}");
            }
            Op::Flush => {
                store.flush().unwrap();
                flushed = model.clone();
            }
            Op::Reopen => {
                store.flush().unwrap();
                drop(store);
                store = must_open_mode(&dir, wal);
                flushed = model.clone();
            }
            Op::Crash if !wal => {
                // The test config makes a drop lose the memtables, as a crash does.
                drop(store);
                store = must_open_mode(&dir, wal);
                model = flushed.clone();
            }
            Op::Crash | Op::PowerLoss => {
                let kill = matches!(op, Op::Crash);
                dir = next_dir();
                crash_copy(&store, &dir, if kill { Crash::Kill } else { Crash::PowerLoss });
                drop(store);
                store = must_open_mode(&dir, wal);
                if kill {
                    // Nothing lost, and open flushed what it recovered from the WAL.
                    flushed = model.clone();
                } else {
                    model = flushed.clone();
                }
            }
        }
        // Raft drops its log up to the persisted index: it must be exactly what the last
        // flush (or open) put in SST files, never an index only the WAL holds.
        assert_eq!(store.persisted_consistent_index(), flushed.index, "persisted index after {ctx}");
        let got = (store.current_revision(), store.compact_revision(), store.consistent_index());
        assert_eq!(got, (model.current, model.compact.max(0), model.index), "revisions and index after {ctx}");
        // Compaction must free space, not just hide versions.
        let stored = (raw_count(&store, CF_KV), raw_count(&store, CF_LOG));
        let live_log = model.versions.keys().filter(|(_, main, _)| *main >= model.compact).count();
        assert_eq!(stored, (model.versions.len(), live_log), "stored versions and log entries after {ctx}");
    }
    // Finally the whole history that is left, at every readable revision.
    for rev in model.compact.max(1)..=model.current {
        let opts = RangeOptions { rev, ..Default::default() };
        assert_eq!(outcome(store.range(b"\0", b"\0", opts)), model.range(b"\0", b"\0", opts, model.current), "at {rev}");
    }
}

fn run_txn(store: &MvccStore, model: &mut Model, ops: &[TxnOp], ctx: &str) {
    let mut w = store.write();
    let rev = model.current + 1;
    let mut sub = 0;
    for op in ops {
        // The txn's view: its own writes once it has any.
        let cur = if sub > 0 { rev } else { model.current };
        match *op {
            TxnOp::Put { key, value, lease } => {
                let (k, value, lease) = (KEYS[key], value_of(value), LEASES[lease]);
                let prev = model.live(k, rev);
                let (create, version) = prev.as_ref().map_or((rev, 1), |p| (p.create_revision, p.version + 1));
                let v = MVersion { tombstone: false, create, version, lease, value: value.clone() };
                model.versions.insert((k.to_vec(), rev, sub), v);
                sub += 1;
                assert_eq!(w.put(k, &value, lease).unwrap(), prev, "{ctx}: put prev");
            }
            TxnOp::Delete { key, end } => {
                let (k, e) = bounds(key, end);
                let expected = model.range(&k, &e, RangeOptions::default(), cur).unwrap().kvs;
                for kv in &expected {
                    let tombstone = MVersion { tombstone: true, create: 0, version: 0, lease: 0, value: Vec::new() };
                    model.versions.insert((kv.key.clone(), rev, sub), tombstone);
                    sub += 1;
                }
                assert_eq!(w.delete_range(&k, &e).unwrap(), expected, "{ctx}: deleted");
            }
            TxnOp::Range { key, end, limit } => {
                let (k, e) = bounds(key, end);
                let opts = RangeOptions { limit, ..Default::default() };
                assert_eq!(outcome(w.range(&k, &e, opts)), model.range(&k, &e, opts, cur), "{ctx}: txn range");
            }
        }
    }
    model.index += 1;
    let events = w.commit(model.index).unwrap();
    if sub > 0 {
        model.current = rev;
    }
    let expected = if sub > 0 { model.events(rev, b"\0", b"\0", 0).unwrap() } else { Vec::new() };
    assert_eq!(events, expected, "{ctx}: commit events");
}

fn end_strategy() -> impl Strategy<Value = End> {
    prop_oneof![
        Just(End::Single),
        Just(End::FromKey),
        Just(End::AllKeys),
        (0..KEYS.len()).prop_map(End::Key),
    ]
}

fn txn_op_strategy() -> impl Strategy<Value = TxnOp> {
    prop_oneof![
        3 => (0..KEYS.len(), 0..VALUE_KINDS, 0..LEASES.len())
            .prop_map(|(key, value, lease)| TxnOp::Put { key, value, lease }),
        1 => (0..KEYS.len(), end_strategy()).prop_map(|(key, end)| TxnOp::Delete { key, end }),
        1 => (0..KEYS.len(), end_strategy(), 0..3i64).prop_map(|(key, end, limit)| TxnOp::Range { key, end, limit }),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => txn_op_strategy().prop_map(|op| Op::Txn(vec![op])),
        2 => proptest::collection::vec(txn_op_strategy(), 1..=OPS_PER_TXN_MAX).prop_map(Op::Txn),
        1 => (-1i64..6).prop_map(|back| Op::Compact { back }),
        4 => (0..KEYS.len(), end_strategy(), RANGE_AT_CURRENT..8, 0..3i64, any::<bool>())
            .prop_map(|(key, end, back, limit, count_only)| Op::Range { key, end, back, limit, count_only }),
        2 => (0..KEYS.len(), end_strategy(), -1i64..8, 0..4usize)
            .prop_map(|(key, end, back, limit)| Op::Events { key, end, back, limit }),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        1 => Just(Op::PowerLoss),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: CASES,
        // Shrunk failures are kept as `regression_*` tests below instead.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_matches_model_without_wal(ops in proptest::collection::vec(op_strategy(), 1..OPS_PER_HISTORY_MAX)) {
        run(&ops, false);
    }

    #[test]
    fn store_matches_model_with_wal(ops in proptest::collection::vec(op_strategy(), 1..OPS_PER_HISTORY_MAX)) {
        run(&ops, true);
    }
}

#[test]
fn model_history_with_every_op_kind() {
    for wal in [false, true] {
        history_with_every_op_kind(wal);
    }
}

fn history_with_every_op_kind(wal: bool) {
    use End::*;
    let history = [
        Op::Txn(vec![TxnOp::Put { key: 1, value: 1, lease: 0 }, TxnOp::Put { key: 2, value: 2, lease: 1 }]),
        Op::Txn(vec![TxnOp::Put { key: 3, value: 0, lease: 0 }]),
        Op::Flush,
        Op::Txn(vec![
            TxnOp::Delete { key: 1, end: Key(6) },
            TxnOp::Range { key: 0, end: AllKeys, limit: 0 },
            TxnOp::Put { key: 2, value: 1, lease: 0 },
        ]),
        Op::Range { key: 1, end: FromKey, back: 1, limit: 1, count_only: false },
        Op::Events { key: 1, end: Key(6), back: 2, limit: 1 },
        Op::Compact { back: 1 },
        Op::Crash,
        Op::Range { key: 0, end: AllKeys, back: RANGE_AT_CURRENT, limit: 0, count_only: false },
        Op::Compact { back: 0 },
        Op::Reopen,
        Op::Events { key: 0, end: AllKeys, back: 0, limit: 0 },
        Op::Txn(vec![TxnOp::Put { key: 4, value: 2, lease: 0 }]),
        Op::Crash,
        Op::Txn(vec![TxnOp::Put { key: 5, value: 1, lease: 1 }]),
        Op::Compact { back: 1 },
        Op::PowerLoss,
        Op::Range { key: 0, end: AllKeys, back: RANGE_AT_CURRENT, limit: 0, count_only: false },
    ];
    run(&history, wal);
}

/// Shrunk failure: the first crash simulation set `avoid_flush_during_shutdown` through
/// `SetOptions`, which RocksDB rejects for DB options; now it is set at open.
#[test]
fn regression_crash_on_a_fresh_store() {
    for wal in [false, true] {
        run(&[Op::Crash], wal);
        run(&[Op::PowerLoss], wal);
    }
}
