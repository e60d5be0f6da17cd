//! What a run concludes: [`Results`] (`results.json`), computed from the history, the
//! fault windows and (for set) the final read, so that `skiff jepsen check` recomputes it
//! from a results directory; and the human summary (`summary.txt`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::cli::{Db, RunConfig, WorkloadKind};
use super::nemesis::FaultWindow;
use super::proxy::ProxyCounts;
use super::set_checker::{self, FinalRead, SetAnalysis, SetVerdict};
use super::WorkloadData;
use crate::history::{Function, History, OpKind};
use crate::linearizable::{self, Analysis, Options, Verdict};
use crate::model::KvRegister;

/// The run's verdict, and the process exit code that carries it (Jepsen's convention).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Validity {
    Valid,
    Invalid,
    Unknown,
}

impl Validity {
    /// 0 valid, 1 a checker found a violation, 2 a checker could not decide.
    pub fn exit_code(self) -> i32 {
        match self {
            Validity::Valid => 0,
            Validity::Invalid => 1,
            Validity::Unknown => 2,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub invoked: usize,
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
}

/// Latency of `ok` operations, milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkers {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linearizable: Option<Analysis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set: Option<SetAnalysis>,
    /// append: transaction anomalies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elle: Option<crate::elle::Analysis>,
    /// watch: etcd's watch guarantees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<crate::watch::Analysis>,
    /// lease-lock: mutual exclusion (unsafe is expected without fencing) and leases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_lock: Option<super::lock_checker::LockAnalysis>,
    /// kube: lists, watches from lists and optimistic writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube: Option<super::kube_checker::KubeAnalysis>,
    /// Caveats the workload recorded (e.g. where the watch ground truth ends).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workload_notes: Vec<String>,
}

/// What the runner saw that the history does not hold; `check` carries it over.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunNotes {
    /// Client error descriptions and how many completions carried each.
    pub client_errors: BTreeMap<String, u64>,
    /// Members that exited without being killed by the nemesis.
    pub crashes: Vec<String>,
    /// Members that needed SIGKILL at the end.
    pub forced_stops: Vec<String>,
    pub proxy: ProxyCounts,
    /// Seconds from launching the members to an agreed leader.
    pub cluster_ready_s: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub valid: Validity,
    pub db: Db,
    pub workload: WorkloadKind,
    pub nodes: usize,
    pub seed: u64,
    /// The command line that repeats the run's choices ([`RunConfig::replay_command`]).
    #[serde(default)]
    pub replay: String,
    /// From the first to the last event of the history.
    pub history_span_s: f64,
    pub ops: Counts,
    /// Per function (`read`, `write`, `cas`; `add` for the set workload).
    pub ops_by_function: BTreeMap<String, Counts>,
    pub latency_by_function: BTreeMap<String, Latency>,
    pub faults_by_kind: BTreeMap<String, usize>,
    pub faults: Vec<FaultWindow>,
    pub checkers: Checkers,
    pub notes: RunNotes,
    /// register: ok reads invoked and answered while the client's member was cut off from
    /// the majority by a partition, from two election timeouts after the cut (the reads a store that
    /// skips ReadIndex answers stale; with ReadIndex there are none).
    #[serde(default)]
    pub minority_reads: usize,
}

/// Client `i` talks to member `i % nodes`; a process continues client `p % concurrency`.
fn member_of(config: &RunConfig, process: u64) -> usize {
    (process as usize % config.concurrency) % config.nodes
}

/// Member indices of the groups of a partition window's target (`m3 | m1 m2`); only
/// two-way partitions name groups this way.
fn partition_groups(window: &FaultWindow) -> Vec<Vec<usize>> {
    let Some(target) = window.targets.first() else {
        return Vec::new();
    };
    if window.kind != super::cli::FaultKind::Partition || target.starts_with("ring") {
        return Vec::new();
    }
    target
        .split('|')
        .map(|group| {
            group
                .split_whitespace()
                .filter_map(|name| name.strip_prefix('m')?.parse::<usize>().ok())
                .map(|n| n - 1)
                .collect()
        })
        .collect()
}

