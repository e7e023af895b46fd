//! The in-memory state of an index: the graph, node bookkeeping, namespaces and metadata
//! posting lists. Everything here can be rebuilt from the store; a snapshot of it is
//! persisted so that reopening does not rebuild the graph.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::bits::Bits;
use crate::distance::{self, Kind};
use crate::hnsw::{Graph, ScratchPool, splitmix};
use crate::metadata::{MetaIndex, indexed_value};
use crate::store::Record;

/// One node of the graph: a vector version.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub id: Arc<str>,
    /// Namespace code; 0 means none.
    pub ns: u32,
    /// The mutation that wrote this version.
    pub seq: u64,
}

/// The in-memory state.
pub(crate) struct State {
    pub dim: usize,
    pub graph: Graph,
    pub kind: Kind,
    pub normalize: bool,
    pub max_indexed_str: usize,
    pub nodes: Vec<Node>,
    pub deleted: Bits,
    pub deleted_count: usize,
    pub by_id: HashMap<Arc<str>, u32>,
    /// Namespace names by code; code 0 (no namespace) has the empty name.
    pub ns_names: Vec<String>,
    pub ns_codes: HashMap<String, u32>,
    /// Nodes per namespace code, ascending, deleted ones included.
    pub ns_nodes: Vec<Vec<u32>>,
    /// Live vectors per namespace code.
    pub ns_live: Vec<usize>,
    pub meta: Vec<MetaIndex>,
    pub seq: u64,
    pub processed_ms: u64,
}

/// A stable seed for a vector's level draw.
fn seed(id: &str, seq: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    splitmix(h ^ seq)
}

impl State {
    /// An empty state.
    pub fn new(dim: usize, kind: Kind, normalize: bool, m: usize, max_indexed_str: usize) -> Self {
        Self {
            dim,
            graph: Graph::new(dim, kind, m, kind == Kind::NegDot && !normalize),
            kind,
            normalize,
            max_indexed_str,
            nodes: Vec::new(),
            deleted: Bits::default(),
            deleted_count: 0,
            by_id: HashMap::new(),
            ns_names: vec![String::new()],
            ns_codes: HashMap::new(),
            ns_nodes: vec![Vec::new()],
            ns_live: vec![0],
            meta: Vec::new(),
            seq: 0,
            processed_ms: 0,
        }
    }

    /// Vectors not deleted.
    pub fn live(&self) -> usize {
        self.nodes.len() - self.deleted_count
    }

    /// Namespaces holding at least one vector.
    pub fn live_namespaces(&self) -> usize {
        self.ns_live.iter().skip(1).filter(|&&n| n > 0).count()
    }

    fn ns_code(&mut self, ns: Option<&str>) -> u32 {
        let Some(ns) = ns else { return 0 };
        if let Some(&c) = self.ns_codes.get(ns) {
            return c;
        }
        let c = self.ns_names.len() as u32;
        self.ns_names.push(ns.to_owned());
        self.ns_codes.insert(ns.to_owned(), c);
        self.ns_nodes.push(Vec::new());
        self.ns_live.push(0);
        c
    }

    fn tombstone(&mut self, node: u32) {
        if self.deleted.get(node) {
            return;
        }
        self.deleted.set(node);
        self.deleted_count += 1;
        let n = &self.nodes[node as usize];
        self.ns_live[n.ns as usize] -= 1;
        if self.by_id.get(&n.id) == Some(&node) {
            self.by_id.remove(&n.id);
        }
    }

    /// Removes the live version of `id`, if any.
    pub fn remove(&mut self, id: &str) {
        if let Some(&node) = self.by_id.get(id) {
            self.tombstone(node);
        }
    }

    /// Adds a version of `id` (replacing the live one); returns the new node, still to link.
    pub fn put(&mut self, id: &str, rec: &Record) -> u32 {
        let node = self.stage(id, rec);
        self.publish(node, rec);
        node
    }

