//! The etcd server: opens the state machine and the raft node, wires the applier, and
//! serves etcd's gRPC services plus `/metrics`, `/health` and `/version` over HTTP on the
//! same client port (etcd multiplexes them the same way).
//!
//! Request path for a write: the service validates the request, `EtcdServer::propose`
//! wraps it in an `InternalRequest` with a fresh id, registers a waiter, proposes it to raft
//! and waits (bounded by the request timeout) for the applier to answer.

mod cluster;
mod corrupt;
mod election;
mod h2shim;
mod http;
mod kv;
mod lease;
mod lock;
mod maintenance;
mod members;
pub mod peer;
mod unimplemented;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use prost::Message;
use skiff_raft::node::{self, NodeConfig, NodeHandle};
use skiff_raft::storage::{DurableStorage, WalConfig};
use skiff_raft::transport::{Transport, TransportMetrics};
use skiff_raft::wal::WalMetrics;
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use crate::apply::{Alarms, Applied, Applier, Waiters};
use crate::config::{ClusterState, StoreConfig};
use crate::membership::Membership;
use crate::error::Error;
use crate::lease::Lessor;
use crate::metrics::Metrics;
use crate::mvcc::{MvccConfig, MvccStore};
use crate::proto::etcdserverpb as pb;
use crate::proto::skiffpb::{internal_request::Request, InternalRequest};
use crate::watch::WatchHub;

/// The etcd API version this server implements, reported by `Status.version` and
/// `/version`. kube-apiserver enables features (e.g. consistent list from cache) by it.
pub const ETCD_VERSION: &str = "3.5.17";
/// The cluster version, as etcd reports `etcdcluster` in `/version`.
pub const CLUSTER_VERSION: &str = "3.5.0";
/// How often the leader looks for expired leases (etcd checks every 500 ms).
const LEASE_EXPIRY_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// How often the server checks how far the state machine got since its last flush. Every
/// `snapshot_count` applied entries it flushes RocksDB's memtables to SST files and compacts
/// the raft log up to there: RocksDB's own WAL is written out but never fsynced, so it
/// covers a killed process, not a power loss, and the raft log must keep every entry after
/// the last flush.
const APPLIED_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The server's shared state; cheap to clone behind an `Arc`.
pub struct EtcdServer {
    pub config: StoreConfig,
    pub mvcc: Arc<MvccStore>,
    pub lessor: Arc<Lessor>,
    pub hub: Arc<WatchHub>,
    pub waiters: Arc<Waiters>,
    pub alarms: Arc<Alarms>,
    pub node: NodeHandle,
    pub storage: DurableStorage,
    pub metrics: Arc<Metrics>,
    pub membership: Arc<RwLock<Membership>>,
    pub transport: Transport,
    /// gRPC channels to other members' client URLs, for requests only the leader serves
    /// (lease keep-alives, membership changes), by member id.
    client_channels: Mutex<std::collections::HashMap<u64, tonic::transport::Channel>>,
    /// Whether this member's attributes are in the membership: client listeners accept
    /// connections only from then on.
    pub ready: tokio::sync::watch::Sender<bool>,
    /// Set by `stop`: the raft node ending afterwards is the shutdown, not a failure.
    stopping: std::sync::atomic::AtomicBool,
    next_request_id: AtomicU64,
    started: Instant,
    /// The first client listener's bound address: the Lock service is a client of it.
    pub self_client_addr: std::sync::OnceLock<std::net::SocketAddr>,
}

impl EtcdServer {
    pub fn request_timeout(&self) -> Duration {
        // etcd: 5 s plus two election timeouts.
        Duration::from_secs(5) + 2 * self.config.heartbeat_interval * self.config.election_ticks as u32
    }

