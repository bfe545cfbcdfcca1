//! Writes the seed corpus of the fuzz targets in `image-format/fuzz`: valid packages of
//! several shapes (for `parse` and `parse_resealed`) and valid mailbox blocks and
//! reports (for `mailbox`), hand-made patches (for `patch`) and real signature trailers
//! (for `signature`), one subdirectory per target. The signed seeds are signed with the
//! key the `signature` target trusts.
//!
//! `cargo run -p image-format --example fuzz_seeds -- image-format/fuzz/corpus`

use image_format::hotpatch::{
    self, Anchor, DataSpec, FunctionSpec, PatchSpec, RelocKind, RelocationSpec, Site, SpecTarget,
    TargetImage, ORIGINAL_LEN,
};
use image_format::mailbox::report::{
    KindInfo, Outcome, PhaseId, PhaseTime, Snapshot, StageReport, SwapReport, TaskSnapshot,
};
use image_format::mailbox::{
    Command, GuestState, GuestStatus, Request, RequestFlags, Response, ResponseState, Status,
};
use image_format::package::{Entries, PackageSpec, Relocation, SegmentFlags, SegmentSpec};
use image_format::signature::{self, Signed};
use image_format::{
    kinds, BuildId, Capabilities, EmbeddedIdentity, ImageVersion, Label, SchemaEntry, VersionRange,
};

const IDENTITY: EmbeddedIdentity = EmbeddedIdentity::new(
    ImageVersion::new(2, 0, 0),
    "seed",
    VersionRange::new(ImageVersion::new(1, 0, 0), ImageVersion::new(1, 9, 0)),
    Capabilities::HANDOFF_V1,
    Capabilities::HANDOFF_V1.union(Capabilities::SMP),
    &[
        SchemaEntry::new(kinds::TASK_TABLE, 2, 1),
        SchemaEntry::new(kinds::HEARTBEAT, 1, 1).optional(),
    ],
);

/// The key the signed seeds are signed with: the `signature` target trusts it.
const SIGNING_SEED: [u8; 32] = [7; 32];

fn segment(vaddr: u64, file: usize, mem: u64, flags: SegmentFlags) -> SegmentSpec {
    SegmentSpec {
        vaddr,
        mem_size: mem,
        flags,
        bytes: (0..file).map(|i| (i * 7) as u8).collect(),
    }
}

/// An image description of `len` bytes (at least 40): the header of
/// `updater::describe`'s format with no entries, and zeros after it.
fn description(len: u32) -> Vec<u8> {
    let mut d = vec![0u8; len as usize];
    d[..8].copy_from_slice(&image_format::package::DESCRIPTION_MAGIC);
    d[8..12].copy_from_slice(&1u32.to_le_bytes());
    d[12..16].copy_from_slice(&len.to_le_bytes());
    d[16..20].copy_from_slice(&1u32.to_le_bytes());
    d
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .expect("usage: fuzz_seeds <corpus directory>");
    packages(&root);
    patches(&root);
    mailbox(&format!("{root}/mailbox"));
}

fn write(dir: &str, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("create a corpus directory");
    let path = format!("{dir}/{name}");
    std::fs::write(&path, bytes).expect("write a seed");
    println!("{path}: {} bytes", bytes.len());
}

