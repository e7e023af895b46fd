//! workerd's `r2Bucket` protocol over an [`R2Bucket`].
//!
//! Reads (`head`, `get`, `list`) are `GET /` with the operation JSON in the `CF-R2-Request`
//! header (raw UTF-8). Writes (`put`, `delete`, multipart) are `PUT /` whose body starts with
//! `CF-R2-Metadata-Size` bytes of operation JSON, followed by the value. 64-bit numbers arrive
//! as strings. Read answers carry `cf-r2-metadata-size` and the metadata JSON before the
//! value; write answers are plain JSON. Errors carry `cf-r2-error` with R2's v4 code: a 404
//! with 10007 makes `get`/`head` resolve to `null`, a 412 with 10031 makes `put` resolve to
//! `null` and `get` to an object without a body.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode};
use base64::Engine as _;
use bindery_core::r2::{
    Conditional, EtagMatcher, GetOptions, HttpMetadata, ListInclude, ListOptions, MultipartOptions,
    PutOptions, R2Body, R2Bucket, R2Error, R2GetResult, R2MultipartUpload, R2Object, R2Range,
    R2UploadedPart, StorageClass,
};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::body;
use crate::errors::{Protocol, ServerError, error_response};

/// Largest operation JSON accepted (the client refuses metadata over 1 MiB).
const MAX_OPERATION_BYTES: usize = 1024 * 1024 + 64 * 1024;

enum Failure {
    R2(R2Error),
    Server(ServerError),
    /// 404 + 10007: `get`/`head` resolve to null.
    NotFound(String),
}

impl From<R2Error> for Failure {
    fn from(e: R2Error) -> Self {
        Failure::R2(e)
    }
}

impl From<ServerError> for Failure {
    fn from(e: ServerError) -> Self {
        Failure::Server(e)
    }
}

/// The error of a missing key: R2's NoSuchKey.
#[derive(Debug, thiserror::Error)]
#[error("The specified key does not exist: {0}")]
struct NoSuchKey(String);

impl bindery_core::PlatformError for NoSuchKey {
    fn kind(&self) -> bindery_core::ErrorKind {
        bindery_core::ErrorKind::NotFound
    }
    fn code(&self) -> Option<bindery_core::CloudflareCode> {
        Some(bindery_core::CloudflareCode::V4(
            bindery_core::r2::NO_SUCH_KEY,
        ))
    }
}

fn bad(reason: impl Into<String>) -> Failure {
    Failure::Server(ServerError::BadHeader {
        name: "CF-R2-Request",
        reason: reason.into(),
    })
}

/// Handles one R2 binding request.
pub async fn handle(bucket: &dyn R2Bucket, req: Request<Body>) -> Response<Body> {
    match dispatch(bucket, req).await {
        Ok(r) => r,
        Err(Failure::R2(e)) => error_response(Protocol::R2, &e),
        Err(Failure::Server(e)) => error_response(Protocol::R2, &e),
        Err(Failure::NotFound(key)) => error_response(Protocol::R2, &NoSuchKey(key)),
    }
}

async fn dispatch(bucket: &dyn R2Bucket, req: Request<Body>) -> Result<Response<Body>, Failure> {
    match *req.method() {
        Method::GET => {
            let raw = req
                .headers()
                .get("cf-r2-request")
                .ok_or_else(|| bad("the header is missing"))?;
            let op: Value = serde_json::from_slice(raw.as_bytes())
                .map_err(|e| bad(format!("not JSON: {e}")))?;
            match str_field(&op, "method")?.as_deref() {
                Some("head") => head(bucket, &op).await,
                Some("get") => get(bucket, &op).await,
                Some("list") => list(bucket, &op).await,
                other => Err(bad(format!("unknown read method {other:?}"))),
            }
        }
        Method::PUT => write(bucket, req).await,
        _ => Err(Failure::Server(ServerError::NoRoute {
            method: req.method().to_string(),
            path: req.uri().path().to_owned(),
        })),
    }
}

