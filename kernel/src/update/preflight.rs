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

use updater::handoff::{inject, text, SetPlace, PREFLIGHT_OK};

use crate::handoff_region;
use crate::update::prepare::{self, ImageSource, Prepared};
use crate::update::{enter, export, swap};

/// What the dry run found.
#[derive(Debug, Clone)]
pub enum Preflight {
    /// The bootstrap would commit: `conversions` records logged (one per record, one
    /// more per further conversion stage), `warnings` remarks.
    Reconciles { conversions: u32, warnings: u32 },
    /// The bootstrap would refuse, for this reason.
    WouldRefuse(String),
    /// The trial export failed (the state does not fit the export area).
    ExportFailed(String),
}

/// Runs the pre-flight for `prepared` (laid out from `source`).
pub fn run<I: Iterator<Item = (u64, i64)> + Clone>(
    prepared: &Prepared,
    source: &ImageSource<'_, I>,
    inject_failure: bool,
) -> Preflight {
    let mut guard = handoff_region::descriptor();
    let fault = if inject_failure {
        inject::RECONCILE_FAIL
    } else {
        0
    };
    swap::reset(&mut guard, prepared, 0, inject::DRY_RUN | fault);
    {
        let (d, areas) = guard.areas();
        match export::export(areas.records) {
            Ok(e) => {
                d.exported = SetPlace {
                    at: 0,
                    len: e.end as u64,
                }
            }
            Err(e) => return Preflight::ExportFailed(alloc::format!("{e}")),
        }
    }
    let entry = guard.bootstrap_entry;
    // The stack switch is the same as a real swap's.
    // SAFETY: the bootstrap in dry-run mode only reads the descriptor and the exported
    // records and writes the converted area and the descriptor's logs, nothing else;
    // this CPU holds the guard while it runs.
    let status = unsafe { enter::call_bootstrap(entry, guard.as_mut_ptr()) };
    let result = if status == PREFLIGHT_OK {
        Preflight::Reconciles {
            conversions: guard.conversion_count,
            warnings: guard.warning_count,
        }
    } else {
        Preflight::WouldRefuse(String::from(text(&guard.failure)))
    };
    drop(guard);
    prepare::restore_writable(source);
    result
}
