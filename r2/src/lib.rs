//! Cloudflare R2 object storage on one machine.
//!
//! [`Bucket`] implements [`bindery_core::r2::R2Bucket`] and [`R2Store`] implements
//! [`bindery_core::r2::R2Buckets`] with R2's semantics: strongly consistent objects with HTTP
//! and custom metadata, MD5 etags and optional SHA-1/SHA-256/SHA-384/SHA-512 checksums
//! (verified, `BadDigest` on mismatch), ranged reads (offset/length/suffix), `onlyIf`
//! conditionals evaluated atomically with the write (create-if-absent, compare-and-swap),
//! list with prefix, delimiter, cursor and `start_after`, multipart uploads under R2's part
//! rules, storage classes, lifecycle rules and event notifications.
//!
//! # Storage
//!
//! Each bucket is a folder: bodies and parts are files named by random ids in `blobs/`
//! (never derived from the key, so `../x` is just a key), and a SQLite index (WAL,
//! `synchronous=FULL`) maps keys to versions, metadata and blob lists. A put streams the body
//! to a new blob in 1 MiB chunks while another thread hashes it (MD5, plus the one requested
//! checksum) and a third flushes what has been written every 32 MiB; it fsyncs the blob,
//! then commits the index row in one transaction in which `onlyIf` is evaluated. Readers see
//! the old object or the new one, never a mix, and a crash leaves no partial object: blobs no
//! row refers to (an interrupted put) are deleted when the bucket opens. Memory stays bounded
//! by the chunk size whatever the object size.
//!
//! Index writes go through one committer thread: changes submitted at the same time share
//! one transaction and one fsync (each in its own savepoint, so one failure never undoes
//! another). Small puts write into spare blob files created ahead in batches, so they need
//! no fsync of the blob folder. Multipart completion links the parts' blobs into the object
//! without copying; ranged reads cross part boundaries. SQLite was chosen over redb for the
//! index by the workspace's measurements of single-row durable commits (SQLite WAL FULL
//! about twice redb's rate) and for savepoints, which group commit relies on.
//!
//! # What it is not
//!
//! One copy of the data, on this machine: no replication, no jurisdictions, no SSE-C, no
//! public buckets or custom domains, no per-key write-rate limit. The 30-day minimum storage
//! of InfrequentAccess and its fees are not modelled. One handle per bucket folder per
//! process (clone it to share).
//!
//! # Limits
//!
//! [`R2Limits::cloudflare`] (the default): keys up to 1,024 bytes, custom metadata up to
//! 8,192 bytes, single puts and parts up to 5 GiB - 5 MiB, parts at least 5 MiB (except the
//! last), 10,000 parts, 1,000 keys per delete and per list page, uploads aborted after 7 days.
//!
//! # Example
//!
//! ```
//! use bindery_core::r2::{Conditional, PutOptions, R2Body, R2Bucket, R2BucketExt};
//! use bindery_r2::Bucket;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let bucket = Bucket::open(dir.path(), "photos").await?;
//! let created = bucket.put_bytes("cats/tabby.txt", "meow".into()).await?;
//! assert_eq!(created.etag, "4a4be40c96ac6314e91d93f38043a634"); // hex MD5 of the body
//! // Create-if-absent fails now that the key exists:
//! let again = PutOptions { only_if: Some(Conditional::if_absent()), ..Default::default() };
//! assert!(bucket.put("cats/tabby.txt", R2Body::from("purr"), again).await?.is_none());
//! assert_eq!(bucket.get_bytes("cats/tabby.txt").await?.as_deref(), Some(&b"meow"[..]));
//! # Ok(()) }
//! ```

mod blob;
mod bucket;
mod events;
mod index;
mod lifecycle;
mod list;
mod multipart;
mod store;

pub use bindery_core::r2::{R2Error, R2Limits, R2Result};
pub use bucket::{Bucket, R2Builder};
pub use lifecycle::MaintenanceReport;
pub use store::R2Store;

/// The MD5 digest of `data`, as R2 computes etags (hex-encode it for an etag).
pub fn md5_digest(data: &[u8]) -> [u8; 16] {
    use md5::Digest;
    md5::Md5::digest(data).into()
}

/// Runs a blocking call (file or index I/O) on Tokio's blocking pool.
pub(crate) async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> R2Result<T> + Send + 'static,
) -> R2Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| R2Error::engine("blocking task", e))?
}
