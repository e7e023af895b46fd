//! The Workers KV contract.
//!
//! A [`KvStore`] is one KV namespace as seen from one location. Keys are UTF-8 strings of at
//! most 512 bytes; values are bytes of at most 25 MiB; each key may carry JSON metadata (at
//! most 1024 bytes serialized) and an expiration in seconds since the UNIX epoch.
//!
//! Convenience methods (values as text or JSON) live in [`KvStoreExt`], implemented for every
//! store.

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{BoxError, ErrorKind, PlatformError};
use crate::stream::ByteStream;

/// Result alias for KV operations.
pub type KvResult<T> = Result<T, KvError>;

/// Options for reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// Seconds a read result may be served from the reading location's cache.
    /// `None` means the platform default (60 s); values under the minimum (30 s) are rejected.
    pub cache_ttl: Option<u64>,
}

impl GetOptions {
    /// Options with the given `cache_ttl`.
    pub fn cache_ttl(secs: u64) -> Self {
        Self {
            cache_ttl: Some(secs),
        }
    }
}

/// Options for writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PutOptions {
    /// Absolute expiration, seconds since the UNIX epoch; at least 60 s in the future.
    /// Default: none.
    pub expiration: Option<u64>,
    /// Relative expiration, seconds from now; at least 60. Takes precedence over
    /// `expiration` when both are given. Default: none.
    pub expiration_ttl: Option<u64>,
    /// Arbitrary JSON stored with the key, at most 1024 bytes serialized. Default: none.
    pub metadata: Option<Value>,
}

/// Options for [`KvStore::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only keys starting with this prefix. Pass the same prefix with every cursor.
    pub prefix: Option<String>,
    /// Page size, 1..=1000. Default: 1000.
    pub limit: Option<usize>,
    /// The cursor returned by the previous page.
    pub cursor: Option<String>,
}

/// A value read with its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct KvEntry {
    /// The stored bytes.
    pub value: Bytes,
    /// The stored metadata, `None` when none was stored.
    pub metadata: Option<Value>,
    /// Absolute expiration in seconds since the UNIX epoch, if any.
    pub expiration: Option<u64>,
}

/// A streamed value with its metadata.
pub struct KvStreamEntry {
    /// The value, in chunks.
    pub body: ByteStream,
    /// The value's length in bytes.
    pub len: u64,
    /// The stored metadata, `None` when none was stored.
    pub metadata: Option<Value>,
    /// Absolute expiration in seconds since the UNIX epoch, if any.
    pub expiration: Option<u64>,
}

impl std::fmt::Debug for KvStreamEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStreamEntry")
            .field("len", &self.len)
            .field("metadata", &self.metadata)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

/// One key in a list page.
#[derive(Debug, Clone, PartialEq)]
pub struct ListKey {
    /// The key.
    pub name: String,
    /// Absolute expiration in seconds since the UNIX epoch, present only if set.
    pub expiration: Option<u64>,
    /// Metadata, present only if stored.
    pub metadata: Option<Value>,
}

/// One page of [`KvStore::list`].
#[derive(Debug, Clone, PartialEq)]
pub struct ListResult {
    /// Keys in UTF-8 byte order.
    pub keys: Vec<ListKey>,
    /// `false` when more keys may follow, even if `keys` is empty.
    pub list_complete: bool,
    /// Pass this to the next call; present only when `list_complete` is `false`.
    pub cursor: Option<String>,
}

