//! Pre-flight checks for queue-pair state transitions.
//!
//! `ibv_modify_qp(INIT->RTR)` is where a bad GID index, a vanished address, a
//! garbage peer record or a second activation finally surface, usually as a
//! bare EINVAL/ENODATA. The queue-pair code gathers the facts it just read
//! (QP state, port, GID entry) into [`LocalFacts`] and the attributes it is
//! about to set into [`RtrAttrs`]; [`check_rtr`] then names the first problem
//! precisely. Everything here is pure: no verbs calls.

use crate::errno::{errno_cstr, errno_name};
use crate::error::{Error, Result};
use crate::handshake::CmMeta;
use crate::text::gid_to_string;
use crate::verbs::device::{mtu_bytes, GidEntry, GidType, LinkLayer, PortAttr, PortState};
pub use crate::verbs::qp::{QpState, RtrAttrs, ALL_STATES};

/// Everything local that RTR depends on, read fresh just before the transition.
#[derive(Debug, Clone)]
pub struct LocalFacts {
    /// Current QP state (from `ibv_query_qp`).
    pub state: QpState,
    pub port_num: u8,
    /// Fresh `ibv_query_port`.
    pub port: PortAttr,
    /// Configured `ms_async_rdma_gid_idx`.
    pub gid_idx: u32,
    /// The GID table entry re-read now (None = empty slot).
    pub gid_now: Option<GidEntry>,
    /// The GID this side sent in its record.
    pub advertised_gid: [u8; 16],
    /// Device attribute `max_qp_rd_atom`.
    pub max_qp_rd_atom: i32,
}

/// The state a target state must be entered from, for the moves this library makes.
fn required_source(to: QpState) -> Option<QpState> {
    match to {
        QpState::Init => Some(QpState::Reset),
        QpState::Rtr => Some(QpState::Init),
        QpState::Rts => Some(QpState::Rtr),
        _ => None,
    }
}

/// Whether `from -> to` is one of the moves used here: RESET->INIT,
/// INIT->RTR, RTR->RTS, or any state to ERR (ERR->ERR included).
pub fn check_transition(from: QpState, to: QpState) -> Result<()> {
    if to == QpState::Err || required_source(to) == Some(from) {
        return Ok(());
    }
    let reach = match required_source(to) {
        Some(req) => format!("{} is only reachable from {}", to.name(), req.name()),
        None => format!(
            "{} is not a state this library moves QPs to (only RESET->INIT, INIT->RTR, RTR->RTS \
             and any state->ERR)",
            to.name()
        ),
    };
    let why = match (from, to) {
        (QpState::Err, _) => "; the QP is in ERR: it was faulted (async error) or torn down, \
                              possibly racing the handshake; it must be destroyed, not reused"
            .to_string(),
        (QpState::Rtr | QpState::Rts, QpState::Rtr) | (QpState::Rts, QpState::Rts) => {
            "; the handshake already completed (activate called twice?)".to_string()
        }
        (QpState::Reset, QpState::Rtr | QpState::Rts) => {
            "; the QP was never moved to INIT".to_string()
        }
        (QpState::Init, QpState::Rts) => "; RTR must be reached first".to_string(),
        _ => String::new(),
    };
    Err(Error::inval(format!(
        "cannot move QP from {} to {}: {reach}{why}",
        from.name(),
        to.name()
    )))
}

fn is_zero(gid: &[u8; 16]) -> bool {
    gid.iter().all(|&b| b == 0)
}

fn is_link_local(gid: &[u8; 16]) -> bool {
    gid[0] == 0xfe && gid[1] & 0xc0 == 0x80
}

fn is_v4_mapped(gid: &[u8; 16]) -> bool {
    gid[..10].iter().all(|&b| b == 0) && gid[10] == 0xff && gid[11] == 0xff
}

fn family(gid: &[u8; 16]) -> Option<&'static str> {
    if is_v4_mapped(gid) {
        Some("IPv4-mapped")
    } else if is_link_local(gid) {
        Some("link-local")
    } else {
        None
    }
}

/// Decide whether INIT->RTR with `attrs` may be attempted. First failure wins;
/// every error is EINVAL except a port that is not ACTIVE (ENETDOWN).
pub fn check_rtr(local: &LocalFacts, peer: &CmMeta, attrs: &RtrAttrs) -> Result<()> {
    let link = local.port.link_layer;
    check_transition(local.state, QpState::Rtr)?;
    check_port_active(local)?;
    check_path_mtu(local, attrs)?;
    check_sgid_index(local, attrs)?;
    let entry = current_gid(local)?;
    check_gid_type(local, &entry)?;
    check_sl(link, attrs)?;
    check_rd_atomic(local, attrs)?;
    peer.validate_peer(link == LinkLayer::InfiniBand)?;
    check_attrs_match_sources(local, peer, attrs)?;
    check_gid_families(&entry.gid, &peer.gid)
}

