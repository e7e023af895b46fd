//! Vectorize conformance: one function per documented behaviour (spec section 6).

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bindery_core::vectorize::{
    DistanceMetric, IndexConfig, ListVectorsOptions, MetadataType, QueryOptions, ReturnMetadata,
    Vector, VectorIndex, Vectorize, VectorizeError, VectorizeLimits,
};
use bindery_core::{CloudflareCode, ManualClock, PlatformError};
use serde_json::{Value, json};

use crate::{TestResult, ensure, ensure_eq};

type Err = Box<dyn std::error::Error + Send + Sync>;

/// Reopens an account from its storage; `None` for backends without persistence.
pub type Reopen = Box<
    dyn Fn() -> Pin<Box<dyn Future<Output = Arc<dyn Vectorize>> + Send + 'static>> + Send + Sync,
>;

/// An account under test.
pub struct VectorizeSubject {
    account: Option<Arc<dyn Vectorize>>,
    /// The clock the account reads; cases advance it.
    pub clock: ManualClock,
    reopen: Option<Reopen>,
    _guard: Box<dyn Any + Send + Sync>,
}

impl VectorizeSubject {
    /// Wraps an account. `reopen` opens the same storage again (after the current account
    /// has been dropped); `guard` lives as long as the subject (a temp dir, say).
    pub fn new(
        account: Arc<dyn Vectorize>,
        clock: ManualClock,
        reopen: Option<Reopen>,
        guard: impl Any + Send + Sync,
    ) -> Self {
        Self {
            account: Some(account),
            clock,
            reopen,
            _guard: Box::new(guard),
        }
    }

    /// The account.
    pub fn account(&self) -> &Arc<dyn Vectorize> {
        self.account.as_ref().expect("account is open")
    }

    /// Drops the account and opens it again from storage; `false` if the backend cannot.
    /// Every index handle taken from the old account must be dropped first.
    pub async fn reopen(&mut self) -> bool {
        let Some(reopen) = &self.reopen else {
            return false;
        };
        drop(self.account.take());
        self.account = Some(reopen().await);
        true
    }
}

/// Opens fresh, empty accounts for cases.
pub trait VectorizeFactory: Send + Sync {
    /// A fresh account enforcing `limits`, on a manual clock.
    fn open(
        &self,
        limits: VectorizeLimits,
    ) -> Pin<Box<dyn Future<Output = VectorizeSubject> + Send + '_>>;
}

impl<F, Fut> VectorizeFactory for F
where
    F: Fn(VectorizeLimits) -> Fut + Send + Sync,
    Fut: Future<Output = VectorizeSubject> + Send + 'static,
{
    fn open(
        &self,
        limits: VectorizeLimits,
    ) -> Pin<Box<dyn Future<Output = VectorizeSubject> + Send + '_>> {
        Box::pin(self(limits))
    }
}

/// Runs every Vectorize case against `$factory`
/// (an `Fn(VectorizeLimits) -> impl Future<Output = VectorizeSubject>`).
#[macro_export]
macro_rules! vectorize_conformance {
    ($factory:expr) => {
        $crate::__expand_cases!(
            $factory,
            vectorize,
            [
                create_index_then_get_and_list_return_its_configuration,
                creating_an_existing_index_is_rejected,
                invalid_index_names_and_dimensions_are_rejected,
                deleted_index_is_gone_and_its_handle_refuses_calls,
                unknown_index_is_not_found,
                upsert_then_get_by_ids_returns_values_namespace_and_metadata,
                get_by_ids_keeps_request_order_and_skips_unknown_ids,
                insert_keeps_the_existing_vector_of_an_existing_id,
                upsert_replaces_values_namespace_and_metadata_whole,
                delete_by_ids_removes_vectors_and_ignores_unknown_ids,
                describe_reports_count_dimensions_and_the_processed_mutation,
                mutation_ids_differ_per_mutation,
                cosine_scores_are_similarities_highest_first,
                euclidean_scores_are_distances_lowest_first,
                dot_product_scores_are_negative_dot_products_lowest_first,
                float64_precision_input_is_stored_as_float32,
                top_k_defaults_to_5,
                top_k_is_at_most_100_or_50_with_values_or_all_metadata,
                top_k_of_zero_is_rejected,
                query_with_wrong_dimensions_is_rejected_with_40006,
                write_with_wrong_dimensions_is_rejected_with_40012_and_writes_nothing,
                non_finite_values_are_rejected,
                more_than_1000_vectors_in_one_call_are_rejected,
                ids_must_be_1_to_64_bytes,
                metadata_over_10_kib_is_rejected,
                metadata_keys_with_dots_dollars_or_quotes_are_rejected,
                namespaces_must_be_1_to_64_bytes,
                limits_can_be_relaxed_explicitly,
                query_by_id_searches_with_the_stored_vector,
                query_by_id_of_an_unknown_id_returns_no_matches,
                namespace_restricts_the_search_to_its_vectors,
                return_values_and_all_metadata_return_the_stored_data,
                return_metadata_indexed_returns_only_indexed_properties,
                filter_eq_matches_strings_numbers_and_booleans,
                filter_ne_in_and_nin_match_as_documented,
                filter_ranges_work_on_numbers_and_strings,
                filter_dotted_paths_reach_nested_metadata,
                filter_keys_combine_with_and,
                filter_happens_before_top_k,
                filter_on_a_property_without_a_metadata_index_matches_nothing,
                vectors_written_before_a_metadata_index_are_not_in_it_until_rewritten,
                strings_are_indexed_on_their_first_64_bytes,
                invalid_filters_are_rejected,
                filter_of_2048_bytes_or_more_is_rejected,
                metadata_indexes_are_at_most_10_and_unique,
                deleted_metadata_index_no_longer_filters,
                list_vectors_pages_ids_in_byte_order_with_a_cursor,
                list_vectors_count_outside_1_to_1000_is_rejected,
                concurrent_upserts_all_land,
                vectors_and_metadata_indexes_survive_reopen,
            ]
        );
    };
}

async fn open(f: &dyn VectorizeFactory) -> VectorizeSubject {
    f.open(VectorizeLimits::cloudflare()).await
}

async fn index_of(
    s: &VectorizeSubject,
    name: &str,
    dims: usize,
    metric: DistanceMetric,
) -> Result<Arc<dyn VectorIndex>, Err> {
    s.account()
        .create_index(name, IndexConfig::new(dims, metric))
        .await?;
    Ok(s.account().index(name).await?)
}

