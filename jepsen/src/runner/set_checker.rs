//! The set checker: every acknowledged add must be in the final read, and the final read
//! must hold nothing that was never added.
//!
//! A set history records each add as a `write` of the element to the key `set` (the
//! history format has no `add`); the final read is kept beside it in `set-final-read.json`.
//! Outcomes:
//! - `ok` add present: fine; `ok` add absent: **lost**;
//! - `info` add present: it happened after all (**recovered**); absent: it did not;
//! - `fail` add present: the client was told it did not happen, yet it did
//!   (**failed but present**: a violation, the error lied);
//! - element present that no one ever tried to add: **unexpected**.
//!
//! A pure function of the history and the final read, so `skiff jepsen check` repeats it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::history::{Function, History, OpKind, Value};

/// Elements listed per category in the evidence; the counts are always complete.
pub const EVIDENCE_ELEMENTS_MAX: usize = 100;

/// `set-final-read.json`: what the final read returned, or why there is none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalRead {
    /// On the history's clock, when the read returned.
    pub time_ns: u64,
    /// The elements read, sorted; `None` if every attempt failed.
    pub elements: Option<Vec<i64>>,
    /// The member that answered, or the last error.
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetVerdict {
    Valid,
    Invalid,
    /// No final read: nothing can be said.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAnalysis {
    pub verdict: SetVerdict,
    pub attempted: usize,
    pub acknowledged: usize,
    pub failed: usize,
    pub indeterminate: usize,
    pub final_read_size: usize,
    /// Acknowledged and present.
    pub ok: usize,
    /// Indeterminate and present.
    pub recovered: usize,
    pub lost_count: usize,
    pub unexpected_count: usize,
    pub failed_but_present_count: usize,
    /// The first [`EVIDENCE_ELEMENTS_MAX`] of each.
    pub lost: Vec<i64>,
    pub unexpected: Vec<i64>,
    pub failed_but_present: Vec<i64>,
}

pub fn check(
    history: &History,
    final_read: Option<&FinalRead>,
) -> crate::history::Result<SetAnalysis> {
    let mut outcomes: BTreeMap<i64, OpKind> = BTreeMap::new();
    for op in history.pair()? {
        if let (Function::Write, Value::Int(element)) = (op.f, op.value) {
            let outcome = match op.outcome {
                OpKind::Invoke => OpKind::Info,
                other => other,
            };
            outcomes.insert(element, outcome);
        }
    }
    let count = |kind| outcomes.values().filter(|&&k| k == kind).count();
    let mut analysis = SetAnalysis {
        verdict: SetVerdict::Unknown,
        attempted: outcomes.len(),
        acknowledged: count(OpKind::Ok),
        failed: count(OpKind::Fail),
        indeterminate: count(OpKind::Info),
        final_read_size: 0,
        ok: 0,
        recovered: 0,
        lost_count: 0,
        unexpected_count: 0,
        failed_but_present_count: 0,
        lost: Vec::new(),
        unexpected: Vec::new(),
        failed_but_present: Vec::new(),
    };
    let Some(elements) = final_read.and_then(|r| r.elements.as_ref()) else {
        return Ok(analysis);
    };
    let mut present: Vec<i64> = elements.clone();
    present.sort_unstable();
    present.dedup();
    analysis.final_read_size = present.len();
    let mut lost = Vec::new();
    let mut unexpected = Vec::new();
    let mut failed_but_present = Vec::new();
    for &e in &present {
        match outcomes.get(&e) {
            None => unexpected.push(e),
            Some(OpKind::Ok) => analysis.ok += 1,
            Some(OpKind::Fail) => failed_but_present.push(e),
            Some(_) => analysis.recovered += 1,
        }
    }
    for (&e, &kind) in &outcomes {
        if kind == OpKind::Ok && present.binary_search(&e).is_err() {
            lost.push(e);
        }
    }
    analysis.lost_count = lost.len();
    analysis.unexpected_count = unexpected.len();
    analysis.failed_but_present_count = failed_but_present.len();
    analysis.verdict = if lost.is_empty() && unexpected.is_empty() && failed_but_present.is_empty()
    {
        SetVerdict::Valid
    } else {
        SetVerdict::Invalid
    };
    lost.truncate(EVIDENCE_ELEMENTS_MAX);
    unexpected.truncate(EVIDENCE_ELEMENTS_MAX);
    failed_but_present.truncate(EVIDENCE_ELEMENTS_MAX);
    analysis.lost = lost;
    analysis.unexpected = unexpected;
    analysis.failed_but_present = failed_but_present;
    Ok(analysis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::HistoryBuilder;

    fn add(b: HistoryBuilder, process: u64, element: i64, outcome: OpKind) -> HistoryBuilder {
        b.invoke(process, Function::Write, Some("set"), Value::Int(element))
            .complete(
                process,
                outcome,
                Function::Write,
                Some("set"),
                Value::Int(element),
            )
    }

    fn read(elements: &[i64]) -> FinalRead {
        FinalRead {
            time_ns: 0,
            elements: Some(elements.to_vec()),
            detail: String::new(),
        }
    }

    fn history() -> History {
        let b = HistoryBuilder::new();
        let b = add(b, 0, 0, OpKind::Ok);
        let b = add(b, 1, 1, OpKind::Info);
        let b = add(b, 2, 2, OpKind::Fail);
        let b = add(b, 0, 3, OpKind::Ok);
        let b = add(b, 3, 4, OpKind::Info);
        b.build()
    }

    #[test]
    fn every_acknowledged_add_present_is_valid() {
        let a = check(&history(), Some(&read(&[0, 1, 3]))).unwrap();
        assert_eq!(a.verdict, SetVerdict::Valid);
        assert_eq!(
            (a.attempted, a.acknowledged, a.failed, a.indeterminate),
            (5, 2, 1, 2)
        );
        assert_eq!((a.ok, a.recovered, a.final_read_size), (2, 1, 3));
    }

    #[test]
    fn lost_unexpected_and_failed_but_present_are_violations() {
        let lost = check(&history(), Some(&read(&[0]))).unwrap();
        assert_eq!(
            (lost.verdict.clone(), lost.lost.clone()),
            (SetVerdict::Invalid, vec![3])
        );
        let unexpected = check(&history(), Some(&read(&[0, 3, 99]))).unwrap();
        assert_eq!(
            (unexpected.verdict.clone(), unexpected.unexpected.clone()),
            (SetVerdict::Invalid, vec![99])
        );
        let failed = check(&history(), Some(&read(&[0, 2, 3]))).unwrap();
        assert_eq!(
            (failed.verdict, failed.failed_but_present),
            (SetVerdict::Invalid, vec![2])
        );
    }

    #[test]
    fn no_final_read_is_unknown() {
        let a = check(&history(), None).unwrap();
        assert_eq!(a.verdict, SetVerdict::Unknown);
        let failed_read = FinalRead {
            time_ns: 0,
            elements: None,
            detail: "no leader".into(),
        };
        assert_eq!(
            check(&history(), Some(&failed_read)).unwrap().verdict,
            SetVerdict::Unknown
        );
    }
}
