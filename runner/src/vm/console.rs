//! A VM's console log, `target/hotkernel/vm/<name>/console.log`: every byte the guest
//! wrote on its console (COM1), kept after the VM ends so that what happened — a failed
//! swap, a panic — can be read afterwards, by a person or by another `hotkernel`
//! process ([`super::watch`]).
//!
//! - The guest's console goes on across swaps, so one boot's section holds every kernel
//!   that ran in it. Boots of the same name append a section each.
//! - The runner writes its own lines between the guest's, each on a line of its own and
//!   starting with [`MARK`]: one when a boot starts ([`ConsoleLog::open_for_boot`],
//!   naming the VM, the time, the kernel and the runner), one when QEMU has ended
//!   ([`ConsoleLog::end`], saying how).
//! - A log larger than [`ROTATE_BYTES`] when a boot starts is renamed `console.log.old`
//!   first (one old log is kept).
//!
//! The guest's panic report (`kernel/src/panic.rs`) is read back by [`GuestPanic::first`].

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// The start of every line the runner writes into a console log.
pub const MARK: &str = "--- hotkernel:";
/// A log this large is rotated at the next boot.
pub const ROTATE_BYTES: u64 = 16 << 20;
/// How much of a log's end [`last_boot`] reads.
const TAIL_BYTES: u64 = 1 << 20;

/// The runner's side of a console log: the file, opened for appending.
pub struct ConsoleLog {
    path: PathBuf,
    state: Mutex<Writer>,
}

struct Writer {
    file: File,
    /// The last byte written was a newline (or nothing was written).
    at_line_start: bool,
    /// A write failed (a full disk): the log stops, the VM does not.
    failed: bool,
}

impl ConsoleLog {
    /// Opens (creates, or rotates and creates) the log at `path` and writes the line
    /// that starts a boot: `--- hotkernel: boot of VM `NAME` at TIME UTC: DETAILS ---`.
    pub fn open_for_boot(path: &Path, name: &str, details: &str) -> Result<ConsoleLog> {
        if fs::metadata(path).is_ok_and(|m| m.len() > ROTATE_BYTES) {
            let old = path.with_extension("log.old");
            fs::rename(path, &old).map_err(|e| {
                Error::io(format!("rename {} to {}", path.display(), old.display()), e)
            })?;
        }
        let file = File::options()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(format!("open the console log {}", path.display()), e))?;
        let at_line_start = fs::metadata(path).map_or(true, |m| m.len() == 0)
            || last_byte(path).is_ok_and(|b| b == Some(b'\n'));
        let log = ConsoleLog {
            path: path.to_owned(),
            state: Mutex::new(Writer {
                file,
                at_line_start,
                failed: false,
            }),
        };
        log.runner_line(&format!(
            "boot of VM `{name}` at {} UTC: {details}",
            utc_now()
        ));
        Ok(log)
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends bytes the guest wrote.
    pub fn append(&self, bytes: &[u8]) {
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&last) = bytes.last() {
            w.write(bytes);
            w.at_line_start = last == b'\n';
        }
    }

    /// Writes the line that ends a boot: `--- hotkernel: VM ended: HOW ---`.
    pub fn end(&self, how: &str) {
        self.runner_line(&format!("VM ended: {how}"));
    }

    fn runner_line(&self, text: &str) {
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let newline = if w.at_line_start { "" } else { "\n" };
        w.write(format!("{newline}{MARK} {text} ---\n").as_bytes());
        w.at_line_start = true;
    }
}

impl Writer {
    fn write(&mut self, bytes: &[u8]) {
        if !self.failed && self.file.write_all(bytes).is_err() {
            self.failed = true;
        }
    }
}

fn last_byte(path: &Path) -> io::Result<Option<u8>> {
    let mut file = File::open(path)?;
    if file.seek(SeekFrom::End(0))? == 0 {
        return Ok(None);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut byte = [0u8];
    file.read_exact(&mut byte)?;
    Ok(Some(byte[0]))
}

/// The section of the log at `path` that the last boot wrote (from its boot line on,
/// within the last MiB of the file), as text. Empty when there is no log.
pub fn last_boot(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.seek(SeekFrom::End(0)).unwrap_or(0);
    let start = len.saturating_sub(TAIL_BYTES);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let boot_line = format!("{MARK} boot of VM");
    match text.rfind(&boot_line) {
        Some(at) => text[at..].to_owned(),
        None => text.into_owned(),
    }
}

/// How the VM ended, if the section's runner wrote its end line (the `HOW` of
/// [`ConsoleLog::end`]).
pub fn ending(section: &str) -> Option<String> {
    let prefix = format!("{MARK} VM ended: ");
    section
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|how| how.trim_end_matches(" ---").to_owned())
}

/// The guest's panic report, as `kernel/src/panic.rs` prints it:
///
/// ```text
/// KERNEL PANIC on cpu1 at kernel/src/tasks/counter.rs:52:9
///   the message (one or more lines, indented)
///   return addresses: 0xffffffff80012345 0xffffffff80023456
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestPanic {
    /// The CPU that panicked.
    pub cpu: u32,
    /// `file:line:column`, when the panic had a location.
    pub location: Option<String>,
    /// The panic message (its lines joined with `\n`, without the indentation).
    pub message: String,
    /// The return addresses on the panicking CPU's stack (`addr2line -e kernel.elf`).
    pub return_addresses: Vec<u64>,
}

