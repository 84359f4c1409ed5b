//! The server's HTTP face: the DM endpoint (`POST /dm`), the admin API under
//! `/api`, and a health check. Thin: it moves bytes to [`DmService`] and the store.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Router};
use futures_util::FutureExt;
use gwmo_net::{HMAC_HEADER, HttpClient, unix_now};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::admin::{access, accounts, campaigns, export, firmware, fleet, lifecycle};
use crate::dm::{DmError, DmRequest, DmService, session_token};
use crate::embed::EndDevices;
use crate::settings::ServerSettings;
use crate::state::AppState;
use crate::store::counts::Counts;
use crate::{admin, devtree};

/// How often the sweeper forgets history older than `history_days`.
const FORGET_HISTORY_EVERY: Duration = Duration::from_secs(3600);

/// The device a DM message came from, handed to the access log.
#[derive(Debug, Clone)]
struct LoggedDevice(String);

/// One line per request: method, path (never the query: a session's token is in it),
/// status, bytes, time, peer and device where known.
async fn access_log(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::body::HttpBody;
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(
            || "unknown".to_owned(),
            |ConnectInfo(peer)| peer.ip().to_string(),
        );
    let response = next.run(request).await;
    let device = response
        .extensions()
        .get::<LoggedDevice>()
        .map(|d| d.0.clone());
    info!(
        target: "gwmo_server::access",
        %method,
        path,
        status = response.status().as_u16(),
        bytes = response.body().size_hint().exact(),
        micros = started.elapsed().as_micros() as u64,
        peer,
        device,
        "request"
    );
    response
}

pub fn router(state: Arc<AppState>) -> Router {
    let admin = Router::new()
        .route("/api/devices", post(admin::enroll).get(fleet::list_devices))
        .route("/api/enrollments", post(fleet::import))
        .route("/api/tags", get(fleet::list_tags).post(fleet::change_tags))
        .route(
            "/api/devices/{dev_id}",
            get(admin::get_device).delete(lifecycle::decommission_device),
        )
        .route(
            "/api/devices/{dev_id}/commands",
            post(admin::queue_command).get(lifecycle::list_commands),
        )
        .route("/api/devices/{dev_id}/notify", post(admin::notify_device))
        .route("/api/devices/{dev_id}/auth", post(admin::change_auth))
        .route(
            "/api/devices/{dev_id}/validate",
            post(admin::validate_gateway),
        )
        .route(
            "/api/devices/{dev_id}/tree",
            post(devtree::request_tree).get(devtree::get_tree),
        )
        .route("/api/devices/{dev_id}/accounts", get(devtree::get_accounts))
        .route(
            "/api/gateways",
            post(admin::register_gateway).get(admin::list_gateways),
        )
        .route(
            "/api/gateways/{gateway_id}",
            get(lifecycle::get_gateway).delete(lifecycle::remove_gateway),
        )
        .route(
            "/api/gateways/{gateway_id}/fanout",
            post(admin::create_fanout),
        )
        .route("/api/fanouts", get(lifecycle::list_fanouts))
        .route("/api/fanouts/{id}", get(admin::get_fanout))
        .route("/api/associations", get(admin::list_associations))
        .route(
            "/api/commands/{id}",
            get(admin::get_command).delete(lifecycle::cancel_command),
        )
        .route("/api/events", get(admin::events))
        .route(
            "/api/campaigns",
            get(campaigns::list).post(campaigns::create),
        )
        .route("/api/campaigns/{id}", get(campaigns::get))
        .route("/api/campaigns/{id}/devices", get(campaigns::devices))
        .route("/api/campaigns/{id}/pause", post(campaigns::pause))
        .route("/api/campaigns/{id}/resume", post(campaigns::resume))
        .route("/api/campaigns/{id}/cancel", post(campaigns::cancel))
        .route("/api/campaigns/{id}/retry", post(campaigns::retry))
        .route(
            "/api/operators",
            get(accounts::list_operators).post(accounts::create_operator),
        )
        .route("/api/operators/{name}", delete(accounts::remove_operator))
        .route("/api/audit", get(accounts::audit_log))
        .route("/api/artifacts", get(firmware::list).post(firmware::upload))
        .route(
            "/api/artifacts/{id}",
            get(firmware::get).delete(firmware::remove),
        )
        .route(
            "/api/devices/{dev_id}/firmware",
            get(firmware::device_updates).post(firmware::update_device),
        )
        .route("/api/firmware", get(firmware::all_updates))
        .route(
            "/api/gateways/{gateway_id}/firmware",
            post(firmware::update_behind_gateway),
        )
        .route_layer(axum::middleware::from_fn(export::csv_listings))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::guard,
        ));
    let logged = state.settings.access_log;
    let mut router = Router::new();
    if state.settings.metrics_listen.is_none() {
        router = router.route("/metrics", get(metrics));
    }
    let router = router
        .route("/dm", post(dm_message))
        .route(
            &format!("{}/{{id}}", crate::firmware::DOWNLOAD_PATH),
            get(firmware::download),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/api/openapi.json", get(openapi))
        .route("/docs/api", get(api_reference))
        .route("/", get(dashboard))
        .route("/dashboard", get(dashboard))
        .merge(admin)
        // The serve loop reads every body within max_msg_size before a handler runs
        // (gwmo_net::serve); axum's own 2 MB default would only cap it lower.
        .layer(DefaultBodyLimit::disable())
        .with_state(state);
    match logged {
        true => router.layer(axum::middleware::from_fn(access_log)),
        false => router,
    }
}