fn expect_err<T: std::fmt::Debug>(
    r: Result<T, VectorizeError>,
    what: &str,
) -> Result<VectorizeError, Err> {
    match r {
        Ok(v) => Err(format!("{what}: expected an error, got Ok({v:?})").into()),
        Err(e) => Ok(e),
    }
}

fn v(id: &str, values: &[f32]) -> Vector {
    Vector::new(id, values.to_vec())
}

fn q(top_k: usize) -> QueryOptions {
    QueryOptions {
        top_k: Some(top_k),
        ..Default::default()
    }
}

fn qf(top_k: usize, filter: Value) -> QueryOptions {
    QueryOptions {
        top_k: Some(top_k),
        filter: Some(filter),
        ..Default::default()
    }
}

async fn ids_of(
    ix: &Arc<dyn VectorIndex>,
    query: &[f32],
    o: QueryOptions,
) -> Result<Vec<String>, Err> {
    Ok(ix
        .query(query, o)
        .await?
        .matches
        .into_iter()
        .map(|m| m.id)
        .collect())
}

/// Six 2-d vectors with metadata of every indexable type, and three metadata indexes.
async fn catalogue(s: &VectorizeSubject) -> Result<Arc<dyn VectorIndex>, Err> {
    let ix = index_of(s, "catalogue", 2, DistanceMetric::Euclidean).await?;
    ix.create_metadata_index("genre", MetadataType::String)
        .await?;
    ix.create_metadata_index("year", MetadataType::Number)
        .await?;
    ix.create_metadata_index("free", MetadataType::Boolean)
        .await?;
    ix.create_metadata_index("info.lang", MetadataType::String)
        .await?;
    let rows = [
        ("a", 0.0, "drama", 1999, true, "en"),
        ("b", 1.0, "comedy", 2001, false, "de"),
        ("c", 2.0, "drama", 2005, false, "en"),
        ("d", 3.0, "network", 2010, true, "fr"),
        ("e", 4.0, "neutral", 2015, false, "en"),
        ("f", 5.0, "news", 2020, true, "de"),
    ];
    let vectors = rows
        .iter()
        .map(|(id, x, genre, year, free, lang)| {
            v(id, &[*x, 0.0]).with_metadata(
                json!({"genre": genre, "year": year, "free": free, "info": {"lang": lang}}),
            )
        })
        .collect();
    ix.upsert(vectors).await?;
    Ok(ix)
}

async fn filtered(ix: &Arc<dyn VectorIndex>, filter: Value) -> Result<Vec<String>, Err> {
    let mut ids = ids_of(ix, &[0.0, 0.0], qf(100, filter)).await?;
    ids.sort();
    Ok(ids)
}

/// Whether `a` is within `tol` of `b`.
fn close(a: f32, b: f32, tol: f32) -> bool {
    (a - b).abs() < tol
}

fn strs(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

/// A created index is described by `get_index` and `list_indexes` with its configuration.
pub async fn create_index_then_get_and_list_return_its_configuration(
    f: &dyn VectorizeFactory,
) -> TestResult {
    let s = open(f).await;
    let mut config = IndexConfig::new(768, DistanceMetric::Cosine);
    config.description = Some("docs".into());
    let info = s.account().create_index("docs-v1", config.clone()).await?;
    ensure_eq!(info.name, "docs-v1");
    ensure_eq!(info.config, config);
    s.account()
        .create_index("alpha", IndexConfig::new(3, DistanceMetric::Euclidean))
        .await?;
    let got = s.account().get_index("docs-v1").await?;
    ensure_eq!(got.config, config);
    let names: Vec<String> = s
        .account()
        .list_indexes()
        .await?
        .into_iter()
        .map(|i| i.name)
        .collect();
    ensure_eq!(names, strs(&["alpha", "docs-v1"]));
    Ok(())
}

/// Index names are unique.
pub async fn creating_an_existing_index_is_rejected(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let c = IndexConfig::new(3, DistanceMetric::Cosine);
    s.account().create_index("dup", c.clone()).await?;
    let e = expect_err(s.account().create_index("dup", c).await, "second create")?;
    ensure!(
        matches!(e, VectorizeError::IndexAlreadyExists { .. }),
        "got {e:?}"
    );
    ensure_eq!(e.http_status(), 409);
    Ok(())
}

/// Bad names, and dimensions outside 1..=1536, are rejected.
pub async fn invalid_index_names_and_dimensions_are_rejected(
    f: &dyn VectorizeFactory,
) -> TestResult {
    let s = open(f).await;
    let c = IndexConfig::new(3, DistanceMetric::Cosine);
    for bad in ["", "Upper", "has space", "../x", "9starts-with-digit"] {
        let e = expect_err(s.account().create_index(bad, c.clone()).await, bad)?;
        ensure!(
            matches!(e, VectorizeError::InvalidIndexName { .. }),
            "{bad}: {e:?}"
        );
    }
    let long = "a".repeat(65);
    expect_err(s.account().create_index(&long, c.clone()).await, "65 bytes")?;
    s.account().create_index(&"a".repeat(64), c.clone()).await?;
    for dims in [0, 1537] {
        let e = expect_err(
            s.account()
                .create_index("dims", IndexConfig::new(dims, DistanceMetric::Cosine))
                .await,
            "dims",
        )?;
        ensure!(
            matches!(e, VectorizeError::InvalidDimensions { max: 1536, .. }),
            "{dims}: {e:?}"
        );
    }
    s.account()
        .create_index("max-dims", IndexConfig::new(1536, DistanceMetric::Cosine))
        .await?;
    Ok(())
}

/// Deleting an index removes it; handles taken before refuse further calls.
pub async fn deleted_index_is_gone_and_its_handle_refuses_calls(
    f: &dyn VectorizeFactory,
) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "gone", 2, DistanceMetric::Cosine).await?;
    ix.upsert(vec![v("a", &[1.0, 0.0])]).await?;
    s.account().delete_index("gone").await?;
    let e = expect_err(s.account().get_index("gone").await, "get deleted")?;
    ensure!(
        matches!(e, VectorizeError::IndexNotFound { .. }),
        "got {e:?}"
    );
    ensure!(
        s.account().list_indexes().await?.is_empty(),
        "list still shows it"
    );
    expect_err(ix.query(&[1.0, 0.0], q(1)).await, "query on deleted")?;
    expect_err(s.account().delete_index("gone").await, "second delete")?;
    // The name is free again and the new index starts empty.
    let again = index_of(&s, "gone", 2, DistanceMetric::Cosine).await?;
    ensure_eq!(again.describe().await?.vector_count, 0);
    Ok(())
}

