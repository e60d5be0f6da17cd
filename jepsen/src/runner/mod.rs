//! `skiff jepsen run` and `skiff jepsen check`: run a workload against a cluster this
//! runner starts, inject faults, record the history, judge it, and save a results
//! directory; or judge a saved one again.
//!
//! # A run
//!
//! 1. [`cluster`]: `--nodes` members of `skiff store` or etcd; their peer traffic goes
//!    through the [`network`] the nemesis cuts: with `--net proxy` (the default) they
//!    listen on free loopback ports, each peer port behind a [`proxy`]; with `--net netns`
//!    each runs in its own network namespace on a bridge ([`crate::netns`]) and cuts are
//!    nftables drops. Clients talk to the members' client ports directly either way.
//! 2. The workload (`--workload`): `--concurrency` client processes, each on its own
//!    connection to one member, paced to `--rate` over all, for `--time-limit`:
//!    - register and set: [`workload`]; every invocation and completion goes through the
//!      [`recorder`] into `history.jsonl`;
//!    - append: [`append`], Elle-style transactions; `history.jsonl` is the transaction
//!      history;
//!    - watch: [`watch_workload`], writers and resuming watchers; `watch.json`;
//!    - lease-lock: [`lock_workload`], Lock-API critical sections and lease probes;
//!      `lock.json`;
//!    - kube: [`kube_workload`], optimistic writes, pinned paginated lists, watches from
//!      lists, compaction; `kube.json`.
//!
//!    The last three also record a register-shaped view of their requests in
//!    `history.jsonl`, for the counts, latencies and plot.
//! 3. [`nemesis`]: kill, pause, partition, partition-one-way, drop, delay (the
//!    [`network`]), clock (libfaketime), membership (remove, wipe, re-add), grow-shrink
//!    (3 → 5 → 3 members, learners promoted), disk, disk-state and snapshot
//!    ([`disk_fault`]: WAL, state-machine and snapshot files; snapshot streams corrupted
//!    in the proxy), power loss (lazyfs), move-leader, compact, defrag; one at a time,
//!    every kind once per round, every `--nemesis-interval`; each fault is a window in
//!    `nemesis.jsonl`.
//! 4. When time is up (or on Ctrl-C or SIGTERM) the active fault is healed, clients stop
//!    (watchers first catch up to the final revision), the set workload reads its final
//!    state, the members stop.
//! 5. [`report`]: the workload's checker (register: [`crate::linearizable`] over
//!    [`KvRegister`](crate::model::KvRegister); set: [`set_checker`]; append:
//!    [`crate::elle`]; watch: [`crate::watch`]; lease-lock: [`lock_checker`]; kube:
//!    [`kube_checker`]) and the figures go to `results.json`, `summary.txt` and [`plot`]'s
//!    `latency.svg`.
//!
//! # The results directory
//!
//! `run.json` (the validated flags), `history.jsonl`, `nemesis.jsonl`,
//! `set-final-read.json` (set only), `watch.json` / `lock.json` / `kube.json` (those
//! workloads), `results.json`, `summary.txt`, `latency.svg`, and
//! `members/<name>/member.log` (+ `data/`, removed after a valid run unless
//! `--keep-data`; with grow-shrink also the spare slots `m4`, `m5`). `skiff jepsen check
//! DIR` needs all but the last three.
//!
//! # Exit codes
//!
//! 0 valid, 1 a checker found a violation, 2 a checker could not decide, 255 the runner
//! failed (e.g. the cluster never became ready). Lock unsafety in the lease-lock workload
//! is expected without fencing: it is reported, with evidence, and does not make a run
//! invalid.
//!
//! # Limits
//!
//! Drop loses whole proxied chunks and closes their connection (a TCP stream cannot skip
//! bytes; see [`proxy`]). libfaketime skews skiff's clock but not etcd's (Go reads the clock
//! through the vDSO, not libc). Members that the runner did not start cannot be identified
//! by the proxies. If the runner itself is SIGKILLed, its members (in their own process
//! groups) are left running; with `--net netns` its namespaces stay too, until the next
//! netns run removes the namespaces of runs whose PID is gone. `--net netns` has no
//! delay (that needs `tc netem`) and cannot corrupt snapshot streams in flight.

