//! Host tests of the pools against the test registrar.

use super::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

fn cfg(buffer_size: u64, receive_buffers: u32, first: u32) -> Config {
    Config { buffer_size, receive_buffers, rx_first_block: first, ..Config::default() }
}

fn refs(s: &[Option<ChunkRef>]) -> Vec<ChunkRef> {
    s.iter().map(|c| c.expect("taken")).collect()
}

fn mm(tx: u32, rx_limit: u32, first: u32) -> (MemoryManager, Arc<HostRegistrar>) {
    let reg = Arc::new(HostRegistrar::new(None));
    (MemoryManager::new(&cfg(4096, rx_limit, first), tx, reg.clone()).unwrap(), reg)
}

#[test]
fn tx_takes_ceil_bytes_over_buffer_size() {
    let (m, _) = mm(8, 16, 4);
    let mut out = [None; 8];
    assert_eq!(m.tx.get(1, &mut out).unwrap(), 1);
    assert_eq!(m.tx.get(4096, &mut out[1..]).unwrap(), 1);
    assert_eq!(m.tx.get(4097, &mut out[2..]).unwrap(), 2);
    assert_eq!(m.tx.get(0, &mut out[4..]).unwrap(), 0, "zero bytes takes nothing");
    let s = m.stats();
    assert_eq!((s.tx_total, s.tx_in_use, s.tx_free), (8, 4, 4));
    m.tx.put(&refs(&out[..4])).unwrap();
    assert_eq!(m.stats().tx_in_use, 0);
}

#[test]
fn tx_partial_then_eagain() {
    let (m, _) = mm(3, 16, 4);
    let mut out = [None; 8];
    assert_eq!(m.tx.get(5 * 4096, &mut out).unwrap(), 3, "partial: as many as are free");
    let e = m.tx.get(1, &mut out[3..]).unwrap_err();
    assert_eq!(e.errno, libc::EAGAIN);
    assert!(e.msg.contains("all 3 are in flight"), "{}", e.msg);
    assert_eq!(m.stats().tx_exhausted, 1);
    let mut small = [None; 1];
    m.tx.put(&refs(&out[..1])).unwrap();
    assert_eq!(m.tx.get(10 * 4096, &mut small).unwrap(), 1, "capped by the output array");
}

#[test]
fn tx_chunks_are_distinct_registered_buffers_reset_for_writing() {
    let (m, _) = mm(4, 16, 4);
    let mut out = [None; 4];
    assert_eq!(m.tx.get(4 * 4096, &mut out).unwrap(), 4);
    let mut bufs = HashSet::new();
    for &p in &out {
        let c = p.unwrap();
        assert!(bufs.insert(c.buffer() as usize));
        assert!(m.tx.is_tx_buffer(c.buffer()));
        assert_eq!(c.lkey(), m.tx.lkey());
        assert_eq!((c.offset(), c.bound(), c.capacity()), (0, 4096, 4096));
        assert_eq!(Some(m.tx.chunk_by_buffer(unsafe { c.buffer().add(100) }).unwrap()), p);
        unsafe { c.write(b"payload") };
    }
    m.tx.put(&refs(&out)).unwrap();
    assert_eq!(m.tx.get(4 * 4096, &mut out).unwrap(), 4);
    for &p in &out {
        assert_eq!(p.unwrap().offset(), 0, "returned chunks come back reset");
    }
}

#[test]
fn tx_buffer_lookups_are_range_checked() {
    let (m, _) = mm(2, 16, 4);
    let mut out = [None; 1];
    m.tx.get(1, &mut out).unwrap();
    let base = out[0].unwrap().buffer();
    let local = [0u8; 4];
    assert!(!m.tx.is_tx_buffer(local.as_ptr()));
    assert!(m.tx.chunk_by_buffer(local.as_ptr()).is_none());
    let first = m.tx.chunk_by_buffer(base).unwrap().buffer() as usize;
    let region_start = first.min(base as usize) - (first.min(base as usize) % 4096);
    assert!(m.tx.chunk_by_buffer((region_start + 2 * 4096) as *const u8).is_none(), "one past the end");
}