fn str_field(op: &Value, name: &str) -> Result<Option<String>, Failure> {
    match op.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(bad(format!("{name} must be a string, got {other}"))),
    }
}

/// A capnp-JSON integer: a number or a decimal string.
fn u64_field(op: &Value, name: &str) -> Result<Option<u64>, Failure> {
    match op.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad(format!("{name} must be a non-negative integer"))),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| bad(format!("{name} must be a non-negative integer, got {s:?}"))),
        Some(other) => Err(bad(format!("{name} must be an integer, got {other}"))),
    }
}

fn object_key(op: &Value) -> Result<String, Failure> {
    str_field(op, "object")?.ok_or_else(|| bad("object is missing"))
}

fn etag_list(v: Option<&Value>) -> Result<Vec<EtagMatcher>, Failure> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    let items: Vec<Value> = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::String(s) => Ok(EtagMatcher::parse(&s)),
            Value::Object(o) => {
                let kind = o.get("type").and_then(Value::as_str).unwrap_or("strong");
                let value = o
                    .get("value")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                match kind {
                    "wildcard" => Ok(EtagMatcher::Wildcard),
                    "weak" => Ok(EtagMatcher::Weak(value)),
                    _ => Ok(EtagMatcher::Strong(value)),
                }
            }
            other => Err(bad(format!("invalid etag condition {other}"))),
        })
        .collect()
}

fn conditional(op: &Value) -> Result<Option<Conditional>, Failure> {
    let Some(c) = op.get("onlyIf").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    Ok(Some(Conditional {
        etag_matches: etag_list(c.get("etagMatches"))?,
        etag_does_not_match: etag_list(c.get("etagDoesNotMatch"))?,
        uploaded_before: u64_field(c, "uploadedBefore")?,
        uploaded_after: u64_field(c, "uploadedAfter")?,
        seconds_granularity: c
            .get("secondsGranularity")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }))
}

fn range(op: &Value) -> Result<Option<R2Range>, Failure> {
    if let Some(r) = op.get("range").filter(|v| !v.is_null()) {
        if let Some(suffix) = u64_field(r, "suffix")? {
            return Ok(Some(R2Range::Suffix(suffix)));
        }
        let offset = u64_field(r, "offset")?;
        let length = u64_field(r, "length")?;
        if offset.is_none() && length.is_none() {
            return Ok(None);
        }
        return Ok(Some(R2Range::Bounded {
            offset: offset.unwrap_or(0),
            length,
        }));
    }
    match str_field(op, "rangeHeader")? {
        Some(h) => Ok(R2Range::parse_header(&h)),
        None => Ok(None),
    }
}

fn http_fields(op: &Value) -> Result<HttpMetadata, Failure> {
    let Some(h) = op.get("httpFields").filter(|v| !v.is_null()) else {
        return Ok(HttpMetadata::default());
    };
    Ok(HttpMetadata {
        content_type: str_field(h, "contentType")?,
        content_language: str_field(h, "contentLanguage")?,
        content_disposition: str_field(h, "contentDisposition")?,
        content_encoding: str_field(h, "contentEncoding")?,
        cache_control: str_field(h, "cacheControl")?,
        cache_expiry: u64_field(h, "cacheExpiry")?,
    })
}

fn custom_fields(op: &Value) -> Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    if let Some(Value::Array(items)) = op.get("customFields") {
        for item in items {
            let k = str_field(item, "k")?.ok_or_else(|| bad("customFields entry without k"))?;
            let v = str_field(item, "v")?.unwrap_or_default();
            out.insert(k, v);
        }
    }
    Ok(out)
}

fn storage_class(op: &Value) -> Result<Option<StorageClass>, Failure> {
    match str_field(op, "storageClass")? {
        None => Ok(None),
        Some(s) => StorageClass::parse(&s).map(Some).ok_or_else(|| {
            Failure::R2(R2Error::InvalidArgument {
                reason: format!("storage class {s:?}; expected Standard or InfrequentAccess"),
            })
        }),
    }
}

