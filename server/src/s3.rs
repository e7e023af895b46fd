//! An S3-compatible API over Bindery's R2 buckets, for boto3, the AWS CLI and other S3
//! clients, with AWS Signature Version 4 authentication ([`crate::sigv4`]).
//!
//! Path-style addressing only (`http://host:port/<bucket>/<key>`; configure clients with
//! `addressing_style = path`). Served: ListBuckets, CreateBucket, HeadBucket, DeleteBucket,
//! GetBucketLocation, ListObjects (v1 and v2, with `encoding-type=url`), PutObject (plain,
//! `aws-chunked` and with `Content-MD5` / `x-amz-checksum-sha256` / `-sha1`), CopyObject,
//! GetObject and HeadObject (ranges, conditional headers), DeleteObject, DeleteObjects, and
//! multipart uploads (create, upload part, complete, abort, list uploads, list parts). The
//! buckets are the same ones the Worker's R2 bindings see; unlike bindings, the S3 API does not
//! create buckets on first use.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, Response, StatusCode};
use base64::Engine as _;
use bindery_core::r2::{
    Conditional, EtagMatcher, GetOptions, HttpMetadata, ListOptions, ListUploadsOptions,
    MultipartOptions, PutOptions, R2Body, R2Bucket, R2Buckets, R2Error, R2GetResult,
    R2MultipartUpload, R2Object, R2Range, R2UploadedPart, rfc3339_ms,
};
use bindery_core::{ByteStream, CloudflareCode, ErrorKind, PlatformError};
use bytes::{Buf, BytesMut};
use futures_util::StreamExt;

use crate::body;
use crate::errors::{Protocol, ServerError, error_response, xml_escape};
use crate::registry::Registry;
use crate::sigv4::{self, Credentials, uri_encode};

const XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";
/// Largest XML request body (DeleteObjects with 1,000 keys, CompleteMultipartUpload with
/// 10,000 parts).
const XML_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// An S3 error with its S3 code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct S3Error {
    /// The S3 code (`AccessDenied`, ...).
    pub code: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What was wrong.
    pub message: String,
}

impl S3Error {
    fn new(code: &'static str, status: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            status,
            message: message.into(),
        }
    }
}

impl PlatformError for S3Error {
    fn kind(&self) -> ErrorKind {
        match self.status {
            401 | 403 => ErrorKind::InvalidInput,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            412 => ErrorKind::PreconditionFailed,
            501 => ErrorKind::Unsupported,
            s if s >= 500 => ErrorKind::Internal,
            _ => ErrorKind::InvalidInput,
        }
    }
    fn code(&self) -> Option<CloudflareCode> {
        Some(CloudflareCode::Name(self.code))
    }
    fn http_status(&self) -> u16 {
        self.status
    }
}

