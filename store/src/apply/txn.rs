//! Transactions as etcd's `applierV3.Txn` runs them:
//!
//! 1. walk the txn tree and evaluate every compare (outer and nested) against the state
//!    before the txn: this fixes the *path* (which branch at each level);
//! 2. check the requests on that path (leases exist, `ignore_value` keys exist) so a txn
//!    either applies entirely or fails without writing;
//! 3. execute the path in order; ranges see the txn's earlier writes.
//!
//! Request validation before proposing (`check_txn`) mirrors etcd's `checkTxnRequest` and
//! `checkIntervals`: op count, empty keys, and no key written twice in one branch.

use std::collections::BTreeSet;

use super::range::{apply_range, to_pb_kv, ReadView};
use crate::error::Error;
use crate::lease::Lessor;
use crate::mvcc::{KeyValue, MvccStore, RangeOptions, WriteTxn};
use crate::proto::etcdserverpb as pb;
use pb::compare::{CompareResult, CompareTarget, TargetUnion};
use pb::request_op::Request;
use pb::response_op::Response;

/// A change to key↔lease attachments, applied to the lessor once the txn has committed.
pub enum LeaseChange {
    Attach(i64, Vec<u8>),
    Detach(i64, Vec<u8>),
}

impl LeaseChange {
    pub fn apply(self, lessor: &Lessor) {
        match self {
            LeaseChange::Attach(id, key) => lessor.attach(id, &key),
            LeaseChange::Detach(id, key) => lessor.detach(id, &key),
        }
    }
}

/// Validates a txn before it is proposed.
pub fn check_txn(t: &pb::TxnRequest, max_ops: usize) -> Result<(), Error> {
    let ops = t.compare.len().max(t.success.len()).max(t.failure.len());
    if ops > max_ops {
        return Err(Error::TooManyOps);
    }
    for c in &t.compare {
        if c.key.is_empty() {
            return Err(Error::EmptyKey);
        }
    }
    for op in t.success.iter().chain(&t.failure) {
        check_op(op, max_ops)?;
    }
    check_intervals(&t.success)?;
    check_intervals(&t.failure)?;
    Ok(())
}

fn check_op(op: &pb::RequestOp, max_ops: usize) -> Result<(), Error> {
    match &op.request {
        Some(Request::RequestRange(r)) => super::check_range(r),
        Some(Request::RequestPut(p)) => check_put(p),
        Some(Request::RequestDeleteRange(d)) => check_delete(d),
        Some(Request::RequestTxn(t)) => check_txn(t, max_ops),
        None => Err(Error::Internal("empty request op".into())),
    }
}

/// etcd's `checkPutRequest`.
pub fn check_put(p: &pb::PutRequest) -> Result<(), Error> {
    if p.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

/// etcd's `checkDeleteRequest`.
pub fn check_delete(d: &pb::DeleteRangeRequest) -> Result<(), Error> {
    if d.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

/// No key may be put twice in a branch, nor put and deleted (etcd's `checkIntervals`).
/// Nested txns count towards their parent's branch (each of their branches separately).
fn check_intervals(ops: &[pb::RequestOp]) -> Result<(), Error> {
    let mut puts = BTreeSet::new();
    let mut dels = Vec::new();
    collect_writes(ops, &mut puts, &mut dels)?;
    for key in &puts {
        for (start, end) in &dels {
            if in_range(key, start, end) {
                return Err(Error::DuplicateKey);
            }
        }
    }
    Ok(())
}

fn collect_writes(
    ops: &[pb::RequestOp],
    puts: &mut BTreeSet<Vec<u8>>,
    dels: &mut Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<(), Error> {
    for op in ops {
        match &op.request {
            Some(Request::RequestPut(p)) if !puts.insert(p.key.clone()) => return Err(Error::DuplicateKey),
            Some(Request::RequestDeleteRange(d)) => dels.push((d.key.clone(), d.range_end.clone())),
            Some(Request::RequestTxn(t)) => {
                // Each nested branch may overlap the other (only one runs), but neither may
                // overlap the parent's writes.
                for branch in [&t.success, &t.failure] {
                    let mut p = puts.clone();
                    let mut d = dels.clone();
                    collect_writes(branch, &mut p, &mut d)?;
                    for key in p.difference(puts) {
                        for (s, e) in dels.iter() {
                            if in_range(key, s, e) {
                                return Err(Error::DuplicateKey);
                            }
                        }
                    }
                }
                let mut both = BTreeSet::new();
                let mut both_dels = Vec::new();
                for branch in [&t.success, &t.failure] {
                    let mut p = BTreeSet::new();
                    let mut d = Vec::new();
                    collect_writes(branch, &mut p, &mut d)?;
                    both.extend(p);
                    both_dels.extend(d);
                }
                for k in both {
                    if puts.contains(&k) {
                        return Err(Error::DuplicateKey);
                    }
                    puts.insert(k);
                }
                dels.extend(both_dels);
            }
            _ => {}
        }
    }
    Ok(())
}

fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else if end == [0] {
        key >= start
    } else {
        key >= start && key < end
    }
}

pub fn is_txn_read_only(t: &pb::TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).all(|op| match &op.request {
        Some(Request::RequestRange(_)) => true,
        Some(Request::RequestTxn(t)) => is_txn_read_only(t),
        _ => false,
    })
}

pub fn has_put(t: &pb::TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).any(|op| match &op.request {
        Some(Request::RequestPut(_)) => true,
        Some(Request::RequestTxn(t)) => has_put(t),
        _ => false,
    })
}

