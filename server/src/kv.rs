//! workerd's `kvNamespace` protocol over a [`KvStore`].
//!
//! | request | operation |
//! |---|---|
//! | `GET /<key>?urlencoded=true[&cache_ttl=N]` | get (404 on a miss) |
//! | `PUT /<key>?urlencoded=true[&expiration=S][&expiration_ttl=S]`, `CF-KV-Metadata` | put |
//! | `DELETE /<key>?urlencoded=true` | delete |
//! | `POST /bulk/get` `{"keys":[..],"type":"json","withMetadata":true}` | bulk get |
//! | `GET /?key_count_limit=N&prefix=P&cursor=C` | list |
//!
//! The key is one percent-encoded path segment (`/` arrives as `%2F`; `+` stays `+`). Query
//! values are form-encoded (`+` is a space). List metadata goes back as JSON *text*, bulk-get
//! metadata as parsed JSON.

use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode};
use bindery_core::kv::{GetOptions, KvError, KvStore, ListOptions, PutOptions};
use serde::Deserialize;
use serde_json::Value;

use crate::body;
use crate::errors::{Protocol, ServerError, error_response};
use crate::wire::{ascii_json, form_query, percent_decode_path};

/// Largest bulk-get request body.
const BULK_BODY_LIMIT: usize = 1024 * 1024;

/// Handles one KV binding request.
pub async fn handle(store: &dyn KvStore, req: Request<Body>) -> Response<Body> {
    match dispatch(store, req).await {
        Ok(r) => r,
        Err(Failure::Kv(e)) => error_response(Protocol::Kv, &e),
        Err(Failure::Server(e)) => error_response(Protocol::Kv, &e),
    }
}

enum Failure {
    Kv(KvError),
    Server(ServerError),
}

impl From<KvError> for Failure {
    fn from(e: KvError) -> Self {
        Failure::Kv(e)
    }
}

impl From<ServerError> for Failure {
    fn from(e: ServerError) -> Self {
        Failure::Server(e)
    }
}

fn parse_u64(query: &[(String, String)], name: &'static str) -> Result<Option<u64>, Failure> {
    match query.iter().find(|(k, _)| k == name) {
        None => Ok(None),
        Some((_, v)) => v.trim().parse::<u64>().map(Some).map_err(|_| {
            Failure::Server(ServerError::BadQuery {
                name,
                reason: format!("{v:?} is not a non-negative integer"),
            })
        }),
    }
}

async fn dispatch(store: &dyn KvStore, req: Request<Body>) -> Result<Response<Body>, Failure> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = form_query(req.uri().query());
    if path == "/" {
        if method != Method::GET {
            return Err(no_route(&method, &path));
        }
        return list(store, &query).await;
    }
    if path == "/bulk/get" && method == Method::POST {
        return bulk_get(store, req).await;
    }
    let raw = &path[1..];
    if raw.contains('/') {
        return Err(no_route(&method, &path));
    }
    let key = percent_decode_path(raw).map_err(|reason| ServerError::BadQuery {
        name: "key",
        reason,
    })?;
    match method {
        Method::GET => get(store, &key, &query).await,
        Method::PUT => put(store, &key, &query, req).await,
        Method::DELETE => {
            store.delete(&key).await?;
            Ok(empty(StatusCode::OK))
        }
        _ => Err(no_route(&method, &path)),
    }
}

