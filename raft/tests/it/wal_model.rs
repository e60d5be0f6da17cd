//! Property test of the WAL against a plain model of the raft log: after any sequence of
//! appends (with suffix overwrites), hard states, snapshot markers, syncs, compactions and
//! crashes that lose unsynced data, reopening yields exactly the state after some prefix of
//! the operations, and never a prefix shorter than what was synced.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};

use proptest::prelude::*;
use raft::eraftpb::{Entry, HardState, SnapshotMetadata};
use skiff_raft::wal::{LogBatch, Recovered, Wal, WalConfig, SEGMENT_BYTES_MIN};

use crate::entry;

/// The unit a disk writes atomically.
const SECTOR_BYTES: u64 = 512;

#[derive(Debug, Clone)]
enum Op {
    /// Appends `n` entries, overwriting the last `back` (as a new leader would); a new term
    /// if `new_term`.
    Append {
        back: u8,
        n: u8,
        data_bytes: u16,
        new_term: bool,
    },
    HardState {
        vote: u8,
        commit_back: u8,
    },
    /// A snapshot marker `back` entries before the end with that entry's term; with `ahead`,
    /// a leader's snapshot past the end in a new term (replaces the log).
    Marker {
        back: u8,
        ahead: bool,
    },
    Sync,
    Compact,
    /// Drop the `Wal` without syncing, then lose everything after a point between the last
    /// sync and the end of what was written: cut the file there, or zero it from there. Zeros
    /// start at a sector boundary (or at the synced end): a disk writes sectors whole, and
    /// the WAL takes a record with a sector of it unwritten for a torn write, while a record
    /// fully written but wrong is corruption (a bit flip, never cut).
    Crash {
        cut: u16,
        zero_fill: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..6, 1u8..5, 0u16..200, any::<bool>()).prop_map(|(back, n, data_bytes, new_term)| Op::Append {
            back: if back > 3 { 0 } else { back },
            n,
            data_bytes,
            new_term: new_term && back > 0,
        }),
        2 => (any::<u8>(), 0u8..4).prop_map(|(vote, commit_back)| Op::HardState { vote, commit_back }),
        1 => (0u8..8, proptest::bool::weighted(0.2)).prop_map(|(back, ahead)| Op::Marker { back, ahead }),
        2 => Just(Op::Sync),
        1 => Just(Op::Compact),
        1 => (any::<u16>(), any::<bool>()).prop_map(|(cut, zero_fill)| Op::Crash { cut, zero_fill }),
    ]
}

/// The raft log as a plain vector.
#[derive(Debug, Clone, PartialEq, Default)]
struct Model {
    hard_state: HardState,
    snapshot: Option<SnapshotMetadata>,
    prev: (u64, u64),
    entries: Vec<Entry>,
}

impl Model {
    fn last(&self) -> u64 {
        self.prev.0 + self.entries.len() as u64
    }

    fn term_at(&self, index: u64) -> u64 {
        if index == self.prev.0 {
            self.prev.1
        } else {
            self.entries[(index - self.prev.0 - 1) as usize].term
        }
    }

    fn append(&mut self, ents: &[Entry]) {
        self.entries.retain(|e| e.index < ents[0].index);
        self.entries.extend_from_slice(ents);
    }

    fn marker(&mut self, m: &SnapshotMetadata) {
        let matches = m.index <= self.last() && self.term_at(m.index) == m.term;
        if matches {
            self.entries.retain(|e| e.index > m.index);
        } else {
            self.entries.clear();
        }
        self.prev = (m.index, m.term);
        self.hard_state.commit = self.hard_state.commit.max(m.index);
        self.hard_state.term = self.hard_state.term.max(m.term);
        self.snapshot = Some(m.clone());
    }

    fn matches(&self, r: &Recovered) -> bool {
        r.hard_state == self.hard_state && r.snapshot == self.snapshot && r.entries == self.entries
    }
}

struct Harness {
    config: WalConfig,
    wal: Option<Wal>,
    /// Model states after each operation since the last reopen; `[0]` is the reopened state.
    history: Vec<Model>,
    /// Index in `history` of the last state known durable.
    synced: usize,
    term: u64,
}

impl Harness {
    fn new(dir: &std::path::Path) -> Harness {
        let config = WalConfig {
            segment_bytes: SEGMENT_BYTES_MIN,
            ..crate::config(dir)
        };
        let (wal, recovered) = Wal::open(&config).unwrap();
        assert_eq!(recovered, Recovered::default());
        Harness {
            config,
            wal: Some(wal),
            history: vec![Model::default()],
            synced: 0,
            term: 1,
        }
    }

    fn wal(&mut self) -> &mut Wal {
        self.wal.as_mut().unwrap()
    }

    fn model(&self) -> Model {
        self.history.last().unwrap().clone()
    }

