//! RC queue pair: creation, the four state transitions with Ceph 16.2.15's
//! attribute values, queries, and posting. Every post and modify reports the
//! verbs return value, never `errno`.

use super::srq::{post_recv_chain, RecvScratch, RecvWr};
use super::{accepted, check_ret, Cq, Pd, PostError, Srq};
use crate::sys::os_error;
use crate::error::Result;
use parking_lot::Mutex;
use rdma_sys as sys;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

// enum ibv_qp_attr_mask bits.
const STATE: u32 = 1;
const ACCESS_FLAGS: u32 = 1 << 3;
const PKEY_INDEX: u32 = 1 << 4;
const PORT: u32 = 1 << 5;
const AV: u32 = 1 << 7;
const PATH_MTU: u32 = 1 << 8;
const TIMEOUT: u32 = 1 << 9;
const RETRY_CNT: u32 = 1 << 10;
const RNR_RETRY: u32 = 1 << 11;
const RQ_PSN: u32 = 1 << 12;
const MAX_QP_RD_ATOMIC: u32 = 1 << 13;
const MIN_RNR_TIMER: u32 = 1 << 15;
const SQ_PSN: u32 = 1 << 16;
const MAX_DEST_RD_ATOMIC: u32 = 1 << 17;
const DEST_QPN: u32 = 1 << 20;

/// Ceph's INIT→RTR mask (0x129181).
pub const RTR_MASK: u32 = STATE | AV | PATH_MTU | DEST_QPN | RQ_PSN | MIN_RNR_TIMER | MAX_DEST_RD_ATOMIC;
/// Ceph's RTR→RTS mask (0x12e01).
pub const RTS_MASK: u32 = STATE | TIMEOUT | RETRY_CNT | RNR_RETRY | SQ_PSN | MAX_QP_RD_ATOMIC;
const INIT_MASK: u32 = STATE | PKEY_INDEX | PORT | ACCESS_FLAGS;

/// QP states as libibverbs numbers them (IBV_QPS_RESET=0, INIT=1, RTR=2,
/// RTS=3, SQD=4, SQE=5, ERR=6, UNKNOWN=7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum QpState {
    Reset,
    Init,
    Rtr,
    Rts,
    Sqd,
    Sqe,
    Err,
    Unknown,
}

pub const ALL_STATES: [QpState; 8] = [
    QpState::Reset,
    QpState::Init,
    QpState::Rtr,
    QpState::Rts,
    QpState::Sqd,
    QpState::Sqe,
    QpState::Err,
    QpState::Unknown,
];

impl QpState {
    /// Any value above 6 is `Unknown`.
    pub fn from_raw(v: u32) -> QpState {
        ALL_STATES.get(v as usize).copied().unwrap_or(QpState::Unknown)
    }

    pub fn raw(self) -> u32 {
        self as u32
    }

    pub fn name(self) -> &'static str {
        ["RESET", "INIT", "RTR", "RTS", "SQD", "SQE", "ERR", "UNKNOWN"][self as usize]
    }
}

/// What RTR would set (built from config + peer record).
#[derive(Debug, Clone, Copy)]
pub struct RtrAttrs {
    /// `enum ibv_mtu` (1 = 256 … 5 = 4096).
    pub path_mtu: u32,
    pub dest_qpn: u32,
    pub rq_psn: u32,
    pub dgid: [u8; 16],
    pub dlid: u16,
    pub sgid_index: u32,
    pub sl: u8,
    pub traffic_class: u8,
    pub hop_limit: u8,
    pub max_dest_rd_atomic: u8,
    pub min_rnr_timer: u8,
    pub port_num: u8,
}

/// RTR→RTS values (reference §1.11).
#[derive(Debug, Clone, Copy)]
pub struct RtsAttrs {
    pub sq_psn: u32,
    pub timeout: u8,
    pub retry_cnt: u8,
    pub rnr_retry: u8,
    pub max_rd_atomic: u8,
}

