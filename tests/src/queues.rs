//! Queues conformance: one function per documented behaviour (spec section 5).
//!
//! Cases never sleep for time to pass: delays, batch timeouts, leases and retention move
//! with the subject's [`ManualClock`]. Real time bounds only waits for something that must
//! happen promptly (a batch being delivered, a settlement being committed). Absence is
//! shown deterministically: a later, undelayed "sentinel" message arrives alone.

use std::any::Any;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bindery_core::queues::{
    AckRequest, ConsumerSettings, ContentType, HandlerError, MessageBatch, MessageSendRequest,
    PullConsumer, PullConsumerSettings, PullOptions, PullRetry, QueueBroker, QueueError,
    QueueHandler, QueueLimits, QueueProducer, QueueSettings, RetryOptions, SendBatchOptions,
    SendOptions, handler_fn,
};
use bindery_core::{Clock, CloudflareCode, ErrorKind, ManualClock, PlatformError};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::{TestResult, ensure, ensure_eq};

/// A broker under test.
pub struct QueueSubject {
    /// The broker.
    pub broker: Arc<dyn QueueBroker>,
    /// The clock the broker reads; cases advance it.
    pub clock: ManualClock,
    _guard: Box<dyn Any + Send + Sync>,
}

impl QueueSubject {
    /// Wraps a broker; `guard` is kept alive as long as the subject (a temp dir, say).
    pub fn new(
        broker: Arc<dyn QueueBroker>,
        clock: ManualClock,
        guard: impl Any + Send + Sync,
    ) -> Self {
        Self {
            broker,
            clock,
            _guard: Box::new(guard),
        }
    }
}

/// Opens fresh, empty brokers for cases.
pub trait QueueFactory: Send + Sync {
    /// A fresh broker enforcing `limits`, on a manual clock.
    fn open(&self, limits: QueueLimits) -> Pin<Box<dyn Future<Output = QueueSubject> + Send + '_>>;
}

impl<F, Fut> QueueFactory for F
where
    F: Fn(QueueLimits) -> Fut + Send + Sync,
    Fut: Future<Output = QueueSubject> + Send + 'static,
{
    fn open(&self, limits: QueueLimits) -> Pin<Box<dyn Future<Output = QueueSubject> + Send + '_>> {
        Box::pin(self(limits))
    }
}

/// Runs every Queues case against `$factory` (an
/// `Fn(QueueLimits) -> impl Future<Output = QueueSubject>`).
#[macro_export]
macro_rules! queues_conformance {
    ($factory:expr) => {
        $crate::__expand_cases!(
            $factory,
            queues,
            [
                sent_message_is_pulled_with_id_timestamp_body_and_attempts_one,
                send_answers_the_backlog_metrics,
                send_batch_stores_every_message,
                every_content_type_round_trips,
                json_body_that_is_not_json_is_rejected,
                text_body_that_is_not_utf8_is_rejected,
                content_type_names_parse_and_unknown_ones_are_rejected,
                message_over_128kb_counting_overhead_is_rejected_with_413,
                batch_of_more_than_100_messages_is_rejected_with_413,
                batch_over_256kb_is_rejected_with_413,
                batch_with_one_oversized_member_writes_nothing,
                empty_batch_is_rejected,
                delay_over_24_hours_is_rejected,
                delayed_message_is_invisible_until_the_clock_passes_its_delay,
                batch_delay_applies_to_messages_without_their_own,
                queue_delivery_delay_applies_and_zero_bypasses_it,
                message_ids_are_unique,
                sends_over_5000_per_second_are_rate_limited_with_429,
                push_consumer_delivers_a_full_batch_at_max_batch_size,
                push_consumer_delivers_a_partial_batch_once_max_batch_timeout_passes,
                handler_success_acks_every_message,
                handler_error_retries_every_message_not_explicitly_acked,
                explicit_retry_redelivers_with_attempts_incremented,
                large_batch_acks_remove_only_the_acked_messages,
                retry_delay_holds_the_message_until_the_clock_passes_it,
                retry_all_retries_messages_without_an_explicit_call,
                ack_all_wins_over_a_handler_error,
                consumer_retry_delay_is_the_default_retry_delay,
                default_max_retries_allows_four_deliveries_then_deletes,
                exhausted_message_moves_to_the_dead_letter_queue_keeping_id_and_timestamp,
                max_concurrency_bounds_the_batches_in_flight,
                empty_queue_never_invokes_the_handler,
                push_consumer_delivers_delayed_messages_as_the_clock_reaches_each,
                panicking_handler_counts_as_a_failure,
                push_consumer_settings_out_of_range_are_rejected,
                shutdown_stops_delivery_and_a_new_consumer_resumes,
                queue_cannot_have_a_push_and_a_pull_consumer,
                pull_on_an_empty_queue_returns_no_messages,
                pulled_messages_are_hidden_until_their_visibility_timeout,
                expired_lease_makes_the_message_visible_with_attempts_incremented,
                ack_by_lease_id_deletes_the_message,
                retry_by_lease_id_makes_the_message_visible_after_its_delay,
                ack_with_an_expired_lease_is_accepted,
                garbage_lease_ids_produce_warnings_not_errors,
                concurrent_pullers_get_distinct_messages,
                pull_options_out_of_range_are_rejected,
                pull_consumer_stops_leasing_after_max_retries_plus_one_deliveries,
                messages_past_retention_are_deleted_whatever_their_retries,
                retention_outside_60_seconds_to_14_days_is_rejected,
                metrics_report_count_bytes_and_oldest_timestamp,
                errors_carry_kinds_codes_and_http_statuses,
            ]
        );
    };
}

type Err = Box<dyn std::error::Error + Send + Sync>;

/// Bound on real-time waits for things that must happen promptly.
const PROMPTLY: Duration = Duration::from_secs(10);

async fn open(f: &dyn QueueFactory) -> QueueSubject {
    f.open(QueueLimits::cloudflare()).await
}

fn expect_err<T: std::fmt::Debug>(r: Result<T, QueueError>, what: &str) -> Result<QueueError, Err> {
    match r {
        Ok(v) => Err(format!("{what}: expected an error, got Ok({v:?})").into()),
        Err(e) => Ok(e),
    }
}

fn json(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

async fn send_json(p: &dyn QueueProducer, text: &str) -> TestResult {
    p.send(json(text), SendOptions::default()).await?;
    Ok(())
}

fn pull_all() -> PullOptions {
    PullOptions {
        batch_size: 100,
        visibility_timeout_ms: 30_000,
    }
}

async fn puller(s: &QueueSubject, queue: &str) -> Result<Arc<dyn PullConsumer>, Err> {
    Ok(s.broker
        .pull_consumer(queue, PullConsumerSettings::default())
        .await?)
}

fn bodies(batch: &MessageBatch) -> Vec<String> {
    batch
        .messages()
        .iter()
        .map(|m| String::from_utf8_lossy(m.body()).into_owned())
        .collect()
}

/// Batches a probe handler saw, in order.
struct Batches(mpsc::UnboundedReceiver<MessageBatch>);

impl Batches {
    async fn next(&mut self) -> Result<MessageBatch, Err> {
        match tokio::time::timeout(PROMPTLY, self.0.recv()).await {
            Ok(Some(b)) => Ok(b),
            Ok(None) => Err("the handler is gone".into()),
            Err(_) => Err("no batch was delivered within 10 s".into()),
        }
    }
}

/// A handler that records each batch after `behave` has made its calls on it.
fn probe(
    behave: impl Fn(&MessageBatch) -> Result<(), HandlerError> + Send + Sync + 'static,
) -> (Arc<dyn QueueHandler>, Batches) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = handler_fn(move |batch: MessageBatch| {
        let result = behave(&batch);
        let _ = tx.send(batch);
        async move { result }
    });
    (Arc::new(handler), Batches(rx))
}

