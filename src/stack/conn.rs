//! `Conn`: one stream connection (Ceph's RDMAConnectedSocketImpl): an RC QP
//! plus the TCP socket of its cm_meta handshake, a byte stream over SENDs of
//! at most `buffer_size` bytes, and an eventfd for the host's event loop.
//!
//! The stack's poller drives the TCP side (connect, handshake, EOF) and
//! routes completions here; the host calls `send`, `recv` and `close`.

use crate::sys::event::EventFd;
use crate::sys::net::so_error;
use super::Shared;
use crate::error::{Error, Result};
use crate::qp::{Handshake, Progress, Role};
use crate::mem::ChunkRef;
use crate::qp::QueuePair;
use crate::verbs::Wc;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::{Arc, Weak};
use std::time::Instant;

/// Longest a closing connection waits for its data and close SEND to be
/// acknowledged before the QP is retired anyway (a dead peer never acks).
const LINGER: std::time::Duration = std::time::Duration::from_secs(10);
/// After a TCP EOF without the close SEND, how long completions may still
/// bring it (the peer closes TCP once its close SEND was acknowledged, which
/// can be before this side polled the last receives).
const EOF_GRACE: std::time::Duration = std::time::Duration::from_millis(300);
/// Chunks copied and posted by one `send` call at most.
const MAX_CHUNKS_PER_SEND: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Non-blocking TCP connect in progress (connector).
    Connecting,
    Handshaking,
    Connected,
    /// The host closed it; waiting for sends to be acknowledged.
    Closing,
    /// QP retired, fds closed.
    Done,
}

enum RxItem {
    /// A receive buffer holding payload; read from its cursor.
    Data(ChunkRef),
    /// The peer's zero-length close SEND.
    Fin,
}

struct State {
    phase: Phase,
    hs: Option<Handshake>,
    error: Option<Error>,
    /// Reached RTS (sends possible); Ceph's `active`.
    active: bool,
    rx: VecDeque<RxItem>,
    closing_since: Option<Instant>,
    /// The peer's close SEND arrived (its TCP EOF is then expected).
    peer_fin: bool,
    /// TCP EOF seen before the close SEND: the peer may have closed in order
    /// with its last SENDs not polled here yet, or it died. Decided after
    /// EOF_GRACE.
    tcp_eof: Option<Instant>,
    /// `shutdown` posted the close SEND: no more sends, receiving goes on.
    shut_wr: bool,
    /// When the TCP connect and handshake must be done (ibstack_handshake_timeout_ms; None = no limit).
    hs_deadline: Option<Instant>,
}

impl State {
    /// Empties the receive queue, giving its buffers back to the pool.
    fn drop_rx_chunks(&mut self, disp: &crate::dispatcher::Dispatcher, qp: &QueuePair) {
        for i in self.rx.drain(..) {
            if let RxItem::Data(c) = i {
                disp.release_held_rx(qp, c);
            }
        }
    }
}

/// What `send` keeps between calls, under `Conn::send_lock`.
struct SendState {
    /// The TX chunks one call fills and posts (kept: no allocation per call).
    chunks: Vec<ChunkRef>,
    /// Write coalescing (`ibstack_tx_coalesce`): small writes made while
    /// SENDs are in flight, appended here and posted as one SEND when
    /// everything in flight was acknowledged ([`Conn::uncork`]), the chunk
    /// fills, or the connection shuts down or closes (before the close SEND).
    corked: Option<ChunkRef>,
}

pub struct Conn {
    /// This connection as the stack's corked list holds it.
    this: Weak<Conn>,
    pub(super) shared: Arc<Shared>,
    pub(super) qp: Arc<QueuePair>,
    tcp: Mutex<Option<OwnedFd>>,
    tcp_fd: RawFd,
    notify: EventFd,
    st: Mutex<State>,
    /// Serializes `send`, `shutdown` and the flush of coalesced bytes.
    send_lock: Mutex<SendState>,
    /// On the stack's corked list (so a coalescing send lists it once).
    cork_listed: AtomicBool,
    /// `recv_chunks` lent a chunk at least once (close then looks for loans).
    lent_any: AtomicBool,
    parked: AtomicBool,
    /// A state change was signalled with `wake_always` (handshake end, fault,
    /// TX chunks back) that a reset of the eventfd may have swallowed; the
    /// next reset writes again instead.
    edge_pending: AtomicBool,
    /// The eventfd holds an unread notification (saves a write per event
    /// and a read per `recv`).
    signaled: AtomicBool,
    /// The host asked for the eventfd; until then nobody waits on it and
    /// notifications cost no syscall (hosts that poll `recv` directly).
    fd_used: AtomicBool,
    peer: String,
    role: Role,
}

const END_OF_STREAM: &str = "end of stream: the peer closed the connection (its close SEND arrived)";

