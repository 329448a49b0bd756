//! `ibstack_mem_mgr` and `ibstack_chunk`: Ceph's MemoryManager (TX cluster,
//! RX pool) and its chunks.

use crate::capi::ib::ibstack_ib;
use crate::error::Error;
use crate::ffi::handle::{self, Handle, Kind};
use crate::ffi_boundary;
use crate::mem::{Chunk, ChunkRef, MemStats, MemoryManager};
use once_cell::sync::Lazy;
use parking_lot::RwLock;
use std::os::raw::{c_char, c_int, c_void};
use std::sync::{Arc, Weak};

/// The registered memory pools of one device: a TX cluster of tx_queue_len
/// chunks (one registration, made at creation) and an RX pool that registers
/// blocks on demand up to ms_async_rdma_receive_buffers.
/// Ownership: created by ibstack_mem_mgr_new, freed by ibstack_mem_mgr_free
/// (which deregisters everything: return every chunk first).
/// Thread safety: every function may be called from any thread concurrently;
/// getting and returning chunks takes no process-wide lock.
pub struct ibstack_mem_mgr {
    _opaque: [u8; 0],
}

impl Handle for ibstack_mem_mgr {
    type Target = MemoryManager;
    const KIND: Kind = Kind::MemMgr;
}

/// One registered buffer of ms_async_rdma_buffer_size bytes with its read
/// and write cursors. Borrowed from its pool: never freed by the caller, given
/// back with ibstack_mem_mgr_return_tx / ibstack_mem_mgr_release_rx_chunk.
/// A chunk pointer is checked against the live pools before use: one that is
/// not a chunk of a pool still alive (foreign, or its pool was freed) is
/// -EINVAL (0 / NULL / false for the queries). The ibstack_chunk_* functions
/// take a shared (reader) lock of the pool list, never an exclusive one.
/// Thread safety: only the holder of a chunk may use it.
pub struct ibstack_chunk {
    _opaque: [u8; 0],
}

/// The pools of every mem_mgr created and not yet destroyed (a dispatcher
/// keeps its pools alive after ibstack_mem_mgr_free): chunk pointers are
/// looked up here.
static POOLS: Lazy<RwLock<Vec<Weak<MemoryManager>>>> = Lazy::new(|| RwLock::new(Vec::new()));

/// Makes `mm`'s chunks known to the chunk functions (a mem_mgr handle, and
/// a stack's pools, whose RX chunks a connection lends).
pub(crate) fn register_pools(mm: &Arc<MemoryManager>) {
    let mut pools = POOLS.write();
    pools.retain(|w| w.strong_count() > 0);
    if !pools.iter().any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(mm))) {
        pools.push(Arc::downgrade(mm));
    }
}

/// A new handle for `mm`, whose chunks C may then pass to the chunk functions.
pub(crate) fn mem_mgr_handle(mm: Arc<MemoryManager>) -> *mut ibstack_mem_mgr {
    register_pools(&mm);
    handle::new_handle(mm)
}

/// Run `f` on the chunk `c` names, with its pool kept alive for the call.
fn with_chunk<R>(c: *const ibstack_chunk, f: impl FnOnce(&Chunk) -> crate::Result<R>) -> crate::Result<R> {
    if c.is_null() {
        return Err(Error::inval("chunk is NULL"));
    }
    let p = c.cast::<Chunk>();
    let pool = POOLS.read().iter().filter_map(Weak::upgrade).find(|m| m.chunk_at(p).is_some());
    match pool.as_deref().and_then(|m| m.chunk_at(p)) {
        Some(chunk) => f(&chunk),
        None => Err(Error::inval(format!("chunk ({c:p}) is not a chunk of a live ibstack_mem_mgr pool"))),
    }
}

fn chunk_ptr(c: ChunkRef) -> *mut ibstack_chunk {
    c.as_ptr().cast_mut().cast()
}

/// Creates the pools for `ib` with its configuration: registers the TX
/// cluster now (tx_queue_len x buffer_size bytes, after checking
/// RLIMIT_MEMLOCK); the RX pool registers on first use. Caller owns `*out`.
/// Errors: -ENOMEM with a message naming the memlock limit, the bytes needed
/// and the fixes; or the registration's errno.
#[no_mangle]
pub unsafe extern "C" fn ibstack_mem_mgr_new(ib: *const ibstack_ib, out: *mut *mut ibstack_mem_mgr) -> c_int {
    ffi_boundary!({
        let ib = handle::get(ib, "ib")?;
        handle::check_out(out, "out")?;
        let mm = Arc::new(MemoryManager::on_pd(ib.config(), ib.tx_queue_len(), ib.pd().clone())?);
        // SAFETY: out is non-NULL and valid for one pointer write (header contract).
        unsafe { handle::write_out(out, "out", mem_mgr_handle(mm)) }?;
        Ok(0)
    })
}

