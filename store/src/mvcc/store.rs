//! `MvccStore`: opening RocksDB, the published revisions, reads at a revision, flush,
//! sizes, checkpoints and the lease table. Writes live in `write.rs`, compaction in
//! `compact.rs`, the change-log scan in `events.rs`.

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};
use rocksdb::checkpoint::Checkpoint;
use rocksdb::{
    properties, BlockBasedOptions, BottommostLevelCompaction, Cache, ColumnFamily,
    ColumnFamilyDescriptor, CompactOptions, DBCompressionType, DBRecoveryMode, DBWithThreadMode,
    FlushOptions, IteratorMode, Options, ReadOptions, SingleThreaded, SnapshotWithThreadMode,
    WriteBatch, WriteOptions,
};
use tracing::{debug, info, warn};

use super::read::{self, KeyRange, RangeAcc};
use super::record;
use super::{Error, RangeOptions, RangeResult, Result};

/// Spelled out (not `rocksdb::DB`) so a workspace-wide `multi-threaded-cf` feature cannot
/// change the column-family handle type under us.
pub(super) type Db = DBWithThreadMode<SingleThreaded>;
pub(super) type Snapshot<'a> = SnapshotWithThreadMode<'a, Db>;

pub(super) const CF_KV: &str = "kv";
pub(super) const CF_LOG: &str = "log";
pub(super) const CF_META: &str = "meta";
pub(super) const CF_LEASE: &str = "lease";
pub(super) const CF_NAMES: [&str; 4] = [CF_KV, CF_LOG, CF_META, CF_LEASE];

/// etcd's first revision: an empty store is at 1, the first write gets 2.
pub(super) const INITIAL_REVISION: i64 = 1;

const MIB: usize = 1 << 20;
/// Shared by all column families; reads of recent versions should hit it.
const BLOCK_CACHE_BYTES_DEFAULT: usize = 128 * MIB;
/// Per column family. With atomic flush every family flushes when one fills up.
const WRITE_BUFFER_BYTES_DEFAULT: usize = 64 * MIB;
/// How old the size [`MvccStore::db_size_bytes_recent`] returns may be. Reading it anew
/// costs eight RocksDB property reads, each under the DB mutex: done on every put's quota
/// check it was ~2.5 % of the server's CPU under load. etcd's quota check reads an atomic
/// size too, so a few writes may pass in the instant the quota is crossed, as with etcd.
pub const SIZE_SAMPLE_MAX_AGE: std::time::Duration = std::time::Duration::from_millis(20);
/// Flush + compaction threads; the machine also runs raft, the apply loop and gRPC.
const MAX_BACKGROUND_JOBS_DEFAULT: i32 = 2;
/// Larger than RocksDB's 4 KiB: range scans read many adjacent versions.
const BLOCK_SIZE_BYTES: usize = 16 * 1024;
/// RocksDB's recommended format (smaller index blocks, checksums per block).
const TABLE_FORMAT_VERSION: i32 = 5;

#[derive(Debug, Clone, PartialEq)]
pub struct MvccConfig {
    pub block_cache_bytes: usize,
    pub write_buffer_bytes: usize,
    pub max_background_jobs: i32,
    /// Flush memtables when the store is dropped (a clean shutdown: less raft replay on
    /// the next start). `false` leaves them unflushed: with `wal` off a drop then loses
    /// everything not flushed, exactly as a crash does — for tests and fault injection
    /// (with `wal` on the next open recovers them from RocksDB's WAL).
    pub flush_on_close: bool,
    /// RocksDB's own WAL, written out to the OS (never fsynced) after every batch, so a
    /// killed process restarts with everything it applied and only a power loss falls
    /// back to replaying the raft log from the last flush (see the module doc,
    /// "Durability"). `false`: no RocksDB WAL, every crash rewinds to the last flush —
    /// for tests of that replay path.
    pub wal: bool,
}

impl Default for MvccConfig {
    fn default() -> Self {
        MvccConfig {
            block_cache_bytes: BLOCK_CACHE_BYTES_DEFAULT,
            write_buffer_bytes: WRITE_BUFFER_BYTES_DEFAULT,
            max_background_jobs: MAX_BACKGROUND_JOBS_DEFAULT,
            flush_on_close: true,
            wal: true,
        }
    }
}

