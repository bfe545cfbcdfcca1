//! The patch sites: every site an applied hotpatch wrote, with the bytes it wrote and
//! the bytes that were there, so that the image that applied them can rebuild its patch
//! stack when it resumes from its own records (a hotpatch's health window reverted:
//! its statics, the stack among them, start afresh while its text keeps the jumps of
//! the patches applied before). Into another image they mean nothing: a swap drops
//! them with the patch set ([`super::patch_set`]).

use super::kinds;

#[derive(Debug, Clone, PartialEq, Eq, crate::Record)]
#[record(kind = kinds::PATCH_SITES, version = 1)]
#[repr(C)]
pub struct V1 {
    /// The patch that wrote it (its `patch_set` entry's id).
    pub patch: u64,
    /// The site: absolute address of the replaced function's entry.
    pub addr: u64,
    /// The patch's code bytes at the start of its memory (no CPU may stand in them
    /// when it is removed).
    pub code: u64,
    /// When the patch was applied (ns since boot).
    pub applied_ns: u64,
    /// The replaced function's size.
    pub old_size: u32,
    /// Its place among the patch's sites.
    pub index: u32,
    /// The bytes before the patch (first 5 meaningful), and the jump it wrote.
    pub before: [u8; 8],
    pub jump: [u8; 8],
    /// The function's name (NUL-padded UTF-8, cut at a character boundary).
    pub function: [u8; 96],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::testing::round_trip;

    #[test]
    fn round_trips() {
        round_trip(&V1 {
            patch: 7,
            addr: 0xffff_ffff_8000_1234,
            code: 300,
            applied_ns: 12_345,
            old_size: 64,
            index: 1,
            before: [0x55, 0x48, 0x89, 0xe5, 0x41, 0, 0, 0],
            jump: [0xe9, 1, 2, 3, 4, 0, 0, 0],
            function: [b'f'; 96],
        });
    }
}