fn packages(root: &str) {
    let (r, rx) = (SegmentFlags::R, SegmentFlags::R | SegmentFlags::X);
    let (rw, relro) = (
        SegmentFlags::R | SegmentFlags::W,
        SegmentFlags::R | SegmentFlags::W | SegmentFlags::RELRO,
    );
    let entries = |at| Entries {
        kernel: at,
        bootstrap: at + 8,
        resume: at + 16,
        ap_resume: at + 24,
    };
    let specs = [
        // One code segment, no relocations.
        (vec![segment(0, 64, 64, rx)], entries(0), vec![]),
        // A kernel-like image: read-only, code, RELRO, data + bss.
        (
            vec![
                segment(0, 0x300, 0x300, r),
                segment(0x1000, 0x800, 0x800, rx),
                segment(0x2000, 0x100, 0x1000, relro),
                segment(0x3000, 0x40, 0x2000, rw),
            ],
            entries(0x1000),
            vec![
                Relocation {
                    offset: 0x2000,
                    addend: 0x1000,
                },
                Relocation {
                    offset: 0x2008,
                    addend: 0x3000,
                },
                Relocation {
                    offset: 0x3038,
                    addend: -8,
                },
            ],
        ),
        // Linked high, with gaps and a bss-only tail.
        (
            vec![
                segment(0x20_0000, 0x1200, 0x1200, rx),
                segment(0x20_4000, 0x18, 0x18, rw),
                segment(0x20_6000, 0, 0x3000, rw),
            ],
            entries(0x100),
            (0..3)
                .map(|i| Relocation {
                    offset: 0x20_4000 + 8 * i,
                    addend: i as i64,
                })
                .collect(),
        ),
    ];
    for (i, (segments, entries, relocations)) in specs.into_iter().enumerate() {
        let spec = PackageSpec {
            identity: IDENTITY,
            build_id: BuildId::new(&[i as u8; 20]),
            entries,
            segments,
            relocations,
            description: description(40 + 24 * i as u32),
            svn: 1,
        };
        let bytes = spec.build().unwrap_or_else(|e| panic!("seed {i}: {e}"));
        let header = image_format::package::parse_header(&bytes)
            .unwrap_or_else(|e| panic!("seed {i}: {e}"))
            .header_digest();
        let mut signed = bytes.clone();
        signed.extend_from_slice(&signature::sign(Signed::Package, &header, &SIGNING_SEED));
        for target in ["parse", "parse_resealed"] {
            let dir = format!("{root}/{target}");
            write(&dir, &format!("seed-{i}.hkpkg"), &bytes);
            write(&dir, &format!("seed-{i}-signed.hkpkg"), &signed);
        }
        signatures(&format!("{root}/signature"), Signed::Package, &header, i);
    }
}

/// Patches for `patch`: the first byte of each input tells the target whether to
/// reseal, so each patch is written both ways, unsigned and signed.
fn patches(root: &str) {
    let dir = &format!("{root}/patch");
    let target = TargetImage {
        build_id: BuildId::new(&[0x41; 20]),
        header_hash: [1; 32],
        text_hash: [2; 32],
        text_offset: 0x9000,
        text_size: 0x4_0000,
    };
    let site = |offset, old_size| {
        Some(Site {
            offset,
            old_size,
            original: [0x55; ORIGINAL_LEN],
        })
    };
    let function = |name: &str, code: Vec<u8>, site| FunctionSpec {
        name: name.into(),
        code,
        site,
    };
    let reloc = |at, offset, kind, target, symbol: &str| RelocationSpec {
        at,
        offset,
        kind,
        target,
        addend: -4,
        symbol: symbol.into(),
    };
    let specs = [
        // One replaced function, nothing else (the shape of a one-line fix).
        PatchSpec {
            version: 1,
            svn: 1,
            label: Label::new("one"),
            target,
            functions: vec![function(
                "kernel::tasks::counter::step",
                vec![0x48, 0x83, 0x07, 0x02, 0xc3],
                site(0xa000, 16),
            )],
            data: vec![],
            relocations: vec![],
        },
        // Two replaced functions and a new one, a string and a GOT slot, relocations
        // into the image, the code and the data.
        PatchSpec {
            version: 3,
            svn: 4,
            label: Label::new("fix-counter"),
            target,
            functions: vec![
                function(
                    "kernel::tasks::ticker::step",
                    vec![0xe8, 0, 0, 0, 0, 0xc3],
                    site(0xa100, 32),
                ),
                function(
                    "kernel::tasks::helper",
                    vec![0x48, 0x8d, 0x05, 0, 0, 0, 0, 0xff, 0x15, 0, 0, 0, 0, 0xc3],
                    None,
                ),
                function(
                    "kernel::tasks::counter::step",
                    vec![0x48, 0x83, 0x07, 0x02, 0xc3],
                    site(0xa000, 16),
                ),
            ],
            data: vec![
                DataSpec {
                    name: "anon str".into(),
                    bytes: b"hello".to_vec(),
                    align: 1,
                },
                DataSpec {
                    name: "got".into(),
                    bytes: vec![0; 8],
                    align: 8,
                },
            ],
            relocations: vec![
                reloc(
                    Anchor::Function(0),
                    1,
                    RelocKind::Pc32,
                    SpecTarget::Image(0xc000),
                    "kernel::tasks::unchanged",
                ),
                reloc(
                    Anchor::Function(1),
                    3,
                    RelocKind::Pc32,
                    SpecTarget::Patch(Anchor::Data(0), 0),
                    "anon str",
                ),
                reloc(
                    Anchor::Function(1),
                    9,
                    RelocKind::Pc32,
                    SpecTarget::Patch(Anchor::Data(1), 0),
                    "got",
                ),
                RelocationSpec {
                    addend: 0,
                    ..reloc(
                        Anchor::Data(1),
                        0,
                        RelocKind::Abs64,
                        SpecTarget::Image(0xb000),
                        "kernel::log",
                    )
                },
            ],
        },
    ];
    for (i, spec) in specs.iter().enumerate() {
        let bytes = spec
            .build()
            .unwrap_or_else(|e| panic!("patch seed {i}: {e}"));
        let header = hotpatch::parse(&bytes)
            .unwrap_or_else(|e| panic!("patch seed {i}: {e}"))
            .header_digest();
        let mut signed = bytes.clone();
        signed.extend_from_slice(&signature::sign(Signed::Patch, &header, &SIGNING_SEED));
        for (mode, how) in [(0u8, "as-is"), (1, "resealed")] {
            for (bytes, signed) in [(&bytes, ""), (&signed, "-signed")] {
                let mut input = vec![mode];
                input.extend_from_slice(bytes);
                write(dir, &format!("seed-{i}{signed}-{how}.hkpat"), &input);
            }
        }
        signatures(&format!("{root}/signature"), Signed::Patch, &header, i);
    }
}

