//! What a converted listener's accepted connection speaks, from its first
//! bytes (peeked, not consumed): an async+rdma peer starts with its 65-byte
//! cm_meta record ("llll:qqqqqqqq:pppppppp:..." with a ':' after the 4-digit
//! LID), a Ceph TCP messenger with its banner ("ceph v2\n", "ceph v027").

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Too few bytes to tell yet.
    Undecided,
    /// The cm_meta handshake: serve it over RDMA.
    Rdma,
    /// Ceph's banner, or anything else that is not a cm_meta record: leave
    /// the socket to the application as plain TCP.
    Tcp,
}

/// Bytes worth peeking to decide.
pub const PEEK: usize = 8;

pub fn classify(first: &[u8]) -> Peer {
    const STEM: &[u8] = b"ceph v";
    if first.len() < STEM.len() && STEM.starts_with(first) {
        return Peer::Undecided;
    }
    if first.starts_with(STEM) {
        return Peer::Tcp;
    }
    // cm_meta: four hex digits of LID, then ':'
    let hex = |b: &u8| b.is_ascii_hexdigit();
    let n = first.len().min(4);
    if !first[..n].iter().all(hex) {
        return Peer::Tcp;
    }
    match first.get(4) {
        None => Peer::Undecided,
        Some(b':') => Peer::Rdma,
        Some(_) => Peer::Tcp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cm_meta_is_rdma() {
        assert_eq!(classify(b"0000:00000011:00abcdef:00000000:fe80"), Peer::Rdma);
        assert_eq!(classify(b"00a1:"), Peer::Rdma);
    }

    #[test]
    fn banners_are_tcp() {
        assert_eq!(classify(b"ceph v2\n\x10\x00"), Peer::Tcp);
        assert_eq!(classify(b"ceph v027"), Peer::Tcp);
        assert_eq!(classify(b"GET / HTTP/1.1"), Peer::Tcp);
        assert_eq!(classify(b"00001"), Peer::Tcp);
    }

    #[test]
    fn short_prefixes_wait() {
        for p in [&b""[..], b"c", b"ceph", b"ceph ", b"00", b"0000"] {
            assert_eq!(classify(p), Peer::Undecided, "{p:?}");
        }
        // 'c' 'e' are hex digits too: "ce" could start either
        assert_eq!(classify(b"ce"), Peer::Undecided);
        assert_eq!(classify(b"cex"), Peer::Tcp);
    }
}
