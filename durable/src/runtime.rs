//! The runtime, its namespaces, and the actor that runs each live object.
//!
//! A namespace keeps a sharded map from object id to the live actor's mailbox. Senders put
//! events in the mailbox while holding the shard lock; an actor that wants to stop (idle,
//! evicted to respect the live bound, or shut down) marks its entry *closing* under the
//! same lock, and only when its mailbox is empty. Events arriving while it closes wait in
//! the entry and start a fresh actor once the old one has closed its database, so there is
//! never more than one live instance per id and no event is lost or reordered.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use bindery_core::durable::{
    AlarmInfo, BoxFuture, Connection, ConnectionSink, DurableError, DurableLimits,
    DurableNamespace, DurableObject, DurableObjectId, DurableResult, DurableStorage, DurableStub,
    HttpRequest, HttpResponse, InboundConnection, Message, ObjectState, State, StubTransport,
};
use bindery_core::{SharedClock, SystemClock};
use futures_util::FutureExt;
use parking_lot::Mutex;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::alarms::{AlarmIndex, AlarmQueue};
use crate::committer::Committer;
use crate::connections::{ConnDispatch, ConnRecord, Inbound};
use crate::ids::IdMaker;
use crate::storage::{ObjectStorage, StorageEnv};

const SHARDS: usize = 64;

/// Ids are hashes already: the shard maps hash them by taking eight of their bytes.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8).take(2) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

type IdMap<V> = HashMap<[u8; 32], V, std::hash::BuildHasherDefault<IdHasher>>;

/// The ids of the objects on a call path, outermost first.
type Chain = Arc<Vec<[u8; 32]>>;

tokio::task_local! {
    static CURRENT: Current;
}

/// What a running handler's task knows: the call path and its object's storage.
#[derive(Clone)]
struct Current {
    chain: Arc<Vec<[u8; 32]>>,
    storage: Arc<ObjectStorage>,
}

/// The storage of the object whose handler runs on this task, if any.
pub(crate) fn current_storage() -> Option<Arc<ObjectStorage>> {
    CURRENT.try_with(|c| Arc::clone(&c.storage)).ok()
}

/// Runs `f` on the blocking pool. Fails with [`DurableError::Closed`] when the Tokio
/// runtime is shutting down and the task was cancelled.
async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> DurableResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Ok(v),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(DurableError::Closed),
    }
}

// ---------------------------------------------------------------------------------------------
// Runtime
// ---------------------------------------------------------------------------------------------

/// Builds a [`DurableRuntime`]. Every setter documents its default.
pub struct DurableRuntimeBuilder {
    clock: SharedClock,
    limits: DurableLimits,
    idle_timeout_ms: u64,
    max_live_instances: usize,
    nested_call_timeout_ms: u64,
}

impl Default for DurableRuntimeBuilder {
    fn default() -> Self {
        Self {
            clock: SystemClock::shared(),
            limits: DurableLimits::cloudflare(),
            idle_timeout_ms: 10_000,
            max_live_instances: 10_000,
            nested_call_timeout_ms: 30_000,
        }
    }
}

