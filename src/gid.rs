//! GIDs as IP addresses: which entries of a port's GID table carry which
//! address, how they are described to an operator, and the choice
//! `ibstack_gid_select = auto` makes per connection (the RoCE v2 GID whose
//! address is the local address of the connection's TCP side channel).

use crate::error::{Error, Result};
use crate::verbs::{Context, GidEntry, GidType};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How connections pick their GID (`ibstack_gid_select`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GidSelect {
    /// `ms_async_rdma_gid_idx` for every connection (Ceph's rule).
    Index,
    /// Per connection, by the TCP side channel's local address.
    Auto,
}

impl GidSelect {
    /// The option's text; the config layer admits only "index" and "auto".
    pub fn from_option(v: &str) -> GidSelect {
        if v == "auto" {
            GidSelect::Auto
        } else {
            GidSelect::Index
        }
    }
}

/// The IPv4 address of an IPv4-mapped GID (`::ffff:a.b.c.d`).
pub fn v4_of(g: &[u8; 16]) -> Option<Ipv4Addr> {
    let mapped = g[..10].iter().all(|&b| b == 0) && g[10] == 0xff && g[11] == 0xff;
    mapped.then(|| Ipv4Addr::new(g[12], g[13], g[14], g[15]))
}

/// The address a GID stands for, as an operator writes it.
pub fn gid_addr(g: &[u8; 16]) -> String {
    match v4_of(g) {
        Some(a) => a.to_string(),
        None => Ipv6Addr::from(*g).to_string(),
    }
}

/// The GID bytes a RoCE v2 entry has for `ip` (IPv4 addresses are mapped;
/// an IPv4-mapped IPv6 address is the IPv4 address).
pub fn gid_of_ip(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// The name of network interface `ifindex` (None for 0 or an unknown index).
pub fn ifname(ifindex: u32) -> Option<String> {
    if ifindex == 0 {
        return None;
    }
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    Some(unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
}

/// "3 = 10.0.0.1 (RoCE v2, eth0)".
pub fn describe_entry(g: &GidEntry) -> String {
    let ty = g.gid_type.map(|t| t.name()).unwrap_or("type unknown");
    match ifname(g.ndev_ifindex) {
        Some(n) => format!("{} = {} ({ty}, {n})", g.index, gid_addr(&g.gid)),
        None => format!("{} = {} ({ty})", g.index, gid_addr(&g.gid)),
    }
}

/// The populated entries of a port's GID table (the first 256 slots).
pub fn populated(ctx: &Context, port: u8, tbl: u32) -> Vec<GidEntry> {
    (0..tbl.min(256)).filter_map(|i| ctx.query_gid(port, i).ok().flatten()).filter(|g| g.gid != [0u8; 16]).collect()
}

/// The RoCE v2 entry whose address is `ip`. A provider that reports no
/// types is matched by address alone.
pub fn entry_for(entries: &[GidEntry], ip: IpAddr) -> Option<GidEntry> {
    let want = gid_of_ip(canonical(ip));
    let by_addr = entries.iter().filter(|e| e.gid == want);
    let mut v2 = by_addr.clone().filter(|e| e.gid_type == Some(GidType::RoceV2));
    v2.next().or_else(|| by_addr.clone().find(|e| e.gid_type.is_none())).copied()
}

/// An IPv4-mapped IPv6 address (a dual-stack socket's view of IPv4) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// `entry_for`, or the error that names the address, the candidates and the fix.
pub fn require_entry_for(entries: &[GidEntry], ip: IpAddr, dev: &str, port: u8) -> Result<GidEntry> {
    if let Some(e) = entry_for(entries, ip) {
        return Ok(e);
    }
    let ip = canonical(ip);
    let cands: Vec<String> = entries.iter().filter(|e| e.gid_type != Some(GidType::RoceV1)).map(describe_entry).collect();
    let cands =
        if cands.is_empty() { "none (is an IP address configured on the RDMA netdev?)".to_string() } else { cands.join(", ") };
    let why = if ip.is_loopback() {
        "a loopback address has no GID: connect to an address of the RDMA netdev"
    } else if ip.is_unspecified() {
        "the socket has no local address yet (adopt it once connect(2) was called)"
    } else {
        "connect through an address of the RDMA netdev, or add this address to it"
    };
    Err(Error::new(
        libc::EADDRNOTAVAIL,
        format!(
            "ibstack_gid_select = auto: no RoCE v2 GID of {dev} port {port} has the connection's local address {ip} \
             (its TCP side channel's); candidates: {cands}; fix: {why}, or set ibstack_gid_select = index and \
             ms_async_rdma_gid_idx"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u32, ip: &str, ty: Option<GidType>) -> GidEntry {
        let ip: IpAddr = ip.parse().unwrap();
        GidEntry { gid: gid_of_ip(ip), index, gid_type: ty, ndev_ifindex: 0 }
    }

    fn table() -> Vec<GidEntry> {
        vec![
            entry(0, "fe80::1", Some(GidType::RoceV1)),
            entry(1, "fe80::1", Some(GidType::RoceV2)),
            entry(2, "10.0.0.1", Some(GidType::RoceV1)),
            entry(3, "10.0.0.1", Some(GidType::RoceV2)),
            entry(4, "10.1.0.1", Some(GidType::RoceV2)),
            entry(5, "2001:db8::5", Some(GidType::RoceV2)),
        ]
    }

    #[test]
    fn the_roce_v2_entry_of_the_local_address_wins() {
        let t = table();
        assert_eq!(entry_for(&t, "10.0.0.1".parse().unwrap()).unwrap().index, 3);
        assert_eq!(entry_for(&t, "10.1.0.1".parse().unwrap()).unwrap().index, 4);
        assert_eq!(entry_for(&t, "2001:db8::5".parse().unwrap()).unwrap().index, 5);
        // a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
        assert_eq!(entry_for(&t, "::ffff:10.1.0.1".parse().unwrap()).unwrap().index, 4);
    }

    #[test]
    fn a_roce_v1_only_address_does_not_match_but_untyped_entries_do() {
        let t = vec![entry(2, "10.0.0.1", Some(GidType::RoceV1))];
        assert!(entry_for(&t, "10.0.0.1".parse().unwrap()).is_none());
        let t = vec![entry(7, "10.0.0.1", None)];
        assert_eq!(entry_for(&t, "10.0.0.1".parse().unwrap()).unwrap().index, 7);
    }

    #[test]
    fn no_match_names_the_address_the_candidates_and_the_fix() {
        let e = require_entry_for(&table(), "127.0.0.1".parse().unwrap(), "rxe0", 1).unwrap_err();
        assert_eq!(e.errno, libc::EADDRNOTAVAIL);
        for want in ["local address 127.0.0.1", "rxe0 port 1", "3 = 10.0.0.1 (RoCE v2)", "4 = 10.1.0.1", "loopback"] {
            assert!(e.msg.contains(want), "{want}: {}", e.msg);
        }
        assert!(!e.msg.contains("2 = 10.0.0.1"), "RoCE v1 entries are no candidates: {}", e.msg);
        let e = require_entry_for(&[], "10.9.9.9".parse().unwrap(), "rxe0", 1).unwrap_err();
        assert!(e.msg.contains("candidates: none"), "{}", e.msg);
    }

    #[test]
    fn addresses_of_gids() {
        assert_eq!(gid_addr(&gid_of_ip("10.0.0.1".parse().unwrap())), "10.0.0.1");
        assert_eq!(gid_addr(&gid_of_ip("fe80::1".parse().unwrap())), "fe80::1");
        assert_eq!(v4_of(&gid_of_ip("fe80::1".parse().unwrap())), None);
    }
}
