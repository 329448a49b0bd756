//! Library-wide functions: version, errors, logging, process prerequisites.

use crate::capi::config::ibstack_config;
use crate::ffi::handle;
use crate::ffi_boundary;
use std::os::raw::{c_char, c_int, c_void};

pub use crate::ffi::log::ibstack_log_callback;

static VERSION: &str = concat!("ibstack/", env!("CARGO_PKG_VERSION"), " rdma-sys/", env!("IBSTACK_RDMA_SYS_VERSION"), "\0");

/// The library version, "ibstack/X.Y.Z rdma-sys/A.B.C". Static string, never freed.
/// Thread safety: any thread.
#[no_mangle]
pub extern "C" fn ibstack_version() -> *const c_char {
    ffi_boundary!({ Ok(VERSION.as_ptr().cast()) })
}

/// Copies the calling thread's last error message (the last failed ibstack
/// call on this thread) into `buf`, truncated to `len - 1` bytes and
/// NUL-terminated. Returns the full message length (excluding the NUL), so a
/// result >= len means it was truncated; `buf` may be NULL to ask the length.
/// Thread safety: any thread; each thread has its own message.
#[no_mangle]
pub unsafe extern "C" fn ibstack_last_error_message(buf: *mut c_char, len: usize) -> usize {
    ffi_boundary!({
        let msg = crate::ffi::error::last_error_string();
        // SAFETY: the caller passes NULL or a buffer of len bytes.
        Ok(unsafe { crate::ffi::error::copy_to_c_buf(&msg, buf, len) })
    })
}

/// "ENODEV: no such device" for an errno value of either sign (0 → "0: success").
/// Static string, never freed. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn ibstack_strerror(err: c_int) -> *const c_char {
    ffi_boundary!({ Ok(crate::errno::errno_cstr(err).as_ptr()) })
}

/// Routes the library's log records to `cb` with `user_data`, for levels up
/// to `max_level` (0 = off … 5 = trace). NULL `cb` restores the default sink
/// (stderr when the IBSTACK_LOG environment variable holds a filter such as
/// "debug", otherwise nothing). Returns 0, or -EDEADLK when called from
/// inside the callback.
/// Thread safety: any thread; the callback may be called concurrently from
/// several threads, including ibstack's own.
/// Rules for the callback: it may call any ibstack function (records are
/// handed to it only after the library released its locks, at the end of
/// the exported call or polling iteration that logged them; the caller's last
/// error message is kept), except ibstack_set_log_callback; records it causes
/// itself are dropped, not delivered recursively. Replacing or detaching the
/// callback waits until no thread is inside it, so `user_data` may be freed
/// once this returns.
#[no_mangle]
pub extern "C" fn ibstack_set_log_callback(cb: ibstack_log_callback, user_data: *mut c_void, max_level: c_int) -> c_int {
    ffi_boundary!({
        crate::ffi::log::set_callback(cb, user_data, max_level)?;
        Ok(0)
    })
}

/// Ceph's verify_prereq: sets RDMAV_HUGEPAGES_SAFE=1 when
/// ms_async_rdma_enable_hugepage is true, calls ibv_fork_init() (once per
/// process), and checks RLIMIT_MEMLOCK (or CAP_IPC_LOCK) against
/// buffer_size x (send_buffers + receive_buffers). Returns 0, -ENOMEM with a
/// message naming the limit, the need and the fixes, or the fork_init error.
/// Call it before starting other threads (it sets an environment variable)
/// and before any other verbs use in the process. `cfg` is borrowed.
#[no_mangle]
pub unsafe extern "C" fn ibstack_global_init(cfg: *const ibstack_config) -> c_int {
    ffi_boundary!({
        let cfg = handle::get(cfg, "cfg")?;
        crate::prereq::global_init(&cfg.read())?;
        Ok(0)
    })
}
