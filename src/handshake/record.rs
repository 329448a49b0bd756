//! The 65-byte `cm_meta` record, compatible with Ceph 16.2 on the wire.
//!
//! Layout (all hex zero-padded, Ceph writes lowercase):
//!
//! ```text
//! offset  0  4 hex  lid
//! offset  4  ':'
//! offset  5  8 hex  local_qpn
//! offset 13  ':'
//! offset 14  8 hex  psn
//! offset 22  ':'
//! offset 23  8 hex  peer_qpn
//! offset 31  ':'
//! offset 32 32 hex  GID, the 16 raw bytes in order
//! offset 64  NUL    (sent on the wire)
//! ```
//!
//! Ceph itself scans the record without checking the result; this module
//! rejects anything that does not match the layout exactly, and recognises the
//! banners of Ceph's TCP messenger so a transport mismatch is reported as such.

use std::fmt;
use std::net::Ipv6Addr;

use crate::error::{Error, Result};

/// Size of one record on the wire, the trailing NUL included.
pub const RECORD_LEN: usize = 65;

/// Offsets of the four `:` separators.
pub const SEPARATOR_OFFSETS: [usize; 4] = [4, 13, 22, 31];

/// Offset of the first GID hex digit.
const GID_OFFSET: usize = 32;

/// Largest value a 24-bit QP number or PSN can take.
pub const MAX_24BIT: u32 = 0x00FF_FFFF;

/// First multicast LID; unicast LIDs are 1..0xC000.
pub const LID_MULTICAST_BASE: u16 = 0xC000;

/// How many bytes of a bad record are quoted in error messages.
const QUOTE_LIMIT: usize = 96;

/// Every banner of Ceph's TCP messenger starts with this.
const CEPH_BANNER_STEM: &[u8] = b"ceph v";
const MSGR2_PREFIX: &[u8] = b"ceph v2";
const MSGR1_PREFIX: &[u8] = b"ceph v0";

const MSGR2_TEXT: &str = "the peer speaks Ceph's TCP messenger (async+posix, msgr2: it sent the \
26-byte banner \"ceph v2\\n\" + length + features) while this side uses async+rdma and expects \
the 65-byte cm_meta record; stock Ceph logs this as \"recv_cm_meta got bad length (26)\". \
Make ms_type / ms_public_type / ms_cluster_type agree on both daemons (switch all peers of a \
messenger at the same time)";

const MSGR1_TEXT: &str = "the peer speaks Ceph's TCP messenger (async+posix, msgr1: it sent the \
legacy banner \"ceph v027\") while this side uses async+rdma and expects the 65-byte cm_meta \
record; stock Ceph logs this as \"recv_cm_meta got bad length (9)\", or parses a legacy \
server's banner and addresses as a garbage record. Make ms_type / ms_public_type / \
ms_cluster_type agree on both daemons (switch all peers of a messenger at the same time)";

const CEPH_TCP_TEXT: &str = "the peer speaks Ceph's TCP messenger (async+posix: its first bytes \
are a \"ceph v\" protocol banner) while this side uses async+rdma and expects the 65-byte \
cm_meta record. Make ms_type / ms_public_type / ms_cluster_type agree on both daemons (switch \
all peers of a messenger at the same time)";

/// One side's description of its queue pair, as exchanged during the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CmMeta {
    /// Sender's port LID (0 on RoCE).
    pub lid: u16,
    /// Sender's QP number (24 bits significant).
    pub local_qpn: u32,
    /// Sender's initial send PSN (24 bits).
    pub psn: u32,
    /// The QP number the sender believes its peer has; 0 = "not heard from you yet".
    pub peer_qpn: u32,
    /// Sender's GID, raw bytes in network order.
    pub gid: [u8; 16],
}

const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

