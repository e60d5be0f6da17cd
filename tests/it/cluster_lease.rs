//! Lease checkpoints across leader changes (etcd's `--experimental-enable-lease-checkpoint`),
//! on three skiff members. A lease granted with TTL 30 ages a few seconds, then the
//! leadership moves: with checkpoints the new leader gives the lease what remained of it at
//! the last checkpoint; without, a full TTL again. A keep-alive clears the checkpoint, so
//! the next leader gives the renewed lease its full TTL rather than the stale remainder.
//!
//! Skiff only: Debian's etcd 3.4 has no `--experimental-lease-checkpoint-interval` (its
//! interval is 5 minutes).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use serde_json::Value;

use crate::cluster_harness::{must_etcdctl, poll, Cluster};
use crate::harness::Server;

const LEASE_TTL_SECONDS: i64 = 30;
/// How long the lease ages before the first leader change: a few checkpoint intervals.
const LEASE_AGE: Duration = Duration::from_secs(8);
const CHECKPOINT_FLAGS: [&str; 2] = [
    "--experimental-enable-lease-checkpoint",
    "--experimental-lease-checkpoint-interval=1s",
];
/// How far above the truly remaining TTL a new leader's answer may be: the last checkpoint
/// is up to one interval (1 s) plus one leader sweep (500 ms) old, it was rounded up to
/// whole seconds, the new leader adds its election timeout (500 ms), and the answer is
/// rounded up again; plus 500 ms for the test's own timing.
const CHECKPOINT_OVERESTIMATE_SECONDS_MAX: f64 = 1.0 + 0.5 + 1.0 + 0.5 + 1.0 + 0.5;
const LEADER_MOVE_TIMEOUT: Duration = Duration::from_secs(10);

/// `lease grant <ttl>`; returns the lease ID in hex, as etcdctl takes it.
fn grant(c: &mut Cluster, ttl_seconds: i64) -> anyhow::Result<String> {
    let out = must_etcdctl(
        &c.running_endpoints(),
        &["lease", "grant", &ttl_seconds.to_string(), "-w", "json"],
    )?;
    let v: Value =
        serde_json::from_str(&out).with_context(|| format!("lease grant JSON: {out}"))?;
    let id = v["ID"]
        .as_i64()
        .with_context(|| format!("no ID in {out}"))?;
    Ok(format!("{id:x}"))
}

/// `(remaining TTL, granted TTL)` as the member at `endpoint` reports them.
fn time_to_live(endpoint: &str, lease: &str) -> anyhow::Result<(i64, i64)> {
    let out = must_etcdctl(
        &[endpoint.to_string()],
        &["lease", "timetolive", lease, "-w", "json"],
    )?;
    let v: Value =
        serde_json::from_str(&out).with_context(|| format!("lease timetolive JSON: {out}"))?;
    let ttl = v["ttl"]
        .as_i64()
        .with_context(|| format!("no ttl in {out}"))?;
    let granted = v["granted-ttl"]
        .as_i64()
        .with_context(|| format!("no granted-ttl in {out}"))?;
    Ok((ttl, granted))
}

/// Moves the leadership to a member other than the current leader; returns its index.
fn move_leader(c: &mut Cluster) -> anyhow::Result<usize> {
    let leader = c.wait_leader()?;
    let target = c
        .members()
        .iter()
        .filter_map(|m| m.id)
        .find(|&id| id != leader)
        .context("a follower")?;
    must_etcdctl(
        &c.running_endpoints(),
        &["move-leader", &format!("{target:x}")],
    )?;
    poll("the leadership moved", LEADER_MOVE_TIMEOUT, || {
        Ok(match c.leader()? {
            Some(id) if id == target => Ok(()),
            other => Err(format!("leader is {other:x?}")),
        })
    })?;
    c.index_of(target)
}

/// Grants a lease, lets it age, moves the leadership; returns the TTL the new leader
/// reports and how long ago the lease was granted.
fn ttl_after_leader_change(
    c: &mut Cluster,
    lease: &str,
    granted_at: Instant,
) -> anyhow::Result<(i64, f64)> {
    let leader = move_leader(c)?;
    let (ttl, granted) = time_to_live(&c.members()[leader].client_url(), lease)?;
    ensure!(granted == LEASE_TTL_SECONDS, "granted TTL {granted}");
    Ok((ttl, granted_at.elapsed().as_secs_f64()))
}

#[test]
fn a_new_leader_gives_a_lease_its_checkpointed_remaining_ttl() {
    let mut c = Cluster::start_with(Server::Skiff, 3, &CHECKPOINT_FLAGS).unwrap();
    let lease = grant(&mut c, LEASE_TTL_SECONDS).unwrap();
    let granted_at = Instant::now();
    // The lease must age for checkpoints to record anything: this wait is the scenario.
    std::thread::sleep(LEASE_AGE);
    let (ttl, aged_seconds) = ttl_after_leader_change(&mut c, &lease, granted_at).unwrap();
    let remaining = LEASE_TTL_SECONDS as f64 - aged_seconds;
    assert!(
        (ttl as f64) >= remaining - 1.0 && (ttl as f64) <= remaining + CHECKPOINT_OVERESTIMATE_SECONDS_MAX,
        "after {aged_seconds:.1} s the new leader reports {ttl} s left, expected about {remaining:.1} s{}",
        c.log_tails()
    );

    // A keep-alive renews the lease and clears its checkpoint through raft; the next leader,
    // elected well within a second (before any new checkpoint could differ from the full
    // TTL), must not go back to the stale remainder.
    let out = must_etcdctl(
        &c.running_endpoints(),
        &["lease", "keep-alive", "--once", &lease],
    )
    .unwrap();
    assert!(
        out.contains(&format!("keepalived with TTL({LEASE_TTL_SECONDS})")),
        "{out}"
    );
    let (ttl, _) = ttl_after_leader_change(&mut c, &lease, granted_at).unwrap();
    assert!(
        ttl >= LEASE_TTL_SECONDS - 1,
        "a renewed lease got {ttl} s from the next leader, not its full TTL{}",
        c.log_tails()
    );
}

#[test]
fn without_checkpoints_a_new_leader_renews_leases_to_their_full_ttl() {
    let mut c = Cluster::start(Server::Skiff, 3).unwrap();
    let lease = grant(&mut c, LEASE_TTL_SECONDS).unwrap();
    let granted_at = Instant::now();
    std::thread::sleep(LEASE_AGE);
    let (ttl, aged_seconds) = ttl_after_leader_change(&mut c, &lease, granted_at).unwrap();
    assert!(
        ttl >= LEASE_TTL_SECONDS - 1,
        "after {aged_seconds:.1} s without checkpoints the new leader reports {ttl} s, expected a full TTL"
    );
}
