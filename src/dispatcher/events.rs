//! Device async events (reference §4.6), handled without Ceph's NULL
//! dereference: an event for an unknown QP is logged, nothing more.

use super::Dispatcher;
use crate::error::{Error, Result};
use crate::verbs::event::kind;
use crate::verbs::AsyncEvent;
use std::sync::atomic::Ordering::Relaxed;

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
                            q.set_fault(Error::new(
                                libc::ECONNRESET,
                                format!("QP {}: entered the error state on its own (last WQE reached)", ev.qp_num),
                            ));
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
                        q.set_fault(Error::new(libc::EIO, format!("QP {}: {} (device reported the QP broken)", ev.qp_num, ev.name())));
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
            }
            kind::PORT_ERR => log::warn!("{} on port {}", ev.name(), ev.port),
            kind::GID_CHANGE => log::warn!("{} on port {}: the GID this process advertises may be stale", ev.name(), ev.port),
            _ => log::info!("{} (qp {} port {})", ev.name(), ev.qp_num, ev.port),
        }
        let mut q = self.events.lock();
        if q.len() >= EVENT_QUEUE {
            q.pop_front();
        }
        q.push_back(ev);
    }

    /// The next async event, after handling it (reads the device's fd first).
    pub fn next_async_event(&self) -> Result<Option<AsyncEvent>> {
        self.drain_async_events();
        Ok(self.events.lock().pop_front())
    }
}
