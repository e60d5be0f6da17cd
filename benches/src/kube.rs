//! `kube`: the storage profile of a Kubernetes apiserver on `/registry/pods/`.
//!
//! Before the run, `--objects` pods are written. Then `--watchers` informers each list the
//! pods (paginated, `--list-limit` per page, every page at the first page's revision) and
//! watch the prefix from that revision, while `--clients` loops pick operations by weight:
//! - list: the same paginated list, latency of the whole list and of each page;
//! - create: txn `mod_revision(key) == 0` then put (the apiserver's create), on a key drawn
//!   from twice the object count, so about half the creates find the object there;
//! - update: GuaranteedUpdate — get, then txn `mod_revision == read` put, retried on conflict;
//! - delete: get, then txn `mod_revision == read` delete (a delete with a precondition).
//!
//! Values carry the write's start time as in `watch`, so informers report event latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use etcd_client::{
    Client, Compare, CompareOp, GetOptions, KvClient, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use rand::{Rng, SeedableRng as _};
use tokio::sync::watch as signal;

use crate::cli::{KubeArgs, Stop};
use crate::load::{self, Pacer, REQUEST_TIMEOUT};
use crate::report::{Report, RunResult, Section};
use crate::watch::{since_stamp, stamped_value};
use crate::workload::error_message;

pub const POD_PREFIX: &str = "/registry/pods/default/";
/// Writers of the initial objects.
const SETUP_WRITERS: usize = 16;
/// Bound on the pages of one list: a list that has not ended by then is an error (the
/// key space is bounded, so only a server that ignores `limit` gets here).
const LIST_PAGES_MAX: u64 = 100_000;
/// After the mix, how long informers may take to see the last events.
const INFORMER_DRAIN: Duration = Duration::from_secs(1);

/// The operations of the mix, and the sections of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KubeOp {
    List,
    Create,
    Update,
    Delete,
}

const SECTIONS: [&str; 7] = [
    "list",
    "list page",
    "create",
    "update",
    "delete",
    "informer list+watch start",
    "watch event (write start to event)",
];
const LIST: usize = 0;
const LIST_PAGE: usize = 1;
const CREATE: usize = 2;
const UPDATE: usize = 3;
const DELETE: usize = 4;
const INFORMER_START: usize = 5;
const WATCH_EVENT: usize = 6;

/// `/registry/pods/default/pod-00000042`.
pub fn pod_key(index: u64) -> Vec<u8> {
    format!("{POD_PREFIX}pod-{index:08}").into_bytes()
}

/// The end of the range of keys that start with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

struct Shared {
    args: KubeArgs,
    epoch: Instant,
    stop: Stop,
    issued: AtomicU64,
    pacer: Option<Pacer>,
    /// One set of section reports per shard.
    reports: Vec<Mutex<Vec<Report>>>,
    outcomes: Outcomes,
}

#[derive(Default)]
struct Outcomes {
    create_exists: AtomicU64,
    delete_not_found: AtomicU64,
    conflicts: AtomicU64,
    informer_events: AtomicU64,
}

const SHARDS: usize = 16;

fn new_sections() -> Vec<Report> {
    SECTIONS.iter().map(|_| Report::new()).collect()
}

