//! `ibstack_stack`, `ibstack_listener`, `ibstack_conn`: Ceph's RDMA stream
//! connections (RDMAStack, RDMAServerSocketImpl, RDMAConnectedSocketImpl).

use crate::capi::config::ibstack_config;
use crate::ffi::handle;
use crate::ffi_boundary;
use crate::mem::MemStats;
use crate::stack::conn::Conn;
use crate::stack::listener::Listener;
use crate::stack::Stack;
use std::os::raw::{c_char, c_int, c_void};
use std::sync::Arc;

/// One device with its pools, completion queues, SRQ and poller (Ceph's
/// RDMAStack + RDMADispatcher). By default a thread named "rdma-polling"
/// polls the CQs (busy-polling ms_async_rdma_polling_us after activity, then
/// sleeping), runs every handshake and the beacon drain; with
/// ibstack_stack_thread = false the host drives it (ibstack_stack_fd,
/// ibstack_stack_poll).
/// Ownership: ibstack_stack_new / ibstack_stack_free. Close every connection
/// and free every listener first (one that outlives the stack keeps it alive).
/// Thread safety: all functions may be called from any thread.
pub struct ibstack_stack {
    inner: Stack,
}

/// A TCP listening socket whose connections become RDMA connections.
/// Ownership: ibstack_listen / ibstack_listener_free.
/// Thread safety: accept from one thread at a time.
pub struct ibstack_listener {
    inner: Listener,
}

/// One RDMA stream connection: an RC queue pair plus the TCP socket of its
/// handshake. Ownership: ibstack_accept or ibstack_connect /
/// ibstack_conn_close. Thread safety: send, recv and the queries may be
/// called from different threads; do not call close concurrently with them.
pub struct ibstack_conn {
    inner: Arc<Conn>,
}

/// Opens the device named by `cfg` (as ibstack_ib_new), registers the pools
/// (as ibstack_mem_mgr_new), creates the CQs and SRQ (as
/// ibstack_dispatcher_new) and starts the poller. Caller owns `*out`.
#[no_mangle]
pub unsafe extern "C" fn ibstack_stack_new(cfg: *const ibstack_config, out: *mut *mut ibstack_stack) -> c_int {
    ffi_boundary!("ibstack_stack_new", {
        // SAFETY: NULL or live.
        let cfg = unsafe { handle::borrow(cfg, "cfg") }?;
        handle::check_out(out, "out")?;
        let inner = Stack::new(&cfg.inner)?;
        // SAFETY: out checked.
        unsafe { handle::give(out, ibstack_stack { inner }) };
        Ok(0)
    })
}

/// Stops the poller, retires every remaining connection (at most 2 s of
/// drain) and frees everything. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn ibstack_stack_free(stack: *mut ibstack_stack) {
    ffi_boundary!("ibstack_stack_free", {
        // SAFETY: NULL or from ibstack_stack_new.
        unsafe { handle::free(stack) };
        Ok(())
    })
}

unsafe fn stack_ref<'a>(s: *const ibstack_stack) -> crate::Result<&'a ibstack_stack> {
    // SAFETY: forwarded.
    unsafe { handle::borrow(s, "stack") }
}

/// With ibstack_stack_thread = false: an epoll fd that becomes readable when
/// ibstack_stack_poll has work (completions, handshake traffic, wake-ups).
/// With the thread it exists too but belongs to the thread: do not wait on it.
#[no_mangle]
pub unsafe extern "C" fn ibstack_stack_fd(stack: *const ibstack_stack) -> c_int {
    ffi_boundary!("ibstack_stack_fd", { Ok(unsafe { stack_ref(stack) }?.inner.fd()) })
}

/// With ibstack_stack_thread = false: runs the polling loop until idle (CQs,
/// handshakes, drains). Returns 1 while within ms_async_rdma_polling_us of
/// the last activity (busy-polling: call it again soon, do not sleep on the
/// fd), or 0 once it armed the CQs: ibstack_stack_fd will fire on new work
/// and the caller may sleep on it. -EINVAL when the stack has its own thread.
#[no_mangle]
pub unsafe extern "C" fn ibstack_stack_poll(stack: *mut ibstack_stack) -> c_int {
    ffi_boundary!("ibstack_stack_poll", { Ok(unsafe { stack_ref(stack) }?.inner.poll()? as c_int) })
}

/// Counters as JSON (see ibstack_dispatcher_counters_json).
#[no_mangle]
pub unsafe extern "C" fn ibstack_stack_counters_json(stack: *const ibstack_stack, buf: *mut c_char, len: usize) -> c_int {
    ffi_boundary!("ibstack_stack_counters_json", {
        let s = unsafe { stack_ref(stack) }?;
        unsafe { handle::text_out(&s.inner.dispatcher().counters().to_json(), buf, len) }
    })
}

