//! Field tables as bytes: the canonical encoding of a [`Layout`] that an image embeds
//! (in its description, `crate::describe`) and a record set carries beside each record,
//! so that a kernel can read a record another image wrote — field by field, by name —
//! without that image's types. [`TableView`] reads the encoding without allocating
//! (the bootstrap has no heap); [`fingerprint`] digests a table's shape.
//!
//! | bytes | field |
//! | --- | --- |
//! | 4 | record size |
//! | 2 | field count |
//! | … | each field: name length `u8`, name (UTF-8), offset `u32`, size `u32`, default `u64`, alias length `u8`, alias, type |
//!
//! A type is a tag byte and its parameters: 1 unsigned (width `u8`), 2 signed (width
//! `u8`), 3 bool, 4 bytes (length `u32`), 5 record (a nested table), 6 array (length
//! `u32`, then the element's type).
//!
//! The **fingerprint** is FNV-1a (64 bits) over the table's shape: sizes, names,
//! offsets and types, nested tables included, but not defaults or aliases (they say how
//! to convert *into* this layout, not what it is). Two layouts with one fingerprint are
//! the same bytes meaning the same fields; a table that changed has another.

use crate::record::{FieldDesc, FieldType, Layout};
use crate::wire::WireError;

const TAG_UNSIGNED: u8 = 1;
const TAG_SIGNED: u8 = 2;
const TAG_BOOL: u8 = 3;
const TAG_BYTES: u8 = 4;
const TAG_RECORD: u8 = 5;
const TAG_ARRAY: u8 = 6;

/// Most fields a table (or a nested table) may have.
pub const MAX_FIELDS: usize = 256;
/// Most nesting of records and arrays.
pub const MAX_DEPTH: usize = 8;

// ---- encoding (const, for images to embed) --------------------------------------

/// Bytes of `layout`'s canonical encoding.
pub const fn encoded_len(layout: &Layout) -> usize {
    let mut n = 4 + 2;
    let mut i = 0;
    while i < layout.fields.len() {
        let f = &layout.fields[i];
        n += 1 + f.name.len() + 4 + 4 + 8 + 1 + alias_len(f) + type_len(&f.ty);
        i += 1;
    }
    n
}

const fn alias_len(f: &FieldDesc) -> usize {
    match f.alias {
        Some(a) => a.len(),
        None => 0,
    }
}

const fn type_len(ty: &FieldType) -> usize {
    match *ty {
        FieldType::Unsigned(_) | FieldType::Signed(_) => 2,
        FieldType::Bool => 1,
        FieldType::Bytes(_) => 5,
        FieldType::Record(l) => 1 + encoded_len(l),
        FieldType::Array(elem, _) => 5 + type_len(elem),
    }
}

const fn put(out: &mut [u8], at: usize, bytes: &[u8]) -> usize {
    let mut i = 0;
    while i < bytes.len() {
        out[at + i] = bytes[i];
        i += 1;
    }
    at + bytes.len()
}

/// Writes `layout`'s canonical encoding at `out[at..]`; returns the end.
///
/// # Panics
/// If `out` is too short (at compile time, in a constant).
pub const fn encode(layout: &Layout, out: &mut [u8], at: usize) -> usize {
    let mut at = put(out, at, &layout.size.to_le_bytes());
    at = put(out, at, &(layout.fields.len() as u16).to_le_bytes());
    let mut i = 0;
    while i < layout.fields.len() {
        let f = &layout.fields[i];
        assert!(f.name.len() <= 255, "a field name is at most 255 bytes");
        at = put(out, at, &[f.name.len() as u8]);
        at = put(out, at, f.name.as_bytes());
        at = put(out, at, &f.offset.to_le_bytes());
        at = put(out, at, &f.size.to_le_bytes());
        at = put(out, at, &f.default.to_le_bytes());
        match f.alias {
            Some(a) => {
                assert!(a.len() <= 255, "an alias is at most 255 bytes");
                at = put(out, at, &[a.len() as u8]);
                at = put(out, at, a.as_bytes());
            }
            None => at = put(out, at, &[0]),
        }
        at = encode_type(&f.ty, out, at);
        i += 1;
    }
    at
}

