use std::collections::HashMap;
use std::time::Instant;

use proptest::prelude::*;

use super::*;
use crate::history::{Error as HistoryError, OpKind, ProcessId};

fn a(key: &str, value: i64) -> MicroOp {
    MicroOp::append(key, value)
}

fn r(key: &str, seen: &[i64]) -> MicroOp {
    MicroOp::read_saw(key, seen)
}

fn h() -> TxnHistoryBuilder {
    TxnHistoryBuilder::new()
}

fn analyse_with(history: &TxnHistory, consistency: ConsistencyModel) -> Analysis {
    let options = Options {
        consistency,
        ..Options::default()
    };
    check(history, &options).expect("well-formed history")
}

fn analyse(history: &TxnHistory) -> Analysis {
    analyse_with(history, ConsistencyModel::StrictSerializable)
}

fn must_be_valid(history: &TxnHistory) -> Analysis {
    let analysis = analyse(history);
    assert!(analysis.valid, "{analysis}");
    analysis
}

/// The evidence of the first anomaly of `kind`; fails if there is none.
fn must_find(analysis: &Analysis, kind: AnomalyKind) -> Anomaly {
    assert!(!analysis.valid);
    analysis
        .anomalies
        .iter()
        .find(|anomaly| anomaly.kind == kind)
        .cloned()
        .unwrap_or_else(|| panic!("expected {kind}, got:\n{analysis}"))
}

fn kinds(steps: &[Step]) -> Vec<DepKind> {
    steps.iter().map(|s| s.kind).collect()
}

#[test]
fn serial_history_is_valid() {
    let history = h()
        .txn(0, OpKind::Ok, &[a("x", 1), r("y", &[])])
        .txn(1, OpKind::Ok, &[r("x", &[1]), a("x", 2), a("y", 1)])
        .txn(
            0,
            OpKind::Ok,
            &[r("x", &[1, 2]), r("y", &[1]), a("y", 2), r("y", &[1, 2])],
        )
        .txn(2, OpKind::Fail, &[a("x", 99)])
        .txn(1, OpKind::Ok, &[r("x", &[1, 2]), r("y", &[1, 2])])
        .build();
    let analysis = must_be_valid(&history);
    assert_eq!((analysis.txns, analysis.committed), (5, 4));
    assert!(analysis.edges > 0, "{analysis}");
    assert!(analysis.anomaly_kinds.is_empty());
}

/// The example of the module documentation, edge by edge.
#[test]
fn the_documented_example_is_valid_with_the_documented_edges() {
    let t4 = [r("x", &[])];
    // T4 runs alongside the others, so that real time does not order it.
    let history = h()
        .invoke(4, &t4)
        .txn(1, OpKind::Ok, &[a("x", 1)])
        .txn(2, OpKind::Ok, &[r("x", &[1]), a("x", 2)])
        .txn(3, OpKind::Ok, &[r("x", &[1, 2])])
        .ok(4, &t4)
        .build();
    let txns = history.pair().unwrap();
    let options = Options::default();
    let mut checker = Checker::new(&txns, &options);
    checker.index_writes().unwrap();
    checker.index_reads().unwrap();
    checker.infer_orders();
    checker.mark_committed();
    checker.add_dependency_edges();
    let mut edges: Vec<(usize, usize, DepKind)> = checker
        .graph
        .edges
        .iter()
        .map(|e| (txns[e.from].id, txns[e.to].id, e.kind))
        .collect();
    edges.sort_by_key(|&(from, to, kind)| (from, to, kind.bit()));
    // Ids: T4 was invoked first, so it is id 0; T1, T2, T3 are ids 1, 2, 3.
    assert_eq!(
        edges,
        vec![
            (0, 1, DepKind::Rw),
            (1, 2, DepKind::Ww),
            (1, 2, DepKind::Wr),
            (2, 3, DepKind::Wr),
        ]
    );
    must_be_valid(&history);
}

