//! Multi-member clusters on loopback: the same scenario runs against real etcd (the
//! reference; those tests must pass) and against `skiff store` (cluster mode). Each scenario
//! is `fn scenario(kind: Server) -> anyhow::Result<()>` with one `#[test]` per kind.
//!
//! Scenarios: replication and cluster introspection (`member list`, `endpoint status /
//! health --cluster`, `move-leader`); a minority killed with SIGKILL and caught up; kill -9
//! of the leader, a follower and a minority under concurrent writes with no acknowledged
//! write lost; a majority down (puts fail within a bound, never hang); a learner added,
//! caught up, promoted, then a member removed; a member removed, wiped and added again.
//!
//! Agreement is checked two ways: every member's serializable (local) read holds every
//! acknowledged write, and `endpoint hashkv --rev=R` gives one hash on every member for a
//! revision R they have all applied.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use etcd_client::{Client, ConnectOptions};
use parking_lot::Mutex;
use serde_json::Value;

use crate::cluster_harness::{
    etcdctl, grpc_message, last_error_line, must_etcdctl, parse_hashkv, parse_statuses, poll,
    Cluster,
};
use crate::harness::Server;

/// Bound on members converging on the same data after a restart or a rejoin.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on writers acknowledging `PROGRESS_ACKS` more writes (after a failover included).
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(30);
/// New acknowledged writes required between two fault injections.
const PROGRESS_ACKS: usize = 20;
/// Concurrent writer threads in the kill -9 under load scenario.
const WRITERS: usize = 4;
/// Bound on one put from a writer; past it the outcome is unknown and the writer moves on.
const WRITER_PUT_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on one put (all retries included) in `put_many`.
const PUT_MANY_TIMEOUT: Duration = Duration::from_secs(20);
/// Concurrent puts in `put_many`.
const PUT_MANY_CONCURRENCY: usize = 8;
/// Keys written before adding the learner: with `--snapshot-count` at
/// `LEARNER_SNAPSHOT_COUNT` it has to catch up through a snapshot (on skiff; etcd keeps
/// 5,000 entries behind its snapshots, so it may send log entries instead).
const LEARNER_KEYS: usize = 1_200;
const LEARNER_SNAPSHOT_COUNT: &str = "100";
/// Bound on a removed member's process exiting by itself.
const REMOVED_EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// etcdctl's deadline for the put that must fail with the majority down.
const NO_QUORUM_COMMAND_TIMEOUT_SECS: u64 = 5;
/// Errors etcd answers a request it cannot commit (client deadline first, or the server's
/// own request timeout, or an election in progress). The test asserts skiff gives one of
/// these too.
const NO_QUORUM_ERRORS: [&str; 6] = [
    "context deadline exceeded",
    "etcdserver: request timed out",
    "etcdserver: request timed out, possibly due to previous leader failure",
    "etcdserver: request timed out, possibly due to connection lost",
    "etcdserver: leader changed",
    "etcdserver: no leader",
];
/// The gRPC message (status `Unavailable`) etcd answers a learner asked for a
/// linearizable read or a write.
const LEARNER_REFUSAL: &str = "etcdserver: rpc not supported for learner";

fn must(result: anyhow::Result<()>) {
    if let Err(e) = result {
        panic!("{e:?}");
    }
}

// ---------------------------------------------------------------------------------------
// 1. Three members: replication, member list, endpoint status / health, move-leader.

