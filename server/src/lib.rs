//! The `bindery` server: Bindery's primitives behind a self-hosted `workerd`.
//!
//! `bindery serve` listens on one address (default `127.0.0.1:8787`, data in `./.bindery`)
//! and serves, on that one listener:
//!
//! - the binding protocols workerd speaks to `external` services: `kvNamespace` ([`kv`]),
//!   `r2Bucket` ([`r2`]), D1 ([`d1`]) and `queue` producers ([`queue`]). workerd's config
//!   injects `X-Bindery-Binding: <kind>/<name>` (and `Authorization: Bearer <token>`) into
//!   every request of a binding; the named store is opened, or created, on first use (only
//!   declared ones with `--strict`);
//! - queue consumers and cron triggers of a project (`--wrangler`): batches go to the
//!   Worker's `queue()` handler and cron events to its `scheduled()` handler through a driver
//!   Worker that Bindery ships ([`consumers`], [`cron`], [`driver`]);
//! - an S3-compatible API over the same R2 buckets, with SigV4 authentication ([`s3`],
//!   [`sigv4`]), and the REST shapes of HTTP pull consumers ([`rest`]);
//! - R2 event notifications to queues, configured with `bindery r2 bucket notification`
//!   ([`notifications`]);
//! - `GET /healthz`.
//!
//! `bindery workerd-config` writes the workerd config that points a project's bindings at the
//! server, from its `wrangler.jsonc` or `wrangler.toml` ([`workerd_config`], [`wrangler`]);
//! `bindery kv|d1|r2 ...` mirror wrangler's data commands ([`data_commands`]).
//!
//! The server holds no storage logic: each protocol module decodes a request, calls a
//! `bindery-core` trait and encodes the result, and one table ([`errors`]) turns every error
//! into the shape the Worker (or S3 client) would get from the platform. SIGINT or SIGTERM
//! stops accepting connections, lets requests in flight finish, stops consumers and cron,
//! and closes every store.
//!
//! # What it is not
//!
//! Not a Workers runtime (workerd is) and not a multi-tenant service: one process, one data
//! folder, one optional bearer token (required to listen beyond loopback). KV's
//! `delete([keys])` is JS-RPC in workerd and cannot reach an HTTP backend. The S3 API is
//! path-style only, and does not verify `aws-chunked` chunk signatures (the request's own
//! signature, which covers the headers, is verified). Durable Objects and Vectorize are not
//! served: workerd cannot back them with an external service.
//!
//! # Example
//!
//! ```
//! use bindery::{AppState, Registry, router};
//! use bindery_core::SystemClock;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let app = router(AppState::new(Registry::new(dir.path(), SystemClock::shared(), None), None));
//! let request = axum::http::Request::builder()
//!     .method("PUT")
//!     .uri("/greeting?urlencoded=true")
//!     .header("x-bindery-binding", "kv/main")
//!     .body(axum::body::Body::from("hello"))?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! # Ok(()) }
//! ```

pub mod app;
pub mod body;
pub mod cli;
pub mod consumers;
pub mod cron;
pub mod d1;
pub mod data_commands;
pub mod driver;
pub mod errors;
pub mod kv;
pub mod notifications;
pub mod queue;
pub mod r2;
pub mod registry;
pub mod rest;
pub mod s3;
pub mod serve;
pub mod sigv4;
pub mod wire;
pub mod workerd_config;
pub mod wrangler;

pub use app::{AppState, router};
pub use registry::{Kind, Registry};
pub use serve::{ServeConfig, ServeError};
