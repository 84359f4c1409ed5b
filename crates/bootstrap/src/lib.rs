//! The Local DM Bootstrap Server (seed 8.x.2, DESIGN.md §2 B): an End Device on the
//! gateway's network posts its DevId to `/bootstrap` and gets a Gateway Bootstrap, a
//! TNDS document with the gateway's DM account and fresh credentials, with a
//! HMAC-SHA1 MAC made with the device's USERPIN when the server knows it (DM Security:
//! `Content-Type: ...; SEC=USERPIN; MAC=<hex>`). The gateway learns the same
//! credentials through the [`Enroller`] it provides.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use gwmo_proto::auth::{self, AuthType};
use gwmo_proto::codes::content_type;
use gwmo_tree::{DmAccount, bootstrap_document};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// Credentials the gateway must learn for a device it will manage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    pub dev_id: String,
    pub client_secret: String,
    pub server_secret: String,
}

/// How the gateway learns of a bootstrapped device (shared state when embedded).
pub type Enroller = Arc<
    dyn Fn(Enrollment) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync,
>;

/// The bootstrap server's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BootstrapSettings {
    /// The gateway the devices are bootstrapped to: its ServerID and DM URL.
    pub gateway_id: String,
    pub gateway_url: String,
    /// How long a device may take to open its first session with the gateway.
    pub lapse_secs: u64,
    /// USERPIN of each device (by DevId) whose bootstrap must carry a MAC.
    pub userpins: BTreeMap<String, String>,
}

impl Default for BootstrapSettings {
    fn default() -> Self {
        BootstrapSettings {
            gateway_id: "gwmo-gw".into(),
            gateway_url: "https://127.0.0.1:8090/dm".into(),
            lapse_secs: 3600,
            userpins: BTreeMap::new(),
        }
    }
}

struct Shared {
    settings: BootstrapSettings,
    enroller: Enroller,
}

/// The `/bootstrap` endpoint.
pub fn router(settings: BootstrapSettings, enroller: Enroller) -> Router {
    Router::new()
        .route("/bootstrap", post(bootstrap))
        .with_state(Arc::new(Shared { settings, enroller }))
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
            let body = serde_json::to_vec(&enrollment).map_err(|e| e.to_string())?;
            let headers = [
                ("content-type", "application/json"),
                ("authorization", auth.as_str()),
            ];
            let answer = client
                .request(gwmo_net::Method::POST, &url, &headers, body)
                .await
                .map_err(|e| e.to_string())?;
            match answer.status {
                200..=299 => Ok(()),
                status => Err(format!("the gateway answered HTTP {status}")),
            }
        })
    })
}

fn secret() -> String {
    rand::random::<[u8; 16]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn bootstrap(State(shared): State<Arc<Shared>>, body: String) -> Response {
    let dev_id = body.trim().to_owned();
    if dev_id.is_empty() || dev_id.len() > 256 || dev_id.contains(char::is_control) {
        return (StatusCode::BAD_REQUEST, "post the device's DevId\n").into_response();
    }
    let settings = &shared.settings;
    let enrollment = Enrollment {
        dev_id: dev_id.clone(),
        client_secret: secret(),
        server_secret: secret(),
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
    let document = match bootstrap_document(&account, settings.lapse_secs) {
        Ok(document) => document,
        Err(error) => {
            warn!(%error, "could not write a Gateway Bootstrap");
            return (StatusCode::INTERNAL_SERVER_ERROR, "bootstrap unavailable\n").into_response();
        }
    };
    if let Err(error) = (shared.enroller)(enrollment).await {
        warn!(device = %dev_id, %error, "the gateway did not take the device");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the gateway cannot take the device now\n",
        )
            .into_response();
    }
    let mime = match settings.userpins.get(&dev_id) {
        Some(pin) => format!(
            "{}; SEC=USERPIN; MAC={}",
            content_type::TNDS_XML,
            auth::bootstrap_mac(pin.as_bytes(), document.as_bytes())
        ),
        None => content_type::TNDS_XML.to_owned(),
    };
    info!(device = %dev_id, gateway = %settings.gateway_id, "Gateway Bootstrap issued");
    ([(header::CONTENT_TYPE, mime)], document).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    async fn serve(settings: BootstrapSettings, enroller: Enroller) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(settings, enroller)).await });
        format!("http://{addr}/bootstrap")
    }

    #[tokio::test]
    async fn a_device_gets_its_gateway_account_and_the_gateway_its_credentials() {
        let learnt = Arc::new(Mutex::new(Vec::new()));
        let sink = learnt.clone();
        let enroller: Enroller = Arc::new(move |e| {
            sink.lock().unwrap().push(e);
            Box::pin(async { Ok(()) })
        });
        let settings = BootstrapSettings {
            userpins: BTreeMap::from([("IMEI:1".to_owned(), "1234".to_owned())]),
            ..BootstrapSettings::default()
        };
        let url = serve(settings, enroller).await;
        let plain = gwmo_net::ClientTls::trusting(None, true).unwrap();
        let client = gwmo_net::HttpClient::new(&plain, Duration::from_secs(5), 1 << 16);
        let answer = client
            .post(&url, "text/plain", None, b"IMEI:1".to_vec())
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        let document = String::from_utf8(answer.body.clone()).unwrap();
        let bootstrap = gwmo_tree::read_bootstrap(&document).unwrap();
        let learnt = learnt.lock().unwrap().clone();
        assert_eq!(learnt.len(), 1);
        let client_auth = bootstrap
            .account
            .credentials(gwmo_tree::AuthLevel::Client)
            .unwrap();
        assert_eq!(client_auth.secret, learnt[0].client_secret);
        assert_eq!(bootstrap.lapse_secs, Some(3600));
        let mac = answer.content_type.unwrap();
        let hex = mac.split("MAC=").nth(1).unwrap();
        assert!(auth::verify_bootstrap_mac(b"1234", &answer.body, hex).is_ok());

        let other = client
            .post(&url, "text/plain", None, b"IMEI:2".to_vec())
            .await
            .unwrap();
        assert_eq!(
            other.content_type.as_deref(),
            Some(content_type::TNDS_XML),
            "no PIN, no MAC"
        );
        let bad = client
            .post(&url, "text/plain", None, b"  ".to_vec())
            .await
            .unwrap();
        assert_eq!(bad.status, 400);
    }
}
