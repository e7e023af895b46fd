//! Workers KV conformance: one function per documented behaviour (spec §1).

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bindery_core::kv::{
    GetOptions, KvError, KvLimits, KvStore, KvStoreExt, ListOptions, PutOptions,
};
use bindery_core::{Clock, ManualClock, PlatformError};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;

use crate::{TestResult, ensure, ensure_eq};

/// Opens the namespace under test at another location.
type Locate = Box<dyn Fn(&str) -> Arc<dyn KvStore> + Send + Sync>;

/// A namespace under test.
pub struct KvSubject {
    /// The namespace at its default location.
    pub store: Arc<dyn KvStore>,
    /// The clock the namespace reads; cases advance it.
    pub clock: ManualClock,
    locate: Locate,
    _guard: Box<dyn Any + Send + Sync>,
}

impl KvSubject {
    /// Wraps a store. `locate` returns the same namespace seen from another location;
    /// `guard` is kept alive as long as the subject (a temp dir, say).
    pub fn new(
        store: Arc<dyn KvStore>,
        clock: ManualClock,
        locate: impl Fn(&str) -> Arc<dyn KvStore> + Send + Sync + 'static,
        guard: impl Any + Send + Sync,
    ) -> Self {
        Self {
            store,
            clock,
            locate: Box::new(locate),
            _guard: Box::new(guard),
        }
    }

    /// The namespace seen from `location`.
    pub fn at(&self, location: &str) -> Arc<dyn KvStore> {
        (self.locate)(location)
    }
}

/// Opens fresh, empty namespaces for cases.
pub trait KvFactory: Send + Sync {
    /// A fresh namespace enforcing `limits`, on a manual clock.
    fn open(&self, limits: KvLimits) -> Pin<Box<dyn Future<Output = KvSubject> + Send + '_>>;
}

impl<F, Fut> KvFactory for F
where
    F: Fn(KvLimits) -> Fut + Send + Sync,
    Fut: Future<Output = KvSubject> + Send + 'static,
{
    fn open(&self, limits: KvLimits) -> Pin<Box<dyn Future<Output = KvSubject> + Send + '_>> {
        Box::pin(self(limits))
    }
}

/// Runs every KV case against `$factory` (an `Fn(KvLimits) -> impl Future<Output = KvSubject>`).
#[macro_export]
macro_rules! kv_conformance {
    ($factory:expr) => {
        $crate::__expand_cases!(
            $factory,
            kv,
            [
                get_returns_none_for_an_absent_key,
                put_then_get_returns_the_value,
                empty_value_round_trips,
                later_write_to_a_key_wins,
                get_with_metadata_returns_value_metadata_and_expiration,
                get_with_metadata_reports_no_metadata_when_none_was_stored,
                get_stream_yields_the_whole_value,
                get_text_and_get_json_decode_the_value,
                get_json_of_a_value_that_is_not_json_is_an_error,
                delete_removes_the_key_and_deleting_an_absent_key_succeeds,
                unicode_and_punctuated_keys_round_trip,
                empty_key_is_rejected,
                dot_and_dot_dot_keys_are_rejected,
                key_of_512_bytes_is_accepted_and_513_is_rejected_with_414,
                value_over_25_mib_is_rejected_with_413,
                streamed_value_over_the_limit_is_rejected_without_reading_the_rest,
                metadata_over_1024_bytes_is_rejected_with_413,
                expiration_ttl_under_60_seconds_is_rejected,
                expiration_in_the_past_or_under_60_seconds_ahead_is_rejected,
                key_vanishes_the_instant_the_clock_reaches_its_expiration,
                expiration_sets_an_absolute_expiry,
                list_returns_keys_in_utf8_byte_order,
                list_filters_by_prefix,
                list_paginates_with_cursor_and_list_complete,
                list_cursor_stays_valid_under_concurrent_writes,
                list_reports_expiration_and_metadata,
                list_omits_expired_keys,
                list_limit_outside_1_to_1000_is_rejected,
                garbage_cursor_is_rejected,
                cursor_used_with_another_prefix_is_rejected,
                bulk_get_returns_every_key_in_order_with_none_for_missing,
                bulk_get_of_more_than_100_keys_is_rejected,
                bulk_get_over_25_mib_is_rejected_with_413,
                second_write_to_a_key_within_one_second_is_rate_limited_with_429,
                write_rate_limit_is_absent_when_limits_are_relaxed,
                cache_ttl_under_30_seconds_is_rejected,
                write_is_visible_at_once_in_the_writing_location,
                other_location_serves_its_cached_value_until_cache_ttl_passes,
                negative_lookups_are_cached_at_other_locations,
                shorter_cache_ttl_shortens_a_cached_entry_life,
                expiration_wins_over_a_longer_cache_ttl,
                concurrent_puts_to_distinct_keys_all_succeed,
            ]
        );
    };
}

