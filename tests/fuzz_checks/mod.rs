//! The properties the fuzzers check, one function per input the library
//! parses. Shared by the cargo-fuzz targets (`fuzz/fuzz_targets/`, which
//! include this file) and by `tests/fuzz_regressions.rs`, which replays the
//! kept inputs (`fuzz/regressions/<target>/`) and a seeded random batch on
//! every `cargo test`. Each function panics when a property is violated;
//! any other outcome — including an error returned for bad input — is fine.

#![allow(dead_code)]

use ibstack::config::{options, Config};
use ibstack::handshake::{CmMeta, RecordReader, RECORD_LEN};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The targets, by the name of their folder under `fuzz/regressions/`.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("cm_meta_decode", cm_meta_decode),
    ("record_reader", record_reader),
    ("ceph_conf", ceph_conf),
    ("option_value", option_value),
];

/// Strict decoding never panics; what it accepts encodes back to the same
/// 65 bytes, and what it returns decodes again to itself.
pub fn cm_meta_decode(data: &[u8]) {
    if let Ok(m) = CmMeta::decode(data) {
        assert_eq!(data.len(), RECORD_LEN, "accepted a record of {} bytes", data.len());
        let again = m.encode();
        assert_eq!(CmMeta::decode(&again).expect("an encoded record decodes"), m);
        // Ceph writes lowercase hex; a record that differs only in case decodes to the same fields
        assert!(again.eq_ignore_ascii_case(data), "re-encoding changed more than letter case");
    }
}

fn socketpair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) };
    assert_eq!(r, 0, "socketpair failed");
    // SAFETY: both are fresh descriptors we own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn set_nonblocking(fd: &OwnedFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// The first byte of `data` seeds how the rest is split into writes; the
/// resumable reader, fed those pieces through a non-blocking socketpair,
/// reaches the verdict of one-shot decoding of the same bytes and never
/// consumes a byte past the record.
pub fn record_reader(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else { return };
    let stream = &stream[..stream.len().min(4 * RECORD_LEN)];
    let (tx, rx) = socketpair();
    set_nonblocking(&rx);
    let mut reader = RecordReader::new();
    let mut verdict: Option<Result<CmMeta, i32>> = None;
    let mut off = 0;
    let mut k = seed as usize | 1;
    while off < stream.len() && verdict.is_none() {
        k = k.wrapping_mul(1103515245).wrapping_add(12345);
        let n = ((k >> 8) % 17 + 1).min(stream.len() - off);
        // SAFETY: writes n bytes from a live slice.
        let w = unsafe { libc::write(tx.as_raw_fd(), stream[off..].as_ptr().cast(), n) };
        assert_eq!(w, n as isize, "socketpair write");
        off += n;
        match reader.poll(rx.as_raw_fd()) {
            Ok(Some(m)) => verdict = Some(Ok(m)),
            Ok(None) => {}
            Err(e) => verdict = Some(Err(e.errno)),
        }
    }
    let expected = if stream.len() >= RECORD_LEN { Some(CmMeta::decode(&stream[..RECORD_LEN])) } else { None };
    match (&verdict, &expected) {
        (Some(Ok(m)), Some(Ok(e))) => assert_eq!(m, e),
        (Some(Ok(m)), _) => panic!("reader accepted {m:?} that one-shot decoding rejects"),
        (Some(Err(_)), Some(Ok(e))) => panic!("reader rejected the valid record {e:?}"),
        (None, Some(Ok(e))) => panic!("reader did not finish the valid record {e:?}"),
        _ => {}
    }
    if let Some(Ok(_)) = verdict {
        // Nothing past the record was consumed: what was written after it is still in the socket.
        let rest = off - RECORD_LEN;
        let mut buf = vec![0u8; rest + 1];
        // SAFETY: reads into a buffer of rest + 1 bytes.
        let r = unsafe { libc::read(rx.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        let got = if r < 0 { 0 } else { r as usize };
        assert_eq!(got, rest, "the reader consumed bytes past the record");
        assert_eq!(&buf[..got], &stream[RECORD_LEN..off]);
    }
}

/// A ceph.conf (UTF-8 text) and a section name (after the first NUL):
/// loading never panics; what loads leaves every option readable, and each
/// value read back is accepted again and reads the same.
pub fn ceph_conf(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (conf, section) = text.split_once('\0').unwrap_or((text, "osd.3"));
    let mut cfg = Config::default();
    if cfg.load_str(conf, "fuzz.conf", section).is_ok() {
        assert_round_trips(&cfg);
    }
}

/// One option (chosen by the first byte) set to the rest as text: never
/// panics; an accepted value reads back as text that is accepted again.
pub fn option_value(data: &[u8]) {
    let Some((&pick, value)) = data.split_first() else { return };
    let Ok(value) = std::str::from_utf8(value) else { return };
    let table = options();
    let opt = &table[pick as usize % table.len()];
    let mut cfg = Config::default();
    if cfg.set(opt.name, value).is_ok() {
        assert_round_trips(&cfg);
    }
}

fn assert_round_trips(cfg: &Config) {
    for opt in options() {
        let text = cfg.get(opt.name).unwrap_or_else(|e| panic!("get {}: {e}", opt.name));
        let mut again = Config::default();
        again.set(opt.name, &text).unwrap_or_else(|e| panic!("{} = {text:?} read back but is refused: {e}", opt.name));
        assert_eq!(again.get(opt.name).unwrap(), text, "{} does not read back the same", opt.name);
    }
    let _ = cfg.to_json();
}