#[test]
fn concurrent_transactions_in_some_serial_order_are_valid() {
    // T0 and T1 overlap; T1 read x before T0's append: order T1, T0 explains everything.
    let t0 = [a("x", 1), r("y", &[2])];
    let t1 = [r("x", &[]), a("y", 2)];
    let history = h()
        .invoke(0, &t0)
        .invoke(1, &t1)
        .ok(1, &t1)
        .ok(0, &t0)
        .txn(2, OpKind::Ok, &[r("x", &[1]), r("y", &[2])])
        .build();
    must_be_valid(&history);
}

#[test]
fn info_append_counts_only_once_observed() {
    let unobserved = h()
        .txn(0, OpKind::Info, &[a("x", 1)])
        .txn(1, OpKind::Ok, &[r("x", &[])])
        .build();
    assert_eq!(must_be_valid(&unobserved).committed, 1);

    let observed = h()
        .txn(0, OpKind::Info, &[a("x", 1), a("y", 1)])
        .txn(1, OpKind::Ok, &[r("x", &[1])])
        .build();
    assert_eq!(must_be_valid(&observed).committed, 2);

    // Once seen, it happened: a later read that misses it is stale. T2 read x empty, so
    // it precedes T0 (rw), T0 precedes T1 (wr), and T1 completed before T2 began.
    let stale = h()
        .invoke(0, &[a("x", 1)])
        .txn(1, OpKind::Ok, &[r("x", &[1])])
        .txn(2, OpKind::Ok, &[r("x", &[])])
        .build();
    let analysis = analyse(&stale);
    let anomaly = must_find(&analysis, AnomalyKind::GSingleRealtime);
    assert_eq!(anomaly.cycle.len(), 3, "{anomaly}");
    assert!(analyse_with(&stale, ConsistencyModel::Serializable).valid);
}

