//! Membership changes on the leader, with etcd's safety checks (`--strict-reconfig-check`),
//! and the background work around them: each member publishing its name and client URLs
//! through raft, and (with `--auto-promote-learners`) promoting learners that caught up.
//!
//! Every change is one raft conf change v2 entry (never joint): the entry's context names
//! the member and the request, the applier records the new membership with the entry's
//! index and wakes the requester.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use skiff_raft::node::PeerProgress;
use skiff_raft::raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
use tracing::{info, warn};

use super::EtcdServer;
use crate::apply;
use crate::error::Error;
use crate::membership::LEARNERS_MAX;
use crate::proto::etcdserverpb as pb;
use crate::proto::skiffpb::{self, internal_request::Request};

/// How often a member checks whether its published attributes are current.
const PUBLISH_RETRY_INTERVAL: Duration = Duration::from_millis(500);
/// How often the leader looks for learners ready to promote (auto-promotion).
const AUTO_PROMOTE_INTERVAL: Duration = Duration::from_secs(1);
/// etcd's `HealthInterval`: a voter must have been connected this long before a change
/// that needs it for quorum is allowed.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// etcd's `isConnectedFullySince`: every other voter's stream has been up for
/// `HEALTH_INTERVAL`.
fn connected_to_all_voters(server: &EtcdServer) -> bool {
    let Some(since) = std::time::Instant::now().checked_sub(HEALTH_INTERVAL) else { return false };
    let m = server.membership.read();
    m.members
        .values()
        .filter(|x| !x.is_learner && x.id != server.config.member_id)
        .all(|x| server.transport.active_since(x.id).is_some_and(|t| t <= since))
}

/// etcd's readiness rule: a learner may be promoted once its log reaches 90% of the
/// leader's (`readyPercent`).
const LEARNER_READY_PERCENT: u64 = 90;

/// What a membership RPC returns: the member concerned (if it still exists) and everyone.
pub type Members = (Option<pb::Member>, Vec<pb::Member>);

fn members_of(applied: apply::Applied) -> Result<Members, Error> {
    match applied? {
        apply::Response::Members { member, members } => Ok((member, members)),
        other => Err(Error::Internal(format!("unexpected response to a membership change: {other:?}"))),
    }
}

async fn progress(server: &EtcdServer) -> Result<Vec<PeerProgress>, Error> {
    let p = server.node.progress().await?;
    if p.is_empty() {
        return Err(Error::NotLeader);
    }
    Ok(p)
}

/// etcd's `IsReadyToAddVotingMember`: after adding one voter, the members that have
/// started (published their name) must still be a quorum.
fn ready_to_add_voter(server: &EtcdServer) -> bool {
    let m = server.membership.read();
    let voters = m.voters();
    let started = m.members.values().filter(|x| !x.is_learner && !x.name.is_empty()).count();
    let after = voters + 1;
    // One started member adding its second: the new member is needed for quorum anyway.
    if started == 1 && after == 2 {
        return true;
    }
    started > after / 2
}

fn check_urls(urls: &[String]) -> Result<(), Error> {
    if urls.is_empty() {
        return Err(Error::MemberBadUrls);
    }
    for u in urls {
        match url::Url::parse(u) {
            Ok(url) if (url.scheme() == "http" || url.scheme() == "https") && url.port().is_some() => {}
            _ => return Err(Error::MemberBadUrls),
        }
    }
    Ok(())
}

async fn propose_change(
    server: &EtcdServer,
    change: ConfChangeType,
    node_id: u64,
    member: Option<skiffpb::Member>,
) -> Result<Members, Error> {
    let request_id = server.next_id();
    let context = skiffpb::ConfChangeContext { request_id, member }.encode_to_vec();
    let mut single = ConfChangeSingle::default();
    single.set_change_type(change);
    single.node_id = node_id;
    let mut cc = ConfChangeV2::default();
    cc.mut_changes().push(single);
    let waiter = server.waiters.register(request_id);
    if let Err(e) = server.node.propose_conf_change(context, cc).await {
        server.waiters.cancel(request_id);
        return Err(e.into());
    }
    match tokio::time::timeout(server.request_timeout(), waiter).await {
        Ok(Ok(applied)) => members_of(applied),
        Ok(Err(_)) => Err(Error::Stopped),
        Err(_) => {
            server.waiters.cancel(request_id);
            Err(Error::Timeout)
        }
    }
}