const fn encode_type(ty: &FieldType, out: &mut [u8], at: usize) -> usize {
    match *ty {
        FieldType::Unsigned(w) => put(out, at, &[TAG_UNSIGNED, w]),
        FieldType::Signed(w) => put(out, at, &[TAG_SIGNED, w]),
        FieldType::Bool => put(out, at, &[TAG_BOOL]),
        FieldType::Bytes(n) => {
            let at = put(out, at, &[TAG_BYTES]);
            put(out, at, &n.to_le_bytes())
        }
        FieldType::Record(l) => {
            let at = put(out, at, &[TAG_RECORD]);
            encode(l, out, at)
        }
        FieldType::Array(elem, n) => {
            let at = put(out, at, &[TAG_ARRAY]);
            let at = put(out, at, &n.to_le_bytes());
            encode_type(elem, out, at)
        }
    }
}

/// `layout`'s canonical encoding as an array (for a `const`).
pub const fn encoded<const N: usize>(layout: &Layout) -> [u8; N] {
    let mut out = [0u8; N];
    let end = encode(layout, &mut out, 0);
    assert!(end == N, "encoded<N>: N is not the table's length");
    out
}

// ---- fingerprint ------------------------------------------------------------------

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

const fn mix(mut h: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(FNV_PRIME);
        i += 1;
    }
    h
}

/// The fingerprint of `layout` (see the module doc).
pub const fn fingerprint(layout: &Layout) -> u64 {
    shape(FNV_OFFSET, layout)
}

const fn shape(mut h: u64, layout: &Layout) -> u64 {
    h = mix(h, &layout.size.to_le_bytes());
    h = mix(h, &(layout.fields.len() as u16).to_le_bytes());
    let mut i = 0;
    while i < layout.fields.len() {
        let f = &layout.fields[i];
        h = mix(h, &[f.name.len() as u8]);
        h = mix(h, f.name.as_bytes());
        h = mix(h, &f.offset.to_le_bytes());
        h = mix(h, &f.size.to_le_bytes());
        h = shape_type(h, &f.ty);
        i += 1;
    }
    h
}

const fn shape_type(h: u64, ty: &FieldType) -> u64 {
    match *ty {
        FieldType::Unsigned(w) => mix(h, &[TAG_UNSIGNED, w]),
        FieldType::Signed(w) => mix(h, &[TAG_SIGNED, w]),
        FieldType::Bool => mix(h, &[TAG_BOOL]),
        FieldType::Bytes(n) => mix(mix(h, &[TAG_BYTES]), &n.to_le_bytes()),
        FieldType::Record(l) => shape(mix(h, &[TAG_RECORD]), l),
        FieldType::Array(elem, n) => shape_type(mix(mix(h, &[TAG_ARRAY]), &n.to_le_bytes()), elem),
    }
}

// ---- reading ----------------------------------------------------------------------

/// Why table bytes are not a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// The bytes end inside the table.
    Short(WireError),
    /// A field name or alias is not UTF-8.
    Name,
    /// An unknown type tag, or an integer of a width that is not 1, 2, 4 or 8.
    Type(u8),
    /// More fields than [`MAX_FIELDS`], or nesting deeper than [`MAX_DEPTH`].
    TooLarge,
    /// A field that does not lie inside the record, or whose size is not its type's.
    Geometry,
}

impl core::fmt::Display for TableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TableError::Short(e) => write!(f, "field table ends early: {e}"),
            TableError::Name => write!(f, "a field name in the table is not UTF-8"),
            TableError::Type(t) => write!(f, "field table has an unknown type (tag {t})"),
            TableError::TooLarge => write!(
                f,
                "field table has more than {MAX_FIELDS} fields or nests deeper than {MAX_DEPTH}"
            ),
            TableError::Geometry => {
                write!(
                    f,
                    "field table has a field outside its record or of a wrong size"
                )
            }
        }
    }
}

