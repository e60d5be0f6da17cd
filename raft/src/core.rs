//! `NodeCore`: the raft node without IO, time or threads — the seam for deterministic
//! simulation. It owns the `RawNode` over any `raft::Storage` and turns inputs (ticks,
//! proposals, read requests, "persisted", "applied") into `NodeReady` batches that say what
//! to persist, what to send and what is committed. Whoever drives it decides how:
//!
//! * `node::Driver` (production): a tokio task, the WAL writer thread, real time;
//! * a simulator: one thread, a simulated clock and disk, messages delivered by hand.
//!
//! Driving protocol for one turn: feed inputs; `ready()`; hand `NodeReady::committed` to
//! the state machine; make `entries`/`hard_state` durable *and readable through the
//! storage*; then `advance(ready, persisted_now)`; once durable, `on_persisted(number)`
//! (unless `persisted_now` already said so).

use raft::eraftpb::{ConfChangeV2, Entry, EntryType, HardState, Message, MessageType, Snapshot};
use raft::{Ready, RawNode, SnapshotStatus, StateRole, Storage};

use crate::node::{Error, NodeConfig, NodeStatus, PeerProgress, Result};

/// Bytes of committed entries handed out per `Ready`.
const COMMITTED_BYTES_PER_READY_MAX: u64 = 16 * 1024 * 1024;

/// One turn's work, taken from raft-rs's `Ready`.
pub struct NodeReady {
    ready: Ready,
    pub number: u64,
    /// Entries to append to the log (durably) before `advance`.
    pub entries: Vec<Entry>,
    /// Hard state to persist with them, if it changed.
    pub hard_state: Option<HardState>,
    /// Committed entries for the state machine, in log order.
    pub committed: Vec<Entry>,
    /// Messages that may be sent at once (the leader sends appends before its own fsync).
    pub messages: Vec<Message>,
    /// Messages that may only be sent once this ready is durable (votes, append acks).
    pub persisted_messages: Vec<Message>,
    /// Finished read-index rounds: (round id given to `start_read_round`, read index).
    pub read_rounds: Vec<(u64, u64)>,
    /// A snapshot from the leader to install: persist its marker with `entries` and
    /// `hard_state`, and (once durable) replace the state machine with it.
    pub snapshot: Option<Snapshot>,
}

impl NodeReady {
    /// Whether `entries`/`hard_state` need persisting before this ready counts as durable.
    pub fn needs_persist(&self) -> bool {
        !self.entries.is_empty()
            || self.hard_state.is_some()
            || !self.persisted_messages.is_empty()
            || self.snapshot.is_some()
    }
}

pub struct NodeCore<S: Storage> {
    raw: RawNode<S>,
    /// See [`NodeCore::check_lost_acknowledged_entries`].
    lost_acknowledged_entries: u64,
    /// Numbers of readies handed to the disk and not yet reported durable, in order.
    persisting: std::collections::VecDeque<u64>,
    /// Readies with nothing to persist that came after one still persisting: raft-rs's
    /// `on_persist_ready(n)` means "everything up to n is durable", so they are reported
    /// only together with the fsync that covers the readies before them.
    deferred: Option<u64>,
    id: u64,
}

