//! The application layer: the use cases of the onboarding service, written against ports.
//!
//! It depends on the domain and on nothing that does I/O: no SQL, no HTTP, no runtime. The
//! adapters implement the driven ports in [`ports`]; the HTTP adapter drives the use cases
//! through [`PartnerUseCases`] and [`OperatorUseCases`].
//!
//! # Layout
//! - [`ports`]: the driven ports, one file per concept: [`ports::system`] (clock, ids,
//!   jitter, sleeper), [`ports::partner_store`] ([`PartnerStore`]), [`ports::outbox`]
//!   ([`Outbox`] and the delivery vocabulary), [`ports::graph_gateway`] ([`GraphGateway`]).
//! - [`partners`]: the driving port [`PartnerUseCases`] and its implementation
//!   [`PartnerService`]: create (with its inline delivery), read, list, update, delete.
//! - [`delivery`]: the delivery rules, shared by the inline delivery and the dispatcher.
//! - [`dispatcher`]: [`Dispatcher`], the pass loop that works the outbox in the background.
//! - [`reconciliation`]: matching a partner with Graph's objects by natural key.
//! - [`pacer`]: [`InProcessPacer`], the tenant's [`Pacer`] held in memory.
//! - [`pacing`]: taking a slot of the [`Pacer`] before a Graph call, recording a 429.
//! - [`policy`]: [`OutboxPolicy`], the numbers of delivery, all from configuration.
//! - [`operations`]: [`OperatorUseCases`]: sync state, listings, history, re-queue.
//! - [`outbox_metrics`]: deliveries and dead letters counted, the queue's gauges refreshed.
//! - [`audit`]: the audit log's entries and actions.
//! - [`names`]: the stored names of the vocabulary's closed sets, parsed at the edges.
//! - [`auth`]: the [`Caller`] and the [`CallerAuthenticator`] port.
//! - [`query`]: [`query::ListQuery`], the typed form of a listing's OData options.
//! - [`error`]: one error enum per use case.
//!
//! How the pieces work together is told in `docs/architecture.md` and `docs/delivery.md`.

pub mod audit;
pub mod auth;
pub mod delivery;
pub mod dispatcher;
pub mod error;
pub mod names;
pub mod operations;
pub mod outbox_metrics;
pub mod pacer;
pub mod pacing;
pub mod partners;
pub mod policy;
pub mod ports;
pub mod query;
pub mod reconciliation;
#[cfg(test)]
mod test_support;

pub use audit::{AuditAction, AuditEntry};
pub use auth::{AuthenticationError, Caller, CallerAuthenticator, CallerKind};
pub use dispatcher::{DispatchError, DispatchPass, Dispatcher};
pub use error::{
    CreatePartnerError, DeletePartnerError, GetPartnerError, ListPartnersError, UpdatePartnerError,
};
pub use names::UnknownName;
pub use operations::{OperationsError, OperatorUseCases, OutboxOperations};
pub use outbox_metrics::OutboxGauges;
pub use pacer::InProcessPacer;
pub use partners::{CreatePartnerOutput, PartnerService, PartnerUseCases, RequestContext};
pub use policy::OutboxPolicy;
pub use ports::{Booking, Budget, Pacer, PacerError, PacerRates, PacerState, Slot};
pub use ports::{
    ChangeQueued, ChangeWrite, ChangedPartner, ClaimedRow, Clock, CreateOutcome, DeliveryEnd,
    DeliveryOutcome, DeliveryRecord, DeliveryStart, GraphCallResult, GraphGateway, GraphReadError,
    GraphResponseMeta, GraphWriteResult, IdSource, InGraph, InlineDelivery, Jitter, Lease,
    LeaseOwner, NamedPartners, NewPartnerWrite, Operation, Outbox, OutboxCounts, OutboxRecord,
    OutboxState, PartnerChange, PartnerHistory, PartnerStore, PartnerUpdate, RemotePartner,
    Sleeper, StoreError, Transition, UpdatedPartner, WaitingState, WriteOutcome,
};

#[cfg(any(test, feature = "mocks"))]
pub use auth::MockCallerAuthenticator;
#[cfg(any(test, feature = "mocks"))]
pub use operations::MockOperatorUseCases;
#[cfg(any(test, feature = "mocks"))]
pub use partners::MockPartnerUseCases;
#[cfg(any(test, feature = "mocks"))]
pub use ports::{
    MockClock, MockGraphGateway, MockIdSource, MockJitter, MockOutbox, MockPacer, MockPartnerStore,
    MockSleeper,
};
