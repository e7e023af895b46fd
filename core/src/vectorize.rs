//! The Vectorize contract.
//!
//! A [`Vectorize`] is an account's set of vector indexes: it creates, describes, lists and
//! deletes them. A [`VectorIndex`] is one index: fixed dimensions (1..=1536), a fixed metric
//! ([`DistanceMetric`]), float32 values, optional namespaces, JSON metadata with up to ten
//! metadata indexes for filtering, and approximate nearest-neighbour queries.
//!
//! Scores follow Vectorize's documented meaning per metric:
//!
//! | metric | score | better |
//! |---|---|---|
//! | cosine | cosine similarity, -1..=1 | higher |
//! | euclidean | L2 distance, 0 = identical | lower |
//! | dot-product | the *negative* dot product (-1000 beats -500) | lower |
//!
//! Filters (see [`QueryOptions::filter`]) are JSON objects as in Vectorize:
//! `{"genre": "drama", "year": {"$gte": 2000, "$lt": 2010}, "tags.lang": {"$in": ["en", "de"]}}`.
//! Filtering happens before `top_k`: a query returns the best matches among the vectors that
//! pass the filter.

use async_trait::async_trait;
use serde_json::{Map, Value};
use std::sync::Arc;

use crate::error::{BoxError, CloudflareCode, ErrorKind, PlatformError};

/// Result alias for Vectorize operations.
pub type VectorizeResult<T> = Result<T, VectorizeError>;

/// A vector's metadata: a JSON object.
pub type Metadata = Map<String, Value>;

/// How similarity is measured. Fixed when the index is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DistanceMetric {
    /// Cosine similarity; the score is in -1..=1 and higher is better.
    Cosine,
    /// L2 distance; the score is the distance and lower is better.
    Euclidean,
    /// Dot product; the score is the negative dot product and lower is better.
    DotProduct,
}

impl DistanceMetric {
    /// The name Vectorize uses: `cosine`, `euclidean` or `dot-product`.
    pub fn as_str(self) -> &'static str {
        match self {
            DistanceMetric::Cosine => "cosine",
            DistanceMetric::Euclidean => "euclidean",
            DistanceMetric::DotProduct => "dot-product",
        }
    }

    /// Parses a Vectorize metric name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "cosine" => Some(DistanceMetric::Cosine),
            "euclidean" => Some(DistanceMetric::Euclidean),
            "dot-product" => Some(DistanceMetric::DotProduct),
            _ => None,
        }
    }

    /// Whether a higher score means a closer match (true only for cosine).
    pub fn higher_is_better(self) -> bool {
        matches!(self, DistanceMetric::Cosine)
    }
}

/// What an index is created with. Immutable afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexConfig {
    /// Number of dimensions of every vector, 1..=`max_dimensions` (1536).
    pub dimensions: usize,
    /// The distance metric.
    pub metric: DistanceMetric,
    /// Free text. Default: none.
    pub description: Option<String>,
}

impl IndexConfig {
    /// A configuration with no description.
    pub fn new(dimensions: usize, metric: DistanceMetric) -> Self {
        Self {
            dimensions,
            metric,
            description: None,
        }
    }
}

/// An index as the account lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexInfo {
    /// The index name.
    pub name: String,
    /// Its configuration.
    pub config: IndexConfig,
    /// When it was created, milliseconds since the UNIX epoch.
    pub created_on_ms: u64,
}

/// One vector as written and read.
#[derive(Debug, Clone, PartialEq)]
pub struct Vector {
    /// Unique id within the index, 1..=64 bytes.
    pub id: String,
    /// The values; exactly the index's dimensions. Stored as float32.
    pub values: Vec<f32>,
    /// The namespace the vector belongs to (at most one), 1..=64 bytes. Default: none.
    pub namespace: Option<String>,
    /// JSON metadata, at most 10 KiB serialized. Default: none.
    pub metadata: Option<Metadata>,
}

impl Vector {
    /// A vector with no namespace and no metadata.
    pub fn new(id: impl Into<String>, values: Vec<f32>) -> Self {
        Self {
            id: id.into(),
            values,
            namespace: None,
            metadata: None,
        }
    }