impl<S: Storage> NodeCore<S> {
    /// A node over `storage`. A member that is the only voter campaigns at once: it needs no
    /// election timeout to elect itself, so a fresh or restarted single member serves at once.
    pub fn new(config: &NodeConfig, storage: S, logger: &slog::Logger) -> Result<Self> {
        config.validate().map_err(Error::Raft)?;
        let raft_config = raft::Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied: config.applied_index,
            max_size_per_msg: config.max_size_per_msg,
            max_inflight_msgs: config.max_inflight_msgs,
            max_committed_size_per_ready: COMMITTED_BYTES_PER_READY_MAX,
            check_quorum: true,
            pre_vote: true,
            // raft-rs draws election timeouts from an unseeded generator; a simulation
            // fixes them (to `election_ticks`) so a seed replays exactly.
            min_election_tick: if config.fixed_election_timeout { config.election_ticks } else { 0 },
            max_election_tick: if config.fixed_election_timeout { config.election_ticks + 1 } else { 0 },
            ..Default::default()
        };
        raft_config.validate().map_err(raft_error)?;
        let voters = storage.initial_state().map_err(raft_error)?.conf_state.voters;
        let mut raw = RawNode::new(&raft_config, storage, logger).map_err(raft_error)?;
        if voters == [config.id] {
            raw.campaign().map_err(raft_error)?;
        }
        Ok(Self { raw, lost_acknowledged_entries: 0, persisting: Default::default(), deferred: None, id: config.id })
    }

    pub fn tick(&mut self) {
        self.raw.tick();
    }

    /// Appends `data` to the log if this node leads, or forwards it to the leader (raft-rs
    /// sends a follower's proposal to the leader as `MsgPropose`; the proposer learns the
    /// outcome when the entry is applied). Returns the term it was proposed in: only that
    /// term's leader can append it, so an entry of any later term being applied means it
    /// was either applied before or lost with that leader.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<u64> {
        if self.raw.raft.leader_id == raft::INVALID_ID {
            return Err(Error::NoLeader);
        }
        self.raw.propose(Vec::new(), data).map_err(proposal_error)?;
        Ok(self.raw.raft.term)
    }

    /// Proposes a membership change on the leader. raft-rs allows one unapplied change at a
    /// time and would silently turn a second one into an empty entry, so it is refused here.
    pub fn propose_conf_change(&mut self, context: Vec<u8>, cc: ConfChangeV2) -> Result<()> {
        let raft = &self.raw.raft;
        if raft.state != StateRole::Leader {
            return Err(if raft.leader_id == raft::INVALID_ID { Error::NoLeader } else { Error::NotLeader(raft.leader_id) });
        }
        if raft.has_pending_conf() {
            return Err(Error::ConfChangePending);
        }
        self.raw.propose_conf_change(context, cc).map_err(proposal_error)
    }

    /// The transport could not deliver to `id`: raft-rs stops pipelining to it and probes.
    pub fn report_unreachable(&mut self, id: u64) {
        self.raw.report_unreachable(id);
    }

    /// Whether the snapshot sent to `id` arrived and was handed to its node.
    pub fn report_snapshot(&mut self, id: u64, delivered: bool) {
        let status = if delivered { SnapshotStatus::Finish } else { SnapshotStatus::Failure };
        self.raw.report_snapshot(id, status);
    }

    /// The leader's view of every member's replication (empty on followers).
    pub fn progress(&self) -> Vec<PeerProgress> {
        let raft = &self.raw.raft;
        if raft.state != StateRole::Leader {
            return Vec::new();
        }
        let conf = raft.prs().conf();
        let mut out: Vec<PeerProgress> = raft
            .prs()
            .iter()
            .map(|(id, pr)| PeerProgress {
                id: *id,
                matched: pr.matched,
                recent_active: pr.recent_active || *id == raft.id,
                is_learner: conf.learners().contains(id),
            })
            .collect();
        out.sort_by_key(|p| p.id);
        out
    }

    /// Whether a read round started now would be answered: raft-rs silently drops a
    /// ReadIndex request on a leader that has not yet committed an entry of its own term
    /// (it cannot know the commit index is current), so callers hold reads until then.
    pub fn can_serve_read_index(&self) -> bool {
        let raft = &self.raw.raft;
        raft.leader_id != raft::INVALID_ID && (raft.state != StateRole::Leader || raft.commit_to_current_term())
    }

    /// Starts a ReadIndex round named `round`; its index arrives in `NodeReady::read_rounds`.
    /// Check `can_serve_read_index` first: a round started too early is never answered.
    ///
    /// The request context raft-rs matches answers by is this member's id and `round`: the
    /// leader keys pending reads by context, so contexts must differ between members (and
    /// callers should not reuse rounds across restarts; `node` starts them at random).
    pub fn start_read_round(&mut self, round: u64) -> Result<()> {
        if self.raw.raft.leader_id == raft::INVALID_ID {
            return Err(Error::NoLeader);
        }
        let mut ctx = self.id.to_be_bytes().to_vec();
        ctx.extend_from_slice(&round.to_be_bytes());
        self.raw.read_index(ctx);
        Ok(())
    }

    /// The ready numbered `number` (and, the disk being FIFO, every one before it) is
    /// durable.
    pub fn on_persisted(&mut self, number: u64) {
        while self.persisting.front().is_some_and(|n| *n <= number) {
            self.persisting.pop_front();
        }
        let mut report = number;
        if let Some(d) = self.deferred {
            if self.persisting.front().is_none_or(|next| d < *next) {
                report = report.max(d);
                self.deferred = None;
            }
        }
        self.raw.on_persist_ready(report);
    }

    /// The state machine applied up to `index` (capped at what raft may have applied: an
    /// installed snapshot's index is reported before raft-rs hears it was persisted only
    /// if the driver reorders, which it must not; the cap keeps raft-rs's invariant).
    pub fn on_applied(&mut self, index: u64) {
        let log = &self.raw.raft.raft_log;
        let index = index.min(log.committed).min(log.persisted);
        if index > log.applied {
            self.raw.advance_apply_to(index);
        }
    }

    pub fn step(&mut self, message: Message) -> Result<()> {
        self.check_lost_acknowledged_entries(&message);
        self.raw.step(message).map_err(raft_error)
    }

    /// A leader's check that a follower still has what it acknowledged: a rejected append
    /// in the current term whose hint (the follower's last index, or the last index of a
    /// term not above the leader's at the probed index) is below the follower's match index
    /// means the follower's disk lost fsynced entries — a healthy follower's entries up to
    /// the match are the leader's, with terms no higher, so its hint never goes below it.
    /// This holds when each peer's messages arrive in the order they were sent, as over
    /// the transport's one stream per peer; a network that duplicates or reorders them (the
    /// simulator's) can deliver a rejection older than the ack, so there it proves nothing.
    /// raft-rs quietly sends the entries again; etcd's follower would panic on the next
    /// heartbeat (`tocommit(N) is out of range [lastIndex(M)]`). Skiff logs a warning and
    /// counts it (`skiff_raft_follower_lost_entries_total`), so a disk that lies about
    /// fsync is seen. Returns whether this message showed such a loss.
    pub fn check_lost_acknowledged_entries(&mut self, message: &Message) -> bool {
        let raft = &self.raw.raft;
        if message.get_msg_type() != MessageType::MsgAppendResponse
            || !message.reject
            || raft.state != StateRole::Leader
            || message.term != raft.term
        {
            return false;
        }
        let Some(matched) = raft.prs().get(message.from).map(|pr| pr.matched) else {
            return false;
        };
        if message.reject_hint >= matched {
            return false;
        }
        self.lost_acknowledged_entries += 1;
        lost_entries_counter().inc();
        tracing::warn!(
            member = %format!("{:x}", message.from),
            acknowledged_index = matched,
            now_has = message.reject_hint,
            "a follower reports fewer raft entries than it acknowledged: its disk lost fsynced writes (or its messages came out of order); the leader sends them again"
        );
        true
    }

    /// How many times this node, as leader, caught a follower without entries it had
    /// acknowledged ([`Self::check_lost_acknowledged_entries`]).
    pub fn lost_acknowledged_entries(&self) -> u64 {
        self.lost_acknowledged_entries
    }

    pub fn transfer_leader(&mut self, to: u64) {
        self.raw.transfer_leader(to);
    }

    /// Takes the next turn's work, if any.
    pub fn ready(&mut self) -> Result<Option<NodeReady>> {
        if !self.raw.has_ready() {
            return Ok(None);
        }
        let mut rd = self.raw.ready();
        let snapshot = (!rd.snapshot().is_empty()).then(|| rd.snapshot().clone());
        let read_rounds = rd
            .take_read_states()
            .into_iter()
            .filter_map(|rs| {
                let ctx = <[u8; 16]>::try_from(rs.request_ctx.as_slice()).ok()?;
                let (id, round) = ctx.split_at(8);
                (u64::from_be_bytes(id.try_into().ok()?) == self.id)
                    .then(|| (u64::from_be_bytes(round.try_into().expect("8 bytes")), rs.index))
            })
            .collect();
        let committed = rd.take_committed_entries();
        for entry in &committed {
            self.maybe_apply_conf_change(entry)?;
        }
        Ok(Some(NodeReady {
            number: rd.number(),
            entries: rd.take_entries(),
            hard_state: rd.hs().cloned(),
            committed,
            messages: rd.take_messages(),
            persisted_messages: rd.take_persisted_messages(),
            read_rounds,
            snapshot,
            ready: rd,
        }))
    }

    /// Finishes a turn. The ready's entries must already be readable through the storage.
    /// `persisted_now`: they are durable too (or there was nothing to persist); otherwise
    /// the driver calls `on_persisted(number)` once they are.
    ///
    /// A ready with nothing to persist is durable at once only if no earlier ready is still
    /// being persisted: raft-rs takes `on_persist_ready(n)` to cover every ready up to n, so
    /// reporting it early would count unsynced entries as durable (the leader would count
    /// its own unsynced entry toward the commit quorum). It is then reported with the
    /// `on_persisted` of the last earlier one.
    pub fn advance(&mut self, ready: NodeReady, persisted_now: bool) {
        let number = ready.number;
        // raft-rs must see the ready advanced before it is reported persisted.
        self.raw.advance_append_async(ready.ready);
        if !persisted_now {
            self.persisting.push_back(number);
        } else if self.persisting.is_empty() {
            self.raw.on_persist_ready(number);
        } else {
            self.deferred = Some(number);
        }
    }

    fn maybe_apply_conf_change(&mut self, entry: &Entry) -> Result<()> {
        if entry.get_entry_type() != EntryType::EntryConfChangeV2 {
            return Ok(());
        }
        let mut cc = ConfChangeV2::default();
        protobuf::Message::merge_from_bytes(&mut cc, entry.get_data())
            .map_err(|e| Error::Raft(format!("bad conf change at {}: {e}", entry.index)))?;
        self.raw.apply_conf_change(&cc).map_err(raft_error)?;
        Ok(())
    }

    /// The membership as raft sees it now.
    pub fn conf_state(&self) -> raft::eraftpb::ConfState {
        self.raw.raft.prs().conf().to_conf_state()
    }

    pub fn applied_index(&self) -> u64 {
        self.raw.raft.raft_log.applied
    }

    pub fn status(&self, applied_index: u64) -> NodeStatus {
        let raft = &self.raw.raft;
        NodeStatus {
            id: raft.id,
            leader_id: raft.leader_id,
            term: raft.term,
            commit_index: raft.raft_log.committed,
            applied_index,
            last_index: raft.raft_log.last_index(),
            is_leader: raft.state == StateRole::Leader,
            is_learner: raft.prs().conf().learners().contains(&raft.id),
        }
    }

    pub fn storage(&self) -> &S {
        self.raw.store()
    }
}