/// The branch taken at each txn in pre-order, decided before any write.
fn compute_path(view: &impl ReadView, t: &pb::TxnRequest, path: &mut Vec<bool>) -> Result<(), Error> {
    let ok = t.compare.iter().map(|c| apply_compare(view, c)).collect::<Result<Vec<_>, _>>()?;
    let succeeded = ok.iter().all(|b| *b);
    path.push(succeeded);
    let ops = if succeeded { &t.success } else { &t.failure };
    for op in ops {
        if let Some(Request::RequestTxn(nested)) = &op.request {
            compute_path(view, nested, path)?;
        }
    }
    Ok(())
}

/// etcd's `applyCompare`: every key in the compare's range must satisfy it; an absent key
/// compares as a zero `KeyValue`, except that a value compare on an absent key is false.
fn apply_compare(view: &impl ReadView, c: &pb::Compare) -> Result<bool, Error> {
    let rr = match view.read_range(&c.key, &c.range_end, RangeOptions::default()) {
        Ok(rr) => rr,
        Err(_) => return Ok(false),
    };
    if rr.kvs.is_empty() {
        if c.target == CompareTarget::Value as i32 {
            return Ok(false);
        }
        return Ok(compare_kv(c, &KeyValue::default()));
    }
    Ok(rr.kvs.iter().all(|kv| compare_kv(c, kv)))
}

fn compare_kv(c: &pb::Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ord = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => {
            let v: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(v)
        }
        Ok(CompareTarget::Create) => kv.create_revision.cmp(&int_target(c, CompareTarget::Create)),
        Ok(CompareTarget::Mod) => kv.mod_revision.cmp(&int_target(c, CompareTarget::Mod)),
        Ok(CompareTarget::Version) => kv.version.cmp(&int_target(c, CompareTarget::Version)),
        Ok(CompareTarget::Lease) => kv.lease.cmp(&int_target(c, CompareTarget::Lease)),
        Err(_) => return true,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ord != Ordering::Equal,
        Ok(CompareResult::Greater) => ord == Ordering::Greater,
        Ok(CompareResult::Less) => ord == Ordering::Less,
        Err(_) => true,
    }
}

fn int_target(c: &pb::Compare, target: CompareTarget) -> i64 {
    match (&c.target_union, target) {
        (Some(TargetUnion::CreateRevision(v)), CompareTarget::Create) => *v,
        (Some(TargetUnion::ModRevision(v)), CompareTarget::Mod) => *v,
        (Some(TargetUnion::Version(v)), CompareTarget::Version) => *v,
        (Some(TargetUnion::Lease(v)), CompareTarget::Lease) => *v,
        _ => 0,
    }
}

