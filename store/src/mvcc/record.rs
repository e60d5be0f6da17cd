//! Byte layouts of the values in the `kv`, `log`, `meta` and `lease` column families.
//!
//! A `kv` value is a fixed 25-byte header then the user value:
//! `flags:u8 | create_revision:i64 | version:i64 | lease:i64 | value…` (big-endian).
//! The mod revision is not stored: it is the revision in the key. Unknown flag bits are
//! rejected, so a newer format is detected instead of misread.

use super::{Error, EventKind, KeyValue, Result, Revision};

/// `kv` value flag: the version is a tombstone (the key was deleted at this revision).
const FLAG_TOMBSTONE: u8 = 0x01;
const FLAGS_KNOWN: u8 = FLAG_TOMBSTONE;
/// flags + create_revision + version + lease.
pub const RECORD_HEADER_LEN: usize = 1 + 8 + 8 + 8;

/// `log` value kinds.
const LOG_PUT: u8 = 1;
const LOG_DELETE: u8 = 2;

/// `lease` value format tag; a later format (with a remaining-TTL checkpoint) gets a new tag.
const LEASE_FORMAT_V1: u8 = 1;
const LEASE_VALUE_V1_LEN: usize = 1 + 8;

/// `meta` keys.
pub const META_CONSISTENT_INDEX: &[u8] = b"consistent_index";
/// The raised alarms (etcd's `alarm` bucket), encoded by the caller; applied through raft.
pub const META_ALARMS: &[u8] = b"alarms";
pub const META_CURRENT_REVISION: &[u8] = b"current_revision";
/// The raft term of the entry at the consistent index (written with it; absent: 0).
pub const META_APPLIED_TERM: &[u8] = b"applied_term";
/// The cluster membership as of the consistent index, encoded by the caller (absent: none).
pub const META_MEMBERSHIP: &[u8] = b"membership";
/// Written (alone, before anything else) when a snapshot install starts replacing the
/// store's contents; gone once the snapshot's `meta` is in. Present on open: an install
/// was interrupted and the contents are a mix (see `restore.rs`).
pub const META_RESTORE_STARTED: &[u8] = b"restore_started";
/// Written (with the consistent index) before physical compaction starts.
pub const META_COMPACT_SCHEDULED: &[u8] = b"compact_scheduled";
/// Written after physical compaction finished; `scheduled > finished` on open means a
/// crash interrupted it, and it is resumed.
pub const META_COMPACT_FINISHED: &[u8] = b"compact_finished";

/// One stored version, borrowing its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub tombstone: bool,
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub value: &'a [u8],
}

impl<'a> Record<'a> {
    pub fn tombstone() -> Self {
        Record { tombstone: true, create_revision: 0, version: 0, lease: 0, value: &[] }
    }

    pub fn live(kv: &'a KeyValue) -> Self {
        Record {
            tombstone: false,
            create_revision: kv.create_revision,
            version: kv.version,
            lease: kv.lease,
            value: &kv.value,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RECORD_HEADER_LEN + self.value.len());
        out.push(if self.tombstone { FLAG_TOMBSTONE } else { 0 });
        out.extend_from_slice(&self.create_revision.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.lease.to_be_bytes());
        out.extend_from_slice(self.value);
        out
    }

    pub fn decode(raw: &'a [u8]) -> Result<Self> {
        if raw.len() < RECORD_HEADER_LEN {
            return Err(Error::Corrupt(format!("kv value of {} bytes has no header", raw.len())));
        }
        let flags = raw[0];
        if flags & !FLAGS_KNOWN != 0 {
            return Err(Error::Corrupt(format!("kv value has unknown flags {flags:#04x}")));
        }
        Ok(Record {
            tombstone: flags & FLAG_TOMBSTONE != 0,
            create_revision: read_i64(&raw[1..9]),
            version: read_i64(&raw[9..17]),
            lease: read_i64(&raw[17..25]),
            value: &raw[RECORD_HEADER_LEN..],
        })
    }

