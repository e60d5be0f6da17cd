//! Multi-process cluster harness: start an n-member cluster of `skiff store` or of the
//! reference etcd on free loopback ports, kill / stop / restart / wipe single members, add
//! members the way an operator does (`etcdctl member add`, then start the process with the
//! flags etcdctl printed), and ask the cluster about itself through `etcdctl` (`member list`,
//! `endpoint status`, `endpoint health`, `endpoint hashkv`) parsed from `-w json`.
//!
//! Every wait is a poll with a deadline, every etcdctl run has both etcdctl's own
//! `--command-timeout` and a hard bound on the process, and every member process is killed
//! by its own PID when the `Cluster` drops, so a failing scenario never hangs or leaks.
//!
//! What etcdctl 3.4 prints, as this harness relies on it:
//! - In `-w json`, member IDs are decimal `u64` numbers (`"ID":6090535317558273548`); in the
//!   simple output and in the arguments of `move-leader`, `member promote` and `member
//!   remove` they are hex (`5485ed9a2f08260c`). A decimal ID is refused as an argument.
//! - A member that was added but has not started yet has no `name` and no `clientURLs` in
//!   `member list -w json` (the simple output calls it "unstarted").
//! - With some endpoints down, `endpoint status` / `endpoint hashkv` still print the JSON of
//!   those that answered, and exit 1.
//! - `endpoint health` (simple output) writes its result lines to stderr.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use serde_json::Value;

use crate::harness::{must_find_binary, run_bounded, Output, Server};

/// Election settings for every cluster: elections in well under a second keep failover
/// scenarios short, and loopback latency is far below the heartbeat.
pub const HEARTBEAT_INTERVAL_MS: u64 = 50;
pub const ELECTION_TIMEOUT_MS: u64 = 500;
/// From spawn to a member answering `endpoint status` with a known leader. Generous: a
/// debug build of skiff on two cores starts several members at once.
const MEMBER_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on waiting for an elected leader that every running voter agrees on.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a stopped member exiting after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// etcdctl's own per-request deadline for ordinary calls (`--command-timeout`).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// etcdctl's `--dial-timeout`.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Slack on top of dial + command timeouts before the harness kills etcdctl itself.
const ETCDCTL_SLACK: Duration = Duration::from_secs(5);
/// Bound on retrying a membership change that etcd refuses as [`UNHEALTHY_CLUSTER`].
const RECONFIGURE_TIMEOUT: Duration = Duration::from_secs(30);
/// etcd's answer to a membership change while some member has not been connected for long.
pub const UNHEALTHY_CLUSTER: &str = "etcdserver: unhealthy cluster";
/// Poll interval of every wait in this file.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Bytes of a member's log quoted in an error.
const LOG_TAIL_BYTES_MAX: usize = 3_000;

