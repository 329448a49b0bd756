//! `QueuePair`: one RC queue pair and its state machine (RESET → INIT → RTR →
//! RTS, → ERR), validated before every transition, with the bookkeeping the
//! drain needs (highest state reached, beacon, receive buffers posted to its
//! own RQ, sends outstanding). The dispatcher owns the registry and the drain.
//!
//! * `env.rs` — what a QP needs from its dispatcher (device, pools, CQs, SRQ,
//!   counters, history);
//! * `validate.rs` — pure pre-flight checks of every transition;
//! * `handshake.rs` — the three-record cm_meta exchange that moves a QP to RTS.

pub mod env;
pub mod handshake;
pub mod validate;

pub use env::{Env, SRQ_OWNER};
pub use handshake::{Handshake, HandshakeSlot, Progress, Role};

use crate::error::{Error, Result};
use crate::handshake::CmMeta;
use crate::history::QpEvent;
use crate::mem::ChunkRef;
use crate::verbs::device::mtu_enum;
use crate::verbs::{sends_inline, PostError, QpCaps, QpState, RawQp, RecvWr, RtrAttrs, RtsAttrs, SendWr};
use validate::{check_rtr, check_transition, explain_modify_failure, LocalFacts};
use parking_lot::{Mutex, RwLock};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering::*};
use std::sync::Arc;
use std::time::Instant;

/// wr_id of the beacon SEND posted by `to_dead` (Ceph's BEACON_WRID).
pub const BEACON_WRID: u64 = 0xDEAD_BEEF;
/// wr_id tag of the zero-length close SEND; the low 24 bits carry the QP number.
pub const FIN_WRID_TAG: u64 = 0xF1F1_0000_0000_0000;

// RTR/RTS constants of Ceph 16.2.15 (reference §1.11).
const MIN_RNR_TIMER: u8 = 0x12;
const HOP_LIMIT: u8 = 6;
const TIMEOUT: u8 = 0x12;
const RNR_RETRY: u8 = 7;

/// Beacon progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Beacon {
    None = 0,
    Posted = 1,
    Seen = 2,
    /// The post failed; the drain waits for outstanding sends instead.
    Failed = 3,
    /// Never reached RTS: nothing can be outstanding, no beacon needed.
    Skipped = 4,
}

pub struct QueuePair {
    raw: RwLock<Option<RawQp>>,
    qpn: u32,
    local: CmMeta,
    /// The index of the GID `local` advertises (the sgid_index at RTR).
    gid_idx: u32,
    /// `RawQp::max_inline` of `raw`, kept here for the history.
    max_inline: u32,
    peer: Mutex<Option<CmMeta>>,
    state: AtomicU8,
    highest: AtomicU8,
    dead: AtomicBool,
    beacon: AtomicU8,
    fault: Mutex<Option<Error>>,
    /// Receive chunks posted to this QP's own RQ (no SRQ). Which ones they
    /// are is the chunks' owner tag (`Chunk::qp` = this QP's number).
    posted_rx: AtomicU32,
    /// Receive buffers owed to this QP's RQ (a replenish that could not be posted).
    pub(crate) rx_backlog: AtomicU32,
    /// Signaled sends (data and fin) whose completion has not been polled.
    tx_outstanding: AtomicU32,
    fin_posted: AtomicBool,
    last_wqe: AtomicBool,
    /// First send / first receive already in the history (hot-path shortcut).
    first_send_seen: AtomicBool,
    pub(crate) first_recv_seen: AtomicBool,
    dead_since: Mutex<Option<Instant>>,
    /// The per-connection cap on received buffers held unread (0 = none:
    /// the gate is never locked), and the count against it.
    rx_cap: AtomicU32,
    rx_gate: Mutex<RxGate>,
    pub(crate) env: Arc<Env>,
}

/// Received buffers the layer above holds unread, against the QP's cap
/// (ibstack_max_rx_per_conn). `withheld` counts refills of this QP's own RQ
/// skipped because the cap was reached.
#[derive(Default)]
struct RxGate {
    held: u32,
    withheld: u32,
    warned: bool,
}

