//! `skiff jepsen run` and `skiff jepsen check` flags, and the validated [`RunConfig`] a run
//! is made from (saved as `run.json` so that `check` knows what it is looking at).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::linearizable::DEFAULT_MAX_CONFIGURATIONS;

/// Which implementation the cluster runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Db {
    /// `skiff store`, this repository's binary.
    Skiff,
    /// A real etcd binary (`--etcd-bin`).
    Etcd,
}

impl Db {
    pub fn name(self) -> &'static str {
        match self {
            Db::Skiff => "skiff",
            Db::Etcd => "etcd",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// Read / write / compare-and-set on a few keys at a time; checked for linearizability.
    Register,
    /// Unique adds under a prefix, then one final read; every acknowledged add must be there.
    Set,
    /// Elle-style transactions of appends to and reads of lists stored as values, made
    /// atomic with a compare on the touched keys' mod_revisions; checked for G0, G1a/b/c,
    /// G-single, G2-item and real-time order.
    Append,
    /// Writers put and delete under a prefix while watchers (some resuming after a
    /// disconnect) watch it; checked for etcd's watch guarantees against the writers'
    /// acknowledged history.
    Watch,
    /// Lease-guarded writes (a write under an expired lease must be refused) and
    /// lock-guarded counter increments through etcd's Lock API (mutual exclusion, which
    /// etcd does not promise without fencing).
    LeaseLock,
    /// Kubernetes-like pods under `/registry/pods/`: optimistic-concurrency create /
    /// update / delete, paginated lists at a pinned revision, watches from a list's
    /// revision, compaction every few seconds.
    Kube,
}

impl WorkloadKind {
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Register => "register",
            WorkloadKind::Set => "set",
            WorkloadKind::Append => "append",
            WorkloadKind::Watch => "watch",
            WorkloadKind::LeaseLock => "lease-lock",
            WorkloadKind::Kube => "kube",
        }
    }
}

/// How the nemesis cuts the network between members.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetMode {
    /// Members on loopback, each peer port behind a userspace TCP proxy that cuts, drops,
    /// delays and corrupts snapshot streams. Works without privileges.
    #[default]
    Proxy,
    /// Each member in its own network namespace on a bridge (`10.x.0.y`), cut by nftables
    /// drop rules inside the namespaces: kernel-level partitions and packet loss. Needs
    /// root, `ip` and `nft`. No delay fault (that needs `tc netem`), no snapshot stream
    /// corruption.
    Netns,
}

impl NetMode {
    pub fn name(self) -> &'static str {
        match self {
            NetMode::Proxy => "proxy",
            NetMode::Netns => "netns",
        }
    }
}

/// A fault the nemesis can inject.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// `kill -9` the targets; restart them when the fault ends.
    Kill,
    /// SIGSTOP the targets; SIGCONT when the fault ends.
    Pause,
    /// Cut peer links through the proxies (halves, isolated leader, majorities ring).
    Partition,
    /// Cut peer traffic in one direction only: messages *from* a random member (the
    /// leader half the time) to the others are dropped, the other way still flows.
    PartitionOneWay,
    /// Drop a share of the peer traffic on every link (whole proxied chunks).
    Drop,
    /// Delay peer traffic on every link by a fixed latency plus jitter.
    Delay,
    /// Restart a member under libfaketime with its clock skewed (and strobing) by
    /// seconds; restart it with the real clock when the fault ends.
    Clock,
    /// Remove a member (`member remove`), wipe its data, add it back (`member add`) and
    /// restart it with `--initial-cluster-state existing`.
    Membership,
    /// Kill a member, truncate or flip a bit in the tail of its newest WAL segment,
    /// restart it; what it did (refused with an error, cut the torn tail) is recorded.
    Disk,
    /// Kill a member, flip one bit anywhere in its state-machine data (etcd: the bbolt
    /// `member/snap/db`; skiff: the newest RocksDB table file, else its MANIFEST), restart
    /// it; what it did (refused, reported corruption, served) is recorded.
    DiskState,
    /// `kill -9` the targets and forget every write to their data dirs that no fsync
    /// covered (a power loss: data dirs are lazyfs FUSE mounts when this fault is asked
    /// for); restart them when the fault ends.
    PowerLoss,
    /// Ask the leader to hand leadership to another member (instantaneous).
    MoveLeader,
    /// Compact the keyspace at the current revision (instantaneous).
    Compact,
    /// Defragment a random member's backend (instantaneous: one Maintenance.Defragment).
    Defrag,
    /// One step of growing the cluster to 5 members and shrinking it back to 3, in turn:
    /// grow adds a member as a learner (`member add --learner`), starts it empty and
    /// promotes it once it has caught up; shrink removes a random voter (the leader
    /// included), kills it and wipes its data. Never below 3 voters (instantaneous: the
    /// window closes when the step is done).
    GrowShrink,
    /// Kill a follower long enough for the leader's compacted log to leave it behind, then
    /// corrupt its snapshot files at rest (bit flip or truncation; skiff:
    /// `member/snap/*.snap`, etcd: also `*.snap.db`) and, in `--net proxy`, one bit of the
    /// next snapshot streamed to it; restart it. What it did (refused the stream and got it
    /// again, refused to start, recovered) is recorded.
    Snapshot,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::PartitionOneWay => "partition-one-way",
            FaultKind::Drop => "drop",
            FaultKind::Delay => "delay",
            FaultKind::Clock => "clock",
            FaultKind::Membership => "membership",
            FaultKind::Disk => "disk",
            FaultKind::DiskState => "disk-state",
            FaultKind::PowerLoss => "power-loss",
            FaultKind::MoveLeader => "move-leader",
            FaultKind::Compact => "compact",
            FaultKind::Defrag => "defrag",
            FaultKind::GrowShrink => "grow-shrink",
            FaultKind::Snapshot => "snapshot",
        }
    }

    /// Admin faults are single requests: their window closes when the request returns.
    pub fn is_instantaneous(self) -> bool {
        matches!(
            self,
            FaultKind::MoveLeader | FaultKind::Compact | FaultKind::Defrag | FaultKind::GrowShrink
        )
    }
}

