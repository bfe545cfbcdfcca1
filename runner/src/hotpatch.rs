//! Hotpatch operations, shared by `hotkernel patch`, the hotpatch demo, `bench patch`
//! and the integration tests: make a patch from two builds (the generator, the
//! [`patchgen`] crate), find the ELF a VM runs, apply / remove / list patches through
//! the mailbox, and compare the running text with an ELF.
//!
//! A patch binds to one exact image (build id and hashes): it must be made against the
//! ELF the VM runs. [`running_elf`] finds that file by the build id the guest reports;
//! the VM's state directory keeps a copy of the ELF it booted, since a rebuild
//! overwrites `target/hotkernel/kernels/<variant>/kernel.elf`.
//!
//! | module | owns |
//! | --- | --- |
//! | [`elf`] | build id and executable segment of an ELF |
//! | [`demo`] | the hotpatch demo (`hotkernel demo --hotpatch`) |
//! | [`bench`] | the pause benchmark (`hotkernel bench patch`) |

pub mod bench;
pub mod demo;
pub mod elf;

use std::path::{Path, PathBuf};

use image_format::mailbox::report::{PatchEntry, PatchList, PatchReport, Report, MAX_IMAGE_READ};
use image_format::mailbox::{Command, RequestFlags};
use patchgen::{DiffError, FunctionVerdict, Note, Verdict};
use serde_json::{json, Value};

pub use patchgen::PatchOptions;

use crate::build::{self, Variant};
use crate::error::{Error, Result};
use crate::mailbox::{Answer, Mailbox};
use crate::update::{self, outcome, Refused};
use crate::vm::VmState;
use crate::workspace;

/// What the generator made of two builds.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The patch: `None` when a change was refused or nothing changed.
    pub patch: Option<Vec<u8>>,
    /// True when some change cannot be hotpatched (then there is no patch).
    pub refused: bool,
    /// Every changed, carried and refused function (and unchanged ones when asked).
    pub verdicts: Vec<FunctionVerdict>,
    /// What the generator could not check.
    pub notes: Vec<Note>,
}

impl Generated {
    /// The refused verdicts.
    pub fn refusals(&self) -> impl Iterator<Item = &FunctionVerdict> {
        self.verdicts.iter().filter(|v| v.is_refused())
    }

    /// Functions the patch replaces (one jump each).
    pub fn sites(&self) -> usize {
        self.verdicts
            .iter()
            .filter(|v| matches!(v.verdict, Verdict::Changed { .. }))
            .count()
    }
}

/// Runs the generator on two ELF files' bytes. A refusal is a [`Generated`] with
/// `refused` set (every verdict kept); only unreadable inputs are errors.
/// The patch is signed with the development key ([`generate_signed`] takes another).
pub fn generate(old_elf: &[u8], new_elf: &[u8], opts: &PatchOptions) -> Result<Generated> {
    generate_signed(old_elf, new_elf, opts, None)
}

/// [`generate`], the patch signed with key `key` (`None`: the development key).
pub fn generate_signed(
    old_elf: &[u8],
    new_elf: &[u8],
    opts: &PatchOptions,
    key: Option<&str>,
) -> Result<Generated> {
    match patchgen::make_patch(old_elf, new_elf, opts) {
        Ok(out) => Ok(Generated {
            patch: match out.bytes {
                Some(p) => Some(crate::keys::sign(&p, &crate::keys::load(key)?)?),
                None => None,
            },
            refused: false,
            verdicts: out.verdicts,
            notes: out.notes,
        }),
        Err(DiffError::NotHotpatchable { verdicts, notes }) => Ok(Generated {
            patch: None,
            refused: true,
            verdicts,
            notes,
        }),
        Err(e) => Err(Error::Patch(e.to_string())),
    }
}

/// Reads a file the generator or the guest is given.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(format!("read {}", path.display()), e))
}

/// Builds `variant` (once per process) and returns its ELF.
pub fn variant_elf(variant: &str) -> Result<PathBuf> {
    Ok(build::build_kernel_cached(&Variant::try_new(variant)?)?.elf)
}

/// The patch that turns `from`'s behaviour into `to`'s (both variants, built here),
/// labelled `to`. An error when the generator refuses or finds nothing to patch: the
/// demo and the benchmark need a patch.
pub fn patch_between(from: &str, to: &str) -> Result<Vec<u8>> {
    let old = read(&variant_elf(from)?)?;
    let new = read(&variant_elf(to)?)?;
    let opts = PatchOptions {
        label: Some(to.to_owned()),
        ..PatchOptions::default()
    };
    let made = generate(&old, &new, &opts)?;
    match made.patch {
        Some(patch) => Ok(patch),
        None if made.refused => Err(Error::Patch(format!(
            "{from} → {to} cannot be hotpatched: {}",
            made.refusals()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ))),
        None => Err(Error::Patch(format!(
            "{from} → {to}: no function changed, nothing to patch"
        ))),
    }
}

