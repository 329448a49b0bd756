//! `ibstack_qp`: an RC queue pair on a dispatcher's CQs — state machine,
//! the cm_meta handshake on a caller's TCP fd, sends, and retirement.

use crate::capi::cq::static_cstr;
use crate::capi::dispatcher::ibstack_dispatcher;
use crate::capi::mem::{chunk_id, ibstack_chunk};
use crate::dispatcher::Dispatcher;
use crate::error::Error;
use crate::ffi::handle;
use crate::ffi_boundary;
use crate::handshake::{CmMeta, RECORD_LEN};
use crate::qp::{Handshake, Progress, QueuePair, Role};
use crate::verbs::QpState;
use parking_lot::Mutex;
use std::os::raw::{c_char, c_int};
use std::sync::Arc;

/// An RC queue pair created in INIT on its dispatcher's TX/RX CQs (and SRQ).
/// Ownership: created by ibstack_qp_new, released by ibstack_qp_free, which
/// retires it (ERR, beacon); the dispatcher destroys it once drained.
/// Thread safety: sends and queries may come from any thread; drive one
/// handshake from one thread at a time.
pub struct ibstack_qp {
    pub(crate) qp: Arc<QueuePair>,
    disp: Arc<Dispatcher>,
    hs: Mutex<Option<Handshake>>,
}

/// Which side of the cm_meta handshake this QP plays.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ibstack_role {
    /// Opened the TCP connection: sends the first record.
    Connector = 0,
    /// Accepted the TCP connection: answers the first record.
    Acceptor = 1,
}

/// The cm_meta record one side sends (Ceph's ib_cm_meta_t): 65 bytes on the
/// wire, "%04x:%08x:%08x:%08x:" + 32 hex digits of GID + NUL.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ibstack_cm_meta {
    /// Port LID (0 on RoCE).
    pub lid: u16,
    pub reserved: u16,
    /// Sender's QP number.
    pub local_qpn: u32,
    /// Sender's initial PSN (24 bits).
    pub psn: u32,
    /// The QP number the sender believes its peer has; 0 in the first record.
    pub peer_qpn: u32,
    /// Sender's GID, network order.
    pub gid: [u8; 16],
}

impl From<CmMeta> for ibstack_cm_meta {
    fn from(m: CmMeta) -> Self {
        ibstack_cm_meta { lid: m.lid, reserved: 0, local_qpn: m.local_qpn, psn: m.psn, peer_qpn: m.peer_qpn, gid: m.gid }
    }
}
impl From<ibstack_cm_meta> for CmMeta {
    fn from(m: ibstack_cm_meta) -> Self {
        CmMeta { lid: m.lid, local_qpn: m.local_qpn, psn: m.psn, peer_qpn: m.peer_qpn, gid: m.gid }
    }
}

unsafe fn qp_ref<'a>(qp: *const ibstack_qp) -> crate::Result<&'a ibstack_qp> {
    // SAFETY: forwarded from the caller.
    unsafe { handle::borrow(qp, "qp") }
}

/// Creates an RC QP (SQ = tx_queue_len + 2 entries: data, close SEND,
/// beacon), moves it to INIT and, without an SRQ, posts rx_queue_len receive
/// buffers to it. A random 24-bit initial PSN is drawn. Caller owns `*out`.
/// Errors: ibv_create_qp's errno with the sizes asked for; -ENOBUFS when no
/// receive buffer is available (no SRQ).
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_new(d: *const ibstack_dispatcher, out: *mut *mut ibstack_qp) -> c_int {
    ffi_boundary!("ibstack_qp_new", {
        // SAFETY: NULL or live.
        let d = unsafe { handle::borrow(d, "dispatcher") }?.inner.clone();
        handle::check_out(out, "out")?;
        let qp = d.create_qp()?;
        // SAFETY: out checked.
        unsafe { handle::give(out, ibstack_qp { qp, disp: d, hs: Mutex::new(None) }) };
        Ok(0)
    })
}

/// Retires the QP (as ibstack_qp_to_dead; a failure is logged) and releases
/// the handle. The dispatcher destroys the verbs QP once its drain is
/// complete, during ibstack_dispatcher_poll. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_free(qp: *mut ibstack_qp) {
    ffi_boundary!("ibstack_qp_free", {
        // SAFETY: NULL or from ibstack_qp_new.
        if let Some(q) = unsafe { qp.as_ref() } {
            if let Err(e) = q.disp.to_dead(&q.qp) {
                log::warn!("ibstack_qp_free: {e}");
            }
        }
        unsafe { handle::free(qp) };
        Ok(())
    })
}

