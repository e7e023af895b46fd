//! Criterion benchmarks for Queues: a durable single send, a durable 100-message batch, and
//! a pull-and-ack round of 10 messages.

use std::time::Duration;

use bindery_core::queues::{
    AckRequest, MessageSendRequest, PullConsumerSettings, PullOptions, QueueBroker, QueueLimits,
    SendBatchOptions, SendOptions,
};
use bindery_queues::Queues;
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};

fn queues(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir_in(".").expect("temp dir");
    let queues = rt
        .block_on(
            Queues::builder()
                .limits(QueueLimits::unbounded())
                .open(dir.path().join("queues.redb")),
        )
        .expect("open");
    let body = Bytes::from_static(br#"{"event":"page_view","user":12345}"#);
    let producer = rt.block_on(queues.producer("bench")).expect("producer");
    c.bench_function("queues/send_durable", |b| {
        b.iter(|| {
            rt.block_on(producer.send(body.clone(), SendOptions::default()))
                .expect("send")
        })
    });
    c.bench_function("queues/send_batch_100_durable", |b| {
        b.iter(|| {
            let batch = (0..100)
                .map(|_| MessageSendRequest::json(body.clone()))
                .collect();
            rt.block_on(producer.send_batch(batch, SendBatchOptions::default()))
                .expect("send_batch")
        })
    });
    let consumer = rt
        .block_on(queues.pull_consumer("bench", PullConsumerSettings::default()))
        .expect("pull consumer");
    c.bench_function("queues/pull_and_ack_10", |b| {
        b.iter(|| {
            rt.block_on(async {
                let got = consumer
                    .pull(PullOptions {
                        batch_size: 10,
                        visibility_timeout_ms: 60_000,
                    })
                    .await
                    .expect("pull");
                if got.is_empty() {
                    let batch = (0..100)
                        .map(|_| MessageSendRequest::json(body.clone()))
                        .collect();
                    producer
                        .send_batch(batch, SendBatchOptions::default())
                        .await
                        .expect("refill");
                }
                consumer
                    .ack(AckRequest {
                        acks: got.into_iter().map(|g| g.lease_id).collect(),
                        retries: vec![],
                    })
                    .await
                    .expect("ack")
            })
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).sample_size(20);
    targets = queues
}
criterion_main!(benches);
