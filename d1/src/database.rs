//! [`Database`]: one D1 database in one SQLite file, with its writer thread and readers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use bindery_core::d1::{
    D1Database, D1Error, D1ExecResult, D1ExportOptions, D1ImportResult, D1Limits, D1QueryOptions,
    D1QueryResult, D1Response, D1RestoreResult, D1RestoreTarget, D1Result, D1SessionConstraint,
    D1Statement,
};
use bindery_core::{ByteStream, SharedClock, SystemClock};
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::RwLock;
use tokio::sync::{mpsc, oneshot};

use crate::export;
use crate::guard::{self, Control, Durability, Role, StopReason};
use crate::readers::{Reader, Readers};
use crate::replica::{Replica, ReplicaConfig};
use crate::statement::{self, Ctx, ReadOutcome};
use crate::time_travel::{Cadence, TimeTravel};
use crate::writer::{Job, Writer};

/// Progress callbacks (of 1000 virtual-machine steps each) a read may use on the caller's
/// thread before it moves to the blocking pool.
const INLINE_BUDGET: i64 = 50;

/// Runs a blocking call on Tokio's blocking pool.
pub(crate) async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> D1Result<T> + Send + 'static,
) -> D1Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| D1Error::engine("blocking task", e))?
}

/// Configures and opens a [`Database`].
#[derive(Clone)]
pub struct D1Builder {
    pub(crate) clock: SharedClock,
    pub(crate) limits: D1Limits,
    pub(crate) durability: Durability,
    pub(crate) readers: usize,
    pub(crate) inline_reads: bool,
    pub(crate) time_travel: bool,
    pub(crate) cadence: Cadence,
    pub(crate) replicas: Vec<ReplicaConfig>,
}

impl Default for D1Builder {
    fn default() -> Self {
        Self {
            clock: SystemClock::shared(),
            limits: D1Limits::cloudflare(),
            durability: Durability::PowerLoss,
            readers: 4,
            inline_reads: true,
            time_travel: true,
            cadence: Cadence::default(),
            replicas: Vec::new(),
        }
    }
}

impl std::fmt::Debug for D1Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("D1Builder")
            .field("limits", &self.limits)
            .field("durability", &self.durability)
            .field("readers", &self.readers)
            .field("inline_reads", &self.inline_reads)
            .field("time_travel", &self.time_travel)
            .field("cadence", &self.cadence)
            .field("replicas", &self.replicas)
            .finish_non_exhaustive()
    }
}

impl D1Builder {
    /// The clock for commit times and Time Travel. Default: [`SystemClock`].
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The limits to enforce. Default: [`D1Limits::cloudflare`].
    pub fn limits(mut self, limits: D1Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Durability of commits. Default: [`Durability::PowerLoss`] (`synchronous=FULL`).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Most reader connections per database. Default: 4.
    pub fn readers(mut self, readers: usize) -> Self {
        self.readers = readers.max(1);
        self
    }

    /// Whether a single-statement read first runs on the calling task, for at most about
    /// 50,000 SQLite virtual-machine steps (well under a millisecond), before it moves to the
    /// blocking pool. Point queries then cost no thread hand-off. Default: `true`.
    pub fn inline_reads(mut self, on: bool) -> Self {
        self.inline_reads = on;
        self
    }

    /// Whether every commit is archived for Time Travel (bookmarks, restore, fork) for the
    /// window in [`D1Limits::time_travel_retention_secs`]. Default: `true`, as on D1.
    pub fn time_travel(mut self, on: bool) -> Self {
        self.time_travel = on;
        self
    }

    /// WAL size at which Time Travel makes its archive durable and checkpoints the WAL into
    /// the database file. Default: 4 MiB.
    pub fn checkpoint_wal_bytes(mut self, bytes: u64) -> Self {
        self.cadence.checkpoint_wal_bytes = bytes.max(1);
        self
    }

    /// Archive growth between two Time Travel base snapshots (a snapshot is also never
    /// taken before the archive grew by the database's size). Smaller values make restores
    /// replay less and cost more disk. Default: 64 MiB.
    pub fn snapshot_every_bytes(mut self, bytes: u64) -> Self {
        self.cadence.snapshot_bytes = bytes;
        self
    }

    /// Read replicas, fed from the Time Travel archive, each in its region and with its lag
    /// under the clock. Reads reach them only through sessions
    /// ([`bindery_core::d1::D1QueryOptions::session`]); without a session everything goes to
    /// the primary. Needs Time Travel. Default: none.
    pub fn read_replicas(mut self, replicas: Vec<ReplicaConfig>) -> Self {
        self.replicas = replicas;
        self
    }

    /// Opens (creating if needed) the database stored in the SQLite file at `path`.
    ///
    /// # Errors
    ///
    /// [`D1Error::Engine`] if the file cannot be opened or is not a SQLite database.
    pub async fn open(self, path: impl AsRef<Path>) -> D1Result<Database> {
        let path = path.as_ref().to_owned();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "d1".into());
        run_blocking(move || Database::open_blocking(self, path, name)).await
    }
}