impl DurableRuntimeBuilder {
    /// The clock for alarms, idle eviction and time limits. Default: the system clock.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The limits to enforce. Default: [`DurableLimits::cloudflare`].
    pub fn limits(mut self, limits: DurableLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Milliseconds without events after which an instance is evicted (its memory freed;
    /// storage and hibernatable connections stay). Default: 10,000 (the platform
    /// hibernates idle objects after 10 s).
    pub fn idle_timeout_ms(mut self, ms: u64) -> Self {
        self.idle_timeout_ms = ms;
        self
    }

    /// Most live instances per namespace; past it, the least recently used idle instance
    /// is evicted. Busy instances finish their queued events first, so the bound can be
    /// passed briefly under load. Default: 10,000.
    pub fn max_live_instances(mut self, n: usize) -> Self {
        self.max_live_instances = n.max(1);
        self
    }

    /// How long a call made from inside an object may wait for its answer before failing
    /// with [`DurableError::CallTimeout`] (measured on the clock). Detected call cycles fail
    /// at once. Default: 30,000 ms.
    pub fn nested_call_timeout_ms(mut self, ms: u64) -> Self {
        self.nested_call_timeout_ms = ms;
        self
    }

    /// Opens (or creates) the runtime's folder: one sub-folder per namespace, one SQLite
    /// database per object that wrote, and the alarm index.
    pub async fn open(self, root: impl Into<PathBuf>) -> DurableResult<DurableRuntime> {
        let root = root.into();
        let r = root.clone();
        let alarms = run_blocking(move || {
            std::fs::create_dir_all(&r).map_err(|e| DurableError::storage("create root", e))?;
            AlarmIndex::open(&r.join("alarms.sqlite"))
        })
        .await??;
        let committer =
            Committer::start().map_err(|e| DurableError::storage("start committer", e))?;
        let env = Arc::new(StorageEnv {
            committer,
            alarms,
            clock: self.clock,
            limits: Arc::new(self.limits),
        });
        Ok(DurableRuntime {
            inner: Arc::new(RuntimeInner {
                root,
                env,
                idle_timeout_ms: self.idle_timeout_ms,
                max_live: self.max_live_instances,
                nested_call_timeout_ms: self.nested_call_timeout_ms,
                next_conn: AtomicU64::new(1),
                names: Mutex::new(Vec::new()),
            }),
        })
    }
}

struct RuntimeInner {
    root: PathBuf,
    env: Arc<StorageEnv>,
    idle_timeout_ms: u64,
    max_live: usize,
    nested_call_timeout_ms: u64,
    next_conn: AtomicU64,
    names: Mutex<Vec<String>>,
}

/// Hosts namespaces of Durable Objects in one folder, with one clock, one set of limits and
/// one committer shared by every object (group commit across objects).
#[derive(Clone)]
pub struct DurableRuntime {
    inner: Arc<RuntimeInner>,
}

impl std::fmt::Debug for DurableRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableRuntime")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

impl DurableRuntime {
    /// A builder with the defaults.
    pub fn builder() -> DurableRuntimeBuilder {
        DurableRuntimeBuilder::default()
    }

    /// Creates the namespace `name` for class `O`; `constructor` builds an instance from its
    /// [`State`] on the instance's first event. Alarms stored for this namespace start
    /// firing now (those that came due while the process was down fire at once).
    ///
    /// Names are 1 to 64 characters of `A-Z a-z 0-9 _ -`; each may be opened once per
    /// runtime.
    pub async fn namespace<O, F>(&self, name: &str, constructor: F) -> DurableResult<Namespace<O>>
    where
        O: DurableObject,
        F: Fn(State) -> O + Send + Sync + 'static,
    {
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(DurableError::invalid(format!(
                "namespace name {name:?} must be 1 to 64 characters of A-Z a-z 0-9 _ -"
            )));
        }
        {
            let mut names = self.inner.names.lock();
            if names.iter().any(|n| n == name) {
                return Err(DurableError::invalid(format!(
                    "namespace {name:?} is already open in this runtime"
                )));
            }
            names.push(name.to_owned());
        }
        let rt = Arc::clone(&self.inner);
        let ns_name = name.to_owned();
        let due = run_blocking(move || rt.env.alarms.load(&ns_name)).await??;
        let queue = Arc::new(AlarmQueue::default());
        for d in due {
            queue.push(d);
        }
        let inner = Arc::new_cyclic(|me: &Weak<NsInner<O>>| NsInner {
            name: Arc::from(name),
            dir: self.inner.root.join(name),
            ids: IdMaker::new(name),
            rt: Arc::clone(&self.inner),
            ctor: Box::new(constructor),
            shards: (0..SHARDS).map(|_| Mutex::new(IdMap::default())).collect(),
            live: AtomicUsize::new(0),
            ticks: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            drained: Notify::new(),
            alarms: queue,
            conns: Mutex::new(IdMap::default()),
            me: me.clone(),
            scheduler: Mutex::new(None),
        });
        let task = tokio::spawn(schedule_alarms(Arc::downgrade(&inner)));
        *inner.scheduler.lock() = Some(task);
        Ok(Namespace { inner })
    }

    /// Holds (`true`) or resumes (`false`) the committer before its next fsync round, so a
    /// test can observe that gated replies wait. Not for production use.
    #[doc(hidden)]
    pub fn hold_durability(&self, hold: bool) {
        let f = &self.inner.env.committer.faults;
        *f.hold.lock() = hold;
        f.resume.notify_all();
    }

    /// Makes the next `n` fsyncs fail, as a failing disk would. Not for production use.
    #[doc(hidden)]
    pub fn fail_next_syncs(&self, n: u32) {
        self.inner
            .env
            .committer
            .faults
            .fail_next
            .store(n, Ordering::Release);
    }

    /// Committer rounds completed so far (each round is one set of fsyncs shared by every
    /// commit that was waiting).
    pub fn durability_rounds(&self) -> u64 {
        self.inner.env.committer.rounds.load(Ordering::Acquire)
    }
}

// ---------------------------------------------------------------------------------------------
// Namespace
// ---------------------------------------------------------------------------------------------

enum Event<O: DurableObject> {
    Call {
        request: O::Request,
        reply: oneshot::Sender<DurableResult<O::Response>>,
        chain: Option<Arc<Vec<[u8; 32]>>>,
    },
    Fetch {
        request: HttpRequest,
        reply: oneshot::Sender<DurableResult<HttpResponse>>,
        chain: Option<Arc<Vec<[u8; 32]>>>,
    },
    Connect {
        rec: Arc<ConnRecord>,
        request: HttpRequest,
        reply: oneshot::Sender<DurableResult<Arc<dyn InboundConnection>>>,
    },
    Message {
        rec: Arc<ConnRecord>,
        message: Message,
    },
    Close {
        rec: Arc<ConnRecord>,
        code: u16,
        reason: String,
    },
    Alarm {
        at_ms: u64,
    },
    Evict,
}

enum Entry<O: DurableObject> {
    Live {
        tx: mpsc::UnboundedSender<Event<O>>,
        last_used: Arc<AtomicU64>,
        evict_sent: bool,
    },
    Closing {
        pending: Vec<Event<O>>,
    },
}

#[derive(Default)]
struct ObjConns {
    list: Vec<Arc<ConnRecord>>,
    auto: Option<(String, String)>,
}

struct NsInner<O: DurableObject> {
    name: Arc<str>,
    dir: PathBuf,
    ids: IdMaker,
    rt: Arc<RuntimeInner>,
    ctor: Box<dyn Fn(State) -> O + Send + Sync>,
    shards: Vec<Mutex<IdMap<Entry<O>>>>,
    live: AtomicUsize,
    ticks: AtomicU64,
    closed: AtomicBool,
    drained: Notify,
    alarms: Arc<AlarmQueue>,
    conns: Mutex<IdMap<ObjConns>>,
    me: Weak<NsInner<O>>,
    scheduler: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// One namespace: a class, its ids, and the live instances of its objects.
///
/// Cloning is cheap and shares the namespace. See [`DurableNamespace`] for the contract.
pub struct Namespace<O: DurableObject> {
    inner: Arc<NsInner<O>>,
}

impl<O: DurableObject> Clone for Namespace<O> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<O: DurableObject> std::fmt::Debug for Namespace<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.inner.name)
            .field("live", &self.inner.live.load(Ordering::Relaxed))
            .finish()
    }
}

