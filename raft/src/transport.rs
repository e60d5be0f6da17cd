//! The peer transport: raft messages between members over tonic (gRPC, HTTP/2) streams.
//!
//! Sending: one task per peer owns a long-lived client stream (`RaftTransport.Send`) and a
//! bounded queue. It drains whatever is queued into one `MessageBatch` (up to
//! `BATCH_MESSAGES_MAX` / `BATCH_BYTES_MAX`), so a busy leader sends many appends per frame;
//! a full queue drops (raft retransmits on its next heartbeat or probe). A broken stream is
//! reported to raft (`report_unreachable`: it stops pipelining to that peer) and re-dialed
//! with exponential backoff. The node hands messages here as soon as a `Ready` is taken,
//! before its own WAL fsync (raft thesis 10.2.1): the leader's disk and its followers' disks
//! work in parallel.
//!
//! Snapshots: raft-rs asks to send `MsgSnapshot` when a follower needs entries the leader
//! has compacted. The transport asks the state machine (`SnapshotStore::create`) for a
//! snapshot file — its metadata (index, term, membership) replaces raft-rs's, since the
//! file is what the follower installs — and streams it in `SNAPSHOT_CHUNK_BYTES` chunks
//! (`RaftTransport.SendSnapshot`), so memory does not grow with the database. The receiver
//! writes it to `SnapshotStore::receive_path`, fsyncs, and only then steps the message into
//! its node. The outcome goes back to raft-rs (`report_snapshot`).
//!
//! The last chunk carries a CRC-32 of all the data. A receiver whose bytes do not match it
//! (corrupted in flight: a bad NIC, a middlebox, memory) removes what it wrote and answers
//! `DataLoss` without stepping anything into raft; the sender streams the same file again,
//! up to `SNAPSHOT_SEND_ATTEMPTS_MAX` times, before it reports the snapshot failed (and
//! raft-rs asks for a new one later).
//!
//! Receiving: every batch names its cluster; a member of another cluster is refused with
//! `FailedPrecondition` (etcd's "cluster ID mismatch"). A member removed from the cluster is
//! refused with `PermissionDenied` and `REMOVED_MEMBER_MESSAGE` (etcd's rafthttp answers
//! 410 Gone): a removed member may never apply its own removal — the others stop sending to
//! it once they apply it — so it learns from the refusal (the first time its election timer
//! fires and it asks for votes) and stops, through the hook given to `on_removed`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use prometheus::{IntCounterVec, Opts, Registry};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType, SnapshotMetadata};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use crate::node::{MessageSink, NodeHandle};

#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("skiff.raft.transport");
}

use pb::raft_transport_client::RaftTransportClient;
use pb::raft_transport_server::{RaftTransport, RaftTransportServer};

/// Messages queued per peer; beyond it new messages are dropped.
pub const PEER_QUEUE_MESSAGES_MAX: usize = 4096;
/// Messages per batch frame.
pub const BATCH_MESSAGES_MAX: usize = 512;
/// Encoded bytes per batch frame (an append carries at most `max_size_per_msg`, 1 MiB).
pub const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Batches handed to one gRPC stream that it has not written yet.
pub const STREAM_BATCHES_MAX: usize = 16;
/// Largest gRPC message accepted or sent on the peer port.
pub const GRPC_MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Snapshot bytes per chunk message, and chunks buffered ahead of the network.
pub const SNAPSHOT_CHUNK_BYTES: usize = 256 * 1024;
const SNAPSHOT_CHUNKS_BUFFERED: usize = 4;
/// Streams of one snapshot file to a peer that refused the bytes as corrupted, before the
/// transport reports the snapshot failed to raft.
pub const SNAPSHOT_SEND_ATTEMPTS_MAX: usize = 3;
/// What a receiver logs and answers when a snapshot's bytes fail their checksum.
pub const SNAPSHOT_CORRUPTED_MESSAGE: &str = "refused a corrupted snapshot";
/// etcd's peer dial timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// HTTP/2 pings find a peer that vanished without closing its socket (power loss, pause).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);
/// What a member answers a member the cluster has removed (etcd's words).
/// gRPC metadata naming the member (hex ID) that opens a message stream.
const FROM_METADATA: &str = "skiff-raft-from";
pub const REMOVED_MEMBER_MESSAGE: &str = "the member has been permanently removed from the cluster";

