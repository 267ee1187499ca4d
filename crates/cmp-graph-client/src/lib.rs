//! The driven Graph adapter: implementations of the application's [`GraphGateway`] port.
//!
//! [`HttpGraphClient`] talks to Microsoft Graph over HTTPS with tokens from Entra ID;
//! [`SimulatedGraph`] is the in-process stand-in development and tests run against. It depends
//! on the application (the port), the domain and the Graph wire model, never on another adapter.
//!
//! # Layout
//! - [`settings`]: [`GraphClientSettings`], national-cloud presets, the four credentials.
//! - [`token`]: [`TokenProvider`]: tokens of any credential, cached, single-flight, backed off.
//! - [`client`]: [`HttpGraphClient`], the gateway: the reqwest client and [`connect`], the
//!   retry engine, outcome classes, pacing, pre-seeded adoption.
//! - `retry_after`: `Retry-After` parsing and back-off, shared by the client and the token provider.
//! - `error_chain`: one line for an error and its sources, shared likewise.
//! - [`graph_metrics`]: requests, throttling, the tenant's pause and token requests, counted.
//! - [`simulated`]: [`SimulatedGraph`] and its [`SimulatedGraphSettings`].
//!
//! [`GraphGateway`]: cmp_application::GraphGateway

pub mod client;
mod error_chain;
pub mod graph_metrics;
mod retry_after;
pub mod settings;
pub mod simulated;
pub mod token;

pub use client::{GraphConnection, HttpGraphClient, connect};
pub use settings::{AzureEnvironment, Cloud, Credential, CredentialKind, GraphClientSettings};
pub use simulated::{SimulatedFailure, SimulatedGraph, SimulatedGraphSettings};
pub use token::{
    AccessToken, InvalidCredential, TokenError, TokenProvider, TokenSource, TokenStatus,
};
