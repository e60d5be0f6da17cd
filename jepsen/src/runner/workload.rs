//! The workloads and the client loop that runs them.
//!
//! - **register**: read / write / compare-and-set on `--keys` keys at a time under
//!   `jepsen/register/`. Reads are linearizable `Range` requests, writes are `Put`s, a cas
//!   is a `Txn` whose compare is the key's value: a failed compare is a definite `fail`.
//!   Every written value is unique over the run. After `--ops-per-key` operations per key
//!   the workload moves to fresh keys, so that each key's history stays small enough for
//!   the linearizability search.
//! - **set**: each add puts a unique element `e` as key `jepsen/set/<e>` (recorded as a
//!   `write` of `e` to the history key `set`); one final linearizable read of the prefix
//!   after the faults are healed (see [`final_read`]).
//!
//! Each client process has one operation in flight, on its own connection to one member;
//! a process whose operation ended in `info` continues under a new process id (its old
//! operation may still be in flight in the cluster), as Jepsen does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, GetOptions, KvClient, Txn, TxnOp};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::sync::watch;

use super::cli::{RunConfig, WorkloadKind};
use super::client::{self, Certainty};
use super::recorder::Recorder;
use crate::history::{Function, OpKind, ProcessId, Value};

pub const REGISTER_PREFIX: &str = "jepsen/register/";
pub const SET_PREFIX: &str = "jepsen/set/";
/// The history key of every set add.
pub const SET_KEY: &str = "set";
/// A read that returned a value that is not an integer is recorded as reading this value,
/// which no one ever writes, so the checker reports it instead of the runner hiding it.
pub const UNPARSABLE_VALUE: i64 = i64::MIN;
/// Pause of a client after an error, so that a member that refuses connections at once
/// does not get the pacer's slots in a tight loop.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Remembered last values (for cas arguments) before the map is pruned to live keys.
const LAST_VALUES_MAX: usize = 4 * super::cli::KEYS_MAX;

/// One operation about to be invoked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    pub f: Function,
    pub key: String,
    pub value: Value,
}

pub enum Workload {
    Register(Register),
    Set(SetAdds),
}

impl Workload {
    pub fn new(config: &RunConfig) -> Workload {
        match config.workload {
            WorkloadKind::Register => Workload::Register(Register {
                keys: config.keys as u64,
                ops_per_key: config.ops_per_key,
                ops: AtomicU64::new(0),
                next_value: AtomicI64::new(1),
                last_values: Mutex::new(HashMap::new()),
            }),
            WorkloadKind::Set => Workload::Set(SetAdds {
                next_element: AtomicI64::new(0),
            }),
            other => unreachable!("the {} workload has its own clients", other.name()),
        }
    }

    pub fn generate(&self, rng: &mut StdRng) -> Invocation {
        match self {
            Workload::Register(r) => r.generate(rng),
            Workload::Set(s) => s.generate(),
        }
    }

    /// Runs the operation; `Ok` carries the completion's kind (`ok`, or `fail` for a cas
    /// whose compare failed) and value.
    pub async fn apply(
        &self,
        kv: &mut KvClient,
        op: &Invocation,
    ) -> Result<(OpKind, Value), etcd_client::Error> {
        match self {
            Workload::Register(r) => r.apply(kv, op).await,
            Workload::Set(s) => s.apply(kv, op).await,
        }
    }
}

pub struct Register {
    keys: u64,
    ops_per_key: u64,
    ops: AtomicU64,
    next_value: AtomicI64,
    /// Last value seen per key (from ok reads, writes and cas): what a cas expects.
    last_values: Mutex<HashMap<String, i64>>,
}

