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
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }
}
