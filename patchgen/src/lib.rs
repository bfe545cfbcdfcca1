//! hotkernel's hotpatch generator (host only, `std`): two kernel builds → verdicts and,
//! when every change can be hotpatched, a patch. `hotkernel patch make` is a thin
//! wrapper.
//!
//! This crate owns the differ: reading both ELFs (`object`), decoding their functions
//! (`iced-x86`), pairing them by demangled name (`rustc-demangle`), comparing, refusing
//! and extracting. The patch format itself — its builder ([`PatchSpec`]), parser and
//! apply arithmetic — stays in `image_format::hotpatch` (`no_std`), which the guest
//! shares.
//!
//! Data enters as two kernel ELF files' bytes, the running image's (`old`) and the
//! fixed build's (`new`), with [`PatchOptions`], all through [`make_patch`]. It leaves
//! as a [`PatchOutput`]: a [`FunctionVerdict`] for every change and, unless nothing
//! changed, the patch bytes (already parsed back and checked). When any change is
//! refused it leaves as [`DiffError::NotHotpatchable`] with every verdict and no patch.
//!
//! Both builds must be linked with `--emit-relocs` (the kernel target's flags do it)
//! and `--build-id=sha1`. The generator
//!
//! 1. reads each ELF (`image`) and decodes every function (`locate`, `decode`);
//! 2. pairs functions by demangled name without hash (`symbols`);
//! 3. compares each pair with relocation fields masked and targets compared by what
//!    they are (`compare`): a function that only moved, or whose callee moved, is
//!    unchanged;
//! 4. applies the refusal rules (`rules`): machinery, state records, writable
//!    statics, the embedded identity's schemas, code outside functions;
//! 5. extracts the changed functions with everything they need (`extract`), builds
//!    the patch ([`PatchSpec`]) and checks it by installing it on paper (`verify`).
//!
//! It never produces a silently wrong patch: any refusal refuses the whole patch with
//! [`DiffError::NotHotpatchable`], which lists every verdict.
//!
//! | module | owns |
//! | --- | --- |
//! | `image` | one ELF: sections, symbols, relocations, build id and hashes |
//! | `symbols` | demangled names, items, pairing between builds |
//! | `decode` | instruction boundaries (`iced-x86`) |
//! | `locate` | references and what an address is |
//! | `compare` | equivalence of functions and data |
//! | `explain`, `difference` | the first difference of a changed function, for `--explain` |
//! | `rules` | what a hotpatch refuses |
//! | `extract` | carried code and data, relocations |
//! | `verify` | the self-check of a built patch |
//! | `verdict` | [`FunctionVerdict`], [`DiffError`] and their texts |
//!
//! The unit tests run the generator on small synthetic ELFs (`testelf`);
//! `tests/tests/patchgen.rs` runs it on the real kernel variants.

#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod compare;
mod decode;
mod difference;
mod explain;
mod extract;
mod image;
mod locate;
mod rules;
mod symbols;
mod verdict;
mod verify;

#[cfg(test)]
mod testelf;
#[cfg(test)]
mod tests;

pub use difference::{Cause, ContentDifference, Data, Difference, Instruction};
pub use verdict::{
    DiffError, FunctionVerdict, Note, Reason, Remedy, StaticChange, Subject, Verdict, Warning,
    Which,
};

use image_format::hotpatch::PatchSpec;
use image_format::identity::Label;

use compare::Compare;
use extract::{extract, Carried};
use image::Image;
use locate::Analysis;
use symbols::Matching;

/// Choices `hotkernel patch make` passes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchOptions {
    /// The patch's version (sequence number), at least 1 (`--version N`).
    pub version: u32,
    /// A human label (`--label`), at most 48 bytes of UTF-8.
    pub label: Option<String>,
    /// List unchanged functions too (`--explain --all`).
    pub include_unchanged: bool,
}

impl Default for PatchOptions {
    fn default() -> Self {
        Self {
            version: 1,
            label: None,
            include_unchanged: false,
        }
    }
}

/// A patch, or the knowledge that there is nothing to patch, with every verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchOutput {
    /// The patch; `None` when no function changed.
    pub bytes: Option<Vec<u8>>,
    /// Every changed and carried function (and unchanged ones when asked).
    pub verdicts: Vec<FunctionVerdict>,
    /// What could not be checked.
    pub notes: Vec<Note>,
}

