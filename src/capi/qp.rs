//! `ibstack_qp`: an RC queue pair on a dispatcher's CQs — state machine,
//! the cm_meta handshake on a caller's TCP fd, sends, and retirement.

use crate::capi::dispatcher::ibstack_dispatcher;
use crate::capi::mem::ibstack_chunk;
use crate::dispatcher::Dispatcher;
use crate::error::Error;
use crate::ffi::handle::{self, Handle, Kind};
use crate::ffi_boundary;
use crate::handshake::{CmMeta, RECORD_LEN};
use crate::mem::Chunk;
use crate::qp::{HandshakeSlot, Progress, QueuePair, Role};
use crate::verbs::QpState;
use std::os::raw::{c_char, c_int};
use std::sync::Arc;

/// An RC queue pair created in INIT on its dispatcher's TX/RX CQs (and SRQ).
/// Ownership: created by ibstack_qp_new, released by ibstack_qp_free, which
/// retires it (ERR, beacon); the dispatcher destroys it once drained.
/// Thread safety: sends and queries may come from any thread; drive one
/// handshake from one thread at a time.
pub struct ibstack_qp {
    _opaque: [u8; 0],
}

/// What an ibstack_qp handle holds.
pub struct QpHandle {
    qp: Arc<QueuePair>,
    disp: Arc<Dispatcher>,
    hs: HandshakeSlot,
}

impl Handle for ibstack_qp {
    type Target = QpHandle;
    const KIND: Kind = Kind::Qp;
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

fn qp_ref(qp: *const ibstack_qp) -> crate::Result<Arc<QpHandle>> {
    handle::get(qp, "qp")
}

/// Creates an RC QP (SQ = tx_queue_len + 2 entries: data, close SEND,
/// beacon), moves it to INIT and, without an SRQ, posts rx_queue_len receive
/// buffers to it. A random 24-bit initial PSN is drawn. Caller owns `*out`.
/// Errors: ibv_create_qp's errno with the sizes asked for; -ENOBUFS when no
/// receive buffer is available (no SRQ).
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_new(d: *const ibstack_dispatcher, out: *mut *mut ibstack_qp) -> c_int {
    ffi_boundary!({
        let disp = handle::get(d, "dispatcher")?.disp.clone();
        // SAFETY: out is NULL or valid for one pointer write (header contract).
        unsafe { handle::give(out, || Ok(QpHandle { qp: disp.create_qp()?, disp, hs: HandshakeSlot::default() })) }
    })
}

/// Retires the QP (as ibstack_qp_to_dead; a failure is logged) and releases
/// the handle. The dispatcher destroys the verbs QP once its drain is
/// complete, during ibstack_dispatcher_poll. NULL is a no-op; an invalid
/// handle is ignored with a warning.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_free(qp: *mut ibstack_qp) {
    ffi_boundary!({
        if let Some(q) = handle::take(qp, "qp")? {
            if let Err(e) = q.disp.to_dead(&q.qp) {
                log::warn!("{}: {e}", crate::fn_name!());
            }
        }
        Ok(())
    })
}

/// RESET→INIT. ibstack_qp_new already did it; this returns -EINVAL (wrong
/// state) unless the QP is in RESET.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_to_init(qp: *const ibstack_qp) -> c_int {
    ffi_boundary!({
        qp_ref(qp)?.qp.to_init()?;
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
    ffi_boundary!({
        let q = qp_ref(qp)?;
        // SAFETY: peer is NULL or points to a record (header contract).
        let peer = unsafe { peer.as_ref() }.ok_or_else(|| Error::inval("peer is NULL"))?;
        q.qp.to_rtr(&CmMeta::from(*peer))?;
        Ok(0)
    })
}

/// RTR→RTS: timeout 0x12, retry_cnt 7, rnr_retry 7, sq_psn = initial PSN.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_to_rts(qp: *const ibstack_qp) -> c_int {
    ffi_boundary!({
        qp_ref(qp)?.qp.to_rts()?;
        Ok(0)
    })
}

