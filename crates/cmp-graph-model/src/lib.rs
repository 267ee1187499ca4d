//! The Microsoft Graph JSON representation of a `complianceManagementPartner` and its
//! mapping to and from the domain.
//!
//! The HTTP API (inbound) and the Graph client (outbound) both speak this shape, so the
//! mapping exists once, here. Pure code: it depends on the domain, `serde` and `serde_json`,
//! `thiserror`, and `utoipa` (only to describe the shapes for the OpenAPI document), and does no
//! I/O. The rules are written down in `docs/wire-contract.md`.
//!
//! # Layout
//! - [`partner`]: [`parse_partner_fields`] (request bodies into [`PartnerFields`]) and
//!   [`render_partner`] (a domain partner into Graph's JSON, whole or reduced to a `$select`
//!   with [`render_partner_projected`]).
//! - [`target`]: assignment targets and their `@odata.type` names.
//! - [`datetime`]: `Edm.DateTimeOffset` parsing and rendering.
//! - [`odata`]: type names and annotation handling.
//! - [`schema`]: the OpenAPI schemas of these shapes, built from the same tables.
//! - [`wire`]: [`WireError`] and the JSON helpers the entity and its assignments share.

pub mod datetime;
pub mod odata;
pub mod partner;
pub mod schema;
pub mod target;
pub mod wire;

pub use partner::{
    PARTNER_PROPERTIES, PartnerFields, ProjectedPartner, parse_partner_fields, render_partner,
    render_partner_projected,
};
pub use wire::WireError;