fn end_of_stream() -> Error {
    Error::new(libc::ECONNRESET, END_OF_STREAM)
}

/// Whether `recv`'s error is the orderly end of the stream (the peer's close
/// SEND after all its data), which a socket reports as a read of 0 bytes.
pub fn is_end_of_stream(e: &Error) -> bool {
    e.errno == libc::ECONNRESET && e.msg == END_OF_STREAM
}

impl Conn {
    pub(super) fn new(shared: Arc<Shared>, qp: Arc<QueuePair>, tcp: OwnedFd, role: Role, peer: String, connecting: bool) -> Result<Arc<Conn>> {
        let notify = EventFd::new()?;
        let hs = Handshake::new(role, &qp);
        let tcp_fd = tcp.as_raw_fd();
        let hs_ms = shared.disp.ib().config().handshake_timeout_ms;
        let hs_deadline = (hs_ms > 0).then(|| Instant::now() + std::time::Duration::from_millis(hs_ms as u64));
        Ok(Arc::new_cyclic(|this| Conn {
            this: this.clone(),
            shared,
            qp,
            tcp: Mutex::new(Some(tcp)),
            tcp_fd,
            notify,
            st: Mutex::new(State {
                phase: if connecting { Phase::Connecting } else { Phase::Handshaking },
                hs: Some(hs),
                error: None,
                active: false,
                rx: VecDeque::new(),
                closing_since: None,
                peer_fin: false,
                tcp_eof: None,
                shut_wr: false,
                hs_deadline,
            }),
            send_lock: Mutex::new(SendState { chunks: Vec::with_capacity(MAX_CHUNKS_PER_SEND), corked: None }),
            cork_listed: AtomicBool::new(false),
            lent_any: AtomicBool::new(false),
            parked: AtomicBool::new(false),
            edge_pending: AtomicBool::new(false),
            signaled: AtomicBool::new(false),
            fd_used: AtomicBool::new(false),
            peer,
            role,
        }))
    }

    pub fn qp_num(&self) -> u32 {
        self.qp.qp_num()
    }
    /// The GID table index the connection advertises and sends from.
    pub fn gid_index(&self) -> u32 {
        self.qp.gid_index()
    }
    pub fn fd(&self) -> RawFd {
        if !self.fd_used.swap(true, AcqRel) {
            // Whatever happened before the host looked is pending: make it visible.
            self.signaled.store(true, Release);
            self.notify.notify();
        }
        self.notify.fd()
    }
    /// The TCP side channel's descriptor (owned by the connection).
    pub fn tcp_fd(&self) -> RawFd {
        self.tcp_fd
    }
    /// New data: make the fd readable (one write while it already is).
    pub(super) fn wake(&self) {
        if self.fd_used.load(Acquire) && !self.signaled.swap(true, AcqRel) {
            self.notify.notify();
        }
    }

    /// A state change the host must see even if it is not reading (TX chunks
    /// back after -EAGAIN, handshake done, fault): always a new write, so an
    /// edge-triggered waiter that stopped calling recv gets a new edge.
    fn wake_always(&self) {
        if self.fd_used.load(Acquire) {
            self.edge_pending.store(true, Release);
            self.signaled.store(true, Release);
            self.notify.notify();
        }
    }

    /// The host looked and found nothing: reset the eventfd, unless a wake
    /// raced the look. A wake that came between the reset of `signaled` and
    /// the drain had its write swallowed by the drain, so the fd is written
    /// again when anything may be due: `signaled` set again, a state change
    /// the host has not seen (`edge_pending`, consumed here), or `still_due()`
    /// (e.g. data queued after the look).
    fn reset_fd(&self, still_due: impl FnOnce() -> bool) {
        if !self.signaled.swap(false, AcqRel) {
            return;
        }
        self.notify.drain();
        if self.edge_pending.swap(false, AcqRel) || self.signaled.load(Acquire) || still_due() {
            self.signaled.store(true, Release);
            self.notify.notify();
        }
    }

    /// 1 connected, 0 handshake pending, or the error.
    pub fn is_connected(&self) -> Result<bool> {
        let st = self.st.lock();
        if let Some(e) = &st.error {
            return Err(e.clone());
        }
        let pending = matches!(st.phase, Phase::Connecting | Phase::Handshaking);
        let connected = matches!(st.phase, Phase::Connected);
        drop(st);
        if pending {
            self.quiet_while_handshaking();
        }
        Ok(connected)
    }

    /// The host looked during the handshake and found nothing to do: reset
    /// the eventfd so a level-triggered waiter sleeps until the handshake
    /// ends or fails (those wake it again), instead of spinning on it.
    fn quiet_while_handshaking(&self) {
        // The handshake may have ended between the caller's look and the reset.
        self.reset_fd(|| {
            let st = self.st.lock();
            st.error.is_some() || !matches!(st.phase, Phase::Connecting | Phase::Handshaking)
        });
    }