pub(crate) struct Inner {
    pub name: String,
    pub path: PathBuf,
    pub served_by: String,
    pub limits: D1Limits,
    pub writer: Writer,
    pub readers: Readers,
    pub inline_reads: bool,
    pub deleted: AtomicBool,
    pub clock: SharedClock,
    pub durability: Durability,
    pub time_travel: Option<Arc<TimeTravel>>,
    /// Held shared by every read; a restore holds it exclusively while it swaps the file.
    pub swap: Arc<RwLock<()>>,
    pub replicas: Vec<Replica>,
    pub next_replica: AtomicUsize,
}

/// One D1 database: a SQLite file in WAL mode, one writer thread with group commit, and a
/// pool of readers. Cheap to clone; clones share the database. Dropping the last clone waits
/// until the writer has run the jobs it holds and synced the Time Travel archive.
#[derive(Clone)]
pub struct Database {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("name", &self.inner.name)
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// A builder with the defaults.
    pub fn builder() -> D1Builder {
        D1Builder::default()
    }

    /// Opens (creating if needed) the database at `path` with the defaults.
    ///
    /// # Errors
    ///
    /// See [`D1Builder::open`].
    pub async fn open(path: impl AsRef<Path>) -> D1Result<Database> {
        D1Builder::default().open(path).await
    }

    pub(crate) fn open_blocking(b: D1Builder, path: PathBuf, name: String) -> D1Result<Database> {
        let control = Arc::new(Control::new());
        if b.time_travel {
            TimeTravel::recover(&path)
                .map_err(|e| D1Error::engine("finishing an interrupted restore", e))?;
        }
        let conn = guard::open(
            &path,
            Role::Writer,
            &b.limits,
            b.durability,
            &control,
            b.time_travel,
        )
        .map_err(|e| D1Error::engine("opening the database", e))?;
        let time_travel = if b.time_travel {
            Some(control.internal(|| {
                TimeTravel::open(
                    &path,
                    &conn,
                    Arc::clone(&b.clock),
                    b.limits.time_travel_retention_secs,
                    b.cadence,
                )
            })?)
        } else {
            None
        };
        let served_by = format!("bindery-d1:{name}");
        let writer = Writer::start(
            conn,
            control,
            b.limits.clone(),
            served_by.clone(),
            time_travel.clone(),
        )?;
        let readers = Readers::new(path.clone(), b.limits.clone(), b.readers, b.time_travel);
        let replicas = if b.time_travel {
            let dir = crate::archive::Archive::dir_for(&path);
            b.replicas
                .iter()
                .map(|c| Replica::new(c.clone(), &dir, &name, b.limits.clone()))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Database {
            inner: Arc::new(Inner {
                name,
                path,
                served_by,
                limits: b.limits,
                writer,
                readers,
                inline_reads: b.inline_reads,
                deleted: AtomicBool::new(false),
                clock: b.clock,
                durability: b.durability,
                time_travel,
                swap: Arc::new(RwLock::new(())),
                replicas,
                next_replica: AtomicUsize::new(0),
            }),
        })
    }