impl From<WireError> for TableError {
    fn from(e: WireError) -> Self {
        TableError::Short(e)
    }
}

/// A cursor over table bytes.
#[derive(Clone, Copy)]
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TableError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(TableError::Short(WireError::Short {
                needed: n,
                available: self.bytes.len().saturating_sub(self.at),
            }))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, TableError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, TableError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, TableError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, TableError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn text(&mut self) -> Result<&'a str, TableError> {
        let n = self.u8()? as usize;
        core::str::from_utf8(self.take(n)?).map_err(|_| TableError::Name)
    }
}

/// A validated table, read in place.
#[derive(Debug, Clone, Copy)]
pub struct TableView<'a> {
    /// Exactly the table's bytes.
    bytes: &'a [u8],
    /// Its fingerprint, once known (0: computed when asked).
    shape: u64,
}

impl PartialEq for TableView<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for TableView<'_> {}

/// A field of a [`TableView`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldView<'a> {
    pub name: &'a str,
    pub offset: u32,
    pub size: u32,
    pub default: u64,
    pub alias: Option<&'a str>,
    pub ty: TypeView<'a>,
}

/// A field's type, read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeView<'a> {
    Unsigned(u8),
    Signed(u8),
    Bool,
    Bytes(u32),
    Record(TableView<'a>),
    /// Length and the element's type bytes (read with [`TypeView::element`]).
    Array(u32, ElementBytes<'a>),
}

/// The encoded type of an array's elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElementBytes<'a>(&'a [u8]);

impl<'a> TypeView<'a> {
    /// The element type of an array (validated with the table).
    pub fn element(elem: ElementBytes<'a>) -> TypeView<'a> {
        let mut c = Cursor {
            bytes: elem.0,
            at: 0,
        };
        // Validated when the table was parsed.
        read_type(&mut c, 0).unwrap_or(TypeView::Bool)
    }

    /// Bytes a value of this type takes.
    pub fn size(&self) -> u64 {
        match *self {
            TypeView::Unsigned(w) | TypeView::Signed(w) => u64::from(w),
            TypeView::Bool => 1,
            TypeView::Bytes(n) => u64::from(n),
            TypeView::Record(t) => u64::from(t.size()),
            TypeView::Array(n, e) => u64::from(n) * TypeView::element(e).size(),
        }
    }

    /// Short name for messages: `u32`, `i16`, `bool`, `[u8; 32]`, `record`, `[u64; 64]`.
    pub fn describe(&self) -> TypeName<'a> {
        TypeName(*self)
    }
}

/// A type's name in messages.
#[derive(Debug, Clone, Copy)]
pub struct TypeName<'a>(TypeView<'a>);

impl core::fmt::Display for TypeName<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            TypeView::Unsigned(w) => write!(f, "u{}", u32::from(w) * 8),
            TypeView::Signed(w) => write!(f, "i{}", u32::from(w) * 8),
            TypeView::Bool => write!(f, "bool"),
            TypeView::Bytes(n) => write!(f, "[u8; {n}]"),
            TypeView::Record(_) => write!(f, "a record"),
            TypeView::Array(n, e) => write!(f, "[{}; {n}]", TypeView::element(e).describe()),
        }
    }
}

