//! The history of a run: every invocation and completion a client saw, in real-time order.
//!
//! A history is written as `history.jsonl`, one [`Op`] per line, for example a write that
//! succeeded, a read that saw it, and a compare-and-set whose outcome is unknown:
//!
//! ```text
//! {"index":0,"process":0,"type":"invoke","f":"write","key":"k1","value":3,"time_ns":1000}
//! {"index":1,"process":1,"type":"invoke","f":"read","key":"k1","value":null,"time_ns":1200}
//! {"index":2,"process":0,"type":"ok","f":"write","key":"k1","value":3,"time_ns":2100}
//! {"index":3,"process":1,"type":"ok","f":"read","key":"k1","value":3,"time_ns":2300}
//! {"index":4,"process":2,"type":"invoke","f":"cas","key":"k1","value":[3,4],"time_ns":2500}
//! {"index":5,"process":2,"type":"info","f":"cas","key":"k1","value":[3,4],"time_ns":9000}
//! ```
//!
//! Each process runs one operation at a time: an `invoke` is followed by that process's
//! `ok` (it happened), `fail` (it certainly did not happen) or `info` (unknown: it may have
//! happened at any time after the invocation, or never). An invocation left without a
//! completion at the end of the history counts as `info`. The line order is the real-time
//! order; `time_ns` (nanoseconds since the start of the run, from a monotonic clock) is for
//! plots and must never go backwards.

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

/// A client process. A process whose operation ended in `info` may keep its id and invoke
/// again; pairing is by order within the process.
pub type ProcessId = u64;

/// A key of a multi-key register workload.
pub type Key = String;

/// What an entry of the history records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// The operation a client performed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Function {
    Read,
    Write,
    Cas,
}

/// The argument or result of an operation: `null` (a read's invocation, or a read that found
/// no value), an integer (a write's value, a read's result) or `[expected, new]` (a cas).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Nil,
    Int(i64),
    Pair(i64, i64),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => write!(f, "nil"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Pair(a, b) => write!(f, "[{a} {b}]"),
        }
    }
}

/// One line of `history.jsonl`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Position in the history, from 0, one more than the line before.
    pub index: usize,
    pub process: ProcessId,
    #[serde(rename = "type")]
    pub kind: OpKind,
    pub f: Function,
    /// `None` for a single-register workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Key>,
    pub value: Value,
    /// Nanoseconds since the start of the run (monotonic clock).
    pub time_ns: u64,
}

