//! `ibstack_cq`: a completion queue with its own completion channel, and the
//! work completion type `ibstack_wc`.

use crate::capi::ib::ibstack_ib;
use crate::ffi::handle::{self, Handle, Kind};
use crate::ffi_boundary;
use crate::verbs::{wc_status_name, Cq, Wc};
use std::os::raw::{c_char, c_int};

/// A completion queue bound to its own non-blocking completion channel.
/// Ownership: either created by ibstack_cq_new and freed by ibstack_cq_free,
/// or borrowed from a dispatcher (ibstack_dispatcher_tx_cq / _rx_cq; never
/// freed by the caller — ibstack_cq_free ignores it with a warning — valid
/// while the dispatcher lives, -EINVAL after).
/// Thread safety: poll, rearm and get_event may be called from any thread;
/// polling one CQ from two threads at once splits its completions between them.
pub struct ibstack_cq {
    _opaque: [u8; 0],
}

impl Handle for ibstack_cq {
    type Target = Cq;
    const KIND: Kind = Kind::Cq;
}

/// Creates a CQ of `depth` entries (0 = ibstack_cq_depth from the device's
/// configuration, capped at max_cqe) bound to a new completion channel whose
/// fd is non-blocking, and arms it. Caller owns `*out`.
#[no_mangle]
pub unsafe extern "C" fn ibstack_cq_new(ib: *const ibstack_ib, depth: u32, out: *mut *mut ibstack_cq) -> c_int {
    ffi_boundary!({
        let ib = handle::get(ib, "ib")?;
        // SAFETY: out is NULL or valid for one pointer write (header contract).
        unsafe { handle::give(out, || Cq::new(ib.context(), ib.cq_depth(depth))) }
    })
}

/// Acknowledges pending events, destroys the CQ and its channel (once no QP
/// uses it any more). NULL is a no-op. Never call it on a borrowed CQ (a
/// borrowed CQ, a freed or a foreign pointer is ignored with a warning and
/// the last-error message set).
#[no_mangle]
pub unsafe extern "C" fn ibstack_cq_free(cq: *mut ibstack_cq) {
    ffi_boundary!({ handle::take(cq, "cq").map(drop) })
}

/// The completion channel's fd (non-blocking): readable when the armed CQ got
/// a completion. Use it with epoll, then ibstack_cq_get_event, poll, rearm.
#[no_mangle]
pub unsafe extern "C" fn ibstack_cq_fd(cq: *const ibstack_cq) -> c_int {
    ffi_boundary!({ Ok(handle::get(cq, "cq")?.fd()) })
}

/// Arms the CQ for the next completion (any kind). Returns 0 or -errno
/// (ibv_req_notify_cq's return value).
#[no_mangle]
pub unsafe extern "C" fn ibstack_cq_rearm(cq: *const ibstack_cq) -> c_int {
    ffi_boundary!({
        handle::get(cq, "cq")?.rearm()?;
        Ok(0)
    })
}

/// Takes one event from the channel: 1 if there was one, 0 if none is
/// pending, -errno on failure. Events are acknowledged in batches of 5000
/// (and the rest when the CQ is destroyed).
#[no_mangle]
pub unsafe extern "C" fn ibstack_cq_get_event(cq: *const ibstack_cq) -> c_int {
    ffi_boundary!({ Ok(handle::get(cq, "cq")?.get_event()? as c_int) })
}

/// Events taken with ibstack_cq_get_event and not yet acknowledged (< 5000).
#[no_mangle]
pub unsafe extern "C" fn ibstack_cq_unacked_events(cq: *const ibstack_cq) -> u32 {
    ffi_boundary!({ Ok(handle::get(cq, "cq")?.unacked_events()) })
}

/// Polls up to `n` completions into `wc`; returns how many (0 = none) or
/// -errno. This is the raw CQ: on a dispatcher's CQ, hand what you poll to
/// ibstack_dispatcher_handle_tx / _handle_rx, or use ibstack_dispatcher_poll instead.
#[no_mangle]
pub unsafe extern "C" fn ibstack_cq_poll(cq: *const ibstack_cq, wc: *mut Wc, n: c_int) -> c_int {
    ffi_boundary!({
        let cq = handle::get(cq, "cq")?;
        // SAFETY: wc is NULL or holds n entries (header contract).
        let out = unsafe { handle::items_mut(wc, n, "wc") }?;
        Ok(cq.poll(out)? as c_int)
    })
}

/// The name of an `ibv_wc_status` value ("SUCCESS", "WR_FLUSH_ERR", …), as
/// Ceph logs it; "<status out of range!>" otherwise. Static string.
#[no_mangle]
pub extern "C" fn ibstack_wc_status_str(status: u32) -> *const c_char {
    ffi_boundary!({ Ok(handle::static_cstr(wc_status_name(status))) })
}
