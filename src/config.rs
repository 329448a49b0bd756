//! Configuration by Ceph's own option names (Ceph 16.2.15 "pacific").
//!
//! Every option the RDMA stack reads is declared in one table, [`options()`]:
//! first the Ceph options with Ceph's types and defaults, then ibstack's own
//! extensions (names starting with `ibstack_`). A [`Config`] holds the typed
//! values; it is filled from defaults, from `key = value` pairs ([`Config::set`])
//! or from a ceph.conf file ([`Config::load_file`] / [`Config::load_str`]).
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
//!
//! On top of Ceph's syntax we apply range checks an RDMA engineer expects
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
//! # ceph.conf syntax (Ceph's `ConfFile` grammar in `src/common/ConfUtils.cc`)
//!
//! * `[name]` starts a section; the name is every character up to `]`
//!   (white space included, not trimmed; `\]` escapes a bracket). `[]`, a
//!   missing `]`, or text other than a comment after `]` is an error.
//! * `key = value`; the key is one or more words separated by blanks and may
//!   not contain `[`, `#` or `;`.
//! * `#` and `;` start a comment, on their own line or after a value.
//! * A backslash before a line break joins the next line (outside quotes);
//!   a backslash before any other character makes that character literal
//!   (`\#`, `\;`, `\"`, `\\`).
//! * A value may be enclosed in double or single quotes; text after the
//!   closing quote other than a comment is an error, a missing closing quote
//!   is an error.
//! * Values are trimmed of surrounding white space *after* unquoting (Ceph's
//!   `conf_line_t` does this, so quotes do not preserve edge spaces).
//! * Within one section the last occurrence of a key wins; sections with the
//!   same name are merged.
//! * A daemon `type.id` reads each option from `[type.id]`, else `[type]`,
//!   else `[global]` (`md_config_t::_get_my_sections` in
//!   `src/common/config.cc`). Only the value that wins is parsed, so a bad
//!   value that is overridden for this daemon does not fail its load.
//!
//! Deliberate, compatible extensions (files Ceph accepts mean the same here):
//! `#` and `;` inside quotes are literal (Ceph 16 rejects them unless
//! escaped); `key = value` lines before the first section header belong to
//! `[global]` (Ceph 16 accepts that only for a file of exactly one line);
//! the last line need not end with a newline (Ceph 16 requires it); a UTF-8
//! byte-order mark is skipped. Continuations inside quotes are not supported
//! (Ceph does not support them either).
//!
//! Keys outside our namespaces (`ms_async_rdma_*`, `ibstack_*`,
//! `ms_tcp_listen_backlog`) belong to other Ceph subsystems and are ignored,
//! so a complete ceph.conf loads. A key inside our namespaces that is not an
//! option (a typo) is an error, as is one that differs only in case.

use crate::error::{Error, Result};
use std::path::Path;

// ---------------------------------------------------------------------------
// Option table
// ---------------------------------------------------------------------------

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

const fn spec(
    name: &'static str,
    ty: OptType,
    default: &'static str,
    desc: &'static str,
) -> OptionSpec {
    OptionSpec {
        name,
        ty,
        default,
        desc,
    }
}

static OPTIONS: [OptionSpec; 23] = [
    // --- Ceph 16.2.15 options (names, types and defaults as Ceph defines them)
    spec(
        "ms_async_rdma_device_name",
        OptType::Str,
        "",
        "RDMA device to use (e.g. mlx5_0); empty = the first device found",
    ),
    spec(
        "ms_async_rdma_enable_hugepage",
        OptType::Bool,
        "false",
        "allocate the registered buffer pools from huge pages",
    ),
    spec(
        "ms_async_rdma_buffer_size",
        OptType::Size,
        "131072",
        "size of each registered send/receive buffer (chunk) in bytes",
    ),
    spec(
        "ms_async_rdma_send_buffers",
        OptType::Uint,
        "1024",
        "number of registered send buffers",
    ),
    spec(
        "ms_async_rdma_receive_buffers",
        OptType::Uint,
        "32768",
        "number of registered receive buffers",
    ),
    spec(
        "ms_async_rdma_receive_queue_len",
        OptType::Uint,
        "4096",
        "depth of the (shared) receive queue",
    ),
    spec(
        "ms_async_rdma_support_srq",
        OptType::Bool,
        "true",
        "use a shared receive queue for all queue pairs",
    ),
    spec(
        "ms_async_rdma_port_num",
        OptType::Uint,
        "1",
        "device port to use (ports are numbered from 1)",
    ),
    spec(
        "ms_async_rdma_polling_us",
        OptType::Uint,
        "1000",
        "busy-poll the completion queues this long before sleeping, in microseconds",
    ),
    spec(
        "ms_async_rdma_gid_idx",
        OptType::Int,
        "0",
        "GID table index; selects e.g. a RoCEv1 or RoCEv2 GID",
    ),
    spec(
        "ms_async_rdma_local_gid",
        OptType::Str,
        "",
        "local GID to use instead of looking it up by index",
    ),
    spec(
        "ms_async_rdma_roce_ver",
        OptType::Int,
        "1",
        "RoCE version used with RDMA-CM",
    ),
    spec(
        "ms_async_rdma_sl",
        OptType::Int,
        "3",
        "InfiniBand service level of the queue pairs",
    ),
    spec(
        "ms_async_rdma_dscp",
        OptType::Int,
        "96",
        "traffic class byte for RoCE (96 = DSCP 24)",
    ),
    spec(
        "ms_async_rdma_cm",
        OptType::Bool,
        "false",
        "set up connections with RDMA-CM instead of the TCP handshake",
    ),
    spec(
        "ms_async_rdma_type",
        OptType::Str,
        "ib",
        "transport type: ib or iwarp",
    ),
    spec(
        "ms_tcp_listen_backlog",
        OptType::Int,
        "512",
        "backlog of the listening socket used for the connection handshake",
    ),
    // --- ibstack extensions (not Ceph options)
    spec(
        "ibstack_path_mtu",
        OptType::Uint,
        "1024",
        "ibstack extension: path MTU of the queue pairs (256, 512, 1024, 2048 or 4096)",
    ),
    spec(
        "ibstack_rx_first_block",
        OptType::Uint,
        "256",
        "ibstack extension: RX buffers registered in the first RX pool block (0 = Ceph's rule)",
    ),
    spec(
        "ibstack_qp_history_len",
        OptType::Uint,
        "64",
        "ibstack extension: number of destroyed queue pairs whose history is kept",
    ),
    spec(
        "ibstack_max_inflight_per_conn",
        OptType::Uint,
        "0",
        "ibstack extension: cap on in-flight TX chunks per connection (0 = half the TX pool)",
    ),
    spec(
        "ibstack_cq_depth",
        OptType::Uint,
        "30000",
        "ibstack extension: number of entries of each completion queue",
    ),
    spec(
        "ibstack_stack_thread",
        OptType::Bool,
        "true",
        "ibstack extension: the stack runs its own polling thread (false = the host drives it via ibstack_stack_fd / ibstack_stack_poll)",
    ),
];

/// Every option, Ceph's first (in Ceph's order), then ibstack's.
pub fn options() -> &'static [OptionSpec] {
    &OPTIONS
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

// ---------------------------------------------------------------------------
// Typed configuration
// ---------------------------------------------------------------------------

/// The typed values of every option.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub device_name: String,
    pub enable_hugepage: bool,
    pub buffer_size: u64,
    pub send_buffers: u32,
    pub receive_buffers: u32,
    pub receive_queue_len: u32,
    pub support_srq: bool,
    pub port_num: u32,
    pub polling_us: u32,
    pub gid_idx: u32,
    pub local_gid: String,
    pub roce_ver: u32,
    pub sl: u8,
    pub dscp: u8,
    pub cm: bool,
    pub rdma_type: String,
    pub tcp_listen_backlog: i32,
    pub path_mtu: u32,
    pub rx_first_block: u32,
    pub qp_history_len: u32,
    pub max_inflight_per_conn: u32,
    pub cq_depth: u32,
    pub stack_thread: bool,
}

impl Default for Config {
    /// Ceph 16.2.15's defaults, plus ibstack's for its own options.
    fn default() -> Self {
        Config {
            device_name: String::new(),
            enable_hugepage: false,
            buffer_size: 128 << 10,
            send_buffers: 1024,
            receive_buffers: 32768,
            receive_queue_len: 4096,
            support_srq: true,
            port_num: 1,
            polling_us: 1000,
            gid_idx: 0,
            local_gid: String::new(),
            roce_ver: 1,
            sl: 3,
            dscp: 96,
            cm: false,
            rdma_type: "ib".to_owned(),
            tcp_listen_backlog: 512,
            path_mtu: 1024,
            rx_first_block: 256,
            qp_history_len: 64,
            max_inflight_per_conn: 0,
            cq_depth: 30000,
            stack_thread: true,
        }
    }
}

