//! `skiff store` configuration: etcd's flag names, defaults and `ETCD_*` environment
//! variables, so an etcd command line or systemd unit works unchanged.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// etcd's `--max-request-bytes` default: 1.5 MiB.
pub const MAX_REQUEST_BYTES_DEFAULT: usize = 1536 * 1024;
/// gRPC framing allowance added on top of the request limit, as etcd's `grpcOverheadBytes`.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// etcd's default backend quota (2 GiB) used when `--quota-backend-bytes` is 0.
pub const QUOTA_BACKEND_BYTES_DEFAULT: u64 = 2 * 1024 * 1024 * 1024;
/// etcd's largest lease TTL in seconds (`MaxLeaseTTL`).
pub const LEASE_TTL_SECONDS_MAX: i64 = 9_000_000_000;
/// etcd's lease checkpoint interval when none (or 0) is given.
pub const LEASE_CHECKPOINT_INTERVAL_DEFAULT: Duration = Duration::from_secs(5 * 60);

#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: `${name}.etcd`).
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// List of URLs to listen on for client traffic.
    #[arg(long, env = "ETCD_LISTEN_CLIENT_URLS", default_value = "http://localhost:2379")]
    pub listen_client_urls: String,
    /// List of this member's client URLs to advertise to the public.
    #[arg(long, env = "ETCD_ADVERTISE_CLIENT_URLS", default_value = "http://localhost:2379")]
    pub advertise_client_urls: String,
    /// List of URLs to listen on for peer traffic.
    #[arg(long, env = "ETCD_LISTEN_PEER_URLS", default_value = "http://localhost:2380")]
    pub listen_peer_urls: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, env = "ETCD_INITIAL_ADVERTISE_PEER_URLS", default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping (`name=peer-url,...`).
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,
    /// Initial cluster token for the cluster during bootstrap.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_TOKEN", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Raise alarms when backend size exceeds the given quota (0 defaults to low space quota).
    #[arg(long, env = "ETCD_QUOTA_BACKEND_BYTES", default_value_t = 0)]
    pub quota_backend_bytes: u64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = MAX_REQUEST_BYTES_DEFAULT)]
    pub max_request_bytes: usize,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: usize,
    /// Interpret 'auto-compaction-retention' one of: periodic|revision.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_MODE", default_value = "periodic")]
    pub auto_compaction_mode: String,
    /// Auto compaction retention for mvcc key value store. 0 means disable auto compaction.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_RETENTION", default_value = "0")]
    pub auto_compaction_retention: String,
    /// List of URLs to listen on for the metrics and health endpoints (also served on the
    /// client URLs).
    #[arg(long, env = "ETCD_LISTEN_METRICS_URLS")]
    pub listen_metrics_urls: Option<String>,
    /// Duration of periodic watch progress notifications.
    #[arg(long = "experimental-watch-progress-notify-interval", env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL", default_value = "10m", value_parser = humantime_duration)]
    pub watch_progress_notify_interval: Duration,
    /// Currently only supports 'zap' for structured logging (accepted for compatibility).
    #[arg(long, env = "ETCD_LOGGER", default_value = "zap")]
    pub logger: String,
    /// Number of entries for a slow follower to catch up after compacting the raft storage
    /// entries.
    #[arg(long, env = "ETCD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES", default_value_t = 5000)]
    pub experimental_snapshot_catchup_entries: u64,
    /// UNSAFE, for consistency testing only: answer linearizable reads from local state
    /// without a ReadIndex round, so a deposed leader or a lagging follower serves stale
    /// data. `skiff jepsen` uses it to prove its checkers catch a store that cheats.
    #[arg(long, hide = true, default_value_t = false, action = clap::ArgAction::Set)]
    pub unsafe_no_read_index: bool,
    /// Disables fsync, unsafe, will cause data loss (etcd 3.5's flag). For consistency
    /// testing: jepsen's power-loss fault must catch it.
    #[arg(long, env = "ETCD_UNSAFE_NO_FSYNC", default_value_t = false, action = clap::ArgAction::Set)]
    pub unsafe_no_fsync: bool,
    /// Reject reconfiguration requests that would cause quorum loss.
    #[arg(long, env = "ETCD_STRICT_RECONFIG_CHECK", default_value_t = true, action = clap::ArgAction::Set)]
    pub strict_reconfig_check: bool,
    /// Promote a learner to a voting member by itself once it has caught up with the
    /// leader (etcd requires `member promote`). Skiff's own flag.
    #[arg(long, env = "SKIFF_AUTO_PROMOTE_LEARNERS", default_value_t = false, action = clap::ArgAction::Set)]
    pub auto_promote_learners: bool,
    /// Enable the leader to checkpoint the remaining TTL of leases, so a leader change does
    /// not renew them to their full TTL.
    #[arg(long, env = "ETCD_EXPERIMENTAL_ENABLE_LEASE_CHECKPOINT", default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub experimental_enable_lease_checkpoint: bool,
    /// Duration of time between two consecutive lease checkpoints (0: the default).
    #[arg(long, env = "ETCD_EXPERIMENTAL_LEASE_CHECKPOINT_INTERVAL", default_value = "5m", value_parser = humantime_duration)]
    pub experimental_lease_checkpoint_interval: Duration,
    /// Duration of time between cluster corruption check passes (0: never).
    #[arg(long, env = "ETCD_EXPERIMENTAL_CORRUPT_CHECK_TIME", default_value = "0s", value_parser = humantime_duration)]
    pub experimental_corrupt_check_time: Duration,
    /// Enable to check data corruption against the peers when the member starts.
    #[arg(long, env = "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub experimental_initial_corrupt_check: bool,
    /// Configures log level. Only supports debug, info, warn, error, panic, or fatal.
    #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    parse_go_duration(s)
}

