//! The dependency graph between committed transactions: labelled edges, strongly
//! connected components (Tarjan, iterative) and shortest paths inside one component (BFS).
//!
//! Nodes are transaction positions. An edge kind is one bit, so a search takes a mask of
//! the kinds it may follow. Edges are deduplicated by (from, to, kind): two ww edges from
//! T1 to T2 on different keys prove the same thing, and the first explains it.

use std::collections::{HashSet, VecDeque};

use super::DepKind;

impl DepKind {
    pub(super) fn bit(self) -> u8 {
        match self {
            DepKind::Ww => 1,
            DepKind::Wr => 2,
            DepKind::Rw => 4,
            DepKind::Realtime => 8,
        }
    }
}

pub(super) const WW: u8 = 1;
pub(super) const WR: u8 = 2;
pub(super) const RW: u8 = 4;
pub(super) const RT: u8 = 8;

/// What an edge stands for, for the evidence.
#[derive(Clone, Copy, Debug)]
pub(super) enum Why {
    /// `prev` (by `from`) is followed by `next` (by `to`) in the key's version order.
    Ww { prev: i64, next: i64 },
    /// `to` read the key ending in `value`, which `from` appended.
    Wr { value: i64 },
    /// `from` read the key ending in `seen_last` (`None`: empty), `to` appended `next`,
    /// the element after it.
    Rw { seen_last: Option<i64>, next: i64 },
    /// `from` completed at history index `completed`, `to` was invoked at `invoked`.
    Realtime { completed: usize, invoked: usize },
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Edge {
    pub from: usize,
    pub to: usize,
    pub kind: DepKind,
    /// Key id; `None` for a real-time edge.
    pub key: Option<usize>,
    pub why: Why,
}

/// No component: the node is in no cycle of the searched kinds.
pub(super) const NO_COMPONENT: usize = usize::MAX;

/// The non-trivial strongly connected components of the graph restricted to some kinds.
pub(super) struct Components {
    /// Per node: index into `sccs`, or [`NO_COMPONENT`] for a node alone.
    pub of: Vec<usize>,
    /// Components of two or more nodes (no edge joins a node to itself).
    pub sccs: Vec<Vec<usize>>,
}

#[derive(Default)]
pub(super) struct Graph {
    pub edges: Vec<Edge>,
    /// Per node: ids of its outgoing edges.
    out: Vec<Vec<usize>>,
    seen: HashSet<(usize, usize, DepKind)>,
}

impl Graph {
    pub fn new(nodes: usize) -> Self {
        Graph {
            edges: Vec::new(),
            out: vec![Vec::new(); nodes],
            seen: HashSet::new(),
        }
    }

    pub fn add(&mut self, edge: Edge) {
        assert_ne!(edge.from, edge.to, "a transaction never depends on itself");
        if self.seen.insert((edge.from, edge.to, edge.kind)) {
            self.out[edge.from].push(self.edges.len());
            self.edges.push(edge);
        }
    }

    fn nodes(&self) -> usize {
        self.out.len()
    }

    /// Tarjan's algorithm with an explicit call stack (10k-node chains would overflow
    /// the thread's stack if recursive).
    pub fn components(&self, mask: u8) -> Components {
        const UNVISITED: usize = usize::MAX;
        let n = self.nodes();
        let mut index = vec![UNVISITED; n];
        let mut low = vec![0; n];
        let mut on_stack = vec![false; n];
        let mut stack: Vec<usize> = Vec::new();
        // (node, position in its edge list)
        let mut calls: Vec<(usize, usize)> = Vec::new();
        let mut counter = 0;
        let mut of = vec![NO_COMPONENT; n];
        let mut sccs = Vec::new();
        for root in 0..n {
            if index[root] != UNVISITED || self.out[root].is_empty() {
                continue;
            }
            index[root] = counter;
            low[root] = counter;
            counter += 1;
            stack.push(root);
            on_stack[root] = true;
            calls.push((root, 0));
            while let Some(&(v, pos)) = calls.last() {
                if pos < self.out[v].len() {
                    calls.last_mut().expect("non-empty").1 += 1;
                    let edge = &self.edges[self.out[v][pos]];
                    if edge.kind.bit() & mask == 0 {
                        continue;
                    }
                    let w = edge.to;
                    if index[w] == UNVISITED {
                        index[w] = counter;
                        low[w] = counter;
                        counter += 1;
                        stack.push(w);
                        on_stack[w] = true;
                        calls.push((w, 0));
                    } else if on_stack[w] {
                        low[v] = low[v].min(index[w]);
                    }
                    continue;
                }
                calls.pop();
                if let Some(&(parent, _)) = calls.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut component = Vec::new();
                    loop {
                        let w = stack.pop().expect("v is on the stack");
                        on_stack[w] = false;
                        component.push(w);
                        if w == v {
                            break;
                        }
                    }
                    if component.len() > 1 {
                        for &w in &component {
                            of[w] = sccs.len();
                        }
                        component.sort_unstable();
                        sccs.push(component);
                    }
                }
            }
        }
        Components { of, sccs }
    }

