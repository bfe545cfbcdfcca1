//! The host's check on descriptions built here with `updater::describe::write`: what
//! passes with which method, each refusal with the guest's text, and the checks it
//! skips (with their notes) rather than guess.

use image_format::package::{Entries, PackageSpec, SegmentFlags, SegmentSpec};
use image_format::{BuildId, Capabilities, EmbeddedIdentity, ImageVersion, VersionRange};
use updater::convert::{ConvertError, Step, Upgrade};
use updater::describe::{self, Declaration, RegionDecl, RegionRule};
use updater::reconcile::RecordDecl;
use updater::record::Record;
use updater::records::{machine, TaskKind};

use super::*;

const KIND: RecordKind = TaskKind::COUNTER.state_record();

#[derive(Debug, Clone, PartialEq, updater::Record)]
#[record(kind = KIND, version = 1)]
#[repr(C)]
struct V1 {
    count: u64,
    step: u32,
    delta: i32,
}

/// v1 again with its fields in another order: the mistake the guard catches.
#[derive(Debug, Clone, PartialEq, updater::Record)]
#[record(kind = KIND, version = 1)]
#[repr(C)]
struct V1Reordered {
    step: u32,
    delta: i32,
    count: u64,
}

/// v1 → v2 is mechanical: `step` renamed through an alias, `seen` added with a default.
#[derive(Debug, Clone, PartialEq, updater::Record)]
#[record(kind = KIND, version = 2)]
#[repr(C)]
struct V2 {
    count: u64,
    #[record(default = 1, alias = "step")]
    stride: u32,
    #[record(default = -2i32)]
    delta: i32,
    #[record(default = 7)]
    seen: u64,
}

/// v2 with `count` narrowed: not mechanical.
#[derive(Debug, Clone, PartialEq, updater::Record)]
#[record(kind = KIND, version = 2)]
#[repr(C)]
struct V2Narrow {
    count: u32,
    step: u32,
    delta: i32,
}

struct One;
impl Upgrade for One {
    type From = V1;
    type To = V2;
    fn upgrade(old: &V1) -> Result<V2, ConvertError> {
        Ok(V2 {
            count: old.count,
            stride: old.step,
            delta: old.delta,
            seen: 0,
        })
    }
}

const fn heap(len: u64) -> RegionDecl {
    RegionDecl {
        name: "heap",
        start: 0x10_0000,
        len,
        rule: RegionRule::Resizable,
    }
}

const HANDOFF: RegionDecl = RegionDecl {
    name: "hand-off",
    start: 0x40_0000,
    len: 0x40_0000,
    rule: RegionRule::Fixed,
};

/// The description of an image that reads `records`, carries `steps`, maps `regions`.
fn describe(records: &[RecordDecl], steps: &[Step], regions: &[RegionDecl]) -> Vec<u8> {
    let steps = [steps];
    let decl = Declaration {
        abi_version: 1,
        descriptor: <machine::V1 as Record>::LAYOUT,
        records,
        steps: &steps,
        regions,
    };
    let mut out = vec![0u8; describe::len(&decl)];
    describe::write(&decl, &mut out);
    out
}

/// An image that reads `records` with no converters and the running kernel's regions.
fn reading(records: &[RecordDecl]) -> Vec<u8> {
    describe(records, &[], &[heap(0x1000), HANDOFF])
}

pub(crate) fn running_v1() -> Vec<u8> {
    reading(&[RecordDecl::of::<V1>(false)])
}

/// v2 with the v1 → v2 converter and a heap twice as large.
pub(crate) fn counter_v2() -> Vec<u8> {
    describe(
        &[RecordDecl::of::<V2>(false)],
        &[Step::of::<One>()],
        &[heap(0x2000), HANDOFF],
    )
}

fn parse(bytes: &[u8]) -> Description<'_> {
    Description::parse(bytes).unwrap()
}

fn plan_of(new: &[u8]) -> Result<HostPlan, HostRefusal> {
    plan(&parse(&running_v1()), &parse(new))
}

/// The identity of image version `major`.0.0 labelled `label`.
fn identity(major: u16, label: &str) -> EmbeddedIdentity {
    let zero = ImageVersion::new(0, 0, 0);
    EmbeddedIdentity::new(
        ImageVersion::new(major, 0, 0),
        label,
        VersionRange::new(zero, zero),
        Capabilities::empty(),
        Capabilities::empty(),
        &[],
    )
}