/// What a received buffer did to the cap ([`QueuePair::rx_delivered`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RxCap {
    /// Within the cap (or none): refill as usual.
    Within,
    /// Past the cap: do not refill this QP's RQ (the refill is owed until a
    /// buffer is released). `first` on the first time for this QP.
    Withhold { first: bool },
}

fn random_psn() -> u32 {
    let mut v = 0u32;
    // SAFETY: writes at most 4 bytes into v.
    let n = unsafe { libc::getrandom((&mut v as *mut u32).cast(), 4, libc::GRND_NONBLOCK) };
    if n != 4 {
        // No entropy yet (early boot): mix the clock and the pid instead.
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        v = (t.subsec_nanos() ^ (t.as_secs() as u32).rotate_left(13)) ^ std::process::id().wrapping_mul(0x9E37_79B9);
    }
    v & 0xFF_FFFF
}

impl QueuePair {
    /// `ibv_create_qp` (SQ = tx_queue_len + 2: data, fin, beacon), then
    /// RESET→INIT; the QP advertises and uses `gid`.
    pub(crate) fn create(env: &Arc<Env>, gid: &crate::verbs::GidEntry) -> Result<Arc<QueuePair>> {
        let ib = &env.ib;
        let caps = QpCaps { max_send_wr: ib.tx_queue_len() + 2, max_recv_wr: ib.rx_queue_len(), max_inline: ib.config().max_inline };
        let raw = RawQp::create_rc(ib.pd(), &env.tx_cq, &env.rx_cq, env.srq.as_ref(), caps)?;
        let qpn = raw.qp_num();
        let max_inline = raw.max_inline();
        let local = CmMeta { lid: ib.port_attr().lid, local_qpn: qpn, psn: random_psn(), peer_qpn: 0, gid: gid.gid };
        let refused = match raw.inline_refused() {
            0 => String::new(),
            n => format!(" (the device refused {n})"),
        };
        env.history.record(qpn, QpEvent::Created, &format!("local {}, max_inline {max_inline}{refused}", local.describe()));
        let qp = Arc::new(QueuePair {
            raw: RwLock::new(Some(raw)),
            qpn,
            local,
            gid_idx: gid.index,
            max_inline,
            peer: Mutex::new(None),
            state: AtomicU8::new(QpState::Reset as u8),
            highest: AtomicU8::new(QpState::Reset as u8),
            dead: AtomicBool::new(false),
            beacon: AtomicU8::new(Beacon::None as u8),
            fault: Mutex::new(None),
            posted_rx: AtomicU32::new(0),
            rx_backlog: AtomicU32::new(0),
            tx_outstanding: AtomicU32::new(0),
            fin_posted: AtomicBool::new(false),
            last_wqe: AtomicBool::new(false),
            first_send_seen: AtomicBool::new(false),
            first_recv_seen: AtomicBool::new(false),
            dead_since: Mutex::new(None),
            rx_cap: AtomicU32::new(0),
            rx_gate: Mutex::new(RxGate::default()),
            env: env.clone(),
        });
        qp.to_init()?;
        Ok(qp)
    }

