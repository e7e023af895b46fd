//! [`Producer`]: validation, the rate limit and group-committed sends.

use std::sync::Arc;

use async_trait::async_trait;
use bindery_core::queues::{
    ContentType, MessageSendRequest, QueueError, QueueLimits, QueueMetrics, QueueProducer,
    QueueResult, SendBatchOptions, SendOptions,
};
use bytes::Bytes;

use crate::broker::{Shared, unexpected};
use crate::engine::{NewMessage, Op, Reply};
use crate::registry::QueueState;

/// Sends to one queue. Cheap to clone.
#[derive(Clone)]
pub struct Producer {
    shared: Arc<Shared>,
    state: Arc<QueueState>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("queue", &self.state.name)
            .finish_non_exhaustive()
    }
}

/// A fresh message id: 32 hex digits, random.
pub(crate) fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Checks that `body` is what `content_type` says.
fn check_body(body: &[u8], content_type: ContentType) -> QueueResult<()> {
    let invalid = |reason: String| QueueError::InvalidBody {
        content_type,
        reason,
    };
    match content_type {
        ContentType::Json => serde_json::from_slice::<serde::de::IgnoredAny>(body)
            .map(drop)
            .map_err(|e| invalid(e.to_string())),
        ContentType::Text => std::str::from_utf8(body)
            .map(drop)
            .map_err(|e| invalid(e.to_string())),
        ContentType::Bytes | ContentType::V8 => Ok(()),
    }
}

fn check_delay(delay: Option<u64>, limits: &QueueLimits) -> QueueResult<()> {
    match delay {
        Some(d) if d > limits.max_delay_secs => Err(QueueError::InvalidDelay {
            delay: d,
            max: limits.max_delay_secs,
        }),
        _ => Ok(()),
    }
}

impl Producer {
    pub(crate) fn new(shared: Arc<Shared>, state: Arc<QueueState>) -> Self {
        Self { shared, state }
    }

    /// Counts `n` messages against the per-second limit.
    fn take_rate(&self, n: u64) -> QueueResult<()> {
        let Some(limit) = self.shared.limits.max_messages_per_sec else {
            return Ok(());
        };
        let second = self.shared.clock.now_ms() / 1000;
        let mut rate = self.state.rate.lock();
        if rate.0 != second {
            *rate = (second, 0);
        }
        if rate.1 + n > limit {
            return Err(QueueError::RateLimited {
                queue: self.state.name.clone(),
                limit,
            });
        }
        rate.1 += n;
        Ok(())
    }

    fn delay_ms(&self, own: Option<u64>, batch: Option<u64>) -> u64 {
        own.or(batch)
            .unwrap_or_else(|| self.state.settings.lock().delivery_delay_secs)
            .saturating_mul(1000)
    }

    async fn append(&self, messages: Vec<NewMessage>) -> QueueResult<QueueMetrics> {
        self.take_rate(messages.len() as u64)?;
        let op = Op::Send {
            queue: self.state.id,
            messages,
            max_backlog_bytes: self.shared.limits.max_backlog_bytes,
        };
        match self.shared.committer.submit(op).await? {
            Reply::Sent { metrics, .. } => Ok(metrics),
            other => Err(unexpected("send", &other)),
        }
    }
}

#[async_trait]
impl QueueProducer for Producer {
    fn queue_name(&self) -> &str {
        &self.state.name
    }

    async fn send(&self, body: Bytes, options: SendOptions) -> QueueResult<QueueMetrics> {
        let l = &self.shared.limits;
        let len = body.len();
        if len.saturating_add(l.message_overhead_bytes) > l.max_message_bytes {
            return Err(QueueError::MessageTooLarge {
                len,
                overhead: l.message_overhead_bytes,
                limit: l.max_message_bytes,
            });
        }
        check_delay(options.delay_seconds, l)?;
        check_body(&body, options.content_type)?;
        let message = NewMessage {
            id: new_id(),
            body,
            content_type: options.content_type,
            delay_ms: self.delay_ms(options.delay_seconds, None),
        };
        self.append(vec![message]).await
    }

    async fn send_batch(
        &self,
        messages: Vec<MessageSendRequest>,
        options: SendBatchOptions,
    ) -> QueueResult<QueueMetrics> {
        let l = &self.shared.limits;
        if messages.is_empty() {
            return Err(QueueError::EmptyBatch);
        }
        if messages.len() > l.max_batch_messages {
            return Err(QueueError::BatchTooManyMessages {
                count: messages.len(),
                limit: l.max_batch_messages,
            });
        }
        check_delay(options.delay_seconds, l)?;
        let mut total = 0usize;
        for (index, m) in messages.iter().enumerate() {
            let len = m.body.len();
            if len.saturating_add(l.message_overhead_bytes) > l.max_message_bytes {
                return Err(QueueError::BatchMessageTooLarge {
                    index,
                    len,
                    overhead: l.message_overhead_bytes,
                    limit: l.max_message_bytes,
                });
            }
            total = total.saturating_add(len);
            check_delay(m.delay_seconds, l)?;
            check_body(&m.body, m.content_type)?;
        }
        if total > l.max_batch_bytes {
            return Err(QueueError::BatchTooLarge {
                len: total,
                limit: l.max_batch_bytes,
            });
        }
        let new = messages
            .into_iter()
            .map(|m| NewMessage {
                id: new_id(),
                delay_ms: self.delay_ms(m.delay_seconds, options.delay_seconds),
                body: m.body,
                content_type: m.content_type,
            })
            .collect();
        self.append(new).await
    }

    async fn metrics(&self) -> QueueResult<QueueMetrics> {
        let m = *self.state.backlog.lock();
        Ok(m)
    }
}