#[test]
fn tx_double_return_and_foreign_pointer_are_rejected() {
    let (m, _) = mm(4, 16, 4);
    let mut out = [None; 2];
    m.tx.get(2 * 4096, &mut out).unwrap();
    m.tx.put(&refs(&out[..1])).unwrap();
    let e = m.tx.put(&refs(&out[..1])).unwrap_err();
    assert_eq!(e.errno, libc::EINVAL);
    assert!(e.msg.contains("returned twice"), "{}", e.msg);
    let fake = Chunk::new(std::ptr::null_mut(), 4096, 0, 0, ChunkKind::Tx);
    let e = m.tx.put_wr_ids([&fake as *const Chunk as u64, out[1].unwrap().wr_id()]).unwrap_err();
    assert!(e.msg.contains("not a TX chunk of this pool"), "{}", e.msg);
    assert_eq!(m.stats().tx_in_use, 0, "the valid chunk of the batch was still returned");
    let mid = out[0].unwrap().wr_id() + 8;
    assert!(m.tx.put_wr_ids([mid]).is_err(), "a pointer inside a header is foreign");
    // free list not corrupted: exactly 4 distinct chunks can be taken
    let mut all = [None; 8];
    assert_eq!(m.tx.get(8 * 4096, &mut all).unwrap(), 4);
    assert_eq!(all[..4].iter().map(|p| p.unwrap().wr_id()).collect::<HashSet<_>>().len(), 4);
}

#[test]
fn rx_grows_in_blocks_up_to_the_limit() {
    let (m, reg) = mm(2, 10, 4);
    assert_eq!(m.stats().rx_allocated, 0, "nothing registered before first use");
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(m.rx.get().unwrap());
    }
    let s = m.stats();
    assert_eq!((s.rx_allocated, s.rx_blocks, s.rx_in_use), (4, 1, 4));
    held.push(m.rx.get().unwrap());
    let s = m.stats();
    assert_eq!((s.rx_allocated, s.rx_blocks), (10, 2), "second block doubles, capped at the limit (4 + 6)");
    while held.len() < 10 {
        held.push(m.rx.get().unwrap());
    }
    let e = m.rx.get().unwrap_err();
    assert_eq!(e.errno, libc::ENOBUFS);
    assert!(e.msg.contains("allocated 10, requested 1 more, limit 10"), "{}", e.msg);
    assert_eq!(m.stats().rx_exhausted, 1);
    // recovery after release
    m.rx.release(held.pop().unwrap()).unwrap();
    let c = m.rx.get().unwrap();
    assert_eq!((c.offset(), c.bound()), (0, 0), "RX chunks come back with nothing to read");
    assert_eq!(reg.live_bytes(), (2 + 10) * 4096);
    assert_eq!(m.stats().bytes_pinned, (2 + 10) * 4096);
    assert_eq!(m.stats().registrations, 3);
}

#[test]
fn rx_release_twice_or_foreign_is_einval() {
    let (m, _) = mm(2, 8, 4);
    let c = m.rx.get().unwrap();
    m.rx.release(c).unwrap();
    let e = m.rx.release(c).unwrap_err();
    assert!(e.msg.contains("released twice"), "{}", e.msg);
    let mut out = [None; 1];
    m.tx.get(1, &mut out).unwrap();
    assert!(m.rx.release(out[0].unwrap()).unwrap_err().msg.contains("not an RX chunk"));
    assert!(m.tx.put(&[m.rx.get().unwrap()]).is_err(), "an RX chunk is not a TX chunk");
}

#[test]
fn rx_first_block_rule() {
    // ibstack default: 256 buffers; Ceph's rule (0): min(receive_buffers, 2 x receive_queue_len)
    let reg = Arc::new(HostRegistrar::new(None));
    let m = MemoryManager::new(&cfg(4096, 32768, 256), 1, reg.clone()).unwrap();
    m.rx.get().unwrap();
    assert_eq!(m.stats().rx_allocated, 256);
    let m = MemoryManager::new(&cfg(4096, 32768, 0), 1, reg.clone()).unwrap();
    m.rx.get().unwrap();
    assert_eq!(m.stats().rx_allocated, 8192, "Ceph's rule: 2 x 4096");
    let m = MemoryManager::new(&cfg(4096, 100, 0), 1, reg).unwrap();
    m.rx.get().unwrap();
    assert_eq!(m.stats().rx_allocated, 100);
}

#[test]
fn memlock_too_low_for_tx_names_limit_need_and_fixes() {
    let reg = Arc::new(HostRegistrar::new(Some(8 << 20)));
    let e = MemoryManager::new(&cfg(131072, 32768, 256), 1024, reg.clone()).err().unwrap();
    assert_eq!(e.errno, libc::ENOMEM);
    for needle in ["134217728 bytes (128.0 MiB)", "8388608 bytes (8.0 MiB)", "LimitMEMLOCK=infinity", "ulimit -l", "send_buffers"] {
        assert!(e.msg.contains(needle), "{needle} missing in: {}", e.msg);
    }
    assert_eq!(reg.live_bytes(), 0);
}

