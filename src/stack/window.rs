//! The polling thread's busy-poll window (`ms_async_rdma_polling_us`),
//! adapted as KVM's halt polling adapts its poll time. A window that ran out
//! with no work halves, down to [`MIN_WINDOW_US`]: its spinning only took a
//! core, on a host short of cores the application's. A sleep whose work came
//! within the option's time of the last work (the full window would have
//! caught it) doubles it back. Work that comes more often than the option
//! keeps the full window, so ping-pong latency is unchanged; a stream whose
//! completions are further apart (64 KiB messages on rxe: about 1.2 ms) no
//! longer spins a full window before every sleep.

/// The shortest window, in microseconds (never longer than the option).
pub const MIN_WINDOW_US: u64 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusyWindow {
    /// The window now, in microseconds.
    cur: u64,
    /// `ms_async_rdma_polling_us`: the longest window.
    max: u64,
}

impl BusyWindow {
    pub fn new(polling_us: u64) -> BusyWindow {
        BusyWindow { cur: polling_us, max: polling_us }
    }

    /// How long to keep busy-polling after the last work (µs).
    pub fn us(&self) -> u64 {
        self.cur
    }

    /// The window ran out with no work: the poller goes to sleep.
    pub fn ran_out(&mut self) {
        self.cur = (self.cur / 2).max(MIN_WINDOW_US.min(self.max));
    }

    /// A sleep ended with work, `since_work_us` after the last work.
    pub fn woke_for_work(&mut self, since_work_us: u64) {
        if since_work_us <= self.max {
            self.cur = self.cur.saturating_mul(2).min(self.max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasted_windows_halve_to_the_floor_and_caught_work_doubles_back() {
        let mut w = BusyWindow::new(1000);
        assert_eq!(w.us(), 1000);
        for want in [500, 250, 125, 62, 50, 50] {
            w.ran_out();
            assert_eq!(w.us(), want);
        }
        // work 1.2 ms after the last: a full window would not have caught it either
        w.woke_for_work(1200);
        assert_eq!(w.us(), 50);
        for want in [100, 200, 400, 800, 1000, 1000] {
            w.woke_for_work(300);
            assert_eq!(w.us(), want);
        }
    }

    #[test]
    fn never_longer_than_the_option() {
        let mut w = BusyWindow::new(30);
        w.ran_out();
        assert_eq!(w.us(), 30, "a floor above the option is the option");
        w.woke_for_work(10);
        assert_eq!(w.us(), 30);
        let mut z = BusyWindow::new(0);
        z.ran_out();
        z.woke_for_work(0);
        assert_eq!(z.us(), 0, "polling_us = 0: never busy-poll");
    }
}
