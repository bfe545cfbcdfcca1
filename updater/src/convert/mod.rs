//! Converters: one schema step of one record kind (N → N+1), written by whoever changed
//! the layout, and the chain that runs them, so an image that reads version 3 converts
//! version 1 by running 1→2 and 2→3.
//!
//! A converter is an [`Upgrade`] implementation; the image lists the ones it carries as
//! [`Step`]s ([`Step::of`]). [`Chain`] finds the steps from an exported version to the
//! one the image reads; a missing step is a refusal found before anything is
//! overwritten ([`crate::reconcile`]). Conversion needs no heap: an entry goes through
//! two stack buffers of [`MAX_ENTRY`] bytes, reused for every entry of a record.

pub mod fields;

use crate::record::{Field as _, Record};
use crate::records::{RecordKind, SchemaVersion};
use crate::wire::WireError;

/// Largest entry a step may read or write (checked when the step is declared).
pub const MAX_ENTRY: usize = 2048;

/// Why one entry could not be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConvertError {
    /// The entry did not decode as the step's input.
    Wire(WireError),
    /// A value does not fit the field of the new layout.
    DoesNotFit {
        field: &'static str,
        value: u64,
        bits: u8,
    },
    /// The converter refused the entry, for this reason.
    Refused(&'static str),
}

impl From<WireError> for ConvertError {
    fn from(e: WireError) -> Self {
        ConvertError::Wire(e)
    }
}

impl core::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConvertError::Wire(e) => write!(f, "{e}"),
            ConvertError::DoesNotFit { field, value, bits } => write!(
                f,
                "`{field}` holds {value:#x}, which does not fit its {bits} bits in the new layout"
            ),
            ConvertError::Refused(why) => write!(f, "the converter refused it: {why}"),
        }
    }
}

/// One schema step of one record kind.
pub trait Upgrade {
    type From: Record;
    type To: Record;
    fn upgrade(old: &Self::From) -> Result<Self::To, ConvertError>;
}

/// A step as the chain runs it: the layouts it reads and writes and a byte-level entry
/// converter.
#[derive(Clone, Copy)]
pub struct Step {
    pub kind: RecordKind,
    pub from: SchemaVersion,
    pub to: SchemaVersion,
    pub from_size: usize,
    pub to_size: usize,
    /// The field tables of the two versions (an image's description carries them).
    pub from_layout: &'static crate::record::Layout,
    pub to_layout: &'static crate::record::Layout,
    entry: fn(&[u8], &mut [u8]) -> Result<(), ConvertError>,
}

fn convert_entry<U: Upgrade>(input: &[u8], output: &mut [u8]) -> Result<(), ConvertError> {
    let old = U::From::decode(input)?;
    let new = U::upgrade(&old)?;
    new.encode(output);
    Ok(())
}

impl Step {
    /// The step that `U` implements.
    ///
    /// # Panics
    /// At compile time (in a constant) if `U` does not convert one kind from N to N+1,
    /// or an entry is larger than [`MAX_ENTRY`].
    pub const fn of<U: Upgrade>() -> Step {
        assert!(
            U::From::KIND.get() == U::To::KIND.get(),
            "a step converts one record kind"
        );
        assert!(
            U::From::SCHEMA.get() + 1 == U::To::SCHEMA.get(),
            "a step goes from N to N+1"
        );
        assert!(U::From::SIZE <= MAX_ENTRY && U::To::SIZE <= MAX_ENTRY);
        Step {
            kind: U::From::KIND,
            from: U::From::SCHEMA,
            to: U::To::SCHEMA,
            from_size: U::From::SIZE,
            to_size: U::To::SIZE,
            from_layout: U::From::LAYOUT,
            to_layout: U::To::LAYOUT,
            entry: convert_entry::<U>,
        }
    }

    /// Converts one entry: `input` is `from_size` bytes, `output` `to_size`.
    pub fn run(&self, input: &[u8], output: &mut [u8]) -> Result<(), ConvertError> {
        (self.entry)(input, output)
    }
}

impl core::fmt::Debug for Step {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} {}→{}", self.kind, self.from, self.to)
    }
}

/// The steps that take `kind` from `from` up to `to`, in order. Found without storing
/// them: the chain is walked again for each entry, and a missing step is found once,
/// by [`Chain::new`].
#[derive(Clone, Copy, Debug)]
pub struct Chain<'a> {
    kind: RecordKind,
    from: SchemaVersion,
    to: SchemaVersion,
    steps: &'a [&'a [Step]],
}

/// A version the chain has no step from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingStep {
    pub kind: RecordKind,
    pub from: SchemaVersion,
    pub to: SchemaVersion,
}

