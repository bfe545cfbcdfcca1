//! Function-level hotpatching (issue 6). The mailbox commands exist; the mechanism
//! comes with the patch format.
pub mod service;
