//! [`StageReport`] (report kind 2, version 2): a package was copied into the staging
//! buffer and verified.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | header: kind 2, version 2 |
//! | 8 | 8 | package bytes |
//! | 16 | 8 | staging time, µs (copy and hash, one pass) |
//! | 24 | 8 | of which hashing, µs |
//! | 32 | 8 | of which verifying the signature, µs (new in version 2) |
//! | 40 | 8 | the signer's key id (new in version 2) |
//! | 48 | 4 | the image's security version (new in version 2) |
//! | 52 | 4 | reserved, zero |
//! | 56 | 88 | the staged image: version, build id, label |

use alloc::vec::Vec;
use core::fmt;

use super::Layout;
use crate::error::Result;
use crate::identity::ImageSummary;
use crate::mailbox::ReportKind;
use crate::wire::{Reader, Writer};

const LAYOUT: Layout = Layout {
    kind: ReportKind::Stage,
    version: 2,
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
    /// Of which verifying the signature, in microseconds (outside the downtime).
    pub verify_us: u64,
    /// The key that signed the package (`signature::KeyId`).
    pub signer: [u8; 8],
    /// The image's security version.
    pub svn: u32,
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
                verify_us: r.u64()?,
                signer: r.array()?,
                svn: {
                    let svn = r.u32()?;
                    let _reserved = r.u32()?;
                    svn
                },
                image: ImageSummary::read(r)?,
            })
        })
    }

    fn write(&self, w: &mut Writer<'_>) {
        w.u64(self.bytes);
        w.u64(self.staging_us);
        w.u64(self.hash_us);
        w.u64(self.verify_us);
        w.put(&self.signer);
        w.u32(self.svn);
        w.u32(0);
        self.image.write(w);
    }
}

/// `staged 2.0.0 "v2" (build …): 1048576 bytes in 13200 µs (hash 12800 µs, 79.4 MB/s; signature 900 µs by key 0123456789abcdef, SVN 1)`
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
        write!(
            f,
            "; signature {} µs by key {}, SVN {})",
            self.verify_us,
            crate::signature::KeyId(self.signer),
            self.svn
        )
    }
}