/// An index that was never created is not found.
pub async fn unknown_index_is_not_found(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let e = expect_err(s.account().index("nope").await.map(|_| ()), "index")?;
    ensure!(
        matches!(e, VectorizeError::IndexNotFound { .. }),
        "got {e:?}"
    );
    ensure_eq!(e.http_status(), 404);
    Ok(())
}

/// What was upserted reads back whole.
pub async fn upsert_then_get_by_ids_returns_values_namespace_and_metadata(
    f: &dyn VectorizeFactory,
) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 3, DistanceMetric::Cosine).await?;
    let meta = json!({"title": "x", "n": 1.5, "tags": ["a", "b"], "nested": {"ok": true}});
    let vec1 = v("one", &[0.1, 0.2, 0.3])
        .with_namespace("ns1")
        .with_metadata(meta.clone());
    ix.upsert(vec![vec1.clone(), v("two", &[1.0, 0.0, 0.0])])
        .await?;
    let got = ix.get_by_ids(&strs(&["one", "two"])).await?;
    ensure_eq!(got.len(), 2);
    ensure_eq!(got[0], vec1);
    ensure_eq!(got[1], v("two", &[1.0, 0.0, 0.0]));
    Ok(())
}

/// `get_by_ids` answers in request order and leaves out unknown ids.
pub async fn get_by_ids_keeps_request_order_and_skips_unknown_ids(
    f: &dyn VectorizeFactory,
) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Cosine).await?;
    ix.upsert(vec![v("a", &[1.0, 0.0]), v("b", &[0.0, 1.0])])
        .await?;
    let got: Vec<String> = ix
        .get_by_ids(&strs(&["b", "missing", "a"]))
        .await?
        .into_iter()
        .map(|v| v.id)
        .collect();
    ensure_eq!(got, strs(&["b", "a"]));
    Ok(())
}

/// Insert-then-insert of the same id keeps the first vector.
pub async fn insert_keeps_the_existing_vector_of_an_existing_id(
    f: &dyn VectorizeFactory,
) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Euclidean).await?;
    ix.insert(vec![v("a", &[1.0, 1.0]).with_metadata(json!({"v": 1}))])
        .await?;
    ix.insert(vec![
        v("a", &[9.0, 9.0]).with_metadata(json!({"v": 2})),
        v("b", &[2.0, 2.0]),
    ])
    .await?;
    let got = ix.get_by_ids(&strs(&["a", "b"])).await?;
    ensure_eq!(got[0].values, vec![1.0, 1.0]);
    ensure_eq!(
        got[0].metadata,
        v("a", &[]).with_metadata(json!({"v": 1})).metadata
    );
    ensure_eq!(got.len(), 2);
    ensure_eq!(ix.describe().await?.vector_count, 2);
    Ok(())
}

/// Upsert replaces everything, with no merge of metadata.
pub async fn upsert_replaces_values_namespace_and_metadata_whole(
    f: &dyn VectorizeFactory,
) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Euclidean).await?;
    ix.upsert(vec![
        v("a", &[1.0, 1.0])
            .with_namespace("old")
            .with_metadata(json!({"x": 1, "y": 2})),
    ])
    .await?;
    ix.upsert(vec![v("a", &[5.0, 5.0]).with_metadata(json!({"z": 3}))])
        .await?;
    let got = ix.get_by_ids(&strs(&["a"])).await?;
    ensure_eq!(
        got,
        vec![v("a", &[5.0, 5.0]).with_metadata(json!({"z": 3}))]
    );
    ensure_eq!(ix.describe().await?.vector_count, 1);
    // The old version is gone from search, and from its old namespace.
    let m = ix.query(&[1.0, 1.0], q(5)).await?;
    ensure_eq!(m.count, 1);
    ensure!(
        close(m.matches[0].score, 32f32.sqrt(), 1e-4),
        "score {}",
        m.matches[0].score
    );
    let old_ns = QueryOptions {
        namespace: Some("old".into()),
        ..q(5)
    };
    ensure_eq!(ix.query(&[1.0, 1.0], old_ns).await?.count, 0);
    Ok(())
}

/// Deleted vectors vanish from reads and queries; unknown ids are fine.
pub async fn delete_by_ids_removes_vectors_and_ignores_unknown_ids(
    f: &dyn VectorizeFactory,
) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Cosine).await?;
    ix.upsert(vec![
        v("a", &[1.0, 0.0]),
        v("b", &[0.0, 1.0]),
        v("c", &[1.0, 1.0]),
    ])
    .await?;
    ix.delete_by_ids(&strs(&["a", "never"])).await?;
    ensure!(
        ix.get_by_ids(&strs(&["a"])).await?.is_empty(),
        "a still readable"
    );
    let ids = ids_of(&ix, &[1.0, 0.0], q(10)).await?;
    ensure_eq!(ids, strs(&["c", "b"]));
    ensure_eq!(ix.describe().await?.vector_count, 2);
    Ok(())
}

/// `describe` counts vectors and names the last processed mutation.
pub async fn describe_reports_count_dimensions_and_the_processed_mutation(
    f: &dyn VectorizeFactory,
) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 4, DistanceMetric::DotProduct).await?;
    let d0 = ix.describe().await?;
    ensure_eq!(d0.vector_count, 0);
    ensure_eq!(d0.dimensions, 4);
    ensure_eq!(d0.metric, DistanceMetric::DotProduct);
    ensure_eq!(d0.processed_up_to_mutation, None);
    s.clock.advance_secs(10);
    let m = ix
        .upsert(vec![v("a", &[1.0; 4]), v("b", &[2.0; 4])])
        .await?;
    let d1 = ix.describe().await?;
    ensure_eq!(d1.vector_count, 2);
    ensure_eq!(d1.processed_up_to_mutation, Some(m.mutation_id));
    use bindery_core::Clock;
    ensure_eq!(d1.processed_up_to_ms, Some(s.clock.now_ms()));
    Ok(())
}

/// Every mutation gets its own id, and `describe` follows the latest.
pub async fn mutation_ids_differ_per_mutation(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Cosine).await?;
    let a = ix.upsert(vec![v("a", &[1.0, 0.0])]).await?;
    let b = ix.insert(vec![v("b", &[0.0, 1.0])]).await?;
    let c = ix.delete_by_ids(&strs(&["a"])).await?;
    ensure!(
        a != b && b != c && a != c,
        "mutation ids repeat: {a:?} {b:?} {c:?}"
    );
    ensure_eq!(
        ix.describe().await?.processed_up_to_mutation,
        Some(c.mutation_id)
    );
    Ok(())
}

