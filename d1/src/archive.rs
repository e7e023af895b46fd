//! The Time Travel archive: every committed transaction's pages, with its commit time, plus
//! periodic base snapshots, in a folder beside the database.
//!
//! Layout of `<database file>.history/`:
//!
//! - `snap-<seq>-<time>.db`: the whole database file as of commit `seq` (hex, fixed width).
//! - `seg-<seq>.log`: commit records from commit `seq` on, up to the next snapshot. A record
//!   holds a fixed header (kind, seq, commit time, database size in pages, page size, the
//!   WAL position after the commit, the number of pages), the pages (number and image), and
//!   a checksum over all of it. A torn record at the end of the last segment (a crash while
//!   archiving) is cut off when the archive opens; the commits it held are still in the WAL,
//!   which is never checkpointed past what the archive holds durably, and are archived again.
//! - `restore-pending`: present while a restore replaces the database file (redone at open).
//!
//! The state at commit `n` is the newest snapshot at or before `n` with the pages of every
//! commit after it up to `n` written over it, cut to the size commit `n` recorded.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::wal::{WalCommit, WalPosition};

const MAGIC: u32 = 0x5454_3144; // "D1TT"
const HEADER: usize = 4 + 1 + 8 + 8 + 4 + 4 + 4 + 4 + 8 + 4 + 4 + 4;

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A transaction's pages.
    Commit = 1,
    /// A restore (or the start of the archive): the state is the snapshot of this seq.
    Snapshot = 2,
}

/// One commit in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CommitInfo {
    pub seq: u64,
    pub time_ms: u64,
    pub db_pages: u32,
    pub kind: Kind,
    /// Segment (its first seq) and byte offset of the record; unused for snapshot records.
    pub segment: u64,
    pub offset: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SnapInfo {
    pub seq: u64,
    pub time_ms: u64,
}

/// A bookmark: `<seq>-<commit time in ms>`, both fixed-width hex, so that later commits sort
/// greater.
pub(crate) fn bookmark(seq: u64, time_ms: u64) -> String {
    format!("{seq:016x}-{time_ms:012x}")
}

/// Parses a bookmark into (seq, time).
pub(crate) fn parse_bookmark(b: &str) -> Option<(u64, u64)> {
    let (s, t) = b.split_once('-')?;
    if s.len() != 16 || t.len() != 12 {
        return None;
    }
    Some((
        u64::from_str_radix(s, 16).ok()?,
        u64::from_str_radix(t, 16).ok()?,
    ))
}

/// A running 64-bit checksum (multiply-rotate over 8-byte words). Feeding the same bytes
/// in pieces of any size gives the same sum.
#[derive(Clone, Copy)]
struct Sum {
    h: u64,
    pending: [u8; 8],
    n: usize,
}

impl Sum {
    fn new() -> Self {
        Sum {
            h: 0x9e37_79b9_7f4a_7c15,
            pending: [0; 8],
            n: 0,
        }
    }

    fn mix(&mut self, w: [u8; 8]) {
        let v = u64::from_le_bytes(w);
        self.h = (self.h ^ v)
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(29);
    }

    fn add(&mut self, mut data: &[u8]) {
        if self.n > 0 {
            let take = (8 - self.n).min(data.len());
            self.pending[self.n..self.n + take].copy_from_slice(&data[..take]);
            self.n += take;
            data = &data[take..];
            if self.n < 8 {
                return;
            }
            let w = self.pending;
            self.mix(w);
            self.n = 0;
        }
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(w);
        }
        let rest = chunks.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.n = rest.len();
    }

    fn finish(mut self) -> u64 {
        if self.n > 0 {
            let mut w = [0u8; 8];
            w[..self.n].copy_from_slice(&self.pending[..self.n]);
            self.mix(w);
            self.h ^= self.n as u64;
        }
        self.h
    }
}

struct Header {
    kind: u8,
    seq: u64,
    time_ms: u64,
    db_pages: u32,
    page_size: u32,
    wal: WalPosition,
    npages: u32,
}

