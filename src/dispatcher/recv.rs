//! Receive buffers: posting RX-pool chunks to the SRQ or to a QP's own RQ,
//! replenishing them (one per completion on a QP's own queue, in batches on
//! the SRQ), and the backlog of buffers that could not be posted (Ceph's
//! `post_backlog`, with `backlog -= posted`).

use super::Dispatcher;
use crate::error::{Error, Result};
use crate::mem::ChunkRef;
use crate::qp::QueuePair;
use crate::verbs::RecvWr;
use std::sync::atomic::Ordering::*;

impl Dispatcher {
    /// Posts up to `n` RX-pool chunks: to the SRQ when there is one (`qp` is
    /// ignored), else to `qp`'s receive queue. Returns how many were posted;
    /// fewer than `n` (possibly 0) when the RX pool is at its limit. A verbs
    /// failure is an error carrying the provider's return value; the chunks it
    /// refused go back to the pool.
    pub fn post_rx(&self, n: u32, qp: Option<&QueuePair>) -> Result<usize> {
        if self.env.srq.is_none() && qp.is_none() {
            return Err(Error::inval("post_rx: no SRQ (ms_async_rdma_support_srq = false), so a QP is required"));
        }
        // A receive queue (SRQ or RQ) holds rx_queue_len entries: more can never be posted.
        let cap = self.env.ib.rx_queue_len();
        if n > cap {
            return Err(Error::inval(format!(
                "post_rx: n is {n}: more than a receive queue holds (ms_async_rdma_receive_queue_len = {cap})"
            )));
        }
        let rx = &self.env.mem.rx;
        // The dispatcher's scratch list of chunks (kept, so nothing is allocated per post).
        let mut chunks = self.rx_scratch.lock();
        chunks.clear();
        let qpn = if self.env.srq.is_none() { qp.map_or(0, |q| q.qp_num()) } else { crate::qp::SRQ_OWNER };
        for i in 0..n {
            match rx.get() {
                Ok(c) => {
                    c.reset_read();
                    c.set_qp(qpn);
                    if let Err(e) = rx.mark_posted(c) {
                        log::error!("post_rx: {e}");
                        break;
                    }
                    chunks.push(c);
                }
                Err(e) => {
                    log::warn!("out of receive buffers: wanted {n}, got {i}: {e}");
                    break;
                }
            }
        }
        if chunks.is_empty() {
            return Ok(0);
        }
        let wrs = chunks.iter().map(|c| RecvWr { wr_id: c.wr_id(), addr: c.buffer() as u64, len: c.capacity(), lkey: c.lkey() });
        let r = match (&self.env.srq, qp) {
            (Some(srq), _) => srq.post_recv(wrs),
            (None, Some(q)) => q.post_own_recv(wrs),
            (None, None) => unreachable!("checked above"),
        };
        match r {
            Ok(()) => {
                self.env.rx_posted.fetch_add(chunks.len() as u64, Relaxed);
                Ok(chunks.len())
            }
            Err(pe) => {
                self.env.rx_posted.fetch_add(pe.posted as u64, Relaxed);
                self.env.counters.rx_post_errors.fetch_add(1, Relaxed);
                for &c in &chunks[pe.posted..] {
                    self.reclaim_rx_chunk(c);
                }
                let target = match qp {
                    Some(q) if self.env.srq.is_none() => format!("QP {}'s receive queue", q.qp_num()),
                    _ => "the SRQ".to_string(),
                };
                Err(pe.err.context(format_args!("posting receive buffers to {target}: {} of {} posted", pe.posted, chunks.len())))
            }
        }
    }

    /// Puts one buffer back (plus whatever is owed) on a QP's own receive
    /// queue after a receive completion (the SRQ's: `owe_srq`).
    pub(super) fn replenish(&self, qp: &QueuePair) {
        let prev = qp.rx_backlog.swap(0, AcqRel) as u64;
        self.post_owed(Some(qp), prev, prev + 1);
    }

