//! Real kernel network faults: every member in its own network namespace, joined by a
//! bridge in the runner's namespace, with nftables rules inside each namespace dropping
//! what the nemesis says — partitions (both ways or one way) and random packet loss.
//!
//! The userspace peer proxy ([`crate::runner`]) works everywhere and can delay; this layer
//! needs root, `ip` (iproute2) and `nft` (nftables), and cuts at the kernel: established
//! TCP connections stall exactly as on a real network, client traffic included when a
//! member is isolated. `tc netem` is not available everywhere, so there is no delay here.
//!
//! Layout for a lab with tag `t` and `n` members: bridge `skb-t` with `10.T.0.1/24` in the
//! runner's namespace; member `i` in namespace `skiff-t-i`, reached through a veth pair
//! (`skv-t-i` on the bridge, `eth0` inside) at `10.T.0.(10+i)`, where `T` is derived from
//! the tag. Inside each namespace, table `inet skiff` has an `input` chain the faults fill;
//! the runner's own address is never dropped unless a fault names it.
//!
//! Every object carries the tag, so [`NetLab::sweep`] can remove what a killed run left.

use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context};

/// Members of one lab (addresses `.10` up in a /24; interface names stay under 15 bytes).
pub const LAB_MEMBERS_MAX: usize = 32;
/// Longest tag: `skv-<tag>-<i>` must fit Linux's 15-byte interface names (`i` < 32).
pub const TAG_BYTES_MAX: usize = 8;
/// First letter of the tags of `skiff jepsen run` labs ([`run_tag`]); tests use others.
const RUN_TAG_PREFIX: char = 'j';
/// The third octet range labs choose their /24 from (10.S.0.0/24).
const SUBNET_FIRST: u8 = 200;
const SUBNETS: u8 = 55;

/// A set of network namespaces, one per member, on one bridge. Removed on drop.
pub struct NetLab {
    tag: String,
    subnet: u8,
    members: usize,
    /// Current drop rules, as (to, from, loss percent; 100 = all).
    drops: Vec<(usize, Addr, u8)>,
    up: bool,
}

/// A packet source a rule can name: a member, or the runner (clients, proxies, admin).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addr {
    Member(usize),
    Runner,
}

fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

fn ip(args: &[&str]) -> anyhow::Result<Output> {
    run(Command::new("ip").args(args))
}

/// Whether this machine can host a lab: root, `ip` and `nft` present, namespaces allowed.
pub fn available() -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    // The owner of /proc/self is the effective user.
    if std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) != 0 {
        return Err("network namespaces need root".into());
    }
    for tool in ["ip", "nft"] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Err(format!(
                "`{tool}` is not installed (Debian: iproute2, nftables)"
            ));
        }
    }
    Ok(())
}

