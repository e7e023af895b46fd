//! The runtime: one folder, one clock, one set of limits and one committer shared by its
//! namespaces; plus what the namespace and actor modules share (the task-local call
//! context, the id-keyed maps, the blocking-pool helper).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use bindery_core::durable::{DurableError, DurableLimits, DurableObject, DurableResult, State};
use bindery_core::{SharedClock, SystemClock};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::alarms::{AlarmIndex, AlarmQueue};
use crate::committer::Committer;
use crate::ids::IdMaker;
use crate::namespace::{Namespace, NsInner, schedule_alarms};
use crate::storage::{ObjectStorage, StorageEnv};

pub(crate) const SHARDS: usize = 64;

/// Ids are hashes already: the shard maps hash them by taking eight of their bytes.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8).take(2) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

pub(crate) type IdMap<V> = HashMap<[u8; 32], V, std::hash::BuildHasherDefault<IdHasher>>;

/// The ids of the objects on a call path, outermost first.
pub(crate) type Chain = Arc<Vec<[u8; 32]>>;

tokio::task_local! {
    pub(crate) static CURRENT: Current;
}

/// What a running handler's task knows: the call path and its object's storage.
#[derive(Clone)]
pub(crate) struct Current {
    pub(crate) chain: Arc<Vec<[u8; 32]>>,
    pub(crate) storage: Arc<ObjectStorage>,
}

/// The storage of the object whose handler runs on this task, if any.
pub(crate) fn current_storage() -> Option<Arc<ObjectStorage>> {
    CURRENT.try_with(|c| Arc::clone(&c.storage)).ok()
}

/// Runs `f` on the blocking pool. Fails with [`DurableError::Closed`] when the Tokio
/// runtime is shutting down and the task was cancelled.
pub(crate) async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> DurableResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Ok(v),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(DurableError::Closed),
    }
}

// ---------------------------------------------------------------------------------------------
// Runtime
// ---------------------------------------------------------------------------------------------

/// Builds a [`DurableRuntime`]. Every setter documents its default.
pub struct DurableRuntimeBuilder {
    clock: SharedClock,
    limits: DurableLimits,
    idle_timeout_ms: u64,
    max_live_instances: usize,
    nested_call_timeout_ms: u64,
}

impl Default for DurableRuntimeBuilder {
    fn default() -> Self {
        Self {
            clock: SystemClock::shared(),
            limits: DurableLimits::cloudflare(),
            idle_timeout_ms: 10_000,
            max_live_instances: 10_000,
            nested_call_timeout_ms: 30_000,
        }
    }
}

