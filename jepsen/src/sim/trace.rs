//! The trace hash: a fingerprint of everything that happened in a run, in order — every
//! message delivered, every entry applied, every crash and restart. Two runs of one seed
//! must give the same hash; when they do not, something outside the seed (a wall clock, a
//! thread-local random number generator, a `HashMap` iteration order) leaked into the run.
//!
//! FNV-1a (64-bit) rather than `std`'s `DefaultHasher`: its definition is fixed, so a hash
//! printed by one build can be compared with one printed by another.

use skiff_raft::raft::eraftpb::{Entry, Message};

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// What a traced record is, so that records of different kinds never hash alike.
#[derive(Clone, Copy, Debug)]
#[repr(u8)]
pub enum Record {
    Delivered = 1,
    Applied = 2,
    Crashed = 3,
    Restarted = 4,
    Completed = 5,
}

#[derive(Clone, Debug)]
pub struct TraceHash {
    state: u64,
    records: u64,
}

impl Default for TraceHash {
    fn default() -> Self {
        TraceHash {
            state: FNV_OFFSET_BASIS,
            records: 0,
        }
    }
}

impl TraceHash {
    fn bytes(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.state ^= u64::from(*byte);
            self.state = self.state.wrapping_mul(FNV_PRIME);
        }
    }

    fn u64(&mut self, value: u64) {
        self.bytes(&value.to_le_bytes());
    }

    fn record(&mut self, record: Record, now_us: u64) {
        self.records += 1;
        self.bytes(&[record as u8]);
        self.u64(now_us);
    }

    fn entry(&mut self, entry: &Entry) {
        self.u64(entry.index);
        self.u64(entry.term);
        self.u64(entry.get_entry_type() as u64);
        self.u64(entry.data.len() as u64);
        self.bytes(&entry.data);
    }

    pub fn delivered(&mut self, now_us: u64, message: &Message) {
        self.record(Record::Delivered, now_us);
        for field in [
            message.get_msg_type() as u64,
            message.from,
            message.to,
            message.term,
            message.log_term,
            message.index,
            message.commit,
            message.commit_term,
            u64::from(message.reject),
            message.reject_hint,
            message.entries.len() as u64,
        ] {
            self.u64(field);
        }
        for entry in message.entries.iter() {
            self.entry(entry);
        }
        self.u64(message.context.len() as u64);
        self.bytes(&message.context);
    }

    pub fn applied(&mut self, now_us: u64, member: u64, entry: &Entry) {
        self.record(Record::Applied, now_us);
        self.u64(member);
        self.entry(entry);
    }

    /// A crash, restart or client completion: `a` and `b` name who and what.
    pub fn event(&mut self, record: Record, now_us: u64, a: u64, b: u64) {
        self.record(record, now_us);
        self.u64(a);
        self.u64(b);
    }

    pub fn finish(&self) -> u64 {
        self.state
    }

    /// Records hashed so far (a cheap "how much happened" figure for summaries).
    pub fn records(&self) -> u64 {
        self.records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_its_reference_values() {
        let mut h = TraceHash::default();
        assert_eq!(h.finish(), FNV_OFFSET_BASIS);
        h.bytes(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c, "FNV-1a 64 of \"a\"");
    }

    #[test]
    fn order_matters() {
        let mut a = TraceHash::default();
        a.event(Record::Crashed, 1, 1, 0);
        a.event(Record::Restarted, 2, 1, 0);
        let mut b = TraceHash::default();
        b.event(Record::Restarted, 2, 1, 0);
        b.event(Record::Crashed, 1, 1, 0);
        assert_ne!(a.finish(), b.finish());
        assert_eq!(a.records(), 2);
    }
}
