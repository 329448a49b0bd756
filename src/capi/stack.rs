//! `ibstack_stack`, `ibstack_listener`, `ibstack_conn`: Ceph's RDMA stream
//! connections (RDMAStack, RDMAServerSocketImpl, RDMAConnectedSocketImpl).

use crate::capi::config::ibstack_config;
use crate::error::Error;
use crate::capi::mem::{ibstack_chunk, ibstack_mem_mgr, mem_mgr_handle};
use crate::counters::CountersSnapshot;
use crate::qp::Role;
use crate::ffi::handle::{self, Handle, Kind};
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
/// and free every listener first: connections still open when the stack is
/// freed are faulted (-ESHUTDOWN, "the stack was freed", their fd becomes
/// readable) and only closing them remains; a listener that outlives the
/// stack refuses ibstack_accept with -ESHUTDOWN. Device, pools and QPs are
/// released once the last of these handles is freed.
/// Thread safety: all functions may be called from any thread.
pub struct ibstack_stack {
    _opaque: [u8; 0],
}

impl Handle for ibstack_stack {
    type Target = Stack;
    const KIND: Kind = Kind::Stack;
}

/// A TCP listening socket whose connections become RDMA connections.
/// Ownership: ibstack_listen / ibstack_listener_free.
/// Thread safety: accept from one thread at a time.
pub struct ibstack_listener {
    _opaque: [u8; 0],
}

impl Handle for ibstack_listener {
    type Target = Listener;
    const KIND: Kind = Kind::Listener;
}

/// One RDMA stream connection: an RC queue pair plus the TCP socket of its
/// handshake. Ownership: ibstack_accept or ibstack_connect /
/// ibstack_conn_close. Thread safety: send, recv and the queries may be
/// called from different threads; do not call close concurrently with them.
pub struct ibstack_conn {
    _opaque: [u8; 0],
}

impl Handle for ibstack_conn {
    type Target = Conn;
    const KIND: Kind = Kind::Conn;
}

/// Opens the device named by `cfg` (as ibstack_ib_new), registers the pools
/// (as ibstack_mem_mgr_new), creates the CQs and SRQ (as
/// ibstack_dispatcher_new) and starts the poller. Caller owns `*out`.
#[no_mangle]
pub unsafe extern "C" fn ibstack_stack_new(cfg: *const ibstack_config, out: *mut *mut ibstack_stack) -> c_int {
    ffi_boundary!({
        let cfg = handle::get(cfg, "cfg")?;
        // SAFETY: out is NULL or valid for one pointer write (header contract).
        unsafe {
            handle::give(out, || {
                let s = Stack::new(&cfg.read())?;
                // the chunks its connections lend (ibstack_conn_recv_chunks) work with ibstack_chunk_*
                crate::capi::mem::register_pools(s.dispatcher().mem());
                Ok(s)
            })
        }
    })
}

/// Stops the poller, faults (-ESHUTDOWN) and retires every remaining
/// connection (at most 2 s of drain) and frees everything no connection or
/// listener handle still holds. NULL is a no-op; an invalid handle is
/// ignored with a warning.
#[no_mangle]
pub unsafe extern "C" fn ibstack_stack_free(stack: *mut ibstack_stack) {
    ffi_boundary!({
        handle::take(stack, "stack").map(drop)
    })
}

fn stack_ref(s: *const ibstack_stack) -> crate::Result<Arc<Stack>> {
    handle::get(s, "stack")
}

/// With ibstack_stack_thread = false: an epoll fd that becomes readable when
/// ibstack_stack_poll has work (completions, handshake traffic, wake-ups).
/// With the thread it exists too but belongs to the thread: do not wait on it.
#[no_mangle]
pub unsafe extern "C" fn ibstack_stack_fd(stack: *const ibstack_stack) -> c_int {
    ffi_boundary!({ Ok(stack_ref(stack)?.fd()) })
}

