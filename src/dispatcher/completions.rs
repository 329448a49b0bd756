//! Meaning of each completion (reference §4.2, §4.3), without Ceph's aborts:
//! an unknown wr_id is logged and counted, never fatal.

use super::Dispatcher;
use crate::error::Error;
use crate::history::QpEvent;
use crate::qp::{QueuePair, RxCap, BEACON_WRID, FIN_WRID_TAG};
use crate::verbs::cq::{WC_GENERAL_ERR, WC_OPCODE_RECV, WC_RETRY_EXC_ERR, WC_SUCCESS, WC_WR_FLUSH_ERR};
use crate::verbs::{wc_status_name, Wc};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

fn wc_error(qp: u32, dir: &str, w: &Wc) -> Error {
    let hint = match w.status {
        WC_RETRY_EXC_ERR => ": the peer stopped acknowledging (peer down, link broken, or its QP is in error)",
        WC_WR_FLUSH_ERR => ": the QP is in the error state",
        1 => ": a SEND was larger than the receive buffer: ms_async_rdma_buffer_size differs between the peers",
        9 => ": the peer rejected the request (receive buffer too small: ms_async_rdma_buffer_size differs?)",
        _ => "",
    };
    Error::new(
        libc::ECONNRESET,
        format!(
            "QP {qp}: {dir} completion failed with {} (status {}, vendor_err {:#x}){hint}",
            wc_status_name(w.status),
            w.status,
            w.vendor_err
        ),
    )
}

/// Name of a receive-side `ibv_wc_opcode`.
fn rx_opcode_name(op: u32) -> &'static str {
    match op {
        128 => "IBV_WC_RECV",
        129 => "IBV_WC_RECV_RDMA_WITH_IMM",
        130 => "IBV_WC_TM_ADD",
        131 => "IBV_WC_TM_DEL",
        132 => "IBV_WC_TM_SYNC",
        133 => "IBV_WC_TM_RECV",
        134 => "IBV_WC_TM_NO_TAG",
        _ => "an unknown opcode",
    }
}

/// A successful receive completion that is not a SEND's (Ceph's wire
/// protocol uses SENDs only): the peer broke the protocol.
fn wrong_opcode(qp: u32, w: &Wc) -> Error {
    Error::new(
        libc::EPROTO,
        format!(
            "QP {qp}: receive completion with opcode {} ({}, {} bytes): only SENDs (IBV_WC_RECV) carry data in \
             Ceph's RDMA protocol; the peer used RDMA WRITE with immediate or another non-SEND operation",
            rx_opcode_name(w.opcode),
            w.opcode,
            w.byte_len
        ),
    )
}

impl Dispatcher {
    /// Faults a live QP and queues the completion for the host.
    fn fault_live(&self, qp: &QueuePair, w: &Wc, e: Error) {
        if qp.is_dead() {
            return;
        }
        qp.set_fault(e);
        self.ready.lock().push_back(*w);
    }

    /// TX completions: beacons retire QPs, chunks go back to the TX pool,
    /// errors fault live QPs. Returns the number of chunks returned.
    pub(super) fn handle_tx(&self, wcs: &[Wc]) -> usize {
        let c = &self.env.counters;
        c.tx_total_wc.fetch_add(wcs.len() as u64, Relaxed);
        let mut n = 0;
        for w in wcs {
            let qp = self.lookup(w.qp_num);
            if w.wr_id == BEACON_WRID {
                match &qp {
                    Some(qp) => {
                        qp.set_beacon(crate::qp::Beacon::Seen);
                        self.env.history.record(w.qp_num, QpEvent::BeaconSeen, wc_status_name(w.status));
                        log::debug!("QP {}: beacon completed ({}); the SQ is drained", w.qp_num, wc_status_name(w.status));
                    }
                    None => log::debug!("beacon of the already destroyed QP {}", w.qp_num),
                }
                continue;
            }
            if let Some(qp) = &qp {
                qp.tx_completed();
            }
            if w.status != WC_SUCCESS {
                match w.status {
                    WC_RETRY_EXC_ERR => {
                        c.tx_retry_errors.fetch_add(1, Relaxed);
                    }
                    WC_WR_FLUSH_ERR => {
                        c.tx_wr_flush_errors.fetch_add(1, Relaxed);
                    }
                    _ => {}
                }
                c.tx_total_wc_errors.fetch_add(1, Relaxed);
                match &qp {
                    Some(q) if q.is_dead() => {
                        log::debug!("QP {}: outstanding send flushed ({}) while draining", w.qp_num, wc_status_name(w.status))
                    }
                    Some(q) => self.fault_live(q, w, wc_error(w.qp_num, "send", w)),
                    None => log::warn!("send completion {} for unknown QP {}", wc_status_name(w.status), w.qp_num),
                }
            }
            if let Some(ch) = self.env.mem.tx.from_wr_id(w.wr_id) {
                match self.env.mem.tx.sent(ch) {
                    Ok(()) => n += 1,
                    Err(e) => log::error!("returning a TX chunk after completion: {e}"),
                }
            } else if w.wr_id & !0xFF_FFFF == FIN_WRID_TAG {
                log::debug!("QP {}: close SEND completed ({})", w.qp_num, wc_status_name(w.status));
            } else {
                log::error!(
                    "send completion on QP {} with wr_id {:#x} that is neither a TX chunk nor a close SEND nor the \
                     beacon (a work request posted outside ibstack?); ignored",
                    w.qp_num,
                    w.wr_id
                );
            }
        }
        n
    }

