//! The load driver: `--clients` request loops (tokio tasks, one request in flight each)
//! share `--conns` gRPC connections round-robin. The run is bounded by `--total` requests
//! or by `--duration`; `--rate` spaces request starts over all clients.
//!
//! There are no queues between tasks: each loop records its latencies and errors straight
//! into one of [`REPORT_SHARDS`] reports (a short, never-awaited lock), merged at the end.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use etcd_client::{Client, ConnectOptions};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::SeedableRng as _;

use crate::cli::{BenchArgs, Limit, Stop, Workload};
use crate::report::Report;
use crate::workload::Op;

/// A request that takes longer than this counts as an error, so a hung server cannot hold
/// a run open forever.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to establish each gRPC connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client loop waits after a failed request before its next one.
const ERROR_PAUSE: Duration = Duration::from_millis(5);
/// Reports the clients record into. Clients are spread over them so that one histogram
/// (about 150 KiB) serves many clients and the locks are rarely contended.
const REPORT_SHARDS: usize = 16;
/// Message counted for a request cut by [`REQUEST_TIMEOUT`].
const TIMEOUT_MESSAGE: &str = "skiff bench: request timed out";

/// Runs the workload; returns its name, the merged report and the wall time of the run.
pub async fn run(args: &BenchArgs) -> anyhow::Result<(&'static str, Report, Duration)> {
    let (name, op, limit) = match &args.workload {
        Workload::Put(put) => ("put", Op::put(&put.keys), &put.limit),
        Workload::Range(range) => ("range", Op::range(range), &range.limit),
        Workload::TxnPut(txn) => ("txn-put", Op::txn_put(txn), &txn.limit),
        Workload::LeaseKeepalive(lease) => ("lease-keepalive", Op::LeaseKeepalive, &lease.limit),
        other => anyhow::bail!("{other:?} is not a request-loop workload"),
    };
    let conns = connect_all(&args.endpoints, args.conns).await?;
    let (report, elapsed) = run_op(&conns, args.clients, op, limit).await?;
    Ok((name, report, elapsed))
}

/// Opens `conns` gRPC connections to `endpoints`.
pub async fn connect_all(endpoints: &[String], conns: u32) -> anyhow::Result<Vec<Client>> {
    let endpoints: Vec<String> = endpoints.iter().map(|e| with_scheme(e)).collect();
    let mut out = Vec::with_capacity(conns as usize);
    for _ in 0..conns {
        let options = ConnectOptions::new().with_connect_timeout(CONNECT_TIMEOUT);
        let client = Client::connect(&endpoints, Some(options))
            .await
            .with_context(|| format!("connecting to {}", endpoints.join(",")))?;
        out.push(client);
    }
    Ok(out)
}

