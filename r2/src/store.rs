//! [`R2Store`]: a folder of buckets, implementing [`R2Buckets`].
//!
//! Each bucket is a subfolder named after it (bucket names are validated, so they are safe
//! folder names) holding `bucket.json` (creation time), the index and the blob folder. A
//! deleted bucket's folder is first renamed to a hidden trash name, so a crash mid-delete
//! never leaves a half bucket visible; trash is removed when the store opens.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bindery_core::r2::{BucketInfo, R2Bucket, R2Buckets, R2Error, R2Result, validate_bucket_name};
use tokio::sync::Mutex;

use crate::bucket::{Bucket, R2Builder};
use crate::index::EngineExt;
use crate::run_blocking;

const INFO_FILE: &str = "bucket.json";
const TRASH_PREFIX: &str = ".trash-";

/// A folder of R2 buckets.
pub struct R2Store {
    root: PathBuf,
    builder: R2Builder,
    open: Mutex<HashMap<String, Bucket>>,
}

impl std::fmt::Debug for R2Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("R2Store")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl R2Builder {
    /// Opens (creating if needed) a store of buckets in the folder `root`; every bucket is
    /// opened with these settings.
    pub async fn open_store(self, root: impl AsRef<Path>) -> R2Result<R2Store> {
        let root = root.as_ref().to_owned();
        let r = root.clone();
        run_blocking(move || {
            std::fs::create_dir_all(&r).during("creating the store folder")?;
            for entry in std::fs::read_dir(&r).during("reading the store folder")? {
                let entry = entry.during("reading the store folder")?;
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(TRASH_PREFIX)
                {
                    std::fs::remove_dir_all(entry.path()).during("removing a deleted bucket")?;
                }
            }
            Ok(())
        })
        .await?;
        Ok(R2Store {
            root,
            builder: self,
            open: Mutex::new(HashMap::new()),
        })
    }
}

impl R2Store {
    /// A builder with default settings (see [`R2Builder::open_store`]).
    pub fn builder() -> R2Builder {
        R2Builder::default()
    }

    /// Opens (creating if needed) a store in `root` with default settings.
    pub async fn open(root: impl AsRef<Path>) -> R2Result<Self> {
        R2Builder::default().open_store(root).await
    }

    /// The concrete handle of an existing bucket.
    pub async fn open_bucket(&self, name: &str) -> R2Result<Bucket> {
        validate_bucket_name(name)?;
        let mut open = self.open.lock().await;
        if let Some(b) = open.get(name) {
            return Ok(b.clone());
        }
        let dir = self.root.join(name);
        let exists = {
            let dir = dir.clone();
            run_blocking(move || Ok(dir.join(INFO_FILE).exists())).await?
        };
        if !exists {
            return Err(R2Error::NoSuchBucket {
                name: name.to_owned(),
            });
        }
        let bucket = self.builder.clone().open_bucket(&dir, name).await?;
        open.insert(name.to_owned(), bucket.clone());
        Ok(bucket)
    }
}

fn read_info(dir: &Path, name: &str) -> Option<BucketInfo> {
    let text = std::fs::read_to_string(dir.join(INFO_FILE)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(BucketInfo {
        name: name.to_owned(),
        creation_date: v.get("created")?.as_u64()?,
    })
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

#[async_trait]
impl R2Buckets for R2Store {
    async fn create_bucket(&self, name: &str) -> R2Result<BucketInfo> {
        validate_bucket_name(name)?;
        let mut open = self.open.lock().await;
        let dir = self.root.join(name);
        let root = self.root.clone();
        let created = self.builder.clock.now_ms();
        let n = name.to_owned();
        run_blocking(move || {
            if dir.join(INFO_FILE).exists() {
                return Err(R2Error::BucketAlreadyExists { name: n });
            }
            std::fs::create_dir_all(&dir).during("creating a bucket")?;
            let tmp = dir.join("bucket.json.tmp");
            std::fs::write(&tmp, format!("{{\"created\":{created}}}"))
                .during("creating a bucket")?;
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .during("creating a bucket")?;
            std::fs::rename(&tmp, dir.join(INFO_FILE)).during("creating a bucket")?;
            sync_dir(&dir).during("creating a bucket")?;
            sync_dir(&root).during("creating a bucket")?;
            Ok(())
        })
        .await?;
        let bucket = self
            .builder
            .clone()
            .open_bucket(self.root.join(name), name)
            .await?;
        open.insert(name.to_owned(), bucket);
        Ok(BucketInfo {
            name: name.to_owned(),
            creation_date: created,
        })
    }

    async fn list_buckets(&self) -> R2Result<Vec<BucketInfo>> {
        let root = self.root.clone();
        run_blocking(move || {
            let mut out = Vec::new();
            for entry in std::fs::read_dir(&root).during("listing buckets")? {
                let entry = entry.during("listing buckets")?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if validate_bucket_name(&name).is_err() {
                    continue;
                }
                if let Some(info) = read_info(&entry.path(), &name) {
                    out.push(info);
                }
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
    }

    async fn delete_bucket(&self, name: &str) -> R2Result<()> {
        let bucket = self.open_bucket(name).await?;
        let mut open = self.open.lock().await;
        if !bucket.is_empty().await? {
            return Err(R2Error::BucketNotEmpty {
                name: name.to_owned(),
            });
        }
        bucket.close();
        open.remove(name);
        drop(bucket);
        let root = self.root.clone();
        let dir = self.root.join(name);
        let trash = self
            .root
            .join(format!("{TRASH_PREFIX}{}", crate::blob::BlobDir::new_id()));
        run_blocking(move || {
            std::fs::rename(&dir, &trash).during("deleting a bucket")?;
            sync_dir(&root).during("deleting a bucket")?;
            std::fs::remove_dir_all(&trash).during("deleting a bucket")?;
            Ok(())
        })
        .await
    }

    async fn bucket(&self, name: &str) -> R2Result<Arc<dyn R2Bucket>> {
        Ok(Arc::new(self.open_bucket(name).await?))
    }
}
