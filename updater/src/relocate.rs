//! Relocation of a laid-out static-PIE image for the base it will run at.
//!
//! Our kernels have only `R_X86_64_RELATIVE` relocations: each names an 8-byte slot
//! (by its link-time address) and an addend; running at `base`, the slot holds
//! `base + addend`. The image is given as the bytes from its link base, so the slot for
//! link address `a` is at `image[a - link_base]`.

/// Why an image could not be relocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelocError {
    /// A slot lies outside the image.
    OutOfImage { offset: u64, image_len: usize },
}

impl core::fmt::Display for RelocError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RelocError::OutOfImage { offset, image_len } => {
                write!(
                    f,
                    "relocation slot at {offset:#x} is outside the {image_len}-byte image"
                )
            }
        }
    }
}

/// Writes `base + addend` into every slot of `relocations` (`(link address, addend)`).
pub fn relocate(
    image: &mut [u8],
    link_base: u64,
    base: u64,
    relocations: impl Iterator<Item = (u64, i64)>,
) -> Result<usize, RelocError> {
    let mut n = 0;
    for (address, addend) in relocations {
        let at = address
            .checked_sub(link_base)
            .filter(|&o| {
                o.checked_add(8)
                    .is_some_and(|end| end <= image.len() as u64)
            })
            .ok_or(RelocError::OutOfImage {
                offset: address,
                image_len: image.len(),
            })? as usize;
        let value = base.wrapping_add(addend as u64);
        image[at..at + 8].copy_from_slice(&value.to_le_bytes());
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_get_base_plus_addend_and_bounds_are_checked() {
        let mut image = [0u8; 32];
        let n = relocate(
            &mut image,
            0,
            0xffff_ffff_8000_0000,
            [(8u64, 0x1234i64), (16, 0)].into_iter(),
        )
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            u64::from_le_bytes(image[8..16].try_into().unwrap()),
            0xffff_ffff_8000_1234
        );
        assert_eq!(
            u64::from_le_bytes(image[16..24].try_into().unwrap()),
            0xffff_ffff_8000_0000
        );
        assert_eq!(
            relocate(&mut image, 0, 0, [(28u64, 0i64)].into_iter()),
            Err(RelocError::OutOfImage {
                offset: 28,
                image_len: 32
            })
        );
        assert!(relocate(&mut image, 0, 0, [(u64::MAX, 0i64)].into_iter()).is_err());
    }
}
