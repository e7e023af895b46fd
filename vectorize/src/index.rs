//! [`VectorizeIndex`]: validation, the write path (store first, then graph), queries with
//! the choice between the graph and an exact scan, snapshots and background rebuilds.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use async_trait::async_trait;
use bindery_core::SharedClock;
use bindery_core::vectorize::{
    IndexConfig, IndexDescription, ListVectorsOptions, Metadata, MetadataIndex, MetadataType,
    Mutation, QueryOptions, QueryResult, ReturnMetadata, Vector, VectorIdPage, VectorIndex,
    VectorMatch, VectorizeError, VectorizeLimits, VectorizeResult,
};
use parking_lot::{Mutex, RwLock, RwLockWriteGuard};
use serde_json::Value;

use crate::bits::Bits;
use crate::distance::{self, Kind};
use crate::filter::{self, Filter};
use crate::hnsw::{Cand, HnswParams, ScratchPool, Walk};
use crate::metadata::{self, MetaIndex, indexed_value, place};
use crate::snapshot;
use crate::state::{State, link_all};
use crate::store::{Batch, Record, Store, StoredMetaIndex};

/// How an index searches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Engine {
    /// An HNSW graph, with exact scans for small or selective candidate sets.
    Hnsw(HnswParams),
    /// Exact (brute-force) scans only: no graph is built. Results are exactly the best
    /// matches.
    Exact,
}

/// Settings shared by the indexes of an account (see [`crate::VectorizeBuilder`]).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub limits: VectorizeLimits,
    pub engine: Engine,
    pub exact_threshold: usize,
    pub two_hop_below: f64,
    pub rebuild_ratio: f64,
    pub rebuild_min: usize,
    pub threads: usize,
    pub persist_min: usize,
}

/// Counters describing what an index has done, for tests and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Nodes in memory, deleted ones included.
    pub nodes: usize,
    /// Deleted nodes awaiting a rebuild.
    pub tombstones: usize,
    /// Completed graph rebuilds.
    pub rebuilds: u64,
    /// Queries answered by an exact scan.
    pub exact_queries: u64,
    /// Queries answered by the graph.
    pub graph_queries: u64,
    /// Graph queries that returned too few matches and were redone exactly.
    pub exact_fallbacks: u64,
    /// Whether the last open read a snapshot (false: the graph was rebuilt from the store).
    pub opened_from_snapshot: bool,
    /// Mutations replayed from the log at the last open.
    pub replayed_ids: usize,
}

/// Runs blocking work on Tokio's blocking pool.
pub(crate) async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> VectorizeResult<T> + Send + 'static,
) -> VectorizeResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| VectorizeError::engine("blocking task", e))?
}

fn mutation_id(seq: u64) -> String {
    format!("00000000-0000-4000-8000-{seq:012x}")
}

struct Writer {
    /// Ids written while a rebuild runs, replayed into the new graph before it is swapped in.
    capture: Option<Vec<String>>,
}

pub(crate) struct Inner {
    name: String,
    dir: PathBuf,
    config: IndexConfig,
    settings: Settings,
    clock: SharedClock,
    store: Store,
    state: RwLock<State>,
    writer: Mutex<Writer>,
    persist_lock: Mutex<u64>,
    scratch: ScratchPool,
    poisoned: Mutex<Option<String>>,
    closed: AtomicBool,
    rebuilding: AtomicBool,
    changes: AtomicUsize,
    ef_override: AtomicUsize,
    rebuilds: AtomicU64,
    exact_queries: AtomicU64,
    graph_queries: AtomicU64,
    fallbacks: AtomicU64,
    from_snapshot: bool,
    replayed: usize,
}

/// One Vectorize index on disk: a redb store plus an HNSW graph in memory.
///
/// Cloning is cheap; clones share the index. See the crate docs for the engine.
///
/// Dropping the last handle writes the graph snapshot (if anything changed since the last
/// one) on the dropping thread; in async code, call [`VectorizeIndex::flush`] first so that
/// the write happens on the blocking pool and the drop has nothing left to do.
#[derive(Clone)]
pub struct VectorizeIndex {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for VectorizeIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorizeIndex")
            .field("name", &self.inner.name)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn graph_file(dir: &Path) -> PathBuf {
    dir.join("graph.snapshot")
}

impl Inner {
    fn new_state(config: &IndexConfig, settings: &Settings) -> State {
        State::new(
            config.dimensions,
            Kind::of(config.metric),
            matches!(
                config.metric,
                bindery_core::vectorize::DistanceMetric::Cosine
            ),
            params(settings).m,
            settings.limits.indexed_string_bytes,
        )
    }

    fn linked(&self) -> bool {
        matches!(self.settings.engine, Engine::Hnsw(_))
    }

