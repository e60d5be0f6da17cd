//! The append workload (Elle's list-append, over etcd's KV API).
//!
//! Each key under [`APPEND_PREFIX`] holds a list of integers as its value (`"3 8 12"`).
//! A transaction is 1 to [`MICRO_OPS_MAX`] micro-ops, each a read of a key's list or an
//! append of a value unique over the run. It runs in two etcd requests:
//!
//! 1. one `Txn` of `Range`s of every key it touches: a consistent snapshot of their lists
//!    and `mod_revision`s (0 for a key that does not exist yet);
//! 2. if it appends anything, a `Txn` whose compare is `mod_revision == ` the snapshot's for
//!    *every* touched key (read keys too, so that the reads are still current when the
//!    appends commit) and whose success branch puts the new lists.
//!
//! A read-only transaction ends after step 1 (a single linearizable `Txn`). A compare
//! that fails means another transaction got in between: the transaction is retried from
//! step 1, at most [`COMMIT_ATTEMPTS_MAX`] times, then recorded as `fail` (it certainly
//! changed nothing). An error in step 1 is a `fail`; an error in step 2 is `info` unless
//! it proves the request never reached a member ([`client::certainty`]).
//!
//! The history (`history.jsonl`) is the [`TxnHistory`] that [`crate::elle`] checks for
//! G0, G1a/b/c, G-single, G2-item and real-time order (strict serializability, as etcd
//! promises for its KV API).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, KvClient, Txn, TxnOp, TxnOpResponse};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::sync::watch;

use super::cli::RunConfig;
use super::client::{self, Certainty};
use super::recorder::Recorder;
use super::workload::{Pacer, UNPARSABLE_VALUE};
use crate::elle::{MicroOp, TxnFunction, TxnHistory, TxnOp as HistoryTxnOp};
use crate::history::{Function, History, Op, OpKind, ProcessId, Value};

pub const APPEND_PREFIX: &str = "jepsen/append/";
/// Micro-ops per transaction, at most.
pub const MICRO_OPS_MAX: usize = 4;
/// Attempts of a transaction whose compare failed before it is recorded as `fail`.
pub const COMMIT_ATTEMPTS_MAX: usize = 3;
/// Pause of a client after an error (as the register workload's).
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Chooses keys and unique values; shared by the client loops.
pub struct AppendGenerator {
    keys: u64,
    /// Transactions on the active keys before the workload moves to fresh ones (keeps
    /// the lists short).
    txns_per_generation: u64,
    txns: AtomicU64,
    next_value: AtomicI64,
}

impl AppendGenerator {
    pub fn new(keys: u64, ops_per_key: u64) -> AppendGenerator {
        AppendGenerator {
            keys,
            txns_per_generation: keys * ops_per_key,
            txns: AtomicU64::new(0),
            next_value: AtomicI64::new(1),
        }
    }

    pub fn generate(&self, rng: &mut StdRng) -> Vec<MicroOp> {
        let n = self.txns.fetch_add(1, Ordering::Relaxed);
        let generation = n / self.txns_per_generation;
        let len = rng.random_range(1..=MICRO_OPS_MAX);
        (0..len)
            .map(|_| {
                let key = format!(
                    "{APPEND_PREFIX}{}",
                    generation * self.keys + rng.random_range(0..self.keys)
                );
                if rng.random_bool(0.5) {
                    MicroOp::read(&key)
                } else {
                    MicroOp::append(&key, self.next_value.fetch_add(1, Ordering::Relaxed))
                }
            })
            .collect()
    }
}

/// Records the transactions, on the run's clock (the register recorder's, which also
/// feeds the progress bar's counters).
pub struct TxnRecorder {
    clock: Arc<Recorder>,
    history: Mutex<TxnHistory>,
}

impl TxnRecorder {
    pub fn new(clock: Arc<Recorder>) -> TxnRecorder {
        TxnRecorder {
            clock,
            history: Mutex::new(TxnHistory::new()),
        }
    }

