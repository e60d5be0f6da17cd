//! One simulated member: a `NodeCore` over the member's simulated disk, its state machine,
//! and the clients' requests waiting on it. Drives `NodeCore` as its module doc asks:
//! feed an input, take each `ready()`, apply `committed`, make the writes readable
//! (`MemStorage`) and queue them on the disk, `advance`, and `on_persisted` when the
//! simulator completes the fsync.
//!
//! One departure from that doc: a ready with nothing to persist is advanced with
//! `persisted_now` only when no earlier write is still unsynced. raft-rs reads "ready n is
//! persisted" as "every ready up to n is", so doing it while an fsync is in flight would
//! report that fsync's entries durable early (see `Mode::EarlyPersisted`, which keeps the
//! documented behaviour to show the bug). Such a ready joins the disk queue as an empty
//! write instead and is reported with the fsync that covers it.

use std::collections::BTreeMap;

use skiff_raft::core::NodeCore;
use skiff_raft::node::{Error as RaftError, NodeConfig};
use skiff_raft::raft::eraftpb::{Entry, Message};
use skiff_raft::raft::storage::MemStorage;
use skiff_raft::storage::BOOTSTRAP_INDEX;

use super::disk::{Disk, Write};
use super::queue::Micros;
use super::state_machine::{Command, StateMachine};
use super::trace::TraceHash;
use super::Mode;

/// A client operation waiting on a member; `op_seq` tells a late answer from a current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiter {
    pub client: usize,
    pub op_seq: u64,
}

/// What a member answers a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A linearizable read's result.
    Read(Option<i64>),
    /// The write or cas was applied; `false` for a cas whose expected value differed.
    Applied { succeeded: bool },
    /// Certainly not done (no leader to forward to, proposal refused).
    Refused,
    /// Unknown: the member crashed, or raft failed in a way that says nothing.
    Lost,
}

/// A request that reached a paused member: it runs when the member resumes.
#[derive(Debug)]
enum Deferred {
    Message(Message),
    Propose(Waiter, Command),
    Read(Waiter, String),
}

/// What one turn of a member produced for the rest of the world.
#[derive(Debug, Default)]
pub struct Effects {
    pub messages: Vec<Message>,
    pub replies: Vec<(Waiter, Reply)>,
}

pub struct Member {
    pub id: u64,
    config: NodeConfig,
    mode: Mode,
    /// Whether applying an entry the disk does not hold durably stops the run.
    check_durability: bool,
    logger: slog::Logger,
    /// `None` while crashed.
    core: Option<NodeCore<MemStorage>>,
    disk: Disk,
    state_machine: StateMachine,
    /// Raised at every crash and restart, so that events scheduled for an earlier life
    /// (ticks, fsync completions) are ignored.
    pub incarnation: u64,
    /// Ticks since the last (re)start.
    ticks: u64,
    /// Frozen (SIGSTOP) since this time: nothing runs, requests and messages wait.
    paused_since: Option<Micros>,
    deferred: Vec<Deferred>,
    /// Proposals waiting to be applied here, by client op id.
    proposals: BTreeMap<u64, Waiter>,
    /// Reads waiting for a read round that will be answered (`can_serve_read_index`).
    reads_queued: Vec<(Waiter, String)>,
    /// Read rounds in flight: round id → (its reads, tick it started at).
    read_rounds: BTreeMap<u64, (Vec<(Waiter, String)>, u64)>,
    /// Reads whose read index is known, waiting for the state machine to reach it.
    reads_applying: Vec<(u64, Waiter, String)>,
    next_round: u64,
    /// Ticks an unanswered read round may take before its reads join a new one (raft-rs
    /// drops a ReadIndex request lost with a leader change; the production driver retries
    /// the same way).
    read_round_retry_ticks: u64,
}

