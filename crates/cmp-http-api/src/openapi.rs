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

/// The statuses an operation answers besides its successes; each is a reusable response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorKind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    RequestTimeout,
    NameTaken,
    NotDead,
    PayloadTooLarge,
    UnsupportedMediaType,
    TooManyRequests,
    InternalServerError,
    BadGateway,
    ServiceUnavailable,
}

/// A header an error answer always carries besides the request ids.
#[derive(Debug, Clone, Copy)]
enum ErrorHeader {
    RetryAfter,
    WwwAuthenticate,
}

/// One reusable error response.
struct ErrorAnswer {
    status: StatusCode,
    /// The component name.
    name: &'static str,
    /// The `error.code` values it carries.
    codes: &'static [&'static str],
    description: &'static str,
    headers: &'static [ErrorHeader],
}

impl ErrorKind {
    /// Every kind, for the document's reusable responses.
    const ALL: [ErrorKind; 13] = [
        Self::BadRequest,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::RequestTimeout,
        Self::NameTaken,
        Self::NotDead,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::TooManyRequests,
        Self::InternalServerError,
        Self::BadGateway,
        Self::ServiceUnavailable,
    ];

    /// The answer of this kind.
    fn answer(self) -> ErrorAnswer {
        match self {
            Self::BadRequest => ErrorAnswer {
                status: StatusCode::BAD_REQUEST,
                name: "BadRequest",
                codes: &["BadRequest"],
                description: "The request is malformed: JSON that does not parse, a member of the wrong \
                JSON type, a bad enum member or date, an unknown member, a broken invariant (`error.\
                target` names the member), a body whose framing is broken, or a query option that \
                is malformed, unsupported or given twice. When Microsoft Graph refused the payload of \
                a create, `innerError.code` holds Graph's code.",
                headers: &[],
            },
            Self::Unauthorized => ErrorAnswer {
                status: StatusCode::UNAUTHORIZED,
                name: "Unauthorized",
                codes: &["InvalidAuthenticationToken"],
                description: "No usable `Authorization: Bearer` header (challenge `Bearer`), or the \
                token was refused: signature, lifetime, audience, issuer, tenant or version \
                (challenge `Bearer error=\"invalid_token\"`).",
                headers: &[ErrorHeader::WwwAuthenticate],
            },
            Self::Forbidden => ErrorAnswer {
                status: StatusCode::FORBIDDEN,
                name: "Forbidden",
                codes: &["Authorization_RequestDenied"],
                description: "The token lacks the permission the request needs (challenge \
                `Bearer error=\"insufficient_scope\"`).",
                headers: &[ErrorHeader::WwwAuthenticate],
            },
            Self::NotFound => ErrorAnswer {
                status: StatusCode::NOT_FOUND,
                name: "NotFound",
                codes: &["ResourceNotFound"],
                description: "No such partner (any id that is not a GUID included), or nothing recorded \
                about it.",
                headers: &[],
            },
            Self::RequestTimeout => ErrorAnswer {
                status: StatusCode::REQUEST_TIMEOUT,
                name: "RequestTimeout",
                codes: &["RequestTimeout"],
                description: "The whole request took longer than `http.request_timeout_ms`, or its \
                body arrived slower than `http.body_read_timeout_ms` allows. Not retried by Graph \
                SDKs, so a slow create is never sent twice.",
                headers: &[],
            },
            Self::NameTaken => ErrorAnswer {
                status: StatusCode::CONFLICT,
                name: "NameAlreadyExists",
                codes: &["nameAlreadyExists"],
                description: "Another partner of the tenant has this display name (compared trimmed and \
                case-insensitively); a deleted partner keeps its name until Graph confirms the \
                delete.",
                headers: &[],
            },
            Self::NotDead => ErrorAnswer {
                status: StatusCode::CONFLICT,
                name: "NotDead",
                codes: &["Conflict"],
                description: "There is no dead outbox row with this id (any text that is not one \
                included).",
                headers: &[],
            },
            Self::PayloadTooLarge => ErrorAnswer {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                name: "RequestEntityTooLarge",
                codes: &["RequestEntityTooLarge"],
                description: "The body is larger than `http.body_limit_bytes` (1 MiB by default).",
                headers: &[],
            },
            Self::UnsupportedMediaType => ErrorAnswer {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                name: "UnsupportedMediaType",
                codes: &["UnsupportedMediaType"],
                description: "The body is not declared as `Content-Type: application/json` (parameters \
                allowed).",
                headers: &[],
            },
            Self::TooManyRequests => ErrorAnswer {
                status: StatusCode::TOO_MANY_REQUESTS,
                name: "TooManyRequests",
                codes: &["activityLimitReached"],
                description: "This caller's writes are over its rate; retry after the whole seconds in \
                `Retry-After`.",
                headers: &[ErrorHeader::RetryAfter],
            },
            Self::InternalServerError => ErrorAnswer {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                name: "InternalServerError",
                codes: &["InternalServerError"],
                description: "The service failed; the cause is logged under the request id, never sent.",
                headers: &[],
            },
            Self::BadGateway => ErrorAnswer {
                status: StatusCode::BAD_GATEWAY,
                name: "BadGateway",
                codes: &["BadGateway"],
                description: "Microsoft Graph refused the partner for good for a reason that is not its \
                payload (nothing is kept); `innerError.code` holds Graph's code.",
                headers: &[],
            },
            Self::ServiceUnavailable => ErrorAnswer {
                status: StatusCode::SERVICE_UNAVAILABLE,
                name: "ServiceUnavailable",
                codes: &["serviceNotAvailable"],
                description: "Requests in flight are over `http.max_concurrent_requests`, or the keys \
                that verify tokens cannot be fetched; retry after the whole seconds in \
                `Retry-After`.",
                headers: &[ErrorHeader::RetryAfter],
            },
        }
    }
}

