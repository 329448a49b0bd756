//! The TX "cluster": one contiguous region of N × buffer_size bytes,
//! registered once; chunk headers kept in a separate array.

use super::chunk::{state_name, Chunk, ChunkKind, ChunkRef, FREE, HELD, IN_FLIGHT};
use super::freelist::{FreeList, Links};
use super::region::Region;
use super::registrar::{register_checked, Registrar, Registration};
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

struct Headers<'a>(&'a [Chunk]);
impl Links for Headers<'_> {
    fn link(&self, i: u32) -> &AtomicU32 {
        &self.0[i as usize].next
    }
}

pub struct TxCluster {
    // drop order matters: deregister before unmapping
    reg: Box<dyn Registration>,
    region: Region,
    chunks: Box<[Chunk]>,
    free: FreeList,
    base: usize,
    end: usize,
    buffer_size: usize,
    exhausted: AtomicU64,
}

impl TxCluster {
    pub fn new(count: u32, buffer_size: u32, huge: bool, registrar: &dyn Registrar) -> Result<TxCluster> {
        if count == 0 || buffer_size == 0 {
            return Err(Error::inval(format!("TX pool of {count} chunks of {buffer_size} bytes is empty")));
        }
        let bytes = count as usize * buffer_size as usize;
        let mut region = Region::new(bytes, huge)?;
        let base = region.as_mut_ptr();
        let what = format!(
            "the TX pool ({count} x ms_async_rdma_buffer_size {buffer_size}; lower ms_async_rdma_send_buffers to pin less)"
        );
        // SAFETY: the region lives in the same struct and is dropped after `reg`.
        let reg = unsafe { register_checked(registrar, base, region.len(), &what) }?;
        let lkey = reg.lkey();
        let chunks: Box<[Chunk]> = (0..count)
            // SAFETY: i × buffer_size < bytes ≤ region length.
            .map(|i| Chunk::new(unsafe { base.add(i as usize * buffer_size as usize) }, buffer_size, lkey, i, ChunkKind::Tx))
            .collect();
        let free = FreeList::new();
        free.push_spread(&Headers(&chunks), 0..count);
        log::info!(
            "TX pool: {count} chunks x {buffer_size} bytes = {bytes} bytes in one registration (lkey {lkey:#x}{})",
            if region.is_huge() { ", huge pages" } else { "" }
        );
        Ok(TxCluster { reg, base: base as usize, end: base as usize + bytes, region, chunks, free, buffer_size: buffer_size as usize, exhausted: AtomicU64::new(0) })
    }

    pub fn total(&self) -> usize {
        self.chunks.len()
    }
    pub fn buffer_size(&self) -> usize {
        self.buffer_size
    }
    pub fn lkey(&self) -> u32 {
        self.reg.lkey()
    }
    pub(crate) fn region_len(&self) -> usize {
        self.region.len()
    }
    pub(crate) fn is_huge(&self) -> bool {
        self.region.is_huge()
    }
    pub(crate) fn exhausted_count(&self) -> u64 {
        self.exhausted.load(Relaxed)
    }

    /// Take one free chunk, or None.
    pub fn get_one(&self) -> Option<ChunkRef> {
        let i = self.free.pop(&Headers(&self.chunks))?;
        let c = &self.chunks[i as usize];
        c.state.store(HELD, Relaxed);
        Some(ChunkRef::new(c))
    }

    /// Ceph's get_send_buffers: ⌈bytes / buffer_size⌉ chunks (at most
    /// `out.len()`), or as many as are free. Returns how many were written to
    /// `out`; none free is -EAGAIN.
    pub fn get(&self, bytes: usize, out: &mut [Option<ChunkRef>]) -> Result<usize> {
        self.get_each(bytes, out.len(), |i, c| out[i] = Some(c))
    }

    /// As [`get`](Self::get), handing each chunk to `put(i, chunk)` instead
    /// of filling a slice (no allocation for callers with their own array).
    pub fn get_each(&self, bytes: usize, cap: usize, mut put: impl FnMut(usize, ChunkRef)) -> Result<usize> {
        let wanted = bytes.div_ceil(self.buffer_size).min(cap);
        let mut n = 0;
        while n < wanted {
            match self.get_one() {
                Some(c) => {
                    put(n, c);
                    n += 1;
                }
                None => break,
            }
        }
        if n == 0 && wanted > 0 {
            self.exhausted.fetch_add(1, Relaxed);
            return Err(Error::new(
                libc::EAGAIN,
                format!("no free TX chunk: all {} are in flight; retry when sends complete", self.chunks.len()),
            ));
        }
        Ok(n)
    }

    /// The chunk a `wr_id` (a header address, e.g. an `ibstack_chunk *` from
    /// C) names, if it is one of this cluster's headers: the address is
    /// checked against the header array before anything is dereferenced.
    pub fn from_wr_id(&self, wr_id: u64) -> Option<ChunkRef> {
        let start = self.chunks.as_ptr() as usize as u64;
        let off = wr_id.checked_sub(start)?;
        let size = std::mem::size_of::<Chunk>() as u64;
        if off % size != 0 || off / size >= self.chunks.len() as u64 {
            return None;
        }
        Some(ChunkRef::new(&self.chunks[(off / size) as usize]))
    }

