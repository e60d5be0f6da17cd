//! `skiff bench apiserver`: the Kubernetes API server over HTTPS, as its clients see it.
//!
//! It starts nothing unless asked (`--start` runs `skiff up` in a temp dir, on its own
//! store or on `--etcd-servers`); otherwise it drives `--kubeconfig`'s server (or
//! `--server`). Everything happens in a fresh namespace `skiff-bench-<unix seconds>`:
//! 1. setup: `--pods` pods (~2 KiB of JSON each, [`pods::pod`]) created by
//!    [`SETUP_CLIENTS`] connections (their latency is the "create (setup)" section);
//! 2. lists, `--list-runs` times each: the whole namespace without resourceVersion (a
//!    quorum read), paginated with `limit=--page-limit` (latency of the whole list and of
//!    each page), and with `resourceVersion=0` (the watch cache where there is one);
//! 3. watch fan-out: `--watchers` watches of the namespace from one list's revision, then
//!    `--writers` connections update pods `--watch-events` times in all (at most
//!    `--watch-rate` per second), each update stamped with its start time and a sequence
//!    number; every watcher records write-start-to-event latency and which sequence
//!    numbers it saw (a missed event is counted and reported as an error);
//! 4. load: global `--clients` connections do `--ops` operations (at most `--rate` per
//!    second), alternately creating a new pod and updating an existing one (unconditional
//!    PUT, as a controller replacing an object it owns).
//!
//! Output: one etcd-style summary per section and the figures, or `--json`.

mod client;
mod pods;
mod start;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use http_body_util::BodyExt as _;
use hyper::Method;
use serde::Deserialize;

use crate::cli::Limit;
use crate::load::Pacer;
use crate::report::{Report, RunResult, Section};
use client::{Client, Conn, KubeConfig};