impl Register {
    fn generate(&self, rng: &mut StdRng) -> Invocation {
        let n = self.ops.fetch_add(1, Ordering::Relaxed);
        let generation = n / (self.keys * self.ops_per_key);
        let key = format!(
            "{REGISTER_PREFIX}{}",
            generation * self.keys + rng.random_range(0..self.keys)
        );
        let expected = self
            .last_values
            .lock()
            .expect("last values lock poisoned")
            .get(&key)
            .copied();
        match (rng.random_range(0..3u8), expected) {
            (0, _) => Invocation {
                f: Function::Read,
                key,
                value: Value::Nil,
            },
            (1, _) | (_, None) => Invocation {
                f: Function::Write,
                key,
                value: Value::Int(self.next_value.fetch_add(1, Ordering::Relaxed)),
            },
            (_, Some(expected)) => Invocation {
                f: Function::Cas,
                key,
                value: Value::Pair(expected, self.next_value.fetch_add(1, Ordering::Relaxed)),
            },
        }
    }

    async fn apply(
        &self,
        kv: &mut KvClient,
        op: &Invocation,
    ) -> Result<(OpKind, Value), etcd_client::Error> {
        let result = match (op.f, op.value) {
            (Function::Read, _) => {
                let response = kv.get(op.key.as_str(), None).await?;
                let value = match response.kvs().first() {
                    None => Value::Nil,
                    Some(kv) => Value::Int(
                        std::str::from_utf8(kv.value())
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(UNPARSABLE_VALUE),
                    ),
                };
                (OpKind::Ok, value)
            }
            (Function::Write, Value::Int(v)) => {
                kv.put(op.key.as_str(), v.to_string(), None).await?;
                (OpKind::Ok, op.value)
            }
            (Function::Cas, Value::Pair(expected, new)) => {
                let txn = Txn::new()
                    .when([Compare::value(
                        op.key.as_str(),
                        CompareOp::Equal,
                        expected.to_string(),
                    )])
                    .and_then([TxnOp::put(op.key.as_str(), new.to_string(), None)]);
                let response = kv.txn(txn).await?;
                let kind = if response.succeeded() {
                    OpKind::Ok
                } else {
                    OpKind::Fail
                };
                (kind, op.value)
            }
            _ => unreachable!("the generator makes only well-formed register operations"),
        };
        let seen = match (result.0, op.f, result.1) {
            (OpKind::Ok, Function::Read | Function::Write, Value::Int(v)) => Some(v),
            (OpKind::Ok, Function::Cas, Value::Pair(_, new)) => Some(new),
            _ => None,
        };
        if let Some(v) = seen {
            let mut last = self.last_values.lock().expect("last values lock poisoned");
            if last.len() >= LAST_VALUES_MAX {
                last.clear();
            }
            last.insert(op.key.clone(), v);
        }
        Ok(result)
    }
}

pub struct SetAdds {
    next_element: AtomicI64,
}

impl SetAdds {
    fn generate(&self) -> Invocation {
        Invocation {
            f: Function::Write,
            key: SET_KEY.to_owned(),
            value: Value::Int(self.next_element.fetch_add(1, Ordering::Relaxed)),
        }
    }

    async fn apply(
        &self,
        kv: &mut KvClient,
        op: &Invocation,
    ) -> Result<(OpKind, Value), etcd_client::Error> {
        let Value::Int(element) = op.value else {
            unreachable!("set adds carry one integer");
        };
        kv.put(format!("{SET_PREFIX}{element}"), element.to_string(), None)
            .await?;
        Ok((OpKind::Ok, op.value))
    }
}

/// The set workload's final read: every element under [`SET_PREFIX`], by key.
pub async fn read_set(kv: &mut KvClient) -> Result<Vec<i64>, etcd_client::Error> {
    let response = kv
        .get(SET_PREFIX, Some(GetOptions::new().with_prefix()))
        .await?;
    let mut elements: Vec<i64> = response
        .kvs()
        .iter()
        .map(|kv| {
            std::str::from_utf8(kv.key())
                .ok()
                .and_then(|k| k.strip_prefix(SET_PREFIX))
                .and_then(|e| e.parse().ok())
                .unwrap_or(UNPARSABLE_VALUE)
        })
        .collect();
    elements.sort_unstable();
    Ok(elements)
}