/// With ibstack_stack_thread = false: runs one pass of the polling loop
/// (a batch of completions, handshakes, drains). Returns 1 when the pass found
/// work or while within ms_async_rdma_polling_us of the last activity
/// (busy-polling: call it again soon, do not sleep on the fd), or 0 once it
/// armed the CQs: ibstack_stack_fd will fire on new work and the caller may
/// sleep on it. -EINVAL when the stack has its own thread.
#[no_mangle]
pub unsafe extern "C" fn ibstack_stack_poll(stack: *mut ibstack_stack) -> c_int {
    ffi_boundary!({ Ok(stack_ref(stack)?.poll()? as c_int) })
}

/// Counters as JSON (see ibstack_dispatcher_counters_json).
#[no_mangle]
pub unsafe extern "C" fn ibstack_stack_counters_json(stack: *const ibstack_stack, buf: *mut c_char, len: usize) -> c_int {
    ffi_boundary!({
        let json = stack_ref(stack)?.dispatcher().counters().to_json();
        // SAFETY: buf is NULL or holds len bytes (header contract).
        unsafe { handle::text_out(&json, buf, len) }
    })
}

/// QP history as JSON (see ibstack_qp_history_json).
#[no_mangle]
pub unsafe extern "C" fn ibstack_stack_history_json(stack: *const ibstack_stack, buf: *mut c_char, len: usize) -> c_int {
    ffi_boundary!({
        let json = stack_ref(stack)?.dispatcher().history_json();
        // SAFETY: buf is NULL or holds len bytes (header contract).
        unsafe { handle::text_out(&json, buf, len) }
    })
}

/// The stack's pool figures (see ibstack_mem_mgr_stats).
#[no_mangle]
pub unsafe extern "C" fn ibstack_stack_mem_stats(stack: *const ibstack_stack, out: *mut MemStats) -> c_int {
    ffi_boundary!({
        let stats = stack_ref(stack)?.dispatcher().mem().stats();
        // SAFETY: out is NULL or valid for one write (header contract).
        unsafe { handle::write_out(out, "out", stats) }?;
        Ok(0)
    })
}

/// The stack's memory manager as a handle of its own, so the host can take
/// TX chunks (ibstack_mem_mgr_get_tx_chunks), fill them and send them
/// without a copy with ibstack_conn_send(conn, chunk buffer, length), and
/// read the pools' figures. Caller owns `*out` and frees it with
/// ibstack_mem_mgr_free (the pools live on while the stack or any such
/// handle does).
#[no_mangle]
pub unsafe extern "C" fn ibstack_stack_mem_mgr(stack: *const ibstack_stack, out: *mut *mut ibstack_mem_mgr) -> c_int {
    ffi_boundary!({
        let s = stack_ref(stack)?;
        handle::check_out(out, "out")?;
        let mm = s.dispatcher().mem().clone();
        // SAFETY: out is non-NULL and valid for one pointer write (header contract).
        unsafe { handle::write_out(out, "out", mem_mgr_handle(mm)) }?;
        Ok(0)
    })
}

/// The stack's counters as the struct ibstack_dispatcher_counters fills
/// (the same figures as ibstack_stack_counters_json).
#[no_mangle]
pub unsafe extern "C" fn ibstack_stack_counters(stack: *const ibstack_stack, out: *mut CountersSnapshot) -> c_int {
    ffi_boundary!({
        let c = stack_ref(stack)?.dispatcher().counters();
        // SAFETY: out is NULL or valid for one write (header contract).
        unsafe { handle::write_out(out, "out", c) }?;
        Ok(0)
    })
}

/// Connections not fully torn down (closing ones included).
#[no_mangle]
pub unsafe extern "C" fn ibstack_stack_conn_count(stack: *const ibstack_stack) -> c_int {
    ffi_boundary!({ Ok(stack_ref(stack)?.conn_count() as c_int) })
}

