//! `Ib`: the device half of Ceph's `Infiniband::init` — open the device by
//! name, bind the port, read the GID, allocate the PD and size the queues —
//! with every one of Ceph's asserts turned into an error that names the cause.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::gid::GidSelect;
use crate::text::gid_to_string;
use crate::verbs::device::mtu_bytes;
use crate::verbs::{Context, DeviceAttr, DeviceList, GidEntry, GidType, LinkLayer, Pd, PortAttr, PortState};
use std::sync::Arc;

/// An opened device with its bound port, GID and protection domain.
pub struct Ib {
    ctx: Arc<Context>,
    pd: Arc<Pd>,
    cfg: Config,
    dev: DeviceAttr,
    port_num: u8,
    port: PortAttr,
    gid: GidEntry,
    gid_select: GidSelect,
    /// The port's populated GID entries as last read (`ibstack_gid_select = auto`).
    gid_table: parking_lot::Mutex<GidTable>,
    tx_queue_len: u32,
    rx_queue_len: u32,
}

/// The GID table as last read, and when: a miss re-reads it (addresses come
/// and go), at most once per [`GID_REREAD`].
#[derive(Default)]
struct GidTable {
    entries: Vec<GidEntry>,
    read_at: Option<std::time::Instant>,
}

const GID_REREAD: std::time::Duration = std::time::Duration::from_millis(500);

fn no_device_message() -> String {
    let mut m = "no RDMA device found: load a provider (for Soft-RoCE: 'modprobe rdma_rxe; rdma link add rxe0 type \
                 rxe netdev <ifname>'; for hardware, the NIC's driver such as mlx5_ib) and check that \
                 /sys/class/infiniband lists it"
        .to_string();
    if let Some(h) = crate::prereq::device_nodes_hint() {
        m.push_str("; ");
        m.push_str(&h);
    }
    m
}

/// If `name` is a network interface, the RDMA devices bound to it.
pub fn rdma_devices_of_netdev(name: &str) -> Vec<String> {
    if name.contains('/') || !std::path::Path::new(&format!("/sys/class/net/{name}")).exists() {
        return Vec::new();
    }
    let mut found = Vec::new();
    let Ok(devs) = std::fs::read_dir("/sys/class/infiniband") else { return found };
    for dev in devs.flatten() {
        let dname = dev.file_name().to_string_lossy().into_owned();
        let Ok(ports) = std::fs::read_dir(dev.path().join("ports")) else { continue };
        'ports: for port in ports.flatten() {
            for idx in 0..16 {
                let p = port.path().join(format!("gid_attrs/ndevs/{idx}"));
                if std::fs::read_to_string(&p).map(|s| s.trim() == name).unwrap_or(false) {
                    found.push(dname.clone());
                    break 'ports;
                }
            }
        }
    }
    found
}

impl Ib {
    /// Open the device, bind the port and allocate the PD as `cfg` says.
    pub fn open(cfg: &Config) -> Result<Ib> {
        check_transport(cfg)?;
        warn_ignored_local_gid(cfg);
        let list = DeviceList::new()?;
        let index = find_device(&list, cfg)?;
        let ctx = Arc::new(list.open(index)?);
        drop(list);
        let dev = ctx.query_device().map_err(|e| e.context(format!("device {}", ctx.name())))?;
        let (port_num, port) = bind_port(&ctx, &dev, cfg)?;
        let gid = select_gid(&ctx, port_num, &port, cfg)?;
        let pd = open_pd(&ctx)?;
        let (tx_queue_len, rx_queue_len) = size_queues(&dev, cfg, ctx.name())?;
        let gid_select = GidSelect::from_option(&cfg.gid_select);
        let gid_table = parking_lot::Mutex::new(GidTable::default());
        let ib = Ib { ctx, pd, cfg: cfg.clone(), dev, port_num, port, gid, gid_select, gid_table, tx_queue_len, rx_queue_len };
        ib.log_opened();
        Ok(ib)
    }