fn replication_and_introspection(kind: Server) -> anyhow::Result<()> {
    let mut c = Cluster::start(kind, 3)?;
    let url = |c: &Cluster, i: usize| vec![c.members()[i].client_url()];

    let out = must_etcdctl(&url(&c, 0), &["put", "s1/key", "value-1"])?;
    ensure!(out.trim() == "OK", "put printed {out:?}");
    for i in [1, 2] {
        let out = must_etcdctl(&url(&c, i), &["get", "s1/key", "--consistency=l"])?;
        ensure!(
            out == "s1/key\nvalue-1\n",
            "linearizable get via {} printed {out:?}",
            c.members()[i].name
        );
    }

    let list = c.member_list()?;
    ensure!(list.len() == 3, "member list: {list:?}");
    for m in c.members() {
        let info = list
            .iter()
            .find(|i| Some(i.id) == m.id)
            .with_context(|| format!("{} missing from member list {list:?}", m.name))?;
        ensure!(info.is_started(), "{} not started: {info:?}", m.name);
        ensure!(info.name == m.name, "name of {:x}: {info:?}", info.id);
        ensure!(
            info.peer_urls == [m.peer_url()],
            "peer URLs of {}: {info:?}",
            m.name
        );
        ensure!(
            info.client_urls == [m.client_url()],
            "client URLs of {}: {info:?}",
            m.name
        );
        ensure!(!info.is_learner, "{} is a learner: {info:?}", m.name);
    }
    // The simple output says "started" and names the member too.
    let simple = must_etcdctl(&url(&c, 1), &["member", "list"])?;
    for m in c.members() {
        let line = format!(
            "{}, started, {}, {}, {}, false",
            m.id_hex(),
            m.name,
            m.peer_url(),
            m.client_url()
        );
        ensure!(
            simple.lines().any(|l| l == line),
            "member list lacks {line:?}:\n{simple}"
        );
    }

    let all_urls: BTreeSet<String> = c.members().iter().map(|m| m.client_url()).collect();
    let all_ids: BTreeSet<u64> = c.members().iter().filter_map(|m| m.id).collect();
    let leader = poll(
        "endpoint status --cluster shows one leader",
        Duration::from_secs(10),
        || {
            let out = etcdctl(
                &url(&c, 0),
                &["endpoint", "status", "--cluster", "-w", "json"],
            )?;
            let statuses = parse_statuses(&out.stdout).unwrap_or_default();
            let urls: BTreeSet<String> = statuses.iter().map(|s| s.endpoint.clone()).collect();
            let ids: BTreeSet<u64> = statuses.iter().map(|s| s.member_id).collect();
            let leaders: BTreeSet<u64> = statuses.iter().map(|s| s.leader).collect();
            if out.code != Some(0) || urls != all_urls || ids != all_ids || leaders.len() != 1 {
                return Ok(Err(format!(
                    "{} / {}",
                    out.stdout.trim(),
                    out.stderr.trim()
                )));
            }
            let leader = *leaders.iter().next().expect("one leader");
            Ok(if all_ids.contains(&leader) {
                Ok(leader)
            } else {
                Err(format!("leader {leader:x} not a member"))
            })
        },
    )?;

    let out = must_etcdctl(
        &url(&c, 2),
        &["endpoint", "health", "--cluster", "-w", "json"],
    )?;
    let health: Value =
        serde_json::from_str(&out).with_context(|| format!("endpoint health JSON: {out}"))?;
    let health = health
        .as_array()
        .with_context(|| format!("endpoint health: {out}"))?;
    let healthy: BTreeSet<String> = health
        .iter()
        .filter(|h| h["health"].as_bool() == Some(true))
        .filter_map(|h| h["endpoint"].as_str().map(String::from))
        .collect();
    ensure!(
        healthy == all_urls && health.len() == 3,
        "endpoint health --cluster: {out}"
    );

    // move-leader goes to the leader's endpoint; etcdctl finds it among --endpoints.
    let target = c
        .members()
        .iter()
        .filter_map(|m| m.id)
        .find(|&id| id != leader)
        .expect("a follower");
    let all: Vec<String> = all_urls.iter().cloned().collect();
    let out = must_etcdctl(&all, &["move-leader", &format!("{target:x}")])?;
    let said = format!("Leadership transferred from {leader:x} to {target:x}");
    ensure!(
        out.trim() == said,
        "move-leader printed {out:?}, expected {said:?}"
    );
    poll("leader after move-leader", Duration::from_secs(10), || {
        let now = c.leader()?;
        Ok(if now == Some(target) {
            Ok(())
        } else {
            Err(format!("leader is {now:x?}"))
        })
    })?;

    // And the cluster still takes writes through the new leader and a follower.
    must_etcdctl(
        &url(&c, c.index_of(target)?),
        &["put", "s1/after-move", "value-2"],
    )?;
    let follower = c.index_of(leader)?;
    let out = must_etcdctl(
        &url(&c, follower),
        &["get", "s1/after-move", "--consistency=l"],
    )?;
    ensure!(
        out == "s1/after-move\nvalue-2\n",
        "get after move-leader printed {out:?}"
    );

    // A follower stopped gracefully (SIGTERM) misses a write and reads it after a restart.
    c.member(follower).stop()?;
    must_etcdctl(
        &c.running_endpoints(),
        &["put", "s1/while-stopped", "value-3"],
    )?;
    c.member(follower).restart()?;
    let expected = BTreeMap::from([
        ("s1/after-move".to_string(), "value-2".to_string()),
        ("s1/key".to_string(), "value-1".to_string()),
        ("s1/while-stopped".to_string(), "value-3".to_string()),
    ]);
    must_member_holds(&c, follower, "s1/", &expected, true)?;
    Ok(())
}

#[test]
fn three_members_replicate_and_move_leader_etcd() {
    must(replication_and_introspection(Server::Etcd));
}

#[test]
fn three_members_replicate_and_move_leader_skiff() {
    must(replication_and_introspection(Server::Skiff));
}

// ---------------------------------------------------------------------------------------
// 2. Five members: kill -9 a minority, keep writing, restart, everyone catches up.

fn minority_kill9_catch_up(kind: Server) -> anyhow::Result<()> {
    let mut c = Cluster::start(kind, 5)?;
    let all = c.running_endpoints();
    let mut expected = put_many(&all, "s2/before/", 50)?;

    // The leader and the member after it: the survivors must elect a new leader too.
    let leader = leader_index(&mut c)?;
    let victims = [leader, (leader + 1) % 5];
    for &v in &victims {
        c.member(v).kill9()?;
    }
    c.wait_leader()?;
    let survivors = c.running_endpoints();
    ensure!(survivors.len() == 3, "survivors: {survivors:?}");
    expected.extend(put_many(&survivors, "s2/during/", 50)?);

    for &v in &victims {
        c.member(v).restart()?;
    }
    c.wait_leader()?;
    expected.extend(put_many(&all, "s2/after/", 20)?);

    must_all_members_hold(&mut c, "s2/", &expected, true)?;
    must_hashkv_agree(&mut c)?;
    Ok(())
}

#[test]
fn five_members_minority_kill9_catches_up_etcd() {
    must(minority_kill9_catch_up(Server::Etcd));
}

#[test]
fn five_members_minority_kill9_catches_up_skiff() {
    must(minority_kill9_catch_up(Server::Skiff));
}

// ---------------------------------------------------------------------------------------
// 3. Continuous writes while the leader (3 rounds), a follower, then a minority die.

fn kill9_under_load(kind: Server) -> anyhow::Result<()> {
    let mut c = Cluster::start(kind, 5)?;
    let writers = Writers::start(c.running_endpoints(), "s3/", WRITERS);
    writers.wait_progress("before any fault", &c)?;

    for round in 0..3 {
        let leader = leader_index(&mut c)?;
        c.member(leader).kill9()?;
        writers.wait_progress(&format!("leader kill {round}, leader down"), &c)?;
        c.member(leader).restart()?;
        writers.wait_progress(&format!("leader kill {round}, restarted"), &c)?;
    }

    let leader = leader_index(&mut c)?;
    let follower = (leader + 1) % 5;
    c.member(follower).kill9()?;
    writers.wait_progress("follower down", &c)?;
    c.member(follower).restart()?;
    writers.wait_progress("follower restarted", &c)?;

    // A minority at once: the leader and a follower.
    let leader = leader_index(&mut c)?;
    let minority = [leader, (leader + 2) % 5];
    for &m in &minority {
        c.member(m).kill9()?;
    }
    writers.wait_progress("minority down", &c)?;
    for &m in &minority {
        c.member(m).restart()?;
    }
    writers.wait_progress("minority restarted", &c)?;

    let acked = writers.stop();
    eprintln!("kill -9 under load: {} writes acknowledged", acked.len());
    c.wait_leader()?;
    // Puts that timed out may have committed too: every member holds at least the acked ones.
    must_all_members_hold(&mut c, "s3/", &acked, false)?;
    must_hashkv_agree(&mut c)?;
    Ok(())
}

