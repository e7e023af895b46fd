//! Lifecycle rules and upload expiry, applied by a background task every maintenance
//! interval (by the clock).
//!
//! Rules are bucket configuration stored in the index. An object matches a rule when its key
//! starts with the rule's prefix; `expire_after_days` deletes it (with a `LifecycleDeletion`
//! event) once the clock passes `uploaded + days`, and
//! `transition_to_infrequent_access_after_days` moves a Standard object to InfrequentAccess.
//! Uploads in progress are aborted after the bucket's expiry (7 days) or a rule's
//! `abort_multipart_after_days`, whichever comes first.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bindery_core::SharedClock;
use bindery_core::r2::{LifecycleRule, NotificationRule, R2EventAction, R2Result};
use rusqlite::{Connection, params};

use crate::bucket::{Committed, Inner};
use crate::index::{self, EngineExt, prefix_end};
use crate::multipart;

/// Configuration entry holding the rules as JSON.
pub(crate) const RULES_CONFIG: &str = "lifecycle_rules";

const DAY_MS: u64 = 86_400_000;

/// Objects one transaction expires at most.
const EXPIRE_BATCH: usize = 1000;

/// What one maintenance run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Objects deleted by expiration rules.
    pub expired: usize,
    /// Objects moved to InfrequentAccess.
    pub transitioned: usize,
    /// Uploads aborted (expired or by rule).
    pub aborted_uploads: usize,
}

/// The stored rules.
pub(crate) fn rules(conn: &Connection) -> R2Result<Vec<LifecycleRule>> {
    Ok(index::get_config(conn, RULES_CONFIG)?
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default())
}

fn cutoff(now: u64, days: u32) -> i64 {
    now.saturating_sub(u64::from(days) * DAY_MS) as i64
}

/// Applies every rule and the upload expiry once.
pub(crate) async fn run(inner: &Arc<Inner>) -> R2Result<MaintenanceReport> {
    let rules_list = inner.read(|_, tx| rules(tx)).await?;
    // Uploads: the bucket's expiry, then per-rule limits.
    let notify = inner.all_rules();
    let aborted = inner
        .write(move |inner, tx| {
            let mut report = MaintenanceReport::default();
            let mut garbage = Vec::new();
            let now = inner.clock.now_ms();
            let mut n = multipart::abort_older_than(
                tx,
                cutoff(now, inner.limits.multipart_expiry_days) as u64,
                "",
                &mut garbage,
            )?;
            for rule in &rules_list {
                if let Some(days) = rule.abort_multipart_after_days {
                    n += multipart::abort_older_than(
                        tx,
                        cutoff(now, days) as u64,
                        &rule.prefix,
                        &mut garbage,
                    )?;
                }
                if let Some(days) = rule.transition_to_infrequent_access_after_days {
                    let upper = prefix_end(rule.prefix.as_bytes());
                    let moved = tx
                        .execute(
                            "UPDATE objects SET class = 'InfrequentAccess'
                             WHERE class = 'Standard' AND uploaded <= ?1 AND key >= ?2
                               AND (?3 IS NULL OR key < ?3)",
                            params![cutoff(now, days), rule.prefix.as_bytes(), upper],
                        )
                        .during("applying lifecycle transitions")?;
                    report.transitioned += moved;
                }
            }
            Ok(Committed {
                value: (n, rules_list, report),
                garbage,
                events: false,
            })
        })
        .await?;
    let (n, rules_list, mut report) = aborted;
    report.aborted_uploads = n;
    for rule in rules_list {
        let Some(days) = rule.expire_after_days else {
            continue;
        };
        loop {
            let rule = rule.clone();
            let notify = notify.clone();
            let expired = inner
                .write(move |inner, tx| expire_batch(inner, tx, &rule, days, &notify))
                .await?;
            report.expired += expired;
            if expired < EXPIRE_BATCH {
                break;
            }
        }
    }
    Ok(report)
}

fn expire_batch(
    inner: &Inner,
    tx: &Connection,
    rule: &LifecycleRule,
    days: u32,
    notify: &[NotificationRule],
) -> R2Result<Committed<usize>> {
    let now = inner.clock.now_ms();
    let upper = prefix_end(rule.prefix.as_bytes());
    let keys: Vec<Vec<u8>> = {
        let mut st = tx
            .prepare_cached(
                "SELECT key FROM objects WHERE uploaded <= ?1 AND key >= ?2
                 AND (?3 IS NULL OR key < ?3) LIMIT ?4",
            )
            .during("applying lifecycle expiration")?;
        let rows = st
            .query_map(
                params![
                    cutoff(now, days),
                    rule.prefix.as_bytes(),
                    upper,
                    EXPIRE_BATCH as i64
                ],
                |r| r.get(0),
            )
            .during("applying lifecycle expiration")?;
        rows.collect::<Result<_, _>>()
            .during("applying lifecycle expiration")?
    };
    let mut garbage = Vec::new();
    let mut events = false;
    for key in &keys {
        let key = String::from_utf8_lossy(key).into_owned();
        garbage.extend(index::remove_object(tx, &key)?.unwrap_or_default());
        let wanted: Vec<NotificationRule> = notify
            .iter()
            .filter(|r| r.matches(R2EventAction::LifecycleDeletion, &key))
            .cloned()
            .collect();
        events |= !wanted.is_empty();
        index::enqueue_events(
            tx,
            &wanted,
            R2EventAction::LifecycleDeletion,
            &key,
            None,
            None,
            now,
        )?;
    }
    Ok(Committed {
        value: keys.len(),
        garbage,
        events,
    })
}

/// The maintenance task: runs every `interval` by the clock. Holds the bucket only while
/// running, so dropping the bucket stops it.
pub(crate) async fn maintenance_loop(bucket: Weak<Inner>, clock: SharedClock, interval: Duration) {
    let step = (interval.as_millis() as u64).max(1);
    let mut next = clock.now_ms() + step;
    loop {
        clock.sleep_until(next).await;
        // The next run is due one interval after this one started, not after it ended: a
        // clock that moves while the run is in progress must not push the next run past it.
        let started = clock.now_ms();
        let Some(inner) = bucket.upgrade() else {
            return;
        };
        if let Err(e) = run(&inner).await {
            tracing::warn!(bucket = %inner.name, error = %e, "lifecycle maintenance failed");
        }
        drop(inner);
        next = started + step;
    }
}