/// The state machine's side of snapshots.
pub trait SnapshotStore: Send + Sync + 'static {
    /// Writes a snapshot of the state machine as it is now and returns its metadata (the
    /// applied index, that entry's term, the membership at that index) and file. Blocking:
    /// the transport calls it on a blocking thread. The transport removes the file once sent.
    fn create(&self) -> Result<(SnapshotMetadata, PathBuf), String>;
    /// Where a snapshot received at (index, term) is stored until the state machine
    /// installs it.
    fn receive_path(&self, index: u64, term: u64) -> PathBuf;
}

/// Prometheus counters with etcd's names (`etcd_network_*`), labelled by peer id in hex.
#[derive(Clone)]
pub struct TransportMetrics {
    sent_bytes: IntCounterVec,
    received_bytes: IntCounterVec,
    sent_failures: IntCounterVec,
    snapshot_send_success: IntCounterVec,
    snapshot_send_failures: IntCounterVec,
    snapshot_receive_success: IntCounterVec,
    snapshot_receive_failures: IntCounterVec,
}

impl TransportMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str, label: &str| -> prometheus::Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), &[label])?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        Ok(TransportMetrics {
            sent_bytes: counter("etcd_network_peer_sent_bytes_total", "The total number of bytes sent to peers.", "To")?,
            received_bytes: counter(
                "etcd_network_peer_received_bytes_total",
                "The total number of bytes received from peers.",
                "From",
            )?,
            sent_failures: counter(
                "etcd_network_peer_sent_failures_total",
                "The total number of send failures from peers.",
                "To",
            )?,
            snapshot_send_success: counter(
                "etcd_network_snapshot_send_success",
                "Total number of successful snapshot sends",
                "To",
            )?,
            snapshot_send_failures: counter(
                "etcd_network_snapshot_send_failures",
                "Total number of snapshot send failures",
                "To",
            )?,
            snapshot_receive_success: counter(
                "etcd_network_snapshot_receive_success",
                "Total number of successful snapshot receives",
                "From",
            )?,
            snapshot_receive_failures: counter(
                "etcd_network_snapshot_receive_failures",
                "Total number of snapshot receive failures",
                "From",
            )?,
        })
    }

    fn unregistered() -> Self {
        Self::register(&Registry::new()).expect("fresh registry")
    }
}

struct Peer {
    url: String,
    /// When the current stream to it was established; `None` while it is unreachable.
    active_since: Option<std::time::Instant>,
    /// Ends the sender's reconnect back-off early: set when the peer's own stream reaches
    /// us while ours to it is down (it is back, so dial it now rather than after up to
    /// [`RECONNECT_BACKOFF_MAX`] — etcd gets the same from its peers dialing in).
    wake: Arc<tokio::sync::Notify>,
    tx: mpsc::Sender<Message>,
    task: tokio::task::JoinHandle<()>,
}

struct Inner {
    cluster_id: u64,
    self_id: u64,
    peers: Mutex<HashMap<u64, Peer>>,
    node: OnceLock<NodeHandle>,
    snapshots: Arc<dyn SnapshotStore>,
    snapshots_in_flight: Mutex<HashSet<u64>>,
    /// Members removed from the cluster: their messages are refused.
    removed: Mutex<HashSet<u64>>,
    /// Called when a peer says this member was removed.
    on_removed: OnceLock<Box<dyn Fn() + Send + Sync>>,
    metrics: TransportMetrics,
    /// Peer tasks run here, whichever thread adds the peer (the applier is not a tokio thread).
    runtime: tokio::runtime::Handle,
}

/// The sending side and the gRPC service of one member. Clones share state.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

impl Transport {
    /// Must be called within a tokio runtime: peer tasks are spawned on it.
    pub fn new(
        cluster_id: u64,
        self_id: u64,
        snapshots: Arc<dyn SnapshotStore>,
        metrics: Option<TransportMetrics>,
    ) -> Transport {
        Transport {
            inner: Arc::new(Inner {
                cluster_id,
                self_id,
                peers: Mutex::new(HashMap::new()),
                node: OnceLock::new(),
                snapshots,
                snapshots_in_flight: Mutex::new(HashSet::new()),
                removed: Mutex::new(HashSet::new()),
                on_removed: OnceLock::new(),
                metrics: metrics.unwrap_or_else(TransportMetrics::unregistered),
                runtime: tokio::runtime::Handle::current(),
            }),
        }
    }

    /// Connects the transport to its node (received messages go there, failures are
    /// reported to it). Set once, right after the node starts.
    pub fn set_node(&self, node: NodeHandle) {
        let _ = self.inner.node.set(node);
    }

