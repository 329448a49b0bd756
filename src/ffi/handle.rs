//! The only place where C pointers become Rust references and back.
//! Each opaque C type is a zero-sized Rust marker (not `repr(C)`), so cbindgen
//! emits a forward declaration only and C cannot see inside; [`Handle`] says
//! once what a handle of that type holds, and [`get`], [`give`], [`take`] and
//! [`Borrowed`] hold the NULL check, the tag check and the out-pointer write.
//!
//! What a tag can tell: a pointer the library never handed out (checked
//! against the slab's address ranges before anything is read), a handle of
//! another type, a freed handle (while its cell is in the quarantine, see
//! [`slab::QUARANTINE`]), a double free, a `_free` on a borrowed handle. It
//! cannot tell a stale pointer whose cell was reused for a new object of the
//! same type.

use crate::error::{Error, Result};
use crate::ffi::slab::{self, Cell, Object, State};
use std::ffi::CStr;
use std::os::raw::{c_char, c_int};
use std::sync::Arc;

/// The families of handles, as a cell's tag records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Kind {
    Config = 1,
    DeviceList = 2,
    Ib = 3,
    MemMgr = 4,
    Cq = 5,
    Dispatcher = 6,
    Qp = 7,
    Stack = 8,
    Listener = 9,
    Conn = 10,
}

impl Kind {
    const ALL: [Kind; 10] = [
        Kind::Config,
        Kind::DeviceList,
        Kind::Ib,
        Kind::MemMgr,
        Kind::Cq,
        Kind::Dispatcher,
        Kind::Qp,
        Kind::Stack,
        Kind::Listener,
        Kind::Conn,
    ];

    /// The C type's name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Config => "ibstack_config",
            Kind::DeviceList => "ibstack_device_list",
            Kind::Ib => "ibstack_ib",
            Kind::MemMgr => "ibstack_mem_mgr",
            Kind::Cq => "ibstack_cq",
            Kind::Dispatcher => "ibstack_dispatcher",
            Kind::Qp => "ibstack_qp",
            Kind::Stack => "ibstack_stack",
            Kind::Listener => "ibstack_listener",
            Kind::Conn => "ibstack_conn",
        }
    }

    fn from_code(code: u16) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u16 == code)
    }
}

/// An opaque C type and what its handle holds. C holds the address of a
/// slab cell ([`slab`]); the cell holds an `Arc<Target>`.
pub trait Handle: Sized + 'static {
    /// The Rust object behind the handle.
    type Target: Send + Sync + 'static;
    /// The tag kind.
    const KIND: Kind;
}

fn kind_name(code: u16) -> &'static str {
    Kind::from_code(code).map_or("unknown", Kind::name)
}

/// The cell a handle argument names, with its tag checked against `T` and
/// `want` (live owned or borrowed for a call, owned for a free).
fn cell_of<T: Handle>(p: *const T, what: &str) -> Result<&'static Cell> {
    let cell = slab::cell_at(p as usize).ok_or_else(|| {
        Error::inval(format!("{what} ({p:p}) is not an {} handle (not a pointer this library handed out)", T::KIND.name()))
    })?;
    match cell.tag() {
        None => Err(Error::inval(format!(
            "{what} ({p:p}) is not an {} handle (not a pointer this library handed out)",
            T::KIND.name()
        ))),
        Some(t) if t.state == State::Free => Err(Error::inval(format!(
            "{what} ({p:p}) is an {} handle that was already freed",
            kind_name(t.kind)
        ))),
        Some(t) if t.kind != T::KIND as u16 => Err(Error::inval(format!(
            "{what} ({p:p}) is an {} handle, not an {}",
            kind_name(t.kind),
            T::KIND.name()
        ))),
        Some(t) if cell.inherited() => Err(Error::new(
            libc::ECHILD,
            format!(
                "{what} ({p:p}) is an {} handle created before fork(): it belongs to the parent process, \
                 whose threads and device resources a forked child cannot use; create new objects in the child \
                 (or exec), and let the parent free its own",
                kind_name(t.kind)
            ),
        )),
        Some(_) => Ok(cell),
    }
}

fn downcast<T: Handle>(obj: Object) -> Result<Arc<T::Target>> {
    obj.downcast::<T::Target>()
        .map_err(|_| Error::new(libc::ENOTRECOVERABLE, format!("an {} handle holds the wrong object", T::KIND.name())))
}

/// The object behind a handle argument, kept alive for the call even if
/// another thread frees the handle meanwhile. NULL, a foreign pointer, a
/// freed handle or one of another type is `-EINVAL` naming the argument.
/// Costs a range check, an atomic load and an uncontended lock; no allocation.
pub fn get<T: Handle>(p: *const T, what: &str) -> Result<Arc<T::Target>> {
    if p.is_null() {
        return Err(Error::inval(format!("{what} is NULL")));
    }
    let cell = cell_of(p, what)?;
    let obj = cell
        .object()
        .ok_or_else(|| Error::inval(format!("{what} ({p:p}) is an {} handle that was already freed", T::KIND.name())))?;
    downcast::<T>(obj)
}

