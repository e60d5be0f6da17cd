//! Member processes of `skiff store` or of a real etcd on free loopback ports, for
//! `compare` and `failover`: start, kill -9, SIGSTOP/SIGCONT, restart, status; peak RSS
//! (`VmHWM` of `/proc/<pid>/status`) and the bytes of the data dirs.
//!
//! With [`NetMode::Netns`] (`failover --net netns`) each member runs instead in a network
//! namespace of its own, from [`skiff_jepsen::netns::NetLab`] (one lab per cluster, gone
//! when the cluster stops or drops): it listens on its namespace's address, the bench
//! reaches it from the root namespace over the lab's bridge, and [`Cluster::isolate`] cuts
//! it off with nftables drop rules. Restarts re-enter the namespace.
//!
//! Why not jepsen's runner `Cluster`: it puts every peer link behind its partition proxy
//! (which benchmarks must not pay for). The process handling itself (ports, flags, spawn,
//! signals, stop) is [`skiff_jepsen::process`], shared with that runner: every process is
//! ours, signalled by its own PID only, in its own process group, and killed when the
//! [`Cluster`] drops.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use etcd_client::{Client, ConnectOptions};
use serde::Serialize;
use skiff_jepsen::netns::{self, NetLab};
use skiff_jepsen::process::{self, MemberFlags, MemberProcess};

pub use skiff_jepsen::process::free_ports;

/// From spawning the members to all of them naming one leader.
pub const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on one status request.
pub const STATUS_TIMEOUT: Duration = Duration::from_millis(500);
/// Bound on one probe of a member's client port.
pub const PORT_PROBE_TIMEOUT: Duration = Duration::from_millis(100);
/// A member that ignores SIGTERM this long gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Poll interval of the waits here.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Bound on the members of one cluster.
pub const MEMBERS_MAX: usize = 9;
/// Ports of every member with [`NetMode::Netns`]: each member has an address of its own,
/// so all can use etcd's standard ports.
const NETNS_CLIENT_PORT: u16 = 2379;
const NETNS_PEER_PORT: u16 = 2380;
/// Bound on waiting for the kernel to remove the interfaces of this process's previous lab
/// (a namespace's veth goes away asynchronously after the namespace is deleted).
const LAB_GONE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the members of a cluster listen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    /// Free ports on 127.0.0.1, all in the bench's own network namespace.
    #[default]
    Loopback,
    /// A network namespace per member on a bridge ([`NetLab`]; root, `ip` and `nft`).
    Netns,
}

impl NetMode {
    pub fn name(self) -> &'static str {
        match self {
            NetMode::Loopback => "loopback",
            NetMode::Netns => "netns",
        }
    }
}

/// Which implementation a cluster runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Db {
    Skiff,
    Etcd,
}

impl Db {
    pub fn name(self) -> &'static str {
        match self {
            Db::Skiff => "skiff",
            Db::Etcd => "etcd",
        }
    }
}

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub db: Db,
    /// `skiff` (run as `skiff store`) or `etcd`.
    pub binary: PathBuf,
    pub members: usize,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    /// Member dirs go under here (`m1/data`, `m1/member.log`, ...).
    pub dir: PathBuf,
    pub net: NetMode,
}

/// The cluster flags `compare` and `failover` share.
#[derive(clap::Args, Clone, Debug)]
pub struct ClusterArgs {
    #[arg(long, default_value_t = 100)]
    pub heartbeat_interval: u64,
    #[arg(long, default_value_t = 1000)]
    pub election_timeout: u64,
    /// The etcd server binary.
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd_binary: PathBuf,
    /// The skiff binary (default: this one).
    #[arg(long)]
    pub skiff_binary: Option<PathBuf>,
    /// Where the members' data dirs go (a fresh temp dir below it, removed afterwards).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    pub data_root: PathBuf,
}

/// What `compare` and `failover` start their clusters from: the two binaries, the
/// timing flags both stores get, a fresh data dir and the runtime the clusters run on.
pub struct ClusterSetup {
    pub etcd_binary: PathBuf,
    pub skiff_binary: PathBuf,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    /// A temp dir below the data root (`<prefix>…`), removed on drop.
    pub data: tempfile::TempDir,
    pub runtime: tokio::runtime::Runtime,
}

