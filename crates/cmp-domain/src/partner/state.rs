//! [`PartnerState`]: Graph's `deviceManagementPartnerTenantState`.

use std::fmt;
use std::str::FromStr;

/// Partner state of a tenant, Graph's `deviceManagementPartnerTenantState`. Graph defines
/// no `unknownFutureValue` member for it, so the set is closed at these six.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PartnerState {
    /// `unknown` (0): the default.
    #[default]
    Unknown,
    /// `unavailable` (1).
    Unavailable,
    /// `enabled` (2).
    Enabled,
    /// `terminated` (3).
    Terminated,
    /// `rejected` (4).
    Rejected,
    /// `unresponsive` (5).
    Unresponsive,
}

impl PartnerState {
    /// Every member in declaration order.
    pub const ALL: [PartnerState; 6] = [
        Self::Unknown,
        Self::Unavailable,
        Self::Enabled,
        Self::Terminated,
        Self::Rejected,
        Self::Unresponsive,
    ];

    /// Graph's member name, exactly as it appears on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Unavailable => "unavailable",
            Self::Enabled => "enabled",
            Self::Terminated => "terminated",
            Self::Rejected => "rejected",
            Self::Unresponsive => "unresponsive",
        }
    }
}

/// The text is not one of the six member names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{0}' is not a partner state; expected one of unknown, unavailable, enabled, terminated, rejected, unresponsive"
)]
pub struct PartnerStateError(pub String);

impl FromStr for PartnerState {
    type Err = PartnerStateError;

    /// Exact, case-sensitive member names: Graph's SDKs silently turn any other spelling
    /// into "no value", so accepting one would store a value clients cannot read back.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| PartnerStateError(text.to_owned()))
    }
}

impl fmt::Display for PartnerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_round_trips_through_its_name() {
        for state in PartnerState::ALL {
            assert_eq!(state.as_str().parse::<PartnerState>(), Ok(state));
        }
    }

    #[test]
    fn other_spellings_are_refused() {
        for bad in ["Unavailable", "UNAVAILABLE", "unknownFutureValue", "1", ""] {
            assert!(
                bad.parse::<PartnerState>().is_err(),
                "{bad:?} must be refused"
            );
        }
    }
}
