//! The operators under `examples/`: their files, and the `ruleop` binary run on them offline.

use std::path::PathBuf;
use std::process::{Command, Output};

use super::operator::root;

/// The directory of one example.
pub fn example(name: &str) -> PathBuf {
    root().join("examples").join(name)
}

/// The example's rule file.
pub fn rule_file(name: &str) -> PathBuf {
    example(name).join("rule.yaml")
}

/// The text of one of the example's files.
pub fn read(name: &str, file: &str) -> String {
    std::fs::read_to_string(example(name).join(file)).unwrap()
}

/// Runs the `ruleop` binary under test: whether it succeeded, and its stdout then stderr.
pub fn ruleop(args: &[&str]) -> (bool, String) {
    let out = run(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs the `ruleop` binary under test and returns its stdout; fails the test, showing
/// stderr, when it fails.
pub fn ruleop_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "ruleop {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ruleop"))
        .args(args)
        .output()
        .unwrap()
}
