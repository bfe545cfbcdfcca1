//! The arithmetic the guest does when it installs a parsed patch: relocating a copy of
//! the payload for where it was placed, and encoding the jump written at each site.
//!
//! Deciding *whether* to install (build id, header and text hash, original bytes, no
//! parked CPU inside a site, patch stacking) is the guest's; these functions only
//! compute bytes, and refuse values that do not fit rather than truncating them.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use core::fmt;

use super::format::{RelocKind, RelocTarget, JUMP_LEN};
use super::parse::PatchView;

/// Why a relocation or jump could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApplyError {
    /// `S + A - P` does not fit in a signed 32-bit field: the patch area is too far
    /// from the image (it must be within ±2 GiB).
    OutOfRange {
        /// Payload offset of the field (or the site, for a jump).
        place: u64,
        /// The value that does not fit.
        value: i128,
    },
    /// The payload copy is not the patch's payload size.
    PayloadSize {
        /// Bytes given.
        got: usize,
        /// The payload size.
        expected: usize,
    },
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutOfRange { place, value } => write!(
                f,
                "relocation at {place:#x}: {value:#x} does not fit in 32 bits; patch memory must be within 2 GiB of the image"
            ),
            Self::PayloadSize { got, expected } => write!(
                f,
                "payload copy is {got} bytes, the patch's payload is {expected}"
            ),
        }
    }
}

impl core::error::Error for ApplyError {}

/// Writes every relocation of `view` into `payload`, a copy of `view.payload()` that
/// will run at `patch_base`, for an image loaded at `image_base`.
///
/// Values: `S` is `image_base + target` (image targets) or `patch_base + target`
/// (payload targets); `P` is `patch_base + place`; a pc32 field gets `S + A - P`, an
/// abs64 field `S + A` (wrapping, as the linker computes it).
pub fn relocate(
    view: &PatchView<'_>,
    payload: &mut [u8],
    image_base: u64,
    patch_base: u64,
) -> Result<(), ApplyError> {
    if payload.len() != view.payload().len() {
        return Err(ApplyError::PayloadSize {
            got: payload.len(),
            expected: view.payload().len(),
        });
    }
    for r in view.relocations() {
        let s = match r.target {
            RelocTarget::Image(off) => image_base.wrapping_add(off),
            RelocTarget::Payload(off) => patch_base.wrapping_add(u64::from(off)),
        };
        let sa = s.wrapping_add_signed(r.addend);
        let place = r.place as usize;
        match r.kind {
            RelocKind::Pc32 => {
                let p = patch_base.wrapping_add(u64::from(r.place));
                let value = i128::from(sa as i64).wrapping_sub(i128::from(p as i64));
                let field = i32::try_from(value).map_err(|_| ApplyError::OutOfRange {
                    place: u64::from(r.place),
                    value,
                })?;
                if let Some(dst) = payload.get_mut(place..place.saturating_add(4)) {
                    dst.copy_from_slice(&field.to_le_bytes());
                }
            }
            RelocKind::Abs64 => {
                if let Some(dst) = payload.get_mut(place..place.saturating_add(8)) {
                    dst.copy_from_slice(&sa.to_le_bytes());
                }
            }
        }
    }
    Ok(())
}

/// The 5 bytes written at a site at address `site` to reach `target`: `jmp rel32`.
pub fn jump(site: u64, target: u64) -> Result<[u8; JUMP_LEN], ApplyError> {
    let next = site.wrapping_add(JUMP_LEN as u64);
    let value = i128::from(target as i64).wrapping_sub(i128::from(next as i64));
    let rel = i32::try_from(value).map_err(|_| ApplyError::OutOfRange { place: site, value })?;
    let r = rel.to_le_bytes();
    Ok([0xe9, r[0], r[1], r[2], r[3]])
}
