//! The registration seam. Pools pin memory through a `Registrar`: the real
//! one registers with the device's PD; `HostRegistrar` hands out fake keys so
//! the pools can be exercised by host tests and benchmarks without a device.

use crate::error::{Error, Result};
use crate::prereq::{check_pin, Memlock, MEMLOCK_FIXES};
use crate::text::human_bytes;
use crate::verbs::{Mr, Pd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::*};
use std::sync::Arc;

/// A live registration; dropping it deregisters.
pub trait Registration: Send + Sync {
    fn lkey(&self) -> u32;
}

pub trait Registrar: Send + Sync {
    /// Pin and register `len` bytes at `addr`.
    ///
    /// # Safety
    /// The range must stay mapped while the registration lives.
    unsafe fn register(&self, addr: *mut u8, len: usize) -> Result<Box<dyn Registration>>;
    /// The memlock situation registrations are charged against.
    fn memlock(&self) -> Memlock;
}

/// Check `len` against the memlock limit, then register; a failure names the
/// limit, the bytes and the fixes. `what` says which pool asks.
///
/// # Safety
/// As [`Registrar::register`].
pub(crate) unsafe fn register_checked(
    reg: &dyn Registrar,
    addr: *mut u8,
    len: usize,
    what: &str,
) -> Result<Box<dyn Registration>> {
    let lim = reg.memlock();
    check_pin(len as u64, what, &lim)?;
    // SAFETY: forwarded from the caller.
    unsafe { reg.register(addr, len) }.map_err(|e| {
        let hint = match e.errno {
            libc::ENOMEM | libc::EPERM | libc::EAGAIN => format!(
                "; RLIMIT_MEMLOCK is {}{}; {MEMLOCK_FIXES}",
                lim.soft.map(human_bytes).unwrap_or_else(|| "unlimited".into()),
                if lim.cap_ipc_lock { " (CAP_IPC_LOCK present)" } else { "" }
            ),
            _ => String::new(),
        };
        let dev = crate::prereq::device_nodes_hint().map(|h| format!("; {h}")).unwrap_or_default();
        Error::new(e.errno, format!("registering {what} ({}) failed: {}{hint}{dev}", human_bytes(len as u64), e.msg))
    })
}

/// Registers with a protection domain (what the public API always uses).
pub struct VerbsRegistrar {
    pd: Arc<Pd>,
}

impl VerbsRegistrar {
    pub fn new(pd: Arc<Pd>) -> Self {
        VerbsRegistrar { pd }
    }
}

struct VerbsRegistration(Mr);
impl Registration for VerbsRegistration {
    fn lkey(&self) -> u32 {
        self.0.lkey()
    }
}

impl Registrar for VerbsRegistrar {
    unsafe fn register(&self, addr: *mut u8, len: usize) -> Result<Box<dyn Registration>> {
        // SAFETY: forwarded from the caller.
        Ok(Box::new(VerbsRegistration(unsafe { Mr::register(self.pd.clone(), addr, len) }?)))
    }
    fn memlock(&self) -> Memlock {
        Memlock::read()
    }
}

/// Host-only registrar: fake keys, optional simulated memlock limit and
/// failure injection, and a count of live bytes.
pub struct HostRegistrar {
    next_key: AtomicU32,
    limit: Option<u64>,
    live: Arc<AtomicU64>,
    fail_next: AtomicBool,
}

impl HostRegistrar {
    /// `limit`: simulated RLIMIT_MEMLOCK in bytes (None = unlimited).
    pub fn new(limit: Option<u64>) -> Self {
        HostRegistrar { next_key: AtomicU32::new(0x100), limit, live: Arc::new(AtomicU64::new(0)), fail_next: AtomicBool::new(false) }
    }
    /// The next registration fails with ENOMEM, as ibv_reg_mr does at the limit.
    pub fn fail_next(&self) {
        self.fail_next.store(true, SeqCst);
    }
    /// Bytes currently registered.
    pub fn live_bytes(&self) -> u64 {
        self.live.load(SeqCst)
    }
}

struct HostRegistration {
    lkey: u32,
    len: u64,
    live: Arc<AtomicU64>,
}
impl Registration for HostRegistration {
    fn lkey(&self) -> u32 {
        self.lkey
    }
}
impl Drop for HostRegistration {
    fn drop(&mut self) {
        self.live.fetch_sub(self.len, SeqCst);
    }
}

impl Registrar for HostRegistrar {
    unsafe fn register(&self, _addr: *mut u8, len: usize) -> Result<Box<dyn Registration>> {
        if self.fail_next.swap(false, SeqCst) {
            return Err(Error::new(libc::ENOMEM, "ibv_reg_mr failed: ENOMEM: cannot allocate memory (injected)"));
        }
        self.live.fetch_add(len as u64, SeqCst);
        Ok(Box::new(HostRegistration { lkey: self.next_key.fetch_add(1, SeqCst), len: len as u64, live: self.live.clone() }))
    }
    fn memlock(&self) -> Memlock {
        Memlock { soft: self.limit, hard: self.limit, cap_ipc_lock: false, pinned: self.live_bytes() }
    }
}
