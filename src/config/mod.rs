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
//! * `mod.rs` (here): the option types, the table, [`Config`] and its
//!   methods, key normalization.
//! * `value.rs`: Ceph's value parsers and the bad-value messages.
//! * `conf.rs`: the ceph.conf reader and the sections a daemon reads.
//! * `suggest.rs`: unknown option names and the "did you mean" hint.
//! * `tests.rs`: the tests.

mod conf;
mod suggest;
mod value;

use crate::error::{Error, Result};
use conf::{parse_conf, sections_for, ConfEntry};
use std::path::Path;
use suggest::{suggestion_text, unknown_option};
use value::{parse_bool, parse_int, parse_size, parse_uint};

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

#[cfg(test)]
mod tests;
