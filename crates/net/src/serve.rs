//! The one HTTP server loop every role's listener uses. A client that trickles the
//! head of its request (or leaves a kept-alive connection idle) is dropped after
//! `header_read`; a body must arrive whole within `body_read` and be at most
//! `max_body` bytes, or the request is answered 408 or 413 before any handler runs.
//! A TLS handshake must be over within `header_read` too. HTTP/1.1 only, and at most
//! `max_connections` at once (the rest are closed, with a log line). Shutdown
//! stops accepting and lets requests in flight finish (for a while). Each request
//! carries its peer's address as axum's `ConnectInfo<SocketAddr>`. The loop counts
//! the connections it accepts and how their TLS handshakes end ([`serve_counted`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::HandshakeKind;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower_layer::Layer;

/// What a listener tolerates from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// The longest a request head may take to arrive (and a kept-alive connection may
    /// sit idle).
    pub header_read: Duration,
    /// The longest a request body may take to arrive.
    pub body_read: Duration,
    /// The largest request body.
    pub max_body: usize,
    /// Connections open at once at most; more are closed as they come (file
    /// descriptors run out before memory does, and then nothing is answered at all).
    pub max_connections: usize,
    /// Requests whose path starts with this reach their handler with the body unread,
    /// for it to stream (a firmware upload, larger than any message); the handler
    /// keeps its own limits.
    pub streamed_prefix: Option<&'static str>,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_read: Duration::from_secs(30),
            body_read: Duration::from_secs(30),
            max_body: 1 << 20,
            max_connections: 4096,
            streamed_prefix: None,
        }
    }
}

/// How long requests in flight may take to finish once shutdown is asked for.
const DRAIN: Duration = Duration::from_secs(10);

/// What a listener counts as it serves: the connections it accepted, and how their
/// TLS handshakes ended (a full one costs the public-key work; a resumed one, from a
/// ticket the client kept, does not).
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    accepted: AtomicU64,
    full_handshakes: AtomicU64,
    resumed_handshakes: AtomicU64,
    failed_handshakes: AtomicU64,
}

/// The counts at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionTally {
    pub accepted: u64,
    pub full_handshakes: u64,
    pub resumed_handshakes: u64,
    /// Failed or timed out.
    pub failed_handshakes: u64,
}

impl ConnectionCounts {
    pub fn tally(&self) -> ConnectionTally {
        let get = |count: &AtomicU64| count.load(Ordering::Relaxed);
        ConnectionTally {
            accepted: get(&self.accepted),
            full_handshakes: get(&self.full_handshakes),
            resumed_handshakes: get(&self.resumed_handshakes),
            failed_handshakes: get(&self.failed_handshakes),
        }
    }

    fn handshake_done(&self, kind: Option<HandshakeKind>) {
        let count = match kind {
            Some(HandshakeKind::Resumed) => &self.resumed_handshakes,
            _ => &self.full_handshakes,
        };
        count.fetch_add(1, Ordering::Relaxed);
    }

    fn handshake_failed(&self) {
        self.failed_handshakes.fetch_add(1, Ordering::Relaxed);
    }
}

/// Serves `router` on `listener` until `shutdown` resolves: over TLS with `tls`, plain
/// HTTP without.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) {
    let counts = Arc::default();
    serve_counted(listener, tls, router, limits, counts, shutdown).await
}

/// [`serve`], counting the connections and handshakes in `counts`.
pub async fn serve_counted(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: ServeLimits,
    counts: Arc<ConnectionCounts>,
    shutdown: impl Future<Output = ()>,
) {
    let router = router.layer(axum::middleware::from_fn(move |request, next| {
        read_body_within(limits, request, next)
    }));
    // HTTP/1.1 only: no DM client speaks HTTP/2, and an HTTP/2 connection would escape
    // the head and idle timeouts below (hyper applies them to HTTP/1 only).
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    // Shared by the connections' tasks (a TLS connection is served after its handshake).
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let mut full = false;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors, say: wait a little rather than spin.
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    if !full {
                        tracing::warn!(limit = limits.max_connections, "connection limit reached: new connections are closed until some end");
                    }
                    full = true;
                    drop(stream);
                    continue;
                };
                if full {
                    tracing::info!("below the connection limit again");
                    full = false;
                }
                let _ = stream.set_nodelay(true);
                counts.accepted.fetch_add(1, Ordering::Relaxed);
                let service = TowerToHyperService::new(Extension(ConnectInfo(peer)).layer(router.clone()));
                let (builder, watcher) = (builder.clone(), graceful.watcher());
                let (tls, counts) = (tls.clone(), counts.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    let Some(acceptor) = tls else {
                        return serve_connection(&builder, stream, service, watcher).await;
                    };
                    match tokio::time::timeout(limits.header_read, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            counts.handshake_done(stream.get_ref().1.handshake_kind());
                            serve_connection(&builder, stream, service, watcher).await
                        }
                        Ok(Err(error)) => {
                            counts.handshake_failed();
                            tracing::debug!(%error, "TLS handshake failed")
                        }
                        Err(_) => {
                            counts.handshake_failed();
                            tracing::debug!("TLS handshake timed out")
                        }
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
}

/// The router, with the connection's peer address added to each request.
type PeerService =
    TowerToHyperService<axum::middleware::AddExtension<Router, ConnectInfo<SocketAddr>>>;

/// Serves one connection, until it closes or shutdown has drained it.
async fn serve_connection<S>(
    builder: &Builder<TokioExecutor>,
    stream: S,
    service: PeerService,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let _ = watcher.watch(connection).await;
}

/// Reads the whole body, within the time and size limits, before the handler runs.
async fn read_body_within(limits: ServeLimits, request: Request, next: Next) -> Response {
    if limits
        .streamed_prefix
        .is_some_and(|prefix| request.uri().path().starts_with(prefix))
    {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(
        limits.body_read,
        axum::body::to_bytes(body, limits.max_body),
    )
    .await;
    match read {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(error)) if is_too_large(&error) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {} bytes\n", limits.max_body),
        )
            .into_response(),
        Ok(Err(error)) => (
            StatusCode::BAD_REQUEST,
            format!("the request body could not be read: {error}\n"),
        )
            .into_response(),
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s\n",
                limits.body_read.as_secs()
            ),
        )
            .into_response(),
    }
}

fn is_too_large(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = source {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = error.source();
    }
    false
}
