//! `skiff bench` flags. Where they overlap with etcd's `benchmark` tool they have its names
//! and defaults (global `--endpoints --conns --clients`; `put --total --key-size --val-size
//! --key-space-size --sequential-keys --rate`; `range KEY [END] --consistency --total`), so its
//! users feel at home.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

/// Load generator in the style of etcd's `benchmark` tool, against any etcd v3 endpoints.
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// gRPC endpoints, comma separated (`host:port` or `http://host:port`).
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// Total number of gRPC connections.
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::CONNS_MAX)))]
    pub conns: u32,
    /// Total number of concurrent request loops; they share the `--conns` connections.
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::CLIENTS_MAX)))]
    pub clients: u32,
    /// Print the result as one JSON object instead of etcd's text summary.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub workload: Workload,
}

#[derive(Subcommand, Clone, Debug)]
pub enum Workload {
    /// Put keys (etcd's `benchmark put`).
    Put(PutArgs),
    /// Range over KEY, or over [KEY, END) (etcd's `benchmark range`).
    Range(RangeArgs),
    /// Kubernetes-style optimistic update: read a key's mod_revision, then a txn that puts
    /// only if the mod_revision is unchanged (retrying on conflict, as the apiserver does).
    TxnPut(TxnPutArgs),
    /// Watchers over `--streams` watch streams, `--clients` writers putting to the watched
    /// keys: watch creation, put, and put-to-event latency, event throughput (etcd's
    /// `benchmark watch`).
    Watch(WatchArgs),
    /// One writer at `--put-rate`, `--watchers` watchers of its key: latency from each put
    /// to its event at every watcher (etcd's `benchmark watch-latency`).
    WatchLatency(WatchLatencyArgs),
    /// Each client grants a lease and sends keep-alives on its stream, one in flight
    /// (etcd's `benchmark lease-keepalive`).
    LeaseKeepalive(LeaseKeepaliveArgs),
    /// An apiserver-like mix on `/registry/pods/`: paginated lists at a revision, watches
    /// from the list revision, creates, optimistic updates and deletes; per-op latencies.
    Kube(KubeArgs),
    /// The Kubernetes API server over HTTPS (`--kubeconfig`, or `--start` for `skiff up`):
    /// list latency of `--pods` pods (whole, paginated, resourceVersion=0), watch fan-out
    /// to `--watchers` watchers, create and update latency under `--clients`/`--rate`.
    Apiserver(crate::apiserver::ApiserverArgs),
    /// Start etcd and skiff with matching settings, run the same workloads against both
    /// with this client, and write a ratio table (markdown, JSON) and SVG plots.
    Compare(crate::compare::CompareArgs),
    /// Kill, pause and restart members of a 3- and 5-member cluster under steady put load
    /// (or, with `--net netns`, cut the leader off by a network partition); unavailability,
    /// time to a new leader, throughput, catch-up, for skiff and etcd.
    Failover(crate::failover::FailoverArgs),
}

/// How long a run lasts: a request count, or a wall-clock duration.
#[derive(Args, Clone, Debug)]
pub struct Limit {
    /// Total number of requests (default 10000 unless --duration is given).
    #[arg(long, conflicts_with = "duration")]
    pub total: Option<u64>,
    /// Run for this long instead of a fixed number of requests (e.g. `2s`, `1m`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Maximum requests per second over all clients (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
}

/// The run's bound, resolved from [`Limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    AfterRequests(u64),
    After(Duration),
}

/// etcd's `benchmark` default for `--total`.
pub const TOTAL_DEFAULT: u64 = 10_000;

impl Limit {
    pub fn stop(&self) -> Stop {
        match (self.total, self.duration) {
            (_, Some(d)) => Stop::After(d),
            (Some(n), None) => Stop::AfterRequests(n),
            (None, None) => Stop::AfterRequests(TOTAL_DEFAULT),
        }
    }
}

#[derive(Args, Clone, Debug)]
pub struct KeyArgs {
    /// Key size of each request, in bytes.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::KEY_BYTES_MAX)))]
    pub key_size: u32,
    /// Value size of each request, in bytes.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(0..=i64::from(crate::VALUE_BYTES_MAX)))]
    pub val_size: u32,
    /// Number of distinct keys written.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub key_space_size: u64,
    /// Write keys 0, 1, 2, .. (modulo the key space) instead of random ones.
    #[arg(long)]
    pub sequential_keys: bool,
}

#[derive(Args, Clone, Debug)]
pub struct PutArgs {
    #[command(flatten)]
    pub limit: Limit,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    /// Linearizable.
    L,
    /// Serializable.
    S,
}

#[derive(Args, Clone, Debug)]
pub struct RangeArgs {
    /// The key (or the start of the range).
    pub key: String,
    /// The end of the range, exclusive.
    pub end: Option<String>,
    /// Linearizable (`l`) or serializable (`s`) reads.
    #[arg(long, value_enum, default_value = "l")]
    pub consistency: Consistency,
    #[command(flatten)]
    pub limit: Limit,
}