    /// RX completions: deliver successful receives of live QPs (replenishing
    /// one buffer each; with the SRQ, in batches), return everything else to
    /// the pool, fault live QPs on errors.
    pub(super) fn handle_rx(&self, wcs: &[Wc]) {
        let c = &self.env.counters;
        c.rx_total_wc.fetch_add(wcs.len() as u64, Relaxed);
        let srq = self.env.srq.is_some();
        // SRQ entries the completions below used: put back together (`owe_srq`).
        let mut used = 0;
        for w in wcs {
            let Some(chunk) = self.env.mem.rx.from_wr_id(w.wr_id) else {
                log::error!("receive completion on QP {} with wr_id {:#x} that is not an RX chunk; ignored", w.qp_num, w.wr_id);
                continue;
            };
            // Posted → held: a second completion for the same buffer is refused here.
            if let Err(e) = self.env.mem.rx.take_posted(chunk) {
                log::error!("receive completion on QP {} ({}): {e}; a duplicate or forged completion, ignored", w.qp_num, wc_status_name(w.status));
                continue;
            }
            self.env.rx_posted.fetch_sub(1, Relaxed);
            let qp = self.lookup(w.qp_num);
            if let (false, Some(q)) = (srq, &qp) {
                q.rx_completed(chunk);
            }
            chunk.set_qp(0);
            used += 1;
            let live: Option<&Arc<QueuePair>> = qp.as_ref().filter(|q| !q.is_dead());
            if w.status == WC_SUCCESS && w.opcode == WC_OPCODE_RECV {
                let Some(q) = live else {
                    log::debug!("receive for dead or unknown QP {}: buffer returned", w.qp_num);
                    self.release_rx_chunk(chunk);
                    continue;
                };
                match q.rx_delivered() {
                    RxCap::Within if !srq => self.replenish(q),
                    RxCap::Within => {}
                    RxCap::Withhold { first } if !srq => {
                        if first {
                            log::info!(
                                "QP {}: the connection holds {} received buffers unread (ibstack_max_rx_per_conn); its receive \
                                 queue is refilled only as the application reads, so its sender waits (RNR retries)",
                                w.qp_num,
                                q.rx_cap()
                            );
                        }
                    }
                    RxCap::Withhold { .. } => {
                        // The SRQ is shared: holding more would take buffers from every other connection.
                        q.rx_undeliver();
                        c.rx_total_wc_errors.fetch_add(1, Relaxed);
                        self.release_rx_chunk(chunk);
                        let e = Error::new(
                            libc::ENOBUFS,
                            format!(
                                "QP {}: the peer sent more than {} buffers the application has not read \
                                 (ibstack_max_rx_per_conn); with the shared receive queue one connection must not \
                                 take the pool of all: read faster, raise the cap, or set \
                                 ms_async_rdma_support_srq = false for per-connection backpressure",
                                w.qp_num,
                                q.rx_cap()
                            ),
                        );
                        let bad = Wc { status: WC_GENERAL_ERR, ..*w };
                        self.fault_live(q, &bad, e);
                        continue;
                    }
                }
                chunk.prepare_read(w.byte_len);
                c.rx_chunks.fetch_add(1, Relaxed);
                c.rx_bytes.fetch_add(w.byte_len as u64, Relaxed);
                if w.byte_len == 0 {
                    c.rx_fin.fetch_add(1, Relaxed);
                    self.env.history.record(w.qp_num, QpEvent::Fin, "peer's close SEND received");
                } else if !q.first_recv_seen.swap(true, Relaxed) {
                    self.env.history.record_once(w.qp_num, QpEvent::FirstRecv, "");
                }
                self.ready.lock().push_back(*w);
                continue;
            }
            c.rx_total_wc_errors.fetch_add(1, Relaxed);
            // The buffer goes back here, once; the host only learns of the fault.
            self.release_rx_chunk(chunk);
            match live {
                Some(q) if w.status == WC_SUCCESS => {
                    // Handed to the host as an error: status 0 would read as data.
                    let bad = Wc { status: WC_GENERAL_ERR, ..*w };
                    self.fault_live(q, &bad, wrong_opcode(w.qp_num, w))
                }
                Some(q) => self.fault_live(q, w, wc_error(w.qp_num, "receive", w)),
                None => log::debug!("receive flushed ({}) on dead QP {}", wc_status_name(w.status), w.qp_num),
            }
        }
        if srq && used > 0 {
            self.owe_srq(used);
        }
    }
}
