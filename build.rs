//! Build script: generates `ibstack.h` with cbindgen into OUT_DIR (copied into
//! `include/` only when IBSTACK_UPDATE_HEADER=1), renders the pkg-config file,
//! and gives the shared library its soname and a version script that exports
//! only `ibstack_*`, under the version nodes of `abi/ibstack.abi`.

use std::env;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

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
    println!("cargo:rerun-if-changed=abi/ibstack.abi");
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

    // ---- soname, exported symbols and their version nodes (the cdylib)
    // The soname's major changes only on an incompatible ABI change; symbols are versioned:
    // every node of abi/ibstack.abi lists its functions, the node of the current minor
    // version (IBSTACK_<major>.<minor>) also takes any new ibstack_* function (which
    // scripts/abi-check then reports until it is listed). Older nodes are explicit, so
    // a function removed from a released node breaks the link.
    let current = format!("IBSTACK_{major}.{minor}");
    // (rustc-link-arg, not rustc-cdylib-link-arg: cargo passes the latter on to every
    // cdylib that depends on this package, such as libibstack_preload.so)
    let map = out.join("ibstack.map");
    fs::write(&map, version_script(&manifest.join("abi/ibstack.abi"), &current)).unwrap();
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,-soname,libibstack.so.{major}");
        println!("cargo:rustc-link-arg=-Wl,--version-script={}", map.display());
        version_script_only(&out, &map);
    }
    println!("cargo:rustc-env=IBSTACK_RDMA_SYS_VERSION=0.3.0");
}

/// The version script: one node per version named in the ABI list (oldest first, each
/// inheriting the previous one), `ibstack_*` in the current node, everything else local.
fn version_script(list: &Path, current: &str) -> String {
    let text = fs::read_to_string(list).expect("abi/ibstack.abi is unreadable");
    let mut nodes: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (node, proto) = line.split_once(char::is_whitespace).expect("abi/ibstack.abi: <node> <prototype>");
        let name = function_name(proto).unwrap_or_else(|| panic!("abi/ibstack.abi: no ibstack_ function in {line:?}"));
        match nodes.iter_mut().find(|(n, _)| n == node) {
            Some((_, syms)) => syms.push(name),
            None => nodes.push((node.to_string(), vec![name])),
        }
    }
    if !nodes.iter().any(|(n, _)| n == current) {
        nodes.push((current.to_string(), Vec::new()));
    }
    let key = |n: &str| -> (u32, u32) {
        let v = n.trim_start_matches("IBSTACK_");
        let (a, b) = v.split_once('.').unwrap_or((v, "0"));
        (a.parse().unwrap_or(0), b.parse().unwrap_or(0))
    };
    nodes.sort_by_key(|(n, _)| key(n));
    let mut script = String::new();
    let mut previous: Option<&str> = None;
    for (node, syms) in &nodes {
        script.push_str(&format!("{node} {{\n  global:\n"));
        if node == current {
            script.push_str("    ibstack_*;\n");
        } else {
            for s in syms {
                script.push_str(&format!("    {s};\n"));
            }
        }
        if previous.is_none() {
            script.push_str("  local:\n    *;\n");
        }
        match previous {
            Some(p) => script.push_str(&format!("}} {p};\n")),
            None => script.push_str("};\n"),
        }
        previous = Some(node);
    }
    script
}

/// The function a prototype declares: the first `ibstack_<ident>` followed by `(`.
fn function_name(proto: &str) -> Option<String> {
    let mut rest = proto;
    while let Some(i) = rest.find("ibstack_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        if tail[end..].starts_with('(') {
            return Some(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    None
}

/// rustc hands the linker its own anonymous version script (`{ global: <every exported
/// fn>; local: *; };`) besides ours, and lld (rustc's default linker on x86_64 Linux
/// since 1.90) gives that script's exact names precedence over our nodes: the symbols
/// would stay unversioned. So the cdylib is linked through a small wrapper (found by the
/// compiler driver as `ld.bfd` via -B) that drops every --version-script but ours, then
/// runs rustc's rust-lld when the toolchain has one, else the system's ld.bfd.
fn version_script_only(out: &Path, map: &Path) {
    let dir = out.join("ld-wrap");
    fs::create_dir_all(&dir).unwrap();
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let host = env::var("HOST").unwrap_or_default();
    let lld = format!("{sysroot}/lib/rustlib/{host}/bin/gcc-ld/ld.lld");
    let wrapper = dir.join("ld.bfd");
    let body = r#"#!/bin/sh
# Written by ibstack's build.rs: links libibstack.so with its own version script only.
map='@MAP@'
for a do
    shift
    case "$a" in --version-script=*) [ "${a#--version-script=}" = "$map" ] || continue ;; esac
    set -- "$@" "$a"
done
[ -x '@LLD@' ] && exec '@LLD@' "$@"
exec /usr/bin/env ld.bfd "$@"
"#
    .replace("@MAP@", &map.display().to_string())
    .replace("@LLD@", &lld);
    fs::write(&wrapper, body).unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    println!("cargo:rustc-link-arg=-fuse-ld=bfd");
    println!("cargo:rustc-link-arg=-B{}/", dir.display());
}
