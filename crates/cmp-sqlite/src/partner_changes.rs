//! Listing, counting, updating and deleting partners (being written; see the issue on the
//! whole resource). Until then these answer with an error rather than a wrong result.

use anyhow::anyhow;
use cmp_application::query::{Filter, ListQuery, PartnerPage};
use cmp_application::{ChangeQueued, ChangeWrite, StoreError};
use cmp_domain::{Partner, PartnerId, TenantId};

use crate::SqlitePartnerRepository;

impl SqlitePartnerRepository {
    pub(crate) async fn list(&self, _tenant: TenantId, _query: &ListQuery) -> Result<PartnerPage, StoreError> {
        Err(StoreError::Unexpected(anyhow!("listing partners is not available yet")))
    }

    pub(crate) async fn count(&self, _tenant: TenantId, _filter: Option<Filter>) -> Result<u64, StoreError> {
        Err(StoreError::Unexpected(anyhow!("counting partners is not available yet")))
    }

    pub(crate) async fn update(&self, _partner: &Partner, _write: &ChangeWrite) -> Result<ChangeQueued, StoreError> {
        Err(StoreError::Unexpected(anyhow!("updating partners is not available yet")))
    }

    pub(crate) async fn delete(&self, _id: PartnerId, _write: &ChangeWrite) -> Result<ChangeQueued, StoreError> {
        Err(StoreError::Unexpected(anyhow!("deleting partners is not available yet")))
    }
}