/// Spaces operation starts `1/rate` apart over all clients; a client that falls behind
/// does not earn a burst later.
pub struct Pacer {
    interval: Duration,
    next: Mutex<tokio::time::Instant>,
}

impl Pacer {
    pub fn new(rate_per_s: f64) -> Pacer {
        Pacer {
            interval: Duration::from_secs_f64(1.0 / rate_per_s),
            next: Mutex::new(tokio::time::Instant::now()),
        }
    }

    pub async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().expect("pacer lock poisoned");
            let slot = (*next).max(tokio::time::Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// What every client loop shares.
pub struct Clients {
    pub workload: Workload,
    pub recorder: Arc<Recorder>,
    pub pacer: Pacer,
    pub op_timeout: Duration,
    pub concurrency: u64,
    pub seed: u64,
}

/// One client process: paced operations until `stop` turns true, each bounded by the
/// op timeout.
pub async fn client_loop(
    clients: Arc<Clients>,
    index: usize,
    mut kv: KvClient,
    mut stop: watch::Receiver<bool>,
) {
    let mut process: ProcessId = index as u64;
    let mut rng =
        StdRng::seed_from_u64(clients.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    loop {
        tokio::select! {
            _ = clients.pacer.wait() => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
        if *stop.borrow() {
            break;
        }
        let op = clients.workload.generate(&mut rng);
        let recorder = &clients.recorder;
        recorder.invoke(process, op.f, Some(&op.key), op.value);
        let started = Instant::now();
        let result =
            tokio::time::timeout(clients.op_timeout, clients.workload.apply(&mut kv, &op)).await;
        // A read changes nothing: whatever went wrong, it is a fail.
        let unless_read = |kind| {
            if op.f == Function::Read {
                OpKind::Fail
            } else {
                kind
            }
        };
        let (kind, value, error) = match result {
            Ok(Ok((kind, value))) => (kind, value, None),
            Ok(Err(e)) => {
                let kind = match client::certainty(&e) {
                    Certainty::DidNotHappen => OpKind::Fail,
                    Certainty::Unknown => unless_read(OpKind::Info),
                };
                (kind, op.value, Some(client::describe(&e)))
            }
            Err(_) => (
                unless_read(OpKind::Info),
                op.value,
                Some(client::TIMEOUT.to_owned()),
            ),
        };
        recorder.complete(process, kind, op.f, Some(&op.key), value, error.as_deref());
        if kind == OpKind::Info {
            process += clients.concurrency;
        }
        if error.is_some() {
            let backoff = ERROR_BACKOFF.saturating_sub(started.elapsed());
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(|stopped| *stopped) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_keys_rotate_after_ops_per_key_and_values_are_unique() {
        let config_keys = 2;
        let register = Register {
            keys: config_keys,
            ops_per_key: 3,
            ops: AtomicU64::new(0),
            next_value: AtomicI64::new(1),
            last_values: Mutex::new(HashMap::new()),
        };
        let mut rng = StdRng::seed_from_u64(7);
        let ops: Vec<Invocation> = (0..12).map(|_| register.generate(&mut rng)).collect();
        let generation_of = |op: &Invocation| {
            op.key
                .strip_prefix(REGISTER_PREFIX)
                .unwrap()
                .parse::<u64>()
                .unwrap()
                / config_keys
        };
        assert!(ops[..6].iter().all(|op| generation_of(op) == 0));
        assert!(ops[6..].iter().all(|op| generation_of(op) == 1));
        let mut written: Vec<i64> = ops
            .iter()
            .filter_map(|op| match op.value {
                Value::Int(v) => Some(v),
                Value::Pair(_, v) => Some(v),
                Value::Nil => None,
            })
            .collect();
        let n = written.len();
        written.sort_unstable();
        written.dedup();
        assert_eq!(written.len(), n, "written values are unique");
        assert!(
            ops.iter().all(|op| op.f != Function::Cas),
            "no cas before a value is known"
        );
    }
}