impl NetLab {
    /// Creates the bridge and `members` namespaces. `tag`: 1–6 lowercase letters or digits,
    /// unique among labs alive at once (tests use their own).
    pub fn create(tag: &str, members: usize) -> anyhow::Result<NetLab> {
        if tag.is_empty()
            || tag.len() > TAG_BYTES_MAX
            || !tag
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            bail!("lab tag {tag:?} must be 1-{TAG_BYTES_MAX} lowercase letters or digits");
        }
        if members == 0 || members > LAB_MEMBERS_MAX {
            bail!("a lab holds 1-{LAB_MEMBERS_MAX} members, not {members}");
        }
        available().map_err(anyhow::Error::msg)?;
        Self::sweep(tag);
        let subnet = free_subnet(tag)?;
        let mut lab = NetLab {
            tag: tag.to_string(),
            subnet,
            members,
            drops: Vec::new(),
            up: true,
        };
        lab.build().with_context(|| format!("creating network lab {tag}"))?;
        Ok(lab)
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let br = self.bridge();
        ip(&["link", "add", &br, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{}/24", self.runner_ip()), "dev", &br])?;
        ip(&["link", "set", &br, "up"])?;
        for i in 0..self.members {
            let ns = self.namespace(i);
            let host = self.veth(i);
            ip(&["netns", "add", &ns])?;
            ip(&["link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            ip(&["link", "set", &host, "master", &br])?;
            ip(&["link", "set", &host, "up"])?;
            let inside = |args: &[&str]| {
                let mut full = vec!["netns", "exec", &ns, "ip"];
                full.extend_from_slice(args);
                ip(&full)
            };
            inside(&["link", "set", "lo", "up"])?;
            inside(&["addr", "add", &format!("{}/24", self.member_ip(i)), "dev", "eth0"])?;
            inside(&["link", "set", "eth0", "up"])?;
            self.nft(i, "add table inet skiff")?;
            self.nft(
                i,
                "add chain inet skiff input { type filter hook input priority 0; policy accept; }",
            )?;
        }
        Ok(())
    }

    /// Removes whatever a lab with this tag left behind (a run killed before its drop).
    pub fn sweep(tag: &str) {
        let quiet = |args: &[&str]| {
            let _ = Command::new("ip")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        let prefix = format!("skiff-{tag}-");
        if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let name = line.split_whitespace().next().unwrap_or("");
                if name.starts_with(&prefix) {
                    quiet(&["netns", "del", name]);
                }
            }
        }
        quiet(&["link", "del", &format!("skb-{tag}")]);
    }

    pub fn members(&self) -> usize {
        self.members
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    pub fn namespace(&self, i: usize) -> String {
        format!("skiff-{}-{i}", self.tag)
    }

    fn bridge(&self) -> String {
        format!("skb-{}", self.tag)
    }

    fn veth(&self, i: usize) -> String {
        format!("skv-{}-{i}", self.tag)
    }

    /// The runner's address on the bridge (what members see clients and proxies come from).
    pub fn runner_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, 0, 1)
    }

    pub fn member_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, 0, 10 + i as u8)
    }

    fn addr_ip(&self, a: Addr) -> Ipv4Addr {
        match a {
            Addr::Member(i) => self.member_ip(i),
            Addr::Runner => self.runner_ip(),
        }
    }

    /// A command that runs `program` inside member `i`'s namespace (spawn it yourself).
    pub fn command(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.namespace(i), program]);
        c
    }

    fn nft(&self, i: usize, rule: &str) -> anyhow::Result<Output> {
        run(Command::new("ip").args(["netns", "exec", &self.namespace(i), "nft", rule]))
    }

    /// Drops, at member `to`, packets from `from` (one way: `to` still sends). `loss_percent`
    /// 100 drops everything, less drops that share of packets at random.
    pub fn drop_from(&mut self, to: usize, from: Addr, loss_percent: u8) -> anyhow::Result<()> {
        if to >= self.members || matches!(from, Addr::Member(f) if f >= self.members) {
            bail!("no such member in a lab of {}", self.members);
        }
        if loss_percent == 0 || loss_percent > 100 {
            bail!("loss must be 1-100 %, not {loss_percent}");
        }
        let src = self.addr_ip(from);
        let rule = if loss_percent == 100 {
            format!("add rule inet skiff input ip saddr {src} drop")
        } else {
            format!(
                "add rule inet skiff input ip saddr {src} numgen random mod 100 < {loss_percent} drop"
            )
        };
        self.nft(to, &rule)?;
        self.drops.push((to, from, loss_percent));
        Ok(())
    }

    /// Cuts every member of `a` from every member of `b`, both ways.
    pub fn partition(&mut self, a: &[usize], b: &[usize]) -> anyhow::Result<()> {
        for &x in a {
            for &y in b {
                self.drop_from(x, Addr::Member(y), 100)?;
                self.drop_from(y, Addr::Member(x), 100)?;
            }
        }
        Ok(())
    }

    /// Member `i` reachable by nobody and reaching nobody, the runner included.
    pub fn isolate(&mut self, i: usize) -> anyhow::Result<()> {
        let others: Vec<usize> = (0..self.members).filter(|&j| j != i).collect();
        self.partition(&[i], &others)?;
        self.drop_from(i, Addr::Runner, 100)
    }

    /// Every member loses `loss_percent` of the packets from each other member.
    pub fn lossy(&mut self, loss_percent: u8) -> anyhow::Result<()> {
        for to in 0..self.members {
            for from in 0..self.members {
                if to != from {
                    self.drop_from(to, Addr::Member(from), loss_percent)?;
                }
            }
        }
        Ok(())
    }

    /// Removes every drop rule.
    pub fn heal(&mut self) -> anyhow::Result<()> {
        for i in 0..self.members {
            self.nft(i, "flush chain inet skiff input")?;
        }
        self.drops.clear();
        Ok(())
    }

    /// The rules in force, as (to, from, loss percent).
    pub fn drops(&self) -> &[(usize, Addr, u8)] {
        &self.drops
    }

    /// Member `i`'s rules as nft prints them (for a results directory or an error).
    pub fn ruleset(&self, i: usize) -> anyhow::Result<String> {
        let out = self.nft(i, "list table inet skiff")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Deletes the namespaces, veths and bridge (also done on drop).
    pub fn destroy(&mut self) {
        if self.up {
            Self::sweep(&self.tag);
            self.up = false;
        }
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// The tag of this process's `skiff jepsen run` lab: `j` and the PID in hex, so that
/// [`sweep_stale_runs`] can tell a dead run's leftovers from a live run's lab.
pub fn run_tag() -> String {
    format!("{RUN_TAG_PREFIX}{:x}", std::process::id())
}

/// Removes the labs of `skiff jepsen run`s that died without cleaning up (SIGKILL, a
/// crash): namespaces tagged by [`run_tag`] whose PID is gone or is no longer a `skiff`.
/// Returns the tags swept.
pub fn sweep_stale_runs() -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    let mut stale: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let name = line.split_whitespace().next()?;
            let tag = name.strip_prefix("skiff-")?.rsplit_once('-')?.0;
            let pid = u32::from_str_radix(tag.strip_prefix(RUN_TAG_PREFIX)?, 16).ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            (comm.trim() != "skiff").then(|| tag.to_string())
        })
        .collect();
    stale.sort();
    stale.dedup();
    for tag in &stale {
        NetLab::sweep(tag);
    }
    stale
}

/// A 10.S.0.0/24 that no interface of this namespace uses, starting from one derived from
/// the tag (labs of concurrent runs and tests must not share a subnet).
fn free_subnet(tag: &str) -> anyhow::Result<u8> {
    let out = ip(&["-o", "-4", "addr", "show"])?;
    let used = String::from_utf8_lossy(&out.stdout).into_owned();
    let start = (fnv(tag) % SUBNETS as u32) as u8;
    (0..SUBNETS)
        .map(|k| SUBNET_FIRST + (start + k) % SUBNETS)
        .find(|s| !used.contains(&format!(" 10.{s}.0.")))
        .ok_or_else(|| anyhow::anyhow!("every subnet 10.{SUBNET_FIRST}-254.0.0/24 is in use"))
}

fn fnv(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}
