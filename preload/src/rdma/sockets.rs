//! The libc functions transparent mode interposes. Each one first looks the
//! fd up in the table (one atomic load while nothing was converted); fds it
//! does not know — the application's other sockets, files, pipes, and every
//! descriptor of the ibstack code inside — go to the real function
//! untouched, errno included. Only `connect` and `listen` decide about new
//! conversions (a TCP stream socket whose port is in ibstack_preload_ports),
//! and `accept` marks the sockets of a converted listener for classification.
//!
//! What a converted fd does, in socket terms:
//! * `connect` again: EALREADY while the handshake runs, EISCONN once it is
//!   done (Ceph's NetHandler::reconnect reads that as connected), the
//!   connection's error when it failed — or, when the peer turned out to be a
//!   posix daemon (its banner instead of a cm_meta record), a new plain TCP
//!   connect under the same number (ibstack_preload_fallback);
//! * `read`/`recv*`: the stream; 0 at the peer's orderly close; EAGAIN;
//! * `write`/`send*`/`writev`/`sendmsg`: bytes accepted into SENDs, EAGAIN;
//! * epoll on the number: the connection's eventfd, readable when there is
//!   something to do (data, handshake end, TX room, a failure), always writable;
//! * `getsockname`/`getpeername`/`getsockopt`/`setsockopt`: the side channel's;
//! * `fcntl` O_NONBLOCK: kept per fd (the eventfd itself stays non-blocking).

use super::classify::{classify, Peer, PEEK};
use super::table::{self, Entry, Kind};
use crate::real::{real, Real};
use ibstack::qp::Role;
use ibstack::stack::conn::{is_end_of_stream, Conn};
use std::borrow::Cow;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::os::raw::{c_int, c_void};
use std::sync::Arc;

/// Writes a converted listener's accepted socket may queue before it is
/// known whether they go over RDMA or TCP (a banner is 26 bytes; Ceph's
/// first frames a few hundred).
const PENDING_MAX: usize = 1 << 20;

static R_CONNECT: Real = Real::new(c"connect", c"GLIBC_2.2.5");
static R_LISTEN: Real = Real::new(c"listen", c"GLIBC_2.2.5");
static R_ACCEPT: Real = Real::new(c"accept", c"GLIBC_2.2.5");
static R_ACCEPT4: Real = Real::new(c"accept4", c"GLIBC_2.10");
static R_READ: Real = Real::new(c"read", c"GLIBC_2.2.5");
static R_READV: Real = Real::new(c"readv", c"GLIBC_2.2.5");
static R_RECV: Real = Real::new(c"recv", c"GLIBC_2.2.5");
static R_RECVFROM: Real = Real::new(c"recvfrom", c"GLIBC_2.2.5");
static R_RECVMSG: Real = Real::new(c"recvmsg", c"GLIBC_2.2.5");
static R_WRITE: Real = Real::new(c"write", c"GLIBC_2.2.5");
static R_WRITEV: Real = Real::new(c"writev", c"GLIBC_2.2.5");
static R_SEND: Real = Real::new(c"send", c"GLIBC_2.2.5");
static R_SENDTO: Real = Real::new(c"sendto", c"GLIBC_2.2.5");
static R_SENDMSG: Real = Real::new(c"sendmsg", c"GLIBC_2.2.5");
static R_CLOSE: Real = Real::new(c"close", c"GLIBC_2.2.5");
static R_SHUTDOWN: Real = Real::new(c"shutdown", c"GLIBC_2.2.5");
static R_GETSOCKNAME: Real = Real::new(c"getsockname", c"GLIBC_2.2.5");
static R_GETPEERNAME: Real = Real::new(c"getpeername", c"GLIBC_2.2.5");
static R_GETSOCKOPT: Real = Real::new(c"getsockopt", c"GLIBC_2.2.5");
static R_SETSOCKOPT: Real = Real::new(c"setsockopt", c"GLIBC_2.2.5");
static R_FCNTL: Real = Real::new(c"fcntl", c"GLIBC_2.2.5");
static R_FCNTL64: Real = Real::new(c"fcntl64", c"GLIBC_2.28");
static R_IOCTL: Real = Real::new(c"ioctl", c"GLIBC_2.2.5");
static R_DUP2: Real = Real::new(c"dup2", c"GLIBC_2.2.5");
static R_EPOLL_CTL: Real = Real::new(c"epoll_ctl", c"GLIBC_2.3.2");

pub fn errno() -> i32 {
    crate::report::errno()
}
fn set_errno(e: i32) {
    crate::report::set_errno(e)
}
fn fail(e: i32) -> isize {
    set_errno(e);
    -1
}

