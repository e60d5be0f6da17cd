//! One function per guarantee; each looks at one watcher (or, for Consistent, pairs of
//! watchers) and records what it finds in [`Findings`].

use std::collections::{BTreeMap, HashMap, HashSet};

use super::truth::{Prev, Truth};
use super::{
    Error, Event, EventType, Filter, Findings, Guarantee, KeyRange, KeyValue, Result, Revision,
    WatchRequest, Watcher,
};

/// Pairs of watchers compared for Consistent, at most: the comparison is quadratic in the
/// watchers of one range.
pub(super) const CONSISTENT_PAIRS_MAX: usize = 100_000;

/// A watcher's responses, flattened.
pub(super) struct View<'a> {
    pub watcher: &'a Watcher,
    /// (response index, event), in delivery order.
    pub events: Vec<(usize, &'a Event)>,
    pub last_progress: Option<Revision>,
    /// A response said the start revision was compacted.
    pub compacted: bool,
}

impl<'a> View<'a> {
    pub fn new(watcher: &'a Watcher) -> Self {
        let mut events = Vec::new();
        let mut last_progress = None;
        let mut compacted = false;
        for (i, response) in watcher.responses.iter().enumerate() {
            events.extend(response.events.iter().map(|event| (i, event)));
            if response.is_progress_notify() {
                last_progress = last_progress.max(Some(response.header_revision));
            }
            compacted |= response.compact_revision > 0;
        }
        View {
            watcher,
            events,
            last_progress,
            compacted,
        }
    }

    fn id(&self) -> u64 {
        self.watcher.id
    }

    fn request(&self) -> &'a WatchRequest {
        &self.watcher.request
    }

    fn last_event(&self) -> Option<Revision> {
        self.events.iter().map(|(_, e)| e.revision()).max()
    }

    /// The revision from which the watcher must have everything: its explicit start, or
    /// its first event.
    fn start(&self) -> Option<Revision> {
        match self.request().start_revision {
            r if r > 0 => Some(r),
            _ => self.events.first().map(|(_, e)| e.revision()),
        }
    }

    /// The revision through which the watcher must have everything: its last event (a
    /// revision arrives whole) or its last progress notification.
    fn known_through(&self) -> Option<Revision> {
        self.last_event().max(self.last_progress)
    }
}

fn kv_text(kv: &KeyValue) -> String {
    format!(
        "{:?} = {:?} (create_revision {}, mod_revision {}, version {})",
        kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version
    )
}

pub(super) fn ordered(view: &View, findings: &mut Findings) {
    let mut previous: Option<(usize, &Event)> = None;
    for &(response, event) in &view.events {
        findings.exercised(Guarantee::Ordered);
        if let Some((prev_response, prev)) = previous {
            if event.revision() < prev.revision() {
                findings.violation(
                    Guarantee::Ordered,
                    view.id(),
                    Some(response),
                    Some(event.revision()),
                    || format!("{event} came after {prev} (response {prev_response})"),
                );
            }
        }
        previous = Some((response, event));
    }
}

pub(super) fn unique(view: &View, findings: &mut Findings) {
    let mut first_seen: HashMap<(Revision, &str), usize> = HashMap::new();
    for &(response, event) in &view.events {
        findings.exercised(Guarantee::Unique);
        if let Some(&first) = first_seen.get(&(event.revision(), event.key())) {
            findings.violation(
                Guarantee::Unique,
                view.id(),
                Some(response),
                Some(event.revision()),
                || format!("{event} delivered again (first in response {first})"),
            );
        } else {
            first_seen.insert((event.revision(), event.key()), response);
        }
    }
}

