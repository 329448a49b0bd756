//! Host checks against a Ceph daemon's configuration: what `ibstack-doctor`
//! prints and what the guard (`libibstack_preload.so`) reports when Ceph's own
//! RDMA code first touches libibverbs. Each check gives one [`Check`]: `ok`,
//! `problem` (with the fix) or `note`. The checks name what Ceph 16.2 would do
//! with the same setting (an assert, a failed RTR, a bad length), since Ceph
//! itself validates almost none of them.

use crate::config::{conf_value, Config};
use crate::error::{Error, Result};
use crate::prereq::{check_pin, configured_pin_bytes, device_nodes_hint, Memlock, MEMLOCK_FIXES};
use crate::text::{human_bytes, json_string};
use crate::verbs::device::mtu_bytes;
use crate::gid::{describe_entry, gid_addr, populated, v4_of};
use crate::verbs::{Context, DeviceAttr, DeviceList, GidType, LinkLayer, PortAttr, PortState};
use std::path::{Path, PathBuf};

/// Ceph 16.2's fixed INIT->RTR path MTU, in bytes.
pub const CEPH_PATH_MTU: u32 = 1024;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Problem,
    Note,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Problem => "problem",
            Status::Note => "note",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Short key: `config`, `ms_type`, `device`, `port`, `gid`, `mtu`, ...
    pub name: &'static str,
    pub status: Status,
    /// What was found; for a problem also what Ceph does with it and the fix.
    pub text: String,
}

impl Check {
    fn new(name: &'static str, status: Status, text: impl Into<String>) -> Check {
        Check { name, status, text: text.into() }
    }
    /// `problem gid: ...`
    pub fn line(&self) -> String {
        format!("{} {}: {}", self.status.name(), self.name, self.text)
    }
}

/// Which configuration to check: the file, the daemon's section and the
/// options given on the daemon's command line (`--ms_type async+rdma`).
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub conf: PathBuf,
    pub section: String,
    pub overrides: Vec<(String, String)>,
    /// The file was named (environment or command line), not the default path.
    pub conf_named: bool,
}

/// Where the checks run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope {
    /// Look at the daemon's systemd unit (LimitMEMLOCK, PrivateDevices) when
    /// systemctl exists: the doctor does, the guard (inside the daemon) need not.
    pub systemd: bool,
}

/// The result of [`run`].
#[derive(Debug, Clone)]
pub struct Report {
    pub conf: PathBuf,
    pub section: String,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn problems(&self) -> usize {
        self.checks.iter().filter(|c| c.status == Status::Problem).count()
    }

    /// `{"conf":…,"section":…,"problems":N,"checks":[{"check":…,"status":…,"text":…}]}`
    pub fn to_json(&self) -> String {
        let mut s = String::from("{\"conf\":");
        json_string(&mut s, &self.conf.display().to_string());
        s.push_str(",\"section\":");
        json_string(&mut s, &self.section);
        s.push_str(&format!(",\"problems\":{},\"checks\":[", self.problems()));
        for (i, c) in self.checks.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str("{\"check\":");
            json_string(&mut s, c.name);
            s.push_str(",\"status\":");
            json_string(&mut s, c.status.name());
            s.push_str(",\"text\":");
            json_string(&mut s, &c.text);
            s.push('}');
        }
        s.push_str("]}");
        s
    }
}

/// The configuration as the daemon would read it: the file's sections for
/// `section`, then the command-line overrides. Keys outside ibstack's
/// options are kept in the text for [`conf_value`].
pub struct Loaded {
    pub cfg: Config,
    pub text: String,
}

impl Loaded {
    /// A key's value as the daemon sees it (override, then file), any subsystem's key.
    pub fn value(&self, section: &str, key: &str, overrides: &[(String, String)]) -> Option<String> {
        let k = crate::config::normalize_key(key);
        if let Some((_, v)) = overrides.iter().rev().find(|(ok, _)| crate::config::normalize_key(ok) == k) {
            return Some(v.clone());
        }
        conf_value(&self.text, "", section, &k).ok().flatten()
    }
}

/// Load `t`; the first check says how that went.
pub fn load(t: &Target) -> (Option<Loaded>, Check) {
    let origin = t.conf.display().to_string();
    let text = match std::fs::read_to_string(&t.conf) {
        Ok(s) => s,
        Err(e) => {
            return (
                None,
                Check::new(
                    "config",
                    Status::Problem,
                    format!(
                        "cannot read {origin}: {e}; give the daemon's file with -c (Ceph reads CEPH_CONF or \
                         /etc/ceph/ceph.conf)"
                    ),
                ),
            )
        }
    };
    let mut cfg = Config::default();
    if let Err(e) = cfg.load_str(&text, &origin, &t.section) {
        return (None, Check::new("config", Status::Problem, format!("{e}")));
    }
    for (k, v) in &t.overrides {
        // keys of other subsystems (ms_type, ...) are not options: Loaded::value reads them
        let _ = cfg.set(k, v);
    }
    let text_ok = format!("{origin} read for [{}] ({} command-line option(s))", t.section, t.overrides.len());
    (Some(Loaded { cfg, text }), Check::new("config", Status::Ok, text_ok))
}

/// Every host check for `t`, in a fixed order.
pub fn run(t: &Target, scope: Scope) -> Report {
    let (loaded, first) = load(t);
    let mut checks = vec![first];
    if let Some(l) = &loaded {
        checks.extend(host_checks(l, t, scope));
    }
    Report { conf: t.conf.clone(), section: t.section.clone(), checks }
}