/// epoll_ctl without the table (for `table::switch_file`).
///
/// # Safety
/// As epoll_ctl(2).
pub unsafe fn real_epoll_ctl(epfd: c_int, op: c_int, fd: c_int, ev: *mut libc::epoll_event) -> c_int {
    let f = real!(R_EPOLL_CTL, unsafe extern "C" fn(c_int, c_int, c_int, *mut libc::epoll_event) -> c_int, -1);
    // SAFETY: forwarded.
    unsafe { f(epfd, op, fd, ev) }
}

/// Runs a table fd's handling; a panic (a bug) becomes EIO, never an unwind into C.
fn guarded(f: impl FnOnce() -> isize) -> isize {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => {
            crate::report::rdma("internal error (a panic) in a converted socket call; it failed with EIO", true);
            fail(libc::EIO)
        }
    }
}

fn conn_of(e: &Entry) -> Option<Arc<Conn>> {
    match &*e.kind.lock() {
        Kind::Conn { conn, .. } => Some(conn.clone()),
        _ => None,
    }
}

/// # Safety
/// `addr` NULL or valid for `len` bytes.
unsafe fn sockaddr_of(addr: *const libc::sockaddr, len: libc::socklen_t) -> Option<SocketAddr> {
    if addr.is_null() || (len as usize) < std::mem::size_of::<libc::sockaddr_in>() {
        return None;
    }
    // SAFETY: zeroed storage is valid; copy at most its size from a valid buffer.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let n = (len as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    unsafe { std::ptr::copy_nonoverlapping(addr.cast::<u8>(), (&mut ss as *mut libc::sockaddr_storage).cast::<u8>(), n) };
    ibstack::sys::net::from_sockaddr(&ss)
}

/// An IPv4/IPv6 stream socket, listening or not.
fn is_tcp(fd: c_int, listening: bool) -> bool {
    ibstack::sys::net::check_tcp_socket(fd, listening, "").is_ok()
}

fn fd_nonblocking(fd: c_int) -> bool {
    // SAFETY: F_GETFL on an fd.
    let fl = unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_GETFL) };
    fl >= 0 && (fl as c_int & libc::O_NONBLOCK) != 0
}

fn rdma_mode() -> bool {
    crate::mode::mode() == crate::mode::Mode::Rdma
}

/// Sleeps until `fd` may have news (a converted fd's eventfd), at most 100 ms.
fn wait_readable(fd: c_int) {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::syscall(libc::SYS_poll, &mut p as *mut libc::pollfd, 1, 100) };
}

// ------------------------------------------------------------------ conversion

/// A connection of the process's stack on a duplicate of the application's
/// socket `fd` (the application's number keeps naming the socket until the
/// caller switches it).
fn adopt_dup(fd: c_int, role: Role) -> Result<Arc<Conn>, ibstack::Error> {
    let st = super::stack().map_err(|m| ibstack::Error::new(libc::ECONNABORTED, m))?;
    st.adopt_socket(ibstack::sys::dup_cloexec(fd)?, role)
}

/// The application's connecting socket `fd` becomes an ibstack connector.
fn convert_connector(fd: c_int, target: SocketAddr, nonblock: bool) -> Result<(), String> {
    let conn = adopt_dup(fd, Role::Connector).map_err(|e| e.msg)?;
    let entry = Entry::new(Kind::Conn { conn: conn.clone(), target: Some(target), queued: Vec::new(), up_logged: false }, nonblock);
    if let Err(e) = table::switch_file(&entry, fd, conn.fd()) {
        conn.close();
        return Err(format!("dup3 over fd {fd}: {}", std::io::Error::from_raw_os_error(e)));
    }
    table::insert(fd, entry);
    Ok(())
}

/// A converted connection failed before it was up because the peer speaks
/// Ceph's TCP messenger: connect again over plain TCP under the same fd.
fn fall_back(fd: c_int, e: &Entry, conn: &Conn, target: SocketAddr, why: &str) -> isize {
    let family = if target.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain socket creation.
    let ns = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if ns < 0 {
        return fail(errno());
    }
    let (ss, len) = ibstack::sys::net::to_sockaddr(&target);
    let f = real!(R_CONNECT, unsafe extern "C" fn(c_int, *const libc::sockaddr, libc::socklen_t) -> c_int, -1);
    // SAFETY: a valid address of len bytes.
    let r = unsafe { f(ns, (&ss as *const libc::sockaddr_storage).cast(), len) };
    let cerr = errno();
    if r < 0 && cerr != libc::EINPROGRESS {
        // SAFETY: closing our own socket.
        unsafe { libc::syscall(libc::SYS_close, ns) };
        return fail(cerr);
    }
    let sw = table::switch_file(e, fd, ns);
    // SAFETY: ns was dup'ed onto fd (or the switch failed): our number goes.
    unsafe { libc::syscall(libc::SYS_close, ns) };
    if let Err(err) = sw {
        return fail(err);
    }
    if !e.nonblocking() {
        // SAFETY: fcntl on the application's fd, now the new socket.
        unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_SETFL, libc::O_RDWR) };
    }
    *e.kind.lock() = Kind::Tcp;
    posix_peers().lock().insert(target);
    conn.close();
    crate::report::rdma(&format!("connection to {target}: tcp fallback ({why})"), false);
    if r == 0 {
        return fail(libc::EISCONN);
    }
    fail(libc::EALREADY)
}

