//! Ceph's RDMA perf counters (§5.2 of the reference), kept as atomics.
//!
//! One [`Counters`] is shared (`Arc`) by everything that updates it; readers
//! take a [`CountersSnapshot`], which is plain data, exported to C as
//! `ibstack_counters` and dumped as JSON in the layout of `ceph daemon … perf
//! dump` (logger name → key → value), so existing dashboards keep working.
//!
//! The keys and their order are the fields of [`CountersSnapshot`] (the C
//! ABI: append only); the `counters!` invocation repeats the names grouped by
//! logger, and the compiler rejects any difference between the two.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Declares [`Counters`], the snapshot and the JSON dump from a list of
/// `"logger name" { key, … }` sections.
macro_rules! counters {
    ($( $section:literal { $( $name:ident, )* } )*) => {
        /// Live perf counters; update through [`Counters::add`], [`Counters::sub`]
        /// and [`Counters::set`].
        #[derive(Default)]
        /// (One field per [`CountersSnapshot`] field; see there for meanings.)
        pub struct Counters {
            $($( pub $name: AtomicU64, )*)*
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

/// A point-in-time copy of [`Counters`] (C name `ibstack_counters`), with
/// Ceph's perf keys as field names. Field order is frozen: it is the C
/// layout (append only). Written out here, not by the macro, so cbindgen sees
/// it; `Counters::snapshot` fails to compile if the two lists differ.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    // ---- logger "AsyncMessenger::RDMADispatcher"
    /// Gauge: 1 while the dispatcher busy-polls, 0 while it sleeps in poll().
    pub polling: u64,
    /// Gauge: TX chunks handed out and not yet completed.
    pub inflight_tx_chunks: u64,
    /// Gauge: RX buffers held by sockets (+n per RX batch, −1 per returned chunk).
    pub rx_bufs_in_use: u64,
    /// Gauge: RX pool size in buffers.
    pub rx_bufs_total: u64,
    /// TX completions polled.
    pub tx_total_wc: u64,
    /// TX completions with an error status (Ceph registers but never moves it).
    pub tx_total_wc_errors: u64,
    /// TX completions with `IBV_WC_RETRY_EXC_ERR`.
    pub tx_retry_errors: u64,
    /// TX completions with `IBV_WC_WR_FLUSH_ERR` (normal during teardown).
    pub tx_wr_flush_errors: u64,
    /// RX completions polled.
    pub rx_total_wc: u64,
    /// RX completions with a non-success status (flushes included).
    pub rx_total_wc_errors: u64,
    /// Zero-length receives: the peer closed the connection.
    pub rx_fin: u64,
    /// cm_meta handshake send/receive failures.
    pub handshake_errors: u64,
    /// Device async events read.
    pub total_async_events: u64,
    /// `IBV_EVENT_QP_LAST_WQE_REACHED` async events.
    pub async_last_wqe_events: u64,
    /// Queue pairs created.
    pub created_queue_pair: u64,
    /// Gauge: queue pairs created and not yet destroyed.
    pub active_queue_pair: u64,
    // ---- logger "AsyncMessenger::RDMAWorker"
    /// Copy attempts that obtained no TX chunk.
    pub tx_no_mem: u64,
    /// Submits that could post only part of the pending data (sic, Ceph's key).
    pub tx_parital_mem: u64,
    /// Failed `ibv_post_send` for data or fin.
    pub tx_failed_post: u64,
    /// Send work requests posted.
    pub tx_chunks: u64,
    /// Bytes posted for sending.
    pub tx_bytes: u64,
    /// Successful receive completions handed to the host or a connection.
    pub rx_chunks: u64,
    /// Bytes in those receive completions.
    pub rx_bytes: u64,
    /// Gauge: sockets waiting for TX chunks.
    pub pending_sent_conns: u64,
    // ---- logger "ibstack"
    /// Beacons posted when moving a queue pair to the error state.
    pub beacons_posted: u64,
    /// Beacons not posted because the queue pair never reached RTS (retired without one).
    pub beacons_skipped: u64,
    /// Queue pairs destroyed successfully.
    pub qp_destroyed: u64,
    /// `ibv_destroy_qp` failures.
    pub qp_destroy_errors: u64,
    /// Queue pairs moved to the fault path (error completion, fatal event, failed post).
    pub qp_faults: u64,
    /// Failed `ibv_post_recv` / `ibv_post_srq_recv` calls.
    pub rx_post_errors: u64,
    /// Gauge: receive buffers that could not be posted and are owed to the receive queue.
    pub rx_post_backlog: u64,
    /// `IBV_EVENT_QP_FATAL` (and other per-QP error) async events.
    pub async_qp_fatal: u64,
    /// `IBV_EVENT_CQ_ERR` async events.
    pub async_cq_err: u64,
    /// `IBV_EVENT_DEVICE_FATAL` async events.
    pub async_device_fatal: u64,
}

counters! {
    "AsyncMessenger::RDMADispatcher" { polling, inflight_tx_chunks, rx_bufs_in_use, rx_bufs_total, tx_total_wc, tx_total_wc_errors, tx_retry_errors, tx_wr_flush_errors, rx_total_wc, rx_total_wc_errors, rx_fin, handshake_errors, total_async_events, async_last_wqe_events, created_queue_pair, active_queue_pair, }
    "AsyncMessenger::RDMAWorker" { tx_no_mem, tx_parital_mem, tx_failed_post, tx_chunks, tx_bytes, rx_chunks, rx_bytes, pending_sent_conns, }
    "ibstack" { beacons_posted, beacons_skipped, qp_destroyed, qp_destroy_errors, qp_faults, rx_post_errors, rx_post_backlog, async_qp_fatal, async_cq_err, async_device_fatal, }
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
