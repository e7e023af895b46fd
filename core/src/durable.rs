//! The Durable Objects contract.
//!
//! A Durable Object is a single-threaded actor with private, transactional, strongly
//! consistent storage. A user writes an object *class* by implementing [`DurableObject`];
//! a runtime (the `bindery-durable` crate) hosts many instances of it, one per
//! [`DurableObjectId`], and hands callers [`DurableStub`]s from a [`DurableNamespace`].
//!
//! - **Identity**: ids are 32 bytes shown as 64 hex digits. `id_from_name` is deterministic
//!   per namespace, `new_unique_id` is random, `id_from_string` rejects strings that are not
//!   ids of the namespace.
//! - **Execution**: an instance handles one event at a time (RPC call, `fetch`, alarm,
//!   connection message) in arrival order. Its state is passed to the class constructor as a
//!   [`State`], which gives access to [`DurableStorage`], alarms and hibernatable
//!   [`Connection`]s.
//! - **Typed RPC**: each class names a `Request` and a `Response` type (usually enums);
//!   [`DurableStub::call`] sends one and returns the other. A `fetch`-style entry point
//!   ([`DurableStub::fetch`]) takes an [`HttpRequest`] and returns an [`HttpResponse`].
//! - **Storage** is synchronous (SQLite calls never yield, as on the platform): a KV API, a
//!   SQL API, alarms. Writes made by one event commit together; a reply or outgoing message
//!   leaves only once the writes made before it are durable (the output gate).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Re-exported so that a crate can implement [`DurableObject`] without depending on
/// `async-trait` itself: put `#[async_trait]` on the `impl`.
pub use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{BoxError, ErrorKind, PlatformError};

/// Result alias for Durable Object operations.
pub type DurableResult<T> = Result<T, DurableError>;

/// A boxed, sendable future, as the object-safe parts of this contract return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

// ---------------------------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------------------------

/// The identity of one Durable Object: 32 bytes, shown as 64 lowercase hex digits.
///
/// Two ids are equal when their bytes are equal; the name is carried only for ids made by
/// `id_from_name` (as `id.name` on the platform) and does not take part in equality.
#[derive(Clone)]
pub struct DurableObjectId {
    bytes: [u8; 32],
    name: Option<Arc<str>>,
}

impl DurableObjectId {
    /// An id from its bytes and, for named ids, the name. Runtimes build ids; users get them
    /// from a namespace.
    pub fn from_parts(bytes: [u8; 32], name: Option<Arc<str>>) -> Self {
        Self { bytes, name }
    }

    /// The id's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The name the id was derived from, if it came from `id_from_name`; `None` for unique
    /// ids and for ids rebuilt by `id_from_string`.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The 64-hex-digit form, accepted back by `id_from_string`.
    pub fn to_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.bytes {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 15) as usize] as char);
        }
        s
    }
}

impl PartialEq for DurableObjectId {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for DurableObjectId {}

impl std::hash::Hash for DurableObjectId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

impl fmt::Display for DurableObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for DurableObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "DurableObjectId({} {:?})", self.to_hex(), n),
            None => write!(f, "DurableObjectId({})", self.to_hex()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Options and values
// ---------------------------------------------------------------------------------------------

/// Options for [`DurableStorage::list`]. Keys come back in ascending UTF-8 byte order
/// (descending with `reverse`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// First key to return (inclusive). Not combinable with `start_after`. Default: none.
    pub start: Option<String>,
    /// Return keys strictly after this one. Not combinable with `start`. Default: none.
    pub start_after: Option<String>,
    /// Stop before this key (exclusive). Default: none.
    pub end: Option<String>,
    /// Only keys starting with this prefix. Default: none.
    pub prefix: Option<String>,
    /// Return keys in descending order. Does not change the meaning of start and end.
    /// Default: `false`.
    pub reverse: bool,
    /// At most this many keys (at least 1). Default: all.
    pub limit: Option<usize>,
}

/// What the runtime passes to [`DurableObject::alarm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlarmInfo {
    /// How many times this alarm has been retried before this run (0 on the first run).
    pub retry_count: u32,
    /// Whether this run is a retry (`retry_count > 0`).
    pub is_retry: bool,
}

