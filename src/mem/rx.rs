//! The RX pool: registered blocks of chunks, grown on demand up to
//! ms_async_rdma_receive_buffers (0 = unlimited).
//!
//! Block sizing (the footprint rule): the first block holds
//! `ibstack_rx_first_block` buffers (default 256, i.e. 32 MiB at 128 KiB; 0
//! restores Ceph's rule min(receive_buffers, 2 × receive_queue_len), which
//! pins ~1 GiB on first use); each further block doubles the previous one, up
//! to 8192 buffers, and never exceeds what is left under the limit. A block
//! that would not fit under RLIMIT_MEMLOCK is shrunk to what fits (with a
//! warning). Blocks stay registered until the pool is dropped.
//!
//! Get/release of a chunk of an existing block is lock-free; only growing
//! takes the pool's own growth lock (never a process-wide one).

use super::chunk::{state_name, Chunk, ChunkKind, ChunkRef, FREE, HELD, POSTED};
use super::freelist::{FreeList, Links};
use super::region::Region;
use super::registrar::{register_checked, Registrar, Registration};
use crate::error::{Error, Result};
use crate::text::human_bytes;
use once_cell::sync::OnceCell;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Arc;

pub const MAX_BLOCKS: usize = 128;
pub const MAX_BLOCK_BUFFERS: u32 = 8192;
const SLOT_BITS: u32 = 24;

struct Block {
    // drop order: deregister before unmapping (held only to keep the MR alive)
    #[allow(dead_code)]
    reg: Box<dyn Registration>,
    region: Region,
    chunks: Box<[Chunk]>,
}

struct Blocks<'a>(&'a [OnceCell<Block>]);
impl Links for Blocks<'_> {
    fn link(&self, i: u32) -> &AtomicU32 {
        let b = self.0[(i >> SLOT_BITS) as usize].get().expect("free list names an unpublished block");
        &b.chunks[(i & ((1 << SLOT_BITS) - 1)) as usize].next
    }
}

pub struct RxPool {
    blocks: Box<[OnceCell<Block>]>,
    nblocks: AtomicUsize,
    free: FreeList,
    allocated: AtomicU64,
    limit: u32,
    buffer_size: u32,
    huge: bool,
    grow: Mutex<u32>, // planned size of the next block
    registrar: Arc<dyn Registrar>,
    exhausted: AtomicU64,
    reg_failures: AtomicU64,
}

impl RxPool {
    /// `limit` = ms_async_rdma_receive_buffers (0 = unlimited); `first_block`
    /// = buffers in the first registration.
    pub fn new(buffer_size: u32, limit: u32, first_block: u32, huge: bool, registrar: Arc<dyn Registrar>) -> RxPool {
        RxPool {
            blocks: (0..MAX_BLOCKS).map(|_| OnceCell::new()).collect(),
            nblocks: AtomicUsize::new(0),
            free: FreeList::new(),
            allocated: AtomicU64::new(0),
            limit,
            buffer_size,
            huge,
            grow: Mutex::new(first_block.clamp(1, MAX_BLOCK_BUFFERS)),
            registrar,
            exhausted: AtomicU64::new(0),
            reg_failures: AtomicU64::new(0),
        }
    }

    fn chunk(&self, index: u32) -> &Chunk {
        let b = self.blocks[(index >> SLOT_BITS) as usize].get().expect("published block");
        &b.chunks[(index & ((1 << SLOT_BITS) - 1)) as usize]
    }

    fn take(&self) -> Option<ChunkRef> {
        let i = self.free.pop(&Blocks(&self.blocks))?;
        let c = self.chunk(i);
        c.state.store(HELD, Relaxed);
        Some(ChunkRef::new(c))
    }

