//! Devices, device contexts, ports and GIDs.

use super::check_ret;
use crate::sys::{errno, os_error};
use crate::error::{Error, Result};
use rdma_sys as sys;
use std::ffi::CStr;
use std::os::raw::c_int;

/// `ibv_get_device_list` result. Devices opened from it stay valid after it
/// is dropped.
pub struct DeviceList {
    list: *mut *mut sys::ibv_device,
    count: usize,
}

// SAFETY: the list is immutable after creation and libibverbs is thread-safe.
unsafe impl Send for DeviceList {}
unsafe impl Sync for DeviceList {}

impl DeviceList {
    /// Lists the verbs devices. No kernel support (ENOSYS) or no devices is an
    /// empty list, not an error.
    pub fn new() -> Result<Self> {
        let mut n: c_int = 0;
        // SAFETY: n is a valid out-pointer.
        let list = unsafe { sys::ibv_get_device_list(&mut n) };
        if list.is_null() {
            let e = errno();
            if e == libc::ENOSYS || e == libc::ENOENT || e == libc::ENODEV {
                log::debug!("ibv_get_device_list: no verbs support in this kernel/sysfs (errno {e})");
                return Ok(DeviceList { list, count: 0 });
            }
            return Err(os_error("ibv_get_device_list"));
        }
        Ok(DeviceList { list, count: n.max(0) as usize })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn raw(&self, i: usize) -> Option<*mut sys::ibv_device> {
        if i >= self.count {
            return None;
        }
        // SAFETY: i < count entries of a list owned by self.
        let d = unsafe { *self.list.add(i) };
        (!d.is_null()).then_some(d)
    }

    /// Name of device `i` (e.g. "mlx5_0", "rxe0").
    pub fn name(&self, i: usize) -> Option<String> {
        let d = self.raw(i)?;
        // SAFETY: d is a live device; the name is a NUL-terminated string it owns.
        let p = unsafe { sys::ibv_get_device_name(d) };
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    pub fn names(&self) -> Vec<String> {
        (0..self.count).filter_map(|i| self.name(i)).collect()
    }

    /// Open device `i`.
    pub fn open(&self, i: usize) -> Result<Context> {
        let d = self.raw(i).ok_or_else(|| Error::inval(format!("device index {i} out of range")))?;
        let name = self.name(i).unwrap_or_default();
        // SAFETY: d is a live device from this list.
        let ctx = unsafe { sys::ibv_open_device(d) };
        if ctx.is_null() {
            return Err(os_error(&format!("ibv_open_device({name})")));
        }
        Ok(Context { ctx, name })
    }
}

impl Drop for DeviceList {
    fn drop(&mut self) {
        if !self.list.is_null() {
            // SAFETY: list came from ibv_get_device_list and is freed once.
            unsafe { sys::ibv_free_device_list(self.list) };
        }
    }
}

/// Port states (`enum ibv_port_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortState {
    Nop,
    Down,
    Init,
    Armed,
    Active,
    ActiveDefer,
    Unknown(u32),
}

impl PortState {
    pub fn from_raw(v: u32) -> Self {
        match v {
            0 => PortState::Nop,
            1 => PortState::Down,
            2 => PortState::Init,
            3 => PortState::Armed,
            4 => PortState::Active,
            5 => PortState::ActiveDefer,
            x => PortState::Unknown(x),
        }
    }

    pub fn raw(self) -> u32 {
        match self {
            PortState::Nop => 0,
            PortState::Down => 1,
            PortState::Init => 2,
            PortState::Armed => 3,
            PortState::Active => 4,
            PortState::ActiveDefer => 5,
            PortState::Unknown(x) => x,
        }
    }

    /// The name `ibv_devinfo` prints (PORT_ACTIVE, PORT_DOWN, …).
    pub fn name(self) -> &'static str {
        match self {
            PortState::Nop => "PORT_NOP",
            PortState::Down => "PORT_DOWN",
            PortState::Init => "PORT_INIT",
            PortState::Armed => "PORT_ARMED",
            PortState::Active => "PORT_ACTIVE",
            PortState::ActiveDefer => "PORT_ACTIVE_DEFER",
            PortState::Unknown(_) => "PORT_STATE_UNKNOWN",
        }
    }
}

/// Link layer of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkLayer {
    Unspecified,
    InfiniBand,
    Ethernet,
}

