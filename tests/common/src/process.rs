//! Running a command to its end: the `diskhist` binary of this build or any
//! tool, both outputs captured, and the checks tests make of it (it
//! succeeded; it failed with this status and said this on standard error).
//!
//! One-shot runs of `diskhist` log warnings and errors only
//! (`RUST_LOG=warn`), so that what a command says on standard error can be
//! compared whole. Processes that run beside the test (`serve`, `mount`,
//! `ingest --follow`: see `Spawned`) keep the default log, whose
//! information lines some tests look for.

use std::borrow::BorrowMut;
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The `diskhist` binary of this build. Cargo builds it for the integration
/// tests and puts it in the profile's directory (`target/release/`), the
/// parent of the directory holding the test executables
/// (`target/release/deps/`), which is where this looks.
pub fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test executable's own path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .unwrap_or_else(|| panic!("{} is not in target/<profile>/deps/", exe.display()));
        let bin = profile_dir.join(format!("diskhist{}", std::env::consts::EXE_SUFFIX));
        assert!(
            bin.is_file(),
            "no diskhist binary at {}: build it first (`cargo build --release`; `cargo test` \
             builds it for the integration tests)",
            bin.display()
        );
        bin
    })
}

/// `diskhist ARGS`, not yet run, with the test's environment.
pub fn diskhist_cmd<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(bin());
    cmd.args(args);
    cmd
}

/// `diskhist ARGS` for one run to its end: warnings and errors only.
fn one_shot(args: &[&str]) -> Command {
    let mut cmd = diskhist_cmd(args);
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// `diskhist ARGS` must succeed; its standard output.
pub fn diskhist(args: &[&str]) -> String {
    run(one_shot(args))
}

/// `diskhist ARGS` must succeed; all it wrote.
pub fn diskhist_ok(args: &[&str]) -> Output {
    ok(one_shot(args))
}

/// `diskhist ARGS` must exit with `code` and say `needle` on standard
/// error; what it said there.
pub fn diskhist_fails(args: &[&str], code: i32, needle: &str) -> String {
    fails(one_shot(args), code, needle)
}

/// `diskhist ARGS`, whatever its outcome.
pub fn diskhist_output(args: &[&str]) -> Output {
    output(one_shot(args))
}

/// `diskhist ARGS` reading `input` on its standard input, whatever its
/// outcome.
pub fn diskhist_with_input(args: &[&str], input: &[u8]) -> Output {
    output_with_input(one_shot(args), input)
}

/// Run `cmd` to its end (standard input closed, both outputs captured);
/// panics only when it cannot be started.
pub fn output(mut cmd: impl BorrowMut<Command>) -> Output {
    let cmd = cmd.borrow_mut();
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Run `cmd` with `input` on its standard input, written through a pipe
/// from another thread, so that a command that stops reading early (it
/// refused the input) neither blocks the test nor fails it.
pub fn output_with_input(mut cmd: impl BorrowMut<Command>, input: &[u8]) -> Output {
    let cmd = cmd.borrow_mut();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("a piped standard input");
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {cmd:?}: {e}"));
    feeder.join().expect("the thread feeding standard input");
    out
}

/// `cmd` must exit 0 (else a panic shows both outputs); all it wrote.
pub fn ok(mut cmd: impl BorrowMut<Command>) -> Output {
    let cmd = cmd.borrow_mut();
    let out = output(&mut *cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `cmd` must exit 0; its standard output.
pub fn run(cmd: impl BorrowMut<Command>) -> String {
    stdout_of(&ok(cmd))
}

/// `cmd` must exit with `code` and say `needle` on standard error; what it
/// said there.
pub fn fails(mut cmd: impl BorrowMut<Command>, code: i32, needle: &str) -> String {
    let cmd = cmd.borrow_mut();
    let out = output(&mut *cmd);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(code), "{cmd:?}: {err}");
    assert!(
        err.contains(needle),
        "{cmd:?}: expected {needle:?} in: {err}"
    );
    err
}

/// A command that ran exited with `code` and said `needle` on standard
/// error; what it said there.
pub fn failed_with(out: &Output, code: i32, needle: &str) -> String {
    let err = stderr_of(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    err
}

/// Run the shell command `command` under script(1), which gives it a
/// terminal: what the terminal showed, and its exit status. `diskhist` in
/// it logs warnings and errors only, as in one-shot runs.
pub fn on_a_terminal(command: &str) -> (String, Option<i32>) {
    let o = output(
        Command::new("script")
            .args(["-qec", command, "/dev/null"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null()),
    );
    (stdout_of(&o), o.status.code())
}

/// Standard output as text (invalid UTF-8 replaced).
pub fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error as text (invalid UTF-8 replaced).
pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_reaches_the_command_and_both_outputs_come_back() {
        let out = output_with_input(Command::new("sh").args(["-c", "cat; echo err >&2"]), b"fed");
        assert!(out.status.success());
        assert_eq!(out.stdout, b"fed");
        assert_eq!(stderr_of(&out), "err\n");
    }

    #[test]
    fn a_command_that_stops_reading_early_does_not_block() {
        let big = vec![b'x'; 8 << 20];
        let out = output_with_input(Command::new("true"), &big);
        assert!(out.status.success());
    }

    #[test]
    fn the_checks_say_what_was_expected() {
        assert_eq!(run(Command::new("echo").arg("hi")), "hi\n");
        let err = fails(
            Command::new("sh").args(["-c", "echo no such thing >&2; exit 3"]),
            3,
            "no such",
        );
        assert_eq!(err, "no such thing\n");
        let caught = std::panic::catch_unwind(|| ok(Command::new("false")));
        assert!(caught.is_err(), "a failed command passed `ok`");
    }
}
