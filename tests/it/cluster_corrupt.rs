//! Corruption checks (etcd's `--experimental-corrupt-check-time` and
//! `--experimental-initial-corrupt-check`) on three members.
//!
//! A healthy cluster, written to and compacted while the leader checks every second, must
//! never raise an alarm (against etcd too, the reference). Then a real difference: one
//! skiff member is stopped, and a key version is written straight into its RocksDB with the
//! `MvccStore` API (its consistent index unchanged, so raft never learns of it); every
//! revision it applies afterwards is one ahead of its peers'. Started with the initial
//! check it must refuse to run; started without, the leader's check must raise CORRUPT for
//! exactly that member, after which every member refuses writes with etcd's
//! `etcdserver: corrupt cluster` and still serves reads.

use std::time::Duration;

use anyhow::{ensure, Context};

use crate::cluster_harness::{etcdctl, grpc_message, last_error_line, must_etcdctl, poll, Cluster};
use crate::harness::Server;

const CHECK_EVERY_SECOND: &str = "--experimental-corrupt-check-time=1s";
/// Bound on the leader logging `CHECK_PASSES` passes, or raising the alarm.
const CHECK_TIMEOUT: Duration = Duration::from_secs(20);
/// Passes with every peer answering that must end without an alarm.
const CHECK_PASSES: usize = 2;
/// Bound on a member started with the initial check noticing and exiting.
const INITIAL_CHECK_EXIT_TIMEOUT: Duration = Duration::from_secs(30);
const CORRUPT_CLUSTER: &str = "etcdserver: corrupt cluster";
const FINISHED_PASS: &str = "finished peer corruption check";

fn must(result: anyhow::Result<()>) {
    if let Err(e) = result {
        panic!("{e:?}");
    }
}

fn put_keys(endpoints: &[String], prefix: &str, n: usize) -> anyhow::Result<()> {
    for i in 0..n {
        must_etcdctl(
            endpoints,
            &["put", &format!("{prefix}{i}"), &format!("value-{i}")],
        )?;
    }
    Ok(())
}

/// Finished passes that heard from two peers in `log` (skiff's text log, ANSI styling
/// removed, or etcd's zap JSON).
fn full_passes(log: &str) -> usize {
    let plain = regex::Regex::new("\x1b\\[[0-9;]*m")
        .expect("regex")
        .replace_all(log, "");
    plain
        .lines()
        .filter(|l| l.contains(FINISHED_PASS))
        .filter(|l| l.contains("peers_checked=2") || l.contains("\"number-of-peers-checked\":2"))
        .count()
}

fn alarm_list(c: &mut Cluster) -> anyhow::Result<String> {
    Ok(must_etcdctl(&c.running_endpoints(), &["alarm", "list"])?
        .trim()
        .to_string())
}

fn healthy_cluster_raises_no_alarm(kind: Server) -> anyhow::Result<()> {
    let mut c = Cluster::start_with(kind, 3, &[CHECK_EVERY_SECOND, "--logger=zap"])?;
    let endpoints = c.running_endpoints();
    put_keys(&endpoints, "a/", 5)?;
    must_etcdctl(&endpoints, &["compact", "4"])?;
    put_keys(&endpoints, "b/", 5)?;
    let leader_id = c.wait_leader()?;
    let leader = c.index_of(leader_id)?;
    let seen = c.members()[leader].log().len();
    poll(
        "corruption check passes after the writes",
        CHECK_TIMEOUT,
        || {
            let log = c.members()[leader].log();
            let passes = full_passes(log.get(seen..).unwrap_or_default());
            Ok(if passes >= CHECK_PASSES {
                Ok(())
            } else {
                Err(format!("{passes} passes"))
            })
        },
    )
    .with_context(|| c.log_tails())?;
    let alarms = alarm_list(&mut c)?;
    ensure!(
        alarms.is_empty(),
        "alarms on a healthy cluster: {alarms}{}",
        c.log_tails()
    );
    Ok(())
}

#[test]
fn skiff_healthy_cluster_raises_no_corrupt_alarm() {
    must(healthy_cluster_raises_no_alarm(Server::Skiff));
}

#[test]
fn etcd_healthy_cluster_raises_no_corrupt_alarm() {
    must(healthy_cluster_raises_no_alarm(Server::Etcd));
}

/// Writes a key version into a stopped member's store behind raft's back: at the next
/// revision, with the consistent index it already had, flushed to SST files.
fn add_a_version_behind_raft(data_dir: &std::path::Path) -> anyhow::Result<()> {
    use skiff_store::mvcc::{MvccConfig, MvccStore};
    let mvcc = MvccStore::open(&data_dir.join("member").join("kv"), MvccConfig::default())?;
    let index = mvcc.consistent_index();
    let mut w = mvcc.write();
    w.put(b"only-on-this-member", b"x", 0)?;
    w.commit(index)?;
    mvcc.flush()?;
    Ok(())
}

#[test]
fn a_member_with_different_data_is_found_corrupt() {
    let mut c = Cluster::start_with(Server::Skiff, 3, &[CHECK_EVERY_SECOND]).unwrap();
    must(put_keys(&c.running_endpoints(), "before/", 3));
    let leader_id = c.wait_leader().unwrap();
    let leader = c.index_of(leader_id).unwrap();
    let victim = (leader + 1) % 3;
    let victim_id = c.members()[victim].id.expect("member ID");
    c.member(victim).stop().unwrap();
    must(put_keys(&c.running_endpoints(), "while-down/", 3));
    must(add_a_version_behind_raft(&c.members()[victim].data_dir()));

    c.member(victim)
        .restart_with_env(&[("ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", "true")])
        .unwrap();
    assert!(
        c.member(victim).wait_exit(INITIAL_CHECK_EXIT_TIMEOUT),
        "the initial check let a member with different data start:\n{}",
        c.members()[victim].log_tail()
    );
    let log = c.members()[victim].log();
    assert!(
        log.contains("found data inconsistency with peers"),
        "{}",
        c.members()[victim].log_tail()
    );

    c.member(victim).restart().unwrap();
    let alarms = poll("the CORRUPT alarm", CHECK_TIMEOUT, || {
        let alarms = alarm_list(&mut c)?;
        Ok(if alarms.contains("alarm:CORRUPT") {
            Ok(alarms)
        } else {
            Err(format!("alarms: {alarms:?}"))
        })
    })
    .unwrap_or_else(|e| panic!("{e:?}{}", c.log_tails()));
    assert_eq!(
        alarms,
        format!("memberID:{victim_id} alarm:CORRUPT"),
        "only the changed member is corrupt"
    );
    let leader_log = c.members()[leader].log();
    assert!(
        leader_log.contains("found hash mismatch"),
        "{}",
        c.members()[leader].log_tail()
    );

    for m in c.members() {
        let url = vec![m.client_url()];
        let out = etcdctl(&url, &["put", "after-alarm", "x"]).unwrap();
        let error = last_error_line(&out.stderr);
        assert!(
            out.code != Some(0) && grpc_message(&error) == CORRUPT_CLUSTER,
            "put via {} under CORRUPT: exit {:?}, {error:?}",
            m.name,
            out.code
        );
        let read = must_etcdctl(&url, &["get", "before/0", "--print-value-only"]).unwrap();
        assert_eq!(
            read.trim(),
            "value-0",
            "reads are still served by {}",
            m.name
        );
    }
}
