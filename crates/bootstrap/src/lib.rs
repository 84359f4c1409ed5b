//! The Local DM Bootstrap Server (seed 8.x.2, docs/DECISIONS.md §2 B): an End Device on the
//! gateway's network posts a [`BootstrapRequest`] to `/bootstrap` and gets a Gateway
//! Bootstrap, a TNDS document with the gateway's DM account and fresh credentials,
//! with a HMAC-SHA1 MAC made with the device's USERPIN (DM Security: `Content-Type:
//! ...; SEC=USERPIN; MAC=<hex>`). Where the server knows the USERPIN, the request
//! must prove it first (challenge and MAC, `issue.rs`); what it gives strangers is
//! bounded (`gate.rs`). The gateway learns the same credentials through the
//! [`Enroller`] it provides.

mod gate;
mod issue;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};

pub use gwmo_tree::BootstrapRequest;

/// Credentials the gateway must learn for a device it will manage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    pub dev_id: String,
    pub client_secret: String,
    pub server_secret: String,
    /// The lapse interval issued (the shorter of the server's and the device's).
    #[serde(default)]
    pub lapse_secs: u64,
    /// Whether the request proved the device's USERPIN: only such a request may
    /// re-key a device the gateway already serves.
    #[serde(default)]
    pub proven: bool,
}

/// Why the gateway did not take a device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollError {
    #[error("the device is bootstrapped already: {0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
}

/// How the gateway learns of a bootstrapped device (shared state when embedded).
pub type Enroller = Arc<
    dyn Fn(Enrollment) -> Pin<Box<dyn Future<Output = Result<(), EnrollError>> + Send>>
        + Send
        + Sync,
>;

/// The bootstrap server's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BootstrapSettings {
    /// The ServerID of the gateway the devices are bootstrapped to.
    pub gateway_id: String,
    /// Where that gateway takes the devices' DM messages.
    pub gateway_url: String,
    /// How long a device may take to open its first session with the gateway.
    pub lapse_secs: u64,
    /// USERPIN of each device (by DevId): its request must prove it, and its
    /// bootstrap carries a MAC made with it.
    pub userpins: BTreeMap<String, String>,
    /// Whether a device without a USERPIN here gets an unsigned bootstrap at all
    /// (off: a bootstrap server gives nothing to a device it cannot tell from a
    /// stranger). Such a request never re-keys a device the gateway already serves.
    pub issue_unsigned: bool,
    /// Requests per second the server answers (twice as many may come at once); more
    /// get 429, and a device asks again after a pause.
    pub requests_per_sec: u32,
}

impl Default for BootstrapSettings {
    fn default() -> Self {
        BootstrapSettings {
            gateway_id: "gwmo-gw".into(),
            gateway_url: "https://127.0.0.1:8090/dm".into(),
            lapse_secs: 3600,
            userpins: BTreeMap::new(),
            issue_unsigned: false,
            requests_per_sec: 100,
        }
    }
}

/// The `/bootstrap` endpoint.
pub fn router(settings: BootstrapSettings, enroller: Enroller) -> Router {
    Router::new()
        .route("/bootstrap", post(issue::bootstrap))
        .with_state(Arc::new(issue::Issuer::new(settings, enroller)))
}

/// The gateway's side of a standalone bootstrap server: `POST /bootstrap/enrollments`
/// (JSON [`Enrollment`], `Authorization: Bearer <token>`) hands it a device's credentials.
pub fn enrollment_router(token: String, enroller: Enroller) -> Router {
    Router::new()
        .route("/bootstrap/enrollments", post(take_enrollment))
        .with_state(Arc::new((token, enroller)))
}

async fn take_enrollment(
    State(taker): State<Arc<(String, Enroller)>>,
    headers: axum::http::HeaderMap,
    axum::Json(enrollment): axum::Json<Enrollment>,
) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let (token, enroller) = &*taker;
    if token.is_empty()
        || !bool::from(subtle::ConstantTimeEq::ct_eq(
            given.as_bytes(),
            token.as_bytes(),
        ))
    {
        return (StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n").into_response();
    }
    match enroller(enrollment).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error @ EnrollError::Conflict(_)) => {
            (StatusCode::CONFLICT, format!("{error}\n")).into_response()
        }
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")).into_response(),
    }
}