    pub fn error_message(&self) -> String {
        self.st.lock().error.as_ref().map(|e| e.to_string()).unwrap_or_default()
    }

    /// Records the first failure and wakes the host.
    pub(super) fn fault(&self, e: Error) {
        {
            let mut st = self.st.lock();
            if st.error.is_some() || st.phase == Phase::Done {
                return;
            }
            log::warn!("connection {} (QP {}, {:?}): {e}", self.peer, self.qp_num(), self.role);
            st.error = Some(e.clone());
        }
        self.qp.set_fault(e);
        self.wake_always();
    }

    // ------------------------------------------------------------------ TCP side

    /// The poll events the TCP socket needs now (0 = none: stop watching).
    pub(super) fn tcp_interest(&self) -> u32 {
        let st = self.st.lock();
        let base = (libc::EPOLLRDHUP) as u32;
        match st.phase {
            Phase::Connecting => base | libc::EPOLLOUT as u32,
            Phase::Handshaking => {
                if st.error.is_some() {
                    return 0;
                }
                let w = st.hs.as_ref().map_or(0, |h| h.wants());
                base | if w == libc::POLLOUT { libc::EPOLLOUT as u32 } else { libc::EPOLLIN as u32 }
            }
            Phase::Connected | Phase::Closing => {
                if st.error.is_some() || st.tcp_eof.is_some() {
                    0
                } else {
                    base | libc::EPOLLIN as u32
                }
            }
            Phase::Done => 0,
        }
    }

    /// The TCP socket became ready: finish the connect, advance the
    /// handshake, or notice the peer going away.
    pub(super) fn on_tcp_event(&self, events: u32) {
        let phase = self.st.lock().phase;
        match phase {
            Phase::Connecting => {
                let err = so_error(self.tcp_fd);
                if err != 0 {
                    self.fault(Error::new(
                        err,
                        format!("TCP connect to {} failed: {}", self.peer, crate::errno::errno_cstr(err).to_string_lossy()),
                    ));
                    return;
                }
                if events & (libc::EPOLLOUT as u32 | libc::EPOLLERR as u32 | libc::EPOLLHUP as u32) == 0 {
                    return;
                }
                {
                    // Under the lock that `close` takes: a close since the read above wins.
                    let mut st = self.st.lock();
                    if st.phase != Phase::Connecting {
                        return;
                    }
                    st.phase = Phase::Handshaking;
                }
                self.step_handshake();
            }
            Phase::Handshaking => self.step_handshake(),
            Phase::Connected | Phase::Closing => self.check_side_channel(),
            Phase::Done => {}
        }
    }

    fn step_handshake(&self) {
        let mut st = self.st.lock();
        // Closed (or retired) meanwhile: never resurrect it as Connected.
        if st.error.is_some() || st.phase != Phase::Handshaking {
            return;
        }
        let Some(hs) = st.hs.as_mut() else { return };
        match hs.step(&self.qp, self.tcp_fd) {
            Ok(Progress::Done) => {
                st.phase = Phase::Connected;
                st.active = true;
                st.hs = None;
                drop(st);
                log::debug!("connection {} (QP {}): handshake done", self.peer, self.qp_num());
                self.wake_always();
            }
            Ok(_) => {
                // The connector is RTS once it read record #2, before writing #3.
                st.active = self.qp.cached_state() == crate::verbs::QpState::Rts;
            }
            Err(e) => {
                drop(st);
                self.fault(e);
            }
        }
    }

    /// After the handshake the TCP socket carries nothing; EOF means the
    /// peer is gone (or closed after its close SEND).
    fn check_side_channel(&self) {
        let mut b = [0u8; 64];
        // SAFETY: reads into a valid buffer.
        let n = unsafe { libc::recv(self.tcp_fd, b.as_mut_ptr().cast(), b.len(), libc::MSG_DONTWAIT) };
        if n == 0 {
            let (closing, fin) = {
                let st = self.st.lock();
                (st.phase == Phase::Closing, st.peer_fin)
            };
            if fin && !closing {
                // Orderly close: the close SEND came first; end of stream after the data.
                let mut st = self.st.lock();
                if st.error.is_none() {
                    st.error = Some(end_of_stream());
                }
            } else if closing {
                // The peer is gone: nothing more will be acknowledged.
                self.st.lock().closing_since = Some(Instant::now() - LINGER);
            } else {
                self.st.lock().tcp_eof.get_or_insert_with(Instant::now);
            }
        } else if n > 0 {
            self.fault(Error::new(
                libc::EPROTO,
                format!(
                    "unexpected bytes on the TCP side channel after the handshake: {}",
                    crate::handshake::escape_bytes(&b[..n as usize])
                ),
            ));
        } else {
            let e = crate::sys::errno();
            if e != libc::EAGAIN && e != libc::EINTR {
                self.fault(crate::sys::errno_error(e, format_args!("TCP side channel to {}", self.peer)));
            }
        }
    }

