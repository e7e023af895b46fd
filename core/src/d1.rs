//! The D1 contract.
//!
//! A [`D1Database`] is one D1 database: SQLite with D1's statement, batch and exec API, D1's
//! result shape ([`D1QueryResult`] with its [`D1Meta`]), D1's limits ([`D1Limits`]) and D1's
//! error codes ([`D1Error::code`]). A [`D1Catalog`] creates, opens, lists and deletes
//! databases by name.
//!
//! Statements are plain data ([`D1Statement`]): preparing does no I/O, and
//! [`D1Statement::bind`] returns a new statement, so one statement can be bound several times
//! in one batch. The terminal methods of D1's `D1PreparedStatement` (`first`, `all`, `raw`,
//! `run`) are in [`D1DatabaseExt`], implemented for every database.
//!
//! The one method a transport needs is [`D1Database::query_batch`]: it runs statements with an
//! optional session constraint and answers results with columns and rows (D1's
//! `ROWS_AND_COLUMNS` format), full `meta`, and the bookmark to hand back to the client.
//!
//! # Example
//!
//! ```
//! use bindery_core::d1::{D1Statement, D1Value};
//! let insert = D1Statement::new("INSERT INTO t (a, b) VALUES (?1, ?2)");
//! let bound = insert.bind([D1Value::from(1), D1Value::from("one")]);
//! assert_eq!(bound.params().len(), 2);
//! assert!(insert.params().is_empty());
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::{Map, Number, Value};

use crate::error::{BoxError, CloudflareCode, ErrorKind, PlatformError};
use crate::stream::ByteStream;

/// Result alias for D1 operations.
pub type D1Result<T> = Result<T, D1Error>;

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// A value bound to a statement or read from a row: SQLite's five storage classes.
///
/// Booleans are stored as the integers 1 and 0, as D1 stores them ([`From<bool>`]).
#[derive(Debug, Clone, PartialEq)]
pub enum D1Value {
    /// SQL NULL.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// A 64-bit float.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl D1Value {
    /// The value as JSON the way D1 answers it: blobs become arrays of byte numbers.
    pub fn to_json(&self) -> Value {
        match self {
            D1Value::Null => Value::Null,
            D1Value::Integer(i) => Value::from(*i),
            D1Value::Real(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            D1Value::Text(s) => Value::String(s.clone()),
            D1Value::Blob(b) => Value::Array(b.iter().map(|&x| Value::from(x)).collect()),
        }
    }

    /// Converts a JSON parameter the way D1's binding does: `null`, numbers (integers stay
    /// integers, others become reals), strings, booleans as 1/0, and arrays of byte numbers
    /// (0..=255) as blobs.
    ///
    /// # Errors
    ///
    /// [`D1Error::Type`] for objects and for arrays that are not byte arrays.
    pub fn from_json(v: &Value) -> D1Result<Self> {
        Ok(match v {
            Value::Null => D1Value::Null,
            Value::Bool(b) => D1Value::Integer(i64::from(*b)),
            Value::Number(n) => match n.as_i64() {
                Some(i) => D1Value::Integer(i),
                None => D1Value::Real(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => D1Value::Text(s.clone()),
            Value::Array(items) => {
                let mut bytes = Vec::with_capacity(items.len());
                for item in items {
                    match item.as_u64() {
                        Some(b) if b <= 255 => bytes.push(b as u8),
                        _ => {
                            return Err(D1Error::Type {
                                message: format!(
                                    "Type 'object' not supported for value '{v}': arrays must hold byte numbers 0..=255"
                                ),
                            });
                        }
                    }
                }
                D1Value::Blob(bytes)
            }
            Value::Object(_) => {
                return Err(D1Error::Type {
                    message: format!("Type 'object' not supported for value '{v}'"),
                });
            }
        })
    }

    /// Bytes this value occupies, as D1's value-size limit counts them.
    pub fn byte_len(&self) -> usize {
        match self {
            D1Value::Text(s) => s.len(),
            D1Value::Blob(b) => b.len(),
            _ => 8,
        }
    }

    /// The integer, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            D1Value::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// The float, if this is a real or an integer.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            D1Value::Real(f) => Some(*f),
            D1Value::Integer(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The text, if this is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            D1Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes, if this is a blob.
    pub fn as_blob(&self) -> Option<&[u8]> {
        match self {
            D1Value::Blob(b) => Some(b),
            _ => None,
        }
    }

    /// Whether this is NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, D1Value::Null)
    }
}

impl From<i64> for D1Value {
    fn from(v: i64) -> Self {
        D1Value::Integer(v)
    }
}
impl From<i32> for D1Value {
    fn from(v: i32) -> Self {
        D1Value::Integer(i64::from(v))
    }
}
impl From<u32> for D1Value {
    fn from(v: u32) -> Self {
        D1Value::Integer(i64::from(v))
    }
}
impl From<f64> for D1Value {
    fn from(v: f64) -> Self {
        D1Value::Real(v)
    }
}
impl From<bool> for D1Value {
    fn from(v: bool) -> Self {
        D1Value::Integer(i64::from(v))
    }
}
impl From<&str> for D1Value {
    fn from(v: &str) -> Self {
        D1Value::Text(v.to_owned())
    }
}
impl From<String> for D1Value {
    fn from(v: String) -> Self {
        D1Value::Text(v)
    }
}
impl From<Vec<u8>> for D1Value {
    fn from(v: Vec<u8>) -> Self {
        D1Value::Blob(v)
    }
}
impl From<&[u8]> for D1Value {
    fn from(v: &[u8]) -> Self {
        D1Value::Blob(v.to_vec())
    }
}
impl<T: Into<D1Value>> From<Option<T>> for D1Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(D1Value::Null, Into::into)
    }
}

// ---------------------------------------------------------------------------------------------
// Statements
// ---------------------------------------------------------------------------------------------

/// A prepared statement: SQL text and the values bound to it. Preparing does no I/O.
///
/// Only positional parameters are supported (`?` and `?NNN`), as on D1; named parameters
/// (`:name`, `@name`, `$name`) are rejected when the statement runs.
#[derive(Debug, Clone, PartialEq)]
pub struct D1Statement {
    sql: Arc<str>,
    params: Vec<D1Value>,
}

impl D1Statement {
    /// A statement with no bound values (D1's `db.prepare(sql)`).
    pub fn new(sql: impl Into<Arc<str>>) -> Self {
        Self {
            sql: sql.into(),
            params: Vec::new(),
        }
    }