/// A label for a patch made from `new_elf` when none is given: the variant directory
/// for a built kernel (`…/kernels/patch-a/kernel.elf` → `patch-a`), else the file stem;
/// cut to the 48 bytes a label holds.
pub fn default_label(new_elf: &Path) -> String {
    let stem = new_elf
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = new_elf
        .parent()
        .and_then(Path::file_name)
        .map(|s| s.to_string_lossy().into_owned());
    let label = match parent {
        Some(dir) if stem == "kernel" && !dir.is_empty() => dir,
        _ if stem.is_empty() => "patch".to_owned(),
        _ => stem,
    };
    let label = label.replace('\0', "");
    let mut end = label.len().min(image_format::Label::SIZE);
    while !label.is_char_boundary(end) {
        end -= 1;
    }
    label[..end].to_owned()
}

/// `<vm dir>/kernel.elf`, the ELF the VM booted, kept for the VM's life.
pub fn booted_elf(state: &VmState) -> PathBuf {
    state.paths.booted_elf()
}

/// The ELF file the VM runs: the first of the ELF it booted (its copy, then the
/// recorded path) and every built variant whose build id is the one the guest
/// reports. After a swap that is the swap's target, if it is still on disk.
pub fn running_elf(state: &VmState, mb: &Mailbox) -> Result<PathBuf> {
    let running = mb.status()?.image;
    let first = vec![booted_elf(state), state.kernel_elf.clone()];
    elf_with_build_id(running.build_id.as_bytes(), first).ok_or_else(|| {
        Error::Patch(format!(
            "no ELF on this host has the build id of the kernel VM `{}` runs ({}, build {}); \
             give the running kernel's ELF as the first file: hotkernel patch make <old-elf> <new-elf> -o <patch>",
            state.name, running.label.as_str(), running.build_id
        ))
    })
}

/// The first file of `first`, then of every built variant's `kernel.elf` (in name
/// order), that is an ELF with build id `build_id`.
pub fn elf_with_build_id(build_id: &[u8], first: Vec<PathBuf>) -> Option<PathBuf> {
    let mut candidates = first;
    if let Ok(dirs) = std::fs::read_dir(workspace::hotkernel_dir().join("kernels")) {
        let mut built: Vec<PathBuf> = dirs
            .filter_map(|d| d.ok())
            .map(|d| d.path().join("kernel.elf"))
            .collect();
        built.sort();
        candidates.extend(built);
    }
    candidates.into_iter().find(|path| {
        std::fs::read(path)
            .ok()
            .is_some_and(|bytes| elf::build_id(&bytes).as_deref() == Some(build_id))
    })
}

/// Why the guest refused: the patch report's reason when it has one.
pub fn refusal_reason(r: &Refused) -> String {
    match &r.report {
        Some(Report::Patch(p)) => p.refused.clone().unwrap_or_else(|| r.message.clone()),
        _ => r.message.clone(),
    }
}

fn patch_outcome(answer: Answer, what: &str) -> Result<std::result::Result<PatchReport, Refused>> {
    match outcome(answer) {
        Ok(Answer {
            report: Some(Report::Patch(r)),
            ..
        }) if r.refused.is_none() => Ok(Ok(r)),
        Ok(a) => Err(Error::Mailbox(format!(
            "the guest answered {what} without a patch report ({})",
            a.response.message
        ))),
        Err(refused) => Ok(Err(refused)),
    }
}

/// Applies `patch` in the VM behind `mb`. `Ok(Err(_))` is the guest's refusal (its
/// report names the patch and, when it got that far, the functions it would have
/// replaced); `Err(_)` a failure of the host side.
pub fn apply(mb: &mut Mailbox, patch: &[u8]) -> Result<std::result::Result<PatchReport, Refused>> {
    apply_with(mb, patch, update::HealthWindow::Default)
}

/// [`apply`] with a health window of `window`: the patch's new code must let every CPU
/// schedule and every task kind step, without an exception or a panic, within it, or
/// the guest takes the patch back (answered `Reverted`, the reason in the refusal).
pub fn apply_with(
    mb: &mut Mailbox,
    patch: &[u8],
    window: update::HealthWindow,
) -> Result<std::result::Result<PatchReport, Refused>> {
    let (flags, args) = window.request(RequestFlags::empty());
    let answer = mb.call(
        Command::PatchApply,
        flags,
        Some(patch),
        args,
        update::REQUEST_TIMEOUT,
        |_| {},
    )?;
    patch_outcome(answer, "a patch apply")
}

