//! The update machinery's own hand-off records: the machine, the task table, the run
//! queues, the update history, the patch set and its sites. Every kernel exports them; task kinds
//! add their state records, declared with the kind in the kernel (`kernel/src/tasks/`).
//!
//! Each schema version of a record kind is its own type (`V1`, `V2`, …) with
//! `#[derive(Record)]`: its encoding and field table come from its definition, and its
//! memory is its encoding. A kernel keeps its live state in the version it reads, so
//! exporting tasks is one copy of their records and importing them is adopting those
//! bytes in place. Older versions stay as long as an image carries a converter from them
//! (a converter from N to N+1 needs both); a layout change that is mechanical needs no
//! old type at all (`crate::convert::fields`).

pub mod history;
pub mod machine;
pub mod patch_set;
pub mod patch_sites;
pub mod run_queues;
pub mod task_table;

pub use image_format::kinds::{self, RecordKind, TaskKind};
pub use image_format::SchemaVersion;

pub use crate::record::Record;

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Encodes then decodes `value`; asserts equality and exact size.
    pub fn round_trip<R: Record>(value: &R) {
        let mut buf = [0u8; 4096];
        value.encode(&mut buf[..R::SIZE]);
        assert_eq!(&R::decode(&buf[..R::SIZE]).unwrap(), value);
        assert_eq!(R::LAYOUT.size as usize, R::SIZE, "{:?}", R::KIND);
    }
}
