//! Assignments and their targets on the wire (`docs/wire-contract.md`, "Assignments").

use cmp_domain::{
    Assignment, AssignmentFilter, AssignmentTarget, EntityGuid, ScopeTagTargetType, TargetKind,
    TextId,
};
use serde::Serialize;
use serde_json::Value;

use crate::odata;
use crate::wire::{
    WireError, expect_object, expect_type, optional_string, type_mismatch, unknown_property,
};

/// The base member naming an assignment filter.
pub(crate) const FILTER_ID: &str = "deviceAndAppManagementAssignmentFilterId";

/// The base member saying how the filter applies.
pub(crate) const FILTER_TYPE: &str = "deviceAndAppManagementAssignmentFilterType";

/// A member a target subtype declares beyond the base two, and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetMember {
    /// `collectionId`: a Configuration Manager collection id (free text).
    CollectionId,
    /// `groupId`: an Entra ID group (GUID).
    GroupId,
    /// `targetType`: a `scopeTagTargetType`, `none` when absent.
    TargetType,
    /// `entraObjectId`: an Entra ID object (GUID).
    EntraObjectId,
}

impl TargetMember {
    /// The JSON member name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::CollectionId => "collectionId",
            Self::GroupId => "groupId",
            Self::TargetType => "targetType",
            Self::EntraObjectId => "entraObjectId",
        }
    }
}

/// The target subtypes a request may name, with the members of each beyond the base two. The
/// parser, the renderer's type names and the OpenAPI schemas all read this one table.
pub(crate) const TARGET_TYPES: [(&str, &[TargetMember]); 7] = [
    ("allDevicesAssignmentTarget", &[]),
    ("allLicensedUsersAssignmentTarget", &[]),
    (
        "configurationManagerCollectionAssignmentTarget",
        &[TargetMember::CollectionId],
    ),
    ("groupAssignmentTarget", &[TargetMember::GroupId]),
    ("exclusionGroupAssignmentTarget", &[TargetMember::GroupId]),
    (
        "scopeTagGroupAssignmentTarget",
        &[TargetMember::TargetType, TargetMember::EntraObjectId],
    ),
    (
        "androidFotaDeploymentAssignmentTarget",
        &[TargetMember::GroupId],
    ),
];

/// Parses one `complianceManagementPartnerAssignment` found at `path`.
pub(crate) fn parse_assignment(value: &Value, path: &str) -> Result<Assignment, WireError> {
    let object = expect_object(value, path)?;
    let mut target = None;
    for (key, member) in object {
        match key.as_str() {
            "target" => target = Some(member),
            "@odata.type" => expect_type(
                member,
                &format!("{path}.@odata.type"),
                odata::ASSIGNMENT_TYPE,
            )?,
            // Graph's assignment has no key, but some clients echo an `id`; it carries nothing.
            "id" => {}
            key if odata::is_ignored_annotation(key) => {}
            key => return Err(unknown_property(path, key, odata::ASSIGNMENT_TYPE)),
        }
    }
    match target {
        None | Some(Value::Null) => Err(WireError::new(
            format!("{path}.target"),
            "target is required",
        )),
        Some(target) => Ok(Assignment::new(parse_target(
            target,
            &format!("{path}.target"),
        )?)),
    }
}

