//! Export as SQL text: schema first, then rows as `INSERT` statements, from one snapshot.
//!
//! The output starts with `PRAGMA defer_foreign_keys=TRUE;` (as D1's exports do) so that rows
//! can be inserted in table order whatever their references. Virtual tables (FTS5, R*Tree)
//! are exported as their `CREATE VIRTUAL TABLE` statement and their rows; their shadow tables
//! are left out, since the virtual table rebuilds them. Tables whose names start with
//! `sqlite_` or `_cf_` are internal and left out (`sqlite_sequence` is exported as its rows,
//! so that AUTOINCREMENT counters survive).

use bindery_core::d1::{D1ExportOptions, D1Result};
use rusqlite::Connection;
use rusqlite::types::ValueRef;

use crate::guard::Control;

/// Rows of text are flushed to the sink in pieces of about this many bytes.
const CHUNK: usize = 256 * 1024;

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn push_value(out: &mut String, v: ValueRef<'_>) {
    use std::fmt::Write;
    match v {
        ValueRef::Null => out.push_str("NULL"),
        ValueRef::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        ValueRef::Real(f) => {
            if f.is_finite() {
                let _ = write!(out, "{f:?}");
            } else if f.is_nan() {
                out.push_str("NULL");
            } else if f > 0.0 {
                out.push_str("9e999");
            } else {
                out.push_str("-9e999");
            }
        }
        ValueRef::Text(t) => {
            out.push('\'');
            out.push_str(&String::from_utf8_lossy(t).replace('\'', "''"));
            out.push('\'');
        }
        ValueRef::Blob(b) => {
            out.push_str("X'");
            for byte in b {
                let _ = write!(out, "{byte:02X}");
            }
            out.push('\'');
        }
    }
}

struct Object {
    kind: String,
    name: String,
    sql: String,
}

/// Writes the export to `sink` in chunks; stops early (returning `Ok`) if `sink` returns
/// `false`. Runs in one read transaction on `conn`.
pub(crate) fn export(
    conn: &Connection,
    control: &Control,
    options: &D1ExportOptions,
    mut sink: impl FnMut(String) -> bool,
) -> D1Result<()> {
    control
        .internal(|| -> rusqlite::Result<()> {
            conn.execute_batch("BEGIN")?;
            let r = export_in_txn(conn, options, &mut sink);
            let _ = conn.execute_batch("COMMIT");
            r
        })
        .map_err(|e| bindery_core::d1::D1Error::engine("export", e))
}

fn export_in_txn(
    conn: &Connection,
    options: &D1ExportOptions,
    sink: &mut impl FnMut(String) -> bool,
) -> rusqlite::Result<()> {
    let mut objects = Vec::new();
    {
        let mut s = conn.prepare(
            "SELECT type, name, sql FROM sqlite_schema WHERE sql IS NOT NULL \
             ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 WHEN 'view' THEN 2 ELSE 3 END, rowid",
        )?;
        let mut rows = s.query([])?;
        while let Some(r) = rows.next()? {
            objects.push(Object {
                kind: r.get(0)?,
                name: r.get(1)?,
                sql: r.get(2)?,
            });
        }
    }
    let mut shadow = std::collections::HashSet::new();
    {
        let mut s =
            conn.prepare("SELECT name, type FROM pragma_table_list WHERE schema = 'main'")?;
        let mut rows = s.query([])?;
        while let Some(r) = rows.next()? {
            let name: String = r.get(0)?;
            let kind: String = r.get(1)?;
            if kind == "shadow" {
                shadow.insert(name);
            }
        }
    }
    let wanted = |name: &str| options.tables.is_empty() || options.tables.iter().any(|t| t == name);
    let mut out = String::from("PRAGMA defer_foreign_keys=TRUE;\n");
    let has_sequence = objects.iter().any(|o| o.name == "sqlite_sequence");
    for o in &objects {
        if o.name.starts_with("sqlite_") || o.name.starts_with("_cf_") || shadow.contains(&o.name) {
            continue;
        }
        let table = if o.kind == "table" {
            o.name.clone()
        } else {
            String::new()
        };
        if o.kind == "table" && !wanted(&o.name) {
            continue;
        }
        if !options.no_schema {
            out.push_str(&o.sql);
            out.push_str(";\n");
        }
        if o.kind == "table" && !options.no_data {
            let virtual_table = o.sql.trim_start()[..12.min(o.sql.trim_start().len())]
                .eq_ignore_ascii_case("create virtu");
            let cols = if virtual_table { "rowid, *" } else { "*" };
            let mut s = conn.prepare(&format!("SELECT {cols} FROM {}", quote_ident(&table)))?;
            let names: Vec<String> = s.column_names().map(str::to_owned).collect();
            let ncol = names.len();
            let col_list = names
                .iter()
                .map(|n| quote_ident(n))
                .collect::<Vec<_>>()
                .join(",");
            let mut rows = s.query([])?;
            while let Some(r) = rows.next()? {
                out.push_str("INSERT INTO ");
                out.push_str(&quote_ident(&table));
                if virtual_table {
                    out.push('(');
                    out.push_str(&col_list);
                    out.push(')');
                }
                out.push_str(" VALUES(");
                for i in 0..ncol {
                    if i > 0 {
                        out.push(',');
                    }
                    push_value(&mut out, r.get_ref(i)?);
                }
                out.push_str(");\n");
                if out.len() >= CHUNK && !sink(std::mem::take(&mut out)) {
                    return Ok(());
                }
            }
        }
    }
    if has_sequence && !options.no_data && options.tables.is_empty() {
        let mut s = conn.prepare("SELECT name, seq FROM sqlite_sequence")?;
        let mut rows = s.query([])?;
        while let Some(r) = rows.next()? {
            let name: String = r.get(0)?;
            let seq: i64 = r.get(1)?;
            out.push_str(&format!(
                "DELETE FROM sqlite_sequence WHERE name = '{0}';\nINSERT INTO sqlite_sequence(name, seq) VALUES('{0}', {seq});\n",
                name.replace('\'', "''")
            ));
        }
    }
    if !out.is_empty() {
        sink(out);
    }
    Ok(())
}
