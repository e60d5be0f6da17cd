//! Cycle search: one strongly-connected-component pass per anomaly class, then a shortest
//! cycle of the class's shape inside each component.

use super::graph::{Bfs, Components, Edge, Why, NO_COMPONENT, RT, RW, WR, WW};
use super::{Anomaly, AnomalyKind, Checker, DepKind, Step};

/// Cycles compared per component before the shortest is kept: more searches find
/// shorter evidence, each costs a pass over the component.
const CYCLES_COMPARED_MAX: usize = 8;

/// A search's outcome: the shortest cycle found (edge ids, starting with the candidate
/// edge), and whether the step budget cut the search short.
struct Found {
    cycle: Option<Vec<usize>>,
    cut_short: bool,
}

impl Checker<'_> {
    pub(super) fn find_cycles(&mut self) {
        let mut bfs = Bfs::new(self.txns.len());
        let mut steps = 0u64;

        let ww = self.graph.components(WW);
        for c in 0..ww.sccs.len() {
            let candidates: Vec<usize> = self.graph.edges_within(&ww, c, WW).collect();
            let found = self.shortest_cycle(&mut bfs, &ww, c, &candidates, WW, &mut steps);
            if let Some(cycle) = found.cycle {
                self.report_cycle(AnomalyKind::G0, &cycle);
            }
        }

        let wwr = self.graph.components(WW | WR);
        for c in 0..wwr.sccs.len() {
            let candidates: Vec<usize> = self.graph.edges_within(&wwr, c, WR).collect();
            let found = self.shortest_cycle(&mut bfs, &wwr, c, &candidates, WW | WR, &mut steps);
            if let Some(cycle) = found.cycle {
                self.report_cycle(AnomalyKind::G1c, &cycle);
            }
        }

        let all = self.graph.components(WW | WR | RW);
        for c in 0..all.sccs.len() {
            let rw: Vec<usize> = self.graph.edges_within(&all, c, RW).collect();
            if rw.is_empty() {
                continue; // a ww / wr component: G0 or G1c, reported above
            }
            // An rw edge closed by ww / wr edges alone is a G-single.
            let single = self.shortest_cycle(&mut bfs, &all, c, &rw, WW | WR, &mut steps);
            if let Some(cycle) = single.cycle {
                self.report_cycle(AnomalyKind::GSingle, &cycle);
                continue;
            }
            let found = self.shortest_cycle(&mut bfs, &all, c, &rw, WW | WR | RW, &mut steps);
            let cycle = found
                .cycle
                .expect("an rw edge inside a component closes a cycle");
            self.report_cycle(AnomalyKind::G2Item, &cycle);
            if single.cut_short {
                self.report.notes.push(format!(
                    "the search for a G-single among {} transactions stopped at search_steps_max ({}); reported as G2-item, but it may also contain a G-single",
                    all.sccs[c].len(),
                    self.options.search_steps_max
                ));
            }
        }

        if self.options.consistency != super::ConsistencyModel::StrictSerializable {
            return;
        }
        let with_realtime = self.graph.components(WW | WR | RW | RT);
        for c in 0..with_realtime.sccs.len() {
            // Real-time edges whose ends are not already on a cycle without them.
            let candidates: Vec<usize> = self
                .graph
                .edges_within(&with_realtime, c, RT)
                .filter(|&e| {
                    let Edge { from, to, .. } = self.graph.edges[e];
                    all.of[from] == NO_COMPONENT || all.of[from] != all.of[to]
                })
                .collect();
            let mask = WW | WR | RW | RT;
            let found =
                self.shortest_cycle(&mut bfs, &with_realtime, c, &candidates, mask, &mut steps);
            if let Some(cycle) = found.cycle {
                let count = |kind| {
                    cycle
                        .iter()
                        .filter(|&&e| self.graph.edges[e].kind == kind)
                        .count()
                };
                let kind = match (count(DepKind::Rw), count(DepKind::Wr)) {
                    (0, 0) => AnomalyKind::G0Realtime,
                    (0, _) => AnomalyKind::G1cRealtime,
                    (1, _) => AnomalyKind::GSingleRealtime,
                    _ => AnomalyKind::G2ItemRealtime,
                };
                self.report_cycle(kind, &cycle);
            }
        }
    }

    /// For each candidate edge a → b of component `c`, a shortest path b ⇝ a over `mask`;
    /// keeps the shortest cycle. The first search always runs; later ones only while the
    /// step budget lasts.
    fn shortest_cycle(
        &self,
        bfs: &mut Bfs,
        components: &Components,
        c: usize,
        candidates: &[usize],
        mask: u8,
        steps: &mut u64,
    ) -> Found {
        let mut best: Option<Vec<usize>> = None;
        let mut compared = 0;
        for (i, &e) in candidates.iter().enumerate() {
            if i > 0 && *steps >= self.options.search_steps_max {
                return Found {
                    cut_short: best.is_none(),
                    cycle: best,
                };
            }
            let edge = self.graph.edges[e];
            let Some(path) = bfs.path(&self.graph, components, c, mask, edge.to, edge.from, steps)
            else {
                continue;
            };
            if best.as_ref().is_none_or(|b| path.len() + 1 < b.len()) {
                let mut cycle = Vec::with_capacity(path.len() + 1);
                cycle.push(e);
                cycle.extend(path);
                best = Some(cycle);
            }
            compared += 1;
            if compared >= CYCLES_COMPARED_MAX || best.as_ref().is_some_and(|b| b.len() == 2) {
                break;
            }
        }
        Found {
            cycle: best,
            cut_short: false,
        }
    }

    fn report_cycle(&mut self, kind: AnomalyKind, cycle: &[usize]) {
        let steps: Vec<Step> = cycle
            .iter()
            .map(|&e| self.step(&self.graph.edges[e]))
            .collect();
        let mut members: Vec<usize> = Vec::new();
        for &e in cycle {
            let from = self.graph.edges[e].from;
            if !members.contains(&from) {
                members.push(from);
            }
        }
        let mut path: Vec<String> = members.iter().map(|&t| self.name(t)).collect();
        path.push(self.name(members[0]));
        let rw = steps.iter().filter(|s| s.kind == DepKind::Rw).count();
        let shape = match kind {
            AnomalyKind::G0 => "write cycle: each transaction appended right after the previous one on some key".to_owned(),
            AnomalyKind::G1c => "circular information flow: a cycle of write-write and write-read dependencies".to_owned(),
            AnomalyKind::GSingle => "read skew: a cycle with exactly one anti-dependency (rw)".to_owned(),
            AnomalyKind::G2Item => format!("a cycle with {rw} anti-dependencies (rw), as in write skew"),
            _ => format!(
                "a cycle ({rw} rw edges) that exists only with real-time order: a transaction took effect before one that had completed before it was invoked"
            ),
        };
        let explanation = format!("{shape}; {}", path.join(" -> "));
        let txns = members.iter().map(|&t| self.show(t)).collect();
        self.report.add(kind, || Anomaly {
            kind,
            explanation,
            cycle: steps,
            txns,
        });
    }

    fn step(&self, edge: &Edge) -> Step {
        let (from, to) = (self.name(edge.from), self.name(edge.to));
        let key = edge.key.map(|k| self.keys[k].to_owned());
        let k = key.as_deref().unwrap_or_default();
        let why = match edge.why {
            Why::Ww { prev, next } => {
                format!("{from} appended {prev} to {k:?} and {to} appended {next} right after it")
            }
            Why::Wr { value } => format!("{to} read {k:?} ending in {value}, which {from} appended"),
            Why::Rw {
                seen_last: Some(last),
                next,
            } => format!("{from} read {k:?} ending in {last}, and {to} appended the next element, {next}"),
            Why::Rw {
                seen_last: None,
                next,
            } => format!("{from} read {k:?} empty, and {to} appended its first element, {next}"),
            Why::Realtime { completed, invoked } => format!(
                "{from} completed (history index {completed}) before {to} was invoked (history index {invoked})"
            ),
        };
        Step {
            from: self.txns[edge.from].id,
            to: self.txns[edge.to].id,
            kind: edge.kind,
            key,
            why,
        }
    }
}