impl ClusterSetup {
    /// The data dir is `<prefix>…` below `--data-root`; `--skiff-binary` defaults to this
    /// executable.
    pub fn new(prefix: &str, args: &ClusterArgs) -> anyhow::Result<ClusterSetup> {
        let skiff_binary = match &args.skiff_binary {
            Some(path) => path.clone(),
            None => std::env::current_exe().context("finding the skiff binary")?,
        };
        let data = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&args.data_root)
            .with_context(|| format!("creating a temp dir in {}", args.data_root.display()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        Ok(ClusterSetup {
            etcd_binary: args.etcd_binary.clone(),
            skiff_binary,
            heartbeat_interval_ms: args.heartbeat_interval,
            election_timeout_ms: args.election_timeout,
            data,
            runtime,
        })
    }

    /// `members` of `db`, in `<db>-<members>` of the data dir.
    pub fn spec(&self, db: Db, members: usize) -> ClusterSpec {
        ClusterSpec {
            db,
            binary: match db {
                Db::Etcd => self.etcd_binary.clone(),
                Db::Skiff => self.skiff_binary.clone(),
            },
            members,
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            election_timeout_ms: self.election_timeout_ms,
            dir: self.data.path().join(format!("{}-{members}", db.name())),
            net: NetMode::Loopback,
        }
    }
}

/// One member process and the flags to start it again.
pub struct Member {
    pub name: String,
    /// The address it listens on: 127.0.0.1, or its namespace's address in the lab.
    pub host: Ipv4Addr,
    pub client_port: u16,
    pub peer_port: u16,
    pub dir: PathBuf,
    args: Vec<String>,
    process: MemberProcess,
    /// Largest `VmHWM` read from any of this member's processes, in KiB.
    rss_peak_kib: u64,
}

impl Member {
    pub fn client_url(&self) -> String {
        format!("http://{}:{}", self.host, self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://{}:{}", self.host, self.peer_port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }
}

/// One member's answer to `Status`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemberStatus {
    pub id: u64,
    pub leader: u64,
    pub raft_term: u64,
    pub raft_index: u64,
    pub raft_applied_index: u64,
    pub revision: i64,
}

pub struct Cluster {
    pub spec: ClusterSpec,
    pub members: Vec<Member>,
    /// One client per member for status (created at start; gRPC reconnects by itself).
    clients: Vec<Client>,
    /// Raft member IDs by member index, learned in [`Cluster::wait_ready`].
    pub ids: Vec<u64>,
    /// The members' namespaces with [`NetMode::Netns`]. Declared after `members` (whose
    /// processes are killed on drop): a namespace is deleted once nothing runs in it.
    lab: Option<NetLab>,
}

impl Cluster {
    /// Spawns every member with `--initial-cluster-state new` and waits until they agree
    /// on a leader.
    pub async fn start(spec: ClusterSpec) -> anyhow::Result<Cluster> {
        anyhow::ensure!(
            (1..=MEMBERS_MAX).contains(&spec.members),
            "members must be 1..={MEMBERS_MAX}"
        );
        // (host, client port, peer port) of each member.
        let (lab, addresses): (Option<NetLab>, Vec<(Ipv4Addr, u16, u16)>) = match spec.net {
            NetMode::Loopback => {
                let ports = free_ports(2 * spec.members)?;
                let addresses = (0..spec.members)
                    .map(|i| (Ipv4Addr::LOCALHOST, ports[2 * i], ports[2 * i + 1]))
                    .collect();
                (None, addresses)
            }
            NetMode::Netns => {
                // One lab at a time per bench process, so the process's tag is enough;
                // `netns::sweep_stale_runs` removes it if this process dies uncleanly.
                let tag = netns::run_tag();
                NetLab::sweep(&tag);
                wait_lab_links_gone(&tag).await?;
                let lab = NetLab::create(&tag, spec.members)?;
                let addresses = (0..spec.members)
                    .map(|i| (lab.member_ip(i), NETNS_CLIENT_PORT, NETNS_PEER_PORT))
                    .collect();
                (Some(lab), addresses)
            }
        };
        let mut members = Vec::new();
        for (i, (host, client_port, peer_port)) in addresses.into_iter().enumerate() {
            let name = format!("m{}", i + 1);
            let dir = spec.dir.join(&name);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            members.push(Member {
                name,
                host,
                client_port,
                peer_port,
                dir,
                args: Vec::new(),
                process: MemberProcess::default(),
                rss_peak_kib: 0,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            let peer_url = m.peer_url();
            let mut args = MemberFlags {
                name: &m.name,
                data_dir: &m.data_dir(),
                client_url: &m.client_url(),
                listen_peer_url: &peer_url,
                advertise_peer_url: &peer_url,
                initial_cluster: &initial_cluster,
                token: "skiff-bench",
                heartbeat_interval_ms: spec.heartbeat_interval_ms,
                election_timeout_ms: spec.election_timeout_ms,
            }
            .to_args();
            args.extend(["--logger", "zap", "--log-level", "warn"].map(String::from));
            if spec.db == Db::Etcd {
                // skiff's raft always runs pre-vote (and check-quorum); etcd 3.4 defaults
                // pre-vote off (3.5 turned it on). Same election settings on both: without
                // it a lagging etcd follower's failed campaign can hold off every election
                // until a partition heals.
                args.push("--pre-vote=true".to_string());
            }
            m.args = args;
        }
        let mut clients = Vec::new();
        for m in &members {
            clients.push(status_client(m).await?);
        }
        let mut cluster = Cluster {
            ids: vec![0; spec.members],
            spec,
            members,
            clients,
            lab,
        };
        for i in 0..cluster.members.len() {
            cluster.spawn(i)?;
        }
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    pub fn client_urls(&self) -> Vec<String> {
        self.members.iter().map(Member::client_url).collect()
    }

    /// Starts member `i` with the flags it was created with (after a kill its data dir
    /// holds a WAL, so the initial-cluster flags are ignored, as on any restart).
    pub fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let member = &mut self.members[i];
        anyhow::ensure!(
            !member.process.is_running(),
            "{} is already running",
            member.name
        );
        let namespace = self.lab.as_ref().map(|lab| lab.namespace(i));
        member.process.started(process::spawn_member_in(
            namespace.as_deref(),
            &self.spec.binary,
            self.spec.db == Db::Skiff,
            &member.args,
            &[],
            &member.dir,
            &member.name,
        )?);
        Ok(())
    }

    /// SIGKILL and reap (a paused member dies too).
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        self.sample_rss();
        self.members[i].process.kill()?;
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

    /// The tag of the members' network lab (namespaces `skiff-<tag>-<i>`), if any.
    pub fn lab_tag(&self) -> Option<&str> {
        self.lab.as_ref().map(NetLab::tag)
    }

    /// Cuts member `i` off from every other member and from the bench (clients and status
    /// polls) with nftables drop rules: `NetLab::isolate`. Needs [`NetMode::Netns`].
    pub fn isolate(&mut self, i: usize) -> anyhow::Result<()> {
        let Some(lab) = self.lab.as_mut() else {
            bail!("isolating a member needs its cluster in network namespaces (--net netns)");
        };
        lab.isolate(i)
    }

    /// Removes every drop rule (nothing to do without a lab).
    pub fn heal(&mut self) -> anyhow::Result<()> {
        match self.lab.as_mut() {
            Some(lab) => lab.heal(),
            None => Ok(()),
        }
    }

    /// Replaces member `i`'s status client by a fresh connection. After a heal, the old
    /// one may wait out TCP's retransmission backoff (the cut stalled it mid-stream), which
    /// is the bench's own delay, not the member's.
    pub async fn reconnect_status(&mut self, i: usize) -> anyhow::Result<()> {
        self.clients[i] = status_client(&self.members[i]).await?;
        Ok(())
    }

    /// Whether member `i`'s client port takes a TCP connection now (refused at once while
    /// the member is starting; bounded by [`PORT_PROBE_TIMEOUT`] when packets are dropped).
    pub async fn client_port_open(&self, i: usize) -> bool {
        let member = &self.members[i];
        let address = (member.host, member.client_port);
        matches!(
            tokio::time::timeout(PORT_PROBE_TIMEOUT, tokio::net::TcpStream::connect(address)).await,
            Ok(Ok(_))
        )
    }

    /// Fails if a member exited by itself.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for m in &mut self.members {
            if let Some(status) = m.process.try_exited()? {
                bail!(
                    "{} exited by itself ({status}); see {}",
                    m.name,
                    m.dir.join(process::MEMBER_LOG).display()
                );
            }
        }
        Ok(())
    }