fn parse_target(value: &Value, path: &str) -> Result<AssignmentTarget, WireError> {
    let object = expect_object(value, path)?;
    let type_path = format!("{path}.@odata.type");
    let type_value = match object.get("@odata.type") {
        None | Some(Value::Null) => {
            return Err(WireError::new(
                type_path,
                "@odata.type is required on a target, e.g. #microsoft.graph.groupAssignmentTarget",
            ));
        }
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(type_mismatch(&type_path, "a string", other)),
    };
    let (type_name, own_properties) = odata::short_type_name(type_value)
        .and_then(|name| {
            TARGET_TYPES
                .iter()
                .find(|(known, _)| known.eq_ignore_ascii_case(name))
        })
        .copied()
        .ok_or_else(|| {
            WireError::new(
                type_path.clone(),
                format!("'{type_value}' is not an assignment target type this resource accepts"),
            )
        })?;

    for key in object.keys() {
        let known = key == "@odata.type"
            || key == FILTER_ID
            || key == FILTER_TYPE
            || own_properties.iter().any(|member| member.name() == key);
        if !known && !odata::is_ignored_annotation(key) {
            return Err(unknown_property(path, key, type_name));
        }
    }

    let filter_type = optional_string(object, FILTER_TYPE, path)?;
    let filter_id = optional_string(object, FILTER_ID, path)?;
    let filter = AssignmentFilter::parse(filter_type, filter_id).map_err(|e| {
        let member = if filter_type.is_some_and(|t| !AssignmentFilter::TYPE_NAMES.contains(&t)) {
            FILTER_TYPE
        } else {
            FILTER_ID
        };
        WireError::new(format!("{path}.{member}"), e.to_string())
    })?;

    let group_id = |name: &str| -> Result<EntityGuid, WireError> {
        let member_path = format!("{path}.{name}");
        let text = optional_string(object, name, path)?.ok_or_else(|| {
            WireError::new(
                member_path.clone(),
                format!("{name} is required on a {type_name}"),
            )
        })?;
        EntityGuid::parse(text).map_err(|e| WireError::new(member_path, e.to_string()))
    };
    let kind = match type_name {
        "allDevicesAssignmentTarget" => TargetKind::AllDevices,
        "allLicensedUsersAssignmentTarget" => TargetKind::AllLicensedUsers,
        "configurationManagerCollectionAssignmentTarget" => {
            let member_path = format!("{path}.collectionId");
            let text = optional_string(object, "collectionId", path)?.ok_or_else(|| {
                WireError::new(
                    member_path.clone(),
                    format!("collectionId is required on a {type_name}"),
                )
            })?;
            let collection_id = TextId::parse(text)
                .map_err(|e| WireError::new(member_path, format!("collectionId {e}")))?;
            TargetKind::ConfigurationManagerCollection { collection_id }
        }
        "groupAssignmentTarget" => TargetKind::Group {
            group_id: group_id("groupId")?,
        },
        "exclusionGroupAssignmentTarget" => TargetKind::ExclusionGroup {
            group_id: group_id("groupId")?,
        },
        "androidFotaDeploymentAssignmentTarget" => TargetKind::AndroidFotaDeployment {
            group_id: group_id("groupId")?,
        },
        "scopeTagGroupAssignmentTarget" => {
            let target_type = match optional_string(object, "targetType", path)? {
                None => ScopeTagTargetType::default(),
                Some(text) => text
                    .parse()
                    .map_err(|e: cmp_domain::ScopeTagTargetTypeError| {
                        WireError::new(format!("{path}.targetType"), e.to_string())
                    })?,
            };
            TargetKind::ScopeTagGroup {
                target_type,
                entra_object_id: group_id("entraObjectId")?,
            }
        }
        // TARGET_TYPES lists exactly the names matched above.
        other => {
            return Err(WireError::new(
                type_path,
                format!("'{other}' is not supported"),
            ));
        }
    };
    Ok(AssignmentTarget::new(kind, filter))
}

/// One assignment as Graph renders it.
#[derive(Debug, Serialize)]
pub struct AssignmentJson {
    #[serde(rename = "@odata.type")]
    odata_type: String,
    target: TargetJson,
}

/// One target as Graph renders it: base properties, then the subtype's own.
#[derive(Debug, Serialize)]
struct TargetJson {
    #[serde(rename = "@odata.type")]
    odata_type: String,
    #[serde(rename = "deviceAndAppManagementAssignmentFilterId")]
    filter_id: Option<String>,
    #[serde(rename = "deviceAndAppManagementAssignmentFilterType")]
    filter_type: &'static str,
    #[serde(rename = "collectionId", skip_serializing_if = "Option::is_none")]
    collection_id: Option<String>,
    #[serde(rename = "groupId", skip_serializing_if = "Option::is_none")]
    group_id: Option<String>,
    #[serde(rename = "targetType", skip_serializing_if = "Option::is_none")]
    target_type: Option<&'static str>,
    #[serde(rename = "entraObjectId", skip_serializing_if = "Option::is_none")]
    entra_object_id: Option<String>,
}

/// Renders an assignment in Graph's response form.
pub(crate) fn render_assignment(assignment: &Assignment) -> AssignmentJson {
    let target = assignment.target();
    let mut json = TargetJson {
        odata_type: odata::qualified(target.kind().type_name()),
        filter_id: target.filter().filter_id().map(|id| id.as_str().to_owned()),
        filter_type: target.filter().type_name(),
        collection_id: None,
        group_id: None,
        target_type: None,
        entra_object_id: None,
    };
    match target.kind() {
        TargetKind::AllDevices | TargetKind::AllLicensedUsers => {}
        TargetKind::ConfigurationManagerCollection { collection_id } => {
            json.collection_id = Some(collection_id.as_str().to_owned());
        }
        TargetKind::Group { group_id }
        | TargetKind::ExclusionGroup { group_id }
        | TargetKind::AndroidFotaDeployment { group_id } => {
            json.group_id = Some(group_id.to_string())
        }
        TargetKind::ScopeTagGroup {
            target_type,
            entra_object_id,
        } => {
            json.target_type = Some(target_type.as_str());
            json.entra_object_id = Some(entra_object_id.to_string());
        }
    }
    AssignmentJson {
        odata_type: odata::qualified(odata::ASSIGNMENT_TYPE),
        target: json,
    }
}
