//! `hotkernel fuzz`: mutated and random requests written into a live guest's mailbox
//! for a bounded time, with the guest checked after each.
//!
//! | module | what |
//! | --- | --- |
//! | [`input`] | an input: steps (data, request blocks in several framings, waits), classes, the replay file |
//! | [`generate`] | inputs from a seed and the real packages and patches ([`Seeds`]) |
//! | [`exec`] | running an input against the guest, and the check after it ([`Finding`]) |
//!
//! A run: input `i` is [`generate`]`(seed, i, seeds)` (the same seed and seeds make the
//! same inputs; the guest's timing still decides, for instance, whether a request
//! written during a staging is read before or after it ends). After each input the
//! guest must be alive, its heartbeat advancing, answer a ping, and its tasks be
//! continuous with the snapshot taken after the input before. The run stops at the
//! first finding and saves the input (with the few before it, which brought the guest
//! to where it was) as a [`ReplayFile`] for `hotkernel fuzz --replay FILE`.
//!
//! What it does not do: it does not sign, and does not run what the guest cannot tell
//! from a real update (see [`generate`]); it does not exhaust the sequence numbers (a
//! request numbered `u64::MAX` would deafen the mailbox for good, which is the protocol,
//! not a fault).

pub mod exec;
pub mod generate;
pub mod input;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image_format::mailbox::Command;
use serde_json::{json, Value};

pub use exec::{Finding, Outcome, Target};
pub use generate::{generate, Seeds};
pub use input::{Class, Input, ReplayFile};

use crate::error::{Error, Result};
use crate::{hotpatch, update};

/// Inputs kept before a finding, to replay with it.
const CONTEXT: usize = 4;

/// The packages and patches the inputs are made from: `twin`'s and `v1`'s packages, and
/// the `v1` → `patch-a` patch (bound to the `v1` build this tree makes, which the
/// fuzzer's own VM boots).
pub fn build_seeds(target: &Target) -> Result<Seeds> {
    let mut packages = Vec::new();
    for variant in ["twin", "v1"] {
        packages.push((variant.to_owned(), update::package_variant(variant)?.0));
    }
    let patches = vec![(
        "v1→patch-a".to_owned(),
        hotpatch::patch_between("v1", "patch-a")?,
    )];
    let status = target.mailbox().status()?;
    Ok(Seeds {
        packages,
        patches,
        data_capacity: target.mailbox().data_capacity() as u64,
        staging_capacity: status.staging_capacity,
    })
}

/// How long a run goes on.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    /// Stop after this long.
    pub duration: Duration,
    /// Stop after this many inputs (whichever comes first).
    pub max_inputs: Option<u64>,
    /// Where a finding's replay file goes.
    pub save_to: PathBuf,
}

/// Inputs and per-request outcomes of one class.
#[derive(Debug, Clone, Default)]
pub struct ClassCount {
    pub inputs: u64,
    /// Requests by outcome: the guest's status (`Ok`, `BadRequest`, …) or `no answer`.
    pub outcomes: BTreeMap<String, u64>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub seed: u64,
    pub inputs: u64,
    pub elapsed: Duration,
    pub classes: BTreeMap<Class, ClassCount>,
    /// The first finding, and where its replay file is.
    pub finding: Option<(Finding, PathBuf)>,
    /// The guest's boot sequence at the end (1 + the swaps the inputs made).
    pub boot_seq: u64,
    pub tasks: usize,
}

impl Summary {
    fn new(seed: u64) -> Self {
        Summary {
            seed,
            inputs: 0,
            elapsed: Duration::ZERO,
            classes: BTreeMap::new(),
            finding: None,
            boot_seq: 0,
            tasks: 0,
        }
    }

    fn count(&mut self, input: &Input, outcomes: &[(u32, exec::Outcome)]) {
        self.inputs += 1;
        let c = self.classes.entry(input.class).or_default();
        c.inputs += 1;
        for (command, done) in outcomes {
            let name = match Command::from_code(*command) {
                Some(cmd) => format!("{cmd} {}", exec::outcome_name(*done)),
                None => format!("unknown {}", exec::outcome_name(*done)),
            };
            *c.outcomes.entry(name).or_default() += 1;
        }
    }