    fn record(&self, process: ProcessId, kind: OpKind, ops: Vec<MicroOp>) {
        let counter = match kind {
            OpKind::Invoke => None,
            OpKind::Ok => Some(&self.clock.counters.ok),
            OpKind::Fail => Some(&self.clock.counters.fail),
            OpKind::Info => Some(&self.clock.counters.info),
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let mut history = self.history.lock().expect("txn history lock poisoned");
        // Taken under the lock: times follow the line order.
        let time_ns = self.clock.now_ns();
        let op = HistoryTxnOp {
            index: history.len(),
            process,
            kind,
            f: TxnFunction::Txn,
            value: ops,
            time_ns,
        };
        history
            .push(op)
            .expect("the recorder assigns consecutive indices and monotonic times");
    }

    pub fn finish(&self) -> TxnHistory {
        std::mem::take(&mut *self.history.lock().expect("txn history lock poisoned"))
    }
}

/// Why a transaction did not commit.
enum TxnError {
    /// The snapshot read failed: nothing was written.
    Snapshot(etcd_client::Error),
    /// Every attempt's compare failed: nothing was written.
    Conflict,
    /// The commit request failed: it may have been applied.
    Commit(etcd_client::Error),
}

/// `"3 8 12"` → `[3, 8, 12]`; an element that is not an integer becomes
/// [`UNPARSABLE_VALUE`] so that the checker reports it as a garbage read.
pub fn decode_list(text: &[u8]) -> Vec<i64> {
    String::from_utf8_lossy(text)
        .split_ascii_whitespace()
        .map(|e| e.parse().unwrap_or(UNPARSABLE_VALUE))
        .collect()
}

pub fn encode_list(list: &[i64]) -> String {
    list.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs one transaction; returns its micro-ops with read results.
async fn execute(kv: &mut KvClient, ops: &[MicroOp]) -> Result<Vec<MicroOp>, TxnError> {
    let mut keys: Vec<&str> = Vec::with_capacity(ops.len());
    for op in ops {
        if !keys.contains(&op.key()) {
            keys.push(op.key());
        }
    }
    let appends = ops.iter().any(|op| matches!(op, MicroOp::Append { .. }));
    for _ in 0..COMMIT_ATTEMPTS_MAX {
        let snapshot = Txn::new().and_then(
            keys.iter()
                .map(|k| TxnOp::get(*k, None))
                .collect::<Vec<_>>(),
        );
        let response = kv.txn(snapshot).await.map_err(TxnError::Snapshot)?;
        let mut lists: HashMap<&str, Vec<i64>> = HashMap::new();
        let mut revisions: HashMap<&str, i64> = HashMap::new();
        for (key, answer) in keys.iter().zip(response.op_responses()) {
            let (list, revision) = match answer {
                TxnOpResponse::Get(get) => match get.kvs().first() {
                    Some(found) => (decode_list(found.value()), found.mod_revision()),
                    None => (Vec::new(), 0),
                },
                _ => (vec![UNPARSABLE_VALUE], -1),
            };
            lists.insert(key, list);
            revisions.insert(key, revision);
        }
        let mut done = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                MicroOp::Read { key, .. } => {
                    done.push(MicroOp::read_saw(key, &lists[key.as_str()]))
                }
                MicroOp::Append { key, value } => {
                    lists
                        .get_mut(key.as_str())
                        .expect("every touched key was read")
                        .push(*value);
                    done.push(op.clone());
                }
            }
        }
        if !appends {
            return Ok(done);
        }
        let compares: Vec<Compare> = keys
            .iter()
            .map(|k| Compare::mod_revision(*k, CompareOp::Equal, revisions[k]))
            .collect();
        let mut written: Vec<&str> = Vec::new();
        for op in ops {
            if let MicroOp::Append { key, .. } = op {
                if !written.contains(&key.as_str()) {
                    written.push(key.as_str());
                }
            }
        }
        let puts: Vec<TxnOp> = written
            .iter()
            .map(|k| TxnOp::put(*k, encode_list(&lists[k]), None))
            .collect();
        let commit = kv
            .txn(Txn::new().when(compares).and_then(puts))
            .await
            .map_err(TxnError::Commit)?;
        if commit.succeeded() {
            return Ok(done);
        }
    }
    Err(TxnError::Conflict)
}