impl Member {
    /// A bootstrapped member of `voters`, not started yet.
    pub fn new(config: NodeConfig, voters: &[u64], mode: Mode, check_durability: bool) -> Member {
        config
            .validate()
            .expect("the simulation's raft config is valid");
        let read_round_retry_ticks = config.election_ticks as u64;
        Member {
            id: config.id,
            config,
            mode,
            check_durability,
            logger: slog::Logger::root(slog::Discard, slog::o!()),
            core: None,
            disk: Disk::bootstrap(voters),
            state_machine: StateMachine::default(),
            incarnation: 0,
            ticks: 0,
            paused_since: None,
            deferred: Vec::new(),
            proposals: BTreeMap::new(),
            reads_queued: Vec::new(),
            read_rounds: BTreeMap::new(),
            reads_applying: Vec::new(),
            next_round: 0,
            read_round_retry_ticks,
        }
    }

    /// (Re)starts from the durable disk alone; the state machine replays the log. The
    /// simulator picks `election_ticks` for each life from its seed.
    pub fn start(&mut self, election_ticks: usize) {
        assert!(self.core.is_none(), "member {} is already running", self.id);
        self.config.election_ticks = election_ticks;
        self.config
            .validate()
            .expect("the simulation's raft config is valid");
        let storage = self.disk.open_storage();
        let core = NodeCore::new(&self.config, storage, &self.logger)
            .expect("a member starts from its durable log");
        self.core = Some(core);
        self.state_machine = StateMachine::starting_after(BOOTSTRAP_INDEX);
        self.incarnation += 1;
        self.ticks = 0;
        // As the production driver's `next_read_id`: every life counts rounds from 1.
        self.next_round = 0;
    }

    /// Crashes: memory is gone, the disk keeps what was durable plus the oldest
    /// `surviving_writes` unsynced writes. Returns every waiting client, whose outcome is
    /// now unknown.
    pub fn crash(&mut self, surviving_writes: usize) -> Vec<Waiter> {
        assert!(self.core.is_some(), "member {} crashed twice", self.id);
        self.core = None;
        self.disk.crash(surviving_writes);
        self.incarnation += 1;
        self.paused_since = None;
        let mut waiters: Vec<Waiter> = self.proposals.values().copied().collect();
        waiters.extend(self.reads_queued.iter().map(|(w, _)| *w));
        waiters.extend(
            self.read_rounds
                .values()
                .flat_map(|(reads, _)| reads.iter().map(|(w, _)| *w)),
        );
        waiters.extend(self.reads_applying.iter().map(|(_, w, _)| *w));
        waiters.extend(self.deferred.iter().filter_map(|d| match d {
            Deferred::Propose(w, _) | Deferred::Read(w, _) => Some(*w),
            Deferred::Message(_) => None,
        }));
        self.proposals.clear();
        self.reads_queued.clear();
        self.read_rounds.clear();
        self.reads_applying.clear();
        self.deferred.clear();
        waiters
    }

    pub fn is_up(&self) -> bool {
        self.core.is_some()
    }

    pub fn is_paused(&self) -> bool {
        self.paused_since.is_some()
    }

    /// SIGSTOP: until `resume`, nothing runs; messages and requests wait for it.
    pub fn pause(&mut self, now_us: Micros) {
        if self.is_up() && !self.is_paused() {
            self.paused_since = Some(now_us);
        }
    }

    /// Unsynced writes the disk holds (what a crash now could lose).
    pub fn unsynced_writes(&self) -> usize {
        self.disk.unsynced_writes()
    }

    /// (is leader, term), for choosing a fault's target; `None` while crashed.
    pub fn leadership(&self) -> Option<(bool, u64)> {
        let status = self
            .core
            .as_ref()?
            .status(self.state_machine.applied_index());
        Some((status.is_leader, status.term))
    }

    pub fn applied_index(&self) -> u64 {
        self.state_machine.applied_index()
    }

    fn core(&mut self) -> &mut NodeCore<MemStorage> {
        self.core
            .as_mut()
            .expect("only a running member gets inputs")
    }

