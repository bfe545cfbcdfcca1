//! The hand-off region, as this kernel reaches it: typed views of the descriptor, the
//! park control block and the record areas (layout in `updater::handoff`).
//!
//! The descriptor is written only by the CPU coordinating an update (the BSP), while
//! every other CPU is parked or not yet interested, so [`descriptor`] hands out a
//! mutable view under a lock. The park control block is all atomics and is shared.

use spin::{Mutex, MutexGuard};
use updater::handoff::{
    Descriptor, ParkControl, DESCRIPTOR_MAGIC, DESCRIPTOR_OFFSET, HANDOFF_ABI_VERSION,
    PARK_CONTROL_OFFSET, PARK_GDT_OFFSET, PARK_IDT_OFFSET, PARK_STUB_OFFSET, REGION_SIZE,
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

/// Exclusive access to the descriptor.
pub struct DescriptorGuard {
    _lock: MutexGuard<'static, ()>,
}

impl core::ops::Deref for DescriptorGuard {
    type Target = Descriptor;
    fn deref(&self) -> &Descriptor {
        // Descriptor is plain data, valid for any bit pattern of its integer fields.
        // SAFETY: its page is mapped for the kernel's life and initialised at first boot;
        // the lock excludes other mutable views.
        unsafe { &*((HANDOFF.start + DESCRIPTOR_OFFSET) as *const Descriptor) }
    }
}

impl core::ops::DerefMut for DescriptorGuard {
    fn deref_mut(&mut self) -> &mut Descriptor {
        // SAFETY: as in `deref`; the lock makes this view unique.
        unsafe { &mut *((HANDOFF.start + DESCRIPTOR_OFFSET) as *mut Descriptor) }
    }
}

/// The update descriptor (exclusive).
pub fn descriptor() -> DescriptorGuard {
    DescriptorGuard {
        _lock: DESCRIPTOR_LOCK.lock(),
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

/// A byte area of the region (`offset`, `len` from `updater::handoff`).
///
/// # Safety
/// - no other live reference may overlap the area (the coordinator owns the record areas
///   during an update).
pub unsafe fn area(offset: u64, len: u64) -> &'static mut [u8] {
    assert!(offset + len <= REGION_SIZE);
    // SAFETY: inside the mapped region (checked); exclusivity is the caller's contract.
    unsafe { core::slice::from_raw_parts_mut((HANDOFF.start + offset) as *mut u8, len as usize) }
}

/// First boot: write the descriptor header, install the park stub and its tables, and
/// fill every CPU's park slot.
pub fn init_first_boot() {
    {
        let mut d = descriptor();
        d.magic = DESCRIPTOR_MAGIC;
        d.abi_version = HANDOFF_ABI_VERSION;
    }
    // SAFETY: the control block page is mapped writable and no CPU is parked yet.
    let control = unsafe { &mut *((HANDOFF.start + PARK_CONTROL_OFFSET) as *mut ParkControl) };
    control
        .ignore_cpu
        .store(u32::MAX, core::sync::atomic::Ordering::Relaxed);
    let stub = HANDOFF.start + PARK_STUB_OFFSET;
    // SAFETY: the three pages are in the hand-off region, mapped writable, and no CPU is
    // parked during first boot.
    unsafe {
        park::install(
            stub,
            HANDOFF.start + PARK_GDT_OFFSET,
            HANDOFF.start + PARK_IDT_OFFSET,
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
    }
}
