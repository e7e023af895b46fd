//! Queue consumers: batches from Bindery's queues are delivered to the Worker's `queue()`
//! handler through the driver Worker, and the outcome it reports is applied.
//!
//! The driver answers workerd's `QueueResult`: `outcome` (`ok` or `exception`), `ackAll`,
//! `retryBatch {retry, delaySeconds}`, `explicitAcks` and `retryMessages [{msgId,
//! delaySeconds}]`. They are replayed on the [`MessageBatch`], whose precedence rules match
//! the platform's: explicit acks first, then per-message retries, `ackAll`, `retryAll`, and an
//! exception retries every message not explicitly acked.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use bindery_core::queues::{
    ConsumerSettings, HandlerError, MessageBatch, PushConsumer, QueueBroker, QueueError,
    QueueHandler, RetryOptions,
};
use serde_json::{Value, json};

use crate::driver::{DriverClient, DriverError};
use crate::queue::metrics_json;
use crate::wrangler::ConsumerDecl;

/// How long a `queue()` handler may run (the platform's wall-time limit is 15 minutes).
const HANDLER_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How long delivery waits for an unreachable driver (workerd starting) before the batch
/// counts as failed.
const UNREACHABLE_GRACE: Duration = Duration::from_secs(30);

/// The consumer settings of a wrangler `queues.consumers` entry.
pub fn settings_of(decl: &ConsumerDecl) -> ConsumerSettings {
    let defaults = ConsumerSettings::default();
    ConsumerSettings {
        max_batch_size: decl
            .max_batch_size
            .map(|n| n as usize)
            .unwrap_or(defaults.max_batch_size),
        max_batch_timeout_ms: decl
            .max_batch_timeout
            .map(|s| (s.max(0.0) * 1000.0) as u64)
            .unwrap_or(defaults.max_batch_timeout_ms),
        max_retries: decl.max_retries.unwrap_or(defaults.max_retries),
        retry_delay_secs: decl.retry_delay,
        dead_letter_queue: decl.dead_letter_queue.clone(),
        max_concurrency: decl.max_concurrency.map(|n| n as usize),
    }
}

/// Delivers batches of one queue to the Worker through the driver.
#[derive(Debug)]
pub struct DriverHandler {
    queue: String,
    client: DriverClient,
}

impl DriverHandler {
    /// A handler for `queue` calling the driver through `client`.
    pub fn new(queue: impl Into<String>, client: DriverClient) -> Self {
        Self {
            queue: queue.into(),
            client,
        }
    }
}

/// The driver's request for a batch.
pub fn batch_json(batch: &MessageBatch) -> Value {
    let messages: Vec<Value> = batch
        .messages()
        .iter()
        .map(|m| {
            json!({
                "id": m.id(),
                "timestamp": m.timestamp_ms(),
                "attempts": m.attempts(),
                "format": m.content_type().as_str(),
                "body": base64::engine::general_purpose::STANDARD.encode(m.body()),
            })
        })
        .collect();
    json!({
        "queue": batch.queue(),
        "messages": messages,
        "metadata": {"metrics": metrics_json(&batch.metrics())},
    })
}

/// Replays a `QueueResult` on the batch; `Err` when the handler threw.
pub fn apply_result(batch: &MessageBatch, result: &Value) -> Result<(), HandlerError> {
    if let Some(acks) = result.get("explicitAcks").and_then(Value::as_array) {
        for id in acks.iter().filter_map(Value::as_str) {
            if let Some(m) = batch.message(id) {
                m.ack();
            }
        }
    }
    if let Some(retries) = result.get("retryMessages").and_then(Value::as_array) {
        for r in retries {
            let Some(id) = r.get("msgId").and_then(Value::as_str) else {
                continue;
            };
            if let Some(m) = batch.message(id) {
                m.retry(RetryOptions {
                    delay_seconds: r.get("delaySeconds").and_then(Value::as_u64),
                });
            }
        }
    }
    if result.get("ackAll").and_then(Value::as_bool) == Some(true) {
        batch.ack_all();
    }
    if let Some(rb) = result.get("retryBatch")
        && rb.get("retry").and_then(Value::as_bool) == Some(true)
    {
        batch.retry_all(RetryOptions {
            delay_seconds: rb.get("delaySeconds").and_then(Value::as_u64),
        });
    }
    match result.get("outcome").and_then(Value::as_str) {
        Some("ok") => Ok(()),
        other => Err(HandlerError::new(format!(
            "the queue() handler ended with outcome {}",
            other.unwrap_or("<missing>")
        ))),
    }
}

