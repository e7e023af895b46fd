//! D1 conformance: one function per documented behaviour (spec section 2).

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bindery_core::d1::{
    D1Catalog, D1Database, D1DatabaseExt, D1Error, D1ExportOptions, D1Limits, D1QueryOptions,
    D1RestoreTarget, D1ResultsFormat, D1Session, D1SessionConstraint, D1Statement, D1Value,
};
use bindery_core::{Clock, ErrorKind, ManualClock, PlatformError};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;

use crate::{TestResult, ensure, ensure_eq};

/// A database under test.
pub struct D1Subject {
    /// A fresh, empty database.
    pub db: Arc<dyn D1Database>,
    /// The clock the database reads; cases advance it.
    pub clock: ManualClock,
    /// The catalog the database belongs to, when the backend has one.
    pub catalog: Option<Arc<dyn D1Catalog>>,
    _guard: Box<dyn Any + Send + Sync>,
}

impl D1Subject {
    /// Wraps a database; `guard` lives as long as the subject (a temp dir, say).
    pub fn new(
        db: Arc<dyn D1Database>,
        clock: ManualClock,
        catalog: Option<Arc<dyn D1Catalog>>,
        guard: impl Any + Send + Sync,
    ) -> Self {
        Self {
            db,
            clock,
            catalog,
            _guard: Box::new(guard),
        }
    }
}

/// Opens fresh, empty databases for cases.
pub trait D1Factory: Send + Sync {
    /// A fresh database enforcing `limits`, on a manual clock.
    fn open(&self, limits: D1Limits) -> Pin<Box<dyn Future<Output = D1Subject> + Send + '_>>;
}

impl<F, Fut> D1Factory for F
where
    F: Fn(D1Limits) -> Fut + Send + Sync,
    Fut: Future<Output = D1Subject> + Send + 'static,
{
    fn open(&self, limits: D1Limits) -> Pin<Box<dyn Future<Output = D1Subject> + Send + '_>> {
        Box::pin(self(limits))
    }
}

/// Runs every D1 case against `$factory` (an `Fn(D1Limits) -> impl Future<Output = D1Subject>`).
#[macro_export]
macro_rules! d1_conformance {
    ($factory:expr) => {
        $crate::__expand_cases!(
            $factory,
            d1,
            [
                all_returns_column_names_and_rows,
                first_returns_the_first_row_or_none,
                first_column_returns_the_value_or_none_without_rows,
                first_column_missing_with_rows_is_column_notfound,
                raw_returns_arrays_with_an_optional_column_name_row,
                run_reports_changes_and_last_row_id,
                bind_returns_a_new_statement_and_the_original_stays_reusable,
                numbered_parameters_bind_by_number,
                named_parameters_are_rejected,
                wrong_number_of_bound_values_is_an_error,
                values_round_trip_null_integer_real_text_and_blob,
                booleans_are_stored_as_1_and_0,
                json_parameters_convert_as_the_binding_does,
                results_serialize_in_workerd_wire_shapes,
                batch_runs_statements_in_order_and_returns_one_result_each,
                failing_batch_rolls_back_whole_and_returns_that_statements_error,
                exec_runs_every_line_and_counts_them,
                exec_error_names_the_line_and_keeps_earlier_lines,
                exec_line_may_hold_several_statements,
                empty_sql_is_no_statements_detected,
                syntax_error_is_d1_error_with_sqlite_text,
                unique_violation_reports_the_constraint,
                several_statements_in_one_prepare_run_in_order,
                meta_reports_size_rows_read_rows_written_and_duration,
                select_reports_no_changes,
                more_than_100_bound_parameters_are_rejected,
                statement_over_100000_bytes_is_rejected,
                value_over_2000000_bytes_is_rejected,
                table_with_more_than_100_columns_is_rejected,
                runaway_query_is_interrupted_and_the_database_stays_usable,
                database_size_limit_is_enforced,
                attach_is_refused,
                vacuum_is_refused,
                load_extension_is_refused,
                low_level_pragmas_are_refused,
                documented_pragmas_are_allowed,
                begin_commit_and_savepoint_are_rejected,
                foreign_keys_are_enforced,
                defer_foreign_keys_defers_the_check_to_the_end_of_the_batch,
                bound_values_are_never_interpolated,
                fts5_json_math_and_rtree_are_available,
                export_then_import_round_trips_schema_and_rows,
                import_is_all_or_nothing,
                import_of_a_sqlite_dump_skips_its_transaction_statements,
                concurrent_writers_succeed_or_fail_on_their_own,
                concurrent_reads_and_writes_never_surface_busy,
                readers_never_see_a_half_applied_batch,
                error_codes_and_kinds_follow_d1,
                catalog_creates_lists_and_deletes_databases,
                catalog_rejects_duplicates_unknown_and_invalid_names,
                bookmarks_sort_in_commit_order,
                bookmark_at_names_the_last_commit_at_or_before_a_time_and_never_changes,
                restore_brings_back_the_exact_state_across_schema_changes_blobs_and_large_transactions,
                restore_can_be_undone_and_history_is_kept,
                restore_to_a_timestamp_uses_the_last_commit_at_or_before_it,
                bookmarks_outside_the_window_or_unknown_are_rejected,
                session_bookmark_starts_empty_and_only_grows,
                session_reads_its_own_writes,
                session_from_a_bookmark_sees_at_least_that_state,
                invalid_session_bookmark_is_a_session_error,
            ]
        );
    };
}

type Err = Box<dyn std::error::Error + Send + Sync>;

async fn open(f: &dyn D1Factory) -> D1Subject {
    f.open(D1Limits::cloudflare()).await
}

fn st(sql: &str) -> D1Statement {
    D1Statement::new(sql)
}

fn expect_err<T: std::fmt::Debug>(r: Result<T, D1Error>, what: &str) -> Result<D1Error, Err> {
    match r {
        Ok(v) => Err(format!("{what}: expected an error, got Ok({v:?})").into()),
        Err(e) => Ok(e),
    }
}

async fn users(s: &D1Subject) -> TestResult {
    s.db.exec(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, age INTEGER)",
    )
    .await?;
    let ins = st("INSERT INTO users (name, age) VALUES (?, ?)");
    s.db.batch(&[
        ins.bind([D1Value::from("ada"), D1Value::from(36)]),
        ins.bind([D1Value::from("grace"), D1Value::from(45)]),
    ])
    .await?;
    Ok(())
}

async fn count(s: &D1Subject, table: &str) -> Result<i64, Err> {
    let v =
        s.db.first_column(&st(&format!("SELECT count(*) AS n FROM {table}")), "n")
            .await?;
    v.and_then(|v| v.as_i64()).ok_or_else(|| "no count".into())
}

/// `all()` answers column names in order and one array of values per row.
pub async fn all_returns_column_names_and_rows(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    users(&s).await?;
    let r =
        s.db.all(&st("SELECT id, name, age FROM users ORDER BY id"))
            .await?;
    ensure_eq!(r.columns, vec!["id", "name", "age"]);
    ensure_eq!(
        r.rows,
        vec![
            vec![D1Value::from(1), D1Value::from("ada"), D1Value::from(36)],
            vec![D1Value::from(2), D1Value::from("grace"), D1Value::from(45)],
        ]
    );
    let objects = r.objects();
    ensure_eq!(objects[1]["name"], json!("grace"));
    Ok(())
}