impl<O: DurableObject> Namespace<O> {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Asks every live, idle instance to leave memory now (as if its idle time had passed).
    pub fn evict_idle(&self) {
        for shard in &self.inner.shards {
            for e in shard.lock().values_mut() {
                if let Entry::Live { tx, evict_sent, .. } = e {
                    *evict_sent = true;
                    let _ = tx.send(Event::Evict);
                }
            }
        }
    }
}

#[async_trait]
impl<O: DurableObject> DurableNamespace<O> for Namespace<O> {
    fn id_from_name(&self, name: &str) -> DurableObjectId {
        self.inner.ids.named(name)
    }

    fn new_unique_id(&self) -> DurableObjectId {
        self.inner.ids.unique()
    }

    fn id_from_string(&self, id: &str) -> DurableResult<DurableObjectId> {
        self.inner.ids.parse(id)
    }

    fn get(&self, id: &DurableObjectId) -> DurableStub<O> {
        if self.inner.ids.check(id).is_err() {
            return DurableStub::new(id.clone(), Arc::new(ForeignId));
        }
        DurableStub::new(
            id.clone(),
            Arc::clone(&self.inner) as Arc<dyn StubTransport<O>>,
        )
    }

    fn live_instances(&self) -> usize {
        self.inner.live.load(Ordering::Acquire)
    }

    async fn shutdown(&self) {
        let ns = &self.inner;
        ns.closed.store(true, Ordering::Release);
        loop {
            let waiting = ns.drained.notified();
            for shard in &ns.shards {
                for e in shard.lock().values_mut() {
                    if let Entry::Live { tx, evict_sent, .. } = e
                        && !*evict_sent
                    {
                        *evict_sent = true;
                        let _ = tx.send(Event::Evict);
                    }
                }
            }
            if ns.live.load(Ordering::Acquire) == 0 {
                break;
            }
            waiting.await;
        }
        if let Some(t) = ns.scheduler.lock().take() {
            t.abort();
        }
        for c in ns.conns.lock().drain() {
            for rec in c.1.list {
                use bindery_core::durable::HibernatableConnection;
                rec.close(1001, "Durable Object namespace shut down");
            }
        }
        ns.rt.names.lock().retain(|n| **n != *ns.name);
    }
}

/// The transport of stubs whose id belongs to another namespace: every call fails.
struct ForeignId;

#[async_trait]
impl<O: DurableObject> StubTransport<O> for ForeignId {
    async fn call(&self, id: &DurableObjectId, _r: O::Request) -> DurableResult<O::Response> {
        Err(foreign(id))
    }
    async fn fetch(&self, id: &DurableObjectId, _r: HttpRequest) -> DurableResult<HttpResponse> {
        Err(foreign(id))
    }
    async fn connect(
        &self,
        id: &DurableObjectId,
        _r: HttpRequest,
        _s: Arc<dyn ConnectionSink>,
    ) -> DurableResult<Arc<dyn InboundConnection>> {
        Err(foreign(id))
    }
}

fn foreign(id: &DurableObjectId) -> DurableError {
    DurableError::InvalidId {
        reason: format!("{id} is not an id of this namespace"),
    }
}

fn lost() -> DurableError {
    DurableError::Reset {
        reason: "the object stopped before replying".into(),
    }
}

impl<O: DurableObject> NsInner<O> {
    fn shard(&self, key: &[u8; 32]) -> &Mutex<IdMap<Entry<O>>> {
        &self.shards[key[31] as usize % SHARDS]
    }