    pub fn tick(&mut self) {
        self.core().tick();
        self.ticks += 1;
        let stale: Vec<u64> = self
            .read_rounds
            .iter()
            .filter(|(_, (_, started))| self.ticks - started >= self.read_round_retry_ticks)
            .map(|(round, _)| *round)
            .collect();
        for round in stale {
            let (reads, _) = self.read_rounds.remove(&round).expect("listed above");
            self.reads_queued.extend(reads);
        }
    }

    pub fn step(&mut self, message: Message) {
        if self.is_paused() {
            self.deferred.push(Deferred::Message(message));
            return;
        }
        // raft-rs refuses messages it cannot use (stale terms, unknown peers): routine.
        let _ = self.core().step(message);
    }

    pub fn report_unreachable(&mut self, to: u64) {
        self.core().report_unreachable(to);
    }

    /// A client's write or cas. Answered now if refused, else when applied here.
    pub fn propose(&mut self, waiter: Waiter, command: Command, fx: &mut Effects) {
        if self.is_paused() {
            self.deferred.push(Deferred::Propose(waiter, command));
            return;
        }
        let op_id = command.op_id;
        match self.core().propose(command.encode()) {
            Ok(_term) => {
                self.proposals.insert(op_id, waiter);
            }
            // Not in any log: the operation certainly did not happen.
            Err(RaftError::NoLeader | RaftError::ProposalDropped) => {
                fx.replies.push((waiter, Reply::Refused))
            }
            Err(_) => fx.replies.push((waiter, Reply::Lost)),
        }
    }

    /// A client's read: linearizable (ReadIndex, then wait for the state machine), or in
    /// `Mode::StaleReads` straight from local state.
    pub fn read(&mut self, waiter: Waiter, key: String, fx: &mut Effects) {
        if self.is_paused() {
            self.deferred.push(Deferred::Read(waiter, key));
            return;
        }
        if self.mode == Mode::StaleReads {
            fx.replies
                .push((waiter, Reply::Read(self.state_machine.read(&key))));
            return;
        }
        self.reads_queued.push((waiter, key));
    }

    /// Resumes a paused member: what reached it meanwhile runs now, in arrival order.
    pub fn resume(&mut self, fx: &mut Effects) {
        self.paused_since = None;
        for deferred in std::mem::take(&mut self.deferred) {
            match deferred {
                Deferred::Message(message) => self.step(message),
                Deferred::Propose(waiter, command) => self.propose(waiter, command, fx),
                Deferred::Read(waiter, key) => self.read(waiter, key, fx),
            }
        }
    }

    /// Whether the simulator should start an fsync now.
    pub fn fsync_needed(&self) -> bool {
        self.is_up() && self.disk.fsync_needed()
    }

    pub fn start_fsync(&mut self) {
        self.disk.start_fsync();
    }

    /// The fsync in flight completed: tell raft-rs, and release the messages that waited.
    pub fn on_fsync_done(&mut self, fx: &mut Effects) {
        let synced = self.disk.on_fsync_done();
        if self.mode == Mode::AckBeforeFsync {
            return; // raft-rs was told at once, and the messages went out then
        }
        self.core().on_persisted(synced.number);
        fx.messages.extend(synced.persisted_messages);
    }