    fn check_writable(&self) -> VectorizeResult<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(VectorizeError::Closed);
        }
        if let Some(reason) = self.poisoned.lock().clone() {
            return Err(VectorizeError::Poisoned { reason });
        }
        Ok(())
    }

    fn commit(&self, b: &Batch) -> VectorizeResult<()> {
        self.store.commit(b).inspect_err(|e| {
            tracing::error!(index = %self.name, error = %e, "Vectorize commit failed; the index now refuses writes");
            *self.poisoned.lock() = Some(e.to_string());
        })
    }

    /// Applies a committed batch to the in-memory state. `staged` are the batch's puts,
    /// already staged and linked while the batch was committed ([`Inner::commit_staged`]);
    /// without them the puts are added and linked here.
    fn apply(self: &Arc<Self>, w: &mut Writer, b: Batch, staged: Option<&[u32]>) {
        if let Some(c) = &mut w.capture {
            c.extend(b.puts.iter().map(|(id, _)| id.clone()));
            c.extend(b.deletes.iter().cloned());
        }
        let changed = b.puts.len() + b.deletes.len();
        let mut st = self.state.write();
        for id in &b.deletes {
            st.remove(id);
        }
        if let Some(p) = &b.drop_index {
            st.meta.retain(|ix| &ix.property != p);
        }
        if let Some(ix) = &b.create_index {
            st.meta
                .push(MetaIndex::new(ix.property.clone(), ix.ty, ix.created_seq));
        }
        let fresh: Vec<u32> = match staged {
            Some(nodes) => {
                for (&node, (_, rec)) in nodes.iter().zip(&b.puts) {
                    st.publish(node, rec);
                }
                Vec::new()
            }
            None => b.puts.iter().map(|(id, rec)| st.put(id, rec)).collect(),
        };
        st.seq = b.seq;
        st.processed_ms = b.now_ms;
        let st = RwLockWriteGuard::downgrade(st);
        if self.linked() && !fresh.is_empty() {
            link_all(
                &st.graph,
                &fresh,
                params(&self.settings).ef_construction,
                self.settings.threads,
                &self.scratch,
            );
        }
        let needs_rebuild = self.linked()
            && st.deleted_count >= self.settings.rebuild_min
            && st.deleted_count as f64 >= self.settings.rebuild_ratio * st.nodes.len() as f64;
        let len = st.nodes.len();
        drop(st);
        let changes = self.changes.fetch_add(changed, Ordering::AcqRel) + changed;
        if needs_rebuild && !self.rebuilding.load(Ordering::Acquire) {
            let me = Arc::clone(self);
            let _ = std::thread::Builder::new()
                .name("bindery-vectorize-rebuild".into())
                .spawn(move || {
                    if let Err(e) = me.rebuild() {
                        tracing::warn!(index = %me.name, error = %e, "Vectorize rebuild failed");
                    }
                });
        } else if changes >= self.settings.persist_min.max(len) {
            let me = Arc::clone(self);
            let _ = std::thread::Builder::new()
                .name("bindery-vectorize-persist".into())
                .spawn(move || {
                    if let Err(e) = me.persist() {
                        tracing::warn!(index = %me.name, error = %e, "Vectorize snapshot failed");
                    }
                });
        }
    }

    /// Stages the batch's vectors (invisible to queries), then commits the batch durably
    /// while the vectors are linked into the graph on other threads: the fsync and the
    /// linking overlap. Returns the staged nodes; on a failed commit they stay invisible.
    fn commit_staged(&self, b: &Batch) -> VectorizeResult<Vec<u32>> {
        let staged: Vec<u32> = {
            let mut st = self.state.write();
            b.puts.iter().map(|(id, rec)| st.stage(id, rec)).collect()
        };
        let st = self.state.read();
        let linked = self.linked() && !staged.is_empty();
        std::thread::scope(|sc| {
            let committing = sc.spawn(|| self.commit(b));
            if linked {
                link_all(
                    &st.graph,
                    &staged,
                    params(&self.settings).ef_construction,
                    self.settings.threads,
                    &self.scratch,
                );
            }
            committing
                .join()
                .map_err(|_| VectorizeError::engine("commit", "the commit thread panicked"))?
        })?;
        Ok(staged)
    }

    /// Writes a snapshot of the state and drops the log it covers.
    fn persist(&self) -> VectorizeResult<()> {
        let mut persisted = self.persist_lock.lock();
        let (seq, bytes) = {
            let st = self.state.read();
            if st.seq == *persisted && graph_file(&self.dir).exists() {
                return Ok(());
            }
            self.changes.store(0, Ordering::Release);
            (st.seq, snapshot::encode(&st))
        };
        snapshot::write(&graph_file(&self.dir), &bytes)
            .map_err(|e| VectorizeError::engine("snapshot", e))?;
        self.store.truncate_log(seq)?;
        *persisted = seq;
        Ok(())
    }

    /// Rebuilds the graph without deleted nodes, in the background of queries and writes.
    fn rebuild(self: &Arc<Self>) -> VectorizeResult<()> {
        if self.rebuilding.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let result = self.rebuild_inner();
        self.writer.lock().capture = None;
        self.rebuilding.store(false, Ordering::Release);
        result?;
        self.rebuilds.fetch_add(1, Ordering::AcqRel);
        self.persist()
    }

    fn rebuild_inner(&self) -> VectorizeResult<()> {
        let p = params(&self.settings);
        let (fresh, nodes) = {
            let mut w = self.writer.lock();
            w.capture = Some(Vec::new());
            self.state.read().compacted(p.m)
        };
        link_all(
            &fresh.graph,
            &nodes,
            p.ef_construction,
            self.settings.threads,
            &self.scratch,
        );
        let mut fresh = fresh;
        let mut w = self.writer.lock();
        if self.closed.load(Ordering::Acquire) {
            return Err(VectorizeError::Closed);
        }
        let ids = w.capture.take().unwrap_or_default();
        {
            let cur = self.state.read();
            let mut metas = Vec::with_capacity(cur.meta.len());
            for ix in &cur.meta {
                let kept = fresh
                    .meta
                    .iter()
                    .position(|f| f.property == ix.property && f.created_seq == ix.created_seq);
                metas.push(match kept {
                    Some(i) => fresh.meta.swap_remove(i),
                    None => MetaIndex::new(ix.property.clone(), ix.ty, ix.created_seq),
                });
            }
            fresh.meta = metas;
            fresh.seq = cur.seq;
            fresh.processed_ms = cur.processed_ms;
        }
        let added = replay(&self.store, &mut fresh, ids)?;
        link_all(
            &fresh.graph,
            &added,
            p.ef_construction,
            self.settings.threads,
            &self.scratch,
        );
        *self.state.write() = fresh;
        drop(w);
        Ok(())
    }
}

