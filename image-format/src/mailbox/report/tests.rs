//! Round trips (fixed and random) and refusals of every report.

use std::string::{String, ToString};
use std::vec;

use proptest::prelude::*;

use super::*;
use crate::identity::{ImageSummary, Label};
use crate::kinds;
use crate::mailbox::{ResponseState, Status};
use crate::version::SchemaVersion;
use crate::{BuildId, ImageVersion};

fn image(major: u16, label: &str) -> ImageSummary {
    ImageSummary {
        version: ImageVersion::new(major, 0, 0),
        build_id: BuildId::new(&[major as u8; 20]),
        label: Label::new(label),
    }
}

fn swap() -> SwapReport {
    SwapReport {
        from: image(1, "v1"),
        to: image(2, "v2"),
        tasks_before: 9,
        tasks_after: 9,
        cpus_parked: 3,
        downtime_ns: 1_234_567,
        phases: PhaseId::ALL
            .iter()
            .map(|&phase| PhaseTime {
                phase,
                ns: 1000 * phase as u64,
            })
            .collect(),
        conversions: vec![
            Conversion {
                kind: kinds::COUNTER,
                from: SchemaVersion::new(1),
                to: SchemaVersion::new(2),
                method: Method::Fields,
                entries: 4,
                added: 1,
                dropped: 1,
                names: "+stride -old".into(),
            },
            Conversion {
                kind: kinds::TASK_TABLE,
                from: SchemaVersion::new(1),
                to: SchemaVersion::new(1),
                method: Method::Unchanged,
                entries: 16,
                added: 0,
                dropped: 0,
                names: String::new(),
            },
        ],
        warnings: vec!["heartbeat record dropped (optional)".into()],
        initialised: vec![Initialised {
            kind: crate::kinds::TaskKind::from_raw(7),
            name: "table".into(),
            count: 2,
        }],
        outcome: Outcome::Applied,
        old_image_base: 0xffff_ffff_8000_0000,
        new_image_base: 0xffff_ffff_8000_0000,
        staging_base: 0xffff_ffff_9000_0000,
    }
}

fn snapshot() -> Snapshot {
    Snapshot {
        tsc_hz: 2_000_000_000,
        tsc: 99,
        tasks: (0..5)
            .map(|i| TaskSnapshot {
                id: i,
                kind: 1,
                schema: 2,
                cpu: (i % 2) as u16,
                flags: 0,
                steps: 10 * u64::from(i),
                values: [i.into(); 4],
            })
            .collect(),
        kinds: vec![KindInfo {
            id: 1,
            name: "counter".into(),
            continuity: vec![[5, 0, 1, 0]],
        }],
    }
}

#[test]
fn every_report_round_trips() {
    let stage = StageReport {
        bytes: 1 << 20,
        staging_us: 13_200,
        hash_us: 12_800,
        verify_us: 900,
        signer: [0xab; 8],
        svn: 3,
        image: image(2, "v2"),
    };
    for report in [
        Report::Snapshot(snapshot()),
        Report::Stage(stage),
        Report::Swap(swap()),
    ] {
        let mut area = vec![0u8; crate::mailbox::REPORT_CAPACITY];
        let len = report.encode(&mut area).unwrap();
        assert_eq!(
            u32::from_le_bytes(area[..4].try_into().unwrap()),
            report.kind().code()
        );
        assert_eq!(Report::decode(&area[..len]).unwrap(), report);
        let mut response = Response::new(5, ResponseState::Done, Status::Ok);
        response.report_kind = report.kind();
        response.report_len = len as u32;
        assert_eq!(Report::read(&response, &area).unwrap(), Some(report));
    }
}

#[test]
fn a_rolled_back_swap_keeps_its_reason() {
    let mut r = swap();
    r.outcome = Outcome::RolledBack {
        reason: "reconcile failed: counter v3 unknown".into(),
    };
    let bytes = r.to_vec().unwrap();
    assert_eq!(SwapReport::decode(&bytes).unwrap(), r);
    let text = r.to_string();
    assert!(text.starts_with("swap rolled back: 1.0.0 \"v1\""), "{text}");
    assert!(swap()
        .to_string()
        .contains("downtime 1234.5 µs with 3 CPUs parked"));
}

#[test]
fn long_texts_are_cut_on_a_character_boundary() {
    let mut r = swap();
    r.warnings = vec!["ß".repeat(200)];
    let back = SwapReport::decode(&r.to_vec().unwrap()).unwrap();
    assert_eq!(back.warnings[0], "ß".repeat(128));
}