/// RESET→INIT. ibstack_qp_new already did it; this returns -EINVAL (wrong
/// state) unless the QP is in RESET.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_to_init(qp: *const ibstack_qp) -> c_int {
    ffi_boundary!("ibstack_qp_to_init", {
        unsafe { qp_ref(qp) }?.qp.to_init()?;
        Ok(0)
    })
}

/// INIT→RTR towards `peer` with Ceph's attributes (path MTU ibstack_path_mtu,
/// min_rnr_timer 0x12, hop_limit 6, traffic_class ms_async_rdma_dscp, sl
/// ms_async_rdma_sl, is_global 1). Everything is checked first: -EINVAL names
/// the attribute and both values (state, path MTU vs the port's active MTU,
/// GID index and its entry, GID type vs link layer, sl, the peer record);
/// -ENETDOWN when the port is not ACTIVE. If the provider still refuses, its
/// return value with the attributes tried and the likely causes.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_to_rtr(qp: *const ibstack_qp, peer: *const ibstack_cm_meta) -> c_int {
    ffi_boundary!("ibstack_qp_to_rtr", {
        let q = unsafe { qp_ref(qp) }?;
        let peer = unsafe { handle::borrow(peer, "peer") }?;
        q.qp.to_rtr(&CmMeta::from(*peer))?;
        Ok(0)
    })
}

/// RTR→RTS: timeout 0x12, retry_cnt 7, rnr_retry 7, sq_psn = initial PSN.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_to_rts(qp: *const ibstack_qp) -> c_int {
    ffi_boundary!("ibstack_qp_to_rts", {
        unsafe { qp_ref(qp) }?.qp.to_rts()?;
        Ok(0)
    })
}

/// Any state → ERR (outstanding work requests complete with WR_FLUSH_ERR).
/// The QP stays registered; use ibstack_qp_to_dead to retire it.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_to_error(qp: *const ibstack_qp) -> c_int {
    ffi_boundary!("ibstack_qp_to_error", {
        unsafe { qp_ref(qp) }?.qp.to_error()?;
        Ok(0)
    })
}

/// Retires the QP (Ceph's to_dead): ERR, then the beacon (wr_id 0xDEADBEEF,
/// signaled, no SGE) in the SQ slot kept for it; a QP that never reached RTS
/// needs no beacon. The dispatcher destroys the QP once the beacon completed
/// (and, without an SRQ, every receive buffer came back). Idempotent. Errors
/// carry the verbs return value (never a stale errno); the QP is retired anyway.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_to_dead(qp: *const ibstack_qp) -> c_int {
    ffi_boundary!("ibstack_qp_to_dead", {
        let q = unsafe { qp_ref(qp) }?;
        q.disp.to_dead(&q.qp)?;
        Ok(0)
    })
}

/// The state the device reports now (`enum ibv_qp_state`: 0 RESET, 1 INIT,
/// 2 RTR, 3 RTS, 6 ERR) or -errno (-ENOTCONN once destroyed).
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_state(qp: *const ibstack_qp) -> c_int {
    ffi_boundary!("ibstack_qp_state", { Ok(unsafe { qp_ref(qp) }?.qp.query_state()?.raw() as c_int) })
}

/// "RESET", "INIT", "RTR", "RTS", "SQD", "SQE", "ERR", or "UNKNOWN". Static string.
#[no_mangle]
pub extern "C" fn ibstack_qp_state_str(state: c_int) -> *const c_char {
    ffi_boundary!("ibstack_qp_state_str", { Ok(static_cstr(QpState::from_raw(state.max(0) as u32).name())) })
}

/// Local QP number (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_num(qp: *const ibstack_qp) -> u32 {
    ffi_boundary!("ibstack_qp_num", { Ok(unsafe { qp_ref(qp) }?.qp.qp_num()) })
}

/// The initial (send) PSN advertised in this QP's record.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_initial_psn(qp: *const ibstack_qp) -> u32 {
    ffi_boundary!("ibstack_qp_initial_psn", { Ok(unsafe { qp_ref(qp) }?.qp.initial_psn()) })
}

