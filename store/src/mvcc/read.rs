//! Reads at a revision: etcd's key-range rules, the per-key "newest version at or below R"
//! scan over the `kv` column family, and the limit/count accumulator.

use super::key::{self, NEXT_KEY_SUFFIX, REV_SUFFIX_LEN};
use super::record::Record;
use super::store::{Snapshot, CF_KV};
use super::{KeyValue, MvccStore, RangeOptions, RangeResult, Result, Revision};

/// After reading the version it wants, a scan steps over the remaining (older) versions
/// of that key with `next()` up to this many times before giving up and seeking: a
/// seek costs about as much as a few steps, and most keys have only a few versions.
const NEXT_STEPS_BEFORE_SEEK: usize = 4;

/// A `key`/`range_end` pair with etcd's meaning, in user-key space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum KeyRange {
    /// `range_end` empty: just `key`.
    Single(Vec<u8>),
    /// `range_end == "\0"`: every key ≥ `key` (and `key == "\0"` too: every key).
    From(Vec<u8>),
    /// `[key, range_end)` with `key < range_end`.
    Bounded(Vec<u8>, Vec<u8>),
    /// `key >= range_end`: nothing.
    Empty,
}

impl KeyRange {
    pub fn new(key: &[u8], range_end: &[u8]) -> Self {
        match (key, range_end) {
            (_, []) => KeyRange::Single(key.to_vec()),
            // etcd treats `key == "\0", range_end == "\0"` as "all keys"; starting at the
            // empty key (not "\0") keeps that true even for an empty key.
            ([0], [0]) => KeyRange::all(),
            (_, [0]) => KeyRange::From(key.to_vec()),
            _ if key < range_end => KeyRange::Bounded(key.to_vec(), range_end.to_vec()),
            _ => KeyRange::Empty,
        }
    }

    pub fn all() -> Self {
        KeyRange::From(Vec::new())
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match self {
            KeyRange::Single(key) => k == key.as_slice(),
            KeyRange::From(key) => k >= key.as_slice(),
            KeyRange::Bounded(key, end) => k >= key.as_slice() && k < end.as_slice(),
            KeyRange::Empty => false,
        }
    }

    /// `(start, end)` as memcomparable encodings; `None` when the range is empty. Because
    /// the encoding is order-preserving and prefix-free, every `kv` entry of a key below
    /// `end` sorts below `enc(end)`, and every entry of a key ≥ `end` sorts at or above it.
    pub fn encoded(&self) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
        match self {
            KeyRange::Single(key) => {
                // The successor of `key` in byte order is `key ⧺ \0`.
                let mut next = key.clone();
                next.push(0);
                Some((key::encode_key(key), Some(key::encode_key(&next))))
            }
            KeyRange::From(key) => Some((key::encode_key(key), None)),
            KeyRange::Bounded(key, end) => Some((key::encode_key(key), Some(key::encode_key(end)))),
            KeyRange::Empty => None,
        }
    }
}

/// One stored version as met by a scan.
pub(super) struct Version<'a> {
    pub enc_key: &'a [u8],
    pub rev: Revision,
    pub record: Record<'a>,
}

impl Version<'_> {
    pub fn user_key(&self) -> Result<Vec<u8>> {
        key::decode_key(self.enc_key)
    }

    /// The `KeyValue` of a live version.
    pub fn to_kv(&self) -> Result<KeyValue> {
        Ok(self.record.to_kv(self.user_key()?, self.rev))
    }
}

