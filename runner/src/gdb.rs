//! `hotkernel gdb`: GDB attached to a running VM's gdbstub (QEMU's `-gdb` on the VM's
//! `gdb.sock`, [`crate::qemu`]) with the symbols of what the VM runs **now**:
//!
//! - the kernel: the ELF whose build id the guest reports (after a swap, the swap's
//!   target: [`hotpatch::running_elf`]), its symbols offset by [`KERNEL_BASE`] (the
//!   kernel is linked at 0; a swap keeps the base);
//! - each applied hotpatch: the guest lists its functions and their sites; each site
//!   holds a `jmp rel32` into patch memory (read through the mailbox), which is where
//!   the function's new code runs. [`symbol_elf`] writes one small ELF per patch whose
//!   `.text` lies at those addresses with a `FUNC` symbol per function, loaded with
//!   `add-symbol-file`. A function's symbol ends where the patch's next one starts; the
//!   last one's has no size (GDB names any address after it up to the section's end,
//!   [`LAST_FUNCTION_SPAN`] bytes on) — the guest does not report the code's length.
//!
//! The debugger is Debian's `gdb`, driven by a script of plain commands (no Python),
//! written to the VM's `gdb/` directory, then `target remote <gdb.sock>`. Attaching
//! stops every CPU of the guest until GDB continues (`continue`) or detaches (`detach`,
//! or GDB ending in `-batch`). What this does not give: the kernel is built without
//! debug info (`profile.kernel`), so GDB knows functions and statics by name and
//! address, not source lines or local variables.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use image_format::mailbox::report::PatchList;

use crate::error::{Error, Result};
use crate::hotpatch;
use crate::mailbox::Mailbox;
use crate::toolchain;
use crate::update;
use crate::vm::VmState;

/// Where the kernel image runs: it is linked at 0.
pub const KERNEL_BASE: u64 = crate::demo::KERNEL_BASE;
/// How far the last function of a patch is taken to reach (its length is not known).
pub const LAST_FUNCTION_SPAN: u64 = 0x1000;
/// `jmp rel32`.
const JMP_REL32: u8 = 0xe9;

/// One function of an applied patch, where its new code runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchFunction {
    /// The function's name as the guest lists it (demangled, without hash).
    pub name: String,
    /// Its entry in the running image (the site that jumps to the new code).
    pub site: u64,
    /// Its new code's address in patch memory.
    pub code: u64,
}

/// The symbols of one applied patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchSymbols {
    pub id: u64,
    pub label: String,
    /// By address.
    pub functions: Vec<PatchFunction>,
}

/// What `hotkernel gdb` loads into GDB for one VM.
#[derive(Debug, Clone)]
pub struct Session {
    /// The ELF of the kernel the VM runs now.
    pub kernel_elf: PathBuf,
    /// The applied patches, bottom first.
    pub patches: Vec<PatchSymbols>,
    /// QEMU's gdbstub.
    pub socket: PathBuf,
    /// The GDB script: symbols, then `target remote`.
    pub script: PathBuf,
}

/// Finds what the VM `state` runs now (through its mailbox), writes the patches' symbol
/// ELFs and the GDB script into the VM's `gdb/` directory.
pub fn prepare(state: &VmState, mb: &mut Mailbox) -> Result<Session> {
    let socket = state.paths.gdb_socket();
    if !socket.exists() {
        return Err(Error::Gdb(format!(
            "VM `{}` has no gdbstub socket ({}): it was started by an older `hotkernel run`; restart it",
            state.name,
            socket.display()
        )));
    }
    let kernel_elf = hotpatch::running_elf(state, mb).map_err(|_| {
        let image = mb.status().map(|s| s.image);
        Error::Gdb(format!(
            "no ELF on this host has the build id of the kernel VM `{}` runs ({}): \
             GDB would show the wrong symbols; rebuild that variant (`hotkernel build --variant …`)",
            state.name,
            image.map_or_else(|e| e.to_string(), |i| format!("{}, build {}", i.label.as_str(), i.build_id))
        ))
    })?;
    let list = hotpatch::list(mb)?;
    let patches = patch_symbols(mb, &list)?;

    let dir = state.paths.gdb_dir();
    // What an earlier `hotkernel gdb` wrote may name patches removed since.
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let mut script =
        String::from("# Written by `hotkernel gdb`: the symbols of what the VM runs now.\n");
    script.push_str("set architecture i386:x86-64\n");
    script.push_str(&format!(
        "symbol-file -o {KERNEL_BASE:#x} {}\n",
        gdb_path(&kernel_elf)?
    ));
    for patch in &patches {
        let Some(elf) = symbol_elf(patch) else {
            continue;
        };
        let path = dir.join(format!("patch-{}.elf", hotpatch::id_text(patch.id)));
        write(&path, &elf)?;
        script.push_str(&format!(
            "add-symbol-file {} {:#x}\n",
            gdb_path(&path)?,
            patch.functions[0].code
        ));
    }
    script.push_str(&format!("target remote {}\n", gdb_path(&socket)?));
    let script_path = dir.join("hotkernel.gdb");
    write(&script_path, script.as_bytes())?;
    Ok(Session {
        kernel_elf,
        patches,
        socket,
        script: script_path,
    })
}