/// Cosine: score is the cosine similarity, identical = 1, orthogonal = 0, opposite = -1.
pub async fn cosine_scores_are_similarities_highest_first(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Cosine).await?;
    ix.upsert(vec![
        v("same", &[2.0, 0.0]),
        v("diag", &[1.0, 1.0]),
        v("orth", &[0.0, 3.0]),
        v("opp", &[-1.0, 0.0]),
    ])
    .await?;
    let r = ix.query(&[1.0, 0.0], q(4)).await?;
    let got: Vec<(String, f32)> = r.matches.iter().map(|m| (m.id.clone(), m.score)).collect();
    let want = [
        ("same", 1.0),
        ("diag", std::f32::consts::FRAC_1_SQRT_2),
        ("orth", 0.0),
        ("opp", -1.0),
    ];
    ensure_eq!(got.len(), 4);
    for ((id, score), (wid, wscore)) in got.iter().zip(want) {
        ensure_eq!(id.as_str(), wid);
        ensure!(
            close(*score, wscore, 1e-5),
            "{id}: score {score}, want {wscore}"
        );
    }
    Ok(())
}

/// Euclidean: score is the L2 distance, lowest first.
pub async fn euclidean_scores_are_distances_lowest_first(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Euclidean).await?;
    ix.upsert(vec![
        v("far", &[3.0, 4.0]),
        v("zero", &[0.0, 0.0]),
        v("one", &[1.0, 0.0]),
    ])
    .await?;
    let r = ix.query(&[0.0, 0.0], q(3)).await?;
    let got: Vec<(&str, f32)> = r.matches.iter().map(|m| (m.id.as_str(), m.score)).collect();
    ensure_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        vec!["zero", "one", "far"]
    );
    for ((_, score), want) in got.iter().zip([0.0, 1.0, 5.0]) {
        ensure!(close(*score, want, 1e-5), "score {score}, want {want}");
    }
    Ok(())
}

/// Dot-product: score is the negative dot product, lowest (most negative) first.
pub async fn dot_product_scores_are_negative_dot_products_lowest_first(
    f: &dyn VectorizeFactory,
) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::DotProduct).await?;
    ix.upsert(vec![
        v("small", &[1.0, 0.0]),
        v("big", &[10.0, 0.0]),
        v("neg", &[-5.0, 0.0]),
    ])
    .await?;
    let r = ix.query(&[2.0, 0.0], q(3)).await?;
    let got: Vec<(&str, f32)> = r.matches.iter().map(|m| (m.id.as_str(), m.score)).collect();
    ensure_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        vec!["big", "small", "neg"]
    );
    for ((_, score), want) in got.iter().zip([-20.0, -2.0, 10.0]) {
        ensure!(close(*score, want, 1e-4), "score {score}, want {want}");
    }
    Ok(())
}

/// Values are stored as float32: a float64 input comes back rounded to float32.
pub async fn float64_precision_input_is_stored_as_float32(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Euclidean).await?;
    let precise = 0.1f64 + 1e-12;
    ix.upsert(vec![Vector::new("a", vec![precise as f32, 1.0 / 3.0])])
        .await?;
    let got = ix.get_by_ids(&strs(&["a"])).await?;
    ensure_eq!(got[0].values, vec![precise as f32, 1.0f32 / 3.0]);
    Ok(())
}

/// Without `top_k`, a query returns 5 matches.
pub async fn top_k_defaults_to_5(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Euclidean).await?;
    ix.upsert(
        (0..20)
            .map(|i| v(&format!("v{i}"), &[i as f32, 0.0]))
            .collect(),
    )
    .await?;
    let r = ix.query(&[0.0, 0.0], QueryOptions::default()).await?;
    ensure_eq!(r.count, 5);
    ensure_eq!(r.matches.len(), 5);
    Ok(())
}

/// `top_k` is at most 100, or 50 with values or all metadata, with code 40025.
pub async fn top_k_is_at_most_100_or_50_with_values_or_all_metadata(
    f: &dyn VectorizeFactory,
) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Euclidean).await?;
    ix.upsert(vec![v("a", &[0.0, 0.0])]).await?;
    ix.query(&[0.0, 0.0], q(100)).await?;
    let indexed = QueryOptions {
        return_metadata: ReturnMetadata::Indexed,
        ..q(100)
    };
    ix.query(&[0.0, 0.0], indexed).await?;
    let e = expect_err(ix.query(&[0.0, 0.0], q(101)).await, "101")?;
    ensure!(
        matches!(e, VectorizeError::TopKTooLarge { max: 100, .. }),
        "got {e:?}"
    );
    let with_values = QueryOptions {
        return_values: true,
        ..q(50)
    };
    ix.query(&[0.0, 0.0], with_values.clone()).await?;
    let e = expect_err(
        ix.query(
            &[0.0, 0.0],
            QueryOptions {
                top_k: Some(51),
                ..with_values
            },
        )
        .await,
        "51 with values",
    )?;
    ensure_eq!(e.code(), Some(CloudflareCode::V4(40025)));
    ensure!(
        e.to_string()
            .contains("with returnValues=true or returnMetadata=all, max top K is 50, but got 51"),
        "message: {e}"
    );
    let all = QueryOptions {
        return_metadata: ReturnMetadata::All,
        ..q(51)
    };
    let e = expect_err(ix.query(&[0.0, 0.0], all).await, "51 with all metadata")?;
    ensure!(
        matches!(e, VectorizeError::TopKTooLarge { max: 50, .. }),
        "got {e:?}"
    );
    Ok(())
}

/// `top_k = 0` is an error, not an empty answer.
pub async fn top_k_of_zero_is_rejected(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Euclidean).await?;
    let e = expect_err(ix.query(&[0.0, 0.0], q(0)).await, "top_k 0")?;
    ensure_eq!(e.http_status(), 400);
    Ok(())
}

/// A query vector of the wrong length fails with 40006 and the documented message.
pub async fn query_with_wrong_dimensions_is_rejected_with_40006(
    f: &dyn VectorizeFactory,
) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 3, DistanceMetric::Cosine).await?;
    let e = expect_err(ix.query(&[1.0, 2.0], q(1)).await, "2 dims")?;
    ensure_eq!(e.code(), Some(CloudflareCode::V4(40006)));
    ensure_eq!(
        e.to_string(),
        "VECTOR_QUERY_ERROR (code = 40006): invalid query vector, expected 3 dimensions, and got 2 dimensions"
    );
    ensure_eq!(e.http_status(), 400);
    Ok(())
}

