//! At least once across crashes.
//!
//! The parent runs this test binary again as a child (`crash_child_process`, enabled by an
//! environment variable) 120 times on one store. Each child runs four producers (single
//! sends and 5-message batches) and a push consumer, and is killed with SIGKILL a random 5
//! to 100 ms after it has started them (every tenth child is killed while still opening the
//! store). Producers log a body only after its send returned `Ok`; the handler
//! logs every body it is given. The logs are plain appends, which survive a process kill.
//! Finally the parent drains the store with a consumer of its own and checks:
//!
//! - every acknowledged send was delivered (none lost), and the backlog ends empty;
//! - batches are all or nothing: a delivered member of a batch means every member was
//!   stored;
//! - duplicates (deliveries beyond the first) are counted and reported; they are allowed
//!   (at least once) but must stay a small share.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bindery_core::queues::{
    ConsumerSettings, MessageSendRequest, QueueBroker, QueueLimits, SendBatchOptions, SendOptions,
    handler_fn,
};
use bindery_queues::Queues;
use bytes::Bytes;
use parking_lot::Mutex;

const ITERATIONS: usize = 120;
const CHILD_ENV: &str = "BINDERY_QUEUES_CRASH_DIR";
const ITER_ENV: &str = "BINDERY_QUEUES_CRASH_ITER";
const BATCH: usize = 5;

fn log(path: &Path) -> Arc<Mutex<File>> {
    Arc::new(Mutex::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open log"),
    ))
}

fn append(log: &Mutex<File>, line: &str) {
    log.lock()
        .write_all(format!("{line}\n").as_bytes())
        .expect("append to log");
}

/// Complete lines of a log (a kill may cut the last one short).
fn lines(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    complete.lines().map(str::to_owned).collect()
}

async fn open(dir: &Path) -> Queues {
    Queues::builder()
        .limits(QueueLimits::unbounded())
        .open(dir.join("queues.redb"))
        .await
        .expect("open store")
}

fn consumer_settings() -> ConsumerSettings {
    ConsumerSettings {
        max_batch_size: 10,
        max_batch_timeout_ms: 0,
        max_concurrency: Some(4),
        ..Default::default()
    }
}

