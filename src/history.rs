//! Per-queue-pair event timelines, in the spirit of Ceph's OpTracker: each QP
//! keeps a timestamped list of what happened to it (created, INIT, records
//! exchanged, RTR, RTS, first send/receive, fin, error, destroy) so an operator
//! can see where a connection got stuck. Destroyed QPs are kept in a ring of
//! the last `ibstack_qp_history_len` timelines.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::text::json_string;

/// Most events kept per timeline.
const MAX_EVENTS: usize = 64;
/// When a timeline is full, the first `KEEP_FIRST` events stay; the rest is a
/// window over the most recent ones.
const KEEP_FIRST: usize = 16;
/// Longest detail string kept, in bytes.
const MAX_DETAIL: usize = 256;

/// Something that happened to a queue pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QpEvent {
    Created,
    Init,
    RecordSent,
    RecordReceived,
    Rtr,
    Rts,
    FirstSend,
    FirstRecv,
    Fin,
    ToDead,
    BeaconSeen,
    Destroyed,
    Error,
}

impl QpEvent {
    /// The name used in the JSON dump.
    pub fn name(self) -> &'static str {
        match self {
            QpEvent::Created => "created",
            QpEvent::Init => "init",
            QpEvent::RecordSent => "record_sent",
            QpEvent::RecordReceived => "record_received",
            QpEvent::Rtr => "rtr",
            QpEvent::Rts => "rts",
            QpEvent::FirstSend => "first_send",
            QpEvent::FirstRecv => "first_recv",
            QpEvent::Fin => "fin",
            QpEvent::ToDead => "to_dead",
            QpEvent::BeaconSeen => "beacon_seen",
            QpEvent::Destroyed => "destroyed",
            QpEvent::Error => "error",
        }
    }

    fn bit(self) -> u16 {
        1 << self as u16
    }
}

struct Entry {
    time_us: u64,
    since_created_us: u64,
    event: QpEvent,
    detail: String,
}

struct Timeline {
    qpn: u32,
    start: Instant,
    events: Vec<Entry>,
    dropped: u64,
    /// One bit per `QpEvent` ever recorded here (dropped ones included).
    seen: u16,
}

impl Timeline {
    fn new(qpn: u32) -> Timeline {
        Timeline {
            qpn,
            start: Instant::now(),
            events: Vec::new(),
            dropped: 0,
            seen: 0,
        }
    }

    fn push(&mut self, event: QpEvent, detail: &str) {
        if self.events.len() >= MAX_EVENTS {
            self.events.remove(KEEP_FIRST);
            self.dropped += 1;
        }
        let time_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        self.events.push(Entry {
            time_us,
            since_created_us: self.start.elapsed().as_micros() as u64,
            event,
            detail: truncate(detail, MAX_DETAIL).to_owned(),
        });
        self.seen |= event.bit();
    }

    fn to_json(&self, out: &mut String) {
        let state = self.events.last().map_or("none", |e| e.event.name());
        out.push_str(&format!(
            "{{\"qpn\":{},\"state\":\"{state}\",\"dropped\":{},\"events\":[",
            self.qpn, self.dropped
        ));
        for (i, e) in self.events.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&format!(
                "{{\"time_us\":{},\"since_created_us\":{},\"event\":\"{}\",\"detail\":",
                e.time_us,
                e.since_created_us,
                e.event.name()
            ));
            json_string(out, &e.detail);
            out.push('}');
        }
        out.push_str("]}");
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn json_list<'a>(out: &mut String, timelines: impl Iterator<Item = &'a Timeline>) {
    for (i, t) in timelines.enumerate() {
        if i > 0 {
            out.push(',');
        }
        t.to_json(out);
    }
}

#[derive(Default)]
struct Inner {
    live: HashMap<u32, Timeline>,
    /// Oldest first.
    destroyed: VecDeque<Timeline>,
}

impl Inner {
    fn retire(&mut self, qpn: u32, keep: usize) {
        if let Some(t) = self.live.remove(&qpn) {
            if keep > 0 {
                if self.destroyed.len() >= keep {
                    self.destroyed.pop_front();
                }
                self.destroyed.push_back(t);
            }
        }
    }
}

/// Timelines of the live queue pairs and of the last destroyed ones.
pub struct History {
    keep_destroyed: usize,
    inner: Mutex<Inner>,
}

