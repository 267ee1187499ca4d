//! The partner store port: durable storage of the partners themselves (their properties,
//! assignments, natural keys and Graph ids).
//!
//! Each write enqueues its outbox row in the same transaction (see [`crate::ports::outbox`]):
//! a partner and the Graph operation it owes are stored together or not at all.

use cmp_domain::{Partner, PartnerError, PartnerId, TenantId, Timestamp};
use uuid::Uuid;

use crate::audit::AuditEntry;
use crate::ports::outbox::InlineDelivery;
use crate::ports::store_error::StoreError;
use crate::query::{Filter, ListQuery, PartnerPage};

/// Everything a create writes besides the partner itself: the create row of the outbox
/// (leased to the creating request, its first delivery started) and the audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPartnerWrite {
    /// The tenant the partner is provisioned into; names are unique per tenant.
    pub tenant_id: TenantId,
    /// The create row, enqueued in flight.
    pub delivery: InlineDelivery,
    /// When the write happens (also the first delivery's start).
    pub now: Timestamp,
    /// The audit entry of the create.
    pub audit: AuditEntry,
}

/// What a delete writes besides the partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeWrite {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Id of the outbox row, should one be enqueued.
    pub outbox_id: Uuid,
    /// When the change happens.
    pub now: Timestamp,
    /// The audit entry of the change.
    pub audit: AuditEntry,
}

/// How an update changes a partner: applied by the store to the partner as stored at the moment
/// of the write, under the store's write lock, so that concurrent updates of one partner run one
/// after the other (each over the result of the one before) instead of one of them failing.
pub type PartnerChange = Box<dyn FnOnce(&Partner) -> Result<ChangedPartner, PartnerError> + Send>;

/// A partner as a [`PartnerChange`] leaves it, with the audit entry that says what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedPartner {
    /// The partner after the change (its id unchanged).
    pub partner: Partner,
    /// The audit entry of the change.
    pub audit: AuditEntry,
}

/// An update: the change and what it writes besides the partner.
pub struct PartnerUpdate {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Id of the outbox row, should one be enqueued.
    pub outbox_id: Uuid,
    /// When the change happens.
    pub now: Timestamp,
    /// The change, applied to the stored partner.
    pub change: PartnerChange,
}

impl std::fmt::Debug for PartnerUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerUpdate")
            .field("tenant_id", &self.tenant_id)
            .field("outbox_id", &self.outbox_id)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// How an update ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdatedPartner {
    /// The partner as stored now.
    pub partner: Partner,
    /// How the change goes to Graph.
    pub queued: ChangeQueued,
}

/// How a change goes to Graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeQueued {
    /// It folded into the partner's waiting create (or, for a delete, cancelled it): Graph
    /// will only ever see the result, or nothing.
    Folded,
    /// A row was enqueued for the dispatcher.
    Queued,
}

/// Durable storage of partners.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait::async_trait]
pub trait PartnerStore: Send + Sync + 'static {
    /// Writes the partner, its assignments, its create row (state `in_flight`, leased and with
    /// its first delivery started as `write.delivery` says) and the audit entry, in one
    /// transaction: all of them or none.
    ///
    /// # Errors
    /// MUST return [`StoreError::DuplicateDisplayName`] when a partner of the same tenant has the
    /// same natural key, and then write nothing. [`StoreError::Unexpected`] otherwise.
    async fn insert_partner(
        &self,
        partner: &Partner,
        write: &NewPartnerWrite,
    ) -> Result<(), StoreError>;

    /// Reads one partner. A partner deleted by a caller (its delete perhaps still on its way to
    /// Graph) is gone for readers: `Ok(None)`.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails; an unknown id is `Ok(None)`.
    async fn get_partner(&self, id: PartnerId) -> Result<Option<Partner>, StoreError>;

    /// One page of the tenant's (not deleted) partners as `query` says: filter, order with `id`
    /// as the final tie-breaker, `skip` on a first page, keyset position after a cursor, and a
    /// total when asked. MUST set `next` exactly when more items follow the page.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails or a cursor does not fit the sort keys.
    async fn list_partners(
        &self,
        tenant_id: TenantId,
        query: &ListQuery,
    ) -> Result<PartnerPage, StoreError>;

    /// How many of the tenant's (not deleted) partners `filter` matches.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails.
    async fn count_partners(
        &self,
        tenant_id: TenantId,
        filter: Option<Filter>,
    ) -> Result<u64, StoreError>;

    /// Applies `update.change` to the stored partner `id` (existing, not deleted) and stores the
    /// result in one transaction with the change's audit entry, and enqueues the change for
    /// Graph: when the partner's create is
    /// `pending` (never sent, or certainly not applied), the change folds into it (the payload
    /// is rendered from the stored partner at delivery) and no row is added; otherwise (an
    /// `unknown` create included: Graph may hold the old version, which reconciliation adopts
    /// as it is) an `update` row (`pending`, id `update.outbox_id`) is enqueued behind the
    /// partner's earlier rows. The change MUST be applied under the store's write lock, to the
    /// partner as stored then: two updates of one partner never lose one another's changes.
    ///
    /// # Errors
    /// MUST return [`StoreError::NotFound`] when the partner does not exist or is deleted,
    /// [`StoreError::Invalid`] when the change refuses the stored partner, and
    /// [`StoreError::DuplicateDisplayName`] when another partner of the tenant has the new
    /// natural key; then nothing is written.
    async fn update_partner(
        &self,
        id: PartnerId,
        update: PartnerUpdate,
    ) -> Result<UpdatedPartner, StoreError>;

    /// Deletes a partner for callers, in one transaction with `write.audit`. When it never
    /// reached Graph (no graph id, and every one of its rows `pending`: never sent, or sent and
    /// certainly not applied), the partner and its rows are removed outright and nothing
    /// reaches Graph. Otherwise the partner is marked deleted (gone for readers, its display
    /// name still reserved) and a `delete` row is enqueued behind its earlier rows; the name is
    /// freed when Graph confirms.
    ///
    /// # Errors
    /// MUST return [`StoreError::NotFound`] when the partner does not exist or is deleted.
    async fn delete_partner(
        &self,
        id: PartnerId,
        write: &ChangeWrite,
    ) -> Result<ChangeQueued, StoreError>;

    /// Whether a partner other than `except` already holds Graph's object `graph_id`: such an
    /// object is never adopted for another partner, whatever its display name says.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] when the store fails.
    async fn graph_id_held_by_another(
        &self,
        graph_id: &str,
        except: PartnerId,
    ) -> Result<bool, StoreError>;
}