/// `skiff bench kube`.
pub async fn run(conns: &[Client], clients: u32, args: &KubeArgs) -> anyhow::Result<RunResult> {
    let epoch = Instant::now();
    setup(conns, args, epoch).await?;
    let shared = Arc::new(Shared {
        args: args.clone(),
        epoch,
        stop: args.limit.stop(),
        issued: AtomicU64::new(0),
        pacer: Pacer::new(&args.limit),
        reports: (0..SHARDS).map(|_| Mutex::new(new_sections())).collect(),
        outcomes: Outcomes::default(),
    });
    let (stop_tx, stop_rx) = signal::channel(false);
    let mut informers = tokio::task::JoinSet::new();
    for i in 0..args.watchers as usize {
        informers.spawn(informer(
            Arc::clone(&shared),
            conns[i % conns.len()].clone(),
            i % SHARDS,
            stop_rx.clone(),
        ));
    }
    let progress = load::progress_bar(shared.stop);
    let started = Instant::now();
    let deadline = match shared.stop {
        Stop::After(d) => Some(started + d),
        Stop::AfterRequests(_) => None,
    };
    let mut loops = tokio::task::JoinSet::new();
    for id in 0..clients as usize {
        let shared = Arc::clone(&shared);
        let kv = conns[id % conns.len()].kv_client();
        let progress = progress.clone();
        loops.spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(id as u64);
            loop {
                let seq = shared.issued.fetch_add(1, Ordering::Relaxed);
                if let Stop::AfterRequests(total) = shared.stop {
                    if seq >= total {
                        break;
                    }
                }
                if let Some(pacer) = &shared.pacer {
                    pacer.wait().await;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                one_op(&shared, kv.clone(), id % SHARDS, &mut rng).await;
                match shared.stop {
                    Stop::AfterRequests(_) => progress.inc(1),
                    Stop::After(_) => progress.set_position(started.elapsed().as_millis() as u64),
                }
            }
        });
    }
    while let Some(joined) = loops.join_next().await {
        joined.context("a kube client loop panicked")?;
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    tokio::time::sleep(INFORMER_DRAIN).await;
    let _ = stop_tx.send(true);
    while let Some(joined) = informers.join_next().await {
        joined.context("an informer panicked")?;
    }

    let mut merged = new_sections();
    for shard in &shared.reports {
        let shard = shard.lock().expect("report lock poisoned");
        for (into, from) in merged.iter_mut().zip(shard.iter()) {
            into.merge(from);
        }
    }
    let mut result = RunResult {
        operation: "kube".to_string(),
        sections: SECTIONS
            .iter()
            .zip(merged)
            .map(|(name, report)| Section {
                name: name.to_string(),
                report,
                elapsed,
            })
            .collect(),
        figures: Default::default(),
    };
    let o = &shared.outcomes;
    for (name, value) in [
        ("objects_initial", args.objects),
        ("watchers", u64::from(args.watchers)),
        (
            "create_already_exists",
            o.create_exists.load(Ordering::Relaxed),
        ),
        (
            "delete_not_found",
            o.delete_not_found.load(Ordering::Relaxed),
        ),
        ("txn_conflicts", o.conflicts.load(Ordering::Relaxed)),
        ("informer_events", o.informer_events.load(Ordering::Relaxed)),
    ] {
        result.figures.insert(name.to_string(), value as f64);
    }
    Ok(result)
}

/// Writes the initial objects with [`SETUP_WRITERS`] concurrent loops.
async fn setup(conns: &[Client], args: &KubeArgs, epoch: Instant) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..SETUP_WRITERS {
        let mut kv = conns[w % conns.len()].kv_client();
        let next = Arc::clone(&next);
        let (objects, val_size) = (args.objects, args.val_size as usize);
        writers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= objects {
                    return anyhow::Ok(());
                }
                let put = kv.put(pod_key(i), stamped_value(epoch, val_size), None);
                tokio::time::timeout(REQUEST_TIMEOUT, put)
                    .await
                    .context("writing the initial pods timed out")?
                    .map_err(|e| {
                        anyhow::anyhow!("writing the initial pods: {}", error_message(e))
                    })?;
            }
        });
    }
    while let Some(joined) = writers.join_next().await {
        joined.context("a setup writer panicked")??;
    }
    Ok(())
}

fn record(shared: &Shared, shard: usize, section: usize, result: Result<Duration, String>) {
    let mut reports = shared.reports[shard].lock().expect("report lock poisoned");
    match result {
        Ok(latency) => reports[section].record(latency),
        Err(message) => reports[section].record_error(&message),
    }
}