/// QP history as JSON (see ibstack_qp_history_json).
#[no_mangle]
pub unsafe extern "C" fn ibstack_stack_history_json(stack: *const ibstack_stack, buf: *mut c_char, len: usize) -> c_int {
    ffi_boundary!("ibstack_stack_history_json", {
        let s = unsafe { stack_ref(stack) }?;
        unsafe { handle::text_out(&s.inner.dispatcher().history_json(), buf, len) }
    })
}

/// The stack's pool figures (see ibstack_mem_mgr_stats).
#[no_mangle]
pub unsafe extern "C" fn ibstack_stack_mem_stats(stack: *const ibstack_stack, out: *mut MemStats) -> c_int {
    ffi_boundary!("ibstack_stack_mem_stats", {
        let s = unsafe { stack_ref(stack) }?;
        handle::check_out(out, "out")?;
        // SAFETY: out checked.
        unsafe { *out = s.inner.dispatcher().mem().stats() };
        Ok(0)
    })
}

/// Connections not fully torn down (closing ones included).
#[no_mangle]
pub unsafe extern "C" fn ibstack_stack_conn_count(stack: *const ibstack_stack) -> c_int {
    ffi_boundary!("ibstack_stack_conn_count", { Ok(unsafe { stack_ref(stack) }?.inner.conn_count() as c_int) })
}

/// QPs not yet destroyed (connections' QPs still draining included).
#[no_mangle]
pub unsafe extern "C" fn ibstack_stack_qp_count(stack: *const ibstack_stack) -> c_int {
    ffi_boundary!("ibstack_stack_qp_count", { Ok(unsafe { stack_ref(stack) }?.inner.dispatcher().qp_count() as c_int) })
}

/// Listens on `ip` (IPv4 or IPv6 literal) and `port` (0 = ephemeral, see
/// ibstack_listener_port) with backlog ms_tcp_listen_backlog.
#[no_mangle]
pub unsafe extern "C" fn ibstack_listen(stack: *mut ibstack_stack, ip: *const c_char, port: u16, out: *mut *mut ibstack_listener) -> c_int {
    ffi_boundary!("ibstack_listen", {
        let s = unsafe { stack_ref(stack) }?;
        let ip = unsafe { handle::str_arg(ip, "ip") }?;
        handle::check_out(out, "out")?;
        let inner = s.inner.listen(ip, port)?;
        // SAFETY: out checked.
        unsafe { handle::give(out, ibstack_listener { inner }) };
        Ok(0)
    })
}

/// The listening socket: readable when a connection waits (for epoll).
#[no_mangle]
pub unsafe extern "C" fn ibstack_listener_fd(listener: *const ibstack_listener) -> c_int {
    ffi_boundary!("ibstack_listener_fd", { Ok(unsafe { handle::borrow(listener, "listener") }?.inner.fd()) })
}

/// The port the listener is bound to.
#[no_mangle]
pub unsafe extern "C" fn ibstack_listener_port(listener: *const ibstack_listener) -> c_int {
    ffi_boundary!("ibstack_listener_port", {
        Ok(unsafe { handle::borrow(listener, "listener") }?.inner.local_addr().port() as c_int)
    })
}

/// Accepts one waiting connection and creates its QP now (as Ceph does);
/// the handshake runs in the background: wait for ibstack_conn_fd, then
/// ibstack_conn_is_connected. -EAGAIN when none waits; -ENOBUFS or the verbs
/// errno when the QP cannot be created (the TCP connection is closed).
#[no_mangle]
pub unsafe extern "C" fn ibstack_accept(listener: *mut ibstack_listener, out: *mut *mut ibstack_conn) -> c_int {
    ffi_boundary!("ibstack_accept", {
        let l = unsafe { handle::borrow(listener, "listener") }?;
        handle::check_out(out, "out")?;
        let inner = l.inner.accept()?;
        // SAFETY: out checked.
        unsafe { handle::give(out, ibstack_conn { inner }) };
        Ok(0)
    })
}

/// Closes the listening socket (connections already accepted are not
/// affected). NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn ibstack_listener_free(listener: *mut ibstack_listener) {
    ffi_boundary!("ibstack_listener_free", {
        // SAFETY: NULL or from ibstack_listen.
        unsafe { handle::free(listener) };
        Ok(())
    })
}