/// The web dashboard: one page, no build step, that reads the admin API with the
/// token the operator gives it (kept in the browser tab).
async fn dashboard() -> impl IntoResponse {
    page(include_str!("../web/dashboard.html"))
}

/// The admin API's reference, read from its OpenAPI description in the browser
/// (public: it holds no data).
async fn api_reference() -> impl IntoResponse {
    page(include_str!("../web/api.html"))
}

/// One of the server's own pages: its script and style inline, nothing loaded from
/// anywhere else, never framed.
fn page(html: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        html,
    )
}

/// The admin API's OpenAPI 3 description (public: it holds no data).
async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../api/openapi.json"),
    )
}

/// 200 when this instance can serve, 503 with the reasons when it cannot.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let checked = state.clone();
    let readiness = tokio::task::spawn_blocking(move || {
        crate::ready::check(checked.store.as_ref(), &checked.settings)
    })
    .await;
    match readiness {
        Ok(readiness) => {
            let status = match readiness.ready {
                true => StatusCode::OK,
                false => StatusCode::SERVICE_UNAVAILABLE,
            };
            (status, axum::Json(readiness)).into_response()
        }
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// Prometheus text exposition (unauthenticated, like most scrape targets: bind the
/// server where only the monitoring can reach it).
async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let read = state.clone();
    let gauges = tokio::task::spawn_blocking(move || Counts(read.store.sql()).gauges())
        .await
        .ok()
        .and_then(|gauges| {
            gauges
                .inspect_err(|error| warn!(%error, "/metrics: the store's gauges are missing"))
                .ok()
        });
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(state.dm.open_sessions(), gauges),
    )
}

/// What the separate metrics listener serves (`metrics_listen`).
fn monitoring_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn dm_message(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let peer = peer.map_or(
        IpAddr::from([0, 0, 0, 0]),
        |Extension(ConnectInfo(addr))| addr.ip(),
    );
    let request = DmRequest {
        content_type: text(&header::CONTENT_TYPE),
        hmac: text(&header::HeaderName::from_static(HMAC_HEADER)),
        session_token: session_token(uri.query()),
        peer,
        body: &body,
    };
    // Handled on this worker, not handed to the blocking pool: a message is a few
    // hundred microseconds of CPU and local SQLite work (the PostgreSQL store leaves
    // the worker itself around each round trip), and the hand-off's two thread
    // switches cost more than the work they moved (with SQLite, messages take turns
    // at the store without holding their worker: `DmService`). A panic still
    // answers 500.
    let handled =
        std::panic::AssertUnwindSafe(state.dm.handle(request, Instant::now(), unix_now()))
            .catch_unwind()
            .await;
    match handled {
        Ok(Ok(answer)) => {
            let mut response =
                ([(header::CONTENT_TYPE, answer.content_type)], answer.body).into_response();
            if let Some(mac) = answer.hmac.and_then(|m| m.parse().ok()) {
                response.headers_mut().insert(HMAC_HEADER, mac);
            }
            if state.settings.access_log {
                response
                    .extensions_mut()
                    .insert(LoggedDevice(answer.dev_id));
            }
            response
        }
        Ok(Err(error)) => {
            let status = match &error {
                DmError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                // A session used out of order is this server's fault, not the device's.
                DmError::Session(error) if !error.is_peer_fault() => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                DmError::Malformed(_) | DmError::HeaderTooLong(..) | DmError::Session(_) => {
                    StatusCode::BAD_REQUEST
                }
                DmError::UnknownSession(..) => StatusCode::NOT_FOUND,
                DmError::UnknownDevice(_) => StatusCode::FORBIDDEN,
                DmError::NonceSpent(_) => StatusCode::CONFLICT,
                DmError::Throttled(..) => StatusCode::TOO_MANY_REQUESTS,
                DmError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
                DmError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            warn!(%error, "DM message refused");
            let mut response = (status, format!("{error}\n")).into_response();
            let retry_after = match error {
                DmError::Throttled(_, secs) => Some(secs),
                DmError::Busy(_) => Some(1),
                _ => None,
            };
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, secs.into());
            }
            response
        }
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "message handling failed\n",
        )
            .into_response(),
    }
}

/// A bound, not yet serving, DM Server.
pub struct Server {
    listener: TcpListener,
    /// The separate metrics listener, when `metrics_listen` asks for one.
    monitoring: Option<TcpListener>,
    tls: Option<gwmo_net::TlsAcceptor>,
    state: Arc<AppState>,
}

