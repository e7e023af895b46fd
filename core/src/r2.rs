//! The R2 contract.
//!
//! An [`R2Bucket`] is one bucket of strongly consistent object storage; [`R2Buckets`] creates,
//! lists and deletes buckets. Keys are UTF-8 strings of 1 to 1,024 bytes (any characters:
//! `a`, `a/`, `a/b` and `../x` are four distinct keys, never paths); bodies stream in chunks
//! ([`ByteStream`]) so that no object has to fit in memory.
//!
//! Everything a protocol front end needs to answer is here without HTTP: [`R2Object`] carries
//! `etag`, `http_etag`, `version`, `uploaded` (ms), checksums and the served range;
//! [`R2Objects`] carries `delimited_prefixes`; multipart uploads and their parts can be listed.
//! Errors carry R2's v4 codes and HTTP statuses (spec section 3.6) through [`PlatformError`](crate::PlatformError).
//!
//! Event notifications are delivered to an [`R2EventSink`] (a queue producer adapts to it),
//! and lifecycle rules ([`LifecycleRule`]) are bucket configuration applied by the clock.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::stream::ByteStream;

mod errors;
mod events;

pub use errors::{
    NO_SUCH_KEY, R2Error, validate_bucket_name, validate_custom_metadata, validate_key,
};
pub use events::{
    NotificationRule, QueueEventSink, R2Event, R2EventAction, R2EventSink, R2EventType, rfc3339_ms,
};

/// Result alias for R2 operations.
pub type R2Result<T> = Result<T, R2Error>;

/// An object's storage class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StorageClass {
    /// The default class.
    #[default]
    Standard,
    /// Cheaper storage with a 30-day minimum duration and retrieval fees (not modelled).
    InfrequentAccess,
}

impl StorageClass {
    /// The name R2 uses (`Standard`, `InfrequentAccess`).
    pub fn as_str(self) -> &'static str {
        match self {
            StorageClass::Standard => "Standard",
            StorageClass::InfrequentAccess => "InfrequentAccess",
        }
    }

    /// Parses R2's name of a class.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "Standard" => Some(StorageClass::Standard),
            "InfrequentAccess" => Some(StorageClass::InfrequentAccess),
            _ => None,
        }
    }
}

/// HTTP metadata stored with an object and echoed on reads (`R2HTTPMetadata`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpMetadata {
    /// `Content-Type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `Content-Language`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    /// `Content-Disposition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    /// `Content-Encoding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// `Cache-Control`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// `Expires`, as milliseconds since the UNIX epoch (`cacheExpiry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_expiry: Option<u64>,
}

/// Checksum algorithms R2 accepts on put.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumAlgorithm {
    /// MD5 (16 bytes).
    Md5,
    /// SHA-1 (20 bytes).
    Sha1,
    /// SHA-256 (32 bytes).
    Sha256,
    /// SHA-384 (48 bytes).
    Sha384,
    /// SHA-512 (64 bytes).
    Sha512,
}

impl ChecksumAlgorithm {
    /// The digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            ChecksumAlgorithm::Md5 => 16,
            ChecksumAlgorithm::Sha1 => 20,
            ChecksumAlgorithm::Sha256 => 32,
            ChecksumAlgorithm::Sha384 => 48,
            ChecksumAlgorithm::Sha512 => 64,
        }
    }

    /// The name used in R2's messages (`MD5`, `SHA-256`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Md5 => "MD5",
            ChecksumAlgorithm::Sha1 => "SHA-1",
            ChecksumAlgorithm::Sha256 => "SHA-256",
            ChecksumAlgorithm::Sha384 => "SHA-384",
            ChecksumAlgorithm::Sha512 => "SHA-512",
        }
    }
}

/// The checksums of an object (`R2Checksums`): binary digests. MD5 is present for every
/// single-part object; the others only when given on put.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct R2Checksums {
    /// MD5 digest.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_hex")]
    pub md5: Option<Vec<u8>>,
    /// SHA-1 digest.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_hex")]
    pub sha1: Option<Vec<u8>>,
    /// SHA-256 digest.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_hex")]
    pub sha256: Option<Vec<u8>>,
    /// SHA-384 digest.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_hex")]
    pub sha384: Option<Vec<u8>>,
    /// SHA-512 digest.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_hex")]
    pub sha512: Option<Vec<u8>>,
}

