//! Writes valid packages of several shapes into a directory: the seed corpus for the
//! fuzz targets in `image-format/fuzz`.
//!
//! `cargo run -p image-format --example fuzz_seeds -- image-format/fuzz/corpus/parse`

use image_format::package::{Entries, PackageSpec, Relocation, SegmentFlags, SegmentSpec};
use image_format::{
    kinds, BuildId, Capabilities, EmbeddedIdentity, ImageVersion, SchemaEntry, VersionRange,
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

fn segment(vaddr: u64, file: usize, mem: u64, flags: SegmentFlags) -> SegmentSpec {
    SegmentSpec {
        vaddr,
        mem_size: mem,
        flags,
        bytes: (0..file).map(|i| (i * 7) as u8).collect(),
    }
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: fuzz_seeds <directory>");
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
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
        };
        let bytes = spec.build().unwrap_or_else(|e| panic!("seed {i}: {e}"));
        let path = format!("{dir}/seed-{i}.hkpkg");
        std::fs::write(&path, &bytes).expect("write a seed");
        println!("{path}: {} bytes", bytes.len());
    }
}