/// Peers that answered a conversion with Ceph's TCP banner: this process's
/// later connects to them go straight to TCP instead of failing a handshake
/// first. (A peer that is restarted as Ceph's own async+rdma is then reached
/// over TCP only after this process restarts too.)
fn posix_peers() -> &'static parking_lot::Mutex<std::collections::HashSet<SocketAddr>> {
    static SET: std::sync::OnceLock<parking_lot::Mutex<std::collections::HashSet<SocketAddr>>> = std::sync::OnceLock::new();
    SET.get_or_init(Default::default)
}

/// `connect` on a converted fd: how far the connection is.
fn connect_again(fd: c_int, e: &Entry) -> isize {
    loop {
        let (conn, target, status) = match &mut *e.kind.lock() {
            Kind::Conn { conn, target, up_logged, .. } => {
                let status = conn.is_connected();
                if let Ok(true) = status {
                    if !std::mem::replace(up_logged, true) {
                        log_up(conn, "rdma");
                    }
                    return fail(libc::EISCONN);
                }
                (conn.clone(), *target, status)
            }
            _ => return fail(libc::EISCONN),
        };
        match status {
            Ok(true) => unreachable!("answered above"),
            Ok(false) if e.nonblocking() => return fail(libc::EALREADY),
            Ok(false) => wait_readable(fd),
            Err(err) => {
                let posix_peer = err.msg.contains("speaks Ceph's TCP messenger");
                let fallback = super::settings().cfg.preload_fallback;
                if let (true, true, Some(t)) = (posix_peer, fallback, target) {
                    return fall_back(fd, e, &conn, t, "the peer answered with Ceph's TCP banner: it runs async+posix");
                }
                crate::report::rdma(&format!("connection to {}: {err}", target.map_or("?".into(), |t| t.to_string())), true);
                return fail(err.errno);
            }
        }
    }
}

fn log_up(conn: &Conn, how: &str) {
    let peer = conn.tcp_addr(true).map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
    log::info!(target: "ibstack::rdma", "connection with {peer}: {how}, QP {}, GID index {}", conn.qp_num(), conn.gid_index());
}

/// An accepted socket of a converted listener: decide from its first bytes.
/// Ok(true) = it is (now) an ibstack connection, Ok(false) = plain TCP (it
/// left the table), Err(errno) = not decided yet (EAGAIN) or failed.
fn classify_pending(fd: c_int, e: &Entry) -> Result<bool, i32> {
    let mut first = [0u8; PEEK];
    // SAFETY: peek into a local buffer.
    let n = unsafe {
        libc::syscall(libc::SYS_recvfrom, fd, first.as_mut_ptr(), PEEK, libc::MSG_PEEK | libc::MSG_DONTWAIT, 0usize, 0usize)
    };
    let peer = if n < 0 {
        let err = errno();
        if err == libc::EAGAIN || err == libc::EINTR {
            return Err(libc::EAGAIN);
        }
        Peer::Tcp // let the application see the error on its own read
    } else if n == 0 {
        Peer::Tcp // EOF: the application reads it
    } else {
        classify(&first[..n as usize])
    };
    match peer {
        Peer::Undecided => Err(libc::EAGAIN),
        Peer::Tcp => {
            let accept_tcp = super::settings().cfg.preload_accept_tcp;
            let queued = match &mut *e.kind.lock() {
                Kind::Pending { queued } => std::mem::take(queued),
                _ => Vec::new(),
            };
            table::remove(fd);
            let peer = ibstack::sys::net::socket_addr(fd, true).map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
            if !accept_tcp {
                crate::report::rdma(
                    &format!("refused plain TCP client {peer}: ibstack_preload_accept_tcp = false"),
                    true,
                );
                // SAFETY: shutdown of the application's socket.
                unsafe { libc::syscall(libc::SYS_shutdown, fd, libc::SHUT_RDWR) };
                return Ok(false);
            }
            log::info!(target: "ibstack::rdma", "connection with {peer}: tcp passthrough (the client speaks Ceph's TCP messenger)");
            write_all_raw(fd, &queued)?;
            Ok(false)
        }
        Peer::Rdma => {
            let conn = adopt_dup(fd, Role::Acceptor).map_err(|err| {
                crate::report::rdma(&format!("an RDMA client connected but could not be served: {err}; closing it"), true);
                err.errno
            })?;
            let mut k = e.kind.lock();
            let queued = match &mut *k {
                Kind::Pending { queued } => std::mem::take(queued),
                _ => Vec::new(),
            };
            *k = Kind::Conn { conn: conn.clone(), target: None, queued, up_logged: false };
            drop(k);
            if let Err(err) = table::switch_file(e, fd, conn.fd()) {
                conn.close();
                return Err(err);
            }
            log_up(&conn, "rdma (accepted)");
            Ok(true)
        }
    }
}