/// A value bound to, or read from, the SQL API.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// SQL `NULL`.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A double.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        SqlValue::Integer(v)
    }
}
impl From<f64> for SqlValue {
    fn from(v: f64) -> Self {
        SqlValue::Real(v)
    }
}
impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(v.to_owned())
    }
}
impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(v)
    }
}
impl From<Vec<u8>> for SqlValue {
    fn from(v: Vec<u8>) -> Self {
        SqlValue::Blob(v)
    }
}

/// The result of [`DurableStorage::exec`]: the rows of the last statement.
///
/// Rows are read when the statement runs (storage calls never yield, so there is nothing to
/// gain from reading lazily); iterate with [`Iterator::next`], or take them all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SqlCursor {
    columns: Vec<String>,
    rows: std::collections::VecDeque<Vec<SqlValue>>,
    rows_read: u64,
    rows_written: u64,
}

impl SqlCursor {
    /// A cursor over `rows` (runtimes build cursors).
    pub fn new(
        columns: Vec<String>,
        rows: Vec<Vec<SqlValue>>,
        rows_read: u64,
        rows_written: u64,
    ) -> Self {
        Self {
            columns,
            rows: rows.into(),
            rows_read,
            rows_written,
        }
    }

    /// The column names of the last statement.
    pub fn column_names(&self) -> &[String] {
        &self.columns
    }

    /// Rows the statements read (rows returned plus rows visited by writes).
    pub fn rows_read(&self) -> u64 {
        self.rows_read
    }

    /// Rows the statements inserted, updated or deleted.
    pub fn rows_written(&self) -> u64 {
        self.rows_written
    }

    /// Every remaining row, as arrays of values (`raw()` on the platform).
    pub fn raw(self) -> Vec<Vec<SqlValue>> {
        self.rows.into()
    }

    /// Every remaining row as column name to value maps (`toArray()` on the platform).
    pub fn to_array(self) -> Vec<BTreeMap<String, SqlValue>> {
        let columns = self.columns;
        self.rows
            .into_iter()
            .map(|row| columns.iter().cloned().zip(row).collect())
            .collect()
    }

    /// The only row; an error unless exactly one row remains (`one()` on the platform).
    pub fn one(mut self) -> DurableResult<Vec<SqlValue>> {
        match (self.rows.pop_front(), self.rows.len()) {
            (Some(row), 0) => Ok(row),
            (None, _) => Err(DurableError::Sql {
                message: "Expected exactly one result from SQL query, but got no results.".into(),
            }),
            (Some(_), more) => Err(DurableError::Sql {
                message: format!(
                    "Expected exactly one result from SQL query, but got {} results.",
                    more + 1
                ),
            }),
        }
    }
}

impl Iterator for SqlCursor {
    type Item = Vec<SqlValue>;
    fn next(&mut self) -> Option<Self::Item> {
        self.rows.pop_front()
    }
}

