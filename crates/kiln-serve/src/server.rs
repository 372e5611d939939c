//! The HTTPS server: axum routes served by hyper over tokio-rustls, one task per
//! connection. A client that does not speak TLS gets no HTTP answer at all.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::admit::{Endpoint, Settings, admit};
use crate::audit::AuditStore;
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::review::ReviewOut;

/// Everything `kiln serve` is started with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The policy file.
    pub policy: PathBuf,
    /// PEM certificate chain.
    pub tls_cert: PathBuf,
    /// PEM private key.
    pub tls_key: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// `sqlite:PATH`.
    pub database: String,
    /// The local store's root (`$KILN_HOME`).
    pub store_root: PathBuf,
    /// Registry options (credentials, CAs, retries).
    pub registry: kiln_registry::Options,
    /// Admission settings.
    pub settings: Settings,
    /// The bearer token `POST /records` requires (`--token-file`); `None` disables it.
    pub token_file: Option<PathBuf>,
}

/// A failure that stops the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The policy did not load.
    #[error(transparent)]
    Policy(#[from] kiln_policy::PolicyError),
    /// The certificate or key did not load.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The audit store did not open.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// Anything else, said in words.
    #[error("{0}")]
    Other(String),
}

/// Shared by every request.
pub struct App {
    /// Decides images.
    pub engine: Arc<Engine>,
    /// Admission settings.
    pub settings: Settings,
    /// The audit store.
    pub audit: Arc<dyn AuditStore>,
    /// Counters.
    pub metrics: Metrics,
    /// The bearer token of `POST /records`.
    pub token: Option<String>,
}

/// The routes.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/records",
            post(crate::api::post_record).layer(axum::extract::DefaultBodyLimit::max(crate::record::MAX_RECORD_BYTES)),
        )
        .route("/metadata/{name}", get(crate::api::metadata))
        .route("/metadata/{digest}/{doc}", get(crate::api::sbom))
        .route("/", get(crate::web::index))
        .route("/images/{digest}", get(crate::web::image))
        .with_state(app)
}

async fn validate(State(app): State<Arc<App>>, body: Bytes) -> Response {
    review(app, body, Endpoint::Validate).await
}

async fn mutate(State(app): State<Arc<App>>, body: Bytes) -> Response {
    review(app, body, Endpoint::Mutate).await
}

fn text(code: StatusCode, body: String) -> Response {
    (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

async fn review(app: Arc<App>, body: Bytes, endpoint: Endpoint) -> Response {
    let started = Instant::now();
    let (req, _) = match crate::review::parse(&body) {
        Ok(r) => r,
        Err(e) => {
            app.metrics.request(endpoint.name(), 400, started.elapsed());
            return text(StatusCode::BAD_REQUEST, format!("{e}\n"));
        }
    };
    let now = kiln_policy::time::now();
    let mut a = admit(app.engine.clone(), &app.settings, &req, endpoint, now).await;
    if req.dry_run != Some(true) {
        let (audit, row) = (app.audit.clone(), a.row.clone());
        let stored = tokio::task::spawn_blocking(move || audit.record(&row)).await;
        let failed = match stored {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = failed {
            // Not recorded: not admitted (fail closed).
            a.response.allowed = false;
            a.response.patch = None;
            a.response.patch_type = None;
            a.response.status = Some(crate::review::Status {
                code: 500,
                message: format!("kiln: the decision could not be recorded: {why}"),
            });
            a.row.result = "error".into();
        }
    }
    app.metrics.decision(&a.row.result, a.row.images.len(), a.cache_hits);
    app.metrics.request(endpoint.name(), 200, started.elapsed());
    let out = serde_json::to_vec(&ReviewOut::new(a.response)).expect("a review serialises");
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], out).into_response()
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    let audit = app.audit.clone();
    match tokio::task::spawn_blocking(move || audit.ping()).await {
        Ok(Ok(())) => text(StatusCode::OK, "ready\n".into()),
        Ok(Err(e)) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}

/// Builds the shared state from the configuration (policy, store, audit store).
pub fn app(config: &Config) -> Result<Arc<App>, ServeError> {
    let policy = kiln_policy::Policy::load(&config.policy)?;
    let store = kiln_oci::Store::open(&config.store_root).map_err(|e| {
        ServeError::Other(format!(
            "opening the store at {}: {e} (hint: point KILN_HOME at a writable directory)",
            config.store_root.display()
        ))
    })?;
    let engine = Engine {
        policy,
        store,
        meta: config.store_root.join("kiln"),
        access: kiln_registry::RegistryAccess::new(config.registry.clone()),
        cache: kiln_policy::cache::DecisionCache::in_memory(),
        tags: crate::tags::TagCache::new(config.settings.tag_ttl),
    };
    let audit: Arc<dyn AuditStore> = Arc::from(crate::audit::open(&config.database)?);
    let token = match &config.token_file {
        Some(f) => {
            let t = std::fs::read_to_string(f)
                .map_err(|e| ServeError::Other(format!("--token-file {}: {e}", f.display())))?;
            let t = t.trim().to_string();
            if t.is_empty() {
                return Err(ServeError::Other(format!(
                    "--token-file {}: the file is empty",
                    f.display()
                )));
            }
            Some(t)
        }
        None => None,
    };
    Ok(Arc::new(App {
        engine: Arc::new(engine),
        settings: config.settings.clone(),
        audit,
        metrics: Metrics::default(),
        token,
    }))
}

/// Serves until SIGTERM or SIGINT. Prints `listening on https://ADDR` on stderr once the
/// socket is bound.
pub fn run(config: Config) -> Result<(), ServeError> {
    let app = app(&config)?;
    // The registry session owns a runtime, which must not be dropped inside this one: the
    // last reference to the state is dropped here, after the server's runtime is gone.
    let keep = app.clone();
    let certs = crate::tls::Reloading::new(&config.tls_cert, &config.tls_key)?;
    let tls = certs
        .server_config()
        .map_err(|e| ServeError::Other(format!("TLS configuration: {e}")))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| ServeError::Other(format!("starting the runtime: {e}")))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| ServeError::Other(format!("listening on {}: {e}", config.listen)))?;
        let addr = listener.local_addr().map_err(|e| ServeError::Other(e.to_string()))?;
        eprintln!("kiln serve: listening on https://{addr}");
        certs.watch(Duration::from_secs(1));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let routes = router(app);
        tokio::select! {
            r = accept_loop(listener, acceptor, routes) => r,
            _ = shutdown() => {
                eprintln!("kiln serve: stopping");
                Ok(())
            }
        }
    })?;
    rt.shutdown_timeout(Duration::from_secs(1));
    drop(keep);
    Ok(())
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler installs");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    routes: Router,
) -> Result<(), ServeError> {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: wait, do not stop serving.
                eprintln!("kiln serve: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, routes) = (acceptor.clone(), routes.clone());
        tokio::spawn(async move {
            let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await else {
                return;
            };
            let io = hyper_util::rt::TokioIo::new(tls);
            let svc = hyper_util::service::TowerToHyperService::new(routes);
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(io, svc)
                .await;
        });
    }
}
