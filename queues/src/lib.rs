//! Cloudflare Queues on one machine.
//!
//! [`Queues`] implements [`bindery_core::queues::QueueBroker`]: named queues in one durable
//! store, each with a producer ([`QueueProducer`]: `send`, `send_batch` with the json, text,
//! bytes and opaque v8 content types, per-message, per-batch and per-queue delays), and
//! either one push consumer or any number of pull consumers.
//!
//! - **Durable and at least once.** Every queue is an append-only log in a
//!   [redb](https://docs.rs/redb) file with a visibility index. `send`, acks and retries
//!   return only after their transaction is fsynced; concurrent callers share one commit
//!   (group commit). A message leaves the queue only when acked, when its retries are
//!   exhausted (then it moves to the dead-letter queue, keeping its id and timestamp, or is
//!   deleted), or when it passes the queue's retention period (default 4 days). A crash at
//!   any moment loses no acknowledged send; a batch in flight is delivered again.
//!   After a failed commit (an I/O error, a full disk) the store answers every write with
//!   [`QueueError::Poisoned`] until it is reopened; nothing of the failed commit is kept.
//! - **Delays are an index, not timers.** A delayed message is an index entry keyed by the
//!   time it becomes visible; each push consumer sleeps on one timer (the next visible-at
//!   time) and retention on one timer for the whole store. A million delayed messages cost
//!   a million index entries on disk and memory bounded by the page cache.
//! - **Push consumers** form batches of up to `max_batch_size` messages, or fewer once
//!   `max_batch_timeout` has passed by the clock, and run up to `max_concurrency` batches
//!   at once through a [`QueueHandler`]. Per-message `ack`/`retry`, `ack_all`/`retry_all`
//!   and handler errors follow the platform's precedence (see
//!   [`MessageBatch`](bindery_core::queues::MessageBatch)).
//! - **Pull consumers** lease messages for a visibility timeout and ack or retry them by
//!   lease id; an expired lease makes the message visible again with `attempts` one higher.
//!
//! # Engine
//!
//! One thread owns the redb database and applies every write (sends, acks, retries, leases,
//! retention sweeps) in group commits: each transaction takes every op waiting when it
//! starts, so concurrent callers share one fsync. A push consumer reads ready messages from
//! a snapshot taken between commits, off that thread, and acks a batch with one range pass
//! per table. The quick report (`bindery-benches quick queues`) measures sends alone and in
//! a crowd, 100-message batches, send-to-ack throughput and a million delayed messages.
//!
//! redb against SQLite, measured on this workload (commits of 1,000 messages of 150 bytes
//! into a log table and a visibility index, each commit fsynced; three runs on a busy
//! two-core machine): appends 120k to 250k messages/s on redb and 135k to 353k on SQLite
//! (WAL, `synchronous=FULL`); deletes by key 176k to 336k and 302k to 324k; redb's range
//! deletes 243k to 837k. The engines are close on appends and redb's range pass makes acks
//! cheapest, so the queue log is on redb (as is KV).
//!
//! # Serving Workers
//!
//! A push handler is an `Arc<dyn QueueHandler>` that receives a
//! [`MessageBatch`](bindery_core::queues::MessageBatch); a server that forwards the batch to
//! a Worker replays the Worker's answer on it (`ack`, `retry` with a delay, `ack_all`,
//! `retry_all`, or an error) and the broker settles each message accordingly
//! ([`MessageBatch::outcomes`](bindery_core::queues::MessageBatch::outcomes) states the rule).
//! `v8` bodies are stored and delivered as opaque bytes.
//!
//! Time comes from an injected [`Clock`](bindery_core::Clock): with a
//! [`ManualClock`](bindery_core::ManualClock), delays, batch timeouts, leases and retention
//! move only when the clock is advanced.
//!
//! # What it is not
//!
//! Not distributed: one store on one machine. Ordering is best effort, as on the platform
//! (in practice oldest-visible first). Multiple push consumers per queue (a beta feature of
//! the platform) and concurrency autoscaling are not modelled: a push consumer runs up to
//! `max_concurrency` batches whenever enough messages are ready. Messages moved to a
//! dead-letter queue keep their original timestamp; the retention sweeper deletes messages
//! in arrival order, so such a message is deleted once the messages that arrived in the
//! dead-letter queue before it have expired (it is never delivered after its retention
//! period).
//!
//! # Limits
//!
//! [`QueueLimits::cloudflare`] (the default): 128 KB per message counting 100 bytes of
//! metadata, 100 messages and 256 KB per batch, delays up to 24 h, consumer batches of
//! 1..=100, batch timeouts up to 60 s, 0..=100 retries, concurrency 1..=250, visibility
//! timeouts up to 12 h, retention 60 s to 14 days, 25 GB of backlog and 5,000 messages per
//! second per queue. [`QueueLimits::unbounded`] relaxes sizes, rates and the backlog.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use bindery_core::queues::{
//!     ConsumerSettings, QueueBroker, QueueProducer, SendOptions, handler_fn,
//! };
//! use bindery_queues::Queues;
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let queues = Queues::open(dir.path().join("queues.redb")).await?;
//! let producer = queues.producer("jobs").await?;
//! let metrics = producer.send(r#"{"job": 1}"#.into(), SendOptions::default()).await?;
//! assert_eq!(metrics.backlog_count, 1);
//!
//! let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
//! let handler = handler_fn(move |batch| {
//!     let tx = tx.clone();
//!     async move {
//!         for m in batch.messages() {
//!             tx.send(m.message().json::<serde_json::Value>().unwrap()).unwrap();
//!             m.ack();
//!         }
//!         Ok(())
//!     }
//! });
//! let settings = ConsumerSettings { max_batch_timeout_ms: 0, ..Default::default() };
//! let consumer = queues.start_push_consumer("jobs", settings, Arc::new(handler)).await?;
//! assert_eq!(rx.recv().await, Some(serde_json::json!({"job": 1})));
//! consumer.shutdown().await;
//! # Ok(()) }
//! ```

mod broker;
mod committer;
mod engine;
mod producer;
mod pull;
mod push;
mod record;
mod registry;

pub use bindery_core::queues::{QueueError, QueueHandler, QueueLimits, QueueProducer, QueueResult};
pub use broker::{Queues, QueuesBuilder};
pub use producer::Producer;