/// A minimal HTTP request, for the `fetch`-style entry point.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpRequest {
    /// Method, e.g. `GET`.
    pub method: String,
    /// The full URL or path.
    pub url: String,
    /// Header pairs in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl HttpRequest {
    /// A `GET` request for `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self {
            method: "GET".into(),
            url: url.into(),
            ..Self::default()
        }
    }

    /// A `POST` request for `url` with `body`.
    pub fn post(url: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self {
            method: "POST".into(),
            url: url.into(),
            body: body.into(),
            ..Self::default()
        }
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP response, for the `fetch`-style entry point.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header pairs in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl HttpResponse {
    /// A response with `status` and `body`.
    pub fn new(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A `200 OK` response with `body`.
    pub fn ok(body: impl Into<Bytes>) -> Self {
        Self::new(200, body)
    }
}

/// A message on a hibernatable connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Bytes),
}

impl Message {
    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Message::Text(s) => s.len(),
            Message::Binary(b) => b.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// ---------------------------------------------------------------------------------------------
// Storage
// ---------------------------------------------------------------------------------------------

/// One object's private storage: a KV API, a SQL API and its alarm.
///
/// # Contract
///
/// - Calls are synchronous and never yield; each is atomic and isolated.
/// - Writes made by one event (RPC call, fetch, alarm, message) commit together when the
///   event ends, unless [`sync`](DurableStorage::sync) commits them earlier. A reply or
///   outgoing message of the object leaves only once every write made before it is durable.
/// - KV keys are listed in ascending UTF-8 byte order. Batches hold at most
///   `max_batch_keys` keys; key plus value is at most `max_entry_bytes`.
/// - `exec` runs `;`-separated statements; bindings apply to the last one, and the cursor
///   holds its rows. Names starting with `_cf_` are reserved; `BEGIN`, `COMMIT`, `ROLLBACK`
///   and `SAVEPOINT` are rejected (use [`transaction`](DurableStorage::transaction)).
/// - `delete_all` wipes KV data, SQL tables and the alarm in one transaction.
///
/// # Errors
///
/// Bad input and limit breaches return a [`DurableError`] naming the problem and the limit,
/// with nothing written. An engine failure fails the event: its writes are rolled back, the
/// caller receives the error and the instance is reset.
pub trait DurableStorage: Send + Sync {
    /// The value of `key`, or `None`.
    fn get(&self, key: &str) -> DurableResult<Option<Bytes>>;
    /// The values of the keys that exist, sorted by key (missing keys are omitted).
    fn get_many(&self, keys: &[String]) -> DurableResult<BTreeMap<String, Bytes>>;
    /// Stores `value` under `key`.
    fn put(&self, key: &str, value: Bytes) -> DurableResult<()>;
    /// Stores every pair atomically.
    fn put_many(&self, entries: &[(String, Bytes)]) -> DurableResult<()>;
    /// Removes `key`; `true` when it existed.
    fn delete(&self, key: &str) -> DurableResult<bool>;
    /// Removes the keys; how many existed.
    fn delete_many(&self, keys: &[String]) -> DurableResult<usize>;
    /// Key/value pairs in key order, filtered by `options`.
    fn list(&self, options: &ListOptions) -> DurableResult<Vec<(String, Bytes)>>;
    /// Deletes every key, every SQL table and the alarm, atomically.
    fn delete_all(&self) -> DurableResult<()>;
    /// Runs `body` in a transaction: its writes apply together, or not at all when it fails.
    fn transaction(
        &self,
        body: &mut dyn FnMut(&dyn DurableStorage) -> DurableResult<()>,
    ) -> DurableResult<()>;
    /// Runs SQL. See the contract for multiple statements and reserved names.
    fn exec(&self, sql: &str, bindings: &[SqlValue]) -> DurableResult<SqlCursor>;
    /// The size of the object's database in bytes.
    fn database_size(&self) -> DurableResult<u64>;
    /// The alarm's time (ms since the UNIX epoch). Inside a running alarm handler this is
    /// `None` unless `set_alarm` was called since the handler started.
    fn get_alarm(&self) -> DurableResult<Option<u64>>;
    /// Sets the object's one alarm, replacing any other. A time in the past fires at once.
    fn set_alarm(&self, scheduled_ms: u64) -> DurableResult<()>;
    /// Removes the alarm. A running handler is not cancelled.
    fn delete_alarm(&self) -> DurableResult<()>;
    /// Commits the writes made so far and resolves once they are durable.
    fn sync(&self) -> BoxFuture<'_, DurableResult<()>>;
}

/// Typed conveniences over any [`DurableStorage`].
pub trait DurableStorageExt: DurableStorage {
    /// The value of `key` parsed as JSON.
    fn get_json<T: DeserializeOwned>(&self, key: &str) -> DurableResult<Option<T>> {
        match self.get(key)? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| DurableError::invalid(format!("value of {key:?} is not JSON: {e}"))),
        }
    }

    /// Stores `value` serialized as JSON.
    fn put_json<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> DurableResult<()> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| DurableError::invalid(format!("value of {key:?}: {e}")))?;
        self.put(key, Bytes::from(bytes))
    }

    /// Runs `body` in a transaction and returns its value (`transactionSync`).
    fn transaction_with<T>(
        &self,
        mut body: impl FnMut(&dyn DurableStorage) -> DurableResult<T>,
    ) -> DurableResult<T> {
        let mut out = None;
        self.transaction(&mut |s| {
            out = Some(body(s)?);
            Ok(())
        })?;
        out.ok_or_else(|| DurableError::invalid("transaction body did not run"))
    }
}

impl<S: DurableStorage + ?Sized> DurableStorageExt for S {}

// ---------------------------------------------------------------------------------------------
// Connections (hibernatable, transport-agnostic)
// ---------------------------------------------------------------------------------------------

/// The transport side of a hibernatable connection: how the runtime writes to the peer.
/// A WebSocket server implements it by forwarding to the socket.
pub trait ConnectionSink: Send + Sync + 'static {
    /// Sends one message to the peer.
    fn send(&self, message: Message) -> DurableResult<()>;
    /// Closes the connection with a code and reason.
    fn close(&self, code: u16, reason: &str);
}