/// Whom a process fault (kill, pause) hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// The member every answering member names as leader (a random one if none is known).
    Leader,
    /// One member at random.
    Random,
    /// A random minority: 1 of 3, 2 of 5.
    Minority,
    /// Every member at once.
    All,
}

/// `--nemesis`: a comma-separated list of fault kinds, or `none`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultSet(pub Vec<FaultKind>);

fn parse_fault_set(s: &str) -> Result<FaultSet, String> {
    let mut kinds = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part == "none" {
            continue;
        }
        let kind = FaultKind::from_str(part, true).map_err(|_| {
            format!("unknown fault {part:?}; expected none or any of kill, pause, partition, partition-one-way, drop, delay, clock, membership, grow-shrink, disk, disk-state, snapshot, power-loss, move-leader, compact, defrag")
        })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(FaultSet(kinds))
}

/// `--nemesis-interval`: `5s..15s` (a uniformly random duration in that range) or `10s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurationRange {
    pub min_ms: u64,
    pub max_ms: u64,
}

impl DurationRange {
    pub fn min(&self) -> Duration {
        Duration::from_millis(self.min_ms)
    }

    pub fn max(&self) -> Duration {
        Duration::from_millis(self.max_ms)
    }
}

pub fn parse_duration_range(s: &str) -> Result<DurationRange, String> {
    let (low, high) = s.split_once("..").unwrap_or((s, s));
    let parse = |part: &str| {
        humantime::parse_duration(part.trim())
            .map_err(|e| format!("{part:?}: {e}"))
            .map(|d| d.as_millis() as u64)
    };
    let (min_ms, max_ms) = (parse(low)?, parse(high)?);
    if min_ms > max_ms {
        return Err(format!("{s:?}: the low end is above the high end"));
    }
    if min_ms < 100 {
        return Err(format!("{s:?}: at least 100ms between faults"));
    }
    Ok(DurationRange { min_ms, max_ms })
}

