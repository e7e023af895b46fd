//! Cloudflare D1 on one machine: SQLite with D1's API, limits and errors.
//!
//! [`Database`] implements [`bindery_core::d1::D1Database`]: one database in one SQLite file
//! (bundled SQLite with FTS5, JSON, math functions and R*Tree), in WAL mode, with one writer
//! thread per database that commits concurrent writers together (one fsync per group, each
//! statement succeeding or failing on its own) and a pool of readers that see committed state
//! only. [`Catalog`] implements [`bindery_core::d1::D1Catalog`]: many named databases in one
//! folder, opened lazily and kept in a bounded LRU of open handles, so thousands of tenant
//! databases work with bounded file descriptors and memory.
//!
//! # What it emulates
//!
//! - `prepare`/`bind` (positional `?` and `?NNN` only), `first`/`all`/`raw`/`run`
//!   ([`bindery_core::d1::D1DatabaseExt`]), `batch` (one transaction, rolled back whole on
//!   error), `exec` (line by line, not transactional), with D1's result shape and `meta`.
//! - D1's limits with D1's errors: 100 bound parameters, 100,000-byte statements, 2,000,000-byte
//!   strings, blobs and rows, 100 columns, 32 function arguments, 50-byte LIKE patterns,
//!   30 s per query or batch (a runaway query is interrupted; the database stays usable),
//!   10 GB per database.
//! - Safety: `ATTACH`, `VACUUM`, `load_extension`, and pragmas outside D1's documented list
//!   (`writable_schema`, `journal_mode`, ...) are refused by an authorizer; `BEGIN`, `COMMIT`
//!   and friends are rejected as D1 rejects them. Foreign keys are enforced; `PRAGMA
//!   defer_foreign_keys = on` defers them to the end of the statement's transaction.
//! - Export as SQL text and import of SQL files in time linear in their size.
//! - Time Travel (on by default): every committed transaction is archived, page by page,
//!   with its commit time (read from the WAL before any checkpoint), plus periodic base
//!   snapshots, for the retention window (30 days by the clock). Bookmarks name commits and
//!   sort by age; a timestamp maps to the last commit at or before it, always the same one.
//!   [`bindery_core::d1::D1Database::restore`] replaces the database in place, atomically
//!   (queries running on it fail with a clear error), and returns the bookmark that undoes
//!   it; [`Database::fork_to`] and [`Catalog::fork`] restore a point into a new database
//!   instead. Retention pruning keeps every point inside the window restorable.
//! - Sessions and read replicas: with [`D1Builder::read_replicas`], reads made in a session
//!   ([`bindery_core::d1::D1Session`], or a session constraint on
//!   [`bindery_core::d1::D1QueryOptions`]) go to replicas fed from the archive with a lag
//!   under the clock; a replica behind the session's bookmark catches up first, so sessions
//!   read their writes and never go back in time. `meta.served_by_primary` and
//!   `meta.served_by_region` say who answered. Without a session the primary answers.
//!
//! # What it does not
//!
//! No network: it is the storage engine, not D1's HTTP API (the `bindery` server speaks
//! workerd's protocol on top of it). Account-level quotas (databases per account, free-plan
//! daily row limits) are not modelled. Nothing is retried automatically, so
//! `meta.total_attempts` is always 1. A process crash can lose the commit *times* of the
//! last few commits from the archive (never their contents, which stay in the WAL until
//! archived): they are archived again at the next open, stamped with that time. Only
//! single-statement reads go to replicas; batches in a session run on the primary. In a
//! batch, `meta.size_after` of every writing statement is the size after the whole batch.
//!
//! # Example
//!
//! ```
//! use bindery_core::d1::{D1DatabaseExt, D1Database, D1Statement, D1Value};
//! use bindery_d1::Database;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let db = Database::open(dir.path().join("app.sqlite")).await?;
//! db.exec("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)").await?;
//! let insert = D1Statement::new("INSERT INTO users (name) VALUES (?)");
//! db.batch(&[insert.bind(["ada"]), insert.bind(["grace"])]).await?;
//! let name = db
//!     .first_column(&D1Statement::new("SELECT name FROM users WHERE id = ?").bind([2]), "name")
//!     .await?;
//! assert_eq!(name, Some(D1Value::from("grace")));
//! # Ok(()) }
//! ```

mod archive;
mod catalog;
mod database;
mod export;
mod guard;
mod math;
mod readers;
mod replica;
mod sql_text;
mod statement;
mod time_travel;
mod wal;
mod writer;

pub use bindery_core::d1::{D1Error, D1Limits, D1Result};
pub use catalog::{Catalog, CatalogDatabase, DEFAULT_OPEN_CAPACITY};
pub use database::{D1Builder, Database};
pub use guard::Durability;
pub use replica::ReplicaConfig;

/// The rusqlite this crate links (bundled SQLite), for opening the same files directly or
/// comparing against raw SQLite.
pub use rusqlite;
