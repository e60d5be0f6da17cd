//! The event queue: everything that will happen, ordered by simulated time and, within one
//! microsecond, by the order it was scheduled in — never by anything outside the seed.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// Simulated microseconds since the start of the run.
pub type Micros = u64;

/// Events queued at once at most. A run schedules a bounded number of events per tick,
/// message and operation; past this bound something schedules in a loop (a bug).
pub const EVENTS_QUEUED_MAX: usize = 1_000_000;

struct Scheduled<E> {
    at_us: Micros,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Scheduled<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at_us, self.seq) == (other.at_us, other.seq)
    }
}

impl<E> Eq for Scheduled<E> {}

impl<E> PartialOrd for Scheduled<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Scheduled<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at_us, self.seq).cmp(&(other.at_us, other.seq))
    }
}

pub struct EventQueue<E> {
    heap: BinaryHeap<Reverse<Scheduled<E>>>,
    next_seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }
}

impl<E> EventQueue<E> {
    pub fn schedule(&mut self, at_us: Micros, event: E) {
        assert!(
            self.heap.len() < EVENTS_QUEUED_MAX,
            "event queue overflow: {} events queued",
            self.heap.len()
        );
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Reverse(Scheduled { at_us, seq, event }));
    }

    /// The earliest event, if any is due at or before `until_us`.
    pub fn pop_until(&mut self, until_us: Micros) -> Option<(Micros, E)> {
        if self.heap.peek()?.0.at_us > until_us {
            return None;
        }
        self.heap.pop().map(|Reverse(s)| (s.at_us, s.event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_by_time_then_by_scheduling_order() {
        let mut q = EventQueue::default();
        q.schedule(5, "c");
        q.schedule(1, "a");
        q.schedule(5, "d");
        q.schedule(1, "b");
        q.schedule(9, "late");
        let mut out = Vec::new();
        while let Some((t, e)) = q.pop_until(5) {
            out.push((t, e));
        }
        assert_eq!(out, vec![(1, "a"), (1, "b"), (5, "c"), (5, "d")]);
        assert_eq!(q.pop_until(100), Some((9, "late")));
        assert_eq!(q.pop_until(100), None);
    }
}