/// The enroller of a standalone bootstrap server: an authenticated call to the
/// gateway's enrollment endpoint (its certificate checked as `tls` says).
pub fn remote_enroller(
    enrollments_url: String,
    token: String,
    tls: &gwmo_net::ClientTls,
) -> Enroller {
    let client = gwmo_net::HttpClient::new(tls, std::time::Duration::from_secs(10), 4096);
    Arc::new(move |enrollment: Enrollment| {
        let (client, url, auth) = (
            client.clone(),
            enrollments_url.clone(),
            format!("Bearer {token}"),
        );
        Box::pin(async move {
            let unavailable = |e: &dyn std::fmt::Display| EnrollError::Unavailable(e.to_string());
            let body = serde_json::to_vec(&enrollment).map_err(|e| unavailable(&e))?;
            let headers = [
                ("content-type", "application/json"),
                ("authorization", auth.as_str()),
            ];
            let answer = client
                .request(gwmo_net::Method::POST, &url, &headers, body)
                .await
                .map_err(|e| unavailable(&e))?;
            let said = String::from_utf8_lossy(&answer.body).trim().to_owned();
            match answer.status {
                200..=299 => Ok(()),
                409 => Err(EnrollError::Conflict(said)),
                status => Err(EnrollError::Unavailable(format!(
                    "the gateway answered HTTP {status}: {said}"
                ))),
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gwmo_proto::codes::content_type;
    use std::sync::Mutex;
    use std::time::Duration;

    async fn serve(settings: BootstrapSettings, enroller: Enroller) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(settings, enroller)).await });
        format!("http://{addr}/bootstrap")
    }

    fn recording_enroller() -> (Enroller, Arc<Mutex<Vec<Enrollment>>>) {
        let learnt = Arc::new(Mutex::new(Vec::new()));
        let sink = learnt.clone();
        let enroller: Enroller = Arc::new(move |e: Enrollment| {
            let mut learnt = sink.lock().unwrap();
            let known = learnt.iter().any(|k: &Enrollment| k.dev_id == e.dev_id);
            let result = if known && !e.proven {
                Err(EnrollError::Conflict("served already".into()))
            } else {
                learnt.push(e);
                Ok(())
            };
            Box::pin(async move { result })
        });
        (enroller, learnt)
    }

    async fn post(url: &str, request: &BootstrapRequest) -> gwmo_net::HttpResponse {
        let plain = gwmo_net::ClientTls::trusting(None, true).unwrap();
        let client = gwmo_net::HttpClient::new(&plain, Duration::from_secs(5), 1 << 16);
        let body = serde_json::to_vec(request).unwrap();
        client
            .post(url, "application/json", None, body)
            .await
            .unwrap()
    }

    fn challenge_of(answer: &gwmo_net::HttpResponse) -> String {
        let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        body["challenge"].as_str().unwrap().to_owned()
    }

    fn request(dev_id: &str) -> BootstrapRequest {
        BootstrapRequest {
            dev_id: dev_id.into(),
            max_lapse_secs: 600,
            ..BootstrapRequest::default()
        }
    }

    #[tokio::test]
    async fn req_8x2_a_device_that_proves_its_userpin_gets_its_gateway_account() {
        let (enroller, learnt) = recording_enroller();
        let settings = BootstrapSettings {
            userpins: BTreeMap::from([("IMEI:1".to_owned(), "1234".to_owned())]),
            ..BootstrapSettings::default()
        };
        let url = serve(settings, enroller).await;
        let first = post(&url, &request("IMEI:1")).await;
        assert_eq!(first.status, 401, "no proof, no bootstrap");
        assert!(learnt.lock().unwrap().is_empty());
        let wrong = post(
            &url,
            &request("IMEI:1").answer(&challenge_of(&first), "9999"),
        )
        .await;
        assert_eq!(wrong.status, 401, "a wrong PIN");
        let replayed = post(
            &url,
            &request("IMEI:1").answer(&challenge_of(&first), "1234"),
        )
        .await;
        assert_eq!(replayed.status, 401, "a used challenge");
        let answer = post(
            &url,
            &request("IMEI:1").answer(&challenge_of(&replayed), "1234"),
        )
        .await;
        assert_eq!(answer.status, 200);
        let bootstrap =
            gwmo_tree::read_bootstrap(std::str::from_utf8(&answer.body).unwrap()).unwrap();
        let learnt = learnt.lock().unwrap().clone();
        assert_eq!(learnt.len(), 1);
        assert!(learnt[0].proven);
        let client_auth = bootstrap
            .account
            .credentials(gwmo_tree::AuthLevel::Client)
            .unwrap();
        assert_eq!(client_auth.secret, learnt[0].client_secret);
        assert_eq!(
            bootstrap.lapse_secs,
            Some(600),
            "the device's shorter maximum"
        );
        assert_eq!(learnt[0].lapse_secs, 600);
        let mac = answer.content_type.unwrap();
        let hex = mac.split("MAC=").nth(1).unwrap();
        assert!(gwmo_proto::auth::verify_bootstrap_mac(b"1234", &answer.body, hex).is_ok());
    }

    #[tokio::test]
    async fn finding_8_strangers_get_nothing_and_no_one_re_keys_a_device_unproven() {
        let (enroller, learnt) = recording_enroller();
        let url = serve(BootstrapSettings::default(), enroller).await;
        for i in 0..10 {
            let answer = post(&url, &request(&format!("IMEI:made-up-{i}"))).await;
            assert_eq!(answer.status, 403);
        }
        assert!(
            learnt.lock().unwrap().is_empty(),
            "a stranger cost the gateway a write"
        );
        let garbage = serde_json::to_vec(&serde_json::json!({"dev_id": ""})).unwrap();
        let plain = gwmo_net::ClientTls::trusting(None, true).unwrap();
        let client = gwmo_net::HttpClient::new(&plain, Duration::from_secs(5), 1 << 16);
        let bad = client
            .post(&url, "application/json", None, garbage)
            .await
            .unwrap();
        assert_eq!(bad.status, 400);

        let (enroller, learnt) = recording_enroller();
        let open = BootstrapSettings {
            issue_unsigned: true,
            ..BootstrapSettings::default()
        };
        let url = serve(open, enroller).await;
        let first = post(&url, &request("IMEI:2")).await;
        assert_eq!(first.status, 200);
        assert_eq!(
            first.content_type.as_deref(),
            Some(content_type::TNDS_XML),
            "no PIN, no MAC"
        );
        let again = post(&url, &request("IMEI:2")).await;
        assert_eq!(again.status, 409, "re-keyed by an unproven request");
        assert_eq!(learnt.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn finding_8_requests_are_rate_limited() {
        let (enroller, _) = recording_enroller();
        let slow = BootstrapSettings {
            requests_per_sec: 1,
            ..BootstrapSettings::default()
        };
        let url = serve(slow, enroller).await;
        let mut statuses = Vec::new();
        for i in 0..3 {
            statuses.push(post(&url, &request(&format!("IMEI:{i}"))).await.status);
        }
        assert_eq!(
            statuses,
            vec![403, 403, 429],
            "two at once, then one a second"
        );
    }
}
