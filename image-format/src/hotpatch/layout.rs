//! Byte offsets of the patch header (patch format version 2), as in `docs/HOTPATCH.md`.
//!
//! All integers are little-endian. Offsets are from the start of the patch.

/// `[u8; 8]` magic `HKPAT\0\r\n`.
pub const MAGIC: usize = 0x000;
/// `u16` format version (2).
pub const FORMAT_VERSION: usize = 0x008;
/// `u16` flags; none are defined, must be 0.
pub const FLAGS: usize = 0x00a;
/// `u32` header size: the bytes the header digest covers, tables included.
pub const HEADER_SIZE: usize = 0x00c;
/// `u64` total size: header, zero padding to a 16-byte boundary, payload.
pub const TOTAL_SIZE: usize = 0x010;
/// `[u8; 32]` SHA-256 of `[0, header_size)` with this field read as zeros.
pub const HEADER_DIGEST: usize = 0x018;
/// `[u8; 32]` SHA-256 of the payload.
pub const PAYLOAD_DIGEST: usize = 0x038;
/// `u64` patch id: the first 8 bytes of the payload digest, little-endian.
pub const PATCH_ID: usize = 0x058;
/// `u32` patch version (sequence number chosen by the generator, at least 1).
pub const PATCH_VERSION: usize = 0x060;
/// `u32` security version (SVN) of the build the patch's code comes from (new in
/// version 2, where version 1 had a zero reserved field).
pub const SVN: usize = 0x064;
/// `[u8; 48]` label: UTF-8, NUL padded (as [`crate::Label`]).
pub const LABEL: usize = 0x068;
/// `u8` length of the target's build id (≤ 32).
pub const TARGET_BUILD_ID_LEN: usize = 0x098;
/// 7 reserved bytes, zero.
pub const RESERVED_1: usize = 0x099;
/// `[u8; 32]` the target's build id, zero padded.
pub const TARGET_BUILD_ID: usize = 0x0a0;
/// `[u8; 32]` SHA-256 of the target's ELF header and program header table.
pub const TARGET_HEADER_HASH: usize = 0x0c0;
/// `[u8; 32]` SHA-256 of the file bytes of the target's executable segment.
pub const TARGET_TEXT_HASH: usize = 0x0e0;
/// `u64` the executable segment's address, relative to the image's load base.
pub const TARGET_TEXT_OFFSET: usize = 0x100;
/// `u64` the executable segment's file size.
pub const TARGET_TEXT_SIZE: usize = 0x108;
/// `u32` code region size: functions live in `payload[0, code_size)`.
pub const CODE_SIZE: usize = 0x110;
/// `u32` payload offset of the data region: `code_size` rounded up to 4 KiB.
pub const DATA_OFFSET: usize = 0x114;
/// `u32` data region size (0 when there are no data blocks).
pub const DATA_SIZE: usize = 0x118;
/// `u32` number of function entries.
pub const FUNCTION_COUNT: usize = 0x11c;
/// `u32` number of data block entries.
pub const DATA_COUNT: usize = 0x120;
/// `u32` number of relocation entries.
pub const RELOCATION_COUNT: usize = 0x124;
/// `u32` string table size in bytes.
pub const STRING_TABLE_SIZE: usize = 0x128;
/// `u32` reserved, zero.
pub const RESERVED_2: usize = 0x12c;
/// `u64` offset of the function table (8-aligned, in `[FIXED_SIZE, header_size)`).
pub const FUNCTION_TABLE: usize = 0x130;
/// `u64` offset of the data table (8-aligned, in `[FIXED_SIZE, header_size)`).
pub const DATA_TABLE: usize = 0x138;
/// `u64` offset of the relocation table (8-aligned, in `[FIXED_SIZE, header_size)`).
pub const RELOCATION_TABLE: usize = 0x140;
/// `u64` offset of the string table (in `[FIXED_SIZE, header_size)`).
pub const STRING_TABLE: usize = 0x148;
/// Size of the fixed part; the tables follow.
pub const FIXED_SIZE: usize = 0x150;

/// One function entry.
pub mod function {
    /// `u8` kind: 1 = replace (has a site), 2 = new (carried, no site).
    pub const KIND: usize = 0;
    /// `[u8; 3]` reserved, zero.
    pub const RESERVED: usize = 1;
    /// `u32` name: offset in the string table.
    pub const NAME_OFFSET: usize = 4;
    /// `u32` name: length in bytes.
    pub const NAME_LEN: usize = 8;
    /// `u32` payload offset of the code (16-aligned, inside the code region).
    pub const CODE_OFFSET: usize = 12;
    /// `u32` code size in bytes (not 0).
    pub const CODE_SIZE: usize = 16;
    /// `u32` replace: size of the old function (≥ 5); new: 0.
    pub const OLD_SIZE: usize = 20;
    /// `u64` replace: the old function's address relative to the load base; new: 0.
    pub const SITE: usize = 24;
    /// `[u8; 16]` replace: the original bytes at the site; new: zero.
    pub const ORIGINAL: usize = 32;
    /// Entry size.
    pub const SIZE: usize = 48;
}

/// One data block entry.
pub mod data {
    /// `u32` payload offset (inside the data region, a multiple of `align`).
    pub const OFFSET: usize = 0;
    /// `u32` size in bytes (not 0).
    pub const SIZE_FIELD: usize = 4;
    /// `u32` alignment: a power of two, at most 4096.
    pub const ALIGN: usize = 8;
    /// `u32` name: offset in the string table.
    pub const NAME_OFFSET: usize = 12;
    /// `u32` name: length in bytes.
    pub const NAME_LEN: usize = 16;
    /// `u32` reserved, zero.
    pub const RESERVED: usize = 20;
    /// Entry size.
    pub const SIZE: usize = 24;
}

/// One relocation entry.
pub mod relocation {
    /// `u32` payload offset of the field to write.
    pub const PLACE: usize = 0;
    /// `u8` type: 1 = PC-relative 32-bit, 2 = absolute 64-bit.
    pub const KIND: usize = 4;
    /// `u8` target kind: 1 = the running image, 2 = this patch's payload.
    pub const TARGET_KIND: usize = 5;
    /// `u16` reserved, zero.
    pub const RESERVED: usize = 6;
    /// `u64` target: image-relative offset, or payload offset.
    pub const TARGET: usize = 8;
    /// `i64` addend.
    pub const ADDEND: usize = 16;
    /// `u32` the target's symbol name (display only): offset in the string table.
    pub const NAME_OFFSET: usize = 24;
    /// `u32` the target's symbol name: length (may be 0).
    pub const NAME_LEN: usize = 28;
    /// Entry size.
    pub const SIZE: usize = 32;
}