    /// The database's name (its file name without extension, or its catalog name).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The SQLite file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn check_live(&self) -> D1Result<()> {
        if self.inner.deleted.load(Ordering::Acquire) {
            return Err(D1Error::NotFound {
                name: self.inner.name.clone(),
            });
        }
        Ok(())
    }

    async fn write(&self, stmts: Vec<D1Statement>) -> D1Result<Vec<D1QueryResult>> {
        let (reply, rx) = oneshot::channel();
        self.inner.writer.send(Job::Batch { stmts, reply })?;
        rx.await.map_err(|_| D1Error::Closed)?
    }

    fn read_on(
        inner: &Inner,
        reader: &Reader,
        stmt: &D1Statement,
        budget: i64,
    ) -> D1Result<ReadOutcome> {
        let checked = statement::check(stmt, &inner.limits)?;
        let ctx = Ctx {
            conn: &reader.conn,
            control: &reader.control,
            limits: &inner.limits,
            served_by: &inner.served_by,
            replica_region: None,
        };
        reader.control.set_budget(budget);
        reader.control.start_deadline(inner.limits.max_query_ms);
        let size = inner.writer.size.load(Ordering::Acquire);
        let r = statement::run(&ctx, stmt, &checked, true, Some(size), false);
        reader.control.set_budget(-1);
        reader.control.clear_deadline();
        r
    }

    /// Runs a single statement that looks like a read on a reader; `None` if it writes.
    async fn read(&self, stmt: &D1Statement) -> D1Result<Option<D1QueryResult>> {
        let inner = &self.inner;
        if inner.inline_reads
            && let Some(reader) = inner.readers.try_take()?
        {
            let r = Self::read_on(inner, &reader, stmt, INLINE_BUDGET);
            let stopped = reader.control.stop_reason() == StopReason::Budget;
            inner.readers.put(reader);
            match r {
                Ok(ReadOutcome::Done(res)) => return Ok(Some(res)),
                Ok(ReadOutcome::NeedsWriter) => return Ok(None),
                Err(_) if stopped => {}
                Err(e) => return Err(e),
            }
        }
        let inner = Arc::clone(&self.inner);
        let stmt = stmt.clone();
        run_blocking(move || {
            let _shared = inner.swap.read();
            let reader = inner.readers.take()?;
            let r = Self::read_on(&inner, &reader, &stmt, -1);
            inner.readers.put(reader);
            match r? {
                ReadOutcome::Done(res) => Ok(Some(res)),
                ReadOutcome::NeedsWriter => Ok(None),
            }
        })
        .await
    }

    fn tt(&self) -> D1Result<&Arc<TimeTravel>> {
        self.inner.time_travel.as_ref().ok_or(D1Error::Unsupported {
            what: "Time Travel (it is off for this database)",
        })
    }

    /// Writes the state at `target` into a new database file at `path` (Time Travel's
    /// fork: the database itself is left untouched).
    ///
    /// # Errors
    ///
    /// [`D1Error::BookmarkNotFound`] for a target outside the archive or the window.
    pub async fn fork_to(&self, target: D1RestoreTarget, path: impl AsRef<Path>) -> D1Result<()> {
        self.check_live()?;
        let tt = Arc::clone(self.tt()?);
        let path = path.as_ref().to_owned();
        run_blocking(move || {
            if path.exists() {
                return Err(D1Error::AlreadyExists {
                    name: path.display().to_string(),
                });
            }
            let mut tmp = path.clone().into_os_string();
            tmp.push(".fork.tmp");
            let tmp = std::path::PathBuf::from(tmp);
            tt.materialize(&target, &tmp)?;
            std::fs::rename(&tmp, &path).map_err(|e| D1Error::engine("installing a fork", e))
        })
        .await
    }

    /// Removes archive and snapshots older than the Time Travel window; returns bytes freed.
    ///
    /// # Errors
    ///
    /// [`D1Error::Engine`] if files cannot be removed.
    pub async fn prune_history(&self) -> D1Result<u64> {
        let tt = Arc::clone(self.tt()?);
        run_blocking(move || tt.prune()).await
    }

    /// Bytes the Time Travel archive occupies on disk (0 with Time Travel off).
    pub async fn history_bytes(&self) -> u64 {
        match self.inner.time_travel.clone() {
            Some(tt) => run_blocking(move || Ok(tt.disk_bytes())).await.unwrap_or(0),
            None => 0,
        }
    }

    /// Runs a read on the next replica in turn; `None` if the statement writes.
    async fn read_on_replica(
        &self,
        stmt: &D1Statement,
        at_least: u64,
    ) -> D1Result<Option<(D1QueryResult, u64)>> {
        let inner = Arc::clone(&self.inner);
        let Some(tt) = inner.time_travel.clone() else {
            return Ok(None);
        };
        let i = inner.next_replica.fetch_add(1, Ordering::Relaxed) % inner.replicas.len();
        let stmt = stmt.clone();
        run_blocking(move || {
            let replica = &inner.replicas[i];
            let (r, seq) = replica.read(&tt, &inner.clock, at_least, &stmt)?;
            Ok(r.map(|r| (r, seq)))
        })
        .await
    }

    /// Runs the statements (one transaction).
    pub(crate) async fn run_statements(
        &self,
        statements: &[D1Statement],
    ) -> D1Result<Vec<D1QueryResult>> {
        self.check_live()?;
        if statements.is_empty() {
            return Ok(Vec::new());
        }
        if let [stmt] = statements {
            // Statements that cannot be reads go straight to the writer, which checks them.
            let maybe_read = matches!(
                crate::sql_text::first_keyword(stmt.sql()).as_deref(),
                Some("SELECT" | "WITH" | "VALUES")
            );
            if maybe_read {
                let checked = statement::check(stmt, &self.inner.limits)?;
                if checked.looks_read_only
                    && !checked.has_pragma
                    && let Some(r) = self.read(stmt).await?
                {
                    return Ok(vec![r]);
                }
            }
        }
        self.write(statements.to_vec()).await
    }
}