impl ErrorAnswer {
    fn response(&self) -> Response {
        // The error body, with `error.code` narrowed to what this answer carries.
        let codes = Object::builder()
            .property(
                "error",
                Object::builder()
                    .property("code", string_enum_of(self.codes))
                    .required("code"),
            )
            .required("error");
        let body = AllOf::builder()
            .item(reference("ODataError"))
            .item(codes)
            .build();
        let mut response = with_request_ids(ResponseBuilder::new().description(self.description))
            .content(
                "application/json",
                Content::new(Some(RefOr::T(Schema::AllOf(body)))),
            );
        for header in self.headers {
            response = match header {
                ErrorHeader::RetryAfter => response.header(
                    "Retry-After",
                    Header::builder()
                        .schema(integer().minimum(Some(1)))
                        .description(Some("Whole seconds to wait before retrying."))
                        .build(),
                ),
                ErrorHeader::WwwAuthenticate => response.header(
                    "WWW-Authenticate",
                    Header::builder()
                        .schema(string().pattern(Some(
                            "^Bearer( error=\"(invalid_token|insufficient_scope)\")?$",
                        )))
                        .description(Some("The bearer challenge."))
                        .build(),
                ),
            };
        }
        response.build()
    }
}

fn integer() -> ObjectBuilder {
    Object::builder().schema_type(Type::Integer)
}

fn string_enum_of(members: &[&str]) -> Object {
    string().enum_values(Some(members.iter().copied())).build()
}

/// The headers every answer carries.
fn with_request_ids(response: ResponseBuilder) -> ResponseBuilder {
    response
        .header(
            "request-id",
            Header::builder()
                .schema(string().pattern(Some(GUID_PATTERN)))
                .description(Some(
                    "The service's id of the request, also in error bodies.",
                ))
                .build(),
        )
        .header(
            "client-request-id",
            Header::builder()
                .schema(string().min_length(Some(1)))
                .description(Some(
                    "The caller's `client-request-id` (1 to 128 characters), or the \
                     `request-id` when none usable came.",
                ))
                .build(),
        )
}

/// `OData-Version: 4.0`, on the resource's successes as Graph sends it.
fn with_odata_version(response: ResponseBuilder) -> ResponseBuilder {
    response.header(
        "OData-Version",
        Header::builder().schema(string_enum(["4.0"])).build(),
    )
}