/// GDB with the session's script, then `extra` (e.g. `-batch -ex 'info symbol 0x…'`).
pub fn command(session: &Session, extra: &[String]) -> Command {
    let mut cmd = Command::new(toolchain::GDB);
    cmd.arg("-q").arg("-x").arg(&session.script).args(extra);
    cmd
}

/// Each applied patch's functions where their new code runs: the target of the
/// `jmp rel32` at each site.
pub fn patch_symbols(mb: &mut Mailbox, list: &PatchList) -> Result<Vec<PatchSymbols>> {
    let mut out = Vec::new();
    for entry in &list.patches {
        let mut functions = Vec::new();
        for f in &entry.functions {
            let bytes = update::read_image(mb, f.site, 5)?;
            let code = jump_target(f.site, &bytes).ok_or_else(|| {
                Error::Gdb(format!(
                    "patch {} lists {} at {:#x}, but the site holds {} instead of a jmp rel32",
                    hotpatch::id_text(entry.id),
                    f.name,
                    f.site,
                    hotpatch::hex(&bytes)
                ))
            })?;
            functions.push(PatchFunction {
                name: f.name.clone(),
                site: f.site,
                code,
            });
        }
        functions.sort_by_key(|f| f.code);
        out.push(PatchSymbols {
            id: entry.id,
            label: entry.label.clone(),
            functions,
        });
    }
    Ok(out)
}

/// Where the `jmp rel32` at `site` (its bytes `bytes`) goes.
pub fn jump_target(site: u64, bytes: &[u8]) -> Option<u64> {
    match bytes {
        [JMP_REL32, rel @ ..] if rel.len() >= 4 => {
            let rel = i32::from_le_bytes(rel[..4].try_into().ok()?);
            Some(site.wrapping_add(5).wrapping_add_signed(i64::from(rel)))
        }
        _ => None,
    }
}

/// A path as a GDB command argument: GDB splits on white space and has no quoting for
/// these commands.
fn gdb_path(path: &Path) -> Result<String> {
    let text = path.to_string_lossy();
    if text.chars().any(char::is_whitespace) {
        return Err(Error::Gdb(format!(
            "{} has white space in it, which GDB's commands cannot take: move the checkout",
            path.display()
        )));
    }
    Ok(text.into_owned())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).map_err(|e| Error::io(format!("write {}", path.display()), e))
}

/// An ELF64 file (x86-64, `ET_EXEC`) whose `.text` (zero bytes: GDB reads the code from
/// the guest) spans `patch`'s functions, with a global `FUNC` symbol for each; `None`
/// for a patch without functions.
pub fn symbol_elf(patch: &PatchSymbols) -> Option<Vec<u8>> {
    let first = patch.functions.first()?.code;
    let last = patch.functions.last()?.code;
    let text_size = last - first + LAST_FUNCTION_SPAN;

    let mut strtab = vec![0u8];
    let mut symbols = Vec::new();
    for (i, f) in patch.functions.iter().enumerate() {
        let size = patch
            .functions
            .get(i + 1)
            .map_or(0, |next| next.code - f.code);
        let name = strtab.len() as u32;
        strtab.extend_from_slice(f.name.as_bytes());
        strtab.push(0);
        symbols.push((name, f.code, size));
    }
    let shstrtab: &[u8] = b"\0.text\0.symtab\0.strtab\0.shstrtab\0";
    let (n_text, n_symtab, n_strtab, n_shstrtab) = (1u32, 7u32, 15u32, 23u32);

    const EHDR: u64 = 64;
    const SYM: u64 = 24;
    const SHDR: u64 = 64;
    let text_off = EHDR;
    let symtab_off = align(text_off + text_size, 8);
    let symtab_size = SYM * (symbols.len() as u64 + 1);
    let strtab_off = symtab_off + symtab_size;
    let shstrtab_off = strtab_off + strtab.len() as u64;
    let shoff = align(shstrtab_off + shstrtab.len() as u64, 8);

    let mut out = Vec::with_capacity((shoff + 5 * SHDR) as usize);
    // The ELF header.
    out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    out.extend_from_slice(&[0; 8]);
    put16(&mut out, 2); // ET_EXEC
    put16(&mut out, 62); // EM_X86_64
    put32(&mut out, 1);
    put64(&mut out, 0); // entry
    put64(&mut out, 0); // no program headers
    put64(&mut out, shoff);
    put32(&mut out, 0);
    put16(&mut out, EHDR as u16);
    put16(&mut out, 56);
    put16(&mut out, 0);
    put16(&mut out, SHDR as u16);
    put16(&mut out, 5);
    put16(&mut out, 4); // .shstrtab
                        // .text
    out.resize((text_off + text_size) as usize, 0);
    out.resize(symtab_off as usize, 0);
    // .symtab: the null symbol, then the functions.
    out.extend_from_slice(&[0; SYM as usize]);
    for (name, value, size) in &symbols {
        put32(&mut out, *name);
        out.push(0x12); // STB_GLOBAL, STT_FUNC
        out.push(0);
        put16(&mut out, 1); // .text
        put64(&mut out, *value);
        put64(&mut out, *size);
    }
    out.extend_from_slice(&strtab);
    out.extend_from_slice(shstrtab);
    out.resize(shoff as usize, 0);
    // Section headers: null, .text, .symtab, .strtab, .shstrtab.
    out.extend_from_slice(&[0; SHDR as usize]);
    section(
        &mut out, n_text, 1, 0x6, first, text_off, text_size, 0, 0, 16, 0,
    );
    section(
        &mut out,
        n_symtab,
        2,
        0,
        0,
        symtab_off,
        symtab_size,
        3,
        1,
        8,
        SYM,
    );
    section(
        &mut out,
        n_strtab,
        3,
        0,
        0,
        strtab_off,
        strtab.len() as u64,
        0,
        0,
        1,
        0,
    );
    section(
        &mut out,
        n_shstrtab,
        3,
        0,
        0,
        shstrtab_off,
        shstrtab.len() as u64,
        0,
        0,
        1,
        0,
    );
    Some(out)
}

