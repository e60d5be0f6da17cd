//! `WriteTxn`: etcd's `storeTxnWrite`. Changes are buffered in memory, visible to the
//! txn's own reads, and written at commit in one `WriteBatch` together with the consistent
//! index; the revision is published only after that batch is in RocksDB.
//!
//! Example: at current revision 4, a txn puts `a`, deletes `[b, d)` (live: `b`, `c`) and
//! puts `a` again. It writes at main revision 5: `a`@5/0, tombstones `b`@5/1 and `c`@5/2,
//! `a`@5/3 (version one more than `a`@5/0). Reads inside the txn after the first put see
//! revision 5; the current revision becomes 5 when the commit's batch is written.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::Ordering;

use parking_lot::MutexGuard;
use rocksdb::WriteBatch;

use super::key;
use super::read::{self, KeyRange, RangeAcc};
use super::record::{self, Record};
use super::store::{CF_KV, CF_LEASE, CF_LOG, CF_META};
use super::{Event, EventKind, KeyValue, MvccStore, RangeOptions, RangeResult, Result, Revision};

/// The single write transaction; holds the store's writer lock until dropped or committed.
/// Dropping it without `commit` discards every change.
pub struct WriteTxn<'a> {
    store: &'a MvccStore,
    _writer: MutexGuard<'a, ()>,
    begin_rev: i64,
    /// In sub-revision order: `changes[i]` is written at `(rev(), i)`.
    changes: Vec<Change>,
    /// Keys changed so far, by memcomparable encoding (so the map iterates in key order).
    touched: BTreeMap<Vec<u8>, Touched>,
    lease_ops: Vec<LeaseOp>,
    /// New encoded alarm list to store with this txn, if it changes.
    alarms: Option<Vec<u8>>,
    /// Raft term of the entry committed with this txn, if the caller set it.
    applied_term: Option<u64>,
    /// New encoded membership to store with this txn, if it changes.
    membership: Option<Vec<u8>>,
}

struct Change {
    enc_key: Vec<u8>,
    kind: EventKind,
    /// For a put the new version; for a delete the key and `mod_revision` only (the
    /// event form etcd sends).
    kv: KeyValue,
}

struct Touched {
    /// Index of the key's latest change in `changes`.
    latest: usize,
    /// The key as it was before this txn: the `prev_kv` of its watch events, which etcd
    /// reads at `mod_revision - 1`.
    before_txn: Option<KeyValue>,
}

enum LeaseOp {
    Put { id: i64, ttl: i64 },
    Delete { id: i64 },
}

impl MvccStore {
    /// Starts the write txn, waiting for the previous one to finish.
    pub fn write(&self) -> WriteTxn<'_> {
        let guard = self.writer.lock();
        WriteTxn {
            store: self,
            _writer: guard,
            // Stable while the writer lock is held: only a write txn advances it.
            begin_rev: self.current_revision(),
            changes: Vec::new(),
            touched: BTreeMap::new(),
            lease_ops: Vec::new(),
            alarms: None,
            applied_term: None,
            membership: None,
        }
    }
}