/// Like [`get`] for an optional argument: NULL is `Ok(None)`.
pub fn get_opt<T: Handle>(p: *const T, what: &str) -> Result<Option<Arc<T::Target>>> {
    if p.is_null() {
        Ok(None)
    } else {
        get(p, what).map(Some)
    }
}

/// A new owned handle for `obj` (C frees it with the type's `_free`).
pub fn new_handle<T: Handle>(obj: Arc<T::Target>) -> *mut T {
    slab::insert(T::KIND as u16, State::Owned, obj).addr() as *mut T
}

/// Check `out`, build the object, and store a new owned handle in `*out`.
/// `*out` is written only on success.
///
/// # Safety
/// `out` must be NULL or valid for a write of one pointer.
pub unsafe fn give<T: Handle>(out: *mut *mut T, build: impl FnOnce() -> Result<T::Target>) -> Result<c_int> {
    check_out(out, "out")?;
    let h = new_handle::<T>(Arc::new(build()?));
    // SAFETY: out is non-NULL and valid per the caller.
    unsafe { *out = h };
    Ok(0)
}

/// Release a handle for its `_free`: the object, for the caller to finish
/// and drop (it is destroyed when the last call using it returns). NULL is
/// `Ok(None)`; a foreign pointer, a freed handle, a borrowed one or one of
/// another type is refused with a message and left alone.
pub fn take<T: Handle>(p: *mut T, what: &str) -> Result<Option<Arc<T::Target>>> {
    if p.is_null() {
        return Ok(None);
    }
    let cell = match cell_of(p, what) {
        Ok(c) => c,
        Err(e) => return Err(Error::new(e.errno, format!("{}; not freed", e.msg))),
    };
    match cell.take(T::KIND as u16, State::Owned) {
        Some(obj) => {
            slab::retire(cell);
            downcast::<T>(obj).map(Some)
        }
        None if cell.tag().is_some_and(|t| t.state == State::Borrowed) => Err(Error::inval(format!(
            "{what} ({p:p}) is a borrowed {} (it belongs to the object it came from); not freed",
            T::KIND.name()
        ))),
        None => Err(Error::inval(format!("{what} ({p:p}) was already freed; not freed again"))),
    }
}

/// A handle lent out by another object (a dispatcher's CQs): C may use it
/// while the owner lives, `_free` on it is refused, and it dies (calls on it
/// become `-EINVAL`) when this value is dropped with its owner.
pub struct Borrowed<T: Handle> {
    cell: &'static Cell,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T: Handle> Borrowed<T> {
    pub fn new(obj: Arc<T::Target>) -> Borrowed<T> {
        Borrowed { cell: slab::insert(T::KIND as u16, State::Borrowed, obj), _t: std::marker::PhantomData }
    }

    /// The pointer C holds.
    pub fn ptr(&self) -> *const T {
        self.cell.addr() as *const T
    }
}

impl<T: Handle> Drop for Borrowed<T> {
    fn drop(&mut self) {
        if let Some(obj) = self.cell.take(T::KIND as u16, State::Borrowed) {
            slab::retire(self.cell);
            drop(obj);
        }
    }
}

