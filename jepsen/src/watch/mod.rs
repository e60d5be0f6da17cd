//! Watch checkers, one per guarantee of etcd's watch API ("API guarantees", watch APIs;
//! the same names etcd's robustness tests use), plus a cross-watcher comparison.
//!
//! # Input
//!
//! Per [`Watcher`]: its [`WatchRequest`] (key range, start revision, `prev_kv`, filters)
//! and every [`WatchResponse`] it received, in order, as etcd sends them (fragments
//! already joined). Optionally the [`GroundTruth`]: every revision committed during the
//! run with its events, from a full watch or the write responses. A watcher on prefix
//! `/a/` from revision 5 that saw one put, a progress notification, then a delete:
//!
//! ```text
//! {"id":1,"request":{"range":{"prefix":"/a/"},"start_revision":5,"prev_kv":true},
//!  "responses":[
//!   {"header_revision":4,"created":true},
//!   {"header_revision":6,"events":[{"type":"PUT","kv":{"key":"/a/x","value":"1","create_revision":6,"mod_revision":6,"version":1}}]},
//!   {"header_revision":9},
//!   {"header_revision":10,"events":[{"type":"DELETE","kv":{"key":"/a/x","mod_revision":10},
//!                                    "prev_kv":{"key":"/a/x","value":"1","create_revision":6,"mod_revision":6,"version":1}}]}]}
//! ```
//!
//! # The guarantees
//!
//! An event is identified by (revision, key): etcd never changes one key twice in a
//! revision. "Matching" means inside the request's key range and not filtered out.
//!
//! - **Ordered**: event revisions never go down, within a response or across responses.
//! - **Unique**: no (revision, key) is delivered twice.
//! - **Atomic**: all events of a revision arrive in one response (never split across
//!   two); with the ground truth, that response holds every matching event of it.
//! - **Reliable** (ground truth): between a watcher's first and last delivered event,
//!   every matching event of the ground truth is delivered, and every delivered event is
//!   in the ground truth, equal to it.
//! - **Resumable**: a watch from an explicit start revision delivers no event before it,
//!   and (ground truth) its first event is the first matching event at or after it, so a
//!   watch resumed from `last revision + 1` continues without gap or repeat. A watcher that
//!   names the broken watch it [`resumes`](Watcher::resumes) must also not repeat its events.
//!   Together with Reliable: every matching event from the start revision to the last
//!   received one is delivered. A watch canceled by compaction is exempt (the revision left
//!   the history window).
//! - **Bookmarkable**: a progress notification at revision R is never below an event
//!   already delivered, never below an earlier notification, is never followed by an event
//!   at or below R, and (ground truth) comes after every matching event up to R.
//! - **PrevKV**: `prev_kv` only when requested; then it is the key's previous version
//!   (ground truth; none for a create, and none allowed when the previous version was
//!   compacted), and at least consistent with the event (same key, older revision, a put
//!   increments its version).
//! - **Filter**: no put with `NOPUT`, no delete with `NODELETE`, no key outside the range.
//! - **IsCreate**: a put is a create iff `create_revision == mod_revision`, iff its version
//!   is 1, and (ground truth) iff the key did not exist before.
//! - **Consistent** (not one of etcd's named guarantees; it follows from the others):
//!   watchers with the same range and filters see the same events over the revisions they
//!   both cover, from the later start to the earlier of the revisions each is known
//!   complete through (last event, or last progress notification).
//!
//! A guarantee is `not_checked` when nothing could exercise it (Reliable without ground
//! truth, Bookmarkable without progress notifications, Consistent without two comparable
//! watchers); its report's note says why.

mod checks;
mod truth;

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use truth::Truth;

/// An etcd revision (`int64` on the wire).
pub type Revision = i64;

/// Evidence kept per guarantee; the rest are counted.
pub const DEFAULT_EVIDENCE_PER_GUARANTEE_MAX: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    Put,
    Delete,
}

/// etcd's `mvccpb.KeyValue`; keys and values as text. A delete event's `kv` has only
/// `key` and `mod_revision`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub create_revision: Revision,
    pub mod_revision: Revision,
    #[serde(default)]
    pub version: i64,
    #[serde(default)]
    pub lease: i64,
}