/// A vector of the wrong length fails with 40012, and the whole batch is refused.
pub async fn write_with_wrong_dimensions_is_rejected_with_40012_and_writes_nothing(
    f: &dyn VectorizeFactory,
) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 3, DistanceMetric::Cosine).await?;
    let e = expect_err(
        ix.upsert(vec![v("ok", &[1.0, 2.0, 3.0]), v("bad", &[1.0])])
            .await,
        "1 dim",
    )?;
    ensure_eq!(e.code(), Some(CloudflareCode::V4(40012)));
    ensure_eq!(
        e.to_string(),
        "VECTOR_INSERT_ERROR (code = 40012): invalid vector for id=\"bad\", expected 3 dimensions, and got 1 dimensions"
    );
    ensure!(
        ix.get_by_ids(&strs(&["ok"])).await?.is_empty(),
        "partial write"
    );
    ensure_eq!(ix.describe().await?.vector_count, 0);
    Ok(())
}

/// NaN and infinities are refused in vectors and queries.
pub async fn non_finite_values_are_rejected(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Cosine).await?;
    expect_err(ix.upsert(vec![v("a", &[f32::NAN, 1.0])]).await, "NaN")?;
    expect_err(ix.upsert(vec![v("a", &[f32::INFINITY, 1.0])]).await, "inf")?;
    expect_err(ix.query(&[f32::NAN, 1.0], q(1)).await, "NaN query")?;
    ensure_eq!(ix.describe().await?.vector_count, 0);
    Ok(())
}

/// One call carries at most 1,000 vectors.
pub async fn more_than_1000_vectors_in_one_call_are_rejected(
    f: &dyn VectorizeFactory,
) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Cosine).await?;
    let batch = |n: usize| -> Vec<Vector> {
        (0..n)
            .map(|i| v(&format!("v{i}"), &[1.0, i as f32]))
            .collect()
    };
    ix.upsert(batch(1000)).await?;
    let e = expect_err(ix.upsert(batch(1001)).await, "1001")?;
    ensure!(
        matches!(
            e,
            VectorizeError::TooManyVectors {
                count: 1001,
                limit: 1000
            }
        ),
        "got {e:?}"
    );
    ensure!(
        e.to_string().contains("1001") && e.to_string().contains("1000"),
        "message: {e}"
    );
    ensure_eq!(ix.describe().await?.vector_count, 1000);
    Ok(())
}

/// Ids are 1 to 64 bytes.
pub async fn ids_must_be_1_to_64_bytes(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Cosine).await?;
    ix.upsert(vec![v(&"i".repeat(64), &[1.0, 0.0])]).await?;
    let e = expect_err(ix.upsert(vec![v(&"i".repeat(65), &[1.0, 0.0])]).await, "65")?;
    ensure!(
        e.to_string().contains("65 bytes; the limit is 64"),
        "message: {e}"
    );
    expect_err(ix.upsert(vec![v("", &[1.0, 0.0])]).await, "empty id")?;
    Ok(())
}

/// Metadata is at most 10 KiB serialized.
pub async fn metadata_over_10_kib_is_rejected(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Cosine).await?;
    // {"k":"..."} is 8 bytes plus the string.
    let fits = json!({"k": "x".repeat(10 * 1024 - 8)});
    ix.upsert(vec![v("a", &[1.0, 0.0]).with_metadata(fits)])
        .await?;
    let over = json!({"k": "x".repeat(10 * 1024 - 7)});
    let e = expect_err(
        ix.upsert(vec![v("b", &[1.0, 0.0]).with_metadata(over)])
            .await,
        "10241 bytes",
    )?;
    ensure!(
        matches!(
            e,
            VectorizeError::MetadataTooLarge {
                len: 10241,
                limit: 10240,
                ..
            }
        ),
        "got {e:?}"
    );
    Ok(())
}

/// Metadata keys are non-empty, without `.` or `"`, and do not start with `$`.
pub async fn metadata_keys_with_dots_dollars_or_quotes_are_rejected(
    f: &dyn VectorizeFactory,
) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Cosine).await?;
    for bad in [
        json!({"a.b": 1}),
        json!({"$a": 1}),
        json!({"a\"b": 1}),
        json!({"": 1}),
        json!({"ok": {"$nested": 1}}),
    ] {
        let e = expect_err(
            ix.upsert(vec![v("a", &[1.0, 0.0]).with_metadata(bad.clone())])
                .await,
            "bad key",
        )?;
        ensure!(
            matches!(e, VectorizeError::InvalidMetadataKey { .. }),
            "{bad}: {e:?}"
        );
    }
    Ok(())
}

/// Namespaces are 1 to 64 bytes.
pub async fn namespaces_must_be_1_to_64_bytes(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Cosine).await?;
    ix.upsert(vec![v("a", &[1.0, 0.0]).with_namespace("n".repeat(64))])
        .await?;
    let e = expect_err(
        ix.upsert(vec![v("b", &[1.0, 0.0]).with_namespace("n".repeat(65))])
            .await,
        "65",
    )?;
    ensure!(
        matches!(e, VectorizeError::InvalidNamespace { limit: 64, .. }),
        "got {e:?}"
    );
    Ok(())
}

/// Relaxed limits accept what Cloudflare's refuse.
pub async fn limits_can_be_relaxed_explicitly(f: &dyn VectorizeFactory) -> TestResult {
    let s = f.open(VectorizeLimits::unbounded()).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Euclidean).await?;
    let batch: Vec<Vector> = (0..1500)
        .map(|i| v(&format!("v{i}"), &[i as f32, 0.0]))
        .collect();
    ix.upsert(batch).await?;
    ix.upsert(vec![v(&"i".repeat(100), &[0.0, 0.0])]).await?;
    let r = ix.query(&[0.0, 0.0], q(150)).await?;
    ensure_eq!(r.count, 150);
    Ok(())
}

