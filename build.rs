//! Build script: generates `ibstack.h` with cbindgen into OUT_DIR (copied into
//! `include/` only when IBSTACK_UPDATE_HEADER=1), renders the pkg-config file,
//! and gives the shared library its soname and a version script that exports
//! only `ibstack_*`.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let version = env::var("CARGO_PKG_VERSION").unwrap();
    let major = env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
    let minor = env::var("CARGO_PKG_VERSION_MINOR").unwrap();
    let patch = env::var("CARGO_PKG_VERSION_PATCH").unwrap();

    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=include/cbindgen.toml");
    println!("cargo:rerun-if-changed=pkgconfig/ibstack.pc.in");
    println!("cargo:rerun-if-env-changed=IBSTACK_UPDATE_HEADER");

    // ---- header
    let mut config = cbindgen::Config::from_file(manifest.join("include/cbindgen.toml"))
        .expect("include/cbindgen.toml is unreadable");
    config.after_includes = Some(format!(
        "\n#define IBSTACK_VERSION_MAJOR {major}\n#define IBSTACK_VERSION_MINOR {minor}\n\
         #define IBSTACK_VERSION_PATCH {patch}\n#define IBSTACK_VERSION_STRING \"{version}\"\n"
    ));
    let header = out.join("ibstack.h");
    cbindgen::Builder::new()
        .with_crate(&manifest)
        .with_config(config)
        .generate()
        .expect("cbindgen failed to generate ibstack.h")
        .write_to_file(&header);
    if env::var("IBSTACK_UPDATE_HEADER").map(|v| v == "1").unwrap_or(false) {
        fs::copy(&header, manifest.join("include/ibstack.h")).expect("cannot update include/ibstack.h");
    }

    // ---- pkg-config template (prefix filled in by whoever installs it)
    let pc_in = fs::read_to_string(manifest.join("pkgconfig/ibstack.pc.in")).expect("pkgconfig/ibstack.pc.in");
    let pc = pc_in
        .replace("@VERSION@", &version)
        .replace("@PREFIX@", "/usr/local")
        .replace("@LIBDIR@", "${prefix}/lib")
        .replace("@INCLUDEDIR@", "${prefix}/include");
    fs::write(out.join("ibstack.pc"), pc).unwrap();

    // ---- soname and exported symbols of the cdylib (rustc-link-arg, not
    // rustc-cdylib-link-arg: cargo passes the latter on to every cdylib that
    // depends on this package, such as libibstack_preload.so)
    let map = out.join("ibstack.map");
    fs::write(&map, format!("IBSTACK_{major} {{\n  global:\n    ibstack_*;\n  local:\n    *;\n}};\n")).unwrap();
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,-soname,libibstack.so.{major}");
        println!("cargo:rustc-link-arg=-Wl,--version-script={}", map.display());
    }
    println!("cargo:rustc-env=IBSTACK_RDMA_SYS_VERSION=0.3.0");
}
