//! `Listener`: the TCP listening socket of Ceph's RDMAServerSocketImpl. A
//! connection gets its QP at accept time; the handshake then runs in the
//! stack's poller.

use super::conn::Conn;
use super::Shared;
use crate::error::{Error, Result};
use crate::handshake::Role;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

pub struct Listener {
    shared: Arc<Shared>,
    fd: OwnedFd,
    addr: SocketAddr,
}

fn os_err(what: String) -> Error {
    let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
    Error::new(e, format!("{what}: {}", crate::errno::errno_cstr(e).to_string_lossy()))
}

/// `sockaddr_in`/`sockaddr_in6` for `addr`.
pub(super) fn to_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: zeroed storage is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as u16;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as u16;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: family says sockaddr_in.
            let sin = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::from((u32::from_be(sin.sin_addr.s_addr).to_be_bytes(), u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: family says sockaddr_in6.
            let sin6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::from((sin6.sin6_addr.s6_addr, u16::from_be(sin6.sin6_port))))
        }
        _ => None,
    }
}

pub(super) fn parse_addr(ip: &str, port: u16) -> Result<SocketAddr> {
    let ipa: std::net::IpAddr = ip.parse().map_err(|_| Error::inval(format!("{ip:?} is not an IPv4 or IPv6 address")))?;
    Ok(SocketAddr::new(ipa, port))
}

pub(super) fn tcp_socket(addr: &SocketAddr) -> Result<OwnedFd> {
    let fam = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain syscall.
    let fd = unsafe { libc::socket(fam, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(os_err("socket".into()));
    }
    // SAFETY: fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(super) fn set_nodelay(fd: RawFd) {
    let one: i32 = 1;
    // SAFETY: valid int option.
    unsafe { libc::setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, (&one as *const i32).cast(), 4) };
}

impl Listener {
    pub(super) fn bind(shared: Arc<Shared>, ip: &str, port: u16) -> Result<Listener> {
        let addr = parse_addr(ip, port)?;
        let fd = tcp_socket(&addr)?;
        let one: i32 = 1;
        // SAFETY: valid int option on our socket.
        unsafe { libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, (&one as *const i32).cast(), 4) };
        let (ss, len) = to_sockaddr(&addr);
        // SAFETY: ss holds a valid address of len bytes.
        if unsafe { libc::bind(fd.as_raw_fd(), (&ss as *const libc::sockaddr_storage).cast(), len) } < 0 {
            return Err(os_err(format!("bind to {addr}")));
        }
        let backlog = shared.disp.ib().config().tcp_listen_backlog.max(1);
        // SAFETY: bound socket.
        if unsafe { libc::listen(fd.as_raw_fd(), backlog) } < 0 {
            return Err(os_err(format!("listen on {addr}")));
        }
        // SAFETY: zeroed storage, valid lengths.
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut l = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        unsafe { libc::getsockname(fd.as_raw_fd(), (&mut ss as *mut libc::sockaddr_storage).cast(), &mut l) };
        let addr = from_sockaddr(&ss).unwrap_or(addr);
        log::info!("listening on {addr}");
        Ok(Listener { shared, fd, addr })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Takes one waiting TCP connection and creates its QP (INIT); EAGAIN
    /// when none waits. The handshake continues in the stack's poller.
    pub fn accept(&self) -> Result<Arc<Conn>> {
        // SAFETY: zeroed storage, valid lengths.
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut l = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let fd = unsafe {
            libc::accept4(self.fd(), (&mut ss as *mut libc::sockaddr_storage).cast(), &mut l, libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
        };
        if fd < 0 {
            let e = os_err(format!("accept on {}", self.addr));
            return Err(if e.errno == libc::EWOULDBLOCK { Error::new(libc::EAGAIN, "no connection waiting") } else { e });
        }
        // SAFETY: fresh descriptor we own.
        let tcp = unsafe { OwnedFd::from_raw_fd(fd) };
        set_nodelay(fd);
        let peer = from_sockaddr(&ss).map(|a| a.to_string()).unwrap_or_else(|| "?".into());
        let what = format!("accepting a connection from {peer}");
        self.shared.adopt(tcp, Role::Acceptor, peer).map_err(|e| e.context(what))
    }
}
