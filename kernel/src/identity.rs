//! This image's identity: version, what it may replace, the capabilities it needs and
//! offers, and every record kind it reads — the update machinery's own records and each
//! task kind's state (from the list in `tasks/mod.rs`), with the oldest version its
//! converters take each from. Nothing here is written per kind.
//!
//! It is embedded as [`IDENTITY`] in section `.hk_identity`, where the host's packer
//! reads it into the package header. An older kernel checks it (from that header)
//! before accepting this image; this image's bootstrap checks the running kernel's
//! against it again, with [`IMAGE`], before anything is overwritten.

use image_format::{Capabilities, EmbeddedIdentity, ImageVersion, SchemaEntry, VersionRange};
use updater::convert::Step;
use updater::reconcile::{Image, RecordDecl};
use updater::records::{history, machine, patch_set, patch_sites, run_queues, TaskKind};

use crate::sched::{self, TaskEntry};
use crate::tasks::{self, pipeline};

/// This image's version and label.
const VERSION: ImageVersion = ImageVersion::new(1, 0, 0);
const LABEL: &str = "v1";

/// The running versions this image may replace: any from 1.0.0 up to its own major.
const REPLACES: VersionRange = VersionRange::new(
    ImageVersion::new(1, 0, 0),
    ImageVersion::new(VERSION.major, 99, 99),
);

/// What this image offers its successor.
const CAPS_PROVIDED: Capabilities = Capabilities::HANDOFF_V1
    .union(Capabilities::PARK_STUB_V1)
    .union(Capabilities::FRAME_BITMAP_V1)
    .union(Capabilities::MAILBOX_V1)
    .union(Capabilities::TASKS_V1)
    .union(Capabilities::SMP)
    .union(Capabilities::HOTPATCH_V1);

/// What this image needs from the kernel it replaces: the hand-off ABI, the park stub
/// and the frame bitmap it adopts.
const CAPS_REQUIRED: Capabilities = Capabilities::HANDOFF_V1
    .union(Capabilities::PARK_STUB_V1)
    .union(Capabilities::FRAME_BITMAP_V1);

/// The update machinery's records, in the versions this image reads and writes (the
/// task table's version and converters are the scheduler's: `sched/task.rs`).
const SYSTEM_RECORDS: &[RecordDecl] = &[
    RecordDecl::of::<machine::V1>(false),
    RecordDecl::of::<TaskEntry>(false),
    RecordDecl::of::<run_queues::V1>(false),
    RecordDecl::of::<pipeline::ChannelV1>(false),
    RecordDecl::of::<history::V2>(false),
    RecordDecl::of::<patch_set::V1>(false),
    RecordDecl::of::<patch_sites::V1>(false),
];

/// Every record kind this image reads: the machinery's, then each task kind's state.
pub const RECORDS: [RecordDecl; SYSTEM_RECORDS.len() + tasks::STATE_RECORDS.len()] = {
    let mut all = [SYSTEM_RECORDS[0]; SYSTEM_RECORDS.len() + tasks::STATE_RECORDS.len()];
    let mut i = 0;
    while i < SYSTEM_RECORDS.len() {
        all[i] = SYSTEM_RECORDS[i];
        i += 1;
    }
    let mut j = 0;
    while j < tasks::STATE_RECORDS.len() {
        all[i + j] = tasks::STATE_RECORDS[j];
        j += 1;
    }
    all
};

/// Every converter this image carries, by kind.
pub const STEPS: [&[Step]; 1 + tasks::STEPS.len()] = {
    let mut all = [sched::TASK_TABLE_STEPS; 1 + tasks::STEPS.len()];
    let mut i = 0;
    while i < tasks::STEPS.len() {
        all[1 + i] = tasks::STEPS[i];
        i += 1;
    }
    all
};

/// Every task kind, for the initialisation requirements (bit `i`: kind `i`).
pub const KIND_IDS: [TaskKind; tasks::KINDS.len()] = {
    let mut ids = [TaskKind::from_raw(0); tasks::KINDS.len()];
    let mut i = 0;
    while i < ids.len() {
        ids[i] = tasks::KINDS[i].id;
        i += 1;
    }
    ids
};