#[test]
fn rx_block_shrinks_to_fit_memlock_then_reports_enomem() {
    let reg = Arc::new(HostRegistrar::new(Some(20 * 4096)));
    let m = MemoryManager::new(&cfg(4096, 0, 16), 2, reg.clone()).unwrap();
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(m.rx.get().unwrap());
    }
    held.push(m.rx.get().unwrap()); // wants 32, only 2 fit
    assert_eq!(m.stats().rx_allocated, 18);
    held.push(m.rx.get().unwrap());
    let e = m.rx.get().unwrap_err();
    assert_eq!(e.errno, libc::ENOMEM);
    assert!(e.msg.contains("RLIMIT_MEMLOCK"), "{}", e.msg);
    for c in held.drain(..) {
        m.rx.release(c).unwrap();
    }
    assert!(m.rx.get().is_ok(), "pool still usable");
}

#[test]
fn failed_registration_is_an_error_and_the_pool_stays_usable() {
    let (m, reg) = mm(2, 64, 4);
    reg.fail_next();
    let e = m.rx.get().unwrap_err();
    assert_eq!(e.errno, libc::ENOMEM);
    assert!(e.msg.contains("registering RX pool block 0"), "{}", e.msg);
    assert!(e.msg.contains("LimitMEMLOCK"), "{}", e.msg);
    assert_eq!(m.stats().registration_failures, 1);
    assert!(m.rx.get().is_ok());
    assert_eq!(m.stats().rx_allocated, 4);
}

#[test]
fn stats_json_is_complete() {
    let (m, _) = mm(3, 0, 2);
    m.rx.get().unwrap();
    let j = m.stats().to_json();
    assert!(j.starts_with('{') && j.ends_with('}'));
    for k in ["\"tx_total\":3", "\"rx_allocated\":2", "\"rx_in_use\":1", "\"rx_limit\":0", "\"bytes_pinned\":20480"] {
        assert!(j.contains(k), "{k} missing in {j}");
    }
}