mod append;
mod cli;
mod client;
mod cluster;
mod disk_fault;
mod kube_checker;
mod kube_workload;
mod lock_checker;
mod lock_workload;
mod nemesis;
mod network;
mod plot;
mod procnet;
mod proxy;
mod recorder;
mod report;
mod set_checker;
mod watch_workload;
mod workload;

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal as _;
use tokio::sync::watch;

pub use cli::{CheckArgs, Db, FaultKind, RunArgs, RunConfig, Target, WorkloadKind};
pub use nemesis::FaultWindow;
pub use report::{Results, Validity};
pub use set_checker::{FinalRead, SetAnalysis, SetVerdict};

use crate::history::History;
use cluster::{Admin, Cluster};
use workload::{Clients, Pacer, Workload};

pub const RUN_FILE: &str = "run.json";
pub const HISTORY_FILE: &str = "history.jsonl";
pub const NEMESIS_FILE: &str = "nemesis.jsonl";
pub const FINAL_READ_FILE: &str = "set-final-read.json";
pub const RESULTS_FILE: &str = "results.json";
pub const SUMMARY_FILE: &str = "summary.txt";
pub const PLOT_FILE: &str = "latency.svg";
pub const MEMBERS_DIR: &str = "members";

/// How long the set workload keeps trying its final read after the faults are healed
/// (restarted members may still be catching up).
const FINAL_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one attempt of the final read.
const FINAL_READ_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Cluster starts tried when a member finds its port taken (see [`start_cluster`]).
const CLUSTER_START_ATTEMPTS_MAX: usize = 3;
/// Progress bar refresh.
const PROGRESS_TICK: Duration = Duration::from_millis(200);

/// Ends the process with the verdict's exit code (255 and the error on stderr if the
/// runner failed).
pub fn exit(result: anyhow::Result<Validity>) -> ! {
    match result {
        Ok(validity) => std::process::exit(validity.exit_code()),
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::exit(255)
        }
    }
}

