//! [`Queues`]: opening the store, naming queues, attaching consumers, and the retention
//! sweeper.

use std::path::Path;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use bindery_core::queues::{
    ConsumerSettings, PullConsumer, PullConsumerSettings, PushConsumer, QueueBroker, QueueError,
    QueueHandler, QueueLimits, QueueMetrics, QueueProducer, QueueResult, QueueSettings,
    validate_queue_name,
};
use bindery_core::{SharedClock, SystemClock};
use redb::Durability;
use tokio::sync::watch;

use crate::committer::Committer;
use crate::engine::{Engine, Op, Reply, RetryPolicy};
use crate::producer::Producer;
use crate::pull::PullHandle;
use crate::push::PushHandle;
use crate::registry::{Attached, QueueState, Registry};

/// Messages one sweep transaction deletes at most.
const SWEEP_BATCH: usize = 10_000;

/// Runs a blocking call on Tokio's blocking pool.
pub(crate) async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> QueueResult<T> + Send + 'static,
) -> QueueResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| QueueError::engine("blocking task", e))?
}

/// Configures and opens [`Queues`].
#[derive(Clone)]
pub struct QueuesBuilder {
    clock: SharedClock,
    limits: QueueLimits,
    cache_bytes: usize,
}

impl Default for QueuesBuilder {
    fn default() -> Self {
        Self {
            clock: SystemClock::shared(),
            limits: QueueLimits::cloudflare(),
            cache_bytes: 64 * 1024 * 1024,
        }
    }
}

impl QueuesBuilder {
    /// The clock for timestamps, delays, batch timeouts, leases and retention.
    /// Default: [`SystemClock`].
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The limits to enforce. Default: [`QueueLimits::cloudflare`].
    pub fn limits(mut self, limits: QueueLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Bytes of the engine's page cache, which bounds the store's memory whatever the
    /// backlog. Default: 64 MiB.
    pub fn cache_bytes(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Opens (creating if needed) the durable store in the redb file at `path`. Every send,
    /// ack and retry is fsynced before it returns.
    ///
    /// Must be called inside a Tokio runtime with the time driver (the retention sweeper is
    /// a task).
    ///
    /// # Errors
    ///
    /// [`QueueError::Engine`] if the file cannot be opened (including when it is open
    /// already).
    pub async fn open(self, path: impl AsRef<Path>) -> QueueResult<Queues> {
        let path = path.as_ref().to_owned();
        let cache = self.cache_bytes;
        let db = run_blocking(move || {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| QueueError::engine("open", e))?;
            }
            redb::Builder::new()
                .set_cache_size(cache)
                .create(&path)
                .map_err(|e| QueueError::engine("open", e))
        })
        .await?;
        self.build(db, Durability::Immediate).await
    }

    /// Opens a durable store on a custom redb storage backend, for example one that injects
    /// I/O faults in tests. Commits are fsynced (`sync_data`) as with [`open`](Self::open).
    pub async fn open_backend(self, backend: impl redb::StorageBackend) -> QueueResult<Queues> {
        let cache = self.cache_bytes;
        let db = run_blocking(move || {
            redb::Builder::new()
                .set_cache_size(cache)
                .create_with_backend(backend)
                .map_err(|e| QueueError::engine("open", e))
        })
        .await?;
        self.build(db, Durability::Immediate).await
    }

    /// A store held in memory only (the same engine on redb's in-memory backend).
    pub async fn memory(self) -> QueueResult<Queues> {
        let db = redb::Builder::new()
            .set_cache_size(self.cache_bytes)
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| QueueError::engine("open", e))?;
        self.build(db, Durability::None).await
    }

    async fn build(self, db: redb::Database, durability: Durability) -> QueueResult<Queues> {
        let registry = Arc::new(Registry::default());
        let clock = Arc::clone(&self.clock);
        let reg = Arc::clone(&registry);
        let engine = run_blocking(move || Engine::open(db, durability, clock, reg)).await?;
        let (stop, stopped) = watch::channel(());
        let shared = Arc::new(Shared {
            committer: Committer::start(engine)?,
            registry,
            clock: self.clock,
            limits: self.limits,
            _stop_sweeper: stop,
        });
        tokio::spawn(sweeper(
            Arc::downgrade(&shared),
            Arc::clone(&shared.registry),
            Arc::clone(&shared.clock),
            stopped,
        ));
        Ok(Queues { shared })
    }
}

