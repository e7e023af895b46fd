//! Blob files: bodies and parts, named by random ids in the bucket's blob folder.
//!
//! A blob's name never derives from a key, so no key can reach outside the folder. A blob is
//! written whole and fsynced (with its folder) before any index row refers to it; a blob no
//! row refers to is an orphan (an interrupted put) and is deleted when the bucket opens.
//!
//! Readers pin the blobs they stream; a blob replaced or deleted while pinned is unlinked
//! when its last reader finishes, so a reader always sees the whole old object.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bindery_core::ByteStream;
use bindery_core::r2::{ChecksumAlgorithm, R2Body, R2Error, R2Result};
use bytes::Bytes;
use futures_util::StreamExt;
use md5::{Digest, Md5};
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::index::{BlobRef, EngineExt};
use crate::run_blocking;

/// Size of the chunks bodies are written and read in.
pub(crate) const CHUNK: usize = 1 << 20;

/// Chunks in flight between the stages of a put or a get. Memory per stream is bounded by
/// about `DEPTH * CHUNK` per stage.
const DEPTH: usize = 4;

/// Bytes written between two background flushes of a large body.
const FLUSH_EVERY: usize = 32 << 20;

/// Bodies given as bytes up to this size are hashed and written in one blocking call.
const SMALL_BODY: usize = 4 << 20;

/// The blob folder of one bucket.
pub(crate) struct BlobDir {
    path: PathBuf,
    pins: Mutex<Pins>,
    /// Empty blob files whose folder entries are already durable, so that a put writing
    /// into one needs no fsync of the folder. They are orphans until a row refers to them
    /// (reclaimed at open like any other).
    spares: Mutex<Vec<String>>,
    refilling: AtomicBool,
}

/// Spare files created per refill (one folder fsync for all of them).
const SPARES: usize = 32;

#[derive(Default)]
struct Pins {
    /// Readers per pinned blob.
    counts: HashMap<String, usize>,
    /// Pinned blobs to unlink when their last reader finishes.
    doomed: HashSet<String>,
}

impl BlobDir {
    /// Opens (creating if needed) the folder.
    pub fn open(path: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(path)?;
        Ok(Self {
            path: path.to_owned(),
            pins: Mutex::new(Pins::default()),
            spares: Mutex::new(Vec::new()),
            refilling: AtomicBool::new(false),
        })
    }

    /// A fresh random blob id (128 bits, hex).
    pub fn new_id() -> String {
        hex::encode(rand::random::<[u8; 16]>())
    }

