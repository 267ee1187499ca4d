//! The [`Partner`] aggregate: Graph's `complianceManagementPartner`.

pub mod display_name;
pub mod natural_key;
pub mod platform;
pub mod state;
pub mod target;

use std::time::Duration;

use crate::id::PartnerId;
use crate::time::Timestamp;
use display_name::DisplayName;
use platform::{PerPlatform, Platform, PlatformEnrollment, PlatformPatch, Platforms};
use state::PartnerState;

/// How far past "now" a reported heartbeat may lie: tolerates clock skew between the partner's
/// systems and ours while refusing heartbeats that have plainly not happened yet.
pub const HEARTBEAT_FUTURE_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// A compliance management partner onboarded into a tenant.
///
/// Every value is parsed, so every instance satisfies the invariants: a valid display name,
/// per-platform rules (see [`PlatformEnrollment`]) and, when it was created or changed, a
/// heartbeat not later than five minutes past the clock of that moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partner {
    id: PartnerId,
    display_name: DisplayName,
    state: PartnerState,
    last_heartbeat: Timestamp,
    platforms: Platforms,
}

/// The create command: everything a caller may set, already parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPartner {
    /// Required on create: the natural key.
    pub display_name: DisplayName,
    /// Defaults to [`PartnerState::Unknown`] at the edge when absent.
    pub state: PartnerState,
    /// Defaults to [`Timestamp::MIN`] (Graph's "never") at the edge when absent.
    pub last_heartbeat: Timestamp,
    /// Onboarding and assignments of each platform.
    pub platforms: Platforms,
}

/// An update: every property the caller set, already parsed; `None` leaves a property as it
/// is. A collection present replaces the stored one wholesale (Graph's PATCH semantics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartnerPatch {
    /// New display name.
    pub display_name: Option<DisplayName>,
    /// New partner state.
    pub state: Option<PartnerState>,
    /// New last heartbeat.
    pub last_heartbeat: Option<Timestamp>,
    /// What the patch says about each platform.
    pub platforms: PerPlatform<PlatformPatch>,
}

impl PartnerPatch {
    /// Whether the patch changes nothing at all.
    pub fn is_empty(&self) -> bool {
        self.display_name.is_none()
            && self.state.is_none()
            && self.last_heartbeat.is_none()
            && self.platforms.iter().all(|(_, patch)| patch.is_empty())
    }
}

/// An invariant of the whole aggregate that does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartnerError {
    /// A platform's enrollment breaks its rules once the patch is applied.
    #[error("{platform}EnrollmentAssignments: {error}")]
    Platform {
        /// The platform.
        platform: Platform,
        /// The broken rule.
        error: platform::PlatformEnrollmentError,
    },
    /// The heartbeat lies further in the future than [`HEARTBEAT_FUTURE_TOLERANCE`].
    #[error("lastHeartbeatDateTime must not be later than 5 minutes from now")]
    HeartbeatInFuture {
        /// The heartbeat given.
        heartbeat: Timestamp,
        /// The latest acceptable instant.
        latest_allowed: Timestamp,
    },
}

impl Partner {
    /// Creates a partner from a parsed command, checking the invariants that need the clock.
    ///
    /// # Errors
    /// [`PartnerError::HeartbeatInFuture`] when the heartbeat is more than five minutes past `now`.
    pub fn create(
        id: PartnerId,
        command: NewPartner,
        now: Timestamp,
    ) -> Result<Self, PartnerError> {
        check_heartbeat(command.last_heartbeat, now)?;
        Ok(Self {
            id,
            display_name: command.display_name,
            state: command.state,
            last_heartbeat: command.last_heartbeat,
            platforms: command.platforms,
        })
    }

    /// Rebuilds a partner from storage. The stored values passed every check when written; the
    /// heartbeat rule is not re-applied because "now" has moved on since.
    pub fn restore(id: PartnerId, command: NewPartner) -> Self {
        Self {
            id,
            display_name: command.display_name,
            state: command.state,
            last_heartbeat: command.last_heartbeat,
            platforms: command.platforms,
        }
    }

    /// This partner with `patch` applied, every invariant checked again against `now` (the
    /// heartbeat rule included; name uniqueness is the store's to check).
    ///
    /// # Errors
    /// [`PartnerError`] naming the invariant the result would break.
    pub fn patched(&self, patch: &PartnerPatch, now: Timestamp) -> Result<Partner, PartnerError> {
        let platforms = patch.platforms.clone().try_map(|platform, change| {
            change
                .applied_to(self.platforms.get(platform))
                .map_err(|error| PartnerError::Platform { platform, error })
        })?;
        let command = NewPartner {
            display_name: patch
                .display_name
                .clone()
                .unwrap_or_else(|| self.display_name.clone()),
            state: patch.state.unwrap_or(self.state),
            last_heartbeat: patch.last_heartbeat.unwrap_or(self.last_heartbeat),
            platforms,
        };
        Partner::create(self.id, command, now)
    }

    /// The partner's identity in this service.
    pub fn id(&self) -> PartnerId {
        self.id
    }