impl Server {
    /// Opens the store (creating it on first start) and binds the listener.
    pub async fn bind(settings: ServerSettings) -> Result<Server, crate::ServerError> {
        crate::settings::check_admin_token(settings.admin_token.as_deref())?;
        if settings.admin_token.is_none() {
            tracing::warn!(
                "no admin_token: only operator accounts (gwmo operator add) open the admin API"
            );
        }
        let tls = settings.tls.acceptor("DM server")?;
        let client = HttpClient::new(&settings.tls.client()?, Duration::from_secs(10), 64 * 1024);
        // The listener first: a server that cannot listen leaves nothing behind (no
        // store file created for nothing).
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|e| crate::ServerError::Bind(settings.listen, e))?;
        let monitoring = match settings.metrics_listen {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .map_err(|e| crate::ServerError::Bind(address, e))?,
            ),
            None => None,
        };
        let store = crate::store::open(&settings.database, settings.database_cache_mib)?;
        let bound = listener
            .local_addr()
            .map_err(|e| crate::ServerError::Bind(settings.listen, e))?;
        let dm_url = settings.dm_url(bound);
        let (wake, to_wake) = tokio::sync::mpsc::unbounded_channel();
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let state = Arc::new(AppState {
            dm: DmService::new(
                store.clone(),
                settings.clone(),
                dm_url.clone(),
                settings.resp_uri(bound),
                Some(wake),
                metrics.clone(),
            ),
            metrics,
            client,
            settings,
            store,
            dm_url,
        });
        tokio::spawn(crate::notify::wake_each(state.clone(), to_wake));
        Ok(Server {
            listener,
            monitoring,
            tls,
            state,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    pub fn dm_url(&self) -> &str {
        &self.state.dm_url
    }

    /// The server's end devices, for a role that embeds it (the gateway).
    pub fn end_devices(&self) -> EndDevices {
        EndDevices::new(self.state.clone())
    }

    /// Serves until `shutdown` resolves, dropping idle sessions as it goes.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), crate::ServerError> {
        let waker = self.state.clone();
        match tokio::task::spawn_blocking(move || waker.dm.wake_queued()).await {
            Ok(Ok(0)) | Err(_) => {}
            Ok(Ok(woken)) => info!(woken, "devices with queued commands woken at start"),
            Ok(Err(error)) => warn!(%error, "could not list the devices with queued commands"),
        }
        let sweeper_state = self.state.clone();
        let period = self.state.settings.sweep_period();
        // From the start (the first tick is at once): commands a killed instance had
        // claimed come back to the queue.
        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            let mut history_forgotten_at: Option<Instant> = None;
            loop {
                tick.tick().await;
                let state = sweeper_state.clone();
                let forget_history =
                    history_forgotten_at.is_none_or(|at| at.elapsed() >= FORGET_HISTORY_EVERY);
                if forget_history {
                    history_forgotten_at = Some(Instant::now());
                }
                let swept = tokio::task::spawn_blocking(move || {
                    let idle = state.dm.evict_idle(Instant::now(), unix_now())?;
                    let abandoned = state.dm.requeue_abandoned(unix_now())?;
                    let expired = state.store.expire_commands(unix_now())?;
                    for dev_id in crate::campaign::advance_all(state.store.as_ref(), unix_now())? {
                        state.dm.wake_later(&dev_id);
                    }
                    let forgotten = match forget_history {
                        true => state.dm.forget_old_history(unix_now())?,
                        false => 0,
                    };
                    Ok::<_, DmError>((idle, abandoned, expired, forgotten))
                })
                .await;
                match swept {
                    Ok(Ok((0, 0, 0, 0))) => {}
                    Ok(Ok((idle, woken, expired, forgotten))) => {
                        info!(
                            idle,
                            woken,
                            expired,
                            forgotten,
                            "idle sessions dropped; abandoned commands requeued and their devices woken; expired commands ended; old history forgotten"
                        )
                    }
                    Ok(Err(error)) => {
                        warn!(%error, "sweeping sessions, commands and history failed")
                    }
                    Err(_) => {}
                }
            }
        });
        info!(url = %self.state.dm_url, "DM server listening");
        let limits = self.state.settings.serve_limits();
        // The metrics listener stops when the DM listener does.
        let (stop_monitoring, monitoring_stopped) = tokio::sync::oneshot::channel::<()>();
        let monitoring = self.monitoring.map(|listener| {
            let address = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            info!(%address, "metrics listening (plain HTTP)");
            tokio::spawn(gwmo_net::serve(
                listener,
                None,
                monitoring_router(self.state.clone()),
                limits,
                async move {
                    let _ = monitoring_stopped.await;
                },
            ))
        });
        let connections = self.state.metrics.connections();
        gwmo_net::serve_counted(
            self.listener,
            self.tls,
            router(self.state),
            limits,
            connections,
            shutdown,
        )
        .await;
        drop(stop_monitoring);
        if let Some(task) = monitoring {
            let _ = task.await;
        }
        sweeper.abort();
        Ok(())
    }
}
