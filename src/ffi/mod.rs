//! The C boundary kit. Every exported function wraps its body in
//! [`ffi_boundary!`](crate::ffi_boundary), converts pointers only through
//! [`handle`], and reports failures through [`error`].

pub mod error;
pub mod handle;
pub mod log;
pub mod panic;
pub mod slab;
