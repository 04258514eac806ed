//! Fuzz target: see ../checks/nbd_request.rs for what is checked.
#![no_main]

#[path = "../checks/nbd_request.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
