//! `skiff`: the one binary. Each mode is a subcommand; see README.md.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "skiff", version, about = "Kubernetes rebuilt in Rust around an etcd-compatible Raft store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an etcd v3 compatible store member (takes etcd's flags and ETCD_* variables).
    Store(Box<skiff_store::config::StoreArgs>),
    /// Start a store member (in-process, data in DIR/store) and the Kubernetes API server,
    /// write DIR/kubeconfig and print the kubectl line to use. With --etcd-servers, use
    /// those etcd endpoints instead of starting a store.
    Up(Box<UpArgs>),
    /// Run the Kubernetes API server alone, against the etcd endpoints in --etcd-servers.
    Apiserver(Box<skiff_apiserver::ApiserverArgs>),
    /// Snapshot tools.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Load generator in the style of etcd's `benchmark` tool, against any etcd endpoints.
    Bench(skiff_benches::BenchArgs),
    /// Consistency and fault-injection testing (skiff-jepsen).
    #[command(subcommand)]
    Jepsen(JepsenCommand),
}

#[derive(clap::Args)]
struct UpArgs {
    #[command(flatten)]
    apiserver: skiff_apiserver::ApiserverArgs,
    /// Client URL of the in-process store member (when --etcd-servers is not given).
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    store_client_url: String,
    /// Peer URL of the in-process store member.
    #[arg(long, default_value = "http://127.0.0.1:2380")]
    store_peer_url: String,
    #[arg(long, default_value = "info")]
    log_level: String,
}

/// `skiff store`'s flags, to configure the in-process member of `skiff up` exactly as the
/// command line would.
#[derive(Parser)]
struct StoreFlags {
    #[command(flatten)]
    args: skiff_store::config::StoreArgs,
}

#[derive(Subcommand)]
enum JepsenCommand {
    /// Start a cluster (skiff or etcd), run a workload while a nemesis injects faults,
    /// check the history and save a results directory. Exit code: 0 valid, 1 invalid,
    /// 2 unknown, 255 the run failed.
    Run(Box<skiff_jepsen::runner::RunArgs>),
    /// Check a saved results directory again (same exit codes as `run`).
    Check(skiff_jepsen::runner::CheckArgs),
    /// Deterministic simulation of a 3–5 member raft cluster in one thread, from seeds:
    /// simulated network, clock and disk, faults, a register workload, the
    /// linearizability checker. Fails on any violation and prints the replay command.
    Sim(skiff_jepsen::sim::SimArgs),
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Restore a member's data directory from a snapshot taken with `etcdctl snapshot save`
    /// against a skiff store.
    Restore {
        /// The snapshot file.
        file: PathBuf,
        /// The data directory to create (must not exist).
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Check a snapshot file's integrity.
    Verify { file: PathBuf },
}

fn init_tracing(level: &str) {
    let level = match level {
        "panic" | "fatal" | "dpanic" => "error",
        other => other,
    };
    let filter = EnvFilter::try_from_env("SKIFF_LOG").unwrap_or_else(|_| EnvFilter::new(format!("{level},raft=warn,h2=warn,hyper=warn,tower=warn")));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// With the `failpoints` feature: arm the failpoints named in `FAILPOINTS` and make any
/// panic abort the process at once, so a failpoint's `panic` action is a crash at exactly
/// that durability step (no unwinding, no destructors, no flush), as `kill -9` there.
#[cfg(feature = "failpoints")]
fn arm_failpoints() {
    std::mem::forget(fail::FailScenario::setup());
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for ctrl-c")?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// `skiff up`: a store member in this process (unless --etcd-servers names one), then the
/// API server on it.
async fn up(mut args: UpArgs) -> anyhow::Result<()> {
    let data_dir = args.apiserver.data_dir.clone();
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    args.apiserver.data_dir = data_dir.clone();
    let mut store = None;
    if args.apiserver.etcd_servers.is_none() {
        let peer = &args.store_peer_url;
        let client = &args.store_client_url;
        let store_dir = data_dir.join("store");
        let flags = StoreFlags::try_parse_from([
            "store".to_string(),
            "--name=default".into(),
            format!("--data-dir={}", store_dir.display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=default={peer}"),
        ])?;
        let config = flags.args.into_config().map_err(|e| anyhow::anyhow!(e))?;
        let running = skiff_store::server::start(config).await?;
        tracing::info!(addrs = ?running.client_addrs, data_dir = %store_dir.display(), "store member serving");
        args.apiserver.etcd_servers = Some(client.clone());
        store = Some(running);
    }
    let config = args.apiserver.into_config().map_err(|e| anyhow::anyhow!(e))?;
    let apiserver = skiff_apiserver::start(config).await?;
    println!("skiff is up: API server https://{}, data in {}", apiserver.addr, data_dir.display());
    println!("kubectl --kubeconfig {} get ns", apiserver.kubeconfig.display());
    shutdown_signal().await?;
    tracing::info!("received a stop signal, stopping");
    apiserver.stop();
    if let Some(s) = store {
        s.server.stop().await;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    #[cfg(feature = "failpoints")]
    arm_failpoints();
    let cli = Cli::parse();
    match cli.command {
        Command::Store(args) => {
            init_tracing(&args.log_level);
            let config = args.into_config().map_err(|e| anyhow::anyhow!(e))?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async move {
                let running = skiff_store::server::start(config).await?;
                tracing::info!(addrs = ?running.client_addrs, "ready to serve client requests");
                shutdown_signal().await?;
                tracing::info!("received a stop signal, stopping");
                running.server.stop().await;
                anyhow::Ok(())
            })
        }
        Command::Up(args) => {
            init_tracing(&args.log_level);
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(up(*args))
        }
        Command::Apiserver(args) => {
            init_tracing("info");
            let config = args.into_config().map_err(|e| anyhow::anyhow!(e))?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async move {
                let running = skiff_apiserver::start(config).await?;
                println!("kubectl --kubeconfig {} get ns", running.kubeconfig.display());
                shutdown_signal().await?;
                running.stop();
                anyhow::Ok(())
            })
        }
        Command::Snapshot(SnapshotCommand::Restore { file, data_dir }) => {
            init_tracing("info");
            skiff_store::server::restore_snapshot(&file, &data_dir)?;
            println!("restored snapshot {} into {}", file.display(), data_dir.display());
            Ok(())
        }
        Command::Bench(args) => skiff_benches::run(args),
        Command::Jepsen(JepsenCommand::Run(args)) => {
            skiff_jepsen::runner::exit(skiff_jepsen::runner::run(*args))
        }
        Command::Jepsen(JepsenCommand::Check(args)) => {
            skiff_jepsen::runner::exit(skiff_jepsen::runner::check(args))
        }
        Command::Jepsen(JepsenCommand::Sim(args)) => skiff_jepsen::sim::main(args),
        Command::Snapshot(SnapshotCommand::Verify { file }) => {
            skiff_store::snapshot::verify(&file)?;
            println!("snapshot {} is intact", file.display());
            Ok(())
        }
    }
}
