//! `skiff bench compare`: etcd and skiff side by side on this machine, with this client.
//!
//! For each `--members` count, an etcd cluster and then a skiff cluster are started with
//! the same flags (127.0.0.1, data dirs under one temp dir, fsync on as both always do, the
//! same heartbeat and election timeout), the same workloads run against each with the
//! global `--conns/--clients`, and then the members stop. Peak RSS (`VmHWM`) and the data
//! dirs' bytes are read before the stop. `put-fixed-rate` compares tail latencies, which on
//! a shared disk depend on the disk's own stalls at that moment; so it runs in a phase of
//! its own with both clusters up, in `--fixed-rate-rounds` rounds alternating the stores,
//! and each round counts the members' WAL fsyncs over 8 ms (both stores export etcd's
//! `etcd_disk_wal_fsync_duration_seconds`). The results dir gets `compare.json` (every
//! summary), `compare.md` (the ratio tables) and SVG plots; `--update-doc` rewrites the
//! tables of a markdown file between `<!-- compare:begin -->` and `<!-- compare:end -->`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::cli::{
    BenchArgs, Consistency, KeyArgs, LeaseKeepaliveArgs, Limit, PutArgs, RangeArgs, TxnPutArgs,
    WatchLatencyArgs, Workload,
};
use crate::cluster::{Cluster, ClusterArgs, ClusterSetup, ClusterSpec, Db};
use crate::report::{Report, Summary};
use crate::results::{self, JsonStyle};
use crate::svg;

pub const DOC_BEGIN: &str = "<!-- compare:begin -->";
pub const DOC_END: &str = "<!-- compare:end -->";
/// Key read by the range workloads (written once before them).
const RANGE_KEY: &str = "bench-range-key";
/// Bound on `--fixed-rate-rounds`.
pub const FIXED_RATE_ROUNDS_MAX: u32 = 20;
/// A WAL fsync slower than this counts as a disk stall in the fixed-rate rounds (the upper
/// bound of one of etcd's fsync histogram buckets, which both stores use).
const SLOW_FSYNC_BUCKET: &str = "0.008";
/// Bound on the bytes of one `/metrics` page read.
const METRICS_BYTES_MAX: usize = 4 << 20;

#[derive(Args, Clone, Debug)]
pub struct CompareArgs {
    /// Cluster sizes to compare, in order.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    pub members: Vec<usize>,
    /// Workloads to run, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "put,put-fixed-rate,range-l,range-s,txn-put,watch-latency,lease-keepalive"
    )]
    pub workloads: Vec<CompareWorkload>,
    /// Length of each workload run.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Value size of put, range and txn-put.
    #[arg(long, default_value_t = 256)]
    pub val_size: u32,
    /// Keys written by put (random among them).
    #[arg(long, default_value_t = 10_000)]
    pub key_space_size: u64,
    /// Offered load of `put-fixed-rate` (puts per second over all clients): latencies of
    /// the two stores compared at the same load, below both stores' maximum.
    #[arg(long, default_value_t = 1000)]
    pub put_rate: u64,
    /// Rounds of `put-fixed-rate` per store, alternating the stores (both clusters up),
    /// each `--duration` long; the table shows all rounds merged, and each round's p99
    /// with the WAL fsyncs over 8 ms it saw.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=FIXED_RATE_ROUNDS_MAX as i64))]
    pub fixed_rate_rounds: u32,
    /// Puts per second of watch-latency (its run lasts `--duration`).
    #[arg(long, default_value_t = 100)]
    pub watch_put_rate: u64,
    /// Watchers of watch-latency.
    #[arg(long, default_value_t = 100)]
    pub watchers: u32,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Results dir (created): compare.json, compare.md, *.svg.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// Markdown file whose compare tables are replaced (between the markers).
    #[arg(long)]
    pub update_doc: Option<PathBuf>,
    /// Do not run anything: render compare.md and the plots again from `--out`'s compare.json.
    #[arg(long)]
    pub render_only: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CompareWorkload {
    Put,
    PutFixedRate,
    RangeL,
    RangeS,
    TxnPut,
    WatchLatency,
    LeaseKeepalive,
}

