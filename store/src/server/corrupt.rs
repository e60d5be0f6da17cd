//! etcd's data corruption checks: members that applied the same entries hold the same key
//! history, so their `HashKV` at one revision must agree.
//!
//! Periodic check (`--experimental-corrupt-check-time`, leader only): the leader hashes its
//! store at its current revision R, asks every other member for `HashKV` at R over the
//! member's client URL (one that has not applied R yet answers "future revision" and is
//! skipped this pass), waits for a linearizable barrier, hashes again, and compares
//! (`find_corrupt`). A member that disagrees gets a CORRUPT alarm through raft; from then on
//! every member's applier refuses writes with `etcdserver: corrupt cluster` until the alarm
//! is disarmed (`apply::refused_when_corrupt`).
//!
//! Initial check (`--experimental-initial-corrupt-check`, every member at start): the member
//! hashes its store at its revision and asks each peer for the same revision; a different
//! hash at the same compaction means this member's data is bad, and it exits (etcd refuses
//! to start). etcd checks before raft starts; Skiff checks once raft has replayed what this
//! member's log had committed (the membership it learns the peers' client URLs from is part
//! of that state), so its clients may be served for that moment. A peer that has not reached
//! the revision is compared at its own current revision instead (etcd skips it).
//!
//! An example: members A (leader), B and C at revision 7, compacted at 3. A hashes (3, 7];
//! B answers the same hash at 7, C answers another: C gets the alarm. Had C been at revision
//! 9 while A, after its barrier, is at 8, C would be ahead of a leader that has applied
//! everything committed: corrupt too.

use std::sync::Arc;
use std::time::Duration;

use tonic::Status;
use tracing::{debug, error, info, warn};

use super::EtcdServer;
use crate::error::Error;
use crate::proto::etcdserverpb as pb;
use crate::proto::skiffpb::internal_request::Request;
use pb::maintenance_client::MaintenanceClient;

/// A store's hash of its key history in `(compact_revision, hash_revision]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalHash {
    pub hash: u32,
    pub hash_revision: i64,
    pub compact_revision: i64,
}

/// One member's `HashKV` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberHash {
    pub member_id: u64,
    /// The member's current revision when it answered (the response header's).
    pub revision: i64,
    pub hash: u32,
    pub hash_revision: i64,
    pub compact_revision: i64,
}

/// Why a member is taken for corrupt (etcd's `checkHashKV` cases).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// The leader's own hash changed between two reads at the same revision and compaction.
    LeaderHashChanged,
    /// The member is at a revision the leader has not reached after a linearizable barrier.
    RevisionAhead,
    /// The member compacted at a revision the leader has not.
    CompactRevisionAhead,
    /// Same revision, same compaction, different history.
    HashDiffers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corruption {
    pub member_id: u64,
    pub mismatch: Mismatch,
}

/// etcd's `checkHashKV` comparison on the leader `leader_id`. `first` is the leader's hash
/// before asking the members (their answers hash `first.hash_revision`), `second` its hash
/// after a linearizable barrier that followed their answers. At most one corruption per
/// member, the first found, in `answers` order.
pub fn find_corrupt(leader_id: u64, first: LocalHash, second: LocalHash, answers: &[MemberHash]) -> Vec<Corruption> {
    let mut found = Vec::new();
    if first.hash != second.hash
        && first.hash_revision == second.hash_revision
        && first.compact_revision == second.compact_revision
    {
        found.push(Corruption { member_id: leader_id, mismatch: Mismatch::LeaderHashChanged });
    }
    for a in answers {
        let mismatch = if a.revision > second.hash_revision {
            Some(Mismatch::RevisionAhead)
        } else if a.compact_revision > second.compact_revision {
            Some(Mismatch::CompactRevisionAhead)
        } else if a.compact_revision == first.compact_revision && a.hash != first.hash {
            Some(Mismatch::HashDiffers)
        } else {
            None
        };
        if let Some(mismatch) = mismatch {
            if !found.iter().any(|c| c.member_id == a.member_id) {
                found.push(Corruption { member_id: a.member_id, mismatch });
            }
        }
    }
    found
}