/// Brings `st` up to date for `ids` by reading their current records; returns nodes to link.
fn replay(store: &Store, st: &mut State, ids: Vec<String>) -> VectorizeResult<Vec<u32>> {
    let mut seen = HashSet::new();
    let mut added = Vec::new();
    for id in ids {
        if !seen.insert(id.clone()) {
            continue;
        }
        match store.get(&id)? {
            Some(rec) => {
                let current = st.by_id.get(id.as_str()).map(|&n| st.nodes[n as usize].seq);
                if current != Some(rec.seq) {
                    added.push(st.put(&id, &rec));
                }
            }
            None => st.remove(&id),
        }
    }
    Ok(added)
}

fn params(settings: &Settings) -> HnswParams {
    match settings.engine {
        Engine::Hnsw(p) => p,
        Engine::Exact => HnswParams::default(),
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.closed.load(Ordering::Acquire) || self.poisoned.lock().is_some() {
            return;
        }
        if let Err(e) = self.persist() {
            tracing::warn!(index = %self.name, error = %e, "Vectorize snapshot on close failed");
        }
    }
}

impl VectorizeIndex {
    /// Opens (creating if needed) the index stored in `dir`.
    pub(crate) fn open(
        name: &str,
        dir: &Path,
        config: IndexConfig,
        created_on_ms: u64,
        settings: Settings,
        clock: SharedClock,
    ) -> VectorizeResult<Self> {
        std::fs::create_dir_all(dir).map_err(|e| VectorizeError::engine("open", e))?;
        let store = Store::open(&dir.join("vectors.redb"), &config, created_on_ms)?;
        let store_seq = store.seq()?;
        let stored_meta = store.metadata_indexes()?;
        let p = params(&settings);
        let kind = Kind::of(config.metric);
        let normalize = matches!(
            config.metric,
            bindery_core::vectorize::DistanceMetric::Cosine
        );
        let snap = snapshot::load(
            &graph_file(dir),
            config.dimensions,
            kind,
            normalize,
            p.m,
            settings.limits.indexed_string_bytes,
        )
        .filter(|s| s.seq <= store_seq);
        let snap = match snap {
            Some(s) => {
                let first = store.log_first()?;
                // The log must cover every mutation after the snapshot.
                let covered = s.seq == store_seq || first.is_some_and(|f| f <= s.seq + 1);
                covered.then_some(s)
            }
            None => None,
        };
        let from_snapshot = snap.is_some();
        let scratch = ScratchPool::default();
        let (mut st, ids) = match snap {
            Some(s) => {
                let ids = store.log_after(s.seq)?;
                (s, ids)
            }
            None => {
                let mut st = Inner::new_state(&config, &settings);
                st.meta = stored_meta
                    .iter()
                    .map(|m| MetaIndex::new(m.property.clone(), m.ty, m.created_seq))
                    .collect();
                let mut fresh = Vec::new();
                store.for_each(|id, rec| fresh.push(st.put(id, &rec)))?;
                if matches!(settings.engine, Engine::Hnsw(_)) {
                    link_all(
                        &st.graph,
                        &fresh,
                        p.ef_construction,
                        settings.threads,
                        &scratch,
                    );
                }
                (st, Vec::new())
            }
        };
        // The store's metadata index list is authoritative.
        let mut metas = Vec::with_capacity(stored_meta.len());
        for m in &stored_meta {
            let kept = st
                .meta
                .iter()
                .position(|f| f.property == m.property && f.created_seq == m.created_seq);
            metas.push(match kept {
                Some(i) => st.meta.swap_remove(i),
                None => MetaIndex::new(m.property.clone(), m.ty, m.created_seq),
            });
        }
        st.meta = metas;
        let replayed = ids.len();
        let added = replay(&store, &mut st, ids)?;
        if matches!(settings.engine, Engine::Hnsw(_)) {
            link_all(
                &st.graph,
                &added,
                p.ef_construction,
                settings.threads,
                &scratch,
            );
        }
        st.seq = store_seq;
        st.processed_ms = store.processed_ms()?;
        let persisted = if from_snapshot && replayed == 0 {
            store_seq
        } else {
            u64::MAX
        };
        Ok(Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                dir: dir.to_owned(),
                config,
                settings,
                clock,
                store,
                state: RwLock::new(st),
                writer: Mutex::new(Writer { capture: None }),
                persist_lock: Mutex::new(persisted),
                scratch,
                poisoned: Mutex::new(None),
                closed: AtomicBool::new(false),
                rebuilding: AtomicBool::new(false),
                changes: AtomicUsize::new(0),
                ef_override: AtomicUsize::new(0),
                rebuilds: AtomicU64::new(0),
                exact_queries: AtomicU64::new(0),
                graph_queries: AtomicU64::new(0),
                fallbacks: AtomicU64::new(0),
                from_snapshot,
                replayed,
            }),
        })
    }

    /// The index's configuration.
    pub fn config(&self) -> &IndexConfig {
        &self.inner.config
    }

    /// Marks the index closed: later calls fail with [`VectorizeError::Closed`] and no
    /// snapshot is written on drop.
    pub(crate) fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
    }

    /// Writes a graph snapshot now (it is also written on drop, after rebuilds and after
    /// many changes), so that the next open reads it instead of rebuilding.
    pub async fn flush(&self) -> VectorizeResult<()> {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || inner.persist()).await
    }

    /// Rebuilds the graph without deleted vectors now (it also happens in the background
    /// once deletions pass the rebuild threshold).
    pub async fn compact(&self) -> VectorizeResult<()> {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || inner.rebuild()).await
    }

    /// Counters.
    pub fn stats(&self) -> IndexStats {
        let i = &self.inner;
        let st = i.state.read();
        IndexStats {
            nodes: st.nodes.len(),
            tombstones: st.deleted_count,
            rebuilds: i.rebuilds.load(Ordering::Acquire),
            exact_queries: i.exact_queries.load(Ordering::Relaxed),
            graph_queries: i.graph_queries.load(Ordering::Relaxed),
            exact_fallbacks: i.fallbacks.load(Ordering::Relaxed),
            opened_from_snapshot: i.from_snapshot,
            replayed_ids: i.replayed,
        }
    }

    /// Changes the search breadth of the graph (`ef_search`), for tuning recall against
    /// speed. Returns the previous value.
    pub fn set_ef_search(&self, ef: usize) -> usize {
        let prev = self.inner.ef_override.swap(ef, Ordering::AcqRel);
        if prev == 0 {
            params(&self.inner.settings).ef_search
        } else {
            prev
        }
    }

    fn check_open(&self) -> VectorizeResult<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(VectorizeError::Closed)
        } else {
            Ok(())
        }
    }

    fn validate_vectors(&self, vectors: &[Vector]) -> VectorizeResult<()> {
        let l = &self.inner.settings.limits;
        if vectors.len() > l.max_vectors_per_write {
            return Err(VectorizeError::TooManyVectors {
                count: vectors.len(),
                limit: l.max_vectors_per_write,
            });
        }
        let dims = self.inner.config.dimensions;
        for v in vectors {
            validate_id(&v.id, l)?;
            if v.values.len() != dims {
                return Err(VectorizeError::VectorDimensionMismatch {
                    id: v.id.clone(),
                    expected: dims,
                    got: v.values.len(),
                });
            }
            if let Some(position) = v.values.iter().position(|x| !x.is_finite()) {
                return Err(VectorizeError::NonFiniteValue {
                    id: v.id.clone(),
                    position,
                });
            }
            if let Some(ns) = &v.namespace {
                validate_namespace(ns, l)?;
            }
            if let Some(m) = &v.metadata {
                metadata::validate(&v.id, m, l.max_metadata_bytes)?;
            }
        }
        Ok(())
    }

    async fn write(&self, vectors: Vec<Vector>, upsert: bool) -> VectorizeResult<Mutation> {
        self.check_open()?;
        self.validate_vectors(&vectors)?;
        let inner = Arc::clone(&self.inner);
        run_blocking(move || {
            let mut w = inner.writer.lock();
            inner.check_writable()?;
            let now_ms = inner.clock.now_ms();
            let (seq, puts) = {
                let st = inner.state.read();
                let seq = st.seq + 1;
                let mut seen = HashSet::new();
                let mut puts: Vec<(String, Record)> = Vec::with_capacity(vectors.len());
                let to_record = |v: Vector| {
                    (
                        v.id,
                        Record {
                            seq,
                            namespace: v.namespace,
                            values: v.values,
                            metadata: v.metadata,
                        },
                    )
                };
                if upsert {
                    for v in vectors.into_iter().rev() {
                        if seen.insert(v.id.clone()) {
                            puts.push(to_record(v));
                        }
                    }
                    puts.reverse();
                } else {
                    for v in vectors {
                        if !st.by_id.contains_key(v.id.as_str()) && seen.insert(v.id.clone()) {
                            puts.push(to_record(v));
                        }
                    }
                }
                let l = &inner.settings.limits;
                let new_ids = puts
                    .iter()
                    .filter(|(id, _)| !st.by_id.contains_key(id.as_str()))
                    .count() as u64;
                let count = st.live() as u64 + new_ids;
                if count > l.max_vectors_per_index {
                    return Err(VectorizeError::IndexFull {
                        count,
                        limit: l.max_vectors_per_index,
                    });
                }
                let mut new_ns: HashSet<&str> = HashSet::new();
                for (_, r) in &puts {
                    if let Some(ns) = r.namespace.as_deref() {
                        let live = st
                            .ns_codes
                            .get(ns)
                            .is_some_and(|&c| st.ns_live[c as usize] > 0);
                        if !live {
                            new_ns.insert(ns);
                        }
                    }
                }
                let ns_count = st.live_namespaces() + new_ns.len();
                if !new_ns.is_empty() && ns_count > l.max_namespaces_per_index {
                    return Err(VectorizeError::TooManyNamespaces {
                        count: ns_count,
                        limit: l.max_namespaces_per_index,
                    });
                }
                (seq, puts)
            };
            let batch = Batch {
                seq,
                now_ms,
                puts,
                ..Batch::default()
            };
            let staged = inner.commit_staged(&batch)?;
            inner.apply(&mut w, batch, Some(&staged));
            Ok(Mutation {
                mutation_id: mutation_id(seq),
            })
        })
        .await
    }

    /// Runs a mutation that changes no vectors (metadata index changes).
    async fn meta_mutation(
        &self,
        f: impl FnOnce(&State, u64) -> VectorizeResult<Batch> + Send + 'static,
    ) -> VectorizeResult<Mutation> {
        self.check_open()?;
        let inner = Arc::clone(&self.inner);
        run_blocking(move || {
            let mut w = inner.writer.lock();
            inner.check_writable()?;
            let batch = {
                let st = inner.state.read();
                let mut b = f(&st, st.seq + 1)?;
                b.seq = st.seq + 1;
                b.now_ms = inner.clock.now_ms();
                b
            };
            let seq = batch.seq;
            inner.commit(&batch)?;
            inner.apply(&mut w, batch, None);
            Ok(Mutation {
                mutation_id: mutation_id(seq),
            })
        })
        .await
    }

    fn top_k(&self, o: &QueryOptions) -> VectorizeResult<usize> {
        let l = &self.inner.settings.limits;
        let k = o.top_k.unwrap_or(5);
        if k == 0 {
            return Err(VectorizeError::TopKZero);
        }
        let heavy = o.return_values || o.return_metadata == ReturnMetadata::All;
        let max = if heavy {
            l.max_top_k_with_values_or_all_metadata
        } else {
            l.max_top_k
        };
        if k > max {
            return Err(VectorizeError::TopKTooLarge {
                top_k: k,
                max,
                with_values_or_all_metadata: heavy,
            });
        }
        Ok(k)
    }

    fn prepare(&self, o: &QueryOptions) -> VectorizeResult<(usize, Option<Filter>)> {
        let k = self.top_k(o)?;
        if let Some(ns) = &o.namespace {
            validate_namespace(ns, &self.inner.settings.limits)?;
        }
        let f = o
            .filter
            .as_ref()
            .map(|f| filter::parse(f, &self.inner.settings.limits))
            .transpose()?;
        Ok((k, f))
    }

    async fn run_query(
        &self,
        query: QueryVector,
        k: usize,
        filter: Option<Filter>,
        o: QueryOptions,
    ) -> VectorizeResult<QueryResult> {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || inner.query(query, k, filter.as_ref(), &o)).await
    }
}

