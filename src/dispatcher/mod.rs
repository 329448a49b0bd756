//! `Dispatcher`: Ceph's RDMADispatcher without its thread. It owns the TX and
//! RX completion queues, the SRQ, the QP registry and the drain of dead QPs,
//! and is driven by whoever polls it: a host's event loop (through the CQ
//! fds and `wait`) or the stack's polling thread.
//!
//! * `completions.rs` — what each TX/RX completion means (chunk returns,
//!   beacons, faults, replenishing receive buffers);
//! * `recv.rs` — posting receive buffers (SRQ or per-QP) and the backlog;
//! * `reap.rs` — `to_dead` and destroying drained QPs;
//! * `events.rs` — device async events.

mod completions;
mod events;
mod reap;
mod recv;

use crate::counters::{Counters, CountersSnapshot};
use crate::error::{Error, Result};
use crate::history::History;
use crate::ib::Ib;
use crate::mem::MemoryManager;
use crate::qp::{Env, QueuePair};
use crate::verbs::{AsyncEvent, Cq, Srq, Wc};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::Arc;
use std::time::Instant;

/// Completions polled per CQ per iteration (Ceph's MAX_COMPLETIONS).
pub const MAX_COMPLETIONS: usize = 32;

/// Most SRQ entries owed before they are posted back in one call (fewer
/// with a short receive queue: an eighth of it).
const SRQ_REFILL_BATCH: u64 = 32;

#[derive(Default)]
struct Registry {
    /// Every QP not yet destroyed, live or draining, by QP number.
    qps: crate::qpn_map::QpnMap<Arc<QueuePair>>,
    /// QPs that went through `to_dead` and wait for their drain to finish.
    dying: Vec<Arc<QueuePair>>,
}

/// Result of one `poll` iteration.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollOutcome {
    /// Completions written to the caller's array.
    pub delivered: usize,
    /// TX chunks that came back to the pool in this iteration.
    pub tx_returned: usize,
    /// Both CQs were empty.
    pub idle: bool,
}

pub struct Dispatcher {
    env: Arc<Env>,
    reg: Mutex<Registry>,
    /// Completions for the host (receives, and errors of live QPs), in order.
    ready: Mutex<VecDeque<Wc>>,
    events: Mutex<VecDeque<AsyncEvent>>,
    /// QP faults caused by async events, for the layer above to route to
    /// its connections (QP number, or 0 for every QP of the device).
    async_faults: Mutex<Vec<(u32, Error)>>,
    async_faults_pending: std::sync::atomic::AtomicBool,
    /// Serializes polling; holds the completion scratch array.
    poll_lock: Mutex<Box<[Wc; MAX_COMPLETIONS]>>,
    /// TX chunks `arm` got back, reported by the next `poll` (its caller
    /// wakes writers and flushes coalesced bytes on them).
    tx_returned_in_arm: std::sync::atomic::AtomicUsize,
    /// Serializes `post_rx`; holds its list of chunks being posted.
    rx_scratch: Mutex<Vec<crate::mem::ChunkRef>>,
    /// SRQ entries used by receive completions and not yet put back
    /// (`owe_srq`): refilled in one post of `srq_batch`, or when idle.
    srq_deferred: AtomicU64,
    srq_batch: u64,
    last_async_check: Mutex<crate::cycles::Stamp>,
}

