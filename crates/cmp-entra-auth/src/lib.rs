//! The driven Entra ID adapter: implements the application's [`CallerAuthenticator`] port by
//! verifying inbound Entra ID access tokens issued for our API, and, for local development,
//! issues such tokens itself.
//!
//! Like Microsoft Graph, the service takes `Authorization: Bearer <token>`; the HTTP adapter
//! extracts the token (check 1 of `docs/auth.md`, "The checks, in order") and asks the port,
//! which runs checks 2 to 9 here and returns the [`Caller`] (`docs/auth.md`, "The caller").
//! Authorisation is not done here: permissions are returned as the token grants them, and the
//! use case or HTTP layer decides whether they suffice (`docs/auth.md`, "Permissions").
//!
//! It depends on the application (the port and [`Clock`]) and the domain ([`Timestamp`]);
//! externally on jsonwebtoken (all signature cryptography), reqwest (metadata and key sets),
//! rsa (only to generate and read the development key), serde, tokio and tracing. It never
//! depends on another adapter, and only the binary decides which mode runs.
//!
//! # Layout
//! - [`settings`]: [`EntraAuthSettings`] and [`TokenVersion`]: audiences, tenants, key schedule.
//! - [`authenticator`]: [`EntraAuthenticator`], the checks in order, and [`SetupError`].
//! - `jwks` (private): key sets and the per-tenant key cache with its refresh rules.
//! - `claims` (private): reading the header and claims of a token before verification.
//! - `verified_tokens` (private): the bounded memory of tokens that passed every check.
//! - [`development`]: [`DevelopmentSigner`] and [`MintRequest`]: a local key, its JWKS, and
//!   minted tokens that [`EntraAuthenticator::with_static_keys`] verifies.
//!
//! [`Caller`]: cmp_application::Caller
//! [`CallerAuthenticator`]: cmp_application::CallerAuthenticator
//! [`Clock`]: cmp_application::Clock
//! [`Timestamp`]: cmp_domain::Timestamp

pub mod authenticator;
mod claims;
pub mod development;
mod jwks;
pub mod settings;
mod verified_tokens;

pub use authenticator::{EntraAuthenticator, SetupError};
pub use development::{DevelopmentSigner, MintRequest};
pub use settings::{
    DEFAULT_AUTHORITY, EntraAuthSettings, GRAPH_AUDIENCES, PERSONAL_ACCOUNT_TENANT_ID, TokenVersion,
};
