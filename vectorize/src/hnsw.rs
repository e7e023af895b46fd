//! A compact HNSW graph (hierarchical navigable small world, Malkov and Yashunin).
//!
//! Layout, chosen for speed and for safe concurrent linking:
//! - vectors in one flat `Vec<f32>` (`node * dim ..`), so a distance reads one contiguous run;
//! - layer 0 neighbour lists in one flat array of `AtomicU32`, `m0 + 1` slots per node
//!   (a count, then ids); upper layers likewise, `m + 1` slots per node and level, reached
//!   through a per-node offset;
//! - writers of a neighbour list hold a striped mutex; readers copy the list with plain
//!   (relaxed) atomic loads and never lock, so queries and inserts run side by side;
//! - a pool of visited lists with generation tags, so a search does not clear `n` flags.
//!
//! Nodes are appended in two steps: [`Graph::reserve`] (needs `&mut`: copies the vector and
//! allocates its lists) and [`Graph::link`] (needs `&`: searches and connects it), which
//! several threads may run at once for different nodes.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::distance::{self, Kind};

const NO_UPPER: u32 = u32::MAX;
const NO_ENTRY: u64 = u64::MAX;
const STRIPES: usize = 1 << 14;
const MAX_LEVEL: u8 = 16;
/// How many neighbours ahead of the one being measured are fetched into cache.
const PREFETCH_AHEAD: usize = 2;

/// HNSW parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    /// Neighbours per node on upper layers; layer 0 keeps twice as many. Default: 16.
    pub m: usize,
    /// Candidate list size while linking a node. Default: 200.
    pub ef_construction: usize,
    /// Candidate list size while searching (at least `top_k` is used). Default: 64.
    pub ef_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        Self {
            m: 16,
            ef_construction: 200,
            ef_search: 64,
        }
    }
}

/// A distance with a total order, for heaps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cand {
    pub dist: f32,
    pub node: u32,
}

impl Eq for Cand {}

impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Cand {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.dist
            .total_cmp(&other.dist)
            .then(self.node.cmp(&other.node))
    }
}

/// Reusable per-search memory: visited tags and heaps.
#[derive(Default)]
pub(crate) struct Scratch {
    tags: Vec<u16>,
    generation: u16,
    candidates: BinaryHeap<std::cmp::Reverse<Cand>>,
    top: BinaryHeap<Cand>,
    links: Vec<u32>,
    links2: Vec<u32>,
}

impl Scratch {
    /// Starts a new search over `n` nodes.
    fn begin(&mut self, n: usize) {
        if self.tags.len() < n {
            self.tags.resize(n, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.tags.fill(0);
            self.generation = 1;
        }
        self.candidates.clear();
        self.top.clear();
    }

    /// Marks `node` visited; returns whether it already was.
    #[inline]
    fn visit(&mut self, node: u32) -> bool {
        let t = &mut self.tags[node as usize];
        if *t == self.generation {
            true
        } else {
            *t = self.generation;
            false
        }
    }
}

/// A pool of [`Scratch`] values shared by searching threads.
#[derive(Default)]
pub(crate) struct ScratchPool(Mutex<Vec<Scratch>>);

impl ScratchPool {
    pub fn take(&self) -> Scratch {
        self.0.lock().pop().unwrap_or_default()
    }

    pub fn give(&self, s: Scratch) {
        let mut pool = self.0.lock();
        if pool.len() < 64 {
            pool.push(s);
        }
    }
}

/// How a filtered search walks the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Walk {
    /// Visit every neighbour; only admitted nodes enter the results.
    Plain,
    /// Compute distances only for admitted nodes; a neighbour that is not admitted is looked
    /// through to its own neighbours (two hops), at most `m0` admitted nodes per expansion.
    TwoHop,
}

