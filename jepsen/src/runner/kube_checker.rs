//! Judges the kube workload against the writers' acknowledged writes.
//!
//! Every write is an optimistic-concurrency `Txn` on one pod key: create (compare
//! `mod_revision == 0`), update or delete (compare `mod_revision == m`, the revision the
//! writer last read). An `ok` write carries the revision it committed at; values are unique.
//!
//! - **Lost update**: an ok update or delete that compared against `m` and committed at
//!   `R`, while another ok write to the key committed strictly between `m` and `R`: the
//!   compare should have failed, and the write in between was overwritten unseen. An ok
//!   create committed while the key's latest earlier ok write was a put is the same, unless
//!   a delete of unknown outcome may explain the gap.
//! - **List snapshot**: a complete paginated list at a pinned revision `R` (every page
//!   asked at `R`) lists keys in strictly increasing order, no item newer than `R`, every
//!   item equal to the acknowledged write that made it, no item older than an ok write to
//!   its key at or before `R` (stale), and no key missing whose latest ok write at or before
//!   `R` is a put (unless a delete of unknown outcome may explain it).
//! - **Watch from a list**: a watch from `R + 1` delivers events in strictly increasing
//!   revision order, none at or before `R`, each equal to the ok write at its revision (if
//!   any), and every ok write between `R + 1` and the last revision it delivered.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// Evidence kept per finding kind; the rest are counted.
pub const EVIDENCE_MAX: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteKind {
    Create,
    Update,
    Delete,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteOutcome {
    /// Committed at this revision.
    Ok(i64),
    /// The compare failed (or the request was refused): nothing changed.
    Fail,
    /// Unknown: it may have committed at any revision.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeWrite {
    pub process: u64,
    pub key: String,
    pub kind: WriteKind,
    /// The compared mod_revision (0 for a create).
    pub expected_mod_revision: i64,
    /// The value put (a delete puts nothing: 0).
    pub value: i64,
    pub outcome: WriteOutcome,
}

/// One item of a list or a watch event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub key: String,
    /// `None` for a delete event.
    pub value: Option<i64>,
    pub mod_revision: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeList {
    pub process: u64,
    pub revision: i64,
    pub pages: Vec<Vec<Item>>,
    /// Every page was answered (a list cut by compaction or an error is not judged).
    pub complete: bool,
    /// The list taken after the run, with the faults healed.
    #[serde(default)]
    pub final_read: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeWatch {
    pub process: u64,
    /// The list revision + 1.
    pub start_revision: i64,
    pub events: Vec<Item>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeRecord {
    pub writes: Vec<KubeWrite>,
    pub lists: Vec<KubeList>,
    pub watches: Vec<KubeWatch>,
    /// Compactions done by the workload: revisions.
    pub compactions: Vec<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub count: usize,
    pub evidence: Vec<String>,
}

impl Finding {
    fn add(&mut self, text: impl FnOnce() -> String) {
        self.count += 1;
        if self.evidence.len() < EVIDENCE_MAX {
            self.evidence.push(text());
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeAnalysis {
    pub valid: bool,
    pub writes_ok: usize,
    pub lists_checked: usize,
    pub lists_incomplete: usize,
    pub watches_checked: usize,
    pub watch_events: usize,
    pub compactions: usize,
    pub lost_updates: Finding,
    pub list_snapshot: Finding,
    pub watch_from_list: Finding,
}

impl std::fmt::Display for KubeAnalysis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}: {} ok writes, {} complete lists checked ({} cut short), {} watches with {} events, {} compactions",
            if self.valid { "valid" } else { "INVALID" },
            self.writes_ok,
            self.lists_checked,
            self.lists_incomplete,
            self.watches_checked,
            self.watch_events,
            self.compactions
        )?;
        for (name, finding) in [
            ("optimistic updates lose no write", &self.lost_updates),
            ("lists are snapshots at their revision", &self.list_snapshot),
            (
                "watches from a list's revision see every later change in order",
                &self.watch_from_list,
            ),
        ] {
            if finding.count == 0 {
                writeln!(f, "  {name}: holds")?;
            } else {
                writeln!(f, "  {name}: VIOLATED ×{}", finding.count)?;
                for e in &finding.evidence {
                    writeln!(f, "    {e}")?;
                }
            }
        }
        Ok(())
    }
}

/// Per key: ok writes by revision, and whether a write of unknown outcome exists (by kind).
struct Index<'a> {
    by_key: HashMap<&'a str, BTreeMap<i64, &'a KubeWrite>>,
    unknown_deletes: HashSet<&'a str>,
    unknown_puts: HashSet<&'a str>,
    by_revision: HashMap<i64, &'a KubeWrite>,
}

impl<'a> Index<'a> {
    fn new(writes: &'a [KubeWrite]) -> Self {
        let mut index = Index {
            by_key: HashMap::new(),
            unknown_deletes: HashSet::new(),
            unknown_puts: HashSet::new(),
            by_revision: HashMap::new(),
        };
        for w in writes {
            match w.outcome {
                WriteOutcome::Ok(revision) => {
                    index.by_key.entry(&w.key).or_default().insert(revision, w);
                    index.by_revision.insert(revision, w);
                }
                WriteOutcome::Unknown if w.kind == WriteKind::Delete => {
                    index.unknown_deletes.insert(&w.key);
                }
                WriteOutcome::Unknown => {
                    index.unknown_puts.insert(&w.key);
                }
                WriteOutcome::Fail => {}
            }
        }
        index
    }

    /// The latest ok write to `key` at or before `revision`.
    fn latest(&self, key: &str, revision: i64) -> Option<(i64, &'a KubeWrite)> {
        self.by_key
            .get(key)?
            .range(..=revision)
            .next_back()
            .map(|(r, w)| (*r, *w))
    }
}

pub fn check(record: &KubeRecord) -> KubeAnalysis {
    let index = Index::new(&record.writes);
    let mut a = KubeAnalysis {
        compactions: record.compactions.len(),
        ..KubeAnalysis::default()
    };
    for w in &record.writes {
        let WriteOutcome::Ok(revision) = w.outcome else {
            continue;
        };
        a.writes_ok += 1;
        let Some(chain) = index.by_key.get(w.key.as_str()) else {
            continue;
        };
        let before = chain.range(..revision).next_back();
        match w.kind {
            WriteKind::Create => {
                if let Some((r, prev)) = before {
                    if prev.kind != WriteKind::Delete
                        && !index.unknown_deletes.contains(w.key.as_str())
                    {
                        a.lost_updates.add(|| format!(
                            "create of {:?} committed at {revision} though the key existed: {:?} of value {} committed at {r} and no delete since",
                            w.key, prev.kind, prev.value
                        ));
                    }
                }
            }
            WriteKind::Update | WriteKind::Delete => {
                let m = w.expected_mod_revision;
                for (r, between) in chain.range(m + 1..revision) {
                    a.lost_updates.add(|| format!(
                        "{:?} of {:?} by process {} compared mod_revision {m} and committed at {revision}, but {:?} (value {}) by process {} committed at {r} in between and was lost",
                        w.kind, w.key, w.process, between.kind, between.value, between.process
                    ));
                }
            }
        }
    }
    for list in &record.lists {
        if !list.complete {
            a.lists_incomplete += 1;
            continue;
        }
        a.lists_checked += 1;
        check_list(list, &index, &mut a.list_snapshot);
    }
    for watch in &record.watches {
        a.watches_checked += 1;
        a.watch_events += watch.events.len();
        check_watch(watch, &index, &mut a.watch_from_list);
    }
    a.valid = a.lost_updates.count + a.list_snapshot.count + a.watch_from_list.count == 0;
    a
}

fn check_list(list: &KubeList, index: &Index<'_>, finding: &mut Finding) {
    let r = list.revision;
    let what = if list.final_read {
        "the final list"
    } else {
        "a list"
    };
    let items: Vec<&Item> = list.pages.iter().flatten().collect();
    for pair in items.windows(2) {
        if pair[0].key >= pair[1].key {
            finding.add(|| format!(
                "{what} at revision {r} by process {}: {:?} then {:?}: keys not strictly increasing across pages",
                list.process, pair[0].key, pair[1].key
            ));
        }
    }
    let mut listed = HashSet::new();
    for item in &items {
        listed.insert(item.key.as_str());
        if item.mod_revision > r {
            finding.add(|| {
                format!(
                    "{what} at revision {r}: {:?} has mod_revision {}, newer than the list",
                    item.key, item.mod_revision
                )
            });
            continue;
        }
        if let Some(w) = index.by_revision.get(&item.mod_revision) {
            if w.key == item.key && (w.kind == WriteKind::Delete || Some(w.value) != item.value) {
                finding.add(|| format!(
                    "{what} at revision {r}: {:?} = {:?} at mod_revision {}, but the ok write there was {:?} of value {}",
                    item.key, item.value, item.mod_revision, w.kind, w.value
                ));
            }
        }
        if let Some((wr, w)) = index.latest(&item.key, r) {
            if wr > item.mod_revision {
                finding.add(|| format!(
                    "{what} at revision {r}: {:?} = {:?} from mod_revision {}, stale: {:?} of value {} was acknowledged at {wr}",
                    item.key, item.value, item.mod_revision, w.kind, w.value
                ));
            }
        }
    }
    for (key, chain) in &index.by_key {
        if listed.contains(key) {
            continue;
        }
        if let Some((wr, w)) = chain.range(..=r).next_back() {
            if w.kind != WriteKind::Delete && !index.unknown_deletes.contains(key) {
                finding.add(|| format!(
                    "{what} at revision {r} by process {}: {key:?} is missing, though {:?} of value {} was acknowledged at {wr} and no delete may have followed",
                    list.process, w.kind, w.value
                ));
            }
        }
    }
}

fn check_watch(watch: &KubeWatch, index: &Index<'_>, finding: &mut Finding) {
    let start = watch.start_revision;
    let mut last = start - 1;
    let mut delivered = HashSet::new();
    for event in &watch.events {
        if event.mod_revision <= last {
            finding.add(|| format!(
                "watch from {start} (process {}): {:?} at revision {} after revision {last}: not in order",
                watch.process, event.key, event.mod_revision
            ));
        }
        last = last.max(event.mod_revision);
        delivered.insert(event.mod_revision);
        if let Some(w) = index.by_revision.get(&event.mod_revision) {
            let same = w.key == event.key
                && match w.kind {
                    WriteKind::Delete => event.value.is_none(),
                    _ => event.value == Some(w.value),
                };
            if !same {
                finding.add(|| format!(
                    "watch from {start}: event {:?} = {:?} at revision {}, but the ok write there was {:?} of {:?} value {}",
                    event.key, event.value, event.mod_revision, w.kind, w.key, w.value
                ));
            }
        }
    }
    for (revision, w) in &index.by_revision {
        if (start..=last).contains(revision) && !delivered.contains(revision) {
            finding.add(|| format!(
                "watch from {start} (process {}) delivered up to revision {last} but not {:?} of {:?} (value {}) acknowledged at {revision}",
                watch.process, w.kind, w.key, w.value
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(key: &str, kind: WriteKind, expected: i64, value: i64, at: i64) -> KubeWrite {
        KubeWrite {
            process: 0,
            key: key.into(),
            kind,
            expected_mod_revision: expected,
            value,
            outcome: WriteOutcome::Ok(at),
        }
    }

    fn item(key: &str, value: Option<i64>, at: i64) -> Item {
        Item {
            key: key.into(),
            value,
            mod_revision: at,
        }
    }

    /// a: created at 2 (value 1), updated at 4 (value 2), deleted at 6; b: created at 3.
    fn writes() -> Vec<KubeWrite> {
        vec![
            write("a", WriteKind::Create, 0, 1, 2),
            write("b", WriteKind::Create, 0, 10, 3),
            write("a", WriteKind::Update, 2, 2, 4),
            write("a", WriteKind::Delete, 4, 0, 6),
        ]
    }

    fn list(revision: i64, pages: Vec<Vec<Item>>) -> KubeList {
        KubeList {
            process: 1,
            revision,
            pages,
            complete: true,
            final_read: false,
        }
    }

    #[test]
    fn a_consistent_history_is_valid() {
        let record = KubeRecord {
            writes: writes(),
            lists: vec![
                list(
                    5,
                    vec![vec![item("a", Some(2), 4)], vec![item("b", Some(10), 3)]],
                ),
                list(6, vec![vec![item("b", Some(10), 3)]]),
            ],
            watches: vec![KubeWatch {
                process: 1,
                start_revision: 4,
                events: vec![item("a", Some(2), 4), item("a", None, 6)],
            }],
            compactions: vec![],
        };
        let a = check(&record);
        assert!(a.valid, "{a}");
        assert_eq!((a.writes_ok, a.lists_checked, a.watch_events), (4, 2, 2));
    }

    #[test]
    fn an_update_that_skips_an_acknowledged_write_is_a_lost_update() {
        let mut w = writes();
        // A second update also compared against 2, committed at 5: it overwrote 4 unseen.
        w.push(write("a", WriteKind::Update, 2, 3, 5));
        let a = check(&KubeRecord {
            writes: w,
            ..KubeRecord::default()
        });
        // It lost the update at 4, and the delete at 6 (compared 4) lost it in turn.
        assert_eq!(a.lost_updates.count, 2, "{a}");
        assert!(a
            .lost_updates
            .evidence
            .iter()
            .any(|e| e.contains("committed at 4 in between")));
        assert!(!a.valid);
    }

    #[test]
    fn stale_missing_and_unordered_list_items_are_caught() {
        let record = KubeRecord {
            writes: writes(),
            lists: vec![
                // Stale: a's value from 2 though 4 was acknowledged; b missing.
                list(5, vec![vec![item("a", Some(1), 2)]]),
                // Keys out of order across pages, and an item newer than the list.
                list(
                    3,
                    vec![vec![item("b", Some(10), 3)], vec![item("a", Some(2), 4)]],
                ),
            ],
            ..KubeRecord::default()
        };
        let a = check(&record);
        let text = a.list_snapshot.evidence.join("\n");
        assert!(text.contains("stale"), "{text}");
        assert!(text.contains("\"b\" is missing"), "{text}");
        assert!(text.contains("not strictly increasing"), "{text}");
        assert!(text.contains("newer than the list"), "{text}");
        assert!(!a.valid);
    }

    #[test]
    fn a_watch_that_skips_or_reorders_is_caught_and_an_unknown_delete_excuses_a_missing_key() {
        let record = KubeRecord {
            writes: writes(),
            watches: vec![
                KubeWatch {
                    process: 2,
                    start_revision: 3,
                    events: vec![item("b", Some(10), 3), item("a", None, 6)],
                },
                KubeWatch {
                    process: 3,
                    start_revision: 3,
                    events: vec![item("a", Some(2), 4), item("b", Some(10), 3)],
                },
            ],
            ..KubeRecord::default()
        };
        let a = check(&record);
        let text = a.watch_from_list.evidence.join("\n");
        assert!(text.contains("but not Update of \"a\""), "{text}");
        assert!(text.contains("not in order"), "{text}");

        let mut w = writes();
        w.push(KubeWrite {
            outcome: WriteOutcome::Unknown,
            ..write("b", WriteKind::Delete, 3, 0, 0)
        });
        let a = check(&KubeRecord {
            writes: w,
            lists: vec![list(5, vec![vec![item("a", Some(2), 4)]])],
            ..KubeRecord::default()
        });
        assert!(a.valid, "{a}");
    }
}