/// Removes patches down to and including `down_to` (the newest when `None`), newest
/// first. The report names the last one removed and every function restored.
pub fn remove(
    mb: &mut Mailbox,
    down_to: Option<u64>,
) -> Result<std::result::Result<PatchReport, Refused>> {
    let answer = mb.request(Command::PatchRemove, [down_to.unwrap_or(0), 0, 0, 0])?;
    patch_outcome(answer, "a patch removal")
}

/// Attempts the demo and the benchmark make when a refusal is of the moment.
pub const TRANSIENT_ATTEMPTS: u32 = 5;

/// Whether a refusal is of the moment: a parked CPU stood in a site (apply) or in the
/// patch's code (remove) when it was stopped, and a later attempt may find it elsewhere
/// — unlike a scheduler loop, which its CPUs never leave (that refusal repeats).
pub fn is_transient(r: &Refused) -> bool {
    let reason = refusal_reason(r);
    if r.status == image_format::mailbox::Status::Reverted {
        return false; // its code ran and failed: another attempt fails alike
    }
    reason.contains("cannot be replaced now") || reason.contains("cannot be removed now")
}

/// Runs `op` (an apply or a remove) until it is not refused for a passing reason, at
/// most `attempts` times; returns the last outcome and how many transient refusals
/// came before it.
pub fn retrying(
    mut op: impl FnMut() -> Result<std::result::Result<PatchReport, Refused>>,
    attempts: u32,
) -> Result<(std::result::Result<PatchReport, Refused>, u32)> {
    let mut refused = 0;
    loop {
        match op()? {
            Err(r) if is_transient(&r) && refused + 1 < attempts => refused += 1,
            outcome => return Ok((outcome, refused)),
        }
    }
}

/// The applied patches, bottom first.
pub fn list(mb: &mut Mailbox) -> Result<PatchList> {
    let answer = mb.request(Command::PatchList, [0; 4])?;
    match outcome(answer) {
        Ok(Answer {
            report: Some(Report::PatchList(l)),
            ..
        }) => Ok(l),
        Ok(a) => Err(Error::Mailbox(format!(
            "the guest answered the patch list without a list ({})",
            a.response.message
        ))),
        Err(r) => Err(Error::Mailbox(format!("patch list refused: {r}"))),
    }
}

/// The ids in `before` that `after` no longer has, newest first (the removal order).
pub fn removed_ids(before: &PatchList, after: &PatchList) -> Vec<u64> {
    before
        .patches
        .iter()
        .rev()
        .filter(|p| !after.patches.iter().any(|a| a.id == p.id))
        .map(|p| p.id)
        .collect()
}

/// Lower-case hex of `bytes` (digests, build ids, code bytes in reports).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A patch id as the commands print it (16 hex digits, as `PatchId` does).
pub fn id_text(id: u64) -> String {
    format!("{id:016x}")
}

/// Parses an id as printed (hex, with or without `0x`).
pub fn parse_id(text: &str) -> std::result::Result<u64, String> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    match u64::from_str_radix(digits, 16) {
        Ok(0) => Err("patch id 0 names no patch".into()),
        Ok(id) => Ok(id),
        Err(_) => Err(format!(
            "`{text}` is not a patch id (hex, as `hotkernel patch list` prints it)"
        )),
    }
}

/// "12.3 s after boot", "4 min 05 s after boot", "2 h 03 min after boot".
pub fn since_boot(ns: u64) -> String {
    let secs = ns as f64 / 1e9;
    let whole = ns / 1_000_000_000;
    if secs < 60.0 {
        format!("{secs:.1} s after boot")
    } else if whole < 3600 {
        format!("{} min {:02} s after boot", whole / 60, whole % 60)
    } else {
        format!("{} h {:02} min after boot", whole / 3600, whole % 3600 / 60)
    }
}

fn functions_json(functions: &[image_format::mailbox::report::PatchedFunction]) -> Value {
    functions
        .iter()
        .map(|f| json!({"name": f.name, "site": format!("{:#x}", f.site)}))
        .collect()
}

