//! The one table that turns any error into each protocol's error shape.
//!
//! Every error the server answers with implements [`PlatformError`]: the stores' own errors
//! ([`bindery_core::kv::KvError`], ...) and the server's ([`ServerError`]: bad headers, a wrong
//! token, an unknown binding, an oversized body). [`error_response`] maps one to the shape the
//! client of that protocol expects, so that a Worker sees the error the platform would give:
//!
//! | protocol | shape |
//! |---|---|
//! | KV | the status, the message as the reason phrase (`KV PUT failed: 413 <message>`) and as the body |
//! | R2 (binding) | the status and `cf-r2-error: {"version":1,"v4code":N,"message":M}` |
//! | D1 | `200 {"success":false,"error":M}` (the client checks only the JSON) |
//! | Queues | the status, `CF-Queues-Error-Code` / `CF-Queues-Error-Cause`, the message as reason phrase |
//! | S3 | the status and an S3 XML `<Error>` document |
//! | plain | the status and `{"error":M}` |
//!
//! Internal failures are logged in full and answered with a generic message: a client never
//! sees an engine's internals.

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode};
use bindery_core::{CloudflareCode, ErrorKind, PlatformError};

/// Which client the error goes back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// workerd's `kvNamespace` binding.
    Kv,
    /// workerd's `r2Bucket` binding.
    R2,
    /// workerd's D1 (`wrapped`) binding.
    D1,
    /// workerd's `queue` binding.
    Queue,
    /// The S3-compatible API.
    S3,
    /// Anything else (health, the driver, unknown routes).
    Plain,
}

