//! The bucket's index: one SQLite database (WAL, `synchronous=FULL`) mapping keys to object
//! rows and object rows to their blobs, plus uploads in progress, their parts, bucket
//! configuration and the event outbox.
//!
//! Keys are stored as BLOBs so that SQLite orders them by bytes, which for UTF-8 is code point
//! order, and so that range bounds (a prefix's successor) need not be valid UTF-8.
//!
//! One writer connection, serialized by a mutex, runs every write transaction with
//! `BEGIN IMMEDIATE`; conditions (`onlyIf`, upload existence, part etags) are evaluated inside
//! that transaction, so a check and the write it guards are atomic. Readers take pooled
//! connections and read from a snapshot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bindery_core::r2::{
    HttpMetadata, NotificationRule, R2Checksums, R2Error, R2EventAction, R2Object, R2Result,
    StorageClass,
};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

/// Converts engine errors at the module edge.
pub(crate) trait EngineExt<T> {
    /// Wraps the error as [`R2Error::Engine`] naming `op`.
    fn during(self, op: &'static str) -> R2Result<T>;
}

impl<T> EngineExt<T> for Result<T, rusqlite::Error> {
    fn during(self, op: &'static str) -> R2Result<T> {
        self.map_err(|e| R2Error::engine(op, e))
    }
}

impl<T> EngineExt<T> for std::io::Result<T> {
    fn during(self, op: &'static str) -> R2Result<T> {
        self.map_err(|e| R2Error::engine(op, e))
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects(
    key BLOB PRIMARY KEY,
    version TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    uploaded INTEGER NOT NULL,
    http TEXT NOT NULL,
    custom TEXT NOT NULL,
    checksums TEXT NOT NULL,
    class TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS object_blobs(
    version TEXT NOT NULL,
    idx INTEGER NOT NULL,
    blob TEXT NOT NULL,
    start INTEGER NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY(version, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads(
    upload_id TEXT PRIMARY KEY,
    key BLOB NOT NULL,
    initiated INTEGER NOT NULL,
    http TEXT NOT NULL,
    custom TEXT NOT NULL,
    class TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS uploads_by_key ON uploads(key, upload_id);
CREATE TABLE IF NOT EXISTS parts(
    upload_id TEXT NOT NULL,
    part_number INTEGER NOT NULL,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    uploaded INTEGER NOT NULL,
    PRIMARY KEY(upload_id, part_number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS config(name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    action TEXT NOT NULL,
    key TEXT NOT NULL,
    size INTEGER,
    etag TEXT,
    event_time INTEGER NOT NULL
);
";

/// An object's index row.
#[derive(Debug, Clone)]
pub(crate) struct ObjectRow {
    pub key: String,
    pub version: String,
    pub size: u64,
    pub etag: String,
    pub uploaded: u64,
    pub http: HttpMetadata,
    pub custom: BTreeMap<String, String>,
    pub checksums: R2Checksums,
    pub class: StorageClass,
}

impl ObjectRow {
    pub fn to_object(&self) -> R2Object {
        R2Object {
            key: self.key.clone(),
            version: self.version.clone(),
            size: self.size,
            etag: self.etag.clone(),
            http_etag: format!("\"{}\"", self.etag),
            uploaded: self.uploaded,
            http_metadata: self.http.clone(),
            custom_metadata: self.custom.clone(),
            range: None,
            checksums: self.checksums.clone(),
            storage_class: self.class,
        }
    }
}

/// One blob of an object: bytes `start..start + size` of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlobRef {
    pub blob: String,
    pub start: u64,
    pub size: u64,
}

/// The columns [`read_object`] expects, in order.
pub(crate) const OBJECT_COLUMNS: &str =
    "key, version, size, etag, uploaded, http, custom, checksums, class";

/// Reads an object row selected with [`OBJECT_COLUMNS`].
pub(crate) fn read_object(row: &rusqlite::Row<'_>) -> rusqlite::Result<ObjectRow> {
    let key: Vec<u8> = row.get(0)?;
    let http: String = row.get(5)?;
    let custom: String = row.get(6)?;
    let checksums: String = row.get(7)?;
    let class: String = row.get(8)?;
    Ok(ObjectRow {
        key: String::from_utf8(key).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, e.into())
        })?,
        version: row.get(1)?,
        size: row.get::<_, i64>(2)? as u64,
        etag: row.get(3)?,
        uploaded: row.get::<_, i64>(4)? as u64,
        http: json_col(5, &http)?,
        custom: json_col(6, &custom)?,
        checksums: json_col(7, &checksums)?,
        class: StorageClass::parse(&class).unwrap_or_default(),
    })
}

fn json_col<T: serde::de::DeserializeOwned>(idx: usize, text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e.into())
    })
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".to_owned())
}

/// The SQLite index of one bucket.
pub(crate) struct Index {
    path: PathBuf,
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    committer: Option<std::thread::JoinHandle<()>>,
    readers: Mutex<Vec<Connection>>,
}

/// Readers kept open for reuse.
const MAX_IDLE_READERS: usize = 8;

/// Most write jobs sharing one commit.
const MAX_BATCH: usize = 256;

/// A write job: runs its change on the writer connection (inside a savepoint of the shared
/// transaction) and returns what to do once the transaction's fate is known.
type Job = Box<dyn FnOnce(&Connection) -> Finish + Send>;
type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

impl Index {
    /// Opens (creating if needed) the index at `path` and starts its committer thread.
    pub fn open(path: &Path) -> R2Result<Self> {
        let conn = connect(path).during("opening the index")?;
        conn.execute_batch(SCHEMA)
            .during("creating the index schema")?;
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let committer = std::thread::Builder::new()
            .name("bindery-r2-commit".into())
            .spawn(move || commit_loop(conn, rx))
            .during("starting the index committer")?;
        Ok(Self {
            path: path.to_owned(),
            jobs: Some(jobs),
            committer: Some(committer),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` on a reader connection inside a read transaction (one snapshot).
    pub fn read<T>(&self, f: impl FnOnce(&Transaction<'_>) -> R2Result<T>) -> R2Result<T> {
        let pooled = self.readers.lock().pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => connect(&self.path).during("opening an index reader")?,
        };
        let result = (|| {
            let tx = conn.transaction().during("starting a read")?;
            let out = f(&tx)?;
            tx.finish().during("ending a read")?;
            Ok(out)
        })();
        let mut readers = self.readers.lock();
        if readers.len() < MAX_IDLE_READERS {
            readers.push(conn);
        }
        result
    }

    /// Runs `f` as one atomic change and returns once it is durable: its effects are kept
    /// when it returns `Ok` and undone when it returns `Err`. Changes submitted together by
    /// concurrent callers share one transaction and one fsync (group commit); each runs in
    /// its own savepoint, so one caller's failure never undoes another's change.
    ///
    /// Blocks the calling thread: call it from a blocking context.
    pub fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> R2Result<T> + Send + 'static,
    ) -> R2Result<T> {
        let (reply, answer) = std::sync::mpsc::sync_channel::<R2Result<T>>(1);
        let job: Job = Box::new(move |conn: &Connection| -> Finish {
            let outcome = run_in_savepoint(conn, f);
            Box::new(move |committed: Result<(), String>| {
                let result = match (outcome, committed) {
                    (Ok(v), Ok(())) => Ok(v),
                    (Err(e), _) => Err(e),
                    (Ok(_), Err(e)) => Err(R2Error::engine("committing", e)),
                };
                let _ = reply.send(result);
            })
        });
        self.jobs
            .as_ref()
            .ok_or(R2Error::Closed)?
            .send(job)
            .map_err(|_| R2Error::Closed)?;
        answer.recv().map_err(|_| R2Error::Closed)?
    }
}

impl Drop for Index {
    /// Stops the committer after it has committed what it holds.
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.committer.take() {
            let _ = t.join();
        }
    }
}

fn run_in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> R2Result<T>,
) -> R2Result<T> {
    conn.execute_batch("SAVEPOINT job")
        .during("starting a change")?;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn)))
        .unwrap_or_else(|_| Err(R2Error::engine("writing the index", "a change panicked")));
    let end = if outcome.is_ok() {
        conn.execute_batch("RELEASE job")
    } else {
        conn.execute_batch("ROLLBACK TO job; RELEASE job")
    };
    end.during("ending a change")?;
    outcome
}

/// The committer: takes every job waiting (up to [`MAX_BATCH`]), runs them in one
/// transaction, commits once, then tells each job the outcome.
fn commit_loop(conn: Connection, rx: std::sync::mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let reason = e.to_string();
            for job in batch {
                // Run nothing; report the failure.
                let finish = job_failed(job, &conn);
                finish(Err(reason.clone()));
            }
            continue;
        }
        let finishers: Vec<Finish> = batch.into_iter().map(|job| job(&conn)).collect();
        let committed = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for finish in finishers {
            finish(committed.clone());
        }
    }
}

/// Finishes a job whose transaction could not start: its change runs in a savepoint that
/// is rolled back, and it is told the failure.
fn job_failed(job: Job, conn: &Connection) -> Finish {
    let _ = conn.execute_batch("SAVEPOINT doomed");
    let finish = job(conn);
    let _ = conn.execute_batch("ROLLBACK TO doomed; RELEASE doomed");
    finish
}

/// The stored row of `key`.
pub(crate) fn get_object(conn: &Connection, key: &str) -> R2Result<Option<ObjectRow>> {
    conn.prepare_cached(&format!(
        "SELECT {OBJECT_COLUMNS} FROM objects WHERE key = ?1"
    ))
    .and_then(|mut st| st.query_row([key.as_bytes()], read_object).optional())
    .during("reading an object")
}

/// The blobs of an object version, in body order.
pub(crate) fn object_blobs(conn: &Connection, version: &str) -> R2Result<Vec<BlobRef>> {
    let mut st = conn
        .prepare_cached(
            "SELECT blob, start, size FROM object_blobs WHERE version = ?1 ORDER BY idx",
        )
        .during("reading object blobs")?;
    let rows = st
        .query_map([version], |r| {
            Ok(BlobRef {
                blob: r.get(0)?,
                start: r.get::<_, i64>(1)? as u64,
                size: r.get::<_, i64>(2)? as u64,
            })
        })
        .during("reading object blobs")?;
    rows.collect::<Result<_, _>>()
        .during("reading object blobs")
}

/// Removes the object row of `key` (if any) and returns the blobs it referenced.
pub(crate) fn remove_object(tx: &Connection, key: &str) -> R2Result<Option<Vec<String>>> {
    let version: Option<String> = tx
        .prepare_cached("SELECT version FROM objects WHERE key = ?1")
        .and_then(|mut st| st.query_row([key.as_bytes()], |r| r.get(0)).optional())
        .during("deleting an object")?;
    let Some(version) = version else {
        return Ok(None);
    };
    let blobs = object_blobs(tx, &version)?
        .into_iter()
        .map(|b| b.blob)
        .collect();
    tx.execute("DELETE FROM object_blobs WHERE version = ?1", [&version])
        .during("deleting an object")?;
    tx.execute("DELETE FROM objects WHERE key = ?1", [key.as_bytes()])
        .during("deleting an object")?;
    Ok(Some(blobs))
}

/// Inserts an object row (the key must have no row) with its blobs.
pub(crate) fn insert_object(tx: &Connection, row: &ObjectRow, blobs: &[BlobRef]) -> R2Result<()> {
    tx.prepare_cached(
        "INSERT INTO objects(key, version, size, etag, uploaded, http, custom, checksums, class)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut st| {
        st.execute(params![
            row.key.as_bytes(),
            row.version,
            row.size as i64,
            row.etag,
            row.uploaded as i64,
            to_json(&row.http),
            to_json(&row.custom),
            to_json(&row.checksums),
            row.class.as_str(),
        ])
    })
    .during("storing an object")?;
    let mut st = tx
        .prepare_cached(
            "INSERT INTO object_blobs(version, idx, blob, start, size) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .during("storing an object")?;
    for (i, b) in blobs.iter().enumerate() {
        st.execute(params![
            row.version,
            i as i64,
            b.blob,
            b.start as i64,
            b.size as i64
        ])
        .during("storing an object")?;
    }
    Ok(())
}

/// Queues one event per matching notification rule, in the same transaction as the change.
pub(crate) fn enqueue_events(
    tx: &Connection,
    rules: &[NotificationRule],
    action: R2EventAction,
    key: &str,
    size: Option<u64>,
    etag: Option<&str>,
    now_ms: u64,
) -> R2Result<()> {
    for rule in rules.iter().filter(|r| r.matches(action, key)) {
        tx.prepare_cached(
            "INSERT INTO outbox(queue, action, key, size, etag, event_time)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut st| {
            st.execute(params![
                rule.queue,
                action.as_str(),
                key,
                size.map(|s| s as i64),
                etag,
                now_ms as i64
            ])
        })
        .during("queueing an event")?;
    }
    Ok(())
}

/// Every blob the index references (objects and parts of uploads in progress).
pub(crate) fn live_blobs(conn: &Connection) -> R2Result<std::collections::HashSet<String>> {
    let mut st = conn
        .prepare("SELECT blob FROM object_blobs UNION ALL SELECT blob FROM parts")
        .during("listing live blobs")?;
    let rows = st
        .query_map([], |r| r.get::<_, String>(0))
        .during("listing live blobs")?;
    rows.collect::<Result<_, _>>().during("listing live blobs")
}

/// A configuration value.
pub(crate) fn get_config(conn: &Connection, name: &str) -> R2Result<Option<String>> {
    conn.prepare_cached("SELECT value FROM config WHERE name = ?1")
        .and_then(|mut st| st.query_row([name], |r| r.get(0)).optional())
        .during("reading configuration")
}

/// Sets a configuration value.
pub(crate) fn set_config(tx: &Connection, name: &str, value: &str) -> R2Result<()> {
    tx.execute(
        "INSERT INTO config(name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        [name, value],
    )
    .during("writing configuration")?;
    Ok(())
}

/// The smallest byte string greater than every string starting with `prefix`, or `None`
/// when there is none (the prefix is empty or all `0xFF`).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_change_in_a_shared_commit_leaves_the_others_intact() {
        let dir = tempfile::tempdir().expect("temp dir");
        let index = std::sync::Arc::new(Index::open(&dir.path().join("i.sqlite")).expect("open"));
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let index = std::sync::Arc::clone(&index);
                std::thread::spawn(move || {
                    index.write(move |conn| {
                        conn.execute(
                            "INSERT INTO config(name, value) VALUES (?1, 'v')",
                            [format!("k{i}")],
                        )
                        .during("test")?;
                        if i % 4 == 0 {
                            return Err(R2Error::PreconditionFailed);
                        }
                        Ok(i)
                    })
                })
            })
            .collect();
        let mut failed = 0;
        for t in threads {
            if t.join().expect("thread").is_err() {
                failed += 1;
            }
        }
        assert_eq!(failed, 4);
        let kept: Vec<String> = index
            .read(|tx| {
                let mut st = tx
                    .prepare("SELECT name FROM config ORDER BY name")
                    .during("t")?;
                let rows = st.query_map([], |r| r.get(0)).during("t")?;
                rows.collect::<Result<_, _>>().during("t")
            })
            .expect("read");
        assert_eq!(kept.len(), 12);
        assert!(
            kept.iter()
                .all(|k| k[1..].parse::<usize>().expect("n") % 4 != 0)
        );
    }

    #[test]
    fn prefix_end_is_the_first_string_past_the_prefix() {
        assert_eq!(prefix_end(b"a/"), Some(b"a0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b""), None);
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }
}
