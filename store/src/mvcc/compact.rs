//! Compaction (etcd's `kvstore_compaction.go`) and `hash_kv`.
//!
//! Compacting at C keeps, for every key, the newest version with main revision ≤ C —
//! unless it is a tombstone, then the key had no live version at C and that tombstone
//! goes too — and deletes every older version, plus every `log` entry ≤ C.
//! Example: `a` put@2, put@4, delete@6, put@8; compact at 5 keeps @4, @6, @8; compact at
//! 6 keeps only @8; compact at 8 keeps @8.
//!
//! Crash safety: step 1 writes "scheduled = C" with the consistent index of the compaction
//! entry; step 2 deletes in batches; step 3 writes "finished = C". A crash before step 1
//! is persisted loses the compaction and raft replays it; after, `open` sees
//! `scheduled > finished` and runs steps 2–3 again (they are idempotent).

use std::sync::atomic::Ordering;

use rocksdb::{IteratorMode, WriteBatch};
use tracing::{debug, info};

use super::key;
use super::record::{self, Record};
use super::store::{CF_KV, CF_LOG, CF_META};
use super::{Error, MvccStore, Result, Revision};

/// Deletions per write batch during physical compaction: big enough to amortise a write,
/// small enough that one batch's memory stays in the low megabytes. A batch is cut only
/// between keys (see `physical_compact`), so one key's history may exceed it.
const COMPACTION_BATCH_DELETES_MAX: usize = 10_000;

impl MvccStore {
    /// Compacts the history up to `rev`; `consistent_index` is the raft index of the
    /// compaction entry, recorded atomically with the compaction.
    /// The applied term is left as it is: see [`Self::compact_with_term`].
    pub fn compact(&self, rev: i64, consistent_index: u64) -> Result<()> {
        self.compact_inner(rev, consistent_index, None)
    }

    /// As [`Self::compact`], also recording `applied_term`, the raft term of the compaction
    /// entry (the `(consistent_index, applied_term)` pair is what a raft snapshot of the
    /// store is labelled with, so both should move together).
    pub fn compact_with_term(&self, rev: i64, consistent_index: u64, applied_term: u64) -> Result<()> {
        self.compact_inner(rev, consistent_index, Some(applied_term))
    }

    fn compact_inner(&self, rev: i64, consistent_index: u64, applied_term: Option<u64>) -> Result<()> {
        let _compactor = self.compactor.lock();
        self.schedule_compaction(rev, consistent_index, applied_term)?;
        self.physical_compact(rev)?;
        self.finish_compaction(rev)?;
        info!(rev, "mvcc compaction finished");
        Ok(())
    }

