//! The operators under `examples/`: where their files are.

use std::path::PathBuf;

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
