//! The application's descriptors that transparent mode took over, and the
//! epoll registrations it made on them.
//!
//! A converted connection keeps the application's fd number, which then
//! refers to the connection's eventfd (dup3 over the socket; the socket
//! lives on as the connection's private side channel). Switching the file
//! behind a number (socket → eventfd at conversion, eventfd → socket on a
//! TCP fallback) would leave the application's epoll registrations on the
//! old file, so every registration of a table fd is recorded and moved:
//! removed while the number still names the old file, re-added after.

use ibstack::stack::conn::Conn;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// What a table fd is.
pub enum Kind {
    /// A listening socket on a converted port: accepted sockets are classified.
    Listener,
    /// An accepted socket of a converted listener whose first bytes have not
    /// told yet what it speaks; the application's writes wait in `queued`.
    Pending { queued: Vec<u8> },
    /// A converted connection that fell back to plain TCP (its peer is a
    /// posix daemon): everything passes through, and a `connect` again is the
    /// socket's own answer, not a new conversion.
    Tcp,
    /// An ibstack connection; `queued` holds writes made before it was up.
    Conn { conn: Arc<Conn>, target: Option<SocketAddr>, queued: Vec<u8>, up_logged: bool },
}

pub struct Entry {
    pub kind: Mutex<Kind>,
    /// (epoll fd, the application's event) for each epoll set holding this fd.
    pub regs: Mutex<Vec<(c_int, libc::epoll_event)>>,
    /// The application's O_NONBLOCK, kept here: the eventfd behind a converted
    /// number is shared with the connection and must stay non-blocking.
    pub nonblock: std::sync::atomic::AtomicBool,
}

impl Entry {
    pub fn new(kind: Kind, nonblock: bool) -> Arc<Entry> {
        Arc::new(Entry { kind: Mutex::new(kind), regs: Mutex::new(Vec::new()), nonblock: nonblock.into() })
    }
    pub fn nonblocking(&self) -> bool {
        self.nonblock.load(Ordering::Relaxed)
    }
}

fn map() -> &'static RwLock<HashMap<c_int, Arc<Entry>>> {
    static MAP: OnceLock<RwLock<HashMap<c_int, Arc<Entry>>>> = OnceLock::new();
    MAP.get_or_init(|| RwLock::new(HashMap::new()))
}

/// Entries in the table: 0 lets every call skip the lookup.
static COUNT: AtomicUsize = AtomicUsize::new(0);

pub fn get(fd: c_int) -> Option<Arc<Entry>> {
    if COUNT.load(Ordering::Acquire) == 0 {
        return None;
    }
    map().read().get(&fd).cloned()
}

pub fn insert(fd: c_int, e: Arc<Entry>) {
    if map().write().insert(fd, e).is_none() {
        COUNT.fetch_add(1, Ordering::AcqRel);
    }
}

pub fn remove(fd: c_int) -> Option<Arc<Entry>> {
    if COUNT.load(Ordering::Acquire) == 0 {
        return None;
    }
    let e = map().write().remove(&fd);
    if e.is_some() {
        COUNT.fetch_sub(1, Ordering::AcqRel);
    }
    e
}

/// Records an epoll_ctl the application made on a table fd.
pub fn record_epoll(e: &Entry, epfd: c_int, op: c_int, ev: Option<libc::epoll_event>) {
    let mut regs = e.regs.lock();
    regs.retain(|(p, _)| *p != epfd);
    if op != libc::EPOLL_CTL_DEL {
        if let Some(ev) = ev {
            regs.push((epfd, ev));
        }
    }
}

/// Makes the application's `fd` refer to the file of `file_fd` (dup3),
/// moving its epoll registrations along. `file_fd` stays open.
pub fn switch_file(e: &Entry, fd: c_int, file_fd: c_int) -> Result<(), i32> {
    let regs = e.regs.lock();
    for (epfd, _) in regs.iter() {
        // SAFETY: plain syscalls on descriptors; a NULL event is allowed for DEL.
        let r = unsafe { super::sockets::real_epoll_ctl(*epfd, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
        if r < 0 {
            log::debug!(target: "ibstack::rdma", "fd {fd}: epoll {epfd} DEL before the switch: errno {}", super::sockets::errno());
        }
    }
    // SAFETY: dup3 of two open descriptors.
    let r = unsafe { libc::syscall(libc::SYS_dup3, file_fd, fd, libc::O_CLOEXEC) };
    let err = if r < 0 { Some(super::sockets::errno()) } else { None };
    for (epfd, ev) in regs.iter() {
        let mut ev = *ev;
        // SAFETY: as above; ev is a valid event.
        let r = unsafe { super::sockets::real_epoll_ctl(*epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if r < 0 {
            log::debug!(target: "ibstack::rdma", "fd {fd}: epoll {epfd} ADD after the switch: errno {}", super::sockets::errno());
        }
    }
    log::debug!(target: "ibstack::rdma", "fd {fd} now refers to the file of fd {file_fd}; {} epoll registrations moved", regs.len());
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
