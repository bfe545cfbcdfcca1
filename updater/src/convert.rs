//! The converter chain: exported records (the old kernel's schema versions) become the
//! records the new kernel reads, one schema step at a time (N → N+1), so an image that
//! reads version 3 converts version 1 by running 1→2 and 2→3.
//!
//! The steps available are the new image's own list ([`Step`]s built with
//! [`Step::of`] from [`Upgrade`] implementations); a missing step is a refusal, found
//! before anything is overwritten. Records the new image does not read are dropped with
//! a warning when the exporter marked them optional, and refused otherwise. Conversion
//! needs no heap: entries go through two stack buffers.

use crate::records::{counter, task_table, ticker, RecordKind, SchemaVersion, StateRecord};
use crate::recordset::{RecordSet, RecordSetError, RecordSetWriter};
use crate::wire::{Reader, WireError, Writer};

/// Largest entry a step may read or write.
pub const MAX_ENTRY: usize = 2048;

/// Why one entry could not be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConvertError {
    Wire(WireError),
    TaskTable(task_table::TaskTableError),
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
            ConvertError::TaskTable(e) => write!(f, "{e}"),
        }
    }
}

/// One schema step of one record kind.
pub trait Upgrade {
    type From: StateRecord;
    type To: StateRecord;
    fn upgrade(old: &Self::From) -> Result<Self::To, ConvertError>;
}

/// A step as the chain runs it: sizes and a byte-level entry converter.
#[derive(Clone, Copy)]
pub struct Step {
    pub kind: RecordKind,
    pub from: SchemaVersion,
    pub to: SchemaVersion,
    pub from_size: usize,
    pub to_size: usize,
    entry: fn(&[u8], &mut [u8]) -> Result<(), ConvertError>,
}

fn convert_entry<U: Upgrade>(input: &[u8], output: &mut [u8]) -> Result<(), ConvertError> {
    let old = U::From::decode(&mut Reader::new(input))?;
    let new = U::upgrade(&old)?;
    new.encode(&mut Writer::new(output));
    Ok(())
}

impl Step {
    /// The step that `U` implements.
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
            entry: convert_entry::<U>,
        }
    }
}

impl core::fmt::Debug for Step {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} {}→{}", self.kind, self.from, self.to)
    }
}

/// A record kind the new image reads, and in which version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reads {
    pub kind: RecordKind,
    pub version: SchemaVersion,
}

/// Why reconciliation refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReconcileError {
    Input(RecordSetError),
    Output(RecordSetError),
    MissingConverter {
        kind: RecordKind,
        from: SchemaVersion,
        to: SchemaVersion,
    },
    Downgrade {
        kind: RecordKind,
        exported: SchemaVersion,
        reads: SchemaVersion,
    },
    Unreadable {
        kind: RecordKind,
        version: SchemaVersion,
    },
    EntrySize {
        kind: RecordKind,
        found: usize,
        expected: usize,
    },
    Entry {
        kind: RecordKind,
        index: usize,
        error: ConvertError,
    },
}

impl core::fmt::Display for ReconcileError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ReconcileError::Input(e) => write!(f, "exported records unreadable: {e}"),
            ReconcileError::Output(e) => write!(f, "converted records do not fit: {e}"),
            ReconcileError::MissingConverter { kind, from, to } => {
                write!(f, "no converter for {kind} {from}→{to} in the new image")
            }
            ReconcileError::Downgrade {
                kind,
                exported,
                reads,
            } => {
                write!(
                    f,
                    "{kind} was exported as {exported}, the new image reads only the older {reads}"
                )
            }
            ReconcileError::Unreadable { kind, version } => {
                write!(
                    f,
                    "the new image cannot read {kind} {version}, and the record is not optional"
                )
            }
            ReconcileError::EntrySize {
                kind,
                found,
                expected,
            } => {
                write!(
                    f,
                    "{kind} entries are {found} bytes, their schema needs {expected}"
                )
            }
            ReconcileError::Entry { kind, index, error } => {
                write!(f, "{kind} entry {index}: {error}")
            }
        }
    }
}

/// Where the chain reports what it did.
pub trait ReconcileLog {
    /// `count` entries of `kind` were converted from `from` to `to`.
    fn converted(&mut self, kind: RecordKind, from: SchemaVersion, to: SchemaVersion, count: u32);
    /// An optional record the new image does not read was dropped.
    fn dropped(&mut self, kind: RecordKind, version: SchemaVersion, entries: u32);
}