/// The port must still be ACTIVE (ENETDOWN otherwise).
fn check_port_active(local: &LocalFacts) -> Result<()> {
    let p = local.port_num;
    if local.port.state != PortState::Active {
        return Err(Error::new(
            libc::ENETDOWN,
            format!(
                "port {p} is {}, not PORT_ACTIVE: the link went down or lost its subnet manager \
                 since the device was opened (check `ibv_devinfo` and the cable/switch)",
                local.port.state.name()
            ),
        ));
    }
    Ok(())
}

/// The path MTU must be an `ibv_mtu` no larger than the port's active MTU.
fn check_path_mtu(local: &LocalFacts, attrs: &RtrAttrs) -> Result<()> {
    let (p, mtu, active) = (local.port_num, attrs.path_mtu, local.port.active_mtu);
    if !(1..=5).contains(&mtu) {
        return Err(Error::inval(format!(
            "path MTU enum {mtu} is not a valid ibv_mtu (1..=5 = 256..4096 bytes); check option \
             ibstack_path_mtu"
        )));
    }
    if mtu > active {
        return Err(Error::inval(format!(
            "path MTU {} is above port {p}'s active MTU {}: lower option ibstack_path_mtu (Ceph \
             peers expect 1024) or raise the netdev MTU",
            mtu_bytes(mtu),
            mtu_bytes(active)
        )));
    }
    Ok(())
}

/// The source GID index must lie inside the port's GID table.
fn check_sgid_index(local: &LocalFacts, attrs: &RtrAttrs) -> Result<()> {
    let (p, tbl) = (local.port_num, local.port.gid_tbl_len.max(0) as u32);
    if attrs.sgid_index >= tbl {
        return Err(Error::inval(format!(
            "sgid_index {} is outside port {p}'s GID table (gid_tbl_len {tbl}); check \
             ms_async_rdma_gid_idx",
            attrs.sgid_index
        )));
    }
    Ok(())
}

/// The GID table entry as re-read now: populated, and still the GID this side
/// advertised in its record.
fn current_gid(local: &LocalFacts) -> Result<GidEntry> {
    let (p, idx) = (local.port_num, local.gid_idx);
    let entry = match local.gid_now {
        Some(e) if !is_zero(&e.gid) => e,
        _ => {
            return Err(Error::inval(format!(
                "GID index {idx} is empty on port {p} (no address behind it now): set \
                 ms_async_rdma_gid_idx to a populated index; list them with `ibv_devinfo -v` or \
                 /sys/class/infiniband/<dev>/ports/{p}/gids/ (types under gid_attrs/types/)"
            )))
        }
    };
    if entry.gid != local.advertised_gid {
        return Err(Error::inval(format!(
            "GID at index {idx} changed since the record was sent (was {}, now {}): the address \
             was removed or changed (IP removed, bond/VLAN rebuilt); reconnect",
            gid_to_string(&local.advertised_gid),
            gid_to_string(&entry.gid)
        )));
    }
    Ok(entry)
}

/// A GID of known type must suit the link layer, and a RoCE v2 GID must be routable.
fn check_gid_type(local: &LocalFacts, entry: &GidEntry) -> Result<()> {
    let Some(ty) = entry.gid_type else { return Ok(()) };
    let (p, idx, link) = (local.port_num, local.gid_idx, local.port.link_layer);
    let fits = match link {
        LinkLayer::InfiniBand => ty == GidType::Ib,
        LinkLayer::Ethernet => ty != GidType::Ib,
        LinkLayer::Unspecified => true,
    };
    if !fits {
        return Err(Error::inval(format!(
            "GID index {idx} has type {} but port {p}'s link layer is {} (InfiniBand needs \
             an IB GID, Ethernet a RoCE v1/v2 GID); check ms_async_rdma_gid_idx",
            ty.name(),
            link.name()
        )));
    }
    if ty == GidType::RoceV2 && is_link_local(&entry.gid) {
        return Err(Error::inval(format!(
            "GID index {idx} ({}) is a link-local RoCE v2 GID: RoCE v2 is routed over UDP/IP \
             and link-local addresses do not route; set ms_async_rdma_gid_idx to the RoCE v2 \
             entry carrying an IPv4 (::ffff:a.b.c.d) or global IPv6 address",
            gid_to_string(&entry.gid)
        )));
    }
    Ok(())
}