/// `skiff jepsen run`.
#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Which implementation the cluster runs.
    #[arg(long, value_enum, default_value_t = Db::Skiff)]
    pub db: Db,
    /// The workload the clients run.
    #[arg(long, value_enum, default_value_t = WorkloadKind::Register)]
    pub workload: WorkloadKind,
    /// Cluster size: 3 or 5 members.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// The `skiff` binary whose `store` subcommand runs the members (default: the running
    /// executable, or a `skiff` next to it).
    #[arg(long)]
    pub skiff_bin: Option<PathBuf>,
    /// The etcd binary for `--db etcd`.
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd_bin: PathBuf,
    /// How long clients run operations (e.g. `60s`, `2m`).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub time_limit: Duration,
    /// Client processes, each with one operation in flight, spread over the members.
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,
    /// Operations per second over all clients (at most).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// register: keys in use at a time.
    #[arg(long, default_value_t = 8)]
    pub keys: usize,
    /// register: operations on a key before the workload moves on to a fresh one (keeps
    /// each key's history small enough for the linearizability search).
    #[arg(long, default_value_t = 200)]
    pub ops_per_key: u64,
    /// Faults, comma separated: kill, pause, partition, partition-one-way, drop, delay,
    /// clock, membership, grow-shrink, disk, disk-state, snapshot, power-loss, move-leader,
    /// compact, defrag; or none. `delay` needs `--net proxy`.
    #[arg(long, default_value = "kill,pause,partition", value_parser = parse_fault_set)]
    pub nemesis: FaultSet,
    /// Time between faults, and how long a fault lasts: `MIN..MAX` or one duration.
    #[arg(long, default_value = "5s..15s", value_parser = parse_duration_range)]
    pub nemesis_interval: DurationRange,
    /// The network the nemesis cuts: `proxy` (userspace TCP proxies on loopback) or
    /// `netns` (a network namespace per member, nftables drops; root, `ip` and `nft`
    /// needed; no delay fault, since that needs `tc netem`).
    #[arg(long, value_enum, default_value_t = NetMode::Proxy)]
    pub net: NetMode,
    /// Whom kill and pause hit, comma separated: leader, random, minority, all.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "leader,random,minority"
    )]
    pub nemesis_targets: Vec<Target>,
    /// The members' --heartbeat-interval, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// The members' --election-timeout, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub election_timeout: u64,
    /// A client operation that takes longer ends as `info` (outcome unknown).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub op_timeout: Duration,
    /// Where the history, results, plot and member logs go
    /// (default `results/<timestamp>-<db>-<workload>`).
    #[arg(long)]
    pub results_dir: Option<PathBuf>,
    /// Seed of the generator and the nemesis schedule (default: from the clock). The
    /// cluster's own timing is not reproducible, only the choices made here.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Bound on the linearizability search per key (memoized configurations).
    #[arg(long, default_value_t = DEFAULT_MAX_CONFIGURATIONS)]
    pub max_configurations: u64,
    /// Keep the members' data directories even when the run is valid.
    #[arg(long)]
    pub keep_data: bool,
    /// UNSAFE, skiff only: start the members with `--unsafe-no-read-index`, serving
    /// linearizable reads from local state; a partition then yields stale reads, which the
    /// checkers must catch.
    #[arg(long)]
    pub unsafe_no_read_index: bool,
}

/// `skiff jepsen check`.
#[derive(Args, Clone, Debug)]
pub struct CheckArgs {
    /// A results directory written by `skiff jepsen run`.
    pub results_dir: PathBuf,
    /// Bound on the linearizability search per key (memoized configurations).
    #[arg(long, default_value_t = DEFAULT_MAX_CONFIGURATIONS)]
    pub max_configurations: u64,
    /// Also rewrite `results.json`, `summary.txt` and `latency.svg` in the directory.
    #[arg(long)]
    pub write: bool,
}

/// Upper bound on `--concurrency`: each client is a task with its own connection.
pub const CONCURRENCY_MAX: usize = 1_000;
/// Upper bound on `--keys`.
pub const KEYS_MAX: usize = 10_000;

/// A validated run, as saved in `run.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub db: Db,
    pub workload: WorkloadKind,
    pub nodes: usize,
    pub binary: PathBuf,
    pub time_limit_ms: u64,
    pub concurrency: usize,
    pub rate: f64,
    pub keys: usize,
    pub ops_per_key: u64,
    pub nemesis: Vec<FaultKind>,
    pub nemesis_interval: DurationRange,
    pub nemesis_targets: Vec<Target>,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    pub op_timeout_ms: u64,
    pub seed: u64,
    pub max_configurations: u64,
    pub keep_data: bool,
    #[serde(default)]
    pub unsafe_no_read_index: bool,
    #[serde(default)]
    pub net: NetMode,
}

impl RunConfig {
    pub fn time_limit(&self) -> Duration {
        Duration::from_millis(self.time_limit_ms)
    }

    pub fn op_timeout(&self) -> Duration {
        Duration::from_millis(self.op_timeout_ms)
    }

    /// Member slots: `nodes`, or 5 when grow-shrink may add members.
    pub fn slots(&self) -> usize {
        if self.nemesis.contains(&FaultKind::GrowShrink) {
            self.nodes.max(GROWN_MEMBERS)
        } else {
            self.nodes
        }
    }
}

