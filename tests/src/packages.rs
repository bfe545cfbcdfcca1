//! Update packages for the tests: real ones (a kernel variant, built and packed once per
//! test binary) and real ones changed in exactly one way.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use image_format::package::{
    layout, parse, parse_header, reseal, PackageSpec, SegmentFlags, SegmentSpec,
};
use image_format::PAGE_SIZE;

use crate::Check;

/// The package of kernel variant `variant` (built once per test binary).
pub fn package(variant: &str) -> Vec<u8> {
    static CACHE: OnceLock<Mutex<HashMap<String, Vec<u8>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(p) = cache.lock().unwrap().get(variant) {
        return p.clone();
    }
    let (bytes, _) = hotkernel::update::package_variant(variant)
        .check(&format!("building and packing `{variant}`"));
    cache
        .lock()
        .unwrap()
        .insert(variant.to_owned(), bytes.clone());
    bytes
}

/// A copy of `package` changed by `edit`, then resealed (both digests recomputed) and
/// signed again with the development key, so that the edit is the only thing wrong
/// with it.
pub fn resealed(package: &[u8], edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    signed(&resealed_unsigned(package, edit))
}

/// [`resealed`] without signing again: the old signature trailer (if any) stays, now
/// over another header.
pub fn resealed_unsigned(package: &[u8], edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut bytes = package.to_vec();
    edit(&mut bytes);
    reseal(&mut bytes).expect("resealing an edited package");
    bytes
}

/// `bytes` (a package or a patch) signed by the development key, replacing any trailer.
pub fn signed(bytes: &[u8]) -> Vec<u8> {
    let key = hotkernel::keys::dev_key().check("the development key");
    hotkernel::keys::sign(bytes, &key).check("signing")
}

/// `bytes` without a signature trailer.
pub fn unsigned(bytes: &[u8]) -> Vec<u8> {
    hotkernel::keys::unsigned(bytes).check("stripping the signature")
}

/// Writes `value` little-endian at `offset`.
pub fn put_u16(bytes: &mut [u8], offset: usize, value: u16) {
    bytes[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
}

/// Reads a little-endian `u64` at `offset`.
pub fn get_u64(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
}

/// Writes `value` little-endian at `offset`.
pub fn put_u64(bytes: &mut [u8], offset: usize, value: u64) {
    bytes[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

/// Offset of the identity's `caps_required` in a package.
pub const CAPS_REQUIRED: usize = layout::IDENTITY + image_format::identity::offsets::CAPS_REQUIRED;

/// `package` (a valid one) with one more read-only segment after its image, so that the
/// whole package is at least `min_total` bytes and at most `max_total`. The result is a
/// well-formed, correctly sealed package of the same identity: only its size (and image
/// span) differ. The segment's bytes are pseudo-random.
pub fn grown(package: &[u8], min_total: u64, max_total: u64) -> Vec<u8> {
    let p = parse(package).expect("a valid package to grow");
    let geometry = p.geometry();
    let mut segments: Vec<SegmentSpec> = p
        .segments()
        .map(|s| SegmentSpec {
            vaddr: s.vaddr,
            mem_size: s.mem_size,
            flags: s.flags,
            bytes: p.segment_bytes(&s).to_vec(),
        })
        .collect();
    // The new segment starts at the page after the payload's end; the header grows by
    // one segment entry, which may add a page of padding (so at most `min_total` plus
    // two pages).
    let used = (package.len() as u64).next_multiple_of(PAGE_SIZE);
    let extra = min_total
        .checked_sub(used)
        .expect("min_total is above the package's size")
        .next_multiple_of(PAGE_SIZE);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..extra)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect();
    segments.push(SegmentSpec {
        vaddr: geometry.link_base + geometry.image_span,
        mem_size: extra,
        flags: SegmentFlags::R,
        bytes,
    });
    let spec = PackageSpec {
        identity: *p.identity(),
        build_id: p.build_id(),
        entries: geometry.entries,
        segments,
        relocations: p.relocations().collect(),
        description: p.description().to_vec(),
        svn: p.svn(),
    };
    let out = spec.build().expect("building the grown package");
    let total = out.len() as u64;
    assert!(
        (min_total..=max_total).contains(&total),
        "grown package of {total} bytes, wanted {min_total}..={max_total}"
    );
    assert_eq!(parse_header(&out).unwrap().total_size(), total);
    // Signed like every package `pack` makes (the trailer follows the total size).
    signed(&out)
}