    /// Whether `c` is one of this cluster's headers (O(1): by its index).
    fn owns(&self, c: ChunkRef) -> bool {
        c.kind() == ChunkKind::Tx && self.chunks.get(c.index() as usize).is_some_and(|h| std::ptr::eq(h, c.as_ptr()))
    }

    /// Returns one chunk (Ceph's take_back of one): reset for writing and
    /// freed. Twice, or a chunk of another pool, is -EINVAL.
    pub fn put_one(&self, c: ChunkRef) -> Result<()> {
        self.put_checked(c).map_err(|why| Error::inval(format!("return_tx: {why}")))
    }

    fn put_checked(&self, c: ChunkRef) -> std::result::Result<(), String> {
        self.free_from(c, HELD)
    }

    fn free_from(&self, c: ChunkRef, from: u8) -> std::result::Result<(), String> {
        if !self.owns(c) {
            return Err(format!("{:#x} is not a TX chunk of this pool", c.wr_id()));
        }
        if let Err(s) = c.transition(from, FREE) {
            return Err(match s {
                FREE => format!("TX chunk {} ({:#x}) is already free (returned twice?)", c.index(), c.wr_id()),
                _ => format!("TX chunk {} ({:#x}) is {}", c.index(), c.wr_id(), state_name(s)),
            });
        }
        c.reset_write();
        c.set_qp(0);
        self.free.push(&Headers(&self.chunks), c.index());
        Ok(())
    }

    /// A SEND carrying `c` completed (polled): in flight → free.
    pub fn sent(&self, c: ChunkRef) -> Result<()> {
        self.free_from(c, IN_FLIGHT).map_err(|why| Error::inval(format!("send completion: {why}")))
    }

    /// Marks the chunks about to be posted as in flight (held → in flight),
    /// all or none: a chunk that is not held (free, already in flight, or
    /// twice in the list) is -EINVAL naming its entry, and the ones marked
    /// before it are held again. Allocates nothing.
    pub fn mark_in_flight<I: Iterator<Item = ChunkRef> + Clone>(&self, chunks: I) -> Result<()> {
        for (k, c) in chunks.clone().enumerate() {
            if let Err(s) = c.transition(HELD, IN_FLIGHT) {
                self.unmark_in_flight(chunks.take(k));
                let twice = if s == IN_FLIGHT { " (posted twice, or twice in this call)" } else { "" };
                return Err(Error::inval(format!(
                    "chunks[{k}] (TX chunk {} at {:#x}) is {}{twice}: only chunks taken from the pool and not yet \
                     posted may be sent",
                    c.index(),
                    c.wr_id(),
                    state_name(s)
                )));
            }
        }
        Ok(())
    }

    /// Chunks marked in flight that were not posted after all: held again.
    pub fn unmark_in_flight(&self, chunks: impl Iterator<Item = ChunkRef>) {
        for c in chunks {
            let _ = c.transition(IN_FLIGHT, HELD);
        }
    }

    /// Return chunks (Ceph's take_back): each is reset for writing and freed.
    /// A chunk returned twice, or one that is not this pool's, is -EINVAL;
    /// every valid chunk of the list is still returned.
    pub fn put(&self, chunks: &[ChunkRef]) -> Result<()> {
        self.put_all(chunks.iter().map(|&c| Ok(c)))
    }

    /// As [`put`](Self::put), for `wr_id`s (header addresses, e.g. from C),
    /// each checked with [`from_wr_id`](Self::from_wr_id) first.
    pub fn put_wr_ids(&self, ids: impl IntoIterator<Item = u64>) -> Result<()> {
        self.put_all(ids.into_iter().map(|id| self.from_wr_id(id).ok_or(id)))
    }

    fn put_all(&self, chunks: impl IntoIterator<Item = std::result::Result<ChunkRef, u64>>) -> Result<()> {
        let mut bad = Vec::new();
        let mut total = 0;
        for (k, c) in chunks.into_iter().enumerate() {
            total += 1;
            let r = match c {
                Ok(c) => self.put_checked(c),
                Err(id) => Err(format!("{id:#x} is not a TX chunk of this pool")),
            };
            if let Err(why) = r {
                bad.push(format!("[{k}] {why}"));
            }
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(Error::inval(format!("return_tx: {} of {total} rejected: {}", bad.len(), bad.join("; "))))
        }
    }

    /// Whether `p` points into the registered TX data region.
    pub fn is_tx_buffer(&self, p: *const u8) -> bool {
        (self.base..self.end).contains(&(p as usize))
    }

    /// The chunk whose buffer contains `p` (range-checked).
    pub fn chunk_by_buffer(&self, p: *const u8) -> Option<ChunkRef> {
        if !self.is_tx_buffer(p) {
            return None;
        }
        Some(ChunkRef::new(&self.chunks[(p as usize - self.base) / self.buffer_size]))
    }

    pub fn in_use(&self) -> usize {
        self.chunks.iter().filter(|c| c.is_in_use()).count()
    }
}
