//! One object's storage: its own SQLite database (WAL mode), opened on first use.
//!
//! Writes of one event go into one SQLite transaction, begun at the first write and
//! committed when the event ends (or at `sync()`, or before an outgoing call). Committing
//! appends to the WAL without an fsync on the object's thread; the commit's files are then
//! handed to the [`committer`](crate::committer), whose fsync releases the gated replies.
//!
//! Tables: `_cf_KV` (key TEXT primary key, UTF-8 byte order; value BLOB) and `_cf_ALARM`
//! (one row: time and retry count). User SQL may not touch names starting with `_cf_`, and
//! may not manage transactions; both are enforced by an SQLite authorizer.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bindery_core::SharedClock;
use bindery_core::durable::{
    BoxFuture, DurableError, DurableLimits, DurableObjectId, DurableResult, DurableStorage,
    ListOptions, SqlCursor, SqlValue,
};
use bytes::Bytes;
use fallible_iterator::FallibleIterator;
use parking_lot::Mutex;
use rusqlite::hooks::AuthContext;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};

use crate::alarms::{AlarmIndex, AlarmQueue, Due};
use crate::committer::{Committer, Job, Mark, Release, Target};
use crate::sql::{AuthState, Denied, authorize, from_sql, to_sql};

/// What every object's storage of one runtime shares.
pub(crate) struct StorageEnv {
    pub committer: Committer,
    pub alarms: AlarmIndex,
    pub clock: SharedClock,
    pub limits: Arc<DurableLimits>,
}

struct Open {
    conn: Connection,
    wal: Option<Arc<File>>,
    /// Files and directories to fsync once with the next commit (a new database).
    first_sync: Vec<Target>,
}

struct Inner {
    open: Option<Open>,
    in_tx: bool,
    dirty: bool,
    savepoints: u32,
    index_file: Option<Arc<File>>,
    broken: Option<String>,
    alarm_running: bool,
    alarm_set_during_run: bool,
    /// Replies and messages of events whose writes are in the open transaction.
    held: Vec<Release>,
    /// Events whose writes share the open transaction.
    batched: u32,
}

/// Most events whose writes share one commit.
const MAX_BATCH_EVENTS: u32 = 256;

/// One object's storage; implements the contract's [`DurableStorage`].
pub(crate) struct ObjectStorage {
    inner: Mutex<Inner>,
    auth: Arc<AuthState>,
    mark: Mutex<Arc<Mark>>,
    dir: PathBuf,
    path: PathBuf,
    ns: Arc<str>,
    id: DurableObjectId,
    env: Arc<StorageEnv>,
    queue: Arc<AlarmQueue>,
}

fn engine(op: &'static str) -> impl Fn(rusqlite::Error) -> DurableError {
    move |e| DurableError::storage(op, e)
}

/// Whether an SQLite error means the storage itself failed (reset the object) rather than
/// the statement being wrong.
fn is_engine_failure(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => matches!(
            f.code,
            ErrorCode::SystemIoFailure
                | ErrorCode::DatabaseCorrupt
                | ErrorCode::NotADatabase
                | ErrorCode::CannotOpen
                | ErrorCode::OutOfMemory
                | ErrorCode::InternalMalfunction
                | ErrorCode::FileLockingProtocolFailed
        ),
        _ => false,
    }
}

/// The smallest string above every string that starts with `prefix`, as raw UTF-8 bytes
/// (`None` when there is none: an empty prefix).
fn prefix_upper(prefix: &str) -> Option<Vec<u8>> {
    let mut b = prefix.as_bytes().to_vec();
    // UTF-8 never contains 0xFF, so incrementing the last byte cannot overflow.
    let last = b.last_mut()?;
    *last += 1;
    Some(b)
}