/// Whether a peer's answer for the revision of `local` shows different data (etcd's initial
/// check): hashes differ at the same compaction. A different compaction makes the hashes
/// incomparable.
pub fn initial_mismatch(local: LocalHash, peer: MemberHash) -> bool {
    local.hash_revision == peer.hash_revision
        && local.compact_revision == peer.compact_revision
        && local.hash != peer.hash
}

/// Starts the checks the configuration enables.
pub(super) fn spawn(server: &Arc<EtcdServer>) {
    if server.config.initial_corrupt_check {
        let s = server.clone();
        tokio::spawn(async move {
            wait_replayed(&s).await;
            initial_check(&s, s.mvcc.current_revision()).await
        });
    }
    if let Some(interval) = server.config.corrupt_check_interval {
        let s = server.clone();
        tokio::spawn(async move { monitor(&s, interval).await });
    }
}

async fn monitor(server: &Arc<EtcdServer>, interval: Duration) {
    info!(interval = ?interval, "enabled corruption checking");
    loop {
        tokio::time::sleep(interval).await;
        if !server.node.status().is_leader {
            continue;
        }
        if let Err(e) = check_hash_kv(server).await {
            warn!(error = %e, "failed to check hash KV");
        }
    }
}

/// One pass of the leader's check.
async fn check_hash_kv(server: &Arc<EtcdServer>) -> Result<(), Error> {
    let first = local_hash(server, 0).await?;
    let answers = member_hashes(server, first.hash_revision).await;
    server.linearizable_barrier().await?;
    let second = local_hash(server, 0).await?;
    for c in find_corrupt(server.config.member_id, first, second, &answers) {
        let answer = answers.iter().find(|a| a.member_id == c.member_id);
        warn!(
            member_id = format_args!("{:x}", c.member_id),
            reason = ?c.mismatch,
            leader_revision = second.hash_revision,
            leader_hash = first.hash,
            leader_compact_revision = first.compact_revision,
            member_revision = answer.map_or(second.hash_revision, |a| a.revision),
            member_hash = answer.map_or(second.hash, |a| a.hash),
            member_compact_revision = answer.map_or(second.compact_revision, |a| a.compact_revision),
            "found hash mismatch; raising the CORRUPT alarm"
        );
        raise_corrupt_alarm(server, c.member_id).await;
    }
    info!(peers_checked = answers.len(), "finished peer corruption check");
    Ok(())
}

/// Proposes a CORRUPT alarm for `member_id`, unless it is already raised.
async fn raise_corrupt_alarm(server: &EtcdServer, member_id: u64) {
    let raised = pb::AlarmMember { member_id, alarm: pb::AlarmType::Corrupt as i32 };
    if server.alarms.list().contains(&raised) {
        return;
    }
    let alarm = pb::AlarmRequest {
        action: pb::alarm_request::AlarmAction::Activate as i32,
        member_id,
        alarm: pb::AlarmType::Corrupt as i32,
    };
    if let Err(e) = server.propose(Request::Alarm(alarm)).await {
        warn!(member_id = format_args!("{member_id:x}"), error = %e, "raising the CORRUPT alarm failed");
    }
}

/// This member's hash at `revision` (0: current), computed off the async workers.
async fn local_hash(server: &EtcdServer, revision: i64) -> Result<LocalHash, Error> {
    let mvcc = server.mvcc.clone();
    let (hash, compact_revision, hash_revision) = tokio::task::spawn_blocking(move || mvcc.hash_kv(revision))
        .await
        .map_err(|e| Error::Internal(format!("hash task failed: {e}")))??;
    Ok(LocalHash { hash, hash_revision, compact_revision })
}

/// The other members that have published a client URL (an unstarted one has none).
fn other_members(server: &EtcdServer) -> Vec<u64> {
    let membership = server.membership.read();
    membership
        .members
        .values()
        .filter(|m| m.id != server.config.member_id && !m.client_urls.is_empty())
        .map(|m| m.id)
        .collect()
}