type Err = Box<dyn std::error::Error + Send + Sync>;

async fn open(f: &dyn KvFactory) -> KvSubject {
    f.open(KvLimits::cloudflare()).await
}

fn opts_ttl(ttl: u64) -> PutOptions {
    PutOptions {
        expiration_ttl: Some(ttl),
        ..Default::default()
    }
}

fn expect_err<T: std::fmt::Debug>(r: Result<T, KvError>, what: &str) -> Result<KvError, Err> {
    match r {
        Ok(v) => Err(format!("{what}: expected an error, got Ok({v:?})").into()),
        Err(e) => Ok(e),
    }
}

async fn put(s: &KvSubject, key: &str, value: &str) -> TestResult {
    s.store
        .put(
            key,
            Bytes::copy_from_slice(value.as_bytes()),
            PutOptions::default(),
        )
        .await?;
    Ok(())
}

/// `get` of a key never written is `None`, not an error.
pub async fn get_returns_none_for_an_absent_key(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    ensure_eq!(s.store.get("missing", GetOptions::default()).await?, None);
    Ok(())
}

/// A put value reads back byte for byte.
pub async fn put_then_get_returns_the_value(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    let value = Bytes::from((0..=255u8).cycle().take(10_000).collect::<Vec<_>>());
    s.store
        .put("k", value.clone(), PutOptions::default())
        .await?;
    ensure_eq!(s.store.get("k", GetOptions::default()).await?, Some(value));
    Ok(())
}

/// A zero-length value is a value, not an absence.
pub async fn empty_value_round_trips(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    s.store
        .put("empty", Bytes::new(), PutOptions::default())
        .await?;
    ensure_eq!(
        s.store.get("empty", GetOptions::default()).await?,
        Some(Bytes::new())
    );
    Ok(())
}

/// Last write wins.
pub async fn later_write_to_a_key_wins(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    put(&s, "k", "one").await?;
    s.clock.advance_secs(1);
    put(&s, "k", "two").await?;
    ensure_eq!(s.store.get_text("k").await?.as_deref(), Some("two"));
    Ok(())
}

/// Metadata comes back JSON-decoded, with the absolute expiration.
pub async fn get_with_metadata_returns_value_metadata_and_expiration(
    f: &dyn KvFactory,
) -> TestResult {
    let s = open(f).await;
    let meta = json!({"lang": "en", "n": 1, "nested": {"ok": true}});
    s.store
        .put(
            "k",
            Bytes::from_static(b"v"),
            PutOptions {
                expiration_ttl: Some(3600),
                metadata: Some(meta.clone()),
                ..Default::default()
            },
        )
        .await?;
    let e = s
        .store
        .get_with_metadata("k", GetOptions::default())
        .await?
        .ok_or("entry missing")?;
    ensure_eq!(e.value, Bytes::from_static(b"v"));
    ensure_eq!(e.metadata, Some(meta));
    ensure_eq!(e.expiration, Some(s.clock.now_secs() + 3600));
    Ok(())
}

/// Without metadata, `metadata` is `None`.
pub async fn get_with_metadata_reports_no_metadata_when_none_was_stored(
    f: &dyn KvFactory,
) -> TestResult {
    let s = open(f).await;
    put(&s, "k", "v").await?;
    let e = s
        .store
        .get_with_metadata("k", GetOptions::default())
        .await?
        .ok_or("entry missing")?;
    ensure_eq!(e.metadata, None);
    ensure_eq!(e.expiration, None);
    ensure_eq!(
        s.store
            .get_with_metadata("nope", GetOptions::default())
            .await?,
        None
    );
    Ok(())
}

