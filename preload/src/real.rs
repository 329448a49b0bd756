//! The real libibverbs functions, looked up lazily with
//! `dlvsym(RTLD_NEXT, name, version)` (falling back to `dlsym`), once per
//! symbol; concurrent first calls resolve the same address.

use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Real {
    name: &'static CStr,
    version: &'static CStr,
    addr: AtomicUsize,
}

impl Real {
    pub const fn new(name: &'static CStr, version: &'static CStr) -> Real {
        Real { name, version, addr: AtomicUsize::new(0) }
    }

    /// The address of the next definition, or None when there is none
    /// (libibverbs not loaded after the guard).
    pub fn addr(&self) -> Option<usize> {
        let a = self.addr.load(Ordering::Acquire);
        if a != 0 {
            return Some(a);
        }
        // SAFETY: both names are NUL-terminated; RTLD_NEXT searches the objects after this one.
        let mut p: *mut c_void = unsafe { libc::dlvsym(libc::RTLD_NEXT, self.name.as_ptr(), self.version.as_ptr()) };
        if p.is_null() {
            // SAFETY: as above.
            p = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) };
        }
        if p.is_null() {
            return None;
        }
        self.addr.store(p as usize, Ordering::Release);
        Some(p as usize)
    }
}

/// `real!(STATIC, fn(args) -> ret)`: the real function as a typed pointer, or
/// return `$fail` from the caller (with errno ENOSYS) when it cannot be found.
macro_rules! real {
    ($sym:expr, $ty:ty, $fail:expr) => {
        match $sym.addr() {
            // SAFETY: the address is libibverbs' definition of this very symbol and version.
            Some(a) => unsafe { std::mem::transmute::<usize, $ty>(a) },
            None => {
                crate::report::set_errno(libc::ENOSYS);
                return $fail;
            }
        }
    };
}
pub(crate) use real;
