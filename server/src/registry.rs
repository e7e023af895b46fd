//! The resources the server holds open: one store per `<kind>/<name>`, opened on first use.
//!
//! Names are 1 to 64 characters of `A-Z a-z 0-9 . _ -`, not starting with `.`, so that a name
//! maps to a file or folder under the data folder without any path traversal. In strict mode
//! only the declared resources can be used.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bindery_core::SharedClock;
use bindery_core::d1::{D1Catalog, D1Database, D1Error};
use bindery_core::queues::{
    PullConsumer, PullConsumerSettings, QueueBroker, QueueError, QueueProducer,
};
use bindery_core::r2::{R2Bucket, R2Buckets, R2Error};
use bindery_kv::KvNamespace;
use bindery_queues::Queues;
use bindery_r2::R2Store;
use parking_lot::Mutex;
use tokio::sync::OnceCell;

use crate::errors::ServerError;

/// The kind of a binding, as the `X-Bindery-Binding` header names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A KV namespace.
    Kv,
    /// An R2 bucket.
    R2,
    /// A D1 database.
    D1,
    /// A queue.
    Queue,
}

impl Kind {
    /// The kind as written in the header.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Kv => "kv",
            Kind::R2 => "r2",
            Kind::D1 => "d1",
            Kind::Queue => "queue",
        }
    }

    /// Parses a kind as written in the header.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "kv" => Some(Kind::Kv),
            "r2" => Some(Kind::R2),
            "d1" => Some(Kind::D1),
            "queue" => Some(Kind::Queue),
            _ => None,
        }
    }
}

/// Checks a resource name; the error says what is allowed.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!(
            "the name is {} bytes; it must be 1 to 64 characters",
            name.len()
        ));
    }
    if name.starts_with('.') {
        return Err("the name may not start with '.'".to_owned());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "the name contains {c:?}; allowed are A-Z, a-z, 0-9, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Parses `<kind>/<name>`.
pub fn parse_binding(value: &[u8]) -> Result<(Kind, String), ServerError> {
    let bad = |reason: String| ServerError::BadBinding {
        value: String::from_utf8_lossy(value).into_owned(),
        reason,
    };
    let text = std::str::from_utf8(value).map_err(|_| bad("not UTF-8".to_owned()))?;
    let (kind, name) = text
        .trim()
        .split_once('/')
        .ok_or_else(|| bad("expected <kind>/<name>".to_owned()))?;
    let kind = Kind::parse(kind).ok_or_else(|| {
        bad(format!(
            "unknown kind {kind:?}; expected kv, r2, d1 or queue"
        ))
    })?;
    validate_name(name).map_err(bad)?;
    Ok((kind, name.to_owned()))
}

/// A failure to provide a store: the server's own, or the store's.
#[derive(Debug)]
pub enum RegistryError<E> {
    /// Strict mode, an invalid name or an open failure.
    Server(ServerError),
    /// The store refused (an invalid bucket name, ...).
    Store(E),
}

impl<E> From<ServerError> for RegistryError<E> {
    fn from(e: ServerError) -> Self {
        RegistryError::Server(e)
    }
}

type Slot<T> = Arc<OnceCell<Arc<T>>>;

/// Stores of one kind, opened at most once each.
struct Pool<T> {
    slots: Mutex<HashMap<String, Slot<T>>>,
}

impl<T> Pool<T> {
    fn new() -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, name: &str) -> Slot<T> {
        Arc::clone(self.slots.lock().entry(name.to_owned()).or_default())
    }

    fn take_all(&self) -> Vec<Arc<T>> {
        self.slots
            .lock()
            .drain()
            .filter_map(|(_, slot)| slot.get().cloned())
            .collect()
    }
}

/// Every store the server serves.
pub struct Registry {
    data_dir: PathBuf,
    clock: SharedClock,
    declared: Option<BTreeSet<(Kind, String)>>,
    kv: Pool<KvNamespace>,
    r2: OnceCell<Arc<R2Store>>,
    queues: OnceCell<Queues>,
    d1: OnceCell<bindery_d1::Catalog>,
    pull: tokio::sync::Mutex<HashMap<String, Arc<dyn PullConsumer>>>,
    pull_settings: Mutex<HashMap<String, PullConsumerSettings>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("data_dir", &self.data_dir)
            .field("strict", &self.declared.is_some())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A registry keeping its data under `data_dir`. With `declared`, only those resources
    /// may be used (strict mode); otherwise any valid name is created on first use.
    pub fn new(
        data_dir: impl Into<PathBuf>,
        clock: SharedClock,
        declared: Option<BTreeSet<(Kind, String)>>,
    ) -> Self {
        Self {
            data_dir: data_dir.into(),
            clock,
            declared,
            kv: Pool::new(),
            r2: OnceCell::new(),
            queues: OnceCell::new(),
            d1: OnceCell::new(),
            pull: tokio::sync::Mutex::new(HashMap::new()),
            pull_settings: Mutex::new(HashMap::new()),
        }
    }

