//! Event notifications: an outbox in the index, drained to sinks by a background task.
//!
//! Events are written to the outbox in the same transaction as the change they describe, so
//! a committed change always has its event and a crash loses none. The task delivers them in
//! order, deleting each once its sink accepted it (at least once). An event whose queue has
//! no sink yet waits; a failing sink is retried a second later by the clock.

use std::sync::{Arc, Weak};

use bindery_core::SharedClock;
use bindery_core::r2::{R2Event, R2EventAction, R2Result};
use tokio::sync::Notify;

use crate::bucket::{Committed, Inner};
use crate::index::EngineExt;

/// Events read per round.
const BATCH: usize = 256;

/// Retry delay after a sink failed, in ms of the clock.
const RETRY_MS: u64 = 1000;

struct Pending {
    id: i64,
    queue: String,
    event: R2Event,
}

/// Delivers what the outbox holds; returns how many were delivered. Stops at the first sink
/// failure (returning what was delivered before it) so that order is kept.
pub(crate) async fn drain(inner: &Arc<Inner>) -> R2Result<usize> {
    let (delivered, _) = drain_inner(inner).await?;
    Ok(delivered)
}

/// `(delivered, failed)`.
async fn drain_inner(inner: &Arc<Inner>) -> R2Result<(usize, bool)> {
    let _draining = inner.drain_lock.lock().await;
    let mut delivered = 0;
    let mut after = 0i64;
    loop {
        let pending = inner
            .read(move |inner, tx| {
                let mut st = tx
                    .prepare_cached(
                        "SELECT id, queue, action, key, size, etag, event_time FROM outbox
                         WHERE id > ?1 ORDER BY id LIMIT ?2",
                    )
                    .during("reading events")?;
                let rows = st
                    .query_map([after, BATCH as i64], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, Option<i64>>(4)?,
                            r.get::<_, Option<String>>(5)?,
                            r.get::<_, i64>(6)?,
                        ))
                    })
                    .during("reading events")?;
                let mut out = Vec::new();
                for row in rows {
                    let (id, queue, action, key, size, etag, time) =
                        row.during("reading events")?;
                    let Some(action) = R2EventAction::parse(&action) else {
                        continue;
                    };
                    out.push(Pending {
                        id,
                        queue,
                        event: R2Event {
                            bucket: inner.name.clone(),
                            action,
                            key,
                            size: size.map(|s| s as u64),
                            etag,
                            event_time: time as u64,
                        },
                    });
                }
                Ok(out)
            })
            .await?;
        if pending.is_empty() {
            return Ok((delivered, false));
        }
        let mut done = Vec::new();
        let mut failed = false;
        for p in &pending {
            after = p.id;
            let sink = inner
                .rules
                .read()
                .iter()
                .find(|r| r.queue == p.queue)
                .map(|r| Arc::clone(&r.sink));
            let Some(sink) = sink else { continue };
            match sink.send(&p.event).await {
                Ok(()) => done.push(p.id),
                Err(e) => {
                    tracing::warn!(queue = %p.queue, error = %e, "event delivery failed; will retry");
                    failed = true;
                    break;
                }
            }
        }
        delivered += done.len();
        if !done.is_empty() {
            inner
                .write(move |_, tx| {
                    let mut st = tx
                        .prepare_cached("DELETE FROM outbox WHERE id = ?1")
                        .during("acknowledging events")?;
                    for id in &done {
                        st.execute([id]).during("acknowledging events")?;
                    }
                    Ok(Committed {
                        value: (),
                        garbage: Vec::new(),
                        events: false,
                    })
                })
                .await?;
        }
        if failed {
            return Ok((delivered, true));
        }
    }
}

/// The delivery task: drains when woken, retries failures by the clock. Holds the bucket only
/// while draining, so dropping the bucket stops it.
pub(crate) async fn deliver_loop(bucket: Weak<Inner>, wake: Arc<Notify>, clock: SharedClock) {
    loop {
        let failed = {
            let Some(inner) = bucket.upgrade() else {
                return;
            };
            match drain_inner(&inner).await {
                Ok((_, failed)) => failed,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the event outbox failed; will retry");
                    true
                }
            }
        };
        if failed {
            let retry = clock.sleep_until(clock.now_ms() + RETRY_MS);
            tokio::select! {
                () = retry => {}
                () = wake.notified() => {}
            }
        } else {
            wake.notified().await;
        }
    }
}
