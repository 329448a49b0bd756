//! Device async events (reference §4.6), handled without Ceph's NULL
//! dereference: an event for an unknown QP is logged, nothing more.

use super::Dispatcher;
use crate::error::{Error, Result};
use crate::verbs::event::kind;
use crate::verbs::AsyncEvent;
use crate::qp::QueuePair;
use std::sync::atomic::Ordering::{AcqRel, Relaxed, Release};

/// Events kept for `next_async_event` before the oldest are dropped.
const EVENT_QUEUE: usize = 1024;

impl Dispatcher {
    /// Reads and handles every pending async event.
    pub(super) fn drain_async_events(&self) {
        loop {
            match self.env.ib.context().next_async_event() {
                Ok(Some(ev)) => self.on_async_event(ev),
                Ok(None) => break,
                Err(e) => {
                    log::error!("{e}");
                    break;
                }
            }
        }
    }

    fn on_async_event(&self, ev: AsyncEvent) {
        let c = &self.env.counters;
        c.total_async_events.fetch_add(1, Relaxed);
        let qp = if ev.qp_num != 0 { self.lookup(ev.qp_num) } else { None };
        match ev.kind {
            kind::QP_LAST_WQE_REACHED => {
                c.async_last_wqe_events.fetch_add(1, Relaxed);
                match &qp {
                    Some(q) => {
                        q.set_last_wqe();
                        if !q.is_dead() {
                            self.async_fault(
                                q,
                                Error::new(
                                    libc::ECONNRESET,
                                    format!("QP {}: entered the error state on its own (last WQE reached)", ev.qp_num),
                                ),
                            );
                        }
                    }
                    None => log::debug!("{} for unknown QP {}", ev.name(), ev.qp_num),
                }
            }
            kind::QP_FATAL | kind::QP_REQ_ERR | kind::QP_ACCESS_ERR => {
                if ev.kind == kind::QP_FATAL {
                    c.async_qp_fatal.fetch_add(1, Relaxed);
                }
                match &qp {
                    Some(q) => {
                        let state = q.query_state().map(|s| s.name()).unwrap_or("unknown");
                        log::error!("{} on QP {} (state {state})", ev.name(), ev.qp_num);
                        self.async_fault(q, Error::new(libc::EIO, format!("QP {}: {} (device reported the QP broken)", ev.qp_num, ev.name())));
                    }
                    None => log::error!("{} on QP {} which ibstack does not know", ev.name(), ev.qp_num),
                }
            }
            kind::CQ_ERR => {
                c.async_cq_err.fetch_add(1, Relaxed);
                log::error!("IBV_EVENT_CQ_ERR: a completion queue overran (raise ibstack_cq_depth); completions were lost");
            }
            kind::DEVICE_FATAL => {
                c.async_device_fatal.fetch_add(1, Relaxed);
                log::error!("IBV_EVENT_DEVICE_FATAL on {}: the device must be reopened; every QP is unusable", self.env.ib.device_name());
                self.fault_every_qp(Error::new(
                    libc::EIO,
                    format!("IBV_EVENT_DEVICE_FATAL on {}: the device must be reopened; every QP is unusable", self.env.ib.device_name()),
                ));
            }
            kind::PORT_ERR if ev.port == self.env.ib.port_num() as u32 => {
                log::error!("{} on {} port {}: the link went down", ev.name(), self.env.ib.device_name(), ev.port);
                self.fault_every_qp(Error::new(
                    libc::ENETDOWN,
                    format!("IBV_EVENT_PORT_ERR on {} port {}: the link went down; every QP on it is broken", self.env.ib.device_name(), ev.port),
                ));
            }
            kind::PORT_ERR => log::warn!("{} on port {} (not the port in use)", ev.name(), ev.port),
            kind::GID_CHANGE => log::warn!("{} on port {}: the GID this process advertises may be stale", ev.name(), ev.port),
            _ => log::info!("{} (qp {} port {})", ev.name(), ev.qp_num, ev.port),
        }
        let mut q = self.events.lock();
        if q.len() >= EVENT_QUEUE {
            q.pop_front();
        }
        q.push_back(ev);
    }

    /// Faults a QP for an async event and records it for the layer above.
    fn async_fault(&self, q: &QueuePair, e: Error) {
        q.set_fault(e.clone());
        self.async_faults.lock().push((q.qp_num(), e));
        self.async_faults_pending.store(true, Release);
    }

    /// A device-wide failure: every live QP is faulted; recorded with QP number 0.
    fn fault_every_qp(&self, e: Error) {
        let live: Vec<_> = self.reg.lock().qps.values().filter(|q| !q.is_dead()).cloned().collect();
        for q in live {
            q.set_fault(e.clone());
        }
        self.async_faults.lock().push((0, e));
        self.async_faults_pending.store(true, Release);
    }

    /// Moves the QP faults async events caused since the last call into
    /// `out` (QP number, or 0 = every QP of the device); cheap when none.
    pub fn take_async_faults(&self, out: &mut Vec<(u32, Error)>) {
        if self.async_faults_pending.swap(false, AcqRel) {
            out.append(&mut self.async_faults.lock());
        }
    }

    /// Handles `ev` exactly as if the device had reported it (fault
    /// injection for tests: QP_FATAL, DEVICE_FATAL, PORT_ERR cannot be
    /// provoked on Soft-RoCE). It is queued for `next_async_event` too.
    pub fn inject_async_event(&self, ev: AsyncEvent) {
        log::info!("injected async event {} (qp {} port {})", ev.name(), ev.qp_num, ev.port);
        self.on_async_event(ev);
    }

    /// The next async event, after handling it (reads the device's fd first).
    pub fn next_async_event(&self) -> Result<Option<AsyncEvent>> {
        self.drain_async_events();
        Ok(self.events.lock().pop_front())
    }
}