    /// The same vector in `namespace`.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The same vector with `metadata` (a JSON object; anything else is stored as none).
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = match metadata {
            Value::Object(m) => Some(m),
            _ => None,
        };
        self
    }
}

/// Which metadata a query returns with each match.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReturnMetadata {
    /// No metadata (the default).
    #[default]
    None,
    /// Only the properties that have a metadata index, as indexed (strings cut to 64 bytes).
    Indexed,
    /// All metadata; limits `top_k` to 50.
    All,
}

/// Options for [`VectorIndex::query`] and [`VectorIndex::query_by_id`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryOptions {
    /// Number of matches, 1..=100 (1..=50 with `return_values` or [`ReturnMetadata::All`]).
    /// Default: 5.
    pub top_k: Option<usize>,
    /// Search only this namespace. Default: every vector.
    pub namespace: Option<String>,
    /// Return each match's values. Default: false.
    pub return_values: bool,
    /// Which metadata to return. Default: none.
    pub return_metadata: ReturnMetadata,
    /// A metadata filter (a JSON object, under 2048 bytes compact). Default: none.
    pub filter: Option<Value>,
}

/// One query match.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorMatch {
    /// The vector id.
    pub id: String,
    /// The score, in the metric's meaning (see the module docs).
    pub score: f32,
    /// The values, when asked for.
    pub values: Option<Vec<f32>>,
    /// The vector's namespace, if it has one.
    pub namespace: Option<String>,
    /// The metadata, when asked for and present.
    pub metadata: Option<Metadata>,
}

/// What a query returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    /// Number of matches.
    pub count: usize,
    /// Matches, best first.
    pub matches: Vec<VectorMatch>,
}

/// What a mutation returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    /// Identifies the mutation; compare with [`IndexDescription::processed_up_to_mutation`].
    pub mutation_id: String,
}

/// What [`VectorIndex::describe`] reports.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexDescription {
    /// Vectors in the index.
    pub vector_count: u64,
    /// The index's dimensions.
    pub dimensions: usize,
    /// The index's metric.
    pub metric: DistanceMetric,
    /// The last mutation whose effect queries see; none before the first mutation.
    pub processed_up_to_mutation: Option<String>,
    /// When that mutation was processed, milliseconds since the UNIX epoch.
    pub processed_up_to_ms: Option<u64>,
}

/// Options for [`VectorIndex::list_vectors`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListVectorsOptions {
    /// Page size, 1..=1000. Default: 100.
    pub count: Option<usize>,
    /// The cursor of the previous page.
    pub cursor: Option<String>,
}

/// One page of vector ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VectorIdPage {
    /// Ids in UTF-8 byte order.
    pub ids: Vec<String>,
    /// Vectors in the index.
    pub total_count: u64,
    /// Whether more ids follow.
    pub is_truncated: bool,
    /// Pass this to get the next page; present only when `is_truncated`.
    pub next_cursor: Option<String>,
}

/// The type of a metadata index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetadataType {
    /// Strings, indexed on their first 64 bytes.
    String,
    /// Numbers, indexed as float64.
    Number,
    /// Booleans.
    Boolean,
}

impl MetadataType {
    /// The name Vectorize uses: `string`, `number` or `boolean`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetadataType::String => "string",
            MetadataType::Number => "number",
            MetadataType::Boolean => "boolean",
        }
    }

    /// Parses a Vectorize metadata type name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "string" => Some(MetadataType::String),
            "number" => Some(MetadataType::Number),
            "boolean" => Some(MetadataType::Boolean),
            _ => None,
        }
    }
}

/// A metadata index: makes one property filterable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataIndex {
    /// The property, possibly a dotted path into nested objects (`a.b`).
    pub property_name: String,
    /// Its type: values of other types are not indexed.
    pub index_type: MetadataType,
}

