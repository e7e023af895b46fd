//! Contracts shared by every Bindery primitive.
//!
//! Bindery implements, on one machine, the storage primitives of the Cloudflare developer
//! platform. This crate holds what the primitives have in common and nothing that stores data:
//!
//! - one object-safe trait per primitive ([`kv::KvStore`], and the contracts of D1, R2,
//!   Durable Objects, Queues and Vectorize in their modules), with option structs that
//!   implement [`Default`];
//! - [`ErrorKind`] and the [`PlatformError`] trait, through which every error names its
//!   category, the Cloudflare error code it carries and the HTTP status it maps to;
//! - [`Clock`], with [`SystemClock`] for production and [`ManualClock`] for tests, so that
//!   every expiry, delay and retention window is deterministic under test;
//! - [`Limits`], Cloudflare's documented limits as data, relaxed only explicitly.
//!
//! It does **not** contain engines: those live in `bindery-kv`, `bindery-d1`, and so on, and
//! the HTTP server lives in the `bindery` binary.
//!
//! # Example
//!
//! ```
//! use bindery_core::{Clock, ManualClock};
//! let clock = ManualClock::new(1_700_000_000_000);
//! clock.advance_secs(60);
//! assert_eq!(clock.now_secs(), 1_700_000_060);
//! ```

pub mod clock;
pub mod d1;
pub mod durable;
pub mod error;
pub mod kv;
pub mod limits;
pub mod queues;
pub mod r2;
pub mod stream;
pub mod vectorize;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use error::{CloudflareCode, ErrorKind, PlatformError};
pub use limits::Limits;
pub use stream::ByteStream;
