//! Watch catch-up: the changes of a revision interval read from the `log` column family
//! (revision order), each completed with its version (and optionally the previous one)
//! from `kv`. This is what etcd's unsynced watchers do with `UnsafeRange` over the
//! revision-keyed bucket.

use rocksdb::DBRawIteratorWithThreadMode;

use super::key;
use super::read::KeyRange;
use super::record::{self, Record};
use super::store::{Db, CF_KV, CF_LOG};
use super::{Error, Event, EventKind, KeyValue, MvccStore, Result, Revision};

impl MvccStore {
    /// The events with revision in `[from_rev, to_rev_inclusive]` on keys in
    /// `key`/`range_end` (etcd's range rules), in revision order. `to_rev_inclusive` is
    /// capped at the current revision. `limit` (0: none) is a soft cap: the events of one
    /// revision are never split, so a watcher resuming at the next revision misses nothing
    /// and a txn's events stay together. Errors `Compacted` when `from_rev` is below the
    /// compact revision (changes before it are gone), as etcd's watch does.
    pub fn events(
        &self,
        from_rev: i64,
        to_rev_inclusive: i64,
        key: &[u8],
        range_end: &[u8],
        limit: usize,
        want_prev_kv: bool,
    ) -> Result<Vec<Event>> {
        let to = to_rev_inclusive.min(self.current_revision());
        let snapshot = self.db.snapshot();
        // Checked after the snapshot: a compaction published later deletes after it.
        let compact = self.compact_rev.load(std::sync::atomic::Ordering::SeqCst);
        // etcd: a watch may start at the compact revision itself, not below it.
        if from_rev < compact {
            return Err(Error::Compacted);
        }
        let from = from_rev.max(1);
        if from > to {
            return Ok(Vec::new());
        }
        let range = KeyRange::new(key, range_end);
        let mut log_opts = self.read_options(&snapshot);
        log_opts.set_iterate_upper_bound(key::log_key(Revision::new(to + 1, 0)));
        let mut log = self.db.raw_iterator_cf_opt(self.cf(CF_LOG), log_opts);
        let mut kv = self.db.raw_iterator_cf_opt(self.cf(CF_KV), self.read_options(&snapshot));
        log.seek(key::log_key(Revision::new(from, 0)));
        let mut events: Vec<Event> = Vec::new();
        while let Some((raw_key, raw_value)) = log.item() {
            let rev = key::decode_log_key(raw_key)?;
            let (kind, user_key) = record::decode_log_value(raw_value)?;
            let full = limit > 0 && events.len() >= limit;
            if full && events.last().is_some_and(|e| e.kv.mod_revision != rev.main) {
                break;
            }
            if range.contains(user_key) {
                events.push(event_at(&mut kv, kind, user_key, rev, want_prev_kv)?);
            }
            log.next();
        }
        log.status()?;
        Ok(events)
    }
}

type KvIter<'a> = DBRawIteratorWithThreadMode<'a, Db>;

fn event_at(kv: &mut KvIter<'_>, kind: EventKind, user_key: &[u8], rev: Revision, want_prev_kv: bool) -> Result<Event> {
    let enc = key::encode_key(user_key);
    let exact = key::kv_key(&enc, rev);
    kv.seek(&exact);
    let version = match kv.item() {
        Some((k, v)) if k == exact.as_slice() => Record::decode(v)?,
        _ => {
            kv.status()?;
            return Err(Error::Corrupt(format!("log entry {rev:?} has no kv version for key {user_key:02x?}")));
        }
    };
    let event_kv = match (kind, version.tombstone) {
        (EventKind::Put, false) => version.to_kv(user_key.to_vec(), rev),
        (EventKind::Delete, true) => KeyValue { key: user_key.to_vec(), mod_revision: rev.main, ..KeyValue::default() },
        _ => return Err(Error::Corrupt(format!("log entry {rev:?} disagrees with its kv version"))),
    };
    // etcd reads prev_kv at `mod_revision - 1` and skips it for creations.
    let is_create = kind == EventKind::Put && event_kv.version == 1;
    let prev_kv = if want_prev_kv && !is_create { live_before(kv, &enc, user_key, rev.main)? } else { None };
    Ok(Event { kind, kv: event_kv, prev_kv })
}

/// The key's live version with a main revision below `main`, if any.
fn live_before(kv: &mut KvIter<'_>, enc: &[u8], user_key: &[u8], main: i64) -> Result<Option<KeyValue>> {
    kv.seek(key::with_suffix(enc, &key::seek_suffix_at_or_below(main - 1)));
    let Some((k, v)) = kv.item() else {
        kv.status()?;
        return Ok(None);
    };
    let (found, rev) = key::split_kv_key(k)?;
    if found != enc {
        return Ok(None);
    }
    let record = Record::decode(v)?;
    Ok((!record.tombstone).then(|| record.to_kv(user_key.to_vec(), rev)))
}