/// Converts every record of `input` to the versions in `reads` using `steps`, writing
/// the result as a new record set into `out`. Returns the set's length.
pub fn reconcile(
    input: &[u8],
    reads: &[Reads],
    steps: &[Step],
    out: &mut [u8],
    log: &mut dyn ReconcileLog,
) -> Result<usize, ReconcileError> {
    let input = RecordSet::parse(input).map_err(ReconcileError::Input)?;
    let mut writer = RecordSetWriter::new(out).map_err(ReconcileError::Output)?;
    for record in input.records() {
        let h = record.header;
        let Some(target) = reads.iter().find(|r| r.kind == h.kind) else {
            if h.optional() {
                log.dropped(h.kind, h.schema, h.entries);
                continue;
            }
            return Err(ReconcileError::Unreadable {
                kind: h.kind,
                version: h.schema,
            });
        };
        if h.schema > target.version {
            if h.optional() {
                log.dropped(h.kind, h.schema, h.entries);
                continue;
            }
            return Err(ReconcileError::Downgrade {
                kind: h.kind,
                exported: h.schema,
                reads: target.version,
            });
        }
        // The chain from the exported version up to the one read.
        let mut chain: [Option<&Step>; 16] = [None; 16];
        let mut n = 0;
        let mut v = h.schema;
        while v < target.version {
            let step = steps
                .iter()
                .find(|s| s.kind == h.kind && s.from == v)
                .ok_or(ReconcileError::MissingConverter {
                    kind: h.kind,
                    from: v,
                    to: v.next(),
                })?;
            if n == chain.len() {
                return Err(ReconcileError::MissingConverter {
                    kind: h.kind,
                    from: v,
                    to: v.next(),
                });
            }
            chain[n] = Some(step);
            n += 1;
            v = step.to;
        }
        let chain = &chain[..n];
        let mut chain_steps = chain.iter().flatten();
        let keyed = h.kind.task_kind().is_some();
        let key = if keyed { 4 } else { 0 };
        if (h.entry_size as usize) < key {
            return Err(ReconcileError::EntrySize {
                kind: h.kind,
                found: h.entry_size as usize,
                expected: key,
            });
        }
        let first_size = chain_steps
            .next()
            .map_or(h.entry_size.saturating_sub(key as u32) as usize, |s| {
                s.from_size
            });
        if h.entry_size as usize != first_size + key {
            return Err(ReconcileError::EntrySize {
                kind: h.kind,
                found: h.entry_size as usize,
                expected: first_size + key,
            });
        }
        let out_size = chain
            .iter()
            .flatten()
            .last()
            .map_or(first_size, |s| s.to_size)
            + key;
        let mut failure: Option<ReconcileError> = None;
        writer
            .add_raw(
                h.kind,
                target.version,
                h.flags,
                out_size,
                h.entries as usize,
                |i, w| {
                    if failure.is_some() {
                        w.zeros(out_size);
                        return;
                    }
                    let entry = record.entry(i);
                    if keyed {
                        w.bytes(&entry[..4]);
                    }
                    let mut a = [0u8; MAX_ENTRY];
                    let mut b = [0u8; MAX_ENTRY];
                    let mut len = entry.len() - key;
                    a[..len].copy_from_slice(&entry[key..]);
                    for step in chain.iter().flatten() {
                        if let Err(error) = (step.entry)(&a[..len], &mut b[..step.to_size]) {
                            failure = Some(ReconcileError::Entry {
                                kind: h.kind,
                                index: i,
                                error,
                            });
                            w.zeros(out_size - key);
                            return;
                        }
                        len = step.to_size;
                        a[..len].copy_from_slice(&b[..len]);
                    }
                    w.bytes(&a[..len]);
                },
            )
            .map_err(ReconcileError::Output)?;
        if let Some(e) = failure {
            return Err(e);
        }
        for step in chain.iter().flatten() {
            log.converted(h.kind, step.from, step.to, h.entries);
        }
    }
    Ok(writer.finish())
}

/// The steps of this tree: every converter any image has shipped. An image lists the
/// ones it carries (normally all of [`ALL_STEPS`]).
pub mod steps {
    use super::*;

    pub struct TaskTable1To2;
    impl Upgrade for TaskTable1To2 {
        type From = task_table::V1;
        type To = task_table::V2;
        fn upgrade(old: &task_table::V1) -> Result<task_table::V2, ConvertError> {
            task_table::v1_to_v2(old).map_err(ConvertError::TaskTable)
        }
    }

    pub struct TaskTable2To3;
    impl Upgrade for TaskTable2To3 {
        type From = task_table::V2;
        type To = task_table::V3;
        fn upgrade(old: &task_table::V2) -> Result<task_table::V3, ConvertError> {
            Ok(task_table::v2_to_v3(old))
        }
    }