/// etcd's `mvccpb.Event`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    pub kv: KeyValue,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_kv: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }

    pub fn key(&self) -> &str {
        &self.kv.key
    }

    /// The same change (type and resulting key-value); `prev_kv` aside.
    pub fn same_change(&self, other: &Event) -> bool {
        self.kind == other.kind && self.kv == other.kv
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            EventType::Put => "PUT",
            EventType::Delete => "DELETE",
        };
        write!(
            f,
            "{kind} {:?} at revision {}",
            self.kv.key, self.kv.mod_revision
        )?;
        if self.kind == EventType::Put {
            let kv = &self.kv;
            write!(
                f,
                " (value {:?}, create_revision {}, version {})",
                kv.value, kv.create_revision, kv.version
            )?;
        }
        Ok(())
    }
}

/// One `WatchResponse` as received (etcd's fields; `fragment` responses joined).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchResponse {
    pub header_revision: Revision,
    #[serde(default, skip_serializing_if = "is_false")]
    pub created: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub canceled: bool,
    /// Non-zero: the watch was canceled because its start revision was compacted.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub compact_revision: Revision,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(r: &Revision) -> bool {
    *r == 0
}

impl WatchResponse {
    /// As etcd's client decides it: no events, not created, not canceled, not compacted.
    pub fn is_progress_notify(&self) -> bool {
        self.events.is_empty()
            && !self.created
            && !self.canceled
            && self.compact_revision == 0
            && self.header_revision != 0
    }
}

/// The keys a watch covers (etcd's `key` / `range_end`, spelled out).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRange {
    /// One key (empty `range_end`).
    Key(String),
    /// Every key starting with it (`range_end` = prefix + 1).
    Prefix(String),
    /// `key <= k < range_end`.
    Range { key: String, range_end: String },
    /// Every key at or after it (`range_end` = `"\0"`).
    FromKey(String),
}

impl KeyRange {
    pub fn contains(&self, key: &str) -> bool {
        match self {
            KeyRange::Key(k) => key == k,
            KeyRange::Prefix(prefix) => key.starts_with(prefix.as_str()),
            KeyRange::Range {
                key: start,
                range_end,
            } => key >= start.as_str() && key < range_end.as_str(),
            KeyRange::FromKey(start) => key >= start.as_str(),
        }
    }
}

/// etcd's `WatchCreateRequest.FilterType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Filter {
    #[serde(rename = "NOPUT")]
    NoPut,
    #[serde(rename = "NODELETE")]
    NoDelete,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRequest {
    pub range: KeyRange,
    /// 0: from the next revision.
    #[serde(default)]
    pub start_revision: Revision,
    #[serde(default)]
    pub prev_kv: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    #[serde(default)]
    pub progress_notify: bool,
}

impl WatchRequest {
    /// The watch should deliver this event: in range, not filtered out.
    pub fn matches(&self, event: &Event) -> bool {
        self.range.contains(event.key()) && !self.filters_out(event)
    }

    fn filters_out(&self, event: &Event) -> bool {
        self.filters.iter().any(|filter| {
            matches!(
                (filter, event.kind),
                (Filter::NoPut, EventType::Put) | (Filter::NoDelete, EventType::Delete)
            )
        })
    }
}

/// One watch, from creation to its end (cancel, compaction, or the end of the run).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watcher {
    /// Unique among the watchers of a run.
    pub id: u64,
    pub request: WatchRequest,
    /// The broken watcher this one resumes: its start revision is at most one past what
    /// that watcher had received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumes: Option<u64>,
    pub responses: Vec<WatchResponse>,
}

/// The events of one committed revision, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionEvents {
    pub revision: Revision,
    pub events: Vec<Event>,
}

/// What was committed: every revision in `first_revision..=last_revision` that changed
/// something, in increasing order (a revision missing from the list changed nothing).
/// `first_revision <= 1` means from the empty store, so a key's state before its first
/// event is known (absent); otherwise it is unknown until its first event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroundTruth {
    pub first_revision: Revision,
    pub last_revision: Revision,
    /// The highest revision compacted during the run (0: none): a `prev_kv` older than it
    /// may be missing.
    #[serde(default)]
    pub compact_revision: Revision,
    pub revisions: Vec<RevisionEvents>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Guarantee {
    Ordered,
    Unique,
    Atomic,
    Reliable,
    Resumable,
    Bookmarkable,
    #[serde(rename = "PrevKV")]
    PrevKv,
    Filter,
    IsCreate,
    Consistent,
}