/// What the transport calls when the peer speaks: returned by [`DurableStub::connect`].
pub trait InboundConnection: Send + Sync + 'static {
    /// A message arrived from the peer. Answered by the auto-response pair without waking
    /// the object when it matches exactly; otherwise delivered to the object (woken if it
    /// hibernates).
    fn deliver(&self, message: Message);
    /// The peer closed the connection (or the transport lost it).
    fn closed(&self, code: u16, reason: &str);
}

/// A hibernatable connection as the object sees it. Survives eviction of the instance:
/// tags and the attachment are kept by the runtime.
pub trait HibernatableConnection: Send + Sync + 'static {
    /// An id unique within the runtime.
    fn id(&self) -> u64;
    /// The tags given when the connection was accepted.
    fn tags(&self) -> Vec<String>;
    /// Sends a message to the peer (held by the output gate until earlier writes are
    /// durable when sent from inside the object).
    fn send(&self, message: Message) -> DurableResult<()>;
    /// Closes the connection.
    fn close(&self, code: u16, reason: &str);
    /// Stores a serialized attachment kept across hibernation (at most
    /// `max_attachment_bytes`).
    fn serialize_attachment(&self, value: Bytes) -> DurableResult<()>;
    /// The attachment, `None` if never set.
    fn deserialize_attachment(&self) -> Option<Bytes>;
    /// When the auto-response last answered on this connection (ms), if ever.
    fn auto_response_timestamp(&self) -> Option<u64>;
}

/// A shared handle to a hibernatable connection.
pub type Connection = Arc<dyn HibernatableConnection>;

// ---------------------------------------------------------------------------------------------
// Object state and class
// ---------------------------------------------------------------------------------------------

/// What an instance knows about itself (`ctx` / `state` on the platform).
pub trait ObjectState: Send + Sync + 'static {
    /// The object's id.
    fn id(&self) -> &DurableObjectId;
    /// The object's storage.
    fn storage(&self) -> &dyn DurableStorage;
    /// Runs `body` while no other event is delivered to this object; returns its result. If
    /// it fails or runs past the limit (30 s on the platform, by the runtime's clock) the
    /// object is reset. Called from a constructor without awaiting, the first event waits.
    fn block_concurrency_while(
        &self,
        body: BoxFuture<'static, DurableResult<()>>,
    ) -> BoxFuture<'static, DurableResult<()>>;
    /// Hibernatable connections of this object, all or those with `tag`.
    fn get_connections(&self, tag: Option<&str>) -> Vec<Connection>;
    /// Sets (or with `None` clears) the auto-response pair: a message equal to the request
    /// is answered with the response without waking the object.
    fn set_auto_response(&self, pair: Option<(String, String)>) -> DurableResult<()>;
    /// The auto-response pair, if set.
    fn get_auto_response(&self) -> Option<(String, String)>;
    /// Resets the object after the current event: the instance is dropped and rebuilt on the
    /// next event; storage is kept.
    fn abort(&self, reason: &str);
}

/// A shared handle to an instance's state, given to the class constructor.
pub type State = Arc<dyn ObjectState>;