impl ObjectStorage {
    pub(crate) fn new(
        env: Arc<StorageEnv>,
        root: &std::path::Path,
        ns: Arc<str>,
        id: DurableObjectId,
        queue: Arc<AlarmQueue>,
    ) -> Self {
        let hex = id.to_hex();
        let dir = root.join(&hex[..2]);
        let path = dir.join(format!("{hex}.sqlite"));
        Self {
            inner: Mutex::new(Inner {
                open: None,
                in_tx: false,
                dirty: false,
                savepoints: 0,
                index_file: None,
                broken: None,
                alarm_running: false,
                alarm_set_during_run: false,
                held: Vec::new(),
                batched: 0,
            }),
            auth: Arc::new(AuthState::default()),
            mark: Mutex::new(Arc::new(Mark::default())),
            dir,
            path,
            ns,
            id,
            env,
            queue,
        }
    }

    pub(crate) fn mark(&self) -> Arc<Mark> {
        Arc::clone(&self.mark.lock())
    }

    pub(crate) fn committer(&self) -> &Committer {
        &self.env.committer
    }

    /// Opens the database if needed. With `create == false` a missing database stays
    /// missing (reads of an object that never wrote create nothing).
    fn ensure_open<'a>(
        &self,
        g: &'a mut Inner,
        create: bool,
    ) -> DurableResult<Option<&'a Connection>> {
        if g.open.is_none() {
            let exists = self.path.exists();
            if !exists && !create {
                return Ok(None);
            }
            let mut first_sync = Vec::new();
            if !exists {
                let parent_existed = self.dir.exists();
                std::fs::create_dir_all(&self.dir)
                    .map_err(|e| DurableError::storage("create object directory", e))?;
                if !parent_existed && let Some(p) = self.dir.parent() {
                    first_sync.push(Target::Dir(p.to_owned()));
                }
            }
            let conn = Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(engine("open object database"))?;
            conn.execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;
                 CREATE TABLE IF NOT EXISTS _cf_KV (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS _cf_ALARM (id INTEGER PRIMARY KEY CHECK (id = 0),
                     scheduled_ms INTEGER NOT NULL, retry_count INTEGER NOT NULL);",
            )
            .map_err(engine("open object database"))?;
            let mut conn = conn;
            let auth = Arc::clone(&self.auth);
            conn.authorizer(Some(move |ctx: AuthContext<'_>| authorize(&auth, ctx)))
                .map_err(engine("open object database"))?;
            if !exists {
                let f = File::open(&self.path)
                    .map_err(|e| DurableError::storage("open object database", e))?;
                first_sync.push(Target::File(Arc::new(f)));
            }
            // The WAL file is (re)created by this connection: its directory entry must be
            // durable with the first commit.
            first_sync.push(Target::Dir(self.dir.clone()));
            g.open = Some(Open {
                conn,
                wal: None,
                first_sync,
            });
        }
        Ok(g.open.as_ref().map(|o| &o.conn))
    }

    /// Opens for writing and begins the event's transaction.
    fn begin_write<'a>(&self, g: &'a mut Inner) -> DurableResult<&'a Connection> {
        if let Some(reason) = &g.broken {
            return Err(DurableError::Reset {
                reason: reason.clone(),
            });
        }
        self.ensure_open(g, true)?;
        if !g.in_tx {
            let conn = &g.open.as_ref().ok_or(DurableError::Closed)?.conn;
            conn.execute_batch("BEGIN").map_err(engine("begin"))?;
            g.in_tx = true;
        }
        Ok(&g.open.as_ref().ok_or(DurableError::Closed)?.conn)
    }

    /// Converts an SQLite error, marking the event failed when the storage itself failed
    /// or SQLite rolled the event's transaction back.
    fn fail(&self, g: &mut Inner, op: &'static str, e: rusqlite::Error) -> DurableError {
        let rolled_back = g.in_tx && g.open.as_ref().is_some_and(|o| o.conn.is_autocommit());
        if is_engine_failure(&e) || rolled_back {
            g.broken = Some(format!("storage failed during {op}: {e}"));
            if rolled_back {
                g.in_tx = false;
            }
        }
        DurableError::storage(op, e)
    }

    fn check_entry(&self, key: &str, value: &[u8]) -> DurableResult<()> {
        let len = key.len() + value.len();
        if len > self.env.limits.max_entry_bytes {
            let mut k: String = key.chars().take(64).collect();
            if k.len() < key.len() {
                k.push_str("...");
            }
            return Err(DurableError::EntryTooLarge {
                key: k,
                len,
                limit: self.env.limits.max_entry_bytes,
            });
        }
        Ok(())
    }

    fn check_batch(&self, count: usize) -> DurableResult<()> {
        if count > self.env.limits.max_batch_keys {
            return Err(DurableError::TooManyKeys {
                count,
                limit: self.env.limits.max_batch_keys,
            });
        }
        Ok(())
    }

    fn write<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> DurableResult<T> {
        let mut g = self.inner.lock();
        let conn = self.begin_write(&mut g)?;
        match f(conn) {
            Ok(v) => {
                g.dirty = true;
                Ok(v)
            }
            Err(e) => Err(self.fail(&mut g, op, e)),
        }
    }

    fn read<T>(
        &self,
        op: &'static str,
        empty: T,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> DurableResult<T> {
        let mut g = self.inner.lock();
        if let Some(reason) = &g.broken {
            return Err(DurableError::Reset {
                reason: reason.clone(),
            });
        }
        let Some(conn) = self.ensure_open(&mut g, false)? else {
            return Ok(empty);
        };
        match f(conn) {
            Ok(v) => Ok(v),
            Err(e) => Err(self.fail(&mut g, op, e)),
        }
    }

    /// Ends an event: commits its transaction and hands the commit to the committer.
    /// An error means the event failed and the object must be reset.
    pub(crate) fn finish_event(&self) -> DurableResult<()> {
        let mut g = self.inner.lock();
        g.batched = 0;
        if let Some(reason) = g.broken.clone() {
            // Stays broken until the actor resets the object (close()).
            self.rollback(&mut g);
            return Err(DurableError::Reset { reason });
        }
        if g.in_tx {
            let res = g
                .open
                .as_ref()
                .map(|o| o.conn.execute_batch("COMMIT"))
                .unwrap_or(Ok(()));
            g.in_tx = false;
            g.savepoints = 0;
            if let Err(e) = res {
                self.rollback(&mut g);
                return Err(DurableError::Reset {
                    reason: format!("commit failed: {e}"),
                });
            }
        }
        if g.dirty {
            g.dirty = false;
            let Some(open) = g.open.as_mut() else {
                return Ok(());
            };
            let mut targets = std::mem::take(&mut open.first_sync);
            if open.wal.is_none() {
                let mut p = self.path.clone().into_os_string();
                p.push("-wal");
                match File::open(&p) {
                    Ok(f) => open.wal = Some(Arc::new(f)),
                    Err(e) => {
                        return Err(DurableError::Reset {
                            reason: format!("opening the write-ahead log failed: {e}"),
                        });
                    }
                }
            }
            if let Some(w) = &open.wal {
                targets.push(Target::File(Arc::clone(w)));
            }
            if let Some(f) = g.index_file.take() {
                targets.insert(0, Target::File(f));
            }
            let mark = self.mark();
            let seq = mark.submitted.fetch_add(1, Ordering::AcqRel) + 1;
            self.env.committer.send(Job::Sync {
                targets,
                mark: Arc::clone(&mark),
                seq,
            });
            for release in g.held.drain(..) {
                self.env.committer.send(Job::Release {
                    mark: Arc::clone(&mark),
                    release,
                });
            }
        }
        Ok(())
    }

    /// Ends an event. While more events wait (`more`), the open transaction stays open so
    /// that the next events' writes share its commit (and its fsync); the event's reply is
    /// held until then.
    pub(crate) fn end_event(&self, more: bool) -> DurableResult<()> {
        {
            let mut g = self.inner.lock();
            if more
                && g.broken.is_none()
                && g.in_tx
                && g.dirty
                && g.savepoints == 0
                && g.batched < MAX_BATCH_EVENTS
            {
                g.batched += 1;
                return Ok(());
            }
        }
        self.finish_event()
    }

    /// Delivers `release` once every write made before it is durable: held with the open
    /// transaction, queued behind the committer's fsyncs, or at once.
    pub(crate) fn release(&self, release: Release) {
        {
            let mut g = self.inner.lock();
            if g.in_tx && g.dirty {
                g.held.push(release);
                return;
            }
        }
        let mark = self.mark();
        if mark.gated() {
            self.env.committer.send(Job::Release { mark, release });
        } else {
            release(!mark.failed.load(Ordering::Acquire));
        }
    }

    fn rollback(&self, g: &mut Inner) {
        if g.in_tx
            && let Some(o) = &g.open
        {
            let _ = o.conn.execute_batch("ROLLBACK");
        }
        g.in_tx = false;
        g.dirty = false;
        g.savepoints = 0;
        g.batched = 0;
        g.index_file = None;
        // What waited for the rolled-back writes is answered with an error.
        for release in g.held.drain(..) {
            release(false);
        }
    }

    /// Drops the connection (after rolling back anything uncommitted) and starts a new
    /// output-gate mark. Used when the object is reset or evicted.
    pub(crate) fn close(&self) {
        let mut g = self.inner.lock();
        self.rollback(&mut g);
        g.open = None;
        g.broken = None;
        g.alarm_running = false;
        g.alarm_set_during_run = false;
        let failed = self.mark.lock().failed.load(Ordering::Acquire);
        if failed {
            *self.mark.lock() = Arc::new(Mark::default());
        }
    }

    /// Whether the last commits failed to become durable (the object must be reset).
    pub(crate) fn durability_failed(&self) -> bool {
        self.mark.lock().failed.load(Ordering::Acquire)
    }

    /// The object's alarm row: time and retry count.
    pub(crate) fn alarm_row(&self) -> DurableResult<Option<(u64, u32)>> {
        self.read("get alarm", None, |c| {
            c.prepare_cached("SELECT scheduled_ms, retry_count FROM _cf_ALARM WHERE id = 0")?
                .query_row([], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u32))
                })
                .optional()
        })
    }

    /// Marks the start and end of an alarm handler (for `get_alarm`'s documented quirk).
    pub(crate) fn set_alarm_running(&self, running: bool) {
        let mut g = self.inner.lock();
        g.alarm_running = running;
        g.alarm_set_during_run = false;
    }

    pub(crate) fn alarm_set_during_run(&self) -> bool {
        self.inner.lock().alarm_set_during_run
    }

    /// Writes the alarm row with a retry count, recording the hint in the index first.
    pub(crate) fn write_alarm(&self, scheduled_ms: u64, retry_count: u32) -> DurableResult<()> {
        let file = self.env.alarms.upsert(&self.ns, &self.id, scheduled_ms)?;
        self.write("set alarm", |c| {
            c.prepare_cached(
                "INSERT OR REPLACE INTO _cf_ALARM (id, scheduled_ms, retry_count) VALUES (0, ?1, ?2)",
            )?
            .execute(params![scheduled_ms as i64, retry_count as i64])
        })?;
        let mut g = self.inner.lock();
        g.index_file = Some(file);
        drop(g);
        self.queue.push(Due {
            at_ms: scheduled_ms,
            id: self.id.clone(),
        });
        Ok(())
    }

    pub(crate) fn clear_alarm_row(&self) -> DurableResult<()> {
        self.write("delete alarm", |c| {
            c.prepare_cached("DELETE FROM _cf_ALARM")?.execute([])
        })?;
        Ok(())
    }

    pub(crate) fn drop_index_hint(&self, scheduled_ms: u64) {
        self.env.alarms.remove_if(&self.ns, &self.id, scheduled_ms);
    }

    fn exec_inner(
        &self,
        g: &mut Inner,
        sql: &str,
        bindings: &[SqlValue],
    ) -> DurableResult<SqlCursor> {
        let conn = self.begin_write(g)?;
        *self.auth.denied.lock() = None;
        self.auth.user.store(true, Ordering::Relaxed);
        let mut wrote = false;
        let result = (|| -> rusqlite::Result<SqlCursor> {
            let mut batch = rusqlite::Batch::new(conn, sql);
            let mut columns = Vec::new();
            let mut rows = Vec::new();
            let mut read = 0u64;
            let mut written = 0u64;
            while let Some(mut stmt) = batch.next()? {
                if !stmt.readonly() {
                    wrote = true;
                }
                if stmt.parameter_count() > 0 {
                    for i in 0..stmt.parameter_count() {
                        let v = bindings
                            .get(i)
                            .map(to_sql)
                            .unwrap_or(ToSqlOutput::Borrowed(ValueRef::Null));
                        stmt.raw_bind_parameter(i + 1, v)?;
                    }
                }
                columns = stmt.column_names().map(str::to_owned).collect();
                let ncol = columns.len();
                rows.clear();
                let before = conn.total_changes();
                let mut q = stmt.raw_query();
                while let Some(row) = q.next()? {
                    let mut vals = Vec::with_capacity(ncol);
                    for i in 0..ncol {
                        vals.push(from_sql(row.get_ref(i)?));
                    }
                    rows.push(vals);
                }
                drop(q);
                let changed = conn.total_changes().saturating_sub(before);
                written += changed;
                read += rows.len() as u64 + changed;
            }
            Ok(SqlCursor::new(columns, rows, read, written))
        })();
        self.auth.user.store(false, Ordering::Relaxed);
        if wrote {
            g.dirty = true;
        }
        match result {
            Ok(c) => Ok(c),
            Err(e) => {
                if let Some(d) = self.auth.denied.lock().take() {
                    return Err(match d {
                        Denied::Reserved(name) => DurableError::ReservedName { name },
                        Denied::Transaction => DurableError::TransactionStatement,
                        Denied::Other(message) => DurableError::invalid(message),
                    });
                }
                let broken = is_engine_failure(&e);
                let err = self.fail(g, "exec", e);
                if broken || g.broken.is_some() {
                    Err(err)
                } else {
                    Err(match err {
                        DurableError::Storage { source, .. } => DurableError::Sql {
                            message: source.to_string(),
                        },
                        other => other,
                    })
                }
            }
        }
    }
}

