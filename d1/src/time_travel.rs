//! Time Travel: archiving every commit, bookmarks, restore and fork.
//!
//! The writer calls [`TimeTravel::capture`] after every commit: it reads the new frames from
//! the WAL (SQLite never checkpoints on its own: automatic checkpoints are off, and so is the
//! checkpoint on close) and appends them to the [`Archive`] with the commit's time. Only then
//! does the writer answer the callers. When the WAL passes a size, the archive is made
//! durable and the WAL is checkpointed (passively: readers are never waited for); after a
//! complete checkpoint, and once enough has been archived since the last one, the database
//! file is copied as a new base snapshot.
//!
//! Commit times come from the clock and never go backwards. A timestamp answered by
//! [`TimeTravel::bookmark_at`] is never given to a later commit, so the same timestamp always
//! names the same commit.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bindery_core::SharedClock;
use bindery_core::d1::{D1Error, D1Limits, D1RestoreResult, D1RestoreTarget, D1Result};
use parking_lot::{Mutex, RwLock};
use rusqlite::Connection;

use crate::archive::{self, Archive};
use crate::guard::{self, Control, Durability, Role};
use crate::readers::Readers;
use crate::wal;

/// When to checkpoint and when to take base snapshots.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cadence {
    /// WAL size that triggers making the archive durable and a checkpoint.
    pub checkpoint_wal_bytes: u64,
    /// Least archive growth between two base snapshots (the database size counts too: a
    /// snapshot is taken once the archive grew by at least the larger of the two).
    pub snapshot_bytes: u64,
}

impl Default for Cadence {
    fn default() -> Self {
        Self {
            checkpoint_wal_bytes: 4 << 20,
            snapshot_bytes: 64 << 20,
        }
    }
}

fn tt_err(op: &'static str, e: impl Into<bindery_core::error::BoxError>) -> D1Error {
    D1Error::engine(op, e)
}

fn wal_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

fn shm_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-shm");
    PathBuf::from(p)
}

