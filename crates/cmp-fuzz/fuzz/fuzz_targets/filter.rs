//! Fuzz target: a decoded `$filter` value (see `cmp_fuzz::filter`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cmp_fuzz::filter(data));