/// The checks after loading: messenger types, device nodes, device, port,
/// GID, MTU, queues, memlock, huge pages.
pub fn host_checks(l: &Loaded, t: &Target, scope: Scope) -> Vec<Check> {
    let mut out = Vec::new();
    out.extend(check_ms_types(l, t));
    out.push(check_device_nodes(t, scope));
    let nets: Vec<(u32, u32)> = ["public_network", "cluster_network"]
        .iter()
        .filter_map(|k| l.value(&t.section, k, &t.overrides))
        .flat_map(|v| v.split(',').filter_map(parse_v4_net).collect::<Vec<_>>())
        .collect();
    let dev = DeviceFacts::read(&l.cfg, &nets);
    out.extend(dev.checks.iter().cloned());
    if let Some(d) = &dev.open {
        out.push(check_mtu(&l.cfg, &d.port));
        out.extend(check_queues(&l.cfg, &d.attr));
    }
    out.extend(check_memlock(&l.cfg, dev.open.as_ref().map(|d| &d.attr), t, scope));
    out.push(check_hugepages(&l.cfg));
    out
}

// ------------------------------------------------------------------ messenger types

fn is_rdma(ty: &str) -> bool {
    ty.trim() == "async+rdma"
}

/// (public, cluster) messenger types for `section` (Ceph: an empty
/// ms_public_type / ms_cluster_type means ms_type; ms_type defaults to async+posix).
fn ms_types(l: &Loaded, section: &str, ov: &[(String, String)]) -> (String, String, bool) {
    let base = l.value(section, "ms_type", ov);
    let explicit = base.is_some();
    let base = base.filter(|v| !v.is_empty()).unwrap_or_else(|| "async+posix".into());
    let pick = |k: &str| l.value(section, k, ov).filter(|v| !v.is_empty());
    let public = pick("ms_public_type");
    let cluster = pick("ms_cluster_type");
    let explicit = explicit || public.is_some() || cluster.is_some();
    (public.unwrap_or_else(|| base.clone()), cluster.unwrap_or(base), explicit)
}

const BAD_LENGTH: &str = "a posix peer's first bytes are its 26-byte msgr2 banner ('ceph v2\\n' + 16; 9 bytes \
'ceph v027' on msgr1) where Ceph's RDMA side reads a 65-byte cm_meta record: the RDMA side logs \
'Infiniband recv_cm_meta got bad length (26)' and faults, the posix side logs '_handle_peer_banner accept peer \
sent bad banner' or 'read_bulk peer close', and the connection is retried forever";

fn check_ms_types(l: &Loaded, t: &Target) -> Vec<Check> {
    let mut out = Vec::new();
    let (public, cluster, _) = ms_types(l, &t.section, &t.overrides);
    if !is_rdma(&public) && !is_rdma(&cluster) {
        out.push(Check::new(
            "ms_type",
            Status::Note,
            format!(
                "[{}] uses {public} (public) / {cluster} (cluster): no RDMA messenger; the checks below say what \
                 async+rdma would need",
                t.section
            ),
        ));
        return out;
    }
    // every daemon type whose messenger the file sets explicitly must speak the same public type
    let mut disagree = Vec::new();
    for other in ["mon", "osd", "mds", "mgr", "client"] {
        if t.section == other || t.section.starts_with(&format!("{other}.")) {
            continue;
        }
        let (op, _, explicit) = ms_types(l, other, &[]);
        if explicit && is_rdma(&op) != is_rdma(&public) {
            disagree.push(format!("[{other}] {op}"));
        }
    }
    if disagree.is_empty() {
        let mixed = if public != cluster {
            format!(" (public and cluster networks differ: {public} / {cluster}; each side of each network must agree)")
        } else {
            String::new()
        };
        out.push(Check::new(
            "ms_type",
            Status::Ok,
            format!("[{}] speaks {public} (public) / {cluster} (cluster){mixed}", t.section),
        ));
    } else {
        out.push(Check::new(
            "ms_type",
            Status::Problem,
            format!(
                "[{}] speaks {public} on the public network but {} do not: {BAD_LENGTH}; fix: set ms_type (or \
                 ms_public_type / ms_cluster_type) to the same value for every daemon and client of a network",
                t.section,
                disagree.join(", ")
            ),
        ));
    }
    out
}

// ------------------------------------------------------------------ device nodes

/// The systemd unit a section's daemon runs as (`osd.3` → `ceph-osd@3`).
pub fn systemd_unit(section: &str) -> Option<String> {
    let (ty, id) = section.split_once('.')?;
    matches!(ty, "osd" | "mon" | "mds" | "mgr").then(|| format!("ceph-{ty}@{id}.service"))
}

/// `systemctl show -p PROP --value UNIT`, when systemctl exists and answers.
fn systemctl_show(unit: &str, prop: &str) -> Option<String> {
    let out = std::process::Command::new("systemctl")
        .args(["show", "-p", prop, "--value", unit])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
}

fn check_device_nodes(t: &Target, scope: Scope) -> Check {
    if let Some(h) = device_nodes_hint() {
        return Check::new(
            "device_nodes",
            Status::Problem,
            format!(
                "{h}; Ceph then dies in DeviceList with 'FAILED ceph_assert(num)'; fix: PrivateDevices=no in the \
                 unit (systemctl edit), or pass the device into the container"
            ),
        );
    }
    if scope.systemd {
        if let Some(unit) = systemd_unit(&t.section) {
            if systemctl_show(&unit, "PrivateDevices").as_deref() == Some("yes") {
                return Check::new(
                    "device_nodes",
                    Status::Problem,
                    format!(
                        "{unit} has PrivateDevices=yes: the daemon will not see /dev/infiniband and Ceph aborts \
                         with 'FAILED ceph_assert(num)'; fix: systemctl edit {unit} and set PrivateDevices=no"
                    ),
                );
            }
        }
    }
    let seen = std::path::Path::new("/dev/infiniband").exists();
    Check::new(
        "device_nodes",
        if seen { Status::Ok } else { Status::Note },
        if seen { "/dev/infiniband is visible".to_string() } else { "/dev/infiniband does not exist".to_string() },
    )
}

// ------------------------------------------------------------------ device, port, GID

