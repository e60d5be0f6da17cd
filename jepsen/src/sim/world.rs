//! The simulated world: members, network, clocks, clients and the nemesis, driven by one
//! event queue in one thread. Every choice comes from the run's ChaCha8 generator, in the
//! order events happen, so a seed replays exactly.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use skiff_raft::node::NodeConfig;
use skiff_raft::raft::eraftpb::{Message, MessageType};

use super::member::{Effects, Member, Reply, Waiter};
use super::nemesis::{self, Fault, Target};
use super::network::{Network, NetworkConfig};
use super::queue::{EventQueue, Micros};
use super::state_machine::{Action, Command};
use super::trace::{Record, TraceHash};
use super::{SimConfig, Stats};
use crate::history::{Function, History, Op, OpKind, Value};

/// One raft tick of a member whose clock runs at the real rate: etcd's default
/// `--heartbeat-interval` of 100 ms.
pub const TICK_US: Micros = 100_000;
/// A tick comes up to 1/this of a tick early or late (±5 %).
const TICK_JITTER_DIVISOR: Micros = 10;
/// etcd's default `--election-timeout` (1 s) in ticks.
pub const ELECTION_TICKS: usize = 10;
pub const HEARTBEAT_TICKS: usize = 1;
/// When the nemesis starts: the cluster has elected a leader well before.
const FAULTS_START_US: Micros = 1_000_000;
/// How long a client waits for an answer before it records the operation as `info`.
const OP_TIMEOUT_US: Micros = 4_000_000;
/// After the faults heal, the cluster gets this long before the final reads.
const SETTLE_US: Micros = 3_000_000;
/// The final reads (every client reads every key) must all succeed within this, or the
/// cluster is stuck after healing: a liveness failure.
const FINAL_READS_DEADLINE_US: Micros = 30_000_000;
/// A client whose request found no member running tries again after this.
const RETRY_US: Micros = 100_000;
/// A crash armed to hit a member mid-write fires anyway after this long.
const ARMED_CRASH_WAIT_US: Micros = 2_000_000;
/// Rounds of "drive, send, report unreachable peers" one input may take: raft-rs stops
/// sending appends to a peer reported unreachable until it hears from it, so two suffice.
const DRIVE_ROUNDS_MAX: usize = 8;
/// A paused member's fsync completion is looked at again this often.
const PAUSED_RECHECK_US: Micros = 10_000;

#[derive(Debug)]
enum Event {
    Tick {
        member: usize,
        incarnation: u64,
    },
    Deliver(Message),
    FsyncDone {
        member: usize,
        incarnation: u64,
    },
    Invoke {
        client: usize,
    },
    Timeout {
        client: usize,
        op_seq: u64,
    },
    Fault(Fault),
    /// An armed crash firing, unless the restart closing its window (`epoch`) came first.
    Crash {
        targets: Vec<usize>,
        epoch: u64,
    },
}

/// A member's clock: how fast its ticks come.
#[derive(Clone, Copy, Debug)]
struct Clock {
    rate_percent: u64,
    stalled: bool,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            rate_percent: 100,
            stalled: false,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Workload,
    /// Reading every key once more after the faults healed; keys still to read.
    FinalReads(Vec<String>),
    Done,
}

#[derive(Debug)]
struct PendingOp {
    f: Function,
    key: String,
    /// The invocation's argument.
    value: Value,
}

#[derive(Debug)]
struct Client {
    op_seq: u64,
    pending: Option<PendingOp>,
    phase: Phase,
    /// The last value this client saw per key: a cas expects it.
    seen: BTreeMap<String, i64>,
}

/// What a finished run hands back (before checking).
pub struct Outcome {
    pub history: History,
    pub trace_hash: u64,
    pub trace_records: u64,
    pub stats: Stats,
    /// Set when the final reads did not all succeed by the deadline.
    pub stuck: Option<String>,
}