/// Who may call an operation.
#[derive(Debug, Clone, Copy)]
enum Access {
    /// No token.
    Public,
    /// One of [`READ_PERMISSIONS`].
    Read,
    /// One of [`WRITE_PERMISSIONS`].
    Write,
    /// [`OPERATOR_ROLE`].
    Operator,
}

/// What every request past the token check can answer, whatever it does: a refused token or
/// permission, a timeout, a failure, load shedding.
const GUARDED: [ErrorKind; 5] = [
    ErrorKind::Unauthorized,
    ErrorKind::Forbidden,
    ErrorKind::RequestTimeout,
    ErrorKind::InternalServerError,
    ErrorKind::ServiceUnavailable,
];

/// [`GUARDED`] plus the per-caller write rate.
const GUARDED_WRITE: [ErrorKind; 6] = [
    ErrorKind::Unauthorized,
    ErrorKind::Forbidden,
    ErrorKind::RequestTimeout,
    ErrorKind::InternalServerError,
    ErrorKind::ServiceUnavailable,
    ErrorKind::TooManyRequests,
];

/// An operation with its id, tag, summary and access; its error answers are those `access`
/// implies (see [`GUARDED`]) plus `errors`, what its handler adds.
fn operation(
    id: &str,
    tag: &str,
    summary: &str,
    description: &str,
    access: Access,
    errors: &[ErrorKind],
) -> OperationBuilder {
    let permissions = match access {
        Access::Public => String::new(),
        Access::Read => format!(" Needs one of: {}.", READ_PERMISSIONS.join(", ")),
        Access::Write => format!(" Needs one of: {}.", WRITE_PERMISSIONS.join(", ")),
        Access::Operator => format!(" Needs the app role {OPERATOR_ROLE}."),
    };
    let mut builder = OperationBuilder::new()
        .operation_id(Some(id))
        .tag(tag)
        .summary(Some(summary))
        .description(Some(format!("{description}{permissions}")));
    builder = match access {
        Access::Public => builder.securities(Some([SecurityRequirement::default()])),
        Access::Read | Access::Write | Access::Operator => {
            builder.security(SecurityRequirement::new(BEARER, Vec::<String>::new()))
        }
    };
    let implied: &[ErrorKind] = match access {
        Access::Public => &[],
        Access::Read | Access::Operator => &GUARDED,
        Access::Write => &GUARDED_WRITE,
    };
    for kind in implied.iter().chain(errors) {
        let answer = kind.answer();
        builder = builder.response(answer.status.as_str(), Ref::from_response_name(answer.name));
    }
    builder
}

fn json_content(schema: impl Into<RefOr<Schema>>) -> Content {
    Content::new(Some(schema))
}

fn query(name: &str, schema: impl Into<RefOr<Schema>>, description: &str) -> Parameter {
    Parameter::builder()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .schema(Some(schema))
        .description(Some(description))
        .build()
}

/// A comma-separated list in one query value (`$select=id,displayName`).
fn comma_list(name: &str, items: impl Into<ArrayItems>, description: &str) -> Parameter {
    Parameter::builder()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .schema(Some(Array::builder().items(items).min_items(Some(1))))
        .style(Some(ParameterStyle::Form))
        .explode(Some(false))
        .description(Some(description))
        .build()
}

fn select_parameter() -> Parameter {
    let mut names = vec!["*"];
    names.extend(PARTNER_PROPERTIES);
    comma_list(
        "$select",
        string_enum_of(&names),
        "Properties to return (`*` for all); `@odata.type` and `id` are always returned. \
         Also accepted as `select`.",
    )
}

fn filter_parameter() -> Parameter {
    query(
        "$filter",
        string().max_length(Some(MAX_FILTER_CHARS)),
        "An OData filter: `eq`, `ne`, `gt`, `ge`, `lt`, `le`, `and`, `or`, `not`, parentheses, \
         `in`, and `startswith(displayName,'...')`, on `displayName`, `partnerState`, `id`, the \
         five `*Onboarded` flags and `lastHeartbeatDateTime`; strings in single quotes, dates \
         with an offset. Anything the parser does not understand is a 400 naming the problem. \
         Also accepted as `filter`.",
    )
}

