//! cargo-fuzz target: the property `ceph_conf` of tests/fuzz_checks (see there).
#![no_main]

#[path = "../../tests/fuzz_checks/mod.rs"]
mod fuzz_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::ceph_conf(data));