    /// Puts `event` in the object's mailbox, starting an actor if none is live.
    fn dispatch(&self, id: &DurableObjectId, event: Event<O>) -> DurableResult<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(DurableError::Closed);
        }
        let key = *id.as_bytes();
        let mut spawned = false;
        {
            let mut shard = self.shard(&key).lock();
            let event = match shard.get_mut(&key) {
                Some(Entry::Live { tx, .. }) => match tx.send(event) {
                    Ok(()) => None,
                    // The actor ended without closing its entry (it panicked outside a
                    // handler): replace it.
                    Err(e) => {
                        shard.remove(&key);
                        self.live.fetch_sub(1, Ordering::AcqRel);
                        Some(e.0)
                    }
                },
                Some(Entry::Closing { pending }) => {
                    pending.push(event);
                    None
                }
                None => Some(event),
            };
            if let Some(event) = event {
                let entry = self.spawn(id.clone(), vec![event]);
                shard.insert(key, entry);
                spawned = true;
            }
        }
        if spawned {
            self.enforce_bound(&key);
        }
        Ok(())
    }

    /// Starts an actor for `id` with `events` already in its mailbox.
    fn spawn(&self, id: DurableObjectId, events: Vec<Event<O>>) -> Entry<O> {
        let (tx, rx) = mpsc::unbounded_channel();
        for e in events {
            let _ = tx.send(e);
        }
        let last_used = Arc::new(AtomicU64::new(self.ticks.fetch_add(1, Ordering::Relaxed)));
        self.live.fetch_add(1, Ordering::AcqRel);
        if let Some(ns) = self.me.upgrade() {
            tokio::spawn(Actor::run(ns, id, rx, Arc::clone(&last_used)));
        }
        Entry::Live {
            tx,
            last_used,
            evict_sent: false,
        }
    }

    /// Past the live bound, asks the least recently used instance to leave.
    fn enforce_bound(&self, except: &[u8; 32]) {
        if self.live.load(Ordering::Acquire) <= self.rt.max_live {
            return;
        }
        let mut best: Option<(u64, [u8; 32])> = None;
        for shard in &self.shards {
            for (k, e) in shard.lock().iter() {
                if let Entry::Live {
                    last_used,
                    evict_sent: false,
                    ..
                } = e
                {
                    let t = last_used.load(Ordering::Relaxed);
                    if k != except && best.is_none_or(|(b, _)| t < b) {
                        best = Some((t, *k));
                    }
                }
            }
        }
        if let Some((_, k)) = best
            && let Some(Entry::Live { tx, evict_sent, .. }) = self.shard(&k).lock().get_mut(&k)
        {
            *evict_sent = true;
            let _ = tx.send(Event::Evict);
        }
    }

    /// Marks the entry closing if the mailbox is empty. Returns whether the actor may stop.
    fn begin_close(&self, key: &[u8; 32], rx: &mpsc::UnboundedReceiver<Event<O>>) -> bool {
        let mut shard = self.shard(key).lock();
        if !rx.is_empty() {
            return false;
        }
        shard.insert(
            *key,
            Entry::Closing {
                pending: Vec::new(),
            },
        );
        true
    }

    /// The actor has closed: start a new one for events that arrived meanwhile, or forget
    /// the object.
    fn end_close(&self, id: &DurableObjectId) {
        let key = *id.as_bytes();
        let mut shard = self.shard(&key).lock();
        let pending = match shard.remove(&key) {
            Some(Entry::Closing { pending }) => pending,
            Some(other) => {
                shard.insert(key, other);
                Vec::new()
            }
            None => Vec::new(),
        };
        self.live.fetch_sub(1, Ordering::AcqRel);
        if !pending.is_empty() && !self.closed.load(Ordering::Acquire) {
            let entry = self.spawn(id.clone(), pending);
            shard.insert(key, entry);
        }
        drop(shard);
        self.drained.notify_waiters();
    }

    fn caller() -> (Option<Chain>, Option<Arc<ObjectStorage>>) {
        CURRENT
            .try_with(|c| (Some(Arc::clone(&c.chain)), Some(Arc::clone(&c.storage))))
            .unwrap_or((None, None))
    }

    /// Sends an event that expects a reply, applying the caller's output gate, cycle
    /// detection and the nested-call time limit.
    async fn request<T>(
        &self,
        id: &DurableObjectId,
        make: impl FnOnce(oneshot::Sender<DurableResult<T>>, Option<Arc<Vec<[u8; 32]>>>) -> Event<O>,
    ) -> DurableResult<T> {
        let (chain, caller) = Self::caller();
        if let Some(chain) = &chain
            && chain.contains(id.as_bytes())
        {
            return Err(DurableError::CallCycle {
                id: id.to_hex(),
                path: chain
                    .iter()
                    .map(|b| DurableObjectId::from_parts(*b, None).to_hex())
                    .collect::<Vec<_>>()
                    .join(" -> "),
            });
        }
        if let Some(storage) = &caller {
            // Output gate: the caller's writes so far are durable before the call leaves.
            storage.sync().await?;
        }
        let (tx, rx) = oneshot::channel();
        self.dispatch(id, make(tx, chain))?;
        match caller {
            None => rx.await.unwrap_or_else(|_| Err(lost())),
            Some(_) => {
                let clock = &self.rt.env.clock;
                let ms = self.rt.nested_call_timeout_ms;
                let deadline = clock.now_ms().saturating_add(ms);
                tokio::select! {
                    r = rx => r.unwrap_or_else(|_| Err(lost())),
                    _ = clock.sleep_until(deadline) => Err(DurableError::CallTimeout { id: id.to_hex(), ms }),
                }
            }
        }
    }
}

#[async_trait]
impl<O: DurableObject> StubTransport<O> for NsInner<O> {
    async fn call(&self, id: &DurableObjectId, request: O::Request) -> DurableResult<O::Response> {
        self.request(id, |reply, chain| Event::Call {
            request,
            reply,
            chain,
        })
        .await
    }

    async fn fetch(
        &self,
        id: &DurableObjectId,
        request: HttpRequest,
    ) -> DurableResult<HttpResponse> {
        self.request(id, |reply, chain| Event::Fetch {
            request,
            reply,
            chain,
        })
        .await
    }