impl CompareWorkload {
    pub fn name(self) -> &'static str {
        match self {
            CompareWorkload::Put => "put",
            CompareWorkload::PutFixedRate => "put-fixed-rate",
            CompareWorkload::RangeL => "range-l",
            CompareWorkload::RangeS => "range-s",
            CompareWorkload::TxnPut => "txn-put",
            CompareWorkload::WatchLatency => "watch-latency",
            CompareWorkload::LeaseKeepalive => "lease-keepalive",
        }
    }
}

/// One workload on one cluster.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkloadResult {
    pub workload: String,
    /// The measured section (for watch-latency: put start to event at every watcher).
    pub summary: Summary,
    /// `(latency_us, fraction)` of the measured section, for the CDF plots.
    pub cdf: Vec<(u64, f64)>,
    /// `put-fixed-rate`: each round's figures (the summary merges them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<FixedRateRound>,
}

/// One round of `put-fixed-rate` on one store.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FixedRateRound {
    pub p99_us: u64,
    pub p99_9_us: u64,
    pub max_us: u64,
    /// WAL fsyncs of all members during the round, and how many took over 8 ms.
    pub wal_fsyncs: u64,
    pub wal_fsyncs_over_8ms: u64,
}

/// One cluster's run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterRun {
    pub db: String,
    pub members: usize,
    pub workloads: Vec<WorkloadResult>,
    /// Peak RSS of each member, bytes.
    pub rss_peak_bytes: Vec<u64>,
    /// Bytes of each member's data dir after the workloads.
    pub disk_bytes: Vec<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompareResults {
    pub machine: BTreeMap<String, String>,
    pub settings: BTreeMap<String, String>,
    pub runs: Vec<ClusterRun>,
}

pub fn run(global: &BenchArgs, args: &CompareArgs) -> anyhow::Result<()> {
    // Compact: the CDF points make up most of it.
    let results: CompareResults = results::load_or_measure(
        &args.out,
        "compare.json",
        args.render_only,
        JsonStyle::Compact,
        || measure(global, args),
    )?;
    let markdown = render_markdown(&results);
    std::fs::write(args.out.join("compare.md"), &markdown)?;
    for (name, svg) in render_plots(&results) {
        std::fs::write(args.out.join(name), svg)?;
    }
    if let Some(doc) = &args.update_doc {
        results::update_doc(doc, DOC_BEGIN, DOC_END, &markdown)?;
    }
    print!("{markdown}");
    eprintln!("results in {}", args.out.display());
    Ok(())
}

fn measure(global: &BenchArgs, args: &CompareArgs) -> anyhow::Result<CompareResults> {
    anyhow::ensure!(
        args.cluster.etcd_binary.is_file(),
        "no etcd at {} (Debian: apt-get install etcd-server)",
        args.cluster.etcd_binary.display()
    );
    let setup = ClusterSetup::new("skiff-bench-compare-", &args.cluster)?;
    let mut runs = Vec::new();
    for &members in &args.members {
        let mut pair = Vec::new();
        for db in [Db::Etcd, Db::Skiff] {
            eprintln!("compare: {} with {members} member(s)", db.name());
            let spec = setup.spec(db, members);
            pair.push(setup.runtime.block_on(run_cluster(global, args, spec))?);
        }
        if let Some(at) = args.workloads.iter().position(|w| *w == CompareWorkload::PutFixedRate) {
            eprintln!(
                "compare: put-fixed-rate with {members} member(s), {} rounds per store, alternating",
                args.fixed_rate_rounds
            );
            let specs = [setup.spec(Db::Etcd, members), setup.spec(Db::Skiff, members)];
            let results = setup.runtime.block_on(run_fixed_rate(global, args, specs))?;
            for (run, result) in pair.iter_mut().zip(results) {
                let at = at.min(run.workloads.len());
                run.workloads.insert(at, result);
            }
        }
        runs.extend(pair);
    }
    let settings = results::settings([
        (
            "duration",
            humantime::format_duration(args.duration).to_string(),
        ),
        ("conns", global.conns.to_string()),
        ("clients", global.clients.to_string()),
        ("val_size", args.val_size.to_string()),
        ("put_rate", args.put_rate.to_string()),
        ("key_space_size", args.key_space_size.to_string()),
        ("fixed_rate_rounds", args.fixed_rate_rounds.to_string()),
        ("watch_put_rate", args.watch_put_rate.to_string()),
        ("watchers", args.watchers.to_string()),
        (
            "heartbeat_interval_ms",
            args.cluster.heartbeat_interval.to_string(),
        ),
        (
            "election_timeout_ms",
            args.cluster.election_timeout.to_string(),
        ),
        ("data_root", args.cluster.data_root.display().to_string()),
    ]);
    Ok(CompareResults {
        machine: machine_facts(&args.cluster.data_root),
        settings,
        runs,
    })
}

