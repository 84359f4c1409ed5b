//! The admin API (JSON over HTTP, bearer-token authenticated): enroll devices, queue
//! management commands and read their outcome, wake a device with package 0, read
//! the event log; who may do which (`access`), operator accounts and the audit log
//! (`accounts`), and the lifecycle of devices, gateways and commands (`lifecycle`).

pub mod access;
pub mod accounts;
pub mod campaigns;
mod csv;
pub mod export;
pub mod firmware;
pub mod fleet;
pub mod lifecycle;

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use gwmo_proto::auth::AuthType;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::command::{CommandSpec, StoredOutcome};
use crate::secrets::random_secret;
use crate::state::AppState;
use crate::store::counts::Counts;
use crate::store::{
    CommandFilter, CommandRecord, DeviceFilter, DeviceRecord, EventFilter, FanoutRecord,
    GatewayRecord, ListedDevice, NewDevice, QueuedCommand, StoreError,
};
use gwmo_net::unix_now;

/// An admin API error: an HTTP status and a one-line reason, as JSON.
#[derive(Debug, Clone)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        ApiError(status, reason.into())
    }
}

/// The scheme a refused request is told to use (RFC 6750).
const BEARER_CHALLENGE: &str = "Bearer realm=\"gwmo admin API\"";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.0, Json(json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static(BEARER_CHALLENGE),
            );
        }
        response
    }
}

/// The longest framework refusal read back to be put in JSON; longer ones are cut.
const MAX_REFUSAL_TEXT: usize = 4096;

/// Every refusal in the one shape the API documents, `{"error": ...}`: the
/// framework's own (a body that is not JSON, or not the expected fields; a wrong
/// content type; a bad query) come as plain text, and are put in it here.
pub(crate) async fn as_api_error(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = match axum::body::to_bytes(response.into_body(), MAX_REFUSAL_TEXT).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let reason = match text.is_empty() {
        true => status
            .canonical_reason()
            .unwrap_or("refused")
            .to_lowercase(),
        false => text,
    };
    ApiError(status, reason).into_response()
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "store failure in the admin API");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, "store failure".into())
    }
}

pub(crate) fn not_found(what: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("{what} not found"))
}

/// The enrolled device `dev_id`, or 404.
pub(crate) fn known_device(state: &AppState, dev_id: &str) -> Result<DeviceRecord, ApiError> {
    state
        .store
        .device(dev_id)?
        .ok_or_else(|| not_found("device"))
}

/// Enrollment request: the device and its credentials; missing secrets are generated.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub dev_id: String,
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub client_name: Option<String>,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub server_secret: Option<String>,
}

/// What a device's factory configuration needs to reach this server.
#[derive(Debug, Serialize)]
pub struct Enrollment {
    pub dev_id: String,
    pub auth: String,
    pub server_id: String,
    pub server_url: String,
    pub client_name: String,
    pub client_secret: String,
    pub server_name: String,
    pub server_secret: String,
}

pub async fn enroll(
    State(state): State<Arc<AppState>>,
    Json(request): Json<EnrollRequest>,
) -> Result<(StatusCode, Json<Enrollment>), ApiError> {
    Ok((StatusCode::CREATED, Json(enroll_one(&state, request)?)))
}

/// Enrolls one device; missing secrets are generated.
fn enroll_one(state: &AppState, request: EnrollRequest) -> Result<Enrollment, ApiError> {
    let bad = |reason: String| ApiError(StatusCode::BAD_REQUEST, reason);
    if request.dev_id.trim().is_empty() || request.dev_id.len() > 256 {
        return Err(bad("dev_id must be 1 to 256 characters".into()));
    }
    let auth = parse_auth(request.auth.as_deref().unwrap_or(AuthType::Md5.name()))?;
    let enrollment = Enrollment {
        auth: auth.name().into(),
        server_id: state.settings.server_id.clone(),
        server_url: state.dm_url.clone(),
        client_name: request
            .client_name
            .unwrap_or_else(|| request.dev_id.clone()),
        client_secret: request.client_secret.unwrap_or_else(random_secret),
        server_name: state.settings.server_id.clone(),
        server_secret: request.server_secret.unwrap_or_else(random_secret),
        dev_id: request.dev_id,
    };
    let device = NewDevice {
        dev_id: enrollment.dev_id.clone(),
        auth,
        client_name: enrollment.client_name.clone(),
        client_secret: enrollment.client_secret.clone(),
        server_name: enrollment.server_name.clone(),
        server_secret: enrollment.server_secret.clone(),
    };
    match state.store.enroll(&device, unix_now()) {
        Ok(()) => {
            state.dm.touch(&enrollment.dev_id);
            Ok(enrollment)
        }
        Err(StoreError::AlreadyExists(_)) => Err(ApiError(
            StatusCode::CONFLICT,
            format!("device {:?} is already enrolled", enrollment.dev_id),
        )),
        Err(error) => Err(error.into()),
    }
}

