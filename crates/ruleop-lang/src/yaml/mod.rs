//! ruleop's one YAML stack: every crate reads and writes YAML through this module.
//!
//! It is built on serde-saphyr: kube already depends on it, it is maintained (serde_yaml
//! is archived and sits on a C-to-Rust translation of libyaml), its errors carry a line
//! and column, and it bounds what a document may cost (`Budget`: depth, nodes, scalar
//! bytes, aliases), which matters for `fromyaml` on user data and for rule files. Its
//! event parser ([`granit`]) gives the spans of rule files and parses rendered templates.
//!
//! Emitting does not use serde-saphyr's serializer: golden files, `render` output and
//! `toyaml` results (which feed child content and `ruleop.dev/hash`) must stay byte for
//! byte what serde_yaml wrote, and no serializer option reproduces its quoting (see
//! [`emit`]).

mod emit;
pub(crate) mod path;

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value as Json;

pub use emit::to_string;
/// The event parser (a fork of saphyr-parser), for [`crate::rule::Spans`] and template shapes.
pub(crate) use serde_saphyr::granit_parser as granit;

/// A document that does not parse or does not fit the expected type, with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct YamlError {
    /// 1-based line; 0 when the error has no position.
    pub line: usize,
    /// 1-based column; 0 when the error has no position.
    pub column: usize,
    /// What is wrong, without the position.
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return f.write_str(&self.message);
        }
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

impl YamlError {
    /// `e` with its position, its message prefixed by the path of the node it is about
    /// (`tests[0]: unknown field ...`), as serde_yaml wrote them.
    fn new(e: &serde_saphyr::Error, text: &str) -> Self {
        use serde_saphyr::MessageFormatter;
        let e = e.without_snippet();
        let (line, column) = e
            .location()
            .map(|l| (to_usize(l.line()), to_usize(l.column())))
            .unwrap_or_default();
        // The message alone (the position is in its own fields), without control
        // characters from the input.
        let message = serde_saphyr::UserMessageFormatter.format_message(e);
        let mut message: String = message.chars().filter(|c| !c.is_control()).collect();
        if line > 0 {
            let path = path::at(text, line, column);
            if !path.is_empty() {
                message = format!("{path}: {message}");
            }
        }
        YamlError {
            line,
            column,
            message,
        }
    }
}

/// The event parser's words for a syntax error. A block entry (`- x`) where a flow node was
/// due gets the YAML reference parser's wording first, which says what was expected (and
/// which `ruleop check` users and tests have always seen).
pub(crate) fn syntax_message(e: &granit::ScanError) -> String {
    match e.kind() {
        granit::ErrorKind::BlockEntryInFlowCollection => {
            format!("did not find expected node content ({})", e.info())
        }
        _ => e.info(),
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Limits for one input: generous for rule files and manifests, small enough that a
/// hostile `fromyaml` argument or file cannot take the process's memory.
fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = 64;
    budget.max_nodes = 250_000;
    budget.max_total_scalar_bytes = 16 * 1024 * 1024;
    budget.max_documents = 1_024;
    serde_saphyr::options! {
        budget: Some(budget),
        // Read scalars as serde_yaml did (YAML 1.2 core schema): `yes`/`on` and `0755` or
        // `1_000` stay text.
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        with_snippet: false,
    }
}

/// Parses one YAML document into `T`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| YamlError::new(&e, text))
}

/// Parses every document of a YAML stream (empty documents read as null).
pub fn from_str_multiple(text: &str) -> Result<Vec<Json>, YamlError> {
    serde_saphyr::from_str_multiple_with_options(text, options())
        .map_err(|e| YamlError::new(&e, text))
}

#[cfg(test)]
mod tests;