/// A large value streams back whole, in more than one chunk.
pub async fn get_stream_yields_the_whole_value(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    let value = Bytes::from(
        (0..3_000_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>(),
    );
    s.store
        .put("big", value.clone(), PutOptions::default())
        .await?;
    let entry = s
        .store
        .get_stream("big", GetOptions::default())
        .await?
        .ok_or("stream missing")?;
    ensure_eq!(entry.len, value.len() as u64);
    let mut body = entry.body;
    let mut got = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = body.next().await {
        got.extend_from_slice(&chunk?);
        chunks += 1;
    }
    ensure!(chunks > 1, "a 3 MB value came back in {chunks} chunk(s)");
    ensure!(got == value, "streamed bytes differ from the stored value");
    ensure!(
        s.store
            .get_stream("nope", GetOptions::default())
            .await?
            .is_none(),
        "absent key streamed"
    );
    Ok(())
}

/// Text and JSON conveniences decode the stored bytes.
pub async fn get_text_and_get_json_decode_the_value(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    s.store.put_json("j", &json!({"a": [1, 2, 3]})).await?;
    ensure_eq!(
        s.store.get_json::<serde_json::Value>("j").await?,
        Some(json!({"a": [1, 2, 3]}))
    );
    ensure_eq!(
        s.store.get_text("j").await?.as_deref(),
        Some(r#"{"a":[1,2,3]}"#)
    );
    Ok(())
}

/// Reading a non-JSON value as JSON is an error naming the key.
pub async fn get_json_of_a_value_that_is_not_json_is_an_error(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    put(&s, "t", "not json").await?;
    let e = expect_err(s.store.get_json::<serde_json::Value>("t").await, "get_json")?;
    ensure!(
        matches!(e, KvError::InvalidJson { ref key, .. } if key == "t"),
        "got {e:?}"
    );
    Ok(())
}

/// Delete removes; deleting an absent key succeeds.
pub async fn delete_removes_the_key_and_deleting_an_absent_key_succeeds(
    f: &dyn KvFactory,
) -> TestResult {
    let s = open(f).await;
    put(&s, "k", "v").await?;
    s.store.delete("k").await?;
    ensure_eq!(s.store.get("k", GetOptions::default()).await?, None);
    s.store.delete("never-written").await?;
    ensure!(
        s.store.list(ListOptions::default()).await?.keys.is_empty(),
        "list not empty"
    );
    Ok(())
}

/// Any non-empty UTF-8 key other than `.`/`..` is valid and distinct.
pub async fn unicode_and_punctuated_keys_round_trip(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    let keys = [
        "dir/a key?&=",
        "a+b c%d#e",
        "../x",
        "./",
        "\u{e9}t\u{e9}",
        "\u{1F600}",
        " ",
    ];
    for k in keys {
        put(&s, k, k).await?;
    }
    for k in keys {
        ensure_eq!(s.store.get_text(k).await?.as_deref(), Some(k));
    }
    ensure_eq!(
        s.store.list(ListOptions::default()).await?.keys.len(),
        keys.len()
    );
    Ok(())
}

/// The empty key is rejected for every operation.
pub async fn empty_key_is_rejected(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    let e = expect_err(
        s.store.put("", Bytes::new(), PutOptions::default()).await,
        "put",
    )?;
    ensure!(matches!(e, KvError::EmptyKey), "got {e:?}");
    ensure_eq!(e.to_string(), "Key name cannot be empty.");
    ensure_eq!(e.http_status(), 400);
    let e = expect_err(s.store.get("", GetOptions::default()).await, "get")?;
    ensure!(matches!(e, KvError::EmptyKey), "got {e:?}");
    let e = expect_err(s.store.delete("").await, "delete")?;
    ensure!(matches!(e, KvError::EmptyKey), "got {e:?}");
    Ok(())
}

/// `.` and `..` are not key names.
pub async fn dot_and_dot_dot_keys_are_rejected(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    for k in [".", ".."] {
        let e = expect_err(s.store.put(k, Bytes::new(), PutOptions::default()).await, k)?;
        ensure!(matches!(e, KvError::ReservedKey { .. }), "got {e:?}");
        ensure_eq!(
            e.to_string(),
            format!("\"{k}\" is not allowed as a key name.")
        );
        let e = expect_err(s.store.get(k, GetOptions::default()).await, k)?;
        ensure!(matches!(e, KvError::ReservedKey { .. }), "got {e:?}");
    }
    Ok(())
}

/// The key limit is 512 UTF-8 bytes; longer keys get a 414.
pub async fn key_of_512_bytes_is_accepted_and_513_is_rejected_with_414(
    f: &dyn KvFactory,
) -> TestResult {
    let s = open(f).await;
    let ok = "k".repeat(512);
    put(&s, &ok, "v").await?;
    ensure_eq!(s.store.get_text(&ok).await?.as_deref(), Some("v"));
    // 511 ASCII bytes plus a two-byte character: 513 bytes, 512 characters.
    let long = format!("{}\u{e9}", "k".repeat(511));
    let e = expect_err(
        s.store
            .put(&long, Bytes::new(), PutOptions::default())
            .await,
        "put",
    )?;
    ensure!(
        matches!(
            e,
            KvError::KeyTooLong {
                len: 513,
                limit: 512
            }
        ),
        "got {e:?}"
    );
    ensure_eq!(e.http_status(), 414);
    ensure_eq!(
        e.to_string(),
        "UTF-8 encoded length of 513 exceeds key length limit of 512."
    );
    let e = expect_err(s.store.get(&long, GetOptions::default()).await, "get")?;
    ensure_eq!(e.http_status(), 414);
    Ok(())
}

/// Values over 25 MiB are refused with 413 and nothing is stored.
pub async fn value_over_25_mib_is_rejected_with_413(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    let limit = 25 * 1024 * 1024;
    let e = expect_err(
        s.store
            .put(
                "big",
                Bytes::from(vec![0u8; limit + 1]),
                PutOptions::default(),
            )
            .await,
        "put",
    )?;
    ensure!(
        matches!(e, KvError::ValueTooLarge { len, limit: l } if len == limit + 1 && l == limit),
        "got {e:?}"
    );
    ensure_eq!(e.http_status(), 413);
    ensure_eq!(s.store.get("big", GetOptions::default()).await?, None);
    s.store
        .put("max", Bytes::from(vec![1u8; limit]), PutOptions::default())
        .await?;
    ensure_eq!(
        s.store
            .get("max", GetOptions::default())
            .await?
            .map(|b| b.len()),
        Some(limit)
    );
    Ok(())
}

/// A streamed body is cut off as soon as it passes the limit.
pub async fn streamed_value_over_the_limit_is_rejected_without_reading_the_rest(
    f: &dyn KvFactory,
) -> TestResult {
    let s = open(f).await;
    let pulled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&pulled);
    // An endless body of 1 MiB chunks.
    let body = futures_util::stream::repeat_with(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(Bytes::from(vec![7u8; 1 << 20]))
    });
    let e = expect_err(
        s.store
            .put_stream("endless", Box::pin(body), PutOptions::default())
            .await,
        "put_stream",
    )?;
    ensure!(matches!(e, KvError::ValueTooLarge { .. }), "got {e:?}");
    let n = pulled.load(std::sync::atomic::Ordering::SeqCst);
    ensure!(n <= 26, "read {n} chunks of 1 MiB from an endless body");
    ensure_eq!(s.store.get("endless", GetOptions::default()).await?, None);
    Ok(())
}

