//! Who may call which admin API operation, and the audit log of what they did.
//!
//! Every `/api` route but the OpenAPI description goes through [`guard`]: the bearer
//! token names the caller (the configured `admin_token`, acting as an admin named
//! `config`, or an operator account's token, looked up by its digest), the route names
//! the least role it needs ([`required_role`]), and the request is refused before its
//! body is read when either fails. Every action (any method but GET) and every refusal
//! (401, 403) is written to the audit log: who, what, when, from where, and how it
//! ended.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gwmo_net::unix_now;
use subtle::ConstantTimeEq;
use tracing::{error, warn};

use super::{ApiError, as_api_error};
use crate::operators::{CONFIGURED_ADMIN, Role, token_digest};
use crate::state::AppState;
use crate::store::AuditEntry;

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// The least role an operation needs: reading needs a viewer, changing what devices
/// run needs an operator, and changing who may do what (operators, gateways, a
/// device's existence or its authentication) or reading the audit log needs an admin.
pub fn required_role(method: &Method, route: &str) -> Role {
    let admin_only = route.starts_with("/api/operators")
        || route == "/api/audit"
        || route == "/api/devices/{dev_id}/auth"
        || (route.starts_with("/api/gateways")
            && !route.ends_with("/fanout")
            && !route.ends_with("/firmware")
            && method != Method::GET)
        || (route == "/api/devices/{dev_id}" && method == Method::DELETE)
        || (route.starts_with("/api/artifacts") && method != Method::GET);
    match (admin_only, method == Method::GET) {
        (true, _) => Role::Admin,
        (false, true) => Role::Viewer,
        (false, false) => Role::Operator,
    }
}

/// Authenticates, authorizes and audits one request, and puts every refusal after it
/// in the API's error shape.
pub async fn guard(
    State(state): State<Arc<AppState>>,
    route: MatchedPath,
    headers: HeaderMap,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    let source = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(
            || "unknown".to_owned(),
            |ConnectInfo(peer)| peer.ip().to_string(),
        );
    let caller = authenticate(&state, &headers);
    let needed = required_role(&method, route.as_str());
    let response = match &caller {
        Err(refusal) => refusal.clone().into_response(),
        Ok(caller) if caller.role < needed => ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} is a {}: {method} {} needs the {} role",
                caller.name,
                caller.role.name(),
                route.as_str(),
                needed.name()
            ),
        )
        .into_response(),
        Ok(_) => as_api_error(next.run(request).await).await,
    };
    let status = response.status();
    let refused = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
    if method != Method::GET || refused {
        let caller = caller.ok();
        if refused {
            warn!(
                operator = caller.as_ref().map(|c| c.name.as_str()),
                %source, %method, path = %path, status = status.as_u16(),
                "admin API request refused"
            );
        }
        let entry = AuditEntry {
            at: unix_now(),
            role: caller.as_ref().map(|c| c.role),
            operator: caller.map(|c| c.name),
            source,
            method: method.to_string(),
            path,
            status: status.as_u16(),
        };
        if let Err(failure) = state.store.record_audit(&entry) {
            error!(%failure, ?entry, "the audit log could not be written");
        }
    }
    response
}

/// The caller the request's bearer token names: 401 without one, or with one no one
/// holds; 403 when no one can be (no `admin_token` and no operator accounts is still
/// "no one holds it": the API is closed).
fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let unauthorized = || ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|token| !token.is_empty())
        .ok_or_else(unauthorized)?;
    // An empty admin_token is refused at start; were one set anyway, it names no one.
    if let Some(configured) = state
        .settings
        .admin_token
        .as_deref()
        .filter(|t| !t.is_empty())
        && bool::from(given.as_bytes().ct_eq(configured.as_bytes()))
    {
        return Ok(Caller {
            name: CONFIGURED_ADMIN.to_owned(),
            role: Role::Admin,
        });
    }
    match state.store.operator_by_token(&token_digest(given))? {
        Some(operator) => Ok(Caller {
            name: operator.name,
            role: operator.role,
        }),
        None => Err(unauthorized()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_needs_a_viewer_acting_an_operator_and_who_may_do_what_an_admin() {
        let get = Method::GET;
        let post = Method::POST;
        let delete = Method::DELETE;
        let cases = [
            (&get, "/api/devices", Role::Viewer),
            (&get, "/api/devices/{dev_id}/commands", Role::Viewer),
            (&get, "/api/gateways/{gateway_id}", Role::Viewer),
            (&post, "/api/devices", Role::Operator),
            (&post, "/api/devices/{dev_id}/commands", Role::Operator),
            (&delete, "/api/commands/{id}", Role::Operator),
            (&post, "/api/gateways/{gateway_id}/fanout", Role::Operator),
            (&post, "/api/devices/{dev_id}/validate", Role::Operator),
            (&delete, "/api/devices/{dev_id}", Role::Admin),
            (&post, "/api/devices/{dev_id}/auth", Role::Admin),
            (&post, "/api/gateways", Role::Admin),
            (&delete, "/api/gateways/{gateway_id}", Role::Admin),
            (&get, "/api/operators", Role::Admin),
            (&post, "/api/operators", Role::Admin),
            (&get, "/api/audit", Role::Admin),
        ];
        for (method, route, role) in cases {
            assert_eq!(required_role(method, route), role, "{method} {route}");
        }
    }
}