/// Counts [`Results::minority_reads`].
fn count_minority_reads(
    config: &RunConfig,
    history: &History,
    operations: &[crate::history::Operation],
    faults: &[FaultWindow],
) -> usize {
    let majority = config.nodes / 2 + 1;
    // A leader may answer reads on its lease for up to an election timeout after it is cut
    // off (safely: the others cannot elect anyone sooner); count only reads after that.
    let grace_ns = 2 * config.election_timeout_ms * 1_000_000;
    let cut_off: Vec<(u64, u64, Vec<usize>)> = faults
        .iter()
        .filter_map(|w| {
            let minority: Vec<usize> = partition_groups(w)
                .into_iter()
                .filter(|g| g.len() < majority)
                .flatten()
                .collect();
            (!minority.is_empty()).then(|| {
                (
                    w.start_ns + grace_ns,
                    w.end_ns.unwrap_or(u64::MAX),
                    minority,
                )
            })
        })
        .collect();
    operations
        .iter()
        .filter(|op| op.f == Function::Read && op.outcome == OpKind::Ok)
        .filter(|op| {
            let invoked = history.ops()[op.invoke_index].time_ns;
            let Some(done) = op.complete_index.map(|i| history.ops()[i].time_ns) else {
                return false;
            };
            let member = member_of(config, op.process);
            // Invoked and answered while cut off (a read that waited for the heal is fine).
            cut_off.iter().any(|(start, end, minority)| {
                *start <= invoked && done <= *end && minority.contains(&member)
            })
        })
        .count()
}

/// The name a function has in reports: set adds are recorded as writes.
pub fn function_name(workload: WorkloadKind, f: Function) -> &'static str {
    match (workload, f) {
        (WorkloadKind::Set, Function::Write) => "add",
        (WorkloadKind::Append, Function::Read) => "read-txn",
        (WorkloadKind::Append, _) => "append-txn",
        (WorkloadKind::LeaseLock, Function::Cas) => "lock",
        (WorkloadKind::Kube, Function::Read) => "list",
        (WorkloadKind::Kube, Function::Cas) => "update",
        (_, Function::Read) => "read",
        (_, Function::Write) => "write",
        (_, Function::Cas) => "cas",
    }
}

