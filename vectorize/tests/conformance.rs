//! The Vectorize conformance suite, run against the HNSW engine (with its exact path for
//! small candidate sets, and with the graph forced for every query) and the exact engine.

use std::path::PathBuf;
use std::sync::Arc;

use bindery_conformance::vectorize::{Reopen, VectorizeSubject};
use bindery_core::ManualClock;
use bindery_core::vectorize::{Vectorize, VectorizeLimits};
use bindery_vectorize::{Engine, HnswParams, VectorizeAccount};

async fn open_account(
    root: PathBuf,
    clock: ManualClock,
    limits: VectorizeLimits,
    engine: Engine,
    exact_threshold: usize,
) -> Arc<dyn Vectorize> {
    Arc::new(
        VectorizeAccount::builder()
            .clock(clock.shared())
            .limits(limits)
            .engine(engine)
            .exact_threshold(exact_threshold)
            .open(root)
            .await
            .expect("open account"),
    )
}

async fn subject(
    limits: VectorizeLimits,
    engine: Engine,
    exact_threshold: usize,
) -> VectorizeSubject {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::at_2026();
    let root = dir.path().join("vectorize");
    let account = open_account(
        root.clone(),
        clock.clone(),
        limits.clone(),
        engine,
        exact_threshold,
    )
    .await;
    let reopen: Reopen = {
        let clock = clock.clone();
        Box::new(move || {
            Box::pin(open_account(
                root.clone(),
                clock.clone(),
                limits.clone(),
                engine,
                exact_threshold,
            ))
        })
    };
    VectorizeSubject::new(account, clock, Some(reopen), dir)
}

/// The default engine: small candidate sets (every case's) are scanned exactly.
async fn hnsw(limits: VectorizeLimits) -> VectorizeSubject {
    subject(limits, Engine::Hnsw(HnswParams::default()), 3_000).await
}

/// The graph answers every query, however small the candidate set.
async fn graph_only(limits: VectorizeLimits) -> VectorizeSubject {
    subject(limits, Engine::Hnsw(HnswParams::default()), 0).await
}

async fn exact(limits: VectorizeLimits) -> VectorizeSubject {
    subject(limits, Engine::Exact, 0).await
}

mod on_hnsw {
    bindery_conformance::vectorize_conformance!(super::hnsw);
}

mod on_graph_only {
    bindery_conformance::vectorize_conformance!(super::graph_only);
}

mod on_exact {
    bindery_conformance::vectorize_conformance!(super::exact);
}