impl R2Checksums {
    /// The digest stored for `alg`, if any.
    pub fn get(&self, alg: ChecksumAlgorithm) -> Option<&[u8]> {
        match alg {
            ChecksumAlgorithm::Md5 => self.md5.as_deref(),
            ChecksumAlgorithm::Sha1 => self.sha1.as_deref(),
            ChecksumAlgorithm::Sha256 => self.sha256.as_deref(),
            ChecksumAlgorithm::Sha384 => self.sha384.as_deref(),
            ChecksumAlgorithm::Sha512 => self.sha512.as_deref(),
        }
    }

    /// Sets the digest for `alg`.
    pub fn set(&mut self, alg: ChecksumAlgorithm, digest: Vec<u8>) {
        let slot = match alg {
            ChecksumAlgorithm::Md5 => &mut self.md5,
            ChecksumAlgorithm::Sha1 => &mut self.sha1,
            ChecksumAlgorithm::Sha256 => &mut self.sha256,
            ChecksumAlgorithm::Sha384 => &mut self.sha384,
            ChecksumAlgorithm::Sha512 => &mut self.sha512,
        };
        *slot = Some(digest);
    }
}

/// Lower-case hex (de)serialization of optional digests.
mod opt_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => {
                let mut out = String::with_capacity(bytes.len() * 2);
                for b in bytes {
                    out.push_str(&format!("{b:02x}"));
                }
                s.serialize_some(&out)
            }
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        match text {
            None => Ok(None),
            Some(t) => {
                if t.len() % 2 != 0 || !t.is_ascii() {
                    return Err(serde::de::Error::custom("digest is not hex"));
                }
                (0..t.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&t[i..i + 2], 16))
                    .collect::<Result<Vec<u8>, _>>()
                    .map(Some)
                    .map_err(serde::de::Error::custom)
            }
        }
    }
}

/// One entity tag in a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtagMatcher {
    /// `*`: matches any existing object.
    Wildcard,
    /// A strong tag (compared exactly).
    Strong(String),
    /// A weak tag (`W/"..."`): only a weak comparison can match it.
    Weak(String),
}

impl EtagMatcher {
    /// Parses one entity tag as given by a caller: `*`, `W/"tag"`, `"tag"` or a bare `tag`.
    pub fn parse(text: &str) -> Self {
        let t = text.trim();
        if t == "*" {
            return EtagMatcher::Wildcard;
        }
        if let Some(rest) = t.strip_prefix("W/") {
            return EtagMatcher::Weak(rest.trim_matches('"').to_owned());
        }
        EtagMatcher::Strong(t.trim_matches('"').to_owned())
    }

    /// Parses a comma-separated list, as in an `If-Match` or `If-None-Match` header.
    pub fn parse_list(text: &str) -> Vec<Self> {
        text.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Self::parse)
            .collect()
    }
}

/// Preconditions of a read or write (`R2Conditional`), evaluated as RFC 7232 section 6
/// orders them and, on writes, atomically with the write.
///
/// With no object stored, a condition passes only if neither `etag_matches` nor
/// `uploaded_after` is set: so `etag_does_not_match: [*]` is create-if-absent, and
/// `etag_matches: [etag]` is compare-and-swap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditional {
    /// Passes when the object's etag matches one of these (strong comparison). Empty: unset.
    pub etag_matches: Vec<EtagMatcher>,
    /// Passes when the object's etag matches none of these (weak comparison). Empty: unset.
    pub etag_does_not_match: Vec<EtagMatcher>,
    /// Passes when the object was uploaded strictly before this instant (ms since the epoch),
    /// or when `etag_matches` is set and passed.
    pub uploaded_before: Option<u64>,
    /// Passes when the object was uploaded strictly after this instant (ms since the epoch),
    /// or when `etag_does_not_match` is set and passed.
    pub uploaded_after: Option<u64>,
    /// Compare instants at whole seconds (as conditions from HTTP headers are).
    pub seconds_granularity: bool,
}

impl Conditional {
    /// Passes only when no object is stored (create-if-absent).
    pub fn if_absent() -> Self {
        Self {
            etag_does_not_match: vec![EtagMatcher::Wildcard],
            ..Default::default()
        }
    }