    /// A new statement with the same SQL and these values (D1's `stmt.bind(...)`); `self` is
    /// left as it was, so it can be bound again.
    pub fn bind<I, V>(&self, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: Into<D1Value>,
    {
        Self {
            sql: Arc::clone(&self.sql),
            params: values.into_iter().map(Into::into).collect(),
        }
    }

    /// Binds JSON values the way D1's binding converts them (see [`D1Value::from_json`]).
    ///
    /// # Errors
    ///
    /// [`D1Error::Type`] for a value D1 does not accept.
    pub fn bind_json(&self, values: &[Value]) -> D1Result<Self> {
        let params = values
            .iter()
            .map(D1Value::from_json)
            .collect::<D1Result<Vec<_>>>()?;
        Ok(Self {
            sql: Arc::clone(&self.sql),
            params,
        })
    }

    /// The SQL text.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The bound values, in order (`?1` is the first).
    pub fn params(&self) -> &[D1Value] {
        &self.params
    }
}

/// Prepares a statement from SQL text.
impl From<&str> for D1Statement {
    fn from(sql: &str) -> Self {
        D1Statement::new(sql)
    }
}

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

/// `meta.timings` of a D1 result.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct D1Timings {
    /// Milliseconds spent executing SQL.
    pub sql_duration_ms: f64,
}

/// The `meta` object of a D1 result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct D1Meta {
    /// Name of what served the query (the database file's name here).
    pub served_by: String,
    /// Region of the instance that answered (`None` where D1 leaves it undefined).
    pub served_by_region: Option<String>,
    /// Whether the primary answered (`None` where D1 leaves it undefined).
    pub served_by_primary: Option<bool>,
    /// SQL execution timings.
    pub timings: D1Timings,
    /// Milliseconds spent executing SQL (same as `timings.sql_duration_ms`).
    pub duration: f64,
    /// Rows changed by the statement (`sqlite3_changes`), 0 for statements that change none.
    pub changes: u64,
    /// Rowid of the last inserted row on the connection.
    pub last_row_id: i64,
    /// Whether the statement changed the database (rows or schema).
    pub changed_db: bool,
    /// Database size in bytes after the statement.
    pub size_after: u64,
    /// Rows read (returned rows plus rows stepped through by full scans).
    pub rows_read: u64,
    /// Rows written, including those written by triggers and foreign-key actions.
    pub rows_written: u64,
    /// Attempts made, automatic retries included (always 1 here: nothing is retried).
    pub total_attempts: u32,
}