enum Failure {
    R2(R2Error),
    Server(ServerError),
    S3(S3Error),
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
impl From<S3Error> for Failure {
    fn from(e: S3Error) -> Self {
        Failure::S3(e)
    }
}

type S3Result = Result<Response<Body>, Failure>;

/// Handles one S3 request: verifies its signature, then serves it.
pub async fn handle(
    registry: &Registry,
    creds: &Credentials,
    req: Request<Body>,
) -> Response<Body> {
    let is_head = req.method() == Method::HEAD;
    let now = registry.clock().now_ms();
    let result = match sigv4::verify(req.method(), req.uri(), req.headers(), creds, now) {
        Err(f) => Err(Failure::S3(S3Error::new(f.code, 403, f.message))),
        Ok(()) => dispatch(registry, req).await,
    };
    let mut response = match result {
        Ok(r) => r,
        Err(Failure::R2(e)) => error_response(Protocol::S3, &e),
        Err(Failure::Server(e)) => error_response(Protocol::S3, &e),
        Err(Failure::S3(e)) => error_response(Protocol::S3, &e),
    };
    if is_head {
        *response.body_mut() = Body::empty();
    }
    response
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn query_map(query: Option<&str>) -> BTreeMap<String, String> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
}

async fn bucket_of(
    registry: &Registry,
    name: &str,
) -> Result<std::sync::Arc<dyn R2Bucket>, Failure> {
    let store = registry.r2_store().await?;
    Ok(store.bucket(name).await?)
}

async fn dispatch(registry: &Registry, req: Request<Body>) -> S3Result {
    let path = req.uri().path().to_owned();
    let query = query_map(req.uri().query());
    let method = req.method().clone();
    let trimmed = path.trim_start_matches('/');
    let (bucket, key) = match trimmed.split_once('/') {
        Some((b, k)) => (decode(b), decode(k)),
        None => (decode(trimmed), String::new()),
    };
    if bucket.is_empty() {
        return match method {
            Method::GET => list_buckets(registry).await,
            _ => Err(not_implemented(&method, "/")),
        };
    }
    if key.is_empty() {
        return bucket_request(registry, &bucket, &method, &query, req).await;
    }
    let b = bucket_of(registry, &bucket).await?;
    let b = b.as_ref();
    match method {
        Method::GET | Method::HEAD if query.contains_key("uploadId") => {
            list_parts(b, &bucket, &key, &query["uploadId"]).await
        }
        Method::GET | Method::HEAD => {
            get_object(b, &key, req.headers(), method == Method::HEAD).await
        }
        Method::PUT if query.contains_key("uploadId") => upload_part(b, &key, &query, req).await,
        Method::PUT if req.headers().contains_key("x-amz-copy-source") => {
            copy_object(registry, b, &key, req.headers()).await
        }
        Method::PUT => put_object(b, &key, req).await,
        Method::POST if query.contains_key("uploads") => {
            let upload = b
                .create_multipart_upload(
                    &key,
                    MultipartOptions {
                        http_metadata: http_metadata(req.headers()),
                        custom_metadata: custom_metadata(req.headers()),
                        storage_class: None,
                    },
                )
                .await?;
            xml_ok(format!(
                "<InitiateMultipartUploadResult xmlns=\"{XMLNS}\"><Bucket>{}</Bucket><Key>{}</Key><UploadId>{}</UploadId></InitiateMultipartUploadResult>",
                xml_escape(&bucket),
                xml_escape(&key),
                xml_escape(&upload.upload_id)
            ))
        }
        Method::POST if query.contains_key("uploadId") => {
            complete_upload(b, &bucket, &key, &query["uploadId"], req).await
        }
        Method::DELETE if query.contains_key("uploadId") => {
            b.abort_multipart_upload(&R2MultipartUpload::resume(&key, &query["uploadId"]))
                .await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        Method::DELETE => {
            b.delete(std::slice::from_ref(&key)).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        _ => Err(not_implemented(&method, &path)),
    }
}

fn not_implemented(method: &Method, path: &str) -> Failure {
    Failure::S3(S3Error::new(
        "NotImplemented",
        501,
        format!("{method} {path} with these parameters is not implemented"),
    ))
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

fn xml_ok(body: String) -> S3Result {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/xml")
        .body(Body::from(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}"
        )))
        .map_err(|e| Failure::Server(ServerError::internal("building an S3 response", e)))
}

async fn list_buckets(registry: &Registry) -> S3Result {
    let store = registry.r2_store().await?;
    let buckets = store.list_buckets().await?;
    let items: String = buckets
        .iter()
        .map(|b| {
            format!(
                "<Bucket><Name>{}</Name><CreationDate>{}</CreationDate></Bucket>",
                xml_escape(&b.name),
                rfc3339_ms(b.creation_date)
            )
        })
        .collect();
    xml_ok(format!(
        "<ListAllMyBucketsResult xmlns=\"{XMLNS}\"><Owner><ID>bindery</ID><DisplayName>bindery</DisplayName></Owner><Buckets>{items}</Buckets></ListAllMyBucketsResult>"
    ))
}

async fn bucket_request(
    registry: &Registry,
    bucket: &str,
    method: &Method,
    query: &BTreeMap<String, String>,
    req: Request<Body>,
) -> S3Result {
    let store = registry.r2_store().await?;
    match *method {
        Method::PUT if query.is_empty() => {
            // A CreateBucketConfiguration body may come; its location is irrelevant here.
            let _ = body::read_capped(req.into_body(), XML_BODY_LIMIT).await?;
            store.create_bucket(bucket).await?;
            Response::builder()
                .status(StatusCode::OK)
                .header("location", format!("/{bucket}"))
                .body(Body::empty())
                .map_err(|e| Failure::Server(ServerError::internal("building an S3 response", e)))
        }
        Method::DELETE if query.is_empty() => {
            store.delete_bucket(bucket).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        Method::HEAD => {
            store.bucket(bucket).await?;
            Ok(empty(StatusCode::OK))
        }
        Method::GET if query.contains_key("location") => {
            store.bucket(bucket).await?;
            xml_ok(format!(
                "<LocationConstraint xmlns=\"{XMLNS}\">auto</LocationConstraint>"
            ))
        }
        Method::GET if query.contains_key("uploads") => {
            let b = store.bucket(bucket).await?;
            list_uploads(b.as_ref(), bucket, query).await
        }
        Method::GET
            if query.is_empty()
                || query.keys().all(|k| {
                    matches!(
                        k.as_str(),
                        "list-type"
                            | "prefix"
                            | "delimiter"
                            | "max-keys"
                            | "continuation-token"
                            | "start-after"
                            | "encoding-type"
                            | "marker"
                            | "fetch-owner"
                    )
                }) =>
        {
            let b = store.bucket(bucket).await?;
            list_objects(b.as_ref(), bucket, query).await
        }
        Method::POST if query.contains_key("delete") => {
            let b = store.bucket(bucket).await?;
            let xml = body::read_capped(req.into_body(), XML_BODY_LIMIT).await?;
            let xml = String::from_utf8_lossy(&xml).into_owned();
            let keys: Vec<String> = xml_blocks(&xml, "Object")
                .iter()
                .filter_map(|o| xml_blocks(o, "Key").into_iter().next())
                .map(|k| xml_unescape(&k))
                .collect();
            let quiet = xml_blocks(&xml, "Quiet")
                .first()
                .is_some_and(|q| q.trim() == "true");
            b.delete(&keys).await?;
            let deleted: String = if quiet {
                String::new()
            } else {
                keys.iter()
                    .map(|k| format!("<Deleted><Key>{}</Key></Deleted>", xml_escape(k)))
                    .collect()
            };
            xml_ok(format!(
                "<DeleteResult xmlns=\"{XMLNS}\">{deleted}</DeleteResult>"
            ))
        }
        _ => Err(not_implemented(method, &format!("/{bucket}"))),
    }
}

/// Inner texts of every `<tag>...</tag>` (not nested in itself).
fn xml_blocks(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        match after.find(&close) {
            Some(end) => {
                out.push(after[..end].to_owned());
                rest = &after[end + close.len()..];
            }
            None => break,
        }
    }
    out
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fn maybe_encode(s: &str, url: bool) -> String {
    if url {
        uri_encode(s, true)
    } else {
        xml_escape(s)
    }
}

fn storage_class_name(o: &R2Object) -> &'static str {
    match o.storage_class {
        bindery_core::r2::StorageClass::Standard => "STANDARD",
        bindery_core::r2::StorageClass::InfrequentAccess => "STANDARD_IA",
    }
}

async fn list_objects(
    b: &dyn R2Bucket,
    bucket: &str,
    query: &BTreeMap<String, String>,
) -> S3Result {
    let v2 = query.get("list-type").map(String::as_str) == Some("2");
    let url = query.get("encoding-type").map(String::as_str) == Some("url");
    let prefix = query.get("prefix").cloned().filter(|p| !p.is_empty());
    let delimiter = query.get("delimiter").cloned().filter(|d| !d.is_empty());
    let max_keys: usize = match query.get("max-keys") {
        None => 1000,
        Some(m) => m.parse().map_err(|_| {
            S3Error::new(
                "InvalidArgument",
                400,
                format!("max-keys {m:?} is not a number"),
            )
        })?,
    };
    let mut options = ListOptions {
        limit: Some(max_keys.clamp(1, 1000)),
        prefix: prefix.clone(),
        delimiter: delimiter.clone(),
        ..Default::default()
    };
    if v2 {
        options.cursor = query
            .get("continuation-token")
            .cloned()
            .filter(|c| !c.is_empty());
        options.start_after = query.get("start-after").cloned().filter(|s| !s.is_empty());
    } else if let Some(marker) = query.get("marker").filter(|m| !m.is_empty()) {
        // A marker that is a rolled-up prefix skips every key under it.
        options.start_after = Some(match &delimiter {
            Some(d) if marker.ends_with(d.as_str()) => format!("{marker}\u{10FFFF}"),
            _ => marker.clone(),
        });
    }
    let page = if max_keys == 0 {
        bindery_core::r2::R2Objects {
            objects: Vec::new(),
            truncated: false,
            cursor: None,
            delimited_prefixes: Vec::new(),
        }
    } else {
        b.list(options).await?
    };
    let contents: String = page
        .objects
        .iter()
        .map(|o| {
            format!(
                "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>&quot;{}&quot;</ETag><Size>{}</Size><StorageClass>{}</StorageClass></Contents>",
                maybe_encode(&o.key, url),
                rfc3339_ms(o.uploaded),
                xml_escape(&o.etag),
                o.size,
                storage_class_name(o)
            )
        })
        .collect();
    let prefixes: String = page
        .delimited_prefixes
        .iter()
        .map(|p| {
            format!(
                "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
                maybe_encode(p, url)
            )
        })
        .collect();
    let mut head = format!(
        "<Name>{}</Name><Prefix>{}</Prefix><MaxKeys>{max_keys}</MaxKeys><IsTruncated>{}</IsTruncated>",
        xml_escape(bucket),
        maybe_encode(prefix.as_deref().unwrap_or(""), url),
        page.truncated
    );
    if let Some(d) = &delimiter {
        head.push_str(&format!("<Delimiter>{}</Delimiter>", maybe_encode(d, url)));
    }
    if url {
        head.push_str("<EncodingType>url</EncodingType>");
    }
    if v2 {
        head.push_str(&format!(
            "<KeyCount>{}</KeyCount>",
            page.objects.len() + page.delimited_prefixes.len()
        ));
        if let Some(t) = query.get("continuation-token") {
            head.push_str(&format!(
                "<ContinuationToken>{}</ContinuationToken>",
                xml_escape(t)
            ));
        }
        if let Some(s) = query.get("start-after") {
            head.push_str(&format!(
                "<StartAfter>{}</StartAfter>",
                maybe_encode(s, url)
            ));
        }
        if let (true, Some(c)) = (page.truncated, &page.cursor) {
            head.push_str(&format!(
                "<NextContinuationToken>{}</NextContinuationToken>",
                xml_escape(c)
            ));
        }
    } else {
        head.push_str(&format!(
            "<Marker>{}</Marker>",
            maybe_encode(query.get("marker").map(String::as_str).unwrap_or(""), url)
        ));
        if page.truncated {
            let last_key = page.objects.last().map(|o| o.key.clone());
            let last_prefix = page.delimited_prefixes.last().cloned();
            if let Some(next) = last_key.into_iter().chain(last_prefix).max() {
                head.push_str(&format!(
                    "<NextMarker>{}</NextMarker>",
                    maybe_encode(&next, url)
                ));
            }
        }
    }
    xml_ok(format!(
        "<ListBucketResult xmlns=\"{XMLNS}\">{head}{contents}{prefixes}</ListBucketResult>"
    ))
}

async fn list_uploads(
    b: &dyn R2Bucket,
    bucket: &str,
    query: &BTreeMap<String, String>,
) -> S3Result {
    let page = b
        .list_multipart_uploads(ListUploadsOptions {
            prefix: query.get("prefix").cloned().filter(|p| !p.is_empty()),
            limit: query.get("max-uploads").and_then(|m| m.parse().ok()),
            cursor: None,
        })
        .await?;
    let uploads: String = page
        .uploads
        .iter()
        .map(|u| {
            format!(
                "<Upload><Key>{}</Key><UploadId>{}</UploadId><Initiated>{}</Initiated><StorageClass>STANDARD</StorageClass></Upload>",
                xml_escape(&u.key),
                xml_escape(&u.upload_id),
                rfc3339_ms(u.initiated)
            )
        })
        .collect();
    xml_ok(format!(
        "<ListMultipartUploadsResult xmlns=\"{XMLNS}\"><Bucket>{}</Bucket><IsTruncated>{}</IsTruncated>{uploads}</ListMultipartUploadsResult>",
        xml_escape(bucket),
        page.truncated
    ))
}

async fn list_parts(b: &dyn R2Bucket, bucket: &str, key: &str, upload_id: &str) -> S3Result {
    let parts = b
        .list_parts(&R2MultipartUpload::resume(key, upload_id))
        .await?;
    let items: String = parts
        .iter()
        .map(|p| {
            format!(
                "<Part><PartNumber>{}</PartNumber><LastModified>{}</LastModified><ETag>&quot;{}&quot;</ETag><Size>{}</Size></Part>",
                p.part_number,
                rfc3339_ms(p.uploaded),
                xml_escape(&p.etag),
                p.size
            )
        })
        .collect();
    xml_ok(format!(
        "<ListPartsResult xmlns=\"{XMLNS}\"><Bucket>{}</Bucket><Key>{}</Key><UploadId>{}</UploadId><IsTruncated>false</IsTruncated>{items}</ListPartsResult>",
        xml_escape(bucket),
        xml_escape(key),
        xml_escape(upload_id)
    ))
}

/// `Fri, 27 Nov 2026 18:24:27 GMT`.
pub fn http_date(ms: u64) -> String {
    let iso = rfc3339_ms(ms);
    let (y, m, d) = (&iso[0..4], &iso[5..7], &iso[8..10]);
    let days = ms / 86_400_000;
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][m.parse::<usize>().unwrap_or(1).clamp(1, 12) - 1];
    format!("{weekday}, {d} {month} {y} {} GMT", &iso[11..19])
}

/// Parses an IMF-fixdate (`Fri, 27 Nov 2026 18:24:27 GMT`) into ms since the epoch.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 {
        return None;
    }
    let d: i64 = parts[1].parse().ok()?;
    let m = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|x| *x == parts[2])? as i64
        + 1;
    let y: i64 = parts[3].parse().ok()?;
    let hms: Vec<i64> = parts[4].split(':').filter_map(|x| x.parse().ok()).collect();
    if hms.len() != 3 {
        return None;
    }
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    u64::try_from(days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2])
        .ok()
        .map(|s| s * 1000)
}