impl LinkLayer {
    pub fn from_raw(v: u8) -> Self {
        // IBV_LINK_LAYER_* are #defines in verbs.h that bindgen does not export.
        match v {
            1 => LinkLayer::InfiniBand,
            2 => LinkLayer::Ethernet,
            _ => LinkLayer::Unspecified,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LinkLayer::Unspecified => "Unspecified",
            LinkLayer::InfiniBand => "InfiniBand",
            LinkLayer::Ethernet => "Ethernet",
        }
    }
}

/// GID types (`IBV_GID_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GidType {
    Ib,
    RoceV1,
    RoceV2,
}

impl GidType {
    pub fn from_raw(v: u32) -> Option<Self> {
        match v {
            sys::IBV_GID_TYPE_IB => Some(GidType::Ib),
            sys::IBV_GID_TYPE_ROCE_V1 => Some(GidType::RoceV1),
            sys::IBV_GID_TYPE_ROCE_V2 => Some(GidType::RoceV2),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            GidType::Ib => "IB",
            GidType::RoceV1 => "RoCE v1",
            GidType::RoceV2 => "RoCE v2",
        }
    }
}

/// The device attributes the library uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAttr {
    pub fw_ver: String,
    pub node_guid: u64,
    pub max_mr_size: u64,
    pub max_qp: i32,
    pub max_qp_wr: i32,
    pub max_sge: i32,
    pub max_cq: i32,
    pub max_cqe: i32,
    pub max_mr: i32,
    pub max_srq: i32,
    pub max_srq_wr: i32,
    pub max_srq_sge: i32,
    pub max_qp_rd_atom: i32,
    pub phys_port_cnt: u8,
}

/// The port attributes the library uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortAttr {
    pub state: PortState,
    /// `enum ibv_mtu` values (1 = 256 … 5 = 4096).
    pub max_mtu: u32,
    pub active_mtu: u32,
    pub gid_tbl_len: i32,
    pub lid: u16,
    pub link_layer: LinkLayer,
    pub max_msg_sz: u32,
}

/// One GID table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GidEntry {
    pub gid: [u8; 16],
    pub index: u32,
    pub gid_type: Option<GidType>,
    pub ndev_ifindex: u32,
}

extern "C" {
    // Exported by libibverbs since IBVERBS_1.11 (rdma-core 32); the inline
    // ibv_query_gid_ex() in verbs.h wraps it and rdma-sys has no binding.
    // Returns 0 or an errno value (ENODATA for an empty slot).
    fn _ibv_query_gid_ex(
        context: *mut sys::ibv_context,
        port_num: u32,
        gid_index: u32,
        entry: *mut sys::ibv_gid_entry,
        flags: u32,
        entry_size: usize,
    ) -> c_int;
}

/// An open device (`struct ibv_context`).
pub struct Context {
    ctx: *mut sys::ibv_context,
    name: String,
}

// SAFETY: libibverbs contexts may be used from any thread.
unsafe impl Send for Context {}
unsafe impl Sync for Context {}

impl Context {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::ibv_context {
        self.ctx
    }

    pub fn query_device(&self) -> Result<DeviceAttr> {
        // SAFETY: plain C struct, all-zero is a valid value.
        let mut a: sys::ibv_device_attr = unsafe { std::mem::zeroed() };
        // SAFETY: ctx is open; a is a valid out-pointer.
        check_ret("ibv_query_device", unsafe { sys::ibv_query_device(self.ctx, &mut a) })?;
        // SAFETY: fw_ver is a NUL-terminated array inside a.
        let fw = unsafe { CStr::from_ptr(a.fw_ver.as_ptr()) }.to_string_lossy().into_owned();
        Ok(DeviceAttr {
            fw_ver: fw,
            node_guid: u64::from_be(a.node_guid),
            max_mr_size: a.max_mr_size,
            max_qp: a.max_qp,
            max_qp_wr: a.max_qp_wr,
            max_sge: a.max_sge,
            max_cq: a.max_cq,
            max_cqe: a.max_cqe,
            max_mr: a.max_mr,
            max_srq: a.max_srq,
            max_srq_wr: a.max_srq_wr,
            max_srq_sge: a.max_srq_sge,
            max_qp_rd_atom: a.max_qp_rd_atom,
            phys_port_cnt: a.phys_port_cnt,
        })
    }