#[test]
fn kill9_leader_follower_minority_under_load_etcd() {
    must(kill9_under_load(Server::Etcd));
}

#[test]
fn kill9_leader_follower_minority_under_load_skiff() {
    must(kill9_under_load(Server::Skiff));
}

// ---------------------------------------------------------------------------------------
// 4. Majority down: a put fails within a bound (never hangs); after restart nothing is lost.

fn majority_down(kind: Server) -> anyhow::Result<()> {
    let mut c = Cluster::start(kind, 3)?;
    let all = c.running_endpoints();
    let mut expected = put_many(&all, "s4/before/", 20)?;

    // Keep the leader: it must not acknowledge anything without a quorum.
    let leader = leader_index(&mut c)?;
    let down: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    for &i in &down {
        c.member(i).kill9()?;
    }
    let survivor = vec![c.members()[leader].client_url()];
    let timeout_arg = format!("--command-timeout={NO_QUORUM_COMMAND_TIMEOUT_SECS}s");
    // Through the survivor alone, then through all three endpoints (two refuse connections).
    for (what, endpoints, key) in [
        ("survivor", &survivor, "s4/unknown-1"),
        ("all endpoints", &all, "s4/unknown-2"),
    ] {
        let started = Instant::now();
        let out = etcdctl(endpoints, &[timeout_arg.as_str(), "put", key, "x"])?;
        let took = started.elapsed();
        let printed = last_error_line(&out.stderr);
        let error = grpc_message(&printed);
        eprintln!(
            "majority down, put via {what}: exit {:?} after {took:?}: {printed:?}",
            out.code
        );
        ensure!(
            out.code.is_some(),
            "put via {what} hung until the harness killed etcdctl ({took:?})"
        );
        ensure!(
            out.code != Some(0),
            "put via {what} succeeded without a quorum: {}",
            out.stdout
        );
        ensure!(
            took <= Duration::from_secs(NO_QUORUM_COMMAND_TIMEOUT_SECS + 3),
            "put via {what} took {took:?}"
        );
        ensure!(
            NO_QUORUM_ERRORS.contains(&error),
            "put via {what} failed with {printed:?}, not one of etcd's"
        );
    }
    // A linearizable read needs the quorum as well; a serializable one does not.
    let started = Instant::now();
    let out = etcdctl(
        &survivor,
        &[
            "--command-timeout=2s",
            "get",
            "s4/before/00000",
            "--consistency=l",
        ],
    )?;
    let printed = last_error_line(&out.stderr);
    eprintln!(
        "majority down, linearizable get: exit {:?} after {:?}: {printed:?}",
        out.code,
        started.elapsed()
    );
    ensure!(
        out.code.is_some_and(|c| c != 0),
        "linearizable get without a quorum: {out:?}"
    );
    ensure!(
        NO_QUORUM_ERRORS.contains(&grpc_message(&printed)),
        "linearizable get failed with {printed:?}, not one of etcd's"
    );
    let out = must_etcdctl(&survivor, &["get", "s4/before/00000", "--consistency=s"])?;
    ensure!(
        out == format!("s4/before/00000\n{}\n", expected["s4/before/00000"]),
        "serializable get: {out:?}"
    );

    for &i in &down {
        c.member(i).restart()?;
    }
    c.wait_leader()?;
    expected.extend(put_many(&all, "s4/after/", 20)?);
    must_all_members_hold(&mut c, "s4/", &expected, false)?;
    must_hashkv_agree(&mut c)?;
    Ok(())
}

#[test]
fn majority_down_put_fails_in_bounded_time_etcd() {
    must(majority_down(Server::Etcd));
}

#[test]
fn majority_down_put_fails_in_bounded_time_skiff() {
    must(majority_down(Server::Skiff));
}

/// A put that a follower forwarded to a leader which then died is lost. etcd answers it
/// "request timed out, possibly due to previous leader failure" when its request timeout
/// (5 s plus two election timeouts) runs out; skiff gives the same answer as soon as it
/// applies the new leader's first entry, which proves the put can no longer be applied.
#[test]
fn a_put_lost_with_a_killed_leader_is_answered_when_the_new_leader_commits_skiff() {
    must(put_lost_with_leader(Server::Skiff));
}