enum QueryVector {
    Values(Vec<f32>),
    Id(String),
}

impl Inner {
    fn ef_search(&self) -> usize {
        match self.ef_override.load(Ordering::Relaxed) {
            0 => params(&self.settings).ef_search,
            ef => ef,
        }
    }

    fn query(
        &self,
        query: QueryVector,
        k: usize,
        filter: Option<&Filter>,
        o: &QueryOptions,
    ) -> VectorizeResult<QueryResult> {
        if self.closed.load(Ordering::Acquire) {
            return Err(VectorizeError::Closed);
        }
        let st = self.state.read();
        let q: Vec<f32> = match query {
            QueryVector::Values(mut v) => {
                if st.normalize {
                    distance::normalize(&mut v);
                }
                v
            }
            QueryVector::Id(id) => match st.by_id.get(id.as_str()) {
                Some(&n) => st.graph.vector(n).to_vec(),
                None => return Ok(QueryResult::default()),
            },
        };
        let found = self.search(&st, &q, k, o.namespace.as_deref(), filter);
        let hits: Vec<(String, f32, Option<String>)> = found
            .iter()
            .map(|c| {
                let node = &st.nodes[c.node as usize];
                let ns = (node.ns != 0).then(|| st.ns_names[node.ns as usize].clone());
                (
                    node.id.to_string(),
                    score(st.kind, st.normalize, c.dist),
                    ns,
                )
            })
            .collect();
        let metas: Vec<(String, MetadataType, u64)> = st
            .meta
            .iter()
            .map(|m| (m.property.clone(), m.ty, m.created_seq))
            .collect();
        let max_str = st.max_indexed_str;
        drop(st);
        let need_records = o.return_values || o.return_metadata != ReturnMetadata::None;
        let records = if need_records {
            let ids: Vec<&str> = hits.iter().map(|h| h.0.as_str()).collect();
            self.store.get_many(&ids)?
        } else {
            vec![None; hits.len()]
        };
        let matches: Vec<VectorMatch> = hits
            .into_iter()
            .zip(records)
            .map(|((id, score, namespace), rec)| {
                let values = if o.return_values {
                    rec.as_ref().map(|r| r.values.clone())
                } else {
                    None
                };
                let metadata = match o.return_metadata {
                    ReturnMetadata::None => None,
                    ReturnMetadata::All => rec.as_ref().and_then(|r| r.metadata.clone()),
                    ReturnMetadata::Indexed => rec.as_ref().and_then(|r| {
                        let m = r.metadata.as_ref()?;
                        let mut out = Metadata::new();
                        for (p, ty, created) in &metas {
                            if r.seq > *created
                                && let Some(key) = indexed_value(m, p, *ty, max_str)
                            {
                                // Numbers and booleans as written; strings as indexed.
                                let value = match key {
                                    crate::metadata::Key::Str(_) => key.to_json(),
                                    _ => metadata::lookup(m, p).cloned().unwrap_or(Value::Null),
                                };
                                place(&mut out, p, value);
                            }
                        }
                        (!out.is_empty()).then_some(out)
                    }),
                };
                VectorMatch {
                    id,
                    score,
                    values,
                    namespace,
                    metadata,
                }
            })
            .collect();
        Ok(QueryResult {
            count: matches.len(),
            matches,
        })
    }

