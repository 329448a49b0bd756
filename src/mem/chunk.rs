//! `Chunk`: one registered buffer of `buffer_size` bytes and its cursors,
//! with Ceph's semantics (reference §1.7). The header lives outside the data
//! region, so nothing a peer writes can corrupt it.
//!
//! A chunk is owned by whoever took it from its pool; the fields are atomics
//! (relaxed, plain loads/stores on x86) only so the pool's header array can be
//! shared between threads without `unsafe` aliasing.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering::{AcqRel, Acquire, Relaxed, Release}};

// Who owns a chunk (its `state` byte). Every change is a compare-and-swap
// from the one state it may come from, so a chunk posted twice, returned
// while in flight or released while posted is refused, never double-freed.
/// In its pool's free list.
pub(crate) const FREE: u8 = 0;
/// Taken from the pool: the host's (or the library code's that took it).
pub(crate) const HELD: u8 = 1;
/// Carried by a posted SEND until its completion is polled.
pub(crate) const IN_FLIGHT: u8 = 2;
/// On a receive queue (the SRQ or a QP's RQ) until its completion is polled.
pub(crate) const POSTED: u8 = 3;

/// What a state means, for messages.
pub(crate) fn state_name(s: u8) -> &'static str {
    match s {
        FREE => "free (already returned to its pool)",
        HELD => "held by its owner",
        IN_FLIGHT => "in flight (a posted SEND whose completion was not polled yet)",
        POSTED => "posted to a receive queue (the dispatcher owns it until its completion)",
        _ => "in an unknown state",
    }
}

/// Which pool a chunk belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    Tx,
    Rx,
}

#[repr(align(64))]
pub struct Chunk {
    buffer: *mut u8,
    capacity: u32,
    lkey: u32,
    index: u32,
    kind: ChunkKind,
    pub(crate) state: AtomicU8,
    offset: AtomicU32,
    bound: AtomicU32,
    /// Free-list link: index + 1 of the next free chunk, 0 = end.
    pub(crate) next: AtomicU32,
    /// Number of the QP whose receive queue holds this chunk (0 = none).
    qp: AtomicU32,
    /// RX: the QP number of the connection that lent this chunk to the host
    /// (zero-copy receive, `Conn::recv_chunks`); 0 = not lent.
    lent: AtomicU32,
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk")
            .field("kind", &self.kind)
            .field("index", &self.index)
            .field("offset", &self.offset())
            .field("bound", &self.bound())
            .field("capacity", &self.capacity)
            .finish()
    }
}

// SAFETY: `buffer` points into a registered region owned by the pool that owns
// the header; access to the bytes is governed by chunk ownership.
unsafe impl Send for Chunk {}
unsafe impl Sync for Chunk {}

impl Chunk {
    pub(crate) fn new(buffer: *mut u8, capacity: u32, lkey: u32, index: u32, kind: ChunkKind) -> Chunk {
        let bound = if kind == ChunkKind::Tx { capacity } else { 0 };
        Chunk {
            buffer,
            capacity,
            lkey,
            index,
            kind,
            state: AtomicU8::new(FREE),
            offset: AtomicU32::new(0),
            bound: AtomicU32::new(bound),
            next: AtomicU32::new(0),
            qp: AtomicU32::new(0),
            lent: AtomicU32::new(0),
        }
    }

