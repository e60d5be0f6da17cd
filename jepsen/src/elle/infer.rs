//! From transactions to observations: who appended what, what each read saw, the version
//! order of each key, the anomalies visible in single reads, and the dependency edges.

use std::collections::{HashMap, HashSet};

use super::graph::{Edge, Why};
use super::history::list_string;
use super::{Anomaly, AnomalyKind, Checker, DepKind, Error, MicroOp, Read, Result, Writer};
use crate::history::OpKind;

/// What a transaction knows of a key it touched, for its internal consistency.
enum Known {
    /// The whole list, from its own read and the appends since.
    Exact(Vec<i64>),
    /// Only that the list ends with its own appends.
    EndsWith(Vec<i64>),
}

fn may_have_happened(outcome: OpKind) -> bool {
    matches!(outcome, OpKind::Info | OpKind::Invoke)
}

impl<'a> Checker<'a> {
    /// Indexes every append of every transaction (failed ones too: reads of them are G1a).
    pub(super) fn index_writes(&mut self) -> Result<()> {
        let txns = self.txns;
        for (t, txn) in txns.iter().enumerate() {
            let mut previous: HashMap<usize, i64> = HashMap::new();
            for op in &txn.ops {
                let MicroOp::Append { key, value } = op else {
                    continue;
                };
                let k = self.key_id(key);
                let writer = Writer {
                    txn: t,
                    next_own: None,
                };
                if let Some(first) = self.writers[k].insert(*value, writer) {
                    return Err(Error::DuplicateAppend {
                        key: key.clone(),
                        value: *value,
                        first: txns[first.txn].id,
                        second: txn.id,
                    });
                }
                if let Some(prev) = previous.insert(k, *value) {
                    let prev = self.writers[k].get_mut(&prev).expect("indexed above");
                    prev.next_own = Some(*value);
                }
            }
        }
        Ok(())
    }