/// `first()` is the first row as an object (no LIMIT added), or `None` without rows.
pub async fn first_returns_the_first_row_or_none(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    users(&s).await?;
    let row =
        s.db.first(&st("SELECT name, age FROM users ORDER BY id DESC"))
            .await?
            .ok_or("a row")?;
    ensure_eq!(row["name"], json!("grace"));
    ensure_eq!(row["age"], json!(45));
    ensure!(
        s.db.first(&st("SELECT * FROM users WHERE id = 99"))
            .await?
            .is_none(),
        "no row expected"
    );
    Ok(())
}

/// `first(column)` is that column's value, or `None` when there are no rows.
pub async fn first_column_returns_the_value_or_none_without_rows(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    users(&s).await?;
    let v =
        s.db.first_column(&st("SELECT name FROM users WHERE id = ?").bind([1]), "name")
            .await?;
    ensure_eq!(v, Some(D1Value::from("ada")));
    let none =
        s.db.first_column(&st("SELECT name FROM users WHERE id = 42"), "nope")
            .await?;
    ensure_eq!(none, None);
    Ok(())
}

/// `first(column)` with rows but without that column throws `D1_COLUMN_NOTFOUND`.
pub async fn first_column_missing_with_rows_is_column_notfound(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    users(&s).await?;
    let e = expect_err(
        s.db.first_column(&st("SELECT name FROM users"), "missing")
            .await,
        "missing column",
    )?;
    ensure_eq!(e.code_name(), "D1_COLUMN_NOTFOUND");
    ensure_eq!(
        e.to_string(),
        "D1_COLUMN_NOTFOUND: Column not found (missing)"
    );
    Ok(())
}

/// `raw()` answers arrays; with `columnNames` the first array holds the names.
pub async fn raw_returns_arrays_with_an_optional_column_name_row(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    users(&s).await?;
    let q = st("SELECT id, name FROM users ORDER BY id");
    let plain = s.db.raw(&q, false).await?;
    ensure_eq!(plain.len(), 2);
    ensure_eq!(plain[0], vec![D1Value::from(1), D1Value::from("ada")]);
    let named = s.db.raw(&q, true).await?;
    ensure_eq!(named.len(), 3);
    ensure_eq!(named[0], vec![D1Value::from("id"), D1Value::from("name")]);
    Ok(())
}

/// `run()` reports rows changed and the last inserted rowid.
pub async fn run_reports_changes_and_last_row_id(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    users(&s).await?;
    let r =
        s.db.run(&st("INSERT INTO users (name, age) VALUES ('linus', 50)"))
            .await?;
    ensure_eq!(r.meta.changes, 1);
    ensure_eq!(r.meta.last_row_id, 3);
    ensure!(r.meta.changed_db, "an insert changes the database");
    ensure!(r.rows.is_empty(), "an insert returns no rows");
    let u = s.db.run(&st("UPDATE users SET age = age + 1")).await?;
    ensure_eq!(u.meta.changes, 3);
    ensure_eq!(u.meta.rows_written, 3);
    Ok(())
}

/// `bind()` returns a new statement; the original can be bound again in the same batch.
pub async fn bind_returns_a_new_statement_and_the_original_stays_reusable(
    f: &dyn D1Factory,
) -> TestResult {
    let s = open(f).await;
    s.db.exec("CREATE TABLE t (v TEXT)").await?;
    let ins = st("INSERT INTO t VALUES (?)");
    let a = ins.bind(["a"]);
    let b = ins.bind(["b"]);
    ensure!(ins.params().is_empty(), "the original keeps no values");
    s.db.batch(&[a, b.clone(), b]).await?;
    ensure_eq!(count(&s, "t").await?, 3);
    Ok(())
}

/// `?NNN` parameters bind by number, in any order in the text.
pub async fn numbered_parameters_bind_by_number(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    let r =
        s.db.all(&st("SELECT ?2 AS b, ?1 AS a, ?2 AS b2").bind(["one", "two"]))
            .await?;
    ensure_eq!(
        r.rows[0],
        vec![
            D1Value::from("two"),
            D1Value::from("one"),
            D1Value::from("two")
        ]
    );
    Ok(())
}

/// `:name`, `@name` and `$name` parameters are rejected, as on D1.
pub async fn named_parameters_are_rejected(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    for sql in ["SELECT :a", "SELECT @a", "SELECT $a"] {
        let e = expect_err(s.db.all(&st(sql).bind([1])).await, sql)?;
        ensure!(
            matches!(e, D1Error::NamedParameter { .. }),
            "{sql}: got {e}"
        );
        ensure_eq!(e.code_name(), "D1_ERROR");
    }
    Ok(())
}

/// Binding fewer or more values than the statement takes is an error.
pub async fn wrong_number_of_bound_values_is_an_error(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    let e = expect_err(s.db.all(&st("SELECT ?, ?").bind([1])).await, "too few")?;
    ensure!(
        matches!(
            e,
            D1Error::WrongParameterCount {
                expected: 2,
                got: 1
            }
        ),
        "got {e}"
    );
    let e = expect_err(s.db.all(&st("SELECT ?").bind([1, 2])).await, "too many")?;
    ensure!(matches!(e, D1Error::WrongParameterCount { .. }), "got {e}");
    Ok(())
}

/// NULL, 64-bit integers, reals, text and blobs are stored and read back exactly.
pub async fn values_round_trip_null_integer_real_text_and_blob(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    s.db.exec("CREATE TABLE v (a, b, c, d, e)").await?;
    let values = vec![
        D1Value::Null,
        D1Value::Integer(i64::MAX),
        D1Value::Real(-1.5e300),
        D1Value::from("héllo \u{1F600} 'quoted'"),
        D1Value::Blob(vec![0, 1, 2, 255]),
    ];
    s.db.run(&st("INSERT INTO v VALUES (?, ?, ?, ?, ?)").bind(values.clone()))
        .await?;
    let r = s.db.all(&st("SELECT a, b, c, d, e FROM v")).await?;
    ensure_eq!(r.rows[0], values);
    let t =
        s.db.all(&st(
            "SELECT typeof(a), typeof(b), typeof(c), typeof(d), typeof(e) FROM v",
        ))
        .await?;
    ensure_eq!(
        t.rows[0],
        vec![
            D1Value::from("null"),
            D1Value::from("integer"),
            D1Value::from("real"),
            D1Value::from("text"),
            D1Value::from("blob")
        ]
    );
    Ok(())
}

/// Booleans become the integers 1 and 0.
pub async fn booleans_are_stored_as_1_and_0(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    let r =
        s.db.all(&st("SELECT ? AS t, ? AS f, typeof(?) AS ty").bind([true, false, true]))
            .await?;
    ensure_eq!(
        r.rows[0],
        vec![D1Value::from(1), D1Value::from(0), D1Value::from("integer")]
    );
    Ok(())
}

