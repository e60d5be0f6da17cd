//! Judges the lease-lock workload: mutual exclusion of etcd's Lock API, and the safety of
//! lease-guarded writes.
//!
//! # Locks
//!
//! Each critical section (a [`Section`]) holds the lock from its `Lock` response to its
//! `Unlock` request and does a fencing-free read-modify-write of one counter: read `c`,
//! write `c + 1`. If sections never overlap, every acknowledged write is one more than the
//! last, so two sections are judged to have held the lock together when
//!
//! - **lost update**: both wrote the same value (both read the same `c`), or
//! - **overlap**: both wrote, and their holding intervals overlap in real time (B's `Lock`
//!   answered before A's `Unlock` was sent).
//!
//! etcd does not promise mutual exclusion to a client that is not itself fenced: a holder
//! whose lease expires while it (or its member) is paused keeps going after another
//! client was granted the lock. A violation is reported as [`LockVerdict::UnsafeExpected`]
//! ("unsafe (expected without fencing)") with the two sections as evidence, and does not
//! make the run invalid.
//!
//! # Leases
//!
//! A [`LeaseProbe`] grants a lease, puts a key under it, lets it expire (no keep-alive),
//! and once `LeaseTimeToLive` says it expired, tries a put under it again and reads the
//! key. Either succeeding is a real violation ([`LeaseVerdict::Violated`]): a write under
//! an expired lease accepted, or a key outliving its lease.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Evidence kept per finding kind; the rest are counted.
pub const EVIDENCE_MAX: usize = 10;

/// How an operation ended, as far as the client knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Fail,
    Unknown,
}

/// One attempt at a critical section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    pub process: u64,
    pub lease: i64,
    /// When `Lock` was sent, and when it answered (None: never acquired).
    pub invoke_ns: u64,
    pub acquired_ns: Option<u64>,
    /// The counter as read inside the section (None: the read failed; 0: no counter yet).
    pub read: Option<i64>,
    /// The value written (`read + 1`) and how the write ended.
    pub wrote: Option<i64>,
    pub write: Option<Outcome>,
    /// When `Unlock` was sent (None: never, e.g. the run ended).
    pub released_ns: Option<u64>,
}

impl Section {
    fn holds_until(&self, history_end_ns: u64) -> u64 {
        self.released_ns.unwrap_or(history_end_ns)
    }

    fn describe(&self) -> String {
        let mut s = format!(
            "process {} (lease {:x}) held the lock {:.3}s..",
            self.process,
            self.lease,
            self.acquired_ns.unwrap_or(0) as f64 / 1e9
        );
        match self.released_ns {
            Some(r) => {
                let _ = write!(s, "{:.3}s", r as f64 / 1e9);
            }
            None => s.push_str("end"),
        }
        let _ = write!(
            s,
            ", read {:?}, wrote {:?} ({:?})",
            self.read, self.wrote, self.write
        );
        s
    }
}

