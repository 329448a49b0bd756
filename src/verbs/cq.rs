//! Completion queue with its own completion channel (Ceph pairs them one to
//! one: `CompletionChannel` + `CompletionQueue`), and the work completion type
//! handed to C (`ibstack_wc`).

use super::{check_ret, Context};
use crate::sys::{errno, os_error};
use crate::error::{Error, Result};
use parking_lot::Mutex;
use rdma_sys as sys;
use std::os::raw::c_int;
use std::sync::Arc;

/// Events acknowledged in one `ibv_ack_cq_events` call (Ceph's MAX_ACK_EVENT).
pub const MAX_ACK_EVENT: u32 = 5000;

/// One work completion, as C sees it (`ibstack_wc`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wc {
    /// The wr_id of the work request (a chunk address, the beacon 0xDEADBEEF, …).
    pub wr_id: u64,
    /// `enum ibv_wc_status` (0 = success); names from `ibstack_wc_status_str`.
    pub status: u32,
    /// `enum ibv_wc_opcode` (0 = SEND, 128 = RECV). Only valid when status is 0.
    pub opcode: u32,
    /// Bytes received (receive completions).
    pub byte_len: u32,
    /// Local QP number the completion belongs to.
    pub qp_num: u32,
    /// Provider-specific error detail.
    pub vendor_err: u32,
    pub reserved: u32,
}

pub const WC_SUCCESS: u32 = sys::ibv_wc_status::IBV_WC_SUCCESS;
pub const WC_WR_FLUSH_ERR: u32 = sys::ibv_wc_status::IBV_WC_WR_FLUSH_ERR;
pub const WC_RETRY_EXC_ERR: u32 = sys::ibv_wc_status::IBV_WC_RETRY_EXC_ERR;
pub const WC_OPCODE_RECV: u32 = sys::ibv_wc_opcode::IBV_WC_RECV;
pub const WC_GENERAL_ERR: u32 = sys::ibv_wc_status::IBV_WC_GENERAL_ERR;

const WC_STATUS_NAMES: [&str; 24] = [
    "SUCCESS",
    "LOC_LEN_ERR",
    "LOC_QP_OP_ERR",
    "LOC_EEC_OP_ERR",
    "LOC_PROT_ERR",
    "WR_FLUSH_ERR",
    "MW_BIND_ERR",
    "BAD_RESP_ERR",
    "LOC_ACCESS_ERR",
    "REM_INV_REQ_ERR",
    "REM_ACCESS_ERR",
    "REM_OP_ERR",
    "RETRY_EXC_ERR",
    "RNR_RETRY_EXC_ERR",
    "LOC_RDD_VIOL_ERR",
    "REM_INV_RD_REQ_ERR",
    "REM_ABORT_ERR",
    "INV_EECN_ERR",
    "INV_EEC_STATE_ERR",
    "FATAL_ERR",
    "RESP_TIMEOUT_ERR",
    "GENERAL_ERR",
    "TM_ERR",
    "TM_RNDV_INCOMPLETE",
];

/// Name of an `ibv_wc_status` value, as Ceph prints it ("SUCCESS", "WR_FLUSH_ERR", …).
pub fn wc_status_name(status: u32) -> &'static str {
    WC_STATUS_NAMES.get(status as usize).copied().unwrap_or("<status out of range!>")
}

/// A CQ bound to its own non-blocking completion channel.
pub struct Cq {
    cq: *mut sys::ibv_cq,
    channel: *mut sys::ibv_comp_channel,
    /// Events taken with `ibv_get_cq_event` and not acknowledged yet.
    unacked: Mutex<u32>,
    depth: u32,
    _ctx: Arc<Context>,
}

// SAFETY: verbs objects may be used from any thread; the event counter is locked.
unsafe impl Send for Cq {}
unsafe impl Sync for Cq {}