/// The peer's QP number as programmed into the device (0 before RTR).
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_remote_num(qp: *const ibstack_qp, out: *mut u32) -> c_int {
    ffi_boundary!("ibstack_qp_remote_num", {
        let q = unsafe { qp_ref(qp) }?;
        handle::check_out(out, "out")?;
        // SAFETY: out checked.
        unsafe { *out = q.qp.remote_qp_num()? };
        Ok(0)
    })
}

/// This QP's own record (peer_qpn 0).
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_local_meta(qp: *const ibstack_qp, out: *mut ibstack_cm_meta) -> c_int {
    ffi_boundary!("ibstack_qp_local_meta", {
        let q = unsafe { qp_ref(qp) }?;
        handle::check_out(out, "out")?;
        // SAFETY: out checked.
        unsafe { *out = q.qp.local_meta().into() };
        Ok(0)
    })
}

/// The peer's record the QP was moved to RTR with; -ENOTCONN before that.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_peer_meta(qp: *const ibstack_qp, out: *mut ibstack_cm_meta) -> c_int {
    ffi_boundary!("ibstack_qp_peer_meta", {
        let q = unsafe { qp_ref(qp) }?;
        handle::check_out(out, "out")?;
        let m = q.qp.peer_meta().ok_or_else(|| Error::new(libc::ENOTCONN, format!("QP {} has no peer yet", q.qp.qp_num())))?;
        // SAFETY: out checked.
        unsafe { *out = m.into() };
        Ok(0)
    })
}

fn role_of(role: u32) -> crate::Result<Role> {
    match role {
        0 => Ok(Role::Connector),
        1 => Ok(Role::Acceptor),
        r => Err(Error::inval(format!("role {r} is neither IBSTACK_ROLE_CONNECTOR (0) nor IBSTACK_ROLE_ACCEPTOR (1)"))),
    }
}

/// Advances the cm_meta handshake on the connected TCP socket `fd` without
/// blocking (make `fd` non-blocking): 1 when the QP is connected (RTS, and as
/// acceptor the connector's acknowledgement arrived), 0 when it must wait —
/// ibstack_qp_handshake_events says for what — or -errno: -ECONNRESET when
/// the peer closed, -EPROTO for a foreign protocol (a msgr2/msgr1 banner:
/// ms_type mismatch) or a malformed record (bytes shown escaped), -EINVAL
/// from RTR validation. The first call fixes the role; errors are final.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_handshake_step(qp: *const ibstack_qp, fd: c_int, role: u32) -> c_int {
    ffi_boundary!("ibstack_qp_handshake_step", {
        let q = unsafe { qp_ref(qp) }?;
        let role = role_of(role)?;
        let mut hs = q.hs.lock();
        let h = hs.get_or_insert_with(|| Handshake::new(role, &q.qp));
        if h.role() != role {
            return Err(Error::inval(format!("the handshake of QP {} was started as {:?}", q.qp.qp_num(), h.role())));
        }
        Ok(match h.step(&q.qp, fd)? {
            Progress::Done => 1,
            _ => 0,
        })
    })
}

/// The poll(2) events the pending handshake step waits for (POLLIN or
/// POLLOUT), 0 when none is pending.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_handshake_events(qp: *const ibstack_qp) -> c_int {
    ffi_boundary!("ibstack_qp_handshake_events", {
        Ok(unsafe { qp_ref(qp) }?.hs.lock().as_ref().map_or(0, |h| h.wants() as c_int))
    })
}

/// Runs the whole handshake on `fd` (blocking or not), waiting up to
/// `timeout_ms` (-1 = forever; -ETIMEDOUT names the stage). Errors as
/// ibstack_qp_handshake_step. Returns 0 when connected.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_handshake(qp: *const ibstack_qp, fd: c_int, role: u32, timeout_ms: c_int) -> c_int {
    ffi_boundary!("ibstack_qp_handshake", {
        let q = unsafe { qp_ref(qp) }?;
        let role = role_of(role)?;
        let mut hs = q.hs.lock();
        let h = hs.get_or_insert_with(|| Handshake::new(role, &q.qp));
        h.run(&q.qp, fd, timeout_ms)?;
        Ok(0)
    })
}