fn immediate(max_batch_size: usize) -> ConsumerSettings {
    ConsumerSettings {
        max_batch_size,
        max_batch_timeout_ms: 0,
        ..Default::default()
    }
}

/// Waits until the queue's backlog count is `count` (settlements commit asynchronously).
async fn backlog_reaches(p: &dyn QueueProducer, count: u64) -> TestResult {
    let wait = async {
        loop {
            if p.metrics().await?.backlog_count == count {
                return Ok::<(), Err>(());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    match tokio::time::timeout(PROMPTLY, wait).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "backlog stayed at {} instead of reaching {count}",
            p.metrics().await?.backlog_count
        )
        .into()),
    }
}

// ---------------------------------------------------------------------------------------
// Producer
// ---------------------------------------------------------------------------------------

/// A sent message comes back with a non-empty id, the clock's timestamp, its body and
/// attempts 1.
pub async fn sent_message_is_pulled_with_id_timestamp_body_and_attempts_one(
    f: &dyn QueueFactory,
) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    let sent_at = s.clock.now_ms();
    send_json(&*p, r#"{"hello":"world"}"#).await?;
    let got = puller(&s, "q").await?.pull(pull_all()).await?;
    ensure_eq!(got.len(), 1);
    let m = &got[0].message;
    ensure!(!m.id.is_empty(), "message id is empty");
    ensure_eq!(m.timestamp_ms, sent_at);
    ensure_eq!(m.body, json(r#"{"hello":"world"}"#));
    ensure_eq!(m.content_type, ContentType::Json);
    ensure_eq!(m.attempts, 1);
    ensure!(!got[0].lease_id.is_empty(), "lease id is empty");
    Ok(())
}

/// `send` resolves to the backlog after the send.
pub async fn send_answers_the_backlog_metrics(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    let first_at = s.clock.now_ms();
    let m1 = p.send(json("[1,2]"), SendOptions::default()).await?;
    ensure_eq!(m1.backlog_count, 1);
    ensure_eq!(m1.backlog_bytes, 5);
    ensure_eq!(m1.oldest_message_timestamp_ms, Some(first_at));
    s.clock.advance_secs(3);
    let m2 = p.send(json("\"abc\""), SendOptions::default()).await?;
    ensure_eq!(m2.backlog_count, 2);
    ensure_eq!(m2.backlog_bytes, 10);
    ensure_eq!(m2.oldest_message_timestamp_ms, Some(first_at));
    Ok(())
}

/// `send_batch` stores every message of the batch.
pub async fn send_batch_stores_every_message(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    let batch: Vec<_> = (0..100)
        .map(|i| MessageSendRequest::json(format!("{i}")))
        .collect();
    let m = p.send_batch(batch, SendBatchOptions::default()).await?;
    ensure_eq!(m.backlog_count, 100);
    let got = puller(&s, "q").await?.pull(pull_all()).await?;
    let mut seen: Vec<u32> = got
        .iter()
        .map(|g| g.message.text().parse().unwrap_or(u32::MAX))
        .collect();
    seen.sort_unstable();
    ensure_eq!(seen, (0..100).collect::<Vec<u32>>());
    Ok(())
}

/// json, text, bytes and v8 bodies come back byte for byte with their content type; v8
/// bytes are opaque.
pub async fn every_content_type_round_trips(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    let cases = [
        (ContentType::Json, Bytes::from_static(br#"{"n":1}"#)),
        (
            ContentType::Text,
            Bytes::from_static("h\u{e9}llo".as_bytes()),
        ),
        (ContentType::Bytes, Bytes::from_static(&[0, 1, 2, 255])),
        (
            ContentType::V8,
            Bytes::from_static(&[0xff, 0x0f, 0x22, 0x02, b'h', b'i']),
        ),
    ];
    for (ct, body) in &cases {
        p.send(
            body.clone(),
            SendOptions {
                content_type: *ct,
                ..Default::default()
            },
        )
        .await?;
    }
    let got = puller(&s, "q").await?.pull(pull_all()).await?;
    ensure_eq!(got.len(), 4);
    for (ct, body) in &cases {
        let m = got
            .iter()
            .find(|g| g.message.content_type == *ct)
            .ok_or_else(|| format!("no {ct} message came back"))?;
        ensure_eq!(&m.message.body, body);
    }
    Ok(())
}

/// A json message whose body does not parse is refused.
pub async fn json_body_that_is_not_json_is_rejected(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    let e = expect_err(
        p.send(json("{not json"), SendOptions::default()).await,
        "bad json",
    )?;
    ensure!(
        matches!(
            e,
            QueueError::InvalidBody {
                content_type: ContentType::Json,
                ..
            }
        ),
        "got {e:?}"
    );
    ensure_eq!(e.kind(), ErrorKind::InvalidInput);
    ensure_eq!(p.metrics().await?.backlog_count, 0);
    Ok(())
}

/// A text message must be UTF-8.
pub async fn text_body_that_is_not_utf8_is_rejected(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    let opts = SendOptions {
        content_type: ContentType::Text,
        ..Default::default()
    };
    let e = expect_err(
        p.send(Bytes::from_static(&[0xff, 0xfe]), opts).await,
        "bad text",
    )?;
    ensure!(
        matches!(
            e,
            QueueError::InvalidBody {
                content_type: ContentType::Text,
                ..
            }
        ),
        "got {e:?}"
    );
    Ok(())
}

/// The four content type names parse; any other is an error naming the valid ones.
pub async fn content_type_names_parse_and_unknown_ones_are_rejected(
    _f: &dyn QueueFactory,
) -> TestResult {
    for ct in [
        ContentType::Json,
        ContentType::Text,
        ContentType::Bytes,
        ContentType::V8,
    ] {
        ensure_eq!(ct.as_str().parse::<ContentType>()?, ct);
    }
    let e = expect_err("xml".parse::<ContentType>(), "xml")?;
    ensure!(
        e.to_string().contains("'text', 'json', 'bytes', or 'v8'"),
        "message: {e}"
    );
    ensure_eq!(e.http_status(), 400);
    Ok(())
}

/// 128 KB (1 KB = 1000 B) counts about 100 bytes of metadata: 127,900 body bytes pass,
/// 127,901 do not.
pub async fn message_over_128kb_counting_overhead_is_rejected_with_413(
    f: &dyn QueueFactory,
) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    let opts = SendOptions {
        content_type: ContentType::Bytes,
        ..Default::default()
    };
    p.send(Bytes::from(vec![7u8; 127_900]), opts).await?;
    let e = expect_err(
        p.send(Bytes::from(vec![7u8; 127_901]), opts).await,
        "too large",
    )?;
    ensure!(
        matches!(
            e,
            QueueError::MessageTooLarge {
                len: 127_901,
                limit: 128_000,
                ..
            }
        ),
        "got {e:?}"
    );
    ensure_eq!(e.http_status(), 413);
    ensure!(
        e.to_string().contains("128000"),
        "message names the limit: {e}"
    );
    Ok(())
}

/// More than 100 messages in one batch is refused.
pub async fn batch_of_more_than_100_messages_is_rejected_with_413(
    f: &dyn QueueFactory,
) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    let batch: Vec<_> = (0..101).map(|_| MessageSendRequest::json("1")).collect();
    let e = expect_err(
        p.send_batch(batch, SendBatchOptions::default()).await,
        "101",
    )?;
    ensure!(
        matches!(
            e,
            QueueError::BatchTooManyMessages {
                count: 101,
                limit: 100
            }
        ),
        "got {e:?}"
    );
    ensure_eq!(e.http_status(), 413);
    Ok(())
}

/// A batch whose bodies total more than 256 KB is refused.
pub async fn batch_over_256kb_is_rejected_with_413(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    let batch: Vec<_> = (0..3)
        .map(|_| MessageSendRequest::new(vec![1u8; 90_000], ContentType::Bytes))
        .collect();
    let e = expect_err(
        p.send_batch(batch, SendBatchOptions::default()).await,
        "270 KB",
    )?;
    ensure!(
        matches!(
            e,
            QueueError::BatchTooLarge {
                len: 270_000,
                limit: 256_000
            }
        ),
        "got {e:?}"
    );
    ensure_eq!(e.http_status(), 413);
    Ok(())
}

/// A batch fails whole: one bad member means no member is stored.
pub async fn batch_with_one_oversized_member_writes_nothing(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    let batch = vec![
        MessageSendRequest::json("1"),
        MessageSendRequest::new(vec![0u8; 128_000], ContentType::Bytes),
    ];
    let e = expect_err(
        p.send_batch(batch, SendBatchOptions::default()).await,
        "oversized member",
    )?;
    ensure!(
        matches!(e, QueueError::BatchMessageTooLarge { index: 1, .. }),
        "got {e:?}"
    );
    ensure_eq!(p.metrics().await?.backlog_count, 0);
    Ok(())
}

/// `send_batch([])` is an error.
pub async fn empty_batch_is_rejected(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    let e = expect_err(
        p.send_batch(vec![], SendBatchOptions::default()).await,
        "empty",
    )?;
    ensure!(matches!(e, QueueError::EmptyBatch), "got {e:?}");
    Ok(())
}

/// Delays are at most 24 hours, for messages and batches.
pub async fn delay_over_24_hours_is_rejected(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    p.send(
        json("1"),
        SendOptions {
            delay_seconds: Some(86_400),
            ..Default::default()
        },
    )
    .await?;
    let e = expect_err(
        p.send(
            json("1"),
            SendOptions {
                delay_seconds: Some(86_401),
                ..Default::default()
            },
        )
        .await,
        "single",
    )?;
    ensure!(
        matches!(
            e,
            QueueError::InvalidDelay {
                delay: 86_401,
                max: 86_400
            }
        ),
        "got {e:?}"
    );
    ensure_eq!(e.http_status(), 400);
    let e = expect_err(
        p.send_batch(
            vec![MessageSendRequest::json("1")],
            SendBatchOptions {
                delay_seconds: Some(86_401),
            },
        )
        .await,
        "batch",
    )?;
    ensure!(matches!(e, QueueError::InvalidDelay { .. }), "got {e:?}");
    Ok(())
}

/// A delayed message cannot be consumed until the clock passes its delay.
pub async fn delayed_message_is_invisible_until_the_clock_passes_its_delay(
    f: &dyn QueueFactory,
) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    p.send(
        json("\"late\""),
        SendOptions {
            delay_seconds: Some(30),
            ..Default::default()
        },
    )
    .await?;
    let c = puller(&s, "q").await?;
    ensure_eq!(c.pull(pull_all()).await?.len(), 0);
    s.clock.advance_secs(29);
    ensure_eq!(c.pull(pull_all()).await?.len(), 0);
    s.clock.advance_secs(1);
    let got = c.pull(pull_all()).await?;
    ensure_eq!(got.len(), 1);
    ensure_eq!(got[0].message.body, json("\"late\""));
    Ok(())
}

/// The batch's delay applies to members without one; a member's own delay wins.
pub async fn batch_delay_applies_to_messages_without_their_own(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    let batch = vec![
        MessageSendRequest::json("\"batch\""),
        MessageSendRequest::json("\"own\"").with_delay(5),
    ];
    p.send_batch(
        batch,
        SendBatchOptions {
            delay_seconds: Some(60),
        },
    )
    .await?;
    let c = puller(&s, "q").await?;
    ensure_eq!(c.pull(pull_all()).await?.len(), 0);
    s.clock.advance_secs(5);
    let got = c.pull(pull_all()).await?;
    ensure_eq!(got.len(), 1);
    ensure_eq!(got[0].message.body, json("\"own\""));
    c.ack(AckRequest {
        acks: vec![got[0].lease_id.clone()],
        retries: vec![],
    })
    .await?;
    s.clock.advance_secs(55);
    let got = c.pull(pull_all()).await?;
    ensure_eq!(got.len(), 1);
    ensure_eq!(got[0].message.body, json("\"batch\""));
    Ok(())
}

/// A queue's delivery delay applies to sends without a delay; `delay_seconds: 0` bypasses
/// it.
pub async fn queue_delivery_delay_applies_and_zero_bypasses_it(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    s.broker
        .create_queue(
            "q",
            QueueSettings {
                delivery_delay_secs: 10,
                ..Default::default()
            },
        )
        .await?;
    let p = s.broker.producer("q").await?;
    send_json(&*p, "\"default\"").await?;
    p.send(
        json("\"zero\""),
        SendOptions {
            delay_seconds: Some(0),
            ..Default::default()
        },
    )
    .await?;
    let c = puller(&s, "q").await?;
    let got = c.pull(pull_all()).await?;
    ensure_eq!(got.len(), 1);
    ensure_eq!(got[0].message.body, json("\"zero\""));
    s.clock.advance_secs(10);
    let got = c.pull(pull_all()).await?;
    ensure_eq!(got.len(), 1);
    ensure_eq!(got[0].message.body, json("\"default\""));
    Ok(())
}

/// Every message gets its own id.
pub async fn message_ids_are_unique(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    for _ in 0..3 {
        let batch: Vec<_> = (0..100).map(|_| MessageSendRequest::json("0")).collect();
        p.send_batch(batch, SendBatchOptions::default()).await?;
    }
    let c = puller(&s, "q").await?;
    let mut ids = HashSet::new();
    for _ in 0..3 {
        for g in c.pull(pull_all()).await? {
            ids.insert(g.message.id);
        }
    }
    ensure_eq!(ids.len(), 300);
    Ok(())
}

/// A queue accepts 5,000 messages per second; more are refused with 429 until the next
/// second.
pub async fn sends_over_5000_per_second_are_rate_limited_with_429(
    f: &dyn QueueFactory,
) -> TestResult {
    let s = open(f).await;
    // Start at the beginning of a second.
    s.clock.advance_ms(1000 - s.clock.now_ms() % 1000);
    let p = s.broker.producer("q").await?;
    for _ in 0..50 {
        let batch: Vec<_> = (0..100).map(|_| MessageSendRequest::json("0")).collect();
        p.send_batch(batch, SendBatchOptions::default()).await?;
    }
    let e = expect_err(p.send(json("0"), SendOptions::default()).await, "5001st")?;
    ensure_eq!(e.kind(), ErrorKind::RateLimited);
    ensure_eq!(e.http_status(), 429);
    s.clock.advance_secs(1);
    send_json(&*p, "0").await?;
    ensure_eq!(p.metrics().await?.backlog_count, 5001);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Push consumers
// ---------------------------------------------------------------------------------------

/// With `max_batch_size` messages ready, a batch of that size is delivered without waiting
/// for the timeout.
pub async fn push_consumer_delivers_a_full_batch_at_max_batch_size(
    f: &dyn QueueFactory,
) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    let batch: Vec<_> = (0..4)
        .map(|i| MessageSendRequest::json(format!("{i}")))
        .collect();
    p.send_batch(batch, SendBatchOptions::default()).await?;
    let (h, mut batches) = probe(|_| Ok(()));
    let settings = ConsumerSettings {
        max_batch_size: 4,
        max_batch_timeout_ms: 60_000,
        ..Default::default()
    };
    let c = s.broker.start_push_consumer("q", settings, h).await?;
    let b = batches.next().await?;
    ensure_eq!(b.messages().len(), 4);
    ensure_eq!(b.queue(), "q");
    c.shutdown().await;
    Ok(())
}

/// Fewer than `max_batch_size` messages wait for `max_batch_timeout` (by the clock), then
/// go as a partial batch.
pub async fn push_consumer_delivers_a_partial_batch_once_max_batch_timeout_passes(
    f: &dyn QueueFactory,
) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    let (h, mut batches) = probe(|_| Ok(()));
    let settings = ConsumerSettings {
        max_batch_size: 5,
        max_batch_timeout_ms: 5_000,
        ..Default::default()
    };
    let c = s.broker.start_push_consumer("q", settings, h).await?;
    let three: Vec<_> = (0..3)
        .map(|i| MessageSendRequest::json(format!("{i}")))
        .collect();
    p.send_batch(three, SendBatchOptions::default()).await?;
    // Two more fill the batch: had the three gone early, the first batch would hold three.
    let two: Vec<_> = (3..5)
        .map(|i| MessageSendRequest::json(format!("{i}")))
        .collect();
    p.send_batch(two, SendBatchOptions::default()).await?;
    ensure_eq!(batches.next().await?.messages().len(), 5);
    let two: Vec<_> = (5..7)
        .map(|i| MessageSendRequest::json(format!("{i}")))
        .collect();
    p.send_batch(two, SendBatchOptions::default()).await?;
    s.clock.advance_ms(5_000);
    let b = batches.next().await?;
    ensure_eq!(bodies(&b), vec!["5".to_string(), "6".to_string()]);
    c.shutdown().await;
    Ok(())
}

