//! skiff-benches: `skiff bench`, a load generator in the style of etcd's `benchmark` tool,
//! against any etcd v3 endpoints.
//!
//! What it owns: the workloads (`workload.rs`: put, range, txn-put), the load driver
//! (`load.rs`: clients sharing connections, total/duration bound, rate limit, progress bar)
//! and the report (`report.rs`: HDR histogram, etcd's summary text, `--json`).
//!
//! What it must never do: reach into `skiff-store` or any other crate of ours. It speaks
//! only the etcd v3 gRPC protocol (through the `etcd-client` crate), so every figure it
//! produces can be measured the same way against real etcd.
//!
//! Where new code goes: a new workload is a `Workload` variant in `cli.rs` plus a `Op`
//! variant in `workload.rs`; comparisons with etcd, failover and micro-benchmarks (issue 5)
//! get their own modules.

mod cli;
mod load;
mod report;
mod workload;

use std::io::Write as _;

pub use cli::{BenchArgs, Workload};
pub use report::{Report, Summary};

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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (operation, report, elapsed) = runtime.block_on(load::run(&args))?;
    let text = if args.json {
        serde_json::to_string_pretty(&report.to_summary(operation, elapsed))? + "\n"
    } else {
        report.to_text(elapsed)
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}
