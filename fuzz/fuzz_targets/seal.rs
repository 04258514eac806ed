//! Fuzz target: see ../checks/seal.rs for what is checked.
#![no_main]

#[path = "../checks/seal.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
