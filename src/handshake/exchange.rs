//! Reading and writing cm_meta records on a connected TCP fd owned by the
//! caller.
//!
//! [`RecordReader`] and [`RecordWriter`] keep their progress between calls, so
//! an event loop can drive them on a non-blocking fd (call again when the fd is
//! readable/writable); on a blocking fd one call completes the record.
//! Unlike Ceph, a record split over several TCP segments is accumulated, a
//! foreign protocol is recognised from its first bytes, and the reader never
//! consumes a byte past the end of the record it is reading.
//!
//! [`send_record`] and [`recv_record`] are the one-shot versions with a timeout.

use std::io;
use std::os::unix::io::RawFd;
use std::time::{Duration, Instant};

use super::record::{
    banner_undecided, diagnose_foreign, first_violation, foreign_error, malformed_error, quote,
    CmMeta, RECORD_LEN,
};
use crate::error::{Error, Result};
use crate::sys::errno;

/// The system's description of an errno, without Rust's "(os error N)" tail.
fn describe_errno(errno: i32) -> String {
    let s = io::Error::from_raw_os_error(errno).to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn would_block(errno: i32) -> bool {
    errno == libc::EAGAIN || errno == libc::EWOULDBLOCK
}

/// How a reader/writer step may use the fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Honour the fd's own blocking flag (the public `poll` methods).
    FdDefault,
    /// The caller has just seen readiness with poll(2) and must not block:
    /// sockets get MSG_DONTWAIT, other fds get at most one read/write.
    NoBlock,
}

/// The buffer of one transfer: bytes to receive into, or bytes to send.
enum Buf<'a> {
    Into(&'a mut [u8]),
    From(&'a [u8]),
}

/// What one transfer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Io {
    /// Moved this many bytes (at least one).
    Done(usize),
    /// Nothing can move now: the fd would block, or (NoBlock mode, non-socket
    /// fd) this step already had its one read/write.
    WouldBlock,
    /// Zero bytes: end of file for a read; for a write, the kernel took nothing.
    Eof,
    /// The syscall failed with this errno.
    Err(i32),
}

/// One recv/send on `fd` (send with MSG_NOSIGNAL, both with MSG_DONTWAIT in
/// NoBlock mode), retried on EINTR. The first ENOTSOCK sets `not_socket` and
/// the fd is used with read(2)/write(2) from then on. `moved` counts the
/// transfers this step already made: without MSG_DONTWAIT a second read or
/// write on a non-socket fd could block, so NoBlock mode allows only one.
fn transfer(fd: RawFd, mut buf: Buf<'_>, mode: Mode, not_socket: &mut bool, moved: usize) -> Io {
    let dontwait = if mode == Mode::NoBlock { libc::MSG_DONTWAIT } else { 0 };
    loop {
        if *not_socket && mode == Mode::NoBlock && moved > 0 {
            return Io::WouldBlock;
        }
        // SAFETY: each call gets the pointer and length of a live slice.
        let r = unsafe {
            match (&mut buf, *not_socket) {
                (Buf::Into(b), true) => libc::read(fd, b.as_mut_ptr().cast(), b.len()),
                (Buf::Into(b), false) => libc::recv(fd, b.as_mut_ptr().cast(), b.len(), dontwait),
                (Buf::From(b), true) => crate::sys::write_nosigpipe(fd, b),
                (Buf::From(b), false) => {
                    libc::send(fd, b.as_ptr().cast(), b.len(), libc::MSG_NOSIGNAL | dontwait)
                }
            }
        };
        if r > 0 {
            return Io::Done(r as usize);
        }
        if r == 0 {
            return Io::Eof;
        }
        match errno() {
            libc::EINTR => continue,
            // Not a socket (a pipe, a tty): plain read/write from now on. In
            // NoBlock mode `moved` is still 0, so one attempt is allowed.
            libc::ENOTSOCK if !*not_socket => *not_socket = true,
            e if would_block(e) => return Io::WouldBlock,
            e => return Io::Err(e),
        }
    }
}