#[test]
fn refusals() {
    let bytes = swap().to_vec().unwrap();
    // Another kind where a swap report is expected.
    assert!(matches!(
        Snapshot::decode(&bytes),
        Err(FormatError::InvalidField {
            field: "report kind",
            ..
        })
    ));
    // A newer version.
    let mut newer = bytes.clone();
    newer[4] = 4;
    assert_eq!(
        SwapReport::decode(&newer).unwrap_err().to_string(),
        "swap report version 4 is newer than this kernel understands (3)"
    );
    // Truncated, or with bytes left over.
    assert!(matches!(
        SwapReport::decode(&bytes[..bytes.len() - 1]),
        Err(FormatError::Truncated { .. })
    ));
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        SwapReport::decode(&longer),
        Err(FormatError::SizeMismatch { .. })
    ));
    // Too many entries, on either side.
    let mut r = swap();
    r.warnings = vec![String::new(); MAX_WARNINGS + 1];
    assert!(matches!(
        r.to_vec(),
        Err(FormatError::TooManyEntries { .. })
    ));
    let mut s = snapshot().to_vec().unwrap();
    s[24..28].copy_from_slice(&5000u32.to_le_bytes());
    assert!(matches!(
        Snapshot::decode(&s),
        Err(FormatError::TooManyEntries { count: 5000, .. })
    ));
    s[24..28].copy_from_slice(&4000u32.to_le_bytes());
    assert!(matches!(
        Snapshot::decode(&s),
        Err(FormatError::Truncated { .. })
    ));
    // A report that does not fit the area it is written to.
    assert!(matches!(
        snapshot().encode(&mut [0u8; 64]),
        Err(FormatError::Truncated { .. })
    ));
    // The response names another kind than the area holds.
    let mut response = Response::new(5, ResponseState::Done, Status::Ok);
    response.report_kind = crate::mailbox::ReportKind::Stage;
    response.report_len = bytes.len() as u32;
    assert!(Report::read(&response, &bytes).is_err());
    response.report_kind = crate::mailbox::ReportKind::None;
    assert_eq!(Report::read(&response, &bytes), Ok(None));
}

fn summary() -> impl Strategy<Value = ImageSummary> {
    (
        any::<[u16; 3]>(),
        proptest::collection::vec(any::<u8>(), 0..=32),
        "[a-z0-9.-]{0,48}",
    )
        .prop_map(|(v, id, label)| ImageSummary {
            version: ImageVersion::new(v[0], v[1], v[2]),
            build_id: BuildId::new(&id),
            label: Label::new(&label),
        })
}

fn task() -> impl Strategy<Value = TaskSnapshot> {
    (any::<(u32, u16, u16, u16, u16, u64)>(), any::<[u64; 4]>()).prop_map(
        |((id, kind, schema, cpu, flags, steps), values)| TaskSnapshot {
            id,
            kind,
            schema,
            cpu,
            flags,
            steps,
            values,
        },
    )
}

fn swap_report() -> impl Strategy<Value = SwapReport> {
    let phase = (1u16..=6, any::<u64>()).prop_map(|(c, ns)| PhaseTime {
        phase: PhaseId::from_code(c).unwrap(),
        ns,
    });
    let conversion = (
        (1u16.., 1u16.., 1u16.., 0u16..3),
        any::<u32>(),
        any::<(u16, u16)>(),
        "\\PC{0,40}",
    )
        .prop_map(
            |((k, f, t, m), entries, (added, dropped), names)| Conversion {
                kind: crate::RecordKind::new(k),
                from: SchemaVersion::new(f),
                to: SchemaVersion::new(t),
                method: Method::from_code(m).unwrap(),
                entries,
                added,
                dropped,
                names,
            },
        );
    let outcome = prop_oneof![
        Just(Outcome::Applied),
        "\\PC{0,80}".prop_map(|reason| Outcome::RolledBack { reason })
    ];
    (
        (summary(), summary(), any::<(u32, u32, u32, u64)>()),
        proptest::collection::vec(phase, 0..=MAX_PHASES),
        proptest::collection::vec(conversion, 0..8),
        proptest::collection::vec("\\PC{0,60}", 0..4),
        outcome,
        any::<[u64; 3]>(),
    )
        .prop_map(
            |((from, to, (tb, ta, cp, dt)), phases, conversions, warnings, outcome, bases)| {
                SwapReport {
                    from,
                    to,
                    tasks_before: tb,
                    tasks_after: ta,
                    cpus_parked: cp,
                    downtime_ns: dt,
                    phases,
                    conversions,
                    warnings,
                    outcome,
                    old_image_base: bases[0],
                    new_image_base: bases[1],
                    staging_base: bases[2],
                    initialised: vec![],
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_swap_reports_round_trip(r in swap_report()) {
        prop_assert_eq!(SwapReport::decode(&r.to_vec().unwrap()).unwrap(), r);
    }

    #[test]
    fn random_snapshots_round_trip(
        tsc in any::<(u64, u64)>(),
        tasks in proptest::collection::vec(task(), 0..50),
        kinds in proptest::collection::vec((any::<u16>(), "[a-z-]{0,20}", proptest::collection::vec(any::<[u8; 4]>(), 0..=8)), 0..10),
    ) {
        let kinds = kinds.into_iter().map(|(id, name, continuity)| KindInfo { id, name, continuity }).collect();
        let s = Snapshot { tsc_hz: tsc.0, tsc: tsc.1, tasks, kinds };
        prop_assert_eq!(Snapshot::decode(&s.to_vec().unwrap()).unwrap(), s);
    }

    #[test]
    fn random_stage_reports_round_trip(n in any::<(u64, u64, u64, u64)>(), signer in any::<[u8; 8]>(), svn in any::<u32>(), image in summary()) {
        let s = StageReport { bytes: n.0, staging_us: n.1, hash_us: n.2, verify_us: n.3, signer, svn, image };
        prop_assert_eq!(StageReport::decode(&s.to_vec().unwrap()).unwrap(), s);
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Report::decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_a_mutated_report(at in 0usize..2000, value in any::<u8>(), cut in 0usize..2000) {
        let mut bytes = swap().to_vec().unwrap();
        let n = bytes.len();
        bytes[at % n] = value;
        bytes.truncate(n - cut % n);
        let _ = Report::decode(&bytes);
    }
}
