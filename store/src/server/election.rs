//! etcd's Election service (v3election), served like the Lock service (`lock.rs`): through
//! a client of the member's own port, as etcd's `concurrency.Election`.
//!
//! A campaigner's key is `name/<lease in hex>` holding its value, under its lease; the
//! leader is the key under `name/` created first. `Campaign` returns once every older key
//! is gone; `Proclaim` and `Resign` act only while the caller's key still has the create
//! revision it was elected with (else "election: not leader"); `Leader` reads the first key;
//! `Observe` streams the leader's key-value each time leadership or the leader's value
//! changes.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use futures::Stream;
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::{kv_client::KvClient, watch_client::WatchClient};
use crate::proto::mvccpb::{event::EventType, KeyValue};
use crate::proto::v3electionpb as epb;

use super::lock::{as_client_error, enqueue, first_created, loopback, prefix_end, wait_deletes, KeyGuard};
use super::EtcdServer;

const NOT_LEADER: &str = "election: not leader";
const NO_LEADER: &str = "election: no leader";
const MISSING_LEADER_KEY: &str = "\"leader\" field must be provided";
/// Leader changes buffered for one `Observe` stream before the observer loop waits.
const OBSERVE_QUEUE: usize = 16;
/// Watch requests queued on a loopback watch stream (one create).
const WATCH_REQUESTS_QUEUED: usize = 1;

pub struct ElectionService {
    pub server: Arc<EtcdServer>,
    pub(super) channel: Arc<OnceLock<Channel>>,
}

