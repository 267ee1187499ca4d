//! The five platforms a partner can be onboarded for, each with its enrollment assignments.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;

use super::target::Assignment;

/// A device platform of the partner resource. `Windows` comes from the older beta schema the
/// seed request uses, `Linux` from the current one; the service keeps both (see
/// `docs/wire-contract.md`). The declaration order is [`Platform::ALL`]'s.
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

    /// The platform's place in [`Platform::ALL`].
    fn index(self) -> usize {
        self as usize
    }

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

/// One value for each of the five platforms: the one representation of per-platform data
/// (a partner's enrollments, what a patch or a request body says about each platform).
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct PerPlatform<T>([T; 5]);

impl<T> PerPlatform<T> {
    /// Each platform's value made by `value`, in [`Platform::ALL`] order.
    pub fn from_fn(mut value: impl FnMut(Platform) -> T) -> Self {
        Self(Platform::ALL.map(&mut value))
    }

    /// The value of `platform`.
    pub fn get(&self, platform: Platform) -> &T {
        &self.0[platform.index()]
    }

    /// The value of `platform`, to change in place.
    pub fn get_mut(&mut self, platform: Platform) -> &mut T {
        &mut self.0[platform.index()]
    }

    /// Replaces the value of `platform`.
    pub fn set(&mut self, platform: Platform, value: T) {
        self.0[platform.index()] = value;
    }

    /// Each platform with its value, in [`Platform::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Platform, &T)> {
        Platform::ALL.into_iter().zip(self.0.iter())
    }

    /// Each value turned into another by `convert`, which also learns the platform.
    pub fn map<U>(self, mut convert: impl FnMut(Platform, T) -> U) -> PerPlatform<U> {
        let converted: Result<_, std::convert::Infallible> =
            self.try_map(|platform, value| Ok(convert(platform, value)));
        match converted {
            Ok(values) => values,
            Err(never) => match never {},
        }
    }

    /// Like [`PerPlatform::map`], stopping at the first error.
    ///
    /// # Errors
    /// The first error `convert` returns, in [`Platform::ALL`] order.
    pub fn try_map<U, E>(
        self,
        mut convert: impl FnMut(Platform, T) -> Result<U, E>,
    ) -> Result<PerPlatform<U>, E> {
        let [mac_os, windows, android, ios, linux] = self.0;
        Ok(PerPlatform([
            convert(Platform::MacOs, mac_os)?,
            convert(Platform::Windows, windows)?,
            convert(Platform::Android, android)?,
            convert(Platform::Ios, ios)?,
            convert(Platform::Linux, linux)?,
        ]))
    }
}

impl<T> std::ops::Index<Platform> for PerPlatform<T> {
    type Output = T;

    fn index(&self, platform: Platform) -> &T {
        self.get(platform)
    }
}

/// Whether a partner is onboarded for one platform, and which users or devices enroll
/// through it. Assignments are kept in the order received.
///
/// Assignments do not need the platform to be onboarded: in Intune an administrator assigns
/// groups first, and the partner sets the `*Onboarded` flags when it connects, so assignments
/// before onboarding are the normal case (see `docs/wire-contract.md`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlatformEnrollment {
    onboarded: bool,
    assignments: Vec<Assignment>,
}