    /// Reads every running member's `VmHWM` and keeps the largest per member.
    pub fn sample_rss(&mut self) {
        for m in &mut self.members {
            if let Some(kib) = m.pid().and_then(vm_hwm_kib) {
                m.rss_peak_kib = m.rss_peak_kib.max(kib);
            }
        }
    }

    /// Peak RSS of each member, in bytes (the last sample; call [`Cluster::sample_rss`]).
    pub fn rss_peak_bytes(&self) -> Vec<u64> {
        self.members.iter().map(|m| m.rss_peak_kib * 1024).collect()
    }

    /// Bytes of each member's data dir.
    pub fn disk_bytes(&self) -> Vec<u64> {
        self.members
            .iter()
            .map(|m| dir_bytes(&m.data_dir()))
            .collect()
    }

    /// Every member's status (`None` for members that did not answer in time).
    pub async fn statuses(&self) -> Vec<Option<MemberStatus>> {
        let all: Vec<usize> = (0..self.members.len()).collect();
        self.statuses_of(&all).await
    }

    /// The status of the given members, asked concurrently (`None`: no answer in time).
    pub async fn statuses_of(&self, members: &[usize]) -> Vec<Option<MemberStatus>> {
        let asks = members.iter().map(|&i| {
            let client = self.clients[i].clone();
            ask_status(client)
        });
        futures_join_all(asks).await
    }

