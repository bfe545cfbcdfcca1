//! Hotpatches for the tests: the kernel variants as private copies of their ELF files
//! ([`kernel`]: booted, packed and patched from the same bytes), patches made from two
//! of them (once per test binary and pair), their functions and bytes (to compare with
//! what the running image holds), and the [`Guest`] calls that apply, remove and list
//! patches and read the running image.
//!
//! The patch calls go through the mailbox directly (`PatchApply`, `PatchRemove`,
//! `PatchList`, `ReadImage`), not through the CLI, so a test sees the guest's own
//! answer and report.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use hotkernel::build::{build_kernel_cached, Variant};
use hotkernel::mailbox::Answer;
use hotkernel::update::{self, Refused};
use hotkernel::{workspace, KernelChoice, VmConfig};
use image_format::hotpatch::{layout, reseal};
use image_format::mailbox::report::{PatchList, PatchReport, Report};
use image_format::mailbox::{Command, RequestFlags};
use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
use patchgen::{make_patch, DiffError, PatchOptions, PatchOutput};

use crate::{Check, Guest, HANG_GUARD};

/// Where the kernel image runs: the kernel is linked at 0, so an ELF address plus this
/// is the address its CPUs use.
pub const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;

/// A built kernel variant, as this test binary uses it: a private copy of its ELF.
///
/// Patches are bound to one exact build, so the VM must boot the very ELF the patches
/// were made from. The variant's ELF under `target/hotkernel/kernels/` is shared with
/// every other process using the tree, and one of them may rebuild it at any moment;
/// so the tests boot, pack and make patches from a copy named by its build id
/// (`target/hotkernel/test-kernels/<variant>-<build id>.elf`), taken once per binary.
#[derive(Debug)]
pub struct Kernel {
    pub variant: String,
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

/// The kernel of `variant` (built and copied once per test binary).
pub fn kernel(variant: &str) -> Arc<Kernel> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Kernel>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap();
    if let Some(k) = cache.get(variant) {
        return k.clone();
    }
    let v = Variant::try_new(variant).check(&format!("variant `{variant}`"));
    let built = build_kernel_cached(&v).check(&format!("building `{variant}`"));
    let bytes = std::fs::read(&built.elf).expect("reading a built kernel ELF");
    let file = object::File::parse(&bytes[..]).expect("a kernel ELF");
    let build_id: String = match file.build_id() {
        Ok(Some(id)) => id.iter().map(|b| format!("{b:02x}")).collect(),
        other => panic!("{variant}: no build id ({other:?})"),
    };
    let dir = workspace::hotkernel_dir().join("test-kernels");
    std::fs::create_dir_all(&dir).expect("creating the test kernels' directory");
    let path = dir.join(format!("{variant}-{build_id}.elf"));
    if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
        let tmp = workspace::temp_path_for(&path);
        std::fs::write(&tmp, &bytes).expect("writing a test kernel");
        std::fs::rename(&tmp, &path).expect("renaming a test kernel");
    }
    let k = Arc::new(Kernel {
        variant: variant.to_owned(),
        path,
        bytes,
    });
    cache.insert(variant.to_owned(), k.clone());
    k
}

/// Boots `variant` (its [`kernel`]) on `cpus` CPUs.
#[track_caller]
pub fn boot(variant: &str, cpus: u32) -> Guest {
    let k = kernel(variant);
    Guest::boot(
        VmConfig {
            kernel: KernelChoice::Elf(k.path.clone()),
            ..VmConfig::default()
        }
        .cpus(cpus),
    )
}

/// The update package of `variant` (its [`kernel`], packed once per test binary).
pub fn package(variant: &str) -> Vec<u8> {
    static CACHE: OnceLock<Mutex<HashMap<String, Vec<u8>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(p) = cache.lock().unwrap().get(variant) {
        return p.clone();
    }
    let p = update::pack_elf(&kernel(variant).path, None).check(&format!("packing `{variant}`"));
    cache.lock().unwrap().insert(variant.to_owned(), p.clone());
    p
}

/// What the generator says about `old` → `new` (not cached: for refusals).
pub fn make(old: &str, new: &str) -> Result<PatchOutput, DiffError> {
    make_patch(
        &kernel(old).bytes,
        &kernel(new).bytes,
        &PatchOptions::default(),
    )
}

