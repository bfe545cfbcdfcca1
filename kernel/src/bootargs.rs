//! Boot options, from QEMU's fw_cfg file `opt/hotkernel/cmdline`: space-separated
//! `key=value` pairs. Unknown keys and bad values are reported and ignored, never fatal.
//!
//! | key | values | default |
//! | --- | --- | --- |
//! | `mode` | `run`, `selftest`, `panic` | `run` |
//! | `log` | `error` … `trace` | `info` |
//! | `tasks` | tasks in all (the demo kinds fill what the fixed ones leave) | 16 |
//! | `pace` | microseconds between a demo task's steps | 1000 |
#![deny(unsafe_code)]

use log::LevelFilter;

use crate::arch::fw_cfg;

/// What the kernel does once it is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Run the demo workload and serve the mailbox.
    Run,
    /// Run the in-kernel tests and exit QEMU with their verdict.
    SelfTest,
    /// Panic deliberately once up (tests that a panic is reported as a failure).
    Panic,
}

#[derive(Debug, Clone, Copy)]
pub struct BootArgs {
    pub mode: Mode,
    pub log: LevelFilter,
    pub tasks: usize,
    pub pace_us: u32,
}

impl Default for BootArgs {
    fn default() -> Self {
        Self {
            mode: Mode::Run,
            log: LevelFilter::Info,
            tasks: 16,
            pace_us: 1000,
        }
    }
}

/// Reads the options (defaults when there is no fw_cfg file).
pub fn read() -> BootArgs {
    let mut buf = [0u8; 512];
    let mut args = BootArgs::default();
    let Some(len) = fw_cfg::read_file("opt/hotkernel/cmdline", &mut buf) else {
        return args;
    };
    let Ok(text) = core::str::from_utf8(&buf[..len]) else {
        log::warn!("boot options are not UTF-8; using defaults");
        return args;
    };
    for word in text.split_ascii_whitespace() {
        let (key, value) = word.split_once('=').unwrap_or((word, ""));
        let ok = match key {
            "mode" => match value {
                "run" => Some(Mode::Run),
                "selftest" => Some(Mode::SelfTest),
                "panic" => Some(Mode::Panic),
                _ => None,
            }
            .map(|m| args.mode = m)
            .is_some(),
            "log" => value.parse::<LevelFilter>().map(|l| args.log = l).is_ok(),
            "tasks" => value
                .parse::<usize>()
                .map(|n| args.tasks = n.clamp(2, 8192))
                .is_ok(),
            "pace" => value.parse::<u32>().map(|p| args.pace_us = p).is_ok(),
            _ => false,
        };
        if !ok {
            log::warn!("boot option `{word}` not understood; ignored");
        }
    }
    args
}