async fn run_cluster(
    global: &BenchArgs,
    args: &CompareArgs,
    spec: ClusterSpec,
) -> anyhow::Result<ClusterRun> {
    let (db, members) = (spec.db, spec.members);
    let mut cluster = Cluster::start(spec).await?;
    let endpoints = cluster.client_urls();
    let mut workloads = Vec::new();
    // put-fixed-rate runs in its own phase (`run_fixed_rate`).
    for &workload in args.workloads.iter().filter(|w| **w != CompareWorkload::PutFixedRate) {
        let bench = BenchArgs {
            endpoints: endpoints.clone(),
            conns: global.conns,
            clients: global.clients,
            json: false,
            workload: workload_args(workload, args),
        };
        if matches!(workload, CompareWorkload::RangeL | CompareWorkload::RangeS) {
            let mut client = crate::load::connect_all(&endpoints, 1).await?.remove(0);
            client
                .put(RANGE_KEY, vec![b'v'; args.val_size as usize], None)
                .await
                .context("writing the key of the range workloads")?;
        }
        let result = crate::run_workload(&bench).await?;
        let section = match workload {
            CompareWorkload::WatchLatency => result.section("watch (put start to event)"),
            _ => result.sections.first(),
        }
        .context("workload without its section")?;
        let summary = section.report.to_summary(workload.name(), section.elapsed);
        eprintln!(
            "  {:<16} {:>10.1} req/s  p50 {:>8} µs  p99 {:>8} µs  errors {}",
            workload.name(),
            summary.throughput_rps,
            summary.latency_us.p50,
            summary.latency_us.p99,
            summary.errors_total
        );
        workloads.push(WorkloadResult {
            workload: workload.name().to_string(),
            cdf: section.report.cdf(),
            summary,
            rounds: Vec::new(),
        });
        cluster.check_alive()?;
        cluster.sample_rss();
    }
    let disk_bytes = cluster.disk_bytes();
    cluster.stop();
    Ok(ClusterRun {
        db: db.name().to_string(),
        members,
        workloads,
        rss_peak_bytes: cluster.rss_peak_bytes(),
        disk_bytes,
    })
}

/// `put-fixed-rate` on both stores at once: the two clusters up side by side, rounds
/// alternating between them (etcd first in odd rounds, skiff first in even ones), so a
/// stretch of slow disk falls on both. Returns etcd's result, then skiff's.
async fn run_fixed_rate(
    global: &BenchArgs,
    args: &CompareArgs,
    specs: [ClusterSpec; 2],
) -> anyhow::Result<[WorkloadResult; 2]> {
    // Fresh dirs: the clusters of the other workloads have used `<db>-<members>`.
    let [etcd_spec, skiff_spec] = specs.map(|mut spec| {
        let name = format!("{}-{}-fixed-rate", spec.db.name(), spec.members);
        spec.dir = spec.dir.with_file_name(name);
        spec
    });
    let mut clusters = [Cluster::start(etcd_spec).await?, Cluster::start(skiff_spec).await?];
    let mut merged = [Report::new(), Report::new()];
    let mut elapsed = [Duration::ZERO; 2];
    let mut rounds: [Vec<FixedRateRound>; 2] = [Vec::new(), Vec::new()];
    for round in 0..args.fixed_rate_rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let cluster = &mut clusters[i];
            let endpoints = cluster.client_urls();
            let bench = BenchArgs {
                endpoints: endpoints.clone(),
                conns: global.conns,
                clients: global.clients,
                json: false,
                workload: workload_args(CompareWorkload::PutFixedRate, args),
            };
            let before = wal_fsyncs(&endpoints).await?;
            let result = crate::run_workload(&bench).await?;
            let after = wal_fsyncs(&endpoints).await?;
            let section = result.sections.first().context("put without its section")?;
            let r = &section.report;
            let brief = FixedRateRound {
                p99_us: r.percentile_us(99.0),
                p99_9_us: r.percentile_us(99.9),
                max_us: r.max_us(),
                wal_fsyncs: after.0.saturating_sub(before.0),
                wal_fsyncs_over_8ms: after.1.saturating_sub(before.1),
            };
            eprintln!(
                "  {} round {}: p99 {} µs, p99.9 {} µs, max {} µs, WAL fsyncs {} ({} over 8 ms), errors {}",
                cluster.spec.db.name(),
                round + 1,
                brief.p99_us,
                brief.p99_9_us,
                brief.max_us,
                brief.wal_fsyncs,
                brief.wal_fsyncs_over_8ms,
                r.errors_total()
            );
            merged[i].merge(r);
            elapsed[i] += section.elapsed;
            rounds[i].push(brief);
            cluster.check_alive()?;
        }
    }
    for c in &mut clusters {
        c.stop();
    }
    let name = CompareWorkload::PutFixedRate.name();
    let result = |i: usize, rounds: Vec<FixedRateRound>| WorkloadResult {
        workload: name.to_string(),
        summary: merged[i].to_summary(name, elapsed[i]),
        cdf: merged[i].cdf(),
        rounds,
    };
    let [etcd_rounds, skiff_rounds] = rounds;
    Ok([result(0, etcd_rounds), result(1, skiff_rounds)])
}