    pub fn qp_num(&self) -> u32 {
        self.qpn
    }
    pub fn initial_psn(&self) -> u32 {
        self.local.psn
    }
    /// This side's record (peer_qpn 0; the handshake fills it per message).
    pub fn local_meta(&self) -> CmMeta {
        self.local
    }
    /// The index of the GID this QP advertises and sends from.
    pub fn gid_index(&self) -> u32 {
        self.gid_idx
    }
    /// The largest SEND this QP posts inline (0 = none; see `RawQp::max_inline`).
    pub fn max_inline(&self) -> u32 {
        self.max_inline
    }
    pub fn peer_meta(&self) -> Option<CmMeta> {
        *self.peer.lock()
    }
    /// The state as last set by this library (no verbs call).
    pub fn cached_state(&self) -> QpState {
        QpState::from_raw(self.state.load(Acquire) as u32)
    }
    /// The highest state this QP reached (RTS means the peer may have traffic in flight).
    pub fn highest_state(&self) -> QpState {
        QpState::from_raw(self.highest.load(Acquire) as u32)
    }
    pub fn is_dead(&self) -> bool {
        self.dead.load(Acquire)
    }
    pub fn beacon(&self) -> Beacon {
        match self.beacon.load(Acquire) {
            1 => Beacon::Posted,
            2 => Beacon::Seen,
            3 => Beacon::Failed,
            4 => Beacon::Skipped,
            _ => Beacon::None,
        }
    }
    pub(crate) fn set_beacon(&self, b: Beacon) {
        self.beacon.store(b as u8, Release);
    }
    pub fn fault(&self) -> Option<Error> {
        self.fault.lock().clone()
    }
    pub fn tx_outstanding(&self) -> u32 {
        self.tx_outstanding.load(Acquire)
    }
    pub fn rx_posted(&self) -> usize {
        self.posted_rx.load(Acquire) as usize
    }
    pub(crate) fn last_wqe_reached(&self) -> bool {
        self.last_wqe.load(Acquire)
    }
    pub(crate) fn set_last_wqe(&self) {
        self.last_wqe.store(true, Release);
    }

    /// The state the device reports now (`ibv_query_qp`).
    pub fn query_state(&self) -> Result<QpState> {
        self.with_raw(|r| r.query_state())
    }
    /// The peer QP number programmed at RTR (0 before RTR).
    pub fn remote_qp_num(&self) -> Result<u32> {
        self.with_raw(|r| r.query_dest_qpn())
    }

    fn with_raw<T>(&self, f: impl FnOnce(&RawQp) -> Result<T>) -> Result<T> {
        match self.raw.read().as_ref() {
            Some(r) => f(r),
            None => Err(Error::new(libc::ENOTCONN, format!("QP {} was already destroyed", self.qpn))),
        }
    }

    fn set_state(&self, s: QpState) {
        self.state.store(s as u8, Release);
        if s != QpState::Err {
            self.highest.fetch_max(s as u8, AcqRel);
        }
    }

    /// Records a failure in the history and the fault slot; returns it.
    pub(crate) fn fail(&self, e: Error) -> Error {
        self.env.history.record(self.qpn, QpEvent::Error, &format!("{e}"));
        e
    }

    /// Marks the QP faulted (first cause wins); it stays registered until `to_dead`.
    pub(crate) fn set_fault(&self, e: Error) {
        let mut f = self.fault.lock();
        if f.is_none() {
            self.env.counters.qp_faults.fetch_add(1, Relaxed);
            self.env.history.record(self.qpn, QpEvent::Error, &format!("fault: {e}"));
            log::warn!("QP {} faulted: {e}", self.qpn);
            *f = Some(e);
        }
    }

    fn transition(&self, to: QpState) -> Result<()> {
        check_transition(self.cached_state(), to).map_err(|e| self.fail(e.context(format_args!("QP {}", self.qpn))))
    }

    pub fn to_init(&self) -> Result<()> {
        self.transition(QpState::Init)?;
        let port = self.env.ib.port_num();
        self.with_raw(|r| r.modify_to_init(port))
            .map_err(|e| self.fail(Error::new(e.errno, explain_modify_failure("RESET->INIT", e.errno, None))))?;
        self.set_state(QpState::Init);
        self.env.history.record(self.qpn, QpEvent::Init, "");
        Ok(())
    }

    /// The attributes INIT→RTR would use for `peer`.
    pub fn rtr_attrs(&self, peer: &CmMeta) -> Result<RtrAttrs> {
        let cfg = self.env.ib.config();
        let path_mtu = mtu_enum(cfg.path_mtu).ok_or_else(|| {
            Error::inval(format!("ibstack_path_mtu {} is not one of 256, 512, 1024, 2048, 4096", cfg.path_mtu))
        })?;
        Ok(RtrAttrs {
            path_mtu,
            dest_qpn: peer.local_qpn,
            rq_psn: peer.psn,
            dgid: peer.gid,
            dlid: peer.lid,
            sgid_index: self.gid_idx,
            sl: cfg.sl,
            traffic_class: cfg.dscp,
            hop_limit: HOP_LIMIT,
            max_dest_rd_atomic: 1,
            min_rnr_timer: MIN_RNR_TIMER,
            port_num: self.env.ib.port_num(),
        })
    }

