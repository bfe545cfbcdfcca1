//! Pre-flight: at staging, the old kernel exports its state as a trial (without
//! stopping anything) and runs the new image's bootstrap in dry-run mode over it. The
//! bootstrap checks versions and capabilities and runs the converter chain, then
//! returns instead of committing. A refusal it predicts is reported with the stage, long
//! before anything stops (the swap itself still decides: the real bootstrap runs again
//! on the exact state at the swap).
//!
//! It also means the code the stopped section runs — the old kernel's export and the
//! new image's bootstrap — has run once already; under an emulator that translates code
//! on first execution, that is most of the difference between a cold and a warm swap.
//!
//! The dry run may change the staging copy's statics, so the loader restores that
//! copy's writable pages afterwards.

use alloc::string::String;

use updater::handoff::{inject, text, Descriptor, EXPORT_OFFSET, EXPORT_SIZE, PREFLIGHT_OK};

use crate::update::load::{self, ImageSource, Loaded};
use crate::update::{enter, export, handoff, swap};

/// What the dry run found.
#[derive(Debug, Clone)]
pub enum Preflight {
    /// The bootstrap would commit: `conversions` schema steps, `warnings` remarks.
    Reconciles { conversions: u32, warnings: u32 },
    /// The bootstrap would refuse, for this reason.
    WouldRefuse(String),
    /// The trial export failed (the state does not fit the export area).
    ExportFailed(String),
}

/// Runs the pre-flight for `loaded` (laid out from `source`).
pub fn run<I: Iterator<Item = (u64, i64)> + Clone>(
    loaded: &Loaded,
    source: &ImageSource<'_, I>,
) -> Preflight {
    let descriptor: *mut Descriptor = {
        let mut d = handoff::descriptor();
        swap::reset(&mut d, loaded, 0, inject::DRY_RUN);
        &mut *d as *mut Descriptor
    };
    // SAFETY: no swap is in progress (the service, on this CPU, starts swaps), so the
    // export area is free and the descriptor is this function's.
    let d = unsafe { &mut *descriptor };
    // SAFETY: as above, the export area is free while no swap is in progress.
    let area = unsafe { handoff::area(EXPORT_OFFSET, EXPORT_SIZE) };
    match export::export(area) {
        Ok(e) => d.exported = (EXPORT_OFFSET, e.bytes as u64),
        Err(e) => return Preflight::ExportFailed(alloc::format!("{e}")),
    }
    // The stack switch is the same as a real swap's.
    // SAFETY: the bootstrap in dry-run mode only reads the descriptor and the exported
    // records and writes the converted area and the descriptor's logs, nothing else.
    let status = unsafe { enter::call_bootstrap(d.bootstrap_entry, descriptor) };
    let result = if status == PREFLIGHT_OK {
        Preflight::Reconciles {
            conversions: d.conversion_count,
            warnings: d.warning_count,
        }
    } else {
        Preflight::WouldRefuse(String::from(text(&d.failure)))
    };
    load::restore_writable(source);
    result
}
