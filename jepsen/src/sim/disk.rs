//! The simulated disk of one member: what raft-rs reads (a `MemStorage`, updated at once,
//! as the production WAL writer updates its in-memory log before the fsync) and, apart
//! from it, what would survive a crash (the durable log and hard state).
//!
//! Each `Ready` becomes one [`Write`]. Writes are durable only once an fsync that covers
//! them completes; the simulator decides when (group commit: an fsync covers every write
//! queued when it started). A crash keeps the durable image plus a prefix of the unsynced
//! writes chosen by the simulator (a disk may have written some of them on its own), and
//! the member restarts from exactly that.

use std::collections::VecDeque;

use skiff_raft::raft::eraftpb::{Entry, HardState, Message, Snapshot};
use skiff_raft::raft::storage::MemStorage;
use skiff_raft::storage::{BOOTSTRAP_INDEX, BOOTSTRAP_TERM};

/// One `Ready`'s worth of log writes, with the messages that must wait for them.
#[derive(Debug, Default)]
pub struct Write {
    /// The ready's number, reported to raft-rs with `on_persisted` once durable.
    pub number: u64,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    /// Sent only once the write is durable (votes, append acks).
    pub persisted_messages: Vec<Message>,
}

/// What an fsync made durable.
#[derive(Debug, Default)]
pub struct Synced {
    /// The highest ready number it covered.
    pub number: u64,
    pub persisted_messages: Vec<Message>,
}

pub struct Disk {
    voters: Vec<u64>,
    /// The durable log after the bootstrap marker: `durable_entries[i]` has index
    /// `BOOTSTRAP_INDEX + 1 + i`.
    durable_entries: Vec<Entry>,
    durable_hard_state: HardState,
    /// Written (readable through the storage) but not yet durable, oldest first.
    unsynced: VecDeque<Write>,
    /// How many of the oldest `unsynced` writes the fsync in flight covers (0: none in flight).
    syncing: usize,
}

impl Disk {
    /// A new member's disk: the bootstrap marker at index 1, term 1 holding the initial
    /// voters, and a hard state committing it — as `DurableStorage::open_bootstrap` writes.
    pub fn bootstrap(voters: &[u64]) -> Disk {
        Disk {
            voters: voters.to_vec(),
            durable_entries: Vec::new(),
            durable_hard_state: HardState {
                term: BOOTSTRAP_TERM,
                commit: BOOTSTRAP_INDEX,
                ..Default::default()
            },
            unsynced: VecDeque::new(),
            syncing: 0,
        }
    }

    /// The storage a (re)started member reads: the marker, then the durable log and hard
    /// state. Unsynced writes are not in it: after a crash they are gone (see `crash`).
    pub fn open_storage(&self) -> MemStorage {
        assert!(
            self.unsynced.is_empty(),
            "a member opens its storage only at start or after a crash"
        );
        let storage = MemStorage::new();
        let mut marker = Snapshot::default();
        let meta = marker.mut_metadata();
        meta.index = BOOTSTRAP_INDEX;
        meta.term = BOOTSTRAP_TERM;
        meta.mut_conf_state().voters = self.voters.clone();
        {
            let mut core = storage.wl();
            core.apply_snapshot(marker)
                .expect("an empty storage takes the bootstrap marker");
            core.append(&self.durable_entries)
                .expect("the durable log follows the marker");
            core.set_hardstate(self.durable_hard_state.clone());
        }
        storage
    }

    /// Queues a write; it is durable once an fsync covering it completes.
    pub fn write(&mut self, write: Write) {
        self.unsynced.push_back(write);
    }

    /// Whether an fsync should start: writes are waiting and none is in flight.
    pub fn fsync_needed(&self) -> bool {
        self.syncing == 0 && !self.unsynced.is_empty()
    }

    /// Starts an fsync covering every write queued so far.
    pub fn start_fsync(&mut self) {
        assert!(
            self.fsync_needed(),
            "one fsync at a time, and only with something to sync"
        );
        self.syncing = self.unsynced.len();
    }

    /// The fsync in flight completed: its writes are durable.
    pub fn on_fsync_done(&mut self) -> Synced {
        assert!(self.syncing > 0, "an fsync completed that never started");
        let mut synced = Synced::default();
        for _ in 0..self.syncing {
            let mut write = self
                .unsynced
                .pop_front()
                .expect("syncing counts queued writes");
            synced.number = write.number;
            synced
                .persisted_messages
                .append(&mut write.persisted_messages);
            self.make_durable(write);
        }
        self.syncing = 0;
        synced
    }