fn http_metadata(headers: &HeaderMap) -> HttpMetadata {
    let get = |n: &str| header(headers, n).map(|v| v.into_owned());
    let encoding = get("content-encoding").and_then(|e| {
        let rest: Vec<&str> = e
            .split(',')
            .map(str::trim)
            .filter(|t| !t.eq_ignore_ascii_case("aws-chunked") && !t.is_empty())
            .collect();
        (!rest.is_empty()).then(|| rest.join(", "))
    });
    HttpMetadata {
        content_type: get("content-type"),
        content_language: get("content-language"),
        content_disposition: get("content-disposition"),
        content_encoding: encoding,
        cache_control: get("cache-control"),
        cache_expiry: get("expires").and_then(|e| parse_http_date(&e)),
    }
}

fn custom_metadata(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter_map(|(k, v)| {
            k.as_str().strip_prefix("x-amz-meta-").map(|name| {
                (
                    name.to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
        })
        .collect()
}

fn conditional(headers: &HeaderMap) -> Option<Conditional> {
    let c = Conditional {
        etag_matches: header(headers, "if-match")
            .map(|v| EtagMatcher::parse_list(&v))
            .unwrap_or_default(),
        etag_does_not_match: header(headers, "if-none-match")
            .map(|v| EtagMatcher::parse_list(&v))
            .unwrap_or_default(),
        uploaded_before: header(headers, "if-unmodified-since").and_then(|v| parse_http_date(&v)),
        uploaded_after: header(headers, "if-modified-since").and_then(|v| parse_http_date(&v)),
        seconds_granularity: true,
    };
    (c != Conditional {
        seconds_granularity: true,
        ..Default::default()
    })
    .then_some(c)
}

fn object_headers(
    mut b: axum::http::response::Builder,
    o: &R2Object,
) -> axum::http::response::Builder {
    let h = &o.http_metadata;
    b = b
        .header("etag", format!("\"{}\"", o.etag))
        .header("last-modified", http_date(o.uploaded))
        .header("accept-ranges", "bytes")
        .header(
            "content-type",
            h.content_type
                .as_deref()
                .unwrap_or("application/octet-stream"),
        );
    for (name, value) in [
        ("content-language", &h.content_language),
        ("content-disposition", &h.content_disposition),
        ("content-encoding", &h.content_encoding),
        ("cache-control", &h.cache_control),
    ] {
        if let Some(v) = value {
            b = b.header(name, crate::errors::header_text(v));
        }
    }
    if let Some(exp) = h.cache_expiry {
        b = b.header("expires", http_date(exp));
    }
    for (k, v) in &o.custom_metadata {
        b = b.header(format!("x-amz-meta-{k}"), crate::errors::header_text(v));
    }
    if o.storage_class != bindery_core::r2::StorageClass::Standard {
        b = b.header("x-amz-storage-class", storage_class_name(o));
    }
    b
}

async fn get_object(b: &dyn R2Bucket, key: &str, headers: &HeaderMap, head: bool) -> S3Result {
    let only_if = conditional(headers);
    let range = header(headers, "range").and_then(|r| R2Range::parse_header(&r));
    let not_found = || S3Error::new("NoSuchKey", 404, "The specified key does not exist.");
    if head && only_if.is_none() && range.is_none() {
        let o = b.head(key).await?.ok_or_else(not_found)?;
        return object_headers(Response::builder().status(StatusCode::OK), &o)
            .header("content-length", o.size)
            .body(Body::empty())
            .map_err(|e| Failure::Server(ServerError::internal("building an S3 response", e)));
    }
    let soft = headers.contains_key("if-none-match") || headers.contains_key("if-modified-since");
    let hard = headers.contains_key("if-match") || headers.contains_key("if-unmodified-since");
    match b
        .get(key, GetOptions { range, only_if })
        .await?
        .ok_or_else(not_found)?
    {
        R2GetResult::PreconditionFailed(o) => {
            if soft && !hard {
                object_headers(Response::builder().status(StatusCode::NOT_MODIFIED), &o)
                    .body(Body::empty())
                    .map_err(|e| {
                        Failure::Server(ServerError::internal("building an S3 response", e))
                    })
            } else {
                Err(S3Error::new(
                    "PreconditionFailed",
                    412,
                    "At least one of the pre-conditions you specified did not hold",
                )
                .into())
            }
        }
        R2GetResult::Body(body) => {
            let o = &body.object;
            let mut builder = Response::builder();
            let len = match o.range {
                Some(r) if range.is_some() => {
                    builder = builder.status(StatusCode::PARTIAL_CONTENT).header(
                        "content-range",
                        format!(
                            "bytes {}-{}/{}",
                            r.offset,
                            (r.offset + r.length).saturating_sub(1),
                            o.size
                        ),
                    );
                    r.length
                }
                _ => {
                    builder = builder.status(StatusCode::OK);
                    o.size
                }
            };
            let builder = object_headers(builder, o).header("content-length", len);
            let stream_body = if head {
                Body::empty()
            } else {
                Body::from_stream(body.body)
            };
            builder
                .body(stream_body)
                .map_err(|e| Failure::Server(ServerError::internal("building an S3 response", e)))
        }
    }
}

/// Decodes an `aws-chunked` body (`<hex size>[;chunk-signature=..]\r\n<data>\r\n ... 0\r\n
/// <trailers>\r\n`), yielding the data only.
pub fn aws_chunked(inner: ByteStream) -> ByteStream {
    enum State {
        Header,
        Data(usize),
        DataEnd,
        Done,
    }
    let bad = |m: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("aws-chunked body: {m}"),
        )
    };
    let stream = futures_util::stream::unfold(
        (inner, BytesMut::new(), State::Header, false),
        move |(mut inner, mut buf, mut state, mut eof)| async move {
            loop {
                match state {
                    State::Done => return None,
                    State::Header => {
                        if let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") {
                            let line = String::from_utf8_lossy(&buf[..pos]).into_owned();
                            buf.advance(pos + 2);
                            let size_text = line.split(';').next().unwrap_or("").trim();
                            match usize::from_str_radix(size_text, 16) {
                                Ok(0) => {
                                    state = State::Done;
                                    continue;
                                }
                                Ok(n) => {
                                    state = State::Data(n);
                                    continue;
                                }
                                Err(_) => {
                                    return Some((
                                        Err(bad("bad chunk size")),
                                        (inner, buf, State::Done, true),
                                    ));
                                }
                            }
                        }
                    }
                    State::Data(n) if !buf.is_empty() => {
                        let take = n.min(buf.len());
                        let chunk = buf.split_to(take).freeze();
                        let next = if take == n {
                            State::DataEnd
                        } else {
                            State::Data(n - take)
                        };
                        return Some((Ok(chunk), (inner, buf, next, eof)));
                    }
                    State::Data(_) => {}
                    State::DataEnd => {
                        if buf.len() >= 2 {
                            buf.advance(2);
                            state = State::Header;
                            continue;
                        }
                    }
                }
                if eof {
                    return Some((Err(bad("ended early")), (inner, buf, State::Done, true)));
                }
                match inner.next().await {
                    Some(Ok(b)) => buf.extend_from_slice(&b),
                    Some(Err(e)) => return Some((Err(e), (inner, buf, State::Done, true))),
                    None => eof = true,
                }
            }
        },
    );
    Box::pin(stream)
}