/// `?after=KEY&limit=N`: a page of a listing in key order.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    pub after: Option<String>,
    pub limit: Option<u32>,
}

/// A page's size: 100 rows unless asked, at most 1000.
pub(super) fn page_limit(limit: Option<u32>) -> u32 {
    limit.unwrap_or(100).clamp(1, 1000)
}

/// `?gateway=ID&after=DEVID&limit=N`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssociationsQuery {
    pub gateway: Option<String>,
    pub after: Option<String>,
    pub limit: Option<u32>,
}

/// A device as the API shows it: never its secrets or nonces.
fn device_json(device: &ListedDevice) -> Value {
    let record = &device.record;
    json!({
        "dev_id": record.dev_id,
        "auth": record.auth.name(),
        "devinfo": record.devinfo,
        "devdetail": device.devdetail,
        "tags": device.tags,
        "gateway": device.association,
        "notify_url": record.notify_address,
        "encoding": record.encoding,
        "sessions": record.sessions,
        "created_at": record.created_at,
        "last_session_at": record.last_session_at,
    })
}

pub async fn get_device(
    State(state): State<Arc<AppState>>,
    Path(dev_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let one = DeviceFilter {
        dev_id: Some(dev_id.clone()),
        ..DeviceFilter::default()
    };
    let device = state
        .store
        .devices(&one, None, 1)?
        .pop()
        .ok_or_else(|| not_found("device"))?;
    let commands = state
        .store
        .commands_of(&dev_id, &CommandFilter::default(), RECENT_COMMANDS)?;
    let mut body = device_json(&device);
    body["commands"] = commands.iter().map(command_json).collect();
    Ok(Json(body))
}

/// How many of its newest commands a device's record shows (all of them are paged at
/// `/api/devices/{dev_id}/commands`).
const RECENT_COMMANDS: u32 = 20;

/// The longest expiry a command can be given: a year.
const MAX_EXPIRY_SECS: u64 = 366 * 24 * 3600;

/// `?wake=false` queues without waking the device; `?expires_in=SECS` drops the
/// command if no session took it by then.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueQuery {
    pub wake: Option<bool>,
    pub expires_in: Option<u64>,
}

/// Queues a command and, unless asked not to, wakes the device for it in the
/// background (package 0, again while it answers "too soon").
pub async fn queue_command(
    State(state): State<Arc<AppState>>,
    Path(dev_id): Path<String>,
    Query(query): Query<QueueQuery>,
    body: String,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let spec =
        CommandSpec::parse(&body).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let now = unix_now();
    let expires_at = match query.expires_in {
        Some(secs @ 1..=MAX_EXPIRY_SECS) => Some(now + secs as i64),
        Some(_) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("expires_in must be 1 to {MAX_EXPIRY_SECS} seconds"),
            ));
        }
        None => None,
    };
    known_device(&state, &dev_id)?;
    let spec = spec.to_json();
    let command = QueuedCommand {
        dev_id: &dev_id,
        spec: &spec,
        expires_at,
    };
    let id = state.store.queue(&command, now)?;
    let wake = query.wake.unwrap_or(true);
    if wake {
        state.dm.wake_later(&dev_id);
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "state": "queued", "expires_at": expires_at, "waking": wake })),
    ))
}

pub async fn get_command(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let command = state
        .store
        .command(id)?
        .ok_or_else(|| not_found("command"))?;
    Ok(Json(command_json(&command)))
}

pub(super) fn command_json(command: &CommandRecord) -> Value {
    // Read back through the spec's own type: specs stored before absent fields were
    // left out held them as nulls, which the API does not show.
    let spec: Value = CommandSpec::parse(&command.spec)
        .ok()
        .and_then(|spec| serde_json::to_value(spec).ok())
        .or_else(|| serde_json::from_str(&command.spec).ok())
        .unwrap_or(Value::Null);
    let outcome: Option<StoredOutcome> = command
        .results
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok());
    json!({
        "id": command.id,
        "dev_id": command.dev_id,
        "state": command.state.as_str(),
        "spec": spec,
        "status": command.status,
        "outcome": outcome,
        "queued_at": command.queued_at,
        "sent_at": command.sent_at,
        "done_at": command.done_at,
        "expires_at": command.expires_at,
    })
}

