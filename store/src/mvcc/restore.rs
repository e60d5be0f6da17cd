//! Installing a snapshot in place: the contents of every column family of the live store
//! are replaced by those of another store (an unpacked raft snapshot), while readers keep
//! their `Arc<MvccStore>`. The file format and digest are `crate::snapshot`'s business;
//! this file only moves key-value pairs.
//!
//! Order, and what a crash at each step leaves. Whatever survives is a prefix of the
//! batches below: with RocksDB's WAL on (`MvccConfig::wal`) a killed process recovers
//! every batch written, in order, and a power loss the flushed ones plus a prefix of the
//! (unsynced) WAL; with it off only flushed state survives, and `atomic_flush` persists a
//! prefix. Step 2's `delete_file_in_range` is no batch: it changes the MANIFEST (synced)
//! at once and survives a power loss that takes the WAL batches around it, which is why
//! the marker is flushed, not just written through the WAL, before it.
//!
//! 1. `restore_started = <snapshot index>` in `meta`, then a flush: the marker is in SST
//!    files before anything is deleted.
//! 2. the SST files (below level 0) of `kv`, `log` and `lease` are dropped
//!    (`delete_file_in_range`, RocksDB's recommended first step of deleting a whole range:
//!    it frees the old data's disk space now, not at some later compaction, so an install
//!    does not need twice the store's size on disk), then one batch of range deletions
//!    over their whole key space removes the rest (memtables, level 0).
//! 3. the snapshot's `kv`, `log` and `lease` pairs, in batches of at most
//!    [`RESTORE_BATCH_BYTES_MAX`].
//! 4. one batch: `meta` replaced by the snapshot's (its consistent index, revisions, term,
//!    membership), which also drops the marker.
//! 5. caches reloaded from `meta`, a flush.
//!
//! A crash after 1 and before 4 is persisted reopens with the marker
//! ([`MvccStore::interrupted_restore`]) and the *old* consistent index, below the
//! snapshot's: the server redoes the install from the snapshot file, never replays raft
//! entries onto the mixed contents. Once 4 is persisted (with the WAL on: for a kill, as
//! soon as it is written; for a power loss, surely once 5's flush is done) the store
//! reopens at the snapshot's state, complete: 4 survives only with every batch before it.
//!
//! Readers are not stopped: one that reads during steps 2–4 may see a mix of the two
//! states (never a panic). The watch hub's catch-up, which must not deliver a mix, uses
//! [`MvccStore::restore_seq`] (a seqlock) to discard a read that overlapped an install.

use std::path::Path;
use std::sync::atomic::Ordering;

use rocksdb::{ColumnFamily, IteratorMode, LogLevel, Options, WriteBatch};
use tracing::{debug, info};

use super::record;
use super::store::{Db, MetaState, CF_KV, CF_LEASE, CF_LOG, CF_META, CF_NAMES};
use super::{Error, MvccStore, Result};

const MIB: usize = 1 << 20;
/// Bytes of one write batch while copying a snapshot in: large enough to amortise a write,
/// small enough that the copy's memory stays bounded whatever the snapshot's size.
pub(crate) const RESTORE_BATCH_BYTES_MAX: usize = 4 * MIB;

/// The column families copied pair by pair (`meta` goes last, in one batch).
const DATA_CFS: [&str; 3] = [CF_KV, CF_LOG, CF_LEASE];

/// Another store's database (a checkpoint or an unpacked snapshot), opened read-only.
pub(crate) struct SnapshotSource {
    db: Db,
    meta: MetaState,
}

/// The raft metadata of a store's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RaftMeta {
    /// The consistent index: the raft index of the last entry the contents include.
    pub index: u64,
    /// The raft term of that entry.
    pub term: u64,
    /// The membership bytes stored with it.
    pub membership: Option<Vec<u8>>,
}

impl SnapshotSource {
    /// Opens the store in `dir` read-only. Fails unless it is a store of this format with
    /// consistent `meta`, and not itself the remains of an interrupted install.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        let mut opts = Options::default();
        // RocksDB's info log would otherwise be a new `LOG` file in `dir`.
        opts.set_info_logger(rocksdb::InfoLogger::new_callback_logger(LogLevel::Warn, |level, msg| {
            debug!(?level, msg = msg.trim_end(), "rocksdb (snapshot source)");
        }));
        let db = Db::open_cf_for_read_only(&opts, dir, CF_NAMES, false)?;
        let meta = MetaState::load(&db)?;
        if let Some(index) = meta.restore_started {
            return Err(Error::Corrupt(format!("the snapshot holds an unfinished install of snapshot {index}")));
        }
        Ok(SnapshotSource { db, meta })
    }

    pub(crate) fn raft_meta(&self) -> Result<RaftMeta> {
        let cf = self.db.cf_handle(CF_META).expect("opened with every column family");
        Ok(RaftMeta {
            index: self.meta.consistent_index,
            term: self.meta.applied_term,
            membership: self.db.get_cf(cf, record::META_MEMBERSHIP)?,
        })
    }
}

