//! The hand-off region, as this kernel reaches it: the descriptor, the park control
//! block and the areas of the record sets (layout in `updater::handoff`).
//!
//! The descriptor is written only by the CPU coordinating an update (the BSP), while
//! every other CPU is parked or not yet interested, so [`descriptor`] hands out a
//! mutable view under a lock. The park control block is all atomics and is shared.
//!
//! The two record halves: the one the swap into this kernel left its records in is
//! this kernel's *live* half — its run queues adopted those records in place
//! ([`adopt_half`], once, at resume), and nothing else touches it. The other half is
//! the export half: the exported and converted sets of the next swap go there, and it
//! belongs, with the reclaim list, to whoever holds the descriptor lock
//! ([`DescriptorGuard::areas`]). At first boot nothing is live and half 0 is the export
//! half.
//!
//! The one exception is the new image's bootstrap, which runs with that image's own
//! statics (its lock is not this one): the old kernel holds the guard while it runs,
//! and the bootstrap reaches the half through [`RecordAreas::for_bootstrap`].

use core::sync::atomic::{AtomicU32, Ordering};

use spin::{Mutex, MutexGuard};
use updater::handoff::{
    record_half_offset, Descriptor, ParkControl, Undo, DESCRIPTOR_MAGIC, DESCRIPTOR_OFFSET,
    GUARD_IDT_OFFSET, HANDOFF_ABI_VERSION, LAYOUT_FINGERPRINT, MAX_RECLAIM, PARK_CONTROL_OFFSET,
    PARK_GDT_OFFSET, PARK_IDT_OFFSET, PARK_STUB_OFFSET, RECLAIM_OFFSET, RECORD_HALF_SIZE,
    REGION_SIZE, UNDO_OFFSET,
};
use x86_64::structures::paging::PageTableFlags;

use crate::arch::{apic, park};
use crate::cpu;
use crate::memory::{
    self,
    layout::{stack_top, HANDOFF},
};

const _: () = assert!(HANDOFF.len >= REGION_SIZE);

static DESCRIPTOR_LOCK: Mutex<()> = Mutex::new(());

/// The live half (0 or 1), or [`NONE_LIVE`] before any swap into this kernel.
static LIVE_HALF: AtomicU32 = AtomicU32::new(NONE_LIVE);
const NONE_LIVE: u32 = u32::MAX;

/// The half the next export goes to: the one that is not live.
pub fn export_half() -> u32 {
    match LIVE_HALF.load(Ordering::Relaxed) {
        NONE_LIVE => 0,
        live => 1 - live,
    }
}

fn half_ptr(half: u32) -> *mut u8 {
    (HANDOFF.start + record_half_offset(half)) as *mut u8
}

/// The record half the swap into this kernel left (`half`), for its run queues to
/// adopt: this kernel's records live there from now on. Once per kernel.
///
/// # Panics
/// On a second call (two owners of the live half).
pub fn adopt_half(half: u32) -> &'static mut [u8] {
    let half = half & 1;
    if LIVE_HALF
        .compare_exchange(NONE_LIVE, half, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        panic!("the live record half is adopted once");
    }
    // SAFETY: the half is mapped for the kernel's life and lies in the region; from now
    // on nothing else reaches it: `RecordAreas` hands out only the other half, and this
    // function refuses a second call.
    unsafe { core::slice::from_raw_parts_mut(half_ptr(half), RECORD_HALF_SIZE as usize) }
}

/// Exclusive access to the descriptor and the record areas.
pub struct DescriptorGuard {
    _lock: MutexGuard<'static, ()>,
}

fn descriptor_ptr() -> *mut Descriptor {
    (HANDOFF.start + DESCRIPTOR_OFFSET) as *mut Descriptor
}

impl core::ops::Deref for DescriptorGuard {
    type Target = Descriptor;
    fn deref(&self) -> &Descriptor {
        // Descriptor is plain data, valid for any bit pattern of its integer fields.
        // SAFETY: its page is mapped for the kernel's life and initialised at first boot;
        // the lock excludes other mutable views.
        unsafe { &*descriptor_ptr() }
    }
}

impl core::ops::DerefMut for DescriptorGuard {
    fn deref_mut(&mut self) -> &mut Descriptor {
        // SAFETY: as in `deref`; the lock makes this view unique.
        unsafe { &mut *descriptor_ptr() }
    }
}