/// Writes everything the application queued on a pending socket that turned
/// out to be plain TCP (a few hundred bytes into an empty socket buffer).
fn write_all_raw(fd: c_int, mut data: &[u8]) -> Result<(), i32> {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !data.is_empty() {
        // SAFETY: writes from a valid buffer.
        let n = unsafe { libc::syscall(libc::SYS_sendto, fd, data.as_ptr(), data.len(), libc::MSG_NOSIGNAL, 0usize, 0usize) };
        if n > 0 {
            data = &data[n as usize..];
            continue;
        }
        let err = errno();
        if (err != libc::EAGAIN && err != libc::EINTR) || std::time::Instant::now() > end {
            return Err(err);
        }
        let mut p = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
        // SAFETY: one pollfd.
        unsafe { libc::syscall(libc::SYS_poll, &mut p as *mut libc::pollfd, 1, 100) };
    }
    Ok(())
}

/// Sends what waited for the connection to come up; true when nothing waits.
fn flush_queued(e: &Entry) -> bool {
    let mut k = e.kind.lock();
    let Kind::Conn { conn, queued, .. } = &mut *k else { return true };
    if queued.is_empty() {
        return true;
    }
    if !matches!(conn.is_connected(), Ok(true)) {
        return false;
    }
    while !queued.is_empty() {
        match conn.send(queued) {
            Ok(n) if n > 0 => {
                queued.drain(..n);
            }
            _ => return false,
        }
    }
    true
}

// ------------------------------------------------------------------ data path

fn conn_read(fd: c_int, e: &Entry, out: &mut [u8], raw: &dyn Fn() -> isize) -> isize {
    loop {
        let (conn, queued) = match &*e.kind.lock() {
            Kind::Listener | Kind::Tcp => return raw(),
            Kind::Conn { conn, queued, .. } => (Some(conn.clone()), !queued.is_empty()),
            Kind::Pending { .. } => (None, false),
        };
        let Some(conn) = conn else {
            match classify_pending(fd, e) {
                Ok(true) => continue,
                Ok(false) => return raw(),
                Err(libc::EAGAIN) if !e.nonblocking() => {
                    wait_readable(fd);
                    continue;
                }
                Err(err) => return fail(err),
            }
        };
        if queued {
            flush_queued(e);
        }
        match conn.recv(out) {
            Ok(n) => return n as isize,
            Err(err) if is_end_of_stream(&err) => return 0,
            Err(err) if err.errno == libc::EAGAIN && !e.nonblocking() => wait_readable(fd),
            Err(err) => return fail(err.errno),
        }
    }
}

fn conn_write(fd: c_int, e: &Entry, bufs: &[IoSlice<'_>], raw: &dyn Fn() -> isize) -> isize {
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    loop {
        let (conn, queued) = {
            let mut k = e.kind.lock();
            match &mut *k {
                Kind::Listener | Kind::Tcp => return raw(),
                Kind::Pending { queued } => {
                    if queued.len() + total > PENDING_MAX {
                        return fail(libc::EAGAIN);
                    }
                    for b in bufs {
                        queued.extend_from_slice(b);
                    }
                    return total as isize;
                }
                Kind::Conn { conn, queued, .. } => (conn.clone(), !queued.is_empty()),
            }
        };
        if queued && !flush_queued(e) {
            if e.nonblocking() {
                return fail(libc::EAGAIN);
            }
            wait_readable(fd);
            continue;
        }
        // One call for all the buffers: packed into full SENDs, as Ceph's own RDMA packs a bufferlist.
        let (done, last_err) = match conn.send_vectored(bufs) {
            Ok(n) => (n, 0),
            Err(err) => (0, err.errno),
        };
        if done > 0 || total == 0 {
            return done as isize;
        }
        if last_err == libc::EAGAIN && !e.nonblocking() {
            wait_readable(fd);
            continue;
        }
        // EPIPE as a socket with MSG_NOSIGNAL would say it: the library raises no SIGPIPE
        return fail(if last_err == 0 { libc::EIO } else { last_err });
    }
}

/// The caller's input buffer (empty for NULL or 0).
///
/// # Safety
/// `buf` NULL or valid for `n` bytes of reads for the call.
unsafe fn input<'a>(buf: *const c_void, n: usize) -> &'a [u8] {
    if buf.is_null() || n == 0 {
        return &[];
    }
    // SAFETY: per the caller.
    unsafe { std::slice::from_raw_parts(buf as *const u8, n) }
}

/// The caller's output buffer (empty for NULL or 0).
///
/// # Safety
/// `buf` NULL or valid for `n` bytes of writes for the call.
unsafe fn output<'a>(buf: *mut c_void, n: usize) -> &'a mut [u8] {
    if buf.is_null() || n == 0 {
        return &mut [];
    }
    // SAFETY: per the caller.
    unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, n) }
}

