//! Criterion benchmarks for R2: small durable puts, small gets, heads and list pages.

use bindery_core::r2::{GetOptions, ListOptions, PutOptions, R2Body, R2Bucket, R2GetResult};
use bindery_r2::Bucket;
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};

fn r2(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir_in(".").expect("temp dir");
    let bucket = rt
        .block_on(Bucket::open(dir.path(), "bench"))
        .expect("open");
    let value = Bytes::from(vec![7u8; 4096]);
    rt.block_on(async {
        for i in 0..1_000 {
            bucket
                .put(
                    &format!("k{i:05}"),
                    R2Body::Bytes(value.clone()),
                    PutOptions::default(),
                )
                .await
                .expect("put");
        }
    });
    let mut i = 0;
    c.bench_function("r2/get_4k", |b| {
        b.iter(|| {
            i = (i + 1) % 1_000;
            rt.block_on(async {
                let r = bucket
                    .get(&format!("k{i:05}"), GetOptions::default())
                    .await
                    .expect("get")
                    .and_then(R2GetResult::into_body)
                    .expect("body");
                r.bytes().await.expect("read")
            })
        })
    });
    c.bench_function("r2/head", |b| {
        b.iter(|| {
            i = (i + 1) % 1_000;
            rt.block_on(bucket.head(&format!("k{i:05}"))).expect("head")
        })
    });
    c.bench_function("r2/list_1000", |b| {
        b.iter(|| {
            rt.block_on(bucket.list(ListOptions::default()))
                .expect("list")
        })
    });
    let mut n = 0u64;
    c.bench_function("r2/put_4k_durable", |b| {
        b.iter(|| {
            n += 1;
            rt.block_on(bucket.put(
                &format!("p{n}"),
                R2Body::Bytes(value.clone()),
                PutOptions::default(),
            ))
            .expect("put")
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = r2
}
criterion_main!(benches);
