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
    AuditAction, DeliveryOutcome, DeliveryRecord, Operation, OperationsError, OutboxCounts,
    OutboxRecord, OutboxState, PartnerHistory,
};
use cmp_domain::PartnerId;
use cmp_graph_model::datetime;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, Type};
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;

/// Rows listed when the caller names no `limit`.
pub(crate) const DEFAULT_LIMIT: u32 = 100;

/// Most rows one listing returns.
pub(crate) const MAX_LIMIT: u32 = 1000;

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
    let (_, sync) = read_about_partner(
        &id,
        format!("partner '{id}' has no delivery record"),
        |partner_id| state.operations.sync_state(partner_id),
    )
    .await?;
    Ok(json_response(&sync_state_body(&sync)))
}

/// `GET /admin/partners/{id}/history`: the audit entries (what changed, when, the request id,
/// the caller) and every outbox row with its deliveries (their Graph request ids).
async fn partner_history(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (partner_id, history) = read_about_partner(
        &id,
        format!("nothing is recorded about partner '{id}'"),
        |partner_id| state.operations.history(partner_id),
    )
    .await?;
    Ok(json_response(&history_body(partner_id, &history)))
}

/// Reads with `read` what is recorded about the partner whose id is `id` in the path: a 404
/// saying `not_found` when `id` is no partner id or nothing is recorded about it.
async fn read_about_partner<T, Read>(
    id: &str,
    not_found: String,
    read: impl FnOnce(PartnerId) -> Read,
) -> Result<(PartnerId, T), ApiError>
where
    Read: Future<Output = Result<T, OperationsError>>,
{
    let Ok(partner_id) = id.parse::<PartnerId>() else {
        return Err(ApiError::not_found(not_found));
    };
    match read(partner_id).await {
        Ok(record) => Ok((partner_id, record)),
        Err(OperationsError::NotFound) => Err(ApiError::not_found(not_found)),
        Err(other) => Err(operations_error(other)),
    }
}

/// A partner's history as operators read it.
pub fn render_history(partner_id: PartnerId, history: &PartnerHistory) -> Value {
    to_json(&history_body(partner_id, history))
}

fn history_body(partner_id: PartnerId, history: &PartnerHistory) -> HistoryBody {
    HistoryBody {
        partner_id: partner_id.to_string(),
        audit_entries: history
            .audit
            .iter()
            .map(|entry| AuditEntryBody {
                action: entry.action.as_str(),
                at: datetime::format(entry.at),
                request_id: entry.request_id.clone(),
                caller: entry.caller.clone(),
                detail: entry.detail.clone(),
            })
            .collect(),
        outbox_rows: history.rows.iter().map(sync_state_body).collect(),
    }
}

/// `GET /admin/outbox?state=dead&limit=100`.
async fn list_rows(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let (wanted, limit) = parse_listing(uri.query().unwrap_or(""))?;
    let rows = state
        .operations
        .list_rows(wanted, limit)
        .await
        .map_err(operations_error)?;
    Ok(json_response(&OutboxRowsBody {
        value: rows.iter().map(sync_state_body).collect(),
    }))
}