#[allow(clippy::too_many_arguments)]
fn section(
    out: &mut Vec<u8>,
    name: u32,
    kind: u32,
    flags: u64,
    addr: u64,
    offset: u64,
    size: u64,
    link: u32,
    info: u32,
    align: u64,
    entsize: u64,
) {
    put32(out, name);
    put32(out, kind);
    put64(out, flags);
    put64(out, addr);
    put64(out, offset);
    put64(out, size);
    put32(out, link);
    put32(out, info);
    put64(out, align);
    put64(out, entsize);
}

fn align(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jump_is_decoded_relative_to_the_next_instruction() {
        let site = 0xffff_ffff_8001_0000;
        assert_eq!(
            jump_target(site, &[0xe9, 0x10, 0, 0, 0]),
            Some(site + 5 + 0x10)
        );
        assert_eq!(
            jump_target(site, &[0xe9, 0xf0, 0xff, 0xff, 0xff]),
            Some(site + 5 - 0x10)
        );
        assert_eq!(jump_target(site, &[0x55, 0x48, 0x89, 0xe5, 0]), None);
        assert_eq!(jump_target(site, &[0xe9, 0]), None);
    }

    #[test]
    fn the_symbol_elf_names_each_function_at_its_code() {
        let patch = PatchSymbols {
            id: 7,
            label: "p".into(),
            functions: vec![
                PatchFunction {
                    name: "kernel::a".into(),
                    site: 1,
                    code: 0xffff_ffff_c000_0000,
                },
                PatchFunction {
                    name: "kernel::b".into(),
                    site: 2,
                    code: 0xffff_ffff_c000_0040,
                },
            ],
        };
        let elf = symbol_elf(&patch).unwrap();
        let segments = crate::hotpatch::elf::segments(&elf).unwrap();
        assert!(segments.is_empty(), "no program headers");
        // Read the symbols back the way a reader of section headers does.
        let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap());
        let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap());
        let shoff = u64_at(0x28) as usize;
        let sh = |i: usize| shoff + 64 * i;
        assert_eq!(u64_at(sh(1) + 16), 0xffff_ffff_c000_0000, ".text's address");
        assert_eq!(
            u64_at(sh(1) + 32),
            0x40 + LAST_FUNCTION_SPAN,
            ".text's size"
        );
        let (symtab, strtab) = (u64_at(sh(2) + 24) as usize, u64_at(sh(3) + 24) as usize);
        let name = |sym: usize| {
            let at = strtab + u32_at(symtab + 24 * sym) as usize;
            let end = elf[at..].iter().position(|&b| b == 0).unwrap();
            String::from_utf8(elf[at..at + end].to_vec()).unwrap()
        };
        assert_eq!(name(1), "kernel::a");
        assert_eq!(u64_at(symtab + 24 + 8), 0xffff_ffff_c000_0000);
        assert_eq!(u64_at(symtab + 24 + 16), 0x40, "a ends where b starts");
        assert_eq!(name(2), "kernel::b");
        assert_eq!(
            u64_at(symtab + 48 + 16),
            0,
            "the last one's size is unknown"
        );
        assert_eq!(
            symbol_elf(&PatchSymbols {
                functions: vec![],
                ..patch
            }),
            None
        );
    }
}