    /// A new, empty blob file open for writing. The flag tells whether its folder entry is
    /// already durable; when it is not, the caller syncs the folder after writing.
    pub fn fresh(self: &Arc<Self>) -> io::Result<(String, File, bool)> {
        let spare = {
            let mut spares = self.spares.lock();
            let spare = spares.pop();
            if spares.len() < SPARES / 2 && !self.refilling.swap(true, Ordering::AcqRel) {
                let dir = Arc::clone(self);
                let spawned = std::thread::Builder::new()
                    .name("bindery-r2-spares".into())
                    .spawn(move || {
                        if let Err(e) = dir.refill() {
                            tracing::warn!(error = %e, "could not create spare blob files");
                        }
                        dir.refilling.store(false, Ordering::Release);
                    });
                if spawned.is_err() {
                    self.refilling.store(false, Ordering::Release);
                }
            }
            spare
        };
        if let Some(id) = spare {
            match OpenOptions::new().write(true).open(self.path_of(&id)) {
                Ok(file) => return Ok((id, file, true)),
                Err(e) => tracing::warn!(error = %e, "a spare blob file vanished"),
            }
        }
        let id = Self::new_id();
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.path_of(&id))?;
        Ok((id, file, false))
    }

    fn refill(&self) -> io::Result<()> {
        let mut made = Vec::with_capacity(SPARES);
        for _ in 0..SPARES {
            let id = Self::new_id();
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(self.path_of(&id))?;
            made.push(id);
        }
        self.sync()?;
        self.spares.lock().extend(made);
        Ok(())
    }

    /// The file of blob `id`.
    pub fn path_of(&self, id: &str) -> PathBuf {
        self.path.join(id)
    }

    /// Makes the folder's entries durable.
    pub fn sync(&self) -> io::Result<()> {
        File::open(&self.path)?.sync_all()
    }

    /// Pins `ids` for a reader. `None` when the first blob is already gone (the object was
    /// replaced between reading its row and pinning): the caller reads the row again.
    /// Every blob of a row is unlinked under the same lock, so if the first exists, all do.
    pub fn pin(self: &Arc<Self>, ids: Vec<String>) -> Option<PinGuard> {
        let mut pins = self.pins.lock();
        if let Some(first) = ids.first()
            && (pins.doomed.contains(first) || !self.path_of(first).exists())
        {
            return None;
        }
        for id in &ids {
            *pins.counts.entry(id.clone()).or_insert(0) += 1;
        }
        Some(PinGuard {
            dir: Arc::clone(self),
            ids,
        })
    }

    /// Unlinks blobs no row refers to any more; pinned ones go when their readers finish.
    pub fn remove(&self, ids: &[String]) {
        let mut pins = self.pins.lock();
        for id in ids {
            if pins.counts.contains_key(id) {
                pins.doomed.insert(id.clone());
            } else {
                unlink(&self.path_of(id));
            }
        }
    }

    /// Deletes every file in the folder that is not in `live`; returns how many.
    pub fn reclaim(&self, live: &HashSet<String>) -> io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.path)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !live.contains(name) {
                // A handle being dropped may be removing its spare files at the same time.
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if removed > 0 {
            self.sync()?;
        }
        Ok(removed)
    }

    /// Waits (up to 10 s) for a refill of spares in flight to finish.
    pub fn settle(&self) {
        for _ in 0..10_000 {
            if !self.refilling.load(Ordering::Acquire) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Number of blob files in the folder, spares excluded (for tests and stats).
    pub fn count(&self) -> io::Result<usize> {
        // A refill in flight creates files before listing them as spares.
        self.settle();
        let spares: HashSet<String> = self.spares.lock().iter().cloned().collect();
        let mut n = 0;
        for entry in std::fs::read_dir(&self.path)? {
            if !spares.contains(entry?.file_name().to_string_lossy().as_ref()) {
                n += 1;
            }
        }
        Ok(n)
    }
}

impl BlobDir {
    /// Removes the spare files now (a clean close), so that only a crash leaves files for
    /// the next open to reclaim.
    pub fn discard_spares(&self) {
        let spares: Vec<String> = self.spares.lock().drain(..).collect();
        for id in spares {
            unlink(&self.path.join(id));
        }
    }
}

impl Drop for BlobDir {
    fn drop(&mut self) {
        self.discard_spares();
    }
}

fn unlink(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "could not delete a blob; it will be reclaimed at the next open");
    }
}

/// Keeps blobs from being unlinked while a reader streams them.
pub(crate) struct PinGuard {
    dir: Arc<BlobDir>,
    ids: Vec<String>,
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        let mut pins = self.dir.pins.lock();
        for id in &self.ids {
            let last = match pins.counts.get_mut(id) {
                Some(n) => {
                    *n -= 1;
                    *n == 0
                }
                None => false,
            };
            if last {
                pins.counts.remove(id);
                if pins.doomed.remove(id) {
                    unlink(&self.dir.path_of(id));
                }
            }
        }
    }
}

/// A blob written and fsynced, not yet referenced by the index.
#[derive(Debug)]
pub(crate) struct Written {
    pub id: String,
    pub size: u64,
    pub md5: [u8; 16],
    /// The requested checksum's digest, if one was requested.
    pub extra: Option<Vec<u8>>,
}

enum ExtraHasher {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

/// MD5 always, plus at most one other digest.
struct Hashes {
    md5: Md5,
    extra: Option<ExtraHasher>,
    extra_is_md5: bool,
}

impl Hashes {
    fn new(extra: Option<ChecksumAlgorithm>) -> Self {
        let hasher = match extra {
            Some(ChecksumAlgorithm::Sha1) => Some(ExtraHasher::Sha1(Default::default())),
            Some(ChecksumAlgorithm::Sha256) => Some(ExtraHasher::Sha256(Default::default())),
            Some(ChecksumAlgorithm::Sha384) => Some(ExtraHasher::Sha384(Default::default())),
            Some(ChecksumAlgorithm::Sha512) => Some(ExtraHasher::Sha512(Default::default())),
            Some(ChecksumAlgorithm::Md5) | None => None,
        };
        Self {
            md5: Md5::new(),
            extra: hasher,
            extra_is_md5: extra == Some(ChecksumAlgorithm::Md5),
        }
    }

    fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        match &mut self.extra {
            Some(ExtraHasher::Sha1(h)) => h.update(data),
            Some(ExtraHasher::Sha256(h)) => h.update(data),
            Some(ExtraHasher::Sha384(h)) => h.update(data),
            Some(ExtraHasher::Sha512(h)) => h.update(data),
            None => {}
        }
    }

    fn finish(self) -> ([u8; 16], Option<Vec<u8>>) {
        let md5: [u8; 16] = self.md5.finalize().into();
        let extra = match self.extra {
            Some(ExtraHasher::Sha1(h)) => Some(h.finalize().to_vec()),
            Some(ExtraHasher::Sha256(h)) => Some(h.finalize().to_vec()),
            Some(ExtraHasher::Sha384(h)) => Some(h.finalize().to_vec()),
            Some(ExtraHasher::Sha512(h)) => Some(h.finalize().to_vec()),
            None if self.extra_is_md5 => Some(md5.to_vec()),
            None => None,
        };
        (md5, extra)
    }
}

/// Streams `body` into a new blob while hashing it, then fsyncs the blob and the folder.
/// Memory stays bounded whatever the body's size. A body over `limit` bytes is rejected as
/// soon as the limit is passed; on any error the partial blob is deleted.
pub(crate) async fn write_body(
    dir: &Arc<BlobDir>,
    body: R2Body,
    limit: u64,
    extra: Option<ChecksumAlgorithm>,
) -> R2Result<Written> {
    if let R2Body::Bytes(bytes) = &body {
        if bytes.len() as u64 > limit {
            return Err(R2Error::EntityTooLarge {
                len: bytes.len() as u64,
                limit,
            });
        }
        if bytes.len() <= SMALL_BODY {
            let bytes = bytes.clone();
            let dir = Arc::clone(dir);
            return run_blocking(move || write_small(&dir, &bytes, extra)).await;
        }
    }
    let (id, file, entry_durable) = {
        let dir = Arc::clone(dir);
        run_blocking(move || dir.fresh().during("creating a blob")).await?
    };
    let path = dir.path_of(&id);
    let (wtx, mut wrx) = mpsc::channel::<Bytes>(DEPTH);
    let (htx, mut hrx) = mpsc::channel::<Bytes>(DEPTH);
    let writer = tokio::task::spawn_blocking(move || write_and_flush(file, &mut wrx));
    let hasher = tokio::task::spawn_blocking(move || {
        let mut hashes = Hashes::new(extra);
        while let Some(chunk) = hrx.blocking_recv() {
            hashes.update(&chunk);
        }
        hashes.finish()
    });

    let mut size = 0u64;
    let mut failure: Option<R2Error> = None;
    let mut pieces: Box<dyn futures_util::Stream<Item = io::Result<Bytes>> + Send + Unpin> =
        match body {
            R2Body::Bytes(b) => Box::new(bindery_core::stream::chunked(b, CHUNK)),
            R2Body::Stream(s) => Box::new(s),
        };
    'outer: while let Some(chunk) = pieces.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(source) => {
                failure = Some(R2Error::Body { source });
                break;
            }
        };
        let mut offset = 0;
        while offset < chunk.len() {
            let end = (offset + CHUNK).min(chunk.len());
            let piece = chunk.slice(offset..end);
            size += piece.len() as u64;
            offset = end;
            if size > limit {
                failure = Some(R2Error::EntityTooLarge { len: size, limit });
                break 'outer;
            }
            if wtx.send(piece.clone()).await.is_err() || htx.send(piece).await.is_err() {
                break 'outer;
            }
        }
    }
    drop(pieces);
    drop(wtx);
    drop(htx);
    let written = writer
        .await
        .map_err(|e| R2Error::engine("writing a blob", e))?;
    let (md5, extra) = hasher
        .await
        .map_err(|e| R2Error::engine("hashing a body", e))?;
    let failure = failure.or_else(|| written.err().map(|e| R2Error::engine("writing a blob", e)));
    if let Some(err) = failure {
        let _ = run_blocking(move || {
            unlink(&path);
            Ok(())
        })
        .await;
        return Err(err);
    }
    if !entry_durable {
        let sync_dir = Arc::clone(dir);
        run_blocking(move || sync_dir.sync().during("syncing the blob folder")).await?;
    }
    Ok(Written {
        id,
        size,
        md5,
        extra,
    })
}

