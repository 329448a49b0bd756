//! Names and descriptions of the errno values the library returns, kept in one
//! table so `ibstack_strerror` can hand out static strings without a buffer.

use std::ffi::CStr;

macro_rules! errno_table {
    ($($name:ident => $text:literal),* $(,)?) => {
        /// (errno, symbolic name, "NAME: description" as a C string)
        const TABLE: &[(i32, &str, &CStr)] = &[
            $((libc::$name, stringify!($name),
               // SAFETY-free: a literal with a trailing NUL and no interior NUL.
               match CStr::from_bytes_with_nul(concat!(stringify!($name), ": ", $text, "\0").as_bytes()) {
                   Ok(s) => s,
                   Err(_) => panic!("bad errno text"),
               })),*
        ];
    };
}

errno_table! {
    EPERM => "operation not permitted",
    ENOENT => "no such file or directory",
    EINTR => "interrupted system call",
    EIO => "input/output error",
    ENXIO => "no such device or address",
    E2BIG => "argument list too long",
    EBADF => "bad file descriptor",
    EAGAIN => "resource temporarily unavailable, try again",
    ENOMEM => "cannot allocate memory",
    EACCES => "permission denied",
    EFAULT => "bad address",
    EBUSY => "device or resource busy",
    EEXIST => "file exists",
    ENODEV => "no such device",
    EINVAL => "invalid argument",
    ENFILE => "too many open files in system",
    EMFILE => "too many open files",
    ENOSPC => "no space left on device",
    EPIPE => "broken pipe",
    ERANGE => "result out of range",
    ENOSYS => "function not implemented",
    ENODATA => "no data available",
    ETIME => "timer expired",
    EPROTO => "protocol error",
    EOVERFLOW => "value too large for defined data type",
    EBADMSG => "bad message",
    EOPNOTSUPP => "operation not supported",
    EADDRINUSE => "address already in use",
    EADDRNOTAVAIL => "cannot assign requested address",
    ENETDOWN => "network is down",
    ENETUNREACH => "network is unreachable",
    ECONNABORTED => "software caused connection abort",
    ECONNRESET => "connection reset by peer",
    ENOBUFS => "no buffer space available",
    EISCONN => "transport endpoint is already connected",
    ENOTCONN => "transport endpoint is not connected",
    ESHUTDOWN => "cannot send after transport endpoint shutdown",
    ETIMEDOUT => "connection timed out",
    ECONNREFUSED => "connection refused",
    EHOSTUNREACH => "no route to host",
    EALREADY => "operation already in progress (object already consumed)",
    EINPROGRESS => "operation now in progress",
    ECANCELED => "operation canceled",
    ENOTRECOVERABLE => "state not recoverable (a panic was caught inside ibstack)",
}

fn lookup(errno: i32) -> Option<&'static (i32, &'static str, &'static CStr)> {
    let e = errno.checked_abs()?;
    TABLE.iter().find(|(v, _, _)| *v == e)
}

/// Symbolic name of an errno value ("EINVAL"); accepts either sign.
pub fn errno_name(errno: i32) -> &'static str {
    lookup(errno).map(|(_, n, _)| *n).unwrap_or("unknown error")
}

/// "NAME: description" for an errno value of either sign, as a static C string.
pub fn errno_cstr(errno: i32) -> &'static CStr {
    if errno == 0 {
        return c"0: success";
    }
    lookup(errno).map(|(_, _, s)| *s).unwrap_or(c"unknown error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_both_signs() {
        assert_eq!(errno_name(libc::EINVAL), "EINVAL");
        assert_eq!(errno_name(-libc::ENODEV), "ENODEV");
        assert_eq!(errno_name(-libc::ENOTRECOVERABLE), "ENOTRECOVERABLE");
        assert_eq!(errno_name(99999), "unknown error");
        assert_eq!(errno_name(i32::MIN), "unknown error");
    }

    #[test]
    fn descriptions_are_prefixed_with_the_name() {
        assert_eq!(errno_cstr(-libc::ENOMEM).to_str().unwrap(), "ENOMEM: cannot allocate memory");
        assert_eq!(errno_cstr(0).to_str().unwrap(), "0: success");
        for (v, n, s) in TABLE {
            assert!(*v > 0);
            assert!(s.to_str().unwrap().starts_with(n));
        }
    }

    #[test]
    fn table_has_no_duplicate_values() {
        for (i, (a, an, _)) in TABLE.iter().enumerate() {
            for (b, bn, _) in &TABLE[i + 1..] {
                // EAGAIN/EWOULDBLOCK and EOPNOTSUPP/ENOTSUP alias on Linux; only one is listed.
                assert_ne!(a, b, "{an} and {bn} share a value");
            }
        }
    }
}
