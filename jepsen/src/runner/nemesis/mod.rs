//! The nemesis: a schedule of faults, one at a time, every kind once per round in a random
//! order. It waits a random `--nemesis-interval`, starts a fault, waits another interval,
//! heals it, and so on until the run stops (then it heals whatever is active). Admin faults (move-leader, compact) are single requests whose
//! window closes when the request returns. Every fault becomes a [`FaultWindow`]: kind,
//! targets, what happened, start and end on the history's clock, so plots and readers can
//! line faults up with operations.
//!
//! Here: the schedule, network, process, clock and admin faults. Membership changes
//! (remove and re-add, grow-shrink) are in `membership.rs`; corrupting files (WAL, state
//! machine, snapshots) and snapshot streams in `files.rs`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom as _, SliceRandom as _};
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::cli::{FaultKind, RunConfig, Target, GROWN_MEMBERS};
use super::cluster::{Admin, Cluster, ADMIN_REQUEST_TIMEOUT};
use super::network::{Cut, NETNS_LOSS_PERCENT, PROXY_DROP_CHUNK_PER_MILLION};
use super::recorder::Recorder;

mod files;
mod membership;

/// One fault, as `nemesis.jsonl` and `results.json` record it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultWindow {
    pub kind: FaultKind,
    /// Names of the members hit; for a partition, its groups (`m1 m2 | m3`).
    pub targets: Vec<String>,
    /// How the targets were chosen and what the fault's requests answered.
    pub detail: String,
    /// Nanoseconds since the start of the run, as the history's `time_ns`.
    pub start_ns: u64,
    /// `None` if the run ended before the fault was healed (it never is, unless the
    /// runner itself failed).
    pub end_ns: Option<u64>,
}

/// Partition shapes; the majorities ring needs 5 members (with 3 it cuts nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// A random minority on one side, the majority on the other.
    Halves,
    /// The leader alone.
    IsolateLeader,
    /// Everyone sees only its two ring neighbours.
    Ring,
}

/// What must be undone when the active fault ends.
enum Active {
    Nothing,
    Killed(Vec<usize>),
    Paused(Vec<usize>),
    /// Cuts, loss or latency in the network; the leader when it began.
    Partitioned { leader_before: Option<usize> },
    /// A member running under libfaketime; the task strobing its clock, if any.
    Clock {
        member: usize,
        strobe: Option<tokio::task::JoinHandle<()>>,
    },
    /// A member removed from the cluster, killed, its data wiped.
    Removed(usize),
    /// A follower killed so that it falls behind the compacted log (the snapshot fault).
    Behind(usize),
}

/// libfaketime from Debian's `libfaketime` package.
pub const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
/// Largest clock skew, seconds either way.
const CLOCK_SKEW_S_MAX: i64 = 60;
/// How often a strobing clock jumps between its skew and the real time.
const CLOCK_STROBE_INTERVAL: Duration = Duration::from_millis(500);
/// Bound on one defragmentation (it rewrites the member's whole backend).
const DEFRAG_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Nemesis {
    kinds: Vec<FaultKind>,
    targets: Vec<Target>,
    interval_ms: (u64, u64),
    rng: StdRng,
    cluster: Arc<Mutex<Cluster>>,
    admin: Admin,
    recorder: Arc<Recorder>,
    /// The active fault in a few words, for the progress bar.
    pub status: Arc<Mutex<String>>,
    windows: Vec<FaultWindow>,
    /// The members' heartbeat; the delay fault's latency is a multiple of it.
    heartbeat_ms: u64,
    db: super::cli::Db,
    /// Grow-shrink's direction: true while the cluster grows towards 5 members.
    growing: bool,
    /// `--net netns` (else the proxies).
    netns: bool,
}