fn choose(args: &KubeArgs, rng: &mut impl Rng) -> KubeOp {
    let weights = [
        (KubeOp::List, args.list_weight),
        (KubeOp::Create, args.create_weight),
        (KubeOp::Update, args.update_weight),
        (KubeOp::Delete, args.delete_weight),
    ];
    let total: u32 = weights.iter().map(|w| w.1).sum();
    if total == 0 {
        return KubeOp::Update;
    }
    let mut pick = rng.random_range(0..total);
    for (op, weight) in weights {
        if pick < weight {
            return op;
        }
        pick -= weight;
    }
    unreachable!("pick < total")
}

async fn one_op(shared: &Shared, mut kv: KvClient, shard: usize, rng: &mut impl Rng) {
    let args = &shared.args;
    let op = choose(args, rng);
    let started = Instant::now();
    let (section, outcome) = match op {
        KubeOp::List => {
            let pages = timed(list(&mut kv, args.list_limit)).await;
            if let Ok((_, page_latencies)) = &pages {
                let mut reports = shared.reports[shard].lock().expect("report lock poisoned");
                for latency in page_latencies {
                    reports[LIST_PAGE].record(*latency);
                }
            }
            (LIST, pages.map(|_| ()))
        }
        KubeOp::Create => {
            let key = pod_key(rng.random_range(0..args.objects * 2));
            let value = stamped_value(shared.epoch, args.val_size as usize);
            let txn = Txn::new()
                .when([Compare::mod_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, value, None)]);
            let result = timed(async { kv.txn(txn).await.map_err(error_message) }).await;
            if let Ok(response) = &result {
                if !response.succeeded() {
                    shared
                        .outcomes
                        .create_exists
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            (CREATE, result.map(|_| ()))
        }
        KubeOp::Update => {
            let key = pod_key(rng.random_range(0..args.objects));
            let value = stamped_value(shared.epoch, args.val_size as usize);
            let result = timed(crate::workload::optimistic_update(&mut kv, key, &value)).await;
            (UPDATE, result)
        }
        KubeOp::Delete => {
            let key = pod_key(rng.random_range(0..args.objects * 2));
            let result = timed(guarded_delete(&mut kv, key, &shared.outcomes)).await;
            (DELETE, result)
        }
    };
    record(shared, shard, section, outcome.map(|()| started.elapsed()));
}

/// Bounds a request by [`REQUEST_TIMEOUT`], turning a timeout into an error message.
async fn timed<T>(f: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::time::timeout(REQUEST_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| Err("skiff bench: request timed out".to_string()))
}

/// The apiserver's paginated list: the first page at the current revision, the next pages
/// at that same revision from after the last key. Returns the revision and page latencies.
async fn list(kv: &mut KvClient, limit: u64) -> Result<(i64, Vec<Duration>), String> {
    let end = prefix_end(POD_PREFIX.as_bytes());
    let mut from = POD_PREFIX.as_bytes().to_vec();
    let mut revision = 0;
    let mut pages = Vec::new();
    for _ in 0..LIST_PAGES_MAX {
        let mut options = GetOptions::new()
            .with_range(end.clone())
            .with_limit(limit as i64);
        if revision != 0 {
            options = options.with_revision(revision);
        }
        let started = Instant::now();
        let response = kv
            .get(from.clone(), Some(options))
            .await
            .map_err(error_message)?;
        pages.push(started.elapsed());
        if revision == 0 {
            revision = response.header().map_or(0, |h| h.revision());
        }
        match response.kvs().last() {
            Some(last) if response.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return Ok((revision, pages)),
        }
    }
    Err(format!(
        "kube: list did not end after {LIST_PAGES_MAX} pages"
    ))
}

/// Delete with a precondition on the object read: get, then txn `mod_revision == read`
/// delete, retried on conflict like an update.
async fn guarded_delete(
    kv: &mut KvClient,
    key: Vec<u8>,
    outcomes: &Outcomes,
) -> Result<(), String> {
    let current = kv.get(key.clone(), None).await.map_err(error_message)?;
    let Some(mut mod_revision) = current.kvs().first().map(|kv| kv.mod_revision()) else {
        outcomes.delete_not_found.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    };
    for _ in 0..16 {
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                mod_revision,
            )])
            .and_then([TxnOp::delete(key.clone(), None)])
            .or_else([TxnOp::get(key.clone(), None)]);
        let response = kv.txn(txn).await.map_err(error_message)?;
        if response.succeeded() {
            return Ok(());
        }
        outcomes.conflicts.fetch_add(1, Ordering::Relaxed);
        mod_revision = match response.op_responses().first() {
            Some(TxnOpResponse::Get(get)) => match get.kvs().first() {
                Some(kv) => kv.mod_revision(),
                None => {
                    outcomes.delete_not_found.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
            },
            _ => return Err("kube: failed txn did not return the current object".to_string()),
        };
    }
    Err("kube: delete still conflicting after 16 attempts".to_string())
}

