//! `parse` and `parse_header` on arbitrary bytes: they must never panic, and whatever
//! they accept must be self-consistent (a package is followed by nothing or by one
//! signature trailer, which is read and checked too).
#![no_main]

use image_format::package::{parse, parse_header};
use image_format::signature::{Signed, TRAILER_LEN};
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
        // Exactly the package, or the package and its signature trailer.
        let after = data.len() as u64 - p.total_size();
        assert!(after == 0 || after == TRAILER_LEN as u64);
        let trailer = &data[p.total_size() as usize..];
        if let Ok(t) = image_format::signature::find(trailer) {
            let _ = t.check(Signed::Package, &p.header().header_digest());
        }
        for s in p.segments() {
            assert_eq!(p.segment_bytes(&s).len() as u64, s.file_size);
        }
        let _ = image_format::package::describe(&p);
    }
});
