//! The cluster's membership as the state machine records it (etcd's `membership.RaftCluster`):
//! members with their names, peer and client URLs and learner flag, plus the IDs removed for
//! good. It changes only by applying raft entries (conf changes, attribute publishes, peer
//! URL updates) and is stored with the applied index, so every member holds the same
//! membership at the same index, and a restart resumes from exactly the applied one.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use skiff_raft::raft::eraftpb::ConfState;

use crate::error::Error;
use crate::proto::etcdserverpb as pb;
use crate::proto::skiffpb;

/// etcd's limit on learners in a cluster (`MaxLearners`).
pub const LEARNERS_MAX: usize = 1;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Membership {
    pub members: BTreeMap<u64, skiffpb::Member>,
    pub removed: BTreeSet<u64>,
}

impl Membership {
    /// The initial members of a new cluster, from `--initial-cluster`.
    pub fn bootstrap(members: &[(u64, String, Vec<String>)]) -> Membership {
        let mut m = Membership::default();
        for (id, _name, peer_urls) in members {
            // Names and client URLs arrive when each member publishes its attributes, as in
            // etcd (an unstarted member is listed without a name).
            m.members.insert(*id, skiffpb::Member { id: *id, peer_urls: peer_urls.clone(), ..Default::default() });
        }
        m
    }

    pub fn decode(bytes: &[u8]) -> Result<Membership, Error> {
        let stored = skiffpb::Membership::decode(bytes)
            .map_err(|e| Error::Internal(format!("stored membership is corrupt: {e}")))?;
        Ok(Membership::from_proto(stored))
    }

    pub fn from_proto(stored: skiffpb::Membership) -> Membership {
        Membership {
            members: stored.members.into_iter().map(|m| (m.id, m)).collect(),
            removed: stored.removed.into_iter().collect(),
        }
    }

    pub fn to_proto(&self) -> skiffpb::Membership {
        skiffpb::Membership {
            members: self.members.values().cloned().collect(),
            removed: self.removed.iter().copied().collect(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    /// The raft configuration this membership is (one change at a time: never joint).
    pub fn conf_state(&self) -> ConfState {
        let mut cs = ConfState::default();
        for m in self.members.values() {
            if m.is_learner {
                cs.learners.push(m.id);
            } else {
                cs.voters.push(m.id);
            }
        }
        cs
    }

    pub fn voters(&self) -> usize {
        self.members.values().filter(|m| !m.is_learner).count()
    }

    pub fn learners(&self) -> usize {
        self.members.values().filter(|m| m.is_learner).count()
    }

    /// The member whose peer URLs are exactly `urls` (order-insensitive).
    pub fn find_by_peer_urls(&self, urls: &[String]) -> Option<&skiffpb::Member> {
        let mut want = urls.to_vec();
        want.sort();
        self.members.values().find(|m| {
            let mut have = m.peer_urls.clone();
            have.sort();
            have == want
        })
    }

    /// Whether any member other than `except` already uses one of `urls`.
    pub fn peer_url_taken(&self, urls: &[String], except: u64) -> bool {
        self.members.values().any(|m| m.id != except && m.peer_urls.iter().any(|u| urls.contains(u)))
    }

    pub fn to_pb(&self) -> Vec<pb::Member> {
        self.members.values().map(member_to_pb).collect()
    }
}

pub fn member_to_pb(m: &skiffpb::Member) -> pb::Member {
    pb::Member {
        id: m.id,
        name: m.name.clone(),
        peer_ur_ls: m.peer_urls.clone(),
        client_ur_ls: m.client_urls.clone(),
        is_learner: m.is_learner,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_derives_the_raft_configuration() {
        let mut m = Membership::bootstrap(&[
            (3, "c".into(), vec!["http://c".into()]),
            (1, "a".into(), vec!["http://a".into()]),
        ]);
        m.members.insert(7, skiffpb::Member { id: 7, is_learner: true, ..Default::default() });
        m.removed.insert(9);
        let back = Membership::decode(&m.encode()).unwrap();
        assert_eq!(back, m);
        let cs = back.conf_state();
        assert_eq!(cs.voters, vec![1, 3]);
        assert_eq!(cs.learners, vec![7]);
        assert_eq!(back.find_by_peer_urls(&["http://c".into()]).map(|m| m.id), Some(3));
        assert!(back.peer_url_taken(&["http://a".into()], 3));
        assert!(!back.peer_url_taken(&["http://a".into()], 1));
    }
}