/// One signaled SEND: one SGE, or none when `len` is 0 and `addr` is 0
/// (the fin and the beacon).
#[derive(Debug, Clone, Copy)]
pub struct SendWr {
    pub wr_id: u64,
    pub addr: u64,
    pub len: u32,
    pub lkey: u32,
}

/// Queue sizes asked for at creation.
#[derive(Debug, Clone, Copy)]
pub struct QpCaps {
    pub max_send_wr: u32,
    /// Ignored when an SRQ is given.
    pub max_recv_wr: u32,
    /// Inline data per SEND asked for (`ibstack_max_inline`; 0 = none).
    pub max_inline: u32,
}

/// Whether a SEND of `len` bytes goes inline on a QP that allows
/// `max_inline` bytes: never when empty (the fin, the beacon), never when
/// `max_inline` is 0.
#[inline]
pub fn sends_inline(len: u32, max_inline: u32) -> bool {
    len > 0 && len <= max_inline
}

/// The send chain, kept with the QP under its send lock and reused by every
/// post: after the first posts nothing is allocated.
struct SendScratch {
    sges: Vec<sys::ibv_sge>,
    reqs: Vec<sys::ibv_send_wr>,
}

// SAFETY: the raw pointers inside are rebuilt by every post and point only
// into the scratch itself.
unsafe impl Send for SendScratch {}

pub struct RawQp {
    qp: *mut sys::ibv_qp,
    qpn: u32,
    /// Inline bytes a SEND may carry: what the provider reported back at
    /// creation (0 when none was asked for or the device refused it).
    max_inline: u32,
    /// Inline bytes asked for and refused by the device (0 = none refused).
    inline_refused: u32,
    /// The send lock: serializes posts and holds their chain.
    send: Mutex<SendScratch>,
    /// The same for the QP's own receive queue (unused with an SRQ).
    recv: Mutex<RecvScratch>,
    // Keep what the QP points at alive until it is destroyed.
    _pd: Arc<Pd>,
    _send_cq: Arc<Cq>,
    _recv_cq: Arc<Cq>,
    _srq: Option<Arc<Srq>>,
}

// SAFETY: verbs objects may be used from any thread.
unsafe impl Send for RawQp {}
unsafe impl Sync for RawQp {}

