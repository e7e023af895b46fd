//! The D1 conformance suite, run against a database opened directly and against a database
//! reached through a catalog that keeps only two databases open (so cases also exercise
//! eviction and lazy reopening).

use std::sync::Arc;

use bindery_conformance::d1::D1Subject;
use bindery_core::ManualClock;
use bindery_core::d1::{D1Catalog, D1Database, D1Limits};
use bindery_d1::{Catalog, Database};

async fn direct(limits: D1Limits) -> D1Subject {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::at_2026();
    let db = Database::builder()
        .clock(clock.shared())
        .limits(limits)
        .open(dir.path().join("main.sqlite"))
        .await
        .expect("open database");
    D1Subject::new(Arc::new(db), clock, None, dir)
}

async fn catalog(limits: D1Limits) -> D1Subject {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::at_2026();
    let builder = Database::builder().clock(clock.shared()).limits(limits);
    let cat = Catalog::with_builder(dir.path().join("d1"), builder, 2).expect("catalog");
    let db: Arc<dyn D1Database> = cat.create("main").await.expect("create main");
    D1Subject::new(db, clock, Some(Arc::new(cat) as Arc<dyn D1Catalog>), dir)
}

mod direct_database {
    bindery_conformance::d1_conformance!(super::direct);
}

mod through_catalog {
    bindery_conformance::d1_conformance!(super::catalog);
}
