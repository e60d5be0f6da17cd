//! Linearizability checker: Wing & Gong's search with Lowe's improvements.
//!
//! # The search
//!
//! The history becomes a doubly-linked list of *call* and *return* entries in real-time
//! order (the order of the history's lines). The search walks the list from the front:
//!
//! - at a call, it tries to linearize that operation now: if the model accepts it from the
//!   current state, and the configuration *(set of linearized operations, model state)* was
//!   never reached before, the call and its return are lifted out of the list, the choice is
//!   pushed on a stack and the walk restarts at the front;
//! - at a return, the operation it belongs to should already have been linearized: undo the
//!   last choice (pop, put the entries back) and try the call after it;
//! - when no return is left, every completed operation has a place: linearizable. When the
//!   stack is empty at a return: no order exists.
//!
//! Only calls before the first remaining return are ever candidates, i.e. an operation is
//! linearized *just in time*, when a completion forces a decision (Lowe's JIT
//! linearization); and Lowe's memo table of configurations makes the search visit each
//! (set, state) pair at most once, which is what turns exponential re-exploration into
//! something bounded by the number of distinct configurations.
//!
//! # Unknown outcomes
//!
//! An `info` operation (or an invocation that never completed) may have taken effect at
//! any time after its invocation, or never: it gets a call entry and no return entry, so it
//! stays a candidate until the end and the search is never forced to place it. `fail`
//! operations certainly did not happen and are dropped, as are `info` reads (they change
//! nothing and nobody saw their result).
//!
//! # Partitioning and bounds
//!
//! A model's [`Model::partition_key`] splits the history (per key for
//! [`KvRegister`](crate::model::KvRegister)); each partition is searched alone, with at
//! most [`Options::max_configurations`] memoized configurations. Per partition of `n`
//! operations the search takes memory O(max_configurations × (n/64 words + one state)) and
//! time O(max_configurations × n) model steps; past the bound the partition is `Unknown`,
//! never guessed. A violation in one partition is a violation of the whole history.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::history::{self, Function, History, Key, OpKind, Operation};
use crate::model::Model;

/// Memoized configurations one partition may explore before its verdict is `Unknown`.
/// A configuration costs a bitset of the partition's operations plus one model state, so
/// for a 1,000-operation key about 200 bytes: the default stays near 200 MB at worst.
pub const DEFAULT_MAX_CONFIGURATIONS: u64 = 1_000_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    /// Per partition; see [`DEFAULT_MAX_CONFIGURATIONS`].
    pub max_configurations: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_configurations: DEFAULT_MAX_CONFIGURATIONS,
        }
    }
}

/// Why a history is not linearizable, in words a person can check against the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The partition (key) that has no linearization; `None` for an unpartitioned model.
    pub partition: Option<Key>,
    /// The longest sequence of operations the search managed to linearize, in order.
    pub linearized_prefix: Vec<String>,
    /// The model's state after that prefix.
    pub state_after_prefix: String,
    /// The completed operation that had to be linearized next, at the latest.
    pub must_complete: Option<String>,
    /// Each operation that could have come next, and why it could not.
    pub could_not_linearize_next: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Linearizable,
    NotLinearizable { evidence: Evidence },
    Unknown { reason: String },
}

/// A verdict and what it cost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysis {
    pub verdict: Verdict,
    pub partitions: usize,
    /// Memoized configurations explored, summed over the partitions searched.
    pub configurations: u64,
}

/// Pairs the history's invocations and completions and checks them against `model`.
pub fn check<M: Model>(
    model: &M,
    history: &History,
    options: &Options,
) -> history::Result<Analysis> {
    Ok(check_operations(model, &history.pair()?, options))
}

