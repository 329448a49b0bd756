//! The checked-in include/ibstack.h must equal what build.rs generated from
//! the current sources; programs outside the project compile against it.

#[test]
fn header_is_current() {
    let generated = std::fs::read_to_string(concat!(env!("OUT_DIR"), "/ibstack.h"))
        .expect("build.rs did not generate ibstack.h");
    let checked_in = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/ibstack.h"))
        .unwrap_or_default();
    assert!(
        generated == checked_in,
        "include/ibstack.h is stale: regenerate it with\n    IBSTACK_UPDATE_HEADER=1 cargo build\nand commit it"
    );
}
