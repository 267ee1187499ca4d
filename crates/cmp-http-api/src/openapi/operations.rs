//! The operations of the document: who may call each, its parameters, its successes and the
//! error answers its access and its handler imply.

use super::*;

/// Who may call an operation.
#[derive(Debug, Clone, Copy)]
pub(super) enum Access {
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
pub(super) const GUARDED: [ErrorKind; 5] = [
    ErrorKind::Unauthorized,
    ErrorKind::Forbidden,
    ErrorKind::RequestTimeout,
    ErrorKind::InternalServerError,
    ErrorKind::ServiceUnavailable,
];

/// [`GUARDED`] plus the per-caller write rate.
pub(super) const GUARDED_WRITE: [ErrorKind; 6] = [
    ErrorKind::Unauthorized,
    ErrorKind::Forbidden,
    ErrorKind::RequestTimeout,
    ErrorKind::InternalServerError,
    ErrorKind::ServiceUnavailable,
    ErrorKind::TooManyRequests,
];

/// An operation with its id, tag, summary and access; its error answers are those `access`
/// implies (see [`GUARDED`]) plus `errors`, what its handler adds.
pub(super) fn operation(
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

pub(super) fn json_content(schema: impl Into<RefOr<Schema>>) -> Content {
    Content::new(Some(schema))
}

pub(super) fn query(name: &str, schema: impl Into<RefOr<Schema>>, description: &str) -> Parameter {
    Parameter::builder()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .schema(Some(schema))
        .description(Some(description))
        .build()
}

/// A comma-separated list in one query value (`$select=id,displayName`).
pub(super) fn comma_list(name: &str, items: impl Into<ArrayItems>, description: &str) -> Parameter {
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

pub(super) fn select_parameter() -> Parameter {
    let mut names = vec!["*"];
    names.extend(PARTNER_PROPERTIES);
    comma_list(
        "$select",
        string_enum_of(&names),
        "Properties to return (`*` for all); `@odata.type` and `id` are always returned. \
         Also accepted as `select`.",
    )
}

pub(super) fn filter_parameter() -> Parameter {
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

pub(super) fn partner_id_parameter() -> Parameter {
    path_parameter(
        "id",
        guid(),
        "The partner's id, a GUID; any other text answers 404.",
    )
}

pub(super) fn path_parameter(
    name: &str,
    schema: impl Into<RefOr<Schema>>,
    description: &str,
) -> Parameter {
    Parameter::builder()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .schema(Some(schema))
        .description(Some(description))
        .build()
}

pub(super) fn list_partners() -> Operation {
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

pub(super) fn count_partners() -> Operation {
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

pub(super) fn create_partner() -> Operation {
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

pub(super) fn partner_link(operation_id: &str) -> Link {
    Link::builder()
        .operation_id(operation_id)
        .parameter("id", "$response.body#/id")
        .build()
}

pub(super) fn partner_body(schema_name: &str) -> RequestBody {
    RequestBody::builder()
        .required(Some(Required::True))
        .description(Some(
            "Graph's JSON for the partner, as `Content-Type: application/json`, at most \
             `http.body_limit_bytes`.",
        ))
        .content("application/json", json_content(reference(schema_name)))
        .build()
}

pub(super) fn get_partner() -> Operation {
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

pub(super) fn update_partner() -> Operation {
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

pub(super) fn delete_partner() -> Operation {
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
pub(super) fn operator_partner(id: &str, which: &str) -> Operation {
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

pub(super) fn operator_json(description: &str, schema_name: &str) -> Response {
    with_request_ids(
        ResponseBuilder::new()
            .description(description)
            .content("application/json", json_content(reference(schema_name))),
    )
    .build()
}

pub(super) fn list_outbox_rows() -> Operation {
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

pub(super) fn count_outbox_rows() -> Operation {
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

pub(super) fn requeue_row() -> Operation {
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

pub(super) fn get_document() -> Operation {
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

pub(super) fn get_development_keys() -> Operation {
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