    async fn connect(
        &self,
        id: &DurableObjectId,
        request: HttpRequest,
        sink: Arc<dyn ConnectionSink>,
    ) -> DurableResult<Arc<dyn InboundConnection>> {
        let limits = &self.rt.env.limits;
        let dispatch: Weak<dyn ConnDispatch> = self.me.clone();
        let rec = Arc::new(ConnRecord::new(
            self.rt.next_conn.fetch_add(1, Ordering::Relaxed),
            id.clone(),
            sink,
            limits.max_attachment_bytes,
            limits.max_message_bytes,
            Arc::clone(&self.rt.env.clock),
            dispatch,
        ));
        self.request(id, |reply, _| Event::Connect {
            rec,
            request,
            reply,
        })
        .await
    }
}

impl<O: DurableObject> ConnDispatch for NsInner<O> {
    fn auto_response(&self, object: &DurableObjectId) -> Option<(String, String)> {
        self.conns
            .lock()
            .get(object.as_bytes())
            .and_then(|c| c.auto.clone())
    }

    fn message(&self, rec: Arc<ConnRecord>, message: Message) {
        let id = rec.object.clone();
        let _ = self.dispatch(&id, Event::Message { rec, message });
    }

    fn remove(&self, object: &DurableObjectId, conn_id: u64) {
        let mut conns = self.conns.lock();
        if let Some(c) = conns.get_mut(object.as_bytes()) {
            c.list.retain(|r| r.id != conn_id);
            if c.list.is_empty() && c.auto.is_none() {
                conns.remove(object.as_bytes());
            }
        }
    }

    fn closed(&self, rec: Arc<ConnRecord>, code: u16, reason: String) {
        self.remove(&rec.object, rec.id);
        let id = rec.object.clone();
        let _ = self.dispatch(&id, Event::Close { rec, code, reason });
    }
}

