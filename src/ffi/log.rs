//! Logging. The library logs through the `log` facade; one forwarding logger
//! is installed lazily (and only if the process has no logger yet). Each
//! record goes to the host's callback when one is set with
//! `ibstack_set_log_callback`, otherwise to stderr when `IBSTACK_LOG` holds an
//! env_logger filter (e.g. `debug`, `ibstack::qp=trace`; colours follow
//! `IBSTACK_LOG_STYLE` = auto|always|never), otherwise nowhere.
//! `env_logger::init()` is never called: it would clash with a host logger.
//!
//! The host's callback may call back into the library, so it never runs while
//! the library holds a lock or a borrow: records logged inside an exported
//! call or one iteration of the polling thread ([`defer`]) wait in a short
//! per-thread queue and reach the callback when that call or iteration ends.
//! A record logged while the callback runs on the same thread is dropped (no
//! recursion), the callback cannot replace itself from inside (-EDEADLK), and
//! replacing or detaching it waits for the invocations in progress.

use log::{Level, LevelFilter, Log, Metadata, Record};
use once_cell::sync::{Lazy, OnceCell};
use parking_lot::RwLock;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::raw::{c_char, c_int, c_void};

#[allow(non_camel_case_types)]
/// Log callback. `level`: 1 = error, 2 = warn, 3 = info, 4 = debug, 5 = trace.
/// `target` (the Rust module, e.g. "ibstack::ib") and `msg` are NUL-terminated
/// and also passed with their lengths; both are valid only during the call.
/// Called from whichever thread logs, including library threads.
pub type ibstack_log_callback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        level: c_int,
        target: *const c_char,
        target_len: usize,
        msg: *const c_char,
        msg_len: usize,
    ),
>;

type LogCallback = ibstack_log_callback;

#[derive(Clone, Copy)]
struct Sink {
    cb: unsafe extern "C" fn(*mut c_void, c_int, *const c_char, usize, *const c_char, usize),
    user_data: usize,
    max: LevelFilter,
}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
static STDERR: Lazy<Option<env_logger::Logger>> = Lazy::new(|| {
    let filter = std::env::var("IBSTACK_LOG").ok().filter(|s| !s.trim().is_empty())?;
    let mut b = env_logger::Builder::new();
    b.parse_filters(&filter).target(env_logger::Target::Stderr);
    if let Ok(style) = std::env::var("IBSTACK_LOG_STYLE") {
        b.parse_write_style(&style); // "always", "never" or "auto"
    }
    Some(b.build())
});
static INSTALLED: OnceCell<bool> = OnceCell::new();

/// Records a thread may hold back while it is inside the library; more are
/// dropped (counted, and reported with the next delivered record).
const DEFER_MAX: usize = 256;

struct Deferred {
    level: Level,
    target: String,
    msg: String,
}

thread_local! {
    /// Nesting depth of [`defer`] guards on this thread.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// Whether this thread is inside the host's callback.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
    static QUEUE: RefCell<VecDeque<Deferred>> = const { RefCell::new(VecDeque::new()) };
    static DROPPED: Cell<u64> = const { Cell::new(0) };
    /// Records are held back (or were dropped): the outermost guard has
    /// something to deliver. Saves two lookups per exported call otherwise.
    static HELD: Cell<bool> = const { Cell::new(false) };
}

/// Holds this thread's records for the callback until the outermost guard
/// drops; take it at every entry into the library (exported calls, polling
/// iterations), outside any lock.
pub struct DeferGuard(());

pub fn defer() -> DeferGuard {
    DEPTH.with(|d| d.set(d.get() + 1));
    DeferGuard(())
}

impl Drop for DeferGuard {
    fn drop(&mut self) {
        let outermost = DEPTH.with(|d| {
            let n = d.get().saturating_sub(1);
            d.set(n);
            n == 0
        });
        if outermost && HELD.with(|h| h.replace(false)) {
            flush();
        }
    }
}

/// Deliver this thread's held-back records (no lock or borrow is held here).
fn flush() {
    loop {
        let Some(rec) = QUEUE.with(|q| q.borrow_mut().pop_front()) else { break };
        deliver(rec.level, &rec.target, &rec.msg);
    }
    let dropped = DROPPED.with(|d| d.replace(0));
    if dropped > 0 {
        let msg = format!("{dropped} log records dropped: more than {DEFER_MAX} were logged in one call");
        deliver(Level::Warn, "ibstack::ffi::log", &msg);
    }
}