impl D1Meta {
    /// `meta` as D1 sends it on the wire.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("served_by".into(), Value::from(self.served_by.clone()));
        if let Some(r) = &self.served_by_region {
            m.insert("served_by_region".into(), Value::from(r.clone()));
        }
        if let Some(p) = self.served_by_primary {
            m.insert("served_by_primary".into(), Value::from(p));
        }
        let mut timings = Map::new();
        timings.insert(
            "sql_duration_ms".into(),
            f64_json(self.timings.sql_duration_ms),
        );
        m.insert("timings".into(), Value::Object(timings));
        m.insert("duration".into(), f64_json(self.duration));
        m.insert("changes".into(), Value::from(self.changes));
        m.insert("last_row_id".into(), Value::from(self.last_row_id));
        m.insert("changed_db".into(), Value::from(self.changed_db));
        m.insert("size_after".into(), Value::from(self.size_after));
        m.insert("rows_read".into(), Value::from(self.rows_read));
        m.insert("rows_written".into(), Value::from(self.rows_written));
        m.insert("total_attempts".into(), Value::from(self.total_attempts));
        Value::Object(m)
    }
}

fn f64_json(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::from(0), Value::Number)
}

/// How results are shaped on the wire (workerd's `resultsFormat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum D1ResultsFormat {
    /// `{columns, rows}` (what workerd asks for on `all`/`first`/`raw`/`batch`).
    #[default]
    RowsAndColumns,
    /// An array of row objects keyed by column name.
    ArrayOfObjects,
    /// No `results` at all (what workerd asks for on `run` and `exec`).
    None,
}

impl D1ResultsFormat {
    /// Parses workerd's query parameter (`ROWS_AND_COLUMNS`, `ARRAY_OF_OBJECTS`, `NONE`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ROWS_AND_COLUMNS" => Some(Self::RowsAndColumns),
            "ARRAY_OF_OBJECTS" => Some(Self::ArrayOfObjects),
            "NONE" => Some(Self::None),
            _ => None,
        }
    }
}

/// The result of one statement: column names, rows as arrays, and `meta`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct D1QueryResult {
    /// Result column names, in order (empty for statements that return no columns).
    pub columns: Vec<String>,
    /// Rows, each with one value per column.
    pub rows: Vec<Vec<D1Value>>,
    /// D1's `meta`.
    pub meta: D1Meta,
}

impl D1QueryResult {
    /// Rows as JSON objects keyed by column name (D1's `all().results`). When two columns
    /// share a name, the later one wins, as in JavaScript.
    pub fn objects(&self) -> Vec<Map<String, Value>> {
        self.rows
            .iter()
            .map(|row| {
                self.columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| (c.clone(), v.to_json()))
                    .collect()
            })
            .collect()
    }

    /// The first row as an object, or `None` without rows (D1's `first()`).
    pub fn first_object(&self) -> Option<Map<String, Value>> {
        let row = self.rows.first()?;
        Some(
            self.columns
                .iter()
                .zip(row)
                .map(|(c, v)| (c.clone(), v.to_json()))
                .collect(),
        )
    }

    /// The whole result as one D1 wire object, `{success, meta, results}`, with `results`
    /// shaped by `format` (left out for [`D1ResultsFormat::None`]).
    pub fn to_json(&self, format: D1ResultsFormat) -> Value {
        let mut m = Map::new();
        m.insert("success".into(), Value::Bool(true));
        m.insert("meta".into(), self.meta.to_json());
        match format {
            D1ResultsFormat::None => {}
            D1ResultsFormat::ArrayOfObjects => {
                m.insert(
                    "results".into(),
                    Value::Array(self.objects().into_iter().map(Value::Object).collect()),
                );
            }
            D1ResultsFormat::RowsAndColumns => {
                let rows = self
                    .rows
                    .iter()
                    .map(|r| Value::Array(r.iter().map(D1Value::to_json).collect()))
                    .collect();
                let mut res = Map::new();
                res.insert(
                    "columns".into(),
                    Value::Array(self.columns.iter().cloned().map(Value::String).collect()),
                );
                res.insert("rows".into(), Value::Array(rows));
                m.insert("results".into(), Value::Object(res));
            }
        }
        Value::Object(m)
    }
}

/// What [`D1Database::exec`] returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct D1ExecResult {
    /// Queries executed: the non-blank lines of the input, as D1 counts them.
    pub count: usize,
    /// Total milliseconds of SQL execution.
    pub duration: f64,
    /// `meta` summed over every statement (changes, rows read and written; the last
    /// `last_row_id` and `size_after`).
    pub meta: D1Meta,
}

