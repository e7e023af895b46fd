//! Read replicas and sessions: lag under the manual clock, routing, read-your-writes and
//! monotonic reads.

use std::sync::Arc;

use bindery_core::ManualClock;
use bindery_core::d1::{
    D1Database, D1DatabaseExt, D1QueryOptions, D1RestoreTarget, D1Session, D1SessionConstraint,
    D1Statement, D1Value,
};
use bindery_d1::{Database, ReplicaConfig};

fn st(sql: &str) -> D1Statement {
    D1Statement::new(sql)
}

async fn open(dir: &tempfile::TempDir, clock: &ManualClock) -> Arc<dyn D1Database> {
    let db = Database::builder()
        .clock(clock.shared())
        .read_replicas(vec![ReplicaConfig {
            region: "WEUR".into(),
            lag_ms: 10_000,
        }])
        .open(dir.path().join("r.sqlite"))
        .await
        .expect("open");
    Arc::new(db)
}

fn count(r: &bindery_core::d1::D1QueryResult) -> i64 {
    r.rows[0][0].as_i64().expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_lags_by_the_configured_time_under_the_manual_clock() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = ManualClock::at_2026();
    let db = open(&dir, &clock).await;
    db.exec("CREATE TABLE t (v)\nINSERT INTO t VALUES (1)")
        .await
        .expect("first rows");
    clock.advance_secs(20);
    db.run(&st("INSERT INTO t VALUES (2)"))
        .await
        .expect("second");
    let unconstrained = D1QueryOptions {
        session: Some(D1SessionConstraint::FirstUnconstrained),
    };
    let q = [st("SELECT count(*) FROM t")];
    let r = db
        .query_batch(&q, &unconstrained)
        .await
        .expect("replica read");
    assert_eq!(count(&r.results[0]), 1, "the replica is 10 s behind");
    assert_eq!(r.results[0].meta.served_by_primary, Some(false));
    assert_eq!(r.results[0].meta.served_by_region.as_deref(), Some("WEUR"));
    clock.advance_secs(10);
    let r = db
        .query_batch(&q, &unconstrained)
        .await
        .expect("replica read");
    assert_eq!(count(&r.results[0]), 2, "caught up once the lag passed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_session_everything_goes_to_the_primary() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = ManualClock::at_2026();
    let db = open(&dir, &clock).await;
    db.exec("CREATE TABLE t (v)\nINSERT INTO t VALUES (1)")
        .await
        .expect("rows");
    let r = db.all(&st("SELECT count(*) FROM t")).await.expect("read");
    assert_eq!(count(&r), 1);
    assert_eq!(r.meta.served_by_primary, Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_primary_reads_the_primary_then_the_replica_catches_up_to_the_bookmark() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = ManualClock::at_2026();
    let db = open(&dir, &clock).await;
    db.exec("CREATE TABLE t (v)").await.expect("schema");
    clock.advance_secs(60);
    db.run(&st("INSERT INTO t VALUES (1)")).await.expect("row");
    let session = D1Session::new(Arc::clone(&db), D1SessionConstraint::FirstPrimary);
    let first = session
        .all(&st("SELECT count(*) FROM t"))
        .await
        .expect("first");
    assert_eq!(first.meta.served_by_primary, Some(true));
    assert_eq!(count(&first), 1);
    // The next read carries the bookmark: the lagging replica must catch up to it.
    let second = session
        .all(&st("SELECT count(*) FROM t"))
        .await
        .expect("second");
    assert_eq!(second.meta.served_by_primary, Some(false));
    assert_eq!(
        count(&second),
        1,
        "monotonic reads: never older than what was seen"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_read_their_writes_through_lagging_replicas_and_bookmarks_only_grow() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = ManualClock::at_2026();
    let db = open(&dir, &clock).await;
    db.exec("CREATE TABLE t (v)").await.expect("schema");
    let session = D1Session::new(Arc::clone(&db), D1SessionConstraint::FirstUnconstrained);
    let mut last = String::new();
    for i in 1..=5i64 {
        session
            .all(&st("INSERT INTO t VALUES (?)").bind([i]))
            .await
            .expect("write");
        let r = session
            .all(&st("SELECT count(*) FROM t"))
            .await
            .expect("read");
        assert_eq!(
            r.meta.served_by_primary,
            Some(false),
            "reads go to the replica"
        );
        assert_eq!(count(&r), i, "read-your-writes");
        let b = session.bookmark().expect("bookmark");
        assert!(b >= last, "the bookmark only grows");
        last = b;
    }
    // Another session from the latest bookmark sees everything too.
    let other = D1Session::new(Arc::clone(&db), D1SessionConstraint::Bookmark(last));
    let r = other
        .all(&st("SELECT count(*) FROM t"))
        .await
        .expect("read");
    assert_eq!(count(&r), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_reaches_the_replicas() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = ManualClock::at_2026();
    let db = open(&dir, &clock).await;
    db.exec("CREATE TABLE t (v)\nINSERT INTO t VALUES (1)")
        .await
        .expect("rows");
    let one = db.bookmark().await.expect("bookmark");
    db.run(&st("INSERT INTO t VALUES (2)")).await.expect("row");
    let r = db
        .restore(D1RestoreTarget::Bookmark(one))
        .await
        .expect("restore");
    let session = D1Session::new(Arc::clone(&db), D1SessionConstraint::Bookmark(r.bookmark));
    let read = session
        .all(&st("SELECT count(*) FROM t"))
        .await
        .expect("read");
    assert_eq!(read.meta.served_by_primary, Some(false));
    assert_eq!(read.rows[0][0], D1Value::from(1));
}
