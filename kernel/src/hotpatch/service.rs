//! Patch requests from the mailbox.

use image_format::mailbox::{Request, Response, ResponseState, Status};

use crate::drivers::mailbox::SharedMemory;
use crate::schema::Service;
use crate::tasks::Next;

/// Answers a patch request.
pub fn handle(mb: &SharedMemory, state: &mut Service, request: Request) -> Next {
    state.refused += 1;
    let mut r = Response::new(request.seq, ResponseState::Done, Status::BadRequest);
    r.set_message(format_args!(
        "{} is not supported by this kernel yet",
        request.command
    ));
    mb.respond(&r);
    Next::Period
}
