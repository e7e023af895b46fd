//! Multipart uploads: parts are blobs; completion links them into the object's blob list in
//! one transaction, without copying a byte.
//!
//! R2's rules: part numbers 1..=10000; every part but the last at least 5 MiB; every part but
//! the last the same size, and the last not larger; the etag is the hex MD5 of the parts'
//! binary MD5s followed by `-<parts>`. Uploads older than the expiry (7 days by the clock)
//! are gone at once for every operation and reclaimed by the maintenance task.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bindery_core::r2::{
    HttpMetadata, ListUploadsOptions, MultipartOptions, R2Body, R2Checksums, R2Error,
    R2EventAction, R2MultipartUpload, R2Object, R2PartInfo, R2Result, R2UploadInfo, R2UploadedPart,
    R2Uploads, StorageClass, validate_custom_metadata, validate_key,
};
use md5::{Digest, Md5};
use rusqlite::{Connection, OptionalExtension, params};

use crate::blob::{self, BlobDir};
use crate::bucket::{Committed, Inner};
use crate::index::{self, BlobRef, EngineExt, ObjectRow, prefix_end};
use crate::list::{decode_upload_cursor, encode_upload_cursor, page_limit};

const DAY_MS: u64 = 86_400_000;

/// An upload's row.
pub(crate) struct UploadRow {
    pub key: String,
    pub http: HttpMetadata,
    pub custom: BTreeMap<String, String>,
    pub class: StorageClass,
}

/// The instant (ms) before which uploads have expired.
pub(crate) fn expiry_cutoff(inner: &Inner) -> u64 {
    inner
        .clock
        .now_ms()
        .saturating_sub(u64::from(inner.limits.multipart_expiry_days) * DAY_MS)
}

/// The live upload `upload_id` for `key`, or `NoSuchUpload`.
fn live_upload(
    inner: &Inner,
    conn: &Connection,
    upload: &R2MultipartUpload,
) -> R2Result<UploadRow> {
    let row = conn
        .prepare_cached(
            "SELECT key, initiated, http, custom, class FROM uploads WHERE upload_id = ?1",
        )
        .and_then(|mut st| {
            st.query_row([&upload.upload_id], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .optional()
        })
        .during("reading an upload")?;
    let missing = || R2Error::NoSuchUpload {
        upload_id: upload.upload_id.clone(),
    };
    let Some((key, initiated, http, custom, class)) = row else {
        return Err(missing());
    };
    if key != upload.key.as_bytes() || initiated <= expiry_cutoff(inner) {
        return Err(missing());
    }
    Ok(UploadRow {
        key: upload.key.clone(),
        http: serde_json::from_str(&http).unwrap_or_default(),
        custom: serde_json::from_str(&custom).unwrap_or_default(),
        class: StorageClass::parse(&class).unwrap_or_default(),
    })
}

pub(crate) async fn create(
    inner: &Arc<Inner>,
    key: &str,
    options: MultipartOptions,
) -> R2Result<R2MultipartUpload> {
    inner.check_open()?;
    validate_key(key, &inner.limits)?;
    validate_custom_metadata(&options.custom_metadata, &inner.limits)?;
    let upload = R2MultipartUpload {
        key: key.to_owned(),
        upload_id: BlobDir::new_id(),
    };
    let row = upload.clone();
    inner
        .write(move |inner, tx| {
            tx.execute(
                "INSERT INTO uploads(upload_id, key, initiated, http, custom, class)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    row.upload_id,
                    row.key.as_bytes(),
                    inner.clock.now_ms() as i64,
                    index::to_json(&options.http_metadata),
                    index::to_json(&options.custom_metadata),
                    options
                        .storage_class
                        .unwrap_or(inner.default_class)
                        .as_str(),
                ],
            )
            .during("creating an upload")?;
            Ok(Committed {
                value: (),
                garbage: Vec::new(),
                events: false,
            })
        })
        .await?;
    Ok(upload)
}