#[derive(Args, Clone, Debug)]
pub struct TxnPutArgs {
    #[command(flatten)]
    pub limit: Limit,
    /// Key size of each request, in bytes (keys look like Kubernetes' `/registry/...`).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(24..=i64::from(crate::KEY_BYTES_MAX)))]
    pub key_size: u32,
    /// Value size of each request, in bytes.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(0..=i64::from(crate::VALUE_BYTES_MAX)))]
    pub val_size: u32,
    /// Number of distinct objects updated.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub key_space_size: u64,
    /// Update objects 0, 1, 2, .. in turn instead of random ones.
    #[arg(long)]
    pub sequential_keys: bool,
}

/// Upper bound on watchers of one run (`watch`, `watch-latency`, `kube`).
pub const WATCHERS_MAX: u32 = 100_000;

#[derive(Args, Clone, Debug)]
pub struct WatchArgs {
    /// Watch streams, spread over the `--conns` connections.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=i64::from(WATCHERS_MAX)))]
    pub streams: u32,
    /// Watchers on each stream.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=i64::from(WATCHERS_MAX)))]
    pub watch_per_stream: u32,
    /// Distinct keys watched (and written); watcher i watches key i modulo this.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub watched_key_total: u64,
    /// Bound of the writers' puts: `--total` puts or `--duration`, at most `--rate` per second.
    #[command(flatten)]
    pub limit: Limit,
    /// Key size of each put, in bytes.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(8..=i64::from(crate::KEY_BYTES_MAX)))]
    pub key_size: u32,
    /// Value size of each put, in bytes (the first 8 carry the put's start time).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(8..=i64::from(crate::VALUE_BYTES_MAX)))]
    pub val_size: u32,
    /// Extra watchers (one per stream, on connections of their own) that never read their
    /// stream: etcd's slow watchers. The other watchers' events and latencies show whether
    /// the slow ones starve them.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=i64::from(WATCHERS_MAX)))]
    pub slow_watchers: u32,
}

#[derive(Args, Clone, Debug)]
pub struct WatchLatencyArgs {
    /// Total number of puts.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub put_total: u64,
    /// Puts per second (etcd's default 100); each waits for its event at every watcher.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub put_rate: u64,
    /// Watchers of the written key, spread over `--streams` streams.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=i64::from(WATCHERS_MAX)))]
    pub watchers: u32,
    /// Watch streams the watchers share (each on a connection of `--conns`, round-robin).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=i64::from(WATCHERS_MAX)))]
    pub streams: u32,
    /// Key size, in bytes.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::KEY_BYTES_MAX)))]
    pub key_size: u32,
    /// Value size, in bytes.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(0..=i64::from(crate::VALUE_BYTES_MAX)))]
    pub val_size: u32,
}

#[derive(Args, Clone, Debug)]
pub struct LeaseKeepaliveArgs {
    #[command(flatten)]
    pub limit: Limit,
}

