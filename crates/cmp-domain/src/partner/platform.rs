//! The five platforms a partner can be onboarded for, each with its enrollment assignments.

use std::fmt;

use super::target::Assignment;

/// A device platform of the partner resource. `Windows` comes from the older beta schema the
/// seed request uses, `Linux` from the current one; the service keeps both (graph-contract §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    /// macOS (`macOs*` properties).
    MacOs,
    /// Windows (`windows*` properties).
    Windows,
    /// Android (`android*` properties).
    Android,
    /// iOS (`ios*` properties).
    Ios,
    /// Linux (`linux*` properties).
    Linux,
}

impl Platform {
    /// Every platform, in the order the service emits them.
    pub const ALL: [Platform; 5] = [
        Self::MacOs,
        Self::Windows,
        Self::Android,
        Self::Ios,
        Self::Linux,
    ];

    /// The property-name prefix Graph uses, e.g. `macOs` in `macOsOnboarded`.
    pub fn property_prefix(&self) -> &'static str {
        match self {
            Self::MacOs => "macOs",
            Self::Windows => "windows",
            Self::Android => "android",
            Self::Ios => "ios",
            Self::Linux => "linux",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.property_prefix())
    }
}

/// Whether a partner is onboarded for one platform, and which users or devices enroll
/// through it. Assignments are kept in the order received.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlatformEnrollment {
    onboarded: bool,
    assignments: Vec<Assignment>,
}

/// Why a platform's enrollment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformEnrollmentError {
    /// Enrollment assignments on a platform the partner is not onboarded for.
    #[error(
        "enrollment assignments need the platform to be onboarded ({count} given while not onboarded)"
    )]
    AssignmentsWithoutOnboarding {
        /// How many assignments were given.
        count: usize,
    },
    /// The same target twice (same subtype and id, whatever the filter).
    #[error("assignment {duplicate} repeats the target of assignment {first}")]
    DuplicateTarget {
        /// Zero-based position of the first occurrence.
        first: usize,
        /// Zero-based position of the repeat.
        duplicate: usize,
    },
}

impl PlatformEnrollment {
    /// Checks the platform invariants: assignments only when onboarded, no target twice.
    ///
    /// # Errors
    /// [`PlatformEnrollmentError`] naming the broken invariant.
    pub fn new(
        onboarded: bool,
        assignments: Vec<Assignment>,
    ) -> Result<Self, PlatformEnrollmentError> {
        if !onboarded && !assignments.is_empty() {
            return Err(PlatformEnrollmentError::AssignmentsWithoutOnboarding {
                count: assignments.len(),
            });
        }
        // Quadratic, but a platform holds a handful of assignments and the HTTP body limit
        // bounds the worst case; a hash set would need the targets to be hashable by identity.
        for (duplicate, later) in assignments.iter().enumerate() {
            if let Some(first) = assignments[..duplicate]
                .iter()
                .position(|earlier| earlier.target().same_target_as(later.target()))
            {
                return Err(PlatformEnrollmentError::DuplicateTarget { first, duplicate });
            }
        }
        Ok(Self {
            onboarded,
            assignments,
        })
    }

    /// Whether the partner is onboarded for this platform.
    pub fn onboarded(&self) -> bool {
        self.onboarded
    }

    /// The enrollment assignments, in the order received.
    pub fn assignments(&self) -> &[Assignment] {
        &self.assignments
    }
}

/// The enrollment of all five platforms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Platforms {
    mac_os: PlatformEnrollment,
    windows: PlatformEnrollment,
    android: PlatformEnrollment,
    ios: PlatformEnrollment,
    linux: PlatformEnrollment,
}

impl Platforms {
    /// Every platform not onboarded, with no assignments.
    pub fn none() -> Self {
        Self::default()
    }

    /// The enrollment of `platform`.
    pub fn get(&self, platform: Platform) -> &PlatformEnrollment {
        match platform {
            Platform::MacOs => &self.mac_os,
            Platform::Windows => &self.windows,
            Platform::Android => &self.android,
            Platform::Ios => &self.ios,
            Platform::Linux => &self.linux,
        }
    }

    /// Replaces the enrollment of `platform`.
    pub fn set(&mut self, platform: Platform, enrollment: PlatformEnrollment) {
        let slot = match platform {
            Platform::MacOs => &mut self.mac_os,
            Platform::Windows => &mut self.windows,
            Platform::Android => &mut self.android,
            Platform::Ios => &mut self.ios,
            Platform::Linux => &mut self.linux,
        };
        *slot = enrollment;
    }

    /// Each platform with its enrollment, in [`Platform::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Platform, &PlatformEnrollment)> {
        Platform::ALL.into_iter().map(|p| (p, self.get(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partner::target::{
        AssignmentFilter, AssignmentTarget, EntityGuid, TargetKind, TextId,
    };

    fn all_devices() -> Assignment {
        Assignment::new(AssignmentTarget::new(
            TargetKind::AllDevices,
            AssignmentFilter::None,
        ))
    }

    fn collection(id: &str) -> Assignment {
        let collection_id = TextId::parse(id).expect("valid");
        Assignment::new(AssignmentTarget::new(
            TargetKind::ConfigurationManagerCollection { collection_id },
            AssignmentFilter::None,
        ))
    }

    #[test]
    fn assignments_need_the_platform_to_be_onboarded() {
        assert_eq!(
            PlatformEnrollment::new(false, vec![all_devices()]),
            Err(PlatformEnrollmentError::AssignmentsWithoutOnboarding { count: 1 })
        );
        assert!(PlatformEnrollment::new(false, vec![]).is_ok());
        assert!(PlatformEnrollment::new(true, vec![]).is_ok());
        assert!(PlatformEnrollment::new(true, vec![all_devices()]).is_ok());
    }

    #[test]
    fn no_target_appears_twice_within_one_platform() {
        assert_eq!(
            PlatformEnrollment::new(true, vec![collection("A"), all_devices(), collection("A")]),
            Err(PlatformEnrollmentError::DuplicateTarget {
                first: 0,
                duplicate: 2
            })
        );
        let group = |filter| {
            let group_id =
                EntityGuid::parse("0b9d3c2e-4f1a-4c6e-9a77-2f6c1d0e8b11").expect("valid");
            Assignment::new(AssignmentTarget::new(
                TargetKind::Group { group_id },
                filter,
            ))
        };
        let include = AssignmentFilter::Include(TextId::parse("f").expect("valid"));
        assert_eq!(
            PlatformEnrollment::new(true, vec![group(AssignmentFilter::None), group(include)]),
            Err(PlatformEnrollmentError::DuplicateTarget {
                first: 0,
                duplicate: 1
            })
        );
        assert!(PlatformEnrollment::new(true, vec![collection("A"), collection("B")]).is_ok());
    }

    #[test]
    fn assignment_order_is_kept() {
        let enrollment =
            PlatformEnrollment::new(true, vec![collection("B"), collection("A")]).expect("valid");
        assert_eq!(
            enrollment.assignments(),
            &[collection("B"), collection("A")]
        );
    }

    #[test]
    fn platforms_are_set_and_read_independently() {
        let mut platforms = Platforms::none();
        platforms.set(
            Platform::Linux,
            PlatformEnrollment::new(true, vec![all_devices()]).expect("valid"),
        );
        assert!(platforms.get(Platform::Linux).onboarded());
        assert!(!platforms.get(Platform::Windows).onboarded());
        assert_eq!(platforms.iter().filter(|(_, e)| e.onboarded()).count(), 1);
    }
}
