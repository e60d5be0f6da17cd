//! etcd's Maintenance service: Alarm, Status, Defragment, Hash, HashKV, Snapshot,
//! MoveLeader. Downgrade is refused as unimplemented.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::kv::unexpected;
use super::{EtcdServer, ETCD_VERSION};
use crate::apply;
use crate::error::Error;
use crate::proto::etcdserverpb as pb;
use crate::proto::skiffpb::internal_request::Request as Internal;
use crate::snapshot;
use pb::maintenance_server::Maintenance;

/// Snapshot chunks queued towards a client; with `snapshot::CHUNK_BYTES` per chunk this
/// bounds the memory one snapshot download takes whatever the database size.
const SNAPSHOT_CHUNKS_QUEUED_MAX: usize = 16;

pub struct MaintenanceService {
    pub server: Arc<EtcdServer>,
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, request: Request<pb::AlarmRequest>) -> Result<Response<pb::AlarmResponse>, Status> {
        let r = request.into_inner();
        if r.action == pb::alarm_request::AlarmAction::Get as i32 {
            let alarms = self.server.alarms.list();
            // etcd's alarm responses carry no header at all.
            return Ok(Response::new(pb::AlarmResponse { header: None, alarms }));
        }
        match self.server.propose(Internal::Alarm(r)).await? {
            apply::Response::Alarm(mut a) => {
                a.header = None;
                Ok(Response::new(a))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn status(&self, _request: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let s = &self.server;
        let st = s.node.status();
        let mut errors = Vec::new();
        for a in s.alarms.list() {
            errors.push(format!("memberID:{} alarm:{} ", a.member_id, alarm_name(a.alarm)));
        }
        Ok(Response::new(pb::StatusResponse {
            header: s.header(s.mvcc.current_revision()),
            version: ETCD_VERSION.to_string(),
            db_size: s.mvcc.db_size_bytes() as i64,
            leader: st.leader_id,
            raft_index: st.commit_index,
            raft_term: st.term,
            raft_applied_index: st.applied_index,
            errors,
            db_size_in_use: s.mvcc.db_size_in_use_bytes() as i64,
            is_learner: st.is_learner,
            storage_version: String::new(),
            db_size_quota: s.config.quota_backend_bytes as i64,
            downgrade_info: None,
        }))
    }

    async fn defragment(
        &self,
        _request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        let mvcc = self.server.mvcc.clone();
        tokio::task::spawn_blocking(move || mvcc.defragment())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(Error::from)?;
        Ok(Response::new(pb::DefragmentResponse { header: self.server.header(self.server.mvcc.current_revision()) }))
    }

    async fn hash(&self, _request: Request<pb::HashRequest>) -> Result<Response<pb::HashResponse>, Status> {
        let mvcc = self.server.mvcc.clone();
        let (hash, _, rev) = tokio::task::spawn_blocking(move || mvcc.hash_kv(0))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(Error::from)?;
        Ok(Response::new(pb::HashResponse { header: self.server.header(rev), hash }))
    }

    async fn hash_kv(&self, request: Request<pb::HashKvRequest>) -> Result<Response<pb::HashKvResponse>, Status> {
        let r = request.into_inner();
        let mvcc = self.server.mvcc.clone();
        let (hash, compact_revision, hash_revision) = tokio::task::spawn_blocking(move || mvcc.hash_kv(r.revision))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(Error::from)?;
        Ok(Response::new(pb::HashKvResponse {
            header: self.server.header(self.server.mvcc.current_revision()),
            hash,
            compact_revision,
            hash_revision,
        }))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(&self, _request: Request<pb::SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        let (tx, rx) = mpsc::channel(SNAPSHOT_CHUNKS_QUEUED_MAX);
        let server = self.server.clone();
        let header = server.header(server.mvcc.current_revision());
        tokio::task::spawn_blocking(move || {
            let tmp = server.config.data_dir.join("member").join("snap");
            let result = snapshot::stream(&server.mvcc, &tmp, |chunk, remaining| {
                let resp = pb::SnapshotResponse {
                    header,
                    remaining_bytes: remaining,
                    blob: chunk,
                    version: ETCD_VERSION.to_string(),
                };
                tx.blocking_send(Ok(resp)).is_ok()
            });
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(Status::internal(format!("etcdserver: snapshot failed: {e}"))));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn move_leader(
        &self,
        request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        let r = request.into_inner();
        let server = &self.server;
        if !server.node.status().is_leader {
            return Err(Error::NotLeader.into());
        }
        let is_voter = server.membership.read().members.get(&r.target_id).is_some_and(|m| !m.is_learner);
        if !is_voter {
            return Err(Error::BadLeaderTransferee.into());
        }
        if r.target_id != server.config.member_id {
            // etcd waits for the transfer up to the request timeout.
            let deadline = tokio::time::Instant::now() + server.request_timeout();
            let mut status = server.node.watch_status();
            server.node.transfer_leader(r.target_id);
            loop {
                if status.borrow_and_update().leader_id == r.target_id {
                    break;
                }
                match tokio::time::timeout_at(deadline, status.changed()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(Error::Stopped.into()),
                    Err(_) => return Err(Error::TimeoutLeaderTransfer.into()),
                }
            }
        }
        Ok(Response::new(pb::MoveLeaderResponse { header: server.header(server.mvcc.current_revision()) }))
    }

    async fn downgrade(&self, _request: Request<pb::DowngradeRequest>) -> Result<Response<pb::DowngradeResponse>, Status> {
        Err(Error::Unimplemented("Maintenance.Downgrade").into())
    }
}

fn alarm_name(alarm: i32) -> &'static str {
    match pb::AlarmType::try_from(alarm) {
        Ok(pb::AlarmType::Nospace) => "NOSPACE",
        Ok(pb::AlarmType::Corrupt) => "CORRUPT",
        _ => "NONE",
    }
}
