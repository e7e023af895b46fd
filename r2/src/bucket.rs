//! [`Bucket`]: one R2 bucket on disk (a blob folder plus a SQLite index), implementing
//! [`R2Bucket`].

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bindery_core::r2::{
    GetOptions, LifecycleRule, ListOptions, ListUploadsOptions, MultipartOptions, NotificationRule,
    PutOptions, R2Body, R2Bucket, R2Checksums, R2Error, R2EventAction, R2GetResult, R2Limits,
    R2MultipartUpload, R2Object, R2ObjectBody, R2Objects, R2PartInfo, R2Result, R2UploadedPart,
    R2Uploads, ServedRange, StorageClass, validate_custom_metadata, validate_key,
};
use bindery_core::{SharedClock, SystemClock};
use parking_lot::{Mutex, RwLock};
use rusqlite::{Connection, Transaction};
use tokio::sync::Notify;

use crate::blob::{self, BlobDir};
use crate::index::{self, BlobRef, EngineExt, Index, ObjectRow};
use crate::{events, lifecycle, list, multipart, run_blocking};

/// File name of a bucket's index inside its folder.
pub(crate) const INDEX_FILE: &str = "index.sqlite";
/// Folder of a bucket's blobs inside its folder.
pub(crate) const BLOB_DIR: &str = "blobs";

/// Configures and opens buckets (and stores of buckets).
#[derive(Clone)]
pub struct R2Builder {
    pub(crate) clock: SharedClock,
    pub(crate) limits: R2Limits,
    pub(crate) default_storage_class: StorageClass,
    pub(crate) maintenance_interval: Duration,
}

impl Default for R2Builder {
    fn default() -> Self {
        Self {
            clock: SystemClock::shared(),
            limits: R2Limits::cloudflare(),
            default_storage_class: StorageClass::Standard,
            maintenance_interval: Duration::from_secs(3600),
        }
    }
}

impl R2Builder {
    /// The clock for upload times, conditionals, lifecycle rules and upload expiry.
    /// Default: [`SystemClock`].
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The limits to enforce. Default: [`R2Limits::cloudflare`].
    pub fn limits(mut self, limits: R2Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The storage class of objects put without one. Default: Standard.
    pub fn default_storage_class(mut self, class: StorageClass) -> Self {
        self.default_storage_class = class;
        self
    }

    /// How often (by the clock) lifecycle rules and upload expiry run. Default: 1 hour.
    pub fn maintenance_interval(mut self, interval: Duration) -> Self {
        self.maintenance_interval = interval;
        self
    }

    /// Opens (creating if needed) the bucket `name` stored in the folder `dir`: its index
    /// and blob folder. Orphaned blobs (from interrupted puts) are deleted here.
    ///
    /// Only one handle per folder may be open at a time (clone the handle to share it).
    ///
    /// # Errors
    ///
    /// [`R2Error::Engine`] if the folder or index cannot be opened.
    pub async fn open_bucket(self, dir: impl AsRef<Path>, name: &str) -> R2Result<Bucket> {
        let dir = dir.as_ref().to_owned();
        let name = name.to_owned();
        let (index, blobs, reclaimed) = run_blocking(move || {
            std::fs::create_dir_all(&dir).during("creating the bucket folder")?;
            let index = Index::open(&dir.join(INDEX_FILE))?;
            let blobs = BlobDir::open(&dir.join(BLOB_DIR)).during("opening the blob folder")?;
            let live = index.read(|tx| index::live_blobs(tx))?;
            let reclaimed = blobs.reclaim(&live).during("reclaiming orphaned blobs")?;
            Ok((index, blobs, reclaimed))
        })
        .await?;
        if reclaimed > 0 {
            tracing::info!(bucket = %name, reclaimed, "deleted orphaned blobs");
        }
        let inner = Arc::new(Inner {
            name,
            index,
            blobs: Arc::new(blobs),
            clock: self.clock,
            limits: self.limits,
            default_class: self.default_storage_class,
            rules: RwLock::new(Vec::new()),
            outbox_wake: Arc::new(Notify::new()),
            drain_lock: tokio::sync::Mutex::new(()),
            maintenance_interval: self.maintenance_interval,
            closed: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
            reclaimed_at_open: reclaimed,
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let mut tasks = inner.tasks.lock();
            tasks.push(rt.spawn(events::deliver_loop(
                Arc::downgrade(&inner),
                Arc::clone(&inner.outbox_wake),
                Arc::clone(&inner.clock),
            )));
            tasks.push(rt.spawn(lifecycle::maintenance_loop(
                Arc::downgrade(&inner),
                Arc::clone(&inner.clock),
                inner.maintenance_interval,
            )));
        }
        Ok(Bucket { inner })
    }
}

/// One R2 bucket stored on this machine. Cheap to clone; clones share the bucket.
///
/// Background tasks (event delivery, lifecycle rules, upload expiry) run on the Tokio runtime
/// the bucket was opened in and stop when the last clone is dropped.
#[derive(Clone)]
pub struct Bucket {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub name: String,
    pub index: Index,
    pub blobs: Arc<BlobDir>,
    pub clock: SharedClock,
    pub limits: R2Limits,
    pub default_class: StorageClass,
    pub rules: RwLock<Vec<NotificationRule>>,
    pub outbox_wake: Arc<Notify>,
    /// Held while draining the outbox, so that two drains never send the same event.
    pub drain_lock: tokio::sync::Mutex<()>,
    pub maintenance_interval: Duration,
    pub closed: AtomicBool,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    reclaimed_at_open: usize,
}

impl Drop for Inner {
    /// Stops the background tasks and lets a refill of spare blob files finish, so that the
    /// spares are removed with the blob folder handle and a clean close leaves no orphans.
    fn drop(&mut self) {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
        self.blobs.settle();
        self.blobs.discard_spares();
    }
}

/// What a write transaction leaves to do once it has committed.
pub(crate) struct Committed<T> {
    pub value: T,
    /// Blobs no longer referenced.
    pub garbage: Vec<String>,
    /// Whether events were queued.
    pub events: bool,
}

impl Inner {
    pub fn check_open(&self) -> R2Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(R2Error::NoSuchBucket {
                name: self.name.clone(),
            });
        }
        Ok(())
    }