/// Visits, in key order, the newest version at or below `rev` of every key in `range`
/// that has one — tombstones included, so callers can tell "deleted" from "absent".
pub(super) fn scan_versions(
    store: &MvccStore,
    snapshot: &Snapshot<'_>,
    range: &KeyRange,
    rev: i64,
    mut visit: impl FnMut(&Version<'_>) -> Result<()>,
) -> Result<()> {
    let Some((start, end)) = range.encoded() else {
        return Ok(());
    };
    let mut opts = store.read_options(snapshot);
    if let Some(end) = end {
        opts.set_iterate_upper_bound(end);
    }
    let mut it = store.db.raw_iterator_cf_opt(store.cf(CF_KV), opts);
    it.seek(key::with_suffix(&start, &key::seek_suffix_at_or_below(rev)));
    // The encoded key being visited, reused across keys to avoid an allocation each.
    let mut current = Vec::new();
    loop {
        let Some((raw_key, raw_value)) = it.item() else {
            it.status()?;
            return Ok(());
        };
        let (enc_key, version_rev) = key::split_kv_key(raw_key)?;
        current.clear();
        current.extend_from_slice(enc_key);
        if version_rev.main > rev {
            // Only versions newer than `rev` seen so far: jump to this key's newest ≤ rev.
            it.seek(key::with_suffix(&current, &key::seek_suffix_at_or_below(rev)));
            continue;
        }
        let record = Record::decode(raw_value)?;
        visit(&Version { enc_key, rev: version_rev, record })?;
        skip_older_versions(&mut it, &current);
    }
}

fn skip_older_versions<D: rocksdb::DBAccess>(it: &mut rocksdb::DBRawIteratorWithThreadMode<'_, D>, enc_key: &[u8]) {
    for _ in 0..NEXT_STEPS_BEFORE_SEEK {
        it.next();
        match it.key() {
            Some(k) if k.len() == enc_key.len() + REV_SUFFIX_LEN && k.starts_with(enc_key) => {}
            // Another key, the end, or an error (reported by the caller's `status()`).
            _ => return,
        }
    }
    it.seek(key::with_suffix(enc_key, &NEXT_KEY_SUFFIX));
}

/// The newest version of one key at or below `rev`, if there is one and it is live.
pub(super) fn get_live(
    store: &MvccStore,
    snapshot: &Snapshot<'_>,
    user_key: &[u8],
    rev: i64,
) -> Result<Option<KeyValue>> {
    let mut found = None;
    scan_versions(store, snapshot, &KeyRange::Single(user_key.to_vec()), rev, |version| {
        if !version.record.tombstone {
            found = Some(version.record.to_kv(user_key.to_vec(), version.rev));
        }
        Ok(())
    })?;
    Ok(found)
}

/// Counts live keys and keeps the first `limit` of them, as etcd's range does.
pub(super) struct RangeAcc {
    /// 0 means no limit.
    limit: usize,
    count_only: bool,
    count: i64,
    kvs: Vec<KeyValue>,
}

impl RangeAcc {
    pub fn new(opts: &RangeOptions) -> Self {
        RangeAcc {
            limit: usize::try_from(opts.limit.max(0)).unwrap_or(usize::MAX),
            count_only: opts.count_only,
            count: 0,
            kvs: Vec::new(),
        }
    }

    /// Counts one live key; builds its `KeyValue` only when it will be returned.
    pub fn add_live(&mut self, kv: impl FnOnce() -> Result<KeyValue>) -> Result<()> {
        self.count += 1;
        if !self.count_only && (self.limit == 0 || self.kvs.len() < self.limit) {
            self.kvs.push(kv()?);
        }
        Ok(())
    }

    /// `current_rev` is what etcd puts in `RangeResult.rev` (its `curRev`): the current
    /// revision of the store or txn, whatever revision was read.
    pub fn finish(self, current_rev: i64) -> RangeResult {
        RangeResult { kvs: self.kvs, count: self.count, rev: current_rev }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_range_follows_etcd_range_end_rules() {
        assert_eq!(KeyRange::new(b"a", b""), KeyRange::Single(b"a".to_vec()));
        assert_eq!(KeyRange::new(b"a", b"\0"), KeyRange::From(b"a".to_vec()));
        assert_eq!(KeyRange::new(b"\0", b"\0"), KeyRange::From(Vec::new()));
        assert_eq!(KeyRange::new(b"a", b"c"), KeyRange::Bounded(b"a".to_vec(), b"c".to_vec()));
        assert_eq!(KeyRange::new(b"c", b"a"), KeyRange::Empty);
        assert_eq!(KeyRange::new(b"a", b"a"), KeyRange::Empty);
        let r = KeyRange::new(b"a", b"b");
        assert!(r.contains(b"a") && r.contains(b"a\0") && r.contains(b"a\xff"));
        assert!(!r.contains(b"b") && !r.contains(b""));
        assert!(KeyRange::new(b"\0", b"\0").contains(b""));
        assert!(!KeyRange::new(b"a", b"").contains(b"a\0"));
    }

    #[test]
    fn range_acc_counts_past_the_limit() {
        let mut acc = RangeAcc::new(&RangeOptions { rev: 0, limit: 1, count_only: false });
        for _ in 0..3 {
            acc.add_live(|| Ok(KeyValue::default())).unwrap();
        }
        let r = acc.finish(7);
        assert_eq!((r.kvs.len(), r.count, r.rev), (1, 3, 7));
        let mut acc = RangeAcc::new(&RangeOptions { rev: 0, limit: 0, count_only: true });
        acc.add_live(|| panic!("count_only must not build values")).unwrap();
        assert_eq!(acc.finish(1).count, 1);
    }
}