/// One apply or remove as JSON: `op`, `applied`/`removed`, `id`, `version`, `label`,
/// `sequence`, `stack_depth`, `functions` (name, site), `sites`, `pause_us`,
/// `cpus_parked`, `refused` (the reason, or null).
pub fn report_json(r: &PatchReport) -> Value {
    json!({
        "op": r.op.to_string(),
        "ok": r.refused.is_none(),
        "id": id_text(r.id),
        "version": r.version,
        "label": r.label,
        "sequence": r.sequence,
        "stack_depth": r.stack_depth,
        "functions": functions_json(&r.functions),
        "sites": r.functions.len(),
        "pause_us": r.pause_ns as f64 / 1000.0,
        "park_us": r.park_ns as f64 / 1000.0,
        "cpus_parked": r.cpus_parked,
        "refused": r.refused,
    })
}

/// A refused apply or remove as JSON: the report's fields when the guest sent one,
/// the status and reason always.
pub fn refused_json(op: &str, r: &Refused) -> Value {
    let mut v = match &r.report {
        Some(Report::Patch(p)) => report_json(p),
        _ => json!({"op": op, "ok": false}),
    };
    v["refused"] = json!(refusal_reason(r));
    v["reverted"] = json!(r.status == image_format::mailbox::Status::Reverted);
    v["status"] = json!(r.status.to_string());
    v["status_code"] = json!(r.status.code());
    v
}

/// One applied patch as JSON.
pub fn entry_json(e: &PatchEntry) -> Value {
    json!({
        "id": id_text(e.id),
        "version": e.version,
        "sequence": e.sequence,
        "label": e.label,
        "functions": functions_json(&e.functions),
        "sites": e.functions.len(),
        "applied_ns_since_boot": e.applied_ns,
    })
}

/// The load base of the image a patch was applied to: a reported site's address less
/// the patch's image-relative site of the same function.
pub fn load_base(patch: &[u8], report: &PatchReport) -> Option<u64> {
    let view = image_format::hotpatch::parse(patch).ok()?;
    let base = view.functions().find_map(|f| {
        let site = f.site?;
        let reported = report.functions.iter().find(|r| r.name == f.name)?;
        reported.site.checked_sub(site.offset)
    });
    base
}

/// Names the functions of `report` that the guest could not name (a patch its health
/// window took back is reported by its sites only) from `patch`: the load base is the
/// one that puts the most of the patch's sites at reported addresses.
pub fn name_sites(patch: &[u8], report: &mut PatchReport) {
    let Ok(view) = image_format::hotpatch::parse(patch) else {
        return;
    };
    let offsets: Vec<(u64, String)> = view
        .functions()
        .filter_map(|f| Some((f.site?.offset, f.name.to_string())))
        .collect();
    let matches = |base: u64| {
        report
            .functions
            .iter()
            .filter(|r| offsets.iter().any(|(o, _)| base.wrapping_add(*o) == r.site))
            .count()
    };
    let Some(base) = report
        .functions
        .iter()
        .flat_map(|r| offsets.iter().map(move |(o, _)| r.site.wrapping_sub(*o)))
        .max_by_key(|&b| matches(b))
    else {
        return;
    };
    for r in report.functions.iter_mut().filter(|r| r.name.is_empty()) {
        if let Some((_, name)) = offsets
            .iter()
            .find(|(o, _)| base.wrapping_add(*o) == r.site)
        {
            r.name = name.clone();
        }
    }
}

/// Bytes of the running text that differ from the ELF's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextDifference {
    /// Running address of the first differing byte.
    pub address: u64,
    pub expected: Vec<u8>,
    pub found: Vec<u8>,
}

/// The running text compared with an ELF's executable segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextCheck {
    /// Bytes compared (the whole executable segment).
    pub compared: usize,
    /// Where they differ (at most 16 runs listed).
    pub differences: Vec<TextDifference>,
}

impl TextCheck {
    pub fn identical(&self) -> bool {
        self.differences.is_empty()
    }

    /// Whether the bytes of `[address, address + len)` are the ELF's.
    pub fn restored(&self, address: u64, len: u64) -> bool {
        !self
            .differences
            .iter()
            .any(|d| d.address < address + len && address < d.address + d.found.len() as u64)
    }
}

/// Reads the running image's whole executable segment (`load_base` + its link address)
/// and compares it with `elf`'s: after every patch is removed they are identical (the
/// text carries no dynamic relocations).
pub fn compare_text(mb: &mut Mailbox, elf: &[u8], load_base: u64) -> Result<TextCheck> {
    let (vaddr, expected) =
        elf::text(elf).map_err(|e| Error::Patch(format!("cannot read the kernel ELF: {e}")))?;
    let start = load_base.wrapping_add(vaddr);
    let mut found = Vec::with_capacity(expected.len());
    for (i, chunk) in expected.chunks(MAX_IMAGE_READ).enumerate() {
        let at = start + (i * MAX_IMAGE_READ) as u64;
        found.extend(update::read_image(mb, at, chunk.len())?);
    }
    let differences = elf::differing_ranges(expected, &found)
        .into_iter()
        .take(16)
        .map(|(at, len)| TextDifference {
            address: start + at as u64,
            expected: expected[at..at + len].to_vec(),
            found: found[at..at + len].to_vec(),
        })
        .collect();
    Ok(TextCheck {
        compared: expected.len(),
        differences,
    })
}

