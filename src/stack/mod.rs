//! `Stack`: device, pools, dispatcher and the poller that drives them —
//! Ceph's RDMAStack with its RDMADispatcher thread ("rdma-polling"), or, with
//! `ibstack_stack_thread = false`, driven by the host through an epoll fd.
//!
//! * `conn.rs` — one stream connection;
//! * `listener.rs` — the TCP listener that creates connections at accept;

pub mod conn;
pub mod listener;

use crate::config::Config;
use crate::dispatcher::Dispatcher;
use crate::error::{Error, Result};
use crate::qp::Role;
use crate::ib::Ib;
use crate::mem::MemoryManager;
use crate::verbs::Wc;
use conn::Conn;
use crate::sys::net::{parse_addr, set_nodelay, tcp_socket, to_sockaddr};
use listener::Listener;
use parking_lot::Mutex;
use crate::sys::event::{Epoll, EventFd, TimerFd};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::{Arc, Weak};
use crate::cycles::Stamp;
use std::time::{Duration, Instant};

// epoll tokens of the stack's own fds; connections use their QP number.
const TOKEN_BASE: u64 = 1 << 40;
const TOKEN_WAKE: u64 = TOKEN_BASE;
const TOKEN_TX_CQ: u64 = TOKEN_BASE + 1;
const TOKEN_RX_CQ: u64 = TOKEN_BASE + 2;
const TOKEN_ASYNC: u64 = TOKEN_BASE + 3;
const TOKEN_TIMER: u64 = TOKEN_BASE + 4;
/// How long the poller sleeps when idle while QPs are draining or receive
/// buffers are owed (the retries the dispatcher makes when it polls).
const SLEEP_MS: i32 = 100;
/// How long it sleeps when nothing is pending: every event it must act on
/// (completions, TCP sockets, async events, deadlines, shutdown) wakes its
/// epoll set, so the timeout is only a safety net; each wake-up costs CPU.
const IDLE_SLEEP_MS: i32 = 1000;
/// While busy, TCP sockets and closing connections are checked this often (µs).
const FD_CHECK_US: u64 = 200;

/// ibstack_max_rx_per_conn, with 0 resolved: a quarter of the RX pool with
/// per-QP receive queues (where the cap is backpressure), none with the SRQ
/// (where it fails a connection, so only an explicit value does that).
fn rx_cap_of(cfg: &Config, srq: bool) -> u32 {
    match cfg.max_rx_per_conn {
        0 if srq || cfg.receive_buffers == 0 => 0,
        0 => (cfg.receive_buffers / 4).max(1),
        n => n,
    }
}

/// The event type `ibstack_stack_inject_async_event` takes to make the next
/// poller iteration panic (no `enum ibv_event_type` value is this high).
pub const INJECT_PANIC: u32 = 255;

/// Moves a connection list (parked writers, corked connections) into its
/// spare and returns the spare, locked: the list takes new entries while the
/// caller walks the old ones, and neither allocates once warm.
fn take_listed<'a>(list: &Mutex<Vec<Weak<Conn>>>, spare: &'a Mutex<Vec<Weak<Conn>>>) -> parking_lot::MutexGuard<'a, Vec<Weak<Conn>>> {
    let mut taken = spare.lock();
    taken.append(&mut list.lock());
    taken
}

pub struct Shared {
    pub(crate) disp: Arc<Dispatcher>,
    pub(crate) ep: Epoll,
    wake: EventFd,
    /// Fires at the earliest connection deadline (EOF grace, linger,
    /// handshake timeout), so a sleeping host or thread wakes for it.
    timer: TimerFd,
    /// What `timer` is armed for (None = disarmed), to skip redundant syscalls.
    timer_at: Mutex<Option<Instant>>,
    conns: Mutex<crate::qpn_map::QpnMap<Arc<Conn>>>,
    pending: Mutex<Vec<Weak<Conn>>>,
    /// `wake_pending`'s list, kept (with `pending`) so parking allocates nothing once warm.
    waking: Mutex<Vec<Weak<Conn>>>,
    /// Connections holding coalesced bytes, flushed when send completions
    /// come back (`uncork_all`); `uncorking` is its spare, as `waking`.
    corked: Mutex<Vec<Weak<Conn>>>,
    uncorking: Mutex<Vec<Weak<Conn>>>,
    /// A corked connection's writer held its lock when completions came
    /// back: the next iteration looks at the corked list again.
    uncork_again: AtomicBool,
    /// ibstack_tx_coalesce.
    pub(crate) coalesce: bool,
    stop: AtomicBool,
    /// ibstack_stack_free ran: nothing drives this stack any more; new
    /// connections are refused (listeners that outlive it).
    freed: AtomicBool,
    threaded: bool,
    pub(crate) max_inflight: u32,
    /// ms_async_rdma_polling_us.
    polling_us: u64,
    /// Received buffers one connection may hold unread (0 = no cap).
    rx_cap: u32,
    /// Serializes iterations (the thread, or host calls in host-driven mode).
    iter_lock: Mutex<Box<[Wc; 64]>>,
    /// Set by `kick`: the next iteration checks the fds even when busy.
    kicked: AtomicBool,
    /// Fault injection: the next iteration panics (tests the panic guard).
    panic_next: AtomicBool,
    /// Last time the fds were checked during busy polling.
    last_fd_check: Mutex<Stamp>,
    /// Last iteration that did work (host-driven busy-poll window).
    last_work: Mutex<Stamp>,
}

