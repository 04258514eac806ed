//! Fuzz target: see ../checks/dmlog.rs for what is checked.
#![no_main]

#[path = "../checks/dmlog.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
