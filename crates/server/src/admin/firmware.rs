//! Firmware through the admin API: artifacts uploaded (streamed to the artifact
//! directory while their SHA-256 is computed, never held in memory), listed and
//! removed; the public download of an artifact by its unguessable id, with HTTP Range;
//! and firmware updates sent to devices and followed to their FUMO result.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{ApiError, known_device, not_found};
use crate::firmware::{TrackedUpdate, artifact_url, new_correlator, update_command};
use crate::secrets::random_secret;
use crate::state::AppState;
use crate::store::firmware::{Artifact, Firmware, FirmwareUpdate, Removal, UpdateState};
use gwmo_net::unix_now;

fn bad_request(reason: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, reason)
}

/// What describes an uploaded image (its bytes are the request body).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    pub name: String,
    pub version: String,
    /// The Man and Mod of the devices it is for.
    pub man: String,
    pub model: String,
    /// The SHA-256 the uploader expects (hex): the upload is refused if the bytes
    /// that arrived have another.
    pub sha256: Option<String>,
}

/// An artifact id as the server makes them: 32 lowercase hex digits (and so a safe
/// file name).
fn is_artifact_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn artifact_json(state: &AppState, artifact: &Artifact) -> Value {
    let served = state
        .metrics
        .artifact_bytes(&artifact.id)
        .load(std::sync::atomic::Ordering::Relaxed);
    json!({
        "id": artifact.id,
        "name": artifact.name,
        "version": artifact.version,
        "man": artifact.man,
        "model": artifact.model,
        "size": artifact.size,
        "sha256": artifact.sha256,
        "created_at": artifact.created_at,
        "url": artifact_url(&state.dm_url, &artifact.id),
        "bytes_served": served,
    })
}

/// `POST /api/artifacts?name=&version=&man=&model=[&sha256=]`, the image as the body.
pub async fn upload(
    State(state): State<Arc<AppState>>,
    Query(query): Query<UploadQuery>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    for (field, value) in [
        ("name", &query.name),
        ("version", &query.version),
        ("man", &query.man),
        ("model", &query.model),
    ] {
        if value.trim().is_empty() || value.len() > 256 {
            return Err(bad_request(format!("{field} must be 1 to 256 characters")));
        }
    }
    let expected = query.sha256.as_deref().map(str::to_ascii_lowercase);
    if expected
        .as_deref()
        .is_some_and(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(bad_request("sha256 must be 64 hex digits"));
    }
    let dir = state.settings.artifact_path();
    tokio::fs::create_dir_all(&dir).await.map_err(|e| {
        tracing::error!(dir = %dir.display(), error = %e, "the artifact directory cannot be made");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the artifact directory cannot be written",
        )
    })?;
    let id = random_secret();
    let partial = dir.join(format!(".upload-{id}"));
    let received = receive(&state, body, &partial).await;
    let (size, sha256) = match received {
        Ok(received) => received,
        Err(error) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(error);
        }
    };
    let refused = if size == 0 {
        Some("the image is empty".to_owned())
    } else if expected.as_deref().is_some_and(|e| e != sha256) {
        Some(format!(
            "the bytes received have SHA-256 {sha256}, not the one given"
        ))
    } else {
        None
    };
    if let Some(reason) = refused {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(bad_request(reason));
    }
    let stored = dir.join(&id);
    if let Err(error) = tokio::fs::rename(&partial, &stored).await {
        tracing::error!(%error, "an uploaded image cannot be stored");
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the image cannot be stored",
        ));
    }
    let artifact = Artifact {
        id,
        name: query.name,
        version: query.version,
        man: query.man,
        model: query.model,
        size: size as i64,
        sha256,
        created_at: unix_now(),
    };
    let added = Firmware(state.store.sql()).add_artifact(&artifact);
    if let Err(error) = added {
        let _ = tokio::fs::remove_file(&stored).await;
        return Err(error.into());
    }
    tracing::info!(artifact = %artifact.id, name = %artifact.name, version = %artifact.version, size, "firmware image stored");
    Ok((StatusCode::CREATED, Json(artifact_json(&state, &artifact))))
}

