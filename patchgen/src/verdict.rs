//! What the differ says about each change: [`FunctionVerdict`], and the errors of
//! [`super::make_patch`].
//!
//! Every refusal names its reason and its remedy; the remedy for everything a hotpatch
//! cannot carry is the full swap, which replaces the whole image and converts state.

use std::fmt;

use image_format::error::FormatError;
use image_format::hotpatch::PatchError;

use super::difference::Difference;

/// Which of the two builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The running image (the patch's target).
    Old,
    /// The fixed build.
    New,
}

impl fmt::Display for Which {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Old => "old",
            Self::New => "new",
        })
    }
}

/// What a verdict is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    /// A function (a `FUNC` symbol).
    Function,
    /// A writable static (`.data`/`.bss` object).
    Static,
    /// A state record's layout or schema version.
    StateLayout,
    /// The image's embedded identity.
    Identity,
    /// Code outside every function symbol (`global_asm!`).
    CodeOutsideFunctions,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Function => "function",
            Self::Static => "static",
            Self::StateLayout => "state layout",
            Self::Identity => "identity",
            Self::CodeOutsideFunctions => "code outside functions",
        })
    }
}

/// How to apply a change the hotpatch refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// Replace the whole image: `hotkernel swap`.
    FullSwap,
}

impl fmt::Display for Remedy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FullSwap => f.write_str("apply it with a full swap: `hotkernel swap`"),
        }
    }
}

/// How a writable static changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaticChange {
    /// Its size changed.
    Size {
        /// Old size.
        old: u64,
        /// New size.
        new: u64,
    },
    /// Its initial bytes (or what its pointers point at) changed.
    InitialBytes,
    /// Patched code uses it and the running image does not have it.
    Added {
        /// The function that uses it.
        used_by: String,
    },
}

/// Why a change cannot be hotpatched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The function belongs to the swap/patch machinery.
    Machinery {
        /// The path prefix or symbol pattern it matched.
        prefix: &'static str,
    },
    /// The old function is shorter than the 5-byte jump written at its entry.
    TooShort {
        /// Its size.
        size: u64,
    },
    /// A writable static changed or was added.
    Static(StaticChange),
    /// A state record's layout or schema version changed.
    StateLayout {
        /// What changed, e.g. "ticker-state schema v1 → v2".
        detail: String,
    },
    /// The image identity changed (version, label, capabilities).
    Identity {
        /// What changed.
        detail: String,
    },
    /// Code outside every function symbol differs.
    CodeOutsideFunctions {
        /// Where (old address, or the new one if the old build has none).
        at: u64,
        /// The nearest label.
        near: String,
    },
    /// Several functions share the name; the changed one cannot be placed.
    Ambiguous {
        /// How many the old build has.
        old: u32,
        /// How many the new build has.
        new: u32,
    },
    /// A relocation type the patch format cannot express.
    UnsupportedRelocation {
        /// Offset in the function.
        offset: u32,
        /// ELF type.
        r_type: u32,
    },
    /// Bytes the decoder does not understand.
    Undecodable {
        /// Offset in the function.
        offset: u32,
    },
    /// A PC-relative operand leaves the function without a relocation.
    UnlinkedReference {
        /// Offset of the instruction.
        offset: u32,
        /// Where it points.
        target: u64,
    },
    /// A reference the patch cannot resolve in the running image.
    Unresolvable {
        /// Offset in the function.
        offset: u32,
        /// What it refers to.
        target: String,
        /// Why it cannot be resolved.
        why: &'static str,
    },
    /// The site is too close to the end of the text for its original bytes.
    SiteAtTextEnd,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Machinery { prefix } => write!(
                f,
                "part of the swap/patch machinery ({prefix}): it runs while the patch is installed and its callers' state is in flight"
            ),
            Self::TooShort { size } => write!(
                f,
                "the old function is {size} bytes, too short for the 5-byte jump written at its entry"
            ),
            Self::Static(StaticChange::Size { old, new }) => write!(
                f,
                "a writable static changed size ({old} → {new} bytes); live state cannot change shape under a hotpatch"
            ),
            Self::Static(StaticChange::InitialBytes) => write!(
                f,
                "a writable static's initial value changed; the running image's value is live state a hotpatch does not touch"
            ),
            Self::Static(StaticChange::Added { used_by }) => write!(
                f,
                "a new writable static, used by {used_by}; the running image has no memory for it"
            ),
            Self::StateLayout { detail } => write!(f, "a state record's layout changed: {detail}"),
            Self::Identity { detail } => write!(
                f,
                "the image identity changed ({detail}); a hotpatch does not change which image is running"
            ),
            Self::CodeOutsideFunctions { at, near } => write!(
                f,
                "code outside any function symbol differs at {at:#x} (near {near}); only whole functions can be patched"
            ),
            Self::Ambiguous { old, new } => write!(
                f,
                "{old} function(s) in the old build and {new} in the new share this name; the changed one cannot be matched with certainty"
            ),
            Self::UnsupportedRelocation { offset, r_type } => write!(
                f,
                "relocation type {r_type} at +{offset:#x} has no equivalent in the patch format"
            ),
            Self::Undecodable { offset } => write!(f, "no valid instruction at +{offset:#x}"),
            Self::UnlinkedReference { offset, target } => write!(
                f,
                "the instruction at +{offset:#x} refers to {target:#x} outside the function without a relocation; moved, it would point elsewhere"
            ),
            Self::Unresolvable { offset, target, why } => {
                write!(f, "+{offset:#x} refers to {target}: {why}")
            }
            Self::SiteAtTextEnd => write!(
                f,
                "the function lies within 16 bytes of the end of the text, where the patch cannot record its original bytes"
            ),
        }
    }
}