/// One Vectorize index.
///
/// # Contract
///
/// - `insert` keeps existing ids (the first write wins); `upsert` replaces values, namespace
///   and metadata whole. Both return after the change is durable, and a query issued after
///   either returns sees it (stronger than Cloudflare, where mutations apply asynchronously).
/// - A write batch is validated whole before anything is written: one bad vector rejects the
///   batch and nothing is stored.
/// - `query` returns up to `top_k` matches among the vectors that pass the namespace and the
///   filter, best first; it returns fewer only when fewer vectors pass.
/// - A metadata index covers vectors written after it was created; vectors written before are
///   not in it until re-upserted. A filter on a property without a metadata index, or a vector
///   without an indexed value for a filtered property, does not match.
/// - `get_by_ids` returns the vectors found, in request order; unknown ids are skipped.
///   `delete_by_ids` of unknown ids succeeds.
///
/// # Errors
///
/// Every limit breach and bad input returns a [`VectorizeError`] naming the problem and the
/// limit.
#[async_trait]
pub trait VectorIndex: Send + Sync + 'static {
    /// The index's name.
    fn name(&self) -> &str;

    /// Counts and processing state.
    async fn describe(&self) -> VectorizeResult<IndexDescription>;

    /// Adds vectors; ids that already exist are skipped.
    async fn insert(&self, vectors: Vec<Vector>) -> VectorizeResult<Mutation>;

    /// Adds vectors or fully replaces existing ones.
    async fn upsert(&self, vectors: Vec<Vector>) -> VectorizeResult<Mutation>;

    /// Nearest neighbours of `vector`.
    async fn query(&self, vector: &[f32], options: QueryOptions) -> VectorizeResult<QueryResult>;

    /// Nearest neighbours of the stored vector `id`; an unknown id gives no matches.
    async fn query_by_id(&self, id: &str, options: QueryOptions) -> VectorizeResult<QueryResult>;

    /// The vectors with these ids, with values, namespace and metadata.
    async fn get_by_ids(&self, ids: &[String]) -> VectorizeResult<Vec<Vector>>;

    /// Removes vectors.
    async fn delete_by_ids(&self, ids: &[String]) -> VectorizeResult<Mutation>;

    /// One page of vector ids.
    async fn list_vectors(&self, options: ListVectorsOptions) -> VectorizeResult<VectorIdPage>;

    /// Creates a metadata index on `property_name`.
    async fn create_metadata_index(
        &self,
        property_name: &str,
        index_type: MetadataType,
    ) -> VectorizeResult<Mutation>;

    /// Deletes the metadata index on `property_name`.
    async fn delete_metadata_index(&self, property_name: &str) -> VectorizeResult<Mutation>;

    /// The metadata indexes, by property name.
    async fn list_metadata_indexes(&self) -> VectorizeResult<Vec<MetadataIndex>>;
}

/// An account's Vectorize indexes.
///
/// # Contract
///
/// - Index names are 1..=64 bytes of lowercase ASCII letters, digits and `-`, starting with a
///   letter; a name is unique among live indexes.
/// - [`Vectorize::index`] returns a handle that stays valid until the index is deleted.
///
/// # Errors
///
/// [`VectorizeError::IndexNotFound`], [`VectorizeError::IndexAlreadyExists`],
/// [`VectorizeError::InvalidIndexName`], [`VectorizeError::InvalidDimensions`].
#[async_trait]
pub trait Vectorize: Send + Sync + 'static {
    /// Creates an index.
    async fn create_index(&self, name: &str, config: IndexConfig) -> VectorizeResult<IndexInfo>;

    /// One index's information.
    async fn get_index(&self, name: &str) -> VectorizeResult<IndexInfo>;

    /// Every index, by name.
    async fn list_indexes(&self) -> VectorizeResult<Vec<IndexInfo>>;

    /// Deletes an index and its vectors.
    async fn delete_index(&self, name: &str) -> VectorizeResult<()>;

    /// A handle to an index.
    async fn index(&self, name: &str) -> VectorizeResult<Arc<dyn VectorIndex>>;
}