/// Streams a request body into `path`; its size and hex SHA-256. Each piece must come
/// within the listener's body time, and the whole within `artifact_max_mib`.
async fn receive(
    state: &AppState,
    body: Body,
    path: &std::path::Path,
) -> Result<(u64, String), ApiError> {
    let max = state.settings.artifact_max_mib.saturating_mul(1 << 20);
    let idle = Duration::from_secs(state.settings.body_read_secs.max(1));
    let unwritable = |error: std::io::Error| {
        tracing::error!(path = %path.display(), %error, "an upload cannot be written");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the image cannot be written",
        )
    };
    let mut file = tokio::fs::File::create(path).await.map_err(unwritable)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    use futures_util::StreamExt;
    loop {
        let piece = tokio::time::timeout(idle, stream.next())
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the upload stalled for {} s", idle.as_secs()),
                )
            })?;
        let Some(piece) = piece else { break };
        let piece = piece.map_err(|e| bad_request(format!("the upload was cut: {e}")))?;
        size += piece.len() as u64;
        if size > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "an image may be {} MiB at most (artifact_max_mib)",
                    state.settings.artifact_max_mib
                ),
            ));
        }
        hasher.update(&piece);
        file.write_all(&piece).await.map_err(unwritable)?;
    }
    file.sync_all().await.map_err(unwritable)?;
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((size, sha256))
}

pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let artifacts = Firmware(state.store.sql()).artifacts()?;
    let items: Vec<Value> = artifacts.iter().map(|a| artifact_json(&state, a)).collect();
    Ok(Json(
        json!({ "artifacts": items, "total": items.len(), "next": null }),
    ))
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let artifact = Firmware(state.store.sql())
        .artifact(&id)?
        .ok_or_else(|| not_found("artifact"))?;
    Ok(Json(artifact_json(&state, &artifact)))
}

/// Removes an artifact and its file; refused (409) while updates in flight use it.
pub async fn remove(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let removal = Firmware(state.store.sql()).remove_artifact(&id)?;
    match removal {
        Removal::NotFound => Err(not_found("artifact")),
        Removal::InUse => Err(ApiError::new(
            StatusCode::CONFLICT,
            "firmware updates in flight use this artifact",
        )),
        Removal::Removed => {
            if is_artifact_id(&id) {
                let _ = tokio::fs::remove_file(state.settings.artifact_path().join(&id)).await;
            }
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

/// `GET /firmware/{id}`: the image, whole or the range asked for. No bearer token:
/// devices and gateways download with the URL they were sent, whose id is 128 random
/// bits.
pub async fn download(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !is_artifact_id(&id) {
        return (StatusCode::NOT_FOUND, "no such image\n").into_response();
    }
    let known = Firmware(state.store.sql()).artifact(&id);
    match known {
        Ok(Some(_)) => {}
        Ok(None) => return (StatusCode::NOT_FOUND, "no such image\n").into_response(),
        Err(error) => {
            tracing::error!(%error, "store failure reading an artifact");
            return (StatusCode::SERVICE_UNAVAILABLE, "store failure\n").into_response();
        }
    }
    let path = state.settings.artifact_path().join(&id);
    let sent = state.metrics.artifact_bytes(&id);
    gwmo_net::files::serve_file(&path, &headers, "application/octet-stream", sent).await
}

/// A firmware update for one device.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    pub artifact: String,
    /// Where the device downloads it from, if not from this server (a mirror).
    pub pkg_url: Option<String>,
    /// Send it even to a device whose reported Man or Mod is not the artifact's.
    #[serde(default)]
    pub force: bool,
    /// Wake the device for it (default: yes).
    pub wake: Option<bool>,
}

fn update_json(update: &FirmwareUpdate) -> Value {
    json!({
        "correlator": update.correlator,
        "dev_id": update.dev_id,
        "artifact": update.artifact_id,
        "command": update.command_id,
        "fanout": update.fanout_id,
        "state": update.state.name(),
        "result": update.result,
        "result_meaning": update.result.map(|r| gwmo_tree::fumo::ResultCode(r as u16).meaning()),
        "reason": update.reason,
        "created_at": update.created_at,
        "updated_at": update.updated_at,
    })
}

/// `POST /api/devices/{dev_id}/firmware`: queues the FUMO update and wakes the device.
pub async fn update_device(
    State(state): State<Arc<AppState>>,
    Path(dev_id): Path<String>,
    Json(request): Json<UpdateRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let device = known_device(&state, &dev_id)?;
    let firmware = Firmware(state.store.sql());
    let artifact = firmware
        .artifact(&request.artifact)?
        .ok_or_else(|| not_found("artifact"))?;
    let (man, model) = (device.devinfo_leaf("Man"), device.devinfo_leaf("Mod"));
    if !request.force && (man != artifact.man || model != artifact.model) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "the artifact is for {}/{}, the device reported {man}/{model} (force to send it anyway)",
                artifact.man, artifact.model
            ),
        ));
    }
    let pkg_url = package_url(&state, &artifact, request.pkg_url.clone())?;
    let tracked = TrackedUpdate {
        correlator: new_correlator(),
        artifact: artifact.id.clone(),
    };
    let spec = update_command(&artifact, &pkg_url, &tracked.correlator);
    let now = unix_now();
    let command = state.store.queue_command(&dev_id, &spec.to_json(), now)?;
    let update = tracked.for_device(&dev_id, Some(command), None, now);
    firmware.add_update(&update)?;
    if request.wake.unwrap_or(true) {
        state.dm.wake_later(&dev_id);
    }
    tracing::info!(device = %dev_id, artifact = %artifact.id, version = %artifact.version, "firmware update queued");
    Ok((StatusCode::ACCEPTED, Json(update_json(&update))))
}

