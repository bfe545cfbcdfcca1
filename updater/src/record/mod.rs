//! Records that describe themselves: the encoding of a hand-off record and its field
//! table, both generated from the record's definition by `#[derive(Record)]`
//! (crate `record-derive`).
//!
//! A record is a `#[repr(C)]` struct. Its encoding is its C layout, little-endian,
//! padding zero: field `f` lives at `offset_of!(T, f)` and takes `size_of` of its type.
//! Its field table ([`Layout`]) lists each field's name, offset, size, [`FieldType`],
//! declared default (for records written by an older image that lacked the field) and
//! alias (the name it had before a rename). Bytes enter through [`Field::get`] (bounds
//! and values checked, never a transmute) and leave through [`Field::put`].
//!
//! ```
//! use updater::record::{Field, FieldType, Record};
//!
//! #[derive(Debug, Clone, PartialEq, updater::Record)]
//! #[record(kind = updater::records::RecordKind::new(0x4d), version = 2)]
//! #[repr(C)]
//! struct Counter {
//!     #[record(default = 1)]
//!     stride: u32,
//!     last_cpu: u32,
//!     count: u64,
//! }
//!
//! let layout = Counter::LAYOUT;
//! assert_eq!(layout.size, 16);
//! assert_eq!(layout.fields[2].name, "count");
//! assert_eq!(layout.fields[2].offset, 8);
//! assert!(matches!(layout.fields[2].ty, FieldType::Unsigned(8)));
//! let mut bytes = [0u8; 16];
//! Counter { stride: 3, last_cpu: 1, count: 7 }.encode(&mut bytes);
//! assert_eq!(Counter::decode(&bytes).unwrap().count, 7);
//! ```

pub use image_format::{RecordKind, SchemaVersion, TaskKind};

pub use crate::wire::WireError;

mod plain;
pub use plain::{bytes_of, bytes_of_mut, entries, entries_mut, AnyBits, Plain, PlainError};

/// The type of one field, as the field table names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// An unsigned integer of this many bytes (1, 2, 4, 8).
    Unsigned(u8),
    /// A two's-complement integer of this many bytes.
    Signed(u8),
    /// One byte, 0 or 1.
    Bool,
    /// A byte array (`[u8; N]`) of this length.
    Bytes(u32),
    /// A nested record.
    Record(&'static Layout),
    /// A fixed array of this many elements.
    Array(&'static FieldType, u32),
}

/// One field of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldDesc {
    pub name: &'static str,
    /// Byte offset in the record's encoding.
    pub offset: u32,
    /// Bytes the field takes.
    pub size: u32,
    pub ty: FieldType,
    /// Value for records written before this field existed (integers and `bool`; other
    /// types are zero-filled). Signed values are sign-extended to 64 bits.
    pub default: u64,
    /// The name the field had before it was renamed, if it was.
    pub alias: Option<&'static str>,
}

/// The field table of a record (or of a nested record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The Rust type's name.
    pub name: &'static str,
    /// Bytes in the encoding.
    pub size: u32,
    pub fields: &'static [FieldDesc],
}

impl Layout {
    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<&FieldDesc> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// The layout of a [`FieldType::Record`] (for derived code, in const context).
///
/// # Panics
/// If `ty` is not a record (at compile time in a constant).
pub const fn layout_of(ty: &FieldType) -> &'static Layout {
    match *ty {
        FieldType::Record(layout) => layout,
        _ => panic!("not a record type"),
    }
}

/// A type that can be a record field: a fixed-size little-endian encoding.
pub trait Field: Sized {
    /// What the field table says about the type.
    const TYPE: FieldType;
    /// Bytes in the encoding (the type's `size_of` for every implementation here).
    const SIZE: usize;
    /// Writes exactly [`SIZE`](Self::SIZE) bytes at the start of `out`.
    ///
    /// # Panics
    /// If `out` is shorter than `SIZE` (a caller's slicing bug, never input).
    fn put(&self, out: &mut [u8]);
    /// Reads the encoding at the start of `bytes`.
    fn get(bytes: &[u8]) -> Result<Self, WireError>;
    /// Whether [`get`](Self::get) would accept `bytes`, without building the value (the
    /// check behind adopting records in place: for integers, only the length).
    fn check(bytes: &[u8]) -> bool {
        Self::get(bytes).is_ok()
    }
}

