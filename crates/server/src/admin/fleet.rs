//! The fleet as a whole: devices found by what they reported, where they are and how
//! they are tagged (with totals), tags set in bulk, and devices exported to and
//! enrolled from CSV.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::csv;
use super::{ApiError, EnrollRequest, device_json, enroll_one, next_page, page_limit};
use crate::state::AppState;
use crate::store::{DeviceFilter, ListedDevice, valid_tag};
use gwmo_net::unix_now;

/// At most this many devices go into one CSV export.
const MAX_EXPORT: usize = 1_000_000;
/// At most this many devices are enrolled from one CSV document.
const MAX_IMPORT: usize = 10_000;

/// Which devices: a listing's query (`?after=DEVID&limit=N&format=json|csv` and the
/// filter's fields), or a bulk change's `filter` (the filter's fields only).
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// DevId prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub man: Option<String>,
    #[serde(rename = "mod")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fwv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Seen (a session) within this many seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen_within: Option<u64>,
    /// Not seen for at least this many seconds (or never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unseen_for: Option<u64>,
}

impl DeviceQuery {
    /// Whether it names only what devices are filtered by (no page, no format).
    pub(super) fn is_filter_only(&self) -> bool {
        self.after.is_none() && self.limit.is_none() && self.format.is_none()
    }

    pub(super) fn filter(self, now: i64) -> DeviceFilter {
        let ago = |secs: u64| now.saturating_sub(i64::try_from(secs).unwrap_or(i64::MAX));
        DeviceFilter {
            dev_id_prefix: self.search.filter(|s| !s.is_empty()),
            dev_id: None,
            manufacturer: self.man,
            model: self.model,
            firmware: self.fwv,
            gateway: self.gateway,
            origin: self.origin,
            trust: self.trust,
            tag: self.tag,
            seen_since: self.seen_within.map(ago),
            unseen_since: self.unseen_for.map(ago),
        }
    }
}

/// Devices the filter matches, a page at a time with the total; or, with
/// `format=csv`, all of them as CSV.
pub async fn list_devices(
    State(state): State<Arc<AppState>>,
    Query(query): Query<DeviceQuery>,
) -> Result<Response, ApiError> {
    let (format, after, limit) = (query.format.clone(), query.after.clone(), query.limit);
    let filter = query.filter(unix_now());
    match format.as_deref() {
        None | Some("json") => {}
        Some("csv") => return export(&state, &filter),
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("format must be json or csv, not {other:?}"),
            ));
        }
    }
    let limit = page_limit(limit);
    let devices = state.store.devices(&filter, after.as_deref(), limit)?;
    let total = state.store.count_devices(&filter)?;
    let next = next_page(&devices, limit, |d| d.record.dev_id.clone());
    Ok(Json(json!({
        "devices": devices.iter().map(device_json).collect::<Vec<_>>(),
        "next": next,
        "total": total,
    }))
    .into_response())
}

const CSV_COLUMNS: [&str; 11] = [
    "dev_id",
    "man",
    "mod",
    "fwv",
    "auth",
    "encoding",
    "sessions",
    "created_at",
    "last_session_at",
    "notify_url",
    "tags",
];

fn export(state: &AppState, filter: &DeviceFilter) -> Result<Response, ApiError> {
    let mut out = csv::line(&CSV_COLUMNS);
    let mut after: Option<String> = None;
    let mut exported = 0;
    loop {
        let page = state.store.devices(filter, after.as_deref(), 1000)?;
        for device in &page {
            out.push_str(&csv::line(&csv_row(device)));
        }
        exported += page.len();
        match page.last() {
            Some(last) if page.len() == 1000 && exported < MAX_EXPORT => {
                after = Some(last.record.dev_id.clone());
            }
            _ => break,
        }
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"devices.csv\"",
            ),
        ],
        out,
    )
        .into_response())
}

fn csv_row(device: &ListedDevice) -> [String; 11] {
    let record = &device.record;
    let time = |t: Option<i64>| t.map(|t| t.to_string()).unwrap_or_default();
    [
        record.dev_id.clone(),
        record.devinfo_leaf("Man"),
        record.devinfo_leaf("Mod"),
        device
            .devdetail
            .get("./DevDetail/FwV")
            .cloned()
            .unwrap_or_default(),
        record.auth.name().to_owned(),
        record.encoding.clone().unwrap_or_default(),
        record.sessions.to_string(),
        record.created_at.to_string(),
        time(record.last_session_at),
        record.notify_address.clone().unwrap_or_default(),
        device.tags.join(" "),
    ]
}

/// Tags to add and take away, on the devices listed or on those the filter matches.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagChange {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
    pub devices: Option<Vec<String>>,
    pub filter: Option<DeviceQuery>,
}

/// At most this many devices named in one tag change.
const MAX_TAGGED_BY_NAME: usize = 1000;

