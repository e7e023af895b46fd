//! Cloudflare Workers KV on one machine.
//!
//! [`KvNamespace`] implements [`bindery_core::kv::KvStore`] with the platform's semantics:
//! keys up to 512 bytes in UTF-8 byte order, values up to 25 MiB, JSON metadata up to
//! 1024 bytes, expirations at least 60 s ahead (expired keys vanish the instant the clock
//! passes them, and a background sweeper deletes them), list pages of up to 1000 keys with
//! opaque cursors, bulk gets of up to 100 keys, and the 1 write per second per key limit.
//!
//! Two engines: a durable one on [redb](https://docs.rs/redb) (every acknowledged write is
//! fsynced; concurrent writers share one commit) and an in-memory one. Both pass the same
//! conformance suite (`bindery-conformance`).
//!
//! # Edge-cache model
//!
//! KV on Cloudflare is eventually consistent: each location caches what it read for
//! `cache_ttl` seconds (default 60, minimum 30), absent keys included. Bindery models this
//! deterministically: [`KvNamespace::at_location`] gives a handle with its own read cache. A
//! write is visible at once through the location that made it and elsewhere once the cached
//! entry ages out by the clock. With the single default location, KV reads its own writes.
//!
//! # What it is not
//!
//! Not a distributed store: there is one copy of the data, on this machine. Free-plan daily
//! quotas are not modelled.
//!
//! # Example
//!
//! ```
//! use bindery_core::kv::{GetOptions, KvStore, KvStoreExt, PutOptions};
//! use bindery_kv::KvNamespace;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let kv = KvNamespace::open(dir.path().join("kv.redb")).await?;
//! let ttl = PutOptions { expiration_ttl: Some(3600), metadata: Some(serde_json::json!({"lang": "en"})), ..Default::default() };
//! kv.put("greeting", "hello".into(), ttl).await?;
//! assert_eq!(kv.get_text("greeting").await?.as_deref(), Some("hello"));
//! let entry = kv.get_with_metadata("greeting", GetOptions::default()).await?.unwrap();
//! assert_eq!(entry.metadata, Some(serde_json::json!({"lang": "en"})));
//! # Ok(()) }
//! ```

mod committer;
mod cursor;
mod edge_cache;
mod engine;
mod memory;
mod namespace;
mod redb_engine;

pub use bindery_core::kv::{KvError, KvLimits, KvResult};
pub use namespace::{DEFAULT_LOCATION, KvBuilder, KvNamespace, KvStats};