/// A handler that returns `Ok` without calls acks every message.
pub async fn handler_success_acks_every_message(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    for i in 0..3 {
        send_json(&*p, &format!("{i}")).await?;
    }
    let (h, mut batches) = probe(|_| Ok(()));
    let c = s.broker.start_push_consumer("q", immediate(10), h).await?;
    let mut seen = 0;
    while seen < 3 {
        let b = batches.next().await?;
        for m in b.messages() {
            ensure_eq!(m.attempts(), 1);
            ensure_eq!(m.timestamp_ms(), s.clock.now_ms());
        }
        seen += b.messages().len();
    }
    backlog_reaches(&*p, 0).await?;
    c.shutdown().await;
    Ok(())
}

/// A failing handler retries every message it did not ack; acked ones are gone.
pub async fn handler_error_retries_every_message_not_explicitly_acked(
    f: &dyn QueueFactory,
) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    let batch: Vec<_> = ["\"keep\"", "\"again\"", "\"also\""]
        .iter()
        .map(|b| MessageSendRequest::json(*b))
        .collect();
    p.send_batch(batch, SendBatchOptions::default()).await?;
    let (h, mut batches) = probe(|b| {
        if b.messages()[0].attempts() == 1 {
            if let Some(m) = b
                .messages()
                .iter()
                .find(|m| m.body().as_ref() == b"\"keep\"")
            {
                m.ack();
            }
            Err(HandlerError::new("boom"))
        } else {
            Ok(())
        }
    });
    let c = s.broker.start_push_consumer("q", immediate(3), h).await?;
    ensure_eq!(batches.next().await?.messages().len(), 3);
    let mut again = Vec::new();
    while again.len() < 2 {
        let b = batches.next().await?;
        for m in b.messages() {
            ensure_eq!(m.attempts(), 2);
            again.push(String::from_utf8_lossy(m.body()).into_owned());
        }
    }
    again.sort();
    ensure_eq!(again, vec!["\"again\"".to_string(), "\"also\"".to_string()]);
    backlog_reaches(&*p, 0).await?;
    c.shutdown().await;
    Ok(())
}

