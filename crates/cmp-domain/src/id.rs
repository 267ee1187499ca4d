//! Identifiers. They are made by the application's id source, never by the domain.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// The identity of a partner in this service. It is also the `id` callers see on the wire, so
/// it is known before Graph has ever heard of the partner (a `202 Accepted` can point at it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartnerId(Uuid);

impl PartnerId {
    /// Wraps a UUID made by the application's id source.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for PartnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// The text is not a partner id (a hyphenated GUID).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a partner id")]
pub struct PartnerIdError(pub String);

impl FromStr for PartnerId {
    type Err = PartnerIdError;

    /// Accepts only the hyphenated GUID form Graph uses, in any letter case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_hyphenated_guid(text)
            .map(Self)
            .ok_or_else(|| PartnerIdError(text.to_owned()))
    }
}

/// The Entra ID tenant a partner is provisioned into. Display names are unique per tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TenantId(Uuid);

impl TenantId {
    /// Wraps a tenant GUID.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Parses the 36-character hyphenated GUID form only. `Uuid::try_parse` also takes the
/// braced, URN and 32-digit forms, which Graph never emits; accepting them would let two
/// spellings of one id through.
pub(crate) fn parse_hyphenated_guid(text: &str) -> Option<Uuid> {
    if text.len() != 36 {
        return None;
    }
    Uuid::try_parse(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partner_id_accepts_only_the_hyphenated_form() {
        assert!(
            "d6d46d0d-6d0d-d6d4-0d6d-d4d60d6dd4d6"
                .parse::<PartnerId>()
                .is_ok()
        );
        assert!(
            "D6D46D0D-6D0D-D6D4-0D6D-D4D60D6DD4D6"
                .parse::<PartnerId>()
                .is_ok()
        );
        for bad in [
            "",
            "d6d46d0d6d0dd6d40d6dd4d60d6dd4d6",
            "{d6d46d0d-6d0d-d6d4-0d6d-d4d60d6dd4d6}",
            "not-a-guid",
            "d6d46d0d-6d0d-d6d4-0d6d-d4d60d6dd4dz",
        ] {
            assert!(bad.parse::<PartnerId>().is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn partner_id_displays_lowercase_hyphenated() {
        let id: PartnerId = "D6D46D0D-6D0D-D6D4-0D6D-D4D60D6DD4D6"
            .parse()
            .expect("valid id");
        assert_eq!(id.to_string(), "d6d46d0d-6d0d-d6d4-0d6d-d4d60d6dd4d6");
    }
}
