//! Driven ports: what the use cases need from the outside world, one file per concept, each
//! stating its contract in its documentation.
//!
//! - [`system`]: [`Clock`], [`IdSource`], [`Jitter`], [`Sleeper`].
//! - [`partner_store`]: [`PartnerStore`], the partners themselves, and [`StoreError`].
//! - [`outbox`]: [`Outbox`], the Graph operations owed, and the delivery vocabulary.
//! - [`graph_gateway`]: [`GraphGateway`], Microsoft Graph, and its outcome classes.
//! - [`pacer`]: [`Pacer`], the tenant's request budget and `Retry-After` pause.

pub mod graph_gateway;
pub mod outbox;
pub mod pacer;
pub mod partner_store;
pub mod system;

pub use graph_gateway::{
    CreateOutcome, GraphCallResult, GraphGateway, GraphReadError, GraphResponseMeta,
    GraphWriteResult, NamedPartners, RemotePartner, WriteOutcome,
};
pub use outbox::{
    ClaimedRow, DeliveryEnd, DeliveryOutcome, DeliveryRecord, DeliveryStart, InGraph,
    InlineDelivery, Lease, LeaseOwner, Operation, Outbox, OutboxCounts, OutboxRecord, OutboxState,
    PartnerHistory, Transition, WaitingState,
};
pub use pacer::{Booking, Budget, Pacer, PacerError, PacerRates, PacerState, Slot};
pub use partner_store::{
    ChangeQueued, ChangeWrite, ChangedPartner, NewPartnerWrite, PartnerChange, PartnerStore,
    PartnerUpdate, StoreError, UpdatedPartner,
};
pub use system::{Clock, IdSource, Jitter, Sleeper};

#[cfg(any(test, feature = "mocks"))]
pub use graph_gateway::MockGraphGateway;
#[cfg(any(test, feature = "mocks"))]
pub use outbox::MockOutbox;
#[cfg(any(test, feature = "mocks"))]
pub use pacer::MockPacer;
#[cfg(any(test, feature = "mocks"))]
pub use partner_store::MockPartnerStore;
#[cfg(any(test, feature = "mocks"))]
pub use system::{MockClock, MockIdSource, MockJitter, MockSleeper};
