//! Enrollment assignments and their targets: the closed set of Graph's
//! `deviceAndAppManagementAssignmentTarget` subtypes a partner assignment may point at.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::id::parse_hyphenated_guid;

/// The longest free-text identifier (collection id, filter id) accepted, in characters.
pub const TEXT_ID_MAX_CHARS: usize = 256;

/// One entry of a platform's enrollment assignments: Graph's
/// `complianceManagementPartnerAssignment`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    target: AssignmentTarget,
}

impl Assignment {
    /// An assignment of the given target.
    pub fn new(target: AssignmentTarget) -> Self {
        Self { target }
    }

    /// What the assignment targets.
    pub fn target(&self) -> &AssignmentTarget {
        &self.target
    }
}

/// A target with its assignment filter: Graph's `deviceAndAppManagementAssignmentTarget`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentTarget {
    kind: TargetKind,
    filter: AssignmentFilter,
}

impl AssignmentTarget {
    /// A target of `kind` narrowed by `filter`.
    pub fn new(kind: TargetKind, filter: AssignmentFilter) -> Self {
        Self { kind, filter }
    }

    /// Which subtype, with its own fields.
    pub fn kind(&self) -> &TargetKind {
        &self.kind
    }

    /// The assignment filter, shared by every subtype.
    pub fn filter(&self) -> &AssignmentFilter {
        &self.filter
    }

    /// Whether `self` and `other` target the same thing, whatever their filters say. One
    /// platform may not list the same target twice.
    pub fn same_target_as(&self, other: &AssignmentTarget) -> bool {
        self.identity() == other.identity()
    }

    /// What makes this target the same as another: equal identities, same target.
    pub(crate) fn identity(&self) -> TargetIdentity<'_> {
        self.kind.identity()
    }
}

/// The seven target subtypes the wire contract accepts (`docs/wire-contract.md`), each with
/// its own fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// `allDevicesAssignmentTarget`.
    AllDevices,
    /// `allLicensedUsersAssignmentTarget`.
    AllLicensedUsers,
    /// `configurationManagerCollectionAssignmentTarget`.
    ConfigurationManagerCollection {
        /// The Configuration Manager collection, e.g. `SMS00001`.
        collection_id: TextId,
    },
    /// `groupAssignmentTarget`.
    Group {
        /// The Entra ID group.
        group_id: EntityGuid,
    },
    /// `exclusionGroupAssignmentTarget`.
    ExclusionGroup {
        /// The Entra ID group excluded.
        group_id: EntityGuid,
    },
    /// `scopeTagGroupAssignmentTarget`.
    ScopeTagGroup {
        /// Whether the group is of users or of devices.
        target_type: ScopeTagTargetType,
        /// The Entra ID object (group) the scope tag applies to.
        entra_object_id: EntityGuid,
    },
    /// `androidFotaDeploymentAssignmentTarget`.
    AndroidFotaDeployment {
        /// The Entra ID group.
        group_id: EntityGuid,
    },
}

/// What makes two targets "the same" within one platform: the subtype plus its id.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) enum TargetIdentity<'a> {
    AllDevices,
    AllLicensedUsers,
    Collection(&'a str),
    Group(Uuid),
    ExclusionGroup(Uuid),
    ScopeTagGroup(ScopeTagTargetType, Uuid),
    AndroidFota(Uuid),
}

