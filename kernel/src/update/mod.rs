//! Live update: the mailbox requests and, behind them, staging, the swap and the
//! hotpatch jobs. The files follow a package through the phases of a swap:
//!
//! 1. [`requests`]: the update-service task's step — serves the mailbox;
//! 2. [`stage`]: copies and verifies a package while the tasks run;
//! 3. [`prepare`], [`preflight`]: lays the new image out in the staging window and the
//!    overlay source; a trial export and a dry run of its bootstrap;
//! 4. [`jobs`], [`swap`]: at the BSP's checkpoint, the coordinator parks the CPUs;
//! 5. [`export`]: the old kernel's state as a record set;
//! 6. [`enter`], [`bootstrap`]: the new image's bootstrap reconciles (`updater::reconcile`);
//! 7. [`overlay`]: the point of no return;
//! 8. `crate::resume` and [`import`]: the new kernel adopts the machine and its tasks;
//! 9. [`window`]: the health window — commit once the new kernel is healthy, or (in the
//!    old kernel, after the guard took the swap back) say what failed; [`report`] tells
//!    the host.
//!
//! [`patches`] answers the hotpatch commands (the jumps are written by `crate::hotpatch`),
//! [`patch_window`] keeps an applied patch's health window (the swap's revert, reused);
//! [`selfswap`] lets the self-test swap into this very image without a host.
pub mod bootstrap;
pub mod enter;
pub mod export;
pub mod import;
pub mod jobs;
pub mod overlay;
pub mod patch_window;
pub mod patches;
pub mod preflight;
pub mod prepare;
pub mod report;
pub mod requests;
pub mod selfswap;
pub mod stage;
pub mod swap;
pub mod window;
