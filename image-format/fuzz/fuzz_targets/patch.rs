//! `hotpatch::parse` on arbitrary bytes — as they come (half the inputs) or with the
//! payload digest, patch id and header digest recomputed (`hotpatch::reseal`, the other
//! half, so mutations get past the digests to the structural checks) — then the
//! guest's own arithmetic on what it accepted (`relocate`, `jump`).
//!
//! Asserted, independently of `check.rs`: everything the parser promises its callers
//! (docs/HOTPATCH.md). Every table entry decodes; code lies in the code region and data
//! in the data region, without overlaps; replaced functions come first, each site
//! inside the target's text, large enough for the jump and not overlapping another;
//! every relocation's field lies inside one function or data block, in order, its
//! payload target inside the payload; what follows the patch is nothing or one
//! trailer. `relocate` for an image and patch area 1 GiB apart either succeeds,
//! changing only relocation fields, or says a value does not fit.
#![no_main]

use image_format::hotpatch::{self, apply, FunctionKind, RelocTarget, JUMP_LEN};
use image_format::signature::{self, Signed, TRAILER_LEN};
use libfuzzer_sys::fuzz_target;

const IMAGE_BASE: u64 = 0xffff_ffff_8000_0000;
const PATCH_BASE: u64 = 0xffff_ffff_c000_0000;

fn end(start: u32, len: u32) -> u64 {
    u64::from(start) + u64::from(len)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 {
        let _ = hotpatch::reseal(&mut bytes);
    }
    let Ok(view) = hotpatch::parse(&bytes) else {
        return;
    };

    // What follows the patch.
    assert_eq!(view.bytes().len() + view.trailer().len(), bytes.len());
    assert!(view.trailer().is_empty() || view.trailer().len() == TRAILER_LEN);
    if let Ok(t) = signature::find(view.trailer()) {
        let _ = t.check(Signed::Patch, &view.header_digest());
    }

    // Regions.
    let payload = view.payload().len() as u64;
    let code_region = u64::from(view.code_size());
    let (data_at, data_size) = view.data_region();
    // The payload is the code region, or that, padding to a 4 KiB boundary and the data
    // region (with no data the data region is empty, its offset past the payload).
    assert!(code_region > 0);
    assert_eq!(data_at % 4096, 0);
    assert!(u64::from(data_at) >= code_region);
    if data_size == 0 {
        assert_eq!(payload, code_region);
    } else {
        assert_eq!(end(data_at, data_size), payload);
    }

    // Functions.
    assert_eq!(view.functions().count(), view.function_count());
    let mut code: Vec<(u64, u64)> = Vec::new();
    let mut sites: Vec<(u64, u64)> = Vec::new();
    let mut seen_new = false;
    let target = view.target();
    let text = (
        target.text_offset,
        target.text_offset.saturating_add(target.text_size),
    );
    for f in view.functions() {
        assert!(f.code_size > 0);
        assert!(end(f.code_offset, f.code_size) <= code_region);
        assert_eq!(view.code(&f).len(), f.code_size as usize);
        code.push((u64::from(f.code_offset), end(f.code_offset, f.code_size)));
        match (f.kind, f.site) {
            (FunctionKind::Replace, Some(site)) => {
                assert!(!seen_new, "a replaced function after a new one");
                assert!(site.old_size as usize >= JUMP_LEN);
                let site_end = site.offset.saturating_add(u64::from(site.old_size));
                assert!(text.0 <= site.offset && site_end <= text.1);
                sites.push((site.offset, site_end));
                let site_at = IMAGE_BASE.wrapping_add(site.offset);
                let _ = apply::jump(site_at, PATCH_BASE + u64::from(f.code_offset));
            }
            (FunctionKind::New, None) => seen_new = true,
            (kind, site) => panic!("{kind:?} with site {site:?}"),
        }
    }
    for spans in [&mut code, &mut sites] {
        spans.sort_unstable();
        for pair in spans.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "overlapping spans {pair:?}");
        }
    }

    // Data blocks.
    assert_eq!(view.data_blocks().count(), view.data_count());
    let mut blocks: Vec<(u64, u64)> = code.clone();
    let mut previous = 0u64;
    for b in view.data_blocks() {
        assert!(b.size > 0 && b.align.is_power_of_two() && b.align <= 4096);
        assert_eq!(b.offset % b.align, 0);
        assert!(u64::from(b.offset) >= u64::from(data_at).max(previous));
        assert!(end(b.offset, b.size) <= end(data_at, data_size));
        previous = end(b.offset, b.size);
        blocks.push((u64::from(b.offset), previous));
    }

    // Relocations.
    assert_eq!(view.relocations().count(), view.relocation_count());
    let mut fields: Vec<(usize, usize)> = Vec::new();
    let mut last_end = 0u64;
    for r in view.relocations() {
        let (start, stop) = (
            u64::from(r.place),
            u64::from(r.place) + r.kind.width() as u64,
        );
        assert!(start >= last_end, "relocations out of order");
        last_end = stop;
        assert!(
            blocks.iter().any(|&(s, e)| s <= start && stop <= e),
            "relocation field [{start:#x}, {stop:#x}) outside every block"
        );
        if let RelocTarget::Payload(t) = r.target {
            let t = u64::from(t);
            assert!(
                blocks.iter().any(|&(s, e)| s <= t && t <= e),
                "payload target {t:#x} outside every block"
            );
        }
        fields.push((start as usize, stop as usize));
    }

    // The guest's arithmetic.
    let mut copy = view.payload().to_vec();
    if apply::relocate(&view, &mut copy, IMAGE_BASE, PATCH_BASE).is_ok() {
        let mut inside = vec![false; copy.len()];
        for &(s, e) in &fields {
            inside[s..e].iter_mut().for_each(|b| *b = true);
        }
        for (i, (a, b)) in view.payload().iter().zip(&copy).enumerate() {
            assert!(
                inside[i] || a == b,
                "relocate changed byte {i:#x} outside every field"
            );
        }
    }
    let mut short = vec![0u8; copy.len().saturating_sub(1)];
    if !copy.is_empty() {
        assert!(apply::relocate(&view, &mut short, IMAGE_BASE, PATCH_BASE).is_err());
    }
});