/// QPs not yet destroyed (connections' QPs still draining included).
#[no_mangle]
pub unsafe extern "C" fn ibstack_stack_qp_count(stack: *const ibstack_stack) -> c_int {
    ffi_boundary!({ Ok(stack_ref(stack)?.dispatcher().qp_count() as c_int) })
}

/// Listens on `ip` (IPv4 or IPv6 literal) and `port` (0 = ephemeral, see
/// ibstack_listener_port) with backlog ms_tcp_listen_backlog.
#[no_mangle]
pub unsafe extern "C" fn ibstack_listen(stack: *mut ibstack_stack, ip: *const c_char, port: u16, out: *mut *mut ibstack_listener) -> c_int {
    ffi_boundary!({
        let s = stack_ref(stack)?;
        // SAFETY: ip is NULL or NUL-terminated; out is NULL or valid for one pointer write (header contract).
        unsafe {
            let ip = handle::str_arg(ip, "ip")?;
            handle::give(out, || s.listen(ip, port))
        }
    })
}

/// Takes over a listening TCP socket the host already has (IPv4 or IPv6,
/// listen(2) already called): its connections become RDMA connections, as
/// with ibstack_listen. On success the library owns `fd` (it is closed, and
/// the listener serves through a duplicate — use ibstack_listener_fd for
/// epoll); on failure `fd` is left open and still the caller's. -EBADF,
/// -ENOTSOCK, or -EINVAL for a socket that is not a listening TCP socket.
#[no_mangle]
pub unsafe extern "C" fn ibstack_listener_adopt(stack: *mut ibstack_stack, fd: c_int, out: *mut *mut ibstack_listener) -> c_int {
    ffi_boundary!({
        let s = stack_ref(stack)?;
        handle::check_out(out, "out")?;
        crate::sys::net::check_tcp_socket(fd, true, "listener")?;
        let l = s.take_over(fd, |s, dup| s.adopt_listener(dup))?;
        // SAFETY: out is non-NULL and valid for one pointer write (header contract).
        unsafe { handle::write_out(out, "out", handle::new_handle(Arc::new(l))) }?;
        Ok(0)
    })
}

/// The listening socket: readable when a connection waits (for epoll).
#[no_mangle]
pub unsafe extern "C" fn ibstack_listener_fd(listener: *const ibstack_listener) -> c_int {
    ffi_boundary!({ Ok(handle::get(listener, "listener")?.fd()) })
}

/// The port the listener is bound to.
#[no_mangle]
pub unsafe extern "C" fn ibstack_listener_port(listener: *const ibstack_listener) -> c_int {
    ffi_boundary!({
        Ok(handle::get(listener, "listener")?.local_addr().port() as c_int)
    })
}

/// Accepts one waiting connection and creates its QP now (as Ceph does);
/// the handshake runs in the background: wait for ibstack_conn_fd, then
/// ibstack_conn_is_connected. -EAGAIN when none waits; -ENOBUFS or the verbs
/// errno when the QP cannot be created, -ESHUTDOWN once the listener's stack
/// was freed (the TCP connection is closed).
#[no_mangle]
pub unsafe extern "C" fn ibstack_accept(listener: *mut ibstack_listener, out: *mut *mut ibstack_conn) -> c_int {
    ffi_boundary!({
        let l = handle::get(listener, "listener")?;
        handle::check_out(out, "out")?;
        let conn = l.accept()?;
        // SAFETY: out is non-NULL and valid for one pointer write (header contract).
        unsafe { handle::write_out(out, "out", handle::new_handle(conn)) }?;
        Ok(0)
    })
}

/// Closes the listening socket (connections already accepted are not
/// affected). NULL is a no-op; an invalid handle is ignored with a warning.
#[no_mangle]
pub unsafe extern "C" fn ibstack_listener_free(listener: *mut ibstack_listener) {
    ffi_boundary!({
        handle::take(listener, "listener").map(drop)
    })
}

