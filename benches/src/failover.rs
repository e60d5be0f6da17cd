//! `skiff bench failover`: quorum failures under steady put load, for skiff and etcd with
//! the same `--heartbeat-interval` and `--election-timeout`.
//!
//! For each store and cluster size, one cluster is started and `--clients` put loops run
//! for the whole run, loop `i` on its own connection to member `i % n` (`--conns` is not
//! used here), as fast as they can or, with `--rate`, at that many puts per second over all
//! loops (the same offered load on both stores, so that what a fault costs, and how fast a
//! returning member catches up while competing with the load for CPU, compare at equal
//! work). Each round of each mode: `--steady` of load,
//! the fault, `--fault` of load with the fault in place, the repair (restart or SIGCONT),
//! `--after` of load, then a wait until every member agrees on a leader. Modes:
//! - `kill-leader`: kill -9 the leader; restart it after `--fault`;
//! - `kill-follower`: kill -9 one follower; restart it;
//! - `pause-leader`: SIGSTOP the leader; SIGCONT it;
//! - `kill-minority`: kill -9 the leader and more members up to a minority ((n-1)/2 in all);
//!   restart them;
//! - `isolate-leader` (needs `--net netns`): cut the leader off the network with nftables;
//!   heal after `--fault`. See below.
//!
//! Per round: the unavailability window (longest gap between successful puts from the fault
//! to the end of the round, over all load loops) and the slowest request, the time until
//! the members still up (for `isolate-leader`: the majority side) name a new leader
//! (polled every [`LEADER_POLL_INTERVAL`]; none if they do not within `--fault`),
//! throughput before, during and after, and the catch-up time of the returning member(s):
//! from the repair until its revision reaches the leader's revision at the repair (none if
//! no leader answers at the repair). A returning member is asked only once its client port
//! takes connections, and on a fresh connection: a request on the old channel to a port
//! not yet listening waits out the status timeout, the bench's delay rather than the
//! member's. Figures are distributions over `--rounds` rounds, of
//! the rounds that have the figure.
//!
//! `--net loopback` (the default) runs every member on 127.0.0.1 in the bench's own network
//! namespace. `--net netns` (root, `ip` and `nft`) runs each member of a cluster in a
//! network namespace of its own on a bridge ([`skiff_jepsen::netns::NetLab`]; created per
//! cluster, removed when it stops; labs of dead bench or jepsen runs are swept first);
//! members listen on their namespace's address and the load and status polls connect from
//! the root namespace over the bridge. Kill, pause and restart work the same there (a
//! restart re-enters the namespace).
//!
//! `isolate-leader` uses `NetLab::isolate`: inside the leader's namespace nftables drops
//! every packet from the other members *and from the bench*, and inside every other
//! member's namespace every packet from the leader. So the cut is a real partition: the
//! load loops pinned to the old leader lose it too (their puts time out after
//! [`PUT_TIMEOUT`]), exactly as clients on the wrong side of a partition would. The
//! unavailability window is still the longest gap of successful puts across *all* loops,
//! so it measures how long the majority side took to elect a leader and serve again. New
//! leader time is polled on the majority side only; the target revision of the catch-up
//! is the majority leader's revision at the heal, and the isolated member's status is then
//! asked on a fresh connection (the old one may sit in TCP retransmission backoff after
//! the cut, which is the bench's delay, not the store's). skiff's raft always runs with
//! pre-vote; etcd 3.4's `--pre-vote` is off by default, so the bench starts etcd with
//! `--pre-vote=true` to match. Without pre-vote the majority side's election can drag (a lagging member that campaigns
//! first is refused for its shorter log, and its higher term restarts the others' election
//! timers), and the returning member's higher term may force an election after the heal;
//! the window runs to the end of `--after` and shows both.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::cli::BenchArgs;
use crate::cluster::{Cluster, ClusterArgs, ClusterSetup, ClusterSpec, Db, NetMode};
use crate::results::{self, JsonStyle};
use crate::svg;
use crate::workload::binary_key;