/// Something worth knowing about an accepted change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// The function has no `ret` and no tail call: CPUs already inside it keep running
    /// the old code, and the guest refuses the patch while any CPU stands in it.
    NeverReturns,
    /// Several functions share the name; this one was paired by address order.
    SharedName {
        /// Count in the old build.
        old: u32,
        /// Count in the new build.
        new: u32,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NeverReturns => write!(
                f,
                "never returns: a CPU that entered it keeps running the old code, and the guest refuses the patch while any CPU stands in it"
            ),
            Self::SharedName { old, new } => write!(
                f,
                "{old}/{new} functions share this name (old/new); paired by address order"
            ),
        }
    }
}

/// The differ's decision about one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Same code (listed only when asked).
    Unchanged,
    /// Will be patched: a jump at `site` to the new code.
    Changed {
        /// The old function's image-relative address.
        site: u64,
        /// Its size.
        old_size: u64,
        /// The new code's size.
        new_size: u64,
        /// The first difference found.
        why: Difference,
    },
    /// Carried because changed code calls it; the running image does not have it.
    New {
        /// Its size.
        size: u64,
        /// A carried function that refers to it.
        needed_by: String,
    },
    /// Cannot be hotpatched.
    Refused {
        /// Why.
        reason: Reason,
        /// What to do instead.
        remedy: Remedy,
    },
}

/// The verdict about one function (or static, state record, identity, asm block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionVerdict {
    /// The demangled name without hash (or the static's, the record kind's, …).
    pub name: String,
    /// What kind of thing `name` is.
    pub subject: Subject,
    /// The decision.
    pub verdict: Verdict,
    /// Things worth knowing even when accepted.
    pub warnings: Vec<Warning>,
}

impl FunctionVerdict {
    /// True for a refusal.
    pub fn is_refused(&self) -> bool {
        matches!(self.verdict, Verdict::Refused { .. })
    }
}

impl fmt::Display for FunctionVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.subject {
            Subject::Function => String::new(),
            other => format!(" ({other})"),
        };
        match &self.verdict {
            Verdict::Unchanged => write!(f, "unchanged {}{what}", self.name)?,
            Verdict::Changed {
                site,
                old_size,
                new_size,
                why,
            } => write!(
                f,
                "changed   {}{what}: site {site:#x}, {old_size} → {new_size} bytes ({why})",
                self.name
            )?,
            Verdict::New { size, needed_by } => write!(
                f,
                "new       {}{what}: {size} bytes, carried for {needed_by}",
                self.name
            )?,
            Verdict::Refused { reason, remedy } => {
                write!(f, "refused   {}{what}: {reason}; {remedy}", self.name)?
            }
        }
        for w in &self.warnings {
            write!(f, "\n          warning: {w}")?;
        }
        Ok(())
    }
}

/// Something about the inputs that limits what the differ could check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A build has no `.hk_identity` section: state layouts were not compared by
    /// schema table (the other rules still apply).
    IdentityMissing {
        /// Which build.
        which: Which,
    },
    /// A build's `.hk_identity` does not parse.
    IdentityMalformed {
        /// Which build.
        which: Which,
        /// The parser's error.
        error: String,
    },
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IdentityMissing { which } => write!(
                f,
                "the {which} build has no .hk_identity section: state layouts were not compared by schema table (the other rules still apply)"
            ),
            Self::IdentityMalformed { which, error } => write!(
                f,
                "the {which} build's .hk_identity does not parse ({error}): state layouts were not compared by schema table"
            ),
        }
    }
}

/// Why no patch was made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiffError {
    /// A build is not a kernel ELF the differ can read.
    Elf {
        /// Which build.
        which: Which,
        /// What is wrong.
        reason: String,
    },
    /// Some change cannot be hotpatched; every verdict is listed.
    NotHotpatchable {
        /// All verdicts (the refused ones and the others).
        verdicts: Vec<FunctionVerdict>,
        /// What could not be checked.
        notes: Vec<Note>,
    },
    /// The `--label` is not a valid label.
    Label(FormatError),
    /// The version is 0.
    Version,
    /// The patch did not build (a bug in the differ: please report it).
    Build(PatchError),
    /// The built patch failed the generator's self-check (a bug: please report it).
    SelfCheck(String),
}

impl fmt::Display for DiffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Elf { which, reason } => write!(
                f,
                "the {which} kernel is not an ELF the patch generator can read: {reason}"
            ),
            Self::NotHotpatchable { verdicts, .. } => {
                writeln!(f, "this change cannot be hotpatched:")?;
                for v in verdicts.iter().filter(|v| v.is_refused()) {
                    if let Verdict::Refused { reason, .. } = &v.verdict {
                        let what = match v.subject {
                            Subject::Function => String::new(),
                            other => format!(" ({other})"),
                        };
                        writeln!(f, "  - {}{what}: {reason}", v.name)?;
                    }
                }
                write!(f, "{}", Remedy::FullSwap)
            }
            Self::Label(e) => write!(f, "--label: {e}"),
            Self::Version => write!(f, "--version must be at least 1"),
            Self::Build(e) => write!(
                f,
                "the patch generator built an invalid patch ({e}); this is a bug in hotkernel"
            ),
            Self::SelfCheck(e) => write!(
                f,
                "the patch failed its self-check ({e}); this is a bug in hotkernel, the patch was not written"
            ),
        }
    }
}

impl std::error::Error for DiffError {}
