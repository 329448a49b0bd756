//! Option values: Ceph's parsers for `bool`, `uint`, `int` and `size`, and
//! the error messages for values that do not parse or are out of range.
//!
//! # Value syntax (what Ceph does, and so what we do)
//!
//! Ceph parses a value according to the option's type (`Option::parse_value`
//! in `src/common/options.cc`, helpers in `src/common/strtol.cc`):
//!
//! * `str`: taken as is. (Ceph also expands `$cluster`-style metavariables in
//!   strings; none of our string options use them, so we do not.)
//! * `bool`: `true` / `false` compared case-insensitively; anything else must
//!   be a base-10 integer that fits in a C `int` (`strict_strtol`), and any
//!   nonzero integer means true. `yes`, `on`, `0x1`, `1.0` are errors.
//! * `uint` / `int`: `strict_si_cast` — base-10 digits with an optional sign
//!   and an optional *last* character `K`, `M`, `G`, `T`, `P`, `E` that
//!   multiplies by a power of **1000** (`1K` = 1000). Suffixes are
//!   upper-case only. A negative value is an error for `uint`. A trailing `B`
//!   is recognised by Ceph as "no multiplier" but is not stripped before the
//!   number is converted, so `100B` is in fact rejected. Overflow of the
//!   64-bit target is an error; we additionally reject values that do not fit
//!   the narrower field ibstack stores them in.
//! * `size`: `strict_iec_cast<uint64_t>` — digits, then an optional unit made
//!   of a prefix `K`/`M`/`G`/`T`/`P`/`E` optionally followed by `i`, with an
//!   optional trailing `B` (`128K`, `128Ki`, `128KB`, `128KiB` are all 131072);
//!   a bare `B` means bytes. Multiples are powers of **1024**. Negative values,
//!   unknown units and results that overflow 64 bits are errors.
//!
//! The integer conversions use `strtoll` semantics, so a sign and leading
//! white space before the digits are accepted by the C library, but the SI
//! and IEC unit detection then rejects most such strings; we reproduce that.

use super::{is_c_space, OptType};
use crate::error::{Error, Result};

/// Why a number did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NumErr {
    Empty,
    NotNumber,
    TooBig,
    Negative,
    BadUnit(String),
}

impl NumErr {
    pub(super) fn detail(&self, ty: OptType) -> String {
        match self {
            NumErr::Empty => "the value is empty".to_owned(),
            NumErr::NotNumber => format!("not a number; {}", ty.syntax_hint()),
            NumErr::TooBig => "the number is too large".to_owned(),
            NumErr::Negative => "negative values are not allowed".to_owned(),
            NumErr::BadUnit(u) => format!("unknown unit suffix {u:?}; {}", ty.syntax_hint()),
        }
    }
}

pub(super) fn bad_value(key: &str, value: &str, ty: OptType, detail: &str) -> Error {
    let mut msg = format!("{key} = {value:?}: expected {}", ty.expected());
    if !detail.is_empty() {
        msg.push_str("; ");
        msg.push_str(detail);
    }
    Error::inval(msg)
}

pub(super) fn out_of_range(
    key: &str,
    value: &str,
    ty: OptType,
    lo: i128,
    hi: i128,
    why: &str,
) -> Error {
    let mut msg = format!(
        "{key} = {value:?}: expected {} in the range {lo}..={hi}",
        ty.expected()
    );
    if !why.is_empty() {
        msg.push_str("; ");
        msg.push_str(why);
    }
    Error::inval(msg)
}

/// C `strtoll(s, &end, 10)` that must consume the whole string, as Ceph's
/// `strict_strtoll` requires: optional leading white space, optional sign,
/// at least one digit, nothing after; overflow of `long long` is an error.
pub(super) fn strict_strtoll(s: &str) -> std::result::Result<i64, NumErr> {
    let body = s.trim_start_matches(is_c_space);
    let (neg, digits) = match body.as_bytes().first() {
        Some(b'-') => (true, &body[1..]),
        Some(b'+') => (false, &body[1..]),
        _ => (false, body),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NumErr::NotNumber);
    }
    let mut v: i128 = 0;
    for b in digits.bytes() {
        v = v * 10 + i128::from(b - b'0');
        if v > i128::from(i64::MAX) + 1 {
            return Err(NumErr::TooBig);
        }
    }
    let v = if neg { -v } else { v };
    i64::try_from(v).map_err(|_| NumErr::TooBig)
}

/// Ceph's `strict_si_cast<T>` for T = int64_t (`signed`) or uint64_t.
pub(super) fn si_cast(s: &str, signed: bool) -> std::result::Result<i128, NumErr> {
    if s.is_empty() {
        return Err(NumErr::Empty);
    }
    let mut num = s;
    let mut exp = 0u32;
    if s.bytes()
        .any(|b| !(b.is_ascii_digit() || b == b'+' || b == b'-'))
    {
        // Only the last character can be a unit.
        let last = s.chars().next_back().expect("non-empty");
        exp = match last {
            'K' => 3,
            'M' => 6,
            'G' => 9,
            'T' => 12,
            'P' => 15,
            'E' => 18,
            // Ceph recognises B but leaves it in place, so the number
            // conversion below rejects it.
            'B' => 0,
            other => return Err(NumErr::BadUnit(other.to_string())),
        };
        if exp > 0 {
            num = &s[..s.len() - 1];
        }
    }
    let n = i128::from(strict_strtoll(num)?);
    if n < 0 && !signed {
        return Err(NumErr::Negative);
    }
    let coef = 10i128.pow(exp);
    let (min, max) = if signed {
        (i128::from(i64::MIN), i128::from(i64::MAX))
    } else {
        (0, i128::from(u64::MAX))
    };
    // Ceph compares against min/coef and max/coef (truncating division).
    if n < min / coef || n > max / coef {
        return Err(NumErr::TooBig);
    }
    Ok(n * coef)
}