#[cfg(test)]
mod tests {
    use image_format::mailbox::report::{PatchOp, PatchedFunction};
    use image_format::mailbox::Status;

    use super::*;

    fn entry(id: u64, sequence: u32) -> PatchEntry {
        PatchEntry {
            id,
            version: 1,
            sequence,
            label: format!("p{sequence}"),
            functions: vec![],
            applied_ns: 0,
        }
    }

    #[test]
    fn labels_default_to_the_variant_or_the_file_stem() {
        assert_eq!(
            default_label(Path::new("target/hotkernel/kernels/patch-a/kernel.elf")),
            "patch-a"
        );
        assert_eq!(default_label(Path::new("/tmp/fix-17.elf")), "fix-17");
        assert_eq!(default_label(Path::new("kernel")), "kernel");
        let long = format!("/tmp/{}.elf", "é".repeat(40));
        let label = default_label(Path::new(&long));
        assert!(label.len() <= 48 && image_format::Label::try_new(&label).is_ok());
    }

    #[test]
    fn removed_ids_are_newest_first() {
        let before = PatchList {
            patches: vec![entry(0xa, 1), entry(0xb, 2), entry(0xe, 3)],
        };
        let after = PatchList {
            patches: vec![entry(0xa, 1)],
        };
        assert_eq!(removed_ids(&before, &after), [0xe, 0xb]);
        assert!(removed_ids(&after, &after).is_empty());
    }

    #[test]
    fn ids_parse_as_printed() {
        assert_eq!(parse_id("00000000deadbeef"), Ok(0xdead_beef));
        assert_eq!(parse_id("0x1f"), Ok(0x1f));
        assert_eq!(id_text(0x1f), "000000000000001f");
        assert!(parse_id("0").is_err());
        assert!(parse_id("latest").is_err());
    }

    #[test]
    fn times_since_boot_read_naturally() {
        assert_eq!(since_boot(12_345_000_000), "12.3 s after boot");
        assert_eq!(since_boot(245_000_000_000), "4 min 05 s after boot");
        assert_eq!(since_boot(7_380_000_000_000), "2 h 03 min after boot");
    }

    #[test]
    fn report_json_has_the_documented_fields() {
        let r = PatchReport {
            op: PatchOp::Apply,
            id: 0x1234,
            version: 1,
            label: "patch-a".into(),
            sequence: 1,
            functions: vec![PatchedFunction {
                name: "kernel::tasks::counter::step".into(),
                site: 0xffff_ffff_8001_0000,
            }],
            pause_ns: 62_500,
            park_ns: 50_000,
            cpus_parked: 3,
            stack_depth: 1,
            refused: None,
        };
        let v = report_json(&r);
        assert_eq!(v["op"], "apply");
        assert_eq!(v["id"], "0000000000001234");
        assert_eq!(v["sites"], 1);
        assert_eq!(v["pause_us"], 62.5);
        assert_eq!(v["functions"][0]["site"], "0xffffffff80010000");
        assert_eq!(v["refused"], Value::Null);
        let refused = Refused {
            status: Status::PatchRefused,
            message: "apply of patch 0x1234 refused: cpu0 stands in kernel::sched::run".into(),
            report: Some(Report::Patch(PatchReport {
                refused: Some("cpu0 stands in kernel::sched::run".into()),
                ..r
            })),
        };
        let v = refused_json("apply", &refused);
        assert_eq!(v["ok"], false);
        assert_eq!(v["refused"], "cpu0 stands in kernel::sched::run");
        assert_eq!(v["label"], "patch-a");
    }

    #[test]
    fn a_text_check_locates_restored_sites() {
        let check = TextCheck {
            compared: 100,
            differences: vec![TextDifference {
                address: 0x1010,
                expected: vec![0x55; 5],
                found: vec![0xe9, 0, 0, 0, 0],
            }],
        };
        assert!(!check.identical());
        assert!(!check.restored(0x1010, 16));
        assert!(!check.restored(0x1000, 0x11));
        assert!(check.restored(0x1015, 16));
        assert!(check.restored(0x1000, 0x10));
    }
}
