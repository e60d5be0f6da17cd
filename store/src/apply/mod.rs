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

use std::cell::Cell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use prost::Message;
use skiff_raft::node::{Committed, NodeHandle};
use skiff_raft::raft::eraftpb::{ConfChangeType, ConfChangeV2, Entry, EntryType, SnapshotMetadata};
use skiff_raft::transport::Transport;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::error::Error;
use crate::lease::Lessor;
use crate::membership::{member_to_pb, Membership};
use crate::mvcc::{Event, MvccStore};
use crate::proto::etcdserverpb as pb;
use crate::proto::skiffpb::{self, internal_request::Request, InternalRequest};
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
    /// Checkpoints recorded (nothing to report; etcd's `LeaseCheckpointResponse` is empty).
    LeaseCheckpoint,
    /// A membership change: the member it concerns (if it still exists) and all members.
    Members { member: Option<pb::Member>, members: Vec<pb::Member> },
}

pub type Applied = Result<Response, Error>;

/// Clients waiting for their request to be applied, by request id.
///
/// A proposal can only be appended by the leader of the term it was proposed in. So once
/// the applier reaches an entry of a later term, every entry of that term that made it
/// into the log has been applied: a proposal of an earlier term still waiting was lost
/// with its leader (or went into a snapshot this member installed). Its client gets etcd's
/// "request timed out, possibly due to previous leader failure" then, as soon as the new
/// leader's first entry is applied, instead of after the whole request timeout: the same
/// answer etcd gives, without holding clients for the rest of the timeout.
#[derive(Default)]
pub struct Waiters {
    inner: Mutex<WaitersInner>,
}

#[derive(Default)]
struct WaitersInner {
    pending: HashMap<u64, Waiter>,
    /// The term of the newest entry applied.
    applied_term: u64,
}

struct Waiter {
    tx: oneshot::Sender<Applied>,
    /// The term the request was proposed in; `u64::MAX` until the proposal returns it.
    term: u64,
}

impl Waiters {
    pub fn register(&self, id: u64) -> oneshot::Receiver<Applied> {
        let (tx, rx) = oneshot::channel();
        self.inner.lock().pending.insert(id, Waiter { tx, term: u64::MAX });
        rx
    }

    /// Records the term request `id` was proposed in. An entry of a later term may have
    /// been applied meanwhile: then the request is already known lost.
    pub fn proposed_in(&self, id: u64, term: u64) {
        let mut inner = self.inner.lock();
        if term < inner.applied_term {
            if let Some(w) = inner.pending.remove(&id) {
                let _ = w.tx.send(Err(Error::TimeoutDueToLeaderFail));
            }
        } else if let Some(w) = inner.pending.get_mut(&id) {
            w.term = term;
        }
    }

    pub fn cancel(&self, id: u64) {
        self.inner.lock().pending.remove(&id);
    }

    fn trigger(&self, id: u64, result: Applied) {
        if let Some(w) = self.inner.lock().pending.remove(&id) {
            let _ = w.tx.send(result);
        }
    }

    /// The applier is about to apply an entry of `term` (everything before it is applied):
    /// requests proposed in an earlier term that are still waiting never will be applied.
    /// Returns how many were answered.
    fn entry_of_term(&self, term: u64) -> usize {
        let mut inner = self.inner.lock();
        if term <= inner.applied_term {
            return 0;
        }
        inner.applied_term = term;
        let lost: Vec<u64> = inner.pending.iter().filter(|(_, w)| w.term < term).map(|(id, _)| *id).collect();
        for id in &lost {
            if let Some(w) = inner.pending.remove(id) {
                let _ = w.tx.send(Err(Error::TimeoutDueToLeaderFail));
            }
        }
        lost.len()
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
    pub membership: Arc<RwLock<Membership>>,
    /// Peers follow the membership: added, re-pointed and removed as changes apply.
    pub transport: Transport,
    /// Where received raft snapshots are (see `snapshot::raft_snapshot_path`).
    pub snap_dir: PathBuf,
    /// The term of the entry being applied, recorded with its index.
    pub current_term: Cell<u64>,
}

impl Applier {
    /// Runs the apply loop on a dedicated thread until the committed stream ends.
    pub fn spawn(self, committed: mpsc::Receiver<Committed>) -> std::thread::JoinHandle<()> {
        std::thread::Builder::new()
            .name("skiff-apply".into())
            .spawn(move || {
                // A panic here means the state machine cannot go on (a failed RocksDB
                // write, an undecodable entry); serving on without applying would be
                // worse than stopping, so the process exits as after a crash, and raft
                // replays from the last consistent index on restart.
                let run = std::panic::AssertUnwindSafe(|| self.run(committed));
                if std::panic::catch_unwind(run).is_err() {
                    error!("the apply loop panicked; exiting");
                    std::process::exit(70);
                }
            })
            .expect("spawning the apply thread")
    }

