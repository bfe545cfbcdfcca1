//! Resume: the new kernel's entry after the overlay — the swap's mirror of first boot.
//!
//! `hk_resume` is entered from the overlay on the hand-off stack; it moves to the BSP's
//! own stack and runs [`resume_main`], which follows `boot::kernel_main`'s order but
//! adopts instead of discovering: the machine record replaces the boot information and
//! the MADT, the hand-off records replace the demo workload. It releases the parked
//! CPUs into [`hk_ap_resume`] as soon as their per-CPU state exists, imports the tasks,
//! meets the initialisation requirements, and everyone schedules again.

use core::sync::atomic::Ordering;

use updater::handoff::{Descriptor, SwapState};
use updater::recordset::RecordSet;

use crate::arch::tsc;
use crate::cpu::{self, CpuId};
use crate::memory::{self, frames::FrameBitmap, layout::stack_top};
use crate::update::{import, patch_window};
use crate::{
    boot, console, drivers, handoff_region, interrupts as routing, machine, quiesce, sched, smp,
    time,
};

core::arch::global_asm!(
    r#"
    .global hk_resume
hk_resume:
    movabs rsp, {stack}
    xor ebp, ebp
    push 0
    jmp {main}
    "#,
    stack = const stack_top(0),
    main = sym resume_main,
);

/// The new kernel's main line after a swap (BSP, interrupts off, on its own stack).
/// The overlay passes the hand-off descriptor; this kernel reaches it through its own
/// guard (its lock, in this image's statics, is free).
extern "C" fn resume_main(_descriptor: *mut Descriptor) -> ! {
    let mut guard = handoff_region::descriptor();
    let d = &mut *guard;
    // A revert: this image is the *old* one, back because the new kernel failed inside
    // its health window — or this very image, back because a hotpatch's new code failed
    // inside its window. It takes its own exported records again (no conversion).
    let undo = handoff_region::undo();
    let reverted = undo.reverting.load(Ordering::Acquire) != 0;
    // Faults a test injects into the new kernel (never into the old one after a revert).
    let inject = if reverted { 0 } else { d.inject };
    if inject & updater::handoff::inject::FAIL_FIRST_ROUND != 0 {
        sched::health::fail_first_step();
    }
    if reverted {
        d.converted = d.exported;
        // The window is over before any other CPU runs this kernel: they load its own
        // IDT, and an NMI is an NMI again (not a request to revert).
        crate::update::window::note_reverted();
    }
    // The half the swap left its records in is this kernel's live records now.
    let at = d.converted.at as usize;
    let records = handoff_region::adopt_half(d.record_half);
    // The machine record first: it says where the heap and the frames are.
    let mut m = import::machine(&converted_set(records, at));

    console::init(log::LevelFilter::Info);
    time::init(m.tsc_hz, m.boot_tsc);
    // SAFETY: the machine record describes the live machine: the old kernel exported
    // it with every CPU stopped, and nothing has allocated frames since.
    unsafe {
        memory::adopt(
            FrameBitmap {
                phys: m.frame_bitmap_phys,
                frames: m.frame_bitmap_frames,
            },
            m.phys_offset,
        )
    };
    if reverted && patch_window::reverting_patch() {
        // A hotpatch's window, taken back: the failed patch's jumps go before anything
        // else could run its code.
        patch_window::revert_sites();
    }
    // This image's heap, over what the old kernel mapped (it mapped a larger one at
    // staging; the tail of a smaller one is freed here).
    m.heap = memory::adopt_heap(m.heap);
    if reverted {
        // The same kernel again: its boot sequence does not move on.
        m.boot_seq = m.boot_seq.saturating_sub(1);
    }
    machine::adopt(m);
    if reverted {
        // Its pristine pages are its own again (the undo log kept them).
        let offset = memory::phys_offset();
        let own = &undo.pristine[..(undo.pristine_count as usize).min(undo.pristine.len())];
        crate::image::adopt_pristine(own.iter().map(|p| (p.page, p.copy - offset)));
    } else if undo.armed.load(Ordering::Acquire) != 0 {
        // The window is open: count what the health check waits for (the update service
        // says so, `window::say_open`).
        sched::health::watch();
    }
    // With a heap: everything else the set carries, before the queues adopt the tasks.
    let carried = import::read(&converted_set(records, at));
    if reverted && patch_window::reverting_patch() {
        // The patches applied before the failed one are still in the text.
        patch_window::after_revert(&carried.patch_sites);
    }
    boot::register_hooks();
    smp::register_cpus(false).expect("CPU stacks exist after a swap");
    smp::init_this_cpu(cpu::get(CpuId::BSP).expect("BSP registered"));
    handoff_region::fill_park_slots();

    // Release the parked CPUs now: each sets itself up in this kernel while the BSP
    // imports the tasks (they find their queues filling, or idle until woken).
    let control = handoff_region::park_control();
    let generation = control.request.load(Ordering::Acquire);
    control.resume_entry.store(
        hk_ap_resume as extern "C" fn(u64) -> ! as usize as u64,
        Ordering::Relaxed,
    );
    control.release.store(generation, Ordering::Release);
    if inject & updater::handoff::inject::PARK_IN_RESUME != 0 {
        park_at_once();
    }
    quiesce::wake_parked(cpu::count() - 1);
    d.clock.all_released.store(tsc::read(), Ordering::Relaxed);

    drivers::doorbell::init();
    routing::route_isa_lines();
    drivers::mailbox::adopt();
    import::channels(carried.channels);
    let adopted = import::adopt_tasks(records, at, &carried.queues);
    if reverted {
        crate::history::adopt_as_it_was(carried.history);
    } else {
        crate::history::adopt(carried.history, 0, d.request_seq);
    }
    import::meet_init_requirements(d.init_requirements);
    if inject & updater::handoff::inject::FAIL_IN_RESUME != 0 {
        panic!(
            "injected failure in the new kernel's resume, after the overlay (test fault injection)"
        );
    }
    d.tasks_after = sched::task_count() as u32;
    import::note_adopted(adopted);
    // Every task is on a queue: wake the CPUs that idled while the queues filled.
    quiesce::wake_parked(cpu::count() - 1);
    d.clock.reinitialised.store(tsc::read(), Ordering::Relaxed);
    d.state.store(SwapState::Resumed as u32, Ordering::Release);
    let self_test = d.request_seq == crate::selftest::SELF_SWAP_SEQ;
    drop(guard);
    x86_64::instructions::interrupts::enable();
    if self_test {
        // Let the BSP's own loop mark it scheduling, then finish the self-test.
        handoff_region::park_control().slots[0]
            .resumed_tsc
            .store(tsc::read(), Ordering::Relaxed);
        wait_all_scheduling();
        crate::selftest::after_self_swap();
    }
    sched::run()
}

