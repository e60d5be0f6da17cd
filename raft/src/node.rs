//! The raft-rs driver: one tokio task owns the node (`core::NodeCore`, the sans-IO part
//! that simulation drives by hand) and reacts to a closed set of
//! inputs (`Input`). Log persistence is handed to the WAL writer thread (`LogWriter`) using
//! raft-rs's async-ready path, so the node keeps accepting proposals while an fsync is in
//! flight and the writer commits many proposals with one fsync (group commit).
//!
//! The node never decodes an entry's payload: committed entries are handed, in order, to the
//! state machine through a bounded channel (`Committed`), and the state machine reports back
//! how far it has applied (`NodeHandle::applied`).
//!
//! Data flow for one proposal on the leader:
//! ```text
//! propose ─▶ RawNode::propose ─▶ Ready{entries} ─▶ LogWriter (append, one fsync for many)
//!                                                   │ on_done
//!   state machine ◀─ Committed{entries} ◀─ Ready ◀─ on_persist_ready
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raft::eraftpb::{ConfChangeV2, Entry, EntryType, Message, SnapshotMetadata};
use raft::Storage;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::core::NodeCore;
use crate::storage::{DurableStorage, LogWriter, PersistTask};

/// Inputs queued to the node task at most. Proposals beyond it wait in `propose` (back
/// pressure to clients) instead of growing memory without bound.
pub const INPUT_QUEUE_MAX: usize = 4096;
/// Batches of committed entries waiting for the state machine. Each batch holds at most one
/// `Ready`'s worth of entries (raft-rs bounds it by `max_committed_size_per_ready`).
pub const COMMITTED_QUEUE_BATCHES_MAX: usize = 64;
/// Inputs handled per loop turn before the node produces a `Ready`; bounds the latency a
/// burst of proposals can add to ticks.
const INPUTS_PER_TURN_MAX: usize = 1024;
/// Read-index requests waiting for a `ReadState` at once.
const PENDING_READS_MAX: usize = 65536;
/// Messages from peers queued to the node at most; beyond it they are dropped (raft
/// tolerates loss: the sender retries on its next heartbeat or probe).
pub const PEER_INBOX_MAX: usize = 4096;

/// Where the node's outgoing messages go: the peer transport in production, a simulator's
/// network in tests. `send` must not block: queue or drop (raft retransmits).
pub trait MessageSink: Send + Sync + 'static {
    fn send(&self, messages: Vec<Message>);
}

/// A member with no peers (a single-member cluster): nothing to send.
pub struct NoPeers;

impl MessageSink for NoPeers {
    fn send(&self, messages: Vec<Message>) {
        for m in messages {
            warn!(to = m.to, kind = ?m.get_msg_type(), "dropping message: no peers are configured");
        }
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The node has no leader and cannot take the request.
    #[error("no leader")]
    NoLeader,
    /// The request must go to the leader, which is this member.
    #[error("not leader (leader is {0:x})")]
    NotLeader(u64),
    /// A membership change is proposed but not applied yet; raft allows one at a time.
    #[error("a membership change is already in progress")]
    ConfChangePending,
    /// raft-rs dropped the proposal (e.g. leadership changed while it was queued).
    #[error("proposal dropped")]
    ProposalDropped,
    /// The node task has stopped (shutdown or fatal storage error).
    #[error("raft node stopped")]
    Stopped,
    /// The log could not be persisted; the node stops (a WAL that failed fsync is unusable).
    #[error("raft log storage failed: {0}")]
    Storage(String),
    #[error("raft: {0}")]
    Raft(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the node is set up. Timing follows etcd: `tick_interval` is etcd's
/// `--heartbeat-interval`, `election_ticks` is `--election-timeout / --heartbeat-interval`.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: u64,
    pub tick_interval: Duration,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// The index the state machine has already applied durably (its `consistent_index`);
    /// entries after it are replayed.
    pub applied_index: u64,
    /// Maximum bytes in one append message to a follower.
    pub max_size_per_msg: u64,
    /// Maximum in-flight append messages per follower (pipelining depth).
    pub max_inflight_msgs: usize,
    /// Use exactly `election_ticks` instead of raft's randomized [E, 2E) (simulation only:
    /// a real cluster needs the randomization to avoid split votes).
    pub fixed_election_timeout: bool,
}

impl NodeConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("member id must not be 0".into());
        }
        if self.tick_interval.is_zero() {
            return Err("heartbeat interval must be positive".into());
        }
        if self.election_ticks <= self.heartbeat_ticks {
            return Err(format!(
                "election timeout ({} ticks) must be greater than the heartbeat interval ({} ticks)",
                self.election_ticks, self.heartbeat_ticks
            ));
        }
        Ok(())
    }
}

