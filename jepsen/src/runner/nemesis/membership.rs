//! Membership faults: remove a member and add it back empty (`membership`), and grow the
//! cluster to 5 members with learners and shrink it back to 3 (`grow-shrink`).

use std::time::Duration;

use rand::seq::IndexedRandom as _;
use rand::Rng as _;

use super::{remove_contents, Active, FaultWindow, Nemesis};
use crate::runner::cli::{FaultKind, GROWN_MEMBERS, SHRUNK_MEMBERS_MIN};
use crate::runner::cluster::ADMIN_REQUEST_TIMEOUT;

/// Attempts of `member add` when a removed member comes back.
const MEMBER_ADD_ATTEMPTS_MAX: usize = 10;
/// Attempts of `member remove` (a leader change can make one time out).
const MEMBER_REMOVE_ATTEMPTS_MAX: usize = 3;
/// How long grow-shrink tries to promote a learner it added (it must catch up first).
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(20);
/// Between promote attempts.
const PROMOTE_RETRY_INTERVAL: Duration = Duration::from_millis(300);

impl Nemesis {
    /// `member remove` through another member, then kill the removed one and wipe its data.
    pub(super) async fn start_membership(&mut self) -> (Active, FaultWindow) {
        let (member, how) = self.one_target().await;
        let name = self.name(member);
        let id = self.admin.ids[member];
        if let Err(error) = self.remove_member(member).await {
            let detail = format!("{how}: member remove {id:x} failed: {error}; nothing changed");
            return (
                Active::Nothing,
                self.window(FaultKind::Membership, vec![name], detail),
            );
        }
        let (killed, wiped) = self.kill_and_wipe(member);
        let mut detail = format!("{how}: removed {id:x}, killed, data wiped");
        if let Err(e) = killed {
            detail += &format!("; kill error: {e:#}");
        }
        if let Err(e) = wiped {
            detail += &format!("; wipe error: {e}");
        }
        (
            Active::Removed(member),
            self.window(FaultKind::Membership, vec![name], detail),
        )
    }