    /// Adds a peer, or points an existing one at a new URL (its stream is re-dialed).
    pub fn set_peer(&self, id: u64, url: &str) {
        if id == self.inner.self_id {
            return;
        }
        let mut peers = self.inner.peers.lock();
        if peers.get(&id).is_some_and(|p| p.url == url) {
            return;
        }
        if let Some(old) = peers.remove(&id) {
            old.task.abort();
        }
        let (tx, rx) = mpsc::channel(PEER_QUEUE_MESSAGES_MAX);
        let wake = Arc::new(tokio::sync::Notify::new());
        let task = self.inner.runtime.spawn(run_peer(self.inner.clone(), id, url.to_string(), rx, wake.clone()));
        info!(peer = format_args!("{id:x}"), url, "added peer");
        peers.insert(id, Peer { url: url.to_string(), active_since: None, wake, tx, task });
    }

    /// Records members removed from the cluster; their messages are refused from now on.
    pub fn set_removed(&self, ids: impl IntoIterator<Item = u64>) {
        self.inner.removed.lock().extend(ids);
    }

    /// What to do when a peer refuses this member as removed (set once; etcd stops).
    pub fn on_removed(&self, hook: impl Fn() + Send + Sync + 'static) {
        let _ = self.inner.on_removed.set(Box::new(hook));
    }

    pub fn remove_peer(&self, id: u64) {
        if let Some(p) = self.inner.peers.lock().remove(&id) {
            p.task.abort();
            info!(peer = format_args!("{id:x}"), "removed peer");
        }
    }

    /// Since when the stream to `id` has been up (etcd's `ActiveSince`); `None` if it is
    /// down or unknown.
    pub fn active_since(&self, id: u64) -> Option<std::time::Instant> {
        self.inner.peers.lock().get(&id).and_then(|p| p.active_since)
    }

    /// (id, url) of every peer, sorted by id.
    pub fn peers(&self) -> Vec<(u64, String)> {
        let mut v: Vec<_> = self.inner.peers.lock().iter().map(|(id, p)| (*id, p.url.clone())).collect();
        v.sort();
        v
    }

    /// The gRPC service to serve on the peer listener.
    pub fn service(&self) -> RaftTransportServer<Service> {
        RaftTransportServer::new(Service { inner: self.inner.clone() })
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX)
    }

    fn send_snapshot(&self, msg: Message) {
        let to = msg.to;
        if !self.inner.snapshots_in_flight.lock().insert(to) {
            return; // raft-rs waits for the report before sending another
        }
        let inner = self.inner.clone();
        self.inner.runtime.clone().spawn(async move {
            let result = send_snapshot(&inner, msg).await;
            inner.snapshots_in_flight.lock().remove(&to);
            let peer = format!("{to:x}");
            match &result {
                Ok((index, bytes)) => {
                    info!(peer = %peer, index, bytes, "sent snapshot");
                    inner.metrics.snapshot_send_success.with_label_values(&[&peer]).inc();
                }
                Err(e) => {
                    warn!(peer = %peer, error = %e, "sending snapshot failed");
                    inner.metrics.snapshot_send_failures.with_label_values(&[&peer]).inc();
                }
            }
            if let Some(node) = inner.node.get() {
                node.report_snapshot(to, result.is_ok());
            }
        });
    }
}

impl MessageSink for Transport {
    fn send(&self, messages: Vec<Message>) {
        let peers = self.inner.peers.lock();
        let mut unreachable = Vec::new();
        let mut snapshots = Vec::new();
        for m in messages {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                snapshots.push(m);
                continue;
            }
            let to = m.to;
            match peers.get(&to) {
                Some(p) => {
                    if p.tx.try_send(m).is_err() {
                        self.inner.metrics.sent_failures.with_label_values(&[&format!("{to:x}")]).inc();
                        unreachable.push(to);
                    }
                }
                None => debug!(to = format_args!("{to:x}"), "no transport to peer; message dropped"),
            }
        }
        drop(peers);
        if let Some(node) = self.inner.node.get() {
            unreachable.dedup();
            for id in unreachable {
                node.report_unreachable(id);
            }
        }
        for m in snapshots {
            self.send_snapshot(m);
        }
    }
}

fn endpoint(url: &str) -> Result<Endpoint, String> {
    Endpoint::from_shared(url.to_string())
        .map(|e| {
            e.connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                .keep_alive_while_idle(true)
        })
        .map_err(|e| format!("invalid peer URL {url:?}: {e}"))
}

