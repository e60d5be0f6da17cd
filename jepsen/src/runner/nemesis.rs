//! The nemesis: a schedule of faults, one at a time. It waits a random `--nemesis-interval`,
//! starts a fault, waits another interval, heals it, and so on until the run stops (then it
//! heals whatever is active). Admin faults (move-leader, compact) are single requests whose
//! window closes when the request returns. Every fault becomes a [`FaultWindow`]: kind,
//! targets, what happened, start and end on the history's clock, so plots and readers can
//! line faults up with operations.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom as _, SliceRandom as _};
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::cli::{FaultKind, RunConfig, Target};
use super::cluster::{Admin, Cluster, ADMIN_REQUEST_TIMEOUT};
use super::proxy::LinkState;
use super::recorder::Recorder;

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
    Partitioned,
}

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
        }
    }

    /// Runs the schedule until `stop` turns true; returns every fault window, all healed.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Vec<FaultWindow> {
        if self.kinds.is_empty() {
            let _ = stop.wait_for(|s| *s).await;
            return self.windows;
        }
        loop {
            if !self.pause_unless_stopped(&mut stop).await {
                break;
            }
            let kind = *self
                .kinds
                .choose(&mut self.rng)
                .expect("kinds is not empty");
            let (active, window) = self.start(kind).await;
            self.set_status(&window);
            let index = self.windows.len();
            self.windows.push(window);
            if kind.is_instantaneous() {
                self.windows[index].end_ns = Some(self.recorder.now_ns());
                self.clear_status();
                continue;
            }
            let stopped = !self.pause_unless_stopped(&mut stop).await;
            self.heal(active, index);
            self.clear_status();
            if stopped {
                break;
            }
        }
        self.windows
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

    async fn start(&mut self, kind: FaultKind) -> (Active, FaultWindow) {
        match kind {
            FaultKind::Kill | FaultKind::Pause => {
                let target = *self
                    .targets
                    .choose(&mut self.rng)
                    .expect("targets is not empty");
                let members = self.resolve(target).await;
                let mut cluster = self.cluster.lock().expect("cluster lock poisoned");
                let mut hit = Vec::new();
                let mut errors = Vec::new();
                for &m in &members {
                    if !cluster.is_running(m) {
                        continue;
                    }
                    let done = match kind {
                        FaultKind::Kill => cluster.kill(m),
                        _ => cluster.pause(m),
                    };
                    match done {
                        Ok(()) => hit.push(m),
                        Err(e) => errors.push(format!("{}: {e:#}", cluster.name(m))),
                    }
                }
                let names = hit.iter().map(|&m| cluster.name(m).to_owned()).collect();
                let mut detail = format!("{target:?}").to_lowercase();
                if !errors.is_empty() {
                    detail += &format!("; errors: {}", errors.join("; "));
                }
                drop(cluster);
                let window = self.window(kind, names, detail);
                let active = match kind {
                    FaultKind::Kill => Active::Killed(hit),
                    _ => Active::Paused(hit),
                };
                (active, window)
            }
            FaultKind::Partition => {
                let n = self.admin.len();
                let mut shapes = vec![Shape::Halves, Shape::IsolateLeader];
                if n >= 5 {
                    shapes.push(Shape::Ring);
                }
                let shape = *shapes.choose(&mut self.rng).expect("shapes is not empty");
                let (state, groups, detail) = match shape {
                    Shape::Halves => {
                        let mut order: Vec<usize> = (0..n).collect();
                        order.shuffle(&mut self.rng);
                        let minority = order[..(n - 1) / 2].to_vec();
                        let majority = order[(n - 1) / 2..].to_vec();
                        let groups = vec![minority, majority];
                        (LinkState::partitioned(n, &groups), groups, "halves")
                    }
                    Shape::IsolateLeader => {
                        let leader = match self.admin.leader().await {
                            Some(l) => l,
                            None => self.rng.random_range(0..n),
                        };
                        let rest = (0..n).filter(|&m| m != leader).collect();
                        let groups = vec![vec![leader], rest];
                        (LinkState::partitioned(n, &groups), groups, "isolate-leader")
                    }
                    Shape::Ring => {
                        let groups = (0..n).map(|m| vec![m, (m + 1) % n]).collect();
                        (LinkState::ring(n), groups, "majorities-ring")
                    }
                };
                let cluster = self.cluster.lock().expect("cluster lock poisoned");
                cluster.proxies.set_links(state);
                let names = groups
                    .iter()
                    .map(|g| {
                        let mut g = g.clone();
                        g.sort_unstable();
                        g.iter()
                            .map(|&m| cluster.name(m))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect::<Vec<_>>();
                let target = if shape == Shape::Ring {
                    // Pairs that still talk, rather than "groups".
                    vec![format!("ring {}", names.join(", "))]
                } else {
                    vec![names.join(" | ")]
                };
                drop(cluster);
                (
                    Active::Partitioned,
                    self.window(kind, target, detail.to_owned()),
                )
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
                let n = self.admin.len();
                let others: Vec<usize> = (0..n).filter(|&m| m != leader).collect();
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
        }
    }

    /// Members a process fault hits.
    async fn resolve(&mut self, target: Target) -> Vec<usize> {
        let n = self.admin.len();
        match target {
            Target::Leader => match self.admin.leader().await {
                Some(leader) => vec![leader],
                None => vec![self.rng.random_range(0..n)],
            },
            Target::Random => vec![self.rng.random_range(0..n)],
            Target::Minority => {
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(&mut self.rng);
                order.truncate((n - 1) / 2);
                order.sort_unstable();
                order
            }
            Target::All => (0..n).collect(),
        }
    }

    fn heal(&mut self, active: Active, window: usize) {
        let mut cluster = self.cluster.lock().expect("cluster lock poisoned");
        let mut errors = Vec::new();
        match active {
            Active::Nothing => {}
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
            Active::Partitioned => cluster.proxies.heal(),
        }
        cluster.note_exits();
        drop(cluster);
        let w = &mut self.windows[window];
        w.end_ns = Some(self.recorder.now_ns());
        if !errors.is_empty() {
            w.detail += &format!("; heal errors: {}", errors.join("; "));
        }
    }

    fn set_status(&self, window: &FaultWindow) {
        *self.status.lock().expect("status lock poisoned") =
            format!("{} {}", window.kind.name(), window.targets.join(" "));
    }

    fn clear_status(&self) {
        self.status.lock().expect("status lock poisoned").clear();
    }
}