/// JSON parameters convert as workerd's binding sends them: byte arrays become blobs,
/// booleans 1/0, objects are a `D1_TYPE_ERROR`.
pub async fn json_parameters_convert_as_the_binding_does(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    let stmt = st("SELECT ?, ?, ?, ?, ?").bind_json(&[
        json!(null),
        json!(7),
        json!(2.5),
        json!(true),
        json!([1, 2, 3]),
    ])?;
    let r = s.db.all(&stmt).await?;
    ensure_eq!(
        r.rows[0],
        vec![
            D1Value::Null,
            D1Value::from(7),
            D1Value::from(2.5),
            D1Value::from(1),
            D1Value::Blob(vec![1, 2, 3])
        ]
    );
    let e = expect_err(st("SELECT ?").bind_json(&[json!({"a": 1})]), "object")?;
    ensure_eq!(e.code_name(), "D1_TYPE_ERROR");
    Ok(())
}

/// Results serialize as workerd's protocol expects: `{success, meta, results:{columns,
/// rows}}`, blobs as byte arrays, and no `results` for `NONE`.
pub async fn results_serialize_in_workerd_wire_shapes(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    let r =
        s.db.all(&st("SELECT 1 AS id, ? AS pic").bind([D1Value::Blob(vec![1, 2, 3])]))
            .await?;
    let j = r.to_json(D1ResultsFormat::RowsAndColumns);
    ensure_eq!(j["success"], json!(true));
    ensure_eq!(j["results"]["columns"], json!(["id", "pic"]));
    ensure_eq!(j["results"]["rows"], json!([[1, [1, 2, 3]]]));
    for key in [
        "served_by",
        "duration",
        "changes",
        "last_row_id",
        "changed_db",
        "size_after",
        "rows_read",
        "rows_written",
    ] {
        ensure!(j["meta"].get(key).is_some(), "meta.{key} missing");
    }
    ensure!(
        j["meta"]["timings"]["sql_duration_ms"].is_number(),
        "timings"
    );
    let none = r.to_json(D1ResultsFormat::None);
    ensure!(none.get("results").is_none(), "NONE has no results");
    let objs = r.to_json(D1ResultsFormat::ArrayOfObjects);
    ensure_eq!(objs["results"], json!([{"id": 1, "pic": [1, 2, 3]}]));
    let e = expect_err(s.db.all(&st("SELECT * FROM nosuchtable")).await, "bad")?;
    ensure_eq!(
        e.to_json(),
        json!({"success": false, "error": "no such table: nosuchtable: SQLITE_ERROR"})
    );
    Ok(())
}

/// A batch runs its statements in order and answers one result per statement.
pub async fn batch_runs_statements_in_order_and_returns_one_result_each(
    f: &dyn D1Factory,
) -> TestResult {
    let s = open(f).await;
    let r =
        s.db.batch(&[
            st("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"),
            st("INSERT INTO t (v) VALUES ('a'), ('b')"),
            st("UPDATE t SET v = v || '!' WHERE id = 2"),
            st("SELECT v FROM t ORDER BY id"),
        ])
        .await?;
    ensure_eq!(r.len(), 4);
    ensure_eq!(r[1].meta.changes, 2);
    ensure_eq!(
        r[3].rows,
        vec![vec![D1Value::from("a")], vec![D1Value::from("b!")]]
    );
    Ok(())
}

/// A failing statement rolls back the whole batch, and its error is what the batch returns.
pub async fn failing_batch_rolls_back_whole_and_returns_that_statements_error(
    f: &dyn D1Factory,
) -> TestResult {
    let s = open(f).await;
    users(&s).await?;
    let e = expect_err(
        s.db.batch(&[
            st("INSERT INTO users (name) VALUES ('new1')"),
            st("DELETE FROM users WHERE name = 'ada'"),
            st("INSERT INTO users (name) VALUES ('grace')"),
            st("INSERT INTO users (name) VALUES ('new2')"),
        ])
        .await,
        "duplicate in batch",
    )?;
    ensure!(
        e.to_string()
            .contains("UNIQUE constraint failed: users.name"),
        "got {e}"
    );
    ensure_eq!(count(&s, "users").await?, 2);
    let ada =
        s.db.first(&st("SELECT * FROM users WHERE name = 'ada'"))
            .await?;
    ensure!(ada.is_some(), "the delete was rolled back");
    Ok(())
}

/// `exec` runs each line and counts the lines it ran.
pub async fn exec_runs_every_line_and_counts_them(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    let r =
        s.db.exec("CREATE TABLE t (v)\nINSERT INTO t VALUES (1)\n\nINSERT INTO t VALUES (2)\n")
            .await?;
    ensure_eq!(r.count, 3);
    ensure!(r.duration.is_sign_positive(), "duration");
    ensure_eq!(count(&s, "t").await?, 2);
    Ok(())
}

/// A failing line throws `D1_EXEC_ERROR: Error in line N: <line>: <error>`; the lines before
/// it stay applied, the lines after it do not run.
pub async fn exec_error_names_the_line_and_keeps_earlier_lines(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    let e = expect_err(
        s.db.exec("CREATE TABLE t (v)\nINSERT INTO t VALUES (1)\nINSERTZ nonsense\nINSERT INTO t VALUES (3)")
            .await,
        "bad line",
    )?;
    ensure_eq!(e.code_name(), "D1_EXEC_ERROR");
    let text = e.to_string();
    ensure!(
        text.starts_with("D1_EXEC_ERROR: Error in line 3: INSERTZ nonsense: "),
        "got {text}"
    );
    ensure!(text.contains("syntax error"), "got {text}");
    ensure_eq!(count(&s, "t").await?, 1);
    Ok(())
}

/// One exec line may hold several statements.
pub async fn exec_line_may_hold_several_statements(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    s.db.exec("CREATE TABLE t (v); INSERT INTO t VALUES (1); INSERT INTO t VALUES (2);")
        .await?;
    ensure_eq!(count(&s, "t").await?, 2);
    Ok(())
}

/// Empty or comment-only SQL is `D1_ERROR: No SQL statements detected.`
pub async fn empty_sql_is_no_statements_detected(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    for sql in ["", "   ", "-- just a comment", "/* x */ ;"] {
        let e = expect_err(s.db.all(&st(sql)).await, sql)?;
        ensure_eq!(e.to_string(), "D1_ERROR: No SQL statements detected.");
    }
    let e = expect_err(s.db.exec("  \n ").await, "exec")?;
    ensure_eq!(e.to_string(), "D1_ERROR: No SQL statements detected.");
    Ok(())
}

/// A syntax error is a `D1_ERROR` carrying SQLite's message.
pub async fn syntax_error_is_d1_error_with_sqlite_text(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    let e = expect_err(s.db.all(&st("INSERTZ INTO t VALUES (1)")).await, "syntax")?;
    ensure_eq!(e.code_name(), "D1_ERROR");
    ensure!(
        e.to_string().contains("near \"INSERTZ\": syntax error"),
        "got {e}"
    );
    let e = expect_err(s.db.all(&st("SELECT * FROM nope")).await, "no table")?;
    ensure_eq!(e.to_string(), "D1_ERROR: no such table: nope: SQLITE_ERROR");
    Ok(())
}

/// A constraint violation names the constraint and `SQLITE_CONSTRAINT`.
pub async fn unique_violation_reports_the_constraint(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    users(&s).await?;
    let e = expect_err(
        s.db.run(&st("INSERT INTO users (name) VALUES ('ada')"))
            .await,
        "dup",
    )?;
    ensure_eq!(
        e.to_string(),
        "D1_ERROR: UNIQUE constraint failed: users.name: SQLITE_CONSTRAINT"
    );
    Ok(())
}

