//! The ground truth, indexed: events by revision, and each event's previous version of
//! its key (replayed from the first revision).

use std::collections::{BTreeMap, HashMap};

use super::{Error, Event, EventType, GroundTruth, KeyValue, Result, Revision, WatchRequest};

/// What a key held just before an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Prev<'a> {
    /// The ground truth starts after the key's last change before this event.
    Unknown,
    /// The key did not exist.
    Absent,
    Present(&'a KeyValue),
}

pub(super) struct Truth<'a> {
    pub first_revision: Revision,
    pub last_revision: Revision,
    pub compact_revision: Revision,
    by_revision: BTreeMap<Revision, &'a [Event]>,
    prev: HashMap<(Revision, &'a str), Prev<'a>>,
}

impl<'a> Truth<'a> {
    pub fn new(truth: &'a GroundTruth) -> Result<Self> {
        let from_empty_store = truth.first_revision <= 1;
        let mut by_revision = BTreeMap::new();
        let mut prev = HashMap::new();
        // Per key: its latest version, or None once deleted.
        let mut state: HashMap<&'a str, Option<&'a KeyValue>> = HashMap::new();
        let mut previous: Option<Revision> = None;
        for r in &truth.revisions {
            let (revision, events) = (r.revision, r.events.as_slice());
            if let Some(previous) = previous.filter(|&p| revision <= p) {
                return Err(Error::TruthOrder { revision, previous });
            }
            previous = Some(revision);
            if revision < truth.first_revision || revision > truth.last_revision {
                return Err(Error::TruthSpan {
                    revision,
                    first: truth.first_revision,
                    last: truth.last_revision,
                });
            }
            for event in events {
                if event.revision() != revision {
                    return Err(Error::TruthEventRevision {
                        revision,
                        key: event.key().to_owned(),
                        mod_revision: event.revision(),
                    });
                }
                let key = event.key();
                let before = match state.get(key) {
                    Some(Some(kv)) => Prev::Present(kv),
                    Some(None) => Prev::Absent,
                    None if from_empty_store => Prev::Absent,
                    None => Prev::Unknown,
                };
                prev.insert((revision, key), before);
                let after = match event.kind {
                    EventType::Put => Some(&event.kv),
                    EventType::Delete => None,
                };
                state.insert(key, after);
            }
            by_revision.insert(revision, events);
        }
        Ok(Truth {
            first_revision: truth.first_revision,
            last_revision: truth.last_revision,
            compact_revision: truth.compact_revision,
            by_revision,
            prev,
        })
    }

    /// Revisions the ground truth speaks for.
    pub fn covers(&self, revision: Revision) -> bool {
        (self.first_revision..=self.last_revision).contains(&revision)
    }

    /// Events of `revision..=until` the request should deliver, in order; the span is
    /// clipped to what the ground truth covers.
    pub fn matching<'r>(
        &'r self,
        request: &'r WatchRequest,
        from: Revision,
        until: Revision,
    ) -> impl Iterator<Item = &'a Event> + 'r {
        let from = from.max(self.first_revision);
        let until = until.min(self.last_revision);
        let span = if from <= until {
            self.by_revision.range(from..=until)
        } else {
            self.by_revision.range(0..0)
        };
        span.flat_map(|(_, events)| events.iter())
            .filter(move |event| request.matches(event))
    }

    /// The committed event at (revision, key), if any.
    pub fn event(&self, revision: Revision, key: &str) -> Option<&'a Event> {
        self.by_revision
            .get(&revision)?
            .iter()
            .find(|event| event.key() == key)
    }

    /// What the key held before the change at `revision`; `Unknown` for a change the
    /// ground truth does not have.
    pub fn prev(&self, revision: Revision, key: &str) -> Prev<'a> {
        self.prev
            .get(&(revision, key))
            .copied()
            .unwrap_or(Prev::Unknown)
    }
}