/// Metadata over 1024 serialized bytes is refused with 413.
pub async fn metadata_over_1024_bytes_is_rejected_with_413(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    // `"` + 1022 chars + `"` = 1024 bytes: accepted.
    let ok = json!("x".repeat(1022));
    s.store
        .put(
            "ok",
            Bytes::new(),
            PutOptions {
                metadata: Some(ok),
                ..Default::default()
            },
        )
        .await?;
    let big = json!("x".repeat(1023));
    let e = expect_err(
        s.store
            .put(
                "big",
                Bytes::new(),
                PutOptions {
                    metadata: Some(big),
                    ..Default::default()
                },
            )
            .await,
        "put",
    )?;
    ensure!(
        matches!(
            e,
            KvError::MetadataTooLarge {
                len: 1025,
                limit: 1024
            }
        ),
        "got {e:?}"
    );
    ensure_eq!(e.http_status(), 413);
    ensure_eq!(s.store.get("big", GetOptions::default()).await?, None);
    Ok(())
}

/// `expiration_ttl` must be at least 60.
pub async fn expiration_ttl_under_60_seconds_is_rejected(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    let e = expect_err(s.store.put("k", Bytes::new(), opts_ttl(59)).await, "ttl 59")?;
    ensure!(
        matches!(e, KvError::InvalidExpirationTtl { ttl: 59, min: 60 }),
        "got {e:?}"
    );
    ensure_eq!(
        e.to_string(),
        "Invalid expiration_ttl of 59. Expiration TTL must be at least 60."
    );
    ensure_eq!(e.http_status(), 400);
    let e = expect_err(s.store.put("k", Bytes::new(), opts_ttl(0)).await, "ttl 0")?;
    ensure_eq!(
        e.to_string(),
        "Invalid expiration_ttl of 0. Please specify integer greater than 0."
    );
    s.store.put("k", Bytes::new(), opts_ttl(60)).await?;
    Ok(())
}

/// `expiration` must be at least 60 s in the future.
pub async fn expiration_in_the_past_or_under_60_seconds_ahead_is_rejected(
    f: &dyn KvFactory,
) -> TestResult {
    let s = open(f).await;
    let now = s.clock.now_secs();
    let at = |e: u64| PutOptions {
        expiration: Some(e),
        ..Default::default()
    };
    let e = expect_err(s.store.put("k", Bytes::new(), at(now)).await, "now")?;
    ensure!(matches!(e, KvError::ExpirationInPast { .. }), "got {e:?}");
    let e = expect_err(s.store.put("k", Bytes::new(), at(now - 100)).await, "past")?;
    ensure!(matches!(e, KvError::ExpirationInPast { .. }), "got {e:?}");
    let e = expect_err(s.store.put("k", Bytes::new(), at(now + 59)).await, "59 s")?;
    ensure!(
        matches!(e, KvError::ExpirationTooSoon { min: 60, .. }),
        "got {e:?}"
    );
    ensure_eq!(e.http_status(), 400);
    s.store.put("k", Bytes::new(), at(now + 60)).await?;
    Ok(())
}

