//! The machine record: everything a new kernel inherits instead of discovering it.
//!
//! The page-table root stays in CR3 (the new kernel adopts the live tables), but the
//! record names it so the new kernel can check. Addresses are virtual unless named
//! `*_phys`.

use super::{kinds, RecordKind, SchemaVersion, StateRecord};
use crate::wire::{Reader, WireError, Writer};

/// Most CPUs a machine record describes.
pub const MAX_CPUS: usize = 16;
/// Most memory-map entries kept.
pub const MAX_MEMORY_REGIONS: usize = 48;

/// A physical memory region from the boot memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryRegion {
    pub start: u64,
    pub end: u64,
    /// 0 usable, 1 bootloader, 2 firmware/other.
    pub kind: u64,
}

/// How an ISA interrupt line is wired: global system interrupt and mode bits
/// (bit 0 active low, bit 1 level triggered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IsaLine {
    pub gsi: u32,
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1 {
    /// Number of kernels that have run on this machine, this one included (1 at first boot).
    pub boot_seq: u64,
    pub page_table_root_phys: u64,
    pub phys_offset: u64,
    pub rsdp_phys: u64,
    pub frame_bitmap_phys: u64,
    pub frame_bitmap_frames: u64,
    pub heap: (u64, u64),
    pub staging_buffer: (u64, u64),
    pub handoff: (u64, u64),
    /// Start of the image and the bytes mapped for it (page-aligned).
    pub image: (u64, u64),
    pub tsc_hz: u64,
    pub boot_tsc: u64,
    /// Local APIC timer counts per millisecond.
    pub apic_timer_per_ms: u32,
    pub lapic_phys: u64,
    pub lapic_virt: u64,
    pub ioapic_phys: u64,
    pub ioapic_virt: u64,
    pub ioapic_gsi_base: u32,
    pub com1: IsaLine,
    pub com2: IsaLine,
    /// Mailbox BAR: physical, virtual, length (0 length = no mailbox device).
    pub mailbox: (u64, u64, u64),
    /// Next free address in the device window.
    pub device_window_next: u64,
    /// APIC ids, by CPU index.
    pub cpu_apic_ids: [u32; MAX_CPUS],
    pub cpu_count: u32,
    pub memory_map: [MemoryRegion; MAX_MEMORY_REGIONS],
    pub memory_map_len: u32,
}

impl StateRecord for V1 {
    const KIND: RecordKind = kinds::MACHINE;
    const SCHEMA: SchemaVersion = SchemaVersion::new(1);
    // 16 u64 (sequence … boot_tsc), the APIC timer rate, 4 u64 (APICs), the GSI base,
    // two ISA lines, the mailbox triple, the device-window cursor, the CPU table and
    // the memory map.
    const SIZE: usize =
        8 * 16 + 4 + 8 * 4 + 4 + 16 + 24 + 8 + (4 * MAX_CPUS + 4) + (24 * MAX_MEMORY_REGIONS + 4);