/// A Durable Object class. An instance is built by the namespace's constructor on its first
/// event and handles one event at a time.
///
/// # Contract
///
/// - The runtime never runs two handlers of one instance at once, and delivers events in
///   arrival order.
/// - An error from a handler reaches the caller; the instance stays live (use
///   [`ObjectState::abort`] to reset it).
#[async_trait]
pub trait DurableObject: Send + 'static {
    /// The typed RPC request (usually an enum of the class's methods).
    type Request: Send + 'static;
    /// The typed RPC response.
    type Response: Send + 'static;

    /// Handles one RPC call.
    async fn call(&mut self, request: Self::Request) -> DurableResult<Self::Response>;

    /// Handles a `fetch`-style request. Default: `501 Not Implemented`.
    async fn fetch(&mut self, request: HttpRequest) -> DurableResult<HttpResponse> {
        let _ = request;
        Ok(HttpResponse::new(501, "this object does not handle fetch"))
    }

    /// The alarm fired. An error schedules a retry (with backoff, a bounded number of times).
    async fn alarm(&mut self, info: AlarmInfo) -> DurableResult<()> {
        let _ = info;
        Ok(())
    }

    /// A peer asks to connect. Return the tags to accept the connection as hibernatable;
    /// an error rejects it. The connection can already send and hold an attachment here; it
    /// appears in [`ObjectState::get_connections`] once this returns `Ok`. Default: rejects.
    async fn connect(
        &mut self,
        connection: &Connection,
        request: HttpRequest,
    ) -> DurableResult<Vec<String>> {
        let _ = (connection, request);
        Err(DurableError::Unsupported {
            what: "connections",
        })
    }

    /// A message arrived on an accepted connection.
    async fn connection_message(
        &mut self,
        connection: &Connection,
        message: Message,
    ) -> DurableResult<()> {
        let _ = (connection, message);
        Ok(())
    }

    /// An accepted connection closed.
    async fn connection_close(
        &mut self,
        connection: &Connection,
        code: u16,
        reason: &str,
    ) -> DurableResult<()> {
        let _ = (connection, code, reason);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Namespace and stubs
// ---------------------------------------------------------------------------------------------

/// How a stub reaches its object; implemented by runtimes.
#[async_trait]
pub trait StubTransport<O: DurableObject>: Send + Sync + 'static {
    /// Delivers an RPC call.
    async fn call(&self, id: &DurableObjectId, request: O::Request) -> DurableResult<O::Response>;
    /// Delivers a `fetch`.
    async fn fetch(
        &self,
        id: &DurableObjectId,
        request: HttpRequest,
    ) -> DurableResult<HttpResponse>;
    /// Offers a connection to the object.
    async fn connect(
        &self,
        id: &DurableObjectId,
        request: HttpRequest,
        sink: Arc<dyn ConnectionSink>,
    ) -> DurableResult<Arc<dyn InboundConnection>>;
}

/// A client-side handle to one object. Creating it costs nothing; the object is built on the
/// first event.
pub struct DurableStub<O: DurableObject> {
    id: DurableObjectId,
    transport: Arc<dyn StubTransport<O>>,
}

impl<O: DurableObject> Clone for DurableStub<O> {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            transport: Arc::clone(&self.transport),
        }
    }
}

impl<O: DurableObject> fmt::Debug for DurableStub<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableStub").field("id", &self.id).finish()
    }
}

impl<O: DurableObject> DurableStub<O> {
    /// A stub for `id` over `transport` (runtimes build stubs).
    pub fn new(id: DurableObjectId, transport: Arc<dyn StubTransport<O>>) -> Self {
        Self { id, transport }
    }

    /// The object's id.
    pub fn id(&self) -> &DurableObjectId {
        &self.id
    }

    /// The name, when the id came from a name.
    pub fn name(&self) -> Option<&str> {
        self.id.name()
    }

    /// Calls the object with a typed request.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future does not withdraw a request already delivered: the object still
    /// handles it and its writes still commit.
    pub async fn call(&self, request: O::Request) -> DurableResult<O::Response> {
        self.transport.call(&self.id, request).await
    }

    /// Sends a `fetch`-style request.
    pub async fn fetch(&self, request: HttpRequest) -> DurableResult<HttpResponse> {
        self.transport.fetch(&self.id, request).await
    }

    /// Offers a hibernatable connection; on acceptance the transport feeds the peer's messages
    /// to the returned handle and the object writes through `sink`.
    pub async fn connect(
        &self,
        request: HttpRequest,
        sink: Arc<dyn ConnectionSink>,
    ) -> DurableResult<Arc<dyn InboundConnection>> {
        self.transport.connect(&self.id, request, sink).await
    }
}

/// A namespace: one object class, its ids, and the way to reach its objects.
///
/// # Contract
///
/// - `id_from_name` returns the same id for the same name, and different ids in different
///   namespaces; `new_unique_id` never repeats; `id_from_string` accepts exactly the
///   strings made by `to_hex` of ids of this namespace.
/// - At most one instance per id is live in the process at a time.
#[async_trait]
pub trait DurableNamespace<O: DurableObject>: Send + Sync + 'static {
    /// The deterministic id for `name`.
    fn id_from_name(&self, name: &str) -> DurableObjectId;
    /// A new random id.
    fn new_unique_id(&self) -> DurableObjectId;
    /// Rebuilds an id from its 64-hex form; rejects strings that are not ids of this
    /// namespace.
    fn id_from_string(&self, id: &str) -> DurableResult<DurableObjectId>;
    /// A stub for `id`, at once.
    fn get(&self, id: &DurableObjectId) -> DurableStub<O>;
    /// `get(id_from_name(name))`.
    fn get_by_name(&self, name: &str) -> DurableStub<O> {
        self.get(&self.id_from_name(name))
    }
    /// How many instances are live (in memory) now.
    fn live_instances(&self) -> usize;
    /// Stops every instance after its pending events and waits until storage is closed.
    async fn shutdown(&self);
}

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

