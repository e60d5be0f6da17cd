//! The lessor: which leases exist, when each expires, and which keys are attached.
//!
//! Grants and revokes go through raft and are applied by the applier (which also persists
//! the lease in the MVCC `lease` column family). Keep-alives only move an expiry in memory on
//! the leader, as etcd does; after a restart every lease gets a full TTL again (etcd
//! "refreshes" leases on leader promotion for the same reason: a dead leader's clock says
//! nothing about how long clients have been gone).
//!
//! Checkpoints (etcd's `--experimental-enable-lease-checkpoint`) bound that renewal: the
//! leader periodically replicates the remaining TTL of each long lease through raft, every
//! member records it, and a new leader gives a lease its checkpointed remaining TTL instead
//! of its full TTL. An example with TTL 30 s and a 5 s interval: granted at t=0, checkpointed
//! at t=5 (25 s left) and t=10 (20 s left); the leader dies at t=12; the new leader, elected at
//! t=13, lets the lease expire at t=33 (20 s after its promotion), not at t=43. A keep-alive
//! clears the checkpoint (again through raft), since the lease then has its full TTL again.
//! Checkpoints live in memory only, as in etcd 3.4 (and 3.5 without
//! `--experimental-enable-lease-checkpoint-persist`): after a restart a lease has none.
//!
//! Lock order: `Lessor::inner` is a leaf lock; never call out while holding it.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Leases revoked by one expiry sweep at most; the rest wait for the next sweep so an
/// avalanche of expiries cannot flood raft (etcd's `leaseRevokeRate` plays this role).
pub const EXPIRED_PER_SWEEP_MAX: usize = 1000;

/// Checkpoints per raft proposal at most (etcd's `maxLeaseCheckpointBatchSize`); the
/// leader proposes one batch per expiry sweep, leases left over stay due for the next one.
pub const CHECKPOINTS_PER_PROPOSAL_MAX: usize = 1000;

#[derive(Debug, Clone)]
struct Lease {
    ttl_seconds: i64,
    expiry: Instant,
    /// The remaining TTL the last applied checkpoint recorded (etcd's `remainingTTL`);
    /// 0 when none was, or a keep-alive cleared it.
    checkpoint_remaining_ttl_seconds: i64,
    /// When the leader checkpoints this lease next; `None` while none is scheduled (on a
    /// follower, and on a leader for leases too short to need one).
    next_checkpoint: Option<Instant>,
    keys: BTreeSet<Vec<u8>>,
}

impl Lease {
    fn new(ttl_seconds: i64, now: Instant) -> Self {
        Lease {
            ttl_seconds,
            expiry: now + Duration::from_secs(ttl_seconds.max(0) as u64),
            checkpoint_remaining_ttl_seconds: 0,
            next_checkpoint: None,
            keys: BTreeSet::new(),
        }
    }

    /// What a new leader gives the lease: its checkpointed remaining TTL, else its TTL
    /// (etcd's `getRemainingTTL`).
    fn remaining_ttl_seconds(&self) -> i64 {
        if self.checkpoint_remaining_ttl_seconds > 0 {
            self.checkpoint_remaining_ttl_seconds
        } else {
            self.ttl_seconds
        }
    }
}

/// Whole seconds until `expiry`, truncated, as etcd's `LeaseTimeToLive` reports them
/// (`int64(Remaining().Seconds())`: 29 right after a grant of 30).
fn whole_seconds_until(expiry: Instant, now: Instant) -> i64 {
    expiry.saturating_duration_since(now).as_secs() as i64
}

/// Whole seconds until `expiry`, rounded up (a checkpoint never shortens a lease).
fn seconds_until(expiry: Instant, now: Instant) -> i64 {
    let remaining = expiry.saturating_duration_since(now);
    (remaining.as_millis() as i64 + 999) / 1000
}

/// One lease's remaining TTL, for a `LeaseCheckpoint` proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub id: i64,
    pub remaining_ttl_seconds: i64,
}

/// What `LeaseTimeToLive` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    pub id: i64,
    pub granted_ttl: i64,
    pub remaining_ttl: i64,
    pub keys: Vec<Vec<u8>>,
}

#[derive(Default)]
pub struct Lessor {
    inner: Mutex<HashMap<i64, Lease>>,
    /// The smallest TTL granted; shorter requests are raised to it (etcd: 1.5 election timeouts).
    min_ttl_seconds: i64,
}

impl Lessor {
    pub fn new(min_ttl_seconds: i64) -> Self {
        Self { inner: Mutex::new(HashMap::new()), min_ttl_seconds }
    }