/// Starts a non-blocking TCP connect to `ip`:`port` and creates the QP; the
/// handshake runs in the background (ibstack_conn_fd fires when it is done
/// or failed). Immediate errors: a bad address (-EINVAL), connect(2) errors,
/// QP creation errors.
#[no_mangle]
pub unsafe extern "C" fn ibstack_connect(stack: *mut ibstack_stack, ip: *const c_char, port: u16, out: *mut *mut ibstack_conn) -> c_int {
    ffi_boundary!("ibstack_connect", {
        let s = unsafe { stack_ref(stack) }?;
        let ip = unsafe { handle::str_arg(ip, "ip") }?;
        handle::check_out(out, "out")?;
        let inner = s.inner.connect(ip, port)?;
        // SAFETY: out checked.
        unsafe { handle::give(out, ibstack_conn { inner }) };
        Ok(0)
    })
}

unsafe fn conn_ref<'a>(c: *const ibstack_conn) -> crate::Result<&'a ibstack_conn> {
    // SAFETY: forwarded.
    unsafe { handle::borrow(c, "conn") }
}

/// 1 when connected, 0 while the handshake is pending, -errno when the
/// connection failed or faulted (ibstack_conn_error_message says why).
#[no_mangle]
pub unsafe extern "C" fn ibstack_conn_is_connected(conn: *const ibstack_conn) -> c_int {
    ffi_boundary!("ibstack_conn_is_connected", { Ok(unsafe { conn_ref(conn) }?.inner.is_connected()? as c_int) })
}

/// Why the connection failed, with the string convention of
/// ibstack_last_error_message; 0 and "" while it is healthy.
#[no_mangle]
pub unsafe extern "C" fn ibstack_conn_error_message(conn: *const ibstack_conn, buf: *mut c_char, len: usize) -> usize {
    ffi_boundary!("ibstack_conn_error_message", {
        let c = unsafe { conn_ref(conn) }?;
        Ok(unsafe { handle::text_out(&c.inner.error_message(), buf, len) }? as usize)
    })
}

/// Copies up to `len` bytes into TX chunks and posts them (a buffer that is
/// exactly a TX chunk owned by the caller is posted without a copy). Returns
/// the bytes accepted (possibly fewer than `len`), -EAGAIN while the
/// handshake is pending or when TX chunks (or this connection's share,
/// ibstack_max_inflight_per_conn) run out — ibstack_conn_fd fires when they
/// come back — or -errno (-EPIPE / -ECONNRESET after a failure).
#[no_mangle]
pub unsafe extern "C" fn ibstack_conn_send(conn: *mut ibstack_conn, buf: *const c_void, len: usize) -> isize {
    ffi_boundary!("ibstack_conn_send", {
        let c = unsafe { conn_ref(conn) }?;
        let data = unsafe { handle::bytes_arg(buf.cast(), len, "buf") }?;
        Ok(c.inner.send(data)? as isize)
    })
}

/// Copies up to `len` received bytes out, in order. Returns the count,
/// -EAGAIN when nothing is there yet (wait for ibstack_conn_fd), -ECONNRESET
/// at the end of the stream (the peer closed: everything it sent before was
/// returned first) or another -errno after a failure.
#[no_mangle]
pub unsafe extern "C" fn ibstack_conn_recv(conn: *mut ibstack_conn, buf: *mut c_void, len: usize) -> isize {
    ffi_boundary!("ibstack_conn_recv", {
        let c = unsafe { conn_ref(conn) }?;
        let out = unsafe { handle::bytes_out(buf.cast(), len, "buf") }?;
        Ok(c.inner.recv(out)? as isize)
    })
}

/// An eventfd (Ceph's notify_fd) that becomes readable on new data, on
/// handshake completion, on failure, and when TX chunks come back after
/// -EAGAIN. ibstack_conn_recv resets it; with edge-triggered epoll, call recv
/// until -EAGAIN.
#[no_mangle]
pub unsafe extern "C" fn ibstack_conn_fd(conn: *const ibstack_conn) -> c_int {
    ffi_boundary!("ibstack_conn_fd", { Ok(unsafe { conn_ref(conn) }?.inner.fd()) })
}

/// Closes the connection and frees the handle: unread data is dropped; a
/// healthy connection sends its zero-length close SEND after the data in
/// flight, and the QP is retired (ERR + beacon) once the peer acknowledged
/// everything (at most 10 s). NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn ibstack_conn_close(conn: *mut ibstack_conn) {
    ffi_boundary!("ibstack_conn_close", {
        // SAFETY: NULL or from accept/connect.
        if let Some(c) = unsafe { conn.as_ref() } {
            c.inner.close();
        }
        unsafe { handle::free(conn) };
        Ok(())
    })
}
