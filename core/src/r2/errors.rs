//! R2's errors, with its v4 codes and HTTP statuses, and the checks every operation applies
//! before any I/O.

use std::collections::BTreeMap;

use super::{R2Limits, R2Result};
use crate::error::{BoxError, CloudflareCode, ErrorKind, PlatformError};

/// Everything that can go wrong in an R2 operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum R2Error {
    /// The key does not exist, where an operation needs it to (the binding's `get` and
    /// `head` answer `None` instead).
    #[error("The specified key does not exist: {key}")]
    NoSuchKey {
        /// The key.
        key: String,
    },
    /// The key is empty or too long.
    #[error("The specified object name is not valid: {reason}")]
    InvalidObjectName {
        /// What is wrong (`key is 1025 bytes; the limit is 1024`).
        reason: String,
    },
    /// Custom metadata is too large.
    #[error(
        "Your metadata headers exceed the maximum allowed metadata size: custom metadata is {len} bytes; the limit is {limit}"
    )]
    MetadataTooLarge {
        /// Keys plus values, bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The body is larger than allowed.
    #[error(
        "Your proposed upload exceeds the maximum allowed object size: {len} bytes; the limit is {limit}"
    )]
    EntityTooLarge {
        /// Bytes received (at least: a stream is cut off past the limit).
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// A non-final part is smaller than the minimum.
    #[error(
        "Your proposed upload is smaller than the minimum allowed object size: part {part_number} is {len} bytes; every part but the last must be at least {min}"
    )]
    EntityTooSmall {
        /// The part.
        part_number: u32,
        /// Its size.
        len: u64,
        /// The minimum.
        min: u64,
    },
    /// A completion names a part that was not uploaded, or with another etag.
    #[error("One or more of the specified parts could not be found: part {part_number} {reason}")]
    InvalidPart {
        /// The part.
        part_number: u32,
        /// What is wrong.
        reason: String,
    },
    /// Non-final parts differ in size, or the last part is larger than the others.
    #[error(
        "All non-trailing parts must have the same size: part {part_number} is {len} bytes, part 1 is {first}"
    )]
    PartSizeMismatch {
        /// The offending part.
        part_number: u32,
        /// Its size.
        len: u64,
        /// The size of the first part.
        first: u64,
    },
    /// A part number outside 1..=max, or more parts than allowed.
    #[error("Part number {part_number} is invalid; part numbers run from 1 to {max}")]
    InvalidPartNumber {
        /// The number given.
        part_number: u32,
        /// The largest allowed.
        max: u32,
    },
    /// The upload does not exist (never created, completed, aborted or expired).
    #[error("The specified multipart upload does not exist: {upload_id}")]
    NoSuchUpload {
        /// The id given.
        upload_id: String,
    },
    /// A checksum did not match the body.
    #[error(
        "The {algorithm} checksum you specified did not match what we received. You provided a {algorithm} checksum with value: {provided}. Actual {algorithm} was: {actual}"
    )]
    BadDigest {
        /// `MD5`, `SHA-256`, ...
        algorithm: &'static str,
        /// Hex digest given.
        provided: String,
        /// Hex digest of the body.
        actual: String,
    },
    /// A checksum has the wrong length.
    #[error(
        "The {algorithm} checksum you specified is not valid: {len} bytes; it must be {expected}"
    )]
    InvalidDigest {
        /// The algorithm.
        algorithm: &'static str,
        /// Bytes given.
        len: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// More than one checksum given.
    #[error("You cannot specify multiple hashing algorithms.")]
    MultipleChecksums,
    /// The range cannot be satisfied.
    #[error("The requested range is not satisfiable: {reason}")]
    InvalidRange {
        /// Why.
        reason: String,
    },
    /// A precondition failed where R2 reports it as an error (over HTTP; the binding
    /// returns `None` or a bodiless object instead).
    #[error("At least one of the pre-conditions you specified did not hold")]
    PreconditionFailed,
    /// A list limit outside 1..=max.
    #[error("MaxKeys params must be positive integer <= {max}; got {limit}")]
    InvalidMaxKeys {
        /// The limit given.
        limit: usize,
        /// The largest allowed.
        max: usize,
    },
    /// Too many keys in one delete.
    #[error("delete takes at most {limit} keys; got {count}")]
    TooManyKeys {
        /// Keys given.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A cursor this bucket did not produce.
    #[error("Invalid cursor: {reason}")]
    InvalidCursor {
        /// What is wrong.
        reason: &'static str,
    },
    /// Another bad argument.
    #[error("Invalid argument: {reason}")]
    InvalidArgument {
        /// What is wrong.
        reason: String,
    },
    /// The bucket name breaks the naming rules.
    #[error(
        "The specified bucket name is not valid: {name:?}; names are 3-63 lowercase letters, digits and hyphens, starting and ending with a letter or digit"
    )]
    InvalidBucketName {
        /// The name.
        name: String,
    },
    /// The bucket does not exist.
    #[error("The specified bucket does not exist: {name}")]
    NoSuchBucket {
        /// The name.
        name: String,
    },
    /// The bucket exists already.
    #[error("The bucket you tried to create already exists: {name}")]
    BucketAlreadyExists {
        /// The name.
        name: String,
    },
    /// The bucket holds objects.
    #[error("The bucket you tried to delete is not empty: {name}")]
    BucketNotEmpty {
        /// The name.
        name: String,
    },
    /// Reading the body stream failed.
    #[error("reading the body stream failed: {source}")]
    Body {
        /// The stream's error.
        source: std::io::Error,
    },
    /// The engine (index or blob files) failed.
    #[error("R2 storage failed during {op}: {source}")]
    Engine {
        /// The operation that failed.
        op: &'static str,
        /// The engine's error.
        source: BoxError,
    },
    /// The store was closed.
    #[error("R2 bucket is closed")]
    Closed,
}

