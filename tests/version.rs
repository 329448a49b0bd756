//! ibstack_version() agrees with Cargo's package version.

#[test]
fn version_string_matches_cargo() {
    let p = ibstack::capi::global::ibstack_version();
    let s = unsafe { std::ffi::CStr::from_ptr(p) }.to_str().unwrap();
    assert_eq!(s, format!("ibstack/{} rdma-sys/0.3.0", env!("CARGO_PKG_VERSION")));
}
