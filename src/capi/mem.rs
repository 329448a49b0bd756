//! `ibstack_mem_mgr` and `ibstack_chunk`: Ceph's MemoryManager (TX cluster,
//! RX pool) and its chunks.

use crate::capi::ib::ibstack_ib;
use crate::error::Error;
use crate::ffi::handle::{self, from_opaque, opaque_ptr};
use crate::ffi_boundary;
use crate::ib::Ib;
use crate::mem::{Chunk, MemStats, MemoryManager, VerbsRegistrar};
use std::os::raw::{c_char, c_int, c_void};
use std::sync::Arc;

/// The registered memory pools of one device: a TX cluster of tx_queue_len
/// chunks (one registration, made at creation) and an RX pool that registers
/// blocks on demand up to ms_async_rdma_receive_buffers.
/// Ownership: created by ibstack_mem_mgr_new, freed by ibstack_mem_mgr_free
/// (which deregisters everything: return every chunk first).
/// Thread safety: every function may be called from any thread concurrently;
/// getting and returning chunks takes no process-wide lock.
pub struct ibstack_mem_mgr {
    pub(crate) inner: Arc<MemoryManager>,
    _ib: Arc<Ib>,
}

/// One registered buffer of ms_async_rdma_buffer_size bytes with its read
/// and write cursors. Borrowed from its pool: never freed by the caller, given
/// back with ibstack_mem_mgr_return_tx / ibstack_mem_mgr_release_rx_chunk.
/// Thread safety: only the holder of a chunk may use it.
pub struct ibstack_chunk {
    _opaque: [u8; 0],
}

/// Creates the pools for `ib` with its configuration: registers the TX
/// cluster now (tx_queue_len x buffer_size bytes, after checking
/// RLIMIT_MEMLOCK); the RX pool registers on first use. Caller owns `*out`.
/// Errors: -ENOMEM with a message naming the memlock limit, the bytes needed
/// and the fixes; or the registration's errno.
#[no_mangle]
pub unsafe extern "C" fn ibstack_mem_mgr_new(ib: *const ibstack_ib, out: *mut *mut ibstack_mem_mgr) -> c_int {
    ffi_boundary!("ibstack_mem_mgr_new", {
        // SAFETY: ib is NULL or live.
        let ib = unsafe { handle::borrow(ib, "ib") }?.inner.clone();
        handle::check_out(out, "out")?;
        let reg = Arc::new(VerbsRegistrar::new(ib.pd().clone()));
        let inner = MemoryManager::new(ib.config(), ib.tx_queue_len(), reg)?;
        // SAFETY: out checked non-NULL.
        unsafe { handle::give(out, ibstack_mem_mgr { inner: Arc::new(inner), _ib: ib }) };
        Ok(0)
    })
}

/// Releases the caller's reference: the pools are deregistered and freed
/// when no dispatcher uses them any more (an ibstack_dispatcher keeps them
/// until it is freed). Chunks still handed out then become invalid.
/// NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn ibstack_mem_mgr_free(mm: *mut ibstack_mem_mgr) {
    ffi_boundary!("ibstack_mem_mgr_free", {
        // SAFETY: mm is NULL or came from ibstack_mem_mgr_new.
        if let Some(m) = unsafe { mm.as_ref() } {
            let s = m.inner.stats();
            if s.tx_in_use + s.rx_in_use > 0 {
                log::warn!("ibstack_mem_mgr_free: {} TX and {} RX chunks were still handed out", s.tx_in_use, s.rx_in_use);
            }
        }
        unsafe { handle::free(mm) };
        Ok(())
    })
}

/// Takes ceil(bytes / buffer_size) TX chunks (at most `cap`), or as many as
/// are free, into `out[0..*n_out]`; chunks come reset for writing. A partial
/// result is 0 with a smaller *n_out; none free is -EAGAIN. bytes == 0 takes
/// nothing.
#[no_mangle]
pub unsafe extern "C" fn ibstack_mem_mgr_get_tx_chunks(
    mm: *mut ibstack_mem_mgr,
    bytes: usize,
    out: *mut *mut ibstack_chunk,
    cap: usize,
    n_out: *mut usize,
) -> c_int {
    ffi_boundary!("ibstack_mem_mgr_get_tx_chunks", {
        // SAFETY: pointers are NULL or valid per the header.
        let mm = unsafe { handle::borrow(mm, "mm") }?;
        handle::check_out(n_out, "n_out")?;
        if out.is_null() && cap > 0 {
            return Err(Error::inval(format!("out is NULL but cap is {cap}")));
        }
        // SAFETY: out holds cap entries and get_each hands out indices below cap.
        let n = mm.inner.tx.get_each(bytes, cap, |i, c| unsafe { *out.add(i) = opaque_ptr(&*c) })?;
        // SAFETY: checked non-NULL.
        unsafe { *n_out = n };
        Ok(0)
    })
}

