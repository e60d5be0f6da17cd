use proptest::prelude::*;

use super::*;
use crate::history::{HistoryBuilder, Op, ProcessId, Value};
use crate::model::{KvRegister, Register};

const R: Function = Function::Read;
const W: Function = Function::Write;
const CAS: Function = Function::Cas;
const NIL: Value = Value::Nil;

fn int(v: i64) -> Value {
    Value::Int(v)
}

fn verdict<M: Model>(model: &M, history: &History) -> Verdict {
    check(model, history, &Options::default())
        .expect("well-formed history")
        .verdict
}

fn must_not_linearizable<M: Model>(model: &M, history: &History) -> Evidence {
    match verdict(model, history) {
        Verdict::NotLinearizable { evidence } => evidence,
        other => panic!("expected a violation, got {other:?}"),
    }
}

/// A history builder for one register (no keys).
struct H(HistoryBuilder);

impl H {
    fn new() -> Self {
        H(HistoryBuilder::new())
    }
    fn inv(self, p: ProcessId, f: Function, v: Value) -> Self {
        H(self.0.invoke(p, f, None, v))
    }
    fn ok(self, p: ProcessId, f: Function, v: Value) -> Self {
        H(self.0.complete(p, OpKind::Ok, f, None, v))
    }
    fn fail(self, p: ProcessId, f: Function, v: Value) -> Self {
        H(self.0.complete(p, OpKind::Fail, f, None, v))
    }
    fn info(self, p: ProcessId, f: Function, v: Value) -> Self {
        H(self.0.complete(p, OpKind::Info, f, None, v))
    }
    fn build(self) -> History {
        self.0.build()
    }
}

#[test]
fn sequential_ok_history_is_linearizable() {
    let h = H::new()
        .inv(0, R, NIL)
        .ok(0, R, NIL)
        .inv(0, W, int(1))
        .ok(0, W, int(1))
        .inv(1, R, NIL)
        .ok(1, R, int(1))
        .inv(1, CAS, Value::Pair(1, 2))
        .ok(1, CAS, Value::Pair(1, 2))
        .inv(0, R, NIL)
        .ok(0, R, int(2))
        .build();
    assert_eq!(verdict(&Register, &h), Verdict::Linearizable);
}

#[test]
fn sequential_history_with_a_wrong_read_is_not_linearizable() {
    let h = H::new()
        .inv(0, W, int(1))
        .ok(0, W, int(1))
        .inv(0, W, int(2))
        .ok(0, W, int(2))
        .inv(0, R, NIL)
        .ok(0, R, int(1))
        .build();
    must_not_linearizable(&Register, &h);
}

/// Two overlapping writes; a read overlapping both may see either, and a read after both
/// completed may see either (whichever was linearized last), but the two reads that follow
/// must agree with one order.
#[test]
fn concurrent_writes_let_a_read_see_either_value() {
    for seen in [1, 2] {
        let h = H::new()
            .inv(0, W, int(1))
            .inv(1, W, int(2))
            .inv(2, R, NIL)
            .ok(0, W, int(1))
            .ok(1, W, int(2))
            .ok(2, R, int(seen))
            .build();
        assert_eq!(
            verdict(&Register, &h),
            Verdict::Linearizable,
            "read saw {seen}"
        );
    }
    // After both writes completed, reads seeing 2 then 1 need 1 after 2 and 2 after 1.
    let h = H::new()
        .inv(0, W, int(1))
        .inv(1, W, int(2))
        .ok(0, W, int(1))
        .ok(1, W, int(2))
        .inv(2, R, NIL)
        .ok(2, R, int(2))
        .inv(2, R, NIL)
        .ok(2, R, int(1))
        .build();
    must_not_linearizable(&Register, &h);
}

#[test]
fn stale_read_after_a_completed_write_is_not_linearizable() {
    let h = H::new()
        .inv(0, W, int(1))
        .ok(0, W, int(1))
        .inv(0, W, int(2))
        .ok(0, W, int(2))
        .inv(1, R, NIL)
        .ok(1, R, int(1))
        .build();
    let evidence = must_not_linearizable(&Register, &h);
    assert_eq!(evidence.partition, None);
    assert_eq!(evidence.linearized_prefix.len(), 2, "{evidence:?}");
    assert_eq!(evidence.state_after_prefix, "Some(2)");
    assert_eq!(
        evidence.must_complete.as_deref(),
        Some("process 1 read 1 (ok, history index 4..5)")
    );
    assert_eq!(
        evidence.could_not_linearize_next,
        vec!["process 1 read 1 (ok, history index 4..5): impossible in state Some(2)"]
    );
    // The same read overlapping the second write is fine.
    let h = H::new()
        .inv(0, W, int(1))
        .ok(0, W, int(1))
        .inv(0, W, int(2))
        .inv(1, R, NIL)
        .ok(1, R, int(1))
        .ok(0, W, int(2))
        .build();
    assert_eq!(verdict(&Register, &h), Verdict::Linearizable);
}