pub(super) fn atomic(view: &View, truth: Option<&Truth>, findings: &mut Findings) {
    // Per revision: the responses holding its events, and the keys delivered.
    let mut holders: BTreeMap<Revision, (Vec<usize>, HashSet<&str>)> = BTreeMap::new();
    for &(response, event) in &view.events {
        findings.exercised(Guarantee::Atomic);
        let (responses, keys) = holders.entry(event.revision()).or_default();
        if !responses.contains(&response) {
            responses.push(response);
        }
        keys.insert(event.key());
    }
    for (revision, (responses, keys)) in holders {
        if responses.len() > 1 {
            findings.violation(Guarantee::Atomic, view.id(), Some(responses[1]), Some(revision), || {
                format!("the events of revision {revision} are split across responses {responses:?}")
            });
            continue;
        }
        let Some(truth) = truth.filter(|t| t.covers(revision)) else {
            continue;
        };
        let expected: Vec<&Event> = truth.matching(view.request(), revision, revision).collect();
        let missing: Vec<&str> = expected
            .iter()
            .map(|e| e.key())
            .filter(|key| !keys.contains(key))
            .collect();
        if !missing.is_empty() {
            findings.violation(Guarantee::Atomic, view.id(), Some(responses[0]), Some(revision), || {
                format!(
                    "the response holds {} of the {} events of revision {revision}; missing: {missing:?}",
                    expected.len() - missing.len(),
                    expected.len()
                )
            });
        }
    }
}

pub(super) fn reliable(view: &View, truth: Option<&Truth>, findings: &mut Findings) {
    let Some(truth) = truth else {
        return;
    };
    let revisions: Vec<Revision> = view.events.iter().map(|(_, e)| e.revision()).collect();
    let (Some(&first), Some(&last)) = (revisions.iter().min(), revisions.iter().max()) else {
        return;
    };
    findings.exercised(Guarantee::Reliable);
    let delivered: HashMap<(Revision, &str), &Event> = view
        .events
        .iter()
        .map(|&(_, e)| ((e.revision(), e.key()), e))
        .collect();
    let mut sorted = revisions.clone();
    sorted.sort_unstable();
    for expected in truth.matching(view.request(), first, last) {
        if delivered.contains_key(&(expected.revision(), expected.key())) {
            continue;
        }
        let r = expected.revision();
        let at = sorted.partition_point(|&d| d < r);
        let before = at.checked_sub(1).map(|i| sorted[i]);
        let after = sorted[at..].iter().find(|&&d| d > r);
        findings.violation(Guarantee::Reliable, view.id(), None, Some(r), || {
            let around = match (before, after) {
                (Some(b), Some(a)) => format!("between delivered revisions {b} and {a}"),
                _ => format!("in delivered revision {r}"),
            };
            format!("{expected} was never delivered ({around})")
        });
    }
    for &(response, event) in &view.events {
        if !view.request().matches(event) || !truth.covers(event.revision()) {
            continue; // out of range or filtered: Filter's business
        }
        match truth.event(event.revision(), event.key()) {
            None => findings.violation(
                Guarantee::Reliable,
                view.id(),
                Some(response),
                Some(event.revision()),
                || format!("{event} is not in the ground truth"),
            ),
            Some(committed) if !committed.same_change(event) => findings.violation(
                Guarantee::Reliable,
                view.id(),
                Some(response),
                Some(event.revision()),
                || format!("{event} differs from the committed {committed}"),
            ),
            Some(_) => {}
        }
    }
}