/// The caller's iovecs as `IoSlice`s ([`ibstack::sys::io_slices`]).
///
/// # Safety
/// `iov` valid for `n` entries, each valid for its length.
unsafe fn slices<'a>(iov: *const libc::iovec, n: c_int) -> Cow<'a, [IoSlice<'a>]> {
    if iov.is_null() || n <= 0 {
        return Cow::Borrowed(&[]);
    }
    // SAFETY: per the caller.
    unsafe { ibstack::sys::io_slices(std::slice::from_raw_parts(iov, n as usize)) }
}

// ------------------------------------------------------------------ the interposed functions

/// # Safety
/// As connect(2).
#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const libc::sockaddr, len: libc::socklen_t) -> c_int {
    let f = real!(R_CONNECT, unsafe extern "C" fn(c_int, *const libc::sockaddr, libc::socklen_t) -> c_int, -1);
    if let Some(e) = table::get(fd) {
        if conn_of(&e).is_some() {
            return guarded(|| connect_again(fd, &e)) as c_int;
        }
        // SAFETY: forwarded (a listener, a pending or a fallen-back socket).
        return unsafe { f(fd, addr, len) };
    }
    if !rdma_mode() {
        // SAFETY: forwarded.
        return unsafe { f(fd, addr, len) };
    }
    // SAFETY: per the caller.
    let target = unsafe { sockaddr_of(addr, len) };
    let convert = match target {
        Some(t) => is_tcp(fd, false) && super::converts(t.port()) && !posix_peers().lock().contains(&t),
        None => false,
    };
    if !convert {
        // SAFETY: forwarded.
        return unsafe { f(fd, addr, len) };
    }
    let target = target.expect("checked");
    let nonblock = fd_nonblocking(fd);
    // SAFETY: forwarded.
    let r = unsafe { f(fd, addr, len) };
    let err = errno();
    if r < 0 && err != libc::EINPROGRESS {
        return r;
    }
    let converted = std::panic::catch_unwind(|| convert_connector(fd, target, nonblock)).unwrap_or_else(|_| Err("internal error (a panic)".into()));
    if let Err(m) = converted {
        crate::report::rdma(&format!("connection to {target} stays TCP: {m}"), true);
        set_errno(err);
        return r;
    }
    if nonblock {
        set_errno(libc::EINPROGRESS);
        return -1;
    }
    let e = table::get(fd).expect("just inserted");
    match guarded(|| connect_again(fd, &e)) {
        -1 if errno() == libc::EISCONN => 0,
        r => r as c_int,
    }
}

/// # Safety
/// As listen(2).
#[no_mangle]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    let f = real!(R_LISTEN, unsafe extern "C" fn(c_int, c_int) -> c_int, -1);
    // SAFETY: forwarded.
    let r = unsafe { f(fd, backlog) };
    if r == 0 && rdma_mode() {
        crate::report::keep_errno(|| {
            if let Ok(a) = ibstack::sys::net::socket_addr(fd, false) {
                if is_tcp(fd, true) && super::converts(a.port()) {
                    table::insert(fd, Entry::new(Kind::Listener, fd_nonblocking(fd)));
                    log::info!(target: "ibstack::rdma", "listening on {a}: rdma (and plain TCP for posix clients)");
                }
            }
        });
    }
    r
}

fn accepted(listener: c_int, fd: c_int, flags: c_int) {
    if fd < 0 {
        return;
    }
    if let Some(l) = table::get(listener) {
        if matches!(&*l.kind.lock(), Kind::Listener) {
            table::insert(fd, Entry::new(Kind::Pending { queued: Vec::new() }, flags & libc::SOCK_NONBLOCK != 0));
        }
    }
}

/// # Safety
/// As accept(2).
#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut libc::sockaddr, len: *mut libc::socklen_t) -> c_int {
    let f = real!(R_ACCEPT, unsafe extern "C" fn(c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> c_int, -1);
    // SAFETY: forwarded.
    let r = unsafe { f(fd, addr, len) };
    crate::report::keep_errno(|| accepted(fd, r, 0));
    r
}

/// # Safety
/// As accept4(2).
#[no_mangle]
pub unsafe extern "C" fn accept4(fd: c_int, addr: *mut libc::sockaddr, len: *mut libc::socklen_t, flags: c_int) -> c_int {
    let f = real!(R_ACCEPT4, unsafe extern "C" fn(c_int, *mut libc::sockaddr, *mut libc::socklen_t, c_int) -> c_int, -1);
    // SAFETY: forwarded.
    let r = unsafe { f(fd, addr, len, flags) };
    crate::report::keep_errno(|| accepted(fd, r, flags));
    r
}

