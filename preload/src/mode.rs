//! The guard's mode (`IBSTACK_PRELOAD`) and the per-thread re-entry flag.

use std::cell::Cell;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Pass every call through untouched.
    Off,
    /// Name the causes of failures; never change a result.
    Guard,
    /// Transparent mode: TCP sockets on the configured ports become ibstack
    /// RDMA connections (the guard's verbs checks are off: Ceph's own RDMA
    /// code is not expected to run).
    Rdma,
}

/// The mode a value of `IBSTACK_PRELOAD` selects, and a notice to print once
/// when the value is not plainly `guard`/`off`/unset.
pub fn parse(v: Option<&str>) -> (Mode, Option<String>) {
    match v.map(str::trim) {
        None | Some("") | Some("guard") => (Mode::Guard, None),
        Some("off") => (Mode::Off, None),
        Some("rdma") => (Mode::Rdma, None),
        Some(other) => (
            Mode::Guard,
            Some(format!("IBSTACK_PRELOAD={other:?} is not a mode (guard, off, rdma); running as guard")),
        ),
    }
}

static MODE: OnceLock<Mode> = OnceLock::new();

pub fn mode() -> Mode {
    *MODE.get_or_init(|| {
        let v = std::env::var("IBSTACK_PRELOAD").ok();
        let (m, notice) = parse(v.as_deref());
        if let Some(n) = notice {
            crate::report::note(&n);
        }
        m
    })
}

thread_local! {
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Whether the guard should look at this call: not off, and not one of the
/// guard's own verbs calls (the ibstack code inside calls libibverbs through
/// the same exported names).
pub fn active() -> bool {
    mode() == Mode::Guard && !INSIDE.try_with(|c| c.get()).unwrap_or(true)
}

/// Marks the calling thread as inside the guard until dropped.
pub struct Inside(bool);

pub fn enter() -> Inside {
    Inside(INSIDE.try_with(|c| c.replace(true)).unwrap_or(true))
}

impl Drop for Inside {
    fn drop(&mut self) {
        let prev = self.0;
        let _ = INSIDE.try_with(|c| c.set(prev));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse(None), (Mode::Guard, None));
        assert_eq!(parse(Some("guard")), (Mode::Guard, None));
        assert_eq!(parse(Some("off")), (Mode::Off, None));
        assert_eq!(parse(Some("rdma")), (Mode::Rdma, None));
        assert_eq!(parse(Some(" rdma ")), (Mode::Rdma, None));
        assert!(parse(Some("fast")).1.unwrap().contains("not a mode"));
    }

    #[test]
    fn inside_nests() {
        assert!(!INSIDE.with(|c| c.get()));
        {
            let _a = enter();
            {
                let _b = enter();
            }
            assert!(INSIDE.with(|c| c.get()));
        }
        assert!(!INSIDE.with(|c| c.get()));
    }
}