/// One Workers KV namespace as seen from one location.
///
/// # Contract
///
/// - Keys are non-empty UTF-8 of at most `limits.max_key_bytes` bytes and neither `.` nor
///   `..`; every operation validates its key before any I/O.
/// - A key whose expiration the clock has reached is absent for every read and for `list`.
/// - `put` and `delete` return only after the change is durable. Concurrent writes to one key:
///   last write wins.
/// - Reads may be served from the location's cache for up to `cache_ttl` seconds; a write is
///   visible at once in the location that made it.
/// - `list` returns keys in UTF-8 byte order; its cursor stays valid under concurrent writes.
///
/// # Errors
///
/// Every limit breach and bad input returns a [`KvError`] naming the problem and the limit;
/// nothing is written when a write fails.
#[async_trait]
pub trait KvStore: Send + Sync + 'static {
    /// The value of `key`, or `None` when absent or expired.
    async fn get(&self, key: &str, options: GetOptions) -> KvResult<Option<Bytes>>;

    /// The value of `key` with its metadata and expiration.
    async fn get_with_metadata(&self, key: &str, options: GetOptions) -> KvResult<Option<KvEntry>>;

    /// The value of `key` as a stream of chunks, for large values.
    async fn get_stream(&self, key: &str, options: GetOptions) -> KvResult<Option<KvStreamEntry>>;

    /// Up to 100 keys at once; the answer lists every requested key in request order, with
    /// `None` for those absent. The values together may not exceed the bulk response limit.
    async fn get_bulk(
        &self,
        keys: &[String],
        options: GetOptions,
    ) -> KvResult<Vec<(String, Option<KvEntry>)>>;

    /// Stores `value` under `key`.
    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> KvResult<()>;

    /// Stores a streamed value; a body over the value limit is rejected as soon as the limit
    /// is passed, without reading the rest.
    async fn put_stream(&self, key: &str, body: ByteStream, options: PutOptions) -> KvResult<()>;

    /// Removes `key`. Removing an absent key succeeds.
    async fn delete(&self, key: &str) -> KvResult<()>;

    /// One page of keys.
    async fn list(&self, options: ListOptions) -> KvResult<ListResult>;
}

/// Typed conveniences over any [`KvStore`].
#[async_trait]
pub trait KvStoreExt: KvStore {
    /// The value as text (invalid UTF-8 is replaced, as a `TextDecoder` would).
    async fn get_text(&self, key: &str) -> KvResult<Option<String>> {
        Ok(self
            .get(key, GetOptions::default())
            .await?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// The value parsed as JSON.
    async fn get_json<T: DeserializeOwned>(&self, key: &str) -> KvResult<Option<T>> {
        match self.get(key, GetOptions::default()).await? {
            None => Ok(None),
            Some(b) => {
                serde_json::from_slice(&b)
                    .map(Some)
                    .map_err(|source| KvError::InvalidJson {
                        key: key.to_owned(),
                        source,
                    })
            }
        }
    }

    /// Stores text.
    async fn put_text(&self, key: &str, value: &str) -> KvResult<()> {
        self.put(
            key,
            Bytes::copy_from_slice(value.as_bytes()),
            PutOptions::default(),
        )
        .await
    }

    /// Stores a value serialized as JSON.
    async fn put_json<T: Serialize + Sync>(&self, key: &str, value: &T) -> KvResult<()> {
        let bytes = serde_json::to_vec(value).map_err(|source| KvError::InvalidJson {
            key: key.to_owned(),
            source,
        })?;
        self.put(key, Bytes::from(bytes), PutOptions::default())
            .await
    }
}

impl<S: KvStore + ?Sized> KvStoreExt for S {}

/// KV's documented limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvLimits {
    /// Longest key in UTF-8 bytes. Cloudflare: 512.
    pub max_key_bytes: usize,
    /// Largest value. Cloudflare: 25 MiB (26,214,400 bytes).
    pub max_value_bytes: usize,
    /// Largest serialized metadata. Cloudflare: 1024 bytes.
    pub max_metadata_bytes: usize,
    /// Smallest `expiration_ttl`, and how far ahead an `expiration` must be. Cloudflare: 60 s.
    pub min_expiration_ttl_secs: u64,
    /// Smallest `cache_ttl`. Cloudflare: 30 s.
    pub min_cache_ttl_secs: u64,
    /// Default `cache_ttl`. Cloudflare: 60 s.
    pub default_cache_ttl_secs: u64,
    /// Largest list page. Cloudflare: 1000.
    pub max_list_limit: usize,
    /// Most keys in one bulk get. Cloudflare: 100.
    pub max_bulk_keys: usize,
    /// Largest bulk get response (sum of values). Cloudflare: 25 MB, taken as 26,214,400.
    pub max_bulk_bytes: usize,
    /// Minimum milliseconds between two writes to the same key; `None` disables the check.
    /// Cloudflare: 1 write per second per key (`Some(1000)`).
    pub same_key_write_interval_ms: Option<u64>,
}

impl KvLimits {
    /// Cloudflare's documented values.
    pub fn cloudflare() -> Self {
        Self {
            max_key_bytes: 512,
            max_value_bytes: 25 * 1024 * 1024,
            max_metadata_bytes: 1024,
            min_expiration_ttl_secs: 60,
            min_cache_ttl_secs: 30,
            default_cache_ttl_secs: 60,
            max_list_limit: 1000,
            max_bulk_keys: 100,
            max_bulk_bytes: 25 * 1024 * 1024,
            same_key_write_interval_ms: Some(1000),
        }
    }