impl MvccStore {
    /// Replaces the whole contents of this store by `source`'s (see the module doc). Waits
    /// for (and then excludes) write txns, compactions and checkpoints: the caller must not
    /// hold a [`super::WriteTxn`]. On return every cached value (revisions, consistent index,
    /// applied term) is `source`'s and everything is flushed.
    pub(crate) fn replace_contents(&self, source: &SnapshotSource) -> Result<()> {
        // Lock order: `install`, `compactor`, `writer`.
        let _install = self.install.write();
        let _compactor = self.compactor.lock();
        let writer = self.writer.lock();
        let snapshot_index = source.meta.consistent_index;
        info!(
            snapshot_index,
            snapshot_revision = source.meta.current_revision,
            consistent_index = self.consistent_index(),
            "installing a snapshot in place"
        );
        let seq = self.restore_seq.fetch_add(1, Ordering::SeqCst);
        assert!(seq.is_multiple_of(2), "snapshot installs overlap");
        let result = self.replace_locked(source);
        let meta = match result.and_then(|()| MetaState::load(&self.db)) {
            Ok(meta) => meta,
            Err(e) => {
                // Whatever part of the install happened stays: flag the contents as unusable
                // (as a crash would), and leave the seqlock even so readers do not wait for
                // ever. The caller may retry the install.
                *self.interrupted_restore.lock() = Some(snapshot_index);
                self.restore_seq.fetch_add(1, Ordering::SeqCst);
                return Err(e);
            }
        };
        self.current_rev.store(meta.current_revision, Ordering::SeqCst);
        self.compact_rev.store(meta.compact_raw, Ordering::SeqCst);
        self.consistent_index.store(meta.consistent_index, Ordering::SeqCst);
        self.applied_term.store(meta.applied_term, Ordering::SeqCst);
        *self.interrupted_restore.lock() = None;
        self.restore_seq.fetch_add(1, Ordering::SeqCst);
        drop(writer);
        // The checkpoint may have been taken while its physical compaction was running.
        self.resume_compaction_locked(&meta)?;
        self.flush()?;
        // Not `fetch_max`: the persisted index is the snapshot's now, whatever it was.
        self.persisted_consistent_index.store(meta.consistent_index, Ordering::SeqCst);
        info!(
            consistent_index = meta.consistent_index,
            applied_term = meta.applied_term,
            current = meta.current_revision,
            compact = meta.compact_scheduled,
            "snapshot installed"
        );
        Ok(())
    }

    fn replace_locked(&self, source: &SnapshotSource) -> Result<()> {
        // Step 1: the marker, durable before anything is deleted.
        let mut batch = WriteBatch::default();
        let index = record::encode_u64(source.meta.consistent_index);
        batch.put_cf(self.cf(CF_META), record::META_RESTORE_STARTED, index);
        self.write_batch(batch)?;
        self.flush_all_cfs()?;

        // Step 2: the old data.
        let mut batch = WriteBatch::default();
        for name in DATA_CFS {
            if let Some(last) = self.last_key(name)? {
                self.db.delete_file_in_range_cf(self.cf(name), [].as_slice(), last.as_slice())?;
                delete_all(&mut batch, self.cf(name), &last);
            }
        }
        self.write_batch(batch)?;
        #[cfg(test)]
        if let Some(hook) = &*self.install_hook.lock() {
            hook();
        }

        // Step 3: the data, in bounded batches.
        let mut copied_pairs = 0u64;
        for name in DATA_CFS {
            copied_pairs += self.copy_cf(source, name)?;
        }

        // Step 4: `meta`, atomically and last.
        let mut batch = WriteBatch::default();
        if let Some(last) = self.last_key(CF_META)? {
            delete_all(&mut batch, self.cf(CF_META), &last);
        }
        let src_meta = source.db.cf_handle(CF_META).expect("opened with every column family");
        for item in source.db.iterator_cf(src_meta, IteratorMode::Start) {
            let (key, value) = item?;
            batch.put_cf(self.cf(CF_META), key, value);
        }
        // The source never has it (`SnapshotSource::open` checks); spelled out anyway.
        batch.delete_cf(self.cf(CF_META), record::META_RESTORE_STARTED);
        self.write_batch(batch)?;
        debug!(copied_pairs, "snapshot contents copied");
        Ok(())
    }

    /// The largest key of column family `name`, `None` when it is empty.
    fn last_key(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let mut it = self.db.raw_iterator_cf(self.cf(name));
        it.seek_to_last();
        match it.key() {
            Some(last) => Ok(Some(last.to_vec())),
            None => {
                it.status()?;
                Ok(None)
            }
        }
    }

    /// Copies every pair of `source`'s column family `name`; returns how many.
    fn copy_cf(&self, source: &SnapshotSource, name: &str) -> Result<u64> {
        let src_cf = source.db.cf_handle(name).expect("opened with every column family");
        let cf = self.cf(name);
        let mut batch = WriteBatch::default();
        let mut copied = 0u64;
        for item in source.db.iterator_cf(src_cf, IteratorMode::Start) {
            let (key, value) = item?;
            batch.put_cf(cf, key, value);
            copied += 1;
            if batch.size_in_bytes() >= RESTORE_BATCH_BYTES_MAX {
                self.write_batch(std::mem::take(&mut batch))?;
            }
        }
        if !batch.is_empty() {
            self.write_batch(batch)?;
        }
        Ok(copied)
    }

    /// Makes every later install call `hook` once the old contents are deleted and before
    /// the new ones are copied (the install waits for it).
    #[cfg(test)]
    pub(crate) fn set_install_hook(&self, hook: impl Fn() + Send + Sync + 'static) {
        *self.install_hook.lock() = Some(Box::new(hook));
    }

    /// The restore seqlock: odd while an install is replacing the contents; it changes
    /// at the start and at the end of each install. A reader that must not see a mix of
    /// two states loads it before reading (giving up if odd) and compares after.
    pub(crate) fn restore_seq(&self) -> u64 {
        self.restore_seq.load(Ordering::SeqCst)
    }
}

/// Adds to `batch` the deletion of every key of a column family whose largest key is
/// `last`. No key is larger than every possible key, so the range `["", last)` plus a
/// point delete of `last` is what covers the family.
fn delete_all(batch: &mut WriteBatch, cf: &ColumnFamily, last: &[u8]) {
    batch.delete_range_cf(cf, [].as_slice(), last);
    batch.delete_cf(cf, last);
}
