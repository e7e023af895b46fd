//! R2 conformance: one function per documented behaviour (spec section 3).

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bindery_core::r2::{
    BucketInfo, Conditional, EtagMatcher, GetOptions, HttpMetadata, LifecycleRule, ListInclude,
    ListOptions, ListUploadsOptions, MultipartOptions, NotificationRule, PutOptions, R2Body,
    R2Bucket, R2BucketExt, R2Buckets, R2Error, R2Event, R2EventAction, R2EventSink, R2EventType,
    R2GetResult, R2Limits, R2MultipartUpload, R2Object, R2Range, R2UploadedPart, StorageClass,
};
use bindery_core::{ManualClock, PlatformError};
use bytes::Bytes;

use crate::{TestResult, ensure, ensure_eq};

/// A bucket under test, with the store that holds it.
pub struct R2Subject {
    /// A fresh, empty bucket.
    pub bucket: Arc<dyn R2Bucket>,
    /// The store the bucket belongs to.
    pub buckets: Arc<dyn R2Buckets>,
    /// The clock the store reads; cases advance it.
    pub clock: ManualClock,
    _guard: Box<dyn Any + Send + Sync>,
}

impl R2Subject {
    /// Wraps a bucket and its store; `guard` lives as long as the subject (a temp dir, say).
    pub fn new(
        bucket: Arc<dyn R2Bucket>,
        buckets: Arc<dyn R2Buckets>,
        clock: ManualClock,
        guard: impl Any + Send + Sync,
    ) -> Self {
        Self {
            bucket,
            buckets,
            clock,
            _guard: Box::new(guard),
        }
    }
}

/// Opens fresh subjects for cases.
pub trait R2Factory: Send + Sync {
    /// A fresh store with one empty bucket, enforcing `limits`, on a manual clock.
    fn open(&self, limits: R2Limits) -> Pin<Box<dyn Future<Output = R2Subject> + Send + '_>>;
}

impl<F, Fut> R2Factory for F
where
    F: Fn(R2Limits) -> Fut + Send + Sync,
    Fut: Future<Output = R2Subject> + Send + 'static,
{
    fn open(&self, limits: R2Limits) -> Pin<Box<dyn Future<Output = R2Subject> + Send + '_>> {
        Box::pin(self(limits))
    }
}

/// Runs every R2 case against `$factory` (an `Fn(R2Limits) -> impl Future<Output = R2Subject>`).
#[macro_export]
macro_rules! r2_conformance {
    ($factory:expr) => {
        $crate::__expand_cases!(
            $factory,
            r2,
            [
                head_and_get_return_none_for_an_absent_key,
                put_then_get_returns_the_body,
                put_reports_md5_etag_quoted_http_etag_size_version_and_upload_time,
                empty_body_round_trips,
                streamed_body_round_trips_in_bounded_chunks,
                later_put_wins_with_a_new_version,
                keys_are_names_not_paths,
                empty_key_is_rejected_with_invalid_object_name,
                key_of_1024_bytes_is_accepted_and_1025_is_rejected_with_10020,
                custom_metadata_over_8192_bytes_is_rejected_with_10012,
                http_and_custom_metadata_round_trip,
                storage_class_defaults_to_standard_and_infrequent_access_is_kept,
                every_checksum_algorithm_is_verified_and_reported,
                mismatched_checksum_is_rejected_with_bad_digest_and_nothing_is_stored,
                more_than_one_checksum_is_rejected,
                checksum_of_the_wrong_length_is_rejected_with_invalid_digest,
                body_over_the_put_limit_is_rejected_with_entity_too_large,
                range_with_offset_and_length_returns_that_slice_and_echoes_it,
                range_with_offset_only_reads_to_the_end,
                suffix_range_returns_the_last_bytes_and_reports_offset_and_length,
                range_past_the_end_is_clamped,
                unsatisfiable_range_is_rejected_with_416_and_10039,
                get_with_failed_condition_returns_metadata_without_body,
                get_with_passing_condition_returns_the_body,
                uploaded_before_and_after_compare_upload_times,
                seconds_granularity_ignores_milliseconds,
                put_if_absent_creates_once_then_returns_none,
                put_with_etag_matches_is_compare_and_swap,
                put_with_failed_condition_stores_nothing,
                racing_create_if_absent_puts_have_exactly_one_winner,
                racing_compare_and_swap_puts_have_exactly_one_winner,
                delete_removes_keys_and_absent_keys_are_not_an_error,
                delete_of_more_than_1000_keys_is_rejected,
                list_returns_objects_in_byte_order_with_metadata_only_when_included,
                list_filters_by_prefix,
                list_paginates_with_cursor_while_truncated,
                list_with_delimiter_rolls_keys_up_into_delimited_prefixes,
                list_with_delimiter_paginates_past_rolled_up_prefixes,
                list_with_delimiter_over_many_keys_returns_each_once,
                list_start_after_skips_up_to_and_including_that_key,
                list_limit_outside_1_to_1000_is_rejected_with_10022,
                garbage_list_cursor_is_rejected,
                multipart_upload_completes_with_the_md5_of_part_md5s_etag,
                multipart_object_reads_back_whole_and_ranges_cross_parts,
                multipart_object_takes_metadata_and_class_from_create,
                uploading_a_part_number_twice_keeps_the_last,
                complete_with_a_missing_part_or_wrong_etag_is_rejected_with_10025,
                non_final_part_under_5_mib_is_rejected_with_entity_too_small,
                non_final_parts_of_different_sizes_are_rejected_with_10048,
                last_part_larger_than_the_others_is_rejected_with_10048,
                part_number_outside_1_to_10000_is_rejected,
                abort_discards_the_upload_and_later_calls_fail_with_no_such_upload,
                completed_upload_no_longer_exists,
                resumed_unknown_upload_fails_on_use_with_no_such_upload,
                uploads_are_aborted_after_7_days_by_the_clock,
                list_multipart_uploads_and_list_parts_report_progress,
                lifecycle_rules_round_trip,
                lifecycle_rule_expires_objects_after_n_days,
                lifecycle_rule_transitions_objects_to_infrequent_access,
                events_for_puts_and_deletes_reach_the_sink_through_prefix_and_suffix_filters,
                multipart_completion_is_an_object_create_event,
                failing_sink_is_retried_until_it_accepts,
                buckets_are_created_listed_and_deleted,
                bucket_names_are_validated_with_10005,
                creating_an_existing_bucket_fails_with_10073,
                deleting_a_non_empty_bucket_fails_with_10008,
                unknown_bucket_is_no_such_bucket_with_10006,
                concurrent_puts_to_distinct_keys_all_succeed,
                copy_object_copies_body_and_metadata_and_missing_source_is_10007,
                reader_of_an_overwritten_object_reads_the_old_body_whole,
            ]
        );
    };
}

type Err = Box<dyn std::error::Error + Send + Sync>;

const MIB: usize = 1024 * 1024;

async fn open(f: &dyn R2Factory) -> R2Subject {
    f.open(R2Limits::cloudflare()).await
}

/// Limits with a small minimum part size, so multipart cases stay fast.
async fn open_small_parts(f: &dyn R2Factory) -> R2Subject {
    let mut limits = R2Limits::cloudflare();
    limits.min_part_bytes = 1024;
    f.open(limits).await
}

fn expect_err<T: std::fmt::Debug>(r: Result<T, R2Error>, what: &str) -> Result<R2Error, Err> {
    match r {
        Ok(v) => Err(format!("{what}: expected an error, got Ok({v:?})").into()),
        Err(e) => Ok(e),
    }
}

fn code(e: &R2Error) -> u32 {
    e.v4_code()
}

fn body(n: usize, seed: u32) -> Bytes {
    Bytes::from(
        (0..n as u32)
            .map(|i| (i.wrapping_mul(31).wrapping_add(seed) % 251) as u8)
            .collect::<Vec<_>>(),
    )
}

fn md5_hex(data: &[u8]) -> String {
    md5_digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A small, self-contained MD5 (RFC 1321) so the suite checks etags without trusting the
/// backend's hasher.
fn md5_digest(data: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32)
        .collect();
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    let (mut a0, mut b0, mut c0, mut d0) =
        (0x67452301u32, 0xefcdab89u32, 0x98badcfeu32, 0x10325476u32);
    for chunk in msg.chunks(64) {
        let m: Vec<u32> = chunk
            .chunks(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f2 = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f2.rotate_left(S[i]));
        }
        a0 = a0.wrapping_add(a);
        b0 = b0.wrapping_add(b);
        c0 = c0.wrapping_add(c);
        d0 = d0.wrapping_add(d);
    }
    let mut out = [0u8; 16];
    for (i, v) in [a0, b0, c0, d0].iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    out
}

async fn put(s: &R2Subject, key: &str, data: Bytes) -> Result<R2Object, Err> {
    Ok(s.bucket.put_bytes(key, data).await?)
}

async fn get_body(s: &R2Subject, key: &str, options: GetOptions) -> Result<(R2Object, Bytes), Err> {
    match s.bucket.get(key, options).await? {
        Some(R2GetResult::Body(b)) => {
            let object = b.object.clone();
            Ok((object, b.bytes().await?))
        }
        Some(R2GetResult::PreconditionFailed(_)) => Err("precondition failed unexpectedly".into()),
        None => Err(format!("{key} is absent").into()),
    }
}