#[test]
fn cas_succeeds_only_from_the_expected_value() {
    let base = || H::new().inv(0, W, int(1)).ok(0, W, int(1));
    let good = base()
        .inv(1, CAS, Value::Pair(1, 5))
        .ok(1, CAS, Value::Pair(1, 5))
        .inv(2, R, NIL)
        .ok(2, R, int(5))
        .build();
    assert_eq!(verdict(&Register, &good), Verdict::Linearizable);
    let wrong_expected = base()
        .inv(1, CAS, Value::Pair(7, 5))
        .ok(1, CAS, Value::Pair(7, 5))
        .build();
    must_not_linearizable(&Register, &wrong_expected);
    // A cas on a register never written expects a value that is not there.
    let on_nil = H::new()
        .inv(1, CAS, Value::Pair(0, 5))
        .ok(1, CAS, Value::Pair(0, 5))
        .build();
    must_not_linearizable(&Register, &on_nil);
}

#[test]
fn failed_cas_has_no_effect() {
    let failed = || {
        H::new()
            .inv(0, W, int(1))
            .ok(0, W, int(1))
            .inv(1, CAS, Value::Pair(1, 5))
            .fail(1, CAS, Value::Pair(1, 5))
    };
    let unchanged = failed().inv(2, R, NIL).ok(2, R, int(1)).build();
    assert_eq!(verdict(&Register, &unchanged), Verdict::Linearizable);
    let applied_anyway = failed().inv(2, R, NIL).ok(2, R, int(5)).build();
    must_not_linearizable(&Register, &applied_anyway);
}

#[test]
fn info_write_that_later_appears_is_linearizable() {
    let h = H::new()
        .inv(0, W, int(1))
        .ok(0, W, int(1))
        .inv(1, W, int(2))
        .info(1, W, int(2))
        .inv(0, R, NIL)
        .ok(0, R, int(1))
        .inv(0, R, NIL)
        .ok(0, R, int(2))
        .build();
    assert_eq!(verdict(&Register, &h), Verdict::Linearizable);
}

#[test]
fn info_write_that_never_appears_is_linearizable() {
    let h = H::new()
        .inv(0, W, int(1))
        .ok(0, W, int(1))
        .inv(1, W, int(2))
        .info(1, W, int(2))
        .inv(0, R, NIL)
        .ok(0, R, int(1))
        .inv(2, W, int(3))
        .build();
    assert_eq!(verdict(&Register, &h), Verdict::Linearizable);
}

#[test]
fn info_write_cannot_take_effect_before_its_invocation_or_be_undone() {
    let too_early = H::new()
        .inv(0, R, NIL)
        .ok(0, R, int(2))
        .inv(1, W, int(2))
        .info(1, W, int(2))
        .build();
    must_not_linearizable(&Register, &too_early);
    let undone = H::new()
        .inv(1, W, int(2))
        .info(1, W, int(2))
        .inv(0, R, NIL)
        .ok(0, R, int(2))
        .inv(0, R, NIL)
        .ok(0, R, NIL)
        .build();
    must_not_linearizable(&Register, &undone);
}

#[test]
fn read_of_a_value_nobody_wrote_is_not_linearizable() {
    let h = H::new()
        .inv(0, W, int(1))
        .inv(1, R, NIL)
        .ok(1, R, int(42))
        .ok(0, W, int(1))
        .build();
    let evidence = must_not_linearizable(&Register, &h);
    assert!(evidence.linearized_prefix.len() <= 1, "{evidence:?}");
    assert!(
        evidence
            .could_not_linearize_next
            .iter()
            .any(|s| s.contains("read 42")),
        "{evidence:?}"
    );
}

