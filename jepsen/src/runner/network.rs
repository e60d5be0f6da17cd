//! The network between members that the nemesis cuts (`--net`): the userspace
//! [`PeerProxies`] on loopback, or a [`NetLab`] of network namespaces cut by nftables.
//!
//! The nemesis says *what* to cut ([`Cut`]), in member indices; this module turns it into
//! proxy link states or nft drop rules. Either way clients keep reaching every member from
//! the runner's namespace: only member-to-member traffic is cut, as the proxies do.

use anyhow::bail;

use super::proxy::{LinkState, PeerProxies, ProxyCounts};
use crate::netns::{Addr, NetLab};

/// Share of packets the loss fault drops on each member-to-member path in `--net netns`
/// (TCP retransmits them: links get slow and lumpy, not broken).
pub const NETNS_LOSS_PERCENT: u8 = 10;
/// Chance, in millionths, that the drop fault loses a proxied chunk (each loss closes its
/// connection: a TCP stream cannot skip bytes).
pub const PROXY_DROP_CHUNK_PER_MILLION: u32 = 20_000;

/// A network fault, in member indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Members of different groups cannot reach each other, both ways.
    Groups(Vec<Vec<usize>>),
    /// Each of these members reaches only its two neighbours on a ring, in this order.
    Ring(Vec<usize>),
    /// Nothing `from` sends reaches any of `to`; it still hears them.
    OneWay { from: usize, to: Vec<usize> },
    /// Every link between these members loses packets (proxy: chunks) at random.
    Loss(Vec<usize>),
    /// Every link is slowed (proxy only).
    Delay { delay_ms: u64, jitter_ms: u64 },
}

pub enum Network {
    Proxy(PeerProxies),
    Netns(NetLab),
}

impl Network {
    /// Applies `cut` on top of a healed network; returns what was done, in a few words.
    pub fn apply(&mut self, cut: &Cut) -> anyhow::Result<String> {
        match self {
            Network::Proxy(proxies) => {
                let state = match cut {
                    Cut::Groups(groups) => {
                        let members: usize = groups.iter().flatten().max().map_or(0, |m| m + 1);
                        // Only listed members are cut: absent slots stay out of it.
                        let mut state = LinkState::partitioned(members, groups);
                        let listed: Vec<usize> = groups.iter().flatten().copied().collect();
                        state.retain(|from, to| listed.contains(&from) && listed.contains(&to));
                        state
                    }
                    Cut::Ring(members) => LinkState::ring_of(members),
                    Cut::OneWay { from, to } => LinkState::one_way(*from, to),
                    Cut::Loss(_) => LinkState::lossy(PROXY_DROP_CHUNK_PER_MILLION),
                    Cut::Delay {
                        delay_ms,
                        jitter_ms,
                    } => LinkState::slow(*delay_ms, *jitter_ms),
                };
                proxies.set_links(state);
                Ok("in the peer proxies".to_owned())
            }
            Network::Netns(lab) => {
                match cut {
                    Cut::Groups(groups) => {
                        for (i, a) in groups.iter().enumerate() {
                            for b in &groups[i + 1..] {
                                lab.partition(a, b)?;
                            }
                        }
                    }
                    Cut::Ring(members) => {
                        let n = members.len();
                        for i in 0..n {
                            for j in i + 1..n {
                                let neighbours = j - i == 1 || (i == 0 && j == n - 1);
                                if !neighbours {
                                    lab.partition(&[members[i]], &[members[j]])?;
                                }
                            }
                        }
                    }
                    Cut::OneWay { from, to } => {
                        for &t in to.iter().filter(|&&t| t != *from) {
                            lab.drop_from(t, Addr::Member(*from), 100)?;
                        }
                    }
                    Cut::Loss(members) => {
                        for &t in members {
                            for &f in members.iter().filter(|&&f| f != t) {
                                lab.drop_from(t, Addr::Member(f), NETNS_LOSS_PERCENT)?;
                            }
                        }
                    }
                    Cut::Delay { .. } => {
                        bail!("--net netns cannot delay packets (that needs tc netem); use --net proxy")
                    }
                }
                Ok(format!(
                    "{} nft drop rules in the members' namespaces",
                    lab.drops().len()
                ))
            }
        }
    }

    /// Undoes every cut.
    pub fn heal(&mut self) -> anyhow::Result<()> {
        match self {
            Network::Proxy(proxies) => {
                proxies.heal();
                Ok(())
            }
            Network::Netns(lab) => lab.heal(),
        }
    }

    /// Tells the proxies which process is member `member` now (nothing to do in netns mode:
    /// the namespace says who a packet is from).
    pub fn set_pid(&self, member: usize, pid: Option<u32>) {
        if let Network::Proxy(proxies) = self {
            proxies.set_pid(member, pid);
        }
    }

    /// What the proxies counted (zeros in netns mode).
    pub fn proxy_counts(&self) -> ProxyCounts {
        match self {
            Network::Proxy(proxies) => proxies.counts(),
            Network::Netns(_) => ProxyCounts::default(),
        }
    }

    /// The namespace member `member` runs in, in netns mode.
    pub fn namespace(&self, member: usize) -> Option<String> {
        match self {
            Network::Proxy(_) => None,
            Network::Netns(lab) => Some(lab.namespace(member)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn proxy_cuts_leave_members_outside_the_groups_alone() {
        let proxies = PeerProxies::start(&[1, 2, 3, 4, 5]).await.unwrap();
        let mut net = Network::Proxy(proxies);
        net.apply(&Cut::Groups(vec![vec![0], vec![2, 3]])).unwrap();
        let Network::Proxy(proxies) = &net else {
            unreachable!()
        };
        let state = proxies.links();
        assert!(state.is_cut(0, 2) && state.is_cut(3, 0) && !state.is_cut(2, 3));
        assert!(
            !state.touches(1) && !state.touches(4),
            "slots 1 and 4 are not in the cut"
        );
    }
}