/// What the device checks learned; `open` is set when the port could be read.
struct DeviceFacts {
    checks: Vec<Check>,
    open: Option<OpenDevice>,
}

struct OpenDevice {
    attr: DeviceAttr,
    port: PortAttr,
}

impl DeviceFacts {
    fn read(cfg: &Config, nets: &[(u32, u32)]) -> DeviceFacts {
        let mut checks = Vec::new();
        let open = open_and_check(cfg, nets, &mut checks);
        DeviceFacts { checks, open }
    }
}

fn open_and_check(cfg: &Config, nets: &[(u32, u32)], out: &mut Vec<Check>) -> Option<OpenDevice> {
    let list = match DeviceList::new() {
        Ok(l) => l,
        Err(e) => {
            out.push(Check::new("device", Status::Problem, format!("{e}")));
            return None;
        }
    };
    if list.is_empty() {
        let mut m = "no RDMA device: Ceph aborts with 'FAILED ceph_assert(num)'; fix: load the provider (mlx5_ib, \
                     or for Soft-RoCE 'rdma link add rxe0 type rxe netdev IF')"
            .to_string();
        if let Some(h) = device_nodes_hint() {
            m.push_str("; ");
            m.push_str(&h);
        }
        out.push(Check::new("device", Status::Problem, m));
        return None;
    }
    let names = list.names();
    let index = if cfg.device_name.is_empty() {
        out.push(Check::new(
            "device",
            Status::Note,
            format!("ms_async_rdma_device_name is empty: Ceph takes the first device, {}", names[0]),
        ));
        0
    } else if let Some(i) = names.iter().position(|n| *n == cfg.device_name) {
        out.push(Check::new("device", Status::Ok, format!("{} exists (devices: {})", cfg.device_name, names.join(", "))));
        i
    } else {
        let owners = crate::ib::rdma_devices_of_netdev(&cfg.device_name);
        let fix = if owners.is_empty() {
            format!("set ms_async_rdma_device_name to one of {}", names.join(", "))
        } else {
            format!("{:?} is a network interface; its RDMA device is {}: use that name", cfg.device_name, owners.join(" or "))
        };
        out.push(Check::new(
            "device",
            Status::Problem,
            format!(
                "ms_async_rdma_device_name = {:?} matches no RDMA device (present: {}): Ceph aborts in \
                 Infiniband::init with 'FAILED ceph_assert(device)'; fix: {fix}",
                cfg.device_name,
                names.join(", ")
            ),
        ));
        return None;
    };
    let ctx = match list.open(index) {
        Ok(c) => c,
        Err(e) => {
            out.push(Check::new("device", Status::Problem, format!("{e}")));
            return None;
        }
    };
    drop(list);
    let attr = match ctx.query_device() {
        Ok(a) => a,
        Err(e) => {
            out.push(Check::new("device", Status::Problem, format!("{e}")));
            return None;
        }
    };
    let port = check_port(&ctx, &attr, cfg, out)?;
    check_gid(&ctx, &port, cfg, nets, out);
    Some(OpenDevice { attr, port })
}

fn check_port(ctx: &Context, attr: &DeviceAttr, cfg: &Config, out: &mut Vec<Check>) -> Option<PortAttr> {
    let name = ctx.name();
    if cfg.port_num == 0 || cfg.port_num > attr.phys_port_cnt as u32 {
        out.push(Check::new(
            "port",
            Status::Problem,
            format!(
                "ms_async_rdma_port_num = {} does not exist on {name} ({} port(s) from 1): Ceph logs 'port not \
                 found' and aborts (ceph_assert(active_port)); fix: ms_async_rdma_port_num = 1",
                cfg.port_num, attr.phys_port_cnt
            ),
        ));
        return None;
    }
    let p = cfg.port_num as u8;
    let port = match ctx.query_port(p) {
        Ok(a) => a,
        Err(e) => {
            out.push(Check::new("port", Status::Problem, format!("{e}")));
            return None;
        }
    };
    if port.state == PortState::Active {
        out.push(Check::new(
            "port",
            Status::Ok,
            format!("{name} port {p} is ACTIVE, link layer {}", port.link_layer.name()),
        ));
    } else {
        out.push(Check::new(
            "port",
            Status::Problem,
            format!(
                "{name} port {p} is {}, not ACTIVE: Ceph aborts (ceph_assert(active_port)); fix: bring the link up \
                 (cable/switch, 'ip link set IF up' for RoCE, a subnet manager on InfiniBand)",
                port.state.name()
            ),
        ));
    }
    Some(port)
}

/// `10.0.0.0/24` → (network, prefix length).
fn parse_v4_net(s: &str) -> Option<(u32, u32)> {
    let (a, len) = s.trim().split_once('/')?;
    let a: std::net::Ipv4Addr = a.trim().parse().ok()?;
    let len: u32 = len.trim().parse().ok().filter(|l| *l <= 32)?;
    Some((u32::from(a), len))
}

fn in_v4_net(a: std::net::Ipv4Addr, (net, len): (u32, u32)) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(a) & mask == net & mask
}

