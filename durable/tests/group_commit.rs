//! Group commit across objects, and a model check of `list` against a `BTreeMap`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bindery_core::durable::{
    DurableNamespace, DurableObject, DurableResult, ListOptions, State, async_trait,
};
use bindery_durable::DurableRuntime;
use bytes::Bytes;
use proptest::prelude::*;

enum Req {
    Put(String, Bytes),
    Delete(String),
    List(ListOptions),
}

struct Obj {
    state: State,
    handled: Arc<AtomicUsize>,
}

#[async_trait]
impl DurableObject for Obj {
    type Request = Req;
    type Response = Vec<(String, Bytes)>;

    async fn call(&mut self, req: Req) -> DurableResult<Vec<(String, Bytes)>> {
        let s = self.state.storage();
        let out = match req {
            Req::Put(k, v) => {
                s.put(&k, v)?;
                Vec::new()
            }
            Req::Delete(k) => {
                s.delete(&k)?;
                Vec::new()
            }
            Req::List(o) => s.list(&o)?,
        };
        self.handled.fetch_add(1, Ordering::SeqCst);
        Ok(out)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_of_many_objects_share_one_fsync_round() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = DurableRuntime::builder()
        .open(dir.path())
        .await
        .expect("open");
    let handled = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&handled);
    let ns = runtime
        .namespace("group", move |state| Obj {
            state,
            handled: Arc::clone(&h),
        })
        .await
        .expect("namespace");
    // Create every object's database first, so the measured round holds only data commits.
    for i in 0..50 {
        ns.get_by_name(&format!("o{i}"))
            .call(Req::Put("warm".into(), Bytes::from_static(b"x")))
            .await
            .expect("warm");
    }
    handled.store(0, Ordering::SeqCst);
    runtime.hold_durability(true);
    let before = runtime.durability_rounds();
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let stub = ns.get_by_name(&format!("o{i}"));
            tokio::spawn(async move {
                stub.call(Req::Put("k".into(), Bytes::from_static(b"v")))
                    .await
            })
        })
        .collect();
    for _ in 0..1000 {
        if handled.load(Ordering::SeqCst) == 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        handled.load(Ordering::SeqCst),
        50,
        "not every write was applied"
    );
    assert!(
        calls.iter().all(|c| !c.is_finished()),
        "a reply left before its write was durable"
    );
    runtime.hold_durability(false);
    for c in calls {
        tokio::time::timeout(Duration::from_secs(10), c)
            .await
            .expect("reply in time")
            .expect("join")
            .expect("put");
    }
    let rounds = runtime.durability_rounds() - before;
    assert!(
        rounds <= 2,
        "50 objects' commits took {rounds} fsync rounds; expected them to share one"
    );
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "a",
        "b",
        "ab",
        "abc",
        "b\u{e9}",
        "c",
        "ca",
        "\u{1f600}",
        "z",
    ])
    .prop_map(str::to_owned)
}

#[derive(Debug, Clone)]
enum Op {
    Put(String, u8),
    Delete(String),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (key(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        key().prop_map(Op::Delete),
    ]
}

fn options() -> impl Strategy<Value = ListOptions> {
    (
        prop::option::of(key()),
        prop::option::of(key()),
        prop::option::of(key()),
        prop::option::of(prop::sample::select(vec!["a", "b", "c", ""]).prop_map(str::to_owned)),
        any::<bool>(),
        prop::option::of(1usize..5),
        any::<bool>(),
    )
        .prop_map(
            |(start, start_after, end, prefix, reverse, limit, use_after)| ListOptions {
                start: if use_after { None } else { start },
                start_after: if use_after { start_after } else { None },
                end,
                prefix,
                reverse,
                limit,
            },
        )
}

/// What `list` must answer, computed over a plain map.
fn model_list(m: &BTreeMap<String, Bytes>, o: &ListOptions) -> Vec<(String, Bytes)> {
    let mut v: Vec<(String, Bytes)> = m
        .iter()
        .filter(|(k, _)| {
            o.start
                .as_ref()
                .is_none_or(|s| k.as_bytes() >= s.as_bytes())
        })
        .filter(|(k, _)| {
            o.start_after
                .as_ref()
                .is_none_or(|s| k.as_bytes() > s.as_bytes())
        })
        .filter(|(k, _)| o.end.as_ref().is_none_or(|e| k.as_bytes() < e.as_bytes()))
        .filter(|(k, _)| o.prefix.as_ref().is_none_or(|p| k.starts_with(p.as_str())))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    v.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    if o.reverse {
        v.reverse();
    }
    if let Some(l) = o.limit {
        v.truncate(l);
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn list_matches_a_btreemap_model(ops in prop::collection::vec(op(), 0..25), queries in prop::collection::vec(options(), 1..6)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
        rt.block_on(async {
            let dir = tempfile::tempdir().expect("temp dir");
            let runtime = DurableRuntime::builder().open(dir.path()).await.expect("open");
            let ns = runtime
                .namespace("model", |state| Obj { state, handled: Arc::new(AtomicUsize::new(0)) })
                .await
                .expect("namespace");
            let stub = ns.get_by_name("m");
            let mut model = BTreeMap::new();
            for o in ops {
                match o {
                    Op::Put(k, v) => {
                        let b = Bytes::from(vec![v]);
                        stub.call(Req::Put(k.clone(), b.clone())).await.expect("put");
                        model.insert(k, b);
                    }
                    Op::Delete(k) => {
                        stub.call(Req::Delete(k.clone())).await.expect("delete");
                        model.remove(&k);
                    }
                }
            }
            for q in queries {
                let got = stub.call(Req::List(q.clone())).await.expect("list");
                assert_eq!(got, model_list(&model, &q), "options {q:?}");
            }
            ns.shutdown().await;
        });
    }
}