fn range(offset: u64, length: Option<u64>) -> GetOptions {
    GetOptions {
        range: Some(R2Range::Bounded { offset, length }),
        ..Default::default()
    }
}

fn cond_put(c: Conditional) -> PutOptions {
    PutOptions {
        only_if: Some(c),
        ..Default::default()
    }
}

/// Waits (bounded, in real time) for a background task to make `check` true.
async fn eventually<F, Fut>(what: &str, mut check: F) -> TestResult
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, Err>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if check().await? {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `head` and `get` of a key never written are `None`, not errors.
pub async fn head_and_get_return_none_for_an_absent_key(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    ensure!(s.bucket.head("missing").await?.is_none(), "head found it");
    ensure!(
        s.bucket
            .get("missing", GetOptions::default())
            .await?
            .is_none(),
        "get found it"
    );
    Ok(())
}

/// A put body reads back byte for byte.
pub async fn put_then_get_returns_the_body(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    let data = body(100_000, 1);
    put(&s, "k", data.clone()).await?;
    ensure_eq!(s.bucket.get_bytes("k").await?, Some(data));
    Ok(())
}

/// The returned object carries the hex MD5 etag, the quoted httpEtag, size, a version and
/// the upload time from the clock; head reports the same.
pub async fn put_reports_md5_etag_quoted_http_etag_size_version_and_upload_time(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open(f).await;
    let data = Bytes::from_static(b"Hello, R2 world!");
    let o = put(&s, "docs/hello.txt", data.clone()).await?;
    ensure_eq!(o.key, "docs/hello.txt");
    ensure_eq!(o.etag, md5_hex(&data));
    ensure_eq!(o.http_etag, format!("\"{}\"", md5_hex(&data)));
    ensure_eq!(o.size, 16);
    ensure_eq!(o.uploaded, bindery_core::Clock::now_ms(&s.clock));
    ensure!(!o.version.is_empty(), "empty version");
    ensure_eq!(o.checksums.md5, Some(md5_digest(&data).to_vec()));
    ensure_eq!(o.range, None);
    let h = s
        .bucket
        .head("docs/hello.txt")
        .await?
        .ok_or("head missing")?;
    ensure_eq!(h, o);
    Ok(())
}

/// A zero-length body is an object, not an absence.
pub async fn empty_body_round_trips(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    let o = put(&s, "empty", Bytes::new()).await?;
    ensure_eq!(o.size, 0);
    ensure_eq!(o.etag, md5_hex(b""));
    ensure_eq!(s.bucket.get_bytes("empty").await?, Some(Bytes::new()));
    Ok(())
}

/// A streamed body of several MiB stores whole and streams back in more than one chunk.
pub async fn streamed_body_round_trips_in_bounded_chunks(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    let data = body(6 * MIB + 123, 7);
    let stream = bindery_core::stream::chunked(data.clone(), 64 * 1024);
    let o = s
        .bucket
        .put("big", R2Body::Stream(stream), PutOptions::default())
        .await?
        .ok_or("put returned None")?;
    ensure_eq!(o.size, data.len() as u64);
    ensure_eq!(o.etag, md5_hex(&data));
    let got = s
        .bucket
        .get("big", GetOptions::default())
        .await?
        .and_then(R2GetResult::into_body)
        .ok_or("get missing")?;
    let mut chunks = 0;
    let mut out = Vec::new();
    let mut stream = got.body;
    while let Some(c) = futures_util::StreamExt::next(&mut stream).await {
        let c = c?;
        ensure!(
            c.len() <= 8 * MIB,
            "chunk of {} bytes is not bounded",
            c.len()
        );
        out.extend_from_slice(&c);
        chunks += 1;
    }
    ensure!(chunks > 1, "the body came in one chunk");
    ensure!(out == data, "streamed body differs");
    Ok(())
}

/// A second put replaces the object and gets a new version.
pub async fn later_put_wins_with_a_new_version(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    let a = put(&s, "k", Bytes::from_static(b"one")).await?;
    s.clock.advance_secs(1);
    let b = put(&s, "k", Bytes::from_static(b"two")).await?;
    ensure!(a.version != b.version, "same version twice");
    ensure_eq!(
        s.bucket.get_bytes("k").await?,
        Some(Bytes::from_static(b"two"))
    );
    ensure_eq!(
        s.bucket.head("k").await?.ok_or("missing")?.version,
        b.version
    );
    Ok(())
}

/// `a`, `a/`, `a/b`, `../x` and `/` are distinct keys, not paths.
pub async fn keys_are_names_not_paths(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    let keys = [
        "a", "a/", "a/b", "../x", "/", "./a", "a//b", "..", "ключ", "a\\b",
    ];
    for (i, k) in keys.iter().enumerate() {
        put(&s, k, Bytes::from(format!("v{i}"))).await?;
    }
    for (i, k) in keys.iter().enumerate() {
        ensure_eq!(
            s.bucket.get_bytes(k).await?,
            Some(Bytes::from(format!("v{i}")))
        );
    }
    let listed: Vec<String> = s
        .bucket
        .list(ListOptions::default())
        .await?
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect();
    let mut sorted: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    sorted.sort();
    ensure_eq!(listed, sorted);
    Ok(())
}

/// The empty key is rejected with InvalidObjectName (10020, 400).
pub async fn empty_key_is_rejected_with_invalid_object_name(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    let e = expect_err(
        s.bucket.put_bytes("", Bytes::from_static(b"v")).await,
        "put",
    )?;
    ensure_eq!(code(&e), 10020);
    ensure_eq!(e.http_status(), 400);
    Ok(())
}

/// Keys are at most 1,024 bytes.
pub async fn key_of_1024_bytes_is_accepted_and_1025_is_rejected_with_10020(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open(f).await;
    let ok = "k".repeat(1024);
    put(&s, &ok, Bytes::from_static(b"v")).await?;
    ensure!(s.bucket.head(&ok).await?.is_some(), "1024-byte key missing");
    let long = "é".repeat(513);
    let e = expect_err(s.bucket.put_bytes(&long, Bytes::new()).await, "put")?;
    ensure_eq!(code(&e), 10020);
    ensure!(
        e.to_string().contains("1026") && e.to_string().contains("1024"),
        "message: {e}"
    );
    let e = expect_err(s.bucket.head(&long).await, "head")?;
    ensure_eq!(code(&e), 10020);
    Ok(())
}

/// Custom metadata is at most 8,192 bytes (keys plus values).
pub async fn custom_metadata_over_8192_bytes_is_rejected_with_10012(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open(f).await;
    let mut meta = BTreeMap::new();
    meta.insert("k".to_owned(), "v".repeat(8191));
    let opts = PutOptions {
        custom_metadata: meta.clone(),
        ..Default::default()
    };
    s.bucket.put("ok", R2Body::from("x"), opts).await?;
    meta.insert("k".to_owned(), "v".repeat(8192));
    let opts = PutOptions {
        custom_metadata: meta,
        ..Default::default()
    };
    let e = expect_err(s.bucket.put("big", R2Body::from("x"), opts).await, "put")?;
    ensure_eq!(code(&e), 10012);
    ensure_eq!(e.http_status(), 400);
    ensure!(
        s.bucket.head("big").await?.is_none(),
        "stored despite the error"
    );
    Ok(())
}

/// HTTP metadata (with cache expiry) and custom metadata come back on head, get and list.
pub async fn http_and_custom_metadata_round_trip(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    let http = HttpMetadata {
        content_type: Some("text/plain".into()),
        content_language: Some("en".into()),
        content_disposition: Some("inline".into()),
        content_encoding: Some("identity".into()),
        cache_control: Some("max-age=60".into()),
        cache_expiry: Some(2_139_722_880_000),
    };
    let custom: BTreeMap<String, String> = [
        ("owner".to_owned(), "alice".to_owned()),
        ("purpose".to_owned(), "test".to_owned()),
    ]
    .into();
    let opts = PutOptions {
        http_metadata: http.clone(),
        custom_metadata: custom.clone(),
        ..Default::default()
    };
    s.bucket.put("m", R2Body::from("x"), opts).await?;
    let h = s.bucket.head("m").await?.ok_or("missing")?;
    ensure_eq!(h.http_metadata, http.clone());
    ensure_eq!(h.custom_metadata, custom.clone());
    let (g, _) = get_body(&s, "m", GetOptions::default()).await?;
    ensure_eq!(g.http_metadata, http);
    ensure_eq!(g.custom_metadata, custom);
    Ok(())
}

/// Objects are Standard unless put as InfrequentAccess.
pub async fn storage_class_defaults_to_standard_and_infrequent_access_is_kept(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open(f).await;
    let a = put(&s, "a", Bytes::from_static(b"x")).await?;
    ensure_eq!(a.storage_class, StorageClass::Standard);
    let opts = PutOptions {
        storage_class: Some(StorageClass::InfrequentAccess),
        ..Default::default()
    };
    s.bucket.put("b", R2Body::from("x"), opts).await?;
    ensure_eq!(
        s.bucket.head("b").await?.ok_or("missing")?.storage_class,
        StorageClass::InfrequentAccess
    );
    Ok(())
}

/// md5, sha1, sha256, sha384 and sha512 are each verified and reported; MD5 is always
/// reported for single-part objects.
pub async fn every_checksum_algorithm_is_verified_and_reported(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    let data = Bytes::from_static(b"checksum me");
    // Digests of "checksum me", computed independently of any backend.
    let known = [
        "f11c72a98bf0b6e31f0b0af786a43ba7",
        "00337cfb20489c72b736b268fdba32c027bdd62b",
        "820eb62b7660a216f711bd0df37ac8a176b662a159959870edc200b857262daf",
        "445fa0589ef76020078d8bef714a8fb8165078700eea84be16625a614fed4bb7f1d5a38e0e94524f7c6f64ed58a4aa35",
        "31b8effa4df268c6bc579e4374b4336d45ef178178ac093c0081754aa0b8d84153b5c67bfb3a88546d9ec91ba7d29f676fbb9cd8a2f8ed2a9027470a89e41a55",
    ];
    type WithDigest = fn(Vec<u8>) -> PutOptions;
    let algs: [(&str, WithDigest); 5] = [
        ("md5", |d| PutOptions {
            md5: Some(d),
            ..Default::default()
        }),
        ("sha1", |d| PutOptions {
            sha1: Some(d),
            ..Default::default()
        }),
        ("sha256", |d| PutOptions {
            sha256: Some(d),
            ..Default::default()
        }),
        ("sha384", |d| PutOptions {
            sha384: Some(d),
            ..Default::default()
        }),
        ("sha512", |d| PutOptions {
            sha512: Some(d),
            ..Default::default()
        }),
    ];
    let lens = [16, 20, 32, 48, 64];
    for (((name, make), len), known) in algs.iter().zip(lens).zip(known) {
        // A wrong digest of the right length is rejected and names the actual one.
        let e = expect_err(
            s.bucket
                .put(name, R2Body::Bytes(data.clone()), make(vec![0u8; len]))
                .await,
            name,
        )?;
        let R2Error::BadDigest { actual, .. } = &e else {
            return Err(format!("{name}: expected BadDigest, got {e}").into());
        };
        ensure_eq!(actual.as_str(), known);
        let actual = hex_bytes(actual);
        ensure_eq!(actual.len(), len);
        let o = s
            .bucket
            .put(name, R2Body::Bytes(data.clone()), make(actual.clone()))
            .await?
            .ok_or("put returned None")?;
        let reported = match *name {
            "md5" => o.checksums.md5.clone(),
            "sha1" => o.checksums.sha1.clone(),
            "sha256" => o.checksums.sha256.clone(),
            "sha384" => o.checksums.sha384.clone(),
            _ => o.checksums.sha512.clone(),
        };
        ensure_eq!(reported, Some(actual));
        ensure_eq!(o.checksums.md5, Some(md5_digest(&data).to_vec()));
    }
    // The MD5 the backend computed is the real one.
    let o = s
        .bucket
        .put(
            "md5-known",
            R2Body::Bytes(data.clone()),
            PutOptions {
                md5: Some(md5_digest(&data).to_vec()),
                ..Default::default()
            },
        )
        .await?;
    ensure!(o.is_some(), "a correct MD5 was refused");
    Ok(())
}

fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok())
        .collect()
}

