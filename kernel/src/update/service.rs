//! The update service: the task that serves the mailbox. (Placeholder until the
//! mailbox protocol lands: it runs the console shell.)

use core::sync::atomic::{AtomicBool, Ordering};

use crate::schema::Service;
use crate::tasks::Next;

static KICKED: AtomicBool = AtomicBool::new(false);

/// The doorbell rang: run the service at its next chance.
pub fn kick() {
    KICKED.store(true, Ordering::Release);
}

pub fn poll(_state: &mut Service) -> Next {
    KICKED.store(false, Ordering::Release);
    crate::shell::run_pending();
    Next::Period
}
