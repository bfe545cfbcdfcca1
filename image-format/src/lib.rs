//! hotkernel's formats: what an image says about itself, the update package that
//! carries a new image to a running kernel, and the mailbox protocol between the host
//! and the guest.
//!
//! Everything here is plain data with explicit little-endian encodings. Bytes enter
//! through a `parse`/`decode` function that checks every field and returns either a
//! typed value or a [`FormatError`] naming the field and the reason; they leave through
//! `to_bytes`/`encode`. Both the kernel (`no_std`, no heap needed except for reports)
//! and the host tool use the same code, so the two sides cannot disagree on a layout.
//!
//! | module | owns |
//! | --- | --- |
//! | [`version`] | [`ImageVersion`], [`VersionRange`], [`SchemaVersion`] |
//! | [`build_id`] | [`BuildId`], the linker's digest of an image file |
//! | [`caps`] | [`Capabilities`], the feature bits an image requires and provides |
//! | [`kinds`] | [`RecordKind`], the stable ids of hand-off record kinds |
//! | [`identity`] | [`EmbeddedIdentity`], the record a kernel embeds in `.hk_identity` |
//! | [`package`] | the update package: layout, [`package::parse`], [`package::parse_header`], and behind `std` the packer and `describe` |
//! | [`mailbox`] | the shared-memory protocol: status, request, response, and (feature `alloc`) reports |
//! | [`error`] | [`FormatError`], the one error type of every parser here |
//!
//! # The update package in brief
//!
//! A package is a header followed, at the next 4 KiB boundary, by a payload. The
//! header holds the magic `HKPKG\0\r\n`, the format version (2), its own size, the
//! total size, two SHA-256 digests (header and payload), the image's build id and
//! embedded identity, the image geometry (link base, span, four entry offsets), a
//! segment table, a table of `R_X86_64_RELATIVE` relocations, and the image's
//! description (its `.hk_schema` bytes: how it lays out what crosses a swap, read by
//! `updater::describe`; this crate checks only where it lies and its magic). The payload holds
//! each segment's file bytes at a 4 KiB aligned offset. `docs/FORMAT.md` has the
//! byte-exact table; [`package::layout`] has the same offsets as constants.
//!
//! # Features
//!
//! - `alloc`: owned report types ([`mailbox::report`]) with `Vec` and `String`.
//! - `std` (implies `alloc`): the packer ([`package::pack`]) that turns a kernel ELF
//!   into a package, and [`package::describe`] for `hotkernel inspect`.
//!
//! Nothing here uses `unsafe`, and no parser panics on any input: lengths and offsets
//! are checked before use and arithmetic on untrusted values is checked.
#![no_std]
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(any(test, feature = "alloc"))]
extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod build_id;
pub mod caps;
pub mod error;
pub mod hotpatch;
pub mod identity;
pub mod kinds;
pub mod mailbox;
pub mod package;
pub mod signature;
pub mod version;
mod wire;

pub use build_id::BuildId;
pub use caps::Capabilities;
pub use error::{FormatError, Result};
pub use identity::{EmbeddedIdentity, ImageSummary, Label, SchemaEntry};
pub use kinds::{kind_name, RecordKind, TaskKind};
pub use version::{ImageVersion, SchemaVersion, VersionRange};

/// Size of a page, the alignment of segments, payload offsets and the payload itself.
pub const PAGE_SIZE: u64 = 4096;