impl Header {
    fn encode(&self) -> [u8; HEADER] {
        let mut b = [0u8; HEADER];
        let mut o = 0;
        let mut put = |bytes: &[u8]| {
            b[o..o + bytes.len()].copy_from_slice(bytes);
            o += bytes.len();
        };
        put(&MAGIC.to_le_bytes());
        put(&[self.kind]);
        put(&self.seq.to_le_bytes());
        put(&self.time_ms.to_le_bytes());
        put(&self.db_pages.to_le_bytes());
        put(&self.page_size.to_le_bytes());
        put(&self.wal.salt1.to_le_bytes());
        put(&self.wal.salt2.to_le_bytes());
        put(&self.wal.offset.to_le_bytes());
        put(&self.wal.sums.0.to_le_bytes());
        put(&self.wal.sums.1.to_le_bytes());
        put(&self.npages.to_le_bytes());
        b
    }

    fn decode(b: &[u8; HEADER]) -> Option<Self> {
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(x)
        };
        if u32_at(0) != MAGIC {
            return None;
        }
        Some(Header {
            kind: b[4],
            seq: u64_at(5),
            time_ms: u64_at(13),
            db_pages: u32_at(21),
            page_size: u32_at(25),
            wal: WalPosition {
                salt1: u32_at(29),
                salt2: u32_at(33),
                offset: u64_at(37),
                sums: (u32_at(45), u32_at(49)),
            },
            npages: u32_at(53),
        })
    }
}

/// Size in pages and page size of a database file (0, 0 for an empty file).
fn snapshot_pages(path: &Path) -> io::Result<(u32, u32)> {
    let len = fs::metadata(path)?.len();
    if len < 100 {
        return Ok((0, 0));
    }
    let mut hdr = [0u8; 18];
    File::open(path)?.read_exact(&mut hdr)?;
    let ps = u32::from(u16::from_be_bytes([hdr[16], hdr[17]]));
    let ps = if ps == 1 { 65536 } else { ps };
    Ok(((len / u64::from(ps.max(1))) as u32, ps))
}

/// The archive of one database.
pub(crate) struct Archive {
    dir: PathBuf,
    pub page_size: u32,
    pub index: Vec<CommitInfo>,
    pub snapshots: Vec<SnapInfo>,
    segment: Option<(u64, BufWriter<File>, u64)>,
    pub wal: WalPosition,
    /// Bytes appended since the last snapshot.
    pub since_snapshot: u64,
    /// Whether appended records may not be on disk yet.
    dirty: bool,
    /// Whether files were created whose folder entries are not synced yet.
    new_entries: bool,
}

