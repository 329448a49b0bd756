//! Retiring QPs (reference §4.5, with the port notes of §6.a): `to_dead`
//! moves a QP to ERR and posts the beacon; the QP is destroyed only when its
//! drain is complete, in an iteration where both CQs were empty.

use super::Dispatcher;
use crate::error::Result;
use crate::history::QpEvent;
use crate::qp::{Beacon, QueuePair};
use crate::verbs::QpState;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// A dying QP that has not drained after this long is reported (once).
const STUCK_AFTER: Duration = Duration::from_secs(30);

impl Dispatcher {
    /// Ceph's `to_dead` + `schedule_qp_destroy`: ERR first, then the beacon
    /// into the reserved SQ slot. A QP that never reached RTS gets no beacon
    /// (nothing can be outstanding on its SQ). The QP is destroyed later by
    /// `poll`, once drained; this call never destroys it directly.
    /// Errors (the QP is retired anyway): the modify or the beacon post failed,
    /// with the verbs return value.
    pub fn to_dead(&self, qp: &Arc<QueuePair>) -> Result<()> {
        if !qp.mark_dead() {
            return Ok(());
        }
        let c = &self.env.counters;
        self.env.history.record(qp.qp_num(), QpEvent::ToDead, qp.cached_state().name());
        let mut result = Ok(());
        if let Err(e) = qp.to_error() {
            log::error!("to_dead: {e}; the QP will be destroyed once its sends are accounted for");
            qp.set_beacon(Beacon::Failed);
            result = Err(e);
        } else if qp.highest_state() < QpState::Rts {
            qp.set_beacon(Beacon::Skipped);
            c.beacons_skipped.fetch_add(1, Relaxed);
        } else {
            match qp.post_beacon() {
                Ok(()) => {
                    qp.set_beacon(Beacon::Posted);
                    c.beacons_posted.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    c.tx_failed_post.fetch_add(1, Relaxed);
                    let e = qp.fail(e.context(format_args!(
                        "QP {}: failed to post the beacon (the error is ibv_post_send's return value); draining \
                         by counting outstanding sends instead",
                        qp.qp_num()
                    )));
                    log::error!("{e}");
                    qp.set_beacon(Beacon::Failed);
                    result = Err(e);
                }
            }
        }
        self.reg.lock().dying.push(qp.clone());
        result
    }

    fn drained(&self, qp: &QueuePair) -> bool {
        let sq_done = match qp.beacon() {
            Beacon::Seen => true,
            Beacon::Posted => false,
            Beacon::Skipped | Beacon::Failed | Beacon::None => qp.tx_outstanding() == 0,
        };
        sq_done && (self.env.srq.is_some() || qp.rx_posted() == 0)
    }

    /// Destroys every dying QP whose drain is complete. Call only when both
    /// CQs were just found empty.
    pub(super) fn reap(&self) {
        let dying: Vec<Arc<QueuePair>> = {
            let reg = self.reg.lock();
            if reg.dying.is_empty() {
                return;
            }
            reg.dying.clone()
        };
        for qp in dying {
            if self.drained(&qp) {
                self.destroy_qp(&qp);
            } else if let Some(t) = qp.dead_for() {
                if t >= STUCK_AFTER && t < STUCK_AFTER + Duration::from_millis(50) {
                    log::warn!(
                        "QP {} has been draining for {t:?}: beacon {:?}, last WQE event {}, {} send(s) outstanding, \
                         {} receive buffer(s) still posted to its RQ",
                        qp.qp_num(),
                        qp.beacon(),
                        if qp.last_wqe_reached() { "seen" } else { "not seen" },
                        qp.tx_outstanding(),
                        qp.rx_posted()
                    );
                }
            }
        }
    }

    /// `ibv_destroy_qp` (a failure is logged and counted), return the RQ's
    /// leftover chunks, unregister, close the history.
    pub(super) fn destroy_qp(&self, qp: &Arc<QueuePair>) {
        let qpn = qp.qp_num();
        {
            let mut reg = self.reg.lock();
            reg.dying.retain(|q| !Arc::ptr_eq(q, qp));
            if reg.qps.get(&qpn).is_some_and(|q| Arc::ptr_eq(q, qp)) {
                reg.qps.remove(&qpn);
            }
        }
        if qp.is_destroyed() {
            return;
        }
        let c = &self.env.counters;
        let (r, left) = qp.destroy();
        match r {
            Ok(()) => log::debug!("QP {qpn} destroyed"),
            Err(e) => {
                c.qp_destroy_errors.fetch_add(1, Relaxed);
                log::error!("QP {qpn}: {e}");
            }
        }
        if !left.is_empty() {
            let _ = self.env.rx_posted.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(left.len() as u64)));
            for c in left {
                self.reclaim_rx_chunk(c);
            }
        }
        c.qp_destroyed.fetch_add(1, Relaxed);
        let _ = c.active_queue_pair.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
        self.env.history.record(qpn, QpEvent::Destroyed, "");
        self.env.history.retire(qpn);
    }
}