/// One member process and everything needed to start it again.
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    /// Raft member ID, once known (from `member list` or `member add`).
    pub id: Option<u64>,
    kind: Server,
    /// Holds `data/` and `member.log`.
    dir: PathBuf,
    /// The flags the process was last started with; `restart` reuses them.
    args: Vec<String>,
    /// Extra environment for the next starts (e.g. `FAILPOINTS`); `restart_with_env` sets it.
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Member {
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The member ID as etcdctl's arguments want it (hex).
    pub fn id_hex(&self) -> String {
        format!("{:x}", self.id.expect("member ID not known yet"))
    }

    /// Whether the process is alive (reaps it if it exited, e.g. after being removed).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            None => false,
            Some(child) => match child.try_wait() {
                Ok(None) => true,
                _ => {
                    self.child = None;
                    false
                }
            },
        }
    }

    /// SIGKILL: no chance to flush or say goodbye to peers.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        let mut child = self
            .child
            .take()
            .with_context(|| format!("{} is not running", self.name))?;
        let _ = child.kill();
        child.wait()?;
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited within [`STOP_TIMEOUT`].
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // std has no SIGTERM; kill(1) by PID signals exactly our child.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                child.wait()?;
                bail!("{} ignored SIGTERM for {STOP_TIMEOUT:?}", self.name);
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Starts the process again with the flags it last ran with (for a bootstrapped
    /// member that includes `--initial-cluster-state new`: etcd ignores the initial-cluster
    /// flags once its data dir holds a WAL, as a systemd unit restarting it relies on) and
    /// waits until it serves.
    /// Extra environment from `restart_with_env` is dropped.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        ensure!(!self.is_running(), "{} is still running", self.name);
        self.env.clear();
        self.spawn()?;
        self.wait_ready()
    }

    /// Starts the process again with `env` added (replacing any earlier extra environment)
    /// and does not wait for it to serve: with a failpoint armed it may crash on the way.
    pub fn restart_with_env(&mut self, env: &[(&str, &str)]) -> anyhow::Result<()> {
        ensure!(!self.is_running(), "{} is still running", self.name);
        self.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.spawn()
    }

    /// Replaces the value of each `(flag, value)` in the flags of the next start.
    pub fn set_flags(&mut self, flags: &[(&str, &str)]) {
        for (flag, value) in flags {
            if let Some(i) = self.args.iter().position(|a| a == flag) {
                self.args[i + 1] = value.to_string();
            }
        }
    }

    /// Waits up to `timeout` for the process to exit by itself; true if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.is_running() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        true
    }

    /// Deletes the data dir of a member that is not running.
    pub fn wipe_data(&mut self) -> anyhow::Result<()> {
        ensure!(
            !self.is_running(),
            "wipe_data: {} is still running",
            self.name
        );
        let data = self.data_dir();
        if data.exists() {
            std::fs::remove_dir_all(&data)
                .with_context(|| format!("removing {}", data.display()))?;
        }
        Ok(())
    }

    /// Everything the member's processes wrote (stdout and stderr, every start).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("member.log")).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let mut text = std::fs::read_to_string(self.dir.join("member.log")).unwrap_or_default();
        if text.len() > LOG_TAIL_BYTES_MAX {
            let mut cut = text.len() - LOG_TAIL_BYTES_MAX;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            text = text.split_off(cut);
        }
        text
    }

    /// `etcdctl --endpoints=<this member> <args>`.
    pub fn etcdctl<S: AsRef<OsStr>>(&self, args: &[S]) -> anyhow::Result<Output> {
        etcdctl(&[self.client_url()], args)
    }

    /// This member's `endpoint status`.
    pub fn status(&self) -> anyhow::Result<EndpointStatus> {
        let out = self.etcdctl(&["endpoint", "status", "-w", "json"])?;
        let mut all = parse_statuses(&out.stdout)
            .with_context(|| format!("endpoint status of {}: {}", self.name, out.stderr.trim()))?;
        ensure!(
            all.len() == 1,
            "endpoint status of {}: {}",
            self.name,
            out.stderr.trim()
        );
        Ok(all.remove(0))
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let binary = match self.kind {
            Server::Skiff => PathBuf::from(env!("CARGO_BIN_EXE_skiff")),
            Server::Etcd => must_find_binary("etcd")?,
        };
        let mut cmd = Command::new(&binary);
        if self.kind == Server::Skiff {
            cmd.arg("store");
        }
        cmd.args(&self.args);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env_remove("FAILPOINTS");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("member.log"))?;
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Polls until the member answers `endpoint status` and knows a leader.
    pub fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + MEMBER_READY_TIMEOUT;
        loop {
            let last;
            if !self.is_running() {
                bail!(
                    "{} exited during startup; log tail:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            match self.etcdctl(&["--command-timeout=1s", "endpoint", "status", "-w", "json"]) {
                Ok(out) => match parse_statuses(&out.stdout) {
                    Ok(s) if s.len() == 1 && s[0].leader != 0 => return Ok(()),
                    Ok(_) => last = format!("no leader yet: {}", out.stderr.trim()),
                    Err(e) => last = format!("{e:#}: {}", out.stderr.trim()),
                },
                Err(e) => last = format!("{e:#}"),
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready after {MEMBER_READY_TIMEOUT:?} ({last}); log tail:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

/// A cluster of member processes under one temp dir; every process is killed on drop.
pub struct Cluster {
    pub kind: Server,
    pub token: String,
    members: Vec<Member>,
    /// Flags every member gets on top of the per-member ones (e.g. `--snapshot-count`).
    extra_args: Vec<String>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Bootstraps an `n`-member cluster (`--initial-cluster-state new`, a unique token) and
    /// waits until every member serves and they agree on a leader.
    pub fn start(kind: Server, n: usize) -> anyhow::Result<Cluster> {
        Cluster::start_with(kind, n, &[])
    }

    /// As [`Cluster::start`], with flags given to every member, added ones included.
    pub fn start_with(kind: Server, n: usize, extra_args: &[&str]) -> anyhow::Result<Cluster> {
        must_find_binary("etcdctl")?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("skiff-cluster-{}-", kind.name()))
            .tempdir()?;
        let token = format!(
            "skiff-it-{}-{}",
            std::process::id(),
            dir.path().file_name().unwrap_or_default().to_string_lossy()
        );
        let mut cluster = Cluster {
            kind,
            token,
            members: Vec::new(),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            dir,
        };
        let ports = free_ports(2 * n)?;
        for i in 0..n {
            let name = format!("m{}", i + 1);
            let member = cluster.new_member(&name, ports[2 * i], ports[2 * i + 1])?;
            cluster.members.push(member);
        }
        let initial_cluster = cluster
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        for i in 0..n {
            let args = cluster.member_args(&cluster.members[i], &initial_cluster, "new");
            cluster.members[i].args = args;
            cluster.members[i].spawn()?;
        }
        for member in &mut cluster.members {
            member.wait_ready()?;
        }
        cluster.refresh_ids()?;
        cluster.wait_leader()?;
        Ok(cluster)
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn member(&mut self, index: usize) -> &mut Member {
        &mut self.members[index]
    }

    /// The index of the member with raft ID `id`.
    pub fn index_of(&self, id: u64) -> anyhow::Result<usize> {
        self.members
            .iter()
            .position(|m| m.id == Some(id))
            .with_context(|| format!("no member with ID {id:x}"))
    }

    /// Client URLs of the members whose process is running.
    pub fn running_endpoints(&mut self) -> Vec<String> {
        self.members
            .iter_mut()
            .filter_map(|m| {
                if m.is_running() {
                    Some(m.client_url())
                } else {
                    None
                }
            })
            .collect()
    }

    /// Indices of the members whose process is running.
    pub fn running(&mut self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].is_running())
            .collect()
    }

    /// `etcdctl --endpoints=<running members> <args>`.
    pub fn etcdctl<S: AsRef<OsStr>>(&mut self, args: &[S]) -> anyhow::Result<Output> {
        let endpoints = self.running_endpoints();
        etcdctl(&endpoints, args)
    }

    /// `member list -w json`, asked of the running members.
    pub fn member_list(&mut self) -> anyhow::Result<Vec<MemberInfo>> {
        let out = self.etcdctl(&["member", "list", "-w", "json"])?;
        ensure!(
            out.code == Some(0),
            "member list failed: {}",
            out.stderr.trim()
        );
        parse_member_list(&out.stdout)
    }

    /// The leader's ID if every running member that answers `endpoint status` names the same
    /// one in the highest term they report; `None` during an election or a disagreement.
    pub fn leader(&mut self) -> anyhow::Result<Option<u64>> {
        let endpoints = self.running_endpoints();
        ensure!(!endpoints.is_empty(), "leader: no member is running");
        let out = etcdctl(
            &endpoints,
            &["--command-timeout=2s", "endpoint", "status", "-w", "json"],
        )?;
        let statuses = parse_statuses(&out.stdout).unwrap_or_default();
        if statuses.len() != endpoints.len() {
            return Ok(None);
        }
        let leader = statuses[0].leader;
        if leader == 0
            || statuses
                .iter()
                .any(|s| s.leader != leader || s.raft_term != statuses[0].raft_term)
        {
            return Ok(None);
        }
        // The leader must be one of the running members, not a dead one others still name.
        if !statuses.iter().any(|s| s.member_id == leader) {
            return Ok(None);
        }
        Ok(Some(leader))
    }

    /// Polls [`Cluster::leader`] until the running members agree on one.
    pub fn wait_leader(&mut self) -> anyhow::Result<u64> {
        let deadline = Instant::now() + LEADER_TIMEOUT;
        loop {
            if let Some(id) = self.leader()? {
                return Ok(id);
            }
            if Instant::now() > deadline {
                bail!(
                    "no agreed leader among running members after {LEADER_TIMEOUT:?}{}",
                    self.log_tails()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Polls until every running voting member passes `endpoint health` (a linearizable
    /// read through raft; learners refuse it by design).
    pub fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + LEADER_TIMEOUT;
        let learners: Vec<u64> = self
            .member_list()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.is_learner)
            .map(|m| m.id)
            .collect();
        let voters: Vec<String> = self
            .members
            .iter_mut()
            .filter(|m| !m.id.is_some_and(|id| learners.contains(&id)))
            .filter_map(|m| {
                if m.is_running() {
                    Some(m.client_url())
                } else {
                    None
                }
            })
            .collect();
        loop {
            let out = etcdctl(
                &voters,
                &["--command-timeout=2s", "endpoint", "health", "-w", "json"],
            )?;
            let healthy = serde_json::from_str::<Value>(&out.stdout)
                .ok()
                .and_then(|v| v.as_array().cloned())
                .is_some_and(|a| {
                    a.len() == voters.len() && a.iter().all(|e| e["health"].as_bool() == Some(true))
                });
            if healthy {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "not healthy after {LEADER_TIMEOUT:?}: {}{}",
                    out.stderr.trim(),
                    self.log_tails()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// `etcdctl member add <name> --peer-urls=<fresh port> [--learner]`, then starts the
    /// new process with the `ETCD_*` settings etcdctl printed, passed as the equivalent
    /// flags, and waits until it serves. Returns the new member's index. If a stopped
    /// member of that name exists it is replaced (same name and ports, new ID; its data
    /// dir must have been wiped).
    pub fn add_member(&mut self, name: &str, learner: bool) -> anyhow::Result<usize> {
        let index = match self.members.iter().position(|m| m.name == name) {
            Some(i) => {
                ensure!(
                    !self.members[i].is_running(),
                    "add_member: {name} is still running"
                );
                i
            }
            None => {
                let ports = free_ports(2)?;
                let member = self.new_member(name, ports[0], ports[1])?;
                self.members.push(member);
                self.members.len() - 1
            }
        };
        let peer_url = self.members[index].peer_url();
        let mut args = vec![
            "member".to_string(),
            "add".into(),
            name.into(),
            format!("--peer-urls={peer_url}"),
        ];
        if learner {
            args.push("--learner".into());
        }
        let endpoints: Vec<String> = self
            .members
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .filter_map(|(_, m)| {
                if m.is_running() {
                    Some(m.client_url())
                } else {
                    None
                }
            })
            .collect();
        let out = must_reconfigure(&endpoints, &args)?;
        let added = parse_member_add(&out.stdout)?;
        ensure!(
            added.env.get("ETCD_NAME").map(String::as_str) == Some(name),
            "member add printed {:?}",
            added.env
        );
        let env = |key: &str| {
            added
                .env
                .get(key)
                .cloned()
                .with_context(|| format!("member add did not print {key}: {}", out.stdout))
        };
        let initial_cluster = env("ETCD_INITIAL_CLUSTER")?;
        let state = env("ETCD_INITIAL_CLUSTER_STATE")?;
        ensure!(
            env("ETCD_INITIAL_ADVERTISE_PEER_URLS")? == peer_url,
            "member add printed {:?}",
            added.env
        );
        let member = &self.members[index];
        let member_args = self.member_args(member, &initial_cluster, &state);
        let member = &mut self.members[index];
        member.args = member_args;
        member.id = Some(added.id);
        member.spawn()?;
        member.wait_ready()?;
        Ok(index)
    }

    /// `etcdctl member remove <id>`; the process is left alone (etcd exits by itself once
    /// it learns it was removed; the caller stops it either way).
    pub fn remove_member(&mut self, index: usize) -> anyhow::Result<()> {
        let id = self.members[index].id_hex();
        let endpoints: Vec<String> = self
            .members
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .filter_map(|(_, m)| {
                if m.is_running() {
                    Some(m.client_url())
                } else {
                    None
                }
            })
            .collect();
        must_reconfigure(&endpoints, &["member".to_string(), "remove".into(), id])?;
        Ok(())
    }

    /// Log tails of every member, for error messages.
    pub fn log_tails(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                format!(
                    "\n--- {} ({}) log tail:\n{}",
                    m.name,
                    m.client_url(),
                    m.log_tail()
                )
            })
            .collect()
    }

    fn new_member(&self, name: &str, client_port: u16, peer_port: u16) -> anyhow::Result<Member> {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir)?;
        Ok(Member {
            name: name.to_string(),
            client_port,
            peer_port,
            id: None,
            kind: self.kind,
            dir,
            args: Vec::new(),
            env: Vec::new(),
            child: None,
        })
    }

    fn member_args(&self, member: &Member, initial_cluster: &str, state: &str) -> Vec<String> {
        let mut args: Vec<String> = [
            ("--name", member.name.clone()),
            ("--data-dir", member.data_dir().display().to_string()),
            ("--listen-client-urls", member.client_url()),
            ("--advertise-client-urls", member.client_url()),
            ("--listen-peer-urls", member.peer_url()),
            ("--initial-advertise-peer-urls", member.peer_url()),
            ("--initial-cluster", initial_cluster.to_string()),
            ("--initial-cluster-state", state.to_string()),
            ("--initial-cluster-token", self.token.clone()),
            ("--heartbeat-interval", HEARTBEAT_INTERVAL_MS.to_string()),
            ("--election-timeout", ELECTION_TIMEOUT_MS.to_string()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_string(), value])
        .collect();
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// Fills in member IDs from `member list` (matched by name).
    fn refresh_ids(&mut self) -> anyhow::Result<()> {
        let list = self.member_list()?;
        for member in &mut self.members {
            if let Some(info) = list.iter().find(|i| i.name == member.name) {
                member.id = Some(info.id);
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                // Exactly the process we spawned, then reaped so no zombie outlives the test.
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// One entry of `member list -w json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: u64,
    /// Empty while the member is "unstarted" (added, never connected).
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl MemberInfo {
    /// etcdctl's own rule for the simple output's "started" column.
    pub fn is_started(&self) -> bool {
        !self.name.is_empty()
    }
}

/// One entry of `endpoint status -w json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointStatus {
    pub endpoint: String,
    pub member_id: u64,
    pub leader: u64,
    pub revision: i64,
    pub raft_term: u64,
    pub raft_index: u64,
    pub raft_applied_index: u64,
    pub is_learner: bool,
}

/// One entry of `endpoint hashkv -w json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashKv {
    pub endpoint: String,
    pub member_id: u64,
    pub revision: i64,
    pub hash: u64,
    pub compact_revision: i64,
}

fn json_u64(v: &Value, what: &str) -> anyhow::Result<u64> {
    v.as_u64()
        .with_context(|| format!("{what}: expected an unsigned number, got {v}"))
}

fn json_i64(v: &Value, what: &str) -> anyhow::Result<i64> {
    v.as_i64()
        .with_context(|| format!("{what}: expected a number, got {v}"))
}

fn json_strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

pub fn parse_member_list(stdout: &str) -> anyhow::Result<Vec<MemberInfo>> {
    let v: Value =
        serde_json::from_str(stdout).with_context(|| format!("member list JSON: {stdout}"))?;
    let members = v["members"]
        .as_array()
        .with_context(|| format!("no members in {stdout}"))?;
    members
        .iter()
        .map(|m| {
            Ok(MemberInfo {
                id: json_u64(&m["ID"], "member ID")?,
                name: m["name"].as_str().unwrap_or_default().to_string(),
                peer_urls: json_strings(&m["peerURLs"]),
                client_urls: json_strings(&m["clientURLs"]),
                is_learner: m["isLearner"].as_bool().unwrap_or(false),
            })
        })
        .collect()
}

pub fn parse_statuses(stdout: &str) -> anyhow::Result<Vec<EndpointStatus>> {
    let v: Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("endpoint status JSON: {stdout:?}"))?;
    let entries = v
        .as_array()
        .with_context(|| format!("endpoint status: not an array: {stdout}"))?;
    entries
        .iter()
        .map(|e| {
            let s = &e["Status"];
            Ok(EndpointStatus {
                endpoint: e["Endpoint"].as_str().unwrap_or_default().to_string(),
                member_id: json_u64(&s["header"]["member_id"], "member_id")?,
                leader: json_u64(&s["leader"], "leader")?,
                revision: json_i64(&s["header"]["revision"], "revision")?,
                raft_term: json_u64(&s["raftTerm"], "raftTerm")?,
                raft_index: json_u64(&s["raftIndex"], "raftIndex")?,
                raft_applied_index: json_u64(&s["raftAppliedIndex"], "raftAppliedIndex")?,
                is_learner: s["isLearner"].as_bool().unwrap_or(false),
            })
        })
        .collect()
}

pub fn parse_hashkv(stdout: &str) -> anyhow::Result<Vec<HashKv>> {
    let v: Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("endpoint hashkv JSON: {stdout:?}"))?;
    let entries = v
        .as_array()
        .with_context(|| format!("endpoint hashkv: not an array: {stdout}"))?;
    entries
        .iter()
        .map(|e| {
            let h = &e["HashKV"];
            Ok(HashKv {
                endpoint: e["Endpoint"].as_str().unwrap_or_default().to_string(),
                member_id: json_u64(&h["header"]["member_id"], "member_id")?,
                revision: json_i64(&h["header"]["revision"], "revision")?,
                hash: json_u64(&h["hash"], "hash")?,
                compact_revision: json_i64(&h["compact_revision"], "compact_revision")?,
            })
        })
        .collect()
}

/// What `member add` printed: the new ID and the `ETCD_*="…"` lines.
pub struct MemberAdded {
    pub id: u64,
    pub env: BTreeMap<String, String>,
}

/// Parses `Member <hex id> added to cluster <hex id>` and the `KEY="value"` lines after it.
pub fn parse_member_add(stdout: &str) -> anyhow::Result<MemberAdded> {
    let mut id = None;
    let mut env = BTreeMap::new();
    for line in stdout.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Member ") {
            let hex = rest.split_whitespace().next().unwrap_or_default();
            id = Some(
                u64::from_str_radix(hex, 16).with_context(|| format!("member ID in {line:?}"))?,
            );
        } else if let Some((key, value)) = line.split_once('=') {
            if key.starts_with("ETCD_") {
                env.insert(key.to_string(), value.trim_matches('"').to_string());
            }
        }
    }
    Ok(MemberAdded {
        id: id.with_context(|| format!("no member ID in: {stdout}"))?,
        env,
    })
}

/// `etcdctl --endpoints=<endpoints> --dial-timeout=2s --command-timeout=5s <args>` (a
/// `--command-timeout` in `args` wins: etcdctl takes the last), killed if it outlives both
/// timeouts by [`ETCDCTL_SLACK`].
pub fn etcdctl<S: AsRef<OsStr>>(endpoints: &[String], args: &[S]) -> anyhow::Result<Output> {
    let command_timeout = args
        .iter()
        .filter_map(|a| {
            a.as_ref()
                .to_str()?
                .strip_prefix("--command-timeout=")
                .map(String::from)
        })
        .last()
        .map(|t| humantime::parse_duration(&t))
        .transpose()
        .context("--command-timeout")?
        .unwrap_or(COMMAND_TIMEOUT);
    let mut cmd = Command::new("etcdctl");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ETCDCTL_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .arg(format!("--dial-timeout={}s", DIAL_TIMEOUT.as_secs()))
        .arg(format!("--command-timeout={}s", COMMAND_TIMEOUT.as_secs()))
        .args(args);
    run_bounded(cmd, None, DIAL_TIMEOUT + command_timeout + ETCDCTL_SLACK)
}

/// As [`etcdctl`], but an error unless etcdctl exits 0; returns stdout.
pub fn must_etcdctl<S: AsRef<OsStr>>(endpoints: &[String], args: &[S]) -> anyhow::Result<String> {
    let out = etcdctl(endpoints, args)?;
    if out.code != Some(0) {
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        bail!(
            "etcdctl {shown:?} at {endpoints:?} exited {:?}: {}",
            out.code,
            last_error_line(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// Runs a membership change (`member add` / `member remove`), retrying while the cluster
/// answers [`UNHEALTHY_CLUSTER`]: etcd's strict reconfiguration check (on by default)
/// refuses changes until every member has been connected for 5 s, i.e. for a few seconds
/// after any member starts. The refusal comes before anything is proposed, so a retry is
/// safe; any other error is returned.
fn must_reconfigure(endpoints: &[String], args: &[String]) -> anyhow::Result<Output> {
    let deadline = Instant::now() + RECONFIGURE_TIMEOUT;
    loop {
        let out = etcdctl(endpoints, args)?;
        if out.code == Some(0) {
            return Ok(out);
        }
        let error = last_error_line(&out.stderr);
        if error != UNHEALTHY_CLUSTER || Instant::now() > deadline {
            bail!("etcdctl {args:?} failed: {error} (stdout {:?})", out.stdout);
        }
        std::thread::sleep(POLL_INTERVAL * 4);
    }
}

/// The message of a gRPC error as etcdctl printed it: etcdctl prints a server's error as
/// its bare message, but wraps some client-side ones (`rpc error: code = Unknown desc =
/// context deadline exceeded` when some endpoints refuse connections).
pub fn grpc_message(error: &str) -> &str {
    match error.strip_prefix("rpc error: code = ") {
        Some(rest) => rest.split_once(" desc = ").map_or(error, |(_, desc)| desc),
        None => error,
    }
}

/// The `Error: …` line etcdctl ends a failure with (without the prefix), else the last line.
pub fn last_error_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("Error: "))
        .or(lines.last().copied())
        .unwrap_or_default()
        .to_string()
}

/// `n` distinct free loopback ports; every listener is held until all are chosen.
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Polls `check` until it returns `Some`, or fails after `timeout` with the last reason.
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> anyhow::Result<Result<T, String>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match check()? {
            Ok(value) => return Ok(value),
            Err(reason) => {
                if Instant::now() > deadline {
                    bail!("{what}: not reached after {timeout:?}: {reason}");
                }
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