/// `query_by_id` searches with the vector stored under the id (which matches itself).
pub async fn query_by_id_searches_with_the_stored_vector(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Euclidean).await?;
    ix.upsert(vec![
        v("a", &[0.0, 0.0]),
        v("b", &[10.0, 0.0]),
        v("c", &[11.0, 0.0]),
    ])
    .await?;
    let r = ix.query_by_id("b", q(2)).await?;
    let ids: Vec<&str> = r.matches.iter().map(|m| m.id.as_str()).collect();
    ensure_eq!(ids, vec!["b", "c"]);
    ensure!(
        close(r.matches[0].score, 0.0, 1e-6),
        "self distance {}",
        r.matches[0].score
    );
    Ok(())
}

/// `query_by_id` of an id that does not exist returns no matches.
pub async fn query_by_id_of_an_unknown_id_returns_no_matches(
    f: &dyn VectorizeFactory,
) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Euclidean).await?;
    ix.upsert(vec![v("a", &[0.0, 0.0])]).await?;
    let r = ix.query_by_id("zzz", q(2)).await?;
    ensure_eq!(r.count, 0);
    Ok(())
}

/// A namespace restricts the search to its vectors, before `top_k`.
pub async fn namespace_restricts_the_search_to_its_vectors(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Euclidean).await?;
    let mut batch: Vec<Vector> = (0..50)
        .map(|i| v(&format!("near{i}"), &[i as f32 * 0.01, 0.0]).with_namespace("a"))
        .collect();
    batch.extend(
        (0..3).map(|i| v(&format!("far{i}"), &[100.0 + i as f32, 0.0]).with_namespace("b")),
    );
    batch.push(v("none", &[0.0, 0.0]));
    ix.upsert(batch).await?;
    let o = QueryOptions {
        namespace: Some("b".into()),
        ..q(10)
    };
    let r = ix.query(&[0.0, 0.0], o).await?;
    let ids: Vec<&str> = r.matches.iter().map(|m| m.id.as_str()).collect();
    ensure_eq!(ids, vec!["far0", "far1", "far2"]);
    ensure!(
        r.matches
            .iter()
            .all(|m| m.namespace.as_deref() == Some("b")),
        "namespaces {:?}",
        r.matches
    );
    let unknown = QueryOptions {
        namespace: Some("zzz".into()),
        ..q(10)
    };
    ensure_eq!(ix.query(&[0.0, 0.0], unknown).await?.count, 0);
    Ok(())
}

/// `return_values` and `return_metadata: all` bring the stored values and metadata.
pub async fn return_values_and_all_metadata_return_the_stored_data(
    f: &dyn VectorizeFactory,
) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Cosine).await?;
    let meta = json!({"a": 1, "b": {"c": "d"}});
    ix.upsert(vec![v("x", &[3.0, 4.0]).with_metadata(meta.clone())])
        .await?;
    let plain = ix.query(&[3.0, 4.0], q(1)).await?;
    ensure_eq!(plain.matches[0].values, None);
    ensure_eq!(plain.matches[0].metadata, None);
    let o = QueryOptions {
        return_values: true,
        return_metadata: ReturnMetadata::All,
        ..q(1)
    };
    let r = ix.query(&[3.0, 4.0], o).await?;
    // Values come back as written, not normalized.
    ensure_eq!(r.matches[0].values, Some(vec![3.0, 4.0]));
    ensure_eq!(r.matches[0].metadata.clone().map(Value::Object), Some(meta));
    Ok(())
}

/// `return_metadata: indexed` returns only properties with a metadata index.
pub async fn return_metadata_indexed_returns_only_indexed_properties(
    f: &dyn VectorizeFactory,
) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Cosine).await?;
    ix.create_metadata_index("genre", MetadataType::String)
        .await?;
    ix.create_metadata_index("info.year", MetadataType::Number)
        .await?;
    ix.upsert(vec![v("x", &[1.0, 0.0]).with_metadata(
        json!({"genre": "drama", "secret": "s", "info": {"year": 2001, "other": true}}),
    )])
    .await?;
    let o = QueryOptions {
        return_metadata: ReturnMetadata::Indexed,
        ..q(1)
    };
    let r = ix.query(&[1.0, 0.0], o).await?;
    ensure_eq!(
        r.matches[0].metadata.clone().map(Value::Object),
        Some(json!({"genre": "drama", "info": {"year": 2001}}))
    );
    Ok(())
}

/// `$eq`, implicit or explicit, matches strings, numbers and booleans.
pub async fn filter_eq_matches_strings_numbers_and_booleans(
    f: &dyn VectorizeFactory,
) -> TestResult {
    let s = open(f).await;
    let ix = catalogue(&s).await?;
    ensure_eq!(
        filtered(&ix, json!({"genre": "drama"})).await?,
        strs(&["a", "c"])
    );
    ensure_eq!(
        filtered(&ix, json!({"genre": {"$eq": "drama"}})).await?,
        strs(&["a", "c"])
    );
    ensure_eq!(filtered(&ix, json!({"year": 2010})).await?, strs(&["d"]));
    ensure_eq!(filtered(&ix, json!({"year": 2010.0})).await?, strs(&["d"]));
    ensure_eq!(
        filtered(&ix, json!({"free": true})).await?,
        strs(&["a", "d", "f"])
    );
    // A value of another type than the index never equals.
    ensure!(
        filtered(&ix, json!({"year": "2010"})).await?.is_empty(),
        "string vs number"
    );
    Ok(())
}

/// `$ne`, `$in` and `$nin`.
pub async fn filter_ne_in_and_nin_match_as_documented(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let ix = catalogue(&s).await?;
    ensure_eq!(
        filtered(&ix, json!({"genre": {"$ne": "drama"}})).await?,
        strs(&["b", "d", "e", "f"])
    );
    ensure_eq!(
        filtered(&ix, json!({"genre": {"$in": ["comedy", "news", "horror"]}})).await?,
        strs(&["b", "f"])
    );
    ensure_eq!(
        filtered(&ix, json!({"year": {"$nin": [1999, 2020]}})).await?,
        strs(&["b", "c", "d", "e"])
    );
    ensure_eq!(
        filtered(&ix, json!({"free": {"$ne": true}})).await?,
        strs(&["b", "c", "e"])
    );
    Ok(())
}

