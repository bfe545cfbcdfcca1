//! The route decision on made-up plans, and the size text.

use std::path::PathBuf;

use image_format::{BuildId, ImageSummary};
use patchgen::{Cause, Difference, FunctionVerdict, Reason, Remedy, Subject, Verdict};

use super::*;

fn image(id: u8) -> Image {
    Image {
        elf: PathBuf::from(format!("{id}.elf")),
        summary: ImageSummary {
            build_id: BuildId::new(&[id; 20]),
            ..ImageSummary::default()
        },
        package_bytes: 1 << 20,
        image_span: 2 << 20,
    }
}

fn changed(name: &str) -> FunctionVerdict {
    FunctionVerdict {
        name: name.into(),
        subject: Subject::Function,
        verdict: Verdict::Changed {
            site: 0x1000,
            old_size: 9,
            new_size: 10,
            why: Difference {
                offset: 9,
                old: None,
                new: None,
                cause: Cause::Length { old: 9, new: 10 },
            },
        },
        warnings: vec![],
    }
}

fn refused(name: &str) -> FunctionVerdict {
    FunctionVerdict {
        name: name.into(),
        subject: Subject::StateLayout,
        verdict: Verdict::Refused {
            reason: Reason::StateLayout {
                detail: "counter-state schema v1 → v2".into(),
            },
            remedy: Remedy::FullSwap,
        },
        warnings: vec![],
    }
}

fn plan(functions: Vec<FunctionVerdict>, patch: bool) -> Plan {
    Plan {
        running: image(1),
        new: image(2),
        patches: vec![],
        patched_from: None,
        functions,
        notes: vec![],
        changed_now: None,
        reverted: vec![],
        patch: patch.then(|| vec![1, 2, 3]),
        package: vec![],
        swap: SwapCheck::Passed(HostPlan::default()),
        preflight: Preflight::NotRun("test".into()),
        route: Route::Refused,
        reason: String::new(),
        times: PlanTimes::default(),
    }
}

fn patch_of(id: u64, functions: &[&str]) -> AppliedPatch {
    AppliedPatch {
        id,
        label: "p".into(),
        functions: functions.iter().map(|f| f.to_string()).collect(),
    }
}

#[test]
fn a_body_change_is_a_hotpatch() {
    let p = plan(vec![changed("kernel::tasks::counter::step")], true);
    let (route, reason) = decide(&p, false);
    assert_eq!(route, Route::Hotpatch, "{reason}");
    assert!(reason.contains("1 site"), "{reason}");
}

#[test]
fn a_refused_change_is_a_swap_unless_the_swap_is_refused_too() {
    let p = plan(vec![refused("counter-state")], false);
    let (route, reason) = decide(&p, true);
    assert_eq!(route, Route::Swap);
    assert!(reason.contains("counter-state (state layout)"), "{reason}");
    let mut p = p;
    p.swap = SwapCheck::Refused(HostRefusal {
        rule: crate::description::Rule::Fields,
        status: Status::Incompatible,
        message: "task-table: field steps narrowed".into(),
    });
    let (route, reason) = decide(&p, true);
    assert_eq!(route, Route::Refused);
    assert!(reason.contains("field steps narrowed"), "{reason}");
}

#[test]
fn the_same_build_is_nothing_or_an_unpatch() {
    let mut p = plan(vec![], false);
    p.new = image(1);
    assert_eq!(decide(&p, false).0, Route::Nothing);
    p.patches = vec![patch_of(7, &["f"])];
    assert_eq!(decide(&p, false).0, Route::Unpatch);
}

#[test]
fn a_function_back_to_the_base_under_a_patch_needs_a_swap() {
    let mut p = plan(vec![changed("g")], true);
    p.patches = vec![patch_of(7, &["f", "g"])];
    p.reverted = vec!["f".into()];
    let (route, reason) = decide(&p, false);
    assert_eq!(route, Route::Swap);
    assert!(reason.contains("f was replaced"), "{reason}");
}

#[test]
fn code_already_running_is_nothing() {
    let mut p = plan(vec![changed("f")], true);
    p.patches = vec![patch_of(7, &["f"])];
    p.changed_now = Some(vec![]);
    assert_eq!(decide(&p, false).0, Route::Nothing);
}

#[test]
fn sizes_read_naturally() {
    assert_eq!(render::bytes(512), "512 B");
    assert_eq!(render::bytes(12 * 1024), "12.0 KiB");
    assert_eq!(render::bytes(3 << 20), "3.00 MiB");
}
