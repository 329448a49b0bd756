//! Pool benchmark: get+return pairs per second for the TX cluster and the RX
//! pool with 1 and 2 threads, next to a mutex-protected Vec free list (the
//! shape of Ceph's Cluster: std::mutex around a vector) in the same run.
//! Uses the host test registrar, so no device is needed.
//!
//!     cargo bench --bench mem_pool            (IBSTACK_BENCH_SECS=2 for longer runs)

use ibstack::config::Config;
use ibstack::mem::{HostRegistrar, MemoryManager};
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn run(threads: usize, secs: f64, op: impl Fn() + Sync) -> f64 {
    let barrier = Barrier::new(threads);
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let end = Instant::now() + Duration::from_secs_f64(secs);
                    let mut n = 0u64;
                    while Instant::now() < end {
                        for _ in 0..4096 {
                            op();
                        }
                        n += 4096;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total as f64 / secs / threads as f64
}

fn main() {
    let secs: f64 = std::env::var("IBSTACK_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let cfg = Config { buffer_size: 4096, receive_buffers: 4096, rx_first_block: 1024, ..Config::default() };
    let mm = MemoryManager::new(&cfg, 1024, Arc::new(HostRegistrar::new(None))).unwrap();
    // warm the RX pool so the benchmark measures the fast path only
    let warm: Vec<_> = (0..1024).map(|_| mm.rx.get().unwrap()).collect();
    for p in warm {
        mm.rx.release(p).unwrap();
    }
    let std_vec = std::sync::Mutex::new((0..1024usize).collect::<Vec<_>>());
    let pl_vec = parking_lot::Mutex::new((0..1024usize).collect::<Vec<_>>());

    let tx = || {
        let c = mm.tx.get_one().unwrap();
        black_box(c);
        mm.tx.put(&[c]).unwrap();
    };
    let rx = || {
        let c = mm.rx.get().unwrap();
        black_box(c);
        mm.rx.release(c).unwrap();
    };
    let base_std = || {
        let i = std_vec.lock().unwrap().pop().unwrap();
        black_box(i);
        std_vec.lock().unwrap().push(i);
    };
    let base_pl = || {
        let i = pl_vec.lock().pop().unwrap();
        black_box(i);
        pl_vec.lock().push(i);
    };

    println!("get+return pairs per second per thread ({secs:.1} s per cell, {} cores)", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
    println!("{:<40} {:>14} {:>14}", "pool", "1 thread", "2 threads");
    let mut rows = Vec::new();
    for (name, f) in [
        ("ibstack TX cluster", &tx as &(dyn Fn() + Sync)),
        ("ibstack RX pool", &rx),
        ("baseline: std::sync::Mutex<Vec>", &base_std),
        ("baseline: parking_lot::Mutex<Vec>", &base_pl),
    ] {
        let one = run(1, secs, f);
        let two = run(2, secs, f);
        println!("{name:<40} {:>12.1} M {:>12.1} M", one / 1e6, two / 1e6);
        rows.push((name, one, two));
    }
    let get = |n: &str| rows.iter().find(|r| r.0 == n).unwrap();
    for pool in ["ibstack TX cluster", "ibstack RX pool"] {
        for base in ["baseline: std::sync::Mutex<Vec>", "baseline: parking_lot::Mutex<Vec>"] {
            println!(
                "{pool} / {}: {:.2}x with 1 thread, {:.2}x with 2 threads",
                base.trim_start_matches("baseline: "),
                get(pool).1 / get(base).1,
                get(pool).2 / get(base).2
            );
        }
    }
    let s = mm.stats();
    assert_eq!((s.tx_in_use, s.rx_in_use), (0, 0));
}
