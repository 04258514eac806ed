//! Fuzz target: see ../checks/time.rs for what is checked.
#![no_main]

#[path = "../checks/time.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
