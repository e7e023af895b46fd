//! Crash test: a child process writes batches as fast as it can and prints the id of every
//! batch acknowledged; the parent kills it with SIGKILL after a random short delay, reopens
//! the database, runs `PRAGMA integrity_check`, and checks that every acknowledged batch is
//! there whole and that no batch is there in part. 100 iterations on the same database.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bindery_core::d1::{D1Database, D1DatabaseExt, D1Statement, D1Value};
use bindery_d1::Database;
use rand::Rng;

const CHILD_ENV: &str = "BINDERY_D1_CRASH_CHILD";
const ITER_ENV: &str = "BINDERY_D1_CRASH_ITER";
const ITERATIONS: u64 = 100;
const WRITERS: i64 = 8;

fn st(sql: &str) -> D1Statement {
    D1Statement::new(sql)
}

/// The child's body, run only by the crash test as a child process.
#[test]
#[ignore = "child process of the SIGKILL crash test"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let iter: i64 = std::env::var(ITER_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(child(PathBuf::from(dir), iter));
}

async fn child(dir: PathBuf, iter: i64) {
    let db: Arc<dyn D1Database> = Arc::new(
        Database::open(dir.join("crash.sqlite"))
            .await
            .expect("child open"),
    );
    db.exec("CREATE TABLE IF NOT EXISTS a (id INTEGER PRIMARY KEY, payload BLOB NOT NULL); CREATE TABLE IF NOT EXISTS b (id INTEGER PRIMARY KEY)")
        .await
        .expect("schema");
    let stdout = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let db = Arc::clone(&db);
        let stdout = Arc::clone(&stdout);
        tasks.push(tokio::spawn(async move {
            let ins_a = st("INSERT INTO a (id, payload) VALUES (?, randomblob(?))");
            let ins_b = st("INSERT INTO b (id) VALUES (?)");
            for n in 0i64.. {
                let id = iter * 10_000_000 + w * 1_000_000 + n;
                let size = 100 + (n % 7) * 900;
                db.batch(&[
                    ins_a.bind([D1Value::from(id), D1Value::from(size)]),
                    ins_b.bind([id]),
                ])
                .await
                .expect("batch");
                {
                    let mut out = stdout.lock().expect("stdout");
                    writeln!(out, "ack {id}").expect("print");
                    out.flush().expect("flush");
                }
                if n % 5 == 0 {
                    // A batch that fails half-way must leave nothing behind.
                    let r = db
                        .batch(&[
                            ins_a.bind([D1Value::from(id + 500_000), D1Value::from(10)]),
                            ins_b.bind([id]),
                        ])
                        .await;
                    assert!(r.is_err(), "duplicate id must fail the batch");
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
}

fn run_child(dir: &Path, iter: u64, rng: &mut impl Rng) -> Vec<i64> {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .env(ITER_ENV, iter.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = std::sync::mpsc::channel::<i64>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(id) = line.strip_prefix("ack ").and_then(|s| s.parse().ok()) {
                let _ = tx.send(id);
            }
        }
    });
    let mut acked = Vec::new();
    // Wait for the first acknowledgement (bounded), then let it run a random short while.
    if let Ok(id) = rx.recv_timeout(Duration::from_secs(20)) {
        acked.push(id);
    }
    let delay = Duration::from_millis(rng.random_range(0..40));
    let until = Instant::now() + delay;
    while let Ok(id) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        acked.push(id);
        if Instant::now() >= until {
            break;
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap child");
    reader.join().expect("reader");
    acked.extend(rx.try_iter());
    acked
}

#[test]
fn acknowledged_batches_survive_sigkill_and_the_database_stays_intact() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut rng = rand::rng();
    let mut total_acked = 0usize;
    for iter in 0..ITERATIONS {
        let acked = run_child(dir.path(), iter, &mut rng);
        assert!(
            !acked.is_empty(),
            "iteration {iter}: the child never acknowledged a write"
        );
        total_acked += acked.len();
        rt.block_on(async {
            let db = Database::open(dir.path().join("crash.sqlite"))
                .await
                .expect("reopen after SIGKILL");
            let check = db
                .first_column(&st("PRAGMA integrity_check"), "integrity_check")
                .await
                .expect("integrity_check");
            assert_eq!(check, Some(D1Value::from("ok")), "iteration {iter}");
            let half = db
                .first_column(
                    &st("SELECT (SELECT count(*) FROM a WHERE id NOT IN (SELECT id FROM b)) + (SELECT count(*) FROM b WHERE id NOT IN (SELECT id FROM a)) AS n"),
                    "n",
                )
                .await
                .expect("half batches");
            assert_eq!(half, Some(D1Value::from(0)), "iteration {iter}: a batch survived in part");
            for chunk in acked.chunks(90) {
                let list = chunk.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
                let n = db
                    .first_column(
                        &st(&format!("SELECT count(*) AS n FROM a JOIN b USING (id) WHERE id IN ({list})")),
                        "n",
                    )
                    .await
                    .expect("acked rows");
                assert_eq!(
                    n,
                    Some(D1Value::from(chunk.len() as i64)),
                    "iteration {iter}: an acknowledged batch was lost"
                );
            }
        });
    }
    assert!(total_acked >= ITERATIONS as usize);
}

const TT_CHILD_ENV: &str = "BINDERY_D1_TT_CRASH_CHILD";
const TT_ITERATIONS: u64 = 15;

fn tt_builder() -> bindery_d1::D1Builder {
    Database::builder()
        .checkpoint_wal_bytes(32 * 1024)
        .snapshot_every_bytes(128 * 1024)
}

/// The Time Travel child: batches with 2 KB blobs, so that the WAL is archived and
/// checkpointed every few commits and base snapshots are taken often.
#[test]
#[ignore = "child process of the Time Travel crash test"]
fn tt_crash_child() {
    let Some(dir) = std::env::var_os(TT_CHILD_ENV) else {
        return;
    };
    let iter: i64 = std::env::var(ITER_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let db: Arc<dyn D1Database> = Arc::new(
            tt_builder()
                .open(PathBuf::from(dir).join("tt.sqlite"))
                .await
                .expect("child open"),
        );
        let mut tasks = Vec::new();
        for w in 0..4i64 {
            let db = Arc::clone(&db);
            tasks.push(tokio::spawn(async move {
                let ins_a = st("INSERT INTO a (id, payload) VALUES (?, randomblob(2048))");
                let ins_b = st("INSERT INTO b (id) VALUES (?)");
                for n in 0i64.. {
                    let id = iter * 10_000_000 + w * 1_000_000 + n;
                    db.batch(&[ins_a.bind([id]), ins_b.bind([id])])
                        .await
                        .expect("batch");
                    println!("ack {id}");
                }
            }));
        }
        for t in tasks {
            t.await.expect("writer");
        }
    });
}

async fn count_a(db: &Database) -> i64 {
    db.first_column(&st("SELECT count(*) AS n FROM a"), "n")
        .await
        .expect("count")
        .and_then(|v| v.as_i64())
        .expect("a number")
}

async fn check_intact(db: &Database, what: &str) {
    let check = db
        .first_column(&st("PRAGMA integrity_check"), "integrity_check")
        .await
        .expect("integrity_check");
    assert_eq!(check, Some(D1Value::from("ok")), "{what}");
    let half = db
        .first_column(
            &st("SELECT (SELECT count(*) FROM a WHERE id NOT IN (SELECT id FROM b)) + (SELECT count(*) FROM b WHERE id NOT IN (SELECT id FROM a)) AS n"),
            "n",
        )
        .await
        .expect("half batches");
    assert_eq!(
        half,
        Some(D1Value::from(0)),
        "{what}: a batch survived in part"
    );
}

#[test]
fn killed_while_archiving_and_checkpointing_then_restores_correctly() {
    if std::env::var_os(CHILD_ENV).is_some() || std::env::var_os(TT_CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tt.sqlite");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let db = tt_builder().open(&path).await.expect("create");
        db.exec("CREATE TABLE a (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)\nCREATE TABLE b (id INTEGER PRIMARY KEY)")
            .await
            .expect("schema");
    });
    let mut rng = rand::rng();
    for iter in 0..TT_ITERATIONS {
        let (before, before_count) = rt.block_on(async {
            let db = tt_builder().open(&path).await.expect("open");
            (db.bookmark().await.expect("bookmark"), count_a(&db).await)
        });
        let exe = std::env::current_exe().expect("test binary");
        let mut child = Command::new(exe)
            .args([
                "--exact",
                "tt_crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(TT_CHILD_ENV, dir.path())
            .env(ITER_ENV, iter.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = std::sync::mpsc::channel::<i64>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(id) = line.strip_prefix("ack ").and_then(|s| s.parse().ok()) {
                    let _ = tx.send(id);
                }
            }
        });
        let mut acked = Vec::new();
        if let Ok(id) = rx.recv_timeout(Duration::from_secs(20)) {
            acked.push(id);
        }
        let until = Instant::now() + Duration::from_millis(rng.random_range(0..60));
        while let Ok(id) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            acked.push(id);
            if Instant::now() >= until {
                break;
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        reader.join().expect("reader");
        acked.extend(rx.try_iter());
        assert!(!acked.is_empty(), "iteration {iter}: nothing acknowledged");
        rt.block_on(async {
            let db = tt_builder()
                .open(&path)
                .await
                .expect("reopen after SIGKILL");
            check_intact(&db, &format!("iteration {iter} after the kill")).await;
            for chunk in acked.chunks(90) {
                let list = chunk
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(",");
                let n = db
                    .first_column(
                        &st(&format!("SELECT count(*) AS n FROM a WHERE id IN ({list})")),
                        "n",
                    )
                    .await
                    .expect("acked");
                assert_eq!(
                    n,
                    Some(D1Value::from(chunk.len() as i64)),
                    "iteration {iter}: acknowledged batch lost"
                );
            }
            let after_count = count_a(&db).await;
            let r = db
                .restore(bindery_core::d1::D1RestoreTarget::Bookmark(before.clone()))
                .await
                .unwrap_or_else(|e| {
                    panic!("iteration {iter}: restore to the state before the child: {e}")
                });
            assert_eq!(
                count_a(&db).await,
                before_count,
                "iteration {iter}: restored state"
            );
            check_intact(&db, &format!("iteration {iter} after the restore")).await;
            db.restore(bindery_core::d1::D1RestoreTarget::Bookmark(
                r.previous_bookmark,
            ))
            .await
            .unwrap_or_else(|e| panic!("iteration {iter}: undoing the restore: {e}"));
            assert_eq!(
                count_a(&db).await,
                after_count,
                "iteration {iter}: undone restore"
            );
            check_intact(&db, &format!("iteration {iter} after the undo")).await;
        });
    }
}