/// A small valid package whose header carries `description`.
fn package(description: Vec<u8>) -> Vec<u8> {
    PackageSpec {
        identity: identity(2, "v2"),
        build_id: BuildId::new(&[0x42; 20]),
        entries: Entries {
            kernel: 0,
            bootstrap: 0,
            resume: 0,
            ap_resume: 0,
        },
        segments: vec![SegmentSpec {
            vaddr: 0,
            mem_size: 64,
            flags: SegmentFlags::R | SegmentFlags::X,
            bytes: vec![0xcc; 64],
        }],
        relocations: Vec::new(),
        description,
        svn: 1,
    }
    .build()
    .unwrap()
}

fn found(description: Vec<u8>) -> Running {
    Running::Found {
        elf: PathBuf::from("/k/running.elf"),
        description,
    }
}

#[test]
fn the_same_layouts_are_unchanged() {
    let p = plan_of(&running_v1()).unwrap();
    assert_eq!(
        p.records,
        [RecordOutcome::Read {
            kind: KIND,
            from: SchemaVersion::new(1),
            to: SchemaVersion::new(1),
            method: Method::Unchanged,
            added: vec![],
            dropped: vec![],
        }]
    );
    assert!(p.resizes.is_empty());
}

#[test]
fn a_mechanical_change_passes_converted_by_fields_and_names_what_it_adds() {
    let new = reading(&[RecordDecl::of::<V2>(false)]);
    let p = plan_of(&new).unwrap();
    let Some(RecordOutcome::Read {
        method,
        added,
        dropped,
        ..
    }) = p.record(KIND)
    else {
        panic!("{p:?}");
    };
    assert_eq!(*method, Method::ByFields);
    assert_eq!(added, &["seen"]);
    assert!(dropped.is_empty(), "`step` is carried by its alias");
}

#[test]
fn a_converter_and_a_larger_heap_pass() {
    let p = plan_of(&counter_v2()).unwrap();
    let Some(RecordOutcome::Read { method, to, .. }) = p.record(KIND) else {
        panic!("{p:?}");
    };
    assert_eq!((*method, to.get()), (Method::Converters, 2));
    assert_eq!(
        p.resizes,
        [Resize {
            name: "heap".into(),
            start: 0x10_0000,
            running: 0x1000,
            new: 0x2000
        }]
    );
}

#[test]
fn the_layout_guard_refuses_a_changed_table_under_one_version() {
    let new = reading(&[RecordDecl::of::<V1Reordered>(false)]);
    let e = plan_of(&new).unwrap_err();
    assert_eq!(e.rule, Rule::LayoutGuard);
    assert_eq!(
        e.to_string(),
        "refused before pushing: counter-state v1 has another layout in the new image than in the running kernel (`count` changed, `step` changed, `delta` changed) but the same version: bump the schema version of counter-state"
    );
    // The same refusal through the package, and as the runner's error.
    let e = against(&found(running_v1()), &package(new)).unwrap_err();
    assert_eq!(e.rule, Rule::LayoutGuard);
    let text = crate::Error::from(e).to_string();
    assert!(
        text.starts_with("refused before pushing: counter-state v1 has another layout"),
        "{text}"
    );
}

#[test]
fn a_narrowing_without_a_converter_is_refused_naming_the_field() {
    let new = reading(&[RecordDecl::of::<V2Narrow>(false)]);
    let e = plan_of(&new).unwrap_err();
    assert_eq!(e.rule, Rule::Fields);
    assert!(
        e.message.contains("field `count` narrowed from u64 to u32"),
        "{e}"
    );
}

#[test]
fn a_moved_region_and_a_missing_record_are_refused() {
    let moved = RegionDecl {
        start: 0x80_0000,
        ..HANDOFF
    };
    let new = describe(&[RecordDecl::of::<V1>(false)], &[], &[heap(0x1000), moved]);
    let e = plan_of(&new).unwrap_err();
    assert_eq!(e.rule, Rule::Region);
    assert!(e.message.contains("the region `hand-off`"), "{e}");
    let new = reading(&[]);
    let e = plan_of(&new).unwrap_err();
    assert_eq!(e.rule, Rule::NotRead);
}

#[test]
fn a_package_passes_against_the_running_description() {
    let check = against(&found(running_v1()), &package(counter_v2())).unwrap();
    let HostCheck::Passed { elf, plan } = check else {
        panic!("{check:?}");
    };
    assert_eq!(elf, PathBuf::from("/k/running.elf"));
    assert_eq!(plan.records.len(), 1);
}

#[test]
fn a_package_description_the_updater_cannot_read_is_refused() {
    // A well-placed description (magic, stated length) of a version not understood.
    let mut bad = running_v1();
    bad[8] = 2;
    let e = against(&found(running_v1()), &package(bad)).unwrap_err();
    assert_eq!(e.rule, Rule::Description);
    assert_eq!(
        e.message,
        "the package's image description version 2 is not understood (1 is)"
    );
}

