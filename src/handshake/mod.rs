//! The out-of-band handshake that connects two RC queue pairs over a plain TCP
//! socket (verbs mode, `ms_async_rdma_cm = false`).
//!
//! Each side sends a fixed 65-byte text record (`cm_meta`) describing its QP:
//! LID, QP number, initial PSN, the QP number it believes its peer has, and its
//! GID. The wire format is byte-for-byte the one Ceph 16.2 uses, so a peer
//! running stock Ceph can be talked to.
//!
//! * [`record`] — the record itself: encoding, strict decoding, semantic checks
//!   of a peer's record, and recognition of a peer that speaks Ceph's TCP
//!   messenger instead (the "bad length (26)" transport mismatch).
//! * [`exchange`] — reading and writing records on a caller-supplied connected
//!   fd, blocking or non-blocking, with state kept between calls so an event
//!   loop can drive it.
//!
//! The three-record exchange that moves a QP to RTR and RTS is the queue
//! pair's business (`crate::qp::handshake`); this module knows nothing above
//! the bytes.

pub mod exchange;
pub mod record;

pub use exchange::{recv_record, send_record, RecordReader, RecordWriter};
pub use record::{diagnose_foreign, escape_bytes, CmMeta, RECORD_LEN};