/// A put that takes longer is counted as failed and the loop goes on (a paused member
/// holds its connections open).
const PUT_TIMEOUT: Duration = Duration::from_secs(2);
/// Poll interval of leader and catch-up detection.
const LEADER_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Bound on waiting for a new leader or for a member to catch up.
const DETECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on the samples kept for one round (completions of puts), so that a very fast
/// store cannot grow memory without end; past it samples are dropped and counted.
const SAMPLES_PER_ROUND_MAX: usize = 4_000_000;
/// Keys the load writes (random among them).
const KEY_SPACE: u64 = 10_000;
const VALUE_BYTES: usize = 256;

#[derive(Args, Clone, Debug)]
pub struct FailoverArgs {
    /// Stores to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "skiff,etcd")]
    pub dbs: Vec<Db>,
    /// Cluster sizes.
    #[arg(long, value_delimiter = ',', default_value = "3,5")]
    pub members: Vec<usize>,
    /// Failure modes, in order (`isolate-leader` too, which needs `--net netns`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "kill-leader,kill-follower,pause-leader,kill-minority"
    )]
    pub modes: Vec<FailureMode>,
    /// Rounds of each mode.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rounds: u32,
    /// Load before each fault.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub steady: Duration,
    /// Puts per second offered over all load loops (0: each loop puts as fast as it can).
    /// With a rate both stores carry the same load, so what a fault costs (and how fast a
    /// returning member catches up, competing with the load for CPU) compares at equal work.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// How long the fault stays before the repair.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub fault: Duration,
    /// Load after the repair.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub after: Duration,
    /// Where members run: `loopback` (127.0.0.1), or `netns` (a network namespace each,
    /// on a bridge; root, `ip` and `nft`). `isolate-leader` needs `netns`.
    #[arg(long, value_enum, default_value_t = NetMode::Loopback)]
    pub net: NetMode,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Results dir (created): failover.json, failover.md, failover-unavailability.svg.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// Markdown file whose failover tables are replaced (between the failover markers).
    #[arg(long)]
    pub update_doc: Option<PathBuf>,
    /// Do not run anything: render failover.md and the plot again from `--out`'s failover.json.
    #[arg(long)]
    pub render_only: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FailureMode {
    KillLeader,
    KillFollower,
    PauseLeader,
    KillMinority,
    /// nftables drops between the leader and everyone else (needs `--net netns`).
    IsolateLeader,
}

impl FailureMode {
    fn name(self) -> &'static str {
        match self {
            FailureMode::KillLeader => "kill-leader",
            FailureMode::KillFollower => "kill-follower",
            FailureMode::PauseLeader => "pause-leader",
            FailureMode::KillMinority => "kill-minority",
            FailureMode::IsolateLeader => "isolate-leader",
        }
    }

    /// Whether the mode cuts the network (and so needs `--net netns`).
    fn needs_netns(self) -> bool {
        matches!(self, FailureMode::IsolateLeader)
    }
}

/// What the table's notes say about `isolate-leader`, when a result has it.
const ISOLATE_LEADER_NOTE: &str = "isolate-leader: nftables (`--net netns`) drops all traffic \
between the leader and the other members and between the leader and the bench, so the load \
loops pinned to the old leader lose it too, as clients behind a real partition would; \
unavailable is the longest gap of successful puts over all loops, new leader is polled on \
the majority side, catch-up runs from the heal.";

impl FailoverArgs {
    /// Rejects flag combinations that cannot run (pure: no look at the machine).
    fn check(&self) -> anyhow::Result<()> {
        if let Some(mode) = self.modes.iter().find(|m| m.needs_netns()) {
            anyhow::ensure!(
                self.net == NetMode::Netns,
                "--modes {} cuts the network with nftables and needs --net netns \
                 (members in network namespaces); --net {} cannot isolate a member",
                mode.name(),
                self.net.name()
            );
        }
        Ok(())
    }
}