#[test]
fn what_the_host_cannot_know_is_skipped_with_a_note() {
    let pkg = package(counter_v2());
    let unknown = Running::Unknown {
        note: "no ELF here".into(),
    };
    assert_eq!(
        against(&unknown, &pkg),
        Ok(HostCheck::Skipped {
            note: "no ELF here".into()
        })
    );
    // A package whose header does not parse goes on to the guest, which names why.
    let mut damaged = pkg.clone();
    damaged[0x100] ^= 1;
    let Ok(HostCheck::Skipped { note }) = against(&found(running_v1()), &damaged) else {
        panic!("a damaged header is not the host's to refuse");
    };
    assert!(
        note.starts_with("the package's header does not parse (header digest mismatch"),
        "{note}"
    );
    // A running description that does not parse: the host cannot compare.
    let Ok(HostCheck::Skipped { note }) = against(&found(vec![0; 40]), &pkg) else {
        panic!("an unreadable running description is skipped");
    };
    assert!(
        note.starts_with("/k/running.elf: image description"),
        "{note}"
    );
}

/// A file under the system's temporary directory, unique to this test and process.
fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("hotkernel-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn the_running_elf_is_found_by_build_id_and_read_for_its_description() {
    let id = [0x7e; 20];
    let elf = crate::hotpatch::elf::tests::tiny_elf(&id, &[0x90; 16]);
    let path = temp_file("running.elf", &elf);
    let image = identity(1, "v1");
    // Found by its build id, but it embeds no description: the note says so.
    let found = running_by_build_id(
        &image.summary(BuildId::new(&id)),
        std::slice::from_ref(&path),
    );
    let Running::Unknown { note } = found else {
        panic!("{found:?}");
    };
    assert!(note.contains(&path.display().to_string()), "{note}");
    assert!(note.contains(".hk_schema"), "{note}");
    // No file has this build id.
    let other = running_by_build_id(
        &image.summary(BuildId::new(&[0x01; 20])),
        std::slice::from_ref(&path),
    );
    let Running::Unknown { note } = other else {
        panic!("{other:?}");
    };
    assert!(
        note.starts_with(
            "no ELF on this host has the build id of the running kernel (v1, build 0101"
        ),
        "{note}"
    );
    std::fs::remove_file(&path).unwrap();
    let e = from_elf(&path).unwrap_err();
    assert!(e.starts_with("cannot read"), "{e}");
}

#[test]
fn the_guest_status_names_the_image_to_look_for() {
    use image_format::mailbox::{GuestState, GuestStatus, DATA_OFFSET, STATUS_OFFSET};
    let id = [0x3c; 20];
    let elf = crate::hotpatch::elf::tests::tiny_elf(&id, &[0x90; 16]);
    let elf_path = temp_file("status.elf", &elf);
    let image = identity(1, "v1");
    let status = GuestStatus {
        free_frames: 1,
        patches: 0,
        boot_seq: 1,
        heartbeat: 1,
        state: GuestState::Running,
        cpus_online: 1,
        tasks: 1,
        image: image.summary(BuildId::new(&id)),
        staging_capacity: 1 << 20,
        data_capacity: 1 << 20,
    };
    let mut file = vec![0u8; DATA_OFFSET + 4096];
    status
        .encode(&mut file[STATUS_OFFSET..STATUS_OFFSET + GuestStatus::SIZE])
        .unwrap();
    let mailbox_path = temp_file("mailbox", &file);
    let mb = Mailbox::open_file(&mailbox_path, Path::new("/nonexistent/doorbell")).unwrap();
    assert_eq!(mb.booted_elf(), None);
    let Running::Unknown { note } = running(&mb, std::slice::from_ref(&elf_path)) else {
        panic!("the tiny ELF has no description");
    };
    assert_eq!(
        note,
        format!(
            "the running kernel's ELF: {} has no image description (.hk_schema)",
            elf_path.display()
        )
    );
    // No guest has written the status block: the host cannot tell, and says so.
    let blank = temp_file("blank-mailbox", &vec![0u8; DATA_OFFSET + 4096]);
    let mb = Mailbox::open_file(&blank, Path::new("/nonexistent/doorbell")).unwrap();
    let Running::Unknown { note } = running(&mb, std::slice::from_ref(&elf_path)) else {
        panic!("no status, no image");
    };
    assert!(
        note.starts_with("cannot read which image the guest runs"),
        "{note}"
    );
    for p in [elf_path, mailbox_path, blank] {
        std::fs::remove_file(p).unwrap();
    }
}
