//! The panic boundary. A panic must never unwind into C (since Rust 1.81 it
//! would abort the host daemon), so every exported body runs inside
//! [`ffi_boundary!`](crate::ffi_boundary): the body returns `Result<T>`, a
//! failure becomes the C return value chosen by [`FfiReturn`] plus a
//! thread-local message, and a panic becomes `-ENOTRECOVERABLE` / NULL /
//! false / 0 and is logged once.

use crate::error::Error;
use std::any::Any;
use std::os::raw::c_int;

/// How a C return type encodes failure.
pub trait FfiReturn: Sized {
    /// The value returned when the body failed with `err`.
    fn from_error(err: &Error) -> Self;
    /// The value returned when the body panicked.
    fn from_panic() -> Self {
        Self::from_error(&Error::new(libc::ENOTRECOVERABLE, "panic"))
    }
    /// Whether a failure is logged as a warning: a void function (a `_free`)
    /// cannot report it any other way.
    const WARN: bool = false;
}

/// The positive errno a failure is reported with: an `Error` that carries 0
/// (or a value that has no absolute) is `EIO`, never "success".
fn failure_errno(err: &Error) -> i32 {
    match err.errno.checked_abs() {
        Some(e) if e != 0 => e,
        _ => libc::EIO,
    }
}

impl FfiReturn for c_int {
    fn from_error(err: &Error) -> Self {
        -failure_errno(err)
    }
}

impl FfiReturn for isize {
    fn from_error(err: &Error) -> Self {
        -(failure_errno(err) as isize)
    }
}

/// Sizes and counts that cannot carry an errno: failure is 0.
impl FfiReturn for usize {
    fn from_error(_: &Error) -> Self {
        0
    }
}

impl FfiReturn for u32 {
    fn from_error(_: &Error) -> Self {
        0
    }
}

impl FfiReturn for u8 {
    fn from_error(_: &Error) -> Self {
        0
    }
}

impl FfiReturn for bool {
    fn from_error(_: &Error) -> Self {
        false
    }
}

impl FfiReturn for () {
    fn from_error(_: &Error) -> Self {}
    const WARN: bool = true;
}

impl<T> FfiReturn for *const T {
    fn from_error(_: &Error) -> Self {
        std::ptr::null()
    }
}

impl<T> FfiReturn for *mut T {
    fn from_error(_: &Error) -> Self {
        std::ptr::null_mut()
    }
}

/// Text of a panic payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// The exported function's name from the `type_name` of an item nested in
/// it ("ibstack::capi::cq::ibstack_cq_new::{{closure}}::here" →
/// "ibstack_cq_new"). Only called when a message is built.
pub fn trim_fn_name(nested: &'static str) -> &'static str {
    let mut parts = nested.rsplit("::").filter(|p| !p.starts_with('{'));
    parts.next(); // the nested item itself
    parts.next().unwrap_or(nested)
}

/// Expands to the enclosing function's name, as a `&'static str` (derived
/// from `std::any::type_name`; trimmed once per call site, then remembered:
/// a caller polling a non-blocking call that returns -EAGAIN evaluates it on
/// every call).
#[macro_export]
macro_rules! fn_name {
    () => {{
        fn here() {}
        fn type_name_of<F>(_: F) -> &'static str {
            ::std::any::type_name::<F>()
        }
        static NAME: ::once_cell::sync::OnceCell<&'static str> = ::once_cell::sync::OnceCell::new();
        *NAME.get_or_init(|| $crate::ffi::panic::trim_fn_name(type_name_of(here)))
    }};
}

/// Called by the boundary macro with the body's outcome; `name` gives the
/// exported function's name, evaluated only on failure.
pub fn finish<T: FfiReturn>(name: impl FnOnce() -> &'static str, outcome: std::thread::Result<crate::Result<T>>) -> T {
    match outcome {
        Ok(Ok(v)) => v,
        Ok(Err(err)) => {
            let ret = T::from_error(&err);
            let func = name();
            if T::WARN {
                log::warn!("{func}: {}", err.msg);
            }
            crate::ffi::error::set_last_error(func, &err);
            ret
        }
        Err(payload) => {
            let func = name();
            let msg = panic_message(payload.as_ref());
            let err = Error::new(
                libc::ENOTRECOVERABLE,
                format!("internal error (panic caught at the C boundary, please report it): {msg}"),
            );
            log::error!("{func}: {}", err.msg);
            crate::ffi::error::set_last_error(func, &err);
            T::from_panic()
        }
    }
}

/// Run an exported function's body (an expression of type `Result<T>`) with
/// the panic guard and the error conversion. Messages are prefixed with the
/// enclosing function's name ([`fn_name!`](crate::fn_name)).
#[macro_export]
macro_rules! ffi_boundary {
    ($body:block) => {{
        $crate::ffi::log::ensure_installed();
        let _log_defer = $crate::ffi::log::defer();
        let outcome = ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(
            || -> $crate::Result<_> { $body },
        ));
        $crate::ffi::panic::finish(|| $crate::fn_name!(), outcome)
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_fn(kind: u8) -> c_int {
        crate::ffi_boundary!({
            match kind {
                0 => Ok(7),
                1 => Err(Error::new(libc::ENODEV, "no device here")),
                _ => panic!("boom {kind}"),
            }
        })
    }

    fn test_ptr(fail: bool) -> *mut u8 {
        crate::ffi_boundary!({
            if fail {
                panic!("pointer panic")
            }
            Ok(std::ptr::NonNull::<u8>::dangling().as_ptr())
        })
    }

    #[test]
    fn an_error_without_errno_is_still_a_failure() {
        let r: c_int = crate::ffi_boundary!({ Err(Error::new(0, "no errno recorded")) });
        assert_eq!(r, -libc::EIO, "errno 0 must not read as success");
        let r: isize = crate::ffi_boundary!({ Err(Error::new(i32::MIN, "odd errno")) });
        assert_eq!(r, -(libc::EIO as isize));
    }

    #[test]
    fn ok_passes_through() {
        assert_eq!(test_fn(0), 7);
    }

    #[test]
    fn error_becomes_negative_errno_and_message() {
        assert_eq!(test_fn(1), -libc::ENODEV);
        let msg = crate::ffi::error::last_error_string();
        assert_eq!(msg, "test_fn: no device here");
    }

    #[test]
    fn panic_becomes_enotrecoverable_and_is_described() {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let r = test_fn(2);
        let p = test_ptr(true);
        std::panic::set_hook(prev);
        assert_eq!(r, -libc::ENOTRECOVERABLE);
        assert!(p.is_null());
        let msg = crate::ffi::error::last_error_string();
        assert!(msg.contains("pointer panic"), "{msg}");
        assert!(!test_ptr(false).is_null());
    }

    #[test]
    fn names_are_trimmed() {
        assert_eq!(trim_fn_name("ibstack::capi::cq::ibstack_cq_new::{{closure}}::here"), "ibstack_cq_new");
        assert_eq!(trim_fn_name("ibstack::capi::cq::ibstack_cq_new::here"), "ibstack_cq_new");
        fn outer() -> &'static str {
            crate::fn_name!()
        }
        assert_eq!(outer(), "outer");
    }
}