fn put_hex(out: &mut [u8], value: u64, digits: usize) {
    for (i, slot) in out[..digits].iter_mut().enumerate() {
        let shift = 4 * (digits - 1 - i);
        *slot = HEX_LOWER[((value >> shift) & 0xF) as usize];
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Parse a run of hex digits already known to be valid.
fn parse_hex(digits: &[u8]) -> u64 {
    digits.iter().fold(0u64, |acc, &c| {
        (acc << 4) | u64::from(hex_value(c).unwrap_or(0))
    })
}

/// What byte `offset` of a record must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Hex,
    Colon,
    Nul,
}

fn expected_at(offset: usize) -> Expect {
    if offset == RECORD_LEN - 1 {
        Expect::Nul
    } else if SEPARATOR_OFFSETS.contains(&offset) {
        Expect::Colon
    } else {
        Expect::Hex
    }
}

fn field_at(offset: usize) -> &'static str {
    match offset {
        0..=3 => "lid",
        5..=12 => "local_qpn",
        14..=21 => "psn",
        23..=30 => "peer_qpn",
        32..=63 => "gid",
        64 => "terminator",
        _ => "separator",
    }
}

/// The first byte of `bytes` (a record or a prefix of one) that breaks the
/// layout, with what was expected there. Bytes past offset 64 are not judged.
pub(crate) fn first_violation(bytes: &[u8]) -> Option<(usize, &'static str)> {
    bytes
        .iter()
        .take(RECORD_LEN)
        .enumerate()
        .find_map(|(i, &b)| {
            let ok = match expected_at(i) {
                Expect::Hex => hex_value(b).is_some(),
                Expect::Colon => b == b':',
                Expect::Nul => b == 0,
            };
            if ok {
                None
            } else {
                Some((
                    i,
                    match expected_at(i) {
                        Expect::Hex => "a hex digit",
                        Expect::Colon => "':'",
                        Expect::Nul => "the NUL terminator",
                    },
                ))
            }
        })
}

/// Quote received bytes for an error message, capped at a readable length.
pub(crate) fn quote(bytes: &[u8]) -> String {
    if bytes.len() <= QUOTE_LIMIT {
        format!("\"{}\"", escape_bytes(bytes))
    } else {
        format!(
            "\"{}\"... ({} more bytes)",
            escape_bytes(&bytes[..QUOTE_LIMIT]),
            bytes.len() - QUOTE_LIMIT
        )
    }
}

/// True while `bytes` is too short to tell whether it is a Ceph TCP banner:
/// it is `"ceph v"` or a prefix of it (the byte after decides msgr2/msgr1).
pub(crate) fn banner_undecided(bytes: &[u8]) -> bool {
    bytes.len() <= CEPH_BANNER_STEM.len() && CEPH_BANNER_STEM.starts_with(bytes)
}

/// Error for a peer whose first bytes are a known foreign protocol.
pub(crate) fn foreign_error(bytes: &[u8], what: &str) -> Error {
    Error::new(
        libc::EPROTO,
        format!(
            "cm_meta handshake failed: {what} (received {} bytes: {})",
            bytes.len(),
            quote(bytes)
        ),
    )
}

/// Error for bytes that break the record layout at `offset`.
pub(crate) fn malformed_error(bytes: &[u8], offset: usize, expected: &str) -> Error {
    let got = bytes[offset];
    Error::new(
        libc::EPROTO,
        format!(
            "malformed cm_meta record from the peer: byte {offset} ({}) is \"{}\", expected {expected} \
             (received {} bytes: {}); the peer does not speak the async+rdma verbs handshake \
             (check that both daemons use async+rdma with the same ms_async_rdma_cm setting) \
             or the stream is out of sync",
            field_at(offset),
            escape_bytes(&[got]),
            bytes.len(),
            quote(bytes)
        ),
    )
}

