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
//! - [`partner::display_name`]: [`DisplayName`], a partner's name.
//! - [`partner::natural_key`]: [`NaturalKey`], the form in which names are compared.
//! - [`partner::state`]: [`PartnerState`], Graph's `deviceManagementPartnerTenantState`.
//! - [`partner::platform`]: the five platforms, their [`PlatformEnrollment`], and
//!   [`PerPlatform`], one value per platform.
//! - [`partner::target`]: assignment targets, the closed set of Graph's target subtypes.
//! - [`time`]: [`Timestamp`], a UTC instant with 100 ns precision, and its arithmetic with
//!   durations.
//! - [`id`]: identifiers ([`PartnerId`], [`TenantId`]).

pub mod id;
pub mod partner;
pub mod time;

pub use id::{PartnerId, TenantId};
pub use partner::display_name::{DisplayName, DisplayNameError};
pub use partner::natural_key::NaturalKey;
pub use partner::platform::{
    PerPlatform, Platform, PlatformEnrollment, PlatformEnrollmentError, PlatformPatch, Platforms,
};
pub use partner::state::{PartnerState, PartnerStateError};
pub use partner::target::{
    Assignment, AssignmentFilter, AssignmentFilterError, AssignmentTarget, EntityGuid,
    EntityGuidError, ScopeTagTargetType, ScopeTagTargetTypeError, TargetKind, TextId, TextIdError,
};
pub use partner::{HEARTBEAT_FUTURE_TOLERANCE, NewPartner, Partner, PartnerError, PartnerPatch};
pub use time::{Timestamp, TimestampError};