/// Any state → ERR (outstanding work requests complete with WR_FLUSH_ERR).
/// The QP stays registered; use ibstack_qp_to_dead to retire it.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_to_error(qp: *const ibstack_qp) -> c_int {
    ffi_boundary!({
        qp_ref(qp)?.qp.to_error()?;
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
    ffi_boundary!({
        let q = qp_ref(qp)?;
        q.disp.to_dead(&q.qp)?;
        Ok(0)
    })
}

/// The state the device reports now (`enum ibv_qp_state`: 0 RESET, 1 INIT,
/// 2 RTR, 3 RTS, 6 ERR) or -errno (-ENOTCONN once destroyed).
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_state(qp: *const ibstack_qp) -> c_int {
    ffi_boundary!({ Ok(qp_ref(qp)?.qp.query_state()?.raw() as c_int) })
}

/// "RESET", "INIT", "RTR", "RTS", "SQD", "SQE", "ERR", or "UNKNOWN". Static string.
#[no_mangle]
pub extern "C" fn ibstack_qp_state_str(state: c_int) -> *const c_char {
    ffi_boundary!({ Ok(handle::static_cstr(QpState::from_raw(state.max(0) as u32).name())) })
}

/// Local QP number (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_num(qp: *const ibstack_qp) -> u32 {
    ffi_boundary!({ Ok(qp_ref(qp)?.qp.qp_num()) })
}

/// The initial (send) PSN advertised in this QP's record.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_initial_psn(qp: *const ibstack_qp) -> u32 {
    ffi_boundary!({ Ok(qp_ref(qp)?.qp.initial_psn()) })
}

/// The peer's QP number as programmed into the device (0 before RTR).
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_remote_num(qp: *const ibstack_qp, out: *mut u32) -> c_int {
    ffi_boundary!({
        let q = qp_ref(qp)?;
        handle::check_out(out, "out")?;
        let n = q.qp.remote_qp_num()?;
        // SAFETY: out is non-NULL and valid for one write (header contract).
        unsafe { handle::write_out(out, "out", n) }?;
        Ok(0)
    })
}

/// This QP's own record (peer_qpn 0).
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_local_meta(qp: *const ibstack_qp, out: *mut ibstack_cm_meta) -> c_int {
    ffi_boundary!({
        let meta = qp_ref(qp)?.qp.local_meta().into();
        // SAFETY: out is NULL or valid for one write (header contract).
        unsafe { handle::write_out(out, "out", meta) }?;
        Ok(0)
    })
}

/// The peer's record the QP was moved to RTR with; -ENOTCONN before that.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_peer_meta(qp: *const ibstack_qp, out: *mut ibstack_cm_meta) -> c_int {
    ffi_boundary!({
        let q = qp_ref(qp)?;
        handle::check_out(out, "out")?;
        let m = q.qp.peer_meta().ok_or_else(|| Error::new(libc::ENOTCONN, format!("QP {} has no peer yet", q.qp.qp_num())))?;
        // SAFETY: out is non-NULL and valid for one write (header contract).
        unsafe { handle::write_out(out, "out", m.into()) }?;
        Ok(0)
    })
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
    ffi_boundary!({
        let q = qp_ref(qp)?;
        Ok(match q.hs.step(&q.qp, fd, Role::from_raw(role)?)? {
            Progress::Done => 1,
            _ => 0,
        })
    })
}

/// The poll(2) events the pending handshake step waits for (POLLIN or
/// POLLOUT), 0 when none is pending.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_handshake_events(qp: *const ibstack_qp) -> c_int {
    ffi_boundary!({
        Ok(qp_ref(qp)?.hs.wants() as c_int)
    })
}

/// Runs the whole handshake on `fd` (blocking or not), waiting up to
/// `timeout_ms` (-1 = forever; -ETIMEDOUT names the stage). Errors as
/// ibstack_qp_handshake_step. Returns 0 when connected.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_handshake(qp: *const ibstack_qp, fd: c_int, role: u32, timeout_ms: c_int) -> c_int {
    ffi_boundary!({
        let q = qp_ref(qp)?;
        q.hs.run(&q.qp, fd, Role::from_raw(role)?, timeout_ms)?;
        Ok(0)
    })
}

