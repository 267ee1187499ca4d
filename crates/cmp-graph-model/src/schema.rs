//! The OpenAPI 3.1 (JSON Schema 2020-12) schemas of the partner's wire shapes, built from the
//! same tables the parser and the renderer use: [`PARTNER_PROPERTIES`], the platforms, the
//! target subtypes and their members, the enum members of the domain.
//!
//! Two families: the *request* schemas describe what [`parse_partner_fields`] accepts (the
//! entity and assignment `@odata.type` with `#`, bare or absent and in any letter case,
//! `@odata.*` annotations ignored, any other unknown member refused), the *response* schemas
//! what [`render_partner`] emits (every property, `#microsoft.graph.*` type names, dates in
//! UTC with seven fractional digits). Rules JSON Schema cannot state (trimming, one target per
//! platform, the filter type and filter id going together, a heartbeat at most five minutes
//! ahead) are written in the descriptions; a request that breaks them gets a 400.
//!
//! [`parse_partner_fields`]: crate::parse_partner_fields
//! [`render_partner`]: crate::render_partner

use cmp_domain::partner::display_name::DISPLAY_NAME_MAX_CHARS;
use cmp_domain::partner::target::TEXT_ID_MAX_CHARS;
use cmp_domain::{AssignmentFilter, PartnerState, Platform, ScopeTagTargetType};
use utoipa::openapi::schema::{
    AdditionalProperties, AnyOf, Array, Discriminator, KnownFormat, Object, ObjectBuilder, OneOf,
    Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};

use crate::odata;
use crate::partner::PARTNER_PROPERTIES;
use crate::target::{FILTER_ID, FILTER_TYPE, TARGET_TYPES, TargetMember};

/// The entity as the service answers with it: every property present.
pub const PARTNER: &str = "complianceManagementPartner";

/// The entity as a read answers with it: reduced to the `$select`ed properties.
pub const PARTNER_PROJECTION: &str = "complianceManagementPartnerProjection";

/// A create request body.
pub const PARTNER_CREATE: &str = "complianceManagementPartnerCreate";

/// An update (PATCH) request body.
pub const PARTNER_UPDATE: &str = "complianceManagementPartnerUpdate";

/// Graph's `deviceManagementPartnerTenantState`.
pub const PARTNER_STATE: &str = "deviceManagementPartnerTenantState";

/// Graph's `deviceAndAppManagementAssignmentFilterType`.
pub const FILTER_TYPE_ENUM: &str = "deviceAndAppManagementAssignmentFilterType";

/// Graph's `scopeTagTargetType`.
pub const SCOPE_TAG_TARGET_TYPE: &str = "scopeTagTargetType";

/// The assignment as rendered.
const ASSIGNMENT: &str = "complianceManagementPartnerAssignment";

/// The assignment as accepted.
const ASSIGNMENT_INPUT: &str = "complianceManagementPartnerAssignmentInput";

/// The polymorphic target as rendered.
const TARGET: &str = "deviceAndAppManagementAssignmentTarget";

/// The polymorphic target as accepted.
const TARGET_INPUT: &str = "deviceAndAppManagementAssignmentTargetInput";

/// Suffix of the request-side component of a target subtype.
const INPUT_SUFFIX: &str = "Input";

/// Visible text: no control character (Unicode `Cc`) and at least one character that is
/// neither a control character nor white space, so that it is not blank. Display names and
/// free-text ids share it.
const VISIBLE_TEXT_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$";

/// The hyphenated GUID form, the only one ids and group ids are accepted in.
pub const GUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// How the service renders an `Edm.DateTimeOffset`: UTC, seven fractional digits, `Z`.
const RENDERED_DATE_TIME: &str = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}Z$";

/// Which way a schema describes the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// What the parser accepts.
    Request,
    /// What the renderer emits.
    Response,
}