/// Ceph's `strict_iec_cast<uint64_t>` (used for `size` options).
pub(super) fn iec_cast(s: &str) -> std::result::Result<u64, NumErr> {
    if s.is_empty() {
        return Err(NumErr::Empty);
    }
    let bytes = s.as_bytes();
    let mut num = s;
    let mut shift = 0u32;
    if let Some(u) = bytes
        .iter()
        .position(|&b| !(b.is_ascii_digit() || b == b'+' || b == b'-'))
    {
        num = &s[..u];
        let full_unit = &bytes[u..];
        let mut unit = full_unit;
        if unit.len() > 1 && unit.last() == Some(&b'B') {
            unit = &unit[..unit.len() - 1];
        }
        let bad = || NumErr::BadUnit(String::from_utf8_lossy(full_unit).into_owned());
        if unit.len() > 2 {
            return Err(bad());
        }
        let ends_i = unit.last() == Some(&b'i');
        if !(ends_i || unit.len() == 1) {
            return Err(bad());
        }
        if ends_i && unit[0] == b'B' {
            return Err(bad());
        }
        shift = match unit[0] {
            b'K' => 10,
            b'M' => 20,
            b'G' => 30,
            b'T' => 40,
            b'P' => 50,
            b'E' => 60,
            b'B' => 0,
            _ => return Err(bad()),
        };
    }
    let n = strict_strtoll(num)?;
    if n < 0 {
        return Err(NumErr::Negative);
    }
    let n = n as u64;
    if n > u64::MAX >> shift {
        return Err(NumErr::TooBig);
    }
    Ok(n << shift)
}

/// Ceph's boolean rule (`Option::parse_value`, TYPE_BOOL).
pub(super) fn ceph_bool(s: &str) -> std::result::Result<bool, NumErr> {
    if s.eq_ignore_ascii_case("false") {
        return Ok(false);
    }
    if s.eq_ignore_ascii_case("true") {
        return Ok(true);
    }
    if s.is_empty() {
        return Err(NumErr::Empty);
    }
    // strict_strtol: a long long that must also fit in an int.
    let n = strict_strtoll(s)?;
    if i32::try_from(n).is_err() {
        return Err(NumErr::TooBig);
    }
    Ok(n != 0)
}

pub(super) fn parse_bool(key: &str, v: &str) -> Result<bool> {
    ceph_bool(v).map_err(|e| {
        let detail = match e {
            NumErr::TooBig => format!(
                "the integer is outside the C int range; {}",
                OptType::Bool.syntax_hint()
            ),
            NumErr::Empty => format!("the value is empty; {}", OptType::Bool.syntax_hint()),
            _ => OptType::Bool.syntax_hint().to_owned(),
        };
        bad_value(key, v, OptType::Bool, &detail)
    })
}

pub(super) fn parse_uint(key: &str, v: &str, lo: u64, hi: u64, why: &str) -> Result<u64> {
    let n = si_cast(v, false)
        .map_err(|e| bad_value(key, v, OptType::Uint, &e.detail(OptType::Uint)))?;
    if n < i128::from(lo) || n > i128::from(hi) {
        return Err(out_of_range(
            key,
            v,
            OptType::Uint,
            lo.into(),
            hi.into(),
            why,
        ));
    }
    Ok(n as u64)
}

pub(super) fn parse_int(key: &str, v: &str, lo: i64, hi: i64, why: &str) -> Result<i64> {
    let n =
        si_cast(v, true).map_err(|e| bad_value(key, v, OptType::Int, &e.detail(OptType::Int)))?;
    if n < i128::from(lo) || n > i128::from(hi) {
        return Err(out_of_range(
            key,
            v,
            OptType::Int,
            lo.into(),
            hi.into(),
            why,
        ));
    }
    Ok(n as i64)
}

pub(super) fn parse_size(key: &str, v: &str, lo: u64, hi: u64, why: &str) -> Result<u64> {
    let n = iec_cast(v).map_err(|e| bad_value(key, v, OptType::Size, &e.detail(OptType::Size)))?;
    if n < lo || n > hi {
        return Err(out_of_range(
            key,
            v,
            OptType::Size,
            lo.into(),
            hi.into(),
            why,
        ));
    }
    Ok(n)
}

/// The check of an option that admits only some values of its type: Ok if
/// `value` (parsed from the text `v`) is one of `allowed`, else an error
/// listing them, followed by `note` in parentheses if it is not empty.
pub(super) fn check_one_of<T, A>(
    key: &str,
    v: &str,
    ty: OptType,
    value: &T,
    allowed: &[A],
    note: &str,
) -> Result<()>
where
    T: PartialEq<A>,
    A: std::fmt::Debug,
{
    if allowed.iter().any(|a| value == a) {
        return Ok(());
    }
    let list: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
    let mut msg = format!(
        "{key} = {v:?}: expected {} that is one of {}",
        ty.expected(),
        list.join(", ")
    );
    if !note.is_empty() {
        msg.push_str(&format!(" ({note})"));
    }
    Err(Error::inval(msg))
}