/// Checks the requests on the chosen path against the pre-txn state (etcd's `checkRequests`).
fn check_path(
    view: &impl ReadView,
    lessor: &Lessor,
    t: &pb::TxnRequest,
    path: &[bool],
    at: &mut usize,
) -> Result<(), Error> {
    let succeeded = path[*at];
    *at += 1;
    for op in if succeeded { &t.success } else { &t.failure } {
        match &op.request {
            Some(Request::RequestPut(p)) => {
                if p.lease != 0 && !lessor.exists(p.lease) {
                    return Err(Error::LeaseNotFound);
                }
                if p.ignore_value || p.ignore_lease {
                    let rr = view.read_range(&p.key, &[], RangeOptions::default())?;
                    if rr.kvs.is_empty() {
                        return Err(Error::KeyNotFound);
                    }
                }
            }
            Some(Request::RequestTxn(nested)) => check_path(view, lessor, nested, path, at)?,
            _ => {}
        }
    }
    Ok(())
}

/// Executes a txn inside `wtxn`; returns whether the compares succeeded and the responses.
pub fn execute(
    wtxn: &mut WriteTxn<'_>,
    lessor: &Lessor,
    t: &pb::TxnRequest,
    lease_changes: &mut Vec<LeaseChange>,
) -> Result<(bool, Vec<pb::ResponseOp>), Error> {
    let mut path = Vec::new();
    compute_path(&*wtxn, t, &mut path)?;
    check_path(&*wtxn, lessor, t, &path, &mut 0)?;
    let mut at = 0;
    let responses = execute_path(wtxn, t, &path, &mut at, lease_changes)?;
    Ok((path[0], responses))
}

fn execute_path(
    wtxn: &mut WriteTxn<'_>,
    t: &pb::TxnRequest,
    path: &[bool],
    at: &mut usize,
    lease_changes: &mut Vec<LeaseChange>,
) -> Result<Vec<pb::ResponseOp>, Error> {
    let succeeded = path[*at];
    *at += 1;
    let mut out = Vec::new();
    for op in if succeeded { &t.success } else { &t.failure } {
        let resp = match &op.request {
            Some(Request::RequestRange(r)) => Response::ResponseRange(apply_range(&*wtxn, r)?),
            Some(Request::RequestPut(p)) => Response::ResponsePut(put(wtxn, p, lease_changes)?),
            Some(Request::RequestDeleteRange(d)) => {
                Response::ResponseDeleteRange(delete(wtxn, d, lease_changes)?)
            }
            Some(Request::RequestTxn(nested)) => {
                let nested_succeeded = path[*at];
                let responses = execute_path(wtxn, nested, path, at, lease_changes)?;
                Response::ResponseTxn(pb::TxnResponse {
                    header: super::header(write_rev(wtxn)),
                    succeeded: nested_succeeded,
                    responses,
                })
            }
            None => return Err(Error::Internal("empty request op".into())),
        };
        out.push(pb::ResponseOp { response: Some(resp) });
    }
    Ok(out)
}

/// A view of the store pinned at one revision, so every range of a read-only txn reads the
/// same snapshot.
struct PinnedView<'a> {
    store: &'a MvccStore,
    rev: i64,
}

impl ReadView for PinnedView<'_> {
    fn read_range(&self, key: &[u8], end: &[u8], mut opts: RangeOptions) -> crate::mvcc::Result<crate::mvcc::RangeResult> {
        if opts.rev <= 0 {
            opts.rev = self.rev;
        }
        self.store.range(key, end, opts)
    }
}

/// Serves a txn whose every op is a range (checked by `is_txn_read_only`) from local state.
pub fn read_only_txn(store: &MvccStore, t: &pb::TxnRequest) -> Result<pb::TxnResponse, Error> {
    let view = PinnedView { store, rev: store.current_revision() };
    let mut path = Vec::new();
    compute_path(&view, t, &mut path)?;
    let mut at = 0;
    let responses = read_path(&view, t, &path, &mut at)?;
    Ok(pb::TxnResponse { header: super::header(view.rev), succeeded: path[0], responses })
}

fn read_path(view: &PinnedView<'_>, t: &pb::TxnRequest, path: &[bool], at: &mut usize) -> Result<Vec<pb::ResponseOp>, Error> {
    let succeeded = path[*at];
    *at += 1;
    let mut out = Vec::new();
    for op in if succeeded { &t.success } else { &t.failure } {
        let resp = match &op.request {
            Some(Request::RequestRange(r)) => Response::ResponseRange(apply_range(view, r)?),
            Some(Request::RequestTxn(nested)) => {
                let nested_succeeded = path[*at];
                let responses = read_path(view, nested, path, at)?;
                Response::ResponseTxn(pb::TxnResponse { header: super::header(view.rev), succeeded: nested_succeeded, responses })
            }
            _ => return Err(Error::Internal("write op in a read-only txn".into())),
        };
        out.push(pb::ResponseOp { response: Some(resp) });
    }
    Ok(out)
}

