//! Member processes of `skiff store` or of a real etcd on loopback ports: the part that
//! the jepsen runner's cluster and the benches' cluster (`skiff bench compare|failover`)
//! share. Free ports, the etcd-style flags of a new member, spawning with the log in the
//! member's dir, signals, and stopping.
//!
//! Every process is ours: it is signalled only by its own PID and runs in its own process
//! group (so a Ctrl-C in the terminal reaches the harness, which then stops the members in
//! order). What a cluster does around these (proxies, crash bookkeeping, RSS samples)
//! stays with that cluster.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// The file in a member's dir that takes its stdout and stderr (appended across starts).
pub const MEMBER_LOG: &str = "member.log";

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

/// `http://127.0.0.1:<port>`.
pub fn loopback_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// The flags of one member of a new cluster, as etcd and `skiff store` both take them.
pub struct MemberFlags<'a> {
    pub name: &'a str,
    pub data_dir: &'a Path,
    pub client_url: &'a str,
    /// `--listen-peer-urls`.
    pub listen_peer_url: &'a str,
    /// `--initial-advertise-peer-urls` (a proxy in front of the member, or the same URL).
    pub advertise_peer_url: &'a str,
    /// `name=peer-url,...` of every member.
    pub initial_cluster: &'a str,
    pub token: &'a str,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
}

impl MemberFlags<'_> {
    /// The command line, `--initial-cluster-state new` (see [`set_existing`]).
    pub fn to_args(&self) -> Vec<String> {
        [
            ("--name", self.name.to_owned()),
            ("--data-dir", self.data_dir.display().to_string()),
            ("--listen-client-urls", self.client_url.to_owned()),
            ("--advertise-client-urls", self.client_url.to_owned()),
            ("--listen-peer-urls", self.listen_peer_url.to_owned()),
            (
                "--initial-advertise-peer-urls",
                self.advertise_peer_url.to_owned(),
            ),
            ("--initial-cluster", self.initial_cluster.to_owned()),
            ("--initial-cluster-state", "new".to_owned()),
            ("--initial-cluster-token", self.token.to_owned()),
            (
                "--heartbeat-interval",
                self.heartbeat_interval_ms.to_string(),
            ),
            ("--election-timeout", self.election_timeout_ms.to_string()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_owned(), value])
        .collect()
    }
}

/// Changes `--initial-cluster-state new` in `args` to `existing` (a member added back to a
/// running cluster with an empty data dir).
pub fn set_existing(args: &mut [String]) {
    if let Some(at) = args.iter().position(|a| a == "--initial-cluster-state") {
        args[at + 1] = "existing".to_owned();
    }
}

/// Starts one member: `binary [store] args...`, without the caller's `ETCD_*` environment
/// (etcd reads its flags from there too) but with `env`, stdout and stderr appended to
/// [`MEMBER_LOG`] in `dir`, in a process group of its own.
pub fn spawn_member(
    binary: &Path,
    store_subcommand: bool,
    args: &[String],
    env: &[(String, String)],
    dir: &Path,
    name: &str,
) -> anyhow::Result<Child> {
    spawn_member_in(None, binary, store_subcommand, args, env, dir, name)
}

/// [`spawn_member`], inside network namespace `netns` if given: through `ip netns exec`,
/// which enters the namespace and then execs the binary, so the child's PID is the
/// member's own (signals reach it, not a wrapper).
pub fn spawn_member_in(
    netns: Option<&str>,
    binary: &Path,
    store_subcommand: bool,
    args: &[String],
    env: &[(String, String)],
    dir: &Path,
    name: &str,
) -> anyhow::Result<Child> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(binary);
            c
        }
        None => Command::new(binary),
    };
    if store_subcommand {
        cmd.arg("store");
    }
    cmd.args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ETCD_") {
            cmd.env_remove(&key);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let log_path = dir.join(MEMBER_LOG);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    cmd.spawn()
        .with_context(|| format!("spawning {} for {name}", binary.display()))
}

