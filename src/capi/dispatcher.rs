//! `ibstack_dispatcher`: Ceph's RDMADispatcher without a thread — the shared
//! TX/RX CQs, the SRQ, the QP registry, the beacon drain, async events,
//! counters and QP history — driven by the caller's polling loop.

use crate::capi::cq::ibstack_cq;
use crate::capi::ib::ibstack_ib;
use crate::capi::mem::{chunk_id, ibstack_chunk, ibstack_mem_mgr};
use crate::counters::CountersSnapshot;
use crate::dispatcher::Dispatcher;
use crate::error::Error;
use crate::ffi::handle::{self, Borrowed, Handle, Kind};
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
    _opaque: [u8; 0],
}

/// What an ibstack_dispatcher handle holds: the dispatcher and the handles
/// of its two CQs lent to C (they die with it).
pub struct DispatcherHandle {
    pub(crate) disp: Arc<Dispatcher>,
    tx: Borrowed<ibstack_cq>,
    rx: Borrowed<ibstack_cq>,
}

impl Handle for ibstack_dispatcher {
    type Target = DispatcherHandle;
    const KIND: Kind = Kind::Dispatcher;
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
    ffi_boundary!({
        let (ib, mm) = (handle::get(ib, "ib")?, handle::get(mm, "mm")?);
        // SAFETY: out is NULL or valid for one pointer write (header contract).
        unsafe {
            handle::give(out, || {
                let disp = Arc::new(Dispatcher::new(ib, mm)?);
                let (tx, rx) = (Borrowed::new(disp.tx_cq().clone()), Borrowed::new(disp.rx_cq().clone()));
                Ok(DispatcherHandle { disp, tx, rx })
            })
        }
    })
}

/// Releases the caller's reference (see the type's ownership note); its
/// borrowed CQ handles become invalid. NULL is a no-op; an invalid handle is
/// ignored with a warning.
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_free(d: *mut ibstack_dispatcher) {
    ffi_boundary!({ handle::take(d, "dispatcher").map(drop) })
}

fn disp(d: *const ibstack_dispatcher) -> crate::Result<Arc<DispatcherHandle>> {
    handle::get(d, "dispatcher")
}

/// The TX (send) CQ, borrowed: valid while the dispatcher lives (-EINVAL
/// after); ibstack_cq_free ignores it. NULL for NULL.
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_tx_cq(d: *const ibstack_dispatcher) -> *const ibstack_cq {
    ffi_boundary!({ Ok(disp(d)?.tx.ptr()) })
}