/// A checksum that does not match is BadDigest (10037, 400) naming the algorithm, and
/// nothing is stored (an earlier object stays).
pub async fn mismatched_checksum_is_rejected_with_bad_digest_and_nothing_is_stored(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open(f).await;
    put(&s, "k", Bytes::from_static(b"old")).await?;
    let opts = PutOptions {
        sha256: Some(vec![7u8; 32]),
        ..Default::default()
    };
    let e = expect_err(s.bucket.put("k", R2Body::from("new"), opts).await, "put")?;
    ensure_eq!(code(&e), 10037);
    ensure_eq!(e.http_status(), 400);
    ensure!(e.to_string().contains("SHA-256"), "message: {e}");
    ensure_eq!(
        s.bucket.get_bytes("k").await?,
        Some(Bytes::from_static(b"old"))
    );
    Ok(())
}

/// Only one checksum may be given.
pub async fn more_than_one_checksum_is_rejected(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    let opts = PutOptions {
        md5: Some(md5_digest(b"x").to_vec()),
        sha1: Some(vec![0; 20]),
        ..Default::default()
    };
    let e = expect_err(s.bucket.put("k", R2Body::from("x"), opts).await, "put")?;
    ensure!(matches!(e, R2Error::MultipleChecksums), "got {e}");
    ensure!(s.bucket.head("k").await?.is_none(), "stored");
    Ok(())
}

/// A digest of the wrong length is InvalidDigest (10014).
pub async fn checksum_of_the_wrong_length_is_rejected_with_invalid_digest(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open(f).await;
    let opts = PutOptions {
        sha256: Some(vec![0; 31]),
        ..Default::default()
    };
    let e = expect_err(s.bucket.put("k", R2Body::from("x"), opts).await, "put")?;
    ensure_eq!(code(&e), 10014);
    Ok(())
}

/// A body over the single-put limit is EntityTooLarge (100100), also when streamed.
pub async fn body_over_the_put_limit_is_rejected_with_entity_too_large(
    f: &dyn R2Factory,
) -> TestResult {
    let mut limits = R2Limits::cloudflare();
    limits.max_put_bytes = 10_000;
    let s = f.open(limits).await;
    s.bucket.put_bytes("ok", body(10_000, 1)).await?;
    let e = expect_err(s.bucket.put_bytes("big", body(10_001, 1)).await, "put")?;
    ensure_eq!(code(&e), 100100);
    ensure!(e.to_string().contains("10000"), "message: {e}");
    let stream = bindery_core::stream::chunked(body(50_000, 2), 1000);
    let e = expect_err(
        s.bucket
            .put("big", R2Body::Stream(stream), PutOptions::default())
            .await,
        "streamed put",
    )?;
    ensure_eq!(code(&e), 100100);
    ensure!(s.bucket.head("big").await?.is_none(), "stored");
    Ok(())
}

/// `{offset, length}` returns that slice; the object reports the whole size and the range.
pub async fn range_with_offset_and_length_returns_that_slice_and_echoes_it(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open(f).await;
    put(&s, "k", Bytes::from_static(b"Hello, R2 world!")).await?;
    let (o, b) = get_body(&s, "k", range(7, Some(2))).await?;
    ensure_eq!(b, Bytes::from_static(b"R2"));
    ensure_eq!(o.size, 16);
    ensure_eq!(
        o.range,
        Some(bindery_core::r2::ServedRange {
            offset: 7,
            length: 2
        })
    );
    Ok(())
}

/// `{offset}` alone reads to the end.
pub async fn range_with_offset_only_reads_to_the_end(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    put(&s, "k", Bytes::from_static(b"Hello, R2 world!")).await?;
    let (_, b) = get_body(&s, "k", range(10, None)).await?;
    ensure_eq!(b, Bytes::from_static(b"world!"));
    Ok(())
}

/// `{suffix}` returns the last bytes and reports them as offset and length.
pub async fn suffix_range_returns_the_last_bytes_and_reports_offset_and_length(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open(f).await;
    put(&s, "k", Bytes::from_static(b"Hello, R2 world!")).await?;
    let opts = GetOptions {
        range: Some(R2Range::Suffix(6)),
        ..Default::default()
    };
    let (o, b) = get_body(&s, "k", opts).await?;
    ensure_eq!(b, Bytes::from_static(b"world!"));
    ensure_eq!(
        o.range,
        Some(bindery_core::r2::ServedRange {
            offset: 10,
            length: 6
        })
    );
    Ok(())
}

/// A length or suffix past the end is clamped to the object.
pub async fn range_past_the_end_is_clamped(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    put(&s, "k", Bytes::from_static(b"abcdef")).await?;
    let (_, b) = get_body(&s, "k", range(4, Some(100))).await?;
    ensure_eq!(b, Bytes::from_static(b"ef"));
    let opts = GetOptions {
        range: Some(R2Range::Suffix(100)),
        ..Default::default()
    };
    let (o, b) = get_body(&s, "k", opts).await?;
    ensure_eq!(b, Bytes::from_static(b"abcdef"));
    ensure_eq!(o.range.map(|r| (r.offset, r.length)), Some((0, 6)));
    Ok(())
}

/// An offset past the end, a zero length or a zero suffix is InvalidRange (10039, 416).
pub async fn unsatisfiable_range_is_rejected_with_416_and_10039(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    put(&s, "k", Bytes::from_static(b"abcdef")).await?;
    for (what, opts) in [
        ("offset past the end", range(7, None)),
        ("zero length", range(0, Some(0))),
        (
            "zero suffix",
            GetOptions {
                range: Some(R2Range::Suffix(0)),
                ..Default::default()
            },
        ),
    ] {
        let e = expect_err(s.bucket.get("k", opts).await, what)?;
        ensure_eq!(code(&e), 10039);
        ensure_eq!(e.http_status(), 416);
    }
    Ok(())
}

/// A failed `onlyIf` on get returns the metadata without a body.
pub async fn get_with_failed_condition_returns_metadata_without_body(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open(f).await;
    let o = put(&s, "k", Bytes::from_static(b"v")).await?;
    let opts = GetOptions {
        only_if: Some(Conditional::if_etag("deadbeef")),
        ..Default::default()
    };
    match s.bucket.get("k", opts).await? {
        Some(R2GetResult::PreconditionFailed(meta)) => ensure_eq!(meta, o),
        other => return Err(format!("expected PreconditionFailed, got {other:?}").into()),
    }
    let opts = GetOptions {
        only_if: Some(Conditional::if_not_etag(&o.etag)),
        ..Default::default()
    };
    let r = s.bucket.get("k", opts).await?.ok_or("absent")?;
    ensure!(
        matches!(r, R2GetResult::PreconditionFailed(_)),
        "if-none-match passed"
    );
    Ok(())
}

