//! Durable Objects conformance: one function per documented behaviour (spec section 4).
//!
//! Cases drive a test class, [`Probe`], whose typed RPC requests exercise one part of the
//! contract each (storage, SQL, alarms, nested calls, connections). A backend provides a
//! [`DurableFactory`] that opens a namespace of `Probe` under the [`ManualClock`] and limits
//! of a [`DurableConfig`], plus a few hooks ([`DurableBackend`]) for what the contract alone
//! cannot reach: holding the durability of writes (to prove the output gate), failing an
//! fsync, and restarting the process state on the same storage.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bindery_core::durable::{
    AlarmInfo, Connection, ConnectionSink, DurableError, DurableLimits, DurableNamespace,
    DurableObject, DurableObjectId, DurableResult, DurableStorageExt, HttpRequest, HttpResponse,
    InboundConnection, ListOptions, Message, SqlValue, State, async_trait,
};
use bindery_core::{Clock, ManualClock};
use bytes::Bytes;

use crate::{TestResult, ensure, ensure_eq};

/// A mutex whose guard ignores poisoning (a failed case must not hide the next one).
#[derive(Default)]
pub struct Mutex<T>(std::sync::Mutex<T>);

impl<T> Mutex<T> {
    fn new(v: T) -> Self {
        Self(std::sync::Mutex::new(v))
    }

    /// Locks.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

// ---------------------------------------------------------------------------------------------
// The probe class
// ---------------------------------------------------------------------------------------------

/// What the cases ask a [`Probe`] to do.
#[derive(Debug, Clone)]
pub enum ProbeRequest {
    /// `storage.put`.
    Put(String, Bytes),
    /// `storage.get`.
    Get(String),
    /// `storage.delete`.
    Delete(String),
    /// `storage.put_many`.
    PutMany(Vec<(String, Bytes)>),
    /// `storage.get_many`.
    GetMany(Vec<String>),
    /// `storage.delete_many`.
    DeleteMany(Vec<String>),
    /// `storage.list`.
    List(ListOptions),
    /// `storage.delete_all`.
    DeleteAll,
    /// A transaction that puts the pair, then fails.
    PutInFailingTransaction(String, Bytes),
    /// A transaction that puts every pair and succeeds.
    PutInTransaction(Vec<(String, Bytes)>),
    /// `storage.exec`: answers column names and rows.
    Sql(String, Vec<SqlValue>),
    /// `exec(..).one()`.
    SqlOne(String),
    /// `storage.set_alarm`.
    SetAlarm(u64),
    /// `storage.get_alarm`.
    GetAlarm,
    /// `storage.delete_alarm`.
    DeleteAlarm,
    /// Make the next `n` alarm runs fail (stored under the key `fail_alarms`).
    FailAlarms(u32),
    /// Checks that no other handler runs, yields a few times, and answers `n`.
    Exclusive(u64),
    /// Adds to an in-memory counter and answers it (lost when the instance is rebuilt).
    Bump,
    /// Puts, then `storage.sync()`.
    PutAndSync(String, Bytes),
    /// Calls `target` with `request` through the namespace; answers its result or the error
    /// as text.
    CallOther(String, Box<ProbeRequest>),
    /// `block_concurrency_while` with a body that fails.
    BlockAndFail,
    /// `block_concurrency_while` with a body that never finishes.
    BlockForever,
    /// The object's id (hex) and name.
    Identity,
    /// Hibernatable connections (optionally with a tag): ids, tags and attachments.
    Connections(Option<String>),
    /// Sends a text message on every connection with the tag.
    Broadcast(Option<String>, String),
    /// Sets or clears the auto-response pair.
    SetAutoResponse(Option<(String, String)>),
}

/// What a [`Probe`] answers.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeResponse {
    /// Nothing to report.
    Unit,
    /// One value.
    Value(Option<Bytes>),
    /// Found values in key order.
    Values(BTreeMap<String, Bytes>),
    /// A boolean (delete).
    Bool(bool),
    /// A count.
    Count(u64),
    /// Listed pairs.
    Entries(Vec<(String, Bytes)>),
    /// SQL result.
    Rows(Vec<String>, Vec<Vec<SqlValue>>),
    /// An alarm time.
    Alarm(Option<u64>),
    /// Text (nested call outcomes).
    Text(String),
    /// Id and name.
    Identity(String, Option<String>),
    /// Connections: id, tags, attachment.
    Connections(Vec<(u64, Vec<String>, Option<Bytes>)>),
}

/// One alarm run, as the probe saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmRun {
    /// The object's id (hex).
    pub object: String,
    /// What the runtime passed.
    pub info: AlarmInfo,
    /// The clock when it ran.
    pub at_ms: u64,
    /// `get_alarm()` inside the handler.
    pub get_alarm_inside: Option<u64>,
}

/// What probes report to the cases, shared by every instance of one subject.
#[derive(Default)]
pub struct ProbeLog {
    /// Instances built so far.
    pub constructed: AtomicUsize,
    /// Alarm runs.
    pub alarms: Mutex<Vec<AlarmRun>>,
    /// Connection messages: connection id, message, attachment at delivery.
    pub messages: Mutex<Vec<(u64, Message, Option<Bytes>)>>,
    /// Connection closes: connection id, code.
    pub closes: Mutex<Vec<(u64, u16)>>,
    /// Handlers that entered a never-ending `block_concurrency_while`.
    pub blocking: AtomicUsize,
    clock: Mutex<Option<ManualClock>>,
}

type Peers = Arc<Mutex<Option<Arc<dyn DurableNamespace<Probe>>>>>;

/// What a backend needs to build probes: the constructor and the namespace binding.
#[derive(Clone)]
pub struct ProbeKit {
    /// The shared log.
    pub log: Arc<ProbeLog>,
    peers: Peers,
}

impl ProbeKit {
    fn new(clock: ManualClock) -> Self {
        let log = Arc::new(ProbeLog::default());
        *log.clock.lock() = Some(clock);
        Self {
            log,
            peers: Arc::new(Mutex::new(None)),
        }
    }

    /// The class constructor to register the namespace with.
    pub fn constructor(&self) -> impl Fn(State) -> Probe + Send + Sync + 'static {
        let log = Arc::clone(&self.log);
        let peers = Arc::clone(&self.peers);
        move |state| {
            log.constructed.fetch_add(1, Ordering::SeqCst);
            Probe {
                state,
                log: Arc::clone(&log),
                peers: Arc::clone(&peers),
                busy: Arc::new(AtomicBool::new(false)),
                counter: 0,
            }
        }
    }

    /// Tells probes which namespace they live in (for nested calls). Call after every
    /// (re)open.
    pub fn bind(&self, ns: Arc<dyn DurableNamespace<Probe>>) {
        *self.peers.lock() = Some(ns);
    }
}

/// The test class.
pub struct Probe {
    state: State,
    log: Arc<ProbeLog>,
    peers: Peers,
    busy: Arc<AtomicBool>,
    counter: u64,
}

fn text(b: &str) -> Bytes {
    Bytes::copy_from_slice(b.as_bytes())
}

#[async_trait]
impl DurableObject for Probe {
    type Request = ProbeRequest;
    type Response = ProbeResponse;