impl Dispatcher {
    /// Creates both CQs (depth `ibstack_cq_depth`, capped at the device's
    /// max_cqe) and, with `ms_async_rdma_support_srq`, the SRQ filled with
    /// rx_queue_len receive buffers.
    pub fn new(ib: Arc<Ib>, mem: Arc<MemoryManager>) -> Result<Dispatcher> {
        crate::cycles::calibrate();
        let cfg = ib.config();
        let depth = ib.cq_depth(0);
        let tx_cq = Arc::new(Cq::new(ib.context(), depth).map_err(|e| e.context("TX completion queue"))?);
        let rx_cq = Arc::new(Cq::new(ib.context(), depth).map_err(|e| e.context("RX completion queue"))?);
        let srq = if cfg.support_srq {
            Some(Arc::new(Srq::new(ib.pd(), ib.rx_queue_len())?))
        } else {
            None
        };
        let ib_rx_queue_len = ib.rx_queue_len();
        let counters = Arc::new(Counters::new());
        let history = Arc::new(History::new(cfg.qp_history_len as usize));
        let env = Arc::new(Env {
            ib,
            mem,
            tx_cq,
            rx_cq,
            srq,
            counters,
            history,
            rx_posted: AtomicU64::new(0),
            srq_backlog: AtomicU64::new(0),
        });
        let d = Dispatcher {
            env,
            reg: Mutex::new(Registry::default()),
            ready: Mutex::new(VecDeque::new()),
            events: Mutex::new(VecDeque::new()),
            async_faults: Mutex::new(Vec::new()),
            async_faults_pending: std::sync::atomic::AtomicBool::new(false),
            poll_lock: Mutex::new(Box::new([Wc::default(); MAX_COMPLETIONS])),
            tx_returned_in_arm: std::sync::atomic::AtomicUsize::new(0),
            rx_scratch: Mutex::new(Vec::with_capacity(ib_rx_queue_len as usize)),
            srq_deferred: AtomicU64::new(0),
            srq_batch: (ib_rx_queue_len as u64 / 8).clamp(1, SRQ_REFILL_BATCH),
            last_async_check: Mutex::new(crate::cycles::Stamp::now()),
        };
        if d.env.srq.is_some() {
            let want = d.env.ib.rx_queue_len();
            let n = d.post_rx(want, None)?;
            if n == 0 {
                return Err(Error::new(libc::ENOBUFS, "could not post any receive buffer to the SRQ (RX pool empty)"));
            }
            if (n as u32) < want {
                log::warn!("SRQ filled with {n} of {want} receive buffers (RX pool limit); the rest is owed");
                let owed = (want - n as u32) as u64;
                d.env.srq_backlog.store(owed, Relaxed);
                d.env.counters.rx_post_backlog.store(owed, Relaxed);
            }
        }
        Ok(d)
    }

    pub fn env(&self) -> &Arc<Env> {
        &self.env
    }
    pub fn ib(&self) -> &Arc<Ib> {
        &self.env.ib
    }
    pub fn mem(&self) -> &Arc<MemoryManager> {
        &self.env.mem
    }
    pub fn tx_cq(&self) -> &Arc<Cq> {
        &self.env.tx_cq
    }
    pub fn rx_cq(&self) -> &Arc<Cq> {
        &self.env.rx_cq
    }
    pub fn has_srq(&self) -> bool {
        self.env.srq.is_some()
    }
    pub fn history(&self) -> &History {
        &self.env.history
    }

    /// Creates an RC QP in INIT on the shared CQs (and SRQ), posts its own
    /// receive buffers when there is no SRQ, and registers it.
    pub fn create_qp(&self) -> Result<Arc<QueuePair>> {
        self.create_qp_with_gid(self.env.ib.gid())
    }

    /// `create_qp` for a QP that advertises and sends from `gid`
    /// ([`Ib::gid_for_local`](crate::ib::Ib::gid_for_local)).
    pub fn create_qp_with_gid(&self, gid: &crate::verbs::GidEntry) -> Result<Arc<QueuePair>> {
        let qp = QueuePair::create(&self.env, gid)?;
        if self.env.srq.is_none() {
            let want = self.env.ib.rx_queue_len();
            let posted = match self.post_rx(want, Some(&qp)) {
                Ok(n) => n,
                Err(e) => {
                    self.discard(&qp);
                    return Err(e.context(format_args!("QP {}: posting its receive buffers", qp.qp_num())));
                }
            };
            if posted == 0 {
                self.discard(&qp);
                return Err(Error::new(
                    libc::ENOBUFS,
                    format!(
                        "QP {}: no receive buffer could be posted to its receive queue (RX pool at its limit of \
                         ms_async_rdma_receive_buffers = {}); raise it, lower ms_async_rdma_receive_queue_len, or \
                         enable ms_async_rdma_support_srq",
                        qp.qp_num(),
                        self.env.mem.rx.limit()
                    ),
                ));
            }
        }
        let c = &self.env.counters;
        c.created_queue_pair.fetch_add(1, Relaxed);
        c.active_queue_pair.fetch_add(1, Relaxed);
        self.reg.lock().qps.insert(qp.qp_num(), qp.clone());
        Ok(qp)
    }

