//! The OpenAPI 3.1 document of the HTTP API, served at [`OPENAPI_PATH`] and described in
//! `docs/api.md`.
//!
//! It is generated with utoipa from the code, never written by hand: the body schemas come
//! from the types that render them (`ToSchema` derives on [`ODataError`], the collection page
//! and the operator bodies) and from the tables the wire parser reads
//! ([`cmp_graph_model::schema`]); the query parameters from the OData parser's limits and
//! sortable properties; each operation lists the statuses the layers and its handler can
//! answer, from one table of error answers. The root path is configuration, so the document is
//! built when the router is, once, and every request gets the same bytes.
//!
//! Two gaps of utoipa 5 are closed on the finished document (`finish`): a response header has
//! no `required` flag (every header the document declares is one the service always sends with
//! that response, so all are marked required), and a link's `operationId` is serialised as
//! `operation_id` (renamed).

use axum::http::StatusCode;
use cmp_application::query::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use cmp_graph_model::PARTNER_PROPERTIES;
use cmp_graph_model::schema::{self, GUID_PATTERN, guid, reference, string, string_enum};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa::openapi::content::Content;
use utoipa::openapi::header::Header;
use utoipa::openapi::link::Link;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, Parameter, ParameterIn, ParameterStyle, PathItem,
};
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{
    AllOf, Array, ArrayItems, Components, Object, ObjectBuilder, Schema, Type,
};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::Tag;
use utoipa::openapi::{Info, OpenApi, Paths, Ref, RefOr, Required};

use crate::COLLECTION_PATH;
use crate::admin::{
    self, HistoryBody, OutboxCountsBody, OutboxRowsBody, RequeuedBody, SyncStateBody,
};
use crate::auth::{OPERATOR_ROLE, READ_PERMISSIONS, WRITE_PERMISSIONS};
use crate::envelope::ODataError;
use crate::odata::{MAX_FILTER_CHARS, MAX_SKIPTOKEN_CHARS, SORT_FIELDS};
use crate::partners::CollectionResponse;

/// Where the document is served: outside the Graph root, without authentication.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// The name of the bearer security scheme.
const BEARER: &str = "bearer";

/// Tag of the Graph-shaped resource.
const RESOURCE_TAG: &str = "complianceManagementPartners";

/// Tag of the operator endpoints.
const OPERATOR_TAG: &str = "operations";

/// Tag of the service's own documents (this one, the development key set).
const SERVICE_TAG: &str = "service";

/// The service's document as JSON bytes, for `root_path` (e.g. `/beta`; empty or `/` serves
/// the resource at the server root).
///
/// # Errors
/// Only if the document could not be turned into JSON, which the static tables it is built
/// from always can.
pub fn document_json(root_path: &str) -> Result<Vec<u8>, serde_json::Error> {
    let mut value = serde_json::to_value(document(root_path))?;
    finish(&mut value);
    serde_json::to_vec(&value)
}

/// The service's OpenAPI document for `root_path`.
pub fn document(root_path: &str) -> OpenApi {
    let root = if root_path == "/" { "" } else { root_path };
    let collection = format!("{root}{COLLECTION_PATH}");
    let paths = Paths::builder()
        .path(
            &collection,
            PathItem::builder()
                .operation(HttpMethod::Get, list_partners())
                .operation(HttpMethod::Post, create_partner())
                .build(),
        )
        .path(
            format!("{collection}/$count"),
            PathItem::new(HttpMethod::Get, count_partners()),
        )
        .path(
            format!("{collection}/{{id}}"),
            PathItem::builder()
                .operation(HttpMethod::Get, get_partner())
                .operation(HttpMethod::Patch, update_partner())
                .operation(HttpMethod::Delete, delete_partner())
                .build(),
        )
        .path(
            "/admin/partners/{id}/sync",
            PathItem::new(HttpMethod::Get, operator_partner("getSyncState", "sync")),
        )
        .path(
            "/admin/partners/{id}/history",
            PathItem::new(HttpMethod::Get, operator_partner("getHistory", "history")),
        )
        .path(
            "/admin/outbox",
            PathItem::new(HttpMethod::Get, list_outbox_rows()),
        )
        .path(
            "/admin/outbox/counts",
            PathItem::new(HttpMethod::Get, count_outbox_rows()),
        )
        .path(
            "/admin/outbox/{outbox_id}/requeue",
            PathItem::new(HttpMethod::Post, requeue_row()),
        )
        .path(OPENAPI_PATH, PathItem::new(HttpMethod::Get, get_document()))
        .path(
            crate::DEVELOPMENT_KEYS_PATH,
            PathItem::new(HttpMethod::Get, get_development_keys()),
        )
        .build();
    OpenApi::builder()
        .info(
            Info::builder()
                .title("Compliance-partner onboarding service")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(DESCRIPTION)),
        )
        .paths(paths)
        .components(Some(components()))
        .tags(Some([
            tag(
                RESOURCE_TAG,
                "Microsoft Graph beta's complianceManagementPartner resource.",
            ),
            tag(
                OPERATOR_TAG,
                "The delivery outbox, for operators (app role CompliancePartners.Operate).",
            ),
            tag(
                SERVICE_TAG,
                "The service's own documents; no authentication.",
            ),
        ]))
        .build()
}