/// Durable Objects's documented limits (SQLite-backed objects).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DurableLimits {
    /// Most keys in one get/put/delete batch. Cloudflare: 128.
    pub max_batch_keys: usize,
    /// Largest key plus value in bytes. Cloudflare: 2 MB, taken as 2,097,152.
    pub max_entry_bytes: usize,
    /// Longest SQL text in bytes. Cloudflare: 100,000.
    pub max_sql_bytes: usize,
    /// Most bound parameters in one statement. Cloudflare: 100.
    pub max_sql_bindings: usize,
    /// Most hibernatable connections per object. Cloudflare: 32,768.
    pub max_connections: usize,
    /// Most tags per connection. Cloudflare: 10.
    pub max_tags: usize,
    /// Longest tag in characters. Cloudflare: 256.
    pub max_tag_chars: usize,
    /// Largest serialized attachment in bytes. Cloudflare: 16,384.
    pub max_attachment_bytes: usize,
    /// Longest auto-response request or response in characters. Cloudflare: 2,048.
    pub max_auto_response_chars: usize,
    /// Largest received connection message in bytes. Cloudflare: 32 MiB.
    pub max_message_bytes: usize,
    /// `block_concurrency_while` time limit in ms. Cloudflare: 30,000.
    pub block_concurrency_timeout_ms: u64,
    /// Retries of a failing alarm handler. Cloudflare: 6.
    pub alarm_max_retries: u32,
    /// Delay before the first alarm retry in ms; each later retry doubles it.
    /// Cloudflare: 2,000.
    pub alarm_first_retry_ms: u64,
}

impl DurableLimits {
    /// Cloudflare's documented values.
    pub fn cloudflare() -> Self {
        Self {
            max_batch_keys: 128,
            max_entry_bytes: 2 * 1024 * 1024,
            max_sql_bytes: 100_000,
            max_sql_bindings: 100,
            max_connections: 32_768,
            max_tags: 10,
            max_tag_chars: 256,
            max_attachment_bytes: 16_384,
            max_auto_response_chars: 2_048,
            max_message_bytes: 32 * 1024 * 1024,
            block_concurrency_timeout_ms: 30_000,
            alarm_max_retries: 6,
            alarm_first_retry_ms: 2_000,
        }
    }

    /// Relaxed limits: sizes and counts unbounded; the alarm retry policy and the
    /// `block_concurrency_while` timeout keep the platform's values.
    pub fn unbounded() -> Self {
        Self {
            max_batch_keys: usize::MAX,
            max_entry_bytes: usize::MAX,
            max_sql_bytes: usize::MAX,
            max_sql_bindings: usize::MAX,
            max_connections: usize::MAX,
            max_tags: usize::MAX,
            max_tag_chars: usize::MAX,
            max_attachment_bytes: usize::MAX,
            max_auto_response_chars: usize::MAX,
            max_message_bytes: usize::MAX,
            ..Self::cloudflare()
        }
    }
}