/// Check an out-parameter before doing any work.
pub fn check_out<T>(out: *mut T, what: &str) -> Result<()> {
    if out.is_null() {
        Err(Error::inval(format!("{what} is NULL")))
    } else {
        Ok(())
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


/// `n` entries of `T` fit in one object (at most isize::MAX bytes, what a
/// Rust slice and any real buffer can hold); more is a caller's bug (a
/// negative length cast to size_t, a wrong variable) and `-EINVAL`.
pub fn plausible<T>(n: usize, what: &str) -> Result<()> {
    let size = std::mem::size_of::<T>().max(1);
    if n > isize::MAX as usize / size {
        return Err(Error::inval(format!(
            "{what}: length {n}{} exceeds the largest possible buffer ({} bytes): a negative or uninitialized length?",
            if size > 1 { format!(" x {size} bytes") } else { String::new() },
            isize::MAX
        )));
    }
    Ok(())
}

/// Borrow an input buffer (`ptr`, `len`); NULL with a non-zero length is `-EINVAL`.
///
/// # Safety
/// `p` must be NULL or valid for `len` bytes of reads.
pub unsafe fn bytes_arg<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a [u8]> {
    plausible::<u8>(len, what)?;
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
    plausible::<u8>(len, what)?;
    if len == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(Error::inval(format!("{what} is NULL but its length is {len}")));
    }
    // SAFETY: guaranteed by the caller.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// Copy `text` into the caller's (`buf`, `len`) output buffer with the
/// library's string convention: NUL-terminated, truncated to len − 1, the
/// full length returned (so ≥ len means truncated); `buf` may be NULL only
/// when `len` is 0 (a length query).
///
/// # Safety
/// `buf` must be NULL or valid for `len` bytes of writes.
pub unsafe fn text_out(text: &str, buf: *mut c_char, len: usize) -> Result<std::os::raw::c_int> {
    plausible::<u8>(len, "buf")?;
    if buf.is_null() && len > 0 {
        return Err(Error::inval(format!("buf is NULL but len is {len}")));
    }
    // SAFETY: buf is NULL (len 0) or holds len bytes, per the caller.
    let n = unsafe { crate::ffi::error::copy_to_c_buf(text, buf, len) };
    Ok(n.min(std::os::raw::c_int::MAX as usize) as std::os::raw::c_int)
}

/// (p, n) as a mutable slice of C-provided entries; n < 0, or NULL with
/// n > 0, is `-EINVAL` naming `what`.
///
/// # Safety
/// `p` must be NULL or valid for `n` entries of reads and writes.
pub unsafe fn items_mut<'a, T>(p: *mut T, n: c_int, what: &str) -> Result<&'a mut [T]> {
    if n < 0 {
        return Err(Error::inval(format!("n is {n}")));
    }
    if n == 0 {
        return Ok(&mut []);
    }
    plausible::<T>(n as usize, what)?;
    if p.is_null() {
        return Err(Error::inval(format!("{what} is NULL but n is {n}")));
    }
    // SAFETY: the caller provides n entries.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, n as usize) })
}

/// (p, n) as a slice of C-provided entries; NULL with n > 0 is `-EINVAL`.
///
/// # Safety
/// `p` must be NULL or valid for `n` entries of reads.
pub unsafe fn items<'a, T>(p: *const T, n: usize, what: &str) -> Result<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    plausible::<T>(n, what)?;
    if p.is_null() {
        return Err(Error::inval(format!("{what} is NULL but n is {n}")));
    }
    // SAFETY: the caller provides n entries.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// (p, n) as a mutable slice of `n` out-entries; NULL with n > 0 is
/// `-EINVAL` "{what} is NULL but {count} is {n}".
///
/// # Safety
/// `p` must be NULL or valid for `n` entries of writes.
pub unsafe fn items_out<'a, T>(
    p: *mut T,
    n: usize,
    what: &str,
    count: &str,
) -> Result<&'a mut [std::mem::MaybeUninit<T>]> {
    if n == 0 {
        return Ok(&mut []);
    }
    plausible::<T>(n, what)?;
    if p.is_null() {
        return Err(Error::inval(format!("{what} is NULL but {count} is {n}")));
    }
    // SAFETY: the caller provides n entries, possibly uninitialised (hence MaybeUninit).
    Ok(unsafe { std::slice::from_raw_parts_mut(p.cast(), n) })
}

/// Store `value` in an out-parameter, which may be NULL (then nothing is written).
///
/// # Safety
/// `out` must be NULL or valid for one write of `T`.
pub unsafe fn write_opt<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: non-NULL and valid per the caller.
        unsafe { *out = value };
    }
}

/// Store `value` in a required out-parameter (NULL is `-EINVAL` "out is NULL"
/// naming `what`).
///
/// # Safety
/// `out` must be NULL or valid for one write of `T`.
pub unsafe fn write_out<T>(out: *mut T, what: &str, value: T) -> Result<()> {
    check_out(out, what)?;
    // SAFETY: non-NULL and valid per the caller.
    unsafe { *out = value };
    Ok(())
}

/// A NUL-terminated copy of a static name, leaked once per distinct name
/// (for the `*_str` functions that return static strings).
pub fn static_cstr(s: &'static str) -> *const c_char {
    use once_cell::sync::Lazy;
    use parking_lot::Mutex;
    use std::collections::HashMap;
    static NAMES: Lazy<Mutex<HashMap<&'static str, &'static CStr>>> = Lazy::new(|| Mutex::new(HashMap::new()));
    let mut m = NAMES.lock();
    let c = m.entry(s).or_insert_with(|| {
        let owned = std::ffi::CString::new(s).unwrap_or_default();
        Box::leak(owned.into_boxed_c_str())
    });
    c.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implausible_lengths_are_einval_before_any_slice_is_made() {
        let b = [0u8; 4];
        // SAFETY: the lengths are refused before the pointer is used.
        unsafe {
            let e = bytes_arg(b.as_ptr(), usize::MAX, "buf").unwrap_err();
            assert_eq!(e.errno, libc::EINVAL);
            assert!(e.msg.contains("buf: length") && e.msg.contains("exceeds"), "{}", e.msg);
            assert!(bytes_arg(b.as_ptr(), isize::MAX as usize + 1, "buf").is_err());
            assert!(bytes_out(b.as_ptr() as *mut u8, usize::MAX, "buf").is_err());
            assert!(items(b.as_ptr() as *const u64, usize::MAX / 8 + 1, "chunks").unwrap_err().msg.contains("x 8 bytes"));
            assert_eq!(bytes_arg(b.as_ptr(), 4, "buf").unwrap().len(), 4);
        }
        assert!(plausible::<u64>(isize::MAX as usize / 8, "n").is_ok());
        assert!(plausible::<u64>(isize::MAX as usize / 8 + 1, "n").is_err());
    }
}
