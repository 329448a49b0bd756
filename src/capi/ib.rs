//! `ibstack_ib`: an opened device, bound port, GID and protection domain
//! (the device half of Ceph's `Infiniband::init`).

use crate::capi::config::ibstack_config;
use crate::ffi::handle::{self, Handle, Kind};
use crate::ffi_boundary;
use crate::ib::Ib;
use crate::verbs::device::mtu_bytes;
use crate::verbs::{GidType, LinkLayer, PortState};
use std::os::raw::{c_char, c_int};

/// An opened RDMA device: bound port, cached GID, protection domain and the
/// queue lengths derived from the configuration and the device limits.
/// Ownership: created by ibstack_ib_new, freed by ibstack_ib_free; objects
/// created from it keep the device open until they are freed too.
/// Thread safety: immutable after creation; every function may be called
/// from any thread concurrently.
pub struct ibstack_ib {
    _opaque: [u8; 0],
}

impl Handle for ibstack_ib {
    type Target = Ib;
    const KIND: Kind = Kind::Ib;
}

/// GID types, as `ibstack_ib_info.gid_type` reports them.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ibstack_gid_type {
    Ib = 0,
    RoceV1 = 1,
    RoceV2 = 2,
    /// The provider did not report a type.
    Unknown = 255,
}

/// Link layers, as `ibstack_ib_info.link_layer` reports them.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ibstack_link_layer {
    Unspecified = 0,
    Infiniband = 1,
    Ethernet = 2,
}

/// What ibstack_ib_query reports. The layout is frozen (ABI); new fields go
/// into a new struct.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ibstack_ib_info {
    /// Bound port number (ms_async_rdma_port_num).
    pub port_num: u32,
    /// Port state as `enum ibv_port_state` (4 = IBV_PORT_ACTIVE).
    pub port_state: u32,
    /// An `ibstack_link_layer` value.
    pub link_layer: u32,
    /// Port LID (0 on RoCE).
    pub lid: u32,
    /// The GID at gid_index, raw bytes in network order.
    pub gid: [u8; 16],
    /// ms_async_rdma_gid_idx.
    pub gid_index: u32,
    /// An `ibstack_gid_type` value.
    pub gid_type: u32,
    /// Entries in the port's GID table.
    pub gid_tbl_len: u32,
    /// Active and maximum path MTU of the port, in bytes (256 … 4096).
    pub active_mtu: u32,
    pub max_mtu: u32,
    /// Device limits.
    pub phys_port_cnt: u32,
    pub max_qp: u32,
    pub max_qp_wr: u32,
    pub max_srq_wr: u32,
    pub max_cqe: u32,
    pub max_sge: u32,
    pub max_mr_size: u64,
    /// Send queue length used for data (send_buffers clamped to max_qp_wr - 1).
    pub tx_queue_len: u32,
    /// Receive queue length (receive_queue_len clamped to max_srq_wr / max_qp_wr).
    pub rx_queue_len: u32,
    /// libibverbs' handle of the protection domain (`struct ibv_pd.handle`;
    /// not the `pdn` that `rdma resource show pd` prints).
    pub pd_handle: u32,
    /// The device's async event fd (non-blocking); owned by the ibstack_ib.
    pub async_fd: i32,
}

/// Opens the device named by ms_async_rdma_device_name (empty = the first
/// device), binds ms_async_rdma_port_num, reads the GID at
/// ms_async_rdma_gid_idx and allocates the protection domain. `cfg` is
/// borrowed (copied). Caller owns `*out`; free it with ibstack_ib_free.
/// Errors: -ENODEV (no device: load a provider; or the name matches none —
/// the message lists the names present), -ENETDOWN (port not ACTIVE),
/// -EINVAL (port or gid_idx outside the device's tables, empty GID slot,
/// inconsistent queue sizes), -EOPNOTSUPP (cm/iwarp), or the verbs error.
/// Sizes above the device limits are clamped with a warning, as Ceph does.
#[no_mangle]
pub unsafe extern "C" fn ibstack_ib_new(cfg: *const ibstack_config, out: *mut *mut ibstack_ib) -> c_int {
    ffi_boundary!({
        let cfg = handle::get(cfg, "cfg")?;
        // SAFETY: out is NULL or valid for one pointer write (header contract).
        unsafe { handle::give(out, || Ib::open(&cfg.read())) }
    })
}

/// Releases the handle. The device closes when the last object created from
/// it is freed. NULL is a no-op; an invalid handle is ignored with a warning.
#[no_mangle]
pub unsafe extern "C" fn ibstack_ib_free(ib: *mut ibstack_ib) {
    ffi_boundary!({ handle::take(ib, "ib").map(drop) })
}