/// Parses a Go `time.Duration` string as etcd's flags take it (`10m`, `1h30m`, `500ms`).
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("invalid duration {s:?}"));
        }
        let value: f64 = rest[..digits].parse().map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit_secs = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => return Err(format!("unknown unit {u:?} in duration {s:?}")),
        };
        rest = &rest[unit_len..];
        total += Duration::from_secs_f64(value * unit_secs);
    }
    Ok(total)
}

/// How old revisions are compacted automatically (etcd's `--auto-compaction-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    Disabled,
    /// Keep the last `retention` of history, compacting every `retention / 10` (etcd's
    /// periodic compactor for retention > 1h compacts hourly; shorter ones every retention).
    Periodic { retention: Duration },
    /// Keep the last `revisions` revisions, checked every 5 minutes as etcd does.
    Revision { revisions: i64 },
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client: Vec<SocketAddr>,
    pub advertise_client_urls: Vec<String>,
    pub advertise_peer_urls: Vec<String>,
    pub initial_cluster_token: String,
    pub heartbeat_interval: Duration,
    pub election_ticks: usize,
    pub snapshot_count: u64,
    pub quota_backend_bytes: u64,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub auto_compaction: AutoCompaction,
    pub listen_metrics: Vec<SocketAddr>,
    pub watch_progress_notify_interval: Duration,
    /// This member's ID and its cluster's. For `--initial-cluster-state=new` they derive
    /// from the flags; a member joining an existing cluster learns them from its peers
    /// (the server overwrites these), and after the first start they come from the data dir.
    pub member_id: u64,
    pub cluster_id: u64,
    /// (id, name, peer URLs) of each `--initial-cluster` member.
    pub initial_cluster: Vec<(u64, String, Vec<String>)>,
    pub initial_cluster_state: ClusterState,
    pub listen_peer: Vec<SocketAddr>,
    /// Serve linearizable reads without ReadIndex (a deliberate bug for jepsen's self-test).
    pub unsafe_no_read_index: bool,
    /// Never fsync the raft log (etcd's `--unsafe-no-fsync`).
    pub unsafe_no_fsync: bool,
    pub strict_reconfig_check: bool,
    pub auto_promote_learners: bool,
    /// Raft entries kept behind the compaction point for followers that lag a little.
    pub snapshot_catchup_entries: u64,
    /// How often the leader checkpoints the remaining TTL of leases; `None` when
    /// `--experimental-enable-lease-checkpoint` is off.
    pub lease_checkpoint_interval: Option<Duration>,
    /// How often the leader compares every member's HashKV with its own; `None`: never.
    pub corrupt_check_interval: Option<Duration>,
    /// Compare this member's HashKV with its peers' when it starts.
    pub initial_corrupt_check: bool,
}