    // ------------------------------------------------------------------ completions

    /// A completion the dispatcher handed over for this connection's QP.
    pub(super) fn on_completion(&self, w: &Wc) {
        // Only a successful RECV carries data; the dispatcher already gave the
        // buffer of anything else back.
        if w.status != 0 || w.opcode != crate::verbs::cq::WC_OPCODE_RECV {
            let e = self.qp.fault().unwrap_or_else(|| {
                Error::new(libc::ECONNRESET, format!("completion error {}", crate::verbs::wc_status_name(w.status)))
            });
            self.fault(e);
            return;
        }
        let Some(chunk) = self.shared.disp.mem().rx.from_wr_id(w.wr_id) else {
            log::error!("connection {}: receive completion with wr_id {:#x} that is not an RX chunk; ignored", self.peer, w.wr_id);
            return;
        };
        let mut st = self.st.lock();
        if matches!(st.phase, Phase::Closing | Phase::Done) {
            drop(st);
            self.shared.disp.release_held_rx(&self.qp, chunk);
            return;
        }
        if w.byte_len == 0 {
            st.rx.push_back(RxItem::Fin);
            st.peer_fin = true;
            drop(st);
            self.shared.disp.release_held_rx(&self.qp, chunk);
            self.wake_always();
            return;
        }
        st.rx.push_back(RxItem::Data(chunk));
        drop(st);
        self.wake();
    }

    // ------------------------------------------------------------------ host API

    fn sendable(&self) -> Result<()> {
        let st = self.st.lock();
        if let Some(e) = &st.error {
            return Err(if st.active { e.clone() } else { Error::new(libc::EPIPE, format!("connection failed before it was established: {}", e.msg)) });
        }
        match st.phase {
            Phase::Connected if st.shut_wr => Err(Error::new(libc::EPIPE, "the connection was shut down for sending")),
            Phase::Connected => Ok(()),
            Phase::Connecting | Phase::Handshaking => {
                Err(Error::new(libc::EAGAIN, "the handshake is still in progress: wait for the connection's fd"))
            }
            Phase::Closing | Phase::Done => Err(Error::new(libc::EPIPE, "the connection was closed")),
        }
    }

    /// Ends the sending half, as shutdown(SHUT_WR): the close SEND goes after
    /// the data already accepted (the peer reads to its end of stream) and
    /// later sends fail with EPIPE; receiving goes on until the peer closes.
    /// The handle stays valid until `close`. A second call does nothing.
    pub fn shutdown(&self) -> Result<()> {
        let mut s = self.send_lock.lock(); // after any send in progress
        {
            let mut st = self.st.lock();
            if let Some(e) = &st.error {
                return Err(e.clone());
            }
            match st.phase {
                Phase::Connected if st.shut_wr => return Ok(()),
                Phase::Connected => st.shut_wr = true,
                Phase::Connecting | Phase::Handshaking => {
                    return Err(Error::new(libc::ENOTCONN, "the handshake is still in progress: nothing to shut down yet"))
                }
                Phase::Closing | Phase::Done => return Err(Error::new(libc::EPIPE, "the connection was closed")),
            }
        }
        self.post_corked(&mut s)?;
        self.qp.post_fin()
    }

    /// The address of the peer (`peer`) or of this end of the TCP side
    /// channel; ENOTCONN once the connection was retired or before a
    /// connector's TCP connect completed.
    pub fn tcp_addr(&self, peer: bool) -> Result<std::net::SocketAddr> {
        let tcp = self.tcp.lock();
        let fd = tcp.as_ref().ok_or_else(|| Error::new(libc::ENOTCONN, "the connection was retired"))?;
        crate::sys::net::socket_addr(fd.as_raw_fd(), peer)
    }

    /// Registers for a wake-up when TX chunks come back.
    fn park(&self) {
        if !self.parked.swap(true, AcqRel) {
            self.shared.park(self);
        }
    }
    pub(super) fn unpark(&self) {
        self.parked.store(false, Release);
        self.wake_always();
    }

    /// Copies as much of `data` as TX chunks allow into SENDs; returns the
    /// bytes accepted or EAGAIN (the fd fires when chunks come back).
    pub fn send(&self, data: &[u8]) -> Result<usize> {
        self.send_vectored(&[IoSlice::new(data)])
    }