/// Fills `*out` with the port, GID, MTU and device limits. Returns 0 or -EINVAL.
#[no_mangle]
pub unsafe extern "C" fn ibstack_ib_query(ib: *const ibstack_ib, out: *mut ibstack_ib_info) -> c_int {
    ffi_boundary!({
        let ib = handle::get(ib, "ib")?;
        handle::check_out(out, "out")?;
        let d = ib.device_attr();
        let p = ib.port_attr();
        let clamp = |v: i32| v.max(0) as u32;
        let info = ibstack_ib_info {
            port_num: ib.port_num() as u32,
            port_state: p.state.raw(),
            link_layer: match p.link_layer {
                LinkLayer::Unspecified => ibstack_link_layer::Unspecified,
                LinkLayer::InfiniBand => ibstack_link_layer::Infiniband,
                LinkLayer::Ethernet => ibstack_link_layer::Ethernet,
            } as u32,
            lid: p.lid as u32,
            gid: ib.gid().gid,
            gid_index: ib.gid().index,
            gid_type: match ib.gid().gid_type {
                Some(GidType::Ib) => ibstack_gid_type::Ib,
                Some(GidType::RoceV1) => ibstack_gid_type::RoceV1,
                Some(GidType::RoceV2) => ibstack_gid_type::RoceV2,
                None => ibstack_gid_type::Unknown,
            } as u32,
            gid_tbl_len: clamp(p.gid_tbl_len),
            active_mtu: mtu_bytes(p.active_mtu),
            max_mtu: mtu_bytes(p.max_mtu),
            phys_port_cnt: d.phys_port_cnt as u32,
            max_qp: clamp(d.max_qp),
            max_qp_wr: clamp(d.max_qp_wr),
            max_srq_wr: clamp(d.max_srq_wr),
            max_cqe: clamp(d.max_cqe),
            max_sge: clamp(d.max_sge),
            max_mr_size: d.max_mr_size,
            tx_queue_len: ib.tx_queue_len(),
            rx_queue_len: ib.rx_queue_len(),
            pd_handle: ib.pd().handle(),
            async_fd: ib.async_fd(),
        };
        // SAFETY: out is NULL or valid for one write (header contract).
        unsafe { handle::write_out(out, "out", info) }?;
        Ok(0)
    })
}

/// Copies the device name ("rxe0", "mlx5_0") into `buf` (NUL-terminated,
/// truncated to len - 1). Returns the full length or -EINVAL.
#[no_mangle]
pub unsafe extern "C" fn ibstack_ib_device_name(ib: *const ibstack_ib, buf: *mut c_char, len: usize) -> c_int {
    ffi_boundary!({
        let ib = handle::get(ib, "ib")?;
        // SAFETY: buf is NULL or holds len bytes (header contract).
        unsafe { handle::text_out(ib.device_name(), buf, len) }
    })
}

/// The device's async event fd (non-blocking, for epoll), or -EINVAL.
/// Owned by the device: do not close it.
#[no_mangle]
pub unsafe extern "C" fn ibstack_ib_async_fd(ib: *const ibstack_ib) -> c_int {
    ffi_boundary!({ Ok(handle::get(ib, "ib")?.async_fd()) })
}

/// "PORT_ACTIVE", "PORT_DOWN", … for an `enum ibv_port_state` value (the
/// names ibv_devinfo prints). Static string.
#[no_mangle]
pub extern "C" fn ibstack_port_state_str(state: u32) -> *const c_char {
    ffi_boundary!({ Ok(port_state_cstr(state).as_ptr()) })
}

fn port_state_cstr(state: u32) -> &'static std::ffi::CStr {
    match PortState::from_raw(state) {
        PortState::Nop => c"PORT_NOP",
        PortState::Down => c"PORT_DOWN",
        PortState::Init => c"PORT_INIT",
        PortState::Armed => c"PORT_ARMED",
        PortState::Active => c"PORT_ACTIVE",
        PortState::ActiveDefer => c"PORT_ACTIVE_DEFER",
        PortState::Unknown(_) => c"PORT_STATE_UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_layout_is_frozen() {
        // c_tests/test_header.c asserts the same numbers from the C side.
        assert_eq!(std::mem::size_of::<ibstack_ib_info>(), 104);
        assert_eq!(std::mem::offset_of!(ibstack_ib_info, gid), 16);
        assert_eq!(std::mem::offset_of!(ibstack_ib_info, max_mr_size), 80);
        assert_eq!(std::mem::offset_of!(ibstack_ib_info, async_fd), 100);
    }
}

/// Escape hatch: the `struct ibv_pd *` the library allocated (its
/// `->context` is the device's `struct ibv_context *`), for programs that
/// need raw verbs on the same PD. Borrowed: valid until `ib` and every object
/// created from it are freed; do not deallocate it. NULL for NULL.
#[no_mangle]
pub unsafe extern "C" fn ibstack_ib_pd_raw(ib: *const ibstack_ib) -> *mut std::os::raw::c_void {
    ffi_boundary!({ Ok(handle::get(ib, "ib")?.pd().raw()) })
}