    async fn call(&mut self, request: ProbeRequest) -> DurableResult<ProbeResponse> {
        let s = self.state.storage();
        use ProbeRequest as R;
        use ProbeResponse as P;
        Ok(match request {
            R::Put(k, v) => {
                s.put(&k, v)?;
                P::Unit
            }
            R::Get(k) => P::Value(s.get(&k)?),
            R::Delete(k) => P::Bool(s.delete(&k)?),
            R::PutMany(e) => {
                s.put_many(&e)?;
                P::Unit
            }
            R::GetMany(k) => P::Values(s.get_many(&k)?),
            R::DeleteMany(k) => P::Count(s.delete_many(&k)? as u64),
            R::List(o) => P::Entries(s.list(&o)?),
            R::DeleteAll => {
                s.delete_all()?;
                P::Unit
            }
            R::PutInFailingTransaction(k, v) => {
                let r = s.transaction(&mut |t| {
                    t.put(&k, v.clone())?;
                    Err(DurableError::object("rolled back on purpose"))
                });
                P::Text(format!("{r:?}"))
            }
            R::PutInTransaction(e) => {
                s.transaction(&mut |t| {
                    for (k, v) in &e {
                        t.put(k, v.clone())?;
                    }
                    Ok(())
                })?;
                P::Unit
            }
            R::Sql(q, b) => {
                let c = s.exec(&q, &b)?;
                let cols = c.column_names().to_vec();
                P::Rows(cols, c.raw())
            }
            R::SqlOne(q) => P::Rows(Vec::new(), vec![s.exec(&q, &[])?.one()?]),
            R::SetAlarm(t) => {
                s.set_alarm(t)?;
                P::Unit
            }
            R::GetAlarm => P::Alarm(s.get_alarm()?),
            R::DeleteAlarm => {
                s.delete_alarm()?;
                P::Unit
            }
            R::FailAlarms(n) => {
                s.put_json("fail_alarms", &n)?;
                P::Unit
            }
            R::Exclusive(n) => {
                if self.busy.swap(true, Ordering::SeqCst) {
                    return Err(DurableError::object("two handlers ran at once"));
                }
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                self.busy.store(false, Ordering::SeqCst);
                P::Count(n)
            }
            R::Bump => {
                self.counter += 1;
                P::Count(self.counter)
            }
            R::PutAndSync(k, v) => {
                s.put(&k, v)?;
                s.sync().await?;
                P::Unit
            }
            R::CallOther(target, req) => {
                let ns = self
                    .peers
                    .lock()
                    .clone()
                    .ok_or_else(|| DurableError::object("probe kit not bound"))?;
                let id = ns.id_from_string(&target)?;
                match ns.get(&id).call(*req).await {
                    Ok(r) => P::Text(format!("ok: {r:?}")),
                    Err(e) => P::Text(format!("error: {e}")),
                }
            }
            R::BlockAndFail => {
                let r = self
                    .state
                    .block_concurrency_while(Box::pin(async {
                        Err(DurableError::object("initialisation failed"))
                    }))
                    .await;
                P::Text(format!("{r:?}"))
            }
            R::BlockForever => {
                self.log.blocking.fetch_add(1, Ordering::SeqCst);
                self.state
                    .block_concurrency_while(Box::pin(std::future::pending()))
                    .await?;
                P::Unit
            }
            R::Identity => P::Identity(
                self.state.id().to_hex(),
                self.state.id().name().map(str::to_owned),
            ),
            R::Connections(tag) => P::Connections(
                self.state
                    .get_connections(tag.as_deref())
                    .iter()
                    .map(|c| (c.id(), c.tags(), c.deserialize_attachment()))
                    .collect(),
            ),
            R::Broadcast(tag, msg) => {
                let conns = self.state.get_connections(tag.as_deref());
                for c in &conns {
                    c.send(Message::Text(msg.clone()))?;
                }
                P::Count(conns.len() as u64)
            }
            R::SetAutoResponse(pair) => {
                self.state.set_auto_response(pair)?;
                P::Unit
            }
        })
    }

    async fn fetch(&mut self, request: HttpRequest) -> DurableResult<HttpResponse> {
        let s = self.state.storage();
        let path = request.url.rsplit_once("/kv/").map(|(_, k)| k.to_owned());
        match (request.method.as_str(), path) {
            ("GET", Some(k)) => Ok(match s.get(&k)? {
                Some(v) => HttpResponse::ok(v),
                None => HttpResponse::new(404, "not found"),
            }),
            ("PUT", Some(k)) => {
                s.put(&k, request.body)?;
                Ok(HttpResponse::new(201, ""))
            }
            _ => Ok(HttpResponse::new(400, "bad request")),
        }
    }

    async fn alarm(&mut self, info: AlarmInfo) -> DurableResult<()> {
        let s = self.state.storage();
        let now = self
            .log
            .clock
            .lock()
            .as_ref()
            .map(|c| c.now_ms())
            .unwrap_or(0);
        self.log.alarms.lock().push(AlarmRun {
            object: self.state.id().to_hex(),
            info,
            at_ms: now,
            get_alarm_inside: s.get_alarm()?,
        });
        let fail: u32 = s.get_json("fail_alarms")?.unwrap_or(0);
        if fail > 0 {
            s.put_json("fail_alarms", &(fail - 1))?;
            return Err(DurableError::object("alarm failed on purpose"));
        }
        Ok(())
    }

