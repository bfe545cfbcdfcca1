//! The machine as this kernel inherited or discovered it: the machine record
//! (`updater::records::machine::V1`) kept live, plus the device window allocator.
//!
//! First boot fills the record from the boot information and the MADT
//! ([`init_first_boot`]); after a swap the new kernel adopts the record the old one
//! exported ([`adopt`]). Export takes a fresh copy with [`record`].

use alloc::vec::Vec;

use bootloader_api::info::MemoryRegionKind;
use bootloader_api::BootInfo;
use spin::Mutex;
use updater::records::machine::{
    IsaLine, MemoryRegion, SharedBar, Span, MAX_CPUS, MAX_MEMORY_REGIONS, V1 as MachineRecord,
};

use crate::arch::acpi::Platform;
use crate::arch::apic;
use crate::arch::ioapic::{IoApic, LineMode};
use crate::memory::layout::{DEVICES, HANDOFF, HEAP, KERNEL_IMAGE, STAGING_BUFFER};
use crate::memory::{self, paging::MapError, MMIO};
use crate::{image, time};

static MACHINE: Mutex<Option<MachineRecord>> = Mutex::new(None);

fn span(start: u64, len: u64) -> Span {
    Span { start, len }
}

fn mode_bits(mode: LineMode) -> u32 {
    mode.active_low as u32 | (mode.level_triggered as u32) << 1
}

/// Line mode from the record's bits.
pub fn line_mode(line: IsaLine) -> LineMode {
    LineMode {
        active_low: line.mode & 1 != 0,
        level_triggered: line.mode & 2 != 0,
    }
}

/// Maps `len` bytes of device registers at physical `phys` into the device window
/// (uncached).
pub fn map_device(phys: u64, len: u64) -> Result<u64, MapError> {
    map_into_window(phys, len, MMIO)
}

/// Maps `len` bytes of memory shared with the host (a RAM-backed BAR: cacheable).
pub fn map_shared(phys: u64, len: u64) -> Result<u64, MapError> {
    let virt = map_into_window(phys, len, memory::DATA)?;
    update(|m| m.mailbox = SharedBar { phys, virt, len });
    Ok(virt)
}

fn map_into_window(
    phys: u64,
    len: u64,
    flags: x86_64::structures::paging::PageTableFlags,
) -> Result<u64, MapError> {
    let mut guard = MACHINE.lock();
    let m = guard.as_mut().expect("machine record exists");
    let virt = m.device_window_next;
    let offset = phys & 0xfff;
    let size = (len + offset).next_multiple_of(4096);
    // SAFETY: the range is device memory reported by firmware or PCI, mapped uncached
    // into the device window, which no other code uses.
    memory::with_tables(|t| unsafe { t.map_physical(virt, phys - offset, size, flags) })?;
    m.device_window_next += size + 4096; // leave a guard page between devices
    assert!(
        m.device_window_next < DEVICES.end(),
        "device window exhausted"
    );
    Ok(virt + offset)
}

/// First boot: the record from the boot information and the MADT; maps the local APIC
/// and the first I/O APIC.
pub fn init_first_boot(boot_info: &BootInfo, platform: &Platform) -> Result<(), MapError> {
    let mut memory_map = [MemoryRegion::default(); MAX_MEMORY_REGIONS];
    let mut n = 0;
    for r in boot_info.memory_regions.iter().take(MAX_MEMORY_REGIONS) {
        let kind = match r.kind {
            MemoryRegionKind::Usable => 0,
            MemoryRegionKind::Bootloader => 1,
            _ => 2,
        };
        memory_map[n] = MemoryRegion {
            start: r.start,
            end: r.end,
            kind,
        };
        n += 1;
    }
    let mut cpu_apic_ids = [0u32; MAX_CPUS];
    let cpus: Vec<u32> = platform
        .processors
        .iter()
        .take(MAX_CPUS)
        .map(|p| p.apic_id)
        .collect();
    cpu_apic_ids[..cpus.len()].copy_from_slice(&cpus);
    let bitmap = memory::frame_bitmap();
    let io = platform.io_apics.first().copied();
    let com1 = platform.isa_route(4);
    let com2 = platform.isa_route(3);
    *MACHINE.lock() = Some(MachineRecord {
        boot_seq: 1,
        page_table_root_phys: memory::with_tables(|t| t.root()),
        phys_offset: memory::phys_offset(),
        rsdp_phys: boot_info.rsdp_addr.into_option().unwrap_or(0),
        frame_bitmap_phys: bitmap.phys,
        frame_bitmap_frames: bitmap.frames,
        heap: span(HEAP.start, HEAP.len),
        staging_buffer: span(STAGING_BUFFER.start, STAGING_BUFFER.len),
        handoff: span(HANDOFF.start, HANDOFF.len),
        image: span(KERNEL_IMAGE.start, image::span()),
        tsc_hz: time::tsc_hz(),
        boot_tsc: time::boot_tsc(),
        apic_timer_per_ms: 0,
        lapic_phys: platform.local_apic_phys,
        lapic_virt: 0,
        ioapic_phys: io.map_or(0, |i| i.phys),
        ioapic_virt: 0,
        ioapic_gsi_base: io.map_or(0, |i| i.gsi_base),
        com1: IsaLine {
            gsi: com1.gsi,
            mode: mode_bits(com1.mode),
        },
        com2: IsaLine {
            gsi: com2.gsi,
            mode: mode_bits(com2.mode),
        },
        mailbox: SharedBar::default(),
        device_window_next: DEVICES.start,
        cpu_apic_ids,
        cpu_count: cpus.len() as u32,
        memory_map,
        memory_map_len: n as u32,
    });
    let lapic_virt = map_device(platform.local_apic_phys, 4096)?;
    apic::set_base(lapic_virt);
    let ioapic_virt = match io {
        Some(io) => map_device(io.phys, 4096)?,
        None => 0,
    };
    update(|m| {
        m.lapic_virt = lapic_virt;
        m.ioapic_virt = ioapic_virt;
    });
    Ok(())
}

/// Adopts the record the previous kernel exported (after a swap), one kernel later.
pub fn adopt(mut record: MachineRecord) {
    record.boot_seq += 1;
    apic::set_base(record.lapic_virt);
    *MACHINE.lock() = Some(record);
}

/// Changes the live record.
pub fn update(f: impl FnOnce(&mut MachineRecord)) {
    f(MACHINE.lock().as_mut().expect("machine record exists"));
}

/// A copy of the live record, with the fields that change at run time refreshed.
pub fn record() -> MachineRecord {
    let bitmap = memory::frame_bitmap();
    let mut m = MACHINE.lock().clone().expect("machine record exists");
    m.frame_bitmap_phys = bitmap.phys;
    m.frame_bitmap_frames = bitmap.frames;
    m
}

/// Which kernel this is, counting from 1 at first boot.
pub fn boot_seq() -> u64 {
    MACHINE.lock().as_ref().map_or(1, |m| m.boot_seq)
}

/// The first I/O APIC, if the machine has one.
pub fn ioapic() -> Option<IoApic> {
    let m = MACHINE.lock();
    let m = m.as_ref()?;
    // SAFETY: `ioapic_virt` is the uncached mapping made at first boot of the I/O APIC
    // the MADT reported, with its GSI base.
    (m.ioapic_virt != 0).then(|| unsafe { IoApic::new(m.ioapic_virt, m.ioapic_gsi_base) })
}