/// Accumulates one 65-byte record from a stream, across as many calls as needed.
#[derive(Debug, Clone)]
pub struct RecordReader {
    buf: [u8; RECORD_LEN],
    len: usize,
    /// Set once recv(2) said ENOTSOCK; read(2) is used from then on.
    not_socket: bool,
    /// A failure is final: later calls return it again.
    failed: Option<Error>,
}

impl Default for RecordReader {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordReader {
    pub fn new() -> Self {
        RecordReader {
            buf: [0; RECORD_LEN],
            len: 0,
            not_socket: false,
            failed: None,
        }
    }

    /// Bytes of the current record received so far (0 after a record completed).
    pub fn bytes_so_far(&self) -> usize {
        self.len
    }

    /// Read what is available from `fd`.
    ///
    /// * `Ok(Some(meta))` — a complete, well-formed record arrived (the reader
    ///   is then ready for the next record);
    /// * `Ok(None)` — more bytes are needed and the fd would block;
    /// * `Err` — `ECONNRESET` on EOF, `EPROTO` for a foreign protocol or a
    ///   malformed record, otherwise the errno of the failed read. Errors are
    ///   final for this reader.
    ///
    /// Never reads past the last byte of the record.
    pub fn poll(&mut self, fd: RawFd) -> Result<Option<CmMeta>> {
        self.step(fd, Mode::FdDefault)
    }

    /// As [`poll`](Self::poll), for a caller that has just seen the fd
    /// readable: never blocks, even on a blocking fd.
    pub fn poll_ready(&mut self, fd: RawFd) -> Result<Option<CmMeta>> {
        self.step(fd, Mode::NoBlock)
    }

    fn fail(&mut self, e: Error) -> Result<Option<CmMeta>> {
        self.failed = Some(e.clone());
        Err(e)
    }

    /// The peer closed the stream before the record was complete.
    fn eof_error(&self) -> Error {
        let got = &self.buf[..self.len];
        let mut msg = format!(
            "peer closed the connection after {} of {RECORD_LEN} bytes of its cm_meta record",
            self.len
        );
        if self.len == 0 {
            msg.push_str(
                " (it sent nothing: the peer process exited, rejected the connection, or \
                 faulted it on its side; check the peer's log)",
            );
        } else {
            if let Some(what) = diagnose_foreign(got) {
                msg.push_str(&format!("; {what}"));
            }
            msg.push_str(&format!(" (received: {})", quote(got)));
        }
        Error::new(libc::ECONNRESET, msg)
    }

    fn step(&mut self, fd: RawFd, mode: Mode) -> Result<Option<CmMeta>> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut reads = 0usize;
        loop {
            debug_assert!(self.len < RECORD_LEN);
            let dst = Buf::Into(&mut self.buf[self.len..]);
            let n = match transfer(fd, dst, mode, &mut self.not_socket, reads) {
                Io::Done(n) => n,
                Io::WouldBlock => return Ok(None),
                Io::Eof => return self.fail(self.eof_error()),
                Io::Err(e) => {
                    let err = Error::new(
                        e,
                        format!(
                            "reading the peer's cm_meta record from fd {fd} failed after {} of \
                             {RECORD_LEN} bytes: {}",
                            self.len,
                            describe_errno(e)
                        ),
                    );
                    return self.fail(err);
                }
            };
            reads += 1;
            self.len += n;
            let got = &self.buf[..self.len];
            if let Some(what) = diagnose_foreign(got) {
                // Only reached once the byte after "ceph v" is known.
                if !banner_undecided(got) {
                    let e = foreign_error(got, what);
                    return self.fail(e);
                }
            }
            if !banner_undecided(got) {
                if let Some((offset, expected)) = first_violation(got) {
                    let e = malformed_error(got, offset, expected);
                    return self.fail(e);
                }
            }
            if self.len == RECORD_LEN {
                return match CmMeta::decode(&self.buf) {
                    Ok(meta) => {
                        self.len = 0;
                        Ok(Some(meta))
                    }
                    Err(e) => self.fail(e),
                };
            }
        }
    }
}

/// Writes one 65-byte record, across as many calls as the socket needs.
#[derive(Debug, Clone)]
pub struct RecordWriter {
    buf: [u8; RECORD_LEN],
    off: usize,
    not_socket: bool,
    failed: Option<Error>,
}

