//! [`Database`]: one D1 database in one SQLite file, with its writer thread and readers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bindery_core::d1::{
    D1Database, D1Error, D1ExecResult, D1ExportOptions, D1ImportResult, D1Limits, D1QueryOptions,
    D1QueryResult, D1Response, D1Result, D1Statement,
};
use bindery_core::{ByteStream, SharedClock, SystemClock};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use crate::export;
use crate::guard::{self, Control, Durability, Role, StopReason};
use crate::readers::{Reader, Readers};
use crate::statement::{self, Ctx, ReadOutcome};
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
}

impl Default for D1Builder {
    fn default() -> Self {
        Self {
            clock: SystemClock::shared(),
            limits: D1Limits::cloudflare(),
            durability: Durability::PowerLoss,
            readers: 4,
            inline_reads: true,
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
    #[allow(dead_code)]
    pub clock: SharedClock,
}

/// One D1 database: a SQLite file in WAL mode, one writer thread with group commit, and a
/// pool of readers. Cheap to clone; clones share the database.
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
        let conn = guard::open(&path, Role::Writer, &b.limits, b.durability, &control)
            .map_err(|e| D1Error::engine("opening the database", e))?;
        let served_by = format!("bindery-d1:{name}");
        let writer = Writer::start(conn, control, b.limits.clone(), served_by.clone(), None)?;
        let readers = Readers::new(path.clone(), b.limits.clone(), b.readers);
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
            let checked = statement::check(stmt, &self.inner.limits)?;
            if checked.looks_read_only
                && !checked.has_pragma
                && let Some(r) = self.read(stmt).await?
            {
                return Ok(vec![r]);
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
        let _ = options;
        Ok(D1Response {
            results: self.run_statements(statements).await?,
            bookmark: None,
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
}
