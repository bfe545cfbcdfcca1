//! A pool: the records of one type a run queue holds, one after the other, the way a
//! record set holds them — so that a swap exports a pool with one copy and the next
//! kernel runs on the exported (or converted) entries where they stand.
//!
//! A pool is owned (a `Vec`) or adopted (a slice of the hand-off region's record half
//! that the swap into this kernel left, valid for the kernel's life: this kernel exports
//! into the other half). An adopted pool is read, never written: the first write —
//! a step's result, a new task — moves it to the heap (one copy of the pool, after the
//! swap's stopped section, by the CPU that steps it). So the exported records stay as
//! they were at the swap, which is what a revert resumes the old kernel from.
#![deny(unsafe_code)]

use alloc::vec::Vec;

use updater::record::{bytes_of, Plain};

/// Records of type `T`, owned or adopted in place.
pub enum Pool<T: 'static> {
    Owned(Vec<T>),
    /// Read only (see the module doc).
    Adopted(&'static [T]),
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

    /// The records, writable (an adopted pool moves to the heap first).
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        self.owned()
    }

    /// The records as a `Vec`, copying an adopted pool to the heap.
    fn owned(&mut self) -> &mut alloc::vec::Vec<T> {
        if let Pool::Adopted(s) = self {
            *self = Pool::Owned(s.to_vec());
        }
        match self {
            Pool::Owned(v) => v,
            Pool::Adopted(_) => unreachable!("moved to the heap above"),
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
        let v = self.owned();
        v.push(value);
        v.len() - 1
    }

    /// Whether the records are where the swap into this kernel left them.
    pub fn is_adopted(&self) -> bool {
        matches!(self, Pool::Adopted(_))
    }
}
