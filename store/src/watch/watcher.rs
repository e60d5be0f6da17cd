//! One watcher: what it watches (a key range, filters, options), where it stands (synced or
//! unsynced, the next revision it is owed), and the index that finds the synced watchers
//! interested in a key.
//!
//! A watcher's *position* is `next_rev`: every event of revision `< next_rev` that matches
//! it has been queued to its stream (or was before its start revision). For a synced
//! watcher the hub keeps the stronger invariant "everything up to the hub's revision is
//! queued", so `next_rev` is only advanced when it becomes a victim or unsynced again.

use std::collections::{BTreeMap, HashMap};

use crate::mvcc::{Event, EventKind};

/// Identifies a watcher inside the hub, unique for the hub's lifetime (client watch ids are
/// per stream and may be reused after a cancel, so they cannot name a watcher in the
/// catch-up task, which works without holding the hub lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct WatcherKey(pub(crate) u64);

/// Identifies one watch stream (one gRPC `Watch` call) inside the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct StreamId(pub(crate) u64);

/// The keys a watcher is interested in, normalized as etcd's watch server does it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyRange {
    /// Exactly one key (`range_end` empty).
    Single(Vec<u8>),
    /// Every key `>= start` (`range_end` is `"\0"`).
    FromKey(Vec<u8>),
    /// `[start, end)`.
    Range { start: Vec<u8>, end: Vec<u8> },
}

/// A create request names an empty range (`key >= range_end`); etcd's `ErrEmptyWatcherRange`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EmptyRange;

impl KeyRange {
    /// From a create request's `key` and `range_end`. An empty key means `"\0"`, the
    /// smallest key, as in etcd (so `key = "", range_end = "\0"` watches everything).
    pub(crate) fn from_request(key: Vec<u8>, range_end: Vec<u8>) -> Result<Self, EmptyRange> {
        let start = if key.is_empty() { vec![0] } else { key };
        match range_end.as_slice() {
            [] => Ok(KeyRange::Single(start)),
            [0] => Ok(KeyRange::FromKey(start)),
            end if start.as_slice() >= end => Err(EmptyRange),
            _ => Ok(KeyRange::Range { start, end: range_end }),
        }
    }

    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Single(k) => k.as_slice() == key,
            KeyRange::FromKey(start) => key >= start.as_slice(),
            KeyRange::Range { start, end } => key >= start.as_slice() && key < end.as_slice(),
        }
    }

    /// The `(key, range_end)` pair in the MVCC store's range convention.
    pub(crate) fn as_mvcc_range(&self) -> (&[u8], &[u8]) {
        const FROM_KEY_RANGE_END: &[u8] = &[0];
        match self {
            KeyRange::Single(k) => (k, &[]),
            KeyRange::FromKey(start) => (start, FROM_KEY_RANGE_END),
            KeyRange::Range { start, end } => (start, end),
        }
    }
}

/// etcd's `WatchCreateRequest.filters`: kinds of events a watcher does not want.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Filters {
    pub(crate) no_put: bool,
    pub(crate) no_delete: bool,
}

impl Filters {
    pub(crate) fn accepts(&self, event: &Event) -> bool {
        match event.kind {
            EventKind::Put => !self.no_put,
            EventKind::Delete => !self.no_delete,
        }
    }
}

/// Options of a watcher that do not change after creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WatchOptions {
    pub(crate) range: KeyRange,
    pub(crate) filters: Filters,
    pub(crate) prev_kv: bool,
    pub(crate) progress_notify: bool,
    pub(crate) fragment: bool,
}

impl WatchOptions {
    /// The events of `events` this watcher receives, as it receives them: filtered, in
    /// order, with `prev_kv` kept only when asked for. The caller has matched the keys.
    pub(crate) fn select<'a>(&self, events: impl IntoIterator<Item = &'a Event>) -> Vec<Event> {
        events
            .into_iter()
            .filter(|e| self.filters.accepts(e))
            .map(|e| Event {
                kind: e.kind,
                kv: e.kv.clone(),
                prev_kv: if self.prev_kv { e.prev_kv.clone() } else { None },
            })
            .collect()
    }
}

#[derive(Debug)]
pub(crate) struct Watcher {
    pub(crate) stream: StreamId,
    pub(crate) watch_id: i64,
    pub(crate) options: WatchOptions,
    /// Lowest revision whose matching events this watcher still needs (see module doc).
    pub(crate) next_rev: i64,
    /// Synced watchers are fed by `notify`; unsynced ones by the catch-up task.
    pub(crate) synced: bool,
    /// Events were queued since the last progress tick: etcd elides the next periodic
    /// progress notification for such a watcher.
    pub(crate) sent_since_progress_tick: bool,
}

