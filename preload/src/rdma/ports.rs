//! `ibstack_preload_ports`: which TCP ports transparent mode converts.

/// A set of TCP ports: single ports and inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSet(Vec<(u16, u16)>);

impl PortSet {
    /// Parses "3300,6789,6800-7300" (spaces allowed around items).
    pub fn parse(text: &str) -> Result<PortSet, String> {
        let mut ranges = Vec::new();
        for item in text.split(',').map(str::trim) {
            if item.is_empty() {
                continue;
            }
            let (lo, hi) = match item.split_once('-') {
                Some((a, b)) => (port(a.trim(), text)?, port(b.trim(), text)?),
                None => {
                    let p = port(item, text)?;
                    (p, p)
                }
            };
            if lo > hi {
                return Err(format!("ibstack_preload_ports = {text:?}: the range {item} is empty (write low-high)"));
            }
            ranges.push((lo, hi));
        }
        if ranges.is_empty() {
            return Err(format!(
                "ibstack_preload_ports = {text:?} names no port: give ports and ranges such as 3300,6789,6800-7300"
            ));
        }
        Ok(PortSet(ranges))
    }

    pub fn contains(&self, p: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| lo <= p && p <= hi)
    }
}

fn port(s: &str, whole: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("ibstack_preload_ports = {whole:?}: {s:?} is not a TCP port (1-65535)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_set() {
        let p = PortSet::parse("3300,6789,6800-7300").unwrap();
        for yes in [3300, 6789, 6800, 7000, 7300] {
            assert!(p.contains(yes), "{yes}");
        }
        for no in [22, 3301, 6799, 7301, 65535] {
            assert!(!p.contains(no), "{no}");
        }
    }

    #[test]
    fn spaces_and_single_ranges() {
        let p = PortSet::parse(" 10 - 12 , 40 ,").unwrap();
        assert!(p.contains(11) && p.contains(40) && !p.contains(13));
    }

    #[test]
    fn bad_input_is_named() {
        for bad in ["", ",", "abc", "0", "70000", "12-10", "5-x"] {
            let e = PortSet::parse(bad).expect_err(bad);
            assert!(e.contains("ibstack_preload_ports"), "{e}");
        }
    }
}
