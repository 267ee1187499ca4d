//! Handlers of the `complianceManagementPartners` resource.
//!
//! List: <https://learn.microsoft.com/graph/api/intune-onboarding-compliancemanagementpartner-list?view=graph-rest-beta>.
//! Create: <https://learn.microsoft.com/graph/api/intune-onboarding-compliancemanagementpartner-create?view=graph-rest-beta>.
//! Get: <https://learn.microsoft.com/graph/api/intune-onboarding-compliancemanagementpartner-get?view=graph-rest-beta>.
//! Update: <https://learn.microsoft.com/graph/api/intune-onboarding-compliancemanagementpartner-update?view=graph-rest-beta>.
//! Delete: <https://learn.microsoft.com/graph/api/intune-onboarding-compliancemanagementpartner-delete?view=graph-rest-beta>.
//!
//! Deviations: a create Graph has not confirmed within the inline deadline answers
//! `202 Accepted` (with the body and a `Location`) instead of `201`; the SDKs accept both.
//! Lists page by keyset (`$skiptoken`) rather than by offset; the next link is absolute and
//! built from the configured public root. With `$select`, the `@odata.context` carries the
//! select list, as OData's projected context URLs do (`…/complianceManagementPartners(displayName)`).

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cmp_application::{Caller, CreatePartnerOutput, RequestContext};
use cmp_domain::{Partner, PartnerId};
use cmp_graph_model::partner::PartnerJson;
use cmp_graph_model::schema;
use cmp_graph_model::{
    ProjectedPartner, parse_partner_fields, render_partner, render_partner_projected,
};
use serde::Serialize;
use serde_json::Value;
use tower_http::timeout::TimeoutError;
use tracing::Instrument as _;
use utoipa::ToSchema;
use utoipa::openapi::schema::Array;

use crate::envelope::{GRAPH_JSON, RequestIds};
use crate::error::ApiError;
use crate::odata::{self, Selection};
use crate::{AppState, COLLECTION_PATH};

/// OData's version header, sent as Graph does.
const ODATA_VERSION: HeaderName = HeaderName::from_static("odata-version");

/// `Preference-Applied` (RFC 7240): which `Prefer` preference the answer honoured.
const PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");

/// `GET /deviceManagement/complianceManagementPartners`.
pub async fn list_partners(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let request = odata::parse_list(uri.query())?;
    let page = state.partners.list_partners(&request.query).await?;

    let collection_url = format!("{}{COLLECTION_PATH}", state.public_root);
    let body = CollectionResponse {
        context: format!(
            "{}/$metadata#deviceManagement/complianceManagementPartners{}",
            state.public_root,
            request.select.context_suffix()
        ),
        count: if request.query.count {
            page.total
        } else {
            None
        },
        next_link: page
            .next
            .as_ref()
            .map(|cursor| request.next_link(&collection_url, cursor)),
        value: page
            .items
            .iter()
            .map(|partner| Item::render(partner, None, &request.select))
            .collect::<Result<_, _>>()?,
    };
    json_response(StatusCode::OK, &body)
}

/// `GET /deviceManagement/complianceManagementPartners/$count`: the number of partners the
/// `$filter` matches, as `text/plain`.
pub async fn count_partners(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let filter = odata::parse_count(uri.query())?;
    let count = state.partners.count_partners(filter).await?;
    Ok((
        StatusCode::OK,
        [
            (CONTENT_TYPE, HeaderValue::from_static("text/plain")),
            (ODATA_VERSION, HeaderValue::from_static("4.0")),
        ],
        count.to_string(),
    )
        .into_response())
}

/// `POST /deviceManagement/complianceManagementPartners`.
pub async fn create_partner(
    State(state): State<AppState>,
    Extension(ids): Extension<RequestIds>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    odata::refuse_all(uri.query())?;
    let json = json_body(&state, &headers, body)?;
    let command = parse_partner_fields(&json)?.into_new_partner()?;

    let context = request_context(&ids, &caller);
    let partners = Arc::clone(&state.partners);
    // Hyper drops this handler when the client goes away, and the timeout layer when the
    // request outlives its limit. Once the create has committed, its inline delivery and the
    // recording of the attempt's end must still run, or the outbox row stays leased to this
    // request until the lease lapses and is then reconciled minutes later
    // (docs/delivery.md). A spawned task is not dropped with the handler: it runs to the end,
    // and only the answer is lost. It runs in the request's span, so its logs keep the ids.
    let create = state.detached_creates.spawn(
        async move { partners.create_partner(command, &context).await }
            .instrument(tracing::Span::current()),
    );
    let (status, partner) = match create.await.map_err(ApiError::internal)?? {
        CreatePartnerOutput::Created(partner) => (StatusCode::CREATED, partner),
        CreatePartnerOutput::Accepted(partner) => (StatusCode::ACCEPTED, partner),
    };
    let mut response = entity_response(&state, status, &partner, &Selection::all())?;
    let location = format!("{}{COLLECTION_PATH}/{}", state.public_root, partner.id());
    let location = HeaderValue::from_str(&location).map_err(ApiError::internal)?;
    response.headers_mut().insert(LOCATION, location);
    Ok(response)
}