/// What an import reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct D1ImportResult {
    /// Statements executed.
    pub statements: u64,
    /// Bytes of SQL read.
    pub bytes: u64,
    /// Database size after the import.
    pub size_after: u64,
}

/// Options for [`D1Database::export`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct D1ExportOptions {
    /// Only these tables (all when empty).
    pub tables: Vec<String>,
    /// Leave out the schema (`CREATE` statements). Default: include it.
    pub no_schema: bool,
    /// Leave out the rows. Default: include them.
    pub no_data: bool,
}

// ---------------------------------------------------------------------------------------------
// Sessions and bookmarks
// ---------------------------------------------------------------------------------------------

/// Where the first query of a session may go (D1's `withSession(constraintOrBookmark)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum D1SessionConstraint {
    /// Any instance, however stale (`"first-unconstrained"`, the default).
    FirstUnconstrained,
    /// The primary (`"first-primary"`).
    FirstPrimary,
    /// An instance at least as new as this bookmark.
    Bookmark(String),
}

impl D1SessionConstraint {
    /// Parses what `withSession` accepts; the empty string means `first-unconstrained`.
    /// Anything else is taken as a bookmark, which the database validates when used.
    pub fn parse(s: &str) -> Self {
        match s {
            "" | "first-unconstrained" => Self::FirstUnconstrained,
            "first-primary" => Self::FirstPrimary,
            other => Self::Bookmark(other.to_owned()),
        }
    }
}

/// Options for [`D1Database::query_batch`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct D1QueryOptions {
    /// The session this request belongs to (the `x-cf-d1-session-commit-token` header on
    /// workerd's protocol). `None`: no session, everything goes to the primary.
    pub session: Option<D1SessionConstraint>,
}

/// What [`D1Database::query_batch`] answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct D1Response {
    /// One result per statement, in input order.
    pub results: Vec<D1QueryResult>,
    /// For a request in a session, the bookmark of the state it saw or made, when the
    /// backend has bookmarks (hand it back to the client so that its session can move
    /// forward); `None` outside sessions.
    pub bookmark: Option<String>,
}

/// Where a Time Travel restore goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum D1RestoreTarget {
    /// The commit this bookmark names.
    Bookmark(String),
    /// The last commit at or before this time, in milliseconds since the UNIX epoch.
    TimestampMs(u64),
}

/// What a Time Travel restore returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct D1RestoreResult {
    /// The bookmark of the restored state.
    pub bookmark: String,
    /// The bookmark of the state before the restore: restore to it to undo.
    pub previous_bookmark: String,
}

// ---------------------------------------------------------------------------------------------
// Traits
// ---------------------------------------------------------------------------------------------

/// One D1 database.
///
/// # Contract
///
/// - A statement runs in an implicit transaction; a batch runs in one transaction, its
///   statements in order, and is rolled back whole when one fails (that statement's error is
///   returned). `exec` runs the input line by line, each line in its own transaction, and
///   stops at the first failing line; earlier lines stay applied.
/// - Explicit transaction statements (`BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `RELEASE`)
///   are rejected; `ATTACH`, `VACUUM`, extension loading and pragmas other than D1's
///   documented ones are refused.
/// - Foreign keys are enforced; `PRAGMA defer_foreign_keys = on` defers the check to the end
///   of the statement's (or batch's) transaction.
/// - A statement or batch that returned `Ok` is durable; readers never see uncommitted or
///   partly committed state.
/// - D1's limits ([`D1Limits`]) are enforced with D1's errors; bound values are never
///   interpolated into SQL text.
///
/// # Errors
///
/// [`D1Error`], whose [`code`](D1Error::code) is D1's (`D1_ERROR`, `D1_TYPE_ERROR`, ...) and
/// whose message is D1's text after the code.
#[async_trait]
pub trait D1Database: Send + Sync + 'static {
    /// Runs statements as one transaction (a single statement is a batch of one) and answers
    /// one result per statement, plus the bookmark when the backend has bookmarks.
    async fn query_batch(
        &self,
        statements: &[D1Statement],
        options: &D1QueryOptions,
    ) -> D1Result<D1Response>;

    /// Runs raw SQL text, line by line (D1's `db.exec`). Empty input is an error.
    async fn exec(&self, sql: &str) -> D1Result<D1ExecResult>;

    /// The database as SQL text (`CREATE` statements, then `INSERT`s), streamed in chunks,
    /// taken from one consistent snapshot.
    async fn export(&self, options: D1ExportOptions) -> D1Result<ByteStream>;

    /// Runs a SQL file (as [`export`](D1Database::export) writes it, or as `sqlite3 .dump`
    /// writes it) in one transaction: all of it is applied, or none of it. Takes time linear
    /// in its size and memory bounded by its largest statement.
    async fn import(&self, sql: ByteStream) -> D1Result<D1ImportResult>;

    /// The database size in bytes.
    async fn size(&self) -> D1Result<u64>;

    /// The bookmark of the latest commit (Time Travel).
    async fn bookmark(&self) -> D1Result<String> {
        Err(D1Error::Unsupported {
            what: "Time Travel bookmarks",
        })
    }

    /// The bookmark of the last commit at or before `timestamp_ms`; the same timestamp always
    /// gives the same bookmark.
    async fn bookmark_at(&self, timestamp_ms: u64) -> D1Result<String> {
        let _ = timestamp_ms;
        Err(D1Error::Unsupported {
            what: "Time Travel bookmarks",
        })
    }

    /// Restores the database in place to `target`, atomically.
    async fn restore(&self, target: D1RestoreTarget) -> D1Result<D1RestoreResult> {
        let _ = target;
        Err(D1Error::Unsupported {
            what: "Time Travel restore",
        })
    }
}

