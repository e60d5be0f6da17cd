//! The applier's request semantics on a real MVCC store: range options etcdctl cannot
//! express (revision filters, every sort target), and txns with nested txns, range compares
//! and lease compares.

use super::range::apply_range;
use super::txn::{execute, read_only_txn, LeaseChange};
use crate::lease::Lessor;
use crate::mvcc::{MvccConfig, MvccStore};
use crate::proto::etcdserverpb as pb;
use pb::compare::{CompareResult, CompareTarget, TargetUnion};
use pb::range_request::{SortOrder, SortTarget};
use pb::request_op::Request;
use pb::response_op::Response;

fn store() -> (tempfile::TempDir, MvccStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = MvccStore::open(dir.path(), MvccConfig::default()).unwrap();
    (dir, s)
}

fn put(s: &MvccStore, key: &str, value: &str, index: u64) {
    let mut w = s.write();
    w.put(key.as_bytes(), value.as_bytes(), 0).unwrap();
    w.commit(index).unwrap();
}

fn keys(resp: &pb::RangeResponse) -> Vec<String> {
    resp.kvs.iter().map(|kv| String::from_utf8(kv.key.clone()).unwrap()).collect()
}

/// a@2 b@3 c@4 a@5 (a: version 2, create 2), c@6 (version 2).
fn history(s: &MvccStore) {
    put(s, "a", "3", 1);
    put(s, "b", "1", 2);
    put(s, "c", "2", 3);
    put(s, "a", "9", 4);
    put(s, "c", "0", 5);
}

fn range(key: &str, end: &str) -> pb::RangeRequest {
    pb::RangeRequest { key: key.into(), range_end: end.into(), ..Default::default() }
}

#[test]
fn revision_filters_apply_before_limit_and_count_is_unfiltered() {
    let (_d, s) = store();
    history(&s);
    let mut r = range("a", "z");
    r.min_mod_revision = 5;
    let resp = apply_range(&s, &r).unwrap();
    assert_eq!(keys(&resp), ["a", "c"]);
    assert_eq!(resp.count, 3, "etcd counts the range before the revision filters");
    r.max_mod_revision = 5;
    assert_eq!(keys(&apply_range(&s, &r).unwrap()), ["a"]);
    let mut r = range("a", "z");
    r.max_create_revision = 3;
    assert_eq!(keys(&apply_range(&s, &r).unwrap()), ["a", "b"]);
    r.min_create_revision = 3;
    r.limit = 1;
    let resp = apply_range(&s, &r).unwrap();
    assert_eq!(keys(&resp), ["b"]);
    assert!(!resp.more);
}

#[test]
fn every_sort_target_and_order() {
    let (_d, s) = store();
    history(&s);
    let cases = [
        (SortTarget::Key, SortOrder::Descend, vec!["c", "b", "a"]),
        (SortTarget::Version, SortOrder::Ascend, vec!["b", "a", "c"]),
        (SortTarget::Create, SortOrder::Descend, vec!["c", "b", "a"]),
        (SortTarget::Mod, SortOrder::Ascend, vec!["b", "a", "c"]),
        (SortTarget::Value, SortOrder::Ascend, vec!["c", "b", "a"]),
        // A non-key target without an order sorts ascending, as etcd does.
        (SortTarget::Mod, SortOrder::None, vec!["b", "a", "c"]),
    ];
    for (target, order, want) in cases {
        let mut r = range("a", "z");
        r.sort_target = target as i32;
        r.sort_order = order as i32;
        assert_eq!(keys(&apply_range(&s, &r).unwrap()), want, "{target:?} {order:?}");
    }
    let mut r = range("a", "z");
    r.sort_target = SortTarget::Mod as i32;
    r.sort_order = SortOrder::Descend as i32;
    r.limit = 2;
    r.keys_only = true;
    let resp = apply_range(&s, &r).unwrap();
    assert_eq!(keys(&resp), ["c", "a"]);
    assert!(resp.more);
    assert!(resp.kvs.iter().all(|kv| kv.value.is_empty()));
    let mut r = range("a", "z");
    r.count_only = true;
    let resp = apply_range(&s, &r).unwrap();
    assert!(resp.kvs.is_empty());
    assert_eq!(resp.count, 3);
}

fn cmp(key: &str, end: &str, target: CompareTarget, result: CompareResult, union: TargetUnion) -> pb::Compare {
    pb::Compare {
        key: key.into(),
        range_end: end.into(),
        target: target as i32,
        result: result as i32,
        target_union: Some(union),
    }
}

fn put_op(key: &str, value: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(Request::RequestPut(pb::PutRequest { key: key.into(), value: value.into(), ..Default::default() })),
    }
}

fn range_op(key: &str) -> pb::RequestOp {
    pb::RequestOp { request: Some(Request::RequestRange(range(key, ""))) }
}

