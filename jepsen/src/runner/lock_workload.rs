//! The lease-lock workload: lock-guarded counter increments through etcd's Lock API
//! (v3lock), and lease-expiry probes; [`lock_checker`](super::lock_checker) judges both.
//!
//! - **Lockers** (three quarters of the clients): grant a lease of [`LOCK_LEASE_TTL_S`]
//!   kept alive by a background task, `Lock(`[`LOCK_NAME`]`, lease)`, read the counter
//!   [`COUNTER_KEY`], hold the section for [`HOLD_MS`], write the counter + 1, `Unlock`,
//!   revoke the lease. No fencing: the write is a plain put. If the locker's member is
//!   paused, its keep-alives stop, its lease expires, another locker is granted the lock,
//!   and when the member resumes the first locker's write lands anyway.
//! - **Lease probes** (the other quarter, at least one): grant a lease of
//!   [`PROBE_LEASE_TTL_S`] with no keep-alive, put a key under it, poll
//!   `LeaseTimeToLive` until it says the lease is gone, then try a put under it (must be
//!   refused) and read the key (must be gone).
//!
//! `history.jsonl` holds the register-shaped view (lock = `cas` on the lock name, counter
//! read and write, probe put); `lock.json` holds the sections and probes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, LockOptions, PutOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::cli::RunConfig;
use super::client::{self, Certainty};
use super::cluster;
use super::lock_checker::{LeaseProbe, Outcome, Section};
use super::recorder::Recorder;
use super::workload::Pacer;
use crate::history::{Function, OpKind, ProcessId, Value};

pub const LOCK_FILE: &str = "lock.json";
pub const LOCK_NAME: &str = "jepsen/lock";
pub const COUNTER_KEY: &str = "jepsen/lock-counter";
pub const PROBE_PREFIX: &str = "jepsen/lease/";
/// TTL of a locker's lease; short, so that a pause longer than it loses the lock.
pub const LOCK_LEASE_TTL_S: i64 = 2;
/// TTL of a probe's lease.
pub const PROBE_LEASE_TTL_S: i64 = 2;
/// Time inside the section between the read and the write, widening the window in which
/// a second holder can get in.
const HOLD_MS: u64 = 100;
/// Keep-alive period of a locker's lease (a third of its TTL, as etcd's clients do).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_millis(LOCK_LEASE_TTL_S as u64 * 1000 / 3);
/// How long a probe polls for its lease to expire before giving up.
const PROBE_EXPIRY_WAIT_MAX: Duration = Duration::from_secs(20);
const PROBE_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Sections and probes kept per run; past this, new ones are not started.
pub const RECORDS_MAX: usize = 100_000;
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    pub sections: Vec<Section>,
    pub probes: Vec<LeaseProbe>,
}

#[derive(Default)]
struct Shared {
    sections: Mutex<Vec<Section>>,
    probes: Mutex<Vec<LeaseProbe>>,
}