/// `skiff jepsen run`: starts the cluster, runs, checks, writes the results directory and
/// prints the summary.
pub fn run(args: RunArgs) -> anyhow::Result<Validity> {
    let config = args.validate()?;
    let dir = match &args.results_dir {
        Some(dir) => {
            ensure!(
                !dir.join(HISTORY_FILE).exists(),
                "{} already holds a run; pick another --results-dir",
                dir.display()
            );
            dir.clone()
        }
        None => default_results_dir(&config)?,
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write_json(&dir.join(RUN_FILE), &config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(config, dir))
}

/// `skiff jepsen check`: judges a saved run again and prints the summary.
pub fn check(args: CheckArgs) -> anyhow::Result<Validity> {
    let dir = &args.results_dir;
    let config: RunConfig = read_json(&dir.join(RUN_FILE))?;
    let history_path = dir.join(HISTORY_FILE);
    let history_in = BufReader::new(
        std::fs::File::open(&history_path)
            .with_context(|| format!("opening {}", history_path.display()))?,
    );
    let (history, data) = if config.workload == WorkloadKind::Append {
        let txns = crate::elle::TxnHistory::read_jsonl(history_in)
            .with_context(|| format!("reading {}", history_path.display()))?;
        (append::summary_history(&txns), WorkloadData::Append(txns))
    } else {
        let history = History::read_jsonl(history_in)
            .with_context(|| format!("reading {}", history_path.display()))?;
        (history, load_data(dir, config.workload)?)
    };
    let faults: Vec<FaultWindow> = read_jsonl_lines(&dir.join(NEMESIS_FILE))?;
    let final_read: Option<FinalRead> = match config.workload {
        WorkloadKind::Set if dir.join(FINAL_READ_FILE).exists() => {
            Some(read_json(&dir.join(FINAL_READ_FILE))?)
        }
        _ => None,
    };
    let notes = read_json::<Results>(&dir.join(RESULTS_FILE))
        .map(|r| r.notes)
        .unwrap_or_default();
    let results = report::analyze(
        &config,
        &history,
        &faults,
        final_read.as_ref(),
        &data,
        notes,
        args.max_configurations,
    )?;
    print!("{}", report::summary(&results));
    if args.write {
        write_outputs(dir, &config, &history, &results)?;
    }
    Ok(results.valid)
}

async fn run_async(config: RunConfig, dir: PathBuf) -> anyhow::Result<Validity> {
    let launched = Instant::now();
    eprintln!(
        "starting {} {} members in {}",
        config.nodes,
        config.db.name(),
        dir.join(MEMBERS_DIR).display()
    );
    let (cluster, urls, admin) = start_cluster(&config, &dir.join(MEMBERS_DIR)).await?;
    let cluster_ready_s = launched.elapsed().as_secs_f64();
    eprintln!(
        "cluster ready after {cluster_ready_s:.1} s; running {} for {:?}",
        config.workload.name(),
        config.time_limit()
    );

    let history_file = match config.workload {
        // The append history is a transaction history, written whole at the end.
        WorkloadKind::Append => None,
        _ => Some(dir.join(HISTORY_FILE)),
    };
    let recorder = Arc::new(recorder::Recorder::new(
        Instant::now(),
        history_file.as_deref(),
    )?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let running = start_workload(&config, &urls, &recorder, &stop_rx).await?;
    let nemesis = nemesis::Nemesis::new(
        &config,
        Arc::clone(&cluster),
        admin.clone(),
        Arc::clone(&recorder),
    );
    let fault_status = Arc::clone(&nemesis.status);
    let nemesis_task = tokio::spawn(nemesis.run(stop_rx.clone()));
    let progress = progress_bar(config.time_limit());
    let ticker = tokio::spawn(tick_progress(
        progress.clone(),
        Arc::clone(&recorder),
        fault_status,
        stop_rx.clone(),
    ));

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let interrupted = tokio::select! {
        _ = tokio::time::sleep(config.time_limit()) => false,
        _ = tokio::signal::ctrl_c() => true,
        _ = terminate.recv() => true,
    };
    stop_tx.send_replace(true);
    // Heal first: the watch workload's watchers catch up after the faults end.
    let (faults, admin) = nemesis_task.await.context("the nemesis panicked")?;
    let data = running.finish().await?;
    let _ = ticker.await;
    progress.finish_and_clear();
    if interrupted {
        eprintln!("interrupted: stopped early, faults healed");
    }

    let final_read = match config.workload {
        WorkloadKind::Set => Some(set_final_read(&urls, &recorder).await),
        _ => None,
    };
    let (history, client_errors) = recorder.finish()?;
    eprintln!(
        "clients done {:.1} s after the time limit; stopping the members",
        recorder.now_ns() as f64 / 1e9 - config.time_limit().as_secs_f64()
    );
    let leader = admin.leader().await;
    let (forced_stops, crashes, proxy) = {
        let mut cluster = cluster.lock().expect("cluster lock poisoned");
        let slots = cluster.members().len();
        let mut order: Vec<usize> = (0..slots).filter(|&i| Some(i) != leader).collect();
        order.extend(leader);
        let forced = cluster.shutdown(&order);
        (forced, cluster.crashes().to_vec(), cluster.proxy_counts())
    };

    // The history again from memory: the streamed copy may have lost a write error.
    let history_out = std::io::BufWriter::new(std::fs::File::create(dir.join(HISTORY_FILE))?);
    let history = match &data {
        WorkloadData::Append(txns) => {
            txns.write_jsonl(history_out)?;
            append::summary_history(txns)
        }
        _ => {
            history.write_jsonl(history_out)?;
            history
        }
    };
    save_data(&dir, &data)?;
    write_jsonl_lines(&dir.join(NEMESIS_FILE), &faults)?;
    if let Some(read) = &final_read {
        // One line: the element list can be long.
        let text = serde_json::to_string(read)? + "\n";
        std::fs::write(dir.join(FINAL_READ_FILE), text)?;
    }
    eprintln!("checking {} history events", history.len());
    let notes = report::RunNotes {
        client_errors,
        crashes,
        forced_stops,
        proxy,
        cluster_ready_s,
    };
    let results = report::analyze(
        &config,
        &history,
        &faults,
        final_read.as_ref(),
        &data,
        notes,
        config.max_configurations,
    )?;
    write_outputs(&dir, &config, &history, &results)?;
    print!("{}", report::summary(&results));
    println!("results: {}", dir.display());
    if results.valid == Validity::Valid && !config.keep_data {
        let members = cluster.lock().expect("cluster lock poisoned");
        for member in members.members() {
            let _ = std::fs::remove_dir_all(member.data_dir());
            // The power-loss fault's lazyfs backing store.
            let _ = std::fs::remove_dir_all(member.dir.join("data.backing"));
        }
    }
    Ok(results.valid)
}

/// Starts the members and waits for a leader. The ports are free when chosen but are
/// released before the members bind them, so another process can take one meanwhile: a
/// member that dies at startup with "address already in use" gets a fresh cluster on new
/// ports, at most [`CLUSTER_START_ATTEMPTS_MAX`] times.
async fn start_cluster(
    config: &RunConfig,
    members_dir: &Path,
) -> anyhow::Result<(Arc<Mutex<Cluster>>, Vec<String>, Admin)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let _ = std::fs::remove_dir_all(members_dir);
        let cluster = Cluster::start(config, members_dir).await?;
        let urls: Vec<String> = cluster.members()[..config.nodes]
            .iter()
            .map(|m| m.client_url())
            .collect();
        let cluster = Arc::new(Mutex::new(cluster));
        let mut admin = Admin::connect(&urls, config.slots()).await?;
        match admin.wait_ready(&cluster).await {
            Ok(()) => return Ok((cluster, urls, admin)),
            Err(e) => {
                let port_taken = {
                    let cluster = cluster.lock().expect("cluster lock poisoned");
                    (0..cluster.members().len()).any(|i| {
                        cluster
                            .log_tail(i, 20)
                            .to_lowercase()
                            .contains("address already in use")
                    })
                };
                if !port_taken || attempt >= CLUSTER_START_ATTEMPTS_MAX {
                    return Err(e);
                }
                eprintln!("a member's port was taken meanwhile; starting again on new ports");
            }
        }
    }
}

