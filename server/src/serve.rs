//! `bindery serve`: listening, the loopback rule, and a clean shutdown.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use bindery_core::SystemClock;
use tokio::net::TcpListener;

use std::sync::Arc;

use crate::app::{AppState, router};
use crate::cron::{DriverFire, Schedule};
use crate::driver::DriverClient;
use crate::registry::Registry;

/// What `bindery serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The data folder. Default: `./.bindery`.
    pub data: PathBuf,
    /// The address to listen on. Default: `127.0.0.1:8787`.
    pub listen: String,
    /// The bearer token every binding request must carry, if any.
    pub token: Option<String>,
    /// A project's wrangler file: its queue consumers and crons are served.
    pub wrangler: Option<PathBuf>,
    /// Serve only the resources the wrangler file declares.
    pub strict: bool,
    /// Address of the driver Worker that delivers queue batches and cron events.
    pub driver: String,
    /// The S3 API's credentials; default: access key `bindery`, secret the token (or
    /// `bindery`).
    pub s3: Option<crate::sigv4::Credentials>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Listening on a non-loopback address needs a token.
    #[error(
        "refusing to listen on {addr} without a token: it is not a loopback address; pass --token or set BINDERY_TOKEN"
    )]
    NoTokenForNonLoopback {
        /// The address.
        addr: SocketAddr,
    },
    /// The address does not resolve or cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address as given.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The data folder cannot be created.
    #[error("cannot create the data folder {path}: {source}")]
    DataDir {
        /// The folder.
        path: PathBuf,
        /// The file-system error.
        source: std::io::Error,
    },
    /// The wrangler file is invalid.
    #[error(transparent)]
    Wrangler(#[from] crate::wrangler::WranglerError),
    /// Consumers or cron triggers could not be set up.
    #[error("{0}")]
    Setup(String),
    /// Serving failed.
    #[error("serving failed: {0}")]
    Serve(std::io::Error),
}

/// Resolves `listen` and binds it, refusing a non-loopback address without a token.
///
/// # Errors
///
/// [`ServeError::NoTokenForNonLoopback`] or [`ServeError::Listen`].
pub async fn bind(listen: &str, has_token: bool) -> Result<TcpListener, ServeError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: listen.to_owned(),
            source,
        })?
        .collect();
    if !has_token && let Some(addr) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        return Err(ServeError::NoTokenForNonLoopback { addr: *addr });
    }
    let mut last = None;
    for addr in addrs {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(ServeError::Listen {
        addr: listen.to_owned(),
        source: last.unwrap_or_else(|| std::io::Error::other("the address resolves to nothing")),
    })
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}

/// Serves `state` on `listener` until `shutdown` completes, then lets in-flight requests
/// finish and closes every store.
///
/// # Errors
///
/// [`ServeError::Serve`] if the listener fails.
pub async fn serve_on(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let app = router(state.clone());
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServeError::Serve);
    state.registry().close().await;
    result
}

/// Runs `bindery serve` until SIGINT or SIGTERM.
///
/// # Errors
///
/// Any [`ServeError`].
pub async fn run(config: ServeConfig) -> Result<(), ServeError> {
    std::fs::create_dir_all(&config.data).map_err(|source| ServeError::DataDir {
        path: config.data.clone(),
        source,
    })?;
    let project = config
        .wrangler
        .as_deref()
        .map(crate::wrangler::Wrangler::load)
        .transpose()?;
    let declared = match (&project, config.strict) {
        (Some(w), true) => Some(w.declared()?),
        _ => None,
    };
    let mut schedules = Vec::new();
    for cron in project.iter().flat_map(|p| &p.triggers.crons) {
        let schedule = Schedule::parse(cron).map_err(ServeError::Setup)?;
        schedules.push((cron.clone(), schedule));
    }
    let listener = bind(&config.listen, config.token.is_some()).await?;
    let local = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: config.listen.clone(),
        source,
    })?;
    let clock = SystemClock::shared();
    let registry = Registry::new(config.data.clone(), clock.clone(), declared);
    let driver = DriverClient::new(config.driver.clone(), config.token.clone());
    let mut builder = AppState::builder(registry)
        .token(config.token.clone())
        .driver(driver.clone());
    if let Some(creds) = config.s3.clone() {
        builder = builder.s3_credentials(creds);
    }
    let state = builder.build();
    let rules = crate::notifications::Rules::load(&config.data).map_err(ServeError::Setup)?;
    crate::notifications::apply(state.registry(), &rules)
        .await
        .map_err(|e| ServeError::Setup(e.to_string()))?;
    let mut consumers = Vec::new();
    let mut cron_task = None;
    if let Some(project) = &project {
        for producer in &project.queues.producers {
            if let Some(delay) = producer.delivery_delay {
                let broker = state
                    .registry()
                    .queues()
                    .await
                    .map_err(|e| ServeError::Setup(e.to_string()))?;
                let settings = bindery_core::queues::QueueSettings {
                    delivery_delay_secs: delay,
                    ..Default::default()
                };
                bindery_core::queues::QueueBroker::create_queue(&broker, &producer.queue, settings)
                    .await
                    .map_err(|e| ServeError::Setup(format!("queue {}: {e}", producer.queue)))?;
            }
        }
        for c in &project.queues.consumers {
            if c.consumer_type.as_deref() == Some("http_pull") {
                let defaults = bindery_core::queues::PullConsumerSettings::default();
                state.registry().configure_pull(
                    &c.queue,
                    bindery_core::queues::PullConsumerSettings {
                        max_retries: c.max_retries.unwrap_or(defaults.max_retries),
                        dead_letter_queue: c.dead_letter_queue.clone(),
                    },
                );
            }
        }
        if !project.queues.consumers.is_empty() {
            let broker = state
                .registry()
                .queues()
                .await
                .map_err(|e| ServeError::Setup(e.to_string()))?;
            consumers = crate::consumers::start_all(&broker, &project.queues.consumers, &driver)
                .await
                .map_err(|e| ServeError::Setup(format!("starting queue consumers: {e}")))?;
        }
        if !schedules.is_empty() {
            tracing::info!(
                crons = schedules.len(),
                driver = driver.addr(),
                "cron triggers armed"
            );
            cron_task = Some(crate::cron::spawn(
                schedules,
                clock.clone(),
                Arc::new(DriverFire::new(driver.clone())),
            ));
        }
    }
    tracing::info!(
        addr = %local,
        data = %config.data.display(),
        auth = config.token.is_some(),
        "bindery listening"
    );
    // A line on stdout that scripts (and the tests) can wait for.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "bindery listening on http://{local}");
    let _ = out.flush();
    let shutdown = async move {
        shutdown_signal().await;
        if let Some(task) = cron_task {
            task.abort();
        }
        for consumer in consumers {
            consumer.shutdown().await;
        }
    };
    serve_on(listener, state, shutdown).await?;
    tracing::info!("bindery stopped");
    Ok(())
}