/// The service level must fit the link: 3 bits on Ethernet, 4 on InfiniBand.
fn check_sl(link: LinkLayer, attrs: &RtrAttrs) -> Result<()> {
    let max_sl = if link == LinkLayer::Ethernet { 7 } else { 15 };
    if attrs.sl > max_sl {
        return Err(Error::inval(format!(
            "ms_async_rdma_sl {} is above {max_sl}, the largest service level on a {} link (on \
             RoCE the SL is the 3-bit VLAN priority)",
            attrs.sl,
            link.name()
        )));
    }
    Ok(())
}

/// max_dest_rd_atomic within the device's max_qp_rd_atom (when it is known).
fn check_rd_atomic(local: &LocalFacts, attrs: &RtrAttrs) -> Result<()> {
    if local.max_qp_rd_atom > 0 && i32::from(attrs.max_dest_rd_atomic) > local.max_qp_rd_atom {
        return Err(Error::inval(format!(
            "max_dest_rd_atomic {} is above the device's max_qp_rd_atom {}",
            attrs.max_dest_rd_atomic, local.max_qp_rd_atom
        )));
    }
    Ok(())
}

/// The attributes must be the ones the record and the facts say; a mismatch
/// is a bug in the caller, reported as such.
fn check_attrs_match_sources(local: &LocalFacts, peer: &CmMeta, attrs: &RtrAttrs) -> Result<()> {
    let (p, idx, link) = (local.port_num, local.gid_idx, local.port.link_layer);
    let hex = |v: u32| format!("{v:#x}");
    let mismatch = if attrs.dest_qpn != peer.local_qpn {
        Some(("dest_qpn", hex(attrs.dest_qpn), "the peer's local_qpn", hex(peer.local_qpn)))
    } else if attrs.rq_psn != peer.psn {
        Some(("rq_psn", hex(attrs.rq_psn), "the peer's psn", hex(peer.psn)))
    } else if attrs.dgid != peer.gid {
        Some(("dgid", gid_to_string(&attrs.dgid), "the peer's gid", gid_to_string(&peer.gid)))
    } else if link == LinkLayer::InfiniBand && attrs.dlid != peer.lid {
        Some(("dlid", attrs.dlid.to_string(), "the peer's lid", peer.lid.to_string()))
    } else if attrs.sgid_index != idx {
        Some(("sgid_index", attrs.sgid_index.to_string(), "gid_idx", idx.to_string()))
    } else if attrs.port_num != p {
        Some(("port_num", attrs.port_num.to_string(), "the bound port", p.to_string()))
    } else {
        None
    };
    match mismatch {
        Some((name, have, src, want)) => Err(Error::inval(format!(
            "RTR attributes disagree with their source: {name} {have} but {src} is {want} \
             (internal error in the caller)"
        ))),
        None => Ok(()),
    }
}

/// Local and peer GIDs of a known family (IPv4-mapped, link-local) must share it.
fn check_gid_families(local_gid: &[u8; 16], peer_gid: &[u8; 16]) -> Result<()> {
    if let (Some(lf), Some(pf)) = (family(local_gid), family(peer_gid)) {
        if lf != pf {
            return Err(Error::inval(format!(
                "address family of peer GID {} ({pf}) differs from local GID {} ({lf}): the \
                 kernel cannot resolve one through the other's netdev; check \
                 ms_async_rdma_gid_idx on both hosts; GID tables differ per host",
                gid_to_string(peer_gid),
                gid_to_string(local_gid)
            )));
        }
    }
    Ok(())
}

/// A raw `ibv_modify_qp` call as another program (Ceph) makes it, in
/// ibstack's terms: the guard fills it from `struct ibv_qp_attr` and the
/// attribute mask. Fields are `Some` only when the mask sets them.
#[derive(Debug, Clone)]
pub struct ForeignModify {
    /// The QP's state before the call (queried), when known.
    pub from: Option<QpState>,
    /// The target state (`IBV_QP_STATE`).
    pub to: Option<QpState>,
    /// `IBV_QP_PATH_MTU`: `enum ibv_mtu`.
    pub path_mtu: Option<u32>,
    /// `IBV_QP_AV` with `is_global`: the source GID index and destination GID.
    pub sgid_index: Option<u32>,
    pub dgid: Option<[u8; 16]>,
    /// `IBV_QP_AV`: service level.
    pub sl: Option<u8>,
    /// `IBV_QP_MAX_DEST_RD_ATOMIC`.
    pub max_dest_rd_atomic: Option<u8>,
    /// `IBV_QP_DEST_QPN` / `IBV_QP_RQ_PSN`.
    pub dest_qpn: Option<u32>,
    pub rq_psn: Option<u32>,
}

