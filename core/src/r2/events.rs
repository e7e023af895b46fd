//! R2 event notifications: event types and messages, the sink trait, the queue adapter and
//! notification rules.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::BoxError;

/// Kinds of event a notification rule can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum R2EventType {
    /// `object-create`: put, multipart completion, copy.
    ObjectCreate,
    /// `object-delete`: delete and lifecycle deletion.
    ObjectDelete,
}

/// What caused an event (`action` in R2's message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum R2EventAction {
    /// `PutObject`.
    PutObject,
    /// `CopyObject`.
    CopyObject,
    /// `CompleteMultipartUpload`.
    CompleteMultipartUpload,
    /// `DeleteObject`.
    DeleteObject,
    /// `LifecycleDeletion`.
    LifecycleDeletion,
}

impl R2EventAction {
    /// R2's name of the action.
    pub fn as_str(self) -> &'static str {
        match self {
            R2EventAction::PutObject => "PutObject",
            R2EventAction::CopyObject => "CopyObject",
            R2EventAction::CompleteMultipartUpload => "CompleteMultipartUpload",
            R2EventAction::DeleteObject => "DeleteObject",
            R2EventAction::LifecycleDeletion => "LifecycleDeletion",
        }
    }

    /// Parses R2's name of an action.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "PutObject" => R2EventAction::PutObject,
            "CopyObject" => R2EventAction::CopyObject,
            "CompleteMultipartUpload" => R2EventAction::CompleteMultipartUpload,
            "DeleteObject" => R2EventAction::DeleteObject,
            "LifecycleDeletion" => R2EventAction::LifecycleDeletion,
            _ => return None,
        })
    }

    /// The event type the action belongs to.
    pub fn event_type(self) -> R2EventType {
        match self {
            R2EventAction::PutObject
            | R2EventAction::CopyObject
            | R2EventAction::CompleteMultipartUpload => R2EventType::ObjectCreate,
            R2EventAction::DeleteObject | R2EventAction::LifecycleDeletion => {
                R2EventType::ObjectDelete
            }
        }
    }
}

/// One event notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct R2Event {
    /// The bucket.
    pub bucket: String,
    /// What happened.
    pub action: R2EventAction,
    /// The key.
    pub key: String,
    /// Size of the created object (absent for deletions).
    pub size: Option<u64>,
    /// Etag of the created object (absent for deletions).
    pub etag: Option<String>,
    /// When it happened, ms since the epoch.
    pub event_time: u64,
}

impl R2Event {
    /// The message body R2 sends to a queue:
    /// `{"account", "bucket", "object": {"key", "size", "eTag"}, "action", "eventTime"}`.
    pub fn to_json(&self, account: &str) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        object.insert("key".into(), self.key.clone().into());
        if let Some(size) = self.size {
            object.insert("size".into(), size.into());
        }
        if let Some(etag) = &self.etag {
            object.insert("eTag".into(), etag.clone().into());
        }
        serde_json::json!({
            "account": account,
            "bucket": self.bucket,
            "object": object,
            "action": self.action.as_str(),
            "eventTime": rfc3339_ms(self.event_time),
        })
    }
}

/// Formats ms since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Where event notifications go: a queue producer, in production.
///
/// # Contract
///
/// `send` returns `Ok` only once the event is durably accepted; on `Err` the bucket retries
/// later (delivery is at least once).
#[async_trait]
pub trait R2EventSink: Send + Sync + 'static {
    /// Accepts one event.
    async fn send(&self, event: &R2Event) -> Result<(), BoxError>;
}

/// Delivers events to a queue through the Queues contract, as R2 does: each event is one
/// JSON message (see [`R2Event::to_json`]).
pub struct QueueEventSink {
    producer: Arc<dyn crate::queues::QueueProducer>,
    account: String,
}

impl QueueEventSink {
    /// A sink sending to `producer`; `account` fills the messages' `account` field.
    pub fn new(producer: Arc<dyn crate::queues::QueueProducer>, account: &str) -> Self {
        Self {
            producer,
            account: account.to_owned(),
        }
    }

    /// A notification rule sending `event_types` on keys matching `prefix` and `suffix` to
    /// this sink's queue.
    pub fn rule(
        self: Arc<Self>,
        event_types: Vec<R2EventType>,
        prefix: &str,
        suffix: &str,
    ) -> NotificationRule {
        NotificationRule {
            queue: self.producer.queue_name().to_owned(),
            sink: self,
            event_types,
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
        }
    }
}

impl std::fmt::Debug for QueueEventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueEventSink")
            .field("queue", &self.producer.queue_name())
            .field("account", &self.account)
            .finish()
    }
}

#[async_trait]
impl R2EventSink for QueueEventSink {
    async fn send(&self, event: &R2Event) -> Result<(), BoxError> {
        let body = serde_json::to_vec(&event.to_json(&self.account))?;
        self.producer
            .send(
                Bytes::from(body),
                crate::queues::SendOptions {
                    content_type: crate::queues::ContentType::Json,
                    delay_seconds: None,
                },
            )
            .await?;
        Ok(())
    }
}

/// An event notification rule: events of `event_types` on keys matching `prefix` and
/// `suffix` go to the queue named `queue`, through `sink`.
#[derive(Clone)]
pub struct NotificationRule {
    /// The queue's name (events wait, durably, for a sink of that name).
    pub queue: String,
    /// Delivers the events.
    pub sink: Arc<dyn R2EventSink>,
    /// Which events. Empty: none.
    pub event_types: Vec<R2EventType>,
    /// Only keys starting with this (empty: any).
    pub prefix: String,
    /// Only keys ending with this (empty: any).
    pub suffix: String,
}

impl std::fmt::Debug for NotificationRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationRule")
            .field("queue", &self.queue)
            .field("event_types", &self.event_types)
            .field("prefix", &self.prefix)
            .field("suffix", &self.suffix)
            .finish_non_exhaustive()
    }
}

impl NotificationRule {
    /// Whether the rule wants `action` on `key`.
    pub fn matches(&self, action: R2EventAction, key: &str) -> bool {
        self.event_types.contains(&action.event_type())
            && key.starts_with(&self.prefix)
            && key.ends_with(&self.suffix)
    }
}
