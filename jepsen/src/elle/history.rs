//! The history of an append workload: transactions of `append` and `r` micro-ops.
//!
//! Each line of its `history.jsonl` is a [`TxnOp`], shaped like a register workload's
//! [`Op`](crate::history::Op) with `f` always `"txn"` and a list of micro-ops as `value`.
//! A transaction that appends 1 to `x` and reads `y`, invoked and then completed:
//!
//! ```text
//! {"index":0,"process":0,"type":"invoke","f":"txn","value":[{"f":"append","key":"x","value":1},{"f":"r","key":"y","value":null}],"time_ns":1000}
//! {"index":1,"process":0,"type":"ok","f":"txn","value":[{"f":"append","key":"x","value":1},{"f":"r","key":"y","value":[3,7]}],"time_ns":2000}
//! ```
//!
//! A read's `value` is `null` in the invocation and the list it saw in an `ok` completion
//! (`[]` for a key that does not exist yet). Appended values must be unique per key: the
//! checker finds a value's writer by (key, value). The rules of [`crate::history`] hold
//! unchanged: one operation at a time per process; `ok` / `fail` / `info` completions;
//! a missing completion counts as `info`; line order is real-time order.

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::history::{Error, Key, OpKind, ProcessId, Result};

/// One step of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "f")]
pub enum MicroOp {
    /// Appends `value` to the list stored at `key`.
    #[serde(rename = "append")]
    Append { key: Key, value: i64 },
    /// Reads the list at `key`: `None` until the completion says what was seen.
    #[serde(rename = "r")]
    Read { key: Key, value: Option<Vec<i64>> },
}

impl MicroOp {
    pub fn append(key: &str, value: i64) -> Self {
        MicroOp::Append {
            key: key.to_owned(),
            value,
        }
    }

    /// A read as invoked: no result yet.
    pub fn read(key: &str) -> Self {
        MicroOp::Read {
            key: key.to_owned(),
            value: None,
        }
    }

    /// A read as completed: it saw `seen`.
    pub fn read_saw(key: &str, seen: &[i64]) -> Self {
        MicroOp::Read {
            key: key.to_owned(),
            value: Some(seen.to_vec()),
        }
    }

    pub fn key(&self) -> &str {
        match self {
            MicroOp::Append { key, .. } | MicroOp::Read { key, .. } => key,
        }
    }

    /// The same request (a completion may add read results, nothing else).
    fn same_request(&self, other: &MicroOp) -> bool {
        match (self, other) {
            (MicroOp::Append { .. }, MicroOp::Append { .. }) => self == other,
            (MicroOp::Read { key: a, .. }, MicroOp::Read { key: b, .. }) => a == b,
            _ => false,
        }
    }

    fn without_result(&self) -> MicroOp {
        match self {
            MicroOp::Read { key, .. } => MicroOp::Read {
                key: key.clone(),
                value: None,
            },
            append => append.clone(),
        }
    }
}

/// Lists longer than this are shown by their ends only, so evidence stays readable.
const SHOWN_ELEMENTS_MAX: usize = 8;

/// Writes `[1 2 3]`, or `[1 2 3 … 98 99 100] (100 elements)` for a long list.
pub(crate) fn fmt_list(f: &mut impl fmt::Write, values: &[i64]) -> fmt::Result {
    let join = |values: &[i64]| {
        values
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    };
    if values.len() <= SHOWN_ELEMENTS_MAX {
        write!(f, "[{}]", join(values))
    } else {
        let ends = SHOWN_ELEMENTS_MAX / 2 - 1;
        write!(
            f,
            "[{} … {}] ({} elements)",
            join(&values[..ends]),
            join(&values[values.len() - ends..]),
            values.len()
        )
    }
}

pub(crate) fn list_string(values: &[i64]) -> String {
    let mut s = String::new();
    fmt_list(&mut s, values).expect("writing to a String cannot fail");
    s
}

impl fmt::Display for MicroOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MicroOp::Append { key, value } => write!(f, "append {key:?} {value}"),
            MicroOp::Read { key, value: None } => write!(f, "r {key:?} nil"),
            MicroOp::Read {
                key,
                value: Some(seen),
            } => {
                write!(f, "r {key:?} ")?;
                fmt_list(f, seen)
            }
        }
    }
}

/// The `f` of every line of an append history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TxnFunction {
    Txn,
}

/// One line of an append workload's `history.jsonl`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnOp {
    /// Position in the history, from 0, one more than the line before.
    pub index: usize,
    pub process: ProcessId,
    #[serde(rename = "type")]
    pub kind: OpKind,
    pub f: TxnFunction,
    pub value: Vec<MicroOp>,
    /// Nanoseconds since the start of the run (monotonic clock).
    pub time_ns: u64,
}

/// A transaction with its invocation and completion paired up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    /// Position among the paired transactions of one history, from 0; shown as `T{id}`.
    pub id: usize,
    pub process: ProcessId,
    /// For an `ok` transaction: the completion's micro-ops, with read results.
    /// Otherwise: the invocation's.
    pub ops: Vec<MicroOp>,
    /// `Ok`, `Fail` or `Info` (a missing completion is `Info`).
    pub outcome: OpKind,
    /// History index of the invocation.
    pub invoke_index: usize,
    /// History index of the completion; `None` if it never completed.
    pub complete_index: Option<usize>,
}

impl fmt::Display for Txn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = match self.outcome {
            OpKind::Invoke | OpKind::Info => "info",
            OpKind::Ok => "ok",
            OpKind::Fail => "fail",
        };
        write!(f, "T{} = process {} txn [", self.id, self.process)?;
        for (i, op) in self.ops.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{op}")?;
        }
        write!(f, "] ({outcome}, history index {}..", self.invoke_index)?;
        match self.complete_index {
            Some(i) => write!(f, "{i})"),
            None => write!(f, ")"),
        }
    }
}