    /// Passes only when the stored object's etag is `etag` (compare-and-swap).
    pub fn if_etag(etag: &str) -> Self {
        Self {
            etag_matches: vec![EtagMatcher::Strong(etag.to_owned())],
            ..Default::default()
        }
    }

    /// Passes when the stored object's etag is not `etag`.
    pub fn if_not_etag(etag: &str) -> Self {
        Self {
            etag_does_not_match: vec![EtagMatcher::Strong(etag.to_owned())],
            ..Default::default()
        }
    }

    /// Whether the condition holds for the stored object (`None` when absent), given its
    /// etag and upload time in ms.
    pub fn passes(&self, current: Option<(&str, u64)>) -> bool {
        let Some((etag, uploaded)) = current else {
            return self.etag_matches.is_empty() && self.uploaded_after.is_none();
        };
        let strong_hit = self.etag_matches.iter().any(|m| match m {
            EtagMatcher::Wildcard => true,
            EtagMatcher::Strong(t) => t == etag,
            EtagMatcher::Weak(_) => false,
        });
        let weak_hit = self.etag_does_not_match.iter().any(|m| match m {
            EtagMatcher::Wildcard => true,
            EtagMatcher::Strong(t) | EtagMatcher::Weak(t) => t == etag,
        });
        let if_match = self.etag_matches.is_empty() || strong_hit;
        let if_none_match = self.etag_does_not_match.is_empty() || !weak_hit;
        let cut = |ms: u64| {
            if self.seconds_granularity {
                ms / 1000 * 1000
            } else {
                ms
            }
        };
        let modified = cut(uploaded);
        let if_modified_since = match self.uploaded_after {
            None => true,
            Some(after) => {
                cut(after) < modified || (!self.etag_does_not_match.is_empty() && if_none_match)
            }
        };
        let if_unmodified_since = match self.uploaded_before {
            None => true,
            Some(before) => modified < cut(before) || (!self.etag_matches.is_empty() && if_match),
        };
        if_match && if_none_match && if_modified_since && if_unmodified_since
    }
}

/// A byte range to read (`R2Range`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum R2Range {
    /// From `offset` (inclusive), `length` bytes or to the end; a length past the end is
    /// clamped. `{length}` alone is `offset: 0`.
    Bounded {
        /// First byte.
        offset: u64,
        /// Bytes to read; `None` reads to the end.
        length: Option<u64>,
    },
    /// The last `n` bytes (clamped to the object's size).
    Suffix(u64),
}

impl R2Range {
    /// Parses an HTTP `Range` header value (`bytes=0-4`, `bytes=5-`, `bytes=-6`). Returns
    /// `None` for anything R2 would ignore (invalid syntax, several ranges), meaning "the
    /// whole object".
    pub fn parse_header(value: &str) -> Option<Self> {
        let spec = value.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (start, end) = spec.split_once('-')?;
        let (start, end) = (start.trim(), end.trim());
        if start.is_empty() {
            return end.parse().ok().map(R2Range::Suffix);
        }
        let offset: u64 = start.parse().ok()?;
        if end.is_empty() {
            return Some(R2Range::Bounded {
                offset,
                length: None,
            });
        }
        let last: u64 = end.parse().ok()?;
        if last < offset {
            return None;
        }
        Some(R2Range::Bounded {
            offset,
            length: Some(last - offset + 1),
        })
    }

    /// Resolves the range against an object of `size` bytes: `(offset, length)` served, or
    /// [`R2Error::InvalidRange`] when it cannot be satisfied.
    pub fn resolve(self, size: u64) -> R2Result<(u64, u64)> {
        match self {
            R2Range::Suffix(n) => {
                if n == 0 {
                    return Err(R2Error::InvalidRange {
                        reason: "suffix must be positive".into(),
                    });
                }
                let len = n.min(size);
                Ok((size - len, len))
            }
            R2Range::Bounded { offset, length } => {
                if offset > size {
                    return Err(R2Error::InvalidRange {
                        reason: format!("offset {offset} is past the end ({size} bytes)"),
                    });
                }
                match length {
                    Some(0) => Err(R2Error::InvalidRange {
                        reason: "length must be positive".into(),
                    }),
                    Some(l) => Ok((offset, l.min(size - offset))),
                    None => Ok((offset, size - offset)),
                }
            }
        }
    }
}

/// The range a read served: `offset` and `length` in bytes, also for suffix requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedRange {
    /// First byte served.
    pub offset: u64,
    /// Bytes served.
    pub length: u64,
}