impl Nemesis {
    pub fn new(
        config: &RunConfig,
        cluster: Arc<Mutex<Cluster>>,
        admin: Admin,
        recorder: Arc<Recorder>,
    ) -> Nemesis {
        Nemesis {
            kinds: config.nemesis.clone(),
            targets: config.nemesis_targets.clone(),
            interval_ms: (
                config.nemesis_interval.min_ms,
                config.nemesis_interval.max_ms,
            ),
            rng: StdRng::seed_from_u64(config.seed.wrapping_add(1)),
            cluster,
            admin,
            recorder,
            status: Arc::new(Mutex::new(String::new())),
            windows: Vec::new(),
            heartbeat_ms: config.heartbeat_interval_ms,
            db: config.db,
            growing: config.nodes < GROWN_MEMBERS,
            netns: config.net == super::cli::NetMode::Netns,
        }
    }

    /// Runs the schedule until `stop` turns true; returns every fault window, all healed,
    /// and the admin clients of the members the cluster has at the end.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> (Vec<FaultWindow>, Admin) {
        if self.kinds.is_empty() {
            let _ = stop.wait_for(|s| *s).await;
            return (self.windows, self.admin);
        }
        // Every kind once per round, in a random order: a short run with a few faults
        // still sees each kind it asked for.
        let mut round: Vec<FaultKind> = Vec::new();
        loop {
            if !self.pause_unless_stopped(&mut stop).await {
                break;
            }
            if round.is_empty() {
                round = self.kinds.clone();
                round.shuffle(&mut self.rng);
            }
            let kind = round.pop().expect("a round holds every kind");
            let (active, window) = self.start(kind, &mut stop).await;
            self.set_status(&window);
            let index = self.windows.len();
            self.windows.push(window);
            if kind.is_instantaneous() {
                self.windows[index].end_ns = Some(self.recorder.now_ns());
                self.clear_status();
                continue;
            }
            let stopped = !self.pause_unless_stopped(&mut stop).await;
            self.heal(active, index).await;
            self.clear_status();
            if stopped {
                break;
            }
        }
        (self.windows, self.admin)
    }

    fn net_is_netns(&self) -> bool {
        self.netns
    }

    /// The slots in the cluster now.
    fn present(&self) -> Vec<usize> {
        self.cluster.lock().expect("cluster lock poisoned").present()
    }

    fn name(&self, member: usize) -> String {
        self.cluster
            .lock()
            .expect("cluster lock poisoned")
            .name(member)
            .to_owned()
    }

    /// Applies a network fault; the window's detail says where the cuts were made.
    async fn start_cut(
        &mut self,
        kind: FaultKind,
        cut: Cut,
        targets: Vec<String>,
        detail: String,
    ) -> (Active, FaultWindow) {
        let leader_before = self.admin.leader().await;
        let applied = self
            .cluster
            .lock()
            .expect("cluster lock poisoned")
            .cut(&cut);
        let detail = match applied {
            Ok(how) => format!("{detail}; {how}"),
            Err(e) => format!("{detail}; error: {e:#}"),
        };
        (
            Active::Partitioned { leader_before },
            self.window(kind, targets, detail),
        )
    }

    /// Sleeps a random interval; false if the run stopped meanwhile.
    async fn pause_unless_stopped(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        let (low, high) = self.interval_ms;
        let pause = Duration::from_millis(self.rng.random_range(low..=high));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => return false,
        }
        !*stop.borrow()
    }

    fn window(&self, kind: FaultKind, targets: Vec<String>, detail: String) -> FaultWindow {
        FaultWindow {
            kind,
            targets,
            detail,
            start_ns: self.recorder.now_ns(),
            end_ns: None,
        }
    }

    async fn start(
        &mut self,
        kind: FaultKind,
        stop: &mut watch::Receiver<bool>,
    ) -> (Active, FaultWindow) {
        match kind {
            FaultKind::PartitionOneWay => {
                let present = self.present();
                let leader = self.admin.leader().await;
                let from = match leader {
                    Some(l) if self.rng.random_bool(0.5) => l,
                    _ => *present.choose(&mut self.rng).expect("a cluster has members"),
                };
                let name = self.name(from);
                let role = if Some(from) == leader {
                    "the leader"
                } else {
                    "a follower"
                };
                let to = present.iter().copied().filter(|&m| m != from).collect();
                self.start_cut(
                    kind,
                    Cut::OneWay { from, to },
                    vec![format!("{name} -> others")],
                    format!("{name} ({role}) is not heard by the others; it hears them"),
                )
                .await
            }
            FaultKind::Drop => {
                let detail = if self.net_is_netns() {
                    format!("{NETNS_LOSS_PERCENT}% of packets lost on every member-to-member path")
                } else {
                    format!(
                        "{:.1}% of chunks lost (each loss closes its connection)",
                        PROXY_DROP_CHUNK_PER_MILLION as f64 / 1e4
                    )
                };
                let present = self.present();
                self.start_cut(kind, Cut::Loss(present), vec!["all links".into()], detail)
                    .await
            }
            FaultKind::Delay => {
                let delay_ms = 2 * self.heartbeat_ms;
                let jitter_ms = self.heartbeat_ms;
                self.start_cut(
                    kind,
                    Cut::Delay {
                        delay_ms,
                        jitter_ms,
                    },
                    vec!["all links".into()],
                    format!("{delay_ms} ms + up to {jitter_ms} ms jitter"),
                )
                .await
            }
            FaultKind::Clock => self.start_clock().await,
            FaultKind::Membership => self.start_membership().await,
            FaultKind::GrowShrink => self.grow_or_shrink().await,
            FaultKind::Snapshot => self.start_snapshot().await,
            FaultKind::Disk => self.start_disk(stop, false).await,
            FaultKind::DiskState => self.start_disk(stop, true).await,
            FaultKind::Kill | FaultKind::Pause | FaultKind::PowerLoss => {
                let target = *self
                    .targets
                    .choose(&mut self.rng)
                    .expect("targets is not empty");
                let members = self.resolve(target).await;
                let mut cluster = self.cluster.lock().expect("cluster lock poisoned");
                let mut hit = Vec::new();
                let mut errors = Vec::new();
                let mut lost = Vec::new();
                for &m in &members {
                    if !cluster.is_running(m) {
                        continue;
                    }
                    let done = match kind {
                        FaultKind::Kill => cluster.kill(m),
                        FaultKind::PowerLoss => cluster.kill(m).and_then(|()| {
                            let files = cluster.lose_unsynced(m)?;
                            lost.push(format!("{}: {files} files lost unsynced data", cluster.name(m)));
                            Ok(())
                        }),
                        _ => cluster.pause(m),
                    };
                    match done {
                        Ok(()) => hit.push(m),
                        Err(e) => errors.push(format!("{}: {e:#}", cluster.name(m))),
                    }
                }
                let names = hit.iter().map(|&m| cluster.name(m).to_owned()).collect();
                let mut detail = format!("{target:?}").to_lowercase();
                if !lost.is_empty() {
                    detail += &format!("; {}", lost.join("; "));
                }
                if !errors.is_empty() {
                    detail += &format!("; errors: {}", errors.join("; "));
                }
                drop(cluster);
                let window = self.window(kind, names, detail);
                let active = match kind {
                    FaultKind::Kill | FaultKind::PowerLoss => Active::Killed(hit),
                    _ => Active::Paused(hit),
                };
                (active, window)
            }
            FaultKind::Partition => {
                let present = self.present();
                let n = present.len();
                let mut shapes = vec![Shape::Halves, Shape::IsolateLeader];
                if n >= 5 {
                    shapes.push(Shape::Ring);
                }
                let shape = *shapes.choose(&mut self.rng).expect("shapes is not empty");
                let (cut, groups, detail) = match shape {
                    Shape::Halves => {
                        let mut order = present.clone();
                        order.shuffle(&mut self.rng);
                        let minority = order[..(n - 1) / 2].to_vec();
                        let majority = order[(n - 1) / 2..].to_vec();
                        let groups = vec![minority, majority];
                        (Cut::Groups(groups.clone()), groups, "halves")
                    }
                    Shape::IsolateLeader => {
                        let leader = match self.admin.leader().await {
                            Some(l) => l,
                            None => *present.choose(&mut self.rng).expect("a cluster has members"),
                        };
                        let rest = present.iter().copied().filter(|&m| m != leader).collect();
                        let groups = vec![vec![leader], rest];
                        (Cut::Groups(groups.clone()), groups, "isolate-leader")
                    }
                    Shape::Ring => {
                        let groups = (0..n)
                            .map(|i| vec![present[i], present[(i + 1) % n]])
                            .collect();
                        (Cut::Ring(present.clone()), groups, "majorities-ring")
                    }
                };
                let names = {
                    let cluster = self.cluster.lock().expect("cluster lock poisoned");
                    groups
                        .iter()
                        .map(|g| {
                            let mut g = g.clone();
                            g.sort_unstable();
                            g.iter()
                                .map(|&m| cluster.name(m))
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .collect::<Vec<_>>()
                };
                let target = if shape == Shape::Ring {
                    // Pairs that still talk, rather than "groups".
                    vec![format!("ring {}", names.join(", "))]
                } else {
                    vec![names.join(" | ")]
                };
                self.start_cut(kind, cut, target, detail.to_owned()).await
            }
            FaultKind::MoveLeader => {
                let start = self.window(kind, Vec::new(), String::new());
                let Some(leader) = self.admin.leader().await else {
                    return (
                        Active::Nothing,
                        FaultWindow {
                            detail: "no leader known".into(),
                            ..start
                        },
                    );
                };
                let others: Vec<usize> =
                    self.present().into_iter().filter(|&m| m != leader).collect();
                let target = *others
                    .choose(&mut self.rng)
                    .expect("a cluster has 3 or 5 members");
                let mut client = self.admin.client(leader);
                let answer = tokio::time::timeout(
                    ADMIN_REQUEST_TIMEOUT,
                    client.move_leader(self.admin.ids[target]),
                )
                .await;
                let (from, to) = {
                    let cluster = self.cluster.lock().expect("cluster lock poisoned");
                    (
                        cluster.name(leader).to_owned(),
                        cluster.name(target).to_owned(),
                    )
                };
                let outcome = match answer {
                    Ok(Ok(_)) => "ok".to_owned(),
                    Ok(Err(e)) => super::client::describe(&e),
                    Err(_) => "timed out".to_owned(),
                };
                let window = FaultWindow {
                    targets: vec![from.clone(), to.clone()],
                    detail: format!("{from} -> {to}: {outcome}"),
                    ..start
                };
                (Active::Nothing, window)
            }
            FaultKind::Compact => {
                let start = self.window(kind, Vec::new(), String::new());
                let statuses = self.admin.statuses().await;
                let Some(newest) = statuses.iter().max_by_key(|s| s.revision) else {
                    return (
                        Active::Nothing,
                        FaultWindow {
                            detail: "no member answered".into(),
                            ..start
                        },
                    );
                };
                let mut client = self.admin.client(newest.member);
                let answer = tokio::time::timeout(
                    ADMIN_REQUEST_TIMEOUT,
                    client.compact(newest.revision, None),
                )
                .await;
                let outcome = match answer {
                    Ok(Ok(_)) => "ok".to_owned(),
                    Ok(Err(e)) => super::client::describe(&e),
                    Err(_) => "timed out".to_owned(),
                };
                let name = self
                    .cluster
                    .lock()
                    .expect("cluster lock poisoned")
                    .name(newest.member)
                    .to_owned();
                let window = FaultWindow {
                    targets: vec![name],
                    detail: format!("at revision {}: {outcome}", newest.revision),
                    ..start
                };
                (Active::Nothing, window)
            }
            FaultKind::Defrag => {
                let start = self.window(kind, Vec::new(), String::new());
                let member = *self
                    .present()
                    .choose(&mut self.rng)
                    .expect("a cluster has members");
                let mut client = self.admin.client(member);
                // Defragmenting rewrites the backend: etcd blocks the member meanwhile.
                let answer = tokio::time::timeout(DEFRAG_TIMEOUT, client.defragment()).await;
                let outcome = match answer {
                    Ok(Ok(_)) => "ok".to_owned(),
                    Ok(Err(e)) => super::client::describe(&e),
                    Err(_) => "timed out".to_owned(),
                };
                let name = self.cluster.lock().expect("cluster lock poisoned").name(member).to_owned();
                (Active::Nothing, FaultWindow { targets: vec![name], detail: outcome, ..start })
            }
        }
    }

    /// Members a process fault hits.
    async fn resolve(&mut self, target: Target) -> Vec<usize> {
        let present = self.present();
        let n = present.len();
        match target {
            Target::Leader => match self.admin.leader().await {
                Some(leader) => vec![leader],
                None => vec![*present.choose(&mut self.rng).expect("a cluster has members")],
            },
            Target::Random => vec![*present.choose(&mut self.rng).expect("a cluster has members")],
            Target::Minority => {
                let mut order = present;
                order.shuffle(&mut self.rng);
                order.truncate((n - 1) / 2);
                order.sort_unstable();
                order
            }
            Target::All => present,
        }
    }

    async fn heal(&mut self, active: Active, window: usize) {
        let mut errors = Vec::new();
        let mut notes = Vec::new();
        if let Active::Partitioned { leader_before } = &active {
            // Before healing: whom the cut-off majority chose, if anyone.
            let during = self.admin.leader().await;
            let name = |m: Option<usize>| m.map_or("none".to_owned(), |m| self.name(m));
            notes.push(format!(
                "leader before: {}, at heal: {}",
                name(*leader_before),
                name(during)
            ));
        }
        let (removed, behind) = match active {
            Active::Removed(member) => (Some(member), None),
            Active::Behind(member) => (None, Some(member)),
            _ => (None, None),
        };
        {
            let mut cluster = self.cluster.lock().expect("cluster lock poisoned");
            match active {
                Active::Nothing | Active::Removed(_) | Active::Behind(_) => {}
                Active::Killed(members) => {
                    for m in members {
                        if let Err(e) = cluster.spawn(m) {
                            errors.push(format!("restarting {}: {e:#}", cluster.name(m)));
                        }
                    }
                }
                Active::Paused(members) => {
                    for m in members {
                        if let Err(e) = cluster.resume(m) {
                            errors.push(format!("resuming {}: {e:#}", cluster.name(m)));
                        }
                    }
                }
                Active::Partitioned { .. } => {
                    if let Err(e) = cluster.heal_network() {
                        errors.push(format!("healing the network: {e:#}"));
                    }
                }
                Active::Clock { member, strobe } => {
                    if let Some(task) = strobe {
                        task.abort();
                    }
                    cluster.set_env(member, Vec::new());
                    let restarted = cluster.kill(member).and_then(|()| cluster.spawn(member));
                    if let Err(e) = restarted {
                        errors.push(format!("restarting {}: {e:#}", cluster.name(member)));
                    }
                }
            }
            cluster.note_exits();
        }
        if let Some(member) = removed {
            if let Err(e) = self.add_back(member).await {
                errors.push(format!("adding back: {e:#}"));
            }
        }
        if let Some(member) = behind {
            notes.push(self.corrupt_snapshots_and_restart(member).await);
        }
        let w = &mut self.windows[window];
        w.end_ns = Some(self.recorder.now_ns());
        for note in notes {
            w.detail += &format!("; {note}");
        }
        if !errors.is_empty() {
            w.detail += &format!("; heal errors: {}", errors.join("; "));
        }
    }

    /// The one member a clock, membership or disk fault hits.
    async fn one_target(&mut self) -> (usize, String) {
        let target = *self
            .targets
            .choose(&mut self.rng)
            .expect("targets is not empty");
        let members = self.resolve(target).await;
        let present = self.present();
        let member = members
            .first()
            .copied()
            .unwrap_or_else(|| *present.choose(&mut self.rng).expect("a cluster has members"));
        (member, format!("{target:?}").to_lowercase())
    }

    /// Restarts a member under libfaketime, its clock skewed (half the time strobing
    /// between the skew and the real time); the offset lives in a file the member's
    /// libfaketime re-reads every second, so the strobe needs no restart.
    async fn start_clock(&mut self) -> (Active, FaultWindow) {
        let (member, how) = self.one_target().await;
        let skew_s = {
            let s = self.rng.random_range(1..=CLOCK_SKEW_S_MAX);
            if self.rng.random_bool(0.5) {
                s
            } else {
                -s
            }
        };
        let strobing = self.rng.random_bool(0.5);
        let mut cluster = self.cluster.lock().expect("cluster lock poisoned");
        let name = cluster.name(member).to_owned();
        if !Path::new(FAKETIME_LIB).is_file() {
            drop(cluster);
            let detail =
                format!("{FAKETIME_LIB} missing (apt-get install libfaketime): no clock fault");
            return (
                Active::Nothing,
                self.window(FaultKind::Clock, vec![name], detail),
            );
        }
        let offset_file = cluster.members()[member].dir.join("faketime.rc");
        let offset = format!("{skew_s:+}\n");
        let written = std::fs::write(&offset_file, &offset);
        cluster.set_env(
            member,
            vec![
                ("LD_PRELOAD".into(), FAKETIME_LIB.into()),
                (
                    "FAKETIME_TIMESTAMP_FILE".into(),
                    offset_file.display().to_string(),
                ),
                ("FAKETIME_CACHE_DURATION".into(), "1".into()),
            ],
        );
        let restarted = written
            .map_err(anyhow::Error::from)
            .and_then(|()| cluster.kill(member))
            .and_then(|()| cluster.spawn(member));
        drop(cluster);
        let mut detail = format!(
            "{how}: restarted under libfaketime, clock {skew_s:+} s{}",
            if strobing {
                format!(", strobing to the real time every {CLOCK_STROBE_INTERVAL:?}")
            } else {
                String::new()
            }
        );
        if let Err(e) = restarted {
            detail += &format!("; error: {e:#}");
        }
        if self.db == super::cli::Db::Etcd {
            // Seen in runs: etcd's log keeps the real time under libfaketime.
            detail += "; NO EFFECT on etcd: Go reads the clock through the vDSO, not libc, so libfaketime cannot skew it";
        }
        let strobe = strobing.then(|| {
            tokio::spawn(async move {
                let mut skewed = true;
                loop {
                    tokio::time::sleep(CLOCK_STROBE_INTERVAL).await;
                    skewed = !skewed;
                    let text = if skewed {
                        offset.clone()
                    } else {
                        "+0\n".to_owned()
                    };
                    let _ = std::fs::write(&offset_file, text);
                }
            })
        });
        (
            Active::Clock { member, strobe },
            self.window(FaultKind::Clock, vec![name], detail),
        )
    }

    fn set_status(&self, window: &FaultWindow) {
        *self.status.lock().expect("status lock poisoned") =
            format!("{} {}", window.kind.name(), window.targets.join(" "));
    }

    fn clear_status(&self) {
        self.status.lock().expect("status lock poisoned").clear();
    }
}

/// Removes everything inside `dir`, keeping `dir` itself (a mount point cannot be removed).
fn remove_contents(dir: &std::path::Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}
