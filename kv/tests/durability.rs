//! Reopen and background-sweeper behaviour of the redb engine.

use std::time::Duration;

use bindery_core::kv::{GetOptions, KvStore, ListOptions, PutOptions};
use bindery_core::{Clock, ManualClock};
use bindery_kv::KvNamespace;
use bytes::Bytes;
use serde_json::json;

#[tokio::test]
async fn values_metadata_and_expirations_survive_reopen() -> Result<(), Box<dyn std::error::Error>>
{
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kv.redb");
    let clock = ManualClock::at_2026();
    let exp = clock.now_secs() + 600;
    {
        let kv = KvNamespace::builder()
            .clock(clock.shared())
            .open(&path)
            .await?;
        kv.put(
            "k",
            Bytes::from_static(b"v"),
            PutOptions {
                expiration: Some(exp),
                metadata: Some(json!({"a": 1})),
                ..Default::default()
            },
        )
        .await?;
        kv.put("plain", Bytes::from_static(b"p"), PutOptions::default())
            .await?;
    }
    let kv = KvNamespace::builder()
        .clock(clock.shared())
        .open(&path)
        .await?;
    let e = kv
        .get_with_metadata("k", GetOptions::default())
        .await?
        .expect("k survives");
    assert_eq!(e.value, Bytes::from_static(b"v"));
    assert_eq!(e.metadata, Some(json!({"a": 1})));
    assert_eq!(e.expiration, Some(exp));
    assert_eq!(kv.list(ListOptions::default()).await?.keys.len(), 2);
    Ok(())
}

#[tokio::test]
async fn cursor_issued_before_reopen_is_still_valid_after() -> Result<(), Box<dyn std::error::Error>>
{
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kv.redb");
    let cursor = {
        let kv = KvNamespace::open(&path).await?;
        for k in ["a", "b", "c"] {
            kv.put(k, Bytes::new(), PutOptions::default()).await?;
        }
        kv.list(ListOptions {
            limit: Some(1),
            ..Default::default()
        })
        .await?
        .cursor
        .expect("cursor")
    };
    let kv = KvNamespace::open(&path).await?;
    let page = kv
        .list(ListOptions {
            cursor: Some(cursor),
            ..Default::default()
        })
        .await?;
    let names: Vec<_> = page.keys.into_iter().map(|k| k.name).collect();
    assert_eq!(names, ["b", "c"]);
    Ok(())
}

#[tokio::test]
async fn background_sweeper_deletes_expired_keys_when_the_clock_passes_its_interval()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let clock = ManualClock::at_2026();
    let kv = KvNamespace::builder()
        .clock(clock.shared())
        .sweep_interval(Duration::from_secs(60))
        .open(dir.path().join("kv.redb"))
        .await?;
    for i in 0..10 {
        kv.put(
            &format!("t{i}"),
            Bytes::new(),
            PutOptions {
                expiration_ttl: Some(60),
                ..Default::default()
            },
        )
        .await?;
    }
    kv.put("keep", Bytes::new(), PutOptions::default()).await?;
    assert_eq!(kv.stats().await?.stored_keys, 11);
    // Expired at once for readers, but still stored until a sweep.
    clock.advance_secs(60);
    assert_eq!(kv.get("t0", GetOptions::default()).await?, None);
    // The sweeper's timer (60 s by the clock) fires on this advance.
    clock.advance_secs(60);
    tokio::time::timeout(Duration::from_secs(10), async {
        while kv.stats().await.map(|s| s.stored_keys).unwrap_or(0) != 1 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .map_err(|_| "the background sweeper did not run after the clock passed its interval")?;
    let stats = kv.stats().await?;
    assert_eq!(stats.stored_keys, 1);
    assert_eq!(stats.swept_keys, 10);
    assert_eq!(kv.sweep_expired().await?, 0);
    Ok(())
}

#[tokio::test]
async fn sweep_keeps_keys_rewritten_with_a_later_expiration()
-> Result<(), Box<dyn std::error::Error>> {
    let clock = ManualClock::at_2026();
    let kv = KvNamespace::builder().clock(clock.shared()).memory();
    kv.put(
        "k",
        Bytes::from_static(b"1"),
        PutOptions {
            expiration_ttl: Some(60),
            ..Default::default()
        },
    )
    .await?;
    clock.advance_secs(1);
    kv.put(
        "k",
        Bytes::from_static(b"2"),
        PutOptions {
            expiration_ttl: Some(600),
            ..Default::default()
        },
    )
    .await?;
    clock.advance_secs(100);
    assert_eq!(kv.sweep_expired().await?, 0);
    assert_eq!(
        kv.get("k", GetOptions::default()).await?,
        Some(Bytes::from_static(b"2"))
    );
    Ok(())
}