pub struct Stack {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stack {
    /// Opens the device, builds the pools and the dispatcher, and starts the
    /// polling thread unless `ibstack_stack_thread` is false.
    pub fn new(cfg: &Config) -> Result<Stack> {
        crate::prereq::stack_init(cfg)?;
        let ib = Arc::new(Ib::open(cfg)?);
        let mem = Arc::new(MemoryManager::on_pd(ib.config(), ib.tx_queue_len(), ib.pd().clone())?);
        let tx_total = ib.tx_queue_len();
        let disp = Arc::new(Dispatcher::new(ib, mem)?);
        let ep = Epoll::new()?;
        let wake = EventFd::new()?;
        let timer = TimerFd::new()?;
        let [tx_fd, rx_fd, async_fd] = disp.wait_fds();
        let inn = libc::EPOLLIN as u32;
        ep.add(wake.fd(), inn, TOKEN_WAKE)?;
        ep.add(tx_fd, inn, TOKEN_TX_CQ)?;
        ep.add(rx_fd, inn, TOKEN_RX_CQ)?;
        ep.add(async_fd, inn, TOKEN_ASYNC)?;
        ep.add(timer.fd(), inn, TOKEN_TIMER)?;
        let rx_cap = rx_cap_of(cfg, disp.has_srq());
        let max_inflight = if cfg.max_inflight_per_conn == 0 { (tx_total / 2).max(1) } else { cfg.max_inflight_per_conn };
        let shared = Arc::new(Shared {
            disp,
            ep,
            wake,
            timer,
            timer_at: Mutex::new(None),
            conns: Mutex::new(Default::default()),
            pending: Mutex::new(Vec::new()),
            waking: Mutex::new(Vec::new()),
            corked: Mutex::new(Vec::new()),
            uncorking: Mutex::new(Vec::new()),
            uncork_again: AtomicBool::new(false),
            coalesce: cfg.tx_coalesce,
            stop: AtomicBool::new(false),
            freed: AtomicBool::new(false),
            threaded: cfg.stack_thread,
            max_inflight,
            rx_cap,
            polling_us: cfg.polling_us as u64,
            iter_lock: Mutex::new(Box::new([Wc::default(); 64])),
            kicked: AtomicBool::new(true),
            panic_next: AtomicBool::new(false),
            last_fd_check: Mutex::new(Stamp::now()),
            last_work: Mutex::new(Stamp::now()),
        });
        let thread = if cfg.stack_thread {
            let s = shared.clone();
            Some(
                std::thread::Builder::new()
                    .name("rdma-polling".into())
                    .spawn(move || s.run())
                    .map_err(|e| Error::new(e.raw_os_error().unwrap_or(libc::EAGAIN), format!("starting the polling thread: {e}")))?,
            )
        } else {
            None
        };
        Ok(Stack { shared, thread })
    }

    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.shared.disp
    }

    /// The epoll fd a host event loop waits on in host-driven mode.
    pub fn fd(&self) -> i32 {
        self.shared.ep.fd()
    }