/// Why a platform's enrollment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformEnrollmentError {
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
    /// Checks the platform invariant: no target twice.
    ///
    /// # Errors
    /// [`PlatformEnrollmentError`] naming the broken invariant.
    pub fn new(
        onboarded: bool,
        assignments: Vec<Assignment>,
    ) -> Result<Self, PlatformEnrollmentError> {
        // One pass over the targets with the position each was first seen at: a body at the
        // size limit holds some 9,000 assignments, and comparing each with every earlier one
        // took over a second per request (and again on every read of the stored partner).
        let mut first_seen = HashMap::with_capacity(assignments.len());
        for (duplicate, assignment) in assignments.iter().enumerate() {
            match first_seen.entry(assignment.target().identity()) {
                Entry::Occupied(first) => {
                    return Err(PlatformEnrollmentError::DuplicateTarget {
                        first: *first.get(),
                        duplicate,
                    });
                }
                Entry::Vacant(slot) => {
                    slot.insert(duplicate);
                }
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
pub type Platforms = PerPlatform<PlatformEnrollment>;

impl Platforms {
    /// Every platform not onboarded, with no assignments.
    pub fn none() -> Self {
        Self::default()
    }
}

/// What a change says about one platform; `None` leaves a property as it is. Assignments
/// present replace the stored ones wholesale (Graph's PATCH semantics); an explicit JSON
/// `null` reads as an empty list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformPatch {
    /// New `<platform>Onboarded`.
    pub onboarded: Option<bool>,
    /// New `<platform>EnrollmentAssignments`.
    pub assignments: Option<Vec<Assignment>>,
}

impl PlatformPatch {
    /// Whether the patch leaves the platform as it is.
    pub fn is_empty(&self) -> bool {
        self.onboarded.is_none() && self.assignments.is_none()
    }

    /// `current` with this patch applied, the platform invariant checked again.
    ///
    /// # Errors
    /// [`PlatformEnrollmentError`] when the result breaks the invariant.
    pub fn applied_to(
        &self,
        current: &PlatformEnrollment,
    ) -> Result<PlatformEnrollment, PlatformEnrollmentError> {
        PlatformEnrollment::new(
            self.onboarded.unwrap_or(current.onboarded()),
            self.assignments
                .clone()
                .unwrap_or_else(|| current.assignments().to_vec()),
        )
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
    fn assignments_are_accepted_whether_or_not_the_platform_is_onboarded() {
        for onboarded in [false, true] {
            let enrollment =
                PlatformEnrollment::new(onboarded, vec![all_devices()]).expect("valid");
            assert_eq!(enrollment.onboarded(), onboarded);
            assert_eq!(enrollment.assignments(), &[all_devices()]);
            assert!(PlatformEnrollment::new(onboarded, vec![]).is_ok());
        }
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
    fn a_repeat_among_thousands_of_targets_is_found_by_its_positions() {
        let mut assignments: Vec<Assignment> =
            (0..9_000).map(|n| collection(&n.to_string())).collect();
        assignments.push(collection("4500"));

        assert!(PlatformEnrollment::new(true, assignments[..9_000].to_vec()).is_ok());
        assert_eq!(
            PlatformEnrollment::new(true, assignments),
            Err(PlatformEnrollmentError::DuplicateTarget {
                first: 4_500,
                duplicate: 9_000
            })
        );
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

    #[test]
    fn per_platform_values_follow_the_order_of_all_platforms() {
        let prefixes = PerPlatform::from_fn(|platform| platform.property_prefix());
        let lengths = prefixes.clone().map(|_, prefix| prefix.len());

        assert_eq!(
            prefixes.iter().map(|(_, p)| *p).collect::<Vec<_>>(),
            ["macOs", "windows", "android", "ios", "linux"]
        );
        assert_eq!(lengths[Platform::Linux], 5);
        assert_eq!(
            prefixes.try_map(|platform, prefix| if platform == Platform::Ios {
                Err(prefix)
            } else {
                Ok(prefix)
            }),
            Err("ios")
        );
    }

    #[test]
    fn a_platform_patch_changes_only_what_it_names() {
        let current = PlatformEnrollment::new(true, vec![collection("A")]).expect("valid");
        let keep = PlatformPatch::default();
        let reassign = PlatformPatch {
            onboarded: None,
            assignments: Some(vec![collection("B"), collection("B")]),
        };
        let offboard = PlatformPatch {
            onboarded: Some(false),
            assignments: None,
        };

        assert!(keep.is_empty());
        assert_eq!(keep.applied_to(&current), Ok(current.clone()));
        assert_eq!(
            reassign.applied_to(&current),
            Err(PlatformEnrollmentError::DuplicateTarget {
                first: 0,
                duplicate: 1
            })
        );
        let offboarded = offboard.applied_to(&current).expect("valid");
        assert!(!offboarded.onboarded());
        assert_eq!(offboarded.assignments(), &[collection("A")]);
    }
}