/// Ranges on numbers, and on strings lexicographically (prefix search).
pub async fn filter_ranges_work_on_numbers_and_strings(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let ix = catalogue(&s).await?;
    ensure_eq!(
        filtered(&ix, json!({"year": {"$gte": 2001, "$lt": 2015}})).await?,
        strs(&["b", "c", "d"])
    );
    ensure_eq!(
        filtered(&ix, json!({"year": {"$gt": 2001, "$lte": 2015}})).await?,
        strs(&["c", "d", "e"])
    );
    ensure_eq!(
        filtered(&ix, json!({"year": {"$gt": 2015}})).await?,
        strs(&["f"])
    );
    ensure_eq!(
        filtered(&ix, json!({"year": {"$lt": 2000}})).await?,
        strs(&["a"])
    );
    ensure_eq!(
        filtered(&ix, json!({"genre": {"$gte": "net", "$lt": "neu"}})).await?,
        strs(&["d"])
    );
    ensure_eq!(
        filtered(&ix, json!({"genre": {"$gte": "ne", "$lt": "nf"}})).await?,
        strs(&["d", "e", "f"])
    );
    ensure!(
        filtered(&ix, json!({"year": {"$gt": 2015, "$lt": 2001}}))
            .await?
            .is_empty(),
        "crossed bounds"
    );
    Ok(())
}

/// Dotted keys reach nested objects.
pub async fn filter_dotted_paths_reach_nested_metadata(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let ix = catalogue(&s).await?;
    ensure_eq!(
        filtered(&ix, json!({"info.lang": "en"})).await?,
        strs(&["a", "c", "e"])
    );
    Ok(())
}

/// Several keys are ANDed.
pub async fn filter_keys_combine_with_and(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let ix = catalogue(&s).await?;
    ensure_eq!(
        filtered(
            &ix,
            json!({"info.lang": "en", "free": false, "year": {"$gte": 2005}})
        )
        .await?,
        strs(&["c", "e"])
    );
    Ok(())
}

/// The filter applies before `top_k`: the best matches among those that pass come back,
/// even when many closer vectors fail the filter.
pub async fn filter_happens_before_top_k(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Euclidean).await?;
    ix.create_metadata_index("kind", MetadataType::String)
        .await?;
    let mut batch: Vec<Vector> = (0..200)
        .map(|i| {
            v(&format!("near{i:03}"), &[i as f32 * 0.001, 0.0])
                .with_metadata(json!({"kind": "near"}))
        })
        .collect();
    batch.extend((0..7).map(|i| {
        v(&format!("far{i}"), &[50.0 + i as f32, 0.0]).with_metadata(json!({"kind": "far"}))
    }));
    ix.upsert(batch).await?;
    let ids = ids_of(&ix, &[0.0, 0.0], qf(5, json!({"kind": "far"}))).await?;
    ensure_eq!(ids, strs(&["far0", "far1", "far2", "far3", "far4"]));
    Ok(())
}

/// A filter on a property without a metadata index matches nothing.
pub async fn filter_on_a_property_without_a_metadata_index_matches_nothing(
    f: &dyn VectorizeFactory,
) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Euclidean).await?;
    ix.upsert(vec![
        v("a", &[0.0, 0.0]).with_metadata(json!({"color": "red"})),
    ])
    .await?;
    ensure!(
        filtered(&ix, json!({"color": "red"})).await?.is_empty(),
        "unindexed property matched"
    );
    Ok(())
}

/// Vectors written before a metadata index existed are not in it until written again.
pub async fn vectors_written_before_a_metadata_index_are_not_in_it_until_rewritten(
    f: &dyn VectorizeFactory,
) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Euclidean).await?;
    ix.upsert(vec![
        v("old", &[0.0, 0.0]).with_metadata(json!({"color": "red"})),
    ])
    .await?;
    ix.create_metadata_index("color", MetadataType::String)
        .await?;
    ix.upsert(vec![
        v("new", &[1.0, 0.0]).with_metadata(json!({"color": "red"})),
    ])
    .await?;
    ensure_eq!(
        filtered(&ix, json!({"color": "red"})).await?,
        strs(&["new"])
    );
    ix.upsert(vec![
        v("old", &[0.0, 0.0]).with_metadata(json!({"color": "red"})),
    ])
    .await?;
    ensure_eq!(
        filtered(&ix, json!({"color": "red"})).await?,
        strs(&["new", "old"])
    );
    Ok(())
}

/// String indexes keep the first 64 bytes: longer strings match on that prefix.
pub async fn strings_are_indexed_on_their_first_64_bytes(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Euclidean).await?;
    ix.create_metadata_index("t", MetadataType::String).await?;
    let base = "p".repeat(64);
    ix.upsert(vec![
        v("a", &[0.0, 0.0]).with_metadata(json!({"t": format!("{base}-one")})),
        v("b", &[1.0, 0.0]).with_metadata(json!({"t": format!("{base}-two")})),
        v("c", &[2.0, 0.0]).with_metadata(json!({"t": "p".repeat(63)})),
    ])
    .await?;
    ensure_eq!(
        filtered(&ix, json!({"t": format!("{base}-one")})).await?,
        strs(&["a", "b"])
    );
    ensure_eq!(filtered(&ix, json!({"t": base})).await?, strs(&["a", "b"]));
    Ok(())
}

/// Malformed filters are rejected with a message naming the rule.
pub async fn invalid_filters_are_rejected(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let ix = catalogue(&s).await?;
    for bad in [
        json!({}),
        json!({"year": {"$gt": 1, "$gte": 2}}),
        json!({"year": {"$lt": 1, "$lte": 2}}),
        json!({"year": {"$eq": 1, "$gt": 0}}),
        json!({"year": {"$between": [1, 2]}}),
        json!({"year": {"$gt": true}}),
        json!({"genre": {"$in": "drama"}}),
        json!({"$genre": "x"}),
        json!({"": "x"}),
        json!({"a..b": "x"}),
        json!({"genre": ["drama"]}),
        json!(["genre"]),
    ] {
        let e = expect_err(
            ix.query(&[0.0, 0.0], qf(5, bad.clone())).await,
            "bad filter",
        )?;
        ensure!(
            matches!(e, VectorizeError::InvalidFilter { .. }),
            "{bad}: {e:?}"
        );
        ensure_eq!(e.http_status(), 400);
    }
    let mut long_key = serde_json::Map::new();
    long_key.insert("k".repeat(513), json!(1));
    expect_err(
        ix.query(&[0.0, 0.0], qf(5, Value::Object(long_key))).await,
        "513-character key",
    )?;
    Ok(())
}