pub struct World {
    config: SimConfig,
    rng: ChaCha8Rng,
    now_us: Micros,
    queue: EventQueue<Event>,
    members: Vec<Member>,
    clocks: Vec<Clock>,
    /// A crash waiting for one of its members to hold unsynced writes (then all of them
    /// crash at that moment), and until when it waits.
    armed_crash: Option<(Vec<usize>, Micros)>,
    /// Counts `RestartCrashed` faults: a delayed crash from before the last one is void.
    crash_epoch: u64,
    network: Network,
    fsync_us_base: Micros,
    clients: Vec<Client>,
    keys: Vec<String>,
    history: History,
    trace: TraceHash,
    stats: Stats,
    next_value: i64,
    ops_invoked: usize,
    think_us_max: Micros,
    heal_at_us: Micros,
    final_reads_at_us: Micros,
}

impl World {
    pub fn new(config: &SimConfig) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let ids: Vec<u64> = (1..=config.members as u64).collect();
        let members = ids
            .iter()
            .map(|&id| {
                let node = NodeConfig {
                    id,
                    tick_interval: std::time::Duration::from_micros(TICK_US),
                    election_ticks: ELECTION_TICKS,
                    heartbeat_ticks: HEARTBEAT_TICKS,
                    applied_index: 0,
                    max_size_per_msg: 1 << 20,
                    max_inflight_msgs: 256,
                    // The seed picks each life's timeout; raft-rs must not re-randomize it.
                    fixed_election_timeout: true,
                };
                Member::new(node, &ids, config.mode, config.check_durability)
            })
            .collect();
        let network = if config.faults {
            NetworkConfig::random(&mut rng)
        } else {
            NetworkConfig::reliable()
        };
        let heal_at_us = FAULTS_START_US + config.fault_phase_us;
        let mut world = World {
            config: config.clone(),
            // From a fast SSD to a busy cloud volume.
            fsync_us_base: rng.random_range(200..10_000),
            now_us: 0,
            queue: EventQueue::default(),
            members,
            clocks: vec![Clock::default(); ids.len()],
            armed_crash: None,
            crash_epoch: 0,
            network: Network::new(network),
            clients: Vec::new(),
            keys: (0..config.keys).map(|k| format!("k{k}")).collect(),
            history: History::new(),
            trace: TraceHash::default(),
            stats: Stats::default(),
            next_value: 0,
            ops_invoked: 0,
            // Spread the operations over the fault phase (a client's turn is half the
            // maximum think time plus the operation's latency).
            think_us_max: 3 * config.fault_phase_us * config.clients as u64
                / (2 * config.ops.max(1) as u64),
            heal_at_us,
            final_reads_at_us: heal_at_us + SETTLE_US,
            rng,
        };
        if config.faults {
            for (at_us, fault) in
                nemesis::schedule(&mut world.rng, &ids, FAULTS_START_US, heal_at_us)
            {
                world.queue.schedule(at_us, Event::Fault(fault));
            }
        }
        for member in 0..world.members.len() {
            world.start(member);
        }
        for client in 0..config.clients {
            world.clients.push(Client {
                op_seq: 0,
                pending: None,
                phase: Phase::Workload,
                seen: BTreeMap::new(),
            });
            let at_us = world
                .rng
                .random_range(0..TICK_US * ELECTION_TICKS as u64 * 2);
            world.queue.schedule(at_us, Event::Invoke { client });
        }
        world
    }

    /// Runs to the end: every client done, or the final reads' deadline passed.
    pub fn run(mut self) -> Outcome {
        let deadline_us = self.final_reads_at_us + FINAL_READS_DEADLINE_US;
        while let Some((at_us, event)) = self.queue.pop_until(deadline_us) {
            self.now_us = at_us;
            self.on_event(event);
            if self.clients.iter().all(|c| c.phase == Phase::Done) {
                break;
            }
        }
        let stuck = self
            .clients
            .iter()
            .any(|c| c.phase != Phase::Done)
            .then(|| {
                format!(
                    "final reads unfinished {} s after the faults healed: {}",
                    (deadline_us - self.heal_at_us) / 1_000_000,
                    self.describe_members()
                )
            });
        for client in 0..self.clients.len() {
            if self.clients[client].pending.is_some() {
                self.complete(client, OpKind::Info, None);
            }
        }
        self.stats.ops_invoked = self.ops_invoked;
        self.stats.simulated_us = self.now_us;
        Outcome {
            history: self.history,
            trace_hash: self.trace.finish(),
            trace_records: self.trace.records(),
            stats: self.stats,
            stuck,
        }
    }

    fn describe_members(&self) -> String {
        let parts: Vec<String> = self
            .members
            .iter()
            .map(|m| match m.leadership() {
                Some((leader, term)) => {
                    format!(
                        "member {} term {term}{} applied {}",
                        m.id,
                        if leader { " leader" } else { "" },
                        m.applied_index()
                    )
                }
                None => format!("member {} down", m.id),
            })
            .collect();
        parts.join(", ")
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Tick {
                member,
                incarnation,
            } => self.on_tick(member, incarnation),
            Event::Deliver(message) => self.on_deliver(message),
            Event::FsyncDone {
                member,
                incarnation,
            } => self.on_fsync_done(member, incarnation),
            Event::Invoke { client } => self.on_invoke(client),
            Event::Timeout { client, op_seq } => {
                if self.clients[client].op_seq == op_seq && self.clients[client].pending.is_some() {
                    self.stats.timeouts += 1;
                    self.complete(client, OpKind::Info, None);
                }
            }
            Event::Fault(fault) => self.on_fault(fault),
            Event::Crash { targets, epoch } => {
                if epoch == self.crash_epoch {
                    for member in targets {
                        self.crash(member);
                    }
                }
            }
        }
    }

    // ---- members -------------------------------------------------------------------

    fn schedule_first_tick(&mut self, member: usize) {
        // A random phase, so members do not tick in lockstep.
        let at_us = self.now_us + self.rng.random_range(1..=TICK_US);
        let incarnation = self.members[member].incarnation;
        self.queue.schedule(
            at_us,
            Event::Tick {
                member,
                incarnation,
            },
        );
    }

    fn on_tick(&mut self, member: usize, incarnation: u64) {
        let m = &self.members[member];
        if m.incarnation != incarnation || !m.is_up() {
            return; // a tick of an earlier life; the restart started a new chain
        }
        self.maybe_fire_armed_crash(member);
        if !self.members[member].is_up() {
            return;
        }
        let clock = self.clocks[member];
        // Timers jitter a little, so members that time out together drift apart.
        let jitter_us = self.rng.random_range(0..=TICK_US / TICK_JITTER_DIVISOR);
        let interval_us =
            (TICK_US - TICK_US / (2 * TICK_JITTER_DIVISOR) + jitter_us) * 100 / clock.rate_percent;
        self.queue.schedule(
            self.now_us + interval_us,
            Event::Tick {
                member,
                incarnation,
            },
        );
        if clock.stalled || self.members[member].is_paused() {
            return;
        }
        self.with_member(member, |m, _| m.tick());
    }

    fn on_deliver(&mut self, message: Message) {
        let (from, to) = (message.from, message.to);
        let member = (to - 1) as usize;
        if !self.network.connected(from, to) || !self.members[member].is_up() {
            self.stats.messages_dropped += 1;
            return;
        }
        self.stats.messages_delivered += 1;
        self.trace.delivered(self.now_us, &message);
        self.with_member(member, |m, _| m.step(message));
    }

    fn on_fsync_done(&mut self, member: usize, incarnation: u64) {
        let m = &self.members[member];
        if m.incarnation != incarnation || !m.is_up() {
            return; // the crash lost it
        }
        if m.is_paused() {
            self.queue.schedule(
                self.now_us + PAUSED_RECHECK_US,
                Event::FsyncDone {
                    member,
                    incarnation,
                },
            );
            return;
        }
        self.stats.fsyncs += 1;
        self.with_member(member, |m, fx| m.on_fsync_done(fx));
    }

    /// Gives `member` an input, then runs it until raft is idle: its messages go on the
    /// network, its answers to clients, its writes to an fsync.
    fn with_member(&mut self, member: usize, input: impl FnOnce(&mut Member, &mut Effects)) {
        let mut fx = Effects::default();
        input(&mut self.members[member], &mut fx);
        for round in 0.. {
            assert!(
                round < DRIVE_ROUNDS_MAX,
                "member {member} keeps producing messages to unreachable peers"
            );
            self.members[member].drive(self.now_us, &mut self.trace, &mut fx);
            for (waiter, reply) in std::mem::take(&mut fx.replies) {
                self.on_reply(waiter, reply);
            }
            let mut unreachable = Vec::new();
            for message in std::mem::take(&mut fx.messages) {
                if let Some(to) = self.send(message) {
                    unreachable.push(to);
                }
            }
            if unreachable.is_empty() {
                break;
            }
            // As the gRPC transport does when a peer's stream breaks.
            unreachable.sort_unstable();
            unreachable.dedup();
            for to in unreachable {
                self.members[member].report_unreachable(to);
            }
        }
        if self.members[member].fsync_needed() {
            self.members[member].start_fsync();
            let latency_us = if self.rng.random_bool(0.01) {
                self.rng.random_range(10_000..200_000) // a slow disk moment
            } else {
                self.rng
                    .random_range(self.fsync_us_base..=self.fsync_us_base * 3)
            };
            let incarnation = self.members[member].incarnation;
            self.queue.schedule(
                self.now_us + latency_us,
                Event::FsyncDone {
                    member,
                    incarnation,
                },
            );
        }
        self.maybe_fire_armed_crash(member);
    }

    /// Fires the armed crash if `member` is one of its targets and now holds unsynced
    /// writes, or if the crash has waited long enough.
    fn maybe_fire_armed_crash(&mut self, member: usize) {
        let Some((targets, deadline_us)) = &self.armed_crash else {
            return;
        };
        let fire = self.now_us >= *deadline_us
            || (targets.contains(&member) && self.members[member].unsynced_writes() > 0);
        if fire {
            let (targets, _) = self.armed_crash.take().expect("checked above");
            if self.rng.random_bool(0.5) {
                // Between the append and its fsync.
                for target in targets {
                    self.crash(target);
                }
            } else {
                // A moment later: maybe after the fsync, maybe after an ack went out.
                let delay_us = self.rng.random_range(0..=3 * self.fsync_us_base);
                let epoch = self.crash_epoch;
                self.queue
                    .schedule(self.now_us + delay_us, Event::Crash { targets, epoch });
            }
        }
    }

    /// Puts a message on the network. Returns its destination if the sender can tell at
    /// once that it cannot arrive (partitioned or down: a refused connection).
    fn send(&mut self, message: Message) -> Option<u64> {
        self.stats.messages_sent += 1;
        let (from, to) = (message.from, message.to);
        if !self.network.connected(from, to) || !self.members[(to - 1) as usize].is_up() {
            self.stats.messages_dropped += 1;
            return (message.get_msg_type() == MessageType::MsgAppend).then_some(to);
        }
        let deliveries = self.network.plan(&mut self.rng);
        match deliveries.len() {
            0 => self.stats.messages_dropped += 1,
            1 => {}
            _ => self.stats.messages_duplicated += 1,
        }
        for delay_us in deliveries {
            self.queue
                .schedule(self.now_us + delay_us, Event::Deliver(message.clone()));
        }
        None
    }

    // ---- clients -------------------------------------------------------------------

    fn on_invoke(&mut self, client: usize) {
        assert!(
            self.clients[client].pending.is_none(),
            "client {client} invokes with an operation pending"
        );
        if self.clients[client].phase == Phase::Workload
            && (self.ops_invoked >= self.config.ops || self.now_us >= self.final_reads_at_us)
        {
            self.clients[client].phase = Phase::FinalReads(self.keys.clone());
        }
        if let Phase::FinalReads(keys) = &self.clients[client].phase {
            if keys.is_empty() {
                self.clients[client].phase = Phase::Done;
                return;
            }
            if self.now_us < self.final_reads_at_us {
                self.queue
                    .schedule(self.final_reads_at_us, Event::Invoke { client });
                return;
            }
        }
        let running: Vec<usize> = (0..self.members.len())
            .filter(|&m| self.members[m].is_up())
            .collect();
        if running.is_empty() {
            self.queue
                .schedule(self.now_us + RETRY_US, Event::Invoke { client });
            return;
        }
        let member = running[self.rng.random_range(0..running.len())];
        let op = match &self.clients[client].phase {
            Phase::FinalReads(keys) => PendingOp {
                f: Function::Read,
                key: keys[0].clone(),
                value: Value::Nil,
            },
            _ => {
                self.ops_invoked += 1;
                self.random_op(client)
            }
        };
        let c = &mut self.clients[client];
        c.op_seq += 1;
        let waiter = Waiter {
            client,
            op_seq: c.op_seq,
        };
        let op_id = ((client as u64) << 32) | c.op_seq;
        self.record(client, OpKind::Invoke, op.f, &op.key, op.value);
        self.queue.schedule(
            self.now_us + OP_TIMEOUT_US,
            Event::Timeout {
                client,
                op_seq: waiter.op_seq,
            },
        );
        let (f, key, value) = (op.f, op.key.clone(), op.value);
        self.clients[client].pending = Some(op);
        let action = match (f, value) {
            (Function::Read, _) => None,
            (Function::Write, Value::Int(v)) => Some(Action::Write(v)),
            (Function::Cas, Value::Pair(expected, new)) => Some(Action::Cas { expected, new }),
            other => unreachable!("random_op makes no {other:?}"),
        };
        match action {
            None => self.with_member(member, |m, fx| m.read(waiter, key, fx)),
            Some(action) => {
                let command = Command { op_id, key, action };
                self.with_member(member, |m, fx| m.propose(waiter, command, fx));
            }
        }
    }

    fn random_op(&mut self, client: usize) -> PendingOp {
        let key = self.keys[self.rng.random_range(0..self.keys.len())].clone();
        let roll = self.rng.random_range(0..100);
        if roll < 40 {
            return PendingOp {
                f: Function::Read,
                key,
                value: Value::Nil,
            };
        }
        // Unique values: a read then names the one write it saw.
        self.next_value += 1;
        let new = self.next_value;
        match self.clients[client].seen.get(&key) {
            Some(&expected) if roll < 70 => PendingOp {
                f: Function::Cas,
                key,
                value: Value::Pair(expected, new),
            },
            _ => PendingOp {
                f: Function::Write,
                key,
                value: Value::Int(new),
            },
        }
    }

    fn on_reply(&mut self, waiter: Waiter, reply: Reply) {
        let c = &self.clients[waiter.client];
        if c.op_seq != waiter.op_seq || c.pending.is_none() {
            return; // the client gave up on it already (timeout)
        }
        match reply {
            Reply::Read(value) => {
                self.complete(
                    waiter.client,
                    OpKind::Ok,
                    Some(value.map_or(Value::Nil, Value::Int)),
                );
            }
            Reply::Applied { succeeded: true } => self.complete(waiter.client, OpKind::Ok, None),
            Reply::Applied { succeeded: false } | Reply::Refused => {
                self.complete(waiter.client, OpKind::Fail, None)
            }
            Reply::Lost => self.complete(waiter.client, OpKind::Info, None),
        }
    }

    /// Records the pending operation's completion; `read_value` for an ok read.
    fn complete(&mut self, client: usize, kind: OpKind, read_value: Option<Value>) {
        let op = self.clients[client]
            .pending
            .take()
            .expect("a completion has a pending operation");
        let value = read_value.unwrap_or(op.value);
        self.record(client, kind, op.f, &op.key, value);
        self.trace
            .event(Record::Completed, self.now_us, client as u64, kind as u64);
        match kind {
            OpKind::Ok => self.stats.ops_ok += 1,
            OpKind::Fail => self.stats.ops_fail += 1,
            _ => self.stats.ops_info += 1,
        }
        let c = &mut self.clients[client];
        if kind == OpKind::Ok {
            match value {
                Value::Int(v) | Value::Pair(_, v) => {
                    c.seen.insert(op.key.clone(), v);
                }
                Value::Nil => {
                    c.seen.remove(&op.key);
                }
            }
            if let Phase::FinalReads(keys) = &mut c.phase {
                keys.retain(|k| *k != op.key);
            }
        }
        let delay_us = match c.phase {
            Phase::Workload => self.rng.random_range(0..=self.think_us_max),
            _ => RETRY_US,
        };
        self.queue
            .schedule(self.now_us + delay_us, Event::Invoke { client });
    }

    fn record(&mut self, client: usize, kind: OpKind, f: Function, key: &str, value: Value) {
        let op = Op {
            index: self.history.len(),
            process: client as u64,
            kind,
            f,
            key: Some(key.to_owned()),
            value,
            time_ns: self.now_us * 1_000,
        };
        self.history
            .push(op)
            .expect("simulated time never goes backwards");
    }

    // ---- the nemesis ---------------------------------------------------------------

    fn on_fault(&mut self, fault: Fault) {
        *self.stats.faults.entry(fault.name()).or_default() += 1;
        match fault {
            Fault::Partition { side_a, side_b } => self.network.split(&side_a, &side_b),
            Fault::IsolateLeader => {
                let leader = self.leader();
                let others: Vec<u64> = self
                    .members
                    .iter()
                    .map(|m| m.id)
                    .filter(|&id| id != leader)
                    .collect();
                self.network.split(&[leader], &others);
            }
            Fault::OneWay { from, to } => self.network.block(&from, &to),
            Fault::HealNetwork => self.network.heal(),
            Fault::Crash { target, mid_write } => {
                let targets: Vec<usize> = self
                    .resolve(target)
                    .into_iter()
                    .map(|id| (id - 1) as usize)
                    .collect();
                if mid_write {
                    self.armed_crash = Some((targets.clone(), self.now_us + ARMED_CRASH_WAIT_US));
                    for member in targets {
                        self.maybe_fire_armed_crash(member);
                    }
                } else {
                    for member in targets {
                        self.crash(member);
                    }
                }
            }
            Fault::RestartCrashed => {
                self.armed_crash = None;
                self.crash_epoch += 1;
                for member in 0..self.members.len() {
                    if !self.members[member].is_up() {
                        self.restart(member);
                    }
                }
            }
            Fault::Pause(target) => {
                for id in self.resolve(target) {
                    self.members[(id - 1) as usize].pause(self.now_us);
                }
            }
            Fault::ResumePaused => {
                for member in 0..self.members.len() {
                    if self.members[member].is_paused() {
                        self.with_member(member, |m, fx| m.resume(fx));
                    }
                }
            }
            Fault::ClockRate { member, percent } => {
                self.clocks[(member - 1) as usize].rate_percent = percent
            }
            Fault::ClockStall { member } => self.clocks[(member - 1) as usize].stalled = true,
            Fault::ClockJump { member, ticks } => {
                let member = (member - 1) as usize;
                for _ in 0..ticks {
                    if self.members[member].is_up() && !self.members[member].is_paused() {
                        self.with_member(member, |m, _| m.tick());
                    }
                }
            }
            Fault::ClockReset => self.clocks.iter_mut().for_each(|c| *c = Clock::default()),
        }
    }

    /// The member leading in the highest term now (any member if none leads).
    fn leader(&mut self) -> u64 {
        let leader = self
            .members
            .iter()
            .filter_map(|m| {
                m.leadership()
                    .filter(|(is_leader, _)| *is_leader)
                    .map(|(_, term)| (term, m.id))
            })
            .max();
        match leader {
            Some((_, id)) => id,
            None => self.members[self.rng.random_range(0..self.members.len())].id,
        }
    }

    fn resolve(&mut self, target: Target) -> Vec<u64> {
        match target {
            Target::Leader => vec![self.leader()],
            Target::Members(ids) => ids,
        }
    }

    fn crash(&mut self, member: usize) {
        if !self.members[member].is_up() {
            return;
        }
        let unsynced = self.members[member].unsynced_writes();
        // Often nothing unsynced survives; sometimes some of it reached the disk anyway.
        let survivors = if self.rng.random_bool(0.5) {
            0
        } else {
            self.rng.random_range(0..=unsynced)
        };
        self.stats.unsynced_writes_lost += unsynced - survivors;
        if unsynced > 0 {
            self.stats.crashes_mid_write += 1;
        }
        let waiters = self.members[member].crash(survivors);
        self.trace.event(
            Record::Crashed,
            self.now_us,
            member as u64,
            survivors as u64,
        );
        for waiter in waiters {
            self.on_reply(waiter, Reply::Lost);
        }
    }

    fn restart(&mut self, member: usize) {
        self.stats.restarts += 1;
        self.trace
            .event(Record::Restarted, self.now_us, member as u64, 0);
        self.start(member);
    }

    fn start(&mut self, member: usize) {
        // Each life gets its own election timeout, from the seed.
        let election_ticks = self.rng.random_range(ELECTION_TICKS..2 * ELECTION_TICKS);
        self.members[member].start(election_ticks);
        self.schedule_first_tick(member);
        // The first ready replays the committed log into the new state machine.
        self.with_member(member, |_, _| {});
    }
}