impl GuestPanic {
    /// The first panic report in `text` (with several CPUs panicking, the first one's
    /// is the cause; the others follow it).
    pub fn first(text: &str) -> Option<GuestPanic> {
        let mut lines = text
            .lines()
            .skip_while(|l| !l.starts_with("KERNEL PANIC on cpu"));
        let head = lines.next()?.strip_prefix("KERNEL PANIC on cpu")?;
        let (cpu, location) = match head.split_once(" at ") {
            Some((cpu, at)) => (cpu, Some(at.trim().to_owned())),
            None => (head.split_whitespace().next().unwrap_or(""), None),
        };
        let cpu = cpu.trim().parse().ok()?;
        let mut message = Vec::new();
        let mut return_addresses = Vec::new();
        for line in lines {
            if let Some(addresses) = line.strip_prefix("  return addresses:") {
                return_addresses = addresses
                    .split_whitespace()
                    .filter_map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
                    .collect();
                break;
            }
            match line.strip_prefix("  ") {
                Some(text) => message.push(text),
                None => break,
            }
        }
        Some(GuestPanic {
            cpu,
            location,
            message: message.join("\n"),
            return_addresses,
        })
    }
}

impl std::fmt::Display for GuestPanic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the guest panicked on cpu{}", self.cpu)?;
        if let Some(at) = &self.location {
            write!(f, " at {at}")?;
        }
        write!(f, ": {}", self.message)?;
        if !self.return_addresses.is_empty() {
            let addresses: Vec<String> = self
                .return_addresses
                .iter()
                .map(|a| format!("{a:#x}"))
                .collect();
            write!(f, "\n  return addresses: {}", addresses.join(" "))?;
        }
        Ok(())
    }
}

/// Now, as `YYYY-MM-DD HH:MM:SS` in UTC.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc(secs)
}

/// Seconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS` (proleptic Gregorian, UTC).
fn utc(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(test: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("hotkernel-console-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir.join("console.log")
    }

    #[test]
    fn boots_append_sections_and_runner_lines_stand_alone() {
        let path = scratch("sections");
        let log = ConsoleLog::open_for_boot(&path, "a", "v1, 4 CPUs").unwrap();
        log.append(b"first boot\npartial");
        log.end("stopped on request");
        drop(log);
        let log = ConsoleLog::open_for_boot(&path, "a", "v2, 1 CPU").unwrap();
        log.append(b"second boot\n");
        drop(log);

        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert!(
            lines[0].starts_with("--- hotkernel: boot of VM `a` at 20"),
            "{text}"
        );
        assert!(lines[0].ends_with(" UTC: v1, 4 CPUs ---"), "{text}");
        assert_eq!(
            &lines[1..4],
            [
                "first boot",
                "partial",
                "--- hotkernel: VM ended: stopped on request ---"
            ]
        );
        assert!(lines[4].ends_with("v2, 1 CPU ---"), "{text}");
        assert_eq!(lines[5], "second boot");

        let section = last_boot(&path);
        assert!(
            section.starts_with("--- hotkernel: boot of VM `a`") && section.contains("v2, 1 CPU")
        );
        assert!(!section.contains("first boot"));
        assert_eq!(ending(&section), None, "the second boot has not ended");
        assert_eq!(ending(&text).as_deref(), Some("stopped on request"));
    }

    #[test]
    fn a_large_log_is_rotated_at_boot() {
        let path = scratch("rotate");
        fs::write(&path, vec![b'x'; ROTATE_BYTES as usize + 1]).unwrap();
        drop(ConsoleLog::open_for_boot(&path, "a", "v1").unwrap());
        assert_eq!(
            fs::metadata(path.with_extension("log.old")).unwrap().len(),
            ROTATE_BYTES + 1
        );
        assert!(fs::read_to_string(&path).unwrap().starts_with(MARK));
    }

    #[test]
    fn the_first_panic_report_is_read_back() {
        let text = "[   1.0][cpu0][INFO  kernel] fine\n\
                    KERNEL PANIC on cpu2 at kernel/src/update/requests.rs:104:9\n  \
                    deliberate panic\n  second line\n  \
                    return addresses: 0xffffffff80001234 0xffffffff80005678\n\
                    KERNEL PANIC on cpu1 at kernel/src/other.rs:1:1\n  later\n  return addresses:\n";
        let panic = GuestPanic::first(text).unwrap();
        assert_eq!(
            panic,
            GuestPanic {
                cpu: 2,
                location: Some("kernel/src/update/requests.rs:104:9".into()),
                message: "deliberate panic\nsecond line".into(),
                return_addresses: vec![0xffff_ffff_8000_1234, 0xffff_ffff_8000_5678],
            }
        );
        let shown = panic.to_string();
        assert!(shown.starts_with("the guest panicked on cpu2 at kernel/src/update/requests.rs:104:9: deliberate panic"), "{shown}");
        assert!(
            shown.ends_with("return addresses: 0xffffffff80001234 0xffffffff80005678"),
            "{shown}"
        );

        let no_location = GuestPanic::first("KERNEL PANIC on cpu0\n  oops\n").unwrap();
        assert_eq!(
            (
                no_location.cpu,
                no_location.location,
                no_location.message.as_str()
            ),
            (0, None, "oops")
        );
        assert_eq!(GuestPanic::first("no panic here\n"), None);
    }

    #[test]
    fn utc_dates_are_civil() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_798_761_599), "2026-12-31 23:59:59");
    }
}