    /// Relaxed limits: sizes and rates unbounded, TTL minimums zero. Keys must still be
    /// non-empty and not `.` or `..`, and list pages are still at most 1000 keys.
    pub fn unbounded() -> Self {
        Self {
            max_key_bytes: usize::MAX,
            max_value_bytes: usize::MAX,
            max_metadata_bytes: usize::MAX,
            min_expiration_ttl_secs: 0,
            min_cache_ttl_secs: 0,
            default_cache_ttl_secs: 60,
            max_list_limit: 1000,
            max_bulk_keys: usize::MAX,
            max_bulk_bytes: usize::MAX,
            same_key_write_interval_ms: None,
        }
    }
}

impl Default for KvLimits {
    fn default() -> Self {
        Self::cloudflare()
    }
}

/// Everything that can go wrong in a KV operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// The key is the empty string.
    #[error("Key name cannot be empty.")]
    EmptyKey,
    /// The key is `.` or `..`.
    #[error("\"{key}\" is not allowed as a key name.")]
    ReservedKey {
        /// The key.
        key: String,
    },
    /// The key is longer than the limit.
    #[error("UTF-8 encoded length of {len} exceeds key length limit of {limit}.")]
    KeyTooLong {
        /// Length in bytes.
        len: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The value is larger than the limit.
    #[error("Value length of {len} exceeds limit of {limit}.")]
    ValueTooLarge {
        /// Bytes received (at least; a stream is cut off at the limit).
        len: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The serialized metadata is larger than the limit.
    #[error("Metadata length of {len} exceeds limit of {limit}.")]
    MetadataTooLarge {
        /// Serialized length in bytes.
        len: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// `expiration_ttl` is zero or below the minimum.
    #[error(
        "Invalid expiration_ttl of {ttl}. {}",
        if *ttl == 0 { "Please specify integer greater than 0.".to_owned() }
        else { format!("Expiration TTL must be at least {min}.") }
    )]
    InvalidExpirationTtl {
        /// The TTL given, in seconds.
        ttl: u64,
        /// The minimum, in seconds.
        min: u64,
    },
    /// `expiration` is not in the future.
    #[error(
        "Invalid expiration of {expiration}. Please specify integer greater than the current number of seconds since the UNIX epoch."
    )]
    ExpirationInPast {
        /// The expiration given, seconds since the UNIX epoch.
        expiration: u64,
    },
    /// `expiration` is less than the minimum ahead of now.
    #[error(
        "Invalid expiration of {expiration}. Expiration times must be at least {min} seconds in the future."
    )]
    ExpirationTooSoon {
        /// The expiration given, seconds since the UNIX epoch.
        expiration: u64,
        /// The minimum distance, in seconds.
        min: u64,
    },
    /// `cache_ttl` is below the minimum.
    #[error("Invalid cache_ttl of {ttl}. Cache TTL must be at least {min}.")]
    InvalidCacheTtl {
        /// The TTL given.
        ttl: u64,
        /// The minimum.
        min: u64,
    },
    /// The list limit is outside `1..=max`.
    #[error(
        "Invalid key_count_limit of {limit}. Please specify an integer {}.",
        if *limit == 0 { "greater than 0".to_owned() } else { format!("no greater than {max}") }
    )]
    InvalidListLimit {
        /// The limit given.
        limit: usize,
        /// The largest allowed.
        max: usize,
    },
    /// The list prefix is longer than the key limit.
    #[error("UTF-8 encoded length of {len} exceeds key length limit of {limit}.")]
    PrefixTooLong {
        /// Length in bytes.
        len: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The cursor was not produced by this namespace for this prefix.
    #[error("Invalid cursor: {reason}")]
    InvalidCursor {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A bulk get asked for too many keys.
    #[error("You can request a maximum of {limit} keys; got {count}.")]
    TooManyKeys {
        /// Keys requested.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A bulk get's values together exceed the response limit.
    #[error("Bulk get response length of {len} exceeds limit of {limit}.")]
    BulkTooLarge {
        /// Bytes in the response so far.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The key was written less than the minimum interval ago.
    #[error("KV PUT failed: 429 Too Many Requests (key {key:?} was written less than 1 s ago)")]
    RateLimited {
        /// The key.
        key: String,
    },
    /// A value read as JSON is not valid JSON (or a value to store could not be serialized).
    #[error("value of key {key:?} is not valid JSON: {source}")]
    InvalidJson {
        /// The key.
        key: String,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// Reading a streamed body failed.
    #[error("reading the value stream failed: {source}")]
    Body {
        /// The stream's error.
        source: std::io::Error,
    },
    /// The engine failed.
    #[error("KV storage engine failed during {op}: {source}")]
    Engine {
        /// The operation that failed.
        op: &'static str,
        /// The engine's error.
        source: BoxError,
    },
    /// An earlier engine failure left the store in an unknown state; it refuses writes.
    #[error("KV store refuses writes after an earlier storage failure: {reason}")]
    Poisoned {
        /// The earlier failure.
        reason: String,
    },
    /// The store was closed.
    #[error("KV store is closed")]
    Closed,
}

impl KvError {
    /// Wraps an engine error.
    pub fn engine(op: &'static str, source: impl Into<BoxError>) -> Self {
        KvError::Engine {
            op,
            source: source.into(),
        }
    }
}

impl PlatformError for KvError {
    fn kind(&self) -> ErrorKind {
        match self {
            KvError::EmptyKey
            | KvError::ReservedKey { .. }
            | KvError::InvalidExpirationTtl { .. }
            | KvError::ExpirationInPast { .. }
            | KvError::ExpirationTooSoon { .. }
            | KvError::InvalidCacheTtl { .. }
            | KvError::InvalidListLimit { .. }
            | KvError::InvalidCursor { .. }
            | KvError::TooManyKeys { .. }
            | KvError::InvalidJson { .. }
            | KvError::Body { .. } => ErrorKind::InvalidInput,
            KvError::KeyTooLong { .. }
            | KvError::PrefixTooLong { .. }
            | KvError::ValueTooLarge { .. }
            | KvError::MetadataTooLarge { .. }
            | KvError::BulkTooLarge { .. } => ErrorKind::TooLarge,
            KvError::RateLimited { .. } => ErrorKind::RateLimited,
            KvError::Engine { .. } | KvError::Poisoned { .. } => ErrorKind::Internal,
            KvError::Closed => ErrorKind::Unavailable,
        }
    }

    fn http_status(&self) -> u16 {
        match self {
            KvError::KeyTooLong { .. } | KvError::PrefixTooLong { .. } => 414,
            other => other.kind().http_status(),
        }
    }
}

/// Checks a key against the rules every operation applies before any I/O.
pub fn validate_key(key: &str, limits: &KvLimits) -> KvResult<()> {
    if key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    if key == "." || key == ".." {
        return Err(KvError::ReservedKey {
            key: key.to_owned(),
        });
    }
    if key.len() > limits.max_key_bytes {
        return Err(KvError::KeyTooLong {
            len: key.len(),
            limit: limits.max_key_bytes,
        });
    }
    Ok(())
}