/// Errors that the server itself raises before or around a store call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The request has no `X-Bindery-Binding` header.
    #[error(
        "missing X-Bindery-Binding header; expected <kind>/<name> with kind kv, r2, d1 or queue"
    )]
    MissingBinding,
    /// The `X-Bindery-Binding` header is malformed.
    #[error("invalid X-Bindery-Binding header {value:?}: {reason}")]
    BadBinding {
        /// The header as received (lossy UTF-8).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The binding names a resource that the configuration does not declare (strict mode).
    #[error("unknown binding {kind}/{name}: it is not declared in the configuration")]
    UnknownBinding {
        /// The kind (`kv`, `r2`, ...).
        kind: String,
        /// The resource name.
        name: String,
    },
    /// The request lacks the bearer token the server was started with, or carries another.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// A header is malformed.
    #[error("invalid {name} header: {reason}")]
    BadHeader {
        /// The header's name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A query parameter is malformed.
    #[error("invalid query parameter {name}: {reason}")]
    BadQuery {
        /// The parameter's name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The request body is larger than this endpoint accepts.
    #[error("request body is {len} bytes; the limit is {limit}")]
    BodyTooLarge {
        /// Bytes received (at least).
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// The request body could not be read or parsed.
    #[error("invalid request body: {reason}")]
    BadBody {
        /// What is wrong with it.
        reason: String,
    },
    /// No route matches the method and path.
    #[error("no such endpoint: {method} {path}")]
    NoRoute {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// The operation is part of the protocol but not served (yet).
    #[error("{what} is not supported by this server")]
    Unsupported {
        /// What was asked for.
        what: String,
    },
    /// A store could not be opened or the server failed otherwise.
    #[error("{context}: {source}")]
    Internal {
        /// What the server was doing.
        context: String,
        /// The underlying error.
        source: bindery_core::error::BoxError,
    },
}

impl ServerError {
    /// Wraps an internal failure.
    pub fn internal(
        context: impl Into<String>,
        source: impl Into<bindery_core::error::BoxError>,
    ) -> Self {
        ServerError::Internal {
            context: context.into(),
            source: source.into(),
        }
    }
}

impl PlatformError for ServerError {
    fn kind(&self) -> ErrorKind {
        match self {
            ServerError::MissingBinding
            | ServerError::BadBinding { .. }
            | ServerError::BadHeader { .. }
            | ServerError::BadQuery { .. }
            | ServerError::BadBody { .. } => ErrorKind::InvalidInput,
            // Not NotFound: a 404 would read as a miss (KV `get` and R2 `get` resolve to null).
            ServerError::UnknownBinding { .. } => ErrorKind::InvalidInput,
            ServerError::NoRoute { .. } => ErrorKind::NotFound,
            ServerError::Unauthorized => ErrorKind::InvalidInput,
            ServerError::BodyTooLarge { .. } => ErrorKind::TooLarge,
            ServerError::Unsupported { .. } => ErrorKind::Unsupported,
            ServerError::Internal { .. } => ErrorKind::Internal,
        }
    }

    fn code(&self) -> Option<CloudflareCode> {
        match self {
            // Cloudflare's v4 API answers 10000 "Authentication error".
            ServerError::Unauthorized => Some(CloudflareCode::V4(10000)),
            _ => None,
        }
    }

    fn http_status(&self) -> u16 {
        match self {
            ServerError::Unauthorized => 401,
            ServerError::UnknownBinding { .. } => 403,
            ServerError::NoRoute { .. } => 404,
            other => other.kind().http_status(),
        }
    }
}

/// The message a client may see: internal failures are replaced by a generic text.
fn public_message(err: &dyn PlatformError) -> String {
    if err.kind() == ErrorKind::Internal {
        "internal error in the Bindery server; see its log".to_owned()
    } else {
        err.to_string()
    }
}

/// The R2 v4 code for an error without one of its own.
fn r2_default_code(kind: ErrorKind) -> u32 {
    match kind {
        ErrorKind::NotFound => 10007,
        ErrorKind::PreconditionFailed => 10031,
        ErrorKind::TooLarge => 100100,
        ErrorKind::InvalidInput => 10029,
        ErrorKind::Unsupported => 10029,
        ErrorKind::RateLimited => 10058,
        _ => 10001,
    }
}

/// The Queues v4 code for an error without one of its own.
fn queue_default_code(kind: ErrorKind) -> u32 {
    match kind {
        ErrorKind::RateLimited | ErrorKind::Unavailable => 10250,
        ErrorKind::TooLarge => 10021,
        ErrorKind::NotFound => 11000,
        ErrorKind::InvalidInput => 10020,
        _ => 15000,
    }
}

/// The S3 error code for an error.
fn s3_code(err: &dyn PlatformError) -> &'static str {
    match err.code() {
        Some(CloudflareCode::V4(10007)) => return "NoSuchKey",
        Some(CloudflareCode::V4(10006)) => return "NoSuchBucket",
        Some(CloudflareCode::V4(10024)) => return "NoSuchUpload",
        Some(CloudflareCode::V4(10025)) => return "InvalidPart",
        Some(CloudflareCode::V4(10011)) => return "EntityTooSmall",
        Some(CloudflareCode::V4(10037)) => return "BadDigest",
        Some(CloudflareCode::V4(10039)) => return "InvalidRange",
        Some(CloudflareCode::V4(10000)) => return "AccessDenied",
        Some(CloudflareCode::Name(name)) if name.chars().all(|c| c.is_ascii_alphanumeric()) => {
            return name;
        }
        _ => {}
    }
    match err.kind() {
        ErrorKind::NotFound => "NoSuchKey",
        ErrorKind::PreconditionFailed => "PreconditionFailed",
        ErrorKind::TooLarge => "EntityTooLarge",
        ErrorKind::AlreadyExists => "BucketAlreadyOwnedByYou",
        ErrorKind::Conflict => "BucketNotEmpty",
        ErrorKind::RateLimited => "SlowDown",
        ErrorKind::Unsupported => "NotImplemented",
        ErrorKind::Unavailable | ErrorKind::Timeout => "ServiceUnavailable",
        ErrorKind::InvalidInput => "InvalidArgument",
        _ => "InternalError",
    }
}

/// A reason phrase carrying `message`: visible characters only, at most 512 bytes.
pub fn reason_phrase(message: &str) -> hyper::ext::ReasonPhrase {
    let mut bytes: Vec<u8> = message
        .bytes()
        .map(|b| {
            if b == b'\t' || (0x20..0x7f).contains(&b) {
                b
            } else {
                b'?'
            }
        })
        .collect();
    bytes.truncate(512);
    hyper::ext::ReasonPhrase::try_from(bytes)
        .unwrap_or_else(|_| hyper::ext::ReasonPhrase::from_static(b"Error"))
}

/// A header value holding `text` with anything unsafe replaced.
pub fn header_text(text: &str) -> HeaderValue {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect();
    HeaderValue::from_str(&cleaned).unwrap_or_else(|_| HeaderValue::from_static("error"))
}

/// Escapes XML text.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// The response that tells a client of `protocol` about `err`.
pub fn error_response(protocol: Protocol, err: &dyn PlatformError) -> Response<Body> {
    let status = StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    if err.kind() == ErrorKind::Internal {
        tracing::error!(error = %err, ?protocol, "request failed");
    } else {
        tracing::debug!(error = %err, ?protocol, status = status.as_u16(), "request refused");
    }
    let message = public_message(err);
    let v4 = match err.code() {
        Some(CloudflareCode::V4(n)) => Some(n),
        _ => None,
    };
    let mut builder = Response::builder();
    let body = match protocol {
        Protocol::Kv => {
            builder = builder
                .status(status)
                .extension(reason_phrase(&message))
                .header("content-type", "text/plain;charset=UTF-8");
            Body::from(message)
        }
        Protocol::R2 => {
            let code = v4.unwrap_or_else(|| r2_default_code(err.kind()));
            let header = serde_json::json!({"version": 1, "v4code": code, "message": message});
            builder = builder
                .status(status)
                .header("cf-r2-error", header_text(&header.to_string()))
                .header("content-type", "application/json");
            Body::from(header.to_string())
        }
        Protocol::D1 => {
            // The client adds `D1_ERROR: ` itself.
            let message = match err.code() {
                Some(CloudflareCode::Name(code)) => message
                    .strip_prefix(code)
                    .and_then(|m| m.strip_prefix(": "))
                    .map(str::to_owned)
                    .unwrap_or(message),
                _ => message,
            };
            let body = serde_json::json!({"success": false, "error": message});
            builder = builder
                .status(StatusCode::OK)
                .header("content-type", "application/json");
            Body::from(body.to_string())
        }
        Protocol::Queue => {
            let code = v4.unwrap_or_else(|| queue_default_code(err.kind()));
            builder = builder
                .status(status)
                .extension(reason_phrase(&message))
                .header("cf-queues-error-code", code)
                .header("cf-queues-error-cause", header_text(&message))
                .header("content-type", "application/json");
            Body::from(serde_json::json!({"success": false, "error": message}).to_string())
        }
        Protocol::S3 => {
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message></Error>",
                s3_code(err),
                xml_escape(&message)
            );
            builder = builder
                .status(status)
                .header("content-type", "application/xml");
            Body::from(xml)
        }
        Protocol::Plain => {
            builder = builder
                .status(status)
                .header("content-type", "application/json");
            Body::from(serde_json::json!({"error": message}).to_string())
        }
    };
    builder.body(body).unwrap_or_else(|_| {
        let mut r = Response::new(Body::from("error"));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindery_core::kv::KvError;

    #[test]
    fn kv_errors_carry_the_message_as_reason_phrase() {
        let err = KvError::ValueTooLarge {
            len: 26_214_401,
            limit: 26_214_400,
        };
        let r = error_response(Protocol::Kv, &err);
        assert_eq!(r.status(), 413);
        let phrase = r.extensions().get::<hyper::ext::ReasonPhrase>().unwrap();
        assert_eq!(
            phrase.as_bytes(),
            b"Value length of 26214401 exceeds limit of 26214400."
        );
    }

    #[test]
    fn internal_errors_hide_their_source() {
        let err = ServerError::internal("opening kv/x", std::io::Error::other("secret path"));
        let r = error_response(Protocol::Plain, &err);
        assert_eq!(r.status(), 500);
        let phrase = format!("{:?}", r.body());
        assert!(!phrase.contains("secret"));
    }

    #[test]
    fn d1_errors_are_success_false_with_status_200() {
        let r = error_response(Protocol::D1, &ServerError::Unauthorized);
        assert_eq!(r.status(), 200);
    }

    #[test]
    fn r2_errors_carry_the_v4_code_header() {
        let r = error_response(Protocol::R2, &ServerError::Unauthorized);
        assert_eq!(r.status(), 401);
        let h = r.headers().get("cf-r2-error").unwrap().to_str().unwrap();
        assert!(h.contains("\"v4code\":10000"), "{h}");
    }

    #[test]
    fn reason_phrases_replace_non_ascii() {
        let p = reason_phrase("caf\u{e9}\r\nx");
        assert_eq!(p.as_bytes(), b"caf????x");
    }
}
