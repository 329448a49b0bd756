//! Configuration by Ceph's own option names (Ceph 16.2.15 "pacific").
//!
//! Every option the RDMA stack reads is declared in one table, [`options()`]:
//! first the Ceph options with Ceph's types and defaults, then ibstack's own
//! extensions (names starting with `ibstack_`). A [`Config`] holds the typed
//! values; it is filled from defaults, from `key = value` pairs ([`Config::set`])
//! or from a ceph.conf file ([`Config::load_file`] / [`Config::load_str`]).
//!
//! Values are written in Ceph's syntax for the option's type (see
//! `value.rs`, which documents it). On top of Ceph's syntax we apply range
//! checks an RDMA engineer expects
//! (port numbers start at 1, the service level has 4 bits, ...). Ceph itself
//! does not range-check these options.
//!
//! # Option names
//!
//! [`normalize_key`] implements Ceph's `ConfFile::normalize_key_name`
//! (`src/common/ConfUtils.cc`): trim surrounding white space and replace each
//! inner run of white space by one `_`; case is kept (option names are
//! case-sensitive in Ceph). In addition dashes become underscores, which is
//! the rule Ceph applies to command-line options (`dashes_to_underscores` in
//! `src/common/ceph_argparse.cc`); Ceph's conf-file reader does not do that.
//!
//! Keys outside our namespaces (`ms_async_rdma_*`, `ibstack_*`,
//! `ms_tcp_listen_backlog`) belong to other Ceph subsystems and are ignored,
//! so a complete ceph.conf loads. A key inside our namespaces that is not an
//! option (a typo) is an error, as is one that differs only in case.
//!
//! # Files
//!
//! * `options.rs`: the options, each declared once: name, [`Config`]
//!   field, type, default, checks and description.
//! * `declare.rs`: the `options!` macro that turns those declarations into
//!   the [`Config`] struct, its `Default`, the table and the setter and
//!   getter of each option.
//! * `mod.rs` (here): the option types, [`options()`], key normalization
//!   and [`Config`]'s methods (set, get, loading ceph.conf, JSON).
//! * `value.rs`: Ceph's value parsers and the bad-value messages.
//! * `conf.rs`: the ceph.conf reader and the sections a daemon reads.
//! * `suggest.rs`: unknown option names and the "did you mean" hint.
//! * `tests.rs`: the tests.

#[macro_use]
mod declare;
mod conf;
mod options;
mod suggest;
mod value;

pub use options::Config;

use crate::error::{Error, Result};
use crate::text::json_string;
use conf::{parse_conf, sections_for, ConfEntry};
use options::{apply, text_of, OPTIONS};
use std::path::Path;
use suggest::{suggestion_text, unknown_option};

/// The type of an option, with Ceph's type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptType {
    Str,
    Bool,
    Size,
    Uint,
    Int,
}

impl OptType {
    /// Ceph's name for the type: "str", "bool", "size", "uint", "int".
    pub fn name(self) -> &'static str {
        match self {
            OptType::Str => "str",
            OptType::Bool => "bool",
            OptType::Size => "size",
            OptType::Uint => "uint",
            OptType::Int => "int",
        }
    }

    /// "expected ..." phrase used in error messages.
    fn expected(self) -> &'static str {
        match self {
            OptType::Str => "a string (str)",
            OptType::Bool => "a boolean (bool)",
            OptType::Size => "a size in bytes (size)",
            OptType::Uint => "an unsigned integer (uint)",
            OptType::Int => "an integer (int)",
        }
    }

    /// What a well-formed value of this type looks like.
    fn syntax_hint(self) -> &'static str {
        match self {
            OptType::Str => "any text",
            OptType::Bool => "use true or false (any case), or an integer where nonzero means true",
            OptType::Size => {
                "use digits with an optional IEC unit K, M, G, T, P or E (powers of 1024), \
                 optionally followed by i and/or B, e.g. 131072, 128K, 128KiB"
            }
            OptType::Uint | OptType::Int => {
                "use decimal digits with an optional SI suffix K, M, G, T, P or E \
                 (powers of 1000), e.g. 1000 or 1K"
            }
        }
    }
}

/// One option: its Ceph name, type, default (in the canonical text form that
/// [`Config::get`] returns) and a one-line description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionSpec {
    pub name: &'static str,
    pub ty: OptType,
    pub default: &'static str,
    pub desc: &'static str,
}

/// Every option, Ceph's first (in Ceph's order), then ibstack's.
pub fn options() -> &'static [OptionSpec] {
    OPTIONS
}

fn find_option(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.name == name)
}

/// Whether a (normalized) key belongs to the option namespaces this module
/// owns. Case-insensitive, so that `MS_ASYNC_RDMA_PORT_NUM` is reported as a
/// mistake instead of being silently ignored.
fn in_our_namespace(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.starts_with("ms_async_rdma_") || k.starts_with("ibstack_") || k == "ms_tcp_listen_backlog"
}