async fn schedule_alarms<O: DurableObject>(ns: Weak<NsInner<O>>) {
    loop {
        let Some(inner) = ns.upgrade() else { return };
        let clock = Arc::clone(&inner.rt.env.clock);
        let queue = Arc::clone(&inner.alarms);
        for due in queue.take_due(clock.now_ms()) {
            let _ = inner.dispatch(&due.id, Event::Alarm { at_ms: due.at_ms });
        }
        let next = queue.next_at();
        drop(inner);
        let changed = queue.changed.notified();
        match next {
            Some(t) => {
                tokio::select! {
                    _ = clock.sleep_until(t) => {}
                    _ = changed => {}
                }
            }
            None => changed.await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Object state (ctx)
// ---------------------------------------------------------------------------------------------

struct Blocker {
    body: Mutex<Option<BoxFuture<'static, DurableResult<()>>>>,
    done: watch::Sender<Option<Result<(), String>>>,
}

struct StateImpl<O: DurableObject> {
    id: DurableObjectId,
    storage: Arc<ObjectStorage>,
    ns: Weak<NsInner<O>>,
    blockers: Mutex<Vec<Arc<Blocker>>>,
    reset: Arc<Mutex<Option<String>>>,
    /// Set whenever a blocker is registered or a reset requested, so that events skip
    /// those checks in the common case.
    attention: Arc<AtomicBool>,
    clock: SharedClock,
    limits: Arc<DurableLimits>,
}

async fn run_blocker(
    b: Arc<Blocker>,
    clock: SharedClock,
    timeout_ms: u64,
    reset: Arc<Mutex<Option<String>>>,
    attention: Arc<AtomicBool>,
) -> DurableResult<()> {
    let body = b.body.lock().take();
    match body {
        Some(body) => {
            let deadline = clock.now_ms().saturating_add(timeout_ms);
            let r = tokio::select! {
                r = AssertUnwindSafe(body).catch_unwind() => r.unwrap_or_else(|_| Err(DurableError::object("blockConcurrencyWhile() callback panicked"))),
                _ = clock.sleep_until(deadline) => Err(DurableError::BlockConcurrencyTimeout { ms: timeout_ms }),
            };
            if let Err(e) = &r {
                *reset.lock() = Some(format!("blockConcurrencyWhile() failed: {e}"));
                attention.store(true, Ordering::Release);
            }
            b.done
                .send_replace(Some(r.as_ref().map(|_| ()).map_err(|e| e.to_string())));
            r
        }
        None => {
            let mut rx = b.done.subscribe();
            loop {
                if let Some(r) = rx.borrow_and_update().clone() {
                    return r.map_err(|reason| DurableError::Reset { reason });
                }
                if rx.changed().await.is_err() {
                    return Err(lost());
                }
            }
        }
    }
}

impl<O: DurableObject> ObjectState for StateImpl<O> {
    fn id(&self) -> &DurableObjectId {
        &self.id
    }

    fn storage(&self) -> &dyn DurableStorage {
        &*self.storage
    }

    fn block_concurrency_while(
        &self,
        body: BoxFuture<'static, DurableResult<()>>,
    ) -> BoxFuture<'static, DurableResult<()>> {
        let b = Arc::new(Blocker {
            body: Mutex::new(Some(body)),
            done: watch::channel(None).0,
        });
        self.blockers.lock().push(Arc::clone(&b));
        self.attention.store(true, Ordering::Release);
        Box::pin(run_blocker(
            b,
            Arc::clone(&self.clock),
            self.limits.block_concurrency_timeout_ms,
            Arc::clone(&self.reset),
            Arc::clone(&self.attention),
        ))
    }

    fn get_connections(&self, tag: Option<&str>) -> Vec<Connection> {
        let Some(ns) = self.ns.upgrade() else {
            return Vec::new();
        };
        let conns = ns.conns.lock();
        conns
            .get(self.id.as_bytes())
            .map(|c| {
                c.list
                    .iter()
                    .filter(|r| !r.is_closed())
                    .filter(|r| tag.is_none_or(|t| r.tags.lock().iter().any(|x| x == t)))
                    .map(|r| Arc::clone(r) as Connection)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn set_auto_response(&self, pair: Option<(String, String)>) -> DurableResult<()> {
        if let Some((req, resp)) = &pair {
            let max = self.limits.max_auto_response_chars;
            for (what, s) in [
                ("auto-response request", req),
                ("auto-response response", resp),
            ] {
                let n = s.chars().count();
                if n > max {
                    return Err(DurableError::TooLarge {
                        what: if what.ends_with("request") {
                            "auto-response request (characters)"
                        } else {
                            "auto-response response (characters)"
                        },
                        len: n,
                        limit: max,
                    });
                }
            }
        }
        let Some(ns) = self.ns.upgrade() else {
            return Err(DurableError::Closed);
        };
        let mut conns = ns.conns.lock();
        let entry = conns.entry(*self.id.as_bytes()).or_default();
        entry.auto = pair;
        if entry.list.is_empty() && entry.auto.is_none() {
            conns.remove(self.id.as_bytes());
        }
        Ok(())
    }

    fn get_auto_response(&self) -> Option<(String, String)> {
        self.ns.upgrade().and_then(|ns| {
            ns.conns
                .lock()
                .get(self.id.as_bytes())
                .and_then(|c| c.auto.clone())
        })
    }

    fn abort(&self, reason: &str) {
        *self.reset.lock() = Some(format!("aborted: {reason}"));
        self.attention.store(true, Ordering::Release);
    }
}

// ---------------------------------------------------------------------------------------------
// Actor
// ---------------------------------------------------------------------------------------------

struct Actor<O: DurableObject> {
    ns: Arc<NsInner<O>>,
    id: DurableObjectId,
    storage: Arc<ObjectStorage>,
    state: Arc<StateImpl<O>>,
    instance: Option<O>,
    chain_self: Arc<Vec<[u8; 32]>>,
    /// Whether more events wait in the mailbox (their writes may share this one's commit).
    more: bool,
}

impl<O: DurableObject> Actor<O> {
    async fn run(
        ns: Arc<NsInner<O>>,
        id: DurableObjectId,
        mut rx: mpsc::UnboundedReceiver<Event<O>>,
        last_used: Arc<AtomicU64>,
    ) {
        let env = Arc::clone(&ns.rt.env);
        let storage = Arc::new(ObjectStorage::new(
            Arc::clone(&env),
            &ns.dir,
            Arc::clone(&ns.name),
            id.clone(),
            Arc::clone(&ns.alarms),
        ));
        let state = Arc::new(StateImpl {
            id: id.clone(),
            storage: Arc::clone(&storage),
            ns: Arc::downgrade(&ns),
            blockers: Mutex::new(Vec::new()),
            reset: Arc::new(Mutex::new(None)),
            attention: Arc::new(AtomicBool::new(false)),
            clock: Arc::clone(&env.clock),
            limits: Arc::clone(&env.limits),
        });
        let mut actor = Actor {
            chain_self: Arc::new(vec![*id.as_bytes()]),
            ns,
            id,
            storage,
            state,
            instance: None,
            more: false,
        };
        let clock = Arc::clone(&env.clock);
        let idle_ms = actor.ns.rt.idle_timeout_ms;
        let mut evict = false;
        let mut last_event = clock.now_ms();
        loop {
            let event = match rx.try_recv() {
                Ok(e) => e,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    actor.flush().await;
                    if evict && actor.ns.begin_close(actor.id.as_bytes(), &rx) {
                        break;
                    }
                    let mut deadline = last_event.saturating_add(idle_ms);
                    let mut sleep = clock.sleep_until(deadline);
                    let next = loop {
                        tokio::select! {
                            e = rx.recv() => break e,
                            _ = &mut sleep => {
                                if clock.now_ms() >= deadline {
                                    if actor.ns.begin_close(actor.id.as_bytes(), &rx) {
                                        break None;
                                    }
                                    deadline = clock.now_ms().saturating_add(idle_ms);
                                }
                                sleep = clock.sleep_until(deadline);
                            }
                        }
                    };
                    match next {
                        Some(e) => e,
                        None => break,
                    }
                }
            };
            last_used.store(
                actor.ns.ticks.fetch_add(1, Ordering::Relaxed),
                Ordering::Relaxed,
            );
            last_event = clock.now_ms();
            if matches!(event, Event::Evict) {
                evict = true;
                continue;
            }
            actor.more = !rx.is_empty();
            actor.handle(event).await;
        }
        actor.instance = None;
        let storage = Arc::clone(&actor.storage);
        // If the Tokio runtime is going away the close runs as the storage is dropped.
        let _ = run_blocking(move || storage.close()).await;
        actor.ns.end_close(&actor.id);
    }

    fn current(&self, chain: Option<&Arc<Vec<[u8; 32]>>>) -> Current {
        let chain = match chain {
            None => Arc::clone(&self.chain_self),
            Some(c) => {
                let mut v = Vec::with_capacity(c.len() + 1);
                v.extend_from_slice(c);
                v.push(*self.id.as_bytes());
                Arc::new(v)
            }
        };
        Current {
            chain,
            storage: Arc::clone(&self.storage),
        }
    }

    /// Drops the instance and the open database; the next event rebuilds both.
    async fn reset(&mut self) {
        self.instance = None;
        self.state.blockers.lock().clear();
        *self.state.reset.lock() = None;
        let storage = Arc::clone(&self.storage);
        let _ = run_blocking(move || storage.close()).await;
    }

    /// Makes sure an instance exists and no `block_concurrency_while` body is pending.
    /// Returns an error for the waiting event when the object had to be reset.
    async fn prepare(&mut self) -> DurableResult<()> {
        if self.storage.durability_failed() {
            self.reset().await;
        }
        if self.instance.is_none() {
            let state: State = Arc::clone(&self.state) as State;
            let ctor = &self.ns.ctor;
            match std::panic::catch_unwind(AssertUnwindSafe(|| ctor(state))) {
                Ok(o) => self.instance = Some(o),
                Err(_) => {
                    return Err(DurableError::object("the object's constructor panicked"));
                }
            }
        }
        if !self.state.attention.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        loop {
            let pending: Vec<Arc<Blocker>> = std::mem::take(&mut *self.state.blockers.lock());
            if pending.is_empty() {
                break;
            }
            for b in pending {
                let fut = run_blocker(
                    b,
                    Arc::clone(&self.state.clock),
                    self.state.limits.block_concurrency_timeout_ms,
                    Arc::clone(&self.state.reset),
                    Arc::clone(&self.state.attention),
                );
                let _ = CURRENT.scope(self.current(None), fut).await;
            }
        }
        let reset = self.state.reset.lock().clone();
        if let Some(reason) = reset {
            let _ = self.storage.finish_event();
            self.reset().await;
            return Err(DurableError::Reset { reason });
        }
        Ok(())
    }

    /// Ends an event: commits, resets the object if the event failed it, and returns the
    /// result to deliver.
    async fn finish<T>(&mut self, result: DurableResult<T>) -> DurableResult<T> {
        let more = self.more;
        let attention = self.state.attention.swap(false, Ordering::AcqRel);
        // A body registered during the event and not awaited runs before the event ends.
        let pending: Vec<Arc<Blocker>> = if attention {
            std::mem::take(&mut *self.state.blockers.lock())
        } else {
            Vec::new()
        };
        for b in pending {
            let fut = run_blocker(
                b,
                Arc::clone(&self.state.clock),
                self.state.limits.block_concurrency_timeout_ms,
                Arc::clone(&self.state.reset),
                Arc::clone(&self.state.attention),
            );
            let _ = CURRENT.scope(self.current(None), fut).await;
        }
        let committed = self.storage.end_event(more);
        let reset = if attention || self.state.attention.load(Ordering::Acquire) {
            self.state.reset.lock().clone()
        } else {
            None
        };
        match (committed, reset) {
            (Err(e), _) => {
                self.reset().await;
                Err(e)
            }
            (Ok(()), Some(reason)) => {
                self.reset().await;
                result.and(Err(DurableError::Reset { reason }))
            }
            (Ok(()), None) => result,
        }
    }

    /// Sends a reply through the output gate.
    fn reply<T: Send + 'static>(&self, tx: oneshot::Sender<DurableResult<T>>, r: DurableResult<T>) {
        self.storage.release(Box::new(move |ok| {
            let _ = tx.send(if ok {
                r
            } else {
                Err(DurableError::Reset {
                    reason: "a write could not be made durable; the object was reset".into(),
                })
            });
        }));
    }

    async fn run_handler<'a, T>(
        &'a mut self,
        chain: Option<&Arc<Vec<[u8; 32]>>>,
        f: impl FnOnce(&'a mut O) -> BoxFuture<'a, DurableResult<T>>,
    ) -> DurableResult<T> {
        let current = self.current(chain);
        let Some(inst) = self.instance.as_mut() else {
            return Err(lost());
        };
        let fut = f(inst);
        match CURRENT
            .scope(current, AssertUnwindSafe(fut).catch_unwind())
            .await
        {
            Ok(r) => r,
            Err(_) => {
                *self.state.reset.lock() = Some("the object's handler panicked".into());
                self.state.attention.store(true, Ordering::Release);
                Err(DurableError::object("the object's handler panicked"))
            }
        }
    }

    async fn handle(&mut self, event: Event<O>) {
        match event {
            Event::Call {
                request,
                reply,
                chain,
            } => {
                if let Err(e) = self.prepare().await {
                    return self.reply(reply, Err(e));
                }
                let r = self.run_handler(chain.as_ref(), |o| o.call(request)).await;
                let r = self.finish(r).await;
                self.reply(reply, r);
            }
            Event::Fetch {
                request,
                reply,
                chain,
            } => {
                if let Err(e) = self.prepare().await {
                    return self.reply(reply, Err(e));
                }
                let r = self.run_handler(chain.as_ref(), |o| o.fetch(request)).await;
                let r = self.finish(r).await;
                self.reply(reply, r);
            }
            Event::Connect {
                rec,
                request,
                reply,
            } => {
                if let Err(e) = self.prepare().await {
                    return self.reply(reply, Err(e));
                }
                let conn: Connection = Arc::clone(&rec) as Connection;
                let r = self
                    .run_handler(None, |o| {
                        Box::pin(async move { o.connect(&conn, request).await })
                    })
                    .await;
                let r = r.and_then(|tags| self.register(&rec, tags));
                let r = self.finish(r).await;
                self.reply(reply, r);
            }
            Event::Message { rec, message } => {
                if rec.is_closed() || self.prepare().await.is_err() {
                    return;
                }
                let conn: Connection = Arc::clone(&rec) as Connection;
                let r = self
                    .run_handler(None, |o| {
                        Box::pin(async move { o.connection_message(&conn, message).await })
                    })
                    .await;
                if let Err(e) = self.finish(r).await {
                    tracing::warn!(object = %self.id, error = %e, "connection message handler failed");
                }
            }
            Event::Close { rec, code, reason } => {
                if self.prepare().await.is_err() {
                    return;
                }
                let conn: Connection = Arc::clone(&rec) as Connection;
                let r = self
                    .run_handler(None, |o| {
                        Box::pin(async move { o.connection_close(&conn, code, &reason).await })
                    })
                    .await;
                if let Err(e) = self.finish(r).await {
                    tracing::warn!(object = %self.id, error = %e, "connection close handler failed");
                }
            }
            Event::Alarm { at_ms } => self.alarm(at_ms).await,
            Event::Evict => {}
        }
    }

    fn register(
        &self,
        rec: &Arc<ConnRecord>,
        tags: Vec<String>,
    ) -> DurableResult<Arc<dyn InboundConnection>> {
        let limits = &self.state.limits;
        if tags.len() > limits.max_tags {
            return Err(DurableError::TooLarge {
                what: "number of tags",
                len: tags.len(),
                limit: limits.max_tags,
            });
        }
        for t in &tags {
            let n = t.chars().count();
            if n > limits.max_tag_chars {
                return Err(DurableError::TooLarge {
                    what: "tag (characters)",
                    len: n,
                    limit: limits.max_tag_chars,
                });
            }
        }
        let mut conns = self.ns.conns.lock();
        let entry = conns.entry(*self.id.as_bytes()).or_default();
        entry.list.retain(|r| !r.is_closed());
        if entry.list.len() >= limits.max_connections {
            return Err(DurableError::TooLarge {
                what: "number of hibernatable connections",
                len: entry.list.len() + 1,
                limit: limits.max_connections,
            });
        }
        *rec.tags.lock() = tags;
        entry.list.push(Arc::clone(rec));
        Ok(Arc::new(Inbound {
            rec: Arc::clone(rec),
        }))
    }

    /// Drops the index hint for an alarm once the object's change is durable.
    fn drop_hint_when_durable(&self, at_ms: u64) {
        let s2 = Arc::clone(&self.storage);
        self.storage.release(Box::new(move |ok| {
            if ok {
                s2.drop_index_hint(at_ms);
            }
        }));
    }

    /// Commits writes left open by batched events once the mailbox is empty.
    async fn flush(&mut self) {
        if self.storage.finish_event().is_err() {
            self.reset().await;
        }
    }

    async fn alarm(&mut self, at_ms: u64) {
        if self.prepare().await.is_err() {
            // The alarm stays stored; requeue it so it is not lost.
            self.ns.alarms.push(crate::alarms::Due {
                at_ms: self
                    .state
                    .clock
                    .now_ms()
                    .saturating_add(self.state.limits.alarm_first_retry_ms),
                id: self.id.clone(),
            });
            return;
        }
        let now = self.state.clock.now_ms();
        let row = match self.storage.alarm_row() {
            Ok(r) => r,
            Err(_) => {
                let _ = self.finish(Ok(())).await;
                return;
            }
        };
        let (scheduled, retries) = match row {
            None => {
                self.drop_hint_when_durable(at_ms);
                return;
            }
            Some((t, _)) if t > now => {
                // Not due yet (moved later): the queue holds the new time already.
                if t != at_ms {
                    self.ns.alarms.push(crate::alarms::Due {
                        at_ms: t,
                        id: self.id.clone(),
                    });
                }
                return;
            }
            Some(r) => r,
        };
        self.storage.set_alarm_running(true);
        let info = AlarmInfo {
            retry_count: retries,
            is_retry: retries > 0,
        };
        let r = self.run_handler(None, |o| o.alarm(info)).await;
        let set_again = self.storage.alarm_set_during_run();
        self.storage.set_alarm_running(false);
        let limits = Arc::clone(&self.state.limits);
        let follow_up = if set_again {
            Ok(())
        } else if r.is_ok() || retries >= limits.alarm_max_retries {
            if let Err(e) = &r {
                tracing::warn!(object = %self.id, error = %e, retries, "alarm handler failed; retries exhausted");
            }
            self.storage.clear_alarm_row()
        } else {
            let delay = limits
                .alarm_first_retry_ms
                .saturating_mul(1u64 << retries.min(32));
            let next = self.state.clock.now_ms().saturating_add(delay);
            self.storage.write_alarm(next, retries + 1)
        };
        let r = self.finish(r.and(follow_up)).await;
        if !set_again && (r.is_ok() || retries >= limits.alarm_max_retries) {
            self.drop_hint_when_durable(scheduled);
        }
        if let Err(e) = r {
            tracing::debug!(object = %self.id, error = %e, retries, "alarm handler failed");
        }
    }
}

#[allow(dead_code)]
fn assert_send<T: Send>(_: T) {}

#[allow(dead_code)]
fn futures_are_send<O: DurableObject>(ns: Namespace<O>, id: DurableObjectId, r: O::Request)
where
    O::Request: Sync,
{
    let stub = ns.get(&id);
    assert_send(async move { stub.call(r).await });
    let _: Option<Box<dyn Future<Output = ()>>> = None;
}