    /// Capacity in bytes (= ms_async_rdma_buffer_size).
    pub fn capacity(&self) -> u32 {
        self.capacity
    }
    pub fn buffer(&self) -> *mut u8 {
        self.buffer
    }
    pub fn lkey(&self) -> u32 {
        self.lkey
    }
    pub fn kind(&self) -> ChunkKind {
        self.kind
    }
    pub(crate) fn index(&self) -> u32 {
        self.index
    }
    /// TX: bytes written so far (the SGE length at post time). RX: read cursor.
    pub fn offset(&self) -> u32 {
        self.offset.load(Relaxed)
    }
    /// RX: valid payload length. TX: the capacity.
    pub fn bound(&self) -> u32 {
        self.bound.load(Relaxed)
    }
    /// Bytes still unread: bound − offset.
    pub fn size(&self) -> u32 {
        self.bound().saturating_sub(self.offset())
    }
    pub fn full(&self) -> bool {
        self.offset() == self.capacity
    }
    /// RX: a completion delivered `n` bytes (offset 0, bound n ≤ capacity).
    pub fn prepare_read(&self, n: u32) {
        self.offset.store(0, Relaxed);
        self.bound.store(n.min(self.capacity), Relaxed);
    }
    pub fn reset_read(&self) {
        self.offset.store(0, Relaxed);
        self.bound.store(0, Relaxed);
    }
    pub fn reset_write(&self) {
        self.offset.store(0, Relaxed);
        self.bound.store(self.capacity, Relaxed);
    }
    /// Copies up to `dst.len()` unread bytes out and advances the cursor.
    ///
    /// # Safety
    /// The caller owns the chunk (nobody else writes its bytes meanwhile).
    pub unsafe fn read(&self, dst: &mut [u8]) -> usize {
        let off = self.offset();
        let n = (self.size() as usize).min(dst.len());
        // SAFETY: off + n ≤ bound ≤ capacity bytes of the chunk's buffer.
        unsafe { std::ptr::copy_nonoverlapping(self.buffer.add(off as usize), dst.as_mut_ptr(), n) };
        self.offset.store(off + n as u32, Relaxed);
        n
    }
    /// Copies as much of `src` as fits after the write cursor and advances it.
    ///
    /// # Safety
    /// The caller owns the chunk.
    pub unsafe fn write(&self, src: &[u8]) -> usize {
        let off = self.offset();
        let n = ((self.capacity - off.min(self.capacity)) as usize).min(src.len());
        // SAFETY: off + n ≤ capacity bytes of the chunk's buffer.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.buffer.add(off as usize), n) };
        self.offset.store(off + n as u32, Relaxed);
        n
    }
    /// Records that `n` bytes were placed in the buffer directly (zero-copy
    /// sends); clamps to the capacity and returns the new offset.
    pub fn set_offset(&self, n: u32) -> u32 {
        let n = n.min(self.capacity);
        self.offset.store(n, Relaxed);
        n
    }
    pub fn set_qp(&self, qpn: u32) {
        self.qp.store(qpn, Relaxed);
    }
    pub fn qp(&self) -> u32 {
        self.qp.load(Relaxed)
    }
    /// RX: lent to the host by the connection of QP `qpn`.
    pub(crate) fn lend(&self, qpn: u32) {
        self.lent.store(qpn, Release);
    }
    /// RX: the QP number of the connection that lent it (0 = not lent).
    pub(crate) fn lent_to(&self) -> u32 {
        self.lent.load(Acquire)
    }
    /// Ends the loan of the connection of QP `qpn`; false when the chunk was
    /// not lent by it (or the loan ended already: given back twice).
    pub(crate) fn end_loan(&self, qpn: u32) -> bool {
        qpn != 0 && self.lent.compare_exchange(qpn, 0, AcqRel, Acquire).is_ok()
    }
    /// Not in the free list (held, in flight or posted).
    pub(crate) fn is_in_use(&self) -> bool {
        self.state.load(Relaxed) != FREE
    }
    /// Held by its owner (taken from the pool, neither posted nor in flight).
    pub(crate) fn is_held(&self) -> bool {
        self.state.load(Relaxed) == HELD
    }
    /// On a receive queue (the SRQ or a QP's RQ) until its completion is polled.
    pub(crate) fn is_posted(&self) -> bool {
        self.state.load(Relaxed) == POSTED
    }
    /// `from` → `to` if the chunk is in `from`; else the state it is in.
    pub(crate) fn transition(&self, from: u8, to: u8) -> std::result::Result<(), u8> {
        self.state.compare_exchange(from, to, AcqRel, Acquire).map(|_| ())
    }
}

