//! Equivalence with brute force on seeded data: the exact engine returns exactly the best
//! matches; the graph reaches recall@10 of at least 0.95 for every metric, with and without
//! filters and namespaces. Also: tombstones never surface, rebuilds keep answers right, and
//! reopening reads the snapshot (or rebuilds when it is damaged) with the same answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bindery_core::vectorize::{
    DistanceMetric, IndexConfig, MetadataType, QueryOptions, Vector, VectorIndex, Vectorize,
};
use bindery_vectorize::serde_json::{Value, json};
use bindery_vectorize::{Engine, HnswParams, VectorizeAccount, VectorizeIndex};

type Res = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const DIM: usize = 24;
const N: usize = 1500;
const K: usize = 10;

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn unit(seed: u64) -> f32 {
    (mix(seed) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
}

/// Clustered points: 12 centres, spread 0.25 around each.
fn point(i: u64, salt: u64) -> Vec<f32> {
    let c = mix(i ^ salt) % 12;
    (0..DIM as u64)
        .map(|d| unit(c * 1000 + d) * 4.0 + unit(i * 7919 + d + salt) * 1.0)
        .collect()
}

struct Item {
    id: String,
    values: Vec<f32>,
    bucket: u64,
    ns: String,
}

fn items() -> Vec<Item> {
    (0..N as u64)
        .map(|i| Item {
            id: format!("v{i:05}"),
            values: point(i, 1),
            bucket: mix(i ^ 77) % 10,
            ns: format!("ns{}", mix(i ^ 99) % 4),
        })
        .collect()
}

/// Lower is better, for every metric (cosine and dot-product negated).
fn distance(metric: DistanceMetric, a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    match metric {
        DistanceMetric::Euclidean => a
            .iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
            .sum::<f64>()
            .sqrt(),
        DistanceMetric::DotProduct => -dot,
        DistanceMetric::Cosine => {
            let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            -(dot / (na * nb))
        }
    }
}

fn brute(
    metric: DistanceMetric,
    items: &[Item],
    q: &[f32],
    pass: impl Fn(&Item) -> bool,
) -> Vec<(String, f64)> {
    let mut all: Vec<(String, f64)> = items
        .iter()
        .filter(|i| pass(i))
        .map(|i| (i.id.clone(), distance(metric, q, &i.values)))
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1));
    all.truncate(K);
    all
}

async fn load(
    engine: Engine,
    exact_threshold: usize,
    metric: DistanceMetric,
    dir: &std::path::Path,
) -> Result<(VectorizeAccount, VectorizeIndex), Box<dyn std::error::Error + Send + Sync>> {
    let account = VectorizeAccount::builder()
        .engine(engine)
        .exact_threshold(exact_threshold)
        // One linking thread: the graph, and so the recall, is the same on every run.
        .build_threads(1)
        .open(dir)
        .await?;
    account
        .create_index("eq", IndexConfig::new(DIM, metric))
        .await?;
    let ix = account.index_handle("eq").await?;
    ix.create_metadata_index("bucket", MetadataType::Number)
        .await?;
    for chunk in items().chunks(500) {
        let batch = chunk
            .iter()
            .map(|i| {
                Vector::new(i.id.clone(), i.values.clone())
                    .with_namespace(i.ns.clone())
                    .with_metadata(json!({"bucket": i.bucket}))
            })
            .collect();
        ix.upsert(batch).await?;
    }
    Ok((account, ix))
}

fn graph() -> Engine {
    Engine::Hnsw(HnswParams {
        m: 12,
        ef_construction: 80,
        ef_search: 64,
    })
}

fn options(namespace: Option<&str>, filter: Option<Value>) -> QueryOptions {
    QueryOptions {
        top_k: Some(K),
        namespace: namespace.map(str::to_owned),
        filter,
        ..Default::default()
    }
}

type Case = (
    &'static str,
    Option<&'static str>,
    Option<Value>,
    fn(&Item) -> bool,
);

