//! The machine's physical limits, measured in the same run as the figures they bound.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where benchmarks put their files: `$BINDERY_BENCH_DIR`, else `target/bench-tmp` under the
/// current directory (a real disk, not a RAM-backed temp folder).
pub fn bench_dir() -> tempfile::TempDir {
    let base = std::env::var_os("BINDERY_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/bench-tmp"));
    std::fs::create_dir_all(&base).expect("creating the benchmark folder");
    tempfile::tempdir_in(base).expect("creating a benchmark temp dir")
}

/// Durable 4 KiB appends per second: one `write` plus one `fsync` each, for about `dur`.
pub fn fsync_per_sec(dur: Duration) -> f64 {
    let dir = bench_dir();
    let mut f = File::create(dir.path().join("fsync.bin")).expect("create");
    let block = [0x5au8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < dur || n < 20 {
        f.write_all(&block).expect("write");
        f.sync_data().expect("fsync");
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Sequential write then read of `bytes` through the page cache, with one fsync at the end
/// of the write; returns (write MB/s, read MB/s). The read drops the file's cached pages
/// first where the platform allows (`posix_fadvise` is not used: the read measures what a
/// warm reader sees, as a GET right after a PUT would).
pub fn seq_write_read_mb_s(bytes: u64) -> (f64, f64) {
    let dir = bench_dir();
    let path = dir.path().join("seq.bin");
    let chunk = vec![0xa5u8; 1 << 20];
    let start = Instant::now();
    {
        let mut f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .expect("create");
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n]).expect("write");
            left -= n as u64;
        }
        f.sync_all().expect("fsync");
    }
    let write = bytes as f64 / 1e6 / start.elapsed().as_secs_f64();
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    let mut f = File::open(&path).expect("open");
    f.seek(SeekFrom::Start(0)).expect("seek");
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let read = total as f64 / 1e6 / start.elapsed().as_secs_f64();
    (write, read)
}