/// One round's figures (milliseconds and requests per second).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Round {
    pub unavailable_ms: f64,
    pub max_latency_ms: f64,
    /// `None` when the leader was not touched (or no new leader appeared in time).
    pub new_leader_ms: Option<f64>,
    pub before_rps: f64,
    pub during_rps: f64,
    pub after_rps: f64,
    pub errors: u64,
    pub catch_up_ms: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModeResult {
    pub db: String,
    pub members: usize,
    pub mode: String,
    pub rounds: Vec<Round>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FailoverResults {
    pub machine: BTreeMap<String, String>,
    pub settings: BTreeMap<String, String>,
    pub results: Vec<ModeResult>,
}

pub const DOC_BEGIN: &str = "<!-- failover:begin -->";
pub const DOC_END: &str = "<!-- failover:end -->";

pub fn run(global: &BenchArgs, args: &FailoverArgs) -> anyhow::Result<()> {
    args.check()?;
    if args.net == NetMode::Netns && !args.render_only {
        skiff_jepsen::netns::available().map_err(|why| anyhow::anyhow!("--net netns: {why}"))?;
    }
    let results: FailoverResults = results::load_or_measure(
        &args.out,
        "failover.json",
        args.render_only,
        JsonStyle::Pretty,
        || measure(global, args),
    )?;
    let markdown = render_markdown(&results);
    std::fs::write(args.out.join("failover.md"), &markdown)?;
    std::fs::write(
        args.out.join("failover-unavailability.svg"),
        render_plot(&results),
    )?;
    if let Some(doc) = &args.update_doc {
        results::update_doc(doc, DOC_BEGIN, DOC_END, &markdown)?;
    }
    print!("{markdown}");
    Ok(())
}

fn measure(global: &BenchArgs, args: &FailoverArgs) -> anyhow::Result<FailoverResults> {
    let setup = ClusterSetup::new("skiff-bench-failover-", &args.cluster)?;
    if args.net == NetMode::Netns {
        let swept = skiff_jepsen::netns::sweep_stale_runs();
        if !swept.is_empty() {
            eprintln!(
                "removed network namespaces of dead runs: {}",
                swept.join(", ")
            );
        }
    }
    let mut results = Vec::new();
    for &members in &args.members {
        for &db in &args.dbs {
            let mut spec = setup.spec(db, members);
            spec.net = args.net;
            let mut modes = setup.runtime.block_on(run_cluster(global, args, spec))?;
            results.append(&mut modes);
        }
    }
    let settings = results::settings([
        ("clients", global.clients.to_string()),
        ("client_pinning", "loop i on member i % n".to_string()),
        ("rounds", args.rounds.to_string()),
        (
            "offered_rate",
            if args.rate == 0 {
                "closed loop".to_string()
            } else {
                format!("{} puts/s", args.rate)
            },
        ),
        (
            "steady",
            humantime::format_duration(args.steady).to_string(),
        ),
        ("fault", humantime::format_duration(args.fault).to_string()),
        // skiff always runs pre-vote; etcd gets `--pre-vote=true` to match.
        ("pre_vote", "on (both)".to_string()),
        ("after", humantime::format_duration(args.after).to_string()),
        ("net", args.net.name().to_string()),
        (
            "heartbeat_interval_ms",
            args.cluster.heartbeat_interval.to_string(),
        ),
        (
            "election_timeout_ms",
            args.cluster.election_timeout.to_string(),
        ),
        (
            "put_timeout",
            humantime::format_duration(PUT_TIMEOUT).to_string(),
        ),
    ]);
    Ok(FailoverResults {
        machine: crate::compare::machine_facts(&args.cluster.data_root),
        settings,
        results,
    })
}

/// One completed put.
#[derive(Clone, Copy)]
struct Sample {
    done: Instant,
    latency: Duration,
    ok: bool,
}

struct Load {
    samples: Mutex<Vec<Sample>>,
    stop: AtomicBool,
}

async fn put_loop(
    load: Arc<Load>,
    client: etcd_client::Client,
    id: u64,
    pacer: Option<Arc<crate::load::Pacer>>,
) {
    use rand::{Rng as _, SeedableRng as _};
    let mut rng = rand::rngs::StdRng::seed_from_u64(id);
    let mut kv = client.kv_client();
    let value = vec![b'v'; VALUE_BYTES];
    while !load.stop.load(Ordering::Relaxed) {
        if let Some(pacer) = &pacer {
            pacer.wait().await;
        }
        let key = binary_key(rng.random_range(0..KEY_SPACE), 8);
        let started = Instant::now();
        let result = tokio::time::timeout(PUT_TIMEOUT, kv.put(key, value.clone(), None)).await;
        let ok = matches!(result, Ok(Ok(_)));
        let sample = Sample {
            done: Instant::now(),
            latency: started.elapsed(),
            ok,
        };
        {
            let mut samples = load.samples.lock().expect("samples lock poisoned");
            if samples.len() < SAMPLES_PER_ROUND_MAX {
                samples.push(sample);
            }
        }
        if !ok {
            // A refused connection fails at once; do not spin on it.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn run_cluster(
    global: &BenchArgs,
    args: &FailoverArgs,
    spec: ClusterSpec,
) -> anyhow::Result<Vec<ModeResult>> {
    let (db, members) = (spec.db, spec.members);
    eprintln!("failover: {} with {members} members", db.name());
    let mut cluster = Cluster::start(spec).await?;
    if let Some(tag) = cluster.lab_tag() {
        eprintln!(
            "failover: members in network namespaces skiff-{tag}-0..{} (lab {tag})",
            members - 1
        );
    }
    // Each load loop is pinned to one member (loop i to member i % n), as clients of a
    // real cluster mostly are: a balanced channel over every endpoint keeps sending to a
    // paused member and would measure the client's balancer instead of the store.
    let mut conns = Vec::new();
    for url in cluster.client_urls() {
        conns.extend(crate::load::connect_all(&[url], 1).await?);
    }
    let load = Arc::new(Load {
        samples: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
    });
    let pacer = crate::load::Pacer::new(&crate::cli::Limit {
        total: None,
        duration: None,
        rate: args.rate,
    })
    .map(Arc::new);
    let mut loops = tokio::task::JoinSet::new();
    for id in 0..global.clients as usize {
        loops.spawn(put_loop(
            Arc::clone(&load),
            conns[id % conns.len()].clone(),
            id as u64,
            pacer.clone(),
        ));
    }
    let mut out = Vec::new();
    for &mode in &args.modes {
        let mut rounds = Vec::new();
        for round in 0..args.rounds {
            let r = one_round(&mut cluster, &load, args, mode).await?;
            eprintln!(
                "  {} {:<14} round {}: unavailable {:>7.1} ms, new leader {:>7} ms, catch-up {:>7} ms, during {:>7.0} req/s",
                db.name(),
                mode.name(),
                round + 1,
                r.unavailable_ms,
                r.new_leader_ms.map_or("-".to_string(), |v| format!("{v:.1}")),
                r.catch_up_ms.map_or("-".to_string(), |v| format!("{v:.1}")),
                r.during_rps
            );
            rounds.push(r);
        }
        out.push(ModeResult {
            db: db.name().to_string(),
            members,
            mode: mode.name().to_string(),
            rounds,
        });
    }
    load.stop.store(true, Ordering::Relaxed);
    while loops.join_next().await.is_some() {}
    cluster.stop();
    Ok(out)
}

async fn one_round(
    cluster: &mut Cluster,
    load: &Load,
    args: &FailoverArgs,
    mode: FailureMode,
) -> anyhow::Result<Round> {
    cluster.wait_ready().await?;
    load.samples.lock().expect("samples lock poisoned").clear();
    tokio::time::sleep(args.steady).await;
    let n = cluster.members.len();
    let leader = cluster
        .leader()
        .await
        .context("no leader before the fault")?;
    let old_leader_id = cluster.ids[leader];
    let victims: Vec<usize> = match mode {
        FailureMode::KillLeader | FailureMode::PauseLeader | FailureMode::IsolateLeader => {
            vec![leader]
        }
        FailureMode::KillFollower => vec![(leader + 1) % n],
        FailureMode::KillMinority => (0..(n - 1) / 2).map(|k| (leader + k) % n).collect(),
    };
    let survivors: Vec<usize> = (0..n).filter(|i| !victims.contains(i)).collect();
    let injected = Instant::now();
    for &v in &victims {
        match mode {
            FailureMode::PauseLeader => cluster.pause(v)?,
            FailureMode::IsolateLeader => cluster.isolate(v)?,
            FailureMode::KillLeader | FailureMode::KillFollower | FailureMode::KillMinority => {
                cluster.kill(v)?
            }
        }
    }
    let leader_touched = victims.contains(&leader);
    let mut new_leader_ms = None;
    if leader_touched {
        let deadline = injected + DETECT_TIMEOUT;
        while Instant::now() < deadline && Instant::now() < injected + args.fault {
            let statuses = cluster.statuses_of(&survivors).await;
            let newest = statuses
                .iter()
                .flatten()
                .filter(|s| s.leader != 0)
                .max_by_key(|s| s.raft_term);
            if newest.is_some_and(|s| s.leader != old_leader_id) {
                new_leader_ms = Some(injected.elapsed().as_secs_f64() * 1e3);
                break;
            }
            tokio::time::sleep(LEADER_POLL_INTERVAL).await;
        }
    }
    let fault_end = injected + args.fault;
    tokio::time::sleep_until(fault_end.into()).await;
    // The target of catch-up: the leader's revision at the repair. The isolated member
    // cannot answer, so it is not asked (that would hold the heal up by STATUS_TIMEOUT).
    // Asked of the survivors only: a paused or cut-off member would hold the repair back
    // by a status timeout.
    let current_leader = cluster.leader_among(&survivors).await;
    // No leader (or no answer from it) at the repair: nothing to catch up to, so no
    // catch-up figure rather than the time to a first status answer.
    let target_revision = match current_leader {
        Some(l) => cluster.statuses_of(&[l]).await[0].map(|s| s.revision),
        None => None,
    };
    let repaired = Instant::now();
    match mode {
        FailureMode::IsolateLeader => {
            cluster.heal()?;
            for &v in &victims {
                cluster.reconnect_status(v).await?;
            }
        }
        FailureMode::PauseLeader => {
            for &v in &victims {
                cluster.resume(v)?;
            }
        }
        FailureMode::KillLeader | FailureMode::KillFollower | FailureMode::KillMinority => {
            for &v in &victims {
                cluster.spawn(v)?;
            }
        }
    }
    let mut catch_up_ms = None;
    let deadline = repaired + DETECT_TIMEOUT;
    if let Some(target_revision) = target_revision {
        // A returning member is asked for its status only once its client port takes
        // connections, and then on a fresh connection: the old one saw it die (or the
        // cut), and a request on a channel to a port not yet listening waits out the
        // status timeout, which would count the bench's own delay as catch-up time.
        let mut connected = vec![false; victims.len()];
        while Instant::now() < deadline {
            for (k, &v) in victims.iter().enumerate() {
                if !connected[k] && cluster.client_port_open(v).await {
                    connected[k] = cluster.reconnect_status(v).await.is_ok();
                }
            }
            if connected.iter().all(|c| *c) {
                let statuses = cluster.statuses_of(&victims).await;
                if statuses
                    .iter()
                    .all(|s| s.is_some_and(|s| s.revision >= target_revision))
                {
                    catch_up_ms = Some(repaired.elapsed().as_secs_f64() * 1e3);
                    break;
                }
            }
            tokio::time::sleep(LEADER_POLL_INTERVAL).await;
        }
    }
    let end = repaired + args.after;
    tokio::time::sleep_until(end.into()).await;
    cluster.check_alive()?;
    let samples = std::mem::take(&mut *load.samples.lock().expect("samples lock poisoned"));
    let mut round = figures(&samples, injected, repaired, end, args.steady);
    round.new_leader_ms = new_leader_ms;
    round.catch_up_ms = catch_up_ms;
    Ok(round)
}

/// The load figures of one round from its samples.
fn figures(
    samples: &[Sample],
    injected: Instant,
    repaired: Instant,
    end: Instant,
    steady: Duration,
) -> Round {
    let mut ok_times: Vec<Instant> = samples
        .iter()
        .filter(|s| s.ok && s.done >= injected && s.done <= end)
        .map(|s| s.done)
        .collect();
    ok_times.sort();
    let mut unavailable = Duration::ZERO;
    let mut previous = injected;
    for &t in ok_times.iter().chain(std::iter::once(&end)) {
        unavailable = unavailable.max(t.saturating_duration_since(previous));
        previous = t;
    }
    let max_latency = samples
        .iter()
        .filter(|s| s.done >= injected && s.done <= end)
        .map(|s| s.latency)
        .max()
        .unwrap_or_default();
    let rate = |from: Instant, to: Instant| {
        let n = samples
            .iter()
            .filter(|s| s.ok && s.done >= from && s.done < to)
            .count();
        let secs = to.saturating_duration_since(from).as_secs_f64();
        if secs > 0.0 {
            n as f64 / secs
        } else {
            0.0
        }
    };
    Round {
        unavailable_ms: unavailable.as_secs_f64() * 1e3,
        max_latency_ms: max_latency.as_secs_f64() * 1e3,
        new_leader_ms: None,
        before_rps: rate(injected.checked_sub(steady).unwrap_or(injected), injected),
        during_rps: rate(injected, repaired),
        after_rps: rate(repaired, end),
        errors: samples
            .iter()
            .filter(|s| !s.ok && s.done >= injected && s.done <= end)
            .count() as u64,
        catch_up_ms: None,
    }
}

/// `median [min–max]` of the values, or `-` when there are none.
fn distribution(values: impl Iterator<Item = f64>) -> String {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return "-".to_string();
    }
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    format!("{median:.0} [{:.0}–{:.0}]", v[0], v[v.len() - 1])
}

pub fn render_markdown(results: &FailoverResults) -> String {
    use std::fmt::Write as _;
    let mut out = results::settings_line(&results.settings);
    let _ = writeln!(
        out,
        "Each cell: median [min–max] over the rounds; times in ms, throughput in puts/s.\n"
    );
    if results
        .results
        .iter()
        .any(|r| r.mode == FailureMode::IsolateLeader.name())
    {
        let _ = writeln!(out, "{ISOLATE_LEADER_NOTE}\n");
    }
    let _ = writeln!(
        out,
        "| members | mode | store | unavailable | slowest put | new leader | catch-up | before | during | after | failed puts |"
    );
    let _ = writeln!(
        out,
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut rows: Vec<&ModeResult> = results.results.iter().collect();
    rows.sort_by(|a, b| (a.members, &a.mode, &a.db).cmp(&(b.members, &b.mode, &b.db)));
    for r in rows {
        let d = |f: &dyn Fn(&Round) -> Option<f64>| distribution(r.rounds.iter().filter_map(f));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.members,
            r.mode,
            r.db,
            d(&|x| Some(x.unavailable_ms)),
            d(&|x| Some(x.max_latency_ms)),
            d(&|x| x.new_leader_ms),
            d(&|x| x.catch_up_ms),
            d(&|x| Some(x.before_rps)),
            d(&|x| Some(x.during_rps)),
            d(&|x| Some(x.after_rps)),
            d(&|x| Some(x.errors as f64)),
        );
    }
    out
}

/// Median unavailability per mode, one series per store and cluster size.
pub fn render_plot(results: &FailoverResults) -> String {
    let mut modes: Vec<String> = Vec::new();
    let mut series: Vec<(String, Vec<f64>)> = Vec::new();
    for r in &results.results {
        if !modes.contains(&r.mode) {
            modes.push(r.mode.clone());
        }
    }
    for r in &results.results {
        let name = format!("{}, {} members", r.db, r.members);
        if !series.iter().any(|(n, _)| n == &name) {
            series.push((name.clone(), vec![f64::NAN; modes.len()]));
        }
        let mut v: Vec<f64> = r.rounds.iter().map(|x| x.unavailable_ms).collect();
        v.sort_by(f64::total_cmp);
        let median = v.get(v.len() / 2).copied().unwrap_or(f64::NAN);
        let slot = series
            .iter_mut()
            .find(|(n, _)| n == &name)
            .expect("inserted above");
        let m = modes
            .iter()
            .position(|m| m == &r.mode)
            .expect("collected above");
        slot.1[m] = median;
    }
    svg::bar_chart(
        "unavailability window (median, ms; lower is better)",
        "ms",
        &modes,
        &series,
        None,
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        failover: FailoverArgs,
    }

    fn parse(args: &[&str]) -> FailoverArgs {
        Cli::try_parse_from(std::iter::once("failover").chain(args.iter().copied()))
            .unwrap()
            .failover
    }

    #[test]
    fn defaults_run_on_loopback_without_isolate_leader() {
        let args = parse(&[]);
        assert_eq!(args.net, NetMode::Loopback);
        assert_eq!(
            args.modes,
            [
                FailureMode::KillLeader,
                FailureMode::KillFollower,
                FailureMode::PauseLeader,
                FailureMode::KillMinority
            ]
        );
        args.check().unwrap();
    }

    #[test]
    fn isolate_leader_on_loopback_is_refused_naming_net_netns() {
        for modes in ["isolate-leader", "kill-leader,isolate-leader"] {
            let err = parse(&["--modes", modes]).check().unwrap_err().to_string();
            assert!(
                err.contains("--net netns") && err.contains("isolate-leader"),
                "{err}"
            );
            let err = parse(&["--modes", modes, "--net", "loopback"])
                .check()
                .unwrap_err();
            assert!(err.to_string().contains("--net netns"), "{err}");
        }
    }

    #[test]
    fn isolate_leader_on_netns_passes_the_flag_check() {
        let args = parse(&["--net", "netns", "--modes", "pause-leader,isolate-leader"]);
        assert_eq!(args.net, NetMode::Netns);
        assert_eq!(args.modes[1], FailureMode::IsolateLeader);
        args.check().unwrap();
        // Every other mode runs on either network.
        parse(&["--net", "netns"]).check().unwrap();
    }

    #[test]
    fn the_isolate_leader_note_appears_only_with_its_results() {
        let result = |mode: FailureMode| ModeResult {
            db: "skiff".into(),
            members: 3,
            mode: mode.name().into(),
            rounds: vec![Round::default()],
        };
        let with = |modes: &[FailureMode]| FailoverResults {
            machine: BTreeMap::new(),
            settings: BTreeMap::new(),
            results: modes.iter().map(|&m| result(m)).collect(),
        };
        let plain = render_markdown(&with(&[FailureMode::KillLeader]));
        assert!(!plain.contains(ISOLATE_LEADER_NOTE), "{plain}");
        let cut = render_markdown(&with(&[
            FailureMode::KillLeader,
            FailureMode::IsolateLeader,
        ]));
        assert!(cut.contains(ISOLATE_LEADER_NOTE), "{cut}");
        assert!(cut.contains("| 3 | isolate-leader | skiff |"), "{cut}");
    }

    #[test]
    fn figures_find_the_longest_gap_and_the_rates() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let ok = |ms: u64| Sample {
            done: at(ms),
            latency: Duration::from_millis(1),
            ok: true,
        };
        let mut samples: Vec<Sample> = (0..10).map(|i| ok(i * 100)).collect(); // before
        samples.push(ok(1_100));
        samples.push(Sample {
            done: at(1_900),
            latency: Duration::from_millis(700),
            ok: false,
        });
        samples.push(ok(2_000)); // gap 1100..2000 = 900 ms
        samples.push(ok(2_500));
        let r = figures(
            &samples,
            at(1_000),
            at(2_000),
            at(3_000),
            Duration::from_secs(1),
        );
        assert_eq!(r.unavailable_ms.round(), 900.0);
        assert_eq!(r.max_latency_ms.round(), 700.0);
        assert_eq!(r.errors, 1);
        assert_eq!(r.before_rps.round(), 10.0);
        assert_eq!(r.during_rps.round(), 1.0);
        assert_eq!(r.after_rps.round(), 2.0);
    }

    #[test]
    fn no_success_after_the_fault_is_unavailable_to_the_end() {
        let t0 = Instant::now();
        let r = figures(
            &[],
            t0,
            t0 + Duration::from_secs(1),
            t0 + Duration::from_secs(2),
            Duration::from_secs(1),
        );
        assert_eq!(r.unavailable_ms.round(), 2_000.0);
    }

    #[test]
    fn distributions_are_median_min_max() {
        assert_eq!(distribution([3.0, 1.0, 2.0].into_iter()), "2 [1–3]");
        assert_eq!(distribution([1.0, 3.0].into_iter()), "2 [1–3]");
        assert_eq!(distribution(std::iter::empty()), "-");
    }
}