    pub fn query_port(&self, port: u8) -> Result<PortAttr> {
        // SAFETY: plain C struct, all-zero is a valid value.
        let mut a: sys::ibv_port_attr = unsafe { std::mem::zeroed() };
        // SAFETY: ctx is open; a is a full-size ibv_port_attr.
        let r = unsafe { sys::___ibv_query_port(self.ctx, port, &mut a) };
        check_ret(&format!("ibv_query_port(port {port})"), r)?;
        Ok(PortAttr {
            state: PortState::from_raw(a.state),
            max_mtu: a.max_mtu,
            active_mtu: a.active_mtu,
            gid_tbl_len: a.gid_tbl_len,
            lid: a.lid,
            link_layer: LinkLayer::from_raw(a.link_layer),
            max_msg_sz: a.max_msg_sz,
        })
    }

    /// Read one GID table entry with its type. `Ok(None)` is an empty slot.
    pub fn query_gid(&self, port: u8, index: u32) -> Result<Option<GidEntry>> {
        // SAFETY: plain C struct, all-zero is a valid value.
        let mut e: sys::ibv_gid_entry = unsafe { std::mem::zeroed() };
        // SAFETY: ctx is open; e is a valid out-pointer of the given size.
        let r = unsafe {
            _ibv_query_gid_ex(self.ctx, port as u32, index, &mut e, 0, std::mem::size_of::<sys::ibv_gid_entry>())
        };
        match r {
            0 => {}
            libc::ENODATA => return Ok(None),
            libc::EOPNOTSUPP | libc::ENOSYS => return self.query_gid_legacy(port, index),
            _ => return check_ret(&format!("ibv_query_gid_ex(port {port}, index {index})"), r).map(|_| None),
        }
        // SAFETY: raw is always a valid view of the union.
        let gid = unsafe { e.gid.raw };
        Ok(Some(GidEntry { gid, index: e.gid_index, gid_type: GidType::from_raw(e.gid_type), ndev_ifindex: e.ndev_ifindex }))
    }

    /// Providers without the extended query: plain ibv_query_gid, type unknown.
    fn query_gid_legacy(&self, port: u8, index: u32) -> Result<Option<GidEntry>> {
        // SAFETY: plain C union, all-zero is valid.
        let mut g: sys::ibv_gid = unsafe { std::mem::zeroed() };
        // SAFETY: ctx is open; g is a valid out-pointer. Returns -1 + errno.
        let r = unsafe { sys::ibv_query_gid(self.ctx, port, index as c_int, &mut g) };
        if r != 0 {
            return Err(os_error(&format!("ibv_query_gid(port {port}, index {index})")));
        }
        // SAFETY: raw is always a valid view of the union.
        let gid = unsafe { g.raw };
        if gid == [0u8; 16] {
            return Ok(None);
        }
        Ok(Some(GidEntry { gid, index, gid_type: None, ndev_ifindex: 0 }))
    }

    /// The device's async event fd, switched to non-blocking mode.
    pub fn async_fd(&self) -> c_int {
        // SAFETY: ctx is open.
        unsafe { (*self.ctx).async_fd }
    }

    pub fn set_async_fd_nonblocking(&self) -> Result<()> {
        crate::sys::set_nonblocking(self.async_fd()).map_err(|e| e.context("device async fd"))
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: ctx was opened by ibv_open_device and is closed once.
        if unsafe { sys::ibv_close_device(self.ctx) } != 0 {
            log::error!("ibv_close_device({}) failed: errno {}", self.name, errno());
        }
    }
}

/// Bytes of an `enum ibv_mtu` value (1 → 256 … 5 → 4096); 0 if unknown.
pub fn mtu_bytes(mtu: u32) -> u32 {
    match mtu {
        1..=5 => 128 << mtu,
        _ => 0,
    }
}

/// `enum ibv_mtu` for a byte count (256 … 4096).
pub fn mtu_enum(bytes: u32) -> Option<u32> {
    (1..=5).find(|&m| mtu_bytes(m) == bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtu_mapping() {
        assert_eq!(mtu_bytes(3), 1024);
        assert_eq!(mtu_bytes(5), 4096);
        assert_eq!(mtu_bytes(0), 0);
        assert_eq!(mtu_enum(1024), Some(3));
        assert_eq!(mtu_enum(1000), None);
    }

    #[test]
    fn port_state_names_match_ibv_devinfo() {
        assert_eq!(PortState::from_raw(4).name(), "PORT_ACTIVE");
        assert_eq!(PortState::from_raw(1).name(), "PORT_DOWN");
        assert_eq!(PortState::from_raw(4).raw(), 4);
        assert_eq!(PortState::from_raw(9), PortState::Unknown(9));
    }
}
