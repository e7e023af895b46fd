//! What keeps a statement inside its database: connection settings, D1's limits as SQLite
//! limits, the authorizer, the progress handler that enforces time limits, and the mapping
//! of SQLite errors to D1's.

use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bindery_core::d1::{D1Error, D1Limits};
use parking_lot::Mutex;
use rusqlite::config::DbConfig;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::math;

/// Why the progress handler stopped a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum StopReason {
    None = 0,
    /// The query or batch passed its time limit.
    Timeout = 1,
    /// An inline read used up its step budget; it is retried off the async thread.
    Budget = 2,
    /// A restore is replacing the database.
    Restoring = 3,
}

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    base().elapsed().as_nanos() as u64
}

/// Per-connection switches read by the authorizer and the progress handler.
#[derive(Debug, Default)]
pub(crate) struct Control {
    /// Set while Bindery itself runs control statements (savepoints, pragmas).
    internal: AtomicBool,
    /// Deadline in nanoseconds since [`base`]; 0 for none.
    deadline: AtomicU64,
    /// Progress callbacks left before an inline read is stopped; negative for no budget.
    budget: AtomicI64,
    stopped: AtomicU8,
    /// Set when a cancel (restore) is requested for everything running on the connection.
    cancel: AtomicBool,
    /// Whether the last statements prepared touched a pragma that outlives a transaction.
    pragma_touched: AtomicBool,
    /// What the authorizer refused last.
    denied: Mutex<Option<String>>,
}

impl Control {
    pub fn new() -> Self {
        Self {
            budget: AtomicI64::new(-1),
            ..Default::default()
        }
    }

    /// Runs `f` with the authorizer letting everything through.
    pub fn internal<T>(&self, f: impl FnOnce() -> T) -> T {
        let prev = self.internal.swap(true, Ordering::SeqCst);
        let r = f();
        self.internal.store(prev, Ordering::SeqCst);
        r
    }

    /// Starts a time limit of `limit_ms` (none for `u64::MAX`).
    pub fn start_deadline(&self, limit_ms: u64) {
        self.stopped.store(StopReason::None as u8, Ordering::SeqCst);
        let d = if limit_ms == u64::MAX {
            0
        } else {
            now_ns()
                .saturating_add(limit_ms.saturating_mul(1_000_000))
                .max(1)
        };
        self.deadline.store(d, Ordering::SeqCst);
    }

    pub fn clear_deadline(&self) {
        self.deadline.store(0, Ordering::SeqCst);
    }

    /// Gives the next statements `callbacks` progress callbacks (negative: unlimited).
    pub fn set_budget(&self, callbacks: i64) {
        self.budget.store(callbacks, Ordering::SeqCst);
    }

    pub fn stop_reason(&self) -> StopReason {
        match self.stopped.load(Ordering::SeqCst) {
            1 => StopReason::Timeout,
            2 => StopReason::Budget,
            3 => StopReason::Restoring,
            _ => StopReason::None,
        }
    }

    /// Stops whatever runs on the connection with [`StopReason::Restoring`] until cleared.
    pub fn set_cancel(&self, on: bool) {
        self.cancel.store(on, Ordering::SeqCst);
    }

    pub fn take_pragma_touched(&self) -> bool {
        self.pragma_touched.swap(false, Ordering::SeqCst)
    }

    fn progress(&self) -> bool {
        if self.cancel.load(Ordering::Relaxed) {
            self.stopped
                .store(StopReason::Restoring as u8, Ordering::SeqCst);
            return true;
        }
        let b = self.budget.load(Ordering::Relaxed);
        if b >= 0 {
            if b == 0 {
                self.stopped
                    .store(StopReason::Budget as u8, Ordering::SeqCst);
                return true;
            }
            self.budget.store(b - 1, Ordering::Relaxed);
        }
        let d = self.deadline.load(Ordering::Relaxed);
        if d != 0 && now_ns() > d {
            self.stopped
                .store(StopReason::Timeout as u8, Ordering::SeqCst);
            return true;
        }
        false
    }

    fn deny(&self, what: String) -> Authorization {
        *self.denied.lock() = Some(what);
        Authorization::Deny
    }

