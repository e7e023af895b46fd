//! Time Travel against a recorded history: random write batches (schema changes, blobs,
//! large transactions, failing batches, restores) with clock advances; the full database
//! contents are recorded after every commit; then every recorded point inside the window is
//! restored (by bookmark and by timestamp) and forked, and compared byte for byte, and every
//! point outside it is refused. Checkpoints and snapshots are made frequent so that restores
//! cross them.

use std::sync::Arc;

use bindery_core::d1::{
    D1Database, D1DatabaseExt, D1Error, D1ExportOptions, D1Limits, D1RestoreTarget, D1Statement,
    D1Value,
};
use bindery_core::{Clock, ManualClock};
use bindery_d1::Database;
use futures_util::StreamExt;
use proptest::prelude::*;

const RETENTION_SECS: u64 = 1800;

#[derive(Debug, Clone)]
enum Op {
    Create(u8),
    Insert(u8, u16),
    Bulk(u8, u16),
    Update(u8),
    Delete(u8),
    AddColumn(u8),
    Drop(u8),
    Failing(u8),
    Restore(usize),
    Prune,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..3).prop_map(Op::Create),
        4 => (0u8..3, 0u16..3000).prop_map(|(t, n)| Op::Insert(t, n)),
        1 => (0u8..3, 50u16..400).prop_map(|(t, n)| Op::Bulk(t, n)),
        2 => (0u8..3).prop_map(Op::Update),
        1 => (0u8..3).prop_map(Op::Delete),
        1 => (0u8..3).prop_map(Op::AddColumn),
        1 => (0u8..3).prop_map(Op::Drop),
        1 => (0u8..3).prop_map(Op::Failing),
        1 => (0usize..1000).prop_map(Op::Restore),
        1 => Just(Op::Prune),
    ]
}

fn st(sql: &str) -> D1Statement {
    D1Statement::new(sql)
}

async fn contents(db: &dyn D1Database) -> String {
    let mut s = db.export(D1ExportOptions::default()).await.expect("export");
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.expect("chunk"));
    }
    String::from_utf8(out).expect("utf8")
}

struct Point {
    bookmark: String,
    time_ms: u64,
    contents: String,
}

