//! The only place where C pointers become Rust references and back.
//! Each opaque C type is a plain Rust struct (not `repr(C)`), so cbindgen
//! emits a forward declaration only and C cannot see inside.

use crate::error::{Error, Result};
use std::ffi::CStr;
use std::os::raw::c_char;

/// Borrow a `const T *` argument; NULL is `-EINVAL` naming the argument.
///
/// # Safety
/// `p` must be NULL or point to a live `T` created by this library.
pub unsafe fn borrow<'a, T>(p: *const T, what: &str) -> Result<&'a T> {
    // SAFETY: guaranteed by the caller.
    unsafe { p.as_ref() }.ok_or_else(|| Error::inval(format!("{what} is NULL")))
}

/// Borrow a `T *` argument mutably; NULL is `-EINVAL` naming the argument.
///
/// # Safety
/// `p` must be NULL or point to a live `T` created by this library, not
/// aliased for the duration of the call.
pub unsafe fn borrow_mut<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T> {
    // SAFETY: guaranteed by the caller.
    unsafe { p.as_mut() }.ok_or_else(|| Error::inval(format!("{what} is NULL")))
}

/// Check an out-parameter before doing any work.
pub fn check_out<T>(out: *mut T, what: &str) -> Result<()> {
    if out.is_null() {
        Err(Error::inval(format!("{what} is NULL")))
    } else {
        Ok(())
    }
}

/// Move `value` to the heap and store the pointer in `*out` (checked non-NULL
/// by the caller beforehand with [`check_out`]).
///
/// # Safety
/// `out` must be valid for a write of one pointer.
pub unsafe fn give<T>(out: *mut *mut T, value: T) {
    // SAFETY: guaranteed by the caller.
    unsafe { *out = Box::into_raw(Box::new(value)) };
}

/// Take back and drop an object handed out by [`give`]; NULL is a no-op.
///
/// # Safety
/// `p` must be NULL or a pointer from [`give`] not freed before.
pub unsafe fn free<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: guaranteed by the caller.
        drop(unsafe { Box::from_raw(p) });
    }
}

/// Borrow a NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` must be NULL or a NUL-terminated string valid for the call.
pub unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(Error::inval(format!("{what} is NULL")));
    }
    // SAFETY: guaranteed by the caller.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|_| Error::inval(format!("{what} is not valid UTF-8")))
}

/// Borrow an input buffer (`ptr`, `len`); NULL with a non-zero length is `-EINVAL`.
///
/// # Safety
/// `p` must be NULL or valid for `len` bytes of reads.
pub unsafe fn bytes_arg<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Error::inval(format!("{what} is NULL but its length is {len}")));
    }
    // SAFETY: guaranteed by the caller.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Borrow an output buffer (`ptr`, `len`); NULL with a non-zero length is `-EINVAL`.
///
/// # Safety
/// `p` must be NULL or valid for `len` bytes of writes.
pub unsafe fn bytes_out<'a>(p: *mut u8, len: usize, what: &str) -> Result<&'a mut [u8]> {
    if len == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(Error::inval(format!("{what} is NULL but its length is {len}")));
    }
    // SAFETY: guaranteed by the caller.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// Opaque C pointer ↔ the Rust object it stands for, for objects that C
/// borrows from a pool (chunks) rather than owns.
pub fn opaque_ptr<Rust, C>(r: &Rust) -> *mut C {
    (r as *const Rust).cast_mut().cast()
}

/// The Rust pointer an opaque borrowed C pointer stands for (not dereferenced).
pub fn from_opaque<C, Rust>(p: *const C) -> *const Rust {
    p.cast()
}

/// Copy `text` into the caller's (`buf`, `len`) output buffer with the
/// library's string convention: NUL-terminated, truncated to len − 1, the
/// full length returned (so ≥ len means truncated); `buf` may be NULL only
/// when `len` is 0 (a length query).
///
/// # Safety
/// `buf` must be NULL or valid for `len` bytes of writes.
pub unsafe fn text_out(text: &str, buf: *mut c_char, len: usize) -> Result<std::os::raw::c_int> {
    if buf.is_null() && len > 0 {
        return Err(Error::inval(format!("buf is NULL but len is {len}")));
    }
    // SAFETY: buf is NULL (len 0) or holds len bytes, per the caller.
    let n = unsafe { crate::ffi::error::copy_to_c_buf(text, buf, len) };
    Ok(n.min(std::os::raw::c_int::MAX as usize) as std::os::raw::c_int)
}
