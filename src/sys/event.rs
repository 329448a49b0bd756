//! epoll and eventfd, the two kernel objects the stack waits on.

use super::os_error;
use crate::error::Result;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub struct Epoll(OwnedFd);

impl Epoll {
    pub fn new() -> Result<Epoll> {
        // SAFETY: plain syscall; returns -1 + errno.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(os_error("epoll_create1"));
        }
        // SAFETY: fd is a fresh descriptor we own.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    fn ctl(&self, op: i32, fd: RawFd, events: u32, token: u64) -> Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: ev is valid for the call.
        if unsafe { libc::epoll_ctl(self.fd(), op, fd, &mut ev) } < 0 {
            return Err(os_error("epoll_ctl"));
        }
        Ok(())
    }

    pub fn add(&self, fd: RawFd, events: u32, token: u64) -> Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, token)
    }
    pub fn modify(&self, fd: RawFd, events: u32, token: u64) -> Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, token)
    }
    pub fn delete(&self, fd: RawFd) {
        let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0);
    }

    /// Ready (token, events) pairs; EINTR is an empty result.
    pub fn wait(&self, out: &mut [libc::epoll_event], timeout_ms: i32) -> Result<usize> {
        // SAFETY: out has room for out.len() events.
        let n = unsafe { libc::epoll_wait(self.fd(), out.as_mut_ptr(), out.len() as i32, timeout_ms) };
        if n < 0 {
            let e = os_error("epoll_wait");
            return if e.errno == libc::EINTR { Ok(0) } else { Err(e) };
        }
        Ok(n as usize)
    }
}

/// A non-blocking eventfd used as a level-style notification counter.
pub struct EventFd(OwnedFd);

impl EventFd {
    pub fn new() -> Result<EventFd> {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(os_error("eventfd").context("the connection's notification fd (is RLIMIT_NOFILE exhausted?)"));
        }
        // SAFETY: fresh descriptor we own.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Adds one to the counter (never blocks; a saturated counter stays readable).
    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64.
        unsafe { libc::write(self.fd(), (&one as *const u64).cast(), 8) };
    }

    /// Resets the counter to zero.
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64; EAGAIN when already zero.
        unsafe { libc::read(self.fd(), (&mut v as *mut u64).cast(), 8) };
    }
}
