//! The SQL API's guard rails: an SQLite authorizer that keeps user SQL away from `_cf_`
//! names, transaction statements, ATTACH and most pragmas; and value conversions.

use std::sync::atomic::{AtomicBool, Ordering};

use bindery_core::durable::SqlValue;
use parking_lot::Mutex;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::{ToSqlOutput, ValueRef};

/// Why the authorizer refused a user statement.
#[derive(Debug, Clone)]
pub(crate) enum Denied {
    Reserved(String),
    Transaction,
    Other(String),
}

#[derive(Default)]
pub(crate) struct AuthState {
    pub(crate) user: AtomicBool,
    pub(crate) denied: Mutex<Option<Denied>>,
}

fn reserved(name: &str) -> bool {
    name.len() >= 4 && name[..4].eq_ignore_ascii_case("_cf_")
}

const ALLOWED_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "foreign_keys",
    "defer_foreign_keys",
    "quick_check",
    "integrity_check",
    "optimize",
    "data_version",
];

pub(crate) fn authorize(auth: &AuthState, ctx: AuthContext<'_>) -> Authorization {
    if !auth.user.load(Ordering::Relaxed) {
        return Authorization::Allow;
    }
    let deny = |d: Denied| {
        *auth.denied.lock() = Some(d);
        Authorization::Deny
    };
    match ctx.action {
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => deny(Denied::Transaction),
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => {
            deny(Denied::Other("ATTACH and DETACH are not allowed".into()))
        }
        AuthAction::Pragma { pragma_name, .. } => {
            if ALLOWED_PRAGMAS
                .iter()
                .any(|p| p.eq_ignore_ascii_case(pragma_name))
            {
                Authorization::Allow
            } else {
                deny(Denied::Other(format!(
                    "PRAGMA {pragma_name} is not allowed; allowed: {}",
                    ALLOWED_PRAGMAS.join(", ")
                )))
            }
        }
        AuthAction::CreateIndex {
            index_name,
            table_name,
        }
        | AuthAction::DropIndex {
            index_name,
            table_name,
        }
        | AuthAction::CreateTempIndex {
            index_name,
            table_name,
        }
        | AuthAction::DropTempIndex {
            index_name,
            table_name,
        } => {
            for n in [index_name, table_name] {
                if reserved(n) {
                    return deny(Denied::Reserved(n.to_owned()));
                }
            }
            Authorization::Allow
        }
        AuthAction::CreateTrigger {
            trigger_name,
            table_name,
        }
        | AuthAction::DropTrigger {
            trigger_name,
            table_name,
        }
        | AuthAction::CreateTempTrigger {
            trigger_name,
            table_name,
        }
        | AuthAction::DropTempTrigger {
            trigger_name,
            table_name,
        } => {
            for n in [trigger_name, table_name] {
                if reserved(n) {
                    return deny(Denied::Reserved(n.to_owned()));
                }
            }
            Authorization::Allow
        }
        AuthAction::CreateTable { table_name }
        | AuthAction::CreateTempTable { table_name }
        | AuthAction::DropTable { table_name }
        | AuthAction::DropTempTable { table_name }
        | AuthAction::Delete { table_name }
        | AuthAction::Insert { table_name }
        | AuthAction::Read { table_name, .. }
        | AuthAction::Update { table_name, .. }
        | AuthAction::AlterTable { table_name, .. }
        | AuthAction::Analyze { table_name }
        | AuthAction::CreateVtable { table_name, .. }
        | AuthAction::DropVtable { table_name, .. } => {
            if reserved(table_name) {
                deny(Denied::Reserved(table_name.to_owned()))
            } else {
                Authorization::Allow
            }
        }
        AuthAction::CreateView { view_name }
        | AuthAction::CreateTempView { view_name }
        | AuthAction::DropView { view_name }
        | AuthAction::DropTempView { view_name } => {
            if reserved(view_name) {
                deny(Denied::Reserved(view_name.to_owned()))
            } else {
                Authorization::Allow
            }
        }
        _ => Authorization::Allow,
    }
}

pub(crate) fn to_sql(v: &SqlValue) -> ToSqlOutput<'_> {
    match v {
        SqlValue::Null => ToSqlOutput::Borrowed(ValueRef::Null),
        SqlValue::Integer(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
        SqlValue::Real(f) => ToSqlOutput::Borrowed(ValueRef::Real(*f)),
        SqlValue::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        SqlValue::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
    }
}

pub(crate) fn from_sql(v: ValueRef<'_>) -> SqlValue {
    match v {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(i) => SqlValue::Integer(i),
        ValueRef::Real(f) => SqlValue::Real(f),
        ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
    }
}
