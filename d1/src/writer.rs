//! The writer thread: one per database, with group commit.
//!
//! Callers send jobs (a batch, an exec, an import). The thread takes the first waiting job and
//! every job that arrived meanwhile, runs them in one SQLite transaction, each job inside its
//! own `SAVEPOINT` so that it succeeds or fails on its own, commits once (one fsync for the
//! whole group) and only then answers every job. Under load the groups grow by themselves:
//! while one commit is on disk, the next group queues up.
//!
//! Jobs that set pragmas and imports run in a transaction of their own, because their
//! settings (deferred foreign keys above all) must not leak into other jobs.
//!
//! If SQLite rolls the whole transaction back by itself (it does on an interrupt inside some
//! writes, on a full disk or on an I/O error), the jobs that had already run in the group are
//! run again in a fresh transaction: none of them has been answered yet.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bindery_core::d1::{
    D1Error, D1ExecResult, D1ImportResult, D1Limits, D1Meta, D1QueryResult, D1Result, D1Statement,
};
use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use rusqlite::Connection;
use rusqlite::limits::Limit;
use tokio::sync::{mpsc, oneshot};

use crate::guard::{Control, RESET_PRAGMAS, map_err};
use crate::sql_text::{self, Scanner, StatementEnd};
use crate::statement::{self, Ctx, ReadOutcome};
use crate::time_travel::TimeTravel;

/// Most jobs in one group.
const MAX_GROUP: usize = 512;

/// Work run on the writer's connection outside any transaction.
pub(crate) type MaintenanceFn = Box<dyn FnOnce(&mut Connection, &Arc<Control>) + Send>;

pub(crate) enum Job {
    Batch {
        stmts: Vec<D1Statement>,
        reply: oneshot::Sender<D1Result<Vec<D1QueryResult>>>,
    },
    Exec {
        sql: String,
        reply: oneshot::Sender<D1Result<D1ExecResult>>,
    },
    Import {
        chunks: mpsc::Receiver<io::Result<Bytes>>,
        reply: oneshot::Sender<D1Result<D1ImportResult>>,
    },
    /// Runs a closure on the writer's connection outside any transaction (maintenance,
    /// Time Travel).
    Maintenance { run: MaintenanceFn },
}

enum Outcome {
    Batch(D1Result<Vec<D1QueryResult>>),
    Exec(D1Result<D1ExecResult>),
}

struct Done {
    job: Job,
    outcome: Outcome,
}

fn isolated(job: &Job) -> bool {
    match job {
        Job::Batch { stmts, .. } => stmts.iter().any(|s| contains_pragma(s.sql())),
        Job::Exec { sql, .. } => contains_pragma(sql),
        Job::Import { .. } | Job::Maintenance { .. } => true,
    }
}

fn contains_pragma(sql: &str) -> bool {
    sql.as_bytes()
        .windows(6)
        .any(|w| w.eq_ignore_ascii_case(b"pragma"))
}

/// Handle to a writer thread. Dropping it lets the thread finish the jobs it holds and close
/// the connection.
pub(crate) struct Writer {
    tx: Option<Sender<Job>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub size: Arc<AtomicU64>,
    pub poisoned: Arc<Mutex<Option<String>>>,
}

impl Writer {
    pub fn start(
        conn: Connection,
        control: Arc<Control>,
        limits: D1Limits,
        served_by: String,
        time_travel: Option<Arc<TimeTravel>>,
    ) -> D1Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let ctx_size = {
            let ctx = Ctx {
                conn: &conn,
                control: &control,
                limits: &limits,
                served_by: &served_by,
                replica_region: None,
            };
            statement::db_size(&ctx)?
        };
        let size = Arc::new(AtomicU64::new(ctx_size));
        let poisoned = Arc::new(Mutex::new(None));
        let mut state = State {
            conn,
            control,
            limits,
            served_by,
            size: Arc::clone(&size),
            poisoned: Arc::clone(&poisoned),
            time_travel,
        };
        let thread = std::thread::Builder::new()
            .name("bindery-d1-writer".into())
            .spawn(move || state.run(rx))
            .map_err(|e| D1Error::engine("starting the writer thread", e))?;
        Ok(Self {
            tx: Some(tx),
            thread: Mutex::new(Some(thread)),
            size,
            poisoned,
        })
    }

    pub fn send(&self, job: Job) -> D1Result<()> {
        if let Some(reason) = self.poisoned.lock().clone() {
            return Err(D1Error::Poisoned { reason });
        }
        self.tx
            .as_ref()
            .ok_or(D1Error::Closed)?
            .send(job)
            .map_err(|_| D1Error::Closed)
    }
}

