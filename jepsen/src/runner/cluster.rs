//! The cluster under test: member processes of `skiff store` or of a real etcd, their peer
//! traffic through the [`Network`] the nemesis cuts (loopback ports behind
//! [`PeerProxies`], or a network namespace each with `--net netns`), their data and logs
//! under the results directory; and [`Admin`], the runner's own clients for status, leader
//! lookup and admin faults.
//!
//! Members live in *slots*: `--nodes` of them start the cluster; with the grow-shrink fault
//! there are 5, the spare ones joining (and members leaving) as the nemesis says. A slot
//! keeps its name, addresses and data dir across leaving and joining again.
//!
//! Every process is ours: it is signalled only by its own PID, runs in its own process
//! group (so a Ctrl-C in the terminal reaches the runner, which then heals and stops the
//! members in order), and is killed when the [`Cluster`] drops; the network namespaces
//! go after them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use etcd_client::{Client, ConnectOptions};

use super::cli::{Db, NetMode, RunConfig};
use super::network::{Cut, Network};
use super::proxy::{PeerProxies, ProxyCounts};
use crate::process::{self, free_ports, loopback_url, MemberFlags, MemberProcess};

/// From spawning the members to every one of them naming the same leader.
pub const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// A member that ignores SIGTERM this long gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Poll interval of the waits here.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Poll interval while a member exits after SIGTERM (usually milliseconds).
const STOP_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Bound on one admin request (status, move-leader, compact).
pub const ADMIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on establishing a client connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Ports of every member in `--net netns` (each has its own address).
const NETNS_CLIENT_PORT: u16 = 2379;
const NETNS_PEER_PORT: u16 = 2380;

/// One member process and the flags to start it again.
pub struct Member {
    pub name: String,
    client_url: String,
    /// `--listen-peer-urls`.
    listen_peer_url: String,
    /// What the others dial (`--initial-advertise-peer-urls`): its proxy, or its address.
    advertise_peer_url: String,
    /// Holds `data/` and `member.log`.
    pub dir: PathBuf,
    args: Vec<String>,
    /// Extra environment of the next start (libfaketime for the clock fault).
    env: Vec<(String, String)>,
    process: MemberProcess,
    /// Set when the runner kills the process, so that its exit is not reported as a crash.
    killed_by_us: bool,
    /// Whether the slot is a member of the cluster now (grow-shrink adds and removes).
    pub in_cluster: bool,
}

