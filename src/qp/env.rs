//! `Env`: what the queue pairs of one dispatcher share — the device, the
//! pools, both completion queues, the SRQ, the counters and the history.

use crate::counters::Counters;
use crate::history::History;
use crate::ib::Ib;
use crate::mem::MemoryManager;
use crate::verbs::{Cq, Srq};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Owner tag of RX chunks posted to the SRQ (a QP number cannot be this).
pub const SRQ_OWNER: u32 = u32::MAX;

/// What the dispatcher's QPs share: device, pools, CQs, SRQ, counters, history.
pub struct Env {
    pub ib: Arc<Ib>,
    pub mem: Arc<MemoryManager>,
    pub tx_cq: Arc<Cq>,
    pub rx_cq: Arc<Cq>,
    pub srq: Option<Arc<Srq>>,
    pub counters: Arc<Counters>,
    pub history: Arc<History>,
    /// Receive buffers currently posted (SRQ and every RQ).
    pub(crate) rx_posted: AtomicU64,
    /// Receive buffers owed to the SRQ.
    pub(crate) srq_backlog: AtomicU64,
}

impl Drop for Env {
    fn drop(&mut self) {
        // No QP is left (each holds this Env): the buffers still posted to
        // the SRQ go back to the pool before the SRQ is destroyed. Only the
        // posted ones: a chunk someone holds keeps its owner even when its
        // QP field reads SRQ_OWNER (ibstack_chunk_set_qp lets a host write it).
        if self.srq.is_some() {
            for c in self.mem.rx.in_use_where(|c| c.qp() == SRQ_OWNER && c.is_posted()) {
                if let Err(e) = self.mem.rx.reclaim(c) {
                    log::error!("returning an SRQ buffer at teardown: {e}");
                }
            }
        }
    }
}