#[test]
fn per_key_partitioning_finds_the_invalid_key() {
    let h = HistoryBuilder::new()
        .invoke(0, W, Some("a"), int(1))
        .invoke(1, W, Some("b"), int(1))
        .complete(0, OpKind::Ok, W, Some("a"), int(1))
        .complete(1, OpKind::Ok, W, Some("b"), int(1))
        .invoke(0, R, Some("a"), NIL)
        .invoke(1, R, Some("b"), NIL)
        .complete(0, OpKind::Ok, R, Some("a"), int(1))
        // b was written with 1 before this read began: nil is stale.
        .complete(1, OpKind::Ok, R, Some("b"), NIL)
        .build();
    let analysis = check(&KvRegister, &h, &Options::default()).unwrap();
    assert_eq!(analysis.partitions, 2);
    match analysis.verdict {
        Verdict::NotLinearizable { evidence } => {
            assert_eq!(evidence.partition.as_deref(), Some("b"))
        }
        other => panic!("expected key b to be flagged, got {other:?}"),
    }
    // Only b's read is at fault: drop it (the read stays pending, so unknown) and all is well.
    let mut ops = h.ops().to_vec();
    ops.pop();
    let fixed = History::from_ops(ops).unwrap();
    assert_eq!(verdict(&KvRegister, &fixed), Verdict::Linearizable);
}

/// Twelve concurrent writes then a read of a value none of them wrote: proving that takes
/// every subset of the writes in every final state, a few ten thousand configurations.
fn many_concurrent_writes_then_impossible_read() -> History {
    let writers = 12;
    let mut h = H::new();
    for p in 0..writers {
        h = h.inv(p, W, int(p as i64));
    }
    for p in 0..writers {
        h = h.ok(p, W, int(p as i64));
    }
    h.inv(writers, R, NIL).ok(writers, R, int(-1)).build()
}

#[test]
fn search_past_the_bound_is_unknown() {
    let h = many_concurrent_writes_then_impossible_read();
    let bounded = check(
        &Register,
        &h,
        &Options {
            max_configurations: 1_000,
        },
    )
    .unwrap();
    match &bounded.verdict {
        Verdict::Unknown { reason } => assert!(reason.contains("max_configurations"), "{reason}"),
        other => panic!("expected unknown, got {other:?}"),
    }
    assert_eq!(bounded.configurations, 1_000);
    // With the default bound the same history gets a definite answer.
    let full = check(&Register, &h, &Options::default()).unwrap();
    assert!(
        matches!(full.verdict, Verdict::NotLinearizable { .. }),
        "{:?}",
        full.verdict
    );
    assert!(full.configurations > 1_000);
}

#[test]
fn memoization_keeps_a_linearizable_wide_history_cheap() {
    // Same width as above but the read sees a written value: found on the first descent.
    let writers = 12;
    let mut h = H::new();
    for p in 0..writers {
        h = h.inv(p, W, int(p as i64));
    }
    for p in 0..writers {
        h = h.ok(p, W, int(p as i64));
    }
    let h = h.inv(writers, R, NIL).ok(writers, R, int(11)).build();
    let analysis = check(
        &Register,
        &h,
        &Options {
            max_configurations: 1_000,
        },
    )
    .unwrap();
    assert_eq!(analysis.verdict, Verdict::Linearizable);
}

#[test]
fn verdicts_serialize_to_json() {
    assert_eq!(
        serde_json::to_string(&Verdict::Linearizable).unwrap(),
        r#"{"verdict":"linearizable"}"#
    );
    let unknown = Verdict::Unknown {
        reason: "too big".into(),
    };
    assert_eq!(
        serde_json::to_string(&unknown).unwrap(),
        r#"{"verdict":"unknown","reason":"too big"}"#
    );
    let h = H::new().inv(0, R, NIL).ok(0, R, int(3)).build();
    let analysis = check(&Register, &h, &Options::default()).unwrap();
    let json = serde_json::to_value(&analysis).unwrap();
    assert_eq!(json["verdict"]["verdict"], "not_linearizable");
    assert_eq!(
        json["verdict"]["evidence"]["could_not_linearize_next"][0],
        "process 0 read 3 (ok, history index 0..1): impossible in state None"
    );
    let back: Analysis = serde_json::from_value(json).unwrap();
    assert_eq!(back, analysis);
}

#[test]
fn malformed_history_is_an_error_not_a_verdict() {
    let h = H::new().inv(0, R, NIL).inv(0, R, NIL).build();
    assert!(check(&Register, &h, &Options::default()).is_err());
}

// ---- property tests: a simulated linearizable register ----

const PROCESSES: usize = 4;
const KEYS: usize = 2;
/// Never written by the simulation (written values are positive).
const NEVER_WRITTEN: i64 = -1;

#[derive(Clone, Copy, Debug)]
enum Sim {
    Idle,
    /// Invoked, not yet applied: (function, key, argument).
    Invoked(Function, usize, Value),
    /// Applied atomically at some instant: (function, key, result to report, succeeded).
    Applied(Function, usize, Value, bool),
}