/// Every component schema of the partner's wire shapes, by component name.
pub fn components() -> Vec<(String, RefOr<Schema>)> {
    let mut components = vec![
        (PARTNER.to_owned(), partner_response(true)),
        (PARTNER_PROJECTION.to_owned(), partner_response(false)),
        (PARTNER_CREATE.to_owned(), partner_request(true)),
        (PARTNER_UPDATE.to_owned(), partner_request(false)),
        (ASSIGNMENT.to_owned(), assignment(Side::Response)),
        (ASSIGNMENT_INPUT.to_owned(), assignment(Side::Request)),
        (TARGET.to_owned(), target_family(Side::Response)),
        (TARGET_INPUT.to_owned(), target_family(Side::Request)),
        (
            PARTNER_STATE.to_owned(),
            string_enum(PartnerState::ALL.map(|state| state.as_str()))
                .description(Some(
                    "Partner state of a tenant. Exactly these member names, in this letter case.",
                ))
                .into(),
        ),
        (
            FILTER_TYPE_ENUM.to_owned(),
            string_enum(AssignmentFilter::TYPE_NAMES)
                .description(Some(
                    "How the assignment filter applies. `include` and `exclude` need a \
                     `deviceAndAppManagementAssignmentFilterId`; `none` carries none.",
                ))
                .into(),
        ),
        (
            SCOPE_TAG_TARGET_TYPE.to_owned(),
            string_enum(ScopeTagTargetType::ALL.map(|kind| kind.as_str()))
                .description(Some("Whether a scope tag group holds users or devices."))
                .into(),
        ),
    ];
    for (type_name, members) in TARGET_TYPES {
        components.push((
            type_name.to_owned(),
            target_subtype(type_name, members, Side::Response),
        ));
        components.push((
            format!("{type_name}{INPUT_SUFFIX}"),
            target_subtype(type_name, members, Side::Request),
        ));
    }
    components
}

/// A reference to the component schema `name`.
pub fn reference(name: &str) -> RefOr<Schema> {
    Ref::from_schema_name(name).into()
}

/// A plain string.
pub fn string() -> ObjectBuilder {
    Object::builder().schema_type(Type::String)
}

/// A string that is one of `members`.
pub fn string_enum<const N: usize>(members: [&str; N]) -> ObjectBuilder {
    string().enum_values(Some(members))
}

/// A hyphenated GUID.
pub fn guid() -> ObjectBuilder {
    string()
        .format(Some(SchemaFormat::Custom("uuid".to_owned())))
        .pattern(Some(GUID_PATTERN))
}

/// The entity as rendered. `complete`: every property required (creates, updates); otherwise
/// only `@odata.type` and `id`, which a `$select` always keeps.
fn partner_response(complete: bool) -> RefOr<Schema> {
    let mut object = Object::builder()
        .property(
            "@odata.context",
            string().description(Some(
                "The context URL; present on a single entity, absent on the items of a list.",
            )),
        )
        .property(
            "@odata.type",
            string_enum([odata::qualified(odata::PARTNER_TYPE).as_str()]),
        )
        .required("@odata.type")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for (name, schema) in partner_properties(Side::Response) {
        if complete || name == "id" {
            object = object.required(&name);
        }
        object = object.property(name, schema);
    }
    let description = if complete {
        "A compliance partner as the service answers with it: every property, always."
    } else {
        "A compliance partner as a read answers with it: every property, unless `$select` \
         names some, and then those plus `@odata.type` and `id`. JSON Schema cannot tie the \
         members present to the `$select` of the request, so only those two are required."
    };
    object.description(Some(description)).into()
}

/// The entity as accepted. `create`: `displayName` is required and a client `id` is ignored;
/// otherwise (PATCH) every property is optional and an `id` must be the key.
fn partner_request(create: bool) -> RefOr<Schema> {
    let mut names = vec!["@odata.type"];
    names.extend(PARTNER_PROPERTIES);
    let mut object = Object::builder()
        .property(
            "@odata.type",
            type_annotation(odata::PARTNER_TYPE).description(Some(
                "Optional; with or without '#', any letter case; null means the declared type.",
            )),
        )
        .property_names(Some(member_names(&names)));
    for (name, schema) in partner_properties(Side::Request) {
        object = object.property(name, schema);
    }
    let description = if create {
        object = object.required("displayName");
        "A compliance partner to create. Properties left out take Graph's defaults: \
         `partnerState` `unknown`, booleans `false`, collections empty, \
         `lastHeartbeatDateTime` `0001-01-01T00:00:00Z`. A client `id` is ignored. \
         Other `@odata.*` annotations are ignored; any other member is refused with 400. \
         One platform may not list the same target twice (400)."
    } else {
        "The properties to change. Each property present replaces the stored one, a \
         collection wholesale (null reads as empty); absent ones stay. An `id` must be the \
         id in the URL (400 otherwise). Other `@odata.*` annotations are ignored; any other \
         member is refused with 400. One platform may not list the same target twice (400)."
    };
    object.description(Some(description)).into()
}

