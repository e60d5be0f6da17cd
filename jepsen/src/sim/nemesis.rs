//! The fault schedule: drawn from the seed before the run starts, as three independent
//! streams of fault windows that may overlap one another — network (partitions), process
//! (crashes, pauses) and clock (rate changes, stalls, jumps) — each window closed by its
//! healing fault, and everything healed at the end of the fault phase.
//!
//! A fault that names "the leader" is resolved when it fires: the member that leads in
//! the highest term at that moment.

use rand::seq::SliceRandom;
use rand::Rng;

use super::queue::Micros;

/// Who a process fault hits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Leader,
    Members(Vec<u64>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Both directions between the two sides are cut.
    Partition {
        side_a: Vec<u64>,
        side_b: Vec<u64>,
    },
    /// The leader (at that moment) is cut off from everyone.
    IsolateLeader,
    /// Messages from `from` to `to` are lost; the other direction works.
    OneWay {
        from: Vec<u64>,
        to: Vec<u64>,
    },
    HealNetwork,
    /// kill -9 of every target at the same moment: memory and unsynced writes are lost.
    /// `mid_write`: the moment is the next one at which a target holds writes not yet
    /// synced (within a bound), like a failpoint between a WAL append and its fsync;
    /// otherwise at once.
    Crash {
        target: Target,
        mid_write: bool,
    },
    RestartCrashed,
    /// SIGSTOP: nothing runs until `ResumePaused` (SIGCONT).
    Pause(Target),
    ResumePaused,
    /// The member's clock runs at `percent` of the real rate (ticks come faster or slower).
    ClockRate {
        member: u64,
        percent: u64,
    },
    /// The member's clock stands still: no ticks.
    ClockStall {
        member: u64,
    },
    /// The member's clock jumps ahead: `ticks` ticks at once.
    ClockJump {
        member: u64,
        ticks: u64,
    },
    ClockReset,
}

impl Fault {
    /// A short name for summaries.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Partition { .. } => "partition",
            Fault::IsolateLeader => "isolate-leader",
            Fault::OneWay { .. } => "one-way",
            Fault::HealNetwork => "heal",
            Fault::Crash { .. } => "crash",
            Fault::RestartCrashed => "restart",
            Fault::Pause(_) => "pause",
            Fault::ResumePaused => "resume",
            Fault::ClockRate { .. } => "clock-rate",
            Fault::ClockStall { .. } => "clock-stall",
            Fault::ClockJump { .. } => "clock-jump",
            Fault::ClockReset => "clock-reset",
        }
    }
}

const WINDOW_US_MIN: Micros = 300_000;
const WINDOW_US_MAX: Micros = 5_000_000;
const GAP_US_MAX: Micros = 3_000_000;

/// Faults in `[start_us, end_us)`, healed at `end_us`, sorted by time (stable).
pub fn schedule(
    rng: &mut impl Rng,
    members: &[u64],
    start_us: Micros,
    end_us: Micros,
) -> Vec<(Micros, Fault)> {
    let mut faults = Vec::new();
    stream(rng, start_us, end_us, &mut faults, |rng| {
        let (open, close) = network_fault(rng, members);
        (Some(open), close)
    });
    stream(rng, start_us, end_us, &mut faults, |rng| {
        let (open, close) = process_fault(rng, members);
        (Some(open), close)
    });
    stream(rng, start_us, end_us, &mut faults, |rng| {
        clock_fault(rng, members)
    });
    for fault in [
        Fault::HealNetwork,
        Fault::ResumePaused,
        Fault::RestartCrashed,
        Fault::ClockReset,
    ] {
        faults.push((end_us, fault));
    }
    faults.sort_by_key(|(at, _)| *at);
    faults
}

