//! Device async events (`ibv_get_async_event` on the context's non-blocking fd).

use super::Context;
use crate::sys::errno;
use crate::error::{Error, Result};
use rdma_sys as sys;

/// `enum ibv_event_type` values used by the library.
pub mod kind {
    pub const CQ_ERR: u32 = 0;
    pub const QP_FATAL: u32 = 1;
    pub const QP_REQ_ERR: u32 = 2;
    pub const QP_ACCESS_ERR: u32 = 3;
    pub const DEVICE_FATAL: u32 = 8;
    pub const PORT_ACTIVE: u32 = 9;
    pub const PORT_ERR: u32 = 10;
    pub const SRQ_ERR: u32 = 14;
    pub const SRQ_LIMIT_REACHED: u32 = 15;
    pub const QP_LAST_WQE_REACHED: u32 = 16;
    pub const GID_CHANGE: u32 = 18;
}

const NAMES: [&str; 20] = [
    "IBV_EVENT_CQ_ERR",
    "IBV_EVENT_QP_FATAL",
    "IBV_EVENT_QP_REQ_ERR",
    "IBV_EVENT_QP_ACCESS_ERR",
    "IBV_EVENT_COMM_EST",
    "IBV_EVENT_SQ_DRAINED",
    "IBV_EVENT_PATH_MIG",
    "IBV_EVENT_PATH_MIG_ERR",
    "IBV_EVENT_DEVICE_FATAL",
    "IBV_EVENT_PORT_ACTIVE",
    "IBV_EVENT_PORT_ERR",
    "IBV_EVENT_LID_CHANGE",
    "IBV_EVENT_PKEY_CHANGE",
    "IBV_EVENT_SM_CHANGE",
    "IBV_EVENT_SRQ_ERR",
    "IBV_EVENT_SRQ_LIMIT_REACHED",
    "IBV_EVENT_QP_LAST_WQE_REACHED",
    "IBV_EVENT_CLIENT_REREGISTER",
    "IBV_EVENT_GID_CHANGE",
    "IBV_EVENT_WQ_FATAL",
];

/// Name of an async event type ("IBV_EVENT_QP_FATAL", …).
pub fn event_name(kind: u32) -> &'static str {
    NAMES.get(kind as usize).copied().unwrap_or("IBV_EVENT_UNKNOWN")
}

/// One async event, copied out and already acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncEvent {
    pub kind: u32,
    /// QP number for QP events, 0 otherwise.
    pub qp_num: u32,
    /// Port number for port events, 0 otherwise.
    pub port: u32,
}

impl AsyncEvent {
    pub fn name(&self) -> &'static str {
        event_name(self.kind)
    }
}

fn is_qp_event(kind: u32) -> bool {
    matches!(kind, 1..=7 | 16)
}

fn is_port_event(kind: u32) -> bool {
    matches!(kind, 9..=13 | 17 | 18)
}

impl Context {
    /// Takes one pending async event, acknowledging it; `Ok(None)` when none
    /// is pending (the fd is non-blocking).
    pub fn next_async_event(&self) -> Result<Option<AsyncEvent>> {
        // SAFETY: ibv_async_event is plain data; zeroed is valid storage.
        let mut ev: std::mem::MaybeUninit<sys::ibv_async_event> = std::mem::MaybeUninit::zeroed();
        // SAFETY: ctx is open. Returns -1 + errno.
        if unsafe { sys::ibv_get_async_event(self.as_ptr(), ev.as_mut_ptr()) } != 0 {
            let e = errno();
            if e == libc::EAGAIN || e == libc::EINTR {
                return Ok(None);
            }
            return Err(Error::new(e, format!("ibv_get_async_event failed: {}", crate::errno::errno_cstr(e).to_string_lossy())));
        }
        let p = ev.as_mut_ptr();
        // The type field is an enum in rdma-sys; read it as the raw u32 the
        // kernel wrote so an unknown value is not undefined behaviour.
        // SAFETY: the field lies inside the struct the call filled.
        let kind = unsafe { std::ptr::addr_of!((*p).event_type).cast::<u32>().read() };
        let mut out = AsyncEvent { kind, qp_num: 0, port: 0 };
        if is_qp_event(kind) {
            // SAFETY: QP events carry a live QP pointer until acknowledged.
            let qp = unsafe { (*p).element.qp };
            if !qp.is_null() {
                out.qp_num = unsafe { (*qp).qp_num };
            }
        } else if is_port_event(kind) {
            // SAFETY: port events carry the port number.
            out.port = unsafe { (*p).element.port_num } as u32;
        }
        // SAFETY: the event was returned by ibv_get_async_event.
        unsafe { sys::ibv_ack_async_event(p) };
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(event_name(kind::QP_LAST_WQE_REACHED), "IBV_EVENT_QP_LAST_WQE_REACHED");
        assert_eq!(event_name(kind::DEVICE_FATAL), "IBV_EVENT_DEVICE_FATAL");
        assert_eq!(event_name(77), "IBV_EVENT_UNKNOWN");
        assert!(is_qp_event(kind::QP_FATAL) && is_qp_event(kind::QP_LAST_WQE_REACHED));
        assert!(!is_qp_event(kind::CQ_ERR) && is_port_event(kind::PORT_ERR));
    }
}
