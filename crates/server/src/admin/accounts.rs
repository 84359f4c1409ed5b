//! Operator accounts (`/api/operators`, and `gwmo operator` through
//! [`OperatorAccounts`]) and the audit log (`/api/audit`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, next_page, not_found, page_limit};
use crate::operators::{CONFIGURED_ADMIN, Role, new_token, token_digest, valid_name};
use crate::state::AppState;
use crate::store::counts::Counts;
use crate::store::{AuditFilter, AuditRecord, OperatorRecord, Store, StoreError};
use gwmo_net::unix_now;

/// Why an operator account could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(
        "operator names are 1 to 64 letters, digits, '.', '_', '-' or '@', and not {CONFIGURED_ADMIN:?}: {0:?} is not one"
    )]
    BadName(String),
    #[error("there is already an operator named {0:?}")]
    Taken(String),
    #[error("store: {0}")]
    Store(StoreError),
}

/// Makes an operator account and returns its token (shown this once: only its digest
/// is kept).
pub fn add_operator(
    store: &dyn Store,
    name: &str,
    role: Role,
    now: i64,
) -> Result<String, AccountError> {
    if !valid_name(name) {
        return Err(AccountError::BadName(name.to_owned()));
    }
    let token = new_token();
    let record = OperatorRecord {
        name: name.to_owned(),
        role,
        token_sha256: token_digest(&token),
        created_at: now,
    };
    match store.add_operator(&record) {
        Ok(()) => Ok(token),
        Err(StoreError::AlreadyExists(name)) => Err(AccountError::Taken(name)),
        Err(error) => Err(AccountError::Store(error)),
    }
}

/// The operator accounts of a server's store, for `gwmo operator` (with an SQLite
/// store, while the server is stopped: one process owns the file).
pub struct OperatorAccounts {
    store: Arc<dyn Store>,
}

impl OperatorAccounts {
    pub fn open(database: &str) -> Result<OperatorAccounts, StoreError> {
        Ok(OperatorAccounts {
            store: crate::store::open(database, 2)?,
        })
    }

    /// Adds one; returns its token.
    pub fn add(&self, name: &str, role: Role) -> Result<String, AccountError> {
        add_operator(self.store.as_ref(), name, role, unix_now())
    }

    /// Every account: name, role, created (Unix seconds).
    pub fn list(&self) -> Result<Vec<(String, Role, i64)>, StoreError> {
        Ok(self
            .store
            .operators()?
            .into_iter()
            .map(|o| (o.name, o.role, o.created_at))
            .collect())
    }

    pub fn remove(&self, name: &str) -> Result<bool, StoreError> {
        self.store.remove_operator(name)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOperator {
    pub name: String,
    pub role: Role,
}

pub async fn create_operator(
    State(state): State<Arc<AppState>>,
    Json(request): Json<NewOperator>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let now = unix_now();
    match add_operator(state.store.as_ref(), &request.name, request.role, now) {
        Ok(token) => Ok((
            StatusCode::CREATED,
            Json(json!({
                "name": request.name,
                "role": request.role,
                "created_at": now,
                "token": token,
            })),
        )),
        Err(error @ AccountError::BadName(_)) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, error.to_string()))
        }
        Err(error @ AccountError::Taken(_)) => {
            Err(ApiError::new(StatusCode::CONFLICT, error.to_string()))
        }
        Err(AccountError::Store(error)) => Err(error.into()),
    }
}

pub async fn list_operators(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let operators = state.store.operators()?;
    Ok(Json(json!({
        "operators": operators.iter().map(|o| json!({
            "name": o.name,
            "role": o.role,
            "created_at": o.created_at,
        })).collect::<Vec<_>>(),
    })))
}

pub async fn remove_operator(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    match state.store.remove_operator(&name)? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(not_found("operator")),
    }
}

/// `?before=ID&limit=N&operator=NAME&refused=true`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub before: Option<i64>,
    pub limit: Option<u32>,
    pub operator: Option<String>,
    #[serde(default)]
    pub refused: bool,
}

/// The audit log, newest first.
pub async fn audit_log(
    State(state): State<Arc<AppState>>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(query.limit);
    let filter = AuditFilter {
        operator: query.operator,
        refused: query.refused,
    };
    let entries = state.store.audit_log(query.before, limit, &filter)?;
    let next = next_page(&entries, limit, |e| e.id);
    let total = Counts(state.store.sql()).audit(&filter)?;
    Ok(Json(json!({
        "entries": entries.iter().map(audit_json).collect::<Vec<_>>(),
        "next": next,
        "total": total,
    })))
}

fn audit_json(record: &AuditRecord) -> Value {
    let entry = &record.entry;
    json!({
        "id": record.id,
        "at": entry.at,
        "operator": entry.operator,
        "role": entry.role,
        "source": entry.source,
        "method": entry.method,
        "path": entry.path,
        "status": entry.status,
    })
}
