//! Reports of hotpatch operations: [`PatchReport`] answers `PatchApply` and
//! `PatchRemove`; [`PatchList`] answers `PatchList`.
//!
//! A patch report gives the pause (from the first park IPI to every CPU released, TSC
//! measured by the guest), the CPUs parked, and every function and site the operation
//! touched; a refusal carries its reason (which names the CPU and the function when a
//! CPU stands in a site).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::{bounded, read_count, read_text, write_text, Layout};
use crate::error::Result;
use crate::mailbox::ReportKind;
use crate::wire::{Reader, Writer};

/// Most functions (or sites) named in one patch report or list entry.
pub const MAX_PATCH_FUNCTIONS: usize = 64;
/// Most patches in a list.
pub const MAX_PATCHES: usize = 64;

const REPORT: Layout = Layout {
    kind: ReportKind::Patch,
    version: 2,
    name: "patch report",
};
const LIST: Layout = Layout {
    kind: ReportKind::PatchList,
    version: 1,
    name: "patch list",
};

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchOp {
    /// A patch was applied (jumps written).
    Apply,
    /// A patch was removed (original bytes restored).
    Remove,
}

impl fmt::Display for PatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Apply => "apply",
            Self::Remove => "remove",
        })
    }
}

/// A patched function and where its jump is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchedFunction {
    /// Demangled name, without hash.
    pub name: String,
    /// Absolute address of the site (the function's entry in the running image).
    pub site: u64,
}

/// One apply or remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchReport {
    /// Apply or remove.
    pub op: PatchOp,
    /// The patch's id.
    pub id: u64,
    /// The patch's version (set by the generator).
    pub version: u32,
    /// The patch's label.
    pub label: String,
    /// Its place in the stack (1 = bottom).
    pub sequence: u32,
    /// Functions whose entries were written (apply) or restored (remove); for a
    /// refused apply, those it would have written (empty when the patch did not parse
    /// or was refused before its sites were resolved).
    pub functions: Vec<PatchedFunction>,
    /// From the first park IPI to every CPU released, nanoseconds (0 if nothing stopped).
    pub pause_ns: u64,
    /// Of which from the first park IPI to the last CPU's acknowledgement (the park
    /// round trip); the rest is the work done with every CPU stopped.
    pub park_ns: u64,
    /// CPUs parked for the operation.
    pub cpus_parked: u32,
    /// Patches applied after the operation.
    pub stack_depth: u32,
    /// Why it was refused (`None`: done).
    pub refused: Option<String>,
}

impl PatchReport {
    /// Writes the report into `out`; returns the length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize> {
        bounded(
            "patch report function list",
            self.functions.len(),
            MAX_PATCH_FUNCTIONS,
        )?;
        REPORT.encode(out, |w| self.write(w))
    }

    /// The encoded report.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        REPORT.to_vec(|w| self.write(w))
    }

    fn write(&self, w: &mut Writer<'_>) {
        w.u32(match self.op {
            PatchOp::Apply => 1,
            PatchOp::Remove => 2,
        });
        w.u64(self.id);
        w.u32(self.version);
        w.u32(self.sequence);
        write_text(w, &self.label);
        w.u64(self.pause_ns);
        w.u64(self.park_ns);
        w.u32(self.cpus_parked);
        w.u32(self.stack_depth);
        match &self.refused {
            None => w.u8(0),
            Some(reason) => {
                w.u8(1);
                write_text(w, reason);
            }
        }
        write_functions(w, &self.functions);
    }

    /// Reads exactly one patch report.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        REPORT.decode(bytes, |r| {
            let op = match r.u32()? {
                1 => PatchOp::Apply,
                2 => PatchOp::Remove,
                other => {
                    return Err(crate::FormatError::InvalidField {
                        field: "patch operation",
                        value: u64::from(other),
                        reason: "is neither apply (1) nor remove (2)",
                    })
                }
            };
            let id = r.u64()?;
            let version = r.u32()?;
            let sequence = r.u32()?;
            let label = read_text(r, "patch label")?;
            let pause_ns = r.u64()?;
            let park_ns = r.u64()?;
            let cpus_parked = r.u32()?;
            let stack_depth = r.u32()?;
            let refused = match r.u8()? {
                0 => None,
                _ => Some(read_text(r, "refusal reason")?),
            };
            let functions = read_functions(r)?;
            Ok(Self {
                op,
                id,
                version,
                label,
                sequence,
                functions,
                pause_ns,
                park_ns,
                cpus_parked,
                stack_depth,
                refused,
            })
        })
    }
}

