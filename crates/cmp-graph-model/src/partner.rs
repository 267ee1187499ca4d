//! The partner entity on the wire: request bodies in, Graph's representation out.

use cmp_domain::{
    DisplayName, NewPartner, Partner, PartnerPatch, PartnerState, PerPlatform, Platform,
    PlatformEnrollment, PlatformPatch, Timestamp,
};
use serde::Serialize;
use serde_json::Value;

use crate::datetime;
use crate::odata;
use crate::target::{AssignmentJson, parse_assignment, render_assignment};
use crate::wire::{
    WireError, expect_object, expect_type, json_kind, type_mismatch, unknown_property,
};

/// The properties a request body set, each parsed into domain values; absent ones are `None`.
/// A create fills the gaps with defaults ([`PartnerFields::into_new_partner`]); an update
/// merges them over the stored partner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartnerFields {
    /// A client-supplied `id`: ignored by create, checked against the key by update.
    pub id: Option<String>,
    /// `displayName`.
    pub display_name: Option<DisplayName>,
    /// `partnerState`.
    pub state: Option<PartnerState>,
    /// `lastHeartbeatDateTime`.
    pub last_heartbeat: Option<Timestamp>,
    /// What the body said about each platform.
    pub platforms: PerPlatform<PlatformPatch>,
}

impl PartnerFields {
    /// Completes the fields into a create command: the display name is required, everything
    /// else defaults as Graph does (`docs/wire-contract.md`, "Properties"), and each platform's
    /// invariants are checked.
    ///
    /// # Errors
    /// [`WireError`] when the display name is missing or a platform breaks an invariant.
    pub fn into_new_partner(self) -> Result<NewPartner, WireError> {
        let display_name = self
            .display_name
            .ok_or_else(|| WireError::new("displayName", "displayName is required"))?;
        let platforms = self.platforms.try_map(|platform, fields| {
            PlatformEnrollment::new(
                fields.onboarded.unwrap_or(false),
                fields.assignments.unwrap_or_default(),
            )
            .map_err(|e| {
                WireError::new(
                    format!("{}EnrollmentAssignments", platform.property_prefix()),
                    e.to_string(),
                )
            })
        })?;
        Ok(NewPartner {
            display_name,
            state: self.state.unwrap_or_default(),
            last_heartbeat: self.last_heartbeat.unwrap_or(Timestamp::MIN),
            platforms,
        })
    }
}

impl PartnerFields {
    /// The fields as an update: each property present replaces the stored one (a collection
    /// wholesale); absent ones stay. An explicit `null` collection reads as empty.
    pub fn into_patch(self) -> PartnerPatch {
        PartnerPatch {
            display_name: self.display_name,
            state: self.state,
            last_heartbeat: self.last_heartbeat,
            platforms: self.platforms,
        }
    }
}

/// Parses a request body (already valid JSON) into the properties it sets.
///
/// Accepts `@odata.type` with `#`, bare or absent; ignores other `@odata.*` annotations;
/// keeps a client `id` aside; refuses any property the entity does not declare, any value of
/// the wrong JSON type, and any value a domain constructor refuses.
///
/// # Errors
/// [`WireError`] naming the first offending member.
pub fn parse_partner_fields(body: &Value) -> Result<PartnerFields, WireError> {
    let object = expect_object(body, "").map_err(|_| {
        WireError::new(
            "",
            format!(
                "the request body must be a JSON object, got {}",
                json_kind(body)
            ),
        )
    })?;
    let mut fields = PartnerFields::default();
    for (key, value) in object {
        match key.as_str() {
            "@odata.type" => expect_type(value, "@odata.type", odata::PARTNER_TYPE)?,
            "id" => match value {
                Value::Null => {}
                Value::String(id) => fields.id = Some(id.clone()),
                other => return Err(type_mismatch("id", "a string", other)),
            },
            "displayName" => {
                let text = required_string(value, "displayName")?;
                fields.display_name = Some(
                    DisplayName::parse(text)
                        .map_err(|e| WireError::new("displayName", e.to_string()))?,
                );
            }
            "partnerState" => {
                let text = required_string(value, "partnerState")?;
                fields.state = Some(text.parse().map_err(|e: cmp_domain::PartnerStateError| {
                    WireError::new("partnerState", e.to_string())
                })?);
            }
            "lastHeartbeatDateTime" => {
                let text = required_string(value, "lastHeartbeatDateTime")?;
                fields.last_heartbeat = Some(
                    datetime::parse(text)
                        .map_err(|e| WireError::new("lastHeartbeatDateTime", e.to_string()))?,
                );
            }
            key if odata::is_ignored_annotation(key) => {}
            key => parse_platform_member(&mut fields, key, value)?,
        }
    }
    Ok(fields)
}

fn parse_platform_member(
    fields: &mut PartnerFields,
    key: &str,
    value: &Value,
) -> Result<(), WireError> {
    for platform in Platform::ALL {
        let Some(suffix) = key.strip_prefix(platform.property_prefix()) else {
            continue;
        };
        let slot = fields.platforms.get_mut(platform);
        match suffix {
            "Onboarded" => {
                slot.onboarded = Some(match value {
                    Value::Bool(flag) => *flag,
                    Value::Null => {
                        return Err(WireError::new(key, format!("{key} must not be null")));
                    }
                    other => return Err(type_mismatch(key, "a boolean", other)),
                });
                return Ok(());
            }
            "EnrollmentAssignments" => {
                let items = match value {
                    Value::Null => Vec::new(),
                    Value::Array(items) => items
                        .iter()
                        .enumerate()
                        .map(|(index, item)| parse_assignment(item, &format!("{key}[{index}]")))
                        .collect::<Result<_, _>>()?,
                    other => return Err(type_mismatch(key, "an array", other)),
                };
                slot.assignments = Some(items);
                return Ok(());
            }
            _ => {}
        }
    }
    Err(unknown_property("", key, odata::PARTNER_TYPE))
}