/// Runs `op`; `Ok(true)` when it committed.
async fn apply(
    db: &Database,
    op: &Op,
    history: &[Point],
    clock: &ManualClock,
) -> Result<bool, D1Error> {
    let t = |n: &u8| format!("t{n}");
    let r = match op {
        Op::Create(n) => db
            .exec(&format!(
                "CREATE TABLE IF NOT EXISTS {} (id INTEGER PRIMARY KEY, v TEXT, b BLOB)",
                t(n)
            ))
            .await
            .map(|_| ()),
        Op::Insert(n, size) => db
            .run(
                &st(&format!("INSERT INTO {} (v, b) VALUES (?, randomblob(?))", t(n)))
                    .bind([D1Value::from(format!("v{size}")), D1Value::from(i64::from(*size))]),
            )
            .await
            .map(|_| ()),
        Op::Bulk(n, rows) => db
            .run(&st(&format!(
                "INSERT INTO {} (v, b) SELECT 'bulk', randomblob(900) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows}) SELECT x FROM c)",
                t(n)
            )))
            .await
            .map(|_| ()),
        Op::Update(n) => db
            .run(&st(&format!("UPDATE {} SET v = v || '!' WHERE id % 2 = 0", t(n))))
            .await
            .map(|_| ()),
        Op::Delete(n) => db
            .run(&st(&format!("DELETE FROM {} WHERE id % 3 = 0", t(n))))
            .await
            .map(|_| ()),
        Op::AddColumn(n) => db
            .run(&st(&format!("ALTER TABLE {} ADD COLUMN extra{} TEXT DEFAULT 'x'", t(n), history.len())))
            .await
            .map(|_| ()),
        Op::Drop(n) => db
            .run(&st(&format!("DROP TABLE IF EXISTS {}", t(n))))
            .await
            .map(|_| ()),
        Op::Failing(n) => {
            let r = db
                .batch(&[
                    st(&format!("INSERT INTO {} (v) VALUES ('doomed')", t(n))),
                    st("INSERT INTO no_such_table VALUES (1)"),
                ])
                .await;
            assert!(r.is_err(), "a batch with a bad statement must fail");
            return Ok(false);
        }
        Op::Restore(i) => {
            if history.is_empty() {
                return Ok(false);
            }
            let p = &history[i % history.len()];
            db.restore(D1RestoreTarget::Bookmark(p.bookmark.clone()))
                .await
                .map(|_| ())
        }
        Op::Prune => {
            db.prune_history().await?;
            return Ok(false);
        }
    };
    match r {
        Ok(()) => Ok(true),
        // Statements on tables that do not exist (or columns already added) fail: fine.
        Err(D1Error::Sql { .. } | D1Error::Exec { .. }) => Ok(false),
        Err(e @ D1Error::BookmarkNotFound { .. }) => {
            if let Op::Restore(i) = op {
                let p = &history[i % history.len()];
                assert!(
                    p.time_ms + RETENTION_SECS * 1000 < clock.now_ms(),
                    "refused inside the window: {e}"
                );
            }
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

async fn run_case(ops: Vec<(Op, u16)>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::at_2026();
    let mut limits = D1Limits::cloudflare();
    limits.time_travel_retention_secs = RETENTION_SECS;
    let db = Database::builder()
        .clock(clock.shared())
        .limits(limits)
        .checkpoint_wal_bytes(64 * 1024)
        .snapshot_every_bytes(256 * 1024)
        .open(dir.path().join("tt.sqlite"))
        .await
        .expect("open");
    let mut history = vec![Point {
        bookmark: db.bookmark().await.expect("bookmark"),
        time_ms: clock.now_ms(),
        contents: contents(&db).await,
    }];
    for (op, advance) in &ops {
        clock.advance_secs(u64::from(*advance));
        apply(&db, op, &history, &clock).await.expect("op");
        // Record every new commit, whatever the op reported: a statement that changed
        // nothing makes none, while a failed batch's rolled-back transaction may still
        // commit (an empty change with a bookmark of its own, at this time).
        let bookmark = db.bookmark().await.expect("bookmark");
        if history.last().is_some_and(|p| p.bookmark == bookmark) {
            continue;
        }
        history.push(Point {
            bookmark,
            time_ms: clock.now_ms(),
            contents: contents(&db).await,
        });
    }
    let now = clock.now_ms();
    let cutoff = now.saturating_sub(RETENTION_SECS * 1000);
    let db_arc: Arc<dyn D1Database> = Arc::new(db.clone());
    for (i, p) in history.iter().enumerate() {
        let by_bookmark = db
            .restore(D1RestoreTarget::Bookmark(p.bookmark.clone()))
            .await;
        if p.time_ms < cutoff {
            assert!(
                matches!(by_bookmark, Err(D1Error::BookmarkNotFound { .. })),
                "point {i} is outside the window but restored: {by_bookmark:?}"
            );
            continue;
        }
        by_bookmark.unwrap_or_else(|e| panic!("restore to point {i}: {e}"));
        assert_eq!(contents(&*db_arc).await, p.contents, "restored point {i}");
        let check = db
            .first_column(&st("PRAGMA integrity_check"), "integrity_check")
            .await
            .expect("integrity");
        assert_eq!(check, Some(D1Value::from("ok")));
        // By timestamp: the last recorded commit at or before it (later commits in the
        // same millisecond included).
        let last_at = history
            .iter()
            .rev()
            .find(|q| q.time_ms <= p.time_ms)
            .expect("a point");
        db.restore(D1RestoreTarget::TimestampMs(p.time_ms))
            .await
            .unwrap_or_else(|e| panic!("restore to time of point {i}: {e}"));
        assert_eq!(
            contents(&*db_arc).await,
            last_at.contents,
            "timestamp of point {i}"
        );
        // Fork leaves the database alone.
        let fork_path = dir.path().join(format!("fork{i}.sqlite"));
        db.fork_to(D1RestoreTarget::Bookmark(p.bookmark.clone()), &fork_path)
            .await
            .expect("fork");
        let fork = Database::builder()
            .time_travel(false)
            .open(&fork_path)
            .await
            .expect("open fork");
        assert_eq!(contents(&fork).await, p.contents, "fork of point {i}");
    }
    assert!(db.history_bytes().await > 0);
    let snapshots = std::fs::read_dir(dir.path().join("tt.sqlite.history"))
        .expect("history folder")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("snap-"))
        .count();
    assert!(snapshots >= 1, "at least one base snapshot");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn restores_and_forks_match_the_recorded_history(ops in prop::collection::vec((op(), 0u16..300), 5..30)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        rt.block_on(run_case(ops));
    }
}

/// A restore stops the queries running on the database with a clear error, instead of
/// waiting for them, and readers then see the restored state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_cancels_in_flight_queries_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Database::open(dir.path().join("c.sqlite"))
        .await
        .expect("open");
    db.exec("CREATE TABLE t (v)\nINSERT INTO t VALUES (1)")
        .await
        .expect("rows");
    let one = db.bookmark().await.expect("bookmark");
    db.run(&st("INSERT INTO t VALUES (2)")).await.expect("row");
    let long = {
        let db = db.clone();
        tokio::spawn(async move {
            db.all(&st(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000000) SELECT count(*) FROM c",
            ))
            .await
        })
    };
    // Give the long query time to start (it would run for minutes).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    db.restore(D1RestoreTarget::Bookmark(one))
        .await
        .expect("restore");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the restore did not wait for the long query"
    );
    let r = tokio::time::timeout(std::time::Duration::from_secs(10), long)
        .await
        .expect("the long query ended")
        .expect("task");
    let e = r.expect_err("the in-flight query must fail");
    assert!(matches!(e, D1Error::Restoring), "got {e}");
    assert!(e.to_string().contains("being restored"), "{e}");
    let n = db
        .first_column(&st("SELECT count(*) AS n FROM t"), "n")
        .await
        .expect("count");
    assert_eq!(n, Some(D1Value::from(1)));
}

