//! hotkernel's update machinery that is not tied to one kernel build.
//!
//! - [`records`]: the hand-off record types of every schema version, and their
//!   encodings;
//! - [`wire`]: the little-endian reader and writer the records use.
//!
//! Everything here is `no_std`, free of `unsafe`, and tested on the host with
//! `cargo test -p updater`.
#![no_std]
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod compat;
pub mod convert;
pub mod handoff;
pub mod records;
pub mod recordset;
pub mod relocate;
pub mod wire;
