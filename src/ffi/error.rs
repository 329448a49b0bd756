//! The calling thread's last error message, read from C with
//! `ibstack_last_error_message`.

use crate::error::Error;
use std::cell::RefCell;

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Record `err` as this thread's last error, prefixed with the C function's
/// name, and log it at debug level (the caller decides whether it is worth
/// more).
pub fn set_last_error(func: &str, err: &Error) {
    use std::fmt::Write;
    // Reuses the thread's buffer: -EAGAIN in a polling loop costs no allocation here.
    LAST_ERROR.with(|m| {
        let mut m = m.borrow_mut();
        // The same failure again (-EAGAIN from a polling loop): the text is already there.
        let same = m.len() == func.len() + 2 + err.msg.len()
            && m.starts_with(func)
            && m[func.len()..].starts_with(": ")
            && m.ends_with(&*err.msg);
        if !same {
            m.clear();
            let _ = write!(m, "{func}: {}", err.msg);
        }
    });
    // after the borrow: a record may reach a callback that reads the message
    log::debug!("{func}: {} ({})", err.msg, crate::errno_name(err.errno));
}

/// Put back a message saved with [`last_error_string`] (around the log
/// callback, whose library calls would otherwise overwrite it).
pub fn restore_last_error(saved: String) {
    LAST_ERROR.with(|m| *m.borrow_mut() = saved);
}

/// This thread's last error message (empty when no call failed yet).
pub fn last_error_string() -> String {
    LAST_ERROR.with(|m| m.borrow().clone())
}

/// Copy `text` into a C buffer of `len` bytes, truncating and always
/// NUL-terminating when `len > 0`. Returns the full length of `text`, so a
/// caller can tell that the copy was truncated (as snprintf does).
///
/// # Safety
/// `buf` must be NULL or valid for `len` bytes of writes.
pub unsafe fn copy_to_c_buf(text: &str, buf: *mut std::os::raw::c_char, len: usize) -> usize {
    if !buf.is_null() && len > 0 {
        let bytes = text.as_bytes();
        let n = bytes.len().min(len - 1);
        // SAFETY: the caller guarantees `buf` holds `len` bytes; n < len.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), n);
            *buf.add(n) = 0;
        }
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_truncates_and_terminates() {
        let mut buf = [0x55 as std::os::raw::c_char; 6];
        let n = unsafe { copy_to_c_buf("hello world", buf.as_mut_ptr(), buf.len()) };
        assert_eq!(n, 11);
        let s = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
        assert_eq!(s.to_str().unwrap(), "hello");
        assert_eq!(unsafe { copy_to_c_buf("abc", std::ptr::null_mut(), 10) }, 3);
        assert_eq!(unsafe { copy_to_c_buf("abc", buf.as_mut_ptr(), 0) }, 3);
        assert_eq!(buf[0], b'h' as std::os::raw::c_char);
    }

    #[test]
    fn messages_are_per_thread() {
        set_last_error("f", &Error::inval("main thread"));
        std::thread::spawn(|| {
            assert_eq!(last_error_string(), "");
            set_last_error("g", &Error::inval("other thread"));
        })
        .join()
        .unwrap();
        assert_eq!(last_error_string(), "f: main thread");
    }
}
