//! The operator endpoints, outside the Graph-shaped resource, under `/admin/` (they need the
//! `CompliancePartners.Operate` app role): a partner's sync state and deliveries, its history,
//! outbox rows by state, counts, and re-queuing dead rows.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cmp_application::{
    DeliveryRecord, OperationsError, OutboxCounts, OutboxRecord, OutboxState, PartnerHistory,
};
use cmp_domain::PartnerId;
use cmp_graph_model::datetime;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;

/// Rows listed when the caller names no `limit`.
const DEFAULT_LIMIT: u32 = 100;

/// Most rows one listing returns.
const MAX_LIMIT: u32 = 1000;

/// The operator routes, relative to the server root.
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/admin/partners/{id}/sync", get(partner_sync_state))
        .route("/admin/partners/{id}/history", get(partner_history))
        .route("/admin/outbox", get(list_rows))
        .route("/admin/outbox/counts", get(count_rows))
        .route("/admin/outbox/{outbox_id}/requeue", post(requeue))
        .with_state(state)
}

/// `GET /admin/partners/{id}/sync`.
async fn partner_sync_state(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found(format!("partner '{id}' has no delivery record"));
    let partner_id: PartnerId = id.parse().map_err(|_| not_found())?;
    let sync = state
        .operations
        .sync_state(partner_id)
        .await
        .map_err(|e| match e {
            OperationsError::NotFound => not_found(),
            other => operations_error(other),
        })?;
    Ok(json_response(render_sync_state(&sync)))
}

/// `GET /admin/partners/{id}/history`: the audit entries (what changed, when, the request id,
/// the caller) and every outbox row with its deliveries (their Graph request ids).
async fn partner_history(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found(format!("nothing is recorded about partner '{id}'"));
    let partner_id: PartnerId = id.parse().map_err(|_| not_found())?;
    let history = state
        .operations
        .history(partner_id)
        .await
        .map_err(|e| match e {
            OperationsError::NotFound => not_found(),
            other => operations_error(other),
        })?;
    Ok(json_response(render_history(partner_id, &history)))
}

/// A partner's history as operators read it.
pub fn render_history(partner_id: PartnerId, history: &PartnerHistory) -> Value {
    json!({
        "partnerId": partner_id.to_string(),
        "auditEntries": history.audit.iter().map(|entry| json!({
            "action": entry.action.as_str(),
            "at": datetime::format(entry.at),
            "requestId": entry.request_id,
            "caller": entry.caller,
            "detail": entry.detail,
        })).collect::<Vec<_>>(),
        "outboxRows": history.rows.iter().map(render_sync_state).collect::<Vec<_>>(),
    })
}

/// `GET /admin/outbox?state=dead&limit=100`.
async fn list_rows(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let (wanted, limit) = parse_listing(uri.query().unwrap_or(""))?;
    let rows = state
        .operations
        .list_rows(wanted, limit)
        .await
        .map_err(operations_error)?;
    Ok(json_response(
        json!({ "value": rows.iter().map(render_sync_state).collect::<Vec<_>>() }),
    ))
}

/// `GET /admin/outbox/counts`.
async fn count_rows(State(state): State<AppState>) -> Result<Response, ApiError> {
    let counts = state
        .operations
        .count_rows()
        .await
        .map_err(operations_error)?;
    Ok(json_response(render_counts(&counts)))
}

/// `POST /admin/outbox/{outbox_id}/requeue`.
async fn requeue(
    State(state): State<AppState>,
    Path(outbox_id): Path<String>,
) -> Result<Response, ApiError> {
    let not_dead = || ApiError::conflict(format!("outbox row '{outbox_id}' is not dead"));
    let id = Uuid::try_parse(&outbox_id).map_err(|_| not_dead())?;
    state.operations.requeue(id).await.map_err(|e| match e {
        OperationsError::NotDead | OperationsError::NotFound => not_dead(),
        other => operations_error(other),
    })?;
    Ok(json_response(
        json!({ "outboxId": id.to_string(), "state": OutboxState::Unknown.as_str() }),
    ))
}

fn operations_error(error: OperationsError) -> ApiError {
    match error {
        OperationsError::NotFound => ApiError::not_found("not found"),
        OperationsError::NotDead => ApiError::conflict("the outbox row is not dead"),
        OperationsError::Unexpected(cause) => ApiError::internal(crate::error::AnyhowCause(cause)),
    }
}

/// Reads `state` and `limit` from a listing's query string.
fn parse_listing(query: &str) -> Result<(Option<OutboxState>, u32), ApiError> {
    let mut wanted = None;
    let mut limit = DEFAULT_LIMIT;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "state" => {
                wanted = Some(parse_state(value).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "state '{value}' is not one of pending, in_flight, delivered, unknown, dead"
                    ))
                })?);
            }
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("limit must be 1 to {MAX_LIMIT}"))
                    })?;
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "query option '{other}' is not supported here"
                )));
            }
        }
    }
    Ok((wanted, limit))
}

/// An outbox state from its stored name.
pub fn parse_state(text: &str) -> Option<OutboxState> {
    text.parse().ok()
}

/// An outbox row as operators read it (also printed by the binary's `outbox` subcommands).
pub fn render_sync_state(sync: &OutboxRecord) -> Value {
    let mut value = json!({
        "outboxId": sync.outbox_id.to_string(),
        "partnerId": sync.partner_id.to_string(),
        "operation": sync.operation.as_str(),
        "naturalKey": sync.natural_key.as_str(),
        "state": sync.state.as_str(),
        "attempts": sync.attempts,
        "nextAttemptAt": datetime::format(sync.next_attempt_at),
        "lastStatus": sync.last_status,
        "lastErrorCode": sync.last_error_code,
        "lastClientRequestId": sync.last_client_request_id,
        "graphId": sync.graph_id,
        "deadReason": sync.dead_reason,
        "createdAt": datetime::format(sync.created_at),
        "updatedAt": datetime::format(sync.updated_at),
        "firstAttemptAt": sync.first_attempt_at.map(datetime::format),
    });
    if !sync.deliveries.is_empty() {
        value["deliveries"] = sync.deliveries.iter().map(render_delivery).collect();
    }
    value
}

fn render_delivery(attempt: &DeliveryRecord) -> Value {
    json!({
        "attempt": attempt.attempt,
        "clientRequestId": attempt.client_request_id,
        "startedAt": datetime::format(attempt.started_at),
        "finishedAt": attempt.finished_at.map(datetime::format),
        "durationMs": attempt.finished_at.map(|end| end.saturating_duration_since(attempt.started_at).as_millis()),
        "httpStatus": attempt.http_status,
        "graphErrorCode": attempt.graph_error_code,
        "graphRequestId": attempt.graph_request_id,
        "outcome": attempt.outcome.map(|outcome| outcome.as_str()),
    })
}

/// Row counts per state, as operators read them.
pub fn render_counts(counts: &OutboxCounts) -> Value {
    json!({
        "pending": counts.pending,
        "in_flight": counts.in_flight,
        "delivered": counts.delivered,
        "unknown": counts.unknown,
        "dead": counts.dead,
    })
}

fn json_response(value: Value) -> Response {
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_read_state_and_limit_and_refuse_anything_else() {
        assert_eq!(parse_listing("").ok(), Some((None, 100)));
        assert_eq!(
            parse_listing("state=dead&limit=5").ok(),
            Some((Some(OutboxState::Dead), 5))
        );
        assert!(parse_listing("state=zombie").is_err());
        assert!(parse_listing("limit=0").is_err());
        assert!(parse_listing("limit=1001").is_err());
        assert!(parse_listing("order=asc").is_err());
    }
}
