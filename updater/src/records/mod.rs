//! Hand-off record types: the persistent state of a kernel, in every schema version any
//! kernel of this tree has used.
//!
//! A record kind ([`RecordKind`]) holds a list of fixed-size entries in one schema
//! version ([`SchemaVersion`]). Each version is its own type (`V1`, `V2`, …) with an
//! explicit little-endian encoding ([`StateRecord`]); a kernel keeps its live task state
//! in the version it reads, so exporting is encoding and importing is decoding. Types
//! for every version stay here for good: the converter from N to N+1 needs both.
//!
//! The kernel picks its own versions in `kernel/src/schema.rs`; nothing here depends on
//! which variant is being built.

pub mod counter;
pub mod entry;
pub mod heartbeat;
pub mod history;
pub mod lcg;
pub mod machine;
pub mod patch_set;
pub mod pipeline;
pub mod service;
pub mod table;
pub mod task_table;
pub mod ticker;

use crate::wire::{Reader, WireError, Writer};

pub use image_format::kinds::{self, RecordKind, TaskKind};
pub use image_format::SchemaVersion;

/// A fixed-size entry of one schema version of one record kind.
pub trait StateRecord: Sized + Clone + PartialEq + core::fmt::Debug {
    /// Which record kind this is an entry of.
    const KIND: RecordKind;
    /// Which schema version this type is.
    const SCHEMA: SchemaVersion;
    /// Encoded size in bytes.
    const SIZE: usize;
    /// Writes exactly `SIZE` bytes.
    fn encode(&self, w: &mut Writer<'_>);
    /// Reads exactly `SIZE` bytes.
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError>;
}

/// A task-state entry: the task it belongs to and its state.
#[derive(Debug, Clone, PartialEq)]
pub struct Keyed<S> {
    pub task: u32,
    pub state: S,
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Encodes then decodes `value`; asserts equality and exact size.
    pub fn round_trip<R: StateRecord>(value: &R) {
        let mut buf = [0u8; 4096];
        let mut w = Writer::new(&mut buf[..R::SIZE]);
        value.encode(&mut w);
        assert_eq!(w.position(), R::SIZE, "{:?} wrote a wrong size", R::KIND);
        let mut r = Reader::new(&buf[..R::SIZE]);
        assert_eq!(&R::decode(&mut r).unwrap(), value);
        assert_eq!(r.remaining(), 0);
    }
}