    pub struct Ticker1To2;
    impl Upgrade for Ticker1To2 {
        type From = ticker::V1;
        type To = ticker::V2;
        fn upgrade(old: &ticker::V1) -> Result<ticker::V2, ConvertError> {
            Ok(ticker::v1_to_v2(old))
        }
    }

    pub struct Counter1To2;
    impl Upgrade for Counter1To2 {
        type From = counter::V1;
        type To = counter::V2;
        fn upgrade(old: &counter::V1) -> Result<counter::V2, ConvertError> {
            Ok(counter::v1_to_v2(old))
        }
    }
}

/// Every step this tree defines.
pub const ALL_STEPS: &[Step] = &[
    Step::of::<steps::TaskTable1To2>(),
    Step::of::<steps::TaskTable2To3>(),
    Step::of::<steps::Counter1To2>(),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{kinds, lcg, ticker, TaskKind};
    use crate::recordset::flags::OPTIONAL;
    use std::string::ToString;
    use std::vec;
    use std::vec::Vec;

    #[derive(Default)]
    struct Log {
        converted: Vec<(RecordKind, u16, u16, u32)>,
        dropped: Vec<(RecordKind, u16, u32)>,
    }
    impl ReconcileLog for Log {
        fn converted(
            &mut self,
            kind: RecordKind,
            from: SchemaVersion,
            to: SchemaVersion,
            count: u32,
        ) {
            self.converted.push((kind, from.get(), to.get(), count));
        }
        fn dropped(&mut self, kind: RecordKind, version: SchemaVersion, entries: u32) {
            self.dropped.push((kind, version.get(), entries));
        }
    }

    fn v1_state(buf: &mut [u8], tasks: u32) -> usize {
        let mut w = RecordSetWriter::new(buf).unwrap();
        let table: Vec<_> = (0..tasks)
            .map(|i| task_table::V1 {
                id: i + 1,
                kind: if i % 2 == 0 {
                    TaskKind::COUNTER
                } else {
                    TaskKind::TICKER
                },
                affinity: task_table::ANY_CPU,
                period_us: 1000,
                flags: if i % 2 == 0 {
                    0
                } else {
                    task_table::flags::OPTIONAL
                },
                steps: 10 * i as u64,
            })
            .collect();
        w.add(0, &table).unwrap();
        let counters: Vec<u32> = (0..tasks).filter(|i| i % 2 == 0).collect();
        w.add_keyed(0, counters.len(), |i| {
            (
                counters[i] + 1,
                counter::V1 {
                    count: 1000 + counters[i] as u64,
                },
            )
        })
        .unwrap();
        let tickers: Vec<u32> = (0..tasks).filter(|i| i % 2 == 1).collect();
        w.add_keyed(OPTIONAL, tickers.len(), |i| {
            (tickers[i] + 1, ticker::V1 { ticks: 5 })
        })
        .unwrap();
        w.add_keyed(0, 1, |_| {
            (
                99,
                lcg::V1 {
                    seed: 1,
                    x: 2,
                    steps: 3,
                },
            )
        })
        .unwrap();
        w.finish()
    }

    fn reads_v3() -> [Reads; 3] {
        [
            Reads {
                kind: kinds::TASK_TABLE,
                version: SchemaVersion::new(3),
            },
            Reads {
                kind: TaskKind::COUNTER.state_record(),
                version: SchemaVersion::new(2),
            },
            Reads {
                kind: TaskKind::LCG.state_record(),
                version: SchemaVersion::new(1),
            },
        ]
    }

    #[test]
    fn v1_to_v3_runs_both_steps_and_drops_the_optional_record() {
        let mut input = vec![0u8; 64 * 1024];
        let len = v1_state(&mut input, 10);
        let mut out = vec![0u8; 64 * 1024];
        let mut log = Log::default();
        let n = reconcile(&input[..len], &reads_v3(), ALL_STEPS, &mut out, &mut log).unwrap();
        assert_eq!(
            log.converted,
            vec![
                (kinds::TASK_TABLE, 1, 2, 10),
                (kinds::TASK_TABLE, 2, 3, 10),
                (TaskKind::COUNTER.state_record(), 1, 2, 5)
            ]
        );
        assert_eq!(log.dropped, vec![(TaskKind::TICKER.state_record(), 1, 5)]);
        let set = RecordSet::parse(&out[..n]).unwrap();
        let table: Vec<task_table::V3> = set
            .find(kinds::TASK_TABLE)
            .unwrap()
            .decode()
            .map(Result::unwrap)
            .collect();
        assert_eq!(table.len(), 10);
        assert!(table
            .iter()
            .enumerate()
            .all(|(i, t)| t.id == i as u32 + 1 && t.steps == 10 * i as u64));
        let counters: Vec<_> = set
            .find(TaskKind::COUNTER.state_record())
            .unwrap()
            .decode_keyed::<counter::V2>()
            .map(Result::unwrap)
            .collect();
        assert_eq!(counters[2].task, 5);
        assert_eq!(counters[2].state.count, 1004);
        assert_eq!(counters[2].state.stride, 1);
        // Unchanged kinds are copied as they are.
        let l: Vec<_> = set
            .find(TaskKind::LCG.state_record())
            .unwrap()
            .decode_keyed::<lcg::V1>()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            l[0].state,
            lcg::V1 {
                seed: 1,
                x: 2,
                steps: 3
            }
        );
    }

    #[test]
    fn a_missing_step_is_named() {
        let mut input = vec![0u8; 64 * 1024];
        let len = v1_state(&mut input, 4);
        let mut out = vec![0u8; 64 * 1024];
        let only_second = [
            Step::of::<steps::TaskTable2To3>(),
            Step::of::<steps::Counter1To2>(),
        ];
        let err = reconcile(
            &input[..len],
            &reads_v3(),
            &only_second,
            &mut out,
            &mut Log::default(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            ReconcileError::MissingConverter {
                kind: kinds::TASK_TABLE,
                from: SchemaVersion::new(1),
                to: SchemaVersion::new(2)
            }
        );
        assert_eq!(
            err.to_string(),
            "no converter for task-table v1→v2 in the new image"
        );
    }

    #[test]
    fn a_required_record_the_image_cannot_read_is_refused() {
        let mut input = vec![0u8; 64 * 1024];
        let len = v1_state(&mut input, 4);
        let mut out = vec![0u8; 64 * 1024];
        let reads = [Reads {
            kind: kinds::TASK_TABLE,
            version: SchemaVersion::new(1),
        }];
        let err = reconcile(
            &input[..len],
            &reads,
            ALL_STEPS,
            &mut out,
            &mut Log::default(),
        )
        .unwrap_err();
        assert!(
            matches!(err, ReconcileError::Unreadable { kind, .. } if kind == TaskKind::COUNTER.state_record())
        );
    }

    #[test]
    fn an_older_reader_is_a_downgrade() {
        let mut input = vec![0u8; 64 * 1024];
        let len = v1_state(&mut input, 4);
        let mut mid = vec![0u8; 64 * 1024];
        let n = reconcile(
            &input[..len],
            &reads_v3(),
            ALL_STEPS,
            &mut mid,
            &mut Log::default(),
        )
        .unwrap();
        let mut out = vec![0u8; 64 * 1024];
        let v1_reads = [
            Reads {
                kind: kinds::TASK_TABLE,
                version: SchemaVersion::new(1),
            },
            Reads {
                kind: TaskKind::COUNTER.state_record(),
                version: SchemaVersion::new(1),
            },
            Reads {
                kind: TaskKind::LCG.state_record(),
                version: SchemaVersion::new(1),
            },
        ];
        let err = reconcile(
            &mid[..n],
            &v1_reads,
            ALL_STEPS,
            &mut out,
            &mut Log::default(),
        )
        .unwrap_err();
        assert!(matches!(err, ReconcileError::Downgrade { .. }));
    }

    #[test]
    fn a_failing_entry_names_the_entry() {
        let mut input = vec![0u8; 64 * 1024];
        let mut w = RecordSetWriter::new(&mut input).unwrap();
        let table = [
            task_table::V1 {
                id: 1,
                kind: TaskKind::COUNTER,
                affinity: 0,
                period_us: 1,
                flags: 0,
                steps: 0,
            },
            task_table::V1 {
                id: 2,
                kind: TaskKind::COUNTER,
                affinity: 0,
                period_us: 1,
                flags: 0x1_0000,
                steps: 0,
            },
        ];
        w.add(0, &table).unwrap();
        let len = w.finish();
        let mut out = vec![0u8; 64 * 1024];
        let reads = [Reads {
            kind: kinds::TASK_TABLE,
            version: SchemaVersion::new(2),
        }];
        let err = reconcile(
            &input[..len],
            &reads,
            ALL_STEPS,
            &mut out,
            &mut Log::default(),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "task-table entry 1: task 2: flags 0x10000 do not fit the 16-bit flags of task-table v2");
    }
}
