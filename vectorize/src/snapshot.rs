//! The graph snapshot: the in-memory state written to one file, so that reopening an index
//! reads it back instead of rebuilding the graph.
//!
//! The snapshot is a cache of the store, never the source of truth. It records the mutation
//! it reflects; on open, mutations after it are replayed from the store's log. It is written
//! to a temporary file, fsynced and renamed into place, so a crash leaves the old snapshot or
//! the new one. A checksum over the whole file guards against anything else: a snapshot that
//! does not check out is ignored and the graph is rebuilt from the store.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bindery_core::vectorize::MetadataType;

use crate::bits::Bits;
use crate::distance::Kind;
use crate::hnsw::{Graph, GraphParts};
use crate::metadata::{Key, MetaIndex};
use crate::state::{Node, State};

const MAGIC: &[u8; 8] = b"BVZSNAP1";

fn checksum(bytes: &[u8]) -> u64 {
    let (words, rest) = bytes.as_chunks::<8>();
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15 ^ bytes.len() as u64;
    for w in words {
        h = (h ^ u64::from_le_bytes(*w))
            .wrapping_mul(0xFF51_AFD7_ED55_8CCD)
            .rotate_left(29);
    }
    for &b in rest {
        h = (h ^ u64::from(b)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    }
    h
}

struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
    }
}

/// Encodes `st` as snapshot bytes.
pub(crate) fn encode(st: &State) -> Vec<u8> {
    let g = &st.graph;
    let n = st.nodes.len();
    let mut o = Out(Vec::with_capacity(64 + n * (st.dim * 4 + 200)));
    o.0.extend_from_slice(MAGIC);
    o.u64(st.seq);
    o.u64(st.processed_ms);
    o.u32(st.dim as u32);
    o.u32(g.m() as u32);
    o.u64(n as u64);
    for node in &st.nodes {
        o.str(&node.id);
        o.u32(node.ns);
        o.u64(node.seq);
    }
    let deleted: Vec<u32> = st.deleted.iter().collect();
    o.u64(deleted.len() as u64);
    for d in deleted {
        o.u32(d);
    }
    o.u32(st.ns_names.len() as u32);
    for name in &st.ns_names {
        o.str(name);
    }
    o.u32(st.meta.len() as u32);
    for ix in &st.meta {
        o.str(&ix.property);
        o.u8(match ix.ty {
            MetadataType::String => 0,
            MetadataType::Number => 1,
            MetadataType::Boolean => 2,
        });
        o.u64(ix.created_seq);
        o.u32(ix.postings.len() as u32);
        for (k, list) in &ix.postings {
            match k {
                Key::Bool(b) => {
                    o.u8(0);
                    o.u8(u8::from(*b));
                }
                Key::Num(x) => {
                    o.u8(1);
                    o.u64(x.0.to_bits());
                }
                Key::Str(s) => {
                    o.u8(2);
                    o.str(s);
                }
            }
            o.u32(list.len() as u32);
            for &x in list {
                o.u32(x);
            }
        }
    }
    o.0.extend_from_slice(g.levels());
    for &a in g.upper_at() {
        o.u32(a);
    }
    o.u64(g.upper().len() as u64);
    for a in g.upper() {
        o.u32(a.load(Ordering::Relaxed));
    }
    for a in g.layer0() {
        o.u32(a.load(Ordering::Relaxed));
    }
    o.u64(g.entry_raw());
    for v in g.vectors() {
        o.0.extend_from_slice(&v.to_le_bytes());
    }
    let sum = checksum(&o.0);
    o.u64(sum);
    o.0
}

/// Writes `bytes` to `path` atomically and durably.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

struct In<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> In<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.p..self.p.checked_add(n)?)?;
        self.p += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
    fn u32s(&mut self, n: usize) -> Option<Vec<u32>> {
        let raw = self.take(n.checked_mul(4)?)?;
        Some(
            raw.as_chunks::<4>()
                .0
                .iter()
                .map(|c| u32::from_le_bytes(*c))
                .collect(),
        )
    }
}

