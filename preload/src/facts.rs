//! Facts read from a context the guard does not own (Ceph's): the device's
//! limits (once per context), a port and a GID entry, in ibstack's types.

use ibstack::verbs::{GidEntry, GidType, LinkLayer, PortAttr, PortState};
use rdma_sys as sys;
use std::os::raw::c_int;
use std::sync::Mutex;

extern "C" {
    // libibverbs' exported worker of the inline ibv_query_gid_ex (IBVERBS_1.11).
    fn _ibv_query_gid_ex(
        context: *mut sys::ibv_context,
        port_num: u32,
        gid_index: u32,
        entry: *mut sys::ibv_gid_entry,
        flags: u32,
        entry_size: usize,
    ) -> c_int;
}

/// The device limits queue sizes are checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_qp_wr: i32,
    pub max_sge: i32,
    pub max_cqe: i32,
    pub max_srq_wr: i32,
    pub max_srq_sge: i32,
    pub max_qp_rd_atom: i32,
}

static LIMITS: Mutex<Vec<(usize, Limits)>> = Mutex::new(Vec::new());

/// The device's limits, from the real ibv_query_device the first time a context is seen.
///
/// # Safety
/// `ctx` must be an open context.
pub unsafe fn limits(ctx: *mut sys::ibv_context) -> Option<Limits> {
    if let Some(l) = LIMITS.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|(c, _)| *c == ctx as usize) {
        return Some(l.1);
    }
    // SAFETY: plain C struct; all-zero is valid.
    let mut a: sys::ibv_device_attr = unsafe { std::mem::zeroed() };
    // SAFETY: ctx is open (caller), a is a valid out-pointer.
    if unsafe { sys::ibv_query_device(ctx, &mut a) } != 0 {
        return None;
    }
    let l = Limits {
        max_qp_wr: a.max_qp_wr,
        max_sge: a.max_sge,
        max_cqe: a.max_cqe,
        max_srq_wr: a.max_srq_wr,
        max_srq_sge: a.max_srq_sge,
        max_qp_rd_atom: a.max_qp_rd_atom,
    };
    let mut v = LIMITS.lock().unwrap_or_else(|e| e.into_inner());
    v.retain(|(c, _)| *c != ctx as usize);
    v.push((ctx as usize, l));
    Some(l)
}

/// The port's attributes now.
///
/// # Safety
/// `ctx` must be an open context.
pub unsafe fn port(ctx: *mut sys::ibv_context, port: u8) -> Option<PortAttr> {
    // SAFETY: plain C struct; all-zero is valid.
    let mut a: sys::ibv_port_attr = unsafe { std::mem::zeroed() };
    // SAFETY: ctx is open; a is a full-size ibv_port_attr.
    if unsafe { sys::___ibv_query_port(ctx, port, &mut a) } != 0 {
        return None;
    }
    Some(PortAttr {
        state: PortState::from_raw(a.state),
        max_mtu: a.max_mtu,
        active_mtu: a.active_mtu,
        gid_tbl_len: a.gid_tbl_len,
        lid: a.lid,
        link_layer: LinkLayer::from_raw(a.link_layer),
        max_msg_sz: a.max_msg_sz,
    })
}

/// One GID entry; None for an empty slot or a failed query.
///
/// # Safety
/// `ctx` must be an open context.
pub unsafe fn gid(ctx: *mut sys::ibv_context, port: u8, index: u32) -> Option<GidEntry> {
    // SAFETY: plain C struct; all-zero is valid.
    let mut e: sys::ibv_gid_entry = unsafe { std::mem::zeroed() };
    // SAFETY: ctx is open; e is an out-pointer of the given size.
    let r = unsafe { _ibv_query_gid_ex(ctx, port as u32, index, &mut e, 0, std::mem::size_of::<sys::ibv_gid_entry>()) };
    if r != 0 {
        return None;
    }
    // SAFETY: raw is always a valid view of the union.
    let gid = unsafe { e.gid.raw };
    (gid != [0u8; 16]).then(|| GidEntry { gid, index: e.gid_index, gid_type: GidType::from_raw(e.gid_type), ndev_ifindex: e.ndev_ifindex })
}

/// "0 = fe80::… (RoCE v2), 1 = 10.0.0.1 (RoCE v2)": the populated entries, written as the doctor writes them.
///
/// # Safety
/// `ctx` must be an open context.
pub unsafe fn valid_gids(ctx: *mut sys::ibv_context, port: u8, tbl: i32) -> String {
    let mut v = Vec::new();
    for i in 0..tbl.clamp(0, 256) as u32 {
        // SAFETY: ctx is open (caller).
        if let Some(g) = unsafe { gid(ctx, port, i) } {
            let ip = std::net::Ipv6Addr::from(g.gid);
            let addr = ip.to_ipv4_mapped().map(|a| a.to_string()).unwrap_or_else(|| ip.to_string());
            v.push(format!("{i} = {addr} ({})", g.gid_type.map(|t| t.name()).unwrap_or("type unknown")));
        }
    }
    if v.is_empty() {
        "the GID table has no valid entries".into()
    } else {
        format!("valid entries: {}", v.join(", "))
    }
}
