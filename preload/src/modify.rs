//! ibv_modify_qp: before forwarding, the attributes are checked against the
//! port with ibstack's pre-flight validation (ibstack::qp::validate); a
//! problem is printed but the real call always happens. When the provider
//! refuses, its error is printed with the attributes and the likely causes.

use crate::real::{real, Real};
use ibstack::qp::validate::{check_foreign_modify, explain_modify_failure, ForeignModify, ForeignPort};
use ibstack::verbs::{QpState, RtrAttrs};
use rdma_sys as sys;
use std::os::raw::c_int;

static MODIFY_QP: Real = Real::new(c"ibv_modify_qp", c"IBVERBS_1.1");

// enum ibv_qp_attr_mask bits.
const STATE: u32 = 1;
const AV: u32 = 1 << 7;
const PATH_MTU: u32 = 1 << 8;
const RQ_PSN: u32 = 1 << 12;
const MAX_DEST_RD_ATOMIC: u32 = 1 << 17;
const DEST_QPN: u32 = 1 << 20;

/// The request in ibstack's terms (`from` = the QP's state before the call).
pub fn foreign_modify(a: &sys::ibv_qp_attr, mask: u32, from: Option<QpState>) -> ForeignModify {
    let set = |bit: u32| mask & bit != 0;
    let global = set(AV) && a.ah_attr.is_global != 0;
    ForeignModify {
        from,
        to: set(STATE).then(|| QpState::from_raw(a.qp_state)),
        path_mtu: set(PATH_MTU).then_some(a.path_mtu),
        sgid_index: global.then_some(a.ah_attr.grh.sgid_index as u32),
        // SAFETY: raw is always a valid view of the union.
        dgid: global.then(|| unsafe { a.ah_attr.grh.dgid.raw }),
        sl: set(AV).then_some(a.ah_attr.sl),
        max_dest_rd_atomic: set(MAX_DEST_RD_ATOMIC).then_some(a.max_dest_rd_atomic),
        dest_qpn: set(DEST_QPN).then_some(a.dest_qp_num),
        rq_psn: set(RQ_PSN).then_some(a.rq_psn),
    }
}

/// The RTR attributes as explain_modify_failure prints them.
fn rtr_attrs(a: &sys::ibv_qp_attr, port_num: u8) -> RtrAttrs {
    RtrAttrs {
        path_mtu: a.path_mtu,
        dest_qpn: a.dest_qp_num,
        rq_psn: a.rq_psn,
        // SAFETY: raw is always a valid view of the union.
        dgid: unsafe { a.ah_attr.grh.dgid.raw },
        dlid: a.ah_attr.dlid,
        sgid_index: a.ah_attr.grh.sgid_index as u32,
        sl: a.ah_attr.sl,
        traffic_class: a.ah_attr.grh.traffic_class,
        hop_limit: a.ah_attr.grh.hop_limit,
        max_dest_rd_atomic: a.max_dest_rd_atomic,
        min_rnr_timer: a.min_rnr_timer,
        port_num,
    }
}

/// The QP's current state from the real ibv_query_qp.
///
/// # Safety
/// `qp` must be live.
unsafe fn state_of(qp: *mut sys::ibv_qp) -> Option<QpState> {
    // SAFETY: plain C structs; all-zero is valid.
    let mut a: sys::ibv_qp_attr = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut init: sys::ibv_qp_init_attr = unsafe { std::mem::zeroed() };
    // SAFETY: qp is live; both out-pointers are valid.
    (unsafe { sys::ibv_query_qp(qp, &mut a, STATE as c_int, &mut init) } == 0).then(|| QpState::from_raw(a.qp_state))
}

fn transition(req: &ForeignModify) -> String {
    match (req.from, req.to) {
        (Some(f), Some(t)) => format!("{}->{}", f.name(), t.name()),
        (None, Some(t)) => format!("->{}", t.name()),
        _ => "attributes".to_string(),
    }
}