    /// The display name (natural key).
    pub fn display_name(&self) -> &DisplayName {
        &self.display_name
    }

    /// The tenant partner state.
    pub fn state(&self) -> PartnerState {
        self.state
    }

    /// The last heartbeat, [`Timestamp::MIN`] when none was ever reported.
    pub fn last_heartbeat(&self) -> Timestamp {
        self.last_heartbeat
    }

    /// All five platforms.
    pub fn platforms(&self) -> &Platforms {
        &self.platforms
    }

    /// One platform's enrollment.
    pub fn platform(&self, platform: Platform) -> &PlatformEnrollment {
        self.platforms.get(platform)
    }
}

fn check_heartbeat(heartbeat: Timestamp, now: Timestamp) -> Result<(), PartnerError> {
    let latest_allowed = now.saturating_add(HEARTBEAT_FUTURE_TOLERANCE);
    if heartbeat > latest_allowed {
        return Err(PartnerError::HeartbeatInFuture {
            heartbeat,
            latest_allowed,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn command(heartbeat: Timestamp) -> NewPartner {
        NewPartner {
            display_name: DisplayName::parse("Contoso").expect("valid"),
            state: PartnerState::Enabled,
            last_heartbeat: heartbeat,
            platforms: Platforms::none(),
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_seconds(seconds, 0).expect("in range")
    }

    #[test]
    fn heartbeat_up_to_five_minutes_ahead_is_accepted() {
        let now = at(1_700_000_000);
        let id = PartnerId::from_uuid(Uuid::nil());
        assert!(Partner::create(id, command(now), now).is_ok());
        assert!(Partner::create(id, command(at(1_700_000_300)), now).is_ok());
        assert!(Partner::create(id, command(Timestamp::MIN), now).is_ok());
    }

    #[test]
    fn heartbeat_more_than_five_minutes_ahead_is_refused() {
        let now = at(1_700_000_000);
        let late = Timestamp::from_unix_seconds(1_700_000_300, 1).expect("in range");
        assert_eq!(
            Partner::create(PartnerId::from_uuid(Uuid::nil()), command(late), now),
            Err(PartnerError::HeartbeatInFuture {
                heartbeat: late,
                latest_allowed: at(1_700_000_300)
            })
        );
    }

    #[test]
    fn a_patch_changes_only_what_it_names_and_rechecks_every_invariant() {
        use crate::partner::target::{Assignment, AssignmentFilter, AssignmentTarget, TargetKind};
        let now = at(1_700_000_000);
        let id = PartnerId::from_uuid(Uuid::from_u128(7));
        let partner = Partner::create(id, command(now), now).expect("valid");
        let all_devices = Assignment::new(AssignmentTarget::new(
            TargetKind::AllDevices,
            AssignmentFilter::None,
        ));

        let renamed = partner
            .patched(
                &PartnerPatch {
                    display_name: Some(DisplayName::parse("Renamed").expect("valid")),
                    ..PartnerPatch::default()
                },
                now,
            )
            .expect("valid");
        let mut onboard_linux = PartnerPatch::default();
        onboard_linux.platforms.set(
            Platform::Linux,
            PlatformPatch {
                onboarded: Some(true),
                assignments: Some(vec![all_devices.clone()]),
            },
        );
        let onboarded = partner.patched(&onboard_linux, now).expect("valid");
        let mut assign_twice = PartnerPatch::default();
        assign_twice.platforms.set(
            Platform::MacOs,
            PlatformPatch {
                onboarded: None,
                assignments: Some(vec![all_devices.clone(), all_devices]),
            },
        );
        let future = PartnerPatch {
            last_heartbeat: Some(at(1_700_001_000)),
            ..PartnerPatch::default()
        };

        assert_eq!(renamed.display_name().as_str(), "Renamed");
        assert_eq!(renamed.state(), partner.state());
        assert_eq!(renamed.id(), id);
        assert_eq!(onboarded.platform(Platform::Linux).assignments().len(), 1);
        assert_eq!(
            partner.patched(&assign_twice, now),
            Err(PartnerError::Platform {
                platform: Platform::MacOs,
                error: platform::PlatformEnrollmentError::DuplicateTarget {
                    first: 0,
                    duplicate: 1
                }
            })
        );
        assert!(matches!(
            partner.patched(&future, now),
            Err(PartnerError::HeartbeatInFuture { .. })
        ));
        assert!(PartnerPatch::default().is_empty());
        assert!(!future.is_empty());
    }

    #[test]
    fn create_keeps_every_value_of_the_command() {
        let now = at(1_700_000_000);
        let id = PartnerId::from_uuid(Uuid::from_u128(7));
        let partner = Partner::create(id, command(now), now).expect("valid");
        assert_eq!(partner.id(), id);
        assert_eq!(partner.display_name().as_str(), "Contoso");
        assert_eq!(partner.state(), PartnerState::Enabled);
        assert_eq!(partner.last_heartbeat(), now);
        assert_eq!(partner.platforms(), &Platforms::none());
    }
}
