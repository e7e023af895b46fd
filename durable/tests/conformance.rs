//! The Durable Objects conformance suite, run against the SQLite-backed runtime.

use std::path::PathBuf;
use std::sync::Arc;

use bindery_conformance::durable::{
    BoxFut, DurableBackend, DurableConfig, DurableSubject, Probe, ProbeKit,
};
use bindery_core::ManualClock;
use bindery_core::durable::{DurableLimits, DurableNamespace};
use bindery_durable::{DurableRuntime, Namespace};
use parking_lot::Mutex;

struct Settings {
    limits: DurableLimits,
    idle_timeout_ms: u64,
    max_live: usize,
    nested_call_timeout_ms: u64,
    clock: ManualClock,
    kit: ProbeKit,
    dir: PathBuf,
}

struct Backend {
    settings: Settings,
    current: Mutex<(DurableRuntime, Namespace<Probe>)>,
    _dir: tempfile::TempDir,
}

async fn start(s: &Settings) -> (DurableRuntime, Namespace<Probe>) {
    let rt = DurableRuntime::builder()
        .clock(s.clock.shared())
        .limits(s.limits.clone())
        .idle_timeout_ms(s.idle_timeout_ms)
        .max_live_instances(s.max_live)
        .nested_call_timeout_ms(s.nested_call_timeout_ms)
        .open(&s.dir)
        .await
        .expect("open runtime");
    let ns = rt
        .namespace("probes", s.kit.constructor())
        .await
        .expect("open namespace");
    s.kit.bind(Arc::new(ns.clone()));
    (rt, ns)
}

impl DurableBackend for Backend {
    fn namespace(&self) -> Arc<dyn DurableNamespace<Probe>> {
        Arc::new(self.current.lock().1.clone())
    }

    fn hold_durability(&self, hold: bool) {
        self.current.lock().0.hold_durability(hold);
    }

    fn fail_next_syncs(&self, n: u32) {
        self.current.lock().0.fail_next_syncs(n);
    }

    fn restart(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            let ns = self.current.lock().1.clone();
            ns.shutdown().await;
            let next = start(&self.settings).await;
            *self.current.lock() = next;
        })
    }
}

async fn sqlite(config: DurableConfig) -> DurableSubject {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = Settings {
        limits: config.limits,
        idle_timeout_ms: config.idle_timeout_ms,
        max_live: config.max_live_instances,
        nested_call_timeout_ms: config.nested_call_timeout_ms,
        clock: config.clock.clone(),
        kit: config.kit.clone(),
        dir: dir.path().to_owned(),
    };
    let current = start(&settings).await;
    DurableSubject {
        backend: Box::new(Backend {
            settings,
            current: Mutex::new(current),
            _dir: dir,
        }),
        clock: config.clock,
        log: Arc::clone(&config.kit.log),
    }
}

bindery_conformance::durable_conformance!(sqlite);