/// An operation with its invocation and completion paired up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// Position among the paired operations of one history, from 0.
    pub id: usize,
    pub process: ProcessId,
    pub f: Function,
    pub key: Option<Key>,
    /// For an `ok` read: what it returned. Otherwise: the invocation's argument.
    pub value: Value,
    /// `Ok`, `Fail` or `Info` (a missing completion is `Info`).
    pub outcome: OpKind,
    /// History index of the invocation.
    pub invoke_index: usize,
    /// History index of the completion; `None` if it never completed.
    pub complete_index: Option<usize>,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let func = match self.f {
            Function::Read => "read",
            Function::Write => "write",
            Function::Cas => "cas",
        };
        write!(f, "process {} {func}", self.process)?;
        if let Some(key) = &self.key {
            write!(f, " {key:?}")?;
        }
        let outcome = match self.outcome {
            OpKind::Invoke | OpKind::Info => "info",
            OpKind::Ok => "ok",
            OpKind::Fail => "fail",
        };
        write!(
            f,
            " {} ({outcome}, history index {}..",
            self.value, self.invoke_index
        )?;
        match self.complete_index {
            Some(i) => write!(f, "{i})"),
            None => write!(f, ")"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("history line {line}: {source}")]
    Parse {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("history io: {0}")]
    Io(#[from] std::io::Error),
    #[error("history index {index}: expected index {expected}")]
    IndexGap { index: usize, expected: usize },
    #[error("history index {index}: time went backwards ({time_ns} ns after {previous_ns} ns)")]
    TimeWentBackwards {
        index: usize,
        time_ns: u64,
        previous_ns: u64,
    },
    #[error("history index {index}: process {process} completes an operation it never invoked")]
    CompletionWithoutInvoke { index: usize, process: ProcessId },
    #[error("history index {index}: process {process} invokes while its operation at index {pending} is pending")]
    DoubleInvoke {
        index: usize,
        process: ProcessId,
        pending: usize,
    },
    #[error("history index {index}: completion does not match the invocation at index {invoke} (function or key differ)")]
    Mismatch { index: usize, invoke: usize },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A whole history, validated: indices consecutive, times monotonic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    ops: Vec<Op>,
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a history from ops whose `index` fields are already set; checks them.
    pub fn from_ops(ops: Vec<Op>) -> Result<Self> {
        let mut history = History {
            ops: Vec::with_capacity(ops.len()),
        };
        for op in ops {
            history.push(op)?;
        }
        Ok(history)
    }

    /// Appends one op; its `index` must be the next one and its time not earlier than the last.
    pub fn push(&mut self, op: Op) -> Result<()> {
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

    pub fn ops(&self) -> &[Op] {
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
        let mut history = History::new();
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

    /// Pairs every invocation with its process's next completion. Operations come out in
    /// invocation order; their `id` is their position in the result.
    pub fn pair(&self) -> Result<Vec<Operation>> {
        let mut pending: HashMap<ProcessId, usize> = HashMap::new();
        let mut operations: Vec<Operation> = Vec::new();
        for op in &self.ops {
            match op.kind {
                OpKind::Invoke => {
                    if let Some(&id) = pending.get(&op.process) {
                        let pending = operations[id].invoke_index;
                        return Err(Error::DoubleInvoke {
                            index: op.index,
                            process: op.process,
                            pending,
                        });
                    }
                    pending.insert(op.process, operations.len());
                    operations.push(Operation {
                        id: operations.len(),
                        process: op.process,
                        f: op.f,
                        key: op.key.clone(),
                        value: op.value,
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
                    let operation = &mut operations[id];
                    if operation.f != op.f || operation.key != op.key {
                        return Err(Error::Mismatch {
                            index: op.index,
                            invoke: operation.invoke_index,
                        });
                    }
                    operation.outcome = op.kind;
                    operation.complete_index = Some(op.index);
                    if op.kind == OpKind::Ok && op.f == Function::Read {
                        operation.value = op.value;
                    }
                }
            }
        }
        Ok(operations)
    }
}

/// Test helper: builds histories by hand, one event at a time, with times 1 ns apart.
#[derive(Debug, Default)]
pub struct HistoryBuilder {
    history: History,
}

impl HistoryBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn event(
        mut self,
        process: ProcessId,
        kind: OpKind,
        f: Function,
        key: Option<&str>,
        value: Value,
    ) -> Self {
        let index = self.history.len();
        let op = Op {
            index,
            process,
            kind,
            f,
            key: key.map(str::to_owned),
            value,
            time_ns: index as u64,
        };
        self.history
            .push(op)
            .expect("a builder's indices and times are consecutive");
        self
    }

    pub fn invoke(self, process: ProcessId, f: Function, key: Option<&str>, value: Value) -> Self {
        self.event(process, OpKind::Invoke, f, key, value)
    }

    pub fn complete(
        self,
        process: ProcessId,
        kind: OpKind,
        f: Function,
        key: Option<&str>,
        value: Value,
    ) -> Self {
        assert_ne!(kind, OpKind::Invoke, "a completion is ok, fail or info");
        self.event(process, kind, f, key, value)
    }

    pub fn build(self) -> History {
        self.history
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> History {
        HistoryBuilder::new()
            .invoke(0, Function::Write, Some("k1"), Value::Int(3))
            .invoke(1, Function::Read, Some("k1"), Value::Nil)
            .complete(0, OpKind::Ok, Function::Write, Some("k1"), Value::Int(3))
            .complete(1, OpKind::Ok, Function::Read, Some("k1"), Value::Int(3))
            .invoke(2, Function::Cas, None, Value::Pair(3, 4))
            .complete(2, OpKind::Info, Function::Cas, None, Value::Pair(3, 4))
            .invoke(3, Function::Write, None, Value::Int(9))
            .build()
    }

    #[test]
    fn jsonl_round_trips_one_op_per_line() {
        let history = sample();
        let mut out = Vec::new();
        history.write_jsonl(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), history.len());
        assert_eq!(
            text.lines().next().unwrap(),
            r#"{"index":0,"process":0,"type":"invoke","f":"write","key":"k1","value":3,"time_ns":0}"#
        );
        assert!(
            text.contains(r#""type":"info","f":"cas","value":[3,4]"#),
            "{text}"
        );
        assert_eq!(History::read_jsonl(text.as_bytes()).unwrap(), history);
    }

    #[test]
    fn jsonl_reports_the_bad_line() {
        let text = "{\"index\":0,\"process\":0,\"type\":\"invoke\",\"f\":\"read\",\"value\":null,\"time_ns\":5}\n\nnot json\n";
        match History::read_jsonl(text.as_bytes()) {
            Err(Error::Parse { line, .. }) => assert_eq!(line, 3),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn push_rejects_time_going_backwards_and_index_gaps() {
        let op = |index, time_ns| Op {
            index,
            process: 0,
            kind: OpKind::Invoke,
            f: Function::Read,
            key: None,
            value: Value::Nil,
            time_ns,
        };
        assert!(matches!(
            History::from_ops(vec![op(0, 10), op(1, 9)]),
            Err(Error::TimeWentBackwards { index: 1, .. })
        ));
        assert!(matches!(
            History::from_ops(vec![op(0, 10), op(2, 11)]),
            Err(Error::IndexGap { index: 2, .. })
        ));
    }

    #[test]
    fn pairing_takes_read_results_from_the_completion_and_leaves_missing_completions_info() {
        let ops = sample().pair().unwrap();
        assert_eq!(ops.len(), 4);
        assert_eq!(
            (ops[1].f, ops[1].value, ops[1].outcome),
            (Function::Read, Value::Int(3), OpKind::Ok)
        );
        assert_eq!(
            (ops[2].outcome, ops[2].complete_index),
            (OpKind::Info, Some(5))
        );
        assert_eq!(
            (ops[3].outcome, ops[3].complete_index),
            (OpKind::Info, None)
        );
    }

    #[test]
    fn pairing_rejects_malformed_histories() {
        let double = HistoryBuilder::new()
            .invoke(0, Function::Read, None, Value::Nil)
            .invoke(0, Function::Read, None, Value::Nil)
            .build();
        assert!(matches!(
            double.pair(),
            Err(Error::DoubleInvoke {
                index: 1,
                process: 0,
                pending: 0
            })
        ));
        let orphan = HistoryBuilder::new()
            .complete(4, OpKind::Ok, Function::Read, None, Value::Nil)
            .build();
        assert!(matches!(
            orphan.pair(),
            Err(Error::CompletionWithoutInvoke {
                index: 0,
                process: 4
            })
        ));
        let mismatch = HistoryBuilder::new()
            .invoke(0, Function::Read, None, Value::Nil)
            .complete(0, OpKind::Ok, Function::Write, None, Value::Int(1))
            .build();
        assert!(matches!(
            mismatch.pair(),
            Err(Error::Mismatch {
                index: 1,
                invoke: 0
            })
        ));
    }
}