/// The child: producers and a consumer running until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of the SIGKILL crash test"]
async fn crash_child_process() {
    let Some(dir) = std::env::var_os(CHILD_ENV).map(PathBuf::from) else {
        return;
    };
    let iter: usize = std::env::var(ITER_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let queues = open(&dir).await;
    let sent = log(&dir.join("sent.log"));
    let delivered = log(&dir.join("delivered.log"));
    let handler = {
        let delivered = Arc::clone(&delivered);
        handler_fn(move |batch| {
            for m in batch.messages() {
                append(
                    &delivered,
                    &format!("{iter} {}", String::from_utf8_lossy(m.body())),
                );
            }
            async { Ok(()) }
        })
    };
    let _consumer = queues
        .start_push_consumer("crash", consumer_settings(), Arc::new(handler))
        .await
        .expect("consumer");
    let producer = queues.producer("crash").await.expect("producer");
    std::fs::write(dir.join(format!("ready-{iter}")), b"").expect("ready marker");
    let mut tasks = Vec::new();
    for p in 0..4 {
        let producer = Arc::clone(&producer);
        let sent = Arc::clone(&sent);
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                if n % 2 == 0 {
                    let body = format!("{iter}-{p}-{n}-single");
                    producer
                        .send(
                            Bytes::from(body.clone()),
                            SendOptions {
                                content_type: bindery_core::queues::ContentType::Text,
                                ..Default::default()
                            },
                        )
                        .await
                        .expect("send");
                    append(&sent, &body);
                } else {
                    let bodies: Vec<String> = (0..BATCH)
                        .map(|k| format!("{iter}-{p}-{n}-batch{k}"))
                        .collect();
                    let batch = bodies
                        .iter()
                        .map(|b| MessageSendRequest::text(b.clone()))
                        .collect();
                    producer
                        .send_batch(batch, SendBatchOptions::default())
                        .await
                        .expect("send_batch");
                    for b in &bodies {
                        append(&sent, b);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[test]
fn acknowledged_sends_survive_sigkill_and_are_delivered_at_least_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("test binary");
    let started = Instant::now();
    for iter in 0..ITERATIONS {
        let mut child = std::process::Command::new(&exe)
            .args([
                "crash_child_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env(ITER_ENV, iter.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn child");
        // Most children are killed while producing and consuming; every tenth while it is
        // still opening (and possibly recovering) the store.
        if iter % 10 != 9 {
            let marker = dir.path().join(format!("ready-{iter}"));
            let deadline = Instant::now() + Duration::from_secs(30);
            while !marker.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            assert!(marker.exists(), "child {iter} did not start within 30 s");
        }
        std::thread::sleep(Duration::from_millis(rand::random_range(5..100)));
        child.kill().expect("SIGKILL child");
        child.wait().expect("reap child");
    }
    let crash_phase = started.elapsed();

    // Drain what is left with a consumer in this process.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let drained: Vec<String> = rt.block_on(async {
        let queues = open(dir.path()).await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler = {
            let seen = Arc::clone(&seen);
            handler_fn(move |batch| {
                let mut seen = seen.lock();
                for m in batch.messages() {
                    seen.push(String::from_utf8_lossy(m.body()).into_owned());
                }
                async { Ok(()) }
            })
        };
        let consumer = queues
            .start_push_consumer("crash", consumer_settings(), Arc::new(handler))
            .await
            .expect("drain consumer");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let backlog = queues
                .metrics("crash")
                .await
                .expect("metrics")
                .backlog_count;
            if backlog == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "backlog stuck at {backlog} after the crashes"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        consumer.shutdown().await;
        std::mem::take(&mut *seen.lock())
    });

    let sent = lines(&dir.path().join("sent.log"));
    let mut deliveries: HashMap<String, usize> = HashMap::new();
    // (process, body): a message is delivered at most once per process lifetime; only a
    // crash may deliver it again.
    let mut per_process: HashSet<String> = HashSet::new();
    let logged = lines(&dir.path().join("delivered.log"));
    let drained = drained.into_iter().map(|b| format!("drain {b}"));
    for line in logged.into_iter().chain(drained) {
        assert!(
            per_process.insert(line.clone()),
            "delivered twice by one process: {line}"
        );
        let body = line
            .split_once(' ')
            .map_or(line.as_str(), |(_, b)| b)
            .to_owned();
        *deliveries.entry(body).or_default() += 1;
    }
    let lost: Vec<&String> = sent
        .iter()
        .filter(|b| !deliveries.contains_key(*b))
        .collect();
    let total: usize = deliveries.values().sum();
    let duplicates: usize = deliveries.values().map(|n| n - 1).sum();
    println!(
        "queues crash test: {ITERATIONS} SIGKILLs in {:.1} s; {} acknowledged sends, {} distinct \
         messages delivered, {total} deliveries, {duplicates} duplicates ({:.2}%), {} lost",
        crash_phase.as_secs_f64(),
        sent.len(),
        deliveries.len(),
        100.0 * duplicates as f64 / total.max(1) as f64,
        lost.len()
    );
    assert!(
        sent.len() > ITERATIONS,
        "too few sends to mean anything: {}",
        sent.len()
    );
    assert!(
        lost.is_empty(),
        "acknowledged sends never delivered: {:?}",
        &lost[..lost.len().min(10)]
    );

    // All or nothing: a delivered batch member means its whole batch was stored.
    let delivered: HashSet<&String> = deliveries.keys().collect();
    for body in &delivered {
        if let Some((prefix, _)) = body.rsplit_once("-batch") {
            for k in 0..BATCH {
                let member = format!("{prefix}-batch{k}");
                assert!(
                    delivered.contains(&member),
                    "{body} was delivered but {member} was not"
                );
            }
        }
    }
    assert!(
        duplicates * 4 <= total,
        "duplicates are {duplicates} of {total} deliveries: more than a quarter"
    );
}