    /// The data folder.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The clock the stores use.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    fn check_declared(&self, kind: Kind, name: &str) -> Result<(), ServerError> {
        validate_name(name).map_err(|reason| ServerError::BadBinding {
            value: format!("{}/{name}", kind.as_str()),
            reason,
        })?;
        match &self.declared {
            Some(set) if !set.contains(&(kind, name.to_owned())) => {
                Err(ServerError::UnknownBinding {
                    kind: kind.as_str().to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Where the store `kind/name` keeps its data.
    pub fn path_of(&self, kind: Kind, name: &str) -> PathBuf {
        match kind {
            Kind::Kv => self.data_dir.join("kv").join(format!("{name}.redb")),
            Kind::R2 => self.data_dir.join("r2").join(name),
            Kind::D1 => self.data_dir.join("d1").join(name),
            Kind::Queue => self.data_dir.join("queues").join(name),
        }
    }

    async fn ensure_parent(path: &Path) -> Result<(), ServerError> {
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| ServerError::internal(format!("creating {}", parent.display()), e))?;
        }
        Ok(())
    }

    /// The KV namespace `name`, opened (and created) on first use.
    ///
    /// # Errors
    ///
    /// [`ServerError::UnknownBinding`] in strict mode for an undeclared name,
    /// [`ServerError::Internal`] if the store cannot be opened.
    pub async fn kv(&self, name: &str) -> Result<Arc<KvNamespace>, ServerError> {
        self.check_declared(Kind::Kv, name)?;
        let slot = self.kv.slot(name);
        let path = self.path_of(Kind::Kv, name);
        let clock = self.clock.clone();
        slot.get_or_try_init(|| async move {
            Self::ensure_parent(&path).await?;
            let ns = KvNamespace::builder()
                .clock(clock)
                .open(&path)
                .await
                .map_err(|e| ServerError::internal(format!("opening KV namespace {name}"), e))?;
            tracing::info!(namespace = name, "opened KV namespace");
            Ok::<_, ServerError>(Arc::new(ns))
        })
        .await
        .cloned()
    }

    /// The store of every R2 bucket (the folder `r2/` of the data folder).
    ///
    /// # Errors
    ///
    /// [`ServerError::Internal`] if the folder cannot be opened.
    pub async fn r2_store(&self) -> Result<Arc<R2Store>, ServerError> {
        let root = self.data_dir.join("r2");
        let clock = self.clock.clone();
        self.r2
            .get_or_try_init(|| async move {
                bindery_r2::Bucket::builder()
                    .clock(clock)
                    .open_store(&root)
                    .await
                    .map(Arc::new)
                    .map_err(|e| ServerError::internal("opening the R2 store", e))
            })
            .await
            .cloned()
    }

    /// The R2 bucket `name`, created on first use.
    ///
    /// # Errors
    ///
    /// [`ServerError::UnknownBinding`] in strict mode for an undeclared name; the bucket's
    /// own error for a name R2 refuses.
    pub async fn r2(&self, name: &str) -> Result<Arc<dyn R2Bucket>, RegistryError<R2Error>> {
        self.check_declared(Kind::R2, name)?;
        let store = self.r2_store().await?;
        match store.bucket(name).await {
            Ok(b) => Ok(b),
            Err(R2Error::NoSuchBucket { .. }) => {
                match store.create_bucket(name).await {
                    Ok(_) | Err(R2Error::BucketAlreadyExists { .. }) => {
                        tracing::info!(bucket = name, "created R2 bucket");
                    }
                    Err(e) => return Err(RegistryError::Store(e)),
                }
                store.bucket(name).await.map_err(RegistryError::Store)
            }
            Err(e) => Err(RegistryError::Store(e)),
        }
    }

    /// The broker of every queue (the file `queues.redb` of the data folder).
    ///
    /// # Errors
    ///
    /// [`ServerError::Internal`] if the store cannot be opened.
    pub async fn queues(&self) -> Result<Queues, ServerError> {
        let path = self.data_dir.join("queues.redb");
        let clock = self.clock.clone();
        self.queues
            .get_or_try_init(|| async move {
                Self::ensure_parent(&path).await?;
                Queues::builder()
                    .clock(clock)
                    .open(&path)
                    .await
                    .map_err(|e| ServerError::internal("opening the queue store", e))
            })
            .await
            .cloned()
    }

    /// The producer of queue `name`, created on first use.
    ///
    /// # Errors
    ///
    /// [`ServerError::UnknownBinding`] in strict mode for an undeclared name; the broker's
    /// error for a name it refuses.
    pub async fn queue(
        &self,
        name: &str,
    ) -> Result<Arc<dyn QueueProducer>, RegistryError<QueueError>> {
        self.check_declared(Kind::Queue, name)?;
        let broker = self.queues().await?;
        broker.producer(name).await.map_err(RegistryError::Store)
    }

    /// The catalog of every D1 database (the folder `d1/` of the data folder).
    ///
    /// # Errors
    ///
    /// [`ServerError::Internal`] if the folder cannot be created.
    pub async fn d1_catalog(&self) -> Result<bindery_d1::Catalog, ServerError> {
        let root = self.data_dir.join("d1");
        let clock = self.clock.clone();
        self.d1
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || {
                    bindery_d1::Catalog::with_builder(
                        &root,
                        bindery_d1::Database::builder().clock(clock),
                        bindery_d1::DEFAULT_OPEN_CAPACITY,
                    )
                })
                .await
                .map_err(|e| ServerError::internal("opening the D1 catalog", e))?
                .map_err(|e| ServerError::internal("opening the D1 catalog", e))
            })
            .await
            .cloned()
    }

    /// The D1 database `name`, created on first use.
    ///
    /// # Errors
    ///
    /// [`ServerError::UnknownBinding`] in strict mode for an undeclared name; the catalog's
    /// error for a name it refuses.
    pub async fn d1(&self, name: &str) -> Result<Arc<dyn D1Database>, RegistryError<D1Error>> {
        self.check_declared(Kind::D1, name)?;
        let catalog = self.d1_catalog().await?;
        match catalog.database(name).await {
            Ok(db) => Ok(db),
            Err(D1Error::NotFound { .. }) => match catalog.create(name).await {
                Ok(db) => {
                    tracing::info!(database = name, "created D1 database");
                    Ok(db)
                }
                Err(D1Error::AlreadyExists { .. }) => {
                    catalog.database(name).await.map_err(RegistryError::Store)
                }
                Err(e) => Err(RegistryError::Store(e)),
            },
            Err(e) => Err(RegistryError::Store(e)),
        }
    }

    /// Sets the settings (retries, dead-letter queue) of the pull consumer of `queue`, as a
    /// wrangler `http_pull` consumer declares them.
    pub fn configure_pull(&self, queue: &str, settings: PullConsumerSettings) {
        self.pull_settings.lock().insert(queue.to_owned(), settings);
    }

    /// The pull consumer of queue `name`, attached on first use.
    ///
    /// # Errors
    ///
    /// [`ServerError::UnknownBinding`] in strict mode for an undeclared queue; the broker's
    /// error when the queue has a push consumer.
    pub async fn pull_consumer(
        &self,
        name: &str,
    ) -> Result<Arc<dyn PullConsumer>, RegistryError<QueueError>> {
        self.check_declared(Kind::Queue, name)?;
        let mut pull = self.pull.lock().await;
        if let Some(c) = pull.get(name) {
            return Ok(Arc::clone(c));
        }
        let settings = self
            .pull_settings
            .lock()
            .get(name)
            .cloned()
            .unwrap_or_default();
        let broker = self.queues().await?;
        let consumer = broker
            .pull_consumer(name, settings)
            .await
            .map_err(RegistryError::Store)?;
        pull.insert(name.to_owned(), Arc::clone(&consumer));
        Ok(consumer)
    }

    /// Closes every open store: waits for pending commits and releases the files. Handles
    /// still held elsewhere close when their last clone is dropped.
    pub async fn close(&self) {
        let kv = self.kv.take_all();
        let count = kv.len();
        let r2 = self.r2.get().cloned();
        let queues = self.queues.get().cloned();
        let d1 = self.d1.get().cloned();
        let pull: Vec<_> = self.pull.lock().await.drain().collect();
        // Dropping a namespace joins its commit thread: do it off the async workers.
        let _ = tokio::task::spawn_blocking(move || {
            drop(kv);
            drop(r2);
            drop(queues);
            drop(d1);
            drop(pull);
        })
        .await;
        tracing::info!(kv_namespaces = count, "stores closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_headers_parse_kind_and_name() {
        assert_eq!(
            parse_binding(b"kv/my-ns_1").unwrap(),
            (Kind::Kv, "my-ns_1".to_owned())
        );
        assert!(parse_binding(b"kv").is_err());
        assert!(parse_binding(b"blob/x").is_err());
        assert!(parse_binding(b"kv/../etc").is_err());
        assert!(parse_binding(b"kv/a/b").is_err());
        assert!(parse_binding(b"kv/").is_err());
        assert!(parse_binding(&[b'k', b'v', b'/', 0xff]).is_err());
    }
}