    /// Reads what RTR depends on, fresh (state, port, GID slot).
    fn local_facts(&self) -> Result<LocalFacts> {
        let ib = &self.env.ib;
        let gid_idx = self.gid_idx;
        Ok(LocalFacts {
            state: self.query_state()?,
            port_num: ib.port_num(),
            port: ib.query_port_now()?,
            gid_idx,
            gid_now: ib.context().query_gid(ib.port_num(), gid_idx).unwrap_or(None),
            advertised_gid: self.local.gid,
            max_qp_rd_atom: ib.device_attr().max_qp_rd_atom,
        })
    }

    /// INIT→RTR towards `peer`, after checking every attribute against the
    /// port, the GID table and the record.
    pub fn to_rtr(&self, peer: &CmMeta) -> Result<()> {
        let run = || -> Result<()> {
            self.transition(QpState::Rtr)?;
            let attrs = self.rtr_attrs(peer)?;
            check_rtr(&self.local_facts()?, peer, &attrs)?;
            self.with_raw(|r| r.modify_to_rtr(&attrs))
                .map_err(|e| Error::new(e.errno, explain_modify_failure("INIT->RTR", e.errno, Some(&attrs))))
        };
        run().map_err(|e| self.fail(e.context(format_args!("QP {}: INIT->RTR", self.qpn))))?;
        *self.peer.lock() = Some(*peer);
        self.set_state(QpState::Rtr);
        self.env.history.record(self.qpn, QpEvent::Rtr, &format!("peer {}", peer.describe()));
        Ok(())
    }

    pub fn to_rts(&self) -> Result<()> {
        self.transition(QpState::Rts)?;
        let a = RtsAttrs { sq_psn: self.local.psn, timeout: TIMEOUT, retry_cnt: self.env.ib.config().retry_cnt, rnr_retry: RNR_RETRY, max_rd_atomic: 1 };
        self.with_raw(|r| r.modify_to_rts(&a))
            .map_err(|e| self.fail(Error::new(e.errno, explain_modify_failure("RTR->RTS", e.errno, None)).context(format_args!("QP {}", self.qpn))))?;
        self.set_state(QpState::Rts);
        self.env.history.record(self.qpn, QpEvent::Rts, "");
        Ok(())
    }

    pub fn to_error(&self) -> Result<()> {
        self.with_raw(|r| r.modify_to_error()).map_err(|e| self.fail(e.context(format_args!("QP {}", self.qpn))))?;
        self.set_state(QpState::Err);
        Ok(())
    }

    fn check_can_send(&self) -> Result<()> {
        if self.is_dead() {
            return Err(Error::new(libc::EPIPE, format!("QP {} is being torn down (to_dead was called)", self.qpn)));
        }
        let s = self.cached_state();
        if s != QpState::Rts {
            return Err(Error::new(
                libc::ENOTCONN,
                format!("QP {} is in state {}: sends need RTS (finish the handshake first)", self.qpn, s.name()),
            ));
        }
        Ok(())
    }

    fn post<I>(&self, wrs: I, what: &str) -> std::result::Result<u64, PostError>
    where
        I: IntoIterator<Item = SendWr>,
        I::IntoIter: ExactSizeIterator,
    {
        let wrs = wrs.into_iter();
        let n = wrs.len();
        self.tx_outstanding.fetch_add(n as u32, AcqRel);
        let r = match self.raw.read().as_ref() {
            Some(r) => r.post_send(wrs),
            None => Err(PostError::none(Error::new(libc::ENOTCONN, "QP already destroyed"))),
        };
        if let Err(pe) = &r {
            self.tx_outstanding.fetch_sub((n - pe.posted) as u32, AcqRel);
            self.env.counters.tx_failed_post.fetch_add(1, Relaxed);
            log::warn!("QP {}: posting {what} failed after {} of {}: {}", self.qpn, pe.posted, n, pe.err);
        }
        r
    }