/// A body to store: bytes already in memory or a stream of chunks.
pub enum R2Body {
    /// The whole body.
    Bytes(Bytes),
    /// A stream; read to its end, in bounded memory.
    Stream(ByteStream),
}

impl std::fmt::Debug for R2Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            R2Body::Bytes(b) => write!(f, "R2Body::Bytes({} bytes)", b.len()),
            R2Body::Stream(_) => f.write_str("R2Body::Stream(..)"),
        }
    }
}

impl From<Bytes> for R2Body {
    fn from(b: Bytes) -> Self {
        R2Body::Bytes(b)
    }
}

impl From<Vec<u8>> for R2Body {
    fn from(b: Vec<u8>) -> Self {
        R2Body::Bytes(Bytes::from(b))
    }
}

impl From<&'static str> for R2Body {
    fn from(s: &'static str) -> Self {
        R2Body::Bytes(Bytes::from_static(s.as_bytes()))
    }
}

impl From<String> for R2Body {
    fn from(s: String) -> Self {
        R2Body::Bytes(Bytes::from(s))
    }
}

impl From<ByteStream> for R2Body {
    fn from(s: ByteStream) -> Self {
        R2Body::Stream(s)
    }
}

/// Options of [`R2Bucket::put`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// HTTP metadata to store. Default: none.
    pub http_metadata: HttpMetadata,
    /// Custom metadata; keys plus values at most 8,192 bytes in total. Default: none.
    pub custom_metadata: BTreeMap<String, String>,
    /// Expected MD5 digest (16 bytes); a mismatch is [`R2Error::BadDigest`].
    pub md5: Option<Vec<u8>>,
    /// Expected SHA-1 digest (20 bytes).
    pub sha1: Option<Vec<u8>>,
    /// Expected SHA-256 digest (32 bytes).
    pub sha256: Option<Vec<u8>>,
    /// Expected SHA-384 digest (48 bytes).
    pub sha384: Option<Vec<u8>>,
    /// Expected SHA-512 digest (64 bytes).
    pub sha512: Option<Vec<u8>>,
    /// Storage class. Default: the bucket's default (Standard).
    pub storage_class: Option<StorageClass>,
    /// Store only if this holds (evaluated atomically with the write). Default: always.
    pub only_if: Option<Conditional>,
}

impl PutOptions {
    /// The one requested checksum, or an error when more than one is given or a digest has
    /// the wrong length.
    pub fn requested_checksum(&self) -> R2Result<Option<(ChecksumAlgorithm, &[u8])>> {
        let given: Vec<(ChecksumAlgorithm, &[u8])> = [
            (ChecksumAlgorithm::Md5, self.md5.as_deref()),
            (ChecksumAlgorithm::Sha1, self.sha1.as_deref()),
            (ChecksumAlgorithm::Sha256, self.sha256.as_deref()),
            (ChecksumAlgorithm::Sha384, self.sha384.as_deref()),
            (ChecksumAlgorithm::Sha512, self.sha512.as_deref()),
        ]
        .into_iter()
        .filter_map(|(a, d)| d.map(|d| (a, d)))
        .collect();
        if given.len() > 1 {
            return Err(R2Error::MultipleChecksums);
        }
        match given.first() {
            None => Ok(None),
            Some(&(alg, digest)) => {
                if digest.len() != alg.digest_len() {
                    return Err(R2Error::InvalidDigest {
                        algorithm: alg.name(),
                        len: digest.len(),
                        expected: alg.digest_len(),
                    });
                }
                Ok(Some((alg, digest)))
            }
        }
    }
}

/// Options of [`R2Bucket::get`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// Read only this range. Default: the whole object.
    pub range: Option<R2Range>,
    /// Return the body only if this holds; otherwise the metadata alone. Default: always.
    pub only_if: Option<Conditional>,
}

/// What [`R2Bucket::list`] includes with each object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListInclude {
    /// Include HTTP metadata.
    pub http_metadata: bool,
    /// Include custom metadata.
    pub custom_metadata: bool,
}

/// Options of [`R2Bucket::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Page size, 1..=1000. Default: 1000.
    pub limit: Option<usize>,
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// The cursor of the previous page (pass the same prefix and delimiter).
    pub cursor: Option<String>,
    /// Roll keys that contain this after the prefix up into `delimited_prefixes`.
    pub delimiter: Option<String>,
    /// Only keys strictly after this one.
    pub start_after: Option<String>,
    /// Metadata to include with each object. Default: none.
    pub include: ListInclude,
}

