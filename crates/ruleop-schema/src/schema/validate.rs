//! Validates a JSON value against an OpenAPI v3 schema of the Kubernetes dialect.
//!
//! A structural subset: `type`, `properties`, `additionalProperties`, `items`, `required`,
//! `enum`, `format` (`int-or-string`, `byte`, `int32`, `date-time`), `nullable`,
//! `allOf`/`anyOf`/`oneOf`, `$ref` into the document's components and the
//! `x-kubernetes-int-or-string`, `x-kubernetes-preserve-unknown-fields` and
//! `x-kubernetes-embedded-resource` extensions. Every violation is reported, not only the first.

use serde_json::{Map, Value as Json};

use super::json_schema::{QUANTITY, field_schema, ref_name, resolve};
use super::values::{format_ok, is_integer, type_ok};

/// Schemas nest at most this deep: deeper is a cyclic or hostile schema.
const MAX_DEPTH: usize = 64;

/// Where undeclared fields are violations. `anyOf`/`oneOf` alternatives constrain but do not
/// declare fields; an `allOf` member declares fields for its object along with the object's
/// own `properties`, so the object (not the member) judges them.
#[derive(Debug, Clone, Copy)]
struct Mode {
    /// At this level.
    here: bool,
    /// Below this level.
    below: bool,
}

impl Mode {
    const STRICT: Mode = Mode {
        here: true,
        below: true,
    };
    const LENIENT: Mode = Mode {
        here: false,
        below: false,
    };

    fn inner(self) -> Mode {
        Mode {
            here: self.below,
            below: self.below,
        }
    }
}

/// Which flavour of schema is being read: they disagree on what an undeclared field means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Built-in kinds (generated from Go types): an `object` without `properties` or
    /// `additionalProperties` is free-form; an undeclared field is rejected by server-side apply.
    Builtin,
    /// CRD structural schemas: an undeclared field is pruned unless
    /// `x-kubernetes-preserve-unknown-fields` says otherwise.
    Crd,
}

/// What is wrong with one value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The value has the wrong JSON type.
    #[error("expected {expected}, got {found}")]
    WrongType {
        /// The schema's type(s).
        expected: String,
        /// The value, briefly.
        found: String,
    },
    /// A field the schema does not declare.
    #[error("field not declared in the schema ({})", unknown_consequence(*.dialect))]
    UnknownField {
        /// Whose schema: says what the API server does with it.
        dialect: Dialect,
    },
    /// A required field is missing (or null).
    #[error("required field is missing")]
    MissingRequired,
    /// The value is not one of the schema's `enum`.
    #[error("{found} is not one of {allowed}")]
    NotInEnum {
        /// The value, briefly.
        found: String,
        /// The allowed values.
        allowed: String,
    },
    /// A string that does not have the schema's `format`.
    #[error("{found} is not a valid {format}")]
    BadFormat {
        /// The format (`byte`, `int32`, `date-time`, `quantity`).
        format: String,
        /// The value, briefly.
        found: String,
    },
    /// No alternative of `anyOf`/`oneOf` matches.
    #[error("matches none of the {keyword} alternatives: {details}")]
    NoAlternative {
        /// `anyOf` or `oneOf`.
        keyword: &'static str,
        /// Why each alternative fails.
        details: String,
    },
    /// More than one alternative of `oneOf` matches.
    #[error("matches more than one oneOf alternative")]
    AmbiguousOneOf,
    /// An embedded resource without `apiVersion` or `kind`.
    #[error("an embedded object needs a non-empty {field}")]
    EmbeddedResource {
        /// The missing field.
        field: &'static str,
    },
    /// The schema itself is broken (a dangling `$ref`, or nested too deep).
    #[error("cannot check: {0}")]
    BadSchema(String),
}

fn unknown_consequence(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Builtin => "server-side apply rejects it",
        Dialect::Crd => "the API server prunes it",
    }
}

/// One violation: where in the value, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Path of the bad field from the value's root, e.g. `spec.containers[0].image`
    /// (`metadata.labels["app.kubernetes.io/name"]` for keys that are not identifiers).
    pub path: String,
    /// What is wrong.
    pub problem: Problem,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() {
            "(the object)"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.problem)
    }
}

/// Validates values against schemas whose `$ref`s point into `components`.
#[derive(Debug, Clone, Copy)]
pub struct Validator<'a> {
    components: &'a Map<String, Json>,
    dialect: Dialect,
}

impl<'a> Validator<'a> {
    /// A validator of `dialect` schemas, resolving `$ref`s in `components`.
    pub fn new(components: &'a Map<String, Json>, dialect: Dialect) -> Self {
        Validator {
            components,
            dialect,
        }
    }