impl Member {
    pub fn client_url(&self) -> String {
        self.client_url.clone()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
}

/// The flags every member shares (a joining member gets them too).
struct SharedFlags {
    token: String,
    heartbeat_interval_ms: u64,
    election_timeout_ms: u64,
    /// Flags after the etcd-style ones (`--unsafe-no-read-index`, snapshot counts).
    extra: Vec<String>,
}

pub struct Cluster {
    db: Db,
    binary: PathBuf,
    members: Vec<Member>,
    flags: SharedFlags,
    /// Members that exited without being killed by the runner: name and exit status.
    crashes: Vec<String>,
    /// Dropped after `members` (whose processes are killed on drop): a namespace is
    /// deleted only once nothing runs in it.
    net: Network,
    /// Per member, the lazyfs mount its data dir is (for the power-loss fault). Declared
    /// last: dropped (unmounted) after `members`.
    lazy: Vec<Option<crate::lazyfs::LazyFs>>,
}

/// `--snapshot-count` of every member when the snapshot fault runs: a raft snapshot every
/// few hundred entries, so a member down for a few seconds falls behind the compacted log.
pub const SNAPSHOT_FAULT_SNAPSHOT_COUNT: u64 = 200;
/// skiff's `--experimental-snapshot-catchup-entries` then (etcd 3.4 keeps 5,000 and has no
/// flag for it).
pub const SNAPSHOT_FAULT_CATCHUP_ENTRIES: u64 = 50;

impl Cluster {
    /// Sets up the network, spawns the first `--nodes` members with
    /// `--initial-cluster-state new`; does not wait (see [`Admin::wait_ready`]).
    pub async fn start(config: &RunConfig, dir: &Path) -> anyhow::Result<Cluster> {
        let n = config.nodes;
        let slots = config.slots();
        // (client url, listen peer url, advertised peer url) per slot.
        let (net, urls): (Network, Vec<(String, String, String)>) = match config.net {
            NetMode::Proxy => {
                let ports = free_ports(2 * slots)?;
                let peer_ports: Vec<u16> = (0..slots).map(|i| ports[2 * i + 1]).collect();
                let proxies = PeerProxies::start(&peer_ports)
                    .await
                    .context("binding the peer proxies")?;
                let urls = (0..slots)
                    .map(|i| {
                        (
                            loopback_url(ports[2 * i]),
                            loopback_url(peer_ports[i]),
                            loopback_url(proxies.port(i)),
                        )
                    })
                    .collect();
                (Network::Proxy(proxies), urls)
            }
            NetMode::Netns => {
                let swept = crate::netns::sweep_stale_runs();
                if !swept.is_empty() {
                    eprintln!("removed network namespaces of dead runs: {}", swept.join(", "));
                }
                let lab = crate::netns::NetLab::create(&crate::netns::run_tag(), slots)?;
                let urls = (0..slots)
                    .map(|i| {
                        let ip = lab.member_ip(i);
                        let peer = format!("http://{ip}:{NETNS_PEER_PORT}");
                        (format!("http://{ip}:{NETNS_CLIENT_PORT}"), peer.clone(), peer)
                    })
                    .collect();
                (Network::Netns(lab), urls)
            }
        };
        let mut members = Vec::with_capacity(slots);
        for (i, (client_url, listen_peer_url, advertise_peer_url)) in urls.into_iter().enumerate() {
            let name = format!("m{}", i + 1);
            let member_dir = dir.join(&name);
            std::fs::create_dir_all(&member_dir)
                .with_context(|| format!("creating {}", member_dir.display()))?;
            members.push(Member {
                name,
                client_url,
                listen_peer_url,
                advertise_peer_url,
                dir: member_dir,
                args: Vec::new(),
                env: Vec::new(),
                process: MemberProcess::default(),
                killed_by_us: false,
                in_cluster: i < n,
            });
        }
        let initial_cluster = members[..n]
            .iter()
            .map(|m| format!("{}={}", m.name, m.advertise_peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let mut extra = Vec::new();
        if config.unsafe_no_read_index {
            extra.push("--unsafe-no-read-index=true".to_owned());
        }
        if config.nemesis.contains(&super::cli::FaultKind::Snapshot) {
            extra.push(format!("--snapshot-count={SNAPSHOT_FAULT_SNAPSHOT_COUNT}"));
            if config.db == Db::Skiff {
                extra.push(format!(
                    "--experimental-snapshot-catchup-entries={SNAPSHOT_FAULT_CATCHUP_ENTRIES}"
                ));
            }
        }
        let flags = SharedFlags {
            token: format!("skiff-jepsen-{}", config.seed),
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            election_timeout_ms: config.election_timeout_ms,
            extra,
        };
        let mut lazy = Vec::with_capacity(slots);
        for member in &members {
            if config.nemesis.contains(&super::cli::FaultKind::PowerLoss) {
                let backing = member.dir.join("data.backing");
                let data = member.data_dir();
                std::fs::create_dir_all(&backing)?;
                std::fs::create_dir_all(&data)?;
                let fs = crate::lazyfs::LazyFs::mount(&backing, &data).with_context(|| {
                    format!(
                        "mounting lazyfs for {} (the power-loss fault needs root and /dev/fuse)",
                        member.name
                    )
                })?;
                lazy.push(Some(fs));
            } else {
                lazy.push(None);
            }
        }
        let mut cluster = Cluster {
            db: config.db,
            binary: config.binary.clone(),
            members,
            flags,
            crashes: Vec::new(),
            net,
            lazy,
        };
        for i in 0..n {
            cluster.members[i].args = cluster.member_args(i, &initial_cluster, false);
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    /// Member `i`'s command line with this `--initial-cluster`, state `new` or (joining a
    /// running cluster) `existing`.
    fn member_args(&self, i: usize, initial_cluster: &str, existing: bool) -> Vec<String> {
        let member = &self.members[i];
        let mut args = MemberFlags {
            name: &member.name,
            data_dir: &member.data_dir(),
            client_url: &member.client_url,
            listen_peer_url: &member.listen_peer_url,
            advertise_peer_url: &member.advertise_peer_url,
            initial_cluster,
            token: &self.flags.token,
            heartbeat_interval_ms: self.flags.heartbeat_interval_ms,
            election_timeout_ms: self.flags.election_timeout_ms,
        }
        .to_args();
        if existing {
            process::set_existing(&mut args);
        }
        args.extend(self.flags.extra.iter().cloned());
        args
    }

    /// From now on member `i` starts as a new member joining the running cluster whose
    /// members (after `member add`) are `initial_cluster` (`name=peer-url,...`, itself
    /// included), with `--initial-cluster-state existing`.
    pub fn set_joining(&mut self, i: usize, initial_cluster: &str) {
        self.members[i].args = self.member_args(i, initial_cluster, true);
    }

    /// Slots that are members of the cluster now, in order.
    pub fn present(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].in_cluster)
            .collect()
    }

    /// Applies a network fault (see [`Network::apply`]).
    pub fn cut(&mut self, cut: &Cut) -> anyhow::Result<String> {
        self.net.heal()?;
        self.net.apply(cut)
    }

    pub fn heal_network(&mut self) -> anyhow::Result<()> {
        self.net.heal()
    }

    pub fn proxy_counts(&self) -> ProxyCounts {
        self.net.proxy_counts()
    }

    /// Flips a bit of the next snapshot streamed to member `i` (or stops waiting for one);
    /// false if this network cannot (netns: nftables does not rewrite payloads).
    pub fn arm_snapshot_corruption(&self, i: usize, armed: bool) -> bool {
        match &self.net {
            Network::Proxy(proxies) => {
                proxies.arm_snapshot_corruption(i, armed);
                true
            }
            Network::Netns(_) => false,
        }
    }

    /// Whether the armed snapshot corruption for member `i` has not hit a stream yet.
    pub fn snapshot_corruption_pending(&self, i: usize) -> bool {
        match &self.net {
            Network::Proxy(proxies) => proxies.snapshot_corruption_pending(i),
            Network::Netns(_) => false,
        }
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Forgets the un-fsynced writes of member `i`'s data dir (it must not be running).
    /// Returns how many files lost data.
    pub fn lose_unsynced(&mut self, i: usize) -> anyhow::Result<usize> {
        anyhow::ensure!(!self.is_running(i), "{} is running", self.members[i].name);
        match &self.lazy[i] {
            Some(fs) => fs.lose_unsynced(),
            None => anyhow::bail!("{}'s data dir is not a lazyfs mount", self.members[i].name),
        }
    }

    pub fn name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    /// Starts member `i` with the flags it was created with (after a kill: its data dir
    /// holds a WAL, so etcd and skiff ignore the initial-cluster flags, as on any restart).
    pub fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let member = &mut self.members[i];
        anyhow::ensure!(
            !member.process.is_running(),
            "{} is already running",
            member.name
        );
        anyhow::ensure!(
            !member.args.is_empty(),
            "{} has never been a member: nothing to start",
            member.name
        );
        let netns = self.net.namespace(i);
        let child = process::spawn_member_in(
            netns.as_deref(),
            &self.binary,
            self.db == Db::Skiff,
            &member.args,
            &member.env,
            &member.dir,
            &member.name,
        )?;
        self.net.set_pid(i, Some(child.id()));
        member.process.started(child);
        member.killed_by_us = false;
        Ok(())
    }

    /// The environment of member `i`'s next start.
    pub fn set_env(&mut self, i: usize, env: Vec<(String, String)>) {
        self.members[i].env = env;
    }

    /// The member's peer URL, as the others know it (its proxy, or its own address).
    pub fn peer_url(&self, i: usize) -> String {
        self.members[i].advertise_peer_url.clone()
    }

    pub fn members_mut(&mut self) -> &mut [Member] {
        &mut self.members
    }

    /// The size of member `i`'s log now (see [`Cluster::log_since`]).
    pub fn log_len(&self, i: usize) -> u64 {
        std::fs::metadata(self.members[i].dir.join(process::MEMBER_LOG)).map_or(0, |m| m.len())
    }

    /// What member `i` logged after its log was `offset` bytes long.
    pub fn log_since(&self, i: usize, offset: u64) -> String {
        let bytes = std::fs::read(self.members[i].dir.join(process::MEMBER_LOG)).unwrap_or_default();
        let from = (offset as usize).min(bytes.len());
        strip_ansi(&String::from_utf8_lossy(&bytes[from..]))
    }

    /// The last `lines` lines of member `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(self.members[i].dir.join(process::MEMBER_LOG))
            .unwrap_or_default();
        let text = strip_ansi(&text);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGKILL and reap. A paused member dies too (SIGKILL needs no SIGCONT).
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        self.note_exits();
        let member = &mut self.members[i];
        if !member.process.is_running() {
            return Ok(());
        }
        member.killed_by_us = true;
        member.process.kill()?;
        self.net.set_pid(i, None);
        Ok(())
    }

    pub fn pause(&mut self, i: usize) -> anyhow::Result<()> {
        let member = &mut self.members[i];
        member.process.pause(&member.name)
    }

    pub fn resume(&mut self, i: usize) -> anyhow::Result<()> {
        let member = &mut self.members[i];
        member.process.resume(&member.name)
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        self.note_exits();
        self.members[i].process.is_running()
    }

    /// Reaps members that exited by themselves and remembers them as crashes.
    pub fn note_exits(&mut self) {
        for (i, member) in self.members.iter_mut().enumerate() {
            if let Ok(Some(status)) = member.process.try_exited() {
                self.net.set_pid(i, None);
                if !member.killed_by_us {
                    self.crashes
                        .push(format!("{} exited by itself ({status})", member.name));
                }
            }
        }
    }

    pub fn crashes(&self) -> &[String] {
        &self.crashes
    }

    /// Resumes paused members, then stops them one at a time in `order` (SIGTERM, and
    /// SIGKILL after [`STOP_TIMEOUT`]); returns the names of members that needed SIGKILL.
    ///
    /// One at a time, leader last: etcd's leader hands leadership to a connected peer
    /// when it stops and waits for that peer; stopping everyone at once makes it wait
    /// for a peer that is going away (about 5 s). Followers first leave the leader with
    /// no one to hand over to, and it stops at once.
    pub fn shutdown(&mut self, order: &[usize]) -> Vec<String> {
        self.note_exits();
        for i in 0..self.members.len() {
            let _ = self.resume(i);
        }
        let mut forced = Vec::new();
        for &i in order {
            let member = &mut self.members[i];
            if !member.process.is_running() {
                continue;
            }
            member.killed_by_us = true;
            if member
                .process
                .stop(&member.name, STOP_TIMEOUT, STOP_POLL_INTERVAL)
                == Some(true)
            {
                forced.push(member.name.clone());
            }
            self.net.set_pid(i, None);
        }
        forced
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn colour_codes_are_stripped_from_logs() {
        assert_eq!(
            super::strip_ansi("\u{1b}[2mtime\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m cut"),
            "time  WARN cut"
        );
    }
}

/// The text without terminal colour codes (`ESC [ … m`), which member logs may hold.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// A client to one endpoint, with the runner's connect timeout.
pub async fn connect(url: &str, request_timeout: Option<Duration>) -> anyhow::Result<Client> {
    let mut options = ConnectOptions::new().with_connect_timeout(CONNECT_TIMEOUT);
    if let Some(timeout) = request_timeout {
        options = options.with_timeout(timeout);
    }
    Client::connect([url], Some(options))
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// One member's answer to `Status`.
#[derive(Clone, Copy, Debug)]
pub struct MemberStatus {
    pub member: usize,
    pub id: u64,
    pub leader: u64,
    pub raft_term: u64,
    pub revision: i64,
}

/// The runner's own clients, one per member slot in the cluster (not the workload's).
#[derive(Clone)]
pub struct Admin {
    /// By slot; `None` while the slot is not a member (a client to a member that is not
    /// there would wait out every request's timeout).
    clients: Vec<Option<Client>>,
    /// Raft member IDs, by slot (from each member's own status header, or `member add`).
    pub ids: Vec<u64>,
}

impl Admin {
    /// Clients to `urls` (the members now), with room for `slots` in all.
    pub async fn connect(urls: &[String], slots: usize) -> anyhow::Result<Admin> {
        let mut clients = Vec::new();
        for url in urls {
            clients.push(Some(connect(url, Some(ADMIN_REQUEST_TIMEOUT)).await?));
        }
        clients.resize(slots.max(urls.len()), None);
        Ok(Admin {
            ids: vec![0; clients.len()],
            clients,
        })
    }

    /// Slot `member` joined the cluster as `id`, serving clients at `url`.
    pub async fn joined(&mut self, member: usize, id: u64, url: &str) -> anyhow::Result<()> {
        self.clients[member] = Some(connect(url, Some(ADMIN_REQUEST_TIMEOUT)).await?);
        self.ids[member] = id;
        Ok(())
    }

    /// Slot `member` left the cluster.
    pub fn left(&mut self, member: usize) {
        self.clients[member] = None;
        self.ids[member] = 0;
    }

    /// Every member's status, asked concurrently; members that do not answer within
    /// [`ADMIN_REQUEST_TIMEOUT`] are left out.
    pub async fn statuses(&self) -> Vec<MemberStatus> {
        let mut asks = tokio::task::JoinSet::new();
        for (member, client) in self.clients.iter().enumerate() {
            let Some(mut client) = client.clone() else {
                continue;
            };
            asks.spawn(async move {
                let status = tokio::time::timeout(ADMIN_REQUEST_TIMEOUT, client.status()).await;
                match status {
                    Ok(Ok(s)) => s.header().map(|h| MemberStatus {
                        member,
                        id: h.member_id(),
                        leader: s.leader(),
                        raft_term: s.raft_term(),
                        revision: h.revision(),
                    }),
                    _ => None,
                }
            });
        }
        let mut out = Vec::new();
        while let Some(answer) = asks.join_next().await {
            if let Ok(Some(status)) = answer {
                out.push(status);
            }
        }
        out.sort_by_key(|s| s.member);
        out
    }

    /// The member that the answer with the highest term names as leader.
    pub async fn leader(&self) -> Option<usize> {
        let statuses = self.statuses().await;
        let newest = statuses
            .iter()
            .filter(|s| s.leader != 0)
            .max_by_key(|s| s.raft_term)?;
        self.ids.iter().position(|&id| id == newest.leader)
    }

    /// Polls until every member answers and all name the same leader; learns the IDs.
    pub async fn wait_ready(&mut self, cluster: &std::sync::Mutex<Cluster>) -> anyhow::Result<()> {
        let deadline = Instant::now() + CLUSTER_READY_TIMEOUT;
        let expected = self.clients.iter().filter(|c| c.is_some()).count();
        loop {
            let statuses = self.statuses().await;
            let leaders: Vec<u64> = statuses.iter().map(|s| s.leader).collect();
            if statuses.len() == expected
                && leaders[0] != 0
                && leaders.iter().all(|&l| l == leaders[0])
            {
                for s in &statuses {
                    self.ids[s.member] = s.id;
                }
                return Ok(());
            }
            {
                let mut cluster = cluster.lock().expect("cluster lock poisoned");
                cluster.note_exits();
                if let Some(crash) = cluster.crashes().first() {
                    bail!("{crash} during startup; see its member.log");
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "cluster not ready after {CLUSTER_READY_TIMEOUT:?}: {} of {expected} members answered, leaders {leaders:?}",
                    statuses.len(),
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// A client to slot `member`, which must be in the cluster.
    pub fn client(&self, member: usize) -> Client {
        self.clients[member]
            .clone()
            .expect("an admin client to a member of the cluster")
    }
}