/// MemberAdd on the leader.
pub async fn add(server: &EtcdServer, peer_urls: Vec<String>, is_learner: bool) -> Result<Members, Error> {
    check_urls(&peer_urls)?;
    // etcd's order: the safety checks (`mayAddMember`), then the membership rules.
    progress(server).await?;
    if !is_learner && server.config.strict_reconfig_check {
        if !ready_to_add_voter(server) {
            return Err(Error::MemberNotEnoughStarted);
        }
        if !connected_to_all_voters(server) {
            return Err(Error::Unhealthy);
        }
    }
    {
        let m = server.membership.read();
        if m.peer_url_taken(&peer_urls, 0) {
            return Err(Error::PeerUrlExist);
        }
        if is_learner && m.learners() >= LEARNERS_MAX {
            return Err(Error::TooManyLearners);
        }
    }
    // A fresh ID from the URLs, the cluster token and the time, as etcd's NewMember; never
    // one in use or removed before.
    let id = loop {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let salt = format!("{}{now}{}", server.config.initial_cluster_token, rand::random::<u64>());
        let id = crate::config::member_id(&peer_urls, &salt);
        let m = server.membership.read();
        if !m.members.contains_key(&id) && !m.removed.contains(&id) {
            break id;
        }
    };
    let member = skiffpb::Member { id, peer_urls, is_learner, ..Default::default() };
    let change = if is_learner { ConfChangeType::AddLearnerNode } else { ConfChangeType::AddNode };
    info!(member = format_args!("{id:x}"), is_learner, "adding member");
    propose_change(server, change, id, Some(member)).await
}

/// MemberRemove on the leader.
pub async fn remove(server: &EtcdServer, id: u64) -> Result<Members, Error> {
    let (is_learner, exists) = {
        let m = server.membership.read();
        if m.removed.contains(&id) {
            return Err(Error::MemberRemoved);
        }
        match m.members.get(&id) {
            Some(member) => (member.is_learner, true),
            None => (false, false),
        }
    };
    if !exists {
        return Err(Error::MemberNotFound);
    }
    let progress = progress(server).await?;
    if !is_learner && server.config.strict_reconfig_check {
        let target_active = progress.iter().any(|p| p.id == id && p.recent_active);
        // A member that is down is not part of the active quorum: removing it is safe.
        if target_active || id == server.config.member_id {
            let voters: Vec<&PeerProgress> = progress.iter().filter(|p| !p.is_learner).collect();
            let active = voters.iter().filter(|p| p.recent_active).count();
            if active.saturating_sub(1) < 1 + (voters.len().saturating_sub(1)) / 2 {
                return Err(Error::MemberNotEnoughStarted);
            }
        }
    }
    info!(member = format_args!("{id:x}"), "removing member");
    propose_change(server, ConfChangeType::RemoveNode, id, None).await
}

/// Whether learner `id` has caught up enough to vote (etcd's `isLearnerReady`).
fn learner_ready(progress: &[PeerProgress], leader: u64, id: u64) -> bool {
    let leader_match = progress.iter().find(|p| p.id == leader).map(|p| p.matched).unwrap_or(0);
    let learner_match = progress.iter().find(|p| p.id == id).map(|p| p.matched).unwrap_or(0);
    learner_match * 100 >= leader_match * LEARNER_READY_PERCENT
}

/// MemberPromote on the leader.
pub async fn promote(server: &EtcdServer, id: u64) -> Result<Members, Error> {
    match server.membership.read().members.get(&id) {
        None => return Err(Error::MemberNotFound),
        Some(m) if !m.is_learner => return Err(Error::MemberNotLearner),
        Some(_) => {}
    }
    let progress = progress(server).await?;
    if !learner_ready(&progress, server.config.member_id, id) {
        return Err(Error::LearnerNotReady);
    }
    if server.config.strict_reconfig_check && !ready_to_add_voter(server) {
        return Err(Error::MemberNotEnoughStarted);
    }
    info!(member = format_args!("{id:x}"), "promoting learner");
    propose_change(server, ConfChangeType::AddNode, id, None).await
}