/// D1's prepared-statement methods, over any [`D1Database`].
#[async_trait]
pub trait D1DatabaseExt: D1Database {
    /// Runs one statement and returns its result (D1's `stmt.all()`).
    async fn all(&self, statement: &D1Statement) -> D1Result<D1QueryResult> {
        let r = self
            .query_batch(std::slice::from_ref(statement), &D1QueryOptions::default())
            .await?;
        r.results.into_iter().next().ok_or(D1Error::NoStatements)
    }

    /// Same as [`all`](D1DatabaseExt::all) (D1's `stmt.run()`: the docs call them
    /// equivalent).
    async fn run(&self, statement: &D1Statement) -> D1Result<D1QueryResult> {
        self.all(statement).await
    }

    /// The first row as an object keyed by column name, `None` without rows (D1's
    /// `stmt.first()`). No `LIMIT 1` is added.
    async fn first(&self, statement: &D1Statement) -> D1Result<Option<Map<String, Value>>> {
        Ok(self.all(statement).await?.first_object())
    }

    /// One column of the first row (D1's `stmt.first(column)`): `None` without rows,
    /// [`D1Error::ColumnNotFound`] when rows exist but the column does not.
    async fn first_column(
        &self,
        statement: &D1Statement,
        column: &str,
    ) -> D1Result<Option<D1Value>> {
        let r = self.all(statement).await?;
        let Some(row) = r.rows.into_iter().next() else {
            return Ok(None);
        };
        match r.columns.iter().rposition(|c| c == column) {
            Some(i) => Ok(row.into_iter().nth(i)),
            None => Err(D1Error::ColumnNotFound {
                column: column.to_owned(),
            }),
        }
    }

    /// Rows as arrays (D1's `stmt.raw()`); with `column_names`, the first row holds the
    /// column names as text.
    async fn raw(
        &self,
        statement: &D1Statement,
        column_names: bool,
    ) -> D1Result<Vec<Vec<D1Value>>> {
        let r = self.all(statement).await?;
        let mut out = Vec::with_capacity(r.rows.len() + usize::from(column_names));
        if column_names {
            out.push(r.columns.into_iter().map(D1Value::Text).collect());
        }
        out.extend(r.rows);
        Ok(out)
    }

    /// Runs statements as one transaction (D1's `db.batch`).
    async fn batch(&self, statements: &[D1Statement]) -> D1Result<Vec<D1QueryResult>> {
        if statements.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .query_batch(statements, &D1QueryOptions::default())
            .await?
            .results)
    }
}

impl<D: D1Database + ?Sized> D1DatabaseExt for D {}

/// A D1 session (D1's `withSession`): sequential consistency across queries, by bookmark.
///
/// The session keeps the greatest bookmark it has seen; every query carries it, so that it
/// sees a state at least as new as everything the session saw or wrote before.
pub struct D1Session {
    db: Arc<dyn D1Database>,
    state: Mutex<SessionState>,
}

enum SessionState {
    Constraint(D1SessionConstraint),
    Bookmark(String),
}

impl D1Session {
    /// A session over `db` starting from `constraint`.
    pub fn new(db: Arc<dyn D1Database>, constraint: D1SessionConstraint) -> Self {
        let state = match constraint {
            D1SessionConstraint::Bookmark(b) => SessionState::Bookmark(b),
            c => SessionState::Constraint(c),
        };
        Self {
            db,
            state: Mutex::new(state),
        }
    }