/// The patch from variant `old` (the running image) to `new`, labelled `new` (made
/// once per test binary and pair). Panics with the generator's verdicts if it refuses.
pub fn patch(old: &str, new: &str) -> Vec<u8> {
    /// Patches by (old, new) variant.
    type Patches = HashMap<(String, String), Vec<u8>>;
    static CACHE: OnceLock<Mutex<Patches>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (old.to_owned(), new.to_owned());
    if let Some(p) = cache.lock().unwrap().get(&key) {
        return p.clone();
    }
    let opts = PatchOptions {
        label: Some(new.to_owned()),
        ..PatchOptions::default()
    };
    let out = match make_patch(&kernel(old).bytes, &kernel(new).bytes, &opts) {
        Ok(out) => out,
        Err(e) => panic!("the generator refuses {old} → {new}: {e}"),
    };
    let bytes = out
        .bytes
        .unwrap_or_else(|| panic!("{old} → {new}: nothing changed, no patch"));
    let bytes = crate::packages::signed(&bytes);
    cache.lock().unwrap().insert(key, bytes.clone());
    bytes
}

/// A function of a kernel ELF: its address where the kernel runs, its size, and its
/// bytes in the file.
#[derive(Debug, Clone)]
pub struct Function {
    pub name: String,
    pub addr: u64,
    pub size: u64,
    pub bytes: Vec<u8>,
}

/// `raw` demangled without hash, as the generator names functions.
fn demangle(raw: &str) -> String {
    let base = raw.find(".llvm.").map_or(raw, |i| &raw[..i]);
    format!("{:#}", rustc_demangle::demangle(base))
}

/// Every function of `variant`'s ELF (defined `FUNC` symbols), by address.
fn functions(variant: &str) -> Vec<Function> {
    let data = kernel(variant);
    let file = object::File::parse(&data.bytes[..]).expect("a kernel ELF");
    let mut out: Vec<Function> = file
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.size() != 0)
        .map(|s| Function {
            name: demangle(s.name().unwrap_or("")),
            addr: KERNEL_BASE + s.address(),
            size: s.size(),
            bytes: elf_bytes(variant, KERNEL_BASE + s.address(), s.size() as usize),
        })
        .collect();
    out.sort_by_key(|f| f.addr);
    out.dedup_by_key(|f| f.addr);
    out
}

/// The function of `variant` named `name` (demangled without hash); panics unless
/// exactly one has the name.
pub fn function(variant: &str, name: &str) -> Function {
    let found: Vec<Function> = functions(variant)
        .into_iter()
        .filter(|f| f.name == name)
        .collect();
    assert_eq!(found.len(), 1, "{variant} has {} `{name}`", found.len());
    found.into_iter().next().unwrap()
}

/// The function of `variant` that starts at `addr` (a site).
pub fn function_at(variant: &str, addr: u64) -> Function {
    functions(variant)
        .into_iter()
        .find(|f| f.addr == addr)
        .unwrap_or_else(|| panic!("no function of {variant} starts at {addr:#x}"))
}

/// `len` bytes of `variant`'s ELF file at `addr` (where the kernel runs).
pub fn elf_bytes(variant: &str, addr: u64, len: usize) -> Vec<u8> {
    let data = kernel(variant);
    let file = object::File::parse(&data.bytes[..]).expect("a kernel ELF");
    let at = addr - KERNEL_BASE;
    for section in file.sections() {
        let (start, size) = (section.address(), section.size());
        if at >= start && at + len as u64 <= start + size {
            let bytes = section.data().expect("section data");
            let from = (at - start) as usize;
            return bytes[from..from + len].to_vec();
        }
    }
    panic!("{variant}: {len} bytes at {addr:#x} are not inside one section");
}

/// `patch` with byte `index` of the original bytes it records for the site of
/// `function` changed, then resealed (digests and id recomputed): a well-formed patch
/// whose only fault is that it expects other bytes at that site.
pub fn with_original_byte_changed(patch: &[u8], function: &str, index: usize) -> Vec<u8> {
    let view = image_format::hotpatch::parse(patch).expect("a valid patch");
    let entry = view
        .functions()
        .position(|f| f.name == function && f.site.is_some())
        .unwrap_or_else(|| panic!("the patch has no site for {function}"));
    let table = read_u64(patch, layout::FUNCTION_TABLE) as usize;
    let at = table + entry * layout::function::SIZE + layout::function::ORIGINAL + index;
    let mut bytes = patch.to_vec();
    bytes[at] ^= 0xff;
    reseal(&mut bytes).expect("resealing an edited patch");
    let bytes = crate::packages::signed(&bytes);
    let edited = image_format::hotpatch::parse(&bytes).expect("the edited patch parses");
    let site = edited
        .functions()
        .find(|f| f.name == function)
        .and_then(|f| f.site)
        .unwrap();
    assert_ne!(
        site.original,
        view.functions()
            .find(|f| f.name == function)
            .and_then(|f| f.site)
            .unwrap()
            .original,
        "the edit changed the recorded original bytes"
    );
    bytes
}

/// `patch` with its header changed by `edit`, resealed (digests and id recomputed) but
/// not signed again: its old signature trailer stays, now over another header.
pub fn resealed_unsigned(patch: &[u8], edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut bytes = patch.to_vec();
    edit(&mut bytes);
    reseal(&mut bytes).expect("resealing an edited patch");
    bytes
}