    /// Collects the reads of `ok` transactions and checks each transaction's internal
    /// consistency: a read returns what the transaction's earlier read of the key returned
    /// plus its own appends since, and ends with its own appends.
    pub(super) fn index_reads(&mut self) -> Result<()> {
        let txns = self.txns;
        for (t, txn) in txns.iter().enumerate() {
            if txn.outcome != OpKind::Ok {
                continue;
            }
            let mut known: HashMap<usize, Known> = HashMap::new();
            for op in &txn.ops {
                match op {
                    MicroOp::Append { key, value } => {
                        let k = self.key_id(key);
                        match known.get_mut(&k) {
                            Some(Known::Exact(list) | Known::EndsWith(list)) => list.push(*value),
                            None => {
                                known.insert(k, Known::EndsWith(vec![*value]));
                            }
                        }
                    }
                    MicroOp::Read { key, value } => {
                        let Some(values) = value else {
                            return Err(Error::MissingReadResult {
                                txn: txn.id,
                                key: key.clone(),
                            });
                        };
                        let k = self.key_id(key);
                        let problem = match known.get(&k) {
                            Some(Known::Exact(expected)) if expected != values => Some(format!(
                                "{} read {key:?} = {}, but its earlier read and its own appends since make it {}",
                                self.name(t),
                                list_string(values),
                                list_string(expected)
                            )),
                            Some(Known::EndsWith(own)) if !values.ends_with(own) => Some(format!(
                                "{} read {key:?} = {} after appending {} to it: the read must end with its own appends",
                                self.name(t),
                                list_string(values),
                                list_string(own)
                            )),
                            _ => None,
                        };
                        if let Some(explanation) = problem {
                            let txns = vec![self.show(t)];
                            self.report.add(AnomalyKind::Internal, || Anomaly {
                                kind: AnomalyKind::Internal,
                                explanation,
                                cycle: Vec::new(),
                                txns,
                            });
                        }
                        let external = !known.contains_key(&k);
                        known.insert(k, Known::Exact(values.clone()));
                        self.reads[k].push(Read {
                            txn: t,
                            values,
                            external,
                            usable: true,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Anomalies visible in one read: elements listed twice, appended by nobody, appended
    /// by a failed transaction (G1a), or ending at another transaction's intermediate
    /// append (G1b).
    pub(super) fn check_elements(&mut self) {
        for k in 0..self.keys.len() {
            for r in 0..self.reads[k].len() {
                let read = self.reads[k][r];
                let key = self.keys[k];
                let reader = self.name(read.txn);
                let seen_as = format!("{reader} read {key:?} = {}", list_string(read.values));
                let mut seen = HashSet::with_capacity(read.values.len());
                if let Some(twice) = read.values.iter().find(|v| !seen.insert(**v)) {
                    self.reads[k][r].usable = false;
                    let txns = vec![self.show(read.txn)];
                    self.report.add(AnomalyKind::DuplicateElements, || Anomaly {
                        kind: AnomalyKind::DuplicateElements,
                        explanation: format!("{seen_as}, which lists {twice} more than once"),
                        cycle: Vec::new(),
                        txns,
                    });
                }
                let mut garbage = Vec::new();
                let mut aborted = Vec::new();
                for value in read.values {
                    match self.writers[k].get(value) {
                        None => garbage.push(*value),
                        Some(w) if self.txns[w.txn].outcome == OpKind::Fail => {
                            aborted.push((*value, w.txn))
                        }
                        Some(_) => {}
                    }
                }
                if !garbage.is_empty() {
                    let txns = vec![self.show(read.txn)];
                    self.report.add(AnomalyKind::GarbageRead, || Anomaly {
                        kind: AnomalyKind::GarbageRead,
                        explanation: format!(
                            "{seen_as}, but no transaction appended {} to {key:?}",
                            list_string(&garbage)
                        ),
                        cycle: Vec::new(),
                        txns,
                    });
                }
                if !aborted.is_empty() {
                    let which: Vec<String> = aborted
                        .iter()
                        .map(|&(value, w)| {
                            format!("{value} (appended by {}, which failed)", self.name(w))
                        })
                        .collect();
                    let mut txns = vec![self.show(read.txn)];
                    for &(_, w) in &aborted {
                        let shown = self.show(w);
                        if !txns.contains(&shown) {
                            txns.push(shown);
                        }
                    }
                    self.report.add(AnomalyKind::G1a, || Anomaly {
                        kind: AnomalyKind::G1a,
                        explanation: format!(
                            "aborted read: {seen_as}, which contains {}",
                            which.join(", ")
                        ),
                        cycle: Vec::new(),
                        txns,
                    });
                }
                let Some(last) = read.values.last() else {
                    continue;
                };
                let Some(&writer) = self.writers[k].get(last) else {
                    continue;
                };
                let Some(next_own) = writer.next_own else {
                    continue;
                };
                if writer.txn == read.txn || self.txns[writer.txn].outcome == OpKind::Fail {
                    continue;
                }
                let txns = vec![self.show(read.txn), self.show(writer.txn)];
                let writer_name = self.name(writer.txn);
                self.report.add(AnomalyKind::G1b, || Anomaly {
                    kind: AnomalyKind::G1b,
                    explanation: format!(
                        "intermediate read: {seen_as}, ending in {last}, but {writer_name} appended {next_own} to {key:?} after {last}, so {last} is not its final version"
                    ),
                    cycle: Vec::new(),
                    txns,
                });
            }
        }
    }

    /// A key's version order is its longest read; every read must be a prefix of it.
    pub(super) fn infer_orders(&mut self) {
        for k in 0..self.keys.len() {
            let usable = || self.reads[k].iter().filter(|r| r.usable);
            // The first of the longest, so evidence follows history order.
            let Some(longest) = usable().reduce(|a, b| {
                if b.values.len() > a.values.len() {
                    b
                } else {
                    a
                }
            }) else {
                continue;
            };
            let conflict = usable().find(|r| !longest.values.starts_with(r.values));
            match conflict {
                None => self.orders[k] = Some(longest.values),
                Some(&other) => {
                    let longest = *longest;
                    let explanation = format!(
                        "{} read {:?} = {} and {} read {}; neither is a prefix of the other, so no single order of appends explains both",
                        self.name(longest.txn),
                        self.keys[k],
                        list_string(longest.values),
                        self.name(other.txn),
                        list_string(other.values)
                    );
                    let txns = vec![self.show(longest.txn), self.show(other.txn)];
                    self.report.add(AnomalyKind::IncompatibleOrder, || Anomaly {
                        kind: AnomalyKind::IncompatibleOrder,
                        explanation,
                        cycle: Vec::new(),
                        txns,
                    });
                }
            }
        }
    }

    /// `ok` transactions took effect; an `info` one did if any read saw one of its appends.
    pub(super) fn mark_committed(&mut self) {
        for (t, txn) in self.txns.iter().enumerate() {
            self.committed[t] = txn.outcome == OpKind::Ok;
        }
        for k in 0..self.keys.len() {
            for read in &self.reads[k] {
                for value in read.values {
                    if let Some(w) = self.writers[k].get(value) {
                        if may_have_happened(self.txns[w.txn].outcome) {
                            self.committed[w.txn] = true;
                        }
                    }
                }
            }
        }
    }

    /// ww, wr and rw edges, key by key.
    pub(super) fn add_dependency_edges(&mut self) {
        for k in 0..self.keys.len() {
            let writers = &self.writers[k];
            let committed = |value: &i64| {
                writers
                    .get(value)
                    .filter(|w| self.committed[w.txn])
                    .map(|w| w.txn)
            };
            let mut edges = Vec::new();
            if let Some(order) = self.orders[k] {
                let mut previous: Option<(i64, usize)> = None;
                for value in order {
                    let Some(writer) = committed(value) else {
                        continue;
                    };
                    if let Some((prev, prev_writer)) = previous {
                        if prev_writer != writer {
                            edges.push((
                                prev_writer,
                                writer,
                                DepKind::Ww,
                                Why::Ww { prev, next: *value },
                            ));
                        }
                    }
                    previous = Some((*value, writer));
                }
            }
            for read in self.reads[k].iter().filter(|r| r.usable && r.external) {
                if let Some(last) = read.values.last() {
                    if let Some(writer) = committed(last).filter(|&w| w != read.txn) {
                        edges.push((writer, read.txn, DepKind::Wr, Why::Wr { value: *last }));
                    }
                }
                let Some(order) = self.orders[k] else {
                    continue;
                };
                let next = order[read.values.len()..]
                    .iter()
                    .find_map(|v| committed(v).map(|w| (*v, w)));
                if let Some((next, writer)) = next.filter(|&(_, w)| w != read.txn) {
                    let seen_last = read.values.last().copied();
                    edges.push((read.txn, writer, DepKind::Rw, Why::Rw { seen_last, next }));
                }
            }
            for (from, to, kind, why) in edges {
                self.graph.add(Edge {
                    from,
                    to,
                    kind,
                    key: Some(k),
                    why,
                });
            }
        }
    }

    /// T1 → T2 when T1 completed before T2 was invoked, reduced: an edge implied by a
    /// chain of others is left out. Walking the history in order, the *frontier* holds
    /// the completed transactions no later completion has covered yet; an invocation gets
    /// an edge from each, and a completion removes the ones its invocation saw (any later
    /// invocation reaches them through it).
    pub(super) fn add_realtime_edges(&mut self) {
        let n = self.txns.len();
        // (history index, is a completion, transaction)
        let mut events = Vec::new();
        for (t, txn) in self.txns.iter().enumerate() {
            if !self.committed[t] {
                continue;
            }
            events.push((txn.invoke_index, false, t));
            if txn.outcome == OpKind::Ok {
                let complete = txn
                    .complete_index
                    .expect("an ok transaction has a completion");
                events.push((complete, true, t));
            }
        }
        events.sort_unstable();
        let mut frontier: Vec<usize> = Vec::new();
        let mut in_frontier = vec![false; n];
        let mut predecessors: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (index, is_completion, t) in events {
            if is_completion {
                for p in std::mem::take(&mut predecessors[t]) {
                    in_frontier[p] = false;
                }
                frontier.retain(|&p| in_frontier[p]);
                frontier.push(t);
                in_frontier[t] = true;
            } else {
                for &p in &frontier {
                    let completed = self.txns[p]
                        .complete_index
                        .expect("only ok transactions join the frontier");
                    self.graph.add(Edge {
                        from: p,
                        to: t,
                        kind: DepKind::Realtime,
                        key: None,
                        why: Why::Realtime {
                            completed,
                            invoked: index,
                        },
                    });
                }
                predecessors[t] = frontier.clone();
            }
        }
    }
}