pub(crate) async fn upload_part(
    inner: &Arc<Inner>,
    upload: &R2MultipartUpload,
    part_number: u32,
    body: R2Body,
) -> R2Result<R2UploadedPart> {
    inner.check_open()?;
    validate_key(&upload.key, &inner.limits)?;
    if part_number == 0 || part_number > inner.limits.max_parts {
        return Err(R2Error::InvalidPartNumber {
            part_number,
            max: inner.limits.max_parts,
        });
    }
    {
        let upload = upload.clone();
        inner
            .read(move |inner, tx| live_upload(inner, tx, &upload).map(|_| ()))
            .await?;
    }
    let written = blob::write_body(&inner.blobs, body, inner.limits.max_put_bytes, None).await?;
    let etag = hex::encode(written.md5);
    let upload = upload.clone();
    let part = R2UploadedPart {
        part_number,
        etag: etag.clone(),
    };
    let blob_id = written.id.clone();
    let outcome = inner
        .write(move |inner, tx| {
            live_upload(inner, tx, &upload)?;
            let old: Option<String> = tx
                .query_row(
                    "SELECT blob FROM parts WHERE upload_id = ?1 AND part_number = ?2",
                    params![upload.upload_id, part_number],
                    |r| r.get(0),
                )
                .optional()
                .during("storing a part")?;
            tx.execute(
                "INSERT INTO parts(upload_id, part_number, blob, size, etag, uploaded)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(upload_id, part_number) DO UPDATE SET
                   blob = excluded.blob, size = excluded.size, etag = excluded.etag,
                   uploaded = excluded.uploaded",
                params![
                    upload.upload_id,
                    part_number,
                    written.id,
                    written.size as i64,
                    etag,
                    inner.clock.now_ms() as i64
                ],
            )
            .during("storing a part")?;
            Ok(Committed {
                value: (),
                garbage: old.into_iter().collect(),
                events: false,
            })
        })
        .await;
    if outcome.is_err() {
        blob::discard(&inner.blobs, &blob_id);
    }
    outcome.map(|()| part)
}

struct StoredPart {
    blob: String,
    size: u64,
    etag: String,
}

fn stored_parts(tx: &Connection, upload_id: &str) -> R2Result<HashMap<u32, StoredPart>> {
    let mut st = tx
        .prepare_cached("SELECT part_number, blob, size, etag FROM parts WHERE upload_id = ?1")
        .during("reading parts")?;
    let rows = st
        .query_map([upload_id], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                StoredPart {
                    blob: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                    etag: r.get(3)?,
                },
            ))
        })
        .during("reading parts")?;
    rows.collect::<Result<_, _>>().during("reading parts")
}

/// Removes an upload and its parts; returns the parts' blobs.
fn drop_upload(tx: &Connection, upload_id: &str) -> R2Result<Vec<String>> {
    let blobs = stored_parts(tx, upload_id)?
        .into_values()
        .map(|p| p.blob)
        .collect();
    tx.execute("DELETE FROM parts WHERE upload_id = ?1", [upload_id])
        .during("removing an upload")?;
    tx.execute("DELETE FROM uploads WHERE upload_id = ?1", [upload_id])
        .during("removing an upload")?;
    Ok(blobs)
}

/// Strips the quotes an HTTP client may leave around an etag.
fn bare(etag: &str) -> &str {
    etag.trim().trim_matches('"')
}

