//! The kube workload: what a Kubernetes apiserver asks of etcd, on pods under
//! [`PODS_PREFIX`]; [`kube_checker`](super::kube_checker) judges it.
//!
//! - **Writers** (half the clients): read a pod key, then create it (`Txn` comparing
//!   `mod_revision == 0`), update it (comparing the `mod_revision` just read) or delete it
//!   (same compare), as the apiserver's GuaranteedUpdate does. Values are unique.
//! - **Listers** (the other half, at least one): a paginated list of the prefix,
//!   [`PAGE_LIMIT`] keys a page, the first page at the current revision `R` and every
//!   next page pinned at `R` (the apiserver's `continue` token); then a watch from `R + 1`
//!   for 1 to 3 s (the reflector's List-then-Watch). A page refused because `R` was
//!   compacted ends that list, as the apiserver answers "410 Gone" and the reflector
//!   lists again.
//! - **Compactor**: compacts at the current revision every [`COMPACT_INTERVAL`].
//! - After the run, one final complete list with the faults healed.
//!
//! `history.jsonl` holds the register-shaped view (writes as `cas`, deletes as `write`
//! of `null`, lists as `read`); `kube.json` the writes, lists and watches.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, EventType, GetOptions, Txn, TxnOp, WatchOptions};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::sync::watch;

use super::cli::RunConfig;
use super::client::{self, Certainty};
use super::cluster;
use super::kube_checker::{
    Item, KubeList, KubeRecord, KubeWatch, KubeWrite, WriteKind, WriteOutcome,
};
use super::recorder::Recorder;
use super::workload::Pacer;
use crate::history::{Function, OpKind, ProcessId, Value};

pub const KUBE_FILE: &str = "kube.json";
pub const PODS_PREFIX: &str = "/registry/pods/default/";
/// Keys per list page.
pub const PAGE_LIMIT: i64 = 3;
/// Time between compactions.
pub const COMPACT_INTERVAL: Duration = Duration::from_secs(2);
/// A lister's watch lasts a random time in this range (ms).
const WATCH_FOR_MS: (u64, u64) = (1_000, 3_000);
/// Events kept per watch; a watch that reaches it ends.
const WATCH_EVENTS_MAX: usize = 50_000;
/// Pages per list, at most (keys are few; this only bounds a store that never says "no more").
const PAGES_MAX: usize = 10_000;
/// Writes, lists and watches kept per run; past it, clients stop.
pub const RECORDS_MAX: usize = 200_000;
/// How long the final list keeps trying.
const FINAL_LIST_TIMEOUT: Duration = Duration::from_secs(30);
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Shared {
    record: Mutex<KubeRecord>,
}

impl Shared {
    fn full(&self) -> bool {
        let r = self.record.lock().expect("kube record poisoned");
        r.writes.len() + r.lists.len() + r.watches.len() >= RECORDS_MAX
    }
}

/// The end of a prefix range: the prefix with its last byte + 1.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    let last = end.last_mut().expect("the prefix is not empty");
    *last += 1;
    end
}