impl Drop for Writer {
    /// Closes the queue and waits until the thread has run what it holds and closed the
    /// database (unless the last handle is dropped on the writer thread itself).
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(handle) = self.thread.lock().take()
            && handle.thread().id() != std::thread::current().id()
        {
            let _ = handle.join();
        }
    }
}

struct State {
    conn: Connection,
    control: Arc<Control>,
    limits: D1Limits,
    served_by: String,
    size: Arc<AtomicU64>,
    poisoned: Arc<Mutex<Option<String>>>,
    time_travel: Option<Arc<TimeTravel>>,
}

impl State {
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            conn: &self.conn,
            control: &self.control,
            limits: &self.limits,
            served_by: &self.served_by,
            replica_region: None,
        }
    }

    fn control_stmt(&self, sql: &str) -> D1Result<()> {
        self.control
            .internal(|| self.conn.prepare_cached(sql)?.execute([]).map(|_| ()))
            .map_err(|e| map_err(e, &self.control, &self.limits))
    }

    fn run(&mut self, rx: Receiver<Job>) {
        let mut jobs = Vec::with_capacity(MAX_GROUP);
        while let Ok(first) = rx.recv() {
            jobs.push(first);
            while jobs.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            self.process(&mut jobs);
        }
        if let Some(tt) = &self.time_travel
            && let Err(e) = tt.flush()
        {
            tracing::error!(error = %e, "syncing the Time Travel archive at close failed");
        }
    }

    fn poison_reason(&self) -> Option<String> {
        self.poisoned.lock().clone()
    }

    fn process(&mut self, jobs: &mut Vec<Job>) {
        let mut group: Vec<Done> = Vec::new();
        for job in jobs.drain(..) {
            if let Some(reason) = self.poison_reason() {
                reply_err(job, D1Error::Poisoned { reason });
                continue;
            }
            if isolated(&job) {
                self.commit_group(&mut group);
                self.run_isolated(job);
                continue;
            }
            if group.is_empty()
                && let Err(e) = self.control_stmt("BEGIN IMMEDIATE")
            {
                reply_err(job, e);
                continue;
            }
            let outcome = self.run_grouped(&job);
            if self.conn.is_autocommit() {
                // SQLite rolled the whole transaction back: replay the jobs before this one.
                self.replay(&mut group);
            }
            group.push(Done { job, outcome });
        }
        self.commit_group(&mut group);
    }

    fn replay(&mut self, group: &mut [Done]) {
        if group.is_empty() {
            return;
        }
        if let Err(e) = self.control_stmt("BEGIN IMMEDIATE") {
            for d in group.iter_mut() {
                d.outcome = err_outcome(&d.outcome, clone_err(&e));
            }
            return;
        }
        for d in group.iter_mut() {
            d.outcome = self.run_grouped(&d.job);
        }
        if self.conn.is_autocommit() {
            let e = D1Error::engine(
                "group commit",
                "the transaction was rolled back twice while replaying a group",
            );
            for d in group.iter_mut() {
                d.outcome = err_outcome(&d.outcome, clone_err(&e));
            }
        }
    }

    fn commit_group(&mut self, group: &mut Vec<Done>) {
        if group.is_empty() {
            return;
        }
        let commit = if self.conn.is_autocommit() {
            Ok(())
        } else {
            self.control_stmt("COMMIT")
        };
        match commit {
            Ok(()) => {
                self.after_commit();
                for d in group.drain(..) {
                    deliver(d);
                }
            }
            Err(e) => {
                let _ = self.control_stmt("ROLLBACK");
                self.poison_on(&e);
                for d in group.drain(..) {
                    let outcome = err_outcome(&d.outcome, clone_err(&e));
                    deliver(Done {
                        job: d.job,
                        outcome,
                    });
                }
            }
        }
    }

    fn poison_on(&self, e: &D1Error) {
        if matches!(e, D1Error::Engine { .. }) {
            let reason = e.to_string();
            tracing::error!(error = %reason, "D1 commit failed; the database now refuses writes");
            *self.poisoned.lock() = Some(reason);
        }
    }

    fn after_commit(&mut self) {
        if let Ok(s) = statement::db_size(&self.ctx()) {
            self.size.store(s, Ordering::Release);
        }
        if let Some(tt) = &self.time_travel
            && let Err(e) = self.control.internal(|| tt.capture(&self.conn))
        {
            // The commit is durable, but not archived: refuse further writes rather than
            // let history fall behind.
            let reason = e.to_string();
            tracing::error!(error = %reason, "Time Travel archiving failed; the database now refuses writes");
            *self.poisoned.lock() = Some(reason);
        }
    }

    /// Runs a job inside the open group transaction, in its own savepoint(s).
    fn run_grouped(&mut self, job: &Job) -> Outcome {
        self.control.start_deadline(self.limits.max_query_ms);
        let out = match job {
            Job::Batch { stmts, .. } => Outcome::Batch(self.savepoint(|s| s.batch(stmts))),
            Job::Exec { sql, .. } => Outcome::Exec(self.exec(sql, false)),
            Job::Import { .. } | Job::Maintenance { .. } => {
                unreachable!("imports and maintenance are isolated")
            }
        };
        self.control.clear_deadline();
        out
    }

    fn savepoint<T>(&mut self, f: impl FnOnce(&mut Self) -> D1Result<T>) -> D1Result<T> {
        self.control_stmt("SAVEPOINT job")?;
        match f(self) {
            Ok(v) => {
                self.control_stmt("RELEASE job")?;
                Ok(v)
            }
            Err(e) => {
                if !self.conn.is_autocommit() {
                    let _ = self.control_stmt("ROLLBACK TO job");
                    let _ = self.control_stmt("RELEASE job");
                }
                Err(e)
            }
        }
    }

    fn batch(&mut self, stmts: &[D1Statement]) -> D1Result<Vec<D1QueryResult>> {
        let mut out = Vec::with_capacity(stmts.len());
        let ctx = self.ctx();
        let mut last_size = self.size.load(Ordering::Acquire);
        // Batches often repeat one statement with different values: check each text once.
        let mut text_checked: Option<(&str, bool, statement::Checked<'_>)> = None;
        for s in stmts {
            statement::check_values(s, &self.limits)?;
            let has_params = !s.params().is_empty();
            let reuse =
                matches!(&text_checked, Some((sql, p, _)) if *sql == s.sql() && *p == has_params);
            if !reuse {
                let c = statement::check_text(s.sql(), has_params, &self.limits)?;
                text_checked = Some((s.sql(), has_params, c));
            }
            let Some((_, _, checked)) = text_checked.as_ref() else {
                continue;
            };
            match statement::run(&ctx, s, checked, false, Some(last_size), true)? {
                ReadOutcome::Done(r) => out.push(r),
                ReadOutcome::NeedsWriter => unreachable!("the writer runs everything"),
            }
        }
        // One size measurement per job: every statement that wrote reports the size after the
        // job's last statement.
        if out.iter().any(|r| r.meta.size_after == 0) {
            last_size = statement::db_size(&ctx)?;
            for r in &mut out {
                if r.meta.size_after == 0 {
                    r.meta.size_after = last_size;
                }
            }
        }
        Ok(out)
    }

    /// Runs one exec line's statements.
    fn exec_line(&mut self, line: &str) -> D1Result<D1Meta> {
        let pieces = sql_text::split(line);
        if pieces.is_empty() {
            return Err(D1Error::NoStatements);
        }
        let checked = statement::check_pieces(pieces, false)?;
        let stmt = D1Statement::new(line);
        match statement::run(&self.ctx(), &stmt, &checked, false, None, false)? {
            ReadOutcome::Done(r) => Ok(r.meta),
            ReadOutcome::NeedsWriter => unreachable!("the writer runs everything"),
        }
    }

    /// Runs `sql` line by line; each line in its own savepoint (grouped) or its own
    /// transaction (`own_txn`). Stops at the first failing line; earlier lines stay.
    fn exec(&mut self, sql: &str, own_txn: bool) -> D1Result<D1ExecResult> {
        let mut result = D1ExecResult::default();
        let trimmed = sql.trim();
        if trimmed.is_empty() {
            return Err(D1Error::NoStatements);
        }
        for (i, line) in trimmed.split('\n').enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            self.control.start_deadline(self.limits.max_query_ms);
            let r = if own_txn {
                self.own_transaction(|s| s.exec_line(line))
            } else {
                self.savepoint(|s| s.exec_line(line))
            };
            match r {
                Ok(meta) => {
                    result.count += 1;
                    result.duration += meta.duration;
                    add_meta(&mut result.meta, &meta);
                }
                Err(e) => {
                    return Err(D1Error::Exec {
                        line: i + 1,
                        sql: line.to_owned(),
                        message: e.message(),
                    });
                }
            }
        }
        Ok(result)
    }

    /// Runs `f` in a transaction of its own, then resets transaction-scoped pragmas.
    fn own_transaction<T>(&mut self, f: impl FnOnce(&mut Self) -> D1Result<T>) -> D1Result<T> {
        self.control_stmt("BEGIN IMMEDIATE")?;
        let r = f(self);
        let r = match r {
            Ok(v) => match self.control_stmt("COMMIT") {
                Ok(()) => {
                    self.after_commit();
                    Ok(v)
                }
                Err(e) => {
                    let _ = self.control_stmt("ROLLBACK");
                    self.poison_on(&e);
                    Err(e)
                }
            },
            Err(e) => {
                if !self.conn.is_autocommit() {
                    let _ = self.control_stmt("ROLLBACK");
                }
                Err(e)
            }
        };
        if self.control.take_pragma_touched() {
            let _ = self
                .control
                .internal(|| self.conn.execute_batch(RESET_PRAGMAS));
        }
        r
    }

    fn run_isolated(&mut self, job: Job) {
        match job {
            Job::Batch { stmts, reply } => {
                self.control.start_deadline(self.limits.max_query_ms);
                let r = self.own_transaction(|s| s.batch(&stmts));
                self.control.clear_deadline();
                let _ = reply.send(r);
            }
            Job::Exec { sql, reply } => {
                let r = self.exec(&sql, true);
                self.control.clear_deadline();
                let _ = reply.send(r);
            }
            Job::Import { chunks, reply } => {
                let r = self.import(chunks);
                let _ = reply.send(r);
            }
            Job::Maintenance { run } => {
                run(&mut self.conn, &self.control);
                self.after_commit();
            }
        }
    }

    fn import(
        &mut self,
        mut chunks: mpsc::Receiver<io::Result<Bytes>>,
    ) -> D1Result<D1ImportResult> {
        let limits = self.limits.clone();
        let _ = self
            .conn
            .set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, 1_000_000_000);
        let r = self.own_transaction(|s| {
            s.control_stmt("PRAGMA defer_foreign_keys = ON")?;
            let mut scanner = Scanner::new();
            let mut ends: Vec<StatementEnd> = Vec::new();
            let mut buf: Vec<u8> = Vec::new();
            let mut base = 0u64;
            let mut result = D1ImportResult::default();
            while let Some(chunk) = chunks.blocking_recv() {
                let chunk = chunk.map_err(|e| D1Error::engine("reading the import", e))?;
                result.bytes += chunk.len() as u64;
                if result.bytes > limits.max_import_bytes {
                    return Err(D1Error::ImportTooLarge {
                        limit: limits.max_import_bytes,
                    });
                }
                ends.clear();
                scanner.push(&chunk, &mut ends);
                buf.extend_from_slice(&chunk);
                let mut consumed = 0usize;
                for e in &ends {
                    let end = (e.end - base) as usize;
                    if e.has_content {
                        s.import_statement(&buf[consumed..end], &mut result)?;
                    }
                    consumed = end;
                }
                buf.drain(..consumed);
                base += consumed as u64;
            }
            if scanner.finish() {
                let rest = std::mem::take(&mut buf);
                s.import_statement(&rest, &mut result)?;
            }
            Ok(result)
        });
        let _ = self.conn.set_limit(
            Limit::SQLITE_LIMIT_SQL_LENGTH,
            i32::try_from(self.limits.max_statement_bytes).unwrap_or(i32::MAX),
        );
        let mut r = r?;
        r.size_after = self.size.load(Ordering::Acquire);
        Ok(r)
    }

    fn import_statement(&mut self, bytes: &[u8], result: &mut D1ImportResult) -> D1Result<()> {
        let text = std::str::from_utf8(bytes).map_err(|e| D1Error::Sql {
            message: format!(
                "import statement {} is not valid UTF-8: {e}",
                result.statements + 1
            ),
        })?;
        let kw = sql_text::first_keyword(text).unwrap_or_default();
        // Dumps wrap themselves in a transaction; the import already is one.
        if matches!(
            kw.as_str(),
            "BEGIN" | "COMMIT" | "END" | "ROLLBACK" | "SAVEPOINT" | "RELEASE"
        ) {
            return Ok(());
        }
        if matches!(kw.as_str(), "VACUUM" | "ATTACH" | "DETACH") {
            return Err(D1Error::NotAuthorized { what: kw });
        }
        let conn = &self.conn;
        let run = || -> rusqlite::Result<()> {
            let mut stmt = conn.prepare(text)?;
            let mut rows = stmt.raw_query();
            while rows.next()?.is_some() {}
            Ok(())
        };
        run().map_err(|e| {
            let inner = map_err(e, &self.control, &self.limits);
            D1Error::Sql {
                message: format!(
                    "import failed at statement {}: {}",
                    result.statements + 1,
                    inner.message()
                ),
            }
        })?;
        result.statements += 1;
        Ok(())
    }
}