fn b64(headers: &HeaderMap, name: &'static str) -> Result<Option<Vec<u8>>, Failure> {
    match header(headers, name) {
        None => Ok(None),
        Some(v) => base64::engine::general_purpose::STANDARD
            .decode(v.trim().as_bytes())
            .map(Some)
            .map_err(|_| {
                Failure::S3(S3Error::new(
                    "InvalidDigest",
                    400,
                    format!("{name} is not base64"),
                ))
            }),
    }
}

/// The request body as the object's bytes (decoding `aws-chunked`), with its drain.
fn object_body(req: Request<Body>) -> (ByteStream, crate::body::Drain) {
    let chunked = header(req.headers(), "x-amz-content-sha256")
        .is_some_and(|v| v.starts_with("STREAMING-"))
        || header(req.headers(), "content-encoding").is_some_and(|v| v.contains("aws-chunked"));
    let streamed = body::streamed(req.into_body());
    let stream = if chunked {
        aws_chunked(streamed.stream)
    } else {
        streamed.stream
    };
    (stream, streamed.drain)
}

async fn put_object(b: &dyn R2Bucket, key: &str, req: Request<Body>) -> S3Result {
    let headers = req.headers().clone();
    let mut options = PutOptions {
        http_metadata: http_metadata(&headers),
        custom_metadata: custom_metadata(&headers),
        only_if: conditional(&headers),
        ..Default::default()
    };
    options.sha256 = b64(&headers, "x-amz-checksum-sha256")?;
    options.sha1 = b64(&headers, "x-amz-checksum-sha1")?;
    if options.sha256.is_none() && options.sha1.is_none() {
        options.md5 = b64(&headers, "content-md5")?;
    }
    if options.sha256.is_none()
        && options.sha1.is_none()
        && options.md5.is_none()
        && let Some(h) = header(&headers, "x-amz-content-sha256")
        && h.len() == 64
        && h.bytes().all(|c| c.is_ascii_hexdigit())
    {
        options.sha256 = hex::decode(h.as_bytes()).ok();
    }
    let (stream, drain) = object_body(req);
    match b.put(key, R2Body::Stream(stream), options).await {
        Ok(Some(o)) => Response::builder()
            .status(StatusCode::OK)
            .header("etag", format!("\"{}\"", o.etag))
            .body(Body::empty())
            .map_err(|e| Failure::Server(ServerError::internal("building an S3 response", e))),
        Ok(None) => {
            drain.finish().await;
            Err(S3Error::new(
                "PreconditionFailed",
                412,
                "At least one of the pre-conditions you specified did not hold",
            )
            .into())
        }
        Err(R2Error::BadDigest {
            algorithm,
            provided,
            actual,
        }) => {
            drain.finish().await;
            Err(S3Error::new(
                if algorithm == "SHA-256" && headers.contains_key("x-amz-content-sha256") && !headers.contains_key("x-amz-checksum-sha256") {
                    "XAmzContentSHA256Mismatch"
                } else {
                    "BadDigest"
                },
                400,
                format!("The {algorithm} you specified did not match what we received: {provided} vs {actual}"),
            )
            .into())
        }
        Err(e) => {
            drain.finish().await;
            Err(e.into())
        }
    }
}