impl TargetKind {
    /// Graph's type name without namespace, e.g. `groupAssignmentTarget`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::AllDevices => "allDevicesAssignmentTarget",
            Self::AllLicensedUsers => "allLicensedUsersAssignmentTarget",
            Self::ConfigurationManagerCollection { .. } => {
                "configurationManagerCollectionAssignmentTarget"
            }
            Self::Group { .. } => "groupAssignmentTarget",
            Self::ExclusionGroup { .. } => "exclusionGroupAssignmentTarget",
            Self::ScopeTagGroup { .. } => "scopeTagGroupAssignmentTarget",
            Self::AndroidFotaDeployment { .. } => "androidFotaDeploymentAssignmentTarget",
        }
    }

    fn identity(&self) -> TargetIdentity<'_> {
        match self {
            Self::AllDevices => TargetIdentity::AllDevices,
            Self::AllLicensedUsers => TargetIdentity::AllLicensedUsers,
            Self::ConfigurationManagerCollection { collection_id } => {
                TargetIdentity::Collection(collection_id.as_str())
            }
            Self::Group { group_id } => TargetIdentity::Group(group_id.as_uuid()),
            Self::ExclusionGroup { group_id } => TargetIdentity::ExclusionGroup(group_id.as_uuid()),
            Self::ScopeTagGroup {
                target_type,
                entra_object_id,
            } => TargetIdentity::ScopeTagGroup(*target_type, entra_object_id.as_uuid()),
            Self::AndroidFotaDeployment { group_id } => {
                TargetIdentity::AndroidFota(group_id.as_uuid())
            }
        }
    }
}

/// Graph's assignment filter: `deviceAndAppManagementAssignmentFilterType` plus
/// `deviceAndAppManagementAssignmentFilterId`. `include`/`exclude` need a filter id and
/// `none` carries none; the enum makes any other combination unrepresentable.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AssignmentFilter {
    /// `none`: no filter, no filter id.
    #[default]
    None,
    /// `include`: only devices the filter matches.
    Include(TextId),
    /// `exclude`: all but the devices the filter matches.
    Exclude(TextId),
}

/// Why a filter type and filter id do not go together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentFilterError {
    /// `include` or `exclude` without a filter id.
    #[error("filter type '{filter_type}' needs a deviceAndAppManagementAssignmentFilterId")]
    MissingFilterId {
        /// The filter type given.
        filter_type: &'static str,
    },
    /// `none` with a filter id.
    #[error("filter type 'none' must not carry a deviceAndAppManagementAssignmentFilterId")]
    UnexpectedFilterId,
    /// A filter type other than `none`, `include`, `exclude`.
    #[error("'{0}' is not a filter type; expected one of none, include, exclude")]
    UnknownType(String),
    /// The filter id itself is not acceptable.
    #[error("deviceAndAppManagementAssignmentFilterId: {0}")]
    BadFilterId(#[from] TextIdError),
}

impl AssignmentFilter {
    /// Graph's filter type names (`deviceAndAppManagementAssignmentFilterType`), `none` first.
    pub const TYPE_NAMES: [&'static str; 3] = ["none", "include", "exclude"];

    /// Builds the filter from Graph's two properties; an absent filter type means `none`.
    ///
    /// # Errors
    /// [`AssignmentFilterError`] for an unknown type, or a filter id that does not fit it.
    pub fn parse(
        filter_type: Option<&str>,
        filter_id: Option<&str>,
    ) -> Result<Self, AssignmentFilterError> {
        let id = filter_id.map(TextId::parse).transpose()?;
        match (filter_type.unwrap_or("none"), id) {
            ("none", None) => Ok(Self::None),
            ("none", Some(_)) => Err(AssignmentFilterError::UnexpectedFilterId),
            ("include", Some(id)) => Ok(Self::Include(id)),
            ("exclude", Some(id)) => Ok(Self::Exclude(id)),
            ("include", None) => Err(AssignmentFilterError::MissingFilterId {
                filter_type: "include",
            }),
            ("exclude", None) => Err(AssignmentFilterError::MissingFilterId {
                filter_type: "exclude",
            }),
            (other, _) => Err(AssignmentFilterError::UnknownType(other.to_owned())),
        }
    }

    /// Graph's filter type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Include(_) => "include",
            Self::Exclude(_) => "exclude",
        }
    }

    /// The filter id, for `include` and `exclude`.
    pub fn filter_id(&self) -> Option<&TextId> {
        match self {
            Self::None => None,
            Self::Include(id) | Self::Exclude(id) => Some(id),
        }
    }
}

