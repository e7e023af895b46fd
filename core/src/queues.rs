//! The Queues contract.
//!
//! A [`QueueBroker`] holds named queues. Through it one gets:
//!
//! - a [`QueueProducer`] per queue: [`send`](QueueProducer::send) and
//!   [`send_batch`](QueueProducer::send_batch), each returning only once the messages are
//!   durable, and answering the queue's backlog [`QueueMetrics`];
//! - a push consumer ([`QueueBroker::start_push_consumer`]): the broker forms batches by
//!   [`ConsumerSettings::max_batch_size`] or [`ConsumerSettings::max_batch_timeout_ms`] and
//!   hands each [`MessageBatch`] to a [`QueueHandler`]; the handler acks or retries messages
//!   (or the whole batch), and an error retries every message it did not ack;
//! - a [`PullConsumer`]: [`pull`](PullConsumer::pull) leases messages for a visibility
//!   timeout and [`ack`](PullConsumer::ack) acks or retries them by lease id.
//!
//! Delivery is at least once: a message leaves the queue only when acked, when its retries
//! are exhausted (then it goes to the dead-letter queue if one is configured), or when it is
//! older than the queue's retention period.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;

use crate::error::{BoxError, CloudflareCode, ErrorKind, PlatformError};

/// Result alias for queue operations.
pub type QueueResult<T> = Result<T, QueueError>;

/// How a message body is encoded (`QueuesContentType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ContentType {
    /// UTF-8 JSON text. The default.
    #[default]
    Json,
    /// UTF-8 text.
    Text,
    /// Raw bytes.
    Bytes,
    /// V8 structured-clone bytes, kept opaque: only a Worker can decode them.
    V8,
}

impl ContentType {
    /// The name the platform uses (`"json"`, `"text"`, `"bytes"`, `"v8"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ContentType::Json => "json",
            ContentType::Text => "text",
            ContentType::Bytes => "bytes",
            ContentType::V8 => "v8",
        }
    }

    /// A one-byte tag for storage.
    pub fn tag(self) -> u8 {
        match self {
            ContentType::Json => 0,
            ContentType::Text => 1,
            ContentType::Bytes => 2,
            ContentType::V8 => 3,
        }
    }

    /// The content type of a storage tag.
    pub fn from_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            0 => ContentType::Json,
            1 => ContentType::Text,
            2 => ContentType::Bytes,
            3 => ContentType::V8,
            _ => return None,
        })
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ContentType {
    type Err = QueueError;

    fn from_str(s: &str) -> QueueResult<Self> {
        match s {
            "json" => Ok(ContentType::Json),
            "text" => Ok(ContentType::Text),
            "bytes" => Ok(ContentType::Bytes),
            "v8" => Ok(ContentType::V8),
            other => Err(QueueError::InvalidContentType {
                given: other.to_owned(),
            }),
        }
    }
}

/// Options of [`QueueProducer::send`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// How the body is encoded. Default: [`ContentType::Json`].
    pub content_type: ContentType,
    /// Seconds before the message becomes visible to consumers, at most
    /// [`QueueLimits::max_delay_secs`]. `None` uses the queue's default delivery delay;
    /// `Some(0)` bypasses it. Default: `None`.
    pub delay_seconds: Option<u64>,
}

/// One message of [`QueueProducer::send_batch`] (`MessageSendRequest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSendRequest {
    /// The encoded body.
    pub body: Bytes,
    /// How the body is encoded. Default: [`ContentType::Json`].
    pub content_type: ContentType,
    /// This message's delay; overrides the batch's and the queue's. Default: `None`.
    pub delay_seconds: Option<u64>,
}

impl MessageSendRequest {
    /// A message with the given body and content type and no delay of its own.
    pub fn new(body: impl Into<Bytes>, content_type: ContentType) -> Self {
        Self {
            body: body.into(),
            content_type,
            delay_seconds: None,
        }
    }

    /// A JSON message holding `text`, which must be valid JSON.
    pub fn json(text: impl Into<Bytes>) -> Self {
        Self::new(text, ContentType::Json)
    }

    /// A text message.
    pub fn text(text: impl Into<String>) -> Self {
        Self::new(Bytes::from(text.into()), ContentType::Text)
    }

    /// The same message with its own delay.
    pub fn with_delay(mut self, seconds: u64) -> Self {
        self.delay_seconds = Some(seconds);
        self
    }
}

