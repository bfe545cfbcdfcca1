//! Every mailbox decoder on arbitrary bytes: status, request, response and reports
//! must never panic, and what decodes must encode back to the same value.
#![no_main]

use image_format::mailbox::report::Report;
use image_format::mailbox::{BlockRead, GuestStatus, Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(status) = GuestStatus::decode(data) {
        let mut block = [0u8; GuestStatus::SIZE];
        status.encode(&mut block).unwrap();
        assert_eq!(GuestStatus::decode(&block), Ok(status));
    }
    if let BlockRead::Valid(request) = Request::decode(data) {
        assert_eq!(Request::decode(request.seal().bytes()), BlockRead::Valid(request));
    }
    if let BlockRead::Valid(response) = Response::decode(data) {
        let again = Response::decode(response.seal().bytes());
        assert_eq!(again, BlockRead::Valid(response));
    }
    if let Ok(report) = Report::decode(data) {
        let mut area = vec![0u8; data.len()];
        let len = report.encode(&mut area).unwrap();
        assert_eq!(Report::decode(&area[..len]).as_ref(), Ok(&report));
    }
});
