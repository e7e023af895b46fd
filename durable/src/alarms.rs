//! Alarms: the runtime-wide index that survives restarts, and each namespace's queue.
//!
//! The object's own database holds the truth (`_cf_ALARM`: time and retry count, written in
//! the object's transaction). The index (`alarms.sqlite` at the runtime's root) holds a hint
//! per object, written *before* the object's transaction commits and made durable in the
//! same committer round, so that every alarm an object holds has an entry. A stale entry is
//! harmless: when it comes due the object compares it with its own alarm and drops it.
//! On start, a namespace loads its entries; alarms that came due while the process was down
//! fire at once.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bindery_core::durable::{DurableError, DurableObjectId, DurableResult};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;

/// The persistent alarm index shared by the namespaces of one runtime.
pub(crate) struct AlarmIndex {
    conn: Mutex<Connection>,
    path: PathBuf,
    wal: Mutex<Option<Arc<File>>>,
}

fn engine(op: &'static str) -> impl Fn(rusqlite::Error) -> DurableError {
    move |e| DurableError::storage(op, e)
}

impl AlarmIndex {
    pub(crate) fn open(path: &Path) -> DurableResult<Self> {
        let conn = Connection::open(path).map_err(engine("open alarm index"))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS alarms (
                 ns TEXT NOT NULL, id BLOB NOT NULL, name TEXT, scheduled_ms INTEGER NOT NULL,
                 PRIMARY KEY (ns, id)) WITHOUT ROWID;",
        )
        .map_err(engine("open alarm index"))?;
        Ok(Self {
            conn: Mutex::new(conn),
            path: path.to_owned(),
            wal: Mutex::new(None),
        })
    }

    /// Records (or moves) the hint for one object. Returns the file to fsync with the
    /// object's commit.
    pub(crate) fn upsert(
        &self,
        ns: &str,
        id: &DurableObjectId,
        scheduled_ms: u64,
    ) -> DurableResult<Arc<File>> {
        let conn = self.conn.lock();
        conn.prepare_cached(
            "INSERT INTO alarms (ns, id, name, scheduled_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (ns, id) DO UPDATE SET name = excluded.name,
                 scheduled_ms = excluded.scheduled_ms",
        )
        .and_then(|mut s| {
            s.execute(params![
                ns,
                &id.as_bytes()[..],
                id.name(),
                scheduled_ms as i64
            ])
        })
        .map_err(engine("record alarm"))?;
        drop(conn);
        self.wal_file()
    }

    /// Drops the hint if it still says `scheduled_ms`.
    pub(crate) fn remove_if(&self, ns: &str, id: &DurableObjectId, scheduled_ms: u64) {
        let conn = self.conn.lock();
        let _ = conn
            .prepare_cached("DELETE FROM alarms WHERE ns = ?1 AND id = ?2 AND scheduled_ms = ?3")
            .and_then(|mut s| s.execute(params![ns, &id.as_bytes()[..], scheduled_ms as i64]));
    }

    /// Every hint of namespace `ns`.
    pub(crate) fn load(&self, ns: &str) -> DurableResult<Vec<Due>> {
        let conn = self.conn.lock();
        let mut s = conn
            .prepare("SELECT id, name, scheduled_ms FROM alarms WHERE ns = ?1")
            .map_err(engine("load alarms"))?;
        let rows = s
            .query_map([ns], |r| {
                let id: Vec<u8> = r.get(0)?;
                let name: Option<String> = r.get(1)?;
                let at: i64 = r.get(2)?;
                Ok((id, name, at))
            })
            .map_err(engine("load alarms"))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, name, at) = row.map_err(engine("load alarms"))?;
            if let Ok(bytes) = <[u8; 32]>::try_from(id.as_slice()) {
                out.push(Due {
                    at_ms: at.max(0) as u64,
                    id: DurableObjectId::from_parts(bytes, name.map(Arc::from)),
                });
            }
        }
        Ok(out)
    }

    /// The hint for one object, if any (used by tests of the index itself).
    #[allow(dead_code)]
    pub(crate) fn get(&self, ns: &str, id: &DurableObjectId) -> Option<u64> {
        let conn = self.conn.lock();
        conn.query_row(
            "SELECT scheduled_ms FROM alarms WHERE ns = ?1 AND id = ?2",
            params![ns, &id.as_bytes()[..]],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .ok()
        .flatten()
        .map(|v| v as u64)
    }

    fn wal_file(&self) -> DurableResult<Arc<File>> {
        let mut w = self.wal.lock();
        if let Some(f) = &*w {
            return Ok(Arc::clone(f));
        }
        let mut p = self.path.clone().into_os_string();
        p.push("-wal");
        let f = Arc::new(File::open(&p).map_err(|e| DurableError::storage("open alarm index", e))?);
        *w = Some(Arc::clone(&f));
        Ok(f)
    }
}

/// An alarm that comes due at `at_ms`.
#[derive(Debug, Clone)]
pub(crate) struct Due {
    pub at_ms: u64,
    pub id: DurableObjectId,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        self.at_ms == o.at_ms && self.id == o.id
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at_ms, self.id.as_bytes()).cmp(&(o.at_ms, o.id.as_bytes()))
    }
}

/// A namespace's pending alarms, earliest first; the scheduler task sleeps on the clock
/// until the first one.
#[derive(Default)]
pub(crate) struct AlarmQueue {
    heap: Mutex<BinaryHeap<Reverse<Due>>>,
    pub changed: Notify,
}

impl AlarmQueue {
    pub(crate) fn push(&self, due: Due) {
        self.heap.lock().push(Reverse(due));
        self.changed.notify_one();
    }

    /// The earliest time waiting, if any.
    pub(crate) fn next_at(&self) -> Option<u64> {
        self.heap.lock().peek().map(|Reverse(d)| d.at_ms)
    }

    /// Every alarm due at `now_ms`.
    pub(crate) fn take_due(&self, now_ms: u64) -> Vec<Due> {
        let mut h = self.heap.lock();
        let mut out = Vec::new();
        while h.peek().is_some_and(|Reverse(d)| d.at_ms <= now_ms) {
            if let Some(Reverse(d)) = h.pop() {
                out.push(d);
            }
        }
        out
    }
}