impl RawQp {
    /// `ibv_create_qp` for an RC QP: one SGE each way, `caps.max_inline`
    /// bytes of inline data, `sq_sig_all = 0` (every WR posted here is
    /// signaled anyway). A device that refuses the inline size (EINVAL or
    /// ENOMEM) gets a second try without inline data: inline is an
    /// optimisation, never a reason to fail a connection.
    pub fn create_rc(pd: &Arc<Pd>, send_cq: &Arc<Cq>, recv_cq: &Arc<Cq>, srq: Option<&Arc<Srq>>, caps: QpCaps) -> Result<RawQp> {
        let attempt = |inline: u32| {
            // SAFETY: zeroed is valid for this plain C struct.
            let mut attr: sys::ibv_qp_init_attr = unsafe { std::mem::zeroed() };
            attr.send_cq = send_cq.as_ptr();
            attr.recv_cq = recv_cq.as_ptr();
            attr.srq = srq.map_or(std::ptr::null_mut(), |s| s.as_ptr());
            attr.cap.max_send_wr = caps.max_send_wr;
            attr.cap.max_send_sge = 1;
            attr.cap.max_inline_data = inline;
            if srq.is_none() {
                attr.cap.max_recv_wr = caps.max_recv_wr;
                attr.cap.max_recv_sge = 1;
            }
            attr.qp_type = sys::ibv_qp_type::IBV_QPT_RC;
            attr.sq_sig_all = 0;
            // SAFETY: pd and CQs are live; attr valid. Returns NULL + errno,
            // and on success the capabilities granted in attr.cap.
            let qp = unsafe { sys::ibv_create_qp(pd.as_ptr(), &mut attr) };
            if qp.is_null() {
                Err(os_error("ibv_create_qp"))
            } else {
                Ok((qp, attr.cap.max_inline_data))
            }
        };
        let mut inline_refused = 0;
        let mut r = attempt(caps.max_inline);
        if let Err(e) = &r {
            if caps.max_inline > 0 && (e.errno == libc::EINVAL || e.errno == libc::ENOMEM) {
                let retry = attempt(0);
                if retry.is_ok() {
                    // Once per process at info (every QP of the device meets
                    // the same refusal), then at debug.
                    static TOLD: AtomicBool = AtomicBool::new(false);
                    let level = if TOLD.swap(true, Relaxed) { log::Level::Debug } else { log::Level::Info };
                    log::log!(
                        level,
                        "the device refused {} bytes of inline data per SEND ({}): queue pairs are created without \
                         inline data (set ibstack_max_inline lower, or 0 to skip the attempt)",
                        caps.max_inline,
                        e.msg
                    );
                    inline_refused = caps.max_inline;
                }
                r = retry;
            }
        }
        let (qp, granted) = match r {
            Ok(v) => v,
            Err(e) => {
                let hint = if e.errno == libc::ENOMEM || e.errno == libc::EINVAL {
                    format!(
                        " (asked for max_send_wr {} max_recv_wr {}: reduce ms_async_rdma_send_buffers / \
                         ms_async_rdma_receive_queue_len, or check the device's max_qp / max_qp_wr)",
                        caps.max_send_wr,
                        if srq.is_some() { 0 } else { caps.max_recv_wr }
                    )
                } else {
                    String::new()
                };
                return Err(crate::Error::new(e.errno, format!("{}{hint}", e.msg)));
            }
        };
        // What the provider granted (it may round up) is what may be used;
        // nothing when none was asked for (a provider may still report the
        // room its WQE leaves; 0 means never inline).
        let max_inline = if inline_refused > 0 || caps.max_inline == 0 { 0 } else { granted };
        // SAFETY: qp is live.
        let qpn = unsafe { (*qp).qp_num };
        let send = SendScratch {
            sges: Vec::with_capacity(caps.max_send_wr as usize),
            reqs: Vec::with_capacity(caps.max_send_wr as usize),
        };
        let recv = RecvScratch::with_capacity(if srq.is_some() { 0 } else { caps.max_recv_wr as usize });
        Ok(RawQp { qp, qpn, max_inline, inline_refused, send: Mutex::new(send), recv: Mutex::new(recv), _pd: pd.clone(), _send_cq: send_cq.clone(), _recv_cq: recv_cq.clone(), _srq: srq.cloned() })
    }

    pub fn qp_num(&self) -> u32 {
        self.qpn
    }

    /// The largest SEND posted inline: what the device granted at creation
    /// (0 = no inline SENDs).
    pub fn max_inline(&self) -> u32 {
        self.max_inline
    }

    /// The inline size the device refused at creation (0 = none refused).
    pub fn inline_refused(&self) -> u32 {
        self.inline_refused
    }

    fn modify(&self, call: &str, attr: &mut sys::ibv_qp_attr, mask: u32) -> Result<()> {
        // SAFETY: qp is live; attr valid. Returns an errno value.
        check_ret(call, unsafe { sys::ibv_modify_qp(self.qp, attr, mask as i32) })
    }

    /// RESET→INIT: pkey 0, the bound port, LOCAL_WRITE only: Ceph's wire
    /// protocol uses SENDs only, so no peer may RDMA WRITE into this QP
    /// (a zero-length WRITE with immediate would otherwise consume a receive).
    pub fn modify_to_init(&self, port: u8) -> Result<()> {
        // SAFETY: zeroed is valid.
        let mut a: sys::ibv_qp_attr = unsafe { std::mem::zeroed() };
        a.qp_state = sys::ibv_qp_state::IBV_QPS_INIT;
        a.pkey_index = 0;
        a.port_num = port;
        a.qp_access_flags = sys::ibv_access_flags::IBV_ACCESS_LOCAL_WRITE.0;
        self.modify("ibv_modify_qp(RESET->INIT)", &mut a, INIT_MASK)
    }

