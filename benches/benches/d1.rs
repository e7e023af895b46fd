//! Criterion benchmarks for D1: point selects, single durable commits, 100-row batches, and
//! Time Travel bookmarks.

use std::time::Duration;

use bindery_core::d1::{D1Database, D1DatabaseExt, D1Limits, D1Statement, D1Value};
use bindery_d1::Database;
use criterion::{Criterion, criterion_group, criterion_main};

fn d1(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir_in(".").expect("temp dir");
    let db = rt
        .block_on(
            Database::builder()
                .limits(D1Limits::unbounded())
                .open(dir.path().join("bench.sqlite")),
        )
        .expect("open");
    rt.block_on(async {
        db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            .await
            .expect("schema");
        let ins = D1Statement::new("INSERT INTO t (id, v) VALUES (?, ?)");
        let batch: Vec<D1Statement> = (1..=10_000i64)
            .map(|i| ins.bind([D1Value::from(i), D1Value::from("payload")]))
            .collect();
        db.batch(&batch).await.expect("load");
    });

    let select = D1Statement::new("SELECT id, v FROM t WHERE id = ?");
    let mut i = 0i64;
    c.bench_function("d1/point_select", |b| {
        b.iter(|| {
            i = i % 10_000 + 1;
            rt.block_on(db.all(&select.bind([i]))).expect("select")
        })
    });

    let ins = D1Statement::new("INSERT INTO t (v) VALUES (?)");
    c.bench_function("d1/commit_durable_1", |b| {
        b.iter(|| rt.block_on(db.run(&ins.bind(["x"]))).expect("insert"))
    });

    let batch: Vec<D1Statement> = (0..100).map(|_| ins.bind(["batch"])).collect();
    c.bench_function("d1/batch_100_rows", |b| {
        b.iter(|| rt.block_on(db.batch(&batch)).expect("batch"))
    });

    c.bench_function("d1/bookmark", |b| {
        b.iter(|| rt.block_on(db.bookmark()).expect("bookmark"))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).sample_size(20);
    targets = d1
}
criterion_main!(benches);