/// An object's metadata (`R2Object`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct R2Object {
    /// The key.
    pub key: String,
    /// A random string unique to this upload of the key.
    pub version: String,
    /// Size in bytes (of the whole object, also for ranged reads).
    pub size: u64,
    /// The etag: hex MD5 of the body, or for multipart objects the hex MD5 of the parts'
    /// binary MD5s followed by `-<parts>`.
    pub etag: String,
    /// The etag in double quotes, for an HTTP `ETag` header.
    pub http_etag: String,
    /// Upload time, ms since the UNIX epoch.
    pub uploaded: u64,
    /// HTTP metadata (empty in list results unless included).
    pub http_metadata: HttpMetadata,
    /// Custom metadata (empty in list results unless included).
    pub custom_metadata: BTreeMap<String, String>,
    /// The range served, on ranged reads.
    pub range: Option<ServedRange>,
    /// Checksums.
    pub checksums: R2Checksums,
    /// Storage class.
    pub storage_class: StorageClass,
}

/// An object with its body (`R2ObjectBody`).
pub struct R2ObjectBody {
    /// The metadata.
    pub object: R2Object,
    /// The body (or the requested range of it), in chunks.
    pub body: ByteStream,
}

impl std::fmt::Debug for R2ObjectBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("R2ObjectBody")
            .field("object", &self.object)
            .finish_non_exhaustive()
    }
}

impl R2ObjectBody {
    /// Reads the whole body into memory.
    ///
    /// # Errors
    ///
    /// [`R2Error::Body`] when reading a chunk fails.
    pub async fn bytes(mut self) -> R2Result<Bytes> {
        let mut out = BytesMut::new();
        while let Some(chunk) = self.body.next().await {
            out.extend_from_slice(&chunk.map_err(|source| R2Error::Body { source })?);
        }
        Ok(out.freeze())
    }

    /// Reads the whole body as text (invalid UTF-8 replaced).
    pub async fn text(self) -> R2Result<String> {
        Ok(String::from_utf8_lossy(&self.bytes().await?).into_owned())
    }
}

/// What [`R2Bucket::get`] found.
#[derive(Debug)]
pub enum R2GetResult {
    /// The object (or range) with its body.
    Body(R2ObjectBody),
    /// `only_if` did not hold: the object's metadata, without a body.
    PreconditionFailed(R2Object),
}

impl R2GetResult {
    /// The metadata, whichever the outcome.
    pub fn object(&self) -> &R2Object {
        match self {
            R2GetResult::Body(b) => &b.object,
            R2GetResult::PreconditionFailed(o) => o,
        }
    }

    /// The body, if the condition held.
    pub fn into_body(self) -> Option<R2ObjectBody> {
        match self {
            R2GetResult::Body(b) => Some(b),
            R2GetResult::PreconditionFailed(_) => None,
        }
    }
}

/// One page of [`R2Bucket::list`] (`R2Objects`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct R2Objects {
    /// Objects in UTF-8 byte order of their keys.
    pub objects: Vec<R2Object>,
    /// `true` when more may follow (even if this page is short).
    pub truncated: bool,
    /// Pass this as `cursor` for the next page; present only when `truncated`.
    pub cursor: Option<String>,
    /// Rolled-up prefixes (the list prefix, then up to and including the delimiter), sorted.
    pub delimited_prefixes: Vec<String>,
}

/// Options of [`R2Bucket::create_multipart_upload`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MultipartOptions {
    /// HTTP metadata of the completed object.
    pub http_metadata: HttpMetadata,
    /// Custom metadata of the completed object.
    pub custom_metadata: BTreeMap<String, String>,
    /// Storage class of the completed object. Default: the bucket's default.
    pub storage_class: Option<StorageClass>,
}

/// A multipart upload in progress (`R2MultipartUpload`). Holding one does not guarantee the
/// upload still exists: it may have been completed, aborted or expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct R2MultipartUpload {
    /// The key the object will have.
    pub key: String,
    /// The upload's id.
    pub upload_id: String,
}

