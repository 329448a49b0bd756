//! Replays every input the fuzzers keep (`fuzz/regressions/<target>/`:
//! crashes once found, and seeds) through the same property checks, and runs
//! a seeded batch of random and mutated inputs, so `cargo test` on a stable
//! toolchain guards what the fuzzers found. The coverage-guided runs are
//! `scripts/fuzz` (bounded in the test command, longer by hand).

mod fuzz_checks;

use std::path::Path;

fn kept_inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions").join(target);
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            out.push((e.path().display().to_string(), std::fs::read(e.path()).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn kept_inputs_still_pass() {
    let mut total = 0;
    for (target, check) in fuzz_checks::TARGETS {
        let inputs = kept_inputs(target);
        assert!(!inputs.is_empty(), "fuzz/regressions/{target}/ has no inputs (it keeps at least the seeds)");
        for (name, data) in inputs {
            let r = std::panic::catch_unwind(|| check(&data));
            assert!(r.is_ok(), "{target}: kept input {name} fails again");
            total += 1;
        }
    }
    println!("replayed {total} kept inputs");
}

/// Small deterministic mutator: the kept inputs with bytes flipped,
/// inserted, deleted and spliced, plus plain random bytes.
#[test]
fn seeded_mutations_pass() {
    let seed: u64 = std::env::var("IBSTACK_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x1b57_ac4);
    let rounds: usize = std::env::var("IBSTACK_FUZZ_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3000);
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for (target, check) in fuzz_checks::TARGETS {
        let pool: Vec<Vec<u8>> = kept_inputs(target).into_iter().map(|(_, d)| d).collect();
        for round in 0..rounds {
            let mut d = if round % 8 == 0 || pool.is_empty() {
                (0..next() % 100).map(|_| next() as u8).collect()
            } else {
                pool[next() as usize % pool.len()].clone()
            };
            for _ in 0..=next() % 4 {
                let at = if d.is_empty() { 0 } else { next() as usize % d.len() };
                match next() % 4 {
                    0 if !d.is_empty() => d[at] ^= 1 << (next() % 8),
                    1 => d.insert(at, next() as u8),
                    2 if !d.is_empty() => {
                        d.remove(at);
                    }
                    _ => {
                        let other = &pool[next() as usize % pool.len().max(1)..].first().cloned().unwrap_or_default();
                        let cut = if other.is_empty() { 0 } else { next() as usize % other.len() };
                        d.extend_from_slice(&other[cut..]);
                    }
                }
            }
            let r = std::panic::catch_unwind(|| check(&d));
            assert!(r.is_ok(), "{target}: seed {seed} round {round} fails on input {:?}", String::from_utf8_lossy(&d));
        }
    }
}
