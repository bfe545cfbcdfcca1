//! Bringing CPUs up: registering them, setting up each one's tables, APIC and timer, and
//! starting the application processors (first boot) or taking them back from the park
//! stub (after a swap, see `update::resume`).

use core::sync::atomic::Ordering;

use crate::arch::{self, apic, gdt, idt, idt::vector};
use crate::cpu::{self, Cpu, CpuId};
use crate::memory::layout::{
    ist_top, stack_slot, stack_top, AP_STACK_SIZE, IST_OFFSET, IST_SIZE, KIB,
};
use crate::memory::{self, paging::MapError, DATA};
use crate::sched;
use crate::{handoff_region, machine};

/// Timer ticks per second on every CPU.
pub const TICK_HZ: u64 = 1000;

/// Registers every CPU of the machine record; at first boot also maps AP stacks and
/// every CPU's double-fault stack (after a swap they exist already).
pub fn register_cpus(first_boot: bool) -> Result<(), MapError> {
    let m = machine::record();
    for (index, &apic_id) in m.apic_ids().iter().enumerate() {
        let id = CpuId::new(index);
        if first_boot {
            let slot = stack_slot(index);
            memory::with_tables(|t| -> Result<(), MapError> {
                if index != 0 {
                    t.map_fresh(slot.start + 4 * KIB, AP_STACK_SIZE, DATA)?;
                }
                t.map_fresh(slot.start + IST_OFFSET, IST_SIZE, DATA)
            })?;
        }
        cpu::register(id, apic_id);
    }
    Ok(())
}

/// Sets up the calling CPU: per-CPU pointer, GDT/TSS, IDT, local APIC and its timer.
pub fn init_this_cpu(me: &'static Cpu) {
    cpu::install(me);
    gdt::init_this_cpu(me.id.index(), x86_64::VirtAddr::new(ist_top(me.id.index())));
    if handoff_region::undo().armed.load(Ordering::Acquire) != 0 {
        // A swap's health window is open: exceptions go to the guard, which can take the
        // swap back (`arch::park`).
        // SAFETY: the guard IDT is the hand-off region's; its device gates are rewritten
        // with the same values by every CPU that loads it.
        unsafe { idt::load_guarded(me.id.index(), handoff_region::guard_idt()) };
    } else {
        idt::load(me.id.index());
    }
    apic::enable_this_cpu(vector::SPURIOUS, vector::APIC_ERROR);
    // A kernel entered after a revert may find a handler the guard cut short unacknowledged.
    apic::clear_in_service();
    let per_ms = machine::record().apic_timer_per_ms;
    apic::start_periodic_timer(vector::TIMER, (per_ms as u64 * 1000 / TICK_HZ) as u32);
}

/// Measures the APIC timer against the TSC (first boot, BSP, APIC enabled).
pub fn calibrate_timer() {
    let ten_ms = crate::time::duration_to_ticks(crate::time::Duration::from_millis(10));
    let per_ms = apic::measure_timer(ten_ms) / 10;
    machine::update(|m| m.apic_timer_per_ms = per_ms);
    log::debug!("APIC timer: {per_ms} counts/ms");
}

/// Starts every AP (first boot). An AP that does not respond is reported and left out.
pub fn start_application_processors() {
    let offset = memory::phys_offset();
    // SAFETY: memory::init_first_boot reserved and identity-mapped the trampoline page.
    if let Err(e) = unsafe { arch::smp::install_trampoline(offset) } {
        log::error!("cannot start APs: {e}");
        return;
    }
    for c in cpu::all().filter(|c| c.id != CpuId::BSP) {
        let start = arch::smp::ApStart {
            apic_id: c.apic_id,
            stack_top: stack_top(c.id.index()),
            tsc_per_ms: crate::time::tsc_hz() / 1000,
            arg: c.id.index() as u64,
        };
        // SAFETY: the trampoline is installed; `ap_main` never returns and signals first;
        // the stack slot was mapped by `register_cpus` and belongs to this AP.
        match unsafe { arch::smp::start_ap(offset, start, ap_main) } {
            Ok(()) => {
                let deadline = crate::time::now() + crate::time::Duration::from_secs(2);
                while !c.online.load(Ordering::Acquire) && crate::time::now() < deadline {
                    core::hint::spin_loop();
                }
                if !c.online.load(Ordering::Acquire) {
                    log::error!("{} started but did not reach its scheduler", c.id);
                }
            }
            Err(e) => log::error!("{e}"),
        }
    }
}

/// Entry of an application processor (from the trampoline at first boot).
extern "C" fn ap_main(index: u64) -> ! {
    arch::smp::signal_started();
    let me = cpu::get(CpuId::new(index as usize)).expect("AP was registered before it was started");
    init_this_cpu(me);
    log::info!("cpu {} online (apic {})", me.id.index(), me.apic_id);
    x86_64::instructions::interrupts::enable();
    sched::run()
}