/// Every other member's answer at `revision`, asked concurrently; members that fail to
/// answer are left out (logged).
async fn member_hashes(server: &EtcdServer, revision: i64) -> Vec<MemberHash> {
    let asks = other_members(server).into_iter().map(|id| async move { (id, ask_hash_kv(server, id, revision).await) });
    let mut answers = Vec::new();
    for (id, answer) in futures::future::join_all(asks).await {
        match answer {
            Ok(a) => answers.push(a),
            Err(e) if e.message() == Error::FutureRev.to_string() => {
                debug!(member_id = format_args!("{id:x}"), revision, "member has not applied the revision yet; skipped")
            }
            Err(e) => {
                warn!(member_id = format_args!("{id:x}"), revision, error = %e.message(), "failed hash kv request")
            }
        }
    }
    answers
}

async fn ask_hash_kv(server: &EtcdServer, member: u64, revision: i64) -> Result<MemberHash, Status> {
    let mut client = MaintenanceClient::new(server.client_channel(member)?);
    let call = client.hash_kv(pb::HashKvRequest { revision });
    let resp = tokio::time::timeout(server.request_timeout(), call)
        .await
        .map_err(|_| Status::from(Error::Timeout))??
        .into_inner();
    let header = resp.header.unwrap_or_default();
    Ok(MemberHash {
        member_id: if header.member_id == 0 { member } else { header.member_id },
        revision: header.revision,
        hash: resp.hash,
        hash_revision: resp.hash_revision,
        compact_revision: resp.compact_revision,
    })
}

/// Waits (bounded by the request timeout) until the applier has applied every entry the
/// node knew committed when it first reported its state: the log this member restarted with.
async fn wait_replayed(server: &EtcdServer) {
    let mut status = server.node.watch_status();
    let replayed = async {
        let commit_index = status.wait_for(|s| s.commit_index > 0).await.map(|s| s.commit_index);
        if let Ok(commit_index) = commit_index {
            let _ = status.wait_for(|s| s.applied_index >= commit_index).await;
        }
    };
    if tokio::time::timeout(server.request_timeout(), replayed).await.is_err() {
        warn!("the local raft log was not replayed in time; checking with what is applied");
    }
}

/// etcd's `CheckInitialHashKV`: exits the process when a peer holds different data.
async fn initial_check(server: &EtcdServer, revision: i64) {
    let member_id = server.config.member_id;
    info!(revision, "starting initial corruption check");
    let mut mismatches = 0usize;
    for peer in other_members(server) {
        match initial_compare(server, peer, revision).await {
            Ok(Some((local, answer))) if initial_mismatch(local, answer) => {
                warn!(
                    remote_peer_id = format_args!("{peer:x}"),
                    revision = local.hash_revision,
                    local_hash = local.hash,
                    remote_peer_hash = answer.hash,
                    compact_revision = local.compact_revision,
                    "found different hash values from remote peer"
                );
                mismatches += 1;
            }
            Ok(Some((local, answer))) if local.compact_revision != answer.compact_revision => warn!(
                remote_peer_id = format_args!("{peer:x}"),
                local_compact_revision = local.compact_revision,
                remote_peer_compact_revision = answer.compact_revision,
                "found different compact revision values from remote peer; hashes not compared"
            ),
            Ok(_) => {}
            Err(e) => {
                warn!(remote_peer_id = format_args!("{peer:x}"), error = %e, "cannot compare hash with remote peer")
            }
        }
    }
    if mismatches > 0 {
        error!(mismatches, "{member_id:x} found data inconsistency with peers");
        std::process::exit(1);
    }
    info!("initial corruption checking passed; no corruption");
}