    /// A complete response header at `revision`.
    pub fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        Some(pb::ResponseHeader {
            cluster_id: self.config.cluster_id,
            member_id: self.config.member_id,
            revision,
            raft_term: self.node.status().term,
        })
    }

    /// Fills cluster, member and term into a header the applier filled with a revision.
    pub fn fill(&self, header: &mut Option<pb::ResponseHeader>) {
        let rev = header.as_ref().map(|h| h.revision).unwrap_or_else(|| self.mvcc.current_revision());
        *header = self.header(rev);
    }

    /// A request id unique across the cluster and restarts.
    pub fn next_id(&self) -> u64 {
        self.next_request_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Replicates `request` through raft and waits for the applier's result.
    pub async fn propose(&self, request: Request) -> Applied {
        let id = self.next_id();
        let data = InternalRequest { id, request: Some(request) }.encode_to_vec();
        if data.len() > self.config.max_request_bytes {
            return Err(Error::RequestTooLarge);
        }
        let waiter = self.waiters.register(id);
        let start = Instant::now();
        match self.node.propose(data).await {
            Ok(term) => self.waiters.proposed_in(id, term),
            Err(e) => {
                self.waiters.cancel(id);
                self.metrics.proposals_failed.inc();
                return Err(e.into());
            }
        }
        self.metrics.proposals_pending.inc();
        let result = tokio::time::timeout(self.request_timeout(), waiter).await;
        self.metrics.proposals_pending.dec();
        match result {
            // Answered by `Waiters` when a later leader's entry was applied first: the
            // proposal was lost with its leader, a failed proposal (never an applier result).
            Ok(Ok(Err(Error::TimeoutDueToLeaderFail))) => {
                self.metrics.proposals_failed.inc();
                Err(Error::TimeoutDueToLeaderFail)
            }
            Ok(Ok(applied)) => {
                self.metrics.proposals_applied.inc();
                self.metrics.request_duration.observe(start.elapsed().as_secs_f64());
                applied
            }
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => {
                self.waiters.cancel(id);
                self.metrics.proposals_failed.inc();
                // etcd tells a client whose request was lost with a failed leader apart
                // from one that was merely slow.
                if self.node.status().leader_id == 0 || self.leader_changed_since(start) {
                    Err(Error::TimeoutDueToLeaderFail)
                } else {
                    Err(Error::Timeout)
                }
            }
        }
    }

    fn leader_changed_since(&self, since: Instant) -> bool {
        self.metrics.last_leader_change().is_some_and(|t| t >= since)
    }

    /// A gRPC channel to `member`'s first client URL (cached).
    pub fn client_channel(&self, member: u64) -> Result<tonic::transport::Channel, Error> {
        if let Some(c) = self.client_channels.lock().get(&member) {
            return Ok(c.clone());
        }
        let url = self
            .membership
            .read()
            .members
            .get(&member)
            .and_then(|m| m.client_urls.first().cloned())
            .ok_or(Error::NoLeader)?;
        let channel = tonic::transport::Endpoint::from_shared(url)
            .map_err(|e| Error::Internal(format!("member {member:x} has an invalid client URL: {e}")))?
            .connect_timeout(Duration::from_secs(1))
            .connect_lazy();
        self.client_channels.lock().insert(member, channel.clone());
        Ok(channel)
    }

    /// The leader's client channel, when another member leads.
    pub fn leader_channel(&self) -> Result<tonic::transport::Channel, Error> {
        let st = self.node.status();
        if st.leader_id == 0 {
            return Err(Error::NoLeader);
        }
        self.client_channel(st.leader_id)
    }

    /// Waits until local state reflects every write committed before this call
    /// (a ReadIndex round, then the applier catching up to it).
    pub async fn linearizable_barrier(&self) -> Result<(), Error> {
        if self.config.unsafe_no_read_index {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + self.request_timeout();
        let index = tokio::time::timeout_at(deadline, self.node.read_index())
            .await
            .map_err(|_| Error::Timeout)??;
        let mut status = self.node.watch_status();
        loop {
            if status.borrow_and_update().applied_index >= index {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, status.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::Stopped),
                Err(_) => return Err(Error::Timeout),
            }
        }
    }

    /// etcd's quota check before a write that may grow the database: over quota, the
    /// NOSPACE alarm is raised (through raft, so every member sees it) and the write fails
    /// with `etcdserver: mvcc: database space exceeded`.
    pub async fn check_quota(&self) -> Result<(), Error> {
        if self.alarms.has(pb::AlarmType::Nospace) {
            return Err(Error::NoSpace);
        }
        if self.mvcc.db_size_bytes_recent() <= self.config.quota_backend_bytes {
            return Ok(());
        }
        warn!(
            quota_bytes = self.config.quota_backend_bytes,
            db_size_bytes = self.mvcc.db_size_bytes(),
            "database space exceeded; raising NOSPACE alarm"
        );
        let alarm = pb::AlarmRequest {
            action: pb::alarm_request::AlarmAction::Activate as i32,
            member_id: self.config.member_id,
            alarm: pb::AlarmType::Nospace as i32,
        };
        self.propose(Request::Alarm(alarm)).await?;
        Err(Error::NoSpace)
    }

    /// Stops the raft node for a clean shutdown.
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.node.stop().await;
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// A running server; dropping it does not stop it, `shutdown` does.
pub struct RunningServer {
    pub server: Arc<EtcdServer>,
    pub client_addrs: Vec<std::net::SocketAddr>,
    pub peer_addrs: Vec<std::net::SocketAddr>,
}

fn member_dir(config: &StoreConfig) -> PathBuf {
    config.data_dir.join("member")
}

/// Opens the member's data and starts serving. Returns once the listeners are bound.
///
/// Start-up order: the member's identity (first start: from the flags for a new cluster, or
/// from its peers when joining one); the state machine, with the membership it holds at its
/// applied index; the raft log (a new cluster's first members bootstrap it with the initial
/// membership); a snapshot received from the leader but not installed before a crash is
/// installed now; then the transport, the node, the applier and the listeners.
pub async fn start(mut config: StoreConfig) -> anyhow::Result<RunningServer> {
    let dir = member_dir(&config);
    std::fs::create_dir_all(&dir)?;
    let snap_dir = dir.join("snap");
    std::fs::create_dir_all(&snap_dir)?;
    // Half-written snapshots (received or being unpacked) from before a crash.
    crate::snapshot::remove_raft_snapshot_leftovers(&snap_dir);
    // Snapshots built for followers are sent once and removed; any left were cut short.
    let _ = std::fs::remove_dir_all(snap_dir.join("outgoing"));
    let metrics = Arc::new(Metrics::new(&config)?);
    let mvcc = Arc::new(MvccStore::open(&dir.join("kv"), MvccConfig::default())?);

    let identity = peer::Identity::load(&dir)?;
    let mut joining: Option<Membership> = None;
    match identity {
        Some(id) => {
            config.member_id = id.member_id;
            config.cluster_id = id.cluster_id;
        }
        None if config.initial_cluster_state == ClusterState::Existing && stored_membership(&mvcc)?.is_none() => {
            let others: Vec<String> = config
                .initial_cluster
                .iter()
                .filter(|(_, _, urls)| urls != &config.advertise_peer_urls)
                .flat_map(|(_, _, urls)| urls.iter().cloned())
                .collect();
            let (cluster_id, membership) = peer::discover(&others).await?;
            let me = membership.find_by_peer_urls(&config.advertise_peer_urls).ok_or_else(|| {
                anyhow::anyhow!(
                    "member with peer URLs {} is not in the cluster's membership (add it first with `etcdctl member add`)",
                    config.advertise_peer_urls.join(",")
                )
            })?;
            config.member_id = me.id;
            config.cluster_id = cluster_id;
            joining = Some(membership);
        }
        None => {
            let others: Vec<String> = config
                .initial_cluster
                .iter()
                .filter(|(id, _, _)| *id != config.member_id)
                .flat_map(|(_, _, urls)| urls.iter().cloned())
                .collect();
            peer::check_new_bootstrap(&others, config.cluster_id, config.member_id).await?;
            if stored_membership(&mvcc)?.is_none() {
                // A new cluster: every initial member records the same membership, as the
                // state at the bootstrap index.
                let membership = Membership::bootstrap(&config.initial_cluster);
                let mut w = mvcc.write();
                w.set_membership(membership.encode());
                w.commit(mvcc.consistent_index().max(skiff_raft::storage::BOOTSTRAP_INDEX))?;
                mvcc.flush()?;
            }
        }
    }
    if identity.is_none() {
        peer::Identity { member_id: config.member_id, cluster_id: config.cluster_id }.store(&dir)?;
    }

    let (storage, writer) = {
        let mut wal_config = WalConfig::new(dir.join("wal"));
        wal_config.metrics = Some(WalMetrics::register(metrics.registry())?);
        wal_config.unsafe_no_fsync = config.unsafe_no_fsync;
        if config.unsafe_no_fsync {
            warn!("--unsafe-no-fsync: the raft log is never fsynced; a power loss will lose acknowledged writes");
        }
        if joining.is_some() {
            // An empty log and no membership: the leader sends a snapshot first.
            DurableStorage::open(wal_config)?
        } else {
            let voters: Vec<u64> = config.initial_cluster.iter().map(|(id, _, _)| *id).collect();
            DurableStorage::open_bootstrap(wal_config, &voters)?
        }
    };
    let marker = storage.snapshot_metadata();
    if marker.index > mvcc.consistent_index() {
        // The log's marker is ahead of the state machine only when a snapshot from the
        // leader was made durable in the log but its install did not finish.
        let file = crate::snapshot::raft_snapshot_path(&snap_dir, marker.index, marker.term);
        info!(index = marker.index, file = %file.display(), "finishing the install of a received snapshot");
        mvcc.restore_from_snapshot(&file, &snap_dir)
            .map_err(|e| anyhow::anyhow!("installing snapshot {} failed: {e}", file.display()))?;
    }
    let membership = match stored_membership(&mvcc)? {
        Some(bytes) => {
            let m = Membership::decode(&bytes)?;
            storage.set_conf_state(m.conf_state());
            m
        }
        None => joining.clone().unwrap_or_default(),
    };
    if membership.removed.contains(&config.member_id) {
        anyhow::bail!("{}", Error::MemberRemoved);
    }
    let applied_index = mvcc.consistent_index();
    info!(
        name = %config.name,
        member_id = format_args!("{:x}", config.member_id),
        cluster_id = format_args!("{:x}", config.cluster_id),
        data_dir = %config.data_dir.display(),
        applied_index,
        revision = mvcc.current_revision(),
        members = membership.members.len(),
        "opened member data"
    );
    let membership = Arc::new(RwLock::new(membership));

    let election_timeout = config.heartbeat_interval * config.election_ticks as u32;
    let lessor = Arc::new(Lessor::new(Lessor::min_ttl_for(election_timeout)));
    for (id, ttl) in mvcc.leases()? {
        lessor.grant(id, ttl);
    }
    for (key, lease) in mvcc.keys_with_lease()? {
        lessor.attach(lease, &key);
    }
    let hub = WatchHub::new(mvcc.clone(), metrics.registry(), &tokio::runtime::Handle::current())?;
    let snapshots = Arc::new(peer::StateMachineSnapshots { mvcc: mvcc.clone(), snap_dir: snap_dir.clone() });
    let transport = Transport::new(
        config.cluster_id,
        config.member_id,
        snapshots,
        Some(TransportMetrics::register(metrics.registry())?),
    );
    for m in membership.read().members.values() {
        if let Some(url) = m.peer_urls.first() {
            transport.set_peer(m.id, url);
        }
    }
    transport.set_removed(membership.read().removed.iter().copied());
    // A removed member that missed its own removal learns it from a peer's refusal; like
    // etcd it stops. Exit once: several peers may refuse at the same time.
    transport.on_removed(|| {
        static STOPPING: std::sync::Once = std::sync::Once::new();
        STOPPING.call_once(|| {
            error!("{}", Error::MemberRemoved);
            std::thread::spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(100));
                std::process::exit(0);
            });
        });
    });
    let node_config = NodeConfig {
        id: config.member_id,
        tick_interval: config.heartbeat_interval,
        election_ticks: config.election_ticks,
        heartbeat_ticks: 1,
        applied_index,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        fixed_election_timeout: false,
    };
    let (node, committed, node_task) = node::start(node_config, storage.clone(), writer, Arc::new(transport.clone()))?;
    transport.set_node(node.clone());
    let waiters = Arc::new(Waiters::default());
    let alarms = Arc::new(Alarms::load(&mvcc)?);
    let applier = Applier {
        mvcc: mvcc.clone(),
        lessor: lessor.clone(),
        hub: hub.clone(),
        waiters: waiters.clone(),
        alarms: alarms.clone(),
        node: node.clone(),
        member_id: config.member_id,
        membership: membership.clone(),
        transport: transport.clone(),
        snap_dir: snap_dir.clone(),
        current_term: Default::default(),
    };
    applier.spawn(committed);

    // Request ids: member id in the high bits, time in the middle, a counter below, as
    // etcd's idutil does, so ids never repeat across restarts.
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    let first_id = ((config.member_id & 0xffff) << 48) | ((now_ms & 0xff_ffff_ffff) << 8);
    let server = Arc::new(EtcdServer {
        config: config.clone(),
        mvcc,
        lessor,
        hub,
        waiters,
        alarms,
        node,
        storage,
        metrics,
        membership: membership.clone(),
        transport: transport.clone(),
        client_channels: Mutex::new(Default::default()),
        ready: tokio::sync::watch::channel(false).0,
        stopping: std::sync::atomic::AtomicBool::new(false),
        next_request_id: AtomicU64::new(first_id),
        started: Instant::now(),
        self_client_addr: std::sync::OnceLock::new(),
    });

    // The raft node ends on its own only on a fatal storage error (a failed WAL write or
    // fsync poisons the log). A member that cannot persist must not keep answering: exit,
    // as etcd panics, and let a restart recover from what is on disk.
    let s = server.clone();
    tokio::spawn(async move {
        let _ = node_task.await;
        if !s.stopping.load(Ordering::Acquire) {
            tracing::error!("the raft node stopped on a fatal error; exiting");
            std::process::exit(1);
        }
    });

    let peer_addrs = peer::serve(&config.listen_peer, &transport, config.cluster_id, membership).await?;
    spawn_background(server.clone());
    members::spawn_publish_attributes(server.clone());
    members::spawn_auto_promote(server.clone());

    let mut client_addrs = Vec::new();
    for addr in &config.listen_client {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        client_addrs.push(local);
        let _ = server.self_client_addr.set(local);
        info!(address = %local, "serving client traffic (gRPC + HTTP)");
        let router = http::router(server.clone(), true);
        let mut ready = server.ready.subscribe();
        tokio::spawn(async move {
            // Bound now (so the port is ours), accepted once ready: connections wait in
            // the backlog meanwhile, as with etcd.
            if ready.wait_for(|r| *r).await.is_err() {
                return;
            }
            if let Err(e) = h2shim::serve(listener, router).await {
                warn!(error = %e, "client listener stopped");
            }
        });
    }
    for addr in &config.listen_metrics {
        let listener = TcpListener::bind(addr).await?;
        info!(address = %listener.local_addr()?, "serving metrics");
        let router = http::router(server.clone(), false);
        tokio::spawn(async move {
            let _ = h2shim::serve(listener, router).await;
        });
    }
    Ok(RunningServer { server, client_addrs, peer_addrs })
}

