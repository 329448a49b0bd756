//! `ibstack_dispatcher`: Ceph's RDMADispatcher without a thread — the shared
//! TX/RX CQs, the SRQ, the QP registry, the beacon drain, async events,
//! counters and QP history — driven by the caller's polling loop.

use crate::capi::cq::{ibstack_cq, static_cstr, wc_slice};
use crate::capi::ib::ibstack_ib;
use crate::capi::mem::{chunk_id, ibstack_chunk, ibstack_mem_mgr};
use crate::capi::qp::ibstack_qp;
use crate::counters::CountersSnapshot;
use crate::dispatcher::Dispatcher;
use crate::ffi::handle;
use crate::ffi_boundary;
use crate::verbs::{event_name, Wc};
use std::os::raw::{c_char, c_int};
use std::sync::Arc;

/// The shared completion machinery of one device (see the file comment).
/// Ownership: created by ibstack_dispatcher_new, released by
/// ibstack_dispatcher_free; QPs created from it keep it alive until they are
/// freed too. Teardown retires every QP (beacon drain, at most 2 s) and
/// destroys the CQs and SRQ.
/// Thread safety: every function may be called from any thread; polling
/// (poll, wait) is serialized internally.
pub struct ibstack_dispatcher {
    pub(crate) inner: Arc<Dispatcher>,
    tx: ibstack_cq,
    rx: ibstack_cq,
}

/// One device async event, already handled and acknowledged.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ibstack_async_event {
    /// `enum ibv_event_type`; name from ibstack_async_event_str.
    pub event_type: u32,
    /// QP number for QP events, else 0.
    pub qp_num: u32,
    /// Port number for port events, else 0.
    pub port: u32,
    pub reserved: u32,
}

/// Creates both CQs (ibstack_cq_depth entries) with their channels and, when
/// ms_async_rdma_support_srq is true, the SRQ filled with rx_queue_len
/// receive buffers from `mm`'s RX pool. `ib` and `mm` must be the same
/// device; both stay alive while the dispatcher does. Caller owns `*out`.
/// Errors: the verbs errno of the failed creation; -ENOBUFS when no receive
/// buffer could be posted to the SRQ.
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_new(
    ib: *const ibstack_ib,
    mm: *const ibstack_mem_mgr,
    out: *mut *mut ibstack_dispatcher,
) -> c_int {
    ffi_boundary!("ibstack_dispatcher_new", {
        // SAFETY: NULL or live handles.
        let ib = unsafe { handle::borrow(ib, "ib") }?;
        let mm = unsafe { handle::borrow(mm, "mm") }?;
        handle::check_out(out, "out")?;
        let d = Arc::new(Dispatcher::new(ib.inner.clone(), mm.inner.clone())?);
        let (tx, rx) = (ibstack_cq { inner: d.tx_cq().clone() }, ibstack_cq { inner: d.rx_cq().clone() });
        // SAFETY: out checked.
        unsafe { handle::give(out, ibstack_dispatcher { inner: d, tx, rx }) };
        Ok(0)
    })
}

/// Releases the caller's reference (see the type's ownership note). NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_free(d: *mut ibstack_dispatcher) {
    ffi_boundary!("ibstack_dispatcher_free", {
        // SAFETY: NULL or from ibstack_dispatcher_new.
        unsafe { handle::free(d) };
        Ok(())
    })
}

unsafe fn disp<'a>(d: *const ibstack_dispatcher) -> crate::Result<&'a ibstack_dispatcher> {
    // SAFETY: forwarded from the caller.
    unsafe { handle::borrow(d, "dispatcher") }
}

/// The TX (send) CQ, borrowed: valid while the dispatcher lives. NULL for NULL.
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_tx_cq(d: *const ibstack_dispatcher) -> *const ibstack_cq {
    ffi_boundary!("ibstack_dispatcher_tx_cq", { Ok(&unsafe { disp(d) }?.tx as *const ibstack_cq) })
}