fn partner_id_parameter() -> Parameter {
    path_parameter(
        "id",
        guid(),
        "The partner's id, a GUID; any other text answers 404.",
    )
}

fn path_parameter(name: &str, schema: impl Into<RefOr<Schema>>, description: &str) -> Parameter {
    Parameter::builder()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .schema(Some(schema))
        .description(Some(description))
        .build()
}

fn list_partners() -> Operation {
    let sortable: Vec<&str> = SORT_FIELDS.iter().map(|(name, _)| *name).collect();
    let order_item = string().pattern(Some(format!("^({})( (asc|desc))?$", sortable.join("|"))));
    operation(
        "listPartners",
        RESOURCE_TAG,
        "List partners",
        "A page of partners, by keyset: while more remain, `@odata.nextLink` is the absolute URL \
         of the next page (its `$skiptoken` holds the position of the last item, so partners \
         added or removed between pages are neither repeated nor skipped).",
        Access::Read,
        &[ErrorKind::BadRequest],
    )
    .parameter(query(
        "$top",
        integer()
            .minimum(Some(1))
            .maximum(Some(MAX_PAGE_SIZE))
            .default(Some(DEFAULT_PAGE_SIZE.into())),
        "Page size. Also accepted as `top`.",
    ))
    .parameter(query(
        "$skip",
        integer().minimum(Some(0)).maximum(Some(i64::MAX)),
        "Items to skip before the first page. Also accepted as `skip`.",
    ))
    .parameter(query(
        "$count",
        Object::with_type(Type::Boolean),
        "`true` adds `@odata.count`, the number of partners the filter matches. Also accepted \
         as `count`.",
    ))
    .parameter(select_parameter())
    .parameter(comma_list(
        "$orderby",
        order_item,
        "Sort keys, each a property and an optional `asc` (default) or `desc` separated by a \
         space (`%20`); a property at most once. Ties are broken by `id`. Also accepted as \
         `orderby`.",
    ))
    .parameter(filter_parameter())
    .parameter(query(
        "$skiptoken",
        string().max_length(Some(MAX_SKIPTOKEN_CHARS)),
        "The position of the next page, from an `@odata.nextLink`; bound to the query's filter, \
         order, selection and count (400 otherwise). Also accepted as `skiptoken`.",
    ))
    .response(
        "200",
        with_odata_version(with_request_ids(
            ResponseBuilder::new()
                .description("A page of partners.")
                .content(
                    "application/json",
                    json_content(reference(&CollectionResponse::name())),
                ),
        ))
        .build(),
    )
    .build()
}

fn count_partners() -> Operation {
    operation(
        "countPartners",
        RESOURCE_TAG,
        "Count partners",
        "The number of partners the `$filter` matches, as `text/plain`.",
        Access::Read,
        &[ErrorKind::BadRequest],
    )
    .parameter(filter_parameter())
    .response(
        "200",
        with_odata_version(with_request_ids(
            ResponseBuilder::new().description("The count.").content(
                "text/plain",
                Content::new(Some(string().pattern(Some("^[0-9]+$")))),
            ),
        ))
        .build(),
    )
    .build()
}