/// `patch` with security version `svn`, resealed and signed by the development key:
/// the patch the generator makes when the new build's `.hk_svn` is `svn` (same code,
/// same id: the id is the payload's, the SVN is a header field).
pub fn with_svn(patch: &[u8], svn: u32) -> Vec<u8> {
    let bytes = crate::packages::signed(&resealed_unsigned(patch, |b| {
        b[layout::SVN..layout::SVN + 4].copy_from_slice(&svn.to_le_bytes())
    }));
    let view = image_format::hotpatch::parse(&bytes).expect("the edited patch parses");
    assert_eq!(view.svn(), svn);
    bytes
}

fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
}

/// The patch id of `patch` (parsed).
pub fn id(patch: &[u8]) -> u64 {
    image_format::hotpatch::parse(patch)
        .expect("a valid patch")
        .id()
        .0
}

impl Guest {
    /// A patch request's answer, or a panic with the guest's side of the story.
    #[track_caller]
    fn patch_call(&mut self, command: Command, data: Option<&[u8]>, args: [u64; 4]) -> Answer {
        match self.mailbox.call(
            command,
            RequestFlags::empty(),
            data,
            args,
            HANG_GUARD,
            |_| {},
        ) {
            Ok(a) => a,
            Err(e) => panic!(
                "{command:?}: {e}\nguest status: {:?}\nVM exited: {}\nconsole:\n{}",
                self.mailbox.status(),
                self.vm.has_exited(),
                self.console_tail(40)
            ),
        }
    }

    /// Applies `patch`: the report, or the guest's refusal (with its report).
    #[track_caller]
    pub fn patch_apply(&mut self, patch: &[u8]) -> Result<PatchReport, Refused> {
        let answer = self.patch_call(Command::PatchApply, Some(patch), [0; 4]);
        patch_outcome(answer)
    }

    /// Applies `patch` and expects the guest to install it.
    #[track_caller]
    pub fn patch_apply_ok(&mut self, patch: &[u8]) -> PatchReport {
        match self.patch_apply(patch) {
            Ok(r) => r,
            Err(refused) => panic!(
                "the guest refused the patch: {refused}\n{}",
                self.console_tail(20)
            ),
        }
    }

    /// Removes every patch down to and including `id` (`None`: the newest only).
    #[track_caller]
    pub fn patch_remove(&mut self, id: Option<u64>) -> Result<PatchReport, Refused> {
        let answer = self.patch_call(Command::PatchRemove, None, [id.unwrap_or(0), 0, 0, 0]);
        patch_outcome(answer)
    }

    /// [`Guest::patch_remove`], expecting the guest to remove them.
    #[track_caller]
    pub fn patch_remove_ok(&mut self, id: Option<u64>) -> PatchReport {
        match self.patch_remove(id) {
            Ok(r) => r,
            Err(refused) => panic!(
                "the guest refused the removal: {refused}\n{}",
                self.console_tail(20)
            ),
        }
    }

    /// The applied patches, bottom first.
    #[track_caller]
    pub fn patch_list(&mut self) -> PatchList {
        let answer = self.patch_call(Command::PatchList, None, [0; 4]);
        match answer.report {
            Some(Report::PatchList(l)) if !answer.response.status.is_error() => l,
            other => panic!(
                "PatchList answered {:?} ({}) with {other:?}",
                answer.response.status, answer.response.message
            ),
        }
    }

    /// `len` bytes of the running image at `addr`, as its CPUs see them.
    #[track_caller]
    pub fn read_image(&mut self, addr: u64, len: usize) -> Vec<u8> {
        match update::read_image(&mut self.mailbox, addr, len) {
            Ok(b) => b,
            Err(e) => panic!("reading {len} bytes at {addr:#x}: {e}"),
        }
    }

    /// Asserts the status block says `n` patches are applied. The service rewrites the
    /// block at each poll, so it is read two polls after the last answer.
    #[track_caller]
    pub fn assert_patch_count(&self, n: u32) {
        self.wait_polls(2);
        let s = self.status();
        assert_eq!(s.patches, n, "patches applied, per the status block: {s:?}");
    }
}

fn patch_outcome(answer: Answer) -> Result<PatchReport, Refused> {
    let status = answer.response.status;
    let message = answer.response.message.to_string();
    match answer.report {
        Some(Report::Patch(r)) if !status.is_error() => {
            assert!(
                r.refused.is_none(),
                "an Ok answer with a refused report: {r:?}"
            );
            Ok(r)
        }
        report if status.is_error() => Err(Refused {
            status,
            message,
            report,
        }),
        other => panic!("a patch request answered {status:?} ({message}) with {other:?}"),
    }
}
