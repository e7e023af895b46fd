//! What survives closing and reopening the store.

use std::sync::Arc;
use std::time::Duration;

use bindery_core::queues::{
    ConsumerSettings, PullConsumerSettings, PullOptions, QueueBroker, QueueSettings, SendOptions,
    handler_fn,
};
use bindery_core::{Clock, ManualClock};
use bindery_queues::Queues;

async fn open(path: &std::path::Path, clock: &ManualClock) -> Queues {
    Queues::builder()
        .clock(clock.shared())
        .open(path)
        .await
        .expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_backlog_and_leases_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("q.redb");
    let clock = ManualClock::at_2026();
    let settings = QueueSettings {
        delivery_delay_secs: 5,
        message_retention_period_secs: 600,
    };
    let sent_at = clock.now_ms();
    {
        let q = open(&path, &clock).await;
        q.create_queue("jobs", settings).await.expect("create");
        let p = q.producer("jobs").await.expect("producer");
        for body in ["1", "2", "3"] {
            p.send(body.into(), SendOptions::default())
                .await
                .expect("send");
        }
        clock.advance_secs(5);
        let c = q
            .pull_consumer("jobs", PullConsumerSettings::default())
            .await
            .expect("pull consumer");
        let leased = c
            .pull(PullOptions {
                batch_size: 1,
                visibility_timeout_ms: 60_000,
            })
            .await
            .expect("pull");
        assert_eq!(leased.len(), 1);
    }
    let q = open(&path, &clock).await;
    let m = q.metrics("jobs").await.expect("metrics");
    assert_eq!(m.backlog_count, 3);
    assert_eq!(m.backlog_bytes, 3);
    assert_eq!(m.oldest_message_timestamp_ms, Some(sent_at));
    // The queue's delivery delay is still 5 s.
    let p = q.producer("jobs").await.expect("producer");
    p.send("4".into(), SendOptions::default())
        .await
        .expect("send");
    let c = q
        .pull_consumer("jobs", PullConsumerSettings::default())
        .await
        .expect("pull consumer");
    let all = PullOptions {
        batch_size: 100,
        visibility_timeout_ms: 60_000,
    };
    // The lease taken before the reopen still hides its message.
    let got = c.pull(all).await.expect("pull");
    assert_eq!(got.len(), 2, "two unleased messages are ready");
    clock.advance_secs(5);
    let got = c.pull(all).await.expect("pull");
    assert_eq!(
        got.len(),
        1,
        "the delayed message is ready 5 s after it was sent"
    );
    assert_eq!(got[0].message.text(), "4");
    // Retention (600 s) was kept: everything is gone once it passes.
    clock.advance_secs(600);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while q.metrics("jobs").await.expect("metrics").backlog_count > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "retention did not delete the messages"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_message_keeps_its_delay_across_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("q.redb");
    let clock = ManualClock::at_2026();
    {
        let q = open(&path, &clock).await;
        let p = q.producer("later").await.expect("producer");
        p.send(
            "\"wake\"".into(),
            SendOptions {
                delay_seconds: Some(3600),
                ..Default::default()
            },
        )
        .await
        .expect("send");
    }
    let q = open(&path, &clock).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handler = handler_fn(move |batch| {
        let _ = tx.send(batch.messages()[0].message().text());
        async { Ok(()) }
    });
    let settings = ConsumerSettings {
        max_batch_timeout_ms: 0,
        ..Default::default()
    };
    let c = q
        .start_push_consumer("later", settings, Arc::new(handler))
        .await
        .expect("consumer");
    clock.advance_secs(3599);
    assert!(rx.try_recv().is_err(), "delivered before its delay");
    clock.advance_secs(1);
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("delivered once the delay passed");
    assert_eq!(got.as_deref(), Some("\"wake\""));
    c.shutdown().await;
}
