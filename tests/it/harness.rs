//! Process harness: start one single-member store (skiff or the reference etcd) on free
//! loopback ports with a fresh data dir, and run `etcdctl` against it.
//!
//! Every wait here is a poll with a deadline; nothing sleeps a fixed time hoping the
//! server is ready. A started server is killed (by its own PID) when its handle drops.

use std::ffi::OsStr;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long a server may take from spawn to answering `etcdctl get`.
const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on one etcdctl run that is expected to finish by itself.
pub const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(30);
/// Poll interval for readiness and for child exit.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Bytes of a server's log shown when it fails to start.
const LOG_TAIL_BYTES_MAX: usize = 4_000;

/// Which implementation to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// `skiff store`, the binary built from this workspace.
    Skiff,
    /// The reference etcd found on `PATH` (Debian's `etcd-server`).
    Etcd,
}

impl Server {
    pub fn name(self) -> &'static str {
        match self {
            Server::Skiff => "skiff",
            Server::Etcd => "etcd",
        }
    }

    /// Starts a fresh single-member store and waits until it serves reads.
    pub fn start(self) -> anyhow::Result<RunningServer> {
        RunningServer::start(self, &[])
    }

    /// As `start`, with extra flags (e.g. `--quota-backend-bytes`).
    pub fn start_with(self, extra_args: &[&str]) -> anyhow::Result<RunningServer> {
        RunningServer::start(self, extra_args)
    }

    /// As `start`, with the data directory at `data_dir` (e.g. a lazyfs mount) instead of
    /// inside the server's temp dir.
    pub fn start_on(self, extra_args: &[&str], data_dir: PathBuf) -> anyhow::Result<RunningServer> {
        RunningServer::start_on(self, extra_args, Some(data_dir))
    }
}

/// Finds `name` on `PATH`, or explains how to get it.
pub fn must_find_binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "`{name}` not found on PATH; these tests compare skiff against the reference etcd. \
         Run `make test`, which installs Debian's `etcd-server` and `etcd-client` packages."
    )
}

/// Result of one etcdctl run.
#[derive(Debug, Clone)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    /// `None` when the harness killed the process (bounded runs, or a timeout).
    pub code: Option<i32>,
}

/// A server process with its own temp dir; killed on drop.
pub struct RunningServer {
    pub client_port: u16,
    pub peer_port: u16,
    /// Holds the data dir and the server log; scripts may write files under `scratch_dir()`.
    dir: tempfile::TempDir,
    child: Child,
    kind: Server,
    extra_args: Vec<String>,
    data_dir: PathBuf,
}

impl RunningServer {
    fn start(kind: Server, extra_args: &[&str]) -> anyhow::Result<RunningServer> {
        Self::start_on(kind, extra_args, None)
    }