/// `retry()` on a message redelivers it with `attempts` one higher, keeping its id and
/// timestamp.
pub async fn explicit_retry_redelivers_with_attempts_incremented(
    f: &dyn QueueFactory,
) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    send_json(&*p, "1").await?;
    let (h, mut batches) = probe(|b| {
        for m in b.messages() {
            if m.attempts() < 3 {
                m.retry(RetryOptions::default());
            }
        }
        Ok(())
    });
    let c = s.broker.start_push_consumer("q", immediate(10), h).await?;
    let first = batches.next().await?.messages()[0].clone();
    for attempt in 2..=3 {
        let again = batches.next().await?.messages()[0].clone();
        ensure_eq!(again.attempts(), attempt);
        ensure_eq!(again.id(), first.id());
        ensure_eq!(again.timestamp_ms(), first.timestamp_ms());
    }
    backlog_reaches(&*p, 0).await?;
    c.shutdown().await;
    Ok(())
}

/// In a full batch of 100, acked messages leave the queue and the retried ones come back,
/// whatever their positions.
pub async fn large_batch_acks_remove_only_the_acked_messages(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    let batch: Vec<_> = (0..100)
        .map(|i| MessageSendRequest::json(format!("{i}")))
        .collect();
    p.send_batch(batch, SendBatchOptions::default()).await?;
    let (h, mut batches) = probe(|b| {
        for m in b.messages() {
            let n: u32 = String::from_utf8_lossy(m.body()).parse().unwrap_or(0);
            if m.attempts() == 1 && n % 10 == 3 {
                m.retry(RetryOptions::delay(60));
            }
        }
        Ok(())
    });
    let c = s.broker.start_push_consumer("q", immediate(100), h).await?;
    ensure_eq!(batches.next().await?.messages().len(), 100);
    backlog_reaches(&*p, 10).await?;
    ensure_eq!(p.metrics().await?.backlog_bytes, 19); // "3", "13", ..., "93"
    s.clock.advance_secs(60);
    let mut back = Vec::new();
    while back.len() < 10 {
        let b = batches.next().await?;
        for m in b.messages() {
            ensure_eq!(m.attempts(), 2);
            back.push(String::from_utf8_lossy(m.body()).parse::<u32>()?);
        }
    }
    back.sort_unstable();
    ensure_eq!(back, (0..10).map(|i| i * 10 + 3).collect::<Vec<u32>>());
    backlog_reaches(&*p, 0).await?;
    c.shutdown().await;
    Ok(())
}

