//! skiff-benches: `skiff bench`, a load generator in the style of etcd's `benchmark` tool,
//! against any etcd v3 endpoints.
//!
//! What it owns: the workloads (`workload.rs`: put, range, txn-put, lease-keepalive;
//! `watch.rs`: watch, watch-latency; `kube.rs`: the apiserver's storage mix; `apiserver/`:
//! the Kubernetes API server itself over HTTPS), the load driver
//! (`load.rs`: clients sharing connections, total/duration bound, rate limit, progress bar),
//! the report (`report.rs`: HDR histogram, etcd's summary text, `--json`), and the
//! side-by-side runs against etcd: `cluster.rs` (member processes of skiff or etcd, peak
//! RSS, disk bytes), `compare.rs` (same workloads on both, ratio table), `failover.rs`
//! (kills and pauses under load), `results.rs` (their results JSON, settings line and
//! `--update-doc`), `svg.rs` (bar charts and CDFs, no plotting tools).
//! Criterion micro-benchmarks of the store's internals live in `benches/benches/`.
//!
//! What it must never do: reach into `skiff-store` or any other crate of ours from the
//! library. It speaks only the etcd v3 gRPC protocol (through the `etcd-client` crate) and
//! the Kubernetes API over HTTPS (`apiserver/client.rs`), so every figure it produces can be
//! measured the same way against real etcd or kube-apiserver. The one edge
//! to our crates is `skiff_jepsen::process`, which starts and stops member processes of
//! skiff or etcd alike (the same code the jepsen runner uses); it touches no store. (The criterion
//! benches are the exception by design: they measure the store's public API in-process,
//! and depend on it as dev-dependencies only.)
//!
//! Where new code goes: a new request-loop workload is a `Workload` variant in `cli.rs`
//! plus an `Op` variant in `workload.rs`; a workload with its own driver (streams, mixes)
//! gets its own module and a branch in [`run_workload`].

pub mod apiserver;
mod cli;
pub mod cluster;
pub mod compare;
pub mod failover;
mod kube;
mod load;
mod report;
pub mod results;
pub mod svg;
mod watch;
mod workload;

use std::io::Write as _;

pub use cli::{BenchArgs, Workload};
pub use report::{MultiSummary, Report, RunResult, Section, Summary};

/// Upper bound on `--conns`: each is a gRPC connection of its own.
pub const CONNS_MAX: u32 = 1_024;
/// Upper bound on `--clients`: each is a tokio task with one request in flight.
pub const CLIENTS_MAX: u32 = 10_000;
/// Upper bound on `--key-size` (etcd's own limit on a request is 1.5 MiB).
pub const KEY_BYTES_MAX: u32 = 1 << 20;
/// Upper bound on `--val-size`.
pub const VALUE_BYTES_MAX: u32 = 1 << 20;

/// Runs `skiff bench` and prints the summary on stdout. Request errors are counted in the
/// summary, not returned; an `Err` means the run could not start.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match &args.workload {
        Workload::Compare(compare) => return compare::run(&args, compare),
        Workload::Failover(failover) => return failover::run(&args, failover),
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(run_workload(&args))?;
    let text = if args.json {
        result.to_json()? + "\n"
    } else {
        result.to_text()
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// Runs one workload of `args` against its endpoints and returns the result (what `skiff
/// bench` prints, and what `compare` collects).
pub async fn run_workload(args: &BenchArgs) -> anyhow::Result<RunResult> {
    let conns = || load::connect_all(&args.endpoints, args.conns);
    match &args.workload {
        Workload::Watch(watch) => {
            // Slow watchers get connections of their own: unread data on a shared HTTP/2
            // connection would hold the fast watchers' flow-control window in the client.
            let slow = load::connect_all(&args.endpoints, watch.slow_watchers.min(1)).await?;
            watch::run_watch(&conns().await?, &slow, args.clients, watch).await
        }
        Workload::WatchLatency(latency) => watch::run_watch_latency(&conns().await?, latency).await,
        Workload::Kube(kube) => kube::run(&conns().await?, args.clients, kube).await,
        Workload::Apiserver(apiserver) => apiserver::run(apiserver, args.clients).await,
        Workload::Compare(_) | Workload::Failover(_) => {
            anyhow::bail!("compare and failover start their own clusters")
        }
        _ => {
            let (operation, report, elapsed) = load::run(args).await?;
            Ok(RunResult::single(operation, report, elapsed))
        }
    }
}