/// A free-text identifier such as a Configuration Manager collection id or an assignment
/// filter id: not blank, at most 256 characters, no control characters. Graph does not
/// promise these are GUIDs (collection ids look like `SMS00001`), so only the shape is checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TextId(String);

/// Why a free-text identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextIdError {
    /// Empty or only whitespace.
    #[error("must not be empty")]
    Empty,
    /// Longer than [`TEXT_ID_MAX_CHARS`].
    #[error("must be at most {max} characters, got {actual}")]
    TooLong {
        /// The limit.
        max: usize,
        /// The length received.
        actual: usize,
    },
    /// Holds a control character.
    #[error("must not contain control characters")]
    ControlCharacter,
}

impl TextId {
    /// Checks `text`; it is kept exactly as given (no trimming: it is somebody else's key).
    ///
    /// # Errors
    /// [`TextIdError`] when blank, too long or holding a control character.
    pub fn parse(text: &str) -> Result<Self, TextIdError> {
        if text.trim().is_empty() {
            return Err(TextIdError::Empty);
        }
        let actual = text.chars().count();
        if actual > TEXT_ID_MAX_CHARS {
            return Err(TextIdError::TooLong {
                max: TEXT_ID_MAX_CHARS,
                actual,
            });
        }
        if text.chars().any(char::is_control) {
            return Err(TextIdError::ControlCharacter);
        }
        Ok(Self(text.to_owned()))
    }

    /// The identifier as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TextId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of an Entra ID object (a group): a GUID in its hyphenated form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntityGuid(Uuid);

/// The text is not a hyphenated GUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a GUID")]
pub struct EntityGuidError(pub String);

impl EntityGuid {
    /// Parses the hyphenated GUID form, any letter case.
    ///
    /// # Errors
    /// [`EntityGuidError`] for any other text.
    pub fn parse(text: &str) -> Result<Self, EntityGuidError> {
        parse_hyphenated_guid(text)
            .map(Self)
            .ok_or_else(|| EntityGuidError(text.to_owned()))
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for EntityGuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Graph's `scopeTagTargetType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ScopeTagTargetType {
    /// `none`.
    #[default]
    None,
    /// `user`.
    User,
    /// `device`.
    Device,
    /// `unknownFutureValue`: Graph's evolvable-enum sentinel, declared for this enum.
    UnknownFutureValue,
}

/// The text is not a scope tag target type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{0}' is not a scope tag target type; expected one of none, user, device, unknownFutureValue"
)]
pub struct ScopeTagTargetTypeError(pub String);

impl ScopeTagTargetType {
    /// Every member in declaration order.
    pub const ALL: [ScopeTagTargetType; 4] = [
        Self::None,
        Self::User,
        Self::Device,
        Self::UnknownFutureValue,
    ];

    /// Graph's member name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::User => "user",
            Self::Device => "device",
            Self::UnknownFutureValue => "unknownFutureValue",
        }
    }
}