    /// Host-driven mode: one iteration. When it found work, or within
    /// `ms_async_rdma_polling_us` of the last activity, it returns `true`
    /// ("busy: call again soon", nothing armed); after that it arms the CQs
    /// and returns `false`: the fd will fire on new work, the caller may sleep.
    /// One pass, not a drain until idle: a host spinning on a connection gets
    /// back to its receive as soon as a completion was delivered (the idle
    /// pass a drain ends with was about 1 us of its 64 B latency on rxe).
    /// EINVAL when the stack has its own thread.
    pub fn poll(&self) -> Result<bool> {
        if self.shared.threaded {
            return Err(Error::inval(
                "this stack runs its own polling thread; set ibstack_stack_thread = false to drive it with ibstack_stack_poll",
            ));
        }
        let sh = &self.shared;
        loop {
            if sh.iterate_guarded()? {
                *sh.last_work.lock() = Stamp::now();
                return Ok(true);
            }
            if sh.last_work.lock().elapsed_us() < sh.polling_us {
                return Ok(true);
            }
            // Going to sleep: look at the fds once more, then arm.
            sh.kicked.store(true, Release);
            if sh.iterate_guarded()? {
                continue;
            }
            if !sh.disp.arm()? {
                return Ok(false);
            }
        }
    }

    pub fn listen(&self, ip: &str, port: u16) -> Result<Listener> {
        Listener::bind(self.shared.clone(), ip, port)
    }

    /// Non-blocking TCP connect, QP created now; the handshake continues in
    /// the poller.
    pub fn connect(&self, ip: &str, port: u16) -> Result<Arc<Conn>> {
        let addr = parse_addr(ip, port)?;
        let tcp = tcp_socket(&addr)?;
        let (ss, len) = to_sockaddr(&addr);
        // SAFETY: ss holds a valid address of len bytes.
        if unsafe { libc::connect(tcp.as_raw_fd(), (&ss as *const libc::sockaddr_storage).cast(), len) } < 0 {
            let e = crate::sys::errno();
            if e != libc::EINPROGRESS {
                return Err(crate::sys::errno_error(e, format_args!("TCP connect to {addr}")));
            }
        }
        self.adopt_checked(tcp, Role::Connector, Some(addr))
    }

    /// A TCP socket the host already has becomes a connection (Ceph's
    /// `set_accept_fd` pattern): an accepted socket as the acceptor, a
    /// connected or still connecting one (non-blocking connect in progress)
    /// as the connector. The socket becomes non-blocking and the connection
    /// owns it from now on; its QP is created now.
    pub fn adopt_socket(&self, tcp: OwnedFd, role: Role) -> Result<Arc<Conn>> {
        self.adopt_checked(tcp, role, None)
    }

    /// `adopt_socket`; `target` is the address a connector's connect(2) was
    /// given (named in messages while the connect is in progress).
    fn adopt_checked(&self, tcp: OwnedFd, role: Role, target: Option<std::net::SocketAddr>) -> Result<Arc<Conn>> {
        let fd = tcp.as_raw_fd();
        crate::sys::net::check_tcp_socket(fd, false, "connection")?;
        let peer = match crate::sys::net::socket_addr(fd, true) {
            Ok(a) => a.to_string(),
            Err(e) if e.errno == libc::ENOTCONN && role == Role::Connector => {
                target.map_or_else(|| "(connect in progress)".to_string(), |a| a.to_string())
            }
            Err(e) => {
                return Err(e.context(format_args!(
                    "fd {fd} is not a connected socket ({})",
                    if role == Role::Acceptor { "an acceptor adopts an accepted socket" } else { "nor a connecting one" }
                )))
            }
        };
        crate::sys::set_nonblocking(fd)?;
        set_nodelay(fd);
        self.shared.adopt(tcp, role, peer)
    }

    /// A listening TCP socket the host already has becomes a listener.
    pub fn adopt_listener(&self, fd: OwnedFd) -> Result<Listener> {
        Listener::adopt(self.shared.clone(), fd)
    }

    /// The host's descriptor `fd` is handed over (the C API's adopt calls):
    /// `adopt` gets a duplicate, and only when it succeeds is `fd` itself
    /// closed — on failure it stays open and the host's.
    pub fn take_over<T>(&self, fd: std::os::fd::RawFd, adopt: impl FnOnce(&Self, OwnedFd) -> Result<T>) -> Result<T> {
        let dup = crate::sys::dup_cloexec(fd)?;
        let r = adopt(self, dup)?;
        // SAFETY: the host handed fd over and the duplicate now serves for it.
        unsafe { libc::close(fd) };
        Ok(r)
    }

    /// See `Dispatcher::inject_async_event`; wakes the poller so the event
    /// is routed to the connections in its next iteration.
    /// `kind` [`INJECT_PANIC`] makes the next poller iteration panic instead.
    pub fn inject_async_event(&self, ev: crate::verbs::AsyncEvent) {
        if ev.kind == INJECT_PANIC {
            self.shared.panic_next.store(true, Release);
        } else {
            self.shared.disp.inject_async_event(ev);
        }
        self.shared.kick();
    }

