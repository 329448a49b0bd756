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