fn read_type<'a>(c: &mut Cursor<'a>, depth: usize) -> Result<TypeView<'a>, TableError> {
    if depth > MAX_DEPTH {
        return Err(TableError::TooLarge);
    }
    let tag = c.u8()?;
    Ok(match tag {
        TAG_UNSIGNED | TAG_SIGNED => {
            let w = c.u8()?;
            if !matches!(w, 1 | 2 | 4 | 8) {
                return Err(TableError::Type(w));
            }
            if tag == TAG_UNSIGNED {
                TypeView::Unsigned(w)
            } else {
                TypeView::Signed(w)
            }
        }
        TAG_BOOL => TypeView::Bool,
        TAG_BYTES => TypeView::Bytes(c.u32()?),
        TAG_RECORD => {
            let start = c.at;
            skip_table(c, depth + 1)?;
            TypeView::Record(TableView {
                bytes: &c.bytes[start..c.at],
                shape: 0,
            })
        }
        TAG_ARRAY => {
            let n = c.u32()?;
            let start = c.at;
            read_type(c, depth + 1)?;
            TypeView::Array(n, ElementBytes(&c.bytes[start..c.at]))
        }
        other => return Err(TableError::Type(other)),
    })
}

/// Reads past one table, checking it.
fn skip_table(c: &mut Cursor<'_>, depth: usize) -> Result<(), TableError> {
    if depth > MAX_DEPTH {
        return Err(TableError::TooLarge);
    }
    let size = c.u32()?;
    let count = c.u16()? as usize;
    if count > MAX_FIELDS {
        return Err(TableError::TooLarge);
    }
    for _ in 0..count {
        c.text()?;
        let offset = c.u32()?;
        let field_size = c.u32()?;
        c.u64()?;
        c.text()?;
        let ty = read_type(c, depth)?;
        let end = u64::from(offset) + u64::from(field_size);
        if end > u64::from(size) || ty.size() != u64::from(field_size) {
            return Err(TableError::Geometry);
        }
    }
    Ok(())
}

impl<'a> TableView<'a> {
    /// Reads a table at the start of `bytes`; returns it and the bytes it took.
    pub fn parse(bytes: &'a [u8]) -> Result<(TableView<'a>, usize), TableError> {
        let mut c = Cursor { bytes, at: 0 };
        skip_table(&mut c, 0)?;
        let mut table = TableView {
            bytes: &bytes[..c.at],
            shape: 0,
        };
        table.shape = table.shape(FNV_OFFSET);
        Ok((table, c.at))
    }

    /// `bytes` as the table it is, without checking it again: for bytes that were
    /// parsed before (a description or a record set is validated once, as a whole)
    /// and whose fingerprint is known.
    ///
    /// # Panics
    /// Later, on access, if the bytes are not a table (a caller's bug, never input).
    pub(crate) fn trusted(bytes: &'a [u8], fingerprint: u64) -> TableView<'a> {
        TableView {
            bytes,
            shape: fingerprint,
        }
    }

    /// Exactly `bytes` as a table.
    pub fn parse_exact(bytes: &'a [u8]) -> Result<TableView<'a>, TableError> {
        let (t, n) = Self::parse(bytes)?;
        if n != bytes.len() {
            return Err(TableError::Geometry);
        }
        Ok(t)
    }

    /// The encoded bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The record's size.
    pub fn size(&self) -> u32 {
        u32::from_le_bytes([self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]])
    }

    /// The fields, in the order of the definition.
    pub fn fields(&self) -> Fields<'a> {
        let count = u16::from_le_bytes([self.bytes[4], self.bytes[5]]);
        Fields {
            c: Cursor {
                bytes: self.bytes,
                at: 6,
            },
            left: count,
        }
    }

    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<FieldView<'a>> {
        self.fields().find(|f| f.name == name)
    }

    /// The shape's fingerprint (the same as [`fingerprint`] of the layout it encodes).
    pub fn fingerprint(&self) -> u64 {
        if self.shape != 0 {
            return self.shape;
        }
        self.shape(FNV_OFFSET)
    }

    fn shape(&self, mut h: u64) -> u64 {
        h = mix(h, &self.bytes[..4]);
        h = mix(h, &self.bytes[4..6]);
        for f in self.fields() {
            h = mix(h, &[f.name.len() as u8]);
            h = mix(h, f.name.as_bytes());
            h = mix(h, &f.offset.to_le_bytes());
            h = mix(h, &f.size.to_le_bytes());
            h = view_shape(h, f.ty);
        }
        h
    }
}