impl DescriptorGuard {
    /// The descriptor and the record areas, both borrowed from the guard.
    pub fn areas(&mut self) -> (&mut Descriptor, RecordAreas<'_>) {
        // SAFETY: the guard gives exclusive access to the descriptor and the areas
        // (module doc); the areas are disjoint from the descriptor's page; the export
        // half is not the live one.
        unsafe { (&mut *descriptor_ptr(), RecordAreas::new(export_half())) }
    }

    /// The descriptor as the bootstrap's argument (valid while the guard is held).
    pub fn as_mut_ptr(&mut self) -> *mut Descriptor {
        descriptor_ptr()
    }
}

/// The update descriptor (exclusive).
pub fn descriptor() -> DescriptorGuard {
    DescriptorGuard {
        _lock: DESCRIPTOR_LOCK.lock(),
    }
}

/// The byte areas of the region a swap writes: its record half and the reclaim list.
///
/// Invariant: at most one `RecordAreas` is alive at a time, handed out by the
/// [`DescriptorGuard`] (or, in the bootstrap, by the old kernel's guard it runs under),
/// and its half is never the live one.
pub struct RecordAreas<'a> {
    /// The record half for the exported and converted sets (`RECORD_HALF_SIZE` bytes).
    pub records: &'a mut [u8],
    /// Frames the overlay unmapped from the image (`MAX_RECLAIM` physical addresses).
    pub reclaim: &'a mut [u64],
    /// The other half, while neither is live (first boot): free for a copy.
    pub spare: Option<&'a mut [u8]>,
}

impl<'a> RecordAreas<'a> {
    /// # Safety
    /// - no other view of the areas may be alive (the type's invariant), and `half` is
    ///   not the live half of the kernel whose statics are running (the spare half is
    ///   handed out only when neither half is live).
    unsafe fn new(half: u32) -> Self {
        let half = half & 1;
        // SAFETY: the half and the reclaim list lie inside the mapped region and are
        // disjoint (`updater::handoff` layout); exclusivity is the caller's contract; the
        // reclaim area is 8-byte aligned and any bit pattern is a u64.
        unsafe {
            RecordAreas {
                records: core::slice::from_raw_parts_mut(half_ptr(half), RECORD_HALF_SIZE as usize),
                reclaim: core::slice::from_raw_parts_mut(
                    (HANDOFF.start + RECLAIM_OFFSET) as *mut u64,
                    MAX_RECLAIM,
                ),
                spare: (LIVE_HALF.load(Ordering::Relaxed) == NONE_LIVE).then(|| {
                    core::slice::from_raw_parts_mut(half_ptr(1 - half), RECORD_HALF_SIZE as usize)
                }),
            }
        }
    }

    /// The areas for the new image's bootstrap, which cannot take this image's lock:
    /// `half` is the one the old kernel exported into (the descriptor says which).
    ///
    /// # Safety
    /// - called by the bootstrap entry only, under the contract of `hk_bootstrap`: the
    ///   old kernel holds its descriptor guard and waits, every other CPU is parked, and
    ///   `half` is the descriptor's record half (never the old kernel's live one).
    pub unsafe fn for_bootstrap(half: u32) -> Self {
        // SAFETY: forwarded contract: the old kernel's guard makes this view unique.
        unsafe { Self::new(half) }
    }
}

/// The park control block.
pub fn park_control() -> &'static ParkControl {
    // SAFETY: mapped for the kernel's life, initialised at first boot; all fields that
    // change while CPUs run are atomics.
    unsafe { &*((HANDOFF.start + PARK_CONTROL_OFFSET) as *const ParkControl) }
}

/// Address of the installed park stub's entry.
pub fn park_entry() -> u64 {
    park::entry_address(HANDOFF.start + PARK_STUB_OFFSET)
}

/// First boot: write the descriptor header, install the park stub and its tables, and
/// fill every CPU's park slot.
pub fn init_first_boot() {
    {
        let mut d = descriptor();
        d.magic = DESCRIPTOR_MAGIC;
        d.abi_version = HANDOFF_ABI_VERSION;
        d.layout_fingerprint = LAYOUT_FINGERPRINT;
    }
    // SAFETY: the control block page is mapped writable and no CPU is parked yet.
    let control = unsafe { &mut *((HANDOFF.start + PARK_CONTROL_OFFSET) as *mut ParkControl) };
    control
        .ignore_cpu
        .store(u32::MAX, core::sync::atomic::Ordering::Relaxed);
    let stub = HANDOFF.start + PARK_STUB_OFFSET;
    // SAFETY: the four pages are in the hand-off region, mapped writable, and no CPU is
    // parked during first boot.
    unsafe {
        park::install(
            stub,
            HANDOFF.start + PARK_GDT_OFFSET,
            HANDOFF.start + PARK_IDT_OFFSET,
            guard_idt(),
            control,
            apic::eoi_address(),
        )
    };
    let rx = PageTableFlags::PRESENT;
    if let Err(e) = memory::with_tables(|t| t.set_flags(stub, 4096, rx)) {
        panic!("cannot make the park stub executable: {e}");
    }
    fill_park_slots();
}

