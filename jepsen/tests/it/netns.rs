//! Kernel network faults on a real etcd 3.4 cluster, every member in its own network
//! namespace: a partition isolating the leader makes it step down (check-quorum) while the
//! majority elects another and keeps taking writes; a one-way drop of the runner's packets
//! cuts clients off a member; after the heal everything catches up. Proves the nftables
//! rules of `NetLab` do cut traffic (and undo it), independently of the jepsen runner.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use skiff_jepsen::netns::{Addr, NetLab};

const ETCD: &str = "/usr/bin/etcd";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const ELECTION_TIMEOUT: Duration = Duration::from_secs(15);

struct Members(Vec<Child>);

impl Drop for Members {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start_etcd(lab: &NetLab, dir: &Path) -> Members {
    let n = lab.members();
    let cluster: Vec<String> = (0..n)
        .map(|i| format!("m{i}=http://{}:2380", lab.member_ip(i)))
        .collect();
    let cluster = cluster.join(",");
    let mut children = Vec::new();
    for i in 0..n {
        let ip = lab.member_ip(i);
        let log = std::fs::File::create(dir.join(format!("m{i}.log"))).unwrap();
        let child = lab
            .command(i, ETCD)
            .args(["--name", &format!("m{i}")])
            .args(["--data-dir", dir.join(format!("m{i}")).to_str().unwrap()])
            .args(["--listen-client-urls", &format!("http://{ip}:2379")])
            .args(["--advertise-client-urls", &format!("http://{ip}:2379")])
            .args(["--listen-peer-urls", &format!("http://{ip}:2380")])
            .args(["--initial-advertise-peer-urls", &format!("http://{ip}:2380")])
            .args(["--initial-cluster", &cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "netns-test"])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn etcd in a namespace");
        children.push(child);
    }
    Members(children)
}

fn etcdctl(endpoint: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint])
        .args(["--dial-timeout", "1s", "--command-timeout", "2s"])
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn endpoint(lab: &NetLab, i: usize) -> String {
    format!("http://{}:2379", lab.member_ip(i))
}

/// The member ID member `i` names as leader, from `endpoint status -w json`.
fn leader_seen_by(lab: &NetLab, i: usize) -> Option<(u64, u64)> {
    let out = etcdctl(&endpoint(lab, i), &["endpoint", "status", "-w", "json"]).ok()?;
    let json: serde_json::Value = serde_json::from_str(&out).ok()?;
    let header = &json[0]["Status"]["header"];
    let leader = json[0]["Status"]["leader"].as_u64()?;
    let member = header["member_id"].as_u64()?;
    (leader != 0).then_some((member, leader))
}

fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not reached in {timeout:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn nftables_partitions_in_namespaces_cut_and_heal_a_real_etcd_cluster() {
    if let Err(why) = skiff_jepsen::netns::available() {
        panic!("network namespaces are needed here (make test installs iproute2 and nftables): {why}");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut lab = NetLab::create("jt0", 3).expect("lab");
    let _members = start_etcd(&lab, dir.path());

    // Everyone agrees on a leader.
    let (leader_idx, leader_id) = poll("a leader all members agree on", READY_TIMEOUT, || {
        let seen: Vec<_> = (0..3).map(|i| leader_seen_by(&lab, i)).collect();
        let first = seen[0]?;
        if !seen.iter().all(|s| s.map(|(_, l)| l) == Some(first.1)) {
            return None;
        }
        let idx = seen.iter().position(|s| s.map(|(m, l)| m == l) == Some(true))?;
        Some((idx, first.1))
    });
    etcdctl(&endpoint(&lab, leader_idx), &["put", "k0", "before"]).expect("put before");

    // Cut the leader from the other two (the runner still reaches everyone).
    let others: Vec<usize> = (0..3).filter(|&i| i != leader_idx).collect();
    lab.partition(&[leader_idx], &others).expect("partition");
    let new_leader = poll("the majority elects another leader", ELECTION_TIMEOUT, || {
        let (_, l) = leader_seen_by(&lab, others[0])?;
        (l != leader_id).then_some(l)
    });
    assert_ne!(new_leader, leader_id);
    etcdctl(&endpoint(&lab, others[0]), &["put", "k1", "during"])
        .expect("the majority side takes writes");
    let isolated = etcdctl(&endpoint(&lab, leader_idx), &["put", "k2", "lost"]);
    assert!(
        isolated.is_err(),
        "the isolated old leader acknowledged a write: {isolated:?}\n{}",
        lab.ruleset(leader_idx).unwrap_or_default()
    );

    // Heal: the old leader catches up and serves a linearizable read of the new write.
    lab.heal().expect("heal");
    let got = poll("the old leader catches up", ELECTION_TIMEOUT, || {
        etcdctl(&endpoint(&lab, leader_idx), &["get", "k1", "--print-value-only"]).ok()
    });
    assert_eq!(got.trim(), "during");

    // One way: member 0 drops the runner's packets; clients reach the others only.
    lab.drop_from(0, Addr::Runner, 100).expect("drop runner");
    assert!(etcdctl(&endpoint(&lab, 0), &["get", "k0"]).is_err(), "member 0 still answered the runner");
    etcdctl(&endpoint(&lab, 1), &["get", "k0"]).expect("member 1 answers");
    lab.heal().expect("heal");
    poll("member 0 answers again", ELECTION_TIMEOUT, || {
        etcdctl(&endpoint(&lab, 0), &["get", "k0", "--print-value-only"]).ok()
    });
    lab.destroy();
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains("skiff-jt0-"),
        "namespaces left behind"
    );
}

#[test]
fn bad_lab_parameters_are_refused() {
    assert!(NetLab::create("UPPER", 3).is_err());
    assert!(NetLab::create("toolongtag", 3).is_err());
    assert!(NetLab::create("jt9", 0).is_err());
    assert!(NetLab::create("jt9", 33).is_err());
}