/// Options of [`QueueProducer::send_batch`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendBatchOptions {
    /// Delay for every message that has none of its own; `None` uses the queue's default.
    /// Default: `None`.
    pub delay_seconds: Option<u64>,
}

/// A queue's backlog, as the producer protocol reports it after each send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueMetrics {
    /// Messages stored and not yet acked, dead-lettered or expired (delayed and leased
    /// messages included).
    pub backlog_count: u64,
    /// Sum of those messages' body sizes in bytes.
    pub backlog_bytes: u64,
    /// Timestamp (ms since the UNIX epoch) of the oldest of them; `None` when empty.
    pub oldest_message_timestamp_ms: Option<u64>,
}

/// Per-queue settings (the producer side of wrangler's queue configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    /// Delay applied to messages sent without one (`delivery_delay`). Default: 0.
    pub delivery_delay_secs: u64,
    /// Messages older than this are deleted, whatever their retries
    /// (`message_retention_period`). Default: 4 days (345,600 s); 60 s to 14 days.
    pub message_retention_period_secs: u64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            delivery_delay_secs: 0,
            message_retention_period_secs: 4 * 24 * 3600,
        }
    }
}

/// Settings of a push consumer (wrangler's `[[queues.consumers]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSettings {
    /// Most messages in one batch, 1..=100. Default: 10.
    pub max_batch_size: usize,
    /// Longest wait, in milliseconds of the broker's clock, for a batch to fill before a
    /// partial batch is delivered; 0..=60,000. Default: 5,000.
    pub max_batch_timeout_ms: u64,
    /// Retries after the first delivery, 0..=100: a message is delivered at most
    /// `max_retries + 1` times. Default: 3.
    pub max_retries: u32,
    /// Delay of a retried message when neither `retry()` nor `retry_all()` gave one.
    /// Default: `None` (0 s).
    pub retry_delay_secs: Option<u64>,
    /// Where messages go once their retries are exhausted; created on first use. `None`
    /// deletes them. Default: `None`.
    pub dead_letter_queue: Option<String>,
    /// Most batches in flight at once, 1..=250. `None` means the platform maximum (250).
    /// Default: `None`.
    pub max_concurrency: Option<usize>,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            max_batch_size: 10,
            max_batch_timeout_ms: 5_000,
            max_retries: 3,
            retry_delay_secs: None,
            dead_letter_queue: None,
            max_concurrency: None,
        }
    }
}

/// Settings of a pull consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullConsumerSettings {
    /// Deliveries after the first, 0..=100; a message is leased at most `max_retries + 1`
    /// times. Default: 3.
    pub max_retries: u32,
    /// Where messages go once their retries are exhausted. `None` deletes them.
    /// Default: `None`.
    pub dead_letter_queue: Option<String>,
}

impl Default for PullConsumerSettings {
    fn default() -> Self {
        Self {
            max_retries: 3,
            dead_letter_queue: None,
        }
    }
}

/// Options of [`PullConsumer::pull`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullOptions {
    /// Most messages to lease, 1..=100. Default: 5.
    pub batch_size: usize,
    /// How long leased messages stay invisible to other pulls, in milliseconds, at most
    /// 12 hours. Default: 30,000.
    pub visibility_timeout_ms: u64,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            batch_size: 5,
            visibility_timeout_ms: 30_000,
        }
    }
}

/// A message as stored and delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    /// Unique id, kept when the message moves to a dead-letter queue.
    pub id: String,
    /// When the message was sent, ms since the UNIX epoch by the broker's clock.
    pub timestamp_ms: u64,
    /// The encoded body.
    pub body: Bytes,
    /// How the body is encoded.
    pub content_type: ContentType,
    /// This delivery's number, from 1.
    pub attempts: u32,
}

impl QueueMessage {
    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A message leased by [`PullConsumer::pull`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledMessage {
    /// The message.
    pub message: QueueMessage,
    /// Names this lease in [`PullConsumer::ack`].
    pub lease_id: String,
}

/// A retry request of [`PullConsumer::ack`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRetry {
    /// The lease of the message to retry.
    pub lease_id: String,
    /// Seconds before it becomes visible again. Default: 0.
    pub delay_seconds: Option<u64>,
}

/// The body of [`PullConsumer::ack`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckRequest {
    /// Lease ids of messages to ack (delete).
    pub acks: Vec<String>,
    /// Messages to put back, possibly after a delay.
    pub retries: Vec<PullRetry>,
}