/// Pre-flight: what the call will be (for the failure text), the problem printed if any.
///
/// # Safety
/// `qp` and `attr` must be live.
unsafe fn preflight(qp: *mut sys::ibv_qp, attr: &sys::ibv_qp_attr, mask: u32) -> (String, Option<RtrAttrs>) {
    // SAFETY: qp is live (caller).
    let (ctx, qpn) = unsafe { ((*qp).context, (*qp).qp_num) };
    // SAFETY: qp is live.
    let req = foreign_modify(attr, mask, unsafe { state_of(qp) });
    let what = format!("{} of QP {qpn:#x}", transition(&req));
    if req.to != Some(QpState::Rtr) {
        if let Err(e) = check_foreign_modify(&req, &dummy_port()) {
            crate::report::problem(&format!("ibv_modify_qp({what}) pre-flight: {}", e.msg));
        }
        return (what, None);
    }
    let port_num = if mask & AV != 0 && attr.ah_attr.port_num != 0 { attr.ah_attr.port_num } else { 1 };
    // SAFETY: ctx is the QP's open context.
    let Some(port) = (unsafe { crate::facts::port(ctx, port_num) }) else { return (what, Some(rtr_attrs(attr, port_num))) };
    let sgid_entry = match req.sgid_index {
        // SAFETY: as above.
        Some(i) => unsafe { crate::facts::gid(ctx, port_num, i) },
        None => None,
    };
    // SAFETY: as above.
    let max_qp_rd_atom = unsafe { crate::facts::limits(ctx) }.map(|l| l.max_qp_rd_atom).unwrap_or(0);
    let fp = ForeignPort { port_num, port: port.clone(), sgid_entry, max_qp_rd_atom };
    if let Err(e) = check_foreign_modify(&req, &fp) {
        let mut msg = format!("ibv_modify_qp({what}) pre-flight: {}", e.msg);
        if sgid_entry.is_none() && req.sgid_index.is_some() {
            // SAFETY: as above.
            msg.push_str(&format!("; {}", unsafe { crate::facts::valid_gids(ctx, port_num, port.gid_tbl_len) }));
        }
        crate::report::problem(&msg);
    }
    (what, Some(rtr_attrs(attr, port_num)))
}

/// A port for checks that do not look at it (state order only).
fn dummy_port() -> ForeignPort {
    ForeignPort {
        port_num: 1,
        port: ibstack::verbs::PortAttr {
            state: ibstack::verbs::PortState::Active,
            max_mtu: 5,
            active_mtu: 5,
            gid_tbl_len: 0,
            lid: 0,
            link_layer: ibstack::verbs::LinkLayer::Unspecified,
            max_msg_sz: 0,
        },
        sgid_entry: None,
        max_qp_rd_atom: 0,
    }
}

/// # Safety
/// As libibverbs' ibv_modify_qp.
#[no_mangle]
pub unsafe extern "C" fn ibv_modify_qp(qp: *mut sys::ibv_qp, attr: *mut sys::ibv_qp_attr, mask: c_int) -> c_int {
    let f = real!(MODIFY_QP, unsafe extern "C" fn(*mut sys::ibv_qp, *mut sys::ibv_qp_attr, c_int) -> c_int, libc::ENOSYS);
    if qp.is_null() || attr.is_null() || !crate::mode::active() {
        // SAFETY: forwarded unchanged.
        return unsafe { f(qp, attr, mask) };
    }
    let mut seen = (String::new(), None);
    // SAFETY: qp and attr are the caller's live objects.
    crate::report::shielded(|| seen = unsafe { preflight(qp, &*attr, mask as u32) });
    // SAFETY: forwarded unchanged.
    let r = unsafe { f(qp, attr, mask) };
    if r != 0 {
        let (what, rtr) = seen;
        crate::report::shielded(|| {
            crate::report::problem(&format!("provider refused: {}", explain_modify_failure(&what, r, rtr.as_ref())))
        });
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cephs_rtr_request_converts() {
        // SAFETY: plain C struct; all-zero is valid.
        let mut a: sys::ibv_qp_attr = unsafe { std::mem::zeroed() };
        a.qp_state = 2;
        a.path_mtu = 3;
        a.dest_qp_num = 0x11;
        a.rq_psn = 7;
        a.max_dest_rd_atomic = 1;
        a.ah_attr.is_global = 1;
        a.ah_attr.grh.sgid_index = 1;
        a.ah_attr.sl = 3;
        a.ah_attr.grh.dgid.raw = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 99, 0, 1];
        let r = foreign_modify(&a, 0x129181, Some(QpState::Init));
        assert_eq!(r.to, Some(QpState::Rtr));
        assert_eq!(r.path_mtu, Some(3));
        assert_eq!(r.sgid_index, Some(1));
        assert_eq!(r.dgid.unwrap()[12], 10);
        assert_eq!(r.sl, Some(3));
        assert_eq!((r.dest_qpn, r.rq_psn, r.max_dest_rd_atomic), (Some(0x11), Some(7), Some(1)));
        assert_eq!(transition(&r), "INIT->RTR");
        // a mask without the AV and MTU leaves them unset
        let r = foreign_modify(&a, STATE, Some(QpState::Rtr));
        assert_eq!((r.path_mtu, r.sgid_index, r.dgid, r.sl), (None, None, None, None));
    }
}