impl FromStr for ScopeTagTargetType {
    type Err = ScopeTagTargetTypeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == text)
            .ok_or_else(|| ScopeTagTargetTypeError(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> TextId {
        TextId::parse(s).expect("valid text id")
    }

    fn guid(s: &str) -> EntityGuid {
        EntityGuid::parse(s).expect("valid guid")
    }

    #[test]
    fn the_type_names_are_the_names_each_filter_renders() {
        let filters = [
            AssignmentFilter::None,
            AssignmentFilter::Include(text("f1")),
            AssignmentFilter::Exclude(text("f1")),
        ];

        let names: Vec<_> = filters.iter().map(AssignmentFilter::type_name).collect();

        assert_eq!(names, AssignmentFilter::TYPE_NAMES);
    }

    #[test]
    fn include_and_exclude_need_a_filter_id_and_none_carries_none() {
        assert_eq!(
            AssignmentFilter::parse(None, None),
            Ok(AssignmentFilter::None)
        );
        assert_eq!(
            AssignmentFilter::parse(Some("none"), None),
            Ok(AssignmentFilter::None)
        );
        assert_eq!(
            AssignmentFilter::parse(Some("include"), Some("f1")),
            Ok(AssignmentFilter::Include(text("f1")))
        );
        assert_eq!(
            AssignmentFilter::parse(Some("exclude"), Some("f1")),
            Ok(AssignmentFilter::Exclude(text("f1")))
        );
        assert_eq!(
            AssignmentFilter::parse(Some("include"), None),
            Err(AssignmentFilterError::MissingFilterId {
                filter_type: "include"
            })
        );
        assert_eq!(
            AssignmentFilter::parse(Some("exclude"), None),
            Err(AssignmentFilterError::MissingFilterId {
                filter_type: "exclude"
            })
        );
        assert_eq!(
            AssignmentFilter::parse(Some("none"), Some("f1")),
            Err(AssignmentFilterError::UnexpectedFilterId)
        );
        assert_eq!(
            AssignmentFilter::parse(None, Some("f1")),
            Err(AssignmentFilterError::UnexpectedFilterId)
        );
        assert_eq!(
            AssignmentFilter::parse(Some("Include"), Some("f1")),
            Err(AssignmentFilterError::UnknownType("Include".into()))
        );
        assert_eq!(
            AssignmentFilter::parse(Some("include"), Some("  ")),
            Err(AssignmentFilterError::BadFilterId(TextIdError::Empty))
        );
    }

    #[test]
    fn group_based_targets_need_a_guid() {
        assert!(EntityGuid::parse("0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11").is_ok());
        for bad in [
            "",
            "group-1",
            "0b9d3c2e4f1a4c6e9a772f6c1d0e8b11",
            "{0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11}",
        ] {
            assert_eq!(
                EntityGuid::parse(bad),
                Err(EntityGuidError(bad.into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_collection_target_needs_a_non_empty_id() {
        assert_eq!(TextId::parse(""), Err(TextIdError::Empty));
        assert_eq!(TextId::parse("   "), Err(TextIdError::Empty));
        assert_eq!(
            TextId::parse(&"x".repeat(257)),
            Err(TextIdError::TooLong {
                max: 256,
                actual: 257
            })
        );
        assert_eq!(
            TextId::parse("SMS\u{7}1"),
            Err(TextIdError::ControlCharacter)
        );
        assert_eq!(text("SMS00001").as_str(), "SMS00001");
    }

    #[test]
    fn sameness_ignores_the_filter_but_not_the_id() {
        let g1 = "0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11";
        let g2 = "6f2c1a55-0000-4000-8000-000000000002";
        let group = |g: &str, filter| {
            AssignmentTarget::new(TargetKind::Group { group_id: guid(g) }, filter)
        };
        assert!(
            group(g1, AssignmentFilter::None)
                .same_target_as(&group(g1, AssignmentFilter::Include(text("f"))))
        );
        assert!(
            !group(g1, AssignmentFilter::None).same_target_as(&group(g2, AssignmentFilter::None))
        );
        let exclusion = AssignmentTarget::new(
            TargetKind::ExclusionGroup { group_id: guid(g1) },
            AssignmentFilter::None,
        );
        assert!(!group(g1, AssignmentFilter::None).same_target_as(&exclusion));
        let all = AssignmentTarget::new(TargetKind::AllDevices, AssignmentFilter::None);
        assert!(all.same_target_as(&AssignmentTarget::new(
            TargetKind::AllDevices,
            AssignmentFilter::Exclude(text("f"))
        )));
    }

    #[test]
    fn scope_tag_target_type_names_round_trip() {
        for t in [
            ScopeTagTargetType::None,
            ScopeTagTargetType::User,
            ScopeTagTargetType::Device,
            ScopeTagTargetType::UnknownFutureValue,
        ] {
            assert_eq!(t.as_str().parse::<ScopeTagTargetType>(), Ok(t));
        }
        assert!("User".parse::<ScopeTagTargetType>().is_err());
    }
}
