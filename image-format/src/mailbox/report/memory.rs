//! [`ImageBytes`] (report kind 6, version 1): bytes of the running image, as the CPUs
//! see them (answers `ReadImage`). The host compares them with the ELF it built, for
//! instance to check that removing a hotpatch restored every original byte.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | header: kind 6, version 1 |
//! | 8 | 8 | virtual address of the first byte |
//! | 16 | 4 | length *n* (≤ [`MAX_IMAGE_READ`]) |
//! | 20 | *n* | the bytes |

use alloc::vec::Vec;

use super::{bounded, Layout};
use crate::error::Result;
use crate::mailbox::ReportKind;
use crate::wire::Writer;

/// Most bytes one `ReadImage` returns.
pub const MAX_IMAGE_READ: usize = 64 * 1024;

const LAYOUT: Layout = Layout {
    kind: ReportKind::ImageBytes,
    version: 1,
    name: "image bytes report",
};

/// Bytes of the running image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageBytes {
    /// Virtual address of `bytes[0]`.
    pub address: u64,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl ImageBytes {
    /// Writes the report into `out`; returns the length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize> {
        bounded("image read", self.bytes.len(), MAX_IMAGE_READ)?;
        LAYOUT.encode(out, |w| self.write(w))
    }

    /// The encoded report.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        bounded("image read", self.bytes.len(), MAX_IMAGE_READ)?;
        LAYOUT.to_vec(|w| self.write(w))
    }

    fn write(&self, w: &mut Writer<'_>) {
        w.u64(self.address);
        w.u32(self.bytes.len() as u32);
        w.put(&self.bytes);
    }

    /// Reads exactly one report.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        LAYOUT.decode(bytes, |r| {
            let address = r.u64()?;
            let len = r.u32()? as usize;
            bounded("image read", len, MAX_IMAGE_READ)?;
            Ok(Self {
                address,
                bytes: r.bytes(len)?.to_vec(),
            })
        })
    }
}