pub(super) fn resumable(
    view: &View,
    views: &[View],
    truth: Option<&Truth>,
    findings: &mut Findings,
) -> Result<()> {
    let start = view.request().start_revision;
    if let Some(resumes) = view.watcher.resumes {
        let Some(broken) = views.iter().find(|v| v.id() == resumes) else {
            return Err(Error::UnknownResumedWatcher {
                watcher: view.id(),
                resumes,
            });
        };
        let known_through = broken
            .known_through()
            .unwrap_or(broken.request().start_revision.max(1) - 1);
        if start <= 0 || start > known_through + 1 {
            return Err(Error::ResumeLeavesGap {
                watcher: view.id(),
                resumes,
                start_revision: start,
                known_through,
            });
        }
        findings.exercised(Guarantee::Resumable);
        let before: HashSet<(Revision, &str)> = broken
            .events
            .iter()
            .map(|(_, e)| (e.revision(), e.key()))
            .collect();
        for &(response, event) in &view.events {
            if before.contains(&(event.revision(), event.key())) {
                findings.violation(Guarantee::Resumable, view.id(), Some(response), Some(event.revision()), || {
                    format!("{event} was already delivered to watcher {resumes}, which this watch resumes")
                });
            }
        }
    }
    if start <= 0 {
        return Ok(());
    }
    findings.exercised(Guarantee::Resumable);
    for &(response, event) in &view.events {
        if event.revision() < start {
            findings.violation(
                Guarantee::Resumable,
                view.id(),
                Some(response),
                Some(event.revision()),
                || format!("{event} precedes the start revision {start}"),
            );
        }
    }
    let Some(truth) = truth.filter(|t| t.covers(start) && !view.compacted) else {
        return Ok(());
    };
    let Some(&(response, first)) = view.events.first() else {
        return Ok(());
    };
    if first.revision() < start {
        return Ok(()); // reported above
    }
    let expected = truth
        .matching(view.request(), start, truth.last_revision)
        .next();
    if let Some(expected) = expected {
        if (expected.revision(), expected.key()) != (first.revision(), first.key()) {
            findings.violation(Guarantee::Resumable, view.id(), Some(response), Some(expected.revision()), || {
                format!("the first event delivered is {first}, but the first at or after start revision {start} is {expected}")
            });
        }
    }
    Ok(())
}

pub(super) fn bookmarkable(view: &View, truth: Option<&Truth>, findings: &mut Findings) {
    let start = view.start();
    let mut delivered: HashSet<(Revision, &str)> = HashSet::new();
    let mut last_event: Option<(usize, &Event)> = None;
    let mut last_progress: Option<(usize, Revision)> = None;
    // Ground truth checked up to here: each revision is checked once, at the first
    // notification that covers it.
    let mut verified_through = start.map(|s| s - 1);
    for (i, response) in view.watcher.responses.iter().enumerate() {
        if response.is_progress_notify() {
            findings.exercised(Guarantee::Bookmarkable);
            let r = response.header_revision;
            if let Some((at, event)) = last_event.filter(|(_, e)| r < e.revision()) {
                findings.violation(Guarantee::Bookmarkable, view.id(), Some(i), Some(r), || {
                    format!("progress notification at revision {r} after {event} was delivered (response {at})")
                });
            }
            if let Some((at, previous)) = last_progress.filter(|&(_, p)| r < p) {
                findings.violation(Guarantee::Bookmarkable, view.id(), Some(i), Some(r), || {
                    format!("progress notification at revision {r} after one at revision {previous} (response {at})")
                });
            }
            if let (Some(truth), Some(from)) = (truth, verified_through) {
                if r > from {
                    let missing: Vec<&Event> = truth
                        .matching(view.request(), from + 1, r)
                        .filter(|e| !delivered.contains(&(e.revision(), e.key())))
                        .collect();
                    if let Some(first) = missing.first() {
                        findings.violation(Guarantee::Bookmarkable, view.id(), Some(i), Some(r), || {
                            let more = match missing.len() {
                                1 => String::new(),
                                n => format!(" (and {} more)", n - 1),
                            };
                            format!("progress notification at revision {r}, but {first} had not been delivered{more}")
                        });
                    }
                    verified_through = Some(r);
                }
            }
            if last_progress.is_none_or(|(_, p)| r > p) {
                last_progress = Some((i, r));
            }
        }
        for event in &response.events {
            if let Some((at, p)) = last_progress.filter(|&(_, p)| event.revision() <= p) {
                findings.violation(Guarantee::Bookmarkable, view.id(), Some(i), Some(event.revision()), || {
                    format!("{event} delivered after a progress notification at revision {p} (response {at})")
                });
            }
            delivered.insert((event.revision(), event.key()));
            last_event = Some((i, event));
        }
    }
}

