//! Shared receive queue and the receive work requests posted to it (or to a QP).

use super::{accepted, check_ret, Pd, PostError};
use crate::sys::os_error;
use crate::error::Result;
use rdma_sys as sys;
use parking_lot::Mutex;
use std::sync::Arc;

/// One receive buffer to post: one SGE, `wr_id` identifies it on completion.
#[derive(Debug, Clone, Copy)]
pub struct RecvWr {
    pub wr_id: u64,
    pub addr: u64,
    pub len: u32,
    pub lkey: u32,
}

/// The receive chain of one queue (SRQ or RQ), kept with it under its lock
/// and reused by every post: after the first posts nothing is allocated.
pub(crate) struct RecvScratch {
    sges: Vec<sys::ibv_sge>,
    reqs: Vec<sys::ibv_recv_wr>,
}

// SAFETY: the raw pointers inside are rebuilt by every post and point only
// into the scratch itself.
unsafe impl Send for RecvScratch {}

impl RecvScratch {
    pub(crate) fn with_capacity(n: usize) -> RecvScratch {
        RecvScratch { sges: Vec::with_capacity(n), reqs: Vec::with_capacity(n) }
    }
}

/// Posts `wrs` as one chain with `post`, which is `ibv_post_recv` or
/// `ibv_post_srq_recv` (both return their errno value and report the first
/// rejected request through `bad`). The chain is built in `s`.
pub(crate) fn post_recv_chain(
    call: &str,
    s: &mut RecvScratch,
    wrs: impl IntoIterator<Item = RecvWr>,
    post: impl FnOnce(*mut sys::ibv_recv_wr, *mut *mut sys::ibv_recv_wr) -> i32,
) -> std::result::Result<(), PostError> {
    s.sges.clear();
    s.reqs.clear();
    for w in wrs {
        s.sges.push(sys::ibv_sge { addr: w.addr, length: w.len, lkey: w.lkey });
        s.reqs.push(sys::ibv_recv_wr { wr_id: w.wr_id, next: std::ptr::null_mut(), sg_list: std::ptr::null_mut(), num_sge: 1 });
    }
    let n = s.reqs.len();
    if n == 0 {
        return Ok(());
    }
    // Linked only now: the vectors no longer move.
    for i in 0..n {
        s.reqs[i].sg_list = &mut s.sges[i];
        if i + 1 < n {
            let next: *mut sys::ibv_recv_wr = &mut s.reqs[i + 1];
            s.reqs[i].next = next;
        }
    }
    let mut bad: *mut sys::ibv_recv_wr = std::ptr::null_mut();
    let ret = post(s.reqs.as_mut_ptr(), &mut bad);
    let bad = bad as *const sys::ibv_recv_wr;
    match check_ret(call, ret) {
        Ok(()) => Ok(()),
        Err(err) => {
            let posted = accepted(&s.reqs, bad);
            Err(PostError { posted, bytes: s.sges[..posted].iter().map(|g| g.length as u64).sum(), err })
        }
    }
}

pub struct Srq {
    srq: *mut sys::ibv_srq,
    max_wr: u32,
    /// The receive chain, reused by every post (and the lock that serializes them).
    scratch: Mutex<RecvScratch>,
    _pd: Arc<Pd>,
}

// SAFETY: verbs objects may be used from any thread.
unsafe impl Send for Srq {}
unsafe impl Sync for Srq {}

impl Srq {
    /// `ibv_create_srq` with `max_wr` entries of one SGE, no limit event.
    pub fn new(pd: &Arc<Pd>, max_wr: u32) -> Result<Srq> {
        let mut attr = sys::ibv_srq_init_attr {
            srq_context: std::ptr::null_mut(),
            attr: sys::ibv_srq_attr { max_wr, max_sge: 1, srq_limit: 0 },
        };
        // SAFETY: pd is live, attr valid. Returns NULL + errno.
        let srq = unsafe { sys::ibv_create_srq(pd.as_ptr(), &mut attr) };
        if srq.is_null() {
            return Err(os_error("ibv_create_srq").context(format_args!("SRQ of {max_wr} entries")));
        }
        Ok(Srq { srq, max_wr, scratch: Mutex::new(RecvScratch::with_capacity(max_wr as usize)), _pd: pd.clone() })
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::ibv_srq {
        self.srq
    }

    pub fn max_wr(&self) -> u32 {
        self.max_wr
    }

    /// Posts `wrs` as one chain (nothing allocated once the chain's scratch
    /// has grown to the longest chain posted).
    pub fn post_recv(&self, wrs: impl IntoIterator<Item = RecvWr>) -> std::result::Result<(), PostError> {
        let mut s = self.scratch.lock();
        // SAFETY: srq is live; the chain is valid for the duration of the call.
        post_recv_chain("ibv_post_srq_recv", &mut s, wrs, |wr, bad| unsafe { sys::ibv_post_srq_recv(self.srq, wr, bad) })
    }
}

impl Drop for Srq {
    fn drop(&mut self) {
        // SAFETY: created in new(), destroyed once after every QP using it (they hold an Arc).
        if let Err(e) = check_ret("ibv_destroy_srq", unsafe { sys::ibv_destroy_srq(self.srq) }) {
            log::error!("{} (SRQ leaked)", e.msg);
        }
    }
}
