//! Ceph's RDMA perf counters (§5.2 of the reference), kept as atomics.
//!
//! One [`Counters`] is shared (`Arc`) by everything that updates it; readers
//! take a [`CountersSnapshot`], which is plain data, exported to C as
//! `ibstack_counters` and dumped as JSON in the layout of `ceph daemon … perf
//! dump` (logger name → key → value), so existing dashboards keep working.
//!
//! The keys and their order come from one list in the `counters!` invocation
//! below; the struct field order is part of the C ABI and must not change
//! (append only).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Declares [`Counters`], [`CountersSnapshot`] and the JSON dump from a single
/// list of `"logger name" { /// doc  key, … }` sections.
macro_rules! counters {
    ($( $section:literal { $( $(#[doc = $doc:literal])* $name:ident, )* } )*) => {
        /// Live perf counters; update through [`Counters::add`], [`Counters::sub`]
        /// and [`Counters::set`].
        #[derive(Default)]
        pub struct Counters {
            $($( $(#[doc = $doc])* pub $name: AtomicU64, )*)*
        }

        /// A point-in-time copy of [`Counters`] (C name `ibstack_counters`).
        /// Field order is frozen: it is the C layout.
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct CountersSnapshot {
            $($( $(#[doc = $doc])* pub $name: u64, )*)*
        }

        impl Counters {
            /// Reads every counter (each one atomically, not all together).
            pub fn snapshot(&self) -> CountersSnapshot {
                CountersSnapshot { $($( $name: self.$name.load(Relaxed), )*)* }
            }
        }

        impl CountersSnapshot {
            /// `{"<logger>":{"<key>":n,…},…}`, compact, keys in field order.
            pub fn to_json(&self) -> String {
                let mut out = String::with_capacity(1024);
                out.push('{');
                $(
                    if !out.ends_with('{') {
                        out.push(',');
                    }
                    out.push_str(concat!("\"", $section, "\":{"));
                    $(
                        if !out.ends_with('{') {
                            out.push(',');
                        }
                        out.push_str(concat!("\"", stringify!($name), "\":"));
                        out.push_str(&self.$name.to_string());
                    )*
                    out.push('}');
                )*
                out.push('}');
                out
            }
        }
    };
}

counters! {
    "AsyncMessenger::RDMADispatcher" {
        /// Gauge: 1 while the dispatcher busy-polls, 0 while it sleeps in poll().
        polling,
        /// Gauge: TX chunks handed out and not yet completed.
        inflight_tx_chunks,
        /// Gauge: RX buffers held by sockets (+n per RX batch, −1 per returned chunk).
        rx_bufs_in_use,
        /// Gauge: RX pool size in buffers.
        rx_bufs_total,
        /// TX completions polled.
        tx_total_wc,
        /// TX completions with an error status (Ceph registers but never moves it).
        tx_total_wc_errors,
        /// TX completions with `IBV_WC_RETRY_EXC_ERR`.
        tx_retry_errors,
        /// TX completions with `IBV_WC_WR_FLUSH_ERR` (normal during teardown).
        tx_wr_flush_errors,
        /// RX completions polled.
        rx_total_wc,
        /// RX completions with a non-success status (flushes included).
        rx_total_wc_errors,
        /// Zero-length receives: the peer closed the connection.
        rx_fin,
        /// cm_meta handshake send/receive failures.
        handshake_errors,
        /// Device async events read.
        total_async_events,
        /// `IBV_EVENT_QP_LAST_WQE_REACHED` async events.
        async_last_wqe_events,
        /// Queue pairs created.
        created_queue_pair,
        /// Gauge: queue pairs created and not yet destroyed.
        active_queue_pair,
    }
    "AsyncMessenger::RDMAWorker" {
        /// Copy attempts that obtained no TX chunk.
        tx_no_mem,
        /// Submits that could post only part of the pending data (sic, Ceph's key).
        tx_parital_mem,
        /// Failed `ibv_post_send` for data or fin.
        tx_failed_post,
        /// Send work requests posted.
        tx_chunks,
        /// Bytes posted for sending.
        tx_bytes,
        /// Receive completions consumed by sockets.
        rx_chunks,
        /// Bytes copied out of receive buffers to the caller.
        rx_bytes,
        /// Gauge: sockets waiting for TX chunks.
        pending_sent_conns,
    }
    "ibstack" {
        /// Beacons posted when moving a queue pair to the error state.
        beacons_posted,
        /// Beacons not posted because the queue pair never reached RTS (retired without one).
        beacons_skipped,
        /// Queue pairs destroyed successfully.
        qp_destroyed,
        /// `ibv_destroy_qp` failures.
        qp_destroy_errors,
        /// Queue pairs moved to the fault path (error completion, fatal event, failed post).
        qp_faults,
        /// Failed `ibv_post_recv` / `ibv_post_srq_recv` calls.
        rx_post_errors,
        /// Gauge: receive buffers that could not be posted and are owed to the receive queue.
        rx_post_backlog,
        /// `IBV_EVENT_QP_FATAL` (and other per-QP error) async events.
        async_qp_fatal,
        /// `IBV_EVENT_CQ_ERR` async events.
        async_cq_err,
        /// `IBV_EVENT_DEVICE_FATAL` async events.
        async_device_fatal,
    }
}

const _: () = assert!(std::mem::size_of::<CountersSnapshot>() == 34 * 8);

impl Counters {
    /// All counters at zero.
    pub fn new() -> Counters {
        Counters::default()
    }

    /// `c += n` (wrapping is not a concern for u64 event counts).
    #[inline]
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    /// `c -= n`, saturating at 0 so an unbalanced gauge never wraps to 2^64.
    #[inline]
    pub fn sub(c: &AtomicU64, n: u64) {
        // The closure always returns Some, so this cannot fail.
        let _ = c.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(n)));
    }

    /// `c = v` (gauges).
    #[inline]
    pub fn set(c: &AtomicU64, v: u64) {
        c.store(v, Relaxed);
    }
}

impl fmt::Debug for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.snapshot().fmt(f)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Minimal JSON well-formedness check (objects, arrays, strings, unsigned
    /// numbers): panics with the offset of the first error.
    pub(crate) fn assert_well_formed(s: &str) {
        fn value(b: &[u8], i: &mut usize) {
            match b.get(*i) {
                Some(b'{') => seq(b, i, b'}', true),
                Some(b'[') => seq(b, i, b']', false),
                Some(b'"') => string(b, i),
                Some(c) if c.is_ascii_digit() => {
                    while b.get(*i).is_some_and(u8::is_ascii_digit) {
                        *i += 1;
                    }
                }
                _ => panic!("bad value at {i}"),
            }
        }
        fn string(b: &[u8], i: &mut usize) {
            *i += 1;
            loop {
                match b.get(*i) {
                    Some(b'"') => break,
                    Some(b'\\') => *i += 2,
                    Some(c) if *c >= 0x20 => *i += 1,
                    _ => panic!("bad string char at {i}"),
                }
            }
            *i += 1;
        }
        fn seq(b: &[u8], i: &mut usize, close: u8, object: bool) {
            *i += 1;
            if b.get(*i) == Some(&close) {
                *i += 1;
                return;
            }
            loop {
                if object {
                    assert_eq!(b.get(*i), Some(&b'"'), "key expected at {i}");
                    string(b, i);
                    assert_eq!(b.get(*i), Some(&b':'), "':' expected at {i}");
                    *i += 1;
                }
                value(b, i);
                match b.get(*i) {
                    Some(b',') => *i += 1,
                    Some(c) if *c == close => break,
                    _ => panic!("',' or close expected at {i}"),
                }
            }
            *i += 1;
        }
        let mut i = 0;
        value(s.as_bytes(), &mut i);
        assert_eq!(i, s.len(), "trailing data in {s}");
    }

    #[test]
    fn sub_saturates_at_zero() {
        let c = Counters::new();
        Counters::add(&c.rx_post_backlog, 3);
        Counters::sub(&c.rx_post_backlog, 2);
        assert_eq!(c.snapshot().rx_post_backlog, 1);
        Counters::sub(&c.rx_post_backlog, 5);
        assert_eq!(c.snapshot().rx_post_backlog, 0);
        Counters::sub(&c.rx_post_backlog, 1);
        assert_eq!(c.snapshot().rx_post_backlog, 0);
    }

    #[test]
    fn snapshot_reflects_updates() {
        let c = std::sync::Arc::new(Counters::new());
        assert_eq!(c.snapshot(), CountersSnapshot::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        Counters::add(&c.tx_chunks, 1);
                        Counters::add(&c.tx_bytes, 4096);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        Counters::set(&c.polling, 1);
        Counters::add(&c.async_device_fatal, 2);
        let s = c.snapshot();
        assert_eq!((s.tx_chunks, s.tx_bytes), (4000, 4000 * 4096));
        assert_eq!((s.polling, s.async_device_fatal), (1, 2));
        assert_eq!(s.rx_bytes, 0);
    }

    #[test]
    fn json_layout() {
        let c = Counters::new();
        Counters::set(&c.polling, 1);
        Counters::add(&c.tx_parital_mem, 7);
        Counters::add(&c.async_device_fatal, 12345);
        let j = c.snapshot().to_json();
        assert_well_formed(&j);
        assert!(j.starts_with(
            "{\"AsyncMessenger::RDMADispatcher\":{\"polling\":1,\"inflight_tx_chunks\":0,"
        ));
        assert!(j.contains(
            "\"active_queue_pair\":0},\"AsyncMessenger::RDMAWorker\":{\"tx_no_mem\":0,\"tx_parital_mem\":7,"
        ));
        assert!(j.contains("\"pending_sent_conns\":0},\"ibstack\":{\"beacons_posted\":0,"));
        assert!(j.ends_with("\"async_cq_err\":0,\"async_device_fatal\":12345}}"));
        // Every key once: 34 distinct keys plus the three section names.
        let keys: Vec<&str> = j.split('"').skip(1).step_by(2).collect();
        let distinct: std::collections::HashSet<&str> = keys.iter().copied().collect();
        assert_eq!((keys.len(), distinct.len()), (34 + 3, 34 + 3));
    }
}