/// One stream: windows one after another, each opened by a fault and closed by another.
fn stream<R: Rng>(
    rng: &mut R,
    start_us: Micros,
    end_us: Micros,
    faults: &mut Vec<(Micros, Fault)>,
    mut next: impl FnMut(&mut R) -> (Option<Fault>, Fault),
) {
    let mut at_us = start_us + rng.random_range(0..GAP_US_MAX);
    while at_us < end_us {
        let until_us = (at_us + rng.random_range(WINDOW_US_MIN..WINDOW_US_MAX)).min(end_us);
        let (open, close) = next(rng);
        if let Some(open) = open {
            faults.push((at_us, open));
        }
        faults.push((until_us, close));
        at_us = until_us + rng.random_range(WINDOW_US_MIN..GAP_US_MAX);
    }
}

fn network_fault(rng: &mut impl Rng, members: &[u64]) -> (Fault, Fault) {
    let (side_a, side_b) = random_halves(rng, members);
    let open = match rng.random_range(0..10) {
        0..=4 => Fault::Partition { side_a, side_b },
        5..=7 => Fault::IsolateLeader,
        _ => Fault::OneWay {
            from: side_a,
            to: side_b,
        },
    };
    (open, Fault::HealNetwork)
}

fn process_fault(rng: &mut impl Rng, members: &[u64]) -> (Fault, Fault) {
    let one = vec![members[rng.random_range(0..members.len())]];
    let mut shuffled = members.to_vec();
    shuffled.shuffle(rng);
    let majority = shuffled[..members.len() / 2 + 1].to_vec();
    let mid_write = rng.random_bool(0.5);
    let crash = |target| (Fault::Crash { target, mid_write }, Fault::RestartCrashed);
    match rng.random_range(0..20) {
        0..=6 => crash(Target::Members(one)),
        7..=11 => crash(Target::Leader),
        12..=13 => crash(Target::Members(majority)),
        // A power loss: every member at the same moment.
        14..=15 => crash(Target::Members(members.to_vec())),
        16..=17 => (Fault::Pause(Target::Leader), Fault::ResumePaused),
        _ => (Fault::Pause(Target::Members(one)), Fault::ResumePaused),
    }
}

fn clock_fault(rng: &mut impl Rng, members: &[u64]) -> (Option<Fault>, Fault) {
    let member = members[rng.random_range(0..members.len())];
    let open = match rng.random_range(0..10) {
        0..=4 => Fault::ClockRate {
            member,
            percent: [25, 50, 200, 400][rng.random_range(0..4)],
        },
        5..=6 => Fault::ClockStall { member },
        _ => Fault::ClockJump {
            member,
            ticks: rng.random_range(3..40),
        },
    };
    (Some(open), Fault::ClockReset)
}

/// Two non-empty sides, of random sizes.
fn random_halves(rng: &mut impl Rng, members: &[u64]) -> (Vec<u64>, Vec<u64>) {
    let mut shuffled = members.to_vec();
    shuffled.shuffle(rng);
    if members.len() < 2 {
        return (members.to_vec(), Vec::new()); // nothing to cut
    }
    let cut = rng.random_range(1..members.len());
    let (a, b) = shuffled.split_at(cut);
    (a.to_vec(), b.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn every_schedule_heals_at_the_end_and_is_sorted() {
        for seed in 0..50 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let faults = schedule(&mut rng, &[1, 2, 3, 4, 5], 1_000_000, 20_000_000);
            assert!(faults.windows(2).all(|w| w[0].0 <= w[1].0));
            assert!(faults
                .iter()
                .all(|(at, _)| (1_000_000..=20_000_000).contains(at)));
            let last: Vec<&Fault> = faults
                .iter()
                .filter(|(at, _)| *at == 20_000_000)
                .map(|(_, f)| f)
                .collect();
            assert!(last.contains(&&Fault::HealNetwork) && last.contains(&&Fault::RestartCrashed));
            assert!(
                faults.len() > 8,
                "seed {seed}: a 19 s fault phase holds several windows per stream"
            );
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let run = |seed| {
            schedule(
                &mut ChaCha8Rng::seed_from_u64(seed),
                &[1, 2, 3],
                0,
                10_000_000,
            )
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }
}