/// `retry({delaySeconds})` keeps the message away until the clock passes the delay.
pub async fn retry_delay_holds_the_message_until_the_clock_passes_it(
    f: &dyn QueueFactory,
) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    let batch = vec![
        MessageSendRequest::json("\"anchor\""),
        MessageSendRequest::json("\"later\""),
    ];
    p.send_batch(batch, SendBatchOptions::default()).await?;
    let (h, mut batches) = probe(|b| {
        for m in b.messages() {
            if m.body().as_ref() == b"\"later\"" && m.attempts() == 1 {
                m.retry(RetryOptions::delay(30));
            }
        }
        Ok(())
    });
    let c = s.broker.start_push_consumer("q", immediate(10), h).await?;
    ensure_eq!(batches.next().await?.messages().len(), 2);
    // The anchor's ack and the retry commit together.
    backlog_reaches(&*p, 1).await?;
    s.clock.advance_secs(29);
    send_json(&*p, "\"sentinel\"").await?;
    ensure_eq!(
        bodies(&batches.next().await?),
        vec!["\"sentinel\"".to_string()]
    );
    s.clock.advance_secs(1);
    let b = batches.next().await?;
    ensure_eq!(bodies(&b), vec!["\"later\"".to_string()]);
    ensure_eq!(b.messages()[0].attempts(), 2);
    c.shutdown().await;
    Ok(())
}

/// `retry_all` retries every message without its own call, with the batch delay; an
/// explicit ack still wins.
pub async fn retry_all_retries_messages_without_an_explicit_call(
    f: &dyn QueueFactory,
) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    let batch = vec![
        MessageSendRequest::json("\"acked\""),
        MessageSendRequest::json("\"back\""),
    ];
    p.send_batch(batch, SendBatchOptions::default()).await?;
    let (h, mut batches) = probe(|b| {
        if b.messages()[0].attempts() == 1 {
            for m in b.messages() {
                if m.body().as_ref() == b"\"acked\"" {
                    m.ack();
                }
            }
            b.retry_all(RetryOptions::delay(10));
        }
        Ok(())
    });
    let c = s.broker.start_push_consumer("q", immediate(10), h).await?;
    ensure_eq!(batches.next().await?.messages().len(), 2);
    backlog_reaches(&*p, 1).await?;
    s.clock.advance_secs(10);
    let b = batches.next().await?;
    ensure_eq!(bodies(&b), vec!["\"back\"".to_string()]);
    ensure_eq!(b.messages()[0].attempts(), 2);
    backlog_reaches(&*p, 0).await?;
    c.shutdown().await;
    Ok(())
}

/// `ack_all()` acks the batch even if the handler then fails.
pub async fn ack_all_wins_over_a_handler_error(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    send_json(&*p, "1").await?;
    send_json(&*p, "2").await?;
    let (h, mut batches) = probe(|b| {
        b.ack_all();
        Err(HandlerError::new("after ackAll"))
    });
    let c = s.broker.start_push_consumer("q", immediate(2), h).await?;
    ensure_eq!(batches.next().await?.messages().len(), 2);
    backlog_reaches(&*p, 0).await?;
    c.shutdown().await;
    Ok(())
}

/// A failed message waits the consumer's `retry_delay` when no call named a delay.
pub async fn consumer_retry_delay_is_the_default_retry_delay(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    let batch = vec![
        MessageSendRequest::json("\"anchor\""),
        MessageSendRequest::json("\"fail\""),
    ];
    p.send_batch(batch, SendBatchOptions::default()).await?;
    let (h, mut batches) = probe(|b| {
        for m in b.messages() {
            if m.body().as_ref() == b"\"anchor\"" {
                m.ack();
            }
        }
        Err(HandlerError::new("fail"))
    });
    let settings = ConsumerSettings {
        retry_delay_secs: Some(20),
        ..immediate(10)
    };
    let c = s.broker.start_push_consumer("q", settings, h).await?;
    ensure_eq!(batches.next().await?.messages().len(), 2);
    backlog_reaches(&*p, 1).await?;
    s.clock.advance_secs(19);
    send_json(&*p, "\"sentinel\"").await?;
    ensure_eq!(
        bodies(&batches.next().await?),
        vec!["\"sentinel\"".to_string()]
    );
    s.clock.advance_secs(1);
    ensure_eq!(bodies(&batches.next().await?), vec!["\"fail\"".to_string()]);
    c.shutdown().await;
    Ok(())
}

/// With the default `max_retries` (3), a message that always fails is delivered 4 times and
/// then deleted.
pub async fn default_max_retries_allows_four_deliveries_then_deletes(
    f: &dyn QueueFactory,
) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    send_json(&*p, "\"doomed\"").await?;
    let (h, mut batches) = probe(|_| Err(HandlerError::new("always")));
    let c = s.broker.start_push_consumer("q", immediate(10), h).await?;
    for attempt in 1..=4 {
        let b = batches.next().await?;
        ensure_eq!(b.messages()[0].attempts(), attempt);
    }
    backlog_reaches(&*p, 0).await?;
    send_json(&*p, "\"sentinel\"").await?;
    ensure_eq!(
        bodies(&batches.next().await?),
        vec!["\"sentinel\"".to_string()]
    );
    c.shutdown().await;
    Ok(())
}