fn io_at(what: &str, path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Archive {
    pub fn dir_for(db_path: &Path) -> PathBuf {
        let mut p = db_path.as_os_str().to_owned();
        p.push(".history");
        PathBuf::from(p)
    }

    pub fn exists(db_path: &Path) -> bool {
        Self::dir_for(db_path).join("archive").exists()
    }

    fn snap_path(&self, s: SnapInfo) -> PathBuf {
        self.dir
            .join(format!("snap-{:016x}-{:012x}.db", s.seq, s.time_ms))
    }

    fn seg_path(&self, first: u64) -> PathBuf {
        self.dir.join(format!("seg-{first:016x}.log"))
    }

    pub fn pending_path(&self) -> PathBuf {
        self.dir.join("restore-pending")
    }

    /// Creates an archive whose first state (seq 0) is the database file `db_file` as it is
    /// now (fully checkpointed by the caller).
    pub fn create(db_path: &Path, db_file: &Path, time_ms: u64) -> io::Result<Archive> {
        let dir = Self::dir_for(db_path);
        fs::create_dir_all(&dir).map_err(|e| io_at("creating", &dir, e))?;
        let mut a = Archive {
            dir,
            page_size: 0,
            index: Vec::new(),
            snapshots: Vec::new(),
            segment: None,
            wal: WalPosition::default(),
            since_snapshot: 0,
            dirty: false,
            new_entries: false,
        };
        let db_pages = a.add_snapshot_from(db_file, 0, time_ms)?;
        // The marker and an empty snapshot have no data to sync; the folder sync that ends
        // the first segment makes all three files durable. An archive whose first record was
        // lost still has its snapshot, which names commit 0.
        File::create(a.dir.join("archive"))?;
        a.new_entries = true;
        a.append_snapshot_record(0, time_ms, db_pages)?;
        Ok(a)
    }

    /// Opens an existing archive, cutting off a torn last record.
    pub fn open(db_path: &Path) -> io::Result<Archive> {
        let dir = Self::dir_for(db_path);
        let mut snapshots = Vec::new();
        let mut segments = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| io_at("reading", &dir, e))? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name
                .strip_prefix("snap-")
                .and_then(|r| r.strip_suffix(".db"))
            {
                if let Some((seq, time_ms)) = parse_bookmark(rest) {
                    snapshots.push(SnapInfo { seq, time_ms });
                }
            } else if let Some(rest) = name
                .strip_prefix("seg-")
                .and_then(|r| r.strip_suffix(".log"))
            {
                if let Ok(first) = u64::from_str_radix(rest, 16) {
                    segments.push(first);
                }
            } else if name.ends_with(".tmp") {
                let _ = fs::remove_file(dir.join(&name));
            }
        }
        snapshots.sort_by_key(|s| s.seq);
        segments.sort_unstable();
        let mut a = Archive {
            dir,
            page_size: 0,
            index: Vec::new(),
            snapshots,
            segment: None,
            wal: WalPosition::default(),
            since_snapshot: 0,
            dirty: false,
            new_entries: false,
        };
        let last = segments.last().copied();
        for first in segments {
            a.scan_segment(first, Some(first) == last)?;
        }
        // Snapshots whose record went with a pruned segment still name a commit.
        for snap in a.snapshots.clone() {
            if a.index.binary_search_by_key(&snap.seq, |c| c.seq).is_err() {
                let (pages, ps) = snapshot_pages(&a.snap_path(snap))?;
                if a.page_size == 0 {
                    a.page_size = ps;
                }
                let at = a.index.partition_point(|c| c.seq < snap.seq);
                a.index.insert(
                    at,
                    CommitInfo {
                        seq: snap.seq,
                        time_ms: snap.time_ms,
                        db_pages: pages,
                        kind: Kind::Snapshot,
                        segment: u64::MAX,
                        offset: 0,
                    },
                );
            }
        }
        let ends_at_snapshot = a
            .last()
            .is_some_and(|l| a.snapshots.iter().any(|s| s.seq == l.seq));
        if let (Some(first), false) = (last, ends_at_snapshot) {
            let path = a.seg_path(first);
            let f = OpenOptions::new().append(true).open(&path)?;
            let len = f.metadata()?.len();
            a.segment = Some((first, BufWriter::with_capacity(1 << 20, f), len));
        }
        Ok(a)
    }

    fn scan_segment(&mut self, first: u64, is_last: bool) -> io::Result<()> {
        let path = self.seg_path(first);
        let mut f = File::open(&path).map_err(|e| io_at("opening", &path, e))?;
        let len = f.metadata()?.len();
        let mut offset = 0u64;
        let mut buf = Vec::new();
        while offset + HEADER as u64 <= len {
            let mut hb = [0u8; HEADER];
            f.seek(SeekFrom::Start(offset))?;
            f.read_exact(&mut hb)?;
            let Some(h) = Header::decode(&hb) else { break };
            let payload = u64::from(h.npages) * (4 + u64::from(h.page_size));
            let end = offset + HEADER as u64 + payload + 8;
            if end > len {
                break;
            }
            if is_last {
                // Only the last segment can hold a torn record: verify it fully.
                buf.resize(payload as usize + 8, 0);
                f.read_exact(&mut buf)?;
                let mut sum = Sum::new();
                sum.add(&hb);
                sum.add(&buf[..payload as usize]);
                let stored = u64::from_le_bytes(
                    buf[payload as usize..]
                        .try_into()
                        .map_err(|_| io::Error::other("short checksum"))?,
                );
                if stored != sum.finish() {
                    break;
                }
            }
            if h.page_size != 0 {
                self.page_size = h.page_size;
            }
            let kind = if h.kind == Kind::Snapshot as u8 {
                Kind::Snapshot
            } else {
                Kind::Commit
            };
            self.index.push(CommitInfo {
                seq: h.seq,
                time_ms: h.time_ms,
                db_pages: h.db_pages,
                kind,
                segment: first,
                offset,
            });
            if kind == Kind::Commit {
                self.wal = h.wal;
            } else {
                self.wal = WalPosition::default();
                self.since_snapshot = 0;
            }
            self.since_snapshot += end - offset;
            offset = end;
        }
        if offset < len && is_last {
            let f = OpenOptions::new().write(true).open(&path)?;
            f.set_len(offset)?;
            f.sync_all()?;
        }
        Ok(())
    }

    pub fn last(&self) -> Option<CommitInfo> {
        self.index.last().copied()
    }

    fn new_segment(&mut self, first: u64) -> io::Result<()> {
        self.flush()?;
        let path = self.seg_path(first);
        let f = OpenOptions::new().create(true).append(true).open(&path)?;
        let len = f.metadata()?.len();
        self.segment = Some((first, BufWriter::with_capacity(1 << 20, f), len));
        // The segment's folder entry is made durable with its first flush.
        self.new_entries = true;
        Ok(())
    }

    /// Appends a record of `h.npages` pages; `page(i, buf)` fills page `i` into `buf` (of
    /// the page size) and returns its number.
    fn append(
        &mut self,
        h: &Header,
        mut page: impl FnMut(usize, &mut [u8]) -> io::Result<u32>,
    ) -> io::Result<()> {
        let (first, w, len) = match self.segment.as_mut() {
            Some(s) => s,
            None => return Err(io::Error::other("the archive has no open segment")),
        };
        let offset = *len;
        let hb = h.encode();
        let mut sum = Sum::new();
        sum.add(&hb);
        w.write_all(&hb)?;
        let mut written = HEADER as u64;
        let mut data = vec![
            0u8;
            if h.npages > 0 {
                h.page_size as usize
            } else {
                0
            }
        ];
        for i in 0..h.npages as usize {
            let pno = page(i, &mut data)?;
            let pb = pno.to_le_bytes();
            sum.add(&pb);
            sum.add(&data);
            w.write_all(&pb)?;
            w.write_all(&data)?;
            written += 4 + data.len() as u64;
        }
        w.write_all(&sum.finish().to_le_bytes())?;
        written += 8;
        *len += written;
        let kind = if h.kind == Kind::Snapshot as u8 {
            Kind::Snapshot
        } else {
            Kind::Commit
        };
        self.index.push(CommitInfo {
            seq: h.seq,
            time_ms: h.time_ms,
            db_pages: h.db_pages,
            kind,
            segment: *first,
            offset,
        });
        self.since_snapshot += written;
        self.dirty = true;
        Ok(())
    }

    /// Appends one committed transaction, streaming its pages from the WAL file.
    pub fn append_commit(
        &mut self,
        seq: u64,
        time_ms: u64,
        commit: &WalCommit,
        page_size: u32,
        wal: &mut File,
    ) -> io::Result<()> {
        if self.segment.is_none() {
            self.new_segment(seq)?;
        }
        self.page_size = page_size;
        let pages: Vec<(u32, u64)> = commit.pages.iter().map(|(p, o)| (*p, *o)).collect();
        let h = Header {
            kind: Kind::Commit as u8,
            seq,
            time_ms,
            db_pages: commit.db_pages,
            page_size,
            wal: commit.end,
            npages: pages.len() as u32,
        };
        self.append(&h, |i, buf| {
            let (pno, at) = pages[i];
            wal.seek(SeekFrom::Start(at))?;
            wal.read_exact(buf)?;
            Ok(pno)
        })?;
        self.wal = commit.end;
        Ok(())
    }

    /// Records that the state at `seq` is the snapshot of `seq` (taken by the caller): the
    /// record ends the current segment, and the next commit starts a new one.
    pub fn append_snapshot_record(
        &mut self,
        seq: u64,
        time_ms: u64,
        db_pages: u32,
    ) -> io::Result<()> {
        if self.segment.is_none() {
            self.new_segment(seq)?;
        }
        let h = Header {
            kind: Kind::Snapshot as u8,
            seq,
            time_ms,
            db_pages,
            page_size: self.page_size,
            wal: WalPosition::default(),
            npages: 0,
        };
        self.append(&h, |_, _| {
            Err(io::Error::other("a snapshot record has no pages"))
        })?;
        self.wal = WalPosition::default();
        self.end_segment()
    }

    /// Ends the current segment at a snapshot (the next commit starts a new one).
    pub fn end_segment(&mut self) -> io::Result<()> {
        self.flush()?;
        self.segment = None;
        self.since_snapshot = 0;
        Ok(())
    }

    /// Copies `db_file` as the snapshot of `seq`; returns its size in pages.
    pub fn add_snapshot_from(&mut self, db_file: &Path, seq: u64, time_ms: u64) -> io::Result<u32> {
        let info = SnapInfo { seq, time_ms };
        let dest = self.snap_path(info);
        let tmp = dest.with_extension("tmp");
        let len = if db_file.exists() {
            fs::copy(db_file, &tmp).map_err(|e| io_at("copying", db_file, e))?
        } else {
            File::create(&tmp)?;
            0
        };
        if len > 0 {
            File::open(&tmp)?.sync_all()?;
        }
        fs::rename(&tmp, &dest)?;
        if seq > 0 {
            sync_dir(&self.dir)?;
        }
        if self.page_size == 0 && len >= 100 {
            let mut hdr = [0u8; 18];
            File::open(&dest)?.read_exact(&mut hdr)?;
            let ps = u32::from(u16::from_be_bytes([hdr[16], hdr[17]]));
            self.page_size = if ps == 1 { 65536 } else { ps };
        }
        self.snapshots.push(info);
        let pages = if self.page_size == 0 {
            0
        } else {
            (len / u64::from(self.page_size)) as u32
        };
        Ok(pages)
    }

    /// Makes every appended record durable.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some((_, w, _)) = self.segment.as_mut() {
            w.flush()?;
            if self.dirty {
                w.get_ref().sync_data()?;
            }
        }
        if self.new_entries {
            sync_dir(&self.dir)?;
            self.new_entries = false;
        }
        self.dirty = false;
        Ok(())
    }

    /// Writes the state at commit `seq` into `out` (a new file), fsynced.
    pub fn materialize(&mut self, seq: u64, out: &Path) -> io::Result<()> {
        self.flush()?;
        let Some(snap) = self.snapshots.iter().rev().find(|s| s.seq <= seq).copied() else {
            return Err(io::Error::other(format!(
                "no snapshot at or before commit {seq}"
            )));
        };
        fs::copy(self.snap_path(snap), out).map_err(|e| io_at("copying snapshot to", out, e))?;
        let mut f = OpenOptions::new().write(true).open(out)?;
        self.replay_into(&mut f, snap.seq, seq)?;
        f.sync_all()?;
        Ok(())
    }

    /// Whether the state at `to` can be reached from the state at `from` by replaying
    /// commits alone (no restore between them, and `from` still in the archive).
    pub fn can_replay(&self, from: u64, to: u64) -> bool {
        let start = self.index.partition_point(|c| c.seq < from);
        self.index.get(start).is_some_and(|c| c.seq == from)
            && self.index[start + 1..]
                .iter()
                .take_while(|c| c.seq <= to)
                .all(|c| c.kind == Kind::Commit)
    }

    /// Writes the pages of every commit in (`after`, `upto`] into `f` and cuts it to the size
    /// commit `upto` recorded. Not synced.
    pub fn replay_into(&mut self, f: &mut File, after: u64, upto: u64) -> io::Result<()> {
        self.flush()?;
        let target_pos = self
            .index
            .binary_search_by_key(&upto, |c| c.seq)
            .map_err(|_| io::Error::other(format!("commit {upto} is not in the archive")))?;
        let target = self.index[target_pos];
        let mut readers: HashMap<u64, File> = HashMap::new();
        let mut hb = [0u8; HEADER];
        let mut page = Vec::new();
        let start = self.index.partition_point(|c| c.seq <= after);
        for c in &self.index[start..] {
            if c.seq > upto {
                break;
            }
            if c.kind != Kind::Commit {
                continue;
            }
            let r = match readers.get_mut(&c.segment) {
                Some(r) => r,
                None => {
                    let file = File::open(self.seg_path(c.segment))?;
                    readers.entry(c.segment).or_insert(file)
                }
            };
            r.seek(SeekFrom::Start(c.offset))?;
            r.read_exact(&mut hb)?;
            let h = Header::decode(&hb).ok_or_else(|| io::Error::other("bad record header"))?;
            page.resize(h.page_size as usize, 0);
            let mut reader = io::BufReader::with_capacity(1 << 20, &mut *r);
            for _ in 0..h.npages {
                let mut pb = [0u8; 4];
                reader.read_exact(&mut pb)?;
                reader.read_exact(&mut page)?;
                let pno = u64::from(u32::from_le_bytes(pb));
                f.seek(SeekFrom::Start((pno - 1) * u64::from(h.page_size)))?;
                f.write_all(&page)?;
            }
        }
        if self.page_size != 0 {
            f.set_len(u64::from(target.db_pages) * u64::from(self.page_size))?;
        }
        Ok(())
    }

    /// The last commit made at or before `time_ms`.
    pub fn last_at(&self, time_ms: u64) -> Option<CommitInfo> {
        let i = self.index.partition_point(|c| c.time_ms <= time_ms);
        i.checked_sub(1).map(|i| self.index[i])
    }

    /// Path of the snapshot of `seq`, if there is one.
    pub fn snapshot_file(&self, seq: u64) -> Option<PathBuf> {
        self.snapshots
            .iter()
            .find(|s| s.seq == seq)
            .map(|s| self.snap_path(*s))
    }

    /// Path for a temporary file in the archive folder.
    pub fn temp_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.tmp"))
    }

    /// Installs `file` (already fsynced) as the snapshot of `seq`.
    pub fn install_snapshot(&mut self, file: &Path, seq: u64, time_ms: u64) -> io::Result<()> {
        let info = SnapInfo { seq, time_ms };
        fs::rename(file, self.snap_path(info))?;
        sync_dir(&self.dir)?;
        self.snapshots.push(info);
        Ok(())
    }

    /// Removes what only serves commits older than `cutoff_ms`, keeping every commit at or
    /// after the newest snapshot taken at or before the cutoff. Returns bytes freed.
    pub fn prune(&mut self, cutoff_ms: u64) -> io::Result<u64> {
        self.flush()?;
        let Some(base) = self
            .snapshots
            .iter()
            .rev()
            .find(|s| s.time_ms <= cutoff_ms)
            .copied()
        else {
            return Ok(0);
        };
        let mut freed = 0;
        let old: Vec<SnapInfo> = self
            .snapshots
            .iter()
            .filter(|s| s.seq < base.seq)
            .copied()
            .collect();
        for s in old {
            let p = self.snap_path(s);
            freed += fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&p)?;
        }
        self.snapshots.retain(|s| s.seq >= base.seq);
        let current = self.segment.as_ref().map(|s| s.0);
        let mut segs: Vec<u64> = self.index.iter().map(|c| c.segment).collect();
        segs.dedup();
        for first in segs {
            // A segment starts after a snapshot and ends at the next one, so a segment that
            // starts at or before the base snapshot ends at or before it.
            if first <= base.seq && Some(first) != current {
                let p = self.seg_path(first);
                freed += fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                match fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.index.retain(|c| c.seq >= base.seq);
        sync_dir(&self.dir)?;
        Ok(freed)
    }

    /// Bytes the archive occupies on disk.
    pub fn disk_bytes(&self) -> u64 {
        fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_the_same_whatever_the_pieces() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut whole = Sum::new();
        whole.add(&data);
        for split in [1usize, 3, 4, 7, 8, 9, 500] {
            let mut pieces = Sum::new();
            for c in data.chunks(split) {
                pieces.add(c);
            }
            assert_eq!(pieces.finish(), whole.finish(), "pieces of {split}");
        }
    }

    #[test]
    fn bookmarks_round_trip_and_sort_by_seq() {
        let a = bookmark(9, 1_767_225_600_000);
        let b = bookmark(10, 1_767_225_600_000);
        assert!(a < b);
        assert_eq!(parse_bookmark(&a), Some((9, 1_767_225_600_000)));
        assert_eq!(parse_bookmark("junk"), None);
    }
}