    /// The member that the answer with the highest term names as leader.
    pub async fn leader(&self) -> Option<usize> {
        let all: Vec<usize> = (0..self.members.len()).collect();
        self.leader_among(&all).await
    }

    /// [`Cluster::leader`], asking only `members` (so that a member known not to answer
    /// does not hold the answer up for [`STATUS_TIMEOUT`]).
    pub async fn leader_among(&self, members: &[usize]) -> Option<usize> {
        let statuses = self.statuses_of(members).await;
        let newest = statuses
            .iter()
            .flatten()
            .filter(|s| s.leader != 0)
            .max_by_key(|s| s.raft_term)?;
        self.ids.iter().position(|&id| id == newest.leader)
    }

    /// Polls until every running member answers and all name the same leader.
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + CLUSTER_READY_TIMEOUT;
        loop {
            self.check_alive()?;
            let statuses = self.statuses().await;
            let answered: Vec<MemberStatus> = statuses.iter().flatten().copied().collect();
            let running = self
                .members
                .iter()
                .filter(|m| m.process.is_running())
                .count();
            if answered.len() == running
                && answered[0].leader != 0
                && answered.iter().all(|s| s.leader == answered[0].leader)
            {
                for (i, s) in statuses.iter().enumerate() {
                    if let Some(s) = s {
                        self.ids[i] = s.id;
                    }
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} cluster not ready after {CLUSTER_READY_TIMEOUT:?}",
                    self.spec.db.name()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// SIGTERM every member (followers first), SIGKILL after [`STOP_TIMEOUT`].
    pub fn stop(&mut self) {
        self.sample_rss();
        for i in 0..self.members.len() {
            let _ = self.resume(i);
        }
        for m in self.members.iter_mut().rev() {
            m.process.stop(&m.name, STOP_TIMEOUT, POLL_INTERVAL);
        }
        if let Some(lab) = self.lab.as_mut() {
            lab.destroy();
        }
    }
}

/// Waits until no interface of lab `tag` is left: the previous cluster's lab was swept,
/// but the kernel removes a deleted namespace's veth pair later, and a new lab with the
/// same tag cannot be built while the old names exist.
async fn wait_lab_links_gone(tag: &str) -> anyhow::Result<()> {
    let (veth, bridge) = (format!(": skv-{tag}-"), format!(": skb-{tag}:"));
    let deadline = Instant::now() + LAB_GONE_TIMEOUT;
    loop {
        let out = std::process::Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
            .context("running ip -o link show")?;
        let links = String::from_utf8_lossy(&out.stdout);
        if !links.contains(&veth) && !links.contains(&bridge) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("interfaces of network lab {tag} still there after {LAB_GONE_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A client for `Status` calls to `member`, each bounded by [`STATUS_TIMEOUT`].
async fn status_client(member: &Member) -> anyhow::Result<Client> {
    let options = ConnectOptions::new()
        .with_connect_timeout(STATUS_TIMEOUT)
        .with_timeout(STATUS_TIMEOUT);
    Client::connect([member.client_url()], Some(options))
        .await
        .with_context(|| format!("connecting to {} for status", member.name))
}

async fn ask_status(mut client: Client) -> Option<MemberStatus> {
    let status = tokio::time::timeout(STATUS_TIMEOUT, client.status()).await;
    let Ok(Ok(s)) = status else { return None };
    let header = s.header()?;
    Some(MemberStatus {
        id: header.member_id(),
        leader: s.leader(),
        raft_term: s.raft_term(),
        raft_index: s.raft_index(),
        raft_applied_index: s.raft_applied_index(),
        revision: header.revision(),
    })
}

/// Awaits all futures concurrently, keeping their order (no `futures` dependency).
async fn futures_join_all<F, T>(futures: impl IntoIterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("status task panicked"));
    }
    out
}

/// `VmHWM` (peak resident set) of `pid`, in KiB.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_hwm_kib(&status)
}

fn parse_vm_hwm_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Bytes allocated on disk under `dir` (as `du`: blocks, so sparse preallocated WAL files
/// count what they use), following no symlinks. Missing entries count zero.
pub fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        total += meta.blocks() * 512;
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_is_parsed_from_proc_status() {
        let status = "Name:\tetcd\nVmPeak:\t 100 kB\nVmHWM:\t   52344 kB\nVmRSS:\t 5 kB\n";
        assert_eq!(parse_vm_hwm_kib(status), Some(52_344));
        assert_eq!(parse_vm_hwm_kib("Name:\tx\n"), None);
        assert!(vm_hwm_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn dir_bytes_counts_files_below() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/f"), vec![1u8; 10_000]).unwrap();
        let bytes = dir_bytes(dir.path());
        assert!(bytes >= 10_000, "{bytes}");
        assert_eq!(dir_bytes(&dir.path().join("missing")), 0);
    }
}
