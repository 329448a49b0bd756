//! `ibstack_config`: Ceph's ms_async_rdma_* options by name.

use crate::config::Config;
use crate::ffi::handle::{self, Handle, Kind};
use crate::ffi_boundary;
use parking_lot::RwLock;
use std::os::raw::{c_char, c_int};

/// Configuration: every ms_async_rdma_* option of Ceph 16.2.15 with Ceph's
/// default, plus ibstack's own ibstack_* options.
/// Ownership: created by ibstack_config_new, freed by ibstack_config_free.
/// Objects built from it (ibstack_ib_new, …) copy what they need.
/// Thread safety: concurrent reads are safe; do not read while another thread
/// sets or loads.
pub struct ibstack_config {
    _opaque: [u8; 0],
}

impl Handle for ibstack_config {
    type Target = RwLock<Config>;
    const KIND: Kind = Kind::Config;
}

/// Creates a configuration holding Ceph's defaults. Caller owns `*out`; free
/// it with ibstack_config_free. Returns 0 or -EINVAL (out is NULL).
#[no_mangle]
pub unsafe extern "C" fn ibstack_config_new(out: *mut *mut ibstack_config) -> c_int {
    ffi_boundary!({
        // SAFETY: out is NULL or valid for one pointer write (header contract).
        unsafe { handle::give(out, || Ok(RwLock::new(Config::default()))) }
    })
}

/// Frees a configuration. NULL is a no-op; a pointer that is not a live
/// configuration handle (freed already, of another type, foreign) is ignored
/// with a warning and the last-error message set.
#[no_mangle]
pub unsafe extern "C" fn ibstack_config_free(cfg: *mut ibstack_config) {
    ffi_boundary!({ handle::take(cfg, "cfg").map(drop) })
}

/// Sets one option by Ceph's name (spaces or dashes may stand for
/// underscores: "ms async rdma gid idx"). Values use Ceph's syntax for the
/// option's type (sizes take K/M/G suffixes, binary). Returns 0, or -EINVAL
/// for an unknown key or a bad value; the message names the key, the value
/// and the expected type. On error the configuration is unchanged.
#[no_mangle]
pub unsafe extern "C" fn ibstack_config_set(cfg: *mut ibstack_config, key: *const c_char, value: *const c_char) -> c_int {
    ffi_boundary!({
        let cfg = handle::get(cfg, "cfg")?;
        // SAFETY: key and value are NULL or NUL-terminated strings (header contract).
        let (key, value) = unsafe { (handle::str_arg(key, "key")?, handle::str_arg(value, "value")?) };
        cfg.write().set(key, value)?;
        Ok(0)
    })
}

/// Copies the option's current value, as text, into `buf` (NUL-terminated,
/// truncated to len - 1 bytes). Returns the value's full length (>= len means
/// truncated), or -EINVAL for an unknown key or NULL cfg/key. `buf` may be
/// NULL when `len` is 0.
#[no_mangle]
pub unsafe extern "C" fn ibstack_config_get(
    cfg: *const ibstack_config,
    key: *const c_char,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    ffi_boundary!({
        let cfg = handle::get(cfg, "cfg")?;
        // SAFETY: key is NULL or NUL-terminated; buf is NULL or holds len bytes (header contract).
        unsafe {
            let v = cfg.read().get(handle::str_arg(key, "key")?)?;
            handle::text_out(&v, buf, len)
        }
    })
}

/// Loads a ceph.conf: [global] first, then `section` overriding it ("osd",
/// "mon", or a daemon name such as "osd.3", which also applies "[osd]").
/// NULL or "" section = [global] only. Keys of other Ceph subsystems are
/// ignored; an unknown ms_async_rdma_* key, a bad value or a bad line is
/// -EINVAL with a message naming the file, line, key and expected type; an
/// unreadable file is the OS errno (-ENOENT, -EACCES …). On error the
/// configuration is unchanged.
#[no_mangle]
pub unsafe extern "C" fn ibstack_config_load_file(
    cfg: *mut ibstack_config,
    path: *const c_char,
    section: *const c_char,
) -> c_int {
    ffi_boundary!({
        let cfg = handle::get(cfg, "cfg")?;
        // SAFETY: path and section are NULL or NUL-terminated strings (header contract).
        let (path, section) = unsafe {
            (handle::str_arg(path, "path")?, if section.is_null() { "" } else { handle::str_arg(section, "section")? })
        };
        cfg.write().load_file(std::path::Path::new(path), section)?;
        Ok(0)
    })
}

/// Copies every option and its value as a JSON object into `buf` (same
/// truncation rule as ibstack_config_get). Returns the full JSON length or
/// -EINVAL.
#[no_mangle]
pub unsafe extern "C" fn ibstack_config_to_json(cfg: *const ibstack_config, buf: *mut c_char, len: usize) -> c_int {
    ffi_boundary!({
        let json = handle::get(cfg, "cfg")?.read().to_json();
        // SAFETY: buf is NULL or holds len bytes (header contract).
        unsafe { handle::text_out(&json, buf, len) }
    })
}