    /// Writes not yet durable (in flight or queued).
    pub fn unsynced_writes(&self) -> usize {
        self.unsynced.len()
    }

    /// The member crashed: the oldest `survivors` unsynced writes reached the disk anyway
    /// (a log is written in order, so a prefix), the rest are lost, and the fsync in flight
    /// never completes.
    pub fn crash(&mut self, survivors: usize) {
        let survivors = survivors.min(self.unsynced.len());
        let kept: Vec<Write> = self.unsynced.drain(..survivors).collect();
        for write in kept {
            self.make_durable(write);
        }
        self.unsynced.clear();
        self.syncing = 0;
    }

    /// The durable log's last index.
    pub fn durable_last_index(&self) -> u64 {
        BOOTSTRAP_INDEX + self.durable_entries.len() as u64
    }

    /// The term of the durable entry at `index`, if the durable log holds one.
    pub fn durable_term(&self, index: u64) -> Option<u64> {
        if index == BOOTSTRAP_INDEX {
            return Some(BOOTSTRAP_TERM);
        }
        let position = index.checked_sub(BOOTSTRAP_INDEX + 1)?;
        self.durable_entries.get(position as usize).map(|e| e.term)
    }

    fn make_durable(&mut self, write: Write) {
        if let Some(first) = write.entries.first() {
            // As a log append: entries from `first.index` on replace what was there.
            assert!(
                first.index > BOOTSTRAP_INDEX,
                "raft never rewrites the bootstrap marker"
            );
            let keep = (first.index - BOOTSTRAP_INDEX - 1) as usize;
            assert!(
                keep <= self.durable_entries.len(),
                "a write leaves no gap in the log"
            );
            self.durable_entries.truncate(keep);
            self.durable_entries.extend(write.entries);
        }
        if let Some(hard_state) = write.hard_state {
            self.durable_hard_state = hard_state;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_raft::raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    fn write(number: u64, entries: Vec<Entry>, commit: u64) -> Write {
        Write {
            number,
            entries,
            hard_state: Some(HardState {
                term: 2,
                commit,
                ..Default::default()
            }),
            persisted_messages: vec![Message {
                to: number,
                ..Default::default()
            }],
        }
    }

    #[test]
    fn a_fresh_disk_opens_at_the_bootstrap_marker() {
        let disk = Disk::bootstrap(&[1, 2, 3]);
        let state = disk.open_storage().initial_state().unwrap();
        assert_eq!(state.conf_state.voters, vec![1, 2, 3]);
        assert_eq!((state.hard_state.term, state.hard_state.commit), (1, 1));
        assert_eq!(disk.open_storage().last_index().unwrap(), 1);
    }

    #[test]
    fn only_synced_writes_and_the_surviving_prefix_outlive_a_crash() {
        let mut disk = Disk::bootstrap(&[1, 2, 3]);
        disk.write(write(1, vec![entry(2, 2), entry(3, 2)], 2));
        disk.start_fsync();
        disk.write(write(2, vec![entry(4, 2)], 3));
        assert!(!disk.fsync_needed(), "one fsync in flight");
        let synced = disk.on_fsync_done();
        assert_eq!(synced.number, 1);
        assert_eq!(synced.persisted_messages.len(), 1);
        disk.write(write(3, vec![entry(4, 3), entry(5, 3)], 4));
        assert_eq!(disk.unsynced_writes(), 2);
        disk.crash(1);
        let storage = disk.open_storage();
        assert_eq!(
            storage.last_index().unwrap(),
            4,
            "write 2 survived, write 3 was lost"
        );
        assert_eq!(storage.initial_state().unwrap().hard_state.commit, 3);
        assert_eq!(storage.term(4).unwrap(), 2);
    }

    #[test]
    fn a_durable_append_replaces_the_conflicting_suffix() {
        let mut disk = Disk::bootstrap(&[1]);
        disk.write(write(1, vec![entry(2, 2), entry(3, 2), entry(4, 2)], 2));
        disk.write(write(2, vec![entry(3, 3)], 2));
        disk.start_fsync();
        disk.on_fsync_done();
        assert_eq!(disk.durable_last_index(), 3);
        assert_eq!(disk.open_storage().term(3).unwrap(), 3);
        assert_eq!(
            (
                disk.durable_term(1),
                disk.durable_term(2),
                disk.durable_term(3)
            ),
            (Some(1), Some(2), Some(3))
        );
        assert_eq!((disk.durable_term(0), disk.durable_term(4)), (None, None));
    }
}