/// The graph.
pub(crate) struct Graph {
    dim: usize,
    kind: Kind,
    /// Link by angle (cosine of the raw vectors) instead of by the search distance. Used for
    /// dot-product, which is not a metric: linked by dot product, large vectors crowd small
    /// ones out of every neighbour list and the small ones become unreachable.
    angular: bool,
    /// `1 / |v|` per node (0 for a zero vector), kept when `angular`.
    inv_norms: Vec<f32>,
    m: usize,
    m0: usize,
    ml: f64,
    vectors: Vec<f32>,
    levels: Vec<u8>,
    layer0: Vec<AtomicU32>,
    upper_at: Vec<u32>,
    upper: Vec<AtomicU32>,
    locks: Box<[Mutex<()>]>,
    entry: AtomicU64,
}

/// The raw parts of a graph, for persistence.
pub(crate) struct GraphParts {
    pub dim: usize,
    pub m: usize,
    pub vectors: Vec<f32>,
    pub levels: Vec<u8>,
    pub layer0: Vec<u32>,
    pub upper_at: Vec<u32>,
    pub upper: Vec<u32>,
    pub entry: u64,
}

fn pack(node: u32, level: u8) -> u64 {
    (u64::from(level) << 32) | u64::from(node)
}

fn unpack(e: u64) -> Option<(u32, u8)> {
    (e != NO_ENTRY).then_some((e as u32, (e >> 32) as u8))
}

impl Graph {
    /// An empty graph.
    pub fn new(dim: usize, kind: Kind, m: usize, angular: bool) -> Self {
        let m = m.clamp(2, 100);
        Self {
            dim,
            kind,
            angular,
            inv_norms: Vec::new(),
            m,
            m0: 2 * m,
            ml: 1.0 / (m as f64).ln(),
            vectors: Vec::new(),
            levels: Vec::new(),
            layer0: Vec::new(),
            upper_at: Vec::new(),
            upper: Vec::new(),
            locks: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            entry: AtomicU64::new(NO_ENTRY),
        }
    }

    /// Rebuilds a graph from persisted parts; `None` if they are inconsistent.
    pub fn from_parts(kind: Kind, angular: bool, p: GraphParts) -> Option<Self> {
        let mut g = Graph::new(p.dim, kind, p.m, angular);
        let n = p.levels.len();
        if g.m != p.m
            || p.vectors.len() != n * p.dim
            || p.layer0.len() != n * (g.m0 + 1)
            || p.upper_at.len() != n
            || !p.upper.len().is_multiple_of(g.m + 1)
        {
            return None;
        }
        let max_id = n as u32;
        let valid = |slots: &[u32], stride: usize, cap: usize| {
            slots
                .chunks(stride)
                .all(|c| (c[0] as usize) <= cap && c[1..=c[0] as usize].iter().all(|&x| x < max_id))
        };
        if !valid(&p.layer0, g.m0 + 1, g.m0) || !valid(&p.upper, g.m + 1, g.m) {
            return None;
        }
        for (node, &at) in p.upper_at.iter().enumerate() {
            let lv = usize::from(p.levels[node]);
            if lv > 0 && (at == NO_UPPER || at as usize + lv * (g.m + 1) > p.upper.len()) {
                return None;
            }
        }
        if let Some((e, _)) = unpack(p.entry)
            && e >= max_id
        {
            return None;
        }
        g.vectors = p.vectors;
        if angular {
            g.inv_norms = g.vectors.chunks(g.dim.max(1)).map(inv_norm).collect();
        }
        g.levels = p.levels;
        g.layer0 = p.layer0.into_iter().map(AtomicU32::new).collect();
        g.upper_at = p.upper_at;
        g.upper = p.upper.into_iter().map(AtomicU32::new).collect();
        g.entry = AtomicU64::new(p.entry);
        Some(g)
    }

    /// The raw parts, copied.
    #[cfg(test)]
    pub fn to_parts(&self) -> GraphParts {
        GraphParts {
            dim: self.dim,
            m: self.m,
            vectors: self.vectors.clone(),
            levels: self.levels.clone(),
            layer0: self
                .layer0
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .collect(),
            upper_at: self.upper_at.clone(),
            upper: self
                .upper
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .collect(),
            entry: self.entry.load(Ordering::Acquire),
        }
    }