const U32_MAX: u64 = u32::MAX as u64;
const WHY_U32: &str = "the value must fit in 32 bits";

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
        Ok(match key.as_str() {
            "ms_async_rdma_device_name" => self.device_name.clone(),
            "ms_async_rdma_enable_hugepage" => self.enable_hugepage.to_string(),
            "ms_async_rdma_buffer_size" => self.buffer_size.to_string(),
            "ms_async_rdma_send_buffers" => self.send_buffers.to_string(),
            "ms_async_rdma_receive_buffers" => self.receive_buffers.to_string(),
            "ms_async_rdma_receive_queue_len" => self.receive_queue_len.to_string(),
            "ms_async_rdma_support_srq" => self.support_srq.to_string(),
            "ms_async_rdma_port_num" => self.port_num.to_string(),
            "ms_async_rdma_polling_us" => self.polling_us.to_string(),
            "ms_async_rdma_gid_idx" => self.gid_idx.to_string(),
            "ms_async_rdma_local_gid" => self.local_gid.clone(),
            "ms_async_rdma_roce_ver" => self.roce_ver.to_string(),
            "ms_async_rdma_sl" => self.sl.to_string(),
            "ms_async_rdma_dscp" => self.dscp.to_string(),
            "ms_async_rdma_cm" => self.cm.to_string(),
            "ms_async_rdma_type" => self.rdma_type.clone(),
            "ms_tcp_listen_backlog" => self.tcp_listen_backlog.to_string(),
            "ibstack_path_mtu" => self.path_mtu.to_string(),
            "ibstack_rx_first_block" => self.rx_first_block.to_string(),
            "ibstack_qp_history_len" => self.qp_history_len.to_string(),
            "ibstack_max_inflight_per_conn" => self.max_inflight_per_conn.to_string(),
            "ibstack_cq_depth" => self.cq_depth.to_string(),
            "ibstack_stack_thread" => self.stack_thread.to_string(),
            _ => return Err(unknown_option(&key)),
        })
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