fn required_string<'a>(value: &'a Value, key: &str) -> Result<&'a str, WireError> {
    match value {
        Value::String(text) => Ok(text),
        Value::Null => Err(WireError::new(key, format!("{key} must not be null"))),
        other => Err(type_mismatch(key, "a string", other)),
    }
}

/// A partner as Graph renders it: every declared property, always, in a stable order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartnerJson {
    #[serde(rename = "@odata.context", skip_serializing_if = "Option::is_none")]
    context: Option<String>,
    #[serde(rename = "@odata.type")]
    odata_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    display_name: String,
    last_heartbeat_date_time: String,
    partner_state: &'static str,
    mac_os_onboarded: bool,
    windows_onboarded: bool,
    android_onboarded: bool,
    ios_onboarded: bool,
    linux_onboarded: bool,
    mac_os_enrollment_assignments: Vec<AssignmentJson>,
    windows_enrollment_assignments: Vec<AssignmentJson>,
    android_enrollment_assignments: Vec<AssignmentJson>,
    ios_enrollment_assignments: Vec<AssignmentJson>,
    linux_enrollment_assignments: Vec<AssignmentJson>,
}

/// Every declared property of the entity, `id` first, in the order the service renders them:
/// what `$select` may name (`docs/wire-contract.md`, "Properties").
pub const PARTNER_PROPERTIES: [&str; 14] = [
    "id",
    "displayName",
    "lastHeartbeatDateTime",
    "partnerState",
    "macOsOnboarded",
    "windowsOnboarded",
    "androidOnboarded",
    "iosOnboarded",
    "linuxOnboarded",
    "macOsEnrollmentAssignments",
    "windowsEnrollmentAssignments",
    "androidEnrollmentAssignments",
    "iosEnrollmentAssignments",
    "linuxEnrollmentAssignments",
];

/// A partner reduced to some of its properties (`$select`), members in the rendering order.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectedPartner {
    members: Vec<(&'static str, Value)>,
}

impl Serialize for ProjectedPartner {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.members.len()))?;
        for (key, value) in &self.members {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Renders `partner` as [`render_partner`] does, keeping only the properties `keep` accepts;
/// `@odata.context`, `@odata.type` and `id` are always kept, as Graph keeps them.
///
/// # Errors
/// Only if the rendering could not be turned into JSON, which a partner always can.
pub fn render_partner_projected(
    partner: &Partner,
    context: Option<String>,
    keep: impl Fn(&str) -> bool,
) -> Result<ProjectedPartner, serde_json::Error> {
    let mut rendered = match serde_json::to_value(render_partner(partner, context))? {
        Value::Object(map) => map,
        other => {
            return Err(serde::ser::Error::custom(format!(
                "a partner rendered as {} instead of an object",
                json_kind(&other)
            )));
        }
    };
    let always = ["@odata.context", "@odata.type", "id"];
    let members = always
        .into_iter()
        .chain(
            PARTNER_PROPERTIES
                .into_iter()
                .filter(|name| *name != "id" && keep(name)),
        )
        .filter_map(|name| rendered.remove(name).map(|value| (name, value)))
        .collect();
    Ok(ProjectedPartner { members })
}

/// Renders `partner` as our API answers it: with its `id` and, when given, `@odata.context`.
pub fn render_partner(partner: &Partner, context: Option<String>) -> PartnerJson {
    PartnerJson {
        context,
        id: Some(partner.id().to_string()),
        ..render_partner_for_graph(partner)
    }
}

/// Renders `partner` as a create body for Microsoft Graph: no `id` (Graph assigns its own) and
/// no `@odata.context`.
pub fn render_partner_for_graph(partner: &Partner) -> PartnerJson {
    let onboarded = |p| partner.platform(p).onboarded();
    let assignments = |p| {
        partner
            .platform(p)
            .assignments()
            .iter()
            .map(render_assignment)
            .collect()
    };
    PartnerJson {
        context: None,
        odata_type: odata::qualified(odata::PARTNER_TYPE),
        id: None,
        display_name: partner.display_name().as_str().to_owned(),
        last_heartbeat_date_time: datetime::format(partner.last_heartbeat()),
        partner_state: partner.state().as_str(),
        mac_os_onboarded: onboarded(Platform::MacOs),
        windows_onboarded: onboarded(Platform::Windows),
        android_onboarded: onboarded(Platform::Android),
        ios_onboarded: onboarded(Platform::Ios),
        linux_onboarded: onboarded(Platform::Linux),
        mac_os_enrollment_assignments: assignments(Platform::MacOs),
        windows_enrollment_assignments: assignments(Platform::Windows),
        android_enrollment_assignments: assignments(Platform::Android),
        ios_enrollment_assignments: assignments(Platform::Ios),
        linux_enrollment_assignments: assignments(Platform::Linux),
    }
}

#[cfg(test)]
mod tests;