    /// The run as one JSON object.
    pub fn json(&self) -> Value {
        let classes: serde_json::Map<String, Value> = self
            .classes
            .iter()
            .map(|(class, c)| {
                (
                    class.name().to_owned(),
                    json!({"inputs": c.inputs, "outcomes": c.outcomes}),
                )
            })
            .collect();
        json!({
            "seed": self.seed,
            "inputs": self.inputs,
            "seconds": self.elapsed.as_secs_f64(),
            "boot_seq": self.boot_seq,
            "tasks": self.tasks,
            "classes": classes,
            "finding": self.finding.as_ref().map(|(f, path)| json!({
                "what": f.to_string(),
                "replay": path.display().to_string(),
            })),
        })
    }
}

/// Runs inputs `0, 1, …` of `opts.seed` against `target` until the time or the input
/// count is up or the check finds something. `progress` hears the summary so far after
/// every input.
pub fn run(
    target: &mut Target,
    seeds: &Seeds,
    opts: &Options,
    mut progress: impl FnMut(&Summary),
) -> Result<Summary> {
    let start = Instant::now();
    let mut summary = Summary::new(opts.seed);
    let mut recent: VecDeque<Input> = VecDeque::new();
    let mut index = 0;
    while start.elapsed() < opts.duration && opts.max_inputs.is_none_or(|n| index < n) {
        if crate::cli::signals::received().is_some() {
            break;
        }
        let input = generate(opts.seed, index, seeds);
        index += 1;
        recent.push_back(input.clone());
        if recent.len() > CONTEXT + 1 {
            recent.pop_front();
        }
        match target.run(&input) {
            Ok(outcomes) => summary.count(&input, &outcomes),
            // A signal stopped the run (and our VM with it): not the guest's doing.
            Err(_) if crate::cli::signals::received().is_some() => break,
            Err(finding) => {
                summary.count(&input, &[]);
                let path = save(&opts.save_to, opts.seed, &finding, recent.into())?;
                summary.finding = Some((finding, path));
                break;
            }
        }
        finish(target, &mut summary, start);
        progress(&summary);
    }
    finish(target, &mut summary, start);
    Ok(summary)
}

/// Runs the inputs of a replay file in order, checking after each.
pub fn replay(target: &mut Target, file: &Path, save_to: &Path) -> Result<Summary> {
    let r = load(file)?;
    let start = Instant::now();
    let mut summary = Summary::new(r.seed);
    for (i, input) in r.inputs.iter().enumerate() {
        match target.run(input) {
            Ok(outcomes) => summary.count(input, &outcomes),
            Err(finding) => {
                summary.count(input, &[]);
                let path = save(save_to, r.seed, &finding, r.inputs[..=i].to_vec())?;
                summary.finding = Some((finding, path));
                break;
            }
        }
    }
    finish(target, &mut summary, start);
    Ok(summary)
}

fn finish(target: &Target, summary: &mut Summary, start: Instant) {
    summary.elapsed = start.elapsed();
    summary.tasks = target.tasks();
    if let Ok(s) = target.mailbox().status() {
        summary.boot_seq = s.boot_seq;
    }
}

/// Reads a replay file.
pub fn load(file: &Path) -> Result<ReplayFile> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::io(format!("read the replay file {}", file.display()), e))?;
    let r: ReplayFile = serde_json::from_str(&text).map_err(|e| {
        Error::Mailbox(format!(
            "{} is not a fuzz replay file: {e} (write one with `hotkernel fuzz`)",
            file.display()
        ))
    })?;
    if r.version != 1 {
        return Err(Error::Mailbox(format!(
            "{} is a replay file of version {}; this runner reads version 1",
            file.display(),
            r.version
        )));
    }
    Ok(r)
}

fn save(path: &Path, seed: u64, finding: &Finding, inputs: Vec<Input>) -> Result<PathBuf> {
    let file = ReplayFile {
        version: 1,
        seed,
        finding: finding.to_string(),
        inputs,
    };
    let text = serde_json::to_string_pretty(&file)
        .map_err(|e| Error::Mailbox(format!("cannot encode the replay file: {e}")))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    }
    std::fs::write(path, text).map_err(|e| Error::io(format!("write {}", path.display()), e))?;
    Ok(path.to_owned())
}
