//! cargo-fuzz target: the property `cm_meta_decode` of tests/fuzz_checks (see there).
#![no_main]

#[path = "../../tests/fuzz_checks/mod.rs"]
mod fuzz_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::cm_meta_decode(data));