    /// A free receive chunk (bound 0), growing the pool when needed.
    /// -ENOBUFS when the limit is reached; a failed registration is returned
    /// as an error and the pool stays usable.
    pub fn get(&self) -> Result<ChunkRef> {
        if let Some(c) = self.take() {
            return Ok(c);
        }
        let mut planned = self.grow.lock();
        if let Some(c) = self.take() {
            return Ok(c); // another thread grew the pool meanwhile
        }
        let allocated = self.allocated.load(Relaxed);
        let nblocks = self.nblocks.load(Relaxed);
        let room = if self.limit == 0 { u64::MAX } else { (self.limit as u64).saturating_sub(allocated) };
        if room == 0 || nblocks >= MAX_BLOCKS {
            self.exhausted.fetch_add(1, Relaxed);
            return Err(Error::new(
                libc::ENOBUFS,
                format!(
                    "out of RX buffers: allocated {allocated}, requested 1 more, limit {} (ms_async_rdma_receive_buffers{}); \
                     buffers come back as received data is consumed",
                    if self.limit == 0 { "unlimited".to_string() } else { self.limit.to_string() },
                    if nblocks >= MAX_BLOCKS { format!(", and all {MAX_BLOCKS} blocks are used") } else { String::new() }
                ),
            ));
        }
        let mut n = (*planned as u64).min(room) as u32;
        // Memlock honesty: shrink a block that would not fit, fail only if one buffer does not.
        if let Some(avail) = self.registrar.memlock().available() {
            let fit = (avail / self.buffer_size as u64).min(u32::MAX as u64) as u32;
            if fit < n && fit >= 1 {
                log::warn!(
                    "RX pool: a block of {n} buffers would exceed RLIMIT_MEMLOCK ({} left); registering {fit}",
                    human_bytes(avail)
                );
                n = fit;
            }
        }
        let bytes = n as usize * self.buffer_size as usize;
        let mut region = Region::new(bytes, self.huge)?;
        let base = region.as_mut_ptr();
        let what = format!(
            "RX pool block {nblocks} ({n} x ms_async_rdma_buffer_size {}; {allocated} buffers already allocated, limit {})",
            self.buffer_size,
            self.limit
        );
        // SAFETY: the region is stored next to the registration and outlives it.
        let reg = match unsafe { register_checked(self.registrar.as_ref(), base, region.len(), &what) } {
            Ok(r) => r,
            Err(e) => {
                self.reg_failures.fetch_add(1, Relaxed);
                return Err(e);
            }
        };
        let lkey = reg.lkey();
        let first = (nblocks as u32) << SLOT_BITS;
        let chunks: Box<[Chunk]> = (0..n)
            // SAFETY: i × buffer_size < bytes ≤ region length.
            .map(|i| Chunk::new(unsafe { base.add(i as usize * self.buffer_size as usize) }, self.buffer_size, lkey, first | i, ChunkKind::Rx))
            .collect();
        let huge = region.is_huge();
        if self.blocks[nblocks].set(Block { reg, region, chunks }).is_err() {
            return Err(Error::new(libc::ENOTRECOVERABLE, "RX block slot already taken"));
        }
        self.nblocks.store(nblocks + 1, Release);
        self.allocated.fetch_add(n as u64, Relaxed);
        *planned = planned.saturating_mul(2).min(MAX_BLOCK_BUFFERS);
        log::info!(
            "RX pool: registered block {nblocks} of {n} buffers ({}, lkey {lkey:#x}{}); {} allocated of limit {}",
            human_bytes(bytes as u64),
            if huge { ", huge pages" } else { "" },
            allocated + n as u64,
            self.limit
        );
        // keep the first chunk for the caller, free the rest
        self.free.push_spread(&Blocks(&self.blocks), (first + 1)..(first + n));
        let c = self.chunk(first);
        c.state.store(HELD, Relaxed);
        Ok(ChunkRef::new(c))
    }

    /// The chunk a `wr_id` (a header address: a receive completion's, or an
    /// `ibstack_chunk *` from C) names, if it is one of this pool's headers:
    /// checked against every published block's header array before anything
    /// is dereferenced.
    pub fn from_wr_id(&self, wr_id: u64) -> Option<ChunkRef> {
        let size = std::mem::size_of::<Chunk>() as u64;
        let n = self.nblocks.load(Acquire);
        self.blocks[..n].iter().filter_map(|b| b.get()).find_map(|b| {
            let off = wr_id.checked_sub(b.chunks.as_ptr() as usize as u64)?;
            (off % size == 0 && off / size < b.chunks.len() as u64).then(|| ChunkRef::new(&b.chunks[(off / size) as usize]))
        })
    }

    /// Whether `c` is one of this pool's headers (O(1): by its index).
    pub(crate) fn owns(&self, c: ChunkRef) -> bool {
        if c.kind() != ChunkKind::Rx {
            return false;
        }
        let i = c.index();
        let Some(b) = self.blocks.get((i >> SLOT_BITS) as usize).and_then(|b| b.get()) else { return false };
        b.chunks.get((i & ((1 << SLOT_BITS) - 1)) as usize).is_some_and(|h| std::ptr::eq(h, c.as_ptr()))
    }

