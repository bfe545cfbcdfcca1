//! `parse` and `parse_header` on arbitrary bytes: they must never panic, and whatever
//! they accept must be self-consistent.
#![no_main]

use image_format::package::{parse, parse_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = parse_header(data) {
        assert!(h.header_size() as usize <= data.len());
        assert_eq!(h.segments().count(), h.segment_count());
        assert_eq!(h.relocations().count(), h.relocation_count());
        let d = h.description();
        assert!(d.starts_with(&image_format::package::DESCRIPTION_MAGIC));
        assert!(h.description_offset() + d.len() as u64 <= u64::from(h.header_size()));
        let _ = h.summary();
    }
    if let Ok(p) = parse(data) {
        assert_eq!(p.total_size(), data.len() as u64);
        for s in p.segments() {
            assert_eq!(p.segment_bytes(&s).len() as u64, s.file_size);
        }
        let _ = image_format::package::describe(&p);
    }
});