/// A passing `onlyIf` returns the body; quoted and list forms of etags work.
pub async fn get_with_passing_condition_returns_the_body(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    let o = put(&s, "k", Bytes::from_static(b"v")).await?;
    let c = Conditional {
        etag_matches: EtagMatcher::parse_list(&format!("\"other\", {}", o.http_etag)),
        ..Default::default()
    };
    let opts = GetOptions {
        only_if: Some(c),
        ..Default::default()
    };
    let (_, b) = get_body(&s, "k", opts).await?;
    ensure_eq!(b, Bytes::from_static(b"v"));
    let opts = GetOptions {
        only_if: Some(Conditional::if_not_etag("other")),
        ..Default::default()
    };
    let (_, b) = get_body(&s, "k", opts).await?;
    ensure_eq!(b, Bytes::from_static(b"v"));
    Ok(())
}

/// `uploaded_before` passes for older objects, `uploaded_after` for newer ones.
pub async fn uploaded_before_and_after_compare_upload_times(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    let o = put(&s, "k", Bytes::from_static(b"v")).await?;
    let at = o.uploaded;
    let check = |c: Conditional| GetOptions {
        only_if: Some(c),
        ..Default::default()
    };
    let passes = |r: Option<R2GetResult>| matches!(r, Some(R2GetResult::Body(_)));
    let before_later = Conditional {
        uploaded_before: Some(at + 5000),
        ..Default::default()
    };
    ensure!(
        passes(s.bucket.get("k", check(before_later)).await?),
        "before a later instant failed"
    );
    let before_earlier = Conditional {
        uploaded_before: Some(at - 5000),
        ..Default::default()
    };
    ensure!(
        !passes(s.bucket.get("k", check(before_earlier)).await?),
        "before an earlier instant passed"
    );
    let after_earlier = Conditional {
        uploaded_after: Some(at - 5000),
        ..Default::default()
    };
    ensure!(
        passes(s.bucket.get("k", check(after_earlier)).await?),
        "after an earlier instant failed"
    );
    let after_later = Conditional {
        uploaded_after: Some(at + 5000),
        ..Default::default()
    };
    ensure!(
        !passes(s.bucket.get("k", check(after_later)).await?),
        "after a later instant passed"
    );
    // uploaded_before also passes when etag_matches is given and passes.
    let with_etag = Conditional {
        etag_matches: vec![EtagMatcher::Strong(o.etag.clone())],
        uploaded_before: Some(at - 5000),
        ..Default::default()
    };
    ensure!(
        passes(s.bucket.get("k", check(with_etag)).await?),
        "etag match did not override"
    );
    Ok(())
}

/// With seconds granularity, instants in the same second compare equal.
pub async fn seconds_granularity_ignores_milliseconds(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    s.clock.advance_ms(250);
    let o = put(&s, "k", Bytes::from_static(b"v")).await?;
    // 150 ms earlier, in the same second.
    let earlier = o.uploaded - 150;
    ensure_eq!(earlier / 1000, o.uploaded / 1000);
    let ms = Conditional {
        uploaded_after: Some(earlier),
        ..Default::default()
    };
    let secs = Conditional {
        uploaded_after: Some(earlier),
        seconds_granularity: true,
        ..Default::default()
    };
    let get = |c| GetOptions {
        only_if: Some(c),
        ..Default::default()
    };
    ensure!(
        matches!(
            s.bucket.get("k", get(ms)).await?,
            Some(R2GetResult::Body(_))
        ),
        "millisecond comparison failed"
    );
    ensure!(
        matches!(
            s.bucket.get("k", get(secs)).await?,
            Some(R2GetResult::PreconditionFailed(_))
        ),
        "second comparison passed"
    );
    Ok(())
}

/// `etag_does_not_match: *` is create-if-absent.
pub async fn put_if_absent_creates_once_then_returns_none(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    let first = s
        .bucket
        .put("k", R2Body::from("one"), cond_put(Conditional::if_absent()))
        .await?;
    ensure!(first.is_some(), "first create failed");
    let second = s
        .bucket
        .put("k", R2Body::from("two"), cond_put(Conditional::if_absent()))
        .await?;
    ensure!(second.is_none(), "second create succeeded");
    ensure_eq!(
        s.bucket.get_bytes("k").await?,
        Some(Bytes::from_static(b"one"))
    );
    Ok(())
}

/// `etag_matches` is compare-and-swap: it passes only against the current etag and fails
/// for an absent object.
pub async fn put_with_etag_matches_is_compare_and_swap(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    let absent = s
        .bucket
        .put(
            "k",
            R2Body::from("x"),
            cond_put(Conditional::if_etag("anything")),
        )
        .await?;
    ensure!(absent.is_none(), "etag_matches passed on an absent object");
    let v1 = put(&s, "k", Bytes::from_static(b"one")).await?;
    let v2 = s
        .bucket
        .put(
            "k",
            R2Body::from("two"),
            cond_put(Conditional::if_etag(&v1.etag)),
        )
        .await?
        .ok_or("swap against the current etag failed")?;
    let stale = s
        .bucket
        .put(
            "k",
            R2Body::from("three"),
            cond_put(Conditional::if_etag(&v1.etag)),
        )
        .await?;
    ensure!(stale.is_none(), "swap against a stale etag succeeded");
    ensure_eq!(s.bucket.head("k").await?.ok_or("missing")?.etag, v2.etag);
    Ok(())
}

/// A failed condition leaves the stored object untouched.
pub async fn put_with_failed_condition_stores_nothing(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    let o = put(&s, "k", Bytes::from_static(b"keep")).await?;
    let c = Conditional {
        uploaded_after: Some(o.uploaded + 10_000),
        ..Default::default()
    };
    ensure!(
        s.bucket
            .put("k", R2Body::from("new"), cond_put(c))
            .await?
            .is_none(),
        "put passed"
    );
    ensure_eq!(s.bucket.head("k").await?.ok_or("missing")?, o);
    Ok(())
}

