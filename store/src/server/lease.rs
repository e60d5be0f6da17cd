//! etcd's Lease service. Grant and Revoke are replicated; KeepAlive, TimeToLive and Leases
//! are answered by the leader from the lessor's memory, as etcd does. Also the leader's
//! lease checkpoints (`propose_due_checkpoints`), proposed from the expiry sweep.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::kv::unexpected;
use super::EtcdServer;
use crate::apply;
use crate::config::LEASE_TTL_SECONDS_MAX;
use crate::error::Error;
use crate::lease::CHECKPOINTS_PER_PROPOSAL_MAX;
use crate::proto::etcdserverpb as pb;
use crate::proto::skiffpb::internal_request::Request as Internal;
use crate::proto::skiffpb::LeaseCheckpoints;
use pb::lease_client::LeaseClient;
use pb::lease_server::Lease;

/// Keep-alive responses buffered per stream; a client that stops reading stalls only its
/// own stream.
const KEEPALIVE_RESPONSES_QUEUED_MAX: usize = 64;

/// Keep-alives a follower's forwarded stream queues for the leader.
const FORWARDED_REQUESTS_QUEUED_MAX: usize = 16;

/// A follower's keep-alive stream to the leader, open for as long as its client's stream
/// is: one forwarded request, one response, in order. A stream per keep-alive would be
/// dropped after its answer, a locally reset HTTP/2 stream each time; at thousands of
/// keep-alives per second that trips h2's bound on locally reset streams and the whole
/// channel to the leader fails (seen as "etcdserver: no leader" under load).
struct Forwarded {
    requests: mpsc::Sender<pb::LeaseKeepAliveRequest>,
    responses: Streaming<pb::LeaseKeepAliveResponse>,
}

impl Forwarded {
    async fn open(server: &EtcdServer) -> Result<Forwarded, Error> {
        let mut client = LeaseClient::new(server.leader_channel()?);
        let (requests, rx) = mpsc::channel(FORWARDED_REQUESTS_QUEUED_MAX);
        let responses = client
            .lease_keep_alive(ReceiverStream::new(rx))
            .await
            .map_err(|_| Error::NoLeader)?
            .into_inner();
        Ok(Forwarded { requests, responses })
    }
}

/// Renews a lease on the leader for a client connected to a follower, over `forwarded`
/// (opened on first use; dropped after a failure, so the next keep-alive dials the leader
/// it finds then).
async fn forward_keep_alive(
    server: &EtcdServer,
    forwarded: &mut Option<Forwarded>,
    req: pb::LeaseKeepAliveRequest,
) -> Result<pb::LeaseKeepAliveResponse, Error> {
    let forward = async {
        if forwarded.is_none() {
            *forwarded = Some(Forwarded::open(server).await?);
        }
        let stream = forwarded.as_mut().expect("opened above");
        stream.requests.send(req).await.map_err(|_| Error::NoLeader)?;
        match stream.responses.message().await {
            Ok(Some(mut resp)) => {
                resp.header = server.header(resp.header.map(|h| h.revision).unwrap_or_default());
                Ok(resp)
            }
            _ => Err(Error::NoLeader),
        }
    };
    let result = match tokio::time::timeout(server.request_timeout(), forward).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout),
    };
    if result.is_err() {
        *forwarded = None;
    }
    result
}

/// The leader's checkpoint sweep (with `--experimental-enable-lease-checkpoint`): proposes
/// the remaining TTL of the leases due, one bounded batch per sweep, without waiting for it.
pub(super) fn propose_due_checkpoints(server: &Arc<EtcdServer>, now: std::time::Instant) {
    let Some(interval) = server.config.lease_checkpoint_interval else {
        return;
    };
    let due = server.lessor.due_checkpoints(now, interval, CHECKPOINTS_PER_PROPOSAL_MAX);
    if due.is_empty() {
        return;
    }
    let checkpoints = due
        .into_iter()
        .map(|c| pb::LeaseCheckpoint { id: c.id, remaining_ttl: c.remaining_ttl_seconds })
        .collect();
    let server = server.clone();
    tokio::spawn(async move {
        let request = Internal::LeaseCheckpoint(LeaseCheckpoints { checkpoints });
        if let Err(e) = server.propose(request).await {
            // The leases stay scheduled; a lost batch only makes a later checkpoint count.
            tracing::warn!(error = %e, "proposing lease checkpoints failed");
        }
    });
}