    /// Edges of kinds in `mask` with both ends in component `c`.
    pub fn edges_within<'a>(
        &'a self,
        components: &'a Components,
        c: usize,
        mask: u8,
    ) -> impl Iterator<Item = usize> + 'a {
        components.sccs[c].iter().flat_map(move |&v| {
            self.out[v].iter().copied().filter(move |&e| {
                let edge = &self.edges[e];
                edge.kind.bit() & mask != 0 && components.of[edge.to] == c
            })
        })
    }
}

/// Breadth-first search state, reused across searches so that a search costs what it
/// visits, not the size of the graph.
pub(super) struct Bfs {
    /// Per node: the search that last reached it.
    reached_in: Vec<u32>,
    /// Per node: the edge it was reached by (valid when `reached_in` is the current search).
    parent: Vec<usize>,
    search: u32,
    queue: VecDeque<usize>,
}

impl Bfs {
    pub fn new(nodes: usize) -> Self {
        Bfs {
            reached_in: vec![0; nodes],
            parent: vec![0; nodes],
            search: 0,
            queue: VecDeque::new(),
        }
    }

    /// A shortest path `from` ⇝ `to` over edges of kinds in `mask` that stay in component
    /// `c`, as edge ids in order. Adds the edges it examines to `steps`.
    #[allow(clippy::too_many_arguments)]
    pub fn path(
        &mut self,
        graph: &Graph,
        components: &Components,
        c: usize,
        mask: u8,
        from: usize,
        to: usize,
        steps: &mut u64,
    ) -> Option<Vec<usize>> {
        self.search += 1;
        let search = self.search;
        self.queue.clear();
        self.reached_in[from] = search;
        self.queue.push_back(from);
        while let Some(v) = self.queue.pop_front() {
            if v == to {
                let mut path = Vec::new();
                let mut at = to;
                while at != from {
                    let e = self.parent[at];
                    path.push(e);
                    at = graph.edges[e].from;
                }
                path.reverse();
                return Some(path);
            }
            for &e in &graph.out[v] {
                *steps += 1;
                let edge = &graph.edges[e];
                let w = edge.to;
                if edge.kind.bit() & mask == 0
                    || components.of[w] != c
                    || self.reached_in[w] == search
                {
                    continue;
                }
                self.reached_in[w] = search;
                self.parent[w] = e;
                self.queue.push_back(w);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(from: usize, to: usize, kind: DepKind) -> Edge {
        Edge {
            from,
            to,
            kind,
            key: Some(0),
            why: Why::Wr { value: 0 },
        }
    }

    #[test]
    fn components_respect_the_mask_and_skip_singletons() {
        let mut g = Graph::new(5);
        g.add(edge(0, 1, DepKind::Ww));
        g.add(edge(1, 2, DepKind::Ww));
        g.add(edge(2, 0, DepKind::Rw));
        g.add(edge(3, 4, DepKind::Ww));
        g.add(edge(3, 4, DepKind::Ww)); // deduplicated
        assert_eq!(g.edges.len(), 4);
        assert!(g.components(WW).sccs.is_empty());
        let all = g.components(WW | RW);
        assert_eq!(all.sccs, vec![vec![0, 1, 2]]);
        assert_eq!(all.of[3], NO_COMPONENT);
        let mut bfs = Bfs::new(5);
        let mut steps = 0;
        let path = bfs.path(&g, &all, 0, WW | RW, 1, 0, &mut steps).unwrap();
        let hops: Vec<(usize, usize)> = path
            .iter()
            .map(|&e| (g.edges[e].from, g.edges[e].to))
            .collect();
        assert_eq!(hops, vec![(1, 2), (2, 0)]);
        assert!(bfs.path(&g, &all, 0, WW, 1, 0, &mut steps).is_none());
        assert!(steps > 0);
    }

    #[test]
    fn a_long_chain_closing_into_a_cycle_does_not_overflow_the_stack() {
        let n = 200_000;
        let mut g = Graph::new(n);
        for i in 0..n {
            g.add(edge(i, (i + 1) % n, DepKind::Ww));
        }
        let c = g.components(WW);
        assert_eq!(c.sccs.len(), 1);
        assert_eq!(c.sccs[0].len(), n);
    }
}
