//! The raft log's rules in one place: appending with suffix truncation, snapshot markers and
//! compaction. Recovery, the `Wal`'s own bookkeeping and `DurableStorage`'s in-memory log all
//! run the same code, so what recovery rebuilds is exactly what the node saw before a crash.
//!
//! Generic over the entry type: the storage keeps whole `Entry`s, the `Wal` only needs
//! `(index, term)` pairs to name segments and judge snapshot markers.

use std::collections::VecDeque;

use raft::eraftpb::{ConfState, Entry, HardState, SnapshotMetadata};

/// What the log rules need to know of an entry.
pub trait LogEntry: Clone {
    fn index(&self) -> u64;
    fn term(&self) -> u64;
}

impl LogEntry for Entry {
    fn index(&self) -> u64 {
        self.index
    }
    fn term(&self) -> u64 {
        self.term
    }
}

/// An entry reduced to its position: all the `Wal` keeps in memory per entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexTerm {
    pub index: u64,
    pub term: u64,
}

impl LogEntry for IndexTerm {
    fn index(&self) -> u64 {
        self.index
    }
    fn term(&self) -> u64 {
        self.term
    }
}

impl From<&Entry> for IndexTerm {
    fn from(e: &Entry) -> IndexTerm {
        IndexTerm {
            index: e.index,
            term: e.term,
        }
    }
}

/// A violation of the log rules by an append.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("entries start at {first} but the log ends at {last}: gap")]
    Gap { first: u64, last: u64 },
    #[error("entries are not contiguous at {at}")]
    NotContiguous { at: u64 },
}

/// The log since the last compaction point, plus the hard state and conf state.
///
/// Invariant: `entries[i].index() == prev_index + 1 + i`.
#[derive(Debug, Clone)]
pub struct LogState<E> {
    pub hard_state: HardState,
    /// The current membership. Set by snapshot markers, and by the node after it applies a
    /// conf change (`DurableStorage::set_conf_state`).
    pub conf_state: ConfState,
    /// The latest snapshot marker (index 0, term 0 and no voters if none was written).
    pub snapshot: SnapshotMetadata,
    /// Index of the entry just before `entries` (the compaction point).
    prev_index: u64,
    /// Term of the entry at `prev_index`. `None` only while recovery reads a log whose older
    /// segments were deleted, until it meets the snapshot marker that covers them.
    prev_term: Option<u64>,
    entries: VecDeque<E>,
}

impl<E: LogEntry> Default for LogState<E> {
    fn default() -> Self {
        LogState::starting_after(0, Some(0))
    }
}

impl<E: LogEntry> LogState<E> {
    /// An empty log whose next entry is `prev_index + 1`.
    pub fn starting_after(prev_index: u64, prev_term: Option<u64>) -> Self {
        LogState {
            hard_state: HardState::default(),
            conf_state: ConfState::default(),
            snapshot: SnapshotMetadata::default(),
            prev_index,
            prev_term,
            entries: VecDeque::new(),
        }
    }

    pub fn first_index(&self) -> u64 {
        self.prev_index + 1
    }

    pub fn last_index(&self) -> u64 {
        self.prev_index + self.entries.len() as u64
    }

    /// The compaction point: the entry before the first one kept, and its term if known.
    pub fn prev(&self) -> (u64, Option<u64>) {
        (self.prev_index, self.prev_term)
    }

    /// Term of the entry at `index`, if the log still has it (including the compaction point).
    pub fn term(&self, index: u64) -> Option<u64> {
        if index == self.prev_index {
            return self.prev_term;
        }
        if index < self.prev_index || index > self.last_index() {
            return None;
        }
        Some(self.entries[(index - self.prev_index - 1) as usize].term())
    }

    pub fn entries(&self) -> &VecDeque<E> {
        &self.entries
    }

    /// Entries in `[low, high)`; the caller checks the bounds against first/last index.
    pub fn range(&self, low: u64, high: u64) -> impl Iterator<Item = &E> {
        let offset = self.prev_index + 1;
        self.entries
            .range((low - offset) as usize..(high - offset) as usize)
    }

