//! Errors for unknown option names, with a suggestion of the option that
//! was probably meant (a case mistake, a small misspelling, a missing
//! prefix or a wrong last word).

use super::{find_option, OPTIONS};
use crate::error::Error;

pub(super) fn unknown_option(key: &str) -> Error {
    if key.is_empty() {
        return Error::inval("no option name given");
    }
    Error::inval(format!("unknown option {key:?}{}", suggestion_text(key)))
}

pub(super) fn suggestion_text(key: &str) -> String {
    match suggest(key) {
        Some((name, true)) => format!("; did you mean {name}? (option names are case-sensitive)"),
        Some((name, false)) => format!("; did you mean {name}?"),
        None => String::new(),
    }
}

/// A close option name for an unknown key, and whether it differs only in case.
fn suggest(key: &str) -> Option<(&'static str, bool)> {
    let k = key.to_ascii_lowercase();
    if k.is_empty() {
        return None;
    }
    if let Some(o) = find_option(&k) {
        return Some((o.name, true));
    }
    // A small misspelling: "ms_async_rdma_gid_index", "ms_async_rdma_bufer_size".
    let best = OPTIONS
        .iter()
        .map(|o| (edit_distance(&k, o.name), o.name))
        .min_by_key(|&(d, _)| d)?;
    if best.0 <= 3 && best.0 * 3 <= k.len() {
        return Some((best.1, false));
    }
    let unique = |pred: &dyn Fn(&str) -> bool| {
        let mut it = OPTIONS.iter().filter(|o| pred(o.name));
        match (it.next(), it.next()) {
            (Some(o), None) => Some((o.name, false)),
            _ => None,
        }
    };
    // The name without its prefix: "port_num" for "ms_async_rdma_port_num".
    let suffix = format!("_{k}");
    if let Some(s) = unique(&|n: &str| n.ends_with(&suffix)) {
        return Some(s);
    }
    // Only the last word is wrong: "ibstack_cq_size" for "ibstack_cq_depth".
    let (stem, _) = k.rsplit_once('_')?;
    if stem.contains('_') {
        let stem = format!("{stem}_");
        return unique(&|n: &str| n.starts_with(&stem));
    }
    None
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a = a.as_bytes();
    let b = b.as_bytes();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let sub = prev[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}