impl MvccConfig {
    pub fn validate(&self) -> Result<()> {
        if self.write_buffer_bytes < MIB {
            return Err(Error::Config(format!(
                "write_buffer_bytes {} is below 1 MiB",
                self.write_buffer_bytes
            )));
        }
        if self.max_background_jobs < 1 {
            return Err(Error::Config("max_background_jobs must be at least 1".into()));
        }
        Ok(())
    }

    fn cf_options(&self, cache: &Cache) -> Options {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(cache);
        table.set_block_size(BLOCK_SIZE_BYTES);
        table.set_format_version(TABLE_FORMAT_VERSION);
        table.set_cache_index_and_filter_blocks(true);
        // No bloom filter: `kv` is only ever read with seeks (the exact version key is
        // unknown), where whole-key blooms do not help.
        let mut opts = Options::default();
        opts.set_block_based_table_factory(&table);
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_bottommost_compression_type(DBCompressionType::Lz4);
        opts.set_write_buffer_size(self.write_buffer_bytes);
        opts.set_level_compaction_dynamic_level_bytes(true);
        opts
    }
}

/// The MVCC store. `Send + Sync`: share it in an `Arc`; any thread may read while one
/// writer (the apply loop) holds a [`super::WriteTxn`].
pub struct MvccStore {
    pub(super) db: Db,
    /// Held exclusively by a snapshot install for its whole life, shared by a checkpoint
    /// (which must not copy a half-installed store). Lock order: `install`, then
    /// `compactor`, then `writer`.
    pub(super) install: RwLock<()>,
    /// Held by a `WriteTxn` for its whole life. Lock order: `compactor` before `writer`.
    pub(super) writer: Mutex<()>,
    /// Serialises compactions (scheduling plus physical deletion).
    pub(super) compactor: Mutex<()>,
    /// Published only after the batch of that revision is in RocksDB.
    pub(super) current_rev: AtomicI64,
    /// Published before physical compaction deletes anything.
    pub(super) compact_rev: AtomicI64,
    pub(super) consistent_index: AtomicU64,
    /// The raft term of the entry at `consistent_index` (0: never recorded).
    pub(super) applied_term: AtomicU64,
    /// Odd while a snapshot install is replacing the contents, bumped at its start and
    /// end: a reader that saw the same even value before and after a read knows no
    /// install overlapped it (a seqlock; see `restore.rs`).
    pub(super) restore_seq: AtomicU64,
    /// The snapshot index of an install that a crash (or an error) interrupted.
    pub(super) interrupted_restore: Mutex<Option<u64>>,
    /// A lower bound of the consistent index that is in SST files (survives a crash, a
    /// power loss included). Never above that: see [`MvccStore::persisted_consistent_index`].
    pub(super) persisted_consistent_index: AtomicU64,
    /// `MvccConfig::wal`: batches go through RocksDB's WAL, written out after each.
    wal: bool,
    /// Live [`WalGroup`]s: while there is one, batches leave their WAL records buffered
    /// and the group's end writes them all out at once.
    wal_groups: AtomicUsize,
    /// The last [`MvccStore::db_size_bytes`] and when it was read.
    size_sample: Mutex<Option<(std::time::Instant, u64)>>,
    /// Called by a snapshot install once the old contents are deleted and before the new
    /// ones are copied, so a test can act in the middle of an install.
    #[cfg(test)]
    pub(super) install_hook: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

/// The `meta` values the store keeps in memory, as read from a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MetaState {
    pub consistent_index: u64,
    pub applied_term: u64,
    pub current_revision: i64,
    /// The compaction scheduled last, 0 if none.
    pub compact_scheduled: i64,
    /// As `compact_scheduled`, but -1 when none: etcd's "compact 0" on a store never
    /// compacted succeeds once.
    pub compact_raw: i64,
    pub compact_finished: i64,
    /// See [`record::META_RESTORE_STARTED`].
    pub restore_started: Option<u64>,
}