    /// The best `k` allowed nodes: exact when the candidate set is small, else the graph,
    /// falling back to exact if the graph returns fewer matches than exist.
    fn search(
        &self,
        st: &State,
        q: &[f32],
        k: usize,
        namespace: Option<&str>,
        filter: Option<&Filter>,
    ) -> Vec<Cand> {
        let n = st.nodes.len();
        let mut allowed: Option<Bits> = None;
        if let Some(ns) = namespace {
            let Some(&code) = st.ns_codes.get(ns) else {
                return Vec::new();
            };
            let mut b = Bits::new(n);
            b.set_all(&st.ns_nodes[code as usize]);
            allowed = Some(b);
        }
        if let Some(f) = filter {
            for clause in &f.clauses {
                let ix = st.meta.iter().find(|m| m.property == clause.path);
                let b = filter::eval_clause(clause, ix, n, st.max_indexed_str);
                match &mut allowed {
                    Some(a) => a.and(&b),
                    None => allowed = Some(b),
                }
            }
        }
        let live = st.live();
        let exact_only = !self.linked();
        let threshold = self.settings.exact_threshold;
        match allowed {
            None => {
                if live == 0 {
                    return Vec::new();
                }
                if exact_only || live <= threshold {
                    self.exact_queries.fetch_add(1, Ordering::Relaxed);
                    return exact(st, q, k, (0..n as u32).filter(|&i| !st.deleted.get(i)));
                }
                self.graph_queries.fetch_add(1, Ordering::Relaxed);
                let mut s = self.scratch.take();
                let out = st.graph.search(
                    q,
                    k,
                    self.ef_search(),
                    |i| !st.deleted.get(i),
                    Walk::Plain,
                    &mut s,
                );
                self.scratch.give(s);
                if out.len() < k.min(live) {
                    self.fallbacks.fetch_add(1, Ordering::Relaxed);
                    return exact(st, q, k, (0..n as u32).filter(|&i| !st.deleted.get(i)));
                }
                out
            }
            Some(mut a) => {
                a.and_not(&st.deleted);
                let count = a.count();
                if count == 0 {
                    return Vec::new();
                }
                if exact_only || count <= threshold {
                    self.exact_queries.fetch_add(1, Ordering::Relaxed);
                    return exact(st, q, k, a.iter());
                }
                self.graph_queries.fetch_add(1, Ordering::Relaxed);
                let selectivity = count as f64 / live.max(1) as f64;
                let walk = if selectivity < self.settings.two_hop_below {
                    Walk::TwoHop
                } else {
                    Walk::Plain
                };
                let mut s = self.scratch.take();
                let out = st
                    .graph
                    .search(q, k, self.ef_search(), |i| a.get(i), walk, &mut s);
                self.scratch.give(s);
                if out.len() < k.min(count) {
                    self.fallbacks.fetch_add(1, Ordering::Relaxed);
                    return exact(st, q, k, a.iter());
                }
                out
            }
        }
    }
}