/// etcd's `--initial-cluster-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    /// Bootstrap a new cluster from `--initial-cluster`.
    New,
    /// Join a running cluster this member was added to (`member add`).
    Existing,
}

impl StoreArgs {
    pub fn into_config(self) -> Result<StoreConfig, String> {
        if self.heartbeat_interval == 0 {
            return Err("--heartbeat-interval must be > 0".into());
        }
        if self.election_timeout < 5 * self.heartbeat_interval {
            return Err(format!(
                "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
                self.election_timeout, self.heartbeat_interval
            ));
        }
        let data_dir = self.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.etcd", self.name)));
        let listen_client = parse_listen_urls(&self.listen_client_urls, "--listen-client-urls")?;
        let listen_metrics = match &self.listen_metrics_urls {
            Some(urls) if !urls.is_empty() => parse_listen_urls(urls, "--listen-metrics-urls")?,
            _ => Vec::new(),
        };
        let advertise_peer_urls = split_urls(&self.initial_advertise_peer_urls);
        let initial_cluster = self
            .initial_cluster
            .clone()
            .unwrap_or_else(|| format!("{}={}", self.name, self.initial_advertise_peer_urls));
        let members = parse_initial_cluster(&initial_cluster)?;
        match members.iter().find(|(n, _)| *n == self.name) {
            None => {
                return Err(format!(
                    "couldn't find local name {:?} in the initial cluster configuration",
                    self.name
                ))
            }
            Some((_, urls)) => {
                let mut a = urls.clone();
                let mut b = advertise_peer_urls.clone();
                a.sort();
                b.sort();
                if a != b {
                    return Err(format!(
                        "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={} (\"{}\"({}) != \"{}\"({}))",
                        self.name,
                        urls.join(","),
                        self.initial_advertise_peer_urls,
                        a.join(","),
                        self.name,
                        b.join(","),
                        self.name
                    ));
                }
            }
        }
        let initial_cluster_state = match self.initial_cluster_state.as_str() {
            "new" => ClusterState::New,
            "existing" => ClusterState::Existing,
            other => {
                return Err(format!(
                    "invalid value \"{other}\" for ETCD_INITIAL_CLUSTER_STATE: valid values are \"new\" or \"existing\""
                ))
            }
        };
        for (name, urls) in &members {
            for u in urls {
                let url = url::Url::parse(u).map_err(|e| format!("--initial-cluster: invalid URL {u:?} of {name}: {e}"))?;
                if url.scheme() != "http" {
                    return Err(format!("--initial-cluster: {u:?}: only http:// peer URLs are supported"));
                }
            }
        }
        let initial_cluster: Vec<(u64, String, Vec<String>)> = members
            .iter()
            .map(|(name, urls)| (member_id(urls, &self.initial_cluster_token), name.clone(), urls.clone()))
            .collect();
        let mut seen = std::collections::HashSet::new();
        for (id, name, _) in &initial_cluster {
            if !seen.insert(*id) {
                return Err(format!("--initial-cluster: member {name} has the same peer URLs as another member"));
            }
        }
        let member_id = member_id(&advertise_peer_urls, &self.initial_cluster_token);
        let cluster_id = cluster_id(&initial_cluster.iter().map(|(id, _, _)| *id).collect::<Vec<_>>());
        let listen_peer = parse_listen_urls(&self.listen_peer_urls, "--listen-peer-urls")?;
        let auto_compaction = parse_auto_compaction(&self.auto_compaction_mode, &self.auto_compaction_retention)?;
        let quota_backend_bytes =
            if self.quota_backend_bytes == 0 { QUOTA_BACKEND_BYTES_DEFAULT } else { self.quota_backend_bytes };
        if self.max_txn_ops == 0 {
            return Err("--max-txn-ops must be > 0".into());
        }
        Ok(StoreConfig {
            name: self.name,
            data_dir,
            listen_client,
            advertise_client_urls: split_urls(&self.advertise_client_urls),
            advertise_peer_urls,
            initial_cluster_token: self.initial_cluster_token,
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval),
            election_ticks: (self.election_timeout / self.heartbeat_interval) as usize,
            snapshot_count: self.snapshot_count.max(1),
            quota_backend_bytes,
            max_request_bytes: self.max_request_bytes,
            max_txn_ops: self.max_txn_ops,
            auto_compaction,
            listen_metrics,
            watch_progress_notify_interval: self.watch_progress_notify_interval,
            member_id,
            cluster_id,
            initial_cluster,
            initial_cluster_state,
            listen_peer,
            strict_reconfig_check: self.strict_reconfig_check,
            unsafe_no_read_index: self.unsafe_no_read_index,
            unsafe_no_fsync: self.unsafe_no_fsync,
            snapshot_catchup_entries: self.experimental_snapshot_catchup_entries,
            auto_promote_learners: self.auto_promote_learners,
            lease_checkpoint_interval: self.experimental_enable_lease_checkpoint.then(|| {
                // etcd's lessor takes a zero interval as its default.
                if self.experimental_lease_checkpoint_interval.is_zero() {
                    LEASE_CHECKPOINT_INTERVAL_DEFAULT
                } else {
                    self.experimental_lease_checkpoint_interval
                }
            }),
            corrupt_check_interval: Some(self.experimental_corrupt_check_time).filter(|t| !t.is_zero()),
            initial_corrupt_check: self.experimental_initial_corrupt_check,
        })
    }
}

