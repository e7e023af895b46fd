//! Model-based test: random sequences of puts (plain and conditional), deletes, ranged gets,
//! lists (prefix, delimiter, pagination) and multipart uploads against a `BTreeMap` model,
//! with reopens in between.

use std::collections::{BTreeMap, BTreeSet};

use bindery_core::ManualClock;
use bindery_core::r2::{
    Conditional, GetOptions, ListOptions, MultipartOptions, PutOptions, R2Body, R2Bucket,
    R2GetResult, R2Limits, R2Range,
};
use bindery_r2::Bucket;
use bytes::Bytes;
use proptest::prelude::*;

const KEYS: [&str; 10] = [
    "a", "a/", "a/b", "a/b/c", "b", "ba", "b/x", "../x", "\u{e9}", "a//",
];
const PREFIXES: [&str; 5] = ["", "a", "a/", "b", "a/b/"];

#[derive(Debug, Clone)]
enum Cond {
    None,
    IfAbsent,
    IfCurrentEtag,
    IfStaleEtag,
}

#[derive(Debug, Clone)]
enum Op {
    Put {
        key: usize,
        len: usize,
        seed: u8,
        cond: Cond,
    },
    Delete {
        keys: Vec<usize>,
    },
    Get {
        key: usize,
        offset: usize,
        length: Option<usize>,
    },
    List {
        prefix: usize,
        delimiter: bool,
        limit: usize,
    },
    Multipart {
        key: usize,
        parts: usize,
        last: usize,
        seed: u8,
        complete: bool,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let cond = prop_oneof![
        Just(Cond::None),
        Just(Cond::IfAbsent),
        Just(Cond::IfCurrentEtag),
        Just(Cond::IfStaleEtag)
    ];
    prop_oneof![
        4 => (0..KEYS.len(), 0..3000usize, any::<u8>(), cond)
            .prop_map(|(key, len, seed, cond)| Op::Put { key, len, seed, cond }),
        2 => proptest::collection::vec(0..KEYS.len(), 1..4).prop_map(|keys| Op::Delete { keys }),
        2 => (0..KEYS.len(), 0..3000usize, proptest::option::of(1..2000usize))
            .prop_map(|(key, offset, length)| Op::Get { key, offset, length }),
        2 => (0..PREFIXES.len(), any::<bool>(), 1..5usize)
            .prop_map(|(prefix, delimiter, limit)| Op::List { prefix, delimiter, limit }),
        1 => (0..KEYS.len(), 1..4usize, 1..1024usize, any::<u8>(), any::<bool>())
            .prop_map(|(key, parts, last, seed, complete)| Op::Multipart { key, parts, last, seed, complete }),
        1 => Just(Op::Reopen),
    ]
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

const PART: usize = 1024;

fn limits() -> R2Limits {
    let mut l = R2Limits::cloudflare();
    l.min_part_bytes = PART as u64;
    l
}

async fn open(dir: &std::path::Path, clock: &ManualClock) -> Bucket {
    Bucket::builder()
        .clock(clock.shared())
        .limits(limits())
        .open_bucket(dir, "model")
        .await
        .expect("open")
}

/// Model state: key -> (body, etag).
type Model = BTreeMap<String, (Vec<u8>, String)>;

async fn check_list(bucket: &Bucket, model: &Model, prefix: &str, delimiter: bool, limit: usize) {
    let mut objects = Vec::new();
    let mut prefixes = Vec::new();
    let mut cursor = None;
    for _ in 0..100 {
        let page = bucket
            .list(ListOptions {
                prefix: Some(prefix.to_owned()),
                delimiter: delimiter.then(|| "/".to_owned()),
                limit: Some(limit),
                cursor: cursor.take(),
                ..Default::default()
            })
            .await
            .expect("list");
        assert!(page.objects.len() + page.delimited_prefixes.len() <= limit);
        objects.extend(page.objects.into_iter().map(|o| (o.key, o.etag)));
        prefixes.extend(page.delimited_prefixes);
        if !page.truncated {
            break;
        }
        cursor = page.cursor;
    }
    let mut want_objects = Vec::new();
    let mut want_prefixes = BTreeSet::new();
    for (k, (_, etag)) in model.range(prefix.to_owned()..) {
        if !k.starts_with(prefix) {
            break;
        }
        let rest = &k[prefix.len()..];
        match rest.find('/').filter(|_| delimiter) {
            Some(i) => {
                want_prefixes.insert(format!("{prefix}{}", &rest[..=i]));
            }
            None => want_objects.push((k.clone(), etag.clone())),
        }
    }
    assert_eq!(
        objects, want_objects,
        "list objects, prefix {prefix:?}, delimiter {delimiter}"
    );
    assert_eq!(
        prefixes,
        want_prefixes.into_iter().collect::<Vec<_>>(),
        "delimited prefixes, prefix {prefix:?}"
    );
}

async fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::at_2026();
    let mut bucket = open(dir.path(), &clock).await;
    let mut model: Model = BTreeMap::new();
    for op in ops {
        clock.advance_ms(1500);
        match op {
            Op::Put {
                key,
                len,
                seed,
                cond,
            } => {
                let key = KEYS[key];
                let body = data(len, seed);
                let current = model.get(key).map(|(_, e)| e.clone());
                let (only_if, passes) = match cond {
                    Cond::None => (None, true),
                    Cond::IfAbsent => (Some(Conditional::if_absent()), current.is_none()),
                    Cond::IfCurrentEtag => match &current {
                        Some(e) => (Some(Conditional::if_etag(e)), true),
                        None => (Some(Conditional::if_etag("0123")), false),
                    },
                    Cond::IfStaleEtag => (Some(Conditional::if_etag("stale")), false),
                };
                let got = bucket
                    .put(
                        key,
                        R2Body::Bytes(Bytes::from(body.clone())),
                        PutOptions {
                            only_if,
                            ..Default::default()
                        },
                    )
                    .await
                    .expect("put");
                assert_eq!(got.is_some(), passes, "put {key} condition outcome");
                if let Some(o) = got {
                    model.insert(key.to_owned(), (body, o.etag));
                }
            }
            Op::Delete { keys } => {
                let keys: Vec<String> = keys.iter().map(|&k| KEYS[k].to_owned()).collect();
                bucket.delete(&keys).await.expect("delete");
                for k in &keys {
                    model.remove(k);
                }
            }
            Op::Get {
                key,
                offset,
                length,
            } => {
                let key = KEYS[key];
                let got = bucket
                    .get(
                        key,
                        GetOptions {
                            range: Some(R2Range::Bounded {
                                offset: offset as u64,
                                length: length.map(|l| l as u64),
                            }),
                            ..Default::default()
                        },
                    )
                    .await;
                match model.get(key) {
                    None => assert!(matches!(got, Ok(None)), "get {key}: expected absent"),
                    Some((body, etag)) if offset <= body.len() => {
                        let r = got
                            .expect("get")
                            .and_then(R2GetResult::into_body)
                            .expect("body");
                        assert_eq!(&r.object.etag, etag);
                        let end = length.map_or(body.len(), |l| (offset + l).min(body.len()));
                        let bytes = r.bytes().await.expect("read");
                        assert_eq!(&bytes[..], &body[offset..end], "get {key} range");
                    }
                    Some(_) => {
                        let e = got.expect_err("range past the end");
                        assert_eq!(e.v4_code(), 10039);
                    }
                }
            }
            Op::List {
                prefix,
                delimiter,
                limit,
            } => {
                check_list(&bucket, &model, PREFIXES[prefix], delimiter, limit).await;
            }
            Op::Multipart {
                key,
                parts,
                last,
                seed,
                complete,
            } => {
                let key = KEYS[key];
                let up = bucket
                    .create_multipart_upload(key, MultipartOptions::default())
                    .await
                    .expect("create");
                let mut uploaded = Vec::new();
                let mut body = Vec::new();
                for i in 0..parts {
                    let len = if i + 1 == parts { last } else { PART };
                    let p = data(len, seed.wrapping_add(i as u8));
                    body.extend_from_slice(&p);
                    uploaded.push(
                        bucket
                            .upload_part(&up, i as u32 + 1, R2Body::from(p))
                            .await
                            .expect("part"),
                    );
                }
                if complete {
                    let o = bucket
                        .complete_multipart_upload(&up, &uploaded)
                        .await
                        .expect("complete");
                    assert!(o.etag.ends_with(&format!("-{parts}")));
                    model.insert(key.to_owned(), (body, o.etag));
                } else {
                    bucket.abort_multipart_upload(&up).await.expect("abort");
                }
            }
            Op::Reopen => {
                drop(bucket);
                bucket = open(dir.path(), &clock).await;
                assert_eq!(bucket.reclaimed_at_open(), 0, "a clean close left orphans");
            }
        }
        // Every key agrees with the model after every step.
        for key in KEYS {
            let head = bucket.head(key).await.expect("head");
            assert_eq!(
                head.map(|o| (o.etag, o.size)),
                model.get(key).map(|(b, e)| (e.clone(), b.len() as u64)),
                "head {key}"
            );
        }
    }
    check_list(&bucket, &model, "", false, 1000).await;
    for (key, (body, _)) in &model {
        let got = bucket
            .get(key, GetOptions::default())
            .await
            .expect("get")
            .and_then(R2GetResult::into_body)
            .expect("body")
            .bytes()
            .await
            .expect("read");
        assert_eq!(&got[..], &body[..], "final body of {key}");
    }
    // Nothing but live blobs on disk: one per single-part object, one per part otherwise.
    let expected: usize = model
        .values()
        .map(|(_, etag)| {
            etag.split_once('-')
                .and_then(|(_, n)| n.parse().ok())
                .unwrap_or(1)
        })
        .sum();
    assert_eq!(
        bucket.blob_count().await.expect("count"),
        expected,
        "blob files"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn bucket_matches_a_map_model(ops in proptest::collection::vec(op(), 1..30)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(run(ops));
    }
}
