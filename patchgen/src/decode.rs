//! Instruction boundaries of a function, from an x86-64 decoder (`iced-x86`).
//!
//! The differ needs them for three things:
//! - where the instruction holding a relocation field ends: a PC-relative field
//!   refers to `S + A + (end − P)`, and only that address names the right symbol
//!   (`cmpb $0, x(%rip)` has an immediate after the field, so `A` is not `−4`);
//! - PC-relative operands and branches *without* a relocation: they must stay inside
//!   the function, or moving it to patch memory would break them;
//! - whether the function ever returns;
//! - the text of one instruction, in AT&T syntax as `objdump` prints it, and what
//!   differs between two of them, for the first difference `--explain` shows
//!   ([`text`], [`contrast`]).

use iced_x86::{
    Decoder, DecoderOptions, FlowControl, Formatter as _, GasFormatter, Instruction, Mnemonic,
    OpKind,
};

use super::difference::Cause;

/// A PC-relative reference found by the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PcRef {
    /// Offset of the instruction in the function.
    pub insn: u32,
    /// Length of the instruction.
    pub len: u32,
    /// The address it refers to.
    pub target: u64,
}

/// What the decoder found in one function.
#[derive(Debug, Clone, Default)]
pub(crate) struct Decoded {
    /// Start offset of every instruction, in order.
    starts: Vec<u32>,
    /// Offset just past the last instruction.
    end: u32,
    /// Offset of the first byte that is not a valid instruction.
    pub invalid_at: Option<u32>,
    /// A `ret` (or `iret`) or a tail jump out: the function can return.
    pub returns: bool,
    /// PC-relative operands and near branches.
    pub pc_refs: Vec<PcRef>,
}

impl Decoded {
    /// Offset just past the instruction holding byte `offset`, if decoded.
    pub fn insn_end(&self, offset: u32) -> Option<u32> {
        let i = self
            .starts
            .partition_point(|&s| s <= offset)
            .checked_sub(1)?;
        Some(self.starts.get(i + 1).copied().unwrap_or(self.end))
    }

    /// `(start, end)` of the decoded instruction holding byte `offset`.
    pub fn insn_at(&self, offset: u32) -> Option<(u32, u32)> {
        if offset >= self.end {
            return None;
        }
        let i = self
            .starts
            .partition_point(|&s| s <= offset)
            .checked_sub(1)?;
        Some((self.starts[i], self.insn_end(offset)?))
    }
}

/// The instruction at the start of `code`, linked at `addr`.
fn first(code: &[u8], addr: u64) -> Option<Instruction> {
    let mut decoder = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    if !decoder.can_decode() {
        return None;
    }
    let insn = decoder.decode();
    (!insn.is_invalid()).then_some(insn)
}

/// The instruction at the start of `code` (linked at `addr`) in AT&T syntax, e.g.
/// `lea 0x9211(%rip),%rsi`; `None` if it does not decode.
pub(crate) fn text(code: &[u8], addr: u64) -> Option<String> {
    let insn = first(code, addr)?;
    let mut formatter = GasFormatter::new();
    // `lea 0x10(%rip),%rsi` as objdump writes it, not the absolute address the
    // operand resolves to (the explanation names the target beside it).
    formatter.options_mut().set_rip_relative_addresses(true);
    formatter.options_mut().set_uppercase_hex(false);
    let mut out = String::new();
    formatter.format(&insn, &mut out);
    Some(out)
}

/// What differs between two instructions whose bytes differ outside relocation
/// fields: the operation, an immediate, or the other operands.
pub(crate) fn contrast(old: (&[u8], u64), new: (&[u8], u64)) -> Cause {
    let (Some(o), Some(n)) = (first(old.0, old.1), first(new.0, new.1)) else {
        return Cause::Bytes;
    };
    let mnemonic = |i: &Instruction| {
        let mut out = String::new();
        GasFormatter::new().format_mnemonic(i, &mut out);
        out
    };
    if o.mnemonic() != n.mnemonic() {
        return Cause::Opcode {
            old: mnemonic(&o),
            new: mnemonic(&n),
        };
    }
    if o.op_count() == n.op_count() {
        let immediate = |i: &Instruction, k: u32| {
            matches!(
                i.op_kind(k),
                OpKind::Immediate8
                    | OpKind::Immediate8_2nd
                    | OpKind::Immediate16
                    | OpKind::Immediate32
                    | OpKind::Immediate64
                    | OpKind::Immediate8to16
                    | OpKind::Immediate8to32
                    | OpKind::Immediate8to64
                    | OpKind::Immediate32to64
            )
            .then(|| i.immediate(k) as i64)
        };
        for k in 0..o.op_count() {
            if o.op_kind(k) != n.op_kind(k) {
                break;
            }
            if let (Some(a), Some(b)) = (immediate(&o, k), immediate(&n, k)) {
                if a != b {
                    return Cause::Immediate { old: a, new: b };
                }
            }
        }
    }
    Cause::Operands
}

/// Decodes `code`, linked at `addr`.
pub(crate) fn decode(code: &[u8], addr: u64) -> Decoded {
    let mut d = Decoded::default();
    let mut decoder = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    let end_addr = addr.saturating_add(code.len() as u64);
    while decoder.can_decode() {
        let insn = decoder.decode();
        let at = (insn.ip() - addr) as u32;
        if insn.is_invalid() {
            d.invalid_at = Some(at);
            break;
        }
        d.starts.push(at);
        let len = insn.len() as u32;
        match insn.flow_control() {
            FlowControl::Return => d.returns = true,
            // `jmp *x(%rip)`: a tail call through the GOT. (`jmp *%reg` is a jump
            // table inside the function.)
            FlowControl::IndirectBranch if insn.is_ip_rel_memory_operand() => d.returns = true,
            FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch => {
                // A jump out of the function is a tail call: it returns for us.
                let t = insn.near_branch_target();
                if t < addr || t >= end_addr {
                    d.returns = true;
                }
            }
            _ => {}
        }
        if insn.is_ip_rel_memory_operand() {
            d.pc_refs.push(PcRef {
                insn: at,
                len,
                target: insn.ip_rel_memory_address(),
            });
        }
        let near = (0..insn.op_count()).any(|i| {
            matches!(
                insn.op_kind(i),
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
            )
        });
        if near {
            d.pc_refs.push(PcRef {
                insn: at,
                len,
                target: insn.near_branch_target(),
            });
        }
        d.end = at + len;
    }
    d
}

/// True if `code` is only alignment padding: `int3`, `nop` (any length) or zeros.
pub(crate) fn is_padding(code: &[u8]) -> bool {
    if code.iter().all(|&b| b == 0xcc || b == 0) {
        return true;
    }
    let mut decoder = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    while decoder.can_decode() {
        let insn = decoder.decode();
        if insn.is_invalid() || !matches!(insn.mnemonic(), Mnemonic::Nop | Mnemonic::Int3) {
            return false;
        }
    }
    true
}
