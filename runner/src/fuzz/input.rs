//! What the fuzzer sends: an [`Input`] is a short list of [`Step`]s (write the data
//! area, write a request block in one of several framings, let the guest run a few
//! service steps), of one [`Class`]. Inputs are plain data, saved as JSON for
//! `hotkernel fuzz --replay FILE` (byte strings as hex).
//!
//! Sequence numbers are relative ([`SeqSpec`]): the executor turns them into numbers
//! newer (or, for a stale request, older) than every one it has written so far, so an
//! input means the same thing whenever it runs.

use serde::{Deserialize, Serialize};

/// The kind of input, for the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// A well-framed request with a random command code, flags, payload length and
    /// arguments.
    RandomCommand,
    /// A known command with valid framing and random flags (mostly known bits, some
    /// unknown ones) and random arguments.
    RandomFlags,
    /// A request block that is never whole: body only, `seq_end` that differs, a bad
    /// checksum, random bytes, a sequence number changed after the write.
    Torn,
    /// A request whose sequence number is not newer than the last one.
    Stale,
    /// `Stage` or `PatchApply` with a payload length that is 0, past the data area,
    /// past the staging buffer, or off by a little from the bytes written.
    Lengths,
    /// A real package with bytes flipped, truncated or its digests wrong (not resealed):
    /// the guest must refuse it.
    DamagedPackage,
    /// A real package with a header field changed and both digests recomputed: the
    /// guest's checks behind the digests decide.
    ResealedPackage,
    /// A real patch with bytes flipped or truncated (not resealed): must be refused.
    DamagedPatch,
    /// A real patch with a header field changed and both digests recomputed.
    ResealedPatch,
    /// A request written while the previous one is still being worked on (a staging,
    /// a swap, a snapshot), or the data area rewritten under a staging.
    InFlight,
    /// Real operations: stage a real package (and swap), apply or remove a real patch,
    /// snapshot, reset.
    Valid,
}

impl Class {
    /// Every class, in report order.
    pub const ALL: [Class; 11] = [
        Class::RandomCommand,
        Class::RandomFlags,
        Class::Torn,
        Class::Stale,
        Class::Lengths,
        Class::DamagedPackage,
        Class::ResealedPackage,
        Class::DamagedPatch,
        Class::ResealedPatch,
        Class::InFlight,
        Class::Valid,
    ];

    /// The class's name as printed and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Class::RandomCommand => "random-command",
            Class::RandomFlags => "random-flags",
            Class::Torn => "torn",
            Class::Stale => "stale",
            Class::Lengths => "lengths",
            Class::DamagedPackage => "damaged-package",
            Class::ResealedPackage => "resealed-package",
            Class::DamagedPatch => "damaged-patch",
            Class::ResealedPatch => "resealed-patch",
            Class::InFlight => "in-flight",
            Class::Valid => "valid",
        }
    }
}

/// The sequence number of a request, relative to the executor's high-water mark (the
/// largest it has written in any form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SeqSpec {
    /// High-water mark + 1 + `skip`: new, possibly skipping some numbers.
    Next { skip: u32 },
    /// High-water mark − `back` (at least 1): already used, must be ignored.
    Stale { back: u32 },
}

/// How a request block is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// Body, fence, `seq_end`: the real protocol.
    Sealed,
    /// The body only; `seq_end` keeps whatever the block held.
    BodyOnly,
    /// Sealed, but `seq_end` = seq + `delta` (never equal).
    SeqEndDiffers { delta: u64 },
    /// Sealed, with the checksum xored with `xor` (non-zero).
    BadChecksum { xor: u64 },
    /// Sealed, then after `beats` service steps `seq_begin` is changed by `delta`
    /// (the block becomes torn: a guest that already took it answers it once).
    SeqChangedAfter { beats: u32, delta: u64 },
    /// Body, `beats` service steps, then `seq_end`: a slow writer.
    Slow { beats: u32 },
    /// Random bytes over the whole block (`Request::SIZE` of them).
    Garbage {
        #[serde(with = "hex")]
        bytes: Vec<u8>,
    },
}

/// One request, as fields (command and flags raw, so unknown ones can be sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawRequest {
    pub seq: SeqSpec,
    pub command: u32,
    pub flags: u32,
    pub payload_len: u64,
    pub args: [u64; 4],
    pub framing: Framing,
    /// What the guest must do with it.
    #[serde(default)]
    pub expect: Expect,
}

