//! The router: authentication, binding selection and dispatch to each protocol.
//!
//! A request that carries `X-Bindery-Binding: <kind>/<name>` is a binding request from
//! workerd: it is authenticated with the bearer token (when the server has one), the store
//! `<kind>/<name>` is opened on first use, and the request goes to that kind's protocol.
//! `GET /healthz` answers the server's health without authentication.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, Request, Response, StatusCode};

use crate::driver::DriverClient;
use crate::errors::{Protocol, ServerError, error_response};
use crate::registry::{Kind, Registry, RegistryError, parse_binding};
use crate::sigv4::Credentials;

/// The header that selects the resource of a binding request.
pub const BINDING_HEADER: &str = "x-bindery-binding";

/// Shared state of every request.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    token: Option<String>,
    started: Instant,
    driver: Option<DriverClient>,
    s3: Credentials,
}

/// Builds an [`AppState`].
#[derive(Debug)]
pub struct AppStateBuilder {
    registry: Registry,
    token: Option<String>,
    driver: Option<DriverClient>,
    s3: Option<Credentials>,
}

impl AppStateBuilder {
    /// The bearer token binding requests must carry. Default: none.
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    /// The driver Worker, for firing cron triggers on request. Default: none.
    pub fn driver(mut self, driver: DriverClient) -> Self {
        self.driver = Some(driver);
        self
    }

    /// The S3 API's credentials. Default: access key `bindery`, secret the token (or
    /// `bindery` without one).
    pub fn s3_credentials(mut self, creds: Credentials) -> Self {
        self.s3 = Some(creds);
        self
    }