/// A prepared text holding several statements runs them all; the result is the last one's.
pub async fn several_statements_in_one_prepare_run_in_order(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    let r =
        s.db.all(&st(
            "CREATE TABLE t (v); INSERT INTO t VALUES (1), (2); SELECT sum(v) AS s FROM t;",
        ))
        .await?;
    ensure_eq!(r.columns, vec!["s"]);
    ensure_eq!(r.rows, vec![vec![D1Value::from(3)]]);
    Ok(())
}

/// `meta` reports the size after the query, rows read and written, and a duration.
pub async fn meta_reports_size_rows_read_rows_written_and_duration(
    f: &dyn D1Factory,
) -> TestResult {
    let s = open(f).await;
    s.db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        .await?;
    let ins = s
        .db
        .run(&st(
            "INSERT INTO t (v) SELECT hex(randomblob(100)) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200) SELECT x FROM c)",
        ))
        .await?;
    ensure_eq!(ins.meta.rows_written, 200);
    ensure!(
        ins.meta.size_after >= 4096 * 2,
        "size {}",
        ins.meta.size_after
    );
    ensure_eq!(ins.meta.size_after % 4096, 0);
    ensure!(ins.meta.duration.is_sign_positive(), "duration");
    ensure_eq!(ins.meta.total_attempts, 1);
    let scan = s.db.all(&st("SELECT id FROM t WHERE v = 'none'")).await?;
    ensure!(scan.rows.is_empty(), "no match");
    ensure!(
        scan.meta.rows_read >= 200,
        "a full scan reads every row, got {}",
        scan.meta.rows_read
    );
    let point = s.db.all(&st("SELECT v FROM t WHERE id = 5")).await?;
    ensure_eq!(point.meta.rows_read, 1);
    ensure_eq!(point.meta.rows_written, 0);
    ensure!(!point.meta.changed_db, "a read changes nothing");
    ensure_eq!(point.meta.size_after, ins.meta.size_after);
    Ok(())
}

/// A SELECT after a write reports no changes.
pub async fn select_reports_no_changes(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    users(&s).await?;
    let r =
        s.db.batch(&[st("DELETE FROM users"), st("SELECT 1")])
            .await?;
    ensure_eq!(r[0].meta.changes, 2);
    ensure_eq!(r[1].meta.changes, 0);
    ensure!(!r[1].meta.changed_db, "select does not change the db");
    Ok(())
}

/// More than 100 bound parameters are rejected; 100 are accepted.
pub async fn more_than_100_bound_parameters_are_rejected(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    let sql100 = format!("SELECT {}", vec!["?"; 100].join(","));
    s.db.all(&st(&sql100).bind(0..100)).await?;
    let sql101 = format!("SELECT {}", vec!["?"; 101].join(","));
    let e = expect_err(s.db.all(&st(&sql101).bind(0..101)).await, "101")?;
    ensure!(
        matches!(
            e,
            D1Error::TooManyParameters {
                count: 101,
                limit: 100
            }
        ),
        "got {e}"
    );
    let e = expect_err(s.db.all(&st("SELECT ?101")).await, "?101")?;
    ensure_eq!(e.code_name(), "D1_ERROR");
    Ok(())
}

/// SQL text over 100,000 bytes is rejected with the length and the limit.
pub async fn statement_over_100000_bytes_is_rejected(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    let pad = |n: usize| format!("SELECT 1 {}", " ".repeat(n - 9));
    s.db.all(&st(&pad(100_000))).await?;
    let e = expect_err(s.db.all(&st(&pad(100_001))).await, "long")?;
    ensure!(
        e.to_string().contains("100001 bytes; the limit is 100000"),
        "got {e}"
    );
    ensure_eq!(e.kind(), ErrorKind::TooLarge);
    Ok(())
}

/// A string or blob over 2,000,000 bytes is rejected, bound or built in SQL; 2,000,000 is
/// accepted.
pub async fn value_over_2000000_bytes_is_rejected(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    s.db.exec("CREATE TABLE b (v BLOB)").await?;
    s.db.run(&st("INSERT INTO b VALUES (?)").bind([D1Value::Blob(vec![7; 1_000_000])]))
        .await?;
    let e = expect_err(
        s.db.run(&st("INSERT INTO b VALUES (?)").bind([D1Value::Blob(vec![7; 2_000_001])]))
            .await,
        "big blob",
    )?;
    ensure!(
        e.to_string()
            .contains("2000001 bytes; the limit is 2000000"),
        "got {e}"
    );
    let e = expect_err(
        s.db.run(&st("INSERT INTO b VALUES (zeroblob(2000001))"))
            .await,
        "zeroblob",
    )?;
    ensure!(e.to_string().contains("too big"), "got {e}");
    ensure_eq!(count(&s, "b").await?, 1);
    Ok(())
}

/// A table of more than 100 columns cannot be created.
pub async fn table_with_more_than_100_columns_is_rejected(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    let cols = |n: usize| {
        (0..n)
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    s.db.run(&st(&format!("CREATE TABLE ok ({})", cols(100))))
        .await?;
    let e = expect_err(
        s.db.run(&st(&format!("CREATE TABLE bad ({})", cols(101))))
            .await,
        "101 columns",
    )?;
    ensure!(e.to_string().contains("too many columns"), "got {e}");
    Ok(())
}

/// A query running past the time limit is interrupted with a clear error, and the database
/// keeps working. (The limit is lowered to 300 ms for the test.)
pub async fn runaway_query_is_interrupted_and_the_database_stays_usable(
    f: &dyn D1Factory,
) -> TestResult {
    let mut limits = D1Limits::cloudflare();
    limits.max_query_ms = 300;
    let s = f.open(limits).await;
    s.db.exec("CREATE TABLE t (v)").await?;
    let forever =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
    let started = std::time::Instant::now();
    let e = expect_err(s.db.all(&st(forever)).await, "runaway read")?;
    ensure!(matches!(e, D1Error::Timeout { .. }), "got {e}");
    ensure!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "interrupted promptly"
    );
    let e = expect_err(
        s.db.run(&st(
            "INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c",
        ))
        .await,
        "runaway write",
    )?;
    ensure_eq!(e.kind(), ErrorKind::Timeout);
    ensure_eq!(count(&s, "t").await?, 0);
    s.db.run(&st("INSERT INTO t VALUES (1)")).await?;
    ensure_eq!(count(&s, "t").await?, 1);
    Ok(())
}

/// Writes past the database size limit fail with D1's "Exceeded maximum DB size" and leave
/// the database usable. (The limit is lowered to 1 MB for the test.)
pub async fn database_size_limit_is_enforced(f: &dyn D1Factory) -> TestResult {
    let mut limits = D1Limits::cloudflare();
    limits.max_database_bytes = 1_000_000;
    let s = f.open(limits).await;
    s.db.exec("CREATE TABLE b (v BLOB)").await?;
    let ins = st("INSERT INTO b VALUES (zeroblob(200000))");
    let mut failed = None;
    for _ in 0..10 {
        if let Err(e) = s.db.run(&ins).await {
            failed = Some(e);
            break;
        }
    }
    let e = failed.ok_or("the size limit was never hit")?;
    ensure!(matches!(e, D1Error::DatabaseFull { .. }), "got {e}");
    ensure!(
        e.to_string().contains("Exceeded maximum DB size"),
        "got {e}"
    );
    let n = count(&s, "b").await?;
    ensure!((1..10).contains(&n), "rows {n}");
    s.db.run(&st("DELETE FROM b")).await?;
    Ok(())
}

