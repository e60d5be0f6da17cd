//! Smoke runs of `skiff jepsen run` (issue 4): a short register run with kill faults against
//! a 3-member cluster, on skiff and on the reference etcd. Each must be linearizable, must
//! have killed at least one member, and `skiff jepsen check` must reach the same verdict from
//! the saved directory. The skiff run also shows the check can fail: a copy of its history
//! with one read altered to a value nobody wrote must be judged not linearizable (exit 1).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{must_find_binary, run_bounded, Output};

/// Bound on one run: 15 s of workload, cluster start (a debug skiff or etcd: a few
/// seconds), the tail of operations still in flight (at most --op-timeout) and checking.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on `skiff jepsen check` over a 15 s history.
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

fn skiff_jepsen(args: &[&str], results: &Path, timeout: Duration) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff"));
    cmd.arg("jepsen").args(args).arg(results);
    run_bounded(cmd, None, timeout).unwrap()
}

/// Runs register with kills against `db` and returns the parsed `results.json`.
fn must_run_register_with_kills(db: &str, extra: &[&str], results: &Path) -> Value {
    let mut args = vec![
        "run",
        "--db",
        db,
        "--workload",
        "register",
        "--nodes",
        "3",
        "--time-limit",
        "15s",
        "--nemesis",
        "kill",
        "--nemesis-interval",
        "2s..3s",
        "--nemesis-targets",
        "leader,random",
        "--concurrency",
        "6",
        "--rate",
        "80",
        "--heartbeat-interval",
        "50",
        "--election-timeout",
        "500",
        "--op-timeout",
        "3s",
        "--seed",
        "4",
    ];
    args.extend_from_slice(extra);
    args.push("--results-dir");
    let out = skiff_jepsen(&args, results, RUN_TIMEOUT);
    assert_eq!(
        out.code,
        Some(0),
        "skiff jepsen run against {db} was not valid:\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("verdict: VALID"), "{}", out.stdout);
    let text = std::fs::read_to_string(results.join("results.json")).unwrap();
    let parsed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed["valid"], "valid", "{text}");
    assert_eq!(
        parsed["checkers"]["linearizable"]["verdict"]["verdict"], "linearizable",
        "{text}"
    );
    let kills = parsed["faults_by_kind"]["kill"].as_u64().unwrap_or(0);
    assert!(kills >= 1, "no kill was injected:\n{}", out.stdout);
    let ok = parsed["ops"]["ok"].as_u64().unwrap();
    assert!(ok >= 100, "only {ok} ok operations:\n{}", out.stdout);
    for file in [
        "history.jsonl",
        "nemesis.jsonl",
        "run.json",
        "summary.txt",
        "latency.svg",
        "members/m1/member.log",
    ] {
        assert!(
            results.join(file).is_file(),
            "{file} missing from the results dir"
        );
    }
    let svg = std::fs::read_to_string(results.join("latency.svg")).unwrap();
    assert!(
        svg.contains("<title>kill "),
        "the plot shades no kill window"
    );

    let replay = skiff_jepsen(&["check"], results, CHECK_TIMEOUT);
    assert_eq!(
        replay.code,
        Some(0),
        "check disagrees with run:\n{}{}",
        replay.stdout,
        replay.stderr
    );
    assert!(
        replay.stdout.contains("linearizable: yes"),
        "{}",
        replay.stdout
    );
    parsed
}

/// Copies the files `check` needs, with the first ok read of a written value changed to a
/// value that was never written.
fn must_copy_with_impossible_read(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for file in ["run.json", "nemesis.jsonl"] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
    let history = std::fs::read_to_string(from.join("history.jsonl")).unwrap();
    let mut altered = false;
    let lines: Vec<String> = history
        .lines()
        .map(|line| {
            let mut op: Value = serde_json::from_str(line).unwrap();
            if !altered && op["type"] == "ok" && op["f"] == "read" && op["value"].is_i64() {
                op["value"] = Value::from(999_999_999_i64);
                altered = true;
            }
            op.to_string()
        })
        .collect();
    assert!(altered, "the history has no ok read of a value");
    std::fs::write(to.join("history.jsonl"), lines.join("\n") + "\n").unwrap();
}

#[test]
fn jepsen_register_with_kills_on_skiff_is_linearizable_and_a_bad_read_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    must_run_register_with_kills("skiff", &[], &results);

    let tampered = dir.path().join("tampered");
    must_copy_with_impossible_read(&results, &tampered);
    let check = skiff_jepsen(&["check"], &tampered, CHECK_TIMEOUT);
    assert_eq!(
        check.code,
        Some(1),
        "an impossible read must be a violation:\n{}{}",
        check.stdout,
        check.stderr
    );
    assert!(
        check.stdout.contains("linearizable: NO"),
        "{}",
        check.stdout
    );
    assert!(
        check.stdout.contains("999999999"),
        "the evidence names the bad read:\n{}",
        check.stdout
    );
}

#[test]
fn jepsen_register_with_kills_on_etcd_is_linearizable() {
    let etcd = must_find_binary("etcd").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let etcd = etcd.display().to_string();
    must_run_register_with_kills("etcd", &["--etcd-bin", &etcd], &results);
}