/// Ceph's key normalization: trim white space, replace each inner run of
/// white space by a single `_`, keep case. Dashes also become `_` (Ceph's
/// command-line rule).
pub fn normalize_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut pending_space = false;
    for c in key.trim_matches(is_c_space).chars() {
        if is_c_space(c) {
            pending_space = true;
            continue;
        }
        if pending_space {
            out.push('_');
            pending_space = false;
        }
        out.push(if c == '-' { '_' } else { c });
    }
    out
}

/// C `isspace` in the "C" locale.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// The value a daemon section sees for any ceph.conf key, including keys of
/// other Ceph subsystems that [`Config`] ignores (`ms_type`,
/// `public_network`, ...): the sections of `section` in the order of
/// [`Config::load_str`], the last occurrence in the strongest section
/// winning. `None` when no applicable section sets it. The key is normalized
/// ([`normalize_key`]).
pub fn conf_value(text: &str, origin: &str, section: &str, key: &str) -> Result<Option<String>> {
    let entries = parse_conf(text, origin)?;
    let key = normalize_key(key);
    let wanted = sections_for(section);
    let mut best: Option<(usize, &ConfEntry)> = None;
    for e in entries.iter().filter(|e| e.key == key) {
        let Some(prio) = wanted.iter().position(|s| *s == e.section) else { continue };
        match best {
            Some((p, _)) if p > prio => {}
            _ => best = Some((prio, e)),
        }
    }
    Ok(best.map(|(_, e)| e.value.clone()))
}

impl Config {
    /// Set one option from its text form. The key is normalized first
    /// ([`normalize_key`]). On error (EINVAL) the configuration is unchanged.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let key = normalize_key(key);
        let mut next = self.clone();
        apply(&mut next, &key, value)?;
        *self = next;
        Ok(())
    }

    /// The canonical text form of an option's value: sizes as plain bytes,
    /// booleans as `true`/`false`, integers in decimal, strings as is.
    pub fn get(&self, key: &str) -> Result<String> {
        let key = normalize_key(key);
        text_of(self, &key).ok_or_else(|| unknown_option(&key))
    }

    /// Load a ceph.conf file; see [`Config::load_str`]. A file that cannot
    /// be read fails with the OS errno (e.g. ENOENT) and names the path.
    pub fn load_file(&mut self, path: &Path, section: &str) -> Result<()> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| {
            Error::new(
                e.raw_os_error().unwrap_or(libc::EIO),
                format!("cannot read config file {origin}: {e}"),
            )
        })?;
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
                return Err(Error::inval(format!(
                    "{origin}:{line}: invalid UTF-8 in config file"
                )));
            }
        };
        self.load_str(&text, &origin, section)
    }

    /// Load ceph.conf text. `origin` names the text in messages (usually the
    /// file path). `section` is the daemon name whose values apply: `""` or
    /// `"global"` reads `[global]` only; `"osd"` reads `[global]` then `[osd]`;
    /// `"osd.3"` reads `[global]`, `[osd]`, `[osd.3]`, later ones overriding.
    /// The whole text is syntax-checked. Option names of our namespaces are
    /// checked in the sections that apply; of those, only the value that
    /// wins for each option is type- and range-checked (as Ceph parses only
    /// the winning value). Keys of other Ceph subsystems are ignored. On
    /// error the configuration is unchanged.
    pub fn load_str(&mut self, text: &str, origin: &str, section: &str) -> Result<()> {
        let entries = parse_conf(text, origin)?;
        let wanted = sections_for(section);

        // For each option, the entry that wins: the highest-priority section,
        // and within a section the last occurrence.
        let mut winner: Vec<Option<(usize, &ConfEntry)>> = vec![None; OPTIONS.len()];
        for e in &entries {
            let Some(prio) = wanted.iter().position(|s| *s == e.section) else {
                continue;
            };
            if !in_our_namespace(&e.key) {
                continue; // another Ceph subsystem's option
            }
            let Some(idx) = OPTIONS.iter().position(|o| o.name == e.key) else {
                return Err(Error::inval(format!(
                    "{origin}:{}: unknown option {:?} in section [{}]{}",
                    e.line,
                    e.key,
                    e.section,
                    suggestion_text(&e.key)
                )));
            };
            match winner[idx] {
                Some((p, _)) if p > prio => {}
                _ => winner[idx] = Some((prio, e)),
            }
        }
        let mut chosen: Vec<&ConfEntry> = winner.into_iter().flatten().map(|(_, e)| e).collect();
        chosen.sort_by_key(|e| e.line);

        let mut next = self.clone();
        for e in chosen {
            apply(&mut next, &e.key, &e.value)
                .map_err(|err| err.context(format!("{origin}:{}", e.line)))?;
        }
        *self = next;
        Ok(())
    }

    /// Every option as one JSON object, in [`options()`] order: strings as
    /// JSON strings, booleans as `true`/`false`, numbers as JSON numbers.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        for (i, o) in OPTIONS.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_string(&mut out, o.name);
            out.push(':');
            let v = self
                .get(o.name)
                .expect("every option in the table has a getter");
            match o.ty {
                OptType::Str => json_string(&mut out, &v),
                _ => out.push_str(&v),
            }
        }
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests;
