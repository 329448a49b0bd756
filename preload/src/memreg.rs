//! ibv_reg_mr and the two variants the ibv_reg_mr macro of verbs.h may pick
//! (ibv_reg_mr_iova, ibv_reg_mr_iova2): a failed registration is explained
//! with the bytes asked, RLIMIT_MEMLOCK, CAP_IPC_LOCK and what is already
//! pinned, before the caller (Ceph's Cluster::fill) asserts.

use crate::real::{real, Real};
use ibstack::prereq::{check_pin, Memlock, MEMLOCK_FIXES};
use ibstack::text::human_bytes;
use rdma_sys as sys;
use std::ffi::c_void;
use std::os::raw::{c_int, c_uint};

static REG_MR: Real = Real::new(c"ibv_reg_mr", c"IBVERBS_1.1");
static REG_MR_IOVA: Real = Real::new(c"ibv_reg_mr_iova", c"IBVERBS_1.7");
static REG_MR_IOVA2: Real = Real::new(c"ibv_reg_mr_iova2", c"IBVERBS_1.8");

/// The text for a registration of `len` bytes that failed with `err`.
pub fn explain(call: &str, len: usize, err: i32, lim: &Memlock) -> String {
    let limit = match lim.soft {
        None => "unlimited".to_string(),
        Some(s) => human_bytes(s),
    };
    let facts = format!(
        "{call} of {} failed with {} ({err}); RLIMIT_MEMLOCK {limit}, CAP_IPC_LOCK {}, already pinned (VmPin) {}",
        human_bytes(len as u64),
        ibstack::errno_name(err),
        if lim.cap_ipc_lock { "yes" } else { "no" },
        human_bytes(lim.pinned)
    );
    match check_pin(len as u64, &format!("this {call}"), lim) {
        Err(e) => format!("{facts}: {} (Ceph: 'FAILED ceph_assert(m)' in Cluster::fill follows)", e.msg),
        Ok(()) if matches!(err, libc::ENOMEM | libc::EAGAIN | libc::EPERM) && lim.available().is_some() => format!(
            "{facts}: the pinned total (including the provider's own mappings) reached RLIMIT_MEMLOCK; \
             {MEMLOCK_FIXES}"
        ),
        Ok(()) => format!(
            "{facts}: not the memlock limit (it allows this size); check the device's max_mr_size \
             (ibv_devinfo -v) and that the buffer is mapped"
        ),
    }
}

fn report(call: &str, len: usize) {
    let err = crate::report::errno();
    crate::report::shielded(|| crate::report::problem(&explain(call, len, err, &Memlock::read())));
}

/// # Safety
/// As libibverbs' ibv_reg_mr.
#[no_mangle]
pub unsafe extern "C" fn ibv_reg_mr(pd: *mut sys::ibv_pd, addr: *mut c_void, len: usize, access: c_int) -> *mut sys::ibv_mr {
    let f = real!(REG_MR, unsafe extern "C" fn(*mut sys::ibv_pd, *mut c_void, usize, c_int) -> *mut sys::ibv_mr, std::ptr::null_mut());
    // SAFETY: forwarded unchanged.
    let mr = unsafe { f(pd, addr, len, access) };
    if mr.is_null() && crate::mode::active() {
        report("ibv_reg_mr", len);
    }
    mr
}

/// # Safety
/// As libibverbs' ibv_reg_mr_iova.
#[no_mangle]
pub unsafe extern "C" fn ibv_reg_mr_iova(
    pd: *mut sys::ibv_pd,
    addr: *mut c_void,
    len: usize,
    iova: u64,
    access: c_int,
) -> *mut sys::ibv_mr {
    let f = real!(REG_MR_IOVA, unsafe extern "C" fn(*mut sys::ibv_pd, *mut c_void, usize, u64, c_int) -> *mut sys::ibv_mr, std::ptr::null_mut());
    // SAFETY: forwarded unchanged.
    let mr = unsafe { f(pd, addr, len, iova, access) };
    if mr.is_null() && crate::mode::active() {
        report("ibv_reg_mr", len);
    }
    mr
}

/// # Safety
/// As libibverbs' ibv_reg_mr_iova2.
#[no_mangle]
pub unsafe extern "C" fn ibv_reg_mr_iova2(
    pd: *mut sys::ibv_pd,
    addr: *mut c_void,
    len: usize,
    iova: u64,
    access: c_uint,
) -> *mut sys::ibv_mr {
    let f = real!(REG_MR_IOVA2, unsafe extern "C" fn(*mut sys::ibv_pd, *mut c_void, usize, u64, c_uint) -> *mut sys::ibv_mr, std::ptr::null_mut());
    // SAFETY: forwarded unchanged.
    let mr = unsafe { f(pd, addr, len, iova, access) };
    if mr.is_null() && crate::mode::active() {
        report("ibv_reg_mr", len);
    }
    mr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memlock_failure_names_bytes_limit_and_fixes() {
        let lim = Memlock { soft: Some(8 << 20), hard: Some(8 << 20), cap_ipc_lock: false, pinned: 1 << 20 };
        let s = explain("ibv_reg_mr", 32 << 20, libc::ENOMEM, &lim);
        assert!(s.contains("33554432 bytes (32.0 MiB)"), "{s}");
        assert!(s.contains("RLIMIT_MEMLOCK 8388608 bytes (8.0 MiB)"), "{s}");
        assert!(s.contains("CAP_IPC_LOCK no"), "{s}");
        assert!(s.contains("VmPin) 1048576 bytes"), "{s}");
        assert!(s.contains("LimitMEMLOCK=infinity"), "{s}");
        assert!(s.contains("ENOMEM"), "{s}");
    }

    #[test]
    fn other_failures_are_not_blamed_on_memlock() {
        let lim = Memlock { soft: None, hard: None, cap_ipc_lock: true, pinned: 0 };
        let s = explain("ibv_reg_mr", 4096, libc::EFAULT, &lim);
        assert!(s.contains("not the memlock limit"), "{s}");
    }
}