/// A key is present one second before its expiration and absent at it.
pub async fn key_vanishes_the_instant_the_clock_reaches_its_expiration(
    f: &dyn KvFactory,
) -> TestResult {
    let s = open(f).await;
    s.store
        .put("k", Bytes::from_static(b"v"), opts_ttl(120))
        .await?;
    s.clock.advance_ms(119_999);
    ensure_eq!(
        s.store.get("k", GetOptions::default()).await?,
        Some(Bytes::from_static(b"v"))
    );
    s.clock.advance_ms(1);
    ensure_eq!(s.store.get("k", GetOptions::default()).await?, None);
    ensure_eq!(
        s.store
            .get_with_metadata("k", GetOptions::default())
            .await?,
        None
    );
    Ok(())
}

/// `expiration` is stored as given.
pub async fn expiration_sets_an_absolute_expiry(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    let exp = s.clock.now_secs() + 1000;
    s.store
        .put(
            "k",
            Bytes::new(),
            PutOptions {
                expiration: Some(exp),
                ..Default::default()
            },
        )
        .await?;
    let e = s
        .store
        .get_with_metadata("k", GetOptions::default())
        .await?
        .ok_or("missing")?;
    ensure_eq!(e.expiration, Some(exp));
    s.clock.advance_secs(1000);
    ensure_eq!(s.store.get("k", GetOptions::default()).await?, None);
    Ok(())
}

/// Keys list in the order of their UTF-8 bytes.
pub async fn list_returns_keys_in_utf8_byte_order(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    let keys = [
        "b",
        "a",
        "Z",
        "\u{e9}",
        "\u{1F600}",
        "a/b",
        "a0",
        "\u{7f}",
        "\u{ff}",
    ];
    for k in keys {
        put(&s, k, "").await?;
    }
    let mut expected: Vec<&str> = keys.to_vec();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let got: Vec<String> = s
        .store
        .list(ListOptions::default())
        .await?
        .keys
        .into_iter()
        .map(|k| k.name)
        .collect();
    ensure_eq!(got, expected);
    Ok(())
}

/// `prefix` restricts the listing.
pub async fn list_filters_by_prefix(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    for k in ["user:1", "user:2", "users", "user", "team:1", "usel"] {
        put(&s, k, "").await?;
    }
    let r = s
        .store
        .list(ListOptions {
            prefix: Some("user:".into()),
            ..Default::default()
        })
        .await?;
    let got: Vec<String> = r.keys.into_iter().map(|k| k.name).collect();
    ensure_eq!(got, vec!["user:1".to_owned(), "user:2".to_owned()]);
    ensure!(r.list_complete, "a short listing is complete");
    ensure_eq!(r.cursor, None);
    Ok(())
}

/// Pages of `limit` keys chained by cursors cover every key once.
pub async fn list_paginates_with_cursor_and_list_complete(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    let n = 2_500;
    let writes = (0..n).map(|i| {
        let store = Arc::clone(&s.store);
        async move {
            store
                .put(&format!("key{i:05}"), Bytes::new(), PutOptions::default())
                .await
        }
    });
    for r in futures_util::future::join_all(writes).await {
        r?;
    }
    let mut cursor = None;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let r = s
            .store
            .list(ListOptions {
                limit: Some(1000),
                cursor: cursor.take(),
                ..Default::default()
            })
            .await?;
        pages += 1;
        ensure!(r.keys.len() <= 1000, "page of {}", r.keys.len());
        seen.extend(r.keys.into_iter().map(|k| k.name));
        if r.list_complete {
            ensure_eq!(r.cursor, None);
            break;
        }
        cursor = Some(r.cursor.ok_or("incomplete page without cursor")?);
        ensure!(pages < 10, "pagination does not end");
    }
    ensure_eq!(pages, 3);
    let expected: Vec<String> = (0..n).map(|i| format!("key{i:05}")).collect();
    ensure_eq!(seen, expected);
    Ok(())
}