    fn authorize(&self, ctx: AuthContext<'_>) -> Authorization {
        if self.internal.load(Ordering::SeqCst) {
            return Authorization::Allow;
        }
        match ctx.action {
            AuthAction::Attach { .. } => self.deny("ATTACH".into()),
            AuthAction::Detach { .. } => self.deny("DETACH".into()),
            AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => {
                self.deny("transaction control".into())
            }
            AuthAction::Function { function_name } => {
                if function_name.eq_ignore_ascii_case("load_extension") {
                    self.deny("load_extension".into())
                } else {
                    Authorization::Allow
                }
            }
            AuthAction::Pragma {
                pragma_name,
                pragma_value,
            } => {
                let name = pragma_name.to_ascii_lowercase();
                match pragma_rule(&name) {
                    PragmaRule::Allowed => Authorization::Allow,
                    PragmaRule::ReadOnly if pragma_value.is_none() => Authorization::Allow,
                    PragmaRule::TransactionScoped => {
                        if pragma_value.is_some() {
                            self.pragma_touched.store(true, Ordering::SeqCst);
                        }
                        Authorization::Allow
                    }
                    _ => self.deny(format!("PRAGMA {name}")),
                }
            }
            _ => Authorization::Allow,
        }
    }

    fn denied(&self) -> String {
        self.denied
            .lock()
            .take()
            .unwrap_or_else(|| "statement".into())
    }
}

enum PragmaRule {
    /// Read or run freely.
    Allowed,
    /// Readable, not settable.
    ReadOnly,
    /// Settable; the setting lasts for the current transaction only (Bindery resets it).
    TransactionScoped,
    Denied,
}

fn pragma_rule(name: &str) -> PragmaRule {
    match name {
        "table_list" | "table_info" | "table_xinfo" | "index_list" | "index_info"
        | "index_xinfo" | "quick_check" | "integrity_check" | "foreign_key_check"
        | "foreign_key_list" | "optimize" | "function_list" | "collation_list" | "pragma_list"
        | "compile_options" => PragmaRule::Allowed,
        "page_count" | "page_size" | "freelist_count" | "data_version" | "schema_version"
        | "user_version" | "encoding" | "auto_vacuum" | "max_page_count" => PragmaRule::ReadOnly,
        "case_sensitive_like"
        | "ignore_check_constraints"
        | "legacy_alter_table"
        | "recursive_triggers"
        | "reverse_unordered_selects"
        | "foreign_keys"
        | "defer_foreign_keys" => PragmaRule::TransactionScoped,
        _ => PragmaRule::Denied,
    }
}

/// Pragmas reset after a job that set one, so that settings last one transaction as on D1.
pub(crate) const RESET_PRAGMAS: &str = "PRAGMA case_sensitive_like = 0; PRAGMA ignore_check_constraints = 0; PRAGMA legacy_alter_table = 0; PRAGMA recursive_triggers = 0; PRAGMA reverse_unordered_selects = 0; PRAGMA foreign_keys = 1; PRAGMA defer_foreign_keys = 0;";

/// Whether writes are fsynced at every commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: an acknowledged commit survives power loss (the default).
    PowerLoss,
    /// `synchronous=NORMAL`: survives a process crash, may lose the last commits on power
    /// loss.
    ProcessCrashOnly,
}

/// How a connection is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Writer,
    Reader,
}

/// Milliseconds a connection waits on a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Progress callback period in virtual-machine instructions.
pub(crate) const PROGRESS_OPS: i32 = 1000;