pub(crate) async fn complete(
    inner: &Arc<Inner>,
    upload: &R2MultipartUpload,
    parts: &[R2UploadedPart],
) -> R2Result<R2Object> {
    inner.check_open()?;
    validate_key(&upload.key, &inner.limits)?;
    let max = inner.limits.max_parts;
    if parts.is_empty() {
        return Err(R2Error::InvalidPart {
            part_number: 0,
            reason: "is missing: a completion needs at least one part".into(),
        });
    }
    if parts.len() > max as usize {
        return Err(R2Error::InvalidArgument {
            reason: format!("{} parts given; the limit is {max}", parts.len()),
        });
    }
    let mut listed = parts.to_vec();
    listed.sort_by_key(|p| p.part_number);
    for w in listed.windows(2) {
        if w[0].part_number == w[1].part_number {
            return Err(R2Error::InvalidPart {
                part_number: w[0].part_number,
                reason: "is listed twice".into(),
            });
        }
    }
    if let Some(p) = listed
        .iter()
        .find(|p| p.part_number == 0 || p.part_number > max)
    {
        return Err(R2Error::InvalidPartNumber {
            part_number: p.part_number,
            max,
        });
    }
    let upload = upload.clone();
    let rules = inner.rules_for(R2EventAction::CompleteMultipartUpload, &upload.key);
    inner
        .write(move |inner, tx| {
            let up = live_upload(inner, tx, &upload)?;
            let mut stored = stored_parts(tx, &upload.upload_id)?;
            let mut chosen = Vec::with_capacity(listed.len());
            for p in &listed {
                match stored.remove(&p.part_number) {
                    Some(s) if bare(&s.etag) == bare(&p.etag) => chosen.push((p.part_number, s)),
                    Some(_) => {
                        return Err(R2Error::InvalidPart {
                            part_number: p.part_number,
                            reason: format!("has another etag than {:?}", p.etag),
                        });
                    }
                    None => {
                        return Err(R2Error::InvalidPart {
                            part_number: p.part_number,
                            reason: "was not uploaded".into(),
                        });
                    }
                }
            }
            check_sizes(&chosen, inner.limits.min_part_bytes)?;
            let total: u64 = chosen.iter().map(|(_, s)| s.size).sum();
            if total > inner.limits.max_object_bytes {
                return Err(R2Error::EntityTooLarge {
                    len: total,
                    limit: inner.limits.max_object_bytes,
                });
            }
            let mut md5s = Md5::new();
            let mut blobs = Vec::with_capacity(chosen.len());
            let mut start = 0;
            for (_, s) in &chosen {
                let digest = hex::decode(bare(&s.etag)).map_err(|e| {
                    R2Error::engine("completing an upload", format!("stored part etag: {e}"))
                })?;
                md5s.update(&digest);
                blobs.push(BlobRef {
                    blob: s.blob.clone(),
                    start,
                    size: s.size,
                });
                start += s.size;
            }
            let etag = format!("{}-{}", hex::encode(md5s.finalize()), chosen.len());
            // Parts uploaded but not listed are discarded.
            let mut garbage: Vec<String> = stored.into_values().map(|s| s.blob).collect();
            tx.execute(
                "DELETE FROM parts WHERE upload_id = ?1",
                [&upload.upload_id],
            )
            .during("completing an upload")?;
            tx.execute(
                "DELETE FROM uploads WHERE upload_id = ?1",
                [&upload.upload_id],
            )
            .during("completing an upload")?;
            garbage.extend(index::remove_object(tx, &up.key)?.unwrap_or_default());
            let row = ObjectRow {
                key: up.key,
                version: BlobDir::new_id(),
                size: total,
                etag,
                uploaded: inner.clock.now_ms(),
                http: up.http,
                custom: up.custom,
                checksums: R2Checksums::default(),
                class: up.class,
            };
            index::insert_object(tx, &row, &blobs)?;
            index::enqueue_events(
                tx,
                &rules,
                R2EventAction::CompleteMultipartUpload,
                &row.key,
                Some(row.size),
                Some(&row.etag),
                row.uploaded,
            )?;
            Ok(Committed {
                value: row.to_object(),
                garbage,
                events: !rules.is_empty(),
            })
        })
        .await
}

/// R2's size rules over the listed parts, in part-number order.
fn check_sizes(chosen: &[(u32, StoredPart)], min: u64) -> R2Result<()> {
    let Some(((_, first), rest)) = chosen.split_first() else {
        return Ok(());
    };
    let last = chosen.len() - 1;
    for (i, (number, part)) in chosen.iter().enumerate() {
        if i < last && part.size < min {
            return Err(R2Error::EntityTooSmall {
                part_number: *number,
                len: part.size,
                min,
            });
        }
    }
    for (i, (number, part)) in rest.iter().enumerate() {
        let is_last = i + 1 == rest.len();
        if (!is_last && part.size != first.size) || (is_last && part.size > first.size) {
            return Err(R2Error::PartSizeMismatch {
                part_number: *number,
                len: part.size,
                first: first.size,
            });
        }
    }
    Ok(())
}

pub(crate) async fn abort(inner: &Arc<Inner>, upload: &R2MultipartUpload) -> R2Result<()> {
    inner.check_open()?;
    validate_key(&upload.key, &inner.limits)?;
    let upload = upload.clone();
    inner
        .write(move |inner, tx| {
            live_upload(inner, tx, &upload)?;
            let garbage = drop_upload(tx, &upload.upload_id)?;
            Ok(Committed {
                value: (),
                garbage,
                events: false,
            })
        })
        .await
}