/// Checks paired operations (as [`History::pair`] returns them, in invocation order).
pub fn check_operations<M: Model>(
    model: &M,
    operations: &[Operation],
    options: &Options,
) -> Analysis {
    let mut partitions: BTreeMap<Option<Key>, Vec<&Operation>> = BTreeMap::new();
    for op in operations {
        let may_have_happened = matches!(op.outcome, OpKind::Ok | OpKind::Info | OpKind::Invoke);
        let observed_nothing = op.outcome != OpKind::Ok && op.f == Function::Read;
        if may_have_happened && !observed_nothing {
            partitions
                .entry(model.partition_key(op))
                .or_default()
                .push(op);
        }
    }
    let mut configurations = 0;
    let mut unknown = Vec::new();
    for (key, ops) in &partitions {
        let search = Search::new(model, ops, options.max_configurations);
        let (outcome, explored) = search.run();
        configurations += explored;
        match outcome {
            Outcome::Linearizable => {}
            Outcome::NotLinearizable(mut evidence) => {
                evidence.partition = key.clone();
                let verdict = Verdict::NotLinearizable { evidence };
                return Analysis { verdict, partitions: partitions.len(), configurations };
            }
            Outcome::Exhausted { linearized_max } => unknown.push(format!(
                "{}: search gave up after {} configurations (max_configurations); longest linearizable prefix found: {linearized_max} of {} operations",
                partition_name(key),
                options.max_configurations,
                ops.len(),
            )),
        }
    }
    let verdict = if unknown.is_empty() {
        Verdict::Linearizable
    } else {
        Verdict::Unknown {
            reason: unknown.join("; "),
        }
    };
    Analysis {
        verdict,
        partitions: partitions.len(),
        configurations,
    }
}

fn partition_name(key: &Option<Key>) -> String {
    match key {
        Some(key) => format!("key {key:?}"),
        None => "history".to_owned(),
    }
}

/// Which operations are linearized; one bit per operation of the partition.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BitSet(Vec<u64>);

impl BitSet {
    fn new(len: usize) -> Self {
        BitSet(vec![0; len.div_ceil(64)])
    }

    fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn remove(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }

    fn contains(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
}

/// End of the entry list.
const NIL: usize = usize::MAX;
/// The list's head sentinel is entry 0.
const HEAD: usize = 0;

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Index into the partition's operations.
    op: usize,
    is_call: bool,
    /// For a call: its return entry, or `NIL` when the outcome is unknown.
    ret: usize,
    prev: usize,
    next: usize,
}

enum Outcome {
    Linearizable,
    NotLinearizable(Evidence),
    Exhausted { linearized_max: usize },
}