    /// The state.
    pub fn build(self) -> AppState {
        let s3 = self.s3.unwrap_or_else(|| Credentials {
            access_key_id: "bindery".to_owned(),
            secret_access_key: self.token.clone().unwrap_or_else(|| "bindery".to_owned()),
        });
        AppState {
            inner: Arc::new(Inner {
                registry: self.registry,
                token: self.token,
                started: Instant::now(),
                driver: self.driver,
                s3,
            }),
        }
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("registry", &self.inner.registry)
            .field("token", &self.inner.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl AppState {
    /// State serving `registry`; with `token`, every binding request must carry
    /// `Authorization: Bearer <token>`. The S3 API accepts the access key `bindery` with the
    /// token as its secret (`bindery` without a token).
    pub fn new(registry: Registry, token: Option<String>) -> Self {
        Self::builder(registry).token(token).build()
    }

    /// A builder for the optional parts: token, driver, S3 credentials.
    pub fn builder(registry: Registry) -> AppStateBuilder {
        AppStateBuilder {
            registry,
            token: None,
            driver: None,
            s3: None,
        }
    }

    /// The stores.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Whether `Authorization` carries the token (always true without a token).
    fn authorized(&self, req: &Request<Body>) -> bool {
        let Some(token) = &self.inner.token else {
            return true;
        };
        let Some(value) = req.headers().get("authorization") else {
            return false;
        };
        let expected = format!("Bearer {token}");
        constant_time_eq(value.as_bytes(), expected.as_bytes())
    }
}

/// Compares without leaking where the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The server's routes, ready to serve or to test with `tower::ServiceExt::oneshot`.
pub fn router(state: AppState) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

fn protocol_of(kind: Kind) -> Protocol {
    match kind {
        Kind::Kv => Protocol::Kv,
        Kind::R2 => Protocol::R2,
        Kind::D1 => Protocol::D1,
        Kind::Queue => Protocol::Queue,
    }
}

async fn dispatch(State(state): State<AppState>, req: Request<Body>) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let binding = req.headers().get(BINDING_HEADER).cloned();
    let (label, response) = match binding {
        Some(value) => {
            let label = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (label, binding_request(&state, value.as_bytes(), req).await)
        }
        None => ("-".to_owned(), plain_request(&state, req).await),
    };
    tracing::info!(
        binding = %label,
        %method,
        path = %path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}

async fn binding_request(state: &AppState, header: &[u8], req: Request<Body>) -> Response<Body> {
    // The header's kind decides the error shape even when the rest is wrong, so that the
    // Worker sees its binding's own error.
    let protocol = std::str::from_utf8(header)
        .ok()
        .and_then(|h| h.trim().split('/').next())
        .and_then(Kind::parse)
        .map(protocol_of)
        .unwrap_or(Protocol::Plain);
    if !state.authorized(&req) {
        return error_response(protocol, &ServerError::Unauthorized);
    }
    let (kind, name) = match parse_binding(header) {
        Ok(b) => b,
        Err(e) => return error_response(protocol, &e),
    };
    let registry = state.registry();
    match kind {
        Kind::Kv => match registry.kv(&name).await {
            Ok(store) => crate::kv::handle(store.as_ref(), req).await,
            Err(e) => error_response(protocol, &e),
        },
        Kind::R2 => match registry.r2(&name).await {
            Ok(bucket) => crate::r2::handle(bucket.as_ref(), req).await,
            Err(RegistryError::Server(e)) => error_response(protocol, &e),
            Err(RegistryError::Store(e)) => error_response(protocol, &e),
        },
        Kind::Queue => match registry.queue(&name).await {
            Ok(producer) => crate::queue::handle(producer.as_ref(), req).await,
            Err(RegistryError::Server(e)) => error_response(protocol, &e),
            Err(RegistryError::Store(e)) => error_response(protocol, &e),
        },
        Kind::D1 => match registry.d1(&name).await {
            Ok(db) => crate::d1::handle(db.as_ref(), req).await,
            Err(RegistryError::Server(e)) => error_response(protocol, &e),
            Err(RegistryError::Store(e)) => error_response(protocol, &e),
        },
    }
}

/// Whether a request is signed the AWS way (header or presigned URL).
fn is_s3(req: &Request<Body>) -> bool {
    let header = req
        .headers()
        .get("authorization")
        .is_some_and(|v| v.as_bytes().starts_with(b"AWS4-") || v.as_bytes().starts_with(b"AWS "));
    header
        || req
            .uri()
            .query()
            .is_some_and(|q| q.contains("X-Amz-Algorithm=") || q.contains("X-Amz-Signature="))
}

async fn plain_request(state: &AppState, req: Request<Body>) -> Response<Body> {
    if is_s3(&req) {
        return crate::s3::handle(state.registry(), &state.inner.s3, req).await;
    }
    if req.uri().path() == "/healthz" && matches!(*req.method(), Method::GET | Method::HEAD) {
        let body = serde_json::json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": state.inner.started.elapsed().as_secs(),
        });
        return Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap_or_else(|_| Response::new(Body::empty()));
    }
    if !state.authorized(&req) {
        return error_response(Protocol::Plain, &ServerError::Unauthorized);
    }
    if req.uri().path().starts_with("/client/v4/") {
        let path = req.uri().path().to_owned();
        if let Some(r) = crate::rest::handle(state.registry(), &path, req.into_body()).await {
            return r;
        }
        return crate::rest::error(&ServerError::NoRoute {
            method: "POST".into(),
            path,
        });
    }
    if req.uri().path() == "/cdn-cgi/handler/scheduled" {
        let query = req.uri().query().map(str::to_owned);
        drop(req);
        return fire_scheduled(state, query.as_deref()).await;
    }
    error_response(Protocol::Plain, &ServerError::MissingBinding)
}

/// `/cdn-cgi/handler/scheduled?cron=<expr>`: fires the Worker's `scheduled()` now, as
/// wrangler's local development does.
async fn fire_scheduled(state: &AppState, query: Option<&str>) -> Response<Body> {
    let Some(driver) = &state.inner.driver else {
        return error_response(
            Protocol::Plain,
            &ServerError::Unsupported {
                what: "firing cron triggers without a driver Worker".into(),
            },
        );
    };
    let query = crate::wire::form_query(query);
    let cron = query
        .iter()
        .find(|(k, _)| k == "cron")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let now = state.registry().clock().now_ms();
    let body = serde_json::json!({"cron": cron, "scheduledTime": now});
    match driver
        .post_json("/scheduled", &body, std::time::Duration::from_secs(60))
        .await
    {
        Ok(result) => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(Body::from(result.to_string()))
            .unwrap_or_else(|_| Response::new(Body::empty())),
        Err(e) => error_response(
            Protocol::Plain,
            &ServerError::internal("firing the cron trigger", e),
        ),
    }
}