    /// Connections not fully torn down yet (closing ones included).
    pub fn conn_count(&self) -> usize {
        self.shared.conns.lock().len()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Refuse new connections first, so none is added after the drain below
        // (a listener outliving the stack would create QPs nothing drives, and
        // its connections would keep the stack's Shared alive in a cycle).
        self.shared.freed.store(true, Release);
        self.shared.stop.store(true, Release);
        self.shared.wake.notify();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let conns: Vec<_> = self.shared.conns.lock().drain().map(|(_, c)| c).collect();
        for c in conns {
            // Handles the host still holds must fail and wake, not look "pending".
            c.fault(Error::new(
                libc::ESHUTDOWN,
                "the stack was freed (ibstack_stack_free) while this connection was open: close it",
            ));
            c.close();
            c.finish();
        }
        self.shared.disp.shutdown(Duration::from_secs(2));
    }
}

impl Shared {
    /// Creates the QP (INIT) and the connection for a TCP socket and hands
    /// it to the poller (a connector's socket is still connecting).
    pub(super) fn adopt(self: &Arc<Self>, tcp: std::os::fd::OwnedFd, role: Role, peer: String) -> Result<Arc<Conn>> {
        self.check_not_freed()?;
        let keepalive = self.disp.ib().config().tcp_keepalive;
        if keepalive > 0 {
            crate::sys::net::set_keepalive(tcp.as_raw_fd(), keepalive)?;
        }
        let local = crate::sys::net::socket_addr(tcp.as_raw_fd(), false).ok().map(|a| a.ip());
        let gid = self.disp.ib().gid_for_local(local)?;
        let qp = self.disp.create_qp_with_gid(&gid)?;
        qp.set_rx_cap(self.rx_cap);
        let conn = match Conn::new(self.clone(), qp.clone(), tcp, role, peer, role == Role::Connector) {
            Ok(c) => c,
            Err(e) => {
                let _ = self.disp.to_dead(&qp);
                return Err(e);
            }
        };
        self.register(&conn)?;
        Ok(conn)
    }

    /// -ESHUTDOWN once ibstack_stack_free ran.
    pub(super) fn check_not_freed(&self) -> Result<()> {
        if self.freed.load(Acquire) {
            return Err(Error::new(
                libc::ESHUTDOWN,
                "the stack was freed (ibstack_stack_free): it accepts and creates no connection any more; free this listener",
            ));
        }
        Ok(())
    }

    pub(super) fn register(&self, c: &Arc<Conn>) -> Result<()> {
        {
            // Under the lock Stack::drop drains: either it sees this connection or we see `freed`.
            let mut conns = self.conns.lock();
            if let Err(e) = self.check_not_freed() {
                drop(conns);
                c.finish();
                return Err(e);
            }
            conns.insert(c.qp_num(), c.clone());
        }
        let interest = c.tcp_interest();
        if let Err(e) = self.ep.add(c.tcp_fd(), interest, c.qp_num() as u64) {
            self.conns.lock().remove(&c.qp_num());
            c.finish();
            return Err(e);
        }
        self.kick();
        Ok(())
    }

    /// Wakes the poller (it may be asleep in epoll).
    pub(super) fn kick(&self) {
        self.kicked.store(true, Release);
        self.wake.notify();
    }

    pub(super) fn park(&self, c: &Conn) {
        let Some(arc) = self.conns.lock().get(&c.qp_num()).cloned() else { return };
        let mut p = self.pending.lock();
        p.push(Arc::downgrade(&arc));
        self.disp.env().counters.pending_sent_conns.store(p.len() as u64, Relaxed);
    }

    /// A connection corked bytes while its SENDs were in flight.
    pub(super) fn list_corked(&self, c: Weak<Conn>) {
        self.corked.lock().push(c);
    }

    /// A corked connection was busy sending: look at the list next iteration.
    pub(super) fn retry_uncork(&self) {
        self.uncork_again.store(true, Release);
    }

    /// Send completions came back: every corked connection posts what it
    /// coalesced (one SEND each). Before `wake_pending`, so a writer woken
    /// for TX chunks finds its earlier bytes already posted.
    fn uncork_all(&self) {
        let mut list = take_listed(&self.corked, &self.uncorking);
        for c in list.drain(..).filter_map(|w| w.upgrade()) {
            c.uncork();
        }
    }