    /// Posts each chunk as one signaled SEND of `chunk.offset()` bytes,
    /// `wr_id` = [`ChunkRef::wr_id`], all in one chain (one `ibv_post_send`).
    /// On error the first `posted` chunks are in flight (their completions
    /// return them); the rest still belong to the caller. Every chunk must be
    /// held (taken from the pool, not posted yet): one that is free or in
    /// flight, or the same chunk twice, is -EINVAL and nothing is posted.
    /// Allocates nothing.
    pub fn post_chunks<I>(&self, chunks: I) -> std::result::Result<(), PostError>
    where
        I: IntoIterator<Item = ChunkRef>,
        I::IntoIter: ExactSizeIterator + Clone,
    {
        if let Err(err) = self.check_can_send() {
            return Err(PostError::none(err));
        }
        let chunks = chunks.into_iter();
        let n = chunks.len();
        let tx = &self.env.mem.tx;
        if let Err(e) = tx.mark_in_flight(chunks.clone()) {
            return Err(PostError::none(e.context(format_args!("QP {}: posting {n} send(s)", self.qpn))));
        }
        // The first SEND's size, for the history (read before the post: after
        // it the chunk may already be back in the pool).
        let first_len = if self.first_send_seen.load(Relaxed) { None } else { chunks.clone().next().map(|c| c.offset()) };
        let r = self.post(
            chunks.clone().map(|c| SendWr { wr_id: c.wr_id(), addr: c.buffer() as u64, len: c.offset(), lkey: c.lkey() }),
            "data",
        );
        if let Err(pe) = &r {
            tx.unmark_in_flight(chunks.skip(pe.posted));
        }
        let (sent, bytes) = match &r {
            Ok(b) => (n, *b),
            Err(e) => (e.posted, e.bytes),
        };
        if sent > 0 {
            let c = &self.env.counters;
            c.tx_chunks.fetch_add(sent as u64, Relaxed);
            c.tx_bytes.fetch_add(bytes, Relaxed);
            if !self.first_send_seen.swap(true, Relaxed) {
                // Once per QP: the first SEND's size and whether it went inline.
                if let Some(len) = first_len {
                    let how = if sends_inline(len, self.max_inline) { ", inline" } else { "" };
                    self.env.history.record_once(self.qpn, QpEvent::FirstSend, &format!("{len} B{how}"));
                }
            }
        }
        r.map(|_| ()).map_err(|mut pe| {
            pe.err = self.fail(pe.err.clone().context(format_args!("QP {}: posting {} send(s)", self.qpn, n)));
            pe
        })
    }

    /// Posts the zero-length close SEND (once; later calls do nothing).
    pub fn post_fin(&self) -> Result<()> {
        self.check_can_send()?;
        if self.fin_posted.swap(true, AcqRel) {
            return Ok(());
        }
        let wr = SendWr { wr_id: FIN_WRID_TAG | self.qpn as u64, addr: 0, len: 0, lkey: 0 };
        self.post(std::iter::once(wr), "the close SEND").map_err(|pe| {
            self.fin_posted.store(false, Release);
            self.fail(pe.err.context(format_args!("QP {}: close SEND", self.qpn)))
        })?;
        self.env.history.record(self.qpn, QpEvent::Fin, "close SEND posted");
        Ok(())
    }

    /// A send completion of this QP was polled.
    pub(crate) fn tx_completed(&self) {
        let _ = self.tx_outstanding.fetch_update(AcqRel, Acquire, |v| v.checked_sub(1));
    }

    /// Marks the QP dead (once). Returns false if it already was.
    pub(crate) fn mark_dead(&self) -> bool {
        if self.dead.swap(true, AcqRel) {
            return false;
        }
        *self.dead_since.lock() = Some(Instant::now());
        true
    }
    pub(crate) fn dead_for(&self) -> Option<std::time::Duration> {
        self.dead_since.lock().map(|t| t.elapsed())
    }

