//! The data path is inline in verbs.h (ibv_post_send and friends call
//! `qp->context->ops.post_send` directly), so it cannot be interposed by
//! name. After ibv_open_device the guard replaces the three entries of the
//! context's ops table with wrappers that call the provider's originals (kept
//! per context) and, when a post fails, also set errno to its return value:
//! a caller that prints errno (Ceph's beacon message) then shows the real
//! error instead of a stale one.

use rdma_sys as sys;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicUsize, Ordering};

const SLOTS: usize = 64;

/// Per wrapped context: its address and the provider's three entries.
struct Slot {
    ctx: AtomicUsize,
    send: AtomicUsize,
    recv: AtomicUsize,
    srq_recv: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot { ctx: AtomicUsize::new(0), send: AtomicUsize::new(0), recv: AtomicUsize::new(0), srq_recv: AtomicUsize::new(0) };
static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];

type PostSend = unsafe extern "C" fn(*mut sys::ibv_qp, *mut sys::ibv_send_wr, *mut *mut sys::ibv_send_wr) -> c_int;
type PostRecv = unsafe extern "C" fn(*mut sys::ibv_qp, *mut sys::ibv_recv_wr, *mut *mut sys::ibv_recv_wr) -> c_int;
type PostSrqRecv = unsafe extern "C" fn(*mut sys::ibv_srq, *mut sys::ibv_recv_wr, *mut *mut sys::ibv_recv_wr) -> c_int;

fn slot_of(ctx: usize) -> Option<&'static Slot> {
    TABLE.iter().find(|s| s.ctx.load(Ordering::Acquire) == ctx)
}

/// A failed post: errno = the error it returned (providers return a
/// positive errno value, some a negative one).
fn settle(r: c_int) -> c_int {
    if r != 0 {
        crate::report::set_errno(r.checked_abs().unwrap_or(libc::EIO));
    }
    r
}

unsafe extern "C" fn post_send(qp: *mut sys::ibv_qp, wr: *mut sys::ibv_send_wr, bad: *mut *mut sys::ibv_send_wr) -> c_int {
    // SAFETY: qp is the caller's live QP; its context is the one wrapped.
    let ctx = unsafe { (*qp).context } as usize;
    let Some(f) = slot_of(ctx).map(|s| s.send.load(Ordering::Acquire)).filter(|&a| a != 0) else { return settle(libc::EINVAL) };
    // SAFETY: f is the provider's original post_send of this context.
    settle(unsafe { std::mem::transmute::<usize, PostSend>(f)(qp, wr, bad) })
}

unsafe extern "C" fn post_recv(qp: *mut sys::ibv_qp, wr: *mut sys::ibv_recv_wr, bad: *mut *mut sys::ibv_recv_wr) -> c_int {
    // SAFETY: as in post_send.
    let ctx = unsafe { (*qp).context } as usize;
    let Some(f) = slot_of(ctx).map(|s| s.recv.load(Ordering::Acquire)).filter(|&a| a != 0) else { return settle(libc::EINVAL) };
    // SAFETY: f is the provider's original post_recv.
    settle(unsafe { std::mem::transmute::<usize, PostRecv>(f)(qp, wr, bad) })
}

unsafe extern "C" fn post_srq_recv(srq: *mut sys::ibv_srq, wr: *mut sys::ibv_recv_wr, bad: *mut *mut sys::ibv_recv_wr) -> c_int {
    // SAFETY: srq is the caller's live SRQ.
    let ctx = unsafe { (*srq).context } as usize;
    let Some(f) = slot_of(ctx).map(|s| s.srq_recv.load(Ordering::Acquire)).filter(|&a| a != 0) else { return settle(libc::EINVAL) };
    // SAFETY: f is the provider's original post_srq_recv.
    settle(unsafe { std::mem::transmute::<usize, PostSrqRecv>(f)(srq, wr, bad) })
}

/// Put the wrappers into `ctx`'s ops table, keeping the originals. A
/// context address seen before (closed and reused) is re-registered; with
/// every slot taken the context is left unwrapped.
///
/// # Safety
/// `ctx` must be a context just returned by ibv_open_device.
pub unsafe fn wrap(ctx: *mut sys::ibv_context) {
    let key = ctx as usize;
    // SAFETY: ctx is a live context (caller).
    let ops = unsafe { &mut (*ctx).ops };
    let orig = (
        ops.post_send.map(|f| f as usize).unwrap_or(0),
        ops.post_recv.map(|f| f as usize).unwrap_or(0),
        ops.post_srq_recv.map(|f| f as usize).unwrap_or(0),
    );
    if orig.0 == post_send as *const () as usize {
        return; // already ours
    }
    let slot = match slot_of(key) {
        Some(s) => s,
        None => match TABLE.iter().find(|s| s.ctx.compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire).is_ok()) {
            Some(s) => s,
            None => {
                crate::report::note("more than 64 device contexts opened: the later ones keep errno as the provider leaves it");
                return;
            }
        },
    };
    slot.send.store(orig.0, Ordering::Release);
    slot.recv.store(orig.1, Ordering::Release);
    slot.srq_recv.store(orig.2, Ordering::Release);
    if orig.0 != 0 {
        ops.post_send = Some(post_send);
    }
    if orig.1 != 0 {
        ops.post_recv = Some(post_recv);
    }
    if orig.2 != 0 {
        ops.post_srq_recv = Some(post_srq_recv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_post_sets_errno_to_its_value() {
        crate::report::set_errno(libc::EINPROGRESS);
        assert_eq!(settle(0), 0);
        assert_eq!(crate::report::errno(), libc::EINPROGRESS);
        assert_eq!(settle(libc::ENOMEM), libc::ENOMEM);
        assert_eq!(crate::report::errno(), libc::ENOMEM);
        assert_eq!(settle(-libc::EINVAL), -libc::EINVAL);
        assert_eq!(crate::report::errno(), libc::EINVAL);
    }
}
