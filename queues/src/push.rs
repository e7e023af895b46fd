//! Push consumers: one dispatcher task per queue forms batches and runs the handler.
//!
//! The dispatcher reads the visibility index in key order from a cursor, so a message it
//! handed out is not read again until a retry gives it a new index entry (entries written
//! after a read always sort after the cursor: their visible-at time is at least the time of
//! the read and their index sequence is newer). Nothing is written when a batch is handed
//! out; if the process dies mid-batch, the messages are still in the index and are
//! delivered again after a restart (at least once).
//!
//! It waits on one thing at a time: the queue's wake-up (a commit touched the queue, or a
//! batch settled), the clock reaching the earliest of the next visible-at time and the
//! partial batch's deadline, or shutdown. So a million delayed messages cost one timer.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use bindery_core::queues::{
    ConsumerSettings, MessageBatch, MessageOutcome, PushConsumer, QueueHandler, QueueMessage,
};
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::broker::{Shared, run_blocking};
use crate::engine::{Action, Op, Reply, RetryPolicy};
use crate::registry::{Attached, QueueState};

/// Most messages one fetch reads (the engine also stops at [`crate::engine::FETCH_BYTES`]).
const MAX_FETCH: usize = 10_000;

/// A running push consumer. Dropping it asks the dispatcher to stop; batches in flight
/// still settle.
pub(crate) struct PushHandle {
    queue: String,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl PushHandle {
    pub fn start(
        shared: Arc<Shared>,
        state: Arc<QueueState>,
        settings: ConsumerSettings,
        policy: RetryPolicy,
        handler: Arc<dyn QueueHandler>,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let queue = state.name.clone();
        let task = tokio::spawn(run(Dispatcher {
            concurrency: settings
                .max_concurrency
                .unwrap_or(shared.limits.max_concurrency),
            shared,
            state,
            settings,
            policy,
            handler,
            stop: stopped,
        }));
        Self {
            queue,
            stop,
            task: Mutex::new(Some(task)),
        }
    }
}

impl Drop for PushHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

#[async_trait]
impl PushConsumer for PushHandle {
    fn queue_name(&self) -> &str {
        &self.queue
    }