/// MemberUpdate: new peer URLs, through raft (no configuration change).
pub async fn update(server: &EtcdServer, id: u64, peer_urls: Vec<String>) -> Result<Members, Error> {
    check_urls(&peer_urls)?;
    {
        let m = server.membership.read();
        if !m.members.contains_key(&id) {
            return Err(Error::MemberNotFound);
        }
        if m.peer_url_taken(&peer_urls, id) {
            return Err(Error::PeerUrlExist);
        }
    }
    members_of(server.propose(Request::MemberPeerUrls(skiffpb::MemberPeerUrls { id, peer_urls })).await)
}

/// Publishes this member's name and client URLs through raft once a leader exists (on
/// every start, so new flags take effect and the member has caught up). Until they are
/// recorded the member does not serve clients (`EtcdServer::ready`), as etcd waits for its
/// publish before serving, so every client sees the member listed with its name.
pub fn spawn_publish_attributes(server: Arc<EtcdServer>) {
    tokio::spawn(async move {
        let mut status = server.node.watch_status();
        loop {
            let joined = server.membership.read().members.contains_key(&server.config.member_id);
            if status.borrow_and_update().leader_id == 0 || !joined {
                // No leader yet, or joining (the membership arrives with the leader's
                // snapshot): look again when the node's status changes, or soon.
                if let Ok(Err(_)) = tokio::time::timeout(PUBLISH_RETRY_INTERVAL, status.changed()).await {
                    return; // the node stopped
                }
                continue;
            }
            let want_urls = server.config.advertise_client_urls.clone();
            // Published on every start, even when unchanged, as etcd does: its commit on
            // this member also means the member has caught up to the cluster as it was
            // when the member started, before it serves any (serializable) read.
            let req = skiffpb::MemberAttributes {
                id: server.config.member_id,
                name: server.config.name.clone(),
                client_urls: want_urls,
            };
            match server.propose(Request::MemberAttributes(req)).await {
                Ok(_) => {
                    info!(name = %server.config.name, "published member attributes; ready to serve clients");
                    server.ready.send_replace(true);
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "publishing member attributes failed; retrying");
                    tokio::time::sleep(PUBLISH_RETRY_INTERVAL).await;
                }
            }
        }
    });
}

/// With `--auto-promote-learners`, the leader promotes each learner once it is ready.
pub fn spawn_auto_promote(server: Arc<EtcdServer>) {
    if !server.config.auto_promote_learners {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(AUTO_PROMOTE_INTERVAL);
        loop {
            tick.tick().await;
            if !server.node.status().is_leader {
                continue;
            }
            let learners: Vec<u64> =
                server.membership.read().members.values().filter(|m| m.is_learner).map(|m| m.id).collect();
            for id in learners {
                match promote(&server, id).await {
                    Ok(_) => info!(member = format_args!("{id:x}"), "learner caught up; promoted automatically"),
                    Err(Error::LearnerNotReady) | Err(Error::NotLeader) => {}
                    Err(e) => warn!(member = format_args!("{id:x}"), error = %e, "auto-promotion failed"),
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: u64, matched: u64) -> PeerProgress {
        PeerProgress { id, matched, recent_active: true, is_learner: id == 9 }
    }

    #[test]
    fn a_learner_is_ready_at_ninety_percent_of_the_leader_log() {
        assert!(learner_ready(&[p(1, 1000), p(9, 900)], 1, 9));
        assert!(!learner_ready(&[p(1, 1000), p(9, 899)], 1, 9));
        assert!(!learner_ready(&[p(1, 1000)], 1, 9), "an unknown learner is not ready");
    }

    #[test]
    fn member_urls_must_be_absolute_http_urls_with_ports() {
        assert!(check_urls(&["http://127.0.0.1:2380".into()]).is_ok());
        assert_eq!(check_urls(&[]), Err(Error::MemberBadUrls));
        assert_eq!(check_urls(&["127.0.0.1:2380".into()]), Err(Error::MemberBadUrls));
        assert_eq!(check_urls(&["ftp://h:1".into()]), Err(Error::MemberBadUrls));
    }
}