/// Writes between pages neither repeat nor skip keys that existed throughout.
pub async fn list_cursor_stays_valid_under_concurrent_writes(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    for i in 0..100 {
        put(&s, &format!("k{i:03}"), "").await?;
    }
    let first = s
        .store
        .list(ListOptions {
            limit: Some(40),
            ..Default::default()
        })
        .await?;
    let cursor = first.cursor.clone().ok_or("no cursor")?;
    // Between pages: add keys on both sides of the cursor, delete some unseen ones.
    put(&s, "k000a", "").await?;
    put(&s, "k050a", "").await?;
    s.store.delete("k060").await?;
    let mut names: Vec<String> = first.keys.into_iter().map(|k| k.name).collect();
    let mut cursor = Some(cursor);
    while let Some(c) = cursor {
        let r = s
            .store
            .list(ListOptions {
                cursor: Some(c),
                limit: Some(40),
                ..Default::default()
            })
            .await?;
        names.extend(r.keys.into_iter().map(|k| k.name));
        cursor = r.cursor;
    }
    for i in (0..100).filter(|i| *i != 60) {
        let k = format!("k{i:03}");
        ensure_eq!(names.iter().filter(|n| **n == k).count(), 1);
    }
    ensure!(
        names.contains(&"k050a".to_owned()),
        "a key added after the cursor was not listed"
    );
    ensure!(
        !names.contains(&"k060".to_owned()),
        "a deleted key was listed"
    );
    ensure!(
        names.windows(2).all(|w| w[0] < w[1]),
        "pages are not in order"
    );
    Ok(())
}

/// Each listed key carries its expiration and metadata, only when set.
pub async fn list_reports_expiration_and_metadata(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    s.store
        .put(
            "a",
            Bytes::new(),
            PutOptions {
                expiration_ttl: Some(600),
                metadata: Some(json!({"m": 1})),
                ..Default::default()
            },
        )
        .await?;
    put(&s, "b", "").await?;
    let r = s.store.list(ListOptions::default()).await?;
    ensure_eq!(r.keys.len(), 2);
    ensure_eq!(r.keys[0].expiration, Some(s.clock.now_secs() + 600));
    ensure_eq!(r.keys[0].metadata, Some(json!({"m": 1})));
    ensure_eq!(r.keys[1].expiration, None);
    ensure_eq!(r.keys[1].metadata, None);
    Ok(())
}

/// Expired keys are not listed.
pub async fn list_omits_expired_keys(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    s.store.put("short", Bytes::new(), opts_ttl(60)).await?;
    put(&s, "long", "").await?;
    s.clock.advance_secs(60);
    let names: Vec<String> = s
        .store
        .list(ListOptions::default())
        .await?
        .keys
        .into_iter()
        .map(|k| k.name)
        .collect();
    ensure_eq!(names, vec!["long".to_owned()]);
    Ok(())
}

/// `limit` must be in 1..=1000.
pub async fn list_limit_outside_1_to_1000_is_rejected(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    for bad in [0, 1001] {
        let e = expect_err(
            s.store
                .list(ListOptions {
                    limit: Some(bad),
                    ..Default::default()
                })
                .await,
            "limit",
        )?;
        ensure!(
            matches!(e, KvError::InvalidListLimit { limit, max: 1000 } if limit == bad),
            "got {e:?}"
        );
        ensure_eq!(e.http_status(), 400);
    }
    s.store
        .list(ListOptions {
            limit: Some(1),
            ..Default::default()
        })
        .await?;
    s.store
        .list(ListOptions {
            limit: Some(1000),
            ..Default::default()
        })
        .await?;
    Ok(())
}

/// A cursor that `list` did not issue is an error, not a restart from the top.
pub async fn garbage_cursor_is_rejected(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    put(&s, "a", "").await?;
    put(&s, "b", "").await?;
    let good = s
        .store
        .list(ListOptions {
            limit: Some(1),
            ..Default::default()
        })
        .await?
        .cursor
        .ok_or("no cursor")?;
    let mut forged = good.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    for bad in [
        "garbage",
        "!!!",
        "AAAAAAAAAAAAAAAAAAAAAAAA",
        &String::from_utf8(forged)?,
    ] {
        let e = expect_err(
            s.store
                .list(ListOptions {
                    cursor: Some(bad.to_owned()),
                    ..Default::default()
                })
                .await,
            bad,
        )?;
        ensure!(
            matches!(e, KvError::InvalidCursor { .. }),
            "cursor {bad:?} gave {e:?}"
        );
        ensure_eq!(e.http_status(), 400);
    }
    Ok(())
}

/// A cursor is bound to the prefix it was issued for.
pub async fn cursor_used_with_another_prefix_is_rejected(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    for k in ["p/1", "p/2", "q/1"] {
        put(&s, k, "").await?;
    }
    let c = s
        .store
        .list(ListOptions {
            prefix: Some("p/".into()),
            limit: Some(1),
            ..Default::default()
        })
        .await?
        .cursor
        .ok_or("no cursor")?;
    let e = expect_err(
        s.store
            .list(ListOptions {
                prefix: Some("q/".into()),
                cursor: Some(c.clone()),
                ..Default::default()
            })
            .await,
        "other prefix",
    )?;
    ensure!(matches!(e, KvError::InvalidCursor { .. }), "got {e:?}");
    let r = s
        .store
        .list(ListOptions {
            prefix: Some("p/".into()),
            cursor: Some(c),
            ..Default::default()
        })
        .await?;
    ensure_eq!(
        r.keys.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
        vec!["p/2"]
    );
    Ok(())
}