    fn encode(&self, w: &mut Writer<'_>) {
        w.u64(self.boot_seq);
        w.u64(self.page_table_root_phys);
        w.u64(self.phys_offset);
        w.u64(self.rsdp_phys);
        w.u64(self.frame_bitmap_phys);
        w.u64(self.frame_bitmap_frames);
        for (a, b) in [self.heap, self.staging_buffer, self.handoff, self.image] {
            w.u64(a);
            w.u64(b);
        }
        w.u64(self.tsc_hz);
        w.u64(self.boot_tsc);
        w.u32(self.apic_timer_per_ms);
        w.u64(self.lapic_phys);
        w.u64(self.lapic_virt);
        w.u64(self.ioapic_phys);
        w.u64(self.ioapic_virt);
        w.u32(self.ioapic_gsi_base);
        for line in [self.com1, self.com2] {
            w.u32(line.gsi);
            w.u32(line.mode);
        }
        w.u64(self.mailbox.0);
        w.u64(self.mailbox.1);
        w.u64(self.mailbox.2);
        w.u64(self.device_window_next);
        for id in self.cpu_apic_ids {
            w.u32(id);
        }
        w.u32(self.cpu_count);
        for r in self.memory_map {
            w.u64(r.start);
            w.u64(r.end);
            w.u64(r.kind);
        }
        w.u32(self.memory_map_len);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let boot_seq = r.u64()?;
        let page_table_root_phys = r.u64()?;
        let phys_offset = r.u64()?;
        let rsdp_phys = r.u64()?;
        let frame_bitmap_phys = r.u64()?;
        let frame_bitmap_frames = r.u64()?;
        let heap = (r.u64()?, r.u64()?);
        let staging_buffer = (r.u64()?, r.u64()?);
        let handoff = (r.u64()?, r.u64()?);
        let image = (r.u64()?, r.u64()?);
        let tsc_hz = r.u64()?;
        let boot_tsc = r.u64()?;
        let apic_timer_per_ms = r.u32()?;
        let lapic_phys = r.u64()?;
        let lapic_virt = r.u64()?;
        let ioapic_phys = r.u64()?;
        let ioapic_virt = r.u64()?;
        let ioapic_gsi_base = r.u32()?;
        let com1 = IsaLine {
            gsi: r.u32()?,
            mode: r.u32()?,
        };
        let com2 = IsaLine {
            gsi: r.u32()?,
            mode: r.u32()?,
        };
        let mailbox = (r.u64()?, r.u64()?, r.u64()?);
        let device_window_next = r.u64()?;
        let mut cpu_apic_ids = [0u32; MAX_CPUS];
        for id in cpu_apic_ids.iter_mut() {
            *id = r.u32()?;
        }
        let cpu_count = r.u32()?;
        let mut memory_map = [MemoryRegion::default(); MAX_MEMORY_REGIONS];
        for m in memory_map.iter_mut() {
            *m = MemoryRegion {
                start: r.u64()?,
                end: r.u64()?,
                kind: r.u64()?,
            };
        }
        let memory_map_len = r.u32()?;
        Ok(V1 {
            boot_seq,
            page_table_root_phys,
            phys_offset,
            rsdp_phys,
            frame_bitmap_phys,
            frame_bitmap_frames,
            heap,
            staging_buffer,
            handoff,
            image,
            tsc_hz,
            boot_tsc,
            apic_timer_per_ms,
            lapic_phys,
            lapic_virt,
            ioapic_phys,
            ioapic_virt,
            ioapic_gsi_base,
            com1,
            com2,
            mailbox,
            device_window_next,
            cpu_apic_ids,
            cpu_count,
            memory_map,
            memory_map_len,
        })
    }
}

impl V1 {
    /// The APIC ids of the CPUs, by index.
    pub fn apic_ids(&self) -> &[u32] {
        &self.cpu_apic_ids[..(self.cpu_count as usize).min(MAX_CPUS)]
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
            let mut m = V1 {
                boot_seq: seed, page_table_root_phys: seed ^ 1, phys_offset: seed ^ 2, rsdp_phys: 3,
                frame_bitmap_phys: 4, frame_bitmap_frames: 5, heap: (6, 7), staging_buffer: (8, 9),
                handoff: (10, 11), image: (12, 13), tsc_hz: 14, boot_tsc: 15, apic_timer_per_ms: 16,
                lapic_phys: 17, lapic_virt: 18, ioapic_phys: 19, ioapic_virt: 20, ioapic_gsi_base: 21,
                com1: IsaLine { gsi: 4, mode: 0 }, com2: IsaLine { gsi: 3, mode: 3 }, mailbox: (22, 23, 24),
                device_window_next: 25, cpu_apic_ids: [0; MAX_CPUS], cpu_count: n,
                memory_map: [MemoryRegion::default(); MAX_MEMORY_REGIONS], memory_map_len: n,
            };
            for i in 0..n as usize {
                m.cpu_apic_ids[i] = i as u32 * 2;
                m.memory_map[i] = MemoryRegion { start: seed.wrapping_add(i as u64), end: seed.wrapping_mul(3), kind: i as u64 % 3 };
            }
            round_trip(&m);
        }
    }
}