/// After `max_retries`, the message moves to the dead-letter queue (created on demand)
/// with its id and timestamp.
pub async fn exhausted_message_moves_to_the_dead_letter_queue_keeping_id_and_timestamp(
    f: &dyn QueueFactory,
) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    send_json(&*p, "\"dead\"").await?;
    let (h, mut batches) = probe(|_| Err(HandlerError::new("always")));
    let settings = ConsumerSettings {
        max_retries: 1,
        dead_letter_queue: Some("q-dlq".into()),
        ..immediate(10)
    };
    let c = s.broker.start_push_consumer("q", settings, h).await?;
    let first = batches.next().await?.messages()[0].clone();
    ensure_eq!(batches.next().await?.messages()[0].attempts(), 2);
    backlog_reaches(&*p, 0).await?;
    let dlq = s.broker.producer("q-dlq").await?;
    backlog_reaches(&*dlq, 1).await?;
    let got = puller(&s, "q-dlq").await?.pull(pull_all()).await?;
    ensure_eq!(got.len(), 1);
    ensure_eq!(got[0].message.id.as_str(), first.id());
    ensure_eq!(got[0].message.timestamp_ms, first.timestamp_ms());
    ensure_eq!(got[0].message.body, json("\"dead\""));
    c.shutdown().await;
    Ok(())
}