fn check_gid(ctx: &Context, port: &PortAttr, cfg: &Config, nets: &[(u32, u32)], out: &mut Vec<Check>) {
    let (name, p) = (ctx.name(), cfg.port_num as u8);
    let tbl = port.gid_tbl_len.max(0) as u32;
    let entries = populated(ctx, p, tbl);
    let valid = if entries.is_empty() {
        "the table has no valid entries (is an IP address configured on the netdev?)".to_string()
    } else {
        format!("valid entries: {}", entries.iter().map(describe_entry).collect::<Vec<_>>().join(", "))
    };
    // which index fits each local address (RoCE v2 preferred)
    let mut per_addr: Vec<String> = Vec::new();
    for g in &entries {
        let best = entries
            .iter()
            .filter(|e| e.gid == g.gid)
            .max_by_key(|e| e.gid_type == Some(GidType::RoceV2))
            .map(|e| e.index);
        let line = format!("{} -> gid_idx {}", gid_addr(&g.gid), best.unwrap_or(g.index));
        if !per_addr.contains(&line) {
            per_addr.push(line);
        }
    }
    let idx = cfg.gid_idx;
    if idx >= tbl {
        out.push(Check::new(
            "gid",
            Status::Problem,
            format!(
                "ms_async_rdma_gid_idx = {idx} is outside {name} port {p}'s GID table ({tbl} entries): Ceph aborts \
                 at startup in Port::Port (ceph_assert on gid_tbl_len); {valid}; fix: set ms_async_rdma_gid_idx to \
                 one of them"
            ),
        ));
        return;
    }
    let Some(entry) = entries.iter().find(|e| e.index == idx).copied() else {
        out.push(Check::new(
            "gid",
            Status::Problem,
            format!(
                "ms_async_rdma_gid_idx = {idx} is an empty slot of {name} port {p}'s GID table: Ceph takes the \
                 all-zero GID without complaint, then every connection fails in modify_qp_to_rtr ('(22) \
                 Invalid argument', '(61) No data available' on newer kernels; or its peer's does) and the daemon aborts in ceph_assert(!r); {valid}; fix: \
                 set ms_async_rdma_gid_idx to a populated index"
            ),
        ));
        return;
    };
    let ty = entry.gid_type;
    let fits = match (port.link_layer, ty) {
        (LinkLayer::Ethernet, Some(GidType::Ib)) | (LinkLayer::InfiniBand, Some(GidType::RoceV1 | GidType::RoceV2)) => false,
        _ => true,
    };
    if !fits {
        out.push(Check::new(
            "gid",
            Status::Problem,
            format!(
                "GID index {idx} has type {} but port {p}'s link layer is {}: RTR fails with EINVAL and Ceph aborts \
                 (ceph_assert(!r)); {valid}",
                ty.map(|t| t.name()).unwrap_or("?"),
                port.link_layer.name()
            ),
        ));
        return;
    }
    // the network the daemon's addresses are on, when ceph.conf gives IPv4 ones: `nets`
    let fitting: Vec<u32> = entries
        .iter()
        .filter(|e| port.link_layer != LinkLayer::Ethernet || e.gid_type == Some(GidType::RoceV2))
        .filter(|e| v4_of(&e.gid).is_some_and(|a| nets.iter().any(|n| in_v4_net(a, *n))))
        .map(|e| e.index)
        .collect();
    let addr_note = format!("per local address: {}", per_addr.join(", "));
    if cfg.gid_select == "auto" && port.link_layer == LinkLayer::Ethernet {
        out.push(check_gid_auto(&entries, nets, &fitting, &addr_note));
        return;
    }
    if !nets.is_empty() && !v4_of(&entry.gid).is_some_and(|a| nets.iter().any(|n| in_v4_net(a, *n))) {
        let fix = match fitting.first() {
            Some(i) => format!("set ms_async_rdma_gid_idx = {i}"),
            None => "configure an address of that network on the RDMA netdev".to_string(),
        };
        out.push(Check::new(
            "gid",
            Status::Problem,
            format!(
                "GID index {idx} is {} but the configured network is IPv4 ({}): peers on that network resolve \
                 the GID through IPv4 routes and RTR fails or traffic never arrives; {addr_note}; fix: {fix}",
                describe_entry(&entry),
                nets.iter()
                    .map(|(n, l)| format!("{}/{l}", std::net::Ipv4Addr::from(*n)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
        return;
    }
    if port.link_layer == LinkLayer::Ethernet && ty == Some(GidType::RoceV1) {
        let v2 = entries.iter().find(|e| e.gid == entry.gid && e.gid_type == Some(GidType::RoceV2));
        out.push(Check::new(
            "gid",
            Status::Note,
            format!(
                "GID index {idx} is {} (RoCE v1: not routable, peers must share the L2 segment){}; {addr_note}",
                describe_entry(&entry),
                v2.map(|e| format!("; the RoCE v2 entry of the same address is {}", e.index)).unwrap_or_default()
            ),
        ));
        return;
    }
    out.push(Check::new("gid", Status::Ok, format!("GID index {}; {addr_note}", describe_entry(&entry))));
}

/// `ibstack_gid_select = auto`: every connection takes the RoCE v2 GID of its
/// local address, so the question is whether the configured network has one.
fn check_gid_auto(entries: &[crate::verbs::GidEntry], nets: &[(u32, u32)], fitting: &[u32], addr_note: &str) -> Check {
    let v2: Vec<String> =
        entries.iter().filter(|e| e.gid_type == Some(GidType::RoceV2)).map(describe_entry).collect();
    let nets_text =
        nets.iter().map(|(n, l)| format!("{}/{l}", std::net::Ipv4Addr::from(*n))).collect::<Vec<_>>().join(", ");
    if v2.is_empty() {
        return Check::new(
            "gid",
            Status::Problem,
            "ibstack_gid_select = auto, but the port has no RoCE v2 GID: every connection would fail with \
             EADDRNOTAVAIL; fix: configure an IP address on the RDMA netdev"
                .to_string(),
        );
    }
    if !nets.is_empty() && fitting.is_empty() {
        return Check::new(
            "gid",
            Status::Problem,
            format!(
                "ibstack_gid_select = auto, but no RoCE v2 GID is on the configured network ({nets_text}): \
                 connections from those addresses fail with EADDRNOTAVAIL; RoCE v2 GIDs: {}; fix: put the RDMA \
                 netdev on that network",
                v2.join(", ")
            ),
        );
    }
    Check::new(
        "gid",
        Status::Ok,
        format!(
            "ibstack_gid_select = auto: each connection uses the RoCE v2 GID of its local address \
             (ms_async_rdma_gid_idx is not used for connections); {addr_note}"
        ),
    )
}

// ------------------------------------------------------------------ MTU, queues

fn check_mtu(cfg: &Config, port: &PortAttr) -> Check {
    let active = mtu_bytes(port.active_mtu);
    if active < CEPH_PATH_MTU {
        return Check::new(
            "mtu",
            Status::Problem,
            format!(
                "the port's active MTU is {active} but Ceph moves every QP to RTR with path MTU {CEPH_PATH_MTU}: \
                 RTR fails with EINVAL and the daemon aborts (ceph_assert(!r)); fix: raise the netdev's MTU \
                 (RoCE needs about 1100 bytes or more for an RDMA MTU of 1024)"
            ),
        );
    }
    if cfg.path_mtu > active {
        return Check::new(
            "mtu",
            Status::Problem,
            format!(
                "ibstack_path_mtu = {} is above the port's active MTU {active}: ibstack refuses RTR; fix: \
                 ibstack_path_mtu = {CEPH_PATH_MTU} (what Ceph peers use)",
                cfg.path_mtu
            ),
        );
    }
    Check::new(
        "mtu",
        Status::Ok,
        format!(
            "active MTU {active} (max {}) carries Ceph's path MTU {CEPH_PATH_MTU} and ibstack_path_mtu {}",
            mtu_bytes(port.max_mtu),
            cfg.path_mtu
        ),
    )
}

/// The TX pool Ceph registers at init: buffer_size × min(send_buffers, max_qp_wr − 1).
fn tx_pool_bytes(cfg: &Config, attr: Option<&DeviceAttr>) -> u64 {
    let n = match attr {
        Some(a) => cfg.send_buffers.min((a.max_qp_wr.max(1) - 1) as u32),
        None => cfg.send_buffers,
    };
    cfg.buffer_size.saturating_mul(n as u64)
}

fn check_queues(cfg: &Config, a: &DeviceAttr) -> Vec<Check> {
    let mut out = Vec::new();
    let (cap, cap_name) = if cfg.support_srq { (a.max_srq_wr.max(0) as u32, "max_srq_wr") } else { (a.max_qp_wr.max(0) as u32, "max_qp_wr") };
    let rq = cfg.receive_queue_len.min(cap);
    if cfg.receive_buffers > 0 && rq > cfg.receive_buffers {
        out.push(Check::new(
            "queues",
            Status::Problem,
            format!(
                "the receive queue holds {rq} buffers (ms_async_rdma_receive_queue_len {}, device {cap_name} {cap}) \
                 but ms_async_rdma_receive_buffers = {}: Ceph logs 'rx_queue_len is larger than receive_buffers' \
                 and aborts at init; fix: receive_buffers >= {rq} or a smaller receive_queue_len",
                cfg.receive_queue_len, cfg.receive_buffers
            ),
        ));
    } else {
        let clamp = if cfg.receive_queue_len > cap {
            format!(" (receive_queue_len {} is clamped to the device's {cap_name} {cap})", cfg.receive_queue_len)
        } else {
            String::new()
        };
        out.push(Check::new(
            "queues",
            Status::Ok,
            format!(
                "receive queue {rq} <= receive_buffers {}{clamp}; send_buffers {} vs max_qp_wr {}",
                if cfg.receive_buffers == 0 { "unlimited".to_string() } else { cfg.receive_buffers.to_string() },
                cfg.send_buffers,
                a.max_qp_wr
            ),
        ));
    }
    let tx = tx_pool_bytes(cfg, Some(a));
    if tx > a.max_mr_size {
        out.push(Check::new(
            "queues",
            Status::Problem,
            format!(
                "the TX pool ({}) exceeds the device's max_mr_size {}: Ceph aborts ('Out of max memory region \
                 size'); fix: lower ms_async_rdma_buffer_size or ms_async_rdma_send_buffers",
                human_bytes(tx),
                a.max_mr_size
            ),
        ));
    }
    out
}

// ------------------------------------------------------------------ memlock, huge pages

/// A systemd `LimitMEMLOCK` value: `None` = infinity.
fn parse_limit(v: &str) -> Option<Option<u64>> {
    if v == "infinity" {
        return Some(None);
    }
    v.parse::<u64>().ok().map(Some)
}

fn check_memlock(cfg: &Config, attr: Option<&DeviceAttr>, t: &Target, scope: Scope) -> Vec<Check> {
    let mut out = Vec::new();
    let lim = Memlock::read();
    let tx = tx_pool_bytes(cfg, attr);
    let total = configured_pin_bytes(cfg);
    // SAFETY: plain getters.
    let (uid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
    let who = format!("this process (uid {uid}{})", if uid != euid { format!(", euid {euid}") } else { String::new() });
    let what = format!(
        "Ceph's TX pool (ms_async_rdma_buffer_size {} x {} send buffers, one ibv_reg_mr at init)",
        cfg.buffer_size,
        tx / cfg.buffer_size.max(1)
    );
    match check_pin(tx, &what, &lim) {
        Err(e) => out.push(Check::new(
            "memlock",
            Status::Problem,
            format!("{who}: {}; Ceph aborts in Cluster::fill with 'FAILED ceph_assert(m)'", e.msg),
        )),
        Ok(()) => {
            let limit = match (lim.cap_ipc_lock, lim.soft) {
                (true, _) => "CAP_IPC_LOCK (no limit applies)".to_string(),
                (false, None) => "RLIMIT_MEMLOCK unlimited".to_string(),
                (false, Some(s)) => format!("RLIMIT_MEMLOCK {}", human_bytes(s)),
            };
            match (total, lim.available()) {
                (Some(all), Some(avail)) if all > avail => out.push(Check::new(
                    "memlock",
                    Status::Note,
                    format!(
                        "{who}: {limit} fits the TX pool ({}) but not every buffer the pools may pin ({}); RX \
                         registrations past the limit fail later; {MEMLOCK_FIXES}",
                        human_bytes(tx),
                        human_bytes(all)
                    ),
                )),
                (None, Some(_)) => out.push(Check::new(
                    "memlock",
                    Status::Note,
                    format!("{who}: {limit}, but ms_async_rdma_receive_buffers = 0 lets the RX pool grow without bound"),
                )),
                _ => out.push(Check::new(
                    "memlock",
                    Status::Ok,
                    format!(
                        "{who}: {limit} covers the pools ({} TX{})",
                        human_bytes(tx),
                        total.map(|a| format!(", {} in all", human_bytes(a))).unwrap_or_default()
                    ),
                )),
            }
        }
    }
    if !scope.systemd {
        return out;
    }
    let Some(unit) = systemd_unit(&t.section) else {
        out.push(Check::new(
            "memlock_unit",
            Status::Note,
            format!("[{}] is not a systemd-managed daemon: the limit of the shell that starts it applies", t.section),
        ));
        return out;
    };
    match systemctl_show(&unit, "LimitMEMLOCK").and_then(|v| parse_limit(&v).map(|l| (v, l))) {
        None => out.push(Check::new(
            "memlock_unit",
            Status::Note,
            format!("cannot tell {unit}'s LimitMEMLOCK (no systemctl, or systemd does not answer)"),
        )),
        Some((_, None)) => out.push(Check::new("memlock_unit", Status::Ok, format!("{unit}: LimitMEMLOCK=infinity"))),
        Some((v, Some(n))) if n < tx => out.push(Check::new(
            "memlock_unit",
            Status::Problem,
            format!(
                "{unit}: LimitMEMLOCK={v} is below the TX pool's {}: the daemon (user ceph, no CAP_IPC_LOCK) aborts \
                 in Cluster::fill with 'FAILED ceph_assert(m)'; fix: systemctl edit {unit}, add [Service] \
                 LimitMEMLOCK=infinity, restart",
                human_bytes(tx)
            ),
        )),
        Some((v, Some(_))) => out.push(Check::new("memlock_unit", Status::Ok, format!("{unit}: LimitMEMLOCK={v} covers the TX pool"))),
    }
    out
}

fn meminfo(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    s.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn check_hugepages(cfg: &Config) -> Check {
    if !cfg.enable_hugepage {
        return Check::new("hugepages", Status::Ok, "ms_async_rdma_enable_hugepage = false (normal pages)");
    }
    let free = meminfo("HugePages_Free:").unwrap_or(0);
    let size = meminfo("Hugepagesize:").unwrap_or(2048) * 1024;
    let need = configured_pin_bytes(cfg).unwrap_or(cfg.buffer_size.saturating_mul(cfg.send_buffers as u64));
    let pages = need.div_ceil(size.max(1));
    if free * size < need {
        return Check::new(
            "hugepages",
            Status::Problem,
            format!(
                "ms_async_rdma_enable_hugepage = true but only {free} huge pages of {} are free and the pools need \
                 {} ({pages} pages): Ceph's huge-page allocations fail and fall back or abort; fix: sysctl \
                 vm.nr_hugepages={pages} (or more), or ms_async_rdma_enable_hugepage = false",
                human_bytes(size),
                human_bytes(need)
            ),
        );
    }
    Check::new("hugepages", Status::Ok, format!("{free} free huge pages of {} cover {}", human_bytes(size), human_bytes(need)))
}

// ------------------------------------------------------------------ where a daemon reads its config

/// The daemon type a program name stands for (`ceph-osd` → `osd`).
pub fn daemon_type(program: &str) -> Option<&'static str> {
    let base = Path::new(program).file_name()?.to_str()?;
    ["osd", "mon", "mds", "mgr"].into_iter().find(|t| base == format!("ceph-{t}"))
}

/// Ceph's command-line view of a process: `-c/--conf`, `-n/--name`,
/// `-i/--id` and `--key value` / `--key=value` options (dashes or
/// underscores) that concern the checks. Returns (conf, name, overrides).
pub fn parse_ceph_args(args: &[String]) -> (Option<String>, Option<String>, Vec<(String, String)>) {
    let (mut conf, mut name, mut id) = (None, None, None);
    let mut ov = Vec::new();
    let prog = args.first().cloned().unwrap_or_default();
    let mut i = 1;
    while i < args.len() {
        let a = &args[i];
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let take = |i: &mut usize| -> Option<String> {
            if let Some(v) = &inline {
                return Some(v.clone());
            }
            *i += 1;
            args.get(*i).cloned()
        };
        match key.as_str() {
            "-c" | "--conf" => conf = take(&mut i),
            "-n" | "--name" => name = take(&mut i),
            "-i" | "--id" => id = take(&mut i),
            k if k.starts_with("--") => {
                let norm = k[2..].replace('-', "_");
                let wanted = norm.starts_with("ms_async_rdma_")
                    || norm.starts_with("ibstack_")
                    || matches!(norm.as_str(), "ms_type" | "ms_public_type" | "ms_cluster_type" | "public_network" | "cluster_network");
                if wanted {
                    if let Some(v) = take(&mut i) {
                        ov.push((norm, v));
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    let name = name.or_else(|| {
        let id = id?;
        Some(match daemon_type(&prog) {
            Some(t) => format!("{t}.{id}"),
            None => format!("client.{id}"),
        })
    });
    (conf, name, ov)
}

/// The target a process would check: conf from IBSTACK_CONF, CEPH_CONF,
/// `-c`, else /etc/ceph/ceph.conf; section from IBSTACK_NAME, `-n`, `-i`
/// with the program's daemon type, else client.admin.
pub fn target_for_process(args: &[String], env: impl Fn(&str) -> Option<String>) -> Target {
    let (conf, name, overrides) = parse_ceph_args(args);
    let conf_named = conf.is_some() || env("IBSTACK_CONF").is_some() || env("CEPH_CONF").is_some();
    let conf = env("IBSTACK_CONF")
        .or_else(|| env("CEPH_CONF"))
        .or(conf)
        .unwrap_or_else(|| "/etc/ceph/ceph.conf".to_string());
    let section = env("IBSTACK_NAME").or(name).unwrap_or_else(|| "client.admin".to_string());
    Target { conf: PathBuf::from(conf), section, overrides, conf_named }
}

// ------------------------------------------------------------------ --peer

/// Live checks against `host:port`: TCP reachability, the cm_meta handshake
/// (with an ibstack or a Ceph async+rdma listener) and one exchange over
/// RDMA: a Ceph mon sends its 26-byte msgr2 banner first; an ibstack echo
/// listener returns a probe.
pub fn peer_checks(cfg: &Config, host: &str, port: u16) -> Vec<Check> {
    let mut out = Vec::new();
    let addr = match crate::sys::net::parse_addr(host, port) {
        Ok(a) => a,
        Err(e) => {
            out.push(Check::new("peer_tcp", Status::Problem, format!("{e}")));
            return out;
        }
    };
    match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3)) {
        Ok(_) => out.push(Check::new("peer_tcp", Status::Ok, format!("TCP connect to {addr} works"))),
        Err(e) => {
            out.push(Check::new(
                "peer_tcp",
                Status::Problem,
                format!("TCP connect to {addr}: {e}: the handshake side channel is unreachable (daemon down, firewall, wrong address)"),
            ));
            return out;
        }
    }
    // a small stack: same buffer size (it must match the peer's), few buffers
    let mut c = cfg.clone();
    c.send_buffers = cfg.send_buffers.clamp(1, 16);
    c.receive_queue_len = cfg.receive_queue_len.clamp(1, 16);
    c.receive_buffers = 64;
    c.rx_first_block = 32;
    let stack = match crate::stack::Stack::new(&c) {
        Ok(s) => s,
        Err(e) => {
            out.push(Check::new("peer_handshake", Status::Problem, format!("cannot open the local RDMA stack: {e}")));
            return out;
        }
    };
    let conn = match stack.connect(host, port) {
        Ok(c) => c,
        Err(e) => {
            out.push(Check::new("peer_handshake", Status::Problem, format!("{e}")));
            return out;
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let connected = loop {
        match conn.is_connected() {
            Ok(true) => break Ok(()),
            Ok(false) if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(10)),
            Ok(false) => break Err(Error::new(libc::ETIMEDOUT, "no cm_meta answer within 10 s (the peer speaks no RDMA handshake on this port?)")),
            Err(e) => break Err(e),
        }
    };
    if let Err(e) = connected {
        out.push(Check::new("peer_handshake", Status::Problem, format!("cm_meta handshake with {addr}: {e}")));
        conn.close();
        return out;
    }
    out.push(Check::new("peer_handshake", Status::Ok, format!("cm_meta handshake with {addr} done (QP {:#x})", conn.qp_num())));
    out.push(peer_round_trip(&conn, addr));
    conn.close();
    out
}

fn recv_within(conn: &crate::stack::conn::Conn, buf: &mut [u8], ms: u64) -> Result<usize> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(ms);
    loop {
        match conn.recv(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.errno == libc::EAGAIN && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Err(e) => return Err(e),
        }
    }
}

fn peer_round_trip(conn: &crate::stack::conn::Conn, addr: std::net::SocketAddr) -> Check {
    let mut buf = [0u8; 64];
    match recv_within(conn, &mut buf, 2000) {
        Ok(n) if buf[..n].starts_with(b"ceph v2\n") || buf[..n].starts_with(b"ceph v027") => {
            let v = if buf.starts_with(b"ceph v2\n") { "msgr2" } else { "msgr1" };
            return Check::new(
                "peer_rdma",
                Status::Ok,
                format!("{addr} sent its Ceph {v} banner over RDMA ({n} bytes): a Ceph async+rdma daemon is there"),
            );
        }
        Ok(n) => {
            return Check::new("peer_rdma", Status::Ok, format!("{addr} sent {n} bytes over RDMA first"));
        }
        Err(e) if e.errno != libc::EAGAIN => {
            return Check::new("peer_rdma", Status::Problem, format!("receiving over RDMA from {addr}: {e}"));
        }
        Err(_) => {}
    }
    let probe = b"ibstack-doctor probe";
    if let Err(e) = conn.send(probe) {
        return Check::new("peer_rdma", Status::Problem, format!("sending a probe over RDMA to {addr}: {e}"));
    }
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while got.len() < probe.len() && std::time::Instant::now() < deadline {
        match recv_within(conn, &mut buf, 100) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.errno == libc::EAGAIN => {}
            Err(e) => return Check::new("peer_rdma", Status::Problem, format!("receiving over RDMA from {addr}: {e}")),
        }
    }
    if got.is_empty() {
        Check::new(
            "peer_rdma",
            Status::Problem,
            format!("{addr} sent nothing over RDMA and did not answer a {}-byte probe within 3 s", probe.len()),
        )
    } else if got.starts_with(probe) {
        Check::new("peer_rdma", Status::Ok, format!("{addr} echoed a {}-byte probe over RDMA", probe.len()))
    } else {
        Check::new("peer_rdma", Status::Ok, format!("{addr} answered a probe with {} bytes over RDMA", got.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gid_select_auto_needs_a_roce_v2_gid_on_the_configured_network() {
        let e = |index: u32, ip: &str, ty| crate::verbs::GidEntry {
            gid: crate::gid::gid_of_ip(ip.parse().unwrap()),
            index,
            gid_type: Some(ty),
            ndev_ifindex: 0,
        };
        let table = [e(0, "fe80::1", GidType::RoceV2), e(1, "10.0.0.1", GidType::RoceV1), e(2, "10.0.0.1", GidType::RoceV2)];
        let net = [parse_v4_net("10.0.0.0/24").unwrap()];
        let ok = check_gid_auto(&table, &net, &[2], "per local address: …");
        assert_eq!(ok.status, Status::Ok, "{}", ok.text);
        assert!(ok.text.contains("ibstack_gid_select = auto"), "{}", ok.text);
        let other = [parse_v4_net("192.168.0.0/16").unwrap()];
        let bad = check_gid_auto(&table, &other, &[], "");
        assert_eq!(bad.status, Status::Problem);
        assert!(bad.text.contains("192.168.0.0/16") && bad.text.contains("2 = 10.0.0.1"), "{}", bad.text);
        let none = check_gid_auto(&table[1..2], &[], &[], "");
        assert_eq!(none.status, Status::Problem);
        assert!(none.text.contains("no RoCE v2 GID"), "{}", none.text);
    }

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn sections_from_the_command_line() {
        let (c, n, ov) = parse_ceph_args(&args("/usr/bin/ceph-osd -f -i 3 -c /x/ceph.conf --ms_type async+rdma --debug_ms 1"));
        assert_eq!(c.as_deref(), Some("/x/ceph.conf"));
        assert_eq!(n.as_deref(), Some("osd.3"));
        assert_eq!(ov, vec![("ms_type".to_string(), "async+rdma".to_string())]);
        let (_, n, ov) = parse_ceph_args(&args("ceph-mon -i a --ms-async-rdma-gid-idx=7"));
        assert_eq!(n.as_deref(), Some("mon.a"));
        assert_eq!(ov, vec![("ms_async_rdma_gid_idx".to_string(), "7".to_string())]);
        let (_, n, _) = parse_ceph_args(&args("rados -n client.x lspools"));
        assert_eq!(n.as_deref(), Some("client.x"));
        let t = target_for_process(&args("rados lspools"), |_| None);
        assert_eq!(t.section, "client.admin");
        assert_eq!(t.conf, PathBuf::from("/etc/ceph/ceph.conf"));
        let t = target_for_process(&args("rados -c /a lspools"), |k| (k == "CEPH_CONF").then(|| "/b".to_string()));
        assert_eq!(t.conf, PathBuf::from("/b"));
        let t = target_for_process(&args("ceph-osd -i 2"), |k| (k == "IBSTACK_NAME").then(|| "osd.9".to_string()));
        assert_eq!(t.section, "osd.9");
    }

    #[test]
    fn units_and_networks() {
        assert_eq!(systemd_unit("osd.3").as_deref(), Some("ceph-osd@3.service"));
        assert_eq!(systemd_unit("client.admin"), None);
        let net = parse_v4_net("10.99.0.0/24").unwrap();
        assert!(in_v4_net("10.99.0.1".parse().unwrap(), net));
        assert!(!in_v4_net("10.98.0.1".parse().unwrap(), net));
        assert_eq!(parse_limit("infinity"), Some(None));
        assert_eq!(parse_limit("8388608"), Some(Some(8 << 20)));
    }

    fn loaded(text: &str) -> Loaded {
        Loaded { cfg: Config::default(), text: text.to_string() }
    }

    #[test]
    fn messenger_mismatch_explains_bad_length() {
        let t = Target { conf: "x".into(), section: "osd.0".into(), overrides: vec![], conf_named: true };
        let l = loaded("[global]\nms_type = async+posix\n[osd]\nms_type = async+rdma\n");
        let c = check_ms_types(&l, &t);
        assert_eq!(c[0].status, Status::Problem, "{:?}", c);
        assert!(c[0].text.contains("bad length (26)"), "{}", c[0].text);
        let l = loaded("[global]\nms_type = async+rdma\n");
        assert_eq!(check_ms_types(&l, &t)[0].status, Status::Ok);
        // only the command line says rdma, the file says nothing: no cross-section verdict
        let t2 = Target { overrides: vec![("ms_type".into(), "async+rdma".into())], ..t.clone() };
        let c = check_ms_types(&loaded("[global]\nfsid = 1\n"), &t2);
        assert_eq!(c[0].status, Status::Ok, "{:?}", c);
        let c = check_ms_types(&loaded("[global]\nfsid = 1\n"), &t);
        assert_eq!(c[0].status, Status::Note);
    }

    #[test]
    fn values_follow_sections_then_the_command_line() {
        let l = loaded("[global]\nms_type = async+posix\npublic network = 10.0.0.0/8\n[osd]\nms_type = async+rdma\n[osd.2]\nms_cluster_type = async+posix\n");
        assert_eq!(l.value("osd.2", "ms_type", &[]).as_deref(), Some("async+rdma"));
        assert_eq!(l.value("mon.a", "ms_type", &[]).as_deref(), Some("async+posix"));
        assert_eq!(l.value("osd.2", "public_network", &[]).as_deref(), Some("10.0.0.0/8"));
        assert_eq!(l.value("osd.1", "ms_cluster_type", &[]), None);
        let ov = vec![("ms-type".to_string(), "async+posix".to_string())];
        assert_eq!(l.value("osd.2", "ms_type", &ov).as_deref(), Some("async+posix"));
        assert_eq!(ms_types(&l, "osd.2", &[]), ("async+rdma".into(), "async+posix".into(), true));
    }

    #[test]
    fn report_json_counts_problems() {
        let r = Report {
            conf: "/c".into(),
            section: "osd.1".into(),
            checks: vec![Check::new("a", Status::Ok, "fine"), Check::new("b", Status::Problem, "say \"x\"")],
        };
        assert_eq!(r.problems(), 1);
        let j = r.to_json();
        assert!(j.starts_with("{\"conf\":\"/c\",\"section\":\"osd.1\",\"problems\":1,"), "{j}");
        assert!(j.contains("\"text\":\"say \\\"x\\\"\""), "{j}");
    }
}