/// All members' WAL fsyncs so far and how many took over 8 ms, from their `/metrics`.
async fn wal_fsyncs(endpoints: &[String]) -> anyhow::Result<(u64, u64)> {
    let (mut total, mut slow) = (0, 0);
    for endpoint in endpoints {
        let page = fetch_metrics(endpoint).await?;
        let (count, fast) = parse_wal_fsyncs(&page)
            .with_context(|| format!("{endpoint}/metrics has no etcd_disk_wal_fsync_duration_seconds"))?;
        total += count;
        slow += count.saturating_sub(fast);
    }
    Ok((total, slow))
}

/// `(count, count of the 8 ms bucket)` of `etcd_disk_wal_fsync_duration_seconds`.
fn parse_wal_fsyncs(page: &str) -> Option<(u64, u64)> {
    let value = |prefix: &str| -> Option<u64> {
        page.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
    };
    let count = value("etcd_disk_wal_fsync_duration_seconds_count ")?;
    let fast = value(&format!(
        "etcd_disk_wal_fsync_duration_seconds_bucket{{le=\"{SLOW_FSYNC_BUCKET}\"}} "
    ))?;
    Some((count, fast))
}

/// GET `<endpoint>/metrics` over plain HTTP/1.0 (both stores serve it on the client URL).
async fn fetch_metrics(endpoint: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let host = endpoint
        .strip_prefix("http://")
        .with_context(|| format!("{endpoint}: only http:// endpoints have metrics scraped"))?
        .trim_end_matches('/');
    let get = async {
        let mut stream = tokio::net::TcpStream::connect(host).await?;
        stream
            .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
            .await?;
        let mut body = Vec::new();
        (&mut stream).take(METRICS_BYTES_MAX as u64).read_to_end(&mut body).await?;
        anyhow::Ok(body)
    };
    let body = tokio::time::timeout(Duration::from_secs(5), get)
        .await
        .with_context(|| format!("{endpoint}/metrics timed out"))??;
    let text = String::from_utf8_lossy(&body);
    let (head, page) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("{endpoint}/metrics: no HTTP header"))?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.") && head.split_whitespace().nth(1) == Some("200"),
        "{endpoint}/metrics: {}",
        head.lines().next().unwrap_or("")
    );
    Ok(page.to_string())
}