/// No more than `max_concurrency` batches run at once.
pub async fn max_concurrency_bounds_the_batches_in_flight(f: &dyn QueueFactory) -> TestResult {
    struct Gate {
        running: AtomicUsize,
        peak: AtomicUsize,
        done: AtomicUsize,
        release: tokio::sync::Semaphore,
    }
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    for i in 0..6 {
        send_json(&*p, &format!("{i}")).await?;
    }
    let gate = Arc::new(Gate {
        running: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        release: tokio::sync::Semaphore::new(0),
    });
    let settings = ConsumerSettings {
        max_concurrency: Some(2),
        ..immediate(1)
    };
    let handler = {
        let gate = Arc::clone(&gate);
        handler_fn(move |_batch: MessageBatch| {
            let gate = Arc::clone(&gate);
            async move {
                let now = gate.running.fetch_add(1, Ordering::SeqCst) + 1;
                gate.peak.fetch_max(now, Ordering::SeqCst);
                let permit = gate.release.acquire().await;
                drop(permit);
                gate.running.fetch_sub(1, Ordering::SeqCst);
                gate.done.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
    };
    let c = s
        .broker
        .start_push_consumer("q", settings, Arc::new(handler))
        .await?;
    let wait_running = |n: usize| {
        let gate = Arc::clone(&gate);
        async move {
            tokio::time::timeout(PROMPTLY, async {
                while gate.running.load(Ordering::SeqCst) < n {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
            .await
        }
    };
    wait_running(2)
        .await
        .map_err(|_| "two batches never ran at once")?;
    for _ in 0..6 {
        gate.release.add_permits(1);
    }
    tokio::time::timeout(PROMPTLY, async {
        while gate.done.load(Ordering::SeqCst) < 6 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .map_err(|_| "not every batch finished")?;
    ensure_eq!(gate.peak.load(Ordering::SeqCst), 2);
    c.shutdown().await;
    Ok(())
}

/// Delayed messages reach a push consumer one by one as the clock passes each delay, in
/// the order they become visible.
pub async fn push_consumer_delivers_delayed_messages_as_the_clock_reaches_each(
    f: &dyn QueueFactory,
) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    let (h, mut batches) = probe(|_| Ok(()));
    let c = s.broker.start_push_consumer("q", immediate(10), h).await?;
    for delay in [30, 10, 20] {
        p.send(
            json(&delay.to_string()),
            SendOptions {
                delay_seconds: Some(delay),
                ..Default::default()
            },
        )
        .await?;
    }
    for want in ["10", "20", "30"] {
        s.clock.advance_secs(10);
        ensure_eq!(bodies(&batches.next().await?), vec![want.to_string()]);
    }
    backlog_reaches(&*p, 0).await?;
    c.shutdown().await;
    Ok(())
}

/// The handler is never called with an empty batch.
pub async fn empty_queue_never_invokes_the_handler(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let (h, mut batches) = probe(|_| Ok(()));
    let c = s.broker.start_push_consumer("q", immediate(10), h).await?;
    s.clock.advance_secs(60);
    let p = s.broker.producer("q").await?;
    send_json(&*p, "\"first\"").await?;
    let b = batches.next().await?;
    ensure_eq!(bodies(&b), vec!["\"first\"".to_string()]);
    c.shutdown().await;
    Ok(())
}

/// A handler that panics is treated as one that failed: its messages are retried.
pub async fn panicking_handler_counts_as_a_failure(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    send_json(&*p, "1").await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<u32>();
    let h = handler_fn(move |b: MessageBatch| {
        let attempts = b.messages()[0].attempts();
        let _ = tx.send(attempts);
        async move {
            if attempts == 1 {
                panic!("handler panics on purpose (conformance case)");
            }
            Ok(())
        }
    });
    let c = s
        .broker
        .start_push_consumer("q", immediate(10), Arc::new(h))
        .await?;
    for want in [1, 2] {
        let got = tokio::time::timeout(PROMPTLY, rx.recv())
            .await
            .map_err(|_| "no delivery")?;
        ensure_eq!(got, Some(want));
    }
    backlog_reaches(&*p, 0).await?;
    c.shutdown().await;
    Ok(())
}

/// Consumer settings outside the documented ranges are refused with 400.
pub async fn push_consumer_settings_out_of_range_are_rejected(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let bad = [
        ConsumerSettings {
            max_batch_size: 0,
            ..Default::default()
        },
        ConsumerSettings {
            max_batch_size: 101,
            ..Default::default()
        },
        ConsumerSettings {
            max_batch_timeout_ms: 60_001,
            ..Default::default()
        },
        ConsumerSettings {
            max_retries: 101,
            ..Default::default()
        },
        ConsumerSettings {
            max_concurrency: Some(0),
            ..Default::default()
        },
        ConsumerSettings {
            max_concurrency: Some(251),
            ..Default::default()
        },
        ConsumerSettings {
            retry_delay_secs: Some(86_401),
            ..Default::default()
        },
    ];
    for settings in bad {
        let (h, _b) = probe(|_| Ok(()));
        let what = format!("{settings:?}");
        match s.broker.start_push_consumer("q", settings, h).await {
            Ok(_) => return Err(format!("{what} was accepted").into()),
            Err(e) => {
                ensure!(
                    matches!(e, QueueError::InvalidSetting { .. }),
                    "{what}: got {e:?}"
                );
                ensure_eq!(e.http_status(), 400);
            }
        }
    }
    Ok(())
}

/// After `shutdown`, messages wait; a new consumer delivers them.
pub async fn shutdown_stops_delivery_and_a_new_consumer_resumes(
    f: &dyn QueueFactory,
) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    let (h, mut batches) = probe(|_| Ok(()));
    let c = s.broker.start_push_consumer("q", immediate(10), h).await?;
    send_json(&*p, "1").await?;
    batches.next().await?;
    c.shutdown().await;
    send_json(&*p, "2").await?;
    ensure_eq!(p.metrics().await?.backlog_count, 1);
    let (h2, mut batches2) = probe(|_| Ok(()));
    let c2 = s.broker.start_push_consumer("q", immediate(10), h2).await?;
    ensure_eq!(bodies(&batches2.next().await?), vec!["2".to_string()]);
    ensure!(
        batches.0.try_recv().is_err(),
        "the stopped consumer still got a batch"
    );
    c2.shutdown().await;
    Ok(())
}

/// A queue has one push consumer or pull consumers, not both.
pub async fn queue_cannot_have_a_push_and_a_pull_consumer(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let (h, _b) = probe(|_| Ok(()));
    let c = s.broker.start_push_consumer("q", immediate(10), h).await?;
    let e = expect_err(
        s.broker
            .pull_consumer("q", PullConsumerSettings::default())
            .await
            .map(|_| ()),
        "pull beside push",
    )?;
    ensure!(
        matches!(e, QueueError::ConsumerConflict { .. }),
        "got {e:?}"
    );
    ensure_eq!(e.http_status(), 409);
    let (h2, _b2) = probe(|_| Ok(()));
    let e = expect_err(
        s.broker
            .start_push_consumer("q", immediate(10), h2)
            .await
            .map(|_| ()),
        "second push",
    )?;
    ensure!(
        matches!(e, QueueError::ConsumerConflict { .. }),
        "got {e:?}"
    );
    c.shutdown().await;
    let pull = s
        .broker
        .pull_consumer("q", PullConsumerSettings::default())
        .await?;
    let (h3, _b3) = probe(|_| Ok(()));
    let e = expect_err(
        s.broker
            .start_push_consumer("q", immediate(10), h3)
            .await
            .map(|_| ()),
        "push beside pull",
    )?;
    ensure!(
        matches!(e, QueueError::ConsumerConflict { .. }),
        "got {e:?}"
    );
    drop(pull);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Pull consumers
// ---------------------------------------------------------------------------------------

/// Pulling from an empty queue answers at once with no messages.
pub async fn pull_on_an_empty_queue_returns_no_messages(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    ensure_eq!(
        puller(&s, "q")
            .await?
            .pull(PullOptions::default())
            .await?
            .len(),
        0
    );
    Ok(())
}

/// Leased messages are invisible to other pulls until the visibility timeout, and `batch_size`
/// bounds a pull.
pub async fn pulled_messages_are_hidden_until_their_visibility_timeout(
    f: &dyn QueueFactory,
) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    for i in 0..7 {
        send_json(&*p, &format!("{i}")).await?;
    }
    let c = puller(&s, "q").await?;
    let first = c.pull(PullOptions::default()).await?;
    ensure_eq!(first.len(), 5);
    let second = c.pull(PullOptions::default()).await?;
    ensure_eq!(second.len(), 2);
    ensure_eq!(c.pull(PullOptions::default()).await?.len(), 0);
    s.clock.advance_ms(29_999);
    ensure_eq!(c.pull(PullOptions::default()).await?.len(), 0);
    Ok(())
}

/// When a lease expires the message is visible again, with `attempts` one higher.
pub async fn expired_lease_makes_the_message_visible_with_attempts_incremented(
    f: &dyn QueueFactory,
) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    send_json(&*p, "1").await?;
    let c = puller(&s, "q").await?;
    let opts = PullOptions {
        batch_size: 10,
        visibility_timeout_ms: 1_000,
    };
    let first = c.pull(opts).await?;
    ensure_eq!(first[0].message.attempts, 1);
    s.clock.advance_ms(1_000);
    let again = c.pull(opts).await?;
    ensure_eq!(again.len(), 1);
    ensure_eq!(again[0].message.attempts, 2);
    ensure_eq!(&again[0].message.id, &first[0].message.id);
    ensure!(
        again[0].lease_id != first[0].lease_id,
        "a new lease has a new lease id"
    );
    Ok(())
}

/// Acking by lease id deletes the message.
pub async fn ack_by_lease_id_deletes_the_message(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    send_json(&*p, "1").await?;
    send_json(&*p, "2").await?;
    let c = puller(&s, "q").await?;
    let got = c.pull(pull_all()).await?;
    let r = c
        .ack(AckRequest {
            acks: got.iter().map(|g| g.lease_id.clone()).collect(),
            retries: vec![],
        })
        .await?;
    ensure_eq!(r.ack_count, 2);
    ensure_eq!(r.retry_count, 0);
    ensure_eq!(p.metrics().await?.backlog_count, 0);
    s.clock.advance_secs(3600);
    ensure_eq!(c.pull(pull_all()).await?.len(), 0);
    Ok(())
}

/// Retrying by lease id makes the message visible again after the given delay.
pub async fn retry_by_lease_id_makes_the_message_visible_after_its_delay(
    f: &dyn QueueFactory,
) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    send_json(&*p, "1").await?;
    let c = puller(&s, "q").await?;
    let got = c.pull(pull_all()).await?;
    let r = c
        .ack(AckRequest {
            acks: vec![],
            retries: vec![PullRetry {
                lease_id: got[0].lease_id.clone(),
                delay_seconds: Some(5),
            }],
        })
        .await?;
    ensure_eq!(r.retry_count, 1);
    s.clock.advance_secs(4);
    ensure_eq!(c.pull(pull_all()).await?.len(), 0);
    s.clock.advance_secs(1);
    let again = c.pull(pull_all()).await?;
    ensure_eq!(again.len(), 1);
    ensure_eq!(again[0].message.attempts, 2);
    Ok(())
}

/// An ack with an expired lease is accepted, even after the message was leased again.
pub async fn ack_with_an_expired_lease_is_accepted(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    send_json(&*p, "1").await?;
    let c = puller(&s, "q").await?;
    let opts = PullOptions {
        batch_size: 1,
        visibility_timeout_ms: 1_000,
    };
    let old = c.pull(opts).await?;
    s.clock.advance_secs(2);
    let new = c.pull(opts).await?;
    ensure_eq!(new.len(), 1);
    let r = c
        .ack(AckRequest {
            acks: vec![old[0].lease_id.clone()],
            retries: vec![],
        })
        .await?;
    ensure_eq!(r.ack_count, 1);
    let r = c
        .ack(AckRequest {
            acks: vec![new[0].lease_id.clone()],
            retries: vec![],
        })
        .await?;
    ensure_eq!(r.ack_count, 1);
    ensure_eq!(p.metrics().await?.backlog_count, 0);
    Ok(())
}

/// Lease ids that cannot be read are reported as warnings; the rest of the request applies.
pub async fn garbage_lease_ids_produce_warnings_not_errors(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    send_json(&*p, "1").await?;
    let c = puller(&s, "q").await?;
    let got = c.pull(pull_all()).await?;
    let r = c
        .ack(AckRequest {
            acks: vec!["garbage".into(), got[0].lease_id.clone()],
            retries: vec![],
        })
        .await?;
    ensure_eq!(r.ack_count, 1);
    ensure_eq!(r.warnings.len(), 1);
    ensure_eq!(p.metrics().await?.backlog_count, 0);
    Ok(())
}

/// Concurrent pulls never lease the same message twice.
pub async fn concurrent_pullers_get_distinct_messages(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    for _ in 0..4 {
        let batch: Vec<_> = (0..100)
            .map(|i| MessageSendRequest::json(format!("{i}")))
            .collect();
        p.send_batch(batch, SendBatchOptions::default()).await?;
    }
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let c = puller(&s, "q").await?;
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let got = c
                    .pull(PullOptions {
                        batch_size: 7,
                        visibility_timeout_ms: 600_000,
                    })
                    .await?;
                if got.is_empty() {
                    return Ok::<_, QueueError>(ids);
                }
                ids.extend(got.into_iter().map(|g| g.message.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let distinct: HashSet<_> = all.iter().collect();
    ensure_eq!(all.len(), 400);
    ensure_eq!(distinct.len(), 400);
    Ok(())
}

/// `batch_size` is 1..=100 and the visibility timeout at most 12 hours.
pub async fn pull_options_out_of_range_are_rejected(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let c = puller(&s, "q").await?;
    for opts in [
        PullOptions {
            batch_size: 0,
            ..Default::default()
        },
        PullOptions {
            batch_size: 101,
            ..Default::default()
        },
        PullOptions {
            visibility_timeout_ms: 12 * 3600 * 1000 + 1,
            ..Default::default()
        },
    ] {
        let e = expect_err(c.pull(opts).await, &format!("{opts:?}"))?;
        ensure!(matches!(e, QueueError::InvalidSetting { .. }), "got {e:?}");
    }
    c.pull(PullOptions {
        batch_size: 100,
        visibility_timeout_ms: 12 * 3600 * 1000,
    })
    .await?;
    Ok(())
}

/// A message is leased at most `max_retries + 1` times; then it goes to the dead-letter
/// queue.
pub async fn pull_consumer_stops_leasing_after_max_retries_plus_one_deliveries(
    f: &dyn QueueFactory,
) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    send_json(&*p, "\"x\"").await?;
    let c = s
        .broker
        .pull_consumer(
            "q",
            PullConsumerSettings {
                max_retries: 1,
                dead_letter_queue: Some("dlq".into()),
            },
        )
        .await?;
    let opts = PullOptions {
        batch_size: 10,
        visibility_timeout_ms: 1_000,
    };
    ensure_eq!(c.pull(opts).await?[0].message.attempts, 1);
    s.clock.advance_secs(1);
    ensure_eq!(c.pull(opts).await?[0].message.attempts, 2);
    s.clock.advance_secs(1);
    ensure_eq!(c.pull(opts).await?.len(), 0);
    ensure_eq!(p.metrics().await?.backlog_count, 0);
    let dead = puller(&s, "dlq").await?.pull(pull_all()).await?;
    ensure_eq!(dead.len(), 1);
    ensure_eq!(dead[0].message.body, json("\"x\""));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Retention and metrics
// ---------------------------------------------------------------------------------------

/// Messages older than the retention period are deleted, even with retries left.
pub async fn messages_past_retention_are_deleted_whatever_their_retries(
    f: &dyn QueueFactory,
) -> TestResult {
    let s = open(f).await;
    s.broker
        .create_queue(
            "q",
            QueueSettings {
                message_retention_period_secs: 60,
                ..Default::default()
            },
        )
        .await?;
    let p = s.broker.producer("q").await?;
    send_json(&*p, "\"old\"").await?;
    let c = puller(&s, "q").await?;
    let opts = PullOptions {
        batch_size: 10,
        visibility_timeout_ms: 1_000,
    };
    ensure_eq!(c.pull(opts).await?.len(), 1);
    s.clock.advance_secs(30);
    send_json(&*p, "\"young\"").await?;
    s.clock.advance_secs(30);
    let got = c.pull(opts).await?;
    ensure_eq!(got.len(), 1);
    ensure_eq!(got[0].message.body, json("\"young\""));
    backlog_reaches(&*p, 1).await?;
    s.clock.advance_secs(30);
    backlog_reaches(&*p, 0).await?;
    Ok(())
}

/// Retention is 60 s to 14 days.
pub async fn retention_outside_60_seconds_to_14_days_is_rejected(
    f: &dyn QueueFactory,
) -> TestResult {
    let s = open(f).await;
    for secs in [59, 14 * 86_400 + 1] {
        let e = expect_err(
            s.broker
                .create_queue(
                    "q",
                    QueueSettings {
                        message_retention_period_secs: secs,
                        ..Default::default()
                    },
                )
                .await,
            "retention",
        )?;
        ensure!(matches!(e, QueueError::InvalidSetting { .. }), "got {e:?}");
    }
    s.broker
        .create_queue(
            "q",
            QueueSettings {
                message_retention_period_secs: 14 * 86_400,
                ..Default::default()
            },
        )
        .await?;
    Ok(())
}

/// Metrics count every stored message (delayed and leased too), their bytes and the oldest
/// timestamp; they drop as messages are acked.
pub async fn metrics_report_count_bytes_and_oldest_timestamp(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let p = s.broker.producer("q").await?;
    let empty = s.broker.metrics("q").await?;
    ensure_eq!(empty.backlog_count, 0);
    ensure_eq!(empty.oldest_message_timestamp_ms, None);
    let t0 = s.clock.now_ms();
    send_json(&*p, "\"a\"").await?;
    s.clock.advance_secs(1);
    p.send(
        json("\"bb\""),
        SendOptions {
            delay_seconds: Some(600),
            ..Default::default()
        },
    )
    .await?;
    let m = s.broker.metrics("q").await?;
    ensure_eq!(m.backlog_count, 2);
    ensure_eq!(m.backlog_bytes, 7);
    ensure_eq!(m.oldest_message_timestamp_ms, Some(t0));
    let c = puller(&s, "q").await?;
    let got = c.pull(pull_all()).await?;
    ensure_eq!(s.broker.metrics("q").await?.backlog_count, 2);
    c.ack(AckRequest {
        acks: vec![got[0].lease_id.clone()],
        retries: vec![],
    })
    .await?;
    let m = s.broker.metrics("q").await?;
    ensure_eq!(m.backlog_count, 1);
    ensure_eq!(m.backlog_bytes, 4);
    ensure_eq!(m.oldest_message_timestamp_ms, Some(t0 + 1000));
    Ok(())
}

/// Errors map to kinds, HTTP statuses and, where the platform has one, its code.
pub async fn errors_carry_kinds_codes_and_http_statuses(f: &dyn QueueFactory) -> TestResult {
    let s = open(f).await;
    let e = expect_err(
        s.broker.producer("bad name!").await.map(|_| ()),
        "queue name",
    )?;
    ensure!(
        matches!(e, QueueError::InvalidQueueName { .. }),
        "got {e:?}"
    );
    ensure_eq!(e.http_status(), 400);
    let overloaded = QueueError::RateLimited {
        queue: "q".into(),
        limit: 5000,
    };
    ensure_eq!(overloaded.code(), Some(CloudflareCode::V4(10250)));
    ensure!(
        overloaded.to_string().starts_with("Queue is overloaded."),
        "{overloaded}"
    );
    let internal = QueueError::engine("test", "disk on fire");
    ensure_eq!(internal.http_status(), 500);
    ensure_eq!(internal.code(), Some(CloudflareCode::V4(15000)));
    Ok(())
}
