//! Group commit: one thread owns the engine, and every op waiting when it starts a
//! transaction shares that transaction's single fsync.
//!
//! Callers send an [`Op`] with a reply channel. The thread takes the first waiting op, then
//! every op that arrived meanwhile (up to [`MAX_BATCH`]), applies them in one transaction
//! and answers all of them after the commit, so no answer reports data that is not yet
//! durable. While one commit is on disk the next batch queues up, so batches grow with load.
//! Reads that must be ordered with writes (the push consumer's fetch, the pull consumer's
//! lease) go through here too.

use std::sync::Arc;

use bindery_core::queues::{QueueError, QueueResult};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use crate::engine::{Engine, Op, Reply};

/// Most ops in one transaction.
const MAX_BATCH: usize = 1024;

/// How long the committer waits, at most, for the writers of its previous commit to return
/// (`GATHER_ROUNDS` pauses of `GATHER_PAUSE`).
const GATHER_PAUSE: std::time::Duration = std::time::Duration::from_micros(50);
const GATHER_ROUNDS: usize = 4;

struct Request {
    op: Op,
    reply: oneshot::Sender<QueueResult<Reply>>,
}

/// Handle to the committer thread. Dropping it stops the thread after it has committed
/// what it was given.
pub(crate) struct Committer {
    tx: Option<mpsc::UnboundedSender<Request>>,
    poisoned: Arc<Mutex<Option<String>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Committer {
    pub fn start(engine: Engine) -> QueueResult<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let poisoned = Arc::new(Mutex::new(None));
        let thread = std::thread::Builder::new()
            .name("bindery-queues-commit".into())
            .spawn({
                let poisoned = Arc::clone(&poisoned);
                move || run(engine, rx, poisoned)
            })
            .map_err(|e| QueueError::engine("starting the committer thread", e))?;
        Ok(Self {
            tx: Some(tx),
            poisoned,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Submits `op` and waits until it is applied (and durable, if it wrote).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future does not withdraw the op: it may still be committed.
    pub async fn submit(&self, op: Op) -> QueueResult<Reply> {
        if let Some(reason) = self.poisoned.lock().clone() {
            return Err(QueueError::Poisoned { reason });
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .as_ref()
            .ok_or(QueueError::Closed)?
            .send(Request { op, reply })
            .map_err(|_| QueueError::Closed)?;
        rx.await.map_err(|_| QueueError::Closed)?
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(handle) = self.thread.lock().take() {
            let _ = handle.join();
        }
    }
}

fn run(
    mut engine: Engine,
    mut rx: mpsc::UnboundedReceiver<Request>,
    poisoned: Arc<Mutex<Option<String>>>,
) {
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    // Writers answered by the previous commit need a moment to send their next op; when
    // that commit served several, wait briefly for as many to return so they share the next
    // fsync instead of splitting into a small commit and a large one. A lone writer never
    // waits.
    let mut last_batch = 0usize;
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        let mut waited = 0;
        loop {
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            if batch.len() >= last_batch.min(MAX_BATCH) || waited >= GATHER_ROUNDS {
                break;
            }
            std::thread::sleep(GATHER_PAUSE);
            waited += 1;
        }
        last_batch = batch.len();
        let mut replies = Vec::with_capacity(batch.len());
        let mut ops = Vec::with_capacity(batch.len());
        for r in batch.drain(..) {
            match r.op {
                // Snapshots see committed data only, so they are answered before this
                // batch's writes and their fsync.
                Op::Snapshot { queue } => {
                    let _ = r.reply.send(engine.snapshot(queue).map(Reply::Snapshot));
                }
                op => {
                    ops.push(op);
                    replies.push(r.reply);
                }
            }
        }
        if ops.is_empty() {
            continue;
        }
        if let Some(reason) = poisoned.lock().clone() {
            for reply in replies {
                let _ = reply.send(Err(QueueError::Poisoned {
                    reason: reason.clone(),
                }));
            }
            continue;
        }
        match engine.apply(ops) {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::error!(error = %reason, "queue commit failed; the store now refuses writes");
                *poisoned.lock() = Some(reason.clone());
                let mut first = Some(e);
                for reply in replies {
                    let err = first.take().unwrap_or_else(|| QueueError::Poisoned {
                        reason: reason.clone(),
                    });
                    let _ = reply.send(Err(err));
                }
            }
        }
    }
}