/// Starts a non-blocking TCP connect to `ip`:`port` and creates the QP; the
/// handshake runs in the background (ibstack_conn_fd fires when it is done
/// or failed). Immediate errors: a bad address (-EINVAL), connect(2) errors,
/// QP creation errors.
#[no_mangle]
pub unsafe extern "C" fn ibstack_connect(stack: *mut ibstack_stack, ip: *const c_char, port: u16, out: *mut *mut ibstack_conn) -> c_int {
    ffi_boundary!({
        let s = stack_ref(stack)?;
        // SAFETY: ip is NULL or NUL-terminated; out is NULL or valid for one pointer write (header contract).
        unsafe {
            let ip = handle::str_arg(ip, "ip")?;
            handle::check_out(out, "out")?;
            let conn = s.connect(ip, port)?;
            handle::write_out(out, "out", handle::new_handle(conn))?;
        }
        Ok(0)
    })
}

fn conn_ref(c: *const ibstack_conn) -> crate::Result<Arc<Conn>> {
    handle::get(c, "conn")
}

/// Takes over a TCP socket the host already has and makes it an RDMA
/// connection (Ceph's set_accept_fd pattern): `role` IBSTACK_ROLE_ACCEPTOR
/// for an accepted socket, IBSTACK_ROLE_CONNECTOR for a connected one or one
/// whose non-blocking connect is still in progress (EINPROGRESS). The QP is
/// created now and the handshake runs in the background, as with
/// ibstack_accept / ibstack_connect. On success the library owns `fd` (it is
/// closed; the connection works through a duplicate and ibstack_conn_fd is
/// what to wait on); on failure `fd` is left open and still the caller's.
/// -EBADF, -ENOTSOCK, -EINVAL (not a TCP stream socket, a listening socket,
/// a bad role), -ENOTCONN (an acceptor's socket that is not connected), or
/// the QP creation errors.
#[no_mangle]
pub unsafe extern "C" fn ibstack_conn_adopt(stack: *mut ibstack_stack, fd: c_int, role: u32, out: *mut *mut ibstack_conn) -> c_int {
    ffi_boundary!({
        let s = stack_ref(stack)?;
        let role = Role::from_raw(role)?;
        handle::check_out(out, "out")?;
        crate::sys::net::check_tcp_socket(fd, false, "connection")?;
        let conn = s.take_over(fd, |s, dup| s.adopt_socket(dup, role))?;
        // SAFETY: out is non-NULL and valid for one pointer write (header contract).
        unsafe { handle::write_out(out, "out", handle::new_handle(conn)) }?;
        Ok(0)
    })
}

/// The peer's address of the connection's TCP side channel (for an accepted
/// connection, the client as the server saw it — what msgr2's HELLO
/// reports). -ENOTCONN before a connector's TCP connect completed or after
/// the connection was retired.
#[no_mangle]
pub unsafe extern "C" fn ibstack_conn_peer_addr(conn: *const ibstack_conn, out: *mut libc::sockaddr_storage) -> c_int {
    ffi_boundary!({ conn_addr(conn, out, true) })
}

/// This end's address of the connection's TCP side channel (the local
/// address and port the connection uses). Errors as ibstack_conn_peer_addr.
#[no_mangle]
pub unsafe extern "C" fn ibstack_conn_local_addr(conn: *const ibstack_conn, out: *mut libc::sockaddr_storage) -> c_int {
    ffi_boundary!({ conn_addr(conn, out, false) })
}

fn conn_addr(conn: *const ibstack_conn, out: *mut libc::sockaddr_storage, peer: bool) -> crate::Result<c_int> {
    let c = conn_ref(conn)?;
    handle::check_out(out, "out")?;
    let (ss, _) = crate::sys::net::to_sockaddr(&c.tcp_addr(peer)?);
    // SAFETY: out is non-NULL and valid for one write (header contract).
    unsafe { handle::write_out(out, "out", ss) }?;
    Ok(0)
}

