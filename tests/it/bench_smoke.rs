//! The CI check of issue 5: `skiff bench` runs against a real member and reports what it
//! did. Not a benchmark: only the counts and the report's shape are asserted, never speed.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::{run_bounded, Output, RunningServer, Server};

/// Bound on one bench run (200 puts, or a 2 s run, take well under this even in debug).
const BENCH_TIMEOUT: Duration = Duration::from_secs(60);

/// Bound on one `compare` or `failover` run (it starts its own clusters).
const CLUSTER_BENCH_TIMEOUT: Duration = Duration::from_secs(120);

/// `skiff bench`, flags to follow.
fn skiff_bench() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff"));
    cmd.arg("bench");
    cmd
}

/// Runs `cmd` within `timeout` and asserts it exits 0.
fn must_succeed(cmd: Command, timeout: Duration) -> Output {
    let what = format!("{cmd:?}");
    let out = run_bounded(cmd, None, timeout).unwrap();
    assert_eq!(
        out.code,
        Some(0),
        "{what} failed: stdout={} stderr={}",
        out.stdout,
        out.stderr
    );
    out
}

fn must_bench(server: &RunningServer, args: &[&str]) -> Output {
    let mut cmd = skiff_bench();
    cmd.arg(format!("--endpoints={}", server.client_url()))
        .args(args);
    must_succeed(cmd, BENCH_TIMEOUT)
}

fn must_parse_json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn must_read_json(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    must_parse_json(&text)
}

/// Asserts that the etcd-style summary reports no error.
fn assert_no_errors(summary: &str, what: &str) {
    assert!(
        !summary.contains("Error distribution"),
        "{what} had errors:\n{summary}"
    );
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
    assert_no_errors(&summary, kind.name());
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
    let summary = must_parse_json(&out.stdout);
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
        assert_no_errors(&out.stdout, &format!("{args:?}"));
        assert_eq!(
            histogram_total(&out.stdout),
            if args.contains(&"txn-put") { 100 } else { 50 },
            "{}",
            out.stdout
        );
    }
}

/// Runs a `--json` workload with several sections and returns its parsed output, every
/// section without errors.
fn must_bench_sections(server: &RunningServer, args: &[&str]) -> serde_json::Value {
    let value = must_parse_json(&must_bench(server, args).stdout);
    for section in value["sections"].as_array().expect("sections") {
        assert_eq!(section["errors_total"], 0, "{value}");
    }
    value
}

fn section<'a>(value: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    value["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["operation"] == name)
        .unwrap_or_else(|| panic!("no section {name} in {value}"))
}

#[test]
fn bench_watch_against_skiff() {
    let server = Server::Skiff.start().unwrap();
    let value = must_bench_sections(
        &server,
        &[
            "--json",
            "--clients",
            "2",
            "--conns",
            "2",
            "watch",
            "--streams",
            "2",
            "--watch-per-stream",
            "3",
            "--watched-key-total",
            "2",
            "--slow-watchers",
            "2",
            "--duration",
            "2s",
        ],
    );
    assert_eq!(value["operation"], "watch");
    assert_eq!(section(&value, "watch creation")["requests"], 6, "{value}");
    let puts = section(&value, "put")["requests"].as_u64().unwrap();
    assert!(puts > 0, "{value}");
    // Six watchers over two keys: every put reaches three of them, and none is missing
    // (the two slow watchers, which never read, are not counted and starve no one).
    let figures = &value["figures"];
    assert_eq!(
        figures["events_expected"].as_f64(),
        Some(3.0 * puts as f64),
        "{value}"
    );
    assert_eq!(figures["events_missing"].as_f64(), Some(0.0), "{value}");
    assert_eq!(
        section(&value, "event (put start to event)")["requests"].as_u64(),
        Some(3 * puts),
        "{value}"
    );
}

#[test]
fn bench_watch_latency_against_skiff() {
    let server = Server::Skiff.start().unwrap();
    let value = must_bench_sections(
        &server,
        &[
            "--json",
            "watch-latency",
            "--put-total",
            "40",
            "--put-rate",
            "20",
            "--watchers",
            "5",
            "--streams",
            "2",
        ],
    );
    assert_eq!(section(&value, "put")["requests"], 40, "{value}");
    // Every put's event reached every watcher.
    assert_eq!(
        section(&value, "watch (put start to event)")["requests"],
        200,
        "{value}"
    );
    assert_eq!(
        section(&value, "watch (put ack to event)")["requests"],
        200,
        "{value}"
    );
    // 40 puts at 20/s: about 2 s.
    let elapsed = section(&value, "put")["elapsed_secs"].as_f64().unwrap();
    assert!(elapsed >= 1.9, "{value}");
}

#[test]
fn bench_lease_keepalive_against_skiff() {
    let server = Server::Skiff.start().unwrap();
    let out = must_bench(
        &server,
        &["--clients", "4", "lease-keepalive", "--duration", "2s"],
    );
    assert_no_errors(&out.stdout, "lease-keepalive");
    assert!(histogram_total(&out.stdout) > 0, "{}", out.stdout);
    let leases = server.etcdctl(&["lease", "list"], None).unwrap();
    assert!(
        leases.stdout.contains("found 4 leases"),
        "{}",
        leases.stdout
    );
}