/// The `R2HeadResponse` JSON of an object.
pub fn object_json(o: &R2Object) -> Value {
    let mut http = serde_json::Map::new();
    let h = &o.http_metadata;
    for (name, value) in [
        ("contentType", &h.content_type),
        ("contentLanguage", &h.content_language),
        ("contentDisposition", &h.content_disposition),
        ("contentEncoding", &h.content_encoding),
        ("cacheControl", &h.cache_control),
    ] {
        if let Some(v) = value {
            http.insert(name.into(), Value::String(v.clone()));
        }
    }
    if let Some(exp) = h.cache_expiry {
        http.insert("cacheExpiry".into(), Value::String(exp.to_string()));
    }
    let custom: Vec<Value> = o
        .custom_metadata
        .iter()
        .map(|(k, v)| json!({"k": k, "v": v}))
        .collect();
    let mut checksums = serde_json::Map::new();
    let c = &o.checksums;
    for (slot, digest) in [
        ("0", &c.md5),
        ("1", &c.sha1),
        ("2", &c.sha256),
        ("3", &c.sha384),
        ("4", &c.sha512),
    ] {
        if let Some(d) = digest {
            checksums.insert(slot.into(), Value::String(hex::encode(d)));
        }
    }
    let mut v = json!({
        "name": o.key,
        "version": o.version,
        "size": o.size,
        "etag": o.etag,
        "uploaded": o.uploaded,
        "httpFields": http,
        "customFields": custom,
        "checksums": checksums,
        "storageClass": o.storage_class.as_str(),
    });
    if let Some(r) = o.range {
        v["range"] = json!({"offset": r.offset, "length": r.length});
    }
    v
}

fn with_metadata(
    status: StatusCode,
    meta: Bytes,
    body: Option<(u64, bindery_core::ByteStream)>,
) -> Result<Response<Body>, Failure> {
    let meta_len = meta.len() as u64;
    let builder = Response::builder()
        .status(status)
        .header("cf-r2-metadata-size", meta_len);
    let result = match body {
        None => builder
            .header("content-length", meta_len)
            .body(Body::from(meta)),
        Some((len, stream)) => {
            let head = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(meta) });
            builder
                .header("content-length", meta_len + len)
                .body(Body::from_stream(head.chain(stream)))
        }
    };
    result.map_err(|e| Failure::Server(ServerError::internal("building the R2 response", e)))
}

fn json_response(v: Value) -> Result<Response<Body>, Failure> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from(v.to_string()))
        .map_err(|e| Failure::Server(ServerError::internal("building the R2 response", e)))
}

async fn head(bucket: &dyn R2Bucket, op: &Value) -> Result<Response<Body>, Failure> {
    let key = object_key(op)?;
    match bucket.head(&key).await? {
        None => Err(Failure::NotFound(key)),
        Some(o) => with_metadata(
            StatusCode::OK,
            Bytes::from(object_json(&o).to_string()),
            None,
        ),
    }
}

async fn get(bucket: &dyn R2Bucket, op: &Value) -> Result<Response<Body>, Failure> {
    let key = object_key(op)?;
    let options = GetOptions {
        range: range(op)?,
        only_if: conditional(op)?,
    };
    match bucket.get(&key, options).await? {
        None => Err(Failure::NotFound(key)),
        Some(R2GetResult::PreconditionFailed(o)) => {
            let mut r = with_metadata(
                StatusCode::PRECONDITION_FAILED,
                Bytes::from(object_json(&o).to_string()),
                None,
            )?;
            let err = json!({"version": 1, "v4code": 10031, "message": R2Error::PreconditionFailed.to_string()});
            r.headers_mut()
                .insert("cf-r2-error", crate::errors::header_text(&err.to_string()));
            Ok(r)
        }
        Some(R2GetResult::Body(b)) => {
            let len = b.object.range.map(|r| r.length).unwrap_or(b.object.size);
            let meta = Bytes::from(object_json(&b.object).to_string());
            with_metadata(StatusCode::OK, meta, Some((len, b.body)))
        }
    }
}