impl RunConfig {
    /// The `skiff jepsen run` command line that makes the same choices again: the same
    /// flags and seed, so the generator's operations and the nemesis schedule repeat (the
    /// cluster's own timing does not). Printed in `summary.txt` of every run.
    pub fn replay_command(&self) -> String {
        fn value<T: ValueEnum>(v: &T) -> String {
            v.to_possible_value().map(|p| p.get_name().to_string()).unwrap_or_default()
        }
        let nemesis = if self.nemesis.is_empty() {
            "none".to_string()
        } else {
            self.nemesis.iter().map(|f| f.name()).collect::<Vec<_>>().join(",")
        };
        let interval = if self.nemesis_interval.min_ms == self.nemesis_interval.max_ms {
            format!("{}ms", self.nemesis_interval.min_ms)
        } else {
            format!("{}ms..{}ms", self.nemesis_interval.min_ms, self.nemesis_interval.max_ms)
        };
        let targets = self.nemesis_targets.iter().map(value).collect::<Vec<_>>().join(",");
        let mut cmd = format!(
            "skiff jepsen run --db {} --workload {} --nodes {} --time-limit {}ms --concurrency {} \
             --rate {} --keys {} --ops-per-key {} --nemesis {nemesis} --nemesis-interval {interval} \
             --nemesis-targets {targets} --net {} --heartbeat-interval {} --election-timeout {} \
             --op-timeout {}ms --max-configurations {} --seed {}",
            value(&self.db),
            value(&self.workload),
            self.nodes,
            self.time_limit_ms,
            self.concurrency,
            self.rate,
            self.keys,
            self.ops_per_key,
            value(&self.net),
            self.heartbeat_interval_ms,
            self.election_timeout_ms,
            self.op_timeout_ms,
            self.max_configurations,
            self.seed,
        );
        match self.db {
            Db::Etcd => cmd.push_str(&format!(" --etcd-bin {}", self.binary.display())),
            Db::Skiff => cmd.push_str(&format!(" --skiff-bin {}", self.binary.display())),
        }
        if self.unsafe_no_read_index {
            cmd.push_str(" --unsafe-no-read-index");
        }
        if self.keep_data {
            cmd.push_str(" --keep-data");
        }
        cmd
    }
}

/// The size grow-shrink grows the cluster to.
pub const GROWN_MEMBERS: usize = 5;
/// The size grow-shrink never shrinks below.
pub const SHRUNK_MEMBERS_MIN: usize = 3;

impl RunArgs {
    /// Checks the flags and resolves the binary and the seed.
    pub fn validate(&self) -> anyhow::Result<RunConfig> {
        ensure!(
            self.nodes == 3 || self.nodes == 5,
            "--nodes must be 3 or 5, got {}",
            self.nodes
        );
        ensure!(
            (1..=CONCURRENCY_MAX).contains(&self.concurrency),
            "--concurrency must be 1..={CONCURRENCY_MAX}"
        );
        ensure!(
            self.rate.is_finite() && self.rate > 0.0,
            "--rate must be a positive number"
        );
        ensure!(
            (1..=KEYS_MAX).contains(&self.keys),
            "--keys must be 1..={KEYS_MAX}"
        );
        ensure!(self.ops_per_key >= 1, "--ops-per-key must be at least 1");
        ensure!(
            !self.time_limit.is_zero(),
            "--time-limit must be above zero"
        );
        ensure!(
            self.heartbeat_interval >= 1 && self.election_timeout >= 5 * self.heartbeat_interval,
            "--election-timeout ({} ms) must be at least 5 × --heartbeat-interval ({} ms), as etcd requires",
            self.election_timeout,
            self.heartbeat_interval
        );
        ensure!(
            self.op_timeout >= Duration::from_millis(100),
            "--op-timeout must be at least 100ms"
        );
        ensure!(
            !self.nemesis_targets.is_empty(),
            "--nemesis-targets must name at least one target"
        );
        ensure!(
            !self.unsafe_no_read_index || self.db == Db::Skiff,
            "--unsafe-no-read-index is a skiff flag; etcd has no such setting"
        );
        if self.net == NetMode::Netns {
            ensure!(
                !self.nemesis.0.contains(&FaultKind::Delay),
                "--nemesis delay needs --net proxy: delaying packets in the kernel needs tc netem, \
                 which --net netns does not use (nftables can drop packets, not hold them)"
            );
            if let Err(why) = crate::netns::available() {
                bail!("--net netns: {why}");
            }
        }
        let binary = match self.db {
            Db::Etcd => {
                ensure!(
                    self.etcd_bin.is_file(),
                    "--etcd-bin {} is not a file (Debian: apt-get install etcd-server)",
                    self.etcd_bin.display()
                );
                self.etcd_bin.clone()
            }
            Db::Skiff => find_skiff(self.skiff_bin.as_deref())?,
        };
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
        Ok(RunConfig {
            db: self.db,
            workload: self.workload,
            nodes: self.nodes,
            binary,
            time_limit_ms: self.time_limit.as_millis() as u64,
            concurrency: self.concurrency,
            rate: self.rate,
            keys: self.keys,
            ops_per_key: self.ops_per_key,
            nemesis: self.nemesis.0.clone(),
            nemesis_interval: self.nemesis_interval,
            nemesis_targets: self.nemesis_targets.clone(),
            heartbeat_interval_ms: self.heartbeat_interval,
            election_timeout_ms: self.election_timeout,
            op_timeout_ms: self.op_timeout.as_millis() as u64,
            seed,
            max_configurations: self.max_configurations,
            keep_data: self.keep_data,
            unsafe_no_read_index: self.unsafe_no_read_index,
            net: self.net,
        })
    }
}

