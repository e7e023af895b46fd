//! The Cloudflare REST shapes that HTTP pull consumers use:
//!
//! | request | operation |
//! |---|---|
//! | `POST /client/v4/accounts/<account>/queues/<queue>/messages/pull` `{"batch_size","visibility_timeout_ms"}` | lease messages |
//! | `POST /client/v4/accounts/<account>/queues/<queue>/messages/ack` `{"acks":[{"lease_id"}],"retries":[{"lease_id","delay_seconds"}]}` | ack and retry |
//!
//! The account id is ignored and the queue id is the queue's name. Answers use the v4
//! envelope `{"success", "errors", "messages", "result"}`. Message bodies come back as text
//! for `json` and `text` messages and as base64 for `bytes` and `v8` ones, with the content
//! type in `metadata["CF-Content-Type"]`.

use axum::body::Body;
use axum::http::{Response, StatusCode};
use base64::Engine as _;
use bindery_core::queues::{AckRequest, ContentType, PullOptions, PullRetry};
use bindery_core::{ErrorKind, PlatformError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::errors::ServerError;
use crate::registry::{Registry, RegistryError};

const BODY_LIMIT: usize = 1024 * 1024;

fn envelope(status: StatusCode, result: Value, errors: Vec<Value>) -> Response<Body> {
    let body = json!({
        "success": errors.is_empty(),
        "errors": errors,
        "messages": [],
        "result": result,
    });
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// The v4 error envelope of `err`.
pub fn error(err: &dyn PlatformError) -> Response<Body> {
    let status = StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let code = match err.code() {
        Some(bindery_core::CloudflareCode::V4(n)) => n,
        _ if err.kind() == ErrorKind::Internal => 10001,
        _ => 10000 + u32::from(status.as_u16()),
    };
    let message = if err.kind() == ErrorKind::Internal {
        tracing::error!(error = %err, "REST request failed");
        "internal error in the Bindery server; see its log".to_owned()
    } else {
        err.to_string()
    };
    envelope(
        status,
        Value::Null,
        vec![json!({"code": code, "message": message})],
    )
}

#[derive(Deserialize)]
struct PullBody {
    #[serde(default)]
    batch_size: Option<usize>,
    #[serde(default)]
    visibility_timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
struct LeaseRef {
    lease_id: String,
    #[serde(default)]
    delay_seconds: Option<u64>,
}

#[derive(Deserialize)]
struct AckBody {
    #[serde(default)]
    acks: Vec<LeaseRef>,
    #[serde(default)]
    retries: Vec<LeaseRef>,
}

/// Serves a `/client/v4/...` request, or `None` when the path is not one of these.
pub async fn handle(registry: &Registry, path: &str, body: Body) -> Option<Response<Body>> {
    let rest = path.strip_prefix("/client/v4/accounts/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let (queue, action) = match parts.as_slice() {
        [_account, "queues", queue, "messages", action] => (*queue, *action),
        _ => return None,
    };
    if action != "pull" && action != "ack" {
        return None;
    }
    let queue = percent_encoding::percent_decode_str(queue)
        .decode_utf8_lossy()
        .into_owned();
    let raw = match crate::body::read_capped(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) => return Some(error(&e)),
    };
    let consumer = match registry.pull_consumer(&queue).await {
        Ok(c) => c,
        Err(RegistryError::Server(e)) => return Some(error(&e)),
        Err(RegistryError::Store(e)) => return Some(error(&e)),
    };
    let bad = |e: serde_json::Error| {
        error(&ServerError::BadBody {
            reason: format!("{action} body: {e}"),
        })
    };
    Some(if action == "pull" {
        let request: PullBody = if raw.is_empty() {
            PullBody {
                batch_size: None,
                visibility_timeout_ms: None,
            }
        } else {
            match serde_json::from_slice(&raw) {
                Ok(r) => r,
                Err(e) => return Some(bad(e)),
            }
        };
        let defaults = PullOptions::default();
        let options = PullOptions {
            batch_size: request.batch_size.unwrap_or(defaults.batch_size),
            visibility_timeout_ms: request
                .visibility_timeout_ms
                .unwrap_or(defaults.visibility_timeout_ms),
        };
        match consumer.pull(options).await {
            Ok(leased) => {
                let backlog = match registry.queues().await {
                    Ok(b) => bindery_core::queues::QueueBroker::metrics(&b, &queue)
                        .await
                        .map(|m| m.backlog_count)
                        .unwrap_or(0),
                    Err(_) => 0,
                };
                let messages: Vec<Value> = leased
                    .iter()
                    .map(|p| {
                        let m = &p.message;
                        let body = match m.content_type {
                            ContentType::Json | ContentType::Text => {
                                Value::String(String::from_utf8_lossy(&m.body).into_owned())
                            }
                            ContentType::Bytes | ContentType::V8 => Value::String(
                                base64::engine::general_purpose::STANDARD.encode(&m.body),
                            ),
                        };
                        json!({
                            "body": body,
                            "id": m.id,
                            "timestamp_ms": m.timestamp_ms,
                            "attempts": m.attempts,
                            "lease_id": p.lease_id,
                            "metadata": {"CF-Content-Type": m.content_type.as_str()},
                        })
                    })
                    .collect();
                envelope(
                    StatusCode::OK,
                    json!({"message_backlog_count": backlog, "messages": messages}),
                    Vec::new(),
                )
            }
            Err(e) => error(&e),
        }
    } else {
        let request: AckBody = match serde_json::from_slice(&raw) {
            Ok(r) => r,
            Err(e) => return Some(bad(e)),
        };
        let ack = AckRequest {
            acks: request.acks.into_iter().map(|a| a.lease_id).collect(),
            retries: request
                .retries
                .into_iter()
                .map(|r| PullRetry {
                    lease_id: r.lease_id,
                    delay_seconds: r.delay_seconds,
                })
                .collect(),
        };
        match consumer.ack(ack).await {
            Ok(r) => envelope(
                StatusCode::OK,
                json!({"ackCount": r.ack_count, "retryCount": r.retry_count, "warnings": r.warnings}),
                Vec::new(),
            ),
            Err(e) => error(&e),
        }
    })
}