impl WriteTxn<'_> {
    /// The revision this txn writes at (if it changes any key).
    pub fn rev(&self) -> i64 {
        self.begin_rev + 1
    }

    /// The revision the txn's own reads see: its writes once it has any (etcd reads at
    /// `beginRev + 1` once `changes` is non-empty).
    fn read_rev(&self) -> i64 {
        if self.changes.is_empty() {
            self.begin_rev
        } else {
            self.rev()
        }
    }

    /// A range that sees this txn's earlier writes.
    pub fn range(&self, key: &[u8], range_end: &[u8], opts: RangeOptions) -> Result<RangeResult> {
        let current = self.read_rev();
        let rev = self.store.resolve_read_rev(opts.rev, current)?;
        if rev <= self.begin_rev {
            // Nothing of this txn is visible there: the store's own read is exact (its
            // current revision is `begin_rev` while we hold the writer lock).
            let result = self.store.range(key, range_end, RangeOptions { rev, ..opts })?;
            return Ok(RangeResult { rev: current, ..result });
        }
        let snapshot = self.store.db.snapshot();
        let range = KeyRange::new(key, range_end);
        let mut acc = RangeAcc::new(&opts);
        let mut pending = match range.encoded() {
            None => self.touched.range::<Vec<u8>, _>((Bound::Unbounded, Bound::Excluded(Vec::new()))),
            Some((start, None)) => self.touched.range((Bound::Included(start), Bound::Unbounded)),
            Some((start, Some(end))) => self.touched.range((Bound::Included(start), Bound::Excluded(end))),
        }
        .peekable();
        // Merge the store at `begin_rev` with the txn's changes, both in encoded-key order;
        // the txn's change of a key replaces the store's version.
        read::scan_versions(self.store, &snapshot, &range, self.begin_rev, |version| {
            while let Some((enc, touched)) = pending.next_if(|(enc, _)| enc.as_slice() < version.enc_key) {
                self.add_changed(&mut acc, enc, touched)?;
            }
            if let Some((enc, touched)) = pending.next_if(|(enc, _)| enc.as_slice() == version.enc_key) {
                return self.add_changed(&mut acc, enc, touched);
            }
            if !version.record.tombstone {
                acc.add_live(|| version.to_kv())?;
            }
            Ok(())
        })?;
        for (enc, touched) in pending {
            self.add_changed(&mut acc, enc, touched)?;
        }
        Ok(acc.finish(current))
    }

    fn add_changed(&self, acc: &mut RangeAcc, enc: &[u8], touched: &Touched) -> Result<()> {
        let change = &self.changes[touched.latest];
        debug_assert_eq!(change.enc_key, enc);
        match change.kind {
            EventKind::Put => acc.add_live(|| Ok(change.kv.clone())),
            EventKind::Delete => Ok(()),
        }
    }

    /// The key's live version as this txn sees it.
    fn get(&self, enc_key: &[u8], user_key: &[u8]) -> Result<Option<KeyValue>> {
        if let Some(touched) = self.touched.get(enc_key) {
            let change = &self.changes[touched.latest];
            return Ok(match change.kind {
                EventKind::Put => Some(change.kv.clone()),
                EventKind::Delete => None,
            });
        }
        let snapshot = self.store.db.snapshot();
        read::get_live(self.store, &snapshot, user_key, self.begin_rev)
    }

    fn record_change(&mut self, enc_key: Vec<u8>, kind: EventKind, kv: KeyValue, prev: &Option<KeyValue>) {
        let index = self.changes.len();
        match self.touched.entry(enc_key.clone()) {
            Entry::Occupied(mut e) => e.get_mut().latest = index,
            // First change of this key in the txn: `prev` is still the pre-txn state.
            Entry::Vacant(e) => {
                e.insert(Touched { latest: index, before_txn: prev.clone() });
            }
        }
        self.changes.push(Change { enc_key, kind, kv });
    }

    /// Puts a new version of `key`; returns the version it replaced (as this txn saw it).
    pub fn put(&mut self, key: &[u8], value: &[u8], lease: i64) -> Result<Option<KeyValue>> {
        let enc_key = key::encode_key(key);
        let prev = self.get(&enc_key, key)?;
        let main = self.rev();
        let (create_revision, version) = match &prev {
            Some(p) => (p.create_revision, p.version + 1),
            None => (main, 1),
        };
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision,
            mod_revision: main,
            version,
            value: value.to_vec(),
            lease,
        };
        self.record_change(enc_key, EventKind::Put, kv, &prev);
        Ok(prev)
    }

    /// Deletes every live key in the range (etcd's `range_end` rules), one tombstone per
    /// key in key order; returns the deleted versions.
    pub fn delete_range(&mut self, key: &[u8], range_end: &[u8]) -> Result<Vec<KeyValue>> {
        let live = self.range(key, range_end, RangeOptions::default())?.kvs;
        let main = self.rev();
        for prev in &live {
            let kv = KeyValue { key: prev.key.clone(), mod_revision: main, ..KeyValue::default() };
            self.record_change(key::encode_key(&prev.key), EventKind::Delete, kv, &Some(prev.clone()));
        }
        Ok(live)
    }

    pub fn put_lease(&mut self, id: i64, ttl: i64) {
        self.lease_ops.push(LeaseOp::Put { id, ttl });
    }

    pub fn delete_lease(&mut self, id: i64) {
        self.lease_ops.push(LeaseOp::Delete { id });
    }

    /// Replaces the stored alarm list (opaque bytes; the applier owns the encoding), in the
    /// same batch as the consistent index so a raised alarm survives a restart.
    pub fn set_alarms(&mut self, encoded: Vec<u8>) {
        self.alarms = Some(encoded);
    }

    /// Records `term` as the raft term of the entry whose index this txn commits (see
    /// [`MvccStore::applied_term`]). Raft snapshots need the `(index, term)` pair of the
    /// state they hold, so the applier sets it on every txn; unset, the stored term stays.
    pub fn set_applied_term(&mut self, term: u64) {
        self.applied_term = Some(term);
    }

    /// Replaces the stored membership (opaque bytes; the server owns the encoding), in the
    /// same batch as the consistent index, so a snapshot carries the membership of exactly
    /// the state it holds.
    pub fn set_membership(&mut self, encoded: Vec<u8>) {
        self.membership = Some(encoded);
    }

    /// Writes the txn and `consistent_index` in one batch. Returns the events in sub
    /// revision order, `prev_kv` filled (the state before the txn; none for creations,
    /// as etcd). A txn without key changes records the index but keeps the revision.
    pub fn commit(self, consistent_index: u64) -> Result<Vec<Event>> {
        let store = self.store;
        let main = self.rev();
        let mut batch = WriteBatch::default();
        for (sub, change) in self.changes.iter().enumerate() {
            let rev = Revision::new(main, sub as i64);
            let value = match change.kind {
                EventKind::Put => Record::live(&change.kv).encode(),
                EventKind::Delete => Record::tombstone().encode(),
            };
            batch.put_cf(store.cf(CF_KV), key::kv_key(&change.enc_key, rev), value);
            batch.put_cf(store.cf(CF_LOG), key::log_key(rev), record::encode_log_value(change.kind, &change.kv.key));
        }
        for op in &self.lease_ops {
            match *op {
                LeaseOp::Put { id, ttl } => {
                    batch.put_cf(store.cf(CF_LEASE), record::lease_key(id), record::encode_lease_value(ttl))
                }
                LeaseOp::Delete { id } => batch.delete_cf(store.cf(CF_LEASE), record::lease_key(id)),
            }
        }
        if let Some(alarms) = &self.alarms {
            batch.put_cf(store.cf(CF_META), record::META_ALARMS, alarms);
        }
        if let Some(membership) = &self.membership {
            batch.put_cf(store.cf(CF_META), record::META_MEMBERSHIP, membership);
        }
        if let Some(term) = self.applied_term {
            batch.put_cf(store.cf(CF_META), record::META_APPLIED_TERM, record::encode_u64(term));
        }
        let changed = !self.changes.is_empty();
        batch.put_cf(store.cf(CF_META), record::META_CONSISTENT_INDEX, record::encode_u64(consistent_index));
        if changed {
            batch.put_cf(store.cf(CF_META), record::META_CURRENT_REVISION, record::encode_i64(main));
        }
        store.write_batch(batch)?;
        if changed {
            store.current_rev.store(main, Ordering::SeqCst);
        }
        store.consistent_index.store(consistent_index, Ordering::SeqCst);
        if let Some(term) = self.applied_term {
            store.applied_term.store(term, Ordering::SeqCst);
        }

        let events = self
            .changes
            .into_iter()
            .map(|change| {
                let touched = &self.touched[&change.enc_key];
                let is_create = change.kind == EventKind::Put && change.kv.version == 1;
                let prev_kv = if is_create { None } else { touched.before_txn.clone() };
                Event { kind: change.kind, kv: change.kv, prev_kv }
            })
            .collect();
        Ok(events)
    }
}