/// Interprets `script` as a schedule for `PROCESSES` clients of a real (atomic) multi-key
/// register: each step picks a process, which invokes, applies its operation atomically, or
/// completes it (ok / fail), or crashes (info) before or after applying. The recorded
/// history is linearizable by construction. A final sequential read of key 0 is appended so
/// that every history has an ok read.
fn simulate(script: &[(u8, u8, u8)]) -> Vec<Op> {
    let mut register = [None::<i64>; KEYS];
    let mut processes = [Sim::Idle; PROCESSES];
    let mut next_value = 1i64;
    let mut ops = Vec::new();
    let mut push = |process: usize, kind: OpKind, f: Function, key: usize, value: Value| {
        let index = ops.len();
        let key = Some(format!("k{key}"));
        ops.push(Op {
            index,
            process: process as u64,
            kind,
            f,
            key,
            value,
            time_ns: index as u64 * 10,
        });
    };
    for &(p, action, arg) in script {
        let p = p as usize % PROCESSES;
        processes[p] = match processes[p] {
            Sim::Idle => {
                let key = arg as usize % KEYS;
                let (f, value) = match action % 3 {
                    0 => (R, NIL),
                    1 => (W, Value::Int(next_value)),
                    _ => {
                        // Expect the current value most of the time, so cas often succeeds.
                        let expected = match (arg / 2 % 3, register[key]) {
                            (0, _) | (_, None) => (arg as i64 % 4) + 1,
                            (_, Some(current)) => current,
                        };
                        (CAS, Value::Pair(expected, next_value))
                    }
                };
                next_value += 1;
                push(p, OpKind::Invoke, f, key, value);
                Sim::Invoked(f, key, value)
            }
            Sim::Invoked(f, key, value) if action % 8 == 0 => {
                push(p, OpKind::Info, f, key, value);
                Sim::Idle
            }
            Sim::Invoked(f, key, value) => match (f, value) {
                (Function::Read, _) => {
                    Sim::Applied(f, key, register[key].map_or(NIL, Value::Int), true)
                }
                (Function::Write, Value::Int(v)) => {
                    register[key] = Some(v);
                    Sim::Applied(f, key, value, true)
                }
                (Function::Cas, Value::Pair(expected, new)) => {
                    let succeeded = register[key] == Some(expected);
                    if succeeded {
                        register[key] = Some(new);
                    }
                    Sim::Applied(f, key, value, succeeded)
                }
                _ => unreachable!("the simulation invokes well-formed operations"),
            },
            Sim::Applied(f, key, value, _) if action % 8 == 0 => {
                let value = if f == R { NIL } else { value };
                push(p, OpKind::Info, f, key, value);
                Sim::Idle
            }
            Sim::Applied(f, key, value, succeeded) => {
                push(
                    p,
                    if succeeded { OpKind::Ok } else { OpKind::Fail },
                    f,
                    key,
                    value,
                );
                Sim::Idle
            }
        };
    }
    let reader = PROCESSES;
    push(reader, OpKind::Invoke, R, 0, NIL);
    push(
        reader,
        OpKind::Ok,
        R,
        0,
        register[0].map_or(NIL, Value::Int),
    );
    ops
}

fn script() -> impl Strategy<Value = Vec<(u8, u8, u8)>> {
    proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()), 0..200)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn simulated_linearizable_register_is_judged_linearizable(script in script()) {
        let history = History::from_ops(simulate(&script)).unwrap();
        let analysis = check(&KvRegister, &history, &Options::default()).unwrap();
        prop_assert_eq!(analysis.verdict, Verdict::Linearizable);
    }

    #[test]
    fn simulated_register_with_a_read_of_a_never_written_value_is_not_linearizable(
        script in script(),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut ops = simulate(&script);
        let reads: Vec<usize> = ops.iter().filter(|op| op.kind == OpKind::Ok && op.f == R).map(|op| op.index).collect();
        let mutated = reads[pick.index(reads.len())];
        ops[mutated].value = Value::Int(NEVER_WRITTEN);
        let history = History::from_ops(ops).unwrap();
        let analysis = check(&KvRegister, &history, &Options::default()).unwrap();
        match analysis.verdict {
            Verdict::NotLinearizable { evidence } => {
                let key = history.ops()[mutated].key.clone();
                prop_assert_eq!(evidence.partition, key);
            }
            other => prop_assert!(false, "mutated read at index {} judged {:?}", mutated, other),
        }
    }
}