    /// The notification rules that want `action` on `key`.
    pub fn rules_for(&self, action: R2EventAction, key: &str) -> Vec<NotificationRule> {
        self.rules
            .read()
            .iter()
            .filter(|r| r.matches(action, key))
            .cloned()
            .collect()
    }

    /// Every notification rule, for transactions that may emit several kinds of event.
    pub fn all_rules(&self) -> Vec<NotificationRule> {
        self.rules.read().clone()
    }

    /// Runs a write transaction on a blocking thread, then deletes the blobs it released
    /// and wakes event delivery.
    pub async fn write<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Inner, &Connection) -> R2Result<Committed<T>> + Send + 'static,
    ) -> R2Result<T> {
        let inner = Arc::clone(self);
        let done = run_blocking(move || {
            // This thread keeps `inner` alive until the reply, so the job's handle is never
            // the last one (the bucket is never dropped on the committer thread).
            let job_inner = Arc::clone(&inner);
            let done = inner.index.write(move |conn| f(&job_inner, conn))?;
            inner.blobs.remove(&done.garbage);
            Ok(done)
        })
        .await?;
        if done.events {
            self.outbox_wake.notify_one();
        }
        Ok(done.value)
    }

    /// Runs a read on a blocking thread.
    pub async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Inner, &Transaction<'_>) -> R2Result<T> + Send + 'static,
    ) -> R2Result<T> {
        let inner = Arc::clone(self);
        run_blocking(move || inner.index.read(|tx| f(&inner, tx))).await
    }
}

impl Bucket {
    /// A builder with default settings.
    pub fn builder() -> R2Builder {
        R2Builder::default()
    }

    /// Opens (creating if needed) the bucket `name` in folder `dir` with default settings.
    pub async fn open(dir: impl AsRef<Path>, name: &str) -> R2Result<Self> {
        R2Builder::default().open_bucket(dir, name).await
    }

    /// Applies lifecycle rules and aborts expired uploads now (the background task does this
    /// every maintenance interval). Returns what it did.
    pub async fn run_maintenance(&self) -> R2Result<lifecycle::MaintenanceReport> {
        lifecycle::run(&self.inner).await
    }

    /// Delivers queued event notifications now; returns how many were delivered.
    pub async fn deliver_events(&self) -> R2Result<usize> {
        events::drain(&self.inner).await
    }

    /// Number of orphaned blobs deleted when this bucket was opened.
    pub fn reclaimed_at_open(&self) -> usize {
        self.inner.reclaimed_at_open
    }

    /// Number of blob files in the bucket's folder (objects' bodies and parts).
    pub async fn blob_count(&self) -> R2Result<usize> {
        let blobs = Arc::clone(&self.inner.blobs);
        run_blocking(move || blobs.count().during("counting blobs")).await
    }

    /// Whether the bucket holds no objects.
    pub async fn is_empty(&self) -> R2Result<bool> {
        self.inner
            .read(|_, tx| {
                tx.query_row("SELECT NOT EXISTS(SELECT 1 FROM objects)", [], |r| r.get(0))
                    .during("checking for objects")
            })
            .await
    }

    pub(crate) fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        for task in self.inner.tasks.lock().drain(..) {
            task.abort();
        }
    }

    async fn head_row(&self, key: &str) -> R2Result<Option<ObjectRow>> {
        let key = key.to_owned();
        self.inner
            .read(move |_, tx| index::get_object(tx, &key))
            .await
    }
}

