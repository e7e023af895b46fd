//! Running one D1 statement on a SQLite connection: validation, binding, rows and `meta`.

use std::time::Instant;

use bindery_core::d1::{D1Error, D1Limits, D1QueryResult, D1Result, D1Statement, D1Value};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, StatementStatus};

use crate::guard::{Control, map_err};
use crate::sql_text;

/// What a connection needs to run statements.
pub(crate) struct Ctx<'a> {
    pub conn: &'a Connection,
    pub control: &'a Control,
    pub limits: &'a D1Limits,
    pub served_by: &'a str,
    /// `Some(region)` when a replica answers; `None` for the primary.
    pub replica_region: Option<&'a str>,
}

/// A statement after the checks that need no database.
pub(crate) struct Checked<'s> {
    pub pieces: Vec<&'s str>,
    /// Whether every piece starts with a keyword that only reads.
    pub looks_read_only: bool,
    /// Whether a piece is a `PRAGMA` (such jobs get a transaction of their own).
    pub has_pragma: bool,
    /// Whether a piece changes the schema (`CREATE`, `DROP`, `ALTER`).
    pub ddl: bool,
}

/// Checks what can be checked without a connection: limits on text and values, empty
/// input, transaction statements and statements D1 refuses outright.
pub(crate) fn check<'s>(stmt: &'s D1Statement, limits: &D1Limits) -> D1Result<Checked<'s>> {
    check_values(stmt, limits)?;
    check_text(stmt.sql(), !stmt.params().is_empty(), limits)
}

/// The checks on a statement's bound values.
pub(crate) fn check_values(stmt: &D1Statement, limits: &D1Limits) -> D1Result<()> {
    let params = stmt.params();
    if params.len() > limits.max_bound_parameters {
        return Err(D1Error::TooManyParameters {
            count: params.len(),
            limit: limits.max_bound_parameters,
        });
    }
    for (i, p) in params.iter().enumerate() {
        if p.byte_len() > limits.max_value_bytes {
            return Err(D1Error::ValueTooLarge {
                index: i + 1,
                len: p.byte_len(),
                limit: limits.max_value_bytes,
            });
        }
    }
    Ok(())
}

/// The checks on a statement's text.
pub(crate) fn check_text<'s>(
    sql: &'s str,
    has_params: bool,
    limits: &D1Limits,
) -> D1Result<Checked<'s>> {
    if sql.len() > limits.max_statement_bytes {
        return Err(D1Error::StatementTooLong {
            len: sql.len(),
            limit: limits.max_statement_bytes,
        });
    }
    let pieces = sql_text::split(sql);
    if pieces.is_empty() {
        return Err(D1Error::NoStatements);
    }
    check_pieces(pieces, has_params)
}

/// Checks statements of raw SQL text (no values).
pub(crate) fn check_pieces(pieces: Vec<&str>, has_params: bool) -> D1Result<Checked<'_>> {
    let mut looks_read_only = true;
    let mut has_pragma = false;
    let mut ddl = false;
    for p in &pieces {
        let kw = sql_text::first_keyword(p).unwrap_or_default();
        match kw.as_str() {
            "BEGIN" | "COMMIT" | "END" | "ROLLBACK" | "SAVEPOINT" | "RELEASE" => {
                return Err(D1Error::TransactionStatement { keyword: kw });
            }
            "VACUUM" | "ATTACH" | "DETACH" => return Err(D1Error::NotAuthorized { what: kw }),
            "PRAGMA" => has_pragma = true,
            "CREATE" | "DROP" | "ALTER" => ddl = true,
            _ => {}
        }
        if !matches!(kw.as_str(), "SELECT" | "WITH" | "VALUES") {
            looks_read_only = false;
        }
    }
    if has_params && pieces.len() > 1 {
        return Err(D1Error::Sql {
            message: format!(
                "a statement with bound parameters must hold one SQL statement; this one holds {}: SQLITE_ERROR",
                pieces.len()
            ),
        });
    }
    Ok(Checked {
        pieces,
        looks_read_only,
        has_pragma,
        ddl,
    })
}

/// Outcome of [`run`] when the caller asked for read-only execution.
pub(crate) enum ReadOutcome {
    Done(D1QueryResult),
    /// The statement writes: run it on the writer instead.
    NeedsWriter,
}

fn to_value(v: ValueRef<'_>) -> D1Value {
    match v {
        ValueRef::Null => D1Value::Null,
        ValueRef::Integer(i) => D1Value::Integer(i),
        ValueRef::Real(f) => D1Value::Real(f),
        ValueRef::Text(t) => D1Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => D1Value::Blob(b.to_vec()),
    }
}

