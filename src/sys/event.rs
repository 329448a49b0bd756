//! epoll, eventfd and timerfd, the kernel objects the stack waits on.

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

/// A non-blocking one-shot timerfd on CLOCK_MONOTONIC (the clock of
/// `std::time::Instant`): readable once the armed delay passed, until drained.
pub struct TimerFd(OwnedFd);

impl TimerFd {
    pub fn new() -> Result<TimerFd> {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
        if fd < 0 {
            return Err(os_error("timerfd_create").context("the stack's deadline timer (is RLIMIT_NOFILE exhausted?)"));
        }
        // SAFETY: fresh descriptor we own.
        Ok(TimerFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Fires once after `delay` (a zero delay fires at once); `None` disarms.
    /// Replaces any earlier setting.
    pub fn set(&self, delay: Option<std::time::Duration>) -> Result<()> {
        let mut v: libc::itimerspec = unsafe { std::mem::zeroed() };
        if let Some(d) = delay {
            // it_value 0 would disarm: fire after at least 1 ns.
            let d = d.max(std::time::Duration::from_nanos(1));
            v.it_value.tv_sec = d.as_secs().min(i64::MAX as u64 / 2) as libc::time_t;
            v.it_value.tv_nsec = d.subsec_nanos() as libc::c_long;
        }
        // SAFETY: v is a valid itimerspec; the old value is not wanted.
        if unsafe { libc::timerfd_settime(self.fd(), 0, &v, std::ptr::null_mut()) } < 0 {
            return Err(os_error("timerfd_settime"));
        }
        Ok(())
    }

    /// Consumes an expiry (EAGAIN when none is pending).
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64.
        unsafe { libc::read(self.fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn readable(fd: RawFd, ms: i32) -> bool {
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, ms) == 1 }
    }

    #[test]
    fn timerfd_fires_once_after_its_delay_and_can_be_disarmed() {
        let t = TimerFd::new().unwrap();
        assert!(!readable(t.fd(), 0), "a new timer is not armed");
        let t0 = Instant::now();
        t.set(Some(Duration::from_millis(30))).unwrap();
        assert!(!readable(t.fd(), 5));
        assert!(readable(t.fd(), 2000));
        assert!(t0.elapsed() >= Duration::from_millis(30));
        t.drain();
        assert!(!readable(t.fd(), 50), "one-shot: drained, it stays quiet");
        t.set(Some(Duration::from_millis(20))).unwrap();
        t.set(None).unwrap();
        assert!(!readable(t.fd(), 60), "disarmed before it fired");
        t.set(Some(Duration::ZERO)).unwrap();
        assert!(readable(t.fd(), 1000), "a zero delay fires at once");
    }
}