impl Cq {
    /// Creates a completion channel (fd set O_NONBLOCK) and a CQ of `depth`
    /// entries bound to it, armed for all completions.
    pub fn new(ctx: &Arc<Context>, depth: u32) -> Result<Cq> {
        // SAFETY: ctx is open. Returns NULL + errno.
        let channel = unsafe { sys::ibv_create_comp_channel(ctx.as_ptr()) };
        if channel.is_null() {
            return Err(os_error("ibv_create_comp_channel"));
        }
        // SAFETY: channel is live; fd belongs to it.
        let fd = unsafe { (*channel).fd };
        if let Err(e) = crate::sys::set_nonblocking(fd) {
            // SAFETY: created above, nothing uses it.
            unsafe { sys::ibv_destroy_comp_channel(channel) };
            return Err(e.context("completion channel fd"));
        }
        let depth_i = c_int::try_from(depth).unwrap_or(c_int::MAX);
        // SAFETY: ctx and channel are live. Returns NULL + errno.
        let cq = unsafe { sys::ibv_create_cq(ctx.as_ptr(), depth_i, std::ptr::null_mut(), channel, 0) };
        if cq.is_null() {
            let e = os_error("ibv_create_cq");
            // SAFETY: as above.
            unsafe { sys::ibv_destroy_comp_channel(channel) };
            let hint = if e.errno == libc::EINVAL {
                format!(" (depth {depth} is above the device's max_cqe: lower ibstack_cq_depth)")
            } else {
                String::new()
            };
            return Err(Error::new(e.errno, format!("{}{hint}", e.msg)));
        }
        let cq = Cq { cq, channel, unacked: Mutex::new(0), depth, _ctx: ctx.clone() };
        cq.rearm()?;
        Ok(cq)
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::ibv_cq {
        self.cq
    }

    /// Entries the CQ was asked for (the provider may round up).
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// The completion channel's fd (non-blocking; readable when an armed CQ fired).
    pub fn fd(&self) -> c_int {
        // SAFETY: channel is live.
        unsafe { (*self.channel).fd }
    }

    /// Arms the CQ for the next completion of any kind (Ceph's
    /// `rearm_notify` ignores solicited-only too).
    pub fn rearm(&self) -> Result<()> {
        // SAFETY: cq is live. Returns an errno value.
        check_ret("ibv_req_notify_cq", unsafe { sys::ibv_req_notify_cq(self.cq, 0) })
    }

    /// Polls up to `out.len()` completions; returns how many were written.
    pub fn poll(&self, out: &mut [Wc]) -> Result<usize> {
        const BATCH: usize = 32;
        // Not zeroed (this runs on every poll): the provider writes the
        // entries it reports and only those are read.
        let mut raw: std::mem::MaybeUninit<[sys::ibv_wc; BATCH]> = std::mem::MaybeUninit::uninit();
        let raw_ptr = raw.as_mut_ptr().cast::<sys::ibv_wc>();
        let mut done = 0;
        while done < out.len() {
            let want = (out.len() - done).min(BATCH);
            // SAFETY: cq is live; raw has room for `want` entries.
            let n = unsafe { sys::ibv_poll_cq(self.cq, want as c_int, raw_ptr) };
            if n < 0 {
                // ibv_poll_cq returns a negative value; errno is not specified.
                return Err(Error::new(libc::EIO, format!("ibv_poll_cq failed (returned {n}): the CQ is in error (overrun?)")));
            }
            // SAFETY: the provider initialised the first n entries.
            let got = unsafe { std::slice::from_raw_parts(raw_ptr, n as usize) };
            for (dst, w) in out[done..].iter_mut().zip(got) {
                *dst = Wc {
                    wr_id: w.wr_id,
                    status: w.status,
                    opcode: w.opcode,
                    byte_len: w.byte_len,
                    qp_num: w.qp_num,
                    vendor_err: w.vendor_err,
                    reserved: 0,
                };
            }
            done += n as usize;
            if (n as usize) < want {
                break;
            }
        }
        Ok(done)
    }

    /// Takes one event from the channel: `Ok(true)` if there was one,
    /// `Ok(false)` if none is pending (EAGAIN/EINTR). Acknowledges in batches
    /// of [`MAX_ACK_EVENT`].
    pub fn get_event(&self) -> Result<bool> {
        let mut cq: *mut sys::ibv_cq = std::ptr::null_mut();
        let mut ctx: *mut std::os::raw::c_void = std::ptr::null_mut();
        // SAFETY: channel is live, out-pointers valid. Returns -1 + errno.
        if unsafe { sys::ibv_get_cq_event(self.channel, &mut cq, &mut ctx) } != 0 {
            let e = errno();
            if e == libc::EAGAIN || e == libc::EINTR {
                return Ok(false);
            }
            return Err(Error::new(e, format!("ibv_get_cq_event failed: {}", crate::errno::errno_cstr(e).to_string_lossy())));
        }
        let mut n = self.unacked.lock();
        *n += 1;
        if *n >= MAX_ACK_EVENT {
            // SAFETY: the event came from our CQ (only one CQ uses this channel).
            unsafe { sys::ibv_ack_cq_events(self.cq, *n) };
            *n = 0;
        }
        Ok(true)
    }

    /// Events taken but not yet acknowledged.
    pub fn unacked_events(&self) -> u32 {
        *self.unacked.lock()
    }

    /// Acknowledges every pending event (required before destroying the CQ).
    pub fn ack_pending(&self) {
        let mut n = self.unacked.lock();
        if *n > 0 {
            // SAFETY: events were taken from this CQ.
            unsafe { sys::ibv_ack_cq_events(self.cq, *n) };
            *n = 0;
        }
    }
}

impl Drop for Cq {
    fn drop(&mut self) {
        self.ack_pending();
        // SAFETY: created in new(), destroyed once; the QPs using it are gone
        // (they hold an Arc to this CQ). Both return errno values.
        if let Err(e) = check_ret("ibv_destroy_cq", unsafe { sys::ibv_destroy_cq(self.cq) }) {
            log::error!("{} (CQ leaked)", e.msg);
            return;
        }
        if let Err(e) = check_ret("ibv_destroy_comp_channel", unsafe { sys::ibv_destroy_comp_channel(self.channel) }) {
            log::error!("{} (completion channel leaked)", e.msg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_match_ibverbs_numbering() {
        assert_eq!(wc_status_name(0), "SUCCESS");
        assert_eq!(wc_status_name(WC_WR_FLUSH_ERR), "WR_FLUSH_ERR");
        assert_eq!(wc_status_name(WC_RETRY_EXC_ERR), "RETRY_EXC_ERR");
        assert_eq!(wc_status_name(21), "GENERAL_ERR");
        assert_eq!(wc_status_name(999), "<status out of range!>");
        assert_eq!(std::mem::size_of::<Wc>(), 32);
    }
}
