//! The device's package-0 listener: a server that wants a session posts a DM 1.2
//! General Notification; the device checks its digest with the server's
//! credentials and opens the session the notification names, once per notification,
//! one at a time per server and at most one per [`NOTIFICATION_INTERVAL`](crate::pacing::NOTIFICATION_INTERVAL): a
//! notification that comes sooner is answered 429, and the server sends it again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use gwmo_proto::package0;
use gwmo_session::Trigger;
use gwmo_tree::AuthLevel;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::DeviceError;
use crate::agent::Agent;

/// The package-0 listener, bound, and the URL to report to servers.
pub struct NotifyListener {
    listener: TcpListener,
    tls: Option<gwmo_net::TlsAcceptor>,
    pub url: String,
}

/// Binds the listener (with the device's certificate, unless plain HTTP).
pub async fn bind(agent: &Agent, listen: SocketAddr) -> Result<NotifyListener, DeviceError> {
    let tls = agent.settings().tls.acceptor("package-0 listener")?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| DeviceError::Listen(listen, e.to_string()))?;
    let bound = listener
        .local_addr()
        .map_err(|e| DeviceError::Listen(listen, e.to_string()))?;
    let url = agent
        .settings()
        .notify_url
        .clone()
        .unwrap_or_else(|| format!("{}://{bound}/notify", agent.settings().tls.scheme()));
    Ok(NotifyListener { listener, tls, url })
}

/// Serves package 0 until `shutdown`.
pub async fn serve(
    agent: Arc<Agent>,
    listener: NotifyListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let router = Router::new()
        .route("/notify", post(notification))
        .with_state(agent);
    // A package 0 is a few dozen bytes: anything much larger is not one.
    let limits = gwmo_net::ServeLimits {
        max_body: 4096,
        ..gwmo_net::ServeLimits::default()
    };
    gwmo_net::serve(listener.listener, listener.tls, router, limits, shutdown).await
}

async fn notification(State(agent): State<Arc<Agent>>, body: Bytes) -> (StatusCode, String) {
    let (notification, digest) = match package0::decode(&body) {
        Ok(decoded) => decoded,
        Err(error) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("malformed package 0: {error}\n"),
            );
        }
    };
    let account = agent
        .read_tree(|tree| gwmo_tree::account_for(tree, &notification.server_id))
        .await;
    let Some((_, account)) = account else {
        warn!(server = %notification.server_id, "package 0 from a server without an account");
        return (StatusCode::FORBIDDEN, "no account for that server\n".into());
    };
    let Some(server) = account.credentials(AuthLevel::Server) else {
        return (
            StatusCode::FORBIDDEN,
            "no server credentials for that account\n".into(),
        );
    };
    // The server may have made the digest before it learnt the nonce the device handed
    // out last (in a session still going on, or one cut short): the few before are
    // accepted too.
    let previous = agent.previous_server_nonces(&account.server_id);
    let verifies =
        |nonce: &[u8]| package0::verify(&body, &account.server_id, &server.secret, nonce).is_ok();
    if !verifies(&server.nonce) && !previous.iter().any(|nonce| verifies(nonce)) {
        warn!(server = %account.server_id, "package 0 digest refused");
        return (StatusCode::UNAUTHORIZED, "digest does not verify\n".into());
    }
    let server_id = account.server_id.clone();
    let admitted = match agent.notifications.lock() {
        Ok(mut log) => {
            // A replay is told so; a new notification that comes too soon is not
            // remembered, so that the server's next try is taken.
            let now = Instant::now();
            match log.wait_for(&server_id, now) {
                _ if log.acted_on(&digest) => Some(Ok(false)),
                Some(wait) => Some(Err(wait)),
                None => {
                    log.first_time(digest);
                    log.session_started(&server_id, now);
                    Some(Ok(true))
                }
            }
        }
        Err(_) => None,
    };
    match admitted {
        Some(Ok(true)) => {}
        Some(Err(wait)) => {
            let secs = wait.as_secs().max(1);
            info!(server = %server_id, secs, "package 0 too soon after the last: the server is to send it again");
            return (
                StatusCode::TOO_MANY_REQUESTS,
                format!("a session with this server runs or ran just now: try again in {secs} s\n"),
            );
        }
        Some(Ok(false)) | None => {
            warn!(server = %server_id, "package 0 refused: this one was acted on already");
            return (
                StatusCode::CONFLICT,
                "this notification was acted on already\n".into(),
            );
        }
    }
    let session_id = package0::session_id_text(notification.session_id);
    info!(server = %server_id, session = %session_id, "package 0 accepted");
    tokio::spawn(async move {
        if let Err(error) = agent
            .session(&server_id, Trigger::Server, Some(session_id), Vec::new())
            .await
        {
            warn!(server = %server_id, %error, "server-initiated session failed");
        }
        if let Ok(mut log) = agent.notifications.lock() {
            log.session_ended(&server_id);
        }
    });
    (StatusCode::OK, "session starting\n".into())
}