/// Posts `n` TX chunks as signaled SENDs (one SGE of ibstack_chunk_offset
/// bytes each, wr_id = the chunk) in one ibv_post_send. `*posted` (may be
/// NULL) receives how many were accepted: those now belong to the dispatcher,
/// which returns them to the TX pool when they complete; the others are still
/// the caller's. Errors: -ENOTCONN before RTS, -EPIPE after to_dead, -EINVAL
/// for a chunk not from the TX pool, or one the caller does not hold (free,
/// still in flight from an earlier post, or twice in `chunks`; the message
/// names the entry and nothing is posted), else ibv_post_send's return value
/// (never errno).
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_post_send(
    qp: *const ibstack_qp,
    chunks: *const *mut ibstack_chunk,
    n: usize,
    posted: *mut usize,
) -> c_int {
    ffi_boundary!({
        let q = qp_ref(qp)?;
        // SAFETY: posted is NULL or valid for one write; chunks is NULL or holds n pointers (header contract).
        unsafe {
            handle::write_opt(posted, 0);
            let list = handle::items(chunks.cast::<*const Chunk>(), n, "chunks")?;
            if list.is_empty() {
                return Ok(0);
            }
            let r = q.qp.post_chunks(q.disp.mem().tx_in_use(list)?);
            handle::write_opt(posted, r.as_ref().map_or_else(|e| e.posted, |_| n));
            r.map_err(|pe| pe.err)?;
        }
        Ok(0)
    })
}

/// Posts the zero-length close SEND (Ceph's fin; the peer sees a receive of 0
/// bytes). Once per QP; later calls return 0. Errors as ibstack_qp_post_send.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_post_fin(qp: *const ibstack_qp) -> c_int {
    ffi_boundary!({
        qp_ref(qp)?.qp.post_fin()?;
        Ok(0)
    })
}

/// Why the QP faulted (completion error, async event), with the string
/// convention of ibstack_last_error_message; 0 and "" when it is healthy.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_fault_message(qp: *const ibstack_qp, buf: *mut c_char, len: usize) -> c_int {
    ffi_boundary!({
        let text = qp_ref(qp)?.qp.fault().map(|e| e.to_string()).unwrap_or_default();
        // SAFETY: buf is NULL or holds len bytes (header contract).
        unsafe { handle::text_out(&text, buf, len) }
    })
}

/// Signaled sends (data and close) posted and not yet completed.
#[no_mangle]
pub unsafe extern "C" fn ibstack_qp_tx_outstanding(qp: *const ibstack_qp) -> u32 {
    ffi_boundary!({ Ok(qp_ref(qp)?.qp.tx_outstanding()) })
}

/// Encodes `meta` as the 65-byte wire record (NUL included) into `buf`,
/// which must hold 65 bytes.
#[no_mangle]
pub unsafe extern "C" fn ibstack_cm_meta_encode(meta: *const ibstack_cm_meta, buf: *mut c_char, len: usize) -> c_int {
    ffi_boundary!({
        // SAFETY: meta is NULL or points to a record; buf is NULL or holds len bytes (header contract).
        let (m, out) = unsafe {
            (meta.as_ref().ok_or_else(|| Error::inval("meta is NULL"))?, handle::bytes_out(buf.cast(), len, "buf")?)
        };
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
    ffi_boundary!({
        // SAFETY: buf is NULL or holds len bytes; out is NULL or valid for one write (header contract).
        unsafe {
            let b = handle::bytes_arg(buf.cast(), len, "buf")?;
            handle::check_out(out, "out")?;
            handle::write_out(out, "out", CmMeta::decode(b)?.into())?;
        }
        Ok(0)
    })
}

// In this file rather than dispatcher.rs: it takes a qp handle, and qp.rs
// already depends on dispatcher.rs (never the other way).
/// Posts up to `n` receive buffers from the RX pool: to the SRQ, or (no SRQ)
/// to `qp`'s receive queue (`qp` is ignored with an SRQ and may be NULL).
/// Returns how many were posted (fewer, possibly 0, when the RX pool is at its
/// limit) or -errno: the provider's return value when the post failed (the
/// refused buffers went back to the pool); -EINVAL when `n` exceeds
/// ms_async_rdma_receive_queue_len (what a receive queue holds).
#[no_mangle]
pub unsafe extern "C" fn ibstack_dispatcher_post_rx(d: *const ibstack_dispatcher, n: u32, qp: *const ibstack_qp) -> c_int {
    ffi_boundary!({
        let d = handle::get(d, "dispatcher")?;
        let qp = handle::get_opt(qp, "qp")?;
        Ok(d.disp.post_rx(n, qp.as_deref().map(|q| &*q.qp))?.min(c_int::MAX as usize) as c_int)
    })
}