/// The document's introduction.
const DESCRIPTION: &str = "Onboards Microsoft Intune compliance partners through Microsoft Graph's beta \
`complianceManagementPartner` contract; an official Graph SDK pointed at the service works unchanged. \
Every answer carries `request-id` (and echoes `client-request-id`, or repeats the request id when none \
usable came); every error is Graph's error body. A method a path does not serve answers 405 with \
`Allow` and the error body (code `BadRequest`). OData query options are accepted with or without \
the `$` (`top` is `$top`; giving both is a 400); option names are case-sensitive; an option an \
operation does not support is refused with 400, never ignored. Values are percent-decoded once and \
`+` stays a plus sign, so encode spaces as `%20`.";

fn tag(name: &str, description: &str) -> Tag {
    Tag::builder()
        .name(name)
        .description(Some(description))
        .build()
}

fn components() -> Components {
    let mut schemas = schema::components();
    schemas.push(named_schema::<ODataError>());
    ODataError::schemas(&mut schemas);
    schemas.push(named_schema::<CollectionResponse>());
    for (name, schema) in [
        named_schema::<SyncStateBody>(),
        named_schema::<HistoryBody>(),
        named_schema::<OutboxRowsBody>(),
        named_schema::<OutboxCountsBody>(),
        named_schema::<RequeuedBody>(),
    ] {
        schemas.push((name, schema));
    }
    SyncStateBody::schemas(&mut schemas);
    HistoryBody::schemas(&mut schemas);
    schemas.push(("JsonWebKeySet".to_owned(), json_web_key_set()));

    let mut builder = Components::builder()
        .schemas_from_iter(schemas)
        .security_scheme(
            BEARER,
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An Entra ID access token for the service (or, in development auth \
                         mode, one from `cmp-server mint-token`), checked as Graph checks \
                         tokens. Reads need one of the read permissions, writes one of the \
                         write permissions, `/admin/` the app role CompliancePartners.Operate; \
                         applications carry them in `roles`, users in `scp`.",
                    ))
                    .build(),
            ),
        );
    for kind in ErrorKind::ALL {
        let answer = kind.answer();
        builder = builder.response(answer.name, answer.response());
    }
    builder.build()
}

fn named_schema<T: ToSchema>() -> (String, RefOr<Schema>) {
    (T::name().into_owned(), T::schema())
}

/// The development signing key set, RFC 7517.
fn json_web_key_set() -> RefOr<Schema> {
    let key = Object::builder()
        .property("kty", string_enum(["RSA"]))
        .property("use", string_enum(["sig"]))
        .property("alg", string_enum(["RS256"]))
        .property("kid", string())
        .property("n", string().description(Some("The modulus, base64url.")))
        .property("e", string().description(Some("The exponent, base64url.")))
        .required("kty")
        .required("kid")
        .required("n")
        .required("e");
    Object::builder()
        .property("keys", Array::new(key))
        .required("keys")
        .description(Some(
            "The public keys that sign development tokens (RFC 7517 key set).",
        ))
        .into()
}

mod errors;
mod operations;

use errors::*;
use operations::*;

/// Closes utoipa 5's gaps on the serialised `document`: marks every response header
/// `required` (the document declares only headers the service always sends with that
/// response) and names each link's operation `operationId`, as OpenAPI spells it.
fn finish(document: &mut Value) {
    let finish_responses = |responses: &mut Value| {
        let responses = responses
            .as_object_mut()
            .into_iter()
            .flat_map(|map| map.values_mut());
        for response in responses {
            let headers = response.get_mut("headers").and_then(Value::as_object_mut);
            for header in headers.into_iter().flat_map(|map| map.values_mut()) {
                if let Some(header) = header.as_object_mut() {
                    header.insert("required".to_owned(), Value::Bool(true));
                }
            }
            let links = response.get_mut("links").and_then(Value::as_object_mut);
            for link in links.into_iter().flat_map(|map| map.values_mut()) {
                if let Some(link) = link.as_object_mut()
                    && let Some(operation_id) = link.remove("operation_id")
                {
                    link.insert("operationId".to_owned(), operation_id);
                }
            }
        }
    };
    if let Some(responses) = document.pointer_mut("/components/responses") {
        finish_responses(responses);
    }
    let paths = document.get_mut("paths").and_then(Value::as_object_mut);
    for item in paths.into_iter().flat_map(|map| map.values_mut()) {
        let operations = item
            .as_object_mut()
            .into_iter()
            .flat_map(|map| map.values_mut());
        for operation in operations {
            if let Some(responses) = operation.get_mut("responses") {
                finish_responses(responses);
            }
        }
    }
}

#[cfg(test)]
mod tests;