struct Search<'a, M: Model> {
    model: &'a M,
    ops: &'a [&'a Operation],
    entries: Vec<Entry>,
    max_configurations: u64,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(model: &'a M, ops: &'a [&'a Operation], max_configurations: u64) -> Self {
        // (history index, entry kind, op): calls and returns in real-time order.
        let mut events: Vec<(usize, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.invoke_index, true, i));
            if op.outcome == OpKind::Ok {
                let complete = op.complete_index.expect("an ok operation has a completion");
                events.push((complete, false, i));
            }
        }
        events.sort_unstable();
        let head = Entry {
            op: NIL,
            is_call: false,
            ret: NIL,
            prev: NIL,
            next: NIL,
        };
        let mut entries = vec![head];
        let mut call_entry = vec![NIL; ops.len()];
        for (_, is_call, op) in events {
            let id = entries.len();
            entries[id - 1].next = id;
            entries.push(Entry {
                op,
                is_call,
                ret: NIL,
                prev: id - 1,
                next: NIL,
            });
            if is_call {
                call_entry[op] = id;
            } else {
                entries[call_entry[op]].ret = id;
            }
        }
        Search {
            model,
            ops,
            entries,
            max_configurations,
        }
    }

    fn unlink(&mut self, i: usize) {
        let Entry { prev, next, .. } = self.entries[i];
        self.entries[prev].next = next;
        if next != NIL {
            self.entries[next].prev = prev;
        }
    }

    /// Reinserts an entry where it was; only valid in reverse order of `unlink`.
    fn relink(&mut self, i: usize) {
        let Entry { prev, next, .. } = self.entries[i];
        self.entries[prev].next = i;
        if next != NIL {
            self.entries[next].prev = i;
        }
    }

    fn lift(&mut self, call: usize) {
        self.unlink(call);
        let ret = self.entries[call].ret;
        if ret != NIL {
            self.unlink(ret);
        }
    }

    fn unlift(&mut self, call: usize) {
        let ret = self.entries[call].ret;
        if ret != NIL {
            self.relink(ret);
        }
        self.relink(call);
    }

    /// Returns the outcome and the number of configurations explored.
    fn run(mut self) -> (Outcome, u64) {
        let mut state = self.model.init();
        let mut linearized = BitSet::new(self.ops.len());
        let mut seen: HashSet<(BitSet, M::State)> = HashSet::new();
        let mut stack: Vec<(usize, M::State)> = Vec::new();
        let mut best: (Vec<usize>, M::State) = (Vec::new(), state.clone());
        let mut configurations = 0u64;
        let mut entry = self.entries[HEAD].next;
        loop {
            if entry == NIL {
                return (Outcome::Linearizable, configurations);
            }
            let Entry {
                op, is_call, next, ..
            } = self.entries[entry];
            if !is_call {
                // A completed operation is still unplaced: undo the latest choice.
                let Some((call, previous)) = stack.pop() else {
                    let evidence = self.evidence(&best.0, &best.1);
                    return (Outcome::NotLinearizable(evidence), configurations);
                };
                state = previous;
                linearized.remove(self.entries[call].op);
                self.unlift(call);
                entry = self.entries[call].next;
                continue;
            }
            let Some(next_state) = self.model.step(&state, self.ops[op]) else {
                entry = next;
                continue;
            };
            let mut next_linearized = linearized.clone();
            next_linearized.insert(op);
            if !seen.insert((next_linearized.clone(), next_state.clone())) {
                entry = next;
                continue;
            }
            configurations += 1;
            if configurations > self.max_configurations {
                return (
                    Outcome::Exhausted {
                        linearized_max: best.0.len(),
                    },
                    configurations - 1,
                );
            }
            stack.push((entry, std::mem::replace(&mut state, next_state)));
            linearized = next_linearized;
            self.lift(entry);
            if stack.len() > best.0.len() {
                best = (
                    stack
                        .iter()
                        .map(|&(call, _)| self.entries[call].op)
                        .collect(),
                    state.clone(),
                );
            }
            entry = self.entries[HEAD].next;
        }
    }

    /// Explains why nothing could follow `prefix` (ops in linearization order).
    fn evidence(&self, prefix: &[usize], state: &M::State) -> Evidence {
        let mut placed = BitSet::new(self.ops.len());
        for &op in prefix {
            placed.insert(op);
        }
        // After the prefix, walk the original order: calls until the first return of an
        // unplaced operation are the candidates for the next place.
        let mut candidates = Vec::new();
        let mut must_complete = None;
        for entry in &self.entries[1..] {
            if placed.contains(entry.op) {
                continue;
            }
            if !entry.is_call {
                must_complete = Some(self.ops[entry.op].to_string());
                break;
            }
            candidates.push(entry.op);
        }
        let could_not_linearize_next = candidates
            .into_iter()
            .map(|op| {
                let operation = self.ops[op];
                match self.model.step(state, operation) {
                    None => format!("{operation}: impossible in state {state:?}"),
                    Some(next) => format!(
                        "{operation}: possible (state becomes {next:?}) but no order of the remaining operations follows"
                    ),
                }
            })
            .collect();
        Evidence {
            partition: None,
            linearized_prefix: prefix.iter().map(|&op| self.ops[op].to_string()).collect(),
            state_after_prefix: format!("{state:?}"),
            must_complete,
            could_not_linearize_next,
        }
    }
}

#[cfg(test)]
mod tests;
