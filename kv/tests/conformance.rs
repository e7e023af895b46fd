//! The KV conformance suite, run against both engines.

use std::sync::Arc;

use bindery_conformance::kv::KvSubject;
use bindery_core::ManualClock;
use bindery_core::kv::{KvLimits, KvStore};
use bindery_kv::KvNamespace;

fn subject(
    ns: KvNamespace,
    clock: ManualClock,
    guard: impl std::any::Any + Send + Sync,
) -> KvSubject {
    let locate = ns.clone();
    KvSubject::new(
        Arc::new(ns),
        clock,
        move |loc| Arc::new(locate.at_location(loc)) as Arc<dyn KvStore>,
        guard,
    )
}

async fn redb(limits: KvLimits) -> KvSubject {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::at_2026();
    let ns = KvNamespace::builder()
        .clock(clock.shared())
        .limits(limits)
        .open(dir.path().join("kv.redb"))
        .await
        .expect("open redb namespace");
    subject(ns, clock, dir)
}

async fn memory(limits: KvLimits) -> KvSubject {
    let clock = ManualClock::at_2026();
    let ns = KvNamespace::builder()
        .clock(clock.shared())
        .limits(limits)
        .memory();
    subject(ns, clock, ())
}

mod on_redb {
    bindery_conformance::kv_conformance!(super::redb);
}

mod on_memory {
    bindery_conformance::kv_conformance!(super::memory);
}