#[async_trait]
impl QueueHandler for DriverHandler {
    async fn handle(&self, batch: MessageBatch) -> Result<(), HandlerError> {
        let request = batch_json(&batch);
        let started = std::time::Instant::now();
        loop {
            match self
                .client
                .post_json("/queue", &request, HANDLER_TIMEOUT)
                .await
            {
                Ok(result) => {
                    let outcome = result
                        .get("outcome")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_owned();
                    tracing::info!(
                        queue = %self.queue,
                        messages = batch.messages().len(),
                        %outcome,
                        "delivered batch"
                    );
                    return apply_result(&batch, &result);
                }
                Err(DriverError::Unreachable { .. }) if started.elapsed() < UNREACHABLE_GRACE => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    tracing::warn!(queue = %self.queue, error = %e, "batch delivery failed");
                    return Err(HandlerError::new(e.to_string()));
                }
            }
        }
    }
}

/// Starts a push consumer for every `worker` consumer of the project.
///
/// # Errors
///
/// The broker's error for invalid settings or a queue that already has consumers.
pub async fn start_all(
    broker: &dyn QueueBroker,
    consumers: &[ConsumerDecl],
    client: &DriverClient,
) -> Result<Vec<Box<dyn PushConsumer>>, QueueError> {
    let mut running = Vec::new();
    for decl in consumers {
        if decl.consumer_type.as_deref() == Some("http_pull") {
            continue;
        }
        let handler = Arc::new(DriverHandler::new(decl.queue.clone(), client.clone()));
        let consumer = broker
            .start_push_consumer(&decl.queue, settings_of(decl), handler)
            .await?;
        tracing::info!(queue = %decl.queue, driver = client.addr(), "started queue consumer");
        running.push(consumer);
    }
    Ok(running)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindery_core::queues::{ContentType, MessageOutcome, QueueMessage, QueueMetrics};

    fn batch(ids: &[&str]) -> MessageBatch {
        let messages = ids
            .iter()
            .map(|id| QueueMessage {
                id: (*id).to_owned(),
                timestamp_ms: 1,
                body: "{}".into(),
                content_type: ContentType::Json,
                attempts: 1,
            })
            .collect();
        MessageBatch::new("q", messages, QueueMetrics::default())
    }

    #[test]
    fn explicit_acks_and_retries_are_replayed() {
        let b = batch(&["m1", "m2", "m3"]);
        let r = json!({"outcome":"ok","ackAll":false,"retryBatch":{"retry":false},
            "explicitAcks":["m1"],"retryMessages":[{"msgId":"m2","delaySeconds":7}]});
        assert!(apply_result(&b, &r).is_ok());
        assert_eq!(
            b.outcomes(true, None),
            vec![
                MessageOutcome::Ack,
                MessageOutcome::Retry { delay_seconds: 7 },
                MessageOutcome::Ack
            ]
        );
    }

    #[test]
    fn an_exception_retries_what_was_not_acked() {
        let b = batch(&["m1", "m2"]);
        let r = json!({"outcome":"exception","ackAll":false,"retryBatch":{"retry":false},
            "explicitAcks":["m1"],"retryMessages":[]});
        assert!(apply_result(&b, &r).is_err());
        assert_eq!(
            b.outcomes(false, Some(4)),
            vec![
                MessageOutcome::Ack,
                MessageOutcome::Retry { delay_seconds: 4 }
            ]
        );
    }

    #[test]
    fn retry_all_uses_its_delay_and_ack_all_wins() {
        let b = batch(&["m1"]);
        let r = json!({"outcome":"ok","ackAll":false,"retryBatch":{"retry":true,"delaySeconds":3},
            "explicitAcks":[],"retryMessages":[]});
        apply_result(&b, &r).unwrap();
        assert_eq!(
            b.outcomes(true, None),
            vec![MessageOutcome::Retry { delay_seconds: 3 }]
        );
        let b = batch(&["m1"]);
        let r = json!({"outcome":"ok","ackAll":true,"retryBatch":{"retry":true},
            "explicitAcks":[],"retryMessages":[]});
        apply_result(&b, &r).unwrap();
        assert_eq!(b.outcomes(true, None), vec![MessageOutcome::Ack]);
    }

    #[test]
    fn wrangler_seconds_become_milliseconds() {
        let decl = ConsumerDecl {
            queue: "q".into(),
            consumer_type: None,
            max_batch_size: Some(5),
            max_batch_timeout: Some(0.5),
            max_retries: Some(1),
            retry_delay: Some(2),
            dead_letter_queue: Some("dlq".into()),
            max_concurrency: Some(3),
        };
        let s = settings_of(&decl);
        assert_eq!(s.max_batch_timeout_ms, 500);
        assert_eq!(s.max_batch_size, 5);
        assert_eq!(s.dead_letter_queue.as_deref(), Some("dlq"));
        assert_eq!(s.max_concurrency, Some(3));
    }
}