macro_rules! read_like {
    ($fd:expr, $buf:expr, $len:expr, $raw:expr) => {{
        match table::get($fd) {
            None => $raw(),
            Some(e) => {
                // SAFETY: the caller's buffer of $len bytes.
                let out = unsafe { output($buf, $len) };
                guarded(|| conn_read($fd, &e, out, &$raw))
            }
        }
    }};
}

/// # Safety
/// As read(2).
#[no_mangle]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, n: usize) -> isize {
    let f = real!(R_READ, unsafe extern "C" fn(c_int, *mut c_void, usize) -> isize, -1);
    // SAFETY: forwarded.
    read_like!(fd, buf, n, || unsafe { f(fd, buf, n) })
}

/// # Safety
/// As recv(2).
#[no_mangle]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, n: usize, flags: c_int) -> isize {
    let f = real!(R_RECV, unsafe extern "C" fn(c_int, *mut c_void, usize, c_int) -> isize, -1);
    // SAFETY: forwarded.
    read_like!(fd, buf, n, || unsafe { f(fd, buf, n, flags) })
}

/// # Safety
/// As recvfrom(2).
#[no_mangle]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    n: usize,
    flags: c_int,
    addr: *mut libc::sockaddr,
    alen: *mut libc::socklen_t,
) -> isize {
    let f = real!(
        R_RECVFROM,
        unsafe extern "C" fn(c_int, *mut c_void, usize, c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> isize,
        -1
    );
    // SAFETY: forwarded.
    read_like!(fd, buf, n, || unsafe { f(fd, buf, n, flags, addr, alen) })
}

/// # Safety
/// As readv(2).
#[no_mangle]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const libc::iovec, n: c_int) -> isize {
    let f = real!(R_READV, unsafe extern "C" fn(c_int, *const libc::iovec, c_int) -> isize, -1);
    match table::get(fd) {
        // SAFETY: forwarded.
        None => unsafe { f(fd, iov, n) },
        Some(e) => {
            if iov.is_null() || n <= 0 {
                return 0;
            }
            // SAFETY: the first iovec is the caller's buffer.
            let out = unsafe { output((*iov).iov_base, (*iov).iov_len) };
            // SAFETY: forwarded.
            guarded(|| conn_read(fd, &e, out, &|| unsafe { f(fd, iov, n) }))
        }
    }
}

/// # Safety
/// As recvmsg(2).
#[no_mangle]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> isize {
    let f = real!(R_RECVMSG, unsafe extern "C" fn(c_int, *mut libc::msghdr, c_int) -> isize, -1);
    match table::get(fd) {
        // SAFETY: forwarded.
        None => unsafe { f(fd, msg, flags) },
        Some(e) => {
            if msg.is_null() {
                return fail(libc::EFAULT);
            }
            // SAFETY: per the caller.
            let m = unsafe { &mut *msg };
            m.msg_controllen = 0;
            m.msg_flags = 0;
            if m.msg_iov.is_null() || m.msg_iovlen == 0 {
                return 0;
            }
            // SAFETY: the first iovec is the caller's buffer.
            let out = unsafe { output((*m.msg_iov).iov_base, (*m.msg_iov).iov_len) };
            // SAFETY: forwarded.
            guarded(|| conn_read(fd, &e, out, &|| unsafe { f(fd, msg, flags) }))
        }
    }
}

/// # Safety
/// As write(2).
#[no_mangle]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, n: usize) -> isize {
    let f = real!(R_WRITE, unsafe extern "C" fn(c_int, *const c_void, usize) -> isize, -1);
    match table::get(fd) {
        // SAFETY: forwarded.
        None => unsafe { f(fd, buf, n) },
        Some(e) => {
            // SAFETY: the caller's buffer.
            let data = unsafe { input(buf, n) };
            // SAFETY: forwarded.
            guarded(|| conn_write(fd, &e, &[IoSlice::new(data)], &|| unsafe { f(fd, buf, n) }))
        }
    }
}

/// # Safety
/// As send(2).
#[no_mangle]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, n: usize, flags: c_int) -> isize {
    let f = real!(R_SEND, unsafe extern "C" fn(c_int, *const c_void, usize, c_int) -> isize, -1);
    match table::get(fd) {
        // SAFETY: forwarded.
        None => unsafe { f(fd, buf, n, flags) },
        Some(e) => {
            // SAFETY: the caller's buffer.
            let data = unsafe { input(buf, n) };
            // SAFETY: forwarded.
            guarded(|| conn_write(fd, &e, &[IoSlice::new(data)], &|| unsafe { f(fd, buf, n, flags) }))
        }
    }
}