    async fn connect(
        &mut self,
        connection: &Connection,
        request: HttpRequest,
    ) -> DurableResult<Vec<String>> {
        if let Some(a) = request.header("x-attachment") {
            connection.serialize_attachment(text(a))?;
        }
        if let Some(n) = request.header("x-attachment-bytes") {
            let n: usize = n
                .parse()
                .map_err(|_| DurableError::invalid("x-attachment-bytes"))?;
            connection.serialize_attachment(Bytes::from(vec![b'a'; n]))?;
        }
        Ok(request
            .header("x-tags")
            .map(|t| {
                t.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn connection_message(
        &mut self,
        connection: &Connection,
        message: Message,
    ) -> DurableResult<()> {
        self.log.messages.lock().push((
            connection.id(),
            message.clone(),
            connection.deserialize_attachment(),
        ));
        if let Message::Text(t) = message {
            self.state.storage().put("last_message", text(&t))?;
            connection.send(Message::Text(format!("echo:{t}")))?;
        }
        Ok(())
    }

    async fn connection_close(
        &mut self,
        connection: &Connection,
        code: u16,
        _reason: &str,
    ) -> DurableResult<()> {
        self.log.closes.lock().push((connection.id(), code));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Subject, backend hooks, factory
// ---------------------------------------------------------------------------------------------

/// A boxed future, as factories and hooks return.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a case needs from a backend beyond the contract.
pub trait DurableBackend: Send + Sync {
    /// The namespace of probes (a new one after each restart).
    fn namespace(&self) -> Arc<dyn DurableNamespace<Probe>>;
    /// Holds (`true`) or resumes making writes durable.
    fn hold_durability(&self, hold: bool);
    /// Makes the next `n` fsyncs fail.
    fn fail_next_syncs(&self, n: u32);
    /// Shuts the namespace down and reopens the same storage, as a process restart would.
    fn restart(&self) -> BoxFut<'_, ()>;
}

/// How a case wants the namespace configured.
pub struct DurableConfig {
    /// Limits to enforce.
    pub limits: DurableLimits,
    /// Idle time before eviction, on the clock.
    pub idle_timeout_ms: u64,
    /// Most live instances.
    pub max_live_instances: usize,
    /// Limit for calls made from inside an object, on the clock.
    pub nested_call_timeout_ms: u64,
    /// The clock the backend must use.
    pub clock: ManualClock,
    /// The constructor and binding the backend must use.
    pub kit: ProbeKit,
}

impl DurableConfig {
    fn new() -> Self {
        let clock = ManualClock::at_2026();
        Self {
            limits: DurableLimits::cloudflare(),
            idle_timeout_ms: 3_600_000,
            max_live_instances: 10_000,
            nested_call_timeout_ms: 30_000,
            kit: ProbeKit::new(clock.clone()),
            clock,
        }
    }
}

/// A namespace under test.
pub struct DurableSubject {
    /// The backend.
    pub backend: Box<dyn DurableBackend>,
    /// The clock the namespace reads.
    pub clock: ManualClock,
    /// What probes reported.
    pub log: Arc<ProbeLog>,
}

impl DurableSubject {
    /// The current namespace.
    pub fn ns(&self) -> Arc<dyn DurableNamespace<Probe>> {
        self.backend.namespace()
    }
}

/// Opens namespaces for cases.
pub trait DurableFactory: Send + Sync {
    /// A fresh namespace of [`Probe`] as `config` says.
    fn open(&self, config: DurableConfig) -> BoxFut<'_, DurableSubject>;
}

impl<F, Fut> DurableFactory for F
where
    F: Fn(DurableConfig) -> Fut + Send + Sync,
    Fut: Future<Output = DurableSubject> + Send + 'static,
{
    fn open(&self, config: DurableConfig) -> BoxFut<'_, DurableSubject> {
        Box::pin(self(config))
    }
}

/// Runs every Durable Objects case against `$factory` (an
/// `Fn(DurableConfig) -> impl Future<Output = DurableSubject>`).
#[macro_export]
macro_rules! durable_conformance {
    ($factory:expr) => {
        $crate::__expand_cases!(
            $factory,
            durable,
            [
                id_from_name_is_deterministic_and_keeps_the_name,
                names_give_distinct_ids_and_unique_ids_never_repeat,
                id_from_string_round_trips_and_rejects_foreign_or_malformed_ids,
                get_returns_a_stub_without_creating_the_object,
                events_are_handled_one_at_a_time_in_arrival_order,
                typed_rpc_and_fetch_reach_the_same_object,
                block_concurrency_while_failure_resets_the_object,
                block_concurrency_while_times_out_by_the_clock_and_resets,
                a_call_cycle_fails_with_a_clear_error_instead_of_hanging,
                calls_between_different_objects_are_served,
                a_nested_call_that_cannot_be_served_fails_after_the_limit,
                put_get_delete_round_trip,
                get_many_returns_only_found_keys_in_key_order,
                batches_over_128_keys_are_rejected_and_write_nothing,
                entries_over_the_size_limit_are_rejected_naming_the_limit,
                list_orders_keys_by_utf8_bytes,
                list_honours_start_start_after_end_prefix_reverse_and_limit,
                list_rejects_start_combined_with_start_after,
                delete_many_counts_the_keys_that_existed,
                transaction_rolls_back_when_its_body_fails,
                transaction_commits_every_write_together,
                delete_all_removes_keys_tables_and_the_alarm,
                sql_exec_binds_parameters_and_returns_rows,
                sql_exec_runs_several_statements_and_returns_the_last_ones_rows,
                sql_rejects_reserved_cf_names,
                sql_rejects_begin_and_savepoint,
                sql_errors_carry_the_sqlite_message,
                sql_cursor_one_requires_exactly_one_row,
                sql_rejects_more_than_100_bindings_and_oversized_statements,
                storage_survives_a_restart,
                a_reply_never_precedes_the_durable_write,
                a_read_after_a_pending_write_waits_for_durability,
                sync_resolves_only_when_writes_are_durable,
                a_failed_fsync_fails_the_caller_and_resets_the_object,
                alarm_fires_when_the_clock_reaches_it,
                setting_an_alarm_replaces_the_previous_one,
                deleted_alarm_does_not_fire,
                get_alarm_is_none_inside_the_handler_and_after_the_run,
                alarm_in_the_past_fires_at_once,
                failing_alarm_is_retried_with_backoff_from_2s_up_to_6_times,
                alarm_survives_a_restart_and_fires_when_due,
                idle_objects_are_evicted_and_rebuilt_from_storage,
                live_instances_are_bounded,
                connections_keep_tags_and_attachments_while_the_object_is_evicted,
                a_message_wakes_an_evicted_object,
                auto_response_answers_without_waking_the_object,
                get_connections_filters_by_tag,
                too_many_tags_are_rejected,
                attachments_over_16_kib_are_rejected,
                peer_close_reaches_the_object_and_drops_the_connection,
                messages_from_the_object_are_output_gated,
            ]
        );
    };
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

async fn open(f: &dyn DurableFactory) -> DurableSubject {
    f.open(DurableConfig::new()).await
}

async fn open_with(
    f: &dyn DurableFactory,
    edit: impl FnOnce(&mut DurableConfig),
) -> DurableSubject {
    let mut c = DurableConfig::new();
    edit(&mut c);
    f.open(c).await
}

/// Waits (bounded, real time) until `cond` holds.
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}

async fn call(s: &DurableSubject, name: &str, req: ProbeRequest) -> DurableResult<ProbeResponse> {
    let stub = s.ns().get_by_name(name);
    match tokio::time::timeout(Duration::from_secs(10), stub.call(req)).await {
        Ok(r) => r,
        Err(_) => Err(DurableError::object("the call did not finish within 10 s")),
    }
}

fn b(s: &str) -> Bytes {
    text(s)
}

/// A connection sink that records what the object sent.
#[derive(Default)]
pub struct RecordingSink {
    /// Messages sent to the peer.
    pub sent: Mutex<Vec<Message>>,
    /// Close code, if closed by the object.
    pub closed: Mutex<Option<u16>>,
}

impl ConnectionSink for RecordingSink {
    fn send(&self, message: Message) -> DurableResult<()> {
        self.sent.lock().push(message);
        Ok(())
    }
    fn close(&self, code: u16, _reason: &str) {
        *self.closed.lock() = Some(code);
    }
}

async fn connect(
    s: &DurableSubject,
    name: &str,
    tags: &str,
    attachment: Option<&str>,
) -> DurableResult<(Arc<RecordingSink>, Arc<dyn InboundConnection>)> {
    let sink = Arc::new(RecordingSink::default());
    let mut req = HttpRequest::get("/connect");
    req.headers.push(("x-tags".into(), tags.into()));
    if let Some(a) = attachment {
        req.headers.push(("x-attachment".into(), a.into()));
    }
    let inbound = s
        .ns()
        .get_by_name(name)
        .connect(req, Arc::clone(&sink) as Arc<dyn ConnectionSink>)
        .await?;
    Ok((sink, inbound))
}

/// Advances past the idle time and waits until no instance is live.
async fn evict_all(s: &DurableSubject, idle_ms: u64) -> TestResult {
    tokio::task::yield_now().await;
    s.clock.advance_ms(idle_ms + 1);
    let ns = s.ns();
    ensure!(
        eventually(|| ns.live_instances() == 0).await,
        "instances still live after the idle time: {}",
        ns.live_instances()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------------------------

/// `id_from_name` gives the same id for the same name and carries the name.
pub async fn id_from_name_is_deterministic_and_keeps_the_name(
    f: &dyn DurableFactory,
) -> TestResult {
    let s = open(f).await;
    let ns = s.ns();
    let a = ns.id_from_name("alpha");
    ensure_eq!(a, ns.id_from_name("alpha"));
    ensure_eq!(a.name(), Some("alpha"));
    ensure_eq!(a.to_hex().len(), 64);
    let r = call(&s, "alpha", ProbeRequest::Identity).await?;
    ensure_eq!(r, ProbeResponse::Identity(a.to_hex(), Some("alpha".into())));
    Ok(())
}

/// Different names give different ids; unique ids never repeat and carry no name.
pub async fn names_give_distinct_ids_and_unique_ids_never_repeat(
    f: &dyn DurableFactory,
) -> TestResult {
    let s = open(f).await;
    let ns = s.ns();
    ensure!(
        ns.id_from_name("a") != ns.id_from_name("b"),
        "names collide"
    );
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        let id = ns.new_unique_id();
        ensure!(id.name().is_none(), "unique id has a name");
        ensure!(seen.insert(id.to_hex()), "unique id repeated");
    }
    Ok(())
}

/// `id_from_string` accepts ids of this namespace and rejects malformed or foreign ones.
pub async fn id_from_string_round_trips_and_rejects_foreign_or_malformed_ids(
    f: &dyn DurableFactory,
) -> TestResult {
    let s = open(f).await;
    let ns = s.ns();
    let named = ns.id_from_name("x");
    let back = ns.id_from_string(&named.to_hex())?;
    ensure_eq!(back, named);
    ensure!(
        back.name().is_none(),
        "id_from_string must not restore the name"
    );
    let unique = ns.new_unique_id();
    ensure_eq!(ns.id_from_string(&unique.to_hex())?, unique);
    for bad in [
        "",
        "abc",
        &"g".repeat(64),
        &"0".repeat(64),
        &named.to_hex()[..63],
    ] {
        let r = ns.id_from_string(bad);
        ensure!(
            matches!(r, Err(DurableError::InvalidId { .. })),
            "{bad:?} accepted: {r:?}"
        );
    }
    // Flip one bit of a valid id: no longer an id of this namespace.
    let mut bytes = *named.as_bytes();
    bytes[0] ^= 1;
    let forged = DurableObjectId::from_parts(bytes, None).to_hex();
    ensure!(ns.id_from_string(&forged).is_err(), "forged id accepted");
    Ok(())
}

/// `get` returns a stub at once; the object is built on its first event.
pub async fn get_returns_a_stub_without_creating_the_object(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    let ns = s.ns();
    let stub = ns.get_by_name("lazy");
    ensure_eq!(stub.name(), Some("lazy"));
    ensure_eq!(ns.live_instances(), 0);
    ensure_eq!(s.log.constructed.load(Ordering::SeqCst), 0);
    stub.call(ProbeRequest::Bump).await?;
    ensure_eq!(ns.live_instances(), 1);
    ensure_eq!(s.log.constructed.load(Ordering::SeqCst), 1);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Execution
// ---------------------------------------------------------------------------------------------

/// Events run one at a time, in the order they arrived.
pub async fn events_are_handled_one_at_a_time_in_arrival_order(
    f: &dyn DurableFactory,
) -> TestResult {
    let s = open(f).await;
    let stub = s.ns().get_by_name("serial");
    let mut handles = Vec::new();
    for i in 0..200u64 {
        let stub = stub.clone();
        // Each call is dispatched when first polled: spawn in order and let it start.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        handles.push(tokio::spawn(async move {
            let fut = stub.call(ProbeRequest::Exclusive(i));
            let mut fut = std::pin::pin!(fut);
            let first =
                std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await;
            let _ = tx.send(());
            match first {
                std::task::Poll::Ready(r) => r,
                std::task::Poll::Pending => fut.await,
            }
        }));
        let _ = rx.await;
    }
    let mut order = Vec::new();
    for h in handles {
        match h.await?? {
            ProbeResponse::Count(n) => order.push(n),
            other => return Err(format!("unexpected {other:?}").into()),
        }
    }
    ensure_eq!(order, (0..200).collect::<Vec<_>>());
    // Counter bumps from concurrent callers are serialised (no lost updates).
    let mut bumps = Vec::new();
    for _ in 0..50 {
        let stub = stub.clone();
        bumps.push(tokio::spawn(
            async move { stub.call(ProbeRequest::Bump).await },
        ));
    }
    let mut seen = Vec::new();
    for h in bumps {
        if let ProbeResponse::Count(n) = h.await?? {
            seen.push(n);
        }
    }
    seen.sort_unstable();
    ensure_eq!(seen, (1..=50).collect::<Vec<_>>());
    Ok(())
}

/// Typed RPC and the fetch entry point reach the same object and storage.
pub async fn typed_rpc_and_fetch_reach_the_same_object(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    let stub = s.ns().get_by_name("both");
    stub.call(ProbeRequest::Put("k".into(), b("from rpc")))
        .await?;
    let r = stub.fetch(HttpRequest::get("https://do/kv/k")).await?;
    ensure_eq!(r.status, 200);
    ensure_eq!(r.body, b("from rpc"));
    let mut put = HttpRequest::post("https://do/kv/j", b("from fetch"));
    put.method = "PUT".into();
    ensure_eq!(stub.fetch(put).await?.status, 201);
    ensure_eq!(
        stub.call(ProbeRequest::Get("j".into())).await?,
        ProbeResponse::Value(Some(b("from fetch")))
    );
    ensure_eq!(
        stub.fetch(HttpRequest::get("https://do/kv/none"))
            .await?
            .status,
        404
    );
    Ok(())
}

/// A failing `block_concurrency_while` body resets the object (in-memory state is lost).
pub async fn block_concurrency_while_failure_resets_the_object(
    f: &dyn DurableFactory,
) -> TestResult {
    let s = open(f).await;
    ensure_eq!(
        call(&s, "bcw", ProbeRequest::Bump).await?,
        ProbeResponse::Count(1)
    );
    let r = call(&s, "bcw", ProbeRequest::BlockAndFail).await;
    ensure!(
        r.is_err(),
        "event that failed block_concurrency_while succeeded: {r:?}"
    );
    ensure_eq!(
        call(&s, "bcw", ProbeRequest::Bump).await?,
        ProbeResponse::Count(1)
    );
    ensure_eq!(s.log.constructed.load(Ordering::SeqCst), 2);
    Ok(())
}

/// A `block_concurrency_while` body past the 30 s limit (on the clock) fails and resets.
pub async fn block_concurrency_while_times_out_by_the_clock_and_resets(
    f: &dyn DurableFactory,
) -> TestResult {
    let s = open(f).await;
    ensure_eq!(
        call(&s, "slow", ProbeRequest::Bump).await?,
        ProbeResponse::Count(1)
    );
    let stub = s.ns().get_by_name("slow");
    let pending = tokio::spawn(async move { stub.call(ProbeRequest::BlockForever).await });
    ensure!(
        eventually(|| s.log.blocking.load(Ordering::SeqCst) == 1).await,
        "the blocking handler never ran"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    ensure!(
        !pending.is_finished(),
        "blocked call finished before the limit"
    );
    s.clock.advance_ms(29_000);
    tokio::time::sleep(Duration::from_millis(20)).await;
    ensure!(!pending.is_finished(), "blocked call finished before 30 s");
    s.clock.advance_ms(1_001);
    let r = tokio::time::timeout(Duration::from_secs(10), pending).await??;
    ensure!(
        matches!(
            r,
            Err(DurableError::BlockConcurrencyTimeout { .. }) | Err(DurableError::Reset { .. })
        ),
        "expected a timeout, got {r:?}"
    );
    ensure_eq!(
        call(&s, "slow", ProbeRequest::Bump).await?,
        ProbeResponse::Count(1)
    );
    Ok(())
}

/// A -> B -> A: the inner call fails with a clear error instead of hanging forever.
pub async fn a_call_cycle_fails_with_a_clear_error_instead_of_hanging(
    f: &dyn DurableFactory,
) -> TestResult {
    let s = open(f).await;
    let ns = s.ns();
    let a = ns.id_from_name("A").to_hex();
    let bb = ns.id_from_name("B").to_hex();
    let inner = ProbeRequest::CallOther(a.clone(), Box::new(ProbeRequest::Bump));
    let r = call(&s, "A", ProbeRequest::CallOther(bb, Box::new(inner))).await?;
    let ProbeResponse::Text(t) = r else {
        return Err(format!("unexpected {r:?}").into());
    };
    ensure!(t.contains("cycle"), "expected a call-cycle error, got {t}");
    // A self-call is the shortest cycle.
    let r = call(
        &s,
        "A",
        ProbeRequest::CallOther(a, Box::new(ProbeRequest::Bump)),
    )
    .await?;
    ensure!(
        matches!(&r, ProbeResponse::Text(t) if t.contains("cycle")),
        "self call: {r:?}"
    );
    Ok(())
}

/// A call from one object to another is served.
pub async fn calls_between_different_objects_are_served(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    let bb = s.ns().id_from_name("B").to_hex();
    let r = call(
        &s,
        "A",
        ProbeRequest::CallOther(bb, Box::new(ProbeRequest::Put("k".into(), b("v")))),
    )
    .await?;
    ensure_eq!(r, ProbeResponse::Text("ok: Unit".into()));
    ensure_eq!(
        call(&s, "B", ProbeRequest::Get("k".into())).await?,
        ProbeResponse::Value(Some(b("v")))
    );
    ensure_eq!(
        call(&s, "A", ProbeRequest::Get("k".into())).await?,
        ProbeResponse::Value(None)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Storage: KV
// ---------------------------------------------------------------------------------------------

/// put, get and delete behave as a map; delete reports whether the key existed.
pub async fn put_get_delete_round_trip(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    ensure_eq!(
        call(&s, "o", ProbeRequest::Get("k".into())).await?,
        ProbeResponse::Value(None)
    );
    call(&s, "o", ProbeRequest::Put("k".into(), b("v1"))).await?;
    call(&s, "o", ProbeRequest::Put("k".into(), b("v2"))).await?;
    ensure_eq!(
        call(&s, "o", ProbeRequest::Get("k".into())).await?,
        ProbeResponse::Value(Some(b("v2")))
    );
    ensure_eq!(
        call(&s, "o", ProbeRequest::Delete("k".into())).await?,
        ProbeResponse::Bool(true)
    );
    ensure_eq!(
        call(&s, "o", ProbeRequest::Delete("k".into())).await?,
        ProbeResponse::Bool(false)
    );
    ensure_eq!(
        call(&s, "o", ProbeRequest::Get("k".into())).await?,
        ProbeResponse::Value(None)
    );
    // Storage is private to each object.
    call(&s, "o", ProbeRequest::Put("mine".into(), b("x"))).await?;
    ensure_eq!(
        call(&s, "p", ProbeRequest::Get("mine".into())).await?,
        ProbeResponse::Value(None)
    );
    Ok(())
}

/// `get_many` answers only the keys found, sorted by key.
pub async fn get_many_returns_only_found_keys_in_key_order(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    call(
        &s,
        "o",
        ProbeRequest::PutMany(vec![("b".into(), b("2")), ("a".into(), b("1"))]),
    )
    .await?;
    let r = call(
        &s,
        "o",
        ProbeRequest::GetMany(vec!["b".into(), "zz".into(), "a".into()]),
    )
    .await?;
    let ProbeResponse::Values(m) = r else {
        return Err(format!("unexpected {r:?}").into());
    };
    ensure_eq!(
        m.keys().cloned().collect::<Vec<_>>(),
        vec!["a".to_owned(), "b".to_owned()]
    );
    Ok(())
}

/// More than 128 keys in one call is an error, and nothing is written.
pub async fn batches_over_128_keys_are_rejected_and_write_nothing(
    f: &dyn DurableFactory,
) -> TestResult {
    let s = open(f).await;
    let entries: Vec<(String, Bytes)> = (0..129).map(|i| (format!("k{i:03}"), b("v"))).collect();
    let r = call(&s, "o", ProbeRequest::PutMany(entries.clone())).await;
    ensure!(
        matches!(
            r,
            Err(DurableError::TooManyKeys {
                count: 129,
                limit: 128
            })
        ),
        "expected TooManyKeys, got {r:?}"
    );
    ensure_eq!(
        call(&s, "o", ProbeRequest::Get("k000".into())).await?,
        ProbeResponse::Value(None)
    );
    call(&s, "o", ProbeRequest::PutMany(entries[..128].to_vec())).await?;
    let keys: Vec<String> = entries.iter().map(|(k, _)| k.clone()).collect();
    ensure!(
        call(&s, "o", ProbeRequest::GetMany(keys.clone()))
            .await
            .is_err(),
        "get 129 accepted"
    );
    ensure!(
        call(&s, "o", ProbeRequest::DeleteMany(keys)).await.is_err(),
        "delete 129 accepted"
    );
    Ok(())
}

/// Key plus value over 2 MiB is rejected with the size and the limit.
pub async fn entries_over_the_size_limit_are_rejected_naming_the_limit(
    f: &dyn DurableFactory,
) -> TestResult {
    let s = open(f).await;
    let limit = DurableLimits::cloudflare().max_entry_bytes;
    let big = Bytes::from(vec![7u8; limit]);
    let r = call(&s, "o", ProbeRequest::Put("k".into(), big)).await;
    match r {
        Err(e @ DurableError::EntryTooLarge { .. }) => {
            let msg = e.to_string();
            ensure!(
                msg.contains(&limit.to_string()),
                "message lacks the limit: {msg}"
            );
            ensure!(
                msg.contains(&(limit + 1).to_string()),
                "message lacks the size: {msg}"
            );
        }
        other => return Err(format!("expected EntryTooLarge, got {other:?}").into()),
    }
    ensure_eq!(
        call(&s, "o", ProbeRequest::Get("k".into())).await?,
        ProbeResponse::Value(None)
    );
    let fits = Bytes::from(vec![7u8; limit - 1]);
    call(&s, "o", ProbeRequest::Put("k".into(), fits)).await?;
    Ok(())
}

fn keys_of(r: ProbeResponse) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>> {
    match r {
        ProbeResponse::Entries(e) => Ok(e.into_iter().map(|(k, _)| k).collect()),
        other => Err(format!("unexpected {other:?}").into()),
    }
}

/// `list` orders keys by their UTF-8 bytes.
pub async fn list_orders_keys_by_utf8_bytes(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    let keys = ["b", "a", "B", "\u{e9}", "a\u{0}", "\u{1f600}", "aa"];
    call(
        &s,
        "o",
        ProbeRequest::PutMany(keys.iter().map(|k| (k.to_string(), b("v"))).collect()),
    )
    .await?;
    let mut expected: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    expected.sort_by(|x, y| x.as_bytes().cmp(y.as_bytes()));
    ensure_eq!(
        keys_of(call(&s, "o", ProbeRequest::List(ListOptions::default())).await?)?,
        expected
    );
    Ok(())
}

/// `list` options: start inclusive, start_after exclusive, end exclusive, prefix, reverse
/// (which does not swap start and end) and limit.
pub async fn list_honours_start_start_after_end_prefix_reverse_and_limit(
    f: &dyn DurableFactory,
) -> TestResult {
    let s = open(f).await;
    let keys = ["a", "b", "c", "d", "pre1", "pre2", "prf"];
    call(
        &s,
        "o",
        ProbeRequest::PutMany(keys.iter().map(|k| (k.to_string(), b(k))).collect()),
    )
    .await?;
    let list = |o: ListOptions| call(&s, "o", ProbeRequest::List(o));
    let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    ensure_eq!(
        keys_of(
            list(ListOptions {
                start: Some("b".into()),
                end: Some("d".into()),
                ..Default::default()
            })
            .await?
        )?,
        v(&["b", "c"])
    );
    ensure_eq!(
        keys_of(
            list(ListOptions {
                start_after: Some("b".into()),
                end: Some("d".into()),
                ..Default::default()
            })
            .await?
        )?,
        v(&["c"])
    );
    ensure_eq!(
        keys_of(
            list(ListOptions {
                prefix: Some("pre".into()),
                ..Default::default()
            })
            .await?
        )?,
        v(&["pre1", "pre2"])
    );
    ensure_eq!(
        keys_of(
            list(ListOptions {
                start: Some("b".into()),
                end: Some("pre2".into()),
                reverse: true,
                ..Default::default()
            })
            .await?
        )?,
        v(&["pre1", "d", "c", "b"])
    );
    ensure_eq!(
        keys_of(
            list(ListOptions {
                reverse: true,
                limit: Some(2),
                ..Default::default()
            })
            .await?
        )?,
        v(&["prf", "pre2"])
    );
    ensure_eq!(
        keys_of(
            list(ListOptions {
                limit: Some(3),
                ..Default::default()
            })
            .await?
        )?,
        v(&["a", "b", "c"])
    );
    let r = list(ListOptions::default()).await?;
    ensure!(
        matches!(&r, ProbeResponse::Entries(e) if e[0] == ("a".to_string(), b("a"))),
        "values not listed: {r:?}"
    );
    Ok(())
}

/// `start` and `start_after` cannot be combined.
pub async fn list_rejects_start_combined_with_start_after(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    let r = call(
        &s,
        "o",
        ProbeRequest::List(ListOptions {
            start: Some("a".into()),
            start_after: Some("a".into()),
            ..Default::default()
        }),
    )
    .await;
    ensure!(
        matches!(r, Err(DurableError::InvalidInput { .. })),
        "accepted: {r:?}"
    );
    Ok(())
}

/// `delete_many` answers how many of the keys existed.
pub async fn delete_many_counts_the_keys_that_existed(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    call(
        &s,
        "o",
        ProbeRequest::PutMany(vec![("a".into(), b("1")), ("b".into(), b("2"))]),
    )
    .await?;
    let r = call(
        &s,
        "o",
        ProbeRequest::DeleteMany(vec!["a".into(), "b".into(), "c".into()]),
    )
    .await?;
    ensure_eq!(r, ProbeResponse::Count(2));
    Ok(())
}

/// A transaction whose body fails leaves no trace.
pub async fn transaction_rolls_back_when_its_body_fails(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    call(&s, "o", ProbeRequest::Put("k".into(), b("before"))).await?;
    let r = call(
        &s,
        "o",
        ProbeRequest::PutInFailingTransaction("k".into(), b("inside")),
    )
    .await?;
    ensure!(
        matches!(&r, ProbeResponse::Text(t) if t.contains("Err")),
        "body error lost: {r:?}"
    );
    ensure_eq!(
        call(&s, "o", ProbeRequest::Get("k".into())).await?,
        ProbeResponse::Value(Some(b("before")))
    );
    Ok(())
}

/// A transaction's writes all apply.
pub async fn transaction_commits_every_write_together(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    call(
        &s,
        "o",
        ProbeRequest::PutInTransaction(vec![("x".into(), b("1")), ("y".into(), b("2"))]),
    )
    .await?;
    let r = call(&s, "o", ProbeRequest::GetMany(vec!["x".into(), "y".into()])).await?;
    ensure!(
        matches!(&r, ProbeResponse::Values(m) if m.len() == 2),
        "got {r:?}"
    );
    Ok(())
}

/// `delete_all` wipes KV data, SQL tables and the alarm.
pub async fn delete_all_removes_keys_tables_and_the_alarm(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    call(&s, "o", ProbeRequest::Put("k".into(), b("v"))).await?;
    call(
        &s,
        "o",
        ProbeRequest::Sql(
            "CREATE TABLE t (x); INSERT INTO t VALUES (1)".into(),
            vec![],
        ),
    )
    .await?;
    let at = s.clock.now_ms() + 60_000;
    call(&s, "o", ProbeRequest::SetAlarm(at)).await?;
    call(&s, "o", ProbeRequest::DeleteAll).await?;
    ensure_eq!(
        call(&s, "o", ProbeRequest::Get("k".into())).await?,
        ProbeResponse::Value(None)
    );
    ensure_eq!(
        call(&s, "o", ProbeRequest::GetAlarm).await?,
        ProbeResponse::Alarm(None)
    );
    let r = call(&s, "o", ProbeRequest::Sql("SELECT * FROM t".into(), vec![])).await;
    ensure!(r.is_err(), "table survived delete_all: {r:?}");
    s.clock.advance_ms(61_000);
    tokio::time::sleep(Duration::from_millis(50)).await;
    ensure!(s.log.alarms.lock().is_empty(), "deleted alarm fired");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Storage: SQL
// ---------------------------------------------------------------------------------------------

/// `exec` binds `?` parameters and returns column names and rows.
pub async fn sql_exec_binds_parameters_and_returns_rows(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    call(
        &s,
        "o",
        ProbeRequest::Sql(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, pic BLOB)".into(),
            vec![],
        ),
    )
    .await?;
    for (i, n) in [(1, "ann"), (2, "bob")] {
        call(
            &s,
            "o",
            ProbeRequest::Sql(
                "INSERT INTO users VALUES (?, ?, ?)".into(),
                vec![
                    SqlValue::Integer(i),
                    SqlValue::Text(n.into()),
                    SqlValue::Blob(vec![i as u8]),
                ],
            ),
        )
        .await?;
    }
    let r = call(
        &s,
        "o",
        ProbeRequest::Sql(
            "SELECT id, name, pic FROM users WHERE id >= ? ORDER BY id".into(),
            vec![SqlValue::Integer(1)],
        ),
    )
    .await?;
    ensure_eq!(
        r,
        ProbeResponse::Rows(
            vec!["id".into(), "name".into(), "pic".into()],
            vec![
                vec![
                    SqlValue::Integer(1),
                    SqlValue::Text("ann".into()),
                    SqlValue::Blob(vec![1])
                ],
                vec![
                    SqlValue::Integer(2),
                    SqlValue::Text("bob".into()),
                    SqlValue::Blob(vec![2])
                ],
            ]
        )
    );
    Ok(())
}

/// Several `;`-separated statements run; the cursor holds the last one's rows.
pub async fn sql_exec_runs_several_statements_and_returns_the_last_ones_rows(
    f: &dyn DurableFactory,
) -> TestResult {
    let s = open(f).await;
    let r = call(
        &s,
        "o",
        ProbeRequest::Sql(
            "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2); SELECT x FROM t WHERE x > ?".into(),
            vec![SqlValue::Integer(1)],
        ),
    )
    .await?;
    ensure_eq!(
        r,
        ProbeResponse::Rows(vec!["x".into()], vec![vec![SqlValue::Integer(2)]])
    );
    Ok(())
}

/// Names starting with `_cf_` are reserved.
pub async fn sql_rejects_reserved_cf_names(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    call(&s, "o", ProbeRequest::Put("k".into(), b("v"))).await?;
    for q in [
        "SELECT * FROM _cf_KV",
        "CREATE TABLE _cf_mine (x)",
        "DELETE FROM _CF_KV",
        "DROP TABLE _cf_KV",
    ] {
        let r = call(&s, "o", ProbeRequest::Sql(q.into(), vec![])).await;
        ensure!(
            matches!(r, Err(DurableError::ReservedName { .. })),
            "{q}: {r:?}"
        );
    }
    ensure_eq!(
        call(&s, "o", ProbeRequest::Get("k".into())).await?,
        ProbeResponse::Value(Some(b("v")))
    );
    Ok(())
}

/// `BEGIN` and `SAVEPOINT` are rejected with the platform's message.
pub async fn sql_rejects_begin_and_savepoint(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    for q in ["BEGIN TRANSACTION", "SAVEPOINT sp", "COMMIT", "ROLLBACK"] {
        let r = call(&s, "o", ProbeRequest::Sql(q.into(), vec![])).await;
        match r {
            Err(e @ DurableError::TransactionStatement) => {
                ensure!(e.to_string().contains("transaction()"), "message: {e}");
            }
            other => return Err(format!("{q}: expected rejection, got {other:?}").into()),
        }
    }
    Ok(())
}

/// SQL errors carry SQLite's message, and do not reset the object.
pub async fn sql_errors_carry_the_sqlite_message(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    call(&s, "o", ProbeRequest::Bump).await?;
    let r = call(
        &s,
        "o",
        ProbeRequest::Sql("SELECT * FROM missing".into(), vec![]),
    )
    .await;
    match r {
        Err(DurableError::Sql { message }) => {
            ensure!(message.contains("no such table"), "message: {message}")
        }
        other => return Err(format!("expected an SQL error, got {other:?}").into()),
    }
    ensure_eq!(
        call(&s, "o", ProbeRequest::Bump).await?,
        ProbeResponse::Count(2)
    );
    Ok(())
}

/// `one()` fails unless exactly one row came back.
pub async fn sql_cursor_one_requires_exactly_one_row(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    call(
        &s,
        "o",
        ProbeRequest::Sql(
            "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)".into(),
            vec![],
        ),
    )
    .await?;
    ensure!(
        call(&s, "o", ProbeRequest::SqlOne("SELECT x FROM t".into()))
            .await
            .is_err(),
        "two rows accepted"
    );
    ensure!(
        call(
            &s,
            "o",
            ProbeRequest::SqlOne("SELECT x FROM t WHERE x > 5".into())
        )
        .await
        .is_err(),
        "no rows accepted"
    );
    let r = call(
        &s,
        "o",
        ProbeRequest::SqlOne("SELECT x FROM t WHERE x = 2".into()),
    )
    .await?;
    ensure_eq!(
        r,
        ProbeResponse::Rows(vec![], vec![vec![SqlValue::Integer(2)]])
    );
    Ok(())
}

/// KV and SQL data survive shutting the namespace down and reopening it.
pub async fn storage_survives_a_restart(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    call(&s, "o", ProbeRequest::Put("k".into(), b("kept"))).await?;
    call(
        &s,
        "o",
        ProbeRequest::Sql(
            "CREATE TABLE t (x); INSERT INTO t VALUES (42)".into(),
            vec![],
        ),
    )
    .await?;
    s.backend.restart().await;
    ensure_eq!(
        call(&s, "o", ProbeRequest::Get("k".into())).await?,
        ProbeResponse::Value(Some(b("kept")))
    );
    ensure_eq!(
        call(&s, "o", ProbeRequest::Sql("SELECT x FROM t".into(), vec![])).await?,
        ProbeResponse::Rows(vec!["x".into()], vec![vec![SqlValue::Integer(42)]])
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Output gate
// ---------------------------------------------------------------------------------------------

/// While the write is not durable, its reply does not leave; once durable, it does.
pub async fn a_reply_never_precedes_the_durable_write(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    call(&s, "o", ProbeRequest::Bump).await?;
    s.backend.hold_durability(true);
    let stub = s.ns().get_by_name("o");
    let put = tokio::spawn(async move { stub.call(ProbeRequest::Put("k".into(), b("v"))).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let early = put.is_finished();
    s.backend.hold_durability(false);
    ensure!(!early, "the reply left before the write was durable");
    let r = tokio::time::timeout(Duration::from_secs(10), put).await??;
    ensure_eq!(r?, ProbeResponse::Unit);
    Ok(())
}

/// A read that follows a write still waiting for durability waits too (its answer depends on
/// that write).
pub async fn a_read_after_a_pending_write_waits_for_durability(
    f: &dyn DurableFactory,
) -> TestResult {
    let s = open(f).await;
    call(&s, "o", ProbeRequest::Bump).await?;
    s.backend.hold_durability(true);
    let stub = s.ns().get_by_name("o");
    let st = stub.clone();
    let put = tokio::spawn(async move { st.call(ProbeRequest::Put("k".into(), b("v"))).await });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let get = tokio::spawn(async move { stub.call(ProbeRequest::Get("k".into())).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let early = get.is_finished() || put.is_finished();
    s.backend.hold_durability(false);
    ensure!(!early, "a reply left before the earlier write was durable");
    tokio::time::timeout(Duration::from_secs(10), put).await???;
    let r = tokio::time::timeout(Duration::from_secs(10), get).await???;
    ensure_eq!(r, ProbeResponse::Value(Some(b("v"))));
    Ok(())
}

/// `sync()` resolves only when the writes are durable.
pub async fn sync_resolves_only_when_writes_are_durable(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    call(&s, "o", ProbeRequest::Bump).await?;
    s.backend.hold_durability(true);
    let stub = s.ns().get_by_name("o");
    let h = tokio::spawn(async move {
        stub.call(ProbeRequest::PutAndSync("k".into(), b("v")))
            .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let early = h.is_finished();
    s.backend.hold_durability(false);
    ensure!(!early, "sync() resolved before durability");
    tokio::time::timeout(Duration::from_secs(10), h).await???;
    Ok(())
}

/// When making a write durable fails, the caller gets an error (never a reply built on the
/// lost write) and the object is reset.
pub async fn a_failed_fsync_fails_the_caller_and_resets_the_object(
    f: &dyn DurableFactory,
) -> TestResult {
    let s = open(f).await;
    ensure_eq!(
        call(&s, "o", ProbeRequest::Bump).await?,
        ProbeResponse::Count(1)
    );
    call(&s, "o", ProbeRequest::Put("a".into(), b("1"))).await?;
    s.backend.fail_next_syncs(100);
    let r = call(&s, "o", ProbeRequest::Put("k".into(), b("v"))).await;
    s.backend.fail_next_syncs(0);
    ensure!(
        r.is_err(),
        "a write whose fsync failed was acknowledged: {r:?}"
    );
    let constructed = s.log.constructed.load(Ordering::SeqCst);
    ensure_eq!(
        call(&s, "o", ProbeRequest::Bump).await?,
        ProbeResponse::Count(1)
    );
    ensure_eq!(s.log.constructed.load(Ordering::SeqCst), constructed + 1);
    ensure_eq!(
        call(&s, "o", ProbeRequest::Get("a".into())).await?,
        ProbeResponse::Value(Some(b("1")))
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Alarms
// ---------------------------------------------------------------------------------------------

async fn alarm_runs_reach(s: &DurableSubject, n: usize) -> bool {
    eventually(|| s.log.alarms.lock().len() >= n).await
}

/// The alarm runs once the clock reaches its time, not before.
pub async fn alarm_fires_when_the_clock_reaches_it(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    let at = s.clock.now_ms() + 60_000;
    call(&s, "o", ProbeRequest::SetAlarm(at)).await?;
    ensure_eq!(
        call(&s, "o", ProbeRequest::GetAlarm).await?,
        ProbeResponse::Alarm(Some(at))
    );
    s.clock.advance_ms(59_999);
    tokio::time::sleep(Duration::from_millis(50)).await;
    ensure!(s.log.alarms.lock().is_empty(), "alarm fired early");
    s.clock.advance_ms(1);
    ensure!(alarm_runs_reach(&s, 1).await, "alarm did not fire");
    let run = s.log.alarms.lock()[0].clone();
    ensure_eq!(
        run.info,
        AlarmInfo {
            retry_count: 0,
            is_retry: false
        }
    );
    ensure_eq!(run.object, s.ns().id_from_name("o").to_hex());
    tokio::time::sleep(Duration::from_millis(50)).await;
    ensure_eq!(s.log.alarms.lock().len(), 1);
    Ok(())
}

/// `set_alarm` replaces the previous alarm.
pub async fn setting_an_alarm_replaces_the_previous_one(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    let now = s.clock.now_ms();
    call(&s, "o", ProbeRequest::SetAlarm(now + 10_000)).await?;
    call(&s, "o", ProbeRequest::SetAlarm(now + 20_000)).await?;
    ensure_eq!(
        call(&s, "o", ProbeRequest::GetAlarm).await?,
        ProbeResponse::Alarm(Some(now + 20_000))
    );
    s.clock.advance_ms(15_000);
    tokio::time::sleep(Duration::from_millis(50)).await;
    ensure!(s.log.alarms.lock().is_empty(), "replaced alarm fired");
    s.clock.advance_ms(5_000);
    ensure!(alarm_runs_reach(&s, 1).await, "new alarm did not fire");
    tokio::time::sleep(Duration::from_millis(50)).await;
    ensure_eq!(s.log.alarms.lock().len(), 1);
    Ok(())
}

/// A deleted alarm does not run.
pub async fn deleted_alarm_does_not_fire(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    call(&s, "o", ProbeRequest::SetAlarm(s.clock.now_ms() + 1_000)).await?;
    call(&s, "o", ProbeRequest::DeleteAlarm).await?;
    ensure_eq!(
        call(&s, "o", ProbeRequest::GetAlarm).await?,
        ProbeResponse::Alarm(None)
    );
    s.clock.advance_ms(5_000);
    tokio::time::sleep(Duration::from_millis(80)).await;
    ensure!(s.log.alarms.lock().is_empty(), "deleted alarm fired");
    Ok(())
}

/// Inside the handler `get_alarm` is `None` (no `set_alarm` since it started); after a
/// successful run the alarm is cleared.
pub async fn get_alarm_is_none_inside_the_handler_and_after_the_run(
    f: &dyn DurableFactory,
) -> TestResult {
    let s = open(f).await;
    call(&s, "o", ProbeRequest::SetAlarm(s.clock.now_ms() + 1_000)).await?;
    s.clock.advance_ms(1_000);
    ensure!(alarm_runs_reach(&s, 1).await, "alarm did not fire");
    ensure_eq!(s.log.alarms.lock()[0].get_alarm_inside, None);
    ensure_eq!(
        call(&s, "o", ProbeRequest::GetAlarm).await?,
        ProbeResponse::Alarm(None)
    );
    Ok(())
}

/// An alarm set in the past runs at once.
pub async fn alarm_in_the_past_fires_at_once(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    call(&s, "o", ProbeRequest::SetAlarm(s.clock.now_ms() - 5_000)).await?;
    ensure!(alarm_runs_reach(&s, 1).await, "past alarm did not fire");
    Ok(())
}

/// A failing handler is retried after 2 s, 4 s, 8 s, ... up to 6 retries, with the retry
/// count and `is_retry` passed to the handler; then it stops.
pub async fn failing_alarm_is_retried_with_backoff_from_2s_up_to_6_times(
    f: &dyn DurableFactory,
) -> TestResult {
    let s = open(f).await;
    call(&s, "o", ProbeRequest::FailAlarms(100)).await?;
    let start = s.clock.now_ms() + 1_000;
    call(&s, "o", ProbeRequest::SetAlarm(start)).await?;
    s.clock.advance_ms(1_000);
    ensure!(alarm_runs_reach(&s, 1).await, "first run missing");
    for retry in 1..=6u32 {
        let delay = 2_000u64 << (retry - 1);
        let ran_at = s.log.alarms.lock().last().map(|r| r.at_ms).unwrap_or(0);
        // Just before the backoff ends: no retry yet.
        s.clock.set_ms(ran_at + delay - 1);
        tokio::time::sleep(Duration::from_millis(30)).await;
        ensure_eq!(s.log.alarms.lock().len(), retry as usize);
        s.clock.set_ms(ran_at + delay);
        ensure!(
            alarm_runs_reach(&s, retry as usize + 1).await,
            "retry {retry} missing"
        );
        let expected_at = ran_at + delay;
        let last = s.log.alarms.lock().last().cloned().ok_or("no run")?;
        ensure_eq!(
            last.info,
            AlarmInfo {
                retry_count: retry,
                is_retry: true
            }
        );
        ensure_eq!(last.at_ms, expected_at);
    }
    s.clock.advance_ms(10 * 60_000);
    tokio::time::sleep(Duration::from_millis(80)).await;
    ensure_eq!(s.log.alarms.lock().len(), 7);
    ensure_eq!(
        call(&s, "o", ProbeRequest::GetAlarm).await?,
        ProbeResponse::Alarm(None)
    );
    Ok(())
}

/// An alarm set before a restart fires after it, once due (at once if it came due while
/// the namespace was down).
pub async fn alarm_survives_a_restart_and_fires_when_due(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    let now = s.clock.now_ms();
    call(&s, "early", ProbeRequest::SetAlarm(now + 10_000)).await?;
    call(&s, "late", ProbeRequest::SetAlarm(now + 100_000)).await?;
    s.backend.restart().await;
    s.clock.advance_ms(20_000);
    ensure!(
        alarm_runs_reach(&s, 1).await,
        "alarm lost across the restart"
    );
    ensure_eq!(
        s.log.alarms.lock()[0].object,
        s.ns().id_from_name("early").to_hex()
    );
    s.backend.restart().await;
    ensure_eq!(s.log.alarms.lock().len(), 1);
    s.clock.advance_ms(80_000);
    ensure!(
        alarm_runs_reach(&s, 2).await,
        "second alarm lost across restarts"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Eviction
// ---------------------------------------------------------------------------------------------

/// After the idle time the instance leaves memory; the next event rebuilds it, with its
/// storage intact.
pub async fn idle_objects_are_evicted_and_rebuilt_from_storage(
    f: &dyn DurableFactory,
) -> TestResult {
    let s = open_with(f, |c| c.idle_timeout_ms = 10_000).await;
    call(&s, "o", ProbeRequest::Put("k".into(), b("v"))).await?;
    ensure_eq!(
        call(&s, "o", ProbeRequest::Bump).await?,
        ProbeResponse::Count(1)
    );
    ensure_eq!(s.ns().live_instances(), 1);
    s.clock.advance_ms(9_000);
    tokio::time::sleep(Duration::from_millis(30)).await;
    ensure_eq!(s.ns().live_instances(), 1);
    evict_all(&s, 1_000).await?;
    ensure_eq!(
        call(&s, "o", ProbeRequest::Bump).await?,
        ProbeResponse::Count(1)
    );
    ensure_eq!(s.log.constructed.load(Ordering::SeqCst), 2);
    ensure_eq!(
        call(&s, "o", ProbeRequest::Get("k".into())).await?,
        ProbeResponse::Value(Some(b("v")))
    );
    Ok(())
}

/// The number of live instances stays within the configured bound.
pub async fn live_instances_are_bounded(f: &dyn DurableFactory) -> TestResult {
    let s = open_with(f, |c| c.max_live_instances = 4).await;
    for i in 0..20 {
        call(&s, &format!("o{i}"), ProbeRequest::Put("k".into(), b("v"))).await?;
    }
    let ns = s.ns();
    ensure!(
        eventually(|| ns.live_instances() <= 4).await,
        "{} instances live with a bound of 4",
        ns.live_instances()
    );
    for i in 0..20 {
        ensure_eq!(
            call(&s, &format!("o{i}"), ProbeRequest::Get("k".into())).await?,
            ProbeResponse::Value(Some(b("v")))
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Hibernatable connections
// ---------------------------------------------------------------------------------------------

/// Tags and the serialized attachment stay with the connection while the instance is
/// evicted.
pub async fn connections_keep_tags_and_attachments_while_the_object_is_evicted(
    f: &dyn DurableFactory,
) -> TestResult {
    let s = open_with(f, |c| c.idle_timeout_ms = 1_000).await;
    let (_sink, _inbound) = connect(&s, "room", "lobby,user:ann", Some("ann's state")).await?;
    evict_all(&s, 1_000).await?;
    let r = call(
        &s,
        "room",
        ProbeRequest::Connections(Some("user:ann".into())),
    )
    .await?;
    let ProbeResponse::Connections(c) = r else {
        return Err(format!("unexpected {r:?}").into());
    };
    ensure_eq!(c.len(), 1);
    ensure_eq!(c[0].1, vec!["lobby".to_owned(), "user:ann".to_owned()]);
    ensure_eq!(c[0].2, Some(b("ann's state")));
    Ok(())
}

/// A message on a connection of an evicted object wakes it with the connection and its
/// attachment.
pub async fn a_message_wakes_an_evicted_object(f: &dyn DurableFactory) -> TestResult {
    let s = open_with(f, |c| c.idle_timeout_ms = 1_000).await;
    let (sink, inbound) = connect(&s, "room", "lobby", Some("att")).await?;
    evict_all(&s, 1_000).await?;
    let built = s.log.constructed.load(Ordering::SeqCst);
    inbound.deliver(Message::Text("hello".into()));
    ensure!(
        eventually(|| !s.log.messages.lock().is_empty()).await,
        "message not delivered"
    );
    let (_, msg, att) = s.log.messages.lock()[0].clone();
    ensure_eq!(msg, Message::Text("hello".into()));
    ensure_eq!(att, Some(b("att")));
    ensure_eq!(s.log.constructed.load(Ordering::SeqCst), built + 1);
    ensure!(
        eventually(|| sink
            .sent
            .lock()
            .contains(&Message::Text("echo:hello".into())))
        .await,
        "echo not sent"
    );
    Ok(())
}

/// A message equal to the auto-response request is answered without waking the object.
pub async fn auto_response_answers_without_waking_the_object(f: &dyn DurableFactory) -> TestResult {
    let s = open_with(f, |c| c.idle_timeout_ms = 1_000).await;
    let (sink, inbound) = connect(&s, "room", "", None).await?;
    call(
        &s,
        "room",
        ProbeRequest::SetAutoResponse(Some(("ping".into(), "pong".into()))),
    )
    .await?;
    evict_all(&s, 1_000).await?;
    let built = s.log.constructed.load(Ordering::SeqCst);
    inbound.deliver(Message::Text("ping".into()));
    ensure!(
        eventually(|| sink.sent.lock().contains(&Message::Text("pong".into()))).await,
        "auto-response not sent"
    );
    tokio::time::sleep(Duration::from_millis(30)).await;
    ensure_eq!(s.ns().live_instances(), 0);
    ensure_eq!(s.log.constructed.load(Ordering::SeqCst), built);
    ensure!(
        s.log.messages.lock().is_empty(),
        "the object saw the auto-answered message"
    );
    let too_long = "x".repeat(2_049);
    let r = call(
        &s,
        "room",
        ProbeRequest::SetAutoResponse(Some((too_long, "y".into()))),
    )
    .await;
    ensure!(
        matches!(r, Err(DurableError::TooLarge { .. })),
        "long auto-response accepted: {r:?}"
    );
    Ok(())
}

/// `get_connections(tag)` returns only the connections with that tag.
pub async fn get_connections_filters_by_tag(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    let (a, _ia) = connect(&s, "room", "red", None).await?;
    let (bsink, _ib) = connect(&s, "room", "blue", None).await?;
    let (c, _ic) = connect(&s, "room", "red,blue", None).await?;
    let count = |r: ProbeResponse| match r {
        ProbeResponse::Connections(c) => c.len(),
        _ => usize::MAX,
    };
    ensure_eq!(
        count(call(&s, "room", ProbeRequest::Connections(None)).await?),
        3
    );
    ensure_eq!(
        count(call(&s, "room", ProbeRequest::Connections(Some("red".into()))).await?),
        2
    );
    ensure_eq!(
        count(call(&s, "room", ProbeRequest::Connections(Some("green".into()))).await?),
        0
    );
    ensure_eq!(
        call(
            &s,
            "room",
            ProbeRequest::Broadcast(Some("blue".into()), "hi".into())
        )
        .await?,
        ProbeResponse::Count(2)
    );
    ensure!(
        a.sent.lock().is_empty(),
        "red-only connection got a blue broadcast"
    );
    ensure_eq!(bsink.sent.lock().len(), 1);
    ensure_eq!(c.sent.lock().len(), 1);
    Ok(())
}

/// More than 10 tags, or a tag over 256 characters, rejects the connection.
pub async fn too_many_tags_are_rejected(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    let eleven: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
    let r = connect(&s, "room", &eleven.join(","), None).await;
    ensure!(
        matches!(r, Err(DurableError::TooLarge { .. })),
        "11 tags accepted"
    );
    let r = connect(&s, "room", &"x".repeat(257), None).await;
    ensure!(
        matches!(r, Err(DurableError::TooLarge { .. })),
        "257-char tag accepted"
    );
    let r = connect(&s, "room", &"x".repeat(256), None).await;
    ensure!(r.is_ok(), "256-char tag rejected: {:?}", r.err());
    Ok(())
}

/// A peer's close reaches the object's close handler and the connection is gone.
pub async fn peer_close_reaches_the_object_and_drops_the_connection(
    f: &dyn DurableFactory,
) -> TestResult {
    let s = open(f).await;
    let (_sink, inbound) = connect(&s, "room", "t", None).await?;
    inbound.closed(1000, "bye");
    ensure!(
        eventually(|| !s.log.closes.lock().is_empty()).await,
        "close not delivered"
    );
    ensure_eq!(s.log.closes.lock()[0].1, 1000);
    ensure_eq!(
        call(&s, "room", ProbeRequest::Connections(None)).await?,
        ProbeResponse::Connections(vec![])
    );
    Ok(())
}

/// A message the object sends after a write leaves only once the write is durable.
pub async fn messages_from_the_object_are_output_gated(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    let (sink, inbound) = connect(&s, "room", "", None).await?;
    s.backend.hold_durability(true);
    inbound.deliver(Message::Text("m".into()));
    let delivered = eventually(|| !s.log.messages.lock().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let early = !sink.sent.lock().is_empty();
    s.backend.hold_durability(false);
    ensure!(delivered, "message not delivered");
    ensure!(
        !early,
        "the object's message left before its write was durable"
    );
    ensure!(
        eventually(|| sink.sent.lock().contains(&Message::Text("echo:m".into()))).await,
        "echo never sent"
    );
    Ok(())
}

/// A call made from inside an object that cannot be answered (its target is blocked) fails
/// with a clear error once the nested-call limit passes on the clock.
pub async fn a_nested_call_that_cannot_be_served_fails_after_the_limit(
    f: &dyn DurableFactory,
) -> TestResult {
    let s = open_with(f, |c| c.nested_call_timeout_ms = 5_000).await;
    let busy = s.ns().get_by_name("busy");
    let blocked = tokio::spawn(async move { busy.call(ProbeRequest::BlockForever).await });
    ensure!(
        eventually(|| s.log.blocking.load(Ordering::SeqCst) == 1).await,
        "the blocking handler never ran"
    );
    let target = s.ns().id_from_name("busy").to_hex();
    let caller = s.ns().get_by_name("caller");
    let waiting = tokio::spawn(async move {
        caller
            .call(ProbeRequest::CallOther(
                target,
                Box::new(ProbeRequest::Bump),
            ))
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    ensure!(
        !waiting.is_finished(),
        "the nested call finished while its target was blocked"
    );
    s.clock.advance_ms(5_001);
    let r = tokio::time::timeout(Duration::from_secs(10), waiting).await???;
    ensure!(
        matches!(&r, ProbeResponse::Text(t) if t.contains("did not finish within 5000 ms")),
        "expected a nested-call timeout, got {r:?}"
    );
    s.clock.advance_ms(30_000);
    let _ = tokio::time::timeout(Duration::from_secs(10), blocked).await?;
    Ok(())
}

/// More than 100 bound parameters, or SQL over 100,000 bytes, is rejected naming the limit.
pub async fn sql_rejects_more_than_100_bindings_and_oversized_statements(
    f: &dyn DurableFactory,
) -> TestResult {
    let s = open(f).await;
    let marks = vec!["?"; 101].join(", ");
    let r = call(
        &s,
        "o",
        ProbeRequest::Sql(format!("SELECT {marks}"), vec![SqlValue::Integer(1); 101]),
    )
    .await;
    match r {
        Err(e @ DurableError::TooLarge { .. }) => {
            ensure!(
                e.to_string().contains("100"),
                "message lacks the limit: {e}"
            )
        }
        other => return Err(format!("101 bindings accepted: {other:?}").into()),
    }
    let long = format!("SELECT 1 -- {}", "x".repeat(100_000));
    let r = call(&s, "o", ProbeRequest::Sql(long, vec![])).await;
    ensure!(
        matches!(r, Err(DurableError::TooLarge { .. })),
        "long SQL accepted: {r:?}"
    );
    let marks = vec!["?"; 100].join(", ");
    call(
        &s,
        "o",
        ProbeRequest::Sql(format!("SELECT {marks}"), vec![SqlValue::Integer(1); 100]),
    )
    .await?;
    Ok(())
}

/// A serialized attachment over 16,384 bytes is rejected.
pub async fn attachments_over_16_kib_are_rejected(f: &dyn DurableFactory) -> TestResult {
    let s = open(f).await;
    let attempt = |n: usize| {
        let sink = Arc::new(RecordingSink::default());
        let mut req = HttpRequest::get("/connect");
        req.headers
            .push(("x-attachment-bytes".into(), n.to_string()));
        let stub = s.ns().get_by_name("room");
        async move { stub.connect(req, sink as Arc<dyn ConnectionSink>).await }
    };
    let r = attempt(16_385).await;
    ensure!(
        matches!(
            r,
            Err(DurableError::TooLarge {
                len: 16_385,
                limit: 16_384,
                ..
            })
        ),
        "oversized attachment accepted: {:?}",
        r.err()
    );
    ensure!(
        attempt(16_384).await.is_ok(),
        "a 16,384-byte attachment was rejected"
    );
    Ok(())
}
