//! The error answers of the document: which statuses an operation can answer besides its
//! successes, each a reusable response with the Graph error body and the headers the service
//! always sends with it (`docs/api.md`).

use super::*;

/// The statuses an operation answers besides its successes; each is a reusable response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ErrorKind {
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
pub(super) enum ErrorHeader {
    RetryAfter,
    WwwAuthenticate,
}

/// One reusable error response.
pub(super) struct ErrorAnswer {
    pub(super) status: StatusCode,
    /// The component name.
    pub(super) name: &'static str,
    /// The `error.code` values it carries.
    pub(super) codes: &'static [&'static str],
    pub(super) description: &'static str,
    pub(super) headers: &'static [ErrorHeader],
}

impl ErrorKind {
    /// Every kind, for the document's reusable responses.
    pub(super) const ALL: [ErrorKind; 13] = [
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
    pub(super) fn answer(self) -> ErrorAnswer {
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
    pub(super) fn response(&self) -> Response {
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

pub(super) fn integer() -> ObjectBuilder {
    Object::builder().schema_type(Type::Integer)
}

pub(super) fn string_enum_of(members: &[&str]) -> Object {
    string().enum_values(Some(members.iter().copied())).build()
}

/// The headers every answer carries.
pub(super) fn with_request_ids(response: ResponseBuilder) -> ResponseBuilder {
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
pub(super) fn with_odata_version(response: ResponseBuilder) -> ResponseBuilder {
    response.header(
        "OData-Version",
        Header::builder().schema(string_enum(["4.0"])).build(),
    )
}