/// What every handle of one store shares.
pub(crate) struct Shared {
    pub committer: Committer,
    pub registry: Arc<Registry>,
    pub clock: SharedClock,
    pub limits: QueueLimits,
    /// Dropping it stops the sweeper.
    _stop_sweeper: watch::Sender<()>,
}

impl Shared {
    /// The queue `name`, created with default settings if it does not exist.
    pub async fn ensure(
        &self,
        name: &str,
        settings: Option<QueueSettings>,
    ) -> QueueResult<Arc<QueueState>> {
        validate_queue_name(name)?;
        if settings.is_none()
            && let Some(state) = self.registry.by_name(name)
        {
            return Ok(state);
        }
        match self
            .committer
            .submit(Op::Ensure {
                name: name.to_owned(),
                settings,
            })
            .await?
        {
            Reply::Queue(state) => Ok(state),
            other => Err(unexpected("ensure", &other)),
        }
    }

    /// Checks and resolves a consumer's retry settings.
    pub async fn retry_policy(
        &self,
        queue: &str,
        max_retries: u32,
        dead_letter_queue: Option<&str>,
    ) -> QueueResult<RetryPolicy> {
        check_range(
            "max_retries",
            max_retries.into(),
            0,
            self.limits.max_retries.into(),
        )?;
        let dead_letter = match dead_letter_queue {
            None => None,
            Some(d) if d == queue => {
                return Err(QueueError::InvalidQueueName {
                    name: d.to_owned(),
                    reason: "a queue cannot be its own dead-letter queue",
                });
            }
            Some(d) => Some(self.ensure(d, None).await?.id),
        };
        Ok(RetryPolicy {
            max_deliveries: max_retries.saturating_add(1),
            dead_letter,
        })
    }
}

pub(crate) fn unexpected(op: &'static str, reply: &Reply) -> QueueError {
    QueueError::engine(op, format!("unexpected engine reply {reply:?}"))
}

/// Fails with [`QueueError::InvalidSetting`] unless `min <= value <= max`.
pub(crate) fn check_range(name: &'static str, value: u64, min: u64, max: u64) -> QueueResult<()> {
    if value < min || value > max {
        return Err(QueueError::InvalidSetting {
            name,
            value,
            min,
            max,
        });
    }
    Ok(())
}

/// Cloudflare Queues on one machine: a set of named queues in one store.
///
/// Cheap to clone; clones share the store. The store closes when the last handle (the
/// broker's clones, producers, consumers) is dropped.
#[derive(Clone)]
pub struct Queues {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queues").finish_non_exhaustive()
    }
}

impl Queues {
    /// A builder with the defaults (system clock, Cloudflare's limits).
    pub fn builder() -> QueuesBuilder {
        QueuesBuilder::default()
    }

    /// Opens the durable store at `path` with the defaults.
    pub async fn open(path: impl AsRef<Path>) -> QueueResult<Self> {
        QueuesBuilder::default().open(path).await
    }

    /// The limits this store enforces.
    pub fn limits(&self) -> &QueueLimits {
        &self.shared.limits
    }

    /// The concrete producer of `name` (see [`QueueBroker::producer`]).
    pub async fn queue(&self, name: &str) -> QueueResult<Producer> {
        let state = self.shared.ensure(name, None).await?;
        Ok(Producer::new(Arc::clone(&self.shared), state))
    }
}

#[async_trait]
impl QueueBroker for Queues {
    async fn create_queue(&self, name: &str, settings: QueueSettings) -> QueueResult<()> {
        let l = &self.shared.limits;
        check_range(
            "delivery_delay",
            settings.delivery_delay_secs,
            0,
            l.max_delay_secs,
        )?;
        check_range(
            "message_retention_period",
            settings.message_retention_period_secs,
            l.min_retention_secs,
            l.max_retention_secs,
        )?;
        self.shared.ensure(name, Some(settings)).await.map(drop)
    }

