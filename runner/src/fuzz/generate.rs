//! Making inputs: [`generate`] turns (seed, index) into one [`Input`], from the real
//! packages and patches in [`Seeds`]. The same seed, index and seeds give the same
//! input; nothing here looks at the guest.
//!
//! What is mutated where the guest cannot tell a mutation from the real thing is left
//! alone on purpose: until updates are signed, a package or patch whose digests are
//! recomputed over changed *code* (segment bytes, entry points, the link base, a patch's
//! code, tables and counts) is new code the guest runs by design, and crashing it
//! proves nothing. Resealed inputs change only header fields the guest checks, and
//! whatever of them the guest accepts is taken back at once ([`Step::Undo`]), never
//! swapped to or left applied.

use image_format::hotpatch::layout as patch_at;
use image_format::mailbox::report::MAX_IMAGE_READ;
use image_format::mailbox::{Command, RequestFlags};
use image_format::package::layout as pkg_at;
use image_format::PAGE_SIZE;

use super::input::{Class, Expect, Framing, Input, RawRequest, Rng, SeqSpec, Step};

/// The kernel image base, for image reads that land inside it.
const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;

/// The real material inputs are made from.
#[derive(Debug, Clone)]
pub struct Seeds {
    /// Update packages by name (`twin`, `v1`).
    pub packages: Vec<(String, Vec<u8>)>,
    /// Hotpatches for the booted image by name (`v1→patch-a`).
    pub patches: Vec<(String, Vec<u8>)>,
    /// Bytes of the guest's data area.
    pub data_capacity: u64,
    /// Bytes of the guest's staging buffer.
    pub staging_capacity: u64,
}

/// Relative weights of the classes.
const WEIGHTS: [(Class, u64); 11] = [
    (Class::RandomCommand, 12),
    (Class::RandomFlags, 10),
    (Class::Torn, 14),
    (Class::Stale, 6),
    (Class::Lengths, 8),
    (Class::DamagedPackage, 10),
    (Class::ResealedPackage, 10),
    (Class::DamagedPatch, 6),
    (Class::ResealedPatch, 6),
    (Class::InFlight, 8),
    (Class::Valid, 6),
];

/// Commands that change nothing (or only the staging buffer), for framings the guest
/// may take.
const HARMLESS: [Command; 5] = [
    Command::Ping,
    Command::PatchList,
    Command::Snapshot,
    Command::Reset,
    Command::ReadImage,
];

/// Input `index` of the run with `seed`.
pub fn generate(seed: u64, index: u64, seeds: &Seeds) -> Input {
    let mut rng = Rng::for_input(seed, index);
    let total: u64 = WEIGHTS.iter().map(|(_, w)| w).sum();
    let mut roll = rng.below(total);
    let mut class = Class::Valid;
    for (c, w) in WEIGHTS {
        if roll < w {
            class = c;
            break;
        }
        roll -= w;
    }
    let mut g = Gen {
        rng,
        seeds,
        steps: Vec::new(),
        note: String::new(),
    };
    match class {
        Class::RandomCommand => g.random_command(),
        Class::RandomFlags => g.random_flags(),
        Class::Torn => g.torn(),
        Class::Stale => g.stale(),
        Class::Lengths => g.lengths(),
        Class::DamagedPackage => g.damaged_package(),
        Class::ResealedPackage => g.resealed_package(),
        Class::DamagedPatch => g.damaged_patch(),
        Class::ResealedPatch => g.resealed_patch(),
        Class::InFlight => g.in_flight(),
        Class::Valid => g.valid(),
    }
    Input {
        index,
        class,
        note: g.note,
        steps: g.steps,
    }
}

struct Gen<'a> {
    rng: Rng,
    seeds: &'a Seeds,
    steps: Vec<Step>,
    note: String,
}

fn request(command: u32, flags: u32, payload_len: u64, args: [u64; 4]) -> RawRequest {
    RawRequest {
        seq: SeqSpec::Next { skip: 0 },
        command,
        flags,
        payload_len,
        args,
        framing: Framing::Sealed,
        expect: Expect::Any,
    }
}

/// The request flags the guest knows, but `HOLD_JOB`: a held job is answered after the
/// next request, so its answer would overwrite the one the fuzzer's own check waits
/// for (one response block). Its path has its own test (`tests/tests/fuzz.rs`).
fn known_flags() -> u32 {
    RequestFlags::all()
        .difference(RequestFlags::HOLD_JOB)
        .bits()
}

