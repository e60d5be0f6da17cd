//! The cluster under test: `n` member processes of `skiff store` or of a real etcd, on free
//! loopback ports, their peer traffic through [`PeerProxies`], their data and logs under
//! the results directory; and [`Admin`], the runner's own clients for status, leader
//! lookup and admin faults.
//!
//! Every process is ours: it is signalled only by its own PID, runs in its own process
//! group (so a Ctrl-C in the terminal reaches the runner, which then heals and stops the
//! members in order), and is killed when the [`Cluster`] drops.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use etcd_client::{Client, ConnectOptions};

use super::cli::{Db, RunConfig};
use super::proxy::PeerProxies;
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

/// One member process and the flags to start it again.
pub struct Member {
    pub name: String,
    pub client_port: u16,
    /// The real peer port (`--listen-peer-urls`).
    pub peer_port: u16,
    /// The proxy in front of it (`--initial-advertise-peer-urls`).
    pub proxy_port: u16,
    /// Holds `data/` and `member.log`.
    pub dir: PathBuf,
    args: Vec<String>,
    /// Extra environment of the next start (libfaketime for the clock fault).
    env: Vec<(String, String)>,
    process: MemberProcess,
    /// Set when the runner kills the process, so that its exit is not reported as a crash.
    killed_by_us: bool,
}

impl Member {
    pub fn client_url(&self) -> String {
        loopback_url(self.client_port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
}

pub struct Cluster {
    db: Db,
    binary: PathBuf,
    members: Vec<Member>,
    pub proxies: PeerProxies,
    /// Members that exited without being killed by the runner: name and exit status.
    crashes: Vec<String>,
    /// Per member, the lazyfs mount its data dir is (for the power-loss fault). Declared
    /// last: dropped (unmounted) after `members`, whose processes are killed on drop.
    lazy: Vec<Option<crate::lazyfs::LazyFs>>,
}

impl Cluster {
    /// Binds the proxies, spawns every member with `--initial-cluster-state new`; does
    /// not wait (see [`Admin::wait_ready`]).
    pub async fn start(config: &RunConfig, dir: &Path) -> anyhow::Result<Cluster> {
        let n = config.nodes;
        let ports = free_ports(2 * n)?;
        let peer_ports: Vec<u16> = (0..n).map(|i| ports[2 * i + 1]).collect();
        let proxies = PeerProxies::start(&peer_ports)
            .await
            .context("binding the peer proxies")?;
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("m{}", i + 1);
            let member_dir = dir.join(&name);
            std::fs::create_dir_all(&member_dir)
                .with_context(|| format!("creating {}", member_dir.display()))?;
            members.push(Member {
                name,
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                proxy_port: proxies.port(i),
                dir: member_dir,
                args: Vec::new(),
                env: Vec::new(),
                process: MemberProcess::default(),
                killed_by_us: false,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, loopback_url(m.proxy_port)))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("skiff-jepsen-{}", config.seed);
        for member in &mut members {
            member.args = MemberFlags {
                name: &member.name,
                data_dir: &member.data_dir(),
                client_url: &member.client_url(),
                listen_peer_url: &loopback_url(member.peer_port),
                advertise_peer_url: &loopback_url(member.proxy_port),
                initial_cluster: &initial_cluster,
                token: &token,
                heartbeat_interval_ms: config.heartbeat_interval_ms,
                election_timeout_ms: config.election_timeout_ms,
            }
            .to_args();
            if config.unsafe_no_read_index {
                member.args.push("--unsafe-no-read-index=true".to_owned());
            }
        }
        let mut lazy = Vec::with_capacity(n);
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
            proxies,
            crashes: Vec::new(),
            lazy,
        };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        Ok(cluster)
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
        let child = process::spawn_member(
            &self.binary,
            self.db == Db::Skiff,
            &member.args,
            &member.env,
            &member.dir,
            &member.name,
        )?;
        self.proxies.set_pid(i, Some(child.id()));
        member.process.started(child);
        member.killed_by_us = false;
        Ok(())
    }

    /// The environment of member `i`'s next start.
    pub fn set_env(&mut self, i: usize, env: Vec<(String, String)>) {
        self.members[i].env = env;
    }

    /// From now on member `i` starts with `--initial-cluster-state existing` (it was
    /// added back to a running cluster with an empty data dir).
    pub fn set_existing(&mut self, i: usize) {
        process::set_existing(&mut self.members[i].args);
    }

    /// The member's peer URL, as the others know it (its proxy).
    pub fn peer_url(&self, i: usize) -> String {
        loopback_url(self.members[i].proxy_port)
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
        self.proxies.set_pid(i, None);
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
                self.proxies.set_pid(i, None);
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
            self.proxies.set_pid(i, None);
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

/// The runner's own clients, one per member (not the workload's).
#[derive(Clone)]
pub struct Admin {
    clients: Vec<Client>,
    /// Raft member IDs, by member index (from each member's own status header).
    pub ids: Vec<u64>,
}

impl Admin {
    pub async fn connect(urls: &[String]) -> anyhow::Result<Admin> {
        let mut clients = Vec::new();
        for url in urls {
            clients.push(connect(url, Some(ADMIN_REQUEST_TIMEOUT)).await?);
        }
        Ok(Admin {
            ids: vec![0; clients.len()],
            clients,
        })
    }

    /// Every member's status, asked concurrently; members that do not answer within
    /// [`ADMIN_REQUEST_TIMEOUT`] are left out.
    pub async fn statuses(&self) -> Vec<MemberStatus> {
        let mut asks = tokio::task::JoinSet::new();
        for (member, client) in self.clients.iter().enumerate() {
            let mut client = client.clone();
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
        loop {
            let statuses = self.statuses().await;
            let leaders: Vec<u64> = statuses.iter().map(|s| s.leader).collect();
            if statuses.len() == self.clients.len()
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
                    "cluster not ready after {CLUSTER_READY_TIMEOUT:?}: {} of {} members answered, leaders {leaders:?}",
                    statuses.len(),
                    self.clients.len()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    pub fn client(&self, member: usize) -> Client {
        self.clients[member].clone()
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }
}
