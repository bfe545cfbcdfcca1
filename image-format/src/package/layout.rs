//! Byte offsets of the package header (format version 3), as in `docs/FORMAT.md`.
//!
//! All integers are little-endian. Offsets are from the start of the package.

/// `[u8; 8]` magic `HKPKG\0\r\n`.
pub const MAGIC: usize = 0x000;
/// `u16` format version (3).
pub const FORMAT_VERSION: usize = 0x008;
/// `u16` header flags; none are defined, must be 0.
pub const FLAGS: usize = 0x00a;
/// `u32` header size: the bytes the header digest covers, tables included.
pub const HEADER_SIZE: usize = 0x00c;
/// `u64` total size: header, padding to 4 KiB and payload.
pub const TOTAL_SIZE: usize = 0x010;
/// `[u8; 32]` SHA-256 of `[0, header_size)` with this field zeroed.
pub const HEADER_DIGEST: usize = 0x018;
/// `[u8; 32]` SHA-256 of the payload.
pub const PAYLOAD_DIGEST: usize = 0x038;
/// `u8` build id length (≤ 32).
pub const BUILD_ID_LEN: usize = 0x058;
/// 7 reserved bytes, zero.
pub const RESERVED: usize = 0x059;
/// `[u8; 32]` build id, zero padded.
pub const BUILD_ID: usize = 0x060;
/// 224 bytes: the image's `EmbeddedIdentity`, encoded as in [`crate::identity`].
pub const IDENTITY: usize = 0x080;
/// `u64` link base: the lowest virtual address of the image (page aligned).
pub const LINK_BASE: usize = 0x160;
/// `u64` image span: page-aligned size from the link base to the end of the last segment.
pub const IMAGE_SPAN: usize = 0x168;
/// `u64` offset of the ELF entry (`e_entry`) from the link base.
pub const KERNEL_ENTRY: usize = 0x170;
/// `u64` offset of `hk_bootstrap` from the link base.
pub const BOOTSTRAP_ENTRY: usize = 0x178;
/// `u64` offset of `hk_resume` from the link base.
pub const RESUME_ENTRY: usize = 0x180;
/// `u64` offset of `hk_ap_resume` from the link base.
pub const AP_RESUME_ENTRY: usize = 0x188;
/// `u32` number of segments.
pub const SEGMENT_COUNT: usize = 0x190;
/// `u32` number of relocations.
pub const RELOCATION_COUNT: usize = 0x194;
/// `u64` offset of the segment table (8-aligned, in `[FIXED_SIZE, header_size)`).
pub const SEGMENT_TABLE: usize = 0x198;
/// `u64` offset of the relocation table (8-aligned, in `[FIXED_SIZE, header_size)`).
pub const RELOCATION_TABLE: usize = 0x1a0;
/// `u64` offset of the image description (8-aligned, in `[FIXED_SIZE, header_size)`,
/// not overlapping either table).
pub const DESCRIPTION: usize = 0x1a8;
/// `u32` length of the image description (1 ..= 1 MiB).
pub const DESCRIPTION_LEN: usize = 0x1b0;
/// `u32` security version (SVN) of the image: monotonic, distinct from the version
/// range (new in format version 3, where version 2 had a zero reserved field).
pub const SVN: usize = 0x1b4;
/// Size of the fixed part; the tables and the description follow.
pub const FIXED_SIZE: usize = 0x1b8;

/// Size of one segment table entry: payload offset `u64`, vaddr `u64`, file size `u64`,
/// memory size `u64`, flags `u32`, reserved `u32` (zero).
pub const SEGMENT_ENTRY_SIZE: usize = 40;
/// Size of one relocation table entry: offset `u64`, addend `i64`.
pub const RELOCATION_ENTRY_SIZE: usize = 16;

const _: () = assert!(IDENTITY + crate::identity::EmbeddedIdentity::SIZE == LINK_BASE);
