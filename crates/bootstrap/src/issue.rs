//! `POST /bootstrap`: issuing a Gateway Bootstrap to a device that asks for one.
//!
//! A device whose USERPIN the server knows first gets a single-use challenge (401) and
//! must answer it with a MAC made with that PIN; only then does the gateway learn of it
//! (a tree write, fresh credentials). A device the server has no PIN for gets nothing,
//! unless the server issues unsigned bootstraps, and then never a re-key of a device
//! the gateway serves already. Every request passes the rate limit first.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use gwmo_proto::auth::{self, AuthType};
use gwmo_proto::codes::content_type;
use gwmo_tree::{BootstrapRequest, DmAccount, bootstrap_document};
use tracing::{info, warn};

use crate::gate::Gate;
use crate::{BootstrapSettings, EnrollError, Enroller, Enrollment};

/// The bootstrap server's state.
pub(crate) struct Issuer {
    settings: BootstrapSettings,
    enroller: Enroller,
    gate: Gate,
}

impl Issuer {
    pub(crate) fn new(settings: BootstrapSettings, enroller: Enroller) -> Issuer {
        Issuer {
            gate: Gate::new(settings.requests_per_sec),
            settings,
            enroller,
        }
    }
}

fn refused(status: StatusCode, why: &str) -> Response {
    let body = serde_json::json!({ "error": why });
    (status, axum::Json(body)).into_response()
}

fn challenged(challenge: String, why: &str) -> Response {
    let body = serde_json::json!({ "error": why, "challenge": challenge });
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

fn wait(secs: u64, why: &str) -> Response {
    let mut response = refused(StatusCode::TOO_MANY_REQUESTS, why);
    if let Ok(value) = secs.max(1).to_string().parse() {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn secret() -> String {
    rand::random::<[u8; 16]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) async fn bootstrap(State(issuer): State<Arc<Issuer>>, body: Bytes) -> Response {
    let now = Instant::now();
    if !issuer.gate.admit(now) {
        return wait(1, "too many bootstrap requests: try again shortly");
    }
    let Ok(request) = serde_json::from_slice::<BootstrapRequest>(&body) else {
        return refused(
            StatusCode::BAD_REQUEST,
            "post a JSON bootstrap request: {\"dev_id\": ..., \"max_lapse_secs\": ...}",
        );
    };
    let dev_id = request.dev_id.as_str();
    if dev_id.is_empty() || dev_id.len() > 256 || dev_id.contains(char::is_control) {
        return refused(StatusCode::BAD_REQUEST, "the DevId is empty or malformed");
    }
    if let Some(pause) = issuer.gate.paused(dev_id, now) {
        return wait(pause.as_secs(), "too many failed proofs for this DevId");
    }
    let settings = &issuer.settings;
    let pin = settings.userpins.get(dev_id);
    let proven = match (pin, &request.challenge) {
        (Some(pin), Some(challenge)) => {
            let answered = issuer.gate.take_challenge(dev_id, challenge, now);
            if !(answered && request.proves(pin)) {
                issuer.gate.failed(dev_id, now);
                warn!(
                    device = dev_id,
                    "bootstrap request refused: it does not prove the device's USERPIN"
                );
                return challenged(
                    issuer.gate.challenge(dev_id, now),
                    "the request does not prove this device's USERPIN",
                );
            }
            issuer.gate.succeeded(dev_id);
            true
        }
        (Some(_), None) => {
            return challenged(
                issuer.gate.challenge(dev_id, now),
                "prove the device's USERPIN: answer the challenge",
            );
        }
        (None, _) if settings.issue_unsigned => false,
        (None, _) => {
            return refused(
                StatusCode::FORBIDDEN,
                "this bootstrap server has no USERPIN for that device",
            );
        }
    };
    issue(&issuer, request, pin, proven).await
}

/// The Gateway Bootstrap for a request that got through: the gateway learns the
/// credentials first, then the device gets them.
async fn issue(
    issuer: &Issuer,
    request: BootstrapRequest,
    pin: Option<&String>,
    proven: bool,
) -> Response {
    let settings = &issuer.settings;
    let dev_id = request.dev_id;
    let lapse_secs = settings.lapse_secs.min(request.max_lapse_secs.max(1));
    let enrollment = Enrollment {
        dev_id: dev_id.clone(),
        client_secret: secret(),
        server_secret: secret(),
        lapse_secs,
        proven,
    };
    let account = DmAccount::new(
        &settings.gateway_id,
        &settings.gateway_url,
        AuthType::Md5,
        &dev_id,
        &enrollment.client_secret,
        &settings.gateway_id,
        &enrollment.server_secret,
    );
    let document = match bootstrap_document(&account, lapse_secs) {
        Ok(document) => document,
        Err(error) => {
            warn!(%error, "could not write a Gateway Bootstrap");
            return refused(StatusCode::INTERNAL_SERVER_ERROR, "bootstrap unavailable");
        }
    };
    match (issuer.enroller)(enrollment).await {
        Ok(()) => {}
        Err(error @ EnrollError::Conflict(_)) => {
            warn!(device = %dev_id, %error, "bootstrap request refused");
            return refused(
                StatusCode::CONFLICT,
                "the device is bootstrapped already: only a request proving its USERPIN re-keys it",
            );
        }
        Err(error) => {
            warn!(device = %dev_id, %error, "the gateway did not take the device");
            return refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "the gateway cannot take the device now",
            );
        }
    }
    let mime = match pin {
        Some(pin) => format!(
            "{}; SEC=USERPIN; MAC={}",
            content_type::TNDS_XML,
            auth::bootstrap_mac(pin.as_bytes(), document.as_bytes())
        ),
        None => content_type::TNDS_XML.to_owned(),
    };
    info!(device = %dev_id, gateway = %settings.gateway_id, lapse_secs, proven, "Gateway Bootstrap issued");
    ([(header::CONTENT_TYPE, mime)], document).into_response()
}
