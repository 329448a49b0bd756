//! ibstack: Ceph's async-messenger RDMA "Infiniband" layer (devices, ports, PD,
//! memory pools, queue pairs, the cm_meta handshake) re-implemented in Rust and
//! exported as a C ABI (`include/ibstack.h`).
//!
//! Layout:
//! * `verbs/`  — the only code that calls libibverbs; safe RAII types.
//! * `ffi/`    — the C boundary kit: panic guard, handle conversion, errno and
//!               last-error message, logging.
//! * `capi/`   — the exported `ibstack_*` functions, one file per object.
//! * `config`, `prereq`, `ib` — the library's own logic.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod capi;
pub mod config;
pub mod counters;
pub mod cycles;
pub mod dispatcher;
pub mod doctor;
pub mod errno;
pub mod error;
pub mod ffi;
pub mod gid;
pub mod handshake;
pub mod history;
pub mod ib;
pub mod mem;
pub mod prereq;
pub mod qp;
pub mod qpn_map;
pub mod stack;
pub mod sys;
pub mod text;
pub mod verbs;

pub use errno::errno_name;
pub use error::{Error, Result};

/// The library version, as Cargo knows it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
