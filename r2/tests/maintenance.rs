//! Background work of an on-disk bucket: upload expiry and lifecycle rules reclaim blobs,
//! lifecycle deletions emit events, and queued events survive a reopen.

use std::sync::{Arc, Mutex};

use bindery_core::error::BoxError;
use bindery_core::queues::{
    ContentType, MessageSendRequest, QueueMetrics, QueueProducer, QueueResult, SendBatchOptions,
    SendOptions,
};
use bindery_core::r2::{
    LifecycleRule, MultipartOptions, NotificationRule, QueueEventSink, R2Body, R2Bucket,
    R2BucketExt, R2Event, R2EventAction, R2EventSink, R2EventType, R2Limits, StorageClass,
};
use bindery_core::{Clock, ManualClock};
use bindery_r2::{Bucket, MaintenanceReport};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const DAY_SECS: u64 = 86_400;

async fn open(dir: &std::path::Path, clock: &ManualClock) -> Result<Bucket, bindery_r2::R2Error> {
    let mut limits = R2Limits::cloudflare();
    limits.min_part_bytes = 1;
    Bucket::builder()
        .clock(clock.shared())
        .limits(limits)
        // Maintenance runs only when a case calls it, never by itself mid-case.
        .maintenance_interval(std::time::Duration::from_secs(1000 * 365 * DAY_SECS))
        .open_bucket(dir, "bucket")
        .await
}

#[derive(Default)]
struct Sink(Mutex<Vec<R2Event>>);

#[async_trait::async_trait]
impl R2EventSink for Sink {
    async fn send(&self, event: &R2Event) -> Result<(), BoxError> {
        self.0.lock().map_err(|_| "poisoned")?.push(event.clone());
        Ok(())
    }
}

fn rule(sink: &Arc<Sink>) -> NotificationRule {
    NotificationRule {
        queue: "q".into(),
        sink: Arc::clone(sink) as Arc<dyn R2EventSink>,
        event_types: vec![R2EventType::ObjectCreate, R2EventType::ObjectDelete],
        prefix: String::new(),
        suffix: String::new(),
    }
}

#[tokio::test]
async fn expired_uploads_are_aborted_and_their_part_blobs_deleted() -> TestResult {
    let dir = tempfile::tempdir()?;
    let clock = ManualClock::at_2026();
    let bucket = open(dir.path(), &clock).await?;
    let up = bucket
        .create_multipart_upload("k", MultipartOptions::default())
        .await?;
    bucket.upload_part(&up, 1, R2Body::from("one")).await?;
    bucket.upload_part(&up, 2, R2Body::from("two")).await?;
    assert_eq!(bucket.blob_count().await?, 2);
    clock.advance_secs(6 * DAY_SECS);
    assert_eq!(bucket.run_maintenance().await?.aborted_uploads, 0);
    clock.advance_secs(DAY_SECS);
    let report = bucket.run_maintenance().await?;
    assert_eq!(report.aborted_uploads, 1);
    assert_eq!(bucket.blob_count().await?, 0);
    Ok(())
}

