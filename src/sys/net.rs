//! TCP sockets and socket addresses for the handshake side channel.

use crate::error::{Error, Result};
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::last_error;

/// `sockaddr_in`/`sockaddr_in6` for `addr`.
pub fn to_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
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

pub fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
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

pub fn parse_addr(ip: &str, port: u16) -> Result<SocketAddr> {
    let ipa: std::net::IpAddr = ip.parse().map_err(|_| Error::inval(format!("{ip:?} is not an IPv4 or IPv6 address")))?;
    Ok(SocketAddr::new(ipa, port))
}

pub fn tcp_socket(addr: &SocketAddr) -> Result<OwnedFd> {
    let fam = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain syscall.
    let fd = unsafe { libc::socket(fam, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(last_error("socket"));
    }
    // SAFETY: fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn set_nodelay(fd: RawFd) {
    let one: i32 = 1;
    // SAFETY: valid int option.
    unsafe { libc::setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, (&one as *const i32).cast(), 4) };
}

/// TCP keepalive on `fd`: probes after `idle_s` seconds without traffic,
/// three of them a third of that apart, so a peer host that vanished without
/// a FIN makes the socket fail with ETIMEDOUT after about twice `idle_s`,
/// also when it vanished with bytes of ours unacknowledged (TCP_USER_TIMEOUT).
pub fn set_keepalive(fd: RawFd, idle_s: u32) -> Result<()> {
    let idle = idle_s.clamp(1, i32::MAX as u32) as i32;
    let intvl = (idle / 3).max(1);
    // Keepalive probes only run while nothing is unacknowledged: a peer host
    // that vanished before it acknowledged the last handshake record would
    // otherwise be noticed only by the retransmission timeout (many minutes).
    // TCP_USER_TIMEOUT bounds that case by the same time the probes take.
    let user_timeout_ms = ((idle as i64 + 3 * intvl as i64) * 1000).min(i32::MAX as i64) as i32;
    let opts = [
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1),
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, idle),
        (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, intvl),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3),
        (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, user_timeout_ms),
    ];
    for (level, name, value) in opts {
        // SAFETY: an int option on a socket the caller owns.
        if unsafe { libc::setsockopt(fd, level, name, (&value as *const i32).cast(), 4) } < 0 {
            return Err(last_error(format_args!("setsockopt(keepalive option {name})")));
        }
    }
    Ok(())
}

/// The pending error of a socket (`SO_ERROR`), 0 when none; the errno of
/// `getsockopt` itself if that fails.
pub fn so_error(fd: RawFd) -> i32 {
    let mut err: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: valid out-pointers for an int option.
    if unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR, (&mut err as *mut i32).cast(), &mut len) } < 0 {
        return super::errno();
    }
    err
}

/// An `int` socket option.
fn int_option(fd: RawFd, level: i32, name: i32) -> Result<i32> {
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: valid out-pointers for an int option.
    if unsafe { libc::getsockopt(fd, level, name, (&mut v as *mut i32).cast(), &mut len) } < 0 {
        return Err(last_error(format_args!("getsockopt on fd {fd}")));
    }
    Ok(v)
}

/// What a socket handed over by the host must be: an IPv4/IPv6 stream
/// socket, listening (`listening`) or not. `what` names it in messages.
pub fn check_tcp_socket(fd: RawFd, listening: bool, what: &str) -> Result<()> {
    if fd < 0 {
        return Err(Error::new(libc::EBADF, format!("{what}: fd {fd} is not a file descriptor")));
    }
    let ty = int_option(fd, libc::SOL_SOCKET, libc::SO_TYPE).map_err(|e| {
        if e.errno == libc::ENOTSOCK {
            Error::new(libc::ENOTSOCK, format!("{what}: fd {fd} is not a socket"))
        } else {
            e
        }
    })?;
    let family = int_option(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    if ty != libc::SOCK_STREAM || (family != libc::AF_INET && family != libc::AF_INET6) {
        return Err(Error::inval(format!(
            "{what}: fd {fd} is not a TCP socket (family {family}, type {ty}); the handshake side channel is TCP over \
             IPv4 or IPv6"
        )));
    }
    let accepting = int_option(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? != 0;
    if accepting != listening {
        return Err(Error::inval(if listening {
            format!("{what}: fd {fd} is not listening (call listen(2) first, or adopt it as a connection)")
        } else {
            format!("{what}: fd {fd} is a listening socket (adopt it as a listener)")
        }));
    }
    Ok(())
}

/// The local (`getsockname`) or peer (`getpeername`) address of a socket.
pub fn socket_addr(fd: RawFd, peer: bool) -> Result<SocketAddr> {
    // SAFETY: zeroed storage is valid; the length is its size.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut l = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let p = (&mut ss as *mut libc::sockaddr_storage).cast();
    // SAFETY: ss holds l bytes.
    let r = unsafe { if peer { libc::getpeername(fd, p, &mut l) } else { libc::getsockname(fd, p, &mut l) } };
    if r < 0 {
        return Err(last_error(if peer { "getpeername" } else { "getsockname" }));
    }
    from_sockaddr(&ss).ok_or_else(|| Error::new(libc::EAFNOSUPPORT, format!("fd {fd} has an address of family {}", ss.ss_family)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    #[test]
    fn keepalive_also_bounds_unacknowledged_bytes() {
        // SAFETY: a new socket, owned right away.
        let fd = unsafe { OwnedFd::from_raw_fd(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0)) };
        set_keepalive(fd.as_raw_fd(), 30).unwrap();
        let get = |level, name| int_option(fd.as_raw_fd(), level, name).unwrap();
        assert_eq!(get(libc::SOL_SOCKET, libc::SO_KEEPALIVE), 1);
        assert_eq!(get(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE), 30);
        assert_eq!(get(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL), 10);
        assert_eq!(get(libc::IPPROTO_TCP, libc::TCP_KEEPCNT), 3);
        // 30 s idle + 3 probes 10 s apart: the same bound for unacknowledged data
        assert_eq!(get(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT), 60_000);
    }
}
