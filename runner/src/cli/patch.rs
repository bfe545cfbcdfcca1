//! `hotkernel patch …` and the hotpatch demo.

use crate::error::{Error, Result};

/// The hotpatch demo.
pub fn demo(_cpus: u32, _json: bool) -> Result<u8> {
    Err(Error::Mailbox("the hotpatch demo is not built yet".into()))
}

/// The hotpatch pause benchmark.
pub fn bench(_rounds: usize, _json: bool) -> Result<u8> {
    Err(Error::Mailbox(
        "the hotpatch benchmark is not built yet".into(),
    ))
}
