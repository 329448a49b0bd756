//! ibv_get_device_list and ibv_open_device: the startup checks run before
//! the first of them; an opened context gets the data-path wrappers.

use crate::real::{real, Real};
use rdma_sys as sys;
use std::os::raw::c_int;

static GET_DEVICE_LIST: Real = Real::new(c"ibv_get_device_list", c"IBVERBS_1.1");
static OPEN_DEVICE: Real = Real::new(c"ibv_open_device", c"IBVERBS_1.1");

/// # Safety
/// As libibverbs' ibv_get_device_list.
#[no_mangle]
pub unsafe extern "C" fn ibv_get_device_list(num: *mut c_int) -> *mut *mut sys::ibv_device {
    let f = real!(GET_DEVICE_LIST, unsafe extern "C" fn(*mut c_int) -> *mut *mut sys::ibv_device, std::ptr::null_mut());
    if crate::mode::active() {
        crate::startup::check_once();
    }
    // SAFETY: forwarded unchanged.
    unsafe { f(num) }
}

/// # Safety
/// As libibverbs' ibv_open_device.
#[no_mangle]
pub unsafe extern "C" fn ibv_open_device(dev: *mut sys::ibv_device) -> *mut sys::ibv_context {
    let f = real!(OPEN_DEVICE, unsafe extern "C" fn(*mut sys::ibv_device) -> *mut sys::ibv_context, std::ptr::null_mut());
    let active = crate::mode::active();
    if active {
        crate::startup::check_once();
    }
    // SAFETY: forwarded unchanged.
    let ctx = unsafe { f(dev) };
    if active && !ctx.is_null() {
        // SAFETY: ctx was just opened and is not yet shared with another thread.
        crate::report::shielded(|| unsafe { crate::post::wrap(ctx) });
    }
    ctx
}