impl Default for DurableLimits {
    fn default() -> Self {
        Self::cloudflare()
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Everything that can go wrong with a Durable Object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DurableError {
    /// `id_from_string` got a string that is not an id of this namespace.
    #[error("Invalid Durable Object ID: {reason}")]
    InvalidId {
        /// What is wrong with it.
        reason: String,
    },
    /// Bad input that breaks a documented rule.
    #[error("{message}")]
    InvalidInput {
        /// What was wrong and what is allowed.
        message: String,
    },
    /// A batch has more keys than the limit.
    #[error("{count} keys given; the limit is {limit} keys per call")]
    TooManyKeys {
        /// Keys given.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A key plus its value is larger than the limit.
    #[error("key {key:?} and its value are {len} bytes; the limit is {limit}")]
    EntryTooLarge {
        /// The key (cut to 64 bytes).
        key: String,
        /// Key plus value bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Something is larger than a documented limit.
    #[error("{what} is {len}; the limit is {limit}")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// SQL names a reserved (`_cf_`) table.
    #[error("access to {name:?} is prohibited: names starting with _cf_ are reserved: SQLITE_AUTH")]
    ReservedName {
        /// The name.
        name: String,
    },
    /// SQL tried to manage transactions itself.
    #[error(
        "To execute a transaction, please use the state.storage.transaction() or state.storage.transactionSync() APIs instead of the SQL BEGIN TRANSACTION or SAVEPOINT statements. The JavaScript API is safer because it will automatically roll back on exceptions, and because it interacts correctly with Durable Objects' automatic atomic write coalescing."
    )]
    TransactionStatement,
    /// The SQL failed (syntax, constraint, missing table, full database).
    #[error("{message}")]
    Sql {
        /// SQLite's message.
        message: String,
    },
    /// An A -> B -> A call cycle was detected; the inner call fails instead of waiting.
    #[error("call cycle: object {id} is already handling a call on this path ({path})")]
    CallCycle {
        /// The object called again.
        id: String,
        /// The ids on the call path.
        path: String,
    },
    /// A call from inside an object did not finish within the runtime's nested-call limit.
    #[error("call to object {id} did not finish within {ms} ms (possible call cycle)")]
    CallTimeout {
        /// The callee.
        id: String,
        /// The limit.
        ms: u64,
    },
    /// `block_concurrency_while` ran past its limit; the object was reset.
    #[error("blockConcurrencyWhile() callback ran longer than {ms} ms; the object was reset")]
    BlockConcurrencyTimeout {
        /// The limit.
        ms: u64,
    },
    /// The object was reset (a failed storage write, a failed `block_concurrency_while`,
    /// `abort`); the caller's event did not complete.
    #[error("Durable Object reset: {reason}")]
    Reset {
        /// Why.
        reason: String,
    },
    /// The object's handler returned an error (`.remote = true` on the platform).
    #[error("{message}")]
    Object {
        /// The handler's message.
        message: String,
    },
    /// The feature is not handled by this object or backend.
    #[error("{what} not supported")]
    Unsupported {
        /// What.
        what: &'static str,
    },
    /// The connection is not (or no longer) accepted by the object.
    #[error("connection {id} is not an accepted connection of this object")]
    UnknownConnection {
        /// The connection id.
        id: u64,
    },
    /// The storage engine failed.
    #[error("Durable Object storage failed during {op}: {source}")]
    Storage {
        /// The operation.
        op: &'static str,
        /// The engine's error.
        source: BoxError,
    },
    /// The namespace was shut down.
    #[error("Durable Object namespace is shut down")]
    Closed,
}

impl DurableError {
    /// An invalid-input error with `message`.
    pub fn invalid(message: impl Into<String>) -> Self {
        DurableError::InvalidInput {
            message: message.into(),
        }
    }

    /// An error raised by object code (what a handler returns for its own failures).
    pub fn object(message: impl Into<String>) -> Self {
        DurableError::Object {
            message: message.into(),
        }
    }

    /// Wraps a storage engine error.
    pub fn storage(op: &'static str, source: impl Into<BoxError>) -> Self {
        DurableError::Storage {
            op,
            source: source.into(),
        }
    }

    /// Whether the error came from the object's own code (`.remote` on the platform).
    pub fn is_remote(&self) -> bool {
        matches!(self, DurableError::Object { .. })
    }
}

impl PlatformError for DurableError {
    fn kind(&self) -> ErrorKind {
        match self {
            DurableError::InvalidId { .. }
            | DurableError::InvalidInput { .. }
            | DurableError::TooManyKeys { .. }
            | DurableError::ReservedName { .. }
            | DurableError::TransactionStatement
            | DurableError::Sql { .. }
            | DurableError::UnknownConnection { .. } => ErrorKind::InvalidInput,
            DurableError::EntryTooLarge { .. } | DurableError::TooLarge { .. } => {
                ErrorKind::TooLarge
            }
            DurableError::CallCycle { .. } => ErrorKind::Conflict,
            DurableError::CallTimeout { .. } | DurableError::BlockConcurrencyTimeout { .. } => {
                ErrorKind::Timeout
            }
            DurableError::Reset { .. } | DurableError::Closed => ErrorKind::Unavailable,
            DurableError::Object { .. } | DurableError::Storage { .. } => ErrorKind::Internal,
            DurableError::Unsupported { .. } => ErrorKind::Unsupported,
        }
    }
}
