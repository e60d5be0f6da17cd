//! `DurableStorage`: raft-rs's `Storage` over the WAL. It holds the raft log since the last
//! compaction in memory (rebuilt from the WAL on open); the `LogWriter` makes changes
//! durable. Readers (raft-rs) get a cheap clonable handle; the single writer path is
//! `LogWriter::submit*`, which applies a task here and enqueues it for fsync atomically.
//!
//! Why not raft-rs's `MemStorage`: its `compact` forgets the term of the entry before the
//! first one (raft-rs needs it for log matching) and its `snapshot()` reports the commit
//! index, not what the state machine holds. The log rules live in `wal::LogState`, shared
//! with recovery, so memory and disk cannot disagree on them.
//!
//! Lock order: this lock is taken alone, or before the writer's queue (never the reverse).

use std::sync::Arc;

use parking_lot::RwLock;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::wal::{LogBatch, LogState, Recovered, Result, Wal};
pub use crate::wal::{LogWriter, PersistTask, WalConfig};

/// The index and term of the marker a new cluster's log starts after (see `open_bootstrap`).
pub const BOOTSTRAP_INDEX: u64 = 1;
pub const BOOTSTRAP_TERM: u64 = 1;

/// The raft log as raft-rs sees it. Clones share one log.
#[derive(Clone, Default)]
pub struct DurableStorage {
    core: Arc<RwLock<LogState<Entry>>>,
}

impl std::fmt::Debug for DurableStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let core = self.core.read();
        f.debug_struct("DurableStorage")
            .field("first_index", &core.first_index())
            .field("last_index", &core.last_index())
            .field("hard_state", &core.hard_state)
            .field("conf_state", &core.conf_state)
            .finish()
    }
}

impl DurableStorage {
    /// Opens the WAL in `config.dir` (creating it if needed), rebuilds the log from it and
    /// starts the writer thread. The one entry point for a node's raft log.
    pub fn open(config: WalConfig) -> Result<(DurableStorage, LogWriter)> {
        let (wal, recovered) = Wal::open(&config)?;
        Self::start(wal, recovered)
    }

    /// As `open`, and if the WAL is brand new, bootstraps a cluster whose initial voters
    /// are `voters`: a snapshot marker at index 1, term 1 holding that membership, and a
    /// hard state committing it, made durable before this returns. Every initial member
    /// writes the same marker, so their logs agree at index 1; the log proper starts at 2,
    /// which makes a member that joins later (empty log) receive a snapshot of the state
    /// machine rather than a log without the initial membership. An existing log is left
    /// as it is.
    pub fn open_bootstrap(config: WalConfig, voters: &[u64]) -> Result<(DurableStorage, LogWriter)> {
        let (mut wal, mut recovered) = Wal::open(&config)?;
        if recovered == Recovered::default() {
            let mut meta = SnapshotMetadata {
                index: BOOTSTRAP_INDEX,
                term: BOOTSTRAP_TERM,
                ..Default::default()
            };
            let mut ids = voters.to_vec();
            ids.sort_unstable();
            ids.dedup();
            meta.mut_conf_state().voters = ids;
            let hard_state = HardState {
                term: BOOTSTRAP_TERM,
                commit: BOOTSTRAP_INDEX,
                vote: 0,
                ..Default::default()
            };
            wal.append(&LogBatch {
                snapshot: Some(&meta),
                hard_state: Some(&hard_state),
                ..Default::default()
            })?;
            wal.sync()?;
            recovered.snapshot = Some(meta);
            recovered.hard_state = hard_state;
        }
        Self::start(wal, recovered)
    }

    fn start(wal: Wal, recovered: Recovered) -> Result<(DurableStorage, LogWriter)> {
        let storage = DurableStorage::from_recovered(recovered);
        let writer = LogWriter::spawn(wal, storage.clone())?;
        Ok((storage, writer))
    }

    fn from_recovered(recovered: Recovered) -> DurableStorage {
        let snapshot = recovered.snapshot.unwrap_or_default();
        let mut log = LogState::starting_after(snapshot.index, Some(snapshot.term));
        log.apply_snapshot(&snapshot);
        log.set_hard_state(recovered.hard_state);
        if let Some(first) = recovered.entries.first().map(|e| e.index) {
            log.append(recovered.entries, first)
                .expect("recovery returns a contiguous log after its snapshot");
        }
        DurableStorage {
            core: Arc::new(RwLock::new(log)),
        }
    }

    /// Whether the log has a membership (a bootstrapped or joined member).
    pub fn is_initialized(&self) -> bool {
        self.core.read().conf_state != ConfState::default()
    }

    /// Records the membership after the node applied a conf change, or at start from the
    /// state machine (which stores it with its applied index, so it is never older than the
    /// log's snapshot marker). In memory only: the state machine holds it durably.
    pub fn set_conf_state(&self, cs: ConfState) {
        self.core.write().conf_state = cs;
    }

