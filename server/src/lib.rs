//! The `bindery` server: Bindery's primitives behind a self-hosted `workerd`.
//!
//! `bindery serve` listens on one address (default `127.0.0.1:8787`) and serves the binding
//! protocols that workerd speaks to `external` services: its `kvNamespace` binding today, and
//! R2, D1 and queue bindings as their crates land. workerd's config injects
//! `X-Bindery-Binding: <kind>/<name>` (and `Authorization: Bearer <token>`) into every request
//! of a binding; the named store is opened, or created, on first use under the data folder
//! (default `./.bindery`). `bindery workerd-config` writes that workerd config from a
//! project's `wrangler.jsonc` or `wrangler.toml`.
//!
//! The server holds no storage logic: each protocol module decodes a request, calls a
//! `bindery-core` trait and encodes the result, and one table ([`errors`]) turns every error
//! into the shape the Worker would get from the platform.
//!
//! # What it is not
//!
//! Not a Workers runtime (workerd is) and not a multi-tenant service: one process, one data
//! folder, one optional bearer token. KV's `delete([keys])` is JS-RPC in workerd and cannot
//! reach an HTTP backend.
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