#[test]
fn g0_write_cycle() {
    let t0 = [a("x", 1), a("y", 1)];
    let t1 = [a("x", 2), a("y", 2)];
    let history = h()
        .invoke(0, &t0)
        .invoke(1, &t1)
        .ok(0, &t0)
        .ok(1, &t1)
        .txn(2, OpKind::Ok, &[r("x", &[1, 2]), r("y", &[2, 1])])
        .build();
    let analysis = analyse(&history);
    assert_eq!(analysis.anomaly_kinds, vec![AnomalyKind::G0], "{analysis}");
    let anomaly = must_find(&analysis, AnomalyKind::G0);
    assert_eq!(kinds(&anomaly.cycle), vec![DepKind::Ww, DepKind::Ww]);
    let why: Vec<&str> = anomaly.cycle.iter().map(|s| s.why.as_str()).collect();
    assert!(
        why.contains(&r#"T0 appended 1 to "x" and T1 appended 2 right after it"#)
            && why.contains(&r#"T1 appended 2 to "y" and T0 appended 1 right after it"#),
        "{anomaly}"
    );
    assert_eq!(anomaly.txns.len(), 2);
}

#[test]
fn g1a_aborted_read() {
    let history = h()
        .txn(0, OpKind::Fail, &[a("x", 1)])
        .txn(1, OpKind::Ok, &[r("x", &[1])])
        .build();
    let analysis = analyse(&history);
    assert_eq!(analysis.anomaly_kinds, vec![AnomalyKind::G1a]);
    let anomaly = must_find(&analysis, AnomalyKind::G1a);
    assert_eq!(
        anomaly.explanation,
        r#"aborted read: T1 read "x" = [1], which contains 1 (appended by T0, which failed)"#
    );
    assert_eq!(
        anomaly.txns,
        vec![
            r#"T1 = process 1 txn [r "x" [1]] (ok, history index 2..3)"#,
            r#"T0 = process 0 txn [append "x" 1] (fail, history index 0..1)"#,
        ]
    );
}

#[test]
fn g1b_intermediate_read() {
    let t0 = [a("x", 1), a("x", 2)];
    let t1 = [r("x", &[1])];
    let history = h()
        .invoke(0, &t0)
        .invoke(1, &t1)
        .ok(1, &t1)
        .ok(0, &t0)
        .txn(2, OpKind::Ok, &[r("x", &[1, 2])])
        .build();
    let analysis = analyse(&history);
    let anomaly = must_find(&analysis, AnomalyKind::G1b);
    assert!(
        anomaly
            .explanation
            .contains("T0 appended 2 to \"x\" after 1"),
        "{anomaly}"
    );
    // Seeing half of T0 also puts T1 both after (wr) and before (rw) it.
    must_find(&analysis, AnomalyKind::GSingle);
    // A transaction reading its own intermediate state is fine.
    let own = h()
        .txn(0, OpKind::Ok, &[a("x", 1), r("x", &[1]), a("x", 2)])
        .txn(1, OpKind::Ok, &[r("x", &[1, 2])])
        .build();
    must_be_valid(&own);
}

#[test]
fn g1c_circular_information_flow() {
    let t0 = [a("x", 1), r("y", &[1])];
    let t1 = [a("y", 1), r("x", &[1])];
    let history = h()
        .invoke(0, &t0)
        .invoke(1, &t1)
        .ok(0, &t0)
        .ok(1, &t1)
        .build();
    let analysis = analyse(&history);
    assert_eq!(analysis.anomaly_kinds, vec![AnomalyKind::G1c], "{analysis}");
    let anomaly = must_find(&analysis, AnomalyKind::G1c);
    assert_eq!(kinds(&anomaly.cycle), vec![DepKind::Wr, DepKind::Wr]);
}

/// T1 sees T0's append to y but not its append to x.
fn read_skew() -> TxnHistory {
    let t0 = [a("x", 1), a("y", 1)];
    let t1 = [r("x", &[]), r("y", &[1])];
    h().invoke(0, &t0)
        .invoke(1, &t1)
        .ok(0, &t0)
        .ok(1, &t1)
        .txn(2, OpKind::Ok, &[r("x", &[1]), r("y", &[1])])
        .build()
}

#[test]
fn g_single_read_skew() {
    let analysis = analyse(&read_skew());
    assert_eq!(
        analysis.anomaly_kinds,
        vec![AnomalyKind::GSingle],
        "{analysis}"
    );
    let anomaly = must_find(&analysis, AnomalyKind::GSingle);
    assert_eq!(kinds(&anomaly.cycle), vec![DepKind::Rw, DepKind::Wr]);
}

#[test]
fn evidence_reads_as_text() {
    let analysis = analyse(&read_skew());
    let text = must_find(&analysis, AnomalyKind::GSingle).to_string();
    assert_eq!(
        text,
        r#"G-single: read skew: a cycle with exactly one anti-dependency (rw); T1 -> T0 -> T1
  T1 -rw "x"-> T0: T1 read "x" empty, and T0 appended its first element, 1
  T0 -wr "y"-> T1: T1 read "y" ending in 1, which T0 appended
  where T1 = process 1 txn [r "x" [], r "y" [1]] (ok, history index 1..3)
  where T0 = process 0 txn [append "x" 1, append "y" 1] (ok, history index 0..2)
"#
    );
    let summary = analysis.to_string();
    assert!(
        summary.starts_with(
            "invalid (StrictSerializable): G-single ×1; 3 transactions (3 took effect)"
        ),
        "{summary}"
    );
}

#[test]
fn g2_item_write_skew() {
    let t0 = [r("x", &[]), a("y", 1)];
    let t1 = [r("y", &[]), a("x", 1)];
    let history = h()
        .invoke(0, &t0)
        .invoke(1, &t1)
        .ok(0, &t0)
        .ok(1, &t1)
        .txn(2, OpKind::Ok, &[r("x", &[1]), r("y", &[1])])
        .build();
    let analysis = analyse(&history);
    assert_eq!(
        analysis.anomaly_kinds,
        vec![AnomalyKind::G2Item],
        "{analysis}"
    );
    let anomaly = must_find(&analysis, AnomalyKind::G2Item);
    assert_eq!(kinds(&anomaly.cycle), vec![DepKind::Rw, DepKind::Rw]);
    assert!(analysis.notes.is_empty());
}

/// A read that nothing later contradicts reveals no order: T1's empty read of x stays
/// explainable until some read shows what x held.
#[test]
fn unobserved_order_gives_no_edges() {
    let history = h()
        .txn(0, OpKind::Ok, &[a("x", 1)])
        .txn(1, OpKind::Ok, &[r("x", &[])])
        .build();
    must_be_valid(&history);
}

#[test]
fn stale_read_is_a_violation_of_strict_serializability_only() {
    let history = h()
        .txn(0, OpKind::Ok, &[a("x", 1)])
        .txn(1, OpKind::Ok, &[r("x", &[])])
        .txn(2, OpKind::Ok, &[r("x", &[1])])
        .build();
    let analysis = analyse(&history);
    assert_eq!(
        analysis.anomaly_kinds,
        vec![AnomalyKind::GSingleRealtime],
        "{analysis}"
    );
    let anomaly = must_find(&analysis, AnomalyKind::GSingleRealtime);
    let steps: Vec<String> = anomaly.cycle.iter().map(Step::to_string).collect();
    assert_eq!(
        steps,
        vec![
            "T0 -realtime-> T1: T0 completed (history index 1) before T1 was invoked (history index 2)",
            r#"T1 -rw "x"-> T0: T1 read "x" empty, and T0 appended its first element, 1"#,
        ]
    );
    let serializable = analyse_with(&history, ConsistencyModel::Serializable);
    assert!(serializable.valid, "{serializable}");
    assert_eq!(serializable.consistency, ConsistencyModel::Serializable);
}

#[test]
fn realtime_write_order_violation_is_g0_realtime() {
    // T0 finished before T1 began, yet the order puts T1's element first.
    let history = h()
        .txn(0, OpKind::Ok, &[a("x", 1)])
        .txn(1, OpKind::Ok, &[a("x", 2)])
        .txn(2, OpKind::Ok, &[r("x", &[2, 1])])
        .build();
    let analysis = analyse(&history);
    assert_eq!(
        analysis.anomaly_kinds,
        vec![AnomalyKind::G0Realtime],
        "{analysis}"
    );
}

#[test]
fn incompatible_orders_are_reported_per_key() {
    let history = h()
        .txn(0, OpKind::Ok, &[a("x", 1), a("y", 1)])
        .txn(1, OpKind::Ok, &[a("x", 2)])
        .txn(2, OpKind::Ok, &[r("x", &[1, 2]), r("y", &[1])])
        .txn(3, OpKind::Ok, &[r("x", &[2, 1]), r("y", &[1])])
        .build();
    let analysis = analyse(&history);
    assert_eq!(analysis.anomaly_counts[&AnomalyKind::IncompatibleOrder], 1);
    let anomaly = must_find(&analysis, AnomalyKind::IncompatibleOrder);
    assert_eq!(
        anomaly.explanation,
        r#"T2 read "x" = [1 2] and T3 read [2 1]; neither is a prefix of the other, so no single order of appends explains both"#
    );
}

#[test]
fn internal_inconsistency() {
    let own_append_missing = h().txn(0, OpKind::Ok, &[a("x", 1), r("x", &[])]).build();
    let anomaly = must_find(&analyse(&own_append_missing), AnomalyKind::Internal);
    assert!(
        anomaly
            .explanation
            .contains("must end with its own appends"),
        "{anomaly}"
    );
    let non_repeatable = h()
        .txn(0, OpKind::Ok, &[a("x", 1)])
        .txn(1, OpKind::Ok, &[r("x", &[]), a("x", 2), r("x", &[1, 2])])
        .build();
    must_find(&analyse(&non_repeatable), AnomalyKind::Internal);
}

#[test]
fn garbage_and_duplicate_elements() {
    let garbage = h().txn(0, OpKind::Ok, &[r("x", &[9])]).build();
    let anomaly = must_find(&analyse(&garbage), AnomalyKind::GarbageRead);
    assert!(
        anomaly.explanation.contains("no transaction appended [9]"),
        "{anomaly}"
    );
    let duplicate = h()
        .txn(0, OpKind::Ok, &[a("x", 1)])
        .txn(1, OpKind::Ok, &[r("x", &[1, 1])])
        .build();
    must_find(&analyse(&duplicate), AnomalyKind::DuplicateElements);
}

#[test]
fn malformed_histories_are_errors_not_verdicts() {
    let duplicate_append = h()
        .txn(0, OpKind::Ok, &[a("x", 1)])
        .txn(1, OpKind::Info, &[a("x", 1)])
        .build();
    assert!(matches!(
        check(&duplicate_append, &Options::default()),
        Err(Error::DuplicateAppend {
            value: 1,
            first: 0,
            second: 1,
            ..
        })
    ));
    let no_result = h().txn(0, OpKind::Ok, &[MicroOp::read("x")]).build();
    assert!(matches!(
        check(&no_result, &Options::default()),
        Err(Error::MissingReadResult { txn: 0, .. })
    ));
    let mismatch = h().invoke(0, &[a("x", 1)]).ok(0, &[a("x", 2)]).build();
    assert!(matches!(
        check(&mismatch, &Options::default()),
        Err(Error::History(HistoryError::Mismatch {
            index: 1,
            invoke: 0
        }))
    ));
}

#[test]
fn txn_history_jsonl_round_trips() {
    let history = h()
        .invoke(0, &[a("x", 1), r("y", &[])])
        .ok(0, &[a("x", 1), r("y", &[3, 7])])
        .invoke(1, &[r("x", &[])])
        .build();
    let mut out = Vec::new();
    history.write_jsonl(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text.lines().next().unwrap(),
        r#"{"index":0,"process":0,"type":"invoke","f":"txn","value":[{"f":"append","key":"x","value":1},{"f":"r","key":"y","value":null}],"time_ns":0}"#
    );
    assert!(
        text.contains(r#"{"f":"r","key":"y","value":[3,7]}"#),
        "{text}"
    );
    let back = TxnHistory::read_jsonl(text.as_bytes()).unwrap();
    assert_eq!(back, history);
    let txns = back.pair().unwrap();
    assert_eq!(txns[0].ops[1], r("y", &[3, 7]));
    assert_eq!(
        (txns[1].outcome, txns[1].complete_index),
        (OpKind::Info, None)
    );
    assert!(matches!(
        TxnHistory::read_jsonl("{\"index\":0}\n".as_bytes()),
        Err(HistoryError::Parse { line: 1, .. })
    ));
}

#[test]
fn analysis_serializes_to_json() {
    let analysis = analyse(&read_skew());
    let json = serde_json::to_value(&analysis).unwrap();
    assert_eq!(json["valid"], false);
    assert_eq!(json["consistency"], "strict_serializable");
    assert_eq!(json["anomaly_kinds"][0], "G-single");
    assert_eq!(json["anomaly_counts"]["G-single"], 1);
    assert_eq!(json["anomalies"][0]["cycle"][0]["kind"], "rw");
    assert_eq!(json["anomalies"][0]["cycle"][0]["key"], "x");
    let back: Analysis = serde_json::from_value(json).unwrap();
    assert_eq!(back, analysis);
}

#[test]
fn evidence_is_bounded_per_kind_but_all_are_counted() {
    let mut b = h();
    for i in 0..20 {
        let key = format!("y{i}");
        b = b
            .txn(0, OpKind::Fail, &[a("x", i)])
            .txn(1, OpKind::Ok, &[r(&key, &[1000 + i])]);
    }
    let options = Options {
        anomalies_per_kind_max: 3,
        ..Options::default()
    };
    let analysis = check(&b.build(), &options).unwrap();
    assert_eq!(analysis.anomaly_counts[&AnomalyKind::GarbageRead], 20);
    assert_eq!(
        analysis.anomaly_kinds,
        vec![AnomalyKind::GarbageRead],
        "{analysis}"
    );
    assert_eq!(analysis.anomalies.len(), 3);
}

// ---- simulation: a store that runs each transaction atomically ----

#[derive(Clone, Debug)]
enum Sim {
    Idle,
    Invoked(Vec<MicroOp>),
    /// Applied at some instant between invocation and completion; reads filled in.
    Applied(Vec<MicroOp>),
}

/// Keys in use at once; after `APPENDS_PER_KEY` appends the window moves on, so lists
/// stay short, as Elle's key rotation does.
const KEYS_AT_ONCE: u64 = 3;
const APPENDS_PER_KEY: u64 = 30;

/// Interprets `script` as a schedule of `processes` clients of a strictly serializable
/// list store: each step picks a process, which invokes a transaction, applies it
/// atomically, completes it ok, or ends it in `fail` (before applying) or `info` (before
/// or after applying). A final read of every key is appended.
fn simulate(script: impl IntoIterator<Item = (u8, u8, u8)>, processes: usize) -> TxnHistory {
    let mut store: HashMap<String, Vec<i64>> = HashMap::new();
    let mut states = vec![Sim::Idle; processes];
    let mut next_value = 0i64;
    let mut b = h();
    let key = |n: u64| format!("k{n}");
    for (p, action, arg) in script {
        let p = p as usize % processes;
        let process = p as ProcessId;
        states[p] = match std::mem::replace(&mut states[p], Sim::Idle) {
            Sim::Idle => {
                let base = next_value as u64 / APPENDS_PER_KEY;
                let ops: Vec<MicroOp> = (0..1 + arg % 4)
                    .map(|i| {
                        let k = key(base + (u64::from(arg >> 2) + u64::from(i)) % KEYS_AT_ONCE);
                        if (action >> (i % 8)) & 1 == 1 {
                            next_value += 1;
                            MicroOp::append(&k, next_value)
                        } else {
                            MicroOp::read(&k)
                        }
                    })
                    .collect();
                b = b.invoke(process, &ops);
                Sim::Invoked(ops)
            }
            Sim::Invoked(ops) if action % 16 == 0 => {
                b = b.complete(process, OpKind::Fail, &ops);
                Sim::Idle
            }
            Sim::Invoked(ops) if action % 16 == 1 => {
                b = b.complete(process, OpKind::Info, &ops);
                Sim::Idle
            }
            Sim::Invoked(ops) => {
                let applied = ops
                    .into_iter()
                    .map(|op| match op {
                        MicroOp::Append { key, value } => {
                            store.entry(key.clone()).or_default().push(value);
                            MicroOp::Append { key, value }
                        }
                        MicroOp::Read { key, .. } => {
                            let seen = store.get(&key).cloned().unwrap_or_default();
                            MicroOp::Read {
                                key,
                                value: Some(seen),
                            }
                        }
                    })
                    .collect();
                Sim::Applied(applied)
            }
            Sim::Applied(ops) => {
                let kind = if action % 16 == 2 {
                    OpKind::Info
                } else {
                    OpKind::Ok
                };
                b = b.complete(process, kind, &ops);
                Sim::Idle
            }
        };
    }
    let final_reads: Vec<MicroOp> = store
        .iter()
        .map(|(key, list)| MicroOp::read_saw(key, list))
        .collect();
    b.txn(processes as ProcessId, OpKind::Ok, &final_reads)
        .build()
}

/// A deterministic script (xorshift) for the large tests.
fn script(len: usize, mut seed: u64) -> impl Iterator<Item = (u8, u8, u8)> {
    (0..len).map(move |_| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let bytes = seed.to_le_bytes();
        (bytes[0], bytes[1], bytes[2])
    })
}

#[test]
fn ten_thousand_transactions_are_checked_in_linear_time() {
    // About 3 steps per transaction.
    let history = simulate(script(31_000, 0x5eed), 10);
    let txns = history.pair().unwrap().len();
    assert!(txns > 10_000, "{txns}");
    let started = Instant::now();
    let analysis = must_be_valid(&history);
    let elapsed = started.elapsed();
    assert!(analysis.committed > 8_000, "{analysis}");
    // Generous for a debug build on a busy machine; a quadratic step would take minutes.
    assert!(elapsed.as_secs() < 30, "took {elapsed:?}");

    // The same history with one read turned stale is caught.
    let mut ops = history.ops().to_vec();
    let stale = ops
        .iter()
        .rposition(|op| {
            op.kind == OpKind::Ok
                && op
                    .value
                    .iter()
                    .any(|m| matches!(m, MicroOp::Read { value: Some(v), .. } if v.len() > 3))
        })
        .unwrap();
    for m in &mut ops[stale].value {
        if let MicroOp::Read { value: Some(v), .. } = m {
            if v.len() > 3 {
                v.truncate(1);
                break;
            }
        }
    }
    let mutated = TxnHistory::from_ops(ops).unwrap();
    let analysis = analyse(&mutated);
    assert!(!analysis.valid, "a stale read went unnoticed");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn simulated_strictly_serializable_store_is_judged_valid(
        steps in proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()), 0..300),
    ) {
        let history = simulate(steps, 4);
        let analysis = analyse(&history);
        prop_assert!(analysis.valid, "{}", analysis);
    }
}

