//! Criterion benchmarks for KV: cached and uncached point reads, durable puts, list pages.

use std::time::Duration;

use bindery_core::kv::{GetOptions, KvLimits, KvStore, ListOptions, PutOptions};
use bindery_kv::KvNamespace;
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};

fn kv(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir_in(".").expect("temp dir");
    let open = |cache: usize| {
        rt.block_on(
            KvNamespace::builder()
                .limits(KvLimits::unbounded())
                .cache_capacity_bytes(cache)
                .open(dir.path().join("kv.redb")),
        )
        .expect("open")
    };
    let value = Bytes::from(vec![7u8; 100]);
    {
        let ns = open(64 << 20);
        rt.block_on(async {
            for i in 0..2_000 {
                ns.put(&format!("k{i:05}"), value.clone(), PutOptions::default())
                    .await
                    .expect("put");
            }
        });
        let mut i = 0;
        c.bench_function("kv/get_hot", |b| {
            b.iter(|| {
                i = (i + 1) % 2_000;
                rt.block_on(ns.get(&format!("k{i:05}"), GetOptions::default()))
                    .expect("get")
            })
        });
        let mut n = 0u64;
        c.bench_function("kv/put_durable", |b| {
            b.iter(|| {
                n += 1;
                rt.block_on(ns.put(&format!("p{n}"), value.clone(), PutOptions::default()))
                    .expect("put")
            })
        });
    }
    let ns = open(0);
    let mut i = 0;
    c.bench_function("kv/get_cold", |b| {
        b.iter(|| {
            i = (i + 1) % 2_000;
            rt.block_on(ns.get(&format!("k{i:05}"), GetOptions::default()))
                .expect("get")
        })
    });
    c.bench_function("kv/list_1000", |b| {
        b.iter(|| {
            rt.block_on(ns.list(ListOptions {
                limit: Some(1000),
                ..Default::default()
            }))
            .expect("list")
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = kv
}
criterion_main!(benches);
