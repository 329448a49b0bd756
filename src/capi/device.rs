//! `ibstack_device_list`: the RDMA devices present.

use crate::error::Error;
use crate::ffi::handle::{self, Handle, Kind};
use crate::ffi_boundary;
use crate::verbs::DeviceList;
use std::os::raw::{c_char, c_int};

/// A snapshot of the RDMA devices present (names only).
/// Ownership: created by ibstack_device_list_new, freed by
/// ibstack_device_list_free. Thread safety: immutable, any thread.
pub struct ibstack_device_list {
    _opaque: [u8; 0],
}

impl Handle for ibstack_device_list {
    /// The names.
    type Target = Vec<String>;
    const KIND: Kind = Kind::DeviceList;
}

/// Lists the RDMA devices. A host without devices (or without kernel RDMA
/// support) gives an empty list, not an error. Caller owns `*out`.
#[no_mangle]
pub unsafe extern "C" fn ibstack_device_list_new(out: *mut *mut ibstack_device_list) -> c_int {
    ffi_boundary!({
        // SAFETY: out is NULL or valid for one pointer write (header contract).
        unsafe { handle::give(out, || Ok(DeviceList::new()?.names())) }
    })
}

/// Frees a device list. NULL is a no-op; an invalid handle is ignored with a warning.
#[no_mangle]
pub unsafe extern "C" fn ibstack_device_list_free(list: *mut ibstack_device_list) {
    ffi_boundary!({ handle::take(list, "list").map(drop) })
}

/// Number of devices in the list (0 for a NULL list).
#[no_mangle]
pub unsafe extern "C" fn ibstack_device_list_count(list: *const ibstack_device_list) -> usize {
    ffi_boundary!({ Ok(handle::get(list, "list")?.len()) })
}

/// Copies the name of device `index` into `buf` (NUL-terminated, truncated
/// to len - 1). Returns the name's length, -ERANGE when index >= count, or
/// -EINVAL for a NULL list.
#[no_mangle]
pub unsafe extern "C" fn ibstack_device_list_name(
    list: *const ibstack_device_list,
    index: usize,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    ffi_boundary!({
        let names = handle::get(list, "list")?;
        let name = names.get(index).ok_or_else(|| {
            Error::new(libc::ERANGE, format!("index {index} is out of range: the list has {} device(s)", names.len()))
        })?;
        // SAFETY: buf is NULL or holds len bytes, per the header.
        unsafe { handle::text_out(name, buf, len) }
    })
}