#[derive(Args, Clone, Debug)]
pub struct KubeArgs {
    /// Bound of the mix: `--total` operations or `--duration`, at most `--rate` per second.
    #[command(flatten)]
    pub limit: Limit,
    /// Pods created before the run (the list size).
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub objects: u64,
    /// Size of each pod object, in bytes.
    #[arg(long, default_value_t = 2_048, value_parser = clap::value_parser!(u32).range(0..=i64::from(crate::VALUE_BYTES_MAX)))]
    pub val_size: u32,
    /// Page size of a list (the apiserver's default chunk size is 500).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub list_limit: u64,
    /// Watchers of the whole `/registry/pods/` prefix, each started from a list's revision.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=i64::from(WATCHERS_MAX)))]
    pub watchers: u32,
    /// Relative weights of the operations in the mix.
    #[arg(long, default_value_t = 1)]
    pub list_weight: u32,
    #[arg(long, default_value_t = 2)]
    pub create_weight: u32,
    #[arg(long, default_value_t = 6)]
    pub update_weight: u32,
    #[arg(long, default_value_t = 1)]
    pub delete_weight: u32,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|c| c.bench)
    }

    #[test]
    fn put_defaults_are_etcds() {
        let args = parse(&["put"]).unwrap();
        assert_eq!(args.endpoints, vec!["127.0.0.1:2379"]);
        assert_eq!((args.conns, args.clients, args.json), (1, 1, false));
        let Workload::Put(put) = args.workload else {
            panic!("not put")
        };
        assert_eq!(put.limit.stop(), Stop::AfterRequests(TOTAL_DEFAULT));
        assert_eq!(put.limit.rate, 0);
        assert_eq!(
            (
                put.keys.key_size,
                put.keys.val_size,
                put.keys.key_space_size
            ),
            (8, 8, 1)
        );
        assert!(!put.keys.sequential_keys);
    }

    #[test]
    fn global_flags_go_before_or_after_the_workload() {
        let before = parse(&[
            "--endpoints",
            "a:1,http://b:2",
            "--conns",
            "2",
            "--clients",
            "8",
            "put",
            "--total",
            "200",
        ])
        .unwrap();
        let after = parse(&[
            "put",
            "--total",
            "200",
            "--endpoints=a:1,http://b:2",
            "--conns=2",
            "--clients=8",
        ])
        .unwrap();
        for args in [before, after] {
            assert_eq!(args.endpoints, vec!["a:1", "http://b:2"]);
            assert_eq!((args.conns, args.clients), (2, 8));
            let Workload::Put(put) = args.workload else {
                panic!("not put")
            };
            assert_eq!(put.limit.stop(), Stop::AfterRequests(200));
        }
    }

    #[test]
    fn put_flags() {
        let args = parse(&[
            "--json",
            "put",
            "--duration",
            "2s",
            "--key-size",
            "16",
            "--val-size",
            "256",
            "--key-space-size",
            "1000",
            "--sequential-keys",
            "--rate",
            "500",
        ])
        .unwrap();
        assert!(args.json);
        let Workload::Put(put) = args.workload else {
            panic!("not put")
        };
        assert_eq!(put.limit.stop(), Stop::After(Duration::from_secs(2)));
        assert_eq!(put.limit.rate, 500);
        assert_eq!(
            (
                put.keys.key_size,
                put.keys.val_size,
                put.keys.key_space_size
            ),
            (16, 256, 1000)
        );
        assert!(put.keys.sequential_keys);
    }

    #[test]
    fn range_positional_key_end_and_consistency() {
        let args = parse(&["range", "foo", "fop", "--consistency", "s", "--total", "5"]).unwrap();
        let Workload::Range(range) = args.workload else {
            panic!("not range")
        };
        assert_eq!(
            (range.key.as_str(), range.end.as_deref()),
            ("foo", Some("fop"))
        );
        assert_eq!(range.consistency, Consistency::S);
        assert_eq!(range.limit.stop(), Stop::AfterRequests(5));
        let args = parse(&["range", "foo"]).unwrap();
        let Workload::Range(range) = args.workload else {
            panic!("not range")
        };
        assert_eq!((range.end, range.consistency), (None, Consistency::L));
    }

    #[test]
    fn txn_put_defaults() {
        let args = parse(&["txn-put", "--total", "10"]).unwrap();
        let Workload::TxnPut(txn) = args.workload else {
            panic!("not txn-put")
        };
        assert_eq!(
            (txn.key_size, txn.val_size, txn.key_space_size),
            (32, 1024, 1000)
        );
    }

    #[test]
    fn watch_flags_have_etcds_names() {
        let args = parse(&[
            "watch",
            "--streams",
            "2",
            "--watch-per-stream",
            "3",
            "--watched-key-total",
            "4",
            "--total",
            "50",
        ])
        .unwrap();
        let Workload::Watch(w) = args.workload else {
            panic!("not watch")
        };
        assert_eq!(
            (w.streams, w.watch_per_stream, w.watched_key_total),
            (2, 3, 4)
        );
        assert_eq!(w.slow_watchers, 0);
        assert_eq!(w.limit.stop(), Stop::AfterRequests(50));
        let args = parse(&["watch-latency", "--put-total", "20", "--put-rate", "5"]).unwrap();
        let Workload::WatchLatency(w) = args.workload else {
            panic!("not watch-latency")
        };
        assert_eq!((w.put_total, w.put_rate, w.watchers), (20, 5, 10));
        let args = parse(&["lease-keepalive", "--total", "7"]).unwrap();
        let Workload::LeaseKeepalive(l) = args.workload else {
            panic!("not lease-keepalive")
        };
        assert_eq!(l.limit.stop(), Stop::AfterRequests(7));
        let args = parse(&["kube", "--duration", "2s"]).unwrap();
        let Workload::Kube(k) = args.workload else {
            panic!("not kube")
        };
        assert_eq!((k.objects, k.list_limit, k.watchers), (2_000, 500, 10));
    }

    #[test]
    fn nonsense_is_rejected() {
        for bad in [
            &["put", "--total", "5", "--duration", "1s"][..],
            &["--clients", "0", "put"],
            &["--conns", "0", "put"],
            &["put", "--key-size", "0"],
            &["put", "--key-space-size", "0"],
            &["put", "--duration", "soon"],
            &["range", "k", "--consistency", "x"],
            &["range"],
            &["txn-put", "--key-size", "4"],
            &["watch", "--val-size", "4"],
            &["watch-latency", "--put-rate", "0"],
            &["watch-latency", "--watchers", "0"],
            &["lease-keepalive", "--total", "1", "--duration", "1s"],
            &["kube", "--objects", "0"],
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }
}
