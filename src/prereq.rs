//! Process prerequisites (Ceph's `Infiniband::verify_prereq`) and the
//! memlock accounting every registration is checked against.

use crate::config::Config;
use crate::error::{Error, Result};
use once_cell::sync::OnceCell;

/// Bit of CAP_IPC_LOCK in the capability sets (linux/capability.h).
const CAP_IPC_LOCK: u32 = 14;

/// RLIMIT_MEMLOCK and the capability that bypasses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memlock {
    /// Soft limit in bytes; `None` = unlimited.
    pub soft: Option<u64>,
    pub hard: Option<u64>,
    /// CAP_IPC_LOCK in the effective set: pinning is not limited.
    pub cap_ipc_lock: bool,
    /// Bytes this process already has pinned (VmPin), as far as the kernel tells.
    pub pinned: u64,
}

impl Memlock {
    pub fn read() -> Memlock {
        let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: rl is a valid out-pointer.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) } == 0;
        let conv = |v: libc::rlim_t| if v == libc::RLIM_INFINITY { None } else { Some(v) };
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string())
        };
        let cap_ipc_lock = field("CapEff:")
            .and_then(|h| u64::from_str_radix(&h, 16).ok())
            .is_some_and(|caps| caps & (1u64 << CAP_IPC_LOCK) != 0);
        let pinned = field("VmPin:")
            .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0);
        Memlock {
            soft: if ok { conv(rl.rlim_cur) } else { None },
            hard: if ok { conv(rl.rlim_max) } else { None },
            cap_ipc_lock,
            pinned,
        }
    }

    /// Bytes that may still be pinned; `None` = no limit applies.
    pub fn available(&self) -> Option<u64> {
        if self.cap_ipc_lock {
            return None;
        }
        self.soft.map(|s| s.saturating_sub(self.pinned))
    }
}

use crate::text::human_bytes;

/// The operator's fixes for a memlock limit that is too low.
pub const MEMLOCK_FIXES: &str = "raise the limit: set LimitMEMLOCK=infinity in the daemon's systemd unit \
(systemctl edit ceph-osd@.service, then restart), or add '<user> - memlock unlimited' to \
/etc/security/limits.d/ceph.conf for non-systemd starts, or run 'ulimit -l unlimited' in the starting shell \
(containers: --ulimit memlock=-1:-1 or CAP_IPC_LOCK); or pin less by lowering ms_async_rdma_send_buffers, \
ms_async_rdma_receive_buffers or ms_async_rdma_buffer_size";

/// Check that `bytes` more can be pinned; `what` explains where the number
/// comes from. `-ENOMEM` with the limit, the need and the fixes otherwise.
pub fn check_pin(bytes: u64, what: &str, lim: &Memlock) -> Result<()> {
    match lim.available() {
        None => Ok(()),
        Some(avail) if bytes <= avail => Ok(()),
        Some(_) => Err(Error::new(
            libc::ENOMEM,
            format!(
                "memlock limit too low: {what} must pin {} but RLIMIT_MEMLOCK is {}{} and the process lacks \
                 CAP_IPC_LOCK; {MEMLOCK_FIXES}",
                human_bytes(bytes),
                human_bytes(lim.soft.unwrap_or(0)),
                if lim.pinned > 0 { format!(" with {} already pinned", human_bytes(lim.pinned)) } else { String::new() },
            ),
        )),
    }
}

/// Bytes the configured pools may pin: buffer_size × (send_buffers + receive_buffers).
/// `None` when receive_buffers is 0 (unlimited RX pool).
pub fn configured_pin_bytes(cfg: &Config) -> Option<u64> {
    if cfg.receive_buffers == 0 {
        return None;
    }
    Some(cfg.buffer_size.saturating_mul(cfg.send_buffers as u64 + cfg.receive_buffers as u64))
}

/// Whether the device nodes are visible; systemd's PrivateDevices=yes and
/// containers without --device hide them while sysfs still lists devices.
pub fn device_nodes_hint() -> Option<String> {
    let sys_has = std::fs::read_dir("/sys/class/infiniband").map(|mut d| d.next().is_some()).unwrap_or(false);
    let dev_has = std::path::Path::new("/dev/infiniband").exists();
    (sys_has && !dev_has).then(|| {
        "/sys/class/infiniband lists devices but /dev/infiniband is not visible: systemd PrivateDevices=yes \
         (ceph-mgr@/ceph-mds@ units) or a container without --device=/dev/infiniband hides it"
            .to_string()
    })
}

static FORK_INIT: OnceCell<std::result::Result<(), Error>> = OnceCell::new();

const HUGEPAGES_SAFE: &str = "RDMAV_HUGEPAGES_SAFE";