/// Writes every chunk received, then makes the file durable. While it writes, a helper
/// thread flushes what has been written so far every [`FLUSH_EVERY`] bytes, so that the disk
/// works in parallel with hashing instead of receiving the whole body at the final fsync;
/// the writer itself never waits for the disk until the end.
fn write_and_flush(mut file: File, rx: &mut mpsc::Receiver<Bytes>) -> io::Result<()> {
    let flusher_file = file.try_clone()?;
    let (tick, ticks) = std::sync::mpsc::channel::<()>();
    let flusher = std::thread::Builder::new()
        .name("bindery-r2-flush".into())
        .spawn(move || -> io::Result<()> {
            while ticks.recv().is_ok() {
                while ticks.try_recv().is_ok() {}
                flusher_file.sync_data()?;
            }
            Ok(())
        })?;
    let mut unflushed = 0usize;
    let mut result = Ok(());
    while let Some(chunk) = rx.blocking_recv() {
        if let Err(e) = file.write_all(&chunk) {
            result = Err(e);
            break;
        }
        unflushed += chunk.len();
        if unflushed >= FLUSH_EVERY {
            unflushed = 0;
            let _ = tick.send(());
        }
    }
    drop(tick);
    let flushed = flusher
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the flush thread panicked")));
    result?;
    flushed?;
    file.sync_all()
}

fn write_small(
    dir: &Arc<BlobDir>,
    bytes: &[u8],
    extra: Option<ChecksumAlgorithm>,
) -> R2Result<Written> {
    let mut hashes = Hashes::new(extra);
    hashes.update(bytes);
    let (md5, extra) = hashes.finish();
    let (id, mut file, entry_durable) = dir.fresh().during("creating a blob")?;
    let result = (|| {
        file.write_all(bytes)?;
        file.sync_all()?;
        if !entry_durable {
            dir.sync()?;
        }
        Ok::<_, io::Error>(())
    })();
    if let Err(e) = result {
        unlink(&dir.path_of(&id));
        return Err(R2Error::engine("writing a blob", e));
    }
    Ok(Written {
        id,
        size: bytes.len() as u64,
        md5,
        extra,
    })
}

/// Deletes a blob that was written but never committed.
pub(crate) fn discard(dir: &BlobDir, id: &str) {
    unlink(&dir.path_of(id));
}

/// Streams bytes `offset..offset + length` of the body made of `segments`, reading ahead on
/// a blocking thread. The pins are released when the stream ends or is dropped.
pub(crate) fn read_stream(
    dir: Arc<BlobDir>,
    guard: PinGuard,
    segments: Vec<BlobRef>,
    offset: u64,
    length: u64,
) -> ByteStream {
    if length == 0 {
        drop(guard);
        return Box::pin(futures_util::stream::empty());
    }
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(DEPTH);
    tokio::task::spawn_blocking(move || {
        let _guard = guard;
        if let Err(e) = pump(&dir, &segments, offset, length, &tx) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Reads the range and sends it in chunks; stops quietly when the receiver is gone.
fn pump(
    dir: &BlobDir,
    segments: &[BlobRef],
    offset: u64,
    length: u64,
    tx: &mpsc::Sender<io::Result<Bytes>>,
) -> io::Result<()> {
    let end = offset + length;
    for seg in segments {
        let seg_end = seg.start + seg.size;
        if seg_end <= offset || seg.start >= end {
            continue;
        }
        let from = offset.max(seg.start) - seg.start;
        let to = end.min(seg_end) - seg.start;
        let mut file = File::open(dir.path_of(&seg.blob))?;
        if from > 0 {
            file.seek(SeekFrom::Start(from))?;
        }
        let mut left = to - from;
        while left > 0 {
            let n = (left as usize).min(CHUNK);
            // `read_to_end` fills the spare capacity without zeroing it first.
            let mut buf = Vec::with_capacity(n);
            (&mut file).take(n as u64).read_to_end(&mut buf)?;
            if buf.len() != n {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("blob {} is shorter than the index says", seg.blob),
                ));
            }
            left -= n as u64;
            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}