impl MetaState {
    pub fn load(db: &Db) -> Result<Self> {
        let cf = db.cf_handle(CF_META).ok_or_else(|| Error::Corrupt("no meta column family".into()))?;
        let meta = |name: &[u8]| -> Result<Option<u64>> { record::decode_meta_u64(name, db.get_cf(cf, name)?) };
        let scheduled = meta(record::META_COMPACT_SCHEDULED)?;
        let state = MetaState {
            consistent_index: meta(record::META_CONSISTENT_INDEX)?.unwrap_or(0),
            applied_term: meta(record::META_APPLIED_TERM)?.unwrap_or(0),
            current_revision: meta(record::META_CURRENT_REVISION)?.map_or(INITIAL_REVISION, |r| r as i64),
            compact_scheduled: scheduled.map_or(0, |r| r as i64),
            compact_raw: scheduled.map_or(-1, |r| r as i64),
            compact_finished: meta(record::META_COMPACT_FINISHED)?.map_or(0, |r| r as i64),
            restore_started: meta(record::META_RESTORE_STARTED)?,
        };
        let (scheduled, finished, current) = (state.compact_scheduled, state.compact_finished, state.current_revision);
        if scheduled > current || finished > scheduled {
            return Err(Error::Corrupt(format!(
                "compaction scheduled at {scheduled}, finished at {finished}, current revision {current}"
            )));
        }
        Ok(state)
    }
}

impl MvccStore {
    pub fn open(path: &Path, config: MvccConfig) -> Result<Self> {
        config.validate()?;
        let cache = Cache::new_lru_cache(config.block_cache_bytes);
        let mut db_opts = config.cf_options(&cache);
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        // Column families must flush together: the SST files hold a prefix of the batches
        // only if every family is flushed at the same sequence number. Otherwise a power
        // loss (which takes the unsynced WAL, or with `wal` off any crash) could leave a
        // `meta` without the `kv` data its consistent index covers, and raft would skip
        // the replay of that data.
        db_opts.set_atomic_flush(true);
        db_opts.set_max_background_jobs(config.max_background_jobs);
        if config.wal {
            // RocksDB only buffers WAL records; `write_batch` writes them out to the OS
            // (`flush_wal(false)`, no fsync) once per batch, the point from which a killed
            // process keeps the batch.
            db_opts.set_manual_wal_flush(true);
            // RocksDB's default, spelled out because the crash argument depends on it: a
            // power loss can leave the unsynced WAL with a torn or garbage tail, and
            // point-in-time recovery replays up to the first bad record and drops the rest,
            // so the store opens at a prefix of the batches (the raft log replays the rest)
            // instead of refusing to open (`AbsoluteConsistency`) or skipping a hole and
            // applying later batches (`SkipAnyCorruptedRecord`).
            db_opts.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
        }
        // Not settable through the Rust API; RocksDB's option parser knows them.
        // `avoid_flush_during_recovery=false` (RocksDB's default, spelled out): what open
        // recovers from the WAL is flushed to SST files before open returns, which is what
        // lets the persisted consistent index start at the recovered one (see below).
        let mut extra = vec!["avoid_flush_during_recovery=false"];
        if !config.flush_on_close {
            extra.push("avoid_flush_during_shutdown=true");
        }
        db_opts = db_opts.get_options_from_string(extra.join(";"))?;
        let cfs = CF_NAMES.map(|name| ColumnFamilyDescriptor::new(name, config.cf_options(&cache)));
        let db = Db::open_cf_descriptors(&db_opts, path, cfs)?;
        // Belt and braces for the invariant below: should anything recovered still be in a
        // memtable (an option or a RocksDB version that keeps it there), flush it now.
        let unflushed = unflushed_entries(&db);
        if unflushed > 0 {
            warn!(unflushed, "entries recovered from the WAL were left in memtables on open; flushing them");
            let mut opts = FlushOptions::default();
            opts.set_wait(true);
            let cfs = CF_NAMES.map(|name| db.cf_handle(name).expect("every column family is created on open"));
            db.flush_cfs_opt(&cfs, &opts)?;
        }

        let meta = MetaState::load(&db)?;
        let store = MvccStore {
            db,
            install: RwLock::new(()),
            writer: Mutex::new(()),
            compactor: Mutex::new(()),
            current_rev: AtomicI64::new(meta.current_revision),
            compact_rev: AtomicI64::new(meta.compact_raw),
            consistent_index: AtomicU64::new(meta.consistent_index),
            applied_term: AtomicU64::new(meta.applied_term),
            restore_seq: AtomicU64::new(0),
            interrupted_restore: Mutex::new(meta.restore_started),
            // Invariant: the persisted consistent index never exceeds what is in SST files
            // (raft drops its log up to it, and an unsynced WAL does not survive a power
            // loss). Everything open read is in SST files here: RocksDB flushed what it
            // recovered from the WAL during open (`avoid_flush_during_recovery=false`, and
            // the check just above), and with `wal` off the WAL holds nothing anyway.
            persisted_consistent_index: AtomicU64::new(meta.consistent_index),
            wal: config.wal,
            wal_groups: AtomicUsize::new(0),
            size_sample: Mutex::new(None),
            #[cfg(test)]
            install_hook: Mutex::new(None),
        };
        if let Some(index) = meta.restore_started {
            // The contents are a mix of two states; compacting them is pointless (the
            // install is redone from the snapshot file).
            warn!(snapshot_index = index, "the install of a snapshot was interrupted; it must be redone");
        } else {
            store.maybe_resume_compaction(&meta)?;
        }
        info!(
            path = %path.display(),
            current = meta.current_revision,
            compact = meta.compact_scheduled,
            consistent_index = meta.consistent_index,
            applied_term = meta.applied_term,
            "mvcc store opened"
        );
        Ok(store)
    }

