//! Criterion benchmarks for Durable Objects: one RPC round trip to a live object, one with a
//! durable write, and a SQL query.

use std::time::Duration;

use bindery_core::durable::{
    DurableLimits, DurableNamespace, DurableObject, DurableResult, SqlValue, State, async_trait,
};
use bindery_durable::DurableRuntime;
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};

enum Req {
    Setup,
    Read,
    Write(u64),
    Sql(i64),
}

struct Obj {
    state: State,
}

#[async_trait]
impl DurableObject for Obj {
    type Request = Req;
    type Response = usize;

    async fn call(&mut self, req: Req) -> DurableResult<usize> {
        let s = self.state.storage();
        match req {
            Req::Read => Ok(0),
            Req::Write(n) => {
                s.put(&format!("k{n}"), Bytes::from_static(&[7u8; 100]))?;
                Ok(1)
            }
            Req::Setup => Ok(s
                .exec(
                    "CREATE TABLE IF NOT EXISTS t (x INTEGER PRIMARY KEY);
                     WITH RECURSIVE n(v) AS (SELECT 0 UNION ALL SELECT v + 1 FROM n WHERE v < 1999)
                     INSERT OR IGNORE INTO t SELECT v FROM n",
                    &[],
                )?
                .rows_written() as usize),
            Req::Sql(n) => Ok(s
                .exec(
                    "SELECT x FROM t WHERE x >= ? ORDER BY x LIMIT 10",
                    &[SqlValue::Integer(n)],
                )?
                .count()),
        }
    }
}

fn durable(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir_in(".").expect("temp dir");
    let ns = rt.block_on(async {
        let runtime = DurableRuntime::builder()
            .limits(DurableLimits::unbounded())
            .open(dir.path())
            .await
            .expect("open");
        runtime
            .namespace("bench", |state| Obj { state })
            .await
            .expect("namespace")
    });
    let stub = ns.get_by_name("one");
    rt.block_on(async {
        stub.call(Req::Read).await.expect("warm");
        stub.call(Req::Setup).await.expect("setup");
    });
    c.bench_function("durable/rpc_read", |b| {
        b.iter(|| rt.block_on(stub.call(Req::Read)).expect("call"))
    });
    let mut n = 0u64;
    c.bench_function("durable/rpc_durable_write", |b| {
        b.iter(|| {
            n += 1;
            rt.block_on(stub.call(Req::Write(n))).expect("call")
        })
    });
    let mut i = 0i64;
    c.bench_function("durable/sql_select_10", |b| {
        b.iter(|| {
            i = (i + 1) % 1_000;
            rt.block_on(stub.call(Req::Sql(i))).expect("call")
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = durable
}
criterion_main!(benches);
