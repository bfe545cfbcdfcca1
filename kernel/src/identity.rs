//! This image's identity: version, what it may replace, the capabilities it needs and
//! offers, and the schema version of every record kind it reads (derived from
//! `schema.rs`, so the declaration cannot drift from the code).
//!
//! It is embedded as [`IDENTITY`] in section `.hk_identity`, where the host's packer
//! reads it into the package header. An older kernel checks it (from that header)
//! before accepting this image; this image's bootstrap checks the running kernel's
//! against it again before anything is overwritten.

use image_format::{
    Capabilities, EmbeddedIdentity, ImageVersion, RecordKind, SchemaEntry, TaskKind, VersionRange,
};
use updater::convert::{Reads, Step};
use updater::records::{pipeline, StateRecord};

use crate::schema;

const fn entry<R: StateRecord>(min_from: u16) -> SchemaEntry {
    SchemaEntry::new(R::KIND, R::SCHEMA.get(), min_from)
}

#[cfg(not(any(
    feature = "v2",
    feature = "v3",
    feature = "broken",
    feature = "incompatible",
    feature = "twin"
)))]
const VERSION_LABEL: (ImageVersion, &str) = (ImageVersion::new(1, 0, 0), "v1");
#[cfg(feature = "twin")]
const VERSION_LABEL: (ImageVersion, &str) = (ImageVersion::new(1, 0, 1), "v1-twin");
#[cfg(feature = "v2")]
const VERSION_LABEL: (ImageVersion, &str) = (ImageVersion::new(2, 0, 0), "v2");
#[cfg(feature = "v3")]
const VERSION_LABEL: (ImageVersion, &str) = (ImageVersion::new(3, 0, 0), "v3");
#[cfg(feature = "broken")]
const VERSION_LABEL: (ImageVersion, &str) = (ImageVersion::new(2, 9, 0), "broken");
#[cfg(feature = "incompatible")]
const VERSION_LABEL: (ImageVersion, &str) = (ImageVersion::new(5, 0, 0), "incompatible");

/// The running versions this image may replace: any from 1.0.0 up to its own major.
const REPLACES: VersionRange = VersionRange::new(
    ImageVersion::new(1, 0, 0),
    ImageVersion::new(VERSION_LABEL.0.major, 99, 99),
);

const BASE_CAPS: Capabilities = Capabilities::HANDOFF_V1
    .union(Capabilities::PARK_STUB_V1)
    .union(Capabilities::FRAME_BITMAP_V1)
    .union(Capabilities::MAILBOX_V1)
    .union(Capabilities::TASKS_V1)
    .union(Capabilities::SMP)
    .union(Capabilities::HOTPATCH_V1);

#[cfg(not(feature = "v3"))]
const CAPS_PROVIDED: Capabilities = BASE_CAPS;
#[cfg(feature = "v3")]
const CAPS_PROVIDED: Capabilities = BASE_CAPS.union(Capabilities::BIG_TABLE);

/// What this image needs from the kernel it replaces: the hand-off ABI, the park stub
/// and the frame bitmap it adopts.
const CAPS_REQUIRED: Capabilities = Capabilities::HANDOFF_V1
    .union(Capabilities::PARK_STUB_V1)
    .union(Capabilities::FRAME_BITMAP_V1);

/// The task table this image reads. The `incompatible` variant stands for an image
/// whose task table is v5 and converts only from v4: no running kernel of this tree can
/// be converted to it, so delivery refuses it.
#[cfg(not(feature = "incompatible"))]
const TASK_TABLE: SchemaEntry = entry::<schema::TaskEntry>(1);
#[cfg(feature = "incompatible")]
const TASK_TABLE: SchemaEntry = SchemaEntry::new(image_format::kinds::TASK_TABLE, 5, 4);

#[cfg(not(feature = "v3"))]
const SCHEMAS: &[SchemaEntry] = &[
    entry::<updater::records::machine::V1>(1),
    TASK_TABLE,
    entry::<schema::Counter>(1),
    entry::<schema::Lcg>(1),
    entry::<schema::Producer>(1),
    entry::<schema::Consumer>(1),
    entry::<pipeline::ChannelV1>(1),
    entry::<schema::Heartbeat>(1),
    entry::<schema::Service>(1),
    entry::<updater::records::history::V1>(1),
    entry::<updater::records::patch_set::V1>(1),
    entry::<schema::Ticker>(1).optional(),
];
#[cfg(feature = "v3")]
const SCHEMAS: &[SchemaEntry] = &[
    entry::<updater::records::machine::V1>(1),
    TASK_TABLE,
    entry::<schema::Counter>(1),
    entry::<schema::Lcg>(1),
    entry::<schema::Producer>(1),
    entry::<schema::Consumer>(1),
    entry::<pipeline::ChannelV1>(1),
    entry::<schema::Heartbeat>(1),
    entry::<schema::Service>(1),
    entry::<updater::records::history::V1>(1),
    entry::<updater::records::patch_set::V1>(1),
    entry::<schema::Table>(1),
];

/// This image's identity, where the packer finds it.
#[used]
#[unsafe(link_section = ".hk_identity")]
pub static IDENTITY: EmbeddedIdentity = EmbeddedIdentity::new(
    VERSION_LABEL.0,
    VERSION_LABEL.1,
    REPLACES,
    CAPS_REQUIRED,
    CAPS_PROVIDED,
    SCHEMAS,
);

/// This image's schema entry of `kind`, if it reads that kind.
pub fn schema_of(kind: RecordKind) -> Option<&'static SchemaEntry> {
    SCHEMAS.iter().find(|s| s.kind() == kind)
}

/// Whether this image knows task kind `kind` (reads its state record).
pub fn knows_task_kind(kind: TaskKind) -> bool {
    schema_of(kind.state_record()).is_some()
}

/// What the converter chain should produce for this image.
pub fn reads() -> impl Iterator<Item = Reads> {
    SCHEMAS.iter().map(|s| Reads {
        kind: s.kind(),
        version: s.current(),
    })
}

/// Number of record kinds this image reads.
pub fn read_count() -> usize {
    SCHEMAS.len()
}

/// The converters this image carries. The `broken` variant claims (in its schema
/// table) to convert task-table v1 but lacks the step: its bootstrap refuses, and the
/// old kernel rolls back.
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
            let (_, id) = crate::image::build_id_bytes();
            write!(
                f,
                "{} ({}, build {:02x}{:02x}{:02x}{:02x})",
                IDENTITY.version(),
                IDENTITY.label(),
                id[0],
                id[1],
                id[2],
                id[3]
            )
        }
    }
    Describe
}