/// The RX (receive) CQ, borrowed: valid while the dispatcher lives (-EINVAL
/// after); ibstack_cq_free ignores it. NULL for NULL.
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_rx_cq(d: *const ibstack_dispatcher) -> *const ibstack_cq {
    ffi_boundary!({ Ok(disp(d)?.rx.ptr()) })
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
///   ibstack_qp_fault_message); its buffer was already returned. A receive
///   that is not a SEND's (e.g. IBV_WC_RECV_RDMA_WITH_IMM: Ceph's protocol
///   uses SENDs only) comes out with status IBV_WC_GENERAL_ERR and faults
///   the QP with a message naming the opcode.
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_poll(d: *const ibstack_dispatcher, wc: *mut Wc, n: c_int) -> c_int {
    ffi_boundary!({
        let d = disp(d)?;
        // SAFETY: wc is NULL or holds n entries (header contract).
        let out = unsafe { handle::items_mut(wc, n, "wc") }?;
        Ok(d.disp.poll(out)?.delivered as c_int)
    })
}

/// Arms both CQs, polls once more (completions that raced with arming), and
/// if nothing is ready sleeps on both completion channels and the device's
/// async fd for up to `timeout_ms` (-1 = forever). Returns 1 when
/// ibstack_dispatcher_poll may have work, 0 on timeout, -EINTR when a signal
/// interrupted the sleep (as poll(2)), or -errno.
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_wait(d: *const ibstack_dispatcher, timeout_ms: c_int) -> c_int {
    ffi_boundary!({ Ok(disp(d)?.disp.wait(timeout_ms)? as c_int) })
}

/// Gives back an RX chunk that ibstack_dispatcher_poll handed over.
/// -EINVAL for one that is free already or still posted to a receive queue
/// (e.g. named by a completion polled with ibstack_cq_poll and not yet handed
/// to ibstack_dispatcher_handle_rx); the message names the chunk.
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_release_rx(d: *const ibstack_dispatcher, c: *mut ibstack_chunk) -> c_int {
    ffi_boundary!({
        let d = disp(d)?;
        if c.is_null() {
            return Err(Error::inval("chunk is NULL"));
        }
        d.disp.mem().rx.release_wr_id(chunk_id(c))?;
        Ok(0)
    })
}

/// Reads the device's async events, handles them (LAST_WQE_REACHED,
/// QP_FATAL: the QP is faulted; DEVICE_FATAL, PORT_ERR of the port in use:
/// every QP is faulted; CQ_ERR: logged and counted; on a stack the faults
/// reach the connections, which are woken) and
/// returns the oldest unreported one: 1 and `*ev` filled, 0 when none.
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_next_async_event(d: *const ibstack_dispatcher, ev: *mut ibstack_async_event) -> c_int {
    ffi_boundary!({
        let d = disp(d)?;
        handle::check_out(ev, "ev")?;
        Ok(match d.disp.next_async_event()? {
            Some(e) => {
                let e = ibstack_async_event { event_type: e.kind, qp_num: e.qp_num, port: e.port, reserved: 0 };
                // SAFETY: ev is non-NULL and valid for one write (header contract).
                unsafe { handle::write_out(ev, "ev", e) }?;
                1
            }
            None => 0,
        })
    })
}

/// "IBV_EVENT_QP_FATAL", … for an `enum ibv_event_type` value. Static string.
#[no_mangle]
pub extern "C" fn ibstack_async_event_str(event_type: u32) -> *const c_char {
    ffi_boundary!({ Ok(handle::static_cstr(event_name(event_type))) })
}

/// QPs created and not yet destroyed (live plus draining).
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_qp_count(d: *const ibstack_dispatcher) -> c_int {
    ffi_boundary!({ Ok(disp(d)?.disp.qp_count() as c_int) })
}

/// Ceph's perf counters (l_msgr_rdma_*) plus ibstack's own, gauges computed now.
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_counters(d: *const ibstack_dispatcher, out: *mut CountersSnapshot) -> c_int {
    ffi_boundary!({
        let counters = disp(d)?.disp.counters();
        // SAFETY: out is NULL or valid for one write (header contract).
        unsafe { handle::write_out(out, "out", counters) }?;
        Ok(0)
    })
}

/// The counters as JSON, grouped like `ceph daemon … perf dump`
/// ("AsyncMessenger::RDMADispatcher", "AsyncMessenger::RDMAWorker",
/// "ibstack"). String convention: returns the full length; ≥ len means truncated.
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_counters_json(d: *const ibstack_dispatcher, buf: *mut c_char, len: usize) -> c_int {
    ffi_boundary!({
        let json = disp(d)?.disp.counters().to_json();
        // SAFETY: buf is NULL or holds len bytes (header contract).
        unsafe { handle::text_out(&json, buf, len) }
    })
}

/// Every live QP's timeline and the last ibstack_qp_history_len destroyed
/// ones, as JSON: {"live":[{"qpn":…,"state":…,"events":[{"time_us":…,
/// "since_created_us":…,"event":"rts","detail":…}]}],"destroyed":[…]}.
/// String convention as ibstack_dispatcher_counters_json.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_history_json(d: *const ibstack_dispatcher, buf: *mut c_char, len: usize) -> c_int {
    ffi_boundary!({
        let json = disp(d)?.disp.history_json();
        // SAFETY: buf is NULL or holds len bytes (header contract).
        unsafe { handle::text_out(&json, buf, len) }
    })
}

/// For hosts that poll the CQs themselves (ibstack_cq_poll on the borrowed
/// TX CQ): hand the completions over so chunks return to the pool, beacons
/// retire QPs and errors fault QPs. Completions for the host come out of
/// ibstack_dispatcher_poll afterwards.
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_handle_tx(d: *const ibstack_dispatcher, wc: *const Wc, n: c_int) -> c_int {
    ffi_boundary!({
        let d = disp(d)?;
        if n < 0 {
            return Err(Error::inval(format!("n is {n}")));
        }
        // SAFETY: wc is NULL or holds n entries (header contract).
        let w = unsafe { handle::items(wc, n as usize, "wc") }?;
        Ok(d.disp.handle_tx_completions(w) as c_int)
    })
}

/// Like ibstack_dispatcher_handle_tx, for completions polled from the RX CQ.
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_handle_rx(d: *const ibstack_dispatcher, wc: *const Wc, n: c_int) -> c_int {
    ffi_boundary!({
        let d = disp(d)?;
        if n < 0 {
            return Err(Error::inval(format!("n is {n}")));
        }
        // SAFETY: wc is NULL or holds n entries (header contract).
        let w = unsafe { handle::items(wc, n as usize, "wc") }?;
        d.disp.handle_rx_completions(w);
        Ok(0)
    })
}