/// Returns TX chunks to the cluster (each reset for writing). A chunk
/// returned twice or a pointer that is not a TX chunk of this pool is
/// -EINVAL (the message lists them); the valid ones are still returned.
#[no_mangle]
pub unsafe extern "C" fn ibstack_mem_mgr_return_tx(
    mm: *mut ibstack_mem_mgr,
    chunks: *const *mut ibstack_chunk,
    n: usize,
) -> c_int {
    ffi_boundary!("ibstack_mem_mgr_return_tx", {
        // SAFETY: pointers are NULL or valid per the header.
        let mm = unsafe { handle::borrow(mm, "mm") }?;
        if n == 0 {
            return Ok(0);
        }
        if chunks.is_null() {
            return Err(Error::inval(format!("chunks is NULL but n is {n}")));
        }
        // SAFETY: chunks holds n pointers.
        let list = unsafe { std::slice::from_raw_parts(chunks, n) };
        mm.inner.tx.put_wr_ids(list.iter().map(|&p| chunk_id(p)))?;
        Ok(0)
    })
}

/// Whether `ptr` lies in the registered TX data region (false for NULL mm).
#[no_mangle]
pub unsafe extern "C" fn ibstack_mem_mgr_is_tx_buffer(mm: *const ibstack_mem_mgr, ptr: *const c_void) -> bool {
    ffi_boundary!("ibstack_mem_mgr_is_tx_buffer", {
        // SAFETY: mm is NULL or live.
        Ok(unsafe { handle::borrow(mm, "mm") }?.inner.tx.is_tx_buffer(ptr.cast()))
    })
}

/// The TX chunk whose buffer contains `ptr`, or NULL outside the region.
#[no_mangle]
pub unsafe extern "C" fn ibstack_mem_mgr_tx_chunk_by_buffer(mm: *const ibstack_mem_mgr, ptr: *const c_void) -> *mut ibstack_chunk {
    ffi_boundary!("ibstack_mem_mgr_tx_chunk_by_buffer", {
        // SAFETY: mm is NULL or live.
        let mm = unsafe { handle::borrow(mm, "mm") }?;
        Ok(mm.inner.tx.chunk_by_buffer(ptr.cast()).map(|c| opaque_ptr(&*c)).unwrap_or(std::ptr::null_mut()))
    })
}

/// Takes one receive chunk (nothing to read yet), registering a new RX block
/// when none is free. -ENOBUFS when ms_async_rdma_receive_buffers is reached
/// (the message gives allocated, requested and the limit); a failed
/// registration returns its error and the pool stays usable.
#[no_mangle]
pub unsafe extern "C" fn ibstack_mem_mgr_get_rx_chunk(mm: *mut ibstack_mem_mgr, out: *mut *mut ibstack_chunk) -> c_int {
    ffi_boundary!("ibstack_mem_mgr_get_rx_chunk", {
        // SAFETY: pointers are NULL or valid per the header.
        let mm = unsafe { handle::borrow(mm, "mm") }?;
        handle::check_out(out, "out")?;
        let c = mm.inner.rx.get()?;
        // SAFETY: checked non-NULL.
        unsafe { *out = opaque_ptr(&*c) };
        Ok(0)
    })
}

/// Gives a receive chunk back (cursors reset, owning QP cleared). Twice, or
/// a pointer that is not an RX chunk of this pool, is -EINVAL.
#[no_mangle]
pub unsafe extern "C" fn ibstack_mem_mgr_release_rx_chunk(mm: *mut ibstack_mem_mgr, chunk: *mut ibstack_chunk) -> c_int {
    ffi_boundary!("ibstack_mem_mgr_release_rx_chunk", {
        // SAFETY: mm is NULL or live.
        let mm = unsafe { handle::borrow(mm, "mm") }?;
        if chunk.is_null() {
            return Err(Error::inval("chunk is NULL"));
        }
        mm.inner.rx.release_wr_id(chunk_id(chunk))?;
        Ok(0)
    })
}

/// Fills `*out` with the pools' figures.
#[no_mangle]
pub unsafe extern "C" fn ibstack_mem_mgr_stats(mm: *const ibstack_mem_mgr, out: *mut MemStats) -> c_int {
    ffi_boundary!("ibstack_mem_mgr_stats", {
        // SAFETY: pointers are NULL or valid per the header.
        let mm = unsafe { handle::borrow(mm, "mm") }?;
        handle::check_out(out, "out")?;
        unsafe { *out = mm.inner.stats() };
        Ok(0)
    })
}

/// The same figures as a JSON object in `buf` (NUL-terminated, truncated to
/// len - 1). Returns the full JSON length or -EINVAL.
#[no_mangle]
pub unsafe extern "C" fn ibstack_mem_mgr_stats_json(mm: *const ibstack_mem_mgr, buf: *mut c_char, len: usize) -> c_int {
    ffi_boundary!("ibstack_mem_mgr_stats_json", {
        // SAFETY: pointers are NULL or valid per the header.
        let mm = unsafe { handle::borrow(mm, "mm") }?;
        // SAFETY: buf is NULL or holds len bytes, per the header.
        unsafe { handle::text_out(&mm.inner.stats().to_json(), buf, len) }
    })
}

