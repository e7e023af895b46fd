//! Acknowledged writes survive SIGKILL.
//!
//! The parent test starts this same test binary as a child that writes from several tasks and
//! prints every acknowledged key, kills it with SIGKILL after a random delay, reopens the store
//! and checks that every acknowledged key is there with its value. It repeats this
//! `ITERATIONS` times on the same file, so each reopen also recovers from the previous kills.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bindery_core::kv::{GetOptions, KvLimits, KvStore, PutOptions};
use bindery_kv::KvNamespace;
use bytes::Bytes;

const ITERATIONS: usize = 100;
const DIR_ENV: &str = "BINDERY_KV_CRASH_DIR";
const ITER_ENV: &str = "BINDERY_KV_CRASH_ITER";

fn value_for(key: &str) -> Bytes {
    Bytes::from(format!("value-of-{key}-{}", "x".repeat(key.len() % 97)))
}

/// The child: writes forever from 8 tasks, printing `ACK <key> END` after each durable put.
#[test]
#[ignore = "child process of acknowledged_puts_survive_sigkill_at_random_moments"]
fn crash_child_writer() {
    let (Ok(dir), Ok(iter)) = (std::env::var(DIR_ENV), std::env::var(ITER_ENV)) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let kv = KvNamespace::builder()
            .limits(KvLimits::unbounded())
            .open(std::path::Path::new(&dir).join("kv.redb"))
            .await
            .expect("child open");
        let kv = Arc::new(kv);
        let tasks: Vec<_> = (0..8)
            .map(|w| {
                let kv = Arc::clone(&kv);
                let iter = iter.clone();
                tokio::spawn(async move {
                    for seq in 0u64.. {
                        let key = format!("i{iter}-w{w}-{seq}");
                        kv.put(&key, value_for(&key), PutOptions::default())
                            .await
                            .expect("child put");
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {key} END").expect("stdout");
                        out.flush().expect("flush");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("writer");
        }
    });
}

#[test]
fn acknowledged_puts_survive_sigkill_at_random_moments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("test binary");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut total_acked = 0usize;
    let mut kills_while_writing = 0usize;
    for iter in 0..ITERATIONS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_writer",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_ENV, dir.path())
            .env(ITER_ENV, iter.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| {
                    l.strip_prefix("ACK ")
                        .and_then(|r| r.strip_suffix(" END"))
                        .map(str::to_owned)
                })
                .collect::<Vec<String>>()
        });
        // Kill at a random moment: sometimes during start-up, mostly mid-write.
        let delay = 5 + (rand_u64() % 120);
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().expect("SIGKILL child");
        child.wait().expect("reap child");
        let acked = reader.join().expect("reader thread");
        if !acked.is_empty() {
            kills_while_writing += 1;
        }
        total_acked += acked.len();
        rt.block_on(async {
            let kv = KvNamespace::builder()
                .limits(KvLimits::unbounded())
                .open(dir.path().join("kv.redb"))
                .await
                .unwrap_or_else(|e| panic!("iteration {iter}: reopen failed: {e}"));
            for key in &acked {
                let got = kv
                    .get(key, GetOptions::default())
                    .await
                    .unwrap_or_else(|e| panic!("iteration {iter}: get {key}: {e}"));
                assert_eq!(
                    got.as_ref(),
                    Some(&value_for(key)),
                    "iteration {iter}: acknowledged key {key} lost or wrong after SIGKILL"
                );
            }
        });
    }
    assert!(
        kills_while_writing >= ITERATIONS / 2,
        "only {kills_while_writing} of {ITERATIONS} kills happened while writing"
    );
    eprintln!(
        "kv crash test: {ITERATIONS} SIGKILLs ({kills_while_writing} mid-write), \
         {total_acked} acknowledged puts, all present after reopen"
    );
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish()
}