/// Of many concurrent create-if-absent puts, exactly one wins.
pub async fn racing_create_if_absent_puts_have_exactly_one_winner(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let b = Arc::clone(&s.bucket);
        tasks.push(tokio::spawn(async move {
            b.put(
                "lock",
                R2Body::Bytes(Bytes::from(format!("owner {i}"))),
                cond_put(Conditional::if_absent()),
            )
            .await
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        if let Some(o) = t.await?? {
            winners.push(o);
        }
    }
    ensure_eq!(winners.len(), 1);
    ensure_eq!(
        s.bucket.head("lock").await?.ok_or("missing")?.etag,
        winners[0].etag
    );
    Ok(())
}

/// Of many concurrent compare-and-swap puts against the same etag, exactly one wins.
pub async fn racing_compare_and_swap_puts_have_exactly_one_winner(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    let base = put(&s, "counter", Bytes::from_static(b"0")).await?;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let b = Arc::clone(&s.bucket);
        let etag = base.etag.clone();
        tasks.push(tokio::spawn(async move {
            b.put(
                "counter",
                R2Body::Bytes(Bytes::from(format!("{}", i + 1))),
                cond_put(Conditional::if_etag(&etag)),
            )
            .await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await??.is_some() {
            wins += 1;
        }
    }
    ensure_eq!(wins, 1);
    Ok(())
}

/// delete takes one key or many; absent keys are fine.
pub async fn delete_removes_keys_and_absent_keys_are_not_an_error(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    for k in ["a", "b", "c"] {
        put(&s, k, Bytes::from_static(b"v")).await?;
    }
    s.bucket.delete_one("a").await?;
    ensure!(s.bucket.head("a").await?.is_none(), "a survived");
    s.bucket
        .delete(&["b".to_owned(), "c".to_owned(), "nope".to_owned()])
        .await?;
    ensure!(s.bucket.head("b").await?.is_none(), "b survived");
    ensure!(s.bucket.head("c").await?.is_none(), "c survived");
    s.bucket.delete_one("never").await?;
    ensure!(
        s.bucket
            .list(ListOptions::default())
            .await?
            .objects
            .is_empty(),
        "not empty"
    );
    Ok(())
}

/// At most 1,000 keys per delete.
pub async fn delete_of_more_than_1000_keys_is_rejected(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    let keys: Vec<String> = (0..1001).map(|i| format!("k{i}")).collect();
    let e = expect_err(s.bucket.delete(&keys).await, "delete")?;
    ensure_eq!(e.http_status(), 400);
    s.bucket.delete(&keys[..1000]).await?;
    Ok(())
}

/// Keys list in UTF-8 byte order; metadata appears only when included.
pub async fn list_returns_objects_in_byte_order_with_metadata_only_when_included(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open(f).await;
    let opts = PutOptions {
        http_metadata: HttpMetadata {
            content_type: Some("text/plain".into()),
            ..Default::default()
        },
        custom_metadata: [("a".to_owned(), "b".to_owned())].into(),
        ..Default::default()
    };
    for k in ["b", "a", "\u{e9}", "Z", "a/b", "\u{1F600}"] {
        s.bucket.put(k, R2Body::from("v"), opts.clone()).await?;
    }
    let page = s.bucket.list(ListOptions::default()).await?;
    let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
    ensure_eq!(keys, vec!["Z", "a", "a/b", "b", "\u{e9}", "\u{1F600}"]);
    ensure!(!page.truncated && page.cursor.is_none(), "truncated");
    ensure!(
        page.objects
            .iter()
            .all(|o| o.custom_metadata.is_empty() && o.http_metadata == HttpMetadata::default()),
        "metadata included without asking"
    );
    ensure!(
        page.objects
            .iter()
            .all(|o| o.size == 1 && !o.etag.is_empty()),
        "sizes/etags missing"
    );
    let page = s
        .bucket
        .list(ListOptions {
            include: ListInclude {
                http_metadata: true,
                custom_metadata: true,
            },
            ..Default::default()
        })
        .await?;
    ensure!(
        page.objects
            .iter()
            .all(|o| o.custom_metadata.len() == 1 && o.http_metadata.content_type.is_some()),
        "metadata missing when included"
    );
    Ok(())
}

/// `prefix` filters keys.
pub async fn list_filters_by_prefix(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    for k in ["docs/a", "docs/b", "docsx", "doc", "img/c"] {
        put(&s, k, Bytes::from_static(b"v")).await?;
    }
    let page = s
        .bucket
        .list(ListOptions {
            prefix: Some("docs/".into()),
            ..Default::default()
        })
        .await?;
    let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
    ensure_eq!(keys, vec!["docs/a", "docs/b"]);
    Ok(())
}

/// Pages follow `cursor` while `truncated`; every key appears once.
pub async fn list_paginates_with_cursor_while_truncated(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    let keys: Vec<String> = (0..25).map(|i| format!("k{i:03}")).collect();
    for k in &keys {
        put(&s, k, Bytes::from_static(b"v")).await?;
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = s
            .bucket
            .list(ListOptions {
                limit: Some(10),
                cursor: cursor.take(),
                ..Default::default()
            })
            .await?;
        ensure!(page.objects.len() <= 10, "page over the limit");
        seen.extend(page.objects.into_iter().map(|o| o.key));
        if !page.truncated {
            ensure!(page.cursor.is_none(), "cursor on the last page");
            break;
        }
        cursor = Some(page.cursor.ok_or("truncated without a cursor")?);
    }
    ensure_eq!(seen, keys);
    Ok(())
}

/// With a delimiter, keys with the delimiter after the prefix roll up into
/// `delimited_prefixes` (prefix plus up to the delimiter, included).
pub async fn list_with_delimiter_rolls_keys_up_into_delimited_prefixes(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open(f).await;
    for k in [
        "src/main.rs",
        "src/utils/a.rs",
        "src/utils/b.rs",
        "src/x/y/z",
        "README",
        "src/lib.rs",
    ] {
        put(&s, k, Bytes::from_static(b"v")).await?;
    }
    let top = s
        .bucket
        .list(ListOptions {
            delimiter: Some("/".into()),
            ..Default::default()
        })
        .await?;
    ensure_eq!(
        top.objects
            .iter()
            .map(|o| o.key.as_str())
            .collect::<Vec<_>>(),
        vec!["README"]
    );
    ensure_eq!(top.delimited_prefixes, vec!["src/".to_owned()]);
    let src = s
        .bucket
        .list(ListOptions {
            prefix: Some("src/".into()),
            delimiter: Some("/".into()),
            ..Default::default()
        })
        .await?;
    ensure_eq!(
        src.objects
            .iter()
            .map(|o| o.key.as_str())
            .collect::<Vec<_>>(),
        vec!["src/lib.rs", "src/main.rs"]
    );
    ensure_eq!(
        src.delimited_prefixes,
        vec!["src/utils/".to_owned(), "src/x/".to_owned()]
    );
    Ok(())
}

/// Rolled-up prefixes count toward the page; the next page starts after them.
pub async fn list_with_delimiter_paginates_past_rolled_up_prefixes(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open(f).await;
    for d in 0..5 {
        for i in 0..3 {
            put(&s, &format!("d{d}/f{i}"), Bytes::from_static(b"v")).await?;
        }
        put(&s, &format!("e{d}"), Bytes::from_static(b"v")).await?;
    }
    let mut objects = Vec::new();
    let mut prefixes = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = s
            .bucket
            .list(ListOptions {
                limit: Some(2),
                delimiter: Some("/".into()),
                cursor: cursor.take(),
                ..Default::default()
            })
            .await?;
        pages += 1;
        ensure!(
            page.objects.len() + page.delimited_prefixes.len() <= 2,
            "page over limit"
        );
        objects.extend(page.objects.into_iter().map(|o| o.key));
        prefixes.extend(page.delimited_prefixes);
        if !page.truncated {
            break;
        }
        cursor = page.cursor;
        ensure!(pages < 50, "pagination does not end");
    }
    ensure_eq!(prefixes, vec!["d0/", "d1/", "d2/", "d3/", "d4/"]);
    ensure_eq!(objects, vec!["e0", "e1", "e2", "e3", "e4"]);
    Ok(())
}

/// Hundreds of keys and rolled-up prefixes, in pages of several sizes, each appear once.
pub async fn list_with_delimiter_over_many_keys_returns_each_once(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    let mut keys = Vec::new();
    for i in 0..150 {
        keys.push(format!("f{i:03}"));
        if i % 10 == 0 {
            for j in 0..5 {
                keys.push(format!("d{i:03}/x{j}"));
            }
        }
    }
    let mut tasks = Vec::new();
    for chunk in keys.chunks(20) {
        let b = Arc::clone(&s.bucket);
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move {
            for k in chunk {
                b.put_bytes(&k, Bytes::from_static(b"v")).await?;
            }
            Ok::<_, R2Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let mut want_prefixes: Vec<String> =
        (0..150).step_by(10).map(|i| format!("d{i:03}/")).collect();
    want_prefixes.sort();
    let want_objects: Vec<String> = (0..150).map(|i| format!("f{i:03}")).collect();
    for limit in [1000, 100, 7] {
        let (mut objects, mut prefixes, mut cursor) = (Vec::new(), Vec::new(), None);
        loop {
            let page = s
                .bucket
                .list(ListOptions {
                    limit: Some(limit),
                    delimiter: Some("/".into()),
                    cursor: cursor.take(),
                    ..Default::default()
                })
                .await?;
            objects.extend(page.objects.into_iter().map(|o| o.key));
            prefixes.extend(page.delimited_prefixes);
            if !page.truncated {
                break;
            }
            cursor = page.cursor;
        }
        ensure_eq!(objects, want_objects);
        ensure_eq!(prefixes, want_prefixes);
    }
    Ok(())
}

/// `start_after` lists keys strictly after it.
pub async fn list_start_after_skips_up_to_and_including_that_key(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    for k in ["a", "b", "c", "d"] {
        put(&s, k, Bytes::from_static(b"v")).await?;
    }
    let page = s
        .bucket
        .list(ListOptions {
            start_after: Some("b".into()),
            ..Default::default()
        })
        .await?;
    ensure_eq!(
        page.objects
            .iter()
            .map(|o| o.key.as_str())
            .collect::<Vec<_>>(),
        vec!["c", "d"]
    );
    let page = s
        .bucket
        .list(ListOptions {
            start_after: Some("bb".into()),
            ..Default::default()
        })
        .await?;
    ensure_eq!(page.objects.len(), 2);
    Ok(())
}

/// `limit` must be 1..=1000 (InvalidMaxKeys, 10022).
pub async fn list_limit_outside_1_to_1000_is_rejected_with_10022(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    for limit in [0, 1001] {
        let e = expect_err(
            s.bucket
                .list(ListOptions {
                    limit: Some(limit),
                    ..Default::default()
                })
                .await,
            "list",
        )?;
        ensure_eq!(code(&e), 10022);
    }
    s.bucket
        .list(ListOptions {
            limit: Some(1000),
            ..Default::default()
        })
        .await?;
    Ok(())
}

/// A cursor the bucket did not produce is rejected, not silently treated as a start.
pub async fn garbage_list_cursor_is_rejected(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    put(&s, "a", Bytes::from_static(b"v")).await?;
    for cursor in ["%%%not-base64%%%", ""] {
        let e = expect_err(
            s.bucket
                .list(ListOptions {
                    cursor: Some(cursor.to_owned()),
                    ..Default::default()
                })
                .await,
            cursor,
        )?;
        ensure_eq!(e.http_status(), 400);
    }
    Ok(())
}

async fn upload_parts(
    s: &R2Subject,
    up: &R2MultipartUpload,
    parts: &[Bytes],
) -> Result<Vec<R2UploadedPart>, Err> {
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        out.push(
            s.bucket
                .upload_part(up, i as u32 + 1, R2Body::Bytes(p.clone()))
                .await?,
        );
    }
    Ok(out)
}

/// Completion yields the MD5 of the parts' binary MD5s, hex, then `-<parts>`.
pub async fn multipart_upload_completes_with_the_md5_of_part_md5s_etag(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open_small_parts(f).await;
    let up = s
        .bucket
        .create_multipart_upload("big.bin", MultipartOptions::default())
        .await?;
    let parts = [body(2048, 1), body(2048, 2), body(100, 3)];
    let uploaded = upload_parts(&s, &up, &parts).await?;
    for (u, p) in uploaded.iter().zip(&parts) {
        ensure_eq!(u.etag, md5_hex(p));
    }
    let o = s.bucket.complete_multipart_upload(&up, &uploaded).await?;
    let mut cat = Vec::new();
    for p in &parts {
        cat.extend_from_slice(&md5_digest(p));
    }
    ensure_eq!(o.etag, format!("{}-3", md5_hex(&cat)));
    ensure_eq!(o.size, 2048 + 2048 + 100);
    ensure_eq!(o.checksums.md5, None);
    ensure_eq!(s.bucket.head("big.bin").await?.ok_or("missing")?, o);
    Ok(())
}

/// The completed object reads back whole, and ranges spanning part boundaries read right.
pub async fn multipart_object_reads_back_whole_and_ranges_cross_parts(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open_small_parts(f).await;
    let up = s
        .bucket
        .create_multipart_upload("m", MultipartOptions::default())
        .await?;
    let parts = [body(3000, 1), body(3000, 2), body(3000, 3), body(10, 4)];
    let uploaded = upload_parts(&s, &up, &parts).await?;
    s.bucket.complete_multipart_upload(&up, &uploaded).await?;
    let whole: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    ensure!(
        s.bucket.get_bytes("m").await?.as_deref() == Some(&whole[..]),
        "whole differs"
    );
    for (off, len) in [
        (2990u64, 20u64),
        (0, 9010),
        (2999, 3002),
        (9000, 10),
        (5999, 1),
    ] {
        let (_, b) = get_body(&s, "m", range(off, Some(len))).await?;
        ensure!(
            b[..] == whole[off as usize..(off + len) as usize],
            "range {off}+{len} differs"
        );
    }
    let opts = GetOptions {
        range: Some(R2Range::Suffix(3005)),
        ..Default::default()
    };
    let (_, b) = get_body(&s, "m", opts).await?;
    ensure!(b[..] == whole[whole.len() - 3005..], "suffix differs");
    Ok(())
}

/// Metadata and class given at creation belong to the completed object.
pub async fn multipart_object_takes_metadata_and_class_from_create(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open_small_parts(f).await;
    let opts = MultipartOptions {
        http_metadata: HttpMetadata {
            content_type: Some("application/octet-stream".into()),
            ..Default::default()
        },
        custom_metadata: [("k".to_owned(), "v".to_owned())].into(),
        storage_class: Some(StorageClass::InfrequentAccess),
    };
    let up = s.bucket.create_multipart_upload("m", opts.clone()).await?;
    let uploaded = upload_parts(&s, &up, &[body(10, 1)]).await?;
    let o = s.bucket.complete_multipart_upload(&up, &uploaded).await?;
    ensure_eq!(o.http_metadata, opts.http_metadata);
    ensure_eq!(o.custom_metadata, opts.custom_metadata);
    ensure_eq!(o.storage_class, StorageClass::InfrequentAccess);
    Ok(())
}

/// Uploading the same part number again replaces it (last write wins).
pub async fn uploading_a_part_number_twice_keeps_the_last(f: &dyn R2Factory) -> TestResult {
    let s = open_small_parts(f).await;
    let up = s
        .bucket
        .create_multipart_upload("m", MultipartOptions::default())
        .await?;
    s.bucket.upload_part(&up, 1, R2Body::from("first")).await?;
    let second = s.bucket.upload_part(&up, 1, R2Body::from("second")).await?;
    let parts = s.bucket.list_parts(&up).await?;
    ensure_eq!(parts.len(), 1);
    ensure_eq!(parts[0].etag, second.etag);
    s.bucket.complete_multipart_upload(&up, &[second]).await?;
    ensure_eq!(
        s.bucket.get_bytes("m").await?,
        Some(Bytes::from_static(b"second"))
    );
    Ok(())
}

/// Completing with a part never uploaded, or with a wrong etag, is InvalidPart (10025).
pub async fn complete_with_a_missing_part_or_wrong_etag_is_rejected_with_10025(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open_small_parts(f).await;
    let up = s
        .bucket
        .create_multipart_upload("m", MultipartOptions::default())
        .await?;
    let p1 = s.bucket.upload_part(&up, 1, R2Body::from("data")).await?;
    let missing = R2UploadedPart {
        part_number: 2,
        etag: p1.etag.clone(),
    };
    let e = expect_err(
        s.bucket
            .complete_multipart_upload(&up, &[p1.clone(), missing])
            .await,
        "missing part",
    )?;
    ensure_eq!(code(&e), 10025);
    let wrong = R2UploadedPart {
        part_number: 1,
        etag: "0".repeat(32),
    };
    let e = expect_err(
        s.bucket.complete_multipart_upload(&up, &[wrong]).await,
        "wrong etag",
    )?;
    ensure_eq!(code(&e), 10025);
    ensure!(s.bucket.head("m").await?.is_none(), "object appeared");
    // The upload survives a failed completion.
    s.bucket.complete_multipart_upload(&up, &[p1]).await?;
    Ok(())
}

/// Every part but the last must be at least 5 MiB (EntityTooSmall, 10011).
pub async fn non_final_part_under_5_mib_is_rejected_with_entity_too_small(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open(f).await;
    let up = s
        .bucket
        .create_multipart_upload("m", MultipartOptions::default())
        .await?;
    let parts = upload_parts(&s, &up, &[body(1024, 1), body(1024, 2)]).await?;
    let e = expect_err(
        s.bucket.complete_multipart_upload(&up, &parts).await,
        "complete",
    )?;
    ensure_eq!(code(&e), 10011);
    // A single small part is a valid (last) part.
    let single = s.bucket.complete_multipart_upload(&up, &parts[..1]).await?;
    ensure_eq!(single.size, 1024);
    Ok(())
}

/// Non-final parts must all have the same size (10048).
pub async fn non_final_parts_of_different_sizes_are_rejected_with_10048(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open_small_parts(f).await;
    let up = s
        .bucket
        .create_multipart_upload("m", MultipartOptions::default())
        .await?;
    let parts = upload_parts(&s, &up, &[body(2048, 1), body(4096, 2), body(10, 3)]).await?;
    let e = expect_err(
        s.bucket.complete_multipart_upload(&up, &parts).await,
        "complete",
    )?;
    ensure_eq!(code(&e), 10048);
    Ok(())
}

/// The last part may be smaller than the others but not larger (10048).
pub async fn last_part_larger_than_the_others_is_rejected_with_10048(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open_small_parts(f).await;
    let up = s
        .bucket
        .create_multipart_upload("m", MultipartOptions::default())
        .await?;
    let parts = upload_parts(&s, &up, &[body(2048, 1), body(4096, 2)]).await?;
    let e = expect_err(
        s.bucket.complete_multipart_upload(&up, &parts).await,
        "complete",
    )?;
    ensure_eq!(code(&e), 10048);
    Ok(())
}

/// Part numbers run 1..=10000.
pub async fn part_number_outside_1_to_10000_is_rejected(f: &dyn R2Factory) -> TestResult {
    let s = open_small_parts(f).await;
    let up = s
        .bucket
        .create_multipart_upload("m", MultipartOptions::default())
        .await?;
    for n in [0, 10_001] {
        let e = expect_err(
            s.bucket.upload_part(&up, n, R2Body::from("x")).await,
            "part",
        )?;
        ensure_eq!(e.http_status(), 400);
    }
    s.bucket.upload_part(&up, 10_000, R2Body::from("x")).await?;
    Ok(())
}

/// Abort discards the upload; later part uploads and completion are NoSuchUpload (10024).
pub async fn abort_discards_the_upload_and_later_calls_fail_with_no_such_upload(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open_small_parts(f).await;
    let up = s
        .bucket
        .create_multipart_upload("m", MultipartOptions::default())
        .await?;
    let p = s.bucket.upload_part(&up, 1, R2Body::from("x")).await?;
    s.bucket.abort_multipart_upload(&up).await?;
    let e = expect_err(
        s.bucket.upload_part(&up, 2, R2Body::from("y")).await,
        "part",
    )?;
    ensure_eq!(code(&e), 10024);
    ensure_eq!(e.http_status(), 404);
    let e = expect_err(
        s.bucket.complete_multipart_upload(&up, &[p]).await,
        "complete",
    )?;
    ensure_eq!(code(&e), 10024);
    ensure!(s.bucket.head("m").await?.is_none(), "object appeared");
    Ok(())
}

/// After completion the upload is gone.
pub async fn completed_upload_no_longer_exists(f: &dyn R2Factory) -> TestResult {
    let s = open_small_parts(f).await;
    let up = s
        .bucket
        .create_multipart_upload("m", MultipartOptions::default())
        .await?;
    let p = s.bucket.upload_part(&up, 1, R2Body::from("x")).await?;
    s.bucket
        .complete_multipart_upload(&up, std::slice::from_ref(&p))
        .await?;
    let e = expect_err(s.bucket.complete_multipart_upload(&up, &[p]).await, "again")?;
    ensure_eq!(code(&e), 10024);
    let e = expect_err(s.bucket.abort_multipart_upload(&up).await, "abort")?;
    ensure_eq!(code(&e), 10024);
    Ok(())
}

/// resumeMultipartUpload does not validate; using an unknown id fails with NoSuchUpload.
pub async fn resumed_unknown_upload_fails_on_use_with_no_such_upload(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open_small_parts(f).await;
    let up = R2MultipartUpload::resume("m", "no-such-upload");
    let e = expect_err(
        s.bucket.upload_part(&up, 1, R2Body::from("x")).await,
        "part",
    )?;
    ensure_eq!(code(&e), 10024);
    // A real id resumed under another key is not that upload.
    let real = s
        .bucket
        .create_multipart_upload("m", MultipartOptions::default())
        .await?;
    let other = R2MultipartUpload::resume("other", &real.upload_id);
    let e = expect_err(
        s.bucket.upload_part(&other, 1, R2Body::from("x")).await,
        "other",
    )?;
    ensure_eq!(code(&e), 10024);
    let resumed = R2MultipartUpload::resume("m", &real.upload_id);
    s.bucket.upload_part(&resumed, 1, R2Body::from("x")).await?;
    Ok(())
}

/// Uploads not completed within 7 days (by the clock) are gone.
pub async fn uploads_are_aborted_after_7_days_by_the_clock(f: &dyn R2Factory) -> TestResult {
    let s = open_small_parts(f).await;
    let up = s
        .bucket
        .create_multipart_upload("m", MultipartOptions::default())
        .await?;
    let p = s.bucket.upload_part(&up, 1, R2Body::from("x")).await?;
    s.clock.advance_secs(7 * 86_400 - 60);
    s.bucket.list_parts(&up).await?;
    s.clock.advance_secs(61);
    let e = expect_err(
        s.bucket.complete_multipart_upload(&up, &[p]).await,
        "complete",
    )?;
    ensure_eq!(code(&e), 10024);
    let listed = s
        .bucket
        .list_multipart_uploads(ListUploadsOptions::default())
        .await?;
    ensure!(listed.uploads.is_empty(), "expired upload still listed");
    Ok(())
}

/// In-progress uploads list by key (with prefix and pagination), and an upload's parts list
/// by number with sizes and etags.
pub async fn list_multipart_uploads_and_list_parts_report_progress(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open_small_parts(f).await;
    let mut ids = Vec::new();
    for k in ["a/1", "a/2", "b/1"] {
        ids.push(
            s.bucket
                .create_multipart_upload(k, MultipartOptions::default())
                .await?,
        );
    }
    let all = s
        .bucket
        .list_multipart_uploads(ListUploadsOptions::default())
        .await?;
    ensure_eq!(
        all.uploads
            .iter()
            .map(|u| u.key.as_str())
            .collect::<Vec<_>>(),
        vec!["a/1", "a/2", "b/1"]
    );
    let a = s
        .bucket
        .list_multipart_uploads(ListUploadsOptions {
            prefix: Some("a/".into()),
            limit: Some(1),
            ..Default::default()
        })
        .await?;
    ensure!(
        a.truncated && a.uploads.len() == 1,
        "first page wrong: {a:?}"
    );
    let a2 = s
        .bucket
        .list_multipart_uploads(ListUploadsOptions {
            prefix: Some("a/".into()),
            limit: Some(1),
            cursor: a.cursor,
        })
        .await?;
    ensure_eq!(
        a2.uploads
            .iter()
            .map(|u| u.key.as_str())
            .collect::<Vec<_>>(),
        vec!["a/2"]
    );
    ensure!(!a2.truncated, "second page truncated");
    let up = &ids[0];
    s.bucket.upload_part(up, 2, R2Body::from("bb")).await?;
    s.bucket.upload_part(up, 1, R2Body::from("a")).await?;
    let parts = s.bucket.list_parts(up).await?;
    ensure_eq!(
        parts
            .iter()
            .map(|p| (p.part_number, p.size))
            .collect::<Vec<_>>(),
        vec![(1, 1), (2, 2)]
    );
    ensure_eq!(parts[0].etag, md5_hex(b"a"));
    Ok(())
}

/// Lifecycle rules are stored and read back.
pub async fn lifecycle_rules_round_trip(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    ensure!(
        s.bucket.lifecycle_rules().await?.is_empty(),
        "rules present"
    );
    let rules = vec![LifecycleRule {
        id: "logs".into(),
        prefix: "logs/".into(),
        expire_after_days: Some(30),
        transition_to_infrequent_access_after_days: Some(7),
        abort_multipart_after_days: Some(1),
    }];
    s.bucket.set_lifecycle_rules(rules.clone()).await?;
    ensure_eq!(s.bucket.lifecycle_rules().await?, rules);
    Ok(())
}

/// An expiration rule deletes matching objects once they are N days old (by the clock).
pub async fn lifecycle_rule_expires_objects_after_n_days(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    put(&s, "logs/old", Bytes::from_static(b"v")).await?;
    put(&s, "keep/old", Bytes::from_static(b"v")).await?;
    s.bucket
        .set_lifecycle_rules(vec![LifecycleRule {
            id: "logs".into(),
            prefix: "logs/".into(),
            expire_after_days: Some(30),
            ..Default::default()
        }])
        .await?;
    s.clock.advance_secs(29 * 86_400);
    put(&s, "logs/new", Bytes::from_static(b"v")).await?;
    s.clock.advance_secs(2 * 86_400);
    let b = Arc::clone(&s.bucket);
    eventually("logs/old to expire", || {
        let b = Arc::clone(&b);
        async move { Ok(b.head("logs/old").await?.is_none()) }
    })
    .await?;
    ensure!(
        s.bucket.head("keep/old").await?.is_some(),
        "unmatched object expired"
    );
    ensure!(
        s.bucket.head("logs/new").await?.is_some(),
        "young object expired"
    );
    Ok(())
}

/// A transition rule moves objects to InfrequentAccess once they are N days old.
pub async fn lifecycle_rule_transitions_objects_to_infrequent_access(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open(f).await;
    put(&s, "a", Bytes::from_static(b"v")).await?;
    s.bucket
        .set_lifecycle_rules(vec![LifecycleRule {
            id: "ia".into(),
            transition_to_infrequent_access_after_days: Some(30),
            ..Default::default()
        }])
        .await?;
    s.clock.advance_secs(31 * 86_400);
    let b = Arc::clone(&s.bucket);
    eventually("the transition", || {
        let b = Arc::clone(&b);
        async move {
            Ok(b.head("a").await?.map(|o| o.storage_class) == Some(StorageClass::InfrequentAccess))
        }
    })
    .await?;
    ensure_eq!(
        s.bucket.get_bytes("a").await?,
        Some(Bytes::from_static(b"v"))
    );
    Ok(())
}

/// A sink that records what it receives and can be told to fail.
#[derive(Default)]
struct RecordingSink {
    events: parking_lot_free::Mutex<Vec<R2Event>>,
    failures_left: std::sync::atomic::AtomicUsize,
    attempts: std::sync::atomic::AtomicUsize,
}

/// A std mutex under a short name (the suite does not depend on parking_lot).
mod parking_lot_free {
    pub struct Mutex<T>(std::sync::Mutex<T>);
    impl<T: Default> Default for Mutex<T> {
        fn default() -> Self {
            Self(std::sync::Mutex::new(T::default()))
        }
    }
    impl<T> Mutex<T> {
        pub fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|p| p.into_inner())
        }
    }
}

// Written out by hand: the suite does not depend on async-trait.
impl R2EventSink for RecordingSink {
    fn send<'a, 'b, 'f>(
        &'a self,
        event: &'b R2Event,
    ) -> Pin<Box<dyn Future<Output = Result<(), bindery_core::error::BoxError>> + Send + 'f>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        Box::pin(async move {
            use std::sync::atomic::Ordering;
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if self
                .failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err("queue unavailable".into());
            }
            self.events.lock().push(event.clone());
            Ok(())
        })
    }
}

