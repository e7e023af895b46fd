//! Storage faults end in clean errors, a store that refuses further writes, and no partial
//! or lost acknowledged data after a reopen.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bindery_core::queues::{
    MessageSendRequest, PullConsumerSettings, PullOptions, QueueBroker, QueueError,
    SendBatchOptions, SendOptions,
};
use bindery_core::{ErrorKind, ManualClock, PlatformError};
use bindery_queues::Queues;
use redb::StorageBackend;
use redb::backends::InMemoryBackend;

/// An in-memory disk whose writes and syncs fail while `fail` is set.
#[derive(Debug, Clone)]
struct FlakyDisk {
    disk: Arc<InMemoryBackend>,
    fail: Arc<AtomicBool>,
}

impl FlakyDisk {
    fn check(&self) -> std::io::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected I/O error (disk full)"));
        }
        Ok(())
    }
}

impl StorageBackend for FlakyDisk {
    fn len(&self) -> std::io::Result<u64> {
        self.disk.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.disk.read(offset, out)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.check()?;
        self.disk.set_len(len)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        self.check()?;
        self.disk.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.check()?;
        self.disk.write(offset, data)
    }
}

async fn open(disk: &FlakyDisk, clock: &ManualClock) -> Queues {
    Queues::builder()
        .clock(clock.shared())
        .open_backend(disk.clone())
        .await
        .expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_is_a_clean_error_and_the_store_refuses_further_writes() {
    let disk = FlakyDisk {
        disk: Arc::new(InMemoryBackend::new()),
        fail: Arc::new(AtomicBool::new(false)),
    };
    let clock = ManualClock::at_2026();
    {
        let q = open(&disk, &clock).await;
        let p = q.producer("q").await.expect("producer");
        p.send("\"kept\"".into(), SendOptions::default())
            .await
            .expect("send before the fault");

        disk.fail.store(true, Ordering::SeqCst);
        let batch = (0..10)
            .map(|i| MessageSendRequest::json(format!("{i}")))
            .collect();
        let err = p
            .send_batch(batch, SendBatchOptions::default())
            .await
            .expect_err("a send whose commit fails is an error");
        assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
        assert_eq!(err.http_status(), 500);

        disk.fail.store(false, Ordering::SeqCst);
        let err = p
            .send("1".into(), SendOptions::default())
            .await
            .expect_err("a poisoned store refuses writes");
        assert!(matches!(err, QueueError::Poisoned { .. }), "{err:?}");
        assert!(err.to_string().contains("injected I/O error"), "{err}");
        // Reads from memory still answer, with the last committed backlog.
        assert_eq!(q.metrics("q").await.expect("metrics").backlog_count, 1);
    }

    // Reopened, the store holds the acknowledged message and nothing of the failed batch.
    let q = open(&disk, &clock).await;
    assert_eq!(q.metrics("q").await.expect("metrics").backlog_count, 1);
    let c = q
        .pull_consumer("q", PullConsumerSettings::default())
        .await
        .expect("pull consumer");
    let got = c
        .pull(PullOptions {
            batch_size: 100,
            visibility_timeout_ms: 1_000,
        })
        .await
        .expect("pull");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message.text(), "\"kept\"");
}
