//! Fuzz target: a `$skiptoken` value, and the JSON behind one (see `cmp_fuzz::skip_token`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cmp_fuzz::skip_token(data));