impl Guarantee {
    pub const ALL: [Guarantee; 10] = [
        Guarantee::Ordered,
        Guarantee::Unique,
        Guarantee::Atomic,
        Guarantee::Reliable,
        Guarantee::Resumable,
        Guarantee::Bookmarkable,
        Guarantee::PrevKv,
        Guarantee::Filter,
        Guarantee::IsCreate,
        Guarantee::Consistent,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Guarantee::Ordered => "Ordered",
            Guarantee::Unique => "Unique",
            Guarantee::Atomic => "Atomic",
            Guarantee::Reliable => "Reliable",
            Guarantee::Resumable => "Resumable",
            Guarantee::Bookmarkable => "Bookmarkable",
            Guarantee::PrevKv => "PrevKV",
            Guarantee::Filter => "Filter",
            Guarantee::IsCreate => "IsCreate",
            Guarantee::Consistent => "Consistent",
        }
    }
}

impl fmt::Display for Guarantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Holds,
    Violated,
    /// Nothing in the input could exercise it; the note says why.
    NotChecked,
}

/// One broken promise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub watcher: u64,
    /// Index into the watcher's responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<Revision>,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "watcher {}", self.watcher)?;
        if let Some(response) = self.response {
            write!(f, ", response {response}")?;
        }
        write!(f, ": {}", self.message)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuaranteeReport {
    pub guarantee: Guarantee,
    pub verdict: Verdict,
    /// All violations found; `evidence` keeps the first few.
    pub violations: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Violation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysis {
    /// No guarantee violated.
    pub valid: bool,
    pub watchers: usize,
    /// Events delivered, over all watchers.
    pub events: usize,
    /// One report per guarantee, in [`Guarantee::ALL`] order.
    pub guarantees: Vec<GuaranteeReport>,
}

impl Analysis {
    pub fn report(&self, guarantee: Guarantee) -> &GuaranteeReport {
        self.guarantees
            .iter()
            .find(|r| r.guarantee == guarantee)
            .expect("every guarantee has a report")
    }

    pub fn verdict(&self, guarantee: Guarantee) -> Verdict {
        self.report(guarantee).verdict
    }
}

impl fmt::Display for Analysis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.valid { "valid" } else { "invalid" };
        writeln!(
            f,
            "{verdict}: {} watchers, {} events",
            self.watchers, self.events
        )?;
        for report in &self.guarantees {
            let verdict = match report.verdict {
                Verdict::Holds => "holds".to_owned(),
                Verdict::Violated => format!("VIOLATED ×{}", report.violations),
                Verdict::NotChecked => "not checked".to_owned(),
            };
            write!(f, "  {}: {verdict}", report.guarantee)?;
            match &report.note {
                Some(note) => writeln!(f, " ({note})")?,
                None => writeln!(f)?,
            }
            for violation in &report.evidence {
                writeln!(f, "    {violation}")?;
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    /// See [`DEFAULT_EVIDENCE_PER_GUARANTEE_MAX`].
    pub evidence_per_guarantee_max: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            evidence_per_guarantee_max: DEFAULT_EVIDENCE_PER_GUARANTEE_MAX,
        }
    }
}