/// An informer: list, then watch the prefix from the list's revision + 1 until `stop`.
async fn informer(
    shared: Arc<Shared>,
    client: Client,
    shard: usize,
    mut stop: signal::Receiver<bool>,
) {
    let started = Instant::now();
    let mut kv = client.kv_client();
    let revision = match timed(list(&mut kv, shared.args.list_limit)).await {
        Ok((revision, _)) => revision,
        Err(message) => return record(&shared, shard, INFORMER_START, Err(message)),
    };
    let options = WatchOptions::new()
        .with_range(prefix_end(POD_PREFIX.as_bytes()))
        .with_start_revision(revision + 1);
    let mut watch_client = client.watch_client();
    let mut stream = match timed(async {
        watch_client
            .watch(POD_PREFIX, Some(options))
            .await
            .map_err(error_message)
    })
    .await
    {
        Ok(stream) => stream,
        Err(message) => return record(&shared, shard, INFORMER_START, Err(message)),
    };
    record(&shared, shard, INFORMER_START, Ok(started.elapsed()));
    loop {
        let message = tokio::select! {
            message = stream.message() => message,
            _ = stop.changed() => return,
        };
        let message = match message {
            Ok(Some(message)) => message,
            Ok(None) => return record(&shared, shard, WATCH_EVENT, Err("watch closed".into())),
            Err(e) => return record(&shared, shard, WATCH_EVENT, Err(error_message(e))),
        };
        if message.canceled() {
            let reason = format!("watch canceled: {}", message.cancel_reason());
            return record(&shared, shard, WATCH_EVENT, Err(reason));
        }
        let mut reports = shared.reports[shard].lock().expect("report lock poisoned");
        for event in message.events() {
            shared
                .outcomes
                .informer_events
                .fetch_add(1, Ordering::Relaxed);
            if let Some(latency) = event
                .kv()
                .and_then(|kv| since_stamp(shared.epoch, kv.value()))
            {
                if event.event_type() == etcd_client::EventType::Put {
                    reports[WATCH_EVENT].record(latency);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_keys_and_prefix_end() {
        assert_eq!(pod_key(42), b"/registry/pods/default/pod-00000042".to_vec());
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn choice_follows_the_weights() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            kube: KubeArgs,
        }
        let args = Cli::try_parse_from([
            "kube",
            "--list-weight",
            "0",
            "--create-weight",
            "0",
            "--delete-weight",
            "0",
        ])
        .unwrap()
        .kube;
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert!((0..100).all(|_| choose(&args, &mut rng) == KubeOp::Update));
        let args = Cli::try_parse_from(["kube"]).unwrap().kube;
        let mut counts = [0u32; 4];
        for _ in 0..10_000 {
            counts[choose(&args, &mut rng) as usize] += 1;
        }
        // Weights 1:2:6:1.
        assert!((800..1_200).contains(&counts[0]), "{counts:?}");
        assert!((5_600..6_400).contains(&counts[2]), "{counts:?}");
    }
}