/// Runs lockers and probes until `stop`.
pub async fn run(
    config: RunConfig,
    urls: Vec<String>,
    recorder: Arc<Recorder>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<LockRecord> {
    let probes = (config.concurrency / 4).max(1);
    let lockers = config.concurrency.saturating_sub(probes).max(2);
    let shared = Arc::new(Shared::default());
    let pacer = Arc::new(Pacer::new(config.rate));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..lockers + probes {
        let client = cluster::connect(&urls[i % urls.len()], None).await?;
        let (config, recorder, shared, pacer, stop) = (
            config.clone(),
            Arc::clone(&recorder),
            Arc::clone(&shared),
            Arc::clone(&pacer),
            stop.clone(),
        );
        if i < lockers {
            tasks.spawn(locker_loop(
                config, i, client, pacer, recorder, shared, stop,
            ));
        } else {
            tasks.spawn(probe_loop(config, i, client, recorder, shared, stop));
        }
    }
    while let Some(joined) = tasks.join_next().await {
        joined?;
    }
    let sections = std::mem::take(&mut *shared.sections.lock().expect("lock poisoned"));
    let probes = std::mem::take(&mut *shared.probes.lock().expect("lock poisoned"));
    Ok(LockRecord { sections, probes })
}

fn outcome(
    result: &Result<Result<(), etcd_client::Error>, tokio::time::error::Elapsed>,
) -> Outcome {
    match result {
        Ok(Ok(())) => Outcome::Ok,
        Ok(Err(e)) if client::certainty(e) == Certainty::DidNotHappen => Outcome::Fail,
        _ => Outcome::Unknown,
    }
}

fn kind_of(outcome: Outcome) -> OpKind {
    match outcome {
        Outcome::Ok => OpKind::Ok,
        Outcome::Fail => OpKind::Fail,
        Outcome::Unknown => OpKind::Info,
    }
}

async fn locker_loop(
    config: RunConfig,
    index: usize,
    mut client: Client,
    pacer: Arc<Pacer>,
    recorder: Arc<Recorder>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut process: ProcessId = index as u64;
    let timeout = config.op_timeout();
    loop {
        tokio::select! {
            _ = pacer.wait() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        if *stop.borrow() || shared.sections.lock().expect("lock poisoned").len() >= RECORDS_MAX {
            break;
        }
        let started = Instant::now();
        let granted =
            tokio::time::timeout(timeout, client.lease_grant(LOCK_LEASE_TTL_S, None)).await;
        let lease = match granted {
            Ok(Ok(g)) => g.id(),
            _ => {
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        let keeper = {
            let mut client = client.clone();
            tokio::spawn(async move {
                let Ok((mut keeper, mut responses)) = client.lease_keep_alive(lease).await else {
                    return;
                };
                loop {
                    if keeper.keep_alive().await.is_err() {
                        return;
                    }
                    let answered =
                        tokio::time::timeout(KEEP_ALIVE_INTERVAL, responses.message()).await;
                    if matches!(answered, Ok(Err(_)) | Ok(Ok(None))) {
                        return;
                    }
                    tokio::time::sleep(KEEP_ALIVE_INTERVAL).await;
                }
            })
        };
        let mut section = Section {
            process,
            lease,
            invoke_ns: recorder.now_ns(),
            acquired_ns: None,
            read: None,
            wrote: None,
            write: None,
            released_ns: None,
        };
        recorder.invoke(process, Function::Cas, Some(LOCK_NAME), Value::Nil);
        let locked = tokio::time::timeout(
            2 * timeout,
            client.lock(LOCK_NAME, Some(LockOptions::new().with_lease(lease))),
        )
        .await;
        let lock_key = match locked {
            Ok(Ok(l)) => {
                section.acquired_ns = Some(recorder.now_ns());
                recorder.complete(
                    process,
                    OpKind::Ok,
                    Function::Cas,
                    Some(LOCK_NAME),
                    Value::Nil,
                    None,
                );
                Some(l.key().to_vec())
            }
            Ok(Err(e)) => {
                let kind = match client::certainty(&e) {
                    Certainty::DidNotHappen => OpKind::Fail,
                    Certainty::Unknown => OpKind::Info,
                };
                recorder.complete(
                    process,
                    kind,
                    Function::Cas,
                    Some(LOCK_NAME),
                    Value::Nil,
                    Some(&client::describe(&e)),
                );
                None
            }
            Err(_) => {
                recorder.complete(
                    process,
                    OpKind::Info,
                    Function::Cas,
                    Some(LOCK_NAME),
                    Value::Nil,
                    Some(client::TIMEOUT),
                );
                None
            }
        };
        if let Some(lock_key) = lock_key {
            recorder.invoke(process, Function::Read, Some(COUNTER_KEY), Value::Nil);
            let read = tokio::time::timeout(timeout, client.get(COUNTER_KEY, None)).await;
            match read {
                Ok(Ok(r)) => {
                    let value = r
                        .kvs()
                        .first()
                        .map(|kv| String::from_utf8_lossy(kv.value()).parse().unwrap_or(-1))
                        .unwrap_or(0);
                    section.read = Some(value);
                    recorder.complete(
                        process,
                        OpKind::Ok,
                        Function::Read,
                        Some(COUNTER_KEY),
                        Value::Int(value),
                        None,
                    );
                }
                _ => {
                    recorder.complete(
                        process,
                        OpKind::Fail,
                        Function::Read,
                        Some(COUNTER_KEY),
                        Value::Nil,
                        Some("counter read failed"),
                    );
                }
            }
            if let Some(value) = section.read {
                tokio::time::sleep(Duration::from_millis(HOLD_MS)).await;
                let next = value + 1;
                section.wrote = Some(next);
                recorder.invoke(
                    process,
                    Function::Write,
                    Some(COUNTER_KEY),
                    Value::Int(next),
                );
                let written = tokio::time::timeout(timeout, async {
                    client
                        .put(COUNTER_KEY, next.to_string(), None)
                        .await
                        .map(|_| ())
                })
                .await;
                let result = outcome(&written);
                section.write = Some(result);
                recorder.complete(
                    process,
                    kind_of(result),
                    Function::Write,
                    Some(COUNTER_KEY),
                    Value::Int(next),
                    None,
                );
                if result == Outcome::Unknown {
                    process += config.concurrency as u64;
                }
            }
            section.released_ns = Some(recorder.now_ns());
            let _ = tokio::time::timeout(timeout, client.unlock(lock_key)).await;
        }
        keeper.abort();
        let _ = tokio::time::timeout(timeout, client.lease_revoke(lease)).await;
        shared.sections.lock().expect("lock poisoned").push(section);
        let _ = started;
    }
}

async fn probe_loop(
    config: RunConfig,
    index: usize,
    mut client: Client,
    recorder: Arc<Recorder>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let process: ProcessId = index as u64;
    let timeout = config.op_timeout();
    let mut n = 0u64;
    while !*stop.borrow() && shared.probes.lock().expect("lock poisoned").len() < RECORDS_MAX {
        n += 1;
        let key = format!("{PROBE_PREFIX}{index}-{n}");
        let granted_ns = recorder.now_ns();
        let lease = match tokio::time::timeout(timeout, client.lease_grant(PROBE_LEASE_TTL_S, None))
            .await
        {
            Ok(Ok(g)) => g.id(),
            _ => {
                tokio::select! {
                    _ = tokio::time::sleep(ERROR_BACKOFF) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                continue;
            }
        };
        recorder.invoke(process, Function::Write, Some(&key), Value::Int(1));
        let put = tokio::time::timeout(timeout, async {
            client
                .put(key.as_str(), "1", Some(PutOptions::new().with_lease(lease)))
                .await
                .map(|_| ())
        })
        .await;
        let put_outcome = outcome(&put);
        recorder.complete(
            process,
            kind_of(put_outcome),
            Function::Write,
            Some(&key),
            Value::Int(1),
            None,
        );
        let mut probe = LeaseProbe {
            process,
            lease,
            ttl_s: PROBE_LEASE_TTL_S,
            key: key.clone(),
            granted_ns,
            expired_seen_ns: None,
            put_after_expiry: None,
            key_present_after_expiry: None,
        };
        let deadline = Instant::now() + PROBE_EXPIRY_WAIT_MAX;
        while Instant::now() < deadline {
            tokio::select! {
                _ = tokio::time::sleep(PROBE_POLL_INTERVAL) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
            let ttl = tokio::time::timeout(timeout, client.lease_time_to_live(lease, None)).await;
            if let Ok(Ok(answer)) = ttl {
                if answer.ttl() == -1 {
                    probe.expired_seen_ns = Some(recorder.now_ns());
                    break;
                }
            }
            if *stop.borrow() {
                break;
            }
        }
        if probe.expired_seen_ns.is_some() {
            let again = format!("{key}-after-expiry");
            let put = tokio::time::timeout(timeout, async {
                client
                    .put(
                        again.as_str(),
                        "2",
                        Some(PutOptions::new().with_lease(lease)),
                    )
                    .await
                    .map(|_| ())
            })
            .await;
            probe.put_after_expiry = Some(outcome(&put));
            if let Ok(Ok(r)) = tokio::time::timeout(timeout, client.get(key.as_str(), None)).await {
                probe.key_present_after_expiry = Some(!r.kvs().is_empty());
            }
        }
        shared.probes.lock().expect("lock poisoned").push(probe);
    }
}
