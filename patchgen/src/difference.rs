//! [`Difference`]: why the differ counts a function as changed, as `--explain` shows it —
//! the first instruction that differs, in both builds, and its [`Cause`]. A reference to
//! read-only data whose content differs says which data and shows both contents
//! ([`ContentDifference`]), following pointers in that data down to the bytes that
//! differ.
//!
//! These are display types: the decision itself is `compare`'s.

use std::fmt;

/// How many bytes of a data block a [`Data`] keeps for display, around the first
/// difference.
pub const SHOWN: usize = 64;

/// How many of them come before the first difference.
pub const SHOWN_BEFORE: u64 = 16;

/// One instruction of a function, as linked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// Offset in the function.
    pub offset: u64,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// AT&T syntax, as `objdump -d` prints it; `None` for bytes that do not decode.
    pub text: Option<String>,
    /// What its relocation fields refer to, e.g. `kernel::tasks::tick`,
    /// `anon .rodata@0x9211`.
    pub refers_to: Vec<String>,
}

/// The first difference between the two builds of a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Offset in the function of the first instruction that differs (everything before
    /// it is the same in both builds).
    pub offset: u64,
    /// That instruction in the old build; `None` where the old function ends first.
    pub old: Option<Instruction>,
    /// That instruction in the new build; `None` where the new function ends first.
    pub new: Option<Instruction>,
    /// Why it differs.
    pub cause: Cause,
}

/// Why an instruction (or a block of data) differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// Another operation: the mnemonics differ.
    Opcode {
        /// Old mnemonic, e.g. `add`.
        old: String,
        /// New mnemonic.
        new: String,
    },
    /// The same operation with another immediate operand.
    Immediate {
        /// Old value.
        old: i64,
        /// New value.
        new: i64,
    },
    /// The same operation on other operands (registers, memory operand, displacement,
    /// operand size).
    Operands,
    /// The bytes differ outside relocation fields (data, or code that does not decode).
    Bytes,
    /// The lengths differ, and everything up to the end of the shorter is the same.
    Length {
        /// Old length in bytes.
        old: u64,
        /// New length in bytes.
        new: u64,
    },
    /// A relocation field is in one build only, or of another ELF type (`None`: no
    /// field there).
    Relocation {
        /// The old build's relocation type.
        old: Option<u32>,
        /// The new build's relocation type.
        new: Option<u32>,
    },
    /// The field's value lies another distance from what it refers to (`S + A` minus
    /// the target: an operand after the field, or an offset into the target).
    Distance {
        /// Old distance.
        old: i64,
        /// New distance.
        new: i64,
    },
    /// The field refers to something else: a call or jump to another function, another
    /// static, another code label, or an address the differ cannot name. (Read-only data
    /// at the same place with other content is [`Cause::Content`].)
    Target {
        /// What the old build refers to.
        old: String,
        /// What the new build refers to.
        new: String,
    },
    /// The field refers to read-only data whose content differs.
    Content(Box<ContentDifference>),
    /// What the decoder or the relocation resolution found differs (bytes that do not
    /// decode, relocation types the patch format lacks, pc-relative operands without a
    /// relocation).
    Problems,
}

/// Read-only data that differs between the builds, referred to at the same place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentDifference {
    /// The old build's data.
    pub old: Data,
    /// The new build's data.
    pub new: Data,
    /// Offset of the first difference inside the data.
    pub offset: u64,
    /// What differs there: its bytes, its length, or a pointer in it (to data that in
    /// turn differs: a nested [`Cause::Content`]).
    pub cause: Cause,
}

/// A block of read-only data, for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data {
    /// Its symbol, or `anon <section>@<address>` for unnamed data.
    pub name: String,
    /// Its length as compared (unnamed data: up to the next referenced address or
    /// symbol).
    pub len: u64,
    /// Offset in the block of the first byte of `bytes`.
    pub from: u64,
    /// Its bytes from `from` (at most [`SHOWN`], from [`SHOWN_BEFORE`] bytes before
    /// the first difference).
    pub bytes: Vec<u8>,
}

/// The ELF name of an x86-64 relocation type.
pub fn relocation_name(r_type: u32) -> String {
    use object::elf;
    let name = match r_type {
        elf::R_X86_64_64 => "R_X86_64_64",
        elf::R_X86_64_PC32 => "R_X86_64_PC32",
        elf::R_X86_64_PLT32 => "R_X86_64_PLT32",
        elf::R_X86_64_GOTPCREL => "R_X86_64_GOTPCREL",
        elf::R_X86_64_32 => "R_X86_64_32",
        elf::R_X86_64_32S => "R_X86_64_32S",
        elf::R_X86_64_16 => "R_X86_64_16",
        elf::R_X86_64_GOTPCRELX => "R_X86_64_GOTPCRELX",
        elf::R_X86_64_REX_GOTPCRELX => "R_X86_64_REX_GOTPCRELX",
        other => return format!("relocation type {other}"),
    };
    String::from(name)
}

