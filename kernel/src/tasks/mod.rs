//! The task kinds this image has: each is declared once, in its own file, by
//! implementing [`Kind`]; the list below is the one place that names them. Everything
//! per-kind — [`TaskState`], [`step`], [`observe`], the export and import of states,
//! the identity's schema table, continuity, initialisation — is generated from the list
//! (`declare.rs`).
//!
//! After a swap the new kernel maps each kind id to its own step function, so the code
//! of a task can change while its state carries on. `docs/EXTENDING.md` says how to add
//! a kind, change its state's layout, or drop one.
#![deny(unsafe_code)]

mod declare;
pub mod kind;
pub mod pool;

pub mod counter;
pub mod heartbeat;
pub mod lcg;
pub mod pipeline;
pub mod ticker;
pub mod update_service;
pub mod workload;

pub use kind::{state_record, Census, Ctx, Kind, KindInfo, Next};
pub use pool::Pool;

use updater::convert::Step;
use updater::describe::Description;
use updater::reconcile::RecordDecl;
use updater::record::{Field, Record};
use updater::records::TaskKind;
use updater::recordset::{
    flags as record_flags, EntriesMut, RecordHeader, RecordSet, RecordSetError, RecordSetWriter,
};

declare::declare_kinds! {
    Counter => counter::Counter,
    Lcg => lcg::Lcg,
    Producer => pipeline::Producer,
    Consumer => pipeline::Consumer,
    Ticker => ticker::Ticker,
    Heartbeat => heartbeat::Heartbeat,
    Service => update_service::UpdateService,
}

/// Advances a progress count by one step's worth. Inlined into several step functions,
/// so a change to it changes each of them (a multi-site hotpatch test changes it).
#[inline(always)]
pub fn tick(count: &mut u64) {
    *count += 1;
}

/// The description of kind `kind`, if this image has it.
pub fn info(kind: TaskKind) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.id == kind)
}

/// The name of `kind` as this image calls it.
pub fn name(kind: TaskKind) -> &'static str {
    info(kind).map_or("unknown", |k| k.name)
}