    async fn producer(&self, name: &str) -> QueueResult<Arc<dyn QueueProducer>> {
        Ok(Arc::new(self.queue(name).await?))
    }

    async fn start_push_consumer(
        &self,
        name: &str,
        settings: ConsumerSettings,
        handler: Arc<dyn QueueHandler>,
    ) -> QueueResult<Box<dyn PushConsumer>> {
        let l = &self.shared.limits;
        check_range(
            "max_batch_size",
            settings.max_batch_size as u64,
            1,
            l.max_consumer_batch_size as u64,
        )?;
        check_range(
            "max_batch_timeout",
            settings.max_batch_timeout_ms,
            0,
            l.max_batch_timeout_ms,
        )?;
        if let Some(d) = settings.retry_delay_secs {
            check_range("retry_delay", d, 0, l.max_delay_secs)?;
        }
        if let Some(c) = settings.max_concurrency {
            check_range("max_concurrency", c as u64, 1, l.max_concurrency as u64)?;
        }
        let state = self.shared.ensure(name, None).await?;
        let policy = self
            .shared
            .retry_policy(
                name,
                settings.max_retries,
                settings.dead_letter_queue.as_deref(),
            )
            .await?;
        attach(&state, Attached::Push)?;
        Ok(Box::new(PushHandle::start(
            Arc::clone(&self.shared),
            state,
            settings,
            policy,
            handler,
        )))
    }

    async fn pull_consumer(
        &self,
        name: &str,
        settings: PullConsumerSettings,
    ) -> QueueResult<Arc<dyn PullConsumer>> {
        let state = self.shared.ensure(name, None).await?;
        let policy = self
            .shared
            .retry_policy(
                name,
                settings.max_retries,
                settings.dead_letter_queue.as_deref(),
            )
            .await?;
        attach(&state, Attached::Pull(1))?;
        Ok(Arc::new(PullHandle::new(
            Arc::clone(&self.shared),
            state,
            policy,
        )))
    }

    async fn metrics(&self, name: &str) -> QueueResult<QueueMetrics> {
        let state = self.shared.ensure(name, None).await?;
        let m = *state.backlog.lock();
        Ok(m)
    }
}

/// Records a consumer on `state`, refusing a push consumer beside any other consumer.
fn attach(state: &QueueState, want: Attached) -> QueueResult<()> {
    let mut attached = state.attached.lock();
    let conflict = |existing| QueueError::ConsumerConflict {
        queue: state.name.clone(),
        existing,
    };
    *attached = match (*attached, want) {
        (Attached::Nothing, w) => w,
        (Attached::Pull(n), Attached::Pull(_)) => Attached::Pull(n + 1),
        (Attached::Push, _) => return Err(conflict("a push consumer")),
        (Attached::Pull(_), _) => return Err(conflict("pull consumers")),
    };
    Ok(())
}

/// Deletes messages past their retention, waking at the earliest such moment by the clock:
/// one timer for the whole store.
/// It holds the store only while a sweep runs, so dropping the last handle closes the store
/// at once.
async fn sweeper(
    shared: Weak<Shared>,
    registry: Arc<Registry>,
    clock: SharedClock,
    mut stop: watch::Receiver<()>,
) {
    // Set when a sweep found nothing to delete: then only a change wakes the sweeper, so a
    // deadline that is already past cannot make it spin.
    let mut idle = false;
    loop {
        let notified = registry.sweep.notified();
        let deadline = if idle { None } else { registry.next_expiry() };
        let wait = async {
            match deadline {
                Some(d) => clock.sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.changed() => return,
            _ = notified => {
                idle = false;
                continue;
            }
            _ = wait => {}
        }
        loop {
            let Some(s) = shared.upgrade() else { return };
            match s.committer.submit(Op::Sweep { max: SWEEP_BATCH }).await {
                Ok(Reply::Swept { more: true, .. }) => continue,
                Ok(Reply::Swept { removed, .. }) => {
                    idle = removed == 0;
                    break;
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "queue retention sweep failed");
                    return;
                }
            }
        }
    }
}