    /// Runs the member until raft has nothing more to do.
    pub fn drive(&mut self, now_us: Micros, trace: &mut TraceHash, fx: &mut Effects) {
        if self.is_paused() || !self.is_up() {
            return;
        }
        loop {
            self.maybe_start_read_round();
            let Some(mut rd) = self.core().ready().expect("raft-rs produces a ready") else {
                break;
            };
            fx.messages.append(&mut rd.messages);
            for (round, index) in std::mem::take(&mut rd.read_rounds) {
                if let Some((reads, _)) = self.read_rounds.remove(&round) {
                    self.reads_applying
                        .extend(reads.into_iter().map(|(w, key)| (index, w, key)));
                }
            }
            assert!(
                rd.snapshot.is_none(),
                "the simulation never compacts a log, so no member needs a snapshot"
            );
            let needs_persist = rd.needs_persist();
            for entry in std::mem::take(&mut rd.committed) {
                trace.applied(now_us, self.id, &entry);
                self.must_hold_durably(&entry);
                if let Some(applied) = self.state_machine.apply(&entry) {
                    if let Some(waiter) = self.proposals.remove(&applied.op_id) {
                        fx.replies.push((
                            waiter,
                            Reply::Applied {
                                succeeded: applied.succeeded,
                            },
                        ));
                    }
                }
            }
            let entries = std::mem::take(&mut rd.entries);
            let hard_state = rd.hard_state.take();
            {
                // Readable at once, as `advance` requires; durable only after the fsync.
                let mut storage = self.core().storage().wl();
                if let Some(hs) = &hard_state {
                    storage.set_hardstate(hs.clone());
                }
                storage
                    .append(&entries)
                    .expect("raft-rs appends after its log");
            }
            let persisted_messages = std::mem::take(&mut rd.persisted_messages);
            let number = rd.number;
            let report_in_order = matches!(self.mode, Mode::Safe | Mode::StaleReads);
            if !needs_persist && self.disk.unsynced_writes() > 0 && report_in_order {
                // Nothing to persist, but an earlier ready's fsync is in flight: raft-rs
                // takes "ready n persisted" to cover every ready before n, so this one is
                // reported with that fsync, in order (an empty write), not now.
                self.disk.write(Write {
                    number,
                    entries,
                    hard_state,
                    persisted_messages,
                });
                self.core().advance(rd, false);
            } else if !needs_persist {
                self.core().advance(rd, true);
            } else if self.mode == Mode::AckBeforeFsync {
                // The unsafe mode: raft-rs is told the write is durable, and acks go out,
                // while it still sits unsynced on the disk.
                fx.messages.extend(persisted_messages);
                self.disk.write(Write {
                    number,
                    entries,
                    hard_state,
                    persisted_messages: Vec::new(),
                });
                self.core().advance(rd, true);
            } else {
                self.disk.write(Write {
                    number,
                    entries,
                    hard_state,
                    persisted_messages,
                });
                self.core().advance(rd, false);
            }
            let applied = self.state_machine.applied_index();
            self.core().on_applied(applied);
            self.answer_reads(fx);
        }
    }

    /// raft-rs hands out committed entries only up to what was reported persisted, so a
    /// member applies only entries its own disk holds durably — unless the driver reported
    /// persistence early (`Mode::AckBeforeFsync` does on purpose).
    fn must_hold_durably(&self, entry: &Entry) {
        if !self.check_durability || self.mode == Mode::AckBeforeFsync {
            return;
        }
        let durable_term = self.disk.durable_term(entry.index);
        assert!(
            durable_term == Some(entry.term),
            "member {} applies entry {} (term {}) that its disk does not hold durably (durable term {durable_term:?}, durable log ends at {})",
            self.id,
            entry.index,
            entry.term,
            self.disk.durable_last_index()
        );
    }

    fn maybe_start_read_round(&mut self) {
        if self.reads_queued.is_empty() || !self.core().can_serve_read_index() {
            return;
        }
        self.next_round += 1;
        let round = self.next_round;
        match self.core().start_read_round(round) {
            Ok(()) => {
                let reads = std::mem::take(&mut self.reads_queued);
                self.read_rounds.insert(round, (reads, self.ticks));
            }
            Err(e) => unreachable!("can_serve_read_index said a round could start: {e}"),
        }
    }

    fn answer_reads(&mut self, fx: &mut Effects) {
        let applied = self.state_machine.applied_index();
        let mut waiting = Vec::new();
        for (index, waiter, key) in std::mem::take(&mut self.reads_applying) {
            if index <= applied {
                fx.replies
                    .push((waiter, Reply::Read(self.state_machine.read(&key))));
            } else {
                waiting.push((index, waiter, key));
            }
        }
        self.reads_applying = waiting;
    }
}
