//! Bindery's Durable Objects: single-threaded actors with private SQLite storage, alarms and
//! hibernatable connections, in one process.
//!
//! A [`DurableRuntime`] hosts namespaces in one folder. A [`Namespace`] pairs an object
//! class (a type implementing [`DurableObject`]) with a constructor, and hands out stubs.
//! Each object gets its own SQLite database, created on its first write.
//!
//! # What it emulates
//!
//! - Ids: `id_from_name` (deterministic per namespace), `new_unique_id`, `id_from_string`
//!   (rejects ids of other namespaces). At most one live instance per id.
//! - Execution: one event at a time per object, in arrival order (RPC calls, `fetch`,
//!   alarms, connection messages). Typed RPC through the class's `Request`/`Response`
//!   types. `block_concurrency_while` with the 30 s limit. A call cycle (A calls B calls A)
//!   fails at once with [`DurableError::CallCycle`]; any other call made from inside an
//!   object fails with [`DurableError::CallTimeout`] after the nested-call limit.
//! - Storage: KV (get/put/delete single and batches of 128, list with start, start_after,
//!   end, prefix, reverse, limit; transactions; delete_all also deleting the alarm) and
//!   synchronous SQL (`exec` with bindings and a cursor; `_cf_` names reserved; `BEGIN` and
//!   `SAVEPOINT` rejected).
//! - Output gate and write coalescing: an event's writes commit together when it ends; the
//!   reply (and any connection message or outgoing call) leaves only once the writes made
//!   before it are fsynced. One committer thread makes many objects' commits durable per
//!   round, so concurrent requests share fsyncs. `sync()` waits for durability. A failed
//!   fsync or engine error resets the object and the caller gets an error.
//! - Alarms: one per object, persisted in the object's database and in a runtime-wide index
//!   so that a scheduler finds them after a restart; failing handlers are retried with
//!   exponential backoff from 2 s, up to 6 times, with [`AlarmInfo`] telling the handler the
//!   retry count. All timing reads the injected clock.
//! - Eviction: idle instances leave memory after the idle time (10 s by default); the number
//!   of live instances per namespace is bounded.
//! - Hibernatable connections: transport-agnostic ([`ConnectionSink`] /
//!   [`InboundConnection`]), with tags, serialized attachments, an auto-response pair and
//!   lookup by tag; they stay open while the instance is evicted and a message wakes it.
//!
//! # What it does not
//!
//! - No point-in-time recovery (bookmarks) for object storage: D1's Time Travel engine was
//!   being written in parallel and is not reused here.
//! - Values are bytes (use [`DurableStorageExt`] for JSON), not structured clones.
//! - Handlers run to completion: while a handler awaits an outgoing call, other events for
//!   the same object wait (the platform would open the input gate). This is why call
//!   cycles fail instead of interleaving.
//! - No legacy KV-backed storage, no jurisdictions or location hints, no
//!   `allowUnconfirmed` (every write goes through the output gate).
//! - SQL cursors are read when `exec` runs (storage calls never yield anyway); in a
//!   multi-statement `exec`, bindings are given to every statement that has placeholders.
//!   `rows_read` counts rows returned plus rows written (SQLite does not report rows
//!   scanned).
//! - Storage calls run on the object's task (they are fast: commits append to the WAL
//!   without fsync), except that SQLite's automatic WAL checkpoint (about every 1,000
//!   pages written) fsyncs on that task.
//! - Alarm handlers have no 15-minute wall-time limit and connection handlers no event
//!   timeout; outgoing connections and `waitUntil` do not exist.
//! - Durability is against power loss when the disk honours fsync; every object's commits
//!   are fsynced by one committer thread per runtime, so one object's write throughput is
//!   bounded by (concurrent callers) x (fsyncs per second).
//!
//! # Limits
//!
//! [`DurableLimits::cloudflare`] by default: 128 keys per batch, 2 MiB per key plus value,
//! 100,000-byte SQL, 100 bound parameters, 10 tags of 256 characters per connection, 16 KiB
//! attachments, 2,048-character auto-responses, 32 MiB messages, 32,768 connections.
//!
//! # Example
//!
//! ```
//! use bindery_core::durable::{DurableNamespace, DurableObject, DurableResult, State};
//! use bindery_durable::DurableRuntime;
//! use bytes::Bytes;
//!
//! struct Counter { state: State }
//!
//! #[async_trait::async_trait]
//! impl DurableObject for Counter {
//!     type Request = u64;   // amount to add
//!     type Response = u64;  // new total
//!     async fn call(&mut self, add: u64) -> DurableResult<u64> {
//!         let s = self.state.storage();
//!         let now = s.get("n")?.map(|b| u64::from_le_bytes(b[..8].try_into().unwrap())).unwrap_or(0) + add;
//!         s.put("n", Bytes::copy_from_slice(&now.to_le_bytes()))?;
//!         Ok(now) // leaves only once the put is durable
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> DurableResult<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let rt = DurableRuntime::builder().open(dir.path()).await?;
//! let counters = rt.namespace("counters", |state| Counter { state }).await?;
//! let stub = counters.get_by_name("visits");
//! assert_eq!(stub.call(2).await?, 2);
//! assert_eq!(stub.call(3).await?, 5);
//! # Ok(()) }
//! ```

mod actor;
mod alarms;
mod committer;
mod connections;
mod ids;
mod namespace;
mod runtime;
mod sql;
mod storage;

pub use bindery_core::durable::{
    AlarmInfo, Connection, ConnectionSink, DurableError, DurableLimits, DurableNamespace,
    DurableObject, DurableObjectId, DurableResult, DurableStorage, DurableStorageExt, DurableStub,
    HttpRequest, HttpResponse, InboundConnection, ListOptions, Message, ObjectState, SqlCursor,
    SqlValue, State,
};
pub use namespace::Namespace;
pub use runtime::{DurableRuntime, DurableRuntimeBuilder};
