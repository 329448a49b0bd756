//! The doctor's checks, run once when the program first asks libibverbs
//! for its devices: against the ceph.conf section the process reads
//! (IBSTACK_CONF / CEPH_CONF / -c, IBSTACK_NAME / -n / -i), every problem
//! printed before Ceph gets to its own asserts.

use ibstack::doctor::{self, Scope, Status};
use std::sync::Once;

static ONCE: Once = Once::new();

/// The process's argv from /proc/self/cmdline.
pub fn cmdline() -> Vec<String> {
    let raw = std::fs::read("/proc/self/cmdline").unwrap_or_default();
    raw.split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

/// Run the checks (first caller only; others wait for it).
pub fn check_once() {
    ONCE.call_once(|| {
        crate::report::shielded(|| {
            let t = doctor::target_for_process(&cmdline(), |k| std::env::var(k).ok());
            if !t.conf_named && !t.conf.exists() {
                return; // not a Ceph process, or one without a configuration: nothing to check against
            }
            let report = doctor::run(&t, Scope { systemd: false });
            for c in report.checks.iter().filter(|c| c.status == Status::Problem) {
                crate::report::problem(&format!(
                    "{} [checked {} section {}; ibstack-doctor -c {} -n {} shows every check]",
                    c.line(),
                    t.conf.display(),
                    t.section,
                    t.conf.display(),
                    t.section
                ));
            }
        })
    });
}