    fn apply(&mut self, op: &Op) {
        let mut model = self.model();
        match *op {
            Op::Append {
                back,
                n,
                data_bytes,
                new_term,
            } => {
                if new_term {
                    self.term += 1;
                }
                let first = model.last() + 1 - (back as u64).min(model.entries.len() as u64);
                let ents: Vec<Entry> = (first..first + n as u64)
                    .map(|i| entry(i, self.term, &vec![(i % 256) as u8; data_bytes as usize]))
                    .collect();
                self.wal()
                    .append(&LogBatch {
                        entries: &ents,
                        ..Default::default()
                    })
                    .unwrap();
                model.append(&ents);
            }
            Op::HardState { vote, commit_back } => {
                let hs = HardState {
                    term: self.term,
                    vote: vote as u64,
                    commit: model.last().saturating_sub(commit_back as u64),
                    ..Default::default()
                };
                self.wal()
                    .append(&LogBatch {
                        hard_state: Some(&hs),
                        ..Default::default()
                    })
                    .unwrap();
                model.hard_state = hs;
            }
            Op::Marker { back, ahead } => {
                let mut m = SnapshotMetadata::default();
                if ahead {
                    self.term += 1;
                    m.index = model.last() + 1 + back as u64;
                    m.term = self.term;
                } else {
                    m.index = model.last() - (back as u64).min(model.entries.len() as u64);
                    m.term = model.term_at(m.index);
                }
                m.mut_conf_state().voters = vec![1, (back % 3) as u64 + 2];
                self.wal()
                    .append(&LogBatch {
                        snapshot: Some(&m),
                        ..Default::default()
                    })
                    .unwrap();
                model.marker(&m);
            }
            Op::Sync => {
                self.wal().sync().unwrap();
                self.synced = self.history.len();
            }
            Op::Compact => {
                let index = model.snapshot.as_ref().map_or(0, |m| m.index);
                self.wal().compact(index).unwrap();
                self.synced = self.history.len();
            }
            Op::Crash { cut, zero_fill } => {
                self.crash_and_check(cut, zero_fill);
                return;
            }
        }
        self.history.push(model);
    }

    fn crash_and_check(&mut self, cut: u16, zero_fill: bool) {
        let wal = self.wal.take().unwrap();
        let (path, synced) = wal.synced_position();
        let (path, synced) = (path.to_path_buf(), synced);
        let written = wal.written_position().1;
        drop(wal);
        let cut_at = synced + cut as u64 % (written - synced + 1);
        let mut f = OpenOptions::new().write(true).open(&path).unwrap();
        if zero_fill {
            let cut_at = (cut_at / SECTOR_BYTES * SECTOR_BYTES).max(synced);
            f.seek(SeekFrom::Start(cut_at)).unwrap();
            f.write_all(&vec![0; (written - cut_at) as usize]).unwrap();
        } else {
            f.set_len(cut_at).unwrap();
        }
        drop(f);
        self.reopen_and_check();
    }

    fn reopen_and_check(&mut self) {
        let (wal, recovered) =
            Wal::open(&self.config).unwrap_or_else(|e| panic!("reopen failed: {e}"));
        let Some(k) = (self.synced..self.history.len())
            .rev()
            .find(|&k| self.history[k].matches(&recovered))
        else {
            panic!(
                "recovered state matches no state from the last sync on.\nrecovered: {recovered:#?}\nsynced: {:#?}\nlatest: {:#?}",
                self.history[self.synced],
                self.history.last().unwrap()
            );
        };
        self.history = vec![self.history[k].clone()];
        self.synced = 0;
        self.wal = Some(wal);
    }
}

fn check(ops: &[Op]) {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::new(dir.path());
    for op in ops {
        h.apply(op);
    }
    h.apply(&Op::Crash {
        cut: u16::MAX,
        zero_fill: false,
    });
    // A clean reopen after the crash recovery changes nothing.
    h.wal.take();
    h.reopen_and_check();
    assert!(h.history[0].matches(&Wal::open(&h.config).unwrap().1));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn synced_data_survives_crashes_and_nothing_is_invented(ops in proptest::collection::vec(op(), 1..80)) {
        check(&ops);
    }
}

#[test]
fn overwrite_then_crash_before_sync_keeps_the_synced_log() {
    check(&[
        Op::Append {
            back: 0,
            n: 4,
            data_bytes: 10,
            new_term: false,
        },
        Op::Sync,
        Op::Append {
            back: 2,
            n: 1,
            data_bytes: 10,
            new_term: true,
        },
        Op::Crash {
            cut: 0,
            zero_fill: true,
        },
        Op::Append {
            back: 0,
            n: 1,
            data_bytes: 10,
            new_term: false,
        },
        Op::Sync,
    ]);
}