fn add_meta(total: &mut D1Meta, m: &D1Meta) {
    total.served_by.clone_from(&m.served_by);
    total.served_by_region.clone_from(&m.served_by_region);
    total.served_by_primary = m.served_by_primary;
    total.duration += m.duration;
    total.timings.sql_duration_ms += m.timings.sql_duration_ms;
    total.changes += m.changes;
    total.last_row_id = m.last_row_id;
    total.changed_db |= m.changed_db;
    total.size_after = m.size_after;
    total.rows_read += m.rows_read;
    total.rows_written += m.rows_written;
    total.total_attempts = 1;
}

fn clone_err(e: &D1Error) -> D1Error {
    match e {
        D1Error::Poisoned { reason } => D1Error::Poisoned {
            reason: reason.clone(),
        },
        D1Error::Timeout { limit_ms } => D1Error::Timeout {
            limit_ms: *limit_ms,
        },
        D1Error::DatabaseFull { limit } => D1Error::DatabaseFull { limit: *limit },
        D1Error::Sql { message } => D1Error::Sql {
            message: message.clone(),
        },
        other => D1Error::engine("group commit", other.to_string()),
    }
}

fn err_outcome(o: &Outcome, e: D1Error) -> Outcome {
    match o {
        Outcome::Batch(_) => Outcome::Batch(Err(e)),
        Outcome::Exec(_) => Outcome::Exec(Err(e)),
    }
}

fn deliver(d: Done) {
    match (d.job, d.outcome) {
        (Job::Batch { reply, .. }, Outcome::Batch(r)) => {
            let _ = reply.send(r);
        }
        (Job::Exec { reply, .. }, Outcome::Exec(r)) => {
            let _ = reply.send(r);
        }
        _ => {}
    }
}

fn reply_err(job: Job, e: D1Error) {
    match job {
        Job::Batch { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Job::Exec { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Job::Import { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Job::Maintenance { .. } => {}
    }
}