    /// Runs steps 2–3 of a compaction whose step 1 is persisted but whose deletions did
    /// not finish (a crash, or a checkpoint taken in the middle of them).
    fn maybe_resume_compaction(&self, meta: &MetaState) -> Result<()> {
        let _compactor = self.compactor.lock();
        self.resume_compaction_locked(meta)
    }

    /// As `maybe_resume_compaction`, the caller holding the `compactor` lock.
    pub(super) fn resume_compaction_locked(&self, meta: &MetaState) -> Result<()> {
        let (scheduled, finished) = (meta.compact_scheduled, meta.compact_finished);
        if scheduled > finished {
            info!(scheduled, finished, "resuming an interrupted compaction");
            self.physical_compact(scheduled)?;
            self.finish_compaction(scheduled)?;
        }
        Ok(())
    }

    pub fn current_revision(&self) -> i64 {
        self.current_rev.load(Ordering::SeqCst)
    }

    /// The revision of the last compaction, 0 if the store was never compacted.
    pub fn compact_revision(&self) -> i64 {
        self.compact_rev.load(Ordering::SeqCst).max(0)
    }

    /// The raft index of the last applied entry.
    pub fn consistent_index(&self) -> u64 {
        self.consistent_index.load(Ordering::SeqCst)
    }

    /// The raft term of the entry at [`Self::consistent_index`], as recorded by
    /// [`super::WriteTxn::set_applied_term`]; 0 when never recorded.
    pub fn applied_term(&self) -> u64 {
        self.applied_term.load(Ordering::SeqCst)
    }