    /// The info line that ends a successful `open`.
    fn log_opened(&self) {
        let (name, port_num, port, dev, gid) = (self.device_name(), self.port_num, &self.port, &self.dev, &self.gid);
        let (tx_queue_len, rx_queue_len) = (self.tx_queue_len, self.rx_queue_len);
        log::info!(
            "opened {name} port {port_num}: state {}, link {}, active MTU {}, lid {}, gid[{}] {} ({}){}, \
             max_qp_wr {}, max_srq_wr {}, max_cqe {}; tx_queue_len {tx_queue_len}, rx_queue_len {rx_queue_len}",
            port.state.name(),
            port.link_layer.name(),
            mtu_bytes(port.active_mtu),
            port.lid,
            self.cfg.gid_idx,
            gid_to_string(&gid.gid),
            gid.gid_type.map(|t| t.name()).unwrap_or("type unknown"),
            match (self.gid_select, port.link_layer) {
                (GidSelect::Index, _) => "",
                (GidSelect::Auto, LinkLayer::Ethernet) => ", connections pick theirs by local address (ibstack_gid_select = auto)",
                (GidSelect::Auto, _) => ", ibstack_gid_select = auto does not apply to an InfiniBand port: every connection uses it",
            },
            dev.max_qp_wr,
            dev.max_srq_wr,
            dev.max_cqe
        );
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }
    pub fn pd(&self) -> &Arc<Pd> {
        &self.pd
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn device_name(&self) -> &str {
        self.ctx.name()
    }
    pub fn device_attr(&self) -> &DeviceAttr {
        &self.dev
    }
    pub fn port_num(&self) -> u8 {
        self.port_num
    }
    pub fn port_attr(&self) -> &PortAttr {
        &self.port
    }
    /// The GID at ms_async_rdma_gid_idx (every connection's with
    /// `ibstack_gid_select = index`).
    pub fn gid(&self) -> &GidEntry {
        &self.gid
    }

    /// The GID a connection whose TCP side channel has local address `local`
    /// uses: with `ibstack_gid_select = auto` on an Ethernet port the RoCE v2
    /// entry of that address (EADDRNOTAVAIL naming the candidates when there
    /// is none), else [`Ib::gid`].
    pub fn gid_for_local(&self, local: Option<std::net::IpAddr>) -> Result<GidEntry> {
        if self.gid_select == GidSelect::Index || self.port.link_layer != LinkLayer::Ethernet {
            return Ok(self.gid);
        }
        let ip = local.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let mut t = self.gid_table.lock();
        if let Some(e) = crate::gid::entry_for(&t.entries, ip) {
            return Ok(e);
        }
        if t.read_at.map_or(true, |at| at.elapsed() >= GID_REREAD) {
            t.entries = crate::gid::populated(&self.ctx, self.port_num, self.port.gid_tbl_len.max(0) as u32);
            t.read_at = Some(std::time::Instant::now());
        }
        crate::gid::require_entry_for(&t.entries, ip, self.device_name(), self.port_num)
    }
    pub fn tx_queue_len(&self) -> u32 {
        self.tx_queue_len
    }
    pub fn rx_queue_len(&self) -> u32 {
        self.rx_queue_len
    }
    pub fn async_fd(&self) -> i32 {
        self.ctx.async_fd()
    }
    /// Re-read the port (state, MTU) now.
    pub fn query_port_now(&self) -> Result<PortAttr> {
        self.ctx.query_port(self.port_num)
    }
}

/// Only the verbs transport with the TCP handshake is implemented. Like
/// Ceph, a transport type other than "iwarp" means ib (with a warning when
/// it is not "ib" itself).
fn check_transport(cfg: &Config) -> Result<()> {
    if cfg.cm || cfg.rdma_type == "iwarp" {
        return Err(Error::new(
            libc::EOPNOTSUPP,
            format!(
                "ms_async_rdma_cm = {} / ms_async_rdma_type = {:?}: ibstack implements the verbs transport with \
                 the TCP cm_meta handshake only (Ceph's default); set ms_async_rdma_cm = false and \
                 ms_async_rdma_type = ib",
                cfg.cm, cfg.rdma_type
            ),
        ));
    }
    if cfg.rdma_type != "ib" {
        log::warn!(
            "ms_async_rdma_type = {:?} is not a transport type; it is treated as ib, as Ceph does (only \"iwarp\" \
             selects another transport)",
            cfg.rdma_type
        );
    }
    Ok(())
}

fn warn_ignored_local_gid(cfg: &Config) {
    if !cfg.local_gid.is_empty() {
        log::warn!(
            "ms_async_rdma_local_gid = {:?} is ignored (as in Ceph builds without experimental verbs); \
             ms_async_rdma_gid_idx selects the GID",
            cfg.local_gid
        );
    }
}

/// The index in `list` of the device `ms_async_rdma_device_name` names (the
/// first device when it is empty).
fn find_device(list: &DeviceList, cfg: &Config) -> Result<usize> {
    if list.is_empty() {
        return Err(Error::new(libc::ENODEV, no_device_message()));
    }
    if cfg.device_name.is_empty() {
        return Ok(0);
    }
    let names = list.names();
    names.iter().position(|n| *n == cfg.device_name).ok_or_else(|| {
        let mut m = format!(
            "ms_async_rdma_device_name = {:?} matches no RDMA device; devices present: {}",
            cfg.device_name,
            names.join(", ")
        );
        let owners = rdma_devices_of_netdev(&cfg.device_name);
        if !owners.is_empty() {
            m.push_str(&format!(
                "; {:?} is a network interface, its RDMA device is {} (use that name)",
                cfg.device_name,
                owners.join(" or ")
            ));
        } else {
            m.push_str(" (give the RDMA device name as 'ibv_devices' or 'rdma link' shows it, not the netdev)");
        }
        Error::new(libc::ENODEV, m)
    })
}

/// The configured port, which must exist and be ACTIVE.
fn bind_port(ctx: &Context, dev: &DeviceAttr, cfg: &Config) -> Result<(u8, PortAttr)> {
    let name = ctx.name();
    if cfg.port_num == 0 || cfg.port_num > dev.phys_port_cnt as u32 {
        return Err(Error::inval(format!(
            "ms_async_rdma_port_num = {} does not exist on {name}, which has {} port(s) numbered from 1",
            cfg.port_num, dev.phys_port_cnt
        )));
    }
    let port_num = cfg.port_num as u8;
    let port = ctx.query_port(port_num).map_err(|e| e.context(format!("device {name}")))?;
    if port.state != PortState::Active {
        return Err(Error::new(
            libc::ENETDOWN,
            format!(
                "port {port_num} of {name} is {} (state {}), not PORT_ACTIVE: check the link (cable, switch, \
                 'ip link' of the netdev for RoCE) and, on InfiniBand, that a subnet manager runs",
                port.state.name(),
                port.state.raw()
            ),
        ));
    }
    Ok((port_num, port))
}

/// The GID at `ms_async_rdma_gid_idx`: inside the table, populated, and of a
/// type the port's link layer can use.
fn select_gid(ctx: &Context, port_num: u8, port: &PortAttr, cfg: &Config) -> Result<GidEntry> {
    let name = ctx.name();
    let tbl = port.gid_tbl_len.max(0) as u32;
    if cfg.gid_idx >= tbl {
        return Err(Error::inval(format!(
            "ms_async_rdma_gid_idx = {} is outside the GID table of {name} port {port_num}, which has {tbl} \
             entries (0..{}); {}",
            cfg.gid_idx,
            tbl.saturating_sub(1),
            gid_table_summary(ctx, port_num, tbl)
        )));
    }
    let gid = match ctx.query_gid(port_num, cfg.gid_idx)? {
        Some(g) if g.gid != [0u8; 16] => g,
        _ => {
            return Err(Error::inval(format!(
                "ms_async_rdma_gid_idx = {} is an empty slot of the GID table of {name} port {port_num} (table \
                 size {tbl}); {}",
                cfg.gid_idx,
                gid_table_summary(ctx, port_num, tbl)
            )))
        }
    };
    match (port.link_layer, gid.gid_type) {
        (LinkLayer::Ethernet, Some(GidType::Ib)) | (LinkLayer::InfiniBand, Some(GidType::RoceV1 | GidType::RoceV2)) => {
            return Err(Error::inval(format!(
                "GID index {} of {name} has type {} but the port's link layer is {}",
                cfg.gid_idx,
                gid.gid_type.map(|t| t.name()).unwrap_or("?"),
                port.link_layer.name()
            )));
        }
        _ => {}
    }
    let auto = GidSelect::from_option(&cfg.gid_select) == GidSelect::Auto;
    if !auto && gid.gid_type == Some(GidType::RoceV2) && gid.gid[0] == 0xfe && gid.gid[1] & 0xc0 == 0x80 {
        log::warn!(
            "GID index {} of {name} is a link-local RoCE v2 GID ({}); it does not route between hosts and \
             changes with the MAC address; an IPv4-mapped GID index is usually what you want",
            cfg.gid_idx,
            gid_to_string(&gid.gid)
        );
    }
    Ok(gid)
}

/// The protection domain, and the async event fd made non-blocking.
fn open_pd(ctx: &Arc<Context>) -> Result<Arc<Pd>> {
    let pd = Arc::new(Pd::new(ctx.clone()).map_err(|e| e.context(format!("device {}", ctx.name())))?);
    ctx.set_async_fd_nonblocking()?;
    Ok(pd)
}

/// (tx_queue_len, rx_queue_len) as configured, capped to what device `name`
/// allows (Infiniband::init steps 7-9).
fn size_queues(dev: &DeviceAttr, cfg: &Config, name: &str) -> Result<(u32, u32)> {
    // Two SQ slots stay free beyond the data chunks: the close (fin) SEND
    // and the beacon (Ceph keeps only one and lets the fin take it).
    let tx_cap = (dev.max_qp_wr.max(2) - 2).max(0) as u32;
    let mut tx_queue_len = cfg.send_buffers;
    if tx_queue_len > tx_cap {
        log::warn!(
            "ms_async_rdma_send_buffers = {} exceeds what {name} allows (max_qp_wr {} minus the two slots kept for \
             the close SEND and the beacon); using {tx_cap}",
            cfg.send_buffers,
            dev.max_qp_wr
        );
        tx_queue_len = tx_cap;
    }
    let (rx_cap, rx_limit_name) = if cfg.support_srq {
        if dev.max_srq == 0 || dev.max_srq_wr <= 0 {
            return Err(Error::new(
                libc::EOPNOTSUPP,
                format!("{name} has no shared receive queues; set ms_async_rdma_support_srq = false"),
            ));
        }
        (dev.max_srq_wr as u32, "max_srq_wr")
    } else {
        (dev.max_qp_wr.max(0) as u32, "max_qp_wr")
    };
    let mut rx_queue_len = cfg.receive_queue_len;
    if rx_queue_len > rx_cap {
        log::warn!(
            "ms_async_rdma_receive_queue_len = {} exceeds {name}'s {rx_limit_name} {rx_cap}; using {rx_cap}",
            cfg.receive_queue_len
        );
        rx_queue_len = rx_cap;
    }
    if cfg.receive_buffers > 0 && rx_queue_len > cfg.receive_buffers {
        return Err(Error::inval(format!(
            "the receive queue holds {rx_queue_len} buffers but ms_async_rdma_receive_buffers = {} caps the RX \
             pool below that; raise receive_buffers to at least {rx_queue_len} or lower \
             ms_async_rdma_receive_queue_len",
            cfg.receive_buffers
        )));
    }
    let tx_bytes = cfg.buffer_size.saturating_mul(tx_queue_len as u64);
    if tx_bytes > dev.max_mr_size {
        return Err(Error::inval(format!(
            "the TX pool (ms_async_rdma_buffer_size {} x {tx_queue_len} buffers = {tx_bytes} bytes) exceeds \
             {name}'s max_mr_size {}; lower buffer_size or send_buffers",
            cfg.buffer_size, dev.max_mr_size
        )));
    }
    Ok((tx_queue_len, rx_queue_len))
}


/// "non-empty slots: 0 fe80::… (RoCE v2), 1 ::ffff:10.0.0.1 (RoCE v2)" to help pick an index.
pub fn gid_table_summary(ctx: &Context, port: u8, tbl: u32) -> String {
    let mut slots = Vec::new();
    for i in 0..tbl.min(256) {
        if let Ok(Some(g)) = ctx.query_gid(port, i) {
            if g.gid != [0u8; 16] {
                slots.push(format!(
                    "{i} = {} ({})",
                    gid_to_string(&g.gid),
                    g.gid_type.map(|t| t.name()).unwrap_or("type unknown")
                ));
            }
        }
    }
    if slots.is_empty() {
        "the table has no valid entries (is an IP address configured on the netdev?)".into()
    } else {
        format!("valid entries: {}", slots.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;


    #[test]
    fn unknown_transport_types_mean_ib_as_in_ceph() {
        for t in ["ib", "roce", "IB", ""] {
            let cfg = Config { rdma_type: t.into(), ..Config::default() };
            assert!(check_transport(&cfg).is_ok(), "{t:?}");
        }
        let cfg = Config { rdma_type: "iwarp".into(), ..Config::default() };
        assert_eq!(check_transport(&cfg).unwrap_err().errno, libc::EOPNOTSUPP);
    }

    #[test]
    fn iwarp_and_cm_are_refused_with_a_reason() {
        let cfg = Config { cm: true, ..Config::default() };
        let e = Ib::open(&cfg).err().unwrap();
        assert_eq!(e.errno, libc::EOPNOTSUPP);
        assert!(e.msg.contains("ms_async_rdma_cm"));
    }
}

impl Ib {
    /// The depth of a new CQ: `requested`, or with 0 the configured
    /// ibstack_cq_depth (at least 1) capped at the device's max_cqe (with a
    /// warning). An explicit depth is left for the device to judge.
    pub fn cq_depth(&self, requested: u32) -> u32 {
        if requested != 0 {
            return requested;
        }
        let max_cqe = self.device_attr().max_cqe.max(1) as u32;
        let depth = self.config().cq_depth.max(1);
        if depth > max_cqe {
            log::warn!("ibstack_cq_depth {depth} is above {}'s max_cqe {max_cqe}; using {max_cqe}", self.device_name());
            return max_cqe;
        }
        depth
    }
}