/// Inputs for `signature`: the kind byte, the header digest, the trailer.
fn signatures(dir: &str, what: Signed, header: &[u8; 32], i: usize) {
    let mut input = vec![u8::from(what == Signed::Patch)];
    input.extend_from_slice(header);
    input.extend_from_slice(&signature::sign(what, header, &SIGNING_SEED));
    write(dir, &format!("{}-{i}.sig", what.name()), &input);
}

fn mailbox(dir: &str) {
    let image = IDENTITY.summary(BuildId::new(&[9; 20]));
    let status = GuestStatus {
        free_frames: 1000,
        patches: 0,
        boot_seq: 2,
        heartbeat: 1000,
        state: GuestState::Running,
        cpus_online: 4,
        tasks: 9,
        image,
        staging_capacity: 16 << 20,
        data_capacity: 31 << 20,
    };
    let mut block = [0u8; GuestStatus::SIZE];
    status.encode(&mut block).expect("encode the status");
    write(dir, "status", &block);
    let mut request = Request::new(7, Command::Stage);
    request.flags = RequestFlags::APPLY_AFTER_STAGE;
    request.payload_len = 16448;
    write(dir, "request", request.seal().bytes());
    let mut response = Response::new(7, ResponseState::Done, Status::RolledBack);
    response.set_message(format_args!("reconcile failed: injected"));
    write(dir, "response", response.seal().bytes());
    let snapshot = Snapshot {
        tsc_hz: 2_000_000_000,
        tsc: 5,
        tasks: vec![TaskSnapshot {
            id: 1,
            kind: 1,
            schema: 1,
            cpu: 0,
            flags: 0,
            steps: 3,
            values: [1, 2, 3, 4],
        }],
        kinds: vec![KindInfo {
            id: 1,
            name: "counter".into(),
            continuity: vec![[5, 0, 1, 0]],
        }],
    };
    write(dir, "snapshot", &snapshot.to_vec().expect("encode"));
    let stage = StageReport {
        bytes: 16448,
        staging_us: 200,
        hash_us: 150,
        verify_us: 40,
        signer: [1; 8],
        svn: 1,
        image,
    };
    write(dir, "stage", &stage.to_vec().expect("encode"));
    let swap = SwapReport {
        from: image,
        to: image,
        tasks_before: 9,
        tasks_after: 9,
        cpus_parked: 3,
        downtime_ns: 1_000_000,
        phases: vec![PhaseTime {
            phase: PhaseId::Overlay,
            ns: 300_000,
        }],
        conversions: vec![],
        warnings: vec!["heartbeat dropped".into()],
        outcome: Outcome::RolledBack {
            reason: "injected".into(),
        },
        old_image_base: 0xffff_ffff_8000_0000,
        new_image_base: 0xffff_ffff_8000_0000,
        staging_base: 0xffff_ffff_9000_0000,
        initialised: vec![],
    };
    write(dir, "swap", &swap.to_vec().expect("encode"));
}
