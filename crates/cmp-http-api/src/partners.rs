//! Handlers of the `complianceManagementPartners` resource.
//!
//! Create: <https://learn.microsoft.com/graph/api/intune-onboarding-compliancemanagementpartner-create?view=graph-rest-beta>.
//! Get: <https://learn.microsoft.com/graph/api/intune-onboarding-compliancemanagementpartner-get?view=graph-rest-beta>.
//! Deviations: a create Graph has not confirmed within the inline deadline answers
//! `202 Accepted` (with the body and a `Location`) instead of `201`; the SDKs accept both.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cmp_application::{Caller, CreatePartnerOutput, RequestContext};
use cmp_domain::{Partner, PartnerId};
use cmp_graph_model::{parse_partner_fields, render_partner};
use serde_json::Value;

use crate::envelope::{GRAPH_JSON, RequestIds};
use crate::error::ApiError;
use crate::{AppState, COLLECTION_PATH};

/// OData's version header, sent as Graph does.
const ODATA_VERSION: HeaderName = HeaderName::from_static("odata-version");

/// OData system query options: none of them is honoured by these operations yet, so each is
/// refused by name rather than silently ignored. Accepted with or without `$`, as beta does.
const ODATA_QUERY_OPTIONS: [&str; 10] = [
    "select",
    "expand",
    "filter",
    "orderby",
    "top",
    "skip",
    "count",
    "search",
    "skiptoken",
    "format",
];

/// `POST /deviceManagement/complianceManagementPartners`.
pub async fn create_partner(
    State(state): State<AppState>,
    Extension(ids): Extension<RequestIds>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    refuse_query_options(&uri)?;
    if !is_json(&headers) {
        return Err(ApiError::unsupported_media_type());
    }
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large(state.body_limit_bytes)
        } else {
            // The body arrived too slowly (the body timeout) or the client went away.
            ApiError::body_not_received()
        }
    })?;
    let json: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    let command = parse_partner_fields(&json)?.into_new_partner()?;

    let context = RequestContext {
        request_id: ids.request_id,
        caller: caller.to_string(),
    };
    let (status, partner) = match state.partners.create_partner(command, &context).await? {
        CreatePartnerOutput::Created(partner) => (StatusCode::CREATED, partner),
        CreatePartnerOutput::Accepted(partner) => (StatusCode::ACCEPTED, partner),
    };
    let mut response = entity_response(&state, status, &partner)?;
    let location = format!("{}{COLLECTION_PATH}/{}", state.public_root, partner.id());
    let location = HeaderValue::from_str(&location).map_err(ApiError::internal)?;
    response.headers_mut().insert(LOCATION, location);
    Ok(response)
}

/// `GET /deviceManagement/complianceManagementPartners/{id}`.
pub async fn get_partner(
    State(state): State<AppState>,
    uri: Uri,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    refuse_query_options(&uri)?;
    // The router has already percent-decoded the segment once; it is not decoded again.
    let Path(raw_id) =
        id.map_err(|_| ApiError::bad_request("the id segment is not valid UTF-8"))?;
    let not_found =
        || ApiError::not_found(format!("no complianceManagementPartner has id '{raw_id}'"));
    // Every id we hand out is a GUID, so any other text cannot name a partner.
    let id: PartnerId = raw_id.parse().map_err(|_| not_found())?;
    let partner = state.partners.get_partner(id).await?;
    entity_response(&state, StatusCode::OK, &partner)
}

/// Any method but POST on the collection.
pub async fn collection_method_not_allowed() -> ApiError {
    ApiError::method_not_allowed("POST")
}

/// Any method but GET on an item.
pub async fn item_method_not_allowed() -> ApiError {
    ApiError::method_not_allowed("GET")
}

/// Anything outside the resource.
pub async fn unknown_route(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no resource is served at '{}'", uri.path()))
}

fn entity_response(
    state: &AppState,
    status: StatusCode,
    partner: &Partner,
) -> Result<Response, ApiError> {
    let context = format!(
        "{}/$metadata#deviceManagement/complianceManagementPartners/$entity",
        state.public_root
    );
    let body =
        serde_json::to_vec(&render_partner(partner, Some(context))).map_err(ApiError::internal)?;
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

/// Whether the request declares a JSON body: media type `application/json`, any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("application/json"))
}

fn refuse_query_options(uri: &Uri) -> Result<(), ApiError> {
    let Some(query) = uri.query() else {
        return Ok(());
    };
    for pair in query.split('&') {
        let name = pair.split('=').next().unwrap_or_default();
        // `%24` is an encoded `$`; clients differ in whether they encode it.
        let name = name
            .strip_prefix("%24")
            .or_else(|| name.strip_prefix('$'))
            .unwrap_or(name);
        if ODATA_QUERY_OPTIONS
            .iter()
            .any(|option| option.eq_ignore_ascii_case(name))
        {
            return Err(ApiError::bad_request(format!(
                "query option '${name}' is not supported on this request"
            )));
        }
    }
    Ok(())
}