impl R2MultipartUpload {
    /// `resumeMultipartUpload`: a handle for an existing upload, without checking that it
    /// exists (R2 does not either).
    pub fn resume(key: &str, upload_id: &str) -> Self {
        Self {
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
        }
    }
}

/// A stored part, as [`R2Bucket::upload_part`] reports it and `complete` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct R2UploadedPart {
    /// The part number, 1..=10000.
    pub part_number: u32,
    /// Hex MD5 of the part.
    pub etag: String,
}

/// A part of an upload in progress, as [`R2Bucket::list_parts`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct R2PartInfo {
    /// The part number.
    pub part_number: u32,
    /// Hex MD5 of the part.
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
    /// Upload time of this part, ms since the epoch.
    pub uploaded: u64,
}

/// An upload in progress, as [`R2Bucket::list_multipart_uploads`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct R2UploadInfo {
    /// The key.
    pub key: String,
    /// The upload id.
    pub upload_id: String,
    /// Creation time, ms since the epoch.
    pub initiated: u64,
    /// Storage class the object will have.
    pub storage_class: StorageClass,
}

/// Options of [`R2Bucket::list_multipart_uploads`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListUploadsOptions {
    /// Only uploads whose key starts with this.
    pub prefix: Option<String>,
    /// Page size, 1..=1000. Default: 1000.
    pub limit: Option<usize>,
    /// The cursor of the previous page.
    pub cursor: Option<String>,
}

/// One page of uploads in progress, ordered by key then upload id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct R2Uploads {
    /// The uploads.
    pub uploads: Vec<R2UploadInfo>,
    /// `true` when more may follow.
    pub truncated: bool,
    /// Pass this as `cursor` for the next page; present only when `truncated`.
    pub cursor: Option<String>,
}

/// A lifecycle rule: what happens to objects under a prefix as they age (by the clock).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleRule {
    /// A name for the rule.
    pub id: String,
    /// Objects whose key starts with this (empty: every object).
    #[serde(default)]
    pub prefix: String,
    /// Delete objects this many days after upload.
    #[serde(default)]
    pub expire_after_days: Option<u32>,
    /// Move Standard objects to InfrequentAccess this many days after upload.
    #[serde(default)]
    pub transition_to_infrequent_access_after_days: Option<u32>,
    /// Abort multipart uploads under the prefix this many days after they started (the
    /// bucket's default, 7 days, applies to every upload regardless).
    #[serde(default)]
    pub abort_multipart_after_days: Option<u32>,
}

/// One R2 bucket.
///
/// # Contract
///
/// - Strongly consistent: once a write returns `Ok`, every read, head and list sees it. A
///   write returns only after its data and index entry are durable.
/// - Readers see an object whole, old or new, never a mix; a crash never leaves a partial
///   object.
/// - `only_if` on put is evaluated atomically with the write: of two racing conditional puts
///   at most one whose condition depends on the other can win.
/// - Keys are validated (1..=1,024 bytes) and metadata measured before any I/O.
/// - Bodies are read and written in bounded memory whatever their size.
///
/// # Errors
///
/// [`R2Error`], with R2's v4 code ([`PlatformError::code`](crate::PlatformError::code)) and HTTP status.
#[async_trait]
pub trait R2Bucket: Send + Sync + 'static {
    /// The bucket's name.
    fn name(&self) -> &str;

    /// The object's metadata, `None` when absent.
    async fn head(&self, key: &str) -> R2Result<Option<R2Object>>;

    /// The object with its body (or a range of it). `None` when absent;
    /// [`R2GetResult::PreconditionFailed`] when `only_if` does not hold.
    async fn get(&self, key: &str, options: GetOptions) -> R2Result<Option<R2GetResult>>;

    /// Stores an object; `None` (and nothing stored) when `only_if` does not hold.
    async fn put(&self, key: &str, body: R2Body, options: PutOptions)
    -> R2Result<Option<R2Object>>;

    /// Deletes up to 1,000 keys; absent keys are not an error.
    async fn delete(&self, keys: &[String]) -> R2Result<()>;

    /// One page of objects.
    async fn list(&self, options: ListOptions) -> R2Result<R2Objects>;

    /// Starts a multipart upload.
    async fn create_multipart_upload(
        &self,
        key: &str,
        options: MultipartOptions,
    ) -> R2Result<R2MultipartUpload>;

    /// Stores one part (replacing an earlier part with the same number).
    async fn upload_part(
        &self,
        upload: &R2MultipartUpload,
        part_number: u32,
        body: R2Body,
    ) -> R2Result<R2UploadedPart>;

    /// Completes an upload from the listed parts (linked, not copied) and returns the object.
    async fn complete_multipart_upload(
        &self,
        upload: &R2MultipartUpload,
        parts: &[R2UploadedPart],
    ) -> R2Result<R2Object>;

    /// Aborts an upload and discards its parts.
    async fn abort_multipart_upload(&self, upload: &R2MultipartUpload) -> R2Result<()>;

    /// One page of uploads in progress.
    async fn list_multipart_uploads(&self, options: ListUploadsOptions) -> R2Result<R2Uploads>;

    /// The parts stored so far for an upload, by part number.
    async fn list_parts(&self, upload: &R2MultipartUpload) -> R2Result<Vec<R2PartInfo>>;

    /// The bucket's lifecycle rules.
    async fn lifecycle_rules(&self) -> R2Result<Vec<LifecycleRule>>;

    /// Replaces the bucket's lifecycle rules (stored durably).
    async fn set_lifecycle_rules(&self, rules: Vec<LifecycleRule>) -> R2Result<()>;

    /// Replaces the bucket's event notification rules.
    async fn set_event_notifications(&self, rules: Vec<NotificationRule>) -> R2Result<()>;
}

