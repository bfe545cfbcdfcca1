//! The machine record: everything a new kernel inherits instead of discovering it.
//!
//! The page-table root stays in CR3 (the new kernel adopts the live tables), but the
//! record names it so the new kernel can check. Addresses are virtual unless named
//! `*_phys`.

use super::kinds;

/// Most CPUs a machine record describes.
pub const MAX_CPUS: usize = 16;
/// Most memory-map entries kept.
pub const MAX_MEMORY_REGIONS: usize = 48;

/// A physical memory region from the boot memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, crate::Record)]
#[repr(C)]
pub struct MemoryRegion {
    pub start: u64,
    pub end: u64,
    /// 0 usable, 1 bootloader, 2 firmware/other.
    pub kind: u64,
}

/// How an ISA interrupt line is wired: global system interrupt and mode bits
/// (bit 0 active low, bit 1 level triggered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, crate::Record)]
#[repr(C)]
pub struct IsaLine {
    pub gsi: u32,
    pub mode: u32,
}

/// A virtual range: start and length in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, crate::Record)]
#[repr(C)]
pub struct Span {
    pub start: u64,
    pub len: u64,
}

/// A RAM-backed device BAR mapped into the device window (length 0: no device).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, crate::Record)]
#[repr(C)]
pub struct SharedBar {
    pub phys: u64,
    pub virt: u64,
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, crate::Record)]
#[record(kind = kinds::MACHINE, version = 1)]
#[repr(C)]
pub struct V1 {
    /// Number of kernels that have run on this machine, this one included (1 at first boot).
    pub boot_seq: u64,
    pub page_table_root_phys: u64,
    pub phys_offset: u64,
    pub rsdp_phys: u64,
    pub frame_bitmap_phys: u64,
    pub frame_bitmap_frames: u64,
    pub heap: Span,
    pub staging_buffer: Span,
    pub handoff: Span,
    /// The image base and the bytes mapped for it (page-aligned).
    pub image: Span,
    pub tsc_hz: u64,
    pub boot_tsc: u64,
    /// Local APIC timer counts per millisecond.
    pub apic_timer_per_ms: u32,
    pub ioapic_gsi_base: u32,
    pub lapic_phys: u64,
    pub lapic_virt: u64,
    pub ioapic_phys: u64,
    pub ioapic_virt: u64,
    pub com1: IsaLine,
    pub com2: IsaLine,
    /// The mailbox's shared memory.
    pub mailbox: SharedBar,
    /// Next free address in the device window.
    pub device_window_next: u64,
    /// APIC ids, by CPU index.
    pub cpu_apic_ids: [u32; MAX_CPUS],
    pub cpu_count: u32,
    pub memory_map_len: u32,
    pub memory_map: [MemoryRegion; MAX_MEMORY_REGIONS],
}

impl V1 {
    /// The APIC ids of the CPUs, by index.
    pub fn apic_ids(&self) -> &[u32] {
        &self.cpu_apic_ids[..(self.cpu_count as usize).min(MAX_CPUS)]
    }

    /// The regions of the memory map in use.
    pub fn memory_regions(&self) -> &[MemoryRegion] {
        &self.memory_map[..(self.memory_map_len as usize).min(MAX_MEMORY_REGIONS)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::testing::round_trip;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn encoding_round_trips(seed: u64, n in 0u32..16) {
            let span = |a: u64| Span { start: a, len: a + 1 };
            let mut m = V1 {
                boot_seq: seed, page_table_root_phys: seed ^ 1, phys_offset: seed ^ 2, rsdp_phys: 3,
                frame_bitmap_phys: 4, frame_bitmap_frames: 5, heap: span(6), staging_buffer: span(8),
                handoff: span(10), image: span(12), tsc_hz: 14, boot_tsc: 15, apic_timer_per_ms: 16,
                lapic_phys: 17, lapic_virt: 18, ioapic_phys: 19, ioapic_virt: 20, ioapic_gsi_base: 21,
                com1: IsaLine { gsi: 4, mode: 0 }, com2: IsaLine { gsi: 3, mode: 3 },
                mailbox: SharedBar { phys: 22, virt: 23, len: 24 },
                device_window_next: 25, cpu_apic_ids: [0; MAX_CPUS], cpu_count: n,
                memory_map: [MemoryRegion::default(); MAX_MEMORY_REGIONS], memory_map_len: n,
            };
            for i in 0..n as usize {
                m.cpu_apic_ids[i] = i as u32 * 2;
                m.memory_map[i] = MemoryRegion { start: seed.wrapping_add(i as u64), end: seed.wrapping_mul(3), kind: i as u64 % 3 };
            }
            round_trip(&m);
            prop_assert_eq!(m.apic_ids().len(), n as usize);
        }
    }
}