    fn run(&self, mut committed: mpsc::Receiver<Committed>) {
        while let Some(batch) = committed.blocking_recv() {
            let mut last = 0;
            if let Some(meta) = &batch.snapshot {
                self.install_snapshot(meta);
                last = meta.index;
            }
            // One `write` of RocksDB's WAL for the batch's entries, when the group drops at
            // the end of this iteration (a kill before then loses a suffix of them, which
            // the raft log replays).
            let _wal = self.mvcc.wal_group();
            for entry in &batch.entries {
                self.current_term.set(entry.term);
                let lost = self.waiters.entry_of_term(entry.term);
                if lost > 0 {
                    info!(term = entry.term, requests = lost, "requests proposed under an earlier leader were lost with it");
                }
                match entry.get_entry_type() {
                    EntryType::EntryConfChangeV2 => self.apply_conf_change(entry),
                    EntryType::EntryNormal => self.apply_entry(entry.index, entry.get_data()),
                    // Never proposed by Skiff (it uses conf change v2 only).
                    EntryType::EntryConfChange => {
                        error!(index = entry.index, "unexpected v1 conf change entry; skipped")
                    }
                }
                last = entry.index;
            }
            if last > 0 {
                self.node.applied(last);
            }
        }
    }

    /// Replaces the state machine with a snapshot the leader sent (its raft marker is
    /// already durable), then everything derived from it.
    fn install_snapshot(&self, meta: &SnapshotMetadata) {
        let file = crate::snapshot::raft_snapshot_path(&self.snap_dir, meta.index, meta.term);
        info!(index = meta.index, term = meta.term, file = %file.display(), "installing snapshot");
        fail::fail_point!("apply::before_snapshot_install");
        let installed = self.mvcc.restore_from_snapshot(&file, &self.snap_dir);
        fail::fail_point!("apply::after_snapshot_install");
        if let Err(e) = installed {
            // The raft log now starts after this snapshot: without it this member cannot go
            // on. A restart retries the install from the same file (etcd panics here too).
            error!(error = %e, file = %file.display(), "installing the snapshot failed");
            panic!("installing snapshot {} failed: {e}", file.display());
        }
        let leases = self.mvcc.leases().unwrap_or_else(|e| panic!("reading leases after a snapshot install: {e}"));
        let attached =
            self.mvcc.keys_with_lease().unwrap_or_else(|e| panic!("reading lease keys after a snapshot install: {e}"));
        self.lessor.reset(&leases, &attached);
        self.hub.on_restore();
        match Alarms::load(&self.mvcc) {
            Ok(a) => *self.alarms.inner.lock() = a.list(),
            Err(e) => error!(error = %e, "alarms after snapshot install"),
        }
        match self.mvcc.membership() {
            Ok(Some(bytes)) => match Membership::decode(&bytes) {
                Ok(m) => {
                    self.sync_peers(&m);
                    *self.membership.write() = m;
                }
                Err(e) => error!(error = %e, "membership after snapshot install"),
            },
            Ok(None) => error!("the installed snapshot holds no membership"),
            Err(e) => error!(error = %e, "membership after snapshot install"),
        }
        crate::snapshot::remove_raft_snapshots_except(&self.snap_dir, &file);
        info!(index = meta.index, revision = self.mvcc.current_revision(), "snapshot installed");
    }

    /// Points the transport at exactly the members of `m`.
    fn sync_peers(&self, m: &Membership) {
        self.transport.set_removed(m.removed.iter().copied());
        for (id, _) in self.transport.peers() {
            if !m.members.contains_key(&id) {
                self.transport.remove_peer(id);
            }
        }
        for member in m.members.values() {
            if let Some(url) = member.peer_urls.first() {
                self.transport.set_peer(member.id, url);
            }
        }
    }

    /// Applies a membership change (raft-rs has already changed its configuration).
    fn apply_conf_change(&self, entry: &Entry) {
        let index = entry.index;
        if index <= self.mvcc.consistent_index() {
            return;
        }
        let mut cc = ConfChangeV2::default();
        if let Err(e) = protobuf::Message::merge_from_bytes(&mut cc, entry.get_data()) {
            panic!("undecodable conf change at index {index}: {e}");
        }
        let ctx = skiffpb::ConfChangeContext::decode(entry.get_context())
            .unwrap_or_else(|e| panic!("undecodable conf change context at index {index}: {e}"));
        let mut m = self.membership.read().clone();
        let mut concerned = None;
        for change in cc.get_changes() {
            let id = change.node_id;
            concerned = Some(id);
            match change.get_change_type() {
                ConfChangeType::AddNode => match m.members.get_mut(&id) {
                    Some(existing) => existing.is_learner = false, // promotion
                    None => {
                        let mut member = ctx.member.clone().unwrap_or_default();
                        member.id = id;
                        member.is_learner = false;
                        m.members.insert(id, member);
                    }
                },
                ConfChangeType::AddLearnerNode => {
                    let mut member = ctx.member.clone().unwrap_or_default();
                    member.id = id;
                    member.is_learner = true;
                    m.members.insert(id, member);
                }
                ConfChangeType::RemoveNode => {
                    m.members.remove(&id);
                    m.removed.insert(id);
                }
            }
        }
        let mut wtxn = self.mvcc.write();
        wtxn.set_membership(m.encode());
        if let Err(e) = self.commit(wtxn, index) {
            error!(index, error = %e, "recording a membership change failed");
        }
        self.sync_peers(&m);
        let member = concerned.and_then(|id| m.members.get(&id)).map(member_to_pb);
        let members = m.to_pb();
        info!(index, change = ?cc.get_changes(), members = members.len(), "membership changed");
        let removed_self = m.removed.contains(&self.member_id);
        *self.membership.write() = m;
        self.waiters.trigger(ctx.request_id, Ok(Response::Members { member, members }));
        if removed_self {
            // etcd stops a member removed from its cluster. Give the heartbeats that carry
            // this entry's commit to the others a moment, then exit.
            error!("{}", Error::MemberRemoved);
            std::thread::spawn(|| {
                std::thread::sleep(std::time::Duration::from_secs(1));
                std::process::exit(0);
            });
        }
    }