/// The answer of [`PullConsumer::ack`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckResponse {
    /// Acks accepted.
    pub ack_count: usize,
    /// Retries accepted.
    pub retry_count: usize,
    /// One line per lease id that could not be read.
    pub warnings: Vec<String>,
}

/// Options of [`MessageBatch::retry_all`] and [`Message::retry`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryOptions {
    /// Seconds before the message becomes visible again. `None` uses the batch's
    /// `retry_all` delay, then the consumer's `retry_delay`. Default: `None`.
    pub delay_seconds: Option<u64>,
}

impl RetryOptions {
    /// Retry after `seconds`.
    pub fn delay(seconds: u64) -> Self {
        Self {
            delay_seconds: Some(seconds),
        }
    }
}

/// What happens to one delivered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Delete it.
    Ack,
    /// Deliver it again after `delay_seconds` (or send it to the dead-letter queue when its
    /// retries are exhausted).
    Retry {
        /// Seconds before it becomes visible again.
        delay_seconds: u64,
    },
}

/// The first explicit call made on one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Explicit {
    Ack,
    Retry(Option<u64>),
}

#[derive(Debug, Default)]
struct BatchCalls {
    explicit: Vec<Option<Explicit>>,
    ack_all: bool,
    retry_all: Option<Option<u64>>,
}

/// A batch handed to a push consumer's [`QueueHandler`] (`MessageBatch`).
///
/// Clones share state: a call made through any clone counts. Precedence follows the
/// platform: the first `ack`/`retry` on a message wins; per-message calls beat
/// [`ack_all`](Self::ack_all) and [`retry_all`](Self::retry_all); `ack_all` beats
/// `retry_all`; a message with no call is acked when the handler succeeds and retried when
/// it fails.
#[derive(Debug, Clone)]
pub struct MessageBatch {
    queue: String,
    messages: Vec<Message>,
    metrics: QueueMetrics,
    calls: Arc<Mutex<BatchCalls>>,
}

/// One message of a [`MessageBatch`], with its `ack`/`retry` calls.
#[derive(Debug, Clone)]
pub struct Message {
    message: QueueMessage,
    index: usize,
    calls: Arc<Mutex<BatchCalls>>,
}

impl Message {
    /// Unique id.
    pub fn id(&self) -> &str {
        &self.message.id
    }

    /// When it was sent, ms since the UNIX epoch.
    pub fn timestamp_ms(&self) -> u64 {
        self.message.timestamp_ms
    }

    /// The encoded body.
    pub fn body(&self) -> &Bytes {
        &self.message.body
    }

    /// How the body is encoded.
    pub fn content_type(&self) -> ContentType {
        self.message.content_type
    }

    /// This delivery's number, from 1.
    pub fn attempts(&self) -> u32 {
        self.message.attempts
    }

    /// The message's data.
    pub fn message(&self) -> &QueueMessage {
        &self.message
    }

    /// Acks the message, unless an earlier `ack` or `retry` on it was made.
    pub fn ack(&self) {
        self.explicit(Explicit::Ack);
    }

    /// Retries the message, unless an earlier `ack` or `retry` on it was made.
    pub fn retry(&self, options: RetryOptions) {
        self.explicit(Explicit::Retry(options.delay_seconds));
    }

    fn explicit(&self, call: Explicit) {
        let mut calls = self.calls.lock();
        let slot = &mut calls.explicit[self.index];
        if slot.is_none() {
            *slot = Some(call);
        }
    }
}

impl MessageBatch {
    /// A batch of `messages` from `queue`, with no calls made yet.
    pub fn new(
        queue: impl Into<String>,
        messages: Vec<QueueMessage>,
        metrics: QueueMetrics,
    ) -> Self {
        let calls = Arc::new(Mutex::new(BatchCalls {
            explicit: vec![None; messages.len()],
            ..Default::default()
        }));
        let messages = messages
            .into_iter()
            .enumerate()
            .map(|(index, message)| Message {
                message,
                index,
                calls: Arc::clone(&calls),
            })
            .collect();
        Self {
            queue: queue.into(),
            messages,
            metrics,
            calls,
        }
    }

    /// The queue's name.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The messages, in delivery order.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The message with `id`, if it is in the batch.
    pub fn message(&self, id: &str) -> Option<&Message> {
        self.messages.iter().find(|m| m.id() == id)
    }

