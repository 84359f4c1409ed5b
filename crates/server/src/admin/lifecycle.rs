//! The lifecycle of what the server manages: a device decommissioned, a gateway read
//! and removed, a device's commands listed and cancelled, fan-outs listed.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, command_json, known_device, next_page, not_found, page_limit};
use crate::state::AppState;
use crate::store::counts::Counts;
use crate::store::{
    Cancelled, CommandFilter, CommandState, Decommissioned, GatewayRecord, GatewayRemoval,
};
use gwmo_net::unix_now;

/// Decommissions a device: the server forgets it, its commands and its association;
/// the gateway that served it (if registered) is told to remove it from its Device
/// Inventory, which makes the gateway stop serving it, and is woken for that.
pub async fn decommission_device(
    State(state): State<Arc<AppState>>,
    Path(dev_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let association = match state.store.decommission_device(&dev_id)? {
        Decommissioned::Removed(association) => association,
        Decommissioned::IsGateway(gateway_id) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "{dev_id:?} is the device of gateway {gateway_id:?}: remove the gateway first"
                ),
            ));
        }
        Decommissioned::NotFound => return Err(not_found("device")),
    };
    state.dm.touch(&dev_id);
    let gateway = match association {
        Some(association) => {
            let told = match state.store.gateway(&association.gateway_id)? {
                Some(gateway) => {
                    let removal = crate::bootstrap::inventory_remove(&dev_id).to_json();
                    let command =
                        state
                            .store
                            .queue_command(&gateway.dev_id, &removal, unix_now())?;
                    state.dm.wake_later(&gateway.dev_id);
                    Some(command)
                }
                None => None,
            };
            json!({
                "gateway_id": association.gateway_id,
                "origin": association.origin,
                "command": told,
            })
        }
        None => Value::Null,
    };
    Ok(Json(json!({
        "dev_id": dev_id,
        "decommissioned": true,
        "gateway": gateway,
    })))
}

/// A registered gateway, with how many devices are behind it and when its device
/// last held a session.
pub async fn get_gateway(
    State(state): State<Arc<AppState>>,
    Path(gateway_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let gateway = state
        .store
        .gateway(&gateway_id)?
        .ok_or_else(|| not_found("gateway"))?;
    let mut details = gateway_details(&state, &[gateway])?;
    Ok(Json(details.pop().unwrap_or_default()))
}

/// Gateways as the API shows them: each with how many devices are behind it and when
/// its device last held a session (an operator tells a silent gateway by it).
pub(super) fn gateway_details(
    state: &AppState,
    gateways: &[GatewayRecord],
) -> Result<Vec<Value>, ApiError> {
    let ids: Vec<&str> = gateways.iter().map(|g| g.gateway_id.as_str()).collect();
    let counts = state.store.associated_counts(&ids)?;
    gateways
        .iter()
        .map(|gateway| {
            let last_session_at = state
                .store
                .device(&gateway.dev_id)?
                .and_then(|d| d.last_session_at);
            Ok(json!({
                "gateway_id": gateway.gateway_id,
                "dev_id": gateway.dev_id,
                "dm_url": gateway.dm_url,
                "server_assisted": gateway.server_assisted,
                "devices": counts.get(&gateway.gateway_id).copied().unwrap_or(0),
                "last_session_at": last_session_at,
            }))
        })
        .collect()
}

/// `?force=true`: remove it even with devices behind it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveGatewayQuery {
    #[serde(default)]
    pub force: bool,
}

pub async fn remove_gateway(
    State(state): State<Arc<AppState>>,
    Path(gateway_id): Path<String>,
    Query(query): Query<RemoveGatewayQuery>,
) -> Result<Json<Value>, ApiError> {
    match state.store.remove_gateway(&gateway_id, query.force)? {
        GatewayRemoval::Removed(associations) => Ok(Json(json!({
            "gateway_id": gateway_id,
            "removed": true,
            "associations_dropped": associations,
        }))),
        GatewayRemoval::HasDevices(behind) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "{behind} devices are behind gateway {gateway_id:?}: move them first, or remove it with ?force=true (they stay enrolled, without a gateway)"
            ),
        )),
        GatewayRemoval::NotFound => Err(not_found("gateway")),
    }
}

/// `?state=S&before=ID&limit=N`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandsQuery {
    pub state: Option<String>,
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

/// A device's commands, newest first, a page at a time.
pub async fn list_commands(
    State(state): State<Arc<AppState>>,
    Path(dev_id): Path<String>,
    Query(query): Query<CommandsQuery>,
) -> Result<Json<Value>, ApiError> {
    known_device(&state, &dev_id)?;
    let command_state = query
        .state
        .as_deref()
        .map(|name| {
            CommandState::from_name(name).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("state must be queued, sent, done, cancelled or expired, not {name:?}"),
                )
            })
        })
        .transpose()?;
    let limit = page_limit(query.limit);
    let filter = CommandFilter {
        state: command_state,
        before: query.before,
    };
    let commands = state.store.commands_of(&dev_id, &filter, limit)?;
    let total = Counts(state.store.sql()).commands(&dev_id, filter.state)?;
    Ok(Json(json!({
        "commands": commands.iter().map(command_json).collect::<Vec<_>>(),
        "next": next_page(&commands, limit, |c| c.id),
        "total": total,
    })))
}

/// Takes back a queued command; one already sent (or ended) is not.
pub async fn cancel_command(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    match state.store.cancel_command(id, unix_now())? {
        Cancelled::Now => Ok(Json(json!({ "id": id, "state": "cancelled" }))),
        Cancelled::TooLate(now) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "command {id} is {}: only a queued command can be cancelled",
                now.as_str()
            ),
        )),
        Cancelled::NotFound => Err(not_found("command")),
    }
}

/// `?gateway=ID&before=ID&limit=N`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FanoutsQuery {
    pub gateway: Option<String>,
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

/// Fan-outs, newest first, a page at a time.
pub async fn list_fanouts(
    State(state): State<Arc<AppState>>,
    Query(query): Query<FanoutsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(query.limit);
    let fanouts = state
        .store
        .fanouts(query.gateway.as_deref(), query.before, limit)?;
    let total = Counts(state.store.sql()).fanouts(query.gateway.as_deref())?;
    Ok(Json(json!({
        "fanouts": fanouts.iter().map(super::fanout_json).collect::<Vec<_>>(),
        "next": next_page(&fanouts, limit, |f| f.id),
        "total": total,
    })))
}