/// The one identity of a chunk on the data path, from its pool to a work
/// request and back: the address of the chunk's header, which is also the
/// `wr_id` of the work request that carries it.
///
/// Only the pools create a `ChunkRef` (for one of their own headers, when
/// handing a chunk out or after checking a `wr_id` against their header
/// arrays with `from_wr_id`), so dereferencing one is always valid while the
/// pool lives; everything that stores a `ChunkRef` keeps its pool alive.
/// Copying it copies the handle, not the ownership: whoever took the chunk
/// from the pool owns it until it is returned.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkRef(NonNull<Chunk>);

// SAFETY: a ChunkRef is an address of a `Chunk`, which is Send + Sync.
unsafe impl Send for ChunkRef {}
unsafe impl Sync for ChunkRef {}

impl ChunkRef {
    /// For pools only: `c` must be one of the calling pool's headers.
    pub(super) fn new(c: &Chunk) -> ChunkRef {
        ChunkRef(NonNull::from(c))
    }
    /// The `wr_id` of a work request carrying this chunk (its header address).
    pub fn wr_id(self) -> u64 {
        self.0.as_ptr() as usize as u64
    }
    /// The header address, for the C boundary (`ibstack_chunk *`).
    pub fn as_ptr(self) -> *const Chunk {
        self.0.as_ptr()
    }
}

impl std::ops::Deref for ChunkRef {
    type Target = Chunk;
    fn deref(&self) -> &Chunk {
        // SAFETY: created by a pool for one of its headers (see the type), which
        // live as long as the pool; holders keep the pool alive.
        unsafe { self.0.as_ref() }
    }
}

impl std::fmt::Debug for ChunkRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}:{:?}", self.wr_id(), **self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(buf: &mut [u8], kind: ChunkKind) -> Chunk {
        Chunk::new(buf.as_mut_ptr(), buf.len() as u32, 7, 0, kind)
    }

    #[test]
    fn write_fills_exactly_and_stops_at_capacity() {
        let mut mem = [0u8; 8];
        let c = chunk(&mut mem, ChunkKind::Tx);
        assert_eq!((c.offset(), c.bound(), c.size()), (0, 8, 8));
        assert_eq!(unsafe { c.write(b"") }, 0);
        assert_eq!(unsafe { c.write(b"abcde") }, 5);
        assert!(!c.full());
        assert_eq!(unsafe { c.write(b"fghij") }, 3, "overflow is cut at the capacity");
        assert!(c.full());
        assert_eq!(unsafe { c.write(b"x") }, 0);
        assert_eq!(&mem, b"abcdefgh");
    }

    #[test]
    fn read_follows_prepare_read_bound() {
        let mut mem = *b"0123456789";
        let c = chunk(&mut mem, ChunkKind::Rx);
        assert_eq!(c.bound(), 0, "RX chunks start with nothing to read");
        let mut out = [0u8; 4];
        assert_eq!(unsafe { c.read(&mut out) }, 0);
        c.prepare_read(6);
        assert_eq!((c.offset(), c.bound(), c.size()), (0, 6, 6));
        assert_eq!(unsafe { c.read(&mut out) }, 4);
        assert_eq!(&out, b"0123");
        assert_eq!(unsafe { c.read(&mut out) }, 2, "only up to the bound");
        assert_eq!(&out[..2], b"45");
        assert_eq!(c.size(), 0);
        assert_eq!(unsafe { c.read(&mut out) }, 0);
        assert_eq!(unsafe { c.read(&mut []) }, 0, "zero-length read");
        c.prepare_read(100);
        assert_eq!(c.bound(), 10, "bound never exceeds the capacity");
    }

    #[test]
    fn resets() {
        let mut mem = [0u8; 16];
        let c = chunk(&mut mem, ChunkKind::Tx);
        unsafe { c.write(b"hello") };
        c.reset_read();
        assert_eq!((c.offset(), c.bound()), (0, 0));
        unsafe { c.write(b"hello") };
        c.reset_write();
        assert_eq!((c.offset(), c.bound()), (0, 16));
        assert_eq!(c.set_offset(99), 16);
        c.set_qp(0x1a2);
        assert_eq!(c.qp(), 0x1a2);
    }
}
