//! Fuzz target: a create or update request body (see `cmp_fuzz::partner_body`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cmp_fuzz::partner_body(data));