fn view_shape(h: u64, ty: TypeView<'_>) -> u64 {
    match ty {
        TypeView::Unsigned(w) => mix(h, &[TAG_UNSIGNED, w]),
        TypeView::Signed(w) => mix(h, &[TAG_SIGNED, w]),
        TypeView::Bool => mix(h, &[TAG_BOOL]),
        TypeView::Bytes(n) => mix(mix(h, &[TAG_BYTES]), &n.to_le_bytes()),
        TypeView::Record(t) => t.shape(mix(h, &[TAG_RECORD])),
        TypeView::Array(n, e) => view_shape(
            mix(mix(h, &[TAG_ARRAY]), &n.to_le_bytes()),
            TypeView::element(e),
        ),
    }
}

/// The fields of a table.
#[derive(Clone)]
pub struct Fields<'a> {
    c: Cursor<'a>,
    left: u16,
}

impl<'a> Iterator for Fields<'a> {
    type Item = FieldView<'a>;
    fn next(&mut self) -> Option<FieldView<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The table was validated when it was parsed.
        let name = self.c.text().ok()?;
        let offset = self.c.u32().ok()?;
        let size = self.c.u32().ok()?;
        let default = self.c.u64().ok()?;
        let alias = self.c.text().ok()?;
        let ty = read_type(&mut self.c, 0).ok()?;
        Some(FieldView {
            name,
            offset,
            size,
            default,
            alias: (!alias.is_empty()).then_some(alias),
            ty,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Field as _;
    use crate::records::{kinds, machine, task_table};

    fn bytes_of(layout: &Layout) -> std::vec::Vec<u8> {
        let mut v = std::vec![0u8; encoded_len(layout)];
        let end = encode(layout, &mut v, 0);
        assert_eq!(end, v.len());
        v
    }

    #[test]
    fn a_table_reads_back_as_it_was_written() {
        let layout = <machine::V1 as crate::record::Record>::LAYOUT;
        let bytes = bytes_of(layout);
        let view = TableView::parse_exact(&bytes).unwrap();
        assert_eq!(view.size(), layout.size);
        assert_eq!(view.fields().count(), layout.fields.len());
        for (f, d) in view.fields().zip(layout.fields) {
            assert_eq!((f.name, f.offset, f.size), (d.name, d.offset, d.size));
        }
        let TypeView::Record(heap) = view.field("heap").unwrap().ty else {
            panic!("heap is a record");
        };
        assert_eq!(heap.field("len").unwrap().offset, 8);
        let TypeView::Array(48, elem) = view.field("memory_map").unwrap().ty else {
            panic!("memory_map is an array of 48");
        };
        assert!(matches!(TypeView::element(elem), TypeView::Record(_)));
        assert_eq!(view.fingerprint(), fingerprint(layout));
        assert_eq!(
            std::format!("{}", view.field("cpu_apic_ids").unwrap().ty.describe()),
            "[u32; 16]"
        );
        let _ = kinds::MACHINE;
    }

    #[test]
    fn fingerprints_tell_layouts_apart_but_not_defaults() {
        let a = <task_table::V1 as crate::record::Record>::LAYOUT;
        let b = <machine::V1 as crate::record::Record>::LAYOUT;
        assert_ne!(fingerprint(a), fingerprint(b));
        let mut fields: std::vec::Vec<FieldDesc> = a.fields.to_vec();
        fields[0].default = 7;
        fields[1].alias = Some("old");
        let same = Layout {
            name: "Other",
            size: a.size,
            fields: std::boxed::Box::leak(fields.clone().into_boxed_slice()),
        };
        assert_eq!(
            fingerprint(&same),
            fingerprint(a),
            "defaults, aliases and type names are not the shape"
        );
        fields[0].name = "ident";
        let renamed = Layout {
            fields: std::boxed::Box::leak(fields.into_boxed_slice()),
            ..same
        };
        assert_ne!(fingerprint(&renamed), fingerprint(a));
        let _ = task_table::V1::SIZE;
    }

    /// A random flat layout: up to six fields of small names and scalar types.
    fn layout() -> impl proptest::strategy::Strategy<Value = Layout> {
        use proptest::prelude::*;
        let ty = prop_oneof![
            prop::sample::select(&[1u8, 2, 4, 8][..]).prop_map(FieldType::Unsigned),
            prop::sample::select(&[1u8, 2, 4, 8][..]).prop_map(FieldType::Signed),
            Just(FieldType::Bool),
            (1u32..16).prop_map(FieldType::Bytes),
        ];
        let field = (
            prop::sample::select(&["a", "b", "c", "d"][..]),
            0u32..64,
            ty,
            any::<u64>(),
        );
        proptest::collection::vec(field, 1..6).prop_map(|fs| {
            let fields: std::vec::Vec<FieldDesc> = fs
                .into_iter()
                .map(|(name, offset, ty, default)| FieldDesc {
                    name,
                    offset,
                    size: match ty {
                        FieldType::Unsigned(w) | FieldType::Signed(w) => w.into(),
                        FieldType::Bool => 1,
                        FieldType::Bytes(n) => n,
                        _ => 0,
                    },
                    ty,
                    default,
                    alias: None,
                })
                .collect();
            let size = fields.iter().map(|f| f.offset + f.size).max().unwrap_or(0);
            Layout {
                name: "Random",
                size,
                fields: std::boxed::Box::leak(fields.into_boxed_slice()),
            }
        })
    }

    /// What a fingerprint stands for: size, and per field its name, place and type.
    fn shape(l: &Layout) -> (u32, std::vec::Vec<(&'static str, u32, u32, FieldType)>) {
        (
            l.size,
            l.fields
                .iter()
                .map(|f| (f.name, f.offset, f.size, f.ty))
                .collect(),
        )
    }

    proptest::proptest! {
        #[test]
        fn fingerprints_differ_whenever_the_shape_does(a in layout(), b in layout()) {
            proptest::prop_assert_eq!(shape(&a) == shape(&b), fingerprint(&a) == fingerprint(&b));
            // The encoded table's fingerprint is the layout's.
            let bytes = bytes_of(&a);
            proptest::prop_assert_eq!(TableView::parse_exact(&bytes).unwrap().fingerprint(), fingerprint(&a));
        }

        #[test]
        fn any_one_change_to_a_field_changes_the_fingerprint(
            a in layout(),
            which in 0usize..6,
            change in 0u8..3,
        ) {
            let mut fields = a.fields.to_vec();
            let i = which % fields.len();
            match change {
                0 => fields[i].offset += 1,
                1 => fields[i].name = if fields[i].name == "e" { "f" } else { "e" },
                _ => {
                    fields[i].ty = match fields[i].ty {
                        FieldType::Unsigned(w) => FieldType::Signed(w),
                        _ => FieldType::Unsigned(1),
                    };
                    fields[i].size = 1;
                }
            }
            let changed = Layout { fields: std::boxed::Box::leak(fields.into_boxed_slice()), ..a };
            if shape(&changed) != shape(&a) {
                proptest::prop_assert_ne!(fingerprint(&changed), fingerprint(&a));
            }
        }
    }

    #[test]
    fn damaged_tables_are_errors_not_panics() {
        let bytes = bytes_of(<machine::V1 as crate::record::Record>::LAYOUT);
        for cut in 0..bytes.len() {
            let _ = TableView::parse(&bytes[..cut]);
        }
        for i in 0..bytes.len() {
            for v in [0u8, 1, 6, 0x7f, 0xff] {
                let mut b = bytes.clone();
                b[i] = v;
                if let Ok((t, _)) = TableView::parse(&b) {
                    let _ = t.fields().count();
                    let _ = t.fingerprint();
                }
            }
        }
    }
}