    /// The queue's backlog when the batch was formed (`batch.metadata.metrics`).
    pub fn metrics(&self) -> QueueMetrics {
        self.metrics
    }

    /// Acks every message without an explicit call.
    pub fn ack_all(&self) {
        self.calls.lock().ack_all = true;
    }

    /// Retries every message without an explicit call (unless [`ack_all`](Self::ack_all)
    /// was called). The first `retry_all` sets the delay.
    pub fn retry_all(&self, options: RetryOptions) {
        let mut calls = self.calls.lock();
        if calls.retry_all.is_none() {
            calls.retry_all = Some(options.delay_seconds);
        }
    }

    /// What happens to each message (in order) given whether the handler succeeded and the
    /// consumer's default `retry_delay`.
    pub fn outcomes(
        &self,
        handler_succeeded: bool,
        retry_delay_secs: Option<u64>,
    ) -> Vec<MessageOutcome> {
        let calls = self.calls.lock();
        let batch_delay = calls.retry_all.flatten();
        let retry_rest = (calls.retry_all.is_some() || !handler_succeeded) && !calls.ack_all;
        calls
            .explicit
            .iter()
            .map(|call| match call {
                Some(Explicit::Ack) => MessageOutcome::Ack,
                Some(Explicit::Retry(delay)) => MessageOutcome::Retry {
                    delay_seconds: delay.or(batch_delay).or(retry_delay_secs).unwrap_or(0),
                },
                None if retry_rest => MessageOutcome::Retry {
                    delay_seconds: batch_delay.or(retry_delay_secs).unwrap_or(0),
                },
                None => MessageOutcome::Ack,
            })
            .collect()
    }
}

/// The failure of a [`QueueHandler`]: the batch's messages not explicitly acked are
/// retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    /// What went wrong, for logs.
    pub message: String,
}

impl HandlerError {
    /// A handler error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "queue handler failed: {}", self.message)
    }
}

impl std::error::Error for HandlerError {}

/// A push consumer's code (the Worker's `queue()` handler).
///
/// # Contract
///
/// Called with non-empty batches only. Record outcomes through the batch's methods;
/// returning `Ok` acks every message without an explicit call (unless `retry_all` was
/// called), returning `Err` retries them. A panic counts as `Err`.
#[async_trait]
pub trait QueueHandler: Send + Sync + 'static {
    /// Handles one batch.
    async fn handle(&self, batch: MessageBatch) -> Result<(), HandlerError>;
}

/// A [`QueueHandler`] made from an async closure; see [`handler_fn`].
pub struct HandlerFn<F>(F);

impl<F> fmt::Debug for HandlerFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HandlerFn")
    }
}

/// Wraps `f(batch) -> impl Future<Output = Result<(), HandlerError>>` as a handler.
pub fn handler_fn<F, Fut>(f: F) -> HandlerFn<F>
where
    F: Fn(MessageBatch) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    HandlerFn(f)
}

#[async_trait]
impl<F, Fut> QueueHandler for HandlerFn<F>
where
    F: Fn(MessageBatch) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    async fn handle(&self, batch: MessageBatch) -> Result<(), HandlerError> {
        (self.0)(batch).await
    }
}

/// Sends messages to one queue (the `Queue` binding).
///
/// # Contract
///
/// - Every message is validated (content type, size, delay) before anything is written; a
///   batch is written whole or not at all.
/// - `send` and `send_batch` return only once the messages are durable; concurrent senders
///   share commits.
/// - A delayed message is invisible to consumers until its delay has passed by the clock.
///
/// # Errors
///
/// [`QueueError`] naming the broken limit; nothing is written on error.
#[async_trait]
pub trait QueueProducer: Send + Sync + 'static {
    /// The queue's name.
    fn queue_name(&self) -> &str;

    /// Sends one message; answers the backlog after the send.
    async fn send(&self, body: Bytes, options: SendOptions) -> QueueResult<QueueMetrics>;

    /// Sends up to 100 messages (256 KB) at once; answers the backlog after the send.
    async fn send_batch(
        &self,
        messages: Vec<MessageSendRequest>,
        options: SendBatchOptions,
    ) -> QueueResult<QueueMetrics>;

    /// The backlog now.
    async fn metrics(&self) -> QueueResult<QueueMetrics>;
}