/// One invocation of the callback, holding the sink's read lock so that
/// `set_callback` waits for it. The thread's last error message survives it.
fn deliver(level: Level, target: &str, msg: &str) {
    let sink = SINK.read_recursive();
    let Some(s) = *sink else { return };
    if level > s.max {
        return;
    }
    let mut t = Vec::with_capacity(target.len() + 1);
    t.extend_from_slice(target.as_bytes());
    t.push(0);
    let mut m = Vec::with_capacity(msg.len() + 1);
    m.extend_from_slice(msg.as_bytes());
    m.push(0);
    let saved = crate::ffi::error::last_error_string();
    IN_CALLBACK.with(|c| c.set(true));
    // SAFETY: the host promised a callback callable from any thread with its
    // own user_data; both strings outlive the call.
    unsafe { (s.cb)(s.user_data as *mut c_void, level_to_c(level), t.as_ptr().cast(), target.len(), m.as_ptr().cast(), msg.len()) };
    IN_CALLBACK.with(|c| c.set(false));
    crate::ffi::error::restore_last_error(saved);
}

struct Forwarder;
static FORWARDER: Forwarder = Forwarder;

pub fn level_to_c(level: Level) -> c_int {
    match level {
        Level::Error => 1,
        Level::Warn => 2,
        Level::Info => 3,
        Level::Debug => 4,
        Level::Trace => 5,
    }
}

pub fn filter_from_c(level: c_int) -> LevelFilter {
    match level {
        i32::MIN..=0 => LevelFilter::Off,
        1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        4 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

impl Log for Forwarder {
    fn enabled(&self, md: &Metadata) -> bool {
        // read_recursive: the callback's own thread may hold the lock already
        if let Some(s) = *SINK.read_recursive() {
            return md.level() <= s.max;
        }
        STDERR.as_ref().is_some_and(|l| l.enabled(md))
    }

    fn log(&self, record: &Record) {
        let sink = *SINK.read_recursive();
        let Some(s) = sink else {
            if let Some(l) = STDERR.as_ref() {
                l.log(record);
            }
            return;
        };
        if record.level() > s.max || IN_CALLBACK.with(|c| c.get()) {
            return;
        }
        if DEPTH.with(|d| d.get()) == 0 {
            deliver(record.level(), record.target(), &record.args().to_string());
            return;
        }
        HELD.with(|h| h.set(true));
        let full = QUEUE.with(|q| {
            let mut q = q.borrow_mut();
            if q.len() >= DEFER_MAX {
                return true;
            }
            q.push_back(Deferred { level: record.level(), target: record.target().to_owned(), msg: record.args().to_string() });
            false
        });
        if full {
            DROPPED.with(|d| d.set(d.get() + 1));
        }
    }

    fn flush(&self) {
        if let Some(l) = STDERR.as_ref() {
            l.flush();
        }
    }
}

fn recompute_max_level() {
    // the callback replaces the stderr sink; with neither, logging is off
    let max = match *SINK.read() {
        Some(s) => s.max,
        None => STDERR.as_ref().map(|l| l.filter()).unwrap_or(LevelFilter::Off),
    };
    if is_installed() {
        log::set_max_level(max);
    }
}

/// Install the forwarding logger once. If the process already has a logger
/// (a Rust host), records go to that one and the callback is not used.
pub fn ensure_installed() {
    if INSTALLED.get().is_some() {
        return;
    }
    let ours = *INSTALLED.get_or_init(|| {
        crate::ffi::slab::watch_fork();
        log::set_logger(&FORWARDER).is_ok()
    });
    if ours {
        recompute_max_level();
    }
}

/// Route records to `cb` (NULL restores the default sink). Waits until no
/// thread is inside the previous callback; refused from inside a callback,
/// where that wait would never end.
pub fn set_callback(cb: LogCallback, user_data: *mut c_void, max_level: c_int) -> crate::Result<()> {
    if IN_CALLBACK.with(|c| c.get()) {
        return Err(crate::error::Error::new(
            libc::EDEADLK,
            "called from inside the log callback: it would wait for itself; set the callback from outside it",
        ));
    }
    ensure_installed();
    *SINK.write() = cb.map(|cb| Sink { cb, user_data: user_data as usize, max: filter_from_c(max_level) });
    recompute_max_level();
    Ok(())
}

/// Whether the library's own logger is the process logger.
pub fn is_installed() -> bool {
    *INSTALLED.get().unwrap_or(&false)
}