fn rule(
    sink: &Arc<RecordingSink>,
    types: &[R2EventType],
    prefix: &str,
    suffix: &str,
) -> NotificationRule {
    NotificationRule {
        queue: "events".into(),
        sink: Arc::clone(sink) as Arc<dyn R2EventSink>,
        event_types: types.to_vec(),
        prefix: prefix.into(),
        suffix: suffix.into(),
    }
}

async fn wait_events(sink: &Arc<RecordingSink>, n: usize) -> TestResult {
    let sink = Arc::clone(sink);
    eventually(&format!("{n} events"), || {
        let sink = Arc::clone(&sink);
        async move { Ok(sink.events.lock().len() >= n) }
    })
    .await
}

/// object-create and object-delete events reach the sink, filtered by prefix and suffix,
/// with R2's message fields.
pub async fn events_for_puts_and_deletes_reach_the_sink_through_prefix_and_suffix_filters(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open(f).await;
    let sink = Arc::new(RecordingSink::default());
    s.bucket
        .set_event_notifications(vec![rule(
            &sink,
            &[R2EventType::ObjectCreate, R2EventType::ObjectDelete],
            "img/",
            ".png",
        )])
        .await?;
    put(&s, "img/a.png", Bytes::from_static(b"png")).await?;
    put(&s, "img/a.jpg", Bytes::from_static(b"jpg")).await?;
    put(&s, "doc/a.png", Bytes::from_static(b"png")).await?;
    s.bucket.delete_one("img/a.png").await?;
    s.bucket.delete_one("img/a.jpg").await?;
    wait_events(&sink, 2).await?;
    let events = sink.events.lock().clone();
    ensure_eq!(events.len(), 2);
    ensure_eq!(events[0].action, R2EventAction::PutObject);
    ensure_eq!(events[0].key, "img/a.png");
    ensure_eq!(events[0].size, Some(3));
    ensure_eq!(events[0].etag.as_deref(), Some(md5_hex(b"png").as_str()));
    ensure_eq!(events[1].action, R2EventAction::DeleteObject);
    let json = events[0].to_json("acct");
    ensure_eq!(json["object"]["key"], "img/a.png");
    ensure_eq!(json["action"], "PutObject");
    ensure!(
        json["eventTime"].as_str().is_some_and(|t| t.ends_with('Z')),
        "eventTime: {json}"
    );
    Ok(())
}