/// Convenience methods over any [`R2Bucket`].
#[async_trait]
pub trait R2BucketExt: R2Bucket {
    /// Stores `body` with default options.
    async fn put_bytes(&self, key: &str, body: Bytes) -> R2Result<R2Object> {
        self.put(key, R2Body::Bytes(body), PutOptions::default())
            .await?
            .ok_or(R2Error::PreconditionFailed)
    }

    /// The whole body of `key`, `None` when absent.
    async fn get_bytes(&self, key: &str) -> R2Result<Option<Bytes>> {
        match self.get(key, GetOptions::default()).await? {
            None => Ok(None),
            Some(r) => match r.into_body() {
                Some(b) => Ok(Some(b.bytes().await?)),
                None => Err(R2Error::PreconditionFailed),
            },
        }
    }

    /// Deletes one key.
    async fn delete_one(&self, key: &str) -> R2Result<()> {
        self.delete(&[key.to_owned()]).await
    }

    /// Copies `source` to `destination` within the bucket (S3's CopyObject with the `COPY`
    /// metadata directive): the body is streamed, and the HTTP metadata, custom metadata and
    /// storage class are kept. The copy is a new object with its own version and upload time.
    ///
    /// # Errors
    ///
    /// [`R2Error::NoSuchKey`] when `source` does not exist.
    async fn copy_object(&self, source: &str, destination: &str) -> R2Result<R2Object> {
        let found = self
            .get(source, GetOptions::default())
            .await?
            .and_then(R2GetResult::into_body)
            .ok_or_else(|| R2Error::NoSuchKey {
                key: source.to_owned(),
            })?;
        let options = PutOptions {
            http_metadata: found.object.http_metadata.clone(),
            custom_metadata: found.object.custom_metadata.clone(),
            storage_class: Some(found.object.storage_class),
            ..Default::default()
        };
        self.put(destination, R2Body::Stream(found.body), options)
            .await?
            .ok_or(R2Error::PreconditionFailed)
    }
}

impl<B: R2Bucket + ?Sized> R2BucketExt for B {}

/// A bucket as [`R2Buckets::list_buckets`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketInfo {
    /// The name.
    pub name: String,
    /// Creation time, ms since the epoch.
    pub creation_date: u64,
}

/// Bucket management.
///
/// # Contract
///
/// Names are 3 to 63 characters of lowercase letters, digits and hyphens, starting and
/// ending with a letter or digit. A bucket is deleted only when it holds no objects.
#[async_trait]
pub trait R2Buckets: Send + Sync + 'static {
    /// Creates a bucket. [`R2Error::BucketAlreadyExists`] if the name is taken.
    async fn create_bucket(&self, name: &str) -> R2Result<BucketInfo>;

    /// Every bucket, by name.
    async fn list_buckets(&self) -> R2Result<Vec<BucketInfo>>;

    /// Deletes an empty bucket. [`R2Error::BucketNotEmpty`] if it holds objects.
    async fn delete_bucket(&self, name: &str) -> R2Result<()>;

    /// A handle to an existing bucket. [`R2Error::NoSuchBucket`] if there is none.
    async fn bucket(&self, name: &str) -> R2Result<Arc<dyn R2Bucket>>;
}

