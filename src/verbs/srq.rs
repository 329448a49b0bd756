//! Shared receive queue and the receive work requests posted to it (or to a QP).

use super::{accepted, check_ret, Pd, PostError};
use crate::sys::os_error;
use crate::error::Result;
use rdma_sys as sys;
use std::sync::Arc;

/// One receive buffer to post: one SGE, `wr_id` identifies it on completion.
#[derive(Debug, Clone, Copy)]
pub struct RecvWr {
    pub wr_id: u64,
    pub addr: u64,
    pub len: u32,
    pub lkey: u32,
}

/// Posts `wrs` as one chain with `post`, which is `ibv_post_recv` or
/// `ibv_post_srq_recv` (both return their errno value and report the first
/// rejected request through `bad`).
pub(crate) fn post_recv_chain(
    call: &str,
    wrs: &[RecvWr],
    post: impl FnOnce(*mut sys::ibv_recv_wr, *mut *mut sys::ibv_recv_wr) -> i32,
) -> std::result::Result<(), PostError> {
    if wrs.is_empty() {
        return Ok(());
    }
    let mut sges: Vec<sys::ibv_sge> =
        wrs.iter().map(|w| sys::ibv_sge { addr: w.addr, length: w.len, lkey: w.lkey }).collect();
    let mut reqs: Vec<sys::ibv_recv_wr> = wrs
        .iter()
        .map(|w| sys::ibv_recv_wr { wr_id: w.wr_id, next: std::ptr::null_mut(), sg_list: std::ptr::null_mut(), num_sge: 1 })
        .collect();
    for i in 0..reqs.len() {
        reqs[i].sg_list = &mut sges[i];
        if i + 1 < reqs.len() {
            let next: *mut sys::ibv_recv_wr = &mut reqs[i + 1];
            reqs[i].next = next;
        }
    }
    let mut bad: *mut sys::ibv_recv_wr = std::ptr::null_mut();
    let ret = post(reqs.as_mut_ptr(), &mut bad);
    let bad = bad as *const sys::ibv_recv_wr;
    match check_ret(call, ret) {
        Ok(()) => Ok(()),
        Err(err) => {
            Err(PostError { posted: accepted(&reqs, bad), err })
        }
    }
}

pub struct Srq {
    srq: *mut sys::ibv_srq,
    max_wr: u32,
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
        Ok(Srq { srq, max_wr, _pd: pd.clone() })
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::ibv_srq {
        self.srq
    }

    pub fn max_wr(&self) -> u32 {
        self.max_wr
    }

    pub fn post_recv(&self, wrs: &[RecvWr]) -> std::result::Result<(), PostError> {
        // SAFETY: srq is live; the chain is valid for the duration of the call.
        post_recv_chain("ibv_post_srq_recv", wrs, |wr, bad| unsafe { sys::ibv_post_srq_recv(self.srq, wr, bad) })
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
