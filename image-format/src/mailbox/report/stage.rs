//! [`StageReport`] (report kind 2, version 1): a package was copied into the staging
//! buffer and verified.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | header: kind 2, version 1 |
//! | 8 | 8 | package bytes |
//! | 16 | 8 | staging time, µs (copy and hash, one pass) |
//! | 24 | 8 | of which hashing, µs |
//! | 32 | 88 | the staged image: version, build id, label |

use alloc::vec::Vec;
use core::fmt;

use super::Layout;
use crate::error::Result;
use crate::identity::ImageSummary;
use crate::mailbox::ReportKind;
use crate::wire::{Reader, Writer};

const LAYOUT: Layout = Layout {
    kind: ReportKind::Stage,
    version: 1,
    name: "stage report",
};

/// The result of staging a package.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StageReport {
    /// Package size in bytes.
    pub bytes: u64,
    /// Time to copy and hash it, in microseconds.
    pub staging_us: u64,
    /// Of which hashing, in microseconds (measured or estimated by the guest).
    pub hash_us: u64,
    /// The staged image.
    pub image: ImageSummary,
}

impl StageReport {
    /// Writes the report into `out`; returns the length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize> {
        LAYOUT.encode(out, |w| self.write(w))
    }

    /// The encoded report.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        LAYOUT.to_vec(|w| self.write(w))
    }

    /// Reads exactly one stage report from `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        LAYOUT.decode(bytes, |r: &mut Reader<'_>| {
            Ok(Self {
                bytes: r.u64()?,
                staging_us: r.u64()?,
                hash_us: r.u64()?,
                image: ImageSummary::read(r)?,
            })
        })
    }

    fn write(&self, w: &mut Writer<'_>) {
        w.u64(self.bytes);
        w.u64(self.staging_us);
        w.u64(self.hash_us);
        self.image.write(w);
    }
}

/// `staged 2.0.0 "v2" (build …): 1048576 bytes in 13200 µs (hash 12800 µs, 79.4 MB/s)`
impl fmt::Display for StageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "staged {}: {} bytes in {} µs (hash {} µs",
            self.image, self.bytes, self.staging_us, self.hash_us
        )?;
        // Bytes per µs is MB/s.
        if let Some(tenths) = self.bytes.saturating_mul(10).checked_div(self.staging_us) {
            write!(f, ", {}.{} MB/s", tenths / 10, tenths % 10)?;
        }
        f.write_str(")")
    }
}
