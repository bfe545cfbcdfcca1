//! Global descriptor tables and task-state segments, one pair per CPU.
//!
//! Selector layout (relied upon by the park stub's own GDT in the hand-off region):
//! `0x08` kernel code, `0x10` kernel data, `0x18` TSS. The TSS carries one interrupt
//! stack (IST 0) for double faults, so a kernel stack overflow still prints a message.

use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

use super::MAX_CPUS;

/// IST slot used by the double-fault handler.
pub const DOUBLE_FAULT_IST_INDEX: u16 = 0;

/// Selectors every CPU's GDT has, at the same offsets.
#[derive(Debug, Clone, Copy)]
pub struct Selectors {
    pub code: SegmentSelector,
    pub data: SegmentSelector,
    pub tss: SegmentSelector,
}

static TSS: [Once<TaskStateSegment>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];
static GDT: [Once<(GlobalDescriptorTable, Selectors)>; MAX_CPUS] =
    [const { Once::new() }; MAX_CPUS];

/// Builds (once) and loads the GDT and TSS of the calling CPU, the `cpu`-th (below
/// [`MAX_CPUS`]), whose double-fault stack ends at `double_fault_stack_top`.
pub fn init_this_cpu(cpu: usize, double_fault_stack_top: VirtAddr) {
    let tss = TSS[cpu].call_once(|| {
        let mut tss = TaskStateSegment::new();
        tss.interrupt_stack_table[DOUBLE_FAULT_IST_INDEX as usize] = double_fault_stack_top;
        tss
    });
    let (gdt, selectors) = GDT[cpu].call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
        (gdt, Selectors { code, data, tss })
    });
    gdt.load();
    // The GDT lives in a static for as long as this kernel runs.
    // SAFETY: the selectors index descriptors of the GDT just loaded; the TSS descriptor
    // is not busy, since each CPU loads its own TSS once per kernel lifetime.
    unsafe {
        CS::set_reg(selectors.code);
        SS::set_reg(selectors.data);
        DS::set_reg(selectors.data);
        ES::set_reg(selectors.data);
        load_tss(selectors.tss);
    }
}