pub async fn notify_device(
    State(state): State<Arc<AppState>>,
    Path(dev_id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let device = known_device(&state, &dev_id)?;
    // A device busy with this server (429) is notified again in the background.
    let session_id = match crate::notify::send(&state, &device).await {
        Ok(session_id) => Some(session_id),
        Err(crate::notify::NotifyError::Refused(429)) => {
            state.dm.notify_later(&dev_id);
            None
        }
        Err(error) => return Err(ApiError(StatusCode::BAD_GATEWAY, error.to_string())),
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "session_id": session_id, "retrying": session_id.is_none() })),
    ))
}

/// Registers (or updates) a DM Gateway; its DevId must be enrolled.
pub async fn register_gateway(
    State(state): State<Arc<AppState>>,
    Json(gateway): Json<GatewayRecord>,
) -> Result<(StatusCode, Json<GatewayRecord>), ApiError> {
    if gateway.gateway_id.trim().is_empty() || !gateway.dm_url.starts_with("http") {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "gateway_id must not be empty and dm_url must be an http(s) URL".into(),
        ));
    }
    if state.store.device(&gateway.dev_id)?.is_none() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("enroll the gateway's device {:?} first", gateway.dev_id),
        ));
    }
    state.store.register_gateway(&gateway)?;
    Ok((StatusCode::CREATED, Json(gateway)))
}

pub async fn list_gateways(
    State(state): State<Arc<AppState>>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(page.limit);
    let gateways = state
        .store
        .gateways(page.after.as_deref().unwrap_or(""), limit)?;
    let next = next_page(&gateways, limit, |g| g.gateway_id.clone());
    let gateways = lifecycle::gateway_details(&state, &gateways)?;
    let total = Counts(state.store.sql()).gateways()?;
    Ok(Json(
        json!({ "gateways": gateways, "next": next, "total": total }),
    ))
}

/// The key to ask for the next page with (the last row's), when this page is full.
pub(super) fn next_page<T, K>(page: &[T], limit: u32, key: impl Fn(&T) -> K) -> Option<K> {
    (page.len() == limit as usize)
        .then(|| page.last().map(key))
        .flatten()
}

/// A fan-out request: a command for several end devices behind one gateway.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FanoutRequest {
    pub targets: Vec<String>,
    pub command: serde_json::Value,
}

/// Hands a gateway a command for several of its end devices and wakes it; the results
/// come back in the gateway's next session (`GET /api/fanouts/{id}`).
pub async fn create_fanout(
    State(state): State<Arc<AppState>>,
    Path(gateway_id): Path<String>,
    Json(request): Json<FanoutRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let bad = |reason: String| ApiError(StatusCode::BAD_REQUEST, reason);
    let spec = CommandSpec::parse(&request.command.to_string()).map_err(|e| bad(e.to_string()))?;
    if request.targets.is_empty()
        || request
            .targets
            .iter()
            .any(|t| t.is_empty() || t.contains(','))
    {
        return Err(bad(
            "targets must be a non-empty list of DevIds (or [\"*\"])".into(),
        ));
    }
    let (id, woken) =
        hand_to_gateway(&state, &gateway_id, &request.targets, &spec, |_| Ok(())).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "state": "sent", "woken": woken })),
    ))
}

/// Creates a fan-out of `spec` to `targets` through gateway `gateway_id`, lets
/// `record` store what goes with it (by the fan-out's id) before the gateway hears of
/// it, queues the handover and wakes the gateway: the fan-out's id, and whether the
/// gateway was woken.
pub(crate) async fn hand_to_gateway(
    state: &AppState,
    gateway_id: &str,
    targets: &[String],
    spec: &CommandSpec,
    record: impl FnOnce(i64) -> Result<(), StoreError>,
) -> Result<(i64, bool), ApiError> {
    let gateway = state
        .store
        .gateway(gateway_id)?
        .ok_or_else(|| not_found("gateway"))?;
    let listed = serde_json::to_string(targets).unwrap_or_default();
    let id = state
        .store
        .create_fanout(gateway_id, &listed, &spec.to_json(), unix_now())?;
    record(id)?;
    let handover = crate::fanout::request(id, targets, spec);
    state
        .store
        .queue_command(&gateway.dev_id, &handover.to_json(), unix_now())?;
    // A gateway that cannot be woken (no notification URL yet, unreachable) takes the
    // fan-out at its next session: the fan-out stands either way.
    let woken = match state.store.device(&gateway.dev_id)? {
        Some(device) => crate::notify::wake_now(state, &device).await,
        None => false,
    };
    Ok((id, woken))
}

pub async fn get_fanout(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let fanout = state
        .store
        .fanout(id)?
        .ok_or_else(|| not_found("fan-out"))?;
    Ok(Json(fanout_json(&fanout)))
}

fn fanout_json(fanout: &FanoutRecord) -> Value {
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    json!({
        "id": fanout.id,
        "gateway_id": fanout.gateway_id,
        "targets": parse(&fanout.targets),
        "command": parse(&fanout.spec),
        "state": fanout.state,
        "results": fanout.results.as_deref().map(parse),
        "created_at": fanout.created_at,
        "done_at": fanout.done_at,
    })
}