impl Gen<'_> {
    fn note(&mut self, text: impl AsRef<str>) {
        if !self.note.is_empty() {
            self.note.push_str("; ");
        }
        self.note.push_str(text.as_ref());
    }

    fn send(&mut self, r: RawRequest) {
        self.steps.push(Step::Request(r));
    }

    fn send_settle(&mut self, r: RawRequest) {
        self.send(r);
        self.steps.push(Step::Settle);
    }

    fn data(&mut self, bytes: Vec<u8>) {
        self.steps.push(Step::Data { offset: 0, bytes });
    }

    /// A value of the kind that finds edge cases: 0, small, a power of two ± 1, all ones,
    /// or anything.
    fn value(&mut self) -> u64 {
        match self.rng.below(6) {
            0 => 0,
            1 => self.rng.below(16),
            2 => (1u64 << self.rng.below(64))
                .wrapping_add(self.rng.below(3))
                .wrapping_sub(1),
            3 => u64::MAX - self.rng.below(2),
            4 => self.rng.below(1 << 20),
            _ => self.rng.next_u64(),
        }
    }

    fn args(&mut self) -> [u64; 4] {
        [self.value(), self.value(), self.value(), self.value()]
    }

    /// Flags: none, known bits (fault injection included), or unknown bits too.
    fn flags(&mut self) -> u32 {
        match self.rng.below(10) {
            0..=4 => 0,
            5..=7 => (self.rng.next_u64() as u32) & known_flags(),
            _ => self.rng.next_u64() as u32 & !RequestFlags::HOLD_JOB.bits(),
        }
    }

    fn known_command(&mut self) -> Command {
        let code = 1 + self.rng.below(9) as u32;
        Command::from_code(code).unwrap_or(Command::Ping)
    }

    fn random_command(&mut self) {
        let command = match self.rng.below(10) {
            0..=5 => self.known_command().code(),
            6 => 0,
            7 => 10 + self.rng.below(8) as u32,
            _ => self.rng.next_u64() as u32,
        };
        let flags = self.flags();
        let len = self.value();
        let mut args = self.args();
        if command == Command::ReadImage.code() && self.rng.chance(1, 2) {
            args[0] = KERNEL_BASE + self.rng.below(8 << 20);
            args[1] = self.rng.below(2 * MAX_IMAGE_READ as u64);
        }
        self.note(format!("command {command} flags {flags:#x} len {len:#x}"));
        self.send_settle(request(command, flags, len, args));
        self.steps.push(Step::Undo);
    }

    fn random_flags(&mut self) {
        let command = self.known_command();
        let flags = if self.rng.chance(1, 3) {
            self.rng.next_u64() as u32 & !RequestFlags::HOLD_JOB.bits()
        } else {
            (self.rng.next_u64() as u32) & known_flags()
        };
        self.note(format!("{command} flags {flags:#x}"));
        let args = self.args();
        self.send_settle(request(command.code(), flags, 0, args));
        self.steps.push(Step::Undo);
    }

    fn torn(&mut self) {
        let never_whole = self.rng.chance(2, 3);
        let command = if never_whole {
            self.known_command()
        } else {
            *self.rng.pick(&HARMLESS)
        };
        let framing = if never_whole {
            match self.rng.below(4) {
                0 => Framing::BodyOnly,
                1 => Framing::SeqEndDiffers {
                    delta: 1 + self.rng.below(1 << 16),
                },
                2 => Framing::BadChecksum {
                    xor: 1u64 << self.rng.below(64),
                },
                _ => Framing::Garbage {
                    bytes: self.rng.bytes(image_format::mailbox::Request::SIZE),
                },
            }
        } else if self.rng.chance(1, 2) {
            Framing::SeqChangedAfter {
                beats: self.rng.below(3) as u32,
                delta: 1 + self.rng.below(1000),
            }
        } else {
            Framing::Slow {
                beats: 1 + self.rng.below(3) as u32,
            }
        };
        self.note(format!("{command}, {framing:?}"));
        let len = self.rng.below(1 << 20);
        let args = [0, 0, 0, 0];
        let mut r = request(command.code(), 0, len, args);
        if never_whole {
            r.expect = Expect::Ignored;
        }
        r.framing = framing;
        self.send_settle(r);
        self.steps.push(Step::Undo);
    }

    fn stale(&mut self) {
        let command = self.known_command();
        let back = self.rng.below(4) as u32;
        self.note(format!("{command} {back} behind the last answered request"));
        let mut r = request(command.code(), self.flags(), 0, [0; 4]);
        r.seq = SeqSpec::Stale { back };
        r.expect = Expect::Ignored;
        self.send_settle(r);
        self.steps.push(Step::Undo);
    }

    fn package(&mut self) -> (String, Vec<u8>) {
        let (name, bytes) = self.rng.pick(&self.seeds.packages).clone();
        (name, bytes)
    }

    fn patch(&mut self) -> (String, Vec<u8>) {
        let (name, bytes) = self.rng.pick(&self.seeds.patches).clone();
        (name, bytes)
    }

    fn lengths(&mut self) {
        let patch = self.rng.chance(1, 3);
        let (name, bytes) = if patch { self.patch() } else { self.package() };
        let real = bytes.len() as u64;
        let (data, staging) = (self.seeds.data_capacity, self.seeds.staging_capacity);
        let len = match self.rng.below(10) {
            0 => 0,
            1 => data,
            2 => data + 1 + self.rng.below(PAGE_SIZE),
            3 => staging + 1,
            4 => staging,
            5 => u64::MAX - self.rng.below(2),
            6 => real.saturating_sub(1 + self.rng.below(64)),
            7 => real + 1 + self.rng.below(PAGE_SIZE),
            8 => 1 + self.rng.below(pkg_at::FIXED_SIZE as u64),
            _ => self.value(),
        };
        let command = if patch {
            Command::PatchApply
        } else {
            Command::Stage
        };
        self.note(format!(
            "{command} of {name} ({real} bytes) with length {len:#x}"
        ));
        self.data(bytes);
        self.send_settle(request(command.code(), 0, len, [0; 4]));
        self.steps.push(Step::Undo);
    }

    /// `bytes` damaged without resealing (bytes flipped, truncated, a digest changed,
    /// a range zeroed); the note says how.
    fn damage(&mut self, bytes: &mut Vec<u8>, header_size: usize) {
        match self.rng.below(5) {
            0 | 1 => {
                for _ in 0..1 + self.rng.below(8) {
                    // Half of the flips land in the header, where the checks are.
                    let at = if self.rng.chance(1, 2) {
                        self.rng.below(header_size as u64) as usize
                    } else {
                        self.rng.below(bytes.len() as u64) as usize
                    };
                    let xor = 1u8 << self.rng.below(8);
                    if let Some(b) = bytes.get_mut(at) {
                        *b ^= xor;
                    }
                    self.note(format!("byte {at:#x} ^= {xor:#04x}"));
                }
            }
            2 => {
                let len = self.rng.below(bytes.len() as u64) as usize;
                bytes.truncate(len);
                self.note(format!("truncated to {len} bytes"));
            }
            3 => {
                let at = pkg_at::HEADER_DIGEST + self.rng.below(64) as usize;
                if let Some(b) = bytes.get_mut(at) {
                    *b = b.wrapping_add(1);
                }
                self.note(format!("digest byte {at:#x} + 1"));
            }
            _ => {
                let at = self.rng.below(bytes.len() as u64) as usize;
                let n = (1 + self.rng.below(256) as usize).min(bytes.len() - at);
                if let Some(range) = bytes.get_mut(at..at + n) {
                    range.fill(0);
                }
                self.note(format!("{n} bytes at {at:#x} zeroed"));
            }
        }
    }

    /// What the guest must do with `damaged`, made from `original` by [`Gen::damage`]:
    /// refuse it when it is shorter or a byte under a digest changed (the header,
    /// `[0, header_size)`, or the payload, from `payload_at`); bytes of the padding
    /// between them are covered by neither digest.
    fn damaged_expect(
        original: &[u8],
        damaged: &[u8],
        header_size: usize,
        payload_at: usize,
    ) -> Expect {
        let covered = |at: usize| at < header_size || at >= payload_at;
        let changed = original
            .iter()
            .zip(damaged)
            .enumerate()
            .any(|(at, (a, b))| a != b && covered(at));
        if damaged.len() < original.len() || changed {
            Expect::Refused
        } else {
            Expect::Any
        }
    }

    fn header_size(bytes: &[u8]) -> usize {
        bytes
            .get(pkg_at::HEADER_SIZE..pkg_at::HEADER_SIZE + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, |b| u32::from_le_bytes(b) as usize)
            .min(bytes.len())
    }

    fn damaged_package(&mut self) {
        let (name, original) = self.package();
        self.note(format!("{name} package"));
        let mut bytes = original.clone();
        let header = Self::header_size(&bytes);
        self.damage(&mut bytes, header);
        let expect = Self::damaged_expect(
            &original,
            &bytes,
            header,
            header.next_multiple_of(PAGE_SIZE as usize),
        );
        let flags = if expect == Expect::Refused && self.rng.chance(1, 3) {
            self.note("then apply");
            RequestFlags::APPLY_AFTER_STAGE.bits()
        } else {
            0
        };
        let len = bytes.len() as u64;
        self.data(bytes);
        let mut r = request(Command::Stage.code(), flags, len, [0; 4]);
        r.expect = expect;
        self.send_settle(r);
        self.steps.push(Step::Undo);
    }

    fn damaged_patch(&mut self) {
        let (name, original) = self.patch();
        self.note(format!("{name} patch"));
        let mut bytes = original.clone();
        let header = bytes
            .get(patch_at::HEADER_SIZE..patch_at::HEADER_SIZE + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, |b| u32::from_le_bytes(b) as usize)
            .min(bytes.len());
        self.damage(&mut bytes, header);
        // A patch's payload follows its header at once or after padding: only the header
        // is known to be covered.
        let expect = Self::damaged_expect(&original, &bytes, header, usize::MAX);
        let len = bytes.len() as u64;
        self.data(bytes);
        let mut r = request(Command::PatchApply.code(), 0, len, [0; 4]);
        r.expect = expect;
        self.send_settle(r);
        self.steps.push(Step::Undo);
    }

    /// Changes 1–4 fields of `bytes` inside `ranges` (offset ranges of header fields):
    /// a byte flipped, a field set to an edge value.
    fn edit_fields(&mut self, bytes: &mut [u8], ranges: &[(usize, usize)]) {
        for _ in 0..1 + self.rng.below(4) {
            let &(from, to) = self.rng.pick(ranges);
            let at = from + self.rng.below((to - from) as u64) as usize;
            if self.rng.chance(1, 2) {
                let xor = 1u8 << self.rng.below(8);
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= xor;
                }
                self.note(format!("byte {at:#x} ^= {xor:#04x}"));
            } else {
                let v = self.value().to_le_bytes();
                let n = (to - at).min(8);
                if let Some(field) = bytes.get_mut(at..at + n) {
                    field.copy_from_slice(&v[..n]);
                }
                self.note(format!(
                    "{n} bytes at {at:#x} = {:#x}",
                    self.value_note(&v[..n])
                ));
            }
        }
    }

    fn value_note(&self, bytes: &[u8]) -> u64 {
        let mut b = [0u8; 8];
        b[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(b)
    }

    fn resealed_package(&mut self) {
        let (name, mut bytes) = self.package();
        self.note(format!("{name} package resealed"));
        // The fixed header but the digests, the link base and the entry points.
        let ranges = [
            (pkg_at::FORMAT_VERSION, pkg_at::HEADER_DIGEST),
            (pkg_at::BUILD_ID_LEN, pkg_at::LINK_BASE),
            (pkg_at::IMAGE_SPAN, pkg_at::KERNEL_ENTRY),
            (pkg_at::SEGMENT_COUNT, pkg_at::FIXED_SIZE),
        ];
        self.edit_fields(&mut bytes, &ranges);
        if self.rng.chance(1, 5) {
            let len = pkg_at::FIXED_SIZE + self.rng.below(bytes.len() as u64) as usize;
            bytes.truncate(len.min(bytes.len()));
            self.note(format!("truncated to {} bytes", bytes.len()));
        }
        // A reseal that cannot be done (a header size past the end) leaves the digests
        // wrong: still an input.
        if image_format::package::reseal(&mut bytes).is_err() {
            self.note("not resealable");
        }
        let len = bytes.len() as u64;
        self.data(bytes);
        self.send_settle(request(Command::Stage.code(), 0, len, [0; 4]));
        self.steps.push(Step::Undo);
    }

    fn resealed_patch(&mut self) {
        let (name, mut bytes) = self.patch();
        self.note(format!("{name} patch resealed"));
        // Sizes, identity, target and text range; not the code, tables or counts.
        let ranges = [
            (patch_at::FORMAT_VERSION, patch_at::HEADER_DIGEST),
            (patch_at::PATCH_ID, patch_at::CODE_SIZE),
            (patch_at::RESERVED_2, patch_at::FUNCTION_TABLE),
        ];
        self.edit_fields(&mut bytes, &ranges);
        if image_format::hotpatch::reseal(&mut bytes).is_err() {
            self.note("not resealable");
        }
        let len = bytes.len() as u64;
        self.data(bytes);
        self.send_settle(request(Command::PatchApply.code(), 0, len, [0; 4]));
        self.steps.push(Step::Undo);
    }

    fn in_flight(&mut self) {
        match self.rng.below(5) {
            0 => {
                // A second request while a package stages.
                let (name, bytes) = self.package();
                let len = bytes.len() as u64;
                self.data(bytes);
                self.send(request(Command::Stage.code(), 0, len, [0; 4]));
                self.steps.push(Step::Taken);
                let next = *self.rng.pick(&[
                    Command::Ping,
                    Command::Apply,
                    Command::Reset,
                    Command::Stage,
                    Command::Snapshot,
                    Command::PatchList,
                ]);
                self.note(format!("stage {name}, then {next} at once"));
                if self.rng.chance(1, 2) {
                    self.steps.push(Step::Beats {
                        beats: self.rng.below(3) as u32,
                    });
                }
                self.send_settle(request(next.code(), 0, len, [0; 4]));
            }
            1 => {
                // The data area rewritten under a staging.
                let (name, bytes) = self.package();
                let len = bytes.len() as u64;
                let at = self.rng.below(len);
                let n = (1 + self.rng.below(4096)).min(len - at);
                let junk = self.rng.bytes(n as usize);
                let beats = self.rng.below(4) as u32;
                self.note(format!(
                    "stage {name}, {n} bytes at {at:#x} rewritten after {beats} beats"
                ));
                self.data(bytes);
                self.send(request(Command::Stage.code(), 0, len, [0; 4]));
                self.steps.push(Step::Beats { beats });
                self.steps.push(Step::Data {
                    offset: at,
                    bytes: junk,
                });
                self.steps.push(Step::Settle);
            }
            2 => {
                // Coordinator jobs back to back.
                let a = *self.rng.pick(&[Command::Snapshot, Command::PatchRemove]);
                let b = *self
                    .rng
                    .pick(&[Command::Snapshot, Command::PatchList, Command::Ping]);
                self.note(format!("{a}, then {b} at once"));
                self.send(request(a.code(), 0, 0, [0; 4]));
                // One service step: the guest has read the first and queued its job,
                // which the BSP may not have run yet.
                self.steps.push(Step::Beats { beats: 1 });
                self.send_settle(request(b.code(), 0, 0, [0; 4]));
            }
            3 => {
                // A request during a swap.
                let (name, bytes) = self.package();
                let len = bytes.len() as u64;
                let next = *self
                    .rng
                    .pick(&[Command::Ping, Command::Snapshot, Command::Stage]);
                self.note(format!("stage and swap to {name}, then {next} at once"));
                self.data(bytes);
                self.send(request(
                    Command::Stage.code(),
                    RequestFlags::APPLY_AFTER_STAGE.bits(),
                    len,
                    [0; 4],
                ));
                self.steps.push(Step::Taken);
                self.steps.push(Step::Beats {
                    beats: self.rng.below(6) as u32,
                });
                self.send_settle(request(next.code(), 0, len, [0; 4]));
            }
            _ => {
                // A patch apply with a request behind it.
                let (name, bytes) = self.patch();
                let len = bytes.len() as u64;
                // Not a removal: an apply and a removal between two snapshots hide the
                // patched steps from the continuity check.
                let next = *self
                    .rng
                    .pick(&[Command::PatchList, Command::Snapshot, Command::Ping]);
                self.note(format!("apply {name}, then {next} at once"));
                self.data(bytes);
                self.send(request(Command::PatchApply.code(), 0, len, [0; 4]));
                self.steps.push(Step::Beats { beats: 1 });
                self.send_settle(request(next.code(), 0, 0, [0; 4]));
            }
        }
        self.steps.push(Step::Undo);
    }

    fn valid(&mut self) {
        match self.rng.below(6) {
            0 | 1 => {
                let (name, bytes) = self.package();
                let len = bytes.len() as u64;
                let apply = self.rng.chance(2, 3);
                self.note(format!(
                    "stage {name}{}",
                    if apply { " and swap" } else { "" }
                ));
                self.data(bytes);
                let flags = if apply {
                    RequestFlags::APPLY_AFTER_STAGE.bits()
                } else {
                    0
                };
                self.send_settle(request(Command::Stage.code(), flags, len, [0; 4]));
            }
            2 => {
                let (name, bytes) = self.patch();
                let len = bytes.len() as u64;
                self.note(format!("apply {name}"));
                self.data(bytes);
                self.send_settle(request(Command::PatchApply.code(), 0, len, [0; 4]));
            }
            3 => {
                self.note("remove the newest patch");
                self.send_settle(request(Command::PatchRemove.code(), 0, 0, [0; 4]));
            }
            4 => {
                self.note("apply what is staged");
                self.send_settle(request(Command::Apply.code(), 0, 0, [0; 4]));
            }
            _ => {
                let c = *self.rng.pick(&HARMLESS);
                self.note(format!("{c}"));
                let args = [
                    KERNEL_BASE + self.rng.below(1 << 20),
                    self.rng.below(4096),
                    0,
                    0,
                ];
                self.send_settle(request(c.code(), 0, 0, args));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds() -> Seeds {
        let spec = image_format::package::PackageSpec {
            identity: image_format::EmbeddedIdentity::new(
                image_format::ImageVersion::new(1, 0, 0),
                "t",
                image_format::VersionRange::new(
                    image_format::ImageVersion::new(1, 0, 0),
                    image_format::ImageVersion::new(1, 9, 0),
                ),
                image_format::Capabilities::HANDOFF_V1,
                image_format::Capabilities::HANDOFF_V1,
                &[],
            ),
            build_id: image_format::BuildId::new(&[1; 20]),
            svn: 1,
            entries: image_format::package::Entries {
                kernel: 0,
                bootstrap: 8,
                resume: 16,
                ap_resume: 24,
            },
            segments: vec![image_format::package::SegmentSpec {
                vaddr: 0,
                mem_size: 8192,
                flags: image_format::package::SegmentFlags::R
                    | image_format::package::SegmentFlags::X,
                bytes: vec![0x90; 8192],
            }],
            relocations: vec![],
            description: {
                let mut d = vec![0u8; 40];
                d[..8].copy_from_slice(&image_format::package::DESCRIPTION_MAGIC);
                d[8..12].copy_from_slice(&1u32.to_le_bytes());
                d[12..16].copy_from_slice(&40u32.to_le_bytes());
                d[16..20].copy_from_slice(&1u32.to_le_bytes());
                d
            },
        };
        let package = spec.build().expect("a test package");
        Seeds {
            packages: vec![("p".into(), package)],
            patches: vec![("q".into(), vec![0x5a; 600])],
            data_capacity: 31 << 20,
            staging_capacity: 16 << 20,
        }
    }

    #[test]
    fn the_same_seed_makes_the_same_inputs_and_every_class_shows_up() {
        let s = seeds();
        let a: Vec<Input> = (0..400).map(|i| generate(42, i, &s)).collect();
        let b: Vec<Input> = (0..400).map(|i| generate(42, i, &s)).collect();
        assert_eq!(a, b);
        assert_ne!(a, (0..400).map(|i| generate(43, i, &s)).collect::<Vec<_>>());
        for class in Class::ALL {
            assert!(a.iter().any(|i| i.class == class), "{class:?} never made");
        }
        assert!(a.iter().all(|i| !i.steps.is_empty() && !i.note.is_empty()));
    }

    #[test]
    fn damaged_packages_never_parse() {
        let s = seeds();
        let mut damaged = 0;
        for i in 0..2000 {
            let input = generate(7, i, &s);
            if input.class != Class::DamagedPackage {
                continue;
            }
            let Some(Step::Data { bytes, .. }) = input.steps.first() else {
                panic!("a damaged package input starts with its bytes")
            };
            let Some(Step::Request(r)) = input.steps.get(1) else {
                panic!("then its request")
            };
            if r.expect == Expect::Refused {
                assert!(
                    image_format::package::parse(bytes).is_err(),
                    "{}: parses",
                    input.note
                );
                damaged += 1;
            }
        }
        assert!(damaged > 50);
    }
}