/// Runs the workload's checker over the history and gathers the figures.
pub fn analyze(
    config: &RunConfig,
    history: &History,
    faults: &[FaultWindow],
    final_read: Option<&FinalRead>,
    data: &WorkloadData,
    notes: RunNotes,
    max_configurations: u64,
) -> anyhow::Result<Results> {
    let operations = history.pair()?;
    let mut ops = Counts::default();
    let mut by_function: BTreeMap<String, Counts> = BTreeMap::new();
    let mut latencies: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for op in &operations {
        let name = function_name(config.workload, op.f).to_owned();
        let counts = by_function.entry(name.clone()).or_default();
        for c in [&mut ops, counts] {
            c.invoked += 1;
            match op.outcome {
                OpKind::Ok => c.ok += 1,
                OpKind::Fail => c.fail += 1,
                OpKind::Info | OpKind::Invoke => c.info += 1,
            }
        }
        if let (OpKind::Ok, Some(done)) = (op.outcome, op.complete_index) {
            let ns = history.ops()[done].time_ns - history.ops()[op.invoke_index].time_ns;
            latencies.entry(name).or_default().push(ns);
        }
    }
    let latency_by_function = latencies
        .into_iter()
        .map(|(name, mut ns)| {
            ns.sort_unstable();
            let at = |q: f64| ns[((ns.len() - 1) as f64 * q).round() as usize] as f64 / 1e6;
            (
                name,
                Latency {
                    p50_ms: at(0.5),
                    p99_ms: at(0.99),
                    max_ms: at(1.0),
                },
            )
        })
        .collect();
    let mut faults_by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for w in faults {
        *faults_by_kind.entry(w.kind.name().to_owned()).or_default() += 1;
    }
    let (checkers, valid) = match config.workload {
        WorkloadKind::Register => {
            let options = Options { max_configurations };
            let analysis = linearizable::check_operations(&KvRegister, &operations, &options);
            let valid = match analysis.verdict {
                Verdict::Linearizable => Validity::Valid,
                Verdict::NotLinearizable { .. } => Validity::Invalid,
                Verdict::Unknown { .. } => Validity::Unknown,
            };
            (
                Checkers {
                    linearizable: Some(analysis),
                    ..Checkers::default()
                },
                valid,
            )
        }
        WorkloadKind::Set => {
            let analysis = set_checker::check(history, final_read)?;
            let valid = match analysis.verdict {
                SetVerdict::Valid => Validity::Valid,
                SetVerdict::Invalid => Validity::Invalid,
                SetVerdict::Unknown => Validity::Unknown,
            };
            (
                Checkers {
                    set: Some(analysis),
                    ..Checkers::default()
                },
                valid,
            )
        }
        WorkloadKind::Append => {
            let WorkloadData::Append(txns) = data else {
                anyhow::bail!("an append run without its transaction history");
            };
            let analysis = crate::elle::check(txns, &crate::elle::Options::default())?;
            let valid = if analysis.valid {
                Validity::Valid
            } else {
                Validity::Invalid
            };
            (
                Checkers {
                    elle: Some(analysis),
                    ..Checkers::default()
                },
                valid,
            )
        }
        WorkloadKind::Watch => {
            let WorkloadData::Watch(record) = data else {
                anyhow::bail!("a watch run without its watch.json");
            };
            let analysis = crate::watch::check(
                &record.watchers,
                record.truth.as_ref(),
                &crate::watch::Options::default(),
            )?;
            let valid = if analysis.valid {
                Validity::Valid
            } else {
                Validity::Invalid
            };
            (
                Checkers {
                    watch: Some(analysis),
                    workload_notes: record.notes.clone(),
                    ..Checkers::default()
                },
                valid,
            )
        }
        WorkloadKind::LeaseLock => {
            let WorkloadData::LeaseLock(record) = data else {
                anyhow::bail!("a lease-lock run without its lock.json");
            };
            let end_ns = history.ops().last().map_or(0, |op| op.time_ns);
            let analysis = super::lock_checker::check(&record.sections, &record.probes, end_ns);
            let valid = if analysis.valid() {
                Validity::Valid
            } else {
                Validity::Invalid
            };
            (
                Checkers {
                    lease_lock: Some(analysis),
                    ..Checkers::default()
                },
                valid,
            )
        }
        WorkloadKind::Kube => {
            let WorkloadData::Kube(record) = data else {
                anyhow::bail!("a kube run without its kube.json");
            };
            let analysis = super::kube_checker::check(record);
            let valid = if analysis.valid {
                Validity::Valid
            } else {
                Validity::Invalid
            };
            (
                Checkers {
                    kube: Some(analysis),
                    ..Checkers::default()
                },
                valid,
            )
        }
    };
    let span_ns = match (history.ops().first(), history.ops().last()) {
        (Some(a), Some(b)) => b.time_ns - a.time_ns,
        _ => 0,
    };
    let minority_reads = match config.workload {
        WorkloadKind::Register => count_minority_reads(config, history, &operations, faults),
        _ => 0,
    };
    Ok(Results {
        minority_reads,
        valid,
        db: config.db,
        workload: config.workload,
        nodes: config.nodes,
        seed: config.seed,
        replay: config.replay_command(),
        history_span_s: span_ns as f64 / 1e9,
        ops,
        ops_by_function: by_function,
        latency_by_function,
        faults_by_kind,
        faults: faults.to_vec(),
        checkers,
        notes,
    })
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// `summary.txt`, also printed at the end of a run.
pub fn summary(results: &Results) -> String {
    let mut s = String::new();
    let r = results;
    let _ = writeln!(
        s,
        "skiff jepsen: {} workload on {}, {} members, seed {}",
        r.workload.name(),
        r.db.name(),
        r.nodes,
        r.seed
    );
    if !r.replay.is_empty() {
        let _ = writeln!(s, "replay: {}", r.replay);
    }
    let _ = writeln!(
        s,
        "history: {:.1} s, {} operations: {} ok, {} fail, {} info",
        r.history_span_s, r.ops.invoked, r.ops.ok, r.ops.fail, r.ops.info
    );
    for (name, c) in &r.ops_by_function {
        let latency = r
            .latency_by_function
            .get(name)
            .map(|l| {
                format!(
                    "; ok latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                    l.p50_ms, l.p99_ms, l.max_ms
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "  {name:<6} {:>6} invoked: {} ok, {} fail, {} info{latency}",
            c.invoked, c.ok, c.fail, c.info
        );
    }
    let kinds = r
        .faults_by_kind
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        s,
        "faults: {}{}",
        r.faults.len(),
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({kinds})")
        }
    );
    for w in &r.faults {
        let end = w
            .end_ns
            .map(|e| format!("{:.1}s", seconds(e)))
            .unwrap_or_else(|| "never healed".into());
        let _ = writeln!(
            s,
            "  {:>6.1}s - {:<7} {:<11} {} ({})",
            seconds(w.start_ns),
            end,
            w.kind.name(),
            w.targets.join(", "),
            w.detail
        );
    }
    let n = &r.notes;
    if n.proxy.connections > 0 {
        let _ = writeln!(
            s,
            "peer proxy: {} connections, {} stalled by cuts, {} accepted while cut, {} unidentified, {} over the limit",
            n.proxy.connections, n.proxy.stalled, n.proxy.refused_by_cut, n.proxy.unidentified, n.proxy.over_limit
        );
        if n.proxy.corrupted > 0 {
            let _ = writeln!(s, "  snapshot streams corrupted in flight: {}", n.proxy.corrupted);
        }
    }
    if !n.client_errors.is_empty() {
        let _ = writeln!(s, "client errors:");
        let mut errors: Vec<_> = n.client_errors.iter().collect();
        errors.sort_by(|a, b| b.1.cmp(a.1));
        for (message, count) in errors.iter().take(10) {
            let _ = writeln!(s, "  {count:>6}  {message}");
        }
    }
    for crash in &n.crashes {
        let _ = writeln!(s, "CRASH: {crash}");
    }
    if !n.forced_stops.is_empty() {
        let _ = writeln!(
            s,
            "needed SIGKILL at the end: {}",
            n.forced_stops.join(", ")
        );
    }
    if r.minority_reads > 0 {
        let _ = writeln!(
            s,
            "reads answered by a member cut off from the majority: {}",
            r.minority_reads
        );
    }
    if let Some(a) = &r.checkers.linearizable {
        let _ = write!(s, "linearizable: ");
        match &a.verdict {
            Verdict::Linearizable => {
                let _ = writeln!(
                    s,
                    "yes ({} keys, {} configurations explored)",
                    a.partitions, a.configurations
                );
            }
            Verdict::Unknown { reason } => {
                let _ = writeln!(s, "unknown: {reason}");
            }
            Verdict::NotLinearizable { evidence } => {
                let _ = writeln!(
                    s,
                    "NO, key {}",
                    evidence.partition.as_deref().unwrap_or("(none)")
                );
                let _ = writeln!(
                    s,
                    "  linearized prefix (last 10 of {}):",
                    evidence.linearized_prefix.len()
                );
                let skip = evidence.linearized_prefix.len().saturating_sub(10);
                for op in &evidence.linearized_prefix[skip..] {
                    let _ = writeln!(s, "    {op}");
                }
                let _ = writeln!(s, "  state after it: {}", evidence.state_after_prefix);
                if let Some(op) = &evidence.must_complete {
                    let _ = writeln!(s, "  must linearize next: {op}");
                }
                for why in &evidence.could_not_linearize_next {
                    let _ = writeln!(s, "  cannot: {why}");
                }
            }
        }
    }
    if let Some(a) = &r.checkers.set {
        let _ = writeln!(
            s,
            "set: {:?}; {} attempted, {} acknowledged, {} failed, {} indeterminate; final read {} elements: {} ok, {} recovered, {} lost, {} unexpected, {} failed but present",
            a.verdict, a.attempted, a.acknowledged, a.failed, a.indeterminate, a.final_read_size, a.ok, a.recovered,
            a.lost_count, a.unexpected_count, a.failed_but_present_count
        );
        for (what, list) in [
            ("lost", &a.lost),
            ("unexpected", &a.unexpected),
            ("failed but present", &a.failed_but_present),
        ] {
            if !list.is_empty() {
                let _ = writeln!(s, "  {what}: {list:?}");
            }
        }
    }
    if let Some(a) = &r.checkers.elle {
        let _ = write!(s, "elle (append): {a}");
    }
    if let Some(a) = &r.checkers.kube {
        let _ = write!(s, "kube: {a}");
    }
    if let Some(a) = &r.checkers.lease_lock {
        let _ = write!(s, "{a}");
    }
    if let Some(a) = &r.checkers.watch {
        let _ = write!(s, "watch guarantees: {a}");
    }
    for note in &r.checkers.workload_notes {
        let _ = writeln!(s, "note: {note}");
    }
    let verdict = match r.valid {
        Validity::Valid => "VALID",
        Validity::Invalid => "INVALID",
        Validity::Unknown => "UNKNOWN",
    };
    let _ = writeln!(s, "verdict: {verdict}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_targets_name_their_groups_and_rings_none() {
        let window = FaultWindow {
            kind: super::super::cli::FaultKind::Partition,
            targets: vec!["m3 | m1 m2".into()],
            detail: "halves".into(),
            start_ns: 0,
            end_ns: Some(1),
        };
        assert_eq!(partition_groups(&window), vec![vec![2], vec![0, 1]]);
        let ring = FaultWindow {
            targets: vec!["ring m1 m2, m2 m3".into()],
            ..window
        };
        assert!(partition_groups(&ring).is_empty());
    }
}