/// A whole append history, validated: indices consecutive, times monotonic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnHistory {
    ops: Vec<TxnOp>,
}

impl TxnHistory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a history from ops whose `index` fields are already set; checks them.
    pub fn from_ops(ops: Vec<TxnOp>) -> Result<Self> {
        let mut history = TxnHistory {
            ops: Vec::with_capacity(ops.len()),
        };
        for op in ops {
            history.push(op)?;
        }
        Ok(history)
    }

    /// Appends one op; its `index` must be the next one and its time not earlier than the last.
    pub fn push(&mut self, op: TxnOp) -> Result<()> {
        let expected = self.ops.len();
        if op.index != expected {
            return Err(Error::IndexGap {
                index: op.index,
                expected,
            });
        }
        if let Some(last) = self.ops.last() {
            if op.time_ns < last.time_ns {
                return Err(Error::TimeWentBackwards {
                    index: op.index,
                    time_ns: op.time_ns,
                    previous_ns: last.time_ns,
                });
            }
        }
        self.ops.push(op);
        Ok(())
    }

    pub fn ops(&self) -> &[TxnOp] {
        &self.ops
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Writes `history.jsonl`: one JSON object per line.
    pub fn write_jsonl<W: Write>(&self, mut out: W) -> Result<()> {
        for op in &self.ops {
            serde_json::to_writer(&mut out, op).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        Ok(())
    }

    /// Reads `history.jsonl`; blank lines are skipped, a bad line is reported by number (from 1).
    pub fn read_jsonl<R: BufRead>(input: R) -> Result<Self> {
        let mut history = TxnHistory::new();
        for (n, line) in input.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let op = serde_json::from_str(&line).map_err(|source| Error::Parse {
                line: n + 1,
                source,
            })?;
            history.push(op)?;
        }
        Ok(history)
    }

    /// Pairs every invocation with its process's next completion. Transactions come out
    /// in invocation order; their `id` is their position in the result. A completion must
    /// repeat its invocation's micro-ops (same appends, reads of the same keys).
    pub fn pair(&self) -> Result<Vec<Txn>> {
        let mut pending: HashMap<ProcessId, usize> = HashMap::new();
        let mut txns: Vec<Txn> = Vec::new();
        for op in &self.ops {
            match op.kind {
                OpKind::Invoke => {
                    if let Some(&id) = pending.get(&op.process) {
                        return Err(Error::DoubleInvoke {
                            index: op.index,
                            process: op.process,
                            pending: txns[id].invoke_index,
                        });
                    }
                    pending.insert(op.process, txns.len());
                    txns.push(Txn {
                        id: txns.len(),
                        process: op.process,
                        ops: op.value.clone(),
                        outcome: OpKind::Info,
                        invoke_index: op.index,
                        complete_index: None,
                    });
                }
                OpKind::Ok | OpKind::Fail | OpKind::Info => {
                    let Some(id) = pending.remove(&op.process) else {
                        return Err(Error::CompletionWithoutInvoke {
                            index: op.index,
                            process: op.process,
                        });
                    };
                    let txn = &mut txns[id];
                    let same = txn.ops.len() == op.value.len()
                        && txn
                            .ops
                            .iter()
                            .zip(&op.value)
                            .all(|(a, b)| a.same_request(b));
                    if !same {
                        return Err(Error::Mismatch {
                            index: op.index,
                            invoke: txn.invoke_index,
                        });
                    }
                    txn.outcome = op.kind;
                    txn.complete_index = Some(op.index);
                    if op.kind == OpKind::Ok {
                        txn.ops = op.value.clone();
                    }
                }
            }
        }
        Ok(txns)
    }
}

/// Test helper: builds append histories by hand, one line at a time, with times 1 ns apart.
#[derive(Debug, Default)]
pub struct TxnHistoryBuilder {
    history: TxnHistory,
}

impl TxnHistoryBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn line(mut self, process: ProcessId, kind: OpKind, value: Vec<MicroOp>) -> Self {
        let index = self.history.len();
        let op = TxnOp {
            index,
            process,
            kind,
            f: TxnFunction::Txn,
            value,
            time_ns: index as u64,
        };
        self.history
            .push(op)
            .expect("a builder's indices and times are consecutive");
        self
    }

    /// Invokes `ops`; read results in them are dropped, so the same list can be passed to
    /// the completion.
    pub fn invoke(self, process: ProcessId, ops: &[MicroOp]) -> Self {
        let ops = ops.iter().map(MicroOp::without_result).collect();
        self.line(process, OpKind::Invoke, ops)
    }

    pub fn complete(self, process: ProcessId, kind: OpKind, ops: &[MicroOp]) -> Self {
        assert_ne!(kind, OpKind::Invoke, "a completion is ok, fail or info");
        let ops = if kind == OpKind::Ok {
            ops.to_vec()
        } else {
            ops.iter().map(MicroOp::without_result).collect()
        };
        self.line(process, kind, ops)
    }

    pub fn ok(self, process: ProcessId, ops: &[MicroOp]) -> Self {
        self.complete(process, OpKind::Ok, ops)
    }

    /// An invocation immediately followed by its completion.
    pub fn txn(self, process: ProcessId, kind: OpKind, ops: &[MicroOp]) -> Self {
        self.invoke(process, ops).complete(process, kind, ops)
    }

    pub fn build(self) -> TxnHistory {
        self.history
    }
}
