//! Fuzz target: see ../checks/files.rs for what is checked.
//!
//! The NTFS and FAT readers run the crates beneath them under
//! `catch_unwind` (those crates panic on some damaged structures, and a
//! damaged volume must cost an error, not the daemon). libfuzzer-sys's
//! panic hook aborts on every panic, caught or not, so this target takes
//! the hook back: a panic the readers catch is their answer to a hostile
//! image, and one that escapes still aborts (libfuzzer-sys's wrapper does
//! that) and is saved as a crash, to be replayed with its message by
//! `cargo test --test fuzz_regressions`.
#![no_main]

#[path = "../checks/files.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(
    init: std::panic::set_hook(Box::new(|_| {})),
    |data: &[u8]| checks::check(data)
);