/// `ATTACH` is refused: a statement cannot reach another file.
pub async fn attach_is_refused(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    let e = expect_err(
        s.db.run(&st("ATTACH DATABASE '/tmp/other.db' AS o")).await,
        "attach",
    )?;
    ensure!(e.to_string().contains("not authorized"), "got {e}");
    let e = expect_err(
        s.db.exec("SELECT 1; ATTACH 'x.db' AS x").await,
        "attach in exec",
    )?;
    ensure!(e.to_string().contains("not authorized"), "got {e}");
    Ok(())
}

/// `VACUUM` (and so `VACUUM INTO`) is refused.
pub async fn vacuum_is_refused(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    for sql in [
        "VACUUM",
        "VACUUM INTO '/tmp/copy.db'",
        "  vacuum main into 'x'",
    ] {
        let e = expect_err(s.db.run(&st(sql)).await, sql)?;
        ensure!(e.to_string().contains("not authorized"), "{sql}: got {e}");
    }
    Ok(())
}

/// `load_extension` is refused.
pub async fn load_extension_is_refused(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    let e = expect_err(
        s.db.all(&st("SELECT load_extension('/tmp/evil.so')")).await,
        "load_extension",
    )?;
    ensure_eq!(e.code_name(), "D1_ERROR");
    ensure!(
        e.to_string().contains("not authorized") || e.to_string().contains("no such function"),
        "got {e}"
    );
    Ok(())
}

/// Pragmas outside D1's list (`writable_schema`, `journal_mode`, `synchronous`) are refused
/// with `SQLITE_AUTH`.
pub async fn low_level_pragmas_are_refused(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    for sql in [
        "PRAGMA writable_schema = ON",
        "PRAGMA journal_mode = DELETE",
        "PRAGMA synchronous = OFF",
        "PRAGMA page_size = 512",
    ] {
        let e = expect_err(s.db.run(&st(sql)).await, sql)?;
        ensure!(
            e.to_string().contains("not authorized") && e.to_string().contains("SQLITE_AUTH"),
            "{sql}: got {e}"
        );
    }
    Ok(())
}

/// D1's documented pragmas work.
pub async fn documented_pragmas_are_allowed(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    users(&s).await?;
    let info = s.db.all(&st("PRAGMA table_info(users)")).await?;
    ensure_eq!(info.rows.len(), 3);
    let list = s.db.all(&st("PRAGMA table_list")).await?;
    ensure!(
        list.objects().iter().any(|o| o["name"] == json!("users")),
        "users listed"
    );
    s.db.all(&st("PRAGMA foreign_key_check")).await?;
    s.db.all(&st("PRAGMA quick_check")).await?;
    Ok(())
}

/// `BEGIN`, `COMMIT`, `ROLLBACK` and `SAVEPOINT` are rejected: D1 wraps every query in a
/// transaction itself.
pub async fn begin_commit_and_savepoint_are_rejected(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    for sql in [
        "BEGIN TRANSACTION",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT a",
        "END",
    ] {
        let e = expect_err(s.db.run(&st(sql)).await, sql)?;
        ensure!(
            matches!(e, D1Error::TransactionStatement { .. }),
            "{sql}: got {e}"
        );
    }
    let e = expect_err(
        s.db.exec("CREATE TABLE t (v)\nBEGIN; INSERT INTO t VALUES (1); COMMIT;")
            .await,
        "exec begin",
    )?;
    ensure_eq!(e.code_name(), "D1_EXEC_ERROR");
    ensure_eq!(count(&s, "t").await?, 0);
    Ok(())
}

/// Foreign keys are enforced by default.
pub async fn foreign_keys_are_enforced(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    s.db.exec("CREATE TABLE p (id INTEGER PRIMARY KEY)\nCREATE TABLE c (pid INTEGER REFERENCES p(id) ON DELETE CASCADE)\nINSERT INTO p VALUES (1)\nINSERT INTO c VALUES (1)")
        .await?;
    let e = expect_err(s.db.run(&st("INSERT INTO c VALUES (2)")).await, "orphan")?;
    ensure!(
        e.to_string().contains("FOREIGN KEY constraint failed"),
        "got {e}"
    );
    s.db.run(&st("PRAGMA foreign_keys = OFF")).await?;
    let e = expect_err(
        s.db.run(&st("INSERT INTO c VALUES (3)")).await,
        "still enforced",
    )?;
    ensure!(e.to_string().contains("FOREIGN KEY"), "got {e}");
    s.db.run(&st("DELETE FROM p WHERE id = 1")).await?;
    ensure_eq!(count(&s, "c").await?, 0);
    Ok(())
}

/// `PRAGMA defer_foreign_keys = on` defers the check to the end of the batch: a violation
/// fixed before the end passes, one left at the end fails the batch.
pub async fn defer_foreign_keys_defers_the_check_to_the_end_of_the_batch(
    f: &dyn D1Factory,
) -> TestResult {
    let s = open(f).await;
    s.db.exec(
        "CREATE TABLE p (id INTEGER PRIMARY KEY)\nCREATE TABLE c (pid INTEGER REFERENCES p(id))",
    )
    .await?;
    s.db.batch(&[
        st("PRAGMA defer_foreign_keys = on"),
        st("INSERT INTO c VALUES (1)"),
        st("INSERT INTO p VALUES (1)"),
    ])
    .await?;
    ensure_eq!(count(&s, "c").await?, 1);
    let e = expect_err(
        s.db.batch(&[
            st("PRAGMA defer_foreign_keys = on"),
            st("INSERT INTO c VALUES (2)"),
        ])
        .await,
        "unresolved",
    )?;
    ensure!(
        e.to_string().contains("FOREIGN KEY constraint failed"),
        "got {e}"
    );
    ensure_eq!(count(&s, "c").await?, 1);
    // The setting lasted one transaction only.
    let e = expect_err(
        s.db.run(&st("INSERT INTO c VALUES (3)")).await,
        "not deferred any more",
    )?;
    ensure!(e.to_string().contains("FOREIGN KEY"), "got {e}");
    Ok(())
}

/// Bound text is data, never SQL.
pub async fn bound_values_are_never_interpolated(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    users(&s).await?;
    let evil = "x'); DROP TABLE users; --";
    s.db.run(&st("INSERT INTO users (name) VALUES (?)").bind([evil]))
        .await?;
    let v =
        s.db.first_column(
            &st("SELECT name FROM users WHERE name = ?").bind([evil]),
            "name",
        )
        .await?;
    ensure_eq!(v, Some(D1Value::from(evil)));
    ensure_eq!(count(&s, "users").await?, 3);
    Ok(())
}

