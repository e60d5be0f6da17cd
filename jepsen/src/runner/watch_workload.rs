//! The watch workload: writers put and delete keys under [`WATCH_PREFIX`] while watchers
//! watch the prefix; [`crate::watch`] judges what the watchers received against what the
//! writers were told.
//!
//! - **Writers** (half the clients, at least one): paced puts of unique values (80 %) and
//!   deletes (20 %) of `--keys` keys, each with `prev_kv`, recorded in `history.jsonl` as
//!   writes (a delete writes `null`). An acknowledged put at revision R with previous
//!   version P is the event `PUT key value create_revision=(P's or R) version=(P's + 1 or 1)`;
//!   an acknowledged delete that deleted something is `DELETE key` at R.
//! - **Watchers** (the other clients, at least two): each watches the prefix from the
//!   run's first revision with `prev_kv` and progress notifications, on its own connection.
//!   Every 1 to 4 s (random) a watcher drops its stream and resumes from its last event's
//!   revision + 1 (a new [`Watcher`] that names the one it [`resumes`](Watcher::resumes));
//!   a stream broken by a fault is resumed the same way once the member answers again.
//!   When the run stops (after the faults are healed) each watcher asks for progress and
//!   waits, at most [`CATCH_UP_TIMEOUT`], until it has seen the final revision.
//! - **Ground truth**: the acknowledged writes. Revisions no acknowledged write explains
//!   (a write that timed out but took effect) are looked up after the run: the prefix is
//!   read at R and at R - 1, and the difference is R's event. The truth ends before the
//!   first revision that cannot be looked up (compacted) or past [`GAP_LOOKUPS_MAX`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use etcd_client::{Client, EventType as PbEventType, GetOptions, KvClient, WatchOptions};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::cli::RunConfig;
use super::client::{self, Certainty};
use super::cluster;
use super::recorder::Recorder;
use super::workload::Pacer;
use crate::history::{Function, OpKind, ProcessId, Value};
use crate::watch::{
    Event, EventType, GroundTruth, KeyRange, KeyValue, Revision, RevisionEvents, WatchRequest,
    WatchResponse, Watcher,
};

pub const WATCH_PREFIX: &str = "jepsen/watch/";
/// How long a watcher keeps waiting for the final revision after the run stops.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(15);
/// Revisions no acknowledged write explains that are looked up after the run, at most.
pub const GAP_LOOKUPS_MAX: usize = 2_000;
/// Responses kept per watcher; past this a watcher stops recording (and says so in the
/// notes), so a run that never ends stays bounded.
pub const RESPONSES_PER_WATCHER_MAX: usize = 200_000;
/// A watcher drops its stream and resumes after a random time in this range.
const RESUME_AFTER_MS: (u64, u64) = (1_000, 4_000);
/// Pause before reconnecting a broken watch.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);
/// How often a catching-up watcher asks for a progress notification.
const PROGRESS_REQUEST_INTERVAL: Duration = Duration::from_millis(500);
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// What the watch workload saves (`watch.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchRecord {
    pub watchers: Vec<Watcher>,
    pub truth: Option<GroundTruth>,
    /// Limits reached and lookups that failed.
    #[serde(default)]
    pub notes: Vec<String>,
}

pub const WATCH_FILE: &str = "watch.json";

/// What one watcher task hands back: its watches, in order.
struct WatcherLog {
    watchers: Vec<Watcher>,
    notes: Vec<String>,
}