/// Leases messages from one queue (an `http_pull` consumer).
///
/// # Contract
///
/// - `pull` returns at once, with between 0 and `batch_size` visible messages; each is
///   invisible to other pulls until its visibility timeout passes, then visible again with
///   `attempts` one higher. Concurrent pulls get distinct messages.
/// - `ack` is permissive: a lease that expired, or whose message was leased again since,
///   is still accepted; a lease of a message already gone counts as acked.
/// - Once a message has been leased `max_retries + 1` times, it is not leased again: it goes
///   to the dead-letter queue, or is deleted.
#[async_trait]
pub trait PullConsumer: Send + Sync + 'static {
    /// The queue's name.
    fn queue_name(&self) -> &str;

    /// Leases up to `options.batch_size` visible messages.
    async fn pull(&self, options: PullOptions) -> QueueResult<Vec<PulledMessage>>;

    /// Acks and retries leased messages.
    async fn ack(&self, request: AckRequest) -> QueueResult<AckResponse>;
}

/// A running push consumer. Dropping it stops the consumer without waiting.
#[async_trait]
pub trait PushConsumer: Send + Sync + 'static {
    /// The queue's name.
    fn queue_name(&self) -> &str;

    /// Stops forming batches, waits for the batches in flight to be settled, and stops.
    /// Calling it again does nothing.
    async fn shutdown(&self);
}

/// A set of named queues sharing one store.
///
/// # Contract
///
/// - Queues are created on first use with default [`QueueSettings`] (dead-letter queues
///   too); [`create_queue`](Self::create_queue) sets the settings of a new or existing queue.
/// - A queue has either one push consumer or any number of pull consumers, not both.
#[async_trait]
pub trait QueueBroker: Send + Sync + 'static {
    /// Creates `name`, or updates its settings.
    async fn create_queue(&self, name: &str, settings: QueueSettings) -> QueueResult<()>;

    /// The producer of `name`.
    async fn producer(&self, name: &str) -> QueueResult<Arc<dyn QueueProducer>>;

    /// Starts the push consumer of `name`.
    async fn start_push_consumer(
        &self,
        name: &str,
        settings: ConsumerSettings,
        handler: Arc<dyn QueueHandler>,
    ) -> QueueResult<Box<dyn PushConsumer>>;

    /// A pull consumer of `name`.
    async fn pull_consumer(
        &self,
        name: &str,
        settings: PullConsumerSettings,
    ) -> QueueResult<Arc<dyn PullConsumer>>;

    /// The backlog of `name`.
    async fn metrics(&self, name: &str) -> QueueResult<QueueMetrics>;
}

/// Queues' documented limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLimits {
    /// Largest message, body plus [`message_overhead_bytes`](Self::message_overhead_bytes).
    /// Cloudflare: 128 KB, with 1 KB = 1000 bytes (128,000).
    pub max_message_bytes: usize,
    /// Internal metadata counted toward the message limit. Cloudflare: about 100 bytes.
    pub message_overhead_bytes: usize,
    /// Most messages in one `send_batch`. Cloudflare: 100.
    pub max_batch_messages: usize,
    /// Largest `send_batch`, as the sum of its bodies. Cloudflare: 256 KB (256,000).
    pub max_batch_bytes: usize,
    /// Longest `delay_seconds` of a send or retry, and longest queue delivery delay.
    /// Cloudflare: 24 h (86,400).
    pub max_delay_secs: u64,
    /// Largest consumer batch (push `max_batch_size`, pull `batch_size`). Cloudflare: 100.
    pub max_consumer_batch_size: usize,
    /// Longest push `max_batch_timeout`, ms. Cloudflare: 60 s.
    pub max_batch_timeout_ms: u64,
    /// Largest `max_retries`. Cloudflare: 100.
    pub max_retries: u32,
    /// Most push batches in flight. Cloudflare: 250.
    pub max_concurrency: usize,
    /// Longest pull visibility timeout, ms. Cloudflare: 12 h.
    pub max_visibility_timeout_ms: u64,
    /// Shortest retention period, seconds. Cloudflare: 60.
    pub min_retention_secs: u64,
    /// Longest retention period, seconds. Cloudflare: 14 days.
    pub max_retention_secs: u64,
    /// Largest backlog per queue (sum of bodies). Cloudflare: 25 GB.
    pub max_backlog_bytes: u64,
    /// Most messages sent per second per queue; `None` disables the check.
    /// Cloudflare: 5,000.
    pub max_messages_per_sec: Option<u64>,
}

