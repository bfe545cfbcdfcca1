//! hotkernel's update machinery that is not tied to one kernel build.
//!
//! | module | owns |
//! | --- | --- |
//! | [`record`] | records that describe themselves: encoding and field table from `#[derive(Record)]` |
//! | [`table`] | field tables as bytes: the canonical encoding, a reader, the fingerprint |
//! | [`describe`] | an image's description: its records' tables, its converters, its regions, its descriptor |
//! | [`plan`] | what a new image will do with the running kernel's state, from the two descriptions; the layout guard |
//! | [`records`] | the update machinery's own records: machine, task table, history, patch set |
//! | [`recordset`] | a set of records as one byte string in the hand-off region |
//! | [`convert`] | converters (N → N+1) and conversion by field |
//! | [`reconcile`] | the bootstrap's decisions: versions, capabilities, conversion, task validation, the patch-set rule, initialisation requirements |
//! | [`compat`] | the staging-time check of two identities |
//! | [`continuity`] | what may change in a task between two snapshots (kernel self-check and host) |
//! | [`handoff`] | the hand-off region's ABI (descriptor, park control) |
//! | [`relocate`] | relocating an image for a base |
//! | [`wire`] | the little-endian reader and writer |
//!
//! Everything here is `no_std`, free of `unsafe`, and tested on the host with
//! `cargo test -p updater`. Task kinds declare their own state records in the kernel
//! (with `#[derive(Record)]`); nothing here depends on which kinds an image has.
#![no_std]
#![deny(unsafe_code)]

#[cfg(any(test, feature = "std"))]
extern crate std;

// The derive's generated code names this crate `::updater`, also inside it.
extern crate self as updater;

/// `#[derive(Record)]`: see [`record`].
pub use record_derive::Record;

pub mod compat;
pub mod continuity;
pub mod convert;
pub mod describe;
pub mod handoff;
pub mod plan;
pub mod reconcile;
pub mod record;
pub mod records;
pub mod recordset;
pub mod relocate;
pub mod table;
pub mod wire;