/// `--skiff-bin`, else the running executable if it is `skiff`, else a `skiff` beside it.
fn find_skiff(explicit: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        ensure!(
            path.is_file(),
            "--skiff-bin {} is not a file",
            path.display()
        );
        return Ok(path.to_path_buf());
    }
    let exe = std::env::current_exe()?;
    if exe.file_stem().is_some_and(|s| s == "skiff") {
        return Ok(exe);
    }
    if let Some(beside) = exe.parent().map(|d| d.join("skiff")) {
        if beside.is_file() {
            return Ok(beside);
        }
    }
    bail!(
        "cannot find the skiff binary beside {}; pass --skiff-bin",
        exe.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The replay line parses back into the same run configuration, whatever the flags.
    #[test]
    fn replay_command_round_trips_through_the_flag_parser() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        let parse = |line: &str| {
            let words = line.split_whitespace().skip(2); // "skiff jepsen"
            let cli = <Cli as clap::Parser>::try_parse_from(words).expect("replay line parses");
            cli.run.validate().expect("valid")
        };
        let etcd = std::path::Path::new("/bin/true");
        for flags in [
            format!("--skiff-bin {}", etcd.display()),
            format!(
                "--db etcd --etcd-bin {} --workload append --nodes 5 --time-limit 90s --rate 12.5 \
                 --nemesis none --nemesis-interval 700ms --nemesis-targets all --keep-data --seed 7",
                etcd.display()
            ),
            format!(
                "--db etcd --etcd-bin {} --nemesis grow-shrink,snapshot,kill --nemesis-interval 2s..3s \
                 --heartbeat-interval 50 --election-timeout 500 --op-timeout 1500ms --keys 3 --ops-per-key 9",
                etcd.display()
            ),
        ] {
            let first = parse(&format!("skiff jepsen run {flags}"));
            let replayed = parse(&first.replay_command());
            assert_eq!(replayed, first, "{flags}");
        }
    }

    #[test]
    fn duration_ranges_parse_and_reject_nonsense() {
        assert_eq!(
            parse_duration_range("5s..15s"),
            Ok(DurationRange {
                min_ms: 5_000,
                max_ms: 15_000
            })
        );
        assert_eq!(
            parse_duration_range("500ms"),
            Ok(DurationRange {
                min_ms: 500,
                max_ms: 500
            })
        );
        assert!(parse_duration_range("15s..5s").is_err());
        assert!(parse_duration_range("10ms").is_err());
        assert!(parse_duration_range("soon").is_err());
    }

    #[test]
    fn fault_sets_accept_none_and_reject_unknown_faults() {
        assert_eq!(parse_fault_set("none"), Ok(FaultSet(vec![])));
        assert_eq!(
            parse_fault_set("kill,move-leader,kill"),
            Ok(FaultSet(vec![FaultKind::Kill, FaultKind::MoveLeader]))
        );
        assert!(parse_fault_set("kill,meteor").is_err());
        assert_eq!(
            parse_fault_set("grow-shrink,snapshot"),
            Ok(FaultSet(vec![FaultKind::GrowShrink, FaultKind::Snapshot]))
        );
        assert!(FaultKind::GrowShrink.is_instantaneous() && !FaultKind::Snapshot.is_instantaneous());
        assert_eq!(
            parse_fault_set("partition-one-way,drop,delay,clock,membership,disk"),
            Ok(FaultSet(vec![
                FaultKind::PartitionOneWay,
                FaultKind::Drop,
                FaultKind::Delay,
                FaultKind::Clock,
                FaultKind::Membership,
                FaultKind::Disk
            ]))
        );
    }
}