    /// The membership bytes recorded by [`super::WriteTxn::set_membership`], `None` when
    /// never recorded.
    pub fn membership(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(CF_META), record::META_MEMBERSHIP)?)
    }

    /// The index of a snapshot whose install (`MvccStore::restore_from_snapshot`) was
    /// interrupted by a crash (seen on open) or failed with an error: the contents are a
    /// mix of the old state and the snapshot, and must not be used before the install is
    /// redone with the same file. `None` normally.
    pub fn interrupted_restore(&self) -> Option<u64> {
        *self.interrupted_restore.lock()
    }

    /// A consistent index whose effects are known to be in SST files: raft may drop its
    /// log up to here. A lower bound (RocksDB's own background flushes may have persisted more).
    /// Never more than the SST files hold, even with the WAL on: what is only in the
    /// (unsynced) WAL survives a killed process but not a power loss.
    pub fn persisted_consistent_index(&self) -> u64 {
        self.persisted_consistent_index.load(Ordering::SeqCst)
    }

    pub(super) fn cf(&self, name: &str) -> &ColumnFamily {
        self.db.cf_handle(name).expect("every column family is created on open")
    }

    /// Writes one batch atomically. With the WAL on, the batch's WAL record is then
    /// written out to the OS (`flush_wal(false)`: a `write`, no fsync): from then on a
    /// killed process keeps it, and only a power loss can take it (and then only with
    /// every later batch: recovery stops at the first missing record).
    pub(super) fn write_batch(&self, batch: WriteBatch) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.disable_wal(!self.wal);
        self.db.write_opt(batch, &opts)?;
        // Checked after the write: a group that ends after this check writes this batch
        // out with its own (see `WalGroup::drop`).
        if self.wal && self.wal_groups.load(Ordering::SeqCst) == 0 {
            self.db.flush_wal(false)?;
        }
        Ok(())
    }

    /// Starts a group of batches whose WAL records are written out together when the
    /// group is dropped: one `write` for the apply loop's whole batch of raft entries
    /// instead of one per entry. Until then a killed process loses the group's batches
    /// (and any other writer's meanwhile), a suffix, which the raft log replays.
    pub fn wal_group(&self) -> WalGroup<'_> {
        self.wal_groups.fetch_add(1, Ordering::SeqCst);
        WalGroup { store: self }
    }

    /// etcd's read-revision rule: `rev <= 0` reads at `current`; above it is a future
    /// revision; below the compact revision is compacted (the compact revision itself is readable).
    pub(super) fn resolve_read_rev(&self, requested: i64, current: i64) -> Result<i64> {
        if requested > current {
            return Err(Error::FutureRev);
        }
        let rev = if requested <= 0 { current } else { requested };
        self.check_not_compacted(rev)?;
        Ok(rev)
    }

    /// Called again after a read took its snapshot: a compaction published after this
    /// check deletes only after the snapshot exists, so the snapshot still has `rev`.
    pub(super) fn check_not_compacted(&self, rev: i64) -> Result<()> {
        if rev < self.compact_revision() {
            return Err(Error::Compacted);
        }
        Ok(())
    }

    pub(super) fn read_options(&self, snapshot: &Snapshot<'_>) -> ReadOptions {
        let mut opts = ReadOptions::default();
        opts.set_snapshot(snapshot);
        opts
    }

    pub fn range(&self, key: &[u8], range_end: &[u8], opts: RangeOptions) -> Result<RangeResult> {
        let current = self.current_revision();
        let rev = self.resolve_read_rev(opts.rev, current)?;
        let snapshot = self.db.snapshot();
        self.check_not_compacted(rev)?;
        let mut acc = RangeAcc::new(&opts);
        let range = KeyRange::new(key, range_end);
        read::scan_versions(self, &snapshot, &range, rev, |version| {
            if !version.record.tombstone {
                acc.add_live(|| version.to_kv())?;
            }
            Ok(())
        })?;
        // etcd answers with the current revision, whatever revision was read.
        Ok(acc.finish(current))
    }

    /// Flushes every column family's memtables together; everything applied so far is
    /// then in SST files and survives any crash, a power loss included.
    pub fn flush(&self) -> Result<()> {
        // Read before flushing: the batch of this index is already in the memtable.
        let index = self.consistent_index();
        self.flush_all_cfs()?;
        self.persisted_consistent_index.fetch_max(index, Ordering::SeqCst);
        debug!(consistent_index = index, "mvcc store flushed");
        Ok(())
    }

    /// Flushes every column family's memtables together (one atomic flush).
    pub(super) fn flush_all_cfs(&self) -> Result<()> {
        let mut opts = FlushOptions::default();
        opts.set_wait(true);
        let cfs = CF_NAMES.map(|name| self.cf(name));
        self.db.flush_cfs_opt(&cfs, &opts)?;
        Ok(())
    }

    fn sum_property(&self, names: &[&properties::PropName]) -> u64 {
        let mut total = 0;
        for cf in CF_NAMES {
            for name in names {
                // A missing property is reported as 0 rather than failing a metrics read.
                total += self.db.property_int_value_cf(self.cf(cf), *name).ok().flatten().unwrap_or(0);
            }
        }
        total
    }

    /// SST files plus memtables (etcd_mvcc_db_total_size_in_bytes).
    pub fn db_size_bytes(&self) -> u64 {
        self.sum_property(&[
            properties::TOTAL_SST_FILES_SIZE,
            properties::CUR_SIZE_ALL_MEM_TABLES,
        ])
    }

    /// [`MvccStore::db_size_bytes`] as read at most [`SIZE_SAMPLE_MAX_AGE`] ago: for checks
    /// on the hot path (the quota check of every write).
    pub fn db_size_bytes_recent(&self) -> u64 {
        let now = std::time::Instant::now();
        let mut sample = self.size_sample.lock();
        match *sample {
            Some((at, bytes)) if now.duration_since(at) <= SIZE_SAMPLE_MAX_AGE => bytes,
            _ => {
                let bytes = self.db_size_bytes();
                *sample = Some((now, bytes));
                bytes
            }
        }
    }

    /// RocksDB's estimate of live data plus memtables (etcd_mvcc_db_total_size_in_use_in_bytes).
    pub fn db_size_in_use_bytes(&self) -> u64 {
        self.sum_property(&[
            properties::ESTIMATE_LIVE_DATA_SIZE,
            properties::CUR_SIZE_ALL_MEM_TABLES,
        ])
    }

    /// Rewrites every column family, dropping deleted versions and tombstones for good.
    pub fn defragment(&self) -> Result<()> {
        // Flush all families together first; compact_range would otherwise flush one alone.
        self.flush()?;
        let mut opts = CompactOptions::default();
        opts.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
        for name in CF_NAMES {
            self.db.compact_range_cf_opt(self.cf(name), None::<&[u8]>, None::<&[u8]>, &opts);
        }
        info!(db_size_bytes = self.db_size_bytes(), "mvcc store defragmented");
        Ok(())
    }

    /// A consistent copy of the store in `dir` (which must not exist), for raft snapshots.
    /// Waits for a snapshot install in progress to finish (a copy of a half-installed
    /// store would be useless).
    pub fn checkpoint(&self, dir: &Path) -> Result<()> {
        let _install = self.install.read();
        self.flush()?;
        Checkpoint::new(&self.db)?.create_checkpoint(dir)?;
        Ok(())
    }

    /// Every granted lease as `(id, ttl_seconds)`, in id byte order.
    /// The stored alarm list (see `WriteTxn::set_alarms`), empty when none was stored.
    pub fn alarms(&self) -> Result<Vec<u8>> {
        Ok(self.db.get_cf(self.cf(CF_META), record::META_ALARMS)?.unwrap_or_default())
    }

    pub fn leases(&self) -> Result<Vec<(i64, i64)>> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_LEASE), IteratorMode::Start) {
            let (key, value) = item?;
            out.push(record::decode_lease(&key, &value)?);
        }
        Ok(out)
    }

    /// Live keys at the current revision that carry a lease, with the lease id.
    pub fn keys_with_lease(&self) -> Result<Vec<(Vec<u8>, i64)>> {
        let rev = self.current_revision();
        let snapshot = self.db.snapshot();
        let mut out = Vec::new();
        read::scan_versions(self, &snapshot, &KeyRange::all(), rev, |version| {
            if !version.record.tombstone && version.record.lease != 0 {
                out.push((version.user_key()?, version.record.lease));
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// See [`MvccStore::wal_group`].
#[must_use = "the WAL records are written out when the group is dropped"]
pub struct WalGroup<'a> {
    store: &'a MvccStore,
}

impl Drop for WalGroup<'_> {
    fn drop(&mut self) {
        // Decrement first: a batch written after this sees no group and writes itself
        // out; one written before it is written out by the flush below.
        self.store.wal_groups.fetch_sub(1, Ordering::SeqCst);
        if self.store.wal {
            if let Err(e) = self.store.db.flush_wal(false) {
                // Not a durability loss (the raft log holds every applied entry and RocksDB
                // writes the records out with the next batch or flush); a kill before
                // then costs a longer replay.
                warn!(error = %e, "writing RocksDB's WAL out failed");
            }
        }
    }
}

/// Entries in the memtables (active and immutable) of every column family.
fn unflushed_entries(db: &Db) -> u64 {
    let mut total = 0;
    for name in CF_NAMES {
        let cf = db.cf_handle(name).expect("every column family is created on open");
        for property in [properties::NUM_ENTRIES_ACTIVE_MEM_TABLE, properties::NUM_ENTRIES_IMM_MEM_TABLES] {
            // Unreadable counts as 0: this is a safety net, not the mechanism.
            total += db.property_int_value_cf(cf, property).ok().flatten().unwrap_or(0);
        }
    }
    total
}
