//! This image's description: the field table of every record it reads and writes, of
//! its converters' versions, the regions of its address map and the hand-off layout —
//! built at compile time by `updater::describe` from the same declarations the kernel
//! runs with (`identity::RECORDS`, `identity::STEPS`, `memory::layout::INHERITED`,
//! `updater::handoff::Abi`), never written by hand.
//!
//! It is embedded as [`DESCRIPTION`] in section `.hk_schema`, where the host's packer
//! copies it into the package header (`docs/FORMAT.md`). A running kernel compares a
//! candidate's description with its own at staging (`updater::plan::swap`) — the layout
//! guard, conversion by field, the regions — and exports each record with its table
//! from here; this image's bootstrap reconciles what the old kernel exported against it.

use updater::describe::{self, Declaration, Description};
use updater::handoff::{Abi, HANDOFF_ABI_VERSION};
use updater::record::{layout_of, Field};

use crate::identity;
use crate::memory::layout::INHERITED;

const DECLARATION: Declaration<'static> = Declaration {
    abi_version: HANDOFF_ABI_VERSION,
    descriptor: layout_of(&<Abi as Field>::TYPE),
    records: &identity::RECORDS,
    steps: &identity::STEPS,
    regions: &INHERITED,
};

/// This image's description, where the packer finds it.
#[used]
#[unsafe(link_section = ".hk_schema")]
pub static DESCRIPTION: [u8; describe::len(&DECLARATION)] = describe::build(&DECLARATION);

/// This image's description as its bootstrap reads it, in the stopped section of a swap:
/// its bounds checked, its tables not walked again (the running kernel parsed the same
/// bytes in full from the package at staging, and this image at its own boot).
///
/// # Panics
/// Never for a description built by `describe::build`.
pub fn for_bootstrap() -> Description<'static> {
    match Description::parse_own(&DESCRIPTION) {
        Ok(d) => d,
        Err(e) => panic!("this image's own description is out of bounds: {e}"),
    }
}

/// This image's description, read (checked once, then kept).
///
/// # Panics
/// Never for a description built by `describe::build` (every boot reads it).
pub fn description() -> Description<'static> {
    static READ: spin::Once<Description<'static>> = spin::Once::new();
    *READ.call_once(|| match Description::parse(&DESCRIPTION) {
        Ok(d) => d,
        Err(e) => panic!("this image's own description does not parse: {e}"),
    })
}