/// `skiff_raft_follower_lost_entries_total`, process-wide in the default registry (as the
/// WAL's metrics), registered on first use.
fn lost_entries_counter() -> &'static prometheus::IntCounter {
    static COUNTER: std::sync::OnceLock<prometheus::IntCounter> = std::sync::OnceLock::new();
    COUNTER.get_or_init(|| {
        let c = prometheus::IntCounter::new(
            "skiff_raft_follower_lost_entries_total",
            "Times this member, as leader, found a follower without raft entries it had acknowledged (its disk lost fsynced writes).",
        )
        .expect("valid counter");
        // Already registered only if another registry user took the name; counting still works.
        let _ = prometheus::default_registry().register(Box::new(c.clone()));
        c
    })
}

fn proposal_error(e: raft::Error) -> Error {
    match e {
        raft::Error::ProposalDropped => Error::ProposalDropped,
        e => Error::Raft(e.to_string()),
    }
}

fn raft_error(e: raft::Error) -> Error {
    Error::Raft(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::storage::MemStorage;
    use std::time::Duration;

    fn config() -> NodeConfig {
        NodeConfig {
            id: 1,
            tick_interval: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 1,
            applied_index: 0,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            fixed_election_timeout: false,
        }
    }

    /// Drives a single voter by hand — no runtime, no clock, no disk — the way a simulator
    /// will: every proposal is committed in order, and the same inputs give the same trace.
    fn run(proposals: usize) -> Vec<(u64, u64, Vec<u8>)> {
        let storage = MemStorage::new_with_conf_state((vec![1], vec![]));
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut core = NodeCore::new(&config(), storage, &logger).unwrap();
        let mut trace = Vec::new();
        let mut proposed = 0;
        for _turn in 0..1000 {
            core.tick();
            if proposed < proposals && core.status(0).is_leader {
                core.propose(format!("p{proposed}").into_bytes()).unwrap();
                proposed += 1;
            }
            while let Some(rd) = core.ready().unwrap() {
                for e in &rd.committed {
                    trace.push((e.term, e.index, e.data.to_vec()));
                }
                let last_committed = rd.committed.last().map(|e| e.index);
                let number = rd.number;
                let needs = rd.needs_persist();
                {
                    let mut w = core.storage().wl();
                    if let Some(hs) = &rd.hard_state {
                        w.set_hardstate(hs.clone());
                    }
                    w.append(&rd.entries).unwrap();
                }
                core.advance(rd, !needs);
                if needs {
                    core.on_persisted(number);
                }
                if let Some(i) = last_committed {
                    core.on_applied(i);
                }
            }
            if trace.iter().filter(|(_, _, d)| !d.is_empty()).count() == proposals {
                break;
            }
        }
        trace
    }

    #[test]
    fn a_hand_driven_single_voter_commits_every_proposal_in_order_deterministically() {
        let trace = run(20);
        let data: Vec<Vec<u8>> = trace.iter().filter(|(_, _, d)| !d.is_empty()).map(|(_, _, d)| d.clone()).collect();
        let want: Vec<Vec<u8>> = (0..20).map(|i| format!("p{i}").into_bytes()).collect();
        assert_eq!(data, want);
        let indexes: Vec<u64> = trace.iter().map(|(_, i, _)| *i).collect();
        assert!(indexes.windows(2).all(|w| w[1] == w[0] + 1), "indexes are contiguous: {indexes:?}");
        assert_eq!(trace, run(20), "the same inputs give the same trace");
    }

    /// Three hand-driven voters on MemStorage, messages delivered at once.
    struct Trio {
        cores: Vec<NodeCore<MemStorage>>,
    }

    impl Trio {
        fn core(id: u64, storage: MemStorage) -> NodeCore<MemStorage> {
            let logger = slog::Logger::root(slog::Discard, slog::o!());
            NodeCore::new(&NodeConfig { id, fixed_election_timeout: true, ..config() }, storage, &logger).unwrap()
        }

        fn new() -> Self {
            let cores = (1..=3).map(|id| Self::core(id, MemStorage::new_with_conf_state((vec![1, 2, 3], vec![])))).collect();
            Trio { cores }
        }

        /// Runs readies and delivers messages until nothing moves.
        fn settle(&mut self) {
            for _ in 0..100 {
                let mut inbox = Vec::new();
                for core in &mut self.cores {
                    while let Some(rd) = core.ready().unwrap() {
                        let number = rd.number;
                        {
                            let mut w = core.storage().wl();
                            if let Some(hs) = &rd.hard_state {
                                w.set_hardstate(hs.clone());
                            }
                            w.append(&rd.entries).unwrap();
                        }
                        inbox.extend(rd.messages.iter().cloned());
                        inbox.extend(rd.persisted_messages.iter().cloned());
                        let last = rd.committed.last().map(|e| e.index);
                        core.advance(rd, true);
                        let _ = number;
                        if let Some(i) = last {
                            core.on_applied(i);
                        }
                    }
                }
                if inbox.is_empty() {
                    return;
                }
                for m in inbox {
                    let to = m.to as usize - 1;
                    let _ = self.cores[to].step(m);
                }
            }
        }

        fn elect(&mut self, id: usize) {
            self.cores[id - 1].raw.campaign().unwrap();
            self.settle();
            assert!(self.cores[id - 1].status(0).is_leader);
        }
    }

    /// A follower that comes back with fewer entries than it acknowledged (its disk lied
    /// about fsync) is caught by the leader; a follower that restarts with its whole log,
    /// or lags without losing anything, is not.
    #[test]
    fn a_leader_catches_a_follower_that_lost_acknowledged_entries() {
        let mut trio = Trio::new();
        trio.elect(1);
        for i in 0..20 {
            trio.cores[0].propose(format!("p{i}").into_bytes()).unwrap();
            trio.settle();
        }
        let matched = trio.cores[0].raw.raft.prs().get(3).unwrap().matched;
        assert!(matched >= 20, "follower 3 acknowledged {matched}");

        // Follower 3 restarts with its whole log: nothing to report.
        let whole = trio.cores[2].storage().clone();
        trio.cores[2] = Trio::core(3, whole);
        trio.cores[0].propose(b"after a clean restart".to_vec()).unwrap();
        trio.settle();
        for _ in 0..30 {
            trio.cores.iter_mut().for_each(NodeCore::tick);
            trio.settle();
        }
        assert_eq!(trio.cores[0].lost_acknowledged_entries(), 0);

        // Follower 3 restarts having lost its last 8 acknowledged entries.
        let last = trio.cores[2].storage().last_index().unwrap();
        let lossy = MemStorage::new_with_conf_state((vec![1, 2, 3], vec![]));
        {
            let old = trio.cores[2].storage();
            let kept = old.entries(1, last - 8 + 1, None, raft::GetEntriesContext::empty(false)).unwrap();
            let mut hs = old.initial_state().unwrap().hard_state;
            hs.commit = hs.commit.min(last - 8);
            let mut w = lossy.wl();
            w.append(&kept).unwrap();
            w.set_hardstate(hs);
        }
        trio.cores[2] = Trio::core(3, lossy);
        trio.cores[0].propose(b"after the loss".to_vec()).unwrap();
        trio.settle();
        assert!(trio.cores[0].lost_acknowledged_entries() >= 1, "the loss went unnoticed");
        // ...and the leader sent the entries again: the follower caught up.
        for _ in 0..30 {
            trio.cores.iter_mut().for_each(NodeCore::tick);
            trio.settle();
        }
        assert_eq!(trio.cores[2].storage().last_index().unwrap(), trio.cores[0].storage().last_index().unwrap());
    }

    /// raft-rs drops a ReadIndex request on a leader that has not committed in its term;
    /// `can_serve_read_index` says when a round will be answered, and then it is.
    #[test]
    fn read_rounds_wait_for_the_first_commit_of_the_term() {
        let storage = MemStorage::new_with_conf_state((vec![1], vec![]));
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut core = NodeCore::new(&config(), storage, &logger).unwrap();
        assert!(core.status(0).is_leader);
        assert!(!core.can_serve_read_index(), "no entry of the new term is committed yet");
        let mut answered = Vec::new();
        for _ in 0..10 {
            if core.can_serve_read_index() && answered.is_empty() {
                core.start_read_round(7).unwrap();
            }
            while let Some(rd) = core.ready().unwrap() {
                answered.extend(rd.read_rounds.iter().copied());
                let (number, needs) = (rd.number, rd.needs_persist());
                {
                    let mut w = core.storage().wl();
                    if let Some(hs) = &rd.hard_state {
                        w.set_hardstate(hs.clone());
                    }
                    w.append(&rd.entries).unwrap();
                }
                core.advance(rd, !needs);
                if needs {
                    core.on_persisted(number);
                }
            }
            if !answered.is_empty() {
                break;
            }
        }
        assert_eq!(answered, vec![(7, 1)], "the round is answered at the leader's first commit");
    }

    #[test]
    fn proposals_and_reads_need_a_leader() {
        let storage = MemStorage::new_with_conf_state((vec![1, 2, 3], vec![]));
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut core = NodeCore::new(&config(), storage, &logger).unwrap();
        assert_eq!(core.propose(b"x".to_vec()), Err(Error::NoLeader));
        assert_eq!(core.start_read_round(1), Err(Error::NoLeader));
    }
}