/// The exact best `k` of `nodes`, closest first (ties by node number).
fn exact(st: &State, q: &[f32], k: usize, nodes: impl Iterator<Item = u32>) -> Vec<Cand> {
    let nodes: Vec<u32> = nodes.collect();
    let mut top: std::collections::BinaryHeap<Cand> =
        std::collections::BinaryHeap::with_capacity(k + 1);
    for (i, &n) in nodes.iter().enumerate() {
        if let Some(&next) = nodes.get(i + 2) {
            distance::prefetch(st.graph.vector(next));
        }
        let c = Cand {
            dist: st.graph.dist(q, n),
            node: n,
        };
        if top.len() < k {
            top.push(c);
        } else if top.peek().is_some_and(|t| c < *t) {
            top.pop();
            top.push(c);
        }
    }
    top.into_sorted_vec()
}

/// The documented score for a search distance.
fn score(kind: Kind, normalized: bool, dist: f32) -> f32 {
    match kind {
        Kind::L2Sq => dist.max(0.0).sqrt(),
        // Cosine: the similarity of unit vectors, clamped against rounding.
        Kind::NegDot if normalized => (-dist).clamp(-1.0, 1.0),
        // Dot-product: Vectorize reports the negative dot product.
        Kind::NegDot => dist,
    }
}