    /// The latest bookmark the session has seen, `None` before its first query when it was
    /// started from a constraint.
    pub fn bookmark(&self) -> Option<String> {
        match &*self.state.lock() {
            SessionState::Constraint(_) => None,
            SessionState::Bookmark(b) => Some(b.clone()),
        }
    }

    fn constraint(&self) -> D1SessionConstraint {
        match &*self.state.lock() {
            SessionState::Constraint(c) => c.clone(),
            SessionState::Bookmark(b) => D1SessionConstraint::Bookmark(b.clone()),
        }
    }

    fn observe(&self, bookmark: Option<String>) {
        let Some(new) = bookmark else { return };
        let mut state = self.state.lock();
        let keep = matches!(&*state, SessionState::Bookmark(old) if *old >= new);
        if !keep {
            *state = SessionState::Bookmark(new);
        }
    }

    /// Runs statements in the session (one transaction), moving its bookmark forward.
    pub async fn batch(&self, statements: &[D1Statement]) -> D1Result<Vec<D1QueryResult>> {
        let options = D1QueryOptions {
            session: Some(self.constraint()),
        };
        let r = self.db.query_batch(statements, &options).await?;
        self.observe(r.bookmark);
        Ok(r.results)
    }

    /// Runs one statement in the session.
    pub async fn all(&self, statement: &D1Statement) -> D1Result<D1QueryResult> {
        self.batch(std::slice::from_ref(statement))
            .await?
            .into_iter()
            .next()
            .ok_or(D1Error::NoStatements)
    }
}

/// A set of named D1 databases (what `wrangler d1 create/list/delete` manage).
///
/// # Contract
///
/// Names are 1..=64 characters of ASCII letters, digits, `-` and `_`. `create` of an existing
/// name fails; `database` of an unknown name fails; `delete` removes the database and its
/// files, and handles to it then fail with [`D1Error::NotFound`].
#[async_trait]
pub trait D1Catalog: Send + Sync + 'static {
    /// Creates an empty database.
    async fn create(&self, name: &str) -> D1Result<Arc<dyn D1Database>>;

    /// A handle to an existing database (opened lazily).
    async fn database(&self, name: &str) -> D1Result<Arc<dyn D1Database>>;

    /// Every database's name, sorted.
    async fn list(&self) -> D1Result<Vec<String>>;

    /// Deletes a database and its files.
    async fn delete(&self, name: &str) -> D1Result<()>;
}

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

/// D1's documented limits.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct D1Limits {
    /// Most bound parameters in one statement. Cloudflare: 100.
    pub max_bound_parameters: usize,
    /// Longest SQL statement in bytes. Cloudflare: 100,000.
    pub max_statement_bytes: usize,
    /// Largest string, blob or row in bytes. Cloudflare: 2,000,000.
    pub max_value_bytes: usize,
    /// Most columns in a table or result. Cloudflare: 100.
    pub max_columns: usize,
    /// Most arguments to one SQL function. Cloudflare: 32.
    pub max_function_args: usize,
    /// Longest LIKE or GLOB pattern in bytes. Cloudflare: 50.
    pub max_like_pattern_bytes: usize,
    /// Longest a statement or a whole batch may run, in milliseconds. Cloudflare: 30,000.
    pub max_query_ms: u64,
    /// Largest database in bytes. Cloudflare: 10 GB (10,000,000,000).
    pub max_database_bytes: u64,
    /// Largest SQL file one import may read, in bytes. Cloudflare: 5 GB.
    pub max_import_bytes: u64,
    /// Time Travel window in seconds. Cloudflare: 30 days (2,592,000).
    pub time_travel_retention_secs: u64,
}

impl D1Limits {
    /// Cloudflare's documented values (Workers Paid plan).
    pub fn cloudflare() -> Self {
        Self {
            max_bound_parameters: 100,
            max_statement_bytes: 100_000,
            max_value_bytes: 2_000_000,
            max_columns: 100,
            max_function_args: 32,
            max_like_pattern_bytes: 50,
            max_query_ms: 30_000,
            max_database_bytes: 10_000_000_000,
            max_import_bytes: 5_000_000_000,
            time_travel_retention_secs: 30 * 24 * 3600,
        }
    }