async fn upload_part(
    b: &dyn R2Bucket,
    key: &str,
    query: &BTreeMap<String, String>,
    req: Request<Body>,
) -> S3Result {
    let part: u32 = query
        .get("partNumber")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| S3Error::new("InvalidArgument", 400, "partNumber must be a number"))?;
    let upload = R2MultipartUpload::resume(key, &query["uploadId"]);
    let (stream, drain) = object_body(req);
    match b.upload_part(&upload, part, R2Body::Stream(stream)).await {
        Ok(p) => Response::builder()
            .status(StatusCode::OK)
            .header("etag", format!("\"{}\"", p.etag))
            .body(Body::empty())
            .map_err(|e| Failure::Server(ServerError::internal("building an S3 response", e))),
        Err(e) => {
            drain.finish().await;
            Err(e.into())
        }
    }
}

async fn complete_upload(
    b: &dyn R2Bucket,
    bucket: &str,
    key: &str,
    upload_id: &str,
    req: Request<Body>,
) -> S3Result {
    let xml = body::read_capped(req.into_body(), XML_BODY_LIMIT).await?;
    let xml = String::from_utf8_lossy(&xml).into_owned();
    let mut parts = Vec::new();
    for p in xml_blocks(&xml, "Part") {
        let number = xml_blocks(&p, "PartNumber")
            .first()
            .and_then(|n| n.trim().parse::<u32>().ok())
            .ok_or_else(|| S3Error::new("MalformedXML", 400, "a Part without a PartNumber"))?;
        let etag = xml_blocks(&p, "ETag")
            .first()
            .map(|e| xml_unescape(e).trim().trim_matches('"').to_owned())
            .unwrap_or_default();
        parts.push(R2UploadedPart {
            part_number: number,
            etag,
        });
    }
    let o = b
        .complete_multipart_upload(&R2MultipartUpload::resume(key, upload_id), &parts)
        .await?;
    xml_ok(format!(
        "<CompleteMultipartUploadResult xmlns=\"{XMLNS}\"><Location>/{}/{}</Location><Bucket>{}</Bucket><Key>{}</Key><ETag>&quot;{}&quot;</ETag></CompleteMultipartUploadResult>",
        xml_escape(bucket),
        xml_escape(&uri_encode(key, true)),
        xml_escape(bucket),
        xml_escape(key),
        xml_escape(&o.etag)
    ))
}