/// Vectorize's documented limits.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct VectorizeLimits {
    /// Most dimensions per vector. Cloudflare: 1536.
    pub max_dimensions: usize,
    /// Longest vector id in bytes. Cloudflare: 64.
    pub max_id_bytes: usize,
    /// Largest serialized metadata per vector. Cloudflare: 10 KiB (10,240 bytes).
    pub max_metadata_bytes: usize,
    /// Longest namespace name in bytes. Cloudflare: 64.
    pub max_namespace_bytes: usize,
    /// Most vectors in one insert, upsert or delete call. Cloudflare: 1,000 (Workers binding).
    pub max_vectors_per_write: usize,
    /// Largest `top_k` without values or all metadata. Cloudflare: 100.
    pub max_top_k: usize,
    /// Largest `top_k` with `return_values` or `return_metadata: all`. Cloudflare: 50.
    pub max_top_k_with_values_or_all_metadata: usize,
    /// Most metadata indexes per index. Cloudflare: 10.
    pub max_metadata_indexes: usize,
    /// Bytes of a string a metadata index keeps (cut at a UTF-8 boundary). Cloudflare: 64.
    pub indexed_string_bytes: usize,
    /// A compact filter must be shorter than this many bytes. Cloudflare: 2048.
    pub max_filter_bytes: usize,
    /// Longest filter key in characters. Cloudflare: 512.
    pub max_filter_key_chars: usize,
    /// Largest list-vectors page. Cloudflare: 1000.
    pub max_list_count: usize,
    /// Longest index name in bytes. Cloudflare: 64.
    pub max_index_name_bytes: usize,
    /// Most vectors per index. Cloudflare: 20,000,000.
    pub max_vectors_per_index: u64,
    /// Most namespaces per index. Cloudflare: 50,000 (Paid).
    pub max_namespaces_per_index: usize,
}

impl VectorizeLimits {
    /// Cloudflare's documented values.
    pub fn cloudflare() -> Self {
        Self {
            max_dimensions: 1536,
            max_id_bytes: 64,
            max_metadata_bytes: 10 * 1024,
            max_namespace_bytes: 64,
            max_vectors_per_write: 1000,
            max_top_k: 100,
            max_top_k_with_values_or_all_metadata: 50,
            max_metadata_indexes: 10,
            indexed_string_bytes: 64,
            max_filter_bytes: 2048,
            max_filter_key_chars: 512,
            max_list_count: 1000,
            max_index_name_bytes: 64,
            max_vectors_per_index: 20_000_000,
            max_namespaces_per_index: 50_000,
        }
    }

    /// Relaxed limits: sizes and counts unbounded. Indexed strings are still cut to 64 bytes
    /// (that is how the index works, not a quota) and list pages are still at most 1000 ids.
    pub fn unbounded() -> Self {
        Self {
            max_dimensions: 65_536,
            max_id_bytes: usize::MAX,
            max_metadata_bytes: usize::MAX,
            max_namespace_bytes: usize::MAX,
            max_vectors_per_write: usize::MAX,
            max_top_k: 10_000,
            max_top_k_with_values_or_all_metadata: 10_000,
            max_metadata_indexes: usize::MAX,
            indexed_string_bytes: 64,
            max_filter_bytes: usize::MAX,
            max_filter_key_chars: usize::MAX,
            max_list_count: 1000,
            max_index_name_bytes: 255,
            max_vectors_per_index: u64::MAX,
            max_namespaces_per_index: usize::MAX,
        }
    }
}

impl Default for VectorizeLimits {
    fn default() -> Self {
        Self::cloudflare()
    }
}