    /// As [`send`](Self::send) for several buffers taken as one stream
    /// (writev, sendmsg): their bytes are packed into full SENDs, as Ceph
    /// packs a bufferlist, never one SEND per buffer.
    pub fn send_vectored(&self, bufs: &[IoSlice<'_>]) -> Result<usize> {
        // Checked under the lock `close` takes first: nothing is accepted after the close SEND.
        let mut s = self.send_lock.lock();
        self.sendable()?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Ok(0);
        }
        let tx = &self.shared.disp.mem().tx;
        let c = &self.shared.disp.env().counters;
        // Zero-copy: the caller filled a whole TX chunk it owns.
        if let [data] = bufs {
            if let Some(ch) = tx.chunk_by_buffer(data.as_ptr()) {
                if ch.buffer() as *const u8 == data.as_ptr() && data.len() <= ch.capacity() as usize && ch.is_held() {
                    // Within the connection's SEND budget like every other SEND; bytes
                    // coalesced earlier go first. Refused, the chunk stays the caller's.
                    self.budget_after_corked(&mut s)?;
                    ch.set_offset(data.len() as u32);
                    self.qp.post_chunks(std::iter::once(ch)).map_err(|pe| pe.err)?;
                    return Ok(data.len());
                }
            }
        }
        let bs = tx.buffer_size();
        if self.shared.coalesce && total < bs && (s.corked.is_some() || self.qp.tx_outstanding() > 0) {
            let mut taken = 0;
            for b in bufs.iter().filter(|b| !b.is_empty()) {
                match self.cork(&mut s, b)? {
                    Some(n) => {
                        taken += n;
                        if n < b.len() {
                            break;
                        }
                    }
                    None => break,
                }
            }
            if taken > 0 {
                return Ok(taken);
            }
        }
        let budget = self.budget_after_corked(&mut s)?;
        let want = total.div_ceil(bs).min(budget).min(MAX_CHUNKS_PER_SEND);
        let bytes = (want * bs).min(total);
        let chunks = &mut s.chunks;
        chunks.clear();
        if tx.get_each(bytes, want, |_, ch| chunks.push(ch)).is_err() {
            c.tx_no_mem.fetch_add(1, Relaxed);
            self.park();
            if tx.get_each(bytes, want, |_, ch| chunks.push(ch)).is_err() {
                return Err(Error::new(libc::EAGAIN, "no free TX chunk: wait for the connection's fd"));
            }
        }
        // Fill each chunk before the next; only the last can be partly filled
        // (never empty: that would be a close SEND).
        let mut src = bufs.iter().map(|b| &b[..]).filter(|b| !b.is_empty());
        let mut cur: &[u8] = &[];
        let mut off = 0;
        'fill: for ch in chunks.iter() {
            ch.reset_write();
            while !ch.full() {
                if cur.is_empty() {
                    match src.next() {
                        Some(b) => cur = b,
                        None => break 'fill,
                    }
                }
                // SAFETY: we own the chunk until it is posted.
                let n = unsafe { ch.write(cur) };
                cur = &cur[n..];
                off += n;
            }
        }
        if off < total {
            c.tx_parital_mem.fetch_add(1, Relaxed);
        }
        if let Err(pe) = self.qp.post_chunks(chunks.iter().copied()) {
            let _ = tx.put(&chunks[pe.posted..]);
            self.fault(pe.err.clone());
            let sent = pe.bytes as usize;
            return if sent > 0 { Ok(sent) } else { Err(pe.err) };
        }
        Ok(off)
    }

    /// SENDs this connection may still post (ibstack_max_inflight_per_conn).
    fn budget(&self) -> usize {
        self.shared.max_inflight.saturating_sub(self.qp.tx_outstanding()) as usize
    }

    /// The budget, or EAGAIN with the connection parked (its fd fires when
    /// SENDs complete). Looked at again after parking: a completion that came
    /// in between would not wake it.
    fn budget_or_park(&self) -> Result<usize> {
        let budget = self.budget();
        if budget > 0 {
            return Ok(budget);
        }
        self.park();
        match self.budget() {
            0 => Err(Error::new(libc::EAGAIN, "this connection has its maximum of TX chunks in flight")),
            b => Ok(b),
        }
    }

    /// The budget left for a new SEND once the bytes coalesced earlier went
    /// out as one SEND of their own (they go first, within the budget: were
    /// they posted regardless, a writer alternating small and large writes
    /// would take the whole pool past a stalled peer). EAGAIN, parked, when
    /// nothing is left.
    fn budget_after_corked(&self, s: &mut SendState) -> Result<usize> {
        let budget = self.budget_or_park()?;
        if s.corked.is_none() {
            return Ok(budget);
        }
        self.post_corked(s)?;
        self.budget_or_park()
    }

    /// Coalescing: appends `data` (shorter than a buffer) to the corked
    /// chunk while SENDs are in flight. Some(bytes taken), or None when no
    /// TX chunk is free to cork into (the caller's normal path parks).
    fn cork(&self, s: &mut SendState, data: &[u8]) -> Result<Option<usize>> {
        if s.corked.is_some_and(|ch| ch.full()) {
            // Full and not posted yet (no budget then): post it now or wait.
            self.budget_or_park()?;
            self.post_corked(s)?;
        }
        let ch = match s.corked {
            Some(ch) => ch,
            None => {
                let Some(ch) = self.shared.disp.mem().tx.get_one() else { return Ok(None) };
                ch.reset_write();
                s.corked = Some(ch);
                self.relist_corked();
                ch
            }
        };
        // SAFETY: the corked chunk is held by this connection until posted.
        let n = unsafe { ch.write(data) };
        // Everything in flight completed meanwhile (the poller may have looked
        // at the corked list before this connection was on it): post now.
        if (ch.full() && self.budget() > 0) || self.qp.tx_outstanding() == 0 {
            self.post_corked(s)?;
        }
        Ok(Some(n))
    }

    /// Posts the corked chunk, if any, as one SEND. A failed post faults the
    /// connection (the chunk goes back to the pool) and returns the error.
    fn post_corked(&self, s: &mut SendState) -> Result<()> {
        let Some(ch) = s.corked.take() else { return Ok(()) };
        if let Err(pe) = self.qp.post_chunks(std::iter::once(ch)) {
            let _ = self.shared.disp.mem().tx.put_one(ch);
            self.fault(pe.err.clone());
            return Err(pe.err);
        }
        Ok(())
    }

    /// A send completion came back (the stack's poller): post the bytes
    /// coalesced meanwhile, or keep them listed while the budget is spent.
    pub(super) fn uncork(&self) {
        self.cork_listed.store(false, Release);
        // Never wait for a writer: the poller would stop polling while it
        // copies. A busy connection is looked at again next iteration.
        let Some(mut s) = self.send_lock.try_lock() else {
            self.relist_corked();
            self.shared.retry_uncork();
            return;
        };
        if s.corked.is_none() {
            return;
        }
        if self.st.lock().error.is_some() {
            // Failed meanwhile: nothing more reaches the peer.
            self.drop_corked(&mut s);
            return;
        }
        // As Nagle: a partly filled chunk waits until everything in flight
        // was acknowledged, so the writes made meanwhile go as one SEND (a
        // completion per SEND would otherwise post one SEND per write when
        // the poller is quick); a full one goes as soon as the budget allows.
        let full = s.corked.is_some_and(|ch| ch.full());
        if self.budget() == 0 || (!full && self.qp.tx_outstanding() > 0) {
            self.relist_corked();
            return;
        }
        let _ = self.post_corked(&mut s);
    }

    /// Back on the stack's corked list (once).
    fn relist_corked(&self) {
        if !self.cork_listed.swap(true, AcqRel) {
            self.shared.list_corked(self.this.clone());
        }
    }

    /// The receiving side's preamble: the state, locked, when data may be
    /// read; the failure, or EAGAIN while the handshake runs, otherwise.
    fn rx_state(&self) -> Result<parking_lot::MutexGuard<'_, State>> {
        let st = self.st.lock();
        match st.phase {
            Phase::Connected => Ok(st),
            // Data that raced ahead of record #3 waits for the handshake (Ceph's rule).
            Phase::Connecting | Phase::Handshaking => {
                if let Some(e) = st.error.clone() {
                    return Err(e);
                }
                drop(st);
                self.quiet_while_handshaking();
                Err(Error::new(libc::EAGAIN, "the handshake is still in progress: wait for the connection's fd"))
            }
            // Retired by the stack itself (ibstack_stack_free): say why.
            Phase::Done if st.error.is_some() => Err(st.error.clone().expect("checked")),
            Phase::Closing | Phase::Done => Err(Error::new(libc::EBADF, "the connection was closed")),
        }
    }

    /// The receiving side's ending, after `n` bytes or chunks were taken out:
    /// `n`, else the failure, else EAGAIN with the eventfd reset.
    fn rx_result(&self, n: usize, st: parking_lot::MutexGuard<'_, State>) -> Result<usize> {
        let more = !st.rx.is_empty();
        let err = st.error.clone();
        drop(st);
        if n > 0 {
            // The eventfd stays readable while data may remain (level
            // semantics); it is reset only when a read comes back empty.
            return Ok(n);
        }
        if let Some(e) = err {
            return Err(e);
        }
        if !more {
            // Data that arrived after the look found `signaled` still set and did not write.
            self.reset_fd(|| !self.st.lock().rx.is_empty());
        }
        Err(Error::new(libc::EAGAIN, "no data yet"))
    }

    /// The receive queue in stream order, for `recv` and `recv_chunks`:
    /// `take(chunk)` uses the front chunk and says whether it leaves the
    /// queue (read to its end, or lent) and whether to go on. Stops at the
    /// peer's close SEND: the end of the stream when nothing came before it.
    fn walk_rx(st: &mut State, mut take: impl FnMut(ChunkRef) -> (bool, bool)) -> Result<()> {
        let mut first = true;
        loop {
            match st.rx.front() {
                None => return Ok(()),
                Some(RxItem::Fin) => return if first { Err(end_of_stream()) } else { Ok(()) },
                Some(&RxItem::Data(ch)) => {
                    first = false;
                    let (off_queue, go_on) = take(ch);
                    if off_queue {
                        st.rx.pop_front();
                    }
                    if !go_on {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Copies received bytes out in order; after the peer's close SEND,
    /// end-of-stream (ECONNRESET) once everything before it was read.
    pub fn recv(&self, out: &mut [u8]) -> Result<usize> {
        let mut st = self.rx_state()?;
        if out.is_empty() {
            return Ok(0);
        }
        let mut n = 0;
        Self::walk_rx(&mut st, |ch| {
            // SAFETY: the chunk was delivered to this connection and is owned by it.
            n += unsafe { ch.read(&mut out[n..]) };
            let whole = ch.size() == 0;
            if whole {
                // Read to the end: back to the pool (lock-free, no allocation).
                self.shared.disp.release_held_rx(&self.qp, ch);
            }
            (whole, n < out.len())
        })?;
        self.rx_result(n, st)
    }

    /// Zero-copy receive: lends up to `max` received buffers to the host, in
    /// stream order, each passed to `put(i, chunk)`; a chunk's unread bytes
    /// are `offset..bound` of its buffer (the first may be partly read by
    /// `recv`). They stay the host's, and count against the connection's
    /// receive cap, until `release_chunks` (or `close`) gives them back. The
    /// end of the stream, errors and the eventfd behave as for `recv`.
    pub fn recv_chunks(&self, max: usize, mut put: impl FnMut(usize, ChunkRef)) -> Result<usize> {
        let mut st = self.rx_state()?;
        if max == 0 {
            return Ok(0);
        }
        let mut n = 0;
        Self::walk_rx(&mut st, |ch| {
            self.lent_any.store(true, Relaxed);
            ch.lend(self.qp_num());
            put(n, ch);
            n += 1;
            (true, n < max)
        })?;
        self.rx_result(n, st)
    }

    /// Gives back chunks `recv_chunks` lent, named by their addresses (C's
    /// `ibstack_chunk *`, checked against the pool before use), in any
    /// order. All are checked first: one this connection did not lend, or
    /// gave back already, is -EINVAL naming it, and then none is given back.
    /// A chunk named twice in one call is given back once.
    pub fn release_chunks_by_id<I: Iterator<Item = u64> + Clone>(&self, ids: I) -> Result<()> {
        let qpn = self.qp_num();
        let rx = &self.shared.disp.mem().rx;
        for (i, id) in ids.clone().enumerate() {
            let ok = rx.from_wr_id(id).is_some_and(|c| c.lent_to() == qpn && c.is_held());
            if !ok {
                let given_back = rx.from_wr_id(id).is_some_and(|c| c.lent_to() == 0);
                return Err(Error::inval(format!(
                    "chunks[{i}] ({id:#x}) is not a receive buffer this connection (QP {qpn}) lent with \
                     ibstack_conn_recv_chunks{}",
                    if given_back { " (given back already?)" } else { "" }
                )));
            }
        }
        for c in ids.filter_map(|id| rx.from_wr_id(id)) {
            if c.end_loan(qpn) {
                self.shared.disp.release_held_rx(&self.qp, c);
            }
        }
        Ok(())
    }

    /// Gives back every chunk this connection still has lent to the host
    /// (at close: the host must not touch them afterwards).
    fn return_lent(&self) {
        if !self.lent_any.load(Relaxed) {
            return;
        }
        let qpn = self.qp_num();
        for c in self.shared.disp.mem().rx.in_use_where(|c| c.lent_to() == qpn) {
            if c.end_loan(qpn) {
                self.shared.disp.release_held_rx(&self.qp, c);
            }
        }
    }

    /// The host is done with the connection: unread data is dropped; if it is
    /// healthy the close SEND follows the data in flight, and the QP is
    /// retired once everything was acknowledged (or after a linger timeout).
    pub fn close(&self) {
        let mut s = self.send_lock.lock();
        let mut st = self.st.lock();
        if matches!(st.phase, Phase::Closing | Phase::Done) {
            return;
        }
        st.drop_rx_chunks(&self.shared.disp, &self.qp);
        let graceful = st.phase == Phase::Connected && st.error.is_none();
        st.phase = Phase::Closing;
        st.closing_since = Some(Instant::now());
        drop(st);
        self.return_lent();
        if graceful {
            // Coalesced bytes were accepted by send: they go before the close SEND.
            if let Err(e) = self.post_corked(&mut s).and_then(|()| self.qp.post_fin()) {
                log::debug!("connection {}: close SEND not posted: {e}", self.peer);
                self.st.lock().closing_since = Some(Instant::now() - LINGER);
            }
        } else {
            self.drop_corked(&mut s);
            self.st.lock().closing_since = Some(Instant::now() - LINGER);
        }
        drop(s);
        self.shared.kick();
    }

    /// Gives an unposted corked chunk back to the pool (the connection failed).
    fn drop_corked(&self, s: &mut SendState) {
        if let Some(ch) = s.corked.take() {
            let _ = self.shared.disp.mem().tx.put_one(ch);
        }
    }

    /// A TCP EOF without the close SEND: once the grace period passed with
    /// no close SEND, the peer died (or was killed) — fault. Called by the poller.
    pub(super) fn check_eof(&self) {
        let (eof, fin) = {
            let st = self.st.lock();
            (st.tcp_eof, st.peer_fin)
        };
        let Some(t) = eof else { return };
        if fin {
            let mut st = self.st.lock();
            st.tcp_eof = None;
            if st.error.is_none() {
                st.error = Some(end_of_stream());
            }
        } else if t.elapsed() >= EOF_GRACE {
            self.st.lock().tcp_eof = None;
            self.fault(Error::new(
                libc::ECONNRESET,
                format!("the peer {} closed the TCP side channel without its close SEND (process gone?)", self.peer),
            ));
        }
    }

    /// The handshake deadline while the TCP connect or the handshake is
    /// still running and has not failed.
    pub(super) fn handshake_deadline(&self) -> Option<Instant> {
        let st = self.st.lock();
        match st.phase {
            Phase::Connecting | Phase::Handshaking if st.error.is_none() => st.hs_deadline,
            _ => None,
        }
    }

    /// The handshake deadline passed: fail with ETIMEDOUT naming the stage,
    /// and shut the TCP socket down so the peer sees the refusal. The host
    /// then closes the connection (its fd fires), which frees the QP.
    pub(super) fn expire_handshake(&self) {
        let e = {
            let mut st = self.st.lock();
            if st.error.is_some() || !matches!(st.phase, Phase::Connecting | Phase::Handshaking) {
                return;
            }
            let ms = self.shared.disp.ib().config().handshake_timeout_ms;
            match (st.phase, st.hs.as_mut()) {
                (Phase::Handshaking, Some(hs)) => hs.expire(&self.qp, &self.peer, ms),
                _ => {
                    self.shared.disp.env().counters.handshake_errors.fetch_add(1, Relaxed);
                    Error::new(
                        libc::ETIMEDOUT,
                        format!("QP {}: TCP connect to {} timed out after {ms} ms (ibstack_handshake_timeout_ms)", self.qp_num(), self.peer),
                    )
                }
            }
        };
        self.fault(e);
        // SAFETY: our own socket; shutdown on a dead socket only fails.
        unsafe { libc::shutdown(self.tcp_fd, libc::SHUT_RDWR) };
    }

    /// The earliest moment the poller must look at this connection again
    /// without any event: end of the EOF grace, of the linger, or the
    /// handshake deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let st = self.st.lock();
        let eof = st.tcp_eof.map(|t| t + EOF_GRACE);
        let linger = match (st.phase, st.closing_since) {
            (Phase::Closing, Some(t)) => Some(t + LINGER),
            _ => None,
        };
        let hs = match st.phase {
            Phase::Connecting | Phase::Handshaking if st.error.is_none() => st.hs_deadline,
            _ => None,
        };
        [eof, linger, hs].into_iter().flatten().min()
    }

    pub(super) fn eof_pending(&self) -> bool {
        self.st.lock().tcp_eof.is_some()
    }

    /// For a closing connection: true when it may be retired now.
    pub(super) fn close_due(&self) -> bool {
        let st = self.st.lock();
        match (st.phase, st.closing_since) {
            (Phase::Closing, Some(t)) => self.qp.tx_outstanding() == 0 || st.error.is_some() || t.elapsed() >= LINGER,
            _ => false,
        }
    }

    /// Retires the QP (ERR + beacon) and closes the TCP socket.
    pub(super) fn finish(&self) {
        {
            let mut st = self.st.lock();
            if st.phase == Phase::Done {
                return;
            }
            st.phase = Phase::Done;
            st.drop_rx_chunks(&self.shared.disp, &self.qp);
        }
        self.return_lent();
        self.drop_corked(&mut self.send_lock.lock());
        if let Err(e) = self.shared.disp.to_dead(&self.qp) {
            log::warn!("connection {}: {e}", self.peer);
        }
        self.shared.ep.delete(self.tcp_fd);
        self.tcp.lock().take();
    }

    pub(super) fn is_closing(&self) -> bool {
        self.st.lock().phase == Phase::Closing
    }
}