/// The oldest version of `kind` this image's converters reach `current` from.
const fn min_from(kind: image_format::RecordKind, current: u16) -> u16 {
    let mut v = current;
    'down: while v > 1 {
        let mut l = 0;
        while l < STEPS.len() {
            let mut s = 0;
            while s < STEPS[l].len() {
                let step = &STEPS[l][s];
                if step.kind.get() == kind.get() && step.to.get() == v {
                    v -= 1;
                    continue 'down;
                }
                s += 1;
            }
            l += 1;
        }
        break;
    }
    v
}

/// The schema table of the identity, derived from [`RECORDS`] and [`STEPS`].
const SCHEMAS: [SchemaEntry; RECORDS.len()] = {
    let mut table = [SchemaEntry::new(image_format::kinds::MACHINE, 1, 1); RECORDS.len()];
    let mut i = 0;
    while i < RECORDS.len() {
        let r = &RECORDS[i];
        let current = r.version.get();
        let entry = SchemaEntry::new(r.kind, current, min_from(r.kind, current));
        table[i] = if r.optional { entry.optional() } else { entry };
        i += 1;
    }
    table
};

/// This image's identity, where the packer finds it. Read at run time through [`this`].
#[used]
#[unsafe(link_section = ".hk_identity")]
static IDENTITY: EmbeddedIdentity = EmbeddedIdentity::new(
    VERSION,
    LABEL,
    REPLACES,
    CAPS_REQUIRED,
    CAPS_PROVIDED,
    &SCHEMAS,
);

/// This image's identity. Read through an opaque reference, not folded into the code
/// that uses it: builds that differ only in version and label (`twin` and `v1`) then
/// have the same code, so a swap between them installs only the pages that differ —
/// under TCG every installed code page is translated again, about 40 µs each. (The
/// label copied into the history entry made every page after it move by 16 bytes, and a
/// v1 ⇄ twin swap's re-initialisation went from about 1 ms to 7.)
pub fn this() -> &'static EmbeddedIdentity {
    core::hint::black_box(&IDENTITY)
}

/// This image as its bootstrap's reconcile sees it (the build id is read at run time).
pub fn image(build_id: &[u8]) -> Image<'_> {
    Image {
        identity: this(),
        build_id,
        description: crate::schema::for_bootstrap(),
        steps: &STEPS,
        init_kinds: &KIND_IDS,
    }
}

/// This image's schema entry of `kind`, if it reads that kind.
pub fn schema_of(kind: image_format::RecordKind) -> Option<&'static SchemaEntry> {
    this().schema(kind)
}

/// Whether this image knows task kind `kind` (reads its state record).
pub fn knows_task_kind(kind: TaskKind) -> bool {
    schema_of(kind.state_record()).is_some()
}

/// One line: version, label, build id prefix (no allocation: usable before the heap).
pub fn describe() -> impl core::fmt::Display {
    struct Describe;
    impl core::fmt::Display for Describe {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            let (_, id) = crate::image::build_id_bytes();
            write!(
                f,
                "{} ({}, build {:02x}{:02x}{:02x}{:02x})",
                this().version(),
                this().label(),
                id[0],
                id[1],
                id[2],
                id[3]
            )
        }
    }
    Describe
}

/// This image's security version (SVN): raised when a release fixes a security bug, never
/// lowered. Distinct from the version range: a VM refuses a package or patch whose SVN is
/// below the highest that ever ran in it (the update history keeps that number).
pub const SVN: u32 = 1;

/// [`SVN`] where the packer reads it (section `.hk_svn`, one `u32`).
#[used]
#[unsafe(link_section = ".hk_svn")]
static SVN_SECTION: u32 = SVN;

/// The public keys this kernel trusts to sign packages and patches, embedded at build
/// time (`build.rs`: the runner's `HOTKERNEL_TRUSTED_KEYS`, or `target/hotkernel/keys`).
pub mod trust {
    include!(concat!(env!("OUT_DIR"), "/trusted_keys.rs"));
}