pub(super) fn prev_kv(view: &View, truth: Option<&Truth>, findings: &mut Findings) {
    let requested = view.request().prev_kv;
    for &(response, event) in &view.events {
        let revision = event.revision();
        let mut violation = |message: String| {
            findings.violation(
                Guarantee::PrevKv,
                view.id(),
                Some(response),
                Some(revision),
                || message,
            )
        };
        if !requested {
            if let Some(prev) = &event.prev_kv {
                violation(format!(
                    "{event} carries prev_kv {} though the watch did not ask for it",
                    kv_text(prev)
                ));
            }
            continue;
        }
        if let Some(prev) = &event.prev_kv {
            if prev.key != event.kv.key {
                violation(format!(
                    "{event} has the prev_kv of another key: {}",
                    kv_text(prev)
                ));
            } else if prev.mod_revision >= revision {
                violation(format!(
                    "{event} has a prev_kv that is not older: {}",
                    kv_text(prev)
                ));
            } else if event.kind == EventType::Put
                && (event.kv.version != prev.version + 1
                    || event.kv.create_revision != prev.create_revision)
            {
                violation(format!(
                    "{event} does not follow its prev_kv {}: a put over a live key keeps its create_revision and adds 1 to its version",
                    kv_text(prev)
                ));
            }
        }
        if let Some(truth) = truth.filter(|t| t.covers(revision)) {
            match (truth.prev(revision, event.key()), &event.prev_kv) {
                (Prev::Absent, Some(prev)) => violation(format!(
                    "{event} has prev_kv {}, but the key did not exist before",
                    kv_text(prev)
                )),
                (Prev::Present(committed), Some(prev)) if prev != committed => violation(format!(
                    "{event} has prev_kv {}, but the previous version was {}",
                    kv_text(prev),
                    kv_text(committed)
                )),
                // etcd reads prev_kv at revision - 1, which compaction may have removed.
                (Prev::Present(committed), None) if revision > truth.compact_revision => {
                    violation(format!(
                        "{event} lacks prev_kv; the previous version was {} (not compacted)",
                        kv_text(committed)
                    ))
                }
                _ => {}
            }
        }
        findings.exercised(Guarantee::PrevKv);
    }
}

pub(super) fn filter(view: &View, findings: &mut Findings) {
    let request = view.request();
    for &(response, event) in &view.events {
        findings.exercised(Guarantee::Filter);
        if !request.range.contains(event.key()) {
            findings.violation(
                Guarantee::Filter,
                view.id(),
                Some(response),
                Some(event.revision()),
                || format!("{event} is outside the watched range {:?}", request.range),
            );
        }
        if request.filters_out(event) {
            let filter = match event.kind {
                EventType::Put => Filter::NoPut,
                EventType::Delete => Filter::NoDelete,
            };
            findings.violation(
                Guarantee::Filter,
                view.id(),
                Some(response),
                Some(event.revision()),
                || format!("{event} delivered despite filter {filter:?}"),
            );
        }
    }
}

pub(super) fn is_create(view: &View, truth: Option<&Truth>, findings: &mut Findings) {
    for &(response, event) in &view.events {
        if event.kind != EventType::Put {
            continue;
        }
        findings.exercised(Guarantee::IsCreate);
        let kv = &event.kv;
        let create = kv.create_revision == kv.mod_revision;
        let mut violation = |message: String| {
            findings.violation(
                Guarantee::IsCreate,
                view.id(),
                Some(response),
                Some(kv.mod_revision),
                || message,
            )
        };
        if kv.create_revision <= 0 || kv.create_revision > kv.mod_revision || kv.version < 1 {
            violation(format!(
                "{event}: impossible create_revision or version for a put"
            ));
        } else if create != (kv.version == 1) {
            violation(format!(
                "{event}: create_revision {} mod_revision {} yet version {}; a create, and only a create, has version 1",
                kv.create_revision, kv.mod_revision, kv.version
            ));
        }
        let Some(truth) = truth.filter(|t| t.covers(kv.mod_revision)) else {
            continue;
        };
        match truth.prev(kv.mod_revision, &kv.key) {
            Prev::Absent if !create => {
                violation(format!("{event} is not a create (create_revision ≠ mod_revision), but the key did not exist before"))
            }
            Prev::Present(previous) if create => violation(format!(
                "{event} is a create (create_revision = mod_revision), but the key existed: {}",
                kv_text(previous)
            )),
            _ => {}
        }
    }
}

