//! [`Catalog`]: named databases in one folder, opened lazily, with an LRU of open handles.
//!
//! Each database is the file `<name>.sqlite` (plus SQLite's `-wal` and `-shm` files) in the
//! catalog's folder. A handle from [`Catalog::database`] holds only the name: every call finds
//! the open database in the LRU, opening it if needed, and opening one more evicts the least
//! recently used. An evicted database closes (its writer finishes what it holds, then the
//! files are closed) once the calls running on it end, so the number of open files stays
//! bounded by the capacity plus the calls in flight.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use bindery_core::ByteStream;
use bindery_core::d1::{
    D1Catalog, D1Database, D1Error, D1ExecResult, D1ExportOptions, D1ImportResult, D1QueryOptions,
    D1Response, D1RestoreResult, D1RestoreTarget, D1Result, D1Statement,
};
use parking_lot::Mutex;
use tokio::sync::OnceCell;

use crate::database::{D1Builder, Database, run_blocking};

/// Default number of databases kept open.
pub const DEFAULT_OPEN_CAPACITY: usize = 256;

/// File extension of database files.
const EXT: &str = "sqlite";

struct Entry {
    cell: Arc<OnceCell<Database>>,
    tick: u64,
}

#[derive(Default)]
struct Lru {
    map: HashMap<String, Entry>,
    order: BTreeMap<u64, String>,
    tick: u64,
}

struct Shared {
    root: PathBuf,
    builder: D1Builder,
    capacity: usize,
    lru: Mutex<Lru>,
}

/// Many named D1 databases in one folder. Cheap to clone; clones share the catalog.
#[derive(Clone)]
pub struct Catalog {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("root", &self.shared.root)
            .field("capacity", &self.shared.capacity)
            .finish_non_exhaustive()
    }
}

fn validate_name(name: &str) -> D1Result<()> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > 64 {
        "it is longer than 64 characters"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        "only ASCII letters, digits, '-' and '_' are allowed"
    } else {
        return Ok(());
    };
    Err(D1Error::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

fn sync_dir(dir: &Path) -> D1Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| D1Error::engine("syncing the catalog folder", e))
}

impl Catalog {
    /// Opens (creating if needed) the catalog in `root` with the default database settings
    /// and [`DEFAULT_OPEN_CAPACITY`] open databases.
    ///
    /// # Errors
    ///
    /// [`D1Error::Engine`] if the folder cannot be created.
    pub fn open(root: impl AsRef<Path>) -> D1Result<Catalog> {
        Self::with_builder(root, D1Builder::default(), DEFAULT_OPEN_CAPACITY)
    }

    /// Opens the catalog in `root`; databases open with `builder`'s settings, and at most
    /// `capacity` stay open at once (at least 1).
    ///
    /// # Errors
    ///
    /// [`D1Error::Engine`] if the folder cannot be created.
    pub fn with_builder(
        root: impl AsRef<Path>,
        builder: D1Builder,
        capacity: usize,
    ) -> D1Result<Catalog> {
        let root = root.as_ref().to_owned();
        std::fs::create_dir_all(&root)
            .map_err(|e| D1Error::engine("creating the catalog folder", e))?;
        Ok(Catalog {
            shared: Arc::new(Shared {
                root,
                builder,
                capacity: capacity.max(1),
                lru: Mutex::new(Lru::default()),
            }),
        })
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.shared.root.join(format!("{name}.{EXT}"))
    }

    /// Databases open right now.
    pub fn open_count(&self) -> usize {
        self.shared
            .lru
            .lock()
            .map
            .values()
            .filter(|e| e.cell.initialized())
            .count()
    }