/// Where an update sends the device (or gateway) for the package: the mirror asked
/// for, which must be an http(s) URL, or this server's own download URL.
fn package_url(
    state: &AppState,
    artifact: &Artifact,
    mirror: Option<String>,
) -> Result<String, ApiError> {
    match mirror {
        None => Ok(artifact_url(&state.dm_url, &artifact.id)),
        Some(url) if url.starts_with("https://") || url.starts_with("http://") => Ok(url),
        Some(_) => Err(bad_request("pkg_url must be an http(s) URL")),
    }
}

/// A firmware update for end devices behind a gateway.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayUpdateRequest {
    pub artifact: String,
    /// The DevIds of the end devices to update.
    pub targets: Vec<String>,
    /// Where the gateway fetches it from, if not from this server (a mirror).
    pub pkg_url: Option<String>,
}

/// `POST /api/gateways/{gateway_id}/firmware`: one fan-out hands the update to the
/// gateway, which fetches the image once into its image store and serves it to its
/// end devices on their network; each device's update ends with the result the
/// gateway reports for it.
pub async fn update_behind_gateway(
    State(state): State<Arc<AppState>>,
    Path(gateway_id): Path<String>,
    Json(request): Json<GatewayUpdateRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if request.targets.is_empty()
        || request
            .targets
            .iter()
            .any(|t| t.is_empty() || t.contains(',') || t == "*")
    {
        return Err(bad_request("targets must be a non-empty list of DevIds"));
    }
    let artifact = Firmware(state.store.sql())
        .artifact(&request.artifact)?
        .ok_or_else(|| not_found("artifact"))?;
    let pkg_url = package_url(&state, &artifact, request.pkg_url.clone())?;
    let correlator = new_correlator();
    let spec = update_command(&artifact, &pkg_url, &correlator);
    let now = unix_now();
    let tracked = TrackedUpdate {
        correlator: correlator.clone(),
        artifact: artifact.id.clone(),
    };
    let record = |fanout_id: i64| {
        let firmware = Firmware(state.store.sql());
        request.targets.iter().try_for_each(|dev_id| {
            firmware.add_update(&tracked.for_device(dev_id, None, Some(fanout_id), now))
        })
    };
    let (fanout, woken) =
        super::hand_to_gateway(&state, &gateway_id, &request.targets, &spec, record).await?;
    tracing::info!(gateway = %gateway_id, fanout, devices = request.targets.len(), artifact = %artifact.id, "firmware update handed to a gateway");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "fanout": fanout, "correlator": correlator, "woken": woken })),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatesQuery {
    pub state: Option<String>,
    pub limit: Option<u32>,
}

/// The listing of firmware updates: of one device (`dev_id`), or of all.
fn list_updates(
    state: &AppState,
    dev_id: Option<&str>,
    query: &UpdatesQuery,
) -> Result<Json<Value>, ApiError> {
    let wanted =
        match query.state.as_deref() {
            Some(name) => Some(UpdateState::from_name(name).ok_or_else(|| {
                bad_request("state must be queued, accepted, succeeded or failed")
            })?),
            None => None,
        };
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let updates = Firmware(state.store.sql()).updates(dev_id, wanted, limit)?;
    let items: Vec<Value> = updates.iter().map(update_json).collect();
    Ok(Json(
        json!({ "updates": items, "total": items.len(), "next": null }),
    ))
}

pub async fn device_updates(
    State(state): State<Arc<AppState>>,
    Path(dev_id): Path<String>,
    Query(query): Query<UpdatesQuery>,
) -> Result<Json<Value>, ApiError> {
    known_device(&state, &dev_id)?;
    list_updates(&state, Some(&dev_id), &query)
}

pub async fn all_updates(
    State(state): State<Arc<AppState>>,
    Query(query): Query<UpdatesQuery>,
) -> Result<Json<Value>, ApiError> {
    list_updates(&state, None, &query)
}
