//! The application layer: the use cases of the onboarding service, written against ports.
//!
//! It depends on the domain and on nothing that does I/O: no SQL, no HTTP, no runtime. The
//! adapters implement the driven ports in [`ports`]; the HTTP adapter drives the use cases
//! through [`PartnerUseCases`].
//!
//! # Layout
//! - [`ports`]: driven ports ([`PartnerRepository`], [`GraphGateway`], [`Clock`],
//!   [`IdSource`], [`Sleeper`]) and the records that cross them.
//! - [`delivery`]: how one Graph call's outcome moves an outbox row on (shared by the inline
//!   path of a create and, later, the dispatcher).
//! - [`dispatcher`]: [`Dispatcher`], which finishes the deliveries the requests could not.
//! - [`operations`]: [`OperatorUseCases`]: sync state, listings, re-queue.
//! - [`partners`]: the driving port [`PartnerUseCases`] and its implementation [`PartnerService`].
//! - [`auth`]: the [`Caller`] and the [`CallerAuthenticator`] port.
//! - [`query`]: [`query::ListQuery`], the typed form of a listing's OData options.
//! - [`error`]: one error enum per use case.

pub mod auth;
pub mod delivery;
pub mod dispatcher;
pub mod error;
pub mod operations;
pub mod partners;
pub mod ports;
pub mod query;

pub use auth::{AuthenticationError, Caller, CallerAuthenticator, CallerKind};
pub use delivery::DeliveryPolicy;
pub use dispatcher::{DispatchError, DispatchPass, DispatchPolicy, Dispatcher};
pub use error::{CreatePartnerError, DeletePartnerError, GetPartnerError, UpdatePartnerError};
pub use operations::{OperationsError, OperatorUseCases, OutboxOperations};
pub use partners::{CreatePartnerOutput, PartnerService, PartnerUseCases, RequestContext};
pub use ports::{
    AttemptFinish, AttemptRecord, AttemptStart, AuditAction, AuditEntry, AuditRecord, ChangeQueued,
    ChangeWrite, ClaimedDelivery, Clock, CreateOutcome, DeliveryQueue, DeliveryState,
    GraphCallResult, GraphGateway, GraphReadError, GraphResponseMeta, GraphWriteResult, IdSource,
    Jitter, NewPartnerWrite, Operation, OutboxCounts, OutboxTransition, PartnerHistory,
    PartnerRepository, RemotePartner, Sleeper, StoreError, SyncState, WriteOutcome,
};

#[cfg(any(test, feature = "mocks"))]
pub use auth::MockCallerAuthenticator;
#[cfg(any(test, feature = "mocks"))]
pub use operations::MockOperatorUseCases;
#[cfg(any(test, feature = "mocks"))]
pub use partners::MockPartnerUseCases;
#[cfg(any(test, feature = "mocks"))]
pub use ports::{
    MockClock, MockDeliveryQueue, MockGraphGateway, MockIdSource, MockJitter,
    MockPartnerRepository, MockSleeper,
};