/// `clients` request loops of `op` over `conns`, bounded by `limit`.
pub async fn run_op(
    conns: &[Client],
    clients: u32,
    op: Op,
    limit: &Limit,
) -> anyhow::Result<(Report, Duration)> {
    anyhow::ensure!(!conns.is_empty(), "no connection");
    let shared = Arc::new(Shared {
        op,
        stop: limit.stop(),
        issued: AtomicU64::new(0),
        pacer: Pacer::new(limit),
        progress: progress_bar(limit.stop()),
        reports: (0..REPORT_SHARDS)
            .map(|_| Mutex::new(Report::new()))
            .collect(),
    });
    let started = Instant::now();
    let deadline = match shared.stop {
        Stop::After(duration) => Some(started + duration),
        Stop::AfterRequests(_) => None,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for client_id in 0..clients as usize {
        let client = conns[client_id % conns.len()].clone();
        tasks.spawn(client_loop(
            Arc::clone(&shared),
            client,
            client_id,
            started,
            deadline,
        ));
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("a client loop panicked")?;
    }
    let elapsed = started.elapsed();
    shared.progress.finish_and_clear();

    let mut report = Report::new();
    for shard in &shared.reports {
        report.merge(&shard.lock().expect("report lock poisoned"));
    }
    Ok((report, elapsed))
}

/// What every client loop reads.
struct Shared {
    op: Op,
    stop: Stop,
    /// Requests started so far (over all clients); with `--total`, the bound.
    issued: AtomicU64,
    pacer: Option<Pacer>,
    progress: ProgressBar,
    reports: Vec<Mutex<Report>>,
}

async fn client_loop(
    shared: Arc<Shared>,
    client: Client,
    client_id: usize,
    started: Instant,
    deadline: Option<Instant>,
) {
    // Seeded by client id: the same flags send the same keys.
    let mut rng = rand::rngs::StdRng::seed_from_u64(client_id as u64);
    let shard = &shared.reports[client_id % REPORT_SHARDS];
    let mut session = match tokio::time::timeout(REQUEST_TIMEOUT, shared.op.open(client)).await {
        Ok(Ok(session)) => session,
        Ok(Err(message)) => {
            return shard
                .lock()
                .expect("report lock poisoned")
                .record_error(&message)
        }
        Err(_) => {
            return shard
                .lock()
                .expect("report lock poisoned")
                .record_error(TIMEOUT_MESSAGE)
        }
    };
    loop {
        let seq = shared.issued.fetch_add(1, Ordering::Relaxed);
        if let Stop::AfterRequests(total) = shared.stop {
            if seq >= total {
                break;
            }
        }
        if let Some(pacer) = &shared.pacer {
            pacer.wait().await;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let request_started = Instant::now();
        let result = tokio::time::timeout(
            REQUEST_TIMEOUT,
            shared.op.execute(&mut session, seq, &mut rng),
        )
        .await;
        let latency = request_started.elapsed();
        let failed = !matches!(result, Ok(Ok(())));
        {
            let mut report = shard.lock().expect("report lock poisoned");
            match result {
                Ok(Ok(())) => report.record(latency),
                Ok(Err(message)) => report.record_error(&message),
                Err(_) => report.record_error(TIMEOUT_MESSAGE),
            }
        }
        if failed {
            // A request that fails at once (a dead stream, a refused connection) must not
            // turn the loop into a spin that starves the members of CPU.
            tokio::time::sleep(ERROR_PAUSE).await;
        }
        match shared.stop {
            Stop::AfterRequests(_) => shared.progress.inc(1),
            Stop::After(_) => shared
                .progress
                .set_position(started.elapsed().as_millis() as u64),
        }
    }
}

/// Adds `http://` to a bare `host:port`, as etcd's tools accept both.
pub fn with_scheme(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

/// Progress on stderr; hidden when stderr is not a terminal (CI logs, pipes).
pub fn progress_bar(stop: Stop) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (len, template) = match stop {
        Stop::AfterRequests(total) => {
            (total, "{bar:40} {pos}/{len} requests, {per_sec}, eta {eta}")
        }
        Stop::After(duration) => (duration.as_millis() as u64, "{bar:40} {elapsed}/{duration}"),
    };
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template(template).expect("constant template is valid"));
    bar
}

/// `--rate`: hands out request start times `1/rate` apart, over all clients. A client that
/// falls behind does not earn a burst later (slots never lie in the past).
pub struct Pacer {
    interval: Duration,
    /// tokio's clock, so that tests can run it paused.
    next: Mutex<tokio::time::Instant>,
}

impl Pacer {
    pub fn new(limit: &Limit) -> Option<Pacer> {
        let rate = u32::try_from(limit.rate).unwrap_or(u32::MAX);
        (rate > 0).then(|| Pacer {
            interval: Duration::from_secs(1) / rate,
            next: Mutex::new(tokio::time::Instant::now()),
        })
    }

    pub async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().expect("pacer lock poisoned");
            let slot = (*next).max(tokio::time::Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_endpoints_get_http() {
        assert_eq!(with_scheme("127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(with_scheme("http://a:1"), "http://a:1");
        assert_eq!(with_scheme("https://a:1"), "https://a:1");
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_spaces_requests_by_the_rate() {
        let limit = Limit {
            total: None,
            duration: None,
            rate: 100,
        };
        let pacer = Pacer::new(&limit).expect("rate is set");
        let started = tokio::time::Instant::now();
        for _ in 0..11 {
            pacer.wait().await;
        }
        // Slots at 0, 10, .., 100 ms.
        assert_eq!(started.elapsed(), Duration::from_millis(100));
        assert!(Pacer::new(&Limit {
            total: None,
            duration: None,
            rate: 0
        })
        .is_none());
    }
}
