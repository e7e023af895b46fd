//! Namespaces: ids, the sharded map of live actors, stubs, connection dispatch and the
//! alarm scheduler.
//!
//! A namespace keeps a sharded map from object id to the live actor's mailbox. Senders put
//! events in the mailbox while holding the shard lock; an actor that wants to stop (idle,
//! evicted to respect the live bound, or shut down) marks its entry *closing* under the
//! same lock, and only when its mailbox is empty. Events arriving while it closes wait in
//! the entry and start a fresh actor once the old one has closed its database, so there is
//! never more than one live instance per id and no event is lost or reordered.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use bindery_core::durable::{
    ConnectionSink, DurableError, DurableNamespace, DurableObject, DurableObjectId, DurableResult,
    DurableStorage, DurableStub, HttpRequest, HttpResponse, InboundConnection, Message, State,
    StubTransport,
};
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::alarms::AlarmQueue;
use crate::connections::{ConnDispatch, ConnRecord};
use crate::ids::IdMaker;
use crate::storage::ObjectStorage;

use crate::actor::Actor;
use crate::runtime::*;

// ---------------------------------------------------------------------------------------------
// Namespace
// ---------------------------------------------------------------------------------------------

pub(crate) enum Event<O: DurableObject> {
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

pub(crate) enum Entry<O: DurableObject> {
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
pub(crate) struct ObjConns {
    pub(crate) list: Vec<Arc<ConnRecord>>,
    pub(crate) auto: Option<(String, String)>,
}

pub(crate) struct NsInner<O: DurableObject> {
    pub(crate) name: Arc<str>,
    pub(crate) dir: PathBuf,
    pub(crate) ids: IdMaker,
    pub(crate) rt: Arc<RuntimeInner>,
    pub(crate) ctor: Box<dyn Fn(State) -> O + Send + Sync>,
    pub(crate) shards: Vec<Mutex<IdMap<Entry<O>>>>,
    pub(crate) live: AtomicUsize,
    pub(crate) ticks: AtomicU64,
    pub(crate) closed: AtomicBool,
    pub(crate) drained: Notify,
    pub(crate) alarms: Arc<AlarmQueue>,
    pub(crate) conns: Mutex<IdMap<ObjConns>>,
    pub(crate) me: Weak<NsInner<O>>,
    pub(crate) scheduler: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// One namespace: a class, its ids, and the live instances of its objects.
///
/// Cloning is cheap and shares the namespace. See [`DurableNamespace`] for the contract.
pub struct Namespace<O: DurableObject> {
    pub(crate) inner: Arc<NsInner<O>>,
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

pub(crate) fn lost() -> DurableError {
    DurableError::Reset {
        reason: "the object stopped before replying".into(),
    }
}

impl<O: DurableObject> NsInner<O> {
    pub(crate) fn shard(&self, key: &[u8; 32]) -> &Mutex<IdMap<Entry<O>>> {
        &self.shards[key[31] as usize % SHARDS]
    }

    /// Puts `event` in the object's mailbox, starting an actor if none is live.
    pub(crate) fn dispatch(&self, id: &DurableObjectId, event: Event<O>) -> DurableResult<()> {
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
    pub(crate) fn spawn(&self, id: DurableObjectId, events: Vec<Event<O>>) -> Entry<O> {
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
    pub(crate) fn begin_close(
        &self,
        key: &[u8; 32],
        rx: &mpsc::UnboundedReceiver<Event<O>>,
    ) -> bool {
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
    pub(crate) fn end_close(&self, id: &DurableObjectId) {
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

pub(crate) async fn schedule_alarms<O: DurableObject>(ns: Weak<NsInner<O>>) {
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