pub(crate) fn validate_id(id: &str, l: &VectorizeLimits) -> VectorizeResult<()> {
    if id.is_empty() || id.len() > l.max_id_bytes {
        return Err(VectorizeError::InvalidId {
            id: id.to_owned(),
            limit: l.max_id_bytes,
        });
    }
    Ok(())
}

fn validate_namespace(ns: &str, l: &VectorizeLimits) -> VectorizeResult<()> {
    if ns.is_empty() || ns.len() > l.max_namespace_bytes {
        return Err(VectorizeError::InvalidNamespace {
            namespace: ns.to_owned(),
            limit: l.max_namespace_bytes,
        });
    }
    Ok(())
}

fn check_query_vector(v: &[f32], dims: usize) -> VectorizeResult<()> {
    if v.len() != dims {
        return Err(VectorizeError::QueryDimensionMismatch {
            expected: dims,
            got: v.len(),
        });
    }
    if let Some(position) = v.iter().position(|x| !x.is_finite()) {
        return Err(VectorizeError::NonFiniteValue {
            id: String::new(),
            position,
        });
    }
    Ok(())
}

#[async_trait]
impl VectorIndex for VectorizeIndex {
    fn name(&self) -> &str {
        &self.inner.name
    }

    async fn describe(&self) -> VectorizeResult<IndexDescription> {
        self.check_open()?;
        let st = self.inner.state.read();
        Ok(IndexDescription {
            vector_count: st.live() as u64,
            dimensions: self.inner.config.dimensions,
            metric: self.inner.config.metric,
            processed_up_to_mutation: (st.seq > 0).then(|| mutation_id(st.seq)),
            processed_up_to_ms: (st.seq > 0).then_some(st.processed_ms),
        })
    }

    async fn insert(&self, vectors: Vec<Vector>) -> VectorizeResult<Mutation> {
        self.write(vectors, false).await
    }

    async fn upsert(&self, vectors: Vec<Vector>) -> VectorizeResult<Mutation> {
        self.write(vectors, true).await
    }

    async fn query(&self, vector: &[f32], options: QueryOptions) -> VectorizeResult<QueryResult> {
        self.check_open()?;
        check_query_vector(vector, self.inner.config.dimensions)?;
        let (k, f) = self.prepare(&options)?;
        self.run_query(QueryVector::Values(vector.to_vec()), k, f, options)
            .await
    }

