//! First boot: the bootloader's configuration and the kernel's init sequence.
//!
//! `kernel_main` reads as the list of steps; the resume path of a swap (`resume.rs`)
//! is its mirror and follows the same order. Both register the hooks through which the
//! lower layers call up ([`register_hooks`]): interrupt handlers, the coordinator's
//! checkpoint work, and the update service's step.
#![deny(unsafe_code)]

use bootloader_api::config::{BootloaderConfig, Mapping};
use bootloader_api::BootInfo;
use x86_64::instructions::interrupts;

use crate::bootargs::{self, Mode};
use crate::memory::layout::{BOOTLOADER_DYNAMIC, BSP_STACK_SIZE, KERNEL_IMAGE, PHYS_MAP, STACKS};
use crate::{
    arch, console, cpu, drivers, handoff_region, interrupts as routing, irq, machine, memory,
    sched, selftest, smp, tasks, time, update,
};

/// Fixed mappings, so that every address a swap relies on is known in advance; the
/// bootloader's own dynamic mappings are confined below the kernel's top 512 GiB, which
/// is the reserved growth window (see `memory::layout`).
pub static BOOTLOADER_CONFIG: BootloaderConfig = {
    let mut config = BootloaderConfig::new_default();
    config.mappings.kernel_base = Mapping::FixedAddress(KERNEL_IMAGE.start);
    config.mappings.physical_memory = Some(Mapping::FixedAddress(PHYS_MAP));
    config.mappings.kernel_stack = Mapping::FixedAddress(STACKS);
    config.mappings.dynamic_range_start = Some(BOOTLOADER_DYNAMIC.start);
    config.mappings.dynamic_range_end = Some(BOOTLOADER_DYNAMIC.start + BOOTLOADER_DYNAMIC.len - 1);
    config.kernel_stack_size = BSP_STACK_SIZE;
    config
};

fn must<T, E: core::fmt::Display>(result: Result<T, E>, step: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("boot step `{step}` failed: {e}"),
    }
}

/// The upward calls of the lower layers, registered before interrupts are enabled.
pub fn register_hooks() {
    irq::register();
    sched::set_coordinator(update::jobs::run_pending, update::jobs::pending);
    tasks::update_service::serve_with(update::requests::poll);
}

/// The kernel's entry at first boot (interrupts are disabled).
pub fn kernel_main(boot_info: &'static mut BootInfo) -> ! {
    let boot_tsc = arch::tsc::read();
    console::init(log::LevelFilter::Info);
    time::init(arch::tsc::calibrate(10), boot_tsc);
    let args = bootargs::read();
    console::set_level(args.log);
    log::info!(
        "hotkernel {} booting (TSC {} MHz)",
        crate::identity::describe(),
        time::tsc_hz() / 1_000_000
    );

    must(memory::init_first_boot(boot_info), "memory");
    update::selfswap::remember_file(boot_info.kernel_addr, boot_info.kernel_len);
    // Before anything the heap holds is in a static: the revert of a failed swap from
    // this image starts it again from these.
    if crate::image::keep_pristine_pages() == 0 {
        log::warn!("no memory for this image's pristine pages: swaps from it cannot be reverted");
    }
    arch::pic::disable();
    let rsdp = boot_info.rsdp_addr.into_option();
    let platform = must(
        arch::acpi::read_platform(rsdp, memory::phys_offset()),
        "ACPI",
    );
    must(
        machine::init_first_boot(boot_info, &platform),
        "device mappings",
    );
    register_hooks();
    must(smp::register_cpus(true), "CPU stacks");
    smp::calibrate_timer();
    smp::init_this_cpu(cpu::get(cpu::CpuId::BSP).expect("BSP registered"));
    drivers::doorbell::init();
    routing::route_isa_lines();
    must(drivers::mailbox::discover(), "mailbox");
    handoff_region::init_first_boot();
    crate::history::init_first_boot();
    crate::hotpatch::cold::apply_from_ramdisk(boot_info);
    log::info!("cpu 0 online (apic {})", arch::apic::id());
    smp::start_application_processors();
    let workload = tasks::workload::Workload {
        tasks: args.tasks,
        pace_us: args.pace_us,
    };
    for t in tasks::workload::demo(workload, cpu::count()) {
        sched::place(sched::new_task(t.state, t.affinity, t.period_us, t.flags));
    }
    log::info!(
        "{} CPUs online, {} tasks, {} MiB free",
        cpu::count(),
        sched::task_count(),
        (memory::free_frames() * 4096) >> 20
    );
    interrupts::enable();
    match args.mode {
        Mode::Run => sched::run(),
        Mode::SelfTest => selftest::run(),
        Mode::Panic => panic!("deliberate panic (boot option mode=panic)"),
    }
}