/// One peer's sender: dial, stream batches until the stream breaks, back off, repeat.
async fn run_peer(inner: Arc<Inner>, id: u64, url: String, mut rx: mpsc::Receiver<Message>, wake: Arc<tokio::sync::Notify>) {
    let peer = format!("{id:x}");
    let endpoint = match endpoint(&url) {
        Ok(e) => e,
        Err(e) => {
            warn!(peer = %peer, error = %e, "peer has an unusable URL; not sending to it");
            return;
        }
    };
    let mut backoff = RECONNECT_BACKOFF_MIN;
    let mut logged_down = false;
    loop {
        let channel = match endpoint.connect().await {
            Ok(c) => c,
            Err(e) => {
                if !logged_down {
                    warn!(peer = %peer, url = %url, error = %e, "peer unreachable");
                    logged_down = true;
                }
                // Messages queued while the peer is down are stale by the time it is back.
                while rx.try_recv().is_ok() {}
                if let Some(node) = inner.node.get() {
                    node.report_unreachable(id);
                }
                back_off(backoff, &wake).await;
                backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
                continue;
            }
        };
        if logged_down {
            info!(peer = %peer, "peer reachable again");
            logged_down = false;
        }
        set_active(&inner, id, Some(std::time::Instant::now()));
        backoff = RECONNECT_BACKOFF_MIN;
        let mut client = RaftTransportClient::new(channel)
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
        let (batch_tx, batch_rx) = mpsc::channel(STREAM_BATCHES_MAX);
        let mut request = Request::new(ReceiverStream::new(batch_rx));
        // Names us when the stream opens, before any message: a peer whose own stream to
        // us is down (we were away) redials at once instead of finishing its back-off.
        if let Ok(from) = format!("{:x}", inner.self_id).parse() {
            request.metadata_mut().insert(FROM_METADATA, from);
        }
        let mut call = tokio::spawn(async move { client.send(request).await });
        loop {
            tokio::select! {
                m = rx.recv() => {
                    let Some(first) = m else {
                        call.abort();
                        return; // peer removed
                    };
                    let batch = collect_batch(&inner, first, &mut rx);
                    let bytes: usize = batch.messages.iter().map(Vec::len).sum();
                    if batch_tx.send(batch).await.is_err() {
                        break;
                    }
                    inner.metrics.sent_bytes.with_label_values(&[&peer]).inc_by(bytes as u64);
                }
                result = &mut call => {
                    if let Ok(Err(status)) = result {
                        if is_removed_refusal(&status) {
                            warn!(peer = %peer, "{REMOVED_MEMBER_MESSAGE}");
                            if let Some(hook) = inner.on_removed.get() {
                                hook();
                            }
                        }
                        debug!(peer = %peer, error = %status, "peer stream closed");
                    }
                    break;
                }
            }
        }
        call.abort();
        set_active(&inner, id, None);
        inner.metrics.sent_failures.with_label_values(&[&peer]).inc();
        if let Some(node) = inner.node.get() {
            node.report_unreachable(id);
        }
        back_off(backoff, &wake).await;
    }
}

/// Waits `backoff`, or less if `wake` is notified (the peer reached us: it is back).
async fn back_off(backoff: Duration, wake: &tokio::sync::Notify) {
    tokio::select! {
        _ = tokio::time::sleep(backoff) => {}
        _ = wake.notified() => {}
    }
}

/// A stream from peer `from` reached us: if our stream to it is down, end the sender's
/// back-off now. Returns whether it did.
fn wake_if_down(inner: &Inner, from: u64) -> bool {
    match inner.peers.lock().get(&from) {
        Some(p) if p.active_since.is_none() => {
            p.wake.notify_one();
            true
        }
        _ => false,
    }
}

fn is_removed_refusal(status: &Status) -> bool {
    status.code() == tonic::Code::PermissionDenied && status.message() == REMOVED_MEMBER_MESSAGE
}

fn set_active(inner: &Inner, id: u64, since: Option<std::time::Instant>) {
    if let Some(p) = inner.peers.lock().get_mut(&id) {
        p.active_since = since;
    }
}

fn collect_batch(inner: &Inner, first: Message, rx: &mut mpsc::Receiver<Message>) -> pb::MessageBatch {
    let mut messages = Vec::new();
    let mut bytes = 0;
    let mut next = Some(first);
    while let Some(m) = next.take() {
        match m.write_to_bytes() {
            Ok(b) => {
                bytes += b.len();
                messages.push(b);
            }
            Err(e) => warn!(error = %e, "unencodable raft message dropped"),
        }
        if messages.len() >= BATCH_MESSAGES_MAX || bytes >= BATCH_BYTES_MAX {
            break;
        }
        next = rx.try_recv().ok();
    }
    pb::MessageBatch { cluster_id: inner.cluster_id, from: inner.self_id, messages }
}