/// What a workload leaves besides the register-shaped history (saved beside it, so that
/// `check` can judge it again).
pub enum WorkloadData {
    /// Register and set: the history is everything.
    None,
    /// The transaction history (it *is* `history.jsonl` for this workload).
    Append(crate::elle::TxnHistory),
    /// `watch.json`: every watcher's responses and the ground truth.
    Watch(watch_workload::WatchRecord),
    /// `lock.json`: critical sections and lease probes.
    LeaseLock(lock_workload::LockRecord),
    /// `kube.json`: writes, lists and watches.
    Kube(kube_checker::KubeRecord),
}

/// The workload's tasks while it runs.
enum Running {
    /// Register and set: one task per client process.
    Clients(tokio::task::JoinSet<()>),
    /// The other workloads: one task that owns its clients and returns what it recorded.
    Workload(tokio::task::JoinHandle<anyhow::Result<WorkloadData>>),
}

impl Running {
    async fn finish(self) -> anyhow::Result<WorkloadData> {
        match self {
            Running::Clients(mut tasks) => {
                while let Some(joined) = tasks.join_next().await {
                    joined.context("a client loop panicked")?;
                }
                Ok(WorkloadData::None)
            }
            Running::Workload(task) => task.await.context("the workload panicked")?,
        }
    }
}