    fn apply_member_request(&self, index: u64, req: Request) -> Applied {
        let mut m = self.membership.read().clone();
        let id = match &req {
            Request::MemberAttributes(a) => {
                let Some(member) = m.members.get_mut(&a.id) else {
                    let w = self.mvcc.write();
                    self.commit(w, index)?;
                    return Err(Error::MemberNotFound);
                };
                member.name = a.name.clone();
                member.client_urls = a.client_urls.clone();
                a.id
            }
            Request::MemberPeerUrls(u) => {
                let Some(member) = m.members.get_mut(&u.id) else {
                    let w = self.mvcc.write();
                    self.commit(w, index)?;
                    return Err(Error::MemberNotFound);
                };
                member.peer_urls = u.peer_urls.clone();
                u.id
            }
            _ => return Err(Error::Internal("not a membership request".into())),
        };
        let mut wtxn = self.mvcc.write();
        wtxn.set_membership(m.encode());
        self.commit(wtxn, index)?;
        self.sync_peers(&m);
        let member = m.members.get(&id).map(member_to_pb);
        let members = m.to_pb();
        *self.membership.write() = m;
        Ok(Response::Members { member, members })
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
        if refused_when_corrupt(&req) && self.alarms.has(pb::AlarmType::Corrupt) {
            // etcd's applierV3Corrupt: once any member's data is known to differ, no write
            // may make it worse. Alarms, membership and lease checkpoints still apply.
            let w = self.mvcc.write();
            self.commit(w, index)?;
            return Err(Error::Corrupt);
        }
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
                self.mvcc.compact_with_term(c.revision, index, self.current_term.get())?;
                let header = header(self.mvcc.current_revision());
                Ok(Response::Compaction(pb::CompactionResponse { header }))
            }
            Request::LeaseGrant(g) => self.apply_lease_grant(index, g),
            Request::LeaseRevoke(r) => self.apply_lease_revoke(index, r.id),
            Request::Alarm(a) => self.apply_alarm(index, a).map(Response::Alarm),
            Request::LeaseCheckpoint(c) => self.apply_lease_checkpoint(index, &c),
            Request::Range(_) => Err(Error::Internal("range requests are served locally".into())),
            r @ (Request::MemberAttributes(_) | Request::MemberPeerUrls(_)) => self.apply_member_request(index, r),
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

    fn commit(&self, mut wtxn: crate::mvcc::WriteTxn<'_>, index: u64) -> Result<Vec<Event>, Error> {
        let rev = wtxn.rev();
        wtxn.set_applied_term(self.current_term.get());
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

    /// Records each checkpointed remaining TTL in the lessor (memory only, as etcd 3.4;
    /// the index is recorded so replay starts after it). A checkpoint of a lease revoked
    /// meanwhile is ignored, as etcd ignores it.
    fn apply_lease_checkpoint(&self, index: u64, c: &skiffpb::LeaseCheckpoints) -> Applied {
        for cp in &c.checkpoints {
            self.lessor.checkpoint(cp.id, cp.remaining_ttl);
        }
        let w = self.mvcc.write();
        self.commit(w, index)?;
        Ok(Response::LeaseCheckpoint)
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

/// The requests an active CORRUPT alarm refuses with `etcdserver: corrupt cluster`, as
/// etcd's `applierV3Corrupt`: every write to keys or leases, and compaction (and a range,
/// were one proposed). Reads served locally (ranges, read-only txns) never get here, so
/// they keep working; alarms (so the alarm can be disarmed), lease checkpoints and
/// membership requests still apply.
pub fn refused_when_corrupt(req: &Request) -> bool {
    match req {
        Request::Range(_)
        | Request::Put(_)
        | Request::DeleteRange(_)
        | Request::Txn(_)
        | Request::Compaction(_)
        | Request::LeaseGrant(_)
        | Request::LeaseRevoke(_) => true,
        Request::Alarm(_)
        | Request::LeaseCheckpoint(_)
        | Request::MemberAttributes(_)
        | Request::MemberPeerUrls(_) => false,
    }
}

/// A header with only the revision; the server fills cluster, member and term.
pub fn header(revision: i64) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader { revision, ..Default::default() })
}