/// The RX (receive) CQ, borrowed: valid while the dispatcher lives. NULL for NULL.
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_rx_cq(d: *const ibstack_dispatcher) -> *const ibstack_cq {
    ffi_boundary!("ibstack_dispatcher_rx_cq", { Ok(&unsafe { disp(d) }?.rx as *const ibstack_cq) })
}

/// One iteration of the polling loop: polls the TX CQ then the RX CQ (32
/// each), returns finished TX chunks to their pool, retires QPs whose beacon
/// completed, and — when both CQs were empty — destroys drained QPs, retries
/// owed receive buffers and reads async events. Writes up to `n` completions
/// the caller must act on into `wc` and returns their count:
/// * status 0, opcode RECV: a receive on a live QP; `(ibstack_chunk *)wc.wr_id`
///   holds `byte_len` bytes and now belongs to the caller (read it with
///   ibstack_chunk_read, give it back with ibstack_dispatcher_release_rx);
///   `byte_len` 0 is the peer's close SEND;
/// * any other status: an error on a live QP, which is now faulted (see
///   ibstack_qp_fault_message); its buffer was already returned.
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_poll(d: *const ibstack_dispatcher, wc: *mut Wc, n: c_int) -> c_int {
    ffi_boundary!("ibstack_dispatcher_poll", {
        let d = unsafe { disp(d) }?;
        let out = unsafe { wc_slice(wc, n) }?;
        Ok(d.inner.poll(out)?.delivered as c_int)
    })
}

/// Arms both CQs, polls once more (completions that raced with arming), and
/// if nothing is ready sleeps on both completion channels and the device's
/// async fd for up to `timeout_ms` (-1 = forever). Returns 1 when
/// ibstack_dispatcher_poll may have work, 0 on timeout, -EINTR when a signal
/// interrupted the sleep (as poll(2)), or -errno.
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_wait(d: *const ibstack_dispatcher, timeout_ms: c_int) -> c_int {
    ffi_boundary!("ibstack_dispatcher_wait", { Ok(unsafe { disp(d) }?.inner.wait(timeout_ms)? as c_int) })
}

/// Posts up to `n` receive buffers from the RX pool: to the SRQ, or (no SRQ)
/// to `qp`'s receive queue (`qp` is ignored with an SRQ and may be NULL).
/// Returns how many were posted (fewer, possibly 0, when the RX pool is at its
/// limit) or -errno: the provider's return value when the post failed (the
/// refused buffers went back to the pool).
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_post_rx(d: *const ibstack_dispatcher, n: u32, qp: *const ibstack_qp) -> c_int {
    ffi_boundary!("ibstack_dispatcher_post_rx", {
        let d = unsafe { disp(d) }?;
        // SAFETY: NULL or live.
        let qp = unsafe { qp.as_ref() };
        Ok(d.inner.post_rx(n, qp.map(|q| &*q.qp))?.min(c_int::MAX as usize) as c_int)
    })
}

/// Gives back an RX chunk that ibstack_dispatcher_poll handed over.
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_release_rx(d: *const ibstack_dispatcher, c: *mut ibstack_chunk) -> c_int {
    ffi_boundary!("ibstack_dispatcher_release_rx", {
        let d = unsafe { disp(d) }?;
        if c.is_null() {
            return Err(crate::Error::inval("chunk is NULL"));
        }
        d.inner.mem().rx.release_wr_id(chunk_id(c))?;
        Ok(0)
    })
}