/// One client process of the append workload.
pub async fn client_loop(
    generator: Arc<AppendGenerator>,
    recorder: Arc<TxnRecorder>,
    pacer: Arc<Pacer>,
    config: RunConfig,
    index: usize,
    mut kv: KvClient,
    mut stop: watch::Receiver<bool>,
) {
    let mut process: ProcessId = index as u64;
    let mut rng =
        StdRng::seed_from_u64(config.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    loop {
        tokio::select! {
            _ = pacer.wait() => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
        if *stop.borrow() {
            break;
        }
        let ops = generator.generate(&mut rng);
        let read_only = ops.iter().all(|op| matches!(op, MicroOp::Read { .. }));
        recorder.record(process, OpKind::Invoke, ops.clone());
        let started = Instant::now();
        let result = tokio::time::timeout(config.op_timeout(), execute(&mut kv, &ops)).await;
        let (kind, done, error) = match result {
            Ok(Ok(done)) => (OpKind::Ok, done, None),
            Ok(Err(TxnError::Snapshot(e))) => (OpKind::Fail, ops, Some(client::describe(&e))),
            Ok(Err(TxnError::Conflict)) => (
                OpKind::Fail,
                ops,
                Some(format!("compare failed {COMMIT_ATTEMPTS_MAX} times")),
            ),
            Ok(Err(TxnError::Commit(e))) => match client::certainty(&e) {
                Certainty::DidNotHappen => (OpKind::Fail, ops, Some(client::describe(&e))),
                Certainty::Unknown => (OpKind::Info, ops, Some(client::describe(&e))),
            },
            // A read-only transaction changes nothing, whatever happened to it.
            Err(_) if read_only => (OpKind::Fail, ops, Some(client::TIMEOUT.to_owned())),
            Err(_) => (OpKind::Info, ops, Some(client::TIMEOUT.to_owned())),
        };
        let failed = error.is_some();
        if let Some(error) = &error {
            recorder.clock.note_error(error);
        }
        recorder.record(process, kind, done);
        if kind == OpKind::Info {
            process += config.concurrency as u64;
        }
        if failed {
            let backoff = ERROR_BACKOFF.saturating_sub(started.elapsed());
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(|stopped| *stopped) => break,
            }
        }
    }
}

/// The register-shaped view of an append history, for the counts, latencies and plot:
/// a read-only transaction is a `read`, any other a `write`.
pub fn summary_history(txns: &TxnHistory) -> History {
    let ops = txns
        .ops()
        .iter()
        .map(|op| Op {
            index: op.index,
            process: op.process,
            kind: op.kind,
            f: if op.value.iter().all(|m| matches!(m, MicroOp::Read { .. })) {
                Function::Read
            } else {
                Function::Write
            },
            key: None,
            value: Value::Nil,
            time_ns: op.time_ns,
        })
        .collect();
    History::from_ops(ops).expect("a valid txn history has consecutive indices and times")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_and_garbage_is_kept_visible() {
        assert_eq!(
            decode_list(encode_list(&[3, 8, 12]).as_bytes()),
            vec![3, 8, 12]
        );
        assert_eq!(decode_list(b""), Vec::<i64>::new());
        assert_eq!(decode_list(b"1 x"), vec![1, UNPARSABLE_VALUE]);
    }

    #[test]
    fn generated_values_are_unique_and_keys_rotate() {
        let generator = AppendGenerator::new(2, 1);
        let mut rng = StdRng::seed_from_u64(3);
        let mut values = Vec::new();
        for n in 0..6u64 {
            let ops = generator.generate(&mut rng);
            assert!((1..=MICRO_OPS_MAX).contains(&ops.len()));
            for op in &ops {
                let k: u64 = op
                    .key()
                    .strip_prefix(APPEND_PREFIX)
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(k / 2, n / 2, "generation of txn {n}");
                if let MicroOp::Append { value, .. } = op {
                    values.push(*value);
                }
            }
        }
        let count = values.len();
        values.sort_unstable();
        values.dedup();
        assert_eq!(values.len(), count);
    }
}
