//! The actor that runs one live object, and the object's state (`ctx`).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bindery_core::SharedClock;
use bindery_core::durable::{
    AlarmInfo, BoxFuture, Connection, DurableError, DurableLimits, DurableNamespace, DurableObject,
    DurableObjectId, DurableResult, DurableStorage, InboundConnection, ObjectState, State,
};
use futures_util::FutureExt;
use parking_lot::Mutex;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot, watch};

use crate::connections::{ConnRecord, Inbound};
use crate::storage::ObjectStorage;

use crate::namespace::*;
use crate::runtime::*;

// ---------------------------------------------------------------------------------------------
// Object state (ctx)
// ---------------------------------------------------------------------------------------------

pub(crate) struct Blocker {
    pub(crate) body: Mutex<Option<BoxFuture<'static, DurableResult<()>>>>,
    pub(crate) done: watch::Sender<Option<Result<(), String>>>,
}

pub(crate) struct StateImpl<O: DurableObject> {
    pub(crate) id: DurableObjectId,
    pub(crate) storage: Arc<ObjectStorage>,
    pub(crate) ns: Weak<NsInner<O>>,
    pub(crate) blockers: Mutex<Vec<Arc<Blocker>>>,
    pub(crate) reset: Arc<Mutex<Option<String>>>,
    /// Set whenever a blocker is registered or a reset requested, so that events skip
    /// those checks in the common case.
    pub(crate) attention: Arc<AtomicBool>,
    pub(crate) clock: SharedClock,
    pub(crate) limits: Arc<DurableLimits>,
}

pub(crate) async fn run_blocker(
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

pub(crate) struct Actor<O: DurableObject> {
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
    pub(crate) async fn run(
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
