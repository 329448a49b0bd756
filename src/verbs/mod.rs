//! Safe wrappers over libibverbs. This is the only module that calls
//! `ibv_*` functions or reads `errno`.
//!
//! libibverbs has three error conventions, normalised here once:
//! * "returns the errno value" (query_device/port, modify_qp, post_*,
//!   req_notify_cq, destroy_*, dealloc_pd, dereg_mr, fork_init,
//!   _ibv_query_gid_ex) → [`check_ret`];
//! * "NULL and sets errno" (get_device_list, open_device, alloc_pd, reg_mr,
//!   create_*) → [`crate::sys::os_error`] read immediately after the call;
//! * "-1 and sets errno" (query_gid, get_cq_event, get_async_event,
//!   close_device) → [`crate::sys::errno`].

pub mod cq;
pub mod device;
pub mod event;
pub mod mr;
pub mod pd;
pub mod qp;
pub mod srq;

pub use cq::{wc_status_name, Cq, Wc};
pub use device::{Context, DeviceAttr, DeviceList, GidEntry, GidType, LinkLayer, PortAttr, PortState};
pub use event::{event_name, AsyncEvent};
pub use mr::Mr;
pub use pd::Pd;
pub use qp::{sends_inline, QpCaps, QpState, RawQp, RtrAttrs, RtsAttrs, SendWr};
pub use srq::{RecvWr, Srq};

use crate::error::{Error, Result};

/// For calls that return their error number: 0 is success, anything else is
/// the (positive) errno. A negative return is tolerated as well.
pub(crate) fn check_ret(call: &str, ret: i32) -> Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        let e = ret.abs();
        Err(Error::new(e, format!("{call} failed: {} (returned {ret})", crate::errno::errno_cstr(e).to_string_lossy())))
    }
}

/// A post that failed part-way: the first `posted` requests were accepted.
#[derive(Debug)]
pub struct PostError {
    pub posted: usize,
    /// Bytes the accepted requests carry (the sum of their SGE lengths).
    pub bytes: u64,
    pub err: Error,
}

impl PostError {
    /// Nothing was posted.
    pub fn none(err: Error) -> PostError {
        PostError { posted: 0, bytes: 0, err }
    }
}

/// How many requests of `chain` the provider accepted, from the `bad`
/// pointer it returned (the first rejected element; NULL = none accepted).
pub(crate) fn accepted<T>(chain: &[T], bad: *const T) -> usize {
    if bad.is_null() {
        return 0;
    }
    ((bad as usize).saturating_sub(chain.as_ptr() as usize) / std::mem::size_of::<T>().max(1)).min(chain.len())
}

/// `ibv_fork_init()`: must run before any other verbs call to take effect.
pub fn fork_init() -> Result<()> {
    // SAFETY: no arguments; returns an errno value.
    check_ret("ibv_fork_init", unsafe { rdma_sys::ibv_fork_init() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returned_errno_is_used_not_thread_errno() {
        // errno holds EINPROGRESS (a stale value from a connect), the call returned ENOMEM.
        unsafe { *libc::__errno_location() = libc::EINPROGRESS };
        let e = check_ret("ibv_post_send", libc::ENOMEM).unwrap_err();
        assert_eq!(e.errno, libc::ENOMEM);
        assert!(e.msg.contains("ENOMEM"), "{}", e.msg);
        assert!(!e.msg.contains("EINPROGRESS"), "{}", e.msg);
        assert!(check_ret("x", 0).is_ok());
        assert_eq!(check_ret("x", -libc::EINVAL).unwrap_err().errno, libc::EINVAL);
    }

    #[test]
    fn accepted_counts_the_requests_before_the_rejected_one() {
        let chain = [0u64; 5];
        assert_eq!(accepted(&chain, std::ptr::null()), 0);
        assert_eq!(accepted(&chain, &chain[0]), 0);
        assert_eq!(accepted(&chain, &chain[3]), 3);
        assert_eq!(accepted(&chain, chain.as_ptr().wrapping_add(9)), 5);
    }
}