impl<'a> Chain<'a> {
    /// The chain for `kind` from `from` to `to` (`from <= to`) out of `steps` (lists of
    /// steps, as an image keeps them: one list per record kind that has any).
    pub fn new(
        kind: RecordKind,
        from: SchemaVersion,
        to: SchemaVersion,
        steps: &'a [&'a [Step]],
    ) -> Result<Self, MissingStep> {
        let chain = Chain {
            kind,
            from,
            to,
            steps,
        };
        let mut v = from;
        while v < to {
            match chain.step_from(v) {
                Some(s) => v = s.to,
                None => {
                    return Err(MissingStep {
                        kind,
                        from: v,
                        to: v.next(),
                    })
                }
            }
        }
        Ok(chain)
    }

    fn step_from(&self, v: SchemaVersion) -> Option<&'a Step> {
        self.steps
            .iter()
            .flat_map(|list| list.iter())
            .find(|s| s.kind == self.kind && s.from == v)
    }

    /// The steps, oldest first.
    pub fn steps(&self) -> impl Iterator<Item = &'a Step> + '_ {
        let mut v = self.from;
        core::iter::from_fn(move || {
            if v >= self.to {
                return None;
            }
            let s = self.step_from(v)?;
            v = s.to;
            Some(s)
        })
    }

    /// True if nothing needs converting.
    pub fn is_empty(&self) -> bool {
        self.from >= self.to
    }

    /// Entry size the chain reads (`None`: empty chain, entries are copied).
    pub fn input_size(&self) -> Option<usize> {
        self.steps().next().map(|s| s.from_size)
    }

    /// Entry size the chain writes.
    pub fn output_size(&self) -> Option<usize> {
        self.steps().last().map(|s| s.to_size)
    }

    /// Runs every step on one entry. `a` holds the input in its first `input_size()`
    /// bytes; the result ends up in `a` too, its length returned. `b` is scratch.
    pub fn run(
        &self,
        a: &mut [u8; MAX_ENTRY],
        b: &mut [u8; MAX_ENTRY],
    ) -> Result<usize, (SchemaVersion, ConvertError)> {
        let mut len = self.input_size().unwrap_or(0);
        for step in self.steps() {
            step.run(&a[..len], &mut b[..step.to_size])
                .map_err(|e| (step.from, e))?;
            len = step.to_size;
            a[..len].copy_from_slice(&b[..len]);
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::TaskKind;

    const KIND: RecordKind = TaskKind::COUNTER.state_record();

    #[derive(Debug, Clone, PartialEq, crate::Record)]
    #[record(kind = KIND, version = 1)]
    #[repr(C)]
    struct V1 {
        count: u32,
    }

    #[derive(Debug, Clone, PartialEq, crate::Record)]
    #[record(kind = KIND, version = 2)]
    #[repr(C)]
    struct V2 {
        count: u64,
        doubled: u64,
    }

    #[derive(Debug, Clone, PartialEq, crate::Record)]
    #[record(kind = KIND, version = 3)]
    #[repr(C)]
    struct V3 {
        sum: u64,
    }

    struct One;
    impl Upgrade for One {
        type From = V1;
        type To = V2;
        fn upgrade(old: &V1) -> Result<V2, ConvertError> {
            Ok(V2 {
                count: old.count.into(),
                doubled: u64::from(old.count) * 2,
            })
        }
    }

    struct Two;
    impl Upgrade for Two {
        type From = V2;
        type To = V3;
        fn upgrade(old: &V2) -> Result<V3, ConvertError> {
            if old.count == 13 {
                return Err(ConvertError::Refused("13 is unlucky"));
            }
            Ok(V3 {
                sum: old.count + old.doubled,
            })
        }
    }

    const STEPS: &[Step] = &[Step::of::<Two>(), Step::of::<One>()];

    #[test]
    fn a_chain_runs_its_steps_in_order_whatever_the_list_order() {
        let chain =
            Chain::new(KIND, SchemaVersion::new(1), SchemaVersion::new(3), &[STEPS]).unwrap();
        assert_eq!(
            chain
                .steps()
                .map(|s| s.from.get())
                .collect::<std::vec::Vec<_>>(),
            [1, 2]
        );
        assert_eq!(
            (chain.input_size(), chain.output_size()),
            (Some(4), Some(8))
        );
        let (mut a, mut b) = ([0u8; MAX_ENTRY], [0u8; MAX_ENTRY]);
        V1 { count: 5 }.encode(&mut a);
        let len = chain.run(&mut a, &mut b).unwrap();
        assert_eq!(V3::decode(&a[..len]).unwrap(), V3 { sum: 15 });
        V1 { count: 13 }.encode(&mut a);
        assert_eq!(
            chain.run(&mut a, &mut b),
            Err((
                SchemaVersion::new(2),
                ConvertError::Refused("13 is unlucky")
            ))
        );
    }

    #[test]
    fn a_missing_step_is_named() {
        let only_second = [Step::of::<Two>()];
        assert_eq!(
            Chain::new(
                KIND,
                SchemaVersion::new(1),
                SchemaVersion::new(3),
                &[&only_second]
            )
            .unwrap_err(),
            MissingStep {
                kind: KIND,
                from: SchemaVersion::new(1),
                to: SchemaVersion::new(2)
            }
        );
        let same = Chain::new(KIND, SchemaVersion::new(2), SchemaVersion::new(2), &[]).unwrap();
        assert!(same.is_empty() && same.input_size().is_none());
    }
}