pub async fn change_tags(
    State(state): State<Arc<AppState>>,
    Json(change): Json<TagChange>,
) -> Result<Json<Value>, ApiError> {
    let bad = |reason: String| ApiError::new(StatusCode::BAD_REQUEST, reason);
    if let Some(tag) = change
        .add
        .iter()
        .chain(&change.remove)
        .find(|t| !valid_tag(t))
    {
        return Err(bad(format!(
            "tags are 1 to 64 letters, digits, '.', '_', '-' or ':': {tag:?} is not one"
        )));
    }
    if change.add.is_empty() && change.remove.is_empty() {
        return Err(bad("nothing to add or remove".into()));
    }
    let matched = match (change.devices, change.filter) {
        (Some(devices), None) if devices.len() <= MAX_TAGGED_BY_NAME => {
            let mut matched = 0;
            for dev_id in devices {
                let one = DeviceFilter {
                    dev_id: Some(dev_id),
                    ..DeviceFilter::default()
                };
                matched += state.store.tag_devices(&one, &change.add, &change.remove)?;
            }
            matched
        }
        (Some(_), None) => {
            return Err(bad(format!(
                "at most {MAX_TAGGED_BY_NAME} devices by name: use a filter for more"
            )));
        }
        (None, Some(filter)) if !filter.is_filter_only() => {
            return Err(bad("a filter takes no after, limit or format".into()));
        }
        (None, Some(filter)) => {
            state
                .store
                .tag_devices(&filter.filter(unix_now()), &change.add, &change.remove)?
        }
        _ => return Err(bad("give either devices or filter".into())),
    };
    Ok(Json(json!({ "matched": matched })))
}

pub async fn list_tags(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let tags = state.store.tags()?;
    Ok(Json(json!({
        "tags": tags.iter().map(|(tag, devices)| json!({ "tag": tag, "devices": devices })).collect::<Vec<_>>(),
    })))
}

/// Enrolls the devices of a CSV document (a header line naming `dev_id` and any of
/// `auth`, `client_name`, `client_secret`, `server_secret`, `tags`): each line is
/// enrolled or refused on its own, and the answer has every enrollment (with its
/// secrets: the only time they are shown) and every refusal with its line.
pub async fn import(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> Result<Json<Value>, ApiError> {
    let bad = |reason: String| ApiError::new(StatusCode::BAD_REQUEST, reason);
    let is_csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/csv"));
    if !is_csv {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the devices as text/csv",
        ));
    }
    let records = csv::records(&body).map_err(|e| bad(e.to_string()))?;
    let Some(((_, header_fields), rows)) = records.split_first() else {
        return Err(bad(
            "an empty document: the first line names the columns".into()
        ));
    };
    let known = [
        "dev_id",
        "auth",
        "client_name",
        "client_secret",
        "server_secret",
        "tags",
    ];
    if let Some(unknown) = header_fields.iter().find(|h| !known.contains(&h.trim())) {
        return Err(bad(format!(
            "unknown column {unknown:?}: the columns are {}",
            known.join(", ")
        )));
    }
    let column = |name: &str| header_fields.iter().position(|h| h.trim() == name);
    let dev_id_column = column("dev_id").ok_or_else(|| bad("no dev_id column".into()))?;
    if rows.len() > MAX_IMPORT {
        return Err(bad(format!(
            "{} devices: at most {MAX_IMPORT} per document",
            rows.len()
        )));
    }
    let mut enrolled = Vec::new();
    let mut refused = Vec::new();
    for (line, fields) in rows {
        let field = |name: &str| {
            column(name)
                .and_then(|i| fields.get(i))
                .map(|f| f.trim().to_owned())
                .filter(|f| !f.is_empty())
        };
        let dev_id = fields
            .get(dev_id_column)
            .map(|f| f.trim().to_owned())
            .unwrap_or_default();
        if fields.len() != header_fields.len() {
            let error = format!(
                "{} fields where the header names {}",
                fields.len(),
                header_fields.len()
            );
            refused.push(json!({ "line": line, "dev_id": dev_id, "error": error }));
            continue;
        }
        let request = EnrollRequest {
            dev_id: dev_id.clone(),
            auth: field("auth"),
            client_name: field("client_name"),
            client_secret: field("client_secret"),
            server_secret: field("server_secret"),
        };
        let tags: Vec<String> = field("tags")
            .map(|t| t.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        if let Some(tag) = tags.iter().find(|t| !valid_tag(t)) {
            refused.push(json!({ "line": line, "dev_id": dev_id, "error": format!("tag {tag:?} is not valid") }));
            continue;
        }
        match enroll_one(&state, request) {
            Ok(enrollment) => {
                if !tags.is_empty() {
                    let one = DeviceFilter {
                        dev_id: Some(dev_id),
                        ..DeviceFilter::default()
                    };
                    state.store.tag_devices(&one, &tags, &[])?;
                }
                enrolled.push(enrollment);
            }
            Err(error) if error.0.is_client_error() => {
                refused.push(json!({ "line": line, "dev_id": dev_id, "error": error.1 }));
            }
            Err(error) => return Err(error),
        }
    }
    Ok(Json(json!({ "enrolled": enrolled, "refused": refused })))
}