/// Bulk get answers every key, in request order, `None` for missing ones.
pub async fn bulk_get_returns_every_key_in_order_with_none_for_missing(
    f: &dyn KvFactory,
) -> TestResult {
    let s = open(f).await;
    s.store
        .put(
            "a",
            Bytes::from_static(b"1"),
            PutOptions {
                metadata: Some(json!(["m"])),
                ..Default::default()
            },
        )
        .await?;
    put(&s, "c", "3").await?;
    let keys: Vec<String> = ["c", "b", "a"].iter().map(|k| (*k).to_owned()).collect();
    let r = s.store.get_bulk(&keys, GetOptions::default()).await?;
    ensure_eq!(
        r.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        vec!["c", "b", "a"]
    );
    ensure_eq!(
        r[0].1.as_ref().map(|e| e.value.clone()),
        Some(Bytes::from_static(b"3"))
    );
    ensure!(r[1].1.is_none(), "missing key has a value");
    ensure_eq!(
        r[2].1.as_ref().and_then(|e| e.metadata.clone()),
        Some(json!(["m"]))
    );
    Ok(())
}

/// At most 100 keys per bulk get.
pub async fn bulk_get_of_more_than_100_keys_is_rejected(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    let keys: Vec<String> = (0..101).map(|i| format!("k{i}")).collect();
    let e = expect_err(
        s.store.get_bulk(&keys, GetOptions::default()).await,
        "101 keys",
    )?;
    ensure!(
        matches!(
            e,
            KvError::TooManyKeys {
                count: 101,
                limit: 100
            }
        ),
        "got {e:?}"
    );
    ensure_eq!(
        s.store
            .get_bulk(&keys[..100], GetOptions::default())
            .await?
            .len(),
        100
    );
    Ok(())
}

/// A bulk response over 25 MiB fails with 413.
pub async fn bulk_get_over_25_mib_is_rejected_with_413(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    let chunk = Bytes::from(vec![0u8; 9 * 1024 * 1024]);
    for k in ["a", "b", "c"] {
        s.store.put(k, chunk.clone(), PutOptions::default()).await?;
    }
    let keys: Vec<String> = ["a", "b", "c"].iter().map(|k| (*k).to_owned()).collect();
    let e = expect_err(
        s.store.get_bulk(&keys, GetOptions::default()).await,
        "27 MiB",
    )?;
    ensure!(matches!(e, KvError::BulkTooLarge { .. }), "got {e:?}");
    ensure_eq!(e.http_status(), 413);
    ensure_eq!(
        s.store
            .get_bulk(&keys[..2], GetOptions::default())
            .await?
            .len(),
        2
    );
    Ok(())
}

/// Cloudflare allows one write per second per key; the second gets a 429.
pub async fn second_write_to_a_key_within_one_second_is_rate_limited_with_429(
    f: &dyn KvFactory,
) -> TestResult {
    let s = open(f).await;
    put(&s, "hot", "1").await?;
    s.clock.advance_ms(999);
    let e = expect_err(
        s.store
            .put("hot", Bytes::from_static(b"2"), PutOptions::default())
            .await,
        "2nd write",
    )?;
    ensure!(matches!(e, KvError::RateLimited { .. }), "got {e:?}");
    ensure_eq!(e.http_status(), 429);
    ensure_eq!(s.store.get_text("hot").await?.as_deref(), Some("1"));
    put(&s, "other", "x").await?;
    s.clock.advance_ms(1);
    put(&s, "hot", "3").await?;
    ensure_eq!(s.store.get_text("hot").await?.as_deref(), Some("3"));
    Ok(())
}

/// With relaxed limits, a key may be rewritten at once.
pub async fn write_rate_limit_is_absent_when_limits_are_relaxed(f: &dyn KvFactory) -> TestResult {
    let s = f.open(KvLimits::unbounded()).await;
    for i in 0..10 {
        put(&s, "hot", &i.to_string()).await?;
    }
    ensure_eq!(s.store.get_text("hot").await?.as_deref(), Some("9"));
    Ok(())
}

/// `cache_ttl` under 30 s is refused.
pub async fn cache_ttl_under_30_seconds_is_rejected(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    let e = expect_err(
        s.store.get("k", GetOptions::cache_ttl(29)).await,
        "cache_ttl 29",
    )?;
    ensure!(
        matches!(e, KvError::InvalidCacheTtl { ttl: 29, min: 30 }),
        "got {e:?}"
    );
    ensure_eq!(e.http_status(), 400);
    ensure_eq!(s.store.get("k", GetOptions::cache_ttl(30)).await?, None);
    Ok(())
}