/// A batch of committed entries for the state machine, in log order. Includes empty
/// entries (leader no-ops) and conf changes so the state machine can record the index.
#[derive(Debug)]
pub struct Committed {
    pub entries: Vec<Entry>,
    pub term: u64,
    /// A snapshot from the leader, already durable in the raft log: the state machine must
    /// replace its contents with it (the file its transport received) before `entries`.
    pub snapshot: Option<SnapshotMetadata>,
}

/// The leader's view of one member's replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerProgress {
    pub id: u64,
    /// Highest log index known to be on that member.
    pub matched: u64,
    /// Heard from within the last election timeout.
    pub recent_active: bool,
    pub is_learner: bool,
}

/// What a caller can see of the node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStatus {
    pub id: u64,
    pub leader_id: u64,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
    pub is_leader: bool,
    pub is_learner: bool,
}

enum Input {
    Propose { data: Vec<u8>, done: oneshot::Sender<Result<u64>> },
    ProposeConfChange { context: Vec<u8>, cc: ConfChangeV2, done: oneshot::Sender<Result<()>> },
    Progress(oneshot::Sender<Vec<PeerProgress>>),
    Unreachable(u64),
    SnapshotStatus { to: u64, delivered: bool },
    ReadIndex { done: oneshot::Sender<Result<u64>> },
    Persisted { number: u64, result: std::result::Result<(), String> },
    Applied(u64),
    TransferLeader(u64),
    CompactLog(u64),
    Stop,
}

/// A cheap, clonable handle to the node task.
#[derive(Clone)]
pub struct NodeHandle {
    tx: mpsc::Sender<Input>,
    peer_tx: mpsc::Sender<Message>,
    persisted_tx: mpsc::UnboundedSender<Input>,
    status: watch::Receiver<NodeStatus>,
    applied: Arc<AtomicU64>,
}

