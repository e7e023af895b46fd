//! Reading committed transactions out of a SQLite write-ahead log.
//!
//! The WAL format is documented by SQLite: a 32-byte header (magic, format version, page
//! size, checkpoint sequence, two salts, two checksums), then frames of a 24-byte header (page
//! number, database size in pages for the last frame of a commit and 0 otherwise, the two
//! salts, two checksums) followed by one page. Frames whose salts differ from the header's
//! belong to an older generation of the log and end it. SQLite's own checksums are verified
//! too, so a torn frame after a crash is never taken for a commit.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// Where a log generation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct WalPosition {
    pub salt1: u32,
    pub salt2: u32,
    /// Byte offset just past the last frame read.
    pub offset: u64,
    /// SQLite's running checksum at `offset`.
    pub sums: (u32, u32),
}

/// One committed transaction: where the last image of every page it wrote sits in the WAL
/// (page number to byte offset of the page data), so that archiving streams pages instead
/// of holding a transaction in memory.
#[derive(Debug, Default)]
pub(crate) struct WalCommit {
    pub pages: BTreeMap<u32, u64>,
    /// Database size in pages after the commit.
    pub db_pages: u32,
    /// Where the log stands after this commit.
    pub end: WalPosition,
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing from `s`.
fn checksum(big_endian: bool, data: &[u8], mut s: (u32, u32)) -> (u32, u32) {
    for w in data.chunks_exact(8) {
        let (a, b) = if big_endian {
            (be32(&w[0..4]), be32(&w[4..8]))
        } else {
            (
                u32::from_le_bytes([w[0], w[1], w[2], w[3]]),
                u32::from_le_bytes([w[4], w[5], w[6], w[7]]),
            )
        };
        s.0 = s.0.wrapping_add(a).wrapping_add(s.1);
        s.1 = s.1.wrapping_add(b).wrapping_add(s.0);
    }
    s
}

/// Reads every complete commit in the open WAL file `f` after `from` (a position of the same
/// generation; a position of another generation, or the default, reads from the start).
/// Returns the commits in order and the page size.
pub(crate) fn read_commits_from(
    f: &mut File,
    from: WalPosition,
) -> io::Result<(Vec<WalCommit>, u32)> {
    f.seek(SeekFrom::Start(0))?;
    let len = f.metadata()?.len();
    if len < 32 {
        return Ok((Vec::new(), 0));
    }
    let mut header = [0u8; 32];
    f.read_exact(&mut header)?;
    let magic = be32(&header[0..4]);
    if magic & !1 != 0x377f_0682 {
        return Ok((Vec::new(), 0));
    }
    let big_endian = magic & 1 == 1;
    let page_size = be32(&header[8..12]);
    let salt1 = be32(&header[16..20]);
    let salt2 = be32(&header[20..24]);
    if be32(&header[24..28]) != checksum(big_endian, &header[..24], (0, 0)).0 {
        return Ok((Vec::new(), page_size));
    }
    let frame_len = 24 + u64::from(page_size);
    let same_generation = from.salt1 == salt1 && from.salt2 == salt2 && from.offset >= 32;
    // Checksums chain from the start of the log: resume from the saved running sum.
    let (mut offset, mut sums) = if same_generation {
        (from.offset, from.sums)
    } else {
        (32u64, (be32(&header[24..28]), be32(&header[28..32])))
    };
    f.seek(SeekFrom::Start(offset))?;
    let mut commits = Vec::new();
    let mut current = WalCommit::default();
    let mut frame = vec![0u8; frame_len as usize];
    while offset + frame_len <= len {
        f.read_exact(&mut frame)?;
        let h = &frame[..24];
        if be32(&h[8..12]) != salt1 || be32(&h[12..16]) != salt2 {
            break;
        }
        let s = checksum(big_endian, &h[..8], sums);
        let s = checksum(big_endian, &frame[24..], s);
        if s != (be32(&h[16..20]), be32(&h[20..24])) {
            break;
        }
        sums = s;
        let data_at = offset + 24;
        offset += frame_len;
        let pno = be32(&h[0..4]);
        let commit_size = be32(&h[4..8]);
        current.pages.insert(pno, data_at);
        if commit_size != 0 {
            current.db_pages = commit_size;
            current.end = WalPosition {
                salt1,
                salt2,
                offset,
                sums,
            };
            commits.push(std::mem::take(&mut current));
        }
    }
    Ok((commits, page_size))
}
