//! `update-service`: serves the mailbox (pinned to CPU 0).

use crate::schema::Service;
use crate::tasks::Next;

#[inline(never)]
pub fn step(state: &mut Service) -> Next {
    crate::update::service::poll(state)
}