/// One member's process while it runs, and whether we stopped it with SIGSTOP. Dropping
/// it kills and reaps the process.
#[derive(Debug, Default)]
pub struct MemberProcess {
    child: Option<Child>,
    paused: bool,
}

impl MemberProcess {
    /// Takes over a freshly spawned process (see [`spawn_member`]).
    pub fn started(&mut self, child: Child) {
        self.child = Some(child);
        self.paused = false;
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` to the process; fails if it is not running. `name` is for errors.
    pub fn signal(&self, name: &str, signal: Signal) -> anyhow::Result<()> {
        let Some(child) = &self.child else {
            bail!("{name} is not running");
        };
        let pid = Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, signal)
            .with_context(|| format!("sending {signal} to {name} ({pid})"))
    }

    /// SIGSTOP.
    pub fn pause(&mut self, name: &str) -> anyhow::Result<()> {
        self.signal(name, Signal::SIGSTOP)?;
        self.paused = true;
        Ok(())
    }

    /// SIGCONT, if [`MemberProcess::pause`] stopped it.
    pub fn resume(&mut self, name: &str) -> anyhow::Result<()> {
        if self.paused {
            self.signal(name, Signal::SIGCONT)?;
            self.paused = false;
        }
        Ok(())
    }

    /// SIGKILL and reap (a paused process dies too: SIGKILL needs no SIGCONT). Returns
    /// whether it was running.
    pub fn kill(&mut self) -> std::io::Result<bool> {
        let Some(child) = self.child.take() else {
            return Ok(false);
        };
        self.paused = false;
        kill_and_reap(child)?;
        Ok(true)
    }

    /// Reaps the process if it has exited by itself, and returns how it exited.
    pub fn try_exited(&mut self) -> std::io::Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let status = child.try_wait()?;
        if status.is_some() {
            self.child = None;
            self.paused = false;
        }
        Ok(status)
    }

    /// SIGTERM, then [`wait_or_kill`]. Returns whether it needed SIGKILL, or `None` when
    /// it was not running. Resume a paused process first, or it waits out `timeout`.
    pub fn stop(&mut self, name: &str, timeout: Duration, poll: Duration) -> Option<bool> {
        let _ = self.signal(name, Signal::SIGTERM);
        let child = self.child.take()?;
        self.paused = false;
        Some(wait_or_kill(child, timeout, poll))
    }
}

impl Drop for MemberProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// SIGKILL and reap: exactly the process we spawned, so that no zombie outlives us.
pub fn kill_and_reap(mut child: Child) -> std::io::Result<()> {
    let _ = child.kill();
    child.wait().map(drop)
}

/// Waits up to `timeout` (polling every `poll`) for a member that was sent SIGTERM to
/// exit, then SIGKILLs it. Returns whether it needed the SIGKILL.
pub fn wait_or_kill(mut child: Child, timeout: Duration, poll: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
            return false;
        }
        if Instant::now() >= deadline {
            let _ = kill_and_reap(child);
            return true;
        }
        std::thread::sleep(poll);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct() {
        let mut ports = free_ports(8).unwrap();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 8);
    }

    #[test]
    fn a_member_can_be_marked_existing() {
        let dir = Path::new("/d");
        let mut args = MemberFlags {
            name: "m1",
            data_dir: dir,
            client_url: "http://127.0.0.1:1",
            listen_peer_url: "http://127.0.0.1:2",
            advertise_peer_url: "http://127.0.0.1:3",
            initial_cluster: "m1=http://127.0.0.1:3",
            token: "t",
            heartbeat_interval_ms: 50,
            election_timeout_ms: 500,
        }
        .to_args();
        let state = args
            .iter()
            .position(|a| a == "--initial-cluster-state")
            .unwrap();
        assert_eq!(args[state + 1], "new");
        set_existing(&mut args);
        assert_eq!(args[state + 1], "existing");
        assert_eq!(args.len(), 22);
    }
}