/// # Safety
/// As sendto(2).
#[no_mangle]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    n: usize,
    flags: c_int,
    addr: *const libc::sockaddr,
    alen: libc::socklen_t,
) -> isize {
    let f = real!(
        R_SENDTO,
        unsafe extern "C" fn(c_int, *const c_void, usize, c_int, *const libc::sockaddr, libc::socklen_t) -> isize,
        -1
    );
    match table::get(fd) {
        // SAFETY: forwarded.
        None => unsafe { f(fd, buf, n, flags, addr, alen) },
        Some(e) => {
            // SAFETY: the caller's buffer.
            let data = unsafe { input(buf, n) };
            // SAFETY: forwarded.
            guarded(|| conn_write(fd, &e, &[IoSlice::new(data)], &|| unsafe { f(fd, buf, n, flags, addr, alen) }))
        }
    }
}

/// # Safety
/// As writev(2).
#[no_mangle]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const libc::iovec, n: c_int) -> isize {
    let f = real!(R_WRITEV, unsafe extern "C" fn(c_int, *const libc::iovec, c_int) -> isize, -1);
    match table::get(fd) {
        // SAFETY: forwarded.
        None => unsafe { f(fd, iov, n) },
        Some(e) => {
            // SAFETY: per the caller.
            let bufs = unsafe { slices(iov, n) };
            // SAFETY: forwarded.
            guarded(|| conn_write(fd, &e, &bufs, &|| unsafe { f(fd, iov, n) }))
        }
    }
}

/// # Safety
/// As sendmsg(2).
#[no_mangle]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> isize {
    let f = real!(R_SENDMSG, unsafe extern "C" fn(c_int, *const libc::msghdr, c_int) -> isize, -1);
    match table::get(fd) {
        // SAFETY: forwarded.
        None => unsafe { f(fd, msg, flags) },
        Some(e) => {
            if msg.is_null() {
                return fail(libc::EFAULT);
            }
            // SAFETY: per the caller.
            let m = unsafe { &*msg };
            // SAFETY: per the caller.
            let bufs = unsafe { slices(m.msg_iov, m.msg_iovlen as c_int) };
            // SAFETY: forwarded.
            guarded(|| conn_write(fd, &e, &bufs, &|| unsafe { f(fd, msg, flags) }))
        }
    }
}

/// Forgets a table fd the application is closing or replacing: its epoll
/// registrations go (they would outlive the number: the eventfd stays open
/// inside the connection), the connection closes.
fn forget(fd: c_int) {
    if let Some(e) = table::remove(fd) {
        for (epfd, _) in e.regs.lock().drain(..) {
            // SAFETY: DEL with a NULL event.
            unsafe { real_epoll_ctl(epfd, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
        }
        if let Kind::Conn { conn, .. } = &*e.kind.lock() {
            conn.close();
        }
    }
}

/// # Safety
/// As close(2).
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    let f = real!(R_CLOSE, unsafe extern "C" fn(c_int) -> c_int, -1);
    crate::report::keep_errno(|| {
        let _ = std::panic::catch_unwind(|| forget(fd));
    });
    // SAFETY: forwarded.
    unsafe { f(fd) }
}

/// # Safety
/// As dup2(2).
#[no_mangle]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    let f = real!(R_DUP2, unsafe extern "C" fn(c_int, c_int) -> c_int, -1);
    if old != new {
        crate::report::keep_errno(|| {
            let _ = std::panic::catch_unwind(|| forget(new));
        });
        if table::get(old).is_some() {
            crate::report::rdma("dup2 of a converted connection's fd: the copy is not a connection (unsupported)", true);
        }
    }
    // SAFETY: forwarded.
    unsafe { f(old, new) }
}

/// # Safety
/// As shutdown(2).
#[no_mangle]
pub unsafe extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
    let f = real!(R_SHUTDOWN, unsafe extern "C" fn(c_int, c_int) -> c_int, -1);
    match table::get(fd).as_deref().and_then(conn_of) {
        // SAFETY: forwarded.
        None => unsafe { f(fd, how) },
        Some(c) => {
            if how != libc::SHUT_RD {
                let _ = c.shutdown();
            }
            0
        }
    }
}

/// The side channel's fd of a converted connection, for socket queries.
fn side_fd(fd: c_int) -> c_int {
    table::get(fd).as_deref().and_then(conn_of).map_or(fd, |c| c.tcp_fd())
}

