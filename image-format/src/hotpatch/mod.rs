//! The hotpatch package: replacement functions for one exact running image, as the
//! host's `hotkernel patch make` writes them and the guest installs them.
//!
//! Bytes enter through [`parse`], which returns a validated [`PatchView`] or a
//! [`PatchError`] naming the field; they leave through [`PatchSpec::build`] (feature
//! `alloc`), which the host's generator (the `patchgen` crate) feeds from two kernel
//! builds. [`apply`] has the arithmetic the guest needs to install one.
//!
//! | module | owns |
//! | --- | --- |
//! | [`layout`] | byte offsets of the header and of each table entry |
//! | `format` | the typed values: [`Function`], [`Site`], [`DataBlock`], [`Relocation`], [`TargetImage`], [`PatchId`] |
//! | `parse`, `check`, `view` | [`parse`]; the per-entry rules; [`PatchView`] |
//! | `error` | [`PatchError`] and the per-table problems |
//! | `build` | [`PatchSpec`] → bytes (`alloc`) |
//! | [`apply`] | relocating a payload copy, encoding the site jump |
//!
//! # Layout (patch format version 2)
//!
//! ```text
//! 0x000  fixed header (0x150 bytes, offsets in `layout`)
//!        magic "HKPAT\0\r\n", format version u16 (2), flags u16 (0), header size u32,
//!        total size u64, header digest [32], payload digest [32],
//!        patch id u64, patch version u32, security version u32, label [48],
//!        target: build id (len u8, 7 reserved, [32]), header hash [32], text hash [32],
//!                text offset u64, text size u64,
//!        code size u32, data offset u32, data size u32,
//!        function count u32, data count u32, relocation count u32,
//!        string table size u32, reserved u32,
//!        function table offset u64, data table offset u64,
//!        relocation table offset u64, string table offset u64
//! 0x150  function table: count × 48 bytes
//!          kind u8 (1 replace, 2 new), reserved [3], name offset u32, name len u32,
//!          code offset u32, code size u32, old size u32, site u64, original bytes [16]
//!        data table: count × 24 bytes
//!          offset u32, size u32, align u32, name offset u32, name len u32, reserved u32
//!        relocation table: count × 32 bytes
//!          place u32, type u8 (1 pc32, 2 abs64), target kind u8 (1 image, 2 payload),
//!          reserved u16, target u64, addend i64, symbol offset u32, symbol len u32
//!        string table: UTF-8 names
//!        -- header_size ends here; zero padding to the next 16 bytes --
//! payload_offset = header_size rounded up to 16
//!        payload: code region [0, code size): each function 16-aligned, gaps int3;
//!                 when there is data: zero padding to data offset (code size rounded
//!                 up to 4 KiB), then the data region [data offset, + data size)
//! total_size = payload_offset + payload size
//!        signature trailer (112 bytes, `crate::signature`), not counted in total_size
//! ```
//!
//! The header digest is the SHA-256 of `[0, header_size)` with its own field read as
//! zeros; it covers the payload digest. The payload digest is the SHA-256 of the
//! payload; the patch id is its first 8 bytes, little-endian. `docs/HOTPATCH.md` has
//! every rule the parser enforces and what the guest must check at apply time.
//!
//! # What parsing does not guarantee
//!
//! A valid patch is well formed and arrived intact; it is not authenticated, and it
//! says nothing about whether the running image is its target. The guest compares the
//! target's build id, header hash and text hash with its own, the original bytes at
//! every site with its pristine text, and refuses while a parked CPU stands in a site.

pub mod apply;
mod check;
mod error;
mod format;
pub mod layout;
mod parse;
pub mod set;
mod view;

#[cfg(feature = "alloc")]
mod build;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use error::{DataProblem, FunctionProblem, NameProblem, PatchError, RelocationProblem};
pub use format::{
    DataBlock, Function, FunctionKind, PatchId, RelocKind, RelocTarget, Relocation, Site,
    TargetImage, JUMP_LEN, ORIGINAL_LEN,
};
pub use parse::{parse, PatchView};

#[cfg(feature = "alloc")]
pub use build::{reseal, Anchor, DataSpec, FunctionSpec, PatchSpec, RelocationSpec, SpecTarget};

/// The first eight bytes of every patch. The CR LF catches text-mode mangling.
pub const MAGIC: [u8; 8] = *b"HKPAT\0\r\n";
/// The patch format version this code reads and writes (2: the header carries the
/// security version at 0x064 and the patch is followed by a signature trailer,
/// [`crate::signature`]; version 1 patches are refused as unsupported).
pub const FORMAT_VERSION: u16 = 2;
/// Most functions a patch may carry.
pub const MAX_FUNCTIONS: usize = 1024;
/// Most data blocks a patch may carry.
pub const MAX_DATA_BLOCKS: usize = 4096;
/// Most relocations a patch may have.
pub const MAX_RELOCATIONS: usize = 1 << 16;
/// Largest string table: 1 MiB.
pub const MAX_STRING_TABLE: usize = 1 << 20;
/// Largest header (fixed part and tables): 4 MiB.
pub const MAX_HEADER_SIZE: u32 = 4 << 20;
/// Largest payload: 16 MiB.
pub const MAX_PAYLOAD_SIZE: u64 = 16 << 20;
