//! End-to-end tests: the real service (HTTP API, use cases, SQLite file, simulated Graph) on
//! 127.0.0.1 with a port the OS picks, driven over real HTTP with real JSON.

mod auth;
mod bad_requests;
mod client_gone;
mod create;
mod delivery;
mod graph_mode;
mod helpers;
mod limits;
mod openapi;
mod operations;
mod resource;
mod restart;
