//! Text formatting shared by the messages and JSON dumps of every layer:
//! JSON string literals, byte counts, GIDs.

/// Appends `s` as a JSON string literal (quoted, escaped).
pub fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// "131072 bytes (128.0 KiB)".
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if b < 1024 {
        return format!("{b} bytes");
    }
    let mut v = b as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{b} bytes ({v:.1} {})", UNITS[u])
}

/// 16 GID bytes as `ibv_devinfo` prints them: eight groups of 4 hex digits.
pub fn gid_to_string(gid: &[u8; 16]) -> String {
    gid.chunks(2).map(|c| format!("{:02x}{:02x}", c[0], c[1])).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_formats() {
        assert_eq!(human_bytes(100), "100 bytes");
        assert_eq!(human_bytes(1536), "1536 bytes (1.5 KiB)");
        assert_eq!(human_bytes(1 << 30), "1073741824 bytes (1.0 GiB)");
    }

    #[test]
    fn gid_formatting_matches_ibv_devinfo() {
        let mut g = [0u8; 16];
        g[10] = 0xff;
        g[11] = 0xff;
        g[12..].copy_from_slice(&[10, 99, 0, 1]);
        assert_eq!(gid_to_string(&g), "0000:0000:0000:0000:0000:ffff:0a63:0001");
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        json_string(&mut s, "a\"b\\c\nd\u{1}");
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0001\"");
    }
}