    fn wake_pending(&self) {
        let mut list = take_listed(&self.pending, &self.waking);
        self.disp.env().counters.pending_sent_conns.store(0, Relaxed);
        for c in list.drain(..).filter_map(|w| w.upgrade()) {
            c.unpark();
        }
    }

    fn conn(&self, qpn: u32) -> Option<Arc<Conn>> {
        self.conns.lock().get(&qpn).cloned()
    }

    /// One iteration behind a panic guard. A panic is a bug; it must neither
    /// kill the polling thread (every connection would hang, nobody told) nor
    /// unwind into the host. Every connection of the stack fails with a named
    /// error and is woken; the stack keeps running, so closes still retire
    /// and new connections work.
    fn iterate_guarded(&self) -> Result<bool> {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.iterate()));
        let payload = match outcome {
            Ok(r) => return r,
            Err(p) => p,
        };
        let what = crate::ffi::panic::panic_message(payload.as_ref());
        let e = Error::new(
            libc::ENOTRECOVERABLE,
            format!(
                "internal error in the stack's completion polling (a panic: {what}); every connection of this stack \
                 was failed to keep its data consistent; please report it with the log"
            ),
        );
        log::error!("{e}");
        self.fault_all(&e);
        Err(e)
    }

    /// Fails every connection of the stack with `e` (each is woken).
    fn fault_all(&self, e: &Error) {
        let all: Vec<Arc<Conn>> = self.conns.lock().values().cloned().collect();
        for c in all {
            c.fault(e.clone());
        }
    }

    /// One pass: completions, TCP events (without waiting), closing
    /// connections. Returns true when anything happened.
    fn iterate(&self) -> Result<bool> {
        if self.panic_next.load(Relaxed) && self.panic_next.swap(false, AcqRel) {
            panic!("injected by ibstack_stack_inject_async_event type {INJECT_PANIC}");
        }
        // records logged under the locks below reach a host callback after them
        let _log_defer = crate::ffi::log::defer();
        let mut wc = self.iter_lock.lock();
        let o = self.disp.poll(&mut wc[..])?;
        for w in &wc[..o.delivered] {
            match self.conn(w.qp_num) {
                Some(c) => c.on_completion(w),
                None => self.disp.release_delivered(std::slice::from_ref(w)),
            }
        }
        let again = self.uncork_again.swap(false, AcqRel);
        if o.tx_returned > 0 || again {
            self.uncork_all();
        }
        if o.tx_returned > 0 {
            self.wake_pending();
        }
        // The TCP sockets (handshakes, EOF) need an epoll_wait syscall: while
        // completions flow, look at them only every FD_CHECK or when kicked.
        let mut tcp = 0;
        let due = self.kicked.swap(false, AcqRel) || {
            let mut last = self.last_fd_check.lock();
            let due = last.elapsed_us() >= FD_CHECK_US;
            if due {
                *last = Stamp::now();
            }
            due
        };
        if due {
            tcp = self.poll_fds(0)?;
            self.retire_closed();
        }
        self.route_async_faults();
        // A retry pending keeps the poller busy (it does not sleep on it).
        Ok(!o.idle || o.delivered > 0 || tcp > 0 || self.uncork_again.load(Acquire))
    }

    /// QP faults from device async events reach their connections (error
    /// and a wake-up); QP number 0 means every connection.
    fn route_async_faults(&self) {
        let mut faults = Vec::new();
        self.disp.take_async_faults(&mut faults);
        for (qpn, e) in faults {
            match qpn {
                0 => self.fault_all(&e),
                n => {
                    if let Some(c) = self.conn(n) {
                        c.fault(e);
                    }
                }
            }
        }
    }

    /// Handles ready fds (TCP sockets of connections, channel events, the
    /// wake fd). Returns how many connection sockets were serviced.
    fn poll_fds(&self, timeout_ms: i32) -> Result<usize> {
        Ok(self.poll_fds_counted(timeout_ms)?.1)
    }

    /// As [`poll_fds`](Self::poll_fds), also returning how many fds were ready:
    /// (ready fds, connection sockets serviced).
    fn poll_fds_counted(&self, timeout_ms: i32) -> Result<(usize, usize)> {
        // SAFETY: zeroed epoll_event is valid.
        let mut evs: [libc::epoll_event; 64] = unsafe { std::mem::zeroed() };
        let n = self.ep.wait(&mut evs, timeout_ms)?;
        let mut serviced = 0;
        for ev in &evs[..n] {
            let (token, events) = (ev.u64, ev.events);
            match token {
                TOKEN_WAKE => self.wake.drain(),
                TOKEN_TX_CQ | TOKEN_RX_CQ => self.disp.consume_channel_events(),
                TOKEN_ASYNC => self.disp.handle_async_events(),
                TOKEN_TIMER => {
                    self.timer.drain();
                    *self.timer_at.lock() = None;
                }
                qpn => {
                    if let Some(c) = self.conn(qpn as u32) {
                        serviced += 1;
                        c.on_tcp_event(events);
                        let want = c.tcp_interest();
                        if want == 0 {
                            self.ep.delete(c.tcp_fd());
                        } else {
                            let _ = self.ep.modify(c.tcp_fd(), want, qpn);
                        }
                    }
                }
            }
        }
        Ok((n, serviced))
    }

    /// Retires closing connections whose sends were all acknowledged,
    /// fails handshakes past their deadline, decides pending EOFs, then arms
    /// the timer for the earliest deadline left.
    fn retire_closed(&self) {
        let (due, eof, late): (Vec<Arc<Conn>>, Vec<Arc<Conn>>, Vec<Arc<Conn>>) = {
            let conns = self.conns.lock();
            // read the clock only when a handshake has a deadline: on a guest whose clocksource
            // is HPET every read is a system call and an emulated device access
            let mut now = None;
            (
                conns.values().filter(|c| c.is_closing() && c.close_due()).cloned().collect(),
                conns.values().filter(|c| c.eof_pending()).cloned().collect(),
                conns
                    .values()
                    .filter(|c| c.handshake_deadline().is_some_and(|d| d <= *now.get_or_insert_with(Instant::now)))
                    .cloned()
                    .collect(),
            )
        };
        for c in late {
            c.expire_handshake();
        }
        for c in eof {
            c.check_eof();
        }
        for c in due {
            self.conns.lock().remove(&c.qp_num());
            c.finish();
        }
        self.arm_timer();
    }

    /// Arms the timer for the earliest pending connection deadline (or
    /// disarms it); a syscall only when that deadline changed.
    fn arm_timer(&self) {
        let next = self.conns.lock().values().filter_map(|c| c.next_deadline()).min();
        let mut at = self.timer_at.lock();
        if *at == next {
            return;
        }
        // 1 ms late rather than early: the checks compare with `>=`.
        let delay = next.map(|d| d.saturating_duration_since(Instant::now()) + Duration::from_millis(1));
        match self.timer.set(delay) {
            Ok(()) => *at = next,
            Err(e) => log::error!("arming the stack's deadline timer: {e}"),
        }
    }

    /// The polling thread: busy-poll for `ms_async_rdma_polling_us` after
    /// the last activity, then arm the CQs and sleep in epoll.
    fn run(self: Arc<Self>) {
        let counters = self.disp.env().counters.clone();
        let mut last_work = Stamp::now();
        // The last sleep ended by its timeout with nothing to do: no busy-poll window after it
        // (a 1 ms window every SLEEP_MS would be 1 % of a core for an idle stack).
        let mut idle_wake = false;
        counters.polling.store(1, Relaxed);
        loop {
            let stopping = self.stop.load(Acquire);
            match self.iterate_guarded() {
                Ok(true) => {
                    last_work = Stamp::now();
                    idle_wake = false;
                    continue;
                }
                Ok(false) => {}
                Err(e) => {
                    log::error!("polling thread: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            if stopping {
                break;
            }
            if !idle_wake && last_work.elapsed_us() < self.polling_us {
                // Busy-polling, but never at the expense of another runnable
                // thread: the application thread this poller just woke (or
                // the peer process) would otherwise wait for a scheduler tick
                // (ms) on a host with few cores.
                std::thread::yield_now();
                continue;
            }
            match self.disp.arm() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => log::error!("arming the completion queues: {e}"),
            }
            counters.polling.store(0, Relaxed);
            let pending = self.disp.dying_count() > 0 || counters.rx_post_backlog.load(Relaxed) > 0;
            match self.poll_fds_counted(if pending { SLEEP_MS } else { IDLE_SLEEP_MS }) {
                Ok((events, _)) => idle_wake = events == 0,
                Err(e) => log::error!("polling thread: {e}"),
            }
            counters.polling.store(1, Relaxed);
            last_work = Stamp::now();
        }
        counters.polling.store(0, Relaxed);
    }
}
