//! [`VectorizeAccount`]: an account's indexes, one folder each under a root folder, and
//! [`VectorizeBuilder`], which configures them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bindery_core::vectorize::{
    IndexConfig, IndexInfo, VectorIndex, Vectorize, VectorizeError, VectorizeLimits,
    VectorizeResult,
};
use bindery_core::{SharedClock, SystemClock};
use parking_lot::Mutex;

use crate::hnsw::HnswParams;
use crate::index::{Engine, Settings, VectorizeIndex, run_blocking};
use crate::store::{config_bytes, parse_config};

const CONFIG_FILE: &str = "index.json";

/// Configures and opens a [`VectorizeAccount`].
#[derive(Clone)]
pub struct VectorizeBuilder {
    clock: SharedClock,
    settings: Settings,
}

impl Default for VectorizeBuilder {
    fn default() -> Self {
        Self {
            clock: SystemClock::shared(),
            settings: Settings {
                limits: VectorizeLimits::cloudflare(),
                engine: Engine::Hnsw(HnswParams::default()),
                exact_threshold: 3_000,
                two_hop_below: 0.3,
                rebuild_ratio: 0.2,
                rebuild_min: 1_000,
                threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
                persist_min: 50_000,
            },
        }
    }
}

impl VectorizeBuilder {
    /// The clock for creation and mutation times. Default: [`SystemClock`].
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The limits to enforce. Default: [`VectorizeLimits::cloudflare`].
    pub fn limits(mut self, limits: VectorizeLimits) -> Self {
        self.settings.limits = limits;
        self
    }

    /// The search engine. Default: [`Engine::Hnsw`] with `M = 16`, `ef_construction = 200`,
    /// `ef_search = 64`.
    pub fn engine(mut self, engine: Engine) -> Self {
        self.settings.engine = engine;
        self
    }

    /// Candidate sets (after namespace and filter) of at most this many vectors are scanned
    /// exactly instead of searched in the graph; indexes this small are always scanned.
    /// Default: 3,000.
    pub fn exact_threshold(mut self, vectors: usize) -> Self {
        self.settings.exact_threshold = vectors;
        self
    }

    /// Filtered graph searches whose filter passes less than this fraction of the vectors
    /// look through rejected neighbours to theirs (two hops) instead of computing their
    /// distances. Default: 0.3.
    pub fn two_hop_below(mut self, fraction: f64) -> Self {
        self.settings.two_hop_below = fraction;
        self
    }

    /// A background rebuild starts when deleted (or replaced) vectors reach both this
    /// fraction of the graph and [`rebuild_min`](Self::rebuild_min). Default: 0.2.
    pub fn rebuild_ratio(mut self, fraction: f64) -> Self {
        self.settings.rebuild_ratio = fraction;
        self
    }

    /// The fewest deleted vectors that trigger a background rebuild. Default: 1,000.
    pub fn rebuild_min(mut self, vectors: usize) -> Self {
        self.settings.rebuild_min = vectors;
        self
    }

    /// Threads that link new vectors into the graph. Default: the machine's parallelism.
    pub fn build_threads(mut self, threads: usize) -> Self {
        self.settings.threads = threads.max(1);
        self
    }

    /// A snapshot is written in the background once this many vectors (and at least as
    /// many as the index holds) changed since the last one; it is also written on drop.
    /// Default: 50,000.
    pub fn snapshot_every(mut self, changes: usize) -> Self {
        self.settings.persist_min = changes.max(1);
        self
    }

    /// Opens (creating if needed) the account whose indexes live under `root`.
    ///
    /// # Errors
    ///
    /// [`VectorizeError::Engine`] if the folder cannot be created.
    pub async fn open(self, root: impl AsRef<Path>) -> VectorizeResult<VectorizeAccount> {
        let root = root.as_ref().to_owned();
        let r = root.clone();
        run_blocking(move || {
            std::fs::create_dir_all(&r).map_err(|e| VectorizeError::engine("open", e))
        })
        .await?;
        Ok(VectorizeAccount {
            inner: Arc::new(AccountInner {
                root,
                builder: self,
                open: Mutex::new(HashMap::new()),
            }),
        })
    }
}

struct AccountInner {
    root: PathBuf,
    builder: VectorizeBuilder,
    open: Mutex<HashMap<String, VectorizeIndex>>,
}

/// An account's Vectorize indexes, stored under one folder (one subfolder per index).
#[derive(Clone)]
pub struct VectorizeAccount {
    inner: Arc<AccountInner>,
}

impl std::fmt::Debug for VectorizeAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorizeAccount")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

impl VectorizeAccount {
    /// A builder with the defaults.
    pub fn builder() -> VectorizeBuilder {
        VectorizeBuilder::default()
    }

    /// Opens an account with the defaults.
    pub async fn open(root: impl AsRef<Path>) -> VectorizeResult<Self> {
        VectorizeBuilder::default().open(root).await
    }

    /// The index `name` as its concrete type (for [`VectorizeIndex::flush`],
    /// [`VectorizeIndex::stats`] and tuning).
    pub async fn index_handle(&self, name: &str) -> VectorizeResult<VectorizeIndex> {
        check_name(name, &self.inner.builder.settings.limits)?;
        let inner = Arc::clone(&self.inner);
        let name = name.to_owned();
        run_blocking(move || {
            let mut open = inner.open.lock();
            if let Some(ix) = open.get(&name) {
                return Ok(ix.clone());
            }
            let dir = inner.root.join(&name);
            let (config, created) = read_config(&dir)?
                .ok_or_else(|| VectorizeError::IndexNotFound { name: name.clone() })?;
            let ix = VectorizeIndex::open(
                &name,
                &dir,
                config,
                created,
                inner.builder.settings.clone(),
                Arc::clone(&inner.builder.clock),
            )?;
            open.insert(name, ix.clone());
            Ok(ix)
        })
        .await
    }

