//! cargo-fuzz target: the property `record_reader` of tests/fuzz_checks (see there).
#![no_main]

#[path = "../../tests/fuzz_checks/mod.rs"]
mod fuzz_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::record_reader(data));