pub async fn list_associations(
    State(state): State<Arc<AppState>>,
    Query(query): Query<AssociationsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(query.limit);
    let associations = state.store.associations(
        query.gateway.as_deref(),
        query.after.as_deref().unwrap_or(""),
        limit,
    )?;
    let next = next_page(&associations, limit, |a| a.dev_id.clone());
    let total = Counts(state.store.sql()).associations(query.gateway.as_deref())?;
    Ok(Json(
        json!({ "associations": associations, "next": next, "total": total }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validation {
    pub gateway_id: String,
}

/// An operator validates a locally bootstrapped gateway on a device: the command goes
/// to the device (woken with package 0 when it can be).
pub async fn validate_gateway(
    State(state): State<Arc<AppState>>,
    Path(dev_id): Path<String>,
    Json(request): Json<Validation>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let device = known_device(&state, &dev_id)?;
    state
        .store
        .gateway(&request.gateway_id)?
        .ok_or_else(|| not_found("gateway"))?;
    let spec = crate::bootstrap::validation(&request.gateway_id).to_json();
    // The plan is stored before the device can be woken for the command: its answer
    // settles the association's trust.
    let mut command = 0;
    state.store.grouped(|| {
        command = state.store.queue_command(&dev_id, &spec, unix_now())?;
        state
            .store
            .plan_validation(command, &dev_id, &request.gateway_id)
    })?;
    let woken = crate::notify::wake_now(&state, &device).await;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "command": command, "woken": woken })),
    ))
}

/// Queues `spec` for the device and wakes it with package 0 when it can be: 202 with
/// the command's id and whether the device was woken.
pub(crate) async fn queue_and_wake(
    state: &AppState,
    device: &DeviceRecord,
    spec: &CommandSpec,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = state
        .store
        .queue_command(&device.dev_id, &spec.to_json(), unix_now())?;
    let woken = crate::notify::wake_now(state, device).await;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "command": id, "woken": woken })),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthChange {
    pub auth: String,
}

/// Moves a device to another authentication scheme: a command changes the scheme of
/// this server's account on the device (`./DMAcc/<ServerID>`, as gwmo devices name
/// factory accounts), and the server follows once the device reports success, so
/// both sides use the new scheme from the next session on.
pub async fn change_auth(
    State(state): State<Arc<AppState>>,
    Path(dev_id): Path<String>,
    Json(change): Json<AuthChange>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let auth = parse_auth(&change.auth)?;
    known_device(&state, &dev_id)?;
    let account = format!("./DMAcc/{}", state.settings.server_id);
    let name = match auth {
        AuthType::Basic => "BASIC",
        AuthType::Md5 => "DIGEST",
        AuthType::Hmac => "HMAC",
    };
    let replace = |target: String| CommandSpec::Replace {
        target,
        data: name.to_owned(),
        format: None,
        mime: None,
    };
    let spec = CommandSpec::Atomic {
        commands: vec![
            replace(format!("{account}/AAuthPref")),
            replace(format!("{account}/AppAuth/1/AAuthType")),
            replace(format!("{account}/AppAuth/2/AAuthType")),
        ],
    };
    let id = state
        .store
        .queue_command(&dev_id, &spec.to_json(), unix_now())?;
    state.store.plan_auth_switch(&dev_id, auth, id)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(
            json!({ "command": id, "auth": auth.name(), "applies": "from the session after the device confirms" }),
        ),
    ))
}

fn parse_auth(text: &str) -> Result<AuthType, ApiError> {
    AuthType::from_name(text).ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("auth must be basic, md5 or hmac, not {text:?}"),
        )
    })
}

/// `?after=ID&limit=N&kind=K&device=DEVID`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    pub after: Option<i64>,
    pub limit: Option<u32>,
    pub kind: Option<String>,
    pub device: Option<String>,
}

pub async fn events(
    State(state): State<Arc<AppState>>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = EventFilter {
        kind: query.kind,
        dev_id: query.device,
    };
    let limit = page_limit(query.limit);
    let events = state
        .store
        .events(query.after.unwrap_or(0), limit, &filter)?;
    let next = next_page(&events, limit, |e| e.id);
    let total = Counts(state.store.sql()).events(&filter)?;
    Ok(Json(json!({
        "next": next,
        "total": total,
        "events": events.iter().map(|e| json!({
            "id": e.id,
            "at": e.at,
            "dev_id": e.dev_id,
            "kind": e.kind,
            "detail": serde_json::from_str::<Value>(&e.detail).unwrap_or(Value::Null),
        })).collect::<Vec<_>>(),
    })))
}
