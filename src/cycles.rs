//! A cheap clock for busy-poll windows (Ceph's `Cycles`): the TSC on x86_64,
//! calibrated once against the system clock. `clock_gettime` is not always
//! cheap — on a guest whose clocksource is HPET (qemu TCG) every call is a
//! system call plus an emulated device read, several microseconds.

use once_cell::sync::Lazy;
use std::time::{Duration, Instant};

#[cfg(target_arch = "x86_64")]
fn raw() -> u64 {
    // SAFETY: rdtsc has no preconditions on x86_64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
fn raw() -> u64 {
    static START: Lazy<Instant> = Lazy::new(Instant::now);
    START.elapsed().as_nanos() as u64
}

/// Ticks per microsecond, measured once over 2 ms.
static PER_US: Lazy<u64> = Lazy::new(|| {
    let (t0, c0) = (Instant::now(), raw());
    std::thread::sleep(Duration::from_millis(2));
    let (us, ticks) = (t0.elapsed().as_micros() as u64, raw().wrapping_sub(c0));
    if us == 0 || ticks == 0 {
        1000
    } else {
        (ticks / us).max(1)
    }
});

/// A point in time, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(u64);

impl Stamp {
    pub fn now() -> Stamp {
        Stamp(raw())
    }
    /// Microseconds since this stamp.
    pub fn elapsed_us(self) -> u64 {
        raw().wrapping_sub(self.0) / *PER_US
    }
}

/// Calibrates now (otherwise the first `elapsed_us` sleeps 2 ms).
pub fn calibrate() {
    Lazy::force(&PER_US);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_tracks_the_system_clock() {
        calibrate();
        let (s, t) = (Stamp::now(), Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        let (a, b) = (s.elapsed_us(), t.elapsed().as_micros() as u64);
        assert!(a >= 15_000 && a <= b + 5_000, "cycles {a} us vs clock {b} us");
    }
}