/// The synced watchers, indexed for `notify`: single-key watchers by key (the common case,
/// one hash lookup per event), range watchers in a list scanned per event (few in practice:
/// a Kubernetes apiserver keeps one prefix watch per resource type).
#[derive(Debug, Default)]
pub(crate) struct SyncedIndex {
    single: HashMap<Vec<u8>, Vec<WatcherKey>>,
    ranges: BTreeMap<WatcherKey, KeyRange>,
}

impl SyncedIndex {
    pub(crate) fn insert(&mut self, key: WatcherKey, range: &KeyRange) {
        match range {
            KeyRange::Single(k) => self.single.entry(k.clone()).or_default().push(key),
            other => {
                let previous = self.ranges.insert(key, other.clone());
                assert!(previous.is_none(), "watcher {key:?} indexed twice");
            }
        }
    }

    pub(crate) fn remove(&mut self, key: WatcherKey, range: &KeyRange) {
        match range {
            KeyRange::Single(k) => {
                let keys = self.single.get_mut(k).expect("synced single-key watcher is indexed");
                let at = keys.iter().position(|k| *k == key).expect("synced watcher is indexed");
                keys.swap_remove(at);
                if keys.is_empty() {
                    self.single.remove(k);
                }
            }
            _ => {
                self.ranges.remove(&key).expect("synced range watcher is indexed");
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.single.is_empty() && self.ranges.is_empty()
    }

    /// Calls `f` for every synced watcher whose range holds `key`.
    pub(crate) fn for_each_match(&self, key: &[u8], mut f: impl FnMut(WatcherKey)) {
        if let Some(keys) = self.single.get(key) {
            keys.iter().copied().for_each(&mut f);
        }
        for (k, range) in &self.ranges {
            if range.contains(key) {
                f(*k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::KeyValue;

    fn range(key: &str, end: &str) -> KeyRange {
        KeyRange::from_request(key.as_bytes().to_vec(), end.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn key_range_normalization_matches_etcd() {
        assert_eq!(range("a", ""), KeyRange::Single(b"a".to_vec()));
        assert_eq!(range("", ""), KeyRange::Single(vec![0]));
        assert_eq!(range("a", "\0"), KeyRange::FromKey(b"a".to_vec()));
        assert_eq!(range("", "\0"), KeyRange::FromKey(vec![0]));
        assert_eq!(KeyRange::from_request(b"b".to_vec(), b"a".to_vec()), Err(EmptyRange));
        assert_eq!(KeyRange::from_request(b"a".to_vec(), b"a".to_vec()), Err(EmptyRange));
    }

    #[test]
    fn key_range_contains_handles_prefixes() {
        let r = range("a", "b");
        assert!(r.contains(b"a") && r.contains(b"a\0") && r.contains(b"az"));
        assert!(!r.contains(b"b") && !r.contains(b"") && !r.contains(b"\0"));
        let from = range("ab", "\0");
        assert!(from.contains(b"ab") && from.contains(b"zzz") && !from.contains(b"a"));
        let single = range("a", "");
        assert!(single.contains(b"a") && !single.contains(b"a\0"));
        assert_eq!(range("a", "\0").as_mvcc_range(), (&b"a"[..], &b"\0"[..]));
    }

    #[test]
    fn synced_index_finds_single_and_range_watchers() {
        let mut index = SyncedIndex::default();
        let single = range("k", "");
        let prefix = range("k", "l");
        index.insert(WatcherKey(1), &single);
        index.insert(WatcherKey(2), &prefix);
        index.insert(WatcherKey(3), &single);
        let matches = |index: &SyncedIndex, key: &[u8]| {
            let mut found = Vec::new();
            index.for_each_match(key, |k| found.push(k.0));
            found.sort();
            found
        };
        assert_eq!(matches(&index, b"k"), vec![1, 2, 3]);
        assert_eq!(matches(&index, b"k1"), vec![2]);
        assert_eq!(matches(&index, b"x"), Vec::<u64>::new());
        index.remove(WatcherKey(1), &single);
        index.remove(WatcherKey(2), &prefix);
        assert_eq!(matches(&index, b"k"), vec![3]);
        index.remove(WatcherKey(3), &single);
        assert!(index.is_empty());
    }

    #[test]
    fn select_filters_and_strips_prev_kv() {
        let kv = |v: &str| KeyValue { key: b"k".to_vec(), value: v.as_bytes().to_vec(), ..Default::default() };
        let put = Event { kind: EventKind::Put, kv: kv("2"), prev_kv: Some(kv("1")) };
        let del = Event { kind: EventKind::Delete, kv: kv(""), prev_kv: Some(kv("2")) };
        let mut options = WatchOptions {
            range: range("k", ""),
            filters: Filters { no_put: false, no_delete: true },
            prev_kv: false,
            progress_notify: false,
            fragment: false,
        };
        let got = options.select([&put, &del]);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].kind, got[0].prev_kv.clone()), (EventKind::Put, None));
        options.filters = Filters { no_put: true, no_delete: false };
        options.prev_kv = true;
        let got = options.select([&put, &del]);
        assert_eq!(got, vec![del.clone()]);
    }
}
