//! Model-based test: random operation sequences against a `BTreeMap`, with clock advances and
//! reopens of the redb file in between.

use std::collections::BTreeMap;

use bindery_core::kv::{GetOptions, KvLimits, KvStore, ListOptions, PutOptions};
use bindery_core::{Clock, ManualClock};
use bindery_kv::KvNamespace;
use bytes::Bytes;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        ttl: Option<u64>,
    },
    Delete {
        key: String,
    },
    Get {
        key: String,
    },
    List {
        prefix: String,
        limit: usize,
    },
    Advance {
        secs: u64,
    },
    Reopen,
}

fn key() -> impl Strategy<Value = String> {
    // A small alphabet so that keys collide, share prefixes and sort in interesting ways.
    proptest::string::string_regex("[ab\u{e9}/]{1,4}").expect("regex")
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (key(), proptest::collection::vec(any::<u8>(), 0..64), proptest::option::of(1u64..300))
            .prop_map(|(key, value, ttl)| Op::Put { key, value, ttl }),
        2 => key().prop_map(|key| Op::Delete { key }),
        3 => key().prop_map(|key| Op::Get { key }),
        2 => (proptest::string::string_regex("[ab\u{e9}/]{0,2}").expect("regex"), 1usize..5)
            .prop_map(|(prefix, limit)| Op::List { prefix, limit }),
        2 => (0u64..200).prop_map(|secs| Op::Advance { secs }),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Default)]
struct Model {
    entries: BTreeMap<String, (Vec<u8>, Option<u64>)>,
}

impl Model {
    fn live(&self, now_secs: u64) -> impl Iterator<Item = (&String, &Vec<u8>)> {
        self.entries
            .iter()
            .filter(move |(_, (_, exp))| exp.is_none_or(|e| e > now_secs))
            .map(|(k, (v, _))| (k, v))
    }
}

async fn open(path: &std::path::Path, clock: &ManualClock) -> KvNamespace {
    KvNamespace::builder()
        .clock(clock.shared())
        .limits(KvLimits::unbounded())
        .open(path)
        .await
        .expect("open")
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kv.redb");
    let clock = ManualClock::at_2026();
    let mut kv = open(&path, &clock).await;
    let mut model = Model::default();
    for op in ops {
        let now = clock.now_secs();
        match op {
            Op::Put { key, value, ttl } => {
                let opts = PutOptions {
                    expiration_ttl: ttl,
                    ..Default::default()
                };
                kv.put(&key, Bytes::from(value.clone()), opts)
                    .await
                    .expect("put");
                model.entries.insert(key, (value, ttl.map(|t| now + t)));
            }
            Op::Delete { key } => {
                kv.delete(&key).await.expect("delete");
                model.entries.remove(&key);
            }
            Op::Get { key } => {
                let got = kv.get(&key, GetOptions::default()).await.expect("get");
                let want = model
                    .live(now)
                    .find(|(k, _)| **k == key)
                    .map(|(_, v)| Bytes::from(v.clone()));
                prop_assert_eq!(got, want, "get {:?}", key);
            }
            Op::List { prefix, limit } => {
                let mut names = Vec::new();
                let mut cursor = None;
                loop {
                    let page = kv
                        .list(ListOptions {
                            prefix: Some(prefix.clone()),
                            limit: Some(limit),
                            cursor,
                        })
                        .await
                        .expect("list");
                    prop_assert!(page.keys.len() <= limit);
                    names.extend(page.keys.into_iter().map(|k| k.name));
                    match page.cursor {
                        Some(c) => cursor = Some(c),
                        None => break,
                    }
                }
                let want: Vec<String> = model
                    .live(now)
                    .filter(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, _)| k.clone())
                    .collect();
                prop_assert_eq!(names, want, "list prefix {:?} limit {}", prefix, limit);
            }
            Op::Advance { secs } => clock.advance_secs(secs),
            Op::Reopen => {
                drop(kv);
                kv = open(&path, &clock).await;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn kv_matches_a_btreemap_model_across_clock_advances_and_reopens(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(run(ops))?;
    }
}