/// Fault injection (`inject::PARK_IN_RESUME`): parks the other CPUs and releases them at
/// once, while they may still be in the park stub from the swap's release — the next
/// park must not send them back into the old kernel (`quiesce::park_others`).
fn park_at_once() {
    match quiesce::park_others(time::Duration::from_secs(2), None) {
        Ok(parked) => {
            let cpus = parked.cpus;
            quiesce::release(parked);
            log::info!("injected park in the resume: {cpus} CPUs parked and released");
        }
        Err(e) => log::warn!("injected park in the resume: {e}"),
    }
}

/// The converted set in the adopted half (the bootstrap checked it).
fn converted_set(records: &[u8], at: usize) -> RecordSet<'_> {
    match RecordSet::parse(records, at) {
        Ok(set) => set,
        Err(e) => panic!("converted records (checked by the bootstrap): {e}"),
    }
}

/// Where released application processors enter this kernel (from the park stub, on
/// their own stack, interrupts off).
#[unsafe(no_mangle)]
pub extern "C" fn hk_ap_resume(index: u64) -> ! {
    let me = cpu::get(CpuId::new(index as usize))
        .expect("AP registered by resume_main before the release");
    smp::init_this_cpu(me);
    x86_64::instructions::interrupts::enable();
    sched::run()
}

/// Waits (bounded) until every AP has entered its scheduler loop again.
fn wait_all_scheduling() {
    let deadline = time::now() + time::Duration::from_secs(2);
    while time::now() < deadline
        && cpu::all().any(|c| c.id != CpuId::BSP && !c.online.load(Ordering::Acquire))
    {
        core::hint::spin_loop();
    }
}