fn workload_args(workload: CompareWorkload, args: &CompareArgs) -> Workload {
    let limit = Limit {
        total: None,
        duration: Some(args.duration),
        rate: 0,
    };
    match workload {
        CompareWorkload::Put => Workload::Put(PutArgs {
            limit,
            keys: KeyArgs {
                key_size: 8,
                val_size: args.val_size,
                key_space_size: args.key_space_size,
                sequential_keys: false,
            },
        }),
        CompareWorkload::PutFixedRate => Workload::Put(PutArgs {
            limit: Limit {
                rate: args.put_rate,
                ..limit
            },
            keys: KeyArgs {
                key_size: 8,
                val_size: args.val_size,
                key_space_size: args.key_space_size,
                sequential_keys: false,
            },
        }),
        CompareWorkload::RangeL | CompareWorkload::RangeS => Workload::Range(RangeArgs {
            key: RANGE_KEY.to_string(),
            end: None,
            consistency: if workload == CompareWorkload::RangeL {
                Consistency::L
            } else {
                Consistency::S
            },
            limit,
        }),
        CompareWorkload::TxnPut => Workload::TxnPut(TxnPutArgs {
            limit,
            key_size: 32,
            val_size: args.val_size,
            key_space_size: args.key_space_size,
            sequential_keys: false,
        }),
        CompareWorkload::WatchLatency => Workload::WatchLatency(WatchLatencyArgs {
            put_total: (args.watch_put_rate as f64 * args.duration.as_secs_f64()).max(1.0) as u64,
            put_rate: args.watch_put_rate,
            watchers: args.watchers,
            streams: args.watchers.min(10),
            key_size: 32,
            val_size: 32,
        }),
        CompareWorkload::LeaseKeepalive => Workload::LeaseKeepalive(LeaseKeepaliveArgs { limit }),
    }
}

/// `nproc`, the CPU model, the kernel and the filesystem of the data root.
pub fn machine_facts(data_root: &Path) -> BTreeMap<String, String> {
    let mut facts = BTreeMap::new();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    facts.insert("nproc".to_string(), cpus.to_string());
    if let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") {
        if let Some(model) = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
        {
            facts.insert("cpu".to_string(), model.trim().to_string());
        }
    }
    if let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        facts.insert("kernel".to_string(), release.trim().to_string());
    }
    if let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") {
        if let Some(total) = meminfo.lines().find(|l| l.starts_with("MemTotal:")) {
            facts.insert(
                "memory".to_string(),
                total["MemTotal:".len()..].trim().to_string(),
            );
        }
    }
    if let Ok(mounts) = std::fs::read_to_string("/proc/mounts") {
        let root = data_root
            .canonicalize()
            .unwrap_or_else(|_| data_root.to_path_buf());
        let best = mounts
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 3 && root.starts_with(f[1]))
                    .then(|| (f[1].len(), format!("{} on {} ({})", f[0], f[1], f[2])))
            })
            .max_by_key(|(len, _)| *len);
        if let Some((_, fs)) = best {
            facts.insert("data filesystem".to_string(), fs);
        }
    }
    facts
}

fn find<'a>(results: &'a CompareResults, db: &str, members: usize) -> Option<&'a ClusterRun> {
    results
        .runs
        .iter()
        .find(|r| r.db == db && r.members == members)
}

fn member_counts(results: &CompareResults) -> Vec<usize> {
    let mut counts: Vec<usize> = results.runs.iter().map(|r| r.members).collect();
    counts.dedup();
    counts
}