impl fmt::Display for Cause {
    /// One line: what differs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reloc = |t: &Option<u32>| t.map_or_else(|| String::from("none"), relocation_name);
        match self {
            Self::Opcode { old, new } => write!(f, "another operation: {old} → {new}"),
            Self::Immediate { old, new } => {
                write!(f, "immediate differs: ${old:#x} → ${new:#x}")
            }
            Self::Operands => f.write_str("the same operation on other operands"),
            Self::Bytes => f.write_str("the bytes differ outside relocation fields"),
            Self::Length { old, new } => write!(
                f,
                "the length differs ({old} → {new} bytes); the rest is the same up to the shorter's end"
            ),
            Self::Relocation { old, new } => write!(
                f,
                "the relocation differs ({} → {})",
                reloc(old),
                reloc(new)
            ),
            Self::Distance { old, new } => write!(
                f,
                "the field lies another distance from its target ({old:+} → {new:+})"
            ),
            Self::Target { old, new } => write!(f, "refers to another target: {new}, was {old}"),
            Self::Content(c) => {
                // The bytes that differ are the innermost level's (a template that
                // points to a string: the string).
                let mut inner: &ContentDifference = c;
                let mut levels = 1;
                while let Self::Content(next) = &inner.cause {
                    inner = next;
                    levels += 1;
                }
                write!(f, "{} now points to different bytes", c.new.name)?;
                if levels > 1 {
                    write!(f, " (through it, {})", inner.new.name)?;
                }
                write!(f, ": {} → {}", inner.old.excerpt(), inner.new.excerpt())
            }
            Self::Problems => f.write_str(
                "what the decoder or the relocations found differs (undecodable bytes, unsupported relocation types, operands without a relocation)",
            ),
        }
    }
}

impl Data {
    /// How many bytes [`Data::excerpt`] shows.
    const EXCERPT: usize = 40;

    /// The shown bytes escaped and quoted, `…` where the block goes on beyond them,
    /// cut to a one-line length.
    pub fn excerpt(&self) -> String {
        self.quoted(Self::EXCERPT)
    }

    fn quoted(&self, most: usize) -> String {
        let n = self.bytes.len().min(most);
        let before = if self.from > 0 { "…" } else { "" };
        let after = if self.from + (n as u64) < self.len {
            "…"
        } else {
            ""
        };
        format!("{before}\"{}\"{after}", self.bytes[..n].escape_ascii())
    }
}

impl fmt::Display for Data {
    /// `name (N bytes) at +F: …"escaped bytes"…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} bytes), from +{:#x}: {}",
            self.name,
            self.len,
            self.from,
            self.quoted(SHOWN)
        )
    }
}

impl fmt::Display for Instruction {
    /// `+0x135  lea 0x9211(%rip),%rsi  # anon .rodata@0x9211`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{:#x}  ", self.offset)?;
        match &self.text {
            Some(t) => f.write_str(t)?,
            None => write!(f, "(bytes that do not decode: {:02x?})", self.bytes)?,
        }
        if !self.refers_to.is_empty() {
            write!(f, "  # {}", self.refers_to.join(", "))?;
        }
        Ok(())
    }
}

impl Difference {
    /// The explanation as lines (without indentation): where and why, the instruction in
    /// each build, and for read-only data both contents, level by level.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "first difference at +{:#x}: {}",
            self.offset, self.cause
        )];
        let insn = |i: &Option<Instruction>| match i {
            Some(i) => i.to_string(),
            None => String::from("(the function ends before)"),
        };
        out.push(format!("  old {}", insn(&self.old)));
        out.push(format!("  new {}", insn(&self.new)));
        let mut cause = &self.cause;
        while let Cause::Content(c) = cause {
            out.push(format!("  old {}", c.old));
            out.push(format!("  new {}", c.new));
            out.push(format!("  at +{:#x} of it: {}", c.offset, c.cause));
            cause = &c.cause;
        }
        out
    }
}

impl fmt::Display for Difference {
    /// The first line of [`Difference::lines`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{:#x}: {}", self.offset, self.cause)
    }
}