#[test]
fn range_compares_hold_for_every_key_in_the_range() {
    let (_d, s) = store();
    history(&s);
    // Every key in [a, z) has mod revision > 1: true. Every key has version 2: false (b).
    let all_newer = cmp("a", "z", CompareTarget::Mod, CompareResult::Greater, TargetUnion::ModRevision(1));
    let all_v2 = cmp("a", "z", CompareTarget::Version, CompareResult::Equal, TargetUnion::Version(2));
    let t = pb::TxnRequest { compare: vec![all_newer.clone()], success: vec![range_op("a")], failure: vec![] };
    assert!(read_only_txn(&s, &t).unwrap().succeeded);
    let t = pb::TxnRequest { compare: vec![all_newer, all_v2], success: vec![range_op("a")], failure: vec![] };
    assert!(!read_only_txn(&s, &t).unwrap().succeeded);
    // A value compare on a missing key is false; a version compare treats it as 0.
    let missing_value = cmp("zz", "", CompareTarget::Value, CompareResult::NotEqual, TargetUnion::Value(b"x".to_vec()));
    let missing_version = cmp("zz", "", CompareTarget::Version, CompareResult::Equal, TargetUnion::Version(0));
    assert!(!read_only_txn(&s, &pb::TxnRequest { compare: vec![missing_value], ..Default::default() }).unwrap().succeeded);
    assert!(read_only_txn(&s, &pb::TxnRequest { compare: vec![missing_version], ..Default::default() }).unwrap().succeeded);
}

#[test]
fn nested_txn_paths_are_decided_before_any_write() {
    let (_d, s) = store();
    history(&s);
    let lessor = Lessor::new(1);
    lessor.grant(7, 60);
    // Outer compare holds; the nested txn compares `n` (absent before the txn) even though
    // the outer branch puts `n` first: etcd evaluates every compare on the pre-txn state.
    let nested = pb::TxnRequest {
        compare: vec![cmp("n", "", CompareTarget::Version, CompareResult::Equal, TargetUnion::Version(0))],
        success: vec![put_op("nested", "then"), range_op("n")],
        failure: vec![put_op("nested", "else")],
    };
    let with_lease = pb::RequestOp {
        request: Some(Request::RequestPut(pb::PutRequest { key: b"leased".to_vec(), value: b"v".to_vec(), lease: 7, ..Default::default() })),
    };
    let t = pb::TxnRequest {
        compare: vec![cmp("a", "", CompareTarget::Value, CompareResult::Equal, TargetUnion::Value(b"9".to_vec()))],
        success: vec![put_op("n", "1"), pb::RequestOp { request: Some(Request::RequestTxn(nested)) }, with_lease],
        failure: vec![],
    };
    let mut w = s.write();
    let mut changes = Vec::new();
    let (succeeded, responses) = execute(&mut w, &lessor, &t, &mut changes).unwrap();
    let events = w.commit(6).unwrap();
    assert!(succeeded);
    assert_eq!(events.len(), 3, "n, nested and leased change in one revision");
    assert!(events.iter().all(|e| e.kv.mod_revision == 7));
    let Some(Response::ResponseTxn(inner)) = &responses[1].response else { panic!("nested response") };
    assert!(inner.succeeded, "the nested compare saw the pre-txn state");
    let Some(Response::ResponseRange(r)) = &inner.responses[1].response else { panic!("range in nested") };
    assert_eq!(r.kvs[0].value, b"1", "ranges inside the txn see its earlier writes");
    assert!(matches!(changes.as_slice(), [LeaseChange::Attach(7, k)] if k == b"leased"));
    // A lease compare: `leased` is attached to lease 7.
    let on_lease = cmp("leased", "", CompareTarget::Lease, CompareResult::Equal, TargetUnion::Lease(7));
    assert!(read_only_txn(&s, &pb::TxnRequest { compare: vec![on_lease], ..Default::default() }).unwrap().succeeded);
}

#[test]
fn a_put_with_an_unknown_lease_fails_the_whole_txn_without_writing() {
    let (_d, s) = store();
    history(&s);
    let lessor = Lessor::new(1);
    let bad = pb::RequestOp {
        request: Some(Request::RequestPut(pb::PutRequest { key: b"x".to_vec(), lease: 99, ..Default::default() })),
    };
    let t = pb::TxnRequest { compare: vec![], success: vec![put_op("first", "1"), bad], failure: vec![] };
    let mut w = s.write();
    let err = execute(&mut w, &lessor, &t, &mut Vec::new()).unwrap_err();
    assert_eq!(err, crate::error::Error::LeaseNotFound);
    drop(w);
    assert_eq!(s.current_revision(), 6);
    assert!(apply_range(&s, &range("first", "")).unwrap().kvs.is_empty());
}

#[test]
fn waiters_of_an_earlier_term_are_answered_once_an_entry_of_a_later_term_applies() {
    use super::{Response as Outcome, Waiters};
    use crate::error::Error;
    let lost = |r: Result<super::Applied, tokio::sync::oneshot::error::TryRecvError>| {
        matches!(r, Ok(Err(Error::TimeoutDueToLeaderFail)))
    };
    let w = Waiters::default();
    let mut old = w.register(1);
    w.proposed_in(1, 2);
    let mut current = w.register(2);
    w.proposed_in(2, 3);
    let mut unknown = w.register(3); // its proposal has not returned a term yet
    assert_eq!(w.entry_of_term(2), 0, "an entry of its own term proves nothing");
    assert!(old.try_recv().is_err(), "still waiting");
    assert_eq!(w.entry_of_term(3), 1);
    assert!(lost(old.try_recv()), "proposed in term 2, not applied before term 3's entry");
    assert!(current.try_recv().is_err() && unknown.try_recv().is_err(), "still waiting");
    // The proposal returns term 2 after an entry of term 3 was applied: lost at once.
    w.proposed_in(3, 2);
    assert!(lost(unknown.try_recv()));
    assert_eq!(w.entry_of_term(3), 0, "the same term again sweeps nothing");
    w.trigger(2, Ok(Outcome::LeaseCheckpoint));
    assert!(matches!(current.try_recv(), Ok(Ok(Outcome::LeaseCheckpoint))));
}