    /// etcd's minimum lease TTL: 1.5 × election timeout, rounded up to whole seconds.
    pub fn min_ttl_for(election_timeout: Duration) -> i64 {
        let ms = election_timeout.as_millis() as i64 * 3 / 2;
        (ms + 999) / 1000
    }

    /// The TTL a grant of `ttl` actually gets.
    pub fn effective_ttl(&self, ttl: i64) -> i64 {
        ttl.max(self.min_ttl_seconds)
    }

    pub fn exists(&self, id: i64) -> bool {
        self.inner.lock().contains_key(&id)
    }

    /// Records a granted lease (applier only).
    pub fn grant(&self, id: i64, ttl_seconds: i64) {
        self.inner.lock().insert(id, Lease::new(ttl_seconds, Instant::now()));
    }

    /// Removes a lease and returns the keys attached to it (applier only).
    pub fn revoke(&self, id: i64) -> Option<Vec<Vec<u8>>> {
        self.inner.lock().remove(&id).map(|l| l.keys.into_iter().collect())
    }

    pub fn attach(&self, id: i64, key: &[u8]) {
        if let Some(l) = self.inner.lock().get_mut(&id) {
            l.keys.insert(key.to_vec());
        }
    }

    pub fn detach(&self, id: i64, key: &[u8]) {
        if let Some(l) = self.inner.lock().get_mut(&id) {
            l.keys.remove(key);
        }
    }

    /// Renews a lease for its full TTL; returns the TTL, or None when it does not exist.
    pub fn renew(&self, id: i64) -> Option<i64> {
        let mut inner = self.inner.lock();
        let lease = inner.get_mut(&id)?;
        lease.expiry = Instant::now() + Duration::from_secs(lease.ttl_seconds.max(0) as u64);
        Some(lease.ttl_seconds)
    }

    pub fn time_to_live(&self, id: i64, with_keys: bool) -> Option<LeaseInfo> {
        let inner = self.inner.lock();
        let lease = inner.get(&id)?;
        Some(LeaseInfo {
            id,
            granted_ttl: lease.ttl_seconds,
            remaining_ttl: whole_seconds_until(lease.expiry, Instant::now()),
            keys: if with_keys { lease.keys.iter().cloned().collect() } else { Vec::new() },
        })
    }

    /// Every lease id, soonest expiry first (etcd's `Leases` sorts by expiry too).
    pub fn ids(&self) -> Vec<i64> {
        let mut leases: Vec<(Instant, i64)> = self.inner.lock().iter().map(|(id, l)| (l.expiry, *id)).collect();
        leases.sort_unstable();
        leases.into_iter().map(|(_, id)| id).collect()
    }

    /// Leases past their expiry, oldest first, at most `EXPIRED_PER_SWEEP_MAX`.
    pub fn expired(&self, now: Instant) -> Vec<i64> {
        let inner = self.inner.lock();
        let mut expired: Vec<(Instant, i64)> =
            inner.iter().filter(|(_, l)| l.expiry <= now).map(|(id, l)| (l.expiry, *id)).collect();
        expired.sort_unstable();
        expired.truncate(EXPIRED_PER_SWEEP_MAX);
        expired.into_iter().map(|(_, id)| id).collect()
    }

    /// Replaces the whole table (applier only, after a snapshot install): exactly the leases
    /// `(id, ttl_seconds)` exist, each with a full TTL from now (as after a restart), with
    /// the keys of `attached` (`(key, lease id)`). A key naming a lease not in `leases`
    /// is skipped: the store would be inconsistent, and the lessor must not invent a lease.
    /// The server calls it with `MvccStore::leases()` and `MvccStore::keys_with_lease()`.
    pub fn reset(&self, leases: &[(i64, i64)], attached: &[(Vec<u8>, i64)]) {
        let now = Instant::now();
        let mut table: HashMap<i64, Lease> =
            leases.iter().map(|&(id, ttl_seconds)| (id, Lease::new(ttl_seconds, now))).collect();
        let mut orphans = 0usize;
        for (key, id) in attached {
            match table.get_mut(id) {
                Some(lease) => {
                    lease.keys.insert(key.clone());
                }
                None => orphans += 1,
            }
        }
        if orphans > 0 {
            tracing::warn!(orphans, "keys attached to leases that do not exist were not attached");
        }
        *self.inner.lock() = table;
    }

    /// etcd's `Promote`, on becoming leader: every lease expires `extend` plus its
    /// checkpointed remaining TTL from now, or its full TTL when it has no checkpoint.
    /// Checkpoints are scheduled afresh by `due_checkpoints`.
    pub fn refresh_all(&self, extend: Duration) {
        let now = Instant::now();
        for l in self.inner.lock().values_mut() {
            l.expiry = now + extend + Duration::from_secs(l.remaining_ttl_seconds().max(0) as u64);
            l.next_checkpoint = None;
        }
    }