async fn send_snapshot(inner: &Arc<Inner>, mut msg: Message) -> Result<(u64, u64), String> {
    let to = msg.to;
    let url = inner.peers.lock().get(&to).map(|p| p.url.clone()).ok_or_else(|| format!("no peer {to:x}"))?;
    let store = inner.snapshots.clone();
    let (meta, path) = tokio::task::spawn_blocking(move || store.create())
        .await
        .map_err(|e| format!("snapshot task failed: {e}"))??;
    let index = meta.index;
    msg.mut_snapshot().set_metadata(meta);
    msg.mut_snapshot().data = Default::default();
    let result = stream_snapshot_with_retries(inner, &url, &msg, &path).await;
    let _ = tokio::fs::remove_file(&path).await;
    result.map(|bytes| (index, bytes))
}

/// Why one stream of a snapshot file failed.
#[derive(Debug)]
struct StreamError {
    /// The receiver got different bytes than were sent (`DataLoss`): the same file may
    /// well arrive intact on another attempt.
    corrupted_in_flight: bool,
    message: String,
}

impl From<String> for StreamError {
    fn from(message: String) -> Self {
        StreamError { corrupted_in_flight: false, message }
    }
}

/// Streams the file, again after a refusal as corrupted, at most
/// [`SNAPSHOT_SEND_ATTEMPTS_MAX`] times in all.
async fn stream_snapshot_with_retries(inner: &Arc<Inner>, url: &str, msg: &Message, path: &PathBuf) -> Result<u64, String> {
    let mut attempt = 1;
    loop {
        match stream_snapshot_file(inner, url, msg, path).await {
            Ok(bytes) => return Ok(bytes),
            Err(e) if e.corrupted_in_flight && attempt < SNAPSHOT_SEND_ATTEMPTS_MAX => {
                warn!(peer = format_args!("{:x}", msg.to), attempt, error = %e.message, "peer refused the snapshot as corrupted; sending it again");
                attempt += 1;
            }
            Err(e) => return Err(format!("attempt {attempt}: {}", e.message)),
        }
    }
}

async fn stream_snapshot_file(inner: &Arc<Inner>, url: &str, msg: &Message, path: &PathBuf) -> Result<u64, StreamError> {
    let mut file = tokio::fs::File::open(path).await.map_err(|e| format!("open {}: {e}", path.display()))?;
    let total = file.metadata().await.map_err(|e| e.to_string())?.len();
    let channel = endpoint(url)?.connect().await.map_err(|e| format!("connect {url}: {e}"))?;
    let mut client = RaftTransportClient::new(channel)
        .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
    let (tx, rx) = mpsc::channel(SNAPSHOT_CHUNKS_BUFFERED);
    let header = msg.write_to_bytes().map_err(|e| e.to_string())?;
    let (cluster_id, from) = (inner.cluster_id, inner.self_id);
    let reader = tokio::spawn(async move {
        let mut first = Some(header);
        let mut sent = 0u64;
        let mut crc = crc32fast::Hasher::new();
        loop {
            let mut buf = vec![0u8; SNAPSHOT_CHUNK_BYTES];
            let n = file.read(&mut buf).await.map_err(|e| format!("read snapshot: {e}"))?;
            buf.truncate(n);
            crc.update(&buf);
            sent += n as u64;
            // The last chunk is the one without data: it carries the checksum.
            let data_crc32 = (n == 0).then(|| crc.clone().finalize());
            let chunk = pb::SnapshotChunk {
                cluster_id,
                from,
                message: first.take().unwrap_or_default(),
                data: buf,
                total_bytes: total,
                data_crc32,
            };
            if tx.send(chunk).await.is_err() {
                return Err("snapshot stream closed by the receiver".to_string());
            }
            if n == 0 {
                return Ok(sent);
            }
        }
    });
    let response = client.send_snapshot(ReceiverStream::new(rx)).await;
    let sent = reader.await.map_err(|e| e.to_string())?;
    let received = match response {
        Ok(r) => r.into_inner().bytes,
        Err(s) => {
            return Err(StreamError {
                corrupted_in_flight: s.code() == tonic::Code::DataLoss,
                message: format!("peer refused snapshot: {}", s.message()),
            })
        }
    };
    let sent = sent?;
    if received != sent {
        return Err(format!("peer received {received} of {sent} snapshot bytes").into());
    }
    inner.metrics.sent_bytes.with_label_values(&[&format!("{:x}", msg.to)]).inc_by(sent);
    Ok(sent)
}

/// The gRPC side: steps received messages into the node.
pub struct Service {
    inner: Arc<Inner>,
}