    /// Whether the raw value is a tombstone, without decoding the rest (counting keys).
    pub fn is_tombstone(raw: &[u8]) -> Result<bool> {
        Ok(Record::decode(raw)?.tombstone)
    }

    /// The `KeyValue` of a live version.
    pub fn to_kv(self, key: Vec<u8>, rev: Revision) -> KeyValue {
        debug_assert!(!self.tombstone);
        KeyValue {
            key,
            create_revision: self.create_revision,
            mod_revision: rev.main,
            version: self.version,
            value: self.value.to_vec(),
            lease: self.lease,
        }
    }
}

fn read_i64(b: &[u8]) -> i64 {
    i64::from_be_bytes(b.try_into().expect("8 bytes"))
}

fn read_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b.try_into().expect("8 bytes"))
}

pub fn encode_log_value(kind: EventKind, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + key.len());
    out.push(match kind {
        EventKind::Put => LOG_PUT,
        EventKind::Delete => LOG_DELETE,
    });
    out.extend_from_slice(key);
    out
}

pub fn decode_log_value(raw: &[u8]) -> Result<(EventKind, &[u8])> {
    match raw.split_first() {
        Some((&LOG_PUT, key)) => Ok((EventKind::Put, key)),
        Some((&LOG_DELETE, key)) => Ok((EventKind::Delete, key)),
        _ => Err(Error::Corrupt(format!("log value {raw:02x?}"))),
    }
}

pub fn lease_key(id: i64) -> [u8; 8] {
    id.to_be_bytes()
}

pub fn encode_lease_value(ttl: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(LEASE_VALUE_V1_LEN);
    out.push(LEASE_FORMAT_V1);
    out.extend_from_slice(&ttl.to_be_bytes());
    out
}

/// Decodes a `lease` entry into `(id, ttl)`.
pub fn decode_lease(key: &[u8], value: &[u8]) -> Result<(i64, i64)> {
    if key.len() != 8 || value.len() != LEASE_VALUE_V1_LEN || value[0] != LEASE_FORMAT_V1 {
        return Err(Error::Corrupt(format!("lease entry {key:02x?} = {value:02x?}")));
    }
    Ok((read_i64(key), read_i64(&value[1..])))
}

pub fn encode_i64(x: i64) -> [u8; 8] {
    x.to_be_bytes()
}

pub fn encode_u64(x: u64) -> [u8; 8] {
    x.to_be_bytes()
}

pub fn decode_meta_u64(name: &[u8], raw: Option<Vec<u8>>) -> Result<Option<u64>> {
    match raw {
        None => Ok(None),
        Some(b) if b.len() == 8 => Ok(Some(read_u64(&b))),
        Some(b) => Err(Error::Corrupt(format!(
            "meta {} has {} bytes",
            String::from_utf8_lossy(name),
            b.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_rejects_unknown_flags() {
        let r = Record { tombstone: false, create_revision: 3, version: 2, lease: -9, value: b"v" };
        let raw = r.encode();
        assert_eq!(raw.len(), RECORD_HEADER_LEN + 1);
        assert_eq!(Record::decode(&raw).unwrap(), r);
        let t = Record::tombstone().encode();
        assert!(Record::is_tombstone(&t).unwrap());
        let mut bad = raw.clone();
        bad[0] = 0x80;
        assert!(Record::decode(&bad).is_err());
        assert!(Record::decode(&raw[..RECORD_HEADER_LEN - 1]).is_err());
    }

    #[test]
    fn log_and_lease_values_round_trip() {
        let v = encode_log_value(EventKind::Delete, b"k");
        assert_eq!(decode_log_value(&v).unwrap(), (EventKind::Delete, &b"k"[..]));
        assert!(decode_log_value(&[9, b'k']).is_err());
        let (id, ttl) = decode_lease(&lease_key(-5), &encode_lease_value(60)).unwrap();
        assert_eq!((id, ttl), (-5, 60));
        assert!(decode_lease(&lease_key(1), &[2, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
    }
}
