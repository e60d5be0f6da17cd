//! etcd's Lock service (v3lock): a distributed mutex served by the member itself, built
//! from the KV and Watch APIs exactly as etcd's own (`concurrency.Mutex` over a client of
//! the member's own client port):
//!
//! - `Lock(name, lease)`: the waiter's key is `name/<lease in hex>`, created under the lease
//!   in a txn only if absent; the lock is held once no key under `name/` has a lower
//!   create revision — the waiter watches the newest older key until it is deleted, and
//!   looks again (first come, first served; a holder whose lease expires loses its key and
//!   so the lock). The response carries that key: the client's proof of ownership (and
//!   fencing token with its create revision).
//! - `Unlock(key)`: deletes the key.
//!
//! The requests go through this member's own gRPC port (a loopback channel), so they get
//! every guarantee a client gets: linearizable, forwarded to the leader in a cluster.
//! A client that goes away while waiting has its key removed, so it blocks nobody.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use tokio_stream::StreamExt as _;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::{kv_client::KvClient, watch_client::WatchClient};
use crate::proto::mvccpb::event::EventType;
use crate::proto::v3lockpb as lpb;

use super::EtcdServer;

/// Watch requests queued on the loopback watch stream (one create at most).
const WATCH_REQUESTS_QUEUED: usize = 1;

pub struct LockService {
    pub server: Arc<EtcdServer>,
    pub(super) channel: Arc<OnceLock<Channel>>,
}

/// A client of this member's own client port.
pub(super) fn loopback(server: &EtcdServer, cell: &OnceLock<Channel>) -> Result<Channel, Status> {
    if let Some(c) = cell.get() {
        return Ok(c.clone());
    }
    let addr: SocketAddr = *server
        .self_client_addr
        .get()
        .ok_or_else(|| Status::unavailable("etcdserver: client port not serving yet"))?;
    let host = if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    let channel = Endpoint::from_shared(format!("http://{host}"))
        .map_err(|e| Status::internal(e.to_string()))?
        .connect_lazy();
    let _ = cell.set(channel.clone());
    Ok(channel)
}

pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn create_rev_is_zero(key: &[u8]) -> pb::Compare {
    pb::Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::CreateRevision(0)),
        ..Default::default()
    }
}

fn range_op(req: pb::RangeRequest) -> pb::RequestOp {
    pb::RequestOp { request: Some(Op::RequestRange(req)) }
}

/// The key under `prefix` created first.
pub(super) fn first_created(prefix: &[u8]) -> pb::RangeRequest {
    pb::RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        sort_order: SortOrder::Ascend as i32,
        sort_target: SortTarget::Create as i32,
        limit: 1,
        ..Default::default()
    }
}

/// Creates `key` (with `value` under `lease`) unless it exists. Returns its create
/// revision, the first-created key under `prefix`, and the response header.
pub(super) async fn enqueue(
    kv: &mut KvClient<Channel>,
    prefix: &[u8],
    key: &[u8],
    value: &[u8],
    lease: i64,
) -> Result<(i64, Option<crate::proto::mvccpb::KeyValue>, pb::ResponseHeader), Status> {
    let put = pb::PutRequest { key: key.to_vec(), value: value.to_vec(), lease, ..Default::default() };
    let txn = pb::TxnRequest {
        compare: vec![create_rev_is_zero(key)],
        success: vec![pb::RequestOp { request: Some(Op::RequestPut(put)) }, range_op(first_created(prefix))],
        failure: vec![
            range_op(pb::RangeRequest { key: key.to_vec(), ..Default::default() }),
            range_op(first_created(prefix)),
        ],
    };
    let resp = kv.txn(txn).await?.into_inner();
    let header = resp.header.unwrap_or_default();
    let range = |i: usize| match resp.responses.get(i).and_then(|r| r.response.clone()) {
        Some(pb::response_op::Response::ResponseRange(r)) => Some(r),
        _ => None,
    };
    let my_rev = if resp.succeeded {
        header.revision
    } else {
        range(0).and_then(|r| r.kvs.first().map(|kv| kv.create_revision)).unwrap_or(0)
    };
    let owner = range(1).and_then(|r| r.kvs.into_iter().next());
    Ok((my_rev, owner, header))
}

