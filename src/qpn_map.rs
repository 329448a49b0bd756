//! A HashMap keyed by QP number with a multiplicative hash: QP numbers are
//! small distinct integers, and SipHash costs more than the lookup itself
//! on the per-completion path.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default, Clone, Copy)]
pub struct QpnHasher(u64);

impl Hasher for QpnHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// `HashMap<u32, V>` with [`QpnHasher`].
pub type QpnMap<V> = HashMap<u32, V, BuildHasherDefault<QpnHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_qpns_hash_apart_and_lookups_work() {
        let mut m: QpnMap<u32> = QpnMap::default();
        for q in 0..10_000u32 {
            m.insert(q * 3 + 17, q);
        }
        assert!((0..10_000u32).all(|q| m.get(&(q * 3 + 17)) == Some(&q)));
        assert_eq!(m.get(&18), None);
    }
}