    /// Forgets open handles so that the next [`index_handle`](Self::index_handle) reopens
    /// from disk once every outstanding handle is dropped (they keep working meanwhile).
    pub fn release_handles(&self) {
        self.inner.open.lock().clear();
    }
}

fn read_config(dir: &Path) -> VectorizeResult<Option<(IndexConfig, u64)>> {
    match std::fs::read(dir.join(CONFIG_FILE)) {
        Ok(raw) => parse_config(&raw)
            .map(Some)
            .ok_or_else(|| VectorizeError::engine("read config", "corrupt index.json")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(VectorizeError::engine("read config", e)),
    }
}

fn check_name(name: &str, l: &VectorizeLimits) -> VectorizeResult<()> {
    let bad = |reason: &str| VectorizeError::InvalidIndexName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() {
        return Err(bad("names must not be empty"));
    }
    if name.len() > l.max_index_name_bytes {
        return Err(VectorizeError::InvalidIndexName {
            name: name.to_owned(),
            reason: format!(
                "name is {} bytes; the limit is {}",
                name.len(),
                l.max_index_name_bytes
            ),
        });
    }
    if !name.as_bytes()[0].is_ascii_lowercase() {
        return Err(bad("names start with a lowercase letter"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(bad("names hold only lowercase letters, digits and '-'"));
    }
    Ok(())
}

#[async_trait]
impl Vectorize for VectorizeAccount {
    async fn create_index(&self, name: &str, config: IndexConfig) -> VectorizeResult<IndexInfo> {
        let l = &self.inner.builder.settings.limits;
        check_name(name, l)?;
        if config.dimensions == 0 || config.dimensions > l.max_dimensions {
            return Err(VectorizeError::InvalidDimensions {
                dimensions: config.dimensions,
                max: l.max_dimensions,
            });
        }
        let inner = Arc::clone(&self.inner);
        let name = name.to_owned();
        run_blocking(move || {
            let mut open = inner.open.lock();
            let dir = inner.root.join(&name);
            if open.contains_key(&name) || read_config(&dir)?.is_some() {
                return Err(VectorizeError::IndexAlreadyExists { name });
            }
            let created = inner.builder.clock.now_ms();
            // A folder without a config file is an interrupted creation: start over.
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| VectorizeError::engine("create", e))?;
            }
            let ix = VectorizeIndex::open(
                &name,
                &dir,
                config.clone(),
                created,
                inner.builder.settings.clone(),
                Arc::clone(&inner.builder.clock),
            )?;
            crate::snapshot::write(&dir.join(CONFIG_FILE), &config_bytes(&config, created))
                .map_err(|e| VectorizeError::engine("create", e))?;
            open.insert(name.clone(), ix);
            Ok(IndexInfo {
                name,
                config,
                created_on_ms: created,
            })
        })
        .await
    }

    async fn get_index(&self, name: &str) -> VectorizeResult<IndexInfo> {
        check_name(name, &self.inner.builder.settings.limits)?;
        let dir = self.inner.root.join(name);
        let name = name.to_owned();
        run_blocking(move || {
            let (config, created_on_ms) = read_config(&dir)?
                .ok_or_else(|| VectorizeError::IndexNotFound { name: name.clone() })?;
            Ok(IndexInfo {
                name,
                config,
                created_on_ms,
            })
        })
        .await
    }

    async fn list_indexes(&self) -> VectorizeResult<Vec<IndexInfo>> {
        let root = self.inner.root.clone();
        run_blocking(move || {
            let mut out = Vec::new();
            let entries =
                std::fs::read_dir(&root).map_err(|e| VectorizeError::engine("list", e))?;
            for entry in entries {
                let entry = entry.map_err(|e| VectorizeError::engine("list", e))?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                if let Some((config, created_on_ms)) = read_config(&entry.path())? {
                    out.push(IndexInfo {
                        name,
                        config,
                        created_on_ms,
                    });
                }
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
    }

    async fn delete_index(&self, name: &str) -> VectorizeResult<()> {
        check_name(name, &self.inner.builder.settings.limits)?;
        let inner = Arc::clone(&self.inner);
        let name = name.to_owned();
        run_blocking(move || {
            let mut open = inner.open.lock();
            let dir = inner.root.join(&name);
            if read_config(&dir)?.is_none() {
                return Err(VectorizeError::IndexNotFound { name });
            }
            if let Some(ix) = open.remove(&name) {
                ix.close();
            }
            // The config file goes first: a crash mid-way leaves a folder that is no index.
            std::fs::remove_file(dir.join(CONFIG_FILE))
                .map_err(|e| VectorizeError::engine("delete", e))?;
            std::fs::remove_dir_all(&dir).map_err(|e| VectorizeError::engine("delete", e))?;
            Ok(())
        })
        .await
    }

    async fn index(&self, name: &str) -> VectorizeResult<Arc<dyn VectorIndex>> {
        Ok(Arc::new(self.index_handle(name).await?))
    }
}