fn sync_dir_of(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Replaces the database file with a copy of `source`, atomically, and drops its WAL and
/// shared-memory files. No connection may be open on the database.
pub(crate) fn replace_database_file(db: &Path, source: &Path) -> std::io::Result<()> {
    let mut tmp = db.as_os_str().to_owned();
    tmp.push(".restore.tmp");
    let tmp = PathBuf::from(tmp);
    fs::copy(source, &tmp)?;
    fs::File::open(&tmp)?.sync_all()?;
    for p in [wal_path(db), shm_path(db)] {
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    fs::rename(&tmp, db)?;
    sync_dir_of(db)
}

/// Time Travel state of one database.
pub(crate) struct TimeTravel {
    pub archive: Mutex<Archive>,
    db_path: PathBuf,
    clock: SharedClock,
    retention_ms: u64,
    cadence: Cadence,
    seq: AtomicU64,
    last_time: AtomicU64,
    answered: AtomicU64,
    /// WAL bytes archived since the last checkpoint.
    since_checkpoint: AtomicU64,
    /// The WAL, kept open between captures (dropped when a restore replaces the files).
    wal_file: Mutex<Option<fs::File>>,
}

impl TimeTravel {
    /// Redoes a restore that a crash interrupted. Call before any connection opens.
    pub fn recover(db_path: &Path) -> std::io::Result<()> {
        if !Archive::exists(db_path) {
            return Ok(());
        }
        let a = Archive::open(db_path)?;
        let pending = a.pending_path();
        if let Ok(text) = fs::read_to_string(&pending) {
            if let Ok(seq) = text.trim().parse::<u64>()
                && let Some(snap) = a.snapshot_file(seq)
            {
                replace_database_file(db_path, &snap)?;
            }
            fs::remove_file(&pending)?;
        }
        Ok(())
    }

    /// Opens (creating on first use) the archive of the database whose writer is `conn`,
    /// and archives commits the WAL holds that the archive does not (after a crash).
    pub fn open(
        db_path: &Path,
        conn: &Connection,
        clock: SharedClock,
        retention_secs: u64,
        cadence: Cadence,
    ) -> D1Result<Arc<TimeTravel>> {
        let archive = if Archive::exists(db_path) {
            Archive::open(db_path).map_err(|e| tt_err("opening the Time Travel archive", e))?
        } else {
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .map_err(|e| tt_err("checkpointing before the first snapshot", e))?;
            Archive::create(db_path, db_path, clock.now_ms())
                .map_err(|e| tt_err("creating the Time Travel archive", e))?
        };
        let last = archive.last();
        let tt = Arc::new(TimeTravel {
            db_path: db_path.to_owned(),
            seq: AtomicU64::new(last.map_or(0, |l| l.seq)),
            last_time: AtomicU64::new(last.map_or(0, |l| l.time_ms)),
            answered: AtomicU64::new(0),
            since_checkpoint: AtomicU64::new(0),
            wal_file: Mutex::new(None),
            archive: Mutex::new(archive),
            clock,
            retention_ms: retention_secs.saturating_mul(1000),
            cadence,
        });
        tt.capture(conn)?;
        Ok(tt)
    }

    /// The time of the next commit: the clock, but never before an earlier commit or a
    /// timestamp already answered.
    fn commit_time(&self) -> u64 {
        let now = self.clock.now_ms();
        let floor = self
            .last_time
            .load(Ordering::Acquire)
            .max(self.answered.load(Ordering::Acquire).saturating_add(1));
        let t = now.max(floor);
        self.last_time.store(t, Ordering::Release);
        t
    }

    /// The seq of the latest commit.
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Archives every commit in the WAL after the archive's position.
    pub fn capture(&self, conn: &Connection) -> D1Result<()> {
        let mut a = self.archive.lock();
        let mut wal_slot = self.wal_file.lock();
        if wal_slot.is_none() {
            match fs::File::open(wal_path(&self.db_path)) {
                Ok(f) => *wal_slot = Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(tt_err("opening the WAL", e)),
            }
        }
        let Some(wal_file) = wal_slot.as_mut() else {
            return Ok(());
        };
        let (commits, page_size) =
            wal::read_commits_from(wal_file, a.wal).map_err(|e| tt_err("reading the WAL", e))?;
        let mut bytes = 0u64;
        for c in &commits {
            let seq = self.seq.load(Ordering::Acquire) + 1;
            let time = self.commit_time();
            a.append_commit(seq, time, c, page_size, wal_file)
                .map_err(|e| tt_err("archiving a commit", e))?;
            self.seq.store(seq, Ordering::Release);
            bytes += c.pages.len() as u64 * (u64::from(page_size) + 24);
        }
        // The WAL file keeps its size after a checkpoint (SQLite reuses it from the start),
        // so what counts is what was written since the last one.
        let since = self.since_checkpoint.fetch_add(bytes, Ordering::AcqRel) + bytes;
        if since >= self.cadence.checkpoint_wal_bytes {
            self.since_checkpoint.store(0, Ordering::Release);
            self.checkpoint(&mut a, conn)?;
        }
        Ok(())
    }

    /// Makes the archive durable, checkpoints, and takes a snapshot when one is due.
    fn checkpoint(&self, a: &mut Archive, conn: &Connection) -> D1Result<()> {
        a.flush()
            .map_err(|e| tt_err("syncing the Time Travel archive", e))?;
        let (busy, log, done): (i64, i64, i64) = conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(|e| tt_err("checkpointing", e))?;
        let complete = busy == 0 && log >= 0 && log == done;
        let db_len = fs::metadata(&self.db_path).map_or(0, |m| m.len());
        if complete && a.since_snapshot >= db_len.max(self.cadence.snapshot_bytes) {
            let seq = self.seq();
            let time = a.last().map_or(0, |l| l.time_ms);
            a.add_snapshot_from(&self.db_path, seq, time)
                .map_err(|e| tt_err("taking a base snapshot", e))?;
            a.end_segment()
                .map_err(|e| tt_err("ending an archive segment", e))?;
            let cutoff = self.clock.now_ms().saturating_sub(self.retention_ms);
            a.prune(cutoff)
                .map_err(|e| tt_err("pruning the Time Travel archive", e))?;
        }
        Ok(())
    }

    /// Makes the archive durable (the writer calls this before it stops).
    pub fn flush(&self) -> D1Result<()> {
        self.archive
            .lock()
            .flush()
            .map_err(|e| tt_err("syncing the Time Travel archive", e))
    }

    fn cutoff(&self) -> u64 {
        self.clock.now_ms().saturating_sub(self.retention_ms)
    }

    /// The bookmark of the latest commit.
    pub fn bookmark(&self) -> String {
        let a = self.archive.lock();
        let last = a.last();
        archive::bookmark(last.map_or(0, |l| l.seq), last.map_or(0, |l| l.time_ms))
    }

    /// The bookmark of commit `seq`.
    pub fn bookmark_of(&self, seq: u64) -> String {
        let a = self.archive.lock();
        let time = a
            .index
            .binary_search_by_key(&seq, |c| c.seq)
            .map_or(0, |i| a.index[i].time_ms);
        archive::bookmark(seq, time)
    }

    /// The bookmark of the commit that was latest at `ts` (ms).
    pub fn bookmark_at(&self, ts: u64) -> D1Result<String> {
        self.answered.fetch_max(ts, Ordering::AcqRel);
        let a = self.archive.lock();
        if ts < self.cutoff() {
            return Err(D1Error::BookmarkNotFound {
                bookmark: format!("@{ts}"),
                reason: "the timestamp is older than the Time Travel window".into(),
            });
        }
        let i = a.index.partition_point(|c| c.time_ms <= ts);
        match i.checked_sub(1).map(|i| a.index[i]) {
            Some(c) => Ok(archive::bookmark(c.seq, c.time_ms)),
            None => Err(D1Error::BookmarkNotFound {
                bookmark: format!("@{ts}"),
                reason: "no commit at or before that time is in the archive".into(),
            }),
        }
    }

    /// The seq a bookmark names, checked against the archive and the window.
    pub fn resolve(&self, bookmark: &str) -> D1Result<u64> {
        let Some((seq, time)) = archive::parse_bookmark(bookmark) else {
            return Err(D1Error::BookmarkNotFound {
                bookmark: bookmark.to_owned(),
                reason: "not a bookmark of this database".into(),
            });
        };
        let a = self.archive.lock();
        match a.index.binary_search_by_key(&seq, |c| c.seq) {
            Ok(i) if a.index[i].time_ms == time => {
                if time < self.cutoff() {
                    return Err(D1Error::BookmarkNotFound {
                        bookmark: bookmark.to_owned(),
                        reason: "older than the Time Travel window".into(),
                    });
                }
                Ok(seq)
            }
            _ => Err(D1Error::BookmarkNotFound {
                bookmark: bookmark.to_owned(),
                reason: "no such commit in the archive (pruned, or never made)".into(),
            }),
        }
    }

    fn target_seq(&self, target: &D1RestoreTarget) -> D1Result<u64> {
        match target {
            D1RestoreTarget::Bookmark(b) => self.resolve(b),
            D1RestoreTarget::TimestampMs(ts) => {
                let b = self.bookmark_at(*ts)?;
                self.resolve(&b)
            }
        }
    }

    /// Writes the state at `target` to `out` (a new database file).
    pub fn materialize(&self, target: &D1RestoreTarget, out: &Path) -> D1Result<()> {
        let seq = self.target_seq(target)?;
        self.archive
            .lock()
            .materialize(seq, out)
            .map_err(|e| tt_err("rebuilding a past state", e))
    }

    /// Restores the database in place. Runs on the writer thread; `conn` is the writer's
    /// connection, replaced by one on the restored file.
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        &self,
        conn: &mut Connection,
        control: &Arc<Control>,
        limits: &D1Limits,
        durability: Durability,
        readers: &Readers,
        swap: &RwLock<()>,
        target: &D1RestoreTarget,
    ) -> D1Result<D1RestoreResult> {
        control.internal(|| self.capture(conn))?;
        let target_seq = self.target_seq(target)?;
        let previous = self.bookmark();
        let mut a = self.archive.lock();
        a.flush()
            .map_err(|e| tt_err("syncing the Time Travel archive", e))?;
        let tmp = a.temp_path("restore");
        a.materialize(target_seq, &tmp)
            .map_err(|e| tt_err("rebuilding the restore target", e))?;
        let db_pages = a
            .index
            .binary_search_by_key(&target_seq, |c| c.seq)
            .map(|i| a.index[i].db_pages)
            .unwrap_or(0);
        let new_seq = self.seq() + 1;
        let time = self.commit_time();
        a.install_snapshot(&tmp, new_seq, time)
            .map_err(|e| tt_err("installing the restored snapshot", e))?;
        let snap = a
            .snapshot_file(new_seq)
            .ok_or_else(|| tt_err("restore", "the restored snapshot vanished"))?;
        let pending = a.pending_path();
        fs::write(&pending, new_seq.to_string())
            .and_then(|()| fs::File::open(&pending)?.sync_all())
            .map_err(|e| tt_err("marking the restore", e))?;
        a.append_snapshot_record(new_seq, time, db_pages)
            .map_err(|e| tt_err("recording the restore", e))?;
        self.seq.store(new_seq, Ordering::Release);

        // Stop what runs on the readers, wait until none is in use, and swap the file.
        readers.set_cancel(true);
        let guard = swap.write();
        readers.set_cancel(false);
        readers.close_idle();
        *self.wal_file.lock() = None;
        *conn = Connection::open_in_memory().map_err(|e| tt_err("restore", e))?;
        let swapped = replace_database_file(&self.db_path, &snap)
            .map_err(|e| tt_err("replacing the database file", e));
        let reopened = guard::open(
            &self.db_path,
            Role::Writer,
            limits,
            durability,
            control,
            true,
        )
        .map_err(|e| tt_err("reopening the restored database", e));
        drop(guard);
        swapped?;
        *conn = reopened?;
        a.wal = wal::WalPosition::default();
        let _ = fs::remove_file(&pending);
        Ok(D1RestoreResult {
            bookmark: archive::bookmark(new_seq, time),
            previous_bookmark: previous,
        })
    }

    /// Removes archive and snapshots older than the window. Returns bytes freed.
    pub fn prune(&self) -> D1Result<u64> {
        let cutoff = self.cutoff();
        self.archive
            .lock()
            .prune(cutoff)
            .map_err(|e| tt_err("pruning the Time Travel archive", e))
    }

    /// Bytes the archive occupies.
    pub fn disk_bytes(&self) -> u64 {
        self.archive.lock().disk_bytes()
    }
}