/// Clears a lease's checkpoint before a keep-alive renews it (etcd's `Renew`): otherwise a
/// new leader would give the renewed lease the stale remaining TTL. Only a lease holding a
/// checkpoint costs a raft entry, so at most one per lease and checkpoint interval.
async fn clear_checkpoint(server: &EtcdServer, id: i64) -> Result<(), Error> {
    if server.config.lease_checkpoint_interval.is_none() || !server.lessor.has_checkpoint(id) {
        return Ok(());
    }
    let clear = pb::LeaseCheckpoint { id, remaining_ttl: 0 };
    server.propose(Internal::LeaseCheckpoint(LeaseCheckpoints { checkpoints: vec![clear] })).await?;
    Ok(())
}

pub struct LeaseService {
    pub server: Arc<EtcdServer>,
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let mut r = request.into_inner();
        if r.ttl > LEASE_TTL_SECONDS_MAX {
            return Err(Error::LeaseTtlTooLarge.into());
        }
        self.server.check_quota().await?;
        if r.id == 0 {
            // etcd's leader picks a random positive id not in use.
            loop {
                let id = rand::rng().random_range(1..i64::MAX);
                if !self.server.lessor.exists(id) {
                    r.id = id;
                    break;
                }
            }
        }
        match self.server.propose(Internal::LeaseGrant(r)).await? {
            apply::Response::LeaseGrant(mut g) => {
                self.server.fill(&mut g.header);
                Ok(Response::new(g))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let r = request.into_inner();
        if !self.server.lessor.exists(r.id) {
            return Err(Error::LeaseNotFound.into());
        }
        match self.server.propose(Internal::LeaseRevoke(r)).await? {
            apply::Response::LeaseRevoke(mut g) => {
                self.server.fill(&mut g.header);
                Ok(Response::new(g))
            }
            other => Err(unexpected(other)),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(KEEPALIVE_RESPONSES_QUEUED_MAX);
        let server = self.server.clone();
        tokio::spawn(async move {
            let mut forwarded: Option<Forwarded> = None;
            loop {
                let req = match inbound.message().await {
                    Ok(Some(req)) => req,
                    Ok(None) | Err(_) => break,
                };
                let resp = if server.node.status().is_leader {
                    // Became the leader: answer here from now on.
                    forwarded = None;
                    if let Err(e) = clear_checkpoint(&server, req.id).await {
                        let _ = tx.send(Err(e.into())).await;
                        break;
                    }
                    // etcd answers an unknown lease with TTL 0 (not an error) on the stream.
                    let ttl = server.lessor.renew(req.id).unwrap_or(0);
                    pb::LeaseKeepAliveResponse { header: server.header(server.mvcc.current_revision()), id: req.id, ttl }
                } else {
                    // Only the leader's lessor expires leases: renew there (etcd forwards
                    // keep-alives to the leader the same way).
                    match forward_keep_alive(&server, &mut forwarded, req).await {
                        Ok(resp) => resp,
                        Err(e) => {
                            let _ = tx.send(Err(e.into())).await;
                            break;
                        }
                    }
                };
                if tx.send(Ok(resp)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let r = request.into_inner();
        if !self.server.node.status().is_leader {
            // The remaining TTL is the leader's: only it sees the keep-alives.
            let mut client = LeaseClient::new(self.server.leader_channel()?);
            let mut resp = client.lease_time_to_live(r).await?.into_inner();
            resp.header = self.server.header(resp.header.map(|h| h.revision).unwrap_or_default());
            return Ok(Response::new(resp));
        }
        // Linearizable, like etcd.
        self.server.linearizable_barrier().await?;
        let Some(info) = self.server.lessor.time_to_live(r.id, r.keys) else {
            // etcd reports a missing lease as TTL -1, not as an error.
            return Ok(Response::new(pb::LeaseTimeToLiveResponse {
                header: self.server.header(self.server.mvcc.current_revision()),
                id: r.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            }));
        };
        Ok(Response::new(pb::LeaseTimeToLiveResponse {
            header: self.server.header(self.server.mvcc.current_revision()),
            id: info.id,
            ttl: info.remaining_ttl,
            granted_ttl: info.granted_ttl,
            keys: info.keys,
        }))
    }

    async fn lease_leases(
        &self,
        _request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        self.server.linearizable_barrier().await?;
        let leases = self.server.lessor.ids().into_iter().map(|id| pb::LeaseStatus { id }).collect();
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: self.server.header(self.server.mvcc.current_revision()),
            leases,
        }))
    }
}