    /// INIT→RTR with the given attributes (is_global 1, flow label 0).
    pub fn modify_to_rtr(&self, r: &RtrAttrs) -> Result<()> {
        // SAFETY: zeroed is valid.
        let mut a: sys::ibv_qp_attr = unsafe { std::mem::zeroed() };
        a.qp_state = sys::ibv_qp_state::IBV_QPS_RTR;
        a.path_mtu = r.path_mtu;
        a.dest_qp_num = r.dest_qpn;
        a.rq_psn = r.rq_psn;
        a.max_dest_rd_atomic = r.max_dest_rd_atomic;
        a.min_rnr_timer = r.min_rnr_timer;
        a.ah_attr.is_global = 1;
        a.ah_attr.grh.dgid.raw = r.dgid;
        a.ah_attr.grh.sgid_index = r.sgid_index as u8;
        a.ah_attr.grh.hop_limit = r.hop_limit;
        a.ah_attr.grh.traffic_class = r.traffic_class;
        a.ah_attr.grh.flow_label = 0;
        a.ah_attr.dlid = r.dlid;
        a.ah_attr.sl = r.sl;
        a.ah_attr.src_path_bits = 0;
        a.ah_attr.port_num = r.port_num;
        self.modify("ibv_modify_qp(INIT->RTR)", &mut a, RTR_MASK)
    }

    pub fn modify_to_rts(&self, r: &RtsAttrs) -> Result<()> {
        // SAFETY: zeroed is valid.
        let mut a: sys::ibv_qp_attr = unsafe { std::mem::zeroed() };
        a.qp_state = sys::ibv_qp_state::IBV_QPS_RTS;
        a.timeout = r.timeout;
        a.retry_cnt = r.retry_cnt;
        a.rnr_retry = r.rnr_retry;
        a.sq_psn = r.sq_psn;
        a.max_rd_atomic = r.max_rd_atomic;
        self.modify("ibv_modify_qp(RTR->RTS)", &mut a, RTS_MASK)
    }

    pub fn modify_to_error(&self) -> Result<()> {
        // SAFETY: zeroed is valid.
        let mut a: sys::ibv_qp_attr = unsafe { std::mem::zeroed() };
        a.qp_state = sys::ibv_qp_state::IBV_QPS_ERR;
        self.modify("ibv_modify_qp(->ERR)", &mut a, STATE)
    }

    fn query(&self, mask: u32) -> Result<sys::ibv_qp_attr> {
        // SAFETY: zeroed is valid for both structs.
        let mut a: sys::ibv_qp_attr = unsafe { std::mem::zeroed() };
        let mut init: sys::ibv_qp_init_attr = unsafe { std::mem::zeroed() };
        // SAFETY: qp live, out-pointers valid. Returns an errno value.
        check_ret("ibv_query_qp", unsafe { sys::ibv_query_qp(self.qp, &mut a, mask as i32, &mut init) })?;
        Ok(a)
    }

    /// The QP's current state as the device reports it.
    pub fn query_state(&self) -> Result<QpState> {
        Ok(QpState::from_raw(self.query(STATE)?.qp_state))
    }

    /// The destination QP number programmed at RTR (0 before).
    pub fn query_dest_qpn(&self) -> Result<u32> {
        Ok(self.query(DEST_QPN)?.dest_qp_num)
    }

