//! The cluster under test: `n` member processes of `skiff store` or of a real etcd, on free
//! loopback ports, their peer traffic through [`PeerProxies`], their data and logs under
//! the results directory; and [`Admin`], the runner's own clients for status, leader
//! lookup and admin faults.
//!
//! Every process is ours: it is signalled only by its own PID, runs in its own process
//! group (so a Ctrl-C in the terminal reaches the runner, which then heals and stops the
//! members in order), and is killed when the [`Cluster`] drops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use etcd_client::{Client, ConnectOptions};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::os::unix::process::CommandExt as _;

use super::cli::{Db, RunConfig};
use super::proxy::PeerProxies;

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
    child: Option<Child>,
    paused: bool,
    /// Set when the runner kills the process, so that its exit is not reported as a crash.
    killed_by_us: bool,
}

impl Member {
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn pid(&self) -> Option<Pid> {
        self.child.as_ref().map(|c| Pid::from_raw(c.id() as i32))
    }
}

pub struct Cluster {
    db: Db,
    binary: PathBuf,
    members: Vec<Member>,
    pub proxies: PeerProxies,
    /// Members that exited without being killed by the runner: name and exit status.
    crashes: Vec<String>,
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
                child: None,
                paused: false,
                killed_by_us: false,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.proxy_port))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("skiff-jepsen-{}", config.seed);
        for member in &mut members {
            member.args = [
                ("--name", member.name.clone()),
                ("--data-dir", member.data_dir().display().to_string()),
                ("--listen-client-urls", member.client_url()),
                ("--advertise-client-urls", member.client_url()),
                (
                    "--listen-peer-urls",
                    format!("http://127.0.0.1:{}", member.peer_port),
                ),
                (
                    "--initial-advertise-peer-urls",
                    format!("http://127.0.0.1:{}", member.proxy_port),
                ),
                ("--initial-cluster", initial_cluster.clone()),
                ("--initial-cluster-state", "new".to_owned()),
                ("--initial-cluster-token", token.clone()),
                (
                    "--heartbeat-interval",
                    config.heartbeat_interval_ms.to_string(),
                ),
                ("--election-timeout", config.election_timeout_ms.to_string()),
            ]
            .into_iter()
            .flat_map(|(flag, value)| [flag.to_owned(), value])
            .collect();
        }
        let mut cluster = Cluster {
            db: config.db,
            binary: config.binary.clone(),
            members,
            proxies,
            crashes: Vec::new(),
        };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    /// Starts member `i` with the flags it was created with (after a kill: its data dir
    /// holds a WAL, so etcd and skiff ignore the initial-cluster flags, as on any restart).
    pub fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let binary = self.binary.clone();
        let db = self.db;
        let member = &mut self.members[i];
        anyhow::ensure!(member.child.is_none(), "{} is already running", member.name);
        let mut cmd = Command::new(&binary);
        if db == Db::Skiff {
            cmd.arg("store");
        }
        cmd.args(&member.args);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(&key);
            }
        }
        let log_path = member.dir.join("member.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {} for {}", binary.display(), member.name))?;
        self.proxies.set_pid(i, Some(child.id()));
        member.child = Some(child);
        member.paused = false;
        member.killed_by_us = false;
        Ok(())
    }

    /// SIGKILL and reap. A paused member dies too (SIGKILL needs no SIGCONT).
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        self.note_exits();
        let member = &mut self.members[i];
        let Some(mut child) = member.child.take() else {
            return Ok(());
        };
        member.killed_by_us = true;
        let _ = child.kill();
        child.wait()?;
        member.paused = false;
        self.proxies.set_pid(i, None);
        Ok(())
    }

    pub fn pause(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal(i, Signal::SIGSTOP)?;
        self.members[i].paused = true;
        Ok(())
    }

    pub fn resume(&mut self, i: usize) -> anyhow::Result<()> {
        if self.members[i].paused {
            self.signal(i, Signal::SIGCONT)?;
            self.members[i].paused = false;
        }
        Ok(())
    }

    fn signal(&mut self, i: usize, signal: Signal) -> anyhow::Result<()> {
        let member = &self.members[i];
        let Some(pid) = member.pid() else {
            bail!("{} is not running", member.name);
        };
        nix::sys::signal::kill(pid, signal)
            .with_context(|| format!("sending {signal} to {} ({pid})", member.name))
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        self.note_exits();
        self.members[i].child.is_some()
    }

    /// Reaps members that exited by themselves and remembers them as crashes.
    pub fn note_exits(&mut self) {
        for (i, member) in self.members.iter_mut().enumerate() {
            let Some(child) = member.child.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                member.child = None;
                member.paused = false;
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
            if self.members[i].child.is_none() {
                continue;
            }
            self.members[i].killed_by_us = true;
            let _ = self.signal(i, Signal::SIGTERM);
            let member = &mut self.members[i];
            let Some(mut child) = member.child.take() else {
                continue;
            };
            let deadline = Instant::now() + STOP_TIMEOUT;
            loop {
                if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
                    break;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    forced.push(member.name.clone());
                    break;
                }
                std::thread::sleep(STOP_POLL_INTERVAL);
            }
            self.proxies.set_pid(i, None);
        }
        forced
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                // Exactly the process we spawned, reaped so that no zombie outlives us.
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// `n` distinct free loopback ports: every listener is held until all are chosen.
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
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
