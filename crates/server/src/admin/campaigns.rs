//! Campaigns through the admin API: start one over a device filter, follow it wave by
//! wave and device by device, pause, resume, cancel it, and retry its failed devices.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::fleet::DeviceQuery;
use super::{ApiError, next_page, not_found, page_limit};
use crate::campaign::{self, CampaignError, Plan, WaveSize};
use crate::command::CommandSpec;
use crate::firmware::{artifact_url, new_correlator, update_command};
use crate::state::AppState;
use crate::store::campaigns::{
    CampaignRecord, CampaignState, Campaigns, TargetRecord, TargetState,
};
use crate::store::counts::Counts;
use crate::store::firmware::Firmware;
use gwmo_net::unix_now;

/// The largest wave: what one step of a campaign holds in memory.
const MAX_WAVE: u32 = 10_000;

impl From<CampaignError> for ApiError {
    fn from(error: CampaignError) -> Self {
        match error {
            CampaignError::Store(error) => error.into(),
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCampaignRequest {
    pub name: String,
    /// The command each device gets, or
    pub command: Option<Value>,
    /// a firmware update from an uploaded artifact: `{"artifact": id}`.
    pub firmware: Option<FirmwareCampaign>,
    /// The devices: every enrolled device when absent.
    #[serde(default)]
    pub filter: Option<DeviceQuery>,
    pub wave_size: Option<u32>,
    pub wave_percent: Option<u8>,
    /// A wave in which more than this share failed pauses the campaign (default 10).
    pub error_threshold_percent: Option<u8>,
}

/// The firmware a campaign installs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirmwareCampaign {
    pub artifact: String,
}

/// Starts a campaign; its first wave goes out at once.
pub async fn create(
    State(state): State<Arc<AppState>>,
    Json(request): Json<NewCampaignRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let bad = |reason: String| ApiError::new(StatusCode::BAD_REQUEST, reason);
    if request.name.trim().is_empty() || request.name.len() > 200 {
        return Err(bad("name must be 1 to 200 characters".into()));
    }
    let spec = match (&request.command, &request.firmware) {
        (Some(command), None) => {
            CommandSpec::parse(&command.to_string()).map_err(|e| bad(e.to_string()))?
        }
        (None, Some(firmware)) => {
            let artifact = Firmware(state.store.sql())
                .artifact(&firmware.artifact)?
                .ok_or_else(|| not_found("artifact"))?;
            // Each device's update is followed under this correlator, and the
            // campaign's progress with it (crate::campaign).
            update_command(
                &artifact,
                &artifact_url(&state.dm_url, &artifact.id),
                &new_correlator(),
            )
        }
        _ => return Err(bad("give a command or a firmware update, not both".into())),
    };
    let wave = match (request.wave_size, request.wave_percent) {
        (Some(size @ 1..=MAX_WAVE), None) => WaveSize::Devices(size),
        (None, Some(percent @ 1..=100)) => WaveSize::Percent(percent),
        (None, None) => WaveSize::Devices(100),
        _ => {
            return Err(bad(format!(
                "give wave_size (1 to {MAX_WAVE}) or wave_percent (1 to 100), not both"
            )));
        }
    };
    let threshold = request.error_threshold_percent.unwrap_or(10);
    if threshold > 100 {
        return Err(bad("error_threshold_percent is 0 to 100".into()));
    }
    let query = request.filter.unwrap_or_default();
    if !query.is_filter_only() {
        return Err(bad("a filter takes no after, limit or format".into()));
    }
    let filter_json = serde_json::to_string(&query).unwrap_or_default();
    let now = unix_now();
    let filter = query.filter(now);
    let plan = Plan {
        name: request.name.trim(),
        spec: &spec,
        filter: &filter,
        filter_json: &filter_json,
        wave,
        threshold_percent: threshold,
    };
    let (id, targeted) = campaign::create(state.store.as_ref(), &plan, now)?;
    if matches!(wave, WaveSize::Percent(_)) && targeted == 0 {
        tracing::info!(campaign = id, "a campaign over no device");
    }
    move_on(&state, id)?;
    Ok((StatusCode::CREATED, Json(campaign_json(&state, id)?)))
}

/// Moves the campaign on now and wakes whom it sent to.
fn move_on(state: &AppState, id: i64) -> Result<(), ApiError> {
    for dev_id in campaign::advance(state.store.as_ref(), id, unix_now())? {
        state.dm.wake_later(&dev_id);
    }
    Ok(())
}

/// A campaign with its progress: devices by state, in all and wave by wave.
fn campaign_json(state: &AppState, id: i64) -> Result<Value, ApiError> {
    let campaigns = Campaigns(state.store.sql());
    let record = campaigns.get(id)?.ok_or_else(|| not_found("campaign"))?;
    let mut totals: BTreeMap<&str, u64> = TargetState::ALL.iter().map(|s| (s.name(), 0)).collect();
    let mut waves: BTreeMap<i64, BTreeMap<&str, u64>> = BTreeMap::new();
    for count in campaigns.waves(id)? {
        *totals.entry(count.state.name()).or_default() += count.devices;
        let wave = waves
            .entry(count.wave)
            .or_insert_with(|| TargetState::ALL.iter().map(|s| (s.name(), 0)).collect());
        *wave.entry(count.state.name()).or_default() += count.devices;
    }
    let mut body = summary_json(&record);
    body["devices"] = json!(totals);
    body["waves"] = waves
        .into_iter()
        .map(|(wave, counts)| {
            let mut row = json!(counts);
            row["wave"] = json!(wave);
            row
        })
        .collect();
    Ok(body)
}

fn summary_json(record: &CampaignRecord) -> Value {
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    json!({
        "id": record.id,
        "name": record.name,
        "command": parse(&record.spec),
        "filter": parse(&record.filter),
        "wave_size": record.wave_size,
        "error_threshold_percent": record.threshold_percent,
        "state": record.state.name(),
        "wave": record.wave,
        "reason": record.reason,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    })
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(campaign_json(&state, id)?))
}

/// `?before=ID&limit=N`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

/// Campaigns, newest first.
pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(query.limit);
    let campaigns = Campaigns(state.store.sql()).list(query.before, limit)?;
    let next = next_page(&campaigns, limit, |c| c.id);
    let total = Counts(state.store.sql()).campaigns()?;
    Ok(Json(json!({
        "campaigns": campaigns.iter().map(summary_json).collect::<Vec<_>>(),
        "next": next,
        "total": total,
    })))
}

