//! CEL rules: admission-time validation that the API server enforces (`x-kubernetes-validations`
//! in generated CRDs, a ValidatingAdmissionPolicy for other parents) and the planner evaluates
//! offline, so a test proves a rule's message before it is deployed.
//!
//! Each expression is parsed once, when the rule loads ([`CelExpr::compile`]); the planner
//! evaluates the kept program per plan. [`rewrite`] turns `self`/`oldSelf` into the
//! `object`/`oldObject` of a policy, [`policy`] builds the policy, [`hints`] finds Jinja checks
//! that could be CEL.

pub mod hints;
pub mod policy;
pub mod rewrite;

use std::fmt;
use std::sync::{Arc, LazyLock};

/// The variable holding the validated value (the parent, or a field's value).
pub const SELF: &str = "self";
/// The variable holding the previous value, in transition rules (updates only).
pub const OLD_SELF: &str = "oldSelf";

/// Names an author may reach for out of habit that CEL rules do not have, with what to use.
const OTHER_NAMES: [(&str, &str); 3] = [
    (
        "parent",
        "the parent is `self` in CEL (as in x-kubernetes-validations)",
    ),
    (
        "object",
        "write `self` (ruleop writes `object` in the ValidatingAdmissionPolicy)",
    ),
    (
        "oldObject",
        "write `oldSelf` (ruleop writes `oldObject` in the ValidatingAdmissionPolicy)",
    ),
];

/// The CEL environment: the standard library and the extensions Kubernetes also offers
/// (strings, lists, math), shared by every rule.
pub fn env() -> Arc<cel::Env> {
    static ENV: LazyLock<Arc<cel::Env>> = LazyLock::new(|| {
        let mut env = cel::Env::stdlib();
        // Each extension is added once to a fresh environment: they cannot conflict.
        for extension in [
            cel::extensions::strings as fn(&mut cel::Env) -> Result<(), cel::DeclarationError>,
            cel::extensions::lists,
            cel::extensions::math,
        ] {
            let _ = env.add_extension(extension);
        }
        Arc::new(env)
    });
    Arc::clone(&ENV)
}

/// Why a CEL expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CelError {
    /// It does not parse.
    #[error("CEL does not compile: at line {line}, column {column}: {message}")]
    Parse {
        /// 1-based line within the expression.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's words.
        message: String,
    },
    /// It uses a name CEL rules do not have.
    #[error("CEL uses `{name}`: {hint}")]
    Name {
        /// The name.
        name: String,
        /// What to write instead.
        hint: &'static str,
    },
}

impl CelError {
    /// The 1-based line within the expression the error is at.
    pub fn line(&self) -> usize {
        match self {
            Self::Parse { line, .. } => *line,
            Self::Name { .. } => 1,
        }
    }
}

/// One compiled CEL expression.
#[derive(Clone)]
pub struct CelExpr {
    /// The expression as written.
    pub source: String,
    /// The parsed program, evaluated by the planner.
    pub program: Arc<cel::Program>,
    /// It reads `oldSelf`: a transition rule, evaluated on updates only.
    pub transition: bool,
}

impl fmt::Debug for CelExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CelExpr")
            .field("source", &self.source)
            .field("transition", &self.transition)
            .finish()
    }
}

impl CelExpr {
    /// Parses `source`.
    pub fn compile(source: &str) -> Result<Self, CelError> {
        let program = env().compile(source).map_err(|errors| {
            let first = errors.errors.first();
            let (line, column) = first.map_or((1, 1), |e| {
                (
                    usize::try_from(e.pos.0).unwrap_or(1).max(1),
                    usize::try_from(e.pos.1).unwrap_or(0) + 1,
                )
            });
            // An error at the end of a block scalar's text is on its last written line.
            let last = source.trim_end().lines().count().max(1);
            CelError::Parse {
                line: line.min(last),
                column,
                message: first.map_or_else(|| errors.to_string(), |e| e.msg.clone()),
            }
        })?;
        let references = program.references();
        if let Some((name, hint)) = OTHER_NAMES
            .iter()
            .find(|(name, _)| references.has_variable(name))
        {
            return Err(CelError::Name {
                name: (*name).to_string(),
                hint,
            });
        }
        let transition = references.has_variable(OLD_SELF);
        Ok(Self {
            source: source.to_string(),
            program: Arc::new(program),
            transition,
        })
    }
}

/// A CEL check: a rule that must be true, with its message.
#[derive(Debug, Clone)]
pub struct CelCheck {
    /// The YAML path of its `cel`/`rule` in the rule file (for errors).
    pub at: String,
    /// The expression that must be true.
    pub rule: CelExpr,
    /// The message when it is false.
    pub message: String,
    /// A CEL expression for the message (a string), used instead of `message` when it
    /// evaluates.
    pub message_expression: Option<CelExpr>,
    /// The condition reason when it fails (`spec.validate` only).
    pub reason: Option<String>,
}

impl CelCheck {
    /// It reads `oldSelf` (in its rule or its message).
    pub fn transition(&self) -> bool {
        self.rule.transition
            || self
                .message_expression
                .as_ref()
                .is_some_and(|m| m.transition)
    }
}

/// One step from a value to a field inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldStep {
    /// The field `name` of an object.
    Key(String),
    /// Every item of an array.
    Items,
}

/// A CEL check on a field of the parent's spec (`spec.crd.spec.<field>.validations`).
#[derive(Debug, Clone)]
pub struct FieldCheck {
    /// Where the field is, from the parent (`spec`, `size`).
    pub field: Vec<FieldStep>,
    /// The check, over `self` = the field's value.
    pub check: CelCheck,
}

/// A rule's compiled CEL checks.
#[derive(Debug, Clone, Default)]
pub struct CelRules {
    /// `spec.validate[i].cel`, in order (each entry's index is in `Compiled::validate`).
    pub validate: Vec<CelCheck>,
    /// `validations` of `spec.crd.spec` fields, parents before their fields.
    pub fields: Vec<FieldCheck>,
}

impl CelRules {
    /// No CEL check at all.
    pub fn is_empty(&self) -> bool {
        self.validate.is_empty() && self.fields.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_compile_once_and_know_transition_rules() {
        let e =
            CelExpr::compile("self.spec.size <= 10 && self.spec.tags.all(t, size(t) > 0)").unwrap();
        assert!(!e.transition);
        assert!(CelExpr::compile("self == oldSelf").unwrap().transition);
        // The extensions Kubernetes offers compile (and `matches`, from the standard library).
        CelExpr::compile("self.name.lowerAscii().matches('^[a-z]+$')").unwrap();
    }

    #[test]
    fn errors_say_where_and_what() {
        let err = CelExpr::compile("self.spec.size <=").unwrap_err();
        assert!(matches!(err, CelError::Parse { line: 1, .. }), "{err}");
        let err = CelExpr::compile("self.a &&\n  (self.b ==").unwrap_err();
        assert_eq!(err.line(), 2, "{err}");
        let err = CelExpr::compile("parent.spec.size > 1").unwrap_err();
        assert!(err.to_string().contains("the parent is `self`"), "{err}");
        let err = CelExpr::compile("object.spec.size > 1").unwrap_err();
        assert!(matches!(err, CelError::Name { ref name, .. } if name == "object"));
    }
}
