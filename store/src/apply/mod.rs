//! The applier: turns committed raft entries into MVCC writes, in log order, on its own OS
//! thread (RocksDB writes block; tokio workers must not).
//!
//! For each entry it decodes our `skiffpb.InternalRequest`, executes it exactly as etcd's
//! `applierV3` does, commits one RocksDB `WriteBatch` that also records the entry's index as
//! the `consistent_index`, feeds the resulting events to the watch hub, and wakes the client
//! waiting for that request id (if it is on this member).
//!
//! Replay after a crash is idempotent: entries at or below the persisted consistent index
//! are skipped; entries above it are re-executed deterministically.

mod range;
#[cfg(test)]
mod tests;
mod txn;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use prost::Message;
use skiff_raft::node::{Committed, NodeHandle};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

use crate::error::Error;
use crate::lease::Lessor;
use crate::mvcc::{Event, MvccStore};
use crate::proto::etcdserverpb as pb;
use crate::proto::skiffpb::{internal_request::Request, InternalRequest};
use crate::watch::WatchHub;

pub use range::{apply_range, check_range};
pub use txn::{check_delete, check_put, check_txn, has_put, is_txn_read_only, read_only_txn};

/// The outcome of one applied request, handed to the waiting client.
#[derive(Debug)]
pub enum Response {
    Put(pb::PutResponse),
    DeleteRange(pb::DeleteRangeResponse),
    Txn(pb::TxnResponse),
    Compaction(pb::CompactionResponse),
    LeaseGrant(pb::LeaseGrantResponse),
    LeaseRevoke(pb::LeaseRevokeResponse),
    Alarm(pb::AlarmResponse),
}

pub type Applied = Result<Response, Error>;

/// Clients waiting for their request to be applied, by request id.
#[derive(Default)]
pub struct Waiters {
    inner: Mutex<HashMap<u64, oneshot::Sender<Applied>>>,
}

impl Waiters {
    pub fn register(&self, id: u64) -> oneshot::Receiver<Applied> {
        let (tx, rx) = oneshot::channel();
        self.inner.lock().insert(id, tx);
        rx
    }

    pub fn cancel(&self, id: u64) {
        self.inner.lock().remove(&id);
    }

    fn trigger(&self, id: u64, result: Applied) {
        if let Some(tx) = self.inner.lock().remove(&id) {
            let _ = tx.send(result);
        }
    }
}

/// Alarms raised on this cluster (etcd's `AlarmStore`). Only NOSPACE and CORRUPT exist.
#[derive(Default)]
pub struct Alarms {
    inner: Mutex<Vec<pb::AlarmMember>>,
}

impl Alarms {
    /// Loads the alarms stored by earlier applies.
    pub fn load(mvcc: &MvccStore) -> Result<Self, Error> {
        let bytes = mvcc.alarms()?;
        let stored = pb::AlarmResponse::decode(bytes.as_slice())
            .map_err(|e| Error::Internal(format!("stored alarms are corrupt: {e}")))?;
        Ok(Self { inner: Mutex::new(stored.alarms) })
    }

    pub fn list(&self) -> Vec<pb::AlarmMember> {
        self.inner.lock().clone()
    }

    pub fn has(&self, alarm: pb::AlarmType) -> bool {
        self.inner.lock().iter().any(|a| a.alarm == alarm as i32)
    }
}

/// Everything the applier touches.
pub struct Applier {
    pub mvcc: Arc<MvccStore>,
    pub lessor: Arc<Lessor>,
    pub hub: Arc<WatchHub>,
    pub waiters: Arc<Waiters>,
    pub alarms: Arc<Alarms>,
    pub node: NodeHandle,
    pub member_id: u64,
}

impl Applier {
    /// Runs the apply loop on a dedicated thread until the committed stream ends.
    pub fn spawn(self, mut committed: mpsc::Receiver<Committed>) -> std::thread::JoinHandle<()> {
        std::thread::Builder::new()
            .name("skiff-apply".into())
            .spawn(move || {
                while let Some(batch) = committed.blocking_recv() {
                    let mut last = 0;
                    for entry in &batch.entries {
                        self.apply_entry(entry.index, entry.get_data());
                        last = entry.index;
                    }
                    if last > 0 {
                        self.node.applied(last);
                    }
                }
            })
            .expect("spawning the apply thread")
    }