/// One lease-expiry probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseProbe {
    pub process: u64,
    pub lease: i64,
    pub ttl_s: i64,
    pub key: String,
    pub granted_ns: u64,
    /// When `LeaseTimeToLive` first said the lease is gone (None: never seen expired).
    pub expired_seen_ns: Option<u64>,
    /// A put under the lease after that.
    pub put_after_expiry: Option<Outcome>,
    /// Whether a linearizable read after that still found the key.
    pub key_present_after_expiry: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockVerdict {
    /// No two sections held the lock together.
    Safe,
    /// Some did: "unsafe (expected without fencing)".
    UnsafeExpected,
    /// No two sections both wrote: nothing to compare.
    NotExercised,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseVerdict {
    Holds,
    Violated,
    /// No probe saw its lease expire.
    NotExercised,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockAnalysis {
    pub lock: LockVerdict,
    pub sections: usize,
    pub acquired: usize,
    pub writes_ok: usize,
    pub lost_updates: usize,
    pub overlaps: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lock_evidence: Vec<String>,
    pub lease: LeaseVerdict,
    pub probes: usize,
    pub expiries_seen: usize,
    pub writes_under_expired_lease: usize,
    pub keys_outliving_lease: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lease_evidence: Vec<String>,
}

impl LockAnalysis {
    /// Only lease violations make a run invalid; lock unsafety is expected (see the module
    /// doc).
    pub fn valid(&self) -> bool {
        self.lease != LeaseVerdict::Violated
    }
}

impl std::fmt::Display for LockAnalysis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lock = match self.lock {
            LockVerdict::Safe => "safe".to_owned(),
            LockVerdict::UnsafeExpected => format!(
                "UNSAFE (expected without fencing): {} lost updates, {} overlapping holders",
                self.lost_updates, self.overlaps
            ),
            LockVerdict::NotExercised => "not exercised (fewer than two ok writes)".to_owned(),
        };
        writeln!(
            f,
            "lock mutual exclusion: {lock}; {} sections, {} acquired, {} counter writes ok",
            self.sections, self.acquired, self.writes_ok
        )?;
        for e in &self.lock_evidence {
            writeln!(f, "  {e}")?;
        }
        let lease = match self.lease {
            LeaseVerdict::Holds => "holds",
            LeaseVerdict::Violated => "VIOLATED",
            LeaseVerdict::NotExercised => "not exercised (no expiry seen)",
        };
        writeln!(
            f,
            "lease-guarded writes: {lease}; {} probes, {} expiries seen, {} writes under an expired lease accepted, {} keys outlived their lease",
            self.probes, self.expiries_seen, self.writes_under_expired_lease, self.keys_outliving_lease
        )?;
        for e in &self.lease_evidence {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

/// Judges the sections and probes; `history_end_ns` closes sections never released.
pub fn check(sections: &[Section], probes: &[LeaseProbe], history_end_ns: u64) -> LockAnalysis {
    let acquired: Vec<&Section> = sections
        .iter()
        .filter(|s| s.acquired_ns.is_some())
        .collect();
    let wrote: Vec<&Section> = acquired
        .iter()
        .copied()
        .filter(|s| s.write == Some(Outcome::Ok) && s.wrote.is_some())
        .collect();
    let mut evidence = Vec::new();
    let mut lost_updates = 0;
    let mut by_value: Vec<&Section> = wrote.clone();
    by_value.sort_by_key(|s| (s.wrote, s.acquired_ns));
    for pair in by_value.windows(2) {
        if pair[0].wrote == pair[1].wrote {
            lost_updates += 1;
            if evidence.len() < EVIDENCE_MAX {
                evidence.push(format!(
                    "lost update: both wrote {}: {} / {}",
                    pair[0].wrote.unwrap_or_default(),
                    pair[0].describe(),
                    pair[1].describe()
                ));
            }
        }
    }
    let mut overlaps = 0;
    let mut by_start = wrote.clone();
    by_start.sort_by_key(|s| s.acquired_ns);
    for (i, a) in by_start.iter().enumerate() {
        let a_end = a.holds_until(history_end_ns);
        for b in &by_start[i + 1..] {
            let b_start = b.acquired_ns.expect("acquired");
            if b_start >= a_end {
                break;
            }
            overlaps += 1;
            if evidence.len() < 2 * EVIDENCE_MAX {
                evidence.push(format!("overlap: {} / {}", a.describe(), b.describe()));
            }
        }
    }
    let lock = if lost_updates + overlaps > 0 {
        LockVerdict::UnsafeExpected
    } else if wrote.len() < 2 {
        LockVerdict::NotExercised
    } else {
        LockVerdict::Safe
    };

    let mut lease_evidence = Vec::new();
    let mut writes_under_expired_lease = 0;
    let mut keys_outliving_lease = 0;
    let mut expiries_seen = 0;
    for p in probes {
        let Some(seen) = p.expired_seen_ns else {
            continue;
        };
        expiries_seen += 1;
        let at = seen as f64 / 1e9;
        if p.put_after_expiry == Some(Outcome::Ok) {
            writes_under_expired_lease += 1;
            if lease_evidence.len() < EVIDENCE_MAX {
                lease_evidence.push(format!(
                    "process {}: a put under lease {:x} was accepted after the lease was seen expired at {at:.3}s",
                    p.process, p.lease
                ));
            }
        }
        if p.key_present_after_expiry == Some(true) {
            keys_outliving_lease += 1;
            if lease_evidence.len() < EVIDENCE_MAX {
                lease_evidence.push(format!(
                    "process {}: {:?} was still readable after its lease {:x} was seen expired at {at:.3}s",
                    p.process, p.key, p.lease
                ));
            }
        }
    }
    let lease = if writes_under_expired_lease + keys_outliving_lease > 0 {
        LeaseVerdict::Violated
    } else if expiries_seen == 0 {
        LeaseVerdict::NotExercised
    } else {
        LeaseVerdict::Holds
    };
    LockAnalysis {
        lock,
        sections: sections.len(),
        acquired: acquired.len(),
        writes_ok: wrote.len(),
        lost_updates,
        overlaps,
        lock_evidence: evidence,
        lease,
        probes: probes.len(),
        expiries_seen,
        writes_under_expired_lease,
        keys_outliving_lease,
        lease_evidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(process: u64, acquired: u64, released: u64, read: i64) -> Section {
        Section {
            process,
            lease: process as i64 + 100,
            invoke_ns: acquired.saturating_sub(1),
            acquired_ns: Some(acquired),
            read: Some(read),
            wrote: Some(read + 1),
            write: Some(Outcome::Ok),
            released_ns: Some(released),
        }
    }

    fn probe(put: Outcome, present: bool) -> LeaseProbe {
        LeaseProbe {
            process: 7,
            lease: 0xabc,
            ttl_s: 1,
            key: "jepsen/lease/1".into(),
            granted_ns: 0,
            expired_seen_ns: Some(2_000_000_000),
            put_after_expiry: Some(put),
            key_present_after_expiry: Some(present),
        }
    }

    #[test]
    fn sequential_sections_are_safe() {
        let sections = [
            section(0, 10, 20, 0),
            section(1, 21, 30, 1),
            section(2, 31, 40, 2),
        ];
        let a = check(&sections, &[probe(Outcome::Fail, false)], 50);
        assert_eq!(a.lock, LockVerdict::Safe, "{a}");
        assert_eq!(a.lease, LeaseVerdict::Holds);
        assert!(a.valid());
    }

    #[test]
    fn two_holders_reading_the_same_counter_are_a_lost_update_and_an_overlap() {
        // Process 0 paused inside its section; its lease expired; process 1 got the lock.
        let sections = [section(0, 10, 50, 4), section(1, 20, 30, 4)];
        let a = check(&sections, &[], 60);
        assert_eq!(a.lock, LockVerdict::UnsafeExpected, "{a}");
        assert_eq!((a.lost_updates, a.overlaps), (1, 1));
        assert!(a.lock_evidence.iter().any(|e| e.contains("both wrote 5")));
        assert!(a.valid(), "lock unsafety alone does not invalidate the run");
        assert!(a.to_string().contains("UNSAFE (expected without fencing)"));
    }

    #[test]
    fn failed_writes_and_unacquired_sections_are_not_evidence() {
        let mut never = section(1, 20, 30, 4);
        never.acquired_ns = None;
        let mut failed = section(2, 15, 25, 4);
        failed.write = Some(Outcome::Unknown);
        let a = check(&[section(0, 10, 40, 4), never, failed], &[], 60);
        assert_eq!(a.lock, LockVerdict::NotExercised);
        assert_eq!(a.lost_updates + a.overlaps, 0);
    }

    #[test]
    fn writes_under_an_expired_lease_and_keys_outliving_it_are_violations() {
        let a = check(
            &[],
            &[probe(Outcome::Ok, false), probe(Outcome::Fail, true)],
            60,
        );
        assert_eq!(a.lease, LeaseVerdict::Violated);
        assert_eq!(
            (a.writes_under_expired_lease, a.keys_outliving_lease),
            (1, 1)
        );
        assert!(!a.valid());
        let mut unseen = probe(Outcome::Ok, true);
        unseen.expired_seen_ns = None;
        assert_eq!(check(&[], &[unseen], 60).lease, LeaseVerdict::NotExercised);
    }
}
