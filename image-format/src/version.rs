//! Versions: of an image ([`ImageVersion`]), ranges of images ([`VersionRange`]), and
//! of a hand-off record's layout ([`SchemaVersion`]).
//!
//! Image versions are compared to decide whether a new image may replace the running
//! one (its [`VersionRange`] of replaceable versions must contain the running
//! version). Schema versions are compared per record kind to decide whether a record
//! can be converted (a chain N→N+1 from the exporter's version to the reader's).
//! All three are plain integers on the wire; these types give them their order and
//! their invariants.

use core::fmt;

use crate::error::{FormatError, Result};

/// The version of a kernel image, `major.minor.patch`, ordered field by field.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ImageVersion {
    /// Incompatible changes.
    pub major: u16,
    /// Compatible additions.
    pub minor: u16,
    /// Fixes.
    pub patch: u16,
}

impl ImageVersion {
    /// Encoded size: three little-endian `u16`.
    pub const SIZE: usize = 6;

    /// `major.minor.patch`. Every value is valid.
    pub const fn new(major: u16, minor: u16, patch: u16) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Little-endian bytes: major, minor, patch.
    pub const fn to_bytes(self) -> [u8; 6] {
        let [a, b] = self.major.to_le_bytes();
        let [c, d] = self.minor.to_le_bytes();
        let [e, f] = self.patch.to_le_bytes();
        [a, b, c, d, e, f]
    }

    /// The inverse of [`to_bytes`](Self::to_bytes).
    pub const fn from_bytes(b: [u8; 6]) -> Self {
        Self {
            major: u16::from_le_bytes([b[0], b[1]]),
            minor: u16::from_le_bytes([b[2], b[3]]),
            patch: u16::from_le_bytes([b[4], b[5]]),
        }
    }

    /// Compares in a `const` context (same order as `Ord`).
    pub const fn const_le(self, other: Self) -> bool {
        if self.major != other.major {
            return self.major < other.major;
        }
        if self.minor != other.minor {
            return self.minor < other.minor;
        }
        self.patch <= other.patch
    }
}

impl fmt::Display for ImageVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// An inclusive range of image versions: the running versions an image may replace.
///
/// Invariant: `min <= max`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionRange {
    min: ImageVersion,
    max: ImageVersion,
}

impl VersionRange {
    /// Encoded size: `min` then `max`.
    pub const SIZE: usize = 12;

    /// `min..=max`.
    ///
    /// # Panics
    /// If `min > max` (at compile time when used in a `static`).
    pub const fn new(min: ImageVersion, max: ImageVersion) -> Self {
        assert!(min.const_le(max), "version range: min is above max");
        Self { min, max }
    }

    /// `min..=max`, or an error if `min > max`.
    pub fn try_new(min: ImageVersion, max: ImageVersion) -> Result<Self> {
        if min <= max {
            Ok(Self { min, max })
        } else {
            Err(FormatError::InvalidField {
                field: "replaces range",
                value: u64::from(min.major),
                reason: "minimum version is above the maximum",
            })
        }
    }

    /// Exactly one version.
    pub const fn exactly(v: ImageVersion) -> Self {
        Self { min: v, max: v }
    }

    /// Every version.
    pub const fn any() -> Self {
        Self {
            min: ImageVersion::new(0, 0, 0),
            max: ImageVersion::new(u16::MAX, u16::MAX, u16::MAX),
        }
    }

    /// The lowest version in the range.
    pub const fn min(self) -> ImageVersion {
        self.min
    }

    /// The highest version in the range.
    pub const fn max(self) -> ImageVersion {
        self.max
    }

    /// True if `v` is in the range.
    pub fn contains(self, v: ImageVersion) -> bool {
        self.min <= v && v <= self.max
    }

    /// Little-endian bytes: `min` then `max`.
    pub const fn to_bytes(self) -> [u8; 12] {
        let a = self.min.to_bytes();
        let b = self.max.to_bytes();
        [
            a[0], a[1], a[2], a[3], a[4], a[5], b[0], b[1], b[2], b[3], b[4], b[5],
        ]
    }

    /// The inverse of [`to_bytes`](Self::to_bytes), checking `min <= max`.
    pub fn from_bytes(b: [u8; 12]) -> Result<Self> {
        let [a0, a1, a2, a3, a4, a5, b0, b1, b2, b3, b4, b5] = b;
        Self::try_new(
            ImageVersion::from_bytes([a0, a1, a2, a3, a4, a5]),
            ImageVersion::from_bytes([b0, b1, b2, b3, b4, b5]),
        )
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ..= {}", self.min, self.max)
    }
}

/// The layout version of one record kind. Versions start at 1 and only grow; a new
/// version ships with a converter from the previous one.
///
/// Invariant: not 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchemaVersion(u16);

impl SchemaVersion {
    /// The first version of every kind.
    pub const FIRST: Self = Self(1);

    /// # Panics
    /// If `v` is 0 (versions start at 1).
    pub const fn new(v: u16) -> Self {
        assert!(v != 0, "schema versions start at 1");
        Self(v)
    }

    /// `v`, or an error if it is 0.
    pub const fn try_new(v: u16) -> Result<Self> {
        if v == 0 {
            Err(FormatError::InvalidField {
                field: "schema version",
                value: 0,
                reason: "schema versions start at 1",
            })
        } else {
            Ok(Self(v))
        }
    }

    /// The number.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// The next version (N+1), the target of a converter step from this one.
    pub const fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_field_by_field() {
        let a = ImageVersion::new(1, 9, 9);
        let b = ImageVersion::new(2, 0, 0);
        assert!(a < b);
        assert!(a.const_le(b) && !b.const_le(a) && a.const_le(a));
        assert_eq!(ImageVersion::from_bytes(a.to_bytes()), a);
    }

    #[test]
    fn range_contains_its_ends() {
        let r = VersionRange::new(ImageVersion::new(1, 0, 0), ImageVersion::new(1, 9, 0));
        assert!(r.contains(ImageVersion::new(1, 0, 0)));
        assert!(r.contains(ImageVersion::new(1, 9, 0)));
        assert!(!r.contains(ImageVersion::new(2, 0, 0)));
        assert_eq!(VersionRange::from_bytes(r.to_bytes()), Ok(r));
        assert!(
            VersionRange::try_new(ImageVersion::new(2, 0, 0), ImageVersion::new(1, 0, 0)).is_err()
        );
    }

    #[test]
    fn schema_versions_start_at_one() {
        assert!(SchemaVersion::try_new(0).is_err());
        assert_eq!(SchemaVersion::new(3).get(), 3);
    }
}