pub async fn run(
    config: RunConfig,
    urls: Vec<String>,
    recorder: Arc<Recorder>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<KubeRecord> {
    let writers = (config.concurrency / 2).max(1);
    let listers = config.concurrency.saturating_sub(writers).max(1);
    let shared = Arc::new(Shared::default());
    let pacer = Arc::new(Pacer::new(config.rate));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..writers + listers {
        let client = cluster::connect(&urls[i % urls.len()], None).await?;
        let (config, recorder, shared, pacer, stop) = (
            config.clone(),
            Arc::clone(&recorder),
            Arc::clone(&shared),
            Arc::clone(&pacer),
            stop.clone(),
        );
        if i < writers {
            tasks.spawn(writer_loop(
                config, i, client, pacer, recorder, shared, stop,
            ));
        } else {
            tasks.spawn(lister_loop(
                config, i, client, pacer, recorder, shared, stop,
            ));
        }
    }
    let compactor = {
        let (urls, shared, mut stop) = (urls.clone(), Arc::clone(&shared), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(COMPACT_INTERVAL) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                // Through any member that answers; a partitioned one times out, the next may not.
                for url in &urls {
                    let Ok(mut c) =
                        cluster::connect(url, Some(cluster::ADMIN_REQUEST_TIMEOUT)).await
                    else {
                        continue;
                    };
                    let Ok(Ok(status)) =
                        tokio::time::timeout(cluster::ADMIN_REQUEST_TIMEOUT, c.status()).await
                    else {
                        continue;
                    };
                    let revision = status.header().map_or(0, |h| h.revision());
                    let compacted = tokio::time::timeout(
                        cluster::ADMIN_REQUEST_TIMEOUT,
                        c.compact(revision, None),
                    )
                    .await;
                    if matches!(compacted, Ok(Ok(_))) {
                        shared
                            .record
                            .lock()
                            .expect("kube record poisoned")
                            .compactions
                            .push(revision);
                        break;
                    }
                }
            }
        })
    };
    let _ = stop.wait_for(|s| *s).await;
    while let Some(joined) = tasks.join_next().await {
        joined?;
    }
    compactor.await?;
    // The final list, with the faults healed: every acknowledged write must be there.
    let deadline = Instant::now() + FINAL_LIST_TIMEOUT;
    let mut attempt = 0usize;
    while Instant::now() < deadline {
        let url = &urls[attempt % urls.len()];
        attempt += 1;
        if let Ok(mut c) = cluster::connect(url, None).await {
            let (list, _) = list_pages(&mut c, u64::MAX, config.op_timeout()).await;
            if list.complete {
                shared
                    .record
                    .lock()
                    .expect("kube record poisoned")
                    .lists
                    .push(KubeList {
                        final_read: true,
                        ..list
                    });
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let record = std::mem::take(&mut *shared.record.lock().expect("kube record poisoned"));
    Ok(record)
}

fn parse_value(bytes: &[u8]) -> i64 {
    String::from_utf8_lossy(bytes).parse().unwrap_or(-1)
}

async fn writer_loop(
    config: RunConfig,
    index: usize,
    mut client: Client,
    pacer: Arc<Pacer>,
    recorder: Arc<Recorder>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut process: ProcessId = index as u64;
    let mut rng = StdRng::seed_from_u64(config.seed ^ (index as u64 + 91));
    let mut next = 0i64;
    let timeout = config.op_timeout();
    loop {
        tokio::select! {
            _ = pacer.wait() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        if *stop.borrow() || shared.full() {
            break;
        }
        let key = format!("{PODS_PREFIX}pod-{}", rng.random_range(0..config.keys));
        let read = tokio::time::timeout(timeout, client.get(key.as_str(), None)).await;
        let current = match read {
            Ok(Ok(r)) => r.kvs().first().map(|kv| kv.mod_revision()),
            _ => {
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        next += 1;
        let value = next * 1_000 + index as i64;
        let (kind, expected) = match current {
            None => (WriteKind::Create, 0),
            Some(m) if rng.random_bool(0.8) => (WriteKind::Update, m),
            Some(m) => (WriteKind::Delete, m),
        };
        let op = match kind {
            WriteKind::Delete => TxnOp::delete(key.as_str(), None),
            _ => TxnOp::put(key.as_str(), value.to_string(), None),
        };
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.as_str(),
                CompareOp::Equal,
                expected,
            )])
            .and_then([op]);
        let (f, argument) = match kind {
            WriteKind::Delete => (Function::Write, Value::Nil),
            _ => (Function::Cas, Value::Pair(expected, value)),
        };
        recorder.invoke(process, f, Some(&key), argument);
        let answer = tokio::time::timeout(timeout, client.txn(txn)).await;
        let (outcome, error) = match answer {
            Ok(Ok(r)) if r.succeeded() => (
                WriteOutcome::Ok(r.header().map_or(0, |h| h.revision())),
                None,
            ),
            Ok(Ok(_)) => (WriteOutcome::Fail, None),
            Ok(Err(e)) => match client::certainty(&e) {
                Certainty::DidNotHappen => (WriteOutcome::Fail, Some(client::describe(&e))),
                Certainty::Unknown => (WriteOutcome::Unknown, Some(client::describe(&e))),
            },
            Err(_) => (WriteOutcome::Unknown, Some(client::TIMEOUT.to_owned())),
        };
        let kind_of = match outcome {
            WriteOutcome::Ok(_) => OpKind::Ok,
            WriteOutcome::Fail => OpKind::Fail,
            WriteOutcome::Unknown => OpKind::Info,
        };
        recorder.complete(process, kind_of, f, Some(&key), argument, error.as_deref());
        shared
            .record
            .lock()
            .expect("kube record poisoned")
            .writes
            .push(KubeWrite {
                process,
                key,
                kind,
                expected_mod_revision: expected,
                value: if kind == WriteKind::Delete { 0 } else { value },
                outcome,
            });
        if kind_of == OpKind::Info {
            process += config.concurrency as u64;
        }
        if error.is_some() {
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
    }
}

/// A paginated list of the prefix: the first page at the current revision, the rest
/// pinned to it. Returns the list and the error that cut it short, if any.
async fn list_pages(
    client: &mut Client,
    process: u64,
    timeout: Duration,
) -> (KubeList, Option<String>) {
    let mut list = KubeList {
        process,
        revision: 0,
        pages: Vec::new(),
        complete: false,
        final_read: false,
    };
    let end = prefix_end(PODS_PREFIX);
    let mut from = PODS_PREFIX.as_bytes().to_vec();
    for _ in 0..PAGES_MAX {
        let mut options = GetOptions::new()
            .with_range(end.clone())
            .with_limit(PAGE_LIMIT);
        if list.revision != 0 {
            options = options.with_revision(list.revision);
        }
        let page =
            match tokio::time::timeout(timeout, client.get(from.clone(), Some(options))).await {
                Ok(Ok(page)) => page,
                Ok(Err(e)) => return (list, Some(client::describe(&e))),
                Err(_) => return (list, Some(client::TIMEOUT.to_owned())),
            };
        if list.revision == 0 {
            list.revision = page.header().map_or(0, |h| h.revision());
        }
        let items: Vec<Item> = page
            .kvs()
            .iter()
            .map(|kv| Item {
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                value: Some(parse_value(kv.value())),
                mod_revision: kv.mod_revision(),
            })
            .collect();
        if let Some(last) = page.kvs().last() {
            from = last.key().to_vec();
            from.push(0);
        }
        list.pages.push(items);
        if !page.more() {
            list.complete = true;
            return (list, None);
        }
    }
    (list, Some(format!("more than {PAGES_MAX} pages")))
}

async fn lister_loop(
    config: RunConfig,
    index: usize,
    mut client: Client,
    pacer: Arc<Pacer>,
    recorder: Arc<Recorder>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    // Lists change nothing: a list that fails is a `fail`, so the process id never changes.
    let process: ProcessId = index as u64;
    let mut rng = StdRng::seed_from_u64(config.seed ^ (index as u64 + 7_919));
    loop {
        tokio::select! {
            _ = pacer.wait() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        if *stop.borrow() || shared.full() {
            break;
        }
        recorder.invoke(process, Function::Read, Some(PODS_PREFIX), Value::Nil);
        let (list, error) = list_pages(&mut client, process, config.op_timeout()).await;
        let kind = if list.complete {
            OpKind::Ok
        } else {
            OpKind::Fail
        };
        let items = list.pages.iter().map(Vec::len).sum::<usize>() as i64;
        let value = if list.complete {
            Value::Int(items)
        } else {
            Value::Nil
        };
        recorder.complete(
            process,
            kind,
            Function::Read,
            Some(PODS_PREFIX),
            value,
            error.as_deref(),
        );
        let revision = list.revision;
        let complete = list.complete;
        shared
            .record
            .lock()
            .expect("kube record poisoned")
            .lists
            .push(list);
        if !complete {
            tokio::time::sleep(ERROR_BACKOFF).await;
            continue;
        }
        let watch_for = Duration::from_millis(rng.random_range(WATCH_FOR_MS.0..=WATCH_FOR_MS.1));
        if let Some(watch) =
            watch_from(&mut client, process, revision + 1, watch_for, &mut stop).await
        {
            shared
                .record
                .lock()
                .expect("kube record poisoned")
                .watches
                .push(watch);
        }
    }
}

/// Watches the prefix from `start` for `duration`; `None` if the watch could not be
/// opened or was canceled by compaction before delivering anything.
async fn watch_from(
    client: &mut Client,
    process: u64,
    start: i64,
    duration: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Option<KubeWatch> {
    let options = WatchOptions::new().with_prefix().with_start_revision(start);
    let mut stream = tokio::time::timeout(
        cluster::ADMIN_REQUEST_TIMEOUT,
        client.watch(PODS_PREFIX, Some(options)),
    )
    .await
    .ok()?
    .ok()?;
    let mut watch = KubeWatch {
        process,
        start_revision: start,
        events: Vec::new(),
    };
    let until = tokio::time::Instant::now() + duration;
    loop {
        let message = tokio::select! {
            m = stream.message() => m,
            _ = tokio::time::sleep_until(until) => break,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Ok(Some(response)) = message else {
            break;
        };
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            watch.events.push(Item {
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                value: match event.event_type() {
                    EventType::Put => Some(parse_value(kv.value())),
                    EventType::Delete => None,
                },
                mod_revision: kv.mod_revision(),
            });
        }
        if response.canceled() || watch.events.len() >= WATCH_EVENTS_MAX {
            break;
        }
    }
    Some(watch)
}