/// The membership the state machine holds; an empty record (a restored snapshot) is none.
fn stored_membership(mvcc: &MvccStore) -> anyhow::Result<Option<Vec<u8>>> {
    Ok(mvcc.membership()?.filter(|b| !b.is_empty()))
}

/// Lease expiry and checkpoints, corruption checks, auto compaction, RocksDB flush + raft
/// log compaction, metrics refresh.
fn spawn_background(server: Arc<EtcdServer>) {
    let s = server.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(LEASE_EXPIRY_CHECK_INTERVAL);
        let mut status = s.node.watch_status();
        let mut was_leader = false;
        let election_timeout = s.config.heartbeat_interval * s.config.election_ticks as u32;
        loop {
            // Woken by status changes too, so a new leader promotes its lessor before it
            // answers keep-alives and TimeToLive from it.
            let sweep_at = tokio::select! {
                // The tick's own instant: checkpoints scheduled from it fall on later ticks
                // exactly, instead of drifting one sweep late each time.
                at = tick.tick() => Some(at.into_std()),
                changed = status.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    None
                }
            };
            let is_leader = status.borrow_and_update().is_leader;
            if is_leader && !was_leader {
                // etcd's lessor Promote: the old leader's keep-alives are not known here, so
                // every lease gets its last checkpointed remaining TTL (with
                // `--experimental-enable-lease-checkpoint`) or else a full TTL, plus an
                // election timeout.
                s.lessor.refresh_all(election_timeout);
            }
            was_leader = is_leader;
            let Some(now) = sweep_at.filter(|_| is_leader) else {
                continue;
            };
            lease::propose_due_checkpoints(&s, now);
            for id in s.lessor.expired(now) {
                let s = s.clone();
                tokio::spawn(async move {
                    match s.propose(Request::LeaseRevoke(pb::LeaseRevokeRequest { id })).await {
                        Ok(_) | Err(Error::LeaseNotFound) => {}
                        Err(e) => warn!(lease = id, error = %e, "revoking expired lease failed"),
                    }
                });
            }
        }
    });
    let s = server.clone();
    tokio::spawn(async move {
        let mut status = s.node.watch_status();
        let mut leader = status.borrow().leader_id;
        while status.changed().await.is_ok() {
            let now = status.borrow_and_update().leader_id;
            if now != leader {
                if now != 0 {
                    info!(leader = format_args!("{now:x}"), "leader elected");
                    s.metrics.leader_changed();
                } else {
                    warn!("lost the leader");
                }
                leader = now;
            }
        }
    });
    corrupt::spawn(&server);
    let s = server.clone();
    tokio::spawn(async move { crate::compactor::run(s).await });
    let s = server;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(APPLIED_CHECK_INTERVAL);
        let mut last_flushed = s.mvcc.consistent_index();
        loop {
            tick.tick().await;
            s.metrics.refresh(&s);
            let applied = s.mvcc.consistent_index();
            if applied.saturating_sub(last_flushed) < s.config.snapshot_count {
                continue;
            }
            let mvcc = s.mvcc.clone();
            let flushed = tokio::task::spawn_blocking(move || mvcc.flush().map(|_| applied)).await;
            match flushed {
                Ok(Ok(index)) => {
                    // Everything up to `index` is now in RocksDB's SST files, so the raft
                    // log before it is no longer needed for replay; the last
                    // `snapshot_catchup_entries` stay so a follower a little behind catches
                    // up from the log instead of a whole snapshot (etcd keeps 5000 too).
                    let compact_to = index.saturating_sub(s.config.snapshot_catchup_entries);
                    s.node.compact_log(compact_to);
                    info!(index, compact_to, "state machine flushed; raft log compacted");
                    last_flushed = index;
                }
                Ok(Err(e)) => warn!(error = %e, "state machine flush failed"),
                Err(e) => warn!(error = %e, "flush task failed"),
            }
        }
    });
}

/// Creates a member data directory from a snapshot: the state machine from the snapshot,
/// an empty raft log, and the consistent index reset so the new log applies from its start.
pub fn restore_snapshot(file: &std::path::Path, data_dir: &std::path::Path) -> anyhow::Result<()> {
    if data_dir.exists() {
        anyhow::bail!("data-dir {:?} exists", data_dir);
    }
    let member = data_dir.join("member");
    std::fs::create_dir_all(&member)?;
    crate::snapshot::restore(file, &member.join("kv"))?;
    let mvcc = MvccStore::open(&member.join("kv"), MvccConfig::default())?;
    // Consistent index 0 and no membership: the restored member bootstraps a new cluster
    // from its flags on first start, as after `etcdctl snapshot restore`.
    let mut w = mvcc.write();
    w.set_membership(Vec::new());
    w.commit(0)?;
    mvcc.flush()?;
    Ok(())
}
