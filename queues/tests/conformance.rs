//! The Queues conformance suite, run against the durable store and the in-memory one.

use std::sync::Arc;

use bindery_conformance::queues::QueueSubject;
use bindery_core::ManualClock;
use bindery_core::queues::QueueLimits;
use bindery_queues::Queues;

async fn durable(limits: QueueLimits) -> QueueSubject {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::at_2026();
    let queues = Queues::builder()
        .clock(clock.shared())
        .limits(limits)
        .open(dir.path().join("queues.redb"))
        .await
        .expect("open the durable store");
    QueueSubject::new(Arc::new(queues), clock, dir)
}

async fn memory(limits: QueueLimits) -> QueueSubject {
    let clock = ManualClock::at_2026();
    let queues = Queues::builder()
        .clock(clock.shared())
        .limits(limits)
        .memory()
        .await
        .expect("open the memory store");
    QueueSubject::new(Arc::new(queues), clock, ())
}

mod on_redb {
    bindery_conformance::queues_conformance!(super::durable);
}

mod on_memory {
    bindery_conformance::queues_conformance!(super::memory);
}
