//! `Listener`: the TCP listening socket of Ceph's RDMAServerSocketImpl. A
//! connection gets its QP at accept time; the handshake then runs in the
//! stack's poller.

use super::conn::Conn;
use super::Shared;
use crate::error::{Error, Result};
use crate::qp::Role;
use crate::sys::last_error;
use crate::sys::net::{check_tcp_socket, from_sockaddr, parse_addr, set_nodelay, socket_addr, tcp_socket, to_sockaddr};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

pub struct Listener {
    shared: Arc<Shared>,
    fd: OwnedFd,
    addr: SocketAddr,
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
            return Err(last_error(format_args!("bind to {addr}")));
        }
        let backlog = shared.disp.ib().config().tcp_listen_backlog.max(1);
        // SAFETY: bound socket.
        if unsafe { libc::listen(fd.as_raw_fd(), backlog) } < 0 {
            return Err(last_error(format_args!("listen on {addr}")));
        }
        Listener::adopt(shared, fd)
    }

    /// A listening TCP socket the host already has (Ceph's server socket
    /// pattern): it becomes non-blocking and the listener owns it from now on.
    pub(super) fn adopt(shared: Arc<Shared>, fd: OwnedFd) -> Result<Listener> {
        check_tcp_socket(fd.as_raw_fd(), true, "listener")?;
        crate::sys::set_nonblocking(fd.as_raw_fd())?;
        let addr = socket_addr(fd.as_raw_fd(), false)?;
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
        self.shared.check_not_freed()?;
        // SAFETY: zeroed storage, valid lengths.
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut l = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let fd = unsafe {
            libc::accept4(self.fd(), (&mut ss as *mut libc::sockaddr_storage).cast(), &mut l, libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
        };
        if fd < 0 {
            let e = last_error(format_args!("accept on {}", self.addr));
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
