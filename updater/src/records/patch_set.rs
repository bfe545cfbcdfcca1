//! The patch set: hotpatches applied to the running image, as a swap hands them over.
//!
//! A hotpatch applies to the one build it was made for, so no patch crosses a swap into
//! another image: the new image's bootstrap drops them (with a warning naming each) when
//! it is another build, and refuses the swap when it is the very build the patches fix
//! (the fixes would be lost silently). The record also tells the new kernel which patch
//! memory to free.

use super::kinds;

#[derive(Debug, Clone, PartialEq, Eq, crate::Record)]
#[record(kind = kinds::PATCH_SET, version = 1)]
#[repr(C)]
pub struct V1 {
    pub id: u64,
    /// Patch memory: first page and page count.
    pub memory: u64,
    pub pages: u32,
    pub version: u32,
    /// Place in the stack (1 = bottom).
    pub sequence: u32,
    /// Sites (function entries) it wrote.
    pub sites: u32,
    /// Label (NUL-padded UTF-8).
    pub label: [u8; 32],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::testing::round_trip;

    #[test]
    fn round_trips() {
        round_trip(&V1 {
            id: 7,
            version: 2,
            sequence: 1,
            sites: 3,
            memory: 0xffff_ffff_c000_0000,
            pages: 2,
            label: [b'a'; 32],
        });
    }
}