    /// Records a checkpointed remaining TTL (applier only, on every member); 0 clears it.
    /// Returns whether the lease exists (a checkpoint may race with a revoke).
    pub fn checkpoint(&self, id: i64, remaining_ttl_seconds: i64) -> bool {
        match self.inner.lock().get_mut(&id) {
            Some(l) => {
                l.checkpoint_remaining_ttl_seconds = remaining_ttl_seconds.max(0);
                true
            }
            None => false,
        }
    }

    /// Whether the lease has a checkpointed remaining TTL, which a keep-alive must clear.
    pub fn has_checkpoint(&self, id: i64) -> bool {
        self.inner.lock().get(&id).is_some_and(|l| l.checkpoint_remaining_ttl_seconds > 0)
    }

    /// The leader's checkpoint sweep at `now`, at most `max` checkpoints, soonest due first.
    ///
    /// As etcd's lessor: a lease is scheduled one `interval` ahead while its remaining TTL
    /// (checkpointed, else full) is longer than the interval, so short leases never cost a
    /// raft entry; when due, its remaining TTL is checkpointed if it is below the granted
    /// TTL (a lease just renewed needs none). A due lease is scheduled again at once when
    /// its remaining TTL still exceeds the interval (etcd waits for the checkpoint to be
    /// applied, and drops a lease it skipped; here a skipped lease stays scheduled).
    pub fn due_checkpoints(&self, now: Instant, interval: Duration, max: usize) -> Vec<Checkpoint> {
        // etcd compares with the interval's whole seconds.
        let interval_seconds = interval.as_secs() as i64;
        let mut inner = self.inner.lock();
        let mut due: Vec<(Instant, i64)> = Vec::new();
        for (id, l) in inner.iter_mut() {
            match l.next_checkpoint {
                None if l.remaining_ttl_seconds() > interval_seconds => l.next_checkpoint = Some(now + interval),
                Some(at) if at <= now => due.push((at, *id)),
                _ => {}
            }
        }
        due.sort_unstable();
        due.truncate(max);
        let mut out = Vec::with_capacity(due.len());
        for (_, id) in due {
            let l = inner.get_mut(&id).expect("a lease found due is in the table");
            let remaining_ttl_seconds = seconds_until(l.expiry, now);
            l.next_checkpoint = (remaining_ttl_seconds > interval_seconds).then(|| now + interval);
            // An expired lease is being revoked; 0 would mean "no checkpoint" anyway.
            if remaining_ttl_seconds > 0 && remaining_ttl_seconds < l.ttl_seconds {
                out.push(Checkpoint { id, remaining_ttl_seconds });
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_ttl_matches_etcd_defaults() {
        // 1000 ms election timeout → 1.5 s → 2 s.
        assert_eq!(Lessor::min_ttl_for(Duration::from_millis(1000)), 2);
        assert_eq!(Lessor::min_ttl_for(Duration::from_millis(3000)), 5);
    }

    #[test]
    fn attach_revoke_returns_keys() {
        let l = Lessor::new(2);
        l.grant(7, 10);
        l.attach(7, b"a");
        l.attach(7, b"b");
        l.detach(7, b"a");
        assert_eq!(l.revoke(7), Some(vec![b"b".to_vec()]));
        assert!(!l.exists(7));
        assert_eq!(l.revoke(7), None);
    }

    #[test]
    fn reset_replaces_the_whole_table() {
        let l = Lessor::new(1);
        l.grant(1, 10);
        l.attach(1, b"old");
        l.grant(2, 20);
        l.reset(&[(2, 30), (3, 40)], &[(b"a".to_vec(), 2), (b"b".to_vec(), 3), (b"c".to_vec(), 3), (b"x".to_vec(), 9)]);
        assert!(!l.exists(1), "a lease absent from the new table is gone");
        assert!(!l.exists(9), "a key's unknown lease is not invented");
        let two = l.time_to_live(2, true).unwrap();
        assert_eq!((two.granted_ttl, two.keys), (30, vec![b"a".to_vec()]));
        assert!(two.remaining_ttl >= 29, "a full TTL from now: {}", two.remaining_ttl);
        assert_eq!(l.time_to_live(3, true).unwrap().keys, vec![b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(l.len(), 2);
        l.reset(&[], &[]);
        assert!(l.is_empty());
    }

    #[test]
    fn promotion_gives_the_checkpointed_remaining_ttl() {
        let l = Lessor::new(1);
        l.grant(1, 30);
        l.grant(2, 30);
        assert!(l.checkpoint(1, 10));
        assert!(!l.checkpoint(9, 10), "a checkpoint of a revoked lease is ignored");
        assert!(l.has_checkpoint(1) && !l.has_checkpoint(2));
        l.refresh_all(Duration::ZERO);
        // Reported truncated, as etcd does: a moment after the refresh, 9 of 10 and 29 of 30.
        let remaining = |id| l.time_to_live(id, false).unwrap().remaining_ttl + 1;
        assert_eq!(remaining(1), 10, "the checkpointed remaining TTL, not the granted 30");
        assert_eq!(remaining(2), 30, "no checkpoint: the full TTL");
        assert_eq!(l.time_to_live(1, false).unwrap().granted_ttl, 30);
        // A keep-alive's clearing checkpoint (0) brings the full TTL back; `extend` is added.
        assert!(l.checkpoint(1, 0));
        assert!(!l.has_checkpoint(1));
        l.refresh_all(Duration::from_secs(2));
        assert_eq!((remaining(1), remaining(2)), (32, 32));
    }

    #[test]
    fn checkpoints_follow_the_interval_for_long_leases_only() {
        let l = Lessor::new(1);
        l.grant(1, 30);
        l.grant(2, 5); // not longer than the interval: never checkpointed
        let t0 = Instant::now();
        let interval = Duration::from_secs(5);
        // A leader's sweep, its proposal applied at once.
        let sweep = |secs: u64| {
            let due = l.due_checkpoints(t0 + Duration::from_secs(secs), interval, 10);
            for c in &due {
                assert!(l.checkpoint(c.id, c.remaining_ttl_seconds));
            }
            due.iter().map(|c| (c.id, c.remaining_ttl_seconds)).collect::<Vec<_>>()
        };
        assert_eq!(sweep(0), vec![], "scheduled one interval ahead");
        assert_eq!(sweep(4), vec![]);
        assert_eq!(sweep(5), vec![(1, 25)]);
        assert_eq!(sweep(6), vec![], "the next one an interval later");
        assert_eq!(sweep(10), vec![(1, 20)]);
        assert_eq!(sweep(15), vec![(1, 15)]);
        assert_eq!(sweep(20), vec![(1, 10)]);
        assert_eq!(sweep(25), vec![(1, 5)], "the last one");
        assert_eq!(sweep(30), vec![], "5 s left is not above the interval: no more");
        assert_eq!(sweep(40), vec![]);
    }

    #[test]
    fn a_lease_at_its_full_ttl_is_not_checkpointed_but_stays_scheduled() {
        let l = Lessor::new(1);
        l.grant(1, 30);
        let t0 = Instant::now();
        let interval = Duration::from_millis(500);
        let at = |ms: u64| l.due_checkpoints(t0 + Duration::from_millis(ms), interval, 10);
        assert_eq!(at(0), vec![]);
        assert_eq!(at(500), vec![], "29.5 s left rounds up to the full 30: nothing to record");
        assert_eq!(at(1500), vec![Checkpoint { id: 1, remaining_ttl_seconds: 29 }]);
    }

    #[test]
    fn checkpoint_sweeps_are_bounded_and_soonest_first() {
        let l = Lessor::new(1);
        for id in 1..=2500 {
            l.grant(id, 60);
        }
        let t0 = Instant::now();
        let interval = Duration::from_secs(1);
        assert!(l.due_checkpoints(t0, interval, CHECKPOINTS_PER_PROPOSAL_MAX).is_empty());
        let later = t0 + Duration::from_secs(2);
        let sizes: Vec<usize> =
            (0..4).map(|_| l.due_checkpoints(later, interval, CHECKPOINTS_PER_PROPOSAL_MAX).len()).collect();
        assert_eq!(sizes, [1000, 1000, 500, 0], "every lease exactly once, in bounded batches");
        // Promotion forgets the schedule: the new leader starts one interval from its sweep.
        l.refresh_all(Duration::ZERO);
        assert!(l.due_checkpoints(later, interval, usize::MAX).is_empty());
        assert_eq!(l.due_checkpoints(later + interval, interval, usize::MAX).len(), 2500);
    }

    #[test]
    fn expiry_is_reported_and_renew_extends() {
        let l = Lessor::new(0);
        l.grant(1, 0);
        l.grant(2, 100);
        assert_eq!(l.expired(Instant::now()), vec![1]);
        assert_eq!(l.renew(2), Some(100));
        let info = l.time_to_live(2, true).unwrap();
        assert_eq!(info.granted_ttl, 100);
        assert!(info.remaining_ttl >= 99 && info.remaining_ttl <= 100);
    }
}