    /// Give a receive chunk back (Ceph's release_rx_buffer): read cursors
    /// reset, owning QP cleared. Twice, or a chunk of another pool, is -EINVAL.
    /// A chunk a connection lent to the host goes back through that
    /// connection (its receive accounting), so here it is -EINVAL.
    pub fn release(&self, c: ChunkRef) -> Result<()> {
        if self.owns(c) && c.lent_to() != 0 {
            return Err(Error::inval(format!(
                "RX chunk {} ({:#x}) was lent by the connection of QP {}: give it back with ibstack_conn_release_chunks",
                c.index(),
                c.wr_id(),
                c.lent_to()
            )));
        }
        self.free_from(c, HELD)
    }

    /// A chunk still posted whose receive queue is gone (QP destroyed, post
    /// refused by the provider): posted → free.
    pub fn reclaim(&self, c: ChunkRef) -> Result<()> {
        self.free_from(c, POSTED)
    }

    /// The chunk is about to be posted to a receive queue: held → posted.
    pub fn mark_posted(&self, c: ChunkRef) -> Result<()> {
        c.transition(HELD, POSTED).map_err(|s| {
            Error::inval(format!("RX chunk {} ({:#x}) cannot be posted: it is {}", c.index(), c.wr_id(), state_name(s)))
        })
    }

    /// A receive completion names `c`: posted → held (its new owner takes
    /// it). -EINVAL if it was not posted (a duplicate or forged completion).
    pub fn take_posted(&self, c: ChunkRef) -> Result<()> {
        c.transition(POSTED, HELD).map_err(|s| {
            Error::inval(format!("RX chunk {} ({:#x}) is not posted: it is {}", c.index(), c.wr_id(), state_name(s)))
        })
    }

    fn free_from(&self, c: ChunkRef, from: u8) -> Result<()> {
        if !self.owns(c) {
            return Err(Error::inval(format!("{:#x} is not an RX chunk of this pool", c.wr_id())));
        }
        if let Err(s) = c.transition(from, FREE) {
            return Err(Error::inval(match s {
                FREE => format!("RX chunk {} ({:#x}) is already free (released twice?)", c.index(), c.wr_id()),
                _ => format!("RX chunk {} ({:#x}) is {}", c.index(), c.wr_id(), state_name(s)),
            }));
        }
        c.reset_read();
        c.set_qp(0);
        self.free.push(&Blocks(&self.blocks), c.index());
        Ok(())
    }

    /// As [`release`](Self::release), for a `wr_id` (e.g. from C), checked
    /// with [`from_wr_id`](Self::from_wr_id) first.
    pub fn release_wr_id(&self, wr_id: u64) -> Result<()> {
        let c = self.from_wr_id(wr_id).ok_or_else(|| Error::inval(format!("{wr_id:#x} is not an RX chunk of this pool")))?;
        self.release(c)
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }
    pub fn allocated(&self) -> u64 {
        self.allocated.load(Relaxed)
    }
    pub fn block_count(&self) -> usize {
        self.nblocks.load(Acquire)
    }
    pub(crate) fn exhausted_count(&self) -> u64 {
        self.exhausted.load(Relaxed)
    }
    pub(crate) fn registration_failures(&self) -> u64 {
        self.reg_failures.load(Relaxed)
    }
    fn published(&self) -> impl Iterator<Item = &Block> {
        self.blocks[..self.block_count()].iter().filter_map(|b| b.get())
    }
    /// The chunks in use that satisfy `f`.
    pub(crate) fn in_use_where(&self, f: impl Fn(&Chunk) -> bool) -> Vec<ChunkRef> {
        self.published().flat_map(|b| b.chunks.iter()).filter(|c| c.is_in_use() && f(c)).map(ChunkRef::new).collect()
    }
    pub fn in_use(&self) -> usize {
        self.published().map(|b| b.chunks.iter().filter(|c| c.is_in_use()).count()).sum()
    }
    pub(crate) fn bytes_registered(&self) -> (u64, u64) {
        self.published().fold((0, 0), |(all, huge), b| {
            let l = b.region.len() as u64;
            (all + l, huge + if b.region.is_huge() { l } else { 0 })
        })
    }
}
