//! Error categories shared by every primitive.
//!
//! Each primitive has its own typed error enum (for example [`crate::kv::KvError`]) whose
//! variants carry what identifies the failure. Every such enum implements [`PlatformError`],
//! so that the server maps any error to an HTTP status and a Cloudflare error code in one
//! table, without matching on message text.

use std::fmt;

/// The category of a failure: what a caller can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is malformed or breaks a documented rule (bad key, bad option).
    InvalidInput,
    /// The input is larger than a documented limit.
    TooLarge,
    /// The named thing does not exist.
    NotFound,
    /// The named thing already exists and the operation requires that it does not.
    AlreadyExists,
    /// A condition attached to the request (`onlyIf`, a bookmark, a lease) did not hold.
    PreconditionFailed,
    /// The caller exceeded a rate limit; retry later.
    RateLimited,
    /// The operation ran longer than its documented time limit and was stopped.
    Timeout,
    /// Transient: the resource is busy or restarting; retrying may succeed.
    Unavailable,
    /// The operation is documented but this backend does not implement it.
    Unsupported,
    /// The request conflicts with the resource's current state (for example a bucket that
    /// is not empty).
    Conflict,
    /// The engine failed (I/O, corruption). The handle may refuse further writes.
    Internal,
}

impl ErrorKind {
    /// The HTTP status this kind maps to when no more specific status is defined.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidInput => 400,
            ErrorKind::TooLarge => 413,
            ErrorKind::NotFound => 404,
            ErrorKind::AlreadyExists | ErrorKind::Conflict => 409,
            ErrorKind::PreconditionFailed => 412,
            ErrorKind::RateLimited => 429,
            ErrorKind::Timeout => 408,
            ErrorKind::Unavailable => 503,
            ErrorKind::Unsupported => 501,
            ErrorKind::Internal => 500,
        }
    }

    /// Whether retrying the same request may succeed without changing it.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited | ErrorKind::Unavailable | ErrorKind::Timeout
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// An error code defined by the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloudflareCode {
    /// A numeric v4 API code, as R2 and Queues use (`10007` is R2's NoSuchKey).
    V4(u32),
    /// A symbolic code, as D1 uses (`D1_ERROR`, `D1_TYPE_ERROR`).
    Name(&'static str),
}

impl fmt::Display for CloudflareCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloudflareCode::V4(n) => write!(f, "{n}"),
            CloudflareCode::Name(s) => f.write_str(s),
        }
    }
}

/// What every primitive's error answers, so the server needs one mapping table.
pub trait PlatformError: std::error::Error + Send + Sync + 'static {
    /// The category of the failure.
    fn kind(&self) -> ErrorKind;

    /// The platform's own code for this failure, where the platform defines one.
    fn code(&self) -> Option<CloudflareCode> {
        None
    }

    /// The HTTP status the platform answers with. Defaults to the kind's status; errors
    /// override it where the platform uses a more specific one (KV answers 414 for long keys).
    fn http_status(&self) -> u16 {
        self.kind().http_status()
    }
}

/// Boxed engine error carried as a `source` by primitive errors.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