/// # Safety
/// As getsockname(2).
#[no_mangle]
pub unsafe extern "C" fn getsockname(fd: c_int, addr: *mut libc::sockaddr, len: *mut libc::socklen_t) -> c_int {
    let f = real!(R_GETSOCKNAME, unsafe extern "C" fn(c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> c_int, -1);
    // SAFETY: forwarded.
    unsafe { f(side_fd(fd), addr, len) }
}

/// # Safety
/// As getpeername(2).
#[no_mangle]
pub unsafe extern "C" fn getpeername(fd: c_int, addr: *mut libc::sockaddr, len: *mut libc::socklen_t) -> c_int {
    let f = real!(R_GETPEERNAME, unsafe extern "C" fn(c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> c_int, -1);
    // SAFETY: forwarded.
    unsafe { f(side_fd(fd), addr, len) }
}

/// # Safety
/// As getsockopt(2).
#[no_mangle]
pub unsafe extern "C" fn getsockopt(fd: c_int, level: c_int, name: c_int, val: *mut c_void, len: *mut libc::socklen_t) -> c_int {
    let f = real!(R_GETSOCKOPT, unsafe extern "C" fn(c_int, c_int, c_int, *mut c_void, *mut libc::socklen_t) -> c_int, -1);
    if level == libc::SOL_SOCKET && name == libc::SO_ERROR && !val.is_null() && !len.is_null() {
        if let Some(c) = table::get(fd).as_deref().and_then(conn_of) {
            let v: c_int = match c.is_connected() {
                Err(e) => e.errno,
                Ok(_) => 0,
            };
            // SAFETY: the caller's buffers; an int fits the usual 4 bytes.
            unsafe {
                if *len as usize >= std::mem::size_of::<c_int>() {
                    *(val as *mut c_int) = v;
                    *len = std::mem::size_of::<c_int>() as libc::socklen_t;
                }
            }
            return 0;
        }
    }
    // SAFETY: forwarded.
    unsafe { f(side_fd(fd), level, name, val, len) }
}

/// # Safety
/// As setsockopt(2).
#[no_mangle]
pub unsafe extern "C" fn setsockopt(fd: c_int, level: c_int, name: c_int, val: *const c_void, len: libc::socklen_t) -> c_int {
    let f = real!(R_SETSOCKOPT, unsafe extern "C" fn(c_int, c_int, c_int, *const c_void, libc::socklen_t) -> c_int, -1);
    // SAFETY: forwarded.
    unsafe { f(side_fd(fd), level, name, val, len) }
}

/// fcntl on a converted fd: O_NONBLOCK is the application's, kept in the
/// table; the rest goes to the fd.
fn fcntl_common(fd: c_int, cmd: c_int, arg: usize, real: &dyn Fn() -> c_int) -> c_int {
    let Some(e) = table::get(fd) else { return real() };
    let converted = conn_of(&e).is_some();
    match cmd {
        libc::F_GETFL if converted => libc::O_RDWR | if e.nonblocking() { libc::O_NONBLOCK } else { 0 },
        libc::F_SETFL => {
            e.nonblock.store(arg as c_int & libc::O_NONBLOCK != 0, std::sync::atomic::Ordering::Relaxed);
            if converted {
                0
            } else {
                real()
            }
        }
        _ => real(),
    }
}

/// # Safety
/// As fcntl(2) (the third argument is read as an integer or pointer, as the
/// x86-64 calling convention passes it).
#[no_mangle]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    let f = real!(R_FCNTL, unsafe extern "C" fn(c_int, c_int, usize) -> c_int, -1);
    // SAFETY: forwarded.
    fcntl_common(fd, cmd, arg, &|| unsafe { f(fd, cmd, arg) })
}

/// # Safety
/// As fcntl64 (glibc's name for fcntl with 64-bit locks).
#[no_mangle]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    let f = real!(R_FCNTL64, unsafe extern "C" fn(c_int, c_int, usize) -> c_int, -1);
    // SAFETY: forwarded.
    fcntl_common(fd, cmd, arg, &|| unsafe { f(fd, cmd, arg) })
}

/// # Safety
/// As ioctl(2) (one integer or pointer argument).
#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, req: libc::c_ulong, arg: usize) -> c_int {
    let f = real!(R_IOCTL, unsafe extern "C" fn(c_int, libc::c_ulong, usize) -> c_int, -1);
    if req == libc::FIONREAD && arg != 0 && table::get(fd).as_deref().and_then(conn_of).is_some() {
        // the count is not known without reading; 0 is what a socket says with nothing queued
        // SAFETY: the caller's int.
        unsafe { *(arg as *mut c_int) = 0 };
        return 0;
    }
    if req == libc::FIONBIO && arg != 0 {
        if let Some(e) = table::get(fd) {
            if conn_of(&e).is_some() {
                // SAFETY: the caller's int.
                let on = unsafe { *(arg as *const c_int) } != 0;
                e.nonblock.store(on, std::sync::atomic::Ordering::Relaxed);
                return 0;
            }
        }
    }
    // SAFETY: forwarded.
    unsafe { f(fd, req, arg) }
}

/// # Safety
/// As epoll_ctl(2).
#[no_mangle]
pub unsafe extern "C" fn epoll_ctl(epfd: c_int, op: c_int, fd: c_int, ev: *mut libc::epoll_event) -> c_int {
    // SAFETY: forwarded.
    let r = unsafe { real_epoll_ctl(epfd, op, fd, ev) };
    if r == 0 {
        if let Some(e) = table::get(fd) {
            // SAFETY: ev is valid for ADD/MOD per the caller.
            let copy = if ev.is_null() { None } else { Some(unsafe { *ev }) };
            table::record_epoll(&e, epfd, op, copy);
        }
    }
    r
}