/// `GET /deviceManagement/complianceManagementPartners/{id}`; `$select` is honoured.
pub async fn get_partner(
    State(state): State<AppState>,
    uri: Uri,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let select = odata::parse_get(uri.query())?;
    let (_, id) = partner_id(id)?;
    let partner = state.partners.get_partner(id).await?;
    entity_response(&state, StatusCode::OK, &partner, &select)
}

/// `PATCH /deviceManagement/complianceManagementPartners/{id}`: Graph's merge
/// (`docs/wire-contract.md`, "Operations"): properties present replace the stored ones, a
/// collection wholesale; an `id` in the body must be the key; annotations are ignored. Answers
/// 200 with the whole entity, or 204 when the client prefers `return=minimal`.
pub async fn update_partner(
    State(state): State<AppState>,
    Extension(ids): Extension<RequestIds>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    odata::refuse_all(uri.query())?;
    let (raw_id, id) = partner_id(id)?;
    let json = json_body(&state, &headers, body)?;
    let fields = parse_partner_fields(&json)?;
    if let Some(body_id) = &fields.id {
        // Compared as ids, so a GUID in another letter case still names the same partner.
        if body_id.parse::<PartnerId>().ok() != Some(id) {
            return Err(ApiError::bad_request(format!(
                "the id in the body ('{body_id}') is not the id in the URL ('{raw_id}')"
            ))
            .with_target("id"));
        }
    }

    let context = request_context(&ids, &caller);
    // Not spawned like the create: the store commits the update, its audit entry and its
    // outbox row in one write that runs to the end in the store's writer once submitted, and
    // nothing follows it here but the answer. A client gone earlier simply changed nothing.
    let partner = state
        .partners
        .update_partner(id, fields.into_patch(), &context)
        .await?;
    if prefers_minimal(&headers) {
        return Ok((
            StatusCode::NO_CONTENT,
            [
                (
                    PREFERENCE_APPLIED,
                    HeaderValue::from_static("return=minimal"),
                ),
                (ODATA_VERSION, HeaderValue::from_static("4.0")),
            ],
        )
            .into_response());
    }
    entity_response(&state, StatusCode::OK, &partner, &Selection::all())
}