impl Service {
    fn check_cluster(&self, cluster_id: u64) -> Result<(), Status> {
        if cluster_id != self.inner.cluster_id {
            return Err(Status::failed_precondition(format!(
                "cluster ID mismatch: local {:x}, remote {cluster_id:x}",
                self.inner.cluster_id
            )));
        }
        Ok(())
    }

    fn check_not_removed(&self, from: u64) -> Result<(), Status> {
        if self.inner.removed.lock().contains(&from) {
            return Err(Status::permission_denied(REMOVED_MEMBER_MESSAGE));
        }
        Ok(())
    }

    fn node(&self) -> Result<&NodeHandle, Status> {
        self.inner.node.get().ok_or_else(|| Status::unavailable("raft node is starting"))
    }
}

fn decode(bytes: &[u8]) -> Result<Message, Status> {
    Message::parse_from_bytes(bytes).map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))
}

#[tonic::async_trait]
impl RaftTransport for Service {
    async fn send(&self, request: Request<Streaming<pb::MessageBatch>>) -> Result<Response<pb::StreamClosed>, Status> {
        let opened_by = request
            .metadata()
            .get(FROM_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| u64::from_str_radix(v, 16).ok());
        if let Some(from) = opened_by {
            if wake_if_down(&self.inner, from) {
                debug!(peer = format_args!("{from:x}"), "peer opened a stream while ours to it was down; redialing now");
            }
        }
        let mut stream = request.into_inner();
        let mut first = opened_by.is_none();
        while let Some(batch) = stream.message().await? {
            self.check_cluster(batch.cluster_id)?;
            self.check_not_removed(batch.from)?;
            if std::mem::take(&mut first) && wake_if_down(&self.inner, batch.from) {
                debug!(peer = format_args!("{:x}", batch.from), "peer dialed in while our stream to it was down; redialing now");
            }
            let node = self.node()?;
            let from = format!("{:x}", batch.from);
            let mut bytes = 0;
            for raw in &batch.messages {
                bytes += raw.len();
                let m = decode(raw)?;
                if m.get_msg_type() == MessageType::MsgSnapshot {
                    return Err(Status::invalid_argument("snapshots go through SendSnapshot"));
                }
                if let Err(e) = node.step(m) {
                    debug!(from = %from, error = %e, "raft message dropped");
                }
            }
            self.inner.metrics.received_bytes.with_label_values(&[&from]).inc_by(bytes as u64);
        }
        Ok(Response::new(pb::StreamClosed {}))
    }

    async fn send_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::SnapshotReceived>, Status> {
        let mut stream = request.into_inner();
        let first = stream.message().await?.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        self.check_cluster(first.cluster_id)?;
        self.check_not_removed(first.from)?;
        let msg = decode(&first.message)?;
        if msg.get_msg_type() != MessageType::MsgSnapshot || msg.to != self.inner.self_id {
            return Err(Status::invalid_argument("the first snapshot chunk must carry a MsgSnapshot for this member"));
        }
        let meta = msg.get_snapshot().get_metadata();
        let path = self.inner.snapshots.receive_path(meta.index, meta.term);
        // `.tmp`: what the state machine side sweeps away at start if a crash left it.
        let part = path.with_extension("snap.tmp");
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io_status)?;
        }
        let mut file = tokio::fs::File::create(&part).await.map_err(io_status)?;
        let total = first.total_bytes;
        let mut received = 0u64;
        let mut crc = crc32fast::Hasher::new();
        let mut sent_crc32 = None;
        let mut chunk = Some(first);
        loop {
            let c = match chunk.take() {
                Some(c) => c,
                None => match stream.message().await? {
                    Some(c) => c,
                    None => break,
                },
            };
            received += c.data.len() as u64;
            if received > total {
                let _ = tokio::fs::remove_file(&part).await;
                return Err(Status::invalid_argument(format!("snapshot is larger than announced ({total} bytes)")));
            }
            crc.update(&c.data);
            if c.data_crc32.is_some() {
                sent_crc32 = c.data_crc32;
            }
            file.write_all(&c.data).await.map_err(io_status)?;
        }
        let from = format!("{:x}", msg.from);
        let refused = if received != total {
            Some(Status::data_loss(format!("snapshot truncated: {received} of {total} bytes")))
        } else {
            match sent_crc32 {
                None => Some(Status::invalid_argument("the snapshot stream ended without its checksum")),
                Some(sent) if sent != crc.clone().finalize() => Some(Status::data_loss(format!(
                    "{SNAPSHOT_CORRUPTED_MESSAGE}: crc32 {:08x} of the {received} bytes received, {sent:08x} sent",
                    crc.finalize()
                ))),
                Some(_) => None,
            }
        };
        if let Some(status) = refused {
            drop(file);
            let _ = tokio::fs::remove_file(&part).await;
            warn!(from = %from, index = meta.index, term = meta.term, error = %status.message(), "snapshot refused; nothing applied");
            self.inner.metrics.snapshot_receive_failures.with_label_values(&[&from]).inc();
            return Err(status);
        }
        fail::fail_point!("transport::before_snapshot_save");
        file.sync_all().await.map_err(io_status)?;
        drop(file);
        tokio::fs::rename(&part, &path).await.map_err(io_status)?;
        if let Some(dir) = path.parent() {
            let dir = dir.to_path_buf();
            tokio::task::spawn_blocking(move || std::fs::File::open(&dir).and_then(|d| d.sync_all()))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(io_status)?;
        }
        fail::fail_point!("transport::after_snapshot_save");
        info!(from = %from, index = meta.index, term = meta.term, bytes = received, "received snapshot");
        self.inner.metrics.snapshot_receive_success.with_label_values(&[&from]).inc();
        self.inner.metrics.received_bytes.with_label_values(&[&from]).inc_by(received);
        self.node()?.step(msg).map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(pb::SnapshotReceived { bytes: received }))
    }
}