/// Reads the device's async events, handles them (LAST_WQE_REACHED,
/// QP_FATAL: the QP is faulted; CQ_ERR, DEVICE_FATAL: logged and counted) and
/// returns the oldest unreported one: 1 and `*ev` filled, 0 when none.
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_next_async_event(d: *const ibstack_dispatcher, ev: *mut ibstack_async_event) -> c_int {
    ffi_boundary!("ibstack_dispatcher_next_async_event", {
        let d = unsafe { disp(d) }?;
        handle::check_out(ev, "ev")?;
        Ok(match d.inner.next_async_event()? {
            Some(e) => {
                // SAFETY: ev checked.
                unsafe { *ev = ibstack_async_event { event_type: e.kind, qp_num: e.qp_num, port: e.port, reserved: 0 } };
                1
            }
            None => 0,
        })
    })
}

/// "IBV_EVENT_QP_FATAL", … for an `enum ibv_event_type` value. Static string.
#[no_mangle]
pub extern "C" fn ibstack_async_event_str(event_type: u32) -> *const c_char {
    ffi_boundary!("ibstack_async_event_str", { Ok(static_cstr(event_name(event_type))) })
}

/// QPs created and not yet destroyed (live plus draining).
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_qp_count(d: *const ibstack_dispatcher) -> c_int {
    ffi_boundary!("ibstack_dispatcher_qp_count", { Ok(unsafe { disp(d) }?.inner.qp_count() as c_int) })
}

/// Ceph's perf counters (l_msgr_rdma_*) plus ibstack's own, gauges computed now.
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_counters(d: *const ibstack_dispatcher, out: *mut CountersSnapshot) -> c_int {
    ffi_boundary!("ibstack_dispatcher_counters", {
        let d = unsafe { disp(d) }?;
        handle::check_out(out, "out")?;
        // SAFETY: out checked.
        unsafe { *out = d.inner.counters() };
        Ok(0)
    })
}

/// The counters as JSON, grouped like `ceph daemon … perf dump`
/// ("AsyncMessenger::RDMADispatcher", "AsyncMessenger::RDMAWorker",
/// "ibstack"). String convention: returns the full length; ≥ len means truncated.
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_counters_json(d: *const ibstack_dispatcher, buf: *mut c_char, len: usize) -> c_int {
    ffi_boundary!("ibstack_dispatcher_counters_json", {
        let d = unsafe { disp(d) }?;
        unsafe { handle::text_out(&d.inner.counters().to_json(), buf, len) }
    })
}

/// Every live QP's timeline and the last ibstack_qp_history_len destroyed
/// ones, as JSON: {"live":[{"qpn":…,"state":…,"events":[{"time_us":…,
/// "since_created_us":…,"event":"rts","detail":…}]}],"destroyed":[…]}.
/// String convention as ibstack_dispatcher_counters_json.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_history_json(d: *const ibstack_dispatcher, buf: *mut c_char, len: usize) -> c_int {
    ffi_boundary!("ibstack_qp_history_json", {
        let d = unsafe { disp(d) }?;
        unsafe { handle::text_out(&d.inner.history_json(), buf, len) }
    })
}

/// For hosts that poll the CQs themselves (ibstack_cq_poll on the borrowed
/// TX CQ): hand the completions over so chunks return to the pool, beacons
/// retire QPs and errors fault QPs. Completions for the host come out of
/// ibstack_dispatcher_poll afterwards.
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_handle_tx(d: *const ibstack_dispatcher, wc: *const Wc, n: c_int) -> c_int {
    ffi_boundary!("ibstack_dispatcher_handle_tx", {
        let d = unsafe { disp(d) }?;
        let w = unsafe { wc_slice(wc.cast_mut(), n) }?;
        Ok(d.inner.handle_tx_completions(w) as c_int)
    })
}

/// Like ibstack_dispatcher_handle_tx, for completions polled from the RX CQ.
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_handle_rx(d: *const ibstack_dispatcher, wc: *const Wc, n: c_int) -> c_int {
    ffi_boundary!("ibstack_dispatcher_handle_rx", {
        let d = unsafe { disp(d) }?;
        let w = unsafe { wc_slice(wc.cast_mut(), n) }?;
        d.inner.handle_rx_completions(w);
        Ok(0)
    })
}