/// Bytes of a checksum as lower-case hex.
fn hex_of(b: &[u8]) -> String {
    hex::encode(b)
}

#[async_trait]
impl R2Bucket for Bucket {
    fn name(&self) -> &str {
        &self.inner.name
    }

    async fn head(&self, key: &str) -> R2Result<Option<R2Object>> {
        self.inner.check_open()?;
        validate_key(key, &self.inner.limits)?;
        Ok(self.head_row(key).await?.map(|r| r.to_object()))
    }

    async fn get(&self, key: &str, options: GetOptions) -> R2Result<Option<R2GetResult>> {
        self.inner.check_open()?;
        validate_key(key, &self.inner.limits)?;
        for _ in 0..64 {
            let k = key.to_owned();
            let found = self
                .inner
                .read(move |_, tx| {
                    let Some(row) = index::get_object(tx, &k)? else {
                        return Ok(None);
                    };
                    let blobs = index::object_blobs(tx, &row.version)?;
                    Ok(Some((row, blobs)))
                })
                .await?;
            let Some((row, segments)) = found else {
                return Ok(None);
            };
            let mut object = row.to_object();
            if let Some(cond) = &options.only_if
                && !cond.passes(Some((&row.etag, row.uploaded)))
            {
                return Ok(Some(R2GetResult::PreconditionFailed(object)));
            }
            let (offset, length) = match options.range {
                Some(range) => {
                    let (o, l) = range.resolve(row.size)?;
                    object.range = Some(ServedRange {
                        offset: o,
                        length: l,
                    });
                    (o, l)
                }
                None => (0, row.size),
            };
            let ids: Vec<String> = segments.iter().map(|s| s.blob.clone()).collect();
            let Some(guard) = self.inner.blobs.pin(ids) else {
                // Replaced between the read and the pin: read the new row.
                continue;
            };
            let body = blob::read_stream(
                Arc::clone(&self.inner.blobs),
                guard,
                segments,
                offset,
                length,
            );
            return Ok(Some(R2GetResult::Body(R2ObjectBody { object, body })));
        }
        Err(R2Error::engine(
            "get",
            "the object kept changing while it was being opened",
        ))
    }

    async fn put(
        &self,
        key: &str,
        body: R2Body,
        options: PutOptions,
    ) -> R2Result<Option<R2Object>> {
        let inner = &self.inner;
        inner.check_open()?;
        validate_key(key, &inner.limits)?;
        validate_custom_metadata(&options.custom_metadata, &inner.limits)?;
        let requested = options
            .requested_checksum()?
            .map(|(alg, digest)| (alg, digest.to_vec()));
        // A cheap early check: a put that cannot pass does not stream its body to disk. The
        // decisive check runs again inside the commit.
        if let Some(cond) = &options.only_if {
            let current = self.head_row(key).await?;
            if !cond.passes(current.as_ref().map(|r| (r.etag.as_str(), r.uploaded))) {
                return Ok(None);
            }
        }
        let written = blob::write_body(
            &inner.blobs,
            body,
            inner.limits.max_put_bytes,
            requested.as_ref().map(|(a, _)| *a),
        )
        .await?;
        let mut checksums = R2Checksums {
            md5: Some(written.md5.to_vec()),
            ..Default::default()
        };
        if let Some((alg, expected)) = &requested {
            let actual = written.extra.clone().unwrap_or_default();
            if &actual != expected {
                blob::discard(&inner.blobs, &written.id);
                return Err(R2Error::BadDigest {
                    algorithm: alg.name(),
                    provided: hex_of(expected),
                    actual: hex_of(&actual),
                });
            }
            checksums.set(*alg, actual);
        }
        let row = ObjectRow {
            key: key.to_owned(),
            version: BlobDir::new_id(),
            size: written.size,
            etag: hex_of(&written.md5),
            uploaded: 0,
            http: options.http_metadata,
            custom: options.custom_metadata,
            checksums,
            class: options.storage_class.unwrap_or(inner.default_class),
        };
        let rules = inner.rules_for(R2EventAction::PutObject, key);
        let blob_id = written.id.clone();
        let only_if = options.only_if;
        let outcome = inner
            .write(move |inner, tx| {
                let current = index::get_object(tx, &row.key)?;
                if let Some(cond) = &only_if
                    && !cond.passes(current.as_ref().map(|r| (r.etag.as_str(), r.uploaded)))
                {
                    return Ok(Committed {
                        value: None,
                        garbage: vec![written.id],
                        events: false,
                    });
                }
                let garbage = index::remove_object(tx, &row.key)?.unwrap_or_default();
                let mut row = row;
                row.uploaded = inner.clock.now_ms();
                let blobs = [BlobRef {
                    blob: written.id,
                    start: 0,
                    size: row.size,
                }];
                index::insert_object(tx, &row, &blobs)?;
                index::enqueue_events(
                    tx,
                    &rules,
                    R2EventAction::PutObject,
                    &row.key,
                    Some(row.size),
                    Some(&row.etag),
                    row.uploaded,
                )?;
                Ok(Committed {
                    value: Some(row.to_object()),
                    garbage,
                    events: !rules.is_empty(),
                })
            })
            .await;
        if outcome.is_err() {
            blob::discard(&inner.blobs, &blob_id);
        }
        outcome
    }