/// The identity of a C `ibstack_chunk *` on the data path: its address, as
/// the pools' checked lookups (`from_wr_id`, `put_wr_ids`, `release_wr_id`)
/// take it. Nothing is dereferenced here; the pools check the address
/// against their header arrays first.
pub(crate) fn chunk_id<T>(c: *const T) -> u64 {
    from_opaque::<_, Chunk>(c) as usize as u64
}

/// Borrow a chunk argument (NULL → -EINVAL / 0).
///
/// # Safety
/// `c` must be NULL or a chunk handed out by a live pool.
pub(crate) unsafe fn chunk<'a>(c: *const ibstack_chunk) -> crate::Result<&'a Chunk> {
    // SAFETY: forwarded from the caller.
    unsafe { handle::borrow(from_opaque::<_, Chunk>(c), "chunk") }
}

/// Capacity in bytes (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_capacity(c: *const ibstack_chunk) -> u32 {
    ffi_boundary!("ibstack_chunk_capacity", { Ok(unsafe { chunk(c) }?.capacity()) })
}

/// Start of the chunk's registered buffer (NULL for NULL).
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_buffer(c: *const ibstack_chunk) -> *mut c_void {
    ffi_boundary!("ibstack_chunk_buffer", { Ok(unsafe { chunk(c) }?.buffer().cast()) })
}

/// lkey of the registration holding the buffer (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_lkey(c: *const ibstack_chunk) -> u32 {
    ffi_boundary!("ibstack_chunk_lkey", { Ok(unsafe { chunk(c) }?.lkey()) })
}

/// TX: bytes written so far (the send length); RX: the read cursor.
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_offset(c: *const ibstack_chunk) -> u32 {
    ffi_boundary!("ibstack_chunk_offset", { Ok(unsafe { chunk(c) }?.offset()) })
}

/// RX: valid payload length; TX: the capacity.
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_bound(c: *const ibstack_chunk) -> u32 {
    ffi_boundary!("ibstack_chunk_bound", { Ok(unsafe { chunk(c) }?.bound()) })
}

/// Bytes still unread: bound - offset.
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_size(c: *const ibstack_chunk) -> u32 {
    ffi_boundary!("ibstack_chunk_size", { Ok(unsafe { chunk(c) }?.size()) })
}

/// Whether the write cursor reached the capacity (false for NULL).
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_full(c: *const ibstack_chunk) -> bool {
    ffi_boundary!("ibstack_chunk_full", { Ok(unsafe { chunk(c) }?.full()) })
}

/// Copies min(size, len) unread bytes to `dst` and advances the read cursor.
/// Returns the count (0 for NULL arguments).
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_read(c: *mut ibstack_chunk, dst: *mut c_void, len: usize) -> usize {
    ffi_boundary!("ibstack_chunk_read", {
        let c = unsafe { chunk(c) }?;
        let dst = unsafe { handle::bytes_out(dst.cast(), len, "dst") }?;
        Ok(unsafe { c.read(dst) })
    })
}

/// Copies min(capacity - offset, len) bytes from `src` after the write cursor
/// and advances it. Returns the count (0 for NULL arguments).
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_write(c: *mut ibstack_chunk, src: *const c_void, len: usize) -> usize {
    ffi_boundary!("ibstack_chunk_write", {
        let c = unsafe { chunk(c) }?;
        let src = unsafe { handle::bytes_arg(src.cast(), len, "src") }?;
        Ok(unsafe { c.write(src) })
    })
}

/// RX: a completion delivered `n` bytes: offset 0, bound n (capped at the capacity).
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_prepare_read(c: *mut ibstack_chunk, n: u32) -> c_int {
    ffi_boundary!("ibstack_chunk_prepare_read", {
        let c = unsafe { chunk(c) }?;
        if n > c.capacity() {
            return Err(Error::inval(format!("{n} bytes do not fit a chunk of {}", c.capacity())));
        }
        c.prepare_read(n);
        Ok(0)
    })
}

/// offset 0, bound 0.
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_reset_read(c: *mut ibstack_chunk) -> c_int {
    ffi_boundary!("ibstack_chunk_reset_read", {
        unsafe { chunk(c) }?.reset_read();
        Ok(0)
    })
}

/// offset 0, bound = capacity.
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_reset_write(c: *mut ibstack_chunk) -> c_int {
    ffi_boundary!("ibstack_chunk_reset_write", {
        unsafe { chunk(c) }?.reset_write();
        Ok(0)
    })
}

/// Tags the chunk with the QP number whose receive queue holds it (0 clears).
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_set_qp(c: *mut ibstack_chunk, qp_num: u32) -> c_int {
    ffi_boundary!("ibstack_chunk_set_qp", {
        unsafe { chunk(c) }?.set_qp(qp_num);
        Ok(0)
    })
}

/// The owning QP number (0 = none or NULL).
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_qp(c: *const ibstack_chunk) -> u32 {
    ffi_boundary!("ibstack_chunk_qp", { Ok(unsafe { chunk(c) }?.qp()) })
}

#[cfg(test)]
mod tests {
    #[test]
    fn stats_layout_is_frozen() {
        assert_eq!(std::mem::size_of::<super::MemStats>(), 120);
    }
}
