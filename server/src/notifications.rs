//! R2 event notifications: object-create and object-delete events of a bucket go to a queue,
//! as `wrangler r2 bucket notification create` sets them up on the platform.
//!
//! The rules live in `r2-notifications.json` in the data folder (written by
//! `bindery r2 bucket notification create|delete`) and are applied when `bindery serve`
//! starts. Events then reach the queue whichever way the object changed (a Worker's R2
//! binding, the S3 API, the CLI), as R2's notification JSON messages.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bindery_core::queues::QueueBroker;
use bindery_core::r2::{QueueEventSink, R2Buckets, R2Error, R2EventType};
use serde::{Deserialize, Serialize};

use crate::errors::ServerError;
use crate::registry::Registry;

/// The file holding the rules, in the data folder.
pub const FILE: &str = "r2-notifications.json";

/// One rule: events of `event_types` on keys matching `prefix` and `suffix` in `bucket` go to
/// `queue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The bucket.
    pub bucket: String,
    /// The queue.
    pub queue: String,
    /// `object-create` and/or `object-delete`.
    pub event_types: Vec<String>,
    /// Only keys starting with this.
    #[serde(default)]
    pub prefix: String,
    /// Only keys ending with this.
    #[serde(default)]
    pub suffix: String,
}

/// Every rule of a data folder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    /// The rules, in the order they were created.
    pub rules: Vec<Rule>,
}

/// Parses an event type name.
///
/// # Errors
///
/// A message naming the accepted names.
pub fn event_type(name: &str) -> Result<R2EventType, String> {
    match name {
        "object-create" => Ok(R2EventType::ObjectCreate),
        "object-delete" => Ok(R2EventType::ObjectDelete),
        other => Err(format!(
            "event type {other:?}; expected object-create or object-delete"
        )),
    }
}

impl Rules {
    fn path(data: &Path) -> PathBuf {
        data.join(FILE)
    }

    /// The rules of `data` (none when the file does not exist).
    ///
    /// # Errors
    ///
    /// When the file cannot be read or parsed.
    pub fn load(data: &Path) -> Result<Self, String> {
        let path = Self::path(data);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes the rules to `data` atomically (temporary file, fsync, rename).
    ///
    /// # Errors
    ///
    /// When the file cannot be written.
    pub fn save(&self, data: &Path) -> Result<(), String> {
        std::fs::create_dir_all(data).map_err(|e| format!("{}: {e}", data.display()))?;
        let path = Self::path(data);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        let write = || -> std::io::Result<()> {
            std::fs::write(&tmp, text.as_bytes())?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(data)?.sync_all()
        };
        write().map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Applies `rules` to their buckets (creating buckets that do not exist yet).
///
/// # Errors
///
/// When a bucket, queue or event type is invalid.
pub async fn apply(registry: &Registry, rules: &Rules) -> Result<usize, ServerError> {
    let mut buckets: Vec<&str> = rules.rules.iter().map(|r| r.bucket.as_str()).collect();
    buckets.sort_unstable();
    buckets.dedup();
    if buckets.is_empty() {
        return Ok(0);
    }
    let store = registry.r2_store().await?;
    let broker = registry.queues().await?;
    let setup = |e: &dyn std::fmt::Display| ServerError::BadBody {
        reason: format!("{FILE}: {e}"),
    };
    for bucket in &buckets {
        let handle = match store.bucket(bucket).await {
            Ok(b) => b,
            Err(R2Error::NoSuchBucket { .. }) => {
                store.create_bucket(bucket).await.map_err(|e| setup(&e))?;
                store.bucket(bucket).await.map_err(|e| setup(&e))?
            }
            Err(e) => return Err(setup(&e)),
        };
        let mut compiled = Vec::new();
        for rule in rules.rules.iter().filter(|r| r.bucket == *bucket) {
            let producer = broker.producer(&rule.queue).await.map_err(|e| setup(&e))?;
            let types = rule
                .event_types
                .iter()
                .map(|t| event_type(t))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| setup(&e))?;
            let sink = Arc::new(QueueEventSink::new(producer, "bindery"));
            compiled.push(sink.rule(types, &rule.prefix, &rule.suffix));
        }
        handle
            .set_event_notifications(compiled)
            .await
            .map_err(|e| setup(&e))?;
    }
    tracing::info!(rules = rules.rules.len(), "R2 event notifications applied");
    Ok(rules.rules.len())
}