async fn list(bucket: &dyn R2Bucket, op: &Value) -> Result<Response<Body>, Failure> {
    let mut include = ListInclude::default();
    if let Some(Value::Array(items)) = op.get("include") {
        for i in items {
            match i
                .as_u64()
                .or_else(|| i.as_str().and_then(|s| s.parse().ok()))
            {
                Some(0) => include.http_metadata = true,
                Some(1) => include.custom_metadata = true,
                _ => {}
            }
        }
    }
    let options = ListOptions {
        limit: u64_field(op, "limit")?.map(|n| n as usize),
        prefix: str_field(op, "prefix")?,
        cursor: str_field(op, "cursor")?.filter(|c| !c.is_empty()),
        delimiter: str_field(op, "delimiter")?,
        start_after: str_field(op, "startAfter")?,
        include,
    };
    let page = bucket.list(options).await?;
    let objects: Vec<Value> = page
        .objects
        .iter()
        .map(|o| {
            let mut v = object_json(o);
            if !include.http_metadata {
                v.as_object_mut().map(|m| m.remove("httpFields"));
            }
            if !include.custom_metadata {
                v.as_object_mut().map(|m| m.remove("customFields"));
            }
            v
        })
        .collect();
    let mut body = json!({
        "objects": objects,
        "truncated": page.truncated,
        "delimitedPrefixes": page.delimited_prefixes,
    });
    if let Some(c) = page.cursor {
        body["cursor"] = Value::String(c);
    }
    with_metadata(StatusCode::OK, Bytes::from(body.to_string()), None)
}

fn decode_hex(field: &str, s: &str) -> Result<Vec<u8>, Failure> {
    hex::decode(s).map_err(|_| bad(format!("{field} is not hex: {s:?}")))
}

async fn write(bucket: &dyn R2Bucket, req: Request<Body>) -> Result<Response<Body>, Failure> {
    let size_header = req.headers().get("cf-r2-metadata-size").ok_or_else(|| {
        Failure::Server(ServerError::BadHeader {
            name: "CF-R2-Metadata-Size",
            reason: "the header is missing".into(),
        })
    })?;
    let meta_size: usize = std::str::from_utf8(size_header.as_bytes())
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| {
            Failure::Server(ServerError::BadHeader {
                name: "CF-R2-Metadata-Size",
                reason: "not a non-negative integer".into(),
            })
        })?;
    if meta_size > MAX_OPERATION_BYTES {
        let streamed = body::streamed(req.into_body());
        drop(streamed.stream);
        streamed.drain.finish().await;
        return Err(Failure::Server(ServerError::BadHeader {
            name: "CF-R2-Metadata-Size",
            reason: format!("{meta_size} bytes; the limit is {MAX_OPERATION_BYTES}"),
        }));
    }
    let streamed = body::streamed(req.into_body());
    let drain = streamed.drain;
    let mut stream = streamed.stream;
    let mut prefix = BytesMut::with_capacity(meta_size);
    let mut leftover = Bytes::new();
    while prefix.len() < meta_size {
        match stream.next().await {
            Some(Ok(chunk)) => {
                let need = meta_size - prefix.len();
                if chunk.len() > need {
                    prefix.extend_from_slice(&chunk[..need]);
                    leftover = chunk.slice(need..);
                } else {
                    prefix.extend_from_slice(&chunk);
                }
            }
            Some(Err(e)) => {
                return Err(Failure::Server(ServerError::BadBody {
                    reason: format!("reading the body failed: {e}"),
                }));
            }
            None => {
                return Err(Failure::Server(ServerError::BadBody {
                    reason: format!(
                        "the body ended after {} bytes; CF-R2-Metadata-Size says {meta_size}",
                        prefix.len()
                    ),
                }));
            }
        }
    }
    let op: Value = match serde_json::from_slice(&prefix) {
        Ok(v) => v,
        Err(e) => {
            drop(stream);
            drain.finish().await;
            return Err(Failure::Server(ServerError::BadBody {
                reason: format!("the R2 operation is not JSON: {e}"),
            }));
        }
    };
    let first = futures_util::stream::iter(
        (!leftover.is_empty()).then_some(Ok::<Bytes, std::io::Error>(leftover)),
    );
    let value: bindery_core::ByteStream = Box::pin(first.chain(stream));
    let result = write_op(bucket, &op, value).await;
    if result.is_err() {
        drain.finish().await;
    }
    result
}

