//! The update history this kernel carries: every image that has run on the machine
//! (from the history record of the kernel before it), plus its own entry.
#![deny(unsafe_code)]

use alloc::vec::Vec;

use spin::Mutex;
use updater::handoff::set_text;
use updater::records::history::{MAX_ENTRIES, V2 as Entry};

use crate::{identity, image, machine, time};

static HISTORY: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

fn own_entry(downtime_ns: u64, request_seq: u64, floor_before: u32) -> Entry {
    let v = identity::this().version();
    let mut l = [0u8; 32];
    set_text(&mut l, identity::this().label().as_str());
    Entry {
        boot_seq: machine::boot_seq(),
        version: [v.major, v.minor, v.patch],
        build_id: image::build_id_bytes().1,
        label: l,
        started_ns: time::since_boot().as_nanos() as u64,
        downtime_ns,
        request_seq,
        reserved: 0,
        svn: identity::SVN,
        svn_floor: floor_before.max(identity::SVN),
    }
}

/// The highest security version that ran in this VM (this kernel's and its hotpatches'
/// included): a package or patch below it is refused.
pub fn svn_floor() -> u32 {
    HISTORY
        .lock()
        .last()
        .map_or(identity::SVN, |e| e.svn_floor.max(identity::SVN))
}

/// A hotpatch of security version `svn` runs: this kernel's entry keeps it as the floor
/// (the highest that ran), so it crosses swaps with the history.
pub fn raise_floor(svn: u32) {
    if let Some(last) = HISTORY.lock().last_mut() {
        last.svn_floor = last.svn_floor.max(svn);
    }
}

/// First boot: the history starts with this kernel.
pub fn init_first_boot() {
    *HISTORY.lock() = alloc::vec![own_entry(0, 0, 0)];
}

/// After a swap: the imported history, then this kernel with the swap's downtime.
pub fn adopt(imported: Vec<Entry>, downtime_ns: u64, request_seq: u64) {
    let mut h = HISTORY.lock();
    let floor = imported.last().map_or(0, |e| e.svn_floor);
    *h = imported;
    h.push(own_entry(downtime_ns, request_seq, floor));
    let excess = h.len().saturating_sub(MAX_ENTRIES);
    h.drain(..excess);
}

/// After a revert: the history as this kernel exported it (it runs again; nothing new
/// to record but the failed swap, which its report says).
pub fn adopt_as_it_was(imported: Vec<Entry>) {
    *HISTORY.lock() = imported;
}

/// The history, oldest first.
pub fn entries() -> Vec<Entry> {
    HISTORY.lock().clone()
}

/// Sets the downtime of this kernel's own entry (known once every CPU schedules again).
pub fn set_own_downtime(downtime_ns: u64) {
    if let Some(last) = HISTORY.lock().last_mut() {
        last.downtime_ns = downtime_ns;
    }
}