/// Posts `n` TX chunks as signaled SENDs (one SGE of ibstack_chunk_offset
/// bytes each, wr_id = the chunk) in one ibv_post_send. `*posted` (may be
/// NULL) receives how many were accepted: those now belong to the dispatcher,
/// which returns them to the TX pool when they complete; the others are still
/// the caller's. Errors: -ENOTCONN before RTS, -EPIPE after to_dead, -EINVAL
/// for a chunk not from the TX pool, else ibv_post_send's return value (never
/// errno).
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_post_send(
    qp: *const ibstack_qp,
    chunks: *const *mut ibstack_chunk,
    n: usize,
    posted: *mut usize,
) -> c_int {
    ffi_boundary!("ibstack_qp_post_send", {
        let q = unsafe { qp_ref(qp) }?;
        if !posted.is_null() {
            // SAFETY: non-NULL out-pointer from the caller.
            unsafe { *posted = 0 };
        }
        if n == 0 {
            return Ok(0);
        }
        if chunks.is_null() {
            return Err(Error::inval(format!("chunks is NULL but n is {n}")));
        }
        // SAFETY: the caller provides n entries.
        let list = unsafe { std::slice::from_raw_parts(chunks, n) };
        let tx = &q.disp.mem().tx;
        for (i, &p) in list.iter().enumerate() {
            if !tx.from_wr_id(chunk_id(p)).is_some_and(|c| c.is_in_use()) {
                return Err(Error::inval(format!("chunks[{i}] ({p:p}) is not a TX chunk handed out by the pool")));
            }
        }
        let r = q.qp.post_chunks(list.iter().map(|&p| tx.from_wr_id(chunk_id(p)).expect("checked above")));
        let done = r.as_ref().map_or_else(|e| e.posted, |_| n);
        if !posted.is_null() {
            // SAFETY: as above.
            unsafe { *posted = done };
        }
        r.map_err(|pe| pe.err)?;
        Ok(0)
    })
}

/// Posts the zero-length close SEND (Ceph's fin; the peer sees a receive of 0
/// bytes). Once per QP; later calls return 0. Errors as ibstack_qp_post_send.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_post_fin(qp: *const ibstack_qp) -> c_int {
    ffi_boundary!("ibstack_qp_post_fin", {
        unsafe { qp_ref(qp) }?.qp.post_fin()?;
        Ok(0)
    })
}

/// Why the QP faulted (completion error, async event), with the string
/// convention of ibstack_last_error_message; 0 and "" when it is healthy.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_fault_message(qp: *const ibstack_qp, buf: *mut c_char, len: usize) -> c_int {
    ffi_boundary!("ibstack_qp_fault_message", {
        let q = unsafe { qp_ref(qp) }?;
        let text = q.qp.fault().map(|e| e.to_string()).unwrap_or_default();
        unsafe { handle::text_out(&text, buf, len) }
    })
}

/// Signaled sends (data and close) posted and not yet completed.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_tx_outstanding(qp: *const ibstack_qp) -> u32 {
    ffi_boundary!("ibstack_qp_tx_outstanding", { Ok(unsafe { qp_ref(qp) }?.qp.tx_outstanding()) })
}

/// Encodes `meta` as the 65-byte wire record (NUL included) into `buf`,
/// which must hold 65 bytes.
#[no_mangle]
pub unsafe extern "C" fn ibstack_cm_meta_encode(meta: *const ibstack_cm_meta, buf: *mut c_char, len: usize) -> c_int {
    ffi_boundary!("ibstack_cm_meta_encode", {
        let m = unsafe { handle::borrow(meta, "meta") }?;
        let out = unsafe { handle::bytes_out(buf.cast(), len, "buf") }?;
        if out.len() < RECORD_LEN {
            return Err(Error::inval(format!("buf holds {len} bytes; a record needs {RECORD_LEN}")));
        }
        out[..RECORD_LEN].copy_from_slice(&CmMeta::from(*m).encode());
        Ok(RECORD_LEN as c_int)
    })
}

/// Decodes and strictly checks one wire record of exactly 65 bytes. -EPROTO
/// for anything else, naming a msgr2/msgr1 banner (transport mismatch) or
/// showing the bytes escaped.
#[no_mangle]
pub unsafe extern "C" fn ibstack_cm_meta_decode(buf: *const c_char, len: usize, out: *mut ibstack_cm_meta) -> c_int {
    ffi_boundary!("ibstack_cm_meta_decode", {
        let b = unsafe { handle::bytes_arg(buf.cast(), len, "buf") }?;
        handle::check_out(out, "out")?;
        let m = CmMeta::decode(b)?;
        // SAFETY: out checked.
        unsafe { *out = m.into() };
        Ok(0)
    })
}
