//! The typed values of a patch: what a [`super::PatchView`] hands out and what
//! [`super::PatchSpec`] takes in. No byte offsets here (those are in
//! [`super::layout`]) and no checks (those are in the parser).

use core::fmt;

use crate::build_id::BuildId;
use crate::error::Digest;

/// Length of the jump the guest writes at a site: `jmp rel32` (`e9` + 4 bytes).
pub const JUMP_LEN: usize = 5;
/// How many original bytes a patch records per site (the guest compares all of them).
pub const ORIGINAL_LEN: usize = 16;

/// A patch's id: the first 8 bytes of its payload digest, little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PatchId(pub u64);

impl PatchId {
    /// The id of a payload with digest `digest`.
    pub fn from_payload_digest(digest: &Digest) -> Self {
        let mut b = [0u8; 8];
        for (dst, src) in b.iter_mut().zip(digest.iter()) {
            *dst = *src;
        }
        Self(u64::from_le_bytes(b))
    }
}

impl fmt::Display for PatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The image a patch applies to, and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetImage {
    /// The GNU build id of the image file.
    pub build_id: BuildId,
    /// SHA-256 of the ELF header (`e_ehsize` bytes at 0) followed by the program
    /// header table (`e_phnum * e_phentsize` bytes at `e_phoff`).
    pub header_hash: Digest,
    /// SHA-256 of the file bytes of the executable `PT_LOAD` segment: the pristine
    /// text, before any patch wrote a jump into it.
    pub text_hash: Digest,
    /// The executable segment's address relative to the image's load base.
    pub text_offset: u64,
    /// The executable segment's file size.
    pub text_size: u64,
}

/// Whether a function replaces one in the image or is carried for others to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FunctionKind {
    /// Replaces the function at a site: the guest writes a jump there.
    Replace,
    /// A function the image does not have, which patched code calls.
    New,
}

impl FunctionKind {
    /// The encoded value.
    pub const fn code(self) -> u8 {
        match self {
            Self::Replace => 1,
            Self::New => 2,
        }
    }

    /// From the encoded value.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Replace),
            2 => Some(Self::New),
            _ => None,
        }
    }
}

impl fmt::Display for FunctionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Replace => "replace",
            Self::New => "new",
        })
    }
}

/// Where a replaced function lives in the running image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Site {
    /// The old function's address relative to the load base.
    pub offset: u64,
    /// The old function's size: the guest refuses the patch while a parked CPU's
    /// return address lies in `[offset, offset + old_size)`.
    pub old_size: u32,
    /// The exact bytes at `offset` in the pristine image.
    pub original: [u8; ORIGINAL_LEN],
}

/// A function entry of a parsed patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function<'a> {
    /// Replace or new.
    pub kind: FunctionKind,
    /// Demangled name without hash.
    pub name: &'a str,
    /// Payload offset of the code.
    pub code_offset: u32,
    /// Code size.
    pub code_size: u32,
    /// For [`FunctionKind::Replace`], the site; `None` for new functions.
    pub site: Option<Site>,
}

/// A block of read-only data that patch code refers to, carried in the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataBlock<'a> {
    /// What it is (a symbol name, `anon …`, `got`); display only.
    pub name: &'a str,
    /// Payload offset.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
    /// Alignment (a power of two, at most 4096).
    pub align: u32,
}

/// How a relocation computes the value it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RelocKind {
    /// `S + A - P` as a signed 32-bit value (`R_X86_64_PC32`, `PLT32`, and the
    /// generator's rewrite of `GOTPCREL` against a slot in the payload).
    Pc32,
    /// `S + A` as a 64-bit value (`R_X86_64_64`, in data blocks and GOT slots).
    Abs64,
}

impl RelocKind {
    /// The encoded value.
    pub const fn code(self) -> u8 {
        match self {
            Self::Pc32 => 1,
            Self::Abs64 => 2,
        }
    }

    /// From the encoded value.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Pc32),
            2 => Some(Self::Abs64),
            _ => None,
        }
    }

    /// Bytes the field occupies.
    pub const fn width(self) -> u32 {
        match self {
            Self::Pc32 => 4,
            Self::Abs64 => 8,
        }
    }
}

impl fmt::Display for RelocKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pc32 => "pc32",
            Self::Abs64 => "abs64",
        })
    }
}

/// What a relocation's `S` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RelocTarget {
    /// An offset from the running image's load base (a symbol's link-time address
    /// minus the link base: the patch is bound to that exact image).
    Image(u64),
    /// An offset into this patch's payload (a carried function or data block).
    Payload(u32),
}

impl RelocTarget {
    /// The encoded target kind.
    pub const fn kind_code(self) -> u8 {
        match self {
            Self::Image(_) => 1,
            Self::Payload(_) => 2,
        }
    }

    /// The encoded target value.
    pub const fn value(self) -> u64 {
        match self {
            Self::Image(v) => v,
            Self::Payload(v) => v as u64,
        }
    }
}

impl fmt::Display for RelocTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Image(v) => write!(f, "image+{v:#x}"),
            Self::Payload(v) => write!(f, "patch+{v:#x}"),
        }
    }
}

/// A relocation entry of a parsed patch: write `kind`'s value for `target + addend`
/// at payload offset `place`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relocation<'a> {
    /// Payload offset of the field.
    pub place: u32,
    /// How the value is computed and how wide the field is.
    pub kind: RelocKind,
    /// `S`.
    pub target: RelocTarget,
    /// `A`.
    pub addend: i64,
    /// The target symbol's name and offset, for display (may be empty).
    pub symbol: &'a str,
}
