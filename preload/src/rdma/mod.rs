//! Transparent mode (`IBSTACK_PRELOAD=rdma`): the TCP sockets of Ceph's
//! async+posix messenger on the configured ports become ibstack RDMA
//! connections that speak Ceph's async+rdma wire format, under the
//! application's own fd numbers, so an unmodified daemon runs over RDMA.
//!
//! * `ports.rs` — `ibstack_preload_ports`;
//! * `classify.rs` — what an accepted connection speaks, from its first bytes;
//! * `table.rs` — the fds taken over and their epoll registrations;
//! * `sockets.rs` — the interposed libc functions.
//!
//! Configuration comes from the process's own ceph.conf section (the same
//! rules as the guard and ibstack-doctor). Nothing happens until the first
//! connect to, or listen on, a converted port; the RDMA stack opens at the
//! first converted connection (after a daemon's fork to the background).

pub mod classify;
pub mod ports;
pub mod sockets;
pub mod table;

use ibstack::config::Config;
use ibstack::stack::Stack;
use parking_lot::Mutex;
use ports::PortSet;
use std::sync::OnceLock;

/// What transparent mode runs with, read once.
pub struct Settings {
    pub cfg: Config,
    pub ports: PortSet,
    /// Where the configuration came from (for messages).
    pub source: String,
    /// Why the configuration could not be used, if so (nothing is converted).
    pub problem: Option<String>,
}

/// The settings. Read at the first connect or listen of a TCP socket; a
/// problem with them is printed at the first socket they would convert
/// (a program that never touches a Ceph port sees nothing).
pub fn settings() -> &'static Settings {
    static S: OnceLock<Settings> = OnceLock::new();
    S.get_or_init(|| {
        // records (one info line per converted connection) go to IBSTACK_LOG's stderr filter
        ibstack::ffi::log::ensure_installed();
        load().unwrap_or_else(|(source, e)| Settings {
            cfg: Config::default(),
            ports: PortSet::parse(&Config::default().preload_ports).expect("the default port list parses"),
            source,
            problem: Some(e),
        })
    })
}

/// Whether a socket on `port` is converted; the first one also reports the
/// configuration (or why there is none).
pub fn converts(port: u16) -> bool {
    let s = settings();
    if !s.ports.contains(port) {
        return false;
    }
    match &s.problem {
        Some(p) => {
            crate::report::rdma(&format!("transparent mode is off, sockets stay TCP: {p}"), true);
            false
        }
        None => {
            crate::report::rdma(&format!("converting TCP ports {} ({})", s.cfg.preload_ports, s.source), false);
            true
        }
    }
}

fn load() -> Result<Settings, (String, String)> {
    let t = ibstack::doctor::target_for_process(&crate::startup::cmdline(), |k| std::env::var(k).ok());
    let mut cfg = Config::default();
    let source = format!("{} section [{}]", t.conf.display(), t.section);
    let fail = |e: String| (source.clone(), e);
    if t.conf.exists() || t.conf_named {
        cfg.load_file(&t.conf, &t.section).map_err(|e| fail(format!("{source}: {e}")))?;
    }
    for (k, v) in &t.overrides {
        let k = ibstack::config::normalize_key(k);
        if k.starts_with("ms_async_rdma_") || k.starts_with("ibstack_") {
            cfg.set(&k, v).map_err(|e| fail(format!("command line --{k}: {e}")))?;
        }
    }
    let ports = PortSet::parse(&cfg.preload_ports).map_err(fail)?;
    Ok(Settings { cfg, ports, source, problem: None })
}

/// The process's RDMA stack, opened at the first converted connection; a
/// forked child opens its own (the parent's belongs to the parent).
pub fn stack() -> Result<std::sync::Arc<Stack>, String> {
    static STACK: Mutex<Option<(u32, std::sync::Arc<Stack>)>> = Mutex::new(None);
    let pid = std::process::id();
    let mut g = STACK.lock();
    if let Some((p, s)) = g.as_ref() {
        if *p == pid {
            return Ok(s.clone());
        }
        // the parent's stack: never used nor freed here
        std::mem::forget(g.take());
    }
    let s = settings();
    let st = Stack::new(&s.cfg).map_err(|e| format!("opening the RDMA stack ({}): {e}", s.source))?;
    let st = std::sync::Arc::new(st);
    *g = Some((pid, st.clone()));
    Ok(st)
}
