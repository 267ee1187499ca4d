//! [`StoreError`]: the error every store port ([`PartnerStore`](crate::PartnerStore) and
//! [`Outbox`](crate::Outbox)) answers with, in a file of its own so that neither port depends on
//! the other for it.

use cmp_domain::PartnerError;

/// Errors of the store ports ([`PartnerStore`] and [`Outbox`](crate::Outbox)).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such partner (or it is deleted).
    #[error("no such partner")]
    NotFound,
    /// The change would break an invariant of the partner as stored when it was applied.
    #[error(transparent)]
    Invalid(PartnerError),
    /// The outbox row is no longer leased to the caller (another worker holds it now).
    #[error("the outbox row's lease is held by someone else")]
    LeaseLost,
    /// Another partner of the tenant has the same natural key (trimmed, case-insensitive name).
    #[error("a partner named '{display_name}' already exists")]
    DuplicateDisplayName {
        /// The name that collided, as given.
        display_name: String,
    },
    /// The store failed; the source says how.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}