    /// Posts the beacon (signaled SEND, no SGE, wr_id 0xDEADBEEF) into the reserved slot.
    pub(crate) fn post_beacon(&self) -> Result<()> {
        let wr = SendWr { wr_id: BEACON_WRID, addr: 0, len: 0, lkey: 0 };
        let r = match self.raw.read().as_ref() {
            Some(r) => r.post_send(std::iter::once(wr)),
            None => return Err(Error::new(libc::ENOTCONN, "QP already destroyed")),
        };
        r.map(|_| ()).map_err(|pe| pe.err)
    }

    /// Receive buffers for this QP's own RQ (their chunks already carry this
    /// QP's number as owner tag): counts them, posts, uncounts the ones the
    /// provider refused.
    pub(crate) fn post_own_recv<I>(&self, wrs: I) -> std::result::Result<(), PostError>
    where
        I: IntoIterator<Item = RecvWr>,
        I::IntoIter: ExactSizeIterator,
    {
        let wrs = wrs.into_iter();
        let n = wrs.len();
        self.posted_rx.fetch_add(n as u32, AcqRel);
        let r = match self.raw.read().as_ref() {
            Some(r) => r.post_recv(wrs),
            None => Err(PostError::none(Error::new(libc::ENOTCONN, "QP already destroyed"))),
        };
        if let Err(pe) = &r {
            self.posted_rx.fetch_sub((n - pe.posted) as u32, AcqRel);
        }
        r
    }

    /// A receive completion for `chunk` was polled: if it was posted to this
    /// QP's RQ (its owner tag, cleared by the caller afterwards) it left it.
    pub(crate) fn rx_completed(&self, chunk: ChunkRef) -> bool {
        if chunk.qp() != self.qpn {
            return false;
        }
        self.posted_rx.fetch_update(AcqRel, Acquire, |v| v.checked_sub(1)).is_ok()
    }

    /// Sets the cap on received buffers held unread (0 = none); set before
    /// the QP receives anything.
    pub(crate) fn set_rx_cap(&self, cap: u32) {
        self.rx_cap.store(cap, Relaxed);
    }

    /// The cap set with [`set_rx_cap`](Self::set_rx_cap) (0 = none).
    pub(crate) fn rx_cap(&self) -> u32 {
        self.rx_cap.load(Relaxed)
    }

    /// A received buffer was handed to the layer above.
    pub(crate) fn rx_delivered(&self) -> RxCap {
        let cap = self.rx_cap();
        if cap == 0 {
            return RxCap::Within;
        }
        let mut g = self.rx_gate.lock();
        g.held += 1;
        if g.held <= cap {
            return RxCap::Within;
        }
        g.withheld += 1;
        let first = !std::mem::replace(&mut g.warned, true);
        RxCap::Withhold { first }
    }

    /// Undoes [`rx_delivered`](Self::rx_delivered) for a buffer that was not
    /// handed over after all (the SRQ case: the QP is failed instead).
    pub(crate) fn rx_undeliver(&self) {
        if self.rx_cap() == 0 {
            return;
        }
        let mut g = self.rx_gate.lock();
        g.held = g.held.saturating_sub(1);
        g.withheld = g.withheld.saturating_sub(1);
    }

    /// The layer above released a received buffer: true when a withheld
    /// refill of this QP's RQ is due now (the count is taken).
    pub(crate) fn rx_released(&self) -> bool {
        let cap = self.rx_cap();
        if cap == 0 {
            return false;
        }
        let mut g = self.rx_gate.lock();
        g.held = g.held.saturating_sub(1);
        if g.withheld > 0 && g.held <= cap {
            g.withheld -= 1;
            return true;
        }
        false
    }

    /// Destroys the verbs QP (idempotent) and hands back the receive chunks
    /// still posted to its RQ (the RX chunks in use tagged with its number).
    pub(crate) fn destroy(&self) -> (Result<()>, Vec<ChunkRef>) {
        let raw = self.raw.write().take();
        let r = match raw {
            Some(raw) => raw.destroy(),
            None => Ok(()),
        };
        self.posted_rx.store(0, Release);
        let left = if self.env.srq.is_none() {
            self.env.mem.rx.in_use_where(|c| c.qp() == self.qpn)
        } else {
            Vec::new()
        };
        (r, left)
    }

    pub(crate) fn is_destroyed(&self) -> bool {
        self.raw.read().is_none()
    }
}