/// Appends `s` as a JSON string literal (quoted, escaped).
pub(crate) fn json_string(out: &mut String, s: &str) {
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

/// Parse `value` for the option `name` (already normalized) into `c`.
fn apply(c: &mut Config, name: &str, v: &str) -> Result<()> {
    match name {
        "ms_async_rdma_device_name" => c.device_name = v.to_owned(),
        "ms_async_rdma_enable_hugepage" => c.enable_hugepage = parse_bool(name, v)?,
        "ms_async_rdma_buffer_size" => {
            c.buffer_size = parse_size(
                name,
                v,
                1,
                1 << 30,
                "a registered buffer holds at least 1 byte and at most 1 GiB (1073741824)",
            )?
        }
        "ms_async_rdma_send_buffers" => {
            c.send_buffers =
                parse_uint(name, v, 1, U32_MAX, "at least one send buffer is needed")? as u32
        }
        "ms_async_rdma_receive_buffers" => {
            c.receive_buffers = parse_uint(name, v, 0, U32_MAX, WHY_U32)? as u32
        }
        "ms_async_rdma_receive_queue_len" => {
            c.receive_queue_len = parse_uint(
                name,
                v,
                1,
                U32_MAX,
                "a receive queue needs at least one entry",
            )? as u32
        }
        "ms_async_rdma_support_srq" => c.support_srq = parse_bool(name, v)?,
        "ms_async_rdma_port_num" => {
            c.port_num = parse_uint(
                name,
                v,
                1,
                255,
                "device ports are numbered from 1 (see ibv_devinfo) and the port number is 8 bits",
            )? as u32
        }
        "ms_async_rdma_polling_us" => {
            c.polling_us = parse_uint(name, v, 0, U32_MAX, WHY_U32)? as u32
        }
        "ms_async_rdma_gid_idx" => c.gid_idx = parse_int(
            name,
            v,
            0,
            65535,
            "a GID table index is 0 or more (Ceph would accept a negative index and fail later)",
        )? as u32,
        "ms_async_rdma_local_gid" => c.local_gid = v.to_owned(),
        "ms_async_rdma_roce_ver" => {
            c.roce_ver = parse_int(name, v, 0, 2, "the RoCE version is 0, 1 or 2")? as u32
        }
        "ms_async_rdma_sl" => {
            c.sl = parse_int(name, v, 0, 15, "an InfiniBand service level has 4 bits")? as u8
        }
        "ms_async_rdma_dscp" => {
            c.dscp = parse_int(
                name,
                v,
                0,
                255,
                "it is the 8-bit traffic class byte (DSCP << 2; 96 = DSCP 24)",
            )? as u8
        }
        "ms_async_rdma_cm" => c.cm = parse_bool(name, v)?,
        "ms_async_rdma_type" => {
            if v != "ib" && v != "iwarp" {
                return Err(Error::inval(format!(
                    "{name} = {v:?}: expected {} that is one of \"ib\", \"iwarp\"",
                    OptType::Str.expected()
                )));
            }
            c.rdma_type = v.to_owned();
        }
        "ms_tcp_listen_backlog" => {
            c.tcp_listen_backlog = parse_int(
                name,
                v,
                i32::MIN as i64,
                i32::MAX as i64,
                "the value must fit in a 32-bit signed integer",
            )? as i32
        }
        "ibstack_path_mtu" => {
            let mtu = parse_uint(name, v, 0, U32_MAX, WHY_U32)?;
            if ![256, 512, 1024, 2048, 4096].contains(&mtu) {
                return Err(Error::inval(format!(
                    "{name} = {v:?}: expected {} that is one of 256, 512, 1024, 2048, 4096 \
                     (the InfiniBand path MTU sizes; note 4K means 4000 for a uint)",
                    OptType::Uint.expected()
                )));
            }
            c.path_mtu = mtu as u32;
        }
        "ibstack_rx_first_block" => {
            c.rx_first_block = parse_uint(name, v, 0, U32_MAX, WHY_U32)? as u32
        }
        "ibstack_qp_history_len" => {
            c.qp_history_len = parse_uint(name, v, 0, U32_MAX, WHY_U32)? as u32
        }
        "ibstack_max_inflight_per_conn" => {
            c.max_inflight_per_conn = parse_uint(name, v, 0, U32_MAX, WHY_U32)? as u32
        }
        "ibstack_cq_depth" => {
            c.cq_depth = parse_uint(
                name,
                v,
                1,
                U32_MAX,
                "a completion queue needs at least one entry",
            )? as u32
        }
        "ibstack_stack_thread" => c.stack_thread = parse_bool(name, v)?,
        _ => return Err(unknown_option(name)),
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Unknown keys and suggestions
// ---------------------------------------------------------------------------

fn unknown_option(key: &str) -> Error {
    if key.is_empty() {
        return Error::inval("no option name given");
    }
    Error::inval(format!("unknown option {key:?}{}", suggestion_text(key)))
}

fn suggestion_text(key: &str) -> String {
    match suggest(key) {
        Some((name, true)) => format!("; did you mean {name}? (option names are case-sensitive)"),
        Some((name, false)) => format!("; did you mean {name}?"),
        None => String::new(),
    }
}

/// A close option name for an unknown key, and whether it differs only in case.
fn suggest(key: &str) -> Option<(&'static str, bool)> {
    let k = key.to_ascii_lowercase();
    if k.is_empty() {
        return None;
    }
    if let Some(o) = find_option(&k) {
        return Some((o.name, true));
    }
    // A small misspelling: "ms_async_rdma_gid_index", "ms_async_rdma_bufer_size".
    let best = OPTIONS
        .iter()
        .map(|o| (edit_distance(&k, o.name), o.name))
        .min_by_key(|&(d, _)| d)?;
    if best.0 <= 3 && best.0 * 3 <= k.len() {
        return Some((best.1, false));
    }
    let unique = |pred: &dyn Fn(&str) -> bool| {
        let mut it = OPTIONS.iter().filter(|o| pred(o.name));
        match (it.next(), it.next()) {
            (Some(o), None) => Some((o.name, false)),
            _ => None,
        }
    };
    // The name without its prefix: "port_num" for "ms_async_rdma_port_num".
    let suffix = format!("_{k}");
    if let Some(s) = unique(&|n: &str| n.ends_with(&suffix)) {
        return Some(s);
    }
    // Only the last word is wrong: "ibstack_cq_size" for "ibstack_cq_depth".
    let (stem, _) = k.rsplit_once('_')?;
    if stem.contains('_') {
        let stem = format!("{stem}_");
        return unique(&|n: &str| n.starts_with(&stem));
    }
    None
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a = a.as_bytes();
    let b = b.as_bytes();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let sub = prev[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

// ---------------------------------------------------------------------------
// Value parsing with Ceph's semantics
// ---------------------------------------------------------------------------

/// Why a number did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NumErr {
    Empty,
    NotNumber,
    TooBig,
    Negative,
    BadUnit(String),
}

impl NumErr {
    fn detail(&self, ty: OptType) -> String {
        match self {
            NumErr::Empty => "the value is empty".to_owned(),
            NumErr::NotNumber => format!("not a number; {}", ty.syntax_hint()),
            NumErr::TooBig => "the number is too large".to_owned(),
            NumErr::Negative => "negative values are not allowed".to_owned(),
            NumErr::BadUnit(u) => format!("unknown unit suffix {u:?}; {}", ty.syntax_hint()),
        }
    }
}

fn bad_value(key: &str, value: &str, ty: OptType, detail: &str) -> Error {
    let mut msg = format!("{key} = {value:?}: expected {}", ty.expected());
    if !detail.is_empty() {
        msg.push_str("; ");
        msg.push_str(detail);
    }
    Error::inval(msg)
}

fn out_of_range(key: &str, value: &str, ty: OptType, lo: i128, hi: i128, why: &str) -> Error {
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
fn strict_strtoll(s: &str) -> std::result::Result<i64, NumErr> {
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
fn si_cast(s: &str, signed: bool) -> std::result::Result<i128, NumErr> {
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
fn iec_cast(s: &str) -> std::result::Result<u64, NumErr> {
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
fn ceph_bool(s: &str) -> std::result::Result<bool, NumErr> {
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

fn parse_bool(key: &str, v: &str) -> Result<bool> {
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

fn parse_uint(key: &str, v: &str, lo: u64, hi: u64, why: &str) -> Result<u64> {
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

fn parse_int(key: &str, v: &str, lo: i64, hi: i64, why: &str) -> Result<i64> {
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

fn parse_size(key: &str, v: &str, lo: u64, hi: u64, why: &str) -> Result<u64> {
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

// ---------------------------------------------------------------------------
// ceph.conf parsing
// ---------------------------------------------------------------------------

/// One `key = value` line of a conf file.
#[derive(Debug, Clone, PartialEq)]
struct ConfEntry {
    section: String,
    /// Normalized key.
    key: String,
    /// Unquoted, unescaped, trimmed value.
    value: String,
    /// 1-based line where the key starts.
    line: usize,
}

/// Sections read for a daemon name, lowest priority first.
fn sections_for(name: &str) -> Vec<String> {
    let name = name.trim();
    let mut v = vec!["global".to_owned()];
    if name.is_empty() || name == "global" {
        return v;
    }
    if let Some((ty, _id)) = name.split_once('.') {
        if !ty.is_empty() && ty != "global" {
            v.push(ty.to_owned());
        }
    }
    v.push(name.to_owned());
    v
}

struct Scanner<'a> {
    chars: Vec<char>,
    pos: usize,
    /// 1-based current line.
    line: usize,
    origin: &'a str,
    lines: Vec<&'a str>,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str, origin: &'a str) -> Self {
        Scanner {
            chars: text.chars().collect(),
            pos: 0,
            line: 1,
            origin,
            lines: text
                .split('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l))
                .collect(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek2(&self) -> Option<char> {
        self.chars.get(self.pos + 1).copied()
    }

    /// Length of the line break at `p` ("\n" or "\r\n"), 0 if none.
    fn eol_len_at(&self, p: usize) -> usize {
        match self.chars.get(p) {
            Some('\n') => 1,
            Some('\r') if self.chars.get(p + 1) == Some(&'\n') => 2,
            _ => 0,
        }
    }

    fn at_eol(&self) -> bool {
        self.eol_len_at(self.pos) > 0
    }

    fn bump_eol(&mut self) {
        let n = self.eol_len_at(self.pos);
        if n > 0 {
            self.pos += n;
            self.line += 1;
        }
    }

    /// A backslash immediately followed by a line break.
    fn at_continuation(&self) -> bool {
        self.peek() == Some('\\') && self.eol_len_at(self.pos + 1) > 0
    }

    fn skip_continuation(&mut self) {
        self.pos += 1;
        self.bump_eol();
    }

    /// Skip spaces, tabs and line continuations.
    fn skip_blanks(&mut self) {
        loop {
            match self.peek() {
                Some(' ') | Some('\t') => self.pos += 1,
                Some('\\') if self.at_continuation() => self.skip_continuation(),
                _ => break,
            }
        }
    }

    fn skip_to_eol(&mut self) {
        while self.peek().is_some() && !self.at_eol() {
            self.pos += 1;
        }
    }

    fn rest_of_line(&self) -> String {
        let mut p = self.pos;
        let mut s = String::new();
        while let Some(&c) = self.chars.get(p) {
            if self.eol_len_at(p) > 0 {
                break;
            }
            s.push(c);
            p += 1;
        }
        s.trim_end_matches(is_c_space).to_owned()
    }

    fn line_text(&self, line: usize) -> &str {
        self.lines
            .get(line.wrapping_sub(1))
            .map(|l| l.trim())
            .unwrap_or("")
    }

    fn err(&self, line: usize, msg: impl std::fmt::Display) -> Error {
        Error::inval(format!("{}:{}: {}", self.origin, line, msg))
    }

    /// After a header or a value: blanks, an optional comment, then a line
    /// break or the end of the text.
    fn end_of_statement(&mut self, after: &str) -> Result<()> {
        self.skip_blanks();
        match self.peek() {
            None => Ok(()),
            Some('#') | Some(';') => {
                self.skip_to_eol();
                self.bump_eol();
                Ok(())
            }
            Some(_) if self.at_eol() => {
                self.bump_eol();
                Ok(())
            }
            Some(_) => Err(self.err(
                self.line,
                format!("unexpected text {:?} after {after}", self.rest_of_line()),
            )),
        }
    }

    /// `[name]`; the cursor is on `[`.
    fn heading(&mut self, line: usize) -> Result<String> {
        let malformed = |sc: &Self, why: &str| {
            sc.err(
                line,
                format!("malformed section header {:?}: {why}", sc.line_text(line)),
            )
        };
        self.pos += 1;
        let mut name = String::new();
        loop {
            match self.peek() {
                None => return Err(malformed(self, "missing closing ']'")),
                Some(_) if self.at_eol() => return Err(malformed(self, "missing closing ']'")),
                Some('#') | Some(';') => {
                    return Err(malformed(
                        self,
                        "'#' and ';' start a comment; write \\# or \\; inside a section name",
                    ))
                }
                Some(']') => {
                    self.pos += 1;
                    break;
                }
                Some('\\') if self.at_continuation() => self.skip_continuation(),
                Some('\\') => match self.peek2() {
                    Some(c) => {
                        name.push(c);
                        self.pos += 2;
                    }
                    None => {
                        name.push('\\');
                        self.pos += 1;
                    }
                },
                Some(c) => {
                    name.push(c);
                    self.pos += 1;
                }
            }
        }
        if name.is_empty() {
            return Err(malformed(self, "empty section name"));
        }
        self.end_of_statement(&format!("section header [{name}]"))?;
        Ok(name)
    }

    /// `key = value`; the cursor is on the first character of the key.
    fn key_value(&mut self, line: usize, section: &str) -> Result<ConfEntry> {
        let mut raw_key = String::new();
        loop {
            match self.peek() {
                Some('=') => {
                    self.pos += 1;
                    break;
                }
                Some('[') => {
                    return Err(self.err(
                        line,
                        format!(
                            "'[' is not allowed in an option name: {:?}",
                            self.line_text(line)
                        ),
                    ))
                }
                None | Some('#') | Some(';') => return Err(self.not_a_statement(line)),
                Some(_) if self.at_eol() => return Err(self.not_a_statement(line)),
                Some('\\') if self.at_continuation() => self.skip_continuation(),
                Some('\\') => {
                    // Ceph keeps the key's raw text, escapes included.
                    raw_key.push('\\');
                    self.pos += 1;
                    if let Some(c) = self.peek() {
                        raw_key.push(c);
                        self.pos += 1;
                    }
                }
                Some(c) => {
                    raw_key.push(c);
                    self.pos += 1;
                }
            }
        }
        let key = normalize_key(&raw_key);
        if key.is_empty() {
            return Err(self.err(
                line,
                format!("missing option name before '=': {:?}", self.line_text(line)),
            ));
        }
        self.skip_blanks();
        let value = match self.peek() {
            Some(q @ ('"' | '\'')) => self.quoted(q, line, &key)?,
            _ => self.unquoted(&key)?,
        };
        Ok(ConfEntry {
            section: section.to_owned(),
            key,
            value: value.trim_matches(is_c_space).to_owned(),
            line,
        })
    }

    fn not_a_statement(&self, line: usize) -> Error {
        self.err(
            line,
            format!(
                "expected \"key = value\", a [section] header, a comment or a blank line, got {:?}",
                self.line_text(line)
            ),
        )
    }

    fn quoted(&mut self, q: char, line: usize, key: &str) -> Result<String> {
        self.pos += 1;
        let mut v = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(self.err(
                        line,
                        format!("unterminated quoted value of {key}: missing closing {q}"),
                    ))
                }
                Some(_) if self.at_eol() => {
                    return Err(self.err(
                        line,
                        format!("unterminated quoted value of {key}: missing closing {q}"),
                    ))
                }
                Some(c) if c == q => {
                    self.pos += 1;
                    break;
                }
                Some('\\') => match self.peek2() {
                    Some(c) if self.eol_len_at(self.pos + 1) == 0 => {
                        v.push(c);
                        self.pos += 2;
                    }
                    _ => {
                        v.push('\\');
                        self.pos += 1;
                    }
                },
                Some(c) => {
                    v.push(c);
                    self.pos += 1;
                }
            }
        }
        self.end_of_statement(&format!("the closing quote of {key}"))?;
        Ok(v)
    }

    fn unquoted(&mut self, key: &str) -> Result<String> {
        let mut v = String::new();
        loop {
            match self.peek() {
                None | Some('#') | Some(';') => break,
                Some(_) if self.at_eol() => break,
                Some('\\') if self.at_continuation() => self.skip_continuation(),
                Some('\\') => match self.peek2() {
                    Some(c) => {
                        v.push(c);
                        self.pos += 2;
                    }
                    None => {
                        v.push('\\');
                        self.pos += 1;
                    }
                },
                Some(c) => {
                    v.push(c);
                    self.pos += 1;
                }
            }
        }
        self.end_of_statement(&format!("the value of {key}"))?;
        Ok(v)
    }
}

/// Syntax-check the whole text and return its `key = value` lines.
fn parse_conf(text: &str, origin: &str) -> Result<Vec<ConfEntry>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut sc = Scanner::new(text, origin);
    let mut section = "global".to_owned();
    let mut out = Vec::new();
    loop {
        sc.skip_blanks();
        let line = sc.line;
        match sc.peek() {
            None => break,
            Some('#') | Some(';') => {
                sc.skip_to_eol();
                sc.bump_eol();
            }
            Some(_) if sc.at_eol() => sc.bump_eol(),
            Some('[') => section = sc.heading(line)?,
            Some(_) => out.push(sc.key_value(line, &section)?),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn set_err(key: &str, value: &str) -> Error {
        let mut c = Config::default();
        let e = c
            .set(key, value)
            .expect_err(&format!("{key} = {value:?} must fail"));
        assert_eq!(e.errno, libc::EINVAL, "{e:?}");
        assert_eq!(
            c,
            Config::default(),
            "a failed set must not change the config"
        );
        e
    }

    fn set_ok(key: &str, value: &str) -> Config {
        let mut c = Config::default();
        c.set(key, value)
            .unwrap_or_else(|e| panic!("{key} = {value:?}: {}", e.msg));
        c
    }

    // ----- table and defaults -------------------------------------------

    #[test]
    fn table_lists_ceph_options_then_ibstack_extensions() {
        let expected: [(&str, OptType, &str); 23] = [
            ("ms_async_rdma_device_name", OptType::Str, ""),
            ("ms_async_rdma_enable_hugepage", OptType::Bool, "false"),
            ("ms_async_rdma_buffer_size", OptType::Size, "131072"),
            ("ms_async_rdma_send_buffers", OptType::Uint, "1024"),
            ("ms_async_rdma_receive_buffers", OptType::Uint, "32768"),
            ("ms_async_rdma_receive_queue_len", OptType::Uint, "4096"),
            ("ms_async_rdma_support_srq", OptType::Bool, "true"),
            ("ms_async_rdma_port_num", OptType::Uint, "1"),
            ("ms_async_rdma_polling_us", OptType::Uint, "1000"),
            ("ms_async_rdma_gid_idx", OptType::Int, "0"),
            ("ms_async_rdma_local_gid", OptType::Str, ""),
            ("ms_async_rdma_roce_ver", OptType::Int, "1"),
            ("ms_async_rdma_sl", OptType::Int, "3"),
            ("ms_async_rdma_dscp", OptType::Int, "96"),
            ("ms_async_rdma_cm", OptType::Bool, "false"),
            ("ms_async_rdma_type", OptType::Str, "ib"),
            ("ms_tcp_listen_backlog", OptType::Int, "512"),
            ("ibstack_path_mtu", OptType::Uint, "1024"),
            ("ibstack_rx_first_block", OptType::Uint, "256"),
            ("ibstack_qp_history_len", OptType::Uint, "64"),
            ("ibstack_max_inflight_per_conn", OptType::Uint, "0"),
            ("ibstack_cq_depth", OptType::Uint, "30000"),
            ("ibstack_stack_thread", OptType::Bool, "true"),
        ];
        let got: Vec<(&str, OptType, &str)> = options()
            .iter()
            .map(|o| (o.name, o.ty, o.default))
            .collect();
        assert_eq!(got, expected.to_vec());
        for o in options() {
            assert!(!o.desc.is_empty(), "{} has no description", o.name);
            assert_eq!(
                o.desc.starts_with("ibstack extension"),
                o.name.starts_with("ibstack_"),
                "{}",
                o.name
            );
        }
    }

    #[test]
    fn type_names_are_cephs() {
        let names: Vec<&str> = [
            OptType::Str,
            OptType::Bool,
            OptType::Size,
            OptType::Uint,
            OptType::Int,
        ]
        .iter()
        .map(|t| t.name())
        .collect();
        assert_eq!(names, ["str", "bool", "size", "uint", "int"]);
    }

    #[test]
    fn defaults_equal_the_table() {
        let c = Config::default();
        assert_eq!(c.device_name, "");
        assert!(!c.enable_hugepage);
        assert_eq!(c.buffer_size, 131072);
        assert_eq!(c.send_buffers, 1024);
        assert_eq!(c.receive_buffers, 32768);
        assert_eq!(c.receive_queue_len, 4096);
        assert!(c.support_srq);
        assert_eq!(c.port_num, 1);
        assert_eq!(c.polling_us, 1000);
        assert_eq!(c.gid_idx, 0);
        assert_eq!(c.local_gid, "");
        assert_eq!(c.roce_ver, 1);
        assert_eq!(c.sl, 3);
        assert_eq!(c.dscp, 96);
        assert!(!c.cm);
        assert_eq!(c.rdma_type, "ib");
        assert_eq!(c.tcp_listen_backlog, 512);
        assert_eq!(c.path_mtu, 1024);
        assert_eq!(c.rx_first_block, 256);
        assert_eq!(c.qp_history_len, 64);
        assert_eq!(c.max_inflight_per_conn, 0);
        assert_eq!(c.cq_depth, 30000);
        // get() of every option is the table's default text.
        for o in options() {
            assert_eq!(c.get(o.name).unwrap(), o.default, "{}", o.name);
        }
    }

    #[test]
    fn setting_every_default_text_gives_the_default_config() {
        // Start from values that differ from the defaults in every field.
        let mut c = Config::default();
        for (k, v) in [
            ("ms_async_rdma_device_name", "x"),
            ("ms_async_rdma_enable_hugepage", "true"),
            ("ms_async_rdma_buffer_size", "4096"),
            ("ms_async_rdma_send_buffers", "7"),
            ("ms_async_rdma_receive_buffers", "7"),
            ("ms_async_rdma_receive_queue_len", "7"),
            ("ms_async_rdma_support_srq", "false"),
            ("ms_async_rdma_port_num", "2"),
            ("ms_async_rdma_polling_us", "7"),
            ("ms_async_rdma_gid_idx", "7"),
            ("ms_async_rdma_local_gid", "x"),
            ("ms_async_rdma_roce_ver", "2"),
            ("ms_async_rdma_sl", "7"),
            ("ms_async_rdma_dscp", "7"),
            ("ms_async_rdma_cm", "true"),
            ("ms_async_rdma_type", "iwarp"),
            ("ms_tcp_listen_backlog", "7"),
            ("ibstack_path_mtu", "4096"),
            ("ibstack_rx_first_block", "7"),
            ("ibstack_qp_history_len", "7"),
            ("ibstack_max_inflight_per_conn", "7"),
            ("ibstack_cq_depth", "7"),
        ] {
            c.set(k, v).unwrap();
            assert_ne!(c.get(k).unwrap(), find_option(k).unwrap().default, "{k}");
        }
        for o in options() {
            c.set(o.name, o.default).unwrap();
        }
        assert_eq!(c, Config::default());
    }

    // ----- size (IEC) -----------------------------------------------------

    #[test]
    fn size_accepts_iec_units() {
        for (text, bytes) in [
            ("131072", 131072u64),
            ("128K", 131072),
            ("128Ki", 131072),
            ("128KB", 131072),
            ("128KiB", 131072),
            ("1M", 1 << 20),
            ("1MiB", 1 << 20),
            ("1G", 1 << 30),
            ("100B", 100),
            ("+4K", 4096),
            ("1", 1),
        ] {
            let c = set_ok("ms_async_rdma_buffer_size", text);
            assert_eq!(c.buffer_size, bytes, "{text}");
            assert_eq!(
                c.get("ms_async_rdma_buffer_size").unwrap(),
                bytes.to_string()
            );
        }
    }

    #[test]
    fn iec_cast_matches_ceph_beyond_our_range() {
        assert_eq!(iec_cast("1T"), Ok(1 << 40));
        assert_eq!(iec_cast("1P"), Ok(1 << 50));
        assert_eq!(iec_cast("15E"), Ok(15 << 60));
        assert_eq!(iec_cast("16E"), Err(NumErr::TooBig));
        assert_eq!(iec_cast("-0"), Ok(0));
        assert_eq!(iec_cast("-1"), Err(NumErr::Negative));
        assert_eq!(iec_cast("1Bi"), Err(NumErr::BadUnit("Bi".into())));
        assert_eq!(iec_cast("1KX"), Err(NumErr::BadUnit("KX".into())));
        assert_eq!(iec_cast("1KiBB"), Err(NumErr::BadUnit("KiBB".into())));
        assert_eq!(iec_cast("99999999999999999999"), Err(NumErr::TooBig));
        assert_eq!(iec_cast("K"), Err(NumErr::NotNumber));
    }

    #[test]
    fn size_rejects_bad_text() {
        for bad in [
            "-1", "-4K", "1X", "1k", "1kb", "1.5K", "", "K", "1 K", " 1", "12abc", "0x10", "1Bi",
        ] {
            let e = set_err("ms_async_rdma_buffer_size", bad);
            assert!(e.msg.contains("ms_async_rdma_buffer_size"), "{}", e.msg);
            assert!(e.msg.contains("(size)"), "{}", e.msg);
            assert!(e.msg.contains(&format!("{bad:?}")), "{}", e.msg);
        }
        assert!(set_err("ms_async_rdma_buffer_size", "-1")
            .msg
            .contains("negative"));
        assert!(set_err("ms_async_rdma_buffer_size", "1X")
            .msg
            .contains("unknown unit suffix \"X\""));
        assert!(set_err("ms_async_rdma_buffer_size", "16E")
            .msg
            .contains("too large"));
    }

    #[test]
    fn buffer_size_range() {
        assert_eq!(
            set_ok("ms_async_rdma_buffer_size", "1GiB").buffer_size,
            1 << 30
        );
        let e = set_err("ms_async_rdma_buffer_size", "0");
        assert!(e.msg.contains("1..=1073741824"), "{}", e.msg);
        let e = set_err("ms_async_rdma_buffer_size", "2G");
        assert!(
            e.msg.contains("1..=1073741824") && e.msg.contains("\"2G\""),
            "{}",
            e.msg
        );
        set_err("ms_async_rdma_buffer_size", "1073741825");
    }

    // ----- uint / int (SI) ------------------------------------------------

    #[test]
    fn uint_uses_si_powers_of_1000() {
        for (text, n) in [
            ("1K", 1000u32),
            ("2M", 2_000_000),
            ("4G", 4_000_000_000),
            ("+7", 7),
            ("-0", 0),
            ("0", 0),
        ] {
            assert_eq!(
                set_ok("ms_async_rdma_polling_us", text).polling_us,
                n,
                "{text}"
            );
        }
        assert_eq!(
            set_ok("ms_async_rdma_send_buffers", "1K").send_buffers,
            1000
        );
        assert_eq!(
            set_ok("ms_async_rdma_receive_buffers", "64K").receive_buffers,
            64000
        );
        assert_eq!(
            set_ok("ms_async_rdma_polling_us", "4294967295").polling_us,
            u32::MAX
        );
    }

    #[test]
    fn si_cast_matches_ceph() {
        assert_eq!(si_cast("1E", false), Ok(1_000_000_000_000_000_000));
        assert_eq!(si_cast("18E", false), Ok(18_000_000_000_000_000_000));
        assert_eq!(si_cast("19E", false), Err(NumErr::TooBig));
        assert_eq!(si_cast("-9E", true), Ok(-9_000_000_000_000_000_000));
        assert_eq!(si_cast("10E", true), Err(NumErr::TooBig));
        assert_eq!(si_cast("9223372036854775808", false), Err(NumErr::TooBig));
        // 'B' is recognised but not stripped, so the number does not parse.
        assert_eq!(si_cast("100B", false), Err(NumErr::NotNumber));
        // strtoll skips leading white space; only the last char is a unit.
        assert_eq!(si_cast(" 5K", false), Ok(5000));
        assert_eq!(si_cast(" 5", false), Err(NumErr::BadUnit("5".into())));
        assert_eq!(si_cast("1Ki", false), Err(NumErr::BadUnit("i".into())));
    }

    #[test]
    fn uint_rejects_bad_text_and_overflow() {
        let e = set_err("ms_async_rdma_port_num", "abc");
        assert!(
            e.msg.starts_with(
                "ms_async_rdma_port_num = \"abc\": expected an unsigned integer (uint)"
            ),
            "{}",
            e.msg
        );
        let e = set_err("ms_async_rdma_polling_us", "-1");
        assert!(
            e.msg.contains("negative") && e.msg.contains("(uint)"),
            "{}",
            e.msg
        );
        let e = set_err("ms_async_rdma_polling_us", "4294967296");
        assert!(
            e.msg.contains("32 bits") && e.msg.contains("0..=4294967295"),
            "{}",
            e.msg
        );
        set_err("ms_async_rdma_polling_us", "5G");
        set_err("ms_async_rdma_polling_us", "99999999999999999999");
        let e = set_err("ms_async_rdma_polling_us", "1k");
        assert!(e.msg.contains("unknown unit suffix \"k\""), "{}", e.msg);
        for bad in [
            "1Ki", "100B", "1.5", "", " 7", "7 ", "0x10", "1,000", "K", "+-1",
        ] {
            let e = set_err("ms_async_rdma_receive_buffers", bad);
            assert!(e.msg.contains("(uint)"), "{bad:?}: {}", e.msg);
        }
    }

    #[test]
    fn int_parsing_and_overflow() {
        assert_eq!(set_ok("ms_tcp_listen_backlog", "-5").tcp_listen_backlog, -5);
        assert_eq!(
            set_ok("ms_tcp_listen_backlog", "1K").tcp_listen_backlog,
            1000
        );
        assert_eq!(
            set_ok("ms_tcp_listen_backlog", "-2147483648").tcp_listen_backlog,
            i32::MIN
        );
        let e = set_err("ms_tcp_listen_backlog", "3000000000");
        assert!(
            e.msg.contains("(int)") && e.msg.contains("32-bit"),
            "{}",
            e.msg
        );
        set_err("ms_tcp_listen_backlog", "3G");
        let e = set_err("ms_async_rdma_sl", "x3");
        assert!(e.msg.contains("expected an integer (int)"), "{}", e.msg);
    }

    // ----- bool -------------------------------------------------------------

    #[test]
    fn bool_follows_cephs_rule() {
        for (text, b) in [
            ("true", true),
            ("TRUE", true),
            ("True", true),
            ("false", false),
            ("FaLsE", false),
            ("1", true),
            ("0", false),
            ("-1", true),
            ("2", true),
            ("+0", false),
            ("00", false),
            ("2147483647", true),
        ] {
            assert_eq!(set_ok("ms_async_rdma_cm", text).cm, b, "{text}");
        }
        for bad in [
            "yes",
            "no",
            "on",
            "off",
            "",
            "t",
            "0x1",
            "1.0",
            "2147483648",
            "1K",
        ] {
            let e = set_err("ms_async_rdma_support_srq", bad);
            assert!(e.msg.contains("ms_async_rdma_support_srq"), "{}", e.msg);
            assert!(e.msg.contains("expected a boolean (bool)"), "{}", e.msg);
        }
    }

    // ----- str ----------------------------------------------------------------

    #[test]
    fn strings_are_taken_as_is() {
        assert_eq!(
            set_ok("ms_async_rdma_device_name", "mlx5_0").device_name,
            "mlx5_0"
        );
        let gid = "fe80:0000:0000:0000:0a0b:0cff:fe0d:0e0f";
        assert_eq!(set_ok("ms_async_rdma_local_gid", gid).local_gid, gid);
        assert_eq!(set_ok("ms_async_rdma_type", "iwarp").rdma_type, "iwarp");
        for bad in ["roce", "IB", "", " ib"] {
            let e = set_err("ms_async_rdma_type", bad);
            assert!(
                e.msg.contains("\"ib\", \"iwarp\"") && e.msg.contains("(str)"),
                "{}",
                e.msg
            );
        }
    }

    // ----- range checks -------------------------------------------------------

    #[test]
    fn range_checks() {
        let ok: &[(&str, &str)] = &[
            ("ms_async_rdma_port_num", "1"),
            ("ms_async_rdma_port_num", "255"),
            ("ms_async_rdma_sl", "0"),
            ("ms_async_rdma_sl", "15"),
            ("ms_async_rdma_dscp", "0"),
            ("ms_async_rdma_dscp", "255"),
            ("ms_async_rdma_gid_idx", "0"),
            ("ms_async_rdma_gid_idx", "65535"),
            ("ms_async_rdma_send_buffers", "1"),
            ("ms_async_rdma_receive_queue_len", "1"),
            ("ms_async_rdma_polling_us", "0"),
            ("ms_async_rdma_roce_ver", "0"),
            ("ms_async_rdma_roce_ver", "2"),
            ("ibstack_cq_depth", "1"),
            ("ibstack_rx_first_block", "0"),
        ];
        for (k, v) in ok {
            let c = set_ok(k, v);
            assert_eq!(c.get(k).unwrap(), *v, "{k}");
        }
        let bad: &[(&str, &str, &str)] = &[
            ("ms_async_rdma_port_num", "0", "1..=255"),
            ("ms_async_rdma_port_num", "256", "1..=255"),
            ("ms_async_rdma_sl", "16", "0..=15"),
            ("ms_async_rdma_sl", "-1", "0..=15"),
            ("ms_async_rdma_dscp", "256", "0..=255"),
            ("ms_async_rdma_dscp", "-1", "0..=255"),
            ("ms_async_rdma_gid_idx", "-1", "0..=65535"),
            ("ms_async_rdma_gid_idx", "65536", "0..=65535"),
            ("ms_async_rdma_send_buffers", "0", "1..="),
            ("ms_async_rdma_receive_queue_len", "0", "1..="),
            ("ms_async_rdma_roce_ver", "3", "0..=2"),
            ("ms_async_rdma_roce_ver", "-1", "0..=2"),
            ("ibstack_cq_depth", "0", "1..="),
        ];
        for (k, v, range) in bad {
            let e = set_err(k, v);
            assert!(
                e.msg.contains(k) && e.msg.contains(&format!("{v:?}")),
                "{}",
                e.msg
            );
            assert!(e.msg.contains(range), "{k}={v}: {}", e.msg);
            let ty = find_option(k).unwrap().ty.name();
            assert!(e.msg.contains(&format!("({ty})")), "{}", e.msg);
        }
    }

    #[test]
    fn path_mtu_must_be_an_ib_mtu() {
        for mtu in [256u32, 512, 1024, 2048, 4096] {
            assert_eq!(set_ok("ibstack_path_mtu", &mtu.to_string()).path_mtu, mtu);
        }
        for bad in ["0", "1000", "1500", "9000", "8192"] {
            let e = set_err("ibstack_path_mtu", bad);
            assert!(e.msg.contains("256, 512, 1024, 2048, 4096"), "{}", e.msg);
        }
        // SI: 4K is 4000, not an MTU.
        set_err("ibstack_path_mtu", "4K");
    }

    // ----- keys -------------------------------------------------------------

    #[test]
    fn normalize_key_follows_ceph() {
        assert_eq!(
            normalize_key("ms async rdma device name"),
            "ms_async_rdma_device_name"
        );
        assert_eq!(normalize_key("  ms_async_rdma_sl \t"), "ms_async_rdma_sl");
        assert_eq!(normalize_key("ms  \t async"), "ms_async");
        assert_eq!(
            normalize_key("ms-async-rdma-port-num"),
            "ms_async_rdma_port_num"
        );
        assert_eq!(normalize_key("MS_Async"), "MS_Async");
        assert_eq!(normalize_key(""), "");
    }

    #[test]
    fn set_and_get_accept_spaced_and_dashed_keys() {
        let mut c = Config::default();
        c.set("ms async rdma port num", "2").unwrap();
        c.set("ms-async-rdma-sl", "5").unwrap();
        c.set("  ms_async_rdma_dscp  ", "10").unwrap();
        assert_eq!((c.port_num, c.sl, c.dscp), (2, 5, 10));
        assert_eq!(c.get("ms async rdma sl").unwrap(), "5");
        assert_eq!(c.get("ibstack-cq-depth").unwrap(), "30000");
    }

    #[test]
    fn unknown_key_names_the_key_and_a_close_match() {
        let e = set_err("ms_async_rdma_gid_index", "1");
        assert!(e.msg.contains("\"ms_async_rdma_gid_index\""), "{}", e.msg);
        assert!(
            e.msg.contains("did you mean ms_async_rdma_gid_idx?"),
            "{}",
            e.msg
        );

        let e = set_err("ms_async_rdma_bufer_size", "1");
        assert!(
            e.msg.contains("did you mean ms_async_rdma_buffer_size?"),
            "{}",
            e.msg
        );

        let e = set_err("port_num", "1");
        assert!(
            e.msg.contains("did you mean ms_async_rdma_port_num?"),
            "{}",
            e.msg
        );

        let e = set_err("MS_ASYNC_RDMA_PORT_NUM", "1");
        assert!(
            e.msg.contains("did you mean ms_async_rdma_port_num?"),
            "{}",
            e.msg
        );
        assert!(e.msg.contains("case-sensitive"), "{}", e.msg);

        let e = set_err("osd_pool_default_size", "3");
        assert!(
            e.msg.contains("osd_pool_default_size") && !e.msg.contains("did you mean"),
            "{}",
            e.msg
        );

        let e = Config::default()
            .get("ms_async_rdma_gid_index")
            .unwrap_err();
        assert_eq!(e.errno, libc::EINVAL);
        assert!(
            e.msg.contains("did you mean ms_async_rdma_gid_idx?"),
            "{}",
            e.msg
        );

        assert_eq!(set_err("", "1").errno, libc::EINVAL);
    }

    // ----- get round trip -----------------------------------------------------

    #[test]
    fn get_round_trips_every_option() {
        let mut c = Config::default();
        let values = [
            ("ms_async_rdma_device_name", "mlx5_1", "mlx5_1"),
            ("ms_async_rdma_enable_hugepage", "True", "true"),
            ("ms_async_rdma_buffer_size", "64KiB", "65536"),
            ("ms_async_rdma_send_buffers", "2K", "2000"),
            ("ms_async_rdma_receive_buffers", "1M", "1000000"),
            ("ms_async_rdma_receive_queue_len", "8192", "8192"),
            ("ms_async_rdma_support_srq", "0", "false"),
            ("ms_async_rdma_port_num", "2", "2"),
            ("ms_async_rdma_polling_us", "0", "0"),
            ("ms_async_rdma_gid_idx", "3", "3"),
            ("ms_async_rdma_local_gid", "fe80::1", "fe80::1"),
            ("ms_async_rdma_roce_ver", "2", "2"),
            ("ms_async_rdma_sl", "+5", "5"),
            ("ms_async_rdma_dscp", "104", "104"),
            ("ms_async_rdma_cm", "7", "true"),
            ("ms_async_rdma_type", "iwarp", "iwarp"),
            ("ms_tcp_listen_backlog", "-1", "-1"),
            ("ibstack_path_mtu", "2048", "2048"),
            ("ibstack_rx_first_block", "0", "0"),
            ("ibstack_qp_history_len", "1K", "1000"),
            ("ibstack_max_inflight_per_conn", "16", "16"),
            ("ibstack_cq_depth", "60000", "60000"),
            ("ibstack_stack_thread", "FALSE", "false"),
        ];
        assert_eq!(values.len(), options().len());
        for (k, input, canonical) in values {
            c.set(k, input).unwrap();
            assert_eq!(c.get(k).unwrap(), canonical, "{k}");
        }
        // Feeding every canonical text back reproduces the same config.
        for o in options() {
            let mut d = Config::default();
            for p in options() {
                d.set(p.name, &c.get(p.name).unwrap()).unwrap();
            }
            assert_eq!(d, c, "{}", o.name);
        }
    }

    // ----- ceph.conf ----------------------------------------------------------

    const CEPH_CONF: &str = r#"# /etc/ceph/ceph.conf for a three-node RDMA test cluster
; generated by hand

[global]
    fsid = 0f3c2a8e-5b1d-4c7e-9a61-2d4f8b7c9e10
    mon initial members = a, b, c
    mon host = [v2:10.0.0.1:3300,v1:10.0.0.1:6789],[v2:10.0.0.2:3300,v1:10.0.0.2:6789]
    auth cluster required = cephx
    osd pool default size = 3
    ms_type = async+rdma
    ms cluster type = async+rdma
    ms async rdma device name = mlx5_0        ; the ConnectX-5
    ms_async_rdma_port_num = 1
    ms-async-rdma-gid-idx = 3                 # RoCEv2 GID
    ms_async_rdma_local_gid = "fe80:0000:0000:0000:0a0b:0cff:fe0d:0e0f"
    ms_async_rdma_buffer_size = 128K
    ms_async_rdma_send_buffers = 2K
    ms_async_rdma_type = "ib"
    ibstack_path_mtu = 4096

[osd]
    osd data = /var/lib/ceph/osd/$cluster-$id
    admin socket = "/var/run/ceph/$cluster-$name.asok"
    ms_async_rdma_receive_buffers = 64K
    ms_async_rdma_enable_hugepage = true
    ms_async_rdma_polling_us = \
        500

[osd.3]
    host = node3
    ms_async_rdma_device_name = mlx5_1
    ms_async_rdma_sl = 5
    ms_async_rdma_support_srq = false
    ms_async_rdma_polling_us = 250
    ibstack_cq_depth = 60000

[mon]
    mon data = /var/lib/ceph/mon/$cluster-$id
    ms_async_rdma_cm = 1
    ms_tcp_listen_backlog = 1024

[client]
    rbd cache = true
"#;

    fn global_expected() -> Config {
        Config {
            device_name: "mlx5_0".into(),
            port_num: 1,
            gid_idx: 3,
            local_gid: "fe80:0000:0000:0000:0a0b:0cff:fe0d:0e0f".into(),
            buffer_size: 131072,
            send_buffers: 2000,
            rdma_type: "ib".into(),
            path_mtu: 4096,
            ..Config::default()
        }
    }

    fn osd_expected() -> Config {
        Config {
            receive_buffers: 64000,
            enable_hugepage: true,
            polling_us: 500,
            ..global_expected()
        }
    }

    fn load(text: &str, section: &str) -> Result<Config> {
        let mut c = Config::default();
        c.load_str(text, "ceph.conf", section).map(|_| c)
    }

    #[test]
    fn realistic_ceph_conf_per_section() {
        assert_eq!(load(CEPH_CONF, "").unwrap(), global_expected());
        assert_eq!(load(CEPH_CONF, "global").unwrap(), global_expected());
        assert_eq!(load(CEPH_CONF, "osd").unwrap(), osd_expected());
        assert_eq!(
            load(CEPH_CONF, "osd.3").unwrap(),
            Config {
                device_name: "mlx5_1".into(),
                sl: 5,
                support_srq: false,
                polling_us: 250,
                cq_depth: 60000,
                ..osd_expected()
            }
        );
        // Another OSD gets [osd] but not [osd.3].
        assert_eq!(load(CEPH_CONF, "osd.7").unwrap(), osd_expected());
        assert_eq!(
            load(CEPH_CONF, "mon").unwrap(),
            Config {
                cm: true,
                tcp_listen_backlog: 1024,
                ..global_expected()
            }
        );
        assert_eq!(load(CEPH_CONF, "client.admin").unwrap(), global_expected());
    }

    #[test]
    fn load_file_reads_a_real_file_and_reports_os_errors() {
        let dir = std::env::temp_dir().join(format!("ibstack-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ceph.conf");
        std::fs::write(&path, CEPH_CONF).unwrap();
        let mut c = Config::default();
        c.load_file(&path, "osd").unwrap();
        assert_eq!(c, osd_expected());

        // A bad value is reported with the path and line.
        let bad = dir.join("bad.conf");
        std::fs::write(&bad, "[global]\n\nms_async_rdma_port_num = abc\n").unwrap();
        let e = c.load_file(&bad, "").unwrap_err();
        assert_eq!(e.errno, libc::EINVAL);
        assert!(
            e.msg.starts_with(&format!("{}:3: ", bad.display())),
            "{}",
            e.msg
        );
        assert_eq!(c, osd_expected());

        // Invalid UTF-8 is rejected with its line.
        let bin = dir.join("bin.conf");
        std::fs::write(
            &bin,
            b"[global]\nms_async_rdma_device_name = \xe2\x28\xa1\n",
        )
        .unwrap();
        let e = c.load_file(&bin, "").unwrap_err();
        assert_eq!(e.errno, libc::EINVAL);
        assert!(
            e.msg.contains(":2:") && e.msg.contains("UTF-8"),
            "{}",
            e.msg
        );

        let missing = dir.join("does-not-exist.conf");
        let e = c.load_file(&missing, "").unwrap_err();
        assert_eq!(e.errno, libc::ENOENT);
        assert!(e.msg.contains(&missing.display().to_string()), "{}", e.msg);

        let e = c.load_file(&dir, "").unwrap_err();
        assert_eq!(e.errno, libc::EISDIR, "{}", e.msg);

        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(c, osd_expected());
    }

    #[test]
    fn bad_value_message_names_file_line_key_value_and_type() {
        let text = "[global]\nfsid = x\n\n\n\n\n\n\n\n\n\nms_async_rdma_port_num = \"abc\"\n";
        let e = load(text, "").unwrap_err();
        assert_eq!(e.errno, libc::EINVAL);
        assert!(
            e.msg.starts_with("ceph.conf:12: ms_async_rdma_port_num = \"abc\": expected an unsigned integer (uint)"),
            "{}",
            e.msg
        );
        let e = load("[osd]\nms async rdma enable hugepage = maybe\n", "osd.1").unwrap_err();
        assert!(
            e.msg
                .starts_with("ceph.conf:2: ms_async_rdma_enable_hugepage = \"maybe\""),
            "{}",
            e.msg
        );
        assert!(e.msg.contains("(bool)"), "{}", e.msg);
        let e = load("[global]\nms_async_rdma_buffer_size = 12Q\n", "").unwrap_err();
        assert!(
            e.msg
                .starts_with("ceph.conf:2: ms_async_rdma_buffer_size = \"12Q\""),
            "{}",
            e.msg
        );
        assert!(e.msg.contains("(size)"), "{}", e.msg);
    }

    #[test]
    fn overriding_follows_section_priority_not_file_order() {
        let text = "[osd.3]\nms_async_rdma_sl = 7\n[osd]\nms_async_rdma_sl = 6\n[global]\nms_async_rdma_sl = 5\n";
        assert_eq!(load(text, "osd.3").unwrap().sl, 7);
        assert_eq!(load(text, "osd.4").unwrap().sl, 6);
        assert_eq!(load(text, "osd").unwrap().sl, 6);
        assert_eq!(load(text, "").unwrap().sl, 5);
        assert_eq!(load(text, "mon").unwrap().sl, 5);
    }

    #[test]
    fn last_occurrence_wins_and_sections_merge() {
        let text =
            "[global]\nms_async_rdma_sl = 1\nms_async_rdma_sl = 2\n[osd]\nms_async_rdma_dscp = 8\n\
                    [global]\nms_async_rdma_sl = 4\nms_async_rdma_dscp = 9\n";
        let c = load(text, "osd").unwrap();
        assert_eq!((c.sl, c.dscp), (4, 8));
    }

    #[test]
    fn only_the_winning_value_is_type_checked() {
        let text = "[global]\nms_async_rdma_port_num = abc\n[osd.3]\nms_async_rdma_port_num = 2\n";
        assert_eq!(load(text, "osd.3").unwrap().port_num, 2);
        let e = load(text, "osd").unwrap_err();
        assert!(
            e.msg
                .starts_with("ceph.conf:2: ms_async_rdma_port_num = \"abc\""),
            "{}",
            e.msg
        );
        // Values in sections that do not apply are not type-checked.
        assert_eq!(
            load("[mon]\nms_async_rdma_sl = 99\n", "osd").unwrap(),
            Config::default()
        );
    }

    #[test]
    fn syntax_errors_anywhere_fail_the_load() {
        let cases: &[(&str, &str)] = &[
            (
                "[global]\nms_async_rdma_sl = 1\n[osd\nms_async_rdma_sl = 2\n",
                "ceph.conf:3: malformed section header \"[osd\"",
            ),
            (
                "[global]\n        who_what_where\n",
                "ceph.conf:2: expected \"key = value\"",
            ),
            (
                "[global]\n[]\n",
                "ceph.conf:2: malformed section header \"[]\"",
            ),
            ("[global] junk\n", "ceph.conf:1: unexpected text \"junk\""),
            (
                "[mon]\nkeyring = \"unterminated quoted string\n[osd]\n",
                "ceph.conf:2: unterminated quoted value of keyring",
            ),
            (
                "[mon]\nms_async_rdma_type = \"ib\" extra\n",
                "ceph.conf:2: unexpected text \"extra\"",
            ),
            ("[mon]\n = 3\n", "ceph.conf:2: missing option name"),
            ("[mon]\nfoo[1] = 3\n", "ceph.conf:2: '[' is not allowed"),
            ("[mon # comment]\n", "ceph.conf:1: malformed section header"),
        ];
        for (text, want) in cases {
            for section in ["", "osd", "client.admin"] {
                let mut c = Config::default();
                c.set("ms_async_rdma_sl", "9").unwrap();
                let before = c.clone();
                let e = c.load_str(text, "ceph.conf", section).unwrap_err();
                assert_eq!(e.errno, libc::EINVAL);
                assert!(e.msg.starts_with(want), "{text:?}: {}", e.msg);
                assert_eq!(c, before, "{text:?}");
            }
        }
        let e = load("[global]\n        who_what_where\n", "").unwrap_err();
        assert!(e.msg.contains("\"who_what_where\""), "{}", e.msg);
    }

    #[test]
    fn unknown_key_in_our_namespace_is_an_error_foreign_keys_are_ignored() {
        let text =
            "[global]\nfsid = 1\nmon host = a,b\nms_bind_ipv6 = true\nms tcp read timeout = 900\n\
                    \n[osd]\nms_async_rdma_gid_index = 1\n";
        assert_eq!(load(text, "").unwrap(), Config::default());
        assert_eq!(load(text, "mon").unwrap(), Config::default());
        let e = load(text, "osd.0").unwrap_err();
        assert_eq!(e.errno, libc::EINVAL);
        assert!(
            e.msg
                .starts_with("ceph.conf:8: unknown option \"ms_async_rdma_gid_index\""),
            "{}",
            e.msg
        );
        assert!(
            e.msg.contains("did you mean ms_async_rdma_gid_idx?"),
            "{}",
            e.msg
        );

        let e = load("[global]\nibstack_cq_size = 5\n", "").unwrap_err();
        assert!(
            e.msg.contains("ceph.conf:2:") && e.msg.contains("ibstack_cq_depth"),
            "{}",
            e.msg
        );
        let e = load("[global]\nMS_ASYNC_RDMA_SL = 5\n", "").unwrap_err();
        assert!(
            e.msg.contains("did you mean ms_async_rdma_sl?"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn comments_quotes_escapes_and_continuations() {
        let text = concat!(
            "; leading comment\n",
            "# another\n",
            "[global]   ; comment after a header\n",
            "ms_async_rdma_device_name = mlx5_\\#0 # trailing comment\n",
            "ms_async_rdma_local_gid = \"a;b#c\"   ; quotes keep ; and #\n",
            "ms_async_rdma_type = 'iwarp'\n",
            "ms_async_rdma_sl = \\\n",
            "   1\\\n",
            "2\n",
            "# a comment ending in a backslash does not continue \\\n",
            "ms_async_rdma_dscp = 8\n",
            "\tms_async_rdma_roce_ver\t=\t\"  2  \"\n",
            "ms_async_rdma_port_num =  \"2\" \n",
            "ibstack_qp_history_len =\n",
        );
        // An empty value for a uint is an error; drop that line for the success case.
        let ok_text = text.replace("ibstack_qp_history_len =\n", "");
        let c = load(&ok_text, "").unwrap();
        assert_eq!(c.device_name, "mlx5_#0");
        assert_eq!(c.local_gid, "a;b#c");
        assert_eq!(c.rdma_type, "iwarp");
        assert_eq!(c.sl, 12);
        assert_eq!(c.dscp, 8);
        assert_eq!(
            c.roce_ver, 2,
            "quoted values are trimmed after unquoting, as in Ceph"
        );
        assert_eq!(c.port_num, 2);
        let e = load(text, "").unwrap_err();
        assert!(
            e.msg
                .starts_with("ceph.conf:14: ibstack_qp_history_len = \"\""),
            "{}",
            e.msg
        );
        assert!(e.msg.contains("empty"), "{}", e.msg);

        // Ceph's own escaping examples.
        let esc = "[apple \\]\\[]\nms_async_rdma_device_name = the \\\"scare quotes\\\"\n\
                   [mon]\nms_async_rdma_local_gid = \"nested \\\"quotes\\\"\"\n\
                   [osd]\nms_async_rdma_local_gid = \"backslash\\\\\"\n";
        assert_eq!(
            load(esc, "apple ][").unwrap().device_name,
            "the \"scare quotes\""
        );
        assert_eq!(load(esc, "mon").unwrap().local_gid, "nested \"quotes\"");
        assert_eq!(load(esc, "osd").unwrap().local_gid, "backslash\\");
    }

    #[test]
    fn line_endings_leading_keys_and_section_names() {
        // CRLF, no final newline, a byte-order mark.
        let c = load(
            "\u{feff}[global]\r\nms_async_rdma_sl = 4\r\nms_async_rdma_dscp = 12",
            "",
        )
        .unwrap();
        assert_eq!((c.sl, c.dscp), (4, 12));
        let e = load("[global]\r\n\r\nms_async_rdma_sl = 44\r\n", "").unwrap_err();
        assert!(
            e.msg.starts_with("ceph.conf:3: ms_async_rdma_sl = \"44\""),
            "{}",
            e.msg
        );
        // Keys before the first header belong to [global].
        let c = load("ms_async_rdma_sl = 2\n[osd]\nms_async_rdma_dscp = 1\n", "").unwrap();
        assert_eq!((c.sl, c.dscp), (2, 96));
        // Section names are not trimmed (as in Ceph): [ osd ] is not [osd].
        assert_eq!(
            load("[ osd ]\nms_async_rdma_sl = 2\n", "osd").unwrap().sl,
            3
        );
        assert_eq!(
            load("[ osd ]\nms_async_rdma_sl = 2\n", " osd ").unwrap().sl,
            3
        );
        // Empty text and comment-only text load as defaults.
        assert_eq!(load("", "osd.1").unwrap(), Config::default());
        assert_eq!(
            load("# nothing\n\n   ; here\n", "").unwrap(),
            Config::default()
        );
    }

    #[test]
    fn failed_loads_and_sets_leave_the_config_unchanged() {
        let mut c = Config::default();
        c.set("ms_async_rdma_device_name", "mlx5_9").unwrap();
        let before = c.clone();
        // Valid lines first, then a bad value: nothing of it is applied.
        let text = "[global]\nms_async_rdma_sl = 1\nms_async_rdma_dscp = 2\nms_async_rdma_cq = 3\n";
        assert!(c.load_str(text, "x.conf", "").is_err());
        assert_eq!(c, before);
        let text = "[global]\nms_async_rdma_sl = 1\nms_async_rdma_port_num = 0\n";
        assert!(c.load_str(text, "x.conf", "").is_err());
        assert_eq!(c, before);
        let text = "[global]\nms_async_rdma_sl = 1\n[broken\n";
        assert!(c.load_str(text, "x.conf", "").is_err());
        assert_eq!(c, before);
        assert!(c.set("ms_async_rdma_sl", "16").is_err());
        assert!(c.set("nope", "1").is_err());
        assert_eq!(c, before);
        // And a good load applies everything.
        c.load_str(
            "[global]\nms_async_rdma_sl = 1\nms_async_rdma_dscp = 2\n",
            "x.conf",
            "",
        )
        .unwrap();
        assert_eq!((c.sl, c.dscp, c.device_name.as_str()), (1, 2, "mlx5_9"));
    }

    // ----- JSON -------------------------------------------------------------

    #[derive(Debug, PartialEq)]
    enum Json {
        Obj(Vec<(String, Json)>),
        Str(String),
        Num(String),
        Bool(bool),
    }

    /// A small strict JSON parser (objects, strings, numbers, booleans).
    fn parse_json(s: &str) -> std::result::Result<Json, String> {
        struct P<'a> {
            b: &'a [u8],
            i: usize,
        }
        impl P<'_> {
            fn ws(&mut self) {
                while self.i < self.b.len()
                    && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r')
                {
                    self.i += 1;
                }
            }
            fn eat(&mut self, c: u8) -> std::result::Result<(), String> {
                self.ws();
                if self.b.get(self.i) == Some(&c) {
                    self.i += 1;
                    Ok(())
                } else {
                    Err(format!("expected {:?} at {}", c as char, self.i))
                }
            }
            fn value(&mut self) -> std::result::Result<Json, String> {
                self.ws();
                match self.b.get(self.i) {
                    Some(b'{') => {
                        self.i += 1;
                        let mut v = Vec::new();
                        self.ws();
                        if self.b.get(self.i) == Some(&b'}') {
                            self.i += 1;
                            return Ok(Json::Obj(v));
                        }
                        loop {
                            self.ws();
                            let k = self.string()?;
                            self.eat(b':')?;
                            let val = self.value()?;
                            v.push((k, val));
                            self.ws();
                            match self.b.get(self.i) {
                                Some(b',') => self.i += 1,
                                Some(b'}') => {
                                    self.i += 1;
                                    return Ok(Json::Obj(v));
                                }
                                _ => return Err(format!("expected , or }} at {}", self.i)),
                            }
                        }
                    }
                    Some(b'"') => Ok(Json::Str(self.string()?)),
                    Some(b't') if self.b[self.i..].starts_with(b"true") => {
                        self.i += 4;
                        Ok(Json::Bool(true))
                    }
                    Some(b'f') if self.b[self.i..].starts_with(b"false") => {
                        self.i += 5;
                        Ok(Json::Bool(false))
                    }
                    Some(b'-' | b'0'..=b'9') => {
                        let start = self.i;
                        if self.b[self.i] == b'-' {
                            self.i += 1;
                        }
                        let d = self.i;
                        while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
                            self.i += 1;
                        }
                        let digits = &self.b[d..self.i];
                        if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
                            return Err(format!("bad number at {start}"));
                        }
                        Ok(Json::Num(
                            String::from_utf8(self.b[start..self.i].to_vec()).unwrap(),
                        ))
                    }
                    _ => Err(format!("unexpected input at {}", self.i)),
                }
            }
            fn string(&mut self) -> std::result::Result<String, String> {
                if self.b.get(self.i) != Some(&b'"') {
                    return Err(format!("expected string at {}", self.i));
                }
                self.i += 1;
                let mut out = Vec::new();
                loop {
                    let c = *self.b.get(self.i).ok_or("unterminated string")?;
                    self.i += 1;
                    match c {
                        b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                        b'\\' => {
                            let e = *self.b.get(self.i).ok_or("bad escape")?;
                            self.i += 1;
                            let ch = match e {
                                b'"' => '"',
                                b'\\' => '\\',
                                b'/' => '/',
                                b'n' => '\n',
                                b'r' => '\r',
                                b't' => '\t',
                                b'b' => '\x08',
                                b'f' => '\x0c',
                                b'u' => {
                                    let hex = std::str::from_utf8(
                                        self.b.get(self.i..self.i + 4).ok_or("bad \\u")?,
                                    )
                                    .map_err(|e| e.to_string())?;
                                    self.i += 4;
                                    char::from_u32(
                                        u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?,
                                    )
                                    .ok_or("bad \\u")?
                                }
                                _ => return Err(format!("bad escape at {}", self.i)),
                            };
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        c if c < 0x20 => {
                            return Err(format!("raw control character at {}", self.i))
                        }
                        c => out.push(c),
                    }
                }
            }
        }
        let mut p = P {
            b: s.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.b.len() {
            return Err(format!("trailing input at {}", p.i));
        }
        Ok(v)
    }

    #[test]
    fn json_parser_rejects_invalid_json() {
        for bad in [
            "{",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":\"x\ny\"}",
            "{\"a\":01}",
            "{\"a\":1} x",
            "{a:1}",
        ] {
            assert!(parse_json(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn to_json_of_defaults() {
        let expected = concat!(
            "{\"ms_async_rdma_device_name\":\"\",\"ms_async_rdma_enable_hugepage\":false,",
            "\"ms_async_rdma_buffer_size\":131072,\"ms_async_rdma_send_buffers\":1024,",
            "\"ms_async_rdma_receive_buffers\":32768,\"ms_async_rdma_receive_queue_len\":4096,",
            "\"ms_async_rdma_support_srq\":true,\"ms_async_rdma_port_num\":1,",
            "\"ms_async_rdma_polling_us\":1000,\"ms_async_rdma_gid_idx\":0,",
            "\"ms_async_rdma_local_gid\":\"\",\"ms_async_rdma_roce_ver\":1,\"ms_async_rdma_sl\":3,",
            "\"ms_async_rdma_dscp\":96,\"ms_async_rdma_cm\":false,\"ms_async_rdma_type\":\"ib\",",
            "\"ms_tcp_listen_backlog\":512,\"ibstack_path_mtu\":1024,\"ibstack_rx_first_block\":256,",
            "\"ibstack_qp_history_len\":64,\"ibstack_max_inflight_per_conn\":0,\"ibstack_cq_depth\":30000,",
            "\"ibstack_stack_thread\":true}"
        );
        let json = Config::default().to_json();
        assert_eq!(json, expected);
        assert!(parse_json(&json).is_ok());
    }

    #[test]
    fn to_json_escapes_strings_and_lists_every_option() {
        let mut c = Config::default();
        let nasty = "a\"b\\c\nd\te\u{1}f\u{7f}é";
        c.set("ms_async_rdma_device_name", nasty).unwrap();
        c.set("ms_tcp_listen_backlog", "-3").unwrap();
        let json = c.to_json();
        let Json::Obj(fields) = parse_json(&json).unwrap_or_else(|e| panic!("{e}: {json}")) else {
            panic!("not an object: {json}");
        };
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        let want: Vec<&str> = options().iter().map(|o| o.name).collect();
        assert_eq!(names, want);
        for ((k, v), o) in fields.iter().zip(options()) {
            let text = c.get(k).unwrap();
            let expected = match o.ty {
                OptType::Str => Json::Str(text),
                OptType::Bool => Json::Bool(text == "true"),
                _ => Json::Num(text),
            };
            assert_eq!(*v, expected, "{k}");
        }
        assert_eq!(fields[0].1, Json::Str(nasty.to_owned()));
    }
}