    /// Destroys a QP that never got registered (creation failed half-way).
    fn discard(&self, qp: &Arc<QueuePair>) {
        let _ = qp.to_error();
        let (r, left) = qp.destroy();
        if let Err(e) = r {
            log::error!("{e}");
        }
        for c in left {
            self.reclaim_rx_chunk(c);
        }
        self.env.history.record(qp.qp_num(), crate::history::QpEvent::Destroyed, "creation failed");
        self.env.history.retire(qp.qp_num());
    }

    pub fn lookup(&self, qpn: u32) -> Option<Arc<QueuePair>> {
        self.reg.lock().qps.get(&qpn).cloned()
    }

    /// QPs not yet destroyed (live and draining).
    pub fn qp_count(&self) -> usize {
        self.reg.lock().qps.len()
    }
    /// QPs that went through `to_dead` and are not destroyed yet.
    pub fn dying_count(&self) -> usize {
        self.reg.lock().dying.len()
    }

    /// One iteration of Ceph's polling loop: poll the TX CQ, then the RX CQ
    /// (up to 32 each), handle what they mean, and when both were empty
    /// destroy drained QPs, retry owed receive buffers and read async events.
    /// Writes the completions the host must see into `out`: successful
    /// receives (`wr_id` is the RX chunk, now owned by the caller) and errors
    /// of live QPs (the QP is faulted).
    pub fn poll(&self, out: &mut [Wc]) -> Result<PollOutcome> {
        let mut g = self.poll_lock.lock();
        let mut o = self.poll_cqs(&mut g)?;
        o.tx_returned += self.tx_returned_in_arm.swap(0, Relaxed);
        if o.idle {
            if self.dying_count() > 0 {
                self.reap();
            }
            self.refill_srq();
            self.retry_backlog();
            let mut last = self.last_async_check.lock();
            if last.elapsed_us() >= self.env.ib.config().polling_us.max(100) as u64 {
                *last = crate::cycles::Stamp::now();
                drop(last);
                self.drain_async_events();
            }
        }
        o.delivered = self.take_ready(out);
        Ok(o)
    }

    fn take_ready(&self, out: &mut [Wc]) -> usize {
        let mut q = self.ready.lock();
        let n = q.len().min(out.len());
        for (dst, w) in out.iter_mut().zip(q.drain(..n)) {
            *dst = w;
        }
        n
    }

    /// Completions polled by the host itself from the TX CQ; returns the
    /// number of TX chunks given back.
    pub fn handle_tx_completions(&self, wcs: &[Wc]) -> usize {
        let _g = self.poll_lock.lock();
        self.handle_tx(wcs)
    }

    /// Completions polled by the host itself from the RX CQ; what the host
    /// must see comes out of the next `poll`.
    pub fn handle_rx_completions(&self, wcs: &[Wc]) {
        let _g = self.poll_lock.lock();
        self.handle_rx(wcs);
        // this host may never call `poll`, whose idle pass would refill
        self.refill_srq();
    }

    /// Completions waiting for the host.
    pub fn ready_count(&self) -> usize {
        self.ready.lock().len()
    }

    fn poll_cqs(&self, wc: &mut [Wc; MAX_COMPLETIONS]) -> Result<PollOutcome> {
        let tx_n = self.env.tx_cq.poll(&mut wc[..]).map_err(|e| e.context("TX CQ"))?;
        let tx_returned = if tx_n > 0 { self.handle_tx(&wc[..tx_n]) } else { 0 };
        let rx_n = self.env.rx_cq.poll(&mut wc[..]).map_err(|e| e.context("RX CQ"))?;
        if rx_n > 0 {
            self.handle_rx(&wc[..rx_n]);
        }
        Ok(PollOutcome { delivered: 0, tx_returned, idle: tx_n == 0 && rx_n == 0 })
    }

    /// Arms both CQs and polls them once more, catching completions that
    /// raced with arming. Returns true when something is ready (do not sleep).
    pub fn arm(&self) -> Result<bool> {
        let mut g = self.poll_lock.lock();
        if !self.ready.lock().is_empty() {
            return Ok(true);
        }
        self.env.tx_cq.rearm()?;
        self.env.rx_cq.rearm()?;
        let o = self.poll_cqs(&mut g)?;
        if o.tx_returned > 0 {
            self.tx_returned_in_arm.fetch_add(o.tx_returned, Relaxed);
        }
        Ok(!o.idle || !self.ready.lock().is_empty())
    }