impl History {
    /// Keeps the timelines of the last `keep_destroyed` destroyed QPs (0: none).
    pub fn new(keep_destroyed: usize) -> History {
        History {
            keep_destroyed,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Appends `ev` to `qpn`'s timeline. `Created` starts a timeline (and
    /// retires a live one with the same number: the device reused it); any
    /// other event for a QP number without a live timeline (a late completion
    /// of a destroyed QP) is ignored. `detail` is cut to 256 bytes.
    pub fn record(&self, qpn: u32, ev: QpEvent, detail: &str) {
        let mut g = self.inner.lock();
        if ev == QpEvent::Created {
            g.retire(qpn, self.keep_destroyed);
            g.live.insert(qpn, Timeline::new(qpn));
        }
        if let Some(t) = g.live.get_mut(&qpn) {
            t.push(ev, detail);
        }
    }

    /// Like [`History::record`], but does nothing if `qpn`'s live timeline has
    /// already seen `ev` (for first-send/first-receive on hot paths).
    pub fn record_once(&self, qpn: u32, ev: QpEvent, detail: &str) {
        let mut g = self.inner.lock();
        if let Some(t) = g.live.get_mut(&qpn) {
            if t.seen & ev.bit() == 0 {
                t.push(ev, detail);
            }
        }
    }

    /// Moves `qpn`'s timeline to the destroyed ring, dropping the oldest
    /// beyond the configured length. Unknown QP numbers are ignored.
    pub fn retire(&self, qpn: u32) {
        self.inner.lock().retire(qpn, self.keep_destroyed);
    }

    /// `{"live":[…by qpn…],"destroyed":[…oldest first…]}`.
    pub fn to_json(&self) -> String {
        let g = self.inner.lock();
        let mut live: Vec<&Timeline> = g.live.values().collect();
        live.sort_unstable_by_key(|t| t.qpn);
        let mut out = String::with_capacity(256 * (live.len() + g.destroyed.len()) + 32);
        out.push_str("{\"live\":[");
        json_list(&mut out, live.into_iter());
        out.push_str("],\"destroyed\":[");
        json_list(&mut out, g.destroyed.iter());
        out.push_str("]}");
        out
    }

    /// The live timeline of `qpn` (event, detail), oldest first.
    pub fn events(&self, qpn: u32) -> Option<Vec<(QpEvent, String)>> {
        let g = self.inner.lock();
        let t = g.live.get(&qpn)?;
        Some(
            t.events
                .iter()
                .map(|e| (e.event, e.detail.clone()))
                .collect(),
        )
    }

    /// Number of live timelines.
    pub fn live_count(&self) -> usize {
        self.inner.lock().live.len()
    }

    /// Number of destroyed timelines kept.
    pub fn destroyed_count(&self) -> usize {
        self.inner.lock().destroyed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::QpEvent::*;
    use super::*;
    use crate::counters::tests::assert_well_formed;
    use std::sync::Arc;

    fn kinds(h: &History, qpn: u32) -> Vec<QpEvent> {
        h.events(qpn).unwrap().into_iter().map(|e| e.0).collect()
    }

    #[test]
    fn keeps_order_and_json_shape() {
        let h = History::new(4);
        for (ev, d) in [
            (Created, "rc"),
            (Init, ""),
            (RecordSent, "lid 1"),
            (Rtr, ""),
            (Rts, ""),
        ] {
            h.record(7, ev, d);
        }
        h.record(3, Created, "");
        assert_eq!(kinds(&h, 7), [Created, Init, RecordSent, Rtr, Rts]);
        assert_eq!(h.events(7).unwrap()[2].1, "lid 1");
        assert_eq!((h.live_count(), h.destroyed_count()), (2, 0));
        let j = h.to_json();
        assert_well_formed(&j);
        assert!(j.starts_with("{\"live\":[{\"qpn\":3,\"state\":\"created\",\"dropped\":0,"));
        assert!(j.contains("{\"qpn\":7,\"state\":\"rts\",\"dropped\":0,\"events\":[{\"time_us\":"));
        assert!(j.contains(",\"event\":\"record_sent\",\"detail\":\"lid 1\"}"));
        assert!(j.ends_with("]}],\"destroyed\":[]}"));
        assert_eq!(History::new(0).to_json(), "{\"live\":[],\"destroyed\":[]}");
    }

    #[test]
    fn timestamps_are_sane() {
        let h = History::new(1);
        h.record(1, Created, "");
        std::thread::sleep(std::time::Duration::from_millis(2));
        h.record(1, Rts, "");
        let g = h.inner.lock();
        let e = &g.live[&1].events;
        assert!(e[0].time_us > 1_600_000_000_000_000);
        assert!(e[1].time_us >= e[0].time_us);
        assert!(e[1].since_created_us >= 2000 && e[0].since_created_us < e[1].since_created_us);
    }

    #[test]
    fn record_once_dedups() {
        let h = History::new(1);
        h.record(1, Created, "");
        for i in 0..5 {
            h.record_once(1, FirstSend, &i.to_string());
            h.record_once(1, FirstRecv, "");
        }
        h.record_once(1, Created, "ignored");
        assert_eq!(
            h.events(1).unwrap(),
            [
                (Created, "".into()),
                (FirstSend, "0".into()),
                (FirstRecv, "".into())
            ]
        );
        // A new incarnation of the QP number starts with a clean mask.
        h.record(1, Created, "");
        h.record_once(1, FirstSend, "again");
        assert_eq!(kinds(&h, 1), [Created, FirstSend]);
    }

    #[test]
    fn destroyed_ring_keeps_newest() {
        let h = History::new(2);
        for qpn in 1..=3 {
            h.record(qpn, Created, "");
            h.record(qpn, Destroyed, "");
            h.retire(qpn);
        }
        h.retire(99); // unknown: ignored
        assert_eq!((h.live_count(), h.destroyed_count()), (0, 2));
        assert!(h.events(2).is_none());
        let j = h.to_json();
        assert_well_formed(&j);
        let d = &j[j.find("\"destroyed\"").unwrap()..];
        assert!(!d.contains("\"qpn\":1,"));
        assert!(d.find("\"qpn\":2,").unwrap() < d.find("\"qpn\":3,").unwrap());
    }

    #[test]
    fn zero_keeps_none() {
        let h = History::new(0);
        h.record(5, Created, "");
        h.retire(5);
        assert_eq!((h.live_count(), h.destroyed_count()), (0, 0));
    }

    #[test]
    fn overflow_keeps_first_and_newest() {
        let h = History::new(1);
        for i in 0..100 {
            h.record(9, if i == 0 { Created } else { Error }, &i.to_string());
        }
        let ev = h.events(9).unwrap();
        assert_eq!(ev.len(), MAX_EVENTS);
        let ids: Vec<usize> = ev.iter().map(|e| e.1.parse().unwrap()).collect();
        let want: Vec<usize> = (0..KEEP_FIRST)
            .chain(100 - (MAX_EVENTS - KEEP_FIRST)..100)
            .collect();
        assert_eq!(ids, want);
        assert!(h
            .to_json()
            .contains("\"qpn\":9,\"state\":\"error\",\"dropped\":36,"));
    }

    #[test]
    fn details_are_escaped_and_truncated() {
        let h = History::new(1);
        for q in 1..=3 {
            h.record(q, Created, "");
        }
        h.record(1, Error, "say \"hi\"\nback\\slash\t\u{1}");
        let j = h.to_json();
        assert_well_formed(&j);
        assert!(
            j.contains(r#""detail":"say \"hi\"\nback\\slash\t\u0001""#),
            "{j}"
        );
        let long = "é".repeat(200); // 400 bytes, 2 per char
        h.record(2, Error, &long);
        h.record(3, Error, &format!("x{long}"));
        assert_eq!(h.events(2).unwrap()[1].1.len(), 256);
        assert_eq!(h.events(3).unwrap()[1].1.len(), 255);
    }

    #[test]
    fn events_of_unknown_qps_are_ignored() {
        let h = History::new(4);
        h.record(7, Rts, "late");
        h.record_once(7, FirstRecv, "");
        assert_eq!(h.live_count(), 0);
        h.record(7, Created, "");
        h.record(7, Destroyed, "");
        h.retire(7);
        h.record(7, BeaconSeen, "after destroy");
        assert_eq!((h.live_count(), h.destroyed_count()), (0, 1));
    }

    #[test]
    fn qpn_reuse_retires_old_timeline() {
        let h = History::new(4);
        h.record(42, Created, "first");
        h.record(42, Rts, "");
        h.record(42, Created, "second");
        assert_eq!(h.events(42).unwrap(), [(Created, "second".into())]);
        assert_eq!((h.live_count(), h.destroyed_count()), (1, 1));
        let j = h.to_json();
        let d = &j[j.find("\"destroyed\"").unwrap()..];
        assert!(d.contains("\"qpn\":42,\"state\":\"rts\""));
    }

    #[test]
    fn concurrent_recording_loses_nothing() {
        let h = Arc::new(History::new(8));
        h.record(0, Created, "");
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for q in 0..50 {
                        let qpn = 1000 + t * 100 + q;
                        h.record(qpn, Created, "");
                        for _ in 0..9 {
                            h.record(qpn, RecordSent, "");
                            h.record(0, BeaconSeen, ""); // shared timeline
                        }
                        h.record_once(qpn, FirstSend, "");
                        h.record_once(qpn, FirstSend, "");
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(h.live_count(), 4 * 50 + 1);
        let g = h.inner.lock();
        let total: usize = g
            .live
            .iter()
            .filter(|(q, _)| **q != 0)
            .map(|(_, t)| t.events.len())
            .sum();
        assert_eq!(total, 4 * 50 * 11);
        let shared = &g.live[&0];
        assert_eq!(shared.events.len() as u64 + shared.dropped, 4 * 50 * 9 + 1); // + its Created
    }
}