/// A hand-off record kind in one schema version.
pub trait Record: Field + Clone + PartialEq + core::fmt::Debug {
    /// Which record kind this is an entry of.
    const KIND: RecordKind;
    /// Which schema version of the kind this type is.
    const SCHEMA: SchemaVersion;
    /// The field table.
    const LAYOUT: &'static Layout;

    /// Writes the record's `SIZE` bytes at the start of `out`.
    fn encode(&self, out: &mut [u8]) {
        self.put(out)
    }

    /// Reads a record from the start of `bytes`.
    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        Self::get(bytes)
    }
}

fn short(needed: usize, available: usize) -> WireError {
    WireError::Short { needed, available }
}

macro_rules! integer {
    ($($t:ty => $variant:ident),*) => {$(
        impl Field for $t {
            const TYPE: FieldType = FieldType::$variant(core::mem::size_of::<$t>() as u8);
            const SIZE: usize = core::mem::size_of::<$t>();
            fn put(&self, out: &mut [u8]) {
                out[..Self::SIZE].copy_from_slice(&self.to_le_bytes());
            }
            fn get(bytes: &[u8]) -> Result<Self, WireError> {
                match bytes.get(..Self::SIZE) {
                    Some(b) => {
                        let mut a = [0u8; core::mem::size_of::<$t>()];
                        a.copy_from_slice(b);
                        Ok(<$t>::from_le_bytes(a))
                    }
                    None => Err(short(Self::SIZE, bytes.len())),
                }
            }
            fn check(bytes: &[u8]) -> bool {
                bytes.len() >= Self::SIZE
            }
        }
    )*};
}

integer!(u8 => Unsigned, u16 => Unsigned, u32 => Unsigned, u64 => Unsigned,
         i8 => Signed, i16 => Signed, i32 => Signed, i64 => Signed);

impl Field for bool {
    const TYPE: FieldType = FieldType::Bool;
    const SIZE: usize = 1;
    fn put(&self, out: &mut [u8]) {
        out[0] = u8::from(*self);
    }
    fn get(bytes: &[u8]) -> Result<Self, WireError> {
        match bytes.first() {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            Some(&value) => Err(WireError::Invalid {
                what: "bool",
                value: u64::from(value),
            }),
            None => Err(short(1, 0)),
        }
    }
    fn check(bytes: &[u8]) -> bool {
        matches!(bytes.first(), Some(0 | 1))
    }
}

impl Field for TaskKind {
    const TYPE: FieldType = FieldType::Unsigned(2);
    const SIZE: usize = 2;
    fn put(&self, out: &mut [u8]) {
        self.raw().put(out)
    }
    fn get(bytes: &[u8]) -> Result<Self, WireError> {
        u16::get(bytes).map(TaskKind::from_raw)
    }
    fn check(bytes: &[u8]) -> bool {
        bytes.len() >= 2
    }
}

macro_rules! atomic {
    ($($t:ty => $int:ty),*) => {$(
        /// An atomic field (the hand-off descriptor's) has its integer's encoding; `put`
        /// writes the value it holds now.
        impl Field for $t {
            const TYPE: FieldType = <$int as Field>::TYPE;
            const SIZE: usize = <$int as Field>::SIZE;
            fn put(&self, out: &mut [u8]) {
                self.load(core::sync::atomic::Ordering::Relaxed).put(out)
            }
            fn get(bytes: &[u8]) -> Result<Self, WireError> {
                <$int>::get(bytes).map(<$t>::new)
            }
        }
    )*};
}

atomic!(core::sync::atomic::AtomicU32 => u32, core::sync::atomic::AtomicU64 => u64);

impl Element for core::sync::atomic::AtomicU32 {}
impl Element for core::sync::atomic::AtomicU64 {}

/// Byte arrays are their own field type ([`FieldType::Bytes`]).
impl<const N: usize> Field for [u8; N] {
    const TYPE: FieldType = FieldType::Bytes(N as u32);
    const SIZE: usize = N;
    fn put(&self, out: &mut [u8]) {
        out[..N].copy_from_slice(self);
    }
    fn get(bytes: &[u8]) -> Result<Self, WireError> {
        let b = bytes.get(..N).ok_or(short(N, bytes.len()))?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }
    fn check(bytes: &[u8]) -> bool {
        bytes.len() >= N
    }
}

/// Marks the element types of [`FieldType::Array`] (every field type but `u8`, whose
/// arrays are [`FieldType::Bytes`]; `#[derive(Record)]` marks derived structs).
pub trait Element: Field {}

impl Element for u16 {}
impl Element for u32 {}
impl Element for u64 {}
impl Element for i8 {}
impl Element for i16 {}
impl Element for i32 {}
impl Element for i64 {}
impl Element for bool {}
impl<const N: usize> Element for [u8; N] {}