#[test]
fn bench_kube_mix_against_skiff() {
    let server = Server::Skiff.start().unwrap();
    let value = must_bench_sections(
        &server,
        &[
            "--json",
            "--clients",
            "4",
            "kube",
            "--duration",
            "2s",
            "--objects",
            "1100",
            "--list-limit",
            "500",
            "--watchers",
            "2",
            "--val-size",
            "256",
        ],
    );
    assert_eq!(value["operation"], "kube");
    for name in ["list", "create", "update", "delete"] {
        assert!(
            section(&value, name)["requests"].as_u64().unwrap() > 0,
            "{name}: {value}"
        );
    }
    // At least 1100 objects at 500 per page: every list takes three pages or more.
    let lists = section(&value, "list")["requests"].as_u64().unwrap();
    let pages = section(&value, "list page")["requests"].as_u64().unwrap();
    assert!(pages >= 3 * lists, "{value}");
    assert_eq!(
        section(&value, "informer list+watch start")["requests"],
        2,
        "{value}"
    );
    assert!(
        value["figures"]["informer_events"].as_f64().unwrap() > 0.0,
        "{value}"
    );
    // The pods are really there, under the apiserver's prefix.
    let pods = server
        .etcdctl(
            &[
                "get",
                "/registry/pods/",
                "--prefix",
                "--limit",
                "1",
                "-w",
                "json",
            ],
            None,
        )
        .unwrap();
    let pods: serde_json::Value = serde_json::from_str(&pods.stdout).unwrap();
    // Creates and deletes move the count around the 1100 written first.
    assert!(pods["count"].as_u64().unwrap() > 500, "{pods}");
}

/// `compare` starts etcd and skiff itself and writes its results dir; one short workload.
#[test]
fn bench_compare_writes_tables_and_plots() {
    crate::harness::must_find_binary("etcd").unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let doc = out_dir.path().join("DOC.md");
    std::fs::write(
        &doc,
        "# doc\n<!-- compare:begin -->\nold\n<!-- compare:end -->\n",
    )
    .unwrap();
    let mut cmd = skiff_bench();
    cmd.args(["--clients", "2", "compare", "--members", "1"])
        .args([
            "--workloads",
            "put,watch-latency",
            "--duration",
            "1s",
            "--watchers",
            "2",
        ])
        .arg("--out")
        .arg(out_dir.path())
        .arg("--update-doc")
        .arg(&doc)
        .arg("--data-root")
        .arg(out_dir.path());
    let out = must_succeed(cmd, CLUSTER_BENCH_TIMEOUT);
    assert!(out.stdout.contains("### 1 member"), "{}", out.stdout);
    assert!(out.stdout.contains("| put | "), "{}", out.stdout);
    let json = must_read_json(&out_dir.path().join("compare.json"));
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{json}");
    for run in runs {
        assert!(run["rss_peak_bytes"][0].as_u64().unwrap() > 0, "{json}");
        assert!(run["disk_bytes"][0].as_u64().unwrap() > 0, "{json}");
        assert!(
            run["workloads"][0]["summary"]["requests"].as_u64().unwrap() > 0,
            "{json}"
        );
    }
    for plot in [
        "ratio-throughput.svg",
        "ratio-p99.svg",
        "ratio-resources.svg",
        "cdf-put.svg",
    ] {
        let svg = std::fs::read_to_string(out_dir.path().join(plot)).unwrap();
        assert!(svg.starts_with("<svg"), "{plot}");
    }
    let doc = std::fs::read_to_string(&doc).unwrap();
    assert!(doc.contains("| put | ") && !doc.contains("old"), "{doc}");
}

/// `failover` kills a skiff leader under load once and reports the round.
#[test]
fn bench_failover_one_round_against_skiff() {
    let out_dir = tempfile::tempdir().unwrap();
    let mut cmd = skiff_bench();
    cmd.args([
        "--clients",
        "3",
        "failover",
        "--dbs",
        "skiff",
        "--members",
        "3",
    ])
    .args(["--modes", "kill-leader", "--rounds", "1"])
    .args(["--steady", "500ms", "--fault", "3s", "--after", "1s"])
    .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
    .arg("--out")
    .arg(out_dir.path())
    .arg("--data-root")
    .arg(out_dir.path());
    must_succeed(cmd, CLUSTER_BENCH_TIMEOUT);
    let json = must_read_json(&out_dir.path().join("failover.json"));
    let round = &json["results"][0]["rounds"][0];
    assert_eq!(json["results"][0]["mode"], "kill-leader", "{json}");
    // A new leader was found while the old one was down, and the old one caught up.
    assert!(round["new_leader_ms"].as_f64().is_some(), "{json}");
    assert!(round["catch_up_ms"].as_f64().is_some(), "{json}");
    assert!(round["after_rps"].as_f64().unwrap() > 0.0, "{json}");
    assert!(out_dir.path().join("failover-unavailability.svg").is_file());
}

