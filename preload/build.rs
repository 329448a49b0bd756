//! The guard is for LD_PRELOAD only: its version scripts export exactly the
//! libibverbs functions it interposes and keep everything else (the ibstack
//! code inside, its ibstack_* C API included) local. The script names each
//! function under libibverbs' own version node; rustc's anonymous export list
//! (rust-lld merges it first) leaves the definitions unversioned, and the
//! dynamic loader binds a versioned reference (ibv_modify_qp@IBVERBS_1.1 in
//! Ceph) to an unversioned definition of the same name, so either way a
//! preloaded guard is found first. scripts/guard-vm checks the exported set.

use std::env;
use std::fs;
use std::path::PathBuf;

/// (version node, symbols) as libibverbs.so.1 defines them.
const EXPORTS: &[(&str, &[&str])] = &[
    (
        "IBVERBS_1.1",
        &[
            "ibv_get_device_list",
            "ibv_open_device",
            "ibv_reg_mr",
            "ibv_modify_qp",
            "ibv_create_qp",
            "ibv_create_srq",
            "ibv_create_cq",
        ],
    ),
    ("IBVERBS_1.7", &["ibv_reg_mr_iova"]),
    ("IBVERBS_1.8", &["ibv_reg_mr_iova2"]),
    // transparent mode's socket functions, under glibc's own version nodes so
    // that a program's versioned references (read@GLIBC_2.2.5) bind to them
    (
        "GLIBC_2.2.5",
        &[
            "connect", "listen", "accept", "read", "readv", "recv", "recvfrom", "recvmsg", "write", "writev",
            "send", "sendto", "sendmsg", "close", "dup2", "shutdown", "getsockname", "getpeername",
            "getsockopt", "setsockopt", "fcntl", "ioctl",
        ],
    ),
    ("GLIBC_2.3.2", &["epoll_ctl"]),
    ("GLIBC_2.10", &["accept4"]),
    ("GLIBC_2.28", &["fcntl64"]),
];

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let header = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../include/ibstack.h");
    println!("cargo:rerun-if-changed={}", header.display());
    let text = fs::read_to_string(&header).expect("include/ibstack.h");
    // every `ibstack_name(` in the header: the C API's functions
    let mut hidden: Vec<String> = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(off) = text[i..].find("ibstack_") {
        let start = i + off;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        let word_start = start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        if word_start && b.get(end) == Some(&b'(') && !hidden.iter().any(|h| h == &text[start..end]) {
            hidden.push(text[start..end].to_string());
        }
        i = end.max(start + 1);
    }
    let mut map = String::new();
    let mut prev: Option<&str> = None;
    for (i, (node, syms)) in EXPORTS.iter().enumerate() {
        map.push_str(&format!("{node} {{\n  global:\n"));
        for s in *syms {
            map.push_str(&format!("    {s};\n"));
        }
        if i == 0 {
            map.push_str("  local:\n    *;\n");
        }
        match prev {
            Some(p) => map.push_str(&format!("}} {p};\n")),
            None => map.push_str("};\n"),
        }
        prev = Some(node);
    }
    let path = out.join("ibstack_preload.map");
    fs::write(&path, map).unwrap();
    // rustc's own version script lists every #[no_mangle] function of the
    // crates inside (the ibstack_* C API of the ibstack rlib) as global; a
    // script naming them as local takes them back out (rust-lld: an exact
    // local name wins)
    let mut local = String::from("{\n  local:\n");
    for f in &hidden {
        local.push_str(&format!("    {f};\n"));
    }
    local.push_str("};\n");
    let hidden_path = out.join("ibstack_preload_hidden.map");
    fs::write(&hidden_path, local).unwrap();
    println!("cargo:rerun-if-changed=build.rs");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libibstack_preload.so");
        println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={}", path.display());
        println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={}", hidden_path.display());
    }
}
