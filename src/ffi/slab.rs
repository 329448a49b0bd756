//! The memory C handles point into. Every handle the library gives out is the
//! address of a [`Cell`] in a library-owned slab: segments that are allocated
//! once and never freed, so reading a cell's tag after its object was freed
//! reads library memory (no use-after-free, also under AddressSanitizer), and
//! a pointer is first checked to lie on a cell of a segment before it is read
//! at all (a foreign pointer is never dereferenced).
//!
//! A cell holds its object as an `Arc`: a call clones it under the cell's own
//! short lock (no allocation, no global lock), `_free` takes it out, so a call
//! in progress on another thread keeps the object alive until it returns.
//!
//! Freed cells wait in a FIFO quarantine of [`QUARANTINE`] cells before they
//! are reused, so a stale pointer is recognised as freed until that many more
//! handles were freed after it; past that, it may name a new live object (of
//! the same type, or a different one, which is then reported as the wrong type).

use parking_lot::Mutex;
use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Freed cells kept out of reuse (FIFO) before they may be handed out again.
pub const QUARANTINE: usize = 4096;

/// The object a cell holds, type-erased; the cell's kind says which type.
pub type Object = Arc<dyn Any + Send + Sync>;

/// The magic in the top 32 bits of a cell's tag.
const MAGIC: u64 = 0x4942_4853; // "IBHS"

/// The state a cell's tag records (bits 0..8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Never handed out, or freed.
    Free = 0,
    /// Owned by C: `_free` releases it.
    Owned = 1,
    /// Borrowed from another object (a dispatcher's CQs): `_free` is refused.
    Borrowed = 2,
}

/// One handle: a tag (magic | kind | state), the object, and the fork
/// generation of the process that created it.
pub struct Cell {
    tag: AtomicU64,
    gen: AtomicU32,
    obj: Mutex<Option<Object>>,
}

/// How many times this process is a forked child of a process that used the
/// library (bumped by a pthread_atfork child handler). Handles made in an
/// earlier generation belong to the parent: their QPs, CQs and memory
/// registrations are the parent's (the uverbs fd is shared), the threads that
/// drove them did not survive the fork, and their locks may be held forever.
static FORK_GEN: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_fork_child() {
    FORK_GEN.fetch_add(1, Ordering::SeqCst);
}

/// Register the fork handler (once per process; the first exported call does).
pub fn watch_fork() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: the handler only increments an atomic (async-signal-safe).
        let rc = unsafe { libc::pthread_atfork(None, None, Some(on_fork_child)) };
        if rc != 0 {
            log::warn!("pthread_atfork failed ({rc}): handles used in a forked child are not recognised");
        }
    });
}

/// A cell's tag, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    pub kind: u16,
    pub state: State,
}

fn encode(kind: u16, state: State) -> u64 {
    (MAGIC << 32) | ((kind as u64) << 16) | state as u64
}

impl Cell {
    fn empty() -> Cell {
        Cell { tag: AtomicU64::new(0), gen: AtomicU32::new(0), obj: Mutex::new(None) }
    }

    /// Whether the cell was handed out before this process was forked from
    /// its parent (the object belongs to the parent).
    pub fn inherited(&self) -> bool {
        self.gen.load(Ordering::Acquire) != FORK_GEN.load(Ordering::SeqCst)
    }

    /// The tag, or None when the magic is wrong (a cell never handed out).
    pub fn tag(&self) -> Option<Tag> {
        let t = self.tag.load(Ordering::Acquire);
        if t >> 32 != MAGIC {
            return None;
        }
        let state = match t & 0xff {
            1 => State::Owned,
            2 => State::Borrowed,
            _ => State::Free,
        };
        Some(Tag { kind: ((t >> 16) & 0xffff) as u16, state })
    }

    /// A clone of the object, or None once freed.
    pub fn object(&self) -> Option<Object> {
        self.obj.lock().clone()
    }

    /// Take the object out if the cell is live in `state` and of `kind`;
    /// the cell becomes free (its tag keeps the kind, for messages).
    pub fn take(&self, kind: u16, state: State) -> Option<Object> {
        let mut g = self.obj.lock();
        if self.tag() != Some(Tag { kind, state }) {
            return None;
        }
        self.tag.store(encode(kind, State::Free), Ordering::Release);
        g.take()
    }

    /// The address C holds.
    pub fn addr(&self) -> usize {
        self as *const Cell as usize
    }
}

/// Segment `i` holds `FIRST << i` cells.
const FIRST: usize = 256;
const SEGMENTS: usize = 24;
#[allow(clippy::declare_interior_mutable_const)]
const NO_SEGMENT: AtomicPtr<Cell> = AtomicPtr::new(std::ptr::null_mut());
static SEGMENT: [AtomicPtr<Cell>; SEGMENTS] = [NO_SEGMENT; SEGMENTS];