    /// Posts `owed` buffers; what could not be posted becomes the backlog.
    /// `prev` is the backlog this replaces (for the gauge).
    fn post_owed(&self, qp: Option<&QueuePair>, prev: u64, owed: u64) {
        let posted = match self.post_rx(owed.min(self.env.ib.rx_queue_len() as u64) as u32, qp) {
            Ok(n) => n as u64,
            Err(e) => {
                log::error!("{e}");
                0
            }
        };
        let still = owed - posted.min(owed);
        match qp {
            None => self.env.srq_backlog.fetch_add(still, AcqRel),
            Some(q) => q.rx_backlog.fetch_add(still as u32, AcqRel) as u64,
        };
        let g = &self.env.counters.rx_post_backlog;
        if still > prev {
            g.fetch_add(still - prev, Relaxed);
        } else if prev > still {
            let _ = g.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(prev - still)));
        }
    }

    /// Records `n` SRQ entries used by receive completions. They are posted
    /// back in one call once `srq_batch` are owed, or by the next idle poll
    /// (`refill_srq`), instead of one ibv_post_srq_recv per completion on the
    /// way to the host (on rxe that post was a third of a delivery's cost).
    /// The SRQ is at most a batch short: an eighth of its entries, at most
    /// 32.
    pub(super) fn owe_srq(&self, n: u64) {
        if self.srq_deferred.fetch_add(n, AcqRel) + n >= self.srq_batch {
            self.refill_srq();
        }
    }

    /// Posts the SRQ entries `owe_srq` recorded (with the SRQ's backlog).
    pub(super) fn refill_srq(&self) {
        let n = self.srq_deferred.swap(0, AcqRel);
        if n > 0 {
            let prev = self.env.srq_backlog.swap(0, AcqRel);
            self.post_owed(None, prev, prev + n);
        }
    }

    /// Retries owed buffers (called when idle; cheap when nothing is owed).
    pub(super) fn retry_backlog(&self) {
        if self.env.counters.rx_post_backlog.load(Relaxed) == 0 {
            return;
        }
        if self.env.srq.is_some() {
            let owed = self.env.srq_backlog.swap(0, AcqRel);
            if owed > 0 {
                self.post_owed(None, owed, owed);
            }
        } else {
            let qps: Vec<_> = self.reg.lock().qps.values().filter(|q| !q.is_dead()).cloned().collect();
            for q in qps {
                let owed = q.rx_backlog.swap(0, AcqRel) as u64;
                if owed > 0 {
                    self.post_owed(Some(&q), owed, owed);
                }
            }
        }
    }

    /// Returns an RX chunk to the pool (a failure is logged).
    pub(crate) fn release_rx_chunk(&self, c: ChunkRef) {
        if let Err(e) = self.env.mem.rx.release(c) {
            log::error!("returning an RX chunk: {e}");
        }
    }

    /// Returns an RX chunk that is still posted to a receive queue that is
    /// gone (or refused it) to the pool (a failure is logged).
    pub(crate) fn reclaim_rx_chunk(&self, c: ChunkRef) {
        if let Err(e) = self.env.mem.rx.reclaim(c) {
            log::error!("reclaiming a posted RX chunk: {e}");
        }
    }

    /// Returns an RX chunk named by a completion's `wr_id` (checked) to the
    /// pool; a `wr_id` that is not an RX chunk is logged.
    pub(crate) fn release_rx_wr_id(&self, wr_id: u64) {
        if let Err(e) = self.env.mem.rx.release_wr_id(wr_id) {
            log::error!("returning an RX chunk: {e}");
        }
    }

    /// Returns an RX chunk the layer above read (or dropped) for `qp`: the
    /// QP's cap on held buffers is credited, and a refill of its RQ withheld
    /// at the cap is posted now.
    pub fn release_held_rx(&self, qp: &QueuePair, c: ChunkRef) {
        self.release_rx_chunk(c);
        if qp.rx_released() && !qp.is_dead() && self.env.srq.is_none() {
            self.replenish(qp);
        }
    }

    /// Returns one RX chunk the host finished reading.
    pub fn release_rx(&self, chunk: ChunkRef) -> Result<()> {
        self.env.mem.rx.release(chunk)
    }
}