    /// Adds a version of `id` that no query returns yet (it counts as deleted), so that it
    /// can be linked into the graph while its write is being committed. [`State::publish`]
    /// makes it visible.
    pub fn stage(&mut self, id: &str, rec: &Record) -> u32 {
        let mut v = rec.values.clone();
        if self.normalize {
            distance::normalize(&mut v);
        }
        let level = self.graph.draw_level(seed(id, rec.seq));
        let node = self.graph.reserve(&v, level);
        let ns = self.ns_code(rec.namespace.as_deref());
        self.nodes.push(Node {
            id: Arc::from(id),
            ns,
            seq: rec.seq,
        });
        self.deleted.grow(self.nodes.len());
        self.deleted.set(node);
        self.deleted_count += 1;
        node
    }

    /// Makes a staged node the live version of its id (the previous one is tombstoned).
    pub fn publish(&mut self, node: u32, rec: &Record) {
        let id = Arc::clone(&self.nodes[node as usize].id);
        self.remove(&id);
        let ns = self.nodes[node as usize].ns;
        self.deleted.clear(node);
        self.deleted_count -= 1;
        self.by_id.insert(id, node);
        self.ns_nodes[ns as usize].push(node);
        self.ns_live[ns as usize] += 1;
        if let Some(meta) = &rec.metadata {
            for ix in &mut self.meta {
                if ix.covers(rec.seq)
                    && let Some(k) = indexed_value(meta, &ix.property, ix.ty, self.max_indexed_str)
                {
                    ix.postings.entry(k).or_default().push(node);
                }
            }
        }
    }

    /// A copy without deleted nodes (renumbered) and without graph links.
    pub fn compacted(&self, m: usize) -> (State, Vec<u32>) {
        let mut out = State::new(self.dim, self.kind, self.normalize, m, self.max_indexed_str);
        out.ns_names = self.ns_names.clone();
        out.ns_codes = self.ns_codes.clone();
        out.ns_nodes = vec![Vec::new(); self.ns_names.len()];
        out.ns_live = vec![0; self.ns_names.len()];
        let mut map = vec![u32::MAX; self.nodes.len()];
        let mut fresh = Vec::with_capacity(self.live());
        for (old, n) in self.nodes.iter().enumerate() {
            if self.deleted.get(old as u32) {
                continue;
            }
            let node = out
                .graph
                .reserve(self.graph.vector(old as u32), self.graph.levels()[old]);
            map[old] = node;
            fresh.push(node);
            out.nodes.push(n.clone());
            out.by_id.insert(Arc::clone(&n.id), node);
            out.ns_nodes[n.ns as usize].push(node);
            out.ns_live[n.ns as usize] += 1;
        }
        out.deleted = Bits::new(out.nodes.len());
        out.meta = self
            .meta
            .iter()
            .map(|ix| {
                let mut c = MetaIndex::new(ix.property.clone(), ix.ty, ix.created_seq);
                for (k, list) in &ix.postings {
                    let l: Vec<u32> = list
                        .iter()
                        .map(|&o| map[o as usize])
                        .filter(|&x| x != u32::MAX)
                        .collect();
                    if !l.is_empty() {
                        c.postings.insert(k.clone(), l);
                    }
                }
                c
            })
            .collect();
        out.seq = self.seq;
        out.processed_ms = self.processed_ms;
        (out, fresh)
    }
}

/// Links `nodes` into `graph` on up to `threads` threads.
pub(crate) fn link_all(
    graph: &Graph,
    nodes: &[u32],
    ef: usize,
    threads: usize,
    pool: &ScratchPool,
) {
    if nodes.len() < 64 || threads <= 1 {
        let mut s = pool.take();
        for &n in nodes {
            graph.link(n, ef, &mut s);
        }
        pool.give(s);
        return;
    }
    let next = AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for _ in 0..threads {
            sc.spawn(|| {
                let mut s = pool.take();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&n) = nodes.get(i) else { break };
                    graph.link(n, ef, &mut s);
                }
                pool.give(s);
            });
        }
    });
}
