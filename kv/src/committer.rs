//! Group commit: one thread applies every write, many callers share each commit.
//!
//! Callers send an [`Op`] with a reply channel. The committer thread takes the first waiting
//! op, then every op that arrived meanwhile (up to [`MAX_BATCH`]), applies them in one engine
//! transaction (one fsync for the redb engine) and answers all of them. Under load, batches
//! grow by themselves: while one commit is on disk the next batch queues up, and the thread
//! lingers up to 200 us for the writers it just answered, so a crowd shares each fsync.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bindery_core::kv::{KvError, KvResult};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use crate::engine::{Engine, Op};

/// Most ops in one transaction.
const MAX_BATCH: usize = 1024;

/// Longest wait for the writers of the previous commit to queue their next op.
const LINGER: Duration = Duration::from_micros(200);

struct Request {
    op: Op,
    reply: oneshot::Sender<KvResult<Applied>>,
}

/// What a committed op reports back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Applied {
    /// The commit sequence number of the transaction that held the op.
    pub seq: u64,
    /// Keys removed by a sweep.
    pub removed: usize,
}

/// Handle to the committer thread. Dropping every handle stops the thread after it has
/// committed what it was given.
pub(crate) struct Committer {
    tx: Option<mpsc::UnboundedSender<Request>>,
    committed: Arc<AtomicU64>,
    poisoned: Arc<Mutex<Option<String>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Committer {
    pub fn start(engine: Arc<dyn Engine>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let committed = Arc::new(AtomicU64::new(0));
        let poisoned = Arc::new(Mutex::new(None));
        let thread = std::thread::Builder::new()
            .name("bindery-kv-commit".into())
            .spawn({
                let committed = Arc::clone(&committed);
                let poisoned = Arc::clone(&poisoned);
                move || run(engine, rx, committed, poisoned)
            })
            .expect("spawning the KV committer thread");
        Self {
            tx: Some(tx),
            committed,
            poisoned,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// The sequence number of the last committed transaction.
    pub fn committed_seq(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Submits `op` and waits until it is durable.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future does not withdraw the op: it may still be committed.
    pub async fn submit(&self, op: Op) -> KvResult<Applied> {
        self.enqueue(op)?.await
    }

    /// Queues `op` and returns a future for its outcome that does not borrow the committer,
    /// so a caller can wait without keeping the store alive.
    pub fn enqueue(
        &self,
        op: Op,
    ) -> KvResult<impl std::future::Future<Output = KvResult<Applied>> + Send + 'static> {
        if let Some(reason) = self.poisoned.lock().clone() {
            return Err(KvError::Poisoned { reason });
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .as_ref()
            .ok_or(KvError::Closed)?
            .send(Request { op, reply })
            .map_err(|_| KvError::Closed)?;
        Ok(async move { rx.await.map_err(|_| KvError::Closed)? })
    }
}

impl Drop for Committer {
    /// Closes the queue and waits for the thread to commit what it holds and release the
    /// engine.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(handle) = self.thread.lock().take() {
            let _ = handle.join();
        }
    }
}

/// Moves every op already queued into `batch`, up to [`MAX_BATCH`].
fn drain(rx: &mut mpsc::UnboundedReceiver<Request>, batch: &mut Vec<Request>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(r) => batch.push(r),
            Err(_) => break,
        }
    }
}

fn run(
    engine: Arc<dyn Engine>,
    mut rx: mpsc::UnboundedReceiver<Request>,
    committed: Arc<AtomicU64>,
    poisoned: Arc<Mutex<Option<String>>>,
) {
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    let mut ops: Vec<Op> = Vec::with_capacity(MAX_BATCH);
    let mut last_len = 1;
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        drain(&mut rx, &mut batch);
        // The writers answered by the previous commit are on their way back with their next
        // op; wait briefly for them so they share this commit instead of paying for the
        // next one. A lone writer (last_len == 1) never waits.
        let deadline = Instant::now() + LINGER;
        while batch.len() < last_len && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(20));
            drain(&mut rx, &mut batch);
        }
        last_len = batch.len();
        let mut replies = Vec::with_capacity(batch.len());
        for r in batch.drain(..) {
            ops.push(r.op);
            replies.push(r.reply);
        }
        if let Some(reason) = poisoned.lock().clone() {
            for reply in replies {
                let _ = reply.send(Err(KvError::Poisoned {
                    reason: reason.clone(),
                }));
            }
            ops.clear();
            continue;
        }
        match engine.apply(&ops) {
            Ok(removed) => {
                let seq = committed.fetch_add(1, Ordering::AcqRel) + 1;
                for (reply, removed) in replies.into_iter().zip(removed) {
                    let _ = reply.send(Ok(Applied { seq, removed }));
                }
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::error!(error = %reason, "KV commit failed; the store now refuses writes");
                *poisoned.lock() = Some(reason.clone());
                let mut first = Some(e);
                for reply in replies {
                    let err = first.take().unwrap_or_else(|| KvError::Poisoned {
                        reason: reason.clone(),
                    });
                    let _ = reply.send(Err(err));
                }
            }
        }
        ops.clear();
    }
}