/// A fixed array of elements, laid out one after the other: `[u64; 64]` is
/// `Array(Unsigned(8), 64)` in the table.
impl<T: Element, const N: usize> Field for [T; N] {
    const TYPE: FieldType = FieldType::Array(&T::TYPE, N as u32);
    const SIZE: usize = T::SIZE * N;
    fn put(&self, out: &mut [u8]) {
        for (i, v) in self.iter().enumerate() {
            v.put(&mut out[i * T::SIZE..(i + 1) * T::SIZE]);
        }
    }
    fn check(bytes: &[u8]) -> bool {
        bytes.len() >= Self::SIZE && (0..N).all(|i| T::check(&bytes[i * T::SIZE..]))
    }
    fn get(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() < Self::SIZE {
            return Err(short(Self::SIZE, bytes.len()));
        }
        // Every element is checked first, so the array below is built from values that
        // decode.
        for i in 0..N {
            T::get(&bytes[i * T::SIZE..])?;
        }
        Ok(core::array::from_fn(|i| {
            match T::get(&bytes[i * T::SIZE..]) {
                Ok(v) => v,
                Err(_) => unreachable!("element {i} decoded a moment ago"),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::kinds;

    #[derive(Debug, Clone, Copy, PartialEq, Default, crate::Record)]
    #[record(padded)]
    #[repr(C)]
    struct Inner {
        a: u16,
        b: bool,
    }

    #[derive(Debug, Clone, PartialEq, crate::Record)]
    #[record(kind = kinds::HISTORY, version = 3)]
    #[record(padded)]
    #[repr(C)]
    struct Outer {
        small: u8,
        #[record(default = -5i32)]
        signed: i32,
        #[record(alias = "old")]
        big: u64,
        label: [u8; 5],
        inner: Inner,
        list: [u32; 3],
        nested: [Inner; 2],
        kind: TaskKind,
    }

    fn sample() -> Outer {
        Outer {
            small: 7,
            signed: -3,
            big: 0x1122_3344_5566_7788,
            label: *b"hello",
            inner: Inner { a: 9, b: true },
            list: [1, 2, 3],
            nested: [Inner { a: 1, b: false }, Inner { a: 2, b: true }],
            kind: TaskKind::COUNTER,
        }
    }

    #[test]
    fn the_table_is_the_c_layout() {
        let l = Outer::LAYOUT;
        assert_eq!(l.size as usize, core::mem::size_of::<Outer>());
        let names: std::vec::Vec<_> = l.fields.iter().map(|f| f.name).collect();
        assert_eq!(
            names,
            ["small", "signed", "big", "label", "inner", "list", "nested", "kind"]
        );
        assert_eq!(
            l.field("signed").unwrap().offset as usize,
            core::mem::offset_of!(Outer, signed)
        );
        assert_eq!(l.field("signed").unwrap().default as i64, -5);
        assert_eq!(l.field("big").unwrap().alias, Some("old"));
        assert_eq!(l.field("label").unwrap().ty, FieldType::Bytes(5));
        assert_eq!(
            l.field("list").unwrap().ty,
            FieldType::Array(&FieldType::Unsigned(4), 3)
        );
        let FieldType::Record(inner) = l.field("inner").unwrap().ty else {
            panic!("inner is a record");
        };
        assert_eq!(inner.fields.len(), 2);
        assert_eq!(Outer::KIND, kinds::HISTORY);
        assert_eq!(Outer::SCHEMA.get(), 3);
    }

    #[test]
    fn encoding_round_trips_and_zeroes_padding() {
        let mut bytes = [0xaau8; 128];
        sample().encode(&mut bytes);
        assert_eq!(Outer::decode(&bytes).unwrap(), sample());
        // Padding after `small` is zero.
        assert_eq!(bytes[1..4], [0, 0, 0]);
        // Bytes past the record are untouched.
        assert_eq!(bytes[Outer::SIZE], 0xaa);
        assert!(matches!(
            Outer::decode(&bytes[..Outer::SIZE - 1]),
            Err(WireError::Short { .. })
        ));
        // A bool that is neither 0 nor 1 is refused, not reinterpreted.
        let at = Outer::LAYOUT.field("inner").unwrap().offset as usize + 2;
        bytes[at] = 2;
        assert!(matches!(
            Outer::decode(&bytes),
            Err(WireError::Invalid { what: "bool", .. })
        ));
    }
}