/// Opens and configures a connection to the database file at `path`.
pub(crate) fn open(
    path: &Path,
    role: Role,
    limits: &D1Limits,
    durability: Durability,
    control: &std::sync::Arc<Control>,
    manual_checkpoints: bool,
) -> rusqlite::Result<Connection> {
    let flags = match role {
        Role::Writer => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        Role::Reader => OpenFlags::SQLITE_OPEN_READ_ONLY,
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if role == Role::Writer {
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!(
                    "could not switch the database to WAL mode (got {mode})"
                )),
            ));
        }
        let sync = match durability {
            Durability::PowerLoss => "FULL",
            Durability::ProcessCrashOnly => "NORMAL",
        };
        conn.execute_batch(&format!("PRAGMA synchronous = {sync};"))?;
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let page_size = page_size.max(1) as u64;
        if limits.max_database_bytes != u64::MAX {
            let pages = (limits.max_database_bytes / page_size.max(1)).max(1);
            conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
        }
    }
    if manual_checkpoints {
        // Time Travel archives the WAL before any checkpoint: SQLite must never checkpoint
        // on its own, not even when the last connection closes.
        if role == Role::Writer {
            conn.query_row("PRAGMA wal_autocheckpoint = 0", [], |_| Ok(()))?;
        }
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    }
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;")?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_FKEY, true)?;
    let clamp = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    conn.set_limit(
        Limit::SQLITE_LIMIT_VARIABLE_NUMBER,
        clamp(limits.max_bound_parameters),
    )?;
    conn.set_limit(
        Limit::SQLITE_LIMIT_SQL_LENGTH,
        clamp(limits.max_statement_bytes),
    )?;
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, clamp(limits.max_value_bytes))?;
    conn.set_limit(Limit::SQLITE_LIMIT_COLUMN, clamp(limits.max_columns))?;
    conn.set_limit(
        Limit::SQLITE_LIMIT_FUNCTION_ARG,
        clamp(limits.max_function_args),
    )?;
    conn.set_limit(
        Limit::SQLITE_LIMIT_LIKE_PATTERN_LENGTH,
        clamp(limits.max_like_pattern_bytes),
    )?;
    math::register(&conn)?;
    conn.set_prepared_statement_cache_capacity(128);
    let c = std::sync::Arc::clone(control);
    conn.authorizer(Some(move |ctx: AuthContext<'_>| c.authorize(ctx)))?;
    let c = std::sync::Arc::clone(control);
    conn.progress_handler(PROGRESS_OPS, Some(move || c.progress()))?;
    Ok(conn)
}

/// SQLite's name for a primary result code, as D1 appends it to messages.
fn code_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::ConstraintViolation => "SQLITE_CONSTRAINT",
        ErrorCode::TooBig => "SQLITE_TOOBIG",
        ErrorCode::TypeMismatch => "SQLITE_MISMATCH",
        ErrorCode::ReadOnly => "SQLITE_READONLY",
        ErrorCode::DatabaseBusy => "SQLITE_BUSY",
        ErrorCode::DatabaseLocked => "SQLITE_LOCKED",
        ErrorCode::ApiMisuse => "SQLITE_MISUSE",
        ErrorCode::ParameterOutOfRange => "SQLITE_RANGE",
        ErrorCode::OperationAborted => "SQLITE_ABORT",
        ErrorCode::SchemaChanged => "SQLITE_SCHEMA",
        _ => "SQLITE_ERROR",
    }
}

/// Whether an error means the storage itself failed (the handle may be in an unknown state).
pub(crate) fn is_storage_failure(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::SystemIoFailure
                | ErrorCode::DatabaseCorrupt
                | ErrorCode::NotADatabase
                | ErrorCode::CannotOpen
                | ErrorCode::OutOfMemory
        )
    )
}

/// Converts a SQLite error into D1's, using what the connection's control recorded.
pub(crate) fn map_err(e: rusqlite::Error, control: &Control, limits: &D1Limits) -> D1Error {
    if let rusqlite::Error::SqliteFailure(err, msg) = &e {
        match err.code {
            ErrorCode::OperationInterrupted => {
                return match control.stop_reason() {
                    StopReason::Restoring => D1Error::Restoring,
                    StopReason::Budget => D1Error::Engine {
                        op: "inline read",
                        source: "step budget used up".into(),
                    },
                    _ => D1Error::Timeout {
                        limit_ms: limits.max_query_ms,
                    },
                };
            }
            ErrorCode::AuthorizationForStatementDenied => {
                return D1Error::NotAuthorized {
                    what: control.denied(),
                };
            }
            ErrorCode::DiskFull => {
                return D1Error::DatabaseFull {
                    limit: limits.max_database_bytes,
                };
            }
            code if is_storage_failure(&e) => {
                return D1Error::engine("SQLite", format!("{e} ({code:?})"));
            }
            code => {
                let text = msg.clone().unwrap_or_else(|| err.to_string());
                return D1Error::Sql {
                    message: format!("{text}: {}", code_name(code)),
                };
            }
        }
    }
    match e {
        rusqlite::Error::SqlInputError { msg, offset, .. } => D1Error::Sql {
            message: format!("{msg} at offset {offset}: SQLITE_ERROR"),
        },
        other => D1Error::Sql {
            message: format!("{other}: SQLITE_ERROR"),
        },
    }
}