/// Releases the caller's reference: the pools are deregistered and freed
/// when no dispatcher uses them any more (an ibstack_dispatcher keeps them
/// until it is freed). Chunks still handed out then become invalid.
/// NULL is a no-op; an invalid handle is ignored with a warning.
#[no_mangle]
pub unsafe extern "C" fn ibstack_mem_mgr_free(mm: *mut ibstack_mem_mgr) {
    ffi_boundary!({
        if let Some(m) = handle::take(mm, "mm")? {
            let s = m.stats();
            if s.tx_in_use + s.rx_in_use > 0 {
                log::warn!("{}: {} TX and {} RX chunks were still handed out", crate::fn_name!(), s.tx_in_use, s.rx_in_use);
            }
        }
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
    ffi_boundary!({
        let mm = handle::get(mm, "mm")?;
        handle::check_out(n_out, "n_out")?;
        // SAFETY: out is NULL or holds cap entries, n_out is valid for a write (header contract).
        unsafe {
            let out = handle::items_out(out, cap, "out", "cap")?;
            let n = mm.tx.get_each(bytes, cap, |i, c| {
                out[i].write(chunk_ptr(c));
            })?;
            handle::write_out(n_out, "n_out", n)?;
        }
        Ok(0)
    })
}

/// Returns TX chunks to the cluster (each reset for writing). A chunk
/// returned twice, one still in flight (posted, its completion not polled:
/// the dispatcher returns it) or a pointer that is not a TX chunk of this
/// pool is -EINVAL (the message lists them); the valid ones are still returned.
#[no_mangle]
pub unsafe extern "C" fn ibstack_mem_mgr_return_tx(
    mm: *mut ibstack_mem_mgr,
    chunks: *const *mut ibstack_chunk,
    n: usize,
) -> c_int {
    ffi_boundary!({
        let mm = handle::get(mm, "mm")?;
        // SAFETY: chunks is NULL or holds n pointers (header contract).
        let list = unsafe { handle::items(chunks, n, "chunks") }?;
        if !list.is_empty() {
            mm.tx.put_wr_ids(list.iter().map(|&p| chunk_id(p)))?;
        }
        Ok(0)
    })
}

/// Whether `ptr` lies in the registered TX data region (false for NULL mm).
#[no_mangle]
pub unsafe extern "C" fn ibstack_mem_mgr_is_tx_buffer(mm: *const ibstack_mem_mgr, ptr: *const c_void) -> bool {
    ffi_boundary!({ Ok(handle::get(mm, "mm")?.tx.is_tx_buffer(ptr.cast())) })
}

/// The TX chunk whose buffer contains `ptr`, or NULL outside the region.
#[no_mangle]
pub unsafe extern "C" fn ibstack_mem_mgr_tx_chunk_by_buffer(mm: *const ibstack_mem_mgr, ptr: *const c_void) -> *mut ibstack_chunk {
    ffi_boundary!({
        let mm = handle::get(mm, "mm")?;
        Ok(mm.tx.chunk_by_buffer(ptr.cast()).map(chunk_ptr).unwrap_or(std::ptr::null_mut()))
    })
}

/// Takes one receive chunk (nothing to read yet), registering a new RX block
/// when none is free. -ENOBUFS when ms_async_rdma_receive_buffers is reached
/// (the message gives allocated, requested and the limit); a failed
/// registration returns its error and the pool stays usable.
#[no_mangle]
pub unsafe extern "C" fn ibstack_mem_mgr_get_rx_chunk(mm: *mut ibstack_mem_mgr, out: *mut *mut ibstack_chunk) -> c_int {
    ffi_boundary!({
        let mm = handle::get(mm, "mm")?;
        handle::check_out(out, "out")?;
        let c = chunk_ptr(mm.rx.get()?);
        // SAFETY: out is non-NULL and valid for one pointer write (header contract).
        unsafe { handle::write_out(out, "out", c) }?;
        Ok(0)
    })
}

/// Gives a receive chunk back (cursors reset, owning QP cleared). Twice, or
/// a pointer that is not an RX chunk of this pool, is -EINVAL.
#[no_mangle]
pub unsafe extern "C" fn ibstack_mem_mgr_release_rx_chunk(mm: *mut ibstack_mem_mgr, chunk: *mut ibstack_chunk) -> c_int {
    ffi_boundary!({
        let mm = handle::get(mm, "mm")?;
        if chunk.is_null() {
            return Err(Error::inval("chunk is NULL"));
        }
        mm.rx.release_wr_id(chunk_id(chunk))?;
        Ok(0)
    })
}

/// Fills `*out` with the pools' figures.
#[no_mangle]
pub unsafe extern "C" fn ibstack_mem_mgr_stats(mm: *const ibstack_mem_mgr, out: *mut MemStats) -> c_int {
    ffi_boundary!({
        let stats = handle::get(mm, "mm")?.stats();
        // SAFETY: out is NULL or valid for one write (header contract).
        unsafe { handle::write_out(out, "out", stats) }?;
        Ok(0)
    })
}

/// The same figures as a JSON object in `buf` (NUL-terminated, truncated to
/// len - 1). Returns the full JSON length or -EINVAL.
#[no_mangle]
pub unsafe extern "C" fn ibstack_mem_mgr_stats_json(mm: *const ibstack_mem_mgr, buf: *mut c_char, len: usize) -> c_int {
    ffi_boundary!({
        let json = handle::get(mm, "mm")?.stats().to_json();
        // SAFETY: buf is NULL or holds len bytes (header contract).
        unsafe { handle::text_out(&json, buf, len) }
    })
}

/// The identity of a C `ibstack_chunk *` on the data path: its address, as
/// the pools' checked lookups (`from_wr_id`, `put_wr_ids`, `release_wr_id`)
/// take it. Nothing is dereferenced here; the pools check the address
/// against their header arrays first.
pub(crate) fn chunk_id<T>(c: *const T) -> u64 {
    c as usize as u64
}

/// Capacity in bytes (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_capacity(c: *const ibstack_chunk) -> u32 {
    ffi_boundary!({ with_chunk(c, |c| Ok(c.capacity())) })
}

/// Start of the chunk's registered buffer (NULL for NULL).
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_buffer(c: *const ibstack_chunk) -> *mut c_void {
    ffi_boundary!({ with_chunk(c, |c| Ok(c.buffer().cast())) })
}

/// lkey of the registration holding the buffer (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_lkey(c: *const ibstack_chunk) -> u32 {
    ffi_boundary!({ with_chunk(c, |c| Ok(c.lkey())) })
}