/// The writing location reads its own write at once, even over a cached old value.
pub async fn write_is_visible_at_once_in_the_writing_location(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    let here = s.at("lhr");
    ensure_eq!(here.get("k", GetOptions::default()).await?, None); // caches the miss
    here.put("k", Bytes::from_static(b"1"), PutOptions::default())
        .await?;
    ensure_eq!(
        here.get("k", GetOptions::default()).await?,
        Some(Bytes::from_static(b"1"))
    );
    s.clock.advance_secs(1);
    here.put("k", Bytes::from_static(b"2"), PutOptions::default())
        .await?;
    ensure_eq!(here.get_text("k").await?.as_deref(), Some("2"));
    here.delete("k").await?;
    ensure_eq!(here.get("k", GetOptions::default()).await?, None);
    Ok(())
}

/// Another location keeps serving what it cached until its `cache_ttl` passes.
pub async fn other_location_serves_its_cached_value_until_cache_ttl_passes(
    f: &dyn KvFactory,
) -> TestResult {
    let s = open(f).await;
    let (a, b) = (s.at("ams"), s.at("sin"));
    a.put("k", Bytes::from_static(b"old"), PutOptions::default())
        .await?;
    ensure_eq!(b.get_text("k").await?.as_deref(), Some("old")); // cached at sin, default 60 s
    s.clock.advance_secs(1);
    a.put("k", Bytes::from_static(b"new"), PutOptions::default())
        .await?;
    ensure_eq!(a.get_text("k").await?.as_deref(), Some("new"));
    s.clock.advance_secs(58); // 59 s after sin cached it
    ensure_eq!(b.get_text("k").await?.as_deref(), Some("old"));
    s.clock.advance_secs(1); // 60 s
    ensure_eq!(b.get_text("k").await?.as_deref(), Some("new"));
    Ok(())
}

/// Absent keys are cached too.
pub async fn negative_lookups_are_cached_at_other_locations(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    let (a, b) = (s.at("ams"), s.at("sin"));
    ensure_eq!(b.get("k", GetOptions::default()).await?, None);
    a.put("k", Bytes::from_static(b"v"), PutOptions::default())
        .await?;
    ensure_eq!(b.get("k", GetOptions::default()).await?, None);
    s.clock.advance_secs(60);
    ensure_eq!(
        b.get("k", GetOptions::default()).await?,
        Some(Bytes::from_static(b"v"))
    );
    Ok(())
}

/// Re-reading with a lower `cache_ttl` shortens how long the cached entry is served.
pub async fn shorter_cache_ttl_shortens_a_cached_entry_life(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    let (a, b) = (s.at("ams"), s.at("sin"));
    a.put("k", Bytes::from_static(b"old"), PutOptions::default())
        .await?;
    ensure_eq!(
        b.get("k", GetOptions::cache_ttl(300)).await?,
        Some(Bytes::from_static(b"old"))
    );
    s.clock.advance_secs(1);
    a.put("k", Bytes::from_static(b"new"), PutOptions::default())
        .await?;
    s.clock.advance_secs(40);
    ensure_eq!(
        b.get("k", GetOptions::cache_ttl(300)).await?,
        Some(Bytes::from_static(b"old"))
    );
    ensure_eq!(
        b.get("k", GetOptions::cache_ttl(30)).await?,
        Some(Bytes::from_static(b"new"))
    );
    Ok(())
}

/// A cached entry never outlives the key's expiration.
pub async fn expiration_wins_over_a_longer_cache_ttl(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    let (a, b) = (s.at("ams"), s.at("sin"));
    a.put("k", Bytes::from_static(b"v"), opts_ttl(60)).await?;
    ensure_eq!(
        b.get("k", GetOptions::cache_ttl(3600)).await?,
        Some(Bytes::from_static(b"v"))
    );
    s.clock.advance_secs(60);
    ensure_eq!(b.get("k", GetOptions::cache_ttl(3600)).await?, None);
    Ok(())
}

/// 64 concurrent writers all succeed and all writes are readable.
pub async fn concurrent_puts_to_distinct_keys_all_succeed(f: &dyn KvFactory) -> TestResult {
    let s = open(f).await;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = Arc::clone(&s.store);
            tokio::spawn(async move {
                store
                    .put(
                        &format!("c{i:02}"),
                        Bytes::from(vec![i as u8; 100]),
                        PutOptions::default(),
                    )
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    for i in 0..64u8 {
        ensure_eq!(
            s.store
                .get(&format!("c{i:02}"), GetOptions::default())
                .await?,
            Some(Bytes::from(vec![i; 100]))
        );
    }
    Ok(())
}