/// Runs writers and watchers until `stop`, then builds the ground truth.
pub async fn run(
    config: RunConfig,
    urls: Vec<String>,
    recorder: Arc<Recorder>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<WatchRecord> {
    let writers = (config.concurrency / 2).max(1);
    let watchers = config.concurrency.saturating_sub(writers).max(2);
    let n = urls.len();
    let start_revision = current_revision(&urls).await?;
    // A fresh cluster is at revision 1 with no keys: the truth starts from the empty store.
    let first_revision = if start_revision <= 1 {
        1
    } else {
        start_revision + 1
    };
    let acked: Arc<Mutex<BTreeMap<Revision, Event>>> = Arc::default();
    let pacer = Arc::new(Pacer::new(config.rate));
    let (final_tx, final_rx) = watch::channel::<Option<Revision>>(None);
    let mut writer_tasks = tokio::task::JoinSet::new();
    for i in 0..writers {
        let kv = cluster::connect(&urls[i % n], None).await?.kv_client();
        writer_tasks.spawn(writer_loop(
            config.clone(),
            i,
            kv,
            Arc::clone(&pacer),
            Arc::clone(&recorder),
            Arc::clone(&acked),
            stop.clone(),
        ));
    }
    let mut watcher_tasks = tokio::task::JoinSet::new();
    for w in 0..watchers {
        let url = urls[(w + 1) % n].clone();
        watcher_tasks.spawn(watcher_loop(
            url,
            (w as u64) << 32,
            first_revision,
            config.seed ^ (w as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D),
            stop.clone(),
            final_rx.clone(),
        ));
    }
    let _ = stop.wait_for(|s| *s).await;
    while let Some(joined) = writer_tasks.join_next().await {
        joined.context("a watch writer panicked")?;
    }
    let last_revision = current_revision(&urls).await?;
    final_tx.send_replace(Some(last_revision));
    let mut record = WatchRecord::default();
    while let Some(joined) = watcher_tasks.join_next().await {
        let log = joined.context("a watcher panicked")?;
        record.watchers.extend(log.watchers);
        record.notes.extend(log.notes);
    }
    record.watchers.sort_by_key(|w| w.id);
    let acked = std::mem::take(&mut *acked.lock().expect("acked lock poisoned"));
    let (truth, notes) = ground_truth(&urls, first_revision, last_revision, acked).await;
    record.truth = Some(truth);
    record.notes.extend(notes);
    Ok(record)
}

/// The highest revision any member reports.
async fn current_revision(urls: &[String]) -> anyhow::Result<Revision> {
    let mut best = None;
    for url in urls {
        let Ok(mut client) = cluster::connect(url, Some(cluster::ADMIN_REQUEST_TIMEOUT)).await
        else {
            continue;
        };
        if let Ok(Ok(status)) =
            tokio::time::timeout(cluster::ADMIN_REQUEST_TIMEOUT, client.status()).await
        {
            if let Some(h) = status.header() {
                best = best.max(Some(h.revision()));
            }
        }
    }
    best.ok_or_else(|| anyhow::anyhow!("no member answered a status request"))
}

async fn writer_loop(
    config: RunConfig,
    index: usize,
    mut kv: KvClient,
    pacer: Arc<Pacer>,
    recorder: Arc<Recorder>,
    acked: Arc<Mutex<BTreeMap<Revision, Event>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut process: ProcessId = index as u64;
    let mut rng = StdRng::seed_from_u64(config.seed ^ (index as u64 + 17));
    let mut next_value = 0i64;
    loop {
        tokio::select! {
            _ = pacer.wait() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        if *stop.borrow() {
            break;
        }
        let key = format!("{WATCH_PREFIX}{}", rng.random_range(0..config.keys));
        let delete = rng.random_bool(0.2);
        // Unique over the run: writer index in the low bits.
        next_value += 1;
        let value = next_value * 1_000 + index as i64;
        let argument = if delete {
            Value::Nil
        } else {
            Value::Int(value)
        };
        recorder.invoke(process, Function::Write, Some(&key), argument);
        let started = Instant::now();
        let request = async {
            if delete {
                let r = kv
                    .delete(
                        key.as_str(),
                        Some(etcd_client::DeleteOptions::new().with_prev_key()),
                    )
                    .await?;
                let revision = r.header().map_or(0, |h| h.revision());
                Ok::<_, etcd_client::Error>((r.deleted() > 0).then(|| Event {
                    kind: EventType::Delete,
                    kv: KeyValue {
                        key: key.clone(),
                        mod_revision: revision,
                        ..KeyValue::default()
                    },
                    prev_kv: None,
                }))
            } else {
                let r = kv
                    .put(
                        key.as_str(),
                        value.to_string(),
                        Some(etcd_client::PutOptions::new().with_prev_key()),
                    )
                    .await?;
                let revision = r.header().map_or(0, |h| h.revision());
                let (create_revision, version) = match r.prev_key() {
                    Some(prev) => (prev.create_revision(), prev.version() + 1),
                    None => (revision, 1),
                };
                Ok(Some(Event {
                    kind: EventType::Put,
                    kv: KeyValue {
                        key: key.clone(),
                        value: value.to_string(),
                        create_revision,
                        mod_revision: revision,
                        version,
                        lease: 0,
                    },
                    prev_kv: None,
                }))
            }
        };
        let result = tokio::time::timeout(config.op_timeout(), request).await;
        let (kind, error) = match result {
            Ok(Ok(event)) => {
                if let Some(event) = event {
                    acked
                        .lock()
                        .expect("acked lock poisoned")
                        .insert(event.revision(), event);
                }
                (OpKind::Ok, None)
            }
            Ok(Err(e)) => match client::certainty(&e) {
                Certainty::DidNotHappen => (OpKind::Fail, Some(client::describe(&e))),
                Certainty::Unknown => (OpKind::Info, Some(client::describe(&e))),
            },
            Err(_) => (OpKind::Info, Some(client::TIMEOUT.to_owned())),
        };
        recorder.complete(
            process,
            kind,
            Function::Write,
            Some(&key),
            argument,
            error.as_deref(),
        );
        if kind == OpKind::Info {
            process += config.concurrency as u64;
        }
        if error.is_some() {
            let backoff = ERROR_BACKOFF.saturating_sub(started.elapsed());
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    }
}

fn to_key_value(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: String::from_utf8_lossy(kv.value()).into_owned(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: kv.lease(),
    }
}

fn to_response(r: &etcd_client::WatchResponse) -> WatchResponse {
    WatchResponse {
        header_revision: r.header().map_or(0, |h| h.revision()),
        created: r.created(),
        canceled: r.canceled(),
        compact_revision: r.compact_revision(),
        events: r
            .events()
            .iter()
            .filter_map(|e| {
                let kv = e.kv()?;
                Some(Event {
                    kind: match e.event_type() {
                        PbEventType::Put => EventType::Put,
                        PbEventType::Delete => EventType::Delete,
                    },
                    kv: to_key_value(kv),
                    prev_kv: e.prev_kv().map(to_key_value),
                })
            })
            .collect(),
    }
}

/// How one watch ended.
enum WatchEnd {
    /// Time to drop it and resume (the planned disconnect).
    Resume,
    /// The stream broke (a fault): reconnect and resume.
    Broken,
    /// Canceled by compaction: start over from the compaction revision, not as a resume.
    Compacted(Revision),
    /// Caught up after the run stopped, or gave up: done.
    Done,
}

/// One watcher process: a chain of watches, each resuming the one before.
async fn watcher_loop(
    url: String,
    id_base: u64,
    first_revision: Revision,
    seed: u64,
    mut stop: watch::Receiver<bool>,
    final_revision: watch::Receiver<Option<Revision>>,
) -> WatcherLog {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut log = WatcherLog {
        watchers: Vec::new(),
        notes: Vec::new(),
    };
    let mut start = first_revision;
    let mut resumes = None;
    let mut client: Option<Client> = None;
    let mut catch_up_deadline: Option<Instant> = None;
    loop {
        if *stop.borrow() && catch_up_deadline.is_none() {
            catch_up_deadline = Some(Instant::now() + CATCH_UP_TIMEOUT);
        }
        if catch_up_deadline.is_some_and(|d| Instant::now() >= d) {
            log.notes.push(format!(
                "watcher {id_base:#x}: did not reach the final revision within {CATCH_UP_TIMEOUT:?}"
            ));
            break;
        }
        let c = match client.as_mut() {
            Some(c) => c,
            None => match cluster::connect(&url, None).await {
                Ok(c) => client.insert(c),
                Err(_) => {
                    tokio::time::sleep(RECONNECT_BACKOFF).await;
                    continue;
                }
            },
        };
        let id = id_base + log.watchers.len() as u64;
        let request = WatchRequest {
            range: KeyRange::Prefix(WATCH_PREFIX.to_owned()),
            start_revision: start,
            prev_kv: true,
            filters: Vec::new(),
            progress_notify: true,
        };
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(start)
            .with_prev_key()
            .with_progress_notify();
        let opened = tokio::time::timeout(
            cluster::ADMIN_REQUEST_TIMEOUT,
            c.watch(WATCH_PREFIX, Some(options)),
        )
        .await;
        let mut stream = match opened {
            Ok(Ok(stream)) => stream,
            _ => {
                client = None;
                tokio::time::sleep(RECONNECT_BACKOFF).await;
                continue;
            }
        };
        let mut watcher = Watcher {
            id,
            request,
            resumes,
            responses: Vec::new(),
        };
        let resume_at = Instant::now()
            + Duration::from_millis(rng.random_range(RESUME_AFTER_MS.0..=RESUME_AFTER_MS.1));
        let mut last_event: Option<Revision> = None;
        let mut progress: Revision = start - 1;
        let mut next_progress_request = Instant::now();
        let end = loop {
            let stopping = *stop.borrow();
            if stopping {
                if let Some(target) = *final_revision.borrow() {
                    if progress >= target {
                        break WatchEnd::Done;
                    }
                }
                if catch_up_deadline.is_some_and(|d| Instant::now() >= d) {
                    break WatchEnd::Done;
                }
                if Instant::now() >= next_progress_request {
                    next_progress_request = Instant::now() + PROGRESS_REQUEST_INTERVAL;
                    let _ = stream.request_progress().await;
                }
            } else if Instant::now() >= resume_at {
                break WatchEnd::Resume;
            }
            let wait = if stopping {
                PROGRESS_REQUEST_INTERVAL
            } else {
                resume_at.saturating_duration_since(Instant::now())
            };
            let message = tokio::select! {
                m = stream.message() => m,
                _ = tokio::time::sleep(wait) => continue,
                _ = stop.wait_for(|s| *s), if !stopping => continue,
            };
            match message {
                Ok(Some(response)) => {
                    let response = to_response(&response);
                    if let Some(last) = response.events.last() {
                        last_event = Some(last.revision());
                        progress = progress.max(last.revision());
                    } else if response.is_progress_notify() {
                        progress = progress.max(response.header_revision);
                    }
                    let compacted = response.compact_revision;
                    if watcher.responses.len() < RESPONSES_PER_WATCHER_MAX {
                        watcher.responses.push(response);
                    } else {
                        log.notes.push(format!(
                            "watcher {id}: stopped at {RESPONSES_PER_WATCHER_MAX} responses"
                        ));
                        break WatchEnd::Done;
                    }
                    if compacted != 0 {
                        break WatchEnd::Compacted(compacted);
                    }
                }
                Ok(None) | Err(_) => break WatchEnd::Broken,
            }
        };
        log.watchers.push(watcher);
        match end {
            WatchEnd::Done => break,
            WatchEnd::Resume | WatchEnd::Broken => {
                if let Some(last) = last_event {
                    start = last + 1;
                }
                resumes = Some(id);
                if matches!(end, WatchEnd::Broken) {
                    client = None;
                    tokio::time::sleep(RECONNECT_BACKOFF).await;
                }
            }
            WatchEnd::Compacted(revision) => {
                start = revision;
                resumes = None;
            }
        }
    }
    log
}

/// The acknowledged writes, with the revisions they leave unexplained looked up.
async fn ground_truth(
    urls: &[String],
    first_revision: Revision,
    last_revision: Revision,
    mut acked: BTreeMap<Revision, Event>,
) -> (GroundTruth, Vec<String>) {
    let mut notes = Vec::new();
    let mut kv = None;
    for url in urls {
        if let Ok(c) = cluster::connect(url, Some(cluster::ADMIN_REQUEST_TIMEOUT)).await {
            kv = Some(c.kv_client());
            break;
        }
    }
    let mut truth_end = last_revision;
    let mut lookups = 0usize;
    // Revision 1 of a fresh cluster changed nothing.
    for revision in first_revision.max(2)..=last_revision {
        if acked.contains_key(&revision) {
            continue;
        }
        lookups += 1;
        let found = match (kv.as_mut(), lookups <= GAP_LOOKUPS_MAX) {
            (Some(kv), true) => lookup_revision(kv, revision).await,
            (None, _) => Err("no member answered".to_owned()),
            (_, false) => Err(format!("more than {GAP_LOOKUPS_MAX} lookups")),
        };
        match found {
            Ok(events) => {
                if let Some(event) = events {
                    acked.insert(revision, event);
                }
            }
            Err(why) => {
                notes.push(format!(
                    "ground truth ends at revision {}: revision {revision} is unexplained and its lookup failed: {why}",
                    revision - 1
                ));
                truth_end = revision - 1;
                break;
            }
        }
    }
    let revisions = acked
        .into_iter()
        .filter(|(r, _)| (first_revision..=truth_end).contains(r))
        .map(|(revision, event)| RevisionEvents {
            revision,
            events: vec![event],
        })
        .collect();
    (
        GroundTruth {
            first_revision,
            last_revision: truth_end,
            compact_revision: 0,
            revisions,
        },
        notes,
    )
}

/// The event of `revision` under the prefix: a key whose mod_revision is `revision`, or
/// a key present at `revision - 1` and gone at `revision`. `None` if nothing under the
/// prefix changed.
async fn lookup_revision(kv: &mut KvClient, revision: Revision) -> Result<Option<Event>, String> {
    let read = |r: Revision| {
        let mut kv = kv.clone();
        async move {
            kv.get(
                WATCH_PREFIX,
                Some(GetOptions::new().with_prefix().with_revision(r)),
            )
            .await
            .map_err(|e| client::describe(&e))
        }
    };
    let at = read(revision).await?;
    if let Some(put) = at.kvs().iter().find(|k| k.mod_revision() == revision) {
        return Ok(Some(Event {
            kind: EventType::Put,
            kv: to_key_value(put),
            prev_kv: None,
        }));
    }
    let before = read(revision - 1).await?;
    let present: Vec<&[u8]> = at.kvs().iter().map(|k| k.key()).collect();
    Ok(before
        .kvs()
        .iter()
        .find(|k| !present.contains(&k.key()))
        .map(|gone| Event {
            kind: EventType::Delete,
            kv: KeyValue {
                key: String::from_utf8_lossy(gone.key()).into_owned(),
                mod_revision: revision,
                ..KeyValue::default()
            },
            prev_kv: None,
        }))
}
