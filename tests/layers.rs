//! The module layers point down only. Each top-level module of `src/` has a
//! rank; a file may name (`crate::x::…`) its own module or a module of a
//! lower rank, never one of the same or a higher rank. `rdma_sys` is named
//! only under `src/verbs/`. The layer picture is the README's Layout section.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// (module, rank): lower ranks are nearer the operating system.
const LAYERS: &[(&str, u32)] = &[
    // shared helpers, beside every layer
    ("errno", 0),
    ("text", 0),
    ("cycles", 0),
    ("qpn_map", 0),
    ("error", 1),
    ("sys", 2),
    // options, perf counters, the C boundary kit; QP timelines
    ("config", 3),
    ("counters", 3),
    ("ffi", 3),
    ("history", 4),
    // raw libibverbs, then the process prerequisites
    ("verbs", 5),
    ("prereq", 6),
    // GIDs as addresses (doctor, ib and the per-connection choice)
    ("gid", 6),
    // device, pools, the cm_meta wire codec
    ("ib", 7),
    ("mem", 7),
    ("handshake", 7),
    ("qp", 8),
    ("dispatcher", 9),
    ("stack", 10),
    ("capi", 11),
    // host checks against a ceph.conf (ibstack-doctor and the guard), beside capi
    ("doctor", 11),
];

/// Names the crate root re-exports, and the module each comes from.
const ROOT_ITEMS: &[(&str, &str)] = &[
    ("Error", "error"),
    ("Result", "error"),
    ("errno_name", "errno"),
    ("ffi_boundary", "ffi"),
    ("fn_name", "ffi"),
    ("VERSION", "errno"), // defined in lib.rs itself, which is above nothing
];

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its comments (line comments and doc comments).
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| (i + 1, l.split("//").next().unwrap_or(""))).filter(|(_, l)| !l.trim().is_empty())
}

/// Every `crate::name` in `line`.
fn crate_refs(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + 7..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `$crate::` in a macro, or `my_crate::`
        }
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

#[test]
fn no_module_names_a_layer_above_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rank: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let root_items: BTreeMap<&str, &str> = ROOT_ITEMS.iter().copied().collect();
    let mut files = Vec::new();
    rs_files(&root, &mut files);
    let mut problems = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap();
        let module = rel.components().next().unwrap().as_os_str().to_str().unwrap().trim_end_matches(".rs");
        if module == "lib" {
            continue;
        }
        let Some(&mine) = rank.get(module) else {
            problems.push(format!("{}: module `{module}` has no layer in tests/layers.rs", rel.display()));
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in code_lines(&text) {
            for name in crate_refs(line) {
                let target = root_items.get(name.as_str()).copied().unwrap_or(name.as_str());
                if target == module {
                    continue;
                }
                match rank.get(target) {
                    Some(&r) if r < mine => {}
                    Some(&r) => problems.push(format!(
                        "{}:{n}: `{module}` (layer {mine}) names `crate::{name}` (layer {r}): {}",
                        rel.display(),
                        line.trim()
                    )),
                    None => problems.push(format!("{}:{n}: `crate::{name}` is not a known module", rel.display())),
                }
            }
            if line.contains("rdma_sys") && module != "verbs" {
                problems.push(format!("{}:{n}: rdma_sys outside src/verbs/: {}", rel.display(), line.trim()));
            }
        }
    }
    assert!(problems.is_empty(), "layering violations:\n{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_upward_references() {
    assert_eq!(crate_refs("use crate::qp::{Env, QueuePair}; let x = crate::verbs::Wc::default();"), ["qp", "verbs"]);
    assert!(crate_refs("$crate::ffi::log::ensure_installed()").is_empty());
    assert_eq!(code_lines("// use crate::capi::x;\nlet a = 1; // crate::stack\n").count(), 1);
}