fn split_urls(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_string).collect()
}

fn parse_listen_urls(s: &str, flag: &str) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for raw in split_urls(s) {
        let url = url::Url::parse(&raw).map_err(|e| format!("{flag}: invalid URL {raw:?}: {e}"))?;
        match url.scheme() {
            "http" => {}
            "https" => return Err(format!("{flag}: {raw:?}: TLS is not supported yet; use http://")),
            "unix" | "unixs" => return Err(format!("{flag}: {raw:?}: unix sockets are not supported yet")),
            other => return Err(format!("{flag}: URL scheme must be http, https, unix or unixs: {other}")),
        }
        let host = url.host_str().ok_or_else(|| format!("{flag}: {raw:?} has no host"))?;
        let port = url.port().ok_or_else(|| format!("{flag}: {raw:?} has no port"))?;
        let host = if host == "localhost" { "127.0.0.1" } else { host.trim_matches(|c| c == '[' || c == ']') };
        let addr: SocketAddr = format!("{host}:{port}")
            .parse()
            .or_else(|_| format!("[{host}]:{port}").parse())
            .map_err(|_| format!("{flag}: listen address {raw:?} must be an IP address"))?;
        out.push(addr);
    }
    if out.is_empty() {
        return Err(format!("{flag} must not be empty"));
    }
    Ok(out)
}

fn parse_initial_cluster(s: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut members: Vec<(String, Vec<String>)> = Vec::new();
    for part in split_urls(s) {
        let (name, url) = part
            .split_once('=')
            .ok_or_else(|| format!("--initial-cluster: {part:?} is not in the form name=url"))?;
        match members.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url.to_string()),
            None => members.push((name.to_string(), vec![url.to_string()])),
        }
    }
    Ok(members)
}

fn parse_auto_compaction(mode: &str, retention: &str) -> Result<AutoCompaction, String> {
    match mode {
        "periodic" => {
            if retention == "0" || retention.is_empty() {
                return Ok(AutoCompaction::Disabled);
            }
            // etcd: a bare number is hours.
            let d = match retention.parse::<u64>() {
                Ok(h) => Duration::from_secs(h * 3600),
                Err(_) => parse_go_duration(retention)?,
            };
            if d.is_zero() {
                Ok(AutoCompaction::Disabled)
            } else {
                Ok(AutoCompaction::Periodic { retention: d })
            }
        }
        "revision" => {
            let n: i64 = retention
                .parse()
                .map_err(|_| format!("--auto-compaction-retention {retention:?} must be a revision count"))?;
            if n == 0 {
                Ok(AutoCompaction::Disabled)
            } else {
                Ok(AutoCompaction::Revision { revisions: n })
            }
        }
        other => Err(format!("unknown auto-compaction-mode {other:?}")),
    }
}