/// `DELETE /deviceManagement/complianceManagementPartners/{id}`: 204 at once; Graph is told
/// in the background.
pub async fn delete_partner(
    State(state): State<AppState>,
    Extension(ids): Extension<RequestIds>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    odata::refuse_all(uri.query())?;
    let (_, id) = partner_id(id)?;
    let context = request_context(&ids, &caller);
    // Not spawned, for the reason given at the update: one write, whole or not at all.
    state.partners.delete_partner(id, &context).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Any method but GET and POST on the collection.
pub async fn collection_method_not_allowed() -> ApiError {
    ApiError::method_not_allowed("GET, POST")
}

/// Any method but GET on a GET-only path (`$count`, the service's documents).
pub async fn only_get_allowed() -> ApiError {
    ApiError::method_not_allowed("GET")
}

/// Any method but GET, PATCH and DELETE on an item.
pub async fn item_method_not_allowed() -> ApiError {
    ApiError::method_not_allowed("GET, PATCH, DELETE")
}

/// Anything outside the resource.
pub async fn unknown_route(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no resource is served at '{}'", uri.path()))
}

/// A collection answer: context, then the count and the next link (Graph puts annotations
/// before `value`), then the items.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = complianceManagementPartnerCollectionResponse)]
pub struct CollectionResponse {
    /// The context URL of the collection (with the `$select` list when there is one).
    #[serde(rename = "@odata.context")]
    context: String,
    /// How many partners match the `$filter` over all pages; only with `$count=true`.
    #[serde(rename = "@odata.count", skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 0)]
    count: Option<u64>,
    /// The absolute URL of the next page, while more items remain; follow it as given.
    #[serde(rename = "@odata.nextLink", skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = "uri")]
    next_link: Option<String>,
    /// The page's partners, each reduced to the `$select` if one was given.
    #[schema(schema_with = projected_items)]
    value: Vec<Item>,
}

/// The schema of a page's items.
fn projected_items() -> Array {
    Array::new(schema::reference(schema::PARTNER_PROJECTION))
}

/// A partner as answered: whole, or reduced to a `$select`.
#[derive(Serialize)]
#[serde(untagged)]
enum Item {
    /// Boxed: a page holds up to 999 items, most of them usually whole.
    Whole(Box<PartnerJson>),
    Projected(ProjectedPartner),
}

impl Item {
    fn render(
        partner: &Partner,
        context: Option<String>,
        select: &Selection,
    ) -> Result<Self, ApiError> {
        if select.is_all() {
            return Ok(Self::Whole(Box::new(render_partner(partner, context))));
        }
        render_partner_projected(partner, context, |property| select.keeps(property))
            .map(Self::Projected)
            .map_err(ApiError::internal)
    }
}

fn entity_response(
    state: &AppState,
    status: StatusCode,
    partner: &Partner,
    select: &Selection,
) -> Result<Response, ApiError> {
    let context = format!(
        "{}/$metadata#deviceManagement/complianceManagementPartners{}/$entity",
        state.public_root,
        select.context_suffix()
    );
    json_response(status, &Item::render(partner, Some(context), select)?)
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(body).map_err(ApiError::internal)?;
    Ok((
        status,
        [
            (CONTENT_TYPE, HeaderValue::from_static(GRAPH_JSON)),
            (ODATA_VERSION, HeaderValue::from_static("4.0")),
        ],
        body,
    )
        .into_response())
}

fn request_context(ids: &RequestIds, caller: &Caller) -> RequestContext {
    RequestContext {
        request_id: ids.request_id.clone(),
        caller: caller.to_string(),
    }
}

/// The id path segment as received (for messages) and as an id. The router has already
/// percent-decoded the segment once; it is not decoded again.
fn partner_id(id: Result<Path<String>, PathRejection>) -> Result<(String, PartnerId), ApiError> {
    let Path(raw_id) =
        id.map_err(|_| ApiError::bad_request("the id segment is not valid UTF-8"))?;
    // Every id we hand out is a GUID, so any other text cannot name a partner.
    match raw_id.parse() {
        Ok(id) => Ok((raw_id, id)),
        Err(_) => Err(ApiError::no_such_partner(raw_id)),
    }
}

/// A request body that must be JSON: 415 without a JSON content type, 413 over the size
/// limit, 408 when it arrives too slowly, 400 when its framing is broken (a malformed chunk, a
/// body shorter than its `Content-Length`) or it does not parse.
fn json_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, ApiError> {
    if !is_json(headers) {
        return Err(ApiError::unsupported_media_type());
    }
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large(state.body_limit_bytes)
        } else if timed_out(&rejection) {
            ApiError::body_not_received()
        } else {
            // The client sent a body HTTP cannot frame: its fault, and resending it unchanged
            // cannot help, so not a timeout.
            ApiError::bad_request(
                "the request body is incomplete or its chunked framing is malformed",
            )
        }
    })?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

/// Whether reading the body failed because it arrived slower than the body timeout allows.
fn timed_out(rejection: &BytesRejection) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = cause {
        if error.is::<TimeoutError>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Whether the request declares a JSON body: media type `application/json`, any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether any `Prefer` header asks for `return=minimal` (RFC 7240: comma-separated
/// preferences, names and this value case-insensitive, optional parameters after `;`).
fn prefers_minimal(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|preference| preference.split(';').next())
        .filter_map(|preference| preference.split_once('='))
        .any(|(name, value)| {
            name.trim().eq_ignore_ascii_case("return")
                && value
                    .trim()
                    .trim_matches('"')
                    .eq_ignore_ascii_case("minimal")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_minimal_is_found_among_other_preferences_in_any_case() {
        let cases: [(&str, &[&str], bool); 7] = [
            ("alone", &["return=minimal"], true),
            ("upper case", &["Return=Minimal"], true),
            ("in a list", &["odata.maxpagesize=10, return=minimal"], true),
            ("quoted, with parameter", &["return=\"minimal\"; x=y"], true),
            ("second header", &["respond-async", "return=minimal"], true),
            ("representation", &["return=representation"], false),
            ("none", &[], false),
        ];
        for (case, values, expected) in cases {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append("prefer", HeaderValue::from_static(value));
            }
            assert_eq!(prefers_minimal(&headers), expected, "case: {case}");
        }
    }
}