impl R2Error {
    /// Wraps an engine error.
    pub fn engine(op: &'static str, source: impl Into<BoxError>) -> Self {
        R2Error::Engine {
            op,
            source: source.into(),
        }
    }

    /// R2's v4 code for this error.
    pub fn v4_code(&self) -> u32 {
        match self {
            R2Error::NoSuchKey { .. } => NO_SUCH_KEY,
            R2Error::InvalidObjectName { .. } => 10020,
            R2Error::MetadataTooLarge { .. } => 10012,
            R2Error::EntityTooLarge { .. } => 100100,
            R2Error::EntityTooSmall { .. } => 10011,
            R2Error::InvalidPart { .. } => 10025,
            R2Error::PartSizeMismatch { .. } => 10048,
            R2Error::InvalidPartNumber { .. } => 10029,
            R2Error::NoSuchUpload { .. } => 10024,
            R2Error::BadDigest { .. } => 10037,
            R2Error::InvalidDigest { .. } => 10014,
            R2Error::MultipleChecksums => 10029,
            R2Error::InvalidRange { .. } => 10039,
            R2Error::PreconditionFailed => 10031,
            R2Error::InvalidMaxKeys { .. } => 10022,
            R2Error::TooManyKeys { .. } => 10029,
            R2Error::InvalidCursor { .. } => 10029,
            R2Error::InvalidArgument { .. } => 10029,
            R2Error::InvalidBucketName { .. } => 10005,
            R2Error::NoSuchBucket { .. } => 10006,
            R2Error::BucketAlreadyExists { .. } => 10073,
            R2Error::BucketNotEmpty { .. } => 10008,
            R2Error::Body { .. } => 10054,
            R2Error::Engine { .. } => 10001,
            R2Error::Closed => 10043,
        }
    }
}

impl PlatformError for R2Error {
    fn kind(&self) -> ErrorKind {
        match self {
            R2Error::InvalidObjectName { .. }
            | R2Error::EntityTooSmall { .. }
            | R2Error::InvalidPart { .. }
            | R2Error::PartSizeMismatch { .. }
            | R2Error::InvalidPartNumber { .. }
            | R2Error::BadDigest { .. }
            | R2Error::InvalidDigest { .. }
            | R2Error::MultipleChecksums
            | R2Error::InvalidRange { .. }
            | R2Error::InvalidMaxKeys { .. }
            | R2Error::TooManyKeys { .. }
            | R2Error::InvalidCursor { .. }
            | R2Error::InvalidArgument { .. }
            | R2Error::InvalidBucketName { .. }
            | R2Error::Body { .. } => ErrorKind::InvalidInput,
            R2Error::MetadataTooLarge { .. } | R2Error::EntityTooLarge { .. } => {
                ErrorKind::TooLarge
            }
            R2Error::NoSuchKey { .. }
            | R2Error::NoSuchUpload { .. }
            | R2Error::NoSuchBucket { .. } => ErrorKind::NotFound,
            R2Error::PreconditionFailed => ErrorKind::PreconditionFailed,
            R2Error::BucketAlreadyExists { .. } => ErrorKind::AlreadyExists,
            R2Error::BucketNotEmpty { .. } => ErrorKind::Conflict,
            R2Error::Engine { .. } => ErrorKind::Internal,
            R2Error::Closed => ErrorKind::Unavailable,
        }
    }

    fn code(&self) -> Option<CloudflareCode> {
        Some(CloudflareCode::V4(self.v4_code()))
    }

    fn http_status(&self) -> u16 {
        match self {
            R2Error::MetadataTooLarge { .. } | R2Error::EntityTooLarge { .. } => 400,
            R2Error::InvalidRange { .. } => 416,
            other => other.kind().http_status(),
        }
    }
}

/// Code of R2's `NoSuchKey` (404): the binding's `get`/`head` answer `None` instead, but a
/// protocol front end sends this code with a 404.
pub const NO_SUCH_KEY: u32 = 10007;

/// Checks a key against the rules every operation applies before any I/O.
pub fn validate_key(key: &str, limits: &R2Limits) -> R2Result<()> {
    if key.is_empty() {
        return Err(R2Error::InvalidObjectName {
            reason: "key is empty".into(),
        });
    }
    if key.len() > limits.max_key_bytes {
        return Err(R2Error::InvalidObjectName {
            reason: format!(
                "key is {} bytes; the limit is {}",
                key.len(),
                limits.max_key_bytes
            ),
        });
    }
    Ok(())
}

/// Checks custom metadata against the limit (keys plus values, UTF-8 bytes).
pub fn validate_custom_metadata(
    meta: &BTreeMap<String, String>,
    limits: &R2Limits,
) -> R2Result<()> {
    let len: usize = meta.iter().map(|(k, v)| k.len() + v.len()).sum();
    if len > limits.max_custom_metadata_bytes {
        return Err(R2Error::MetadataTooLarge {
            len,
            limit: limits.max_custom_metadata_bytes,
        });
    }
    Ok(())
}

/// Checks a bucket name against R2's naming rules.
pub fn validate_bucket_name(name: &str) -> R2Result<()> {
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(R2Error::InvalidBucketName {
            name: name.to_owned(),
        })
    }
}