/// What the first bytes of a non-record look like, as a sentence for an error
/// message; `None` when they are not recognised.
pub fn diagnose_foreign(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(MSGR2_PREFIX) {
        Some(MSGR2_TEXT)
    } else if bytes.starts_with(MSGR1_PREFIX) {
        Some(MSGR1_TEXT)
    } else if bytes.starts_with(CEPH_BANNER_STEM) {
        Some(CEPH_TCP_TEXT)
    } else {
        None
    }
}

/// Escape bytes for messages: printable ASCII as is (a backslash doubled),
/// `\n`, `\r`, `\t`, `\0` by name, anything else as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            0 => s.push_str("\\0"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                s.push_str("\\x");
                s.push(HEX_LOWER[usize::from(b >> 4)] as char);
                s.push(HEX_LOWER[usize::from(b & 0xF)] as char);
            }
        }
    }
    s
}

/// `0` for zero, `0x…` otherwise.
fn hex_or_zero(v: u32) -> String {
    if v == 0 {
        "0".to_string()
    } else {
        format!("{v:#x}")
    }
}

impl CmMeta {
    /// The record as Ceph writes it: `%04x:%08x:%08x:%08x:` + 32 lowercase hex
    /// digits of the GID bytes in order + NUL.
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        put_hex(&mut out[0..], u64::from(self.lid), 4);
        put_hex(&mut out[5..], u64::from(self.local_qpn), 8);
        put_hex(&mut out[14..], u64::from(self.psn), 8);
        put_hex(&mut out[23..], u64::from(self.peer_qpn), 8);
        for off in SEPARATOR_OFFSETS {
            out[off] = b':';
        }
        for (i, &b) in self.gid.iter().enumerate() {
            put_hex(&mut out[GID_OFFSET + 2 * i..], u64::from(b), 2);
        }
        out[RECORD_LEN - 1] = 0;
        out
    }

    /// Strictly parse a peer's record. Every failure is `EPROTO`, with the
    /// received bytes quoted in the message.
    pub fn decode(buf: &[u8]) -> Result<CmMeta> {
        if let Some(what) = diagnose_foreign(buf) {
            return Err(foreign_error(buf, what));
        }
        if buf.is_empty() {
            return Err(Error::new(
                libc::EPROTO,
                "empty cm_meta record: the peer sent nothing where its 65-byte record was expected",
            ));
        }
        if buf.len() != RECORD_LEN {
            return Err(Error::new(
                libc::EPROTO,
                format!(
                    "cm_meta record has the wrong length: got {} bytes, expected {RECORD_LEN} \
                     (received: {}); the peer does not speak the async+rdma verbs handshake or \
                     the stream is out of sync",
                    buf.len(),
                    quote(buf)
                ),
            ));
        }
        if let Some((offset, expected)) = first_violation(buf) {
            return Err(malformed_error(buf, offset, expected));
        }
        let mut gid = [0u8; 16];
        for (i, g) in gid.iter_mut().enumerate() {
            let at = GID_OFFSET + 2 * i;
            *g = parse_hex(&buf[at..at + 2]) as u8;
        }
        Ok(CmMeta {
            lid: parse_hex(&buf[0..4]) as u16,
            local_qpn: parse_hex(&buf[5..13]) as u32,
            psn: parse_hex(&buf[14..22]) as u32,
            peer_qpn: parse_hex(&buf[23..31]) as u32,
            gid,
        })
    }

    /// Semantic checks of a record received from a peer, before its values are
    /// handed to `ibv_modify_qp`. `local_link_is_ib` is true when the local
    /// port's link layer is InfiniBand (LIDs matter), false on Ethernet/RoCE
    /// (the LID is ignored). Errors are `EINVAL` naming the field and value.
    pub fn validate_peer(&self, local_link_is_ib: bool) -> Result<()> {
        let who = || format!("peer cm_meta record ({})", self.describe());
        if self.local_qpn < 2 || self.local_qpn > MAX_24BIT {
            let why = if self.local_qpn < 2 {
                "QP numbers 0 and 1 are the special QPs (SMI/GSI), never a connected RC QP"
            } else {
                "QP numbers are 24 bits wide"
            };
            return Err(Error::inval(format!(
                "{}: local_qpn {:#x} is out of range 0x2..=0xffffff: {why}; the peer sent a garbage \
                 or foreign record",
                who(),
                self.local_qpn
            )));
        }
        if self.psn > MAX_24BIT {
            return Err(Error::inval(format!(
                "{}: psn {:#x} is wider than 24 bits (max 0xffffff); the peer sent a garbage or \
                 foreign record",
                who(),
                self.psn
            )));
        }
        if self.peer_qpn > MAX_24BIT {
            return Err(Error::inval(format!(
                "{}: peer_qpn {:#x} is wider than 24 bits (max 0xffffff); the peer sent a garbage \
                 or foreign record",
                who(),
                self.peer_qpn
            )));
        }
        if self.gid.iter().all(|&b| b == 0) {
            return Err(Error::inval(format!(
                "{}: gid is all zero: the peer's ms_async_rdma_gid_idx points to an empty slot of \
                 its GID table (GID tables differ per host; check `ibv_devinfo -v` or \
                 /sys/class/infiniband/<dev>/ports/<port>/gids/ on the peer) or its address was \
                 removed",
                who()
            )));
        }
        if local_link_is_ib {
            if self.lid == 0 {
                return Err(Error::inval(format!(
                    "{}: lid 0 on an InfiniBand link: the peer's port has no LID assigned (no \
                     subnet manager running, or the port is not ACTIVE)",
                    who()
                )));
            }
            if self.lid >= LID_MULTICAST_BASE {
                return Err(Error::inval(format!(
                    "{}: lid {:#06x} is not a unicast LID (unicast LIDs are 0x0001..0xbfff)",
                    who(),
                    self.lid
                )));
            }
        }
        Ok(())
    }

    /// One-line human description, e.g.
    /// `lid 0 qpn 0x1a2 psn 0x5e1f3a peer_qpn 0 gid ::ffff:192.168.0.218`.
    pub fn describe(&self) -> String {
        format!(
            "lid {} qpn {} psn {} peer_qpn {} gid {}",
            self.lid,
            hex_or_zero(self.local_qpn),
            hex_or_zero(self.psn),
            hex_or_zero(self.peer_qpn),
            Ipv6Addr::from(self.gid)
        )
    }
}

