//! Transaction-anomaly checker for the append workload, after Elle (Kingsbury & Alvaro,
//! "Elle: Inferring Isolation Anomalies from Experimental Observations", VLDB 2020).
//!
//! # The workload
//!
//! Transactions of micro-ops `append(key, value)` and `r(key) -> list` (see [`history`]),
//! run as etcd txns. Every value appended to a key is unique, so every element a read
//! returns names the one transaction that appended it, and since a list only grows, every
//! read of a key is a prefix of the key's final list: reads reveal the order of versions.
//!
//! # Inference, step by step
//!
//! Take T1 = `[append x 1]`, T2 = `[r x [1], append x 2]`, T3 = `[r x [1 2]]` and
//! T4 = `[r x []]`, all `ok`.
//!
//! 1. **Version orders.** For each key, the longest read is its version order (`x`:
//!    `[1 2]`, from T3). Every other read must be a prefix of it, else the key has no
//!    single order: `incompatible-order`, and the key yields no ww / rw edges.
//! 2. **Read checks.** A read containing an element appended by a *failed* transaction is
//!    an aborted read (`G1a`); one ending in an element that its writer followed with
//!    another append to the same key saw an intermediate state (`G1b`); an element that
//!    nobody appended (`garbage-read`), or twice in one read (`duplicate-elements`), is
//!    reported too; a transaction whose reads disagree with its own earlier reads and
//!    appends breaks `internal` consistency.
//! 3. **Which transactions happened.** `ok` ones; `info` ones only if some read saw one of
//!    their appends (then all of them happened: transactions are atomic); never `fail` ones.
//! 4. **Dependencies**, between those transactions, for each key:
//!    - `ww`: consecutive elements of the version order by different writers (T1 → T2:
//!      2 follows 1);
//!    - `wr`: the writer of the last element a read saw → the reader (T1 → T2, T2 → T3);
//!    - `rw`: a reader → the writer of the element after the last one it saw; an empty
//!      read anti-depends on the writer of the first element (T4 → T1). T2's own append
//!      follows its read, which gives no edge.
//!
//!    The graph is acyclic: T4, T1, T2, T3 is a serial order that explains every read.
//!
//!    Only a transaction's *external* reads (before its own first append to the key) give
//!    wr and rw edges; reads after its own appends are checked for internal consistency.
//!    Under [`ConsistencyModel::StrictSerializable`], `realtime` edges join T1 → T2 when
//!    T1 completed before T2 was invoked (a transitive reduction: about n × concurrency
//!    edges, not n²).
//! 5. **Cycles.** A serializable history has an acyclic graph. Each anomaly class is a
//!    cycle shape, found by Tarjan's strongly connected components over the edge kinds
//!    the class allows, then a breadth-first search inside each component for a shortest
//!    cycle of that shape:
//!    - `G0`: ww only; `G1c`: ww + wr with at least one wr;
//!    - `G-single`: exactly one rw (read skew); `G2-item`: two or more rw (write skew);
//!    - `…-realtime` (`G0-realtime`, `G1c-realtime`, `G-single-realtime`,
//!      `G2-item-realtime`): a cycle that exists only with real-time edges, named by its
//!      other edges.
//!
//! # Cost
//!
//! Indexing and edges are linear in the total size of the reads; the components are
//! linear in the edges. A valid history has no component, so it costs nothing more. In an
//! invalid one, each component gets a few breadth-first searches (each linear in the
//! component); the search for a `G-single` tries one rw edge after another and stops at
//! [`Options::search_steps_max`] edge visits, after which a component is reported as
//! `G2-item` with a note. Evidence is kept for at most [`Options::anomalies_per_kind_max`]
//! anomalies of each kind; all are counted.

pub mod history;

mod cycles;
mod graph;
mod infer;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::history::{self as register_history, Key};
use graph::Graph;
pub use history::{MicroOp, Txn, TxnFunction, TxnHistory, TxnHistoryBuilder, TxnOp};

/// Anomalies of one kind whose evidence is kept; the rest are only counted.
pub const DEFAULT_ANOMALIES_PER_KIND_MAX: usize = 8;

/// Edge visits the cycle searches may spend beyond the first search of each component.
/// About a second of work; a valid history spends none.
pub const DEFAULT_SEARCH_STEPS_MAX: u64 = 20_000_000;

/// Which guarantee to check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsistencyModel {
    /// Dependency cycles only.
    Serializable,
    /// Also real-time order, as etcd promises for its KV API.
    #[default]
    StrictSerializable,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    pub consistency: ConsistencyModel,
    /// See [`DEFAULT_ANOMALIES_PER_KIND_MAX`].
    pub anomalies_per_kind_max: usize,
    /// See [`DEFAULT_SEARCH_STEPS_MAX`].
    pub search_steps_max: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            consistency: ConsistencyModel::default(),
            anomalies_per_kind_max: DEFAULT_ANOMALIES_PER_KIND_MAX,
            search_steps_max: DEFAULT_SEARCH_STEPS_MAX,
        }
    }
}