impl RecordWriter {
    pub fn new(meta: &CmMeta) -> Self {
        RecordWriter {
            buf: meta.encode(),
            off: 0,
            not_socket: false,
            failed: None,
        }
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> usize {
        self.off
    }

    /// Write what the fd accepts: `Ok(true)` once all 65 bytes are written,
    /// `Ok(false)` when the fd would block (call again when writable), `Err`
    /// with the errno of the failed send (EPIPE, ECONNRESET, ECONNREFUSED for a
    /// refused non-blocking connect, ...). Errors are final for this writer.
    ///
    /// Uses send(2) with MSG_NOSIGNAL, so a closed peer gives EPIPE instead of
    /// SIGPIPE; non-socket fds (ENOTSOCK) fall back to write(2) with SIGPIPE
    /// blocked around it (`sys::write_nosigpipe`), so they give EPIPE too.
    pub fn poll(&mut self, fd: RawFd) -> Result<bool> {
        self.step(fd, Mode::FdDefault)
    }

    /// As [`poll`](Self::poll), for a caller that has just seen the fd
    /// writable: never blocks, even on a blocking fd.
    pub fn poll_ready(&mut self, fd: RawFd) -> Result<bool> {
        self.step(fd, Mode::NoBlock)
    }

    fn step(&mut self, fd: RawFd, mode: Mode) -> Result<bool> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut writes = 0usize;
        while self.off < RECORD_LEN {
            let err = match transfer(fd, Buf::From(&self.buf[self.off..]), mode, &mut self.not_socket, writes) {
                Io::Done(n) => {
                    writes += 1;
                    self.off += n;
                    continue;
                }
                Io::WouldBlock => return Ok(false),
                Io::Eof => Error::new(
                    libc::EIO,
                    format!(
                        "sending our cm_meta record on fd {fd}: the kernel accepted 0 bytes after {} of \
                         {RECORD_LEN}",
                        self.off
                    ),
                ),
                Io::Err(e) => {
                    let hint = match e {
                        libc::ECONNREFUSED => {
                            "; the TCP connect to the peer was refused (nothing listens on that \
                             address/port, or a firewall rejects it)"
                        }
                        libc::EPIPE | libc::ECONNRESET => {
                            "; the peer closed or reset the connection (check the peer's log)"
                        }
                        _ => "",
                    };
                    Error::new(
                        e,
                        format!(
                            "sending our cm_meta record on fd {fd} failed after {} of {RECORD_LEN} \
                             bytes: {}{hint}",
                            self.off,
                            describe_errno(e)
                        ),
                    )
                }
            };
            self.failed = Some(err.clone());
            return Err(err);
        }
        Ok(true)
    }
}

/// Time left before `deadline`, as a poll(2) timeout; -1 = no deadline.
fn poll_timeout(deadline: Option<Instant>) -> i32 {
    match deadline {
        None => -1,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            // Round up so we never wake a fraction of a millisecond early and spin.
            let ms = left.as_micros().div_ceil(1000);
            ms.min(i32::MAX as u128) as i32
        }
    }
}

pub(crate) fn deadline_from(timeout_ms: i32) -> Option<Instant> {
    if timeout_ms < 0 {
        None
    } else {
        Some(Instant::now() + Duration::from_millis(timeout_ms as u64))
    }
}

/// Wait until `fd` reports `events` (or an error/hangup, which the next
/// syscall will turn into its errno). `Ok(false)` when the deadline passed.
pub(crate) fn wait_ready(fd: RawFd, events: libc::c_short, deadline: Option<Instant>) -> Result<bool> {
    if fd < 0 {
        // poll(2) silently skips negative fds, which would turn into a timeout.
        return Err(Error::new(
            libc::EBADF,
            format!("fd {fd} is not a file descriptor"),
        ));
    }
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        let timeout = poll_timeout(deadline);
        // SAFETY: one valid pollfd on the stack.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout) };
        if r < 0 {
            let errno = errno();
            if errno == libc::EINTR {
                continue;
            }
            return Err(Error::new(
                errno,
                format!("poll(2) on fd {fd} failed: {}", describe_errno(errno)),
            ));
        }
        if r == 0 {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            continue;
        }
        if pfd.revents & libc::POLLNVAL != 0 {
            return Err(Error::new(
                libc::EBADF,
                format!("fd {fd} is not an open file descriptor"),
            ));
        }
        return Ok(true);
    }
}