/// Every declared property of the entity with its schema, in [`PARTNER_PROPERTIES`]' order.
fn partner_properties(side: Side) -> Vec<(String, RefOr<Schema>)> {
    let mut properties = vec![
        ("id".to_owned(), id_property(side)),
        ("displayName".to_owned(), display_name_property(side)),
        ("lastHeartbeatDateTime".to_owned(), heartbeat_property(side)),
        ("partnerState".to_owned(), reference(PARTNER_STATE)),
    ];
    for platform in Platform::ALL {
        properties.push((
            format!("{}Onboarded", platform.property_prefix()),
            Object::with_type(Type::Boolean).into(),
        ));
    }
    for platform in Platform::ALL {
        let assignments = match side {
            Side::Response => Array::new(reference(ASSIGNMENT)).into(),
            Side::Request => Array::builder()
                .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
                .items(reference(ASSIGNMENT_INPUT))
                .description(Some(
                    "Replaces the platform's assignments; null reads as empty. No target twice.",
                ))
                .into(),
        };
        properties.push((
            format!("{}EnrollmentAssignments", platform.property_prefix()),
            assignments,
        ));
    }
    properties
}

fn id_property(side: Side) -> RefOr<Schema> {
    match side {
        Side::Response => guid()
            .description(Some("The partner's id, assigned by the service."))
            .into(),
        Side::Request => nullable_string(string())
            .description(Some(
                "Ignored by a create; an update refuses an id other than the one in the URL.",
            ))
            .into(),
    }
}

fn display_name_property(side: Side) -> RefOr<Schema> {
    match side {
        Side::Response => string().into(),
        Side::Request => string()
            .min_length(Some(1))
            .max_length(Some(DISPLAY_NAME_MAX_CHARS))
            .pattern(Some(VISIBLE_TEXT_PATTERN))
            .description(Some(
                "Trimmed, then 1 to 256 characters without control characters; unique per \
                 tenant, compared trimmed and case-insensitively (409 when taken). White space \
                 around the name does not count towards the 256, which JSON Schema cannot say.",
            ))
            .into(),
    }
}

fn heartbeat_property(side: Side) -> RefOr<Schema> {
    let date_time = string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)));
    match side {
        Side::Response => date_time
            .pattern(Some(RENDERED_DATE_TIME))
            .description(Some("UTC with seven fractional digits and `Z`."))
            .into(),
        Side::Request => date_time
            .description(Some(
                "RFC 3339 with an offset (`Z` or `±hh:mm`) and any number of fractional digits \
                 (kept to seven); years 0001 to 9999 in UTC; no later than five minutes from \
                 now (400 otherwise).",
            ))
            .into(),
    }
}

/// One `complianceManagementPartnerAssignment`.
fn assignment(side: Side) -> RefOr<Schema> {
    match side {
        Side::Response => Object::builder()
            .property(
                "@odata.type",
                string_enum([odata::qualified(odata::ASSIGNMENT_TYPE).as_str()]),
            )
            .property("target", reference(TARGET))
            .required("@odata.type")
            .required("target")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into(),
        Side::Request => Object::builder()
            .property(
                "@odata.type",
                type_annotation(odata::ASSIGNMENT_TYPE)
                    .description(Some("Optional; with or without '#', any letter case.")),
            )
            .property(
                "id",
                Object::builder()
                    .schema_type(SchemaType::AnyValue)
                    .description(Some(
                        "Ignored: assignments have no key, some clients echo one.",
                    )),
            )
            .property("target", reference(TARGET_INPUT))
            .required("target")
            .property_names(Some(member_names(&["@odata.type", "id", "target"])))
            .description(Some(
                "An enrollment assignment. Other `@odata.*` annotations are ignored; any other \
                 member is refused with 400.",
            ))
            .into(),
    }
}

/// The target as one of its seven subtypes, told apart by `@odata.type`.
fn target_family(side: Side) -> RefOr<Schema> {
    let suffix = match side {
        Side::Response => "",
        Side::Request => INPUT_SUFFIX,
    };
    let mut one_of = OneOf::builder();
    let mut discriminator = Discriminator::new("@odata.type");
    for (type_name, _) in TARGET_TYPES {
        let component = format!("{type_name}{suffix}");
        discriminator.mapping.insert(
            odata::qualified(type_name),
            format!("#/components/schemas/{component}"),
        );
        one_of = one_of.item(reference(&component));
    }
    let description = match side {
        Side::Response => "The target of an assignment; `@odata.type` names the subtype.",
        Side::Request => {
            "The target of an assignment; `@odata.type` is required and names one of the seven \
             subtypes, with or without '#', in any letter case (the mapping lists the canonical \
             form only)."
        }
    };
    one_of
        .discriminator(Some(discriminator))
        .description(Some(description))
        .into()
}

