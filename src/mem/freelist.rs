//! A sharded lock-free free list of chunk indices (Treiber stacks with an
//! ABA tag). Each thread pushes to and pops from its own shard first and
//! steals from the others when that one is empty, so get/return of an
//! already-registered chunk takes no lock and, with one shard per thread,
//! touches no cache line another thread is writing.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::*};

/// Where the free-list links live: the chunk headers.
pub(crate) trait Links {
    fn link(&self, index: u32) -> &AtomicU32;
}

#[repr(align(128))]
struct Shard {
    /// high 32 bits: ABA tag; low 32 bits: index + 1 of the top, 0 = empty.
    head: AtomicU64,
}

pub(crate) struct FreeList {
    shards: Box<[Shard]>,
    /// shards.len() − 1; the shard count is a power of two so picking one is a mask, not a division.
    mask: usize,
}

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static THREAD_SLOT: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

fn thread_slot() -> usize {
    THREAD_SLOT.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT_THREAD.fetch_add(1, Relaxed);
        s.set(v);
        v
    })
}

impl FreeList {
    pub(crate) fn new() -> FreeList {
        let n = (std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(2, 16) * 2).next_power_of_two();
        FreeList { shards: (0..n).map(|_| Shard { head: AtomicU64::new(0) }).collect(), mask: n - 1 }
    }

    fn home(&self) -> usize {
        thread_slot() & self.mask
    }

    fn push_to(&self, shard: &Shard, links: &dyn Links, index: u32) {
        let mut head = shard.head.load(Relaxed);
        loop {
            links.link(index).store(head as u32, Relaxed);
            let new = ((head >> 32).wrapping_add(1) << 32) | (index as u64 + 1);
            match shard.head.compare_exchange_weak(head, new, Release, Relaxed) {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    fn pop_from(&self, shard: &Shard, links: &dyn Links) -> Option<u32> {
        let mut head = shard.head.load(Acquire);
        loop {
            let top = head as u32;
            if top == 0 {
                return None;
            }
            let next = links.link(top - 1).load(Relaxed);
            let new = ((head >> 32).wrapping_add(1) << 32) | next as u64;
            match shard.head.compare_exchange_weak(head, new, Acquire, Acquire) {
                Ok(_) => return Some(top - 1),
                Err(h) => head = h,
            }
        }
    }

    /// Give `index` back (to the calling thread's shard).
    pub(crate) fn push(&self, links: &dyn Links, index: u32) {
        self.push_to(&self.shards[self.home()], links, index);
    }

    /// Spread initial entries over the shards so the first takers do not all steal.
    pub(crate) fn push_spread(&self, links: &dyn Links, indices: impl Iterator<Item = u32>) {
        for (i, index) in indices.enumerate() {
            self.push_to(&self.shards[i & self.mask], links, index);
        }
    }

    /// Take a free index: own shard first, then the others.
    pub(crate) fn pop(&self, links: &dyn Links) -> Option<u32> {
        let home = self.home();
        if let Some(i) = self.pop_from(&self.shards[home], links) {
            return Some(i);
        }
        (1..self.shards.len()).find_map(|k| self.pop_from(&self.shards[(home + k) & self.mask], links))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Arr(Vec<AtomicU32>);
    impl Links for Arr {
        fn link(&self, i: u32) -> &AtomicU32 {
            &self.0[i as usize]
        }
    }

    #[test]
    fn pops_everything_pushed_exactly_once() {
        let links = Arr((0..100).map(|_| AtomicU32::new(0)).collect());
        let fl = FreeList::new();
        fl.push_spread(&links, 0..100);
        let mut seen = vec![false; 100];
        while let Some(i) = fl.pop(&links) {
            assert!(!seen[i as usize], "index {i} popped twice");
            seen[i as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        fl.push(&links, 42);
        assert_eq!(fl.pop(&links), Some(42));
        assert_eq!(fl.pop(&links), None);
    }

    #[test]
    fn concurrent_threads_never_share_an_index() {
        use std::sync::atomic::AtomicBool;
        const N: usize = 64;
        let links = Arr((0..N).map(|_| AtomicU32::new(0)).collect());
        let owned: Vec<AtomicBool> = (0..N).map(|_| AtomicBool::new(false)).collect();
        let fl = FreeList::new();
        fl.push_spread(&links, 0..N as u32);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    for round in 0..200_000u32 {
                        if round % 3 != 2 {
                            if let Some(i) = fl.pop(&links) {
                                assert!(!owned[i as usize].swap(true, SeqCst), "index {i} handed out twice");
                                mine.push(i);
                            }
                        } else if let Some(i) = mine.pop() {
                            owned[i as usize].store(false, SeqCst);
                            fl.push(&links, i);
                        }
                    }
                    for i in mine {
                        owned[i as usize].store(false, SeqCst);
                        fl.push(&links, i);
                    }
                });
            }
        });
        let mut count = 0;
        while fl.pop(&links).is_some() {
            count += 1;
        }
        assert_eq!(count, N, "every index came back");
    }
}
