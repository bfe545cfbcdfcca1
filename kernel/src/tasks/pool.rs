//! A pool: the records of one type a run queue holds, one after the other, the way a
//! record set holds them — so that a swap exports a pool with one copy and the next
//! kernel runs on the exported (or converted) entries where they stand.
//!
//! A pool is owned (a `Vec`, at first boot and whenever it grows) or adopted (a slice of
//! the hand-off region's record half that the swap into this kernel left, valid for the
//! kernel's life: this kernel exports into the other half). Adding a record to an
//! adopted pool moves it to the heap first.
#![deny(unsafe_code)]

use alloc::vec::Vec;

use updater::record::{bytes_of, Plain};

/// Records of type `T`, owned or adopted in place.
pub enum Pool<T: 'static> {
    Owned(Vec<T>),
    Adopted(&'static mut [T]),
}

impl<T: Plain + Clone> Pool<T> {
    /// An empty pool.
    pub const fn new() -> Self {
        Pool::Owned(Vec::new())
    }

    /// The records, in order.
    pub fn as_slice(&self) -> &[T] {
        match self {
            Pool::Owned(v) => v,
            Pool::Adopted(s) => s,
        }
    }

    /// The records, writable.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        match self {
            Pool::Owned(v) => v,
            Pool::Adopted(s) => s,
        }
    }

    /// The records' bytes: their encoding (what a record set holds).
    pub fn bytes(&self) -> &[u8] {
        bytes_of(self.as_slice())
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Appends `value`; returns its index. An adopted pool moves to the heap first.
    pub fn push(&mut self, value: T) -> usize {
        if let Pool::Adopted(s) = self {
            *self = Pool::Owned(s.to_vec());
        }
        match self {
            Pool::Owned(v) => {
                v.push(value);
                v.len() - 1
            }
            Pool::Adopted(_) => unreachable!("moved to the heap above"),
        }
    }

    /// Whether the records are where the swap into this kernel left them.
    pub fn is_adopted(&self) -> bool {
        matches!(self, Pool::Adopted(_))
    }
}