    /// Drops in-memory entries up to `index` (capped at the last index). The node calls it
    /// once the state machine holds them durably; the WAL side is compacted by submitting a
    /// `PersistTask` with a snapshot marker.
    pub fn compact(&self, index: u64) {
        self.core.write().compact(index);
    }

    pub fn hard_state(&self) -> HardState {
        self.core.read().hard_state.clone()
    }

    /// The latest snapshot marker (default if none was written).
    pub fn snapshot_metadata(&self) -> SnapshotMetadata {
        self.core.read().snapshot.clone()
    }

    /// Applies `task` to the log and, under the same lock, hands it to `then` (which
    /// enqueues it for the writer), so tasks reach memory and disk in the same order. A task
    /// that would break the log changes nothing and is dropped without calling `then`.
    pub(crate) fn apply_then(
        &self,
        task: PersistTask,
        then: impl FnOnce(PersistTask),
    ) -> Result<()> {
        let mut core = self.core.write();
        let batch = task.batch();
        core.check_batch(batch.snapshot, batch.entries)?;
        if let Some(meta) = batch.snapshot {
            core.apply_snapshot(meta);
        }
        if let Some(first) = batch.entries.first() {
            core.append(batch.entries.iter().cloned(), first.index)?;
        }
        if let Some(hs) = batch.hard_state {
            core.set_hard_state(hs.clone());
        }
        then(task);
        Ok(())
    }
}

impl raft::Storage for DurableStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let core = self.core.read();
        Ok(RaftState {
            hard_state: core.hard_state.clone(),
            conf_state: core.conf_state.clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let core = self.core.read();
        if low < core.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > core.last_index() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        if low >= high {
            return Ok(Vec::new());
        }
        let mut entries: Vec<Entry> = core.range(low, high).cloned().collect();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let core = self.core.read();
        match core.term(idx) {
            Some(term) => Ok(term),
            None if idx < core.first_index() => Err(raft::Error::Store(StorageError::Compacted)),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.core.read().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.core.read().last_index())
    }

    /// Metadata of the compaction point, with no data yet: streaming the state machine's
    /// checkpoint is a later change.
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let core = self.core.read();
        let (index, term) = core.prev();
        if index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut snapshot = Snapshot::default();
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term.expect("the compaction point's term is known after recovery");
        let conf_state = if index == core.snapshot.index {
            core.snapshot.get_conf_state()
        } else {
            &core.conf_state
        };
        meta.set_conf_state(conf_state.clone());
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use raft::Storage;

    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8].into(),
            ..Default::default()
        }
    }

    fn task(entries: Vec<Entry>, hard_state: Option<HardState>) -> PersistTask {
        PersistTask {
            entries,
            hard_state,
            snapshot: None,
            on_done: Box::new(|_| {}),
        }
    }

    fn storage_with(entries: Vec<Entry>) -> DurableStorage {
        let s = DurableStorage::default();
        s.apply_then(task(entries, None), |_| {}).unwrap();
        s
    }

    #[test]
    fn storage_answers_like_raft_expects_after_compaction() {
        let s = storage_with((1..=5).map(|i| entry(i, i)).collect());
        s.compact(3);
        assert_eq!(s.first_index().unwrap(), 4);
        assert_eq!(s.last_index().unwrap(), 5);
        // The compaction point keeps its term for log matching.
        assert_eq!(s.term(3).unwrap(), 3);
        assert_eq!(s.term(2), Err(raft::Error::Store(StorageError::Compacted)));
        assert_eq!(
            s.term(6),
            Err(raft::Error::Store(StorageError::Unavailable))
        );
        assert_eq!(
            s.entries(3, 5, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        );
        let got = s
            .entries(4, 6, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(got, vec![entry(4, 4), entry(5, 5)]);
        let snap = s.snapshot(0, 2).unwrap();
        assert_eq!(
            (snap.get_metadata().index, snap.get_metadata().term),
            (3, 3)
        );
        assert!(s.snapshot(4, 2).is_err());
    }

    #[test]
    fn entries_honour_max_size_but_return_at_least_one() {
        let s = storage_with((1..=5).map(|i| entry(i, 1)).collect());
        let got = s.entries(1, 6, 1, GetEntriesContext::empty(false)).unwrap();
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn a_batch_with_a_gap_changes_nothing() {
        let s = storage_with(vec![entry(1, 1)]);
        let hs = HardState {
            term: 9,
            ..Default::default()
        };
        let mut ran = false;
        let err = s.apply_then(task(vec![entry(3, 1)], Some(hs)), |_| ran = true);
        assert!(err.is_err());
        assert!(!ran);
        assert_eq!(s.last_index().unwrap(), 1);
        assert_eq!(s.hard_state(), HardState::default());
    }
}
