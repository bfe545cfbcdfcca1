//! The firmware's view of the machine, from the ACPI MADT (through the `acpi` crate):
//! which processors exist, where the local and I/O APICs are, and how ISA interrupts
//! are wired to global system interrupts.
//!
//! ACPI tables are read through the bootloader's physical-memory mapping; nothing is
//! mapped or unmapped. The result is copied into plain owned types, so the caller keeps
//! no reference into firmware memory.

use alloc::vec::Vec;
use core::ptr::NonNull;

use acpi::platform::interrupt::{Polarity, TriggerMode};
use acpi::platform::ProcessorState;
use acpi::InterruptModel;
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};

use super::ioapic::LineMode;

/// A processor the firmware reports as usable.
#[derive(Debug, Clone, Copy)]
pub struct ProcessorDesc {
    pub apic_id: u32,
}

/// An I/O APIC.
#[derive(Debug, Clone, Copy)]
pub struct IoApicDesc {
    pub phys: u64,
    pub gsi_base: u32,
}

/// An ISA interrupt's global system interrupt and line mode.
#[derive(Debug, Clone, Copy)]
pub struct IsaRoute {
    pub gsi: u32,
    pub mode: LineMode,
}

/// Everything the kernel takes from the MADT.
#[derive(Debug, Clone)]
pub struct Platform {
    /// The bootstrap processor first, then application processors in firmware order.
    pub processors: Vec<ProcessorDesc>,
    pub local_apic_phys: u64,
    pub io_apics: Vec<IoApicDesc>,
    overrides: Vec<(u8, IsaRoute)>,
}

impl Platform {
    /// Where ISA `irq` arrives: its override if the MADT has one, else the identity GSI.
    pub fn isa_route(&self, irq: u8) -> IsaRoute {
        self.overrides
            .iter()
            .find(|(source, _)| *source == irq)
            .map(|(_, route)| *route)
            .unwrap_or(IsaRoute {
                gsi: irq as u32,
                mode: LineMode::ISA,
            })
    }
}

/// Why the platform could not be read.
#[derive(Debug)]
pub enum PlatformError {
    /// The bootloader found no RSDP.
    NoRsdp,
    /// The `acpi` crate refused the tables.
    Acpi(acpi::AcpiError),
    /// The MADT describes no APIC (only legacy PICs).
    NoApic,
}

impl core::fmt::Display for PlatformError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PlatformError::NoRsdp => write!(f, "the bootloader reported no ACPI RSDP"),
            PlatformError::Acpi(e) => write!(f, "ACPI tables unreadable: {e:?}"),
            PlatformError::NoApic => write!(f, "the MADT describes no local APIC"),
        }
    }
}

#[derive(Clone)]
struct PhysMap {
    offset: u64,
}

impl AcpiHandler for PhysMap {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let virt = (self.offset + physical_address as u64) as *mut T;
        // SAFETY: all physical memory is mapped at `offset` (bootloader config), so the
        // region is readable there for as long as the kernel runs.
        unsafe {
            PhysicalMapping::new(
                physical_address,
                NonNull::new(virt).expect("physical mapping is never null"),
                size,
                size,
                self.clone(),
            )
        }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// Reads the MADT found through the RSDP at physical `rsdp`.
pub fn read_platform(rsdp: Option<u64>, phys_offset: u64) -> Result<Platform, PlatformError> {
    let rsdp = rsdp.ok_or(PlatformError::NoRsdp)?;
    // SAFETY: the bootloader found a valid RSDP at this physical address, and the
    // handler maps physical memory through the bootloader's complete mapping.
    let tables = unsafe {
        AcpiTables::from_rsdp(
            PhysMap {
                offset: phys_offset,
            },
            rsdp as usize,
        )
    }
    .map_err(PlatformError::Acpi)?;
    let info = tables.platform_info().map_err(PlatformError::Acpi)?;
    let apic = match info.interrupt_model {
        InterruptModel::Apic(apic) => apic,
        _ => return Err(PlatformError::NoApic),
    };
    let mut processors = Vec::new();
    if let Some(p) = info.processor_info {
        processors.push(ProcessorDesc {
            apic_id: p.boot_processor.local_apic_id,
        });
        for ap in p.application_processors.iter() {
            if ap.state != ProcessorState::Disabled {
                processors.push(ProcessorDesc {
                    apic_id: ap.local_apic_id,
                });
            }
        }
    }
    let io_apics = apic
        .io_apics
        .iter()
        .map(|io| IoApicDesc {
            phys: io.address as u64,
            gsi_base: io.global_system_interrupt_base,
        })
        .collect();
    let overrides = apic
        .interrupt_source_overrides
        .iter()
        .map(|o| {
            let mode = LineMode {
                active_low: matches!(o.polarity, Polarity::ActiveLow),
                level_triggered: matches!(o.trigger_mode, TriggerMode::Level),
            };
            (
                o.isa_source,
                IsaRoute {
                    gsi: o.global_system_interrupt,
                    mode,
                },
            )
        })
        .collect();
    Ok(Platform {
        processors,
        local_apic_phys: apic.local_apic_address,
        io_apics,
        overrides,
    })
}
