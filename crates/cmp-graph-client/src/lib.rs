//! The driven Graph adapter: implementations of the application's [`GraphGateway`] port.
//!
//! Today it holds the in-process [`SimulatedGraph`] that development and tests run against;
//! the real Microsoft Graph client over HTTPS joins it here. It depends on the application
//! (the port), the domain and the Graph wire model, never on another adapter.
//!
//! # Layout
//! - [`simulated`]: [`SimulatedGraph`] and its [`SimulatedGraphSettings`].
//!
//! [`GraphGateway`]: cmp_application::GraphGateway

pub mod simulated;

pub use simulated::{SimulatedFailure, SimulatedGraph, SimulatedGraphSettings};