    fn apply_entry(&self, index: u64, data: &[u8]) {
        if data.is_empty() || index <= self.mvcc.consistent_index() {
            return;
        }
        let req = match InternalRequest::decode(data) {
            Ok(r) => r,
            Err(e) => {
                // Entries are only ever proposed by this code; a payload we cannot decode
                // means the log is corrupt or written by an incompatible version.
                error!(index, error = %e, "undecodable raft entry");
                panic!("undecodable raft entry at index {index}: {e}");
            }
        };
        let id = req.id;
        let result = match req.request {
            Some(r) => self.apply_request(index, r),
            None => Err(Error::Internal("empty internal request".into())),
        };
        self.waiters.trigger(id, result);
    }

    fn apply_request(&self, index: u64, req: Request) -> Applied {
        match req {
            Request::Put(r) => {
                self.check_space()?;
                let mut resp = pb::TxnResponse::default();
                let op = pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(r)) };
                let txn = pb::TxnRequest { compare: vec![], success: vec![op], failure: vec![] };
                self.write_txn(index, &txn, &mut resp)?;
                match resp.responses.pop().and_then(|r| r.response) {
                    Some(pb::response_op::Response::ResponsePut(mut p)) => {
                        p.header = resp.header;
                        Ok(Response::Put(p))
                    }
                    _ => Err(Error::Internal("put produced no response".into())),
                }
            }
            Request::DeleteRange(r) => {
                let mut resp = pb::TxnResponse::default();
                let op = pb::RequestOp { request: Some(pb::request_op::Request::RequestDeleteRange(r)) };
                let txn = pb::TxnRequest { compare: vec![], success: vec![op], failure: vec![] };
                self.write_txn(index, &txn, &mut resp)?;
                match resp.responses.pop().and_then(|r| r.response) {
                    Some(pb::response_op::Response::ResponseDeleteRange(mut d)) => {
                        d.header = resp.header;
                        Ok(Response::DeleteRange(d))
                    }
                    _ => Err(Error::Internal("delete produced no response".into())),
                }
            }
            Request::Txn(t) => {
                if txn::has_put(&t) {
                    self.check_space()?;
                }
                let mut resp = pb::TxnResponse::default();
                self.write_txn(index, &t, &mut resp)?;
                Ok(Response::Txn(resp))
            }
            Request::Compaction(c) => {
                self.mvcc.compact(c.revision, index)?;
                let header = header(self.mvcc.current_revision());
                Ok(Response::Compaction(pb::CompactionResponse { header }))
            }
            Request::LeaseGrant(g) => self.apply_lease_grant(index, g),
            Request::LeaseRevoke(r) => self.apply_lease_revoke(index, r.id),
            Request::Alarm(a) => self.apply_alarm(index, a).map(Response::Alarm),
            Request::LeaseCheckpoint(_) => Ok(Response::Alarm(pb::AlarmResponse::default())),
            Request::Range(_) => Err(Error::Internal("range requests are served locally".into())),
        }
    }

    fn check_space(&self) -> Result<(), Error> {
        if self.alarms.has(pb::AlarmType::Nospace) {
            return Err(Error::NoSpace);
        }
        Ok(())
    }

    /// Runs a transaction as one MVCC write txn: compares, the chosen branch, one commit.
    fn write_txn(&self, index: u64, t: &pb::TxnRequest, resp: &mut pb::TxnResponse) -> Result<(), Error> {
        let mut wtxn = self.mvcc.write();
        let mut lease_changes = Vec::new();
        let outcome = txn::execute(&mut wtxn, &self.lessor, t, &mut lease_changes);
        let (succeeded, responses) = match outcome {
            Ok(v) => v,
            Err(e) => {
                // Nothing was written (validation happens before any change); still record
                // the index so replay does not redo the work.
                drop(wtxn);
                let w = self.mvcc.write();
                self.commit(w, index)?;
                return Err(e);
            }
        };
        let events = self.commit(wtxn, index)?;
        for change in lease_changes {
            change.apply(&self.lessor);
        }
        resp.succeeded = succeeded;
        resp.responses = responses;
        // The txn's revision when it wrote, the current one when it only read.
        resp.header = header(if events.is_empty() { self.mvcc.current_revision() } else { events[0].kv.mod_revision });
        Ok(())
    }

    fn commit(&self, wtxn: crate::mvcc::WriteTxn<'_>, index: u64) -> Result<Vec<Event>, Error> {
        let rev = wtxn.rev();
        fail::fail_point!("apply::before_commit");
        let committed = wtxn.commit(index);
        fail::fail_point!("apply::after_commit");
        match committed {
            Ok(events) => {
                if !events.is_empty() {
                    self.hub.notify(rev, &events);
                }
                Ok(events)
            }
            Err(e) => {
                // A failed RocksDB write leaves memory and disk disagreeing; etcd panics here
                // too. Crash and let raft replay from the last consistent index.
                error!(index, error = %e, "state machine write failed");
                panic!("state machine write failed at index {index}: {e}");
            }
        }
    }

    fn apply_lease_grant(&self, index: u64, g: pb::LeaseGrantRequest) -> Applied {
        self.check_space()?;
        if self.lessor.exists(g.id) {
            return Err(Error::LeaseExist);
        }
        let ttl = self.lessor.effective_ttl(g.ttl);
        let mut wtxn = self.mvcc.write();
        wtxn.put_lease(g.id, ttl);
        self.commit(wtxn, index)?;
        self.lessor.grant(g.id, ttl);
        Ok(Response::LeaseGrant(pb::LeaseGrantResponse {
            header: header(self.mvcc.current_revision()),
            id: g.id,
            ttl,
            error: String::new(),
        }))
    }

    fn apply_lease_revoke(&self, index: u64, id: i64) -> Applied {
        let Some(keys) = self.lessor.revoke(id) else {
            let w = self.mvcc.write();
            self.commit(w, index)?;
            return Err(Error::LeaseNotFound);
        };
        let mut wtxn = self.mvcc.write();
        for key in &keys {
            wtxn.delete_range(key, &[])?;
        }
        wtxn.delete_lease(id);
        self.commit(wtxn, index)?;
        Ok(Response::LeaseRevoke(pb::LeaseRevokeResponse { header: header(self.mvcc.current_revision()) }))
    }

    fn apply_alarm(&self, index: u64, a: pb::AlarmRequest) -> Result<pb::AlarmResponse, Error> {
        let mut alarms = self.alarms.inner.lock();
        let member = pb::AlarmMember { member_id: a.member_id, alarm: a.alarm };
        let out = match pb::alarm_request::AlarmAction::try_from(a.action) {
            Ok(pb::alarm_request::AlarmAction::Get) => alarms.clone(),
            Ok(pb::alarm_request::AlarmAction::Activate) => {
                if a.alarm != pb::AlarmType::None as i32 && !alarms.contains(&member) {
                    alarms.push(member);
                }
                vec![member]
            }
            Ok(pb::alarm_request::AlarmAction::Deactivate) => {
                let before = alarms.len();
                alarms.retain(|m| {
                    !(m.alarm == a.alarm && (a.member_id == 0 || m.member_id == a.member_id))
                        && !(a.alarm == pb::AlarmType::None as i32 && a.member_id == 0)
                });
                if alarms.len() == before {
                    vec![]
                } else {
                    vec![member]
                }
            }
            Err(_) => {
                warn!(action = a.action, "unknown alarm action");
                vec![]
            }
        };
        // Persist the list with this entry's index so raised alarms survive restarts.
        let encoded = pb::AlarmResponse { header: None, alarms: alarms.clone() }.encode_to_vec();
        drop(alarms);
        let mut wtxn = self.mvcc.write();
        wtxn.set_alarms(encoded);
        self.commit(wtxn, index)?;
        Ok(pb::AlarmResponse { header: header(self.mvcc.current_revision()), alarms: out })
    }
}

/// A header with only the revision; the server fills cluster, member and term.
pub fn header(revision: i64) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader { revision, ..Default::default() })
}