fn ratio(skiff: f64, etcd: f64) -> f64 {
    if etcd > 0.0 {
        skiff / etcd
    } else {
        f64::NAN
    }
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1e3)
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// The ratio tables: per cluster size, per workload, skiff against etcd.
pub fn render_markdown(results: &CompareResults) -> String {
    use std::fmt::Write as _;
    let mut out = results::settings_line(&results.settings);
    let _ = writeln!(
        out,
        "Ratios are skiff ÷ etcd: above 1 is better for throughput, below 1 is better for latency, memory and disk.\n"
    );
    for members in member_counts(results) {
        let (Some(etcd), Some(skiff)) = (
            find(results, "etcd", members),
            find(results, "skiff", members),
        ) else {
            continue;
        };
        let _ = writeln!(
            out,
            "### {members} member{}\n",
            if members == 1 { "" } else { "s" }
        );
        let _ = writeln!(
            out,
            "| workload | etcd req/s | skiff req/s | × | p50 ms etcd / skiff | × | p99 ms etcd / skiff | × | p99.9 ms etcd / skiff | × | errors etcd / skiff |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for e in &etcd.workloads {
            let Some(s) = skiff.workloads.iter().find(|w| w.workload == e.workload) else {
                continue;
            };
            let (el, sl) = (&e.summary.latency_us, &s.summary.latency_us);
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.0} | {:.2} | {} / {} | {:.2} | {} / {} | {:.2} | {} / {} | {:.2} | {} / {} |",
                e.workload,
                e.summary.throughput_rps,
                s.summary.throughput_rps,
                ratio(s.summary.throughput_rps, e.summary.throughput_rps),
                ms(el.p50),
                ms(sl.p50),
                ratio(sl.p50 as f64, el.p50 as f64),
                ms(el.p99),
                ms(sl.p99),
                ratio(sl.p99 as f64, el.p99 as f64),
                ms(el.p99_9),
                ms(sl.p99_9),
                ratio(sl.p99_9 as f64, el.p99_9 as f64),
                e.summary.errors_total,
                s.summary.errors_total,
            );
        }
        let rounds = |r: &ClusterRun| -> Option<String> {
            let w = r.workloads.iter().find(|w| !w.rounds.is_empty())?;
            let each: Vec<String> = w
                .rounds
                .iter()
                .map(|x| format!("{} ({})", ms(x.p99_us), x.wal_fsyncs_over_8ms))
                .collect();
            Some(format!("{}: {}", r.db, each.join(", ")))
        };
        if let (Some(e), Some(s)) = (rounds(etcd), rounds(skiff)) {
            let _ = writeln!(
                out,
                "\nput-fixed-rate ran in rounds alternating the stores, both clusters up; each round's p99 in ms and (in brackets) the WAL fsyncs over 8 ms the members saw during it. {e}; {s}."
            );
        }
        let rss = |r: &ClusterRun| r.rss_peak_bytes.iter().copied().max().unwrap_or(0);
        let disk = |r: &ClusterRun| r.disk_bytes.iter().copied().sum::<u64>();
        let _ = writeln!(
            out,
            "\n| resource | etcd | skiff | × |\n|---|---:|---:|---:|"
        );
        let _ = writeln!(
            out,
            "| peak RSS, largest member (MiB) | {} | {} | {:.2} |",
            mib(rss(etcd)),
            mib(rss(skiff)),
            ratio(rss(skiff) as f64, rss(etcd) as f64)
        );
        let _ = writeln!(
            out,
            "| data dirs, all members (MiB) | {} | {} | {:.2} |\n",
            mib(disk(etcd)),
            mib(disk(skiff)),
            ratio(disk(skiff) as f64, disk(etcd) as f64)
        );
    }
    out
}