/// Bound on the `failover --net netns --modes isolate-leader` run: one 3-member cluster,
/// 1 s + 3 s + 2 s of load, start and stop (about 10 s in debug).
const NETNS_FAILOVER_TIMEOUT: Duration = Duration::from_secs(40);

/// `failover --net netns --modes isolate-leader`: nftables cuts a skiff leader off in its
/// network namespace; the majority elects a new leader during the cut, the old leader
/// catches up after the heal, and the run removes its namespaces.
#[test]
fn bench_failover_isolates_a_skiff_leader_in_network_namespaces() {
    if let Err(why) = skiff_jepsen::netns::available() {
        panic!(
            "network namespaces are needed here (make test installs iproute2 and nftables): {why}"
        );
    }
    let out_dir = tempfile::tempdir().unwrap();
    let mut cmd = skiff_bench();
    cmd.args([
        "--clients",
        "3",
        "failover",
        "--dbs",
        "skiff",
        "--members",
        "3",
    ])
    .args([
        "--modes",
        "isolate-leader",
        "--rounds",
        "1",
        "--net",
        "netns",
    ])
    .args(["--steady", "1s", "--fault", "3s", "--after", "2s"])
    .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
    .arg("--out")
    .arg(out_dir.path())
    .arg("--data-root")
    .arg(out_dir.path());
    let out = must_succeed(cmd, NETNS_FAILOVER_TIMEOUT);
    let json = must_read_json(&out_dir.path().join("failover.json"));
    let round = &json["results"][0]["rounds"][0];
    assert_eq!(json["results"][0]["mode"], "isolate-leader", "{json}");
    assert_eq!(json["settings"]["net"], "netns", "{json}");
    // The majority side replaced the cut-off leader, and it caught up after the heal.
    assert!(round["new_leader_ms"].as_f64().is_some(), "{json}");
    assert!(round["catch_up_ms"].as_f64().is_some(), "{json}");
    assert!(round["after_rps"].as_f64().unwrap() > 0.0, "{json}");
    // The loops pinned to the isolated leader lost it: the cut drops the bench's traffic.
    assert!(round["errors"].as_u64().unwrap() > 0, "{json}");
    let tag = out
        .stderr
        .split("(lab ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no lab tag in:\n{}", out.stderr));
    let namespaces = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let namespaces = String::from_utf8_lossy(&namespaces.stdout);
    assert!(
        !namespaces.contains(&format!("skiff-{tag}-")),
        "namespaces of lab {tag} left behind:\n{namespaces}"
    );
}

/// `isolate-leader` cannot run on loopback: refused before anything starts.
#[test]
fn bench_failover_refuses_isolate_leader_on_loopback() {
    let out_dir = tempfile::tempdir().unwrap();
    let mut cmd = skiff_bench();
    cmd.args(["failover", "--modes", "isolate-leader", "--out"])
        .arg(out_dir.path());
    let out = run_bounded(cmd, None, BENCH_TIMEOUT).unwrap();
    assert_ne!(out.code, Some(0), "{}", out.stdout);
    assert!(out.stderr.contains("--net netns"), "{}", out.stderr);
    assert!(!out_dir.path().join("failover.json").exists());
}

/// `skiff bench apiserver --start`: `skiff up` in a temp dir, tiny sizes. Every section has
/// exactly the requests the flags ask for and no errors, and every watcher saw every event.
#[test]
fn bench_apiserver_against_skiff_up() {
    let mut cmd = skiff_bench();
    cmd.args([
        "--json",
        "--clients=2",
        "apiserver",
        "--start",
        "--pods=50",
        "--list-runs=1",
        "--page-limit=20",
        "--watchers=5",
        "--writers=2",
        "--watch-events=20",
        "--watch-rate=0",
        "--ops=20",
    ]);
    let value = must_parse_json(&must_succeed(cmd, BENCH_TIMEOUT).stdout);
    assert_eq!(value["operation"], "apiserver");
    for s in value["sections"].as_array().expect("sections") {
        assert_eq!(s["errors_total"], 0, "{value}");
    }
    for (name, requests) in [
        ("create (setup)", 50),
        ("list all (no resourceVersion)", 1),
        ("list all (limit pages)", 1),
        // 50 pods at 20 per page.
        ("list page", 3),
        ("list all (resourceVersion=0)", 1),
        ("watch write (update)", 20),
        ("watch event (write start to event, each watcher)", 5 * 20),
        ("create (load)", 10),
        ("update (load)", 10),
    ] {
        assert_eq!(section(&value, name)["requests"], requests, "{name}: {value}");
    }
    assert_eq!(value["figures"]["watch_events_missed"], 0.0, "{value}");
    assert_eq!(value["figures"]["watchers_complete"], 5.0, "{value}");
    assert!(value["figures"]["pod_json_bytes"].as_f64().unwrap() > 1800.0, "{value}");
}