/// Ends the sending half, as shutdown(fd, SHUT_WR) does: the zero-length
/// close SEND follows the data already accepted, so the peer reads
/// everything and then its end of stream; later ibstack_conn_send calls fail
/// with -EPIPE; ibstack_conn_recv goes on until the peer closes. The handle
/// stays valid until ibstack_conn_close. A second call returns 0.
/// -ENOTCONN while the handshake is pending; the connection's error after a
/// failure.
#[no_mangle]
pub unsafe extern "C" fn ibstack_conn_shutdown(conn: *mut ibstack_conn) -> c_int {
    ffi_boundary!({
        conn_ref(conn)?.shutdown()?;
        Ok(0)
    })
}

/// 1 when connected, 0 while the handshake is pending, -errno when the
/// connection failed or faulted (ibstack_conn_error_message says why).
#[no_mangle]
pub unsafe extern "C" fn ibstack_conn_is_connected(conn: *const ibstack_conn) -> c_int {
    ffi_boundary!({ Ok(conn_ref(conn)?.is_connected()? as c_int) })
}

/// Why the connection failed, with the string convention of
/// ibstack_last_error_message; 0 and "" while it is healthy.
#[no_mangle]
pub unsafe extern "C" fn ibstack_conn_error_message(conn: *const ibstack_conn, buf: *mut c_char, len: usize) -> usize {
    ffi_boundary!({
        let text = conn_ref(conn)?.error_message();
        // SAFETY: buf is NULL or holds len bytes (header contract).
        Ok(unsafe { handle::text_out(&text, buf, len) }? as usize)
    })
}

/// Copies up to `len` bytes into TX chunks and posts them (a buffer that is
/// exactly a TX chunk owned by the caller is posted without a copy, and is the
/// stack's from then on; refused with -EAGAIN, it stays the caller's). Returns
/// the bytes accepted (possibly fewer than `len`), -EAGAIN while the
/// handshake is pending or when TX chunks (or this connection's share,
/// ibstack_max_inflight_per_conn) run out — ibstack_conn_fd fires when they
/// come back — or -errno (-EPIPE / -ECONNRESET after a failure). One call
/// reads at most min(`len`, 64 × ms_async_rdma_buffer_size) bytes of `buf`,
/// never more than `len`; `len` above PTRDIFF_MAX is -EINVAL.
#[no_mangle]
pub unsafe extern "C" fn ibstack_conn_send(conn: *mut ibstack_conn, buf: *const c_void, len: usize) -> isize {
    ffi_boundary!({
        let c = conn_ref(conn)?;
        // SAFETY: buf is NULL or holds len bytes (header contract).
        let data = unsafe { handle::bytes_arg(buf.cast(), len, "buf") }?;
        Ok(c.send(data)? as isize)
    })
}