    /// Borrowed views for writing a snapshot without copying the vectors.
    pub fn vectors(&self) -> &[f32] {
        &self.vectors
    }

    /// Per-node levels.
    pub fn levels(&self) -> &[u8] {
        &self.levels
    }

    /// Layer-0 slots.
    pub fn layer0(&self) -> &[AtomicU32] {
        &self.layer0
    }

    /// Upper-layer offsets per node.
    pub fn upper_at(&self) -> &[u32] {
        &self.upper_at
    }

    /// Upper-layer slots.
    pub fn upper(&self) -> &[AtomicU32] {
        &self.upper
    }

    /// The packed entry point.
    pub fn entry_raw(&self) -> u64 {
        self.entry.load(Ordering::Acquire)
    }

    /// The `m` parameter.
    pub fn m(&self) -> usize {
        self.m
    }

    /// Number of nodes (reserved, linked or not).
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// The stored vector of `node`.
    #[inline]
    pub fn vector(&self, node: u32) -> &[f32] {
        let s = node as usize * self.dim;
        &self.vectors[s..s + self.dim]
    }

    /// Distance from `q` to `node`.
    #[inline]
    pub fn dist(&self, q: &[f32], node: u32) -> f32 {
        self.kind.distance(q, self.vector(node))
    }

    /// Distance from a search target to `node`.
    #[inline]
    fn d(&self, t: &Target<'_>, node: u32) -> f32 {
        if t.linking && self.angular {
            -distance::dot(t.q, self.vector(node)) * t.inv_norm * self.inv_norms[node as usize]
        } else {
            self.kind.distance(t.q, self.vector(node))
        }
    }

    /// The linking distance between two nodes.
    #[inline]
    fn pair(&self, a: u32, b: u32) -> f32 {
        if self.angular {
            -distance::dot(self.vector(a), self.vector(b))
                * self.inv_norms[a as usize]
                * self.inv_norms[b as usize]
        } else {
            self.kind.distance(self.vector(a), self.vector(b))
        }
    }