    /// Checks, without changing anything, that a batch (an optional snapshot marker, then
    /// `entries`) keeps the log contiguous. Callers check before writing so a bad batch
    /// (a caller bug) leaves no trace.
    pub fn check_batch(
        &self,
        snapshot: Option<&SnapshotMetadata>,
        entries: &[Entry],
    ) -> Result<(), LogError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        for w in entries.windows(2) {
            if w[1].index != w[0].index + 1 {
                return Err(LogError::NotContiguous { at: w[1].index });
            }
        }
        let last = match snapshot {
            // Mirrors `apply_snapshot`: a newer marker that does not match the log replaces it.
            Some(m)
                if m.index >= self.snapshot.index
                    && m.index > self.prev_index
                    && self.term(m.index) != Some(m.term) =>
            {
                m.index
            }
            _ => self.last_index(),
        };
        if first.index > last + 1 {
            return Err(LogError::Gap {
                first: first.index,
                last,
            });
        }
        Ok(())
    }

    /// The same log with each entry converted by `f`.
    pub fn map<G: LogEntry>(&self, f: impl FnMut(&E) -> G) -> LogState<G> {
        LogState {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state.clone(),
            snapshot: self.snapshot.clone(),
            prev_index: self.prev_index,
            prev_term: self.prev_term,
            entries: self.entries.iter().map(f).collect(),
        }
    }

    /// Appends `entries`, first dropping every entry at or after the first new index (a new
    /// leader overwrote a conflicting suffix). Entries at or before the compaction point are
    /// ignored: a snapshot already covers them.
    pub fn append(
        &mut self,
        entries: impl IntoIterator<Item = E>,
        first_index: u64,
    ) -> Result<(), LogError> {
        let mut entries = entries.into_iter().peekable();
        if entries.peek().is_none() {
            return Ok(());
        }
        if first_index > self.last_index() + 1 {
            return Err(LogError::Gap {
                first: first_index,
                last: self.last_index(),
            });
        }
        let keep_from = first_index.max(self.prev_index + 1);
        self.entries
            .truncate((keep_from - self.prev_index - 1) as usize);
        for (expected, e) in (first_index..).zip(entries) {
            if e.index() != expected {
                return Err(LogError::NotContiguous { at: e.index() });
            }
            if e.index() > self.prev_index {
                self.entries.push_back(e);
            }
        }
        Ok(())
    }

    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// Applies a snapshot marker: the state machine holds everything up to `meta.index`.
    ///
    /// As raft's InstallSnapshot rule: if the log has the entry at that index with the same
    /// term, the entries after it stay; otherwise (a leader sent a snapshot that replaces a
    /// diverged or short log) the whole log is dropped. An older marker than the latest is
    /// ignored.
    pub fn apply_snapshot(&mut self, meta: &SnapshotMetadata) {
        if meta.index < self.snapshot.index {
            return;
        }
        self.snapshot = meta.clone();
        self.conf_state = meta.get_conf_state().clone();
        // raft-rs refuses to start with a commit index below the first index - 1.
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.hard_state.term = self.hard_state.term.max(meta.term);
        if meta.index < self.prev_index {
            return;
        }
        if meta.index == self.prev_index {
            // Recovery from a compacted log learns the term of its starting point here.
            self.prev_term.get_or_insert(meta.term);
            return;
        }
        if self.term(meta.index) == Some(meta.term) {
            self.compact(meta.index);
        } else {
            self.entries.clear();
            self.prev_index = meta.index;
            self.prev_term = Some(meta.term);
        }
    }

    /// Drops the entries up to `index` (capped at the last index). The entry at `index`
    /// becomes the compaction point; its term is kept for raft's log matching.
    pub fn compact(&mut self, index: u64) {
        let index = index.min(self.last_index());
        if index <= self.prev_index {
            return;
        }
        self.prev_term = self.term(index);
        self.entries.drain(..(index - self.prev_index) as usize);
        self.prev_index = index;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn it(index: u64, term: u64) -> IndexTerm {
        IndexTerm { index, term }
    }

    fn log_of(terms: &[u64]) -> LogState<IndexTerm> {
        let mut log = LogState::default();
        let ents: Vec<_> = terms
            .iter()
            .enumerate()
            .map(|(i, &t)| it(i as u64 + 1, t))
            .collect();
        log.append(ents, 1).unwrap();
        log
    }

    fn terms(log: &LogState<IndexTerm>) -> Vec<u64> {
        log.entries().iter().map(|e| e.term).collect()
    }

    #[test]
    fn append_overwrites_the_conflicting_suffix() {
        let mut log = log_of(&[1, 1, 1, 2]);
        log.append(vec![it(3, 3), it(4, 3), it(5, 3)], 3).unwrap();
        assert_eq!(terms(&log), vec![1, 1, 3, 3, 3]);
        assert_eq!(
            log.append(vec![it(7, 3)], 7),
            Err(LogError::Gap { first: 7, last: 5 })
        );
        assert_eq!(
            log.append(vec![it(6, 3), it(8, 3)], 6),
            Err(LogError::NotContiguous { at: 8 })
        );
    }

    #[test]
    fn matching_snapshot_marker_keeps_later_entries() {
        let mut log = log_of(&[1, 1, 2, 2]);
        let meta = SnapshotMetadata {
            index: 3,
            term: 2,
            ..Default::default()
        };
        log.apply_snapshot(&meta);
        assert_eq!((log.first_index(), log.last_index()), (4, 4));
        assert_eq!(log.term(3), Some(2));
        assert_eq!(log.term(2), None);
        assert!(log.hard_state.commit >= 3);
    }

    #[test]
    fn diverging_snapshot_marker_drops_the_whole_log() {
        let mut log = log_of(&[1, 1, 2, 2]);
        log.apply_snapshot(&SnapshotMetadata {
            index: 3,
            term: 5,
            ..Default::default()
        });
        assert_eq!((log.first_index(), log.last_index()), (4, 3));
        assert_eq!(log.term(3), Some(5));
        // A marker beyond the end behaves the same way.
        log.apply_snapshot(&SnapshotMetadata {
            index: 10,
            term: 6,
            ..Default::default()
        });
        assert_eq!((log.first_index(), log.last_index()), (11, 10));
    }

    #[test]
    fn compact_keeps_the_term_of_the_compaction_point() {
        let mut log = log_of(&[1, 2, 3]);
        log.compact(2);
        assert_eq!(log.prev(), (2, Some(2)));
        assert_eq!(terms(&log), vec![3]);
        log.compact(99);
        assert_eq!(log.prev(), (3, Some(3)));
        assert!(log.entries().is_empty());
        // Old entries re-sent below the compaction point are ignored, new ones kept.
        log.append(vec![it(3, 3), it(4, 4)], 3).unwrap();
        assert_eq!(terms(&log), vec![4]);
    }
}