/// An applied patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchEntry {
    /// The patch's id.
    pub id: u64,
    /// The patch's version.
    pub version: u32,
    /// Its place in the stack (1 = bottom, applied first).
    pub sequence: u32,
    /// The patch's label.
    pub label: String,
    /// Its functions and sites.
    pub functions: Vec<PatchedFunction>,
    /// When it was applied, nanoseconds since the machine's first boot.
    pub applied_ns: u64,
}

/// The applied patches, bottom first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PatchList {
    /// The patches.
    pub patches: Vec<PatchEntry>,
}

impl PatchList {
    /// Writes the list into `out`; returns the length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize> {
        bounded("patch list", self.patches.len(), MAX_PATCHES)?;
        for p in &self.patches {
            bounded(
                "patch list function list",
                p.functions.len(),
                MAX_PATCH_FUNCTIONS,
            )?;
        }
        LIST.encode(out, |w| self.write(w))
    }

    /// The encoded list.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        LIST.to_vec(|w| self.write(w))
    }

    fn write(&self, w: &mut Writer<'_>) {
        w.u32(self.patches.len() as u32);
        for p in &self.patches {
            w.u64(p.id);
            w.u32(p.version);
            w.u32(p.sequence);
            write_text(w, &p.label);
            w.u64(p.applied_ns);
            write_functions(w, &p.functions);
        }
    }

    /// Reads exactly one patch list.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        LIST.decode(bytes, |r| {
            let n = r.u32()?;
            let n = read_count(
                r,
                "patch list",
                u64::from(n),
                MAX_PATCHES,
                8 + 4 + 4 + 2 + 8 + 4,
            )?;
            let mut patches = Vec::with_capacity(n);
            for _ in 0..n {
                let id = r.u64()?;
                let version = r.u32()?;
                let sequence = r.u32()?;
                let label = read_text(r, "patch label")?;
                let applied_ns = r.u64()?;
                let functions = read_functions(r)?;
                patches.push(PatchEntry {
                    id,
                    version,
                    sequence,
                    label,
                    functions,
                    applied_ns,
                });
            }
            Ok(Self { patches })
        })
    }
}

fn write_functions(w: &mut Writer<'_>, functions: &[PatchedFunction]) {
    w.u32(functions.len() as u32);
    for f in functions {
        w.u64(f.site);
        write_text(w, &f.name);
    }
}

fn read_functions(r: &mut Reader<'_>) -> Result<Vec<PatchedFunction>> {
    let n = r.u32()?;
    let n = read_count(
        r,
        "patched function list",
        u64::from(n),
        MAX_PATCH_FUNCTIONS,
        10,
    )?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let site = r.u64()?;
        let name = read_text(r, "function name")?;
        out.push(PatchedFunction { name, site });
    }
    Ok(out)
}

impl fmt::Display for PatchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.refused {
            // Id 0: the patch did not parse, or a removal named none.
            Some(reason) if self.id == 0 => write!(f, "{} refused: {reason}", self.op),
            Some(reason) => write!(f, "{} of patch {:#x} refused: {reason}", self.op, self.id),
            None => write!(
                f,
                "{} patch {:#x} v{} ({} functions): pause {} ns, {} CPUs parked",
                self.op,
                self.id,
                self.version,
                self.functions.len(),
                self.pause_ns,
                self.cpus_parked
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn reports_and_lists_round_trip() {
        let f = vec![PatchedFunction {
            name: "kernel::tasks::counter::step".into(),
            site: 0xffff_ffff_8003_d6e0,
        }];
        let r = PatchReport {
            op: PatchOp::Apply,
            id: 0x1234,
            version: 2,
            label: "patch-a".into(),
            sequence: 1,
            functions: f.clone(),
            pause_ns: 42_000,
            park_ns: 30_000,
            cpus_parked: 3,
            stack_depth: 1,
            refused: None,
        };
        assert_eq!(PatchReport::decode(&r.to_vec().unwrap()).unwrap(), r);
        let refused = PatchReport {
            refused: Some("cpu2 stands in kernel::sched::run".into()),
            ..r.clone()
        };
        assert_eq!(
            PatchReport::decode(&refused.to_vec().unwrap()).unwrap(),
            refused
        );
        assert!(refused.to_string().contains("cpu2 stands in"));
        let list = PatchList {
            patches: vec![PatchEntry {
                id: 1,
                version: 1,
                sequence: 1,
                label: "a".into(),
                functions: f,
                applied_ns: 9,
            }],
        };
        assert_eq!(PatchList::decode(&list.to_vec().unwrap()).unwrap(), list);
    }

    #[test]
    fn decoding_damaged_bytes_never_panics() {
        let r = PatchList::default().to_vec().unwrap();
        for i in 0..r.len() {
            let mut b = r.clone();
            b[i] ^= 0xff;
            let _ = PatchList::decode(&b);
            let _ = PatchList::decode(&b[..i]);
        }
    }
}