/// The port a foreign QP is bound to, read fresh by the caller.
#[derive(Debug, Clone)]
pub struct ForeignPort {
    pub port_num: u8,
    pub port: PortAttr,
    /// The entry at the request's sgid_index (None = empty slot or not read).
    pub sgid_entry: Option<GidEntry>,
    /// Device attribute `max_qp_rd_atom` (0 = unknown).
    pub max_qp_rd_atom: i32,
}

/// Pre-flight checks of a foreign `ibv_modify_qp` (the guard's view of what
/// Ceph asks): the state order for the moves RESET->INIT->RTR->RTS, and for
/// INIT->RTR the same attribute checks as [`check_rtr`] where the mask sets
/// them (port ACTIVE, path MTU vs active MTU, GID index inside the table and
/// populated, GID type vs link layer, sl, max_dest_rd_atomic, a usable peer
/// GID of the local GID's family, 24-bit QPN/PSN). The first problem wins.
pub fn check_foreign_modify(req: &ForeignModify, port: &ForeignPort) -> Result<()> {
    let Some(to) = req.to else { return Ok(()) };
    if let Some(from) = req.from {
        if matches!(to, QpState::Init | QpState::Rtr | QpState::Rts) {
            check_transition(from, to)?;
        }
    }
    if to != QpState::Rtr {
        return Ok(());
    }
    let sgid = req.sgid_index.unwrap_or(0);
    let local = LocalFacts {
        state: req.from.unwrap_or(QpState::Init),
        port_num: port.port_num,
        port: port.port.clone(),
        gid_idx: sgid,
        gid_now: port.sgid_entry,
        advertised_gid: port.sgid_entry.map(|e| e.gid).unwrap_or([0; 16]),
        max_qp_rd_atom: port.max_qp_rd_atom,
    };
    let attrs = RtrAttrs {
        path_mtu: req.path_mtu.unwrap_or(port.port.active_mtu.max(1)),
        dest_qpn: req.dest_qpn.unwrap_or(2),
        rq_psn: req.rq_psn.unwrap_or(0),
        dgid: req.dgid.unwrap_or([0; 16]),
        dlid: 0,
        sgid_index: sgid,
        sl: req.sl.unwrap_or(0),
        traffic_class: 0,
        hop_limit: 0,
        max_dest_rd_atomic: req.max_dest_rd_atomic.unwrap_or(0),
        min_rnr_timer: 0,
        port_num: port.port_num,
    };
    check_port_active(&local)?;
    if req.path_mtu.is_some() {
        check_path_mtu(&local, &attrs)?;
    }
    check_sl(local.port.link_layer, &attrs)?;
    check_rd_atomic(&local, &attrs)?;
    for (name, v) in [("dest_qp_num", req.dest_qpn), ("rq_psn", req.rq_psn)] {
        if let Some(v) = v {
            if v > 0xff_ffff {
                return Err(Error::inval(format!(
                    "{name} {v:#x} is wider than 24 bits: the peer's cm_meta record is garbage (a peer of \
                     another ms_type or a corrupted exchange)"
                )));
            }
        }
    }
    let (Some(_), Some(dgid)) = (req.sgid_index, req.dgid) else { return Ok(()) };
    check_sgid_index(&local, &attrs)?;
    let entry = current_gid(&local)?;
    check_gid_type(&local, &entry)?;
    if is_zero(&dgid) {
        return Err(Error::inval(format!(
            "the peer's GID (dgid) is all zero: the peer's ms_async_rdma_gid_idx points at an empty slot of its \
             GID table (Ceph sends the empty slot without complaint); fix gid_idx on the peer (local GID {} at \
             index {sgid})",
            gid_to_string(&entry.gid)
        )));
    }
    check_gid_families(&entry.gid, &dgid)
}