/// Completing a multipart upload is an object-create event (`CompleteMultipartUpload`).
pub async fn multipart_completion_is_an_object_create_event(f: &dyn R2Factory) -> TestResult {
    let s = open_small_parts(f).await;
    let sink = Arc::new(RecordingSink::default());
    s.bucket
        .set_event_notifications(vec![rule(&sink, &[R2EventType::ObjectCreate], "", "")])
        .await?;
    let up = s
        .bucket
        .create_multipart_upload("m", MultipartOptions::default())
        .await?;
    let p = s.bucket.upload_part(&up, 1, R2Body::from("x")).await?;
    let o = s.bucket.complete_multipart_upload(&up, &[p]).await?;
    s.bucket.delete_one("m").await?;
    wait_events(&sink, 1).await?;
    let events = sink.events.lock().clone();
    ensure_eq!(events.len(), 1);
    ensure_eq!(events[0].action, R2EventAction::CompleteMultipartUpload);
    ensure_eq!(events[0].etag.as_deref(), Some(o.etag.as_str()));
    Ok(())
}

/// A sink that fails is retried (by the clock) until it accepts; nothing is lost.
pub async fn failing_sink_is_retried_until_it_accepts(f: &dyn R2Factory) -> TestResult {
    use std::sync::atomic::Ordering;
    let s = open(f).await;
    let sink = Arc::new(RecordingSink::default());
    sink.failures_left.store(2, Ordering::SeqCst);
    s.bucket
        .set_event_notifications(vec![rule(&sink, &[R2EventType::ObjectCreate], "", "")])
        .await?;
    put(&s, "a", Bytes::from_static(b"v")).await?;
    for attempt in 1..=2 {
        let sink2 = Arc::clone(&sink);
        eventually("a delivery attempt", || {
            let sink = Arc::clone(&sink2);
            async move { Ok(sink.attempts.load(Ordering::SeqCst) >= attempt) }
        })
        .await?;
        s.clock.advance_secs(2);
    }
    wait_events(&sink, 1).await?;
    ensure_eq!(sink.events.lock()[0].key, "a");
    Ok(())
}

