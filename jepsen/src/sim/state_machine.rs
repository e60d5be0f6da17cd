//! The replicated state machine of the simulation: registers holding integers, one per
//! key, changed by committed write and compare-and-set commands.
//!
//! Every command carries its client operation's id, and a command whose id was already
//! applied is skipped. Raft does not deduplicate proposals: a forwarded proposal
//! (`MsgPropose`) that the network duplicates is appended twice, and re-applying a write
//! after later writes would be a lost update that no client asked for. (Over the gRPC
//! transport's streams messages are not duplicated; the simulated network does so on
//! purpose, and the op id is how a state machine stays correct under it.)

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use skiff_raft::raft::eraftpb::{Entry, EntryType};

/// A command in an entry's payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub op_id: u64,
    pub key: String,
    pub action: Action,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Write(i64),
    Cas { expected: i64, new: i64 },
}

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a command always serializes")
    }

    pub fn decode(data: &[u8]) -> Command {
        // Only the simulation writes entries, so a payload that does not decode is a bug.
        serde_json::from_slice(data).expect("every proposed payload is a command")
    }
}

/// What applying a command did, for the client waiting on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    pub op_id: u64,
    /// False for a cas whose expected value differed (it changed nothing).
    pub succeeded: bool,
}

#[derive(Debug, Default)]
pub struct StateMachine {
    values: BTreeMap<String, i64>,
    applied_ops: BTreeSet<u64>,
    applied_index: u64,
}

impl StateMachine {
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    pub fn read(&self, key: &str) -> Option<i64> {
        self.values.get(key).copied()
    }

    /// Applies one committed entry (in log order). `None` for entries that carry no
    /// command (a leader's empty entry) and for duplicates of an applied command.
    pub fn apply(&mut self, entry: &Entry) -> Option<Applied> {
        assert_eq!(
            entry.index,
            self.applied_index + 1,
            "entries are applied in order, without gaps"
        );
        self.applied_index = entry.index;
        if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
            return None;
        }
        let command = Command::decode(&entry.data);
        if !self.applied_ops.insert(command.op_id) {
            return None;
        }
        let current = self.values.get(&command.key).copied();
        let succeeded = match command.action {
            Action::Write(value) => {
                self.values.insert(command.key, value);
                true
            }
            Action::Cas { expected, new } if current == Some(expected) => {
                self.values.insert(command.key, new);
                true
            }
            Action::Cas { .. } => false,
        };
        Some(Applied {
            op_id: command.op_id,
            succeeded,
        })
    }

    /// Starts the state machine after the bootstrap marker, which it never applies.
    pub fn starting_after(index: u64) -> StateMachine {
        StateMachine {
            applied_index: index,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, op_id: u64, action: Action) -> Entry {
        let data = Command {
            op_id,
            key: "k".into(),
            action,
        }
        .encode();
        Entry {
            index,
            term: 2,
            data: data.into(),
            ..Default::default()
        }
    }

    #[test]
    fn writes_cas_and_duplicates() {
        let mut sm = StateMachine::starting_after(1);
        assert_eq!(
            sm.apply(&Entry {
                index: 2,
                term: 2,
                ..Default::default()
            }),
            None,
            "a leader's empty entry"
        );
        assert_eq!(
            sm.apply(&entry(3, 7, Action::Write(5))),
            Some(Applied {
                op_id: 7,
                succeeded: true
            })
        );
        let cas = Action::Cas {
            expected: 4,
            new: 6,
        };
        assert_eq!(
            sm.apply(&entry(4, 8, cas)),
            Some(Applied {
                op_id: 8,
                succeeded: false
            })
        );
        assert_eq!(sm.read("k"), Some(5));
        assert_eq!(
            sm.apply(&entry(
                5,
                9,
                Action::Cas {
                    expected: 5,
                    new: 6
                }
            ))
            .map(|a| a.succeeded),
            Some(true)
        );
        assert_eq!(
            sm.apply(&entry(6, 7, Action::Write(5))),
            None,
            "op 7 again: a duplicated proposal"
        );
        assert_eq!(
            (sm.read("k"), sm.read("other"), sm.applied_index()),
            (Some(6), None, 6)
        );
    }
}