/// Pruning removes archive and snapshots older than the window, frees disk, and keeps every
/// restore inside the window working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_frees_old_history_and_keeps_restores_inside_the_window() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::at_2026();
    let db = Database::builder()
        .clock(clock.shared())
        .checkpoint_wal_bytes(16 * 1024)
        .snapshot_every_bytes(64 * 1024)
        .open(dir.path().join("p.sqlite"))
        .await
        .expect("open");
    db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)")
        .await
        .expect("schema");
    let ins = st("INSERT INTO t (b) VALUES (randomblob(4000))");
    for _ in 0..60 {
        db.run(&ins).await.expect("old rows");
        clock.advance_secs(60);
    }
    let old = db.bookmark().await.expect("old bookmark");
    // A month later, more history: enough for new snapshots inside the window.
    clock.advance_secs(31 * 24 * 3600);
    let mut recent = Vec::new();
    for _ in 0..60 {
        db.run(&ins).await.expect("new rows");
        recent.push((db.bookmark().await.expect("bookmark"), contents(&db).await));
        clock.advance_secs(60);
    }
    let old_bytes = db.history_bytes().await;
    db.prune_history().await.expect("prune");
    // Pruning also runs whenever a snapshot is taken: by now the first snapshot and the
    // segments of the first month are gone.
    let names: Vec<String> = std::fs::read_dir(dir.path().join("p.sqlite.history"))
        .expect("history")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("snap-0000000000000000-")),
        "the first snapshot is older than the window: {names:?}"
    );
    assert!(
        !names.iter().any(|n| n == "seg-0000000000000001.log"),
        "the first month's segment is gone: {names:?}"
    );
    assert!(old_bytes > 0);
    let e = db
        .restore(D1RestoreTarget::Bookmark(old))
        .await
        .expect_err("outside the window");
    assert!(matches!(e, D1Error::BookmarkNotFound { .. }), "{e}");
    for (b, c) in recent.iter().step_by(7) {
        db.restore(D1RestoreTarget::Bookmark(b.clone()))
            .await
            .expect("restore inside the window");
        assert_eq!(&contents(&db).await, c);
    }
}

/// A history proptest once found: a failing batch, then a restore, then a restore back to
/// the restore's own bookmark after most of the window has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookmark_after_a_failing_batch_and_a_restore_stays_restorable() {
    run_case(vec![
        (Op::Create(0), 36),
        (Op::Failing(0), 158),
        (Op::Create(0), 121),
        (Op::Restore(638), 110),
        (Op::Failing(2), 174),
        (Op::Insert(2, 1839), 230),
        (Op::AddColumn(2), 299),
        (Op::Insert(2, 2361), 161),
        (Op::Insert(0, 2576), 137),
        (Op::AddColumn(2), 168),
        (Op::Insert(1, 495), 91),
        (Op::Insert(1, 2645), 271),
        (Op::Drop(1), 49),
    ])
    .await;
}
