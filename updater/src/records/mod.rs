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
pub mod pipeline;
pub mod service;
pub mod table;
pub mod task_table;
pub mod ticker;

use crate::wire::{Reader, WireError, Writer};

/// A schema version of one record kind. Versions start at 1 and only grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchemaVersion(u16);

impl SchemaVersion {
    /// # Panics
    /// If `v` is 0 (versions start at 1).
    pub const fn new(v: u16) -> Self {
        assert!(v != 0, "schema versions start at 1");
        Self(v)
    }
    pub const fn try_new(v: u16) -> Option<Self> {
        if v == 0 {
            None
        } else {
            Some(Self(v))
        }
    }
    pub const fn get(self) -> u16 {
        self.0
    }
    /// The next version (N+1).
    pub const fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl core::fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// The kind of a task: a stable identifier that outlives any one image. After a swap
/// the new kernel maps each kind to its own step function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskKind(u16);

impl TaskKind {
    pub const COUNTER: TaskKind = TaskKind(1);
    pub const LCG: TaskKind = TaskKind(2);
    pub const PRODUCER: TaskKind = TaskKind(3);
    pub const CONSUMER: TaskKind = TaskKind(4);
    pub const TICKER: TaskKind = TaskKind(5);
    pub const HEARTBEAT: TaskKind = TaskKind(6);
    pub const SERVICE: TaskKind = TaskKind(7);
    pub const TABLE: TaskKind = TaskKind(8);

    pub const fn from_raw(raw: u16) -> Self {
        TaskKind(raw)
    }
    pub const fn raw(self) -> u16 {
        self.0
    }
    /// Human name, or "unknown".
    pub const fn name(self) -> &'static str {
        match self.0 {
            1 => "counter",
            2 => "lcg",
            3 => "producer",
            4 => "consumer",
            5 => "ticker",
            6 => "heartbeat",
            7 => "update-service",
            8 => "table",
            _ => "unknown",
        }
    }
    /// The record kind that carries this task kind's state.
    pub const fn state_record(self) -> RecordKind {
        RecordKind(RecordKind::TASK_STATE_BASE + self.0)
    }
}

impl core::fmt::Display for TaskKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.name())
    }
}

/// The kind of a hand-off record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKind(u16);

impl RecordKind {
    pub const MACHINE: RecordKind = RecordKind(1);
    pub const TASK_TABLE: RecordKind = RecordKind(2);
    pub const CHANNELS: RecordKind = RecordKind(3);
    pub const HISTORY: RecordKind = RecordKind(4);
    pub const PATCH_SET: RecordKind = RecordKind(5);
    /// Task-state records are `TASK_STATE_BASE + task kind`.
    pub const TASK_STATE_BASE: u16 = 0x100;

    pub const fn from_raw(raw: u16) -> Self {
        RecordKind(raw)
    }
    pub const fn raw(self) -> u16 {
        self.0
    }
    /// The task kind whose state this record holds, if it is a task-state record.
    pub const fn task_kind(self) -> Option<TaskKind> {
        if self.0 > Self::TASK_STATE_BASE && self.0 < Self::TASK_STATE_BASE + 0x100 {
            Some(TaskKind(self.0 - Self::TASK_STATE_BASE))
        } else {
            None
        }
    }
}

impl core::fmt::Display for RecordKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            1 => write!(f, "machine"),
            2 => write!(f, "task-table"),
            3 => write!(f, "channels"),
            4 => write!(f, "history"),
            5 => write!(f, "patch-set"),
            _ => match self.task_kind() {
                Some(k) => write!(f, "{}-state", k.name()),
                None => write!(f, "record-{:#x}", self.0),
            },
        }
    }
}

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