impl fmt::Display for CmMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped_v4(a: u8, b: u8, c: u8, d: u8) -> [u8; 16] {
        let mut g = [0u8; 16];
        g[10] = 0xff;
        g[11] = 0xff;
        g[12..].copy_from_slice(&[a, b, c, d]);
        g
    }

    fn example() -> CmMeta {
        CmMeta {
            lid: 0,
            local_qpn: 0x1a2,
            psn: 0x5e1f3a,
            peer_qpn: 0,
            gid: mapped_v4(192, 168, 0, 218),
        }
    }

    const EXAMPLE_TEXT: &[u8] =
        b"0000:000001a2:005e1f3a:00000000:00000000000000000000ffffc0a800da\0";

    fn good_record() -> [u8; RECORD_LEN] {
        example().encode()
    }

    #[test]
    fn reference_example_encodes_byte_for_byte() {
        let enc = example().encode();
        assert_eq!(enc.len(), RECORD_LEN);
        assert_eq!(&enc[..], EXAMPLE_TEXT);
        assert_eq!(enc[64], 0, "the NUL must be on the wire");
        assert_eq!(CmMeta::decode(EXAMPLE_TEXT).unwrap(), example());
    }

    #[test]
    fn describe_uses_ipv6_formatting() {
        assert_eq!(
            example().describe(),
            "lid 0 qpn 0x1a2 psn 0x5e1f3a peer_qpn 0 gid ::ffff:192.168.0.218"
        );
        assert_eq!(example().to_string(), example().describe());
        let m = CmMeta {
            lid: 7,
            local_qpn: 0x11,
            psn: 0,
            peer_qpn: 0x22,
            gid: [
                0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x11, 0x22, 0xff, 0xfe, 0x33, 0x44, 0x55,
            ],
        };
        assert_eq!(
            m.describe(),
            "lid 7 qpn 0x11 psn 0 peer_qpn 0x22 gid fe80::211:22ff:fe33:4455"
        );
    }

    /// Small deterministic generator so the round trip covers many values.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
    }

    #[test]
    fn round_trip_random_and_extreme_values() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut cases = vec![
            CmMeta {
                lid: 0xffff,
                local_qpn: MAX_24BIT,
                psn: MAX_24BIT,
                peer_qpn: MAX_24BIT,
                gid: [0xff; 16],
            },
            CmMeta {
                lid: 0,
                local_qpn: 0,
                psn: 0,
                peer_qpn: 0,
                gid: [0; 16],
            },
            CmMeta {
                lid: 0xbfff,
                local_qpn: u32::MAX,
                psn: u32::MAX,
                peer_qpn: u32::MAX,
                gid: [0xa5; 16],
            },
        ];
        for _ in 0..500 {
            let r = rng.next();
            let mut gid = [0u8; 16];
            gid[..8].copy_from_slice(&rng.next().to_le_bytes());
            gid[8..].copy_from_slice(&rng.next().to_le_bytes());
            cases.push(CmMeta {
                lid: r as u16,
                local_qpn: (r >> 16) as u32 & MAX_24BIT,
                psn: (r >> 40) as u32 & MAX_24BIT,
                peer_qpn: rng.next() as u32 & MAX_24BIT,
                gid,
            });
        }
        for m in cases {
            let enc = m.encode();
            // Lowercase hex only, as Ceph prints.
            assert!(
                enc[..64].iter().all(|c| !c.is_ascii_uppercase()),
                "{}",
                escape_bytes(&enc)
            );
            let text = std::str::from_utf8(&enc[..64]).unwrap();
            let expected = format!(
                "{:04x}:{:08x}:{:08x}:{:08x}:{}",
                m.lid,
                m.local_qpn,
                m.psn,
                m.peer_qpn,
                m.gid.iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
            assert_eq!(text, expected);
            assert_eq!(CmMeta::decode(&enc).unwrap(), m);
        }
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let upper: Vec<u8> = EXAMPLE_TEXT
            .iter()
            .map(|c| c.to_ascii_uppercase())
            .collect();
        assert_eq!(CmMeta::decode(&upper).unwrap(), example());
    }

    fn expect_eproto(bytes: &[u8]) -> String {
        let e = CmMeta::decode(bytes).expect_err("must be rejected");
        assert_eq!(e.errno, libc::EPROTO, "{}", e.msg);
        e.msg.into_owned()
    }

    #[test]
    fn empty_is_rejected() {
        let msg = expect_eproto(b"");
        assert!(msg.contains("empty"), "{msg}");
    }

    #[test]
    fn short_and_long_are_rejected_with_the_length() {
        let rec = good_record();
        let msg = expect_eproto(&rec[..64]);
        assert!(msg.contains("got 64 bytes"), "{msg}");
        let msg = expect_eproto(&rec[..1]);
        assert!(
            msg.contains("got 1 bytes") && msg.contains("\"0\""),
            "{msg}"
        );
        let mut long = rec.to_vec();
        long.push(b'0');
        let msg = expect_eproto(&long);
        assert!(msg.contains("got 66 bytes"), "{msg}");
        // The quoted bytes are escaped: the NUL in the middle is visible.
        assert!(msg.contains("00da\\00\""), "{msg}");
    }

    #[test]
    fn missing_nul_is_rejected() {
        let mut rec = good_record();
        rec[64] = b'0';
        let msg = expect_eproto(&rec);
        assert!(msg.contains("byte 64") && msg.contains("NUL"), "{msg}");
    }

    #[test]
    fn wrong_separator_at_each_offset_is_rejected() {
        for off in SEPARATOR_OFFSETS {
            for bad in [b'0', b';', b' ', 0u8] {
                let mut rec = good_record();
                rec[off] = bad;
                let msg = expect_eproto(&rec);
                assert!(msg.contains(&format!("byte {off} ")), "offset {off}: {msg}");
                assert!(msg.contains("':'"), "{msg}");
            }
        }
    }

    #[test]
    fn non_hex_character_in_each_field_is_rejected() {
        for (off, field) in [
            (0, "lid"),
            (3, "lid"),
            (5, "local_qpn"),
            (20, "psn"),
            (30, "peer_qpn"),
            (32, "gid"),
            (63, "gid"),
        ] {
            for bad in [b'g', b'G', b'x', b' ', b':', 0u8, 0xff] {
                let mut rec = good_record();
                rec[off] = bad;
                let msg = expect_eproto(&rec);
                assert!(msg.contains(&format!("byte {off} ({field})")), "{msg}");
                assert!(msg.contains("hex digit"), "{msg}");
            }
        }
        let mut rec = good_record();
        rec[40] = 0xff;
        let msg = expect_eproto(&rec);
        assert!(
            msg.contains("\\xff"),
            "non-printable bytes are escaped: {msg}"
        );
    }

    #[test]
    fn msgr2_banner_is_reported_as_transport_mismatch() {
        let mut banner = b"ceph v2\n".to_vec();
        banner.extend_from_slice(&[16, 0]);
        banner.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(banner.len(), 26);
        let msg = expect_eproto(&banner);
        for needle in [
            "msgr2",
            "async+posix",
            "async+rdma",
            "ms_type",
            "ms_public_type",
            "ms_cluster_type",
            "bad length (26)",
        ] {
            assert!(msg.contains(needle), "missing {needle:?}: {msg}");
        }
        assert!(
            msg.contains("ceph v2\\n\\x10\\0"),
            "bytes quoted escaped: {msg}"
        );
        assert_eq!(diagnose_foreign(&banner), Some(MSGR2_TEXT));
    }

    #[test]
    fn msgr1_banner_is_reported_as_transport_mismatch() {
        let msg = expect_eproto(b"ceph v027");
        for needle in [
            "msgr1",
            "async+posix",
            "async+rdma",
            "ms_public_type",
            "ms_cluster_type",
        ] {
            assert!(msg.contains(needle), "missing {needle:?}: {msg}");
        }
        assert!(!msg.contains("msgr2"), "{msg}");
        // A legacy server sends banner + addresses, 65 bytes or more: still a mismatch.
        let mut legacy = b"ceph v027".to_vec();
        legacy.resize(RECORD_LEN, 0);
        assert!(expect_eproto(&legacy).contains("msgr1"));
    }

    #[test]
    fn diagnose_foreign_classes() {
        assert_eq!(diagnose_foreign(b"ceph v2\n\x10\x00"), Some(MSGR2_TEXT));
        assert_eq!(diagnose_foreign(b"ceph v027"), Some(MSGR1_TEXT));
        assert_eq!(diagnose_foreign(b"ceph v9"), Some(CEPH_TCP_TEXT));
        assert_eq!(diagnose_foreign(b"ceph v"), Some(CEPH_TCP_TEXT));
        assert_eq!(diagnose_foreign(b"ceph "), None);
        assert_eq!(diagnose_foreign(EXAMPLE_TEXT), None);
        assert_eq!(diagnose_foreign(b""), None);
        assert!(banner_undecided(b""));
        assert!(banner_undecided(b"ceph v"));
        assert!(!banner_undecided(b"ceph v2"));
        assert!(!banner_undecided(b"0000"));
    }

    #[test]
    fn escape_bytes_cases() {
        assert_eq!(escape_bytes(b"ab:12"), "ab:12");
        assert_eq!(escape_bytes(b"a\nb\0c"), "a\\nb\\0c");
        assert_eq!(
            escape_bytes(&[0x01, 0x7f, 0x80, 0xff]),
            "\\x01\\x7f\\x80\\xff"
        );
        assert_eq!(escape_bytes(b"\\"), "\\\\");
        assert_eq!(escape_bytes(b""), "");
    }

    #[test]
    fn first_violation_judges_prefixes() {
        let rec = good_record();
        for n in 0..=RECORD_LEN {
            assert_eq!(first_violation(&rec[..n]), None, "prefix of {n}");
        }
        assert_eq!(first_violation(b"00z"), Some((2, "a hex digit")));
        assert_eq!(first_violation(b"0000-"), Some((4, "':'")));
    }

    fn good_roce() -> CmMeta {
        CmMeta {
            lid: 0,
            local_qpn: 0x1a2,
            psn: 0x5e1f3a,
            peer_qpn: 0,
            gid: mapped_v4(10, 0, 0, 1),
        }
    }

    #[test]
    fn validate_peer_table() {
        let ib_ok = CmMeta {
            lid: 0x12,
            ..good_roce()
        };
        // (record, link is IB, expected Ok, text the error must contain)
        let table: Vec<(CmMeta, bool, bool, &str)> = vec![
            (good_roce(), false, true, ""),
            (
                CmMeta {
                    lid: 0xffff,
                    ..good_roce()
                },
                false,
                true,
                "",
            ), // lid ignored on Ethernet
            (ib_ok, true, true, ""),
            (
                CmMeta {
                    lid: 0xbfff,
                    ..good_roce()
                },
                true,
                true,
                "",
            ),
            (
                CmMeta {
                    local_qpn: 2,
                    psn: MAX_24BIT,
                    peer_qpn: MAX_24BIT,
                    ..good_roce()
                },
                false,
                true,
                "",
            ),
            (
                CmMeta {
                    local_qpn: 0,
                    ..good_roce()
                },
                false,
                false,
                "local_qpn 0x0",
            ),
            (
                CmMeta {
                    local_qpn: 1,
                    ..good_roce()
                },
                false,
                false,
                "local_qpn 0x1",
            ),
            (
                CmMeta {
                    local_qpn: 0x100_0000,
                    ..good_roce()
                },
                false,
                false,
                "local_qpn 0x1000000",
            ),
            (
                CmMeta {
                    psn: 0x100_0000,
                    ..good_roce()
                },
                false,
                false,
                "psn 0x1000000",
            ),
            (
                CmMeta {
                    peer_qpn: 0x100_0000,
                    ..good_roce()
                },
                false,
                false,
                "peer_qpn 0x1000000",
            ),
            (
                CmMeta {
                    gid: [0; 16],
                    ..good_roce()
                },
                false,
                false,
                "gid is all zero",
            ),
            (
                CmMeta {
                    gid: [0; 16],
                    ..ib_ok
                },
                true,
                false,
                "gid is all zero",
            ),
            (
                CmMeta { lid: 0, ..ib_ok },
                true,
                false,
                "lid 0 on an InfiniBand link",
            ),
            (
                CmMeta {
                    lid: 0xc000,
                    ..ib_ok
                },
                true,
                false,
                "lid 0xc000",
            ),
            (
                CmMeta {
                    lid: 0xffff,
                    ..ib_ok
                },
                true,
                false,
                "lid 0xffff",
            ),
        ];
        for (m, ib, ok, needle) in table {
            let r = m.validate_peer(ib);
            if ok {
                assert!(r.is_ok(), "{} (ib={ib}) should pass: {:?}", m.describe(), r);
            } else {
                let e = r.expect_err(&format!("{} (ib={ib}) should fail", m.describe()));
                assert_eq!(e.errno, libc::EINVAL);
                assert!(e.msg.contains(needle), "expected {needle:?} in {}", e.msg);
            }
        }
    }
}
