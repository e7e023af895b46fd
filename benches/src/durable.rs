//! Quick Durable Objects figures: RPC to one object with and without a durable write per
//! request (64 concurrent callers), RPC spread over 1,000 objects, and the memory an idle,
//! evicted but still addressable object costs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bindery_core::ManualClock;
use bindery_core::durable::{
    DurableLimits, DurableNamespace, DurableObject, DurableResult, DurableStub, State, async_trait,
};
use bindery_durable::DurableRuntime;
use bytes::Bytes;

use crate::disk;
use crate::report::{figure, ratio, rss_mib};

const RUN: Duration = Duration::from_secs(2);
const CALLERS: usize = 64;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

enum Req {
    Read,
    Write(u64),
}

struct Bench {
    state: State,
    hits: u64,
}

#[async_trait]
impl DurableObject for Bench {
    type Request = Req;
    type Response = u64;

    async fn call(&mut self, req: Req) -> DurableResult<u64> {
        self.hits += 1;
        match req {
            Req::Read => Ok(self.hits),
            Req::Write(n) => {
                self.state.storage().put(
                    &format!("k{:06}", n % 100_000),
                    Bytes::from_static(&[7u8; 100]),
                )?;
                Ok(self.hits)
            }
        }
    }
}

/// Requests per second from `CALLERS` tasks, each calling `pick(caller, n)`'s stub.
async fn rate(stubs: Arc<Vec<DurableStub<Bench>>>, write: bool) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..CALLERS {
        let stubs = Arc::clone(&stubs);
        let stop = Arc::clone(&stop);
        let done = Arc::clone(&done);
        tasks.push(tokio::spawn(async move {
            let mut n = c as u64;
            let mut local = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let stub = &stubs[(n as usize).wrapping_mul(2_654_435_761) % stubs.len()];
                let req = if write { Req::Write(n) } else { Req::Read };
                stub.call(req).await.expect("call");
                n += CALLERS as u64;
                local += 1;
            }
            done.fetch_add(local, Ordering::Relaxed);
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(RUN).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("caller");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Prints the Durable Objects figures.
pub fn run() {
    let fsync = disk::fsync_per_sec(Duration::from_secs(1));
    figure("disk.fsync", fsync, "ops/s");
    let rt = runtime();
    rt.block_on(async {
        let dir = disk::bench_dir();
        let runtime = DurableRuntime::builder()
            .limits(DurableLimits::unbounded())
            .idle_timeout_ms(600_000)
            .open(dir.path())
            .await
            .expect("open runtime");
        let ns = runtime
            .namespace("bench", |state| Bench { state, hits: 0 })
            .await
            .expect("namespace");

        let one = Arc::new(vec![ns.get_by_name("hot")]);
        one[0].call(Req::Read).await.expect("warm");
        let rpc_one = rate(Arc::clone(&one), false).await;
        figure("durable.rpc_one_object", rpc_one, "req/s");

        let rounds_before = runtime.durability_rounds();
        let t0 = Instant::now();
        let rpc_write = rate(Arc::clone(&one), true).await;
        let secs = t0.elapsed().as_secs_f64();
        let rounds = (runtime.durability_rounds() - rounds_before).max(1) as f64;
        figure("durable.rpc_write_one_object", rpc_write, "req/s");
        figure(
            "durable.rpc_write_one_object.writes_per_fsync_round",
            rpc_write * secs / rounds,
            "writes",
        );

        let many: Vec<_> = (0..1000)
            .map(|i| ns.get_by_name(&format!("o{i}")))
            .collect();
        for s in &many {
            s.call(Req::Read).await.expect("warm");
        }
        let rpc_many = rate(Arc::new(many), false).await;
        figure("durable.rpc_1000_objects", rpc_many, "req/s");
        ns.shutdown().await;

        // Idle objects: 100,000 objects each handle one call, at most 1,000 live at once;
        // the rest are evicted but stay addressable by id.
        let clock = ManualClock::at_2026();
        let idle_rt = DurableRuntime::builder()
            .clock(clock.shared())
            .idle_timeout_ms(1_000)
            .max_live_instances(1_000)
            .open(dir.path().join("idle"))
            .await
            .expect("open runtime");
        let idle = idle_rt
            .namespace("idle", |state| Bench { state, hits: 0 })
            .await
            .expect("namespace");
        // Warm the allocator and the runtime with a first wave, then measure the second.
        let wave = |from: usize, to: usize| {
            let idle = idle.clone();
            async move {
                for chunk_start in (from..to).step_by(1_000) {
                    let calls: Vec<_> = (chunk_start..(chunk_start + 1_000).min(to))
                        .map(|i| {
                            let stub = idle.get_by_name(&format!("idle{i}"));
                            tokio::spawn(async move { stub.call(Req::Read).await })
                        })
                        .collect();
                    for c in calls {
                        c.await.expect("join").expect("call");
                    }
                }
            }
        };
        wave(0, 10_000).await;
        let before = rss_mib();
        wave(10_000, 110_000).await;
        clock.advance_ms(2_000);
        for _ in 0..2_000 {
            if idle.live_instances() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let after = rss_mib();
        let per_object = ((after - before) * 1024.0 * 1024.0 / 100_000.0).max(0.0);
        figure("durable.idle_object_bytes", per_object, "bytes");
        figure(
            "durable.idle_live_instances_after",
            idle.live_instances() as f64,
            "instances",
        );
        idle.shutdown().await;

        ratio("durable.rpc_one_object/500000", rpc_one / 500_000.0, ">= 1");
        ratio(
            "durable.rpc_write_one_object/20000",
            rpc_write / 20_000.0,
            ">= 1",
        );
        ratio(
            "durable.idle_object_bytes/1024",
            per_object / 1024.0,
            "<= 1",
        );
        ratio(
            "durable.rpc_write_one_object/disk.fsync",
            rpc_write / fsync,
            ">= 2",
        );
        // With one request in flight per caller, each request needs its own fsync round:
        // 64 x disk.fsync is this disk's ceiling for the figure.
        ratio(
            "durable.rpc_write_one_object/(64 x disk.fsync)",
            rpc_write / (CALLERS as f64 * fsync),
            ">= 0.5",
        );
    });
}
