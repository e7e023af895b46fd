//! Quick KV figures: hot and cold reads, durable writes alone and in a crowd, listing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bindery_core::kv::{GetOptions, KvLimits, KvStore, ListOptions, PutOptions};
use bindery_kv::KvNamespace;
use bytes::Bytes;

use crate::disk;
use crate::report::{figure, ratio};

const RUN: Duration = Duration::from_secs(2);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Prints the KV figures.
pub fn run() {
    let fsync = disk::fsync_per_sec(RUN);
    figure("disk.fsync", fsync, "ops/s");
    let rt = runtime();
    rt.block_on(async {
        let dir = disk::bench_dir();
        let keys: Vec<String> = (0..10_000).map(|i| format!("key:{i:08}")).collect();
        let value = Bytes::from(vec![0x42u8; 100]);

        // Load through the group committer.
        let kv = KvNamespace::builder()
            .limits(KvLimits::unbounded())
            .open(dir.path().join("hot.redb"))
            .await
            .expect("open");
        load(&kv, &keys, &value).await;

        // Hot: every key cached at the location.
        for k in &keys {
            kv.get(k, GetOptions::default()).await.expect("warm");
        }
        let hot = read_rate(&kv, &keys, 1).await;
        figure("kv.get_hot", hot, "ops/s");

        // Cold: caching off, every read goes to redb.
        drop(kv);
        let cold_kv = KvNamespace::builder()
            .limits(KvLimits::unbounded())
            .cache_capacity_bytes(0)
            .open(dir.path().join("hot.redb"))
            .await
            .expect("reopen");
        let cold = read_rate(&cold_kv, &keys, 16).await;
        figure("kv.get_cold", cold, "ops/s");

        let list = list_rate(&cold_kv).await;
        figure("kv.list_1000_keys", list, "lists/s");
        drop(cold_kv);

        let w = KvNamespace::builder()
            .limits(KvLimits::unbounded())
            .open(dir.path().join("writes.redb"))
            .await
            .expect("open");
        let w = Arc::new(w);
        let p1 = write_rate(&w, 1, &value).await;
        figure("kv.put_durable_1", p1, "ops/s");
        let p64 = write_rate(&w, 64, &value).await;
        figure("kv.put_durable_64", p64, "ops/s");
        ratio("kv.put_durable_64/kv.put_durable_1", p64 / p1, ">= 10");
        ratio("kv.put_durable_1/disk.fsync", p1 / fsync, ">= 0.5");
        ratio("kv.get_hot/2000000", hot / 2_000_000.0, ">= 1");
        ratio("kv.get_cold/300000", cold / 300_000.0, ">= 1");
    });
}

async fn load(kv: &KvNamespace, keys: &[String], value: &Bytes) {
    let kv = Arc::new(kv.clone());
    let mut tasks = Vec::new();
    for chunk in keys.chunks(keys.len().div_ceil(64)) {
        let kv = Arc::clone(&kv);
        let chunk = chunk.to_vec();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            for k in chunk {
                kv.put(&k, value.clone(), PutOptions::default())
                    .await
                    .expect("put");
            }
        }));
    }
    for t in tasks {
        t.await.expect("loader");
    }
}

/// Reads per second with `tasks` concurrent readers, each walking the keys.
async fn read_rate(kv: &KvNamespace, keys: &[String], tasks: usize) -> f64 {
    let keys = Arc::new(keys.to_vec());
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let kv = kv.clone();
            let keys = Arc::clone(&keys);
            tokio::spawn(async move {
                let mut n = 0u64;
                let mut i = t * 7919;
                let begin = Instant::now();
                while begin.elapsed() < RUN {
                    for _ in 0..1024 {
                        let k = &keys[i % keys.len()];
                        let v = kv.get(k, GetOptions::default()).await.expect("get");
                        assert!(v.is_some());
                        i += 1;
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.await.expect("reader");
    }
    total as f64 / start.elapsed().as_secs_f64()
}

async fn list_rate(kv: &KvNamespace) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        let r = kv
            .list(ListOptions {
                limit: Some(1000),
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(r.keys.len(), 1000);
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Durable puts per second with `writers` concurrent writers on distinct keys.
async fn write_rate(kv: &Arc<KvNamespace>, writers: usize, value: &Bytes) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let kv = Arc::clone(kv);
            let value = value.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                let begin = Instant::now();
                while begin.elapsed() < RUN {
                    kv.put(
                        &format!("w{writers}:{w}:{n}"),
                        value.clone(),
                        PutOptions::default(),
                    )
                    .await
                    .expect("put");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.await.expect("writer");
    }
    total as f64 / start.elapsed().as_secs_f64()
}