    fn start_on(kind: Server, extra_args: &[&str], data_dir: Option<PathBuf>) -> anyhow::Result<RunningServer> {
        // etcdctl is needed for readiness either way; fail early with the hint.
        must_find_binary("etcdctl")?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("skiff-it-{}-", kind.name()))
            .tempdir()?;
        std::fs::create_dir(dir.path().join("scratch"))?;
        let (client_port, peer_port) = free_port_pair()?;
        let extra_args: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
        let data_dir = data_dir.unwrap_or_else(|| dir.path().join("data"));
        let child = spawn(kind, dir.path(), &data_dir, client_port, peer_port, &extra_args)?;
        let mut server = RunningServer {
            client_port,
            peer_port,
            dir,
            child,
            kind,
            extra_args,
            data_dir,
        };
        server.wait_ready().with_context(|| {
            format!(
                "{} did not become ready; log tail:\n{}",
                kind.name(),
                server.log_tail()
            )
        })?;
        Ok(server)
    }

    /// Kills the server with SIGKILL (no chance to flush anything) and reaps it.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Starts the server again on the same data dir and ports, and waits until it serves.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(
            self.kind,
            self.dir.path(),
            &self.data_dir,
            self.client_port,
            self.peer_port,
            &self.extra_args,
        )?;
        self.wait_ready()
            .with_context(|| format!("restart failed; log tail:\n{}", self.log_tail()))
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }

    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// A directory scripts may write into (e.g. `snapshot save`); it is `$TMP` in scripts.
    pub fn scratch_dir(&self) -> PathBuf {
        self.dir.path().join("scratch")
    }

    pub fn log_tail(&self) -> String {
        let mut text =
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        if text.len() > LOG_TAIL_BYTES_MAX {
            let mut cut = text.len() - LOG_TAIL_BYTES_MAX;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            text = text.split_off(cut);
        }
        text
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + SERVER_READY_TIMEOUT;
        let addr: SocketAddr = ([127, 0, 0, 1], self.client_port).into();
        let mut last_error = String::from("client port never accepted a connection");
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("server exited during startup with {status}");
            }
            if Instant::now() > deadline {
                bail!("not ready after {SERVER_READY_TIMEOUT:?}: {last_error}");
            }
            if TcpStream::connect_timeout(&addr, POLL_INTERVAL * 5).is_ok() {
                // Accepting connections is not serving: a read must go through.
                let out = self.etcdctl_timeout(
                    &[
                        "--dial-timeout=1s",
                        "--command-timeout=2s",
                        "get",
                        "skiff-harness-ready",
                    ],
                    None,
                    Duration::from_secs(5),
                )?;
                if out.code == Some(0) {
                    return Ok(());
                }
                last_error = format!("etcdctl get failed: {}", out.stderr.trim());
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Runs `etcdctl --endpoints=<this server> <args>`, bounded by [`ETCDCTL_TIMEOUT`].
    pub fn etcdctl<S: AsRef<OsStr>>(
        &self,
        args: &[S],
        stdin: Option<&str>,
    ) -> anyhow::Result<Output> {
        self.etcdctl_timeout(args, stdin, ETCDCTL_TIMEOUT)
    }

    /// Like [`Self::etcdctl`], but kills etcdctl after `duration` (for `watch`): the output
    /// up to then is the result and `code` is `None`.
    pub fn etcdctl_for<S: AsRef<OsStr>>(
        &self,
        args: &[S],
        duration: Duration,
    ) -> anyhow::Result<Output> {
        self.etcdctl_timeout(args, None, duration)
    }

    fn etcdctl_timeout<S: AsRef<OsStr>>(
        &self,
        args: &[S],
        stdin: Option<&str>,
        timeout: Duration,
    ) -> anyhow::Result<Output> {
        let mut cmd = Command::new("etcdctl");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCDCTL_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.client_url()))
            .args(args);
        run_bounded(cmd, stdin, timeout)
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        // Kill exactly the process we spawned, then reap it so no zombie outlives the test.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns one server process with its data dir and log under `dir`.
fn spawn(
    kind: Server,
    dir: &std::path::Path,
    data_dir: &std::path::Path,
    client_port: u16,
    peer_port: u16,
    extra_args: &[String],
) -> anyhow::Result<Child> {
    let binary = match kind {
        Server::Skiff => PathBuf::from(env!("CARGO_BIN_EXE_skiff")),
        Server::Etcd => must_find_binary("etcd")?,
    };
    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let mut cmd = Command::new(&binary);
    if kind == Server::Skiff {
        cmd.arg("store");
    }
    cmd.arg("--name")
        .arg("s1")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen-client-urls")
        .arg(&client_url)
        .arg("--advertise-client-urls")
        .arg(&client_url)
        .arg("--listen-peer-urls")
        .arg(&peer_url)
        .arg("--initial-advertise-peer-urls")
        .arg(&peer_url)
        .arg("--initial-cluster")
        .arg(format!("s1={peer_url}"))
        .args(extra_args);
    // Keep the server's configuration to its flags.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ETCD_") {
            cmd.env_remove(&key);
        }
    }
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("server.log"))?;
    cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    cmd.spawn().with_context(|| format!("spawning {}", binary.display()))
}

/// Runs `cmd` with `stdin`, killing it after `timeout`. Readers run on their own threads so
/// a chatty child never blocks on a full pipe.
pub fn run_bounded(
    mut cmd: Command,
    stdin: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<Output> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
    if let Some(input) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("stdin was piped");
        pipe.write_all(input.as_bytes())?;
        // Dropping the pipe closes it: etcdctl reads stdin to EOF.
    }
    let stdout = spawn_reader(child.stdout.take().expect("stdout was piped"));
    let stderr = spawn_reader(child.stderr.take().expect("stderr was piped"));
    let status = wait_with_deadline(&mut child, Instant::now() + timeout)?;
    Ok(Output {
        stdout: stdout.join().expect("stdout reader panicked"),
        stderr: stderr.join().expect("stderr reader panicked"),
        code: status.and_then(|s| s.code()),
    })
}

fn spawn_reader<R: Read + Send + 'static>(mut pipe: R) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for `child` until `deadline`; past it, kills the child and returns `None`.
fn wait_with_deadline(child: &mut Child, deadline: Instant) -> anyhow::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// Two distinct free loopback ports. The OS picks them; both listeners are held until
/// both are chosen so the two cannot collide (another process may still race us).
fn free_port_pair() -> anyhow::Result<(u16, u16)> {
    let a = TcpListener::bind("127.0.0.1:0")?;
    let b = TcpListener::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// Directory holding the differential scripts.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/scripts")
}