/// A filter must be under 2048 bytes as compact JSON.
pub async fn filter_of_2048_bytes_or_more_is_rejected(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let ix = catalogue(&s).await?;
    // {"genre":"..."} is 12 bytes plus the string.
    let under = json!({"genre": "x".repeat(2047 - 12)});
    ix.query(&[0.0, 0.0], qf(5, under)).await?;
    let at = json!({"genre": "x".repeat(2048 - 12)});
    let e = expect_err(ix.query(&[0.0, 0.0], qf(5, at)).await, "2048 bytes")?;
    ensure!(
        matches!(
            e,
            VectorizeError::FilterTooLarge {
                len: 2048,
                limit: 2048
            }
        ),
        "got {e:?}"
    );
    Ok(())
}

/// At most 10 metadata indexes, one per property.
pub async fn metadata_indexes_are_at_most_10_and_unique(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Euclidean).await?;
    for i in 0..10 {
        ix.create_metadata_index(&format!("p{i}"), MetadataType::Number)
            .await?;
    }
    let e = expect_err(
        ix.create_metadata_index("p0", MetadataType::String).await,
        "duplicate",
    )?;
    ensure!(
        matches!(e, VectorizeError::MetadataIndexExists { .. }),
        "got {e:?}"
    );
    let e = expect_err(
        ix.create_metadata_index("p10", MetadataType::String).await,
        "eleventh",
    )?;
    ensure!(
        matches!(e, VectorizeError::TooManyMetadataIndexes { limit: 10 }),
        "got {e:?}"
    );
    let listed = ix.list_metadata_indexes().await?;
    ensure_eq!(listed.len(), 10);
    ensure_eq!(listed[0].property_name, "p0");
    ensure_eq!(listed[0].index_type, MetadataType::Number);
    expect_err(
        ix.create_metadata_index("$bad", MetadataType::String).await,
        "bad property",
    )?;
    Ok(())
}

/// Deleting a metadata index makes its property unfilterable; recreating it starts empty.
pub async fn deleted_metadata_index_no_longer_filters(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let ix = catalogue(&s).await?;
    ix.delete_metadata_index("genre").await?;
    ensure!(
        filtered(&ix, json!({"genre": "drama"})).await?.is_empty(),
        "deleted index still filters"
    );
    let e = expect_err(ix.delete_metadata_index("genre").await, "second delete")?;
    ensure!(
        matches!(e, VectorizeError::MetadataIndexNotFound { .. }),
        "got {e:?}"
    );
    ix.create_metadata_index("genre", MetadataType::String)
        .await?;
    ensure!(
        filtered(&ix, json!({"genre": "drama"})).await?.is_empty(),
        "vectors written before the new index are in it"
    );
    Ok(())
}

/// Ids list in byte order, page by page, with a cursor.
pub async fn list_vectors_pages_ids_in_byte_order_with_a_cursor(
    f: &dyn VectorizeFactory,
) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Cosine).await?;
    let mut ids: Vec<String> = (0..25).map(|i| format!("id-{i}")).collect();
    ids.push("Zebra".into());
    ix.upsert(ids.iter().map(|id| v(id, &[1.0, 0.0])).collect())
        .await?;
    ids.sort();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = ix
            .list_vectors(ListVectorsOptions {
                count: Some(10),
                cursor: cursor.take(),
            })
            .await?;
        ensure_eq!(page.total_count, 26);
        ensure!(page.ids.len() <= 10, "page of {}", page.ids.len());
        seen.extend(page.ids);
        if !page.is_truncated {
            ensure_eq!(page.next_cursor, None);
            break;
        }
        cursor = page.next_cursor;
        ensure!(cursor.is_some(), "truncated page without cursor");
    }
    ensure_eq!(seen, ids);
    let first = ix.list_vectors(ListVectorsOptions::default()).await?;
    ensure_eq!(first.ids.len(), 26);
    Ok(())
}

/// `count` is 1..=1000; a foreign cursor is rejected.
pub async fn list_vectors_count_outside_1_to_1000_is_rejected(
    f: &dyn VectorizeFactory,
) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 2, DistanceMetric::Cosine).await?;
    for count in [0, 1001] {
        let e = expect_err(
            ix.list_vectors(ListVectorsOptions {
                count: Some(count),
                cursor: None,
            })
            .await,
            "count",
        )?;
        ensure!(
            matches!(e, VectorizeError::InvalidListCount { .. }),
            "{count}: {e:?}"
        );
    }
    ix.list_vectors(ListVectorsOptions {
        count: Some(1000),
        cursor: None,
    })
    .await?;
    expect_err(
        ix.list_vectors(ListVectorsOptions {
            count: None,
            cursor: Some("not a cursor!".into()),
        })
        .await,
        "garbage cursor",
    )?;
    Ok(())
}

/// Upserts from many tasks at once all land.
pub async fn concurrent_upserts_all_land(f: &dyn VectorizeFactory) -> TestResult {
    let s = open(f).await;
    let ix = index_of(&s, "idx", 4, DistanceMetric::Euclidean).await?;
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let ix = Arc::clone(&ix);
            tokio::spawn(async move {
                for i in 0..10 {
                    let x = (t * 10 + i) as f32;
                    ix.upsert(vec![v(&format!("t{t}-{i}"), &[x, 0.0, 0.0, 1.0])])
                        .await?;
                }
                Ok::<_, VectorizeError>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    ensure_eq!(ix.describe().await?.vector_count, 80);
    let r = ix.query_by_id("t7-9", q(1)).await?;
    ensure_eq!(r.matches[0].id, "t7-9");
    Ok(())
}

/// After a reopen, vectors, namespaces, metadata indexes and filters are as before.
pub async fn vectors_and_metadata_indexes_survive_reopen(f: &dyn VectorizeFactory) -> TestResult {
    let mut s = open(f).await;
    {
        let ix = catalogue(&s).await?;
        ix.upsert(vec![v("ns", &[7.0, 0.0]).with_namespace("space")])
            .await?;
        ix.delete_by_ids(&strs(&["b"])).await?;
    }
    if !s.reopen().await {
        return Ok(());
    }
    let ix = s.account().index("catalogue").await?;
    ensure_eq!(ix.describe().await?.vector_count, 6);
    ensure_eq!(
        filtered(&ix, json!({"genre": "drama"})).await?,
        strs(&["a", "c"])
    );
    ensure_eq!(ix.list_metadata_indexes().await?.len(), 4);
    let o = QueryOptions {
        namespace: Some("space".into()),
        ..q(5)
    };
    ensure_eq!(ids_of(&ix, &[0.0, 0.0], o).await?, strs(&["ns"]));
    ensure!(
        ix.get_by_ids(&strs(&["b"])).await?.is_empty(),
        "deleted vector is back"
    );
    Ok(())
}
