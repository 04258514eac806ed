//! Fuzz target: see ../checks/partitions.rs for what is checked.
#![no_main]

#[path = "../checks/partitions.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
