//! The `ruleop` binary under test run offline, and its output read: shared by the pure test
//! binaries (`#[path = "support/cli.rs"] mod cli;`, no control plane) and `support`.
#![allow(dead_code)] // not every test binary uses every helper

use std::ffi::OsStr;
use std::process::Command;

/// Runs `ruleop ARGS` from the crate root: whether it succeeded, and its stdout.
pub fn ruleop_stdout<S: AsRef<OsStr>>(args: &[S]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ruleop"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run ruleop");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Like [`ruleop_stdout`], stdout as lines.
pub fn ruleop_lines<S: AsRef<OsStr>>(args: &[S]) -> (bool, Vec<String>) {
    let (ok, out) = ruleop_stdout(args);
    (ok, out.lines().map(str::to_string).collect())
}

/// The 1-based number of the first line of `text` that contains `needle`.
pub fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the text"))
        + 1
}
