//! workerd's `queue` (producer) protocol over a [`QueueProducer`].
//!
//! | request | operation |
//! |---|---|
//! | `POST /message`, `X-Msg-Fmt`, `X-Msg-Delay-Secs`, body = the serialized message | send |
//! | `POST /batch`, `X-Msg-Delay-Secs`, `{"messages":[{"body":"<base64>","contentType":"json","delaySecs":5}]}` | sendBatch |
//! | `GET /metrics` | metrics |
//!
//! A missing format means `v8` (compatibility dates before 2024-03-18): the bytes are kept
//! opaque and handed back to the consumer as they came. Sends answer
//! `{"metadata":{"metrics":{...}}}` with status 200; errors carry `CF-Queues-Error-Code` and
//! `CF-Queues-Error-Cause`.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, Response, StatusCode};
use base64::Engine as _;
use bindery_core::queues::{
    ContentType, MessageSendRequest, QueueError, QueueMetrics, QueueProducer, SendBatchOptions,
    SendOptions,
};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::body;
use crate::errors::{Protocol, ServerError, error_response};

/// Largest `/message` body read (the store enforces the message limit itself).
const MESSAGE_BODY_LIMIT: usize = 1024 * 1024;
/// Largest `/batch` body read (base64 makes it a third larger than the messages).
const BATCH_BODY_LIMIT: usize = 4 * 1024 * 1024;

enum Failure {
    Queue(QueueError),
    Server(ServerError),
}

impl From<QueueError> for Failure {
    fn from(e: QueueError) -> Self {
        Failure::Queue(e)
    }
}

impl From<ServerError> for Failure {
    fn from(e: ServerError) -> Self {
        Failure::Server(e)
    }
}

/// The metrics object of the protocol; a missing oldest timestamp is `0`.
pub fn metrics_json(m: &QueueMetrics) -> Value {
    json!({
        "backlogCount": m.backlog_count,
        "backlogBytes": m.backlog_bytes,
        "oldestMessageTimestamp": m.oldest_message_timestamp_ms.unwrap_or(0),
    })
}

/// Handles one queue binding request.
pub async fn handle(producer: &dyn QueueProducer, req: Request<Body>) -> Response<Body> {
    match dispatch(producer, req).await {
        Ok(r) => r,
        Err(Failure::Queue(e)) => error_response(Protocol::Queue, &e),
        Err(Failure::Server(e)) => error_response(Protocol::Queue, &e),
    }
}

fn delay(headers: &HeaderMap) -> Result<Option<u64>, Failure> {
    match headers.get("x-msg-delay-secs") {
        None => Ok(None),
        Some(v) => std::str::from_utf8(v.as_bytes())
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| {
                Failure::Server(ServerError::BadHeader {
                    name: "X-Msg-Delay-Secs",
                    reason: "not a non-negative integer".into(),
                })
            }),
    }
}

fn format(name: Option<&str>) -> Result<ContentType, Failure> {
    match name {
        None => Ok(ContentType::V8),
        Some(s) => s.parse::<ContentType>().map_err(Failure::Queue),
    }
}

fn ok(v: Value) -> Result<Response<Body>, Failure> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from(v.to_string()))
        .map_err(|e| Failure::Server(ServerError::internal("building the queue response", e)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchBody {
    messages: Vec<BatchMessage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchMessage {
    body: String,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    delay_secs: Option<u64>,
}

async fn dispatch(
    producer: &dyn QueueProducer,
    req: Request<Body>,
) -> Result<Response<Body>, Failure> {
    let path = req.uri().path().to_owned();
    match (req.method().clone(), path.as_str()) {
        (Method::POST, "/message") => {
            let fmt = req
                .headers()
                .get("x-msg-fmt")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned());
            let options = SendOptions {
                content_type: format(fmt.as_deref())?,
                delay_seconds: delay(req.headers())?,
            };
            let body = body::read_capped(req.into_body(), MESSAGE_BODY_LIMIT).await?;
            let metrics = producer.send(body, options).await?;
            ok(json!({"metadata": {"metrics": metrics_json(&metrics)}}))
        }
        (Method::POST, "/batch") => {
            let options = SendBatchOptions {
                delay_seconds: delay(req.headers())?,
            };
            let raw = body::read_capped(req.into_body(), BATCH_BODY_LIMIT).await?;
            let batch: BatchBody =
                serde_json::from_slice(&raw).map_err(|e| ServerError::BadBody {
                    reason: format!("sendBatch body: {e}"),
                })?;
            let mut messages = Vec::with_capacity(batch.messages.len());
            for (i, m) in batch.messages.into_iter().enumerate() {
                let body = base64::engine::general_purpose::STANDARD
                    .decode(m.body.as_bytes())
                    .map_err(|e| ServerError::BadBody {
                        reason: format!("message {i}: body is not base64: {e}"),
                    })?;
                messages.push(MessageSendRequest {
                    body: Bytes::from(body),
                    content_type: format(m.content_type.as_deref())?,
                    delay_seconds: m.delay_secs,
                });
            }
            let metrics = producer.send_batch(messages, options).await?;
            ok(json!({"metadata": {"metrics": metrics_json(&metrics)}}))
        }
        (Method::GET, "/metrics") => ok(metrics_json(&producer.metrics().await?)),
        (method, path) => Err(Failure::Server(ServerError::NoRoute {
            method: method.to_string(),
            path: path.to_owned(),
        })),
    }
}