/// Text for a provider that refuses a transition after validation passed.
/// `errno` may have either sign.
pub fn explain_modify_failure(transition: &str, errno: i32, attrs: Option<&RtrAttrs>) -> String {
    let e = errno.checked_abs().unwrap_or(0);
    let full = errno_cstr(e).to_string_lossy();
    let text = full.split_once(": ").map_or(&*full, |(_, t)| t);
    let mut s = format!("ibv_modify_qp({transition}) returned {} ({e}): {text}", errno_name(e));
    if let Some(a) = attrs {
        s.push_str(&format!(
            "; attempted: sgid_index {} dgid {} dest_qpn {:#x} rq_psn {:#x} path_mtu {} sl {} \
             traffic_class {}",
            a.sgid_index,
            gid_to_string(&a.dgid),
            a.dest_qpn,
            a.rq_psn,
            mtu_bytes(a.path_mtu),
            a.sl,
            a.traffic_class
        ));
    }
    let causes = match e {
        libc::ENODATA | libc::EINVAL => {
            "the source GID index is bad or its slot is empty (ENODATA on kernels >= 5.10, EINVAL \
             before; check ms_async_rdma_gid_idx against `ibv_devinfo -v`); the peer GID is \
             unusable (all zero, another address family, wrong index on the peer); a QPN or PSN \
             wider than 24 bits from a garbage peer record; the QP is not in the required state \
             (already ERR, or activated twice); the path MTU is above the port's active MTU \
             (ibstack_path_mtu)"
        }
        libc::ENETUNREACH | libc::EHOSTUNREACH | libc::ETIMEDOUT => {
            "the peer GID is not reachable through the netdev of the local GID: check routing \
             (`ip route get <peer address>`), neighbour resolution (`ip neigh`), VLAN and subnet, \
             and that ms_async_rdma_gid_idx selects GIDs on the same network on both hosts"
        }
        libc::ENOMEM => {
            "the device or kernel ran out of resources for this QP: fewer connections or smaller \
             queues (ms_async_rdma_send_buffers, ms_async_rdma_receive_queue_len)"
        }
        _ => {
            "a provider-specific rejection: compare the attempted attributes with `ibv_devinfo -v` \
             and check the kernel log (dmesg)"
        }
    };
    s.push_str("; likely causes: ");
    s.push_str(causes);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use libc::{EINVAL, ENETDOWN};

    fn mapped(d: u8) -> [u8; 16] {
        let mut g = [0u8; 16];
        g[10..].copy_from_slice(&[0xff, 0xff, 10, 99, 0, d]);
        g
    }

    fn link_local(last: u8) -> [u8; 16] {
        let mut g = [0u8; 16];
        g[0] = 0xfe;
        g[1] = 0x80;
        g[15] = last;
        g
    }

    const LOCAL_GID: &str = "0000:0000:0000:0000:0000:ffff:0a63:0001";
    const PEER_GID: &str = "0000:0000:0000:0000:0000:ffff:0a63:0002";

    type Tweak = fn(&mut Fx);

    struct Fx {
        local: LocalFacts,
        peer: CmMeta,
        attrs: RtrAttrs,
    }

    impl Fx {
        fn check(&self) -> Result<()> {
            check_rtr(&self.local, &self.peer, &self.attrs)
        }
        /// Change the local GID consistently (table entry and advertised copy).
        fn set_local_gid(&mut self, gid: [u8; 16], ty: Option<GidType>) {
            let e = self.local.gid_now.as_mut().unwrap();
            e.gid = gid;
            e.gid_type = ty;
            self.local.advertised_gid = gid;
        }
        fn set_peer_gid(&mut self, gid: [u8; 16]) {
            self.peer.gid = gid;
            self.attrs.dgid = gid;
        }
        /// Switch to an InfiniBand port with IB GIDs and LIDs on both sides.
        fn make_infiniband(&mut self) {
            self.local.port.link_layer = LinkLayer::InfiniBand;
            self.local.port.lid = 5;
            self.set_local_gid(link_local(1), Some(GidType::Ib));
            self.set_peer_gid(link_local(2));
            self.peer.lid = 7;
            self.attrs.dlid = 7;
        }
    }

    /// RoCE v2 on Ethernet, IPv4-mapped GIDs ::ffff:10.99.0.1 -> ::ffff:10.99.0.2.
    fn baseline() -> Fx {
        let peer = CmMeta { lid: 0, local_qpn: 0x1a2, psn: 0x5e1f3a, peer_qpn: 0x77, gid: mapped(2) };
        Fx {
            local: LocalFacts {
                state: QpState::Init,
                port_num: 1,
                port: PortAttr {
                    state: PortState::Active,
                    max_mtu: 5,
                    active_mtu: 3,
                    gid_tbl_len: 2,
                    lid: 0,
                    link_layer: LinkLayer::Ethernet,
                    max_msg_sz: 1 << 30,
                },
                gid_idx: 1,
                gid_now: Some(GidEntry {
                    gid: mapped(1),
                    index: 1,
                    gid_type: Some(GidType::RoceV2),
                    ndev_ifindex: 3,
                }),
                advertised_gid: mapped(1),
                max_qp_rd_atom: 16,
            },
            attrs: RtrAttrs {
                path_mtu: 3,
                dest_qpn: peer.local_qpn,
                rq_psn: peer.psn,
                dgid: peer.gid,
                dlid: 0,
                sgid_index: 1,
                sl: 3,
                traffic_class: 96,
                hop_limit: 6,
                max_dest_rd_atomic: 1,
                min_rnr_timer: 18,
                port_num: 1,
            },
            peer,
        }
    }

    #[test]
    fn baseline_and_other_good_fact_sets_pass() {
        baseline().check().unwrap();
        let goods: &[(&str, Tweak)] = &[
            ("infiniband", |f| f.make_infiniband()),
            ("unknown gid type", |f| f.local.gid_now.as_mut().unwrap().gid_type = None),
            ("roce v1 link-local", |f| {
                f.set_local_gid(link_local(1), Some(GidType::RoceV1));
                f.set_peer_gid(link_local(2));
            }),
            ("rd_atom unknown", |f| {
                f.local.max_qp_rd_atom = 0;
                f.attrs.max_dest_rd_atomic = 200;
            }),
            ("global ipv6 vs mapped", |f| f.set_peer_gid([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2])),
            ("mtu below active", |f| f.attrs.path_mtu = 1),
            ("sl 7 on ethernet", |f| f.attrs.sl = 7),
            ("sl 15 on ib", |f| {
                f.make_infiniband();
                f.attrs.sl = 15;
            }),
        ];
        for (name, tweak) in goods {
            let mut f = baseline();
            tweak(&mut f);
            if let Err(e) = f.check() {
                panic!("{name}: unexpected {e}");
            }
        }
    }

    #[test]
    fn each_cause_is_reported_with_its_values() {
        type Row = (&'static str, Tweak, i32, &'static [&'static str]);
        let rows: &[Row] = &[
            ("state reset", |f| f.local.state = QpState::Reset, EINVAL,
             &["from RESET to RTR", "only reachable from INIT"]),
            ("state rtr", |f| f.local.state = QpState::Rtr, EINVAL, &["from RTR to RTR", "activate called twice"]),
            ("state rts", |f| f.local.state = QpState::Rts, EINVAL, &["from RTS", "handshake already completed"]),
            ("state err", |f| f.local.state = QpState::Err, EINVAL, &["from ERR", "torn down"]),
            ("port down", |f| f.local.port.state = PortState::Down, ENETDOWN, &["port 1", "PORT_DOWN"]),
            ("mtu enum 0", |f| f.attrs.path_mtu = 0, EINVAL, &["path MTU enum 0", "ibstack_path_mtu"]),
            ("mtu enum 6", |f| f.attrs.path_mtu = 6, EINVAL, &["path MTU enum 6"]),
            ("mtu above port", |f| f.attrs.path_mtu = 5, EINVAL,
             &["path MTU 4096 is above port 1's active MTU 1024", "Ceph", "ibstack_path_mtu"]),
            ("sgid index", |f| {
                f.attrs.sgid_index = 2;
                f.local.gid_idx = 2;
            }, EINVAL, &["sgid_index 2", "gid_tbl_len 2", "ms_async_rdma_gid_idx"]),
            ("gid slot empty", |f| f.local.gid_now = None, EINVAL,
             &["GID index 1 is empty", "ms_async_rdma_gid_idx", "ibv_devinfo -v", "gids"]),
            ("gid slot zero", |f| f.local.gid_now.as_mut().unwrap().gid = [0; 16], EINVAL,
             &["GID index 1 is empty"]),
            ("gid changed", |f| f.local.gid_now.as_mut().unwrap().gid = mapped(7), EINVAL,
             &["GID at index 1 changed", LOCAL_GID, "0000:0000:0000:0000:0000:ffff:0a63:0007", "removed"]),
            ("ib gid on ethernet", |f| f.local.gid_now.as_mut().unwrap().gid_type = Some(GidType::Ib), EINVAL,
             &["type IB", "Ethernet"]),
            ("roce gid on ib", |f| {
                f.make_infiniband();
                f.local.gid_now.as_mut().unwrap().gid_type = Some(GidType::RoceV2);
            }, EINVAL, &["type RoCE v2", "InfiniBand"]),
            ("link-local roce v2", |f| {
                f.set_local_gid(link_local(1), Some(GidType::RoceV2));
                f.set_peer_gid(link_local(2));
            }, EINVAL, &["link-local RoCE v2", "fe80:0000:0000:0000:0000:0000:0000:0001", "do not route"]),
            ("sl on ethernet", |f| f.attrs.sl = 8, EINVAL, &["ms_async_rdma_sl 8", "above 7", "Ethernet"]),
            ("sl on ib", |f| {
                f.make_infiniband();
                f.attrs.sl = 16;
            }, EINVAL, &["ms_async_rdma_sl 16", "above 15", "InfiniBand"]),
            ("rd atomic", |f| f.attrs.max_dest_rd_atomic = 17, EINVAL,
             &["max_dest_rd_atomic 17", "max_qp_rd_atom 16"]),
            ("peer qpn", |f| {
                f.peer.local_qpn = 1;
                f.attrs.dest_qpn = 1;
            }, EINVAL, &["local_qpn 0x1", "special QPs"]),
            ("peer psn", |f| {
                f.peer.psn = 0x100_0000;
                f.attrs.rq_psn = 0x100_0000;
            }, EINVAL, &["psn 0x1000000", "24 bits"]),
            ("peer gid zero", |f| f.set_peer_gid([0; 16]), EINVAL, &["gid is all zero"]),
            ("peer lid on ib", |f| {
                f.make_infiniband();
                f.peer.lid = 0;
                f.attrs.dlid = 0;
            }, EINVAL, &["lid 0 on an InfiniBand link"]),
            ("dest_qpn", |f| f.attrs.dest_qpn = 0x1a3, EINVAL, &["dest_qpn 0x1a3", "local_qpn is 0x1a2", "internal"]),
            ("rq_psn", |f| f.attrs.rq_psn = 5, EINVAL, &["rq_psn 0x5", "psn is 0x5e1f3a"]),
            ("dgid", |f| f.attrs.dgid = mapped(9), EINVAL, &["dgid 0000:0000:0000:0000:0000:ffff:0a63:0009", PEER_GID]),
            ("dlid on ib", |f| {
                f.make_infiniband();
                f.attrs.dlid = 8;
            }, EINVAL, &["dlid 8", "lid is 7"]),
            ("sgid vs gid_idx", |f| f.attrs.sgid_index = 0, EINVAL, &["sgid_index 0", "gid_idx is 1"]),
            ("port_num", |f| f.attrs.port_num = 2, EINVAL, &["port_num 2", "bound port is 1"]),
            ("family mapped vs link-local", |f| f.set_peer_gid(link_local(2)), EINVAL,
             &["address family of peer GID fe80:0000:0000:0000:0000:0000:0000:0002", LOCAL_GID,
               "ms_async_rdma_gid_idx on both hosts"]),
            ("family link-local vs mapped", |f| f.set_local_gid(link_local(1), Some(GidType::RoceV1)), EINVAL,
             &["address family", PEER_GID, "fe80:0000:0000:0000:0000:0000:0000:0001", "GID tables differ"]),
        ];
        for (name, tweak, errno, needles) in rows {
            let mut f = baseline();
            tweak(&mut f);
            let e = f.check().expect_err(name);
            assert_eq!(e.errno, *errno, "{name}: {}", e.msg);
            for n in *needles {
                assert!(e.msg.contains(n), "{name}: {n:?} not in {:?}", e.msg);
            }
        }
    }

    #[test]
    fn transition_matrix() {
        for from in ALL_STATES {
            for to in ALL_STATES {
                let legal = to == QpState::Err
                    || matches!(
                        (from, to),
                        (QpState::Reset, QpState::Init) | (QpState::Init, QpState::Rtr) | (QpState::Rtr, QpState::Rts)
                    );
                match check_transition(from, to) {
                    Ok(()) => assert!(legal, "{from:?}->{to:?} accepted"),
                    Err(e) => {
                        assert!(!legal, "{from:?}->{to:?} refused: {}", e.msg);
                        assert_eq!(e.errno, EINVAL);
                        let head = format!("cannot move QP from {} to {}: ", from.name(), to.name());
                        assert!(e.msg.starts_with(&head), "{}", e.msg);
                    }
                }
            }
        }
        let e = check_transition(QpState::Init, QpState::Rts).unwrap_err();
        assert!(e.msg.contains("RTS is only reachable from RTR"), "{}", e.msg);
        let e = check_transition(QpState::Rts, QpState::Sqd).unwrap_err();
        assert!(e.msg.contains("SQD is not a state this library moves QPs to"), "{}", e.msg);
    }

    #[test]
    fn state_numbers_and_names() {
        for v in 0..8 {
            assert_eq!(QpState::from_raw(v).raw(), v);
        }
        assert_eq!(QpState::from_raw(6), QpState::Err);
        assert_eq!(QpState::from_raw(99), QpState::Unknown);
        assert_eq!(QpState::Rtr.name(), "RTR");
        assert_eq!(QpState::Unknown.name(), "UNKNOWN");
    }

    #[test]
    fn explain_enodata_and_etimedout() {
        let f = baseline();
        let s = explain_modify_failure("INIT->RTR", libc::ENODATA, Some(&f.attrs));
        for n in [
            "ibv_modify_qp(INIT->RTR) returned ENODATA (61): no data available",
            "attempted: sgid_index 1",
            PEER_GID,
            "dest_qpn 0x1a2",
            "rq_psn 0x5e1f3a",
            "path_mtu 1024",
            "sl 3",
            "traffic_class 96",
            "likely causes:",
            "kernels >= 5.10",
            "24 bits",
            "ms_async_rdma_gid_idx",
        ] {
            assert!(s.contains(n), "{n:?} not in {s:?}");
        }
        let s = explain_modify_failure("INIT->RTR", -libc::ETIMEDOUT, None);
        assert!(s.starts_with("ibv_modify_qp(INIT->RTR) returned ETIMEDOUT (110): connection timed out"), "{s}");
        assert!(s.contains("not reachable") && s.contains("ip neigh"), "{s}");
        assert!(!s.contains("attempted"), "{s}");
        let s = explain_modify_failure("RTR->RTS", libc::ENOMEM, None);
        assert!(s.contains("resources"), "{s}");
        let s = explain_modify_failure("RTR->RTS", libc::EPROTO, None);
        assert!(s.contains("provider-specific"), "{s}");
    }

    fn foreign_fx() -> (ForeignModify, ForeignPort) {
        let port = PortAttr {
            state: PortState::Active,
            max_mtu: 5,
            active_mtu: 3,
            gid_tbl_len: 16,
            lid: 0,
            link_layer: LinkLayer::Ethernet,
            max_msg_sz: 1 << 30,
        };
        let entry = GidEntry { gid: mapped(1), index: 1, gid_type: Some(GidType::RoceV2), ndev_ifindex: 2 };
        let req = ForeignModify {
            from: Some(QpState::Init),
            to: Some(QpState::Rtr),
            path_mtu: Some(3),
            sgid_index: Some(1),
            dgid: Some(mapped(2)),
            sl: Some(3),
            max_dest_rd_atomic: Some(1),
            dest_qpn: Some(0x11),
            rq_psn: Some(0),
        };
        (req, ForeignPort { port_num: 1, port, sgid_entry: Some(entry), max_qp_rd_atom: 128 })
    }

    #[test]
    fn foreign_modify_like_cephs_passes() {
        let (req, port) = foreign_fx();
        assert!(check_foreign_modify(&req, &port).is_ok());
        let rts = ForeignModify { from: Some(QpState::Rtr), to: Some(QpState::Rts), ..req };
        assert!(check_foreign_modify(&rts, &port).is_ok());
    }

    #[test]
    fn foreign_modify_names_each_cause() {
        let (req, port) = foreign_fx();
        let mtu = ForeignModify { path_mtu: Some(5), ..req.clone() };
        let e = check_foreign_modify(&mtu, &port).unwrap_err();
        assert!(e.msg.contains("path MTU 4096 is above port 1's active MTU 1024"), "{}", e.msg);
        let empty = ForeignPort { sgid_entry: None, ..port.clone() };
        let e = check_foreign_modify(&ForeignModify { sgid_index: Some(7), ..req.clone() }, &empty).unwrap_err();
        assert!(e.msg.contains("GID index 7 is empty"), "{}", e.msg);
        let e = check_foreign_modify(&ForeignModify { sgid_index: Some(40), ..req.clone() }, &port).unwrap_err();
        assert!(e.msg.contains("outside port 1's GID table"), "{}", e.msg);
        let e = check_foreign_modify(&ForeignModify { dgid: Some([0; 16]), ..req.clone() }, &port).unwrap_err();
        assert!(e.msg.contains("all zero"), "{}", e.msg);
        let e = check_foreign_modify(&ForeignModify { dgid: Some(link_local(2)), ..req.clone() }, &port).unwrap_err();
        assert!(e.msg.contains("address family"), "{}", e.msg);
        let e = check_foreign_modify(&ForeignModify { from: Some(QpState::Reset), ..req.clone() }, &port).unwrap_err();
        assert!(e.msg.contains("never moved to INIT"), "{}", e.msg);
        let e = check_foreign_modify(&ForeignModify { dest_qpn: Some(0x1234_5678), ..req }, &port).unwrap_err();
        assert!(e.msg.contains("24 bits"), "{}", e.msg);
    }
}