    /// The fds a sleeping poller waits on: TX channel, RX channel, device async fd.
    pub fn wait_fds(&self) -> [i32; 3] {
        [self.env.tx_cq.fd(), self.env.rx_cq.fd(), self.env.ib.async_fd()]
    }

    /// Reads and handles pending device async events now.
    pub fn handle_async_events(&self) {
        self.drain_async_events();
    }

    /// `arm`, and if nothing is ready sleeps on both completion channels
    /// (and the device's async fd) for up to `timeout_ms` (-1 = forever).
    /// Returns true when something may be ready for `poll`, false on timeout;
    /// a signal that interrupts the sleep is `EINTR`.
    pub fn wait(&self, timeout_ms: i32) -> Result<bool> {
        if self.arm()? {
            return Ok(true);
        }
        self.env.counters.polling.store(0, Relaxed);
        let mut fds = [
            libc::pollfd { fd: self.env.tx_cq.fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: self.env.rx_cq.fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: self.env.ib.async_fd(), events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: fds is a valid array of 3 pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 3, timeout_ms) };
        self.env.counters.polling.store(1, Relaxed);
        if n < 0 {
            let e = crate::sys::errno();
            if e == libc::EINTR {
                return Err(Error::new(libc::EINTR, "interrupted by a signal before anything was ready (not a timeout)"));
            }
            return Err(Error::new(e, "poll() on the completion channels failed"));
        }
        self.consume_channel_events();
        if fds[2].revents != 0 {
            self.drain_async_events();
        }
        Ok(n > 0)
    }

    /// Takes pending completion-channel events (with batched acks).
    pub fn consume_channel_events(&self) {
        for cq in [&self.env.tx_cq, &self.env.rx_cq] {
            loop {
                match cq.get_event() {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        log::error!("{e}");
                        break;
                    }
                }
            }
        }
    }

    /// Ceph's counters, with the gauges computed now.
    pub fn counters(&self) -> CountersSnapshot {
        let c = &self.env.counters;
        let mem = &self.env.mem;
        let posted = self.env.rx_posted.load(Relaxed);
        let held = (mem.rx.in_use() as u64).saturating_sub(posted);
        c.inflight_tx_chunks.store(mem.tx.in_use() as u64, Relaxed);
        c.rx_bufs_in_use.store(held, Relaxed);
        c.rx_bufs_total.store(mem.rx.allocated(), Relaxed);
        c.snapshot()
    }

    pub fn history_json(&self) -> String {
        self.env.history.to_json()
    }

    /// Tears everything down: every QP goes through `to_dead`, the drain runs
    /// for up to `timeout`, whatever is left is destroyed directly.
    pub fn shutdown(&self, timeout: std::time::Duration) {
        let live: Vec<_> = self.reg.lock().qps.values().cloned().collect();
        for qp in live {
            if let Err(e) = self.to_dead(&qp) {
                log::warn!("shutdown: {e}");
            }
        }
        let start = Instant::now();
        let mut wc = [Wc::default(); MAX_COMPLETIONS];
        while self.qp_count() > 0 && start.elapsed() < timeout {
            match self.poll(&mut wc) {
                Ok(o) => {
                    self.release_delivered(&wc[..o.delivered]);
                    if o.idle {
                        std::thread::sleep(std::time::Duration::from_micros(200));
                    }
                }
                Err(e) => {
                    log::error!("shutdown: {e}");
                    break;
                }
            }
        }
        let left: Vec<_> = self.reg.lock().qps.drain().map(|(_, q)| q).collect();
        self.reg.lock().dying.clear();
        for qp in left {
            log::warn!("shutdown: QP {} did not drain in {:?}; destroying it anyway", qp.qp_num(), timeout);
            self.destroy_qp(&qp);
        }
        let mut rest = Vec::new();
        rest.extend(self.ready.lock().drain(..));
        self.release_delivered(&rest);
    }

    /// Gives the RX chunks of delivered receive completions back to the pool.
    pub fn release_delivered(&self, wcs: &[Wc]) {
        for w in wcs {
            if w.status == crate::verbs::cq::WC_SUCCESS {
                self.release_rx_wr_id(w.wr_id);
            }
        }
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.shutdown(std::time::Duration::from_secs(2));
    }
}
