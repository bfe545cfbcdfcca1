//! Records as memory: a record's encoding is its `repr(C)` memory (little-endian, no
//! padding), so a slice of records can cross a swap as one copy of its bytes and be
//! adopted where it stands by the next kernel. This module is the one place in
//! `updater` with `unsafe`: the [`Plain`] contract, which `#[derive(Record)]` upholds
//! with compile-time checks, and the four conversions between records and bytes that
//! rely on it — each checks length, alignment and every entry's values first.
#![allow(
    unsafe_code,
    reason = "the typed views of records as bytes, see the module doc"
)]

use image_format::TaskKind;

use super::{Element, Field};

/// A type whose memory is its encoding: `repr(C)`, no padding, every field `Plain`, on a
/// little-endian machine. `#[derive(Record)]` implements it (and asserts the absence of
/// padding at compile time); it lets a slice of records cross a swap as one copy of bytes
/// ([`bytes_of`]) and be adopted where it stands ([`entries_mut`]).
///
/// # Safety
/// Every byte of every value is initialised (no padding), and the bytes of a value are
/// exactly what [`Field::put`] writes: so a byte slice that [`Field::check`] accepts,
/// entry by entry, holds valid values.
pub unsafe trait Plain: Field {}

/// Why bytes cannot be viewed as records in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainError {
    /// The length is not a multiple of the record size.
    Length { len: usize, size: usize },
    /// The bytes are not aligned for the record type.
    Alignment { align: usize },
    /// Entry `index` holds a value the type cannot have (a `bool` that is not 0 or 1).
    Invalid { index: usize },
}

impl core::fmt::Display for PlainError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PlainError::Length { len, size } => {
                write!(
                    f,
                    "{len} bytes are not a whole number of {size}-byte records"
                )
            }
            PlainError::Alignment { align } => {
                write!(f, "records are not {align}-byte aligned")
            }
            PlainError::Invalid { index } => {
                write!(f, "record {index} holds a value its type cannot have")
            }
        }
    }
}

#[cfg(not(target_endian = "little"))]
compile_error!("records are little-endian in memory: `Plain` needs a little-endian target");

/// The bytes of `records`: their encoding, one after the other.
pub fn bytes_of<T: Plain>(records: &[T]) -> &[u8] {
    // SAFETY: `T: Plain` has no padding, so every byte of the slice is initialised; the
    // length is the slice's size in bytes; `u8` has no alignment or validity needs.
    unsafe { core::slice::from_raw_parts(records.as_ptr().cast(), core::mem::size_of_val(records)) }
}

/// The bytes of `records`, writable: only for types of which every byte pattern is a
/// value ([`AnyBits`], the integers), such as an aligned buffer of `u64`.
pub fn bytes_of_mut<T: Plain + AnyBits>(records: &mut [T]) -> &mut [u8] {
    // SAFETY: as in `bytes_of`; `T: AnyBits` makes every byte pattern written a value.
    unsafe {
        core::slice::from_raw_parts_mut(
            records.as_mut_ptr().cast(),
            core::mem::size_of_val(records),
        )
    }
}

/// A `Plain` type of which every bit pattern is a value (the integers).
///
/// # Safety
/// No byte pattern of `size_of::<Self>()` bytes is invalid.
pub unsafe trait AnyBits: Plain {}

fn check_entries<T: Plain>(bytes: &[u8]) -> Result<usize, PlainError> {
    let size = core::mem::size_of::<T>();
    if size == 0 || !bytes.len().is_multiple_of(size) {
        return Err(PlainError::Length {
            len: bytes.len(),
            size,
        });
    }
    let align = core::mem::align_of::<T>();
    if !(bytes.as_ptr() as usize).is_multiple_of(align) {
        return Err(PlainError::Alignment { align });
    }
    if let Some(index) = bytes.chunks_exact(size).position(|e| !T::check(e)) {
        return Err(PlainError::Invalid { index });
    }
    Ok(bytes.len() / size)
}

/// `bytes` as the records they encode, in place (every entry checked first).
pub fn entries<T: Plain>(bytes: &[u8]) -> Result<&[T], PlainError> {
    let n = check_entries::<T>(bytes)?;
    // SAFETY: aligned for `T`, `n` whole records long, and each record's bytes pass
    // `T::check`, so they are a valid `T` (the `Plain` contract).
    Ok(unsafe { core::slice::from_raw_parts(bytes.as_ptr().cast(), n) })
}

/// `bytes` as the records they encode, in place and writable (every entry checked).
pub fn entries_mut<T: Plain>(bytes: &mut [u8]) -> Result<&mut [T], PlainError> {
    let n = check_entries::<T>(bytes)?;
    // SAFETY: as in `entries`; the exclusive borrow of the bytes becomes the exclusive
    // borrow of the records, and any value written through it is bytes `check` accepts.
    Ok(unsafe { core::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast(), n) })
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        // SAFETY: an integer has no padding and every bit pattern is a value; its
        // memory on a little-endian machine is `to_le_bytes`.
        unsafe impl Plain for $t {}
        // SAFETY: every bit pattern of an integer is a value.
        unsafe impl AnyBits for $t {}
    )*};
}

integers!(u8, u16, u32, u64, i8, i16, i32, i64);

// SAFETY: one byte, and `check` accepts only 0 and 1, the two values of a `bool`.
unsafe impl Plain for bool {}

// SAFETY: `TaskKind` is `repr(transparent)` over a `u16`, and any value is a kind
// (unknown kinds are reported, not rejected).
unsafe impl Plain for TaskKind {}

// SAFETY: bytes have no padding, any value, alignment 1.
unsafe impl<const N: usize> Plain for [u8; N] {}

// SAFETY: an array has no padding between elements of a `Plain` type (whose size is a
// multiple of its alignment), and is valid when every element is (`check` above).
unsafe impl<T: Element + Plain, const N: usize> Plain for [T; N] {}