/// `GET /admin/outbox/counts`.
async fn count_rows(State(state): State<AppState>) -> Result<Response, ApiError> {
    let counts = state
        .operations
        .count_rows()
        .await
        .map_err(operations_error)?;
    Ok(json_response(&counts_body(&counts)))
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
    Ok(json_response(&RequeuedBody {
        outbox_id: id.to_string(),
        state: OutboxState::Unknown.as_str(),
    }))
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
                        "state '{value}' is not one of {}",
                        OutboxState::ALL
                            .iter()
                            .map(OutboxState::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
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
    to_json(&sync_state_body(sync))
}

fn sync_state_body(sync: &OutboxRecord) -> SyncStateBody {
    SyncStateBody {
        outbox_id: sync.outbox_id.to_string(),
        partner_id: sync.partner_id.to_string(),
        operation: sync.operation.as_str(),
        natural_key: sync.natural_key.as_str().to_owned(),
        state: sync.state.as_str(),
        attempts: sync.attempts,
        next_attempt_at: datetime::format(sync.next_attempt_at),
        last_status: sync.last_status,
        last_error_code: sync.last_error_code.clone(),
        last_client_request_id: sync.last_client_request_id.clone(),
        graph_id: sync.graph_id.clone(),
        dead_reason: sync.dead_reason.clone(),
        created_at: datetime::format(sync.created_at),
        updated_at: datetime::format(sync.updated_at),
        first_attempt_at: sync.first_attempt_at.map(datetime::format),
        deliveries: sync.deliveries.iter().map(delivery_body).collect(),
    }
}

fn delivery_body(attempt: &DeliveryRecord) -> DeliveryBody {
    DeliveryBody {
        attempt: attempt.attempt,
        client_request_id: attempt.client_request_id.clone(),
        started_at: datetime::format(attempt.started_at),
        finished_at: attempt.finished_at.map(datetime::format),
        duration_ms: attempt.finished_at.map(|end| {
            let millis = end
                .saturating_duration_since(attempt.started_at)
                .as_millis();
            u64::try_from(millis).unwrap_or(u64::MAX)
        }),
        http_status: attempt.http_status,
        graph_error_code: attempt.graph_error_code.clone(),
        graph_request_id: attempt.graph_request_id.clone(),
        outcome: attempt.outcome.map(|outcome| outcome.as_str()),
    }
}

/// Row counts per state, as operators read them.
pub fn render_counts(counts: &OutboxCounts) -> Value {
    to_json(&counts_body(counts))
}

fn counts_body(counts: &OutboxCounts) -> OutboxCountsBody {
    OutboxCountsBody {
        pending: counts.pending,
        in_flight: counts.in_flight,
        delivered: counts.delivered,
        unknown: counts.unknown,
        dead: counts.dead,
    }
}

/// The schema of an outbox state's name.
fn outbox_state_schema() -> Object {
    Object::builder()
        .schema_type(Type::String)
        .enum_values(Some(OutboxState::ALL.iter().map(OutboxState::as_str)))
        .build()
}

/// The schema of an outbox operation's name.
fn operation_schema() -> Object {
    Object::builder()
        .schema_type(Type::String)
        .enum_values(Some(Operation::ALL.iter().map(Operation::as_str)))
        .build()
}

/// The schema of a delivery outcome's name, or null while the delivery runs.
fn outcome_schema() -> Object {
    Object::builder()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
        .enum_values(Some(
            DeliveryOutcome::ALL
                .iter()
                .map(|outcome| serde_json::Value::from(outcome.as_str()))
                .chain([serde_json::Value::Null]),
        ))
        .build()
}

/// The schema of an audit action's name.
fn audit_action_schema() -> Object {
    Object::builder()
        .schema_type(Type::String)
        .enum_values(Some(AuditAction::ALL.iter().map(AuditAction::as_str)))
        .build()
}

/// An outbox row: where one change of a partner stands on its way to Graph.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = OutboxRow)]
pub struct SyncStateBody {
    /// The outbox row.
    #[schema(format = "uuid")]
    outbox_id: String,
    /// The partner.
    #[schema(format = "uuid")]
    partner_id: String,
    /// What the row does: `create`, `update` or `delete`.
    #[schema(schema_with = operation_schema)]
    operation: &'static str,
    /// The natural key of the partner's display name (trimmed, case-folded).
    natural_key: String,
    /// Where the row stands.
    #[schema(schema_with = outbox_state_schema)]
    state: &'static str,
    /// Deliveries made.
    attempts: u32,
    /// When the next delivery is due.
    #[schema(format = DateTime)]
    next_attempt_at: String,
    /// Graph's HTTP status of the last delivery.
    #[schema(required = true)]
    last_status: Option<u16>,
    /// Graph's `error.code` of the last delivery.
    #[schema(required = true)]
    last_error_code: Option<String>,
    /// The `client-request-id` of the last delivery.
    #[schema(required = true)]
    last_client_request_id: Option<String>,
    /// Graph's id once delivered (null when Graph rightly holds nothing).
    #[schema(required = true)]
    graph_id: Option<String>,
    /// Why the row was given up.
    #[schema(required = true)]
    dead_reason: Option<String>,
    /// When the row was written.
    #[schema(format = DateTime)]
    created_at: String,
    /// When it last changed.
    #[schema(format = DateTime)]
    updated_at: String,
    /// When the first delivery started.
    #[schema(required = true, format = DateTime)]
    first_attempt_at: Option<String>,
    /// Every delivery, oldest first; absent in listings and before the first delivery.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    deliveries: Vec<DeliveryBody>,
}

/// One delivery: one attempt to carry an outbox row to Graph.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Delivery)]
pub struct DeliveryBody {
    /// 1-based delivery number.
    attempt: u32,
    /// The `client-request-id` the delivery sent to Graph.
    client_request_id: String,
    /// When it started.
    #[schema(format = DateTime)]
    started_at: String,
    /// When it ended; null while in flight or when the process died mid-call.
    #[schema(required = true, format = DateTime)]
    finished_at: Option<String>,
    /// How long it took.
    #[schema(required = true)]
    duration_ms: Option<u64>,
    /// Graph's HTTP status.
    #[schema(required = true)]
    http_status: Option<u16>,
    /// Graph's `error.code`.
    #[schema(required = true)]
    graph_error_code: Option<String>,
    /// Graph's `request-id`.
    #[schema(required = true)]
    graph_request_id: Option<String>,
    /// How it ended (`created`, `adopted`, `unknown`, ...); null while it runs.
    #[schema(required = true, schema_with = outcome_schema)]
    outcome: Option<&'static str>,
}

/// A partner's audit entries and outbox rows.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = PartnerHistory)]
pub struct HistoryBody {
    /// The partner.
    #[schema(format = "uuid")]
    partner_id: String,
    /// What happened to it, oldest first.
    audit_entries: Vec<AuditEntryBody>,
    /// Its outbox rows (creates, updates, deletes), oldest first, each with its deliveries.
    outbox_rows: Vec<SyncStateBody>,
}

/// One audit entry.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = AuditEntry)]
pub struct AuditEntryBody {
    /// What happened (`created`, `updated`, `deleted`, ...).
    #[schema(schema_with = audit_action_schema)]
    action: &'static str,
    /// When.
    #[schema(format = DateTime)]
    at: String,
    /// Our `request-id` of the request that caused it.
    request_id: String,
    /// Who: `app:<tenant>/<object>` or `user:<tenant>/<object>`.
    caller: String,
    /// What changed, or what Graph said.
    detail: String,
}

/// Outbox rows in a state.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OutboxRows)]
pub struct OutboxRowsBody {
    /// The rows, oldest first.
    value: Vec<SyncStateBody>,
}

/// How many outbox rows are in each state.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OutboxCounts)]
pub struct OutboxCountsBody {
    /// `pending`.
    pending: u64,
    /// `in_flight`.
    in_flight: u64,
    /// `delivered`.
    delivered: u64,
    /// `unknown`.
    unknown: u64,
    /// `dead`.
    dead: u64,
}

/// A dead row put back in the queue.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = RequeuedRow)]
pub struct RequeuedBody {
    /// The row.
    #[schema(format = "uuid")]
    outbox_id: String,
    /// Its state now: `unknown`, so that Graph is asked before anything is sent again.
    #[schema(schema_with = outbox_state_schema)]
    state: &'static str,
}

/// `body` as a JSON value.
fn to_json(body: &impl Serialize) -> Value {
    // The bodies hold only strings, integers, options and lists of them, which always serialise.
    serde_json::to_value(body).expect("an operator body serialises")
}

fn json_response(body: &impl Serialize) -> Response {
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "application/json")],
        to_json(body).to_string(),
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