fn prefix_of(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

fn same_create_rev(key: &[u8], rev: i64) -> pb::Compare {
    pb::Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::CreateRevision(rev)),
        ..Default::default()
    }
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<epb::LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl epb::election_server::Election for ElectionService {
    async fn campaign(&self, r: Request<epb::CampaignRequest>) -> Result<Response<epb::CampaignResponse>, Status> {
        self.campaign_inner(r.into_inner()).await.map_err(as_client_error)
    }

    async fn proclaim(&self, r: Request<epb::ProclaimRequest>) -> Result<Response<epb::ProclaimResponse>, Status> {
        self.proclaim_inner(r.into_inner()).await.map_err(as_client_error)
    }

    async fn leader(&self, r: Request<epb::LeaderRequest>) -> Result<Response<epb::LeaderResponse>, Status> {
        let channel = loopback(&self.server, &self.channel).map_err(as_client_error)?;
        let (kv, header) = leader_of(&channel, &prefix_of(&r.into_inner().name)).await.map_err(as_client_error)?;
        let kv = kv.ok_or_else(|| Status::unknown(NO_LEADER))?;
        Ok(Response::new(epb::LeaderResponse { header: self.server.header(header.revision), kv: Some(kv) }))
    }

    type ObserveStream = ObserveStream;

    async fn observe(&self, r: Request<epb::LeaderRequest>) -> Result<Response<Self::ObserveStream>, Status> {
        let channel = loopback(&self.server, &self.channel).map_err(as_client_error)?;
        let prefix = prefix_of(&r.into_inner().name);
        let (tx, rx) = tokio::sync::mpsc::channel(OBSERVE_QUEUE);
        let server = self.server.clone();
        tokio::spawn(async move {
            if let Err(e) = observe_loop(&server, &channel, &prefix, &tx).await {
                let _ = tx.send(Err(as_client_error(e))).await;
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn resign(&self, r: Request<epb::ResignRequest>) -> Result<Response<epb::ResignResponse>, Status> {
        let leader = r.into_inner().leader.ok_or_else(|| Status::unknown(MISSING_LEADER_KEY))?;
        let channel = loopback(&self.server, &self.channel).map_err(as_client_error)?;
        let txn = pb::TxnRequest {
            compare: vec![same_create_rev(&leader.key, leader.rev)],
            success: vec![pb::RequestOp {
                request: Some(Op::RequestDeleteRange(pb::DeleteRangeRequest { key: leader.key, ..Default::default() })),
            }],
            failure: vec![],
        };
        let resp = KvClient::new(channel).txn(txn).await.map_err(as_client_error)?.into_inner();
        let rev = resp.header.map(|h| h.revision).unwrap_or_default();
        Ok(Response::new(epb::ResignResponse { header: self.server.header(rev) }))
    }
}

impl ElectionService {
    async fn campaign_inner(&self, req: epb::CampaignRequest) -> Result<Response<epb::CampaignResponse>, Status> {
        let channel = loopback(&self.server, &self.channel)?;
        let mut kv = KvClient::new(channel.clone());
        let prefix = prefix_of(&req.name);
        let mut key = prefix.clone();
        key.extend_from_slice(format!("{:x}", req.lease).as_bytes());
        let (rev, _, mut header) = enqueue(&mut kv, &prefix, &key, &req.value, req.lease).await?;
        let mut guard = KeyGuard { channel: channel.clone(), key: Some(key.clone()) };
        // Campaigning again with the same lease: the key exists; make its value ours.
        let mine = kv.range(pb::RangeRequest { key: key.clone(), ..Default::default() }).await?.into_inner();
        if mine.kvs.first().is_some_and(|k| k.value != req.value) {
            proclaim(&mut kv, &key, rev, req.lease, &req.value).await?;
        }
        header = wait_deletes(&channel, &prefix, rev).await.map(|h| if h.revision > header.revision { h } else { header })?;
        guard.key = None;
        let leader = epb::LeaderKey { name: req.name, key, rev, lease: req.lease };
        Ok(Response::new(epb::CampaignResponse { header: self.server.header(header.revision), leader: Some(leader) }))
    }

    async fn proclaim_inner(&self, req: epb::ProclaimRequest) -> Result<Response<epb::ProclaimResponse>, Status> {
        let leader = req.leader.ok_or_else(|| Status::unknown(MISSING_LEADER_KEY))?;
        let channel = loopback(&self.server, &self.channel)?;
        let header = proclaim(&mut KvClient::new(channel), &leader.key, leader.rev, leader.lease, &req.value).await?;
        Ok(Response::new(epb::ProclaimResponse { header: self.server.header(header.revision) }))
    }
}

/// Puts `value` on the leader's key if it still has create revision `rev`.
async fn proclaim(
    kv: &mut KvClient<Channel>,
    key: &[u8],
    rev: i64,
    lease: i64,
    value: &[u8],
) -> Result<pb::ResponseHeader, Status> {
    let put = pb::PutRequest { key: key.to_vec(), value: value.to_vec(), lease, ..Default::default() };
    let txn = pb::TxnRequest {
        compare: vec![same_create_rev(key, rev)],
        success: vec![pb::RequestOp { request: Some(Op::RequestPut(put)) }],
        failure: vec![],
    };
    let resp = kv.txn(txn).await?.into_inner();
    if !resp.succeeded {
        return Err(Status::unknown(NOT_LEADER));
    }
    Ok(resp.header.unwrap_or_default())
}

/// The first-created key under `prefix`, with the header of the read.
async fn leader_of(channel: &Channel, prefix: &[u8]) -> Result<(Option<KeyValue>, pb::ResponseHeader), Status> {
    let resp = KvClient::new(channel.clone()).range(first_created(prefix)).await?.into_inner();
    Ok((resp.kvs.into_iter().next(), resp.header.unwrap_or_default()))
}

/// Streams the leader's key-value each time it changes, until the observer goes away.
async fn observe_loop(
    server: &EtcdServer,
    channel: &Channel,
    prefix: &[u8],
    tx: &tokio::sync::mpsc::Sender<Result<epb::LeaderResponse, Status>>,
) -> Result<(), Status> {
    while !tx.is_closed() {
        let (leader, header) = leader_of(channel, prefix).await?;
        let from = header.revision + 1;
        let Some(kv) = leader else {
            // No leader: wait for a key under the prefix to appear, then look again.
            let mut events = open_watch(channel, prefix, prefix_end(prefix), from).await?;
            'wait: while let Some(resp) = events.next().await {
                let resp = resp?;
                if resp.compact_revision > 0 || resp.canceled {
                    break 'wait;
                }
                if resp.events.iter().any(|e| e.r#type == EventType::Put as i32) {
                    break 'wait;
                }
            }
            continue;
        };
        let resp = epb::LeaderResponse { header: server.header(header.revision), kv: Some(kv.clone()) };
        if tx.send(Ok(resp)).await.is_err() {
            return Ok(());
        }
        // Follow the leader's key: each new value is sent; its deletion ends its term.
        let mut events = open_watch(channel, &kv.key, Vec::new(), from).await?;
        'term: while let Some(resp) = events.next().await {
            let resp = resp?;
            if resp.compact_revision > 0 || resp.canceled {
                break 'term;
            }
            for e in resp.events {
                if e.r#type == EventType::Delete as i32 {
                    break 'term;
                }
                if let Some(new) = e.kv {
                    let resp = epb::LeaderResponse { header: server.header(new.mod_revision), kv: Some(new) };
                    if tx.send(Ok(resp)).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
    Ok(())
}

/// A watch of `[key, end)` (just `key` when `end` is empty) from `rev`, over the loopback.
async fn open_watch(
    channel: &Channel,
    key: &[u8],
    end: Vec<u8>,
    rev: i64,
) -> Result<tonic::Streaming<pb::WatchResponse>, Status> {
    let (req_tx, req_rx) = tokio::sync::mpsc::channel(WATCH_REQUESTS_QUEUED);
    let create = pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: key.to_vec(),
            range_end: end,
            start_revision: rev,
            ..Default::default()
        })),
    };
    req_tx.send(create).await.map_err(|_| Status::internal("watch request queue closed"))?;
    // The request sender is dropped here; the stream stays open for the responses.
    Ok(WatchClient::new(channel.clone())
        .watch(tokio_stream::wrappers::ReceiverStream::new(req_rx))
        .await?
        .into_inner())
}
