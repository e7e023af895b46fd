//! Criterion benchmarks for Vectorize: query latency on a 20,000-vector, 128-dimension index
//! (graph, graph with a 10% filter, exact scan with a 1% filter) and on the exact engine.
//!
//! The full comparison with hnswlib on 100,000 vectors of 768 dimensions is the quick report:
//! `cargo run --release -p bindery-benches -- quick vectorize`.

use std::hint::black_box;

use bindery_core::vectorize::{
    DistanceMetric, IndexConfig, MetadataType, QueryOptions, Vector, VectorIndex, Vectorize,
};
use bindery_vectorize::serde_json::json;
use bindery_vectorize::{Engine, VectorizeAccount, VectorizeIndex};
use criterion::{Criterion, criterion_group, criterion_main};

const N: usize = 20_000;
const DIM: usize = 128;

fn value(i: usize, d: usize) -> f32 {
    let mut x = (i as u64) << 32 | d as u64;
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let cluster = (i % 50) as f32;
    cluster.sin() * (d as f32).cos() + ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.3
}

fn vector(i: usize) -> Vec<f32> {
    (0..DIM).map(|d| value(i, d)).collect()
}

async fn index(dir: &std::path::Path, engine: Engine) -> (VectorizeAccount, VectorizeIndex) {
    let account = VectorizeAccount::builder()
        .engine(engine)
        .open(dir)
        .await
        .expect("open");
    account
        .create_index("bench", IndexConfig::new(DIM, DistanceMetric::Cosine))
        .await
        .expect("create");
    let ix = account.index_handle("bench").await.expect("index");
    ix.create_metadata_index("bucket", MetadataType::Number)
        .await
        .expect("metadata index");
    for start in (0..N).step_by(1000) {
        let batch = (start..start + 1000)
            .map(|i| {
                Vector::new(i.to_string(), vector(i)).with_metadata(json!({"bucket": i % 100}))
            })
            .collect();
        ix.upsert(batch).await.expect("upsert");
    }
    (account, ix)
}

fn queries(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let (_graph_account, graph) = rt.block_on(index(
        &dir.path().join("graph"),
        Engine::Hnsw(Default::default()),
    ));
    let (_exact_account, exact) = rt.block_on(index(&dir.path().join("exact"), Engine::Exact));
    let q = vector(N + 1);
    let run = |ix: &VectorizeIndex, filter: Option<bindery_vectorize::serde_json::Value>| {
        let o = QueryOptions {
            top_k: Some(10),
            filter,
            ..Default::default()
        };
        rt.block_on(ix.query(black_box(&q), o)).expect("query")
    };
    c.bench_function("vectorize/query_graph_20k_128d", |b| {
        b.iter(|| run(&graph, None))
    });
    c.bench_function("vectorize/query_graph_10pct_filter", |b| {
        b.iter(|| run(&graph, Some(json!({"bucket": {"$lt": 10}}))))
    });
    c.bench_function("vectorize/query_exact_path_1pct_filter", |b| {
        b.iter(|| run(&graph, Some(json!({"bucket": 7}))))
    });
    c.bench_function("vectorize/query_exact_engine_20k_128d", |b| {
        b.iter(|| run(&exact, None))
    });
}

criterion_group!(benches, queries);
criterion_main!(benches);