/// Sends the `iovcnt` buffers of `iov` as one stream, as writev(2): their
/// bytes are packed into full SENDs of ms_async_rdma_buffer_size (not one
/// SEND per buffer), as Ceph packs a bufferlist. Returns the bytes accepted
/// (a prefix of the buffers' concatenation), -EAGAIN and the errors as
/// ibstack_conn_send. `iovcnt` negative or above 1024 (IOV_MAX), NULL `iov`
/// with `iovcnt` > 0, a NULL base with a non-zero length, or a total above
/// PTRDIFF_MAX is -EINVAL.
#[no_mangle]
pub unsafe extern "C" fn ibstack_conn_sendv(conn: *mut ibstack_conn, iov: *const libc::iovec, iovcnt: c_int) -> isize {
    ffi_boundary!({
        let c = conn_ref(conn)?;
        if !(0..=1024).contains(&iovcnt) {
            return Err(Error::inval(format!("iovcnt is {iovcnt}: 0 to 1024 (IOV_MAX) buffers")));
        }
        if iovcnt > 0 && iov.is_null() {
            return Err(Error::inval(format!("iov is NULL but iovcnt is {iovcnt}")));
        }
        let v: &[libc::iovec] = if iovcnt == 0 {
            &[]
        } else {
            // SAFETY: iov holds iovcnt entries (header contract).
            unsafe { std::slice::from_raw_parts(iov, iovcnt as usize) }
        };
        let mut total = 0usize;
        for (i, e) in v.iter().enumerate() {
            if e.iov_base.is_null() && e.iov_len > 0 {
                return Err(Error::inval(format!("iov[{i}].iov_base is NULL but its length is {}", e.iov_len)));
            }
            total = total.checked_add(e.iov_len).filter(|&t| t <= isize::MAX as usize).ok_or_else(|| {
                Error::inval(format!("the buffers add up to more than PTRDIFF_MAX bytes (at iov[{i}])"))
            })?;
        }
        // SAFETY: the non-NULL bases are valid for their lengths (header contract).
        let bufs = unsafe { crate::sys::io_slices(v) };
        Ok(c.send_vectored(&bufs)? as isize)
    })
}

/// Copies up to `len` received bytes out, in order. Returns the count,
/// -EAGAIN when nothing is there yet (wait for ibstack_conn_fd), -ECONNRESET
/// at the end of the stream (the peer closed: everything it sent before was
/// returned first) or another -errno after a failure.
#[no_mangle]
pub unsafe extern "C" fn ibstack_conn_recv(conn: *mut ibstack_conn, buf: *mut c_void, len: usize) -> isize {
    ffi_boundary!({
        let c = conn_ref(conn)?;
        // SAFETY: buf is NULL or holds len bytes (header contract).
        let out = unsafe { handle::bytes_out(buf.cast(), len, "buf") }?;
        Ok(c.recv(out)? as isize)
    })
}

/// Zero-copy receive: lends up to `max` received buffers to the caller, in
/// stream order, into `out[0..n)`, and returns n. A chunk's unread bytes are
/// ibstack_chunk_size(c) bytes at (char *)ibstack_chunk_buffer(c) +
/// ibstack_chunk_offset(c) (the first may be partly read by
/// ibstack_conn_recv); one chunk is one SEND of the peer. The chunks are the
/// caller's until it gives them back with ibstack_conn_release_chunks, in
/// any order and from any thread; until then they count against the
/// connection's receive cap (ibstack_max_rx_per_conn), so a caller that
/// keeps them stops the sender. ibstack_conn_close gives back the chunks
/// still lent: do not touch them afterwards. Other release calls
/// (ibstack_mem_mgr_release_rx_chunk, ibstack_dispatcher_release_rx) refuse
/// a lent chunk with -EINVAL. Errors, the end of the stream and the fd are as
/// for ibstack_conn_recv; `max` 0 returns 0.
#[no_mangle]
pub unsafe extern "C" fn ibstack_conn_recv_chunks(conn: *mut ibstack_conn, out: *mut *mut ibstack_chunk, max: usize) -> isize {
    ffi_boundary!({
        let c = conn_ref(conn)?;
        // SAFETY: out is NULL or holds max entries (header contract).
        let out = unsafe { handle::items_out(out, max, "out", "max") }?;
        let n = c.recv_chunks(out.len(), |i, ch| {
            out[i].write(ch.as_ptr().cast_mut().cast());
        })?;
        Ok(n as isize)
    })
}

/// Gives back `n` chunks that ibstack_conn_recv_chunks of this connection
/// lent, in any order. All are checked first: a pointer that is not such a
/// chunk, or one given back already, is -EINVAL naming its index, and then
/// none is given back. A chunk named twice in one call is given back once.
#[no_mangle]
pub unsafe extern "C" fn ibstack_conn_release_chunks(conn: *mut ibstack_conn, chunks: *const *mut ibstack_chunk, n: usize) -> c_int {
    ffi_boundary!({
        let c = conn_ref(conn)?;
        // SAFETY: chunks is NULL or holds n pointers (header contract).
        let list = unsafe { handle::items(chunks, n, "chunks") }?;
        c.release_chunks_by_id(list.iter().map(|&p| crate::capi::mem::chunk_id(p)))?;
        Ok(0)
    })
}

