//! The domain of the compliance-partner onboarding service: the
//! `complianceManagementPartner` aggregate, its value objects and its invariants.
//!
//! This crate is the centre of the hexagon. It performs no I/O, reads no clock and makes
//! no identifiers: time and identity come in as arguments. It depends only on `thiserror`
//! and `uuid`; no serde, no async, no logging. Wire formats (Graph JSON, SQL rows) live in
//! the adapters and the Graph wire model.
//!
//! # Layout
//! - [`partner`]: the [`Partner`] aggregate and the [`NewPartner`] command.
//! - [`partner::display_name`]: [`DisplayName`], the natural key of a partner.
//! - [`partner::state`]: [`PartnerState`], Graph's `deviceManagementPartnerTenantState`.
//! - [`partner::platform`]: the five platforms and their [`PlatformEnrollment`].
//! - [`partner::target`]: assignment targets, the closed set of Graph's target subtypes.
//! - [`time`]: [`Timestamp`], a UTC instant with 100 ns precision.
//! - [`id`]: identifiers ([`PartnerId`], [`TenantId`]).

pub mod id;
pub mod partner;
pub mod time;

pub use id::{PartnerId, TenantId};
pub use partner::display_name::{DisplayName, DisplayNameError};
pub use partner::platform::{Platform, PlatformEnrollment, PlatformEnrollmentError, Platforms};
pub use partner::state::{PartnerState, PartnerStateError};
pub use partner::target::{
    Assignment, AssignmentFilter, AssignmentFilterError, AssignmentTarget, EntityGuid,
    EntityGuidError, ScopeTagTargetType, ScopeTagTargetTypeError, TargetKind, TextId, TextIdError,
};
pub use partner::{
    HEARTBEAT_FUTURE_TOLERANCE_SECONDS, NewPartner, Partner, PartnerError, PartnerPatch,
};
pub use time::{Timestamp, TimestampError};
