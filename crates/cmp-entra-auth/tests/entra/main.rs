//! Integration tests of the Entra ID adapter against a fake Entra ID on 127.0.0.1.
//!
//! One test binary made of modules (zero2prod's layout): `support` holds the fixtures,
//! `battery` the forged-token cases, `jwks` the key-cache behaviour, `development` the local
//! signer, `verified` the memory of verified tokens.

mod battery;
mod development;
mod jwks;
mod support;
mod verified;