/// An eventfd (Ceph's notify_fd) that becomes readable on new data, on
/// handshake completion, on failure, and when TX chunks come back after
/// -EAGAIN. ibstack_conn_recv resets it; with edge-triggered epoll, call recv
/// until -EAGAIN. The fd belongs to the connection: it stays valid (and
/// open) until ibstack_conn_close, never longer — take it out of your epoll
/// set before closing.
#[no_mangle]
pub unsafe extern "C" fn ibstack_conn_fd(conn: *const ibstack_conn) -> c_int {
    ffi_boundary!({ Ok(conn_ref(conn)?.fd()) })
}

/// The connection's local QP number (as in ibstack_stack_history_json and
/// device async events); 0 for an invalid handle.
#[no_mangle]
pub unsafe extern "C" fn ibstack_conn_qp_num(conn: *const ibstack_conn) -> u32 {
    ffi_boundary!({ Ok(conn_ref(conn)?.qp_num()) })
}

/// The index of the GID table entry the connection advertises in its cm_meta
/// record and sends from (its RTR sgid_index): ms_async_rdma_gid_idx, or with
/// ibstack_gid_select = auto the RoCE v2 entry of the TCP side channel's local
/// address, chosen when the connection was created. Returns the index (0 or
/// more), or -EINVAL for an invalid handle. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn ibstack_conn_gid_index(conn: *const ibstack_conn) -> c_int {
    ffi_boundary!({ Ok(conn_ref(conn)?.gid_index() as c_int) })
}

/// Fault injection for tests: handles a device async event (`enum
/// ibv_event_type`, QP number for QP events, port for port events) exactly
/// as if the device had reported it — QP_FATAL, LAST_WQE_REACHED,
/// DEVICE_FATAL or PORT_ERR cannot be provoked on Soft-RoCE. The event takes
/// effect in the next poller iteration. Type 255 (no ibv_event_type value)
/// makes the next poller iteration panic instead, to test the panic guard:
/// every connection of the stack then fails with -ENOTRECOVERABLE naming
/// the panic, and the stack keeps working (a host-driven stack's
/// ibstack_stack_poll returns that error once). Returns 0, or -EINVAL for an
/// invalid handle or an event type above 255.
#[no_mangle]
pub unsafe extern "C" fn ibstack_stack_inject_async_event(stack: *const ibstack_stack, event_type: u32, qp_num: u32, port: u32) -> c_int {
    ffi_boundary!({
        let s = stack_ref(stack)?;
        if event_type > 255 {
            return Err(crate::Error::inval(format!("event_type {event_type} is not an enum ibv_event_type value")));
        }
        s.inject_async_event(crate::verbs::AsyncEvent { kind: event_type, qp_num, port });
        Ok(0)
    })
}

/// Closes the connection and frees the handle: unread data is dropped; a
/// healthy connection sends its zero-length close SEND after the data in
/// flight, and the QP is retired (ERR + beacon) once the peer acknowledged
/// everything (at most 10 s). NULL is a no-op; an invalid handle (closed
/// already, foreign, of another type) is ignored with a warning.
/// With epoll: remove ibstack_conn_fd from the set first (epoll_ctl DEL),
/// then close; the eventfd is valid until this call and released with the
/// handle. To end only the sending half and keep reading, use
/// ibstack_conn_shutdown first.
#[no_mangle]
pub unsafe extern "C" fn ibstack_conn_close(conn: *mut ibstack_conn) {
    ffi_boundary!({
        if let Some(c) = handle::take(conn, "conn")? {
            c.close();
        }
        Ok(())
    })
}