/// TX: bytes written so far (the send length); RX: the read cursor.
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_offset(c: *const ibstack_chunk) -> u32 {
    ffi_boundary!({ with_chunk(c, |c| Ok(c.offset())) })
}

/// RX: valid payload length; TX: the capacity.
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_bound(c: *const ibstack_chunk) -> u32 {
    ffi_boundary!({ with_chunk(c, |c| Ok(c.bound())) })
}

/// Bytes still unread: bound - offset.
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_size(c: *const ibstack_chunk) -> u32 {
    ffi_boundary!({ with_chunk(c, |c| Ok(c.size())) })
}

/// Whether the write cursor reached the capacity (false for NULL).
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_full(c: *const ibstack_chunk) -> bool {
    ffi_boundary!({ with_chunk(c, |c| Ok(c.full())) })
}

/// Copies min(size, len) unread bytes to `dst` and advances the read cursor.
/// Returns the count (0 for NULL arguments).
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_read(c: *mut ibstack_chunk, dst: *mut c_void, len: usize) -> usize {
    ffi_boundary!({
        // SAFETY: dst is NULL or holds len bytes; the caller holds the chunk (header contract).
        with_chunk(c, |c| unsafe { Ok(c.read(handle::bytes_out(dst.cast(), len, "dst")?)) })
    })
}

/// Copies min(capacity - offset, len) bytes from `src` after the write cursor
/// and advances it. Returns the count (0 for NULL arguments).
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_write(c: *mut ibstack_chunk, src: *const c_void, len: usize) -> usize {
    ffi_boundary!({
        // SAFETY: src is NULL or holds len bytes; the caller holds the chunk (header contract).
        with_chunk(c, |c| unsafe { Ok(c.write(handle::bytes_arg(src.cast(), len, "src")?)) })
    })
}

/// RX: a completion delivered `n` bytes: offset 0, bound n (capped at the capacity).
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_prepare_read(c: *mut ibstack_chunk, n: u32) -> c_int {
    ffi_boundary!({
        with_chunk(c, |c| {
            if n > c.capacity() {
                return Err(Error::inval(format!("{n} bytes do not fit a chunk of {}", c.capacity())));
            }
            c.prepare_read(n);
            Ok(0)
        })
    })
}

/// offset 0, bound 0.
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_reset_read(c: *mut ibstack_chunk) -> c_int {
    ffi_boundary!({
        with_chunk(c, |c| {
            c.reset_read();
            Ok(0)
        })
    })
}

/// offset 0, bound = capacity.
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_reset_write(c: *mut ibstack_chunk) -> c_int {
    ffi_boundary!({
        with_chunk(c, |c| {
            c.reset_write();
            Ok(0)
        })
    })
}

/// Tags the chunk with the QP number whose receive queue holds it (0 clears).
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_set_qp(c: *mut ibstack_chunk, qp_num: u32) -> c_int {
    ffi_boundary!({
        with_chunk(c, |c| {
            c.set_qp(qp_num);
            Ok(0)
        })
    })
}

/// The owning QP number (0 = none or NULL).
#[no_mangle]
pub unsafe extern "C" fn ibstack_chunk_qp(c: *const ibstack_chunk) -> u32 {
    ffi_boundary!({ with_chunk(c, |c| Ok(c.qp())) })
}

#[cfg(test)]
mod tests {
    #[test]
    fn stats_layout_is_frozen() {
        assert_eq!(std::mem::size_of::<super::MemStats>(), 120);
    }
}
