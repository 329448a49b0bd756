//! ibv_create_qp, ibv_create_srq and ibv_create_cq: the sizes asked for
//! against the device's limits (read once per context with the real
//! ibv_query_device); a size above a limit is named before the call, a
//! failed creation after it.

use crate::facts::{limits, Limits};
use crate::real::{real, Real};
use rdma_sys as sys;
use std::ffi::c_void;
use std::os::raw::c_int;

static CREATE_QP: Real = Real::new(c"ibv_create_qp", c"IBVERBS_1.1");
static CREATE_SRQ: Real = Real::new(c"ibv_create_srq", c"IBVERBS_1.1");
static CREATE_CQ: Real = Real::new(c"ibv_create_cq", c"IBVERBS_1.1");

/// Each asked size above its limit, as "max_send_wr 5000 > max_qp_wr 4096".
pub fn over(asked: &[(&str, u64, &str, i32)]) -> Vec<String> {
    asked
        .iter()
        .filter(|(_, v, _, lim)| *lim > 0 && *v > *lim as u64)
        .map(|(n, v, ln, lim)| format!("{n} {v} > the device's {ln} {lim}"))
        .collect()
}

fn qp_sizes(c: &sys::ibv_qp_cap, l: &Limits, srq: bool) -> Vec<String> {
    let mut v = vec![
        ("max_send_wr", c.max_send_wr as u64, "max_qp_wr", l.max_qp_wr),
        ("max_send_sge", c.max_send_sge as u64, "max_sge", l.max_sge),
    ];
    if !srq {
        v.push(("max_recv_wr", c.max_recv_wr as u64, "max_qp_wr", l.max_qp_wr));
        v.push(("max_recv_sge", c.max_recv_sge as u64, "max_sge", l.max_sge));
    }
    over(&v)
}

const QUEUE_FIX: &str = "lower ms_async_rdma_send_buffers / ms_async_rdma_receive_queue_len (Ceph clamps them to \
                         max_qp_wr / max_srq_wr only at init)";
const CQ_FIX: &str = "Ceph asks for a fixed 30000 entries per completion queue: a device with a smaller max_cqe cannot \
                      carry Ceph's RDMA messenger unchanged";

fn before(call: &str, problems: &[String], fix: &str) {
    if !problems.is_empty() {
        crate::report::problem(&format!("{call}: {}: the provider will refuse or shrink it; {fix}", problems.join(", ")));
    }
}

fn after(call: &str, what: String) {
    let e = crate::report::errno();
    crate::report::shielded(|| {
        crate::report::problem(&format!("{call} failed with {} ({e}): asked {what}", ibstack::errno_name(e)))
    });
}

/// # Safety
/// As libibverbs' ibv_create_qp.
#[no_mangle]
pub unsafe extern "C" fn ibv_create_qp(pd: *mut sys::ibv_pd, init: *mut sys::ibv_qp_init_attr) -> *mut sys::ibv_qp {
    let f = real!(CREATE_QP, unsafe extern "C" fn(*mut sys::ibv_pd, *mut sys::ibv_qp_init_attr) -> *mut sys::ibv_qp, std::ptr::null_mut());
    let active = crate::mode::active() && !pd.is_null() && !init.is_null();
    if active {
        // SAFETY: pd and init are the caller's live objects.
        crate::report::shielded(|| unsafe {
            if let Some(l) = limits((*pd).context) {
                before("ibv_create_qp", &qp_sizes(&(*init).cap, &l, !(*init).srq.is_null()), QUEUE_FIX);
            }
        });
    }
    // SAFETY: forwarded unchanged.
    let qp = unsafe { f(pd, init) };
    if qp.is_null() && active {
        // SAFETY: init is live.
        let c = unsafe { (*init).cap };
        after("ibv_create_qp", format!("max_send_wr {} max_recv_wr {} max_send_sge {} max_recv_sge {}", c.max_send_wr, c.max_recv_wr, c.max_send_sge, c.max_recv_sge));
    }
    qp
}

/// # Safety
/// As libibverbs' ibv_create_srq.
#[no_mangle]
pub unsafe extern "C" fn ibv_create_srq(pd: *mut sys::ibv_pd, init: *mut sys::ibv_srq_init_attr) -> *mut sys::ibv_srq {
    let f = real!(CREATE_SRQ, unsafe extern "C" fn(*mut sys::ibv_pd, *mut sys::ibv_srq_init_attr) -> *mut sys::ibv_srq, std::ptr::null_mut());
    let active = crate::mode::active() && !pd.is_null() && !init.is_null();
    if active {
        // SAFETY: pd and init are the caller's live objects.
        crate::report::shielded(|| unsafe {
            if let Some(l) = limits((*pd).context) {
                let a = (*init).attr;
                before(
                    "ibv_create_srq",
                    &over(&[("max_wr", a.max_wr as u64, "max_srq_wr", l.max_srq_wr), ("max_sge", a.max_sge as u64, "max_srq_sge", l.max_srq_sge)]),
                    QUEUE_FIX,
                );
            }
        });
    }
    // SAFETY: forwarded unchanged.
    let srq = unsafe { f(pd, init) };
    if srq.is_null() && active {
        // SAFETY: init is live.
        let a = unsafe { (*init).attr };
        after("ibv_create_srq", format!("max_wr {} max_sge {}", a.max_wr, a.max_sge));
    }
    srq
}

/// # Safety
/// As libibverbs' ibv_create_cq.
#[no_mangle]
pub unsafe extern "C" fn ibv_create_cq(
    ctx: *mut sys::ibv_context,
    cqe: c_int,
    user: *mut c_void,
    channel: *mut sys::ibv_comp_channel,
    vector: c_int,
) -> *mut sys::ibv_cq {
    let f = real!(
        CREATE_CQ,
        unsafe extern "C" fn(*mut sys::ibv_context, c_int, *mut c_void, *mut sys::ibv_comp_channel, c_int) -> *mut sys::ibv_cq,
        std::ptr::null_mut()
    );
    let active = crate::mode::active() && !ctx.is_null();
    if active {
        // SAFETY: ctx is the caller's open context.
        crate::report::shielded(|| unsafe {
            if let Some(l) = limits(ctx) {
                before("ibv_create_cq", &over(&[("cqe", cqe.max(0) as u64, "max_cqe", l.max_cqe)]), CQ_FIX);
            }
        });
    }
    // SAFETY: forwarded unchanged.
    let cq = unsafe { f(ctx, cqe, user, channel, vector) };
    if cq.is_null() && active {
        after("ibv_create_cq", format!("cqe {cqe}"));
    }
    cq
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_above_limits_are_named() {
        let l = Limits { max_qp_wr: 4096, max_sge: 4, max_cqe: 32767, max_srq_wr: 4096, max_srq_sge: 4, max_qp_rd_atom: 1 };
        // SAFETY: plain C struct; all-zero is valid.
        let mut c: sys::ibv_qp_cap = unsafe { std::mem::zeroed() };
        c.max_send_wr = 258;
        c.max_send_sge = 1;
        c.max_recv_wr = 5000;
        assert!(qp_sizes(&c, &l, true).is_empty());
        assert_eq!(qp_sizes(&c, &l, false), vec!["max_recv_wr 5000 > the device's max_qp_wr 4096".to_string()]);
        assert!(over(&[("cqe", 30000, "max_cqe", 32767)]).is_empty());
        assert_eq!(over(&[("cqe", 40000, "max_cqe", 32767)]).len(), 1);
    }
}