fn segment_len(i: usize) -> usize {
    FIRST << i
}

/// Allocation state: segments in use, cells never used in the last one, and
/// the quarantine FIFO. Taken only to create or free a handle.
struct Alloc {
    segments: usize,
    next_unused: usize,
    freed: VecDeque<&'static Cell>,
}

static ALLOC: Mutex<Alloc> = Mutex::new(Alloc { segments: 0, next_unused: 0, freed: VecDeque::new() });
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// The cell at `addr`, when it is exactly a cell of a slab segment; nothing
/// is read at `addr` to decide.
pub fn cell_at(addr: usize) -> Option<&'static Cell> {
    let size = std::mem::size_of::<Cell>();
    for (i, seg) in SEGMENT.iter().enumerate() {
        let base = seg.load(Ordering::Acquire);
        if base.is_null() {
            return None;
        }
        let start = base as usize;
        let end = start + segment_len(i) * size;
        if addr >= start && addr < end {
            if (addr - start) % size != 0 {
                return None;
            }
            // SAFETY: `addr` is the address of cell (addr - start) / size of segment i,
            // which is allocated once, initialised, and never freed.
            return Some(unsafe { &*(addr as *const Cell) });
        }
    }
    None
}

/// Place `obj` in a cell (a never-used one, or the oldest freed one once the
/// quarantine is full) tagged `kind`/`state`.
pub fn insert(kind: u16, state: State, obj: Object) -> &'static Cell {
    let cell = {
        let mut a = ALLOC.lock();
        if a.freed.len() > QUARANTINE {
            a.freed.pop_front().expect("non-empty")
        } else {
            if a.segments == 0 || a.next_unused == segment_len(a.segments - 1) {
                if a.segments == SEGMENTS {
                    // 2^32 live handles: reuse the quarantine rather than fail
                    a.freed.pop_front().expect("handle slab exhausted")
                } else {
                    let i = a.segments;
                    let seg: Box<[Cell]> = (0..segment_len(i)).map(|_| Cell::empty()).collect();
                    SEGMENT[i].store(Box::leak(seg).as_mut_ptr(), Ordering::Release);
                    a.segments += 1;
                    a.next_unused = 0;
                    new_cell(&mut a)
                }
            } else {
                new_cell(&mut a)
            }
        }
    };
    let mut g = cell.obj.lock();
    *g = Some(obj);
    cell.gen.store(FORK_GEN.load(Ordering::SeqCst), Ordering::Release);
    cell.tag.store(encode(kind, state), Ordering::Release);
    drop(g);
    LIVE.fetch_add(1, Ordering::Relaxed);
    cell
}

fn new_cell(a: &mut Alloc) -> &'static Cell {
    let i = a.segments - 1;
    let base = SEGMENT[i].load(Ordering::Acquire);
    let idx = a.next_unused;
    a.next_unused += 1;
    // SAFETY: idx < segment_len(i); the segment is leaked, so the cell lives forever.
    unsafe { &*base.add(idx) }
}

/// Put a cell whose object was taken into the quarantine.
pub fn retire(cell: &'static Cell) {
    LIVE.fetch_sub(1, Ordering::Relaxed);
    ALLOC.lock().freed.push_back(cell);
}

/// Handles currently live (for tests and leak reports).
pub fn live_count() -> usize {
    LIVE.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_addresses_are_not_cells() {
        let c = insert(7, State::Owned, Arc::new(5u32));
        assert!(cell_at(c.addr()).is_some());
        assert!(cell_at(c.addr() + 1).is_none());
        assert!(cell_at(0x1000).is_none());
        let local = 3u64;
        assert!(cell_at(&local as *const u64 as usize).is_none());
        assert_eq!(c.tag(), Some(Tag { kind: 7, state: State::Owned }));
        assert!(c.take(8, State::Owned).is_none(), "wrong kind");
        assert!(c.take(7, State::Borrowed).is_none(), "wrong state");
        assert!(c.take(7, State::Owned).is_some());
        assert!(c.take(7, State::Owned).is_none(), "twice");
        assert_eq!(c.tag(), Some(Tag { kind: 7, state: State::Free }));
        retire(c);
    }

    #[test]
    fn freed_cells_are_not_reused_at_once() {
        let a = insert(1, State::Owned, Arc::new(1u8));
        let addr = a.addr();
        a.take(1, State::Owned);
        retire(a);
        for _ in 0..100 {
            let b = insert(1, State::Owned, Arc::new(2u8));
            assert_ne!(b.addr(), addr);
            b.take(1, State::Owned);
            retire(b);
        }
    }
}
