//! Quick Queues figures: durable sends alone, in a crowd and in batches, send-to-ack
//! throughput through a push consumer, and one million delayed messages.
//!
//! The million delayed messages run in a child process (this binary again, with
//! `BINDERY_QUEUES_DELAYED_CHILD` set) so that its peak RSS is its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bindery_core::queues::{
    ConsumerSettings, MessageSendRequest, QueueBroker, QueueLimits, QueueProducer,
    SendBatchOptions, SendOptions, handler_fn,
};
use bindery_queues::Queues;
use bytes::Bytes;

use crate::disk;
use crate::report::{figure, peak_rss_mib, ratio};

const RUN: Duration = Duration::from_secs(2);
const CHILD_ENV: &str = "BINDERY_QUEUES_DELAYED_CHILD";
const DELAYED: usize = 1_000_000;
const END_TO_END: usize = 400_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn body() -> Bytes {
    Bytes::from_static(br#"{"event":"page_view","user":12345,"path":"/index.html"}"#)
}

async fn open(dir: &tempfile::TempDir, name: &str) -> Queues {
    Queues::builder()
        .limits(QueueLimits::unbounded())
        .open(dir.path().join(name))
        .await
        .expect("open queues")
}

/// Prints the Queues figures.
pub fn run() {
    if std::env::var_os(CHILD_ENV).is_some() {
        delayed_child();
        return;
    }
    let fsync = disk::fsync_per_sec(RUN);
    figure("disk.fsync", fsync, "ops/s");
    // Context: the figures below are CPU- and fsync-bound, so a busy machine lowers them.
    if let Some(load) = std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| {
        l.split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
    }) {
        figure("machine.loadavg_1m", load, "runnable tasks");
    }
    let rt = runtime();
    let (s1, s64, batch, e2e) = rt.block_on(async {
        let dir = disk::bench_dir();
        let q = open(&dir, "sends.redb").await;
        let p: Arc<dyn QueueProducer> = q.producer("sends").await.expect("producer");
        let s1 = single_rate(&p, 1).await;
        figure("queues.send_single_1", s1, "msgs/s");
        let s64 = single_rate(&p, 64).await;
        figure("queues.send_single_64", s64, "msgs/s");
        let batch = batch_rate(&p, 16).await;
        figure("queues.send_batch_msgs_s", batch, "msgs/s");
        drop(p);
        drop(q);
        let q = open(&dir, "e2e.redb").await;
        let e2e = end_to_end(&q).await;
        figure("queues.end_to_end_msgs_s", e2e, "msgs/s");
        (s1, s64, batch, e2e)
    });
    let (insert_s, rss) = delayed_in_child();
    match insert_s {
        Some(s) => figure("queues.delayed_1m_insert_s", s, "s"),
        None => println!("queues.delayed_1m_insert_s: failed"),
    }
    match rss {
        Some(r) => figure("queues.delayed_1m_peak_rss_mib", r, "MiB"),
        None => println!("queues.delayed_1m_peak_rss_mib: failed"),
    }
    ratio(
        "queues.send_single_64/queues.send_single_1",
        s64 / s1,
        ">= 10",
    );
    ratio("queues.send_single_1/disk.fsync", s1 / fsync, ">= 0.5");
    ratio(
        "queues.send_batch_msgs_s/queues.send_single_64",
        batch / s64,
        "> 1",
    );
    ratio("queues.end_to_end_msgs_s/100000", e2e / 100_000.0, ">= 1");
    ratio(
        "queues.end_to_end_msgs_s/5000 (platform per-queue limit)",
        e2e / 5_000.0,
        ">= 1",
    );
    if let Some(s) = insert_s {
        ratio("30/queues.delayed_1m_insert_s", 30.0 / s, ">= 1");
    }
    if let Some(r) = rss {
        ratio("512/queues.delayed_1m_peak_rss_mib", 512.0 / r, ">= 1");
    }
}

