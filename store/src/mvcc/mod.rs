//! MVCC state machine on RocksDB, with etcd v3's semantics.
//!
//! Owns: revisions, versions, tombstones, compaction, the revision-ordered change log,
//! the persisted lease table and the applied raft index (`consistent_index`).
//! Must never: keep an in-memory index of every key (a range at revision R is a seek),
//! or hold a lock across IO that readers wait on.
//! Where new code goes: a new read shape → `read.rs`; a new write op → `write.rs`;
//! byte layouts → `key.rs` / `record.rs`; open/flush/sizes → `store.rs`; replacing the
//! contents with a snapshot's → `restore.rs` (the file format is `crate::snapshot`'s).
//!
//! # Semantics (etcd's `mvcc` package)
//! An empty store is at revision 1. A write txn that changes at least one key gets main
//! revision `current + 1`; the keys it changes get sub revisions 0, 1, 2… in the order of
//! the changes. A txn that changes nothing (including lease-only txns) keeps the revision.
//! `version` is 1 on creation and +1 per put; a delete writes a tombstone and the next put
//! starts a new generation (new `create_revision`, version 1).
//! Example history: put a@2, put a@3, delete a@4, put a@5 → reads at 3 give a{create 2,
//! mod 3, version 2}; at 4 nothing; at 5 a{create 5, mod 5, version 1}.
//!
//! # On-disk layout (column families)
//! * `kv`: `memcomparable(key) ⧺ !main ⧺ !sub` → `flags | create | version | lease | value`.
//!   Key-ordered, versions newest first (`key.rs` explains the order), so a range at R is
//!   one forward scan with one seek per key; there is no in-memory key index to rebuild
//!   on open or to hold in RAM, which is what lets the store hold more keys than memory.
//!   Compaction deletes old versions with point deletes.
//! * `log`: `main ⧺ sub` → `kind | key`. Revision-ordered, so a watcher catching up from
//!   revision F reads exactly the changes since F (then point-reads each version from
//!   `kv`) instead of scanning every key. Entries ≤ the compact revision are dropped with a
//!   single range deletion.
//! * `meta`: consistent index and the raft term of its entry, current revision, compact
//!   revision scheduled/finished, alarms, the membership (opaque bytes), and the marker
//!   of a snapshot install in progress (`restore.rs`).
//! * `lease`: `id (big-endian i64)` → `format | ttl`.
//!
//! # Durability
//! The raft log is the durable log: the store may lose a suffix of what it applied, and
//! raft replays it. Every batch carries the consistent index of the entry it applies, so
//! whatever survives a crash is a prefix of the batches ending at the consistent index
//! `open` loads, and raft replays from there.
//!
//! With `MvccConfig::wal` (the default) batches also go through RocksDB's WAL, never
//! fsynced: `manual_wal_flush`, and one `flush_wal(false)` (a `write`, no fsync) after
//! every batch in `MvccStore::write_batch`, so each batch is in the OS's page cache once
//! it is applied.
//! * A killed process (`kill -9`, a panic, the OOM killer) loses nothing: `open` replays
//!   the WAL, and the member restarts with almost nothing for raft to replay.
//! * A power loss (or kernel crash) may take the WAL from any point on. Point-in-time
//!   recovery replays it up to the first torn or damaged record, so the store opens at a
//!   prefix between its last flush and its last batch — at worst what WAL-off gives.
//!
//! With `wal` off (tests of the replay path) only flushed state survives any crash.
//!
//! Invariants:
//! * `persisted_consistent_index` (raft compacts its log up to it) never covers more than
//!   the SST files hold: only a flush raises it, and `open` starts it at the loaded
//!   index because RocksDB flushes what it recovered from the WAL before `open` returns
//!   (`avoid_flush_during_recovery=false`; `open` flushes anything left in memtables too).
//! * `atomic_flush`: column families flush together at one sequence number, so the SST
//!   files hold a prefix of the batches (otherwise `meta` could survive without the `kv`
//!   data it describes); the WAL after them is replayed in order, so SST + WAL is still a
//!   prefix.
//! * Something that must survive a power loss before an effect that bypasses the WAL
//!   (the install marker before `delete_file_in_range`, `restore.rs`) is flushed, not just
//!   written.
//!
//! Compaction records "scheduled" before deleting and "finished" after, and an unfinished
//! one resumes on open (deletions are idempotent).
//!
//! # Concurrency
//! One writer at a time (`MvccStore::write` takes the writer mutex); readers never take
//! it. A reader fixes its revision R from `current_revision` *before* taking a RocksDB
//! snapshot; the writer publishes a revision only after its whole batch is in RocksDB, so
//! the snapshot holds all of R. Later batches may be in the snapshot too; readers ignore
//! versions above R. Compaction publishes the new compact revision before deleting, and
//! readers re-check it after taking their snapshot. A snapshot install (`restore.rs`)
//! excludes writers, compactions and checkpoints but not readers, which may see a mix of
//! the two states while it runs; the `restore_seq` seqlock tells a reader that cares.

mod compact;
mod events;
mod key;
mod read;
mod record;
mod restore;
mod store;
pub mod types;
mod write;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

pub(crate) use restore::{RaftMeta, SnapshotSource};
pub use store::{MvccConfig, MvccStore, WalGroup};
pub use types::*;
pub use write::WriteTxn;

/// Errors of the MVCC store. `Compacted` and `FutureRev` are request errors (mapped to
/// etcd's wire errors by the caller); the rest are storage failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    #[error("mvcc: required revision is a future revision")]
    FutureRev,
    #[error("mvcc: rocksdb: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("mvcc: corrupt data: {0}")]
    Corrupt(String),
    #[error("mvcc: invalid config: {0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
