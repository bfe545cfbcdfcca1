//! This image's identity: version, what it may replace, the capabilities it needs and
//! offers, and the schema version of every record kind it reads (derived from
//! `schema.rs`, so the declaration cannot drift from the code).
//!
//! An older kernel checks these (from the package header) before accepting this image;
//! this image's bootstrap checks them again against the running kernel's descriptor
//! before anything is overwritten.

use updater::convert::{Reads, Step};
use updater::records::{pipeline, service, RecordKind, SchemaVersion, StateRecord, TaskKind};

use crate::schema;

/// Capability bits.
pub mod caps {
    pub const HANDOFF_V1: u64 = 1 << 0;
    pub const PARK_STUB_V1: u64 = 1 << 1;
    pub const FRAME_BITMAP_V1: u64 = 1 << 2;
    pub const MAILBOX_V1: u64 = 1 << 3;
    pub const TASKS_V1: u64 = 1 << 4;
    pub const SMP: u64 = 1 << 5;
    pub const HOTPATCH_V1: u64 = 1 << 6;
    pub const BIG_TABLE: u64 = 1 << 7;
}

/// A version: major.minor.patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ImageVersion {
    pub major: u16,
    pub minor: u16,
    pub patch: u16,
}

impl core::fmt::Display for ImageVersion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

const fn v(major: u16, minor: u16, patch: u16) -> ImageVersion {
    ImageVersion {
        major,
        minor,
        patch,
    }
}

/// This image's version and label.
#[cfg(not(any(
    feature = "v2",
    feature = "v3",
    feature = "broken",
    feature = "incompatible",
    feature = "twin"
)))]
pub const VERSION: (ImageVersion, &str) = (v(1, 0, 0), "v1");
#[cfg(feature = "twin")]
pub const VERSION: (ImageVersion, &str) = (v(1, 0, 1), "v1-twin");
#[cfg(feature = "v2")]
pub const VERSION: (ImageVersion, &str) = (v(2, 0, 0), "v2");
#[cfg(feature = "v3")]
pub const VERSION: (ImageVersion, &str) = (v(3, 0, 0), "v3");
#[cfg(feature = "broken")]
pub const VERSION: (ImageVersion, &str) = (v(2, 9, 0), "broken");
#[cfg(feature = "incompatible")]
pub const VERSION: (ImageVersion, &str) = (v(5, 0, 0), "incompatible");

/// The oldest and newest running versions this image may replace.
pub const REPLACES: (ImageVersion, ImageVersion) = (v(1, 0, 0), v(VERSION.0.major, 99, 99));

const BASE_CAPS: u64 = caps::HANDOFF_V1
    | caps::PARK_STUB_V1
    | caps::FRAME_BITMAP_V1
    | caps::MAILBOX_V1
    | caps::TASKS_V1
    | caps::SMP;

/// Capabilities this image offers to the next one.
#[cfg(not(feature = "v3"))]
pub const CAPS_PROVIDED: u64 = BASE_CAPS | caps::HOTPATCH_V1;
#[cfg(feature = "v3")]
pub const CAPS_PROVIDED: u64 = BASE_CAPS | caps::HOTPATCH_V1 | caps::BIG_TABLE;

/// Capabilities this image needs from the kernel it replaces.
pub const CAPS_REQUIRED: u64 = caps::HANDOFF_V1 | caps::PARK_STUB_V1 | caps::FRAME_BITMAP_V1;

/// A record kind this image reads: its version, the oldest version it converts from,
/// and whether this image exports it as optional.
#[derive(Debug, Clone, Copy)]
pub struct SchemaEntry {
    pub kind: RecordKind,
    pub current: SchemaVersion,
    pub min_from: SchemaVersion,
    pub optional: bool,
}

const fn entry<R: StateRecord>(min_from: u16, optional: bool) -> SchemaEntry {
    SchemaEntry {
        kind: R::KIND,
        current: R::SCHEMA,
        min_from: SchemaVersion::new(min_from),
        optional,
    }
}

/// The task table this image reads. The `incompatible` variant stands for an image
/// whose task table is v5 and converts only from v4: no running kernel of this tree can
/// be converted to it, so delivery refuses it.
#[cfg(not(feature = "incompatible"))]
const TASK_TABLE: SchemaEntry = entry::<schema::TaskEntry>(1, false);
#[cfg(feature = "incompatible")]
const TASK_TABLE: SchemaEntry = SchemaEntry {
    kind: RecordKind::TASK_TABLE,
    current: SchemaVersion::new(5),
    min_from: SchemaVersion::new(4),
    optional: false,
};

/// Every record kind this image reads and exports.
#[cfg(not(feature = "v3"))]
pub const SCHEMAS: &[SchemaEntry] = &[
    entry::<updater::records::machine::V1>(1, false),
    TASK_TABLE,
    entry::<schema::Counter>(1, false),
    entry::<schema::Lcg>(1, false),
    entry::<schema::Producer>(1, false),
    entry::<schema::Consumer>(1, false),
    entry::<pipeline::ChannelV1>(1, false),
    entry::<schema::Heartbeat>(1, false),
    entry::<service::V1>(1, false),
    entry::<updater::records::history::V1>(1, false),
    entry::<schema::Ticker>(1, true),
];
#[cfg(feature = "v3")]
pub const SCHEMAS: &[SchemaEntry] = &[
    entry::<updater::records::machine::V1>(1, false),
    TASK_TABLE,
    entry::<schema::Counter>(1, false),
    entry::<schema::Lcg>(1, false),
    entry::<schema::Producer>(1, false),
    entry::<schema::Consumer>(1, false),
    entry::<pipeline::ChannelV1>(1, false),
    entry::<schema::Heartbeat>(1, false),
    entry::<service::V1>(1, false),
    entry::<updater::records::history::V1>(1, false),
    entry::<schema::Table>(1, false),
];

/// The schema entry of `kind`, if this image reads it.
pub fn schema_of(kind: RecordKind) -> Option<&'static SchemaEntry> {
    SCHEMAS.iter().find(|s| s.kind == kind)
}

/// Whether this image knows task kind `kind` (reads its state record).
pub fn knows_task_kind(kind: TaskKind) -> bool {
    schema_of(kind.state_record()).is_some()
}

/// What the converter chain should produce for this image.
pub fn reads() -> impl Iterator<Item = Reads> {
    SCHEMAS.iter().map(|s| Reads {
        kind: s.kind,
        version: s.current,
    })
}

/// The converters this image carries. The `broken` variant claims (in `SCHEMAS`) to
/// convert task-table v1 but lacks the step: its bootstrap refuses, and the old kernel
/// rolls back.
#[cfg(not(feature = "broken"))]
pub const STEPS: &[Step] = updater::convert::ALL_STEPS;
#[cfg(feature = "broken")]
pub const STEPS: &[Step] = &[
    Step::of::<updater::convert::steps::TaskTable2To3>(),
    Step::of::<updater::convert::steps::Counter1To2>(),
];

/// One line: version, label, build id prefix (no allocation: usable before the heap).
pub fn describe() -> impl core::fmt::Display {
    struct Describe;
    impl core::fmt::Display for Describe {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            let id = crate::image::build_id();
            write!(
                f,
                "{} ({}, build {:02x}{:02x}{:02x}{:02x})",
                VERSION.0, VERSION.1, id[0], id[1], id[2], id[3]
            )
        }
    }
    Describe
}