/// Connects the workload's clients (client `i` to member `i % n`) and starts them.
async fn start_workload(
    config: &RunConfig,
    urls: &[String],
    recorder: &Arc<recorder::Recorder>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Running> {
    let mut kvs = Vec::with_capacity(config.concurrency);
    for i in 0..config.concurrency {
        kvs.push(
            cluster::connect(&urls[i % urls.len()], None)
                .await?
                .kv_client(),
        );
    }
    match config.workload {
        WorkloadKind::Register | WorkloadKind::Set => {
            let clients = Arc::new(Clients {
                workload: Workload::new(config),
                recorder: Arc::clone(recorder),
                pacer: Pacer::new(config.rate),
                op_timeout: config.op_timeout(),
                concurrency: config.concurrency as u64,
                seed: config.seed,
            });
            let mut tasks = tokio::task::JoinSet::new();
            for (i, kv) in kvs.into_iter().enumerate() {
                tasks.spawn(workload::client_loop(
                    Arc::clone(&clients),
                    i,
                    kv,
                    stop.clone(),
                ));
            }
            Ok(Running::Clients(tasks))
        }
        WorkloadKind::Append => {
            let generator = Arc::new(append::AppendGenerator::new(
                config.keys as u64,
                config.ops_per_key,
            ));
            let txns = Arc::new(append::TxnRecorder::new(Arc::clone(recorder)));
            let pacer = Arc::new(Pacer::new(config.rate));
            let mut tasks = tokio::task::JoinSet::new();
            for (i, kv) in kvs.into_iter().enumerate() {
                tasks.spawn(append::client_loop(
                    Arc::clone(&generator),
                    Arc::clone(&txns),
                    Arc::clone(&pacer),
                    config.clone(),
                    i,
                    kv,
                    stop.clone(),
                ));
            }
            Ok(Running::Workload(tokio::spawn(async move {
                while let Some(joined) = tasks.join_next().await {
                    joined.context("an append client panicked")?;
                }
                Ok(WorkloadData::Append(txns.finish()))
            })))
        }
        WorkloadKind::Watch => {
            let task = watch_workload::run(
                config.clone(),
                urls.to_vec(),
                Arc::clone(recorder),
                stop.clone(),
            );
            Ok(Running::Workload(tokio::spawn(async move {
                Ok(WorkloadData::Watch(task.await?))
            })))
        }
        WorkloadKind::LeaseLock => {
            let task = lock_workload::run(
                config.clone(),
                urls.to_vec(),
                Arc::clone(recorder),
                stop.clone(),
            );
            Ok(Running::Workload(tokio::spawn(async move {
                Ok(WorkloadData::LeaseLock(task.await?))
            })))
        }
        WorkloadKind::Kube => {
            let task = kube_workload::run(
                config.clone(),
                urls.to_vec(),
                Arc::clone(recorder),
                stop.clone(),
            );
            Ok(Running::Workload(tokio::spawn(async move {
                Ok(WorkloadData::Kube(task.await?))
            })))
        }
    }
}

/// Saves what the workload recorded besides the history.
fn save_data(dir: &Path, data: &WorkloadData) -> anyhow::Result<()> {
    match data {
        WorkloadData::None | WorkloadData::Append(_) => Ok(()),
        WorkloadData::Watch(record) => write_json(&dir.join(watch_workload::WATCH_FILE), record),
        WorkloadData::LeaseLock(record) => write_json(&dir.join(lock_workload::LOCK_FILE), record),
        WorkloadData::Kube(record) => write_json(&dir.join(kube_workload::KUBE_FILE), record),
    }
}

/// Loads what [`save_data`] saved (append's history is loaded by `check` itself).
fn load_data(dir: &Path, workload: WorkloadKind) -> anyhow::Result<WorkloadData> {
    Ok(match workload {
        WorkloadKind::Register | WorkloadKind::Set | WorkloadKind::Append => WorkloadData::None,
        WorkloadKind::Watch => {
            WorkloadData::Watch(read_json(&dir.join(watch_workload::WATCH_FILE))?)
        }
        WorkloadKind::LeaseLock => {
            WorkloadData::LeaseLock(read_json(&dir.join(lock_workload::LOCK_FILE))?)
        }
        WorkloadKind::Kube => WorkloadData::Kube(read_json(&dir.join(kube_workload::KUBE_FILE))?),
    })
}

/// The set workload's final read: linearizable, from any member that answers, retried
/// until [`FINAL_READ_TIMEOUT`].
async fn set_final_read(urls: &[String], recorder: &recorder::Recorder) -> FinalRead {
    let deadline = Instant::now() + FINAL_READ_TIMEOUT;
    let mut last_error = String::from("no attempt");
    let mut attempt = 0usize;
    while Instant::now() < deadline {
        let url = &urls[attempt % urls.len()];
        attempt += 1;
        let read = async {
            let mut kv = cluster::connect(url, None).await?.kv_client();
            Ok::<_, anyhow::Error>(workload::read_set(&mut kv).await?)
        };
        match tokio::time::timeout(FINAL_READ_ATTEMPT_TIMEOUT, read).await {
            Ok(Ok(elements)) => {
                return FinalRead {
                    time_ns: recorder.now_ns(),
                    elements: Some(elements),
                    detail: format!("read from {url} (attempt {attempt})"),
                }
            }
            Ok(Err(e)) => last_error = format!("{url}: {e:#}"),
            Err(_) => last_error = format!("{url}: timed out"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    FinalRead {
        time_ns: recorder.now_ns(),
        elements: None,
        detail: format!("no final read within {FINAL_READ_TIMEOUT:?}; last error: {last_error}"),
    }
}

fn write_outputs(
    dir: &Path,
    config: &RunConfig,
    history: &History,
    results: &Results,
) -> anyhow::Result<()> {
    write_json(&dir.join(RESULTS_FILE), results)?;
    std::fs::write(dir.join(SUMMARY_FILE), report::summary(results))?;
    let title = format!(
        "{} on {}, {} members, seed {}: latency of each operation",
        config.workload.name(),
        config.db.name(),
        config.nodes,
        config.seed
    );
    let svg = plot::latency_svg(history, &results.faults, config.workload, &title);
    std::fs::write(dir.join(PLOT_FILE), svg)?;
    Ok(())
}

/// `results/<UTC timestamp>-<db>-<workload>`, with a suffix if that exists already.
fn default_results_dir(config: &RunConfig) -> anyhow::Result<PathBuf> {
    let stamp: String = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let base = format!("{stamp}-{}-{}", config.db.name(), config.workload.name());
    for n in 0..100 {
        let name = if n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let dir = Path::new("results").join(name);
        if !dir.exists() {
            return Ok(dir);
        }
    }
    anyhow::bail!("results/{base}-* all exist; pass --results-dir")
}

fn progress_bar(time_limit: Duration) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(
        Some(time_limit.as_millis() as u64),
        ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {elapsed:>4}/{len_s} {msg}")
            .expect("constant template is valid")
            .with_key(
                "len_s",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{}s", state.len().unwrap_or(0) / 1000);
                },
            ),
    );
    bar
}

async fn tick_progress(
    bar: ProgressBar,
    recorder: Arc<recorder::Recorder>,
    fault: Arc<Mutex<String>>,
    mut stop: watch::Receiver<bool>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let started = Instant::now();
    loop {
        let c = &recorder.counters;
        let fault = fault.lock().expect("status lock poisoned").clone();
        bar.set_position(started.elapsed().as_millis() as u64);
        bar.set_message(format!(
            "ok {} fail {} info {}{}",
            c.ok.load(Relaxed),
            c.fail.load(Relaxed),
            c.info.load(Relaxed),
            if fault.is_empty() {
                String::new()
            } else {
                format!(" | {fault}")
            }
        ));
        tokio::select! {
            _ = tokio::time::sleep(PROGRESS_TICK) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn write_jsonl_lines<T: serde::Serialize>(path: &Path, values: &[T]) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    for v in values {
        serde_json::to_writer(&mut out, v)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Every line of a JSONL file; a missing file is empty.
fn read_jsonl_lines<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    let Ok(file) = std::fs::File::open(path) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .with_context(|| format!("{} line {}", path.display(), n + 1))?,
        );
    }
    Ok(out)
}