fn cases() -> Vec<Case> {
    vec![
        ("unfiltered", None, None, |_| true),
        ("bucket 3 (10%)", None, Some(json!({"bucket": 3})), |i| {
            i.bucket == 3
        }),
        (
            "bucket < 5 (50%)",
            None,
            Some(json!({"bucket": {"$lt": 5}})),
            |i| i.bucket < 5,
        ),
        ("namespace ns1 (25%)", Some("ns1"), None, |i| i.ns == "ns1"),
        (
            "namespace ns2 and bucket in [1, 2] (5%)",
            Some("ns2"),
            Some(json!({"bucket": {"$in": [1, 2]}})),
            |i| i.ns == "ns2" && (i.bucket == 1 || i.bucket == 2),
        ),
    ]
}

async fn recall(
    ix: &VectorizeIndex,
    metric: DistanceMetric,
) -> Result<Vec<(String, f64)>, Box<dyn std::error::Error + Send + Sync>> {
    let data = items();
    let mut out = Vec::new();
    for (name, ns, filter, pass) in cases() {
        let mut hits = 0;
        let mut wanted = 0;
        for qi in 0..30u64 {
            let q = point(qi, 5);
            let want = brute(metric, &data, &q, pass);
            let got = ix.query(&q, options(ns, filter.clone())).await?;
            if got.count < want.len() {
                return Err(format!("{name}: {} matches, {} exist", got.count, want.len()).into());
            }
            for m in &got.matches {
                let item = data.iter().find(|i| i.id == m.id).ok_or("unknown id")?;
                if !pass(item) {
                    return Err(format!("{name}: {} does not pass the filter", m.id).into());
                }
            }
            hits += want
                .iter()
                .filter(|w| got.matches.iter().any(|m| m.id == w.0))
                .count();
            wanted += want.len();
        }
        out.push((name.to_owned(), hits as f64 / wanted as f64));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_engine_matches_brute_force_exactly_for_every_metric() -> Res {
    for metric in [
        DistanceMetric::Cosine,
        DistanceMetric::Euclidean,
        DistanceMetric::DotProduct,
    ] {
        let dir = tempfile::tempdir()?;
        let (_account, ix) = load(Engine::Exact, 0, metric, dir.path()).await?;
        let data = items();
        for (name, ns, filter, pass) in cases() {
            for qi in 0..10u64 {
                let q = point(qi, 5);
                let want = brute(metric, &data, &q, pass);
                let got = ix.query(&q, options(ns, filter.clone())).await?;
                let got_ids: Vec<&str> = got.matches.iter().map(|m| m.id.as_str()).collect();
                let want_ids: Vec<&str> = want.iter().map(|w| w.0.as_str()).collect();
                assert_eq!(got_ids, want_ids, "{metric:?} {name} query {qi}");
                for (m, w) in got.matches.iter().zip(&want) {
                    let expected = match metric {
                        DistanceMetric::Cosine => -w.1,
                        _ => w.1,
                    };
                    let tol = 1e-4 * (1.0 + expected.abs());
                    assert!(
                        (m.score as f64 - expected).abs() <= tol,
                        "{metric:?} {name}: score {} vs {expected}",
                        m.score
                    );
                }
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_reaches_recall_095_for_every_metric_with_and_without_filters() -> Res {
    for metric in [
        DistanceMetric::Cosine,
        DistanceMetric::Euclidean,
        DistanceMetric::DotProduct,
    ] {
        let dir = tempfile::tempdir()?;
        let (_account, ix) = load(graph(), 0, metric, dir.path()).await?;
        for (name, r) in recall(&ix, metric).await? {
            eprintln!("{metric:?} {name}: recall@10 {r:.3}");
            assert!(r >= 0.95, "{metric:?} {name}: recall@10 {r:.3} < 0.95");
        }
        let stats = ix.stats();
        assert!(
            stats.graph_queries > 0,
            "the graph was never searched: {stats:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_vectors_never_surface_and_a_rebuild_keeps_answers_right() -> Res {
    let dir = tempfile::tempdir()?;
    let account = VectorizeAccount::builder()
        .engine(graph())
        .exact_threshold(0)
        .rebuild_min(100)
        .rebuild_ratio(0.3)
        .open(dir.path())
        .await?;
    account
        .create_index("eq", IndexConfig::new(DIM, DistanceMetric::Euclidean))
        .await?;
    let ix = account.index_handle("eq").await?;
    let data = items();
    for chunk in data.chunks(500) {
        ix.upsert(
            chunk
                .iter()
                .map(|i| Vector::new(i.id.clone(), i.values.clone()))
                .collect(),
        )
        .await?;
    }
    // Delete every vector of one half of the ids, in batches; the rebuild starts on its own
    // once 30% of the graph is tombstones.
    let doomed: Vec<String> = data
        .iter()
        .filter(|i| mix(i.id.len() as u64 ^ i.values[0].to_bits() as u64).is_multiple_of(2))
        .map(|i| i.id.clone())
        .collect();
    let mut deleted: Vec<String> = Vec::new();
    for chunk in doomed.chunks(200) {
        ix.delete_by_ids(chunk).await?;
        deleted.extend_from_slice(chunk);
        // Between deletions the graph must never return a deleted vector.
        for qi in 0..5u64 {
            let got = ix.query(&point(qi, 5), options(None, None)).await?;
            assert_eq!(got.count, K);
            for m in &got.matches {
                assert!(!deleted.contains(&m.id), "deleted {} returned", m.id);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while ix.stats().rebuilds == 0 {
        assert!(Instant::now() < deadline, "no rebuild: {:?}", ix.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = ix.stats();
    assert!(
        stats.tombstones < doomed.len(),
        "tombstones kept: {stats:?}"
    );
    let live: Vec<Item> = data
        .into_iter()
        .filter(|i| !doomed.contains(&i.id))
        .collect();
    let mut hits = 0;
    for qi in 0..30u64 {
        let q = point(qi, 5);
        let want = brute(DistanceMetric::Euclidean, &live, &q, |_| true);
        let got = ix.query(&q, options(None, None)).await?;
        hits += want
            .iter()
            .filter(|w| got.matches.iter().any(|m| m.id == w.0))
            .count();
    }
    let r = hits as f64 / 300.0;
    assert!(r >= 0.95, "recall after rebuild {r}");
    assert_eq!(ix.describe().await?.vector_count, live.len() as u64);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_reads_the_snapshot_and_a_damaged_snapshot_is_rebuilt_from_the_store() -> Res {
    let dir = tempfile::tempdir()?;
    let q = point(3, 5);
    let before = {
        let (account, ix) = load(graph(), 0, DistanceMetric::Cosine, dir.path()).await?;
        let r = ix
            .query(&q, options(None, Some(json!({"bucket": 3}))))
            .await?;
        drop(ix);
        drop(account);
        r
    };
    {
        let account = VectorizeAccount::builder()
            .engine(graph())
            .exact_threshold(0)
            .open(dir.path())
            .await?;
        let ix = account.index_handle("eq").await?;
        let stats = ix.stats();
        assert!(stats.opened_from_snapshot, "{stats:?}");
        assert_eq!(stats.replayed_ids, 0);
        let after = ix
            .query(&q, options(None, Some(json!({"bucket": 3}))))
            .await?;
        assert_eq!(after, before);
        let as_dyn: Arc<dyn VectorIndex> = Arc::new(ix.clone());
        assert_eq!(as_dyn.describe().await?.vector_count, N as u64);
    }
    // Damage the snapshot: the index is rebuilt from the store and answers the same.
    let snap = dir.path().join("eq").join("graph.snapshot");
    let mut bytes = std::fs::read(&snap)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&snap, bytes)?;
    let account = VectorizeAccount::builder()
        .engine(graph())
        .exact_threshold(0)
        .open(dir.path())
        .await?;
    let ix = account.index_handle("eq").await?;
    assert!(!ix.stats().opened_from_snapshot);
    let rebuilt = ix
        .query(&q, options(None, Some(json!({"bucket": 3}))))
        .await?;
    let ids = |r: &bindery_core::vectorize::QueryResult| -> Vec<String> {
        r.matches.iter().map(|m| m.id.clone()).collect()
    };
    let common = ids(&rebuilt)
        .iter()
        .filter(|id| ids(&before).contains(id))
        .count();
    assert!(
        common >= 9,
        "rebuilt graph answers differently: {rebuilt:?} vs {before:?}"
    );
    Ok(())
}