async fn copy_object(
    registry: &Registry,
    dest: &dyn R2Bucket,
    key: &str,
    headers: &HeaderMap,
) -> S3Result {
    let source = header(headers, "x-amz-copy-source").unwrap_or_default();
    let source = decode(source.split('?').next().unwrap_or(""));
    let source = source.trim_start_matches('/');
    let (src_bucket, src_key) = source.split_once('/').ok_or_else(|| {
        S3Error::new(
            "InvalidArgument",
            400,
            "x-amz-copy-source must be <bucket>/<key>",
        )
    })?;
    let src = bucket_of(registry, src_bucket).await?;
    let got = src
        .get(src_key, GetOptions::default())
        .await?
        .and_then(R2GetResult::into_body)
        .ok_or_else(|| S3Error::new("NoSuchKey", 404, "The specified key does not exist."))?;
    let replace = header(headers, "x-amz-metadata-directive").is_some_and(|d| d == "REPLACE");
    let options = if replace {
        PutOptions {
            http_metadata: http_metadata(headers),
            custom_metadata: custom_metadata(headers),
            ..Default::default()
        }
    } else {
        PutOptions {
            http_metadata: got.object.http_metadata.clone(),
            custom_metadata: got.object.custom_metadata.clone(),
            ..Default::default()
        }
    };
    let o = dest
        .put(key, R2Body::Stream(got.body), options)
        .await?
        .ok_or(R2Error::PreconditionFailed)?;
    xml_ok(format!(
        "<CopyObjectResult><LastModified>{}</LastModified><ETag>&quot;{}&quot;</ETag></CopyObjectResult>",
        rfc3339_ms(o.uploaded),
        xml_escape(&o.etag)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[tokio::test]
    async fn aws_chunked_bodies_decode_across_chunk_boundaries() {
        let raw = b"5;chunk-signature=abc\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:AAAA\r\n\r\n";
        for split in [1usize, 2, 3, 7, 100] {
            let pieces: Vec<std::io::Result<Bytes>> = raw
                .chunks(split)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let decoded: Vec<u8> = aws_chunked(Box::pin(futures_util::stream::iter(pieces)))
                .map(|c| c.unwrap().to_vec())
                .collect::<Vec<_>>()
                .await
                .concat();
            assert_eq!(decoded, b"hello world", "split {split}");
        }
    }

    #[test]
    fn http_dates_round_trip() {
        let ms = 1_795_803_867_000;
        let text = http_date(ms);
        assert_eq!(text, "Fri, 27 Nov 2026 18:24:27 GMT");
        assert_eq!(parse_http_date(&text), Some(ms));
    }

    #[test]
    fn xml_blocks_find_every_part() {
        let xml = "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&quot;a&quot;</ETag></Part><Part><PartNumber>2</PartNumber><ETag>\"b\"</ETag></Part></CompleteMultipartUpload>";
        let parts = xml_blocks(xml, "Part");
        assert_eq!(parts.len(), 2);
        assert_eq!(xml_unescape(&xml_blocks(&parts[0], "ETag")[0]), "\"a\"");
    }
}