fn no_route(method: &Method, path: &str) -> Failure {
    Failure::Server(ServerError::NoRoute {
        method: method.to_string(),
        path: path.to_owned(),
    })
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

fn get_options(query: &[(String, String)]) -> Result<GetOptions, Failure> {
    Ok(GetOptions {
        cache_ttl: parse_u64(query, "cache_ttl")?,
    })
}

async fn get(
    store: &dyn KvStore,
    key: &str,
    query: &[(String, String)],
) -> Result<Response<Body>, Failure> {
    let options = get_options(query)?;
    let Some(entry) = store.get_stream(key, options).await? else {
        return Ok(Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header("content-type", "text/plain;charset=UTF-8")
            .body(Body::from("Not Found"))
            .unwrap_or_else(|_| empty(StatusCode::NOT_FOUND)));
    };
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header("content-length", entry.len);
    if let Some(meta) = &entry.metadata {
        builder = builder.header("cf-kv-metadata", ascii_json(meta));
    }
    builder
        .body(Body::from_stream(entry.body))
        .map_err(|e| Failure::Server(ServerError::internal("building the KV response", e)))
}

async fn put(
    store: &dyn KvStore,
    key: &str,
    query: &[(String, String)],
    req: Request<Body>,
) -> Result<Response<Body>, Failure> {
    let metadata = match req.headers().get("cf-kv-metadata") {
        None => None,
        Some(v) => Some(serde_json::from_slice::<Value>(v.as_bytes()).map_err(|e| {
            ServerError::BadHeader {
                name: "CF-KV-Metadata",
                reason: format!("metadata is not valid JSON: {e}"),
            }
        })?),
    };
    let options = PutOptions {
        expiration: parse_u64(query, "expiration")?,
        expiration_ttl: parse_u64(query, "expiration_ttl")?,
        metadata,
    };
    let body = body::streamed(req.into_body());
    match store.put_stream(key, body.stream, options).await {
        Ok(()) => Ok(empty(StatusCode::OK)),
        Err(e) => {
            body.drain.finish().await;
            Err(e.into())
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkRequest {
    keys: Vec<String>,
    #[serde(default, rename = "type")]
    value_type: Option<String>,
    #[serde(default)]
    with_metadata: bool,
    #[serde(default)]
    cache_ttl: Option<Value>,
}

async fn bulk_get(store: &dyn KvStore, req: Request<Body>) -> Result<Response<Body>, Failure> {
    let bytes = body::read_capped(req.into_body(), BULK_BODY_LIMIT).await?;
    let request: BulkRequest =
        serde_json::from_slice(&bytes).map_err(|e| ServerError::BadBody {
            reason: format!("bulk get body: {e}"),
        })?;
    let as_json = match request.value_type.as_deref() {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            return Err(ServerError::BadBody {
                reason: format!("bulk get type {other:?}; expected \"text\" or \"json\""),
            }
            .into());
        }
    };
    let cache_ttl = match &request.cache_ttl {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => Some(s.parse::<u64>().map_err(|_| ServerError::BadBody {
            reason: format!("cacheTtl {s:?} is not a non-negative integer"),
        })?),
        Some(other) => {
            return Err(ServerError::BadBody {
                reason: format!("cacheTtl {other} is not a non-negative integer"),
            }
            .into());
        }
    };
    let entries = store
        .get_bulk(&request.keys, GetOptions { cache_ttl })
        .await?;
    // Written by hand to keep the request order of the keys.
    let mut out = String::from("{");
    for (i, (key, entry)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::String(key.clone()).to_string());
        out.push(':');
        let item = match entry {
            None => Value::Null,
            Some(entry) => {
                let value = if as_json {
                    serde_json::from_slice::<Value>(&entry.value).map_err(|source| {
                        KvError::InvalidJson {
                            key: key.clone(),
                            source,
                        }
                    })?
                } else {
                    Value::String(String::from_utf8_lossy(&entry.value).into_owned())
                };
                if request.with_metadata {
                    serde_json::json!({
                        "value": value,
                        "metadata": entry.metadata.clone().unwrap_or(Value::Null),
                    })
                } else {
                    value
                }
            }
        };
        out.push_str(&item.to_string());
    }
    out.push('}');
    json_response(out)
}

async fn list(store: &dyn KvStore, query: &[(String, String)]) -> Result<Response<Body>, Failure> {
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let limit = parse_u64(query, "key_count_limit")?.map(|n| n as usize);
    let options = ListOptions {
        prefix: get("prefix"),
        limit,
        cursor: get("cursor").filter(|c| !c.is_empty()),
    };
    let page = store.list(options).await?;
    let keys: Vec<Value> = page
        .keys
        .into_iter()
        .map(|k| {
            let mut obj = serde_json::Map::new();
            obj.insert("name".into(), Value::String(k.name));
            if let Some(exp) = k.expiration {
                obj.insert("expiration".into(), Value::from(exp));
            }
            if let Some(meta) = k.metadata {
                // The runtime JSON-parses list metadata: send it as JSON text.
                obj.insert("metadata".into(), Value::String(meta.to_string()));
            }
            Value::Object(obj)
        })
        .collect();
    let mut body = serde_json::json!({"keys": keys, "list_complete": page.list_complete});
    if let Some(cursor) = page.cursor {
        body["cursor"] = Value::String(cursor);
    }
    json_response(body.to_string())
}

fn json_response(text: String) -> Result<Response<Body>, Failure> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from(text))
        .map_err(|e| Failure::Server(ServerError::internal("building the KV response", e)))
}