/// Send one record, waiting for writability as needed (blocking or
/// non-blocking fd). `timeout_ms < 0` waits forever; `ETIMEDOUT` when the
/// record could not be fully written in time.
pub fn send_record(fd: RawFd, meta: &CmMeta, timeout_ms: i32) -> Result<()> {
    let deadline = deadline_from(timeout_ms);
    let mut w = RecordWriter::new(meta);
    loop {
        if !wait_ready(fd, libc::POLLOUT, deadline)? {
            return Err(Error::new(
                libc::ETIMEDOUT,
                format!(
                    "timed out after {timeout_ms} ms sending our cm_meta record on fd {fd} ({} of \
                     {RECORD_LEN} bytes written): the peer is not reading its socket",
                    w.bytes_written()
                ),
            ));
        }
        if w.step(fd, Mode::NoBlock)? {
            return Ok(());
        }
    }
}

/// Receive one record, waiting for readability as needed (blocking or
/// non-blocking fd). `timeout_ms < 0` waits forever; `ETIMEDOUT` when no
/// complete record arrived in time. Other errors as [`RecordReader::poll`].
pub fn recv_record(fd: RawFd, timeout_ms: i32) -> Result<CmMeta> {
    let deadline = deadline_from(timeout_ms);
    let mut r = RecordReader::new();
    loop {
        if !wait_ready(fd, libc::POLLIN, deadline)? {
            return Err(Error::new(
                libc::ETIMEDOUT,
                format!(
                    "timed out after {timeout_ms} ms waiting for the peer's cm_meta record on fd {fd} \
                     ({} of {RECORD_LEN} bytes received): the peer is not sending (is it an \
                     async+rdma daemon that sends first, or a posix peer waiting for our banner?)",
                    r.bytes_so_far()
                ),
            ));
        }
        if let Some(meta) = r.step(fd, Mode::NoBlock)? {
            return Ok(meta);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd};

    fn socketpair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: fds is a 2-element array.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0, "socketpair: {}", io::Error::last_os_error());
        // SAFETY: both fds were just created and are owned by nobody else.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: fds is a 2-element array.
        let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        assert_eq!(r, 0);
        // SAFETY: both fds were just created.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn set_nonblocking(fd: RawFd) {
        // SAFETY: plain fcntl calls on an open fd.
        unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFL);
            assert!(fl >= 0);
            assert_eq!(libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK), 0);
        }
    }

    fn set_rcvtimeo(fd: RawFd, ms: i64) {
        let tv = libc::timeval {
            tv_sec: (ms / 1000) as libc::time_t,
            tv_usec: ((ms % 1000) * 1000) as libc::suseconds_t,
        };
        // SAFETY: tv is a valid timeval for the duration of the call.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
    }

    fn write_all(fd: RawFd, bytes: &[u8]) {
        // SAFETY: bytes is a valid slice.
        let r = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        assert_eq!(r, bytes.len() as isize, "{}", io::Error::last_os_error());
    }

    fn meta(seed: u32) -> CmMeta {
        let mut gid = [0u8; 16];
        gid[0] = 0xfe;
        gid[1] = 0x80;
        gid[15] = seed as u8;
        gid[14] = (seed >> 8) as u8;
        CmMeta {
            lid: seed as u16,
            local_qpn: 0x100 + seed,
            psn: 0xabcdef ^ seed,
            peer_qpn: seed * 3,
            gid,
        }
    }

    fn msgr2_banner() -> Vec<u8> {
        let mut b = b"ceph v2\n".to_vec();
        b.extend_from_slice(&[16, 0]);
        b.extend_from_slice(&[0x3f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(b.len(), 26);
        b
    }

    #[test]
    fn one_byte_at_a_time_into_a_nonblocking_reader() {
        let (a, b) = socketpair();
        set_nonblocking(b.as_raw_fd());
        let m = meta(7);
        let enc = m.encode();
        let mut r = RecordReader::new();
        assert_eq!(r.poll(b.as_raw_fd()).unwrap(), None, "nothing sent yet");
        assert_eq!(r.bytes_so_far(), 0);
        for i in 0..RECORD_LEN {
            write_all(a.as_raw_fd(), &enc[i..i + 1]);
            let got = r.poll(b.as_raw_fd()).unwrap();
            if i < RECORD_LEN - 1 {
                assert_eq!(got, None, "after {} bytes", i + 1);
                assert_eq!(r.bytes_so_far(), i + 1);
            } else {
                assert_eq!(got, Some(m));
                assert_eq!(r.bytes_so_far(), 0);
            }
        }
        // Nothing more pending.
        assert_eq!(r.poll(b.as_raw_fd()).unwrap(), None);
    }

    #[test]
    fn two_records_in_one_write_are_two_records() {
        let (a, b) = socketpair();
        set_nonblocking(b.as_raw_fd());
        let (m1, m2) = (meta(1), meta(2));
        let mut both = m1.encode().to_vec();
        both.extend_from_slice(&m2.encode());
        write_all(a.as_raw_fd(), &both);
        let mut r = RecordReader::new();
        assert_eq!(r.poll(b.as_raw_fd()).unwrap(), Some(m1));
        // A fresh reader must find the second record intact: the first did not over-read.
        let mut r2 = RecordReader::new();
        assert_eq!(r2.poll(b.as_raw_fd()).unwrap(), Some(m2));
        assert_eq!(r2.poll(b.as_raw_fd()).unwrap(), None);
        // The first reader is reusable for the next record.
        write_all(a.as_raw_fd(), &meta(3).encode());
        assert_eq!(r.poll(b.as_raw_fd()).unwrap(), Some(meta(3)));
    }

    #[test]
    fn eof_after_ten_bytes_is_econnreset() {
        let (a, b) = socketpair();
        write_all(a.as_raw_fd(), &meta(1).encode()[..10]);
        drop(a);
        let mut r = RecordReader::new();
        let e = r.poll(b.as_raw_fd()).unwrap_err();
        assert_eq!(e.errno, libc::ECONNRESET);
        assert!(e.msg.contains("after 10 of 65 bytes"), "{}", e.msg);
        // Final: asking again gives the same error.
        assert_eq!(r.poll(b.as_raw_fd()).unwrap_err(), e);
    }

    #[test]
    fn eof_at_zero_bytes_is_econnreset() {
        let (a, b) = socketpair();
        set_nonblocking(b.as_raw_fd());
        drop(a);
        let e = RecordReader::new().poll(b.as_raw_fd()).unwrap_err();
        assert_eq!(e.errno, libc::ECONNRESET);
        assert!(e.msg.contains("after 0 of 65 bytes"), "{}", e.msg);
    }

    #[test]
    fn msgr2_banner_is_diagnosed_without_waiting_for_65_bytes() {
        let (a, b) = socketpair();
        // Blocking reader: waiting for more bytes would time out (EAGAIN -> None) instead.
        set_rcvtimeo(b.as_raw_fd(), 2000);
        write_all(a.as_raw_fd(), &msgr2_banner());
        let mut r = RecordReader::new();
        let start = Instant::now();
        let e = r.poll(b.as_raw_fd()).expect_err("banner must be rejected");
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "reader waited for more bytes"
        );
        assert_eq!(e.errno, libc::EPROTO);
        for needle in [
            "msgr2",
            "async+posix",
            "async+rdma",
            "ms_cluster_type",
            "received 26 bytes",
        ] {
            assert!(e.msg.contains(needle), "missing {needle:?}: {}", e.msg);
        }
        assert_eq!(r.bytes_so_far(), 26);
        drop(a);
    }

    #[test]
    fn msgr1_banner_is_diagnosed_by_recv_record() {
        let (a, b) = socketpair();
        write_all(a.as_raw_fd(), b"ceph v027");
        let start = Instant::now();
        let e = recv_record(b.as_raw_fd(), 5000).unwrap_err();
        assert!(start.elapsed() < Duration::from_millis(4000));
        assert_eq!(e.errno, libc::EPROTO);
        assert!(
            e.msg.contains("msgr1") && e.msg.contains("ms_public_type"),
            "{}",
            e.msg
        );
        drop(a);
    }

    #[test]
    fn split_banner_waits_for_the_deciding_byte() {
        let (a, b) = socketpair();
        set_nonblocking(b.as_raw_fd());
        let mut r = RecordReader::new();
        write_all(a.as_raw_fd(), b"ceph v");
        // "cep" is not hex, but the bytes could still be a banner: no verdict yet.
        assert_eq!(r.poll(b.as_raw_fd()).unwrap(), None);
        write_all(a.as_raw_fd(), b"2\n");
        let e = r.poll(b.as_raw_fd()).unwrap_err();
        assert_eq!(e.errno, libc::EPROTO);
        assert!(e.msg.contains("msgr2"), "{}", e.msg);
    }

    #[test]
    fn garbage_is_rejected_at_the_first_bad_byte() {
        let (a, b) = socketpair();
        set_rcvtimeo(b.as_raw_fd(), 2000);
        write_all(a.as_raw_fd(), b"GET / HTTP/1.1\r\n");
        let e = RecordReader::new().poll(b.as_raw_fd()).unwrap_err();
        assert_eq!(e.errno, libc::EPROTO);
        assert!(
            e.msg.contains("byte 0 (lid)") && e.msg.contains("GET / HTTP/1.1\\r\\n"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn malformed_complete_record_is_eproto() {
        let (a, b) = socketpair();
        let mut rec = meta(5).encode();
        rec[64] = b'x';
        write_all(a.as_raw_fd(), &rec);
        let mut r = RecordReader::new();
        let e = r.poll(b.as_raw_fd()).unwrap_err();
        assert_eq!(e.errno, libc::EPROTO);
        assert!(e.msg.contains("byte 64"), "{}", e.msg);
    }

    #[test]
    fn read_error_carries_the_real_errno() {
        let (_a, b) = pipe();
        // The write end of a pipe is not readable: EBADF from read(2) after ENOTSOCK.
        let e = RecordReader::new().poll(b.as_raw_fd()).unwrap_err();
        assert_eq!(e.errno, libc::EBADF, "{}", e.msg);
        assert!(e.msg.contains("after 0 of 65"), "{}", e.msg);
        // Not an fd at all (a number no other test can be using).
        let e = RecordReader::new().poll(-1).unwrap_err();
        assert_eq!(e.errno, libc::EBADF, "{}", e.msg);
        // recv_record reports it too rather than waiting.
        let e = recv_record(-1, 1000).unwrap_err();
        assert_eq!(e.errno, libc::EBADF, "{}", e.msg);
        let e = send_record(-1, &meta(1), 1000).unwrap_err();
        assert_eq!(e.errno, libc::EBADF, "{}", e.msg);
    }

    #[test]
    fn writer_against_closed_peer_is_epipe_without_sigpipe() {
        let (a, b) = socketpair();
        drop(b);
        // Block SIGPIPE in this thread so a raised one stays pending and can be detected
        // (the test harness ignores SIGPIPE, which would hide it).
        // SAFETY: signal-mask manipulation of the calling thread only.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            let mut old: libc::sigset_t = std::mem::zeroed();
            assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old), 0);

            let mut w = RecordWriter::new(&meta(1));
            let res = w.poll(a.as_raw_fd());
            let res2 = send_record(a.as_raw_fd(), &meta(1), 1000);

            let mut pending: libc::sigset_t = std::mem::zeroed();
            libc::sigpending(&mut pending);
            let raised = libc::sigismember(&pending, libc::SIGPIPE) == 1;
            if raised {
                let zero = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                while libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) == libc::SIGPIPE {}
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());

            assert!(!raised, "sending raised SIGPIPE");
            let e = res.unwrap_err();
            assert_eq!(e.errno, libc::EPIPE, "{}", e.msg);
            assert!(e.msg.contains("after 0 of 65"), "{}", e.msg);
            assert_eq!(res2.unwrap_err().errno, libc::EPIPE);
        }
    }

    #[test]
    fn nonblocking_writer_on_full_buffer_completes_later() {
        let (a, b) = socketpair();
        set_nonblocking(a.as_raw_fd());
        set_nonblocking(b.as_raw_fd());
        // Fill the socket: big chunks, then single bytes, until EAGAIN.
        let mut junk_sent = 0usize;
        for chunk in [65536usize, 4096, 1] {
            let junk = vec![b'j'; chunk];
            loop {
                // SAFETY: junk is a valid buffer.
                let r = unsafe {
                    libc::send(
                        a.as_raw_fd(),
                        junk.as_ptr().cast(),
                        chunk,
                        libc::MSG_NOSIGNAL,
                    )
                };
                if r < 0 {
                    assert!(would_block(errno()));
                    break;
                }
                junk_sent += r as usize;
            }
        }
        let m = meta(9);
        let mut w = RecordWriter::new(&m);
        assert!(
            !w.poll(a.as_raw_fd()).unwrap(),
            "socket is full: must report would-block"
        );
        assert!(w.bytes_written() < RECORD_LEN);
        // Drain the junk, letting the writer progress as space frees up.
        let mut drained = 0usize;
        let mut done = false;
        let mut buf = vec![0u8; 8192];
        while drained < junk_sent {
            let n = (junk_sent - drained).min(buf.len());
            // SAFETY: buf has room for n bytes.
            let r = unsafe { libc::read(b.as_raw_fd(), buf.as_mut_ptr().cast(), n) };
            if r > 0 {
                assert!(buf[..r as usize].iter().all(|&c| c == b'j'));
                drained += r as usize;
            }
            if !done {
                done = w.poll(a.as_raw_fd()).unwrap();
            }
        }
        while !done {
            done = w.poll(a.as_raw_fd()).unwrap();
        }
        assert_eq!(w.bytes_written(), RECORD_LEN);
        assert_eq!(recv_record(b.as_raw_fd(), 1000).unwrap(), m);
    }

    #[test]
    fn recv_record_times_out() {
        for nonblocking in [true, false] {
            let (a, b) = socketpair();
            if nonblocking {
                set_nonblocking(b.as_raw_fd());
            }
            write_all(a.as_raw_fd(), &meta(1).encode()[..20]);
            let start = Instant::now();
            let e = recv_record(b.as_raw_fd(), 150).unwrap_err();
            let took = start.elapsed();
            assert_eq!(e.errno, libc::ETIMEDOUT, "{}", e.msg);
            assert!(e.msg.contains("20 of 65"), "{}", e.msg);
            assert!(
                took >= Duration::from_millis(150) && took < Duration::from_secs(3),
                "{took:?}"
            );
        }
    }

    #[test]
    fn send_and_recv_round_trip_across_threads() {
        let (a, b) = socketpair();
        let m = meta(0x42);
        let afd = a.as_raw_fd();
        let t = std::thread::spawn(move || {
            send_record(afd, &m, 2000).unwrap();
            recv_record(afd, 2000).unwrap()
        });
        assert_eq!(recv_record(b.as_raw_fd(), 2000).unwrap(), m);
        send_record(b.as_raw_fd(), &meta(0x43), 2000).unwrap();
        assert_eq!(t.join().unwrap(), meta(0x43));
        drop(a);
    }

    #[test]
    fn pipes_fall_back_to_read_and_write() {
        let (r, w) = pipe();
        send_record(w.as_raw_fd(), &meta(11), 1000).unwrap();
        let mut wr = RecordWriter::new(&meta(12));
        assert!(wr.poll(w.as_raw_fd()).unwrap());
        assert_eq!(recv_record(r.as_raw_fd(), 1000).unwrap(), meta(11));
        let mut rd = RecordReader::new();
        assert_eq!(rd.poll(r.as_raw_fd()).unwrap(), Some(meta(12)));
        drop(w);
        let e = recv_record(r.as_raw_fd(), 1000).unwrap_err();
        assert_eq!(e.errno, libc::ECONNRESET);
    }
}