/// Compares `old_elf` (the running image) with `new_elf` and makes the patch.
pub fn make_patch(
    old_elf: &[u8],
    new_elf: &[u8],
    opts: &PatchOptions,
) -> Result<PatchOutput, DiffError> {
    if opts.version == 0 {
        return Err(DiffError::Version);
    }
    let label = match &opts.label {
        Some(l) => Label::try_new(l).map_err(DiffError::Label)?,
        None => Label::EMPTY,
    };
    let parse = |bytes, which| {
        Image::parse(bytes)
            .map(Analysis::of)
            .map_err(|reason| DiffError::Elf { which, reason })
    };
    let old = parse(old_elf, Which::Old)?;
    let new = parse(new_elf, Which::New)?;
    let matching = Matching::of(&old.items, &new.items);
    let mut cmp = Compare::new(&old, &new, &matching);

    let mut changed = Vec::new();
    let mut why = Vec::new();
    let mut unchanged = Vec::new();
    for n in 0..new.items.funcs.len() {
        let Some(&o) = matching.new_to_old.get(&n) else {
            continue;
        };
        match cmp.functions(o, n) {
            Some(d) => {
                changed.push((n, o));
                why.push(d);
            }
            None => unchanged.push(n),
        }
    }

    let mut notes = Vec::new();
    let mut verdicts = Vec::new();
    let refuse = |name: String, subject, reason| FunctionVerdict {
        name,
        subject,
        verdict: Verdict::Refused {
            reason,
            remedy: Remedy::FullSwap,
        },
        warnings: Vec::new(),
    };
    for (name, change) in rules::statics(&mut cmp) {
        verdicts.push(refuse(name, Subject::Static, Reason::Static(change)));
    }
    for (name, reason) in rules::identity(&old, &new, &mut notes) {
        let subject = match reason {
            Reason::StateLayout { .. } => Subject::StateLayout,
            _ => Subject::Identity,
        };
        verdicts.push(refuse(name, subject, reason));
    }
    for (name, reason) in rules::outside_functions(&mut cmp) {
        verdicts.push(refuse(name, Subject::CodeOutsideFunctions, reason));
    }

    let ex = extract(&mut cmp, &changed);
    for (name, used_by) in &ex.added_statics {
        let change = StaticChange::Added {
            used_by: used_by.clone(),
        };
        verdicts.push(refuse(
            name.clone(),
            Subject::Static,
            Reason::Static(change),
        ));
    }
    for (n, carried) in &ex.carried {
        let f = &new.items.funcs[*n];
        let mut warnings = Vec::new();
        if !new.code[*n].decoded.returns {
            warnings.push(Warning::NeverReturns);
        }
        let ambiguous = matching.ambiguous.get(&f.name).copied();
        let mut reasons = ex.refusals.get(n).cloned().unwrap_or_default();
        match (carried, ambiguous) {
            (Carried::Replace { .. }, Some((o, nn))) => {
                reasons.push(Reason::Ambiguous { old: o, new: nn })
            }
            (Carried::New { .. }, Some((o, nn))) => {
                warnings.push(Warning::SharedName { old: o, new: nn })
            }
            _ => {}
        }
        reasons.sort_by_key(priority);
        let verdict = match (reasons.into_iter().next(), carried) {
            (Some(reason), _) => Verdict::Refused {
                reason,
                remedy: Remedy::FullSwap,
            },
            (None, Carried::Replace { old: o }) => {
                let i = changed.iter().position(|c| c.0 == *n).unwrap_or(0);
                Verdict::Changed {
                    site: old.image.offset_of(old.items.funcs[*o].addr),
                    old_size: old.items.funcs[*o].size,
                    new_size: f.size,
                    why: why[i].clone(),
                }
            }
            (None, Carried::New { needed_by }) => Verdict::New {
                size: f.size,
                needed_by: needed_by.clone(),
            },
        };
        verdicts.push(FunctionVerdict {
            name: f.name.clone(),
            subject: Subject::Function,
            verdict,
            warnings,
        });
    }
    if opts.include_unchanged {
        for n in unchanged {
            verdicts.push(FunctionVerdict {
                name: new.items.funcs[n].name.clone(),
                subject: Subject::Function,
                verdict: Verdict::Unchanged,
                warnings: Vec::new(),
            });
        }
    }
    verdicts.sort_by(|a, b| {
        (rank(&a.verdict), a.subject, &a.name).cmp(&(rank(&b.verdict), b.subject, &b.name))
    });

    if verdicts.iter().any(FunctionVerdict::is_refused) {
        return Err(DiffError::NotHotpatchable { verdicts, notes });
    }
    if changed.is_empty() {
        return Ok(PatchOutput {
            bytes: None,
            verdicts,
            notes,
        });
    }
    // An ELF without `.hk_svn` (the generator's synthetic test images) is SVN 0.
    let svn = image_format::package::elf_svn(new_elf).unwrap_or(0);
    let spec = PatchSpec {
        version: opts.version,
        svn,
        label,
        target: old.image.target,
        functions: ex.functions.clone(),
        data: ex.data.clone(),
        relocations: ex.relocations.clone(),
    };
    let bytes = spec.build().map_err(DiffError::Build)?;
    verify::verify(&mut cmp, &ex, &bytes).map_err(DiffError::SelfCheck)?;
    Ok(PatchOutput {
        bytes: Some(bytes),
        verdicts,
        notes,
    })
}

/// Order of verdicts in a listing: refusals first, then patched, carried, unchanged.
fn rank(v: &Verdict) -> u8 {
    match v {
        Verdict::Refused { .. } => 0,
        Verdict::Changed { .. } => 1,
        Verdict::New { .. } => 2,
        Verdict::Unchanged => 3,
    }
}

/// Which reason to show first when a function has several.
fn priority(r: &Reason) -> u8 {
    match r {
        Reason::StateLayout { .. } => 0,
        Reason::Machinery { .. } => 1,
        Reason::Static(_) => 2,
        Reason::Ambiguous { .. } => 3,
        Reason::TooShort { .. } | Reason::SiteAtTextEnd => 4,
        _ => 5,
    }
}