    /// Posts `wrs` as one chain of signaled SENDs, built in the QP's send
    /// scratch under its send lock (nothing is allocated once the scratch
    /// holds the longest chain posted). A SEND of 1 to `max_inline()` bytes
    /// is inline: the provider copies its payload at the post. Returns the
    /// bytes posted.
    pub fn post_send(&self, wrs: impl IntoIterator<Item = SendWr>) -> std::result::Result<u64, PostError> {
        let mut g = self.send.lock();
        let s = &mut *g;
        s.sges.clear();
        s.reqs.clear();
        for w in wrs {
            s.sges.push(sys::ibv_sge { addr: w.addr, length: w.len, lkey: w.lkey });
            // SAFETY: zeroed is valid for ibv_send_wr (pointers NULL, unions zero).
            let mut r: sys::ibv_send_wr = unsafe { std::mem::zeroed() };
            r.wr_id = w.wr_id;
            r.opcode = sys::ibv_wr_opcode::IBV_WR_SEND;
            r.send_flags = sys::ibv_send_flags::IBV_SEND_SIGNALED.0;
            if sends_inline(w.len, self.max_inline) {
                r.send_flags |= sys::ibv_send_flags::IBV_SEND_INLINE.0;
            }
            if w.len > 0 || w.addr != 0 {
                r.num_sge = 1;
            }
            s.reqs.push(r);
        }
        let n = s.reqs.len();
        if n == 0 {
            return Ok(0);
        }
        // Linked only now: the vectors no longer move.
        for i in 0..n {
            if s.reqs[i].num_sge == 1 {
                s.reqs[i].sg_list = &mut s.sges[i];
            }
            if i + 1 < n {
                let next: *mut sys::ibv_send_wr = &mut s.reqs[i + 1];
                s.reqs[i].next = next;
            }
        }
        let bytes = |k: usize| s.sges[..k].iter().map(|g| g.length as u64).sum::<u64>();
        let mut bad: *mut sys::ibv_send_wr = std::ptr::null_mut();
        // SAFETY: qp live; the chain is valid for the call. Returns an errno value.
        let ret = unsafe { sys::ibv_post_send(self.qp, s.reqs.as_mut_ptr(), &mut bad) };
        match check_ret("ibv_post_send", ret) {
            Ok(()) => Ok(bytes(n)),
            Err(err) => {
                let posted = accepted(&s.reqs, bad);
                Err(PostError { posted, bytes: bytes(posted), err })
            }
        }
    }

    /// Posts receive buffers to this QP's own receive queue (no SRQ), built
    /// in the QP's receive scratch under its lock.
    pub fn post_recv(&self, wrs: impl IntoIterator<Item = RecvWr>) -> std::result::Result<(), PostError> {
        let mut s = self.recv.lock();
        // SAFETY: qp live; chain valid for the call.
        post_recv_chain("ibv_post_recv", &mut s, wrs, |wr, bad| unsafe { sys::ibv_post_recv(self.qp, wr, bad) })
    }

    /// Destroys the QP, reporting the verbs error (the wrapper is consumed
    /// either way; on failure the verbs object is leaked, not freed twice).
    pub fn destroy(self) -> Result<()> {
        let me = std::mem::ManuallyDrop::new(self);
        // SAFETY: qp live, destroyed once; the Arcs are released below.
        let r = check_ret("ibv_destroy_qp", unsafe { sys::ibv_destroy_qp(me.qp) });
        // SAFETY: move the Arcs out of the ManuallyDrop so they are dropped after the QP.
        unsafe {
            drop(std::ptr::read(&me.send));
            drop(std::ptr::read(&me.recv));
            drop(std::ptr::read(&me._srq));
            drop(std::ptr::read(&me._recv_cq));
            drop(std::ptr::read(&me._send_cq));
            drop(std::ptr::read(&me._pd));
        }
        r
    }
}

impl Drop for RawQp {
    fn drop(&mut self) {
        // SAFETY: qp live, destroyed once. Returns an errno value.
        if let Err(e) = check_ret("ibv_destroy_qp", unsafe { sys::ibv_destroy_qp(self.qp) }) {
            log::error!("{} (QP {} leaked)", e.msg, self.qpn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_only_for_payloads_up_to_the_granted_size() {
        // Empty SENDs (fin, beacon) never; 0 = off.
        assert!(!sends_inline(0, 128));
        assert!(!sends_inline(1, 0));
        assert!(!sends_inline(0, 0));
        for len in [1, 63, 64, 127, 128] {
            assert!(sends_inline(len, 128), "{len}");
        }
        for len in [129, 4096, u32::MAX] {
            assert!(!sends_inline(len, 128), "{len}");
        }
        // A provider that rounded 128 up to 236 allows 236.
        assert!(sends_inline(236, 236) && !sends_inline(237, 236));
    }

    #[test]
    fn masks_match_ceph_16_2_15() {
        assert_eq!(RTR_MASK, 0x129181);
        assert_eq!(RTS_MASK, 0x12e01);
        assert_eq!(INIT_MASK, 0x39);
    }
}