fn create_partner() -> Operation {
    let created = |description: &str| {
        with_odata_version(with_request_ids(
            ResponseBuilder::new()
                .description(description)
                .content("application/json", json_content(reference(schema::PARTNER))),
        ))
        .header(
            "Location",
            Header::builder()
                .schema(string().format(Some(utoipa::openapi::SchemaFormat::Custom(
                    "uri".to_owned(),
                ))))
                .description(Some("The partner's URL."))
                .build(),
        )
        .link("GetPartner", partner_link("getPartner"))
        .link("UpdatePartner", partner_link("updatePartner"))
        .link("DeletePartner", partner_link("deletePartner"))
        .build()
    };
    operation(
        "createPartner",
        RESOURCE_TAG,
        "Create a partner",
        "Stores the partner and provisions it into Intune through Microsoft Graph: 201 when \
         Graph confirmed it within the inline deadline, 202 when it is stored and queued \
         (Graph slow or unavailable); a request accepted is never lost and never makes two \
         objects in Graph.",
        Access::Write,
        &[
            ErrorKind::BadRequest,
            ErrorKind::NameTaken,
            ErrorKind::PayloadTooLarge,
            ErrorKind::UnsupportedMediaType,
            ErrorKind::BadGateway,
        ],
    )
    .request_body(Some(partner_body(schema::PARTNER_CREATE)))
    .response(
        "201",
        created("Created: Microsoft Graph holds the partner."),
    )
    .response(
        "202",
        created("Accepted: stored and queued for Microsoft Graph, which was slow or unavailable."),
    )
    .build()
}

fn partner_link(operation_id: &str) -> Link {
    Link::builder()
        .operation_id(operation_id)
        .parameter("id", "$response.body#/id")
        .build()
}

fn partner_body(schema_name: &str) -> RequestBody {
    RequestBody::builder()
        .required(Some(Required::True))
        .description(Some(
            "Graph's JSON for the partner, as `Content-Type: application/json`, at most \
             `http.body_limit_bytes`.",
        ))
        .content("application/json", json_content(reference(schema_name)))
        .build()
}

fn get_partner() -> Operation {
    operation(
        "getPartner",
        RESOURCE_TAG,
        "Get a partner",
        "The partner at the JSON root.",
        Access::Read,
        &[ErrorKind::BadRequest, ErrorKind::NotFound],
    )
    .parameter(partner_id_parameter())
    .parameter(select_parameter())
    .response(
        "200",
        with_odata_version(with_request_ids(
            ResponseBuilder::new().description("The partner.").content(
                "application/json",
                json_content(reference(schema::PARTNER_PROJECTION)),
            ),
        ))
        .build(),
    )
    .build()
}

fn update_partner() -> Operation {
    operation(
        "updatePartner",
        RESOURCE_TAG,
        "Update a partner",
        "Graph's merge: properties present replace the stored ones, a collection wholesale; the \
         change reaches Graph through the outbox, in order.",
        Access::Write,
        &[
            ErrorKind::BadRequest,
            ErrorKind::NotFound,
            ErrorKind::NameTaken,
            ErrorKind::PayloadTooLarge,
            ErrorKind::UnsupportedMediaType,
        ],
    )
    .parameter(partner_id_parameter())
    .parameter(
        Parameter::builder()
            .name("Prefer")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .schema(Some(string()))
            .description(Some(
                "`return=minimal` (RFC 7240, among other preferences, any letter case) answers \
                 204 without a body.",
            ))
            .build(),
    )
    .request_body(Some(partner_body(schema::PARTNER_UPDATE)))
    .response(
        "200",
        with_odata_version(with_request_ids(
            ResponseBuilder::new()
                .description("The whole updated partner.")
                .content("application/json", json_content(reference(schema::PARTNER))),
        ))
        .build(),
    )
    .response(
        "204",
        with_odata_version(with_request_ids(
            ResponseBuilder::new().description("Updated; the client preferred `return=minimal`."),
        ))
        .header(
            "Preference-Applied",
            Header::builder()
                .schema(string_enum(["return=minimal"]))
                .build(),
        )
        .build(),
    )
    .build()
}

fn delete_partner() -> Operation {
    operation(
        "deletePartner",
        RESOURCE_TAG,
        "Delete a partner",
        "Gone for callers at once; Microsoft Graph is told in the background (its display name \
         stays reserved until Graph confirms).",
        Access::Write,
        &[ErrorKind::BadRequest, ErrorKind::NotFound],
    )
    .parameter(partner_id_parameter())
    .response(
        "204",
        with_request_ids(ResponseBuilder::new().description("Deleted.")).build(),
    )
    .build()
}