/// This member's and `peer`'s hashes at one revision: `revision`, or the peer's current
/// one when it has not reached `revision`. `None` when the peer cannot be compared (this
/// member compacted past the peer's revision).
async fn initial_compare(
    server: &EtcdServer,
    peer: u64,
    revision: i64,
) -> Result<Option<(LocalHash, MemberHash)>, String> {
    let local = local_hash(server, revision).await.map_err(|e| format!("local hash: {e}"))?;
    let answer = match ask_hash_kv(server, peer, revision).await {
        Ok(a) => return Ok(Some((local, a))),
        Err(e) if e.message() == Error::FutureRev.to_string() => {
            ask_hash_kv(server, peer, 0).await.map_err(|e| e.message().to_string())?
        }
        Err(e) => return Err(e.message().to_string()),
    };
    match local_hash(server, answer.hash_revision).await {
        Ok(local) => Ok(Some((local, answer))),
        Err(Error::Compacted) => Ok(None),
        Err(e) => Err(format!("local hash at {}: {e}", answer.hash_revision)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEADER: u64 = 1;

    fn local(hash: u32, hash_revision: i64, compact_revision: i64) -> LocalHash {
        LocalHash { hash, hash_revision, compact_revision }
    }

    fn answer(member_id: u64, revision: i64, hash: u32, compact_revision: i64) -> MemberHash {
        MemberHash { member_id, revision, hash, hash_revision: revision.min(10), compact_revision }
    }

    fn check(first: LocalHash, second: LocalHash, answers: &[MemberHash]) -> Vec<(u64, Mismatch)> {
        find_corrupt(LEADER, first, second, answers).into_iter().map(|c| (c.member_id, c.mismatch)).collect()
    }

    #[test]
    fn agreeing_members_are_not_corrupt() {
        let at10 = local(0xabc, 10, 4);
        let answers = [answer(2, 10, 0xabc, 4), answer(3, 12, 0xabc, 4)];
        assert_eq!(check(at10, at10, &answers[..1]), vec![]);
        // Member 3 had moved on to 12 when it answered (its hash is still at 10); the
        // leader's barrier brought the leader to 12 as well.
        let later = local(0xdef, 12, 4);
        assert_eq!(check(at10, later, &answers), vec![]);
    }

    #[test]
    fn each_of_etcds_cases() {
        let first = local(0xabc, 10, 4);
        let cases = [
            // (second, the member's answer, expected)
            (first, answer(2, 10, 0xbad, 4), Some(Mismatch::HashDiffers)),
            (first, answer(2, 11, 0xabc, 4), Some(Mismatch::RevisionAhead)),
            (first, answer(2, 10, 0xabc, 5), Some(Mismatch::CompactRevisionAhead)),
            // The leader compacted at 6 after its first hash: the member's hash over (6, 10]
            // cannot be compared, and its compaction is not ahead of the leader's.
            (local(0x123, 10, 6), answer(2, 10, 0xbad, 6), None),
        ];
        for (second, a, want) in cases {
            let got = check(first, second, &[a]);
            assert_eq!(got, want.map(|m| (2, m)).into_iter().collect::<Vec<_>>(), "{a:?}");
        }
        // Before any compaction both report -1 and must agree.
        let unset = local(0xabc, 10, -1);
        assert_eq!(check(unset, unset, &[answer(2, 10, 0xbad, -1)]), vec![(2, Mismatch::HashDiffers)]);
    }

    #[test]
    fn the_leaders_own_hash_must_be_stable() {
        let first = local(0xabc, 10, 4);
        assert_eq!(check(first, local(0xdef, 10, 4), &[]), vec![(LEADER, Mismatch::LeaderHashChanged)]);
        assert_eq!(check(first, local(0xdef, 11, 4), &[]), vec![], "a new revision changes the hash");
        assert_eq!(check(first, local(0xdef, 10, 6), &[]), vec![], "so does a compaction");
    }

    #[test]
    fn every_bad_member_once_in_answer_order() {
        let first = local(0xabc, 10, 4);
        let answers = [
            answer(3, 11, 0xbad, 5), // ahead, compacted ahead, and a different hash: one entry
            answer(2, 10, 0xabc, 4),
            answer(4, 10, 0xbad, 4),
            answer(3, 10, 0xbad, 4),
        ];
        assert_eq!(check(first, first, &answers), vec![(3, Mismatch::RevisionAhead), (4, Mismatch::HashDiffers)]);
    }

    #[test]
    fn initial_check_compares_at_one_revision_and_compaction() {
        let mine = local(0xabc, 10, 4);
        let peer = |hash, hash_revision, compact_revision| MemberHash {
            member_id: 2,
            revision: 12,
            hash,
            hash_revision,
            compact_revision,
        };
        assert!(!initial_mismatch(mine, peer(0xabc, 10, 4)));
        assert!(initial_mismatch(mine, peer(0xbad, 10, 4)));
        assert!(!initial_mismatch(mine, peer(0xbad, 10, 6)), "compacted elsewhere: not comparable");
        assert!(!initial_mismatch(mine, peer(0xbad, 9, 4)), "another revision: not comparable");
    }
}