    /// `member remove` of slot `member`, through another member of the cluster (a few
    /// tries: the leader may be changing); the slot leaves [`Cluster::present`].
    async fn remove_member(&mut self, member: usize) -> Result<(), String> {
        let id = self.admin.ids[member];
        let others: Vec<usize> = self.present().into_iter().filter(|&m| m != member).collect();
        let mut last_error = String::new();
        for attempt in 0..MEMBER_REMOVE_ATTEMPTS_MAX {
            let via = others[(attempt + self.rng.random_range(0..others.len())) % others.len()];
            let mut client = self.admin.client(via);
            let answer =
                tokio::time::timeout(ADMIN_REQUEST_TIMEOUT, client.member_remove(id)).await;
            match answer {
                Ok(Ok(_)) => {
                    self.cluster.lock().expect("cluster lock poisoned").members_mut()[member]
                        .in_cluster = false;
                    self.admin.left(member);
                    return Ok(());
                }
                // etcd answers a retried remove that did go through with "member not found".
                Ok(Err(e)) if attempt > 0 && crate::runner::client::describe(&e).contains("not found") => {
                    self.cluster.lock().expect("cluster lock poisoned").members_mut()[member]
                        .in_cluster = false;
                    self.admin.left(member);
                    return Ok(());
                }
                Ok(Err(e)) => last_error = crate::runner::client::describe(&e),
                Err(_) => last_error = "timed out".to_owned(),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Err(last_error)
    }

    /// Kills slot `member` and empties its data dir (its contents, not the directory: it
    /// may be a lazyfs mount point).
    fn kill_and_wipe(&mut self, member: usize) -> (anyhow::Result<()>, std::io::Result<()>) {
        let mut cluster = self.cluster.lock().expect("cluster lock poisoned");
        let killed = cluster.kill(member);
        let data = cluster.members()[member].data_dir();
        let wiped = match std::fs::create_dir_all(&data) {
            Ok(()) => remove_contents(&data),
            Err(e) => Err(e),
        };
        (killed, wiped)
    }

    /// `member add` of slot `member`'s peer URL (as a learner if `learner`) through a
    /// member of the cluster, then start it, empty, joining with the membership that
    /// `member add` answered. Returns its new ID.
    async fn join(&mut self, member: usize, learner: bool) -> anyhow::Result<u64> {
        let (url, name, client_url) = {
            let cluster = self.cluster.lock().expect("cluster lock poisoned");
            (
                cluster.peer_url(member),
                cluster.name(member).to_owned(),
                cluster.members()[member].client_url(),
            )
        };
        let present: Vec<usize> = self.present().into_iter().filter(|&m| m != member).collect();
        let mut last_error = String::new();
        for attempt in 0..MEMBER_ADD_ATTEMPTS_MAX {
            let via = present[attempt % present.len()];
            let mut client = self.admin.client(via);
            let options = learner.then(|| etcd_client::MemberAddOptions::new().with_is_learner());
            let answer = tokio::time::timeout(
                ADMIN_REQUEST_TIMEOUT,
                client.member_add([url.as_str()], options),
            )
            .await;
            match answer {
                Ok(Ok(added)) => {
                    let id = added
                        .member()
                        .map(|m| m.id())
                        .ok_or_else(|| anyhow::anyhow!("member add answered no member"))?;
                    // The joining member's --initial-cluster must list the members exactly
                    // as the cluster has them now (etcd compares), itself included.
                    let initial_cluster = added
                        .member_list()
                        .iter()
                        .filter_map(|m| {
                            let peer = m.peer_urls().first()?;
                            let n = if m.id() == id || (m.name().is_empty() && peer == &url) {
                                name.clone()
                            } else {
                                m.name().to_owned()
                            };
                            Some(format!("{n}={peer}"))
                        })
                        .collect::<Vec<_>>()
                        .join(",");
                    {
                        let mut cluster = self.cluster.lock().expect("cluster lock poisoned");
                        cluster.set_joining(member, &initial_cluster);
                        cluster.members_mut()[member].in_cluster = true;
                        cluster.spawn(member)?;
                    }
                    self.admin.joined(member, id, &client_url).await?;
                    return Ok(id);
                }
                Ok(Err(e)) => last_error = crate::runner::client::describe(&e),
                Err(_) => last_error = "timed out".into(),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        anyhow::bail!("member add failed {MEMBER_ADD_ATTEMPTS_MAX} times; last: {last_error}")
    }

    /// Adds a removed member back: `member add`, start it empty with
    /// `--initial-cluster-state existing` and its new ID.
    pub(super) async fn add_back(&mut self, member: usize) -> anyhow::Result<()> {
        self.join(member, false).await.map(drop)
    }

    /// One grow-shrink step: towards 5 members, then back towards 3, in turn.
    pub(super) async fn grow_or_shrink(&mut self) -> (Active, FaultWindow) {
        let start = self.window(FaultKind::GrowShrink, Vec::new(), String::new());
        let present = self.present();
        let slots = self.cluster.lock().expect("cluster lock poisoned").members().len();
        if present.len() >= GROWN_MEMBERS.min(slots) {
            self.growing = false;
        } else if present.len() <= SHRUNK_MEMBERS_MIN {
            self.growing = true;
        }
        let (targets, detail) = if self.growing {
            let member = (0..slots)
                .find(|m| !present.contains(m))
                .expect("fewer members than slots");
            let name = self.name(member);
            (vec![name.clone()], self.grow(member, present.len()).await)
        } else {
            let member = *present.choose(&mut self.rng).expect("a cluster has members");
            let name = self.name(member);
            (vec![name], self.shrink(member, present.len()).await)
        };
        (
            Active::Nothing,
            FaultWindow {
                targets,
                detail,
                ..start
            },
        )
    }

    /// Adds slot `member` as a learner, starts it empty, promotes it once it caught up.
    async fn grow(&mut self, member: usize, size: usize) -> String {
        let name = self.name(member);
        // Whatever an earlier life of the slot left (it was removed and wiped, or never
        // started): a joining member starts empty.
        let (_, wiped) = self.kill_and_wipe(member);
        if let Err(e) = wiped {
            return format!("grow {size} -> {}: could not empty {name}'s data dir: {e}", size + 1);
        }
        let added_at = std::time::Instant::now();
        let id = match self.join(member, true).await {
            Ok(id) => id,
            Err(e) => {
                return format!("grow {size} -> {}: adding {name} as a learner failed: {e:#}", size + 1)
            }
        };
        let deadline = added_at + PROMOTE_TIMEOUT;
        let mut last_error = String::new();
        let mut attempts = 0;
        while std::time::Instant::now() < deadline {
            attempts += 1;
            let via = self.present().into_iter().find(|&m| m != member).expect("other members");
            let mut client = self.admin.client(via);
            match tokio::time::timeout(ADMIN_REQUEST_TIMEOUT, client.member_promote(id)).await {
                Ok(Ok(_)) => {
                    return format!(
                        "grew {size} -> {}: added {name} ({id:x}) as a learner, promoted to voter after {:.1} s ({attempts} promote attempts)",
                        size + 1,
                        added_at.elapsed().as_secs_f64()
                    )
                }
                Ok(Err(e)) => last_error = crate::runner::client::describe(&e),
                Err(_) => last_error = "timed out".into(),
            }
            tokio::time::sleep(PROMOTE_RETRY_INTERVAL).await;
        }
        format!(
            "grew {size} -> {}: added {name} ({id:x}) as a learner; NOT promoted within {PROMOTE_TIMEOUT:?} (last: {last_error}); it stays a learner",
            size + 1
        )
    }

    /// Removes slot `member` (maybe the leader), kills it and wipes its data.
    async fn shrink(&mut self, member: usize, size: usize) -> String {
        let name = self.name(member);
        let id = self.admin.ids[member];
        let role = if self.admin.leader().await == Some(member) {
            "the leader"
        } else {
            "a follower"
        };
        if let Err(e) = self.remove_member(member).await {
            return format!("shrink {size} -> {}: member remove {name} ({id:x}) failed: {e}; nothing changed", size - 1);
        }
        let (killed, wiped) = self.kill_and_wipe(member);
        let mut detail = format!(
            "shrank {size} -> {}: removed {name} ({id:x}, {role}), killed, data wiped",
            size - 1
        );
        if let Err(e) = killed {
            detail += &format!("; kill error: {e:#}");
        }
        if let Err(e) = wiped {
            detail += &format!("; wipe error: {e}");
        }
        detail
    }
}