impl DurableStorage for ObjectStorage {
    fn get(&self, key: &str) -> DurableResult<Option<Bytes>> {
        self.read("get", None, |c| {
            c.prepare_cached("SELECT value FROM _cf_KV WHERE key = ?1")?
                .query_row([key], |r| r.get::<_, Vec<u8>>(0))
                .optional()
                .map(|v| v.map(Bytes::from))
        })
    }

    fn get_many(&self, keys: &[String]) -> DurableResult<BTreeMap<String, Bytes>> {
        self.check_batch(keys.len())?;
        self.read("get", BTreeMap::new(), |c| {
            let mut s = c.prepare_cached("SELECT value FROM _cf_KV WHERE key = ?1")?;
            let mut out = BTreeMap::new();
            for k in keys {
                if let Some(v) = s.query_row([k], |r| r.get::<_, Vec<u8>>(0)).optional()? {
                    out.insert(k.clone(), Bytes::from(v));
                }
            }
            Ok(out)
        })
    }

    fn put(&self, key: &str, value: Bytes) -> DurableResult<()> {
        self.check_entry(key, &value)?;
        self.write("put", |c| {
            c.prepare_cached(
                "INSERT INTO _cf_KV (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, &value[..]])
        })?;
        Ok(())
    }

    fn put_many(&self, entries: &[(String, Bytes)]) -> DurableResult<()> {
        self.check_batch(entries.len())?;
        for (k, v) in entries {
            self.check_entry(k, v)?;
        }
        self.write("put", |c| {
            c.execute_batch("SAVEPOINT _cf_put_many")?;
            let r = (|| {
                let mut s = c.prepare_cached(
                    "INSERT INTO _cf_KV (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )?;
                for (k, v) in entries {
                    s.execute(params![k, &v[..]])?;
                }
                Ok(())
            })();
            match r {
                Ok(()) => c.execute_batch("RELEASE _cf_put_many"),
                Err(e) => {
                    let _ = c.execute_batch("ROLLBACK TO _cf_put_many; RELEASE _cf_put_many");
                    Err(e)
                }
            }
        })
    }

    fn delete(&self, key: &str) -> DurableResult<bool> {
        self.write("delete", |c| {
            c.prepare_cached("DELETE FROM _cf_KV WHERE key = ?1")?
                .execute([key])
                .map(|n| n > 0)
        })
    }

    fn delete_many(&self, keys: &[String]) -> DurableResult<usize> {
        self.check_batch(keys.len())?;
        self.write("delete", |c| {
            let mut s = c.prepare_cached("DELETE FROM _cf_KV WHERE key = ?1")?;
            let mut n = 0;
            for k in keys {
                n += s.execute([k])?;
            }
            Ok(n)
        })
    }

    fn list(&self, o: &ListOptions) -> DurableResult<Vec<(String, Bytes)>> {
        if o.start.is_some() && o.start_after.is_some() {
            return Err(DurableError::invalid(
                "list: start and start_after cannot be combined",
            ));
        }
        if o.limit == Some(0) {
            return Err(DurableError::invalid("list: limit must be at least 1"));
        }
        let mut sql = String::from("SELECT key, value FROM _cf_KV WHERE 1");
        let mut args: Vec<ToSqlOutput<'_>> = Vec::new();
        if let Some(s) = &o.start {
            sql.push_str(" AND key >= ?");
            args.push(ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())));
        }
        if let Some(s) = &o.start_after {
            sql.push_str(" AND key > ?");
            args.push(ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())));
        }
        if let Some(e) = &o.end {
            sql.push_str(" AND key < ?");
            args.push(ToSqlOutput::Borrowed(ValueRef::Text(e.as_bytes())));
        }
        let upper;
        if let Some(p) = &o.prefix {
            sql.push_str(" AND key >= ?");
            args.push(ToSqlOutput::Borrowed(ValueRef::Text(p.as_bytes())));
            upper = prefix_upper(p);
            if let Some(u) = &upper {
                sql.push_str(" AND key < ?");
                args.push(ToSqlOutput::Borrowed(ValueRef::Text(u)));
            }
        }
        sql.push_str(if o.reverse {
            " ORDER BY key DESC"
        } else {
            " ORDER BY key ASC"
        });
        if let Some(l) = o.limit {
            sql.push_str(&format!(" LIMIT {}", l.min(i64::MAX as usize)));
        }
        self.read("list", Vec::new(), |c| {
            let mut s = c.prepare_cached(&sql)?;
            let rows = s.query_map(rusqlite::params_from_iter(args.iter()), |r| {
                Ok((r.get::<_, String>(0)?, Bytes::from(r.get::<_, Vec<u8>>(1)?)))
            })?;
            rows.collect()
        })
    }

    fn delete_all(&self) -> DurableResult<()> {
        self.write("delete all", |c| {
            let objects: Vec<(String, String)> = {
                let mut s = c.prepare(
                    "SELECT type, name FROM sqlite_master
                     WHERE type IN ('table', 'view') AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\'
                       AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
                )?;
                let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for (kind, name) in objects.iter().filter(|(k, _)| k == "view") {
                c.execute_batch(&format!(
                    "DROP {} IF EXISTS \"{}\"",
                    kind.to_uppercase(),
                    name.replace('"', "\"\"")
                ))?;
            }
            for (_, name) in objects.iter().filter(|(k, _)| k == "table") {
                c.execute_batch(&format!(
                    "DROP TABLE IF EXISTS \"{}\"",
                    name.replace('"', "\"\"")
                ))?;
            }
            c.execute_batch("DELETE FROM _cf_KV; DELETE FROM _cf_ALARM;")
        })?;
        self.inner.lock().alarm_set_during_run = false;
        Ok(())
    }

    fn transaction(
        &self,
        body: &mut dyn FnMut(&dyn DurableStorage) -> DurableResult<()>,
    ) -> DurableResult<()> {
        let name = {
            let mut g = self.inner.lock();
            let name = format!("_cf_txn_{}", g.savepoints);
            let conn = self.begin_write(&mut g)?;
            if let Err(e) = conn.execute_batch(&format!("SAVEPOINT {name}")) {
                return Err(self.fail(&mut g, "transaction", e));
            }
            g.savepoints += 1;
            name
        };
        let result = body(self);
        let mut g = self.inner.lock();
        g.savepoints = g.savepoints.saturating_sub(1);
        if g.broken.is_some() || !g.in_tx {
            return result.and(Err(DurableError::Reset {
                reason: g
                    .broken
                    .clone()
                    .unwrap_or_else(|| "transaction lost".into()),
            }));
        }
        let Some(open) = g.open.as_ref() else {
            return Err(DurableError::Closed);
        };
        let sql = if result.is_ok() {
            format!("RELEASE {name}")
        } else {
            format!("ROLLBACK TO {name}; RELEASE {name}")
        };
        if let Err(e) = open.conn.execute_batch(&sql) {
            return Err(self.fail(&mut g, "transaction", e));
        }
        result
    }

    fn exec(&self, sql: &str, bindings: &[SqlValue]) -> DurableResult<SqlCursor> {
        let limits = &self.env.limits;
        if sql.len() > limits.max_sql_bytes {
            return Err(DurableError::TooLarge {
                what: "SQL statement (bytes)",
                len: sql.len(),
                limit: limits.max_sql_bytes,
            });
        }
        if bindings.len() > limits.max_sql_bindings {
            return Err(DurableError::TooLarge {
                what: "number of bound parameters",
                len: bindings.len(),
                limit: limits.max_sql_bindings,
            });
        }
        let mut g = self.inner.lock();
        self.exec_inner(&mut g, sql, bindings)
    }

    fn database_size(&self) -> DurableResult<u64> {
        self.read("database size", 0, |c| {
            c.query_row(
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|v| v as u64)
        })
    }

    fn get_alarm(&self) -> DurableResult<Option<u64>> {
        {
            let g = self.inner.lock();
            if g.alarm_running && !g.alarm_set_during_run {
                return Ok(None);
            }
        }
        Ok(self.alarm_row()?.map(|(t, _)| t))
    }

    fn set_alarm(&self, scheduled_ms: u64) -> DurableResult<()> {
        self.write_alarm(scheduled_ms, 0)?;
        let mut g = self.inner.lock();
        if g.alarm_running {
            g.alarm_set_during_run = true;
        }
        Ok(())
    }

    fn delete_alarm(&self) -> DurableResult<()> {
        self.clear_alarm_row()?;
        self.inner.lock().alarm_set_during_run = false;
        Ok(())
    }

    fn sync(&self) -> BoxFuture<'_, DurableResult<()>> {
        Box::pin(async move {
            self.finish_event()?;
            let mark = self.mark();
            if !mark.gated() {
                return if mark.failed.load(Ordering::Acquire) {
                    Err(DurableError::Reset {
                        reason: "an earlier write could not be made durable".into(),
                    })
                } else {
                    Ok(())
                };
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.env.committer.send(Job::Release {
                mark,
                release: Box::new(move |ok| {
                    let _ = tx.send(ok);
                }),
            });
            match rx.await {
                Ok(true) => Ok(()),
                _ => Err(DurableError::Reset {
                    reason: "a write could not be made durable".into(),
                }),
            }
        })
    }
}