impl DurableRuntimeBuilder {
    /// The clock for alarms, idle eviction and time limits. Default: the system clock.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The limits to enforce. Default: [`DurableLimits::cloudflare`].
    pub fn limits(mut self, limits: DurableLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Milliseconds without events after which an instance is evicted (its memory freed;
    /// storage and hibernatable connections stay). Default: 10,000 (the platform
    /// hibernates idle objects after 10 s).
    pub fn idle_timeout_ms(mut self, ms: u64) -> Self {
        self.idle_timeout_ms = ms;
        self
    }

    /// Most live instances per namespace; past it, the least recently used idle instance
    /// is evicted. Busy instances finish their queued events first, so the bound can be
    /// passed briefly under load. Default: 10,000.
    pub fn max_live_instances(mut self, n: usize) -> Self {
        self.max_live_instances = n.max(1);
        self
    }

    /// How long a call made from inside an object may wait for its answer before failing
    /// with [`DurableError::CallTimeout`] (measured on the clock). Detected call cycles fail
    /// at once. Default: 30,000 ms.
    pub fn nested_call_timeout_ms(mut self, ms: u64) -> Self {
        self.nested_call_timeout_ms = ms;
        self
    }

    /// Opens (or creates) the runtime's folder: one sub-folder per namespace, one SQLite
    /// database per object that wrote, and the alarm index.
    pub async fn open(self, root: impl Into<PathBuf>) -> DurableResult<DurableRuntime> {
        let root = root.into();
        let r = root.clone();
        let alarms = run_blocking(move || {
            std::fs::create_dir_all(&r).map_err(|e| DurableError::storage("create root", e))?;
            AlarmIndex::open(&r.join("alarms.sqlite"))
        })
        .await??;
        let committer =
            Committer::start().map_err(|e| DurableError::storage("start committer", e))?;
        let env = Arc::new(StorageEnv {
            committer,
            alarms,
            clock: self.clock,
            limits: Arc::new(self.limits),
        });
        Ok(DurableRuntime {
            inner: Arc::new(RuntimeInner {
                root,
                env,
                idle_timeout_ms: self.idle_timeout_ms,
                max_live: self.max_live_instances,
                nested_call_timeout_ms: self.nested_call_timeout_ms,
                next_conn: AtomicU64::new(1),
                names: Mutex::new(Vec::new()),
            }),
        })
    }
}

pub(crate) struct RuntimeInner {
    pub(crate) root: PathBuf,
    pub(crate) env: Arc<StorageEnv>,
    pub(crate) idle_timeout_ms: u64,
    pub(crate) max_live: usize,
    pub(crate) nested_call_timeout_ms: u64,
    pub(crate) next_conn: AtomicU64,
    pub(crate) names: Mutex<Vec<String>>,
}

/// Hosts namespaces of Durable Objects in one folder, with one clock, one set of limits and
/// one committer shared by every object (group commit across objects).
#[derive(Clone)]
pub struct DurableRuntime {
    inner: Arc<RuntimeInner>,
}

impl std::fmt::Debug for DurableRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableRuntime")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

impl DurableRuntime {
    /// A builder with the defaults.
    pub fn builder() -> DurableRuntimeBuilder {
        DurableRuntimeBuilder::default()
    }

    /// Creates the namespace `name` for class `O`; `constructor` builds an instance from its
    /// [`State`] on the instance's first event. Alarms stored for this namespace start
    /// firing now (those that came due while the process was down fire at once).
    ///
    /// Names are 1 to 64 characters of `A-Z a-z 0-9 _ -`; each may be opened once per
    /// runtime.
    pub async fn namespace<O, F>(&self, name: &str, constructor: F) -> DurableResult<Namespace<O>>
    where
        O: DurableObject,
        F: Fn(State) -> O + Send + Sync + 'static,
    {
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(DurableError::invalid(format!(
                "namespace name {name:?} must be 1 to 64 characters of A-Z a-z 0-9 _ -"
            )));
        }
        {
            let mut names = self.inner.names.lock();
            if names.iter().any(|n| n == name) {
                return Err(DurableError::invalid(format!(
                    "namespace {name:?} is already open in this runtime"
                )));
            }
            names.push(name.to_owned());
        }
        let rt = Arc::clone(&self.inner);
        let ns_name = name.to_owned();
        let due = run_blocking(move || rt.env.alarms.load(&ns_name)).await??;
        let queue = Arc::new(AlarmQueue::default());
        for d in due {
            queue.push(d);
        }
        let inner = Arc::new_cyclic(|me: &Weak<NsInner<O>>| NsInner {
            name: Arc::from(name),
            dir: self.inner.root.join(name),
            ids: IdMaker::new(name),
            rt: Arc::clone(&self.inner),
            ctor: Box::new(constructor),
            shards: (0..SHARDS).map(|_| Mutex::new(IdMap::default())).collect(),
            live: AtomicUsize::new(0),
            ticks: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            drained: Notify::new(),
            alarms: queue,
            conns: Mutex::new(IdMap::default()),
            me: me.clone(),
            scheduler: Mutex::new(None),
        });
        let task = tokio::spawn(schedule_alarms(Arc::downgrade(&inner)));
        *inner.scheduler.lock() = Some(task);
        Ok(Namespace { inner })
    }

    /// Holds (`true`) or resumes (`false`) the committer before its next fsync round, so a
    /// test can observe that gated replies wait. Not for production use.
    #[doc(hidden)]
    pub fn hold_durability(&self, hold: bool) {
        let f = &self.inner.env.committer.faults;
        *f.hold.lock() = hold;
        f.resume.notify_all();
    }

    /// Makes the next `n` fsyncs fail, as a failing disk would. Not for production use.
    #[doc(hidden)]
    pub fn fail_next_syncs(&self, n: u32) {
        self.inner
            .env
            .committer
            .faults
            .fail_next
            .store(n, Ordering::Release);
    }

    /// Committer rounds completed so far (each round is one set of fsyncs shared by every
    /// commit that was waiting).
    pub fn durability_rounds(&self) -> u64 {
        self.inner.env.committer.rounds.load(Ordering::Acquire)
    }
}