fn io_status(e: std::io::Error) -> Status {
    Status::internal(format!("snapshot io: {e}"))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use raft::eraftpb::ConfState;
    use tokio::net::{TcpListener, TcpStream};
    use tokio_stream::wrappers::TcpListenerStream;

    use super::*;
    use crate::node::{self, NodeConfig};
    use crate::storage::DurableStorage;
    use crate::wal::WalConfig;

    /// Bytes the snapshot under test starts with; the relay finds them in the stream.
    const MARKER: &[u8] = b"SNAPSHOT-UNDER-TEST";
    const INDEX: u64 = 5;
    const TERM: u64 = 1;

    /// The sender's store hands out a copy of `source`; the receiver's keeps files in `dir`.
    struct FileSnapshots {
        dir: PathBuf,
        source: Option<PathBuf>,
    }

    impl SnapshotStore for FileSnapshots {
        fn create(&self) -> Result<(SnapshotMetadata, PathBuf), String> {
            let source = self.source.as_ref().ok_or("no source")?;
            let copy = self.dir.join("outgoing.snap");
            std::fs::copy(source, &copy).map_err(|e| e.to_string())?;
            let mut meta = SnapshotMetadata { index: INDEX, term: TERM, ..Default::default() };
            meta.set_conf_state(ConfState { voters: vec![1, 2], ..Default::default() });
            Ok((meta, copy))
        }
        fn receive_path(&self, index: u64, term: u64) -> PathBuf {
            self.dir.join(format!("{index:016x}-{term:016x}.snap"))
        }
    }

    /// A TCP relay to `upstream` that flips one bit a little after [`MARKER`] in the
    /// client-to-server bytes of its first `corrupt` connections, and passes the rest on.
    async fn corrupting_relay(upstream: u16, corrupt: usize) -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let corrupted = Arc::new(AtomicUsize::new(0));
        let count = corrupted.clone();
        tokio::spawn(async move {
            let mut accepted = 0;
            loop {
                let (client, _) = listener.accept().await.unwrap();
                accepted += 1;
                let flip = accepted <= corrupt;
                let count = count.clone();
                tokio::spawn(async move {
                    let server = TcpStream::connect(("127.0.0.1", upstream)).await.unwrap();
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let up = async move {
                        // Everything seen so far, until the flip is done.
                        let mut seen: Vec<u8> = Vec::new();
                        let mut pending_flip = flip;
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match client_read.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let chunk = &mut buf[..n];
                            if pending_flip {
                                let start = seen.len();
                                seen.extend_from_slice(chunk);
                                if let Some(at) = seen.windows(MARKER.len()).position(|w| w == MARKER) {
                                    let target = at + MARKER.len() + 100;
                                    if target >= start && target < start + n {
                                        chunk[target - start] ^= 0x10;
                                        pending_flip = false;
                                        count.fetch_add(1, Ordering::SeqCst);
                                    }
                                }
                            }
                            if server_write.write_all(chunk).await.is_err() {
                                break;
                            }
                        }
                        let _ = server_write.shutdown().await;
                    };
                    let down = async move {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        (port, corrupted)
    }

    /// Member 1 receives (a real node behind the real service), member 2 sends through a
    /// relay that corrupts its first `corrupt` connections. Returns what the send gave,
    /// how many streams were corrupted, the receiver's store and its refusal count.
    async fn send_through_relay(corrupt: usize) -> (Result<(u64, u64), String>, usize, Vec<u8>, Option<Vec<u8>>, u64) {
        let dir = tempfile::tempdir().unwrap();
        let receiver_dir = dir.path().join("receiver");
        let sender_dir = dir.path().join("sender");
        std::fs::create_dir_all(&receiver_dir).unwrap();
        std::fs::create_dir_all(&sender_dir).unwrap();
        let mut content = MARKER.to_vec();
        content.extend((0..600_000u32).map(|i| (i % 251) as u8));
        let source = dir.path().join("source.snap");
        std::fs::write(&source, &content).unwrap();

        let receiver_store = Arc::new(FileSnapshots { dir: receiver_dir.clone(), source: None });
        let receiver = Transport::new(7, 1, receiver_store.clone(), None);
        let (storage, writer) = DurableStorage::open_bootstrap(WalConfig::new(dir.path().join("wal")), &[1, 2]).unwrap();
        let config = NodeConfig {
            id: 1,
            tick_interval: Duration::from_millis(100),
            election_ticks: 100,
            heartbeat_ticks: 1,
            applied_index: 0,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 16,
            fixed_election_timeout: false,
        };
        let (node, _committed, _join) = node::start(config, storage, writer, Arc::new(receiver.clone())).unwrap();
        receiver.set_node(node.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver_port = listener.local_addr().unwrap().port();
        let service = receiver.service();
        tokio::spawn(async move {
            tonic::transport::Server::builder().add_service(service).serve_with_incoming(TcpListenerStream::new(listener)).await
        });

        let (relay_port, corrupted) = corrupting_relay(receiver_port, corrupt).await;
        let sender = Transport::new(7, 2, Arc::new(FileSnapshots { dir: sender_dir, source: Some(source) }), None);
        sender.inner.peers.lock().insert(
            1,
            Peer {
                url: format!("http://127.0.0.1:{relay_port}"),
                active_since: None,
                wake: Arc::new(tokio::sync::Notify::new()),
                tx: mpsc::channel(1).0,
                task: tokio::spawn(async {}),
            },
        );
        let mut msg = Message { from: 2, to: 1, term: TERM, ..Default::default() };
        msg.set_msg_type(MessageType::MsgSnapshot);
        let result = send_snapshot(&sender.inner, msg).await;
        let received = std::fs::read(receiver_store.receive_path(INDEX, TERM)).ok();
        let refusals = receiver.inner.metrics.snapshot_receive_failures.with_label_values(&["2"]).get();
        node.stop().await;
        (result, corrupted.load(Ordering::SeqCst), content, received, refusals)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_flipped_in_flight_is_refused_and_sent_again() {
        let (result, corrupted, content, received, refusals) = send_through_relay(1).await;
        assert_eq!(corrupted, 1, "the relay flipped a bit of the first stream");
        assert_eq!(refusals, 1, "the receiver refused the corrupted stream");
        let (index, bytes) = result.expect("the second stream is accepted");
        assert_eq!((index, bytes), (INDEX, content.len() as u64));
        assert!(received == Some(content), "the receiver kept exactly the bytes sent");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_corrupted_on_every_attempt_is_never_kept() {
        let (result, corrupted, _, received, refusals) = send_through_relay(usize::MAX).await;
        assert_eq!(corrupted, SNAPSHOT_SEND_ATTEMPTS_MAX);
        assert_eq!(refusals, SNAPSHOT_SEND_ATTEMPTS_MAX as u64);
        let error = result.expect_err("every stream was corrupted");
        assert!(error.contains(SNAPSHOT_CORRUPTED_MESSAGE), "{error}");
        assert!(received.is_none(), "nothing was saved for raft to install");
    }

    /// A notified wake ends the back-off at once; without one, it lasts its full time.
    #[tokio::test(start_paused = true)]
    async fn a_peer_dialing_in_ends_the_back_off() {
        let wake = Arc::new(tokio::sync::Notify::new());
        let started = tokio::time::Instant::now();
        let sleeper = tokio::spawn({
            let wake = wake.clone();
            async move { back_off(RECONNECT_BACKOFF_MAX, &wake).await }
        });
        tokio::task::yield_now().await;
        wake.notify_one();
        sleeper.await.unwrap();
        assert_eq!(started.elapsed(), Duration::ZERO, "woken without any time passing");
        back_off(RECONNECT_BACKOFF_MAX, &wake).await;
        assert_eq!(started.elapsed(), RECONNECT_BACKOFF_MAX, "no wake: the whole back-off");
    }
}