    /// Relaxed limits: SQLite's own maxima (32,766 parameters, 1,000,000,000-byte statements
    /// and values, 2,000 columns, 127 function arguments), no time limit, no size limit.
    /// The Time Travel window stays 30 days.
    pub fn unbounded() -> Self {
        Self {
            max_bound_parameters: 32_766,
            max_statement_bytes: 1_000_000_000,
            max_value_bytes: 1_000_000_000,
            max_columns: 2000,
            max_function_args: 127,
            max_like_pattern_bytes: 50_000,
            max_query_ms: u64::MAX,
            max_database_bytes: u64::MAX,
            max_import_bytes: u64::MAX,
            time_travel_retention_secs: 30 * 24 * 3600,
        }
    }
}

impl Default for D1Limits {
    fn default() -> Self {
        Self::cloudflare()
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Everything that can go wrong in a D1 operation.
///
/// `Display` prints D1's full message, code first (`D1_ERROR: no such table: t:
/// SQLITE_ERROR`); [`message`](D1Error::message) gives the part after the code, which is what
/// workerd's protocol carries in its `error` field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum D1Error {
    /// SQLite rejected or failed the statement.
    #[error("D1_ERROR: {message}")]
    Sql {
        /// SQLite's message and result code, as D1 prints them.
        message: String,
    },
    /// The input holds no SQL statement.
    #[error("D1_ERROR: No SQL statements detected.")]
    NoStatements,
    /// A bound value has a type D1 does not accept.
    #[error("D1_TYPE_ERROR: {message}")]
    Type {
        /// What was wrong.
        message: String,
    },
    /// `first(column)` named a column the result does not have.
    #[error("D1_COLUMN_NOTFOUND: Column not found ({column})")]
    ColumnNotFound {
        /// The column asked for.
        column: String,
    },
    /// A line of `exec` failed.
    #[error("D1_EXEC_ERROR: Error in line {line}: {sql}: {message}")]
    Exec {
        /// 1-based line number.
        line: usize,
        /// The line's text.
        sql: String,
        /// The statement's error, without its code.
        message: String,
    },
    /// A session constraint or bookmark is not valid.
    #[error("D1_SESSION_ERROR: invalid bookmark or constraint: {detail}")]
    Session {
        /// What was wrong.
        detail: String,
    },
    /// The statement uses named parameters, which D1 does not support.
    #[error(
        "D1_ERROR: named parameter {name} is not supported; use ? or ?NNN positional parameters"
    )]
    NamedParameter {
        /// The parameter as written.
        name: String,
    },
    /// The number of bound values does not match the statement's parameters.
    #[error(
        "D1_ERROR: Wrong number of parameter bindings for SQL query: the statement takes {expected}, {got} were bound"
    )]
    WrongParameterCount {
        /// Parameters in the statement.
        expected: usize,
        /// Values bound.
        got: usize,
    },
    /// Too many values bound.
    #[error("D1_ERROR: too many SQL variables: {count} bound parameters; the limit is {limit}")]
    TooManyParameters {
        /// Values bound.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The SQL text is longer than the statement limit.
    #[error("D1_ERROR: statement too long: {len} bytes; the limit is {limit}")]
    StatementTooLong {
        /// Length in bytes.
        len: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A bound value is larger than the value limit.
    #[error(
        "D1_ERROR: string or blob too big: parameter {index} is {len} bytes; the limit is {limit}"
    )]
    ValueTooLarge {
        /// 1-based parameter index.
        index: usize,
        /// Length in bytes.
        len: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The query or batch ran longer than the time limit and was interrupted.
    #[error("D1_ERROR: D1 DB query exceeded its time limit of {limit_ms} ms and was interrupted")]
    Timeout {
        /// The limit in milliseconds.
        limit_ms: u64,
    },
    /// The database reached its size limit.
    #[error("D1_ERROR: Exceeded maximum DB size. The limit is {limit} bytes.")]
    DatabaseFull {
        /// The limit in bytes.
        limit: u64,
    },
    /// The statement tried something D1 forbids (ATTACH, VACUUM, extension loading, a
    /// pragma outside D1's list).
    #[error("D1_ERROR: not authorized: {what}: SQLITE_AUTH")]
    NotAuthorized {
        /// What was refused.
        what: String,
    },
    /// The statement is a transaction statement; D1 wraps every query in a transaction.
    #[error(
        "D1_ERROR: {keyword} is not allowed: D1 runs every query and batch in a transaction for you; use batch() to run several statements in one transaction"
    )]
    TransactionStatement {
        /// The keyword found (`BEGIN`, `COMMIT`, ...).
        keyword: String,
    },
    /// An import file is larger than the import limit.
    #[error("D1_ERROR: import is larger than {limit} bytes")]
    ImportTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// A database name is not valid.
    #[error("D1_ERROR: invalid database name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// No database has this name.
    #[error("D1_ERROR: database {name:?} not found")]
    NotFound {
        /// The name.
        name: String,
    },
    /// A database with this name already exists.
    #[error("D1_ERROR: database {name:?} already exists")]
    AlreadyExists {
        /// The name.
        name: String,
    },
    /// A bookmark does not name a commit this database has (or had within the window).
    #[error("D1_ERROR: bookmark {bookmark:?} not found: {reason}")]
    BookmarkNotFound {
        /// The bookmark.
        bookmark: String,
        /// Why.
        reason: String,
    },
    /// A restore cancelled this query.
    #[error("D1_ERROR: the query was cancelled because the database is being restored")]
    Restoring,
    /// The operation is not implemented by this backend.
    #[error("D1_ERROR: {what} is not supported by this backend")]
    Unsupported {
        /// What.
        what: &'static str,
    },
    /// The engine failed.
    #[error("D1_ERROR: D1 storage failed during {op}: {source}")]
    Engine {
        /// The operation.
        op: &'static str,
        /// The cause.
        source: BoxError,
    },
    /// An earlier engine failure left the database in an unknown state; it refuses writes.
    #[error("D1_ERROR: the database refuses writes after an earlier storage failure: {reason}")]
    Poisoned {
        /// The earlier failure.
        reason: String,
    },
    /// The database handle was closed.
    #[error("D1_ERROR: the database is closed")]
    Closed,
}

