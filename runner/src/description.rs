//! Image descriptions on the host: the bytes a kernel embeds in `.hk_schema` and a
//! package carries in its header (format: `docs/FORMAT.md` §4, `updater::describe`),
//! read from a package or a kernel ELF, printed for `hotkernel inspect`, and compared
//! before a push.
//!
//! | module | owns |
//! | --- | --- |
//! | [`render`] | the text `hotkernel inspect` prints: records, converters, regions, and with `--verbose` every field table |
//! | [`check`] | the host's layout guard: two descriptions → the plan of the swap or the refusal the guest would give |
//!
//! Nothing here trusts the bytes: every description goes through
//! [`Description::parse`], and an ELF or a package that does not hold one is an
//! error that says which.

pub mod check;
pub mod render;

use std::path::Path;

use image_format::package::parse_header;
use updater::describe::Description;

use crate::error::{Error, Result};

pub use check::{HostCheck, HostPlan, HostRefusal, RecordOutcome, Resize, Rule};

/// The first bytes of an ELF file.
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

/// What a file given to `hotkernel inspect` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// An update package (`HKPKG…`).
    Package,
    /// A kernel ELF.
    Elf,
}

impl FileKind {
    /// The kind of `bytes` by their magic; `None` for anything else.
    pub fn of(bytes: &[u8]) -> Option<FileKind> {
        if bytes.starts_with(&image_format::package::MAGIC) {
            Some(FileKind::Package)
        } else if bytes.starts_with(ELF_MAGIC) {
            Some(FileKind::Elf)
        } else {
            None
        }
    }
}

/// The image description of the package in `bytes` (its header must parse).
pub fn of_package<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a [u8]> {
    parse_header(bytes)
        .map(|h| h.description())
        .map_err(|e| Error::Package(format!("{}: {e}", path.display())))
}

/// Reads `bytes` (from `path`, for messages) as a description.
pub fn parse<'a>(bytes: &'a [u8], path: &Path) -> Result<Description<'a>> {
    Description::parse(bytes).map_err(|e| Error::Package(format!("{}: {e}", path.display())))
}