/// Reads a snapshot; `None` when absent, damaged or made for another configuration.
pub(crate) fn load(
    path: &Path,
    dim: usize,
    kind: Kind,
    normalize: bool,
    m: usize,
    max_indexed_str: usize,
) -> Option<State> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() < MAGIC.len() + 8 || &bytes[..8] != MAGIC {
        return None;
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    if checksum(body) != u64::from_le_bytes(sum.try_into().ok()?) {
        return None;
    }
    let mut r = In { b: body, p: 8 };
    let mut st = State::new(dim, kind, normalize, m, max_indexed_str);
    st.seq = r.u64()?;
    st.processed_ms = r.u64()?;
    if r.u32()? as usize != dim || r.u32()? as usize != st.graph.m() {
        return None;
    }
    let n = r.u64()? as usize;
    st.nodes.reserve(n);
    for _ in 0..n {
        let id: Arc<str> = Arc::from(r.str()?);
        let ns = r.u32()?;
        let seq = r.u64()?;
        st.nodes.push(Node { id, ns, seq });
    }
    st.deleted = Bits::new(n);
    let dels = r.u64()? as usize;
    for d in r.u32s(dels)? {
        if d as usize >= n {
            return None;
        }
        st.deleted.set(d);
    }
    st.deleted_count = st.deleted.count();
    let ns_count = r.u32()? as usize;
    st.ns_names = (0..ns_count)
        .map(|_| r.str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()?;
    if st.ns_names.is_empty() {
        return None;
    }
    st.ns_codes = st
        .ns_names
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, s)| (s.clone(), i as u32))
        .collect();
    st.ns_nodes = vec![Vec::new(); ns_count];
    st.ns_live = vec![0; ns_count];
    let mut by_id = HashMap::with_capacity(n);
    for (i, node) in st.nodes.iter().enumerate() {
        let ns = node.ns as usize;
        if ns >= ns_count {
            return None;
        }
        st.ns_nodes[ns].push(i as u32);
        if !st.deleted.get(i as u32) {
            st.ns_live[ns] += 1;
            by_id.insert(Arc::clone(&node.id), i as u32);
        }
    }
    st.by_id = by_id;
    let metas = r.u32()? as usize;
    for _ in 0..metas {
        let property = r.str()?.to_owned();
        let ty = match r.u8()? {
            0 => MetadataType::String,
            1 => MetadataType::Number,
            2 => MetadataType::Boolean,
            _ => return None,
        };
        let mut ix = MetaIndex::new(property, ty, r.u64()?);
        for _ in 0..r.u32()? {
            let key = match r.u8()? {
                0 => Key::Bool(r.u8()? == 1),
                1 => Key::num(f64::from_bits(r.u64()?)),
                2 => Key::Str(r.str()?.to_owned()),
                _ => return None,
            };
            let len = r.u32()? as usize;
            let list = r.u32s(len)?;
            if list.iter().any(|&x| x as usize >= n) {
                return None;
            }
            ix.postings.insert(key, list);
        }
        st.meta.push(ix);
    }
    let levels = r.take(n)?.to_vec();
    let upper_at = r.u32s(n)?;
    let upper_len = r.u64()? as usize;
    let upper = r.u32s(upper_len)?;
    let layer0 = r.u32s(n * (2 * st.graph.m() + 1))?;
    let entry = r.u64()?;
    let raw = r.take(n.checked_mul(dim)?.checked_mul(4)?)?;
    let vectors: Vec<f32> = raw
        .as_chunks::<4>()
        .0
        .iter()
        .map(|c| f32::from_le_bytes(*c))
        .collect();
    if r.p != body.len() {
        return None;
    }
    st.graph = Graph::from_parts(
        kind,
        kind == Kind::NegDot && !normalize,
        GraphParts {
            dim,
            m: st.graph.m(),
            vectors,
            levels,
            layer0,
            upper_at,
            upper,
            entry,
        },
    )?;
    Some(st)
}
