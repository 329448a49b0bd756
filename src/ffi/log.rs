//! Logging. The library logs through the `log` facade; one forwarding logger
//! is installed lazily (and only if the process has no logger yet). Each
//! record goes to the host's callback when one is set with
//! `ibstack_set_log_callback`, otherwise to stderr when `IBSTACK_LOG` holds an
//! env_logger filter (e.g. `debug`, `ibstack::qp=trace`; colours follow
//! `IBSTACK_LOG_STYLE` = auto|always|never), otherwise nowhere.
//! `env_logger::init()` is never called: it would clash with a host logger.

use log::{Level, LevelFilter, Log, Metadata, Record};
use once_cell::sync::{Lazy, OnceCell};
use parking_lot::RwLock;
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
        if let Some(s) = *SINK.read() {
            return md.level() <= s.max;
        }
        STDERR.as_ref().is_some_and(|l| l.enabled(md))
    }

    fn log(&self, record: &Record) {
        let sink = *SINK.read();
        if let Some(s) = sink {
            if record.level() > s.max {
                return;
            }
            let mut target = record.target().as_bytes().to_vec();
            let tlen = target.len();
            target.push(0);
            let mut msg = record.args().to_string().into_bytes();
            let mlen = msg.len();
            msg.push(0);
            // SAFETY: the host promised a callback callable from any thread with
            // its own user_data; both strings outlive the call.
            unsafe {
                (s.cb)(
                    s.user_data as *mut c_void,
                    level_to_c(record.level()),
                    target.as_ptr().cast(),
                    tlen,
                    msg.as_ptr().cast(),
                    mlen,
                )
            };
        } else if let Some(l) = STDERR.as_ref() {
            l.log(record);
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
    let ours = *INSTALLED.get_or_init(|| log::set_logger(&FORWARDER).is_ok());
    if ours {
        recompute_max_level();
    }
}

/// Route records to `cb` (NULL restores the default sink).
pub fn set_callback(cb: LogCallback, user_data: *mut c_void, max_level: c_int) {
    ensure_installed();
    *SINK.write() = cb.map(|cb| Sink { cb, user_data: user_data as usize, max: filter_from_c(max_level) });
    recompute_max_level();
}

/// Whether the library's own logger is the process logger.
pub fn is_installed() -> bool {
    *INSTALLED.get().unwrap_or(&false)
}