    async fn shutdown(&self) {
        self.stop.send_replace(true);
        let task = self.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

struct Dispatcher {
    shared: Arc<Shared>,
    state: Arc<QueueState>,
    settings: ConsumerSettings,
    policy: RetryPolicy,
    handler: Arc<dyn QueueHandler>,
    concurrency: usize,
    stop: watch::Receiver<bool>,
}

async fn run(mut d: Dispatcher) {
    let bs = d.settings.max_batch_size;
    let timeout = d.settings.max_batch_timeout_ms;
    let permits = Arc::new(Semaphore::new(d.concurrency));
    let mut tasks = JoinSet::new();
    let mut cursor: Option<(u64, u64)> = None;
    let mut pending: VecDeque<(u64, QueueMessage)> = VecDeque::new();
    let mut pending_since: Option<u64> = None;
    let mut next_visible: Option<u64> = None;
    let mut fetch = true;
    let clock = Arc::clone(&d.shared.clock);
    loop {
        if *d.stop.borrow() {
            break;
        }
        while tasks.try_join_next().is_some() {}
        let notified = d.state.notify.notified();
        let now = clock.now_ms();
        if next_visible.is_some_and(|t| t <= now) {
            fetch = true;
        }
        let room = (permits.available_permits() * bs)
            .saturating_sub(pending.len())
            .min(MAX_FETCH);
        if fetch && room > 0 {
            let fetched = match d
                .shared
                .committer
                .submit(Op::Snapshot { queue: d.state.id })
                .await
            {
                Ok(Reply::Snapshot(snapshot)) => {
                    run_blocking(move || snapshot.fetch(cursor, room).map(Some)).await
                }
                Ok(_) => Ok(None),
                Err(e) => Err(e),
            };
            match fetched {
                Ok(Some(f)) => {
                    if f.cursor.is_some() {
                        cursor = f.cursor;
                    }
                    // The batch timer runs from when the first waiting message became
                    // visible, not from when this task noticed it.
                    if let Some(first) = f.messages.iter().map(|m| m.1).min() {
                        pending_since = Some(pending_since.map_or(first, |p| p.min(first)));
                    }
                    pending.extend(f.messages.into_iter().map(|(seq, _, m)| (seq, m)));
                    fetch = f.full;
                    next_visible = f.next_visible_at;
                }
                Ok(None) => fetch = false,
                Err(e) => {
                    tracing::error!(queue = %d.state.name, error = %e, "push consumer stopped: fetch failed");
                    break;
                }
            }
        }
        loop {
            let full = pending.len() >= bs;
            let due = pending_since.is_some_and(|s| now >= s.saturating_add(timeout));
            if !(full || (due && !pending.is_empty())) {
                break;
            }
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                break;
            };
            let take = pending.len().min(bs);
            let batch: Vec<_> = pending.drain(..take).collect();
            if pending.is_empty() {
                pending_since = None;
            }
            tasks.spawn(deliver(
                Arc::clone(&d.shared),
                Arc::clone(&d.state),
                Arc::clone(&d.handler),
                d.settings.retry_delay_secs,
                d.policy,
                batch,
                permit,
            ));
        }
        if fetch && permits.available_permits() > 0 {
            continue;
        }
        // With every permit taken, nothing can be dispatched until a batch settles, which
        // wakes `notified`; a timer then would only spin.
        let deadline = [
            next_visible,
            pending_since
                .filter(|_| !pending.is_empty())
                .map(|s| s.saturating_add(timeout)),
        ]
        .into_iter()
        .flatten()
        .min()
        .filter(|_| permits.available_permits() > 0);
        let wait = async {
            match deadline {
                Some(t) => clock.sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = notified => fetch = true,
            _ = wait => {}
            _ = d.stop.changed() => {}
        }
    }
    while tasks.join_next().await.is_some() {}
    *d.state.attached.lock() = Attached::Nothing;
}

/// Runs the handler on one batch and settles every message by the outcome.
async fn deliver(
    shared: Arc<Shared>,
    state: Arc<QueueState>,
    handler: Arc<dyn QueueHandler>,
    retry_delay: Option<u64>,
    policy: RetryPolicy,
    messages: Vec<(u64, QueueMessage)>,
    permit: OwnedSemaphorePermit,
) {
    let (seqs, messages): (Vec<u64>, Vec<QueueMessage>) = messages.into_iter().unzip();
    let metrics = *state.backlog.lock();
    let batch = MessageBatch::new(state.name.clone(), messages, metrics);
    let call = {
        let batch = batch.clone();
        tokio::spawn(async move { handler.handle(batch).await })
    };
    let succeeded = match call.await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!(queue = %state.name, error = %e, "queue handler failed; retrying its batch");
            false
        }
        Err(e) => {
            tracing::warn!(queue = %state.name, error = %e, "queue handler panicked; retrying its batch");
            false
        }
    };
    let items = seqs
        .into_iter()
        .zip(batch.outcomes(succeeded, retry_delay))
        .map(|(seq, outcome)| {
            let action = match outcome {
                MessageOutcome::Ack => Action::Ack,
                MessageOutcome::Retry { delay_seconds } => Action::Retry {
                    delay_ms: delay_seconds
                        .min(shared.limits.max_delay_secs)
                        .saturating_mul(1000),
                    bump: true,
                },
            };
            (seq, action)
        })
        .collect();
    let op = Op::Settle {
        queue: state.id,
        items,
        policy,
        batch: true,
    };
    if let Err(e) = shared.committer.submit(op).await {
        tracing::error!(queue = %state.name, error = %e, "settling a batch failed; its messages will be delivered again");
    }
    drop(permit);
    state.notify.notify_one();
}
