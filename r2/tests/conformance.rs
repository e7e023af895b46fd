//! The R2 conformance suite, run against the on-disk bucket store.

use std::sync::Arc;

use bindery_conformance::r2::R2Subject;
use bindery_core::ManualClock;
use bindery_core::r2::{R2Buckets, R2Limits};
use bindery_r2::R2Store;

async fn on_disk(limits: R2Limits) -> R2Subject {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::at_2026();
    let store = R2Store::builder()
        .clock(clock.shared())
        .limits(limits)
        .open_store(dir.path())
        .await
        .expect("open store");
    store
        .create_bucket("test-bucket")
        .await
        .expect("create bucket");
    let bucket = store.open_bucket("test-bucket").await.expect("open bucket");
    R2Subject::new(Arc::new(bucket), Arc::new(store), clock, dir)
}

bindery_conformance::r2_conformance!(on_disk);