/// Buckets are created, listed by name with their creation time, and deleted when empty.
pub async fn buckets_are_created_listed_and_deleted(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    let before: Vec<String> = s
        .buckets
        .list_buckets()
        .await?
        .into_iter()
        .map(|b| b.name)
        .collect();
    let info = s.buckets.create_bucket("zz-new-bucket").await?;
    ensure_eq!(info.creation_date, bindery_core::Clock::now_ms(&s.clock));
    s.buckets.create_bucket("aa-new-bucket").await?;
    let listed: Vec<BucketInfo> = s.buckets.list_buckets().await?;
    let names: Vec<&str> = listed.iter().map(|b| b.name.as_str()).collect();
    ensure!(
        names.contains(&"zz-new-bucket") && names.contains(&"aa-new-bucket"),
        "{names:?}"
    );
    let mut sorted = names.clone();
    sorted.sort();
    ensure_eq!(names, sorted);
    let b = s.buckets.bucket("aa-new-bucket").await?;
    b.put_bytes("k", Bytes::from_static(b"v")).await?;
    ensure_eq!(b.get_bytes("k").await?, Some(Bytes::from_static(b"v")));
    b.delete_one("k").await?;
    s.buckets.delete_bucket("aa-new-bucket").await?;
    s.buckets.delete_bucket("zz-new-bucket").await?;
    let after: Vec<String> = s
        .buckets
        .list_buckets()
        .await?
        .into_iter()
        .map(|b| b.name)
        .collect();
    ensure_eq!(after, before);
    Ok(())
}

/// Names are 3-63 lowercase letters, digits and hyphens (InvalidBucketName, 10005).
pub async fn bucket_names_are_validated_with_10005(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    for bad in [
        "ab",
        "Upper",
        "-lead",
        "trail-",
        "dots.name",
        "../up",
        &"x".repeat(64),
    ] {
        let e = expect_err(s.buckets.create_bucket(bad).await, bad)?;
        ensure_eq!(code(&e), 10005);
        ensure_eq!(e.http_status(), 400);
    }
    s.buckets.create_bucket(&"x".repeat(63)).await?;
    Ok(())
}

/// A name already taken is 10073 (409).
pub async fn creating_an_existing_bucket_fails_with_10073(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    s.buckets.create_bucket("twice").await?;
    let e = expect_err(s.buckets.create_bucket("twice").await, "second create")?;
    ensure_eq!(code(&e), 10073);
    ensure_eq!(e.http_status(), 409);
    Ok(())
}

/// A bucket holding objects is not deleted (BucketNotEmpty, 10008, 409).
pub async fn deleting_a_non_empty_bucket_fails_with_10008(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    s.buckets.create_bucket("full").await?;
    let b = s.buckets.bucket("full").await?;
    b.put_bytes("k", Bytes::from_static(b"v")).await?;
    let e = expect_err(s.buckets.delete_bucket("full").await, "delete")?;
    ensure_eq!(code(&e), 10008);
    ensure_eq!(e.http_status(), 409);
    ensure_eq!(b.get_bytes("k").await?, Some(Bytes::from_static(b"v")));
    Ok(())
}

/// An unknown bucket is NoSuchBucket (10006, 404).
pub async fn unknown_bucket_is_no_such_bucket_with_10006(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    let e = expect_err(s.buckets.bucket("never-made").await.map(|_| ()), "bucket")?;
    ensure_eq!(code(&e), 10006);
    ensure_eq!(e.http_status(), 404);
    let e = expect_err(s.buckets.delete_bucket("never-made").await, "delete")?;
    ensure_eq!(code(&e), 10006);
    Ok(())
}

/// Concurrent puts to distinct keys all land.
pub async fn concurrent_puts_to_distinct_keys_all_succeed(f: &dyn R2Factory) -> TestResult {
    let s = open(f).await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let b = Arc::clone(&s.bucket);
        tasks.push(tokio::spawn(async move {
            b.put_bytes(&format!("k{i:02}"), body(1000 + i, i as u32))
                .await
        }));
    }
    for t in tasks {
        t.await??;
    }
    let page = s.bucket.list(ListOptions::default()).await?;
    ensure_eq!(page.objects.len(), 32);
    for i in 0..32 {
        ensure_eq!(
            s.bucket.get_bytes(&format!("k{i:02}")).await?,
            Some(body(1000 + i, i as u32))
        );
    }
    Ok(())
}

/// A body being read while its key is overwritten or deleted still reads whole and old.
pub async fn reader_of_an_overwritten_object_reads_the_old_body_whole(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open(f).await;
    let old = body(3 * MIB, 1);
    put(&s, "k", old.clone()).await?;
    let reading = s
        .bucket
        .get("k", GetOptions::default())
        .await?
        .and_then(R2GetResult::into_body)
        .ok_or("missing")?;
    put(&s, "k", body(100, 2)).await?;
    s.bucket.delete_one("k").await?;
    let got = reading.bytes().await?;
    ensure!(got == old, "the old body changed under its reader");
    ensure!(s.bucket.head("k").await?.is_none(), "delete did not take");
    Ok(())
}

/// `copy_object` streams the body and keeps metadata and class; a missing source is
/// NoSuchKey (10007, 404).
pub async fn copy_object_copies_body_and_metadata_and_missing_source_is_10007(
    f: &dyn R2Factory,
) -> TestResult {
    let s = open(f).await;
    let data = body(3 * MIB + 5, 9);
    let opts = PutOptions {
        http_metadata: HttpMetadata {
            content_type: Some("image/png".into()),
            ..Default::default()
        },
        custom_metadata: [("k".to_owned(), "v".to_owned())].into(),
        storage_class: Some(StorageClass::InfrequentAccess),
        ..Default::default()
    };
    let src = s
        .bucket
        .put("src", R2Body::Bytes(data.clone()), opts.clone())
        .await?
        .ok_or("put returned None")?;
    s.clock.advance_secs(1);
    let copy = s.bucket.copy_object("src", "dst").await?;
    ensure_eq!(copy.etag, src.etag);
    ensure!(
        copy.version != src.version,
        "the copy shares the source's version"
    );
    ensure_eq!(copy.http_metadata, opts.http_metadata);
    ensure_eq!(copy.custom_metadata, opts.custom_metadata);
    ensure_eq!(copy.storage_class, StorageClass::InfrequentAccess);
    ensure!(
        s.bucket.get_bytes("dst").await? == Some(data),
        "copied body differs"
    );
    let e = expect_err(s.bucket.copy_object("nope", "x").await, "copy")?;
    ensure_eq!(code(&e), 10007);
    ensure_eq!(e.http_status(), 404);
    Ok(())
}
