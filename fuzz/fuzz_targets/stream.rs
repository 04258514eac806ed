//! Fuzz target: see ../checks/stream.rs for what is checked.
#![no_main]

#[path = "../checks/stream.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