    /// The level a node gets, drawn from `seed` (exponentially decaying).
    pub fn draw_level(&self, seed: u64) -> u8 {
        let u = ((splitmix(seed) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let l = (-u.ln() * self.ml).floor();
        if l >= f64::from(MAX_LEVEL) {
            MAX_LEVEL
        } else {
            l as u8
        }
    }

    /// Appends a node (unlinked) with `vector` and `level`; returns its number.
    pub fn reserve(&mut self, vector: &[f32], level: u8) -> u32 {
        let node = self.levels.len() as u32;
        self.vectors.extend_from_slice(vector);
        if self.angular {
            self.inv_norms.push(inv_norm(vector));
        }
        self.levels.push(level);
        self.layer0.extend((0..=self.m0).map(|_| AtomicU32::new(0)));
        if level > 0 {
            self.upper_at.push(self.upper.len() as u32);
            self.upper
                .extend((0..usize::from(level) * (self.m + 1)).map(|_| AtomicU32::new(0)));
        } else {
            self.upper_at.push(NO_UPPER);
        }
        node
    }

    fn slots(&self, node: u32, level: u8) -> &[AtomicU32] {
        if level == 0 {
            let s = node as usize * (self.m0 + 1);
            &self.layer0[s..s + self.m0 + 1]
        } else {
            let s = self.upper_at[node as usize] as usize + (usize::from(level) - 1) * (self.m + 1);
            &self.upper[s..s + self.m + 1]
        }
    }

    /// Copies the neighbour list of `node` at `level` into `out`.
    #[inline]
    fn neighbours(&self, node: u32, level: u8, out: &mut Vec<u32>) {
        out.clear();
        if level > self.levels[node as usize] {
            return;
        }
        let slots = self.slots(node, level);
        let cap = slots.len() - 1;
        let n = (slots[0].load(Ordering::Acquire) as usize).min(cap);
        out.extend(slots[1..=n].iter().map(|a| a.load(Ordering::Relaxed)));
    }

    fn set_neighbours(&self, slots: &[AtomicU32], ids: &[u32]) {
        for (slot, &id) in slots[1..].iter().zip(ids) {
            slot.store(id, Ordering::Relaxed);
        }
        slots[0].store(ids.len() as u32, Ordering::Release);
    }

    fn lock(&self, node: u32) -> parking_lot::MutexGuard<'_, ()> {
        self.locks[node as usize % STRIPES].lock()
    }

    /// Greedy descent from the entry point down to level `stop + 1`; returns the closest node
    /// found and its distance.
    fn descend(
        &self,
        t: &Target<'_>,
        from: (u32, u8),
        stop: u8,
        links: &mut Vec<u32>,
    ) -> (u32, f32) {
        let (mut cur, top) = from;
        let mut cur_d = self.d(t, cur);
        let mut level = top;
        while level > stop {
            loop {
                let mut changed = false;
                self.neighbours(cur, level, links);
                for &n in links.iter() {
                    let d = self.d(t, n);
                    if d < cur_d {
                        cur_d = d;
                        cur = n;
                        changed = true;
                    }
                }
                if !changed {
                    break;
                }
            }
            level -= 1;
        }
        (cur, cur_d)
    }

    /// Best-first search of one layer from `start`; leaves up to `ef` admitted nodes in
    /// `s.top`.
    // Hot-path values, passed as they are rather than bundled per call.
    #[allow(clippy::too_many_arguments)]
    fn search_layer<F: Fn(u32) -> bool>(
        &self,
        t: &Target<'_>,
        start: (u32, f32),
        ef: usize,
        level: u8,
        admit: &F,
        walk: Walk,
        s: &mut Scratch,
    ) {
        s.begin(self.len());
        s.visit(start.0);
        let first = Cand {
            dist: start.1,
            node: start.0,
        };
        s.candidates.push(std::cmp::Reverse(first));
        if admit(start.0) {
            s.top.push(first);
        }
        let mut bound = if s.top.is_empty() {
            f32::INFINITY
        } else {
            start.1
        };
        let mut links = std::mem::take(&mut s.links);
        let mut links2 = std::mem::take(&mut s.links2);
        while let Some(std::cmp::Reverse(c)) = s.candidates.pop() {
            if c.dist > bound && s.top.len() >= ef {
                break;
            }
            self.neighbours(c.node, level, &mut links);
            match walk {
                Walk::Plain => {
                    // Unvisited neighbours first, so that the next vector is always being
                    // fetched while the current one is measured.
                    let mut n_todo = 0;
                    for i in 0..links.len() {
                        if !s.visit(links[i]) {
                            links[n_todo] = links[i];
                            n_todo += 1;
                        }
                    }
                    for &n in &links[..n_todo.min(PREFETCH_AHEAD)] {
                        distance::prefetch(self.vector(n));
                    }
                    for i in 0..n_todo {
                        let n = links[i];
                        if let Some(&ahead) = links[..n_todo].get(i + PREFETCH_AHEAD) {
                            distance::prefetch(self.vector(ahead));
                        }
                        let d = self.d(t, n);
                        if s.top.len() < ef || d < bound {
                            s.candidates
                                .push(std::cmp::Reverse(Cand { dist: d, node: n }));
                            if admit(n) {
                                s.top.push(Cand { dist: d, node: n });
                                if s.top.len() > ef {
                                    s.top.pop();
                                }
                                bound = s.top.peek().map_or(f32::INFINITY, |t| t.dist);
                            }
                        }
                    }
                }
                Walk::TwoHop => {
                    let mut admitted = 0;
                    let mut passed = 0;
                    for i in 0..links.len() {
                        let n = links[i];
                        if admitted >= self.m0 {
                            break;
                        }
                        if s.visit(n) {
                            continue;
                        }
                        if admit(n) {
                            admitted += 1;
                            self.consider(t, n, ef, &mut bound, s);
                        } else {
                            // Keep rejected neighbours at the front of `links` in case the
                            // walk needs them as stepping stones (below).
                            links[passed] = links[i];
                            passed += 1;
                            self.neighbours(n, level, &mut links2);
                            for &w in links2.iter() {
                                if admitted >= self.m0 {
                                    break;
                                }
                                if admit(w) && !s.visit(w) {
                                    admitted += 1;
                                    self.consider(t, w, ef, &mut bound, s);
                                }
                            }
                        }
                    }
                    // Nothing admitted within two hops: step through rejected nodes so that
                    // the walk does not die in a region the filter empties.
                    if admitted == 0 {
                        for &n in &links[..passed] {
                            let d = self.d(t, n);
                            if s.top.len() < ef || d < bound {
                                s.candidates
                                    .push(std::cmp::Reverse(Cand { dist: d, node: n }));
                            }
                        }
                    }
                }
            }
        }
        s.links = links;
        s.links2 = links2;
    }

    #[inline]
    fn consider(&self, t: &Target<'_>, n: u32, ef: usize, bound: &mut f32, s: &mut Scratch) {
        let d = self.d(t, n);
        if s.top.len() < ef || d < *bound {
            s.candidates
                .push(std::cmp::Reverse(Cand { dist: d, node: n }));
            s.top.push(Cand { dist: d, node: n });
            if s.top.len() > ef {
                s.top.pop();
            }
            *bound = s.top.peek().map_or(f32::INFINITY, |t| t.dist);
        }
    }

    /// The `k` nearest admitted nodes to `q`, closest first.
    pub fn search<F: Fn(u32) -> bool>(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        admit: F,
        walk: Walk,
        s: &mut Scratch,
    ) -> Vec<Cand> {
        let Some(entry) = unpack(self.entry.load(Ordering::Acquire)) else {
            return Vec::new();
        };
        let t = Target {
            q,
            inv_norm: 1.0,
            linking: false,
        };
        let mut links = std::mem::take(&mut s.links);
        let start = self.descend(&t, entry, 0, &mut links);
        s.links = links;
        self.search_layer(&t, start, ef.max(k), 0, &admit, walk, s);
        let mut out: Vec<Cand> = s.top.drain().collect();
        out.sort_unstable();
        out.truncate(k);
        out
    }

    /// Connects a reserved node into the graph.
    pub fn link(&self, node: u32, ef_construction: usize, s: &mut Scratch) {
        let level = self.levels[node as usize];
        let entry = loop {
            let cur = self.entry.load(Ordering::Acquire);
            match unpack(cur) {
                Some(e) => break e,
                None => {
                    if self
                        .entry
                        .compare_exchange(
                            cur,
                            pack(node, level),
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        )
                        .is_ok()
                    {
                        return;
                    }
                }
            }
        };
        if entry.0 == node {
            return;
        }
        let q: Vec<f32> = self.vector(node).to_vec();
        let t = Target {
            q: &q,
            inv_norm: self.inv_norms.get(node as usize).copied().unwrap_or(1.0),
            linking: true,
        };
        let mut links = std::mem::take(&mut s.links);
        let (mut cur, mut cur_d) = self.descend(&t, entry, level, &mut links);
        s.links = links;
        let all = |_: u32| true;
        for lv in (0..=level.min(entry.1)).rev() {
            self.search_layer(&t, (cur, cur_d), ef_construction, lv, &all, Walk::Plain, s);
            let mut found: Vec<Cand> = s.top.drain().filter(|c| c.node != node).collect();
            found.sort_unstable();
            if let Some(best) = found.first() {
                cur = best.node;
                cur_d = best.dist;
            }
            let chosen = self.select(&found, self.m);
            {
                let _g = self.lock(node);
                self.set_neighbours(self.slots(node, lv), &chosen);
            }
            let cap = if lv == 0 { self.m0 } else { self.m };
            for &n in &chosen {
                self.add_link(n, node, lv, cap);
            }
        }
        if level > entry.1 {
            let mut cur = self.entry.load(Ordering::Acquire);
            while unpack(cur).is_some_and(|(_, l)| l < level) {
                match self.entry.compare_exchange(
                    cur,
                    pack(node, level),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break,
                    Err(now) => cur = now,
                }
            }
        }
    }

    /// The neighbour-selection heuristic: walk candidates closest first and keep one only if
    /// it is closer to the base than to every one kept so far.
    fn select(&self, sorted: &[Cand], m: usize) -> Vec<u32> {
        let mut kept: Vec<u32> = Vec::with_capacity(m);
        for c in sorted {
            if kept.len() >= m {
                break;
            }
            if kept.iter().all(|&k| self.pair(c.node, k) > c.dist) {
                kept.push(c.node);
            }
        }
        kept
    }

    fn add_link(&self, target: u32, new: u32, level: u8, cap: usize) {
        let _g = self.lock(target);
        let slots = self.slots(target, level);
        let n = (slots[0].load(Ordering::Acquire) as usize).min(cap);
        if slots[1..=n]
            .iter()
            .any(|a| a.load(Ordering::Relaxed) == new)
        {
            return;
        }
        if n < cap {
            slots[n + 1].store(new, Ordering::Relaxed);
            slots[0].store(n as u32 + 1, Ordering::Release);
            return;
        }
        let mut cands: Vec<Cand> = slots[1..=n]
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .chain(std::iter::once(new))
            .map(|x| Cand {
                dist: self.pair(target, x),
                node: x,
            })
            .collect();
        cands.sort_unstable();
        let chosen = self.select(&cands, cap);
        self.set_neighbours(slots, &chosen);
    }
}

/// What a search measures distances to.
struct Target<'a> {
    q: &'a [f32],
    /// `1 / |q|`, used when linking by angle.
    inv_norm: f32,
    /// Whether this search links a node (uses the linking distance).
    linking: bool,
}