/// One target subtype: the base members (filter id and type) plus its own.
fn target_subtype(type_name: &str, members: &[TargetMember], side: Side) -> RefOr<Schema> {
    let mut names = vec!["@odata.type", FILTER_ID, FILTER_TYPE];
    names.extend(members.iter().map(|member| member.name()));
    let mut object = Object::builder()
        .property("@odata.type", target_type_name(type_name, side))
        .required("@odata.type");
    object = match side {
        Side::Response => object
            .property(FILTER_ID, nullable_string(string()))
            .property(FILTER_TYPE, reference(FILTER_TYPE_ENUM))
            .required(FILTER_ID)
            .required(FILTER_TYPE)
            .additional_properties(Some(AdditionalProperties::FreeForm(false))),
        Side::Request => object
            .property(FILTER_ID, nullable_string(text_id()))
            .property(FILTER_TYPE, nullable_reference(FILTER_TYPE_ENUM))
            .property_names(Some(member_names(&names))),
    };
    for member in members {
        object = object.property(member.name(), target_member(*member, side));
        // Every own member is rendered; on input only the target type may be left out.
        if side == Side::Response || *member != TargetMember::TargetType {
            object = object.required(member.name());
        }
    }
    let description = format!(
        "`microsoft.graph.{type_name}`. The filter type defaults to `none`; `include` and \
         `exclude` need a filter id and `none` carries none (400 otherwise).{}",
        match side {
            Side::Response => "",
            Side::Request =>
                " Other `@odata.*` annotations are ignored; any other member is refused.",
        }
    );
    object.description(Some(description)).into()
}

/// The `@odata.type` of a target subtype: exactly `#microsoft.graph.<name>` when rendered,
/// any accepted spelling on input.
fn target_type_name(type_name: &str, side: Side) -> ObjectBuilder {
    match side {
        Side::Response => string_enum([odata::qualified(type_name).as_str()]),
        Side::Request => string().pattern(Some(type_pattern(type_name))),
    }
}

/// The schema of a target subtype's own member.
fn target_member(member: TargetMember, side: Side) -> RefOr<Schema> {
    match (member, side) {
        (TargetMember::CollectionId, Side::Response) => string().into(),
        (TargetMember::CollectionId, Side::Request) => text_id().into(),
        (TargetMember::GroupId | TargetMember::EntraObjectId, _) => guid().into(),
        (TargetMember::TargetType, Side::Response) => reference(SCOPE_TAG_TARGET_TYPE),
        (TargetMember::TargetType, Side::Request) => nullable_reference(SCOPE_TAG_TARGET_TYPE),
    }
}

/// A free-text id (collection id, filter id): not blank, at most 256 characters, no control
/// characters.
fn text_id() -> ObjectBuilder {
    string()
        .min_length(Some(1))
        .max_length(Some(TEXT_ID_MAX_CHARS))
        .pattern(Some(VISIBLE_TEXT_PATTERN))
        .description(Some(
            "Not blank, at most 256 characters, no control characters; kept as given.",
        ))
}

/// An entity or assignment `@odata.type` as accepted: null, or the type's name with or
/// without `#`, in any letter case.
fn type_annotation(type_name: &str) -> ObjectBuilder {
    nullable_string(string()).pattern(Some(type_pattern(type_name)))
}

/// A regular expression matching `microsoft.graph.<type_name>` with an optional `#`, in any
/// letter case (JSON Schema patterns have no case-insensitive flag, so each letter is a class).
pub fn type_pattern(type_name: &str) -> String {
    let mut pattern = String::from("^#?");
    for character in odata::NAMESPACE.chars().chain(type_name.chars()) {
        if character.is_ascii_alphabetic() {
            pattern.push('[');
            pattern.push(character.to_ascii_lowercase());
            pattern.push(character.to_ascii_uppercase());
            pattern.push(']');
        } else if character == '.' {
            pattern.push_str(r"\.");
        } else {
            pattern.push(character);
        }
    }
    pattern.push('$');
    pattern
}

/// The member names an object accepts: `names`, plus any OData control annotation
/// (`@odata.context`, `displayName@odata.type`, ...), which the parser ignores.
fn member_names(names: &[&str]) -> Schema {
    AnyOf::builder()
        .item(string_enum_of(names))
        .item(string().pattern(Some(r"^[^@]*@odata\.")))
        .build()
        .into()
}

fn string_enum_of(members: &[&str]) -> ObjectBuilder {
    string().enum_values(Some(members.iter().copied()))
}

/// `builder`'s schema, admitting null as well as a string.
fn nullable_string(builder: ObjectBuilder) -> ObjectBuilder {
    builder.schema_type(SchemaType::from_iter([Type::String, Type::Null]))
}

/// The component `name`, or null.
fn nullable_reference(name: &str) -> RefOr<Schema> {
    OneOf::builder()
        .item(reference(name))
        .item(Object::with_type(Type::Null))
        .into()
}

#[cfg(test)]
mod tests;