/// Connections creating the initial pods.
pub const SETUP_CLIENTS: usize = 16;
/// Upper bound on `--watchers` (each is an HTTPS connection of its own).
pub const WATCHERS_MAX: u32 = 2_000;
/// After the last write, how long watchers may take to see the last events.
const WATCH_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long all watchers may take to get their response headers.
const WATCH_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on one request (a list of 10k pods in a debug build included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on the pages of one paginated list (only a server that ignores `limit` gets near it).
const LIST_PAGES_MAX: usize = 100_000;
/// Bytes of one watch event line the bench buffers before calling the stream broken.
const WATCH_LINE_BYTES_MAX: usize = 16 * 1024 * 1024;

#[derive(Args, Clone, Debug)]
pub struct ApiserverArgs {
    /// kubeconfig of the apiserver to drive (not needed with --start).
    #[arg(long, required_unless_present = "start")]
    pub kubeconfig: Option<PathBuf>,
    /// Server URL, overriding the kubeconfig's (`https://host:port`).
    #[arg(long)]
    pub server: Option<String>,
    /// Start `skiff up` (this binary) in a temp dir and drive it; stopped at the end.
    #[arg(long)]
    pub start: bool,
    /// With --start: run only the apiserver, on these etcd endpoints (e.g. a real etcd).
    #[arg(long, requires = "start")]
    pub etcd_servers: Option<String>,
    /// Pods created before the lists (the list size).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub pods: u64,
    /// Times each list variant is measured.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub list_runs: u64,
    /// Page size of the paginated list.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub page_limit: u64,
    /// Watches of the namespace during the fan-out phase.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=i64::from(WATCHERS_MAX)))]
    pub watchers: u32,
    /// Connections writing during the fan-out phase.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub writers: u32,
    /// Updates (events) written during the fan-out phase, over all writers.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub watch_events: u64,
    /// Most fan-out updates per second over all writers (0: as fast as they go).
    #[arg(long, default_value_t = 100)]
    pub watch_rate: u64,
    /// Operations (creates and updates, alternately) of the load phase, over `--clients`.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    pub ops: u64,
    /// Most load-phase operations per second over all clients (0: as fast as they go).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
}

/// The sections of the report, in order.
const SECTIONS: [&str; 9] = [
    "create (setup)",
    "list all (no resourceVersion)",
    "list all (limit pages)",
    "list page",
    "list all (resourceVersion=0)",
    "watch write (update)",
    "watch event (write start to event, each watcher)",
    "create (load)",
    "update (load)",
];
const SETUP: usize = 0;
const LIST_QUORUM: usize = 1;
const LIST_PAGED: usize = 2;
const LIST_PAGE: usize = 3;
const LIST_RV0: usize = 4;
const WATCH_WRITE: usize = 5;
const WATCH_EVENT: usize = 6;
const LOAD_CREATE: usize = 7;
const LOAD_UPDATE: usize = 8;

/// Section reports shared by tasks, and their wall time.
struct Sections {
    reports: Vec<Mutex<Report>>,
    elapsed: Mutex<Vec<Duration>>,
}

impl Sections {
    fn new() -> Sections {
        Sections { reports: SECTIONS.iter().map(|_| Mutex::new(Report::new())).collect(), elapsed: Mutex::new(vec![Duration::ZERO; SECTIONS.len()]) }
    }

    fn record(&self, section: usize, outcome: &anyhow::Result<Duration>) {
        let mut r = self.reports[section].lock().expect("report lock poisoned");
        match outcome {
            Ok(latency) => r.record(*latency),
            Err(e) => r.record_error(&format!("{e:#}")),
        }
    }

    fn merge(&self, section: usize, report: &Report) {
        self.reports[section].lock().expect("report lock poisoned").merge(report);
    }

    fn set_elapsed(&self, sections: &[usize], elapsed: Duration) {
        let mut e = self.elapsed.lock().expect("elapsed lock poisoned");
        for s in sections {
            e[*s] += elapsed;
        }
    }

    fn errors(&self, section: usize) -> u64 {
        self.reports[section].lock().expect("report lock poisoned").errors_total()
    }
}

/// What a list response says about itself.
#[derive(Deserialize)]
struct ListPage {
    metadata: ListMeta,
    items: Vec<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct ListMeta {
    #[serde(rename = "resourceVersion", default)]
    resource_version: String,
    #[serde(rename = "continue", default)]
    continue_token: Option<String>,
}

async fn timed<T>(fut: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(REQUEST_TIMEOUT, fut).await.context("request timed out")?
}

/// `skiff bench apiserver`.
pub async fn run(args: &ApiserverArgs, clients: u32) -> anyhow::Result<RunResult> {
    let started_up = if args.start { Some(start::Up::start(args.etcd_servers.as_deref()).await?) } else { None };
    let kubeconfig = match (&started_up, &args.kubeconfig) {
        (Some(up), _) => up.kubeconfig(),
        (None, Some(path)) => path.clone(),
        (None, None) => bail!("--kubeconfig or --start is required"),
    };
    let client = Client::new(&KubeConfig::load(&kubeconfig)?, args.server.as_deref())?;
    let epoch = Instant::now();
    let namespace = format!("skiff-bench-{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs());
    let mut conn = client.connect().await?;
    let ns_body = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
    timed(conn.call(Method::POST, "/api/v1/namespaces", Some(serde_json::to_vec(&ns_body)?))).await.context("creating the bench namespace")?;

    let sections = Arc::new(Sections::new());
    let mut figures = std::collections::BTreeMap::new();
    let pod_bytes = serde_json::to_vec(&pods::pod(&namespace, &pods::pod_name("pod", 0), None))?.len();
    figures.insert("pods".to_string(), args.pods as f64);
    figures.insert("pod_json_bytes".to_string(), pod_bytes as f64);

    let t = Instant::now();
    setup(&client, &namespace, args.pods, &sections).await?;
    sections.set_elapsed(&[SETUP], t.elapsed());
    if sections.errors(SETUP) > 0 {
        bail!("{} of {} setup creates failed; not measuring lists of a partial set", sections.errors(SETUP), args.pods);
    }

    let t = Instant::now();
    lists(&mut conn, &namespace, args, &sections, &mut figures).await;
    sections.set_elapsed(&[LIST_QUORUM, LIST_PAGED, LIST_PAGE, LIST_RV0], t.elapsed());

    let t = Instant::now();
    let fanout = fan_out(&client, &mut conn, &namespace, args, epoch, &sections).await?;
    sections.set_elapsed(&[WATCH_WRITE, WATCH_EVENT], t.elapsed());
    figures.insert("watchers".to_string(), f64::from(args.watchers));
    figures.insert("writers".to_string(), f64::from(args.writers));
    figures.insert("watch_events_written".to_string(), fanout.written as f64);
    figures.insert("watch_events_expected".to_string(), fanout.expected as f64);
    figures.insert("watch_events_received".to_string(), fanout.received as f64);
    figures.insert("watch_events_missed".to_string(), fanout.missed as f64);
    figures.insert("watchers_complete".to_string(), fanout.complete as f64);

    let t = Instant::now();
    load(&client, &namespace, args, clients, &sections).await?;
    sections.set_elapsed(&[LOAD_CREATE, LOAD_UPDATE], t.elapsed());
    figures.insert("clients".to_string(), f64::from(clients));

    let elapsed = sections.elapsed.lock().expect("elapsed lock poisoned").clone();
    let sections = SECTIONS
        .iter()
        .enumerate()
        .map(|(i, name)| Section { name: name.to_string(), report: sections.reports[i].lock().expect("report lock poisoned").clone(), elapsed: elapsed[i] })
        .collect();
    drop(started_up);
    Ok(RunResult { operation: "apiserver".to_string(), sections, figures })
}

/// Creates `count` pods over [`SETUP_CLIENTS`] connections.
async fn setup(client: &Client, namespace: &str, count: u64, sections: &Arc<Sections>) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..SETUP_CLIENTS.min(count as usize) {
        let (client, namespace, next, sections) = (client.clone(), namespace.to_string(), next.clone(), sections.clone());
        tasks.spawn(async move {
            let mut conn = client.connect().await?;
            let path = format!("/api/v1/namespaces/{namespace}/pods");
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(());
                }
                let body = serde_json::to_vec(&pods::pod(&namespace, &pods::pod_name("pod", i), None))?;
                let t = Instant::now();
                let outcome = timed(conn.call(Method::POST, &path, Some(body))).await.map(|_| t.elapsed());
                if outcome.is_err() {
                    conn = client.connect().await?;
                }
                sections.record(SETUP, &outcome);
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("a setup task panicked")??;
    }
    Ok(())
}

/// One list request; its page and its latency (body fully read, before parsing).
async fn list_once(conn: &mut Conn, path: &str) -> anyhow::Result<(ListPage, Duration)> {
    let t = Instant::now();
    let (_, body) = timed(conn.call(Method::GET, path, None)).await?;
    let latency = t.elapsed();
    Ok((serde_json::from_slice(&body).context("list response")?, latency))
}

/// The three list variants, `--list-runs` times each; a list of the wrong size is an error.
async fn lists(conn: &mut Conn, namespace: &str, args: &ApiserverArgs, sections: &Sections, figures: &mut std::collections::BTreeMap<String, f64>) {
    let base = format!("/api/v1/namespaces/{namespace}/pods");
    let want = args.pods as usize;
    let check = |items: usize| if items == want { Ok(()) } else { Err(anyhow::anyhow!("list returned {items} pods, want {want}")) };
    let mut pages_per_list = 0;
    for _ in 0..args.list_runs {
        let outcome = list_once(conn, &base).await.and_then(|(p, l)| check(p.items.len()).map(|_| l));
        sections.record(LIST_QUORUM, &outcome);

        let t = Instant::now();
        let mut items = 0;
        let mut token: Option<String> = None;
        let mut outcome = Ok(());
        for page_index in 0..=LIST_PAGES_MAX {
            if page_index == LIST_PAGES_MAX {
                outcome = Err(anyhow::anyhow!("list did not end after {LIST_PAGES_MAX} pages"));
                break;
            }
            let path = match &token {
                None => format!("{base}?limit={}", args.page_limit),
                Some(c) => format!("{base}?limit={}&continue={c}", args.page_limit),
            };
            match list_once(conn, &path).await {
                Ok((page, latency)) => {
                    sections.record(LIST_PAGE, &Ok(latency));
                    items += page.items.len();
                    pages_per_list = page_index + 1;
                    token = page.metadata.continue_token.filter(|c| !c.is_empty());
                    if token.is_none() {
                        break;
                    }
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        let outcome = outcome.and_then(|_| check(items)).map(|_| t.elapsed());
        sections.record(LIST_PAGED, &outcome);

        let outcome = list_once(conn, &format!("{base}?resourceVersion=0")).await.and_then(|(p, l)| check(p.items.len()).map(|_| l));
        sections.record(LIST_RV0, &outcome);
    }
    figures.insert("list_pages".to_string(), pages_per_list as f64);
}

struct FanOut {
    written: u64,
    expected: u64,
    received: u64,
    missed: u64,
    complete: u64,
}

/// One watcher's view: which sequence numbers it saw.
struct Seen {
    seen: Vec<bool>,
    unique: u64,
    received: u64,
}

/// `--watchers` watches, `--writers` writers of stamped updates; see the module doc.
async fn fan_out(client: &Client, conn: &mut Conn, namespace: &str, args: &ApiserverArgs, epoch: Instant, sections: &Arc<Sections>) -> anyhow::Result<FanOut> {
    let base = format!("/api/v1/namespaces/{namespace}/pods");
    let (page, _) = list_once(conn, &format!("{base}?limit=1")).await.context("list for the watch revision")?;
    let rv = page.metadata.resource_version;
    let total = args.watch_events;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<anyhow::Result<()>>(args.watchers as usize);
    let mut watchers = tokio::task::JoinSet::new();
    for _ in 0..args.watchers {
        let (client, path, ready_tx, mut stop_rx) = (client.clone(), format!("{base}?watch=true&resourceVersion={rv}&timeoutSeconds=3600"), ready_tx.clone(), stop_rx.clone());
        watchers.spawn(async move {
            let mut seen = Seen { seen: vec![false; total as usize], unique: 0, received: 0 };
            let mut report = Report::new();
            let started = async {
                let mut conn = client.connect().await?;
                let resp = conn.send(Method::GET, &path, None).await?;
                if !resp.status().is_success() {
                    bail!("watch answered {}", resp.status());
                }
                anyhow::Ok((conn, resp.into_body()))
            }
            .await;
            let (_conn, mut body) = match started {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(())).await;
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e)).await;
                    return (seen, report);
                }
            };
            let mut line = Vec::new();
            while seen.unique < total {
                let frame = tokio::select! {
                    f = body.frame() => f,
                    _ = stop_rx.wait_for(|s| *s) => break,
                };
                let Some(Ok(frame)) = frame else {
                    report.record_error("watch stream ended early");
                    break;
                };
                let Ok(data) = frame.into_data() else { continue };
                let now_us = epoch.elapsed().as_micros() as u64;
                for chunk in data.split_inclusive(|b| *b == b'\n') {
                    line.extend_from_slice(chunk);
                    if line.last() != Some(&b'\n') {
                        if line.len() > WATCH_LINE_BYTES_MAX {
                            report.record_error("watch event line too long");
                            return (seen, report);
                        }
                        continue;
                    }
                    if let Some((stamp_us, seq)) = pods::stamp_of(&line) {
                        if let Some(slot) = seen.seen.get_mut(seq as usize) {
                            seen.received += 1;
                            if !*slot {
                                *slot = true;
                                seen.unique += 1;
                                report.record(Duration::from_micros(now_us.saturating_sub(stamp_us)));
                            }
                        }
                    }
                    line.clear();
                }
            }
            (seen, report)
        });
    }
    drop(ready_tx);
    let deadline = tokio::time::Instant::now() + WATCH_START_TIMEOUT;
    for _ in 0..args.watchers {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => bail!("a watcher did not start: {e:#}"),
            Ok(None) | Err(_) => bail!("watchers did not start within {WATCH_START_TIMEOUT:?}"),
        }
    }

    let pacer = Arc::new(Pacer::new(&Limit { total: None, duration: None, rate: args.watch_rate }));
    let next = Arc::new(AtomicU64::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..args.writers {
        let (client, namespace, next, pacer, sections, pods) = (client.clone(), namespace.to_string(), next.clone(), pacer.clone(), sections.clone(), args.pods);
        writers.spawn(async move {
            let mut conn = client.connect().await?;
            let mut written = 0u64;
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= total {
                    return anyhow::Ok(written);
                }
                if let Some(p) = pacer.as_ref() {
                    p.wait().await;
                }
                let name = pods::pod_name("pod", seq % pods);
                let stamp_us = epoch.elapsed().as_micros() as u64;
                let body = serde_json::to_vec(&pods::pod(&namespace, &name, Some((stamp_us, seq))))?;
                let t = Instant::now();
                let outcome = timed(conn.call(Method::PUT, &format!("/api/v1/namespaces/{namespace}/pods/{name}"), Some(body))).await.map(|_| t.elapsed());
                if outcome.is_ok() {
                    written += 1;
                } else {
                    conn = client.connect().await?;
                }
                sections.record(WATCH_WRITE, &outcome);
            }
        });
    }
    let mut written = 0;
    while let Some(joined) = writers.join_next().await {
        written += joined.context("a writer panicked")??;
    }
    // Watchers end when they have seen every event; the stragglers are stopped.
    let drain = tokio::time::sleep(WATCH_DRAIN_TIMEOUT);
    tokio::pin!(drain);
    let mut fan = FanOut { written, expected: written * u64::from(args.watchers), received: 0, missed: 0, complete: 0 };
    let mut events = Report::new();
    let mut stopped = false;
    loop {
        let joined = tokio::select! {
            j = watchers.join_next() => j,
            _ = &mut drain, if !stopped => {
                stopped = true;
                let _ = stop_tx.send(true);
                continue;
            }
        };
        let Some(joined) = joined else { break };
        let (seen, report) = joined.context("a watcher panicked")?;
        events.merge(&report);
        fan.received += seen.received;
        // Only successful writes are owed to watchers; a watcher may also see a failed
        // write's event (the write landed but its answer did not), which is fine.
        let missed = written.saturating_sub(seen.unique);
        fan.missed += missed;
        if missed == 0 {
            fan.complete += 1;
        }
    }
    if fan.missed > 0 {
        events.add_errors(&format!("events missed by a watcher within {WATCH_DRAIN_TIMEOUT:?} of the last write"), fan.missed);
    }
    sections.merge(WATCH_EVENT, &events);
    Ok(fan)
}

/// Creates and updates, alternately, over `clients` connections at most `--rate` per second.
async fn load(client: &Client, namespace: &str, args: &ApiserverArgs, clients: u32, sections: &Arc<Sections>) -> anyhow::Result<()> {
    let pacer = Arc::new(Pacer::new(&Limit { total: None, duration: None, rate: args.rate }));
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, namespace, next, pacer, sections, total, pods) = (client.clone(), namespace.to_string(), next.clone(), pacer.clone(), sections.clone(), args.ops, args.pods);
        tasks.spawn(async move {
            let mut conn = client.connect().await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return anyhow::Ok(());
                }
                if let Some(p) = pacer.as_ref() {
                    p.wait().await;
                }
                let (section, method, path, name) = if i % 2 == 0 {
                    let name = pods::pod_name("load", i);
                    (LOAD_CREATE, Method::POST, format!("/api/v1/namespaces/{namespace}/pods"), name)
                } else {
                    let name = pods::pod_name("pod", i % pods);
                    (LOAD_UPDATE, Method::PUT, format!("/api/v1/namespaces/{namespace}/pods/{name}"), name)
                };
                let body = serde_json::to_vec(&pods::pod(&namespace, &name, None))?;
                let t = Instant::now();
                let outcome = timed(conn.call(method, &path, Some(body))).await.map(|_| t.elapsed());
                if outcome.is_err() {
                    conn = client.connect().await?;
                }
                sections.record(section, &outcome);
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("a load client panicked")??;
    }
    Ok(())
}