#[tokio::test]
async fn lifecycle_rule_aborts_uploads_under_its_prefix_sooner() -> TestResult {
    let dir = tempfile::tempdir()?;
    let clock = ManualClock::at_2026();
    let bucket = open(dir.path(), &clock).await?;
    bucket
        .set_lifecycle_rules(vec![LifecycleRule {
            id: "tmp".into(),
            prefix: "tmp/".into(),
            abort_multipart_after_days: Some(1),
            ..Default::default()
        }])
        .await?;
    let tmp = bucket
        .create_multipart_upload("tmp/a", MultipartOptions::default())
        .await?;
    let keep = bucket
        .create_multipart_upload("keep/a", MultipartOptions::default())
        .await?;
    bucket.upload_part(&tmp, 1, R2Body::from("x")).await?;
    bucket.upload_part(&keep, 1, R2Body::from("y")).await?;
    clock.advance_secs(DAY_SECS + 1);
    let report = bucket.run_maintenance().await?;
    assert_eq!(
        report,
        MaintenanceReport {
            aborted_uploads: 1,
            ..Default::default()
        }
    );
    assert!(bucket.list_parts(&tmp).await.is_err());
    assert_eq!(bucket.list_parts(&keep).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn lifecycle_expiry_deletes_blobs_and_emits_lifecycle_deletion_events() -> TestResult {
    let dir = tempfile::tempdir()?;
    let clock = ManualClock::at_2026();
    let bucket = open(dir.path(), &clock).await?;
    let sink = Arc::new(Sink::default());
    bucket.set_event_notifications(vec![rule(&sink)]).await?;
    bucket
        .set_lifecycle_rules(vec![LifecycleRule {
            id: "all".into(),
            expire_after_days: Some(10),
            transition_to_infrequent_access_after_days: Some(5),
            ..Default::default()
        }])
        .await?;
    for i in 0..3 {
        bucket.put_bytes(&format!("k{i}"), "v".into()).await?;
    }
    clock.advance_secs(6 * DAY_SECS);
    let r = bucket.run_maintenance().await?;
    assert_eq!((r.transitioned, r.expired), (3, 0));
    assert_eq!(
        bucket.head("k0").await?.map(|o| o.storage_class),
        Some(StorageClass::InfrequentAccess)
    );
    clock.advance_secs(4 * DAY_SECS);
    let r = bucket.run_maintenance().await?;
    assert_eq!(r.expired, 3);
    assert_eq!(bucket.blob_count().await?, 0);
    bucket.deliver_events().await?;
    let events = sink.0.lock().map_err(|_| "poisoned")?.clone();
    let deletions: Vec<&R2Event> = events
        .iter()
        .filter(|e| e.action == R2EventAction::LifecycleDeletion)
        .collect();
    assert_eq!(deletions.len(), 3);
    assert_eq!(deletions[0].event_time, clock.now_ms());
    Ok(())
}

#[tokio::test]
async fn queued_events_and_lifecycle_rules_survive_a_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let clock = ManualClock::at_2026();
    let rules = vec![LifecycleRule {
        id: "r".into(),
        expire_after_days: Some(3),
        ..Default::default()
    }];
    {
        let bucket = open(dir.path(), &clock).await?;
        bucket.set_lifecycle_rules(rules.clone()).await?;
        // A rule whose sink never accepts: the event stays queued.
        struct Down;
        #[async_trait::async_trait]
        impl R2EventSink for Down {
            async fn send(&self, _: &R2Event) -> Result<(), BoxError> {
                Err("down".into())
            }
        }
        bucket
            .set_event_notifications(vec![NotificationRule {
                queue: "q".into(),
                sink: Arc::new(Down),
                event_types: vec![R2EventType::ObjectCreate],
                prefix: String::new(),
                suffix: String::new(),
            }])
            .await?;
        bucket.put_bytes("queued", "v".into()).await?;
        assert_eq!(bucket.deliver_events().await?, 0);
    }
    let bucket = open(dir.path(), &clock).await?;
    assert_eq!(bucket.lifecycle_rules().await?, rules);
    let sink = Arc::new(Sink::default());
    bucket.set_event_notifications(vec![rule(&sink)]).await?;
    bucket.deliver_events().await?;
    let events = sink.0.lock().map_err(|_| "poisoned")?.clone();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].key, "queued");
    assert_eq!(
        bucket.deliver_events().await?,
        0,
        "an event was delivered twice"
    );
    Ok(())
}

/// A producer that keeps what it is sent.
#[derive(Default)]
struct Recorder(Mutex<Vec<(bytes::Bytes, ContentType)>>);

#[async_trait::async_trait]
impl QueueProducer for Recorder {
    fn queue_name(&self) -> &str {
        "r2-events"
    }

    async fn send(&self, body: bytes::Bytes, options: SendOptions) -> QueueResult<QueueMetrics> {
        if let Ok(mut v) = self.0.lock() {
            v.push((body, options.content_type));
        }
        Ok(QueueMetrics::default())
    }

    async fn send_batch(
        &self,
        messages: Vec<MessageSendRequest>,
        _: SendBatchOptions,
    ) -> QueueResult<QueueMetrics> {
        for m in messages {
            self.send(
                m.body,
                SendOptions {
                    content_type: m.content_type,
                    delay_seconds: None,
                },
            )
            .await?;
        }
        Ok(QueueMetrics::default())
    }

    async fn metrics(&self) -> QueueResult<QueueMetrics> {
        Ok(QueueMetrics::default())
    }
}

#[tokio::test]
async fn queue_event_sink_sends_r2_notification_json_through_the_queues_contract() -> TestResult {
    let dir = tempfile::tempdir()?;
    let clock = ManualClock::at_2026();
    let bucket = open(dir.path(), &clock).await?;
    let producer = Arc::new(Recorder::default());
    let sink = Arc::new(QueueEventSink::new(producer.clone(), "acct-1"));
    bucket
        .set_event_notifications(vec![sink.rule(vec![R2EventType::ObjectCreate], "img/", "")])
        .await?;
    let o = bucket.put_bytes("img/cat.png", "meow".into()).await?;
    bucket.put_bytes("doc/x", "no".into()).await?;
    bucket.deliver_events().await?;
    let sent = producer.0.lock().map_err(|_| "poisoned")?.clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, ContentType::Json);
    let msg: serde_json::Value = serde_json::from_slice(&sent[0].0)?;
    assert_eq!(msg["account"], "acct-1");
    assert_eq!(msg["bucket"], "bucket");
    assert_eq!(msg["action"], "PutObject");
    assert_eq!(msg["object"]["key"], "img/cat.png");
    assert_eq!(msg["object"]["size"], 4);
    assert_eq!(msg["object"]["eTag"], o.etag.as_str());
    assert_eq!(msg["eventTime"], "2026-01-01T00:00:00.000Z");
    Ok(())
}