impl QueueLimits {
    /// Cloudflare's documented values.
    pub fn cloudflare() -> Self {
        Self {
            max_message_bytes: 128_000,
            message_overhead_bytes: 100,
            max_batch_messages: 100,
            max_batch_bytes: 256_000,
            max_delay_secs: 86_400,
            max_consumer_batch_size: 100,
            max_batch_timeout_ms: 60_000,
            max_retries: 100,
            max_concurrency: 250,
            max_visibility_timeout_ms: 12 * 3600 * 1000,
            min_retention_secs: 60,
            max_retention_secs: 14 * 24 * 3600,
            max_backlog_bytes: 25_000_000_000,
            max_messages_per_sec: Some(5_000),
        }
    }

    /// Relaxed limits: sizes, rates and the backlog unbounded, retention from 1 s to 100
    /// years. Batches and consumer settings keep the platform's ranges, which shape the API.
    pub fn unbounded() -> Self {
        Self {
            max_message_bytes: usize::MAX,
            message_overhead_bytes: 0,
            max_batch_messages: usize::MAX,
            max_batch_bytes: usize::MAX,
            max_delay_secs: 100 * 365 * 86_400,
            max_consumer_batch_size: 100,
            max_batch_timeout_ms: 60_000,
            max_retries: 100,
            max_concurrency: 250,
            max_visibility_timeout_ms: 100 * 365 * 86_400_000,
            min_retention_secs: 1,
            max_retention_secs: 100 * 365 * 86_400,
            max_backlog_bytes: u64::MAX,
            max_messages_per_sec: None,
        }
    }
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self::cloudflare()
    }
}

/// Everything that can go wrong in a queue operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// A message is larger than the limit.
    #[error(
        "message length of {len} bytes (body plus {overhead} bytes of metadata) exceeds limit of {limit}"
    )]
    MessageTooLarge {
        /// Body length in bytes.
        len: usize,
        /// Metadata counted with it.
        overhead: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A batch member is larger than the message limit.
    #[error(
        "message {index} in batch has length {len} bytes (body plus {overhead} bytes of metadata) which exceeds single message size limit of {limit}"
    )]
    BatchMessageTooLarge {
        /// Position in the batch.
        index: usize,
        /// Body length in bytes.
        len: usize,
        /// Metadata counted with it.
        overhead: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A batch has too many messages.
    #[error("batch message count of {count} exceeds limit of {limit}")]
    BatchTooManyMessages {
        /// Messages in the batch.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A batch's bodies together are larger than the limit.
    #[error("batch size of {len} bytes exceeds limit of {limit}")]
    BatchTooLarge {
        /// Sum of body lengths.
        len: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// `send_batch` was given no messages.
    #[error("sendBatch() requires at least one message")]
    EmptyBatch,
    /// An unknown content type name.
    #[error(
        "message content type {given} is invalid; if specified, must be one of 'text', 'json', 'bytes', or 'v8'"
    )]
    InvalidContentType {
        /// The name given.
        given: String,
    },
    /// A body does not match its declared content type.
    #[error("message body is not valid {content_type}: {reason}")]
    InvalidBody {
        /// The declared content type.
        content_type: ContentType,
        /// What is wrong.
        reason: String,
    },
    /// A delay is over the limit.
    #[error("message delay {delay} is invalid; the limit is {max} seconds")]
    InvalidDelay {
        /// The delay given, seconds.
        delay: u64,
        /// The largest allowed, seconds.
        max: u64,
    },
    /// A consumer, pull or queue setting is out of range.
    #[error("{name} of {value} is invalid; it must be between {min} and {max}")]
    InvalidSetting {
        /// The setting.
        name: &'static str,
        /// The value given.
        value: u64,
        /// The smallest allowed.
        min: u64,
        /// The largest allowed.
        max: u64,
    },
    /// A queue name breaks the naming rules.
    #[error("queue name {name:?} is invalid: {reason}")]
    InvalidQueueName {
        /// The name given.
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// The consumer requested conflicts with one already attached to the queue.
    #[error(
        "queue {queue:?} already has {existing}; a queue has one push consumer or pull consumers, not both"
    )]
    ConsumerConflict {
        /// The queue.
        queue: String,
        /// What it already has.
        existing: &'static str,
    },
    /// More messages per second than the limit.
    #[error("Queue is overloaded. ({queue:?} accepts at most {limit} messages per second)")]
    RateLimited {
        /// The queue.
        queue: String,
        /// Messages per second allowed.
        limit: u64,
    },
    /// The backlog would exceed its limit.
    #[error(
        "Storage Limit Exceeded: queue {queue:?} would hold {bytes} bytes; the limit is {limit}"
    )]
    BacklogFull {
        /// The queue.
        queue: String,
        /// Backlog bytes after the send.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// The engine failed.
    #[error("queue storage engine failed during {op}: {source}")]
    Engine {
        /// The operation that failed.
        op: &'static str,
        /// The engine's error.
        source: BoxError,
    },
    /// An earlier engine failure left the store in an unknown state; it refuses writes.
    #[error("queue store refuses writes after an earlier storage failure: {reason}")]
    Poisoned {
        /// The earlier failure.
        reason: String,
    },
    /// The broker was closed.
    #[error("queue broker is closed")]
    Closed,
}