/// Durable single-message sends per second with `senders` concurrent senders.
async fn single_rate(p: &Arc<dyn QueueProducer>, senders: usize) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..senders)
        .map(|_| {
            let p = Arc::clone(p);
            tokio::spawn(async move {
                let mut n = 0u64;
                while start.elapsed() < RUN {
                    p.send(body(), SendOptions::default()).await.expect("send");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("sender");
    }
    total as f64 / start.elapsed().as_secs_f64()
}

fn hundred(delay: Option<u64>) -> Vec<MessageSendRequest> {
    (0..100)
        .map(|_| MessageSendRequest {
            delay_seconds: delay,
            ..MessageSendRequest::json(body())
        })
        .collect()
}

/// Messages per second sent as durable 100-message batches by `senders` concurrent senders.
async fn batch_rate(p: &Arc<dyn QueueProducer>, senders: usize) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..senders)
        .map(|_| {
            let p = Arc::clone(p);
            tokio::spawn(async move {
                let mut n = 0u64;
                while start.elapsed() < RUN {
                    p.send_batch(hundred(None), SendBatchOptions::default())
                        .await
                        .expect("send_batch");
                    n += 100;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("sender");
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// Messages per second from the first send to the last ack: 32 senders of 100-message
/// batches and a push consumer (batches of 100, no batch wait, 64 batches in flight) whose
/// handler acks every message.
async fn end_to_end(q: &Queues) -> f64 {
    let acked = Arc::new(AtomicU64::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let handler = {
        let acked = Arc::clone(&acked);
        let done = Arc::clone(&done);
        handler_fn(move |batch| {
            let acked = Arc::clone(&acked);
            let done = Arc::clone(&done);
            async move {
                batch.ack_all();
                let n = batch.messages().len() as u64;
                if acked.fetch_add(n, Ordering::SeqCst) + n >= END_TO_END as u64 {
                    done.notify_one();
                }
                Ok(())
            }
        })
    };
    let settings = ConsumerSettings {
        max_batch_size: 100,
        max_batch_timeout_ms: 0,
        max_concurrency: Some(64),
        ..Default::default()
    };
    let p = q.producer("e2e").await.expect("producer");
    let start = Instant::now();
    let consumer = q
        .start_push_consumer("e2e", settings, Arc::new(handler))
        .await
        .expect("consumer");
    let senders = 32;
    let per_sender = END_TO_END / senders / 100;
    let tasks: Vec<_> = (0..senders)
        .map(|_| {
            let p = Arc::clone(&p);
            tokio::spawn(async move {
                for _ in 0..per_sender {
                    p.send_batch(hundred(None), SendBatchOptions::default())
                        .await
                        .expect("send_batch");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("sender");
    }
    tokio::time::timeout(Duration::from_secs(300), done.notified())
        .await
        .expect("every message acked within 300 s");
    // The handler has returned; wait for the last settlements to commit.
    while p.metrics().await.expect("metrics").backlog_count > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = acked.load(Ordering::SeqCst) as f64 / start.elapsed().as_secs_f64();
    consumer.shutdown().await;
    rate
}

/// Runs [`delayed_child`] in a child process; answers (seconds, peak RSS MiB).
fn delayed_in_child() -> (Option<f64>, Option<f64>) {
    let exe = std::env::current_exe().expect("current exe");
    let out = std::process::Command::new(exe)
        .args(["quick", "queues"])
        .env(CHILD_ENV, "1")
        .output()
        .expect("running the delayed-messages child");
    let text = String::from_utf8_lossy(&out.stdout);
    let find = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    if !out.status.success() {
        eprintln!(
            "delayed child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (find("child.seconds: "), find("child.peak_rss_mib: "))
}

/// One million messages delayed by an hour, sent as 100-message batches by 16 senders,
/// durably; prints the seconds and this process's peak RSS.
fn delayed_child() {
    let rt = runtime();
    let secs = rt.block_on(async {
        let dir = disk::bench_dir();
        let q = open(&dir, "delayed.redb").await;
        let p = q.producer("delayed").await.expect("producer");
        let senders = 16;
        let per_sender = DELAYED / senders / 100;
        let start = Instant::now();
        let tasks: Vec<_> = (0..senders)
            .map(|_| {
                let p = Arc::clone(&p);
                tokio::spawn(async move {
                    for _ in 0..per_sender {
                        p.send_batch(hundred(Some(3600)), SendBatchOptions::default())
                            .await
                            .expect("send_batch");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("sender");
        }
        let secs = start.elapsed().as_secs_f64();
        let m = p.metrics().await.expect("metrics");
        assert_eq!(m.backlog_count, DELAYED as u64);
        secs
    });
    println!("child.seconds: {secs}");
    println!("child.peak_rss_mib: {}", peak_rss_mib());
}