/// FTS5, JSON functions, math functions and R*Tree are available, as on D1.
pub async fn fts5_json_math_and_rtree_are_available(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    s.db.exec("CREATE VIRTUAL TABLE docs USING fts5(title, body)\nINSERT INTO docs VALUES ('hello', 'the quick brown fox'), ('bye', 'lazy dog')")
        .await?;
    let hit =
        s.db.first_column(
            &st("SELECT title FROM docs WHERE docs MATCH 'quick'"),
            "title",
        )
        .await?;
    ensure_eq!(hit, Some(D1Value::from("hello")));
    let j =
        s.db.first_column(
            &st("SELECT json_extract(?, '$.a[1]') AS v").bind([r#"{"a":[1,2,3]}"#]),
            "v",
        )
        .await?;
    ensure_eq!(j, Some(D1Value::from(2)));
    let m = s
        .db
        .all(&st("SELECT sqrt(16), pow(2, 10), floor(2.5), ceil(2.1), round(pi(), 4), ln(1), log10(100), sqrt(-1)"))
        .await?;
    ensure_eq!(
        m.rows[0],
        vec![
            D1Value::from(4.0),
            D1Value::from(1024.0),
            D1Value::from(2.0),
            D1Value::from(3.0),
            D1Value::from((std::f64::consts::PI * 10_000.0).round() / 10_000.0),
            D1Value::from(0.0),
            D1Value::from(2.0),
            D1Value::Null
        ]
    );
    s.db.exec("CREATE VIRTUAL TABLE boxes USING rtree(id, minx, maxx, miny, maxy)\nINSERT INTO boxes VALUES (1, 0, 10, 0, 10), (2, 20, 30, 20, 30)")
        .await?;
    let inside =
        s.db.all(&st(
            "SELECT id FROM boxes WHERE minx <= 5 AND maxx >= 5 AND miny <= 5 AND maxy >= 5",
        ))
        .await?;
    ensure_eq!(inside.rows, vec![vec![D1Value::from(1)]]);
    let check =
        s.db.first_column(&st("SELECT rtreecheck('boxes') AS ok"), "ok")
            .await?;
    ensure_eq!(check, Some(D1Value::from("ok")));
    Ok(())
}

async fn export_text(db: &dyn D1Database) -> Result<String, Err> {
    let mut stream = db.export(D1ExportOptions::default()).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(String::from_utf8(out)?)
}

fn sql_stream(text: String) -> bindery_core::ByteStream {
    bindery_core::stream::chunked(Bytes::from(text), 7)
}

/// An export imported into an empty database reproduces schema, rows (blobs, NULLs,
/// quotes), indexes, triggers, FTS tables and AUTOINCREMENT counters.
pub async fn export_then_import_round_trips_schema_and_rows(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    s.db.exec(concat!(
        "CREATE TABLE p (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, pic BLOB, score REAL)\n",
        "CREATE TABLE c (pid INTEGER REFERENCES p(id), note TEXT)\n",
        "CREATE INDEX c_pid ON c(pid)\n",
        "CREATE TRIGGER p_del AFTER DELETE ON p BEGIN DELETE FROM c WHERE pid = old.id; END;\n",
        "CREATE VIRTUAL TABLE f USING fts5(body)\n",
        "INSERT INTO p (name, pic, score) VALUES ('it''s', X'00FF10', 0.1), (NULL, NULL, -2.5e-10)\n",
        "INSERT INTO c VALUES (1, 'child; of the first')\n",
        "INSERT INTO f VALUES ('searchable words')\n",
        "DELETE FROM p WHERE id = 2\n",
    ))
    .await?;
    let text = export_text(&*s.db).await?;
    ensure!(
        text.starts_with("PRAGMA defer_foreign_keys=TRUE;"),
        "export header: {}",
        &text[..40.min(text.len())]
    );
    let t = open(f).await;
    let r = t.db.import(sql_stream(text.clone())).await?;
    ensure!(r.statements >= 6, "statements {}", r.statements);
    ensure_eq!(export_text(&*t.db).await?, text);
    let q = st("SELECT id, name, pic, score FROM p ORDER BY id");
    ensure_eq!(t.db.all(&q).await?.rows, s.db.all(&q).await?.rows);
    let hit =
        t.db.first_column(&st("SELECT body FROM f WHERE f MATCH 'words'"), "body")
            .await?;
    ensure_eq!(hit, Some(D1Value::from("searchable words")));
    let next =
        t.db.run(&st("INSERT INTO p (name) VALUES ('next')"))
            .await?;
    ensure_eq!(next.meta.last_row_id, 3);
    Ok(())
}

/// An import with a failing statement leaves the database as it was.
pub async fn import_is_all_or_nothing(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    s.db.exec("CREATE TABLE t (v UNIQUE)").await?;
    let e = expect_err(
        s.db.import(sql_stream(
            "INSERT INTO t VALUES (1);\nINSERT INTO t VALUES (2);\nINSERT INTO t VALUES (1);\n"
                .into(),
        ))
        .await,
        "duplicate",
    )?;
    ensure!(e.to_string().contains("statement 3"), "got {e}");
    ensure_eq!(count(&s, "t").await?, 0);
    Ok(())
}

/// A `sqlite3 .dump` file imports: its `BEGIN TRANSACTION`/`COMMIT` are absorbed by the
/// import's own transaction.
pub async fn import_of_a_sqlite_dump_skips_its_transaction_statements(
    f: &dyn D1Factory,
) -> TestResult {
    let s = open(f).await;
    let dump = "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\nCREATE TABLE t(a, b);\nINSERT INTO t VALUES(1,'x;y');\nINSERT INTO t VALUES(2,NULL);\nCOMMIT;\n";
    s.db.import(sql_stream(dump.into())).await?;
    ensure_eq!(count(&s, "t").await?, 2);
    Ok(())
}

/// Concurrent single-statement writers: each statement succeeds or fails on its own, even
/// when they share a commit.
pub async fn concurrent_writers_succeed_or_fail_on_their_own(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    s.db.exec("CREATE TABLE t (k INTEGER UNIQUE)").await?;
    let mut tasks = Vec::new();
    for i in 0..64i64 {
        let db = Arc::clone(&s.db);
        tasks.push(tokio::spawn(async move {
            // Every odd writer collides with the even one before it.
            let k = i - (i % 2);
            db.run(&st("INSERT INTO t VALUES (?)").bind([k])).await
        }));
    }
    let mut ok = 0;
    let mut failed = 0;
    for t in tasks {
        match t.await? {
            Ok(_) => ok += 1,
            Err(e) => {
                ensure!(e.to_string().contains("UNIQUE"), "unexpected error {e}");
                failed += 1;
            }
        }
    }
    ensure_eq!((ok, failed), (32, 32));
    ensure_eq!(count(&s, "t").await?, 32);
    Ok(())
}

/// Many concurrent readers and writers: writes queue, reads proceed, and nothing surfaces
/// `SQLITE_BUSY` or `SQLITE_LOCKED`.
pub async fn concurrent_reads_and_writes_never_surface_busy(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    s.db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v)")
        .await?;
    let mut tasks = Vec::new();
    for w in 0..8i64 {
        let db = Arc::clone(&s.db);
        tasks.push(tokio::spawn(async move {
            for i in 0..25i64 {
                db.run(&st("INSERT INTO t (v) VALUES (?)").bind([w * 100 + i]))
                    .await?;
                db.all(&st("SELECT count(*), max(v) FROM t")).await?;
            }
            Ok::<_, D1Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    ensure_eq!(count(&s, "t").await?, 200);
    Ok(())
}

/// A reader sees a batch entirely or not at all.
pub async fn readers_never_see_a_half_applied_batch(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    s.db.exec("CREATE TABLE a (v)\nCREATE TABLE b (v)").await?;
    let writer = {
        let db = Arc::clone(&s.db);
        tokio::spawn(async move {
            for i in 0..50i64 {
                db.batch(&[
                    st("INSERT INTO a VALUES (?)").bind([i]),
                    st("INSERT INTO b VALUES (?)").bind([i]),
                ])
                .await?;
            }
            Ok::<_, D1Error>(())
        })
    };
    let q = st("SELECT (SELECT count(*) FROM a) AS na, (SELECT count(*) FROM b) AS nb");
    loop {
        let r = s.db.all(&q).await?;
        ensure_eq!(r.rows[0][0], r.rows[0][1]);
        if r.rows[0][0] == D1Value::from(50) {
            break;
        }
        if writer.is_finished() {
            let r = s.db.all(&q).await?;
            ensure_eq!(r.rows[0], vec![D1Value::from(50), D1Value::from(50)]);
            break;
        }
        tokio::task::yield_now().await;
    }
    writer.await??;
    Ok(())
}

/// Errors carry D1's codes and map to error kinds (and so HTTP statuses) in one table.
pub async fn error_codes_and_kinds_follow_d1(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    let e = expect_err(s.db.all(&st("SELECT * FROM missing")).await, "sql")?;
    ensure_eq!(e.code().map(|c| c.to_string()), Some("D1_ERROR".to_owned()));
    ensure_eq!(e.kind(), ErrorKind::InvalidInput);
    ensure_eq!(e.message(), "no such table: missing: SQLITE_ERROR");
    let session = D1Error::Session { detail: "x".into() };
    ensure_eq!(session.code_name(), "D1_SESSION_ERROR");
    let opts = D1QueryOptions::default();
    let r = s.db.query_batch(&[st("SELECT 1")], &opts).await?;
    ensure_eq!(r.results.len(), 1);
    Ok(())
}

/// A catalog creates databases by name, lists them sorted, and deletes them.
pub async fn catalog_creates_lists_and_deletes_databases(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    let Some(cat) = s.catalog.clone() else {
        return Ok(());
    };
    let b = cat.create("beta").await?;
    let a = cat.create("alpha").await?;
    a.exec("CREATE TABLE t (v)\nINSERT INTO t VALUES ('in alpha')")
        .await?;
    b.exec("CREATE TABLE t (v)").await?;
    let names = cat.list().await?;
    ensure!(
        names.contains(&"alpha".to_owned()) && names.contains(&"beta".to_owned()),
        "{names:?}"
    );
    ensure!(names.windows(2).all(|w| w[0] < w[1]), "sorted: {names:?}");
    let again = cat.database("alpha").await?;
    let v = again.first_column(&st("SELECT v FROM t"), "v").await?;
    ensure_eq!(v, Some(D1Value::from("in alpha")));
    cat.delete("alpha").await?;
    ensure!(!cat.list().await?.contains(&"alpha".to_owned()), "deleted");
    let e = expect_err(a.all(&st("SELECT 1")).await, "deleted handle")?;
    ensure_eq!(e.kind(), ErrorKind::NotFound);
    Ok(())
}

/// Creating an existing name, opening an unknown one, and invalid names are errors.
pub async fn catalog_rejects_duplicates_unknown_and_invalid_names(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    let Some(cat) = s.catalog.clone() else {
        return Ok(());
    };
    cat.create("dup").await?;
    let e = expect_err(cat.create("dup").await.map(|_| ()), "duplicate")?;
    ensure_eq!(e.kind(), ErrorKind::AlreadyExists);
    let e = expect_err(cat.database("ghost").await.map(|_| ()), "unknown")?;
    ensure_eq!(e.kind(), ErrorKind::NotFound);
    for bad in ["", "../etc", "a/b", "name with space"] {
        let e = expect_err(cat.create(bad).await.map(|_| ()), bad)?;
        ensure_eq!(e.kind(), ErrorKind::InvalidInput);
    }
    let e = expect_err(cat.delete("ghost").await, "delete unknown")?;
    ensure_eq!(e.kind(), ErrorKind::NotFound);
    Ok(())
}

/// Whether the backend has Time Travel (cases about it pass vacuously when it has not).
async fn has_time_travel(s: &D1Subject) -> Result<bool, Err> {
    match s.db.bookmark().await {
        Ok(_) => Ok(true),
        Err(D1Error::Unsupported { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Every commit gets a bookmark that sorts after the previous one; reads do not commit.
pub async fn bookmarks_sort_in_commit_order(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    if !has_time_travel(&s).await? {
        return Ok(());
    }
    let b0 = s.db.bookmark().await?;
    s.db.exec("CREATE TABLE t (v)").await?;
    let b1 = s.db.bookmark().await?;
    s.db.run(&st("INSERT INTO t VALUES (1)")).await?;
    let b2 = s.db.bookmark().await?;
    ensure!(b0 < b1 && b1 < b2, "{b0} < {b1} < {b2}");
    s.db.all(&st("SELECT * FROM t")).await?;
    ensure_eq!(s.db.bookmark().await?, b2);
    Ok(())
}

/// The bookmark of a timestamp is the last commit at or before it, and asking again (even
/// after more commits at the same clock reading) gives the same bookmark.
pub async fn bookmark_at_names_the_last_commit_at_or_before_a_time_and_never_changes(
    f: &dyn D1Factory,
) -> TestResult {
    let s = open(f).await;
    if !has_time_travel(&s).await? {
        return Ok(());
    }
    s.db.exec("CREATE TABLE t (v)").await?;
    let t0 = s.clock.now_ms();
    let after_first = s.db.bookmark().await?;
    s.clock.advance_secs(10);
    s.db.run(&st("INSERT INTO t VALUES (1)")).await?;
    let after_second = s.db.bookmark().await?;
    ensure_eq!(s.db.bookmark_at(t0 + 5_000).await?, after_first.clone());
    ensure_eq!(s.db.bookmark_at(t0 + 5_000).await?, after_first);
    let now = s.clock.now_ms();
    ensure_eq!(s.db.bookmark_at(now).await?, after_second.clone());
    s.db.run(&st("INSERT INTO t VALUES (2)")).await?;
    ensure_eq!(s.db.bookmark_at(now).await?, after_second);
    Ok(())
}

async fn snapshot_of(db: &dyn D1Database) -> Result<String, Err> {
    export_text(db).await
}

/// Restoring to a bookmark brings back exactly that state, across CREATE, ALTER and DROP,
/// blobs and a transaction of thousands of rows; it returns the bookmark before the restore.
pub async fn restore_brings_back_the_exact_state_across_schema_changes_blobs_and_large_transactions(
    f: &dyn D1Factory,
) -> TestResult {
    let s = open(f).await;
    if !has_time_travel(&s).await? {
        return Ok(());
    }
    s.db.exec("CREATE TABLE keep (id INTEGER PRIMARY KEY, pic BLOB)\nCREATE TABLE gone (v TEXT)\nINSERT INTO gone VALUES ('bye')")
        .await?;
    s.db.run(&st("INSERT INTO keep (pic) VALUES (?)").bind([D1Value::Blob(vec![9; 300_000])]))
        .await?;
    s.clock.advance_secs(60);
    let target = s.db.bookmark().await?;
    let expected = snapshot_of(&*s.db).await?;
    s.clock.advance_secs(60);
    s.db.exec("ALTER TABLE keep ADD COLUMN note TEXT\nDROP TABLE gone\nCREATE INDEX keep_note ON keep(note)")
        .await?;
    s.db.run(&st(
        "INSERT INTO keep (pic, note) SELECT randomblob(1000), 'bulk' FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000) SELECT x FROM c)",
    ))
    .await?;
    let before = s.db.bookmark().await?;
    let r = s.db.restore(D1RestoreTarget::Bookmark(target)).await?;
    ensure_eq!(r.previous_bookmark, before);
    ensure!(r.bookmark > before, "the restore is a new commit");
    ensure_eq!(snapshot_of(&*s.db).await?, expected);
    let check =
        s.db.first_column(&st("PRAGMA integrity_check"), "integrity_check")
            .await?;
    ensure_eq!(check, Some(D1Value::from("ok")));
    s.db.run(&st("INSERT INTO gone VALUES ('back')")).await?;
    ensure_eq!(count(&s, "gone").await?, 2);
    Ok(())
}

/// A restore can be undone with the bookmark it returned, and redone: history is kept.
pub async fn restore_can_be_undone_and_history_is_kept(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    if !has_time_travel(&s).await? {
        return Ok(());
    }
    s.db.exec("CREATE TABLE t (v)\nINSERT INTO t VALUES (1)")
        .await?;
    let one = s.db.bookmark().await?;
    s.db.run(&st("INSERT INTO t VALUES (2)")).await?;
    let two = snapshot_of(&*s.db).await?;
    let r = s.db.restore(D1RestoreTarget::Bookmark(one.clone())).await?;
    ensure_eq!(count(&s, "t").await?, 1);
    let undo =
        s.db.restore(D1RestoreTarget::Bookmark(r.previous_bookmark.clone()))
            .await?;
    ensure_eq!(snapshot_of(&*s.db).await?, two);
    ensure_eq!(undo.previous_bookmark, r.bookmark);
    s.db.restore(D1RestoreTarget::Bookmark(one)).await?;
    ensure_eq!(count(&s, "t").await?, 1);
    s.db.restore(D1RestoreTarget::Bookmark(r.bookmark)).await?;
    ensure_eq!(count(&s, "t").await?, 1);
    Ok(())
}

/// A timestamp restores the last commit at or before it.
pub async fn restore_to_a_timestamp_uses_the_last_commit_at_or_before_it(
    f: &dyn D1Factory,
) -> TestResult {
    let s = open(f).await;
    if !has_time_travel(&s).await? {
        return Ok(());
    }
    s.db.exec("CREATE TABLE t (v)").await?;
    let mut times = Vec::new();
    for i in 0..5i64 {
        s.clock.advance_secs(60);
        s.db.run(&st("INSERT INTO t VALUES (?)").bind([i])).await?;
        times.push(s.clock.now_ms());
    }
    s.clock.advance_secs(60);
    s.db.restore(D1RestoreTarget::TimestampMs(times[2] + 30_000))
        .await?;
    ensure_eq!(count(&s, "t").await?, 3);
    s.db.restore(D1RestoreTarget::TimestampMs(times[0])).await?;
    ensure_eq!(count(&s, "t").await?, 1);
    Ok(())
}

/// Bookmarks older than the window, malformed or unknown are rejected, and the database is
/// left as it was.
pub async fn bookmarks_outside_the_window_or_unknown_are_rejected(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    if !has_time_travel(&s).await? {
        return Ok(());
    }
    s.db.exec("CREATE TABLE t (v)\nINSERT INTO t VALUES (1)")
        .await?;
    let old = s.db.bookmark().await?;
    let old_ts = s.clock.now_ms();
    s.clock.advance_secs(31 * 24 * 3600);
    s.db.run(&st("INSERT INTO t VALUES (2)")).await?;
    for target in [
        D1RestoreTarget::Bookmark(old),
        D1RestoreTarget::TimestampMs(old_ts),
        D1RestoreTarget::Bookmark("not-a-bookmark".into()),
        D1RestoreTarget::Bookmark("00000000000fffff-000000000001".into()),
    ] {
        let e = expect_err(s.db.restore(target.clone()).await, "bad target")?;
        ensure!(
            matches!(e, D1Error::BookmarkNotFound { .. }),
            "{target:?}: got {e}"
        );
    }
    ensure_eq!(count(&s, "t").await?, 2);
    Ok(())
}

/// A session starts without a bookmark (from a constraint), gets one with its first query,
/// and its bookmark never goes back.
pub async fn session_bookmark_starts_empty_and_only_grows(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    if !has_time_travel(&s).await? {
        return Ok(());
    }
    s.db.exec("CREATE TABLE t (v)").await?;
    let session = D1Session::new(Arc::clone(&s.db), D1SessionConstraint::FirstUnconstrained);
    ensure_eq!(session.bookmark(), None);
    session.all(&st("SELECT 1")).await?;
    let b1 = session.bookmark().ok_or("a bookmark after a query")?;
    session.all(&st("INSERT INTO t VALUES (1)")).await?;
    let b2 = session.bookmark().ok_or("a bookmark after a write")?;
    ensure!(b2 > b1, "{b2} > {b1}");
    session.all(&st("SELECT count(*) FROM t")).await?;
    let b3 = session.bookmark().ok_or("still a bookmark")?;
    ensure!(b3 >= b2, "{b3} >= {b2}");
    Ok(())
}

/// A session reads its own writes.
pub async fn session_reads_its_own_writes(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    s.db.exec("CREATE TABLE t (v)").await?;
    let session = D1Session::new(Arc::clone(&s.db), D1SessionConstraint::FirstUnconstrained);
    for i in 0..5i64 {
        session
            .all(&st("INSERT INTO t VALUES (?)").bind([i]))
            .await?;
        let r = session.all(&st("SELECT count(*) AS n FROM t")).await?;
        ensure_eq!(r.rows[0][0], D1Value::from(i + 1));
    }
    Ok(())
}

/// A session started from a bookmark sees a state at least as new as that bookmark.
pub async fn session_from_a_bookmark_sees_at_least_that_state(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    if !has_time_travel(&s).await? {
        return Ok(());
    }
    s.db.exec("CREATE TABLE t (v)\nINSERT INTO t VALUES ('seen')")
        .await?;
    let b = s.db.bookmark().await?;
    let session = D1Session::new(Arc::clone(&s.db), D1SessionConstraint::Bookmark(b.clone()));
    ensure_eq!(session.bookmark(), Some(b.clone()));
    let r = session.all(&st("SELECT v FROM t")).await?;
    ensure_eq!(r.rows, vec![vec![D1Value::from("seen")]]);
    ensure!(session.bookmark().is_some_and(|n| n >= b), "bookmark grew");
    Ok(())
}

/// A malformed session bookmark is `D1_SESSION_ERROR`.
pub async fn invalid_session_bookmark_is_a_session_error(f: &dyn D1Factory) -> TestResult {
    let s = open(f).await;
    if !has_time_travel(&s).await? {
        return Ok(());
    }
    let opts = D1QueryOptions {
        session: Some(D1SessionConstraint::parse("not a bookmark")),
    };
    let e = expect_err(
        s.db.query_batch(&[st("SELECT 1")], &opts).await,
        "bad bookmark",
    )?;
    ensure_eq!(e.code_name(), "D1_SESSION_ERROR");
    Ok(())
}