impl QueueError {
    /// Wraps an engine error.
    pub fn engine(op: &'static str, source: impl Into<BoxError>) -> Self {
        QueueError::Engine {
            op,
            source: source.into(),
        }
    }
}

impl PlatformError for QueueError {
    fn kind(&self) -> ErrorKind {
        match self {
            QueueError::MessageTooLarge { .. }
            | QueueError::BatchMessageTooLarge { .. }
            | QueueError::BatchTooManyMessages { .. }
            | QueueError::BatchTooLarge { .. }
            | QueueError::BacklogFull { .. } => ErrorKind::TooLarge,
            QueueError::EmptyBatch
            | QueueError::InvalidContentType { .. }
            | QueueError::InvalidBody { .. }
            | QueueError::InvalidDelay { .. }
            | QueueError::InvalidSetting { .. }
            | QueueError::InvalidQueueName { .. } => ErrorKind::InvalidInput,
            QueueError::ConsumerConflict { .. } => ErrorKind::Conflict,
            QueueError::RateLimited { .. } => ErrorKind::RateLimited,
            QueueError::Engine { .. } | QueueError::Poisoned { .. } => ErrorKind::Internal,
            QueueError::Closed => ErrorKind::Unavailable,
        }
    }

    /// `10250` for an overloaded queue (as workerd reports it) and `15000` ("Unknown
    /// Internal Error") for engine failures; none otherwise.
    fn code(&self) -> Option<CloudflareCode> {
        match self {
            QueueError::RateLimited { .. } => Some(CloudflareCode::V4(10250)),
            QueueError::Engine { .. } | QueueError::Poisoned { .. } => {
                Some(CloudflareCode::V4(15000))
            }
            _ => None,
        }
    }
}

/// Checks a queue name: 1 to 63 ASCII letters, digits, `-` or `_`.
pub fn validate_queue_name(name: &str) -> QueueResult<()> {
    let bad = |reason| {
        Err(QueueError::InvalidQueueName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 63 {
        return bad("it is longer than 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return bad("only ASCII letters, digits, '-' and '_' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: usize) -> MessageBatch {
        let msgs = (0..n)
            .map(|i| QueueMessage {
                id: format!("m{i}"),
                timestamp_ms: 1,
                body: Bytes::new(),
                content_type: ContentType::Json,
                attempts: 1,
            })
            .collect();
        MessageBatch::new("q", msgs, QueueMetrics::default())
    }

    #[test]
    fn first_call_on_a_message_wins_and_beats_batch_calls() {
        let b = batch(3);
        b.messages()[0].ack();
        b.messages()[0].retry(RetryOptions::delay(9));
        b.messages()[1].retry(RetryOptions::delay(7));
        b.messages()[1].ack();
        b.ack_all();
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
    fn handler_failure_retries_all_but_explicit_acks_with_the_default_delay() {
        let b = batch(2);
        b.messages()[0].ack();
        assert_eq!(
            b.outcomes(false, Some(4)),
            vec![
                MessageOutcome::Ack,
                MessageOutcome::Retry { delay_seconds: 4 }
            ]
        );
    }

    #[test]
    fn retry_all_delay_beats_the_consumer_delay_and_message_delay_beats_both() {
        let b = batch(2);
        b.retry_all(RetryOptions::delay(3));
        b.messages()[1].retry(RetryOptions::delay(8));
        assert_eq!(
            b.outcomes(true, Some(1)),
            vec![
                MessageOutcome::Retry { delay_seconds: 3 },
                MessageOutcome::Retry { delay_seconds: 8 }
            ]
        );
    }
}
