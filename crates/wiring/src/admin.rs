//! The admin API of a server or gateway, over the one HTTP client (TLS unless told
//! otherwise), with its bearer token.

use gwmo_net::{HttpClient, Method};
use gwmo_proto::auth::AuthType;
use serde_json::Value;

use crate::WiringError;

/// A server's or gateway's admin API.
#[derive(Clone)]
pub struct AdminClient {
    client: HttpClient,
    base: String,
    token: String,
}

impl AdminClient {
    /// The admin API at `base` (`https://host:port`), called with `token`.
    pub fn new(client: HttpClient, base: impl Into<String>, token: impl Into<String>) -> Self {
        AdminClient {
            client,
            base: base.into(),
            token: token.into(),
        }
    }

    /// The admin API of another server or gateway, with the same client and token.
    pub fn at(&self, base: impl Into<String>) -> AdminClient {
        AdminClient::new(self.client.clone(), base, self.token.clone())
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn http(&self) -> &HttpClient {
        &self.client
    }

    /// One call, whatever its status: the status and the body (JSON, or the text as a
    /// JSON string). `body` is JSON text.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, Value), WiringError> {
        let body = body.unwrap_or_default().as_bytes().to_vec();
        self.send_bytes(method, path, "application/json", body)
            .await
    }

    /// Uploads a firmware image, described by `query` (`name=...&version=...&man=...&model=...`):
    /// the status and the artifact (or the refusal).
    pub async fn upload_artifact(
        &self,
        query: &str,
        image: Vec<u8>,
    ) -> Result<(u16, Value), WiringError> {
        let path = format!("/api/artifacts?{query}");
        self.send_bytes(Method::POST, &path, "application/octet-stream", image)
            .await
    }

    /// One call with a body of any type.
    async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Value), WiringError> {
        let auth = format!("Bearer {}", self.token);
        let answer = self
            .client
            .request(
                method,
                &format!("{}{path}", self.base),
                &[("authorization", &auth), ("content-type", content_type)],
                body,
            )
            .await?;
        let value = serde_json::from_slice(&answer.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&answer.body).into_owned()));
        Ok((answer.status, value))
    }

    /// One call that must succeed (2xx); its body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> Result<Value, WiringError> {
        match self.send(method, path, body).await? {
            (status, value) if (200..300).contains(&status) => Ok(value),
            (status, body) => Err(WiringError::Api {
                path: path.to_owned(),
                status,
                body,
            }),
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value, WiringError> {
        self.call(Method::GET, path, None).await
    }

    /// Enrolls a device; returns the enrollment (its credentials included).
    pub async fn enroll(&self, dev_id: &str, auth: AuthType) -> Result<Value, WiringError> {
        let body = serde_json::json!({ "dev_id": dev_id, "auth": auth.name() });
        self.call(Method::POST, "/api/devices", Some(&body.to_string()))
            .await
    }

    /// Queues a command (its JSON spec) for a device and wakes it; returns the
    /// command's id.
    pub async fn queue(&self, dev_id: &str, spec: &str) -> Result<i64, WiringError> {
        self.queue_at(format!("/api/devices/{dev_id}/commands"), spec)
            .await
    }

    /// Queues a command without waking the device: its next session takes it.
    pub async fn queue_without_waking(&self, dev_id: &str, spec: &str) -> Result<i64, WiringError> {
        self.queue_at(format!("/api/devices/{dev_id}/commands?wake=false"), spec)
            .await
    }

    async fn queue_at(&self, path: String, spec: &str) -> Result<i64, WiringError> {
        let answer = self.call(Method::POST, &path, Some(spec)).await?;
        answer["id"].as_i64().ok_or(WiringError::Api {
            path,
            status: 200,
            body: answer,
        })
    }

    /// Registers a gateway: its ServerID, its DevId as a client of this server, where
    /// end devices reach it, and whether it takes server-assisted bootstraps.
    pub async fn register_gateway(
        &self,
        gateway_id: &str,
        dev_id: &str,
        dm_url: &str,
        server_assisted: bool,
    ) -> Result<Value, WiringError> {
        let body = serde_json::json!({
            "gateway_id": gateway_id, "dev_id": dev_id, "dm_url": dm_url,
            "server_assisted": server_assisted,
        });
        self.call(Method::POST, "/api/gateways", Some(&body.to_string()))
            .await
    }
}
