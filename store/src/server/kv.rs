//! etcd's KV service: Range, Put, DeleteRange, Txn, Compact.
//!
//! Reads never go through the raft log: serializable ones read local state at once,
//! linearizable ones (the default) first pass a ReadIndex barrier. Writes are proposed.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::EtcdServer;
use crate::apply::{self, check_range, check_txn, is_txn_read_only};
use crate::error::Error;
use crate::proto::etcdserverpb as pb;
use crate::proto::skiffpb::internal_request::Request as Internal;
use pb::kv_server::Kv;

pub struct KvService {
    pub server: Arc<EtcdServer>,
}

impl KvService {
    async fn read<T>(&self, serializable: bool, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Status> {
        if !serializable {
            if self.server.node.status().is_learner {
                return Err(Error::NotSupportedForLearner.into());
            }
            self.server.linearizable_barrier().await?;
        }
        // RocksDB reads of a bounded range are short; they run inline like etcd's reads of
        // its mmapped bbolt file.
        Ok(f()?)
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, request: Request<pb::RangeRequest>) -> Result<Response<pb::RangeResponse>, Status> {
        let r = request.into_inner();
        check_range(&r)?;
        self.server.metrics.range_total.inc();
        let mvcc = self.server.mvcc.clone();
        let mut resp = self.read(r.serializable, || apply::apply_range(&*mvcc, &r)).await?;
        self.server.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn put(&self, request: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let r = request.into_inner();
        apply::check_put(&r)?;
        self.server.metrics.put_total.inc();
        self.server.check_quota().await?;
        match self.server.propose(Internal::Put(r)).await? {
            apply::Response::Put(mut p) => {
                self.server.fill(&mut p.header);
                Ok(Response::new(p))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let r = request.into_inner();
        apply::check_delete(&r)?;
        self.server.metrics.delete_total.inc();
        match self.server.propose(Internal::DeleteRange(r)).await? {
            apply::Response::DeleteRange(mut d) => {
                self.server.fill(&mut d.header);
                Ok(Response::new(d))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn txn(&self, request: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let t = request.into_inner();
        check_txn(&t, self.server.config.max_txn_ops)?;
        self.server.metrics.txn_total.inc();
        if is_txn_read_only(&t) {
            // etcd serves read-only txns without a log entry: a barrier, then a local read
            // inside a write txn that commits nothing.
            self.server.linearizable_barrier().await?;
            let mut resp = read_only_txn(&self.server, &t)?;
            self.server.fill(&mut resp.header);
            return Ok(Response::new(resp));
        }
        if apply::has_put(&t) {
            self.server.check_quota().await?;
        }
        match self.server.propose(Internal::Txn(t)).await? {
            apply::Response::Txn(mut resp) => {
                self.server.fill(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let r = request.into_inner();
        match self.server.propose(Internal::Compaction(r)).await? {
            apply::Response::Compaction(mut c) => {
                self.server.fill(&mut c.header);
                Ok(Response::new(c))
            }
            other => Err(unexpected(other)),
        }
    }
}

/// Evaluates a txn whose every op is a range against current local state.
fn read_only_txn(server: &EtcdServer, t: &pb::TxnRequest) -> Result<pb::TxnResponse, Error> {
    crate::apply::read_only_txn(&server.mvcc, t)
}

pub(super) fn unexpected(r: apply::Response) -> Status {
    Status::internal(format!("etcdserver: unexpected apply result {r:?}"))
}