    /// Step 1: validate, persist "scheduled" and the consistent index, publish the new
    /// compact revision (readers below it now get `Compacted`).
    pub(super) fn schedule_compaction(&self, rev: i64, consistent_index: u64, applied_term: Option<u64>) -> Result<()> {
        // Under the writer lock so the index and the current revision do not move.
        let _writer = self.writer.lock();
        // The raw value: -1 before the first compaction, so compacting at 0 succeeds once.
        if rev <= self.compact_rev.load(Ordering::SeqCst) {
            return Err(Error::Compacted);
        }
        if rev > self.current_revision() {
            return Err(Error::FutureRev);
        }
        let mut batch = WriteBatch::default();
        let meta = self.cf(CF_META);
        batch.put_cf(meta, record::META_COMPACT_SCHEDULED, record::encode_i64(rev));
        batch.put_cf(meta, record::META_CONSISTENT_INDEX, record::encode_u64(consistent_index));
        if let Some(term) = applied_term {
            batch.put_cf(meta, record::META_APPLIED_TERM, record::encode_u64(term));
        }
        self.write_batch(batch)?;
        self.compact_rev.store(rev, Ordering::SeqCst);
        self.consistent_index.store(consistent_index, Ordering::SeqCst);
        if let Some(term) = applied_term {
            self.applied_term.store(term, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Step 2: delete what compaction at `rev` drops. Needs no writer lock: writers only
    /// add versions above the current revision, and this only deletes at or below `rev`.
    pub(super) fn physical_compact(&self, rev: i64) -> Result<()> {
        let kv = self.cf(CF_KV);
        let mut it = self.db.raw_iterator_cf(kv);
        it.seek_to_first();
        let mut batch = WriteBatch::default();
        let mut deleted = 0usize;
        // The encoded key being walked and whether its newest version ≤ `rev` was seen.
        let mut current = Vec::new();
        let mut seen_at_or_below = false;
        while let Some((raw_key, raw_value)) = it.item() {
            let (enc, version_rev) = key::split_kv_key(raw_key)?;
            if enc != current.as_slice() {
                // Cut batches only between keys: a reader's snapshot must never see a
                // key's tombstone deleted but the older versions it hid still present.
                if batch.len() >= COMPACTION_BATCH_DELETES_MAX {
                    deleted += batch.len();
                    self.write_batch(std::mem::take(&mut batch))?;
                }
                current.clear();
                current.extend_from_slice(enc);
                seen_at_or_below = false;
            }
            if version_rev.main <= rev {
                let drop = seen_at_or_below || Record::is_tombstone(raw_value)?;
                seen_at_or_below = true;
                if drop {
                    batch.delete_cf(kv, raw_key);
                    if version_rev.main == rev {
                        // Changes at exactly `rev` stay in the log (a watch may start at
                        // the compact revision, as in etcd) unless their version is gone.
                        batch.delete_cf(self.cf(CF_LOG), key::log_key(version_rev));
                    }
                }
            }
            it.next();
        }
        it.status()?;
        // All log entries below `rev`: one range deletion instead of a point delete each.
        batch.delete_range_cf(self.cf(CF_LOG), key::log_key(Revision::new(0, 0)), key::log_key(Revision::new(rev, 0)));
        deleted += batch.len();
        self.write_batch(batch)?;
        debug!(rev, deleted, "mvcc physical compaction done");
        Ok(())
    }

    /// Step 3.
    pub(super) fn finish_compaction(&self, rev: i64) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_META), record::META_COMPACT_FINISHED, record::encode_i64(rev));
        self.write_batch(batch)
    }

    /// The compaction whose deletions finished, 0 if none.
    #[cfg(test)]
    pub(super) fn finished_compact_revision(&self) -> Result<i64> {
        let raw = self.db.get_cf(self.cf(CF_META), record::META_COMPACT_FINISHED)?;
        Ok(record::decode_meta_u64(record::META_COMPACT_FINISHED, raw)?.map_or(0, |r| r as i64))
    }

    /// A CRC-32 of every version with main revision in `(compact_revision, rev]` (`rev`
    /// 0: current), over the stored key and value bytes in `kv` order. Members that applied
    /// the same entries agree on it whether or not their physical compaction finished.
    /// Returns `(hash, compact_revision, rev)`.
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64, i64)> {
        let current = self.current_revision();
        if rev > current {
            return Err(Error::FutureRev);
        }
        let rev = if rev <= 0 { current } else { rev };
        let snapshot = self.db.snapshot();
        let compact = self.compact_revision();
        if rev < compact {
            return Err(Error::Compacted);
        }
        let mut hasher = crc32fast::Hasher::new();
        let opts = self.read_options(&snapshot);
        for item in self.db.iterator_cf_opt(self.cf(CF_KV), opts, IteratorMode::Start) {
            let (raw_key, raw_value) = item?;
            let (_, version_rev) = key::split_kv_key(&raw_key)?;
            if version_rev.main > compact && version_rev.main <= rev {
                hasher.update(&raw_key);
                hasher.update(&raw_value);
            }
        }
        // etcd reports -1 until the first compaction (its compactMainRev starts there).
        let reported = if self.compact_rev.load(Ordering::SeqCst) < 0 { -1 } else { compact };
        Ok((hasher.finalize(), reported, rev))
    }
}
