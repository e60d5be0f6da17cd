//! The CI check of issue 5: `skiff bench` runs against a real member and reports what it
//! did. Not a benchmark: only the counts and the report's shape are asserted, never speed.

use std::process::Command;
use std::time::Duration;

use crate::harness::{run_bounded, Output, RunningServer, Server};

/// Bound on one bench run (200 puts, or a 2 s run, take well under this even in debug).
const BENCH_TIMEOUT: Duration = Duration::from_secs(60);

fn must_bench(server: &RunningServer, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff"));
    cmd.arg("bench")
        .arg(format!("--endpoints={}", server.client_url()))
        .args(args);
    let out = run_bounded(cmd, None, BENCH_TIMEOUT).unwrap();
    assert_eq!(
        out.code,
        Some(0),
        "skiff bench {args:?} failed: stdout={} stderr={}",
        out.stdout,
        out.stderr
    );
    out
}

/// Sum of the `[count]` column of etcd's "Response time histogram".
fn histogram_total(summary: &str) -> u64 {
    let histogram = summary
        .split("Response time histogram:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no histogram in:\n{summary}"));
    histogram
        .lines()
        .take_while(|line| line.contains("\t|"))
        .map(|line| {
            let count = line
                .split('[')
                .nth(1)
                .and_then(|rest| rest.split(']').next());
            count
                .and_then(|c| c.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("bad histogram line {line:?}"))
        })
        .sum()
}

fn must_put_200_without_errors(kind: Server) {
    let server = kind.start().unwrap();
    let out = must_bench(&server, &["put", "--total", "200", "--clients", "4"]);
    let summary = out.stdout;
    for section in [
        "Summary:",
        "Total:",
        "Slowest:",
        "Fastest:",
        "Average:",
        "Stddev:",
        "Requests/sec:",
        "Latency distribution:",
    ] {
        assert!(
            summary.contains(section),
            "{} summary lacks {section}:\n{summary}",
            kind.name()
        );
    }
    assert!(
        !summary.contains("Error distribution"),
        "{} had errors:\n{summary}",
        kind.name()
    );
    assert_eq!(histogram_total(&summary), 200, "{summary}");
    assert!(summary.contains("  99.9% in "), "{summary}");
    // The puts are really there: the default key space is one key, written 200 times.
    let keys = server
        .etcdctl(&["get", "", "--prefix", "--keys-only", "-w", "json"], None)
        .unwrap();
    assert!(keys.stdout.contains("\"version\":200"), "{}", keys.stdout);
}

#[test]
fn bench_put_total_against_skiff() {
    must_put_200_without_errors(Server::Skiff);
}

/// Invariant: benches use only the wire protocol, so they run against real etcd too.
#[test]
fn bench_put_total_against_etcd() {
    must_put_200_without_errors(Server::Etcd);
}

#[test]
fn bench_put_duration_json_against_skiff() {
    let server = Server::Skiff.start().unwrap();
    let out = must_bench(
        &server,
        &[
            "--json",
            "--clients",
            "4",
            "put",
            "--duration",
            "2s",
            "--key-space-size",
            "100",
        ],
    );
    let summary: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    assert_eq!(summary["operation"], "put");
    assert_eq!(summary["errors_total"], 0, "{summary}");
    assert!(summary["requests"].as_u64().unwrap() > 0, "{summary}");
    assert!(
        summary["throughput_rps"].as_f64().unwrap() > 0.0,
        "{summary}"
    );
    let elapsed_secs = summary["elapsed_secs"].as_f64().unwrap();
    assert!(
        (2.0..2.0 + BENCH_TIMEOUT.as_secs_f64()).contains(&elapsed_secs),
        "{summary}"
    );
    let latency = &summary["latency_us"];
    assert!(
        latency["p50"].as_u64() <= latency["p99"].as_u64()
            && latency["p99"].as_u64() <= latency["max"].as_u64(),
        "{summary}"
    );
}

#[test]
fn bench_range_and_txn_put_against_skiff() {
    let server = Server::Skiff.start().unwrap();
    for args in [
        &[
            "--clients",
            "2",
            "range",
            "k",
            "--consistency",
            "l",
            "--total",
            "50",
        ][..],
        &[
            "--clients",
            "2",
            "range",
            "a",
            "z",
            "--consistency",
            "s",
            "--total",
            "50",
        ],
        &[
            "--clients",
            "4",
            "txn-put",
            "--total",
            "100",
            "--key-space-size",
            "2",
        ],
    ] {
        let out = must_bench(&server, args);
        assert!(
            !out.stdout.contains("Error distribution"),
            "{args:?}:\n{}",
            out.stdout
        );
        assert_eq!(
            histogram_total(&out.stdout),
            if args.contains(&"txn-put") { 100 } else { 50 },
            "{}",
            out.stdout
        );
    }
}