/// What the guest must do with a request, beyond surviving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    /// Anything: answer it with any status, or not at all.
    #[default]
    Any,
    /// Never answer it (a block that is never whole, or a sequence number already used).
    Ignored,
    /// If it answers, with an error (a damaged package or patch).
    Refused,
}

/// One thing the executor does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Write `bytes` at `offset` of the data area.
    Data {
        offset: u64,
        #[serde(with = "hex")]
        bytes: Vec<u8>,
    },
    /// Write a request block and ring the doorbell.
    Request(RawRequest),
    /// Wait until the guest's heartbeat advanced `beats` times (service steps).
    Beats { beats: u32 },
    /// Wait until the guest took the last request (answered it, or said it works on
    /// it), or it had time to: a request written after this one finds the guest busy
    /// with it rather than replacing it unread.
    Taken,
    /// Wait until the last request written is answered (`Done`), or the guest has
    /// clearly moved on without answering it.
    Settle,
    /// Take back what the input's last request did when it succeeded: forget a staged
    /// package (`Reset`), remove an applied patch (`PatchRemove`), so that a mutated
    /// package or patch the guest accepted is never swapped to or left applied.
    Undo,
}

/// One fuzz input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// Its number in the run (from 0).
    pub index: u64,
    pub class: Class,
    /// What it is, for a person (e.g. "twin package, byte 0x1234 xor 0x40").
    pub note: String,
    pub steps: Vec<Step>,
}

/// A saved finding: the seed, and the inputs to replay in order (the last one is the
/// input after which the check failed; those before it led the guest there).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplayFile {
    /// Format of this file (1).
    pub version: u32,
    pub seed: u64,
    /// What the check found.
    pub finding: String,
    pub inputs: Vec<Input>,
}

/// Byte strings as lower-case hex in JSON.
mod hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut text = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            text.push_str(&format!("{b:02x}"));
        }
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        if text.len() % 2 != 0 {
            return Err(serde::de::Error::custom("hex text of odd length"));
        }
        (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    .ok_or_else(|| serde::de::Error::custom(format!("bad hex at {i}")))
            })
            .collect()
    }
}

/// SplitMix64: small, fast, and the same sequence on every host and Rust version, so a
/// seed names a run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The generator for input `index` of the run with `seed`: inputs do not depend on
    /// each other, so any one of them can be made again alone.
    pub fn for_input(seed: u64, index: u64) -> Self {
        let mut r = Self(seed ^ index.wrapping_mul(0xa076_1d64_78bd_642f));
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` ≥ 1; 0 gives 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// One of `items` (which must not be empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let i = self.below(items.len() as u64) as usize;
        &items[i.min(items.len().saturating_sub(1))]
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_round_trip_through_json() {
        let input = Input {
            index: 3,
            class: Class::Torn,
            note: "x".into(),
            steps: vec![
                Step::Data {
                    offset: 8,
                    bytes: vec![0, 1, 0xff],
                },
                Step::Request(RawRequest {
                    seq: SeqSpec::Stale { back: 2 },
                    command: 99,
                    flags: u32::MAX,
                    payload_len: u64::MAX,
                    args: [1, 2, 3, 4],
                    framing: Framing::Garbage { bytes: vec![7; 72] },
                    expect: Expect::Ignored,
                }),
                Step::Beats { beats: 2 },
                Step::Settle,
                Step::Undo,
            ],
        };
        let text = serde_json::to_string(&input).unwrap();
        assert!(text.contains("\"0001ff\""), "{text}");
        let back: Input = serde_json::from_str(&text).unwrap();
        assert_eq!(back, input);
        assert!(serde_json::from_str::<Input>(&text.replace("0001ff", "0001f")).is_err());
    }

    #[test]
    fn the_rng_is_fixed_by_its_seed() {
        let a: Vec<u64> = (0..4).map(|_| Rng::for_input(7, 5).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rng::for_input(7, 5).next_u64(),
            Rng::for_input(7, 6).next_u64()
        );
        assert_ne!(
            Rng::for_input(7, 5).next_u64(),
            Rng::for_input(8, 5).next_u64()
        );
        // SplitMix64's reference output for state 0.
        assert_eq!(Rng::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
        let mut r = Rng::new(1);
        assert!((0..1000).all(|_| r.below(10) < 10));
        assert_eq!(r.below(0), 0);
    }
}