    async fn delete(&self, keys: &[String]) -> R2Result<()> {
        let inner = &self.inner;
        inner.check_open()?;
        if keys.len() > inner.limits.max_delete_keys {
            return Err(R2Error::TooManyKeys {
                count: keys.len(),
                limit: inner.limits.max_delete_keys,
            });
        }
        for key in keys {
            validate_key(key, &inner.limits)?;
        }
        if keys.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = keys
            .iter()
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let rules = inner.all_rules();
        inner
            .write(move |inner, tx| {
                let now = inner.clock.now_ms();
                let mut garbage = Vec::new();
                let mut events = false;
                for key in &keys {
                    if let Some(blobs) = index::remove_object(tx, key)? {
                        garbage.extend(blobs);
                        let wanted: Vec<NotificationRule> = rules
                            .iter()
                            .filter(|r| r.matches(R2EventAction::DeleteObject, key))
                            .cloned()
                            .collect();
                        events |= !wanted.is_empty();
                        index::enqueue_events(
                            tx,
                            &wanted,
                            R2EventAction::DeleteObject,
                            key,
                            None,
                            None,
                            now,
                        )?;
                    }
                }
                Ok(Committed {
                    value: (),
                    garbage,
                    events,
                })
            })
            .await
    }

    async fn list(&self, options: ListOptions) -> R2Result<R2Objects> {
        self.inner.check_open()?;
        list::page_limit(options.limit, &self.inner.limits)?;
        self.inner
            .read(move |inner, tx| list::list(tx, &options, &inner.limits))
            .await
    }

    async fn create_multipart_upload(
        &self,
        key: &str,
        options: MultipartOptions,
    ) -> R2Result<R2MultipartUpload> {
        multipart::create(&self.inner, key, options).await
    }

    async fn upload_part(
        &self,
        upload: &R2MultipartUpload,
        part_number: u32,
        body: R2Body,
    ) -> R2Result<R2UploadedPart> {
        multipart::upload_part(&self.inner, upload, part_number, body).await
    }

    async fn complete_multipart_upload(
        &self,
        upload: &R2MultipartUpload,
        parts: &[R2UploadedPart],
    ) -> R2Result<R2Object> {
        multipart::complete(&self.inner, upload, parts).await
    }

    async fn abort_multipart_upload(&self, upload: &R2MultipartUpload) -> R2Result<()> {
        multipart::abort(&self.inner, upload).await
    }

    async fn list_multipart_uploads(&self, options: ListUploadsOptions) -> R2Result<R2Uploads> {
        multipart::list_uploads(&self.inner, options).await
    }

    async fn list_parts(&self, upload: &R2MultipartUpload) -> R2Result<Vec<R2PartInfo>> {
        multipart::list_parts(&self.inner, upload).await
    }

    async fn lifecycle_rules(&self) -> R2Result<Vec<LifecycleRule>> {
        self.inner.check_open()?;
        self.inner.read(|_, tx| lifecycle::rules(tx)).await
    }

    async fn set_lifecycle_rules(&self, rules: Vec<LifecycleRule>) -> R2Result<()> {
        self.inner.check_open()?;
        for rule in &rules {
            if rule.expire_after_days == Some(0)
                || rule.transition_to_infrequent_access_after_days == Some(0)
                || rule.abort_multipart_after_days == Some(0)
            {
                return Err(R2Error::InvalidArgument {
                    reason: format!("lifecycle rule {:?}: days must be at least 1", rule.id),
                });
            }
        }
        let text = index::to_json(&rules);
        self.inner
            .write(move |_, tx| {
                index::set_config(tx, lifecycle::RULES_CONFIG, &text)?;
                Ok(Committed {
                    value: (),
                    garbage: Vec::new(),
                    events: false,
                })
            })
            .await
    }

    async fn set_event_notifications(&self, rules: Vec<NotificationRule>) -> R2Result<()> {
        self.inner.check_open()?;
        *self.inner.rules.write() = rules;
        // Events queued earlier may have been waiting for a sink of this name.
        self.inner.outbox_wake.notify_one();
        Ok(())
    }
}