async fn write_op(
    bucket: &dyn R2Bucket,
    op: &Value,
    value: bindery_core::ByteStream,
) -> Result<Response<Body>, Failure> {
    match str_field(op, "method")?.as_deref() {
        Some("put") => {
            let key = object_key(op)?;
            let md5 = match str_field(op, "md5")? {
                Some(s) => Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(s.as_bytes())
                        .or_else(|_| hex::decode(&s))
                        .map_err(|_| bad(format!("md5 is neither base64 nor hex: {s:?}")))?,
                ),
                None => None,
            };
            let hexed = |name: &str| -> Result<Option<Vec<u8>>, Failure> {
                str_field(op, name)?
                    .map(|s| decode_hex(name, &s))
                    .transpose()
            };
            let options = PutOptions {
                http_metadata: http_fields(op)?,
                custom_metadata: custom_fields(op)?,
                md5,
                sha1: hexed("sha1")?,
                sha256: hexed("sha256")?,
                sha384: hexed("sha384")?,
                sha512: hexed("sha512")?,
                storage_class: storage_class(op)?,
                only_if: conditional(op)?,
            };
            match bucket.put(&key, R2Body::Stream(value), options).await? {
                Some(o) => json_response(object_json(&o)),
                None => Err(Failure::R2(R2Error::PreconditionFailed)),
            }
        }
        Some("delete") => {
            let keys: Vec<String> = match op.get("objects") {
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| bad("objects must be strings"))
                    })
                    .collect::<Result<_, _>>()?,
                _ => vec![object_key(op)?],
            };
            bucket.delete(&keys).await?;
            json_response(json!({}))
        }
        Some("createMultipartUpload") => {
            let key = object_key(op)?;
            let upload = bucket
                .create_multipart_upload(
                    &key,
                    MultipartOptions {
                        http_metadata: http_fields(op)?,
                        custom_metadata: custom_fields(op)?,
                        storage_class: storage_class(op)?,
                    },
                )
                .await?;
            json_response(json!({"uploadId": upload.upload_id}))
        }
        Some("uploadPart") => {
            let upload = upload_of(op)?;
            let part = u64_field(op, "partNumber")?.ok_or_else(|| bad("partNumber is missing"))?;
            let part = u32::try_from(part).map_err(|_| {
                Failure::R2(R2Error::InvalidPartNumber {
                    part_number: u32::MAX,
                    max: 10_000,
                })
            })?;
            let uploaded = bucket
                .upload_part(&upload, part, R2Body::Stream(value))
                .await?;
            json_response(json!({"etag": uploaded.etag}))
        }
        Some("completeMultipartUpload") => {
            let upload = upload_of(op)?;
            let mut parts = Vec::new();
            if let Some(Value::Array(items)) = op.get("parts") {
                for p in items {
                    let number = u64_field(p, "part")?
                        .or(u64_field(p, "partNumber")?)
                        .ok_or_else(|| bad("a part without a number"))?;
                    parts.push(R2UploadedPart {
                        part_number: u32::try_from(number).unwrap_or(u32::MAX),
                        etag: str_field(p, "etag")?.unwrap_or_default(),
                    });
                }
            }
            let o = bucket.complete_multipart_upload(&upload, &parts).await?;
            json_response(object_json(&o))
        }
        Some("abortMultipartUpload") => {
            let upload = upload_of(op)?;
            bucket.abort_multipart_upload(&upload).await?;
            json_response(json!({}))
        }
        other => Err(bad(format!("unknown write method {other:?}"))),
    }
}

fn upload_of(op: &Value) -> Result<R2MultipartUpload, Failure> {
    let key = object_key(op)?;
    let id = str_field(op, "uploadId")?.ok_or_else(|| bad("uploadId is missing"))?;
    Ok(R2MultipartUpload::resume(&key, &id))
}