/// The revision a write inside the txn is visible at.
fn write_rev(wtxn: &WriteTxn<'_>) -> i64 {
    wtxn.rev()
}

fn put(wtxn: &mut WriteTxn<'_>, p: &pb::PutRequest, lease_changes: &mut Vec<LeaseChange>) -> Result<pb::PutResponse, Error> {
    let mut value = p.value.as_slice();
    let mut lease = p.lease;
    let prev_for_ignore;
    if p.ignore_value || p.ignore_lease {
        let rr = wtxn.range(&p.key, &[], RangeOptions::default())?;
        prev_for_ignore = rr.kvs.into_iter().next().ok_or(Error::KeyNotFound)?;
        if p.ignore_value {
            value = &prev_for_ignore.value;
        }
        if p.ignore_lease {
            lease = prev_for_ignore.lease;
        }
    }
    let value = value.to_vec();
    let prev = wtxn.put(&p.key, &value, lease)?;
    if let Some(prev) = &prev {
        if prev.lease != 0 && prev.lease != lease {
            lease_changes.push(LeaseChange::Detach(prev.lease, p.key.clone()));
        }
    }
    if lease != 0 {
        lease_changes.push(LeaseChange::Attach(lease, p.key.clone()));
    }
    Ok(pb::PutResponse {
        header: super::header(wtxn.rev()),
        prev_kv: if p.prev_kv { prev.map(to_pb_kv) } else { None },
    })
}

fn delete(
    wtxn: &mut WriteTxn<'_>,
    d: &pb::DeleteRangeRequest,
    lease_changes: &mut Vec<LeaseChange>,
) -> Result<pb::DeleteRangeResponse, Error> {
    let deleted = wtxn.delete_range(&d.key, &d.range_end)?;
    for kv in &deleted {
        if kv.lease != 0 {
            lease_changes.push(LeaseChange::Detach(kv.lease, kv.key.clone()));
        }
    }
    Ok(pb::DeleteRangeResponse {
        header: super::header(wtxn.rev()),
        deleted: deleted.len() as i64,
        prev_kvs: if d.prev_kv { deleted.into_iter().map(to_pb_kv).collect() } else { Vec::new() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_op(key: &str) -> pb::RequestOp {
        pb::RequestOp { request: Some(Request::RequestPut(pb::PutRequest { key: key.into(), ..Default::default() })) }
    }

    fn del_op(key: &str, end: &str) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(Request::RequestDeleteRange(pb::DeleteRangeRequest {
                key: key.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn duplicate_puts_in_one_branch_are_refused() {
        let t = pb::TxnRequest { success: vec![put_op("a"), put_op("a")], ..Default::default() };
        assert_eq!(check_txn(&t, 128), Err(Error::DuplicateKey));
        let t = pb::TxnRequest { success: vec![put_op("a")], failure: vec![put_op("a")], ..Default::default() };
        assert_eq!(check_txn(&t, 128), Ok(()));
    }

    #[test]
    fn put_inside_deleted_range_is_refused() {
        let t = pb::TxnRequest { success: vec![del_op("a", "c"), put_op("b")], ..Default::default() };
        assert_eq!(check_txn(&t, 128), Err(Error::DuplicateKey));
        let t = pb::TxnRequest { success: vec![del_op("a", "b"), put_op("b")], ..Default::default() };
        assert_eq!(check_txn(&t, 128), Ok(()));
    }

    #[test]
    fn too_many_ops() {
        let ops: Vec<_> = (0..129).map(|i| put_op(&format!("k{i}"))).collect();
        let t = pb::TxnRequest { success: ops, ..Default::default() };
        assert_eq!(check_txn(&t, 128), Err(Error::TooManyOps));
    }

    #[test]
    fn read_only_detection() {
        let range = pb::RequestOp { request: Some(Request::RequestRange(pb::RangeRequest { key: b"a".to_vec(), ..Default::default() })) };
        assert!(is_txn_read_only(&pb::TxnRequest { success: vec![range.clone()], ..Default::default() }));
        assert!(!is_txn_read_only(&pb::TxnRequest { success: vec![range], failure: vec![put_op("x")], ..Default::default() }));
    }
}
