//! Any listing as CSV (`?format=csv`): the listing is read page after page through its
//! own handler and its rows written as CSV, one column per field (nested values as
//! JSON). The device listing has a CSV of its own, with the columns an inventory
//! needs.

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{ApiError, csv};

/// The listings, each with the field its rows are in and the query parameter its
/// `next` goes back in (none: one page holds it all).
const LISTINGS: &[(&str, &str, Option<&str>)] = &[
    ("/api/gateways", "gateways", Some("after")),
    ("/api/associations", "associations", Some("after")),
    ("/api/devices/{dev_id}/commands", "commands", Some("before")),
    ("/api/fanouts", "fanouts", Some("before")),
    ("/api/events", "events", Some("after")),
    ("/api/audit", "entries", Some("before")),
    ("/api/campaigns", "campaigns", Some("before")),
    ("/api/campaigns/{id}/devices", "devices", Some("after")),
    ("/api/operators", "operators", None),
    ("/api/tags", "tags", None),
];

/// At most this many rows go into one export.
const MAX_ROWS: usize = 1_000_000;

/// Answers `?format=csv` on a listing with all of it as CSV; anything else passes.
pub async fn csv_listings(route: MatchedPath, request: Request, next: Next) -> Response {
    let query = request.uri().query().unwrap_or("");
    let wants_csv = query.split('&').any(|pair| pair == "format=csv");
    let listing = LISTINGS.iter().find(|(path, _, _)| *path == route.as_str());
    let (Some((_, rows_field, page_param)), true, &Method::GET) =
        (listing, wants_csv, request.method())
    else {
        return next.run(request).await;
    };
    match export(request, next, rows_field, *page_param).await {
        Ok(csv) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"export.csv\"",
                ),
            ],
            csv,
        )
            .into_response(),
        Err(refusal) => refusal,
    }
}

/// Reads the listing page by page through `next` and writes its rows as CSV.
async fn export(
    request: Request,
    next: Next,
    rows_field: &str,
    page_param: Option<&str>,
) -> Result<String, Response> {
    let (parts, _) = request.into_parts();
    let kept: Vec<&str> = parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or("");
            !pair.is_empty() && !["format", "limit"].contains(&name) && Some(name) != page_param
        })
        .collect();
    let mut rows: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = kept.clone();
        let page = match (page_param, &cursor) {
            (Some(param), Some(at)) => Some(format!("{param}={at}")),
            _ => None,
        };
        query.extend(page.as_deref());
        if page_param.is_some() {
            query.push("limit=1000");
        }
        let uri: Uri = format!("{}?{}", parts.uri.path(), query.join("&"))
            .parse()
            .map_err(|_| {
                ApiError::new(StatusCode::BAD_REQUEST, "a query that does not read back")
                    .into_response()
            })?;
        let mut page_request = Request::new(axum::body::Body::empty());
        *page_request.uri_mut() = uri;
        *page_request.headers_mut() = parts.headers.clone();
        *page_request.extensions_mut() = parts.extensions.clone();
        let response = next.clone().run(page_request).await;
        if !response.status().is_success() {
            return Err(response);
        }
        let body = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .map_err(|_| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "a page too large").into_response()
            })?;
        let page: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        rows.extend(page[rows_field].as_array().into_iter().flatten().cloned());
        cursor = match &page["next"] {
            Value::String(key) => Some(percent_encoded(key)),
            Value::Number(id) => Some(id.to_string()),
            _ => None,
        };
        if cursor.is_none() || page_param.is_none() || rows.len() >= MAX_ROWS {
            break;
        }
    }
    Ok(as_csv(&rows))
}

/// A key as a query value.
fn percent_encoded(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Rows of JSON objects as CSV: the first row's fields are the columns.
fn as_csv(rows: &[Value]) -> String {
    let columns: Vec<String> = rows
        .first()
        .and_then(Value::as_object)
        .map(|row| row.keys().cloned().collect())
        .unwrap_or_default();
    let mut out = csv::line(&columns);
    for row in rows {
        let fields: Vec<String> = columns
            .iter()
            .map(|column| match &row[column] {
                Value::Null => String::new(),
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .collect();
        out.push_str(&csv::line(&fields));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_columns_with_nested_values_as_json() {
        let rows = serde_json::json!([
            { "id": 2, "name": "a,b", "detail": { "k": 1 }, "gone": null },
            { "id": 1, "name": "c", "detail": [], "gone": true },
        ]);
        assert_eq!(
            as_csv(rows.as_array().unwrap()),
            "detail,gone,id,name\r\n\"{\"\"k\"\":1}\",,2,\"a,b\"\r\n[],true,1,c\r\n"
        );
        assert_eq!(as_csv(&[]), "\r\n");
    }

    #[test]
    fn keys_go_back_in_the_query_encoded() {
        assert_eq!(percent_encoded("IMEI:1 2&x"), "IMEI%3A1%202%26x");
    }
}
