//! `update-service`: serves the mailbox (pinned to CPU 0). Its state is a record like
//! any other; what a step does is the update layer's (`update::service::poll`), reached
//! through the hook boot and resume register ([`serve_with`]), since tasks sit below it.

use spin::Once;
use updater::continuity::Clause;
use updater::records::TaskKind;

use super::{state_record, Ctx, Kind, Next};

/// The service's state.
#[derive(Debug, Clone, PartialEq, Eq, Default, updater::Record)]
#[record(kind = state_record::<UpdateService>(), version = 1)]
#[repr(C)]
pub struct UpdateServiceV1 {
    /// Sequence number of the last request acted on; older or equal ones are stale.
    pub last_seq: u64,
    /// Packages accepted into the staging buffer.
    pub staged: u64,
    /// Swaps applied.
    pub applied: u64,
    /// Requests refused or rolled back.
    pub refused: u64,
    /// Patch operations (apply and remove) done.
    pub patches: u64,
}

/// The `update-service` kind.
pub struct UpdateService;

static POLL: Once<fn(&mut UpdateServiceV1) -> Next> = Once::new();

/// Registers what a step of the service does (boot and resume, once).
pub fn serve_with(poll: fn(&mut UpdateServiceV1) -> Next) {
    POLL.call_once(|| poll);
}

impl Kind for UpdateService {
    const ID: TaskKind = TaskKind::SERVICE;
    const NAME: &'static str = "update-service";
    type State = UpdateServiceV1;
    const CONTINUITY: &'static [Clause] = &[Clause::Monotonic(0)];

    fn step(state: &mut UpdateServiceV1, _ctx: &Ctx<'_>) -> Next {
        step(state)
    }

    /// `[last request, packages staged, swaps applied, requests refused]`.
    fn observe(s: &UpdateServiceV1) -> [u64; 4] {
        [s.last_seq, s.staged, s.applied, s.refused]
    }
}

#[inline(never)]
pub fn step(state: &mut UpdateServiceV1) -> Next {
    match POLL.get() {
        Some(poll) => poll(state),
        None => Next::Period,
    }
}
