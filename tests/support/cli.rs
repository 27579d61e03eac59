//! The `ruleop` binary under test run offline, and its output read: shared by the `offline`
//! test binary (`#[path = "../support/cli.rs"] mod cli;` in its `main.rs`, no control plane)
//! and `support`.
#![allow(dead_code)] // not every test binary uses every helper

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

/// The crate root, read when the test runs: `env!` keeps the path the test binary was built
/// at, and cargo reuses that binary for a clone elsewhere sharing the target directory (CI's
/// checkout and a developer's), whose files would then be read from the other clone.
pub fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// Runs `ruleop ARGS` from the crate root: whether it succeeded, and its stdout.
pub fn ruleop_stdout<S: AsRef<OsStr>>(args: &[S]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ruleop"))
        .current_dir(root())
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
