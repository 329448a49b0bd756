//! Exported `ibstack_*` functions, one file per object. Nothing here calls
//! verbs directly; pointers are converted only through `crate::ffi::handle`.
//! C names (`ibstack_*`) are kept for types too, so the header matches.
#![allow(non_camel_case_types)]

pub mod config;
pub mod cq;
pub mod device;
pub mod dispatcher;
pub mod global;
pub mod ib;
pub mod mem;
pub mod qp;
pub mod stack;