/// A kind of anomaly, named as Elle names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AnomalyKind {
    /// Two reads of a key that are not prefixes of one another.
    #[serde(rename = "incompatible-order")]
    IncompatibleOrder,
    /// A read listing one element twice.
    #[serde(rename = "duplicate-elements")]
    DuplicateElements,
    /// A read containing an element no transaction appended.
    #[serde(rename = "garbage-read")]
    GarbageRead,
    /// A read that disagrees with its own transaction's earlier reads and appends.
    #[serde(rename = "internal")]
    Internal,
    /// Aborted read: an element appended by a failed transaction was seen.
    G1a,
    /// Intermediate read: a read ended in a non-final append of another transaction.
    G1b,
    /// Write cycle: ww edges only.
    G0,
    /// Circular information flow: ww and wr edges, at least one wr.
    G1c,
    /// Read skew: exactly one rw edge.
    #[serde(rename = "G-single")]
    GSingle,
    /// Two or more rw edges.
    #[serde(rename = "G2-item")]
    G2Item,
    #[serde(rename = "G0-realtime")]
    G0Realtime,
    #[serde(rename = "G1c-realtime")]
    G1cRealtime,
    #[serde(rename = "G-single-realtime")]
    GSingleRealtime,
    #[serde(rename = "G2-item-realtime")]
    G2ItemRealtime,
}

impl AnomalyKind {
    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::IncompatibleOrder => "incompatible-order",
            AnomalyKind::DuplicateElements => "duplicate-elements",
            AnomalyKind::GarbageRead => "garbage-read",
            AnomalyKind::Internal => "internal",
            AnomalyKind::G1a => "G1a",
            AnomalyKind::G1b => "G1b",
            AnomalyKind::G0 => "G0",
            AnomalyKind::G1c => "G1c",
            AnomalyKind::GSingle => "G-single",
            AnomalyKind::G2Item => "G2-item",
            AnomalyKind::G0Realtime => "G0-realtime",
            AnomalyKind::G1cRealtime => "G1c-realtime",
            AnomalyKind::GSingleRealtime => "G-single-realtime",
            AnomalyKind::G2ItemRealtime => "G2-item-realtime",
        }
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kind of a dependency edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DepKind {
    /// Write-write: `to` appended the element right after `from`'s.
    Ww,
    /// Write-read: `to` read `from`'s append.
    Wr,
    /// Read-write (anti-dependency): `to` appended the element after the last one `from` read.
    Rw,
    /// `from` completed before `to` was invoked.
    Realtime,
}

impl fmt::Display for DepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DepKind::Ww => "ww",
            DepKind::Wr => "wr",
            DepKind::Rw => "rw",
            DepKind::Realtime => "realtime",
        })
    }
}

/// One edge of a cycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Transaction ids ([`Txn::id`]).
    pub from: usize,
    pub to: usize,
    pub kind: DepKind,
    /// `None` for a real-time edge.
    pub key: Option<Key>,
    /// The observation behind the edge, with the values involved.
    pub why: String,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "T{} -{} {key:?}-> T{}", self.from, self.kind, self.to)?,
            None => write!(f, "T{} -{}-> T{}", self.from, self.kind, self.to)?,
        }
        write!(f, ": {}", self.why)
    }
}

/// One anomaly, in words a person can check against the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    pub explanation: String,
    /// For a cycle: its edges in order, the last one returning to the first's `from`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cycle: Vec<Step>,
    /// The transactions involved, as [`Txn`]'s `Display` shows them.
    pub txns: Vec<String>,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {}", self.kind, self.explanation)?;
        for step in &self.cycle {
            writeln!(f, "  {step}")?;
        }
        for txn in &self.txns {
            writeln!(f, "  where {txn}")?;
        }
        Ok(())
    }
}

/// The verdict and its evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysis {
    /// No anomaly of any kind.
    pub valid: bool,
    pub consistency: ConsistencyModel,
    /// The kinds found, in order.
    pub anomaly_kinds: Vec<AnomalyKind>,
    /// Per kind: instances found (a cycle kind counts one per strongly connected component).
    pub anomaly_counts: BTreeMap<AnomalyKind, usize>,
    /// Evidence, at most [`Options::anomalies_per_kind_max`] per kind.
    pub anomalies: Vec<Anomaly>,
    /// Transactions in the history, and how many of them took effect.
    pub txns: usize,
    pub committed: usize,
    /// Dependency edges (all kinds, deduplicated).
    pub edges: usize,
    /// Limits reached and other caveats on the verdict.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl fmt::Display for Analysis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let committed = format!(
            "{} transactions ({} took effect), {} dependency edges",
            self.txns, self.committed, self.edges
        );
        if self.valid {
            writeln!(f, "valid ({:?}): {committed}", self.consistency)?;
        } else {
            let counts: Vec<String> = self
                .anomaly_counts
                .iter()
                .map(|(kind, n)| format!("{kind} ×{n}"))
                .collect();
            writeln!(
                f,
                "invalid ({:?}): {}; {committed}",
                self.consistency,
                counts.join(", ")
            )?;
        }
        for anomaly in &self.anomalies {
            write!(f, "{anomaly}")?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}