impl D1Error {
    /// Wraps an engine error.
    pub fn engine(op: &'static str, source: impl Into<BoxError>) -> Self {
        D1Error::Engine {
            op,
            source: source.into(),
        }
    }

    /// D1's code as text: `D1_ERROR`, `D1_TYPE_ERROR`, `D1_COLUMN_NOTFOUND`,
    /// `D1_EXEC_ERROR` or `D1_SESSION_ERROR`.
    pub fn code_name(&self) -> &'static str {
        match self {
            D1Error::Type { .. } => "D1_TYPE_ERROR",
            D1Error::ColumnNotFound { .. } => "D1_COLUMN_NOTFOUND",
            D1Error::Exec { .. } => "D1_EXEC_ERROR",
            D1Error::Session { .. } => "D1_SESSION_ERROR",
            _ => "D1_ERROR",
        }
    }

    /// The message after the code (`no such table: t: SQLITE_ERROR`).
    pub fn message(&self) -> String {
        let full = self.to_string();
        let prefix = self.code_name();
        full.strip_prefix(prefix)
            .and_then(|s| s.strip_prefix(": "))
            .map_or_else(|| full.clone(), str::to_owned)
    }

    /// The error as D1's wire shape `{success: false, error}`.
    pub fn to_json(&self) -> Value {
        let mut m = BTreeMap::new();
        m.insert("success", Value::Bool(false));
        m.insert("error", Value::String(self.message()));
        Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }
}

impl PlatformError for D1Error {
    fn kind(&self) -> ErrorKind {
        match self {
            D1Error::Sql { .. }
            | D1Error::NoStatements
            | D1Error::Type { .. }
            | D1Error::ColumnNotFound { .. }
            | D1Error::Exec { .. }
            | D1Error::Session { .. }
            | D1Error::NamedParameter { .. }
            | D1Error::WrongParameterCount { .. }
            | D1Error::NotAuthorized { .. }
            | D1Error::TransactionStatement { .. }
            | D1Error::InvalidName { .. } => ErrorKind::InvalidInput,
            D1Error::TooManyParameters { .. }
            | D1Error::StatementTooLong { .. }
            | D1Error::ValueTooLarge { .. }
            | D1Error::DatabaseFull { .. }
            | D1Error::ImportTooLarge { .. } => ErrorKind::TooLarge,
            D1Error::Timeout { .. } => ErrorKind::Timeout,
            D1Error::NotFound { .. } | D1Error::BookmarkNotFound { .. } => ErrorKind::NotFound,
            D1Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            D1Error::Restoring | D1Error::Closed => ErrorKind::Unavailable,
            D1Error::Unsupported { .. } => ErrorKind::Unsupported,
            D1Error::Engine { .. } | D1Error::Poisoned { .. } => ErrorKind::Internal,
        }
    }

    fn code(&self) -> Option<CloudflareCode> {
        Some(CloudflareCode::Name(self.code_name()))
    }
}

impl fmt::Display for D1SessionConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            D1SessionConstraint::FirstUnconstrained => f.write_str("first-unconstrained"),
            D1SessionConstraint::FirstPrimary => f.write_str("first-primary"),
            D1SessionConstraint::Bookmark(b) => f.write_str(b),
        }
    }
}