    fn cell(&self, name: &str) -> Arc<OnceCell<Database>> {
        let mut evicted = Vec::new();
        let cell = self.cell_evicting(name, &mut evicted);
        if !evicted.is_empty() {
            // Closing a database waits for its writer to finish and sync: never under the
            // catalog's lock, and never on an async worker.
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn_blocking(move || drop(evicted));
                }
                Err(_) => drop(evicted),
            }
        }
        cell
    }

    fn cell_evicting(
        &self,
        name: &str,
        evicted: &mut Vec<Arc<OnceCell<Database>>>,
    ) -> Arc<OnceCell<Database>> {
        let mut lru = self.shared.lru.lock();
        lru.tick += 1;
        let tick = lru.tick;
        if let Some(e) = lru.map.get_mut(name) {
            let old = std::mem::replace(&mut e.tick, tick);
            let cell = Arc::clone(&e.cell);
            lru.order.remove(&old);
            lru.order.insert(tick, name.to_owned());
            return cell;
        }
        let cell = Arc::new(OnceCell::new());
        lru.map.insert(
            name.to_owned(),
            Entry {
                cell: Arc::clone(&cell),
                tick,
            },
        );
        lru.order.insert(tick, name.to_owned());
        while lru.map.len() > self.shared.capacity {
            let Some((&oldest, _)) = lru.order.iter().next() else {
                break;
            };
            if let Some(victim) = lru.order.remove(&oldest)
                && let Some(e) = lru.map.remove(&victim)
            {
                evicted.push(e.cell);
            }
        }
        cell
    }

    fn forget(&self, name: &str) -> Option<Arc<OnceCell<Database>>> {
        let mut lru = self.shared.lru.lock();
        let e = lru.map.remove(name)?;
        lru.order.remove(&e.tick);
        Some(e.cell)
    }

    /// The open database named `name`, opening it if needed.
    pub(crate) async fn resolve(&self, name: &str) -> D1Result<Database> {
        let cell = self.cell(name);
        if let Some(db) = cell.get() {
            return Ok(db.clone());
        }
        let path = self.path_of(name);
        let builder = self.shared.builder.clone();
        let owned = name.to_owned();
        let r = cell
            .get_or_try_init(|| async move {
                run_blocking(move || {
                    if !path.exists() {
                        return Err(D1Error::NotFound { name: owned });
                    }
                    Database::open_blocking(builder, path, owned)
                })
                .await
            })
            .await;
        match r {
            Ok(db) => Ok(db.clone()),
            Err(e) => {
                if !cell.initialized() {
                    self.forget_if_same(name, &cell);
                }
                Err(e)
            }
        }
    }

    fn forget_if_same(&self, name: &str, cell: &Arc<OnceCell<Database>>) {
        let mut lru = self.shared.lru.lock();
        if lru
            .map
            .get(name)
            .is_some_and(|e| Arc::ptr_eq(&e.cell, cell))
            && let Some(e) = lru.map.remove(name)
        {
            lru.order.remove(&e.tick);
        }
    }

    /// Creates the database and returns it (the open one, not a lazy handle).
    pub async fn create_database(&self, name: &str) -> D1Result<Database> {
        validate_name(name)?;
        // An open cell means the database exists.
        if let Some(e) = self.shared.lru.lock().map.get(name)
            && e.cell.initialized()
        {
            return Err(D1Error::AlreadyExists {
                name: name.to_owned(),
            });
        }
        let cell = self.cell(name);
        let path = self.path_of(name);
        let builder = self.shared.builder.clone();
        let owned = name.to_owned();
        let root = self.shared.root.clone();
        let mut created = false;
        let r = cell
            .get_or_try_init(|| {
                created = true;
                async move {
                    run_blocking(move || {
                        if path.exists() {
                            return Err(D1Error::AlreadyExists { name: owned });
                        }
                        let db = Database::open_blocking(builder, path, owned)?;
                        sync_dir(&root)?;
                        Ok(db)
                    })
                    .await
                }
            })
            .await;
        match r {
            Ok(db) if created => Ok(db.clone()),
            Ok(_) => Err(D1Error::AlreadyExists {
                name: name.to_owned(),
            }),
            Err(e) => {
                self.forget_if_same(name, &cell);
                Err(e)
            }
        }
    }

    /// Beyond D1: restores the state of `source` at `target` into a new database named
    /// `name`, leaving `source` untouched (Time Travel's fork).
    ///
    /// # Errors
    ///
    /// [`D1Error::AlreadyExists`] if `name` exists, [`D1Error::NotFound`] if `source` does
    /// not, [`D1Error::BookmarkNotFound`] for a target outside the window.
    pub async fn fork(
        &self,
        source: &str,
        target: bindery_core::d1::D1RestoreTarget,
        name: &str,
    ) -> D1Result<Database> {
        validate_name(name)?;
        let src = self.resolve(source).await?;
        let path = self.path_of(name);
        if path.exists() {
            return Err(D1Error::AlreadyExists {
                name: name.to_owned(),
            });
        }
        src.fork_to(target, &path).await?;
        self.resolve(name).await
    }

    /// A lazy handle to the database named `name` (it must exist when used).
    pub fn handle(&self, name: &str) -> D1Result<CatalogDatabase> {
        validate_name(name)?;
        Ok(CatalogDatabase {
            catalog: self.clone(),
            name: name.to_owned(),
        })
    }
}