#[test]
fn many_threads_never_get_the_same_chunk_twice() {
    let (m, _) = mm(64, 256, 16);
    let n_tx = 64;
    let owners: Vec<AtomicBool> = (0..n_tx + 256).map(|_| AtomicBool::new(false)).collect();
    let tx_base = m.tx.get_one().unwrap();
    m.tx.put(&[tx_base]).unwrap();
    let slot = |c: ChunkRef, kind: ChunkKind| -> usize {
        match kind {
            ChunkKind::Tx => c.index() as usize,
            // blocks hold 16, 32, 64, … chunks: block b starts at 16 × (2^b − 1)
            ChunkKind::Rx => n_tx + 16 * ((1usize << (c.index() >> 24)) - 1) + (c.index() & 0xffffff) as usize,
        }
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    std::thread::scope(|s| {
        for t in 0..4 {
            let m = &m;
            let owners = &owners;
            s.spawn(move || {
                let mut held_tx: Vec<ChunkRef> = Vec::new();
                let mut held_rx: Vec<ChunkRef> = Vec::new();
                let mut k = t as u64;
                while Instant::now() < deadline {
                    for _ in 0..1000 {
                        k = k.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        match (k >> 60) % 4 {
                            0 => {
                                let mut out = [None; 3];
                                if let Ok(n) = m.tx.get(((k >> 20) % (3 * 4096)) as usize + 1, &mut out) {
                                    for p in out[..n].iter().map(|p| p.unwrap()) {
                                        assert!(!owners[slot(p, ChunkKind::Tx)].swap(true, SeqCst), "TX chunk handed out twice");
                                        held_tx.push(p);
                                    }
                                }
                            }
                            1 => {
                                if let Ok(c) = m.rx.get() {
                                    let p = c;
                                    assert!(!owners[slot(p, ChunkKind::Rx)].swap(true, SeqCst), "RX chunk handed out twice");
                                    held_rx.push(p);
                                }
                            }
                            2 => {
                                if let Some(p) = held_tx.pop() {
                                    owners[slot(p, ChunkKind::Tx)].store(false, SeqCst);
                                    m.tx.put(&[p]).unwrap();
                                }
                            }
                            _ => {
                                if let Some(p) = held_rx.pop() {
                                    owners[slot(p, ChunkKind::Rx)].store(false, SeqCst);
                                    m.rx.release(p).unwrap();
                                }
                            }
                        }
                    }
                }
                for p in held_tx {
                    owners[slot(p, ChunkKind::Tx)].store(false, SeqCst);
                    m.tx.put(&[p]).unwrap();
                }
                for p in held_rx {
                    owners[slot(p, ChunkKind::Rx)].store(false, SeqCst);
                    m.rx.release(p).unwrap();
                }
            });
        }
    });
    let s = m.stats();
    assert_eq!((s.tx_in_use, s.rx_in_use), (0, 0), "everything came back: {s:?}");
    assert!(s.rx_allocated <= 256);
}

#[test]
fn tx_state_machine_held_in_flight_free() {
    let (m, _) = mm(4, 16, 4);
    let a = m.tx.get_one().unwrap();
    let b = m.tx.get_one().unwrap();
    assert!(a.is_held() && b.is_held());
    // the same chunk twice in one post: refused, nothing stays marked
    let e = m.tx.mark_in_flight([a, b, a].into_iter()).unwrap_err();
    assert_eq!(e.errno, libc::EINVAL);
    assert!(e.msg.contains("chunks[2]") && e.msg.contains("in flight"), "{}", e.msg);
    assert!(a.is_held() && b.is_held(), "the entries marked before the bad one are held again");
    m.tx.mark_in_flight([a].into_iter()).unwrap();
    // re-posting or returning a chunk in flight
    let e = m.tx.mark_in_flight([b, a].into_iter()).unwrap_err();
    assert!(e.msg.contains("chunks[1]") && e.msg.contains(&format!("{:#x}", a.wr_id())), "{}", e.msg);
    assert!(b.is_held());
    let e = m.tx.put(&[a]).unwrap_err();
    assert!(e.msg.contains("in flight"), "{}", e.msg);
    assert!(m.tx.sent(b).is_err(), "a held chunk has no send to complete");
    // its completion frees it, once
    m.tx.sent(a).unwrap();
    assert!(!a.is_in_use());
    let e = m.tx.sent(a).unwrap_err();
    assert!(e.msg.contains("already free"), "{}", e.msg);
    // a post that failed part-way: the unposted ones are the caller's again
    m.tx.mark_in_flight([b].into_iter()).unwrap();
    m.tx.unmark_in_flight([b].into_iter());
    m.tx.put(&[b]).unwrap();
    assert_eq!(m.stats().tx_in_use, 0);
    let mut seen = HashSet::new();
    while let Some(c) = m.tx.get_one() {
        assert!(seen.insert(c.wr_id()), "a chunk came out of the free list twice");
    }
    assert_eq!(seen.len(), 4);
}

#[test]
fn rx_state_machine_held_posted_free() {
    let (m, _) = mm(4, 16, 4);
    let c = m.rx.get().unwrap();
    m.rx.mark_posted(c).unwrap();
    let e = m.rx.mark_posted(c).unwrap_err();
    assert!(e.msg.contains("posted to a receive queue"), "posting twice: {}", e.msg);
    let e = m.rx.release(c).unwrap_err();
    assert_eq!(e.errno, libc::EINVAL);
    assert!(e.msg.contains("posted to a receive queue") && e.msg.contains(&format!("{:#x}", c.wr_id())), "{}", e.msg);
    assert!(c.is_in_use(), "a refused release leaves it posted");
    // its completion hands it over once
    m.rx.take_posted(c).unwrap();
    assert!(c.is_held());
    assert!(m.rx.take_posted(c).is_err(), "a second completion for it is refused");
    assert!(m.rx.reclaim(c).is_err(), "a held chunk is not reclaimed as posted");
    m.rx.release(c).unwrap();
    assert!(m.rx.release(c).unwrap_err().msg.contains("released twice"));
    assert!(m.rx.take_posted(c).is_err(), "a free chunk was not posted");
    // a posted chunk whose queue is gone
    let d = m.rx.get().unwrap();
    m.rx.mark_posted(d).unwrap();
    m.rx.reclaim(d).unwrap();
    assert_eq!(m.stats().rx_in_use, 0);
    let mut seen = HashSet::new();
    for _ in 0..4 {
        assert!(seen.insert(m.rx.get().unwrap().wr_id()), "a chunk came out twice");
    }
}

#[test]
fn chunk_states_under_concurrent_posters_one_winner() {
    let (m, _) = mm(2, 16, 4);
    let a = m.tx.get_one().unwrap();
    let wins = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                if m.tx.mark_in_flight([a].into_iter()).is_ok() {
                    wins.fetch_add(1, SeqCst);
                }
            });
        }
    });
    assert_eq!(wins.load(SeqCst), 1, "exactly one post of the same chunk wins");
    m.tx.sent(a).unwrap();
}
