//! The peer port: raft's transport service plus `skiffpb.Peer` (membership discovery for
//! members joining an existing cluster), and the state machine's side of raft snapshots.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use skiff_raft::raft::eraftpb::SnapshotMetadata;
use skiff_raft::transport::{SnapshotStore, Transport};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::membership::Membership;
use crate::mvcc::MvccStore;
use crate::proto::skiffpb;
use skiffpb::peer_client::PeerClient;
use skiffpb::peer_server::{Peer, PeerServer};

/// How long a joining member waits for one peer to answer.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(3);

/// Snapshots the leader builds to send (removed once sent) and snapshots a follower
/// received (kept until the next one is installed: a crash mid-install re-installs it).
pub struct StateMachineSnapshots {
    pub mvcc: Arc<MvccStore>,
    pub snap_dir: PathBuf,
}

impl StateMachineSnapshots {
    fn outgoing_dir(&self) -> PathBuf {
        self.snap_dir.join("outgoing")
    }
}

impl SnapshotStore for StateMachineSnapshots {
    fn create(&self) -> Result<(SnapshotMetadata, PathBuf), String> {
        let file = crate::snapshot::create_raft_snapshot(&self.mvcc, &self.outgoing_dir()).map_err(|e| e.to_string())?;
        let membership = match &file.membership {
            Some(bytes) => Membership::decode(bytes).map_err(|e| e.to_string())?,
            None => {
                let _ = std::fs::remove_file(&file.path);
                return Err("the state machine holds no membership to snapshot".into());
            }
        };
        let mut meta = SnapshotMetadata { index: file.index, term: file.term, ..Default::default() };
        meta.set_conf_state(membership.conf_state());
        info!(index = file.index, term = file.term, bytes = file.size, "created snapshot for a follower");
        Ok((meta, file.path))
    }

    fn receive_path(&self, index: u64, term: u64) -> PathBuf {
        crate::snapshot::raft_snapshot_path(&self.snap_dir, index, term)
    }
}

struct PeerService {
    cluster_id: u64,
    membership: Arc<RwLock<Membership>>,
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn get_membership(
        &self,
        _r: Request<skiffpb::MembershipRequest>,
    ) -> Result<Response<skiffpb::MembershipResponse>, Status> {
        Ok(Response::new(skiffpb::MembershipResponse {
            cluster_id: self.cluster_id,
            membership: Some(self.membership.read().to_proto()),
        }))
    }
}

/// Binds every peer listener (before returning, so a bad address fails the start) and
/// serves the transport and the peer service on them.
pub async fn serve(
    addrs: &[std::net::SocketAddr],
    transport: &Transport,
    cluster_id: u64,
    membership: Arc<RwLock<Membership>>,
) -> anyhow::Result<Vec<std::net::SocketAddr>> {
    let mut bound = Vec::new();
    for addr in addrs {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        bound.push(local);
        info!(address = %local, "serving peer traffic");
        let router = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(transport.service())
            .add_service(PeerServer::new(PeerService { cluster_id, membership: membership.clone() }));
        tokio::spawn(async move {
            if let Err(e) = router.serve_with_incoming(TcpListenerStream::new(listener)).await {
                warn!(error = %e, "peer listener stopped");
            }
        });
    }
    Ok(bound)
}

/// Asks the `--initial-cluster` peers for the cluster this member was added to. Returns
/// the cluster ID and membership from the first that answers.
pub async fn discover(peer_urls: &[String]) -> anyhow::Result<(u64, Membership)> {
    let mut errors = Vec::new();
    for url in peer_urls {
        let attempt = async {
            let channel = tonic::transport::Endpoint::from_shared(url.clone())?
                .connect_timeout(DISCOVERY_TIMEOUT)
                .connect()
                .await?;
            let resp = PeerClient::new(channel).get_membership(skiffpb::MembershipRequest {}).await?.into_inner();
            anyhow::Ok((resp.cluster_id, Membership::from_proto(resp.membership.unwrap_or_default())))
        };
        match tokio::time::timeout(DISCOVERY_TIMEOUT, attempt).await {
            Ok(Ok(found)) => return Ok(found),
            Ok(Err(e)) => errors.push(format!("{url}: {e}")),
            Err(_) => errors.push(format!("{url}: timed out")),
        }
    }
    anyhow::bail!("could not retrieve the cluster from any peer ({})", errors.join("; "))
}

/// How long a member bootstrapping a new cluster waits for each peer's answer when it
/// checks that it is not joining someone else's cluster.
const BOOTSTRAP_CHECK_TIMEOUT: Duration = Duration::from_millis(500);

/// Before a member first bootstraps a new cluster, asks the other initial members (those
/// already up; the rest are skipped) which cluster they are in: a different cluster ID
/// (another `--initial-cluster-token` or `--initial-cluster`) or a membership in which this
/// member has already started (its data dir was lost or wiped) refuses the start with a
/// clear error, instead of a member that talks past its peers forever.
pub async fn check_new_bootstrap(peer_urls: &[String], cluster_id: u64, member_id: u64) -> anyhow::Result<()> {
    let probes = peer_urls.iter().map(|url| async move {
        let attempt = async {
            let channel = tonic::transport::Endpoint::from_shared(url.clone())?
                .connect_timeout(BOOTSTRAP_CHECK_TIMEOUT)
                .connect()
                .await?;
            let resp = PeerClient::new(channel).get_membership(skiffpb::MembershipRequest {}).await?.into_inner();
            anyhow::Ok((resp.cluster_id, Membership::from_proto(resp.membership.unwrap_or_default())))
        };
        (url, tokio::time::timeout(BOOTSTRAP_CHECK_TIMEOUT, attempt).await)
    });
    for (url, answer) in futures::future::join_all(probes).await {
        let Ok(Ok((remote_cluster, membership))) = answer else { continue };
        if remote_cluster != cluster_id {
            anyhow::bail!(
                "cluster ID mismatch: the member at {url} is in cluster {remote_cluster:x}, this member would bootstrap \
                 cluster {cluster_id:x} (check --initial-cluster and --initial-cluster-token)"
            );
        }
        if membership.members.get(&member_id).is_some_and(|m| !m.name.is_empty()) {
            anyhow::bail!(
                "member {member_id:x} has already been bootstrapped (its data dir is gone: remove it with `etcdctl member \
                 remove` and add it back with `member add` and --initial-cluster-state=existing)"
            );
        }
    }
    Ok(())
}

/// The member's identity, fixed at its first start: `member/identity` holds the member
/// and cluster IDs (a joining member learned them from its peers; they cannot be derived
/// from flags again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub member_id: u64,
    pub cluster_id: u64,
}

impl Identity {
    pub fn path(member_dir: &Path) -> PathBuf {
        member_dir.join("identity")
    }

    pub fn load(member_dir: &Path) -> anyhow::Result<Option<Identity>> {
        let path = Self::path(member_dir);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!("{} is corrupt: {e}", path.display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the file durably (temp file, fsync, rename, directory fsync).
    pub fn store(&self, member_dir: &Path) -> anyhow::Result<()> {
        use std::io::Write;
        let path = Self::path(member_dir);
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(self)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(member_dir)?.sync_all()?;
        Ok(())
    }
}
