//! The in-memory view of every queue: settings, backlog, wake-ups and attached consumers.

use std::collections::HashMap;
use std::sync::Arc;

use bindery_core::queues::{QueueMetrics, QueueSettings};
use parking_lot::Mutex;
use tokio::sync::Notify;

/// What consumes a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Attached {
    #[default]
    Nothing,
    /// One push consumer.
    Push,
    /// This many live pull-consumer handles.
    Pull(usize),
}

/// One queue as the broker's tasks see it. The committer thread updates `backlog` after
/// each commit and wakes `notify` when the queue's messages changed.
#[derive(Debug)]
pub(crate) struct QueueState {
    pub id: u32,
    pub name: String,
    pub settings: Mutex<QueueSettings>,
    pub backlog: Mutex<QueueMetrics>,
    /// Woken after every commit that touched the queue, and when a push batch settles.
    pub notify: Notify,
    pub attached: Mutex<Attached>,
    /// (second, messages sent in it), for the per-queue rate limit.
    pub rate: Mutex<(u64, u64)>,
}

/// Every queue, by id and by name.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    by_id: Mutex<HashMap<u32, Arc<QueueState>>>,
    by_name: Mutex<HashMap<String, Arc<QueueState>>>,
    /// Woken when a queue's oldest message or retention changes, for the retention sweeper.
    pub sweep: Notify,
}

impl Registry {
    pub fn insert(&self, id: u32, name: &str, settings: QueueSettings) -> Arc<QueueState> {
        let state = Arc::new(QueueState {
            id,
            name: name.to_owned(),
            settings: Mutex::new(settings),
            backlog: Mutex::new(QueueMetrics::default()),
            notify: Notify::new(),
            attached: Mutex::new(Attached::Nothing),
            rate: Mutex::new((0, 0)),
        });
        self.by_id.lock().insert(id, Arc::clone(&state));
        self.by_name
            .lock()
            .insert(name.to_owned(), Arc::clone(&state));
        state
    }

    pub fn get(&self, id: u32) -> Option<Arc<QueueState>> {
        self.by_id.lock().get(&id).cloned()
    }

    pub fn by_name(&self, name: &str) -> Option<Arc<QueueState>> {
        self.by_name.lock().get(name).cloned()
    }

    /// The earliest moment a message of some queue passes its retention period.
    pub fn next_expiry(&self) -> Option<u64> {
        self.by_id
            .lock()
            .values()
            .filter_map(|s| {
                let oldest = s.backlog.lock().oldest_message_timestamp_ms?;
                let retention = s.settings.lock().message_retention_period_secs;
                Some(oldest.saturating_add(retention.saturating_mul(1000)))
            })
            .min()
    }
}