/// Everything that can go wrong in a Vectorize operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VectorizeError {
    /// No index has this name.
    #[error("vectorize.index.not_found: index {name:?} does not exist")]
    IndexNotFound {
        /// The name.
        name: String,
    },
    /// An index with this name exists.
    #[error("vectorize.index.duplicate_name: an index named {name:?} already exists")]
    IndexAlreadyExists {
        /// The name.
        name: String,
    },
    /// The index name breaks the naming rules.
    #[error("invalid index name {name:?}: {reason}")]
    InvalidIndexName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The dimensions are outside `1..=max`.
    #[error("invalid dimensions {dimensions}: an index has 1 to {max} dimensions")]
    InvalidDimensions {
        /// The dimensions given.
        dimensions: usize,
        /// The largest allowed.
        max: usize,
    },
    /// A query vector has the wrong number of dimensions.
    #[error(
        "VECTOR_QUERY_ERROR (code = 40006): invalid query vector, expected {expected} dimensions, and got {got} dimensions"
    )]
    QueryDimensionMismatch {
        /// The index's dimensions.
        expected: usize,
        /// The query's.
        got: usize,
    },
    /// A vector to write has the wrong number of dimensions.
    #[error(
        "VECTOR_INSERT_ERROR (code = 40012): invalid vector for id=\"{id}\", expected {expected} dimensions, and got {got} dimensions"
    )]
    VectorDimensionMismatch {
        /// The vector id.
        id: String,
        /// The index's dimensions.
        expected: usize,
        /// The vector's.
        got: usize,
    },
    /// A vector (or a query vector, with an empty id) holds NaN or an infinity.
    #[error("invalid vector for id=\"{id}\": value at position {position} is not a finite number")]
    NonFiniteValue {
        /// The vector id (empty for a query vector).
        id: String,
        /// Index of the first bad value.
        position: usize,
    },
    /// `top_k` is larger than allowed for the requested return options.
    #[error(
        "VECTOR_QUERY_ERROR (code = 40025): {}max top K is {max}, but got {top_k}",
        if *with_values_or_all_metadata { "with returnValues=true or returnMetadata=all, " } else { "" }
    )]
    TopKTooLarge {
        /// The `top_k` given.
        top_k: usize,
        /// The largest allowed.
        max: usize,
        /// Whether the lower limit applied.
        with_values_or_all_metadata: bool,
    },
    /// `top_k` is zero.
    #[error("VECTOR_QUERY_ERROR: top K must be at least 1, but got 0")]
    TopKZero,
    /// A vector id is empty or longer than the limit.
    #[error("invalid vector id {id:?}: {}", if id.is_empty() { "ids must not be empty".to_owned() } else { format!("id is {} bytes; the limit is {limit}", id.len()) })]
    InvalidId {
        /// The id.
        id: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// A namespace is empty or longer than the limit.
    #[error("invalid namespace {namespace:?}: {}", if namespace.is_empty() { "namespaces must not be empty".to_owned() } else { format!("namespace is {} bytes; the limit is {limit}", namespace.len()) })]
    InvalidNamespace {
        /// The namespace.
        namespace: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// Serialized metadata is larger than the limit.
    #[error("metadata of vector id=\"{id}\" is {len} bytes; the limit is {limit}")]
    MetadataTooLarge {
        /// The vector id.
        id: String,
        /// Serialized length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A metadata key breaks the key rules (non-empty, no `.` or `"`, not starting with `$`).
    #[error(
        "invalid metadata key {key:?} in vector id=\"{id}\": keys must be non-empty, contain no '.' or '\"' and not start with '$'"
    )]
    InvalidMetadataKey {
        /// The vector id.
        id: String,
        /// The key.
        key: String,
    },
    /// Too many vectors in one call.
    #[error("{count} vectors in one call; the limit is {limit}")]
    TooManyVectors {
        /// Vectors given.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The index is full.
    #[error("the index would hold {count} vectors; the limit is {limit}")]
    IndexFull {
        /// Vectors after the write.
        count: u64,
        /// The limit.
        limit: u64,
    },
    /// The index would have too many namespaces.
    #[error("the index would have {count} namespaces; the limit is {limit}")]
    TooManyNamespaces {
        /// Namespaces after the write.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The filter is not valid.
    #[error("VECTOR_QUERY_ERROR: invalid filter: {reason}")]
    InvalidFilter {
        /// What is wrong with it.
        reason: String,
    },
    /// The compact filter is too long.
    #[error("VECTOR_QUERY_ERROR: filter is {len} bytes as compact JSON; it must be under {limit}")]
    FilterTooLarge {
        /// Compact length in bytes.
        len: usize,
        /// The bound (exclusive).
        limit: usize,
    },
    /// The index already has the most metadata indexes allowed.
    #[error("the index already has {limit} metadata indexes; the limit is {limit}")]
    TooManyMetadataIndexes {
        /// The limit.
        limit: usize,
    },
    /// A metadata index on this property exists.
    #[error("a metadata index on {property:?} already exists")]
    MetadataIndexExists {
        /// The property.
        property: String,
    },
    /// No metadata index on this property.
    #[error("no metadata index on {property:?}")]
    MetadataIndexNotFound {
        /// The property.
        property: String,
    },
    /// A metadata index property name breaks the key rules.
    #[error("invalid metadata index property {property:?}: {reason}")]
    InvalidPropertyName {
        /// The property.
        property: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The list count is outside `1..=max`.
    #[error("invalid count {count}: list pages hold 1 to {max} ids")]
    InvalidListCount {
        /// The count given.
        count: usize,
        /// The largest allowed.
        max: usize,
    },
    /// The cursor was not produced by this index.
    #[error("invalid cursor: {reason}")]
    InvalidCursor {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The engine failed.
    #[error("Vectorize storage engine failed during {op}: {source}")]
    Engine {
        /// The operation that failed.
        op: &'static str,
        /// The engine's error.
        source: BoxError,
    },
    /// An earlier engine failure left the index in an unknown state; it refuses writes.
    #[error("Vectorize index refuses writes after an earlier storage failure: {reason}")]
    Poisoned {
        /// The earlier failure.
        reason: String,
    },
    /// The index was deleted or closed.
    #[error("Vectorize index is closed")]
    Closed,
}

impl VectorizeError {
    /// Wraps an engine error.
    pub fn engine(op: &'static str, source: impl Into<BoxError>) -> Self {
        VectorizeError::Engine {
            op,
            source: source.into(),
        }
    }
}

impl PlatformError for VectorizeError {
    fn kind(&self) -> ErrorKind {
        match self {
            VectorizeError::IndexNotFound { .. } | VectorizeError::MetadataIndexNotFound { .. } => {
                ErrorKind::NotFound
            }
            VectorizeError::IndexAlreadyExists { .. }
            | VectorizeError::MetadataIndexExists { .. } => ErrorKind::AlreadyExists,
            VectorizeError::InvalidIndexName { .. }
            | VectorizeError::InvalidDimensions { .. }
            | VectorizeError::QueryDimensionMismatch { .. }
            | VectorizeError::VectorDimensionMismatch { .. }
            | VectorizeError::NonFiniteValue { .. }
            | VectorizeError::TopKTooLarge { .. }
            | VectorizeError::TopKZero
            | VectorizeError::InvalidMetadataKey { .. }
            | VectorizeError::InvalidFilter { .. }
            | VectorizeError::InvalidPropertyName { .. }
            | VectorizeError::InvalidListCount { .. }
            | VectorizeError::InvalidCursor { .. }
            | VectorizeError::TooManyMetadataIndexes { .. } => ErrorKind::InvalidInput,
            VectorizeError::InvalidId { .. }
            | VectorizeError::InvalidNamespace { .. }
            | VectorizeError::MetadataTooLarge { .. }
            | VectorizeError::TooManyVectors { .. }
            | VectorizeError::IndexFull { .. }
            | VectorizeError::TooManyNamespaces { .. }
            | VectorizeError::FilterTooLarge { .. } => ErrorKind::TooLarge,
            VectorizeError::Engine { .. } | VectorizeError::Poisoned { .. } => ErrorKind::Internal,
            VectorizeError::Closed => ErrorKind::Unavailable,
        }
    }

    fn code(&self) -> Option<CloudflareCode> {
        match self {
            VectorizeError::QueryDimensionMismatch { .. } => Some(CloudflareCode::V4(40006)),
            VectorizeError::VectorDimensionMismatch { .. } => Some(CloudflareCode::V4(40012)),
            VectorizeError::TopKTooLarge { .. } => Some(CloudflareCode::V4(40025)),
            _ => None,
        }
    }

    fn http_status(&self) -> u16 {
        match self {
            // Vectorize answers bad input, oversized input included, with 400.
            e if matches!(e.kind(), ErrorKind::TooLarge) => 400,
            other => other.kind().http_status(),
        }
    }
}