/// What a watch selects: its range and (sorted) filters.
type Selection<'a> = (&'a KeyRange, Vec<Filter>);

/// Watchers with the same range and filters agree on the revisions both cover.
pub(super) fn consistent(views: &[View], findings: &mut Findings) {
    let mut groups: Vec<(Selection, Vec<&View>)> = Vec::new();
    for view in views {
        let mut filters = view.request().filters.clone();
        filters.sort_unstable();
        filters.dedup();
        let key = (&view.request().range, filters);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(view),
            None => groups.push((key, vec![view])),
        }
    }
    let mut pairs = 0;
    for (_, members) in &groups {
        for (i, a) in members.iter().enumerate() {
            for b in &members[i + 1..] {
                pairs += 1;
                if pairs > CONSISTENT_PAIRS_MAX {
                    findings.note(
                        Guarantee::Consistent,
                        format!("compared only the first {CONSISTENT_PAIRS_MAX} pairs of watchers (CONSISTENT_PAIRS_MAX)"),
                    );
                    return;
                }
                compare(a, b, findings);
            }
        }
    }
}

fn within<'a>(view: &View<'a>, from: Revision, until: Revision) -> Vec<(usize, &'a Event)> {
    view.events
        .iter()
        .copied()
        .filter(|(_, e)| (from..=until).contains(&e.revision()))
        .collect()
}

fn compare(a: &View, b: &View, findings: &mut Findings) {
    let (Some(a_start), Some(a_end), Some(b_start), Some(b_end)) =
        (a.start(), a.known_through(), b.start(), b.known_through())
    else {
        return;
    };
    let (from, until) = (a_start.max(b_start), a_end.min(b_end));
    if from > until {
        return;
    }
    findings.exercised(Guarantee::Consistent);
    let (ours, theirs) = (within(a, from, until), within(b, from, until));
    let with_prev = a.request().prev_kv && b.request().prev_kv;
    let same = |x: &Event, y: &Event| x.same_change(y) && (!with_prev || x.prev_kv == y.prev_kv);
    let Some(k) = (0..ours.len().max(theirs.len())).find(
        |&k| !matches!((ours.get(k), theirs.get(k)), (Some((_, x)), Some((_, y))) if same(x, y)),
    ) else {
        return;
    };
    let (ai, bi) = (a.id(), b.id());
    let (response, revision, message) = match (ours.get(k), theirs.get(k)) {
        (Some(&(r, x)), Some(&(_, y))) if x.same_change(y) => (
            Some(r),
            x.revision(),
            format!("watchers {ai} and {bi} (same range, both complete over revisions {from}..={until}) disagree on the prev_kv of {x}"),
        ),
        (Some(&(r, x)), Some(&(_, y))) => (
            Some(r),
            x.revision().min(y.revision()),
            format!("watchers {ai} and {bi} (same range, both complete over revisions {from}..={until}) diverge: watcher {ai} saw {x} where watcher {bi} saw {y}"),
        ),
        (Some(&(r, x)), None) => (
            Some(r),
            x.revision(),
            format!("watcher {ai} saw {x}, which watcher {bi} (same range, complete through revision {until}) did not"),
        ),
        (None, Some(&(_, y))) => (
            None,
            y.revision(),
            format!("watcher {bi} saw {y}, which watcher {ai} (same range, complete through revision {until}) did not"),
        ),
        (None, None) => unreachable!("k is below the longer length"),
    };
    findings.violation(Guarantee::Consistent, ai, response, Some(revision), || {
        message
    });
}