/// R2's documented limits.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct R2Limits {
    /// Longest key in UTF-8 bytes. Cloudflare: 1,024.
    pub max_key_bytes: usize,
    /// Largest custom metadata (keys plus values, bytes). Cloudflare: 8,192.
    pub max_custom_metadata_bytes: usize,
    /// Largest single-part put and largest part. Cloudflare: 5 GiB - 5 MiB.
    pub max_put_bytes: u64,
    /// Largest object. Cloudflare: 5 TiB - 5 GiB.
    pub max_object_bytes: u64,
    /// Smallest non-final part. Cloudflare: 5 MiB.
    pub min_part_bytes: u64,
    /// Most parts per upload (and largest part number). Cloudflare: 10,000.
    pub max_parts: u32,
    /// Most keys per delete call. Cloudflare: 1,000.
    pub max_delete_keys: usize,
    /// Largest list page. Cloudflare: 1,000.
    pub max_list_limit: usize,
    /// Days after which an uncompleted multipart upload is aborted. Cloudflare: 7.
    pub multipart_expiry_days: u32,
}

impl R2Limits {
    /// Cloudflare's documented values.
    pub fn cloudflare() -> Self {
        Self {
            max_key_bytes: 1024,
            max_custom_metadata_bytes: 8192,
            max_put_bytes: 5 * GIB - 5 * MIB,
            max_object_bytes: 5 * 1024 * GIB - 5 * GIB,
            min_part_bytes: 5 * MIB,
            max_parts: 10_000,
            max_delete_keys: 1000,
            max_list_limit: 1000,
            multipart_expiry_days: 7,
        }
    }

    /// Relaxed limits: sizes unbounded and no minimum part size. Keys must still be
    /// non-empty, parts are still numbered 1..=10000, pages are still at most 1,000 and
    /// uploads still expire after 7 days.
    pub fn unbounded() -> Self {
        Self {
            max_key_bytes: usize::MAX,
            max_custom_metadata_bytes: usize::MAX,
            max_put_bytes: u64::MAX,
            max_object_bytes: u64::MAX,
            min_part_bytes: 0,
            max_parts: 10_000,
            max_delete_keys: usize::MAX,
            max_list_limit: 1000,
            multipart_expiry_days: 7,
        }
    }
}

impl Default for R2Limits {
    fn default() -> Self {
        Self::cloudflare()
    }
}

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_object_passes_only_without_etag_matches_and_uploaded_after() {
        assert!(Conditional::if_absent().passes(None));
        assert!(!Conditional::if_etag("x").passes(None));
        assert!(Conditional::if_not_etag("x").passes(None));
        let after = Conditional {
            uploaded_after: Some(5),
            ..Default::default()
        };
        assert!(!after.passes(None));
    }

    #[test]
    fn wildcard_does_not_match_fails_when_an_object_exists() {
        assert!(!Conditional::if_absent().passes(Some(("e", 1))));
        assert!(Conditional::if_etag("e").passes(Some(("e", 1))));
        assert!(!Conditional::if_etag("f").passes(Some(("e", 1))));
    }

    #[test]
    fn seconds_granularity_truncates_both_instants() {
        let c = Conditional {
            uploaded_after: Some(10_999),
            seconds_granularity: true,
            ..Default::default()
        };
        assert!(!c.passes(Some(("e", 10_500))));
        assert!(c.passes(Some(("e", 11_000))));
    }

    #[test]
    fn range_header_parses_the_three_forms_and_ignores_lists() {
        assert_eq!(
            R2Range::parse_header("bytes=0-4"),
            Some(R2Range::Bounded {
                offset: 0,
                length: Some(5)
            })
        );
        assert_eq!(R2Range::parse_header("bytes=-6"), Some(R2Range::Suffix(6)));
        assert_eq!(
            R2Range::parse_header("bytes=5-"),
            Some(R2Range::Bounded {
                offset: 5,
                length: None
            })
        );
        assert_eq!(R2Range::parse_header("bytes=0-1,3-4"), None);
        assert_eq!(R2Range::parse_header("items=0-1"), None);
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
    }
}