/// Aborts uploads initiated at or before `cutoff` whose key starts with `prefix`; returns how
/// many.
pub(crate) fn abort_older_than(
    tx: &Connection,
    cutoff: u64,
    prefix: &str,
    garbage: &mut Vec<String>,
) -> R2Result<usize> {
    let upper = prefix_end(prefix.as_bytes());
    let ids: Vec<String> = {
        let mut st = tx
            .prepare(
                "SELECT upload_id FROM uploads WHERE initiated <= ?1 AND key >= ?2
                 AND (?3 IS NULL OR key < ?3)",
            )
            .during("expiring uploads")?;
        let rows = st
            .query_map(params![cutoff as i64, prefix.as_bytes(), upper], |r| {
                r.get(0)
            })
            .during("expiring uploads")?;
        rows.collect::<Result<_, _>>().during("expiring uploads")?
    };
    for id in &ids {
        garbage.extend(drop_upload(tx, id)?);
    }
    Ok(ids.len())
}

pub(crate) async fn list_uploads(
    inner: &Arc<Inner>,
    options: ListUploadsOptions,
) -> R2Result<R2Uploads> {
    inner.check_open()?;
    let limit = page_limit(options.limit, &inner.limits)?;
    let after = options
        .cursor
        .as_deref()
        .map(decode_upload_cursor)
        .transpose()?;
    inner
        .read(move |inner, tx| {
            let prefix = options.prefix.unwrap_or_default();
            let upper = prefix_end(prefix.as_bytes());
            let (after_key, after_id) = after.unwrap_or_default();
            let mut st = tx
                .prepare_cached(
                    "SELECT key, upload_id, initiated, class FROM uploads
                     WHERE key >= ?1 AND (?2 IS NULL OR key < ?2) AND initiated > ?3
                       AND (key > ?4 OR (key = ?4 AND upload_id > ?5))
                     ORDER BY key, upload_id LIMIT ?6",
                )
                .during("listing uploads")?;
            let rows = st
                .query_map(
                    params![
                        prefix.as_bytes(),
                        upper,
                        expiry_cutoff(inner) as i64,
                        after_key.as_bytes(),
                        after_id,
                        (limit + 1) as i64
                    ],
                    |r| {
                        Ok((
                            r.get::<_, Vec<u8>>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)? as u64,
                            r.get::<_, String>(3)?,
                        ))
                    },
                )
                .during("listing uploads")?;
            let mut uploads = Vec::new();
            for row in rows {
                let (key, upload_id, initiated, class) = row.during("listing uploads")?;
                uploads.push(R2UploadInfo {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    upload_id,
                    initiated,
                    storage_class: StorageClass::parse(&class).unwrap_or_default(),
                });
            }
            let truncated = uploads.len() > limit;
            uploads.truncate(limit);
            let cursor = uploads
                .last()
                .filter(|_| truncated)
                .map(|last| encode_upload_cursor(&last.key, &last.upload_id));
            Ok(R2Uploads {
                uploads,
                truncated,
                cursor,
            })
        })
        .await
}

pub(crate) async fn list_parts(
    inner: &Arc<Inner>,
    upload: &R2MultipartUpload,
) -> R2Result<Vec<R2PartInfo>> {
    inner.check_open()?;
    let upload = upload.clone();
    inner
        .read(move |inner, tx| {
            live_upload(inner, tx, &upload)?;
            let mut st = tx
                .prepare_cached(
                    "SELECT part_number, etag, size, uploaded FROM parts
                     WHERE upload_id = ?1 ORDER BY part_number",
                )
                .during("listing parts")?;
            let rows = st
                .query_map([&upload.upload_id], |r| {
                    Ok(R2PartInfo {
                        part_number: r.get(0)?,
                        etag: r.get(1)?,
                        size: r.get::<_, i64>(2)? as u64,
                        uploaded: r.get::<_, i64>(3)? as u64,
                    })
                })
                .during("listing parts")?;
            rows.collect::<Result<_, _>>().during("listing parts")
        })
        .await
}