/// Input the checkers cannot judge (a runner's mistake, not the store's).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("two watchers have id {id}")]
    DuplicateWatcher { id: u64 },
    #[error("watcher {watcher} resumes watcher {resumes}, which is not in the input")]
    UnknownResumedWatcher { watcher: u64, resumes: u64 },
    #[error("watcher {watcher} resumes watcher {resumes} from revision {start_revision}, but that watcher was only complete through revision {known_through}: the revisions between were never watched")]
    ResumeLeavesGap {
        watcher: u64,
        resumes: u64,
        start_revision: Revision,
        known_through: Revision,
    },
    #[error("ground truth: revision {revision} is not after revision {previous}")]
    TruthOrder {
        revision: Revision,
        previous: Revision,
    },
    #[error("ground truth: revision {revision} is outside {first}..={last}")]
    TruthSpan {
        revision: Revision,
        first: Revision,
        last: Revision,
    },
    #[error(
        "ground truth: an event of revision {revision} on {key:?} has mod_revision {mod_revision}"
    )]
    TruthEventRevision {
        revision: Revision,
        key: String,
        mod_revision: Revision,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks every guarantee on every watcher; `truth` enables the checks that need to know
/// what was committed.
pub fn check(
    watchers: &[Watcher],
    truth: Option<&GroundTruth>,
    options: &Options,
) -> Result<Analysis> {
    let mut ids = HashSet::new();
    for watcher in watchers {
        if !ids.insert(watcher.id) {
            return Err(Error::DuplicateWatcher { id: watcher.id });
        }
    }
    let truth = truth.map(Truth::new).transpose()?;
    let views: Vec<checks::View> = watchers.iter().map(checks::View::new).collect();
    let mut findings = Findings::new(options.evidence_per_guarantee_max);
    for view in &views {
        checks::ordered(view, &mut findings);
        checks::unique(view, &mut findings);
        checks::atomic(view, truth.as_ref(), &mut findings);
        checks::reliable(view, truth.as_ref(), &mut findings);
        checks::resumable(view, &views, truth.as_ref(), &mut findings)?;
        checks::bookmarkable(view, truth.as_ref(), &mut findings);
        checks::prev_kv(view, truth.as_ref(), &mut findings);
        checks::filter(view, &mut findings);
        checks::is_create(view, truth.as_ref(), &mut findings);
    }
    checks::consistent(&views, &mut findings);
    Ok(findings.finish(&views, truth.is_some()))
}

/// Violations found so far, and which guarantees something exercised.
pub(crate) struct Findings {
    evidence_max: usize,
    found: BTreeMap<Guarantee, (usize, Vec<Violation>)>,
    exercised: HashSet<Guarantee>,
    /// Limits reached, per guarantee; shown instead of the default note.
    notes: BTreeMap<Guarantee, String>,
}

impl Findings {
    fn new(evidence_max: usize) -> Self {
        Findings {
            evidence_max,
            found: BTreeMap::new(),
            exercised: HashSet::new(),
            notes: BTreeMap::new(),
        }
    }

    fn note(&mut self, guarantee: Guarantee, note: String) {
        self.notes.insert(guarantee, note);
    }

    /// Something in the input put `guarantee` to the test.
    fn exercised(&mut self, guarantee: Guarantee) {
        self.exercised.insert(guarantee);
    }

    fn violation(
        &mut self,
        guarantee: Guarantee,
        watcher: u64,
        response: Option<usize>,
        revision: Option<Revision>,
        message: impl FnOnce() -> String,
    ) {
        self.exercised.insert(guarantee);
        let (count, evidence) = self.found.entry(guarantee).or_default();
        *count += 1;
        if evidence.len() < self.evidence_max {
            evidence.push(Violation {
                watcher,
                response,
                revision,
                message: message(),
            });
        }
    }

    fn finish(mut self, views: &[checks::View], with_truth: bool) -> Analysis {
        let guarantees = Guarantee::ALL
            .iter()
            .map(|&guarantee| {
                let (violations, evidence) = self.found.remove(&guarantee).unwrap_or_default();
                let verdict = if violations > 0 {
                    Verdict::Violated
                } else if self.exercised.contains(&guarantee) {
                    Verdict::Holds
                } else {
                    Verdict::NotChecked
                };
                let note = self
                    .notes
                    .remove(&guarantee)
                    .or_else(|| note(guarantee, verdict, with_truth));
                GuaranteeReport {
                    guarantee,
                    verdict,
                    violations,
                    evidence,
                    note,
                }
            })
            .collect::<Vec<_>>();
        Analysis {
            valid: guarantees.iter().all(|r| r.verdict != Verdict::Violated),
            watchers: views.len(),
            events: views.iter().map(|v| v.events.len()).sum(),
            guarantees,
        }
    }
}

fn note(guarantee: Guarantee, verdict: Verdict, with_truth: bool) -> Option<String> {
    let text = match (guarantee, verdict, with_truth) {
        (Guarantee::Reliable, Verdict::NotChecked, false) => "needs the ground truth",
        (Guarantee::Atomic, Verdict::Holds, false) => {
            "without ground truth: only that no revision is split across responses"
        }
        (Guarantee::Resumable, Verdict::NotChecked, _) => "no watcher with an explicit start revision",
        (Guarantee::Resumable, _, false) => {
            "without ground truth: only that no event precedes the start revision or repeats the resumed watch"
        }
        (Guarantee::Bookmarkable, Verdict::NotChecked, _) => "no progress notification received",
        (Guarantee::Bookmarkable, _, false) => {
            "without ground truth: not whether all events up to a notification were delivered"
        }
        (Guarantee::PrevKv | Guarantee::IsCreate, _, false) => {
            "without ground truth: consistency of each event with itself only"
        }
        (Guarantee::Consistent, Verdict::NotChecked, _) => {
            "no two watchers with the same range and filters cover common revisions"
        }
        (_, Verdict::NotChecked, _) => "no event delivered",
        _ => return None,
    };
    Some(text.to_owned())
}

#[cfg(test)]
mod tests;