/// Records each CPU's index and stack in its park slot (first boot and resume).
pub fn fill_park_slots() {
    let control = park_control();
    for c in cpu::all() {
        let slot = &control.slots[c.id.index()];
        slot.cpu_index
            .store(c.id.index() as u64, core::sync::atomic::Ordering::Relaxed);
        slot.stack_top.store(
            stack_top(c.id.index()),
            core::sync::atomic::Ordering::Relaxed,
        );
        slot.apic_id
            .store(u64::from(c.apic_id), core::sync::atomic::Ordering::Relaxed);
    }
}

/// The guard IDT every CPU runs on during a swap's health window (see
/// `arch::park`): its address.
pub fn guard_idt() -> u64 {
    HANDOFF.start + GUARD_IDT_OFFSET
}

/// The guard's trigger, for the new kernel's panic handler and health check.
pub fn guard_trigger() -> u64 {
    park::guard_trigger_address(HANDOFF.start + PARK_STUB_OFFSET)
}

/// Ends a swap's health window with a failure: records `why` as the descriptor's
/// failure text (unless a failure was recorded already), then enters the guard, which
/// parks this CPU or, on the bootstrap processor, reverts the swap. Any CPU, any time
/// the window is armed (the panic handler calls it); never returns.
pub fn fail_window(cause: u32, why: &str) -> ! {
    x86_64::instructions::interrupts::disable();
    if undo().cause.load(Ordering::Acquire) == 0 {
        let failure = core::mem::offset_of!(Descriptor, failure);
        let len = why.len().min(159);
        let at = (HANDOFF.start + DESCRIPTOR_OFFSET + failure as u64) as *mut u8;
        for i in 0..160 {
            let b = if i < len { why.as_bytes()[i] } else { 0 };
            // SAFETY: the failure field is inside the descriptor page; written byte by
            // byte without the lock, which its holder may never release (a failed new
            // kernel); the only other writer of the field in the window is another
            // failing CPU, and the guard keeps the first cause.
            unsafe { at.add(i).write_volatile(b) };
        }
    }
    let entry = guard_trigger();
    // SAFETY: the guard's trigger is position-independent code in the hand-off region
    // that takes `edi` and never returns (it parks the CPU or reverts the swap).
    unsafe { core::arch::asm!("jmp {}", in(reg) entry, in("edi") cause, options(noreturn)) }
}

/// Joins a revert the guard has begun (`undo().reverting` set by another CPU's failure):
/// the bootstrap processor does it, any other CPU parks for it. For a CPU that found the
/// guard's park request at its checkpoint — parking there, on the park stub's IDT, would
/// swallow the guard's NMI, and a bootstrap processor parked that way never reverts. The
/// failure the revert reports is the one recorded first; this adds none.
pub fn join_revert() -> ! {
    x86_64::instructions::interrupts::disable();
    let entry = guard_trigger();
    // SAFETY: as in `fail_window`; cause 0 leaves the recorded cause as it is (the
    // trigger keeps the first).
    unsafe {
        core::arch::asm!("jmp {}", in(reg) entry, in("edi") updater::handoff::cause::NONE, options(noreturn))
    }
}

/// The undo log and the state of the health window.
///
/// Written only by the CPU coordinating a swap — the old kernel before it enters the
/// bootstrap, the bootstrap before and during the overlay, the new kernel's bootstrap
/// processor when it commits or the old one's when it resumes after a revert — while
/// the other CPUs run no code that writes it; the fields any CPU reads or writes at any
/// time are atomics.
pub fn undo() -> &'static Undo {
    // SAFETY: mapped for the kernel's life; every field that changes while other CPUs
    // run is an atomic.
    unsafe { &*((HANDOFF.start + UNDO_OFFSET) as *const Undo) }
}

/// The undo log, to fill (see [`undo`] for who may).
///
/// # Safety
/// - only the CPU coordinating a swap calls it, with every other CPU parked or not
///   touching the undo log, and no other reference from [`undo`] or this function is
///   used meanwhile for its plain fields.
pub unsafe fn undo_mut() -> &'static mut Undo {
    // SAFETY: caller contract.
    unsafe { &mut *((HANDOFF.start + UNDO_OFFSET) as *mut Undo) }
}