/// A history the checker cannot judge.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    History(#[from] register_history::Error),
    #[error("T{second} appends {value} to {key:?}, which T{first} appends too: appended values must be unique per key")]
    DuplicateAppend {
        key: Key,
        value: i64,
        first: usize,
        second: usize,
    },
    #[error("T{txn} is ok but its read of {key:?} has no result")]
    MissingReadResult { txn: usize, key: Key },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Pairs the history's invocations and completions and checks the transactions.
pub fn check(history: &TxnHistory, options: &Options) -> Result<Analysis> {
    check_txns(&history.pair()?, options)
}

/// Checks paired transactions (as [`TxnHistory::pair`] returns them, in invocation order;
/// real-time order comes from their history indices).
pub fn check_txns(txns: &[Txn], options: &Options) -> Result<Analysis> {
    let mut checker = Checker::new(txns, options);
    checker.index_writes()?;
    checker.index_reads()?;
    checker.check_elements();
    checker.infer_orders();
    checker.mark_committed();
    checker.add_dependency_edges();
    if options.consistency == ConsistencyModel::StrictSerializable {
        checker.add_realtime_edges();
    }
    checker.find_cycles();
    Ok(checker.finish())
}

/// Who appended an element.
#[derive(Clone, Copy, Debug)]
struct Writer {
    /// Position in the transactions.
    txn: usize,
    /// The value this transaction appended to the same key right after this one, if any.
    next_own: Option<i64>,
}

/// An `ok` transaction's read.
#[derive(Clone, Copy, Debug)]
struct Read<'a> {
    txn: usize,
    values: &'a [i64],
    /// Before the transaction's own first append to the key.
    external: bool,
    /// Fit to infer orders and edges (no element listed twice).
    usable: bool,
}

/// Anomalies found so far; evidence built only while under the per-kind bound.
struct Report {
    per_kind_max: usize,
    counts: BTreeMap<AnomalyKind, usize>,
    anomalies: Vec<Anomaly>,
    notes: Vec<String>,
}

impl Report {
    fn add(&mut self, kind: AnomalyKind, evidence: impl FnOnce() -> Anomaly) {
        let count = self.counts.entry(kind).or_default();
        *count += 1;
        if *count <= self.per_kind_max {
            self.anomalies.push(evidence());
        }
    }
}

struct Checker<'a> {
    txns: &'a [Txn],
    options: &'a Options,
    keys: Vec<&'a str>,
    key_ids: HashMap<&'a str, usize>,
    /// Per key: element → writer.
    writers: Vec<HashMap<i64, Writer>>,
    /// Per key: the reads of `ok` transactions.
    reads: Vec<Vec<Read<'a>>>,
    /// Per key: the version order, `None` when the reads disagree.
    orders: Vec<Option<&'a [i64]>>,
    /// Per transaction: it took effect.
    committed: Vec<bool>,
    graph: Graph,
    report: Report,
}

impl<'a> Checker<'a> {
    fn new(txns: &'a [Txn], options: &'a Options) -> Self {
        Checker {
            txns,
            options,
            keys: Vec::new(),
            key_ids: HashMap::new(),
            writers: Vec::new(),
            reads: Vec::new(),
            orders: Vec::new(),
            committed: vec![false; txns.len()],
            graph: Graph::new(txns.len()),
            report: Report {
                per_kind_max: options.anomalies_per_kind_max,
                counts: BTreeMap::new(),
                anomalies: Vec::new(),
                notes: Vec::new(),
            },
        }
    }

    fn key_id(&mut self, key: &'a str) -> usize {
        if let Some(&id) = self.key_ids.get(key) {
            return id;
        }
        let id = self.keys.len();
        self.keys.push(key);
        self.key_ids.insert(key, id);
        self.writers.push(HashMap::new());
        self.reads.push(Vec::new());
        self.orders.push(None);
        id
    }

    /// `T3` for the transaction at position `txn`.
    fn name(&self, txn: usize) -> String {
        format!("T{}", self.txns[txn].id)
    }

    fn show(&self, txn: usize) -> String {
        self.txns[txn].to_string()
    }

    fn finish(self) -> Analysis {
        let Checker {
            txns,
            options,
            committed,
            graph,
            report,
            ..
        } = self;
        Analysis {
            valid: report.counts.is_empty(),
            consistency: options.consistency,
            anomaly_kinds: report.counts.keys().copied().collect(),
            anomaly_counts: report.counts,
            anomalies: report.anomalies,
            txns: txns.len(),
            committed: committed.iter().filter(|&&c| c).count(),
            edges: graph.edges.len(),
            notes: report.notes,
        }
    }
}

#[cfg(test)]
mod tests;