#[async_trait]
impl D1Catalog for Catalog {
    async fn create(&self, name: &str) -> D1Result<Arc<dyn D1Database>> {
        self.create_database(name).await?;
        Ok(Arc::new(self.handle(name)?))
    }

    async fn database(&self, name: &str) -> D1Result<Arc<dyn D1Database>> {
        validate_name(name)?;
        self.resolve(name).await?;
        Ok(Arc::new(self.handle(name)?))
    }

    async fn list(&self) -> D1Result<Vec<String>> {
        let root = self.shared.root.clone();
        run_blocking(move || {
            let mut names = Vec::new();
            let dir =
                std::fs::read_dir(&root).map_err(|e| D1Error::engine("listing databases", e))?;
            for entry in dir {
                let entry = entry.map_err(|e| D1Error::engine("listing databases", e))?;
                let file = entry.file_name();
                let file = file.to_string_lossy();
                if let Some(name) = file.strip_suffix(&format!(".{EXT}"))
                    && validate_name(name).is_ok()
                {
                    names.push(name.to_owned());
                }
            }
            names.sort();
            Ok(names)
        })
        .await
    }

    async fn delete(&self, name: &str) -> D1Result<()> {
        validate_name(name)?;
        let cell = self.forget(name);
        if let Some(db) = cell.as_ref().and_then(|c| c.get()) {
            db.inner.deleted.store(true, Ordering::Release);
        }
        let path = self.path_of(name);
        let root = self.shared.root.clone();
        let owned = name.to_owned();
        run_blocking(move || {
            // Closing the database (if this was its last handle) blocks: do it here.
            drop(cell);
            if !path.exists() {
                return Err(D1Error::NotFound { name: owned });
            }
            for suffix in ["", "-wal", "-shm"] {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(D1Error::engine("deleting a database", e)),
                }
            }
            let mut history = path.clone().into_os_string();
            history.push(".history");
            match std::fs::remove_dir_all(&history) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(D1Error::engine("deleting a database's history", e)),
            }
            sync_dir(&root)
        })
        .await
    }
}

/// A lazy handle to a database of a [`Catalog`]: each call opens the database if it is not
/// open (evicting the least recently used one when the catalog is full).
#[derive(Clone, Debug)]
pub struct CatalogDatabase {
    catalog: Catalog,
    name: String,
}

impl CatalogDatabase {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn db(&self) -> D1Result<Database> {
        self.catalog.resolve(&self.name).await
    }
}

#[async_trait]
impl D1Database for CatalogDatabase {
    async fn query_batch(
        &self,
        statements: &[D1Statement],
        options: &D1QueryOptions,
    ) -> D1Result<D1Response> {
        self.db().await?.query_batch(statements, options).await
    }

    async fn exec(&self, sql: &str) -> D1Result<D1ExecResult> {
        self.db().await?.exec(sql).await
    }

    async fn export(&self, options: D1ExportOptions) -> D1Result<ByteStream> {
        self.db().await?.export(options).await
    }

    async fn import(&self, sql: ByteStream) -> D1Result<D1ImportResult> {
        self.db().await?.import(sql).await
    }

    async fn size(&self) -> D1Result<u64> {
        self.db().await?.size().await
    }

    async fn bookmark(&self) -> D1Result<String> {
        self.db().await?.bookmark().await
    }

    async fn bookmark_at(&self, timestamp_ms: u64) -> D1Result<String> {
        self.db().await?.bookmark_at(timestamp_ms).await
    }

    async fn restore(&self, target: D1RestoreTarget) -> D1Result<D1RestoreResult> {
        self.db().await?.restore(target).await
    }
}