    /// Every violation of `schema` by `value`.
    pub fn validate(&self, schema: &Json, value: &Json) -> Vec<Violation> {
        let mut out = Vec::new();
        self.check(schema, value, "", Mode::STRICT, 0, &mut out);
        // A field declared both by an object and by one of its `allOf` members is checked
        // against both: say each finding once.
        let mut seen = std::collections::HashSet::new();
        out.retain(|v| seen.insert((v.path.clone(), v.problem.to_string())));
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    /// Checks `value` at `path` against `schema`; `mode` says where undeclared fields count.
    fn check(
        &self,
        schema: &Json,
        value: &Json,
        path: &str,
        mode: Mode,
        depth: usize,
        out: &mut Vec<Violation>,
    ) {
        let mut push = |problem: Problem| {
            out.push(Violation {
                path: path.to_string(),
                problem,
            })
        };
        if depth >= MAX_DEPTH {
            push(Problem::BadSchema("schema nested too deep".into()));
            return;
        }
        let is_quantity = ref_name(schema) == Some(QUANTITY);
        let schema = match resolve(Some(self.components), schema, false) {
            Ok(s) => s,
            Err(stop) => return push(Problem::BadSchema(stop.to_string())),
        };
        if is_quantity {
            return self.check_quantity(value, path, out);
        }
        // Null is "not set": the API server drops it (CRDs) or decodes it as the zero value
        // (built-in kinds). Whether it may be missing is the parent's `required`.
        if value.is_null() {
            return;
        }
        if !self.check_type(schema, value, path, out) {
            return;
        }
        if let Some(allowed) = schema.get("enum").and_then(Json::as_array)
            && !allowed.contains(value)
        {
            out.push(Violation {
                path: path.to_string(),
                problem: Problem::NotInEnum {
                    found: brief(value),
                    allowed: allowed.iter().map(brief).collect::<Vec<_>>().join(", "),
                },
            });
        }
        if let (Some(format), Some(text)) =
            (schema.get("format").and_then(Json::as_str), value.as_str())
            && !format_ok(format, text)
        {
            out.push(Violation {
                path: path.to_string(),
                problem: Problem::BadFormat {
                    format: format.to_string(),
                    found: brief(value),
                },
            });
        }
        if let (Some("int32"), Some(n)) =
            (schema.get("format").and_then(Json::as_str), value.as_f64())
            && (n < f64::from(i32::MIN) || n > f64::from(i32::MAX))
        {
            out.push(Violation {
                path: path.to_string(),
                problem: Problem::BadFormat {
                    format: "int32".into(),
                    found: brief(value),
                },
            });
        }
        for sub in schema
            .get("allOf")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            // An `allOf` member that declares fields declares them for this object too:
            // the object's own unknown-field check (below) counts them.
            let member = Mode {
                here: false,
                below: mode.below,
            };
            self.check(sub, value, path, member, depth + 1, out);
        }
        for keyword in ["anyOf", "oneOf"] {
            if let Some(alternatives) = schema.get(keyword).and_then(Json::as_array) {
                self.check_alternatives(keyword, alternatives, value, path, depth, out);
            }
        }
        match value {
            Json::Object(map) => self.check_object(schema, map, path, mode, depth, out),
            Json::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        let p = format!("{path}[{i}]");
                        self.check(item_schema, item, &p, mode.inner(), depth + 1, out);
                    }
                }
            }
            _ => {}
        }
    }

    /// Type (and int-or-string) check; false when the value is of the wrong type, so that
    /// nothing below it is reported as well.
    fn check_type(
        &self,
        schema: &Json,
        value: &Json,
        path: &str,
        out: &mut Vec<Violation>,
    ) -> bool {
        let int_or_string = schema
            .get("x-kubernetes-int-or-string")
            .and_then(Json::as_bool)
            .unwrap_or(false)
            || schema.get("format").and_then(Json::as_str) == Some("int-or-string");
        let ok = if int_or_string {
            is_integer(value) || value.is_string()
        } else {
            match schema.get("type").and_then(Json::as_str) {
                Some(t) => type_ok(t, value),
                None => true,
            }
        };
        if !ok {
            let expected = if int_or_string {
                "integer or string".to_string()
            } else {
                schema
                    .get("type")
                    .and_then(Json::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            out.push(Violation {
                path: path.to_string(),
                problem: Problem::WrongType {
                    expected,
                    found: brief(value),
                },
            });
        }
        ok
    }

    fn check_quantity(&self, value: &Json, path: &str, out: &mut Vec<Violation>) {
        let ok = match value {
            Json::Null | Json::Number(_) => true,
            Json::String(s) => crate::quantity::Quantity::parse(s).is_some(),
            _ => {
                out.push(Violation {
                    path: path.to_string(),
                    problem: Problem::WrongType {
                        expected: "quantity (string or number)".into(),
                        found: brief(value),
                    },
                });
                return;
            }
        };
        if !ok {
            out.push(Violation {
                path: path.to_string(),
                problem: Problem::BadFormat {
                    format: "quantity".into(),
                    found: brief(value),
                },
            });
        }
    }

    fn check_alternatives(
        &self,
        keyword: &'static str,
        alternatives: &[Json],
        value: &Json,
        path: &str,
        depth: usize,
        out: &mut Vec<Violation>,
    ) {
        let results: Vec<Vec<Violation>> = alternatives
            .iter()
            .map(|alt| {
                let mut v = Vec::new();
                self.check(alt, value, path, Mode::LENIENT, depth + 1, &mut v);
                v
            })
            .collect();
        let matching = results.iter().filter(|r| r.is_empty()).count();
        let problem = if matching == 0 {
            let details = results
                .iter()
                .map(|r| {
                    r.iter()
                        .map(|v| v.problem.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .collect::<Vec<_>>()
                .join(" | ");
            Problem::NoAlternative { keyword, details }
        } else if keyword == "oneOf" && matching > 1 {
            Problem::AmbiguousOneOf
        } else {
            return;
        };
        out.push(Violation {
            path: path.to_string(),
            problem,
        });
    }

    fn check_object(
        &self,
        schema: &Json,
        map: &Map<String, Json>,
        path: &str,
        mode: Mode,
        depth: usize,
        out: &mut Vec<Violation>,
    ) {
        let embedded = schema
            .get("x-kubernetes-embedded-resource")
            .and_then(Json::as_bool)
            .unwrap_or(false);
        if embedded {
            for field in ["apiVersion", "kind"] {
                if map
                    .get(field)
                    .and_then(Json::as_str)
                    .is_none_or(str::is_empty)
                {
                    out.push(Violation {
                        path: path.to_string(),
                        problem: Problem::EmbeddedResource { field },
                    });
                }
            }
        }
        for name in schema
            .get("required")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(name) = name.as_str()
                && map.get(name).is_none_or(Json::is_null)
            {
                out.push(Violation {
                    path: join(path, name),
                    problem: Problem::MissingRequired,
                });
            }
        }
        let properties = schema.get("properties").and_then(Json::as_object);
        let additional = schema.get("additionalProperties");
        let preserve = schema
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Json::as_bool)
            .unwrap_or(false);
        // Built-in schemas leave free-form objects (RawExtension, FieldsV1) undeclared.
        let free_form = self.dialect == Dialect::Builtin
            && properties.is_none()
            && additional.is_none()
            && schema.get("allOf").is_none();
        for (key, field_value) in map {
            let p = join(path, key);
            if let Some(field) = field_schema(schema, key) {
                self.check(field, field_value, &p, mode.inner(), depth + 1, out);
            } else if embedded && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                // Implicitly declared by `x-kubernetes-embedded-resource`.
            } else if mode.here
                && !preserve
                && !free_form
                && additional.and_then(Json::as_bool) != Some(true)
                && !self.declared_in_all_of(schema, key, depth)
            {
                out.push(Violation {
                    path: p,
                    problem: Problem::UnknownField {
                        dialect: self.dialect,
                    },
                });
            }
        }
    }

    /// Whether an `allOf` member of `schema` declares field `key` (or allows any field).
    fn declared_in_all_of(&self, schema: &Json, key: &str, depth: usize) -> bool {
        schema
            .get("allOf")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(|sub| resolve(Some(self.components), sub, false).ok())
            .any(|sub| {
                sub.get("properties").is_some_and(|p| p.get(key).is_some())
                    || sub
                        .get("additionalProperties")
                        .is_some_and(|a| a != &Json::Bool(false))
                    || sub
                        .get("x-kubernetes-preserve-unknown-fields")
                        .and_then(Json::as_bool)
                        .unwrap_or(false)
                    || (self.dialect == Dialect::Builtin
                        && sub.get("properties").is_none()
                        && sub.get("additionalProperties").is_none())
                    || (depth < MAX_DEPTH && self.declared_in_all_of(sub, key, depth + 1))
            })
    }
}

/// `path.key`, or `path["key"]` when the key is not a plain identifier.
fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (path.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{}]", Json::String(key.to_string())),
    }
}

/// A value as shown in a message: its type and, for scalars, the value.
fn brief(value: &Json) -> String {
    match value {
        Json::Null => "null".into(),
        Json::Bool(b) => format!("boolean {b}"),
        Json::Number(n) => format!("number {n}"),
        Json::String(s) if s.chars().count() > 40 => {
            format!("string {:?}…", s.chars().take(40).collect::<String>())
        }
        Json::String(s) => format!("string {s:?}"),
        Json::Array(_) => "a list".into(),
        Json::Object(_) => "a mapping".into(),
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