/// Every other read loses its newest half: big tangled components, thousands of cycles.
/// The search must still end quickly and keep its evidence bounded.
#[test]
fn a_badly_broken_large_history_is_still_checked_quickly() {
    let history = simulate(script(31_000, 0xbad), 10);
    let mut ops = history.ops().to_vec();
    for (i, op) in ops.iter_mut().enumerate() {
        if op.kind != OpKind::Ok || i % 2 == 0 {
            continue;
        }
        for m in &mut op.value {
            if let MicroOp::Read { value: Some(v), .. } = m {
                v.truncate(v.len() / 2);
            }
        }
    }
    let mutated = TxnHistory::from_ops(ops).unwrap();
    let started = Instant::now();
    let analysis = analyse(&mutated);
    let elapsed = started.elapsed();
    eprintln!(
        "{elapsed:?} {:?} {:?}",
        analysis.anomaly_counts, analysis.notes
    );
    assert!(!analysis.valid);
    assert!(analysis.anomalies.len() <= 14 * DEFAULT_ANOMALIES_PER_KIND_MAX);
    assert!(elapsed.as_secs() < 30, "took {elapsed:?}");
}

#[test]
fn a_g_single_search_cut_short_by_the_budget_is_noted() {
    let t0 = [r("x", &[]), a("y", 1)];
    let t1 = [r("y", &[]), a("x", 1)];
    let history = h()
        .invoke(0, &t0)
        .invoke(1, &t1)
        .ok(0, &t0)
        .ok(1, &t1)
        .txn(2, OpKind::Ok, &[r("x", &[1]), r("y", &[1])])
        .build();
    let options = Options {
        search_steps_max: 0,
        ..Options::default()
    };
    let analysis = check(&history, &options).unwrap();
    assert_eq!(
        analysis.anomaly_kinds,
        vec![AnomalyKind::G2Item],
        "{analysis}"
    );
    assert_eq!(analysis.notes.len(), 1, "{analysis}");
    assert!(analysis.notes[0].contains("search_steps_max"), "{analysis}");
}