/// Ceph's `verify_prereq`, returning errors instead of aborting
/// (`ibstack_global_init`, which the host calls before it starts threads:
/// it may set `RDMAV_HUGEPAGES_SAFE`).
pub fn global_init(cfg: &Config) -> Result<()> {
    if cfg.enable_hugepage && std::env::var_os(HUGEPAGES_SAFE).is_none() && FORK_INIT.get().is_none() {
        // libibverbs reads it when fork support is initialised; set before ibv_fork_init.
        std::env::set_var(HUGEPAGES_SAFE, "1");
    }
    verify(cfg)
}

/// The prerequisites for a stack created while other threads may run: as
/// [`global_init`] but never touching the environment (setenv races every
/// getenv of the process). With huge pages and fork support not yet
/// initialised, the variable libibverbs needs is named in a warning instead.
pub fn stack_init(cfg: &Config) -> Result<()> {
    if cfg.enable_hugepage && std::env::var_os(HUGEPAGES_SAFE).is_none() && FORK_INIT.get().is_none() {
        log::warn!(
            "ms_async_rdma_enable_hugepage = true but {HUGEPAGES_SAFE} is not set and ibstack_global_init was not \
             called: libibverbs' fork support will not know the huge-page size of the pools; call \
             ibstack_global_init before starting threads, or export {HUGEPAGES_SAFE}=1"
        );
    }
    verify(cfg)
}

fn verify(cfg: &Config) -> Result<()> {
    FORK_INIT
        .get_or_init(|| {
            crate::verbs::fork_init().map_err(|e| {
                e.context("fork support could not be enabled (ibstack_global_init must run before any other verbs use in the process)")
            })
        })
        .clone()?;
    let lim = Memlock::read();
    match configured_pin_bytes(cfg) {
        Some(bytes) => check_pin(
            bytes,
            &format!(
                "the configured pools (ms_async_rdma_buffer_size {} x (ms_async_rdma_send_buffers {} + \
                 ms_async_rdma_receive_buffers {}))",
                cfg.buffer_size, cfg.send_buffers, cfg.receive_buffers
            ),
            &lim,
        )?,
        None => {
            if lim.available().is_some() {
                return Err(Error::new(
                    libc::ENOMEM,
                    format!(
                        "ms_async_rdma_receive_buffers = 0 lets the RX pool grow without bound, but RLIMIT_MEMLOCK is {} \
                         and the process lacks CAP_IPC_LOCK; set a receive_buffers limit or {MEMLOCK_FIXES}",
                        human_bytes(lim.soft.unwrap_or(0))
                    ),
                ));
            }
        }
    }
    if let Some(hint) = device_nodes_hint() {
        log::warn!("{hint}");
    }
    log::info!(
        "global init done: memlock soft {:?} hard {:?}, CAP_IPC_LOCK {}, hugepages {}",
        lim.soft,
        lim.hard,
        lim.cap_ipc_lock,
        cfg.enable_hugepage
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim(soft: Option<u64>, cap: bool, pinned: u64) -> Memlock {
        Memlock { soft, hard: soft, cap_ipc_lock: cap, pinned }
    }

    #[test]
    fn unlimited_or_capable_always_passes() {
        assert!(check_pin(u64::MAX, "x", &lim(None, false, 0)).is_ok());
        assert!(check_pin(u64::MAX, "x", &lim(Some(65536), true, 0)).is_ok());
    }

    #[test]
    fn too_low_names_limit_need_and_fixes() {
        let e = check_pin(128 << 20, "the TX pool", &lim(Some(8 << 20), false, 0)).unwrap_err();
        assert_eq!(e.errno, libc::ENOMEM);
        assert!(e.msg.contains("134217728 bytes (128.0 MiB)"), "{}", e.msg);
        assert!(e.msg.contains("8388608 bytes (8.0 MiB)"), "{}", e.msg);
        assert!(e.msg.contains("LimitMEMLOCK=infinity"));
        assert!(e.msg.contains("/etc/security/limits.d"));
        assert!(e.msg.contains("ulimit -l"));
    }

    #[test]
    fn already_pinned_bytes_count() {
        assert!(check_pin(4 << 20, "x", &lim(Some(8 << 20), false, 0)).is_ok());
        let e = check_pin(4 << 20, "x", &lim(Some(8 << 20), false, 6 << 20)).unwrap_err();
        assert!(e.msg.contains("already pinned"), "{}", e.msg);
    }

    #[test]
    fn a_stack_never_sets_the_environment() {
        // the only test that looks at this variable
        std::env::remove_var(HUGEPAGES_SAFE);
        let cfg = Config { enable_hugepage: true, receive_buffers: 0, ..Config::default() };
        let _ = stack_init(&cfg);
        assert!(std::env::var_os(HUGEPAGES_SAFE).is_none(), "stack_init called setenv");
    }

    #[test]
    fn configured_bytes_follow_ceph_formula() {
        let cfg = Config::default();
        assert_eq!(configured_pin_bytes(&cfg), Some(131072 * (1024 + 32768)));
        let mut c = cfg.clone();
        c.receive_buffers = 0;
        assert_eq!(configured_pin_bytes(&c), None);
    }

}