/// Waits until no key under `prefix` has a create revision below `my_rev` (each older key
/// deleted). Returns the header of the last read.
pub(super) async fn wait_deletes(
    channel: &Channel,
    prefix: &[u8],
    my_rev: i64,
) -> Result<pb::ResponseHeader, Status> {
    let mut kv = KvClient::new(channel.clone());
    loop {
        let older = pb::RangeRequest {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            max_create_revision: my_rev - 1,
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Create as i32,
            limit: 1,
            ..Default::default()
        };
        let resp = kv.range(older).await?.into_inner();
        let header = resp.header.unwrap_or_default();
        let Some(last) = resp.kvs.into_iter().next() else {
            return Ok(header);
        };
        wait_delete(channel, &last.key, header.revision).await?;
    }
}

/// Waits for `key` to be deleted after revision `rev`.
async fn wait_delete(channel: &Channel, key: &[u8], rev: i64) -> Result<(), Status> {
    let (tx, rx) = tokio::sync::mpsc::channel(WATCH_REQUESTS_QUEUED);
    let create = pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: key.to_vec(),
            start_revision: rev + 1,
            ..Default::default()
        })),
    };
    tx.send(create).await.map_err(|_| Status::internal("watch request queue closed"))?;
    let mut stream = WatchClient::new(channel.clone())
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    while let Some(resp) = stream.next().await {
        let resp = resp?;
        if resp.compact_revision > 0 || resp.canceled {
            // Compacted past `rev`: the key may be gone already; the caller looks again.
            return Ok(());
        }
        if resp.events.iter().any(|e| e.r#type == EventType::Delete as i32) {
            return Ok(());
        }
    }
    Err(Status::unavailable("etcdserver: watch stream closed while waiting for a lock"))
}

/// Deletes `key` on drop unless disarmed: a waiter that gave up must not block the others.
pub(super) struct KeyGuard {
    pub channel: Channel,
    pub key: Option<Vec<u8>>,
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut kv = KvClient::new(self.channel.clone());
            tokio::spawn(async move {
                let _ = kv.delete_range(pb::DeleteRangeRequest { key, ..Default::default() }).await;
            });
        }
    }
}

/// etcd serves Lock and Election through a client of itself and returns that client's
/// errors as they are: every failure reaches the caller as `Unknown` with the message.
pub(super) fn as_client_error(s: Status) -> Status {
    Status::unknown(s.message().to_string())
}

#[tonic::async_trait]
impl lpb::lock_server::Lock for LockService {
    async fn lock(&self, request: Request<lpb::LockRequest>) -> Result<Response<lpb::LockResponse>, Status> {
        self.lock_inner(request.into_inner()).await.map_err(as_client_error)
    }

    async fn unlock(&self, request: Request<lpb::UnlockRequest>) -> Result<Response<lpb::UnlockResponse>, Status> {
        self.unlock_inner(request.into_inner()).await.map_err(as_client_error)
    }
}

impl LockService {
    async fn lock_inner(&self, req: lpb::LockRequest) -> Result<Response<lpb::LockResponse>, Status> {
        let channel = loopback(&self.server, &self.channel)?;
        let mut kv = KvClient::new(channel.clone());
        let mut prefix = req.name.clone();
        prefix.push(b'/');
        let mut key = prefix.clone();
        key.extend_from_slice(format!("{:x}", req.lease).as_bytes());
        let (my_rev, owner, mut header) = enqueue(&mut kv, &prefix, &key, b"", req.lease).await?;
        let mut guard = KeyGuard { channel: channel.clone(), key: Some(key.clone()) };
        if owner.map(|o| o.create_revision) != Some(my_rev) {
            header = wait_deletes(&channel, &prefix, my_rev).await?;
            // The lease may have expired while waiting: then the key, and the lock, are gone.
            let mine = kv.range(pb::RangeRequest { key: key.clone(), ..Default::default() }).await?.into_inner();
            if mine.kvs.is_empty() {
                guard.key = None;
                return Err(Status::unknown("mutex: session is expired"));
            }
            header = mine.header.unwrap_or(header);
        }
        guard.key = None;
        Ok(Response::new(lpb::LockResponse { header: self.server.header(header.revision), key }))
    }

    async fn unlock_inner(&self, req: lpb::UnlockRequest) -> Result<Response<lpb::UnlockResponse>, Status> {
        let channel = loopback(&self.server, &self.channel)?;
        let resp = KvClient::new(channel)
            .delete_range(pb::DeleteRangeRequest { key: req.key, ..Default::default() })
            .await?
            .into_inner();
        let rev = resp.header.map(|h| h.revision).unwrap_or_default();
        Ok(Response::new(lpb::UnlockResponse { header: self.server.header(rev) }))
    }
}
