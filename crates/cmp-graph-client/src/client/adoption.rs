//! Adopting a pre-seeded record: some tenants hold placeholder partners and refuse a create
//! POST with a routing error. With `adopt_preseeded` on, the create then lists the collection,
//! finds the one record named like the partner, and PATCHes the partner onto it.
//!
//! Display names are matched through [`NaturalKey`], the one rule the service uses for "the
//! same name" (trimmed, case-insensitive), so adoption agrees with the uniqueness check and
//! with the outbox's reconciliation.

use cmp_application::{
    CreateOutcome, GraphCallResult, GraphReadError, GraphResponseMeta, RemotePartner, WriteOutcome,
};
use cmp_domain::{NaturalKey, Partner};
use uuid::Uuid;

use super::HttpGraphClient;

/// After Graph refused the create of `partner` with its routing error (`refusal`), adopts the
/// single record of the same display name in `graph` by PATCHing it with the partner.
///
/// Exactly one match is adopted; none or several leave the create rejected with a message
/// saying how many there were. A failed list or PATCH maps onto the create outcome that keeps
/// the outbox row safe: nothing of ours reached Graph unless the PATCH applied. Every request
/// of the adoption takes a slot of the tenant's pacer (the create's own slot went to its POST).
pub(super) async fn adopt_preseeded(
    graph: &HttpGraphClient,
    partner: &Partner,
    client_request_id: Uuid,
    refusal: GraphResponseMeta,
) -> GraphCallResult {
    let refused = |message: String| GraphCallResult {
        outcome: CreateOutcome::Rejected,
        meta: GraphResponseMeta {
            error_message: Some(message),
            ..refusal.clone()
        },
    };
    let listed = match graph.list_all(false).await {
        Ok(listed) => listed,
        // The POST was refused, so nothing was applied: a later attempt may resend it.
        Err(GraphReadError::Transient(meta)) => {
            return GraphCallResult {
                outcome: CreateOutcome::NotApplied { retry_after: None },
                meta,
            };
        }
        Err(GraphReadError::AuthFailure(meta)) => {
            return GraphCallResult {
                outcome: CreateOutcome::AuthFailure,
                meta,
            };
        }
        Err(error) => {
            return refused(format!(
                "Graph refused the create with its routing error and listing the pre-seeded records failed: {error}"
            ));
        }
    };
    let wanted = NaturalKey::of(partner.display_name());
    let matches: Vec<&RemotePartner> = listed
        .iter()
        .filter(|remote| wanted.matches_reported(remote.display_name.as_deref()))
        .collect();
    let [preseeded] = matches.as_slice() else {
        return refused(format!(
            "Graph refused the create with its routing error and {} pre-seeded records are named '{}' (exactly one can be adopted)",
            matches.len(),
            partner.display_name()
        ));
    };
    tracing::info!(
        graph.client_request_id = %client_request_id,
        graph.id = %preseeded.graph_id,
        "adopting the pre-seeded Graph record of the same display name"
    );
    let updated = graph
        .update(&preseeded.graph_id, partner, client_request_id, false)
        .await;
    let outcome = match updated.outcome {
        WriteOutcome::Applied => CreateOutcome::Created {
            graph_id: preseeded.graph_id.clone(),
        },
        WriteOutcome::NotApplied { retry_after } => CreateOutcome::NotApplied { retry_after },
        // The record vanished between the list and the PATCH: nothing of ours is in Graph,
        // so a later attempt may start over.
        WriteOutcome::NotFound => CreateOutcome::NotApplied { retry_after: None },
        WriteOutcome::AuthFailure => CreateOutcome::AuthFailure,
        WriteOutcome::Unknown => CreateOutcome::Unknown,
        WriteOutcome::Rejected => CreateOutcome::Rejected,
    };
    GraphCallResult {
        outcome,
        meta: updated.meta,
    }
}
