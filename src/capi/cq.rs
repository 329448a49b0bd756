//! `ibstack_cq`: a completion queue with its own completion channel, and the
//! work completion type `ibstack_wc`.

use crate::capi::ib::ibstack_ib;
use crate::error::Error;
use crate::ffi::handle;
use crate::ffi_boundary;
use crate::verbs::{wc_status_name, Cq, Wc};
use std::os::raw::{c_char, c_int};
use std::sync::Arc;

/// A completion queue bound to its own non-blocking completion channel.
/// Ownership: either created by ibstack_cq_new and freed by ibstack_cq_free,
/// or borrowed from a dispatcher (ibstack_dispatcher_tx_cq / _rx_cq; never
/// freed by the caller, valid while the dispatcher lives).
/// Thread safety: poll, rearm and get_event may be called from any thread;
/// polling one CQ from two threads at once splits its completions between them.
pub struct ibstack_cq {
    pub(crate) inner: Arc<Cq>,
}

/// Creates a CQ of `depth` entries (0 = ibstack_cq_depth from the device's
/// configuration, capped at max_cqe) bound to a new completion channel whose
/// fd is non-blocking, and arms it. Caller owns `*out`.
#[no_mangle]
pub unsafe extern "C" fn ibstack_cq_new(ib: *const ibstack_ib, depth: u32, out: *mut *mut ibstack_cq) -> c_int {
    ffi_boundary!("ibstack_cq_new", {
        // SAFETY: ib is NULL or live.
        let ib = unsafe { handle::borrow(ib, "ib") }?;
        handle::check_out(out, "out")?;
        let max = ib.inner.device_attr().max_cqe.max(1) as u32;
        let depth = if depth == 0 { ib.inner.config().cq_depth.min(max) } else { depth };
        let cq = Cq::new(ib.inner.context(), depth)?;
        // SAFETY: out checked.
        unsafe { handle::give(out, ibstack_cq { inner: Arc::new(cq) }) };
        Ok(0)
    })
}

/// Acknowledges pending events, destroys the CQ and its channel (once no QP
/// uses it any more). NULL is a no-op. Never call it on a borrowed CQ.
#[no_mangle]
pub unsafe extern "C" fn ibstack_cq_free(cq: *mut ibstack_cq) {
    ffi_boundary!("ibstack_cq_free", {
        // SAFETY: cq is NULL or came from ibstack_cq_new.
        unsafe { handle::free(cq) };
        Ok(())
    })
}

/// The completion channel's fd (non-blocking): readable when the armed CQ got
/// a completion. Use it with epoll, then ibstack_cq_get_event, poll, rearm.
#[no_mangle]
pub unsafe extern "C" fn ibstack_cq_fd(cq: *const ibstack_cq) -> c_int {
    ffi_boundary!("ibstack_cq_fd", { Ok(unsafe { handle::borrow(cq, "cq") }?.inner.fd()) })
}

/// Arms the CQ for the next completion (any kind). Returns 0 or -errno
/// (ibv_req_notify_cq's return value).
#[no_mangle]
pub unsafe extern "C" fn ibstack_cq_rearm(cq: *const ibstack_cq) -> c_int {
    ffi_boundary!("ibstack_cq_rearm", {
        unsafe { handle::borrow(cq, "cq") }?.inner.rearm()?;
        Ok(0)
    })
}

/// Takes one event from the channel: 1 if there was one, 0 if none is
/// pending, -errno on failure. Events are acknowledged in batches of 5000
/// (and the rest when the CQ is destroyed).
#[no_mangle]
pub unsafe extern "C" fn ibstack_cq_get_event(cq: *const ibstack_cq) -> c_int {
    ffi_boundary!("ibstack_cq_get_event", { Ok(unsafe { handle::borrow(cq, "cq") }?.inner.get_event()? as c_int) })
}

/// Events taken with ibstack_cq_get_event and not yet acknowledged (< 5000).
#[no_mangle]
pub unsafe extern "C" fn ibstack_cq_unacked_events(cq: *const ibstack_cq) -> u32 {
    ffi_boundary!("ibstack_cq_unacked_events", { Ok(unsafe { handle::borrow(cq, "cq") }?.inner.unacked_events()) })
}

/// Polls up to `n` completions into `wc`; returns how many (0 = none) or
/// -errno. This is the raw CQ: on a dispatcher's CQ, hand what you poll to
/// ibstack_dispatcher_handle_tx / _handle_rx, or use ibstack_dispatcher_poll instead.
#[no_mangle]
pub unsafe extern "C" fn ibstack_cq_poll(cq: *const ibstack_cq, wc: *mut Wc, n: c_int) -> c_int {
    ffi_boundary!("ibstack_cq_poll", {
        let cq = unsafe { handle::borrow(cq, "cq") }?;
        let out = unsafe { wc_slice(wc, n) }?;
        Ok(cq.inner.poll(out)? as c_int)
    })
}

/// (wc, n) as a mutable slice; n < 0 or NULL with n > 0 is EINVAL.
pub(crate) unsafe fn wc_slice<'a>(wc: *mut Wc, n: c_int) -> crate::Result<&'a mut [Wc]> {
    if n < 0 {
        return Err(Error::inval(format!("n is {n}")));
    }
    if n == 0 {
        return Ok(&mut []);
    }
    if wc.is_null() {
        return Err(Error::inval(format!("wc is NULL but n is {n}")));
    }
    // SAFETY: the caller provides n entries.
    Ok(unsafe { std::slice::from_raw_parts_mut(wc, n as usize) })
}

/// The name of an `ibv_wc_status` value ("SUCCESS", "WR_FLUSH_ERR", …), as
/// Ceph logs it; "<status out of range!>" otherwise. Static string.
#[no_mangle]
pub extern "C" fn ibstack_wc_status_str(status: u32) -> *const c_char {
    ffi_boundary!("ibstack_wc_status_str", { Ok(static_cstr(wc_status_name(status))) })
}

/// A NUL-terminated copy of a static name, leaked once per distinct name.
pub(crate) fn static_cstr(s: &'static str) -> *const c_char {
    use once_cell::sync::Lazy;
    use parking_lot::Mutex;
    use std::collections::HashMap;
    static NAMES: Lazy<Mutex<HashMap<&'static str, &'static std::ffi::CStr>>> = Lazy::new(|| Mutex::new(HashMap::new()));
    let mut m = NAMES.lock();
    let c = m.entry(s).or_insert_with(|| {
        let owned = std::ffi::CString::new(s).unwrap_or_default();
        Box::leak(owned.into_boxed_c_str())
    });
    c.as_ptr()
}