fn inv_norm(v: &[f32]) -> f32 {
    let n = distance::dot(v, v).sqrt();
    if n > 0.0 { 1.0 / n } else { 0.0 }
}

/// A 64-bit mixer (splitmix64's finalizer), for level draws.
pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        (0..n)
            .map(|i| {
                (0..dim)
                    .map(|j| {
                        (splitmix(seed ^ ((i * dim + j) as u64)) >> 40) as f32 / (1u64 << 24) as f32
                            - 0.5
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn graph_search_finds_most_true_neighbours_of_random_points() {
        let dim = 16;
        let pts = data(2000, dim, 7);
        let mut g = Graph::new(dim, Kind::L2Sq, 12, false);
        let nodes: Vec<u32> = pts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let l = g.draw_level(i as u64);
                g.reserve(p, l)
            })
            .collect();
        let mut s = Scratch::default();
        for &n in &nodes {
            g.link(n, 100, &mut s);
        }
        let queries = data(50, dim, 99);
        let mut hits = 0;
        for q in &queries {
            let got = g.search(q, 10, 64, |_| true, Walk::Plain, &mut s);
            let mut exact: Vec<Cand> = (0..pts.len() as u32)
                .map(|n| Cand {
                    dist: g.dist(q, n),
                    node: n,
                })
                .collect();
            exact.sort_unstable();
            let truth: Vec<u32> = exact[..10].iter().map(|c| c.node).collect();
            hits += got.iter().filter(|c| truth.contains(&c.node)).count();
        }
        let recall = hits as f64 / 500.0;
        assert!(recall >= 0.95, "recall {recall}");
    }

    #[test]
    fn parts_round_trip_and_bad_parts_are_refused() {
        let mut g = Graph::new(4, Kind::NegDot, 4, true);
        let mut s = Scratch::default();
        for (i, p) in data(50, 4, 3).iter().enumerate() {
            let n = g.reserve(p, g.draw_level(i as u64));
            g.link(n, 20, &mut s);
        }
        let p = g.to_parts();
        let l0 = p.layer0.clone();
        let back = Graph::from_parts(Kind::NegDot, true, p).expect("valid parts");
        assert_eq!(back.to_parts().layer0, l0);
        let mut bad = back.to_parts();
        bad.layer0[1] = 10_000;
        bad.layer0[0] = 1;
        assert!(Graph::from_parts(Kind::NegDot, true, bad).is_none());
    }
}