fn to_ref(v: &D1Value) -> ValueRef<'_> {
    match v {
        D1Value::Null => ValueRef::Null,
        D1Value::Integer(i) => ValueRef::Integer(*i),
        D1Value::Real(f) => ValueRef::Real(*f),
        D1Value::Text(s) => ValueRef::Text(s.as_bytes()),
        D1Value::Blob(b) => ValueRef::Blob(b),
    }
}

/// Database size in bytes.
pub(crate) fn db_size(ctx: &Ctx<'_>) -> D1Result<u64> {
    ctx.control
        .internal(|| {
            // Plain pragmas: the pragma table-valued functions prepare a statement of their
            // own on every run.
            let pages: i64 = ctx
                .conn
                .prepare_cached("PRAGMA page_count")?
                .query_row([], |r| r.get(0))?;
            let size: i64 = ctx
                .conn
                .prepare_cached("PRAGMA page_size")?
                .query_row([], |r| r.get(0))?;
            Ok(pages * size)
        })
        .map(|v| v.max(0) as u64)
        .map_err(|e| map_err(e, ctx.control, ctx.limits))
}

/// Runs a checked statement. With `read_only`, a statement SQLite reports as writing is not
/// run and [`ReadOutcome::NeedsWriter`] is returned. With `defer_size`, `size_after` of a
/// write is left for the caller to fill in (the writer measures once per job).
pub(crate) fn run(
    ctx: &Ctx<'_>,
    stmt: &D1Statement,
    checked: &Checked<'_>,
    read_only: bool,
    size_hint: Option<u64>,
    defer_size: bool,
) -> D1Result<ReadOutcome> {
    let started = Instant::now();
    let total_before = ctx.conn.total_changes();
    let mut result = D1QueryResult::default();
    let mut rows_read = 0u64;
    let mut schema_change = false;
    let mut wrote = false;
    for piece in &checked.pieces {
        let mut s = ctx
            .conn
            .prepare_cached(piece)
            .map_err(|e| map_err(e, ctx.control, ctx.limits))?;
        if read_only && !s.readonly() {
            return Ok(ReadOutcome::NeedsWriter);
        }
        if !s.readonly() {
            wrote = true;
            schema_change |= checked.ddl;
        }
        let count = s.parameter_count();
        for i in 1..=count {
            if let Some(name) = s.parameter_name(i)
                && !name.starts_with('?')
            {
                return Err(D1Error::NamedParameter {
                    name: name.to_owned(),
                });
            }
        }
        let params = stmt.params();
        if count != params.len() {
            return Err(D1Error::WrongParameterCount {
                expected: count,
                got: params.len(),
            });
        }
        for (i, p) in params.iter().enumerate() {
            s.raw_bind_parameter(i + 1, rusqlite::types::ToSqlOutput::Borrowed(to_ref(p)))
                .map_err(|e| map_err(e, ctx.control, ctx.limits))?;
        }
        let columns: Vec<String> = s.column_names().map(str::to_owned).collect();
        let ncol = columns.len();
        let mut rows_out = Vec::new();
        {
            let mut rows = s.raw_query();
            loop {
                match rows.next() {
                    Ok(Some(row)) => {
                        let mut out = Vec::with_capacity(ncol);
                        for i in 0..ncol {
                            let v = row
                                .get_ref(i)
                                .map_err(|e| map_err(e, ctx.control, ctx.limits))?;
                            out.push(to_value(v));
                        }
                        rows_out.push(out);
                    }
                    Ok(None) => break,
                    Err(e) => return Err(map_err(e, ctx.control, ctx.limits)),
                }
            }
        }
        // A full scan of n rows steps n - 1 times.
        let scanned = s.reset_status(StatementStatus::FullscanStep).max(0) as u64;
        let scanned = if scanned > 0 { scanned + 1 } else { 0 };
        rows_read += scanned.max(rows_out.len() as u64);
        result.columns = columns;
        result.rows = rows_out;
    }
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    let written = ctx.conn.total_changes() - total_before;
    let meta = &mut result.meta;
    meta.served_by = ctx.served_by.to_owned();
    meta.served_by_region = Some(ctx.replica_region.unwrap_or("LOCAL").to_owned());
    meta.served_by_primary = Some(ctx.replica_region.is_none());
    meta.duration = elapsed;
    meta.timings.sql_duration_ms = elapsed;
    meta.changes = if written > 0 { ctx.conn.changes() } else { 0 };
    meta.last_row_id = ctx.conn.last_insert_rowid();
    meta.changed_db = written > 0 || schema_change;
    meta.rows_read = rows_read;
    meta.rows_written = written;
    meta.total_attempts = 1;
    meta.size_after = match size_hint {
        Some(s) if !meta.changed_db && !wrote => s,
        _ if defer_size => 0,
        _ => db_size(ctx)?,
    };
    Ok(ReadOutcome::Done(result))
}
