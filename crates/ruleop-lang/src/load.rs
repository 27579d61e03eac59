//! Reading rule files from disk into compiled rules, with every error located.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::rule::{CompiledRule, Location, RuleFile, Spans, compile};

/// A problem in a rule file, with its position.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct RuleError {
    /// The file.
    pub file: PathBuf,
    /// Where in the file.
    pub location: Location,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.location.line == 0 {
            // Not about a position (a directory, an unreadable file).
            return write!(f, "{}: {}", self.file.display(), self.message);
        }
        write!(
            f,
            "{}:{}: {}",
            self.file.display(),
            self.location,
            self.message
        )
    }
}

/// A rule loaded from a file.
#[derive(Debug, Clone)]
pub struct LoadedRule {
    /// The file it came from.
    pub path: PathBuf,
    /// sha256 of the file's content (first 12 hex digits), to tell versions apart.
    pub hash: String,
    /// The compiled rule.
    pub rule: Arc<CompiledRule>,
}

/// Parses and compiles one rule file's text.
pub fn parse_rule(path: &Path, source: &str) -> Result<CompiledRule, Vec<RuleError>> {
    // Two passes of one parser: the spans (which also give apiVersion and kind, and the
    // parser's own syntax errors), then the typed file.
    let spans = Spans::index(source);
    if let Some((location, message)) = spans.syntax_error() {
        return Err(vec![RuleError {
            file: path.to_path_buf(),
            location,
            message: message.to_string(),
        }]);
    }
    if let Some(e) = not_a_rule(path, &spans) {
        return Err(vec![e]);
    }
    let file: RuleFile = crate::yaml::from_str(source).map_err(|e| {
        vec![RuleError {
            file: path.to_path_buf(),
            location: Location {
                line: e.line,
                column: e.column,
            },
            message: e.message,
        }]
    })?;
    compile(file, &spans, path.to_path_buf())
        .and_then(|mut rule| crate::check::own_crd(&mut rule).map(|()| rule))
        .map_err(|errors| {
            errors
                .into_iter()
                .map(|(location, message)| RuleError {
                    file: path.to_path_buf(),
                    location,
                    message,
                })
                .collect()
        })
}

/// Whether an object of `api_version` and `kind` is meant as a Rule (its kind, or ruleop's
/// API group: a Rule with a wrong version or kind is still a Rule to report on).
pub fn is_rule_object(api_version: &str, kind: &str) -> bool {
    kind == crate::rule::RULE_KIND || api_version.starts_with(RULE_GROUP_PREFIX)
}

/// How the apiVersion of every ruleop object starts.
const RULE_GROUP_PREFIX: &str = "ruleop.dev/";

/// A clear error for a YAML file that is some other Kubernetes object (a CRD or a sample
/// next to the rules), instead of a list of unknown fields.
fn not_a_rule(path: &Path, spans: &Spans) -> Option<RuleError> {
    let api_version = spans.top_scalar("apiVersion")?;
    let kind = spans.top_scalar("kind")?;
    if is_rule_object(api_version, kind) {
        return None;
    }
    Some(RuleError {
        file: path.to_path_buf(),
        location: spans.find("kind"),
        message: format!(
            "not a Rule: this file is a {kind} ({api_version}); rule directories hold only \
             `kind: Rule` files (keep CRDs and samples in another directory)"
        ),
    })
}

/// Short content hash of a rule file.
pub fn content_hash(source: &str) -> String {
    let digest = Sha256::digest(source.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Whether a directory entry is a rule file (`*.yaml`, `*.yml`, not hidden: the kubelet's
/// `..data` links and editors' swap files start with a dot).
pub fn is_rule_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

/// The rule files at `path`: the file itself, or a directory's rule files sorted by name.
pub fn rule_files(path: &Path) -> Result<Vec<PathBuf>, RuleError> {
    let io_err = |e: std::io::Error| RuleError {
        file: path.to_path_buf(),
        location: Location::default(),
        message: format!("cannot read: {e}"),
    };
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io_err)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| is_rule_file(p) && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Loads one file or every rule file of a directory; one result per file.
pub fn load_path(path: &Path) -> Vec<Result<LoadedRule, Vec<RuleError>>> {
    let files = match rule_files(path) {
        Ok(files) => files,
        Err(e) => return vec![Err(vec![e])],
    };
    files.into_iter().map(|file| load_file(&file)).collect()
}

fn load_file(path: &Path) -> Result<LoadedRule, Vec<RuleError>> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        vec![RuleError {
            file: path.to_path_buf(),
            location: Location::default(),
            message: format!("cannot read: {e}"),
        }]
    })?;
    let rule = parse_rule(path, &source)?;
    Ok(LoadedRule {
        path: path.to_path_buf(),
        hash: content_hash(&source),
        rule: Arc::new(rule),
    })
}

/// Loads every path and checks the set: rule names and parent kinds must be unique. A
/// later file that claims a name or parent kind already taken is refused.
pub fn load_paths(paths: &[PathBuf]) -> (Vec<LoadedRule>, Vec<RuleError>) {
    let mut rules: Vec<LoadedRule> = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        for result in load_path(path) {
            match result {
                Ok(loaded) => match conflict(&rules, &loaded) {
                    Some(e) => errors.push(e),
                    None => rules.push(loaded),
                },
                Err(mut e) => errors.append(&mut e),
            }
        }
    }
    (rules, errors)
}

/// Why `candidate` cannot join `rules`, if it cannot.
pub fn conflict(rules: &[LoadedRule], candidate: &LoadedRule) -> Option<RuleError> {
    let c = &candidate.rule;
    rules.iter().find_map(|r| {
        let message = if r.rule.name == c.name {
            format!(
                "rule name {:?} is already used by {}",
                c.name,
                r.path.display()
            )
        } else if r.rule.parent_key() == c.parent_key() {
            format!(
                "parent kind {} is already governed by rule {:?} in {}",
                c.parent_key(),
                r.rule.name,
                r.path.display()
            )
        } else {
            return None;
        };
        Some(RuleError {
            file: candidate.path.clone(),
            location: c.spans.find("spec.parent"),
            message,
        })
    })
}
