//! `libibstack_preload.so`: ibstack's guard for programs that use libibverbs
//! themselves, above all Ceph's own async+rdma messenger. Loaded with
//! `LD_PRELOAD` only (it exports nothing but the libibverbs functions it
//! interposes), it changes no behaviour: every call goes to the real
//! libibverbs (`dlvsym(RTLD_NEXT)`), and the guard only names causes on
//! stderr (and the `log` facade), each problem once, prefixed
//! `ibstack guard:`, before Ceph's own asserts fire.
//!
//! `IBSTACK_PRELOAD` picks the mode: `guard` (also when unset), `off`
//! (everything passes through untouched) or `rdma`: transparent mode, where
//! the TCP sockets of Ceph's posix messenger on the configured ports become
//! ibstack RDMA connections (`rdma/`); it interposes the socket functions of
//! libc for that, which pass straight through for every fd it did not take.
//!
//! One file per concept:
//! * `mode.rs` — the mode and the re-entry flag (the guard's own verbs calls pass through);
//! * `real.rs` — lazy, thread-safe lookup of the real functions;
//! * `report.rs` — the once-per-problem printer;
//! * `startup.rs` — the doctor's checks at the first device-list / open call;
//! * `device.rs` — ibv_get_device_list / ibv_open_device;
//! * `memreg.rs` — ibv_reg_mr, ibv_reg_mr_iova, ibv_reg_mr_iova2;
//! * `modify.rs` — ibv_modify_qp: pre-flight validation and the named failure;
//! * `queues.rs` — ibv_create_qp / _srq / _cq against the device's limits;
//! * `post.rs` — the data-path wrappers in the context's ops table (errno = return value);
//! * `facts.rs` — port, GID and device facts read from a foreign context;
//! * `rdma/` — transparent mode.

#![deny(unsafe_op_in_unsafe_fn)]

mod device;
mod facts;
mod memreg;
mod mode;
mod modify;
mod post;
mod queues;
mod rdma;
mod real;
mod report;
mod startup;