/// `ratio-throughput.svg`, `ratio-p99.svg`, `ratio-resources.svg` and one
/// `cdf-<workload>.svg` per workload (every cluster size, both stores).
pub fn render_plots(results: &CompareResults) -> Vec<(String, String)> {
    let counts = member_counts(results);
    let workloads: Vec<String> = results
        .runs
        .first()
        .map(|r| r.workloads.iter().map(|w| w.workload.clone()).collect())
        .unwrap_or_default();
    let ratios = |f: &dyn Fn(&Summary) -> f64| -> Vec<(String, Vec<f64>)> {
        counts
            .iter()
            .map(|&m| {
                let values = workloads
                    .iter()
                    .map(|w| {
                        let get = |db| {
                            find(results, db, m)
                                .and_then(|r| r.workloads.iter().find(|x| &x.workload == w))
                                .map(|x| f(&x.summary))
                        };
                        match (get("skiff"), get("etcd")) {
                            (Some(s), Some(e)) => ratio(s, e),
                            _ => f64::NAN,
                        }
                    })
                    .collect();
                (format!("{m} member(s)"), values)
            })
            .collect()
    };
    let mut plots = vec![
        (
            "ratio-throughput.svg".to_string(),
            svg::bar_chart(
                "throughput, skiff ÷ etcd (higher is better)",
                "ratio",
                &workloads,
                &ratios(&|s| s.throughput_rps),
                Some(1.0),
            ),
        ),
        (
            "ratio-p99.svg".to_string(),
            svg::bar_chart(
                "p99 latency, skiff ÷ etcd (lower is better)",
                "ratio",
                &workloads,
                &ratios(&|s| s.latency_us.p99 as f64),
                Some(1.0),
            ),
        ),
    ];
    let resources = ["peak RSS".to_string(), "disk bytes".to_string()];
    let resource_series: Vec<(String, Vec<f64>)> = counts
        .iter()
        .filter_map(|&m| {
            let (e, s) = (find(results, "etcd", m)?, find(results, "skiff", m)?);
            let rss = |r: &ClusterRun| r.rss_peak_bytes.iter().copied().max().unwrap_or(0) as f64;
            let disk = |r: &ClusterRun| r.disk_bytes.iter().sum::<u64>() as f64;
            Some((
                format!("{m} member(s)"),
                vec![ratio(rss(s), rss(e)), ratio(disk(s), disk(e))],
            ))
        })
        .collect();
    plots.push((
        "ratio-resources.svg".to_string(),
        svg::bar_chart(
            "memory and disk, skiff ÷ etcd (lower is better)",
            "ratio",
            &resources,
            &resource_series,
            Some(1.0),
        ),
    ));
    for w in &workloads {
        let mut series = Vec::new();
        for &m in &counts {
            for db in ["skiff", "etcd"] {
                if let Some(x) =
                    find(results, db, m).and_then(|r| r.workloads.iter().find(|x| &x.workload == w))
                {
                    series.push((format!("{db}, {m} member(s)"), x.cdf.clone()));
                }
            }
        }
        plots.push((
            format!("cdf-{w}.svg"),
            svg::cdf_chart(&format!("{w}: latency CDF"), &series),
        ));
    }
    plots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_fsyncs_are_read_from_either_stores_metrics() {
        // As etcd 3.4 and skiff print it (trimmed).
        let page = "# HELP etcd_disk_wal_fsync_duration_seconds The latency distributions of fsync called by WAL.\n\
            # TYPE etcd_disk_wal_fsync_duration_seconds histogram\n\
            etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.004\"} 90\n\
            etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.008\"} 97\n\
            etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 100\n\
            etcd_disk_wal_fsync_duration_seconds_sum 0.5\n\
            etcd_disk_wal_fsync_duration_seconds_count 100\n";
        assert_eq!(parse_wal_fsyncs(page), Some((100, 97)));
        assert_eq!(parse_wal_fsyncs("etcd_server_has_leader 1\n"), None);
    }

    fn run_of(db: &str, members: usize, rps: f64, p99: u64) -> ClusterRun {
        let mut report = Report::new();
        for _ in 0..10 {
            report.record(Duration::from_micros(p99));
        }
        let mut summary = report.to_summary("put", Duration::from_secs(1));
        summary.throughput_rps = rps;
        ClusterRun {
            db: db.to_string(),
            members,
            workloads: vec![WorkloadResult {
                workload: "put".to_string(),
                cdf: report.cdf(),
                summary,
                rounds: vec![FixedRateRound {
                    p99_us: p99,
                    p99_9_us: p99,
                    max_us: p99,
                    wal_fsyncs: 100,
                    wal_fsyncs_over_8ms: if db == "etcd" { 2 } else { 0 },
                }],
            }],
            rss_peak_bytes: vec![100 << 20, 50 << 20],
            disk_bytes: vec![10 << 20, 10 << 20],
        }
    }

    #[test]
    fn markdown_has_ratios_per_cluster_size() {
        let results = CompareResults {
            machine: BTreeMap::new(),
            settings: BTreeMap::from([("clients".to_string(), "8".to_string())]),
            runs: vec![
                run_of("etcd", 3, 1000.0, 2000),
                run_of("skiff", 3, 3000.0, 1000),
            ],
        };
        let md = render_markdown(&results);
        assert!(md.contains("### 3 members"), "{md}");
        assert!(
            md.contains("| put | 1000 | 3000 | 3.00 | 2.00 / 1.00 | 0.50 |"),
            "{md}"
        );
        assert!(
            md.contains("| peak RSS, largest member (MiB) | 100.0 | 100.0 | 1.00 |"),
            "{md}"
        );
        assert!(md.contains("etcd: 2.00 (2); skiff: 1.00 (0)."), "{md}");
        let plots = render_plots(&results);
        let names: Vec<&str> = plots.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "ratio-throughput.svg",
                "ratio-p99.svg",
                "ratio-resources.svg",
                "cdf-put.svg"
            ]
        );
        // The JSON round-trips (render-only reads it back).
        let json = serde_json::to_string(&results).unwrap();
        let back: CompareResults = serde_json::from_str(&json).unwrap();
        assert_eq!(render_markdown(&back), md);
    }
}
