//! The input with both digests recomputed, then `parse`, `parse_header` and
//! `describe_bytes`: without the reseal almost every mutation stops at the header
//! digest, so this target is the one that reaches the structural checks behind it.
#![no_main]

use image_format::package::{describe_bytes, parse, parse_header, reseal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    let _ = reseal(&mut bytes);
    let header = parse_header(&bytes);
    let package = parse(&bytes);
    if package.is_ok() {
        assert!(header.is_ok(), "parse accepted what parse_header refused");
    }
    if let Ok(p) = package {
        for s in p.segments() {
            assert_eq!(p.segment_bytes(&s).len() as u64, s.file_size);
            assert!(s.vaddr >= p.geometry().link_base);
        }
    }
    let _ = describe_bytes(&bytes);
});
