//! Fuzz target: see ../checks/files.rs for what is checked.
#![no_main]

#[path = "../checks/files.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
