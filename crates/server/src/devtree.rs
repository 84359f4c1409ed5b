//! The DM tree a device last reported, for the operator: asking the device for it
//! (a `Get` of the root as TNDS, which carries only what this server may read), the
//! tree as a list of leaves, and the DM accounts in it with their bootstrap
//! provenance (origin, trust, lapse deadline). Secrets never leave the server.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use std::collections::HashMap;

use gwmo_tree::{DMACC, DmAccount, Tree, dm_accounts, mirrored_provenance};
use serde_json::{Value, json};

use crate::admin::{ApiError, known_device, queue_and_wake};
use crate::command::CommandSpec;
use crate::dm::TREE_REPORT_TARGET;
use crate::state::AppState;

/// Shown instead of a secret's value.
const HIDDEN: &str = "(hidden)";

/// Asks the device for its tree: the Get is queued and the device woken when it can be.
pub async fn request_tree(
    State(state): State<Arc<AppState>>,
    Path(dev_id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let device = known_device(&state, &dev_id)?;
    let spec = CommandSpec::Get {
        target: TREE_REPORT_TARGET.into(),
    };
    queue_and_wake(&state, &device, &spec).await
}

/// The last reported tree as leaves (`uri`, `format`, `value`), secrets hidden.
pub async fn get_tree(
    State(state): State<Arc<AppState>>,
    Path(dev_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let Some((tnds, reported_at)) = reported_tnds(&state, &dev_id)? else {
        return Ok(Json(
            json!({ "dev_id": dev_id, "reported_at": null, "leaves": [] }),
        ));
    };
    let nodes = gwmo_proto::tnds::parse(&tnds).map_err(|error| corrupt(&dev_id, &error))?;
    let leaves: Vec<Value> = gwmo_proto::tnds::leaves(&nodes, ".")
        .into_iter()
        .map(|(uri, value, format)| {
            let value = if uri.ends_with("/AAuthSecret") {
                HIDDEN.to_owned()
            } else {
                value
            };
            json!({ "uri": uri, "format": format, "value": value })
        })
        .collect();
    Ok(Json(json!({
        "dev_id": dev_id, "reported_at": reported_at, "leaves": leaves,
    })))
}

/// The DM accounts of the last reported tree, with the provenance of each.
pub async fn get_accounts(
    State(state): State<Arc<AppState>>,
    Path(dev_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let Some((tnds, reported_at)) = reported_tnds(&state, &dev_id)? else {
        return Ok(Json(
            json!({ "dev_id": dev_id, "reported_at": null, "accounts": [] }),
        ));
    };
    let tree = Tree::from_tnds(&tnds, ".").map_err(|error| corrupt(&dev_id, &error))?;
    // Accounts this server may read whole, and those of which it may read only the
    // provenance (a gateway's account belongs to that gateway).
    let readable: HashMap<String, DmAccount> = dm_accounts(&tree).into_iter().collect();
    let accounts: Vec<Value> = tree
        .children(DMACC)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|node| {
            let account = readable.get(node);
            let origin = mirrored_provenance(&tree, node);
            (account.is_some() || origin.is_some()).then(|| {
                json!({
                    "node": node,
                    "server_id": account.map(|a| a.server_id.as_str()),
                    "address": account.map(|a| a.addr.as_str()),
                    "origin": origin.as_ref().map(|o| o.origin.as_str()),
                    "trust": origin.as_ref().map(|o| o.trust.as_str()),
                    "parent": origin.as_ref().and_then(|o| o.parent.clone()),
                    "lapse_at": origin.as_ref().and_then(|o| unix_seconds(o.lapse_at.as_deref()?)),
                    "confirmed": origin.as_ref().map(|o| o.confirmed),
                })
            })
        })
        .collect();
    Ok(Json(json!({
        "dev_id": dev_id, "reported_at": reported_at, "accounts": accounts,
    })))
}

/// The TNDS document of the device's last reported tree, and when it came; `None`
/// when it never reported one.
fn reported_tnds(state: &AppState, dev_id: &str) -> Result<Option<(String, i64)>, ApiError> {
    known_device(state, dev_id)?;
    Ok(state.store.tree(dev_id)?)
}

/// An RFC 3339 time from a device's tree as Unix seconds, as the API gives every time.
fn unix_seconds(rfc3339: &str) -> Option<i64> {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

fn corrupt(dev_id: &str, error: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(device = dev_id, %error, "the stored tree does not read back");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the stored tree is corrupt",
    )
}