#[async_trait]
impl D1Database for Database {
    async fn query_batch(
        &self,
        statements: &[D1Statement],
        options: &D1QueryOptions,
    ) -> D1Result<D1Response> {
        let Some(session) = &options.session else {
            // Without a session everything goes to the primary, and no bookmark is needed.
            let results = self.run_statements(statements).await?;
            return Ok(D1Response {
                results,
                bookmark: None,
            });
        };
        self.check_live()?;
        let Some(tt) = self.inner.time_travel.clone() else {
            // Without Time Travel there are no bookmarks and no replicas: the primary serves
            // every query, which satisfies every session constraint.
            let results = self.run_statements(statements).await?;
            return Ok(D1Response {
                results,
                bookmark: None,
            });
        };
        let at_least = match session {
            D1SessionConstraint::Bookmark(b) => {
                let Some((seq, _)) = crate::archive::parse_bookmark(b) else {
                    return Err(D1Error::Session {
                        detail: format!("{b:?} is not a bookmark"),
                    });
                };
                if seq > tt.seq() {
                    return Err(D1Error::Session {
                        detail: format!("{b:?} names a commit this database has not made"),
                    });
                }
                Some(seq)
            }
            D1SessionConstraint::FirstUnconstrained => Some(0),
            D1SessionConstraint::FirstPrimary => None,
        };
        if let (Some(at_least), [stmt]) = (at_least, statements)
            && !self.inner.replicas.is_empty()
        {
            let checked = statement::check(stmt, &self.inner.limits)?;
            if checked.looks_read_only
                && !checked.has_pragma
                && let Some((result, seq)) = self.read_on_replica(stmt, at_least).await?
            {
                let bookmark = tt.bookmark_of(seq);
                return Ok(D1Response {
                    results: vec![result],
                    bookmark: Some(bookmark),
                });
            }
        }
        let results = self.run_statements(statements).await?;
        Ok(D1Response {
            results,
            bookmark: Some(tt.bookmark()),
        })
    }

    async fn exec(&self, sql: &str) -> D1Result<D1ExecResult> {
        self.check_live()?;
        if sql.trim().is_empty() {
            return Err(D1Error::NoStatements);
        }
        let (reply, rx) = oneshot::channel();
        self.inner.writer.send(Job::Exec {
            sql: sql.to_owned(),
            reply,
        })?;
        rx.await.map_err(|_| D1Error::Closed)?
    }

    async fn export(&self, options: D1ExportOptions) -> D1Result<ByteStream> {
        self.check_live()?;
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let _shared = inner.swap.read();
            let reader = match inner.readers.take() {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            };
            let r = export::export(&reader.conn, &reader.control, &options, |chunk| {
                tx.blocking_send(Ok(Bytes::from(chunk))).is_ok()
            });
            inner.readers.put(reader);
            if let Err(e) = r {
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Box::pin(stream))
    }

    async fn import(&self, mut sql: ByteStream) -> D1Result<D1ImportResult> {
        self.check_live()?;
        let (tx, chunks) = mpsc::channel(8);
        let (reply, rx) = oneshot::channel();
        self.inner.writer.send(Job::Import { chunks, reply })?;
        while let Some(chunk) = sql.next().await {
            if tx.send(chunk).await.is_err() {
                break;
            }
        }
        drop(tx);
        rx.await.map_err(|_| D1Error::Closed)?
    }

    async fn size(&self) -> D1Result<u64> {
        self.check_live()?;
        Ok(self.inner.writer.size.load(Ordering::Acquire))
    }

    async fn bookmark(&self) -> D1Result<String> {
        self.check_live()?;
        Ok(self.tt()?.bookmark())
    }

    async fn bookmark_at(&self, timestamp_ms: u64) -> D1Result<String> {
        self.check_live()?;
        self.tt()?.bookmark_at(timestamp_ms)
    }

    async fn restore(&self, target: D1RestoreTarget) -> D1Result<D1RestoreResult> {
        self.check_live()?;
        let tt = Arc::clone(self.tt()?);
        let inner = Arc::clone(&self.inner);
        let (reply, rx) = oneshot::channel();
        let run: crate::writer::MaintenanceFn = Box::new(move |conn, control| {
            let r = tt.restore(
                conn,
                control,
                &inner.limits,
                inner.durability,
                &inner.readers,
                &inner.swap,
                &target,
            );
            let _ = reply.send(r);
        });
        self.inner.writer.send(Job::Maintenance { run })?;
        rx.await.map_err(|_| D1Error::Closed)?
    }
}