/// FNV-1a, 64 bit: a stable hash for deriving IDs (the same inputs give the same member
/// and cluster IDs on every restart and every build).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A member's ID from its sorted peer URLs and the cluster token, as etcd derives it
/// (etcd uses SHA-1; the inputs are the same, the hash need not be).
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let joined = urls.join("");
    let id = fnv1a(&[joined.as_bytes(), token.as_bytes()]);
    id.max(1)
}

pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_be_bytes()).collect();
    fnv1a(&[&bytes]).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_go_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_go_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_go_duration("5x").is_err());
        assert!(parse_go_duration("").is_err());
    }

    #[test]
    fn ids_are_stable_and_depend_on_token() {
        let urls = vec!["http://127.0.0.1:2380".to_string()];
        assert_eq!(member_id(&urls, "t"), member_id(&urls, "t"));
        assert_ne!(member_id(&urls, "t"), member_id(&urls, "u"));
    }

    fn parse(flags: &[&str]) -> StoreConfig {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: StoreArgs,
        }
        let argv = std::iter::once("skiff-store").chain(flags.iter().copied());
        <Cli as clap::Parser>::try_parse_from(argv).unwrap().args.into_config().unwrap()
    }

    #[test]
    fn lease_checkpoint_flags_as_etcd() {
        assert_eq!(parse(&[]).lease_checkpoint_interval, None, "off by default");
        let five_minutes = Some(Duration::from_secs(300));
        assert_eq!(parse(&["--experimental-enable-lease-checkpoint"]).lease_checkpoint_interval, five_minutes);
        assert_eq!(parse(&["--experimental-enable-lease-checkpoint=false"]).lease_checkpoint_interval, None);
        let enabled = ["--experimental-enable-lease-checkpoint=true", "--experimental-lease-checkpoint-interval", "1s"];
        assert_eq!(parse(&enabled).lease_checkpoint_interval, Some(Duration::from_secs(1)));
        let zero = ["--experimental-enable-lease-checkpoint", "--experimental-lease-checkpoint-interval=0s"];
        assert_eq!(parse(&zero).lease_checkpoint_interval, five_minutes, "etcd takes 0 as its default");
        let interval_only = ["--experimental-lease-checkpoint-interval=1s"];
        assert_eq!(parse(&interval_only).lease_checkpoint_interval, None, "an interval alone enables nothing");
    }

    #[test]
    fn corrupt_check_flags_as_etcd() {
        let default = parse(&[]);
        assert_eq!((default.corrupt_check_interval, default.initial_corrupt_check), (None, false));
        let on = parse(&["--experimental-corrupt-check-time", "1m30s", "--experimental-initial-corrupt-check"]);
        assert_eq!((on.corrupt_check_interval, on.initial_corrupt_check), (Some(Duration::from_secs(90)), true));
        assert_eq!(parse(&["--experimental-corrupt-check-time=0s"]).corrupt_check_interval, None, "0 is off");
        assert!(!parse(&["--experimental-initial-corrupt-check=false"]).initial_corrupt_check);
    }

    #[test]
    fn auto_compaction_modes() {
        assert_eq!(parse_auto_compaction("periodic", "0").unwrap(), AutoCompaction::Disabled);
        assert_eq!(
            parse_auto_compaction("periodic", "1").unwrap(),
            AutoCompaction::Periodic { retention: Duration::from_secs(3600) }
        );
        assert_eq!(
            parse_auto_compaction("periodic", "5m").unwrap(),
            AutoCompaction::Periodic { retention: Duration::from_secs(300) }
        );
        assert_eq!(parse_auto_compaction("revision", "1000").unwrap(), AutoCompaction::Revision { revisions: 1000 });
        assert!(parse_auto_compaction("weekly", "1").is_err());
    }
}