    async fn query_by_id(&self, id: &str, options: QueryOptions) -> VectorizeResult<QueryResult> {
        self.check_open()?;
        validate_id(id, &self.inner.settings.limits)?;
        let (k, f) = self.prepare(&options)?;
        self.run_query(QueryVector::Id(id.to_owned()), k, f, options)
            .await
    }

    async fn get_by_ids(&self, ids: &[String]) -> VectorizeResult<Vec<Vector>> {
        self.check_open()?;
        let l = &self.inner.settings.limits;
        if ids.len() > l.max_vectors_per_write {
            return Err(VectorizeError::TooManyVectors {
                count: ids.len(),
                limit: l.max_vectors_per_write,
            });
        }
        for id in ids {
            validate_id(id, l)?;
        }
        let inner = Arc::clone(&self.inner);
        let ids = ids.to_vec();
        run_blocking(move || {
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let recs = inner.store.get_many(&refs)?;
            Ok(ids
                .into_iter()
                .zip(recs)
                .filter_map(|(id, r)| {
                    r.map(|r| Vector {
                        id,
                        values: r.values,
                        namespace: r.namespace,
                        metadata: r.metadata,
                    })
                })
                .collect())
        })
        .await
    }

    async fn delete_by_ids(&self, ids: &[String]) -> VectorizeResult<Mutation> {
        self.check_open()?;
        let l = &self.inner.settings.limits;
        if ids.len() > l.max_vectors_per_write {
            return Err(VectorizeError::TooManyVectors {
                count: ids.len(),
                limit: l.max_vectors_per_write,
            });
        }
        for id in ids {
            validate_id(id, l)?;
        }
        let ids = ids.to_vec();
        self.meta_mutation(move |st, _| {
            let mut seen = HashSet::new();
            let deletes = ids
                .into_iter()
                .filter(|id| st.by_id.contains_key(id.as_str()) && seen.insert(id.clone()))
                .collect();
            Ok(Batch {
                deletes,
                ..Batch::default()
            })
        })
        .await
    }

    async fn list_vectors(&self, options: ListVectorsOptions) -> VectorizeResult<VectorIdPage> {
        self.check_open()?;
        let max = self.inner.settings.limits.max_list_count;
        let count = options.count.unwrap_or(100);
        if count == 0 || count > max {
            return Err(VectorizeError::InvalidListCount { count, max });
        }
        let after = match &options.cursor {
            None => None,
            Some(c) => Some(
                hex::decode(c)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or(VectorizeError::InvalidCursor {
                        reason: "not a cursor returned by list_vectors",
                    })?,
            ),
        };
        let inner = Arc::clone(&self.inner);
        run_blocking(move || {
            let (ids, more) = inner.store.ids_after(after.as_deref(), count)?;
            let total_count = inner.state.read().live() as u64;
            let next_cursor = if more {
                ids.last().map(hex::encode)
            } else {
                None
            };
            Ok(VectorIdPage {
                ids,
                total_count,
                is_truncated: more,
                next_cursor,
            })
        })
        .await
    }

    async fn create_metadata_index(
        &self,
        property_name: &str,
        index_type: MetadataType,
    ) -> VectorizeResult<Mutation> {
        let l = self.inner.settings.limits.clone();
        filter::check_path(property_name, l.max_filter_key_chars).map_err(|reason| {
            VectorizeError::InvalidPropertyName {
                property: property_name.to_owned(),
                reason,
            }
        })?;
        let property = property_name.to_owned();
        self.meta_mutation(move |st, seq| {
            if st.meta.iter().any(|m| m.property == property) {
                return Err(VectorizeError::MetadataIndexExists { property });
            }
            if st.meta.len() >= l.max_metadata_indexes {
                return Err(VectorizeError::TooManyMetadataIndexes {
                    limit: l.max_metadata_indexes,
                });
            }
            Ok(Batch {
                create_index: Some(StoredMetaIndex {
                    property,
                    ty: index_type,
                    created_seq: seq,
                }),
                ..Batch::default()
            })
        })
        .await
    }

    async fn delete_metadata_index(&self, property_name: &str) -> VectorizeResult<Mutation> {
        let property = property_name.to_owned();
        self.meta_mutation(move |st, _| {
            if !st.meta.iter().any(|m| m.property == property) {
                return Err(VectorizeError::MetadataIndexNotFound { property });
            }
            Ok(Batch {
                drop_index: Some(property),
                ..Batch::default()
            })
        })
        .await
    }

    async fn list_metadata_indexes(&self) -> VectorizeResult<Vec<MetadataIndex>> {
        self.check_open()?;
        let st = self.inner.state.read();
        let mut out: Vec<MetadataIndex> = st
            .meta
            .iter()
            .map(|m| MetadataIndex {
                property_name: m.property.clone(),
                index_type: m.ty,
            })
            .collect();
        out.sort_by(|a, b| a.property_name.cmp(&b.property_name));
        Ok(out)
    }
}
