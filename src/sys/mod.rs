//! Thin helpers over the operating system, shared by every layer: the
//! calling thread's errno, file-descriptor flags, TCP sockets and addresses
//! (`net`), and the kernel objects an event loop waits on (`event`: epoll,
//! eventfd).

pub mod event;
pub mod net;

use crate::error::{Error, Result};
use std::os::raw::c_int;

/// The calling thread's errno, read right after a call that sets it
/// (`EIO` if the platform reports none).
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// An error for errno `e`: "`what`: NAME: description".
pub fn errno_error(e: i32, what: impl std::fmt::Display) -> Error {
    Error::new(e, format!("{what}: {}", crate::errno::errno_cstr(e).to_string_lossy()))
}

/// "`what`: NAME: description" from the current errno.
pub fn last_error(what: impl std::fmt::Display) -> Error {
    errno_error(errno(), what)
}

/// "`call` failed: NAME: description" from the current errno.
pub fn os_error(call: &str) -> Error {
    last_error(format_args!("{call} failed"))
}

/// Sets `O_NONBLOCK` on an fd the caller owns.
pub fn set_nonblocking(fd: c_int) -> Result<()> {
    // SAFETY: fcntl on an fd we own; -1 + errno on failure.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(os_error("fcntl(O_NONBLOCK)"));
    }
    Ok(())
}

/// A close-on-exec duplicate of `fd`, owned by the caller.
pub fn dup_cloexec(fd: c_int) -> Result<std::os::fd::OwnedFd> {
    // SAFETY: fcntl on a caller's fd; the new descriptor is ours.
    let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if d < 0 {
        return Err(last_error(format_args!("duplicating fd {fd}")));
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(d) })
}

/// `write(2)` that cannot raise SIGPIPE, for fds that are not sockets
/// (`send` with MSG_NOSIGNAL covers sockets): SIGPIPE is blocked for the
/// calling thread during the write, and one it caused is consumed before the
/// old mask comes back; the caller sees EPIPE instead. Returns what `write`
/// returned, with errno as the write left it.
pub fn write_nosigpipe(fd: c_int, buf: &[u8]) -> isize {
    // SAFETY: plain signal-mask calls on stack-allocated sets; the write gets
    // the pointer and length of a live slice.
    unsafe {
        let mut pipe: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        let mut pending: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        libc::sigpending(&mut pending);
        let was_pending = libc::sigismember(&pending, libc::SIGPIPE) == 1;
        libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, &mut old);
        let r = libc::write(fd, buf.as_ptr().cast(), buf.len());
        let e = errno();
        if r < 0 && e == libc::EPIPE && !was_pending {
            let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            libc::sigtimedwait(&pipe, std::ptr::null_mut(), &zero);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        *libc::__errno_location() = e;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static SIGPIPES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    extern "C" fn count(_: c_int) {
        SIGPIPES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Writes `b"record"` into a pipe whose reader is gone, with a SIGPIPE
    /// handler that counts deliveries (the test harness ignores SIGPIPE, which
    /// would hide one); returns (write result, errno, SIGPIPEs delivered).
    fn closed_pipe_write(write: fn(c_int, &[u8]) -> isize) -> (isize, i32, usize) {
        let mut fds = [0; 2];
        // SAFETY: valid out-array and sigaction structs; the fds are ours and closed here.
        unsafe {
            assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
            libc::close(fds[0]);
            let mut sa: libc::sigaction = std::mem::zeroed();
            let mut old: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = count as extern "C" fn(c_int) as usize;
            libc::sigaction(libc::SIGPIPE, &sa, &mut old);
            SIGPIPES.store(0, std::sync::atomic::Ordering::SeqCst);
            let r = write(fds[1], b"record");
            let e = errno();
            libc::sigaction(libc::SIGPIPE, &old, std::ptr::null_mut());
            libc::close(fds[1]);
            (r, e, SIGPIPES.load(std::sync::atomic::Ordering::SeqCst))
        }
    }

    #[test]
    fn a_write_to_a_closed_pipe_is_epipe_not_sigpipe() {
        // SAFETY (closure): a plain write of a live slice, for comparison.
        let plain = closed_pipe_write(|fd, b| unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) });
        assert_eq!(plain, (-1, libc::EPIPE, 1), "a plain write raises SIGPIPE (the check can see it)");
        assert_eq!(closed_pipe_write(write_nosigpipe), (-1, libc::EPIPE, 0));
    }
}

/// A caller's iovecs as `IoSlice`s (writev, sendmsg, ibstack_conn_sendv):
/// borrowed as they are when every base is non-NULL (`IoSlice` is
/// guaranteed ABI-compatible with `iovec` on Unix, so nothing is allocated
/// per call), else copied without the NULL and empty ones.
///
/// # Safety
/// Every entry with a non-NULL base must be valid for `iov_len` bytes of
/// reads for `'a`.
pub unsafe fn io_slices<'a>(v: &'a [libc::iovec]) -> std::borrow::Cow<'a, [std::io::IoSlice<'a>]> {
    use std::io::IoSlice;
    if v.iter().all(|e| !e.iov_base.is_null()) {
        // SAFETY: same layout (above); every base is valid for its length (caller).
        return std::borrow::Cow::Borrowed(unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<IoSlice<'a>>(), v.len()) });
    }
    v.iter()
        .filter(|e| !e.iov_base.is_null() && e.iov_len > 0)
        // SAFETY: non-NULL and valid for its length (caller).
        .map(|e| IoSlice::new(unsafe { std::slice::from_raw_parts(e.iov_base as *const u8, e.iov_len) }))
        .collect()
}
