//! The audit log's vocabulary: what happened to a partner, when, why and at whose request.
//! Entries are written in the same transaction as the change they record, by the partner store
//! (creates, updates, deletes) and by the outbox (a create Graph refused, a delete Graph
//! confirmed); they outlive the partner they name.

use cmp_domain::{PartnerId, Timestamp};
use uuid::Uuid;

use crate::names::stored_names;

/// What an audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// A partner was accepted and stored.
    Created,
    /// Graph refused the partner for good; the local write was undone.
    CreateRejectedByGraph,
    /// A caller changed the partner.
    Updated,
    /// A caller deleted the partner.
    Deleted,
    /// Graph confirmed the deletion; the display name is free again.
    DeletedInGraph,
}

stored_names!(AuditAction, "an audit action", {
    Created => "created",
    CreateRejectedByGraph => "create_rejected_by_graph",
    Updated => "updated",
    Deleted => "deleted",
    DeletedInGraph => "deleted_in_graph",
});

/// Who caused an entry when no caller did: the dispatcher, recording what Graph confirmed.
pub const DISPATCHER_CALLER: &str = "dispatcher";

/// One audit-log entry. Kept even when the partner it names is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Unique id of the entry.
    pub id: Uuid,
    /// The partner concerned.
    pub partner_id: PartnerId,
    /// What happened.
    pub action: AuditAction,
    /// Our `request-id` of the HTTP request that caused it; empty when the dispatcher did.
    pub request_id: String,
    /// Who caused it (see [`crate::Caller`]'s display form, or [`DISPATCHER_CALLER`]); never a
    /// name or e-mail.
    pub caller: String,
    /// When it happened.
    pub at: Timestamp,
    /// Human-readable detail (what changed, Graph's error code, ...).
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_reads_back_from_its_stored_name() {
        for action in AuditAction::ALL {
            assert_eq!(action.as_str().parse(), Ok(*action), "{action}");
        }
        assert_eq!(
            "renamed".parse::<AuditAction>(),
            Err(crate::names::UnknownName {
                text: "renamed".to_owned(),
                what: "an audit action"
            })
        );
    }
}