/// `?wave=N&state=S&after=DEVID&limit=N`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesQuery {
    pub wave: Option<i64>,
    pub state: Option<String>,
    pub after: Option<String>,
    pub limit: Option<u32>,
}

/// A campaign's devices, each with its wave and outcome.
pub async fn devices(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
    Query(query): Query<DevicesQuery>,
) -> Result<Json<Value>, ApiError> {
    let campaigns = Campaigns(state.store.sql());
    campaigns.get(id)?.ok_or_else(|| not_found("campaign"))?;
    let target_state = query
        .state
        .as_deref()
        .map(|name| {
            TargetState::from_name(name).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("state must be pending, sent, done, failed or cancelled, not {name:?}"),
                )
            })
        })
        .transpose()?;
    let limit = page_limit(query.limit);
    let after = query.after.unwrap_or_default();
    let targets = campaigns.targets(id, query.wave, target_state, &after, limit)?;
    let next = next_page(&targets, limit, |t| t.dev_id.clone());
    let total = Counts(state.store.sql()).campaign_targets(
        id,
        query.wave,
        target_state.map(TargetState::name),
    )?;
    Ok(Json(json!({
        "devices": targets.iter().map(target_json).collect::<Vec<_>>(),
        "next": next,
        "total": total,
    })))
}

fn target_json(target: &TargetRecord) -> Value {
    json!({
        "dev_id": target.dev_id,
        "wave": target.wave,
        "state": target.state.name(),
        "gateway_id": target.gateway_id,
        "command_id": target.command_id,
        "fanout_id": target.fanout_id,
        "status": target.status,
        "error": target.error,
        "attempts": target.attempts,
        "updated_at": target.updated_at,
    })
}

/// Pauses a running campaign: no new wave starts (what went out still runs).
pub async fn pause(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let campaigns = Campaigns(state.store.sql());
    let reason = Some("paused by an operator");
    let moved = campaigns.set_state(
        id,
        &[CampaignState::Running],
        CampaignState::Paused,
        reason,
        false,
        unix_now(),
    )?;
    transition(&state, id, moved, "only a running campaign can be paused")
}

/// Resumes a paused campaign, accepting the failures of the waves started so far.
pub async fn resume(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let campaigns = Campaigns(state.store.sql());
    let moved = campaigns.set_state(
        id,
        &[CampaignState::Paused],
        CampaignState::Running,
        None,
        true,
        unix_now(),
    )?;
    if moved {
        move_on(&state, id)?;
    }
    transition(&state, id, moved, "only a paused campaign can be resumed")
}

/// Cancels a running or paused campaign.
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let moved = campaign::cancel(state.store.as_ref(), id, unix_now())?;
    transition(&state, id, moved, "the campaign has ended already")
}

/// Tries the failed devices again, in a wave of their own after the others.
pub async fn retry(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let campaigns = Campaigns(state.store.sql());
    let record = campaigns.get(id)?.ok_or_else(|| not_found("campaign"))?;
    if record.state == CampaignState::Cancelled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the campaign was cancelled",
        ));
    }
    let now = unix_now();
    let retried = campaigns.retry_failed(id, now)?;
    if retried > 0 {
        let from = [CampaignState::Done, CampaignState::Paused];
        campaigns.set_state(id, &from, CampaignState::Running, None, true, now)?;
        move_on(&state, id)?;
    }
    let mut body = campaign_json(&state, id)?;
    body["retried"] = json!(retried);
    Ok(Json(body))
}

/// The campaign after a state change, or 404 / 409 with why it did not change.
fn transition(
    state: &AppState,
    id: i64,
    moved: bool,
    refusal: &str,
) -> Result<Json<Value>, ApiError> {
    let body = campaign_json(state, id)?;
    match moved {
        true => Ok(Json(body)),
        false => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "campaign {id} is {}: {refusal}",
                body["state"].as_str().unwrap_or("?")
            ),
        )),
    }
}