/// `GET /admin/partners/{id}/sync` and `…/history`.
fn operator_partner(id: &str, which: &str) -> Operation {
    let (summary, description, body) = if which == "sync" {
        (
            "A partner's sync state",
            "Where the partner's latest change stands: state, attempts, next attempt, last \
             status and Graph error code, Graph's id, dead reason, and every attempt.",
            SyncStateBody::name(),
        )
    } else {
        (
            "A partner's history",
            "The audit entries (what changed, when, the request id, the caller) and every \
             delivery with its attempts and their Graph request ids.",
            HistoryBody::name(),
        )
    };
    operation(
        id,
        OPERATOR_TAG,
        summary,
        description,
        Access::Operator,
        &[ErrorKind::BadRequest, ErrorKind::NotFound],
    )
    .parameter(path_parameter(
        "id",
        string(),
        "The partner's id; any text that is not one answers 404.",
    ))
    .response("200", operator_json(summary, &body))
    .build()
}

fn operator_json(description: &str, schema_name: &str) -> Response {
    with_request_ids(
        ResponseBuilder::new()
            .description(description)
            .content("application/json", json_content(reference(schema_name))),
    )
    .build()
}

fn list_outbox_rows() -> Operation {
    let states: Vec<&str> = cmp_application::OutboxState::ALL
        .iter()
        .map(cmp_application::OutboxState::as_str)
        .collect();
    operation(
        "listOutboxRows",
        OPERATOR_TAG,
        "Outbox rows in a state",
        "Rows oldest first, in one state or all.",
        Access::Operator,
        &[ErrorKind::BadRequest],
    )
    .parameter(query(
        "state",
        string_enum_of(&states),
        "Only rows in this state. Any other query option is a 400.",
    ))
    .parameter(query(
        "limit",
        integer()
            .minimum(Some(1))
            .maximum(Some(admin::MAX_LIMIT))
            .default(Some(admin::DEFAULT_LIMIT.into())),
        "Most rows to return.",
    ))
    .response("200", operator_json("The rows.", &OutboxRowsBody::name()))
    .build()
}

fn count_outbox_rows() -> Operation {
    operation(
        "countOutboxRows",
        OPERATOR_TAG,
        "Outbox rows per state",
        "How many rows are in each state.",
        Access::Operator,
        &[],
    )
    .response(
        "200",
        operator_json("The counts.", &OutboxCountsBody::name()),
    )
    .build()
}

fn requeue_row() -> Operation {
    operation(
        "requeueOutboxRow",
        OPERATOR_TAG,
        "Requeue a dead row",
        "Puts a dead row back in the queue as `unknown` (Graph is asked before anything is sent \
         again), with a new give-up window. Takes no body.",
        Access::Operator,
        &[
            ErrorKind::BadRequest,
            ErrorKind::NotDead,
            ErrorKind::TooManyRequests,
        ],
    )
    .parameter(path_parameter(
        "outbox_id",
        string(),
        "The outbox row's id.",
    ))
    .response("200", operator_json("Requeued.", &RequeuedBody::name()))
    .build()
}

fn get_document() -> Operation {
    operation(
        "getOpenApiDocument",
        SERVICE_TAG,
        "This document",
        "The OpenAPI 3.1 document of the service, generated from its code; the same bytes on \
         every call.",
        Access::Public,
        &[ErrorKind::RequestTimeout, ErrorKind::ServiceUnavailable],
    )
    .response(
        "200",
        with_request_ids(ResponseBuilder::new().description("The document.").content(
            "application/json",
            json_content(Object::with_type(Type::Object)),
        ))
        .build(),
    )
    .build()
}

fn get_development_keys() -> Operation {
    operation(
        "getDevelopmentKeys",
        SERVICE_TAG,
        "The development signing keys",
        "Served only in development auth mode, so that tools can verify the tokens a development \
         instance accepts. In any other mode the path is not served: 401 without a token, 404 \
         with one.",
        Access::Public,
        &[ErrorKind::Unauthorized, ErrorKind::NotFound],
    )
    .response(
        "200",
        with_request_ids(
            ResponseBuilder::new()
                .description("The key set.")
                .content("application/json", json_content(reference("JsonWebKeySet"))),
        )
        .build(),
    )
    .build()
}

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
