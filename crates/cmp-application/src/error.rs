//! One error enum per use case. Variants are business outcomes; the HTTP adapter maps each
//! to a status exactly once.

use cmp_domain::{PartnerError, PartnerId};

use crate::ports::StoreError;

/// Why a partner was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreatePartnerError {
    /// An invariant of the aggregate does not hold.
    #[error(transparent)]
    Invalid(#[from] PartnerError),
    /// Another partner already has this name (compared trimmed, case-insensitively).
    #[error("a partner named '{display_name}' already exists")]
    DuplicateDisplayName {
        /// The name that collided.
        display_name: String,
    },
    /// Graph refused the partner for good; nothing was kept.
    #[error("Microsoft Graph refused the partner (status {status})")]
    GraphRejected {
        /// Graph's HTTP status.
        status: u16,
        /// Graph's `error.code`.
        code: Option<String>,
        /// Graph's `error.message`.
        message: Option<String>,
    },
    /// The store failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Why a partner could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GetPartnerError {
    /// No partner has this id.
    #[error("no partner has id {0}")]
    NotFound(PartnerId),
    /// The store failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Why a partner was not updated.
#[derive(Debug, thiserror::Error)]
pub enum UpdatePartnerError {
    /// No partner has this id (or it is deleted).
    #[error("no partner has id {0}")]
    NotFound(PartnerId),
    /// The patched partner would break an invariant.
    #[error(transparent)]
    Invalid(#[from] PartnerError),
    /// Another partner already has the new name.
    #[error("a partner named '{display_name}' already exists")]
    DuplicateDisplayName {
        /// The name that collided.
        display_name: String,
    },
    /// The store failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Why a partner was not deleted.
#[derive(Debug, thiserror::Error)]
pub enum DeletePartnerError {
    /// No partner has this id (or it is already deleted).
    #[error("no partner has id {0}")]
    NotFound(PartnerId),
    /// The store failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Why a listing failed.
#[derive(Debug, thiserror::Error)]
pub enum ListPartnersError {
    /// The cursor does not fit the query (a `$skiptoken` from another query).
    #[error("the skip token does not belong to this query")]
    BadCursor,
    /// The store failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<StoreError> for ListPartnersError {
    fn from(error: StoreError) -> Self {
        Self::Unexpected(anyhow::Error::new(error).context("listing partners"))
    }
}