impl NodeHandle {
    /// Proposes `data` for replication. Resolves when raft has accepted it into the log
    /// (not when it is committed or applied: the state machine signals that), with the term
    /// it was proposed in (see `NodeCore::propose`).
    pub async fn propose(&self, data: Vec<u8>) -> Result<u64> {
        let (done, rx) = oneshot::channel();
        self.tx.send(Input::Propose { data, done }).await.map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Returns a read index: once the state machine has applied up to it, a read of local
    /// state is linearizable. Many concurrent calls share one raft read round.
    pub async fn read_index(&self) -> Result<u64> {
        let (done, rx) = oneshot::channel();
        self.tx.send(Input::ReadIndex { done }).await.map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// The state machine reports that every entry up to `index` is applied.
    pub fn applied(&self, index: u64) {
        self.applied.fetch_max(index, Ordering::AcqRel);
        // Unbounded, but at most one message per applied batch, and the applier is bounded
        // by COMMITTED_QUEUE_BATCHES_MAX.
        let _ = self.persisted_tx.send(Input::Applied(index));
    }

    /// Proposes a membership change (leader only). Resolves when it is in the log; the
    /// state machine sees it applied as an `EntryConfChangeV2` entry carrying `context`.
    pub async fn propose_conf_change(&self, context: Vec<u8>, cc: ConfChangeV2) -> Result<()> {
        let (done, rx) = oneshot::channel();
        self.tx.send(Input::ProposeConfChange { context, cc, done }).await.map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// The leader's replication progress per member (empty on a follower).
    pub async fn progress(&self) -> Result<Vec<PeerProgress>> {
        let (done, rx) = oneshot::channel();
        self.tx.send(Input::Progress(done)).await.map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// A message from a peer. Dropped when the inbox is full (raft retransmits).
    pub fn step(&self, message: Message) -> Result<()> {
        self.peer_tx.try_send(message).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Error::Raft("peer inbox full".into()),
            mpsc::error::TrySendError::Closed(_) => Error::Stopped,
        })
    }

    /// The transport failed to reach `id`.
    pub fn report_unreachable(&self, id: u64) {
        let _ = self.persisted_tx.send(Input::Unreachable(id));
    }

    /// The outcome of sending a snapshot to `to`.
    pub fn report_snapshot(&self, to: u64, delivered: bool) {
        let _ = self.persisted_tx.send(Input::SnapshotStatus { to, delivered });
    }

    pub fn transfer_leader(&self, to: u64) {
        let _ = self.tx.try_send(Input::TransferLeader(to));
    }

    /// The state machine holds everything up to `index` durably: the log before it can go
    /// (in memory and the WAL segments it fills).
    pub fn compact_log(&self, index: u64) {
        let _ = self.persisted_tx.send(Input::CompactLog(index));
    }

    pub fn status(&self) -> NodeStatus {
        *self.status.borrow()
    }

    /// A receiver that changes whenever the status (leader, term, indexes) changes.
    pub fn watch_status(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
    }

    pub async fn stop(&self) {
        let _ = self.tx.send(Input::Stop).await;
    }
}

/// Starts the node task. Returns its handle and the stream of committed entries, which the
/// state machine must consume in order.
pub fn start(
    config: NodeConfig,
    storage: DurableStorage,
    writer: LogWriter,
    sink: Arc<dyn MessageSink>,
) -> Result<(NodeHandle, mpsc::Receiver<Committed>, tokio::task::JoinHandle<()>)> {
    config.validate().map_err(Error::Raft)?;
    maybe_advance_commit_to_applied(&storage, &writer, config.applied_index)?;
    let logger = crate::logger::slog_to_tracing();
    let core = NodeCore::new(&config, storage.clone(), &logger)?;

    let (tx, rx) = mpsc::channel(INPUT_QUEUE_MAX);
    let (peer_tx, peer_rx) = mpsc::channel(PEER_INBOX_MAX);
    let (persisted_tx, persisted_rx) = mpsc::unbounded_channel();
    let (committed_tx, committed_rx) = mpsc::channel(COMMITTED_QUEUE_BATCHES_MAX);
    let (status_tx, status_rx) = watch::channel(NodeStatus { id: config.id, ..Default::default() });
    let applied = Arc::new(AtomicU64::new(config.applied_index));
    let handle =
        NodeHandle { tx, peer_tx, persisted_tx: persisted_tx.clone(), status: status_rx, applied: applied.clone() };
    let driver = Driver {
        core,
        storage,
        writer,
        inputs: rx,
        peer_rx,
        sink,
        persisted_rx,
        persisted_tx,
        committed_tx,
        status_tx,
        applied,
        held_messages: VecDeque::new(),
        pending_reads: HashMap::new(),
        queued_reads: VecDeque::new(),
        // Random start: round ids must not repeat across restarts of this member.
        next_read_id: rand::random::<u64>() >> 1,
        ticks: 0,
        read_round_started_tick: None,
        read_round_retry_ticks: config.election_ticks as u64,
        tick_interval: config.tick_interval,
        stopped: None,
    };
    let join = tokio::spawn(driver.run());
    Ok((handle, committed_rx, join))
}

/// The state machine may have applied entries whose commit index was not yet in a
/// persisted hard state when the process died (commit advances in memory first). Those
/// entries were committed, so the commit index is raised to the applied index before raft
/// starts (raft-rs refuses `applied > committed`). An applied index beyond the log's end
/// means the log lost entries the state machine had seen: refuse to start.
fn maybe_advance_commit_to_applied(storage: &DurableStorage, writer: &LogWriter, applied: u64) -> Result<()> {
    let mut hs = storage.hard_state();
    if applied <= hs.commit {
        return Ok(());
    }
    let last = storage.last_index().map_err(|e| Error::Raft(e.to_string()))?;
    if applied > last {
        return Err(Error::Storage(format!(
            "state machine applied index {applied} is beyond the raft log's last index {last}: the raft log lost entries"
        )));
    }
    hs.commit = applied;
    let task = PersistTask { entries: Vec::new(), hard_state: Some(hs), snapshot: None, on_done: Box::new(|_| {}) };
    writer.submit(task).map_err(|e| Error::Storage(e.to_string()))
}

struct Driver {
    core: NodeCore<DurableStorage>,
    storage: DurableStorage,
    writer: LogWriter,
    inputs: mpsc::Receiver<Input>,
    peer_rx: mpsc::Receiver<Message>,
    sink: Arc<dyn MessageSink>,
    persisted_rx: mpsc::UnboundedReceiver<Input>,
    persisted_tx: mpsc::UnboundedSender<Input>,
    committed_tx: mpsc::Sender<Committed>,
    status_tx: watch::Sender<NodeStatus>,
    applied: Arc<AtomicU64>,
    /// Messages of readies still being persisted, by ready number, sent once durable.
    held_messages: VecDeque<(u64, Vec<Message>)>,
    /// Read-index rounds in flight: request context → waiters sharing that round.
    pending_reads: HashMap<u64, Vec<oneshot::Sender<Result<u64>>>>,
    /// Reads that arrived while a round is in flight; they join the next round together.
    queued_reads: VecDeque<oneshot::Sender<Result<u64>>>,
    next_read_id: u64,
    /// Ticks since the driver started, and the tick the in-flight read round began at.
    ticks: u64,
    read_round_started_tick: Option<u64>,
    /// Ticks an unanswered read round may take before its reads are retried.
    read_round_retry_ticks: u64,
    tick_interval: Duration,
    /// Set when the node must stop; carries the error to give to callers.
    stopped: Option<Error>,
}

impl Driver {
    async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.tick_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                Some(input) = self.persisted_rx.recv() => self.on_input(input),
                Some(message) = self.peer_rx.recv() => {
                    self.on_message(message);
                    for _ in 0..INPUTS_PER_TURN_MAX {
                        match self.peer_rx.try_recv() {
                            Ok(message) => self.on_message(message),
                            Err(_) => break,
                        }
                    }
                }
                input = self.inputs.recv() => match input {
                    Some(input) => {
                        self.on_input(input);
                        // Drain what is queued so one Ready (and one fsync) covers it all.
                        for _ in 0..INPUTS_PER_TURN_MAX {
                            match self.inputs.try_recv() {
                                Ok(input) => self.on_input(input),
                                Err(_) => break,
                            }
                        }
                    }
                    None => self.stopped = Some(Error::Stopped),
                },
                _ = ticker.tick() => {
                    self.core.tick();
                    self.ticks += 1;
                }
            }
            while let Ok(input) = self.persisted_rx.try_recv() {
                self.on_input(input);
            }
            if self.stopped.is_some() {
                break;
            }
            self.maybe_start_read_round();
            if let Err(e) = self.on_ready().await {
                error!(error = %e, "raft node stopping");
                self.stopped = Some(e);
                break;
            }
            self.publish_status();
        }
        let err = self.stopped.clone().unwrap_or(Error::Stopped);
        for (_, waiters) in self.pending_reads.drain() {
            for w in waiters {
                let _ = w.send(Err(err.clone()));
            }
        }
        for w in self.queued_reads.drain(..) {
            let _ = w.send(Err(err.clone()));
        }
        self.inputs.close();
        while let Ok(input) = self.inputs.try_recv() {
            if let Input::Propose { done, .. } = input {
                let _ = done.send(Err(err.clone()));
            }
        }
        info!("raft node stopped");
    }

    fn on_message(&mut self, message: Message) {
        // raft-rs rejects messages it cannot use (stale terms, unknown peers) with an error;
        // they are routine in a cluster and carry nothing to act on.
        if let Err(e) = self.core.step(message) {
            tracing::debug!(error = %e, "raft message not stepped");
        }
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Propose { data, done } => {
                let _ = done.send(self.core.propose(data));
            }
            Input::ProposeConfChange { context, cc, done } => {
                let _ = done.send(self.core.propose_conf_change(context, cc));
            }
            Input::Progress(done) => {
                let _ = done.send(self.core.progress());
            }
            Input::Unreachable(id) => self.core.report_unreachable(id),
            Input::SnapshotStatus { to, delivered } => self.core.report_snapshot(to, delivered),
            Input::ReadIndex { done } => {
                if self.queued_reads.len() + self.pending_reads.len() >= PENDING_READS_MAX {
                    let _ = done.send(Err(Error::Raft("too many pending reads".into())));
                } else {
                    self.queued_reads.push_back(done);
                }
            }
            Input::Persisted { number, result } => match result {
                Ok(()) => {
                    self.core.on_persisted(number);
                    while self.held_messages.front().is_some_and(|(n, _)| *n <= number) {
                        let (_, messages) = self.held_messages.pop_front().expect("checked");
                        self.send_messages(messages);
                    }
                }
                Err(e) => self.stopped = Some(Error::Storage(e)),
            },
            Input::Applied(index) => self.core.on_applied(index),
            Input::TransferLeader(to) => self.core.transfer_leader(to),
            Input::CompactLog(index) => self.compact_log(index),
            Input::Stop => self.stopped = Some(Error::Stopped),
        }
    }

    fn compact_log(&mut self, index: u64) {
        let index = index.min(self.core.applied_index());
        let Ok(term) = self.storage.term(index) else {
            return; // already compacted past it
        };
        if index <= self.storage.snapshot_metadata().index {
            return;
        }
        let mut meta = raft::eraftpb::SnapshotMetadata { index, term, ..Default::default() };
        meta.set_conf_state(self.core.conf_state());
        let task = PersistTask { entries: Vec::new(), hard_state: None, snapshot: Some(meta), on_done: Box::new(|_| {}) };
        match self.writer.submit(task) {
            Ok(()) => self.storage.compact(index),
            Err(e) => warn!(index, error = %e, "raft log compaction deferred"),
        }
    }

    /// Starts one read-index round for every queued read, if none is in flight. A round
    /// that got no answer for an election timeout (raft dropped it, e.g. across a leader
    /// change) is abandoned and its reads join the next round, so no read waits forever.
    fn maybe_start_read_round(&mut self) {
        if let Some(started) = self.read_round_started_tick {
            if self.ticks.saturating_sub(started) < self.read_round_retry_ticks {
                return;
            }
            for (_, waiters) in self.pending_reads.drain() {
                self.queued_reads.extend(waiters);
            }
            self.read_round_started_tick = None;
        }
        if self.queued_reads.is_empty() {
            return;
        }
        if !self.core.can_serve_read_index() {
            // No leader yet, or a new leader that has not committed in its term: keep the
            // reads queued; callers give up at their own request timeout.
            return;
        }
        self.next_read_id = self.next_read_id.wrapping_add(1);
        let id = self.next_read_id;
        match self.core.start_read_round(id) {
            Ok(()) => {
                self.pending_reads.insert(id, self.queued_reads.drain(..).collect());
                self.read_round_started_tick = Some(self.ticks);
            }
            Err(e) => {
                for w in self.queued_reads.drain(..) {
                    let _ = w.send(Err(e.clone()));
                }
            }
        }
    }

    async fn on_ready(&mut self) -> Result<()> {
        let Some(mut rd) = self.core.ready()? else {
            return Ok(());
        };
        if !rd.messages.is_empty() {
            let messages = std::mem::take(&mut rd.messages);
            self.send_messages(messages);
        }
        for (round, index) in std::mem::take(&mut rd.read_rounds) {
            if let Some(waiters) = self.pending_reads.remove(&round) {
                for w in waiters {
                    let _ = w.send(Ok(index));
                }
                self.read_round_started_tick = None;
            }
        }
        let committed = std::mem::take(&mut rd.committed);
        if committed.iter().any(|e| e.get_entry_type() == EntryType::EntryConfChangeV2) {
            self.storage.set_conf_state(self.core.conf_state());
        }
        if !committed.is_empty() {
            let term = self.core.status(0).term;
            self.committed_tx
                .send(Committed { entries: committed, term, snapshot: None })
                .await
                .map_err(|_| Error::Stopped)?;
        }
        if let Some(snapshot) = rd.snapshot.take() {
            return self.install_snapshot(rd, snapshot.get_metadata().clone()).await;
        }
        let needs_persist = rd.needs_persist();
        if needs_persist {
            let tx = self.persisted_tx.clone();
            let number = rd.number;
            let task = PersistTask {
                entries: std::mem::take(&mut rd.entries),
                hard_state: rd.hard_state.take(),
                snapshot: None,
                on_done: Box::new(move |result| {
                    let result = result.map_err(|e| e.to_string());
                    let _ = tx.send(Input::Persisted { number, result });
                }),
            };
            // Once submitted, the entries are readable through the storage (the writer
            // applies them to memory before queueing the fsync), as `advance` requires.
            self.writer.submit_async(task).await.map_err(|e| Error::Storage(e.to_string()))?;
            // Messages that must wait for persistence (votes, append acks) go out when the
            // writer confirms the fsync: an ack before it would let the leader count an
            // entry this member could still lose, and a vote before it breaks raft-rs's
            // rule that a candidate's log is durable when it wins.
            let persisted_messages = std::mem::take(&mut rd.persisted_messages);
            if !persisted_messages.is_empty() {
                self.held_messages.push_back((number, persisted_messages));
            }
        }
        self.core.advance(rd, !needs_persist);
        Ok(())
    }

    /// A ready carrying a snapshot from the leader. Its marker (which drops the log it
    /// replaces) is made durable before the state machine is told to install it, so a crash
    /// in between restarts with the marker ahead of the state machine, and the server
    /// re-installs from the received file; never the other way round.
    async fn install_snapshot(&mut self, mut rd: crate::core::NodeReady, meta: SnapshotMetadata) -> Result<()> {
        info!(index = meta.index, term = meta.term, "installing snapshot from the leader");
        let (done_tx, done_rx) = oneshot::channel();
        let task = PersistTask {
            entries: std::mem::take(&mut rd.entries),
            hard_state: rd.hard_state.take(),
            snapshot: Some(meta.clone()),
            on_done: Box::new(move |result| {
                let _ = done_tx.send(result.map_err(|e| e.to_string()));
            }),
        };
        fail::fail_point!("node::before_snapshot_persist");
        self.writer.submit_async(task).await.map_err(|e| Error::Storage(e.to_string()))?;
        match done_rx.await {
            Ok(Ok(())) => fail::fail_point!("node::after_snapshot_persist"),
            Ok(Err(e)) => return Err(Error::Storage(e)),
            Err(_) => return Err(Error::Stopped),
        }
        let persisted_messages = std::mem::take(&mut rd.persisted_messages);
        // This ready is durable, and so is every earlier one (the writer is FIFO).
        let number = rd.number;
        self.core.advance(rd, false);
        self.core.on_persisted(number);
        self.storage.set_conf_state(meta.get_conf_state().clone());
        if !persisted_messages.is_empty() {
            self.send_messages(persisted_messages);
        }
        let term = self.core.status(0).term;
        self.committed_tx
            .send(Committed { entries: Vec::new(), term, snapshot: Some(meta) })
            .await
            .map_err(|_| Error::Stopped)
    }

    fn send_messages(&mut self, msgs: Vec<Message>) {
        self.sink.send(msgs);
    }

    fn publish_status(&mut self) {
        let status = self.core.status(self.applied.load(Ordering::Acquire));
        self.status_tx.send_if_modified(|s| {
            if *s != status {
                *s = status;
                true
            } else {
                false
            }
        });
    }
}