fn put_lost_with_leader(kind: Server) -> anyhow::Result<()> {
    let mut c = Cluster::start(kind, 3)?;
    let all = c.running_endpoints();
    put_many(&all, "lost/before/", 5)?;
    let leader = leader_index(&mut c)?;
    let follower = (leader + 1) % 3;
    let via_follower = vec![c.members()[follower].client_url()];
    c.member(leader).kill9()?;
    // Sent at once: the follower still takes the dead member for its leader (the election
    // timeout has not run out), so it forwards the put into the void.
    let started = Instant::now();
    let out = etcdctl(&via_follower, &["--command-timeout=30s", "put", "lost/key", "x"])?;
    let took = started.elapsed();
    let printed = last_error_line(&out.stderr);
    eprintln!("put via a follower of a killed leader: exit {:?} after {took:?}: {printed:?}", out.code);
    if out.code == Some(0) {
        // The put reached a leader in time (the old one before it died, or the new one
        // after a very slow etcdctl start): nothing was lost, nothing to check.
        eprintln!("the put was applied; nothing to check");
        return Ok(());
    }
    ensure!(
        grpc_message(&printed) == "etcdserver: request timed out, possibly due to previous leader failure",
        "lost put failed with {printed:?}"
    );
    // Well inside the 6 s request timeout of these clusters (5 s + 2 × 500 ms): answered
    // when the new leader's first entry was applied, not when the wait ran out.
    ensure!(took < Duration::from_secs(5), "the lost put was answered after {took:?}");
    let failed = metric_sum(&via_follower[0], "etcd_server_proposals_failed_total")?;
    ensure!(failed >= 1, "the lost put is not counted in etcd_server_proposals_failed_total");
    // It was really lost: the key is nowhere, and the cluster takes writes again.
    c.wait_leader()?;
    let survivors = c.running_endpoints();
    let got = must_etcdctl(&survivors, &["get", "lost/key", "--print-value-only"])?;
    ensure!(got.is_empty(), "the put reported lost was applied: {got:?}");
    must_etcdctl(&survivors, &["put", "lost/after", "y"])?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 5. A learner: added, catches up, refuses linearizable requests, promoted; then a remove.

fn learner_then_remove(kind: Server) -> anyhow::Result<()> {
    // Skiff keeps only a few entries behind its compaction point here, so the learner's
    // catch-up has to go through a state-machine snapshot (etcd 3.4 keeps 5000 and has no
    // flag for it).
    let flags: &[&str] = match kind {
        Server::Skiff => &["--snapshot-count", LEARNER_SNAPSHOT_COUNT, "--experimental-snapshot-catchup-entries", "10"],
        Server::Etcd => &["--snapshot-count", LEARNER_SNAPSHOT_COUNT],
    };
    let mut c = Cluster::start_with(kind, 3, flags)?;
    let voters = c.running_endpoints();
    let expected = put_many(&voters, "s5/", LEARNER_KEYS)?;

    let learner = c.add_member("m4", true)?;
    let learner_id = c.members()[learner].id.expect("added member has an ID");
    let learner_url = vec![c.members()[learner].client_url()];
    poll("learner listed as started", Duration::from_secs(10), || {
        let list = c.member_list()?;
        Ok(match list.iter().find(|m| m.id == learner_id) {
            Some(m) if m.is_started() && m.is_learner && m.name == "m4" => Ok(()),
            other => Err(format!("{other:?}")),
        })
    })?;
    let status = c.members()[learner].status()?;
    ensure!(
        status.is_learner && status.member_id == learner_id,
        "learner's endpoint status: {status:?}"
    );

    // Caught up: its local (serializable) read has every key written before it joined.
    must_member_holds(&c, learner, "s5/", &expected, true)?;
    if kind == Server::Skiff {
        let received = snapshots_received(&c.members()[learner].client_url())?;
        ensure!(received >= 1, "the learner caught up without a snapshot ({received} received)");
    }

    // Learners serve serializable reads only. A put fails at once with the refusal; etcdctl
    // retries a read refused with `Unavailable` until its deadline, so there the refusal
    // is in its retry log and the last error is the deadline.
    for (args, last_error) in [
        (["put", "s5/by-learner", "x"], LEARNER_REFUSAL),
        (
            ["get", "s5/00000", "--consistency=l"],
            "context deadline exceeded",
        ),
    ] {
        let out = etcdctl(
            &learner_url,
            &[&["--command-timeout=1s"], &args[..]].concat(),
        )?;
        let error = last_error_line(&out.stderr);
        eprintln!("learner asked {args:?}: exit {:?}: {error:?}", out.code);
        ensure!(
            out.code.is_some_and(|c| c != 0),
            "learner accepted {args:?}: {out:?}"
        );
        ensure!(
            error == last_error && out.stderr.contains(&format!("desc = {LEARNER_REFUSAL}")),
            "learner refused {args:?} with {error:?}; stderr: {}",
            out.stderr
        );
    }

    let promoted = poll("member promote", CATCH_UP_TIMEOUT, || {
        let out = etcdctl(&voters, &["member", "promote", &format!("{learner_id:x}")])?;
        Ok(if out.code == Some(0) {
            Ok(out.stdout)
        } else {
            Err(last_error_line(&out.stderr))
        })
    })?;
    ensure!(
        // etcdctl prints IDs with `%16x`: space-padded when the ID has leading zero nibbles.
        promoted.starts_with(&format!("Member {learner_id:16x} promoted in cluster ")),
        "member promote printed {promoted:?}"
    );
    let list = c.member_list()?;
    ensure!(
        list.len() == 4 && list.iter().all(|m| !m.is_learner && m.is_started()),
        "after promote: {list:?}"
    );
    let out = must_etcdctl(&learner_url, &["get", "s5/00000", "--consistency=l"])?;
    ensure!(
        out == format!("s5/00000\n{}\n", expected["s5/00000"]),
        "promoted member's get: {out:?}"
    );

    // Remove a follower among the original voters.
    let leader = c.wait_leader()?;
    let removed = (0..3)
        .find(|&i| c.members()[i].id != Some(leader))
        .expect("a follower");
    let removed_id = c.members()[removed].id.expect("ID");
    c.remove_member(removed)?;
    // A removed member shuts itself down (etcd: "the member has been permanently removed
    // from the cluster", then the process exits).
    poll(
        "removed member exits by itself",
        REMOVED_EXIT_TIMEOUT,
        || {
            Ok(if c.member(removed).is_running() {
                Err("still running".into())
            } else {
                Ok(())
            })
        },
    )?;
    let list = c.member_list()?;
    ensure!(
        list.len() == 3 && list.iter().all(|m| m.id != removed_id),
        "after remove: {list:?}"
    );

    c.wait_leader()?;
    c.wait_healthy()?;
    let remaining = c.running_endpoints();
    let after = put_many(&remaining, "s5-after/", 20)?;
    for i in c.running() {
        let url = vec![c.members()[i].client_url()];
        let out = must_etcdctl(&url, &["get", "s5-after/00019", "--consistency=l"])?;
        ensure!(
            out == format!("s5-after/00019\n{}\n", after["s5-after/00019"]),
            "get via {}: {out:?}",
            c.members()[i].name
        );
    }
    must_hashkv_agree(&mut c)?;
    Ok(())
}

#[test]
fn learner_catches_up_is_promoted_then_member_removed_etcd() {
    must(learner_then_remove(Server::Etcd));
}

#[test]
fn learner_catches_up_is_promoted_then_member_removed_skiff() {
    must(learner_then_remove(Server::Skiff));
}

// ---------------------------------------------------------------------------------------
// 6. A member removed, its data wiped, added again under the same name.

fn replaced_member(kind: Server) -> anyhow::Result<()> {
    let mut c = Cluster::start(kind, 3)?;
    let all = c.running_endpoints();
    let mut expected = put_many(&all, "s6/before/", 50)?;

    let leader = c.wait_leader()?;
    let victim = (0..3)
        .find(|&i| c.members()[i].id != Some(leader))
        .expect("a follower");
    let old_id = c.members()[victim].id.expect("ID");
    let name = c.members()[victim].name.clone();
    // Down while its removal commits, it never applies it; restarted with its old data it
    // learns it from the others' refusal and stops by itself (etcd: "the member has been
    // permanently removed from the cluster").
    c.member(victim).stop()?;
    c.remove_member(victim)?;
    c.member(victim).restart_with_env(&[])?;
    poll(
        "a removed member restarted on its old data exits by itself",
        REMOVED_EXIT_TIMEOUT,
        || {
            Ok(if c.member(victim).is_running() {
                Err("still running".into())
            } else {
                Ok(())
            })
        },
    )?;
    c.member(victim).wipe_data()?;
    c.wait_leader()?;
    expected.extend(put_many(&c.running_endpoints(), "s6/between/", 20)?);

    let again = c.add_member(&name, false)?;
    ensure!(again == victim, "re-added member got a new slot");
    let new_id = c.members()[victim].id.expect("ID");
    ensure!(
        new_id != old_id,
        "re-added member kept its old ID {old_id:x}"
    );
    poll("member list after re-add", Duration::from_secs(10), || {
        let list = c.member_list()?;
        let ok = list.len() == 3
            && list
                .iter()
                .all(|m| m.id != old_id && m.is_started() && !m.is_learner)
            && list.iter().any(|m| m.id == new_id && m.name == name);
        Ok(if ok { Ok(()) } else { Err(format!("{list:?}")) })
    })?;
    must_member_holds(&c, victim, "s6/", &expected, true)?;
    if kind == Server::Skiff {
        // A member joining with an empty log always starts from the leader's snapshot.
        let received = snapshots_received(&c.members()[victim].client_url())?;
        ensure!(received >= 1, "the re-added member rejoined without a snapshot");
    }

    c.wait_leader()?;
    expected.extend(put_many(&all, "s6/after/", 20)?);
    let url = vec![c.members()[victim].client_url()];
    let out = must_etcdctl(&url, &["get", "s6/after/00000", "--consistency=l"])?;
    ensure!(
        out == format!("s6/after/00000\n{}\n", expected["s6/after/00000"]),
        "get via re-added member: {out:?}"
    );
    must_all_members_hold(&mut c, "s6/", &expected, true)?;
    must_hashkv_agree(&mut c)?;
    Ok(())
}

#[test]
fn removed_member_wiped_and_readded_rejoins_etcd() {
    must(replaced_member(Server::Etcd));
}

#[test]
fn removed_member_wiped_and_readded_rejoins_skiff() {
    must(replaced_member(Server::Skiff));
}

// ---------------------------------------------------------------------------------------
// Checks shared by the scenarios.

/// `etcd_network_snapshot_receive_success` summed over senders, from `/metrics` on the
/// member's client URL.
fn snapshots_received(client_url: &str) -> anyhow::Result<u64> {
    metric_sum(client_url, "etcd_network_snapshot_receive_success")
}

/// Every sample of metric `name` (all label sets) summed, from `/metrics` on the member's
/// client URL.
fn metric_sum(client_url: &str, name: &str) -> anyhow::Result<u64> {
    use std::io::{Read, Write};
    let addr = client_url.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(conn, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut body = String::new();
    conn.read_to_string(&mut body)?;
    Ok(body
        .lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

/// `get <prefix> --prefix --consistency=s` on one member, as key → value.
fn read_serializable(
    c: &Cluster,
    index: usize,
    prefix: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let url = vec![c.members()[index].client_url()];
    let out = must_etcdctl(&url, &["get", prefix, "--prefix", "--consistency=s"])?;
    let lines: Vec<&str> = out.lines().collect();
    ensure!(
        lines.len().is_multiple_of(2),
        "odd number of lines from get --prefix: {out:?}"
    );
    Ok(lines
        .chunks(2)
        .map(|kv| (kv[0].to_string(), kv[1].to_string()))
        .collect())
}

/// Polls one member's serializable read of `prefix` until it holds every `expected` pair
/// (`exact`: and nothing else).
fn must_member_holds(
    c: &Cluster,
    index: usize,
    prefix: &str,
    expected: &BTreeMap<String, String>,
    exact: bool,
) -> anyhow::Result<()> {
    let name = c.members()[index].name.clone();
    poll(
        &format!("{name} holds {} keys under {prefix}", expected.len()),
        CATCH_UP_TIMEOUT,
        || {
            let got = match read_serializable(c, index, prefix) {
                Ok(got) => got,
                Err(e) => return Ok(Err(format!("{e:#}"))),
            };
            let missing: Vec<&String> = expected
                .keys()
                .filter(|k| got.get(*k) != Some(&expected[*k]))
                .collect();
            let extra: Vec<&String> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
            if missing.is_empty() && (!exact || extra.is_empty()) {
                return Ok(Ok(()));
            }
            Ok(Err(format!(
                "{} missing or different (first {:?}), {} unexpected (first {:?})",
                missing.len(),
                missing.first(),
                extra.len(),
                extra.first()
            )))
        },
    )
}

/// [`must_member_holds`] for every running member.
fn must_all_members_hold(
    c: &mut Cluster,
    prefix: &str,
    expected: &BTreeMap<String, String>,
    exact: bool,
) -> anyhow::Result<()> {
    for i in c.running() {
        must_member_holds(c, i, prefix, expected, exact)?;
    }
    Ok(())
}

/// Every member of the cluster (`--cluster`) hashes the same history up to the current
/// revision: `endpoint hashkv --cluster --rev=R`, polled until all have applied R.
fn must_hashkv_agree(c: &mut Cluster) -> anyhow::Result<()> {
    let endpoints = c.running_endpoints();
    let out = must_etcdctl(&endpoints, &["get", "hashkv-probe", "-w", "json"])?;
    let header: Value =
        serde_json::from_str(&out).with_context(|| format!("get -w json: {out}"))?;
    let revision = header["header"]["revision"]
        .as_i64()
        .with_context(|| format!("no revision in {out}"))?;
    let members = c.member_list()?.len();
    let rev_arg = format!("--rev={revision}");
    let hashes = poll(
        &format!("hashkv at revision {revision} from {members} members"),
        CATCH_UP_TIMEOUT,
        || {
            let out = etcdctl(
                &endpoints,
                &[
                    "endpoint",
                    "hashkv",
                    "--cluster",
                    rev_arg.as_str(),
                    "-w",
                    "json",
                ],
            )?;
            let hashes = parse_hashkv(&out.stdout).unwrap_or_default();
            Ok(if out.code == Some(0) && hashes.len() == members {
                Ok(hashes)
            } else {
                Err(format!(
                    "{} answered: {}",
                    hashes.len(),
                    last_error_line(&out.stderr)
                ))
            })
        },
    )?;
    let first = &hashes[0];
    for h in &hashes {
        ensure!(
            h.hash == first.hash && h.compact_revision == first.compact_revision,
            "hashkv at revision {revision} differs: {hashes:#?}"
        );
    }
    Ok(())
}

/// The index of the member the running members agree is the leader.
fn leader_index(c: &mut Cluster) -> anyhow::Result<usize> {
    let id = c.wait_leader()?;
    c.index_of(id)
}

fn client_options() -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(WRITER_PUT_TIMEOUT)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Puts `<prefix><i:05>` = `value-<i>` for i in 0..n through `endpoints`, a few at a time,
/// retrying each put (same key and value, so a retry is harmless) until it is acknowledged
/// or [`PUT_MANY_TIMEOUT`] passes. Returns what was written.
fn put_many(
    endpoints: &[String],
    prefix: &str,
    n: usize,
) -> anyhow::Result<BTreeMap<String, String>> {
    let pairs: Vec<(String, String)> = (0..n)
        .map(|i| (format!("{prefix}{i:05}"), format!("value-{i}")))
        .collect();
    runtime().block_on(async {
        let client = Client::connect(endpoints, Some(client_options())).await?;
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..PUT_MANY_CONCURRENCY {
            let mine: Vec<(String, String)> = pairs
                .iter()
                .skip(t)
                .step_by(PUT_MANY_CONCURRENCY)
                .cloned()
                .collect();
            let mut kv = client.kv_client();
            tasks.spawn(async move {
                for (key, value) in mine {
                    let deadline = Instant::now() + PUT_MANY_TIMEOUT;
                    loop {
                        let put = tokio::time::timeout(
                            WRITER_PUT_TIMEOUT,
                            kv.put(key.clone(), value.clone(), None),
                        );
                        match put.await {
                            Ok(Ok(_)) => break,
                            Ok(Err(e)) if Instant::now() > deadline => bail!("put {key}: {e}"),
                            Err(_) if Instant::now() > deadline => bail!("put {key}: no answer"),
                            _ => tokio::time::sleep(Duration::from_millis(100)).await,
                        }
                    }
                }
                Ok(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.context("put task panicked")??;
        }
        anyhow::Ok(())
    })?;
    Ok(pairs.into_iter().collect())
}

/// Writer threads that put unique keys (`<prefix>w<id>/<seq>`) until stopped, each with
/// its own runtime and one client per member; a writer whose put fails or times out moves
/// to the next member. Only acknowledged puts are recorded.
struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeMap<String, String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Writers {
    fn start(endpoints: Vec<String>, prefix: &str, count: usize) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(BTreeMap::new()));
        let threads = (0..count)
            .map(|id| {
                let (endpoints, prefix) = (endpoints.clone(), prefix.to_string());
                let (stop, acked) = (stop.clone(), acked.clone());
                std::thread::spawn(move || {
                    runtime().block_on(writer(id, endpoints, prefix, stop, acked))
                })
            })
            .collect();
        Writers {
            stop,
            acked,
            threads,
        }
    }

    /// Waits until [`PROGRESS_ACKS`] more writes are acknowledged.
    fn wait_progress(&self, when: &str, c: &Cluster) -> anyhow::Result<()> {
        let target = self.acked.lock().len() + PROGRESS_ACKS;
        let deadline = Instant::now() + PROGRESS_TIMEOUT;
        while self.acked.lock().len() < target {
            if Instant::now() > deadline {
                bail!(
                    "{when}: writes stopped being acknowledged for {PROGRESS_TIMEOUT:?}{}",
                    c.log_tails()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops the writers (each within one put timeout) and returns the acknowledged writes.
    fn stop(mut self) -> BTreeMap<String, String> {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.threads) {
            t.join().expect("writer thread panicked");
        }
        let acked = self.acked.lock().clone();
        acked
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn writer(
    id: usize,
    endpoints: Vec<String>,
    prefix: String,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeMap<String, String>>>,
) {
    let mut clients: Vec<Option<Client>> = vec![None; endpoints.len()];
    let mut target = id % endpoints.len();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // A fresh key per attempt: a put that timed out may still commit later.
        let key = format!("{prefix}w{id}/{seq:08}");
        let value = format!("v{id}-{seq}");
        seq += 1;
        if clients[target].is_none() {
            let connect = Client::connect([endpoints[target].as_str()], Some(client_options()));
            clients[target] = tokio::time::timeout(WRITER_PUT_TIMEOUT, connect)
                .await
                .ok()
                .and_then(Result::ok);
        }
        let put = match clients[target].as_mut() {
            Some(client) => {
                tokio::time::timeout(
                    WRITER_PUT_TIMEOUT,
                    client.put(key.as_str(), value.as_str(), None),
                )
                .await
            }
            None => Ok(Err(etcd_client::Error::InvalidArgs("not connected".into()))),
        };
        match put {
            Ok(Ok(_)) => {
                acked.lock().insert(key, value);
            }
            _ => {
                target = (target + 1) % endpoints.len();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// 7. Membership requests etcd refuses: the same answers from skiff.

/// Runs refused (and one accepted) membership requests against a 3-member cluster and
/// returns, per request, the exit status and etcd's message (IDs replaced by names).
fn membership_answers(kind: Server) -> anyhow::Result<Vec<String>> {
    let mut c = Cluster::start(kind, 3)?;
    let ids: Vec<String> = c.members().iter().map(|m| m.id_hex()).collect();
    let peer1 = c.members()[1].peer_url();
    let requests: Vec<Vec<String>> = vec![
        vec!["member".into(), "add".into(), "dup".into(), format!("--peer-urls={peer1}")],
        vec!["member".into(), "remove".into(), "abcdef".into()],
        vec!["member".into(), "promote".into(), ids[2].clone()],
        vec!["member".into(), "promote".into(), "abcdef".into()],
        vec!["member".into(), "update".into(), "abcdef".into(), "--peer-urls=http://127.0.0.1:1".into()],
        vec!["member".into(), "update".into(), ids[1].clone(), format!("--peer-urls={peer1}")],
    ];
    // etcd refuses a membership change as "unhealthy" until every member has been
    // connected for 5 s (its strict reconfiguration check); both must do so, then answer.
    poll("a healthy cluster for membership changes", Duration::from_secs(20), || {
        let out = c.etcdctl(&requests[0])?;
        let error = last_error_line(&out.stderr);
        Ok(if error.contains("unhealthy cluster") { Err(error) } else { Ok(()) })
    })?;
    let mut answers = Vec::new();
    for args in &requests {
        let out = c.etcdctl(args)?;
        let mut answer = if out.code == Some(0) {
            format!("ok: {}", out.stdout.trim())
        } else {
            format!("error: {}", grpc_message(&last_error_line(&out.stderr)))
        };
        for (i, id) in ids.iter().enumerate() {
            answer = answer.replace(id.as_str(), &format!("<member {i}>"));
        }
        // etcdctl prints IDs with `%16x`: a 15-digit ID gets a leading space.
        answer = answer.split_whitespace().collect::<Vec<_>>().join(" ");
        // The cluster ID differs between runs and implementations.
        if let Some(at) = answer.find(" in cluster ") {
            answer.truncate(at);
        }
        let mut request = args.join(" ").replace(&peer1, "<peer 1>");
        for (i, id) in ids.iter().enumerate() {
            request = request.replace(id.as_str(), &format!("<member {i}>"));
        }
        answers.push(format!("{request} -> {answer}"));
    }
    // A learner that never started is not in sync: promoting it is refused.
    let port = crate::cluster_harness::free_ports(1)?[0];
    let out = c.etcdctl(&["member", "add", "l1", "--learner", &format!("--peer-urls=http://127.0.0.1:{port}")])?;
    ensure!(out.code == Some(0), "member add --learner: {}", out.stderr);
    let learner = crate::cluster_harness::parse_member_add(&out.stdout)?.id;
    let out = c.etcdctl(&["member", "promote", &format!("{learner:x}")])?;
    answers.push(format!(
        "member promote <unstarted learner> -> {}",
        grpc_message(&last_error_line(&out.stderr))
    ));
    let out = c.etcdctl(&["member", "remove", &format!("{learner:x}")])?;
    ensure!(out.code == Some(0), "member remove <learner>: {}", out.stderr);
    // Nothing above changed the membership.
    let list = c.member_list()?;
    ensure!(list.len() == 3 && list.iter().all(|m| m.is_started() && !m.is_learner), "{list:?}");
    Ok(answers)
}

#[test]
fn membership_requests_get_etcds_answers() {
    let etcd = membership_answers(Server::Etcd).unwrap();
    let skiff = membership_answers(Server::Skiff).unwrap();
    assert_eq!(skiff, etcd, "skiff answered membership requests differently from etcd");
    assert!(
        etcd.last().is_some_and(|a| a.ends_with("etcdserver: can only promote a learner member which is in sync with leader")),
        "{etcd:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 7b. Watches and leases through a follower: a watch on a follower sees writes made on
// another member, a lease kept alive only through a follower outlives its TTL (keep-alives
// reach the leader), and its TTL is reported by the follower as the leader sees it.

/// Concurrent keep-alive streams on one follower, and keep-alives sent on each.
const KEEPALIVE_BURST_STREAMS: usize = 8;
const KEEPALIVES_PER_BURST_STREAM: usize = 500;

fn follower_serves_watches_and_leases(kind: Server) -> anyhow::Result<()> {
    let mut c = Cluster::start(kind, 3)?;
    let leader = leader_index(&mut c)?;
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let follower_url = c.members()[follower].client_url();
    let other_url = c.members()[other].client_url();
    runtime().block_on(async {
        let mut on_follower = Client::connect([follower_url.as_str()], Some(client_options())).await?;
        let mut on_other = Client::connect([other_url.as_str()], Some(client_options())).await?;

        let mut events = on_follower
            .watch("s7b/", Some(etcd_client::WatchOptions::new().with_prefix()))
            .await?;
        for i in 0..5 {
            on_other.put(format!("s7b/{i}"), format!("v{i}"), None).await?;
        }
        let mut seen = Vec::new();
        while seen.len() < 5 {
            let resp = tokio::time::timeout(Duration::from_secs(10), events.message())
                .await
                .context("no watch event from the follower within 10 s")??
                .context("watch stream ended")?;
            for e in resp.events() {
                let kv = e.kv().context("event without kv")?;
                seen.push(String::from_utf8_lossy(kv.key()).into_owned());
            }
        }
        ensure!(seen == (0..5).map(|i| format!("s7b/{i}")).collect::<Vec<_>>(), "watch events: {seen:?}");

        // A lease with the shortest TTL both accept, kept alive through the follower only,
        // for three TTLs.
        let lease = on_follower.lease_grant(3, None).await?.id();
        on_other
            .put("s7b/leased", "x", Some(etcd_client::PutOptions::new().with_lease(lease)))
            .await?;
        let (mut keeper, mut acks) = on_follower.lease_keep_alive(lease).await?;
        let until = Instant::now() + Duration::from_secs(9);
        while Instant::now() < until {
            keeper.keep_alive().await?;
            let ack = tokio::time::timeout(Duration::from_secs(5), acks.message())
                .await
                .context("no keep-alive answer from the follower")??
                .context("keep-alive stream ended")?;
            ensure!(ack.ttl() > 0, "the lease expired while kept alive through the follower: {ack:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Many streams of back-to-back keep-alives through the follower: each is forwarded to
        // the leader on the stream's own forwarded stream (a stream per keep-alive, dropped
        // after its answer, broke the follower's channel to the leader under load).
        let mut bursts = tokio::task::JoinSet::new();
        for _ in 0..KEEPALIVE_BURST_STREAMS {
            let mut client = on_follower.clone();
            bursts.spawn(async move {
                let (mut keeper, mut acks) = client.lease_keep_alive(lease).await?;
                for i in 0..KEEPALIVES_PER_BURST_STREAM {
                    keeper.keep_alive().await?;
                    let ack = tokio::time::timeout(Duration::from_secs(5), acks.message())
                        .await
                        .with_context(|| format!("keep-alive {i}: no answer within 5 s"))??
                        .with_context(|| format!("keep-alive {i}: stream ended"))?;
                    ensure!(ack.ttl() > 0, "keep-alive {i}: {ack:?}");
                }
                anyhow::Ok(())
            });
        }
        while let Some(burst) = bursts.join_next().await {
            burst??;
        }
        let got = on_other.get("s7b/leased", None).await?;
        ensure!(got.kvs().len() == 1, "the leased key is gone although the lease was kept alive");
        let ttl = on_follower.lease_time_to_live(lease, None).await?;
        ensure!(ttl.ttl() > 0 && ttl.ttl() <= 3, "time-to-live via the follower: {}", ttl.ttl());

        // Once the keep-alives stop, the leader expires it and every member drops the key.
        drop(keeper);
        drop(acks);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = on_follower
                .get("s7b/leased", Some(etcd_client::GetOptions::new().with_serializable()))
                .await?;
            if got.kvs().is_empty() {
                break;
            }
            ensure!(Instant::now() < deadline, "the leased key outlived its lease by 12 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::Ok(())
    })
}

#[test]
fn follower_serves_watches_and_leases_etcd() {
    must(follower_serves_watches_and_leases(Server::Etcd));
}

#[test]
fn follower_serves_watches_and_leases_skiff() {
    must(follower_serves_watches_and_leases(Server::Skiff));
}

// ---------------------------------------------------------------------------------------
// 8. Skiff only: learners promoted by themselves, and members that must not start.

#[test]
fn learners_are_promoted_automatically_with_the_flag() {
    let mut c = Cluster::start_with(Server::Skiff, 3, &["--auto-promote-learners=true"]).unwrap();
    let expected = put_many(&c.running_endpoints(), "s8/", 50).unwrap();
    let learner = c.add_member("m4", true).unwrap();
    let id = c.members()[learner].id.expect("ID");
    must(poll("the learner promoted without `member promote`", CATCH_UP_TIMEOUT, || {
        let list = c.member_list()?;
        Ok(match list.iter().find(|m| m.id == id) {
            Some(m) if !m.is_learner && m.is_started() => Ok(()),
            other => Err(format!("{other:?}")),
        })
    }));
    must(must_member_holds(&c, learner, "s8/", &expected, true));
}

/// A member whose data dir is gone, started again as if bootstrapping (same flags), or one
/// started with another cluster token, must not start: etcd refuses the first with "member
/// … has already been bootstrapped"; skiff refuses both with a clear error.
#[test]
fn a_wiped_member_or_a_foreign_token_is_refused_at_start() {
    let mut c = Cluster::start(Server::Skiff, 3).unwrap();
    let victim = (leader_index(&mut c).unwrap() + 1) % 3;
    c.member(victim).kill9().unwrap();
    c.member(victim).wipe_data().unwrap();
    for (flags, want) in [
        (vec![], "has already been bootstrapped"),
        (vec![("--initial-cluster-token", "someone-elses")], "cluster ID mismatch"),
    ] {
        c.member(victim).set_flags(&flags);
        c.member(victim).restart_with_env(&[]).unwrap();
        assert!(c.member(victim).wait_exit(Duration::from_secs(20)), "the member started anyway");
        let log = c.members()[victim].log();
        assert!(log.contains(want), "no {want:?} in the log:\n{}", c.members()[victim].log_tail());
        c.member(victim).wipe_data().unwrap();
    }
}

#[cfg(feature = "failpoints")]
mod failpoints;
